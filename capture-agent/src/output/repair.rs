//! After a failed write (the disk is full), a capture file may end inside a record, or hold a
//! partly written chunk. This finds the longest prefix of the file made of whole records — pcapng
//! blocks whose leading and trailing lengths agree, or pcap records that fit — so the file can
//! be cut there and read cleanly up to its last whole packet.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;

use capture_spec::OutputFormat;

/// The whole-record prefix of a file: its length and the packets in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct WholePrefix {
    pub bytes: u64,
    pub packets: u64,
}

/// A pcap record or pcapng block larger than this is not one we wrote (a hole, garbage).
const LARGEST_RECORD: u32 = 16 << 20;

/// Cuts the file at `path` to its whole-record prefix and returns that prefix.
pub(super) fn cut_to_whole_records(path: &Path, format: OutputFormat) -> io::Result<WholePrefix> {
    let prefix = whole_prefix(BufReader::new(File::open(path)?), format)?;
    let file = std::fs::OpenOptions::new().write(true).open(path)?;
    if file.metadata()?.len() > prefix.bytes {
        file.set_len(prefix.bytes)?;
    }
    Ok(prefix)
}

/// Reads exactly `buffer.len()` bytes; false at a clean or ragged end of input.
fn read_whole(reader: &mut impl Read, buffer: &mut [u8]) -> io::Result<bool> {
    let mut filled = 0;
    while filled < buffer.len() {
        match reader.read(&mut buffer[filled..]) {
            Ok(0) => return Ok(false),
            Ok(n) => filled += n,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(true)
}

/// Skips `count` bytes; false if the input ends first.
fn skip(reader: &mut impl Read, count: u64) -> io::Result<bool> {
    Ok(io::copy(&mut reader.take(count), &mut io::sink())? == count)
}

pub(super) fn whole_prefix(mut reader: impl Read, format: OutputFormat) -> io::Result<WholePrefix> {
    match format {
        OutputFormat::Pcapng => pcapng_prefix(&mut reader),
        OutputFormat::Pcap => pcap_prefix(&mut reader),
    }
}

fn pcapng_prefix(reader: &mut impl Read) -> io::Result<WholePrefix> {
    const SECTION_HEADER: u32 = 0x0A0D_0D0A;
    const ENHANCED_PACKET: u32 = 6;
    const SIMPLE_PACKET: u32 = 3;
    let mut prefix = WholePrefix {
        bytes: 0,
        packets: 0,
    };
    let mut little_endian = true;
    let mut header = [0u8; 12];
    loop {
        if !read_whole(reader, &mut header[..8])? {
            return Ok(prefix);
        }
        let kind = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
        if kind == SECTION_HEADER {
            // The byte-order magic follows the length and says how to read the rest.
            if !read_whole(reader, &mut header[8..12])? {
                return Ok(prefix);
            }
            little_endian = header[8..12] == 0x1A2B_3C4D_u32.to_le_bytes();
        }
        let word = |bytes: &[u8]| {
            let bytes = [bytes[0], bytes[1], bytes[2], bytes[3]];
            if little_endian {
                u32::from_le_bytes(bytes)
            } else {
                u32::from_be_bytes(bytes)
            }
        };
        let kind = word(&header[..4]);
        let length = word(&header[4..8]);
        let read = if kind == SECTION_HEADER { 12 } else { 8 };
        if length < 12 || length % 4 != 0 || length > LARGEST_RECORD {
            return Ok(prefix);
        }
        if !skip(reader, u64::from(length) - read - 4)? {
            return Ok(prefix);
        }
        let mut trailer = [0u8; 4];
        if !read_whole(reader, &mut trailer)? || word(&trailer) != length {
            return Ok(prefix);
        }
        prefix.bytes += u64::from(length);
        if kind == ENHANCED_PACKET || kind == SIMPLE_PACKET {
            prefix.packets += 1;
        }
    }
}

fn pcap_prefix(reader: &mut impl Read) -> io::Result<WholePrefix> {
    let mut prefix = WholePrefix {
        bytes: 0,
        packets: 0,
    };
    let mut header = [0u8; 24];
    if !read_whole(reader, &mut header)? {
        return Ok(prefix);
    }
    let magic = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
    let little_endian = matches!(magic, 0xA1B2_C3D4 | 0xA1B2_3C4D);
    prefix.bytes = 24;
    let mut record = [0u8; 16];
    loop {
        if !read_whole(reader, &mut record)? {
            return Ok(prefix);
        }
        let word = |at: usize| {
            let bytes = [record[at], record[at + 1], record[at + 2], record[at + 3]];
            if little_endian {
                u32::from_le_bytes(bytes)
            } else {
                u32::from_be_bytes(bytes)
            }
        };
        let (captured, original) = (word(8), word(12));
        // Every record we write holds at least a byte of frame (zeros are a hole).
        let plausible = captured > 0 && captured <= original && captured <= LARGEST_RECORD;
        if !plausible || !skip(reader, u64::from(captured))? {
            return Ok(prefix);
        }
        prefix.bytes += 16 + u64::from(captured);
        prefix.packets += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::afpacket::{Direction, Packet};
    use crate::format::{Encoder, FileHeaderInfo, InterfaceInfo, PacketRecord};

    fn file(format: OutputFormat, packets: usize) -> Vec<u8> {
        let encoder = Encoder::new(format);
        let mut out = Vec::new();
        let interfaces = [InterfaceInfo {
            name: "eth0".into(),
            description: String::new(),
            filter_expression: String::new(),
        }];
        encoder.file_header(
            &mut out,
            &FileHeaderInfo {
                interfaces: &interfaces,
                snap_length: 262_144,
                application: "test",
            },
        );
        let data = [0x5a_u8; 99];
        for n in 0..packets {
            let packet = Packet {
                timestamp_ns: 1_000 + n as u64,
                data: &data,
                original_len: 99,
                direction: Direction::Outbound,
                vlan: None,
            };
            encoder.packet(
                &mut out,
                &PacketRecord {
                    interface_id: 0,
                    packet: &packet,
                },
            );
        }
        out
    }

    #[test]
    fn a_file_cut_anywhere_keeps_its_whole_records() {
        for format in [OutputFormat::Pcapng, OutputFormat::Pcap] {
            let whole = file(format, 5);
            let header = file(format, 0).len();
            let record = (whole.len() - header) / 5;
            let full = whole_prefix(whole.as_slice(), format).unwrap();
            assert_eq!((full.bytes, full.packets), (whole.len() as u64, 5));
            for cut in header..whole.len() {
                let prefix = whole_prefix(&whole[..cut], format).unwrap();
                let packets = (cut - header) / record;
                assert_eq!(prefix.packets, packets as u64, "{format:?} cut at {cut}");
                assert_eq!(prefix.bytes, (header + packets * record) as u64);
            }
            // A hole of zeros (a chunk that was never written) ends the prefix too.
            let mut holed = file(format, 3);
            holed.extend_from_slice(&[0u8; 4096]);
            holed.extend_from_slice(&whole[header..header + record]);
            assert_eq!(whole_prefix(holed.as_slice(), format).unwrap().packets, 3);
        }
    }
}
