//! A real kube-apiserver v1.20.2 (with etcd and kube-controller-manager) on loopback for tests,
//! and the Debian kubectl of the same release to talk to it.
//!
//! [`KubeApiServer::start`] runs `scripts/kube-apiserver/build.sh` (a cache hit after the first
//! build, about 2 s), then `start.sh` into a fresh temporary directory (about 8 s), and exposes
//! what `start.sh` wrote: the URL, the CA, the admin/alice/bob tokens and an admin kubeconfig.
//! Dropping it runs `stop.sh`, also when the test panics. A test process killed outright cannot
//! run `Drop`, so every start first stops instances whose owning test process is gone.
//!
//! When the apiserver cannot be built here (not Debian, or not root on a cache miss), `start`
//! answers [`KubeError::Unavailable`] so tests can skip with a message — unless
//! `PODCAP_REQUIRE_KUBE=1` (set by `.ci/run`), where skipping would hide a broken setup.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::owned;

/// Directory-name prefix of every instance, so stale ones can be found and stopped.
const DIR_PREFIX: &str = "podcap-kube-";
/// Why no apiserver could be started.
#[derive(Debug)]
pub enum KubeError {
    /// The binaries or kubectl cannot be had on this machine: skip the test.
    Unavailable(String),
    /// They exist but starting failed: a real failure.
    Failed(String),
}

impl std::fmt::Display for KubeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KubeError::Unavailable(why) => write!(f, "no kube-apiserver on this machine: {why}"),
            KubeError::Failed(why) => write!(f, "starting kube-apiserver failed: {why}"),
        }
    }
}

/// A running etcd + kube-apiserver (+ kube-controller-manager); stopped on drop.
pub struct KubeApiServer {
    dir: PathBuf,
    /// `https://127.0.0.1:<port>`.
    pub url: String,
    /// The CA that signed the serving certificate (SAN 127.0.0.1 and localhost).
    pub ca_cert: PathBuf,
    /// User `admin` in group `system:masters`.
    pub admin_token: String,
    /// Ordinary users with no permissions until a test grants some.
    pub alice_token: String,
    pub bob_token: String,
    /// Tokens of podcap's service accounts (`system:serviceaccount:podcap-system:capture-agent`
    /// and `...:capture-api`), so deploy/'s RBAC applies to agents and API run by tests.
    pub agent_token: String,
    pub api_token: String,
    /// Admin kubeconfig (token auth, CA by path).
    pub kubeconfig: PathBuf,
    /// Debian's kubectl v1.20.2 (see `scripts/kube-apiserver/kubectl.sh`).
    pub kubectl: PathBuf,
    /// kube-apiservers started again by [`KubeApiServer::restart_apiserver`], reaped on drop.
    restarted: std::sync::Mutex<Vec<std::process::Child>>,
}

/// `scripts/kube-apiserver/` of this checkout.
pub fn scripts_dir() -> PathBuf {
    repo_root().join("scripts/kube-apiserver")
}

