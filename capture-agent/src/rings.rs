//! Ring memory: how much kernel memory the packet rings of one process may take, and how it is
//! shared among a node's pod interfaces.
//!
//! A ring is kernel memory the process's memory cgroup does not account: a DaemonSet's limit
//! cannot stop it, and a node's scheduler cannot see it. So the process is given a budget
//! (`--ring-memory`, and the DaemonSet's memory request covers it) and every ring comes out of
//! it. A pod interface starts with a small ring ([`BASE_RING_BYTES`]): most pods are quiet, and
//! a hundred quiet pods then cost a hundred small rings. A ring that fills faster than it is
//! emptied is replaced by a larger one while the budget allows (see `elastic`), up to
//! [`MAX_RING_BYTES`], and one that has been quiet for a while is given back.
//!
//! Base rings are always granted, even past the budget (a pod is never refused for memory; the
//! overrun is logged): only growth is limited.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::afpacket::{RingConfig, RingError};

/// A pod interface's first ring: at least eight blocks, each big enough for the largest frame
/// (128 KiB), so a quiet pod's occasional packets, each handed over in a block of its own after
/// the block timeout, leave the engine 400 ms to return a block before one is dropped; and a
/// hundred of them fit a modest budget.
pub const BASE_RING_BYTES: u64 = 1 << 20;
/// The largest ring one interface grows to: the command line's default, ~85 ms at 6 Gbit/s.
pub const MAX_RING_BYTES: u64 = RingConfig::DEFAULT_RING_SIZE;
/// The budget when none is given: room for 110 quiet pods and a few busy ones.
pub const DEFAULT_BUDGET_BYTES: u64 = 512 << 20;
/// The smallest block of a base ring: a wake-up per few dozen packets, not per packet.
const BASE_MIN_BLOCK: u32 = 64 << 10;
/// Block size of grown rings: larger blocks amortise a wake-up over more packets.
const GROWN_BLOCK_BYTES: u32 = RingConfig::DEFAULT_BLOCK_SIZE;
/// How long the kernel fills a block before handing it over partly full.
const BLOCK_TIMEOUT: Duration = Duration::from_millis(50);

/// The ring memory of one process.
#[derive(Debug)]
pub struct RingBudget {
    limit: u64,
    reserved: AtomicU64,
    /// Whether an overrun by base rings was logged already (once is enough).
    overrun_logged: AtomicBool,
}

/// Bytes of ring held by one ring; given back to the budget on drop.
#[derive(Debug)]
pub struct RingShare {
    bytes: u64,
    budget: Arc<RingBudget>,
}

