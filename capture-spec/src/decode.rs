//! Decoding specs from JSON with every problem located: `spec.filters[1].ports[0]: port 70000 is
//! out of range: ports are 0-65535` instead of serde's first error with a line and column.
//!
//! The API and the CLI decode request bodies with [`CaptureSpec::from_json_value`] and
//! [`ScheduleSpec::from_json_value`], then call `validate` on the result. The decoder walks the
//! value field by field to find every bad field, unknown field (with the known field it is
//! probably a typo of), missing required field and array where an object belongs, then
//! deserializes it.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::capture::CaptureSpec;
use crate::capture_point::CapturePoint;
use crate::duration::CaptureDuration;
use crate::filter::{check_peer_count, FilterError, FilterRule, PortRange, Protocol};
use crate::limits::{OutputFormat, Rotation};
use crate::peer::Peer;
use crate::schedule::{ConcurrencyPolicy, ScheduleSpec};
use crate::selector::{LabelSelector, LabelSelectorRequirement, SelectorOperator};
use crate::validate::{FieldError, ValidationErrors};

const CAPTURE_FIELDS: &[&str] = &[
    "podSelector",
    "nodeSelector",
    "filters",
    "bpfFilter",
    "capturePoint",
    "startTime",
    "endTime",
    "duration",
    "snapLength",
    "maxBytes",
    "maxPackets",
    "rotation",
    "format",
];
const SCHEDULE_FIELDS: &[&str] = &[
    "schedule",
    "timeZone",
    "suspend",
    "concurrencyPolicy",
    "historyLimit",
    "startingDeadlineSeconds",
    "template",
];
const SELECTOR_FIELDS: &[&str] = &["matchLabels", "matchExpressions"];
const REQUIREMENT_FIELDS: &[&str] = &["key", "operator", "values"];
const RULE_FIELDS: &[&str] = &["protocol", "ports", "peers"];
const ROTATION_FIELDS: &[&str] = &["maxFileBytes", "maxFileSeconds", "maxFiles"];

const LABELS_HINT: &str = "write label pairs, e.g. {\"app\": \"web\"}";
const TIME_HINT: &str = "write an RFC 3339 time, e.g. \"2025-06-01T02:00:00Z\"";

impl CaptureSpec {
    /// Decodes a capture spec at `path` (usually `spec`), reporting every bad, unknown or missing
    /// field with its path. Call [`CaptureSpec::validate`] on the result for the checks that
    /// need the whole spec.
    pub fn from_json_value(value: &Value, path: &str) -> Result<CaptureSpec, ValidationErrors> {
        decode(value, path, locate_capture)
    }
}

impl ScheduleSpec {
    /// Decodes a schedule spec at `path` (usually `spec`), reporting every bad, unknown or
    /// missing field with its path, the template's included (`spec.template.filters[0]`).
    pub fn from_json_value(value: &Value, path: &str) -> Result<ScheduleSpec, ValidationErrors> {
        decode(value, path, locate_schedule)
    }
}

type Errors = Vec<FieldError>;

fn decode<T: DeserializeOwned>(
    value: &Value,
    path: &str,
    locate: fn(&Value, &str, &mut Errors),
) -> Result<T, ValidationErrors> {
    // The walk first, even for a value serde would take: serde's derived structs also take an
    // array of their fields in order (`"rotation": [4096]`), which no one means and the
    // CRD and OpenAPI schemas refuse; the walk wants an object wherever a struct goes.
    let mut errors = Vec::new();
    locate(value, path, &mut errors);
    if !errors.is_empty() {
        return Err(ValidationErrors(errors));
    }
    T::deserialize(value)
        .map_err(|whole| ValidationErrors(vec![FieldError::new(path, whole.to_string())]))
}

