//! OpenAPI schemas (feature `openapi`) for the types whose JSON shape serde does not derive:
//! they are written by hand here so that the document describes what the API really reads and
//! writes. A protocol is a name or a number 1-255, a port is a number or a `"from:to"` string,
//! a peer is an address or CIDR string, a filter is a bare array of rules, and a capture duration is a string such as `"10m"`. The
//! plain structs and enums derive `ToSchema` next to their serde derives instead.

use std::borrow::Cow;

use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, OneOfBuilder, Schema, Type};
use utoipa::openapi::{Ref, RefOr};
use utoipa::{PartialSchema, ToSchema};

use crate::capture::CaptureSpec;
use crate::duration::CaptureDuration;
use crate::filter::{Filter, FilterRule, FilterRuleWire, PortRange, Protocol};
use crate::peer::{Peer, MAX_PEER_LENGTH, PEER_PATTERN};

/// A reference to the named component schema of `T`.
fn reference<T: ToSchema>() -> RefOr<Schema> {
    RefOr::Ref(Ref::from_schema_name(T::name()))
}

/// Adds `T` and every schema it refers to, as derived types do for their fields.
fn collect<T: ToSchema>(schemas: &mut Vec<(String, RefOr<Schema>)>) {
    schemas.push((T::name().into_owned(), T::schema()));
    T::schemas(schemas);
}

impl PartialSchema for Protocol {
    fn schema() -> RefOr<Schema> {
        let names: Vec<String> = Protocol::NAMED.iter().map(|p| p.api_name()).collect();
        OneOfBuilder::new()
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .enum_values(Some(names))
                    .description(Some(
                        "A protocol name as podcap writes it; on input names are case-insensitive \
                         and `ICMPv4`, `ICMP6` and `UDP-Lite` are accepted too.",
                    )),
            )
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .minimum(Some(1))
                    .maximum(Some(255))
                    .description(Some(
                        "Any other IP protocol number; known numbers (6, 17, ...) are written back \
                         as their name.",
                    )),
            )
            .description(Some(
                "An IP protocol: `TCP`, `UDP`, `ICMP` (IPv4), `ICMPv6` (IPv6), `SCTP`, `UDPLite`, \
                 or a protocol number 1-255.",
            ))
            .examples([serde_json::json!("TCP"), serde_json::json!(47)])
            .into()
    }
}

impl ToSchema for Protocol {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Protocol")
    }
}

impl PartialSchema for PortRange {
    fn schema() -> RefOr<Schema> {
        OneOfBuilder::new()
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .minimum(Some(0))
                    .maximum(Some(65535))
                    .description(Some("One port.")),
            )
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .pattern(Some(r"^\s*[0-9]+\s*([:-]\s*[0-9]+\s*)?$"))
                    .description(Some(
                        "An inclusive range `\"from:to\"` (podcap writes this form; `\"from-to\"` \
                         is accepted too), or one port as a string.",
                    )),
            )
            .description(Some(
                "A port 0-65535 or an inclusive range `\"8000:8100\"`; a range of one port is \
                 written back as a number.",
            ))
            .examples([serde_json::json!(443), serde_json::json!("8000:8100")])
            .into()
    }
}

impl ToSchema for PortRange {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("PortRange")
    }
}

impl PartialSchema for Peer {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .max_length(Some(MAX_PEER_LENGTH))
            .pattern(Some(PEER_PATTERN))
            .description(Some(
                "An IPv4 or IPv6 address (`\"10.96.0.10\"`, `\"fd00::1\"`) or a network in CIDR \
                 notation (`\"10.0.0.0/8\"`, `\"fd00::/8\"`; host bits must be zero, so \
                 `\"10.0.0.1/8\"` is refused with the network to write instead), matched against \
                 the packet's source or destination. Names are not resolved.",
            ))
            .examples([
                serde_json::json!("10.96.0.10"),
                serde_json::json!("10.0.0.0/8"),
                serde_json::json!("fd00::/8"),
            ])
            .into()
    }
}

