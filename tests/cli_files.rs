//! End-to-end tests of what `capture-agent capture` does with files and limits: rotation cuts
//! one stream of packets into files without losing or repeating any, `--max-files` keeps exactly
//! the newest files, `--max-packets` and `--max-bytes` stop exactly at the limit, and bad input
//! is refused up front with a message that tells the operator what to change.
//!
//! A rotating capture is judged against an unrotated capture-agent run at the same time on the
//! same veth with the same filter: the concatenation of the rotated files must be that file.
//! Needs root and tshark.

mod agent_common;

use std::net::SocketAddr;
use std::path::Path;
use std::thread::sleep;
use std::time::Duration;

use agent_common::capture::run_agent_to_end;
use agent_common::traffic::{burst_from_pod, burst_sequence};
use agent_common::{
    assert_same_frames, json_u64, must_read, path_str, rotated_files, scratch_dir, tshark,
    Capturer, Frame, Pod, UdpSink, BEFORE_STOP,
};

/// The frames of `files`, one file after the other.
fn concatenated_frames(files: &[impl AsRef<Path>]) -> Vec<Frame> {
    files
        .iter()
        .flat_map(|f| must_read(f.as_ref()).frames)
        .collect()
}

/// The `path`s of the summary's `files`, in order.
fn summary_paths(summary: &serde_json::Value) -> Vec<String> {
    summary["files"]
        .as_array()
        .unwrap_or_else(|| panic!("summary without files: {summary}"))
        .iter()
        .map(|f| f["path"].as_str().unwrap().to_string())
        .collect()
}

fn sequences(frames: &[Frame]) -> Vec<u32> {
    frames
        .iter()
        .map(|f| {
            burst_sequence(&f.data)
                .unwrap_or_else(|| panic!("not a burst datagram: {}", f.describe()))
        })
        .collect()
}

/// Runs a rotating and an unrotated capture of the same UDP port side by side while the pod
/// sends `count` datagrams of 500 bytes to it; returns both summaries once both are stopped.
fn rotating_beside_unrotated(
    pod: &Pod,
    port: u16,
    count: u32,
    rotation: &[&str],
    rotated: &Path,
    whole: &Path,
) -> (serde_json::Value, serde_json::Value) {
    let destination = SocketAddr::new(pod.host_v4.into(), port);
    rotating_beside_unrotated_with(pod, port, rotation, rotated, whole, || {
        burst_from_pod(pod, destination, count, 500)
    })
}

/// The same, with the pod's traffic sent by `send`.
fn rotating_beside_unrotated_with(
    pod: &Pod,
    port: u16,
    rotation: &[&str],
    rotated: &Path,
    whole: &Path,
    send: impl FnOnce(),
) -> (serde_json::Value, serde_json::Value) {
    let _sink = UdpSink::bind(pod.host_v4.into(), port);
    let filter = format!("udp:{port}");
    let mut args = vec![
        "--interface",
        pod.host_if.as_str(),
        "--filter",
        &filter,
        "--json",
        "--ring-size",
        "16MiB",
        "--output",
    ];
    let rotating = Capturer::agent(&[&args[..], &[path_str(rotated)][..], rotation].concat());
    args.push(path_str(whole));
    let unrotated = Capturer::agent(&args);
    send();
    sleep(BEFORE_STOP);
    let (rotating, unrotated) = (rotating.stop(), unrotated.stop());
    rotating.assert_success();
    unrotated.assert_success();
    (rotating.summary(), unrotated.summary())
}

#[test]
fn time_rotation_loses_and_duplicates_nothing() {
    let pod = Pod::new();
    let dir = scratch_dir();
    let (rotated, whole) = (
        dir.path().join("timed.pcapng"),
        dir.path().join("whole.pcapng"),
    );
    let destination = SocketAddr::new(pod.host_v4.into(), 7102);
    // Four waves further apart than the rotation period: each wave after the first finds a file
    // that has been open for at least a second, so a new file starts with it.
    let waves = || {
        for wave in 0..4 {
            if wave > 0 {
                sleep(Duration::from_millis(1100));
            }
            burst_from_pod(&pod, destination, 50, 500);
        }
    };
    let (summary, _) = rotating_beside_unrotated_with(
        &pod,
        7102,
        &["--rotate-every", "1s"],
        &rotated,
        &whole,
        waves,
    );

    let files = rotated_files(&rotated);
    assert!(
        files.len() >= 3,
        "4 waves 1.1 s apart with --rotate-every 1s gave only {} files",
        files.len()
    );
    assert_eq!(
        summary_paths(&summary).len(),
        files.len(),
        "summary: {summary}"
    );
    for file in &files {
        tshark::assert_tshark_reads_cleanly(file);
    }
    let whole_frames = must_read(&whole).frames;
    assert_eq!(
        whole_frames.len(),
        200,
        "the unrotated capture should hold every datagram once"
    );
    assert_same_frames(
        &concatenated_frames(&files),
        &whole_frames,
        "time-rotated files, concatenated, vs the unrotated capture",
    );
}

