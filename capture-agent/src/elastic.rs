//! A ring that grows with its interface's traffic and shrinks when it is quiet again.
//!
//! A pod interface's packet ring is kernel memory the process's cgroup does not see, so the
//! service starts every ring small ([`crate::rings`]) and lets one grow only when its traffic
//! needs the room: when the ring holds less than [`HEADROOM`] of the traffic measured over the
//! last [`RATE_WINDOW`], when a pass finds half of its blocks waiting, or when the kernel drops.
//! A ring cannot be resized, so growth opens a successor ring on the same interface (on a
//! short-lived thread: allocating a large ring takes a while, and the engine keeps reading
//! meanwhile), and the two swap through a fanout group without losing or doubling a packet
//! ([`Ring::hand_over`]). The old ring is read to its end before the new one, so the file keeps
//! the kernel's order; then it is closed and its memory goes back to the budget. A grown ring
//! that has carried little for [`SHRINK_AFTER`] is swapped back to the base size the same way.
//!
//! Without a budget (the command line) the ring keeps the size it was opened with.

use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::afpacket::{self, Block, KernelStats, Ring, RingConfig, RingError};
use crate::rings::{RingBudget, RingShare};

/// A ring should hold this much of its interface's measured traffic: time for the engine to be
/// late (a busy disk, a scheduler hiccup) without a drop.
const HEADROOM: Duration = Duration::from_millis(250);
/// The window over which the traffic rate is measured.
const RATE_WINDOW: Duration = Duration::from_millis(100);
/// A grown ring whose traffic would have fit the base ring this long is given back.
const SHRINK_AFTER: Duration = Duration::from_secs(30);

/// Held while a successor ring is allocated: see [`ElasticRing::open_successor`].
static OPENING: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// What allocating a ring cost per MiB, as last measured (nanoseconds). It starts at what a
/// cold allocation cost on the 2-core VM of bench/DENSITY.md (`strace -T` on
/// `setsockopt(PACKET_RX_RING)`: 151 ms for 64 MiB of memory the guest had not touched yet;
/// 26 ms warm), so the first growth steps are cautious; every resize then measures it again.
static ALLOCATION_NS_PER_MIB: AtomicU64 = AtomicU64::new(2_400_000);

/// Growth steps keep the successor's allocation within this share of the time the current
/// ring holds the traffic: the kernel allocates a ring without being preempted, and on a busy
/// CPU the engine waits for it while every ring fills (see [`growth_step`]).
const ALLOCATION_SHARE_OF_HOLD: f64 = 0.5;

/// An interface's ring, replaced by a larger or smaller one as its traffic changes.
pub(crate) struct ElasticRing {
    current: Ring,
    /// The current ring's bytes of the budget (`None`: not from a budget, never resized).
    share: Option<RingShare>,
    budget: Option<Arc<RingBudget>>,
    snap_length: u32,
    /// The ring being replaced: read to its end before `current`.
    retiring: Option<Retiring>,
    /// A successor being opened on another thread.
    opening: Option<Opening>,
    /// Kernel counters of rings already closed.
    carried: KernelStats,
    /// Traffic read since `window_start`, for the rate.
    window_bytes: u64,
    window_start: Instant,
    /// Blocks read from `current` in this pass of the engine.
    blocks_this_pass: u32,
    /// Drops seen at the last counters tick, to notice new ones.
    drops_seen: u64,
    /// The last time the traffic would not have fit the base ring.
    last_busy: Instant,
    /// Growth was refused (budget spent) or failed; not retried before this.
    retry_after: Option<Instant>,
    /// Hand-overs so far.
    resizes: u32,
}

struct Retiring {
    ring: Ring,
    _share: Option<RingShare>,
    settle: Instant,
    give_up: Instant,
}

struct Opening {
    thread: JoinHandle<Result<Ring, RingError>>,
    share: RingShare,
    config: RingConfig,
}

impl ElasticRing {
    /// Wraps a ring of fixed size.
    pub(crate) fn fixed(ring: Ring) -> ElasticRing {
        ElasticRing::new(ring, None, None, 0)
    }

    /// Wraps a ring drawn from `budget` (its `share`); it is made ready for hand-overs.
    pub(crate) fn from_budget(
        mut ring: Ring,
        share: RingShare,
        budget: Arc<RingBudget>,
        snap_length: u32,
    ) -> Result<ElasticRing, RingError> {
        ring.enable_successor()?;
        Ok(ElasticRing::new(
            ring,
            Some(share),
            Some(budget),
            snap_length,
        ))
    }

