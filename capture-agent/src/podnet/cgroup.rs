//! Which processes belong to a pod, by their cgroup: the kubelet names every pod's cgroup after
//! the pod UID, so the netns fallback can find a process of the pod without asking the runtime.
//!
//! The names, by cgroup driver (cgroup v1 and v2 alike, QoS class level optional):
//! - cgroupfs: `/kubepods/besteffort/pod0b6f1a2c-.../<container id>`
//! - systemd:  `/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod0b6f1a2c_....slice/cri-containerd-<id>.scope`
//!
//! systemd unit names cannot hold '-' inside a component, hence the '_' form of the UID. The
//! processes are found through `/proc/<pid>/cgroup` rather than by walking the cgroup filesystem:
//! /proc works with any mix of v1 and v2 hierarchies and inside a private cgroup namespace (an
//! agent container sees paths like `/../../kubepods...` there, whose components still carry the
//! pod UID), whereas /sys/fs/cgroup in a container shows only the container's own subtree.

use std::fs;
use std::io;
use std::path::Path;

/// Whether a cgroup path (one line's path of /proc/<pid>/cgroup) is inside the cgroup of the pod
/// with this UID. Matches a whole path component, so a UID never matches as a prefix of another.
pub fn path_is_in_pod(path: &str, uid: &str) -> bool {
    let Some((dashed, underscored)) = uid_forms(uid) else {
        return false;
    };
    path.split('/').any(|component| {
        let name = component.strip_suffix(".slice").unwrap_or(component);
        [&dashed, &underscored].iter().any(|form| {
            let pod = format!("pod{form}");
            // cgroupfs: `pod<uid>`; systemd: `kubepods[-<qos>]-pod<uid>`.
            name == pod
                || name
                    .strip_suffix(pod.as_str())
                    .is_some_and(|rest| rest.ends_with('-'))
        })
    })
}

/// Whether the contents of a /proc/<pid>/cgroup file (`hierarchy-id:controllers:path` lines,
/// `0::path` for cgroup v2) put the process in the pod's cgroup in any hierarchy.
pub fn proc_cgroup_is_in_pod(contents: &str, uid: &str) -> bool {
    contents.lines().any(|line| {
        line.splitn(3, ':')
            .nth(2)
            .is_some_and(|path| path_is_in_pod(path, uid))
    })
}

/// The PIDs under `proc_root` whose cgroup is the pod's, lowest first (the sandbox's pause
/// process usually). Processes that vanish or can't be read while scanning are skipped.
pub fn pids_in_pod(proc_root: &Path, uid: &str) -> io::Result<Vec<u32>> {
    if uid_forms(uid).is_none() {
        return Ok(Vec::new());
    }
    let mut pids = Vec::new();
    for entry in fs::read_dir(proc_root)? {
        let Ok(entry) = entry else { continue };
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(contents) = fs::read_to_string(entry.path().join("cgroup")) else {
            continue;
        };
        if proc_cgroup_is_in_pod(&contents, uid) {
            pids.push(pid);
        }
    }
    pids.sort_unstable();
    Ok(pids)
}

/// The UID with '-' and with '_', lower case; None for something that is not a plausible UID
/// (empty, or with characters that would let it match across path components).
fn uid_forms(uid: &str) -> Option<(String, String)> {
    let uid = uid.trim().to_ascii_lowercase();
    let plausible = !uid.is_empty()
        && uid
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    plausible.then(|| (uid.replace('_', "-"), uid.replace('-', "_")))
}

#[cfg(test)]
mod tests {
    use super::*;

    const UID: &str = "0b6f1a2c-3d4e-4f50-8a9b-0c1d2e3f4a5b";

    #[test]
    fn cgroupfs_driver_paths_match() {
        for path in [
            "/kubepods/besteffort/pod0b6f1a2c-3d4e-4f50-8a9b-0c1d2e3f4a5b/4f1c0e9a",
            "/kubepods/burstable/pod0b6f1a2c-3d4e-4f50-8a9b-0c1d2e3f4a5b/4f1c0e9a",
            "/kubepods/pod0b6f1a2c-3d4e-4f50-8a9b-0c1d2e3f4a5b/4f1c0e9a",
            "/kubepods/pod0b6f1a2c-3d4e-4f50-8a9b-0c1d2e3f4a5b",
            "/../../kubepods/besteffort/pod0b6f1a2c-3d4e-4f50-8a9b-0c1d2e3f4a5b/ctr",
        ] {
            assert!(path_is_in_pod(path, UID), "{path}");
        }
    }

