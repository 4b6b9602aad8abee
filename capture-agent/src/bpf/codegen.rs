//! Compiles a [`Filter`] to a classic BPF program for an AF_PACKET socket on an Ethernet device.
//!
//! The program means exactly what libpcap makes of [`Filter::to_pcap_expression`] (with the VLAN
//! branches nested as `U or (vlan and (U or (vlan and U)))`, see below): the tests in
//! `tests/bpf_vs_libpcap.rs` run both over a corpus and random frames. What it keeps:
//!
//! - **VLAN tags.** The kernel usually strips the outer tag before the filter runs, but frames can
//!   still carry one or two inline tags (TPID 0x8100, 0x88a8 or 0x9100). Up to two are skipped and
//!   the rules apply to the packet inside; a frame with three tags is rejected. (libpcap's `vlan`
//!   shifts the offsets of everything after it, even across `or`, so this meaning is written for
//!   libpcap as `U or (vlan and (U or (vlan and U)))`; the flat `U or (vlan and U) or (vlan and
//!   vlan and U)` reads the third branch at the wrong offsets.)
//! - **A protocol without ports** keeps every IPv4 packet with that protocol number (all
//!   fragments, like `ip proto n`) and every IPv6 packet whose next header is that number, or is a
//!   fragment header (44) followed by that number (like `ip6 proto n`). ICMP is only IPv4, ICMPv6
//!   only IPv6, numbers are both.
//! - **Ports** keep a packet whose source or destination port is in one of the ranges. In IPv4 the
//!   ports are read at the header length given by the IHL field, and only in the first fragment
//!   (fragment offset 0): later fragments start with payload bytes, not ports, so reading "ports"
//!   there would match at random. A port rule therefore skips non-first fragments, while a
//!   protocol-only rule keeps them — that is what lets `tcp` capture a whole fragmented datagram
//!   and `tcp:80` only its first fragment (libpcap's `tcp port 80` behaves the same). In IPv6 the
//!   ports are read right after the fixed header and extension headers are not walked (also like
//!   libpcap), so `tcp:80` does not match TCP behind a fragment header.
//! - **Peers** keep a packet whose source or destination address is in one of the rule's
//!   networks, on top of the rule's protocol and ports; a rule with peers and neither protocol nor
//!   ports keeps every IPv4/IPv6 packet with those peers. Only IP packets have peers: libpcap's
//!   bare `host` also matches ARP, so the expression says `ip host`/`ip net`/`ip6 host`/`ip6 net`.
//!   An IPv4 peer only meets IPv4 packets and an IPv6 peer IPv6 packets (an IPv4-mapped IPv6 peer
//!   is an IPv6 network). Addresses are in every fragment's header, so peers apply to all
//!   fragments; a rule's ports still skip non-first IPv4 fragments as above. VLAN-tagged frames
//!   are matched on their inner packet like everything else.
//! - Everything else — ARP, LLDP, other ethertypes, and frames too short for what a rule reads —
//!   is rejected.
//!
//! **Truncated frames.** A load past the end of the frame makes the kernel drop the packet, so
//! the order of loads is part of the meaning. The program makes the loads of the expression read
//! left to right — what libpcap compiles with its optimizer off — leaving out only loads that
//! cannot be reached: the ethertype of each tag level, the protocol byte, and then whatever the
//! *first* rule naming that protocol reads. A protocol-only rule keeps the packet without reading
//! more (for IPv6 next header 44 the first protocol-only rule reads the byte after the fixed
//! header, unless it names 44 itself). A port rule reads the source port and compares it with its
//! first range, reads the destination port, and only then compares everything else: the rest of
//! its ranges and those of later port rules for the protocol, or nothing when a later rule keeps
//! the protocol whatever its ports. libpcap's optimizer does not keep this order: it drops some
//! loads whose value cannot change the verdict and moves some port comparisons ahead of the
//! destination-port load, which changes libpcap's own verdict for some frames that end inside the
//! transport or IPv6 fragment header (and differently for IPv4 and IPv6). Such frames were already
//! malformed on the wire; following the unoptimized order keeps their verdict well defined.
//!
//! A rule with peers is written `((PEERS) and (BODY))`, so its peers are read before its
//! protocol: for each peer in the order written (only those of the packet's IP version), the
//! source address, then the destination, as libpcap's `ip net`/`ip6 net` does. An IPv4 address is
//! one 32-bit load, masked to the prefix; an IPv6 address is four, compared word by word under the
//! prefix mask up to the first word that differs — and when the words inside the prefix all match,
//! libpcap still loads the rest (comparing them under a zero mask), so the program loads the
//! address's last word before deciding. Consecutive rules with the same peers read them once:
//! `(P and B1) or (P and B2)` is `P and (B1 or B2)` load for load, since reading P twice gives the
//! same answer.
//!
//! **Shape.** The ethertype is loaded once per tag level; the level sets X to the bytes of tags
//! skipped, and a single copy of the IPv4 and IPv6 code reads the packet with indexed loads. The
//! rules are cut into groups of consecutive rules with the same peers; each family's code runs the
//! groups in order (peer tests, then the group's protocols and ports folded as below), a group
//! that does not keep the packet going on to the next one instead of rejecting. Port tests move X
//! to the transport header, so with several groups the family's code keeps the tag bytes in
//! scratch word M[0] and a later group reloads X from there. Port
//! tests live in one block per distinct port plan (ranges in rule order, and whether a later rule
//! keeps the protocol anyway), shared by IPv4 and IPv6 and by every protocol with the same plan
//! (`any:53` is one block, not four); the block expects X to point at the transport header. IPv4 computes that as tags + 4*IHL with `ldb/and/lsh/add` rather than
//! `ldxb 4*([k]&0xf)`, because `msh` only takes a fixed offset and would need one copy of the IPv4
//! code per tag level. Port ranges are merged and tested with a decision tree ([`PortSet`]); all
//! paths end in one shared accept (`ret #snap_length`) or reject (`ret #0`), with nearby copies
//! where a jump would be too long ([`Assembler`]).

