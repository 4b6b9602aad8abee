//! Classic pcap encoding: the nanosecond-resolution magic (0xa1b23c4d) and the Ethernet link
//! type. Classic pcap has no interface ids, directions or statistics; pcapng is the default.

use super::{FileHeaderInfo, PacketRecord};

pub(crate) const NANOSECOND_MAGIC: u32 = 0xa1b2_3c4d;
const LINKTYPE_ETHERNET: u32 = 1;
pub(crate) const RECORD_HEADER_LEN: usize = 16;

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_ne_bytes());
}

pub(super) fn file_header(out: &mut Vec<u8>, info: &FileHeaderInfo<'_>) {
    put_u32(out, NANOSECOND_MAGIC);
    out.extend_from_slice(&2u16.to_ne_bytes());
    out.extend_from_slice(&4u16.to_ne_bytes());
    put_u32(out, 0); // thiszone: timestamps are UTC
    put_u32(out, 0); // sigfigs
    put_u32(out, info.snap_length);
    put_u32(out, LINKTYPE_ETHERNET);
}

pub(super) fn packet_len(captured: usize) -> usize {
    RECORD_HEADER_LEN + captured
}

#[inline]
pub(super) fn packet(out: &mut Vec<u8>, record: &PacketRecord<'_>) {
    let ns = record.packet.timestamp_ns;
    let mut header = [0u8; RECORD_HEADER_LEN];
    header[0..4].copy_from_slice(&((ns / 1_000_000_000) as u32).to_ne_bytes());
    header[4..8].copy_from_slice(&((ns % 1_000_000_000) as u32).to_ne_bytes());
    header[8..12].copy_from_slice(&(record.captured_len() as u32).to_ne_bytes());
    header[12..16].copy_from_slice(&record.original_len().to_ne_bytes());
    out.extend_from_slice(&header);
    record.put_frame(out);
}
