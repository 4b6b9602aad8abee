//! A ring drawn from a ring budget grows under traffic and shrinks back, and its hand-over to the
//! new ring loses and doubles nothing: the file holds every sequence number the pod sent, once,
//! in order, except exactly the packets the kernel counts as dropped.
//!
//! The pod sends numbered 1400-byte datagrams as fast as one socket can for a bounded count, so
//! the 1 MiB base ring must grow (the engine runs on its own thread meanwhile, as in the
//! service). Whether it drops at the very start depends on timing, so the test asserts the
//! accounting (captured + dropped = sent, no duplicate, no reordering), not zero drops.

mod agent_common;

use std::net::UdpSocket;
use std::sync::Arc;

use agent_common::pod::{in_pod, Pod};
use capture_agent::afpacket::RingConfig;
use capture_agent::rings::RingBudget;
use capture_agent::{Capture, CaptureConfig, EndReason, InterfaceSpec, OutputPlan, StopSignal};
use capture_spec::{CaptureLimits, Filter, OutputFormat};
use pcap_file::pcapng::{Block, PcapNgReader};

const PORT: u16 = 7310;
const SENT: u32 = 200_000;

/// The sequence numbers (first 4 payload bytes) of the packets in a pcapng file, in file order.
fn sequence_numbers(path: &std::path::Path) -> Vec<u32> {
    let mut reader = PcapNgReader::new(std::fs::File::open(path).unwrap()).unwrap();
    let mut numbers = Vec::new();
    while let Some(block) = reader.next_block() {
        if let Block::EnhancedPacket(packet) = block.unwrap() {
            // Ethernet 14 + IPv4 20 + UDP 8.
            let payload = &packet.data[42..];
            numbers.push(u32::from_be_bytes(payload[..4].try_into().unwrap()));
        }
    }
    numbers
}

#[test]
fn a_budget_ring_grows_under_load_without_losing_or_doubling_a_packet() {
    let pod = Pod::new();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("resize.pcapng");
    let budget = Arc::new(RingBudget::new(256 << 20));
    let config = CaptureConfig {
        budget: None,
        interfaces: vec![InterfaceSpec::local(pod.host_if.clone(), "")],
        filter: Filter::parse_cli(&[format!("udp:{PORT}")]).unwrap(),
        bpf_filter: None,
        limits: CaptureLimits::default(),
        duration: None,
        format: OutputFormat::Pcapng,
        output: OutputPlan::SingleFile(path.clone()),
        ring: RingConfig::default(),
        rings: Some(budget.clone()),
    };
    let capture = Capture::open(config).unwrap();
    let base = budget.reserved();
    let (stop, handle) = StopSignal::new().unwrap();
    let engine = std::thread::spawn(move || capture.run(&stop).unwrap());

    let host = pod.host_v4;
    in_pod(&pod, || {
        let socket = UdpSocket::bind("0.0.0.0:0").unwrap();
        let mut payload = [0x5a_u8; 1400 - 42];
        for sequence in 0..SENT {
            payload[..4].copy_from_slice(&sequence.to_be_bytes());
            socket.send_to(&payload, (host, PORT)).unwrap();
        }
    });
    std::thread::sleep(std::time::Duration::from_millis(300));
    let grown = budget.reserved();
    handle.stop();
    let report = engine.join().unwrap();
    eprintln!("{report:?}");

    assert_eq!(report.end, EndReason::Stopped);
    let interface = &report.interfaces[0];
    assert!(
        interface.ring_resizes >= 1 && grown > base,
        "the base ring ({base} bytes) must grow under {SENT} back-to-back datagrams: {report:?}"
    );
    assert_eq!(
        report.packets + report.drops,
        u64::from(SENT),
        "captured + dropped = sent, across every ring the interface had: {report:?}"
    );
    assert_eq!(interface.kernel_received, u64::from(SENT), "{report:?}");
    let numbers = sequence_numbers(&path);
    assert_eq!(numbers.len() as u64, report.packets);
    assert!(
        numbers.windows(2).all(|pair| pair[0] < pair[1]),
        "every packet once and in the order sent, through each hand-over"
    );
    assert_eq!(budget.reserved(), 0, "every ring's memory went back");
}