fn locate_capture(value: &Value, path: &str, errors: &mut Errors) {
    object::<CaptureSpec>(
        value,
        path,
        CAPTURE_FIELDS,
        &[],
        errors,
        |key, v, at, errors| match key {
            "podSelector" => locate_selector(v, at, errors),
            "nodeSelector" => {
                located_with::<Option<BTreeMap<String, String>>>(v, at, errors, LABELS_HINT)
            }
            "filters" => each(v, at, errors, locate_rule),
            "bpfFilter" => located_with::<Option<String>>(
                v,
                at,
                errors,
                "write a pcap-filter expression as a string, e.g. \"tcp port 443\"",
            ),
            "capturePoint" => located::<CapturePoint>(v, at, errors),
            "startTime" | "endTime" => {
                if let Err(e) = crate::time::deserialize_optional(v) {
                    let hint = if v.is_string() { None } else { Some(TIME_HINT) };
                    errors.push(message_with(at, &e, hint));
                }
            }
            "duration" => located::<Option<CaptureDuration>>(v, at, errors),
            "snapLength" => {
                located_with::<u32>(v, at, errors, "write a number of bytes 1-262144, e.g. 1500")
            }
            "maxBytes" => located_with::<Option<u64>>(
                v,
                at,
                errors,
                "write a number of bytes, e.g. 100000000",
            ),
            "maxPackets" => {
                located_with::<Option<u64>>(v, at, errors, "write a number of packets, e.g. 10000")
            }
            "rotation" => locate_rotation(v, at, errors),
            "format" => located::<OutputFormat>(v, at, errors),
            _ => {}
        },
    );
}

fn locate_schedule(value: &Value, path: &str, errors: &mut Errors) {
    let required = [
        ("schedule", "write a cron expression, e.g. \"0 2 * * *\""),
        (
            "template",
            "write the capture each run creates, e.g. {\"duration\": \"10m\"}",
        ),
    ];
    object::<ScheduleSpec>(
        value,
        path,
        SCHEDULE_FIELDS,
        &required,
        errors,
        |key, v, at, errors| match key {
            "schedule" => located_with::<String>(v, at, errors, required[0].1),
            "timeZone" => located_with::<Option<String>>(
                v,
                at,
                errors,
                "write an IANA zone name, e.g. \"Europe/Berlin\"",
            ),
            "suspend" => located_with::<bool>(v, at, errors, "write true or false"),
            "concurrencyPolicy" => located::<ConcurrencyPolicy>(v, at, errors),
            "historyLimit" => {
                located_with::<Option<u32>>(v, at, errors, "write a number 0-100, e.g. 3")
            }
            "startingDeadlineSeconds" => {
                located_with::<Option<u64>>(v, at, errors, "write a number of seconds, e.g. 300")
            }
            "template" => locate_capture(v, at, errors),
            _ => {}
        },
    );
}

fn locate_selector(value: &Value, path: &str, errors: &mut Errors) {
    object::<LabelSelector>(
        value,
        path,
        SELECTOR_FIELDS,
        &[],
        errors,
        |key, v, at, errors| match key {
            "matchLabels" => located_with::<BTreeMap<String, String>>(v, at, errors, LABELS_HINT),
            "matchExpressions" => each(v, at, errors, locate_requirement),
            _ => {}
        },
    );
}

fn locate_requirement(value: &Value, path: &str, errors: &mut Errors) {
    let required = [
        ("key", "write the label key, e.g. \"tier\""),
        ("operator", "write In, NotIn, Exists or DoesNotExist"),
    ];
    object::<LabelSelectorRequirement>(
        value,
        path,
        REQUIREMENT_FIELDS,
        &required,
        errors,
        |key, v, at, errors| match key {
            "key" => located_with::<String>(v, at, errors, required[0].1),
            "operator" => located::<SelectorOperator>(v, at, errors),
            "values" => located_with::<Vec<String>>(
                v,
                at,
                errors,
                "write a list of strings, e.g. [\"a\", \"b\"]",
            ),
            _ => {}
        },
    );
}

fn locate_rule(value: &Value, path: &str, errors: &mut Errors) {
    object::<FilterRule>(
        value,
        path,
        RULE_FIELDS,
        &[],
        errors,
        |key, v, at, errors| match key {
            "protocol" => located::<Option<Protocol>>(v, at, errors),
            "ports" => each(v, at, errors, |port, at, errors| {
                located::<PortRange>(port, at, errors)
            }),
            "peers" => locate_peers(v, at, errors),
            _ => {}
        },
    );
}

/// Each bad peer at `peers[i]`; an empty or too long list at `peers` itself.
fn locate_peers(value: &Value, path: &str, errors: &mut Errors) {
    let before = errors.len();
    each(value, path, errors, |peer, at, errors| {
        located::<Peer>(peer, at, errors)
    });
    if errors.len() > before {
        return;
    }
    let problem = match value.as_array() {
        Some(peers) if peers.is_empty() => Some(FilterError::EmptyPeerList),
        Some(peers) => check_peer_count(peers.len()).err(),
        None => None,
    };
    if let Some(problem) = problem {
        errors.push(FieldError::new(path, problem.to_string()));
    }
}

