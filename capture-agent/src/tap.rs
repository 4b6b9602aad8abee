//! Live taps: copies of a running capture's packets for watchers (a live pcapng stream), which
//! must never slow or block the capture. The capture thread encodes each handed-over block once,
//! as pcapng Enhanced Packet Blocks (interface id = the interface's index in the capture), and
//! offers the chunk to every subscriber without waiting: a subscriber whose queue is full misses
//! that chunk (whole packets, so its stream stays a valid pcapng) and the miss is counted. With
//! no subscriber the capture does no extra work.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Mutex;
use std::time::Duration;

use capture_spec::OutputFormat;

use crate::format::pcapng::EPB;
use crate::format::{Encoder, FileHeaderInfo, InterfaceInfo};

/// Chunks a live stream's taps may queue for it before they skip some.
pub const QUEUED_CHUNKS: usize = 64;

/// A chunk for a subscriber: its tag (chosen at subscribe time) and pcapng packet blocks.
pub type TapChunk = (u32, Vec<u8>);

struct Subscriber {
    sender: SyncSender<TapChunk>,
    tag: u32,
}

#[derive(Default)]
pub struct LiveTap {
    subscribers: Mutex<Vec<Subscriber>>,
    active: AtomicBool,
    skipped_chunks: AtomicU64,
    sent_chunks: AtomicU64,
}

impl std::fmt::Debug for LiveTap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveTap")
            .field("active", &self.active.load(Ordering::Relaxed))
            .field(
                "skipped_chunks",
                &self.skipped_chunks.load(Ordering::Relaxed),
            )
            .finish()
    }
}

impl LiveTap {
    /// Starts copying packets to `sender`, tagging chunks with `tag`. Dropping the receiving end
    /// unsubscribes (noticed at the next chunk).
    pub fn subscribe(&self, sender: SyncSender<TapChunk>, tag: u32) {
        if let Ok(mut subscribers) = self.subscribers.lock() {
            subscribers.push(Subscriber { sender, tag });
            self.active.store(true, Ordering::Release);
        }
    }

    /// True when someone is watching; checked once per block on the capture thread.
    pub fn is_active(&self) -> bool {
        self.active.load(Ordering::Acquire)
    }

    /// Chunks a subscriber missed because it was not keeping up.
    pub fn skipped_chunks(&self) -> u64 {
        self.skipped_chunks.load(Ordering::Relaxed)
    }

    pub fn sent_chunks(&self) -> u64 {
        self.sent_chunks.load(Ordering::Relaxed)
    }

    /// Offers `chunk` to every subscriber without blocking.
    pub(crate) fn publish(&self, chunk: Vec<u8>) {
        let Ok(mut subscribers) = self.subscribers.lock() else {
            return;
        };
        subscribers.retain(|subscriber| {
            match subscriber.sender.try_send((subscriber.tag, chunk.clone())) {
                Ok(()) => {
                    self.sent_chunks.fetch_add(1, Ordering::Relaxed);
                    true
                }
                Err(TrySendError::Full(_)) => {
                    self.skipped_chunks.fetch_add(1, Ordering::Relaxed);
                    true
                }
                Err(TrySendError::Disconnected(_)) => false,
            }
        });
        self.active
            .store(!subscribers.is_empty(), Ordering::Release);
    }
}

/// Where a live stream goes: an HTTP response body.
pub trait LiveSink {
    /// Sends `bytes` on; false when the client has left.
    fn send(&mut self, bytes: Vec<u8>) -> bool;
    /// Whether the client has left, asked while nothing is captured.
    fn is_closed(&self) -> bool;
}

/// Serves one live stream into `sink`: a pcapng header describing `interfaces` (subscriber tag
/// `i` is interface `i`), then every chunk the taps send on `receiver`, its packets moved to their
/// tag's interface. Ends when every tap has dropped its sender (the targets ended) or the client
/// left.
pub fn pump(
    receiver: &Receiver<TapChunk>,
    interfaces: &[InterfaceInfo],
    snap_length: u32,
    application: &str,
    sink: &mut dyn LiveSink,
) {
    let mut header = Vec::new();
    let info = FileHeaderInfo {
        interfaces,
        snap_length,
        application,
    };
    Encoder::new(OutputFormat::Pcapng).file_header(&mut header, &info);
    let mut open = sink.send(header);
    while open {
        match receiver.recv_timeout(Duration::from_secs(1)) {
            Ok((interface, mut chunk)) => {
                renumber(&mut chunk, interface);
                open = sink.send(chunk);
            }
            // Nothing captured for a while; keep waiting while the client is there.
            Err(RecvTimeoutError::Timeout) => open = !sink.is_closed(),
            Err(RecvTimeoutError::Disconnected) => break,
        }
    }
}

/// Sets the interface id of every packet block in `chunk` to `interface`.
fn renumber(chunk: &mut [u8], interface: u32) {
    let mut at = 0;
    while at + 12 <= chunk.len() {
        let word =
            |i: usize| u32::from_ne_bytes([chunk[i], chunk[i + 1], chunk[i + 2], chunk[i + 3]]);
        let (kind, length) = (word(at), word(at + 4) as usize);
        if length < 12 || at + length > chunk.len() {
            return;
        }
        if kind == EPB {
            chunk[at + 8..at + 12].copy_from_slice(&interface.to_ne_bytes());
        }
        at += length;
    }
}

#[cfg(test)]
mod pump_tests {
    use super::*;

    #[test]
    fn renumbers_only_packet_blocks() {
        let mut chunk = Vec::new();
        for kind in [EPB, 5, EPB] {
            chunk.extend_from_slice(&kind.to_ne_bytes());
            chunk.extend_from_slice(&16u32.to_ne_bytes());
            chunk.extend_from_slice(&0u32.to_ne_bytes());
            chunk.extend_from_slice(&16u32.to_ne_bytes());
        }
        renumber(&mut chunk, 7);
        let id = |block: usize| {
            u32::from_ne_bytes(chunk[block * 16 + 8..block * 16 + 12].try_into().unwrap())
        };
        assert_eq!((id(0), id(1), id(2)), (7, 0, 7));
    }
}
