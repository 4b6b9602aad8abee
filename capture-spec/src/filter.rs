//! The capture filter model: which packets a capture keeps.
//!
//! A filter is a list of rules OR'ed together; inside a rule the protocol, the ports and the peers
//! are AND'ed (a superset of Calico's PacketCapture `filters`). Peers are IPv4/IPv6 addresses or
//! CIDRs ([`Peer`]) matched against either end of the packet: a rule with peers keeps a packet
//! whose source or destination is in one of them. An empty list keeps everything. Users write
//! rules in two forms that parse to the same value:
//!
//! - the API/CRD form: `{"protocol": "TCP", "ports": [80, "8000:8100"], "peers": ["10.0.0.0/8"]}`;
//! - the CLI form: `tcp:80,443,8000-8100`, `udp:53`, `icmp`, `47`, `any:80`,
//!   `udp:53@10.96.0.10`, `tcp:443,8443@10.0.0.0/8,fd00::/8`, `@192.168.4.0/24` (peers only).
//!
//! Every parse and validation error says which value is wrong and how to write it instead. The
//! filter is compiled to in-kernel BPF by the agent; this module never produces text for a shell.
//! [`Filter::to_pcap_expression`] renders the libpcap expression with the same meaning, recorded in
//! pcapng files (`if_filter`) and used to prove the BPF generator against libpcap.

use std::fmt;
use std::str::FromStr;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use crate::peer::{Peer, MAX_PEERS};

/// An IP protocol a rule can select. Known numbers always parse to their named variant, so
/// `Number` never holds 1, 6, 17, 58, 132 or 136.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
    /// ICMP for IPv4 only (IPv4 protocol 1).
    Icmp,
    /// ICMPv6 for IPv6 only (IPv6 next header 58).
    Icmpv6,
    Sctp,
    UdpLite,
    /// Any other IP protocol number 1-255, matched in IPv4 and IPv6 alike.
    Number(u8),
}

/// Which IP versions a protocol exists in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Families {
    pub ipv4: bool,
    pub ipv6: bool,
}

impl Protocol {
    /// All named protocols, in the order error messages list them.
    pub const NAMED: [Protocol; 6] = [
        Protocol::Tcp,
        Protocol::Udp,
        Protocol::Icmp,
        Protocol::Icmpv6,
        Protocol::Sctp,
        Protocol::UdpLite,
    ];

    /// The protocol with IP protocol number `n`, named where podcap knows the name.
    pub fn from_number(n: u8) -> Result<Protocol, FilterError> {
        Ok(match n {
            0 => return Err(FilterError::ProtocolZero),
            1 => Protocol::Icmp,
            6 => Protocol::Tcp,
            17 => Protocol::Udp,
            58 => Protocol::Icmpv6,
            132 => Protocol::Sctp,
            136 => Protocol::UdpLite,
            other => Protocol::Number(other),
        })
    }

    /// The IP protocol number (IPv4 `protocol`, IPv6 `next header`).
    pub fn number(self) -> u8 {
        match self {
            Protocol::Icmp => 1,
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
            Protocol::Icmpv6 => 58,
            Protocol::Sctp => 132,
            Protocol::UdpLite => 136,
            Protocol::Number(n) => n,
        }
    }

    /// The canonical name as the API writes it (`TCP`, `ICMPv6`, or the number).
    pub fn api_name(self) -> String {
        match self {
            Protocol::Tcp => "TCP".into(),
            Protocol::Udp => "UDP".into(),
            Protocol::Icmp => "ICMP".into(),
            Protocol::Icmpv6 => "ICMPv6".into(),
            Protocol::Sctp => "SCTP".into(),
            Protocol::UdpLite => "UDPLite".into(),
            Protocol::Number(n) => n.to_string(),
        }
    }

    /// Whether this protocol's header starts with 16-bit source and destination ports.
    pub fn has_ports(self) -> bool {
        matches!(
            self,
            Protocol::Tcp | Protocol::Udp | Protocol::Sctp | Protocol::UdpLite
        )
    }

    /// The IP versions this protocol is matched in: ICMP is IPv4's, ICMPv6 is IPv6's.
    pub fn families(self) -> Families {
        match self {
            Protocol::Icmp => Families {
                ipv4: true,
                ipv6: false,
            },
            Protocol::Icmpv6 => Families {
                ipv4: false,
                ipv6: true,
            },
            _ => Families {
                ipv4: true,
                ipv6: true,
            },
        }
    }
}