fn locate_rotation(value: &Value, path: &str, errors: &mut Errors) {
    object::<Rotation>(
        value,
        path,
        ROTATION_FIELDS,
        &[],
        errors,
        |key, v, at, errors| match key {
            "maxFileBytes" => located_with::<Option<u64>>(
                v,
                at,
                errors,
                "write a number of bytes, e.g. 100000000",
            ),
            "maxFileSeconds" => {
                located_with::<Option<u64>>(v, at, errors, "write a number of seconds, e.g. 300")
            }
            "maxFiles" => {
                located_with::<Option<u32>>(v, at, errors, "write a number of files, e.g. 10")
            }
            _ => {}
        },
    );
}

/// Walks one JSON object: unknown and missing fields become errors, known fields go to `check`.
/// When that finds nothing but the object still does not decode as `T` (a rule with ports on
/// ICMP), the object's own error is reported at its path.
fn object<T: DeserializeOwned>(
    value: &Value,
    path: &str,
    known: &[&str],
    required: &[(&str, &str)],
    errors: &mut Errors,
    mut check: impl FnMut(&str, &Value, &str, &mut Errors),
) {
    let Some(fields) = value.as_object() else {
        errors.push(FieldError::new(
            path,
            format!(
                "expected an object {{...}} but found {}: write the fields inside braces",
                kind(value)
            ),
        ));
        return;
    };
    let before = errors.len();
    for (key, v) in fields {
        let at = format!("{path}.{key}");
        if known.contains(&key.as_str()) {
            check(key, v, &at, errors);
        } else {
            errors.push(FieldError::new(at, unknown_field_message(key, known)));
        }
    }
    for (field, hint) in required {
        if !fields.contains_key(*field) {
            errors.push(FieldError::new(
                format!("{path}.{field}"),
                format!("{field} is required: {hint}"),
            ));
        }
    }
    if errors.len() == before {
        if let Err(e) = T::deserialize(value) {
            errors.push(FieldError::new(path, e.to_string()));
        }
    }
}

/// Walks a JSON list, locating each item as `path[i]`.
fn each(
    value: &Value,
    path: &str,
    errors: &mut Errors,
    mut item: impl FnMut(&Value, &str, &mut Errors),
) {
    match value.as_array() {
        Some(items) => {
            for (i, v) in items.iter().enumerate() {
                item(v, &format!("{path}[{i}]"), errors);
            }
        }
        None if value.is_null() => {}
        None => errors.push(FieldError::new(
            path,
            format!(
                "expected a list [...] but found {}: write the items inside brackets",
                kind(value)
            ),
        )),
    }
}

/// Decodes one field as `T`, reporting serde's message (ours, for podcap's own types).
fn located<T: DeserializeOwned>(value: &Value, path: &str, errors: &mut Errors) {
    if let Err(e) = T::deserialize(value) {
        errors.push(FieldError::new(path, e.to_string()));
    }
}

/// Like [`located`] for serde's built-in types, whose messages say only what was expected, so
/// `hint` says what to write.
fn located_with<T: DeserializeOwned>(value: &Value, path: &str, errors: &mut Errors, hint: &str) {
    if let Err(e) = T::deserialize(value) {
        errors.push(message_with(path, &e, Some(hint)));
    }
}

