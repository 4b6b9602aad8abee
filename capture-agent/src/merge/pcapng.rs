//! Reading pcapng blocks: section headers in either byte order, interface descriptions with
//! the options a merge keeps, packets from Enhanced, obsolete Packet and Simple Packet Blocks,
//! and interface statistics. Every other block type is skipped (name resolution, decryption
//! secrets, custom blocks): the merged file is about packets and the interfaces they came on.
//!
//! Functions here see one whole block (its length already checked against the input) and
//! return what it says, or why it is malformed.

use super::buffer::MAX_RECORD_LEN;
use super::byte_order::ByteOrder;
use super::interfaces::InterfaceDescription;
use super::statistics::{StatisticsSample, COUNTER_CODES, ENDTIME_CODE, STARTTIME_CODE};
use super::timescale::TimeScale;
pub(super) use crate::format::pcapng::SHB as SECTION_HEADER;
use crate::format::pcapng::{
    BYTE_ORDER_MAGIC, EPB as ENHANCED_PACKET, IDB as INTERFACE_DESCRIPTION, IF_DESCRIPTION,
    IF_FILTER, IF_NAME, IF_TSRESOL, ISB as INTERFACE_STATISTICS, OPT_END,
};

const PACKET: u32 = 2;
const SIMPLE_PACKET: u32 = 3;

/// Block type and total length.
pub(super) const BLOCK_HEADER_LEN: usize = 8;
/// A section header's fixed part up to the byte-order magic, needed to read its length.
pub(super) const SECTION_PROBE_LEN: usize = 12;
/// Type, length and the trailing length: the smallest block.
const MIN_BLOCK_LEN: usize = 12;

const IF_TSOFFSET: u16 = 14;
/// `epb_flags`, and `pack_flags` of the obsolete Packet Block: same code, same meaning.
const PACKET_FLAGS: u16 = 2;

/// What one block says, as far as the merge cares.
#[derive(Debug)]
pub(super) enum Block {
    SectionHeader,
    Interface {
        described: InterfaceDescription,
        scale: TimeScale,
    },
    Packet(PacketBlock),
    Statistics {
        interface: u32,
        raw: RawStatistics,
    },
    Skipped,
}

/// A packet block; the frame is `block[data_at..data_at + captured_len]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct PacketBlock {
    pub(super) interface: u32,
    /// None for a Simple Packet Block, which has no timestamp.
    pub(super) raw_timestamp: Option<u64>,
    pub(super) captured_len: usize,
    pub(super) original_len: u32,
    pub(super) flags: Option<u32>,
    pub(super) data_at: usize,
}

/// An ISB before its times are converted with the interface's resolution.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct RawStatistics {
    at: u64,
    start: Option<u64>,
    end: Option<u64>,
    counters: [Option<u64>; COUNTER_CODES.len()],
}

impl RawStatistics {
    pub(super) fn in_ns(&self, scale: TimeScale) -> StatisticsSample {
        StatisticsSample {
            at_ns: scale.to_ns(self.at),
            start_ns: self.start.map(|raw| scale.to_ns(raw)),
            end_ns: self.end.map(|raw| scale.to_ns(raw)),
            counters: self.counters,
        }
    }
}

/// The byte order of the section whose header starts `probe` (at least
/// [`SECTION_PROBE_LEN`] bytes).
pub(super) fn section_order(probe: &[u8]) -> Result<ByteOrder, String> {
    let magic = [probe[8], probe[9], probe[10], probe[11]];
    ByteOrder::of_magic(magic, BYTE_ORDER_MAGIC)
        .ok_or_else(|| format!("section header without the byte-order magic (found {magic:02x?})"))
}

/// The block type and total length from a block's first 8 bytes, checked for sanity.
#[inline]
pub(super) fn block_header(order: ByteOrder, header: &[u8]) -> Result<(u32, usize), String> {
    let block_type = order.u32(header, 0);
    let len = order.u32(header, 4) as usize;
    if len < MIN_BLOCK_LEN || !len.is_multiple_of(4) || len > MAX_RECORD_LEN {
        return Err(format!(
            "block of type {block_type:#x} claims {len} bytes (a block is a multiple of 4 bytes, \
             from {MIN_BLOCK_LEN} to {MAX_RECORD_LEN})"
        ));
    }
    Ok((block_type, len))
}

