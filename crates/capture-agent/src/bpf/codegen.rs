//! Compiles a [`Filter`] to a classic BPF program for an AF_PACKET socket on an Ethernet device.
//!
//! The program means exactly what libpcap makes of [`Filter::to_pcap_expression`]: the tests in
//! `tests/bpf_vs_libpcap.rs` run both over a corpus and random frames. What it keeps:
//!
//! - **VLAN tags.** The kernel usually strips the outer tag before the filter runs, but frames can
//!   still carry one or two inline tags (TPID 0x8100, 0x88a8 or 0x9100). Up to two are skipped and
//!   the rules apply to the packet inside; a frame with three tags is rejected.
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
//! - Everything else — ARP, LLDP, other ethertypes, and frames too short for what a rule reads —
//!   is rejected.
//!
//! **Truncated frames.** A load past the end of the frame makes the kernel drop the packet, so the
//! order of loads is part of the meaning. The program loads, in order: the ethertype of each tag
//! level; the protocol byte; for IPv6 packets with a fragment header, the byte after it (only when
//! a protocol-only rule could match there); for port rules the source port, which is compared with
//! the *first* range of the first port rule for that protocol, then the destination port, then the
//! source port again for the remaining ranges. That is the order of the expression read left to
//! right, i.e. libpcap without its optimizer. Where a comparison cannot change the verdict the
//! load is left out, as libpcap's optimizer does: a protocol that some rule keeps whatever its
//! ports never has its ports read, and when a protocol-only rule names 44 itself, IPv6 fragment
//! headers are kept without reading further. libpcap's optimizer also reorders some port
//! comparisons across the two port loads, which only changes the verdict for frames cut between
//! the source and the destination port; there this program keeps to the unoptimized order.
//!
//! **Shape.** The ethertype is loaded once per tag level; the level sets X to the bytes of tags
//! skipped, and a single copy of the IPv4 and IPv6 code reads the packet with indexed loads. Port
//! tests live in one block per distinct list of ranges, shared by IPv4 and IPv6 and by every
//! protocol with the same ranges (`any:53` is one block, not four); the block expects X to point
//! at the transport header. IPv4 computes that as tags + 4*IHL with `ldb/and/lsh/add` rather than
//! `ldxb 4*([k]&0xf)`, because `msh` only takes a fixed offset and would need one copy of the IPv4
//! code per tag level. Port ranges are merged and tested with a decision tree ([`PortSet`]); all
//! paths end in one shared accept (`ret #snap_length`) or reject (`ret #0`), with nearby copies
//! where a jump would be too long ([`Assembler`]).

use capture_spec::{Filter, PortRange};

use super::asm::{Assembler, Label};
use super::portset::PortSet;
use super::program::*;
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
const IPV6_NEXT_HEADER: u32 = 6;
const IPV6_HEADER_LENGTH: u32 = 40;
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
    let mut generator = Generator { asm, accept, reject, port_blocks: Vec::new() };
    generator.ethernet(&plan);
    generator.finish(snap_length)
}

/// What the filter keeps, per protocol number, in the order rules first mention them.
#[derive(Debug, Default)]
struct Plan {
    /// Protocols kept in IPv4 whatever their ports.
    ipv4_any_port: Vec<u8>,
    /// Protocols kept in IPv6 whatever their ports.
    ipv6_any_port: Vec<u8>,
    /// Port-bearing protocols with the ranges of every rule naming them, in rule order (the
    /// first range matters for truncated frames; see the module documentation). Port rules apply
    /// to IPv4 and IPv6 alike.
    port_rules: Vec<(u8, Vec<PortRange>)>,
}

impl Plan {
    fn new(filter: &Filter) -> Plan {
        let mut plan = Plan::default();
        for rule in filter.rules() {
            let Some(protocols) = rule.protocols() else { continue };
            for protocol in protocols {
                let number = protocol.number();
                if rule.ports().is_empty() {
                    let families = protocol.families();
                    if families.ipv4 && !plan.ipv4_any_port.contains(&number) {
                        plan.ipv4_any_port.push(number);
                    }
                    if families.ipv6 && !plan.ipv6_any_port.contains(&number) {
                        plan.ipv6_any_port.push(number);
                    }
                } else if let Some((_, ranges)) = plan.port_rules.iter_mut().find(|(n, _)| *n == number) {
                    ranges.extend_from_slice(rule.ports());
                } else {
                    plan.port_rules.push((number, rule.ports().to_vec()));
                }
            }
        }
        plan
    }

