//! Pieces of a small "cluster" around a real kube-apiserver ([`crate::kube`]), shared by the tests
//! that run podcap's own processes against it: node agents (`capture-agent run`) as child
//! processes, kubeconfigs for podcap's service-account tokens, a fake kubelet that binds Pods to
//! nodes and starts them on testkit netns [`Pod`]s, the podcap agent CA of the test clusters,
//! and a bounded poll and a minimal HTTPS client for the agents' file endpoints.
//!
//! Everything started here is undone on drop, also when a test panics: agents are SIGKILLed by
//! their own PID, host routes are deleted.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use capture_agent::cluster::tls::{AgentCa, ServerCert, DEFAULT_CA_SECRET};
use capture_spec::slice::CAPTURE_UID_LABEL;
use capture_spec::TargetStatus;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use k8s_openapi::api::core::v1::Pod as KubePod;
use kube::api::{Api, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use serde_json::json;

use crate::kube::{repo_root, KubeApiServer};
use crate::netlab::Undo;
use crate::Pod;

/// A free loopback TCP address (bound and released: free unless someone takes it meanwhile).
pub fn free_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// The address in a server's "listening on http://ADDR" line (capture-api prints it on stderr
/// once bound), so tests can start servers on port 0 instead of racing for a free port.
pub fn listening_address(line: &str) -> Option<SocketAddr> {
    let (_, rest) = line.split_once("listening on http://")?;
    rest.split_whitespace().next()?.parse().ok()
}

/// The podcap agent CA of this test process's clusters, made once.
pub fn agent_ca() -> &'static AgentCa {
    static CA: OnceLock<AgentCa> = OnceLock::new();
    CA.get_or_init(|| AgentCa::generate().expect("a test agent CA"))
}

