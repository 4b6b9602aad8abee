//! The disk writer: one thread for the whole process that puts every capture's bytes into its
//! files, so a capture thread never waits for the disk, and a node capturing a hundred pods does
//! not run a hundred writer threads that sleep while their pods are quiet.
//!
//! Why: the capture thread must get back to the ring quickly, and on a busy host a buffered
//! write(2) can stall for tens of milliseconds (page allocation, dirty throttling) while costing
//! more CPU than the whole capture (the kernel copies every byte into new page-cache pages).
//! So whole, page-aligned chunks are written with O_DIRECT (the device reads our buffer; no copy)
//! from this thread, and only the small unaligned tail of the stream is written through a second,
//! buffered descriptor — at every flush tick and at close — so a file always has its exact
//! length and is readable up to its last flushed record. Where O_DIRECT is refused (some
//! filesystems), everything goes through the buffered descriptor instead.
//!
//! Each output stream has its own [`DiskWriter`]: its jobs carry its buffer pool's return path
//! and its error slot, so one stream's full disk is reported to that stream, and its buffers
//! come back to it alone. Buffers travel to the thread and come back through a bounded pool per
//! stream: when the disk is slower than the traffic, the capture thread waits for a buffer, the
//! ring fills, and the kernel counts drops — memory stays bounded and the loss is reported.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::sync::{Arc, Mutex, OnceLock};

use super::OutputError;

/// Alignment that satisfies O_DIRECT on every common device and filesystem.
pub(super) const DIRECT_ALIGN: usize = 4096;
/// Buffers in flight at most (each a chunk plus a record): bounds the writer's memory.
const POOL_BUFFERS: usize = 8;

/// The two descriptors of one output file.
pub(super) struct FileHandles {
    path: PathBuf,
    /// O_DIRECT descriptor for aligned chunks; `None` where the filesystem refuses O_DIRECT.
    direct: Option<File>,
    buffered: File,
}

impl FileHandles {
    pub(super) fn create(path: &Path) -> Result<FileHandles, OutputError> {
        let buffered = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .map_err(OutputError::new("creating", path))?;
        let direct = OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_DIRECT)
            .open(path)
            .ok();
        if direct.is_none() {
            tracing::debug!(path = %path.display(), "O_DIRECT refused; writing through the page cache");
        }
        Ok(FileHandles {
            path: path.to_path_buf(),
            direct,
            buffered,
        })
    }

    pub(super) fn is_direct(&self) -> bool {
        self.direct.is_some()
    }
}

/// What comes back from the writer thread to one output stream.
struct Stream {
    /// Buffers the thread is done with.
    give_back: Sender<Vec<u8>>,
    /// The first write error of this stream (e.g. the disk is full).
    error: Mutex<Option<OutputError>>,
    /// A write of this stream failed: its later writes are skipped, so nothing lands after a
    /// gap (the file is then cut to its whole records, see `repair`).
    failed: AtomicBool,
}

enum Job {
    /// Write `buffer[range]` at `offset`: page-aligned start, length and offset when direct.
    Chunk {
        file: Arc<FileHandles>,
        offset: u64,
        buffer: Vec<u8>,
        range: std::ops::Range<usize>,
    },
    /// Write the stream's unaligned tail at `offset` through the buffered descriptor.
    Tail {
        file: Arc<FileHandles>,
        offset: u64,
        bytes: Vec<u8>,
    },
    Remove(PathBuf),
    /// Answer once every earlier job is done.
    Barrier(SyncSender<()>),
}

/// The writer thread's queue: each job with the stream it is for.
type JobQueue = Sender<(Arc<Stream>, Job)>;

/// The process's writer thread, started by the first output stream.
fn writer_thread() -> Result<&'static Mutex<JobQueue>, OutputError> {
    static JOBS: OnceLock<Mutex<JobQueue>> = OnceLock::new();
    if let Some(jobs) = JOBS.get() {
        return Ok(jobs);
    }
    let (jobs, queue) = mpsc::channel();
    let started = std::thread::Builder::new()
        .name("podcap-disk".into())
        .spawn(move || run_jobs(queue));
    match started {
        // A racing first caller may have won; its thread serves, and this one's queue closes
        // (ending its thread at once).
        Ok(_) => Ok(JOBS.get_or_init(|| Mutex::new(jobs))),
        Err(source) => Err(OutputError::new(
            "starting the disk writer for",
            Path::new("capture files"),
        )(source)),
    }
}

/// One output stream's side of the writer.
pub(super) struct DiskWriter {
    jobs: JobQueue,
    stream: Arc<Stream>,
    free: Receiver<Vec<u8>>,
    allocated: usize,
    buffer_capacity: usize,
}

impl DiskWriter {
    pub(super) fn spawn(buffer_capacity: usize) -> Result<DiskWriter, OutputError> {
        let jobs = match writer_thread()?.lock() {
            Ok(jobs) => jobs.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        };
        let (give_back, free) = mpsc::channel::<Vec<u8>>();
        Ok(DiskWriter {
            jobs,
            stream: Arc::new(Stream {
                give_back,
                error: Mutex::new(None),
                failed: AtomicBool::new(false),
            }),
            free,
            allocated: 0,
            buffer_capacity,
        })
    }

