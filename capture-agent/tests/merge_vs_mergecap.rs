//! The streaming merge judged by Wireshark: inputs of every kind the merge reads (pcapng in
//! both byte orders, several sections, micro-, milli-, nano- and binary-fraction resolutions,
//! obsolete Packet Blocks, unknown blocks, classic pcap in all four magics, a truncated last
//! record, empty files) are merged by podcap and by `mergecap`, and the results must hold the
//! same packets at the same times. tshark must read podcap's file without a warning and show
//! every packet's interface name and description; capinfos must count the same packets.
//!
//! Where the two tools legitimately differ, the test says so:
//! - Equal timestamps: podcap writes them in input order; mergecap 4.0 writes the last input
//!   first. Packets are compared as the same multiset at each timestamp.
//! - A truncated last record: mergecap stops the whole merge with an error there; podcap stops
//!   that input only and reports it. mergecap is given the file cut at its last whole record.
//! - A rotated series: mergecap makes one interface per file; podcap one per pod interface.
//!
//! Also here: memory that does not grow with the input (in a child process, so other tests do
//! not disturb its peak RSS), and a property test on random inputs. Needs mergecap, tshark and
//! capinfos (Debian packages wireshark-common and tshark); no root.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Cursor, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use capture_agent::merge::{merge, ChainedInput, MergeInput, MergeReport};
use capture_spec::OutputFormat;
use pcap_file::pcap::{PcapHeader, PcapReader, PcapWriter};
use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketOption;
use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionOption;
use pcap_file::pcapng::blocks::interface_statistics::InterfaceStatisticsOption;
use pcap_file::pcapng::{Block, PcapNgReader};
use pcap_file::{DataLink, Endianness, TsResolution};
use proptest::prelude::*;

/// 2023-11-14 22:13:20 UTC: a whole second, so binary fractions of it are exact.
const T0_NS: u64 = 1_700_000_000_000_000_000;

// ---------------------------------------------------------------------------------------------
// Building inputs
// ---------------------------------------------------------------------------------------------

/// How an interface counts time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resolution {
    Nanoseconds,
    /// `if_tsresol` 6 given explicitly.
    Microseconds,
    /// No `if_tsresol`: pcapng's default, microseconds.
    DefaultMicroseconds,
    Milliseconds,
    /// `if_tsresol` 0x94: 2^-20 s.
    BinaryMicro,
}

impl Resolution {
    fn tsresol(self) -> Option<u8> {
        match self {
            Resolution::Nanoseconds => Some(9),
            Resolution::Microseconds => Some(6),
            Resolution::DefaultMicroseconds => None,
            Resolution::Milliseconds => Some(3),
            Resolution::BinaryMicro => Some(0x80 | 20),
        }
    }

    /// The step timestamps of this interface are multiples of. Binary fractions use multiples
    /// of 2048 units (1953125 ns), which convert to nanoseconds exactly: mergecap rounds other
    /// values down when it writes them back in the file's units, and would disagree by a tick.
    fn step_ns(self) -> u64 {
        match self {
            Resolution::Nanoseconds => 1,
            Resolution::Microseconds | Resolution::DefaultMicroseconds => 1_000,
            Resolution::Milliseconds => 1_000_000,
            Resolution::BinaryMicro => 1_953_125,
        }
    }

    fn raw(self, ns: u64) -> u64 {
        match self {
            Resolution::BinaryMicro => ((u128::from(ns) << 20) / 1_000_000_000) as u64,
            _ => ns / self.step_ns(),
        }
    }
}

/// A pcapng file built block by block, in either byte order.
struct Pcapng {
    big_endian: bool,
    bytes: Vec<u8>,
}

impl Pcapng {
    fn new(big_endian: bool) -> Pcapng {
        let mut file = Pcapng {
            big_endian,
            bytes: Vec::new(),
        };
        file.section(big_endian);
        file
    }

    fn u16(&self, v: u16) -> [u8; 2] {
        if self.big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    }

    fn u32(&self, v: u32) -> [u8; 4] {
        if self.big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    }

    fn u64(&self, v: u64) -> [u8; 8] {
        if self.big_endian {
            v.to_be_bytes()
        } else {
            v.to_le_bytes()
        }
    }

    fn timestamp(&self, raw: u64) -> Vec<u8> {
        [self.u32((raw >> 32) as u32), self.u32(raw as u32)].concat()
    }

    fn block(&mut self, block_type: u32, mut body: Vec<u8>) {
        body.resize(body.len().next_multiple_of(4), 0);
        let len = self.u32(body.len() as u32 + 12);
        let block_type = self.u32(block_type);
        self.bytes.extend(block_type);
        self.bytes.extend(len);
        self.bytes.extend(body);
        self.bytes.extend(len);
    }

    fn options(&self, body: &mut Vec<u8>, options: &[(u16, Vec<u8>)]) {
        for (code, value) in options {
            body.extend(self.u16(*code));
            body.extend(self.u16(value.len() as u16));
            body.extend(value);
            body.resize(body.len().next_multiple_of(4), 0);
        }
        if !options.is_empty() {
            body.extend([0; 4]);
        }
    }

    /// Starts a new section, possibly in the other byte order.
    fn section(&mut self, big_endian: bool) {
        self.big_endian = big_endian;
        let mut body = Vec::new();
        body.extend(self.u32(0x1A2B_3C4D));
        body.extend(self.u16(1));
        body.extend(self.u16(0));
        body.extend(self.u64(u64::MAX));
        self.block(0x0A0D_0D0A, body);
    }

    fn interface(&mut self, spec: &InterfaceSpec) {
        let mut body = Vec::new();
        body.extend(self.u16(1));
        body.extend([0; 2]);
        body.extend(self.u32(262_144));
        let mut options = vec![(2, spec.name.as_bytes().to_vec())];
        if let Some(description) = &spec.description {
            options.push((3, description.as_bytes().to_vec()));
        }
        if let Some(tsresol) = spec.resolution.tsresol() {
            options.push((9, vec![tsresol]));
        }
        if let Some(filter) = &spec.filter {
            options.push((11, [&[0u8][..], filter.as_bytes()].concat()));
        }
        self.options(&mut body, &options);
        self.block(1, body);
    }

