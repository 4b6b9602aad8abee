//! Reading classic pcap: the 24-byte file header in any of its four magics (micro- or
//! nanosecond timestamps, either byte order) and the 16-byte record headers.

use super::byte_order::ByteOrder;
use super::timescale::pcap_ns;
use crate::format::pcap::NANOSECOND_MAGIC;
pub(super) use crate::format::pcap::RECORD_HEADER_LEN;

pub(super) const FILE_HEADER_LEN: usize = 24;
const MICROSECOND_MAGIC: u32 = 0xa1b2_c3d4;
/// The link type is the low 16 bits of the header's field; the high bits carry FCS details.
const LINK_TYPE_MASK: u32 = 0xffff;

/// What a pcap file header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct PcapHeader {
    pub(super) order: ByteOrder,
    pub(super) nanoseconds: bool,
    pub(super) link_type: u16,
    pub(super) snap_len: u32,
}

/// Whether a file starting with these bytes is classic pcap.
pub(super) fn is_pcap_magic(start: [u8; 4]) -> bool {
    ByteOrder::of_magic(start, MICROSECOND_MAGIC).is_some()
        || ByteOrder::of_magic(start, NANOSECOND_MAGIC).is_some()
}

/// Parses the file header; the error says what is wrong with it.
pub(super) fn parse_file_header(header: &[u8]) -> Result<PcapHeader, String> {
    let start = [header[0], header[1], header[2], header[3]];
    let (order, nanoseconds) = if let Some(order) = ByteOrder::of_magic(start, NANOSECOND_MAGIC) {
        (order, true)
    } else if let Some(order) = ByteOrder::of_magic(start, MICROSECOND_MAGIC) {
        (order, false)
    } else {
        return Err("not a pcap magic number".into());
    };
    let major = order.u16(header, 4);
    if major != 2 {
        return Err(format!("pcap version {major} (only version 2 exists)"));
    }
    Ok(PcapHeader {
        order,
        nanoseconds,
        link_type: (order.u32(header, 20) & LINK_TYPE_MASK) as u16,
        snap_len: order.u32(header, 16),
    })
}

/// What a record header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct RecordHeader {
    pub(super) timestamp_ns: u64,
    pub(super) captured_len: usize,
    pub(super) original_len: u32,
}

#[inline]
pub(super) fn parse_record_header(file: &PcapHeader, header: &[u8]) -> RecordHeader {
    let order = file.order;
    RecordHeader {
        timestamp_ns: pcap_ns(order.u32(header, 0), order.u32(header, 4), file.nanoseconds),
        captured_len: order.u32(header, 8) as usize,
        original_len: order.u32(header, 12),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(magic: u32, big_endian: bool) -> Vec<u8> {
        let words: [u32; 6] = [magic, 0x0002_0004, 0, 0, 65_535, 113];
        let mut out = Vec::new();
        for (i, word) in words.iter().enumerate() {
            // Version is two u16s, each in file order.
            let bytes = if i == 1 {
                let (major, minor) = (2u16, 4u16);
                if big_endian {
                    [major.to_be_bytes(), minor.to_be_bytes()].concat()
                } else {
                    [major.to_le_bytes(), minor.to_le_bytes()].concat()
                }
            } else if big_endian {
                word.to_be_bytes().to_vec()
            } else {
                word.to_le_bytes().to_vec()
            };
            out.extend(bytes);
        }
        out
    }

    #[test]
    fn all_four_magics_are_read() {
        for (magic, nanoseconds) in [(MICROSECOND_MAGIC, false), (NANOSECOND_MAGIC, true)] {
            for big_endian in [false, true] {
                let bytes = header(magic, big_endian);
                assert!(is_pcap_magic([bytes[0], bytes[1], bytes[2], bytes[3]]));
                let parsed = parse_file_header(&bytes).unwrap();
                assert_eq!(parsed.nanoseconds, nanoseconds);
                assert_eq!(parsed.link_type, 113);
                assert_eq!(parsed.snap_len, 65_535);
                let expected = if big_endian {
                    ByteOrder::Big
                } else {
                    ByteOrder::Little
                };
                assert_eq!(parsed.order, expected);
            }
        }
    }

    #[test]
    fn records_in_microseconds_become_nanoseconds() {
        let file = parse_file_header(&header(MICROSECOND_MAGIC, true)).unwrap();
        let mut record = Vec::new();
        for word in [7u32, 250_000, 60, 1514] {
            record.extend(word.to_be_bytes());
        }
        let parsed = parse_record_header(&file, &record);
        assert_eq!(parsed.timestamp_ns, 7_250_000_000);
        assert_eq!((parsed.captured_len, parsed.original_len), (60, 1514));
    }
}