    /// Protocols whose ports must be checked in a family: those with port rules, unless a rule
    /// already keeps the protocol whatever its ports.
    fn port_rules_for<'a>(&'a self, any_port: &'a [u8]) -> impl Iterator<Item = &'a (u8, Vec<PortRange>)> + 'a {
        self.port_rules.iter().filter(move |(number, _)| !any_port.contains(number))
    }

    fn has_ipv4(&self) -> bool {
        !self.ipv4_any_port.is_empty() || !self.port_rules.is_empty()
    }

    fn has_ipv6(&self) -> bool {
        !self.ipv6_any_port.is_empty() || !self.port_rules.is_empty()
    }
}

struct Generator {
    asm: Assembler,
    accept: Label,
    reject: Label,
    /// One port-test block per distinct list of ranges, emitted at the end.
    port_blocks: Vec<(Vec<PortRange>, Label)>,
}

impl Generator {
    /// The entry: walks up to two VLAN tags and dispatches on the ethertype. X = bytes of tags
    /// skipped (0, 4 or 8) on entry to the IP code. At level 0 X is 0 because the kernel zeroes A
    /// and X before every classic program (and libpcap's interpreter does the same).
    fn ethernet(&mut self, plan: &Plan) {
        let ipv4 = plan.has_ipv4().then(|| self.asm.label());
        let ipv6 = plan.has_ipv6().then(|| self.asm.label());
        for level in 0..=MAX_TAGS {
            if level > 0 {
                self.asm.emit(BPF_LDX | BPF_W | BPF_IMM, level * TAG_LENGTH);
            }
            self.asm.emit(BPF_LD | BPF_H | BPF_ABS, ETHERTYPE_OFFSET + level * TAG_LENGTH);
            let mut cases: Vec<(u32, Label)> = Vec::new();
            cases.extend(ipv4.map(|label| (ETHERTYPE_IPV4, label)));
            cases.extend(ipv6.map(|label| (ETHERTYPE_IPV6, label)));
            let deeper = (level < MAX_TAGS).then(|| self.asm.label());
            if let Some(deeper) = deeper {
                cases.extend(VLAN_TPIDS.iter().map(|&tpid| (tpid, deeper)));
            }
            self.dispatch(&cases);
            if let Some(deeper) = deeper {
                self.asm.bind(deeper);
            }
        }
        if let Some(label) = ipv4 {
            self.asm.bind(label);
            self.ipv4(plan);
        }
        if let Some(label) = ipv6 {
            self.asm.bind(label);
            self.ipv6(plan);
        }
    }

    /// A jump to the label of the first case whose value equals A; no match rejects.
    fn dispatch(&mut self, cases: &[(u32, Label)]) {
        let Some((&(last_value, last_label), rest)) = cases.split_last() else {
            self.asm.ja(self.reject);
            return;
        };
        for &(value, label) in rest {
            self.asm.jump_if(BPF_JMP | BPF_JEQ | BPF_K, value, label);
        }
        self.asm.branch(BPF_JMP | BPF_JEQ | BPF_K, last_value, last_label, self.reject);
    }

    /// IPv4 at X + 14.
    fn ipv4(&mut self, plan: &Plan) {
        let ip = ETHERNET_HEADER_LENGTH;
        self.asm.emit(BPF_LD | BPF_B | BPF_IND, ip + IPV4_PROTOCOL);
        let mut cases: Vec<(u32, Label)> =
            plan.ipv4_any_port.iter().map(|&number| (u32::from(number), self.accept)).collect();
        let preparations = self.port_cases(plan.port_rules_for(&plan.ipv4_any_port), &mut cases);
        self.dispatch(&cases);
        for (prepare, ports) in preparations {
            self.asm.bind(prepare);
            // Non-first fragments carry no ports: no port rule can match them.
            self.asm.emit(BPF_LD | BPF_H | BPF_IND, ip + IPV4_FRAGMENT);
            self.asm.jump_if(BPF_JMP | BPF_JSET | BPF_K, IPV4_FRAGMENT_OFFSET_MASK, self.reject);
            // X = tags + 4 * IHL, so the ports are at X + 14.
            self.asm.emit(BPF_LD | BPF_B | BPF_IND, ip);
            self.asm.emit(BPF_ALU | BPF_AND | BPF_K, 0xf);
            self.asm.emit(BPF_ALU | BPF_LSH | BPF_K, 2);
            self.asm.emit(BPF_ALU | BPF_ADD | BPF_X, 0);
            self.asm.emit(BPF_MISC | BPF_TAX, 0);
            self.asm.ja(ports);
        }
    }

