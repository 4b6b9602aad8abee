//! The reconciler's decisions, checked against fake pods and fake targets in milliseconds:
//! start, re-map, end as Gone, wait for an interface, fail one that can never be found, refuse
//! a retry, close with the window and with the capture's limits, resume after a restart, and
//! open `capturePoint: podNetns` targets inside their pod's namespace.

use std::time::Duration;

use capture_spec::{CaptureSpec, CaptureWindow, FileStatus, TargetKey, TargetState, TargetStatus};

use super::fixtures::{at, host, key, spec, Scene, NAMESPACE, NODE};
use super::{Ended, WindowState};
use crate::EndReason;

use WindowState::{Ahead, Open, Over};

fn web_spec() -> CaptureSpec {
    spec(r#"{"podSelector": {"matchLabels": {"app": "web"}}, "duration": "10m"}"#)
}

fn capped_spec() -> CaptureSpec {
    spec(r#"{"podSelector": {"matchLabels": {"app": "web"}}, "maxPackets": 10}"#)
}

/// (pod, segment) pairs, as [`Scene::opened`] lists them.
fn segments(opened: &[(&str, u32)]) -> Vec<(String, u32)> {
    opened
        .iter()
        .map(|(pod, s)| (pod.to_string(), *s))
        .collect()
}

fn files(status: &TargetStatus) -> Vec<&str> {
    status.files.iter().map(|f| f.name.as_str()).collect()
}

fn error_of(status: &TargetStatus) -> &str {
    status.error.as_deref().unwrap_or_default()
}

#[test]
fn every_matching_pod_gets_a_target_and_others_none() {
    let mut scene = Scene::new(
        &web_spec(),
        &[
            ("web-1", "web", 11),
            ("web-2", "web", 12),
            ("db-1", "db", 13),
        ],
    );
    assert_eq!(scene.pass(Open, 0), None);

    assert_eq!(scene.opened(), segments(&[("web-1", 1), ("web-2", 1)]));
    assert_eq!(scene.opener.opened.borrow()[0].host_interface, "veth-web-1");
    let keys: Vec<TargetKey> = scene.run.entries().map(TargetStatus::key).collect();
    assert_eq!(keys, [key("web-1"), key("web-2")]);
    assert!(scene
        .run
        .entries()
        .all(|t| t.state == TargetState::Capturing && t.namespace == NAMESPACE));
    // A second pass changes nothing.
    scene.pass(Open, 1);
    assert_eq!(scene.opened().len(), 2);
}

#[test]
fn a_pod_that_joins_later_is_captured_and_one_that_goes_ends_as_gone_with_its_files() {
    let mut scene = Scene::new(&web_spec(), &[("web-1", "web", 11)]);
    scene.pass(Open, 0);
    scene.engine("web-1").record(5);

    scene.pods.add("web-2", "web", 12);
    scene.pods.remove("web-1");
    scene.pass(Open, 1);

    assert!(scene.engine("web-1").was_stopped());
    let gone = scene.entry("web-1");
    assert_eq!(gone.state, TargetState::Gone);
    assert_eq!(gone.packets, 5, "a vanished pod's packets are kept");
    assert_eq!(files(gone), ["web-1_s1.pcapng"]);
    assert!(error_of(gone).contains("stopped running"), "{gone:?}");
    assert_eq!(scene.entry("web-2").state, TargetState::Capturing);
    let recording: Vec<&str> = scene.run.running().map(|r| r.host.name.as_str()).collect();
    assert_eq!(recording, ["veth-web-2"]);
}

#[test]
fn a_pod_that_stops_matching_ends_as_gone() {
    let mut scene = Scene::new(&web_spec(), &[("web-1", "web", 11)]);
    scene.pass(Open, 0);
    let labels = &mut scene.pods.get_mut("web-1").labels;
    labels.insert("app".into(), "db".into());
    scene.pass(Open, 1);
    assert_eq!(scene.entry("web-1").state, TargetState::Gone);
    assert!(!scene.run.is_recording());
}

#[test]
fn a_pod_that_comes_back_continues_in_a_new_segment() {
    let mut scene = Scene::new(&web_spec(), &[("web-1", "web", 11)]);
    scene.pass(Open, 0);
    scene.engine("web-1").record(5);
    scene.pods.remove("web-1");
    scene.pass(Open, 1);

    scene.pods.add("web-1", "web", 21);
    scene.pass(Open, 10);
    scene.engine("web-1").record(2);
    scene.pass(Open, 11);

    assert_eq!(scene.opened(), segments(&[("web-1", 1), ("web-1", 2)]));
    let back = scene.entry("web-1");
    assert_eq!(back.state, TargetState::Capturing);
    assert_eq!(back.packets, 7, "both segments' packets count");
    assert_eq!(files(back), ["web-1_s1.pcapng", "web-1_s2.pcapng"]);
    assert_eq!(back.error, None);
}

#[test]
fn a_recreated_pod_is_remapped_into_a_new_segment() {
    let mut scene = Scene::new(&web_spec(), &[("web-1", "web", 11)]);
    scene.pass(Open, 0);
    scene.engine("web-1").record(3);
    let first = scene.engine("web-1");

    // Deleted and created again under the same name between two passes: a new uid.
    let pod = scene.pods.get_mut("web-1");
    pod.uid = "uid-web-1-2".into();
    pod.host = Some(host("veth-web-1b", 31));
    scene.pass(Open, 5);

    assert!(first.was_stopped());
    assert_eq!(scene.opened(), segments(&[("web-1", 1), ("web-1", 2)]));
    assert_eq!(
        scene.opener.opened.borrow()[1].host_interface,
        "veth-web-1b"
    );
    let remapped = scene.entry("web-1");
    assert_eq!(remapped.state, TargetState::Capturing);
    assert_eq!(remapped.packets, 3);
    assert_eq!(files(remapped), ["web-1_s1.pcapng", "web-1_s2.pcapng"]);
}

#[test]
fn a_changed_host_interface_is_remapped_and_reported_until_it_restarts() {
    let mut scene = Scene::new(&web_spec(), &[("web-1", "web", 11)]);
    scene.pass(Open, 0);

    // Same pod, its veth made again (new ifindex); less than RETRY_AFTER since the start.
    scene.pods.get_mut("web-1").host = Some(host("veth-web-1", 41));
    scene.pass(Open, 1);
    let between = scene.entry("web-1");
    assert_eq!(between.state, TargetState::Gone);
    assert!(error_of(between).contains("host interface changed"));
    assert_eq!(scene.opened().len(), 1, "not retried within RETRY_AFTER");

    scene.pass(Open, 4);
    assert_eq!(scene.opened()[1], ("web-1".to_string(), 2));
    assert_eq!(scene.entry("web-1").state, TargetState::Capturing);
}

#[test]
fn a_pod_whose_interface_is_not_found_waits_and_is_retried_after_a_pause() {
    let mut scene = Scene::new(&web_spec(), &[("web-1", "web", 11)]);
    scene.pods.get_mut("web-1").host = None;

    scene.pass(Open, 0);
    let waiting = scene.entry("web-1");
    assert_eq!(waiting.state, TargetState::Waiting);
    assert!(error_of(waiting).contains("no host route"));

    scene.pods.get_mut("web-1").host = Some(host("veth-web-1", 11));
    scene.pass(Open, 2);
    assert!(scene.opened().is_empty(), "tried again too soon");
    scene.pass(Open, 3);
    assert_eq!(scene.entry("web-1").state, TargetState::Capturing);
    assert_eq!(scene.entry("web-1").error, None);
}

/// What a hostNetwork pod's locate says (cluster/pods.rs has the real text).
const NO_INTERFACE: &str = "pod shop/on-host uses the node's network namespace (hostNetwork: true)";

#[test]
fn a_pod_whose_interface_can_never_be_found_fails_alone_and_is_not_tried_again() {
    let mut scene = Scene::new(
        &web_spec(),
        &[
            ("web-1", "web", 11),
            ("on-host", "web", 12),
            ("web-2", "web", 13),
        ],
    );
    scene.pods.get_mut("on-host").never = Some(NO_INTERFACE.into());

    scene.pass(Open, 0);
    let failed = scene.entry("on-host");
    assert_eq!(failed.state, TargetState::Failed);
    assert_eq!(error_of(failed), NO_INTERFACE);
    assert_eq!(scene.entry("web-1").state, TargetState::Capturing);
    assert_eq!(scene.entry("web-2").state, TargetState::Capturing);

    // Well past RETRY_AFTER, and on every later pass: not looked for again, still Failed with
    // its reason, and the others record on.
    for seconds in [3, 4, 10, 60] {
        scene.pass(Open, seconds);
    }
    assert_eq!(scene.lookups("on-host"), 1);
    assert_eq!(scene.opened(), segments(&[("web-1", 1), ("web-2", 1)]));
    let failed = scene.entry("on-host");
    assert_eq!(failed.state, TargetState::Failed);
    assert_eq!(error_of(failed), NO_INTERFACE);
    assert!(!scene.engine("web-1").was_stopped());
    assert_eq!(scene.entry("web-2").state, TargetState::Capturing);

    // The window's end completes the others and leaves it as it failed.
    assert_eq!(scene.pass(Over, 600), Some(Ended::Window));
    assert_eq!(scene.entry("on-host").state, TargetState::Failed);
    assert_eq!(scene.entry("web-1").state, TargetState::Completed);
}

#[test]
fn pod_netns_targets_open_inside_the_pods_namespace_and_host_veth_ones_on_the_host() {
    let mut on_host = Scene::new(&web_spec(), &[("web-1", "web", 11)]);
    on_host.pass(Open, 0);
    assert_eq!(on_host.opener.opened.borrow()[0].pod_netns, None);

    let inside =
        spec(r#"{"podSelector": {"matchLabels": {"app": "web"}}, "capturePoint": "podNetns"}"#);
    let mut scene = Scene::new(&inside, &[("web-1", "web", 11), ("web-2", "web", 12)]);
    scene.pass(Open, 0);
    let opened = scene.opener.opened.borrow().clone();
    assert_eq!(opened.len(), 2);
    assert_eq!(
        opened[0].pod_netns.as_deref(),
        Some(std::path::Path::new("/proc/11/ns/net"))
    );
    // The host end is still found: it names the target's interface when it goes away.
    assert_eq!(opened[0].host_interface, "veth-web-1");
    assert_eq!(scene.entry("web-2").state, TargetState::Capturing);
}

#[test]
fn a_pod_netns_target_waits_for_the_namespace_and_fails_when_it_can_never_enter() {
    const NO_PRIVILEGES: &str = "capturePoint podNetns needs the netns-fallback overlay";
    let inside =
        spec(r#"{"podSelector": {"matchLabels": {"app": "web"}}, "capturePoint": "podNetns"}"#);
    let mut scene = Scene::new(&inside, &[("web-1", "web", 11), ("web-2", "web", 12)]);
    let found = scene.pods.get_mut("web-1").netns.take();
    scene.pods.get_mut("web-2").netns_never = Some(NO_PRIVILEGES.into());

    scene.pass(Open, 0);
    let waiting = scene.entry("web-1");
    assert_eq!(waiting.state, TargetState::Waiting);
    assert!(
        error_of(waiting).contains("no process of web-1"),
        "{waiting:?}"
    );
    let failed = scene.entry("web-2");
    assert_eq!(failed.state, TargetState::Failed);
    assert_eq!(error_of(failed), NO_PRIVILEGES);
    assert!(scene.opened().is_empty());

    scene.pods.get_mut("web-1").netns = found;
    for seconds in [3, 10] {
        scene.pass(Open, seconds);
    }
    assert_eq!(scene.entry("web-1").state, TargetState::Capturing);
    assert_eq!(scene.entry("web-1").error, None);
    assert_eq!(scene.entry("web-2").state, TargetState::Failed);
    assert_eq!(
        scene.lookups("web-2"),
        1,
        "a permanent refusal is not tried again"
    );
    assert_eq!(scene.opened(), segments(&[("web-1", 1)]));
}

#[test]
fn a_pod_not_found_yet_waits_through_several_tries_then_captures() {
    let mut scene = Scene::new(&web_spec(), &[("web-1", "web", 11), ("web-2", "web", 12)]);
    let found = scene.pods.get_mut("web-2").host.take();

    // Tried once per RETRY_AFTER, Waiting with why each time; web-1 records meanwhile.
    for seconds in [0, 1, 3, 5, 6] {
        scene.pass(Open, seconds);
        let waiting = scene.entry("web-2");
        assert_eq!(waiting.state, TargetState::Waiting, "at {seconds} s");
        assert!(error_of(waiting).contains("no host route"), "{waiting:?}");
    }
    assert_eq!(scene.lookups("web-2"), 3, "at 0, 3 and 6 s");
    assert_eq!(scene.entry("web-1").state, TargetState::Capturing);

    // The CNI has wired it: the next try captures it, and the reason is gone.
    scene.pods.get_mut("web-2").host = found;
    scene.pass(Open, 9);
    let capturing = scene.entry("web-2");
    assert_eq!(capturing.state, TargetState::Capturing);
    assert_eq!(capturing.error, None);
    assert_eq!(scene.opened(), segments(&[("web-1", 1), ("web-2", 1)]));
}

#[test]
fn a_waiting_pod_that_goes_away_ends_as_gone() {
    let mut scene = Scene::new(&web_spec(), &[("web-1", "web", 11)]);
    scene.pods.get_mut("web-1").host = None;
    scene.pass(Open, 0);
    scene.pods.remove("web-1");
    scene.pass(Open, 1);
    assert_eq!(scene.entry("web-1").state, TargetState::Gone);
}

#[test]
fn a_target_that_cannot_open_fails_and_is_not_retried_in_the_window() {
    let mut scene = Scene::new(&web_spec(), &[("web-1", "web", 11), ("web-2", "web", 12)]);
    scene.opener.refuse.borrow_mut().insert("web-1".into());

    scene.pass(Open, 0);
    let failed = scene.entry("web-1");
    assert_eq!(failed.state, TargetState::Failed);
    assert!(error_of(failed).contains("no such device"));
    let other = scene.entry("web-2").state;
    assert_eq!(other, TargetState::Capturing, "others carry on");

    scene.opener.refuse.borrow_mut().clear();
    scene.pass(Open, 60);
    assert_eq!(scene.opened(), segments(&[("web-2", 1)]));
    assert_eq!(scene.entry("web-1").state, TargetState::Failed);
}

#[test]
fn a_target_that_ends_by_itself_keeps_its_state_and_only_gone_ones_restart() {
    let mut scene = Scene::new(&web_spec(), &[("web-1", "web", 11), ("web-2", "web", 12)]);
    scene.pass(Open, 0);

    // web-1's interface vanished under its engine; web-2's engine completed on its own.
    scene.engine("web-1").end_by_itself(TargetState::Gone);
    scene.engine("web-2").end_by_itself(TargetState::Completed);
    scene.pass(Open, 1);
    assert_eq!(scene.entry("web-1").state, TargetState::Gone);
    assert_eq!(error_of(scene.entry("web-1")), "interface went away");
    assert_eq!(scene.entry("web-2").state, TargetState::Completed);

    // The pods are still listed: the Gone one starts again, the Completed one does not.
    scene.pass(Open, 10);
    assert_eq!(
        scene.opened(),
        segments(&[("web-1", 1), ("web-2", 1), ("web-1", 2)])
    );
}

#[test]
fn pods_that_cannot_be_listed_leave_running_targets_alone() {
    let mut scene = Scene::new(&web_spec(), &[("web-1", "web", 11)]);
    scene.pass(Open, 0);
    scene.pods.unknown = true;
    scene.pass(Open, 1);
    assert!(!scene.engine("web-1").was_stopped());
    assert_eq!(scene.entry("web-1").state, TargetState::Capturing);
}

#[test]
fn the_window_closing_completes_every_target_and_waiting_entry() {
    let mut scene = Scene::new(&web_spec(), &[("web-1", "web", 11), ("web-2", "web", 12)]);
    scene.pods.get_mut("web-2").host = None;
    scene.pass(Open, 0);
    scene.engine("web-1").record(4);

    assert_eq!(scene.pass(Over, 600), Some(Ended::Window));
    assert!(scene.engine("web-1").was_stopped());
    assert!(!scene.run.is_recording());
    assert_eq!(scene.entry("web-1").state, TargetState::Completed);
    assert_eq!(scene.entry("web-1").packets, 4);
    assert_eq!(scene.entry("web-2").state, TargetState::Completed);
    // And nothing starts again afterwards.
    scene.pass(Over, 601);
    assert_eq!(scene.opened().len(), 1);
}

#[test]
fn nothing_starts_before_the_window() {
    let mut scene = Scene::new(&web_spec(), &[("web-1", "web", 11)]);
    assert_eq!(scene.pass(Ahead, 0), None);
    assert!(scene.opened().is_empty());
    assert_eq!(scene.run.entries().count(), 0);
}

#[test]
fn max_packets_is_shared_by_the_capture_and_ends_it_here() {
    let mut scene = Scene::new(
        &capped_spec(),
        &[("web-1", "web", 11), ("web-2", "web", 12)],
    );
    scene.pass(Open, 0);

    scene.engine("web-1").record(6);
    scene.engine("web-2").record(6);
    assert_eq!(
        scene.pass(Open, 1),
        Some(Ended::Limit(EndReason::PacketLimit))
    );
    let total: u64 = scene.run.entries().map(|t| t.packets).sum();
    assert_eq!(total, 10, "the limit holds across the capture's pods");
    assert!(scene
        .run
        .entries()
        .all(|t| t.state == TargetState::Completed));
    assert!(!scene.run.is_recording());
}

/// An entry an earlier process reported: `pod` on `node`, Capturing, one file of 5 packets.
fn earlier_entry(pod: &str, node: &str) -> TargetStatus {
    let name = format!("{pod}_s1.pcapng");
    TargetStatus {
        node: node.into(),
        namespace: NAMESPACE.into(),
        pod: pod.into(),
        interface: "eth0".into(),
        state: TargetState::Capturing,
        packets: 5,
        bytes: 500,
        files: vec![FileStatus {
            id: name.clone(),
            name,
            packets: 5,
            ..FileStatus::default()
        }],
        ..TargetStatus::default()
    }
}

#[test]
fn a_resumed_run_counts_earlier_segments_against_its_limit() {
    let earlier = [earlier_entry("web-1", NODE), earlier_entry("web-2", NODE)];
    let scene = Scene::resumed(&capped_spec(), &[], &earlier);
    assert_eq!(scene.run.limit_reached(), Some(EndReason::PacketLimit));
}

#[test]
fn a_restart_resumes_present_pods_in_new_segments_and_ends_absent_ones() {
    let earlier = [
        earlier_entry("web-1", NODE),
        earlier_entry("web-2", NODE),
        earlier_entry("web-9", "node-b"),
    ];
    let mut scene = Scene::resumed(&web_spec(), &[("web-1", "web", 11)], &earlier);
    scene.pass(Open, 0);

    assert_eq!(scene.opened(), segments(&[("web-1", 2)]));
    let resumed = scene.entry("web-1");
    assert_eq!(resumed.state, TargetState::Capturing);
    assert_eq!(resumed.packets, 5);
    assert_eq!(files(resumed), ["web-1_s1.pcapng", "web-1_s2.pcapng"]);
    let absent = scene.entry("web-2");
    assert_eq!(absent.state, TargetState::Gone);
    assert_eq!(files(absent), ["web-2_s1.pcapng"], "its files are kept");
    assert!(
        scene.run.entries().all(|t| t.node == NODE),
        "another node's entries are its own"
    );
}

#[test]
fn stopping_ends_every_target_and_waiting_entry() {
    let mut scene = Scene::new(&web_spec(), &[("web-1", "web", 11), ("web-2", "web", 12)]);
    scene.pods.get_mut("web-2").host = None;
    scene.pass(Open, 0);

    scene.run.end(TargetState::Stopped);
    assert!(scene.engine("web-1").was_stopped());
    assert_eq!(scene.entry("web-1").state, TargetState::Stopped);
    assert_eq!(scene.entry("web-2").state, TargetState::Stopped);
}

#[test]
fn suspending_drains_targets_but_leaves_them_for_the_next_process() {
    let mut scene = Scene::new(&web_spec(), &[("web-1", "web", 11)]);
    scene.pass(Open, 0);
    scene.run.suspend();
    assert!(scene.engine("web-1").was_stopped());
    assert!(!scene.run.is_recording());
    assert_eq!(scene.entry("web-1").state, TargetState::Capturing);
}

#[test]
fn report_into_replaces_entries_in_place_and_appends_new_ones() {
    let mut scene = Scene::new(&web_spec(), &[("web-1", "web", 11), ("web-2", "web", 12)]);
    scene.pass(Open, 0);

    let other_node = earlier_entry("web-9", "node-b");
    let stale_web_2 = TargetStatus {
        state: TargetState::Waiting,
        ..scene.entry("web-2").clone()
    };
    let mut targets = vec![other_node.clone(), stale_web_2];
    scene.run.report_into(&mut targets);
    let order: Vec<(&str, TargetState)> =
        targets.iter().map(|t| (t.pod.as_str(), t.state)).collect();
    assert_eq!(
        order,
        [
            ("web-9", TargetState::Capturing),
            ("web-2", TargetState::Capturing),
            ("web-1", TargetState::Capturing)
        ]
    );
    assert_eq!(targets[0], other_node);
}

#[test]
fn where_now_is_in_the_window() {
    let spec = spec(r#"{"startTime": "2025-06-01T02:00:10Z", "duration": "10s"}"#);
    let window = CaptureWindow::of(&spec, at(0), Duration::from_secs(3600));
    let states = [9, 10, 19, 20].map(|seconds| WindowState::of(&window, at(seconds)));
    assert_eq!(states, [Ahead, Open, Open, Over]);
}
