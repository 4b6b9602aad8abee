//! podcap-testkit: the harness shared by podcap's end-to-end tests against the real kernel —
//! network-namespace "pods" joined to the test's namespace by veth pairs ([`pod`]), bounded
//! traffic across them ([`traffic`]), hand-made packets ([`packets`]), and readers and judges of
//! capture files ([`pcapfile`], [`tshark`]). For the Kubernetes tests, a real kube-apiserver on
//! loopback and a matching kubectl ([`kube`]), and around it node agents, kubeconfigs and a fake
//! kubelet ([`cluster`]), and a runner for cases that share one apiserver ([`subtests`]).
//!
//! The tests need root (namespaces, raw and packet sockets), tcpdump, tshark and capinfos.
//! They only ever send to addresses of pods they created themselves (10.244.0.0/16, fd00::/8).

#![forbid(unsafe_code)]

pub mod binaries;
pub mod cluster;
pub mod kube;
pub mod netlab;
mod owned;
pub mod packets;
pub mod pcapfile;
pub mod pod;
pub mod realnode;
pub mod subtests;
pub mod traffic;
pub mod tshark;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use binaries::{agent_binary, api_binary};
pub use pcapfile::{assert_same_frames, in_window, must_read, Frame};
pub use pod::{in_pod, Pod};
pub use traffic::{HostServices, UdpSink};

/// Wall-clock time in nanoseconds since the epoch: the clock the kernel stamps packets with.
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

/// A per-test directory for capture files, deleted at the end of the test.
pub fn scratch_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("podcap-e2e-")
        .tempdir()
        .expect("creating a temporary directory")
}

pub fn path_str(path: &Path) -> &str {
    path.to_str().expect("temporary paths are UTF-8")
}

/// Pause between the end of the traffic and the end of the window (T1): lets the last answers
/// of the exchanges reach the taps, so no exchange is cut in half at the window's edge.
pub const SETTLE: Duration = Duration::from_millis(100);

/// Pause between T1 and stopping the capturers, so that frames stamped before T1 have reached
/// every capturer's ring and file before it is told to stop.
pub const BEFORE_STOP: Duration = Duration::from_millis(300);

/// The rotated files of `base` (`dir/stem.ext` -> `dir/stem-NNNNNN.ext`) in sequence order.
pub fn rotated_files(base: &Path) -> Vec<PathBuf> {
    let stem = base.file_stem().unwrap().to_str().unwrap().to_string();
    let extension = base.extension().unwrap().to_str().unwrap().to_string();
    let mut files: Vec<PathBuf> = std::fs::read_dir(base.parent().unwrap())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| {
            let name = path.file_name().unwrap().to_str().unwrap();
            name.strip_prefix(&format!("{stem}-"))
                .and_then(|rest| rest.strip_suffix(&format!(".{extension}")))
                .is_some_and(|n| n.len() == 6 && n.bytes().all(|b| b.is_ascii_digit()))
        })
        .collect();
    files.sort();
    files
}