    /// An empty buffer whose byte at index [`aligned_start`] is page-aligned. Waits for one to
    /// come back when all are in flight (the disk is the bottleneck).
    pub(super) fn take_buffer(&mut self) -> Result<Vec<u8>, OutputError> {
        let mut buffer = match self.free.try_recv() {
            Ok(buffer) => buffer,
            Err(_) if self.allocated < POOL_BUFFERS => {
                self.allocated += 1;
                Vec::with_capacity(self.buffer_capacity + DIRECT_ALIGN)
            }
            Err(_) => self.free.recv().map_err(|_| self.writer_gone())?,
        };
        buffer.clear();
        buffer.resize(aligned_start(&buffer), 0);
        Ok(buffer)
    }

    fn writer_gone(&self) -> OutputError {
        OutputError::new("writing", Path::new("capture files"))(io::Error::other(
            "the disk writer thread stopped",
        ))
    }

    fn send(&self, job: Job) -> Result<(), OutputError> {
        self.check()?;
        self.jobs
            .send((self.stream.clone(), job))
            .map_err(|_| self.writer_gone())
    }

    pub(super) fn write_chunk(
        &self,
        file: &Arc<FileHandles>,
        offset: u64,
        buffer: Vec<u8>,
        range: std::ops::Range<usize>,
    ) -> Result<(), OutputError> {
        self.send(Job::Chunk {
            file: file.clone(),
            offset,
            buffer,
            range,
        })
    }

    pub(super) fn write_tail(
        &self,
        file: &Arc<FileHandles>,
        offset: u64,
        bytes: &[u8],
    ) -> Result<(), OutputError> {
        self.send(Job::Tail {
            file: file.clone(),
            offset,
            bytes: bytes.to_vec(),
        })
    }

    pub(super) fn remove(&self, path: PathBuf) -> Result<(), OutputError> {
        self.send(Job::Remove(path))
    }

    /// The first error the writer met on this stream, if any (e.g. the disk is full).
    pub(super) fn check(&self) -> Result<(), OutputError> {
        match self.stream.error.lock() {
            Ok(mut slot) => slot.take().map_or(Ok(()), Err),
            Err(_) => Err(self.writer_gone()),
        }
    }

    /// Waits until everything sent so far is written (or skipped after a failure), and reports
    /// the first error not yet reported.
    pub(super) fn wait(&self) -> Result<(), OutputError> {
        let (done, wait) = mpsc::sync_channel(1);
        self.jobs
            .send((self.stream.clone(), Job::Barrier(done)))
            .map_err(|_| self.writer_gone())?;
        wait.recv().map_err(|_| self.writer_gone())?;
        self.check()
    }

    /// Whether a write of this stream ever failed (reported or not).
    pub(super) fn has_failed(&self) -> bool {
        self.stream.failed.load(Ordering::Acquire)
    }
}

impl Drop for DiskWriter {
    fn drop(&mut self) {
        // A stream dropped without `finish` (an error path) still leaves its files whole: its
        // jobs are done before the drop returns, as when each stream had its own thread.
        let (done, wait) = mpsc::sync_channel(1);
        if self
            .jobs
            .send((self.stream.clone(), Job::Barrier(done)))
            .is_ok()
        {
            let _ = wait.recv();
        }
    }
}

/// The index in `buffer` where page-aligned data starts (the buffer must not reallocate after;
/// an empty slice of a vector with capacity still points at its allocation).
pub(super) fn aligned_start(buffer: &[u8]) -> usize {
    let address = buffer.as_ptr() as usize;
    (DIRECT_ALIGN - address % DIRECT_ALIGN) % DIRECT_ALIGN
}

fn run_jobs(jobs: Receiver<(Arc<Stream>, Job)>) {
    for (stream, job) in jobs {
        let skip = stream.failed.load(Ordering::Acquire);
        let record = |result: Result<(), OutputError>| {
            if let Err(failure) = result {
                stream.failed.store(true, Ordering::Release);
                tracing::error!(error = %failure, "capture file write failed");
                if let Ok(mut slot) = stream.error.lock() {
                    slot.get_or_insert(failure);
                }
            }
        };
        match job {
            Job::Chunk { buffer, .. } if skip => {
                let _ = stream.give_back.send(buffer);
            }
            Job::Tail { .. } if skip => {}
            Job::Chunk {
                file,
                offset,
                buffer,
                range,
            } => {
                let bytes = &buffer[range];
                // O_DIRECT takes only page-aligned memory, length and offset; anything else
                // (a buffer that had to grow) goes through the page cache.
                let aligned = (bytes.as_ptr() as usize | bytes.len() | offset as usize)
                    .is_multiple_of(DIRECT_ALIGN);
                let target = match &file.direct {
                    Some(direct) if aligned => direct,
                    _ => &file.buffered,
                };
                record(
                    target
                        .write_all_at(bytes, offset)
                        .map_err(OutputError::new("writing", &file.path)),
                );
                // The stream may have stopped waiting for buffers; that is fine.
                let _ = stream.give_back.send(buffer);
            }
            Job::Tail {
                file,
                offset,
                bytes,
            } => {
                record(
                    file.buffered
                        .write_all_at(&bytes, offset)
                        .map_err(OutputError::new("writing", &file.path)),
                );
            }
            Job::Remove(path) => {
                record(
                    std::fs::remove_file(&path)
                        .map_err(OutputError::new("deleting the oldest file", &path)),
                );
            }
            Job::Barrier(done) => {
                let _ = done.send(());
            }
        }
    }
}
