//! One input of a merge, read one packet ahead: the merge looks at each input's next packet,
//! writes the earliest, and asks that input for its next one.
//!
//! The reader walks the input's files in order, tells pcap from pcapng by each file's first
//! bytes, registers interfaces with the merge as their descriptions go by (see `interfaces`),
//! and leaves the pending packet's bytes in its buffer until the merge has written them.
//!
//! A file that ends inside a record (the writer was killed mid-write) ends there: what came
//! before is merged and the file is reported as truncated. Any other damage is an error that
//! names the input, the file and the byte offset.

use std::io::{self, Read};

use super::buffer::{RecordBuffer, MAX_RECORD_LEN};
use super::byte_order::ByteOrder;
use super::error::MergeError;
use super::interfaces::{InterfaceDescription, InterfaceTable};
use super::pcap::{self, PcapHeader};
use super::pcapng::{self, Block};
use super::source::{ChainedInput, InputFile, MergeInput};
use super::timescale::TimeScale;

/// A packet waiting in an input's buffer; its frame is `data_len` bytes at `data_at` from the
/// start of the record.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct PacketView {
    pub(super) timestamp_ns: u64,
    /// The interface in the merged file.
    pub(super) interface: u32,
    pub(super) original_len: u32,
    /// pcapng `epb_flags` (direction, reception type), when the input had them.
    pub(super) flags: Option<u32>,
    data_at: usize,
    pub(super) data_len: usize,
}

pub(super) struct InputReader {
    index: usize,
    name: String,
    description: Option<String>,
    files: ChainedInput,
    file: Option<OpenFile>,
    buffer: RecordBuffer,
    pending: PacketView,
    /// Bytes of the record holding `pending`, released when the merge asks for the next one.
    pending_record_len: usize,
    /// This input's interfaces in the merged file, so later files map onto them.
    interface_ids: Vec<u32>,
    /// A Simple Packet Block has no timestamp; it keeps its place after the packet before it.
    last_timestamp_ns: u64,
    truncated: Vec<String>,
}

struct OpenFile {
    /// How errors name the file; empty for a single-stream input.
    label: String,
    reader: Box<dyn Read + Send>,
    format: FileFormat,
}

enum FileFormat {
    /// Nothing read yet: the first bytes tell.
    Unknown,
    Pcap {
        header: PcapHeader,
        interface: u32,
    },
    /// The current section; set by the section header every pcapng file starts with.
    Pcapng(Option<Section>),
}

struct Section {
    order: ByteOrder,
    interfaces: Vec<SectionInterface>,
}

#[derive(Debug, Clone, Copy)]
struct SectionInterface {
    output_id: u32,
    scale: TimeScale,
    snap_len: u32,
}

/// What one step through a file found.
enum Step {
    Packet(u64),
    /// A block that is not a packet (interface, statistics, skipped); read on.
    More,
    EndOfFile,
}

/// Why a file stopped before its end.
enum Stop {
    /// It ends inside a record.
    Truncated,
    Damaged(String),
    NotACapture([u8; 4]),
    Io(io::Error),
}

impl From<io::Error> for Stop {
    fn from(error: io::Error) -> Stop {
        Stop::Io(error)
    }
}

/// Registers a file's interfaces with the merge on behalf of one input.
struct Registry<'a> {
    table: &'a mut InterfaceTable,
    input: usize,
    input_name: &'a str,
    input_ids: &'a mut Vec<u32>,
    description: Option<&'a str>,
}

impl Registry<'_> {
    fn register(&mut self, section_ids: &[u32], mut described: InterfaceDescription) -> u32 {
        if let Some(description) = self.description {
            described.description = Some(description.to_string());
        }
        // Classic pcap has no interface names, and Wireshark would show "unknown": the input's
        // name says where the packets came from.
        if described.name.is_none() {
            described.name = Some(self.input_name.to_string());
        }
        self.table
            .find_or_add(self.input, self.input_ids, section_ids, described)
    }
}

impl InputReader {
    pub(super) fn new(index: usize, input: MergeInput, buffer_len: usize) -> InputReader {
        InputReader {
            index,
            name: input.name,
            description: input.description,
            files: input.files,
            file: None,
            buffer: RecordBuffer::new(buffer_len),
            pending: PacketView::default(),
            pending_record_len: 0,
            interface_ids: Vec::new(),
            last_timestamp_ns: 0,
            truncated: Vec::new(),
        }
    }

    /// Files of this input that ended inside a record.
    pub(super) fn truncated(&self) -> &[String] {
        &self.truncated
    }

    pub(super) fn buffer_capacity(&self) -> usize {
        self.buffer.capacity()
    }

    /// The pending packet and its frame.
    #[inline]
    pub(super) fn pending(&self) -> (&PacketView, &[u8]) {
        let view = &self.pending;
        let frame = &self.buffer.available()[view.data_at..view.data_at + view.data_len];
        (view, frame)
    }

