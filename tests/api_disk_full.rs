//! A full disk ends a capture with a message, not corruption: the API's data directory is a
//! small tmpfs of its own (8 MiB), the free-space floor is off (`--min-free 0`) so nothing
//! stops the capture before the kernel says ENOSPC, and a pod sends more than fits. The capture
//! must end (Stopped) with a status naming the disk, although the store is on that disk too, its file must read cleanly in tshark up to its
//! last packet, the API and its store keep answering, and once the capture is deleted (its
//! space freed) a new capture works again.

mod api_common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use api_common::traffic::burst_from_pod;
use api_common::{tshark, Api, Pod, UdpSink};
use serde_json::{json, Value};

const CAPTURES: &str = "/api/v1/namespaces/default/captures";

/// A tmpfs of `size` mounted on a fresh directory; unmounted (and the directory removed) when
/// dropped, also when the test fails.
struct SmallDisk {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> SmallDisk {
        let dir = tempfile::Builder::new()
            .prefix("podcap-full-")
            .tempdir()
            .unwrap();
        let status = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir.path())
            .status()
            .expect("running mount");
        assert!(status.success(), "mounting a tmpfs needs root");
        SmallDisk {
            path: dir.path().to_path_buf(),
            _dir: dir,
        }
    }

    fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.path).status();
    }
}

fn capture(pod: &Pod, name: &str, port: u16) -> Value {
    json!({"metadata": {"name": name}, "spec": {
        "podSelector": {"matchLabels": {"podcap.io/netns": pod.netns}},
        "filters": [{"protocol": "UDP", "ports": [port]}],
        "duration": "2m",
    }})
}

#[test]
fn a_full_disk_fails_the_capture_with_a_message_and_keeps_its_file_readable() {
    let pod = Pod::new();
    let _sink = UdpSink::bind(pod.host_v4.into(), 7950);
    let disk = SmallDisk::mount("8m");
    let mut api = Api::start_on_disk(disk.path(), &["--min-free", "0"]);
    api.post(CAPTURES, &capture(&pod, "flood", 7950)).created();
    api.wait_for_phase("default", "flood", &["Capturing"], Duration::from_secs(15));

    // ~14 MB of packets into an 8 MiB disk.
    let destination = SocketAddr::new(pod.host_v4.into(), 7950);
    burst_from_pod(&pod, destination, 10_000, 1400);
    let failed = api.wait_for_phase(
        "default",
        "flood",
        &["Failed", "Stopped", "Completed"],
        Duration::from_secs(20),
    );
    let phase = failed["status"]["phase"].as_str().unwrap_or_default();
    assert!(matches!(phase, "Stopped" | "Failed"), "{failed}");
    let message = failed["status"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("is full") && message.contains(&*disk.path().to_string_lossy()),
        "the status names the full disk: {message}"
    );

    // The API and its store still answer, and the file reads cleanly up to its last packet.
    let listed = api.get(CAPTURES);
    assert_eq!(listed.status, 200);
    let files = failed["status"]["targets"][0]["files"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(!files.is_empty(), "the file is kept: {failed}");
    let scratch = tempfile::tempdir().unwrap();
    let mut packets = 0;
    for file in &files {
        let id = file["id"].as_str().unwrap();
        let answer = api.get(&format!("{CAPTURES}/flood/files/{id}"));
        assert_eq!(answer.status, 200);
        let path = scratch.path().join(id);
        std::fs::write(&path, &answer.body).unwrap();
        packets += tshark::assert_tshark_reads_cleanly(&path);
    }
    assert!(packets > 1000, "what fitted was kept: {packets} packets");

    // Space freed: a new capture works again.
    assert!(matches!(
        api.delete(&format!("{CAPTURES}/flood")).status,
        200 | 204
    ));
    api.post(CAPTURES, &capture(&pod, "after", 7950)).created();
    api.wait_for_phase("default", "after", &["Capturing"], Duration::from_secs(15));
    burst_from_pod(&pod, destination, 20, 200);
    std::thread::sleep(Duration::from_millis(2500));
    let after = api.get(&format!("{CAPTURES}/after")).json();
    assert_eq!(after["status"]["targets"][0]["packets"], 20, "{after}");
    api.kill();
}
