//! The hub: one thread that runs every capture of the process. A node capturing 110 pods has
//! one engine thread (and one disk writer, see `output`), not one per pod; it sleeps in one
//! poll(2) over every ring and wakes when a ring hands over a block, when a stop is asked, or
//! once a second for the counters — never per pod while the pods are quiet.
//!
//! Captures join and leave while it runs: [`Hub::start`] takes a [`Capture`] whose rings are
//! already bound (so nothing is missed between the caller's decision and the first poll) and
//! returns a [`Running`] handle, through which the capture is stopped and its report collected.
//! Each capture keeps its own files, counters, limits and drops; only the thread is shared. A
//! capture that fails (a full disk) ends alone; the others go on.
//!
//! The command line runs its one capture on its own thread with [`Capture::run`]; both drive
//! the same steps of [`Capture`].

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::afpacket;
use crate::engine::{Capture, CaptureError, CaptureReport, EndReason, LiveView};
use crate::rings::RingBudget;

/// How long the thread sleeps with no capture at all (a new one wakes it at once).
const IDLE_WAIT: Duration = Duration::from_secs(3600);

/// The captures of one process and the thread that runs them.
pub struct Hub {
    shared: Arc<Shared>,
    rings: Arc<RingBudget>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// What callers and the thread share.
struct Shared {
    /// Captures handed over and not yet picked up by the thread.
    incoming: Mutex<Vec<Attached>>,
    /// Written to wake the thread; the thread polls `wake_receiver`.
    wake_sender: UnixStream,
    wake_receiver: UnixStream,
    shutdown: AtomicBool,
}

impl Shared {
    fn wake(&self) {
        // A full socket buffer already holds a wake-up, so a failed write loses nothing.
        let _ = (&self.wake_sender).write(&[1]);
    }

    fn incoming(&self) -> MutexGuard<'_, Vec<Attached>> {
        self.incoming
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// One capture on the thread.
struct Attached {
    capture: Capture,
    state: Arc<RunState>,
}

/// A capture's life as its handle sees it.
#[derive(Default)]
struct RunState {
    stop: AtomicBool,
    outcome: Mutex<Option<Result<CaptureReport, String>>>,
    ended: Condvar,
}

impl RunState {
    fn outcome(&self) -> MutexGuard<'_, Option<Result<CaptureReport, String>>> {
        self.outcome
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn end(&self, outcome: Result<CaptureReport, String>) {
        *self.outcome() = Some(outcome);
        self.ended.notify_all();
    }
}

/// A capture running on the hub.
pub struct Running {
    state: Arc<RunState>,
    shared: Arc<Shared>,
    live: Arc<LiveView>,
    /// The report, once taken from the state.
    report: Option<Result<CaptureReport, String>>,
}

impl Running {
    /// Counters and files to watch while it runs.
    pub fn live(&self) -> &Arc<LiveView> {
        &self.live
    }

    /// Asks the capture to drain its rings and stop; [`Running::finish`] waits for it.
    pub fn request_stop(&self) {
        self.state.stop.store(true, Ordering::SeqCst);
        self.shared.wake();
    }

    /// True once the capture has ended (by itself, or after a stop request).
    pub fn has_ended(&self) -> bool {
        self.report.is_some() || self.state.outcome().is_some()
    }

    /// Waits until the capture has ended and returns its report (or why it failed).
    pub fn finish(&mut self) -> &Result<CaptureReport, String> {
        if self.report.is_none() {
            let mut outcome = self.state.outcome();
            while outcome.is_none() {
                outcome = self
                    .state
                    .ended
                    .wait(outcome)
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
            }
            self.report = outcome.take();
        }
        self.report
            .get_or_insert_with(|| Err("the capture's report was lost".into()))
    }

    /// The report, if the capture has ended and [`Running::finish`] collected it.
    pub fn report(&self) -> Option<&Result<CaptureReport, String>> {
        self.report.as_ref()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // Never leave a capture running without an owner.
        if self.report.is_none() {
            self.request_stop();
            self.finish();
        }
    }
}

impl Hub {
    /// A hub whose captures' rings come out of `rings`. Its thread starts with the first capture.
    pub fn new(rings: RingBudget) -> io::Result<Hub> {
        let (wake_receiver, wake_sender) = UnixStream::pair()?;
        wake_receiver.set_nonblocking(true)?;
        wake_sender.set_nonblocking(true)?;
        Ok(Hub {
            shared: Arc::new(Shared {
                incoming: Mutex::new(Vec::new()),
                wake_sender,
                wake_receiver,
                shutdown: AtomicBool::new(false),
            }),
            rings: Arc::new(rings),
            thread: Mutex::new(None),
        })
    }

