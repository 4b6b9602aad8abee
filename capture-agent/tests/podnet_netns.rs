//! podnet's netns fallback against the real kernel: a process runs in the pod's network
//! namespace and in a real cgroup named like the kubelet names pod cgroups (cgroupfs driver in the
//! cgroup v2 hierarchy, systemd driver in a v1 one where the host has it); resolving the pod UID
//! finds the process, enters its namespace and names the pod's host veth. The same check maps
//! standalone mode's pods (named namespaces in /var/run/netns) to their host veths, and names
//! the pod's namespace file and its own end of the veth (capturePoint podNetns). Needs root
//! (CAP_SYS_ADMIN for setns).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use capture_agent::podnet::{
    namespace_ends, namespace_host_end, pod_namespace, resolve, Method, PodNetwork, Strategies,
    StrategyError,
};
use podcap_testkit::netlab::{cgroup_mounts, Undo};
use podcap_testkit::Pod;

/// A UID of our own per test and process, so no real pod (or parallel test) can match it.
fn test_uid(tag: u16, slot: u8) -> String {
    format!(
        "0b6f1a2c-{:04x}-4{:03x}-8000-{:012x}",
        tag,
        slot,
        std::process::id()
    )
}

fn network(uid: &str, pod: &Pod) -> PodNetwork {
    PodNetwork {
        uid: uid.to_string(),
        ips: vec![pod.pod_v4.into(), pod.pod_v6.into()],
        mac: None,
    }
}