impl FromStr for Protocol {
    type Err = FilterError;

    /// Names are case-insensitive (`tcp`, `TCP`, `icmpv6`, `icmp6`, `udplite`); numbers 1-255.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let trimmed = text.trim();
        if let Ok(n) = trimmed.parse::<u16>() {
            let n = u8::try_from(n).map_err(|_| FilterError::ProtocolOutOfRange(n.into()))?;
            return Protocol::from_number(n);
        }
        if let Ok(n) = trimmed.parse::<i64>() {
            return Err(FilterError::ProtocolOutOfRange(n));
        }
        match trimmed.to_ascii_lowercase().as_str() {
            "tcp" => Ok(Protocol::Tcp),
            "udp" => Ok(Protocol::Udp),
            "icmp" | "icmpv4" => Ok(Protocol::Icmp),
            "icmpv6" | "icmp6" => Ok(Protocol::Icmpv6),
            "sctp" => Ok(Protocol::Sctp),
            "udplite" | "udp-lite" => Ok(Protocol::UdpLite),
            _ => Err(FilterError::UnknownProtocol(trimmed.to_string())),
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.api_name())
    }
}

/// An inclusive range of ports; a single port is a range of one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PortRange {
    first: u16,
    last: u16,
}

impl PortRange {
    /// A range `first..=last`; refuses a range written backwards.
    pub fn new(first: u16, last: u16) -> Result<PortRange, FilterError> {
        if first > last {
            return Err(FilterError::BackwardsRange { first, last });
        }
        Ok(PortRange { first, last })
    }

    pub fn single(port: u16) -> PortRange {
        PortRange {
            first: port,
            last: port,
        }
    }

    pub fn first(self) -> u16 {
        self.first
    }

    pub fn last(self) -> u16 {
        self.last
    }

    pub fn contains(self, port: u16) -> bool {
        (self.first..=self.last).contains(&port)
    }
}

fn parse_port(text: &str) -> Result<u16, FilterError> {
    let trimmed = text.trim();
    match trimmed.parse::<i64>() {
        Ok(n) => u16::try_from(n).map_err(|_| FilterError::PortOutOfRange(n)),
        Err(_) => Err(FilterError::BadPort(trimmed.to_string())),
    }
}

impl FromStr for PortRange {
    type Err = FilterError;

    /// `80`, `8000:8100` (the CRD form) or `8000-8100` (the CLI form).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let trimmed = text.trim();
        match trimmed.split_once([':', '-']) {
            // A leading '-' is a negative number, not a range separator.
            Some((first, last)) if !first.trim().is_empty() => {
                PortRange::new(parse_port(first)?, parse_port(last)?)
            }
            _ => Ok(PortRange::single(parse_port(trimmed)?)),
        }
    }
}

impl fmt::Display for PortRange {
    /// The CRD form: `80` or `8000:8100`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            write!(f, "{}", self.first)
        } else {
            write!(f, "{}:{}", self.first, self.last)
        }
    }
}

/// One rule: a protocol (none = any), ports (none = any) and peers (none = any address). Build
/// with [`FilterRule::new`] or [`FilterRule::with_peers`], which refuse ports on a protocol that
/// has none, more than [`MAX_PEERS`] peers, and peers that the protocol can never meet.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FilterRule {
    protocol: Option<Protocol>,
    ports: Vec<PortRange>,
    peers: Vec<Peer>,
}

impl FilterRule {
    /// A rule; with ports and no protocol it means TCP, UDP, SCTP or UDPLite on those ports.
    pub fn new(
        protocol: Option<Protocol>,
        ports: Vec<PortRange>,
    ) -> Result<FilterRule, FilterError> {
        FilterRule::with_peers(protocol, ports, Vec::new())
    }