/// Stores [`agent_ca`] in `server` as the Secret capture-api would make at its first start
/// (`podcap-system/podcap-agent-ca`), so agents started before the API get their certificate
/// at once, and the API finds and keeps it.
pub fn provision_agent_ca(server: &KubeApiServer) {
    server.kubectl_stdin(
        &["apply", "-f", "-"],
        Some(r#"{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "podcap-system"}}"#),
    );
    let mut secret = serde_json::to_value(agent_ca().secret("podcap-system", DEFAULT_CA_SECRET))
        .expect("the CA Secret as JSON");
    secret["apiVersion"] = json!("v1");
    secret["kind"] = json!("Secret");
    server.kubectl_stdin(&["apply", "-f", "-"], Some(&secret.to_string()));
}

/// A TLS server configuration serving `cert` (for fake agents).
pub fn tls_server_config(cert: &ServerCert) -> Arc<rustls::ServerConfig> {
    let chain = CertificateDer::pem_slice_iter(cert.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .expect("the certificate's PEM");
    let key = PrivateKeyDer::from_pem_slice(cert.key_pem.as_bytes()).expect("the key's PEM");
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .expect("a server certificate");
    Arc::new(config)
}

/// A TLS client configuration trusting [`agent_ca`] only.
fn agent_client_config() -> Arc<rustls::ClientConfig> {
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let mut roots = rustls::RootCertStore::empty();
            for cert in CertificateDer::pem_slice_iter(agent_ca().cert_pem().as_bytes()) {
                roots.add(cert.expect("the CA's PEM")).expect("the CA");
            }
            let config = rustls::ClientConfig::builder_with_provider(Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
            Arc::new(config)
        })
        .clone()
}

/// The first `Some` of `attempt`, polled every 300 ms for up to `seconds`; panics after that.
pub fn eventually<T>(what: &str, seconds: u64, mut attempt: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    loop {
        if let Some(value) = attempt() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "gave up waiting for {what} after {seconds} s"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// `deploy/PATH` of this checkout, as a string for kubectl.
pub fn deploy(path: &str) -> String {
    repo_root().join("deploy").join(path).display().to_string()
}

/// Every node's PacketCaptureSlices of the capture with this uid, as kubectl lists them.
/// `kubectl` runs kubectl as the admin of whichever cluster the test has (the test apiserver or
/// a real node) and returns its stdout.
pub fn capture_slices(
    kubectl: impl Fn(&[&str]) -> String,
    namespace: &str,
    uid: &str,
) -> Vec<serde_json::Value> {
    let selector = format!("{CAPTURE_UID_LABEL}={uid}");
    let listed = kubectl(&[
        "get",
        "packetcaptureslices",
        "-n",
        namespace,
        "-l",
        &selector,
        "-o",
        "json",
    ]);
    let list: serde_json::Value = serde_json::from_str(&listed).expect("kubectl printed JSON");
    list["items"].as_array().cloned().unwrap_or_default()
}

/// A capture's per-pod targets as an operator reads them: the `spec.targets` of every node's
/// slice of it ([`capture_slices`]).
pub fn slice_targets(
    kubectl: impl Fn(&[&str]) -> String,
    namespace: &str,
    uid: &str,
) -> Vec<TargetStatus> {
    capture_slices(kubectl, namespace, uid)
        .iter()
        .flat_map(|slice| {
            serde_json::from_value::<Vec<TargetStatus>>(slice["spec"]["targets"].clone())
                .expect("a slice's spec.targets is a list of targets")
        })
        .collect()
}

/// Every podcap CRD (`deploy/crds`, as `kubectl apply -k` installs them), waited for until the
/// API server serves each.
pub fn install_crds(server: &KubeApiServer) {
    server.kubectl(&["apply", "-k", &deploy("crds")]);
    server.kubectl(&[
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/packetcaptures.podcap.io",
        "crd/packetcaptureschedules.podcap.io",
        "crd/packetcaptureslices.podcap.io",
    ]);
}

/// Writes a kubeconfig for `server` that authenticates with `token` (CA by path, namespace
/// `default`): what a service account's in-cluster config amounts to.
pub fn write_kubeconfig(server: &KubeApiServer, token: &str, path: &Path) {
    std::fs::write(
        path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {}\n    certificate-authority: {}\nusers:\n- name: user\n  user:\n    token: {token}\ncontexts:\n- name: test\n  context:\n    cluster: test\n    user: user\n    namespace: default\ncurrent-context: test\n",
            server.url,
            server.ca_cert.display()
        ),
    )
    .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

/// A client with `kubeconfig`'s credentials.
pub async fn client_for(kubeconfig: &Path) -> kube::Client {
    let config = kube::Config::from_custom_kubeconfig(
        Kubeconfig::read_from(kubeconfig).unwrap(),
        &KubeConfigOptions::default(),
    )
    .await
    .unwrap();
    kube::Client::try_from(config).unwrap()
}

/// One `capture-agent run --node NODE` process with its own data directory and file endpoint;
/// SIGKILLed (by its PID) and reaped on drop. Its stderr goes to a log file.
pub struct Agent {
    pub node: String,
    pub data_dir: PathBuf,
    /// The file endpoint (`--listen`).
    pub listen: SocketAddr,
    binary: PathBuf,
    kubeconfig: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl Agent {
    /// Starts `binary run --node NODE` with data directory and log in `scratch`, using
    /// `kubeconfig`, and waits (up to 30 s) for its `/healthz`.
    pub fn new(binary: &Path, node: &str, scratch: &Path, kubeconfig: &Path) -> Agent {
        let mut agent = Agent {
            node: node.to_string(),
            data_dir: scratch.join(node),
            listen: free_port(),
            binary: binary.to_path_buf(),
            kubeconfig: kubeconfig.to_path_buf(),
            log: scratch.join(format!("{node}.log")),
            child: None,
        };
        agent.start();
        agent
    }

    /// (Re)starts the process with the same node, data directory and address.
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "{} is already running", self.node);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(&self.binary)
            .args(["run", "--node", &self.node, "--data-dir"])
            .arg(&self.data_dir)
            .args(["--listen", &self.listen.to_string()])
            // The API reaches test agents on loopback; the certificate must name it.
            .args(["--tls-san", "127.0.0.1"])
            .env("KUBECONFIG", &self.kubeconfig)
            .env("PODCAP_LOG", "info,kube=warn,hyper=warn,tower=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting capture-agent");
        self.child = Some(child);
        eventually(&format!("{}'s /healthz", self.node), 30, || {
            http_get(self.listen, "/healthz", None, None)
                .ok()
                .filter(|r| r.status == 200 && r.body == b"ok")
        });
    }

    /// SIGKILL: no chance to close files or report.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then waits (up to 20 s) for a clean exit; panics unless it exits 0.
    pub fn terminate(&mut self) {
        let mut child = self.child.take().expect("a running agent");
        let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap());
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{} did not exit within 20 s of SIGTERM", self.node);
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        assert!(status.success(), "{}: {status}", self.node);
    }

    /// Its log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Panics if the log shows a refused status apply or a panic.
    pub fn assert_clean_log(&self) {
        let log = self.log();
        assert!(
            !log.contains("cannot apply this node's status") && !log.contains("panicked"),
            "{}:\n{log}",
            self.node
        );
    }

    /// Where it keeps a capture's files.
    pub fn capture_dir(&self, uid: &str) -> PathBuf {
        self.data_dir.join("captures").join(uid)
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The kubelet of every fake node: creates Pods bound to a node and "starts" them on testkit
/// netns [`Pod`]s. Drops its host routes when dropped (before the netns pods go).
pub struct Kubelet {
    routes: Undo,
    client: kube::Client,
    runtime: tokio::runtime::Runtime,
}

impl Kubelet {
    /// A kubelet talking to `server` as its admin.
    pub fn new(server: &KubeApiServer) -> Kubelet {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let client = runtime.block_on(client_for(&server.kubeconfig));
        Kubelet {
            routes: Undo::new(),
            client,
            runtime,
        }
    }

    /// A Pod `namespace/name` labelled `app: APP`, created through the API bound to `node`, then
    /// started as its kubelet would: the /32 host route to `pod`'s IP via its host veth (as a
    /// routed CNI adds it), and the status patched to Running with that IP.
    pub fn start_pod(
        &mut self,
        server: &KubeApiServer,
        namespace: &str,
        name: &str,
        app: &str,
        node: &str,
        pod: &Pod,
    ) {
        let ip = pod.pod_v4.to_string();
        let route = format!("{ip}/32");
        self.routes.run(
            "ip",
            &["route", "add", &route, "dev", &pod.host_if],
            &["ip", "route", "del", &route, "dev", &pod.host_if],
        );
        server.kubectl_stdin(
            &["apply", "-n", namespace, "-f", "-"],
            Some(&format!(
                "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  labels:\n    app: {app}\nspec:\n  nodeName: {node}\n  tolerations:\n  - operator: Exists\n  containers:\n  - name: {app}\n    image: registry.invalid/{app}:1\n"
            )),
        );
        let api: Api<KubePod> = Api::namespaced(self.client.clone(), namespace);
        let status = json!({"status": {
            "phase": "Running",
            "podIP": ip,
            "podIPs": [{"ip": ip}],
            "hostIP": "127.0.0.1",
        }});
        self.runtime
            .block_on(api.patch_status(name, &PatchParams::default(), &Patch::Merge(&status)))
            .expect("patching the pod's status as its kubelet");
    }
}

/// A minimal HTTP/1.1 answer.
pub struct Answer {
    pub status: u16,
    pub headers: String,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.eq_ignore_ascii_case(name).then(|| value.trim())
        })
    }
}