impl ToSchema for Peer {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Peer")
    }
}

/// A rule's schema is the derived schema of its wire shape, the struct serde reads and writes.
impl PartialSchema for FilterRule {
    fn schema() -> RefOr<Schema> {
        FilterRuleWire::schema()
    }
}

impl ToSchema for FilterRule {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("FilterRule")
    }

    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        FilterRuleWire::schemas(schemas);
    }
}

impl PartialSchema for Filter {
    fn schema() -> RefOr<Schema> {
        ArrayBuilder::new()
            .items(reference::<FilterRule>())
            .description(Some(
                "Rules OR'ed together; inside a rule protocol AND port AND peer. Empty keeps every \
                 packet.",
            ))
            .examples([serde_json::json!([
                {"protocol": "TCP", "ports": [443, "8000:8100"]},
                {"protocol": "UDP", "ports": [53], "peers": ["10.96.0.10"]},
                {"peers": ["10.0.0.0/8", "fd00::/8"]}
            ])])
            .into()
    }
}

impl ToSchema for Filter {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Filter")
    }

    fn schemas(schemas: &mut Vec<(String, RefOr<Schema>)>) {
        collect::<FilterRule>(schemas);
    }
}

/// A schedule's `template`: the capture spec with its window a required `duration` and no
/// `startTime` or `endTime`, as the schedule validator wants (each run starts at its scheduled
/// time, so a fixed time would be wrong from the second run on). Without this the document
/// allowed templates the server refuses, and generated clients and fuzzers wrote them.
pub(crate) fn schedule_template() -> Schema {
    let mut schema = match CaptureSpec::schema() {
        RefOr::T(schema) => schema,
        // The derived schema is inline; a reference would be CaptureSpec's own component.
        RefOr::Ref(_) => return ObjectBuilder::new().into(),
    };
    if let Schema::Object(object) = &mut schema {
        for field in ["startTime", "endTime"] {
            object.properties.remove(field);
        }
        // Not the capture's nullable `duration`: a template's null duration is refused too.
        object
            .properties
            .insert("duration".to_string(), reference::<CaptureDuration>());
        object.required.retain(|field| field != "duration");
        object.required.push("duration".to_string());
        object.description = Some(
            "The capture each run creates: a capture spec whose window is a `duration` \
             (required; `startTime` and `endTime` are refused)."
                .to_string(),
        );
    }
    schema
}

impl PartialSchema for CaptureDuration {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .min_length(Some(2))
            .description(Some(
                "A positive length with units, as in Kubernetes and Go: `\"90s\"`, `\"10m\"`, \
                 `\"1h30m\"` (humantime syntax, so `\"1h 30m\"` and `\"2days\"` work too). \
                 A bare number is refused: it has no unit.",
            ))
            .examples([serde_json::json!("10m"), serde_json::json!("1h30m")])
            .into()
    }
}

impl ToSchema for CaptureDuration {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("CaptureDuration")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CaptureSpec;

    fn json<T: PartialSchema>() -> serde_json::Value {
        serde_json::to_value(T::schema()).unwrap()
    }

    #[test]
    fn protocol_is_a_name_or_a_number() {
        let schema = json::<Protocol>();
        let options = schema["oneOf"].as_array().unwrap();
        assert_eq!(options[0]["type"], "string");
        assert_eq!(
            options[0]["enum"],
            serde_json::json!(["TCP", "UDP", "ICMP", "ICMPv6", "SCTP", "UDPLite"])
        );
        assert_eq!(options[1]["type"], "integer");
        assert_eq!(
            (
                options[1]["minimum"].as_f64(),
                options[1]["maximum"].as_f64()
            ),
            (Some(1.0), Some(255.0))
        );
    }

    #[test]
    fn rotation_documents_the_smallest_file_the_validator_takes() {
        let rotation = json::<crate::Rotation>();
        assert_eq!(
            rotation["properties"]["maxFileBytes"]["minimum"].as_f64(),
            Some(crate::limits::MIN_FILE_BYTES as f64),
            "{rotation}"
        );
        assert_eq!(rotation["additionalProperties"], false);
    }

