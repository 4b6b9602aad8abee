//! `capturePoint`, end to end against the real kernel: a capture inside a pod's network
//! namespace (`podNetns`) records the pod's traffic with the same bytes and the same directions
//! (the pod's: what it sends is outbound) as one on its host-side veth (`hostVeth`); and on an
//! eBPF datapath that hands packets straight to the pod with `bpf_redirect_peer` — a tc program
//! built here with clang and loaded with `tc ... bpf da obj` on an uplink veth — the host-side
//! capture misses every redirected packet while `podNetns` (through the standalone API and the
//! CLI's `--netns`) records each one, exactly as tcpdump inside the pod's namespace does.
//!
//! Needs root, clang (with the kernel's UAPI headers), tc, tcpdump and tshark.

mod api_common;

use std::io::{BufRead, BufReader};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use api_common::traffic::{burst_from_pod, burst_sequence, udp_burst};
use api_common::{in_pod, must_read, tshark, Api, Frame, Pod, UdpSink};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::{json, Value};

const CAPTURES: &str = "/api/v1/namespaces/default/captures";
/// pcapng `epb_flags` direction bits.
const INBOUND: u32 = 1;
const OUTBOUND: u32 = 2;

/// Creates a capture of `pod` named `name` at `capture_point` (None: left out, the default),
/// keeping UDP to `ports`, and waits until its target records.
fn capture_pod(api: &Api, name: &str, pod: &Pod, capture_point: Option<&str>, ports: &[u16]) {
    let mut spec = json!({
        "podSelector": {"matchLabels": {"podcap.io/netns": pod.netns}},
        "filters": [{"protocol": "UDP", "ports": ports}],
    });
    if let Some(point) = capture_point {
        spec["capturePoint"] = json!(point);
    }
    let created = api
        .post(CAPTURES, &json!({"metadata": {"name": name}, "spec": spec}))
        .created();
    assert_eq!(
        created["spec"].get("capturePoint"),
        spec.get("capturePoint")
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let capture = api.get(&format!("{CAPTURES}/{name}")).json();
        let targets = capture["status"]["targets"].as_array().cloned();
        if targets.is_some_and(|t| t.len() == 1 && t[0]["state"] == "Capturing") {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "capture {name} never recorded: {capture}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Stops a capture (draining it) and returns its status and its frames, merged into pcapng.
fn stop_and_read(api: &Api, name: &str, scratch: &Path) -> (Value, Vec<Frame>) {
    let stopped = api.post(&format!("{CAPTURES}/{name}/stop"), &json!({}));
    assert_eq!(
        stopped.status,
        200,
        "{}",
        String::from_utf8_lossy(&stopped.body)
    );
    let download = api.get(&format!("{CAPTURES}/{name}/pcap?format=pcapng"));
    assert_eq!(download.status, 200);
    let path = scratch.join(format!("{name}.pcapng"));
    std::fs::write(&path, &download.body).unwrap();
    tshark::assert_tshark_reads_cleanly(&path);
    (stopped.json(), must_read(&path).frames)
}

fn direction(frame: &Frame) -> u32 {
    frame.flags.unwrap_or_default() & 3
}

/// (bytes, direction) of every frame, in order.
fn seen(frames: &[Frame]) -> Vec<(Vec<u8>, u32)> {
    frames
        .iter()
        .map(|f| (f.data.clone(), direction(f)))
        .collect()
}

fn udp_destination_port(frame: &Frame) -> Option<u16> {
    let port = frame.data.get(14 + 20 + 2..14 + 20 + 4)?;
    Some(u16::from_be_bytes([port[0], port[1]]))
}

#[test]
fn pod_netns_records_the_pods_traffic_and_directions_as_host_veth_does() {
    const TO_HOST: u16 = 7960;
    const TO_POD: u16 = 7961;
    let pod = Pod::new();
    let _host_sink = UdpSink::bind(pod.host_v4.into(), TO_HOST);
    // Bound inside the pod, so the pod takes the datagrams instead of answering with ICMP.
    let _pod_sink = in_pod(&pod, || UdpSink::bind(pod.pod_v4.into(), TO_POD));
    let api = Api::start();
    let scratch = tempfile::tempdir().unwrap();

    let refused = api
        .post(
            CAPTURES,
            &json!({"spec": {"capturePoint": "eth0", "duration": "1m"}}),
        )
        .problem(422);
    assert_eq!(
        refused["invalidParams"][0]["name"], "spec.capturePoint",
        "{refused}"
    );

    capture_pod(&api, "on-host", &pod, None, &[TO_HOST, TO_POD]);
    capture_pod(&api, "in-pod", &pod, Some("podNetns"), &[TO_HOST, TO_POD]);
    burst_from_pod(&pod, SocketAddr::new(pod.host_v4.into(), TO_HOST), 40, 60);
    udp_burst(SocketAddr::new(pod.pod_v4.into(), TO_POD), 30, 60);
    std::thread::sleep(Duration::from_millis(300));
    let (on_host, host_frames) = stop_and_read(&api, "on-host", scratch.path());
    let (in_pod_status, pod_frames) = stop_and_read(&api, "in-pod", scratch.path());

    // The targets name the interface captured: the host end, or the pod's own eth0.
    let host_target = &on_host["status"]["targets"][0];
    let pod_target = &in_pod_status["status"]["targets"][0];
    assert_eq!(host_target["interface"], pod.host_if.as_str(), "{on_host}");
    assert_eq!(pod_target["interface"], "eth0", "{in_pod_status}");
    assert_eq!(in_pod_status["spec"]["capturePoint"], "podNetns");
    assert_eq!(pod_target["packets"], 70, "{in_pod_status}");
    assert_eq!(host_target["packets"], 70, "{on_host}");

    // The pod's point of view at both capture points: what it sent is outbound.
    for (what, frames) in [("hostVeth", &host_frames), ("podNetns", &pod_frames)] {
        assert_eq!(frames.len(), 70, "{what}");
        for frame in frames.iter() {
            let expected = match udp_destination_port(frame) {
                Some(TO_HOST) => OUTBOUND,
                Some(TO_POD) => INBOUND,
                other => panic!("{what}: unexpected frame to port {other:?}"),
            };
            assert_eq!(direction(frame), expected, "{what}: {}", frame.describe());
        }
    }
    assert_eq!(
        seen(&pod_frames),
        seen(&host_frames),
        "the same frames, in the same order, with the same directions"
    );
    // And tshark reads the directions so too.
    let path = scratch.path().join("in-pod.pcapng");
    let outbound = tshark::count_matching(&path, "frame.packet_flags_direction == 2");
    assert_eq!(outbound, 40);
}

/// clang builds tests/bpf/redirect_peer.c for one pod: packets for `pod` arriving on an uplink
/// go straight to its eth0 (bpf_redirect_peer on its host veth).
fn build_redirect_program(pod: &Pod, directory: &Path) -> PathBuf {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("bpf/redirect_peer.c");
    let object = directory.join("redirect_peer.o");
    let ifindex = std::fs::read_to_string(format!("/sys/class/net/{}/ifindex", pod.host_if))
        .unwrap()
        .trim()
        .to_string();
    let bytes = |mac: [u8; 6]| {
        mac.iter()
            .map(|b| format!("{b:#04x}"))
            .collect::<Vec<_>>()
            .join(",")
    };
    // The address as the packet carries it, read as the little-endian u32 the program compares.
    let pod_ip = u32::from_le_bytes(pod.pod_v4.octets());
    // Debian keeps asm/types.h (which linux/bpf.h includes) under the multiarch directory.
    let multiarch = format!("-I/usr/include/{}-linux-gnu", std::env::consts::ARCH);
    let output = Command::new("clang")
        .args(["-O2", "-target", "bpf", &multiarch])
        .arg(format!("-DPOD_IP={pod_ip:#010x}"))
        .arg(format!("-DHOST_VETH={ifindex}"))
        .arg(format!("-DPOD_MAC={}", bytes(pod.pod_mac)))
        .arg(format!("-DHOST_MAC={}", bytes(pod.host_mac)))
        .arg("-c")
        .arg(&source)
        .arg("-o")
        .arg(&object)
        .output()
        .expect("running clang (Debian package clang)");
    assert!(
        output.status.success(),
        "clang could not build {}:\n{}",
        source.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    object
}

fn run(program: &str, args: &[&str]) {
    let output = Command::new(program).args(args).output().unwrap();
    assert!(
        output.status.success(),
        "{program} {} failed:\n{}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// tcpdump inside a network namespace (`ip netns exec NS tcpdump ...`), the reference; killed
/// on drop if the test fails before stopping it.
struct TcpdumpInside {
    child: Option<Child>,
    lines: mpsc::Receiver<String>,
}

impl TcpdumpInside {
    /// In immediate mode libpcap hands over each ring block after about a millisecond, so with a
    /// 256 KiB snap length its default 2 MiB buffer is a handful of blocks, which a tcpdump that
    /// waits for a busy CPU can fill: `-B 65536` (64 MiB) gives it room, and its own drop count
    /// is checked at the end.
    fn start(netns: &str, output: &Path, expression: &str) -> TcpdumpInside {
        let mut child = Command::new("ip")
            .args([
                "netns", "exec", netns, "tcpdump", "-i", "eth0", "-s", "262144", "-n",
            ])
            .args([
                "-B",
                "65536",
                "--time-stamp-precision=nano",
                "--immediate-mode",
                "-w",
            ])
            .arg(output)
            .arg(expression)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting tcpdump");
        let stderr = child.stderr.take().unwrap();
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = sender.send(line);
            }
        });
        let guard = TcpdumpInside {
            child: Some(child),
            lines,
        };
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let line = guard
                .lines
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .expect("tcpdump inside the pod never said it was listening");
            if line.contains("listening on") {
                return guard;
            }
        }
    }

    /// SIGINT (tcpdump writes out what it has), waits for it, and asserts that it dropped
    /// nothing: otherwise it is no reference.
    fn stop(mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // `ip netns exec` execs tcpdump: the child's PID is tcpdump's.
        kill(Pid::from_raw(child.id() as i32), Signal::SIGINT).unwrap();
        let status = child.wait().unwrap();
        let stderr: Vec<String> = self.lines.iter().collect();
        assert!(status.success(), "tcpdump exited with {status}: {stderr:?}");
        assert!(
            stderr.iter().any(|l| l == "0 packets dropped by kernel"),
            "the reference tcpdump lost packets: {stderr:?}"
        );
    }
}

impl Drop for TcpdumpInside {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The CLI inside the pod: `capture-agent capture --netns /var/run/netns/NS --interface eth0`.
/// Killed on drop if the test fails before stopping it.
struct CliInside {
    child: Option<Child>,
}

impl CliInside {
    fn start(netns: &str, output: &Path, ports: &str) -> CliInside {
        let mut child = Command::new(podcap_testkit::agent_binary())
            .args(["capture", "--netns", &format!("/var/run/netns/{netns}")])
            .args(["--interface", "eth0", "--ring-size", "8MiB", "--json"])
            .args(["--filter", &format!("udp:{ports}"), "--output"])
            .arg(output)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting capture-agent");
        let stderr = child.stderr.take().unwrap();
        let guard = CliInside { child: Some(child) };
        let (ready, capturing) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = ready.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let line = capturing
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .expect("capture-agent --netns never said it was capturing");
            if line.starts_with("capturing on eth0") {
                return guard;
            }
        }
    }

    /// SIGINT, and the `--json` summary.
    fn stop(mut self) -> Value {
        let child = self.child.take().unwrap();
        kill(Pid::from_raw(child.id() as i32), Signal::SIGINT).unwrap();
        let output = child.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "capture-agent exited with {}",
            output.status
        );
        serde_json::from_slice(&output.stdout).unwrap()
    }
}

impl Drop for CliInside {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[test]
fn redirect_peer_bypasses_the_host_veth_and_pod_netns_sees_every_packet() {
    const REDIRECTED: u16 = 7962;
    const TO_HOST: u16 = 7963;
    const SENT: u32 = 200;
    const CONTROL: u32 = 20;
    // The pod captured, and a second namespace that stands for the rest of the network: its host
    // end is the node's "uplink", whose tc ingress program redirects into the pod.
    let (pod, remote) = (Pod::new(), Pod::new());
    let uplink = remote.host_if.clone();
    let scratch = tempfile::tempdir().unwrap();
    let object = build_redirect_program(&pod, scratch.path());
    let subnet = |p: &Pod| format!("10.244.{}.0/25", p.slot());
    // Routes inside the two namespaces (gone with them): the remote reaches the pod through its
    // uplink, and the pod answers through its veth.
    run(
        "ip",
        &[
            "-n",
            &remote.netns,
            "route",
            "add",
            &subnet(&pod),
            "via",
            &remote.host_v4.to_string(),
        ],
    );
    run(
        "ip",
        &[
            "-n",
            &pod.netns,
            "route",
            "add",
            &subnet(&remote),
            "via",
            &pod.host_v4.to_string(),
        ],
    );
    // The uplink's only ingress filter becomes the redirect (the link, and the filter with it,
    // is deleted with the remote pod).
    run(
        "tc",
        &["filter", "del", "dev", &uplink, "ingress", "pref", "1"],
    );
    let load = Command::new("tc")
        .args([
            "filter", "add", "dev", &uplink, "ingress", "pref", "1", "bpf", "da", "obj",
        ])
        .arg(&object)
        .args(["sec", "tc"])
        .output()
        .unwrap();
    assert!(
        load.status.success(),
        "the kernel refused the redirect_peer program:\n{}{}",
        String::from_utf8_lossy(&load.stdout),
        String::from_utf8_lossy(&load.stderr)
    );

    let _pod_sink = in_pod(&pod, || UdpSink::bind(pod.pod_v4.into(), REDIRECTED));
    let _host_sink = UdpSink::bind(pod.host_v4.into(), TO_HOST);
    let api = Api::start();
    let ports = [REDIRECTED, TO_HOST];
    capture_pod(&api, "on-host", &pod, None, &ports);
    capture_pod(&api, "in-pod", &pod, Some("podNetns"), &ports);
    let reference = scratch.path().join("tcpdump-in-pod.pcap");
    let tcpdump = TcpdumpInside::start(
        &pod.netns,
        &reference,
        &format!("udp and (dst port {REDIRECTED} or dst port {TO_HOST})"),
    );
    let cli_file = scratch.path().join("cli-in-pod.pcapng");
    let cli = CliInside::start(&pod.netns, &cli_file, &format!("{REDIRECTED},{TO_HOST}"));

    // Redirected: remote → pod through the uplink's program. Control: pod → host through its
    // veth, which every capture point sees.
    in_pod(&remote, || {
        udp_burst(
            SocketAddr::new(IpAddr::V4(pod.pod_v4), REDIRECTED),
            SENT,
            100,
        )
    });
    burst_from_pod(
        &pod,
        SocketAddr::new(pod.host_v4.into(), TO_HOST),
        CONTROL,
        100,
    );
    std::thread::sleep(Duration::from_millis(300));
    tcpdump.stop();
    let cli_summary = cli.stop();
    let (on_host, host_frames) = stop_and_read(&api, "on-host", scratch.path());
    let (in_pod_status, pod_frames) = stop_and_read(&api, "in-pod", scratch.path());
    let reference_frames = must_read(&reference).frames;
    let cli_frames = must_read(&cli_file).frames;

    let redirected = |frames: &[Frame]| -> Vec<u32> {
        frames
            .iter()
            .filter(|f| udp_destination_port(f) == Some(REDIRECTED))
            .filter_map(|f| burst_sequence(&f.data))
            .collect()
    };
    let count_to_host = |frames: &[Frame]| {
        frames
            .iter()
            .filter(|f| udp_destination_port(f) == Some(TO_HOST))
            .count()
    };
    let every: Vec<u32> = (0..SENT).collect();
    eprintln!(
        "redirected {SENT}: tcpdump in the pod {}, podNetns {}, CLI --netns {}, hostVeth {}; \
         control {CONTROL}: hostVeth {}",
        redirected(&reference_frames).len(),
        redirected(&pod_frames).len(),
        redirected(&cli_frames).len(),
        redirected(&host_frames).len(),
        count_to_host(&host_frames),
    );

    // The reference: the pod got every redirected datagram, and the kernel never passed one
    // through the host veth's receive or transmit path.
    assert_eq!(
        redirected(&reference_frames),
        every,
        "tcpdump inside the pod"
    );
    assert_eq!(count_to_host(&reference_frames), CONTROL as usize);
    // hostVeth: blind to them, though it records the pod's own traffic on the same veth.
    assert_eq!(redirected(&host_frames), Vec::<u32>::new(), "hostVeth");
    assert_eq!(
        count_to_host(&host_frames),
        CONTROL as usize,
        "hostVeth control"
    );
    assert_eq!(
        on_host["status"]["targets"][0]["packets"], CONTROL,
        "{on_host}"
    );
    // podNetns and the CLI's --netns: every one, frame for frame as tcpdump has them, inbound.
    let reference_bytes: Vec<&[u8]> = reference_frames.iter().map(|f| &f.data[..]).collect();
    for (what, frames) in [("podNetns", &pod_frames), ("CLI --netns", &cli_frames)] {
        assert_eq!(redirected(frames), every, "{what}");
        let bytes: Vec<&[u8]> = frames.iter().map(|f| &f.data[..]).collect();
        assert!(
            bytes == reference_bytes,
            "{what}: not the frames tcpdump has"
        );
        for frame in frames.iter() {
            let expected = match udp_destination_port(frame) {
                Some(REDIRECTED) => INBOUND,
                _ => OUTBOUND,
            };
            assert_eq!(direction(frame), expected, "{what}: {}", frame.describe());
        }
    }
    let total = u64::from(SENT + CONTROL);
    assert_eq!(in_pod_status["status"]["targets"][0]["packets"], total);
    assert_eq!(cli_summary["packets"], total, "{cli_summary}");
    assert_eq!(cli_summary["drops"], 0, "{cli_summary}");
}
