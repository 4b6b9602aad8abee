//! A packet and byte budget shared by several engines — one per pod of the same capture — so a
//! capture's `maxPackets` and `maxBytes` hold across all its pods, exactly: every packet is
//! taken from the budget with atomic operations before it is written, no packet is written past
//! `maxPackets`, and none that would take the bytes past `maxBytes`. Once a packet is refused
//! the budget is spent for everyone.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use crate::engine::EndReason;

#[derive(Debug)]
pub struct Budget {
    max_packets: Option<u64>,
    max_bytes: Option<u64>,
    packets: AtomicU64,
    bytes: AtomicU64,
    spent: AtomicBool,
}

impl Budget {
    /// A budget of which `used_packets` and `used_bytes` are already used (e.g. by the file
    /// segments written before a restart).
    pub fn new(
        max_packets: Option<u64>,
        max_bytes: Option<u64>,
        used_packets: u64,
        used_bytes: u64,
    ) -> Budget {
        let budget = Budget {
            max_packets,
            max_bytes,
            packets: AtomicU64::new(used_packets),
            bytes: AtomicU64::new(used_bytes),
            spent: AtomicBool::new(false),
        };
        if max_packets.is_some_and(|max| used_packets >= max) {
            budget.spent.store(true, Ordering::Release);
        }
        budget
    }

    /// Takes one packet of `len` bytes, or says which limit refuses it.
    pub fn take(&self, len: u64) -> Result<(), EndReason> {
        if self.spent.load(Ordering::Acquire) {
            return Err(self.reason());
        }
        let before = self.packets.fetch_add(1, Ordering::AcqRel);
        if self.max_packets.is_some_and(|max| before >= max) {
            self.packets.fetch_sub(1, Ordering::AcqRel);
            self.spent.store(true, Ordering::Release);
            return Err(EndReason::PacketLimit);
        }
        if let Some(max) = self.max_bytes {
            let fits = self
                .bytes
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                    (used + len <= max).then_some(used + len)
                });
            if fits.is_err() {
                self.packets.fetch_sub(1, Ordering::AcqRel);
                self.spent.store(true, Ordering::Release);
                return Err(EndReason::ByteLimit);
            }
        } else {
            self.bytes.fetch_add(len, Ordering::AcqRel);
        }
        if self.max_packets.is_some_and(|max| before + 1 >= max) {
            // That was the last packet: the others stop at their next block.
            self.spent.store(true, Ordering::Release);
        }
        Ok(())
    }

    /// True once no more packets may be written.
    pub fn is_spent(&self) -> bool {
        self.spent.load(Ordering::Acquire)
    }

    /// Which limit ended it (meaningful once spent).
    pub fn reason(&self) -> EndReason {
        if self
            .max_packets
            .is_some_and(|max| self.packets.load(Ordering::Acquire) >= max)
        {
            EndReason::PacketLimit
        } else {
            EndReason::ByteLimit
        }
    }

    pub fn used(&self) -> (u64, u64) {
        (
            self.packets.load(Ordering::Acquire),
            self.bytes.load(Ordering::Acquire),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn threads_share_exactly_max_packets() {
        let budget = Arc::new(Budget::new(Some(1000), None, 0, 0));
        let taken: u64 = (0..4)
            .map(|_| {
                let budget = budget.clone();
                std::thread::spawn(move || {
                    (0..600).filter(|_| budget.take(10).is_ok()).count() as u64
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| t.join().unwrap())
            .sum();
        assert_eq!(taken, 1000);
        assert!(budget.is_spent());
        assert_eq!(budget.reason(), EndReason::PacketLimit);
        assert_eq!(budget.used(), (1000, 10_000));
    }

    #[test]
    fn bytes_never_pass_the_limit_and_earlier_use_counts() {
        let budget = Budget::new(None, Some(100), 0, 60);
        assert!(budget.take(30).is_ok());
        assert_eq!(budget.take(20), Err(EndReason::ByteLimit));
        assert_eq!(budget.used(), (1, 90));
        assert!(budget.take(1).is_err(), "once refused, spent for everyone");
        assert!(Budget::new(Some(5), None, 5, 0).is_spent());
    }
}
