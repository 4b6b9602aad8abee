//! `podcap-bench cluster`: what one capture across many nodes costs the Kubernetes API server,
//! against the real kube-apiserver v1.20.2 + etcd of the test setup (scripts/kube-apiserver).
//!
//! N simulated node agents (tasks in this process, each with the agents' service-account token
//! and its own field manager `podcap-agent/NODE`) write exactly what real agents write, with the
//! agents' own code (`capture_agent::cluster::status::apply`): this node's `status.targets`
//! entries, P pods x F files each. First every node reports at once (a capture starting on every
//! node), then counters change and every node applies again once per `--interval` (the agents'
//! throttle) for `--rounds` rounds, the writes of a round spread evenly over it.
//! `capture-api --kubernetes` runs against the same server; its REST GET of the capture is timed.
//!
//! Reported: the largest object (and its managedFields), writes per minute and the bytes the API
//! server had to store per minute (each write rewrites the whole object), write p50/p99, failed
//! writes by reason, and the API's GET p50/p99. The last line is machine-readable:
//! `nodes=N pods=P files=F failed_writes=X max_object_kib=Y writes_per_min=Z get_p99_ms=W`.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use capture_spec::{FileStatus, PacketCapture, TargetState, TargetStatus};
use clap::Args;
use kube::api::Api;
use podcap_testkit::cluster::{
    client_for, deploy, listening_address, provision_agent_ca, write_kubeconfig,
};
use podcap_testkit::kube::KubeApiServer;
use serde_json::Value;

use crate::capturer::find_binary;

const NAMESPACE: &str = "shop";
const CAPTURE: &str = "scale";

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
    #[arg(long, default_value_t = capture_agent::cluster::status::MIN_INTERVAL.as_secs())]
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

/// One node's apply, timed; a failure is counted by the API server's reason.
async fn write(
    api: &Api<PacketCapture>,
    node: usize,
    targets: &[TargetStatus],
) -> Result<Duration, String> {
    let manager = format!("podcap-agent/node-{node:04}");
    let started = Instant::now();
    capture_agent::cluster::status::apply(api, CAPTURE, &manager, targets)
        .await
        .map(|()| started.elapsed())
        .map_err(|error| match error {
            kube::Error::Api(status) => status.message,
            other => other.to_string(),
        })
}

