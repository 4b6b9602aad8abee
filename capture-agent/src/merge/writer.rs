//! Writing the merged file: pcapng (one section, an interface description per output interface
//! before its first packet, Enhanced Packet Blocks with nanosecond timestamps, statistics at
//! the end) or classic pcap (nanosecond magic, one link type for all inputs).
//!
//! Records are encoded into one reused buffer that goes out in one write per
//! [`OUTPUT_BUFFER_LEN`] bytes, whatever the packet size.
//!
//! `crate::format` encodes packets coming off the ring (`afpacket::Packet`, Ethernet only,
//! directions rather than raw flags, its own statistics); a merge re-encodes records of any
//! link type with their original `epb_flags`, so it has this small encoder of its own.

use std::io::Write;

use capture_spec::OutputFormat;

use super::error::MergeError;
use super::interfaces::{InterfaceTable, OutputInterface};
use super::reader::PacketView;
use super::statistics::{StatisticsSample, COUNTER_CODES, ENDTIME_CODE, STARTTIME_CODE};
use crate::format::pcap::{NANOSECOND_MAGIC, RECORD_HEADER_LEN as PCAP_RECORD_HEADER_LEN};
use crate::format::pcapng::{
    padding, put_block, put_option, put_timestamp, put_u16, put_u32, BYTE_ORDER_MAGIC, EPB,
    EPB_FLAGS, EPB_HEADER_LEN, IDB, IF_DESCRIPTION, IF_FILTER, IF_NAME, IF_TSRESOL, ISB, OPT_END,
    SHB, SHB_USERAPPL,
};

/// Bytes gathered before each write. Not more: a caller that wants bigger pieces gathers them
/// (the HTTP body sends 256 KiB chunks), and a file takes writes of this size into small
/// page-cache folios. Writes of 64 KiB and more get large folios, which on a VM with free page
/// reporting (Firecracker's balloon) fault every page back from the host: there, merging
/// 268 MB took 0.15 s with 32 KiB writes and 0.2 to 0.8 s with 1 MiB writes. At 32 KiB,
/// system calls cost about 1% of the merge.
pub(super) const OUTPUT_BUFFER_LEN: usize = 32 << 10;
/// What the merged file says it was written by (pcapng `shb_userappl`).
const APPLICATION: &str = concat!("podcap capture-agent merge ", env!("CARGO_PKG_VERSION"));

/// `epb_flags` (4 + 4) and the end of options.
const EPB_FLAGS_LEN: usize = 12;

/// Snap length of a pcap file whose inputs do not say (libpcap's largest).
const DEFAULT_SNAP_LEN: u32 = 262_144;
const LINKTYPE_ETHERNET: u16 = 1;
const NANOS_PER_SECOND: u64 = 1_000_000_000;

pub(super) struct MergedWriter<'a> {
    out: &'a mut dyn Write,
    format: OutputFormat,
    buffer: Vec<u8>,
    bytes_written: u64,
    /// Input names, for errors.
    input_names: Vec<String>,
    /// pcap: the link type of the file and the input that set it.
    pcap_link_type: Option<(u16, usize)>,
}

