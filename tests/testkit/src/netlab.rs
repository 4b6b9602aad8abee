//! Ad-hoc kernel objects for tests that need more than a [`crate::Pod`] — bridges, extra veths
//! and namespaces, routes, cgroups, processes — each undone when the [`Undo`] is dropped, which
//! also happens when the test panics. Steps are undone in reverse order, so a process is killed
//! before its cgroup is removed and a port is deleted before its bridge.
//!
//! Names must be unique to the test: derive them from a [`crate::pod::Slot`] the test holds.

use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::Duration;

use crate::pod::{quiet, run};

enum Step {
    Command(String, Vec<String>),
    RemoveDir(PathBuf),
    Kill(Child),
}

/// Undo steps, run in reverse order on drop.
#[derive(Default)]
pub struct Undo {
    steps: Vec<Step>,
}

impl Undo {
    pub fn new() -> Undo {
        Undo::default()
    }

    /// Runs a set-up command (panics if it fails), then remembers `undo` for the drop.
    pub fn run(&mut self, program: &str, args: &[&str], undo: &[&str]) {
        // Registered first: a command that half-worked (e.g. created a link, then failed to
        // configure it) is still undone.
        self.on_drop(undo);
        run(program, args);
    }

    /// Remembers a command (program first) to run on drop; its failure only warns.
    pub fn on_drop(&mut self, command: &[&str]) {
        if let Some((program, args)) = command.split_first() {
            self.steps.push(Step::Command(
                program.to_string(),
                args.iter().map(|arg| arg.to_string()).collect(),
            ));
        }
    }

    /// Creates a directory under a cgroup hierarchy (and missing parents, each removed on drop).
    pub fn cgroup_dir(&mut self, path: &Path) {
        let mut missing = Vec::new();
        let mut at = path;
        while !at.exists() {
            missing.push(at.to_path_buf());
            match at.parent() {
                Some(parent) => at = parent,
                None => break,
            }
        }
        for dir in missing.into_iter().rev() {
            std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
            self.steps.push(Step::RemoveDir(dir));
        }
    }

    /// Owns a child process: killed (by its PID) and reaped on drop. Returns its PID.
    pub fn child(&mut self, child: Child) -> u32 {
        let pid = child.id();
        self.steps.push(Step::Kill(child));
        pid
    }
}

impl Drop for Undo {
    fn drop(&mut self) {
        while let Some(step) = self.steps.pop() {
            match step {
                Step::Command(program, args) => {
                    let args: Vec<&str> = args.iter().map(String::as_str).collect();
                    if let Err(e) = quiet(&program, &args) {
                        eprintln!("warning: undoing: {e}");
                    }
                }
                Step::Kill(mut child) => {
                    let _ = child.kill();
                    let _ = child.wait();
                }
                Step::RemoveDir(dir) => {
                    // A killed process may take a moment to leave its cgroup.
                    let mut result = std::fs::remove_dir(&dir);
                    for _ in 0..40 {
                        if result.is_ok() || !dir.exists() {
                            break;
                        }
                        std::thread::sleep(Duration::from_millis(50));
                        result = std::fs::remove_dir(&dir);
                    }
                    if let Err(e) = result {
                        if dir.exists() {
                            eprintln!("warning: removing {}: {e}", dir.display());
                        }
                    }
                }
            }
        }
    }
}

/// Where this machine mounts cgroup hierarchies a test can make cgroups in: the cgroup v2
/// hierarchy, and a v1 hierarchy without resource controllers (`name=systemd`), if any. The v1
/// `memory`, `cpu`... hierarchies are left alone: moving a process there changes its limits.
pub struct CgroupMounts {
    pub v2: Option<PathBuf>,
    pub v1_named: Option<PathBuf>,
}

pub fn cgroup_mounts() -> CgroupMounts {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").expect("reading mountinfo");
    let mut mounts = CgroupMounts {
        v2: None,
        v1_named: None,
    };
    for line in mountinfo.lines() {
        // `id parent major:minor root mountpoint options... - fstype source superoptions`
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let Some(mountpoint) = left.split(' ').nth(4) else {
            continue;
        };
        let mut right = right.split(' ');
        let fstype = right.next().unwrap_or("");
        let superoptions = right.nth(1).unwrap_or("");
        if fstype == "cgroup2" && mounts.v2.is_none() {
            mounts.v2 = Some(PathBuf::from(mountpoint));
        } else if fstype == "cgroup"
            && mounts.v1_named.is_none()
            && superoptions.split(',').any(|o| o.starts_with("name="))
        {
            mounts.v1_named = Some(PathBuf::from(mountpoint));
        }
    }
    mounts
}
