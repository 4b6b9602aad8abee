//! End-to-end tests of schedules against the real `capture-api --standalone` binary over HTTP:
//! a `Forbid` schedule fires on its cron with one capture at a time (a run due while the previous
//! one captures waits for it, as with a CronJob), `Replace` stops the previous run, a schedule
//! keeps only `historyLimit` finished runs (older ones deleted with their files), suspend stops
//! new runs and resume brings them back, bad specs get a problem naming each field, deleting a
//! schedule deletes its captures, and a schedule survives a SIGKILL of the server and keeps
//! firing without making up every run it missed.

mod api_common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use api_common::traffic::burst_from_pod;
use api_common::{Answer, Api, Pod, UdpSink};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

fn schedules(namespace: &str) -> String {
    format!("/api/v1/namespaces/{namespace}/schedules")
}

fn captures(namespace: &str) -> String {
    format!("/api/v1/namespaces/{namespace}/captures")
}

/// PUT with the admin token; the shared harness has no PUT, and only schedules need one.
fn put(api: &Api, path: &str, body: &Value) -> Answer {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    let mut response = agent
        .put(format!("{}{path}", api.base))
        .header("Authorization", format!("Bearer {}", api.token))
        .send_json(body)
        .expect("the request reached the server");
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    Answer {
        status: response.status().as_u16(),
        content_type,
        headers: Vec::new(),
        body: response.body_mut().read_to_vec().expect("reading the body"),
    }
}

