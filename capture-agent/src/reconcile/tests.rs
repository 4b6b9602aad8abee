//! The reconciler's decisions, checked against fake pods and fake targets in milliseconds:
//! start, re-map, end as Gone, wait for an interface, refuse a retry, close with the window
//! and with the capture's limits, resume after a restart.

use capture_spec::{CaptureSpec, FileStatus, TargetKey, TargetState, TargetStatus};

use super::fixtures::{at, host, key, spec, FakeOpener, FakePods, FakeTarget, NAMESPACE, NODE};
use super::{CaptureRun, Ended, WindowState};
use crate::EndReason;

use WindowState::{Ahead, Open, Over};

fn web_spec() -> CaptureSpec {
    spec(r#"{"podSelector": {"matchLabels": {"app": "web"}}, "duration": "10m"}"#)
}

fn run_of(spec: &CaptureSpec, earlier: &[TargetStatus]) -> CaptureRun<FakeTarget> {
    CaptureRun::resume(NAMESPACE, "cap", spec, NODE, "/nonexistent".into(), earlier)
}

fn entry<'a>(run: &'a CaptureRun<FakeTarget>, pod: &str) -> &'a TargetStatus {
    run.entries()
        .find(|t| t.key() == key(pod))
        .unwrap_or_else(|| panic!("no entry for {pod}: {:?}", run.report()))
}

fn files(status: &TargetStatus) -> Vec<&str> {
    status.files.iter().map(|f| f.name.as_str()).collect()
}

#[test]
fn every_matching_pod_gets_a_target_and_others_none() {
    let mut pods = FakePods::default();
    pods.add("web-1", "web", 11);
    pods.add("web-2", "web", 12);
    pods.add("db-1", "db", 13);
    let opener = FakeOpener::default();
    let mut run = run_of(&web_spec(), &[]);

    assert_eq!(run.reconcile(Open, &pods, &opener, at(0)), None);

    assert_eq!(
        opener.log(),
        [("web-1".to_string(), 1), ("web-2".to_string(), 1)]
    );
    assert_eq!(opener.opened.borrow()[0].host_interface, "veth-web-1");
    let keys: Vec<TargetKey> = run.entries().map(TargetStatus::key).collect();
    assert_eq!(keys, [key("web-1"), key("web-2")]);
    assert!(run
        .entries()
        .all(|t| t.state == TargetState::Capturing && t.namespace == NAMESPACE));
    // A second pass changes nothing.
    run.reconcile(Open, &pods, &opener, at(1));
    assert_eq!(opener.log().len(), 2);
}

#[test]
fn a_pod_that_joins_later_is_captured_and_one_that_goes_ends_as_gone_with_its_files() {
    let mut pods = FakePods::default();
    pods.add("web-1", "web", 11);
    let opener = FakeOpener::default();
    let mut run = run_of(&web_spec(), &[]);
    run.reconcile(Open, &pods, &opener, at(0));
    opener.engine("web-1").record(5);

    pods.add("web-2", "web", 12);
    pods.remove("web-1");
    run.reconcile(Open, &pods, &opener, at(1));

    assert!(opener.engine("web-1").was_stopped());
    let gone = entry(&run, "web-1");
    assert_eq!(gone.state, TargetState::Gone);
    assert_eq!(gone.packets, 5, "a vanished pod's packets are kept");
    assert_eq!(files(gone), ["web-1_s1.pcapng"]);
    assert!(gone.error.as_deref().unwrap().contains("stopped running"));
    assert_eq!(entry(&run, "web-2").state, TargetState::Capturing);
    let recording: Vec<&str> = run.running().map(|r| r.host.name.as_str()).collect();
    assert_eq!(recording, ["veth-web-2"]);
}

#[test]
fn a_pod_that_stops_matching_ends_as_gone() {
    let mut pods = FakePods::default();
    pods.add("web-1", "web", 11);
    let opener = FakeOpener::default();
    let mut run = run_of(&web_spec(), &[]);
    run.reconcile(Open, &pods, &opener, at(0));
    pods.get_mut("web-1")
        .labels
        .insert("app".into(), "db".into());
    run.reconcile(Open, &pods, &opener, at(1));
    assert_eq!(entry(&run, "web-1").state, TargetState::Gone);
    assert!(!run.is_recording());
}