    /// A rule that also needs the source or the destination address in one of `peers` (an empty
    /// list: any address). Without protocol and ports it keeps every IPv4/IPv6 packet with those
    /// peers.
    pub fn with_peers(
        protocol: Option<Protocol>,
        ports: Vec<PortRange>,
        peers: Vec<Peer>,
    ) -> Result<FilterRule, FilterError> {
        if let Some(p) = protocol {
            if !ports.is_empty() && !p.has_ports() {
                return Err(FilterError::PortsWithoutPortProtocol(p));
            }
        }
        check_peer_count(peers.len())?;
        if let (Some(p), false) = (protocol, peers.is_empty()) {
            // ICMP with only IPv6 peers (or ICMPv6 with only IPv4 ones) would match nothing:
            // almost certainly a mistake, so say so instead of capturing nothing.
            let families = p.families();
            let meets = peers.iter().any(|peer| {
                if peer.is_ipv4() {
                    families.ipv4
                } else {
                    families.ipv6
                }
            });
            if !meets {
                return Err(FilterError::PeersOutsideFamily(p));
            }
        }
        Ok(FilterRule {
            protocol,
            ports,
            peers,
        })
    }

    pub fn protocol(&self) -> Option<Protocol> {
        self.protocol
    }

    pub fn ports(&self) -> &[PortRange] {
        &self.ports
    }

    /// The networks either end of a packet must be in; empty means any address.
    pub fn peers(&self) -> &[Peer] {
        &self.peers
    }

    /// The protocols this rule selects: its own, or every port-bearing one when it has only
    /// ports. `None` means any protocol and any packet at all.
    pub fn protocols(&self) -> Option<Vec<Protocol>> {
        match (self.protocol, self.ports.is_empty()) {
            (Some(p), _) => Some(vec![p]),
            (None, false) => Some(vec![
                Protocol::Tcp,
                Protocol::Udp,
                Protocol::Sctp,
                Protocol::UdpLite,
            ]),
            (None, true) => None,
        }
    }
}

/// Refuses more peers than a rule may have.
pub(crate) fn check_peer_count(count: usize) -> Result<(), FilterError> {
    if count > MAX_PEERS {
        return Err(FilterError::TooManyPeers(count));
    }
    Ok(())
}

impl FromStr for FilterRule {
    type Err = FilterError;

    /// The CLI form `[PROTO[:PORT[,PORT|FIRST-LAST]...]][@PEER[,PEER]...]`; `PROTO` may be `any`,
    /// and with peers it may be left out (`@10.0.0.0/8`: every packet with that peer).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Err(FilterError::EmptyRule);
        }
        // Split at '@' first: IPv6 peers contain ':', the protocol/ports separator.
        let (body, peers_text) = match trimmed.split_once('@') {
            Some((body, peers)) => (body.trim(), Some(peers)),
            None => (trimmed, None),
        };
        let peers = match peers_text {
            None => Vec::new(),
            Some(list) if list.trim().is_empty() => return Err(FilterError::EmptyPeerList),
            Some(list) => list
                .split(',')
                .map(str::parse)
                .collect::<Result<Vec<Peer>, _>>()?,
        };
        if body.is_empty() {
            return FilterRule::with_peers(None, Vec::new(), peers);
        }
        let (proto_text, ports_text) = match body.split_once(':') {
            Some((p, ports)) => (p, Some(ports)),
            None => (body, None),
        };
        let protocol = if proto_text.trim().eq_ignore_ascii_case("any") {
            None
        } else {
            Some(proto_text.parse::<Protocol>()?)
        };
        let ports = match ports_text {
            None => Vec::new(),
            Some(list) if list.trim().is_empty() => return Err(FilterError::EmptyPortList),
            Some(list) => list
                .split(',')
                .map(str::parse)
                .collect::<Result<Vec<_>, _>>()?,
        };
        FilterRule::with_peers(protocol, ports, peers)
    }
}

impl fmt::Display for FilterRule {
    /// The CLI form, which [`FilterRule::from_str`] reads back to the same rule.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.protocol {
            Some(p) => write!(f, "{}", p.api_name().to_ascii_lowercase())?,
            // `@10.0.0.0/8` rather than `any@10.0.0.0/8`: both parse, the short one reads better.
            None if self.ports.is_empty() && !self.peers.is_empty() => {}
            None => f.write_str("any")?,
        }
        for (i, range) in self.ports.iter().enumerate() {
            let sep = if i == 0 { ':' } else { ',' };
            if range.first == range.last {
                write!(f, "{sep}{}", range.first)?;
            } else {
                write!(f, "{sep}{}-{}", range.first, range.last)?;
            }
        }
        for (i, peer) in self.peers.iter().enumerate() {
            let sep = if i == 0 { '@' } else { ',' };
            write!(f, "{sep}{peer}")?;
        }
        Ok(())
    }
}