    /// IPv6 at X + 14.
    fn ipv6(&mut self, plan: &Plan) {
        let ip = ETHERNET_HEADER_LENGTH;
        self.asm.emit(BPF_LD | BPF_B | BPF_IND, ip + IPV6_NEXT_HEADER);
        let mut cases: Vec<(u32, Label)> =
            plan.ipv6_any_port.iter().map(|&number| (u32::from(number), self.accept)).collect();
        let preparations = self.port_cases(plan.port_rules_for(&plan.ipv6_any_port), &mut cases);
        // `ip6 proto n` also matches n behind a fragment header. Only protocol-only rules look
        // there; when one of them names 44 itself the case above already keeps the packet.
        let fragment = (!plan.ipv6_any_port.is_empty() && !plan.ipv6_any_port.contains(&IPPROTO_FRAGMENT))
            .then(|| self.asm.label());
        if let Some(fragment) = fragment {
            cases.push((u32::from(IPPROTO_FRAGMENT), fragment));
        }
        self.dispatch(&cases);
        if let Some(fragment) = fragment {
            self.asm.bind(fragment);
            self.asm.emit(BPF_LD | BPF_B | BPF_IND, ip + IPV6_HEADER_LENGTH);
            let cases: Vec<(u32, Label)> =
                plan.ipv6_any_port.iter().map(|&number| (u32::from(number), self.accept)).collect();
            self.dispatch(&cases);
        }
        for (prepare, ports) in preparations {
            self.asm.bind(prepare);
            // X = tags + 40, so the ports are at X + 14 as for IPv4.
            self.asm.emit(BPF_MISC | BPF_TXA, 0);
            self.asm.emit(BPF_ALU | BPF_ADD | BPF_K, IPV6_HEADER_LENGTH);
            self.asm.emit(BPF_MISC | BPF_TAX, 0);
            self.asm.ja(ports);
        }
    }