impl Drop for RingShare {
    fn drop(&mut self) {
        self.budget.reserved.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

/// The largest frame a packet socket is handed: an IP packet's 65,535 bytes (also the bound of
/// a GRO/GSO aggregate) behind an Ethernet header and one VLAN tag. A block need not hold more
/// than this whatever the snap length (262,144 by default).
const LARGEST_FRAME: u32 = 65_535 + 14 + 4;

/// The smallest power-of-two block that holds a whole packet of `snap_length` bytes (at least
/// a page).
fn block_for(snap_length: u32) -> u32 {
    let snap_length = snap_length.min(LARGEST_FRAME);
    let probe = RingConfig {
        block_size: 1 << 12,
        block_count: 2,
        block_timeout: BLOCK_TIMEOUT,
    };
    let overhead = probe.block_size - probe.max_packet_in_block();
    (snap_length.saturating_add(overhead))
        .checked_next_power_of_two()
        .unwrap_or(1 << 31)
        .max(1 << 12)
}

impl RingBudget {
    /// A budget of `limit` bytes of ring memory.
    pub fn new(limit: u64) -> RingBudget {
        RingBudget {
            limit,
            reserved: AtomicU64::new(0),
            overrun_logged: AtomicBool::new(false),
        }
    }

    /// Bytes held by open rings now.
    pub fn reserved(&self) -> u64 {
        self.reserved.load(Ordering::Acquire)
    }

    /// The first ring of an interface captured with `snap_length`: always granted.
    pub fn base_ring(
        self: &Arc<Self>,
        snap_length: u32,
    ) -> Result<(RingConfig, RingShare), RingError> {
        let block = block_for(snap_length).max(BASE_MIN_BLOCK);
        let config = RingConfig::with_size(BASE_RING_BYTES, block, BLOCK_TIMEOUT)?;
        let bytes = config.ring_bytes();
        let before = self.reserved.fetch_add(bytes, Ordering::AcqRel);
        if before + bytes > self.limit && !self.overrun_logged.swap(true, Ordering::AcqRel) {
            tracing::warn!(
                limit = self.limit,
                reserved = before + bytes,
                "the packet rings of this many interfaces exceed --ring-memory; each still gets \
                 its base ring, but none can grow: raise --ring-memory (and the memory request)"
            );
        }
        Ok((config, self.share(bytes)))
    }

    /// A ring of at least `wanted` bytes and twice `current`'s size (at least 4 blocks of the
    /// grown block size, at most [`MAX_RING_BYTES`]) if the budget has room for it beside the
    /// current one (both exist while the switch happens); `None` when it has not or the ring is
    /// at its maximum.
    pub fn larger_ring(
        self: &Arc<Self>,
        current: &RingConfig,
        snap_length: u32,
        wanted: u64,
    ) -> Option<(RingConfig, RingShare)> {
        let block = block_for(snap_length).max(GROWN_BLOCK_BYTES);
        let bytes = (current.ring_bytes() * 2)
            .max(wanted.next_power_of_two())
            .max(4 * u64::from(block))
            .min(MAX_RING_BYTES.max(2 * u64::from(block)));
        if bytes <= current.ring_bytes() {
            return None;
        }
        let config = RingConfig::with_size(bytes, block, BLOCK_TIMEOUT).ok()?;
        let bytes = config.ring_bytes();
        self.reserved
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |reserved| {
                (reserved + bytes <= self.limit).then_some(reserved + bytes)
            })
            .ok()?;
        Some((config, self.share(bytes)))
    }

    fn share(self: &Arc<Self>, bytes: u64) -> RingShare {
        RingShare {
            bytes,
            budget: self.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_rings_hold_a_whole_packet_and_are_always_granted() {
        let budget = Arc::new(RingBudget::new(1 << 20));
        let (config, first) = budget.base_ring(262_144).unwrap();
        assert!(config.max_packet_in_block() >= LARGEST_FRAME);
        assert!(config.block_count >= 8, "{config:?}");
        assert_eq!(config.ring_bytes(), BASE_RING_BYTES);
        let (small, second) = budget.base_ring(1500).unwrap();
        assert_eq!(small.ring_bytes(), BASE_RING_BYTES);
        assert!(
            small.block_count > 2,
            "small packets get more, smaller blocks"
        );
        assert_eq!(
            budget.reserved(),
            2 * BASE_RING_BYTES,
            "past the limit, still granted"
        );
        drop((first, second));
        assert_eq!(budget.reserved(), 0, "shares go back on drop");
    }

    #[test]
    fn growth_doubles_within_the_budget_and_stops_at_the_maximum() {
        let budget = Arc::new(RingBudget::new(24 << 20));
        let (base, _base) = budget.base_ring(1500).unwrap();
        let (grown, grown_share) = budget.larger_ring(&base, 1500, 0).expect("room");
        assert_eq!(grown.ring_bytes(), 4 << 20, "at least four 1 MiB blocks");
        let (again, _again) = budget.larger_ring(&grown, 1500, 0).expect("room");
        assert_eq!(again.ring_bytes(), 8 << 20);
        assert!(
            budget.larger_ring(&again, 1500, 0).is_none(),
            "16 MiB more would pass the 24 MiB budget"
        );
        drop(grown_share);
        let max = RingConfig::with_size(MAX_RING_BYTES, 1 << 20, BLOCK_TIMEOUT).unwrap();
        assert!(Arc::new(RingBudget::new(1 << 40))
            .larger_ring(&max, 1500, 0)
            .is_none());
    }
}
