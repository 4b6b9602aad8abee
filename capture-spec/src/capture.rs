//! The capture spec: what one capture records (`PacketCapture.spec`, the body of
//! `POST /api/v1/namespaces/{ns}/captures`). Which pods and nodes, which packets, when, how much,
//! and in which file format.
//!
//! The JSON shape is a superset of Calico's PacketCapture, in camelCase; optional fields are left
//! out when unset, and unknown fields are refused so that a typo such as `snaplen` is an error
//! rather than a silently ignored limit. Validation of the whole spec lives in `validate`.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::capture_point::CapturePoint;
use crate::duration::CaptureDuration;
use crate::filter::Filter;
use crate::limits::default_snap_length;
use crate::limits::{CaptureLimits, OutputFormat, Rotation, DEFAULT_SNAP_LENGTH};
use crate::selector::LabelSelector;
#[cfg(feature = "kube")]
use crate::status::CaptureStatus;

/// `PacketCapture.spec`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "kube", derive(kube::CustomResource, schemars::JsonSchema))]
// The `PacketCapture` resource (see `crd`). Printer columns can only show single values (no sums
// over `targets`), hence the totals in the status. `pcap`/`pcaps` collide with no built-in kind.
#[cfg_attr(
    feature = "kube",
    kube(
        group = "podcap.io",
        version = "v1alpha1",
        kind = "PacketCapture",
        plural = "packetcaptures",
        singular = "packetcapture",
        namespaced,
        status = "CaptureStatus",
        derive = "PartialEq",
        shortname = "pcap",
        shortname = "pcaps",
        category = "podcap",
        doc = "A packet capture: which pods to record, which packets, when and how much (spec), and per captured pod interface what was recorded (status).",
        printcolumn = r#"{"name": "Phase", "type": "string", "jsonPath": ".status.phase", "description": "Scheduled, Capturing, Completed, Stopped or Failed"}"#,
        printcolumn = r#"{"name": "Pods", "type": "integer", "jsonPath": ".status.pods", "description": "Pods being or having been captured"}"#,
        printcolumn = r#"{"name": "Nodes", "type": "integer", "jsonPath": ".status.nodes", "description": "Nodes capturing", "priority": 1}"#,
        printcolumn = r#"{"name": "Packets", "type": "integer", "jsonPath": ".status.packets", "description": "Packets written, over all targets"}"#,
        printcolumn = r#"{"name": "Bytes", "type": "integer", "jsonPath": ".status.bytes", "description": "Bytes of packet data written, over all targets", "priority": 1}"#,
        printcolumn = r#"{"name": "Drops", "type": "integer", "jsonPath": ".status.drops", "description": "Packets the kernel dropped, over all targets"}"#,
        printcolumn = r#"{"name": "Message", "type": "string", "jsonPath": ".status.message", "priority": 1}"#,
        printcolumn = r#"{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}"#,
    )
)]
#[cfg_attr(
    feature = "kube",
    schemars(
        description = "What to capture: which pods (podSelector, nodeSelector), which packets (filters, bpfFilter), where (capturePoint), when (startTime, endTime or duration), how much (snapLength, maxBytes, maxPackets, rotation) and in which file format."
    )
)]
pub struct CaptureSpec {
    /// The pods to capture, in the capture's namespace; empty selects every pod there.
    #[serde(default)]
    pub pod_selector: LabelSelector,
    /// Only capture pods on nodes with all these labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<BTreeMap<String, String>>,
    /// Which packets to keep; empty keeps every packet.
    #[serde(default)]
    pub filters: Filter,
    /// A pcap-filter(7) expression as tcpdump takes it, e.g. `tcp[tcpflags] & tcp-syn != 0`,
    /// ANDed with `filters`. libpcap compiles it inside podcap (never a shell or a command line);
    /// at most 1024 characters on one line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "openapi",
        schema(
            max_length = 1024,
            example = "tcp[tcpflags] & tcp-syn != 0 and net 10.96.0.0/12"
        )
    )]
    #[cfg_attr(feature = "kube", schemars(length(max = 1024)))]
    pub bpf_filter: Option<String>,
    /// Where the pods' packets are captured: `hostVeth` (default), the pod's host-side
    /// interface, or `podNetns`, the pod's own interface inside its network namespace, which also
    /// sees what eBPF datapaths (bpf_redirect_peer, netkit) deliver past the host side. In a
    /// cluster `podNetns` needs the agent's netns-fallback overlay (hostPID, SYS_ADMIN,
    /// SYS_PTRACE). Either way a packet the pod sends is recorded as outbound. Left out when
    /// `hostVeth`.
    #[serde(default, skip_serializing_if = "CapturePoint::is_default")]
    pub capture_point: CapturePoint,
    /// When to start (RFC 3339); unset or past means now.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::time::deserialize_optional"
    )]
    pub start_time: Option<DateTime<Utc>>,
    /// When to stop (RFC 3339); exclusive with `duration`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::time::deserialize_optional"
    )]
    pub end_time: Option<DateTime<Utc>>,
    /// How long to capture from the start, e.g. `"10m"`; exclusive with `endTime`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<CaptureDuration>,
    /// Bytes kept of each packet.
    #[serde(default = "default_snap_length")]
    #[cfg_attr(feature = "openapi", schema(default = default_snap_length, minimum = 1, maximum = 262_144))]
    #[cfg_attr(feature = "kube", schemars(range(min = 1, max = 262_144)))]
    pub snap_length: u32,
    /// Stop after this many bytes of packet data, over all targets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1))]
    #[cfg_attr(feature = "kube", schemars(range(min = 1)))]
    pub max_bytes: Option<u64>,
    /// Stop after this many packets, over all targets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1))]
    #[cfg_attr(feature = "kube", schemars(range(min = 1)))]
    pub max_packets: Option<u64>,
    /// When to start a new file, and how many to keep.
    #[serde(default)]
    pub rotation: Rotation,
    /// `pcapng` (default) or `pcap`.
    #[serde(default)]
    pub format: OutputFormat,
}

