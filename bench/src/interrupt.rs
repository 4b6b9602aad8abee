//! Ctrl-C / SIGTERM handling for the benchmark driver: the signal only sets a
//! flag, and every wait loop checks it, so an interrupted benchmark unwinds
//! through its guards (child processes, temp directories, the pod network)
//! instead of dying with a namespace and a veth left behind.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use anyhow::{bail, Context, Result};

static REQUESTED: OnceLock<Arc<AtomicBool>> = OnceLock::new();

/// Installs the flag handlers for SIGINT, SIGTERM and SIGHUP.
pub fn install() -> Result<()> {
    let flag = REQUESTED.get_or_init(|| Arc::new(AtomicBool::new(false)));
    for signal in [
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
    ] {
        signal_hook::flag::register(signal, Arc::clone(flag))
            .with_context(|| format!("installing handler for signal {signal}"))?;
    }
    Ok(())
}

/// True once the user asked the benchmark to stop.
pub fn requested() -> bool {
    REQUESTED
        .get()
        .is_some_and(|flag| flag.load(Ordering::Relaxed))
}

/// Fails when the user asked the benchmark to stop, so `?` unwinds.
pub fn check() -> Result<()> {
    if requested() {
        bail!("interrupted");
    }
    Ok(())
}
