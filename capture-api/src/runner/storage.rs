//! Storage limits of the data directory: a quota on what the capture files use, and a floor
//! of free space on the filesystem, so captures can never fill the disk; and retention, after
//! which a finished capture's files are deleted. Checked by the runner on every pass.
//!
//! The disk can still fill (something else writes to it, or `--min-free 0`). Then the store
//! must still be able to record that the captures ended and why, so a little space is kept
//! aside for it ([`StoreReserve`]) and given up when the disk is full.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// Below this much free space the disk counts as full, whatever `--min-free` says.
const FULL_BELOW: u64 = 64 << 10;
/// The space kept aside for the store: room for many status updates.
const RESERVE_BYTES: usize = 1 << 20;

/// What the operator allows the captures to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StorageLimits {
    /// Most bytes all capture files together may take.
    pub quota_bytes: u64,
    /// Captures stop when the filesystem has less free space than this.
    pub min_free_bytes: u64,
    /// A finished capture's files are deleted this long after it finished.
    pub retention: Duration,
}

impl Default for StorageLimits {
    fn default() -> Self {
        StorageLimits {
            quota_bytes: 10 << 30,
            min_free_bytes: 512 << 20,
            retention: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

/// Bytes of every file under `dir` (0 when it does not exist yet).
pub fn usage(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|entry| match entry.file_type() {
            Ok(kind) if kind.is_dir() => usage(&entry.path()),
            Ok(_) => entry.metadata().map_or(0, |m| m.len()),
            Err(_) => 0,
        })
        .sum()
}

fn free_bytes(dir: &Path) -> Option<u64> {
    let stats = nix::sys::statvfs::statvfs(dir).ok()?;
    Some(stats.blocks_available() * stats.fragment_size())
}

impl StorageLimits {
    /// Why no more packets may be written under `captures_dir`, if that is so.
    pub fn exceeded(&self, captures_dir: &Path, data_dir: &Path) -> Option<String> {
        let used = usage(captures_dir);
        if used >= self.quota_bytes {
            return Some(format!(
                "the data directory reached its quota: captures use {} of {}; delete captures or raise --quota",
                bytesize::ByteSize::b(used),
                bytesize::ByteSize::b(self.quota_bytes)
            ));
        }
        match free_bytes(data_dir) {
            Some(free) if free < FULL_BELOW && self.min_free_bytes <= FULL_BELOW => Some(format!(
                "the disk of the data directory {} is full ({} free); free space or move --data-dir",
                data_dir.display(),
                bytesize::ByteSize::b(free),
            )),
            Some(free) if free < self.min_free_bytes => Some(format!(
                "the disk of the data directory has only {} free (the floor is {}); free space or move --data-dir",
                bytesize::ByteSize::b(free),
                bytesize::ByteSize::b(self.min_free_bytes)
            )),
            _ => None,
        }
    }
}

/// A file of [`RESERVE_BYTES`] in the data directory, deleted when the disk is full so that the
/// store can record the captures' end, and put back once there is room again.
#[derive(Debug)]
pub struct StoreReserve {
    path: PathBuf,
}

impl StoreReserve {
    pub fn new(data_dir: &Path) -> StoreReserve {
        StoreReserve {
            path: data_dir.join("store-reserve"),
        }
    }

    /// Puts the reserve in place if it is missing and the disk has room for it and more.
    pub fn ensure(&self) {
        if self.path.exists() {
            return;
        }
        let room = free_bytes(self.path.parent().unwrap_or(Path::new("/")))
            .is_some_and(|free| free > 4 * RESERVE_BYTES as u64 + FULL_BELOW);
        if !room {
            return;
        }
        let written = std::fs::write(&self.path, vec![0u8; RESERVE_BYTES])
            .and_then(|()| std::fs::File::open(&self.path)?.sync_all());
        if let Err(error) = written {
            tracing::warn!(path = %self.path.display(), %error, "cannot keep space aside for the store");
            let _ = std::fs::remove_file(&self.path);
        }
    }

    /// Gives the reserve up; true if there was one.
    pub fn release(&self) -> bool {
        let released = std::fs::remove_file(&self.path).is_ok();
        if released {
            tracing::warn!(path = %self.path.display(), "the disk is full: released the space kept for the store");
        }
        released
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_counts_nested_files_and_quota_trips() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
        std::fs::write(dir.path().join("a/one"), [0u8; 1000]).unwrap();
        std::fs::write(dir.path().join("a/b/two"), [0u8; 500]).unwrap();
        assert_eq!(usage(dir.path()), 1500);
        assert_eq!(usage(&dir.path().join("missing")), 0);
        let limits = StorageLimits {
            quota_bytes: 1500,
            min_free_bytes: 0,
            ..StorageLimits::default()
        };
        assert!(limits
            .exceeded(dir.path(), dir.path())
            .unwrap()
            .contains("quota"));
        let roomy = StorageLimits {
            quota_bytes: 1501,
            min_free_bytes: 0,
            ..StorageLimits::default()
        };
        assert_eq!(roomy.exceeded(dir.path(), dir.path()), None);
        let floor = StorageLimits {
            quota_bytes: u64::MAX,
            min_free_bytes: u64::MAX,
            ..StorageLimits::default()
        };
        assert!(floor
            .exceeded(dir.path(), dir.path())
            .unwrap()
            .contains("free"));
    }
}
