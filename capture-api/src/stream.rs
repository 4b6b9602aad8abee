//! A bridge from synchronous writers (the merge, which runs on a blocking thread) to a streamed
//! HTTP body. Chunks travel through a small bounded channel, so a slow client slows the writer
//! down instead of piling data up in memory, and a client that goes away stops the writer (its
//! next write fails with BrokenPipe). Downloads, share links and live streams of both modes go
//! out this way; open live streams are counted here for `/metrics`.

use std::io::{self, Write};
use std::sync::atomic::{AtomicU64, Ordering};

use axum::body::{Body, Bytes};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

/// Bytes gathered before a chunk is sent.
const CHUNK_BYTES: usize = 256 * 1024;
/// Chunks in flight: bounds memory per download to about 2 MiB.
const CHUNKS_IN_FLIGHT: usize = 8;

/// The writing end; use it from a blocking thread only.
pub struct BodyWriter {
    sender: mpsc::Sender<Result<Bytes, io::Error>>,
    pending: Vec<u8>,
}

/// A body and the writer that feeds it.
pub fn channel() -> (BodyWriter, Body) {
    let (sender, receiver) = mpsc::channel(CHUNKS_IN_FLIGHT);
    let writer = BodyWriter {
        sender,
        pending: Vec::with_capacity(CHUNK_BYTES),
    };
    (writer, Body::from_stream(ReceiverStream::new(receiver)))
}

impl BodyWriter {
    fn send(&mut self, item: Result<Bytes, io::Error>) -> io::Result<()> {
        self.sender
            .blocking_send(item)
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the client went away"))
    }

    /// True once the client has gone away.
    pub fn is_closed(&self) -> bool {
        self.sender.is_closed()
    }

    /// Ends the body with an error, so the client sees a broken transfer rather than a short
    /// file that looks complete.
    pub fn fail(mut self, error: io::Error) {
        let _ = self.send(Err(error));
    }
}

impl Write for BodyWriter {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.pending.extend_from_slice(bytes);
        if self.pending.len() >= CHUNK_BYTES {
            self.flush()?;
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(
            &mut self.pending,
            Vec::with_capacity(CHUNK_BYTES),
        ));
        self.send(Ok(chunk))
    }
}

impl capture_agent::tap::LiveSink for BodyWriter {
    fn send(&mut self, bytes: Vec<u8>) -> bool {
        self.write_all(&bytes).and_then(|()| self.flush()).is_ok()
    }

    fn is_closed(&self) -> bool {
        BodyWriter::is_closed(self)
    }
}

/// Live streams open now, in either mode, for `/metrics`.
static OPEN_LIVE_STREAMS: AtomicU64 = AtomicU64::new(0);

/// One open live stream, counted while it lives.
pub struct LiveStream(());

impl LiveStream {
    /// Counts a live stream until the value is dropped.
    pub fn opened() -> LiveStream {
        OPEN_LIVE_STREAMS.fetch_add(1, Ordering::Relaxed);
        LiveStream(())
    }

    /// How many are open now.
    pub fn open_now() -> u64 {
        OPEN_LIVE_STREAMS.load(Ordering::Relaxed)
    }
}

impl Drop for LiveStream {
    fn drop(&mut self) {
        OPEN_LIVE_STREAMS.fetch_sub(1, Ordering::Relaxed);
    }
}
