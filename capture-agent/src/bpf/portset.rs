//! Sets of ports and the BPF code that tests whether the accumulator holds one of them.
//!
//! A filter's ranges are normalised into sorted, disjoint, non-adjacent intervals (so `80,81,
//! 82-90` costs one comparison pair, not three), and a set is tested with a balanced decision tree
//! over the interval boundaries: a packet is decided after about log2(intervals) + 4 comparisons
//! however many ranges the user wrote, and the code size stays about two instructions per
//! interval. Small sets (and the leaves of the tree) are a plain chain, which is shorter.
//! Comparisons that the bounds already known on a path make redundant (a range starting at 0, one
//! ending at 65535, the lower end of a subtree) are left out.

use capture_spec::PortRange;

use super::asm::{Assembler, Label};
use super::program::{BPF_JEQ, BPF_JGE, BPF_JGT, BPF_JMP, BPF_K};

/// Largest port; the tested value always comes from a 16-bit load, so it is never above this.
const PORT_MAX: u32 = u16::MAX as u32;

/// Sets with at most this many intervals are tested with a chain rather than a tree: for so few,
/// the chain is no longer and barely slower.
const CHAIN_MAX: usize = 4;

/// A set of ports as sorted, disjoint, non-adjacent inclusive intervals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PortSet {
    intervals: Vec<(u32, u32)>,
}

impl PortSet {
    pub(crate) fn new<'a>(ranges: impl IntoIterator<Item = &'a PortRange>) -> PortSet {
        let mut sorted: Vec<(u32, u32)> = ranges
            .into_iter()
            .map(|r| (u32::from(r.first()), u32::from(r.last())))
            .collect();
        sorted.sort_unstable();
        let mut intervals: Vec<(u32, u32)> = Vec::with_capacity(sorted.len());
        for (first, last) in sorted {
            match intervals.last_mut() {
                // Overlapping or touching the previous interval: extend it.
                Some(previous) if first <= previous.1 + 1 => previous.1 = previous.1.max(last),
                _ => intervals.push((first, last)),
            }
        }
        PortSet { intervals }
    }

    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.intervals.is_empty()
    }

    pub(crate) fn is_everything(&self) -> bool {
        self.intervals == [(0, PORT_MAX)]
    }

    #[cfg(test)]
    pub(crate) fn contains(&self, port: u32) -> bool {
        self.intervals
            .iter()
            .any(|&(first, last)| (first..=last).contains(&port))
    }

    pub(crate) fn is_subset_of(&self, other: &PortSet) -> bool {
        self.intervals.iter().all(|&(first, last)| {
            other
                .intervals
                .iter()
                .any(|&(a, b)| a <= first && last <= b)
        })
    }

    /// Emits code that jumps to `matched` when A (a 16-bit value) is in the set, else to `missed`.
    pub(crate) fn emit_test(&self, asm: &mut Assembler, matched: Label, missed: Label) {
        emit_tree(asm, &self.intervals, 0, PORT_MAX, matched, missed);
    }
}

/// The label a value known to lie in `low..=high` goes to without any test, if there is one.
fn decided(
    intervals: &[(u32, u32)],
    low: u32,
    high: u32,
    matched: Label,
    missed: Label,
) -> Option<Label> {
    match intervals {
        [] => Some(missed),
        [(first, last)] if *first <= low && high <= *last => Some(matched),
        _ => None,
    }
}

/// Tests A, known to lie in `low..=high`, against `intervals` (all inside that domain).
fn emit_tree(
    asm: &mut Assembler,
    intervals: &[(u32, u32)],
    low: u32,
    high: u32,
    matched: Label,
    missed: Label,
) {
    if let Some(target) = decided(intervals, low, high, matched, missed) {
        asm.ja(target);
        return;
    }
    if intervals.len() <= CHAIN_MAX {
        emit_chain(asm, intervals, low, high, matched, missed);
        return;
    }
    // Split at the start of the middle interval: values from there up go right.
    let (left, right) = intervals.split_at(intervals.len() / 2);
    let split = right[0].0;
    let left_high = split - 1;
    let left_target = decided(left, low, left_high, matched, missed);
    let right_target = decided(right, split, high, matched, missed);
    let left_label = left_target.unwrap_or_else(|| asm.label());
    let right_label = right_target.unwrap_or_else(|| asm.label());
    asm.branch(BPF_JMP | BPF_JGE | BPF_K, split, right_label, left_label);
    if left_target.is_none() {
        asm.bind(left_label);
        emit_tree(asm, left, low, left_high, matched, missed);
    }
    if right_target.is_none() {
        asm.bind(right_label);
        emit_tree(asm, right, split, high, matched, missed);
    }
}