    fn new(
        ring: Ring,
        share: Option<RingShare>,
        budget: Option<Arc<RingBudget>>,
        snap_length: u32,
    ) -> ElasticRing {
        let now = Instant::now();
        ElasticRing {
            current: ring,
            share,
            budget,
            snap_length,
            retiring: None,
            opening: None,
            carried: KernelStats::default(),
            window_bytes: 0,
            window_start: now,
            blocks_this_pass: 0,
            drops_seen: 0,
            last_busy: now,
            retry_after: None,
            resizes: 0,
        }
    }

    /// The ring packets arrive in now (for its name, index and geometry).
    pub(crate) fn ring(&self) -> &Ring {
        &self.current
    }

    /// The sockets to wait on.
    pub(crate) fn poll_fds<'a>(&'a self, fds: &mut Vec<BorrowedFd<'a>>) {
        if let Some(retiring) = &self.retiring {
            fds.push(retiring.ring.as_fd());
        }
        fds.push(self.current.as_fd());
    }

    /// The next handed-over block, in the kernel's order: the retiring ring's until it is
    /// empty, then the current one's.
    pub(crate) fn next_block(&mut self, now: Instant) -> Option<Block<'_>> {
        if let Some(retiring) = &self.retiring {
            // What the old ring holds is read first, even past `give_up`; it is closed once
            // nothing more can come (settled and empty) or the kernel never handed its last
            // block over.
            let empty = now >= retiring.settle && retiring.ring.is_drained();
            if !retiring.ring.has_ready_block() && (empty || now >= retiring.give_up) {
                self.close_retiring();
            }
        }
        if let Some(retiring) = self.retiring.as_mut() {
            // Not empty yet: the current ring's packets are newer, they wait.
            return retiring.ring.next_block();
        }
        let block = self.current.next_block();
        if block.is_some() {
            self.blocks_this_pass += 1;
        }
        block
    }

    /// Counts `bytes` of packets read, for the rate.
    pub(crate) fn count(&mut self, bytes: u64) {
        self.window_bytes += bytes;
    }

    /// How many times the ring was replaced.
    pub(crate) fn resizes(&self) -> u32 {
        self.resizes
    }

    /// Whether a ring is being replaced (the engine then looks again soon, to finish it).
    pub(crate) fn is_changing(&self) -> bool {
        self.retiring.is_some() || self.opening.is_some()
    }

    /// After the engine read what was ready: measures the traffic, starts a resize when the
    /// ring does not suit it, and completes one whose successor is open.
    pub(crate) fn after_pass(&mut self, now: Instant) {
        let lagging = self.blocks_this_pass * 2 >= self.current.config().block_count;
        self.blocks_this_pass = 0;
        let Some(budget) = self.budget.clone() else {
            return;
        };
        if let Some(opening) = self.opening.take_if(|o| o.thread.is_finished()) {
            self.swap_in(opening, now);
        }
        let elapsed = now.saturating_duration_since(self.window_start);
        let mut wanted = None;
        if elapsed >= RATE_WINDOW || lagging {
            let rate = self.window_bytes as f64 / elapsed.as_secs_f64().max(1e-3);
            self.window_bytes = 0;
            self.window_start = now;
            let needed = (rate * HEADROOM.as_secs_f64()) as u64;
            if needed > crate::rings::BASE_RING_BYTES / 2 {
                self.last_busy = now;
            }
            let ring_bytes = self.current.config().ring_bytes();
            if lagging || needed > ring_bytes {
                let cost = Duration::from_nanos(ALLOCATION_NS_PER_MIB.load(Ordering::Relaxed));
                wanted = Some(growth_step(
                    ring_bytes,
                    needed.max(ring_bytes * 2),
                    rate,
                    cost,
                ));
            }
        }
        if self.is_changing() || self.retry_after.is_some_and(|t| now < t) {
            return;
        }
        let grown = self.current.config().ring_bytes() > crate::rings::BASE_RING_BYTES;
        if let Some(wanted) = wanted {
            match budget.larger_ring(self.current.config(), self.snap_length, wanted) {
                Some((config, share)) => self.open_successor(config, share, now),
                // Spent: try again in a while rather than on every packet.
                None => self.retry_after = Some(now + Duration::from_secs(1)),
            }
        } else if grown && now.saturating_duration_since(self.last_busy) >= SHRINK_AFTER {
            match budget.base_ring(self.snap_length) {
                Ok((config, share)) => self.open_successor(config, share, now),
                Err(error) => {
                    tracing::warn!(interface = %self.current.interface(), %error, "cannot size a smaller ring");
                    self.retry_after = Some(now + SHRINK_AFTER);
                }
            }
        }
    }

    /// Called on the counters tick with the kernel's drops: a new drop is a reason to grow.
    pub(crate) fn note_drops(&mut self, drops: u64) {
        if drops > self.drops_seen {
            self.drops_seen = drops;
            // Treated as lagging on the next pass.
            self.blocks_this_pass = self.current.config().block_count;
        }
    }

    fn open_successor(&mut self, config: RingConfig, share: RingShare, now: Instant) {
        let successor = match self.current.successor(config) {
            Ok(successor) => successor,
            Err(error) => {
                tracing::warn!(%error, "cannot prepare a resized ring");
                self.retry_after = Some(now + Duration::from_secs(5));
                return;
            }
        };
        let opened = std::thread::Builder::new()
            .name("podcap-ring".into())
            .spawn(move || {
                // One ring is allocated at a time, process-wide: allocating a ring is kernel
                // work that is not preempted, and ten at once starve the engine that must read
                // the rings still in use (see `OPENING`).
                let _one_at_a_time = OPENING.lock();
                let (ring, opened_in) = successor.take_over()?;
                let mib = (ring.config().ring_bytes() >> 20).max(1);
                let per_mib = opened_in.as_nanos() / u128::from(mib);
                ALLOCATION_NS_PER_MIB.store(
                    u64::try_from(per_mib).unwrap_or(u64::MAX),
                    Ordering::Relaxed,
                );
                Ok(ring)
            });
        match opened {
            Ok(thread) => {
                tracing::debug!(
                    interface = %self.current.interface(),
                    from = self.current.config().ring_bytes(),
                    to = config.ring_bytes(),
                    "resizing the ring"
                );
                self.opening = Some(Opening {
                    thread,
                    share,
                    config,
                });
            }
            Err(error) => {
                tracing::warn!(%error, "cannot start a thread to open a larger ring");
                self.retry_after = Some(now + Duration::from_secs(1));
            }
        }
    }

    fn swap_in(&mut self, opening: Opening, now: Instant) {
        let Opening {
            thread,
            share,
            config,
        } = opening;
        let opened = thread.join().unwrap_or_else(|_| {
            Err(RingError::BadGeometry(
                "the thread opening the ring panicked".into(),
            ))
        });
        // Already receiving: the traffic moved to it on the opening thread.
        let next = match opened {
            Ok(next) => next,
            Err(error) => {
                // Failed before the program's switch: the current ring still gets everything.
                tracing::warn!(interface = %self.current.interface(), bytes = config.ring_bytes(), %error, "cannot open a resized ring; keeping the current one");
                self.retry_after = Some(now + Duration::from_secs(5));
                return;
            }
        };
        self.resizes += 1;
        // Drops counted until now happened while the smaller ring was still in use: they led
        // to this resize and must not lead to another one for the ring that replaces it.
        match self.stats() {
            Ok(stats) => self.drops_seen = stats.drops,
            Err(error) => tracing::debug!(%error, "reading the ring's counters at a resize"),
        }
        let old = std::mem::replace(&mut self.current, next);
        let old_share = self.share.replace(share);
        let block_timeout = old.config().block_timeout;
        self.retiring = Some(Retiring {
            ring: old,
            _share: old_share,
            // A packet the fanout program sent it just before the switch may still be on its
            // way in.
            settle: now + afpacket::IN_FLIGHT_SETTLE,
            give_up: now + afpacket::last_block_wait(block_timeout),
        });
    }

    fn close_retiring(&mut self) {
        if let Some(mut retiring) = self.retiring.take() {
            match retiring.ring.stats() {
                Ok(stats) => self.carried = add(self.carried, stats),
                Err(error) => tracing::warn!(%error, "reading a retired ring's counters"),
            }
            // Closing a packet socket waits for an RCU grace period (tens of milliseconds),
            // during which the engine would read no ring at all: it closes on a thread of its
            // own, and its memory goes back to the budget once it is closed.
            let closed = std::thread::Builder::new()
                .name("podcap-ring".into())
                .spawn(move || drop(retiring));
            if let Err(error) = closed {
                tracing::debug!(%error, "closing a retired ring here");
            }
        }
    }

    /// Kernel counters of every ring this interface has had.
    pub(crate) fn stats(&mut self) -> Result<KernelStats, RingError> {
        let mut total = add(self.carried, self.current.stats()?);
        if let Some(retiring) = self.retiring.as_mut() {
            total = add(total, retiring.ring.stats()?);
        }
        Ok(total)
    }

    /// Whether every packet the kernel accepted has been read.
    pub(crate) fn is_drained(&self) -> bool {
        self.retiring.as_ref().is_none_or(|r| r.ring.is_drained()) && self.current.is_drained()
    }

    /// Stops new packets (for a drain): the current ring's filter drops everything, and a
    /// successor still opening is abandoned.
    pub(crate) fn detach_traffic(&mut self) -> Result<(), RingError> {
        self.opening = None;
        self.budget = None;
        if let Some(retiring) = &self.retiring {
            retiring.ring.detach_traffic()?;
        }
        self.current.detach_traffic()
    }

    /// The longest block timeout of the rings open now.
    pub(crate) fn block_timeout(&self) -> Duration {
        let current = self.current.config().block_timeout;
        self.retiring
            .as_ref()
            .map_or(current, |r| r.ring.config().block_timeout.max(current))
    }

    pub(crate) fn interface_exists(&self) -> bool {
        self.current.interface_exists()
    }

    pub(crate) fn take_error(&self) -> Option<std::io::Error> {
        if let Some(retiring) = &self.retiring {
            let _ = retiring.ring.take_error();
        }
        self.current.take_error()
    }
}

