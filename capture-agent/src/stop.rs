//! How a running capture is told to stop: from another thread, or by SIGINT/SIGTERM.
//!
//! The capture loop sleeps in poll(2) on its sockets; a stop request writes a byte into a socket
//! pair that is part of the same poll, so the loop wakes at once rather than at its next timeout.

use std::io::{self, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// The receiving end, held by the capture loop.
pub struct StopSignal {
    wake: UnixStream,
    requested: Arc<AtomicBool>,
}

/// The sending end; clone it freely.
#[derive(Clone)]
pub struct StopHandle {
    wake: Arc<UnixStream>,
    requested: Arc<AtomicBool>,
}

impl StopSignal {
    pub fn new() -> io::Result<(StopSignal, StopHandle)> {
        let (receiver, sender) = UnixStream::pair()?;
        receiver.set_nonblocking(true)?;
        sender.set_nonblocking(true)?;
        let requested = Arc::new(AtomicBool::new(false));
        Ok((
            StopSignal {
                wake: receiver,
                requested: requested.clone(),
            },
            StopHandle {
                wake: Arc::new(sender),
                requested,
            },
        ))
    }

    /// Also stop on SIGINT and SIGTERM (Ctrl-C, `kill`, a container runtime stopping us).
    pub fn stop_on_signals(&self, handle: &StopHandle) -> io::Result<()> {
        for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            signal_hook::flag::register(signal, self.requested.clone())?;
            signal_hook::low_level::pipe::register(signal, handle.wake.as_ref().try_clone()?)?;
        }
        Ok(())
    }

    pub fn is_requested(&self) -> bool {
        self.requested.load(Ordering::SeqCst)
    }

    /// The descriptor that becomes readable on a stop request.
    pub fn wake_fd(&self) -> BorrowedFd<'_> {
        self.wake.as_fd()
    }
}

impl StopHandle {
    pub fn stop(&self) {
        self.requested.store(true, Ordering::SeqCst);
        // A full socket buffer already holds a wake-up, so a failed write loses nothing.
        let _ = (&*self.wake).write(&[1]);
    }
}