#[test]
fn a_pod_that_comes_back_continues_in_a_new_segment() {
    let mut pods = FakePods::default();
    pods.add("web-1", "web", 11);
    let opener = FakeOpener::default();
    let mut run = run_of(&web_spec(), &[]);
    run.reconcile(Open, &pods, &opener, at(0));
    opener.engine("web-1").record(5);
    pods.remove("web-1");
    run.reconcile(Open, &pods, &opener, at(1));

    pods.add("web-1", "web", 21);
    run.reconcile(Open, &pods, &opener, at(10));
    opener.engine("web-1").record(2);
    run.reconcile(Open, &pods, &opener, at(11));

    assert_eq!(
        opener.log(),
        [("web-1".to_string(), 1), ("web-1".to_string(), 2)]
    );
    let back = entry(&run, "web-1");
    assert_eq!(back.state, TargetState::Capturing);
    assert_eq!(back.packets, 7, "both segments' packets count");
    assert_eq!(files(back), ["web-1_s1.pcapng", "web-1_s2.pcapng"]);
    assert_eq!(back.error, None);
}

#[test]
fn a_recreated_pod_is_remapped_into_a_new_segment() {
    let mut pods = FakePods::default();
    pods.add("web-1", "web", 11);
    let opener = FakeOpener::default();
    let mut run = run_of(&web_spec(), &[]);
    run.reconcile(Open, &pods, &opener, at(0));
    opener.engine("web-1").record(3);
    let first = opener.engine("web-1");

    // Deleted and created again under the same name between two passes: a new uid.
    pods.get_mut("web-1").uid = "uid-web-1-2".into();
    pods.get_mut("web-1").host = Some(host("veth-web-1b", 31));
    run.reconcile(Open, &pods, &opener, at(5));

    assert!(first.was_stopped());
    assert_eq!(
        opener.log(),
        [("web-1".to_string(), 1), ("web-1".to_string(), 2)]
    );
    assert_eq!(opener.opened.borrow()[1].host_interface, "veth-web-1b");
    let remapped = entry(&run, "web-1");
    assert_eq!(remapped.state, TargetState::Capturing);
    assert_eq!(remapped.packets, 3);
    assert_eq!(files(remapped), ["web-1_s1.pcapng", "web-1_s2.pcapng"]);
}

#[test]
fn a_changed_host_interface_is_remapped_and_reported_until_it_restarts() {
    let mut pods = FakePods::default();
    pods.add("web-1", "web", 11);
    let opener = FakeOpener::default();
    let mut run = run_of(&web_spec(), &[]);
    run.reconcile(Open, &pods, &opener, at(0));

    // Same pod, its veth made again (new ifindex); less than RETRY_AFTER since the start.
    pods.get_mut("web-1").host = Some(host("veth-web-1", 41));
    run.reconcile(Open, &pods, &opener, at(1));
    let between = entry(&run, "web-1");
    assert_eq!(between.state, TargetState::Gone);
    assert!(between
        .error
        .as_deref()
        .unwrap()
        .contains("host interface changed"));
    assert_eq!(opener.log().len(), 1, "not retried within RETRY_AFTER");

    run.reconcile(Open, &pods, &opener, at(4));
    assert_eq!(opener.log()[1], ("web-1".to_string(), 2));
    assert_eq!(entry(&run, "web-1").state, TargetState::Capturing);
}

#[test]
fn a_pod_whose_interface_is_not_found_waits_and_is_retried_after_a_pause() {
    let mut pods = FakePods::default();
    pods.add("web-1", "web", 11);
    pods.get_mut("web-1").host = None;
    let opener = FakeOpener::default();
    let mut run = run_of(&web_spec(), &[]);

    run.reconcile(Open, &pods, &opener, at(0));
    let waiting = entry(&run, "web-1");
    assert_eq!(waiting.state, TargetState::Waiting);
    assert!(waiting.error.as_deref().unwrap().contains("no host route"));

    pods.get_mut("web-1").host = Some(host("veth-web-1", 11));
    run.reconcile(Open, &pods, &opener, at(2));
    assert!(opener.log().is_empty(), "tried again too soon");
    run.reconcile(Open, &pods, &opener, at(3));
    assert_eq!(entry(&run, "web-1").state, TargetState::Capturing);
    assert_eq!(entry(&run, "web-1").error, None);
}

#[test]
fn a_waiting_pod_that_goes_away_ends_as_gone() {
    let mut pods = FakePods::default();
    pods.add("web-1", "web", 11);
    pods.get_mut("web-1").host = None;
    let opener = FakeOpener::default();
    let mut run = run_of(&web_spec(), &[]);
    run.reconcile(Open, &pods, &opener, at(0));
    pods.remove("web-1");
    run.reconcile(Open, &pods, &opener, at(1));
    assert_eq!(entry(&run, "web-1").state, TargetState::Gone);
}

