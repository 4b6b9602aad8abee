//! pcapng block encoding: Section Header, Interface Description, Enhanced Packet and Interface
//! Statistics blocks, written in host byte order (readers detect it from the byte-order magic).
//!
//! Each interface gets an IDB with `if_name`, the caller's `if_description` (e.g. "shop/web-1 on
//! node-a"), `if_tsresol` = 9 (nanoseconds: without it readers assume microseconds and show
//! times 1000x off) and `if_filter` with the libpcap expression of the filter. Packets carry
//! `epb_flags` with the direction and reception type. At close, an ISB per interface records
//! what the kernel received and dropped, so Wireshark's capture properties show the loss.

use super::{FileHeaderInfo, InterfaceInfo, InterfaceTotals, PacketRecord};
use crate::afpacket::Direction;

// Block types and option codes are pub(crate): the merge reader and writer use the same ones.

pub(crate) const SHB: u32 = 0x0A0D_0D0A;
pub(crate) const IDB: u32 = 0x0000_0001;
pub(crate) const ISB: u32 = 0x0000_0005;
pub(crate) const EPB: u32 = 0x0000_0006;
pub(crate) const BYTE_ORDER_MAGIC: u32 = 0x1A2B_3C4D;
const LINKTYPE_ETHERNET: u16 = 1;

pub(crate) const OPT_END: u16 = 0;
const SHB_HARDWARE: u16 = 2;
const SHB_OS: u16 = 3;
pub(crate) const SHB_USERAPPL: u16 = 4;
pub(crate) const IF_NAME: u16 = 2;
pub(crate) const IF_DESCRIPTION: u16 = 3;
pub(crate) const IF_TSRESOL: u16 = 9;
pub(crate) const IF_FILTER: u16 = 11;
pub(crate) const EPB_FLAGS: u16 = 2;
pub(crate) const ISB_STARTTIME: u16 = 2;
pub(crate) const ISB_ENDTIME: u16 = 3;
const ISB_IFRECV: u16 = 4;
const ISB_IFDROP: u16 = 5;
const ISB_USRDELIV: u16 = 8;

/// EPB fixed part (type, length, interface, timestamp, lengths) before the packet bytes.
pub(crate) const EPB_HEADER_LEN: usize = 28;
/// `epb_flags` option, end-of-options and the trailing length.
const EPB_TRAILER_LEN: usize = 8 + 4 + 4;
/// An ISB with our five u64 options: 4+4+4+8 fixed, 5 options of 12 bytes, end (4), trailer (4).
pub(super) const ISB_LEN: usize = 20 + 5 * 12 + 4 + 4;

pub(crate) fn put_u16(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_ne_bytes());
}

pub(crate) fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_ne_bytes());
}

/// pcapng stores 64-bit timestamps as high then low 32-bit words.
pub(crate) fn put_timestamp(out: &mut Vec<u8>, ns: u64) {
    put_u32(out, (ns >> 32) as u32);
    put_u32(out, ns as u32);
}

pub(crate) fn padding(len: usize) -> usize {
    (4 - len % 4) % 4
}

pub(crate) fn put_option(out: &mut Vec<u8>, code: u16, value: &[u8]) {
    // Option values are at most 65535 bytes; longer text is cut, never the file.
    let value = &value[..value.len().min(usize::from(u16::MAX))];
    put_u16(out, code);
    put_u16(out, value.len() as u16);
    out.extend_from_slice(value);
    out.extend(std::iter::repeat_n(0u8, padding(value.len())));
}

/// Writes a block whose body `fill` appends, patching in the total length at both ends.
pub(crate) fn put_block(out: &mut Vec<u8>, block_type: u32, fill: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    put_u32(out, block_type);
    put_u32(out, 0);
    fill(out);
    let total = (out.len() - start + 4) as u32;
    put_u32(out, total);
    out[start + 4..start + 8].copy_from_slice(&total.to_ne_bytes());
}

pub(super) fn file_header(out: &mut Vec<u8>, info: &FileHeaderInfo<'_>) {
    put_block(out, SHB, |out| {
        put_u32(out, BYTE_ORDER_MAGIC);
        put_u16(out, 1);
        put_u16(out, 0);
        out.extend_from_slice(&(-1i64).to_ne_bytes());
        put_option(out, SHB_HARDWARE, std::env::consts::ARCH.as_bytes());
        put_option(out, SHB_OS, std::env::consts::OS.as_bytes());
        put_option(out, SHB_USERAPPL, info.application.as_bytes());
        put_option(out, OPT_END, &[]);
    });
    for interface in info.interfaces {
        interface_description(out, interface, info.snap_length);
    }
}

fn interface_description(out: &mut Vec<u8>, interface: &InterfaceInfo, snap_length: u32) {
    put_block(out, IDB, |out| {
        put_u16(out, LINKTYPE_ETHERNET);
        put_u16(out, 0);
        put_u32(out, snap_length);
        put_option(out, IF_NAME, interface.name.as_bytes());
        if !interface.description.is_empty() {
            put_option(out, IF_DESCRIPTION, interface.description.as_bytes());
        }
        put_option(out, IF_TSRESOL, &[9]);
        if !interface.filter_expression.is_empty() {
            // First byte 0: the filter is a libpcap expression.
            let mut filter = Vec::with_capacity(interface.filter_expression.len() + 1);
            filter.push(0);
            filter.extend_from_slice(interface.filter_expression.as_bytes());
            put_option(out, IF_FILTER, &filter);
        }
        put_option(out, OPT_END, &[]);
    });
}