use capture_spec::Peer;
use capture_spec::{Filter, FilterRule, PortRange};

use super::asm::{Assembler, Label};
use super::portset::PortSet;
use super::program::{
    BPF_ABS, BPF_ADD, BPF_ALU, BPF_AND, BPF_B, BPF_H, BPF_IMM, BPF_IND, BPF_JEQ, BPF_JMP, BPF_JSET,
    BPF_K, BPF_LD, BPF_LDX, BPF_LSH, BPF_MEM, BPF_MISC, BPF_RET, BPF_STX, BPF_TAX, BPF_TXA, BPF_W,
    BPF_X,
};
use super::{BpfError, Program};

const ETHERTYPE_OFFSET: u32 = 12;
const ETHERNET_HEADER_LENGTH: u32 = 14;
const TAG_LENGTH: u32 = 4;
/// Inline VLAN tags skipped before giving up on a frame.
const MAX_TAGS: u32 = 2;
const ETHERTYPE_IPV4: u32 = 0x0800;
const ETHERTYPE_IPV6: u32 = 0x86dd;
/// 802.1Q, 802.1ad, and the pre-standard QinQ TPID: the ones libpcap's `vlan` recognises.
const VLAN_TPIDS: [u32; 3] = [0x8100, 0x88a8, 0x9100];

// Offsets inside the IPv4 and IPv6 headers.
const IPV4_FRAGMENT: u32 = 6;
const IPV4_PROTOCOL: u32 = 9;
const IPV4_FRAGMENT_OFFSET_MASK: u32 = 0x1fff;
const IPV4_SOURCE: u32 = 12;
const IPV4_DESTINATION: u32 = 16;
const IPV6_NEXT_HEADER: u32 = 6;
const IPV6_HEADER_LENGTH: u32 = 40;
const IPV6_SOURCE: u32 = 8;
const IPV6_DESTINATION: u32 = 24;
/// Where a family's code keeps the tag bytes (X on entry) when port tests may move X.
const SAVED_TAGS: u32 = 0;
/// IPv6 fragment header; its first byte is the next header after it.
const IPPROTO_FRAGMENT: u8 = 44;
const SOURCE_PORT: u32 = 0;
const DESTINATION_PORT: u32 = 2;

/// Compiles a filter to a program whose accept return value is `snap_length` (the kernel
/// truncates to the BPF return value) and whose reject is 0.
pub fn compile(filter: &Filter, snap_length: u32) -> Result<Program, BpfError> {
    if snap_length == 0 {
        return Err(BpfError::ZeroSnapLength);
    }
    if filter.keeps_everything() {
        return Ok(Program::accept_all(snap_length));
    }
    let plan = Plan::new(filter);
    let mut asm = Assembler::new();
    let accept = asm.label();
    let reject = asm.label();
    let mut generator = Generator {
        asm,
        accept,
        reject,
        port_blocks: Vec::new(),
    };
    generator.ethernet(&plan);
    generator.finish(snap_length)
}

/// The filter's rules cut into groups of consecutive rules with the same peers, in rule order.
#[derive(Debug, Default)]
struct Plan {
    groups: Vec<Group>,
}

/// Consecutive rules with the same peers (none, for rules without): what they keep of each IP
/// family once the peers matched.
#[derive(Debug, Default)]
struct Group {
    peers: Vec<Peer>,
    ipv4: Family,
    ipv6: Family,
}

impl Plan {
    fn new(filter: &Filter) -> Plan {
        let mut plan = Plan::default();
        for rule in filter.rules() {
            let group = match plan.groups.last_mut() {
                Some(group) if group.peers == rule.peers() => group,
                _ => {
                    plan.groups.push(Group {
                        peers: rule.peers().to_vec(),
                        ..Group::default()
                    });
                    let Some(group) = plan.groups.last_mut() else {
                        continue;
                    };
                    group
                }
            };
            group.add(rule);
        }
        plan
    }

    /// The groups that can read or keep anything of a family, with their peers of that family.
    /// A group whose peers are all of the other family never matches (libpcap's `ip6 net`
    /// rejects an IPv4 packet on its ethertype, reading nothing more); one without peers and
    /// without rules for the family neither.
    fn segments(&self, ipv4: bool) -> Vec<Segment<'_>> {
        self.groups
            .iter()
            .filter_map(|group| {
                let family = if ipv4 { &group.ipv4 } else { &group.ipv6 };
                let peers: Vec<Peer> = group
                    .peers
                    .iter()
                    .copied()
                    .filter(|peer| peer.is_ipv4() == ipv4)
                    .collect();
                let keep = if group.peers.is_empty() {
                    !family.is_empty()
                } else {
                    !peers.is_empty()
                };
                keep.then_some(Segment { peers, family })
            })
            .collect()
    }
}

