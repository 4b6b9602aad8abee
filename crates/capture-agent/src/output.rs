//! A capture's output: one stream of records cut into files by size and age, optionally a ring of
//! at most N files, written with large buffered writes.
//!
//! Crash safety: a file's headers are written and flushed when it is opened, and records reach the
//! file in whole-record writes at least every [`FLUSH_INTERVAL`] or [`FLUSH_BYTES`], whichever
//! comes first. So a killed process (SIGKILL, OOM) leaves every file readable, losing at most the
//! packets of the last 250 ms or 1 MiB of records (plus what the kernel still held in the ring).
//! Only a closed file has the statistics footer. The page cache survives a killed process; a host
//! crash can lose more, as for any writer that does not fsync.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use capture_spec::{OutputFormat, Rotation};

use crate::afpacket::Packet;
use crate::format::{Encoder, FileHeaderInfo, InterfaceInfo, InterfaceTotals, PacketRecord};

/// Buffered records are written once they reach this size...
pub const FLUSH_BYTES: usize = 1 << 20;
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
    fn new<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> OutputError + 'a {
        move |source| OutputError { op, path: path.to_path_buf(), source }
    }
}

struct OpenFile {
    file: File,
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
    buffer: Vec<u8>,
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
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
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
        let mut buffer = Vec::with_capacity(FLUSH_BYTES + 2 * capture_spec::MAX_SNAP_LENGTH as usize);
        let first_path = file_path(base, format, rotation.rotates().then_some(1));
        let current = open_file(&first_path, &encoder, &interfaces, snap_length, &mut buffer)?;
        let count = interfaces.len();
        Ok(OutputFiles {
            base: base.to_path_buf(),
            encoder,
            interfaces,
            snap_length,
            rotation,
            buffer,
            current,
            next_sequence: 2,
            closed: VecDeque::new(),
            deleted_files: 0,
            last_flush: Instant::now(),
            started_ns: now_ns(),
            delivered: vec![0; count],
            kernel: vec![(0, 0); count],
        })
    }

    /// Updates the kernel counters (received, dropped) written into statistics footers.
    pub fn set_kernel_counters(&mut self, interface_id: u32, received: u64, drops: u64) {
        if let Some(slot) = self.kernel.get_mut(interface_id as usize) {
            *slot = (received, drops);
        }
    }

    /// The file record length of `packet`, to check a byte limit before writing it.
    pub fn record_len(&self, interface_id: u32, packet: &Packet<'_>) -> usize {
        self.encoder.packet_len(&PacketRecord { interface_id, packet })
    }

    /// Writes one packet, first starting a new file if rotation says so.
    pub fn write(&mut self, interface_id: u32, packet: &Packet<'_>) -> Result<(), OutputError> {
        let record = PacketRecord { interface_id, packet };
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
        if self.buffer.len() >= FLUSH_BYTES {
            self.flush()?;
        }
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
        let too_old = self.rotation.max_file_duration().is_some_and(|max| current.opened_at.elapsed() >= max);
        too_big || too_old
    }

    fn totals(&self) -> Vec<InterfaceTotals> {
        let at_ns = now_ns();
        self.delivered
            .iter()
            .zip(&self.kernel)
            .map(|(&delivered, &(kernel_received, kernel_drops))| InterfaceTotals {
                started_ns: self.started_ns,
                at_ns,
                kernel_received,
                kernel_drops,
                delivered,
            })
            .collect()
    }

    /// Appends the statistics footer, writes everything out and returns the file's summary.
    fn seal_current(&mut self) -> Result<FileSummary, OutputError> {
        let totals = self.totals();
        let before = self.buffer.len();
        self.encoder.file_footer(&mut self.buffer, &totals);
        self.current.summary.bytes += (self.buffer.len() - before) as u64;
        self.flush()?;
        Ok(self.current.summary.clone())
    }

    fn rotate(&mut self) -> Result<(), OutputError> {
        let sealed = self.seal_current()?;
        let path = file_path(&self.base, self.encoder.format(), Some(self.next_sequence));
        self.next_sequence += 1;
        self.current = open_file(&path, &self.encoder, &self.interfaces, self.snap_length, &mut self.buffer)?;
        self.closed.push_back(sealed);
        if let Some(max_files) = self.rotation.max_files {
            while self.closed.len() + 1 > max_files as usize {
                let Some(oldest) = self.closed.pop_front() else { break };
                std::fs::remove_file(&oldest.path).map_err(OutputError::new("deleting the oldest file", &oldest.path))?;
                self.deleted_files += 1;
            }
        }
        Ok(())
    }

    /// Writes buffered records if they have waited [`FLUSH_INTERVAL`].
    pub fn flush_if_due(&mut self, now: Instant) -> Result<(), OutputError> {
        if !self.buffer.is_empty() && now.duration_since(self.last_flush) >= FLUSH_INTERVAL {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), OutputError> {
        self.last_flush = Instant::now();
        if self.buffer.is_empty() {
            return Ok(());
        }
        let result = self.current.file.write_all(&self.buffer);
        self.buffer.clear();
        result.map_err(OutputError::new("writing", &self.current.summary.path))
    }

    /// Files written so far that are still on disk, oldest first, the open one last.
    pub fn files(&self) -> Vec<FileSummary> {
        self.closed.iter().cloned().chain([self.current.summary.clone()]).collect()
    }

    /// Files deleted to keep within `maxFiles`.
    pub fn deleted_files(&self) -> u64 {
        self.deleted_files
    }

    /// Closes the last file with its statistics footer and returns every file still on disk.
    pub fn finish(mut self) -> Result<Vec<FileSummary>, OutputError> {
        let last = self.seal_current()?;
        let mut files: Vec<FileSummary> = self.closed.drain(..).collect();
        files.push(last);
        Ok(files)
    }
}

fn open_file(
    path: &Path,
    encoder: &Encoder,
    interfaces: &[InterfaceInfo],
    snap_length: u32,
    buffer: &mut Vec<u8>,
) -> Result<OpenFile, OutputError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .map_err(OutputError::new("creating", path))?;
    buffer.clear();
    encoder.file_header(buffer, &FileHeaderInfo { interfaces, snap_length, application: APPLICATION });
    file.write_all(buffer).map_err(OutputError::new("writing", path))?;
    let header_len = buffer.len() as u64;
    buffer.clear();
    Ok(OpenFile {
        file,
        summary: FileSummary { path: path.to_path_buf(), packets: 0, bytes: header_len, first_packet_ns: None, last_packet_ns: None },
        opened_at: Instant::now(),
    })
}

/// `base` itself, or with a sequence number: `dir/capture.pcapng` -> `dir/capture-000002.pcapng`.
pub fn file_path(base: &Path, format: OutputFormat, sequence: Option<u64>) -> PathBuf {
    let Some(sequence) = sequence else {
        return base.to_path_buf();
    };
    let stem = base.file_stem().map_or_else(|| "capture".into(), |s| s.to_string_lossy().into_owned());
    let extension = base
        .extension()
        .map_or_else(|| format.extension().to_string(), |e| e.to_string_lossy().into_owned());
    base.with_file_name(format!("{stem}-{sequence:06}.{extension}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotated_names_keep_stem_and_extension() {
        let base = Path::new("/data/web.pcapng");
        assert_eq!(file_path(base, OutputFormat::Pcapng, None), base);
        assert_eq!(file_path(base, OutputFormat::Pcapng, Some(3)), Path::new("/data/web-000003.pcapng"));
        assert_eq!(file_path(Path::new("/d/x"), OutputFormat::Pcap, Some(1)), Path::new("/d/x-000001.pcap"));
    }
}