fn message_with(path: &str, error: &serde_json::Error, hint: Option<&str>) -> FieldError {
    match hint {
        Some(hint) => FieldError::new(path, format!("{error}: {hint}")),
        None => FieldError::new(path, error.to_string()),
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// Names the known field a typo most likely meant (`snaplen` → `snapLength`), else lists them.
fn unknown_field_message(key: &str, known: &[&str]) -> String {
    let squash = |s: &str| -> String {
        s.chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .map(|c| c.to_ascii_lowercase())
            .collect()
    };
    let wanted = squash(key);
    let best = known
        .iter()
        .map(|k| {
            let candidate = squash(k);
            // A cut-off name (`snaplen`) is as likely as a typo, but an exact match wins.
            let distance = if candidate == wanted {
                0
            } else if candidate.starts_with(&wanted) && wanted.len() >= 4 {
                1
            } else {
                edit_distance(&wanted, &candidate)
            };
            (distance, *k)
        })
        .min_by_key(|(distance, _)| *distance)
        .filter(|(distance, _)| *distance <= 2);
    match best {
        Some((_, field)) => format!("unknown field {key:?}: did you mean {field:?}?"),
        None => format!(
            "unknown field {key:?}: remove it; the fields here are {}",
            known.join(", ")
        ),
    }
}

/// Levenshtein distance, small strings only (field names).
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitute = previous[j] + usize::from(ca != *cb);
            current.push(substitute.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn capture_errors(json: &str) -> Vec<(String, String)> {
        let value: Value = serde_json::from_str(json).unwrap();
        CaptureSpec::from_json_value(&value, "spec")
            .unwrap_err()
            .into_iter()
            .map(|e| (e.field, e.message))
            .collect()
    }

    #[test]
    fn an_array_where_an_object_belongs_is_refused_though_serde_would_take_it() {
        // serde's derived structs take their fields as an array in order; the spec must not.
        let rotation = capture_errors(r#"{"duration": "1m", "rotation": [4096, null, null]}"#);
        assert_eq!(rotation.len(), 1, "{rotation:?}");
        assert_eq!(rotation[0].0, "spec.rotation");
        assert!(rotation[0].1.contains("expected an object"), "{rotation:?}");
        let selector = capture_errors(r#"{"duration": "1m", "podSelector": [{"app": "web"}]}"#);
        assert_eq!(selector[0].0, "spec.podSelector", "{selector:?}");
        let rule = capture_errors(r#"{"duration": "1m", "filters": [["UDP", [53]]]}"#);
        assert_eq!(rule[0].0, "spec.filters[0]", "{rule:?}");
        let whole = capture_errors(r#"[null, null, null, null, null, null, null, "1m"]"#);
        assert_eq!(whole[0].0, "spec", "{whole:?}");
    }

    fn fields(errors: &[(String, String)]) -> Vec<&str> {
        errors.iter().map(|(f, _)| f.as_str()).collect()
    }

    #[test]
    fn good_specs_decode() {
        let value: Value = serde_json::from_str(
            r#"{"podSelector":{"matchLabels":{"app":"web"}},"filters":[{"protocol":"TCP","ports":[443]},{"protocol":"UDP","ports":[53]}],"duration":"10m"}"#,
        )
        .unwrap();
        let spec = CaptureSpec::from_json_value(&value, "spec").unwrap();
        assert_eq!(spec.filters.rules().len(), 2);
        let schedule: Value =
            serde_json::from_str(r#"{"schedule":"@daily","template":{"duration":"1m"}}"#).unwrap();
        ScheduleSpec::from_json_value(&schedule, "spec").unwrap();
    }

    #[test]
    fn filter_errors_are_located_down_to_the_port() {
        let errors = capture_errors(
            r#"{"filters":[{"protocol":"TCP","ports":[80]},{"protocol":"TCP","ports":[443,70000,"90:80"]},{"protocol":"gre"},{"protocol":"ICMP","ports":[1]}]}"#,
        );
        assert_eq!(
            errors,
            [
                ("spec.filters[1].ports[1]".to_string(), "port 70000 is out of range: ports are 0-65535".to_string()),
                ("spec.filters[1].ports[2]".to_string(), "port range 90:80 is backwards: write the lower port first, 80:90".to_string()),
                ("spec.filters[2].protocol".to_string(), "unknown protocol \"gre\": use TCP, UDP, ICMP, ICMPv6, SCTP, UDPLite or an IP protocol number 1-255".to_string()),
                ("spec.filters[3]".to_string(), "protocol ICMP has no ports: remove the ports, or use TCP, UDP, SCTP or UDPLite".to_string()),
            ]
        );
    }

    #[test]
    fn peer_errors_are_located_down_to_the_peer() {
        let errors = capture_errors(
            r#"{"filters":[{"protocol":"UDP","ports":[53],"peers":["10.96.0.10","10.0.0.1/8","kube-dns"]},{"peers":[]},{"protocol":"ICMP","peers":["fd00::/8"]},{"peer":["10.0.0.0/8"]}]}"#,
        );
        assert_eq!(
            errors,
            [
                ("spec.filters[0].peers[1]".to_string(), "10.0.0.1/8 has host bits set: write its network, 10.0.0.0/8, or the single address 10.0.0.1".to_string()),
                ("spec.filters[0].peers[2]".to_string(), "\"kube-dns\" is not an IP address or CIDR: write an IPv4 or IPv6 address such as 10.96.0.10 or fd00::1, or a network such as 10.0.0.0/8 or fd00::/8 (names are not resolved)".to_string()),
                ("spec.filters[1].peers".to_string(), "empty peer list: list addresses or CIDRs such as 10.96.0.10 or 10.0.0.0/8, or leave the peers out to match every address".to_string()),
                ("spec.filters[2]".to_string(), "protocol ICMP never meets these peers (ICMP is IPv4 only, ICMPv6 IPv6 only), so the rule would match nothing: add peers of the protocol's IP version, or change the protocol".to_string()),
                ("spec.filters[3].peer".to_string(), "unknown field \"peer\": did you mean \"peers\"?".to_string()),
            ]
        );
        let many: Vec<String> = (0..65).map(|i| format!("\"10.0.0.{i}\"")).collect();
        let errors = capture_errors(&format!(
            r#"{{"filters":[{{"peers":[{}]}}]}}"#,
            many.join(",")
        ));
        assert_eq!(fields(&errors), ["spec.filters[0].peers"]);
        assert!(errors[0].1.contains("at most 64"), "{errors:?}");
        let value: Value = serde_json::from_str(
            r#"{"filters":[{"protocol":"UDP","ports":[53],"peers":["10.96.0.10","fd00::/8"]},{"peers":["192.168.4.0/24"]}]}"#,
        )
        .unwrap();
        let spec = CaptureSpec::from_json_value(&value, "spec").unwrap();
        assert_eq!(spec.filters.rules()[0].peers().len(), 2);
        assert_eq!(
            spec.filters.to_string(),
            "udp:53@10.96.0.10,fd00::/8 or @192.168.4.0/24"
        );
    }

    #[test]
    fn every_bad_field_is_reported() {
        let errors = capture_errors(
            r#"{"snaplen":1500,"podSelector":{"matchExpressions":[{"key":"tier","operator":"in","values":["a"]},{"operator":"Exists"}]},"duration":600,"startTime":"tomorrow","endTime":5,"maxBytes":-1,"rotation":{"maxfiles":3},"format":"pcapx","nodeSelector":["linux"]}"#,
        );
        let mut got = errors.clone();
        got.sort();
        let by_field: BTreeMap<&str, &str> =
            got.iter().map(|(f, m)| (f.as_str(), m.as_str())).collect();
        assert_eq!(
            by_field.keys().copied().collect::<Vec<_>>(),
            [
                "spec.duration",
                "spec.endTime",
                "spec.format",
                "spec.maxBytes",
                "spec.nodeSelector",
                "spec.podSelector.matchExpressions[0].operator",
                "spec.podSelector.matchExpressions[1].key",
                "spec.rotation.maxfiles",
                "spec.snaplen",
                "spec.startTime",
            ]
        );
        assert_eq!(
            by_field["spec.snaplen"],
            "unknown field \"snaplen\": did you mean \"snapLength\"?"
        );
        assert_eq!(
            by_field["spec.rotation.maxfiles"],
            "unknown field \"maxfiles\": did you mean \"maxFiles\"?"
        );
        assert_eq!(
            by_field["spec.duration"],
            "duration 600 has no unit: write it with one, e.g. \"600s\" or \"600m\""
        );
        assert!(by_field["spec.startTime"].contains("write e.g. \"2025-06-01T02:00:00Z\""));
        assert!(by_field["spec.endTime"].ends_with(TIME_HINT));
        assert!(by_field["spec.maxBytes"].ends_with("write a number of bytes, e.g. 100000000"));
        assert!(by_field["spec.nodeSelector"].ends_with(LABELS_HINT));
        assert!(by_field["spec.format"].contains("expected `pcapng` or `pcap`"));
        assert!(by_field["spec.podSelector.matchExpressions[0].operator"]
            .contains("expected one of `In`, `NotIn`, `Exists`, `DoesNotExist`"));
        assert_eq!(
            by_field["spec.podSelector.matchExpressions[1].key"],
            "key is required: write the label key, e.g. \"tier\""
        );
        assert_eq!(fields(&errors).len(), 10);
    }

    #[test]
    fn unknown_fields_without_a_near_match_list_the_fields() {
        let errors = capture_errors(r#"{"colour":"blue"}"#);
        assert_eq!(
            errors[0].1,
            "unknown field \"colour\": remove it; the fields here are podSelector, nodeSelector, filters, bpfFilter, capturePoint, startTime, endTime, duration, snapLength, maxBytes, maxPackets, rotation, format"
        );
        assert_eq!(
            capture_errors(r#"{"pod_selector":{}}"#)[0].1,
            "unknown field \"pod_selector\": did you mean \"podSelector\"?"
        );
        assert_eq!(
            capture_errors(r#"{"filter":[]}"#)[0].1,
            "unknown field \"filter\": did you mean \"filters\"?"
        );
    }

    #[test]
    fn bpf_filter_decodes_and_a_wrong_type_is_located() {
        let value: Value =
            serde_json::from_str(r#"{"bpfFilter":"tcp[tcpflags] & tcp-syn != 0"}"#).unwrap();
        let spec = CaptureSpec::from_json_value(&value, "spec").unwrap();
        assert_eq!(
            spec.bpf_filter.as_deref(),
            Some("tcp[tcpflags] & tcp-syn != 0")
        );
        assert_eq!(
            capture_errors(r#"{"bpfFilter":["tcp"]}"#),
            [(
                "spec.bpfFilter".to_string(),
                "invalid type: sequence, expected a string: write a pcap-filter expression as a string, e.g. \"tcp port 443\"".to_string()
            )]
        );
        assert_eq!(
            capture_errors(r#"{"bpffilter":"tcp"}"#)[0].1,
            "unknown field \"bpffilter\": did you mean \"bpfFilter\"?"
        );
    }

    #[test]
    fn capture_point_decodes_and_a_wrong_one_is_located() {
        let value: Value = serde_json::from_str(r#"{"capturePoint":"podNetns"}"#).unwrap();
        let spec = CaptureSpec::from_json_value(&value, "spec").unwrap();
        assert_eq!(spec.capture_point, CapturePoint::PodNetns);
        let errors = capture_errors(r#"{"capturePoint":"eth0"}"#);
        assert_eq!(fields(&errors), ["spec.capturePoint"]);
        assert!(
            errors[0].1.contains("expected `hostVeth` or `podNetns`"),
            "{errors:?}"
        );
        // The default is left out when written, so older readers see the spec they know.
        let value: Value = serde_json::from_str(r#"{"capturePoint":"hostVeth"}"#).unwrap();
        let spec = CaptureSpec::from_json_value(&value, "spec").unwrap();
        assert_eq!(spec, CaptureSpec::default());
        assert!(serde_json::to_value(&spec)
            .unwrap()
            .get("capturePoint")
            .is_none());
    }

    #[test]
    fn wrong_shapes_say_what_to_write() {
        assert_eq!(
            capture_errors(r#"[1]"#),
            [(
                "spec".to_string(),
                "expected an object {...} but found a list: write the fields inside braces"
                    .to_string()
            )]
        );
        assert_eq!(
            capture_errors(r#"{"filters":{"protocol":"TCP"}}"#),
            [(
                "spec.filters".to_string(),
                "expected a list [...] but found an object: write the items inside brackets"
                    .to_string()
            )]
        );
    }

    #[test]
    fn schedule_errors_reach_into_the_template() {
        let value: Value = serde_json::from_str(
            r#"{"timezone":"UTC","suspend":"yes","template":{"filters":[{"protocol":"TCP","ports":["x"]}]}}"#,
        )
        .unwrap();
        let mut errors: Vec<(String, String)> = ScheduleSpec::from_json_value(&value, "spec")
            .unwrap_err()
            .into_iter()
            .map(|e| (e.field, e.message))
            .collect();
        errors.sort();
        let found = fields(&errors);
        assert_eq!(
            found,
            [
                "spec.schedule",
                "spec.suspend",
                "spec.template.filters[0].ports[0]",
                "spec.timezone"
            ]
        );
        assert_eq!(
            errors[0].1,
            "schedule is required: write a cron expression, e.g. \"0 2 * * *\""
        );
        assert!(errors[1].1.ends_with("write true or false"));
        assert_eq!(
            errors[2].1,
            "\"x\" is not a port: write a number such as 443 or a range such as 8000:8100"
        );
        assert_eq!(
            errors[3].1,
            "unknown field \"timezone\": did you mean \"timeZone\"?"
        );
    }

    #[test]
    fn edit_distance_basics() {
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("same", "same"), 0);
    }
}
