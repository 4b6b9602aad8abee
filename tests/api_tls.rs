//! HTTPS on the API (`--tls-cert`, `--tls-key`), judged by clients we did not write (curl and
//! openssl): a client that trusts the certificate's CA gets the API; a plain-HTTP client, a
//! client that trusts another CA and one that trusts only the system's CAs are refused; a
//! certificate replaced on disk is served without a restart, and a broken replacement leaves
//! the last good one serving; a key that is not a key stops the start with a message naming the
//! files. Certificates come from `openssl` in a temporary directory, valid for 127.0.0.1.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// How long the API may take to notice changed certificate files (it looks every 2 s).
const RELOAD_WAIT: Duration = Duration::from_secs(15);

fn run(program: &str, args: &[&str], dir: &Path) -> std::process::Output {
    let out = Command::new(program)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("starting {program}: {e}"));
    out
}

fn openssl(dir: &Path, args: &[&str]) {
    let out = run("openssl", args, dir);
    assert!(
        out.status.success(),
        "openssl {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A new P-256 key `name.key` and, with `self_signed`, a certificate `name.pem` valid for a day
/// (a CA), else a request `name.csr`; subject CN=`cn`.
fn new_key(dir: &Path, name: &str, cn: &str, self_signed: bool) {
    let (key, out, subject) = (
        format!("{name}.key"),
        format!("{name}.{}", if self_signed { "pem" } else { "csr" }),
        format!("/CN={cn}"),
    );
    let mut args = vec![
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
    ];
    args.extend(["-nodes", "-keyout", &key, "-out", &out, "-subj", &subject]);
    if self_signed {
        args.extend(["-x509", "-days", "1"]);
    }
    openssl(dir, &args);
}

/// A CA `name.pem` / `name.key` in `dir`.
fn make_ca(dir: &Path, name: &str) {
    new_key(dir, name, name, true);
}

/// A server certificate for 127.0.0.1 with common name `cn`, signed by CA `ca`, written as
/// `out.pem` / `out.key` in `dir`.
fn issue(dir: &Path, ca: &str, cn: &str, out: &str) {
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    new_key(dir, out, cn, false);
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &format!("{out}.csr"),
            "-CA",
            &format!("{ca}.pem"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-out",
            &format!("{out}.pem"),
            "-days",
            "1",
            "-extfile",
            "server.ext",
        ],
    );
}

/// capture-api --standalone over HTTPS; killed when dropped. Its stderr is kept for the test.
struct TlsApi {
    child: Child,
    address: String,
    lines: Arc<Mutex<Vec<String>>>,
}

impl TlsApi {
    fn start(data_dir: &Path, cert: &Path, key: &Path) -> Result<TlsApi, String> {
        let mut child = Command::new(podcap_testkit::api_binary())
            .args(["--standalone", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .arg("--tls-cert")
            .arg(cert)
            .arg("--tls-key")
            .arg(key)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting capture-api");
        let stderr = child.stderr.take().expect("piped stderr");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (found, address) = mpsc::channel();
        let kept = lines.clone();
        std::thread::spawn(move || {
            let mut found = Some(found);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("{line}");
                if line.contains("listening on https://") {
                    if let (Some(found), Some(address)) = (found.take(), https_address(&line)) {
                        let _ = found.send(address);
                    }
                }
                kept.lock().unwrap().push(line);
            }
        });
        match address.recv_timeout(Duration::from_secs(20)) {
            Ok(address) => Ok(TlsApi {
                child,
                address,
                lines,
            }),
            Err(_) => {
                let status = child.wait().ok();
                let _ = child.kill();
                Err(format!(
                    "exited {status:?} without listening: {}",
                    lines.lock().unwrap().join("\n")
                ))
            }
        }
    }

    fn said(&self, text: &str) -> bool {
        self.lines.lock().unwrap().iter().any(|l| l.contains(text))
    }
}

impl Drop for TlsApi {
    fn drop(&mut self) {
        let _ = kill(Pid::from_raw(self.child.id() as i32), Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

fn https_address(line: &str) -> Option<String> {
    let (_, rest) = line.split_once("listening on https://")?;
    Some(rest.split_whitespace().next()?.to_string())
}

/// curl's exit code, the HTTP status it printed and its stderr.
fn curl(dir: &Path, args: &[&str]) -> (i32, String, String) {
    let mut all = vec![
        "-sS",
        "--max-time",
        "10",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
    ];
    all.extend_from_slice(args);
    let out = run("curl", &all, dir);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The subject of the certificate the server presents, as curl -v shows it.
fn served_subject(dir: &Path, url: &str) -> String {
    let (code, _, stderr) = curl(dir, &["-v", "--cacert", "ca.pem", url]);
    assert_eq!(code, 0, "curl -v {url}: {stderr}");
    stderr
        .lines()
        .find_map(|l| l.trim_start_matches(['*', ' ']).strip_prefix("subject:"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// Replaces the served pair with `from.pem`/`from.key`, each file by a rename.
fn install(dir: &Path, from: &str) {
    for ext in ["key", "pem"] {
        std::fs::copy(
            dir.join(format!("{from}.{ext}")),
            dir.join(format!("next.{ext}")),
        )
        .unwrap();
        std::fs::rename(
            dir.join(format!("next.{ext}")),
            dir.join(format!("served.{ext}")),
        )
        .unwrap();
    }
}

fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + RELOAD_WAIT;
    while !check() {
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn the_api_serves_https_to_clients_that_trust_its_ca_and_reloads_its_certificate() {
    let scratch = tempfile::Builder::new()
        .prefix("podcap-tls-")
        .tempdir()
        .unwrap();
    let dir = scratch.path();
    let data_dir: PathBuf = dir.join("data");
    make_ca(dir, "ca");
    make_ca(dir, "other-ca");
    issue(dir, "ca", "podcap-first", "first");
    issue(dir, "ca", "podcap-renewed", "renewed");
    install(dir, "first");

    let api = TlsApi::start(&data_dir, &dir.join("served.pem"), &dir.join("served.key"))
        .expect("capture-api with a good certificate");
    let base = format!("https://{}", api.address);
    let token = std::fs::read_to_string(data_dir.join("admin-token")).unwrap();
    let bearer = format!("Authorization: Bearer {}", token.trim());

    // Trusting the CA: health without a token, the API with one, and no answer without it.
    let (code, status, stderr) = curl(dir, &["--cacert", "ca.pem", &format!("{base}/healthz")]);
    assert_eq!((code, status.as_str()), (0, "200"), "{stderr}");
    let captures = format!("{base}/api/v1/captures");
    let (code, status, stderr) = curl(dir, &["--cacert", "ca.pem", "-H", &bearer, &captures]);
    assert_eq!((code, status.as_str()), (0, "200"), "{stderr}");
    let (_, status, _) = curl(dir, &["--cacert", "ca.pem", &captures]);
    assert_eq!(status, "401");
    assert_eq!(
        served_subject(dir, &format!("{base}/healthz")),
        "CN=podcap-first"
    );

    // A share link made over HTTPS is an https:// link to this server.
    let created = run(
        "curl",
        &[
            "-sS",
            "--cacert",
            "ca.pem",
            "-H",
            &bearer,
            "-H",
            "Content-Type: application/json",
            "-d",
            r#"{"metadata": {"name": "tls-share"}, "spec": {"duration": "1m"}}"#,
            &format!("{base}/api/v1/namespaces/default/captures"),
        ],
        dir,
    );
    assert!(created.status.success(), "{created:?}");
    let shared = run(
        "curl",
        &[
            "-sS",
            "--cacert",
            "ca.pem",
            "-H",
            &bearer,
            "-X",
            "POST",
            &format!("{base}/api/v1/namespaces/default/captures/tls-share/shares"),
        ],
        dir,
    );
    let share: serde_json::Value = serde_json::from_slice(&shared.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&shared.stdout)));
    assert!(
        share["url"]
            .as_str()
            .is_some_and(|url| url.starts_with(&format!("{base}/share/pcs_"))),
        "{share}"
    );

    // Plain HTTP to the same port gets no HTTP answer at all.
    let plain = format!("http://{}/healthz", api.address);
    let (code, status, stderr) = curl(dir, &["-H", &bearer, &plain]);
    assert_ne!(
        code, 0,
        "plain HTTP must be refused, got {status}: {stderr}"
    );
    assert_eq!(status, "000", "no HTTP status over plain HTTP");
    // Another CA, or only the system's CAs: the certificate is not trusted (curl's 60).
    let (code, _, stderr) = curl(
        dir,
        &["--cacert", "other-ca.pem", &format!("{base}/healthz")],
    );
    assert_eq!(
        code, 60,
        "a client trusting another CA must refuse: {stderr}"
    );
    let (code, _, stderr) = curl(dir, &[&format!("{base}/healthz")]);
    assert_eq!(
        code, 60,
        "a client trusting only the system CAs must refuse: {stderr}"
    );

    // A renewed certificate is served without a restart.
    install(dir, "renewed");
    eventually("the renewed certificate is served", || {
        served_subject(dir, &format!("{base}/healthz")) == "CN=podcap-renewed"
    });
    assert!(api.said("TLS certificate reloaded"));

    // A broken replacement is refused, said so, and the last good pair keeps serving.
    std::fs::write(
        dir.join("served.pem"),
        "-----BEGIN CERTIFICATE-----\nnot one\n",
    )
    .unwrap();
    eventually("the broken certificate is refused in the log", || {
        api.said("were not loaded")
    });
    assert_eq!(
        served_subject(dir, &format!("{base}/healthz")),
        "CN=podcap-renewed"
    );
    let (code, status, stderr) = curl(dir, &["--cacert", "ca.pem", "-H", &bearer, &captures]);
    assert_eq!((code, status.as_str()), (0, "200"), "{stderr}");
}

#[test]
fn a_key_that_is_not_a_key_stops_the_start_naming_the_files() {
    let scratch = tempfile::Builder::new()
        .prefix("podcap-tls-")
        .tempdir()
        .unwrap();
    let dir = scratch.path();
    make_ca(dir, "ca");
    issue(dir, "ca", "podcap-first", "first");
    std::fs::write(dir.join("broken.key"), "not a key\n").unwrap();
    let error = match TlsApi::start(
        &dir.join("data"),
        &dir.join("first.pem"),
        &dir.join("broken.key"),
    ) {
        Ok(_) => panic!("capture-api started with a key that is not a key"),
        Err(error) => error,
    };
    assert!(
        error.contains("broken.key") && error.contains("first.pem"),
        "the error names both files: {error}"
    );
}