    fn enhanced_packet(
        &mut self,
        interface: u32,
        raw: u64,
        data: &[u8],
        original_len: u32,
        flags: Option<u32>,
    ) {
        let mut body = Vec::new();
        body.extend(self.u32(interface));
        body.extend(self.timestamp(raw));
        body.extend(self.u32(data.len() as u32));
        body.extend(self.u32(original_len));
        body.extend(data);
        body.resize(body.len().next_multiple_of(4), 0);
        let options: Vec<(u16, Vec<u8>)> = flags
            .map(|f| (2, self.u32(f).to_vec()))
            .into_iter()
            .collect();
        self.options(&mut body, &options);
        self.block(6, body);
    }

    /// The obsolete Packet Block (type 2) some old writers still produce.
    fn obsolete_packet(&mut self, interface: u16, raw: u64, data: &[u8], original_len: u32) {
        let mut body = Vec::new();
        body.extend(self.u16(interface));
        body.extend(self.u16(0));
        body.extend(self.timestamp(raw));
        body.extend(self.u32(data.len() as u32));
        body.extend(self.u32(original_len));
        body.extend(data);
        self.block(2, body);
    }

    /// A block type reserved for local use: every reader must skip it.
    fn local_use_block(&mut self) {
        self.block(0x8000_0001, vec![0xee; 12]);
    }

    fn statistics(&mut self, interface: u32, raw_at: u64, received: u64, dropped: u64) {
        let mut body = Vec::new();
        body.extend(self.u32(interface));
        body.extend(self.timestamp(raw_at));
        let options = [
            (4, self.u64(received).to_vec()),
            (5, self.u64(dropped).to_vec()),
        ];
        self.options(&mut body, &options);
        self.block(5, body);
    }
}

#[derive(Debug, Clone)]
struct InterfaceSpec {
    name: String,
    description: Option<String>,
    resolution: Resolution,
    filter: Option<String>,
}

fn interface(name: &str, resolution: Resolution) -> InterfaceSpec {
    InterfaceSpec {
        name: name.into(),
        description: None,
        resolution,
        filter: None,
    }
}

/// A packet put into an input, and what the merged file must say about it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Sent {
    ts_ns: u64,
    data: Vec<u8>,
    original_len: u32,
    /// `epb_flags`, which the merge must carry over.
    flags: Option<u32>,
    input: usize,
    /// The interface's name and description as the merged file must show them ("" for none).
    interface: (String, String),
}

/// An Ethernet frame that says which input sent it and where in that input it was.
fn frame(input: usize, position: usize, len: usize) -> Vec<u8> {
    let mut data = vec![0xff; 6];
    data.extend([0x02, input as u8]);
    data.extend((position as u32).to_be_bytes());
    data.extend([0x88, 0xb5]);
    data.extend((0..len.saturating_sub(14)).map(|i| (i * 7 + position) as u8));
    data
}

/// (input, position) from a frame built by [`frame`].
fn identity(data: &[u8]) -> (usize, usize) {
    let position = u32::from_be_bytes([data[8], data[9], data[10], data[11]]);
    (usize::from(data[7]), position as usize)
}

/// A small deterministic generator, so a failing run can be repeated exactly.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// `count` packets over a 3 ms window, each on a random one of `resolutions`, as
/// (interface index, timestamp) in time order. Timestamps fall on whole microseconds more
/// often than not, so inputs share many of them (ties).
fn schedule(rng: &mut Rng, resolutions: &[Resolution], count: usize) -> Vec<(usize, u64)> {
    let mut packets: Vec<(usize, u64)> = (0..count)
        .map(|_| {
            let interface = rng.below(resolutions.len() as u64) as usize;
            let sub_microsecond = if rng.below(4) == 0 {
                rng.below(1_000)
            } else {
                0
            };
            let ns = rng.below(3_000) * 1_000 + sub_microsecond;
            let step = resolutions[interface].step_ns();
            (interface, T0_NS + ns / step * step)
        })
        .collect();
    packets.sort_by_key(|&(_, ts)| ts);
    packets
}

/// One input file: what podcap reads, what mergecap reads, and what it holds.
struct InputCase {
    name: String,
    path: PathBuf,
    /// The file mergecap gets: the same, or for a truncated file, the file cut at its last
    /// whole record (mergecap would abort the whole merge at the cut).
    reference: PathBuf,
    description: Option<String>,
    sent: Vec<Sent>,
    truncated: bool,
}

/// A pcapng input with `interfaces`, `count` packets and optional statistics at the end.
fn pcapng_input(
    rng: &mut Rng,
    input: usize,
    interfaces: &[InterfaceSpec],
    count: usize,
    big_endian: bool,
    override_description: Option<&str>,
) -> (Pcapng, Vec<Sent>) {
    let mut file = Pcapng::new(big_endian);
    for spec in interfaces {
        file.interface(spec);
    }
    let resolutions: Vec<Resolution> = interfaces.iter().map(|i| i.resolution).collect();
    let mut sent = Vec::new();
    for (position, (index, ts_ns)) in schedule(rng, &resolutions, count).into_iter().enumerate() {
        let data = frame(input, position, 60 + rng.below(200) as usize);
        // Every third packet was cut by a snap length: the original was longer.
        let original_len = data.len() as u32 + if position % 3 == 0 { 1000 } else { 0 };
        let spec = &interfaces[index];
        let flags = Some(1 + (position as u32 % 2));
        file.enhanced_packet(
            index as u32,
            spec.resolution.raw(ts_ns),
            &data,
            original_len,
            flags,
        );
        let description = override_description
            .map(str::to_string)
            .or_else(|| spec.description.clone())
            .unwrap_or_default();
        sent.push(Sent {
            ts_ns,
            data,
            original_len,
            flags,
            input,
            interface: (spec.name.clone(), description),
        });
    }
    (file, sent)
}