/// A capture filter: rules OR'ed together; no rules keeps every packet.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Filter {
    rules: Vec<FilterRule>,
}

impl Filter {
    pub fn new(rules: Vec<FilterRule>) -> Filter {
        Filter { rules }
    }

    /// Parses CLI rules (one per `--filter`), naming the rule that is wrong.
    pub fn parse_cli<S: AsRef<str>>(rules: &[S]) -> Result<Filter, FilterError> {
        let parsed = rules
            .iter()
            .enumerate()
            .map(|(index, text)| {
                text.as_ref()
                    .parse::<FilterRule>()
                    .map_err(|source| FilterError::InRule {
                        index,
                        text: text.as_ref().to_string(),
                        source: Box::new(source),
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Filter::new(parsed))
    }

    pub fn rules(&self) -> &[FilterRule] {
        &self.rules
    }

    /// True when the filter keeps every packet (no rules, or a rule with neither protocol nor
    /// ports nor peers).
    pub fn keeps_everything(&self) -> bool {
        self.rules.is_empty()
            || self
                .rules
                .iter()
                .any(|r| r.protocols().is_none() && r.peers.is_empty())
    }

    /// The libpcap expression with exactly this filter's meaning on Ethernet frames, including
    /// frames carrying one or two inline 802.1Q/802.1ad tags. An empty string keeps everything.
    pub fn to_pcap_expression(&self) -> String {
        if self.keeps_everything() {
            return String::new();
        }
        let untagged = self
            .rules
            .iter()
            .map(rule_pcap_expression)
            .collect::<Vec<_>>()
            .join(" or ");
        // libpcap's `vlan` shifts every later offset, even across `or`, so the doubly tagged case
        // must nest inside the singly tagged one rather than follow it.
        format!("({untagged}) or (vlan and (({untagged}) or (vlan and ({untagged}))))")
    }
}

/// libpcap has no `udplite port`, so port checks are written as loads from the transport header.
fn ports_pcap_expression(ports: &[PortRange], transport: &str) -> String {
    ports
        .iter()
        .flat_map(|r| {
            ["0", "2"].into_iter().map(move |offset| {
                let load = format!("{transport}{offset}:2]");
                if r.first == r.last {
                    format!("{load} = {}", r.first)
                } else {
                    format!("({load} >= {} and {load} <= {})", r.first, r.last)
                }
            })
        })
        .collect::<Vec<_>>()
        .join(" or ")
}

/// A rule with peers is `((PEERS) and (BODY))`: the peers come first, each as libpcap's `ip host`,
/// `ip net`, `ip6 host` or `ip6 net` (source, then destination), in the order written. A rule with
/// peers and neither protocol nor ports is `((PEERS))`.
fn rule_pcap_expression(rule: &FilterRule) -> String {
    let body = rule_body_pcap_expression(rule);
    if rule.peers.is_empty() {
        return body.unwrap_or_else(|| "1 = 1".into());
    }
    let peers = rule
        .peers
        .iter()
        .map(|peer| peer.pcap_primitive())
        .collect::<Vec<_>>()
        .join(" or ");
    match body {
        Some(body) => format!("(({peers}) and {body})"),
        None => format!("(({peers}))"),
    }
}

/// The protocol and ports of a rule; `None` for a rule that names neither.
fn rule_body_pcap_expression(rule: &FilterRule) -> Option<String> {
    let protocols = rule.protocols()?;
    let alternatives = protocols.into_iter().flat_map(|p| {
        let n = p.number();
        let fam = p.families();
        let mut parts = Vec::new();
        if rule.ports.is_empty() {
            if fam.ipv4 {
                parts.push(format!("ip proto {n}"));
            }
            if fam.ipv6 {
                parts.push(format!("ip6 proto {n}"));
            }
        } else {
            // Ports live only in the first fragment (IPv4) and right after the fixed IPv6 header.
            let v4 = ports_pcap_expression(&rule.ports, "ip[((ip[0] & 0xf) << 2) + ");
            let v6 = ports_pcap_expression(&rule.ports, "ip6[40 + ");
            parts.push(format!(
                "(ip proto {n} and (ip[6:2] & 0x1fff) = 0 and ({v4}))"
            ));
            parts.push(format!("(ip6 and ip6[6] = {n} and ({v6}))"));
        }
        parts
    });
    Some(format!(
        "({})",
        alternatives.collect::<Vec<_>>().join(" or ")
    ))
}

impl fmt::Display for Filter {
    /// The CLI form, rules separated by ` or `; `everything` for a filter that keeps all.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.rules.is_empty() {
            return f.write_str("everything");
        }
        let text = self
            .rules
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(" or ");
        f.write_str(&text)
    }
}

/// What is wrong with a filter, phrased so the user knows what to write instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    #[error("unknown protocol {0:?}: use TCP, UDP, ICMP, ICMPv6, SCTP, UDPLite or an IP protocol number 1-255")]
    UnknownProtocol(String),
    #[error("protocol number {0} is out of range: IP protocol numbers are 1-255")]
    ProtocolOutOfRange(i64),
    #[error(
        "protocol number 0 is the IPv6 hop-by-hop header, not a transport protocol: use 1-255"
    )]
    ProtocolZero,
    #[error("port {0} is out of range: ports are 0-65535")]
    PortOutOfRange(i64),
    #[error("{0:?} is not a port: write a number such as 443 or a range such as 8000:8100")]
    BadPort(String),
    #[error("port range {first}:{last} is backwards: write the lower port first, {last}:{first}")]
    BackwardsRange { first: u16, last: u16 },
    #[error("protocol {0} has no ports: remove the ports, or use TCP, UDP, SCTP or UDPLite")]
    PortsWithoutPortProtocol(Protocol),
    #[error("empty filter rule: write PROTOCOL[:PORTS][@PEERS], e.g. tcp:80,443 or udp:53@10.96.0.10 or icmp")]
    EmptyRule,
    #[error("empty port list after ':': write ports such as tcp:80,443, or drop the ':'")]
    EmptyPortList,
    #[error("empty peer list: list addresses or CIDRs such as 10.96.0.10 or 10.0.0.0/8, or leave the peers out to match every address")]
    EmptyPeerList,
    #[error("{0} peers in one rule, but a rule takes at most 64: cover neighbouring addresses with one CIDR (e.g. 10.0.0.0/24), or split them over several rules")]
    TooManyPeers(usize),
    #[error("{0:?} is not an IP address or CIDR: write an IPv4 or IPv6 address such as 10.96.0.10 or fd00::1, or a network such as 10.0.0.0/8 or fd00::/8 (names are not resolved)")]
    BadPeer(String),
    #[error("{peer:?}: the prefix length after '/' must be a number 0-{max}, e.g. 10.0.0.0/8 or fd00::/64")]
    BadPrefixLength { peer: String, max: u8 },
    #[error("{peer:?}: the prefix length is longer than the address: use /0-/{max}")]
    PrefixTooLong { peer: String, max: u8 },
    #[error("{written} has host bits set: write its network, {network}, or the single address {address}")]
    HostBitsSet {
        written: String,
        network: String,
        address: String,
    },
    #[error("protocol {0} never meets these peers (ICMP is IPv4 only, ICMPv6 IPv6 only), so the rule would match nothing: add peers of the protocol's IP version, or change the protocol")]
    PeersOutsideFamily(Protocol),
    #[error("filter {index} ({text:?}): {source}")]
    InRule {
        index: usize,
        text: String,
        #[source]
        source: Box<FilterError>,
    },
}

