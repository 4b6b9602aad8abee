//! `bpfFilter` / `--bpf` proven against libpcap and tcpdump: what
//! `bpf::compile_with_expression` documents is what runs.
//!
//! - An expression alone is exactly the program `tcpdump -y EN10MB -s SNAP -dd EXPR` prints
//!   (tcpdump compiles on a dead Ethernet handle with that snap length): rewriting the accepts of
//!   the `pcap` crate's 65535-byte dead handle to the capture's snap length changes nothing else.
//! - Rules and expression together keep a frame exactly when podcap's rules keep it and
//!   libpcap's own program for the expression (`pcap_offline_filter`) matches it, over random
//!   structured frames (VLAN tags, IPv4/IPv6/ARP, ports, TCP flags, truncation), accepting with
//!   the snap length.
//! - A capture whose expression libpcap refuses is refused before anything is opened or written.

use std::cell::Cell;
use std::process::Command;

use capture_agent::afpacket::RingConfig;
use capture_agent::bpf::{self, ExpressionError, Program};
use capture_agent::{Capture, CaptureConfig, CaptureError, InterfaceSpec, OutputPlan};
use capture_spec::{CaptureLimits, Filter, OutputFormat};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

const SNAP: u32 = 262_144;

/// Expressions a tcpdump user writes: flags, hosts and nets of both families, ports and ranges,
/// VLAN, lengths, arithmetic, negation.
const EXPRESSIONS: &[&str] = &[
    "tcp[tcpflags] & tcp-syn != 0",
    "tcp[tcpflags] & (tcp-syn|tcp-ack) == tcp-syn",
    "host 10.244.0.1",
    "net 10.244.0.0/16 and not host 10.244.0.1",
    "src net 10.96.0.0/12 or dst host fd00::1",
    "ip6 net fd00::/8",
    "udp port 53 or tcp portrange 8000-8100",
    "vlan and udp",
    "vlan 100 and ip",
    "greater 100",
    "ip[2:2] - ((ip[0]&0xf)<<2) > 20",
    "not arp and not icmp6",
    "icmp or icmp6",
    "ether proto 0x88cc",
];

/// `tcpdump -y EN10MB -s SNAP -dd EXPR`, read back as a program. The expression is one argument
/// of the command, never shell text.
fn tcpdump_program(expression: &str, snap_length: u32) -> Vec<(u16, u8, u8, u32)> {
    let output = Command::new("tcpdump")
        .args([
            "-y",
            "EN10MB",
            "-s",
            &snap_length.to_string(),
            "-dd",
            expression,
        ])
        .output()
        .expect("running tcpdump (apt-get install tcpdump; .ci/run installs it)");
    assert!(
        output.status.success(),
        "tcpdump -dd {expression:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let number = |text: &str| {
        let text = text.trim();
        match text.strip_prefix("0x") {
            Some(hex) => u64::from_str_radix(hex, 16),
            None => text.parse(),
        }
        .unwrap_or_else(|e| panic!("tcpdump -dd printed {text:?}: {e}"))
    };
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter(|line| line.starts_with('{'))
        .map(|line| {
            let fields: Vec<u64> = line
                .trim_matches(|c| c == '{' || c == '}' || c == ',' || c == ' ')
                .split(',')
                .map(number)
                .collect();
            assert_eq!(fields.len(), 4, "{line}");
            (
                fields[0] as u16,
                fields[1] as u8,
                fields[2] as u8,
                fields[3] as u32,
            )
        })
        .collect()
}

fn ours(program: &Program) -> Vec<(u16, u8, u8, u32)> {
    program
        .instructions()
        .iter()
        .map(|i| (i.code, i.jt, i.jf, i.k))
        .collect()
}

#[test]
fn an_expression_alone_is_what_tcpdump_compiles_with_the_snap_length() {
    for expression in EXPRESSIONS {
        for snap_length in [96, 1500, 65_535, SNAP] {
            let program =
                bpf::compile_with_expression(&Filter::default(), Some(expression), snap_length)
                    .unwrap_or_else(|e| panic!("{expression}: {e}"));
            assert_eq!(
                ours(&program),
                tcpdump_program(expression, snap_length),
                "{expression} with snap length {snap_length}:\n{program}"
            );
        }
    }
}