impl Group {
    fn add(&mut self, rule: &FilterRule) {
        let Some(protocols) = rule.protocols() else {
            // Neither protocol nor ports: with the group's peers matched, every packet of either
            // family is kept (a rule without peers too would make the filter keep everything,
            // which `compile` handles before planning).
            self.ipv4.keep_the_rest();
            self.ipv6.keep_the_rest();
            return;
        };
        for protocol in protocols {
            let families = protocol.families();
            // Port rules are written for IPv4 and IPv6 alike (only port protocols have
            // ports, and they exist in both).
            let with_ports = !rule.ports().is_empty();
            if families.ipv4 || with_ports {
                self.ipv4.add(protocol.number(), rule.ports());
            }
            if families.ipv6 || with_ports {
                self.ipv6.add(protocol.number(), rule.ports());
            }
        }
    }
}

/// One group's code for one family: its peers of that family (empty: no peer test) and what it
/// keeps once they matched.
struct Segment<'a> {
    peers: Vec<Peer>,
    family: &'a Family,
}

/// The rules of one IP family, folded per protocol number in rule order.
#[derive(Debug, Default)]
struct Family {
    /// Every protocol some rule names, in the order rules first name them.
    protocols: Vec<(u8, Verdict)>,
    /// Protocols some rule keeps whatever their ports, in rule order. In IPv6 these are also
    /// looked for behind a fragment header.
    any_port: Vec<u8>,
    /// A rule with peers but neither protocol nor ports follows: whatever the earlier rules do
    /// not keep, it keeps, and the rules after it are never reached.
    keep_rest: bool,
}

/// How packets of one protocol are decided. The first rule naming the protocol matters: libpcap
/// evaluates the expression left to right, and a port rule reads the ports (possibly past the end
/// of a truncated frame) before a later protocol-only rule is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Verdict {
    /// The first rule naming the protocol has no ports: keep, reading nothing more.
    Keep,
    /// The first rule naming the protocol has ports.
    Ports(PortPlan),
}

/// The port tests for a protocol whose first rule has ports.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PortPlan {
    /// The ranges of every port rule for the protocol, in rule order. Only the first is tested
    /// before the destination port is loaded.
    ranges: Vec<PortRange>,
    /// A later rule keeps the protocol whatever its ports: once both ports have been read (or
    /// when an IPv4 packet is a non-first fragment, which port rules skip without reading), keep.
    then_keep: bool,
}

impl Family {
    fn add(&mut self, number: u8, ports: &[PortRange]) {
        if self.keep_rest {
            return;
        }
        if ports.is_empty() && !self.any_port.contains(&number) {
            self.any_port.push(number);
        }
        match self.protocols.iter_mut().find(|(n, _)| *n == number) {
            None => {
                let verdict = if ports.is_empty() {
                    Verdict::Keep
                } else {
                    Verdict::Ports(PortPlan {
                        ranges: ports.to_vec(),
                        then_keep: false,
                    })
                };
                self.protocols.push((number, verdict));
            }
            Some((_, Verdict::Keep)) => {}
            Some((_, Verdict::Ports(plan))) if ports.is_empty() => {
                // Only the first range still decides anything; dropping the rest lets equal
                // plans share one block.
                plan.then_keep = true;
                plan.ranges.truncate(1);
            }
            Some((_, Verdict::Ports(plan))) => {
                if !plan.then_keep {
                    plan.ranges.extend_from_slice(ports);
                }
            }
        }
    }

    fn keep_the_rest(&mut self) {
        self.keep_rest = true;
    }

    fn is_empty(&self) -> bool {
        self.protocols.is_empty() && !self.keep_rest
    }

    /// Whether some packet's code moves X to the transport header.
    fn reads_ports(&self) -> bool {
        self.protocols
            .iter()
            .any(|(_, verdict)| matches!(verdict, Verdict::Ports(_)))
    }
}

/// A dispatch case: jump to the label when A equals the value.
type Case = (u32, Label);
/// A block that points X at the transport header, then runs the plan's port tests; a packet the
/// tests do not keep goes to the label.
type Preparation = (Label, PortPlan, Label);

/// The 32-bit words of an address and of its prefix mask, most significant first.
fn words(peer: Peer) -> Vec<(u32, u32)> {
    let (address, bits): (u128, u32) = match peer.address() {
        std::net::IpAddr::V4(v4) => (u128::from(u32::from(v4)), 32),
        std::net::IpAddr::V6(v6) => (u128::from(v6), 128),
    };
    let prefix = u32::from(peer.prefix_len());
    let mask: u128 = match prefix {
        0 => 0,
        // `prefix` is at most `bits`, so the shift is below 128.
        p => (u128::MAX << (bits - p)) & (u128::MAX >> (128 - bits)),
    };
    (0..bits / 32)
        .rev()
        .map(|word| {
            let shift = word * 32;
            // Truncation to 32 bits is the point: one word of the address.
            ((address >> shift) as u32, (mask >> shift) as u32)
        })
        .collect()
}

struct Generator {
    asm: Assembler,
    accept: Label,
    reject: Label,
    /// One port-test block per distinct plan and miss target, not yet emitted. Those that reject
    /// are shared by both families and emitted at the end; those that go on to a next group are
    /// emitted right before it.
    port_blocks: Vec<(PortPlan, Label, Label)>,
}