// ---- serde: the API/CRD shapes -------------------------------------------------------------

impl Serialize for Protocol {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Protocol::Number(n) => serializer.serialize_u8(*n),
            named => serializer.serialize_str(&named.api_name()),
        }
    }
}

impl<'de> Deserialize<'de> for Protocol {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ProtocolVisitor;
        impl Visitor<'_> for ProtocolVisitor {
            type Value = Protocol;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a protocol name (TCP, UDP, ICMP, ICMPv6, SCTP, UDPLite) or number 1-255",
                )
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Protocol, E> {
                v.parse().map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Protocol, E> {
                let n =
                    u8::try_from(v).map_err(|_| E::custom(FilterError::ProtocolOutOfRange(v)))?;
                Protocol::from_number(n).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Protocol, E> {
                self.visit_i64(i64::try_from(v).unwrap_or(i64::MAX))
            }
        }
        deserializer.deserialize_any(ProtocolVisitor)
    }
}

impl Serialize for PortRange {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if self.first == self.last {
            serializer.serialize_u16(self.first)
        } else {
            serializer.serialize_str(&self.to_string())
        }
    }
}

impl<'de> Deserialize<'de> for PortRange {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct PortVisitor;
        impl Visitor<'_> for PortVisitor {
            type Value = PortRange;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a port number 0-65535 or a range \"from:to\"")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<PortRange, E> {
                v.parse().map_err(E::custom)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<PortRange, E> {
                let port =
                    u16::try_from(v).map_err(|_| E::custom(FilterError::PortOutOfRange(v)))?;
                Ok(PortRange::single(port))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<PortRange, E> {
                self.visit_i64(i64::try_from(v).unwrap_or(i64::MAX))
            }
        }
        deserializer.deserialize_any(PortVisitor)
    }
}