#[test]
fn a_target_that_cannot_open_fails_and_is_not_retried_in_the_window() {
    let mut pods = FakePods::default();
    pods.add("web-1", "web", 11);
    pods.add("web-2", "web", 12);
    let opener = FakeOpener::default();
    opener.refuse.borrow_mut().insert("web-1".into());
    let mut run = run_of(&web_spec(), &[]);

    run.reconcile(Open, &pods, &opener, at(0));
    let failed = entry(&run, "web-1");
    assert_eq!(failed.state, TargetState::Failed);
    assert!(failed.error.as_deref().unwrap().contains("no such device"));
    assert_eq!(
        entry(&run, "web-2").state,
        TargetState::Capturing,
        "others carry on"
    );

    opener.refuse.borrow_mut().clear();
    run.reconcile(Open, &pods, &opener, at(60));
    assert_eq!(opener.log(), [("web-2".to_string(), 1)]);
    assert_eq!(entry(&run, "web-1").state, TargetState::Failed);
}

#[test]
fn a_target_that_ends_by_itself_keeps_its_state_and_only_gone_ones_restart() {
    let mut pods = FakePods::default();
    pods.add("web-1", "web", 11);
    pods.add("web-2", "web", 12);
    let opener = FakeOpener::default();
    let mut run = run_of(&web_spec(), &[]);
    run.reconcile(Open, &pods, &opener, at(0));

    // web-1's interface vanished under its engine; web-2's engine completed on its own.
    opener.engine("web-1").end_by_itself(TargetState::Gone);
    opener.engine("web-2").end_by_itself(TargetState::Completed);
    run.reconcile(Open, &pods, &opener, at(1));
    assert_eq!(entry(&run, "web-1").state, TargetState::Gone);
    assert_eq!(
        entry(&run, "web-1").error.as_deref(),
        Some("interface went away")
    );
    assert_eq!(entry(&run, "web-2").state, TargetState::Completed);

    // The pods are still listed: the Gone one starts again, the Completed one does not.
    run.reconcile(Open, &pods, &opener, at(10));
    assert_eq!(
        opener.log(),
        [
            ("web-1".to_string(), 1),
            ("web-2".to_string(), 1),
            ("web-1".to_string(), 2)
        ]
    );
}

#[test]
fn pods_that_cannot_be_listed_leave_running_targets_alone() {
    let mut pods = FakePods::default();
    pods.add("web-1", "web", 11);
    let opener = FakeOpener::default();
    let mut run = run_of(&web_spec(), &[]);
    run.reconcile(Open, &pods, &opener, at(0));
    pods.unknown = true;
    run.reconcile(Open, &pods, &opener, at(1));
    assert!(!opener.engine("web-1").was_stopped());
    assert_eq!(entry(&run, "web-1").state, TargetState::Capturing);
}

#[test]
fn the_window_closing_completes_every_target_and_waiting_entry() {
    let mut pods = FakePods::default();
    pods.add("web-1", "web", 11);
    pods.add("web-2", "web", 12);
    pods.get_mut("web-2").host = None;
    let opener = FakeOpener::default();
    let mut run = run_of(&web_spec(), &[]);
    run.reconcile(Open, &pods, &opener, at(0));
    opener.engine("web-1").record(4);

    assert_eq!(
        run.reconcile(Over, &pods, &opener, at(600)),
        Some(Ended::Window)
    );
    assert!(opener.engine("web-1").was_stopped());
    assert!(!run.is_recording());
    assert_eq!(entry(&run, "web-1").state, TargetState::Completed);
    assert_eq!(entry(&run, "web-1").packets, 4);
    assert_eq!(entry(&run, "web-2").state, TargetState::Completed);
    // And nothing starts again afterwards.
    run.reconcile(Over, &pods, &opener, at(601));
    assert_eq!(opener.log().len(), 1);
}

#[test]
fn nothing_starts_before_the_window() {
    let mut pods = FakePods::default();
    pods.add("web-1", "web", 11);
    let opener = FakeOpener::default();
    let mut run = run_of(&web_spec(), &[]);
    assert_eq!(run.reconcile(Ahead, &pods, &opener, at(0)), None);
    assert!(opener.log().is_empty());
    assert_eq!(run.entries().count(), 0);
}