impl Generator {
    /// The entry: walks up to two VLAN tags and dispatches on the ethertype. X = bytes of tags
    /// skipped (0, 4 or 8) on entry to the IP code. At level 0 X is 0 because the kernel zeroes A
    /// and X before every classic program (and libpcap's interpreter does the same).
    fn ethernet(&mut self, plan: &Plan) {
        let ipv4_segments = plan.segments(true);
        let ipv6_segments = plan.segments(false);
        let ipv4 = (!ipv4_segments.is_empty()).then(|| self.asm.label());
        let ipv6 = (!ipv6_segments.is_empty()).then(|| self.asm.label());
        for level in 0..=MAX_TAGS {
            if level > 0 {
                self.asm.emit(BPF_LDX | BPF_W | BPF_IMM, level * TAG_LENGTH);
            }
            self.asm.emit(
                BPF_LD | BPF_H | BPF_ABS,
                ETHERTYPE_OFFSET + level * TAG_LENGTH,
            );
            let mut cases: Vec<Case> = Vec::new();
            cases.extend(ipv4.map(|label| (ETHERTYPE_IPV4, label)));
            cases.extend(ipv6.map(|label| (ETHERTYPE_IPV6, label)));
            let deeper = (level < MAX_TAGS).then(|| self.asm.label());
            if let Some(deeper) = deeper {
                cases.extend(VLAN_TPIDS.iter().map(|&tpid| (tpid, deeper)));
            }
            self.dispatch(&cases, self.reject);
            if let Some(deeper) = deeper {
                self.asm.bind(deeper);
            }
        }
        if let Some(label) = ipv4 {
            self.asm.bind(label);
            self.segments(&ipv4_segments, true);
        }
        if let Some(label) = ipv6 {
            self.asm.bind(label);
            self.segments(&ipv6_segments, false);
        }
    }

