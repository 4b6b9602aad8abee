//! The interfaces of the merged file: one per distinct interface of each input, numbered in
//! the order they are found.
//!
//! A rotated capture read as one input describes the same interfaces again in every file; they
//! map back to the interfaces the first file created, so Wireshark shows one interface per pod
//! interface rather than one per file. Two interfaces of one file never share an output
//! interface, even when they look alike.

use super::statistics::{Statistics, StatisticsSample};

/// An interface as a file describes it: a pcapng IDB, or a classic pcap header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct InterfaceDescription {
    pub(super) link_type: u16,
    pub(super) snap_len: u32,
    pub(super) name: Option<String>,
    pub(super) description: Option<String>,
    /// The raw `if_filter` value: a type byte (0 = libpcap expression), then the filter.
    pub(super) filter: Option<Vec<u8>>,
}

/// An interface of the merged file.
#[derive(Debug)]
pub(super) struct OutputInterface {
    /// Index of the input it came from.
    pub(super) input: usize,
    pub(super) described: InterfaceDescription,
    pub(super) statistics: Option<Statistics>,
}

#[derive(Debug, Default)]
pub(super) struct InterfaceTable {
    interfaces: Vec<OutputInterface>,
    /// Interfaces before this index are already in the output (pcapng IDBs precede the
    /// packets that name them, so new ones are written before the next packet).
    declared: usize,
}

impl InterfaceTable {
    /// The output id for an interface of `input`: one of `input_ids` (this input's interfaces
    /// so far) that it matches and `section_ids` (those its current file or section already
    /// uses) does not hold, else a new one.
    pub(super) fn find_or_add(
        &mut self,
        input: usize,
        input_ids: &mut Vec<u32>,
        section_ids: &[u32],
        described: InterfaceDescription,
    ) -> u32 {
        let reusable = input_ids.iter().copied().find(|id| {
            !section_ids.contains(id)
                && self
                    .interfaces
                    .get(*id as usize)
                    .is_some_and(|known| known.described == described)
        });
        if let Some(id) = reusable {
            return id;
        }
        let id = self.interfaces.len() as u32;
        self.interfaces.push(OutputInterface {
            input,
            described,
            statistics: None,
        });
        input_ids.push(id);
        id
    }

    pub(super) fn add_statistics(&mut self, id: u32, sample: &StatisticsSample) {
        if let Some(interface) = self.interfaces.get_mut(id as usize) {
            interface
                .statistics
                .get_or_insert_with(Statistics::default)
                .add(sample);
        }
    }

    pub(super) fn len(&self) -> usize {
        self.interfaces.len()
    }

    pub(super) fn all(&self) -> &[OutputInterface] {
        &self.interfaces
    }

    #[inline]
    pub(super) fn has_undeclared(&self) -> bool {
        self.declared < self.interfaces.len()
    }

    /// The interfaces not yet in the output, now counted as declared.
    pub(super) fn take_undeclared(&mut self) -> &[OutputInterface] {
        let first = self.declared;
        self.declared = self.interfaces.len();
        &self.interfaces[first..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn veth(name: &str) -> InterfaceDescription {
        InterfaceDescription {
            link_type: 1,
            snap_len: 262_144,
            name: Some(name.into()),
            description: None,
            filter: None,
        }
    }

    #[test]
    fn a_rotated_series_maps_to_the_first_files_interfaces() {
        let mut table = InterfaceTable::default();
        let mut input_ids = Vec::new();
        let first = [
            table.find_or_add(0, &mut input_ids, &[], veth("a")),
            table.find_or_add(0, &mut input_ids, &[0], veth("b")),
        ];
        assert_eq!(first, [0, 1]);
        // The next file describes the same two interfaces, in another order.
        let b = table.find_or_add(0, &mut input_ids, &[], veth("b"));
        let a = table.find_or_add(0, &mut input_ids, &[b], veth("a"));
        assert_eq!((a, b), (0, 1));
        assert_eq!(table.len(), 2);
    }

    #[test]
    fn look_alike_interfaces_of_one_file_stay_apart() {
        let mut table = InterfaceTable::default();
        let mut input_ids = Vec::new();
        let first = table.find_or_add(0, &mut input_ids, &[], veth("a"));
        let second = table.find_or_add(0, &mut input_ids, &[first], veth("a"));
        assert_ne!(first, second);
    }

    #[test]
    fn other_inputs_get_their_own_interfaces() {
        let mut table = InterfaceTable::default();
        let (mut ids0, mut ids1) = (Vec::new(), Vec::new());
        let a0 = table.find_or_add(0, &mut ids0, &[], veth("a"));
        let a1 = table.find_or_add(1, &mut ids1, &[], veth("a"));
        assert_ne!(a0, a1);
        assert_eq!(table.take_undeclared().len(), 2);
        assert!(!table.has_undeclared());
    }
}