fn created(answer: Answer) -> Value {
    assert_eq!(
        answer.status,
        201,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    answer.json()
}

/// The run time a schedule's capture is named after (`{schedule}-{unix seconds}`).
fn run_seconds(schedule: &str, capture: &str) -> Option<i64> {
    capture
        .strip_prefix(schedule)?
        .strip_prefix('-')?
        .parse()
        .ok()
}

/// The captures a schedule made, as listed now, by name.
fn runs_of(api: &Api, namespace: &str, schedule: &str) -> BTreeMap<String, Value> {
    let list = api.get(&captures(namespace)).json();
    list["items"]
        .as_array()
        .unwrap_or_else(|| panic!("{list}"))
        .iter()
        .filter_map(|c| {
            let name = c["metadata"]["name"].as_str()?;
            run_seconds(schedule, name)?;
            Some((name.to_string(), c.clone()))
        })
        .collect()
}

/// Polls `check` every 100 ms until it gives a value; panics with `what` after `within`.
fn wait_for<T>(within: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn time(value: &Value) -> DateTime<Utc> {
    value
        .as_str()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .unwrap_or_else(|| panic!("not an RFC 3339 time: {value}"))
        .with_timezone(&Utc)
}

/// A template that matches no pod: only namespace `default` has pods in standalone mode.
fn idle_template(duration: &str) -> Value {
    json!({"duration": duration})
}

fn packets_on(capture: &Value, pod: &Pod) -> u64 {
    capture["status"]["targets"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["interface"] == pod.host_if.as_str())
        .filter_map(|t| t["packets"].as_u64())
        .sum()
}

#[test]
fn forbid_schedule_fires_one_capture_at_a_time_and_keeps_its_history_limit() {
    let pod = Pod::new();
    let _sink = UdpSink::bind(pod.host_v4.into(), 7700);
    let api = Api::start();
    let schedule = created(api.post(
        &schedules("default"),
        &json!({"metadata": {"name": "every-2s"}, "spec": {
            "schedule": "*/2 * * * * *",
            "concurrencyPolicy": "Forbid",
            "historyLimit": 1,
            "template": {
                "podSelector": {"matchExpressions": [
                    {"key": "podcap.io/netns", "operator": "In", "values": [pod.netns]}
                ]},
                "filters": [{"protocol": "UDP", "ports": [7700]}],
                // Longer than the period, so Forbid has runs to hold back.
                "duration": "3s",
            },
        }}),
    ));
    assert_eq!(schedule["kind"], "PacketCaptureSchedule");
    assert_eq!(schedule["apiVersion"], "podcap.io/v1alpha1");
    let next: Vec<DateTime<Utc>> = schedule["status"]["nextScheduleTimes"]
        .as_array()
        .unwrap_or_else(|| panic!("{schedule}"))
        .iter()
        .map(time)
        .collect();
    assert_eq!(next.len(), 5, "{schedule}");
    assert_eq!(time(&schedule["status"]["nextScheduleTime"]), next[0]);
    assert!(
        next.windows(2).all(|w| (w[1] - w[0]).num_seconds() == 2),
        "every 2 s: {next:?}"
    );

    // Traffic from the pod all along, so every run has something to capture.
    let traffic_on = AtomicBool::new(true);
    let (seen, completed_with_packets) = std::thread::scope(|scope| {
        scope.spawn(|| {
            let destination = SocketAddr::new(pod.host_v4.into(), 7700);
            let deadline = Instant::now() + Duration::from_secs(30);
            while traffic_on.load(Ordering::Relaxed) && Instant::now() < deadline {
                burst_from_pod(&pod, destination, 5, 64);
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        let mut seen = BTreeMap::new();
        let mut completed = BTreeSet::new();
        let mut completed_with_packets = 0;
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            wait_for(Duration::from_secs(15), "two completed runs", || {
                let runs = runs_of(&api, "default", "every-2s");
                let capturing: Vec<&String> = runs
                    .iter()
                    .filter(|(_, c)| c["status"]["phase"] == "Capturing")
                    .map(|(name, _)| name)
                    .collect();
                assert!(
                    capturing.len() <= 1,
                    "Forbid: never two runs capturing at once: {capturing:?}"
                );
                for (name, capture) in &runs {
                    seen.insert(name.clone(), capture.clone());
                    if capture["status"]["phase"] == "Completed" && completed.insert(name.clone()) {
                        completed_with_packets += usize::from(packets_on(capture, &pod) > 0);
                    }
                }
                (completed.len() >= 2).then_some(())
            })
        }));
        traffic_on.store(false, Ordering::Relaxed);
        if let Err(panic) = outcome {
            std::panic::resume_unwind(panic);
        }
        (seen, completed_with_packets)
    });
    // Forbid made a difference: a run due while the previous one captured either waited for it
    // (started late) or was overtaken by the next run time (no capture for it).
    let mut held_back = Vec::new();
    let mut previous_run: Option<i64> = None;
    for (name, capture) in &seen {
        let seconds = run_seconds("every-2s", name).unwrap_or_default();
        assert_eq!(seconds % 2, 0, "runs are on even seconds: {name}");
        let late = time(&capture["spec"]["startTime"]).timestamp_millis() - seconds * 1000;
        let overtaken = previous_run.is_some_and(|previous| seconds - previous > 2);
        if late >= 900 || overtaken {
            held_back.push(name.clone());
        }
        previous_run = Some(seconds);
    }
    assert!(!held_back.is_empty(), "no run was held back: {seen:?}");
    assert!(
        completed_with_packets >= 1,
        "the runs captured the pod's traffic"
    );

    // Suspend by sending back what GET returned, with suspend set.
    let mut object = api
        .get(&format!("{}/every-2s", schedules("default")))
        .json();
    object["spec"]["suspend"] = json!(true);
    let suspended = put(&api, &format!("{}/every-2s", schedules("default")), &object);
    assert_eq!(
        suspended.status,
        200,
        "{}",
        String::from_utf8_lossy(&suspended.body)
    );
    let suspended = suspended.json();
    assert!(
        suspended["status"]["nextScheduleTime"].is_null(),
        "{suspended}"
    );
    assert_eq!(suspended["status"]["nextScheduleTimes"], json!([]));

    // Once the last run has ended, only historyLimit (1) finished capture is left.
    let status = wait_for(Duration::from_secs(10), "one finished run left", || {
        let status = api
            .get(&format!("{}/every-2s", schedules("default")))
            .json()["status"]
            .clone();
        let history = status["history"].as_array().cloned().unwrap_or_default();
        (status["active"] == json!([]) && history.len() == 1).then_some(status)
    });
    let kept = status["history"][0]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert_eq!(status["history"][0]["phase"], "Completed", "{status}");
    assert_eq!(
        time(&status["history"][0]["scheduledFor"]).timestamp(),
        run_seconds("every-2s", &kept).unwrap_or_default()
    );
    assert_eq!(
        time(&status["lastScheduleTime"]).timestamp(),
        run_seconds("every-2s", &kept).unwrap_or_default(),
        "the last run is the one kept: {status}"
    );
    let remaining = runs_of(&api, "default", "every-2s");
    assert_eq!(remaining.keys().collect::<Vec<_>>(), [&kept]);
    assert!(seen.len() >= 2, "{seen:?}");
    for (name, capture) in seen.iter().filter(|(name, _)| **name != kept) {
        let uid = capture["metadata"]["uid"].as_str().unwrap_or_default();
        api.get(&format!("{}/{name}", captures("default")))
            .problem(404);
        let directory = api.data_dir.join("captures").join(uid);
        assert!(!directory.exists(), "{name}'s files are deleted with it");
    }
}

#[test]
fn suspend_stops_new_runs_and_resume_brings_them_back() {
    let api = Api::start();
    let path = format!("{}/ticker", schedules("suspend-test"));
    let spec = |suspend: bool| json!({"schedule": "* * * * * *", "suspend": suspend, "template": idle_template("1s")});
    created(api.post(
        &schedules("suspend-test"),
        &json!({"metadata": {"name": "ticker"}, "spec": spec(false)}),
    ));
    wait_for(Duration::from_secs(5), "a first run", || {
        (!runs_of(&api, "suspend-test", "ticker").is_empty()).then_some(())
    });

    let answer = put(&api, &path, &json!({"spec": spec(true)}));
    assert_eq!(
        answer.status,
        200,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    let suspended_at = Utc::now().timestamp();
    let before: BTreeSet<String> = runs_of(&api, "suspend-test", "ticker")
        .into_keys()
        .collect();
    std::thread::sleep(Duration::from_secs(4));
    let during: BTreeSet<String> = runs_of(&api, "suspend-test", "ticker")
        .into_keys()
        .collect();
    assert!(
        during.is_subset(&before),
        "no new run while suspended: {:?}",
        during.difference(&before).collect::<Vec<_>>()
    );
    let schedule = api.get(&path).json();
    assert_eq!(schedule["spec"]["suspend"], true);
    assert!(
        schedule["status"]["nextScheduleTime"].is_null(),
        "{schedule}"
    );

    let answer = put(&api, &path, &json!({"spec": spec(false)}));
    assert_eq!(
        answer.status,
        200,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    assert!(answer.json()["status"]["nextScheduleTime"].is_string());
    wait_for(Duration::from_secs(5), "a run after resuming", || {
        runs_of(&api, "suspend-test", "ticker")
            .keys()
            .any(|name| run_seconds("ticker", name).unwrap_or_default() > suspended_at)
            .then_some(())
    });
}

#[test]
fn bad_input_gets_a_problem_naming_each_field() {
    let api = Api::start();
    let path = schedules("default");
    let fields_of = |answer: Answer| -> Vec<(String, String)> {
        let problem = answer.problem(422);
        problem["invalidParams"]
            .as_array()
            .unwrap_or_else(|| panic!("{problem}"))
            .iter()
            .map(|p| {
                (
                    p["name"].as_str().unwrap_or_default().to_string(),
                    p["reason"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect()
    };
    let post = |spec: Value| api.post(&path, &json!({"spec": spec}));

    let errors = fields_of(post(
        json!({"schedule": "0 2 * *", "template": idle_template("1m")}),
    ));
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].0, "spec.schedule");
    assert!(errors[0].1.contains("5 fields"), "{errors:?}");

    let errors = fields_of(post(
        json!({"schedule": "0 2 * * *", "timeZone": "Mars/Olympus", "template": idle_template("1m")}),
    ));
    assert_eq!(errors[0].0, "spec.timeZone", "{errors:?}");

    let errors = fields_of(post(json!({"schedule": "0 2 * * *", "template": {
        "endTime": "2030-01-01T00:00:00Z", "duration": "1m",
    }})));
    assert!(
        errors
            .iter()
            .any(|(field, _)| field == "spec.template.endTime"),
        "{errors:?}"
    );

    let errors = fields_of(post(
        json!({"schedule": "0 2 * * *", "historyLimit": 1000, "template": idle_template("1m")}),
    ));
    assert_eq!(errors[0].0, "spec.historyLimit", "{errors:?}");

    // Every problem at once.
    let errors = fields_of(post(
        json!({"schedule": "61 * * * *", "historyLimit": 1000, "template": {}}),
    ));
    let fields: BTreeSet<&str> = errors.iter().map(|(f, _)| f.as_str()).collect();
    for field in [
        "spec.schedule",
        "spec.historyLimit",
        "spec.template.duration",
    ] {
        assert!(fields.contains(field), "{field} in {errors:?}");
    }
    let errors = fields_of(post(
        json!({"schedule": "@daily", "concurrencypolicy": "Forbid", "template": idle_template("1m")}),
    ));
    assert!(
        errors[0].0.starts_with("spec"),
        "a misspelt field is refused: {errors:?}"
    );
    let long_name = "n".repeat(53);
    let errors = fields_of(api.post(
        &path,
        &json!({"metadata": {"name": long_name}, "spec": {"schedule": "@daily", "template": idle_template("1m")}}),
    ));
    assert_eq!(errors[0].0, "metadata.name", "{errors:?}");

    // A generated name; then the same name again is a conflict.
    let generated = created(post(
        json!({"schedule": "@daily", "template": idle_template("1m")}),
    ));
    let name = generated["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(name.starts_with("schedule-"), "{generated}");
    api.post(
        &path,
        &json!({"metadata": {"name": name}, "spec": {"schedule": "@daily", "template": idle_template("1m")}}),
    )
    .problem(409);
    let list = api.get(&path).json();
    assert_eq!(list["items"].as_array().map(Vec::len), Some(1), "{list}");

    // A bad PUT changes nothing.
    let errors = fields_of(put(
        &api,
        &format!("{path}/{name}"),
        &json!({"spec": {"schedule": "0 2 * *", "template": idle_template("1m")}}),
    ));
    assert_eq!(errors[0].0, "spec.schedule");
    assert_eq!(
        api.get(&format!("{path}/{name}")).json()["spec"]["schedule"],
        "@daily"
    );
    let renamed = put(
        &api,
        &format!("{path}/{name}"),
        &json!({"metadata": {"name": "other"}, "spec": {"schedule": "@daily", "template": idle_template("1m")}}),
    )
    .problem(422);
    assert_eq!(renamed["invalidParams"][0]["name"], "metadata.name");

    api.get(&format!("{path}/nothing-here")).problem(404);
    api.delete(&format!("{path}/nothing-here")).problem(404);
    put(
        &api,
        &format!("{path}/nothing-here"),
        &json!({"spec": {"schedule": "@daily", "template": idle_template("1m")}}),
    )
    .problem(404);

    // A viewer may read schedules but not create them.
    let viewer = api.create_token("viewer", &[]);
    assert_eq!(api.get_as(&path, Some(&viewer), &[]).status, 200);
    api.post_as(
        &path,
        Some(&viewer),
        &json!({"spec": {"schedule": "@daily", "template": idle_template("1m")}}),
    )
    .problem(403);
    api.get_as(&path, Some(""), &[]).problem(401);
}

#[test]
fn replace_stops_the_previous_run_before_starting_the_next() {
    let api = Api::start();
    created(api.post(
        &schedules("replace-test"),
        &json!({"metadata": {"name": "latest"}, "spec": {
            "schedule": "* * * * * *",
            "concurrencyPolicy": "Replace",
            "historyLimit": 2,
            "template": idle_template("1h"),
        }}),
    ));
    let runs = wait_for(
        Duration::from_secs(10),
        "two stopped runs and one capturing",
        || {
            let runs = runs_of(&api, "replace-test", "latest");
            let phases: Vec<&str> = runs
                .values()
                .map(|c| c["status"]["phase"].as_str().unwrap_or_default())
                .collect();
            let active = phases
                .iter()
                .filter(|p| matches!(**p, "Scheduled" | "Capturing"))
                .count();
            assert!(active <= 1, "Replace: one run at a time: {phases:?}");
            (phases == ["Stopped", "Stopped", "Capturing"]).then_some(runs)
        },
    );
    let names: Vec<&String> = runs.keys().collect();
    let schedule = api
        .get(&format!("{}/latest", schedules("replace-test")))
        .json();
    assert_eq!(
        schedule["status"]["active"],
        json!([names[2]]),
        "{schedule}"
    );
}

#[test]
fn deleting_a_schedule_deletes_its_captures_and_their_files() {
    let api = Api::start();
    created(api.post(
        &schedules("delete-test"),
        &json!({"metadata": {"name": "doomed"}, "spec": {
            "schedule": "* * * * * *", "template": idle_template("1h"),
        }}),
    ));
    let runs = wait_for(Duration::from_secs(6), "two runs capturing", || {
        let runs = runs_of(&api, "delete-test", "doomed");
        let capturing = runs
            .values()
            .filter(|c| c["status"]["phase"] == "Capturing")
            .count();
        (capturing >= 2).then_some(runs)
    });

    let answer = api.delete(&format!("{}/doomed", schedules("delete-test")));
    assert_eq!(
        answer.status,
        204,
        "{}",
        String::from_utf8_lossy(&answer.body)
    );
    api.get(&format!("{}/doomed", schedules("delete-test")))
        .problem(404);
    for (name, capture) in &runs {
        api.get(&format!("{}/{name}", captures("delete-test")))
            .problem(404);
        let uid = capture["metadata"]["uid"].as_str().unwrap_or_default();
        assert!(
            !api.data_dir.join("captures").join(uid).exists(),
            "{name}'s files are deleted"
        );
    }
    // Nothing is started for the deleted schedule afterwards.
    std::thread::sleep(Duration::from_millis(2500));
    let list = api.get(&captures("delete-test")).json();
    assert_eq!(list["items"], json!([]), "{list}");
}

#[test]
fn a_schedule_survives_a_kill_and_does_not_make_up_every_missed_run() {
    let data = tempfile::Builder::new()
        .prefix("podcap-schedules-")
        .tempdir()
        .unwrap();
    let mut api = Api::start_in(data.path());
    let path = format!("{}/survivor", schedules("restart-test"));
    let schedule = created(api.post(
        &schedules("restart-test"),
        &json!({"metadata": {"name": "survivor"}, "spec": {
            "schedule": "*/3 * * * * *", "historyLimit": 20, "template": idle_template("1s"),
        }}),
    ));
    wait_for(Duration::from_secs(6), "a first run", || {
        (!runs_of(&api, "restart-test", "survivor").is_empty()).then_some(())
    });
    api.kill();
    let killed_at = Utc::now().timestamp();
    // At least one run time (every 3 s) passes while the server is down.
    std::thread::sleep(Duration::from_secs(4));

    let api = Api::start_in(data.path());
    let up_at = Utc::now().timestamp();
    let again = api.get(&path).json();
    assert_eq!(
        again["metadata"]["uid"], schedule["metadata"]["uid"],
        "{again}"
    );
    assert!(again["status"]["lastScheduleTime"].is_string(), "{again}");
    wait_for(Duration::from_secs(8), "a run after the restart", || {
        runs_of(&api, "restart-test", "survivor")
            .keys()
            .any(|name| run_seconds("survivor", name).unwrap_or_default() > up_at)
            .then_some(())
    });
    // Run times that passed while the server was down get at most one (late) run.
    let made_up: Vec<String> = runs_of(&api, "restart-test", "survivor")
        .into_keys()
        .filter(|name| {
            let seconds = run_seconds("survivor", name).unwrap_or_default();
            seconds > killed_at && seconds < up_at
        })
        .collect();
    assert!(made_up.len() <= 1, "{made_up:?}");
}
