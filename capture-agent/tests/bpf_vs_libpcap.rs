//! The BPF generator proven against libpcap.
//!
//! For a filter, `bpf::compile` must keep exactly the Ethernet frames that libpcap keeps for the
//! filter's pcap expression. libpcap's verdict comes from `pcap_compile` on a dead DLT_EN10MB
//! handle and `pcap_offline_filter`. Checked three ways: a deterministic corpus of frames against
//! a fixed list of filters, a big filter (40 rules of 20 ranges) whose program needs long jumps,
//! and a proptest over random filters and random structured frames. Peers (`ip host`, `ip net`,
//! `ip6 host`, `ip6 net`) get the same three: a corpus of frames whose addresses sit on the
//! edges of the peers' networks (including /0, /1, /31, /32, /64, /127, /128), a filter of 64+
//! peers, and a proptest over random peer sets.
//!
//! Two facts about libpcap shape the comparison:
//!
//! 1. **`vlan` offsets accumulate across `or`.** libpcap's `vlan` moves the offsets of everything
//!    after it in the expression, whatever the operators in between. A flat
//!    `(U) or (vlan and (U)) or (vlan and vlan and (U))` would compile its third branch as "bytes
//!    16 and 20 are TPIDs and U at 3 tags": it never matches a doubly tagged frame, and can match
//!    a frame whose IPv4 header happens to contain 0x8100. So `Filter::to_pcap_expression` writes
//!    the nested `(U) or (vlan and ((U) or (vlan and (U))))`, which means "untagged, one tag or two
//!    tags" as the generator does; `vlan_offsets_accumulate_in_libpcap` pins the libpcap
//!    behaviour down.
//! 2. **libpcap's optimizer ignores that a load can fail.** A BPF load past the end of the frame
//!    rejects the packet, so for a truncated frame the order of loads is part of the meaning. The
//!    optimizer drops some loads whose value cannot change the verdict and moves some port
//!    comparisons ahead of the destination-port load, changing libpcap's own verdict for some
//!    frames that end inside the transport or IPv6 fragment header (and not the same way for IPv4
//!    and IPv6). The generator keeps to the expression's literal order, which is what libpcap
//!    compiles with the optimizer off. So the corpus and the proptest require our verdict to equal
//!    libpcap's unoptimized one on every frame, and count where the optimized one differs; the big
//!    filter, whose unoptimized compile takes over a minute, requires the optimized verdict or else
//!    the unoptimized one. Every verdict must also equal [`model`], the expression evaluated
//!    directly over the frame bytes.

use std::cell::{Cell, OnceCell};
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use capture_agent::bpf::{self, Program};
use capture_spec::{Filter, FilterRule, Peer, PortRange, Protocol};
use proptest::prelude::*;
use proptest::test_runner::{TestCaseError, TestRunner};

const SNAP: u32 = 262_144;

// ---- libpcap's side -------------------------------------------------------------------------

/// `pcap_compile` on a dead Ethernet handle. libpcap's parser and optimizer recurse deeply on
/// big expressions, so it runs on a thread with a generous stack (reserved, not committed).
fn pcap_compile(expression: &str, optimize: bool) -> pcap::BpfProgram {
    let owned = expression.to_string();
    std::thread::Builder::new()
        .stack_size(1 << 30)
        .spawn(move || {
            let capture = pcap::Capture::dead(pcap::Linktype::ETHERNET).expect("pcap_open_dead");
            capture
                .compile(&owned, optimize)
                .unwrap_or_else(|e| panic!("libpcap refuses {owned:?}: {e}"))
        })
        .expect("spawn the libpcap compiler thread")
        .join()
        .unwrap_or_else(|_| panic!("libpcap could not compile {expression:?}"))
}

/// libpcap's verdicts for one filter; the unoptimized program is only compiled when needed.
struct Libpcap {
    expression: String,
    optimized: pcap::BpfProgram,
    literal: OnceCell<pcap::BpfProgram>,
}

impl Libpcap {
    fn new(filter: &Filter) -> Libpcap {
        let expression = filter.to_pcap_expression();
        let optimized = pcap_compile(&expression, true);
        Libpcap {
            expression,
            optimized,
            literal: OnceCell::new(),
        }
    }

    fn optimized(&self, frame: &[u8]) -> bool {
        self.optimized.filter(frame)
    }

    fn literal(&self, frame: &[u8]) -> bool {
        self.literal
            .get_or_init(|| pcap_compile(&self.expression, false))
            .filter(frame)
    }
}

// ---- the literal meaning, straight from the bytes ------------------------------------------

/// The expression's meaning evaluated directly over the frame: the rules' alternatives in order,
/// each read the way libpcap's unoptimized code reads it, a load past the end rejecting the frame.
/// This is an independent statement of what `bpf::compile` documents.
fn model(filter: &Filter, frame: &[u8]) -> bool {
    filter.keeps_everything() || model_loads(filter, frame).unwrap_or(false)
}

/// `None` is a load past the end of the frame, which rejects.
fn model_loads(filter: &Filter, frame: &[u8]) -> Option<bool> {
    let byte = |offset: usize| frame.get(offset).copied();
    let half = |offset: usize| Some(u16::from_be_bytes([byte(offset)?, byte(offset + 1)?]));
    // `src(r) or dst(r)` for each range in turn, as the expression is written.
    let ports = |transport: usize, ranges: &[PortRange]| -> Option<bool> {
        for range in ranges {
            if range.contains(half(transport)?) || range.contains(half(transport + 2)?) {
                return Some(true);
            }
        }
        Some(false)
    };
    let mut ethertype_at = 12;
    for level in 0..=2 {
        let ip = ethertype_at + 2;
        let ethertype = half(ethertype_at)?;
        if matches!(ethertype, 0x8100 | 0x88a8 | 0x9100) && level < 2 {
            ethertype_at += 4;
            continue;
        }
        for rule in filter.rules() {
            // `((PEERS) and (BODY))`: the peers first, a rule with only peers keeping the packet.
            if !rule.peers().is_empty() {
                if !model_peers(rule.peers(), ethertype, ip, frame)? {
                    continue;
                }
                if rule.protocols().is_none() {
                    return Some(true);
                }
            }
            for protocol in rule.protocols().unwrap_or_default() {
                let n = protocol.number();
                let families = protocol.families();
                let with_ports = !rule.ports().is_empty();
                let matched = match ethertype {
                    // `ip proto n` / `(ip proto n and (ip[6:2] & 0x1fff) = 0 and (ports))`
                    0x0800 if with_ports => {
                        byte(ip + 9)? == n
                            && half(ip + 6)? & 0x1fff == 0
                            && ports(ip + 4 * usize::from(byte(ip)? & 0xf), rule.ports())?
                    }
                    0x0800 if families.ipv4 => byte(ip + 9)? == n,
                    // `(ip6 and ip6[6] = n and (ports))`
                    0x86dd if with_ports => byte(ip + 6)? == n && ports(ip + 40, rule.ports())?,
                    // `ip6 proto n`: next header n, or a fragment header followed by n
                    0x86dd if families.ipv6 => {
                        let next = byte(ip + 6)?;
                        next == n || (next == 44 && byte(ip + 40)? == n)
                    }
                    _ => false,
                };
                if matched {
                    return Some(true);
                }
            }
        }
        return Some(false);
    }
    Some(false)
}