    /// Adds a dispatch case per port-bearing protocol. Protocols with the same ranges go to one
    /// preparation block (which points X at the transport header) and one port block. Returns
    /// the (preparation, port block) labels the caller must emit preparations for.
    fn port_cases<'a>(
        &mut self,
        rules: impl Iterator<Item = &'a (u8, Vec<PortRange>)>,
        cases: &mut Vec<(u32, Label)>,
    ) -> Vec<(Label, Label)> {
        let mut preparations: Vec<(Label, Label)> = Vec::new();
        for (number, ranges) in rules {
            let ports = self.port_block(ranges);
            let prepare = match preparations.iter().find(|(_, block)| *block == ports) {
                Some(&(prepare, _)) => prepare,
                None => {
                    let prepare = self.asm.label();
                    preparations.push((prepare, ports));
                    prepare
                }
            };
            cases.push((u32::from(*number), prepare));
        }
        preparations
    }

    /// The label of the port-test block for `ranges`, creating it if needed.
    fn port_block(&mut self, ranges: &[PortRange]) -> Label {
        if let Some((_, label)) = self.port_blocks.iter().find(|(r, _)| r == ranges) {
            return *label;
        }
        let label = self.asm.label();
        self.port_blocks.push((ranges.to_vec(), label));
        label
    }

    /// Port tests with X + 14 = the transport header. The loads come in the order described in
    /// the module documentation, so a frame cut inside the ports is decided as libpcap decides it.
    fn port_tests(&mut self, ranges: &[PortRange], entry: Label) {
        let source = BPF_LD | BPF_H | BPF_IND;
        let ports = ETHERNET_HEADER_LENGTH;
        let Some((first, rest)) = ranges.split_first() else {
            // A rule with ports always has a range; a block without any matches nothing.
            self.asm.bind(entry);
            self.asm.ja(self.reject);
            return;
        };
        let first = PortSet::new([first]);
        let all = PortSet::new(ranges);
        let rest = PortSet::new(rest);
        self.asm.bind(entry);
        self.asm.emit(source, ports + SOURCE_PORT);
        if first.is_everything() {
            self.asm.ja(self.accept);
            return;
        }
        let after_first = self.asm.label();
        first.emit_test(&mut self.asm, self.accept, after_first);
        self.asm.bind(after_first);
        self.asm.emit(source, ports + DESTINATION_PORT);
        if rest.is_subset_of(&first) {
            // The source port already failed every range it could still match.
            all.emit_test(&mut self.asm, self.accept, self.reject);
            return;
        }
        let after_destination = self.asm.label();
        all.emit_test(&mut self.asm, self.accept, after_destination);
        self.asm.bind(after_destination);
        self.asm.emit(source, ports + SOURCE_PORT);
        rest.emit_test(&mut self.asm, self.accept, self.reject);
    }

    fn finish(mut self, snap_length: u32) -> Result<Program, BpfError> {
        for (ranges, label) in std::mem::take(&mut self.port_blocks) {
            self.port_tests(&ranges, label);
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
        assert_eq!(compile(&Filter::default(), 1500).unwrap(), Program::accept_all(1500));
        assert_eq!(compile(&filter(&["tcp:80", "any"]), 96).unwrap(), Program::accept_all(96));
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
        assert!(!kept(&program, &ipv4(&[0x8100, 0x8100, 0x8100], 6, 0, 80, 80)));
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
        assert!(kept(&program, &frame[..36]), "source in the first range decides before the destination load");
        let frame = ipv4(&[], 6, 0, 80, 443);
        assert!(!kept(&program, &frame[..37]), "source in a later range needs the destination load first");
        assert!(kept(&program, &frame[..38]));
        // A protocol kept whatever its ports never has its ports read.
        let program = compiled(&["tcp:80", "tcp"]);
        assert!(kept(&program, &frame[..24]));
        assert!(!kept(&program, &frame[..23]), "the protocol byte is at 23");
    }

    #[test]
    fn shared_port_blocks_keep_programs_small() {
        let any = compiled(&["any:53"]);
        let udp = compiled(&["udp:53"]);
        // Three more protocol tests per family, nothing else.
        assert_eq!(any.instructions().len(), udp.instructions().len() + 6, "{any}\n{udp}");
        assert!(compiled(&["tcp:80,443"]).instructions().len() <= 50, "{}", compiled(&["tcp:80,443"]));
    }

    #[test]
    fn many_rules_and_ranges_need_long_jumps() {
        let rules: Vec<String> = (0..40)
            .map(|rule| {
                let ports: Vec<String> =
                    (0..20).map(|range| format!("{}-{}", rule * 1500 + range * 70, rule * 1500 + range * 70 + 9)).collect();
                format!("{}:{}", ["tcp", "udp", "sctp", "udplite"][rule % 4], ports.join(","))
            })
            .collect();
        let filter = Filter::parse_cli(&rules).unwrap();
        let program = compile(&filter, 65535).unwrap();
        assert!(program.instructions().len() > 1000);
        assert!(program.longest_path() < 80, "{}", program.longest_path());
        for (rule, protocol) in (0..40).zip([6u8, 17, 132, 136].into_iter().cycle()) {
            let port = u16::try_from(rule * 1500 + 19 * 70 + 9).unwrap();
            // No range reaches 65000, so only the destination port decides.
            assert!(kept(&program, &ipv4(&[0x8100], protocol, 0, 65000, port)), "rule {rule}");
            assert!(!kept(&program, &ipv4(&[0x8100], protocol, 0, 65000, port + 1)), "rule {rule}");
        }
    }

    #[test]
    fn too_many_ranges_is_an_error_that_says_what_to_do() {
        let rules: Vec<String> = (0..200)
            .map(|rule| {
                let ports: Vec<String> = (0..20).map(|range| (rule * 300 + range * 3).to_string()).collect();
                format!("tcp:{}", ports.join(","))
            })
            .collect();
        let error = compile(&Filter::parse_cli(&rules).unwrap(), 65535).unwrap_err();
        assert!(matches!(error, BpfError::TooLong { instructions } if instructions > 4096), "{error:?}");
        assert!(error.to_string().contains("fewer"), "{error}");
    }
}
