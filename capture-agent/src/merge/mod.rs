//! Merging capture files into one time-ordered capture: what "download all files merged" of a
//! capture serves, the podcap counterpart of Wireshark's `mergecap`.
//!
//! Each input (one pod interface's file, or a rotated series of them read in order) is read
//! one packet ahead; a binary heap holds each input's next packet and the earliest is written.
//! Equal timestamps go in input order, and an input's own packets keep their order, so the
//! result is deterministic. Memory is a buffer per input plus one output buffer, whatever the
//! inputs' sizes (see [`MergeReport::peak_buffer_bytes`]), and everything is streamed over
//! `Read` and `Write`, so the API can run it on a blocking thread straight into an HTTP body.
//!
//! Inputs may be pcapng (any byte order, several sections, any `if_tsresol`, obsolete Packet
//! and Simple Packet Blocks) or classic pcap (micro- or nanoseconds, either byte order, any
//! link type). The output is pcapng with one interface per distinct interface of each input
//! (named as in the input, described by the input's `description` when given), timestamps in
//! nanoseconds and the original `epb_flags`; or classic pcap with nanosecond timestamps when
//! all inputs share one link type.
//!
//! Like `mergecap`, the merge interleaves inputs and does not sort within one: an input whose
//! own packets go back in time stays that way in the output.

mod buffer;
mod byte_order;
mod error;
mod interfaces;
mod live;
mod pcap;
mod pcapng;
mod reader;
mod source;
mod statistics;
#[cfg(test)]
mod testing;
mod timescale;
mod writer;

use std::cmp::Ordering;
use std::collections::binary_heap::PeekMut;
use std::collections::BinaryHeap;
use std::io::Write;
use std::ops::ControlFlow;

use capture_spec::OutputFormat;

pub use error::MergeError;
pub use live::{interleave, LiveInput, LiveReport};
pub use source::{ChainedInput, InputFile, MergeInput};

use interfaces::InterfaceTable;
use reader::{InputReader, PacketView};
use writer::MergedWriter;

/// Read buffers of all inputs together aim at this size...
const READ_BUDGET: usize = 4 << 20;
/// ...with each input's between these, so few inputs get large reads and many inputs
/// (hundreds of pods) still fit in memory. Larger reads than 256 KiB made no measurable
/// difference (bench/MERGE.md's inputs, 64 KiB to 1 MiB per input).
const MIN_READ_BUFFER: usize = 64 << 10;
const MAX_READ_BUFFER: usize = 256 << 10;

/// What a merge did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergeReport {
    pub packets: u64,
    pub bytes_written: u64,
    /// Interfaces in the merged file (pcapng), or inputs' interfaces that went into it (pcap).
    pub interfaces: usize,
    /// Inputs (with the file, for a chained input) whose last record was cut short, e.g. by a
    /// killed capture; their packets up to that record are in the merge.
    pub truncated_inputs: Vec<String>,
    /// The most memory the merge's buffers held: each input's read buffer and the output
    /// buffer. It depends on the number of inputs and the largest record, not on the inputs'
    /// sizes.
    pub peak_buffer_bytes: usize,
}

/// The read buffer each of `inputs` inputs gets.
fn read_buffer_len(inputs: usize) -> usize {
    (READ_BUDGET / inputs.max(1)).clamp(MIN_READ_BUFFER, MAX_READ_BUFFER)
}

/// An input's next packet in the heap: earliest timestamp first, then lowest input index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Next {
    timestamp_ns: u64,
    input: usize,
}

impl Ord for Next {
    fn cmp(&self, other: &Self) -> Ordering {
        // BinaryHeap is a max-heap: reversed, its top is the earliest packet.
        other
            .timestamp_ns
            .cmp(&self.timestamp_ns)
            .then(other.input.cmp(&self.input))
    }
}

