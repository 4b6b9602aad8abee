//! The standalone API under load: 64 clients creating, reading, listing, downloading and
//! deleting captures at once for a bounded time, while 200 live-stream clients come and go on a
//! running capture and the pods keep sending. Nothing may answer 5xx; afterwards no record and
//! no file of a deleted capture is left; capture-api's memory stays bounded (sampled from
//! /proc every 100 ms; the peak is printed with the request counts).

mod api_common;

use std::collections::BTreeMap;
use std::io::Read;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use api_common::traffic::burst_from_pod;
use api_common::{Api, Pod, UdpSink};
use serde_json::{json, Value};

const CAPTURES: &str = "/api/v1/namespaces/default/captures";
const CLIENTS: usize = 64;
const LIVE_CLIENTS: usize = 200;
/// How long the clients keep going (each also stops after `ROUNDS_PER_CLIENT` captures).
const LOAD_TIME: Duration = Duration::from_secs(60);
const ROUNDS_PER_CLIENT: usize = 40;
const PODS: usize = 4;
const PORT: u16 = 7800;
/// A generous bound: the point is "bounded", the figure is printed.
const RSS_LIMIT_KIB: u64 = 512 * 1024;

/// Every answer's status, counted.
#[derive(Default)]
struct Tally {
    statuses: Mutex<BTreeMap<u16, u64>>,
    requests: AtomicU64,
}

impl Tally {
    fn count(&self, what: &str, status: u16, body: &[u8]) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        *self.statuses.lock().unwrap().entry(status).or_default() += 1;
        assert!(
            status < 500,
            "{what}: {status} {}",
            String::from_utf8_lossy(&body[..body.len().min(500)])
        );
    }
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn spec(pod: &Pod, duration: &str) -> Value {
    json!({
        "podSelector": {"matchLabels": {"podcap.io/netns": pod.netns}},
        "filters": [{"protocol": "UDP", "ports": [PORT]}],
        "duration": duration,
    })
}

/// One client's life: capture, read, list, wait for the end, download, delete; again.
fn client(api: &Api, pods: &[Pod], index: usize, until: Instant, tally: &Tally) {
    for round in 0..ROUNDS_PER_CLIENT {
        if Instant::now() >= until {
            return;
        }
        let name = format!("load-{index}-{round}");
        let pod = &pods[(index + round) % pods.len()];
        let created = api.post(
            CAPTURES,
            &json!({"metadata": {"name": name}, "spec": spec(pod, "1s")}),
        );
        tally.count("create", created.status, &created.body);
        if created.status != 201 {
            continue;
        }
        let path = format!("{CAPTURES}/{name}");
        let read = api.get(&path);
        tally.count("get", read.status, &read.body);
        let listed = api.get(&format!("{CAPTURES}?limit=10"));
        tally.count("list", listed.status, &listed.body);
        let finished = loop {
            let capture = api.get(&path);
            tally.count("poll", capture.status, &capture.body);
            let phase = capture.json()["status"]["phase"].clone();
            if phase == "Completed" || phase == "Failed" || phase == "Stopped" {
                break capture.json();
            }
            assert!(
                Instant::now() < until + Duration::from_secs(30),
                "{name} never finished: {}",
                capture.json()
            );
            std::thread::sleep(Duration::from_millis(200));
        };
        let merged = api.get(&format!("{path}/pcap"));
        tally.count("merged download", merged.status, &merged.body);
        let file = finished["status"]["targets"][0]["files"][0]["id"].as_str();
        if let Some(id) = file {
            let download = api.get(&format!("{path}/files/{id}"));
            tally.count("file download", download.status, &download.body);
        }
        let deleted = api.delete(&path);
        tally.count("delete", deleted.status, &deleted.body);
    }
}

