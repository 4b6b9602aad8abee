//! Interfaces that disappear during a capture: when a pod is deleted its host veth goes away.
//! The capture must keep what that interface delivered, go on capturing the others, mark the
//! deleted one as gone, and end by itself once every interface is gone.

mod agent_common;

use std::net::UdpSocket;
use std::thread;

use agent_common::pod::{in_pod, Pod};
use capture_agent::afpacket::RingConfig;
use capture_agent::{Capture, CaptureConfig, EndReason, InterfaceSpec, OutputPlan, StopSignal};
use capture_spec::{CaptureLimits, Filter, OutputFormat};

const PORT: u16 = 7400;

fn send_datagrams(pod: &Pod, count: usize) {
    let host = pod.host_v4;
    in_pod(pod, || {
        let socket = UdpSocket::bind("0.0.0.0:0").unwrap();
        for _ in 0..count {
            socket.send_to(b"still here", (host, PORT)).unwrap();
        }
    });
}

#[test]
fn deleted_interfaces_end_their_part_and_then_the_capture() {
    let first = Pod::new();
    let second = Pod::new();
    let dir = tempfile::tempdir().unwrap();
    let spec = |pod: &Pod| InterfaceSpec::local(pod.host_if.clone(), "");
    let config = CaptureConfig {
        budget: None,
        interfaces: vec![spec(&first), spec(&second)],
        filter: Filter::parse_cli(&[format!("udp:{PORT}")]).unwrap(),
        bpf_filter: None,
        limits: CaptureLimits::default(),
        duration: None,
        format: OutputFormat::Pcapng,
        output: OutputPlan::SingleFile(dir.path().join("pods.pcapng")),
        ring: RingConfig {
            block_size: 1 << 16,
            block_count: 4,
            ..RingConfig::default()
        },
        rings: None,
    };
    let capture = Capture::open(config).unwrap();
    let (stop, handle) = StopSignal::new().unwrap();
    let running = thread::spawn(move || capture.run(&stop));

    send_datagrams(&first, 10);
    send_datagrams(&second, 10);
    // Give the drained packets a block timeout to be handed over before the first pod goes.
    thread::sleep(std::time::Duration::from_millis(300));
    drop(first);
    send_datagrams(&second, 5);
    thread::sleep(std::time::Duration::from_millis(300));
    drop(second);

    // If deletion were not noticed, the capture would run forever: stop it after a grace period so
    // the test fails on the assertions instead of hanging.
    let watchdog = thread::spawn(move || {
        thread::sleep(std::time::Duration::from_secs(10));
        handle.stop();
    });
    let report = running.join().unwrap().unwrap();
    drop(watchdog);

    assert_eq!(report.end, EndReason::InterfacesGone, "{report:?}");
    assert!(report.interfaces.iter().all(|i| i.gone), "{report:?}");
    assert_eq!(
        report.interfaces[0].packets, 10,
        "the first pod's packets are kept: {report:?}"
    );
    assert_eq!(
        report.interfaces[1].packets, 15,
        "the second pod was captured after the first went: {report:?}"
    );
    assert_eq!(report.files.len(), 1);
    assert_eq!(report.files[0].packets, 25);
}
