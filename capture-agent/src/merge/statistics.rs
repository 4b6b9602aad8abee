//! Interface statistics (pcapng ISBs) carried into the merged file, so Wireshark's capture
//! properties still show what the kernel received and dropped on each pod interface.
//!
//! pcapng counters count from the start of the capture, so the files of one rotated capture
//! each hold the running total, and the last one is the capture's total: adding them up would
//! count the first file's packets once per file. When a counter starts over (a later capture
//! of the same interface chained into the same input: another `isb_starttime`, or a counter
//! that went down), the totals of the runs are added.

pub(super) use crate::format::pcapng::{
    ISB_ENDTIME as ENDTIME_CODE, ISB_STARTTIME as STARTTIME_CODE,
};

/// The options of an ISB the merge keeps, in the order [`Statistics::counters`] holds them:
/// `isb_ifrecv`, `isb_ifdrop`, `isb_filteraccept`, `isb_osdrop`, `isb_usrdeliv`.
pub(super) const COUNTER_CODES: [u16; 5] = [4, 5, 6, 7, 8];

/// One ISB of an input, times in nanoseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct StatisticsSample {
    pub(super) at_ns: u64,
    pub(super) start_ns: Option<u64>,
    pub(super) end_ns: Option<u64>,
    pub(super) counters: [Option<u64>; COUNTER_CODES.len()],
}

/// One counter over possibly several runs of a capture.
#[derive(Debug, Clone, Copy, Default)]
struct Counter {
    finished_runs: u64,
    current_run: Option<u64>,
}

impl Counter {
    fn total(&self) -> Option<u64> {
        self.current_run
            .map(|current| self.finished_runs.saturating_add(current))
    }
}

/// The statistics of one output interface so far.
#[derive(Debug, Clone, Default)]
pub(super) struct Statistics {
    at_ns: u64,
    start_ns: Option<u64>,
    end_ns: Option<u64>,
    run_start_ns: Option<u64>,
    counters: [Counter; COUNTER_CODES.len()],
}

impl Statistics {
    pub(super) fn add(&mut self, sample: &StatisticsSample) {
        let went_down = self
            .counters
            .iter()
            .zip(&sample.counters)
            .any(|(counter, new)| matches!((counter.current_run, *new), (Some(old), Some(new)) if new < old));
        let new_run = match (self.run_start_ns, sample.start_ns) {
            (Some(old), Some(new)) => old != new,
            _ => went_down,
        };
        for (counter, value) in self.counters.iter_mut().zip(&sample.counters) {
            if new_run {
                counter.finished_runs = counter.total().unwrap_or(counter.finished_runs);
                counter.current_run = None;
            }
            if value.is_some() {
                counter.current_run = *value;
            }
        }
        self.run_start_ns = sample.start_ns.or(self.run_start_ns);
        self.at_ns = self.at_ns.max(sample.at_ns);
        self.start_ns = earliest(self.start_ns, sample.start_ns);
        self.end_ns = self.end_ns.max(sample.end_ns);
    }

    /// What the merged file's ISB for this interface says.
    pub(super) fn totals(&self) -> StatisticsSample {
        let mut counters = [None; COUNTER_CODES.len()];
        for (total, counter) in counters.iter_mut().zip(&self.counters) {
            *total = counter.total();
        }
        StatisticsSample {
            at_ns: self.at_ns,
            start_ns: self.start_ns,
            end_ns: self.end_ns,
            counters,
        }
    }
}

fn earliest(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        _ => a.or(b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(start: u64, received: u64, dropped: u64) -> StatisticsSample {
        StatisticsSample {
            at_ns: start + received,
            start_ns: Some(start),
            end_ns: Some(start + received),
            counters: [Some(received), Some(dropped), None, None, None],
        }
    }

    #[test]
    fn rotated_files_of_one_capture_keep_the_last_running_total() {
        let mut statistics = Statistics::default();
        statistics.add(&sample(100, 10, 1));
        statistics.add(&sample(100, 25, 3));
        let totals = statistics.totals();
        assert_eq!(totals.counters[..2], [Some(25), Some(3)]);
        assert_eq!(totals.start_ns, Some(100));
        assert_eq!(totals.end_ns, Some(125));
    }

    #[test]
    fn separate_captures_add_up() {
        let mut statistics = Statistics::default();
        statistics.add(&sample(100, 10, 1));
        statistics.add(&sample(900, 4, 0));
        assert_eq!(statistics.totals().counters[..2], [Some(14), Some(1)]);
    }

    #[test]
    fn without_start_times_a_counter_going_down_starts_a_new_run() {
        let mut statistics = Statistics::default();
        let mut first = sample(0, 10, 2);
        first.start_ns = None;
        let mut second = sample(0, 3, 2);
        second.start_ns = None;
        statistics.add(&first);
        statistics.add(&second);
        assert_eq!(statistics.totals().counters[..2], [Some(13), Some(4)]);
        assert_eq!(statistics.totals().counters[2], None);
    }
}