impl PartialOrd for Next {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Merges `inputs` into one capture in `format`, written to `out` as it goes.
///
/// On error, `out` holds a partial capture; the error names the input at fault. Inputs whose
/// last record is cut short do not fail the merge (see [`MergeReport::truncated_inputs`]).
pub fn merge(
    inputs: Vec<MergeInput>,
    format: OutputFormat,
    out: &mut dyn Write,
) -> Result<MergeReport, MergeError> {
    let input_names = inputs.iter().map(|input| input.name.clone()).collect();
    let mut readers = readers_of(inputs);
    let mut table = InterfaceTable::default();
    // Every input's first packet is read before anything is written, so the interfaces of
    // all first files lead the output and a pcap link-type conflict fails before any byte.
    let mut heap = prime(&mut readers, &mut table)?;
    let mut writer = MergedWriter::new(out, format, input_names);
    writer.begin(&mut table)?;
    let packets = drain(&mut readers, &mut heap, &mut table, &mut writer)?;
    let (bytes_written, output_buffer) = writer.finish(&table)?;
    Ok(MergeReport {
        packets,
        bytes_written,
        interfaces: table.len(),
        truncated_inputs: readers
            .iter()
            .flat_map(|reader| reader.truncated().iter().cloned())
            .collect(),
        peak_buffer_bytes: output_buffer
            + readers
                .iter()
                .map(InputReader::buffer_capacity)
                .sum::<usize>(),
    })
}

/// One reader per input, the read budget shared among them.
fn readers_of(inputs: Vec<MergeInput>) -> Vec<InputReader> {
    let buffer_len = read_buffer_len(inputs.len());
    inputs
        .into_iter()
        .enumerate()
        .map(|(index, input)| InputReader::new(index, input, buffer_len))
        .collect()
}

/// Reads every input's first packet into a heap of "next packets".
fn prime(
    readers: &mut [InputReader],
    table: &mut InterfaceTable,
) -> Result<BinaryHeap<Next>, MergeError> {
    let mut heap = BinaryHeap::with_capacity(readers.len());
    for (input, reader) in readers.iter_mut().enumerate() {
        if let Some(timestamp_ns) = reader.advance(table)? {
            heap.push(Next {
                timestamp_ns,
                input,
            });
        }
    }
    Ok(heap)
}

/// What receives the merged packets: the merged file's writer, or a visitor.
trait Sink {
    fn packet(
        &mut self,
        packet: &PacketView,
        frame: &[u8],
        input: usize,
        table: &InterfaceTable,
    ) -> Result<ControlFlow<()>, MergeError>;

    /// Called after each read, when the input may have declared new interfaces.
    fn after_read(&mut self, _table: &mut InterfaceTable) -> Result<(), MergeError> {
        Ok(())
    }
}

impl Sink for MergedWriter<'_> {
    #[inline]
    fn packet(
        &mut self,
        packet: &PacketView,
        frame: &[u8],
        input: usize,
        _table: &InterfaceTable,
    ) -> Result<ControlFlow<()>, MergeError> {
        MergedWriter::packet(self, packet, frame, input)?;
        Ok(ControlFlow::Continue(()))
    }

    #[inline]
    fn after_read(&mut self, table: &mut InterfaceTable) -> Result<(), MergeError> {
        if table.has_undeclared() {
            self.declare(table)?;
        }
        Ok(())
    }
}

/// Hands packets to `sink` earliest first until the inputs end or the sink says stop; the
/// number of packets handed over.
fn drain<S: Sink>(
    readers: &mut [InputReader],
    heap: &mut BinaryHeap<Next>,
    table: &mut InterfaceTable,
    sink: &mut S,
) -> Result<u64, MergeError> {
    let mut packets = 0u64;
    while let Some(mut next) = heap.peek_mut() {
        let reader = &mut readers[next.input];
        let (packet, frame) = reader.pending();
        let flow = sink.packet(packet, frame, next.input, table)?;
        packets += 1;
        if flow.is_break() {
            break;
        }
        match reader.advance(table)? {
            // Updating the top in place costs one sift-down instead of a pop and a push.
            Some(timestamp_ns) => next.timestamp_ns = timestamp_ns,
            None => {
                PeekMut::pop(next);
            }
        }
        sink.after_read(table)?;
    }
    Ok(packets)
}

/// A packet as [`visit`] hands it over.
#[derive(Debug, Clone, Copy)]
pub struct VisitedPacket<'a> {
    /// Index of the input it came from.
    pub input: usize,
    pub timestamp_ns: u64,
    /// The packet's length on the wire; `frame` may be shorter (snap length).
    pub original_len: u32,
    /// The link type of its interface (1 = Ethernet).
    pub link_type: u16,
    /// pcapng `epb_flags` (bits 0-1: 1 inbound, 2 outbound), when the input had them.
    pub flags: Option<u32>,
    pub frame: &'a [u8],
}

struct Visitor<F>(F);

impl<F: FnMut(&VisitedPacket<'_>) -> ControlFlow<()>> Sink for Visitor<F> {
    fn packet(
        &mut self,
        packet: &PacketView,
        frame: &[u8],
        input: usize,
        table: &InterfaceTable,
    ) -> Result<ControlFlow<()>, MergeError> {
        let link_type = table
            .all()
            .get(packet.interface as usize)
            .map_or(1, |interface| interface.described.link_type);
        Ok((self.0)(&VisitedPacket {
            input,
            timestamp_ns: packet.timestamp_ns,
            original_len: packet.original_len,
            link_type,
            flags: packet.flags,
            frame,
        }))
    }
}

/// Reads `inputs` in merged time order, as [`merge`] would write them, handing each packet to
/// `visit` until the inputs end or it answers `Break`; the number of packets visited. What the
/// API uses to preview and chart a capture without writing a merged file.
pub fn visit(
    inputs: Vec<MergeInput>,
    visit: impl FnMut(&VisitedPacket<'_>) -> ControlFlow<()>,
) -> Result<u64, MergeError> {
    let mut readers = readers_of(inputs);
    let mut table = InterfaceTable::default();
    let mut heap = prime(&mut readers, &mut table)?;
    drain(&mut readers, &mut heap, &mut table, &mut Visitor(visit))
}

#[cfg(test)]
mod tests;