/// Parses a whole block of `block_type` (its bytes from type to trailing length).
#[inline]
pub(super) fn parse_block(
    order: ByteOrder,
    block_type: u32,
    block: &[u8],
) -> Result<Block, String> {
    let len = block.len();
    let trailer = order.u32(block, len - 4) as usize;
    if trailer != len {
        return Err(format!(
            "block of type {block_type:#x} starts with length {len} but ends with {trailer}"
        ));
    }
    let body = &block[..len - 4];
    match block_type {
        ENHANCED_PACKET => enhanced_packet(order, body).map(Block::Packet),
        SECTION_HEADER => section_header(order, body),
        INTERFACE_DESCRIPTION => interface_description(order, body),
        INTERFACE_STATISTICS => interface_statistics(order, body),
        PACKET => obsolete_packet(order, body).map(Block::Packet),
        SIMPLE_PACKET => simple_packet(order, body).map(Block::Packet),
        _ => Ok(Block::Skipped),
    }
}

fn too_short(what: &str, len: usize) -> String {
    format!("{what} of {len} bytes is too short")
}

fn section_header(order: ByteOrder, body: &[u8]) -> Result<Block, String> {
    if body.len() < 24 {
        return Err(too_short("section header", body.len() + 4));
    }
    let major = order.u16(body, 12);
    if major != 1 {
        return Err(format!(
            "pcapng version {major} (this reader knows version 1)"
        ));
    }
    Ok(Block::SectionHeader)
}

fn interface_description(order: ByteOrder, body: &[u8]) -> Result<Block, String> {
    if body.len() < 16 {
        return Err(too_short("interface description", body.len() + 4));
    }
    let mut described = InterfaceDescription {
        link_type: order.u16(body, 8),
        snap_len: order.u32(body, 12),
        name: None,
        description: None,
        filter: None,
    };
    let mut scale = TimeScale::default();
    let mut offset_seconds = 0;
    for (code, value) in options(order, &body[16..]) {
        match code {
            IF_NAME => described.name = Some(text(value)),
            IF_DESCRIPTION => described.description = Some(text(value)),
            IF_FILTER => described.filter = Some(value.to_vec()),
            IF_TSRESOL if !value.is_empty() => scale = TimeScale::from_tsresol(value[0])?,
            IF_TSOFFSET if value.len() == 8 => offset_seconds = order.u64(value, 0) as i64,
            _ => {}
        }
    }
    Ok(Block::Interface {
        described,
        scale: scale.with_offset_seconds(offset_seconds),
    })
}

/// Option text; some writers add a terminating NUL, which is not part of the name.
fn text(value: &[u8]) -> String {
    let end = value
        .iter()
        .rposition(|&b| b != 0)
        .map_or(0, |last| last + 1);
    String::from_utf8_lossy(&value[..end]).into_owned()
}

/// A packet block's lengths, checked against the block: the frame must fit before the end.
fn frame_fits(captured_len: usize, data_at: usize, body_len: usize) -> Result<(), String> {
    if data_at + captured_len > body_len {
        return Err(format!(
            "packet of {captured_len} captured bytes in a block with room for {}",
            body_len.saturating_sub(data_at)
        ));
    }
    Ok(())
}

fn padded(len: usize) -> usize {
    (len + 3) & !3
}

#[inline]
fn enhanced_packet(order: ByteOrder, body: &[u8]) -> Result<PacketBlock, String> {
    const DATA_AT: usize = 28;
    if body.len() < DATA_AT {
        return Err(too_short("enhanced packet block", body.len() + 4));
    }
    let captured_len = order.u32(body, 20) as usize;
    frame_fits(captured_len, DATA_AT, body.len())?;
    let options_at = (DATA_AT + padded(captured_len)).min(body.len());
    Ok(PacketBlock {
        interface: order.u32(body, 8),
        raw_timestamp: Some(order.timestamp(body, 12)),
        captured_len,
        original_len: order.u32(body, 24),
        flags: packet_flags(order, &body[options_at..]),
        data_at: DATA_AT,
    })
}