/// `ip host`/`ip net`/`ip6 host`/`ip6 net` for each peer in order, as libpcap compiles them: the
/// ethertype, then the source address, then the destination. An IPv4 address is one word; an
/// IPv6 address is four words, each loaded and compared under its part of the mask (a zero mask
/// for the words past the prefix) up to the first that differs.
fn model_peers(peers: &[Peer], ethertype: u16, ip: usize, frame: &[u8]) -> Option<bool> {
    let word = |offset: usize| -> Option<u32> {
        Some(u32::from_be_bytes(
            frame.get(offset..offset + 4)?.try_into().ok()?,
        ))
    };
    for peer in peers {
        let prefix = u32::from(peer.prefix_len());
        match (ethertype, peer.address()) {
            (0x0800, IpAddr::V4(network)) => {
                let mask = u32::MAX.checked_shl(32 - prefix).unwrap_or(0);
                for end in [12, 16] {
                    if word(ip + end)? & mask == u32::from(network) {
                        return Some(true);
                    }
                }
            }
            (0x86dd, IpAddr::V6(network)) => {
                let mask = u128::MAX.checked_shl(128 - prefix).unwrap_or(0);
                let network = u128::from(network);
                'end: for end in [8, 24] {
                    for index in 0..4 {
                        let shift = 96 - 32 * index;
                        let part = |value: u128| (value >> shift) as u32;
                        if word(ip + end + 4 * index as usize)? & part(mask) != part(network) {
                            continue 'end;
                        }
                    }
                    return Some(true);
                }
            }
            _ => {}
        }
    }
    Some(false)
}

// ---- the check ------------------------------------------------------------------------------

/// One filter with everything needed to judge frames against it.
struct Subject {
    filter: Filter,
    program: Program,
    libpcap: Libpcap,
    /// Also compare every frame with libpcap's unoptimized program, not only where the
    /// optimized one disagrees with ours.
    strict: bool,
}

#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    checks: usize,
    kept: usize,
    /// Frames where libpcap's optimizer changed libpcap's own verdict and ours follows the
    /// unoptimized one.
    optimizer_differs: usize,
}

impl Subject {
    fn new(filter: Filter, strict: bool) -> Subject {
        let program =
            bpf::compile(&filter, SNAP).unwrap_or_else(|e| panic!("compile {filter}: {e}"));
        let libpcap = Libpcap::new(&filter);
        Subject {
            filter,
            program,
            libpcap,
            strict,
        }
    }

    fn check(&self, frame: &[u8], tally: &mut Tally) -> Result<(), String> {
        let returned = bpf::interpret(&self.program, frame);
        let ours = returned != 0;
        let optimized = self.libpcap.optimized(frame);
        let model = model(&self.filter, frame);
        tally.checks += 1;
        tally.kept += usize::from(ours);
        let mut problems = Vec::new();
        if returned != 0 && returned != SNAP {
            problems.push(format!(
                "accept returned {returned}, not the snap length {SNAP}"
            ));
        }
        if ours != model {
            problems.push("our verdict differs from the documented meaning".to_string());
        }
        let mut literal = None;
        if ours != optimized || self.strict {
            let unoptimized = self.libpcap.literal(frame);
            literal = Some(unoptimized);
            if ours != unoptimized {
                problems.push(if ours == optimized {
                    "our verdict differs from libpcap's unoptimized program".to_string()
                } else {
                    "our verdict differs from libpcap, optimized and not".to_string()
                });
            } else if ours != optimized {
                tally.optimizer_differs += 1;
            }
        }
        if problems.is_empty() {
            return Ok(());
        }
        Err(format!(
            "{}\n  filter:     {}\n  expression: {}\n  frame ({} bytes): {}\n  ours: {} (returned {returned}), libpcap optimized: {optimized}, \
             libpcap unoptimized: {}, model: {model}\n  program:\n{}",
            problems.join("; "),
            self.filter,
            self.libpcap.expression,
            frame.len(),
            hex(frame),
            verdict(ours),
            literal.map_or("not needed".to_string(), |v| v.to_string()),
            self.program,
        ))
    }
}

fn verdict(kept: bool) -> &'static str {
    if kept {
        "keep"
    } else {
        "drop"
    }
}

fn hex(frame: &[u8]) -> String {
    let mut text = String::new();
    for (index, byte) in frame.iter().enumerate() {
        if index > 0 && index % 2 == 0 {
            text.push(' ');
        }
        let _ = write!(text, "{byte:02x}");
    }
    text
}

// ---- frames ---------------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Network {
    /// `fragment` is the flags + fragment offset field; `ihl` may be anything 0-15.
    Ipv4 {
        ihl: u8,
        fragment: u16,
        protocol: u8,
        source: u16,
        destination: u16,
    },
    /// `fragment`: a fragment header (next header 44) with the inner next header and the
    /// offset/M field.
    Ipv6 {
        next_header: u8,
        fragment: Option<(u8, u16)>,
        source: u16,
        destination: u16,
    },
    Other {
        ethertype: u16,
    },
}

#[derive(Debug, Clone, Copy)]
enum Cut {
    Whole,
    /// Keep the first n bytes.
    At(usize),
    /// Keep up to the ports (where libpcap reads them) plus or minus a few bytes.
    AroundPorts(i8),
}

/// Source and destination addresses of the IP header, per family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Addresses {
    v4: [Ipv4Addr; 2],
    v6: [Ipv6Addr; 2],
}

impl Default for Addresses {
    /// 10.0.0.1 -> 10.0.0.2, and 2001:db8:2001:db8:2001:db8:2001:db8 both ways.
    fn default() -> Addresses {
        let v6 = Ipv6Addr::new(0x2001, 0xdb8, 0x2001, 0xdb8, 0x2001, 0xdb8, 0x2001, 0xdb8);
        Addresses {
            v4: [Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2)],
            v6: [v6, v6],
        }
    }
}

#[derive(Debug, Clone)]
struct FrameSpec {
    /// TPIDs of inline tags, outermost first.
    tags: Vec<u16>,
    network: Network,
    cut: Cut,
    addresses: Addresses,
}

impl FrameSpec {
    fn whole(tags: &[u16], network: Network) -> FrameSpec {
        FrameSpec {
            tags: tags.to_vec(),
            network,
            cut: Cut::Whole,
            addresses: Addresses::default(),
        }
    }

    fn between(tags: &[u16], network: Network, addresses: Addresses) -> FrameSpec {
        FrameSpec {
            addresses,
            ..FrameSpec::whole(tags, network)
        }
    }

