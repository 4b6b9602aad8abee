//! Reading capture files into comparable frames, with pcap-file 2.
//!
//! pcap-file's pcapng reader hands out an EPB's raw 64-bit timestamp as if it were nanoseconds,
//! whatever the interface's `if_tsresol` says; this reader applies the resolution itself (only
//! `if_tsresol` = 9 makes the raw value nanoseconds), so a file written with the wrong
//! resolution shows up as timestamps that disagree with tshark and with the wall clock.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use pcap_file::pcap::PcapReader;
use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketOption;
use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionOption;
use pcap_file::pcapng::{Block, PcapNgReader};
use pcap_file::{DataLink, TsResolution};

use crate::packets::describe;

/// One captured frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Nanoseconds since the Unix epoch.
    pub ts_ns: u64,
    pub data: Vec<u8>,
    pub orig_len: u32,
    /// pcapng interface id (0 for pcap).
    pub interface_id: u32,
    /// pcapng `epb_flags`, if present.
    pub flags: Option<u32>,
}

impl Frame {
    pub fn source_mac(&self) -> [u8; 6] {
        self.data[6..12].try_into().unwrap()
    }

    pub fn describe(&self) -> String {
        format!(
            "{}.{:09} {}",
            self.ts_ns / 1_000_000_000,
            self.ts_ns % 1_000_000_000,
            describe(&self.data)
        )
    }
}

/// An Interface Description Block, as far as the tests look at it.
#[derive(Debug, Clone, Default)]
pub struct Interface {
    pub link_type: u32,
    pub snap_len: u32,
    pub name: Option<String>,
    pub description: Option<String>,
    /// Raw `if_tsresol` byte; None when absent (which means microseconds).
    pub tsresol: Option<u8>,
    pub filter: Option<Vec<u8>>,
}

/// Everything read from a capture file.
#[derive(Debug, Clone, Default)]
pub struct Capture {
    pub pcapng: bool,
    pub interfaces: Vec<Interface>,
    pub frames: Vec<Frame>,
    /// pcapng Interface Statistics Blocks seen.
    pub statistics_blocks: usize,
    /// pcap only: whether the header says nanoseconds.
    pub pcap_nanoseconds: bool,
}

/// Reads a pcap or pcapng file (told apart by its magic number). Any error, including a
/// truncated last record, is an error: a capture file must read completely.
pub fn read_capture(path: &Path) -> Result<Capture, String> {
    let magic = std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    match magic.get(..4) {
        Some([0x0a, 0x0d, 0x0d, 0x0a]) => read_pcapng(path),
        Some(_) => read_pcap(path),
        None => Err(format!(
            "{} is shorter than a file header ({} bytes)",
            path.display(),
            magic.len()
        )),
    }
}

/// [`read_capture`], panicking with the reason on failure.
pub fn must_read(path: &Path) -> Capture {
    read_capture(path).unwrap_or_else(|e| panic!("{e}"))
}

fn open(path: &Path) -> Result<BufReader<File>, String> {
    File::open(path)
        .map(BufReader::new)
        .map_err(|e| format!("opening {}: {e}", path.display()))
}

/// Nanoseconds from a raw timestamp in units of the given `if_tsresol`.
fn to_ns(raw: u64, tsresol: Option<u8>) -> Result<u64, String> {
    match tsresol.unwrap_or(6) {
        r if r & 0x80 != 0 => Err(format!(
            "if_tsresol {r:#x} (a power of two) is not supported by this reader"
        )),
        r if r <= 9 => Ok(raw * 10u64.pow(u32::from(9 - r))),
        r => Ok(raw / 10u64.pow(u32::from(r - 9))),
    }
}

fn read_pcapng(path: &Path) -> Result<Capture, String> {
    let mut reader = PcapNgReader::new(open(path)?)
        .map_err(|e| format!("{}: bad pcapng header: {e}", path.display()))?;
    let mut capture = Capture {
        pcapng: true,
        ..Capture::default()
    };
    while let Some(block) = reader.next_block() {
        let block = block.map_err(|e| {
            format!(
                "{}: unreadable block after {} frames: {e}",
                path.display(),
                capture.frames.len()
            )
        })?;
        match block {
            Block::SectionHeader(_) => {
                // A new section starts over with interface ids.
                capture.interfaces.clear();
            }
            Block::InterfaceDescription(idb) => {
                let mut interface = Interface {
                    link_type: u32::from(idb.linktype),
                    snap_len: idb.snaplen,
                    ..Interface::default()
                };
                for option in &idb.options {
                    match option {
                        InterfaceDescriptionOption::IfName(name) => {
                            interface.name = Some(name.to_string())
                        }
                        InterfaceDescriptionOption::IfDescription(d) => {
                            interface.description = Some(d.to_string())
                        }
                        InterfaceDescriptionOption::IfTsResol(r) => interface.tsresol = Some(*r),
                        InterfaceDescriptionOption::IfFilter(f) => {
                            interface.filter = Some(f.to_vec())
                        }
                        _ => {}
                    }
                }
                capture.interfaces.push(interface);
            }
            Block::EnhancedPacket(epb) => {
                let interface = capture
                    .interfaces
                    .get(epb.interface_id as usize)
                    .ok_or_else(|| {
                        format!(
                            "{}: packet of interface {} before its description",
                            path.display(),
                            epb.interface_id
                        )
                    })?;
                let raw = u64::try_from(epb.timestamp.as_nanos()).unwrap();
                let flags = epb.options.iter().find_map(|o| match o {
                    EnhancedPacketOption::Flags(f) => Some(*f),
                    _ => None,
                });
                capture.frames.push(Frame {
                    ts_ns: to_ns(raw, interface.tsresol)?,
                    data: epb.data.to_vec(),
                    orig_len: epb.original_len,
                    interface_id: epb.interface_id,
                    flags,
                });
            }
            Block::InterfaceStatistics(_) => capture.statistics_blocks += 1,
            _ => {}
        }
    }
    Ok(capture)
}