#[test]
fn max_packets_is_shared_by_the_capture_and_ends_it_here() {
    let mut pods = FakePods::default();
    pods.add("web-1", "web", 11);
    pods.add("web-2", "web", 12);
    let opener = FakeOpener::default();
    let capped = spec(r#"{"podSelector": {"matchLabels": {"app": "web"}}, "maxPackets": 10}"#);
    let mut run = run_of(&capped, &[]);
    run.reconcile(Open, &pods, &opener, at(0));

    opener.engine("web-1").record(6);
    opener.engine("web-2").record(6);
    assert_eq!(
        run.reconcile(Open, &pods, &opener, at(1)),
        Some(Ended::Limit(EndReason::PacketLimit))
    );
    let total: u64 = run.entries().map(|t| t.packets).sum();
    assert_eq!(total, 10, "the limit holds across the capture's pods");
    assert!(run.entries().all(|t| t.state == TargetState::Completed));
    assert!(!run.is_recording());
}

#[test]
fn a_resumed_run_counts_earlier_segments_against_its_limit() {
    let earlier = TargetStatus {
        node: NODE.into(),
        namespace: NAMESPACE.into(),
        pod: "web-1".into(),
        interface: "eth0".into(),
        state: TargetState::Capturing,
        packets: 10,
        bytes: 1000,
        ..TargetStatus::default()
    };
    let capped = spec(r#"{"podSelector": {"matchLabels": {"app": "web"}}, "maxPackets": 10}"#);
    let run = run_of(&capped, &[earlier]);
    assert_eq!(run.limit_reached(), Some(EndReason::PacketLimit));
}

#[test]
fn a_restart_resumes_present_pods_in_new_segments_and_ends_absent_ones() {
    let file = |name: &str| FileStatus {
        id: name.into(),
        name: name.into(),
        packets: 5,
        ..FileStatus::default()
    };
    let earlier_entry = |pod: &str, node: &str| TargetStatus {
        node: node.into(),
        namespace: NAMESPACE.into(),
        pod: pod.into(),
        interface: "eth0".into(),
        state: TargetState::Capturing,
        packets: 5,
        bytes: 500,
        files: vec![file(&format!("{pod}_s1.pcapng"))],
        ..TargetStatus::default()
    };
    let earlier = [
        earlier_entry("web-1", NODE),
        earlier_entry("web-2", NODE),
        earlier_entry("web-9", "node-b"),
    ];
    let mut pods = FakePods::default();
    pods.add("web-1", "web", 11);
    let opener = FakeOpener::default();
    let mut run = run_of(&web_spec(), &earlier);
    run.reconcile(Open, &pods, &opener, at(0));

    assert_eq!(opener.log(), [("web-1".to_string(), 2)]);
    let resumed = entry(&run, "web-1");
    assert_eq!(resumed.state, TargetState::Capturing);
    assert_eq!(resumed.packets, 5);
    assert_eq!(files(resumed), ["web-1_s1.pcapng", "web-1_s2.pcapng"]);
    let absent = entry(&run, "web-2");
    assert_eq!(absent.state, TargetState::Gone);
    assert_eq!(files(absent), ["web-2_s1.pcapng"], "its files are kept");
    assert!(
        run.entries().all(|t| t.node == NODE),
        "another node's entries are its own"
    );
}

#[test]
fn stopping_and_suspending_drain_every_target() {
    let mut pods = FakePods::default();
    pods.add("web-1", "web", 11);
    pods.add("web-2", "web", 12);
    pods.get_mut("web-2").host = None;
    let opener = FakeOpener::default();
    let mut run = run_of(&web_spec(), &[]);
    run.reconcile(Open, &pods, &opener, at(0));

    let mut suspended = run_of(&web_spec(), &[]);
    suspended.reconcile(Open, &pods, &opener, at(0));
    suspended.suspend();
    assert!(!suspended.is_recording());
    assert_eq!(
        entry(&suspended, "web-1").state,
        TargetState::Capturing,
        "the next process resumes it"
    );

    run.end(TargetState::Stopped);
    assert!(opener.engine("web-1").was_stopped());
    assert_eq!(entry(&run, "web-1").state, TargetState::Stopped);
    assert_eq!(entry(&run, "web-2").state, TargetState::Stopped);
}

#[test]
fn report_into_replaces_entries_in_place_and_appends_new_ones() {
    let mut pods = FakePods::default();
    pods.add("web-1", "web", 11);
    pods.add("web-2", "web", 12);
    let opener = FakeOpener::default();
    let mut run = run_of(&web_spec(), &[]);
    run.reconcile(Open, &pods, &opener, at(0));

    let other_node = TargetStatus {
        node: "node-b".into(),
        pod: "web-9".into(),
        interface: "eth0".into(),
        ..TargetStatus::default()
    };
    let stale_web_2 = TargetStatus {
        state: TargetState::Waiting,
        ..entry(&run, "web-2").clone()
    };
    let mut targets = vec![other_node.clone(), stale_web_2];
    run.report_into(&mut targets);
    let order: Vec<(&str, TargetState)> =
        targets.iter().map(|t| (t.pod.as_str(), t.state)).collect();
    assert_eq!(
        order,
        [
            ("web-9", TargetState::Waiting),
            ("web-2", TargetState::Capturing),
            ("web-1", TargetState::Capturing)
        ]
    );
    assert_eq!(targets[0], other_node);
}