    /// A family's groups in order, each falling through to the next when it does not keep the
    /// packet, the last one rejecting.
    fn segments(&mut self, segments: &[Segment<'_>], ipv4: bool) {
        let mut x_moved = false;
        for (index, segment) in segments.iter().enumerate() {
            if index == 0 && segments.len() > 1 {
                self.asm.emit(BPF_STX, SAVED_TAGS);
            }
            if x_moved {
                self.asm.emit(BPF_LDX | BPF_W | BPF_MEM, SAVED_TAGS);
            }
            let next = (index + 1 < segments.len()).then(|| self.asm.label());
            let miss = next.unwrap_or(self.reject);
            let body = (!segment.family.is_empty()).then(|| self.asm.label());
            if !segment.peers.is_empty() {
                // Without rules for this family the peers are still read, as libpcap reads
                // them: a frame too short for them is rejected rather than passed on.
                let matched = body.unwrap_or(miss);
                if ipv4 {
                    self.ipv4_peers(&segment.peers, matched, miss);
                } else {
                    self.ipv6_peers(&segment.peers, matched, miss);
                }
            }
            if let Some(body) = body {
                self.asm.bind(body);
                if ipv4 {
                    self.ipv4(segment.family, miss);
                } else {
                    self.ipv6(segment.family, miss);
                }
            }
            x_moved |= segment.family.reads_ports();
            if let Some(next) = next {
                // Jumps only go forward: port blocks that go on to the next group come before it.
                let (blocks, shared): (Vec<_>, Vec<_>) = std::mem::take(&mut self.port_blocks)
                    .into_iter()
                    .partition(|(_, _, miss)| *miss == next);
                self.port_blocks = shared;
                for (plan, label, miss) in blocks {
                    self.port_tests(&plan, label, miss);
                }
                self.asm.bind(next);
            }
        }
    }

    /// A jump to the label of the first case whose value equals A; no match goes to `miss`.
    fn dispatch(&mut self, cases: &[Case], miss: Label) {
        let Some((&(last_value, last_label), rest)) = cases.split_last() else {
            self.asm.ja(miss);
            return;
        };
        for &(value, label) in rest {
            self.asm.jump_if(BPF_JMP | BPF_JEQ | BPF_K, value, label);
        }
        self.asm
            .branch(BPF_JMP | BPF_JEQ | BPF_K, last_value, last_label, miss);
    }

    /// IPv4 peer tests at X + 14: jumps to `matched` when the source or destination is in one
    /// of the peers, else to `missed`. Every test of an end reloads the same word, so the order
    /// of loads (what decides a truncated frame) is libpcap's.
    fn ipv4_peers(&mut self, peers: &[Peer], matched: Label, missed: Label) {
        let ip = ETHERNET_HEADER_LENGTH;
        for &peer in peers {
            let [(address, mask)] = words(peer)[..] else {
                continue;
            };
            for end in [IPV4_SOURCE, IPV4_DESTINATION] {
                self.asm.emit(BPF_LD | BPF_W | BPF_IND, ip + end);
                if mask == 0 {
                    // 0.0.0.0/0: the load was all there was to it; nothing after is reached.
                    self.asm.ja(matched);
                    return;
                }
                if mask != u32::MAX {
                    self.asm.emit(BPF_ALU | BPF_AND | BPF_K, mask);
                }
                self.asm
                    .jump_if(BPF_JMP | BPF_JEQ | BPF_K, address, matched);
            }
        }
        self.asm.ja(missed);
    }

    /// IPv6 peer tests at X + 14, like [`Generator::ipv4_peers`] with four words per address.
    fn ipv6_peers(&mut self, peers: &[Peer], matched: Label, missed: Label) {
        let ip = ETHERNET_HEADER_LENGTH;
        for &peer in peers {
            let words = words(peer);
            // Masks are prefixes, so the words the prefix touches come first.
            let compared = words.iter().take_while(|(_, mask)| *mask != 0).count();
            for end in [IPV6_SOURCE, IPV6_DESTINATION] {
                let next_end = self.asm.label();
                for (index, &(address, mask)) in (0u32..).zip(&words[..compared]) {
                    self.asm
                        .emit(BPF_LD | BPF_W | BPF_IND, ip + end + 4 * index);
                    if mask != u32::MAX {
                        self.asm.emit(BPF_ALU | BPF_AND | BPF_K, mask);
                    }
                    self.asm
                        .jump_unless(BPF_JMP | BPF_JEQ | BPF_K, address, next_end);
                }
                if compared < words.len() {
                    // libpcap loads the words outside the prefix too (and compares them under a
                    // zero mask): only whether the last one is in the frame can matter.
                    self.asm.emit(BPF_LD | BPF_W | BPF_IND, ip + end + 12);
                }
                self.asm.ja(matched);
                self.asm.bind(next_end);
                if compared == 0 {
                    // ::/0 matched on the source; nothing after is reached.
                    return;
                }
            }
        }
        self.asm.ja(missed);
    }

    /// Dispatch cases for a family's protocols, except those in `skip`. Protocols with the same
    /// port plan go to one preparation block (which points X at the transport header and jumps to
    /// the plan's port block); returns (preparation label, plan, miss) for the caller to emit.
    fn protocol_cases(
        &mut self,
        family: &Family,
        skip: &[u8],
        miss: Label,
    ) -> (Vec<Case>, Vec<Preparation>) {
        let mut cases = Vec::new();
        let mut preparations: Vec<Preparation> = Vec::new();
        for (number, verdict) in family.protocols.iter().filter(|(n, _)| !skip.contains(n)) {
            let target = match verdict {
                Verdict::Keep => self.accept,
                Verdict::Ports(plan) => match preparations.iter().find(|(_, p, _)| p == plan) {
                    Some((prepare, _, _)) => *prepare,
                    None => {
                        let prepare = self.asm.label();
                        preparations.push((prepare, plan.clone(), miss));
                        prepare
                    }
                },
            };
            cases.push((u32::from(*number), target));
        }
        (cases, preparations)
    }

    /// What a family's rules keep once peers (if any) matched, IPv4 at X + 14; a packet they do
    /// not keep goes to `miss` (the next group, or reject).
    fn ipv4(&mut self, family: &Family, miss: Label) {
        let ip = ETHERNET_HEADER_LENGTH;
        let miss = if family.keep_rest { self.accept } else { miss };
        if family.protocols.is_empty() {
            self.asm.ja(miss);
            return;
        }
        self.asm.emit(BPF_LD | BPF_B | BPF_IND, ip + IPV4_PROTOCOL);
        let (cases, preparations) = self.protocol_cases(family, &[], miss);
        self.dispatch(&cases, miss);
        for (prepare, plan, miss) in preparations {
            self.asm.bind(prepare);
            // Non-first fragments carry no ports: port rules skip them without reading further.
            let non_first = if plan.then_keep { self.accept } else { miss };
            self.asm.emit(BPF_LD | BPF_H | BPF_IND, ip + IPV4_FRAGMENT);
            self.asm.jump_if(
                BPF_JMP | BPF_JSET | BPF_K,
                IPV4_FRAGMENT_OFFSET_MASK,
                non_first,
            );
            // X = tags + 4 * IHL, so the ports are at X + 14.
            self.asm.emit(BPF_LD | BPF_B | BPF_IND, ip);
            self.asm.emit(BPF_ALU | BPF_AND | BPF_K, 0xf);
            self.asm.emit(BPF_ALU | BPF_LSH | BPF_K, 2);
            self.asm.emit(BPF_ALU | BPF_ADD | BPF_X, 0);
            self.asm.emit(BPF_MISC | BPF_TAX, 0);
            let block = self.port_block(&plan, miss);
            self.asm.ja(block);
        }
    }

    /// Like [`Generator::ipv4`] for IPv6 at X + 14.
    fn ipv6(&mut self, family: &Family, miss: Label) {
        let ip = ETHERNET_HEADER_LENGTH;
        let miss = if family.keep_rest { self.accept } else { miss };
        if family.protocols.is_empty() {
            self.asm.ja(miss);
            return;
        }
        self.asm
            .emit(BPF_LD | BPF_B | BPF_IND, ip + IPV6_NEXT_HEADER);
        // Next header 44 is decided by the protocol-only rules, in order: `ip6 proto n` tests
        // the next header for n first and only then looks behind a fragment header, so the
        // first such rule either names 44 itself (keep, reading nothing more) or reads the byte
        // after the fixed header.
        let (mut cases, preparations) = self.protocol_cases(family, &[IPPROTO_FRAGMENT], miss);
        let fragment = match family.any_port.first() {
            None => None,
            Some(&IPPROTO_FRAGMENT) => {
                cases.push((u32::from(IPPROTO_FRAGMENT), self.accept));
                None
            }
            Some(_) => {
                let label = self.asm.label();
                cases.push((u32::from(IPPROTO_FRAGMENT), label));
                Some(label)
            }
        };
        self.dispatch(&cases, miss);
        if let Some(fragment) = fragment {
            self.asm.bind(fragment);
            self.asm
                .emit(BPF_LD | BPF_B | BPF_IND, ip + IPV6_HEADER_LENGTH);
            if family.any_port.contains(&IPPROTO_FRAGMENT) {
                // A later rule keeps next header 44 whatever follows; the load above still
                // decides truncated frames, as in libpcap.
                self.asm.ja(self.accept);
            } else {
                let cases: Vec<Case> = family
                    .any_port
                    .iter()
                    .map(|&number| (u32::from(number), self.accept))
                    .collect();
                self.dispatch(&cases, miss);
            }
        }
        for (prepare, plan, miss) in preparations {
            self.asm.bind(prepare);
            // X = tags + 40, so the ports are at X + 14 as for IPv4.
            self.asm.emit(BPF_MISC | BPF_TXA, 0);
            self.asm.emit(BPF_ALU | BPF_ADD | BPF_K, IPV6_HEADER_LENGTH);
            self.asm.emit(BPF_MISC | BPF_TAX, 0);
            let block = self.port_block(&plan, miss);
            self.asm.ja(block);
        }
    }

    /// The label of the port-test block for `plan` missing to `miss`, creating it if needed.
    fn port_block(&mut self, plan: &PortPlan, miss: Label) -> Label {
        if let Some((_, label, _)) = self
            .port_blocks
            .iter()
            .find(|(p, _, m)| p == plan && *m == miss)
        {
            return *label;
        }
        let label = self.asm.label();
        self.port_blocks.push((plan.clone(), label, miss));
        label
    }

    /// Port tests with X + 14 = the transport header. The loads come in the order described in
    /// the module documentation, so a frame cut inside the ports is decided as libpcap decides it.
    fn port_tests(&mut self, plan: &PortPlan, entry: Label, miss: Label) {
        let load = BPF_LD | BPF_H | BPF_IND;
        let ports = ETHERNET_HEADER_LENGTH;
        self.asm.bind(entry);
        let Some((first, rest)) = plan.ranges.split_first() else {
            // A rule with ports always has a range; a plan without any matches nothing.
            self.asm.ja(if plan.then_keep { self.accept } else { miss });
            return;
        };
        let first = PortSet::new([first]);
        let all = PortSet::new(&plan.ranges);
        let rest = PortSet::new(rest);
        self.asm.emit(load, ports + SOURCE_PORT);
        if first.is_everything() {
            self.asm.ja(self.accept);
            return;
        }
        let after_first = self.asm.label();
        first.emit_test(&mut self.asm, self.accept, after_first);
        self.asm.bind(after_first);
        self.asm.emit(load, ports + DESTINATION_PORT);
        if plan.then_keep {
            // Both ports are there; a later rule keeps the protocol whatever they are.
            self.asm.ja(self.accept);
            return;
        }
        if rest.is_subset_of(&first) {
            // The source port already failed every range it could still match.
            all.emit_test(&mut self.asm, self.accept, miss);
            return;
        }
        let after_destination = self.asm.label();
        all.emit_test(&mut self.asm, self.accept, after_destination);
        self.asm.bind(after_destination);
        self.asm.emit(load, ports + SOURCE_PORT);
        rest.emit_test(&mut self.asm, self.accept, miss);
    }

    fn finish(mut self, snap_length: u32) -> Result<Program, BpfError> {
        for (plan, label, miss) in std::mem::take(&mut self.port_blocks) {
            self.port_tests(&plan, label, miss);
        }
        self.asm.bind(self.accept);
        self.asm.emit(BPF_RET | BPF_K, snap_length);
        self.asm.bind(self.reject);
        self.asm.emit(BPF_RET | BPF_K, 0);
        Program::new(self.asm.finish()?)
    }
}

#[cfg(test)]
mod tests {
    use super::super::interpret;
    use super::*;

