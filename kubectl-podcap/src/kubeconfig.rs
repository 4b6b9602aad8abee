//! Kubernetes mode's connection: the kubeconfig as kubectl resolves it (`--kubeconfig`, else
//! `$KUBECONFIG`'s files merged first-wins, else `~/.kube/config`; `--context`, else
//! `current-context`), giving the namespace, the cluster's API server and CA, and the user's bearer
//! token (`token`, `tokenFile`, or an exec credential plugin's `status.token`).
//!
//! The podcap API authenticates that token itself (TokenReview, then SubjectAccessReview per
//! request), so RBAC decides. By default it is reached through the API server's service proxy,
//! `SERVER/api/v1/namespaces/podcap-system/services/capture-api:http/proxy/...` ([`proxy_base`]):
//! the API server authenticates the user for the proxy (they need `get services/proxy` on the
//! Service) and then removes the `Authorization` header before forwarding, so the plugin sends the
//! same token in `X-Podcap-Authorization` too, which is forwarded untouched and which capture-api
//! reads when `Authorization` is absent. `--port-forward` reaches it through `kubectl
//! port-forward` to the Service instead (see [`PortForward`]).
//!
//! A user with a client certificate has no bearer token to forward: the error says to pass one.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum KubeconfigError {
    #[error("no kubeconfig found (tried {0}): pass --server and --token for a standalone API, or --kubeconfig")]
    NotFound(String),
    #[error("cannot read kubeconfig {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("kubeconfig has no context {0:?}")]
    NoContext(String),
    #[error("kubeconfig has no current-context: pass --context")]
    NoCurrentContext,
    #[error("kubeconfig user {user:?} has no bearer token (it uses {how}); the podcap API authenticates Kubernetes bearer tokens: pass --token \"$(kubectl create token SERVICEACCOUNT)\"")]
    NoToken { user: String, how: String },
    #[error("the exec credential plugin of user {user:?} failed: {reason}")]
    Exec { user: String, reason: String },
    #[error("cannot start `kubectl port-forward` to the podcap API: {0}")]
    PortForward(String),
}

/// What the kubeconfig says for one context.
#[derive(Debug, Clone)]
pub struct KubeContext {
    pub context: String,
    pub user: String,
    pub namespace: Option<String>,
    pub token: Option<String>,
    /// When there is no token: how the user authenticates (for the error).
    pub auth_kind: String,
    /// The cluster's API server, e.g. `https://10.0.0.1:6443` (no trailing slash).
    pub server: Option<String>,
    /// The cluster's CA bundle (PEM), from `certificate-authority-data` or `certificate-authority`.
    pub ca_pem: Option<Vec<u8>>,
    /// `insecure-skip-tls-verify: true`.
    pub insecure: bool,
}

/// The base URL of the podcap API through the API server's service proxy.
pub fn proxy_base(server: &str) -> String {
    format!(
        "{}/api/v1/namespaces/podcap-system/services/capture-api:http/proxy",
        server.trim_end_matches('/')
    )
}

fn files(explicit: Option<&Path>) -> Vec<PathBuf> {
    if let Some(path) = explicit {
        return vec![path.to_path_buf()];
    }
    if let Some(list) = std::env::var_os("KUBECONFIG").filter(|v| !v.is_empty()) {
        return std::env::split_paths(&list).collect();
    }
    std::env::var_os("HOME")
        .map(|home| vec![PathBuf::from(home).join(".kube").join("config")])
        .unwrap_or_default()
}

fn named<'a>(config: &'a [Value], section: &str, name: &str, key: &str) -> Option<&'a Value> {
    config.iter().find_map(|c| {
        c[section]
            .as_array()?
            .iter()
            .find(|e| e["name"].as_str() == Some(name))
            .map(|e| &e[key])
    })
}

