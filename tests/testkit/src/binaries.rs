//! podcap's own binaries for the end-to-end suites. The suites live in their own package
//! (`tests/`), where Cargo sets no `CARGO_BIN_EXE_*` for another package's binaries, so each is
//! built once per test process with `cargo build` into the suite's own target directory and
//! profile (a no-op when it is up to date) and its path kept.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use crate::kube::repo_root;

/// `capture-agent`, built once per test process.
pub fn agent_binary() -> &'static Path {
    static AGENT: OnceLock<PathBuf> = OnceLock::new();
    AGENT.get_or_init(|| workspace_binary("capture-agent", "capture-agent"))
}

/// `capture-api`, built once per test process.
pub fn api_binary() -> &'static Path {
    static API: OnceLock<PathBuf> = OnceLock::new();
    API.get_or_init(|| workspace_binary("capture-api", "capture-api"))
}

/// A binary of this workspace for a test outside its package (where Cargo sets no
/// `CARGO_BIN_EXE_*`): `cargo build -p PACKAGE --bin BIN` into the test's own target
/// directory and profile (a no-op when it is up to date), and its path.
pub fn workspace_binary(package: &str, bin: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable's path");
    // TARGET/PROFILE/deps/TEST-HASH
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test runs from TARGET/PROFILE/deps");
    let target_dir = profile_dir.parent().expect("a target directory");
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => "dev".to_string(),
        Some(other) => other.to_string(),
    };
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(cargo)
        .args([
            "build",
            "--quiet",
            "--profile",
            &profile,
            "-p",
            package,
            "--bin",
            bin,
        ])
        .arg("--target-dir")
        .arg(target_dir)
        .current_dir(repo_root())
        .stdin(Stdio::null())
        .output()
        .expect("running cargo build");
    assert!(
        output.status.success(),
        "cargo build -p {package} --bin {bin} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let path = profile_dir.join(bin);
    assert!(path.exists(), "{} was not built", path.display());
    path
}

/// `kubectl-podcap`, the command line, built once per test process.
pub fn kubectl_podcap_binary() -> &'static Path {
    static PLUGIN: OnceLock<PathBuf> = OnceLock::new();
    PLUGIN.get_or_init(|| workspace_binary("kubectl-podcap", "kubectl-podcap"))
}