    fn build(&self) -> Vec<u8> {
        let mut frame = vec![0x02, 0, 0, 0, 0, 0x01, 0x02, 0, 0, 0, 0, 0x02];
        for tpid in &self.tags {
            frame.extend_from_slice(&tpid.to_be_bytes());
            frame.extend_from_slice(&[0x00, 0x64]);
        }
        let ports_at;
        match self.network {
            Network::Ipv4 {
                ihl,
                fragment,
                protocol,
                source,
                destination,
            } => {
                frame.extend_from_slice(&[0x08, 0x00]);
                let ip = frame.len();
                let header = (4 * usize::from(ihl)).max(20);
                let total = u16::try_from(header + 20).unwrap();
                frame.extend_from_slice(&[0x40 | ihl, 0]);
                frame.extend_from_slice(&total.to_be_bytes());
                frame.extend_from_slice(&[0x12, 0x34]);
                frame.extend_from_slice(&fragment.to_be_bytes());
                frame.extend_from_slice(&[64, protocol, 0xbe, 0xef]);
                frame.extend_from_slice(&self.addresses.v4[0].octets());
                frame.extend_from_slice(&self.addresses.v4[1].octets());
                // Options that look like ports 80 and 443: reading ports at a fixed offset 20
                // instead of at the IHL would show.
                frame.extend([0x00, 0x50, 0x01, 0xbb].iter().cycle().take(header - 20));
                frame.extend_from_slice(&source.to_be_bytes());
                frame.extend_from_slice(&destination.to_be_bytes());
                frame.extend_from_slice(&[0xab; 16]);
                ports_at = ip + 4 * usize::from(ihl);
            }
            Network::Ipv6 {
                next_header,
                fragment,
                source,
                destination,
            } => {
                frame.extend_from_slice(&[0x86, 0xdd]);
                let ip = frame.len();
                frame.extend_from_slice(&[0x60, 0, 0, 0, 0, 28, next_header, 64]);
                frame.extend_from_slice(&self.addresses.v6[0].octets());
                frame.extend_from_slice(&self.addresses.v6[1].octets());
                if let Some((inner, offset)) = fragment {
                    frame.extend_from_slice(&[inner, 0]);
                    frame.extend_from_slice(&offset.to_be_bytes());
                    frame.extend_from_slice(&[0, 0, 0, 7]);
                }
                frame.extend_from_slice(&source.to_be_bytes());
                frame.extend_from_slice(&destination.to_be_bytes());
                frame.extend_from_slice(&[0xab; 16]);
                ports_at = ip + 40;
            }
            Network::Other { ethertype } => {
                frame.extend_from_slice(&ethertype.to_be_bytes());
                ports_at = frame.len();
                frame.extend_from_slice(&[0x5a; 46]);
            }
        }
        let keep = match self.cut {
            Cut::Whole => frame.len(),
            Cut::At(n) => n,
            Cut::AroundPorts(delta) => ports_at.saturating_add_signed(isize::from(delta)),
        };
        frame.truncate(keep);
        frame
    }
}

const EDGE_PORTS: [u16; 13] = [0, 1, 52, 53, 54, 79, 80, 81, 443, 8000, 8100, 8101, 65535];
const TAG_STACKS: [&[u16]; 9] = [
    &[],
    &[0x8100],
    &[0x88a8],
    &[0x9100],
    &[0x88a8, 0x8100],
    &[0x9100, 0x8100],
    &[0x8100, 0x8100],
    &[0x88a8, 0x88a8],
    // Three tags: one more than the filter skips, so always dropped.
    &[0x88a8, 0x8100, 0x8100],
];
const PORT_PROTOCOLS: [u8; 4] = [6, 17, 132, 136];
const OTHER_PROTOCOLS: [u8; 9] = [1, 58, 47, 44, 0, 2, 41, 89, 255];
const OTHER_ETHERTYPES: [u16; 8] = [
    0x0806, 0x88cc, 0x8137, 0x0000, 0x05dc, 0x8847, 0x88e5, 0xffff,
];
/// (IHL, flags + fragment offset): plain, first fragment with MF, DF, a later last fragment, a
/// later fragment with MF, and options with some of them.
const IPV4_SHAPES: [(u8, u16); 9] = [
    (5, 0),
    (5, 0x2000),
    (5, 0x4000),
    (5, 0x00b9),
    (5, 0x20b9),
    (6, 0),
    (15, 0),
    (6, 0x2000),
    (15, 0x00b9),
];
/// IPv6 fragment header offset/M fields: first fragment with more to come, and a later one.
const IPV6_FRAGMENTS: [u16; 2] = [0x0001, 0x05c8];

/// The deterministic corpus: every protocol, port edge, tag stack and fragment shape, whole, and a
/// set of representative frames cut at every length.
fn corpus() -> Vec<Vec<u8>> {
    let mut port_pairs: Vec<(u16, u16)> = EDGE_PORTS
        .iter()
        .flat_map(|&p| [(p, 40000), (40000, p)])
        .collect();
    port_pairs.extend([(80, 443), (53, 53), (0, 0), (65535, 65535), (8050, 1)]);
    let mut specs = Vec::new();
    for tags in TAG_STACKS {
        for protocol in PORT_PROTOCOLS {
            for &(source, destination) in &port_pairs {
                for (ihl, fragment) in IPV4_SHAPES {
                    specs.push(FrameSpec::whole(
                        tags,
                        Network::Ipv4 {
                            ihl,
                            fragment,
                            protocol,
                            source,
                            destination,
                        },
                    ));
                }
                specs.push(FrameSpec::whole(
                    tags,
                    Network::Ipv6 {
                        next_header: protocol,
                        fragment: None,
                        source,
                        destination,
                    },
                ));
                for offset in IPV6_FRAGMENTS {
                    specs.push(FrameSpec::whole(
                        tags,
                        Network::Ipv6 {
                            next_header: 44,
                            fragment: Some((protocol, offset)),
                            source,
                            destination,
                        },
                    ));
                }
            }
        }
        for protocol in OTHER_PROTOCOLS {
            for (ihl, fragment) in [(5, 0), (6, 0), (5, 0x00b9), (5, 0x2000)] {
                specs.push(FrameSpec::whole(
                    tags,
                    Network::Ipv4 {
                        ihl,
                        fragment,
                        protocol,
                        source: 80,
                        destination: 53,
                    },
                ));
            }
            specs.push(FrameSpec::whole(
                tags,
                Network::Ipv6 {
                    next_header: protocol,
                    fragment: None,
                    source: 80,
                    destination: 53,
                },
            ));
            for offset in IPV6_FRAGMENTS {
                specs.push(FrameSpec::whole(
                    tags,
                    Network::Ipv6 {
                        next_header: 44,
                        fragment: Some((protocol, offset)),
                        source: 80,
                        destination: 53,
                    },
                ));
            }
        }
        for ethertype in OTHER_ETHERTYPES {
            specs.push(FrameSpec::whole(tags, Network::Other { ethertype }));
        }
        for network in truncation_bases() {
            let base = FrameSpec::whole(tags, network);
            for n in 0..=base.build().len() {
                specs.push(FrameSpec {
                    cut: Cut::At(n),
                    ..base.clone()
                });
            }
        }
    }
    specs.iter().map(FrameSpec::build).collect()
}

/// Frames cut at every length: one of each shape that reads different bytes.
fn truncation_bases() -> Vec<Network> {
    let v4 = |ihl, fragment, protocol, source, destination| Network::Ipv4 {
        ihl,
        fragment,
        protocol,
        source,
        destination,
    };
    let v6 = |next_header, fragment, source, destination| Network::Ipv6 {
        next_header,
        fragment,
        source,
        destination,
    };
    vec![
        v4(5, 0, 6, 80, 40000),
        v4(5, 0, 6, 40000, 443),
        v4(5, 0, 6, 8050, 8000),
        v4(6, 0, 6, 443, 80),
        v4(5, 0, 17, 53, 53),
        v4(5, 0, 17, 40000, 53),
        v4(5, 0, 1, 0, 0),
        v4(5, 0, 47, 0, 0),
        v4(5, 0x00b9, 6, 80, 80),
        v4(5, 0, 132, 8100, 1),
        v4(5, 0, 136, 1, 8000),
        v6(6, None, 443, 40000),
        v6(6, None, 40000, 80),
        v6(17, None, 40000, 53),
        v6(44, Some((47, 0x0001)), 0, 0),
        v6(44, Some((6, 0x0001)), 80, 80),
        v6(58, None, 0, 0),
        v6(132, None, 0, 65535),
        Network::Other { ethertype: 0x0806 },
    ]
}