impl Default for CaptureSpec {
    /// Every pod of the namespace, every packet, from now until stopped, whole packets, pcapng.
    fn default() -> Self {
        CaptureSpec {
            pod_selector: LabelSelector::default(),
            node_selector: None,
            filters: Filter::default(),
            bpf_filter: None,
            capture_point: CapturePoint::default(),
            start_time: None,
            end_time: None,
            duration: None,
            snap_length: DEFAULT_SNAP_LENGTH,
            max_bytes: None,
            max_packets: None,
            rotation: Rotation::default(),
            format: OutputFormat::default(),
        }
    }
}

/// The most characters `bpfFilter` may have: a long tcpdump expression fits in a quarter of
/// this, and the bound keeps libpcap's compile time and the program it makes small.
pub const MAX_BPF_FILTER_CHARS: usize = 1024;

/// What is wrong with a `bpfFilter` text before libpcap is asked, if anything: too long, or a
/// control character. pcap-filter(7) reads tabs and line breaks as spaces, so an expression
/// never needs them (nor any other control character); refusing them keeps the expression one
/// line wherever it is shown (logs, `kubectl get -o wide`, Wireshark's `if_filter`), and a NUL
/// would cut the C string libpcap reads. Whether the text is a valid expression is libpcap's to
/// say: the agent compiles it, and the API asks the agent's compiler before storing a capture.
pub fn bpf_filter_problem(expression: &str) -> Option<String> {
    let length = expression.chars().count();
    if length > MAX_BPF_FILTER_CHARS {
        return Some(format!(
            "bpfFilter is {length} characters long; the most is {MAX_BPF_FILTER_CHARS}: shorten \
             the expression, e.g. one \"net 10.1.0.0/16\" instead of many hosts"
        ));
    }
    let (position, control) = expression
        .chars()
        .enumerate()
        .find(|(_, c)| c.is_control())?;
    let what = match control {
        '\n' => "a line break (\\n)".to_string(),
        '\r' => "a carriage return (\\r)".to_string(),
        '\t' => "a tab".to_string(),
        '\0' => "a NUL character".to_string(),
        other => format!("the control character U+{:04X}", u32::from(other)),
    };
    Some(format!(
        "bpfFilter contains {what} at character {}: write the expression on one line, with \
         plain spaces between its words",
        position + 1
    ))
}

impl CaptureSpec {
    /// The limits the capture engine enforces.
    pub fn limits(&self) -> CaptureLimits {
        CaptureLimits {
            snap_length: self.snap_length,
            max_bytes: self.max_bytes,
            max_packets: self.max_packets,
            rotation: self.rotation,
        }
    }

