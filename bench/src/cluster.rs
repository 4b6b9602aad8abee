//! `podcap-bench cluster`: what one capture across many nodes costs the Kubernetes API server,
//! against the real kube-apiserver v1.20.2 + etcd of the test setup (scripts/kube-apiserver).
//!
//! N simulated node agents (tasks in this process, each with the agents' service-account token
//! and its own field manager `podcap-agent/NODE`) write exactly what real agents write, with the
//! agents' own code (`capture_agent::cluster::slices::apply`): this node's PacketCaptureSlices,
//! P pods x F files. First every node reports at once (a capture starting on every node), then
//! counters change and every node writes again once per `--interval` (the agents' throttle,
//! 10 s) for `--rounds` rounds, the writes of a round spread evenly over it.
//! `capture-api --kubernetes` runs against the same server, mirroring the slices and writing the
//! capture's totals; its REST GET of the capture, a page of its targets and the namespace's
//! capture list are timed after the rounds.
//!
//! Reported: the largest object (slices and the capture, with managedFields), the targets
//! stored, objects written per minute and their bytes per minute while counters change, write
//! p50/p99, failed writes by reason, and the API's GET/list p50/p99. The last line is
//! machine-readable:
//! `nodes=N pods=P files=F failed_writes=X max_object_kib=Y writes_per_min=Z get_p99_ms=W`.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use capture_agent::cluster::slices::{self, Owner};
use capture_spec::{FileStatus, PacketCaptureSlice, TargetState, TargetStatus};
use clap::Args;
use kube::api::Api;
use podcap_testkit::cluster::{
    client_for, deploy, install_crds, listening_address, provision_agent_ca, write_kubeconfig,
};
use podcap_testkit::kube::KubeApiServer;
use serde_json::Value;

use crate::capturer::find_binary;

const NAMESPACE: &str = "shop";
const CAPTURE: &str = "scale";
/// Timed requests of each kind to capture-api, after the rounds.
const GET_SAMPLES: usize = 200;

#[derive(Args, Debug)]
pub struct ClusterArgs {
    /// Simulated nodes, each with its own agent.
    #[arg(long, default_value_t = 20)]
    nodes: usize,
    /// Captured pods per node.
    #[arg(long, default_value_t = 10)]
    pods: usize,
    /// Files per pod.
    #[arg(long, default_value_t = 3)]
    files: usize,
    /// Counter rounds after the first report.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Seconds between two counter writes of one node (the agents' throttle).
    #[arg(long, default_value_t = slices::MIN_INTERVAL.as_secs())]
    interval: u64,
    /// Writes in flight at once during the first report.
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    /// capture-api binary (default: next to this one, else target/release).
    #[arg(long)]
    api: Option<PathBuf>,
    /// Also write the report here.
    #[arg(long)]
    out: Option<PathBuf>,
}

/// What the writes of a run came to.
#[derive(Default)]
struct Writes {
    latencies: Vec<Duration>,
    failures: BTreeMap<String, usize>,
    /// Objects and request bytes written during the counter rounds.
    counter_objects: usize,
    counter_bytes: usize,
}

impl Writes {
    fn failed(&self) -> usize {
        self.failures.values().sum()
    }
}

/// capture-api --kubernetes, killed on drop.
struct ApiServer {
    child: Child,
    base: String,
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_api(
    binary: &std::path::Path,
    kubeconfig: &std::path::Path,
    scratch: &std::path::Path,
) -> Result<ApiServer> {
    let mut child = Command::new(binary)
        .args(["--kubernetes", "--listen", "127.0.0.1:0"])
        .args(["--report-timeout", "1h", "--finish-grace", "1h"])
        .arg("--data-dir")
        .arg(scratch.join("api"))
        .env("KUBECONFIG", kubeconfig)
        .env("PODCAP_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting capture-api --kubernetes")?;
    let stderr = child.stderr.take().context("capture-api's stderr")?;
    let (found, address) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut found = Some(found);
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(address) = listening_address(&line) {
                if let Some(found) = found.take() {
                    let _ = found.send(address);
                }
            }
        }
    });
    let address = address
        .recv_timeout(Duration::from_secs(30))
        .context("capture-api did not say where it listens")?;
    Ok(ApiServer {
        child,
        base: format!("http://{address}"),
    })
}

