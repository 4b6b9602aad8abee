//! Reading integers in a capture file's byte order. pcap and pcapng files are written in the
//! writer's host order and say which one by their magic numbers, so a merge reads both.

/// The byte order of one pcap file or one pcapng section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ByteOrder {
    Little,
    Big,
}

impl ByteOrder {
    /// This machine's byte order.
    pub(super) fn native() -> ByteOrder {
        if cfg!(target_endian = "little") {
            ByteOrder::Little
        } else {
            ByteOrder::Big
        }
    }

    /// The order in which `bytes` spell `magic`, if they spell it at all.
    pub(super) fn of_magic(bytes: [u8; 4], magic: u32) -> Option<ByteOrder> {
        if u32::from_le_bytes(bytes) == magic {
            Some(ByteOrder::Little)
        } else if u32::from_be_bytes(bytes) == magic {
            Some(ByteOrder::Big)
        } else {
            None
        }
    }

    // Callers check lengths before reading (a record's size is validated once), so indexing
    // past the end here would be a bug in this module, not a property of the input.
    #[inline]
    pub(super) fn u16(self, bytes: &[u8], at: usize) -> u16 {
        let raw = [bytes[at], bytes[at + 1]];
        match self {
            ByteOrder::Little => u16::from_le_bytes(raw),
            ByteOrder::Big => u16::from_be_bytes(raw),
        }
    }

    #[inline]
    pub(super) fn u32(self, bytes: &[u8], at: usize) -> u32 {
        let raw = [bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]];
        match self {
            ByteOrder::Little => u32::from_le_bytes(raw),
            ByteOrder::Big => u32::from_be_bytes(raw),
        }
    }

    #[inline]
    pub(super) fn u64(self, bytes: &[u8], at: usize) -> u64 {
        let mut raw = [0u8; 8];
        raw.copy_from_slice(&bytes[at..at + 8]);
        match self {
            ByteOrder::Little => u64::from_le_bytes(raw),
            ByteOrder::Big => u64::from_be_bytes(raw),
        }
    }

    /// A pcapng 64-bit timestamp: the high 32-bit word first, then the low one.
    #[inline]
    pub(super) fn timestamp(self, bytes: &[u8], at: usize) -> u64 {
        (u64::from(self.u32(bytes, at)) << 32) | u64::from(self.u32(bytes, at + 4))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magic_tells_the_order() {
        let magic: u32 = 0x1A2B_3C4D;
        assert_eq!(
            ByteOrder::of_magic(magic.to_le_bytes(), magic),
            Some(ByteOrder::Little)
        );
        assert_eq!(
            ByteOrder::of_magic(magic.to_be_bytes(), magic),
            Some(ByteOrder::Big)
        );
        assert_eq!(ByteOrder::of_magic([1, 2, 3, 4], magic), None);
    }

    #[test]
    fn timestamps_are_high_word_first() {
        let bytes = [0, 0, 0, 1, 0, 0, 0, 2];
        assert_eq!(ByteOrder::Big.timestamp(&bytes, 0), (1 << 32) | 2);
    }
}