fn read_pcap(path: &Path) -> Result<Capture, String> {
    let mut reader = PcapReader::new(open(path)?)
        .map_err(|e| format!("{}: bad pcap header: {e}", path.display()))?;
    let header = reader.header();
    let mut capture = Capture {
        pcapng: false,
        interfaces: vec![Interface {
            link_type: u32::from(header.datalink),
            snap_len: header.snaplen,
            ..Interface::default()
        }],
        pcap_nanoseconds: header.ts_resolution == TsResolution::NanoSecond,
        ..Capture::default()
    };
    while let Some(packet) = reader.next_packet() {
        let packet = packet.map_err(|e| {
            format!(
                "{}: unreadable record after {} frames: {e}",
                path.display(),
                capture.frames.len()
            )
        })?;
        capture.frames.push(Frame {
            ts_ns: u64::try_from(packet.timestamp.as_nanos()).unwrap(),
            data: packet.data.to_vec(),
            orig_len: packet.orig_len,
            interface_id: 0,
            flags: None,
        });
    }
    Ok(capture)
}

pub const LINKTYPE_ETHERNET: u32 = 1;

/// `DataLink` to its number, e.g. 1 for Ethernet.
pub fn link_type_number(link: DataLink) -> u32 {
    u32::from(link)
}

/// The frames whose timestamp is in `[t0, t1]`, in file order.
pub fn in_window(frames: &[Frame], t0: u64, t1: u64) -> Vec<Frame> {
    frames
        .iter()
        .filter(|f| (t0..=t1).contains(&f.ts_ns))
        .cloned()
        .collect()
}

/// How far apart two capturers' timestamps of one frame may be when the kernel stamps the frame
/// for each socket separately (see [`same_frame`]).
pub const PER_SOCKET_STAMP_TOLERANCE_NS: u64 = 1_000_000;

/// Whether a frame carries TCP over IPv4 or IPv6 (possibly VLAN-tagged).
fn is_tcp(frame: &[u8]) -> bool {
    let mut offset = 12;
    while matches!(
        frame.get(offset..offset + 2),
        Some([0x81, 0x00] | [0x88, 0xa8])
    ) {
        offset += 4;
    }
    match frame.get(offset..offset + 2) {
        Some([0x08, 0x00]) => frame.get(offset + 2 + 9) == Some(&crate::packets::IPPROTO_TCP),
        Some([0x86, 0xdd]) => frame.get(offset + 2 + 6) == Some(&crate::packets::IPPROTO_TCP),
        _ => false,
    }
}

/// Whether two capturers recorded the same frame: same bytes and the same kernel timestamp.
///
/// Two packet sockets see one timestamp per skb, except where the kernel takes a fresh clock
/// reading for each socket: a TCP segment from the pod still carries its sender's monotonic
/// earliest-departure time (EDT) when it reaches the host end (crossing namespaces does not
/// clear it), so AF_PACKET cannot use it and reads the real-time clock for every socket as it
/// delivers. Those timestamps differ by microseconds; they are allowed [`PER_SOCKET_STAMP_TOLERANCE_NS`],
/// which still catches a capturer that stamps packets itself or per ring block.
pub fn same_frame(a: &Frame, b: &Frame) -> bool {
    a.data == b.data
        && (a.ts_ns == b.ts_ns
            || (is_tcp(&a.data) && a.ts_ns.abs_diff(b.ts_ns) <= PER_SOCKET_STAMP_TOLERANCE_NS))
}

/// Asserts that two frame sequences are the same frames (see [`same_frame`]) in the same order.
/// On a mismatch, says where they part and shows the frames around that point.
pub fn assert_same_frames(actual: &[Frame], expected: &[Frame], what: &str) {
    if let Some(difference) = frames_difference(actual, expected, what) {
        panic!("{difference}");
    }
}

/// None if two frame sequences are the same frames in the same order, else a description of
/// where they part, with the frames around that point and what is missing or extra.
pub fn frames_difference(actual: &[Frame], expected: &[Frame], what: &str) -> Option<String> {
    let first_difference = actual
        .iter()
        .zip(expected)
        .position(|(a, e)| !same_frame(a, e));
    if first_difference.is_none() && actual.len() == expected.len() {
        return None;
    }
    let at = first_difference.unwrap_or(actual.len().min(expected.len()));
    let around = |frames: &[Frame]| {
        frames
            .iter()
            .enumerate()
            .skip(at.saturating_sub(3))
            .take(8)
            .map(|(i, f)| {
                format!(
                    "    #{i}{} {}",
                    if i == at { " >>" } else { "   " },
                    f.describe()
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    let missing: Vec<String> = expected
        .iter()
        .filter(|e| !actual.iter().any(|a| same_frame(a, e)))
        .take(10)
        .map(Frame::describe)
        .collect();
    let extra: Vec<String> = actual
        .iter()
        .filter(|a| !expected.iter().any(|e| same_frame(a, e)))
        .take(10)
        .map(Frame::describe)
        .collect();
    Some(format!(
        "{what}: frames differ from frame #{at} on ({} actual frames, {} expected)\n  actual:\n{}\n  expected:\n{}\n  \
         expected but missing (first 10):\n    {}\n  present but not expected (first 10):\n    {}",
        actual.len(),
        expected.len(),
        around(actual),
        around(expected),
        missing.join("\n    "),
        extra.join("\n    "),
    ))
}