/// The wire shape of a rule; validated into [`FilterRule`] on the way in. Unknown fields are
/// refused: a misspelt `ports` would otherwise widen the rule to every port.
#[derive(Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "kube", derive(schemars::JsonSchema))]
#[cfg_attr(
    feature = "openapi",
    schema(
        description = "One filter rule: a protocol (none = any) AND ports (none = any) AND peers (none = any address). Ports need a protocol with ports (TCP, UDP, SCTP, UDPLite) or none, which means those four. Peers are IPv4/IPv6 addresses or CIDRs matched against either end of the packet (source or destination); a rule with only peers keeps every IPv4/IPv6 packet with them.",
        example = json!({"protocol": "UDP", "ports": [53], "peers": ["10.96.0.10", "fd00::/8"]})
    )
)]
#[cfg_attr(
    feature = "kube",
    schemars(
        description = "One filter rule: a protocol (none = any) AND ports (none = any) AND peers (none = any address). Ports need a protocol with ports (TCP, UDP, SCTP, UDPLite) or none, which means those four. Peers are IPv4/IPv6 addresses or CIDRs matched against either end of the packet (source or destination); a rule with only peers keeps every IPv4/IPv6 packet with them."
    )
)]
#[serde(deny_unknown_fields)]
pub(crate) struct FilterRuleWire {
    /// The IP protocol; unset matches any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    protocol: Option<Protocol>,
    /// Ports and port ranges, OR'ed; unset or empty matches any port.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    ports: Vec<PortRange>,
    /// IPv4/IPv6 addresses or CIDRs ("10.96.0.10", "10.0.0.0/8", "fd00::/8"), OR'ed: the packet's
    /// source or destination must be in one. Unset matches any address; an empty list is refused
    /// (it would silently match every address). At most 64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(min_items = 1, max_items = 64))]
    #[cfg_attr(feature = "kube", schemars(length(min = 1, max = 64)))]
    peers: Option<Vec<Peer>>,
}