// ---- filters --------------------------------------------------------------------------------

fn filter(rules: &[&str]) -> Filter {
    Filter::parse_cli(rules).unwrap_or_else(|e| panic!("{rules:?}: {e}"))
}

/// 40 rules of 20 ranges each, cycling through the four port protocols.
fn big_filter() -> Filter {
    let rules: Vec<String> = (0..40u32)
        .map(|rule| {
            let ranges: Vec<String> = (0..20u32)
                .map(|range| {
                    let first = rule * 1500 + range * 70;
                    format!("{first}-{}", first + 9)
                })
                .collect();
            format!(
                "{}:{}",
                ["tcp", "udp", "sctp", "udplite"][rule as usize % 4],
                ranges.join(",")
            )
        })
        .collect();
    Filter::parse_cli(&rules).unwrap()
}

/// A filter with many rules and ranges that libpcap still compiles in about a second, so it can
/// run over the whole corpus.
fn many_rules_filter() -> Filter {
    let rules: Vec<String> = (0..8u32)
        .map(|rule| {
            let ranges: Vec<String> = (0..20u32)
                .map(|range| match range % 3 {
                    0 => format!("{}", rule * 3000 + range * 150),
                    _ => format!(
                        "{}-{}",
                        rule * 3000 + range * 150,
                        rule * 3000 + range * 150 + 20
                    ),
                })
                .collect();
            format!(
                "{}:{}",
                ["tcp", "udp", "sctp"][rule as usize % 3],
                ranges.join(",")
            )
        })
        .collect();
    let mut rules: Vec<&str> = rules.iter().map(String::as_str).collect();
    rules.extend(["any:53", "tcp:80,443", "47"]);
    filter(&rules)
}

fn corpus_filters() -> Vec<Filter> {
    let mut filters: Vec<Filter> = [
        &[][..],
        &["tcp"],
        &["udp"],
        &["icmp"],
        &["icmpv6"],
        &["sctp"],
        &["udplite"],
        &["47"],
        &["44"],
        &["255"],
        &["2"],
        &["tcp:80"],
        &["tcp:80,443,8000-8100"],
        &["tcp:8000-8100,80,443"],
        &["udp:53"],
        &["any:53"],
        &["sctp:80,443,8000-8100"],
        &["udplite:52-54,0"],
        &["tcp:0"],
        &["tcp:0-65535"],
        &["any:0-65535"],
        &["udp:65535"],
        &["tcp:80", "udp:53"],
        &["tcp:80,443,8000-8100", "udp:53"],
        &["icmp", "icmpv6", "tcp:443"],
        &["tcp:80", "tcp"],
        &["tcp", "tcp:80"],
        &["47", "44"],
        &["44", "47"],
        &["6", "udp:53", "58"],
        &["any:53", "icmp"],
        &["tcp:443,80", "udp:80-81,53", "tcp:8000-8100"],
        &["sctp:0,65535", "udplite:53-54"],
        &["any:79-81,52-54", "tcp:443"],
        &["tcp:80", "any"],
        // Peers that the corpus's addresses (10.0.0.1 -> 10.0.0.2, 2001:db8:2001:db8:...) meet,
        // so ports, fragments, IHLs and truncation are checked with a peer test in front.
        &["tcp:80,443,8000-8100@10.0.0.0/8,2001:db8::/32"],
        &["udp:53@10.0.0.2"],
        &["@10.0.0.1", "icmpv6"],
        &["tcp:80@10.0.0.0/8", "tcp"],
        &["47@2001:db8:2001:db8::/64", "44"],
        &[
            "any:53@10.0.0.3,2001:db8:2001:db8:2001:db8:2001:db8",
            "sctp",
        ],
    ]
    .iter()
    .map(|rules| filter(rules))
    .collect();
    filters.push(many_rules_filter());
    filters
}

// ---- tests ----------------------------------------------------------------------------------

/// Judges every frame of a corpus against each filter (strictly: libpcap's unoptimized program
/// too), prints a line per filter and a summary headed `corpus_name`, fails with the first five
/// failures, and returns each filter with its tally.
fn corpus_agrees_with_libpcap(
    corpus_name: &str,
    frames: &[Vec<u8>],
    filters: Vec<Filter>,
) -> Vec<(Filter, Tally)> {
    let filter_count = filters.len();
    let mut total = Tally::default();
    let mut failures = Vec::new();
    let mut tallies = Vec::new();
    for filter in filters {
        let subject = Subject::new(filter, true);
        let mut tally = Tally::default();
        for frame in frames {
            if let Err(failure) = subject.check(frame, &mut tally) {
                if failures.len() < 5 {
                    failures.push(failure);
                }
            }
        }
        eprintln!(
            "{:<48} {:>4} instructions, keeps {:>5} of {} frames, {} where libpcap's optimizer changes libpcap's verdict",
            subject.filter.to_string().chars().take(48).collect::<String>(),
            subject.program.instructions().len(),
            tally.kept,
            tally.checks,
            tally.optimizer_differs
        );
        total.checks += tally.checks;
        total.kept += tally.kept;
        total.optimizer_differs += tally.optimizer_differs;
        tallies.push((subject.filter, tally));
    }
    eprintln!(
        "{corpus_name}: {} frames x {} filters = {} checks, {} kept; {} follow libpcap's unoptimized order where its optimizer disagrees",
        frames.len(),
        filter_count,
        total.checks,
        total.kept,
        total.optimizer_differs
    );
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    tallies
}

#[test]
fn corpus_matches_libpcap() {
    let frames = corpus();
    let filters = corpus_filters();
    assert!(frames.len() > 10_000 && filters.len() >= 25);
    corpus_agrees_with_libpcap("corpus", &frames, filters);
}

#[test]
fn forty_rules_of_twenty_ranges_match_libpcap() {
    let subject = Subject::new(big_filter(), false);
    assert!(
        subject.program.instructions().len() > 1000,
        "{}",
        subject.program.instructions().len()
    );
    // Some jump in the program must have needed an island: a ret copy or a ja.
    let rets = subject
        .program
        .instructions()
        .iter()
        .filter(|i| i.code == 0x06)
        .count();
    assert!(rets > 2, "expected ret copies near long jumps");
    let mut frames = Vec::new();
    for rule in 0..40u32 {
        let protocol = PORT_PROTOCOLS[rule as usize % 4];
        for range in 0..20u32 {
            let first = rule * 1500 + range * 70;
            for port in [first - u32::from(first > 0), first, first + 9, first + 10] {
                let port = u16::try_from(port).unwrap();
                for tags in [&[][..], &[0x8100]] {
                    for (source, destination) in [(port, 65000), (65000, port)] {
                        let v4 = Network::Ipv4 {
                            ihl: 5,
                            fragment: 0,
                            protocol,
                            source,
                            destination,
                        };
                        frames.push(FrameSpec::whole(tags, v4).build());
                        let v6 = Network::Ipv6 {
                            next_header: protocol,
                            fragment: None,
                            source,
                            destination,
                        };
                        frames.push(FrameSpec::whole(tags, v6).build());
                    }
                }
            }
            // The wrong protocol for this rule's ranges.
            let other = PORT_PROTOCOLS[(rule as usize + 1) % 4];
            let port = u16::try_from(first).unwrap();
            let v4 = Network::Ipv4 {
                ihl: 6,
                fragment: 0,
                protocol: other,
                source: port,
                destination: 65000,
            };
            frames.push(FrameSpec::whole(&[0x88a8, 0x8100], v4).build());
        }
    }
    let mut tally = Tally::default();
    for frame in &frames {
        if let Err(failure) = subject.check(frame, &mut tally) {
            panic!("{}", failure.lines().take(8).collect::<Vec<_>>().join("\n"));
        }
    }
    assert!(
        tally.kept > frames.len() / 3,
        "kept {} of {}",
        tally.kept,
        frames.len()
    );
    eprintln!(
        "big filter: {} instructions (libpcap: {}), {} frames checked, {} kept",
        subject.program.instructions().len(),
        subject.libpcap.optimized.get_instructions().len(),
        tally.checks,
        tally.kept
    );
}