    /// The ring memory this hub's captures draw from.
    pub fn rings(&self) -> &Arc<RingBudget> {
        &self.rings
    }

    /// Runs `capture` (opened, its rings bound) on the hub's thread from now on.
    pub fn start(&self, capture: Capture) -> Result<Running, CaptureError> {
        let mut thread = self
            .thread
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if thread.is_none() {
            let shared = self.shared.clone();
            *thread = Some(
                std::thread::Builder::new()
                    .name("podcap-engine".into())
                    .spawn(move || run(&shared))
                    .map_err(CaptureError::Poll)?,
            );
        }
        let state = Arc::new(RunState::default());
        let live = capture.live_view();
        self.shared.incoming().push(Attached {
            capture,
            state: state.clone(),
        });
        self.shared.wake();
        Ok(Running {
            state,
            shared: self.shared.clone(),
            live,
            report: None,
        })
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        // Every capture still running drains and closes its files before the thread ends.
        self.shared.shutdown.store(true, Ordering::SeqCst);
        self.shared.wake();
        let thread = self
            .thread
            .get_mut()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        if let Some(thread) = thread {
            let _ = thread.join();
        }
    }
}

/// The thread: picks up new captures, steps every capture, ends those that are done, sleeps
/// until the earliest of their next wakes or a ring's block.
fn run(shared: &Shared) {
    let mut captures: Vec<Attached> = Vec::new();
    // Which captures to step this round: those whose sockets are ready, whose next wake has
    // come, that were just attached, or (after a wake-up) that may have been asked to stop.
    // The others are left alone, so a busy capture's rounds do not cost every quiet one's.
    let mut due: Vec<bool> = Vec::new();
    let mut woken = true;
    loop {
        let incoming = std::mem::take(&mut *shared.incoming());
        due.resize(captures.len(), false);
        due.extend(std::iter::repeat_n(true, incoming.len()));
        captures.extend(incoming);
        let shutdown = shared.shutdown.load(Ordering::SeqCst);
        let now = Instant::now();
        let mut index = 0;
        while index < captures.len() {
            let attached = &mut captures[index];
            let stop = shutdown || (woken && attached.state.stop.load(Ordering::SeqCst));
            if stop {
                attached.capture.begin_drain(EndReason::Stopped, now);
            }
            if !(due[index] || stop || attached.capture.next_wake(now) <= now) {
                index += 1;
                continue;
            }
            match attached.capture.step(now) {
                None => index += 1,
                Some(end) => {
                    let Attached { capture, state } = captures.swap_remove(index);
                    due.swap_remove(index);
                    state.end(capture.finish(end).map_err(|error| error.to_string()));
                }
            }
        }
        due.clear();
        due.resize(captures.len(), false);
        if shutdown && captures.is_empty() {
            return;
        }
        let now = Instant::now();
        let wake_at = captures
            .iter()
            .map(|attached| attached.capture.next_wake(now))
            .min();
        let timeout = wake_at.map_or(IDLE_WAIT, |at| at.saturating_duration_since(now));
        let mut fds: Vec<BorrowedFd<'_>> = vec![shared.wake_receiver.as_fd()];
        let mut owners = Vec::new();
        for (index, attached) in captures.iter().enumerate() {
            let before = fds.len();
            attached.capture.poll_fds(&mut fds);
            owners.extend(std::iter::repeat_n(index, fds.len() - before));
        }
        match afpacket::wait(&fds, timeout) {
            Ok(readiness) => {
                drop(fds);
                let mut with_errors: Vec<usize> = Vec::new();
                for (ready, &owner) in readiness.iter().skip(1).zip(&owners) {
                    if ready.readable || ready.error {
                        due[owner] = true;
                    }
                    if ready.error && with_errors.last() != Some(&owner) {
                        with_errors.push(owner);
                    }
                }
                for owner in with_errors {
                    captures[owner].capture.take_socket_errors();
                }
                woken = readiness.first().is_some_and(|ready| ready.readable);
                if woken {
                    let mut sink = [0u8; 64];
                    while matches!((&shared.wake_receiver).read(&mut sink), Ok(n) if n > 0) {}
                }
            }
            Err(error) => {
                // poll(2) on valid descriptors fails only without memory; end every capture
                // with the reason rather than spin.
                tracing::error!(%error, "waiting for packets failed; ending every capture");
                for Attached { capture, state } in captures.drain(..) {
                    let end = EndReason::Failed(format!("waiting for packets: {error}"));
                    state.end(capture.finish(end).map_err(|error| error.to_string()));
                }
            }
        }
    }
}
