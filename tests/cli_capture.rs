//! End-to-end tests of `capture-agent capture` on a real veth, judged against tcpdump: what an
//! operator relies on when they capture a pod's traffic. Every frame tcpdump sees is in the file
//! exactly once, in the same order, with the same bytes and kernel timestamp (TCP segments from
//! the pod are stamped per socket by the kernel and may differ by microseconds; see
//! `agent_common::pcapfile::same_frame`); VLAN tags are put back, directions flagged, the interface
//! named and described; the file opens in Wireshark without complaint in both formats; stopping
//! with Ctrl-C loses nothing the kernel had already accepted; a SIGKILL still leaves a readable
//! file; and `--duration` ends the capture by itself.
//!
//! Comparisons use the frames stamped between T0 (every capturer ready) and T1 (traffic over),
//! because the capturers start and stop at slightly different moments and IPv6 background
//! frames (MLD, ND) may come at any time. Needs root, tcpdump, tshark and capinfos.

mod agent_common;

use std::net::SocketAddr;
use std::thread::sleep;
use std::time::{Duration, Instant};

use agent_common::traffic::{self, burst_sequence};
use agent_common::{
    assert_same_frames, in_window, json_u64, must_read, now_ns, path_str, scratch_dir, tshark,
    Capturer, HostServices, Pod, UdpSink, BEFORE_STOP, SETTLE,
};

/// epb_flags direction bits (pcapng spec): 01 inbound, 10 outbound.
const INBOUND: u32 = 1;
const OUTBOUND: u32 = 2;

#[test]
fn pcapng_capture_equals_tcpdump_frame_for_frame() {
    let pod = Pod::new();
    let _services = HostServices::start(&pod);
    let dir = scratch_dir();
    let reference = dir.path().join("tcpdump.pcap");
    let output = dir.path().join("agent.pcapng");
    let description = format!("shop/web-{} on node-e2e", pod.slot());
    let describe = format!("{}={description}", pod.host_if);

    let before_start = now_ns();
    let tcpdump = Capturer::tcpdump(&pod.host_if, &reference);
    let agent = Capturer::agent(&[
        "--interface",
        &pod.host_if,
        "--describe",
        &describe,
        "--output",
        path_str(&output),
        "--json",
    ]);
    let t0 = now_ns();
    let sent = traffic::send_all_kinds(&pod);
    sleep(SETTLE);
    let t1 = now_ns();
    sleep(BEFORE_STOP);
    let agent = agent.stop();
    let tcpdump = tcpdump.stop();
    let after_stop = now_ns();
    agent.assert_success();
    tcpdump.assert_success();

    let ours = must_read(&output);
    let theirs = must_read(&reference);
    let ours_in_window = in_window(&ours.frames, t0, t1);
    assert!(
        ours_in_window.len() >= sent.frames,
        "only {} frames in the window, but the test alone caused at least {}",
        ours_in_window.len(),
        sent.frames
    );
    assert_same_frames(
        &ours_in_window,
        &in_window(&theirs.frames, t0, t1),
        "capture-agent vs tcpdump (no filter)",
    );

    // Directions: the pod's frames arrive on the host end (inbound), the host's leave (outbound).
    for frame in &ours.frames {
        let flags = frame
            .flags
            .unwrap_or_else(|| panic!("frame without epb_flags: {}", frame.describe()));
        let expected = if frame.source_mac() == pod.pod_mac {
            INBOUND
        } else {
            OUTBOUND
        };
        assert_eq!(
            flags & 0b11,
            expected,
            "direction bits of epb_flags {flags:#x} for {}",
            frame.describe()
        );
    }

    // VLAN: the kernel stripped the tags on receive; they must be back in the written frames.
    let vlan_ours = tshark::count_matching(&output, "vlan.id == 100");
    let vlan_theirs = tshark::count_matching(&reference, "vlan.id == 100");
    assert_eq!(
        vlan_ours, sent.vlan_frames,
        "802.1Q-tagged frames in capture-agent's file"
    );
    assert_eq!(
        vlan_ours, vlan_theirs,
        "802.1Q-tagged frames: capture-agent vs tcpdump"
    );

    // Wireshark opens the file without a warning and sees the interface by name and description.
    let listed = tshark::assert_tshark_reads_cleanly(&output);
    assert_eq!(
        listed,
        ours.frames.len(),
        "frames listed by tshark vs frames in the file"
    );
    for row in tshark::fields(
        &output,
        None,
        &["frame.interface_name", "frame.interface_description"],
    ) {
        assert_eq!(
            row,
            [pod.host_if.clone(), description.clone()],
            "tshark's interface name and description of a frame"
        );
    }
    assert_eq!(
        ours.interfaces.len(),
        1,
        "one interface description block per interface"
    );
    assert_eq!(
        ours.interfaces[0].tsresol,
        Some(9),
        "if_tsresol must say nanoseconds"
    );
    assert_eq!(
        ours.statistics_blocks, 1,
        "an interface statistics block per interface at close"
    );

    // Timestamps: this reader and tshark agree on every one, and all are real capture times.
    let ours_ts: Vec<u64> = ours.frames.iter().map(|f| f.ts_ns).collect();
    assert_eq!(
        tshark::epoch_ns(&output),
        ours_ts,
        "tshark's frame.time_epoch vs the timestamps read here"
    );
    for frame in &ours.frames {
        assert!(
            (before_start..=after_stop).contains(&frame.ts_ns),
            "timestamp outside the capture's lifetime [{before_start}, {after_stop}]: {}",
            frame.describe()
        );
    }

    let summary = agent.summary();
    assert_eq!(summary["end"], "stopped", "summary: {summary}");
    assert_eq!(
        json_u64(&summary, "packets"),
        ours.frames.len() as u64,
        "summary packets vs packets in the file: {summary}"
    );
    assert_eq!(json_u64(&summary, "drops"), 0, "summary: {summary}");
    let files = summary["files"].as_array().expect("summary files");
    assert_eq!(files.len(), 1, "summary: {summary}");
    assert_eq!(files[0]["path"], path_str(&output), "summary: {summary}");
    assert_eq!(
        json_u64(&files[0], "packets"),
        ours.frames.len() as u64,
        "summary: {summary}"
    );
    let interfaces = summary["interfaces"]
        .as_array()
        .expect("summary interfaces");
    assert_eq!(interfaces.len(), 1, "summary: {summary}");
    assert_eq!(
        interfaces[0]["name"],
        pod.host_if.as_str(),
        "summary: {summary}"
    );
    assert_eq!(
        interfaces[0]["description"],
        description.as_str(),
        "summary: {summary}"
    );
    assert_eq!(
        json_u64(&interfaces[0], "packets"),
        ours.frames.len() as u64,
        "summary: {summary}"
    );
}