/// One live-stream client: opens the stream, reads its first bytes (the pcapng header and some
/// packets), goes away.
fn live_client(api: &Api, until: Instant, tally: &Tally, read: &AtomicU64) {
    while Instant::now() < until {
        let (status, mut body) = api.get_stream(&format!("{CAPTURES}/live-load/live"));
        tally.count("live", status, &[]);
        let mut buffer = vec![0_u8; 4096];
        if let Ok(n) = body.read(&mut buffer) {
            read.fetch_add(n as u64, Ordering::Relaxed);
        }
        drop(body);
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn sixty_four_clients_and_two_hundred_live_streams_get_no_5xx_and_leave_nothing_behind() {
    let pods: Vec<Pod> = (0..PODS).map(|_| Pod::new()).collect();
    let _sinks: Vec<UdpSink> = pods
        .iter()
        .map(|pod| UdpSink::bind(pod.host_v4.into(), PORT))
        .collect();
    let api = Api::start();
    let pid = api.pid().expect("capture-api's pid");
    let live = api.post(
        CAPTURES,
        &json!({"metadata": {"name": "live-load"}, "spec": spec(&pods[0], "10m")}),
    );
    assert_eq!(live.status, 201, "{}", String::from_utf8_lossy(&live.body));
    api.wait_for_phase(
        "default",
        "live-load",
        &["Capturing"],
        Duration::from_secs(15),
    );

    let tally = Tally::default();
    let live_bytes = AtomicU64::new(0);
    let peak_rss = AtomicU64::new(0);
    let running = AtomicBool::new(true);
    let started = Instant::now();
    let until = started + LOAD_TIME;
    std::thread::scope(|scope| {
        scope.spawn(|| {
            while running.load(Ordering::Relaxed) {
                if let Some(rss) = rss_kib(pid) {
                    peak_rss.fetch_max(rss, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        // The pods keep sending (bounded by the load time): 20 datagrams each per round.
        scope.spawn(|| {
            while Instant::now() < until {
                for pod in &pods {
                    burst_from_pod(pod, SocketAddr::new(pod.host_v4.into(), PORT), 20, 200);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        let clients: Vec<_> = (0..CLIENTS)
            .map(|index| {
                let (api, pods, tally) = (&api, &pods, &tally);
                scope.spawn(move || client(api, pods, index, until, tally))
            })
            .chain((0..LIVE_CLIENTS).map(|_| {
                let (api, tally, live_bytes) = (&api, &tally, &live_bytes);
                scope.spawn(move || live_client(api, until, tally, live_bytes))
            }))
            .collect();
        let outcomes: Vec<_> = clients.into_iter().map(|c| c.join()).collect();
        running.store(false, Ordering::Relaxed);
        let failed = outcomes.iter().filter(|o| o.is_err()).count();
        assert_eq!(
            failed, 0,
            "{failed} clients failed (see their panics above)"
        );
    });
    let elapsed = started.elapsed();
    let stopped = api.delete(&format!("{CAPTURES}/live-load"));
    assert_eq!(stopped.status, 204);

    // Nothing left behind: no record, no capture directory.
    let left = api.get(CAPTURES).json();
    assert_eq!(
        left["items"].as_array().map(Vec::len),
        Some(0),
        "records left after every capture was deleted: {left}"
    );
    let directories: Vec<String> = std::fs::read_dir(api.data_dir.join("captures"))
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    assert!(
        directories.is_empty(),
        "capture files left after every capture was deleted: {directories:?}"
    );

    let peak = peak_rss.load(Ordering::Relaxed);
    let statuses = tally.statuses.lock().unwrap().clone();
    eprintln!(
        "load: {} requests in {elapsed:.1?} from {CLIENTS} clients and {LIVE_CLIENTS} live-stream clients; statuses {statuses:?}; {} live-stream bytes read; capture-api peak RSS {:.1} MiB",
        tally.requests.load(Ordering::Relaxed),
        live_bytes.load(Ordering::Relaxed),
        peak as f64 / 1024.0
    );
    assert!(
        statuses.get(&201).copied().unwrap_or(0) >= CLIENTS as u64,
        "every client created captures: {statuses:?}"
    );
    assert!(peak > 0 && peak < RSS_LIMIT_KIB, "peak RSS {peak} KiB");
}