/// The capture as the API server holds it: its JSON size and its managedFields' size.
async fn object_size(client: &kube::Client) -> Result<(usize, usize)> {
    let api: Api<kube::api::DynamicObject> = Api::namespaced_with(
        client.clone(),
        NAMESPACE,
        &kube::api::ApiResource::erase::<PacketCapture>(&()),
    );
    let object = api.get(CAPTURE).await.context("reading the capture")?;
    let value = serde_json::to_value(&object)?;
    let managed = serde_json::to_vec(&value["metadata"]["managedFields"])?.len();
    Ok((serde_json::to_vec(&value)?.len(), managed))
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
    server.kubectl(&["apply", "-k", &deploy("crds")]);
    server.kubectl(&[
        "wait",
        "--for",
        "condition=established",
        "--timeout=60s",
        "crd/packetcaptures.podcap.io",
    ]);
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

    let runtime = tokio::runtime::Runtime::new()?;
    let (writes, sizes, counter_minutes) = runtime.block_on(async {
        let client = client_for(&agent_kubeconfig).await;
        let api: Api<PacketCapture> = Api::namespaced(client.clone(), NAMESPACE);
        let mut writes = Writes::default();
        let mut sizes = Vec::new();
        // The first report: every node at once, `concurrency` in flight.
        let limit = Arc::new(tokio::sync::Semaphore::new(args.concurrency.max(1)));
        let mut tasks = Vec::new();
        for node in 0..args.nodes {
            let (api, limit) = (api.clone(), limit.clone());
            let targets = targets(node, args.pods, args.files, 0);
            tasks.push(tokio::spawn(async move {
                let _permit = limit.acquire_owned().await;
                write(&api, node, &targets).await
            }));
        }
        collect(tasks, &mut writes).await;
        sizes.push(object_size(&client).await?);
        // Counter rounds: each node once per interval, spread over it.
        let interval = Duration::from_secs(args.interval);
        let counters_started = Instant::now();
        for round in 1..=args.rounds {
            let round_start = tokio::time::Instant::now();
            let mut tasks = Vec::new();
            for node in 0..args.nodes {
                let api = api.clone();
                let targets = targets(node, args.pods, args.files, round);
                let at = round_start + interval.mul_f64(node as f64 / args.nodes as f64);
                tasks.push(tokio::spawn(async move {
                    tokio::time::sleep_until(at).await;
                    write(&api, node, &targets).await
                }));
            }
            collect(tasks, &mut writes).await;
            tokio::time::sleep_until(round_start + interval).await;
            sizes.push(object_size(&client).await?);
        }
        let minutes = counters_started.elapsed().as_secs_f64() / 60.0;
        anyhow::Ok((writes, sizes, minutes))
    })?;

    // The API's GET of the capture (what `kubectl podcap` and the console read).
    let http: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into();
    let url = format!(
        "{}/api/v1/namespaces/{NAMESPACE}/captures/{CAPTURE}",
        api_server.base
    );
    let mut gets = Vec::new();
    let mut get_failures = 0;
    for _ in 0..50 {
        let started = Instant::now();
        let answer = http
            .get(&url)
            .header("Authorization", format!("Bearer {}", server.alice_token))
            .call();
        match answer {
            Ok(mut response) if response.status() == 200 => {
                let _ = response
                    .body_mut()
                    .with_config()
                    .limit(64 << 20)
                    .read_to_vec();
                gets.push(started.elapsed());
            }
            _ => get_failures += 1,
        }
    }
    gets.sort();
    let mut latencies = writes.latencies.clone();
    latencies.sort();
    let (max_object, max_managed) = sizes.iter().copied().max().unwrap_or_default();
    let counter_writes = args.nodes * args.rounds;
    let writes_per_min = counter_writes as f64 / counter_minutes.max(f64::EPSILON);
    // Each write makes the API server store the whole object again.
    let stored_per_min: f64 = sizes
        .iter()
        .skip(1)
        .map(|(size, _)| *size as f64)
        .sum::<f64>()
        * args.nodes as f64
        / counter_minutes.max(f64::EPSILON);
    let targets_stored = object_targets(&server)?;

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
            "largest object (managedFields)",
            format!(
                "{:.0} KiB ({:.0} KiB)",
                max_object as f64 / 1024.0,
                max_managed as f64 / 1024.0
            ),
        ),
        ("counter writes per minute", format!("{writes_per_min:.0}")),
        (
            "bytes stored per minute",
            format!("{:.1} MiB", stored_per_min / (1 << 20) as f64),
        ),
        (
            "API GET of the capture p50 / p99",
            format!(
                "{:.0} / {:.0} ms ({get_failures} failed)",
                ms(percentile(&gets, 0.5)),
                ms(percentile(&gets, 0.99))
            ),
        ),
    ] {
        report.push_str(&format!("| {name} | {value} |\n"));
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

/// How many target entries the stored capture holds.
fn object_targets(server: &KubeApiServer) -> Result<usize> {
    let json = server.kubectl(&["get", "pcap", "-n", NAMESPACE, CAPTURE, "-o", "json"]);
    let object: Value = serde_json::from_str(&json)?;
    Ok(object["status"]["targets"].as_array().map_or(0, Vec::len))
}

async fn collect(
    tasks: Vec<tokio::task::JoinHandle<Result<Duration, String>>>,
    writes: &mut Writes,
) {
    for task in tasks {
        match task.await {
            Ok(Ok(latency)) => writes.latencies.push(latency),
            Ok(Err(reason)) => *writes.failures.entry(reason).or_default() += 1,
            Err(error) => *writes.failures.entry(error.to_string()).or_default() += 1,
        }
    }
}