#[test]
fn size_rotation_loses_and_duplicates_nothing() {
    let pod = Pod::new();
    let dir = scratch_dir();
    let (rotated, whole) = (
        dir.path().join("rotated.pcapng"),
        dir.path().join("whole.pcapng"),
    );
    let (summary, _) = rotating_beside_unrotated(
        &pod,
        7100,
        2000,
        &["--rotate-bytes", "64KiB"],
        &rotated,
        &whole,
    );

    let files = rotated_files(&rotated);
    assert!(
        files.len() >= 3,
        "~1.1 MB of packets in 64 KiB files should make many files, got {files:?}"
    );
    assert!(
        !rotated.exists(),
        "with rotation only numbered files are written, but {} exists",
        rotated.display()
    );
    for file in &files {
        let size = std::fs::metadata(file).unwrap().len();
        assert!(
            size <= 64 * 1024,
            "{} is {size} bytes, more than --rotate-bytes 64KiB",
            file.display()
        );
        tshark::assert_tshark_reads_cleanly(file);
    }
    let expected_paths: Vec<String> = files.iter().map(|f| path_str(f).to_string()).collect();
    assert_eq!(
        summary_paths(&summary),
        expected_paths,
        "summary files vs files on disk"
    );

    let whole_frames = must_read(&whole).frames;
    assert_eq!(
        sequences(&whole_frames),
        (0..2000).collect::<Vec<u32>>(),
        "the unrotated capture should hold every datagram once"
    );
    assert_same_frames(
        &concatenated_frames(&files),
        &whole_frames,
        "rotated files, concatenated, vs the unrotated capture",
    );
}

#[test]
fn max_files_keeps_exactly_the_newest_files() {
    let pod = Pod::new();
    let dir = scratch_dir();
    let (rotated, whole) = (
        dir.path().join("ring.pcapng"),
        dir.path().join("whole.pcapng"),
    );
    let rotation = ["--rotate-bytes", "32KiB", "--max-files", "3"];
    let (summary, _) = rotating_beside_unrotated(&pod, 7101, 1000, &rotation, &rotated, &whole);

    let files = rotated_files(&rotated);
    assert_eq!(files.len(), 3, "files left with --max-files 3: {files:?}");
    let deleted = json_u64(&summary, "deletedFiles");
    assert!(
        deleted > 0,
        "~550 KB in 32 KiB files must have deleted some: {summary}"
    );
    // The survivors are the last three written: numbers deleted+1 ..= deleted+3.
    let last = files
        .last()
        .unwrap()
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(
        last,
        format!("ring-{:06}.pcapng", deleted + 3),
        "the newest file's name, after {deleted} deletions"
    );
    let expected_paths: Vec<String> = files.iter().map(|f| path_str(f).to_string()).collect();
    assert_eq!(
        summary_paths(&summary),
        expected_paths,
        "summary files vs files on disk"
    );

    let kept = concatenated_frames(&files);
    let whole_frames = must_read(&whole).frames;
    assert_eq!(
        whole_frames.len(),
        1000,
        "the unrotated capture should hold every datagram"
    );
    assert!(
        !kept.is_empty() && kept.len() < whole_frames.len(),
        "kept {} of {} frames",
        kept.len(),
        whole_frames.len()
    );
    assert_same_frames(
        &kept,
        &whole_frames[whole_frames.len() - kept.len()..],
        "the files kept vs the tail of the unrotated capture",
    );
}

#[test]
fn max_packets_stops_after_exactly_that_many() {
    let pod = Pod::new();
    let _sink = UdpSink::bind(pod.host_v4.into(), 7200);
    let dir = scratch_dir();
    let output = dir.path().join("limited.pcapng");
    let agent = Capturer::agent(&[
        "--interface",
        &pod.host_if,
        "--filter",
        "udp:7200",
        "--max-packets",
        "100",
        "--output",
        path_str(&output),
        "--json",
    ]);
    burst_from_pod(&pod, SocketAddr::new(pod.host_v4.into(), 7200), 500, 64);
    // No signal: the limit alone must end the capture.
    let finished = agent.wait_for_exit(Duration::from_secs(10));
    finished.assert_success();
    let summary = finished.summary();
    assert_eq!(summary["end"], "packet limit reached", "summary: {summary}");
    assert_eq!(json_u64(&summary, "packets"), 100, "summary: {summary}");
    let frames = must_read(&output).frames;
    assert_eq!(
        sequences(&frames),
        (0..100).collect::<Vec<u32>>(),
        "the file should hold the first 100 datagrams"
    );
    tshark::assert_tshark_reads_cleanly(&output);
}