    /// Moves to the next packet and returns its timestamp; `None` when the input is done.
    #[inline]
    pub(super) fn advance(
        &mut self,
        table: &mut InterfaceTable,
    ) -> Result<Option<u64>, MergeError> {
        self.buffer
            .consume(std::mem::take(&mut self.pending_record_len));
        loop {
            if self.file.is_none() && !self.open_next_file()? {
                return Ok(None);
            }
            match self.step(table) {
                Ok(Step::Packet(timestamp_ns)) => return Ok(Some(timestamp_ns)),
                Ok(Step::More) => {}
                Ok(Step::EndOfFile) => self.file = None,
                Err(Stop::Truncated) => {
                    let label = self.label();
                    tracing::warn!(
                        input = %label,
                        offset = self.buffer.offset(),
                        "capture file ends inside a record; merging the packets before it"
                    );
                    self.truncated.push(label);
                    self.file = None;
                }
                Err(stop) => return Err(self.error(stop)),
            }
        }
    }

    fn open_next_file(&mut self) -> Result<bool, MergeError> {
        match self.files.next_file() {
            None => Ok(false),
            Some(Err(source)) => Err(MergeError::Read {
                input: self.name.clone(),
                source,
            }),
            Some(Ok(InputFile { label, reader })) => {
                self.buffer.reset();
                self.file = Some(OpenFile {
                    label,
                    reader,
                    format: FileFormat::Unknown,
                });
                Ok(true)
            }
        }
    }

    #[inline]
    fn step(&mut self, table: &mut InterfaceTable) -> Result<Step, Stop> {
        let Some(file) = self.file.as_mut() else {
            return Ok(Step::EndOfFile);
        };
        let mut registry = Registry {
            table,
            input: self.index,
            input_name: &self.name,
            input_ids: &mut self.interface_ids,
            description: self.description.as_deref(),
        };
        let reader = &mut *file.reader;
        let buffer = &mut self.buffer;
        let found = match &mut file.format {
            FileFormat::Pcapng(section) => next_pcapng(
                buffer,
                reader,
                section,
                &mut registry,
                self.last_timestamp_ns,
            )?,
            FileFormat::Pcap { header, interface } => {
                next_pcap(buffer, reader, header, *interface)?
            }
            FileFormat::Unknown => {
                file.format = match detect_format(buffer, reader, &mut registry)? {
                    Some(format) => format,
                    None => return Ok(Step::EndOfFile),
                };
                return Ok(Step::More);
            }
        };
        Ok(match found {
            Found::Packet(view, record_len) => {
                self.pending = view;
                self.pending_record_len = record_len;
                self.last_timestamp_ns = view.timestamp_ns;
                Step::Packet(view.timestamp_ns)
            }
            Found::Other(record_len) => {
                self.buffer.consume(record_len);
                Step::More
            }
            Found::EndOfFile => Step::EndOfFile,
        })
    }

    /// The input's name, with the file's label when it has one.
    fn label(&self) -> String {
        match &self.file {
            Some(file) if !file.label.is_empty() => format!("{} ({})", self.name, file.label),
            _ => self.name.clone(),
        }
    }

    fn error(&self, stop: Stop) -> MergeError {
        let input = self.label();
        let offset = self.buffer.offset();
        match stop {
            Stop::Io(source) => MergeError::Read { input, source },
            Stop::NotACapture(start) => MergeError::NotACaptureFile {
                input,
                start: describe_start(start),
            },
            Stop::Damaged(problem) => MergeError::Damaged {
                input,
                offset,
                problem,
            },
            Stop::Truncated => MergeError::Damaged {
                input,
                offset,
                problem: "ends inside a record".into(),
            },
        }
    }
}

/// What a step through one file found: a packet (and its record's length), another record to
/// skip after use, or the end.
enum Found {
    Packet(PacketView, usize),
    Other(usize),
    EndOfFile,
}

/// The first bytes as hex, and as text when they are text (an HTTP error page, a log file).
fn describe_start(start: [u8; 4]) -> String {
    let hex: String = start.iter().map(|b| format!("{b:02x}")).collect();
    if start.iter().all(|b| b.is_ascii_graphic() || *b == b' ') {
        format!("0x{hex}, \"{}\"", String::from_utf8_lossy(&start))
    } else {
        format!("0x{hex}")
    }
}

/// Reads a file's header: `None` for an empty file (a capture killed before its header).
fn detect_format(
    buffer: &mut RecordBuffer,
    reader: &mut dyn Read,
    registry: &mut Registry<'_>,
) -> Result<Option<FileFormat>, Stop> {
    const MAGIC_LEN: usize = 4;
    let available = buffer.fill(reader, MAGIC_LEN)?;
    if available == 0 {
        return Ok(None);
    }
    if available < MAGIC_LEN {
        return Err(Stop::Truncated);
    }
    let bytes = buffer.available();
    let start = [bytes[0], bytes[1], bytes[2], bytes[3]];
    if u32::from_le_bytes(start) == pcapng::SECTION_HEADER {
        return Ok(Some(FileFormat::Pcapng(None)));
    }
    if !pcap::is_pcap_magic(start) {
        return Err(Stop::NotACapture(start));
    }
    if buffer.fill(reader, pcap::FILE_HEADER_LEN)? < pcap::FILE_HEADER_LEN {
        return Err(Stop::Truncated);
    }
    let header = pcap::parse_file_header(buffer.available()).map_err(Stop::Damaged)?;
    let interface = registry.register(
        &[],
        InterfaceDescription {
            link_type: header.link_type,
            snap_len: header.snap_len,
            name: None,
            description: None,
            filter: None,
        },
    );
    buffer.consume(pcap::FILE_HEADER_LEN);
    Ok(Some(FileFormat::Pcap { header, interface }))
}