/// Starts `sleep 30` (in the pod's namespace if `netns` is given), waits until it is there,
/// and moves it into the cgroup `dir` (created, and removed on drop). Returns its PID.
fn process_in_cgroup(undo: &mut Undo, netns: Option<&str>, dir: &Path) -> u32 {
    undo.cgroup_dir(dir);
    let mut command = match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, "sleep", "30"]);
            c
        }
        None => {
            let mut c = Command::new("sleep");
            c.arg("30");
            c
        }
    };
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let pid = undo.child(child);
    if let Some(ns) = netns {
        // `ip netns exec` enters the namespace, then execs sleep under the same PID.
        let want = std::fs::metadata(format!("/var/run/netns/{ns}"))
            .unwrap()
            .ino();
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::fs::metadata(format!("/proc/{pid}/ns/net"))
            .map(|m| m.ino())
            .ok()
            != Some(want)
        {
            assert!(
                Instant::now() < deadline,
                "process {pid} never entered {ns}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    std::fs::write(dir.join("cgroup.procs"), pid.to_string()).unwrap();
    pid
}

/// The cgroup v2 hierarchy, or the v1 named one if there is no v2 on this machine.
fn any_hierarchy() -> PathBuf {
    let mounts = cgroup_mounts();
    mounts
        .v2
        .or(mounts.v1_named)
        .expect("a cgroup v2 or named v1 hierarchy is mounted")
}

#[test]
fn cgroupfs_named_pod_resolves_through_its_namespace() {
    let pod = Pod::new();
    let uid = test_uid(1, pod.slot());
    let root = any_hierarchy();
    // Like /kubepods/besteffort/pod<uid>/<container>, under a parent of our own.
    let dir = root
        .join(format!("podcap-test-{}-{}", std::process::id(), pod.slot()))
        .join(format!("kubepods/besteffort/pod{uid}/ctr"));
    let mut undo = Undo::new();
    let pid = process_in_cgroup(&mut undo, Some(&pod.netns), &dir);
    let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    assert!(cgroup.contains(&format!("pod{uid}")), "{cgroup}");

    let found = resolve(&network(&uid, &pod), &Strategies::only(Method::Netns)).unwrap();
    assert_eq!(found.name, pod.host_if);
    assert_eq!(
        found.ifindex,
        nix::net::if_::if_nametoindex(pod.host_if.as_str()).unwrap()
    );
    assert_eq!(found.method, Method::Netns);

    // All strategies: the Pod has no host route (only its /25 and /64) and no bridge (its
    // static neighbour entries are on the veth), so the fallback answers; the route and
    // bridge strategies ran first and found nothing.
    let found = resolve(&network(&uid, &pod), &Strategies::default()).unwrap();
    assert_eq!(
        (found.name.as_str(), found.method),
        (pod.host_if.as_str(), Method::Netns)
    );

    // capturePoint podNetns: the pod's namespace, as the file of its process.
    let netns = pod_namespace(&network(&uid, &pod), &Strategies::only(Method::Netns)).unwrap();
    assert_eq!(netns, PathBuf::from(format!("/proc/{pid}/ns/net")));
    let inode = |path: &Path| std::fs::metadata(path).unwrap().ino();
    assert_eq!(
        inode(&netns),
        inode(Path::new(&format!("/var/run/netns/{}", pod.netns)))
    );
}

#[test]
fn systemd_named_pod_resolves_through_its_namespace() {
    let pod = Pod::new();
    let uid = test_uid(2, pod.slot());
    let mounts = cgroup_mounts();
    // A v1 hierarchy where there is one, to cover hybrid hosts; otherwise v2.
    let root = mounts
        .v1_named
        .or(mounts.v2)
        .expect("a cgroup v2 or named v1 hierarchy is mounted");
    let dir = root
        .join(format!(
            "podcap-test-{}-{}.slice",
            std::process::id(),
            pod.slot()
        ))
        .join("kubepods.slice/kubepods-burstable.slice")
        .join(format!(
            "kubepods-burstable-pod{}.slice",
            uid.replace('-', "_")
        ))
        .join("cri-containerd-4f1c0e9a.scope");
    let mut undo = Undo::new();
    process_in_cgroup(&mut undo, Some(&pod.netns), &dir);

    let found = resolve(&network(&uid, &pod), &Strategies::only(Method::Netns)).unwrap();
    assert_eq!(
        (found.name.as_str(), found.method),
        (pod.host_if.as_str(), Method::Netns)
    );
}

#[test]
fn a_pod_without_processes_is_not_found() {
    let pod = Pod::new();
    let uid = test_uid(3, pod.slot());
    let error = resolve(&network(&uid, &pod), &Strategies::only(Method::Netns)).unwrap_err();
    let message = error.to_string();
    assert!(
        matches!(error.attempts()[0].error, StrategyError::NotFound { .. }),
        "{message}"
    );
    assert!(
        message.contains(&format!("no process in /proc is in a cgroup of pod {uid}")),
        "{message}"
    );
    assert!(message.contains("hostPID"), "{message}");
}

#[test]
fn a_host_network_pod_has_no_veth() {
    // A process in the pod's cgroup but in the host's network namespace: hostNetwork pods.
    let pod = Pod::new();
    let uid = test_uid(4, pod.slot());
    let dir = any_hierarchy()
        .join(format!("podcap-test-{}-{}", std::process::id(), pod.slot()))
        .join(format!("kubepods/pod{uid}/ctr"));
    let mut undo = Undo::new();
    process_in_cgroup(&mut undo, None, &dir);

    let error = resolve(&network(&uid, &pod), &Strategies::only(Method::Netns)).unwrap_err();
    let message = error.to_string();
    assert!(message.contains("host's network namespace"), "{message}");
}

#[test]
fn every_strategy_says_what_it_tried() {
    let pod = Pod::new();
    let uid = test_uid(5, pod.slot());
    let error = resolve(&network(&uid, &pod), &Strategies::default()).unwrap_err();
    let methods: Vec<Method> = error.attempts().iter().map(|a| a.method).collect();
    assert_eq!(methods, [Method::Route, Method::Bridge, Method::Netns]);
    let message = error.to_string();
    println!("{message}");
    assert!(message.contains("[route] no /32 host route"), "{message}");
    assert!(message.contains("[bridge] "), "{message}");
    assert!(
        message.contains(&format!(
            "{}'s neighbour entry is on {} (veth), not a bridge",
            pod.pod_v4, pod.host_if
        )),
        "{message}"
    );
    assert!(message.contains("[netns] no process"), "{message}");
}

/// Standalone mode's pods: a named network namespace (in /var/run/netns) names its host veth,
/// whatever it calls its own end, with no process and no cgroup involved.
#[test]
fn a_named_namespace_names_its_host_veth() {
    let pod = Pod::new();
    let path = PathBuf::from(format!("/var/run/netns/{}", pod.netns));
    let found = namespace_host_end(&path).unwrap();
    assert_eq!(
        (found.name.as_str(), found.ifindex, found.method),
        (
            pod.host_if.as_str(),
            nix::net::if_::if_nametoindex(pod.host_if.as_str()).unwrap(),
            Method::Netns
        )
    );
    let ends = namespace_ends(&path).unwrap();
    assert_eq!(ends.host, found);
    assert_eq!(
        ends.pod_interface, "eth0",
        "the pod's own end, inside the namespace"
    );
}

#[test]
fn a_named_namespace_without_a_veth_has_no_host_end() {
    let pod = Pod::new();
    let bare = format!("pcbare{}", pod.slot());
    let mut undo = Undo::new();
    undo.run(
        "ip",
        &["netns", "add", &bare],
        &["ip", "netns", "del", &bare],
    );
    let error = namespace_host_end(Path::new(&format!("/var/run/netns/{bare}"))).unwrap_err();
    assert!(matches!(error, StrategyError::NotFound { .. }), "{error}");
    assert!(
        error
            .to_string()
            .contains("no interface whose peer is in another namespace"),
        "{error}"
    );
}
