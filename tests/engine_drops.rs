//! Drops are reported honestly: when the ring overflows, the kernel's drop counter, the capture
//! report and the pcapng statistics block all agree that captured + dropped = offered.
//!
//! The capture is opened (sockets bound, ring installed) but not read while a burst arrives, so
//! a tiny ring must overflow — no timing luck involved.

mod agent_common;

use std::fs::File;
use std::net::UdpSocket;

use agent_common::pod::{in_pod, Pod};
use capture_agent::afpacket::RingConfig;
use capture_agent::{Capture, CaptureConfig, EndReason, InterfaceSpec, OutputPlan, StopSignal};
use capture_spec::{CaptureLimits, Filter, OutputFormat};
use pcap_file::pcapng::blocks::interface_statistics::InterfaceStatisticsOption;
use pcap_file::pcapng::{Block, PcapNgReader};

const OFFERED: u64 = 500;
const PORT: u16 = 7300;

/// Packets and the `isb_ifdrop` value in a pcapng file, read independently of our writer.
fn packets_and_recorded_drops(path: &std::path::Path) -> (u64, Option<u64>) {
    let mut reader = PcapNgReader::new(File::open(path).unwrap()).unwrap();
    let (mut packets, mut drops) = (0, None);
    while let Some(block) = reader.next_block() {
        match block.unwrap() {
            Block::EnhancedPacket(_) => packets += 1,
            Block::InterfaceStatistics(isb) => {
                for option in isb.options {
                    if let InterfaceStatisticsOption::IsbIfDrop(n) = option {
                        drops = Some(n);
                    }
                }
            }
            _ => {}
        }
    }
    (packets, drops)
}

#[test]
fn ring_overflow_is_counted_as_kernel_drops() {
    let pod = Pod::new();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("drops.pcapng");
    let config = CaptureConfig {
        budget: None,
        interfaces: vec![InterfaceSpec::local(pod.host_if.clone(), "")],
        filter: Filter::parse_cli(&[format!("udp:{PORT}")]).unwrap(),
        bpf_filter: None,
        limits: CaptureLimits::default(),
        duration: None,
        format: OutputFormat::Pcapng,
        output: OutputPlan::SingleFile(path.clone()),
        // Two one-page blocks: room for a handful of 1000-byte datagrams.
        ring: RingConfig {
            block_size: 4096,
            block_count: 2,
            ..RingConfig::default()
        },
        rings: None,
    };
    let capture = Capture::open(config).unwrap();

    let host = pod.host_v4;
    in_pod(&pod, || {
        let socket = UdpSocket::bind("0.0.0.0:0").unwrap();
        for _ in 0..OFFERED {
            socket.send_to(&[0x5a; 1000], (host, PORT)).unwrap();
        }
    });

    let (stop, handle) = StopSignal::new().unwrap();
    handle.stop();
    let report = capture.run(&stop).unwrap();

    assert_eq!(report.end, EndReason::Stopped);
    assert!(
        report.drops > 0,
        "a two-block ring left unread must overflow: {report:?}"
    );
    assert!(
        report.packets > 0,
        "the blocks that filled before the overflow are written: {report:?}"
    );
    assert_eq!(
        report.packets + report.drops,
        OFFERED,
        "captured + dropped must equal offered: {report:?}"
    );
    assert_eq!(report.interfaces[0].kernel_received, OFFERED);
    let (in_file, recorded_drops) = packets_and_recorded_drops(&path);
    assert_eq!(in_file, report.packets);
    assert_eq!(
        recorded_drops,
        Some(report.drops),
        "the pcapng statistics block records the kernel drops"
    );
}