#[test]
fn accept_is_the_snap_length_and_drop_all_drops() {
    let frames = corpus();
    let program = bpf::compile(&filter(&["tcp:80"]), 1234).unwrap();
    let all = Program::accept_all(96);
    let none = Program::drop_all();
    for frame in &frames {
        assert!(matches!(bpf::interpret(&program, frame), 0 | 1234));
        assert_eq!(bpf::interpret(&all, frame), 96);
        assert_eq!(bpf::interpret(&none, frame), 0);
    }
    assert_eq!(
        bpf::compile(&Filter::default(), 96).unwrap(),
        Program::accept_all(96)
    );
    // libpcap keeps everything for the empty expression, as accept_all does.
    let everything = pcap_compile("", true);
    assert!(frames.iter().all(|frame| everything.filter(frame)));
}

#[test]
fn vlan_offsets_accumulate_in_libpcap() {
    let doubly_tagged = FrameSpec::whole(
        &[0x88a8, 0x8100],
        Network::Ipv4 {
            ihl: 5,
            fragment: 0,
            protocol: 6,
            source: 80,
            destination: 1,
        },
    )
    .build();
    let untagged = "ip proto 6";
    let flat =
        format!("({untagged}) or (vlan and ({untagged})) or (vlan and vlan and ({untagged}))");
    let nested = format!("({untagged}) or (vlan and (({untagged}) or (vlan and ({untagged}))))");
    assert!(
        !pcap_compile(&flat, true).filter(&doubly_tagged),
        "libpcap fixed the accumulating vlan offsets?"
    );
    assert!(pcap_compile(&nested, true).filter(&doubly_tagged));
    // And the flat form reads an untagged IPv4 header's bytes 2-3 and 6-7 as TPIDs.
    let mut lookalike = FrameSpec::whole(
        &[],
        Network::Ipv4 {
            ihl: 5,
            fragment: 0x8100,
            protocol: 1,
            source: 0,
            destination: 0,
        },
    )
    .build();
    lookalike[16..18].copy_from_slice(&[0x81, 0x00]);
    lookalike[24..26].copy_from_slice(&[0x08, 0x00]);
    lookalike[35] = 6;
    assert!(pcap_compile(&flat, true).filter(&lookalike));
    assert!(!pcap_compile(&nested, true).filter(&lookalike));

    // The generator follows the nested meaning, and the expression recorded in pcapng files is
    // the nested form.
    let tcp = filter(&["tcp:80"]);
    let program = bpf::compile(&tcp, SNAP).unwrap();
    assert_eq!(bpf::interpret(&program, &doubly_tagged), SNAP);
    assert!(pcap_compile(&tcp.to_pcap_expression(), true).filter(&doubly_tagged));
}

#[test]
fn program_sizes_compared_with_libpcap() {
    let cases: [&[&str]; 8] = [
        &["tcp:80,443"],
        &["tcp:80,443,8000-8100", "udp:53"],
        &["tcp:80"],
        &["any:53"],
        &["icmp"],
        &["icmp", "icmpv6"],
        &["47"],
        &["tcp:80", "udp:53", "47", "icmpv6"],
    ];
    for rules in cases {
        let f = filter(rules);
        let ours = bpf::compile(&f, SNAP).unwrap();
        let libpcap = pcap_compile(&f.to_pcap_expression(), true);
        let theirs = libpcap.get_instructions().len();
        eprintln!(
            "{:<40} ours {:>4}, libpcap {:>4}",
            f.to_string(),
            ours.instructions().len(),
            theirs
        );
        if rules == ["tcp:80,443"] {
            eprintln!("{ours}");
        }
        assert!(
            ours.instructions().len() <= theirs,
            "{f}: ours {} > libpcap {theirs}\n{ours}",
            ours.instructions().len()
        );
    }
}

// ---- property test --------------------------------------------------------------------------

const INTERESTING_PROTOCOLS: [u8; 12] = [1, 6, 17, 58, 132, 136, 47, 44, 0, 41, 43, 255];

fn protocol_strategy() -> impl Strategy<Value = Option<Protocol>> {
    prop_oneof![
        2 => Just(None),
        6 => proptest::sample::select(Protocol::NAMED.to_vec()).prop_map(Some),
        2 => (1u8..=255).prop_map(|n| Protocol::from_number(n).ok()),
        1 => proptest::sample::select(vec![44u8, 47, 255]).prop_map(|n| Protocol::from_number(n).ok()),
    ]
}

fn port_strategy() -> impl Strategy<Value = u16> {
    prop_oneof![3 => proptest::sample::select(EDGE_PORTS.to_vec()), 2 => any::<u16>(), 1 => 0u16..16]
}

fn range_strategy() -> impl Strategy<Value = PortRange> {
    prop_oneof![
        2 => port_strategy().prop_map(PortRange::single),
        3 => (port_strategy(), port_strategy()).prop_map(|(a, b)| PortRange::new(a.min(b), a.max(b)).unwrap()),
        1 => (port_strategy(), 0u16..40).prop_map(|(a, w)| PortRange::new(a, a.saturating_add(w)).unwrap()),
    ]
}

fn rule_strategy() -> impl Strategy<Value = FilterRule> {
    (
        protocol_strategy(),
        proptest::collection::vec(range_strategy(), 0..=4),
    )
        .prop_map(|(protocol, ranges)| {
            let ports = if protocol.is_none_or(Protocol::has_ports) {
                ranges
            } else {
                Vec::new()
            };
            FilterRule::new(protocol, ports).unwrap()
        })
}

fn filter_strategy() -> impl Strategy<Value = Filter> {
    proptest::collection::vec(rule_strategy(), 1..=5).prop_map(Filter::new)
}

/// Ports near the filter's range edges, or anything.
fn frame_port_strategy(edges: Vec<u16>) -> BoxedStrategy<u16> {
    if edges.is_empty() {
        port_strategy().boxed()
    } else {
        prop_oneof![3 => proptest::sample::select(edges), 2 => port_strategy()].boxed()
    }
}