fn obsolete_packet(order: ByteOrder, body: &[u8]) -> Result<PacketBlock, String> {
    const DATA_AT: usize = 28;
    if body.len() < DATA_AT {
        return Err(too_short("packet block", body.len() + 4));
    }
    let captured_len = order.u32(body, 20) as usize;
    frame_fits(captured_len, DATA_AT, body.len())?;
    let options_at = (DATA_AT + padded(captured_len)).min(body.len());
    Ok(PacketBlock {
        interface: u32::from(order.u16(body, 8)),
        raw_timestamp: Some(order.timestamp(body, 12)),
        captured_len,
        original_len: order.u32(body, 24),
        flags: packet_flags(order, &body[options_at..]),
        data_at: DATA_AT,
    })
}

/// A Simple Packet Block belongs to interface 0; its captured length is what the block holds,
/// but not more than the original length (the rest is padding). The reader also applies the
/// interface's snap length.
fn simple_packet(order: ByteOrder, body: &[u8]) -> Result<PacketBlock, String> {
    const DATA_AT: usize = 12;
    if body.len() < DATA_AT {
        return Err(too_short("simple packet block", body.len() + 4));
    }
    let original_len = order.u32(body, 8);
    Ok(PacketBlock {
        interface: 0,
        raw_timestamp: None,
        captured_len: (body.len() - DATA_AT).min(original_len as usize),
        original_len,
        flags: None,
        data_at: DATA_AT,
    })
}

#[inline]
fn packet_flags(order: ByteOrder, options_bytes: &[u8]) -> Option<u32> {
    options(order, options_bytes)
        .find(|(code, value)| *code == PACKET_FLAGS && value.len() == 4)
        .map(|(_, value)| order.u32(value, 0))
}

fn interface_statistics(order: ByteOrder, body: &[u8]) -> Result<Block, String> {
    if body.len() < 20 {
        return Err(too_short("interface statistics block", body.len() + 4));
    }
    let mut raw = RawStatistics {
        at: order.timestamp(body, 12),
        ..RawStatistics::default()
    };
    for (code, value) in options(order, &body[20..]) {
        if value.len() != 8 {
            continue;
        }
        match code {
            STARTTIME_CODE => raw.start = Some(order.timestamp(value, 0)),
            ENDTIME_CODE => raw.end = Some(order.timestamp(value, 0)),
            _ => {
                if let Some(slot) = COUNTER_CODES.iter().position(|&c| c == code) {
                    raw.counters[slot] = Some(order.u64(value, 0));
                }
            }
        }
    }
    Ok(Block::Statistics {
        interface: order.u32(body, 8),
        raw,
    })
}

/// The options in `bytes` as (code, value). A malformed list ends the options rather than
/// the merge: options only decorate packets and interfaces.
fn options(order: ByteOrder, bytes: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    let mut rest = bytes;
    std::iter::from_fn(move || {
        if rest.len() < 4 {
            return None;
        }
        let code = order.u16(rest, 0);
        let len = usize::from(order.u16(rest, 2));
        if code == OPT_END || 4 + len > rest.len() {
            return None;
        }
        let value = &rest[4..4 + len];
        rest = &rest[(4 + padded(len)).min(rest.len())..];
        Some((code, value))
    })
}

#[cfg(test)]
mod tests {
    use super::super::testing::{BlockWriter, Order};
    use super::*;

    fn parse(order: Order, block: &[u8]) -> Block {
        let byte_order = order.byte_order();
        let (block_type, len) = block_header(byte_order, block).unwrap();
        assert_eq!(len, block.len());
        parse_block(byte_order, block_type, block).unwrap()
    }