/// A classic pcap input written with pcap-file (an independent writer); `name` is the input's
/// name, which the merge gives its interface.
fn pcap_input(
    rng: &mut Rng,
    input: usize,
    name: &str,
    count: usize,
    resolution: TsResolution,
    endianness: Endianness,
) -> (Vec<u8>, Vec<Sent>) {
    let header = PcapHeader {
        version_major: 2,
        version_minor: 4,
        ts_correction: 0,
        ts_accuracy: 0,
        snaplen: 65_535,
        datalink: DataLink::ETHERNET,
        ts_resolution: resolution,
        endianness,
    };
    let mut writer = PcapWriter::with_header(Vec::new(), header).unwrap();
    let step = if resolution == TsResolution::NanoSecond {
        Resolution::Nanoseconds
    } else {
        Resolution::Microseconds
    };
    let mut sent = Vec::new();
    for (position, (_, ts_ns)) in schedule(rng, &[step], count).into_iter().enumerate() {
        let data = frame(input, position, 60 + rng.below(1400) as usize);
        let packet =
            pcap_file::pcap::PcapPacket::new(Duration::from_nanos(ts_ns), data.len() as u32, &data);
        writer.write_packet(&packet).unwrap();
        sent.push(Sent {
            ts_ns,
            original_len: data.len() as u32,
            data,
            flags: None,
            input,
            interface: (name.to_string(), String::new()),
        });
    }
    (writer.into_writer(), sent)
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    fs::write(&path, bytes).unwrap();
    path
}

fn case(name: &str, path: PathBuf, sent: Vec<Sent>) -> InputCase {
    InputCase {
        name: name.into(),
        reference: path.clone(),
        path,
        description: None,
        sent,
        truncated: false,
    }
}

/// Eight inputs covering every variant; see the module documentation.
fn varied_inputs(dir: &Path) -> Vec<InputCase> {
    let mut rng = Rng(0x5eed_cafe_f00d_d00d);
    let mut cases = Vec::new();

    // 0: little-endian, two interfaces (ns with a filter and a description, and us).
    let web1 = [
        InterfaceSpec {
            filter: Some("tcp port 80".into()),
            description: Some("from the file".into()),
            ..interface("veth-web1", Resolution::Nanoseconds)
        },
        interface("veth-web1-b", Resolution::Microseconds),
    ];
    let override_web1 = "shop/web-1 on node-a";
    let (mut file, sent) = pcapng_input(&mut rng, 0, &web1, 400, false, Some(override_web1));
    // Running totals, as the agent writes them: the last one is the capture's.
    file.statistics(0, Resolution::Nanoseconds.raw(T0_NS + 4_000_000), 300, 4);
    file.statistics(0, Resolution::Nanoseconds.raw(T0_NS + 5_000_000), 420, 9);
    let mut web1_case = case("web-1", write(dir, "web-1.pcapng", &file.bytes), sent);
    web1_case.description = Some(override_web1.into());
    cases.push(web1_case);

    // 1: big-endian, three interfaces: ns, the default (us), binary fractions.
    let web2 = [
        interface("veth-web2", Resolution::Nanoseconds),
        interface("veth-web2-default", Resolution::DefaultMicroseconds),
        interface("veth-web2-binary", Resolution::BinaryMicro),
    ];
    let override_web2 = "shop/web-2 on node-b";
    let (file, sent) = pcapng_input(&mut rng, 1, &web2, 400, true, Some(override_web2));
    let mut web2_case = case("web-2", write(dir, "web-2.pcapng", &file.bytes), sent);
    web2_case.description = Some(override_web2.into());
    cases.push(web2_case);

    // 2 and 3: classic pcap, microseconds little-endian and nanoseconds big-endian.
    let (bytes, sent) = pcap_input(
        &mut rng,
        2,
        "db-usec",
        300,
        TsResolution::MicroSecond,
        Endianness::Little,
    );
    cases.push(case("db-usec", write(dir, "db.pcap", &bytes), sent));
    let (bytes, sent) = pcap_input(
        &mut rng,
        3,
        "cache-nsec",
        300,
        TsResolution::NanoSecond,
        Endianness::Big,
    );
    cases.push(case("cache-nsec", write(dir, "cache.pcap", &bytes), sent));

    // 4: two sections in opposite byte orders, milliseconds, an obsolete Packet Block and a
    // block type no reader knows.
    let first = [InterfaceSpec {
        description: Some("section one".into()),
        ..interface("veth-s1", Resolution::Milliseconds)
    }];
    let (mut file, mut sent) = pcapng_input(&mut rng, 4, &first, 50, false, None);
    file.local_use_block();
    file.section(true);
    let second = interface("veth-s2", Resolution::Microseconds);
    file.interface(&second);
    // After the first section's 3 ms, so the file stays in time order. Whole milliseconds:
    // Wireshark 4.0 takes packets of a second section for the first section's interfaces
    // (tshark names them after it, and mergecap writes their times in its units, here
    // milliseconds); podcap maps them per section, as pcapng says.
    for (offset, ts_ns) in [(0usize, T0_NS + 3_000_000), (1, T0_NS + 4_000_000)] {
        let position = sent.len();
        let data = frame(4, position, 80 + offset);
        file.obsolete_packet(0, second.resolution.raw(ts_ns), &data, data.len() as u32);
        sent.push(Sent {
            ts_ns,
            original_len: data.len() as u32,
            data,
            flags: None,
            input: 4,
            interface: (second.name.clone(), String::new()),
        });
    }
    cases.push(case(
        "sections",
        write(dir, "sections.pcapng", &file.bytes),
        sent,
    ));

    // 5: a killed capture: its last record is cut short.
    let killed = [interface("veth-killed", Resolution::Nanoseconds)];
    let (file, mut sent) = pcapng_input(&mut rng, 5, &killed, 200, false, None);
    let last_len = {
        let last = sent.last().unwrap();
        28 + last.data.len().div_ceil(4) * 4 + 12 + 4
    };
    let whole = &file.bytes[..file.bytes.len() - last_len];
    let cut = &file.bytes[..file.bytes.len() - last_len / 2];
    sent.pop();
    let mut killed_case = case("killed", write(dir, "killed.pcapng", cut), sent);
    killed_case.reference = write(dir, "killed-whole-records.pcapng", whole);
    killed_case.truncated = true;
    cases.push(killed_case);

    // 6: a file created but never written (zero bytes); 7: a capture that saw nothing.
    cases.push(case(
        "never-written",
        write(dir, "zero.pcapng", &[]),
        Vec::new(),
    ));
    let mut idle = Pcapng::new(false);
    idle.interface(&interface("veth-idle", Resolution::Nanoseconds));
    idle.statistics(0, T0_NS, 42, 2);
    cases.push(case(
        "idle",
        write(dir, "idle.pcapng", &idle.bytes),
        Vec::new(),
    ));
    cases
}