/// The `epb_flags` value: direction in bits 0-1, reception type in bits 2-4.
fn epb_flags(direction: Direction) -> u32 {
    match direction {
        Direction::Outbound => 0b10,
        Direction::Inbound(packet_type) => {
            let reception = match packet_type {
                libc::PACKET_HOST => 1,
                libc::PACKET_MULTICAST => 2,
                libc::PACKET_BROADCAST => 3,
                libc::PACKET_OTHERHOST => 4,
                _ => 0,
            };
            0b01 | (reception << 2)
        }
    }
}

/// The bytes [`packet`] will append for a record of `captured` bytes.
pub(super) fn packet_len(captured: usize) -> usize {
    EPB_HEADER_LEN + captured + padding(captured) + EPB_TRAILER_LEN
}

/// Copies `value` into `bytes` at `at` in host order (fixed-size parts of a record).
fn set_u32(bytes: &mut [u8], at: usize, value: u32) {
    bytes[at..at + 4].copy_from_slice(&value.to_ne_bytes());
}

// Hot path: the fixed parts are assembled in arrays and appended in one copy each.
#[inline]
pub(super) fn packet(out: &mut Vec<u8>, record: &PacketRecord<'_>) {
    let captured = record.captured_len();
    let total = packet_len(captured) as u32;
    let ns = record.packet.timestamp_ns;
    let mut header = [0u8; EPB_HEADER_LEN];
    set_u32(&mut header, 0, EPB);
    set_u32(&mut header, 4, total);
    set_u32(&mut header, 8, record.interface_id);
    set_u32(&mut header, 12, (ns >> 32) as u32);
    set_u32(&mut header, 16, ns as u32);
    set_u32(&mut header, 20, captured as u32);
    set_u32(&mut header, 24, record.original_len());
    out.extend_from_slice(&header);
    record.put_frame(out);
    out.extend_from_slice(&[0u8; 3][..padding(captured)]);
    let mut trailer = [0u8; EPB_TRAILER_LEN];
    trailer[0..2].copy_from_slice(&EPB_FLAGS.to_ne_bytes());
    trailer[2..4].copy_from_slice(&4u16.to_ne_bytes());
    set_u32(&mut trailer, 4, epb_flags(record.packet.direction));
    set_u32(&mut trailer, 8, u32::from(OPT_END));
    set_u32(&mut trailer, 12, total);
    out.extend_from_slice(&trailer);
}

pub(super) fn interface_statistics(out: &mut Vec<u8>, interface_id: u32, totals: &InterfaceTotals) {
    put_block(out, ISB, |out| {
        put_u32(out, interface_id);
        put_timestamp(out, totals.at_ns);
        let mut timestamp = Vec::with_capacity(8);
        put_timestamp(&mut timestamp, totals.started_ns);
        put_option(out, ISB_STARTTIME, &timestamp);
        timestamp.clear();
        put_timestamp(&mut timestamp, totals.at_ns);
        put_option(out, ISB_ENDTIME, &timestamp);
        put_option(out, ISB_IFRECV, &totals.kernel_received.to_ne_bytes());
        put_option(out, ISB_IFDROP, &totals.kernel_drops.to_ne_bytes());
        put_option(out, ISB_USRDELIV, &totals.delivered.to_ne_bytes());
        put_option(out, OPT_END, &[]);
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::afpacket::Packet;

    #[test]
    fn blocks_are_aligned_and_lengths_match() {
        let interfaces = [InterfaceInfo {
            name: "veth1".into(),
            description: "shop/web on n1".into(),
            filter_expression: "tcp".into(),
        }];
        let mut out = Vec::new();
        file_header(
            &mut out,
            &FileHeaderInfo {
                interfaces: &interfaces,
                snap_length: 262_144,
                application: "podcap test",
            },
        );
        assert_eq!(out.len() % 4, 0);
        let data = [0xabu8; 61];
        let packet = Packet {
            timestamp_ns: 1,
            original_len: 100,
            data: &data,
            direction: Direction::Outbound,
            vlan: None,
        };
        let before = out.len();
        super::packet(
            &mut out,
            &PacketRecord {
                interface_id: 0,
                packet: &packet,
            },
        );
        assert_eq!(out.len() - before, packet_len(61));
        assert_eq!((out.len() - before) % 4, 0);
        let before = out.len();
        let totals = InterfaceTotals {
            started_ns: 1,
            at_ns: 2,
            kernel_received: 3,
            kernel_drops: 1,
            delivered: 2,
        };
        interface_statistics(&mut out, 0, &totals);
        assert_eq!(out.len() - before, ISB_LEN);
    }

    #[test]
    fn flags_encode_direction_and_reception() {
        assert_eq!(epb_flags(Direction::Outbound), 2);
        assert_eq!(
            epb_flags(Direction::Inbound(libc::PACKET_HOST)),
            1 | (1 << 2)
        );
        assert_eq!(
            epb_flags(Direction::Inbound(libc::PACKET_BROADCAST)),
            1 | (3 << 2)
        );
    }
}