    fn filter(rules: &[&str]) -> Filter {
        Filter::parse_cli(rules).unwrap()
    }

    fn compiled(rules: &[&str]) -> Program {
        compile(&filter(rules), 65535).unwrap()
    }

    /// Ethernet + optional tags + IPv4 (IHL 5) + 4 bytes of ports.
    fn ipv4(tags: &[u16], protocol: u8, fragment: u16, source: u16, destination: u16) -> Vec<u8> {
        let mut frame = vec![0u8; 12];
        for tpid in tags {
            frame.extend_from_slice(&tpid.to_be_bytes());
            frame.extend_from_slice(&[0, 7]);
        }
        frame.extend_from_slice(&[0x08, 0x00, 0x45, 0, 0, 40, 0, 1]);
        frame.extend_from_slice(&fragment.to_be_bytes());
        frame.extend_from_slice(&[64, protocol, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
        frame.extend_from_slice(&source.to_be_bytes());
        frame.extend_from_slice(&destination.to_be_bytes());
        frame.extend_from_slice(&[0; 16]);
        frame
    }

    fn ipv6(next_header: u8, payload: &[u8]) -> Vec<u8> {
        let mut frame = vec![0u8; 12];
        frame.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0, 0, 20, next_header, 64]);
        frame.extend_from_slice(&[0; 32]);
        frame.extend_from_slice(payload);
        frame
    }

    fn kept(program: &Program, frame: &[u8]) -> bool {
        interpret(program, frame) != 0
    }

    #[test]
    fn empty_and_catch_all_filters_accept_everything() {
        assert_eq!(
            compile(&Filter::default(), 1500).unwrap(),
            Program::accept_all(1500)
        );
        assert_eq!(
            compile(&filter(&["tcp:80", "any"]), 96).unwrap(),
            Program::accept_all(96)
        );
    }

    #[test]
    fn zero_snap_length_is_refused() {
        assert_eq!(compile(&filter(&["tcp"]), 0), Err(BpfError::ZeroSnapLength));
    }

    #[test]
    fn accept_returns_the_snap_length() {
        let program = compile(&filter(&["tcp:80"]), 1234).unwrap();
        assert_eq!(interpret(&program, &ipv4(&[], 6, 0, 80, 1)), 1234);
        assert_eq!(interpret(&program, &ipv4(&[], 6, 0, 81, 1)), 0);
    }

    #[test]
    fn ports_and_tags() {
        let program = compiled(&["tcp:80,443,8000-8100"]);
        for tags in [&[][..], &[0x8100], &[0x88a8, 0x8100], &[0x9100, 0x9100]] {
            assert!(kept(&program, &ipv4(tags, 6, 0, 80, 1)), "{tags:?}");
            assert!(kept(&program, &ipv4(tags, 6, 0, 1, 8100)), "{tags:?}");
            assert!(!kept(&program, &ipv4(tags, 6, 0, 8101, 79)), "{tags:?}");
            assert!(!kept(&program, &ipv4(tags, 17, 0, 80, 80)), "{tags:?}");
        }
        assert!(!kept(
            &program,
            &ipv4(&[0x8100, 0x8100, 0x8100], 6, 0, 80, 80)
        ));
    }