/// The repository root (for `deploy/`, `scripts/`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs one of the scripts; its last stdout line, or its stderr on failure.
fn run_script(name: &str, args: &[&Path], envs: &[(&str, &Path)]) -> Result<String, String> {
    let output = Command::new(scripts_dir().join(name))
        .args(args)
        .envs(envs.iter().copied())
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {name}: {e}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(format!(
            "{name} failed ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(stdout.lines().last().unwrap_or("").trim().to_string())
}

/// The Debian kubectl (cached by `kubectl.sh`), without starting a server.
pub fn kubectl_path() -> Result<PathBuf, KubeError> {
    run_script("kubectl.sh", &[], &[])
        .map(PathBuf::from)
        .map_err(KubeError::Unavailable)
}

fn kube_required() -> bool {
    std::env::var("PODCAP_REQUIRE_KUBE").is_ok_and(|v| v == "1")
}

impl KubeApiServer {
    /// Builds (cached) and starts an instance in a new temporary directory.
    pub fn start() -> Result<KubeApiServer, KubeError> {
        owned::stop_orphans(
            &std::env::temp_dir(),
            DIR_PREFIX,
            "a kube-apiserver",
            |dir| {
                let _ = run_script("stop.sh", &[dir], &[]);
            },
        );
        let bin_dir = run_script("build.sh", &[], &[]).map_err(KubeError::Unavailable)?;
        let kubectl = kubectl_path()?;
        let dir = owned::create(&std::env::temp_dir(), DIR_PREFIX).map_err(KubeError::Failed)?;
        let started = run_script(
            "start.sh",
            &[&dir],
            &[("KUBE_BIN_DIR", Path::new(&bin_dir))],
        );
        let env_file = match started {
            Ok(env_file) => env_file,
            Err(e) => {
                // start.sh has stopped what it started; keep its logs for the report.
                owned::release(&dir);
                return Err(KubeError::Failed(e));
            }
        };
        // From here on Drop stops the instance, whatever happens next.
        let mut server = KubeApiServer {
            dir,
            url: String::new(),
            ca_cert: PathBuf::new(),
            admin_token: String::new(),
            alice_token: String::new(),
            bob_token: String::new(),
            agent_token: String::new(),
            api_token: String::new(),
            kubeconfig: PathBuf::new(),
            kubectl,
            restarted: std::sync::Mutex::default(),
        };
        let env = read_env(Path::new(&env_file)).map_err(KubeError::Failed)?;
        let get = |key: &str| {
            env.get(key)
                .cloned()
                .ok_or_else(|| KubeError::Failed(format!("{env_file} has no {key}")))
        };
        server.url = get("APISERVER")?;
        server.ca_cert = PathBuf::from(get("CA_CERT")?);
        server.admin_token = get("ADMIN_TOKEN")?;
        server.alice_token = get("ALICE_TOKEN")?;
        server.bob_token = get("BOB_TOKEN")?;
        server.agent_token = get("AGENT_TOKEN")?;
        server.api_token = get("API_TOKEN")?;
        server.kubeconfig = PathBuf::from(get("KUBECONFIG")?);
        Ok(server)
    }

    /// Starts an instance, or — when none can be had here and `PODCAP_REQUIRE_KUBE` is not
    /// `1` — prints why and returns `None` so the caller can skip. Panics on a failed start.
    pub fn start_or_skip(test: &str) -> Option<KubeApiServer> {
        match KubeApiServer::start() {
            Ok(server) => Some(server),
            Err(KubeError::Unavailable(why)) if !kube_required() => {
                eprintln!("SKIPPED {test}: no kube-apiserver on this machine ({why}); set PODCAP_REQUIRE_KUBE=1 to fail instead");
                None
            }
            Err(e) => panic!("{test}: {e}"),
        }
    }

    /// Kills the kube-apiserver process alone, as an outage: etcd (with every object) and the
    /// controller manager keep running, and clients get "connection refused" until
    /// [`KubeApiServer::restart_apiserver`] starts it again with the same command line.
    pub fn stop_apiserver(&self) -> StoppedApiServer {
        let pids = std::fs::read_to_string(self.dir.join("pids")).expect("the instance's pids");
        let pid: u32 = pids
            .lines()
            .filter_map(|line| line.trim().parse().ok())
            .find(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/comm"))
                    .is_ok_and(|comm| comm.trim() == "kube-apiserver")
            })
            .expect("a running kube-apiserver among the instance's pids");
        let command: Vec<std::ffi::OsString> = std::fs::read(format!("/proc/{pid}/cmdline"))
            .expect("the kube-apiserver's command line")
            .split(|b| *b == 0)
            .filter(|arg| !arg.is_empty())
            .map(|arg| std::ffi::OsStr::from_bytes(arg).to_os_string())
            .collect();
        // By its PID: the process this instance started. SIGKILL, as a crash: a SIGTERMed
        // kube-apiserver drains its watches for longer than an outage test wants to wait.
        let status = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill {pid}");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while Path::new(&format!("/proc/{pid}")).exists() && !is_zombie(pid) {
            assert!(
                std::time::Instant::now() < deadline,
                "the kube-apiserver ({pid}) did not stop"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        StoppedApiServer { pid, command }
    }

    /// Starts the kube-apiserver that [`KubeApiServer::stop_apiserver`] stopped, on the same
    /// port with the same certificates and etcd, and waits until it is ready (`/readyz`).
    pub fn restart_apiserver(&self, stopped: StoppedApiServer) {
        let log = std::fs::OpenOptions::new()
            .append(true)
            .open(self.dir.join("kube-apiserver.log"))
            .expect("the kube-apiserver log");
        let (program, args) = stopped.command.split_first().expect("a command line");
        let child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("the log"))
            .stderr(log)
            .spawn()
            .expect("restarting the kube-apiserver");
        // stop.sh stops what `pids` lists: the new process instead of the old one.
        let pids_file = self.dir.join("pids");
        let pids = std::fs::read_to_string(&pids_file).expect("the instance's pids");
        let pids: String = pids
            .lines()
            .map(|line| {
                if line.trim() == stopped.pid.to_string() {
                    format!("{}\n", child.id())
                } else {
                    format!("{line}\n")
                }
            })
            .collect();
        std::fs::write(&pids_file, pids).expect("writing the instance's pids");
        self.restarted.lock().expect("restarted").push(child);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
        while !self
            .kubectl_output(&["get", "--raw", "/readyz"], None)
            .status
            .success()
        {
            assert!(
                std::time::Instant::now() < deadline,
                "the restarted kube-apiserver did not become ready:\n{}",
                self.apiserver_log()
            );
            std::thread::sleep(std::time::Duration::from_millis(250));
        }
    }

    /// The runtime directory (logs: `kube-apiserver.log`, `etcd.log`, ...).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The apiserver's log so far (empty if it cannot be read).
    pub fn apiserver_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("kube-apiserver.log")).unwrap_or_default()
    }

    /// Runs kubectl as admin with `args`, feeding `stdin`.
    pub fn kubectl_output(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut command = Command::new(&self.kubectl);
        command
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            });
        let mut child = command.spawn().expect("running kubectl");
        if let Some(input) = stdin {
            child
                .stdin
                .take()
                .expect("kubectl stdin")
                .write_all(input.as_bytes())
                .expect("writing kubectl stdin");
        }
        child.wait_with_output().expect("waiting for kubectl")
    }

    /// Runs kubectl as admin and returns its stdout; panics with its stderr when it fails.
    pub fn kubectl(&self, args: &[&str]) -> String {
        self.kubectl_stdin(args, None)
    }

    /// [`KubeApiServer::kubectl`] with `stdin` as input (for `-f -`).
    pub fn kubectl_stdin(&self, args: &[&str], stdin: Option<&str>) -> String {
        succeeded(&self.kubectl_output(args, stdin), args)
    }

    /// Runs kubectl expecting it to fail; returns its stderr (panics if it succeeds).
    pub fn kubectl_fails(&self, args: &[&str], stdin: Option<&str>) -> String {
        let output = self.kubectl_output(args, stdin);
        assert!(
            !output.status.success(),
            "kubectl {} should have failed but printed:\n{}",
            args.join(" "),
            String::from_utf8_lossy(&output.stdout)
        );
        String::from_utf8_lossy(&output.stderr).into_owned()
    }
}