#[inline]
fn next_pcap(
    buffer: &mut RecordBuffer,
    reader: &mut dyn Read,
    header: &PcapHeader,
    interface: u32,
) -> Result<Found, Stop> {
    let available = buffer.fill(reader, pcap::RECORD_HEADER_LEN)?;
    if available == 0 {
        return Ok(Found::EndOfFile);
    }
    if available < pcap::RECORD_HEADER_LEN {
        return Err(Stop::Truncated);
    }
    let record = pcap::parse_record_header(header, buffer.available());
    if record.captured_len > MAX_RECORD_LEN - pcap::RECORD_HEADER_LEN {
        return Err(Stop::Damaged(format!(
            "record claims {} captured bytes (at most {MAX_RECORD_LEN} make sense)",
            record.captured_len
        )));
    }
    let record_len = pcap::RECORD_HEADER_LEN + record.captured_len;
    if buffer.fill(reader, record_len)? < record_len {
        return Err(Stop::Truncated);
    }
    let view = PacketView {
        timestamp_ns: record.timestamp_ns,
        interface,
        original_len: record.original_len,
        flags: None,
        data_at: pcap::RECORD_HEADER_LEN,
        data_len: record.captured_len,
    };
    Ok(Found::Packet(view, record_len))
}

#[inline]
fn next_pcapng(
    buffer: &mut RecordBuffer,
    reader: &mut dyn Read,
    section: &mut Option<Section>,
    registry: &mut Registry<'_>,
    last_timestamp_ns: u64,
) -> Result<Found, Stop> {
    let available = buffer.fill(reader, pcapng::BLOCK_HEADER_LEN)?;
    if available == 0 {
        return Ok(Found::EndOfFile);
    }
    if available < pcapng::BLOCK_HEADER_LEN {
        return Err(Stop::Truncated);
    }
    let head = buffer.available();
    let starts_section =
        u32::from_le_bytes([head[0], head[1], head[2], head[3]]) == pcapng::SECTION_HEADER;
    let order = match section {
        _ if starts_section => {
            if buffer.fill(reader, pcapng::SECTION_PROBE_LEN)? < pcapng::SECTION_PROBE_LEN {
                return Err(Stop::Truncated);
            }
            pcapng::section_order(buffer.available()).map_err(Stop::Damaged)?
        }
        Some(section) => section.order,
        None => {
            return Err(Stop::Damaged(
                "pcapng data before the first section header".into(),
            ))
        }
    };
    let (block_type, len) =
        pcapng::block_header(order, buffer.available()).map_err(Stop::Damaged)?;
    if buffer.fill(reader, len)? < len {
        return Err(Stop::Truncated);
    }
    let block = pcapng::parse_block(order, block_type, &buffer.available()[..len])
        .map_err(Stop::Damaged)?;
    if let Block::SectionHeader = block {
        *section = Some(Section {
            order,
            interfaces: Vec::new(),
        });
        return Ok(Found::Other(len));
    }
    let Some(section) = section else {
        return Err(Stop::Damaged(
            "pcapng data before the first section header".into(),
        ));
    };
    match block {
        Block::Packet(packet) => {
            let interface = section
                .interfaces
                .get(packet.interface as usize)
                .ok_or_else(|| {
                    Stop::Damaged(format!(
                        "packet of interface {}, but the section describes {} interface(s)",
                        packet.interface,
                        section.interfaces.len()
                    ))
                })?;
            let mut captured_len = packet.captured_len;
            let timestamp_ns = match packet.raw_timestamp {
                Some(raw) => interface.scale.to_ns(raw),
                None => {
                    if interface.snap_len != 0 {
                        captured_len = captured_len.min(interface.snap_len as usize);
                    }
                    last_timestamp_ns
                }
            };
            let view = PacketView {
                timestamp_ns,
                interface: interface.output_id,
                original_len: packet.original_len,
                flags: packet.flags,
                data_at: packet.data_at,
                data_len: captured_len,
            };
            return Ok(Found::Packet(view, len));
        }
        Block::Interface { described, scale } => {
            let section_ids: Vec<u32> = section.interfaces.iter().map(|i| i.output_id).collect();
            let snap_len = described.snap_len;
            let output_id = registry.register(&section_ids, described);
            section.interfaces.push(SectionInterface {
                output_id,
                scale,
                snap_len,
            });
        }
        Block::Statistics { interface, raw } => {
            // Statistics of an undescribed interface say nothing usable; they are dropped.
            if let Some(interface) = section.interfaces.get(interface as usize) {
                registry
                    .table
                    .add_statistics(interface.output_id, &raw.in_ns(interface.scale));
            }
        }
        Block::SectionHeader | Block::Skipped => {}
    }
    Ok(Found::Other(len))
}