// ---- rules AND expression over random frames ------------------------------------------------

/// libpcap's own program for an expression, optimized as podcap compiles it.
fn libpcap(expression: &str) -> pcap::BpfProgram {
    pcap::Capture::dead(pcap::Linktype::ETHERNET)
        .expect("pcap_open_dead")
        .compile(expression, true)
        .unwrap_or_else(|e| panic!("libpcap refuses {expression:?}: {e}"))
}

#[derive(Debug, Clone)]
struct FrameSpec {
    tags: Vec<u16>,
    network: u8,
    protocol: u8,
    source: u8,
    destination: u8,
    ports: (u16, u16),
    flags: u8,
    payload: usize,
    cut: Option<usize>,
}

const PORTS: [u16; 5] = [53, 80, 443, 8080, 40000];
const V4: [[u8; 4]; 4] = [
    [10, 244, 0, 1],
    [10, 244, 3, 9],
    [10, 96, 0, 10],
    [192, 168, 1, 1],
];

fn v6(index: u8) -> [u8; 16] {
    let mut address = [0u8; 16];
    match index % 4 {
        0 => address[..2].copy_from_slice(&[0xfd, 0x00]),
        1 => address[..4].copy_from_slice(&[0xfd, 0x00, 0x02, 0x44]),
        2 => address[..2].copy_from_slice(&[0x20, 0x01]),
        _ => address[..2].copy_from_slice(&[0xfe, 0x80]),
    }
    address[15] = 1;
    address
}

impl FrameSpec {
    fn build(&self) -> Vec<u8> {
        let mut frame = vec![0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2];
        for tpid in &self.tags {
            frame.extend_from_slice(&tpid.to_be_bytes());
            frame.extend_from_slice(&[0, 100]);
        }
        let protocol = [6u8, 17, 1, 58, 132][usize::from(self.protocol) % 5];
        let mut transport = Vec::new();
        transport.extend_from_slice(&self.ports.0.to_be_bytes());
        transport.extend_from_slice(&self.ports.1.to_be_bytes());
        transport.extend_from_slice(&[
            0, 0, 0, 1, 0, 0, 0, 0, 0x50, self.flags, 0xff, 0xff, 0, 0, 0, 0,
        ]);
        transport.resize(transport.len() + self.payload, 0xab);
        match self.network % 3 {
            0 => {
                frame.extend_from_slice(&[0x08, 0x00, 0x45, 0]);
                let total = u16::try_from(20 + transport.len()).unwrap_or(u16::MAX);
                frame.extend_from_slice(&total.to_be_bytes());
                frame.extend_from_slice(&[0, 1, 0, 0, 64, protocol, 0, 0]);
                frame.extend_from_slice(&V4[usize::from(self.source) % 4]);
                frame.extend_from_slice(&V4[usize::from(self.destination) % 4]);
            }
            1 => {
                frame.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
                let length = u16::try_from(transport.len()).unwrap_or(u16::MAX);
                frame.extend_from_slice(&length.to_be_bytes());
                frame.extend_from_slice(&[protocol, 64]);
                frame.extend_from_slice(&v6(self.source));
                frame.extend_from_slice(&v6(self.destination));
            }
            _ => {
                // ARP request between two of the IPv4 addresses.
                frame.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0x00, 6, 4, 0, 1]);
                frame.extend_from_slice(&[0x02, 0, 0, 0, 0, 2]);
                frame.extend_from_slice(&V4[usize::from(self.source) % 4]);
                frame.extend_from_slice(&[0; 6]);
                frame.extend_from_slice(&V4[usize::from(self.destination) % 4]);
                transport.clear();
            }
        }
        frame.extend_from_slice(&transport);
        if let Some(cut) = self.cut {
            frame.truncate(cut.min(frame.len()));
        }
        frame
    }
}