impl Serialize for FilterRule {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        FilterRuleWire {
            protocol: self.protocol,
            ports: self.ports.clone(),
            peers: (!self.peers.is_empty()).then(|| self.peers.clone()),
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for FilterRule {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let wire = FilterRuleWire::deserialize(deserializer)?;
        let peers = match wire.peers {
            None => Vec::new(),
            Some(peers) if peers.is_empty() => {
                return Err(de::Error::custom(FilterError::EmptyPeerList))
            }
            Some(peers) => peers,
        };
        FilterRule::with_peers(wire.protocol, wire.ports, peers).map_err(de::Error::custom)
    }
}

impl Serialize for Filter {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.rules.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Filter {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(Filter::new(Vec::<FilterRule>::deserialize(deserializer)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_rules_parse() {
        let rule: FilterRule = "tcp:80,443,8000-8100".parse().unwrap();
        assert_eq!(rule.protocol(), Some(Protocol::Tcp));
        assert_eq!(
            rule.ports(),
            &[
                PortRange::single(80),
                PortRange::single(443),
                PortRange::new(8000, 8100).unwrap()
            ]
        );
        assert_eq!(
            "ICMP".parse::<FilterRule>().unwrap().protocol(),
            Some(Protocol::Icmp)
        );
        assert_eq!(
            "icmp6".parse::<FilterRule>().unwrap().protocol(),
            Some(Protocol::Icmpv6)
        );
        assert_eq!(
            "47".parse::<FilterRule>().unwrap().protocol(),
            Some(Protocol::Number(47))
        );
        assert_eq!(
            "6".parse::<FilterRule>().unwrap().protocol(),
            Some(Protocol::Tcp)
        );
        let any: FilterRule = "any:53".parse().unwrap();
        assert_eq!(any.protocol(), None);
        assert_eq!(any.protocols().unwrap().len(), 4);
    }

    #[test]
    fn display_round_trips() {
        for text in [
            "tcp:80,443,8000-8100",
            "udp:53",
            "icmp",
            "icmpv6",
            "any:1-1024",
            "47",
            "sctp:0,65535",
        ] {
            let rule: FilterRule = text.parse().unwrap();
            assert_eq!(
                rule.to_string().parse::<FilterRule>().unwrap(),
                rule,
                "{text}"
            );
        }
    }

    #[test]
    fn errors_say_what_to_fix() {
        let err = |t: &str| t.parse::<FilterRule>().unwrap_err().to_string();
        assert!(err("tcp:70000").contains("port 70000 is out of range"));
        assert!(err("tcp:90-80").contains("write the lower port first, 80:90"));
        assert!(err("gre").contains("unknown protocol \"gre\""));
        assert!(err("icmp:80").contains("has no ports"));
        assert!(err("256").contains("1-255"));
        assert!(err("0").contains("1-255"));
        assert!(err("tcp:").contains("empty port list"));
        assert!(err("tcp:http").contains("is not a port"));
        let in_rule = Filter::parse_cli(&["udp:53", "tcp:99999"])
            .unwrap_err()
            .to_string();
        assert!(in_rule.starts_with("filter 1 (\"tcp:99999\")"), "{in_rule}");
    }

    #[test]
    fn api_shape_round_trips_and_validates() {
        let json = r#"[{"protocol":"TCP","ports":[80,"8000:8100"]},{"protocol":"udp","ports":[53]},{"protocol":47},{"protocol":"ICMPv6"}]"#;
        let filter: Filter = serde_json::from_str(json).unwrap();
        assert_eq!(filter.rules().len(), 4);
        let back = serde_json::to_string(&filter).unwrap();
        assert_eq!(serde_json::from_str::<Filter>(&back).unwrap(), filter);
        assert!(
            serde_json::from_str::<Filter>(r#"[{"protocol":"TCP","ports":[70000]}]"#)
                .unwrap_err()
                .to_string()
                .contains("port 70000 is out of range")
        );
        assert!(
            serde_json::from_str::<Filter>(r#"[{"protocol":"TCP","ports":["90:80"]}]"#)
                .unwrap_err()
                .to_string()
                .contains("backwards")
        );
        assert!(serde_json::from_str::<Filter>(r#"[{"protocol":"ICMP","ports":[1]}]"#).is_err());
    }

    #[test]
    fn cli_rules_with_peers_parse() {
        let rule: FilterRule = "udp:53@10.96.0.10".parse().unwrap();
        assert_eq!(rule.protocol(), Some(Protocol::Udp));
        assert_eq!(rule.ports(), &[PortRange::single(53)]);
        assert_eq!(rule.peers(), &["10.96.0.10".parse::<Peer>().unwrap()]);
        let rule: FilterRule = "tcp:443,8443@10.0.0.0/8,fd00::/8".parse().unwrap();
        assert_eq!(rule.ports().len(), 2);
        assert_eq!(
            rule.peers()
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            ["10.0.0.0/8", "fd00::/8"]
        );
        let only: FilterRule = "@192.168.4.0/24".parse().unwrap();
        assert_eq!((only.protocol(), only.ports()), (None, &[][..]));
        assert_eq!(only.peers().len(), 1);
        assert_eq!(
            " any @ fd00::1 "
                .parse::<FilterRule>()
                .unwrap()
                .peers()
                .len(),
            1
        );
        assert_eq!(
            "icmpv6@fd00::1"
                .parse::<FilterRule>()
                .unwrap()
                .peers()
                .len(),
            1
        );
        for text in [
            "udp:53@10.96.0.10",
            "tcp:443,8443@10.0.0.0/8,fd00::/8",
            "@192.168.4.0/24",
            "any:53@::/0,0.0.0.0/0",
            "47@fd00::/127",
        ] {
            let rule: FilterRule = text.parse().unwrap();
            assert_eq!(rule.to_string(), text);
            assert_eq!(rule.to_string().parse::<FilterRule>().unwrap(), rule);
        }
        // A peers-only rule is not a catch-all.
        let filter = Filter::parse_cli(&["@10.0.0.0/8"]).unwrap();
        assert!(!filter.keeps_everything());
    }

    #[test]
    fn peer_errors_say_what_to_fix() {
        let err = |t: &str| t.parse::<FilterRule>().unwrap_err().to_string();
        assert!(
            err("udp:53@").contains("empty peer list"),
            "{}",
            err("udp:53@")
        );
        assert!(err("@").contains("empty peer list"));
        assert!(err("@10.0.0.1/8").contains("write its network, 10.0.0.0/8"));
        assert!(err("tcp@10.0.0.0/8,,fd00::/8").contains("not an IP address"));
        assert!(err("icmp@fd00::/8").contains("never meets these peers"));
        assert!(err("icmpv6@10.0.0.0/8").contains("never meets these peers"));
        assert!("icmp@fd00::/8,10.0.0.1".parse::<FilterRule>().is_ok());
        let many: Vec<String> = (0..=MAX_PEERS).map(|i| format!("10.0.{i}.0/24")).collect();
        let text = format!("tcp@{}", many.join(","));
        assert!(
            err(&text).contains("65 peers in one rule"),
            "{}",
            err(&text)
        );
        let in_rule = Filter::parse_cli(&["udp:53", "udp:53@10.96.0.10,10.0.0.1/8"])
            .unwrap_err()
            .to_string();
        assert!(
            in_rule.starts_with(
                "filter 1 (\"udp:53@10.96.0.10,10.0.0.1/8\"): 10.0.0.1/8 has host bits set"
            ),
            "{in_rule}"
        );
    }

    #[test]
    fn api_shape_with_peers() {
        let json = r#"[{"protocol":"UDP","ports":[53],"peers":["10.96.0.10","10.0.0.0/8"]},{"peers":["fd00::/8"]},{"protocol":"TCP"}]"#;
        let filter: Filter = serde_json::from_str(json).unwrap();
        assert_eq!(serde_json::to_string(&filter).unwrap(), json);
        let err = |json: &str| {
            serde_json::from_str::<Filter>(json)
                .unwrap_err()
                .to_string()
        };
        assert!(err(r#"[{"peers":[]}]"#).contains("empty peer list"));
        assert!(err(r#"[{"peers":["10.0.0.1/8"]}]"#).contains("10.0.0.0/8"));
        assert!(err(r#"[{"peers":[10]}]"#).contains("as a string"));
        assert!(err(r#"[{"peers":"10.0.0.0/8"}]"#).contains("sequence"));
        assert!(err(r#"[{"pears":["10.0.0.0/8"]}]"#).contains("unknown field"));
    }

    #[test]
    fn peers_in_the_pcap_expression() {
        let filter = Filter::parse_cli(&["udp:53@10.96.0.10,fd00::/8", "@10.0.0.0/8"]).unwrap();
        let untagged = "((ip host 10.96.0.10 or ip6 net fd00::/8) and ((ip proto 17 and (ip[6:2] & 0x1fff) = 0 and (ip[((ip[0] & 0xf) << 2) + 0:2] = 53 or ip[((ip[0] & 0xf) << 2) + 2:2] = 53)) or (ip6 and ip6[6] = 17 and (ip6[40 + 0:2] = 53 or ip6[40 + 2:2] = 53)))) or ((ip net 10.0.0.0/8))";
        assert_eq!(
            filter.to_pcap_expression(),
            format!("({untagged}) or (vlan and (({untagged}) or (vlan and ({untagged}))))")
        );
    }

    #[test]
    fn everything_filters() {
        assert!(Filter::default().keeps_everything());
        assert!(Filter::parse_cli(&["tcp:80", "any"])
            .unwrap()
            .keeps_everything());
        assert!(!Filter::parse_cli(&["tcp:80"]).unwrap().keeps_everything());
        assert_eq!(Filter::default().to_pcap_expression(), "");
    }
}