/// A TLS connection to an agent's file endpoint at `address`, trusting [`agent_ca`] only and
/// checking that the certificate names `address`; reads time out after `read_timeout`.
pub fn agent_connection(
    address: SocketAddr,
    read_timeout: Duration,
) -> std::io::Result<rustls::StreamOwned<rustls::ClientConnection, TcpStream>> {
    let tcp = TcpStream::connect_timeout(&address, Duration::from_secs(2))?;
    tcp.set_read_timeout(Some(read_timeout))?;
    let connection =
        rustls::ClientConnection::new(agent_client_config(), ServerName::from(address.ip()))
            .map_err(std::io::Error::other)?;
    Ok(rustls::StreamOwned::new(connection, tcp))
}

/// GET `path` from an agent's file endpoint over HTTPS (trusting [`agent_ca`] only, the
/// certificate checked against `address`), with an optional bearer token and Range, reading to
/// the end (Connection: close).
pub fn http_get(
    address: SocketAddr,
    path: &str,
    token: Option<&str>,
    range: Option<&str>,
) -> std::io::Result<Answer> {
    let mut stream = agent_connection(address, Duration::from_secs(20))?;
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n");
    if let Some(token) = token {
        request.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    if let Some(range) = range {
        request.push_str(&format!("Range: {range}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes())?;
    let mut raw = Vec::new();
    match stream.read_to_end(&mut raw) {
        // A server that closes without TLS's close_notify: the HTTP framing below still says
        // whether the body is whole.
        Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof => {}
        other => {
            other?;
        }
    }
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no end of headers"))?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut body = raw[split + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    Ok(Answer {
        status,
        headers: head,
        body,
    })
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(line_end) = data.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(String::from_utf8_lossy(&data[..line_end]).trim(), 16)
            .unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = line_end + 2;
        out.extend_from_slice(&data[start..(start + size).min(data.len())]);
        data = &data[(start + size + 2).min(data.len())..];
    }
    out
}
