//! A reusable window over one input's bytes, so records are parsed where they were read.
//!
//! Each input owns one buffer, refilled with large reads; a record is read in place and stays
//! there until the merge has written it. The buffer only grows to hold a record bigger than
//! itself, and [`MAX_RECORD_LEN`] bounds that, so an input's memory is independent of its size.

use std::io::{self, Read};

/// The largest record accepted. Capture tools write at most 262144 bytes of frame (libpcap's
/// limit), a few protocols (D-Bus, USB) up to 16 MiB; a larger length is damage, not data.
pub(super) const MAX_RECORD_LEN: usize = 16 << 20;

pub(super) struct RecordBuffer {
    bytes: Vec<u8>,
    /// First unconsumed byte.
    start: usize,
    /// End of the bytes read so far.
    end: usize,
    /// File offset of `bytes[start]`, for error messages.
    offset: u64,
}

impl RecordBuffer {
    pub(super) fn new(capacity: usize) -> RecordBuffer {
        RecordBuffer {
            bytes: vec![0; capacity],
            start: 0,
            end: 0,
            offset: 0,
        }
    }

    /// The read but unconsumed bytes.
    #[inline]
    pub(super) fn available(&self) -> &[u8] {
        &self.bytes[self.start..self.end]
    }

    #[inline]
    pub(super) fn consume(&mut self, len: usize) {
        let len = len.min(self.end - self.start);
        self.start += len;
        self.offset += len as u64;
    }

    /// File offset of the first available byte.
    pub(super) fn offset(&self) -> u64 {
        self.offset
    }

    /// Bytes allocated, for the memory report.
    pub(super) fn capacity(&self) -> usize {
        self.bytes.len()
    }

    /// Forgets everything, for the next file of a chained input.
    pub(super) fn reset(&mut self) {
        self.start = 0;
        self.end = 0;
        self.offset = 0;
    }

    /// Makes at least `wanted` bytes available, reading as much as fits in each read; returns
    /// how many are available, fewer than `wanted` only at the end of the input.
    #[inline]
    pub(super) fn fill(&mut self, reader: &mut dyn Read, wanted: usize) -> io::Result<usize> {
        if self.end - self.start >= wanted {
            return Ok(self.end - self.start);
        }
        self.fill_slow(reader, wanted)
    }

    fn fill_slow(&mut self, reader: &mut dyn Read, wanted: usize) -> io::Result<usize> {
        // Move the partial record to the front (at most one record's bytes), so each read
        // gets the whole rest of the buffer.
        self.bytes.copy_within(self.start..self.end, 0);
        self.end -= self.start;
        self.start = 0;
        if wanted > self.bytes.len() {
            self.bytes.resize(wanted, 0);
        }
        while self.end < wanted {
            match reader.read(&mut self.bytes[self.end..]) {
                Ok(0) => break,
                Ok(read) => self.end += read,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(error),
            }
        }
        Ok(self.end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that hands out one byte per read, the worst case for refilling.
    struct Trickle<'a>(&'a [u8]);

    impl Read for Trickle<'_> {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            match (self.0.split_first(), out.first_mut()) {
                (Some((&byte, rest)), Some(slot)) => {
                    *slot = byte;
                    self.0 = rest;
                    Ok(1)
                }
                _ => Ok(0),
            }
        }
    }

    #[test]
    fn records_straddling_reads_are_assembled() {
        let data: Vec<u8> = (0..=255).collect();
        let mut reader = Trickle(&data);
        let mut buffer = RecordBuffer::new(16);
        assert_eq!(buffer.fill(&mut reader, 10).unwrap(), 10);
        buffer.consume(6);
        assert_eq!(buffer.offset(), 6);
        // Needs more than the buffer holds: it grows to the record, once.
        assert_eq!(buffer.fill(&mut reader, 40).unwrap(), 40);
        assert_eq!(&buffer.available()[..3], &[6, 7, 8]);
        assert_eq!(buffer.capacity(), 40);
    }

    #[test]
    fn the_end_of_input_leaves_fewer_bytes() {
        let data = [1u8, 2, 3];
        let mut reader = &data[..];
        let mut buffer = RecordBuffer::new(8);
        assert_eq!(buffer.fill(&mut reader, 8).unwrap(), 3);
        buffer.consume(3);
        assert_eq!(buffer.fill(&mut reader, 1).unwrap(), 0);
    }
}