impl Drop for KubeApiServer {
    fn drop(&mut self) {
        if let Err(e) = run_script("stop.sh", &[&self.dir], &[]) {
            eprintln!("stopping the kube-apiserver in {}: {e}", self.dir.display());
        }
        // A restarted kube-apiserver is this process's child: stop.sh ended it, reap it.
        if let Ok(restarted) = self.restarted.get_mut() {
            for mut child in restarted.drain(..) {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        // stop.sh leaves files it did not write; the owner file is ours.
        owned::release(&self.dir);
    }
}

/// What [`KubeApiServer::restart_apiserver`] needs of a stopped kube-apiserver.
pub struct StoppedApiServer {
    pid: u32,
    command: Vec<std::ffi::OsString>,
}

/// True when `pid` has exited but is not reaped yet.
fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z'))
    })
}

/// kubectl's stdout after it succeeded; panics with all it printed when it failed.
pub(crate) fn succeeded(output: &Output, args: &[&str]) -> String {
    assert!(
        output.status.success(),
        "kubectl {} failed ({}):\n{}{}",
        args.join(" "),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// `start.sh`'s `KEY=value` lines.
pub(crate) fn read_env(path: &Path) -> Result<BTreeMap<String, String>, String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    Ok(text
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(key, value)| (key.trim().to_string(), value.trim().to_string()))
        .collect())
}
