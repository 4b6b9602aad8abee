//! A capture's output: one stream of records cut into files by size and age, optionally a ring of
//! at most N files. Records are encoded into a page-aligned buffer; full 1 MiB chunks go to the
//! disk writer thread (see `disk`), so the capture thread never waits for the disk.
//!
//! Crash safety: a file's headers reach the file when it is opened, and the file always ends on
//! a record boundary: after each chunk, and at least every [`FLUSH_INTERVAL`], the unwritten tail
//! is written too. So a killed process (SIGKILL, OOM) leaves every file readable, losing at most
//! the packets of the last 250 ms (plus chunks still queued for the disk writer, which only
//! happens when the disk is slower than the traffic, and what the kernel still held in the ring).
//! Only a closed file has the statistics footer. A host crash can lose more, as for any writer
//! that does not fsync.

mod disk;
mod repair;

use std::collections::VecDeque;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use capture_spec::{OutputFormat, Rotation};

use crate::afpacket::Packet;
use crate::format::{Encoder, FileHeaderInfo, InterfaceInfo, InterfaceTotals, PacketRecord};
use disk::{DiskWriter, FileHandles, DIRECT_ALIGN};

/// Buffered records go to the disk writer once they reach this size...
pub const FLUSH_BYTES: usize = 1 << 20;
/// Room after a chunk's worth for the largest record (a whole 262144-byte frame, a restored
/// VLAN tag, and the pcapng block around it), so a buffer never reallocates.
const MAX_RECORD: usize = capture_spec::MAX_SNAP_LENGTH as usize + 4 + 64;
/// ...or when they are this old.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(250);

/// What the files say they were written by (pcapng `shb_userappl`).
const APPLICATION: &str = concat!("podcap capture-agent ", env!("CARGO_PKG_VERSION"));

/// One file of a capture, as reported to the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSummary {
    pub path: PathBuf,
    pub packets: u64,
    /// File size in bytes, headers included.
    pub bytes: u64,
    pub first_packet_ns: Option<u64>,
    pub last_packet_ns: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
#[error("{op} {path}: {source}")]
pub struct OutputError {
    op: &'static str,
    path: PathBuf,
    #[source]
    source: io::Error,
}

impl OutputError {
    pub(crate) fn new<'a>(
        op: &'static str,
        path: &'a Path,
    ) -> impl FnOnce(io::Error) -> OutputError + 'a {
        move |source| OutputError {
            op,
            path: path.to_path_buf(),
            source,
        }
    }
}

struct OpenFile {
    handles: Arc<FileHandles>,
    summary: FileSummary,
    opened_at: Instant,
}

/// The files of one output stream (one or more interfaces).
pub struct OutputFiles {
    base: PathBuf,
    encoder: Encoder,
    interfaces: Vec<InterfaceInfo>,
    snap_length: u32,
    rotation: Rotation,
    writer: DiskWriter,
    /// Encoded records not yet handed to the writer; data starts at `start`, page-aligned.
    buffer: Vec<u8>,
    start: usize,
    /// The file offset of `buffer[start]`.
    buffer_offset: u64,
    /// How much of the buffer's data the file already has (written as a tail).
    published: usize,
    current: OpenFile,
    next_sequence: u64,
    /// Closed files still on disk, oldest first.
    closed: VecDeque<FileSummary>,
    deleted_files: u64,
    last_flush: Instant,
    started_ns: u64,
    delivered: Vec<u64>,
    kernel: Vec<(u64, u64)>,
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

impl OutputFiles {
    /// Opens the first file at once, so a capture that never sees a packet still leaves a
    /// readable (empty) file. With rotation, files are named `STEM-000001.EXT`, `STEM-000002.EXT`...;
    /// without, the file is `base` itself.
    pub fn create(
        base: &Path,
        format: OutputFormat,
        interfaces: Vec<InterfaceInfo>,
        snap_length: u32,
        rotation: Rotation,
    ) -> Result<OutputFiles, OutputError> {
        let encoder = Encoder::new(format);
        let mut writer = DiskWriter::spawn(FLUSH_BYTES + MAX_RECORD)?;
        let buffer = writer.take_buffer()?;
        let start = buffer.len();
        let first_path = file_path(base, format, rotation.rotates().then_some(1));
        let current = OpenFile::create(&first_path)?;
        let count = interfaces.len();
        let mut output = OutputFiles {
            base: base.to_path_buf(),
            encoder,
            interfaces,
            snap_length,
            rotation,
            writer,
            buffer,
            start,
            buffer_offset: 0,
            published: 0,
            current,
            next_sequence: 2,
            closed: VecDeque::new(),
            deleted_files: 0,
            last_flush: Instant::now(),
            started_ns: now_ns(),
            delivered: vec![0; count],
            kernel: vec![(0, 0); count],
        };
        output.write_file_header()?;
        Ok(output)
    }

