//! A real single-node Kubernetes cluster for the suites that run podcap as a user does: etcd,
//! kube-apiserver, controller-manager, scheduler, kube-proxy, containerd and a real kubelet with
//! the bridge or the ptp CNI plugin, all in a private network + mount namespace
//! (`scripts/real-node/`, documented in its README). [`RealNode`] starts one in a short
//! directory under /tmp (unix sockets live under it), runs commands inside its namespaces
//! (`DIR/run`), imports image tarballs into its containerd, and stops exactly what it started
//! when dropped — or, if the test process was killed, the next start stops it (the directory
//! names its owner's PID).
//!
//! The cluster needs root and the cached builds of `scripts/real-node/build.sh`; the suites need
//! podcap's own images too (`deploy/images/build.sh DIR`, found through `PODCAP_IMAGES_DIR`).
//! Without them a suite is skipped with the reason, unless `PODCAP_REQUIRE_KUBE=1` (as in CI)
//! makes that a failure.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::kube::{read_env, repo_root, succeeded};
use crate::owned;

const DIR_PREFIX: &str = "podcap-rn-";

/// The CNI configuration the node's pods are wired with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cni {
    /// Pods' host-side veths are ports of the bridge `cni0` (flannel, the plain bridge plugin).
    Bridge,
    /// Every pod has a `/32` route on its host-side veth (Calico, Cilium's routing mode).
    Ptp,
}

impl Cni {
    pub fn name(self) -> &'static str {
        match self {
            Cni::Bridge => "bridge",
            Cni::Ptp => "ptp",
        }
    }
}

/// A running cluster; stopped (by `scripts/real-node/stop.sh`, which signals only the PIDs its
/// start recorded) when dropped.
pub struct RealNode {
    pub cni: Cni,
    dir: PathBuf,
    env: BTreeMap<String, String>,
}

/// Why no cluster could be had.
#[derive(Debug)]
pub enum RealNodeError {
    /// This machine cannot run one (not root, the build failed, no images): skip.
    Unavailable(String),
    /// It should have started and did not.
    Failed(String),
}

/// `PODCAP_REQUIRE_KUBE=1`: a missing cluster or image fails the suite instead of skipping it.
fn required() -> bool {
    std::env::var("PODCAP_REQUIRE_KUBE").is_ok_and(|v| v == "1")
}

/// podcap's image tarballs (`capture-agent.tar`, `capture-api.tar`) as `deploy/images/build.sh
/// DIR` wrote them, from `PODCAP_IMAGES_DIR`.
pub fn images_dir() -> Result<PathBuf, RealNodeError> {
    let dir = std::env::var_os("PODCAP_IMAGES_DIR").map(PathBuf::from).ok_or_else(|| {
        RealNodeError::Unavailable(
            "PODCAP_IMAGES_DIR is not set (build the images with `deploy/images/build.sh DIR` and set it to DIR)".into(),
        )
    })?;
    for image in ["capture-agent.tar", "capture-api.tar"] {
        if !dir.join(image).is_file() {
            return Err(RealNodeError::Unavailable(format!(
                "{} has no {image} (deploy/images/build.sh writes it)",
                dir.display()
            )));
        }
    }
    Ok(dir)
}

fn scripts() -> PathBuf {
    repo_root().join("scripts/real-node")
}

impl RealNode {
    /// Builds (cached) and starts a cluster with `cni`; returns once its Node is Ready.
    pub fn start(cni: Cni) -> Result<RealNode, RealNodeError> {
        if !is_root() {
            return Err(RealNodeError::Unavailable("needs root".into()));
        }
        owned::stop_orphans(
            Path::new("/tmp"),
            DIR_PREFIX,
            "a real-node cluster",
            |dir| {
                let _ = Command::new(scripts().join("stop.sh"))
                    .arg(dir)
                    .stdin(Stdio::null())
                    .output();
            },
        );
        let build = Command::new(scripts().join("build.sh"))
            .stdin(Stdio::null())
            .output()
            .map_err(|e| RealNodeError::Unavailable(format!("cannot run build.sh: {e}")))?;
        if !build.status.success() {
            return Err(RealNodeError::Unavailable(format!(
                "scripts/real-node/build.sh failed ({}):\n{}",
                build.status,
                tail(&String::from_utf8_lossy(&build.stderr), 40)
            )));
        }
        // Short: unix sockets live under it. stop.sh removes what start.sh made.
        let dir = owned::create(Path::new("/tmp"), DIR_PREFIX).map_err(RealNodeError::Failed)?;
        let started = Command::new(scripts().join("start.sh"))
            .arg(&dir)
            .args(["--cni", cni.name()])
            .env(
                "REAL_NODE_BUILD",
                String::from_utf8_lossy(&build.stdout).as_ref(),
            )
            .stdin(Stdio::null())
            .output()
            .map_err(|e| RealNodeError::Failed(format!("cannot run start.sh: {e}")))?;
        if !started.status.success() {
            // start.sh has stopped what it started and printed the log tails.
            owned::release(&dir);
            return Err(RealNodeError::Failed(format!(
                "scripts/real-node/start.sh --cni {} failed ({}):\n{}",
                cni.name(),
                started.status,
                String::from_utf8_lossy(&started.stderr)
            )));
        }
        // From here on Drop stops the cluster, whatever happens next.
        let mut node = RealNode {
            cni,
            dir,
            env: BTreeMap::new(),
        };
        node.env = read_env(&node.dir.join("env")).map_err(RealNodeError::Failed)?;
        Ok(node)
    }