/// What node `node`'s agent reports in round `round`: its pods, each with its files.
fn targets(node: usize, pods: usize, files: usize, round: usize) -> Vec<TargetStatus> {
    let node_name = format!("node-{node:04}");
    (0..pods)
        .map(|pod| {
            let pod_name = format!("web-{node:04}-{pod:03}-7d9f8b6c5d-x2k4p");
            let packets = (round as u64 + 1) * 1_000 + pod as u64;
            TargetStatus {
                node: node_name.clone(),
                namespace: NAMESPACE.into(),
                pod: pod_name.clone(),
                interface: "eth0".into(),
                state: TargetState::Capturing,
                packets,
                bytes: packets * 900,
                drops: 0,
                files: (0..files)
                    .map(|file| FileStatus {
                        id: format!("{NAMESPACE}_{pod_name}_eth0_s1-{file:06}"),
                        name: format!("{NAMESPACE}_{pod_name}_eth0_s1-{file:06}.pcapng"),
                        size: packets * 950 / files as u64,
                        packets: packets / files as u64,
                        first_packet_at: Some(chrono::Utc::now()),
                        last_packet_at: Some(chrono::Utc::now()),
                    })
                    .collect(),
                error: None,
            }
        })
        .collect()
}

/// One node's write of its slices, timed; a failure is counted by the API server's reason.
async fn write(
    api: &Api<PacketCaptureSlice>,
    owner: &Owner,
    node: usize,
    targets: &[TargetStatus],
) -> Result<(Duration, slices::Written), String> {
    let node_name = format!("node-{node:04}");
    let manager = format!("podcap-agent/{node_name}");
    let started = Instant::now();
    slices::apply(api, owner, &node_name, &manager, targets, &[])
        .await
        .map(|written| (started.elapsed(), written))
        .map_err(|error| match error {
            kube::Error::Api(status) => status.message,
            other => other.to_string(),
        })
}