#[test]
fn pcap_format_is_nanosecond_ethernet_and_equals_tcpdump() {
    let pod = Pod::new();
    let _services = HostServices::start(&pod);
    let dir = scratch_dir();
    let reference = dir.path().join("tcpdump.pcap");
    let output = dir.path().join("agent.pcap");

    let tcpdump = Capturer::tcpdump(&pod.host_if, &reference);
    let agent = Capturer::agent(&[
        "--interface",
        &pod.host_if,
        "--format",
        "pcap",
        "--output",
        path_str(&output),
        "--json",
    ]);
    let t0 = now_ns();
    let sent = traffic::send_all_kinds(&pod);
    sleep(SETTLE);
    let t1 = now_ns();
    sleep(BEFORE_STOP);
    let agent = agent.stop();
    tcpdump.stop().assert_success();
    agent.assert_success();

    let info = tshark::capinfos(&output);
    let precision = tshark::capinfos_value(&info, "File timestamp precision").unwrap_or_default();
    assert!(
        precision.starts_with("nanoseconds"),
        "capinfos timestamp precision {precision:?}:\n{info}"
    );
    let encapsulation = tshark::capinfos_value(&info, "File encapsulation").unwrap_or_default();
    assert_eq!(encapsulation, "Ethernet", "capinfos encapsulation:\n{info}");
    tshark::assert_tshark_reads_cleanly(&output);

    let ours = must_read(&output);
    assert!(
        !ours.pcapng && ours.pcap_nanoseconds,
        "expected a nanosecond pcap file"
    );
    let ours_in_window = in_window(&ours.frames, t0, t1);
    assert!(
        ours_in_window.len() >= sent.frames,
        "{} frames in the window, sent at least {}",
        ours_in_window.len(),
        sent.frames
    );
    assert_same_frames(
        &ours_in_window,
        &in_window(&must_read(&reference).frames, t0, t1),
        "capture-agent pcap vs tcpdump",
    );
}