/// The size to grow a ring of `current` bytes to, on the way to `wanted`, at `rate` bytes per
/// second when allocating costs `cost_per_mib`. The largest power of two whose allocation fits
/// in [`ALLOCATION_SHARE_OF_HOLD`] of the time the current ring holds the traffic: the engine
/// cannot read while the kernel allocates (on a busy CPU), so a step the current ring cannot
/// cover drops packets, and a few covered steps (1 → 4 → 16 MiB) lose none where one large step
/// (1 → 16 MiB) would. When not even doubling fits (at line rate any allocation outlasts a small
/// ring), one step straight to `wanted`: one stall costs less than several.
fn growth_step(current: u64, wanted: u64, rate: f64, cost_per_mib: Duration) -> u64 {
    let hold = current as f64 / rate.max(1.0);
    let affordable_mib = hold * ALLOCATION_SHARE_OF_HOLD / cost_per_mib.as_secs_f64().max(1e-9);
    let affordable = (affordable_mib * f64::from(1 << 20)) as u64;
    let step = if affordable >= 2 * current {
        1_u64 << (63 - affordable.leading_zeros())
    } else {
        return wanted;
    };
    step.min(wanted)
}

fn add(a: KernelStats, b: KernelStats) -> KernelStats {
    KernelStats {
        received: a.received + b.received,
        drops: a.drops + b.drops,
        freezes: a.freezes + b.freezes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;
    /// 30k pps of 1400-byte frames, one busy pod of the density benchmark.
    const BUSY: f64 = 42e6;
    /// One pod at the sender's maximum.
    const LINE_RATE: f64 = 1.2e9;
    const COLD: Duration = Duration::from_micros(2_400);
    const WARM: Duration = Duration::from_micros(400);

    #[test]
    fn a_busy_ring_grows_in_steps_its_current_ring_can_cover() {
        // 1 MiB holds 25 ms at 42 MB/s: a 16 MiB allocation (38 ms cold) would outlast it.
        assert_eq!(growth_step(MIB, 16 * MIB, BUSY, COLD), 4 * MIB);
        // 4 MiB holds 100 ms: the rest of the way at once.
        assert_eq!(growth_step(4 * MIB, 16 * MIB, BUSY, COLD), 16 * MIB);
        // Warm memory allocates fast enough for one step.
        assert_eq!(growth_step(MIB, 16 * MIB, BUSY, WARM), 16 * MIB);
    }

    #[test]
    fn when_no_step_fits_one_step_goes_all_the_way() {
        assert_eq!(growth_step(MIB, 64 * MIB, LINE_RATE, COLD), 64 * MIB);
        assert_eq!(growth_step(MIB, 64 * MIB, LINE_RATE, WARM), 64 * MIB);
    }

    #[test]
    fn a_step_never_passes_what_is_wanted() {
        assert_eq!(growth_step(MIB, 2 * MIB, 1e3, COLD), 2 * MIB);
        assert_eq!(growth_step(MIB, 3 * MIB, 1e3, COLD), 3 * MIB);
    }
}