    #[test]
    fn interface_options_in_both_byte_orders() {
        for order in [Order::Little, Order::Big] {
            let mut w = BlockWriter::new(order);
            w.interface_with(
                101,
                96,
                &[
                    (IF_NAME, b"eth0\0".to_vec()),
                    (IF_DESCRIPTION, b"uplink".to_vec()),
                    (IF_TSRESOL, vec![0x80 | 20]),
                    (IF_FILTER, b"\0tcp port 80".to_vec()),
                    (IF_TSOFFSET, order.u64_bytes(10).to_vec()),
                ],
            );
            let Block::Interface { described, scale } = parse(order, &w.bytes) else {
                panic!("not an interface");
            };
            assert_eq!(described.link_type, 101);
            assert_eq!(described.snap_len, 96);
            assert_eq!(described.name.as_deref(), Some("eth0"));
            assert_eq!(described.description.as_deref(), Some("uplink"));
            assert_eq!(described.filter.as_deref(), Some(&b"\0tcp port 80"[..]));
            assert_eq!(scale.to_ns(1 << 20), 11_000_000_000);
        }
    }

    #[test]
    fn the_three_packet_blocks() {
        for order in [Order::Little, Order::Big] {
            let mut w = BlockWriter::new(order);
            w.enhanced_packet(1, 0x1_0000_0002, &[7; 5], 60, Some(0b01));
            let Block::Packet(epb) = parse(order, &w.bytes) else {
                panic!("not a packet");
            };
            assert_eq!(epb.interface, 1);
            assert_eq!(epb.raw_timestamp, Some(0x1_0000_0002));
            assert_eq!((epb.captured_len, epb.original_len), (5, 60));
            assert_eq!(epb.flags, Some(1));

            let mut w = BlockWriter::new(order);
            w.obsolete_packet(2, 99, &[1, 2, 3], 3, Some(0b10));
            let Block::Packet(pb) = parse(order, &w.bytes) else {
                panic!("not a packet");
            };
            assert_eq!(
                (pb.interface, pb.raw_timestamp, pb.flags),
                (2, Some(99), Some(2))
            );

            let mut w = BlockWriter::new(order);
            w.simple_packet(&[9; 6], 6);
            let Block::Packet(spb) = parse(order, &w.bytes) else {
                panic!("not a packet");
            };
            assert_eq!((spb.raw_timestamp, spb.captured_len), (None, 6));
        }
    }

    #[test]
    fn statistics_counters_and_times() {
        let order = Order::Big;
        let mut w = BlockWriter::new(order);
        w.statistics(3, 500, &[(4, 1000), (5, 7)], Some(100), Some(500));
        let Block::Statistics { interface, raw } = parse(order, &w.bytes) else {
            panic!("not statistics");
        };
        assert_eq!(interface, 3);
        let sample = raw.in_ns(TimeScale::NANOSECONDS);
        assert_eq!(
            (sample.at_ns, sample.start_ns, sample.end_ns),
            (500, Some(100), Some(500))
        );
        assert_eq!(sample.counters[..3], [Some(1000), Some(7), None]);
    }

    #[test]
    fn damage_is_described() {
        let order = ByteOrder::Little;
        let mut bad_len = Vec::new();
        bad_len.extend(6u32.to_le_bytes());
        bad_len.extend(30u32.to_le_bytes());
        assert!(block_header(order, &bad_len)
            .unwrap_err()
            .contains("multiple of 4"));

        let mut w = BlockWriter::new(Order::Little);
        w.enhanced_packet(0, 1, &[0; 8], 8, None);
        let len = w.bytes.len();
        // Claim more captured bytes than the block holds.
        w.bytes[20..24].copy_from_slice(&400u32.to_le_bytes());
        let error = parse_block(order, ENHANCED_PACKET, &w.bytes[..len]).unwrap_err();
        assert!(error.contains("400 captured bytes"), "{error}");
        // A trailing length that disagrees with the leading one.
        w.bytes[len - 4..].copy_from_slice(&8u32.to_le_bytes());
        let error = parse_block(order, ENHANCED_PACKET, &w.bytes).unwrap_err();
        assert!(error.contains("ends with 8"), "{error}");
    }

    #[test]
    fn unknown_blocks_are_skipped() {
        let mut w = BlockWriter::new(Order::Little);
        w.block(0x8000_0001, &[1, 2, 3, 4]);
        assert!(matches!(parse(Order::Little, &w.bytes), Block::Skipped));
    }
}