/// Tests the intervals in ascending order. A value below an interval's start is below every
/// later one too, so a failed lower-bound test is a miss; a value above an interval's end moves
/// on to the next one, and is then known to be above that end.
fn emit_chain(
    asm: &mut Assembler,
    intervals: &[(u32, u32)],
    low: u32,
    high: u32,
    matched: Label,
    missed: Label,
) {
    let mut known_low = low;
    for (index, &(first, last)) in intervals.iter().enumerate() {
        let is_last = index + 1 == intervals.len();
        let next = if is_last { missed } else { asm.label() };
        if first == last {
            asm.branch(BPF_JMP | BPF_JEQ | BPF_K, first, matched, next);
        } else if last >= high {
            // Only the last interval can reach the top of the domain.
            if first > known_low {
                asm.branch(BPF_JMP | BPF_JGE | BPF_K, first, matched, next);
            } else {
                asm.ja(matched);
            }
        } else {
            if first > known_low {
                asm.jump_unless(BPF_JMP | BPF_JGE | BPF_K, first, missed);
            }
            asm.branch(BPF_JMP | BPF_JGT | BPF_K, last, next, matched);
            known_low = last + 1;
        }
        if !is_last {
            asm.bind(next);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::interpret;
    use super::super::program::*;
    use super::*;

    fn set(ranges: &[(u16, u16)]) -> PortSet {
        let ranges: Vec<PortRange> = ranges
            .iter()
            .map(|&(a, b)| PortRange::new(a, b).unwrap())
            .collect();
        PortSet::new(&ranges)
    }

    /// A program that loads a 16-bit value from the frame and returns 1 if it is in `set`.
    fn tester(set: &PortSet) -> Program {
        let mut asm = Assembler::new();
        let matched = asm.label();
        let missed = asm.label();
        asm.emit(BPF_LD | BPF_H | BPF_ABS, 0);
        set.emit_test(&mut asm, matched, missed);
        asm.bind(matched);
        asm.emit(BPF_RET | BPF_K, 1);
        asm.bind(missed);
        asm.emit(BPF_RET | BPF_K, 0);
        Program::new(asm.finish().unwrap()).unwrap()
    }

    fn check_everywhere(set: &PortSet) {
        let program = tester(set);
        for port in 0..=PORT_MAX {
            let port16 = u16::try_from(port).unwrap();
            let expected = u32::from(set.contains(port));
            assert_eq!(
                interpret(&program, &port16.to_be_bytes()),
                expected,
                "port {port} in {set:?}"
            );
        }
    }

    #[test]
    fn normalises_ranges() {
        assert_eq!(
            set(&[
                (90, 100),
                (80, 80),
                (81, 85),
                (86, 89),
                (200, 300),
                (250, 260)
            ])
            .intervals,
            [(80, 100), (200, 300)]
        );
        assert!(set(&[(0, 100), (101, 65535)]).is_everything());
        assert!(set(&[]).is_empty());
        assert!(set(&[(5, 6)]).is_subset_of(&set(&[(1, 10)])));
        assert!(!set(&[(5, 11)]).is_subset_of(&set(&[(1, 10)])));
        assert!(set(&[]).is_subset_of(&set(&[])));
    }

    #[test]
    fn small_sets_are_tight() {
        let length = |s: &PortSet| tester(s).instructions().len() - 3;
        assert_eq!(length(&set(&[(80, 80)])), 1);
        assert_eq!(length(&set(&[(80, 80), (443, 443)])), 2);
        assert_eq!(length(&set(&[(8000, 8100)])), 2);
        assert_eq!(length(&set(&[(0, 1023)])), 1);
        assert_eq!(length(&set(&[(1024, 65535)])), 1);
        // Everything matches: the jump to `matched` is the next instruction, so nothing at all.
        assert_eq!(length(&set(&[(0, 65535)])), 0);
    }

    #[test]
    fn every_port_is_classified_right() {
        let sets = [
            set(&[]),
            set(&[(0, 0)]),
            set(&[(65535, 65535)]),
            set(&[(0, 65535)]),
            set(&[(0, 10), (65530, 65535)]),
            set(&[(53, 53), (80, 80), (443, 443), (8000, 8100)]),
            set(&[
                (1, 1),
                (3, 3),
                (5, 5),
                (7, 9),
                (100, 200),
                (300, 300),
                (65535, 65535),
            ]),
            set(&(0..60)
                .map(|i| (i * 1000 + 7, i * 1000 + 7 + (i % 3) * 50))
                .collect::<Vec<_>>()),
        ];
        for s in &sets {
            check_everywhere(s);
        }
    }

    #[test]
    fn big_sets_are_trees() {
        let many = set(&(0..400).map(|i| (i * 150, i * 150 + 9)).collect::<Vec<_>>());
        let program = tester(&many);
        // About two instructions per interval...
        assert!(
            program.instructions().len() < 2 * 400 + 400 / 4 + 20,
            "{}",
            program.instructions().len()
        );
        // ...and a shallow path: a balanced tree, not a 400-step chain.
        assert!(program.longest_path() < 25, "{}", program.longest_path());
        assert_eq!(interpret(&program, &150u16.to_be_bytes()), 1);
        assert_eq!(interpret(&program, &160u16.to_be_bytes()), 0);
    }
}