impl<'a> MergedWriter<'a> {
    pub(super) fn new(
        out: &'a mut dyn Write,
        format: OutputFormat,
        input_names: Vec<String>,
    ) -> MergedWriter<'a> {
        MergedWriter {
            out,
            format,
            buffer: Vec::with_capacity(OUTPUT_BUFFER_LEN),
            bytes_written: 0,
            input_names,
            pcap_link_type: None,
        }
    }

    /// Writes the file header and the interfaces known so far.
    pub(super) fn begin(&mut self, table: &mut InterfaceTable) -> Result<(), MergeError> {
        match self.format {
            OutputFormat::Pcapng => {
                put_block(&mut self.buffer, SHB, |out| {
                    put_u32(out, BYTE_ORDER_MAGIC);
                    put_u16(out, 1);
                    put_u16(out, 0);
                    // Section length unknown: the merge streams.
                    out.extend_from_slice(&(-1i64).to_ne_bytes());
                    put_option(out, SHB_USERAPPL, APPLICATION.as_bytes());
                    put_option(out, OPT_END, &[]);
                });
                self.declare(table)
            }
            OutputFormat::Pcap => {
                let snap_len = table
                    .all()
                    .iter()
                    .map(|interface| interface.described.snap_len)
                    .max()
                    .filter(|&len| len != 0)
                    .unwrap_or(DEFAULT_SNAP_LEN);
                self.declare(table)?;
                let link_type = self
                    .pcap_link_type
                    .map_or(LINKTYPE_ETHERNET, |(link, _)| link);
                let out = &mut self.buffer;
                put_u32(out, NANOSECOND_MAGIC);
                put_u16(out, 2);
                put_u16(out, 4);
                put_u32(out, 0); // thiszone: timestamps are UTC
                put_u32(out, 0); // sigfigs
                put_u32(out, snap_len);
                put_u32(out, u32::from(link_type));
                Ok(())
            }
        }
    }

    /// Brings the output up to date with interfaces found since: pcapng describes them before
    /// any of their packets; pcap checks they share the file's one link type.
    pub(super) fn declare(&mut self, table: &mut InterfaceTable) -> Result<(), MergeError> {
        for interface in table.take_undeclared() {
            match self.format {
                OutputFormat::Pcapng => put_interface(&mut self.buffer, interface),
                OutputFormat::Pcap => {
                    let link_type = interface.described.link_type;
                    match self.pcap_link_type {
                        None => self.pcap_link_type = Some((link_type, interface.input)),
                        Some((first, _)) if first == link_type => {}
                        Some((first_link_type, first_input)) => {
                            return Err(MergeError::MixedLinkTypes {
                                input: self.input_name(interface.input),
                                link_type,
                                first_input: self.input_name(first_input),
                                first_link_type,
                            })
                        }
                    }
                }
            }
        }
        Ok(())
    }

    fn input_name(&self, input: usize) -> String {
        self.input_names.get(input).cloned().unwrap_or_default()
    }

    /// Appends one packet, writing the buffer out first when the record would not fit.
    #[inline]
    pub(super) fn packet(
        &mut self,
        packet: &PacketView,
        frame: &[u8],
        input: usize,
    ) -> Result<(), MergeError> {
        let record_len = match self.format {
            OutputFormat::Pcapng => {
                EPB_HEADER_LEN
                    + frame.len()
                    + padding(frame.len())
                    + if packet.flags.is_some() {
                        EPB_FLAGS_LEN
                    } else {
                        0
                    }
                    + 4
            }
            OutputFormat::Pcap => PCAP_RECORD_HEADER_LEN + frame.len(),
        };
        if self.buffer.len() + record_len > self.buffer.capacity() && !self.buffer.is_empty() {
            self.flush()?;
        }
        match self.format {
            OutputFormat::Pcapng => {
                put_enhanced_packet(&mut self.buffer, packet, frame, record_len)
            }
            OutputFormat::Pcap => {
                let seconds =
                    u32::try_from(packet.timestamp_ns / NANOS_PER_SECOND).map_err(|_| {
                        MergeError::BeyondPcapTime {
                            input: self.input_name(input),
                            timestamp_ns: packet.timestamp_ns,
                        }
                    })?;
                let mut header = [0u8; PCAP_RECORD_HEADER_LEN];
                header[0..4].copy_from_slice(&seconds.to_ne_bytes());
                let nanos = (packet.timestamp_ns % NANOS_PER_SECOND) as u32;
                header[4..8].copy_from_slice(&nanos.to_ne_bytes());
                header[8..12].copy_from_slice(&(frame.len() as u32).to_ne_bytes());
                header[12..16].copy_from_slice(&packet.original_len.to_ne_bytes());
                self.buffer.extend_from_slice(&header);
                self.buffer.extend_from_slice(frame);
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), MergeError> {
        self.out
            .write_all(&self.buffer)
            .map_err(MergeError::Write)?;
        self.bytes_written += self.buffer.len() as u64;
        self.buffer.clear();
        Ok(())
    }

    /// Appends the statistics (pcapng), writes everything out and flushes the output; returns
    /// the bytes written and the largest the buffer grew.
    pub(super) fn finish(mut self, table: &InterfaceTable) -> Result<(u64, usize), MergeError> {
        if self.format == OutputFormat::Pcapng {
            for (id, interface) in table.all().iter().enumerate() {
                if let Some(statistics) = &interface.statistics {
                    put_statistics(&mut self.buffer, id as u32, &statistics.totals());
                }
            }
        }
        self.flush()?;
        self.out.flush().map_err(MergeError::Write)?;
        Ok((self.bytes_written, self.buffer.capacity()))
    }
}

fn put_interface(out: &mut Vec<u8>, interface: &OutputInterface) {
    let described = &interface.described;
    put_block(out, IDB, |out| {
        put_u16(out, described.link_type);
        put_u16(out, 0);
        put_u32(out, described.snap_len);
        if let Some(name) = &described.name {
            put_option(out, IF_NAME, name.as_bytes());
        }
        if let Some(description) = &described.description {
            put_option(out, IF_DESCRIPTION, description.as_bytes());
        }
        // Every timestamp was converted to nanoseconds.
        put_option(out, IF_TSRESOL, &[9]);
        if let Some(filter) = &described.filter {
            put_option(out, IF_FILTER, filter);
        }
        put_option(out, OPT_END, &[]);
    });
}

// Hot path: fixed parts are built in arrays and appended with one copy each.
#[inline]
fn put_enhanced_packet(out: &mut Vec<u8>, packet: &PacketView, frame: &[u8], record_len: usize) {
    let total = (record_len as u32).to_ne_bytes();
    let ns = packet.timestamp_ns;
    let mut header = [0u8; EPB_HEADER_LEN];
    header[0..4].copy_from_slice(&EPB.to_ne_bytes());
    header[4..8].copy_from_slice(&total);
    header[8..12].copy_from_slice(&packet.interface.to_ne_bytes());
    header[12..16].copy_from_slice(&((ns >> 32) as u32).to_ne_bytes());
    header[16..20].copy_from_slice(&(ns as u32).to_ne_bytes());
    header[20..24].copy_from_slice(&(frame.len() as u32).to_ne_bytes());
    header[24..28].copy_from_slice(&packet.original_len.to_ne_bytes());
    out.extend_from_slice(&header);
    out.extend_from_slice(frame);
    out.extend_from_slice(&[0u8; 3][..padding(frame.len())]);
    if let Some(flags) = packet.flags {
        let mut options = [0u8; EPB_FLAGS_LEN];
        options[0..2].copy_from_slice(&EPB_FLAGS.to_ne_bytes());
        options[2..4].copy_from_slice(&4u16.to_ne_bytes());
        options[4..8].copy_from_slice(&flags.to_ne_bytes());
        // Bytes 8..12 stay zero: the end of options.
        out.extend_from_slice(&options);
    }
    out.extend_from_slice(&total);
}

fn put_statistics(out: &mut Vec<u8>, interface: u32, totals: &StatisticsSample) {
    put_block(out, ISB, |out| {
        put_u32(out, interface);
        put_timestamp(out, totals.at_ns);
        let mut timestamp = [0u8; 8];
        for (code, value) in [
            (STARTTIME_CODE, totals.start_ns),
            (ENDTIME_CODE, totals.end_ns),
        ] {
            if let Some(ns) = value {
                timestamp[0..4].copy_from_slice(&((ns >> 32) as u32).to_ne_bytes());
                timestamp[4..8].copy_from_slice(&(ns as u32).to_ne_bytes());
                put_option(out, code, &timestamp);
            }
        }
        for (code, value) in COUNTER_CODES.iter().zip(&totals.counters) {
            if let Some(count) = value {
                put_option(out, *code, &count.to_ne_bytes());
            }
        }
        put_option(out, OPT_END, &[]);
    });
}