// ---------------------------------------------------------------------------------------------
// Running the two tools and reading their files
// ---------------------------------------------------------------------------------------------

fn merge_cases(cases: &[InputCase], format: OutputFormat, out: &Path) -> MergeReport {
    let inputs = cases
        .iter()
        .map(|case| {
            let input = MergeInput::new(case.name.clone(), File::open(&case.path).unwrap());
            match &case.description {
                Some(description) => input.with_description(description.clone()),
                None => input,
            }
        })
        .collect();
    merge_files(inputs, format, out)
}

fn merge_files(inputs: Vec<MergeInput>, format: OutputFormat, out: &Path) -> MergeReport {
    let mut file = File::create(out).unwrap();
    merge(inputs, format, &mut file).unwrap_or_else(|e| panic!("merge failed: {e}"))
}

fn mergecap(files: &[&Path], file_type: &str, out: &Path) {
    let output = Command::new("mergecap")
        .arg("-w")
        .arg(out)
        .args(["-F", file_type])
        .args(files)
        .output()
        .expect("starting mergecap (Debian package wireshark-common)");
    assert!(
        output.status.success(),
        "mergecap failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

/// tshark's stderr without the notice it prints for every run as root.
fn tshark_complaints(stderr: &[u8]) -> String {
    String::from_utf8_lossy(stderr)
        .lines()
        .filter(|line| !line.contains("Running as user \"root\""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `tshark -r FILE` with `args`: must exit 0 with nothing to complain about; one Vec of
/// tab-separated fields per output line.
fn tshark(file: &Path, args: &[&str]) -> Vec<Vec<String>> {
    let output = Command::new("tshark")
        .args(["-n", "-r"])
        .arg(file)
        .args(args)
        .env("LC_ALL", "C")
        .output()
        .expect("starting tshark");
    let complaints = tshark_complaints(&output.stderr);
    assert!(
        output.status.success() && complaints.trim().is_empty(),
        "tshark -r {} {args:?} failed or warned ({}):\n{complaints}",
        file.display(),
        output.status
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| line.split('\t').map(str::to_string).collect())
        .collect()
}

fn tshark_fields(file: &Path, fields: &[&str]) -> Vec<Vec<String>> {
    let mut args = vec!["-T", "fields", "-E", "separator=\t", "-E", "occurrence=f"];
    for field in fields {
        args.extend(["-e", field]);
    }
    tshark(file, &args)
}

/// `frame.time_epoch` as nanoseconds, parsed from the decimal text without floating point.
fn parse_epoch_ns(text: &str) -> u64 {
    let (seconds, fraction) = text.split_once('.').unwrap_or((text, ""));
    let fraction = format!("{fraction:0<9}");
    seconds.parse::<u64>().unwrap() * 1_000_000_000 + fraction[..9].parse::<u64>().unwrap()
}

/// One `Name: value` line of `capinfos FILE`.
fn capinfos(file: &Path, name: &str) -> String {
    let output = Command::new("capinfos")
        .arg(file)
        .env("LC_ALL", "C")
        .output()
        .expect("starting capinfos");
    assert!(
        output.status.success(),
        "capinfos {}: {}",
        file.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .find_map(|line| {
            line.trim_start()
                .strip_prefix(name)?
                .trim_start()
                .strip_prefix(':')
                .map(|v| v.trim().to_string())
        })
        .unwrap_or_else(|| panic!("capinfos {} has no {name:?}", file.display()))
}

/// A packet of a merged file.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Got {
    ts_ns: u64,
    data: Vec<u8>,
    original_len: u32,
    interface: u32,
    flags: Option<u32>,
}

/// An interface of a merged file ("" for an absent name or description).
#[derive(Debug, Clone, Default)]
struct MergedInterface {
    name: String,
    description: String,
    /// The raw `if_tsresol`.
    tsresol: Option<u8>,
    filter: Option<Vec<u8>>,
}

#[derive(Debug, Default)]
struct MergedFile {
    packets: Vec<Got>,
    interfaces: Vec<MergedInterface>,
    /// (interface, isb_ifrecv, isb_ifdrop) per statistics block.
    statistics: Vec<(u32, Option<u64>, Option<u64>)>,
    pcap_nanoseconds: bool,
}

/// Nanoseconds from a raw pcapng timestamp in units of `if_tsresol`, binary fractions too.
fn raw_to_ns(raw: u64, tsresol: Option<u8>) -> u64 {
    match tsresol.unwrap_or(6) {
        r if r & 0x80 != 0 => ((u128::from(raw) * 1_000_000_000) >> (r & 0x7f)) as u64,
        r if r <= 9 => raw * 10u64.pow(u32::from(9 - r)),
        r => raw / 10u64.pow(u32::from(r - 9)),
    }
}

/// Reads a merged file with pcap-file (not with podcap's reader: an independent judge).
fn read_merged(bytes: &[u8]) -> MergedFile {
    let mut merged = MergedFile::default();
    if bytes.starts_with(&[0x0a, 0x0d, 0x0d, 0x0a]) {
        let mut reader = PcapNgReader::new(bytes).unwrap();
        while let Some(block) = reader.next_block() {
            match block.unwrap() {
                Block::InterfaceDescription(idb) => {
                    let mut interface = MergedInterface::default();
                    for option in &idb.options {
                        match option {
                            InterfaceDescriptionOption::IfName(name) => {
                                interface.name = name.to_string()
                            }
                            InterfaceDescriptionOption::IfDescription(d) => {
                                interface.description = d.to_string()
                            }
                            InterfaceDescriptionOption::IfTsResol(r) => {
                                interface.tsresol = Some(*r)
                            }
                            InterfaceDescriptionOption::IfFilter(f) => {
                                interface.filter = Some(f.to_vec())
                            }
                            _ => {}
                        }
                    }
                    merged.interfaces.push(interface);
                }
                Block::EnhancedPacket(epb) => {
                    let tsresol = merged.interfaces[epb.interface_id as usize].tsresol;
                    merged.packets.push(Got {
                        ts_ns: raw_to_ns(epb.timestamp.as_nanos() as u64, tsresol),
                        data: epb.data.to_vec(),
                        original_len: epb.original_len,
                        interface: epb.interface_id,
                        flags: epb.options.iter().find_map(|o| match o {
                            EnhancedPacketOption::Flags(f) => Some(*f),
                            _ => None,
                        }),
                    });
                }
                Block::InterfaceStatistics(isb) => {
                    let mut received = None;
                    let mut dropped = None;
                    for option in &isb.options {
                        match option {
                            InterfaceStatisticsOption::IsbIfRecv(n) => received = Some(*n),
                            InterfaceStatisticsOption::IsbIfDrop(n) => dropped = Some(*n),
                            _ => {}
                        }
                    }
                    merged
                        .statistics
                        .push((isb.interface_id, received, dropped));
                }
                _ => {}
            }
        }
    } else {
        let mut reader = PcapReader::new(bytes).unwrap();
        merged.pcap_nanoseconds = reader.header().ts_resolution == TsResolution::NanoSecond;
        while let Some(packet) = reader.next_packet() {
            let packet = packet.unwrap();
            merged.packets.push(Got {
                ts_ns: packet.timestamp.as_nanos() as u64,
                data: packet.data.to_vec(),
                original_len: packet.orig_len,
                interface: 0,
                flags: None,
            });
        }
    }
    merged
}

fn read_merged_file(path: &Path) -> MergedFile {
    read_merged(&fs::read(path).unwrap())
}

/// Both files hold the same timestamps in the same order, and at each timestamp the same
/// packets (original length and bytes); the order among equal timestamps may differ.
/// Returns how many timestamps several packets share.
fn assert_same_packets_per_timestamp(ours: &[Got], theirs: &[Got]) -> usize {
    assert_eq!(ours.len(), theirs.len(), "packets: podcap vs mergecap");
    if let Some(at) = ours
        .iter()
        .zip(theirs)
        .position(|(a, b)| a.ts_ns != b.ts_ns)
    {
        let around = |packets: &[Got]| {
            packets[at.saturating_sub(2)..(at + 3).min(packets.len())]
                .iter()
                .map(|p| format!("{} {:?}", p.ts_ns, identity(&p.data)))
                .collect::<Vec<_>>()
        };
        panic!(
            "timestamps differ from packet #{at} on:\n  podcap:   {:?}\n  mergecap: {:?}",
            around(ours),
            around(theirs)
        );
    }
    let group = |packets: &[Got]| {
        let mut groups: BTreeMap<u64, Vec<(u32, Vec<u8>)>> = BTreeMap::new();
        for p in packets {
            groups
                .entry(p.ts_ns)
                .or_default()
                .push((p.original_len, p.data.clone()));
        }
        groups.values_mut().for_each(|g| g.sort());
        groups
    };
    let (ours, theirs) = (group(ours), group(theirs));
    for (ts, packets) in &ours {
        assert_eq!(
            Some(packets),
            theirs.get(ts),
            "packets at {ts} ns: podcap vs mergecap"
        );
    }
    ours.values().filter(|g| g.len() > 1).count()
}

/// How mergecap ordered packets of equal timestamps coming from different inputs:
/// (ties in input order, ties in reverse input order).
fn tie_orders(packets: &[Got]) -> (usize, usize) {
    let mut forward = 0;
    let mut backward = 0;
    for pair in packets.windows(2) {
        let (a, b) = (identity(&pair[0].data).0, identity(&pair[1].data).0);
        if pair[0].ts_ns == pair[1].ts_ns && a != b {
            if a < b {
                forward += 1;
            } else {
                backward += 1;
            }
        }
    }
    (forward, backward)
}

fn scratch() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("podcap-merge-test-")
        .tempdir()
        .unwrap()
}

// ---------------------------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------------------------

#[test]
fn pcapng_merge_matches_mergecap() {
    let dir = scratch();
    let cases = varied_inputs(dir.path());
    let ours = dir.path().join("podcap.pcapng");
    let theirs = dir.path().join("mergecap.pcapng");
    let report = merge_cases(&cases, OutputFormat::Pcapng, &ours);
    let references: Vec<&Path> = cases.iter().map(|c| c.reference.as_path()).collect();
    mergecap(&references, "pcapng", &theirs);

    // Expected: every packet sent, earliest first, equal times in input order.
    let mut expected: Vec<&Sent> = cases.iter().flat_map(|c| &c.sent).collect();
    expected.sort_by_key(|s| (s.ts_ns, s.input, identity(&s.data).1));
    assert_eq!(report.packets, expected.len() as u64);
    assert_eq!(report.truncated_inputs, ["killed"]);
    assert_eq!(
        report.interfaces,
        2 + 3 + 1 + 1 + 2 + 1 + 1,
        "one per input interface"
    );
    assert_eq!(report.bytes_written, fs::metadata(&ours).unwrap().len());

    let merged = read_merged_file(&ours);
    let got: Vec<(u64, u32, &[u8])> = merged
        .packets
        .iter()
        .map(|p| (p.ts_ns, p.original_len, &p.data[..]))
        .collect();
    let want: Vec<(u64, u32, &[u8])> = expected
        .iter()
        .map(|s| (s.ts_ns, s.original_len, &s.data[..]))
        .collect();
    let first_difference = got.iter().zip(&want).position(|(g, w)| g != w);
    assert!(
        got.len() == want.len() && first_difference.is_none(),
        "podcap's merge is not every input packet in (time, input, position) order: {} packets, \
         {} expected, first difference at {first_difference:?}",
        got.len(),
        want.len()
    );
    assert!(
        merged.interfaces.iter().all(|i| i.tsresol == Some(9)),
        "every interface in nanoseconds"
    );
    for (packet, sent) in merged.packets.iter().zip(&expected) {
        assert_eq!(
            packet.flags,
            sent.flags,
            "epb_flags of {:?}",
            identity(&sent.data)
        );
    }
    let web1 = &merged.interfaces[0];
    assert_eq!(
        web1.filter.as_deref(),
        Some(&b"\0tcp port 80"[..]),
        "if_filter kept"
    );
    // Statistics: web-1's last running total, and the idle capture's counters.
    let idle_interface = merged
        .interfaces
        .iter()
        .position(|i| i.name == "veth-idle")
        .unwrap() as u32;
    let mut statistics = merged.statistics.clone();
    statistics.sort();
    assert_eq!(
        statistics,
        [(0, Some(420), Some(9)), (idle_interface, Some(42), Some(2))]
    );

    // mergecap agrees on the packets and the times; only the order of ties differs.
    let reference = read_merged_file(&theirs);
    let shared = assert_same_packets_per_timestamp(&merged.packets, &reference.packets);
    let (ours_forward, ours_backward) = tie_orders(&merged.packets);
    let (theirs_forward, theirs_backward) = tie_orders(&reference.packets);
    assert_eq!(ours_backward, 0, "podcap writes equal times in input order");
    eprintln!(
        "{} packets; {shared} timestamps shared by several packets; adjacent ties across inputs: \
         podcap {ours_forward} in input order, mergecap {theirs_forward} in input order and \
         {theirs_backward} in reverse",
        report.packets
    );
    assert!(shared > 50, "the inputs must exercise ties (only {shared})");

    // Wireshark's view: reads cleanly, same count, names and descriptions per packet, and
    // the same nanosecond timestamps.
    assert_eq!(tshark(&ours, &[]).len() as u64, report.packets);
    assert_eq!(
        capinfos(&ours, "Number of packets"),
        report.packets.to_string()
    );
    assert_eq!(
        capinfos(&theirs, "Number of packets"),
        report.packets.to_string()
    );
    let rows = tshark_fields(
        &ours,
        &[
            "frame.time_epoch",
            "frame.interface_name",
            "frame.interface_description",
        ],
    );
    assert_eq!(rows.len(), expected.len());
    for (row, sent) in rows.iter().zip(&expected) {
        assert_eq!(
            parse_epoch_ns(&row[0]),
            sent.ts_ns,
            "tshark's time of {:?}",
            identity(&sent.data)
        );
        let shown = (
            row.get(1).cloned().unwrap_or_default(),
            row.get(2).cloned().unwrap_or_default(),
        );
        assert_eq!(
            shown,
            sent.interface,
            "interface of {:?}",
            identity(&sent.data)
        );
    }
}

#[test]
fn pcap_merge_matches_mergecap_in_nanoseconds() {
    let dir = scratch();
    let mut rng = Rng(0xfeed_beef_1234_5678);
    let (usec, usec_sent) = pcap_input(
        &mut rng,
        0,
        "usec",
        200,
        TsResolution::MicroSecond,
        Endianness::Big,
    );
    let (nsec, nsec_sent) = pcap_input(
        &mut rng,
        1,
        "nsec",
        200,
        TsResolution::NanoSecond,
        Endianness::Little,
    );
    let interfaces = [
        interface("a", Resolution::Nanoseconds),
        interface("b", Resolution::Microseconds),
    ];
    let (ng, ng_sent) = pcapng_input(&mut rng, 2, &interfaces, 200, true, None);
    let cases = vec![
        case("usec", write(dir.path(), "usec.pcap", &usec), usec_sent),
        case("nsec", write(dir.path(), "nsec.pcap", &nsec), nsec_sent),
        case("ng", write(dir.path(), "ng.pcapng", &ng.bytes), ng_sent),
    ];
    let ours = dir.path().join("podcap.pcap");
    let theirs = dir.path().join("mergecap.pcap");
    let report = merge_cases(&cases, OutputFormat::Pcap, &ours);
    let references: Vec<&Path> = cases.iter().map(|c| c.path.as_path()).collect();
    mergecap(&references, "nsecpcap", &theirs);

    let merged = read_merged_file(&ours);
    assert!(merged.pcap_nanoseconds, "nanosecond magic");
    assert_eq!(report.packets, 600);
    assert_same_packets_per_timestamp(&merged.packets, &read_merged_file(&theirs).packets);
    assert_eq!(
        capinfos(&ours, "File timestamp precision"),
        "nanoseconds (9)"
    );
    assert_eq!(capinfos(&ours, "Number of packets"), "600");
    let shown: Vec<u64> = tshark_fields(&ours, &["frame.time_epoch"])
        .iter()
        .map(|row| parse_epoch_ns(&row[0]))
        .collect();
    let times: Vec<u64> = merged.packets.iter().map(|p| p.ts_ns).collect();
    assert_eq!(shown, times, "tshark shows every nanosecond");
    assert!(
        times.iter().any(|t| t % 1_000 != 0),
        "sub-microsecond times must be exercised"
    );
}

#[test]
fn pcap_output_refuses_mixed_link_types() {
    let mut ethernet = Pcapng::new(false);
    ethernet.interface(&interface("eth", Resolution::Nanoseconds));
    // A classic pcap of raw IP (link type 101).
    let header = PcapHeader {
        datalink: DataLink::RAW,
        ..PcapHeader::default()
    };
    let raw_ip_bytes = PcapWriter::with_header(Vec::new(), header)
        .unwrap()
        .into_writer();
    let inputs = vec![
        MergeInput::new("pod-eth", Cursor::new(ethernet.bytes)),
        MergeInput::new("tunnel", Cursor::new(raw_ip_bytes)),
    ];
    let mut out = Vec::new();
    let error = merge(inputs, OutputFormat::Pcap, &mut out)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("tunnel has link type 101 and pod-eth has 1"),
        "{error}"
    );
    assert!(error.contains("pcapng instead"), "{error}");
    assert!(
        out.is_empty(),
        "nothing is written before the conflict is found"
    );
}

#[test]
fn a_rotated_series_is_one_input_with_one_interface_per_pod_interface() {
    let dir = scratch();
    let mut rng = Rng(0x0123_4567_89ab_cdef);
    let interfaces = [
        interface("veth-a", Resolution::Nanoseconds),
        interface("veth-b", Resolution::Microseconds),
    ];
    let mut series = Vec::new();
    let mut sent = Vec::new();
    for n in 0..3u64 {
        let mut file = Pcapng::new(false);
        for spec in &interfaces {
            file.interface(spec);
        }
        // Each file covers the next 3 ms; positions continue across files.
        for (index, ts_ns) in schedule(
            &mut rng,
            &[Resolution::Nanoseconds, Resolution::Microseconds],
            100,
        ) {
            let ts_ns = ts_ns + n * 3_000_000;
            let data = frame(0, sent.len(), 100);
            file.enhanced_packet(
                index as u32,
                interfaces[index].resolution.raw(ts_ns),
                &data,
                100,
                None,
            );
            sent.push((ts_ns, data));
        }
        file.statistics(0, T0_NS + (n + 1) * 3_000_000, 100 * (n + 1), n);
        series.push(write(
            dir.path(),
            &format!("web-{:06}.pcapng", n + 1),
            &file.bytes,
        ));
    }
    let (other, _) = pcap_input(
        &mut rng,
        1,
        "db",
        300,
        TsResolution::NanoSecond,
        Endianness::Little,
    );
    let other = write(dir.path(), "db.pcap", &other);

    let ours = dir.path().join("podcap.pcapng");
    let theirs = dir.path().join("mergecap.pcapng");
    let inputs = vec![
        MergeInput::chained("web-1", ChainedInput::paths(series.clone()))
            .with_description("shop/web-1 on node-a"),
        MergeInput::new("db", File::open(&other).unwrap()),
    ];
    let report = merge_files(inputs, OutputFormat::Pcapng, &ours);
    let mut references: Vec<&Path> = series.iter().map(PathBuf::as_path).collect();
    references.push(&other);
    mergecap(&references, "pcapng", &theirs);

    assert_eq!(
        report.interfaces, 3,
        "veth-a and veth-b once, not once per file, and db"
    );
    let merged = read_merged_file(&ours);
    let names: Vec<&str> = merged.interfaces.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(
        names,
        ["veth-a", "veth-b", "db"],
        "a pcap input's interface has its name"
    );
    assert_eq!(
        merged.statistics,
        [(0, Some(300), Some(2))],
        "the series' last running total"
    );
    assert_same_packets_per_timestamp(&merged.packets, &read_merged_file(&theirs).packets);
    eprintln!(
        "interfaces: podcap {}, mergecap {}",
        capinfos(&ours, "Number of interfaces in file"),
        capinfos(&theirs, "Number of interfaces in file")
    );
    let rows = tshark_fields(
        &ours,
        &["frame.interface_name", "frame.interface_description"],
    );
    let web1_packets = rows
        .iter()
        .filter(|row| row[0].starts_with("veth-"))
        .count();
    assert_eq!(web1_packets, sent.len());
    assert!(rows
        .iter()
        .filter(|row| row[0].starts_with("veth-"))
        .all(|row| row[1] == "shop/web-1 on node-a"));
}

// ---------------------------------------------------------------------------------------------
// Memory
// ---------------------------------------------------------------------------------------------

/// A pcapng capture of `packets` frames of `frame_len` bytes, produced as it is read (nothing
/// is kept but one block), with timestamps `first_ns`, `first_ns + step_ns`, ...
struct GeneratedCapture {
    pending: Vec<u8>,
    at: usize,
    remaining: u64,
    next_ns: u64,
    step_ns: u64,
    frame_len: usize,
}

impl GeneratedCapture {
    fn new(
        name: &str,
        packets: u64,
        frame_len: usize,
        first_ns: u64,
        step_ns: u64,
    ) -> GeneratedCapture {
        let mut header = Pcapng::new(false);
        header.interface(&interface(name, Resolution::Nanoseconds));
        GeneratedCapture {
            pending: header.bytes,
            at: 0,
            remaining: packets,
            next_ns: first_ns,
            step_ns,
            frame_len,
        }
    }

    fn next_block(&mut self) {
        let len = (28 + self.frame_len.div_ceil(4) * 4 + 4) as u32;
        let ts = self.next_ns;
        self.pending.clear();
        for word in [
            6,
            len,
            0,
            (ts >> 32) as u32,
            ts as u32,
            self.frame_len as u32,
            self.frame_len as u32,
        ] {
            self.pending.extend(word.to_le_bytes());
        }
        self.pending.resize(len as usize - 4, 0xab);
        self.pending.extend(len.to_le_bytes());
        self.at = 0;
        self.remaining -= 1;
        self.next_ns += self.step_ns;
    }
}

impl Read for GeneratedCapture {
    /// Fills all of `out` it can, as a file would, so the merge's buffers are used whole.
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let mut filled = 0;
        while filled < out.len() {
            if self.at == self.pending.len() {
                if self.remaining == 0 {
                    break;
                }
                self.next_block();
            }
            let len = (out.len() - filled).min(self.pending.len() - self.at);
            out[filled..filled + len].copy_from_slice(&self.pending[self.at..self.at + len]);
            self.at += len;
            filled += len;
        }
        Ok(filled)
    }
}

/// Counts what is written and keeps none of it.
#[derive(Default)]
struct CountingSink(u64);

impl Write for CountingSink {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0 += bytes.len() as u64;
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn peak_rss_kib() -> u64 {
    let status = fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Merges 8 generated inputs of `per_input_bytes` each into a counting sink.
fn merge_generated(per_input_bytes: u64) -> (MergeReport, u64) {
    const FRAME_LEN: usize = 1400;
    let packets = per_input_bytes / (FRAME_LEN as u64 + 32);
    let inputs = (0..8)
        .map(|i| {
            // Interleaved: input i has times T0 + i, T0 + i + 8, ...
            let capture =
                GeneratedCapture::new(&format!("veth{i}"), packets, FRAME_LEN, T0_NS + i, 8);
            MergeInput::new(format!("generated-{i}"), capture)
        })
        .collect();
    let mut sink = CountingSink::default();
    let report = merge(inputs, OutputFormat::Pcapng, &mut sink).unwrap();
    assert_eq!(report.packets, packets * 8);
    (report, sink.0)
}

const MEMORY_PROBE: &str = "PODCAP_MERGE_MEMORY_PROBE";

/// Runs in a child process started by [`memory_does_not_grow_with_the_input`], alone, so the
/// process's peak RSS is this merge's.
#[test]
#[ignore = "run by memory_does_not_grow_with_the_input in a process of its own"]
fn memory_probe() {
    if std::env::var_os(MEMORY_PROBE).is_none() {
        return;
    }
    let before = peak_rss_kib();
    let (small, _) = merge_generated(6 << 20);
    let after_small = peak_rss_kib();
    let (large, written) = merge_generated(26 << 20);
    let after_large = peak_rss_kib();
    println!(
        "peak RSS KiB: before {before}, after 50 MB {after_small}, after {} MB {after_large}; buffers {} / {} bytes",
        written / 1_000_000,
        small.peak_buffer_bytes,
        large.peak_buffer_bytes
    );
    assert!(
        written >= 200_000_000,
        "the large merge must be at least 200 MB (was {written})"
    );
    // The buffers: 8 inputs x 256 KiB read buffer + a 32 KiB output buffer, whatever the size.
    assert_eq!(small.peak_buffer_bytes, large.peak_buffer_bytes);
    assert!(
        large.peak_buffer_bytes <= 3 << 20,
        "buffers {}",
        large.peak_buffer_bytes
    );
    assert!(
        after_large - before < 8 << 10,
        "peak RSS grew by {} KiB",
        after_large - before
    );
    assert!(
        after_large - after_small < 2 << 10,
        "4x the input raised the peak RSS by {} KiB",
        after_large - after_small
    );
}

#[test]
fn memory_does_not_grow_with_the_input() {
    let output = Command::new(std::env::current_exe().unwrap())
        .args(["memory_probe", "--exact", "--ignored", "--nocapture"])
        .env(MEMORY_PROBE, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    eprintln!("{stdout}");
    assert!(
        output.status.success(),
        "memory probe failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("1 passed"),
        "the probe did not run:\n{stdout}"
    );
}

// ---------------------------------------------------------------------------------------------
// Property: any inputs merge into a sorted file with exactly their packets
// ---------------------------------------------------------------------------------------------

/// One random input: its kind and, per packet, (interface, gap to the previous packet in ns).
#[derive(Debug, Clone)]
struct RandomInput {
    big_endian: bool,
    /// pcap (micro- or nanoseconds) when set; else pcapng.
    pcap_nanoseconds: Option<bool>,
    resolutions: Vec<Resolution>,
    packets: Vec<(usize, u64)>,
}

fn random_input() -> impl Strategy<Value = RandomInput> {
    let resolution = prop_oneof![
        Just(Resolution::Nanoseconds),
        Just(Resolution::Microseconds),
        Just(Resolution::DefaultMicroseconds),
        Just(Resolution::Milliseconds),
    ];
    (
        any::<bool>(),
        prop_oneof![3 => Just(None), 1 => any::<bool>().prop_map(Some)],
        prop::collection::vec(resolution, 1..4),
        prop::collection::vec((0usize..3, 0u64..3_000_000), 0..40),
    )
        .prop_map(
            |(big_endian, pcap_nanoseconds, resolutions, packets)| RandomInput {
                big_endian,
                pcap_nanoseconds,
                resolutions,
                packets,
            },
        )
}

/// A packet as the property compares it: timestamp, frame, interface name.
type Compared = (u64, Vec<u8>, String);

/// Builds the input's file and the packets it holds.
fn build_random(input: usize, spec: &RandomInput) -> (Vec<u8>, Vec<Compared>) {
    let mut ts = T0_NS;
    let mut packets = Vec::new();
    if let Some(nanoseconds) = spec.pcap_nanoseconds {
        let resolution = if nanoseconds {
            TsResolution::NanoSecond
        } else {
            TsResolution::MicroSecond
        };
        let step = if nanoseconds { 1 } else { 1_000 };
        let header = PcapHeader {
            ts_resolution: resolution,
            endianness: if spec.big_endian {
                Endianness::Big
            } else {
                Endianness::Little
            },
            ..PcapHeader::default()
        };
        let mut writer = PcapWriter::with_header(Vec::new(), header).unwrap();
        for (position, &(_, gap)) in spec.packets.iter().enumerate() {
            ts += gap / step * step;
            let data = frame(input, position, 60);
            let packet = pcap_file::pcap::PcapPacket::new(Duration::from_nanos(ts), 60, &data);
            writer.write_packet(&packet).unwrap();
            packets.push((ts, data, format!("in{input}")));
        }
        return (writer.into_writer(), packets);
    }
    let mut file = Pcapng::new(spec.big_endian);
    let names: Vec<String> = (0..spec.resolutions.len())
        .map(|j| format!("in{input}-if{j}"))
        .collect();
    for (name, resolution) in names.iter().zip(&spec.resolutions) {
        file.interface(&interface(name, *resolution));
    }
    for (position, &(interface, gap)) in spec.packets.iter().enumerate() {
        let interface = interface % spec.resolutions.len();
        let resolution = spec.resolutions[interface];
        // Rounded up to the interface's unit, so the input stays in time order.
        ts = (ts + gap).div_ceil(resolution.step_ns()) * resolution.step_ns();
        let data = frame(input, position, 60 + position % 5);
        file.enhanced_packet(
            interface as u32,
            resolution.raw(ts),
            &data,
            data.len() as u32,
            None,
        );
        packets.push((ts, data, names[interface].clone()));
    }
    (file.bytes, packets)
}

proptest! {
    // No failure file: integration tests have no lib.rs to put it next to.
    #![proptest_config(ProptestConfig {
        cases: 64,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_inputs_merge_sorted_complete_and_on_their_interfaces(
        specs in prop::collection::vec(random_input(), 1..6)
    ) {
        let mut inputs = Vec::new();
        let mut expected = Vec::new();
        for (input, spec) in specs.iter().enumerate() {
            let (bytes, packets) = build_random(input, spec);
            inputs.push(MergeInput::new(format!("in{input}"), Cursor::new(bytes)));
            expected.extend(packets);
        }
        let mut out = Vec::new();
        let report = merge(inputs, OutputFormat::Pcapng, &mut out).unwrap();
        let merged = read_merged(&out);
        prop_assert_eq!(report.packets as usize, expected.len());

        let times: Vec<u64> = merged.packets.iter().map(|p| p.ts_ns).collect();
        prop_assert!(times.windows(2).all(|w| w[0] <= w[1]), "not in time order: {:?}", times);

        let mut got: Vec<Compared> = merged
            .packets
            .iter()
            .map(|p| (p.ts_ns, p.data.clone(), merged.interfaces[p.interface as usize].name.clone()))
            .collect();
        // Each output interface belongs to the input that sent its packets.
        for packet in &merged.packets {
            let (input, _) = identity(&packet.data);
            let name = &merged.interfaces[packet.interface as usize].name;
            let own = *name == format!("in{input}") || name.starts_with(&format!("in{input}-"));
            prop_assert!(own, "packet of input {} on {}", input, name);
        }
        got.sort();
        expected.sort();
        prop_assert_eq!(got, expected);
    }
}
