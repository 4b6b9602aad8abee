//! JSON schemas (feature `kube`) for the types whose serde shape is written by hand, so that the
//! CRDs' OpenAPI v3 schemas describe what podcap really reads and writes, in the restricted
//! "structural" form kube-apiserver demands: no `$ref`, no `oneOf`, no type unions.
//!
//! A protocol is a name or a number 1-255, a port is a number or a `"from:to"` string, a filter
//! is a bare array of rules, and a capture duration is a string such as `"10m"`. The plain structs
//! and enums derive `JsonSchema` next to their serde derives instead. Also here: the schemars
//! transform that keeps defaults out of statuses.
//!
//! Why protocols and ports are not `x-kubernetes-int-or-string`: kube-apiserver up to 1.20
//! cannot build its server-side-apply schema for a CRD with any int-or-string field (it logs
//! "error building openapi models ... has invalid property: anyOf", kubernetes#90902) and then
//! treats every list of that resource as atomic, so one node's agent applying
//! `status.targets` would delete every other node's entries. An untyped value
//! (`x-kubernetes-preserve-unknown-fields`) keeps the list-map merge working on every version,
//! and the same `pattern` (strings only) and `minimum`/`maximum` (numbers only) still reject bad
//! values at admission. Objects or arrays there pass the schema and are refused by podcap's own
//! validation.

use std::borrow::Cow;

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};

use crate::duration::CaptureDuration;
use crate::filter::{Filter, FilterRule, FilterRuleWire, PortRange, Protocol};
use crate::peer::{Peer, MAX_PEER_LENGTH, PEER_PATTERN};

/// The schema of a value that is a number or a string (see the module comment for why it is not
/// `x-kubernetes-int-or-string`).
fn number_or_string(description: &str, minimum: u32, maximum: u32, pattern: String) -> Schema {
    json_schema!({
        "description": description,
        "x-kubernetes-preserve-unknown-fields": true,
        "minimum": minimum,
        "maximum": maximum,
        "pattern": pattern,
    })
}

/// Every spelling `Protocol::from_str` accepts for a named protocol, lower case.
const PROTOCOL_NAMES: [&str; 9] = [
    "tcp", "udp", "icmp", "icmpv4", "icmpv6", "icmp6", "sctp", "udplite", "udp-lite",
];

/// A regular expression (RE2 and ECMA 262 alike) matching `name` in any letter case:
/// `tcp` becomes `[Tt][Cc][Pp]`. Written out because neither dialect shares a case-insensitive flag.
fn any_case(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphabetic() {
                format!("[{}{}]", c.to_ascii_uppercase(), c.to_ascii_lowercase())
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// The pattern a protocol written as a string must match: a known name in any case, or digits
/// (whose range the agent checks, as it does for numbers written as strings).
pub(crate) fn protocol_pattern() -> String {
    let names: Vec<String> = PROTOCOL_NAMES.iter().map(|n| any_case(n)).collect();
    format!(r"^\s*([0-9]+|{})\s*$", names.join("|"))
}

impl JsonSchema for Protocol {
    fn schema_name() -> Cow<'static, str> {
        Cow::Borrowed("Protocol")
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        number_or_string(
            "An IP protocol: TCP, UDP, ICMP (IPv4), ICMPv6 (IPv6), SCTP, UDPLite (names in any case), or a protocol number 1-255.",
            1,
            255,
            protocol_pattern(),
        )
    }
}

impl JsonSchema for PortRange {
    fn schema_name() -> Cow<'static, str> {
        Cow::Borrowed("PortRange")
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        number_or_string(
            "A port 0-65535, or an inclusive range written \"8000:8100\" (\"8000-8100\" is accepted too).",
            0,
            65535,
            r"^\s*[0-9]+\s*([:-]\s*[0-9]+\s*)?$".to_string(),
        )
    }
}

impl JsonSchema for Peer {
    fn schema_name() -> Cow<'static, str> {
        Cow::Borrowed("Peer")
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "An IPv4 or IPv6 address (\"10.96.0.10\", \"fd00::1\") or network in CIDR notation (\"10.0.0.0/8\", \"fd00::/8\", no host bits set), matched against the packet's source or destination.",
            "type": "string",
            "maxLength": MAX_PEER_LENGTH,
            "pattern": PEER_PATTERN,
        })
    }
}

/// A rule's schema is the derived schema of its wire shape, the struct serde reads and writes.
impl JsonSchema for FilterRule {
    fn schema_name() -> Cow<'static, str> {
        Cow::Borrowed("FilterRule")
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        FilterRuleWire::json_schema(generator)
    }
}

impl JsonSchema for Filter {
    fn schema_name() -> Cow<'static, str> {
        Cow::Borrowed("Filter")
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "Rules OR'ed together; inside a rule protocol AND port AND peer. Empty keeps every packet.",
            "type": "array",
            "items": generator.subschema_for::<FilterRule>(),
        })
    }
}

impl JsonSchema for CaptureDuration {
    fn schema_name() -> Cow<'static, str> {
        Cow::Borrowed("CaptureDuration")
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A positive length with units, as in Kubernetes and Go: \"90s\", \"10m\", \"1h30m\".",
            "type": "string",
            "minLength": 2,
        })
    }
}

/// schemars transform for statuses: removes every `default`. A status is written whole by
/// podcap's components; defaults there would only make the API server invent values (an empty
/// `node`, zero counters) in objects no component wrote.
pub(crate) fn without_defaults(schema: &mut Schema) {
    schemars::transform::transform_subschemas(&mut without_defaults, schema);
    if let Some(object) = schema.as_object_mut() {
        object.remove("default");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_pattern_accepts_what_the_parser_accepts() {
        // Go's regexp and the `regex` crate agree on this subset; test the intent by hand.
        let pattern = protocol_pattern();
        assert!(pattern.starts_with(r"^\s*([0-9]+|[Tt][Cc][Pp]|"));
        assert!(pattern.contains("[Uu][Dd][Pp]-[Ll][Ii][Tt][Ee]"));
        for name in PROTOCOL_NAMES {
            assert!(name.parse::<Protocol>().is_ok(), "{name}");
        }
    }
}