    #[test]
    fn fragments() {
        let ports = compiled(&["tcp:80"]);
        let protocol = compiled(&["tcp"]);
        let first_with_more = ipv4(&[], 6, 0x2000, 80, 80);
        let later = ipv4(&[], 6, 0x00b9, 80, 80);
        assert!(kept(&ports, &first_with_more));
        assert!(!kept(&ports, &later));
        assert!(kept(&protocol, &later));
    }

    #[test]
    fn ipv6_fragment_header() {
        let gre = compiled(&["47"]);
        assert!(kept(&gre, &ipv6(47, &[0; 8])));
        assert!(kept(&gre, &ipv6(44, &[47, 0, 0, 0, 0, 0, 0, 0])));
        assert!(!kept(&gre, &ipv6(44, &[6, 0, 0, 0, 0, 0, 0, 0])));
        let tcp80 = compiled(&["tcp:80"]);
        assert!(kept(&tcp80, &ipv6(6, &[0, 80, 0, 1])));
        assert!(!kept(&tcp80, &ipv6(44, &[6, 0, 0, 0, 0, 80, 0, 80])));
    }

    #[test]
    fn families() {
        let icmp = compiled(&["icmp"]);
        assert!(kept(&icmp, &ipv4(&[], 1, 0, 0, 0)));
        assert!(!kept(&icmp, &ipv6(1, &[0; 8])));
        let icmpv6 = compiled(&["icmpv6"]);
        assert!(!kept(&icmpv6, &ipv4(&[], 58, 0, 0, 0)));
        assert!(kept(&icmpv6, &ipv6(58, &[0; 8])));
    }

    #[test]
    fn truncated_frames_follow_the_load_order() {
        let program = compiled(&["tcp:443,80"]);
        let frame = ipv4(&[], 6, 0, 443, 80);
        // 14 Ethernet + 20 IPv4: the source port needs 36 bytes, the destination 38.
        assert!(!kept(&program, &frame[..35]));
        assert!(
            kept(&program, &frame[..36]),
            "source in the first range decides before the destination load"
        );
        let frame = ipv4(&[], 6, 0, 80, 443);
        assert!(
            !kept(&program, &frame[..37]),
            "source in a later range needs the destination load first"
        );
        assert!(kept(&program, &frame[..38]));
        // The first rule naming a protocol decides what is read.
        let protocol_first = compiled(&["tcp", "tcp:80"]);
        let ports_first = compiled(&["tcp:80", "tcp"]);
        let frame = ipv4(&[], 6, 0, 443, 443);
        assert!(
            !kept(&protocol_first, &frame[..23]),
            "the protocol byte is at 23"
        );
        assert!(kept(&protocol_first, &frame[..24]));
        assert!(!kept(&ports_first, &frame[..37]));
        assert!(kept(&ports_first, &frame[..38]));
        let later_fragment = ipv4(&[], 6, 0x00b9, 443, 443);
        assert!(
            kept(&ports_first, &later_fragment[..24]),
            "port rules skip later fragments unread"
        );
        // IPv6 next header 44: the first protocol-only rule decides whether byte 40 is read.
        let fragment = ipv6(44, &[47, 0, 0, 0, 0, 0, 0, 0]);
        assert!(kept(&compiled(&["44", "47"]), &fragment[..21]));
        assert!(!kept(&compiled(&["47", "44"]), &fragment[..54]));
        assert!(kept(&compiled(&["47", "44"]), &fragment[..55]));
    }

    #[test]
    fn shared_port_blocks_keep_programs_small() {
        let any = compiled(&["any:53"]);
        let udp = compiled(&["udp:53"]);
        // Three more protocol tests per family, nothing else.
        assert_eq!(
            any.instructions().len(),
            udp.instructions().len() + 6,
            "{any}\n{udp}"
        );
        assert!(
            compiled(&["tcp:80,443"]).instructions().len() <= 50,
            "{}",
            compiled(&["tcp:80,443"])
        );
    }

    #[test]
    fn many_rules_and_ranges_need_long_jumps() {
        let rules: Vec<String> = (0..40)
            .map(|rule| {
                let ports: Vec<String> = (0..20)
                    .map(|range| {
                        format!(
                            "{}-{}",
                            rule * 1500 + range * 70,
                            rule * 1500 + range * 70 + 9
                        )
                    })
                    .collect();
                format!(
                    "{}:{}",
                    ["tcp", "udp", "sctp", "udplite"][rule % 4],
                    ports.join(",")
                )
            })
            .collect();
        let filter = Filter::parse_cli(&rules).unwrap();
        let program = compile(&filter, 65535).unwrap();
        assert!(program.instructions().len() > 1000);
        assert!(program.longest_path() < 80, "{}", program.longest_path());
        for (rule, protocol) in (0..40).zip([6u8, 17, 132, 136].into_iter().cycle()) {
            let port = u16::try_from(rule * 1500 + 19 * 70 + 9).unwrap();
            // No range reaches 65000, so only the destination port decides.
            assert!(
                kept(&program, &ipv4(&[0x8100], protocol, 0, 65000, port)),
                "rule {rule}"
            );
            assert!(
                !kept(&program, &ipv4(&[0x8100], protocol, 0, 65000, port + 1)),
                "rule {rule}"
            );
        }
    }