/// The sequence numbers of the burst datagrams in `frames`, which must all be burst datagrams.
fn burst_sequences(frames: &[agent_common::Frame]) -> Vec<u32> {
    frames
        .iter()
        .map(|f| {
            burst_sequence(&f.data)
                .unwrap_or_else(|| panic!("not a burst datagram: {}", f.describe()))
        })
        .collect()
}

#[test]
fn sigint_drains_the_ring_before_exiting() {
    let pod = Pod::new();
    let _sink = UdpSink::bind(pod.host_v4.into(), 7000);
    let dir = scratch_dir();
    let output = dir.path().join("drain.pcapng");
    // With a 1 s block timeout the kernel keeps all 200 packets in a block it has not handed
    // over yet: only an explicit drain at stop gets them into the file.
    let agent = Capturer::agent(&[
        "--interface",
        &pod.host_if,
        "--filter",
        "udp:7000",
        "--block-timeout",
        "1s",
        "--output",
        path_str(&output),
        "--json",
    ]);
    traffic::burst_from_pod(&pod, SocketAddr::new(pod.host_v4.into(), 7000), 200, 64);
    let finished = agent.stop(); // right after the last send, no pause
    finished.assert_success();

    let frames = must_read(&output).frames;
    assert_eq!(
        burst_sequences(&frames),
        (0..200).collect::<Vec<u32>>(),
        "datagrams in the file after SIGINT"
    );
    let summary = finished.summary();
    assert_eq!(summary["end"], "stopped", "summary: {summary}");
    assert_eq!(json_u64(&summary, "packets"), 200, "summary: {summary}");
}

const KILLED_DATAGRAMS: u32 = 3000;

#[test]
fn sigkill_leaves_a_readable_file_with_everything_flushed() {
    let pod = Pod::new();
    let _sink = UdpSink::bind(pod.host_v4.into(), 7001);
    let dir = scratch_dir();
    let output = dir.path().join("killed.pcapng");
    let agent = Capturer::agent(&[
        "--interface",
        &pod.host_if,
        "--filter",
        "udp:7001",
        "--output",
        path_str(&output),
    ]);
    // ~3.6 MB: several page-aligned chunks go through O_DIRECT and the rest through the tail write.
    traffic::burst_from_pod(
        &pod,
        SocketAddr::new(pod.host_v4.into(), 7001),
        KILLED_DATAGRAMS,
        1200,
    );
    // Longer than the flush interval (250 ms) plus the block timeout (50 ms), with slack.
    sleep(Duration::from_millis(1500));
    let killed = agent.kill();
    assert!(!killed.status.success(), "SIGKILL should end the process");

    // A truncated last record would make tshark warn ("cut short in the middle of a packet").
    let listed = tshark::assert_tshark_reads_cleanly(&output);
    assert_eq!(
        listed, KILLED_DATAGRAMS as usize,
        "frames tshark lists in the file of a killed capture"
    );
    let frames = must_read(&output).frames;
    assert_eq!(
        burst_sequences(&frames),
        (0..KILLED_DATAGRAMS).collect::<Vec<u32>>(),
        "datagrams in the file of a killed capture"
    );
}

#[test]
fn duration_ends_the_capture_by_itself() {
    let pod = Pod::new();
    let dir = scratch_dir();
    let output = dir.path().join("timed.pcapng");
    let started = Instant::now();
    let agent = Capturer::agent(&[
        "--interface",
        &pod.host_if,
        "--duration",
        "2s",
        "--output",
        path_str(&output),
        "--json",
    ]);
    let finished = agent.wait_for_exit(Duration::from_secs(10));
    let elapsed = started.elapsed();
    finished.assert_success();
    let summary = finished.summary();
    assert_eq!(summary["end"], "duration reached", "summary: {summary}");
    assert!(
        elapsed >= Duration::from_secs(2),
        "ended after {elapsed:?}, before the 2 s duration"
    );
    tshark::assert_tshark_reads_cleanly(&output);
}