    /// Starts the current file: its headers are in the file before any packet.
    fn write_file_header(&mut self) -> Result<(), OutputError> {
        let before = self.buffer.len();
        let info = FileHeaderInfo {
            interfaces: &self.interfaces,
            snap_length: self.snap_length,
            application: APPLICATION,
        };
        self.encoder.file_header(&mut self.buffer, &info);
        self.current.summary.bytes = (self.buffer.len() - before) as u64;
        self.publish_tail()
    }

    /// Updates the kernel counters (received, dropped) written into statistics footers.
    pub fn set_kernel_counters(&mut self, interface_id: u32, received: u64, drops: u64) {
        if let Some(slot) = self.kernel.get_mut(interface_id as usize) {
            *slot = (received, drops);
        }
    }

    /// The file record length of `packet`, to check a byte limit before writing it.
    pub fn record_len(&self, interface_id: u32, packet: &Packet<'_>) -> usize {
        self.encoder.packet_len(&PacketRecord {
            interface_id,
            packet,
        })
    }

    /// Writes one packet, first starting a new file if rotation says so.
    pub fn write(&mut self, interface_id: u32, packet: &Packet<'_>) -> Result<(), OutputError> {
        let record = PacketRecord {
            interface_id,
            packet,
        };
        let len = self.encoder.packet_len(&record) as u64;
        if self.must_rotate_before(len) {
            self.rotate()?;
        }
        self.encoder.packet(&mut self.buffer, &record);
        let summary = &mut self.current.summary;
        summary.packets += 1;
        summary.bytes += len;
        summary.first_packet_ns.get_or_insert(packet.timestamp_ns);
        summary.last_packet_ns = Some(packet.timestamp_ns);
        if let Some(count) = self.delivered.get_mut(interface_id as usize) {
            *count += 1;
        }
        if self.buffer.len() - self.start >= FLUSH_BYTES {
            self.hand_over_chunk()?;
        }
        Ok(())
    }

    /// Hands the page-aligned part of the buffer to the disk writer and keeps the rest (less
    /// than a page) at the start of a fresh buffer, which is then written as the file's tail so
    /// the file ends on a record boundary.
    fn hand_over_chunk(&mut self) -> Result<(), OutputError> {
        let aligned = (self.buffer.len() - self.start) / DIRECT_ALIGN * DIRECT_ALIGN;
        if aligned == 0 {
            return self.publish_tail();
        }
        let mut next = self.writer.take_buffer()?;
        let next_start = next.len();
        next.extend_from_slice(&self.buffer[self.start + aligned..]);
        let full = std::mem::replace(&mut self.buffer, next);
        let full_start = std::mem::replace(&mut self.start, next_start);
        self.writer.write_chunk(
            &self.current.handles,
            self.buffer_offset,
            full,
            full_start..full_start + aligned,
        )?;
        self.buffer_offset += aligned as u64;
        self.published = 0;
        self.publish_tail()
    }

    /// Writes the records the file does not have yet, without handing the buffer over.
    fn publish_tail(&mut self) -> Result<(), OutputError> {
        self.last_flush = Instant::now();
        let data = &self.buffer[self.start..];
        if data.len() == self.published {
            return self.writer.check();
        }
        self.writer
            .write_tail(&self.current.handles, self.buffer_offset, data)?;
        self.published = data.len();
        Ok(())
    }

    fn must_rotate_before(&self, record_len: u64) -> bool {
        let current = &self.current;
        if current.summary.packets == 0 {
            return false;
        }
        let footer = self.encoder.footer_len(self.interfaces.len()) as u64;
        let too_big = self
            .rotation
            .max_file_bytes
            .is_some_and(|max| current.summary.bytes + record_len + footer > max);
        let too_old = self
            .rotation
            .max_file_duration()
            .is_some_and(|max| current.opened_at.elapsed() >= max);
        too_big || too_old
    }

    fn totals(&self) -> Vec<InterfaceTotals> {
        let at_ns = now_ns();
        self.delivered
            .iter()
            .zip(&self.kernel)
            .map(
                |(&delivered, &(kernel_received, kernel_drops))| InterfaceTotals {
                    started_ns: self.started_ns,
                    at_ns,
                    kernel_received,
                    kernel_drops,
                    delivered,
                },
            )
            .collect()
    }

    /// Appends the statistics footer, writes everything out and returns the file's summary.
    fn seal_current(&mut self) -> Result<FileSummary, OutputError> {
        let totals = self.totals();
        let before = self.buffer.len();
        self.encoder.file_footer(&mut self.buffer, &totals);
        self.current.summary.bytes += (self.buffer.len() - before) as u64;
        self.publish_tail()?;
        Ok(self.current.summary.clone())
    }