fn frame_strategy(filter: &Filter) -> impl Strategy<Value = FrameSpec> {
    let mut edges: Vec<u16> = Vec::new();
    let mut protocols: Vec<u8> = INTERESTING_PROTOCOLS.to_vec();
    for rule in filter.rules() {
        for range in rule.ports() {
            edges.extend([
                range.first().saturating_sub(1),
                range.first(),
                range.last(),
                range.last().saturating_add(1),
            ]);
        }
        if let Some(p) = rule.protocol() {
            protocols.push(p.number());
        }
    }
    let port = frame_port_strategy(edges);
    let protocol = prop_oneof![4 => proptest::sample::select(protocols), 1 => any::<u8>()];
    let tpid = proptest::sample::select(vec![0x8100u16, 0x88a8, 0x9100]);
    let tags = prop_oneof![4 => Just(0usize), 3 => Just(1), 3 => Just(2), 1 => Just(3)]
        .prop_flat_map(move |depth| proptest::collection::vec(tpid.clone(), depth));
    let ihl = prop_oneof![6 => Just(5u8), 3 => 6u8..=15, 1 => 0u8..5];
    let fragment = prop_oneof![
        4 => Just(0u16),
        1 => Just(0x2000u16),
        1 => Just(0x4000u16),
        2 => 1u16..0x2000,
        1 => any::<u16>(),
    ];
    let ipv4 = (ihl, fragment, protocol.clone(), port.clone(), port.clone()).prop_map(
        |(ihl, fragment, protocol, source, destination)| Network::Ipv4 {
            ihl,
            fragment,
            protocol,
            source,
            destination,
        },
    );
    let ipv6_fragment =
        prop_oneof![3 => Just(None), 2 => (protocol.clone(), any::<u16>()).prop_map(Some)];
    let ipv6 = (protocol, ipv6_fragment, port.clone(), port).prop_map(
        |(next_header, fragment, source, destination)| match fragment {
            Some(inner) => Network::Ipv6 {
                next_header: 44,
                fragment: Some(inner),
                source,
                destination,
            },
            None => Network::Ipv6 {
                next_header,
                fragment: None,
                source,
                destination,
            },
        },
    );
    let other = prop_oneof![
        proptest::sample::select(OTHER_ETHERTYPES.to_vec()),
        any::<u16>(),
        // An IP ethertype right where the filter expects a tag, and vice versa.
        proptest::sample::select(vec![0x0800u16, 0x86dd, 0x8100, 0x88a8, 0x9100]),
    ]
    .prop_map(|ethertype| Network::Other { ethertype });
    let network = prop_oneof![5 => ipv4, 4 => ipv6, 1 => other];
    let cut = prop_oneof![
        6 => Just(Cut::Whole),
        3 => (-3i8..=5).prop_map(Cut::AroundPorts),
        1 => (0usize..90).prop_map(Cut::At),
    ];
    (tags, network, cut).prop_map(|(tags, network, cut)| FrameSpec {
        tags,
        network,
        cut,
        addresses: Addresses::default(),
    })
}

fn case_strategy() -> impl Strategy<Value = (Filter, Vec<FrameSpec>)> {
    filter_strategy().prop_flat_map(|filter| {
        let frames = proptest::collection::vec(frame_strategy(&filter), 1..=24);
        (Just(filter), frames)
    })
}

#[test]
fn random_filters_and_frames_match_libpcap() {
    // PROPTEST_CASES=20000 runs a longer search.
    run_proptest("random filters", 2000, case_strategy());
}

#[test]
fn random_peer_sets_and_frames_match_libpcap() {
    run_proptest("random peer filters", 1000, peer_case_strategy());
}

/// Runs random filters over their random frames; every frame must pass [`Subject::check`].
fn run_proptest(
    what: &str,
    default_cases: u32,
    strategy: impl Strategy<Value = (Filter, Vec<FrameSpec>)>,
) {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default_cases);
    let config = ProptestConfig {
        cases,
        max_shrink_iters: 4000,
        // Failures are printed with the filter and frame; no regression file is written.
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    let mut runner = TestRunner::new(config);
    let total = Cell::new(Tally::default());
    let result = runner.run(&strategy, |(filter, frames)| {
        let subject = Subject::new(filter, true);
        let mut tally = total.get();
        for spec in &frames {
            let frame = spec.build();
            subject
                .check(&frame, &mut tally)
                .map_err(|failure| TestCaseError::fail(format!("{spec:?}\n{failure}")))?;
        }
        total.set(tally);
        Ok(())
    });
    if let Err(error) = result {
        panic!("{error}");
    }
    let total = total.get();
    eprintln!(
        "proptest: {cases} {what}, {} frame checks, {} kept, {} follow libpcap's unoptimized order where its optimizer disagrees",
        total.checks, total.kept, total.optimizer_differs
    );
    // The generators must produce both verdicts in quantity, or the agreement means little.
    assert!(
        total.kept > total.checks / 10 && total.kept < total.checks * 9 / 10,
        "{total:?}"
    );
}

// ---- peers ----------------------------------------------------------------------------------

/// Addresses outside every corpus peer but the /0s and /1s: 198.51.100.7 and 2001:db8::7.
const NEUTRAL_V4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 7);
const NEUTRAL_V6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 7);

/// The peer filters of the peer corpus: hosts and networks of the lengths where masks change
/// shape (/0, /1, /8, /12, /16, /24, /31, /32; /0, /1, /8, /64, /127, /128), both families, with
/// and without protocol and ports, rules of one family meeting peers of both, consecutive rules
/// sharing peers (one group) and not, and a peers-only rule inside a group.
fn peer_filters() -> Vec<Filter> {
    let mut filters: Vec<Filter> = [
        &["@10.96.0.10"][..],
        &["@10.0.0.0/8"],
        &["udp:53@10.96.0.10"],
        &["udp:53@10.96.0.10,10.0.0.0/8"],
        &["tcp:443,8443@10.0.0.0/8,fd00::/8"],
        &["@192.168.4.0/24"],
        &["@0.0.0.0/0"],
        &["@::/0"],
        &["tcp@0.0.0.0/0,::/0"],
        &["@128.0.0.0/1", "@8000::/1"],
        &["@192.168.4.6/31"],
        &["@fd00:0:0:1::/64"],
        &["@fd00::/127"],
        &["@fd00::1"],
        &["any:53@fd00::1,10.96.0.0/12"],
        &["icmp@10.244.0.0/16,fd00::/8"],
        &["icmpv6@fd00::/8"],
        &["47@10.0.0.0/8,fd00::/8", "44@fd00::1"],
        &["tcp:80@10.0.0.0/8", "tcp:443"],
        &["udp:53@10.96.0.10", "udp:53@10.96.0.10", "tcp@fd00::/8"],
        &["tcp:80@10.0.0.0/8", "@10.0.0.0/8", "udp"],
        &["tcp:80", "udp:53@10.96.0.10", "tcp"],
        &["@fd00::/8", "tcp:80@fd00::/8"],
        &[
            "tcp:40000@fd00::/8",
            "udp:53@fd00::/8",
            "icmpv6@fd00::/8",
            "tcp:443",
        ],
    ]
    .iter()
    .map(|rules| filter(rules))
    .collect();
    filters.push(many_peers_filter());
    filters
}

/// 48 IPv4 hosts and 16 IPv6 networks on DNS, and 64 IPv6 hosts on TCP: the most one rule takes,
/// twice, in a program long enough for long jumps.
fn many_peers_filter() -> Filter {
    let dns: Vec<String> = (0..48)
        .map(|i| format!("10.96.{}.{}", i / 8, 10 + i % 8))
        .chain((0..16).map(|i| format!("fd00:{i:x}::/32")))
        .collect();
    let tcp: Vec<String> = (0..64).map(|i| format!("fd00::{:x}", i * 7 + 1)).collect();
    filter(&[
        &format!("udp:53@{}", dns.join(",")),
        &format!("tcp@{}", tcp.join(",")),
    ])
}

