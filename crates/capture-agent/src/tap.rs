//! Live taps: copies of a running capture's packets for watchers (a live pcapng stream), which
//! must never slow or block the capture. The capture thread encodes each handed-over block once,
//! as pcapng Enhanced Packet Blocks (interface id = the interface's index in the capture), and
//! offers the chunk to every subscriber without waiting: a subscriber whose queue is full misses
//! that chunk (whole packets, so its stream stays a valid pcapng) and the miss is counted. With
//! no subscriber the capture does no extra work.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::Mutex;

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