    fn rotate(&mut self) -> Result<(), OutputError> {
        let sealed = self.seal_current()?;
        let path = file_path(&self.base, self.encoder.format(), Some(self.next_sequence));
        self.next_sequence += 1;
        // The sealed file's bytes are all with the writer; the new file starts at offset 0.
        self.buffer.truncate(self.start);
        self.buffer_offset = 0;
        self.published = 0;
        self.current = OpenFile::create(&path)?;
        self.write_file_header()?;
        self.closed.push_back(sealed);
        if let Some(max_files) = self.rotation.max_files {
            while self.closed.len() + 1 > max_files as usize {
                let Some(oldest) = self.closed.pop_front() else {
                    break;
                };
                self.writer.remove(oldest.path)?;
                self.deleted_files += 1;
            }
        }
        Ok(())
    }

    /// When buffered records the file does not have yet are due to be written; `None` when
    /// the file has them all.
    pub fn flush_due(&self) -> Option<Instant> {
        (self.buffer.len() - self.start > self.published).then(|| self.last_flush + FLUSH_INTERVAL)
    }

    /// Writes buffered records if they have waited [`FLUSH_INTERVAL`]; reports a failed write.
    pub fn flush_if_due(&mut self, now: Instant) -> Result<(), OutputError> {
        if now.duration_since(self.last_flush) >= FLUSH_INTERVAL {
            self.publish_tail()?;
        }
        Ok(())
    }

    /// True when the current file is written with O_DIRECT (false: through the page cache).
    pub fn is_direct(&self) -> bool {
        self.current.handles.is_direct()
    }

    /// Files written so far that are still on disk, oldest first, the open one last.
    pub fn files(&self) -> Vec<FileSummary> {
        self.closed
            .iter()
            .cloned()
            .chain([self.current.summary.clone()])
            .collect()
    }

    /// Files deleted to keep within `maxFiles`.
    pub fn deleted_files(&self) -> u64 {
        self.deleted_files
    }

    /// Closes the last file with its statistics footer and returns every file still on disk,
    /// with the first write error not yet reported. After a failed write (the disk is full) the
    /// files written last are cut to their whole records, so they read cleanly up to their last
    /// whole packet, and their summaries say what they hold.
    pub fn finish(mut self) -> (Vec<FileSummary>, Option<OutputError>) {
        let sealed = self.seal_current();
        let waited = self.writer.wait();
        let failed = self.writer.has_failed();
        let mut files: Vec<FileSummary> = self.closed.drain(..).collect();
        let error = match sealed {
            Ok(last) => {
                files.push(last);
                waited.err()
            }
            Err(error) => {
                files.push(self.current.summary.clone());
                Some(error)
            }
        };
        if failed || error.is_some() {
            // The failure hit the current file or, just after a rotation, the one before it.
            for summary in files.iter_mut().rev().take(2) {
                match repair::cut_to_whole_records(&summary.path, self.encoder.format()) {
                    Ok(whole) => {
                        summary.bytes = whole.bytes;
                        summary.packets = whole.packets;
                    }
                    Err(error) => {
                        tracing::error!(path = %summary.path.display(), %error, "cannot cut a capture file to its whole records");
                    }
                }
            }
        }
        (files, error)
    }
}

impl OpenFile {
    fn create(path: &Path) -> Result<OpenFile, OutputError> {
        Ok(OpenFile {
            handles: Arc::new(FileHandles::create(path)?),
            summary: FileSummary {
                path: path.to_path_buf(),
                packets: 0,
                bytes: 0,
                first_packet_ns: None,
                last_packet_ns: None,
            },
            opened_at: Instant::now(),
        })
    }
}

/// `base` itself, or with a sequence number: `dir/capture.pcapng` -> `dir/capture-000002.pcapng`.
pub fn file_path(base: &Path, format: OutputFormat, sequence: Option<u64>) -> PathBuf {
    let Some(sequence) = sequence else {
        return base.to_path_buf();
    };
    let stem = base
        .file_stem()
        .map_or_else(|| "capture".into(), |s| s.to_string_lossy().into_owned());
    let extension = base.extension().map_or_else(
        || format.extension().to_string(),
        |e| e.to_string_lossy().into_owned(),
    );
    base.with_file_name(format!("{stem}-{sequence:06}.{extension}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotated_names_keep_stem_and_extension() {
        let base = Path::new("/data/web.pcapng");
        assert_eq!(file_path(base, OutputFormat::Pcapng, None), base);
        assert_eq!(
            file_path(base, OutputFormat::Pcapng, Some(3)),
            Path::new("/data/web-000003.pcapng")
        );
        assert_eq!(
            file_path(Path::new("/d/x"), OutputFormat::Pcap, Some(1)),
            Path::new("/d/x-000001.pcap")
        );
    }
}