/// The largest of the capture's objects as the API server holds them (its slices and the
/// capture itself): (JSON size, managedFields size), and the targets its slices hold.
fn largest_object(server: &KubeApiServer) -> Result<((usize, usize), usize)> {
    let size = |object: &Value| -> Result<(usize, usize)> {
        let managed = serde_json::to_vec(&object["metadata"]["managedFields"])?.len();
        Ok((serde_json::to_vec(object)?.len(), managed))
    };
    let capture: Value = serde_json::from_str(
        &server.kubectl(&["get", "pcap", "-n", NAMESPACE, CAPTURE, "-o", "json"]),
    )?;
    let mut largest = size(&capture)?;
    let listed: Value = serde_json::from_str(&server.kubectl(&[
        "get",
        "pcapslice",
        "-n",
        NAMESPACE,
        "-l",
        &format!("podcap.io/capture={CAPTURE}"),
        "-o",
        "json",
    ]))?;
    let mut targets = 0;
    for slice in listed["items"].as_array().into_iter().flatten() {
        largest = largest.max(size(slice)?);
        targets += slice["spec"]["targets"].as_array().map_or(0, Vec::len);
    }
    Ok((largest, targets))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

pub fn run(args: &ClusterArgs) -> Result<()> {
    if args.nodes == 0 || args.pods == 0 || args.files == 0 || args.interval == 0 {
        bail!("--nodes, --pods, --files and --interval must be at least 1");
    }
    let api_binary = find_binary("capture-api", args.api.as_deref())?;
    let server =
        KubeApiServer::start().map_err(|e| anyhow::anyhow!("the test kube-apiserver: {e}"))?;
    install_crds(&server);
    for file in [
        "base/namespace.yaml",
        "base/agent-rbac.yaml",
        "base/api-rbac.yaml",
    ] {
        server.kubectl(&["apply", "-f", &deploy(file)]);
    }
    server.kubectl(&["create", "namespace", NAMESPACE]);
    server.kubectl(&["apply", "-f", &deploy("examples/capture-user-role.yaml")]);
    provision_agent_ca(&server);
    let capture = serde_json::json!({
        "apiVersion": "podcap.io/v1alpha1", "kind": "PacketCapture",
        "metadata": {"name": CAPTURE, "namespace": NAMESPACE},
        "spec": {"podSelector": {"matchLabels": {"app": "web"}}, "duration": "1h"},
    });
    server.kubectl_stdin(&["apply", "-f", "-"], Some(&capture.to_string()));

    let scratch = tempfile::tempdir()?;
    let agent_kubeconfig = scratch.path().join("agent.kubeconfig");
    write_kubeconfig(&server, &server.agent_token, &agent_kubeconfig);
    let api_kubeconfig = scratch.path().join("api.kubeconfig");
    write_kubeconfig(&server, &server.api_token, &api_kubeconfig);
    let api_server = start_api(&api_binary, &api_kubeconfig, scratch.path())?;

    let uid = server.kubectl(&[
        "get",
        "pcap",
        "-n",
        NAMESPACE,
        CAPTURE,
        "-o",
        "jsonpath={.metadata.uid}",
    ]);
    let owner = Owner {
        namespace: NAMESPACE.into(),
        name: CAPTURE.into(),
        uid,
    };
    let runtime = tokio::runtime::Runtime::new()?;
    let (writes, counter_minutes) = runtime.block_on(async {
        let client = client_for(&agent_kubeconfig).await;
        let api: Api<PacketCaptureSlice> = Api::namespaced(client.clone(), NAMESPACE);
        let mut writes = Writes::default();
        // The first report: every node at once, `concurrency` in flight.
        let limit = Arc::new(tokio::sync::Semaphore::new(args.concurrency.max(1)));
        let mut tasks = Vec::new();
        for node in 0..args.nodes {
            let (api, limit, owner) = (api.clone(), limit.clone(), owner.clone());
            let targets = targets(node, args.pods, args.files, 0);
            tasks.push(tokio::spawn(async move {
                let _permit = limit.acquire_owned().await;
                write(&api, &owner, node, &targets).await
            }));
        }
        collect(tasks, &mut writes, false).await;
        // Counter rounds: each node once per interval, spread over it.
        let interval = Duration::from_secs(args.interval);
        let counters_started = Instant::now();
        for round in 1..=args.rounds {
            let round_start = tokio::time::Instant::now();
            let mut tasks = Vec::new();
            for node in 0..args.nodes {
                let (api, owner) = (api.clone(), owner.clone());
                let targets = targets(node, args.pods, args.files, round);
                let at = round_start + interval.mul_f64(node as f64 / args.nodes as f64);
                tasks.push(tokio::spawn(async move {
                    tokio::time::sleep_until(at).await;
                    write(&api, &owner, node, &targets).await
                }));
            }
            collect(tasks, &mut writes, true).await;
            tokio::time::sleep_until(round_start + interval).await;
        }
        let minutes = counters_started.elapsed().as_secs_f64() / 60.0;
        anyhow::Ok((writes, minutes))
    })?;
    let ((max_object, max_managed), targets_stored) = largest_object(&server)?;

    // The API's reads of the capture (what `kubectl podcap` and the console read), once its
    // mirror holds every slice.
    let http: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into();
    let base = format!("{}/api/v1/namespaces/{NAMESPACE}/captures", api_server.base);
    let get_json = |url: &str| -> Option<(Duration, Value)> {
        let started = Instant::now();
        let mut response = http
            .get(url)
            .header("Authorization", format!("Bearer {}", server.alice_token))
            .call()
            .ok()?;
        if response.status() != 200 {
            return None;
        }
        let body = response
            .body_mut()
            .with_config()
            .limit(64 << 20)
            .read_to_vec()
            .ok()?;
        Some((started.elapsed(), serde_json::from_slice(&body).ok()?))
    };
    let expected_packets: u64 = (0..args.nodes)
        .flat_map(|node| targets(node, args.pods, args.files, args.rounds))
        .map(|t| t.packets)
        .sum();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut api_totals = None;
    let mut inline = (0, 0);
    while Instant::now() < deadline {
        let capture = get_json(&format!("{base}/{CAPTURE}"));
        if let Some((_, capture)) = &capture {
            api_totals = capture["status"]["packets"].as_u64();
            inline = (
                capture["status"]["targets"].as_array().map_or(0, Vec::len),
                capture["status"]["targetsOmitted"].as_u64().unwrap_or(0),
            );
            if api_totals == Some(expected_packets) {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let mut timings: BTreeMap<&str, (Vec<Duration>, usize)> = BTreeMap::new();
    for _ in 0..GET_SAMPLES {
        for (what, url) in [
            ("GET of the capture", format!("{base}/{CAPTURE}")),
            (
                "GET of a page of 100 targets",
                format!("{base}/{CAPTURE}/targets?limit=100"),
            ),
            ("list of the namespace's captures", base.clone()),
        ] {
            let entry = timings.entry(what).or_default();
            match get_json(&url) {
                Some((took, _)) => entry.0.push(took),
                None => entry.1 += 1,
            }
        }
    }
    for (times, _) in timings.values_mut() {
        times.sort();
    }
    let gets = timings
        .get("GET of the capture")
        .map(|(times, _)| times.clone())
        .unwrap_or_default();
    let mut latencies = writes.latencies.clone();
    latencies.sort();
    let writes_per_min = writes.counter_objects as f64 / counter_minutes.max(f64::EPSILON);
    let bytes_per_min = writes.counter_bytes as f64 / counter_minutes.max(f64::EPSILON);

    let mut report = String::new();
    report.push_str(&format!(
        "# podcap-bench cluster: {} nodes x {} pods x {} files, one capture\n\n",
        args.nodes, args.pods, args.files
    ));
    report.push_str("| measure | value |\n| --- | ---: |\n");
    for (name, value) in [
        (
            "targets expected / stored",
            format!("{} / {targets_stored}", args.nodes * args.pods),
        ),
        (
            "writes (first report + counter rounds)",
            writes.latencies.len().to_string() + &format!(" ok, {} failed", writes.failed()),
        ),
        (
            "write p50 / p99",
            format!(
                "{:.0} / {:.0} ms",
                ms(percentile(&latencies, 0.5)),
                ms(percentile(&latencies, 0.99))
            ),
        ),
        (
            "the API's totals: packets",
            format!(
                "{} of {expected_packets}",
                api_totals.map_or("none".to_string(), |p| p.to_string())
            ),
        ),
        (
            "the API's GET: targets inline / omitted",
            format!("{} / {}", inline.0, inline.1),
        ),
        (
            "largest object (managedFields)",
            format!(
                "{:.0} KiB ({:.0} KiB)",
                max_object as f64 / 1024.0,
                max_managed as f64 / 1024.0
            ),
        ),
        (
            "objects written per minute (counter rounds)",
            format!("{writes_per_min:.0}"),
        ),
        (
            "bytes written per minute (counter rounds)",
            format!("{:.1} MiB", bytes_per_min / (1 << 20) as f64),
        ),
    ] {
        report.push_str(&format!("| {name} | {value} |\n"));
    }
    for (what, (times, failed)) in &timings {
        report.push_str(&format!(
            "| API {what} p50 / p99 / max | {:.0} / {:.0} / {:.0} ms ({failed} failed) |\n",
            ms(percentile(times, 0.5)),
            ms(percentile(times, 0.99)),
            ms(percentile(times, 1.0))
        ));
    }
    if !writes.failures.is_empty() {
        report.push_str("\nFailed writes by reason:\n\n");
        for (reason, count) in &writes.failures {
            report.push_str(&format!("- {count} x {reason}\n"));
        }
    }
    report.push_str(&format!(
        "\nnodes={} pods={} files={} failed_writes={} max_object_kib={:.0} writes_per_min={:.0} get_p99_ms={:.0}\n",
        args.nodes,
        args.pods,
        args.files,
        writes.failed(),
        max_object as f64 / 1024.0,
        writes_per_min,
        ms(percentile(&gets, 0.99)),
    ));
    print!("{report}");
    if let Some(out) = &args.out {
        std::fs::write(out, &report).with_context(|| format!("writing {}", out.display()))?;
    }
    drop(api_server);
    Ok(())
}

/// Waits for one batch of writes; `counting` adds them to the counter rounds' volume.
async fn collect(
    tasks: Vec<tokio::task::JoinHandle<Result<(Duration, slices::Written), String>>>,
    writes: &mut Writes,
    counting: bool,
) {
    for task in tasks {
        match task.await {
            Ok(Ok((latency, written))) => {
                writes.latencies.push(latency);
                if counting {
                    writes.counter_objects += written.objects;
                    writes.counter_bytes += written.bytes;
                }
            }
            Ok(Err(reason)) => *writes.failures.entry(reason).or_default() += 1,
            Err(error) => *writes.failures.entry(error.to_string()).or_default() += 1,
        }
    }
}
