//! `kubectl podcap` (the `kubectl-podcap` binary) against the real `capture-api --standalone`
//! with netns pods and UDP traffic between each pod and its host end (10.244.n.0/24):
//! `capture --wait`, the `get` and `describe` tables, `download` into a file tshark reads,
//! `live` into `tshark -r -`, share/shares/revoke, delete, and problems rendered for a 422 and a
//! 401, with exit code 1.

mod api_common;

use std::io::Read;
use std::net::SocketAddr;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use api_common::traffic::burst_from_pod;
use api_common::{tshark, Api, Pod, UdpSink};

const PORT: u16 = 7610;

/// `kubectl-podcap`, built once per test process (testkit's builder, shared with real_node).
fn binary() -> &'static std::path::Path {
    podcap_testkit::binaries::kubectl_podcap_binary()
}

/// Runs the plugin against `api` (global flags after the command, as users type them).
fn podcap(api: &Api, args: &[&str]) -> Output {
    Command::new(binary())
        .args(args)
        .args(["--server", &api.base])
        .env("PODCAP_TOKEN", &api.token)
        .env_remove("PODCAP_SERVER")
        .stdin(Stdio::null())
        .output()
        .expect("running kubectl-podcap")
}

fn ok(api: &Api, args: &[&str]) -> String {
    let out = podcap(api, args);
    assert!(
        out.status.success(),
        "kubectl podcap {args:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn words(line: &str) -> Vec<&str> {
    line.split_whitespace().collect()
}

/// Until the capture's target for a pod is capturing.
fn wait_until_capturing(api: &Api, name: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let answer = api.get(&format!("/api/v1/namespaces/default/captures/{name}"));
        if answer.status == 200 {
            let capture = answer.json();
            let targets = capture["status"]["targets"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            if targets.iter().any(|t| t["state"] == "Capturing") {
                std::thread::sleep(Duration::from_millis(300));
                return;
            }
        }
        assert!(Instant::now() < deadline, "capture {name} never captured");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn capture_wait_tables_download_share_delete() {
    let pod = Pod::new();
    let _sink = UdpSink::bind(pod.host_v4.into(), PORT);
    let api = Api::start();
    let selector = format!("podcap.io/netns={}", pod.netns);
    let sink = SocketAddr::from((pod.host_v4, PORT));
    binary();
    // The capture waits in the foreground; the traffic goes once the pod's target captures.
    let started = Instant::now();
    let child = Command::new(binary())
        .args([
            "capture",
            "web",
            "-l",
            &selector,
            "--filter",
            &format!("udp:{PORT}"),
        ])
        .args([
            "--for", "6s", "--wait", "--server", &api.base, "--token", &api.token,
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until_capturing(&api, "web");
    burst_from_pod(&pod, sink, 50, 100);
    let capture = child.wait_with_output().unwrap();
    assert!(
        started.elapsed() >= Duration::from_secs(5),
        "--wait returned before the capture ended"
    );
    let stdout = String::from_utf8_lossy(&capture.stdout);
    let stderr = String::from_utf8_lossy(&capture.stderr);
    assert!(
        capture.status.success(),
        "capture --wait failed: {stdout}\n{stderr}"
    );
    assert_eq!(stdout.trim(), "packetcapture.podcap.io/web created");
    assert!(
        stderr
            .lines()
            .last()
            .unwrap()
            .starts_with("web: Completed, 1 pods, 50 packets"),
        "{stderr}"
    );

    // get: kubectl's columns, one row.
    let table = ok(&api, &["get"]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(
        words(lines[0]),
        ["NAME", "PHASE", "PODS", "PACKETS", "DROPS", "AGE"],
        "{table}"
    );
    assert_eq!(lines.len(), 2, "{table}");
    let row = words(lines[1]);
    assert_eq!(&row[..5], ["web", "Completed", "1", "50", "0"], "{table}");
    // Columns line up under their headers.
    assert_eq!(
        lines[0].find("PHASE"),
        lines[1].find("Completed"),
        "{table}"
    );
    let wide = ok(&api, &["list", "web", "-o", "wide"]);
    let wide_lines: Vec<&str> = wide.lines().collect();
    assert_eq!(
        words(wide_lines[0]),
        ["NAME", "PHASE", "PODS", "PACKETS", "BYTES", "DROPS", "AGE", "SELECTOR", "FILTERS"]
    );
    assert!(
        wide_lines[1].ends_with(&format!("{selector}   udp:{PORT}")),
        "{wide}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&ok(&api, &["get", "web", "-o", "json"])).unwrap();
    assert_eq!(json["status"]["targets"][0]["packets"], 50);
    let yaml = ok(&api, &["get", "web", "-o", "yaml"]);
    assert!(yaml.contains("phase: Completed"), "{yaml}");

    // describe: targets and files.
    let described = ok(&api, &["describe", "web"]);
    assert!(
        described.starts_with("Name:       web\nNamespace:  default\n"),
        "{described}"
    );
    assert!(
        described.contains(&format!("Filters:    udp:{PORT}\n")),
        "{described}"
    );
    assert!(
        described.contains("Captured:   on each pod's host-side veth (hostVeth)\n"),
        "{described}"
    );
    let targets = described.split("Targets:\n").nth(1).unwrap();
    let target_lines: Vec<&str> = targets.lines().collect();
    assert_eq!(
        words(target_lines[0]),
        [
            "NODE",
            "POD",
            "INTERFACE",
            "STATE",
            "PACKETS",
            "BYTES",
            "DROPS",
            "FILES",
            "ERROR"
        ]
    );
    let target = words(target_lines[1]);
    assert_eq!(target[1], format!("default/{}", pod.netns), "{described}");
    // BYTES is two words ("6.9 KiB").
    assert_eq!((target[4], target[8]), ("50", "1"), "{described}");
    let files = described.split("Files:\n").nth(1).unwrap();
    assert_eq!(
        words(files.lines().next().unwrap()),
        ["ID", "POD", "NAME", "SIZE", "PACKETS"]
    );
    let file_id = words(files.lines().nth(1).unwrap())[0].to_string();
    // The events of its life, in time order.
    let events = described.split("Events:\n").nth(1).unwrap();
    let reasons: Vec<&str> = events.lines().skip(1).map(|l| words(l)[2]).collect();
    assert_eq!(
        words(events.lines().next().unwrap()),
        ["TIME", "TYPE", "REASON", "AGE", "MESSAGE"],
        "{described}"
    );
    let at = |reason: &str| {
        reasons
            .iter()
            .position(|r| *r == reason)
            .unwrap_or_else(|| panic!("no {reason} event: {described}"))
    };
    assert!(
        at("Created") < at("FirstPacket")
            && at("Started") < at("FirstPacket")
            && at("FirstPacket") < at("LastPacket")
            && at("LastPacket") < at("Completed"),
        "{described}"
    );
    assert!(
        events.contains(&format!("default/{}: 50 packets, 0 drops", pod.netns)),
        "{described}"
    );

    // Completion: the hidden subcommand lists the server's capture names.
    assert_eq!(ok(&api, &["__complete", "captures"]), "web\n");
    assert_eq!(ok(&api, &["__complete", "captures", "-n", "other"]), "");

    // download: merged pcapng and pcap, and one file.
    let dir = tempfile::tempdir().unwrap();
    let merged = dir.path().join("web.pcapng");
    ok(&api, &["download", "web", "-o", merged.to_str().unwrap()]);
    assert_eq!(tshark::assert_tshark_reads_cleanly(&merged), 50);
    assert!(!dir.path().join("web.pcapng.part").exists());
    // The merged download resumes from an interrupted .part (Range + If-Range; a 200 from an
    // API without Range support starts again): either way the same bytes as a fresh download.
    let merged_bytes = std::fs::read(&merged).unwrap();
    for validator in [None, Some("\"not-the-etag\"")] {
        let again = dir.path().join("again.pcapng");
        std::fs::write(
            dir.path().join("again.pcapng.part"),
            &merged_bytes[..merged_bytes.len() / 2],
        )
        .unwrap();
        if let Some(v) = validator {
            std::fs::write(dir.path().join("again.pcapng.part.validator"), v).unwrap();
        }
        ok(&api, &["download", "web", "-o", again.to_str().unwrap()]);
        assert_eq!(
            std::fs::read(&again).unwrap(),
            merged_bytes,
            "a resumed merged download is the whole file (validator {validator:?})"
        );
        assert!(!dir.path().join("again.pcapng.part").exists());
        assert!(!dir.path().join("again.pcapng.part.validator").exists());
        std::fs::remove_file(&again).unwrap();
    }
    let pcap = dir.path().join("web.pcap");
    ok(
        &api,
        &[
            "download",
            "web",
            "--format",
            "pcap",
            "-o",
            pcap.to_str().unwrap(),
        ],
    );
    assert_eq!(tshark::assert_tshark_reads_cleanly(&pcap), 50);
    // Classic pcap (microsecond or nanosecond magic), not pcapng.
    let magic = std::fs::read(&pcap).unwrap()[..4].to_vec();
    assert!(
        magic == [0xd4, 0xc3, 0xb2, 0xa1] || magic == [0x4d, 0x3c, 0xb2, 0xa1],
        "{magic:x?}"
    );
    // One file, resumed from an interrupted download's .part.
    let whole = dir.path().join("whole.pcapng");
    ok(
        &api,
        &[
            "download",
            "web",
            "--file",
            &file_id,
            "-o",
            whole.to_str().unwrap(),
        ],
    );
    let bytes = std::fs::read(&whole).unwrap();
    let resumed = dir.path().join("resumed.pcapng");
    std::fs::write(
        dir.path().join("resumed.pcapng.part"),
        &bytes[..bytes.len() / 2],
    )
    .unwrap();
    let out = podcap(
        &api,
        &[
            "download",
            "web",
            "--file",
            &file_id,
            "-o",
            resumed.to_str().unwrap(),
        ],
    );
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("resuming"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read(&resumed).unwrap(),
        bytes,
        "a resumed download is the whole file"
    );
    assert_eq!(tshark::assert_tshark_reads_cleanly(&resumed), 50);

    // share, shares, revoke.
    let url = ok(&api, &["share", "web", "--expires", "1h"]);
    assert!(
        url.trim().starts_with(&format!("{}/share/pcs_", api.base)),
        "{url}"
    );
    let shares = ok(&api, &["shares", "web"]);
    let share_lines: Vec<&str> = shares.lines().collect();
    assert_eq!(
        words(share_lines[0]),
        ["ID", "STATE", "CREATED", "EXPIRES", "DOWNLOADS"]
    );
    let share = words(share_lines[1]);
    assert_eq!(share[1], "Active");
    let id = share[0].to_string();
    assert_eq!(
        ok(&api, &["revoke", "web", &id]).trim(),
        format!("share {id} of web revoked")
    );
    assert_eq!(
        words(ok(&api, &["shares", "web"]).lines().nth(1).unwrap())[1],
        "Revoked"
    );

    // delete, then a 404 is exit code 1 with the API's sentence.
    assert_eq!(
        ok(&api, &["delete", "web"]).trim(),
        "packetcapture.podcap.io/web deleted"
    );
    let out = podcap(&api, &["get", "web"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("error: no capture \"web\" in namespace \"default\""),
        "{err}"
    );
    assert!(err.contains("(404 "), "{err}");
    assert!(
        !err.contains("panicked") && !err.contains("backtrace"),
        "{err}"
    );
}

#[test]
fn live_streams_pcapng_into_tshark_and_deletes_the_capture() {
    let pod = Pod::new();
    let _sink = UdpSink::bind(pod.host_v4.into(), PORT + 1);
    let api = Api::start();
    let selector = format!("podcap.io/netns={}", pod.netns);
    let mut plugin = Command::new(binary())
        .args([
            "live",
            "-l",
            &selector,
            "--filter",
            &format!("udp:{}", PORT + 1),
            "--for",
            "4s",
            // Inside the pod's network namespace: the stream is the same.
            "--capture-point",
            "pod-netns",
        ])
        .args(["--server", &api.base])
        .env("PODCAP_TOKEN", &api.token)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let tshark = Command::new("tshark")
        .args(["-n", "-r", "-", "-T", "fields", "-e", "udp.dstport"])
        .env("LC_ALL", "C")
        .stdin(plugin.stdout.take().unwrap())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The stream starts once the capture is Capturing; then send a bounded burst.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let list = api.get("/api/v1/namespaces/default/captures").json();
        if let Some(live) = list["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["status"]["phase"] == "Capturing")
        {
            assert_eq!(live["spec"]["capturePoint"], "podNetns", "{live}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the live capture never started: {list}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(700));
    burst_from_pod(&pod, SocketAddr::from((pod.host_v4, PORT + 1)), 20, 64);
    let status = plugin.wait().unwrap();
    let mut stderr = String::new();
    plugin
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(status.success(), "live failed: {stderr}");
    let out = tshark.wait_with_output().unwrap();
    let ports: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    assert!(
        out.status.success(),
        "tshark: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(ports.len(), 20, "tshark read {ports:?}; live said {stderr}");
    assert!(ports.iter().all(|p| *p == (PORT + 1).to_string()));
    // Stopped and deleted at the end.
    let list = api.get("/api/v1/namespaces/default/captures").json();
    assert_eq!(list["items"].as_array().unwrap().len(), 0, "{list}");
}

#[test]
fn problems_are_one_line_with_fields_and_exit_1() {
    let api = Api::start();
    // A bad pcap-filter expression: 422 from the API, field named.
    let out = podcap(
        &api,
        &[
            "capture",
            "bad",
            "-l",
            "podcap.io/netns=no-such-pod",
            "--bpf",
            "tcp port",
            "--for",
            "5s",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = err.lines().collect();
    assert!(
        lines[0].starts_with("error: ") && lines[0].contains("(422 "),
        "{err}"
    );
    assert!(lines[1].starts_with("  spec.bpfFilter: "), "{err}");
    // A bad --filter never reaches the API.
    let out = podcap(&api, &["capture", "-l", "a=b", "--filter", "tcp:99999"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).starts_with("error: bad --filter"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // 401: which identity, and the API's detail.
    let out = Command::new(binary())
        .args([
            "get",
            "--server",
            &api.base,
            "--token",
            "pcp_not-a-real-token",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("error: not authenticated as token pcp_not-… (401 "),
        "{err}"
    );
    // 403: a viewer may not create.
    let viewer = api.create_token("viewer", &[]);
    let out = Command::new(binary())
        .args([
            "--server", &api.base, "--token", &viewer, "capture", "-l", "a=b", "--for", "5s",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("may not do this (403 ") && err.contains("viewer"),
        "{err}"
    );
    // Schedules: create, list, suspend, resume, delete.
    let created = ok(
        &api,
        &[
            "schedule",
            "nightly",
            "--cron",
            "0 2 * * *",
            "--tz",
            "Europe/Berlin",
            "-l",
            "podcap.io/netns=no-such-pod",
            "--for",
            "1m",
        ],
    );
    assert!(
        created.starts_with("packetcaptureschedule.podcap.io/nightly created (next run 20"),
        "{created}"
    );
    let suspend_column = |api: &Api| {
        let table = ok(api, &["schedules"]);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(
            words(lines[0]),
            ["NAME", "SCHEDULE", "TIMEZONE", "SUSPEND", "ACTIVE", "LAST", "NEXT", "AGE"],
            "{table}"
        );
        assert!(
            lines[1].starts_with("nightly   0 2 * * *   Europe/Berlin"),
            "{table}"
        );
        words(lines[1])[7].to_string()
    };
    assert_eq!(suspend_column(&api), "false");
    ok(&api, &["suspend", "nightly"]);
    assert_eq!(suspend_column(&api), "true");
    ok(&api, &["resume", "nightly"]);
    assert_eq!(suspend_column(&api), "false");
    ok(&api, &["unschedule", "nightly"]);
    assert_eq!(ok(&api, &["schedules"]).lines().count(), 1);
    // Usage errors are 1 too; completion scripts are generated.
    let out = Command::new(binary())
        .args(["capture", "--no-such-flag"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let out = Command::new(binary())
        .args(["completion", "bash"])
        .output()
        .unwrap();
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("kubectl-podcap")
    );
    // Each shell's script asks the server for capture names.
    for (shell, hook) in [
        ("bash", "\"kubectl-podcap\" __complete captures"),
        ("zsh", ":name:_podcap_captures'"),
        ("fish", "kubectl-podcap __complete captures"),
    ] {
        let out = Command::new(binary())
            .args(["completion", shell])
            .output()
            .unwrap();
        let script = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && script.contains(hook),
            "{shell}: {script}"
        );
    }
    // `live --wireshark` without Wireshark on PATH: a clear error, and no capture created.
    let empty = tempfile::tempdir().unwrap();
    let out = Command::new(binary())
        .args(["live", "-l", "a=b", "--wireshark", "--server", &api.base])
        .env("PODCAP_TOKEN", &api.token)
        .env("PATH", empty.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no `wireshark` on PATH"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list = api.get("/api/v1/namespaces/default/captures").json();
    assert_eq!(list["items"].as_array().unwrap().len(), 0, "{list}");
    // The config file: server and token for standalone use; world-readable with a token is
    // refused with the chmod that fixes it.
    use std::os::unix::fs::PermissionsExt;
    let config = empty.path().join("config.yaml");
    std::fs::write(
        &config,
        format!("server: {}\ntoken: {}\n", api.base, api.token),
    )
    .unwrap();
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
    let from_config = || {
        Command::new(binary())
            .args(["schedules"])
            .env("PODCAP_CONFIG", &config)
            .env_remove("PODCAP_SERVER")
            .env_remove("PODCAP_TOKEN")
            .output()
            .unwrap()
    };
    let out = from_config();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("readable by everyone")
            && err.contains(&format!("chmod 600 {}", config.display())),
        "{err}"
    );
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = from_config();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("NAME"));
}

#[test]
fn live_wireshark_gets_the_stream() {
    let pod = Pod::new();
    let _sink = UdpSink::bind(pod.host_v4.into(), PORT + 2);
    let api = Api::start();
    let selector = format!("podcap.io/netns={}", pod.netns);
    // A `wireshark` that is tshark reading its stdin, as `wireshark -k -i -` would.
    let bin = tempfile::tempdir().unwrap();
    let read = bin.path().join("read.txt");
    let fake = bin.path().join("wireshark");
    std::fs::write(
        &fake,
        format!(
            "#!/bin/sh\n[ \"$*\" = \"-k -i -\" ] || exit 3\nLC_ALL=C exec tshark -n -r - -T fields -e udp.dstport > {}\n",
            read.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = format!(
        "{}:{}",
        bin.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let plugin = Command::new(binary())
        .args(["live", "--wireshark", "-l", &selector])
        .args(["--filter", &format!("udp:{}", PORT + 2), "--for", "4s"])
        .args(["--server", &api.base])
        .env("PODCAP_TOKEN", &api.token)
        .env("PATH", path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let list = api.get("/api/v1/namespaces/default/captures").json();
        if list["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["status"]["phase"] == "Capturing")
        {
            break;
        }
        assert!(Instant::now() < deadline, "never started: {list}");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(700));
    burst_from_pod(&pod, SocketAddr::from((pod.host_v4, PORT + 2)), 20, 64);
    let out = plugin.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "live --wireshark failed: {stderr}");
    assert!(out.stdout.is_empty(), "the stream went to stdout too");
    let ports = std::fs::read_to_string(&read).unwrap();
    assert_eq!(ports.lines().count(), 20, "{ports}; live said {stderr}");
    let list = api.get("/api/v1/namespaces/default/captures").json();
    assert_eq!(list["items"].as_array().unwrap().len(), 0, "{list}");
}