/// Addresses on the edges of a peer's network: its first and last address, the ones just
/// outside, the network with its last prefix bit or its first bit flipped (outside), one with
/// the lowest bit of each 32-bit word flipped (outside when the word is under the prefix, which
/// finds a word compared that should not be, or not compared that should), and one inside.
fn edges(peer: Peer) -> Vec<IpAddr> {
    let prefix = u32::from(peer.prefix_len());
    let (network, bits) = match peer.address() {
        IpAddr::V4(v4) => (u128::from(u32::from(v4)), 32),
        IpAddr::V6(v6) => (u128::from(v6), 128),
    };
    let all = u128::MAX >> (128 - bits);
    let host_mask = all.checked_shr(prefix).unwrap_or(0);
    let last = network | host_mask;
    let mut values = vec![
        network,
        last,
        network.wrapping_sub(1) & all,
        last.wrapping_add(1) & all,
        network | (host_mask & 0x5a5a_5a5a_5a5a_5a5a_5a5a_5a5a_5a5a_5a5a),
    ];
    if prefix > 0 {
        values.push(network ^ (1 << (bits - prefix)));
        values.push(network ^ (1 << (bits - 1)));
    }
    for word in 0..bits / 32 {
        values.push(network ^ (1 << (32 * word)));
    }
    values
        .into_iter()
        .map(|value| match peer.address() {
            // Truncation is the point: the value is an IPv4 address.
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::from(value as u32)),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::from(value)),
        })
        .collect()
}

/// Every peer's edge addresses by family, with the neutral ones, without repeats.
fn edge_addresses<'a>(peers: impl IntoIterator<Item = &'a Peer>) -> (Vec<Ipv4Addr>, Vec<Ipv6Addr>) {
    let mut v4 = vec![NEUTRAL_V4];
    let mut v6 = vec![NEUTRAL_V6];
    for &peer in peers {
        for address in edges(peer) {
            match address {
                IpAddr::V4(a) if !v4.contains(&a) => v4.push(a),
                IpAddr::V6(a) if !v6.contains(&a) => v6.push(a),
                _ => {}
            }
        }
    }
    (v4, v6)
}

fn v4_pair(source: Ipv4Addr, destination: Ipv4Addr) -> Addresses {
    Addresses {
        v4: [source, destination],
        ..Addresses::default()
    }
}

fn v6_pair(source: Ipv6Addr, destination: Ipv6Addr) -> Addresses {
    Addresses {
        v6: [source, destination],
        ..Addresses::default()
    }
}

/// Each edge address of the peer filters as source and as destination (the other end neutral),
/// in packets of several protocols, ports and fragment shapes, untagged and tagged; ARP; and
/// frames with peer addresses cut at every length.
fn peer_corpus(filters: &[Filter]) -> Vec<Vec<u8>> {
    let many = many_peers_filter();
    let peers = filters
        .iter()
        .filter(|f| **f != many)
        .flat_map(|f| f.rules())
        .flat_map(|r| r.peers())
        // A sample of the long filter's peers: all of them would multiply the corpus for little.
        .chain(
            many.rules()
                .iter()
                .flat_map(|r| r.peers().iter().step_by(9)),
        );
    let (v4, v6) = edge_addresses(peers);
    let v4_shapes = [
        (6, 0, 40000, 443),
        (6, 0, 80, 40000),
        (6, 0x00b9, 80, 80),
        (17, 0, 53, 40000),
        (17, 0, 40000, 53),
        (1, 0, 0, 0),
        (47, 0, 0, 0),
        (132, 0, 1, 8443),
    ];
    let v6_shapes = [
        (6, None, 40000, 443),
        (6, None, 40000, 80),
        (17, None, 40000, 53),
        (58, None, 0, 0),
        (44, Some((47, 0x0001)), 0, 0),
        (44, Some((6, 0x0001)), 80, 80),
    ];
    let tag_stacks: [&[u16]; 4] = [&[], &[0x8100], &[0x88a8, 0x8100], &[0x88a8, 0x8100, 0x8100]];
    let mut specs = Vec::new();
    for tags in tag_stacks {
        for &address in &v4 {
            for pair in [v4_pair(address, NEUTRAL_V4), v4_pair(NEUTRAL_V4, address)] {
                for (protocol, fragment, source, destination) in v4_shapes {
                    let network = Network::Ipv4 {
                        ihl: 5,
                        fragment,
                        protocol,
                        source,
                        destination,
                    };
                    specs.push(FrameSpec::between(tags, network, pair));
                }
            }
        }
        for &address in &v6 {
            for pair in [v6_pair(address, NEUTRAL_V6), v6_pair(NEUTRAL_V6, address)] {
                for (next_header, fragment, source, destination) in v6_shapes {
                    let network = Network::Ipv6 {
                        next_header,
                        fragment,
                        source,
                        destination,
                    };
                    specs.push(FrameSpec::between(tags, network, pair));
                }
            }
        }
        specs.push(FrameSpec::whole(tags, Network::Other { ethertype: 0x0806 }));
    }
    let cut_bases = [
        (
            Network::Ipv4 {
                ihl: 5,
                fragment: 0,
                protocol: 17,
                source: 40000,
                destination: 53,
            },
            [
                v4_pair(Ipv4Addr::new(10, 96, 0, 10), NEUTRAL_V4),
                v4_pair(NEUTRAL_V4, Ipv4Addr::new(10, 96, 0, 10)),
                v4_pair(NEUTRAL_V4, Ipv4Addr::new(192, 168, 4, 7)),
            ],
        ),
        (
            Network::Ipv6 {
                next_header: 6,
                fragment: None,
                source: 40000,
                destination: 443,
            },
            [
                v6_pair(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1), NEUTRAL_V6),
                v6_pair(NEUTRAL_V6, Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1)),
                v6_pair(Ipv6Addr::new(0xfd00, 0, 0, 1, 0, 0, 0, 5), NEUTRAL_V6),
            ],
        ),
        (
            Network::Ipv6 {
                next_header: 44,
                fragment: Some((47, 0x0001)),
                source: 0,
                destination: 0,
            },
            [
                v6_pair(NEUTRAL_V6, Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1)),
                v6_pair(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1), NEUTRAL_V6),
                Addresses::default(),
            ],
        ),
    ];
    for tags in [&[][..], &[0x8100]] {
        for (network, pairs) in &cut_bases {
            for pair in pairs {
                let base = FrameSpec::between(tags, network.clone(), *pair);
                for n in 0..=base.build().len() {
                    specs.push(FrameSpec {
                        cut: Cut::At(n),
                        ..base.clone()
                    });
                }
            }
        }
    }
    specs.iter().map(FrameSpec::build).collect()
}

#[test]
fn peer_corpus_matches_libpcap() {
    let filters = peer_filters();
    let frames = peer_corpus(&filters);
    assert!(frames.len() > 5_000, "{}", frames.len());
    for (filter, tally) in corpus_agrees_with_libpcap("peer corpus", &frames, filters) {
        // Each filter must both keep and drop a fair share, or its agreement proves little.
        assert!(
            tally.kept > 20 && tally.kept + 20 < tally.checks,
            "{filter}: keeps {} of {}",
            tally.kept,
            tally.checks
        );
    }
}

