//! Runtime directories of the clusters tests start (the kube-apiserver of [`crate::kube`], the
//! real node of [`crate::realnode`]). Each directory holds the PID of the test process that owns
//! it, so a later test can stop what a killed one (a timeout, a signal: no `Drop`) left running.
//! The stop scripts only signal processes whose command line names the directory, so stopping
//! an orphan can hit nothing else.

use std::path::{Path, PathBuf};

const OWNER_FILE: &str = "owner.pid";

/// A new directory `PARENT/PREFIXxxxxxx` owned by this process. It outlives the value: the
/// owner's stop script removes what its start wrote, then [`release`] the rest.
pub(crate) fn create(parent: &Path, prefix: &str) -> Result<PathBuf, String> {
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(parent)
        .map_err(|e| format!("creating a directory in {}: {e}", parent.display()))?
        .keep();
    std::fs::write(dir.join(OWNER_FILE), std::process::id().to_string())
        .map_err(|e| format!("writing {}: {e}", dir.join(OWNER_FILE).display()))?;
    Ok(dir)
}

/// Removes the owner file and, if nothing else is left in it, the directory.
pub(crate) fn release(dir: &Path) {
    let _ = std::fs::remove_file(dir.join(OWNER_FILE));
    let _ = std::fs::remove_dir(dir);
}

/// Calls `stop` on every `PARENT/PREFIX*` directory whose owner no longer runs, then releases it.
pub(crate) fn stop_orphans(parent: &Path, prefix: &str, what: &str, stop: impl Fn(&Path)) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    for entry in entries.flatten() {
        let dir = entry.path();
        let ours = dir
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with(prefix));
        let Some(owner) = ours
            .then(|| std::fs::read_to_string(dir.join(OWNER_FILE)).ok())
            .flatten()
        else {
            continue;
        };
        let alive = owner
            .trim()
            .parse::<u32>()
            .is_ok_and(|pid| Path::new(&format!("/proc/{pid}")).exists());
        if !alive {
            eprintln!(
                "stopping {what} left behind by a killed test: {}",
                dir.display()
            );
            stop(&dir);
            release(&dir);
        }
    }
}