    /// Whether a node with `labels` may run this capture (always, without a `nodeSelector`).
    pub fn selects_node(&self, labels: &BTreeMap<String, String>) -> bool {
        self.node_selector.as_ref().is_none_or(|wanted| {
            wanted
                .iter()
                .all(|(key, value)| labels.get(key) == Some(value))
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use chrono::TimeZone;

    use super::*;
    use crate::filter::{PortRange, Protocol};

    /// The README's example capture: TCP 443 and UDP 53 of `app=web` for ten minutes.
    const README_EXAMPLE: &str = r#"{"podSelector":{"matchLabels":{"app":"web"}},"filters":[{"protocol":"TCP","ports":[443]},{"protocol":"UDP","ports":[53]}],"duration":"10m"}"#;

    #[test]
    fn design_example_parses_with_defaults() {
        let spec: CaptureSpec = serde_json::from_str(README_EXAMPLE).unwrap();
        assert_eq!(
            spec.pod_selector,
            LabelSelector::from_labels([("app", "web")])
        );
        let rules = spec.filters.rules();
        assert_eq!(rules.len(), 2);
        assert_eq!(rules[0].protocol(), Some(Protocol::Tcp));
        assert_eq!(rules[0].ports(), &[PortRange::single(443)]);
        assert_eq!(rules[1].protocol(), Some(Protocol::Udp));
        assert_eq!(spec.duration.unwrap().as_std(), Duration::from_secs(600));
        assert_eq!(spec.snap_length, 262_144);
        assert_eq!(spec.format, OutputFormat::Pcapng);
        assert_eq!(spec.rotation, Rotation::default());
        assert_eq!(spec.start_time, None);
        let json = serde_json::to_string(&spec).unwrap();
        assert_eq!(
            json,
            r#"{"podSelector":{"matchLabels":{"app":"web"}},"filters":[{"protocol":"TCP","ports":[443]},{"protocol":"UDP","ports":[53]}],"duration":"10m","snapLength":262144,"rotation":{},"format":"pcapng"}"#
        );
        assert_eq!(serde_json::from_str::<CaptureSpec>(&json).unwrap(), spec);
    }

    #[test]
    fn full_spec_round_trips_with_camel_case_names() {
        let json = r#"{
            "podSelector": {"matchLabels": {"app": "db"}, "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]}]},
            "nodeSelector": {"kubernetes.io/os": "linux"},
            "filters": [{"protocol": "TCP", "ports": [5432, "8000:8100"]}, {"protocol": "ICMPv6"}],
            "startTime": "2025-06-01T04:00:00+02:00",
            "endTime": "2025-06-01T02:10:00Z",
            "snapLength": 1500,
            "maxBytes": 1000000,
            "maxPackets": 5000,
            "rotation": {"maxFileBytes": 100000, "maxFileSeconds": 60, "maxFiles": 3},
            "format": "pcap"
        }"#;
        let spec: CaptureSpec = serde_json::from_str(json).unwrap();
        assert_eq!(
            spec.start_time,
            Some(Utc.with_ymd_and_hms(2025, 6, 1, 2, 0, 0).unwrap())
        );
        assert_eq!(
            spec.node_selector.as_ref().unwrap()["kubernetes.io/os"],
            "linux"
        );
        assert_eq!(spec.format, OutputFormat::Pcap);
        let value = serde_json::to_value(&spec).unwrap();
        let mut keys: Vec<&str> = value
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
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
        assert_eq!(value["startTime"], "2025-06-01T02:00:00Z");
        assert_eq!(value["rotation"]["maxFileSeconds"], 60);
        assert_eq!(value["filters"][0]["ports"][1], "8000:8100");
        assert_eq!(serde_json::from_value::<CaptureSpec>(value).unwrap(), spec);
        let limits = spec.limits();
        assert_eq!(limits.snap_length, 1500);
        assert_eq!(limits.max_bytes, Some(1_000_000));
        assert_eq!(limits.max_packets, Some(5000));
        assert_eq!(limits.rotation.max_files, Some(3));
    }

    #[test]
    fn empty_spec_is_the_default() {
        let spec: CaptureSpec = serde_json::from_str("{}").unwrap();
        assert_eq!(spec, CaptureSpec::default());
        assert_eq!(spec.limits(), CaptureLimits::default());
    }

    #[test]
    fn unknown_fields_are_refused() {
        for (json, field) in [
            (r#"{"snaplen": 100}"#, "snaplen"),
            (r#"{"rotation": {"maxfiles": 3}}"#, "maxfiles"),
            (r#"{"podSelector": {"matchLabel": {}}}"#, "matchLabel"),
            (
                r#"{"filters": [{"protocol": "TCP", "port": [80]}]}"#,
                "port",
            ),
        ] {
            let err = serde_json::from_str::<CaptureSpec>(json)
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(&format!("unknown field `{field}`")),
                "{json}: {err}"
            );
        }
    }

    #[test]
    fn bad_values_say_what_to_write() {
        let err = |json: &str| {
            serde_json::from_str::<CaptureSpec>(json)
                .unwrap_err()
                .to_string()
        };
        assert!(err(r#"{"duration": "0s"}"#).contains("is zero"));
        assert!(err(r#"{"duration": 600}"#).contains("has no unit"));
        assert!(err(r#"{"startTime": "tomorrow"}"#).contains("write e.g. \"2025-06-01T02:00:00Z\""));
        assert!(err(r#"{"format": "pcapx"}"#).contains("unknown variant `pcapx`"));
        assert!(
            err(r#"{"filters": [{"protocol": "TCP", "ports": [70000]}]}"#)
                .contains("port 70000 is out of range")
        );
    }

    #[test]
    fn window_uses_the_spec_fields() {
        let now = Utc.with_ymd_and_hms(2025, 6, 1, 10, 0, 0).unwrap();
        let spec: CaptureSpec = serde_json::from_str(README_EXAMPLE).unwrap();
        let window = spec.window(now, Duration::from_secs(3600)).unwrap();
        assert_eq!(window.start, now);
        assert_eq!(
            window.end,
            Utc.with_ymd_and_hms(2025, 6, 1, 10, 10, 0).unwrap()
        );
    }

    #[test]
    fn node_selector_restricts_nodes() {
        let mut spec = CaptureSpec::default();
        let linux: BTreeMap<String, String> = [("os".to_string(), "linux".to_string())].into();
        assert!(spec.selects_node(&BTreeMap::new()));
        spec.node_selector = Some(linux.clone());
        assert!(spec.selects_node(&linux));
        assert!(!spec.selects_node(&BTreeMap::new()));
    }
}