#[test]
fn the_longest_peer_filter_needs_long_jumps_and_matches_libpcap() {
    let subject = Subject::new(many_peers_filter(), false);
    let length = subject.program.instructions().len();
    assert!(length > 1000, "{length}");
    let mut tally = Tally::default();
    let mut checked = 0;
    for rule in subject.filter.rules() {
        let (v4, v6) = edge_addresses(rule.peers());
        for address in v4 {
            for pair in [v4_pair(address, NEUTRAL_V4), v4_pair(NEUTRAL_V4, address)] {
                for tags in [&[][..], &[0x8100]] {
                    let network = Network::Ipv4 {
                        ihl: 5,
                        fragment: 0,
                        protocol: 17,
                        source: 40000,
                        destination: 53,
                    };
                    let frame = FrameSpec::between(tags, network, pair).build();
                    subject
                        .check(&frame, &mut tally)
                        .unwrap_or_else(|failure| panic!("{failure}"));
                    checked += 1;
                }
            }
        }
        for address in v6 {
            for pair in [v6_pair(address, NEUTRAL_V6), v6_pair(NEUTRAL_V6, address)] {
                for next_header in [6, 17] {
                    let network = Network::Ipv6 {
                        next_header,
                        fragment: None,
                        source: 53,
                        destination: 40000,
                    };
                    let frame = FrameSpec::between(&[0x88a8], network, pair).build();
                    subject
                        .check(&frame, &mut tally)
                        .unwrap_or_else(|failure| panic!("{failure}"));
                    checked += 1;
                }
            }
        }
    }
    assert!(tally.kept > checked / 5, "kept {} of {checked}", tally.kept);
    eprintln!(
        "longest peer filter: {length} instructions (libpcap: {}), {checked} frames checked, {} kept",
        subject.libpcap.optimized.get_instructions().len(),
        tally.kept
    );
}

/// A random network: an address masked to a prefix length, favouring the lengths where masks
/// change shape.
fn peer_strategy() -> impl Strategy<Value = Peer> {
    let v4 = (
        any::<u32>(),
        prop_oneof![
            1 => Just(0u8), 1 => Just(1), 1 => Just(8), 1 => Just(24), 1 => Just(31),
            2 => Just(32), 2 => 0u8..=32
        ],
    )
        .prop_map(|(address, length)| {
            let mask = u32::MAX.checked_shl(32 - u32::from(length)).unwrap_or(0);
            Peer::new(IpAddr::V4(Ipv4Addr::from(address & mask)), length).unwrap()
        });
    let v6 = (
        any::<u128>(),
        prop_oneof![
            1 => Just(0u8), 1 => Just(1), 1 => Just(32), 1 => Just(48), 1 => Just(64),
            1 => Just(96), 1 => Just(127), 2 => Just(128), 2 => 0u8..=128
        ],
    )
        .prop_map(|(address, length)| {
            let mask = u128::MAX.checked_shl(128 - u32::from(length)).unwrap_or(0);
            Peer::new(IpAddr::V6(Ipv6Addr::from(address & mask)), length).unwrap()
        });
    prop_oneof![v4, v6]
}

/// A rule with the filter's shared peers, its own, or none (but then a protocol or ports, so
/// that the filter does not keep everything).
fn peer_rule_strategy(shared: Vec<Peer>) -> impl Strategy<Value = FilterRule> {
    let peers = prop_oneof![
        1 => Just(Vec::new()),
        2 => Just(shared),
        3 => proptest::collection::vec(peer_strategy(), 1..=4),
    ];
    (
        protocol_strategy(),
        proptest::collection::vec(range_strategy(), 0..=3),
        peers,
    )
        .prop_filter_map(
            "a rule that can match and keeps less than everything",
            |(protocol, ranges, peers)| {
                let ports = if protocol.is_none_or(Protocol::has_ports) {
                    ranges
                } else {
                    Vec::new()
                };
                let rule = FilterRule::with_peers(protocol, ports, peers).ok()?;
                (rule.protocols().is_some() || !rule.peers().is_empty()).then_some(rule)
            },
        )
}

fn peer_filter_strategy() -> impl Strategy<Value = Filter> {
    proptest::collection::vec(peer_strategy(), 1..=3)
        .prop_flat_map(|shared| proptest::collection::vec(peer_rule_strategy(shared), 1..=4))
        .prop_map(Filter::new)
}

/// Frames as for the other proptest, with addresses on the edges of the filter's peers (or
/// anywhere) at either end.
fn peer_frame_strategy(filter: &Filter) -> impl Strategy<Value = FrameSpec> {
    let peers: Vec<Peer> = filter
        .rules()
        .iter()
        .flat_map(|r| r.peers())
        .copied()
        .collect();
    let (v4, v6) = edge_addresses(&peers);
    // Networks' own addresses too, so that a fair share of frames meets a peer.
    let (mut inside_v4, mut inside_v6) = (vec![NEUTRAL_V4], vec![NEUTRAL_V6]);
    for peer in &peers {
        match peer.address() {
            IpAddr::V4(a) => inside_v4.push(a),
            IpAddr::V6(a) => inside_v6.push(a),
        }
    }
    let v4 = prop_oneof![
        4 => proptest::sample::select(v4),
        6 => proptest::sample::select(inside_v4),
        1 => any::<u32>().prop_map(Ipv4Addr::from),
    ];
    let v6 = prop_oneof![
        4 => proptest::sample::select(v6),
        6 => proptest::sample::select(inside_v6),
        1 => any::<u128>().prop_map(Ipv6Addr::from),
    ];
    // A peer filter keeps fewer frames than one without peers, so half the frames carry one of
    // the filter's protocols (the other frames' protocols are mostly ones it does not name) and
    // half the cut frames are made whole again.
    let mut protocols: Vec<u8> = filter
        .rules()
        .iter()
        .flat_map(|r| r.protocols().unwrap_or_default())
        .map(Protocol::number)
        .collect();
    protocols.push(6);
    let protocol = proptest::option::weighted(0.5, proptest::sample::select(protocols));
    let whole = proptest::bool::weighted(0.5);
    (
        frame_strategy(filter),
        [v4.clone(), v4],
        [v6.clone(), v6],
        protocol,
        whole,
    )
        .prop_map(|(spec, v4, v6, protocol, whole)| {
            let network = match (spec.network, protocol) {
                (
                    Network::Ipv4 {
                        ihl,
                        fragment,
                        source,
                        destination,
                        ..
                    },
                    Some(protocol),
                ) => Network::Ipv4 {
                    ihl,
                    fragment,
                    protocol,
                    source,
                    destination,
                },
                (
                    Network::Ipv6 {
                        fragment: None,
                        source,
                        destination,
                        ..
                    },
                    Some(next_header),
                ) => Network::Ipv6 {
                    next_header,
                    fragment: None,
                    source,
                    destination,
                },
                (network, _) => network,
            };
            FrameSpec {
                addresses: Addresses { v4, v6 },
                cut: if whole { Cut::Whole } else { spec.cut },
                network,
                ..spec
            }
        })
}

fn peer_case_strategy() -> impl Strategy<Value = (Filter, Vec<FrameSpec>)> {
    peer_filter_strategy().prop_flat_map(|filter| {
        let frames = proptest::collection::vec(peer_frame_strategy(&filter), 1..=24);
        (Just(filter), frames)
    })
}