    /// `ipv4` with other addresses.
    fn ipv4_between(
        tags: &[u16],
        source: [u8; 4],
        destination: [u8; 4],
        ports: (u16, u16),
    ) -> Vec<u8> {
        let mut frame = ipv4(tags, 6, 0, ports.0, ports.1);
        let ip = 14 + 4 * tags.len();
        frame[ip + 12..ip + 16].copy_from_slice(&source);
        frame[ip + 16..ip + 20].copy_from_slice(&destination);
        frame
    }

    fn ipv6_between(source: &str, destination: &str, next_header: u8) -> Vec<u8> {
        let mut frame = ipv6(next_header, &[0, 80, 1, 187, 0, 0, 0, 0]);
        let source: std::net::Ipv6Addr = source.parse().unwrap();
        let destination: std::net::Ipv6Addr = destination.parse().unwrap();
        frame[22..38].copy_from_slice(&source.octets());
        frame[38..54].copy_from_slice(&destination.octets());
        frame
    }

    #[test]
    fn peers_match_either_end() {
        let program = compiled(&["tcp:80@10.1.0.0/16,fd00::/8", "@192.168.4.1"]);
        for tags in [&[][..], &[0x8100], &[0x88a8, 0x8100]] {
            let keep = |s, d, p| kept(&program, &ipv4_between(tags, s, d, p));
            assert!(keep([10, 1, 2, 3], [8, 8, 8, 8], (1, 80)), "{tags:?}");
            assert!(keep([8, 8, 8, 8], [10, 1, 255, 255], (80, 1)), "{tags:?}");
            assert!(!keep([10, 2, 0, 0], [8, 8, 8, 8], (1, 80)), "{tags:?}");
            assert!(!keep([10, 1, 2, 3], [8, 8, 8, 8], (1, 81)), "{tags:?}");
            assert!(keep([192, 168, 4, 1], [8, 8, 8, 8], (1, 2)), "{tags:?}");
            assert!(!keep([192, 168, 4, 2], [8, 8, 8, 8], (1, 2)), "{tags:?}");
        }
        assert!(kept(&program, &ipv6_between("fd12::1", "2001:db8::1", 6)));
        assert!(kept(&program, &ipv6_between("2001:db8::1", "fdff::1", 6)));
        assert!(!kept(&program, &ipv6_between("fe00::1", "2001:db8::1", 6)));
        assert!(!kept(&program, &ipv6_between("fd12::1", "2001:db8::1", 17)));
    }

    #[test]
    fn a_group_that_moved_x_hands_the_next_one_the_tags() {
        // The first group reads the ports (X moves to the transport header) and misses; the
        // second must read the protocol where it is, behind the tags.
        let program = compiled(&["tcp:80@10.0.0.0/8", "tcp:443"]);
        for tags in [&[][..], &[0x8100], &[0x88a8, 0x8100]] {
            let frame = ipv4_between(tags, [10, 0, 0, 1], [10, 0, 0, 2], (1, 443));
            assert!(kept(&program, &frame), "{tags:?}\n{program}");
            let frame = ipv4_between(tags, [10, 0, 0, 1], [10, 0, 0, 2], (1, 444));
            assert!(!kept(&program, &frame), "{tags:?}");
        }
    }

    #[test]
    fn ipv6_prefixes_compare_the_words_they_cover() {
        for (peer, inside, outside) in [
            ("::/0", "ffff::1", None),
            (
                "8000::/1",
                "8000::",
                Some("7fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
            ),
            (
                "fd00:0:0:1::/64",
                "fd00:0:0:1:ffff::1",
                Some("fd00:0:0:2::"),
            ),
            ("fd00::/127", "fd00::1", Some("fd00::2")),
            ("fd00::7", "fd00::7", Some("fd00::6")),
        ] {
            let program = compiled(&[&format!("@{peer}")]);
            assert!(
                kept(&program, &ipv6_between("2001:db8::1", inside, 17)),
                "{peer}"
            );
            if let Some(outside) = outside {
                assert!(
                    !kept(&program, &ipv6_between(outside, "2001:db8::1", 17)),
                    "{peer}"
                );
            }
        }
    }

    #[test]
    fn too_many_peers_is_an_error_that_says_what_to_do() {
        let rules: Vec<String> = (0..4)
            .map(|rule| {
                let peers: Vec<String> = (0..64).map(|i| format!("fd00::{rule}:{i}")).collect();
                format!("tcp:443@{}", peers.join(","))
            })
            .collect();
        let error = compile(&Filter::parse_cli(&rules).unwrap(), 65535).unwrap_err();
        assert!(
            matches!(error, BpfError::TooLong { instructions } if instructions > 4096),
            "{error:?}"
        );
        assert!(error.to_string().contains("one CIDR"), "{error}");
        // One rule of 64 IPv6 hosts fits.
        assert!(compile(&Filter::parse_cli(&rules[..1]).unwrap(), 65535).is_ok());
    }

    #[test]
    fn too_many_ranges_is_an_error_that_says_what_to_do() {
        let rules: Vec<String> = (0..200)
            .map(|rule| {
                let ports: Vec<String> = (0..20)
                    .map(|range| (rule * 300 + range * 3).to_string())
                    .collect();
                format!("tcp:{}", ports.join(","))
            })
            .collect();
        let error = compile(&Filter::parse_cli(&rules).unwrap(), 65535).unwrap_err();
        assert!(
            matches!(error, BpfError::TooLong { instructions } if instructions > 4096),
            "{error:?}"
        );
        assert!(error.to_string().contains("fewer"), "{error}");
    }
}