#[test]
fn max_bytes_stops_before_passing_the_limit() {
    let pod = Pod::new();
    let _sink = UdpSink::bind(pod.host_v4.into(), 7201);
    let dir = scratch_dir();
    let output = dir.path().join("limited.pcapng");
    let agent = Capturer::agent(&[
        "--interface",
        &pod.host_if,
        "--filter",
        "udp:7201",
        "--max-bytes",
        "10000",
        "--output",
        path_str(&output),
        "--json",
    ]);
    // 100 frames of 142 bytes (Ethernet 14 + IPv4 20 + UDP 8 + 100): 14200 bytes, past the limit.
    burst_from_pod(&pod, SocketAddr::new(pod.host_v4.into(), 7201), 100, 100);
    let finished = agent.wait_for_exit(Duration::from_secs(10));
    finished.assert_success();
    let summary = finished.summary();
    assert_eq!(summary["end"], "byte limit reached", "summary: {summary}");

    let frames = must_read(&output).frames;
    let frame_len = 14 + 20 + 8 + 100;
    assert!(
        frames.iter().all(|f| f.data.len() == frame_len),
        "every frame should be a whole {frame_len}-byte datagram"
    );
    let total: usize = frames.iter().map(|f| f.data.len()).sum();
    assert!(
        total <= 10_000,
        "{total} packet bytes in the file, more than --max-bytes 10000"
    );
    assert!(
        total + frame_len > 10_000,
        "{total} packet bytes: one more {frame_len}-byte packet would still fit under 10000"
    );
    assert_eq!(
        json_u64(&summary, "bytes"),
        total as u64,
        "summary bytes vs packet bytes in the file: {summary}"
    );
    assert_eq!(
        sequences(&frames),
        (0..frames.len() as u32).collect::<Vec<u32>>(),
        "the file should hold the first datagrams"
    );
}

#[test]
fn bad_input_is_refused_with_a_message_saying_what_to_fix() {
    let dir = scratch_dir();
    let output = dir.path().join("never.pcapng");
    // (extra arguments, texts that must all appear in the message, of which at least one of
    // the alternatives after '|' must appear).
    let cases: &[(&[&str], &[&str])] = &[
        (&["--filter", "tcp:70000"], &["70000", "65535"]),
        (&["--filter", "tcp:90-80"], &["90", "80:90|80-90"]),
        (&["--filter", "gre"], &["gre", "protocol number"]),
        (
            &["--interface", "does-not-exist0"],
            &[
                "does-not-exist0",
                "no interface|no such|not found|does not exist",
            ],
        ),
        (
            &["--max-files", "3"],
            &["max-files|maxfiles", "--rotate-bytes|--rotate-every"],
        ),
    ];
    let mut failures = Vec::new();
    for (extra, needles) in cases {
        // `lo` exists everywhere; the duration bounds the run should the input be accepted.
        let interface = if extra.contains(&"--interface") {
            vec![]
        } else {
            vec!["--interface", "lo"]
        };
        let args: Vec<&str> = [
            &interface[..],
            extra,
            &["--duration", "2s", "--output", path_str(&output)][..],
        ]
        .concat();
        let finished = run_agent_to_end(&args, Duration::from_secs(10));
        let message = finished.stderr.to_lowercase();
        let problem = if finished.status.success() {
            Some("exited 0".to_string())
        } else if finished.status.code().is_none() {
            Some(format!("died of a signal ({})", finished.status))
        } else if message.contains("capturing on") {
            Some("started capturing".to_string())
        } else if message.contains("panicked") {
            Some("panicked".to_string())
        } else {
            needles
                .iter()
                .find(|needle| {
                    !needle
                        .split('|')
                        .any(|alternative| message.contains(&alternative.to_lowercase()))
                })
                .map(|needle| format!("the message does not mention {needle:?}"))
        };
        if let Some(problem) = problem {
            failures.push(format!(
                "capture-agent capture {}: {problem}; stderr:\n{}",
                args.join(" "),
                finished.stderr
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "bad input not refused properly:\n{}",
        failures.join("\n")
    );
}
