//! Input files for the merge benchmark: pcapng files as capture-agent writes them (one
//! interface with `if_tsresol` 9, Enhanced Packet Blocks with `epb_flags`, statistics at the
//! end), whose timestamps interleave irregularly across files, so the merge changes input at
//! nearly every packet — the expensive case, as when every pod of a capture is busy at once.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// 2023-11-14 22:13:20 UTC.
const T0_NS: u64 = 1_700_000_000_000_000_000;
const WRITE_BUFFER: usize = 1 << 20;

/// The generated files of one scenario.
pub struct InputSet {
    pub files: Vec<PathBuf>,
    pub total_bytes: u64,
    pub packets: u64,
}

/// xorshift64: deterministic, so every run of the benchmark merges the same files.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

fn block(out: &mut Vec<u8>, block_type: u32, body: &[u8]) {
    let len = (body.len() + 12) as u32;
    out.extend(block_type.to_le_bytes());
    out.extend(len.to_le_bytes());
    out.extend(body);
    out.extend(len.to_le_bytes());
}

fn option(body: &mut Vec<u8>, code: u16, value: &[u8]) {
    body.extend(code.to_le_bytes());
    body.extend((value.len() as u16).to_le_bytes());
    body.extend(value);
    body.resize(body.len().next_multiple_of(4), 0);
}

fn file_header(interface: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut shb = Vec::new();
    shb.extend(0x1A2B_3C4Du32.to_le_bytes());
    shb.extend(1u16.to_le_bytes());
    shb.extend(0u16.to_le_bytes());
    shb.extend((-1i64).to_le_bytes());
    block(&mut out, 0x0A0D_0D0A, &shb);
    let mut idb = Vec::new();
    idb.extend(1u16.to_le_bytes());
    idb.extend(0u16.to_le_bytes());
    idb.extend(262_144u32.to_le_bytes());
    option(&mut idb, 2, interface.as_bytes());
    option(&mut idb, 9, &[9]);
    option(&mut idb, 0, &[]);
    block(&mut out, 1, &idb);
    out
}

/// An Ethernet/IPv4/UDP frame of `len` bytes whose payload varies with `counter`.
fn frame(len: usize, counter: u64) -> Vec<u8> {
    let mut frame = vec![0u8; len.max(42)];
    frame[..6].copy_from_slice(&[0x02, 0, 0, 0, 0, 1]);
    frame[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 2]);
    frame[12..14].copy_from_slice(&[0x08, 0x00]);
    frame[14] = 0x45;
    for (i, byte) in frame[42..].iter_mut().enumerate() {
        *byte = (counter as usize + i) as u8;
    }
    frame
}

/// Writes one file of about `bytes` bytes of `frame_len`-byte packets, starting at `first_ns`;
/// returns its size and packet count.
fn write_file(
    path: &Path,
    interface: &str,
    bytes: u64,
    frame_len: usize,
    first_ns: u64,
    mean_gap_ns: u64,
    rng: &mut Rng,
) -> Result<(u64, u64)> {
    let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut out = BufWriter::with_capacity(WRITE_BUFFER, file);
    let header = file_header(interface);
    out.write_all(&header)?;
    let mut written = header.len() as u64;
    let mut packets = 0u64;
    let mut ts = first_ns;
    let mut record = Vec::new();
    let padded = frame_len.next_multiple_of(4);
    let total = (28 + padded + 12 + 4) as u32;
    while written + u64::from(total) <= bytes {
        // Gaps from 1 ns to twice the mean: files overtake each other irregularly.
        ts += 1 + rng.below(2 * mean_gap_ns);
        record.clear();
        for word in [
            6,
            total,
            0,
            (ts >> 32) as u32,
            ts as u32,
            frame_len as u32,
            frame_len as u32,
        ] {
            record.extend(word.to_le_bytes());
        }
        record.extend(frame(frame_len, packets));
        record.resize(28 + padded, 0);
        // epb_flags: inbound, unicast to us; then the end of options.
        record.extend([2, 0, 4, 0, 0b101, 0, 0, 0, 0, 0, 0, 0]);
        record.extend(total.to_le_bytes());
        out.write_all(&record)?;
        written += u64::from(total);
        packets += 1;
    }
    let mut isb = Vec::new();
    isb.extend(0u32.to_le_bytes());
    isb.extend(((ts >> 32) as u32).to_le_bytes());
    isb.extend((ts as u32).to_le_bytes());
    option(&mut isb, 4, &packets.to_le_bytes());
    option(&mut isb, 5, &0u64.to_le_bytes());
    option(&mut isb, 0, &[]);
    let mut trailer = Vec::new();
    block(&mut trailer, 5, &isb);
    out.write_all(&trailer)?;
    written += trailer.len() as u64;
    out.flush()
        .with_context(|| format!("writing {}", path.display()))?;
    Ok((written, packets))
}

/// Generates `files` files of about `bytes_per_file` bytes each in `dir`.
pub fn generate(
    dir: &Path,
    files: usize,
    bytes_per_file: u64,
    frame_len: usize,
) -> Result<InputSet> {
    let mut set = InputSet {
        files: Vec::new(),
        total_bytes: 0,
        packets: 0,
    };
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    for i in 0..files {
        let path = dir.join(format!("veth{i}.pcapng"));
        // Every file covers the same time span, one packet per microsecond across all files.
        let mean_gap_ns = 1_000 * files as u64;
        let (bytes, packets) = write_file(
            &path,
            &format!("veth{i}"),
            bytes_per_file,
            frame_len,
            T0_NS + i as u64,
            mean_gap_ns,
            &mut rng,
        )?;
        set.total_bytes += bytes;
        set.packets += packets;
        set.files.push(path);
    }
    Ok(set)
}