/// Resolves the context (`--context` or current) of the kubeconfig.
pub fn resolve(
    explicit: Option<&Path>,
    context: Option<&str>,
) -> Result<KubeContext, KubeconfigError> {
    let paths = files(explicit);
    let mut configs = Vec::new();
    for path in &paths {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                let value: Value =
                    serde_norway::from_str(&text).map_err(|e| KubeconfigError::Read {
                        path: path.display().to_string(),
                        reason: e.to_string(),
                    })?;
                configs.push((path.clone(), value));
            }
            Err(e) if explicit.is_some() => {
                return Err(KubeconfigError::Read {
                    path: path.display().to_string(),
                    reason: e.to_string(),
                })
            }
            Err(_) => {}
        }
    }
    if configs.is_empty() {
        let tried = paths
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ");
        return Err(KubeconfigError::NotFound(tried));
    }
    let base_dir = configs[0]
        .0
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let values: Vec<Value> = configs.into_iter().map(|(_, v)| v).collect();
    let context = match context {
        Some(c) => c.to_string(),
        None => values
            .iter()
            .find_map(|v| v["current-context"].as_str().filter(|c| !c.is_empty()))
            .ok_or(KubeconfigError::NoCurrentContext)?
            .to_string(),
    };
    let ctx = named(&values, "contexts", &context, "context")
        .ok_or_else(|| KubeconfigError::NoContext(context.clone()))?;
    let user = ctx["user"].as_str().unwrap_or("").to_string();
    let namespace = ctx["namespace"]
        .as_str()
        .filter(|n| !n.is_empty())
        .map(str::to_string);
    let auth = named(&values, "users", &user, "user")
        .cloned()
        .unwrap_or(Value::Null);
    let (token, auth_kind) = user_token(&user, &auth, &base_dir)?;
    let cluster_name = ctx["cluster"].as_str().unwrap_or("");
    let cluster = named(&values, "clusters", cluster_name, "cluster")
        .cloned()
        .unwrap_or(Value::Null);
    let server = cluster["server"]
        .as_str()
        .filter(|s| !s.is_empty())
        .map(|s| s.trim_end_matches('/').to_string());
    let ca_pem = if let Some(data) = cluster["certificate-authority-data"].as_str() {
        use base64::Engine as _;
        Some(
            base64::engine::general_purpose::STANDARD
                .decode(data.trim())
                .map_err(|e| KubeconfigError::Read {
                    path: format!("cluster {cluster_name:?} certificate-authority-data"),
                    reason: e.to_string(),
                })?,
        )
    } else if let Some(file) = cluster["certificate-authority"].as_str() {
        let path = base_dir.join(file);
        Some(std::fs::read(&path).map_err(|e| KubeconfigError::Read {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?)
    } else {
        None
    };
    Ok(KubeContext {
        context,
        user,
        namespace,
        token,
        auth_kind,
        server,
        ca_pem,
        insecure: cluster["insecure-skip-tls-verify"].as_bool() == Some(true),
    })
}

fn user_token(
    user: &str,
    auth: &Value,
    base_dir: &Path,
) -> Result<(Option<String>, String), KubeconfigError> {
    if let Some(token) = auth["token"].as_str().filter(|t| !t.is_empty()) {
        return Ok((Some(token.to_string()), "a token".into()));
    }
    if let Some(file) = auth["tokenFile"].as_str() {
        let path = base_dir.join(file);
        let token = std::fs::read_to_string(&path).map_err(|e| KubeconfigError::Read {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        return Ok((Some(token.trim().to_string()), "a token file".into()));
    }
    if auth["exec"].is_object() {
        return exec_token(user, &auth["exec"]).map(|t| (Some(t), "an exec plugin".into()));
    }
    let how =
        if auth["client-certificate"].is_string() || auth["client-certificate-data"].is_string() {
            "a client certificate"
        } else if auth["username"].is_string() {
            "basic auth"
        } else if auth["auth-provider"].is_object() {
            "an auth-provider"
        } else {
            "no credentials"
        };
    Ok((None, how.into()))
}

/// Runs a client.authentication.k8s.io exec plugin as kubectl does and takes its token.
fn exec_token(user: &str, exec: &Value) -> Result<String, KubeconfigError> {
    let fail = |reason: String| KubeconfigError::Exec {
        user: user.to_string(),
        reason,
    };
    let program = exec["command"]
        .as_str()
        .ok_or_else(|| fail("no command".into()))?;
    let mut command = Command::new(program);
    if let Some(args) = exec["args"].as_array() {
        command.args(args.iter().filter_map(Value::as_str));
    }
    if let Some(env) = exec["env"].as_array() {
        for e in env {
            if let (Some(k), Some(v)) = (e["name"].as_str(), e["value"].as_str()) {
                command.env(k, v);
            }
        }
    }
    let api_version = exec["apiVersion"]
        .as_str()
        .unwrap_or("client.authentication.k8s.io/v1");
    let info = serde_json::json!({
        "apiVersion": api_version,
        "kind": "ExecCredential",
        "spec": {"interactive": false},
    });
    command.env("KUBERNETES_EXEC_INFO", info.to_string());
    let output = command
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| fail(format!("cannot run {program:?}: {e}")))?;
    if !output.status.success() {
        return Err(fail(format!("{program:?} exited with {}", output.status)));
    }
    let credential: Value = serde_json::from_slice(&output.stdout)
        .map_err(|e| fail(format!("{program:?} printed no ExecCredential: {e}")))?;
    credential["status"]["token"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| {
            fail(
                "its ExecCredential has no status.token (client certificates are not supported)"
                    .into(),
            )
        })
}

/// `kubectl port-forward -n podcap-system svc/capture-api :80` for as long as this lives.
pub struct PortForward {
    child: Child,
    pub base: String,
}

impl PortForward {
    pub fn start(
        kubeconfig: Option<&Path>,
        context: Option<&str>,
    ) -> Result<PortForward, KubeconfigError> {
        let kubectl = std::env::var_os("PODCAP_KUBECTL").unwrap_or_else(|| "kubectl".into());
        let mut command = Command::new(kubectl);
        if let Some(path) = kubeconfig {
            command.arg("--kubeconfig").arg(path);
        }
        if let Some(context) = context {
            command.args(["--context", context]);
        }
        command
            .args([
                "-n",
                "podcap-system",
                "port-forward",
                "svc/capture-api",
                "--address",
                "127.0.0.1",
                ":80",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command
            .spawn()
            .map_err(|e| KubeconfigError::PortForward(e.to_string()))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| KubeconfigError::PortForward("no stdout".into()))?;
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                // "Forwarding from 127.0.0.1:40123 -> 8080"
                if !sent {
                    if let Some(port) = line
                        .strip_prefix("Forwarding from 127.0.0.1:")
                        .and_then(|rest| rest.split_whitespace().next())
                    {
                        let _ = sender.send(port.to_string());
                        sent = true;
                    }
                }
            }
        });
        match receiver.recv_timeout(Duration::from_secs(20)) {
            Ok(port) => Ok(PortForward {
                child,
                base: format!("http://127.0.0.1:{port}"),
            }),
            Err(_) => {
                let _ = child.kill();
                let mut reason = String::new();
                if let Some(mut stderr) = child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut stderr, &mut reason);
                }
                let _ = child.wait();
                Err(KubeconfigError::PortForward(format!(
                    "{} (is podcap installed in podcap-system, and may you create pods/portforward there? Or pass --server)",
                    reason.trim()
                )))
            }
        }
    }
}

impl Drop for PortForward {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