fn frames() -> impl Strategy<Value = FrameSpec> {
    (
        prop::collection::vec(prop::sample::select(vec![0x8100u16, 0x88a8]), 0..=2),
        0u8..3,
        0u8..5,
        (0u8..4, 0u8..4),
        (
            prop::sample::select(PORTS.to_vec()),
            prop::sample::select(PORTS.to_vec()),
        ),
        any::<u8>(),
        prop::sample::select(vec![0usize, 40, 200]),
        prop::option::weighted(0.15, 0usize..120),
    )
        .prop_map(
            |(tags, network, protocol, (source, destination), ports, flags, payload, cut)| {
                FrameSpec {
                    tags,
                    network,
                    protocol,
                    source,
                    destination,
                    ports,
                    flags,
                    payload,
                    cut,
                }
            },
        )
}

#[test]
fn rules_and_expression_keep_what_both_keep() {
    let rule_sets: &[&[&str]] = &[
        &[],
        &["udp:53"],
        &["tcp:80,443,8000-8100", "icmpv6"],
        &["any:53", "tcp"],
    ];
    let kept = Cell::new(0usize);
    let checked = Cell::new(0usize);
    for rules in rule_sets {
        let filter = Filter::parse_cli(rules).expect("rules");
        let alone = bpf::compile(&filter, SNAP).expect("rules compile");
        for expression in EXPRESSIONS {
            let combined = bpf::compile_with_expression(&filter, Some(expression), SNAP)
                .unwrap_or_else(|e| panic!("{rules:?} + {expression}: {e}"));
            let reference = libpcap(expression);
            let mut runner = TestRunner::new(Config {
                cases: 200,
                failure_persistence: None,
                ..Config::default()
            });
            runner
                .run(&frames(), |spec| {
                    let frame = spec.build();
                    let returned = bpf::interpret(&combined, &frame);
                    let expected = bpf::interpret(&alone, &frame) != 0 && reference.filter(&frame);
                    prop_assert_eq!(
                        returned != 0,
                        expected,
                        "{:?} and {:?} on {:?}",
                        rules,
                        expression,
                        spec
                    );
                    prop_assert!(returned == 0 || returned == SNAP, "returned {}", returned);
                    checked.set(checked.get() + 1);
                    kept.set(kept.get() + usize::from(returned != 0));
                    Ok(())
                })
                .unwrap_or_else(|e| panic!("{e}"));
        }
    }
    // The frames must exercise both outcomes, or the comparison proves little.
    let (kept, checked) = (kept.get(), checked.get());
    assert!(
        kept > checked / 50 && kept < checked / 2,
        "{kept} of {checked} frames kept"
    );
}

#[test]
fn a_capture_whose_expression_libpcap_refuses_opens_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let output = dir.path().join("refused.pcapng");
    let config = CaptureConfig {
        budget: None,
        interfaces: vec![InterfaceSpec::local("podcap-absent0", "")],
        filter: Filter::parse_cli(&["tcp"]).expect("rules"),
        bpf_filter: Some("tcp port 99999".into()),
        limits: CaptureLimits::default(),
        duration: None,
        format: OutputFormat::Pcapng,
        output: OutputPlan::SingleFile(output.clone()),
        ring: RingConfig::default(),
        rings: None,
    };
    match Capture::open(config) {
        Err(CaptureError::Expression(ExpressionError::Libpcap(message))) => {
            assert_eq!(message, "illegal port number 99999 > 65535");
        }
        Err(other) => panic!("expected libpcap's refusal, got {other}"),
        Ok(_) => panic!("a capture opened with an expression libpcap refuses"),
    }
    assert!(!output.exists(), "a file was written for a refused capture");
    let error = CaptureError::Expression(ExpressionError::Libpcap("x".into()));
    assert!(
        error
            .to_string()
            .starts_with("bpfFilter: libpcap cannot compile the expression: x"),
        "{error}"
    );
}