    /// A cluster, or — when this machine cannot run one and `PODCAP_REQUIRE_KUBE` is not `1` —
    /// None after printing why. Panics when one should have started and did not.
    pub fn start_or_skip(test: &str, cni: Cni) -> Option<RealNode> {
        match RealNode::start(cni) {
            Ok(node) => Some(node),
            Err(RealNodeError::Unavailable(why)) if !required() => {
                eprintln!("SKIPPED {test}: {why}; set PODCAP_REQUIRE_KUBE=1 to fail instead");
                None
            }
            Err(RealNodeError::Unavailable(why) | RealNodeError::Failed(why)) => {
                panic!("{test}: {why}")
            }
        }
    }

    /// A value of `DIR/env` (see scripts/real-node/README.md); panics when it is missing.
    pub fn env(&self, key: &str) -> &str {
        self.env
            .get(key)
            .unwrap_or_else(|| panic!("{}/env has no {key}", self.dir.display()))
    }

    /// `DIR/run ARGS…`: ARGS inside the cluster's namespaces (kubectl and ctr first on PATH, the
    /// admin's KUBECONFIG set), with `stdin` as its input.
    pub fn run(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        let mut child = Command::new(self.dir.join("run"))
            .args(args)
            .current_dir("/tmp")
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {args:?} in the cluster: {e}"));
        if let Some(input) = stdin {
            let mut pipe = child.stdin.take().expect("a piped stdin");
            pipe.write_all(input)
                .unwrap_or_else(|e| panic!("writing the input of {args:?}: {e}"));
        }
        child
            .wait_with_output()
            .unwrap_or_else(|e| panic!("waiting for {args:?}: {e}"))
    }

    /// A command to start inside the cluster's namespaces, for callers that stream its output.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(self.dir.join("run"));
        command.args(args).current_dir("/tmp");
        command
    }

    /// `kubectl ARGS…` as the cluster admin.
    pub fn kubectl_output(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut all = vec!["kubectl"];
        all.extend_from_slice(args);
        self.run(&all, stdin.map(str::as_bytes))
    }

    /// `kubectl ARGS…`' stdout; panics with its stderr when it fails.
    pub fn kubectl(&self, args: &[&str]) -> String {
        self.kubectl_stdin(args, None)
    }

    /// `kubectl ARGS…` with `stdin`; its stdout; panics with its stderr when it fails.
    pub fn kubectl_stdin(&self, args: &[&str], stdin: Option<&str>) -> String {
        succeeded(&self.kubectl_output(args, stdin), args)
    }

    /// Imports an OCI image tarball into the node's containerd and tags it `reference` (the
    /// name the manifests use), as a user pushing podcap's images to their own registry would.
    pub fn import_image(&self, tarball: &Path, reference: &str) {
        let path = tarball.to_str().expect("UTF-8 paths");
        let output = self.run(&["ctr", "image", "import", path], None);
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "ctr image import {path}: {}{}",
            stdout,
            String::from_utf8_lossy(&output.stderr)
        );
        // "unpacking REF (sha256:…)...done"
        let imported = stdout
            .lines()
            .find_map(|line| line.strip_prefix("unpacking ")?.split(' ').next())
            .unwrap_or_else(|| panic!("no image reference in ctr's answer: {stdout}"))
            .to_string();
        if imported != reference {
            let _ = self.run(&["ctr", "image", "rm", reference], None);
            let tagged = self.run(&["ctr", "image", "tag", &imported, reference], None);
            assert!(
                tagged.status.success(),
                "ctr image tag {imported} {reference}: {}",
                String::from_utf8_lossy(&tagged.stderr)
            );
        }
    }

    /// The last `lines` lines of every component's log (kubelet, containerd, apiserver, …).
    pub fn component_logs(&self, lines: usize) -> String {
        let mut report = String::new();
        let Ok(entries) = std::fs::read_dir(self.dir.join("logs")) else {
            return report;
        };
        let mut logs: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        logs.sort();
        for log in logs {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            report.push_str(&format!(
                "---- {} (last {lines} lines) ----\n{}\n",
                log.display(),
                tail(&text, lines)
            ));
        }
        report
    }
}

impl Drop for RealNode {
    fn drop(&mut self) {
        let stopped = Command::new(scripts().join("stop.sh"))
            .arg(&self.dir)
            .stdin(Stdio::null())
            .output();
        if let Ok(output) = &stopped {
            if !output.status.success() {
                eprintln!(
                    "stop.sh {}: {}",
                    self.dir.display(),
                    String::from_utf8_lossy(&output.stderr)
                );
            }
        }
        owned::release(&self.dir);
    }
}

/// Whether this process runs as root (effective uid 0, the second field of `Uid:`).
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|status| {
        status
            .lines()
            .find_map(|line| line.strip_prefix("Uid:"))
            .and_then(|ids| ids.split_whitespace().nth(1))
            == Some("0")
    })
}

/// The last `lines` lines of `text`, each cut at 500 characters (the controller-manager logs
/// whole objects on one line).
fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..]
        .iter()
        .map(|line| match line.char_indices().nth(500) {
            Some((cut, _)) => format!("{} …", &line[..cut]),
            None => line.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}