    #[test]
    fn a_schedule_documents_what_its_validator_wants() {
        let schedule = json::<crate::ScheduleSpec>();
        let properties = &schedule["properties"];
        assert_eq!(properties["schedule"]["minLength"], 1, "{schedule}");
        assert_eq!(
            properties["historyLimit"]["maximum"].as_f64(),
            Some(crate::MAX_HISTORY_LIMIT as f64)
        );
        assert_eq!(properties["startingDeadlineSeconds"]["minimum"], 1);
        let template = &properties["template"];
        assert_eq!(
            template["properties"]["duration"]["$ref"], "#/components/schemas/CaptureDuration",
            "{template}"
        );
        assert!(template["properties"]["startTime"].is_null());
        assert!(template["properties"]["endTime"].is_null());
        assert!(template["required"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!("duration")));
        assert_eq!(template["additionalProperties"], false);
    }

    #[test]
    fn ports_are_numbers_or_range_strings() {
        let schema = json::<PortRange>();
        let options = schema["oneOf"].as_array().unwrap();
        assert_eq!(options[0]["type"], "integer");
        assert_eq!(options[1]["type"], "string");
    }

    #[test]
    fn a_filter_is_an_array_of_rules_without_extra_fields() {
        let filter = json::<Filter>();
        assert_eq!(filter["type"], "array");
        assert_eq!(filter["items"]["$ref"], "#/components/schemas/FilterRule");
        let rule = json::<FilterRule>();
        assert_eq!(rule["additionalProperties"], false);
        assert_eq!(
            rule["properties"]["protocol"]["oneOf"][0]["$ref"],
            "#/components/schemas/Protocol"
        );
        assert_eq!(
            rule["properties"]["ports"]["items"]["$ref"],
            "#/components/schemas/PortRange"
        );
        let peers = &rule["properties"]["peers"];
        assert_eq!(
            peers["items"]["$ref"], "#/components/schemas/Peer",
            "{rule}"
        );
        assert_eq!(
            (peers["minItems"].as_u64(), peers["maxItems"].as_u64()),
            (Some(1), Some(crate::MAX_PEERS as u64)),
            "{rule}"
        );
        let peer = json::<Peer>();
        assert_eq!(peer["type"], "string");
        let mut schemas = Vec::new();
        Filter::schemas(&mut schemas);
        let names: Vec<&str> = schemas.iter().map(|(name, _)| name.as_str()).collect();
        for wanted in ["FilterRule", "Protocol", "PortRange", "Peer"] {
            assert!(names.contains(&wanted), "{wanted} missing from {names:?}");
        }
    }

    #[test]
    fn capture_spec_uses_the_wire_names() {
        let spec = json::<CaptureSpec>();
        let properties = spec["properties"].as_object().unwrap();
        let mut names: Vec<&str> = properties.keys().map(String::as_str).collect();
        names.sort_unstable();
        assert_eq!(
            names,
            [
                "bpfFilter",
                "capturePoint",
                "duration",
                "endTime",
                "filters",
                "format",
                "maxBytes",
                "maxPackets",
                "nodeSelector",
                "podSelector",
                "rotation",
                "snapLength",
                "startTime"
            ]
        );
        assert_eq!(spec["additionalProperties"], false);
        assert!(
            spec.get("required").is_none(),
            "every spec field is optional: {spec}"
        );
        assert_eq!(properties["filters"]["$ref"], "#/components/schemas/Filter");
        assert_eq!(properties["startTime"]["format"], "date-time");
        assert_eq!(
            properties["bpfFilter"]["maxLength"].as_u64(),
            Some(crate::capture::MAX_BPF_FILTER_CHARS as u64)
        );
        assert_eq!(
            properties["snapLength"]["default"],
            crate::DEFAULT_SNAP_LENGTH
        );
        assert_eq!(
            properties["snapLength"]["maximum"].as_f64(),
            Some(f64::from(crate::MAX_SNAP_LENGTH))
        );
    }
}