    #[test]
    fn systemd_driver_paths_match() {
        for path in [
            "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod0b6f1a2c_3d4e_4f50_8a9b_0c1d2e3f4a5b.slice/cri-containerd-4f1c.scope",
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod0b6f1a2c_3d4e_4f50_8a9b_0c1d2e3f4a5b.slice/crio-4f1c.scope",
            "/kubepods.slice/kubepods-pod0b6f1a2c_3d4e_4f50_8a9b_0c1d2e3f4a5b.slice/docker-4f1c.scope",
            "/kubepods.slice/kubepods-pod0b6f1a2c_3d4e_4f50_8a9b_0c1d2e3f4a5b.slice",
        ] {
            assert!(path_is_in_pod(path, UID), "{path}");
        }
        // The UID may be given in either form, and in upper case.
        let systemd =
            "/kubepods.slice/kubepods-pod0b6f1a2c_3d4e_4f50_8a9b_0c1d2e3f4a5b.slice/x.scope";
        assert!(path_is_in_pod(systemd, &UID.replace('-', "_")));
        assert!(path_is_in_pod(systemd, &UID.to_ascii_uppercase()));
    }

    #[test]
    fn other_pods_and_partial_uids_do_not_match() {
        for path in [
            "/",
            "/kubepods/besteffort/pod1b6f1a2c-3d4e-4f50-8a9b-0c1d2e3f4a5b/ctr",
            // The UID as a prefix of a longer one, or with something glued in front.
            "/kubepods/besteffort/pod0b6f1a2c-3d4e-4f50-8a9b-0c1d2e3f4a5b0/ctr",
            "/kubepods/besteffort/xpod0b6f1a2c-3d4e-4f50-8a9b-0c1d2e3f4a5b/ctr",
            "/kubepods.slice/kubepods-besteffort-pod0b6f1a2c_3d4e_4f50_8a9b_0c1d2e3f4a5b0.slice",
            // The UID without the `pod` marker (e.g. a container id that happens to contain it).
            "/kubepods/besteffort/0b6f1a2c-3d4e-4f50-8a9b-0c1d2e3f4a5b",
            "/system.slice/containerd.service",
        ] {
            assert!(!path_is_in_pod(path, UID), "{path}");
        }
        assert!(!path_is_in_pod("/kubepods/pod/ctr", ""));
        assert!(!path_is_in_pod("/kubepods/poda/b/ctr", "a/b"));
    }

    #[test]
    fn proc_cgroup_files_of_v1_v2_and_hybrid_hosts() {
        let v2 = "0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod0b6f1a2c_3d4e_4f50_8a9b_0c1d2e3f4a5b.slice/cri-containerd-4f1c.scope\n";
        let v1 = "12:pids:/kubepods/besteffort/pod0b6f1a2c-3d4e-4f50-8a9b-0c1d2e3f4a5b/4f1c\n\
                  11:cpu,cpuacct:/kubepods/besteffort/pod0b6f1a2c-3d4e-4f50-8a9b-0c1d2e3f4a5b/4f1c\n\
                  1:name=systemd:/kubepods/besteffort/pod0b6f1a2c-3d4e-4f50-8a9b-0c1d2e3f4a5b/4f1c\n";
        let hybrid =
            "4:memory:/user.slice\n0::/kubepods/pod0b6f1a2c-3d4e-4f50-8a9b-0c1d2e3f4a5b/c\n";
        let host = "4:memory:/user.slice\n1:name=systemd:/init.scope\n0::/init.scope\n";
        assert!(proc_cgroup_is_in_pod(v2, UID));
        assert!(proc_cgroup_is_in_pod(v1, UID));
        assert!(proc_cgroup_is_in_pod(hybrid, UID));
        assert!(!proc_cgroup_is_in_pod(host, UID));
        assert!(!proc_cgroup_is_in_pod("garbage", UID));
    }

    #[test]
    fn pids_are_found_in_a_proc_tree() {
        let root = tempfile::tempdir().unwrap();
        let write = |pid: &str, contents: &str| {
            let dir = root.path().join(pid);
            fs::create_dir(&dir).unwrap();
            fs::write(dir.join("cgroup"), contents).unwrap();
        };
        write("1", "0::/init.scope\n");
        write(
            "4242",
            "0::/kubepods/besteffort/pod0b6f1a2c-3d4e-4f50-8a9b-0c1d2e3f4a5b/ctr\n",
        );
        write(
            "77",
            "0::/kubepods/besteffort/pod0b6f1a2c-3d4e-4f50-8a9b-0c1d2e3f4a5b/pause\n",
        );
        write(
            "self",
            "0::/kubepods/besteffort/pod0b6f1a2c-3d4e-4f50-8a9b-0c1d2e3f4a5b/ctr\n",
        );
        write(
            "900",
            "0::/kubepods/besteffort/pod1b6f1a2c-3d4e-4f50-8a9b-0c1d2e3f4a5b/ctr\n",
        );
        fs::create_dir(root.path().join("55")).unwrap(); // a process that exited mid-scan
        assert_eq!(pids_in_pod(root.path(), UID).unwrap(), vec![77, 4242]);
        assert_eq!(pids_in_pod(root.path(), "").unwrap(), Vec::<u32>::new());
    }
}
