//! The merge as a whole on hand-built inputs: ordering and ties, every input variant, chained
//! files, truncation, damage, and both output formats. The merged pcapng is read back with this
//! module's own block parser; `tests/merge_vs_mergecap.rs` judges against Wireshark's tools.

use std::io::{self, Read};

use capture_spec::OutputFormat;

use super::byte_order::ByteOrder;
use super::interfaces::InterfaceDescription;
use super::pcapng::{block_header, parse_block, Block};
use super::testing::{BlockWriter, Order};
use super::*;

/// One packet of a merged file.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Merged {
    interface: u32,
    timestamp_ns: u64,
    original_len: u32,
    data: Vec<u8>,
    flags: Option<u32>,
}

#[derive(Debug, Default)]
struct ReadBack {
    interfaces: Vec<InterfaceDescription>,
    packets: Vec<Merged>,
    /// (interface, ifrecv, ifdrop)
    statistics: Vec<(u32, Option<u64>, Option<u64>)>,
}

fn native() -> ByteOrder {
    if cfg!(target_endian = "little") {
        ByteOrder::Little
    } else {
        ByteOrder::Big
    }
}

/// Reads a merged pcapng file: one section in host order, every interface at tsresol 9.
fn read_back(bytes: &[u8]) -> ReadBack {
    let order = native();
    let mut result = ReadBack::default();
    let mut at = 0;
    while at < bytes.len() {
        let (block_type, len) = block_header(order, &bytes[at..]).unwrap();
        match parse_block(order, block_type, &bytes[at..at + len]).unwrap() {
            Block::Interface { described, scale } => {
                assert_eq!(
                    scale.to_ns(123),
                    123,
                    "merged interfaces are in nanoseconds"
                );
                result.interfaces.push(described);
            }
            Block::Packet(packet) => result.packets.push(Merged {
                interface: packet.interface,
                timestamp_ns: packet.raw_timestamp.unwrap(),
                original_len: packet.original_len,
                data: bytes[at + packet.data_at..at + packet.data_at + packet.captured_len]
                    .to_vec(),
                flags: packet.flags,
            }),
            Block::Statistics { interface, raw } => {
                let sample = raw.in_ns(timescale::TimeScale::NANOSECONDS);
                result
                    .statistics
                    .push((interface, sample.counters[0], sample.counters[1]));
            }
            Block::SectionHeader => assert_eq!(at, 0, "one section"),
            Block::Skipped => panic!("unexpected block {block_type:#x}"),
        }
        at += len;
    }
    result
}

fn input(name: &str, bytes: Vec<u8>) -> MergeInput {
    MergeInput::new(name, io::Cursor::new(bytes))
}

fn merge_to_vec(
    inputs: Vec<MergeInput>,
    format: OutputFormat,
) -> Result<(MergeReport, Vec<u8>), MergeError> {
    let mut out = Vec::new();
    let report = merge(inputs, format, &mut out)?;
    assert_eq!(report.bytes_written, out.len() as u64);
    Ok((report, out))
}

/// A pcapng file with one nanosecond interface `name` and packets at `times`, the frame
/// being the timestamp's low byte repeated.
fn pcapng_file(order: Order, name: &str, times: &[u64]) -> Vec<u8> {
    let mut w = BlockWriter::new(order);
    w.section_header();
    w.interface(name, 9);
    for &t in times {
        w.enhanced_packet(0, t, &[t as u8; 14], 60, Some(1));
    }
    w.bytes
}

fn times(read: &ReadBack) -> Vec<u64> {
    read.packets.iter().map(|p| p.timestamp_ns).collect()
}

#[test]
fn packets_come_out_in_time_order_and_ties_in_input_order() {
    let a = pcapng_file(Order::Little, "a", &[10, 20, 30, 30]);
    let b = pcapng_file(Order::Big, "b", &[5, 20, 25, 40]);
    let (report, out) =
        merge_to_vec(vec![input("a", a), input("b", b)], OutputFormat::Pcapng).unwrap();
    let read = read_back(&out);
    assert_eq!(times(&read), [5, 10, 20, 20, 25, 30, 30, 40]);
    let interfaces: Vec<u32> = read.packets.iter().map(|p| p.interface).collect();
    assert_eq!(
        interfaces,
        [1, 0, 0, 1, 1, 0, 0, 1],
        "the tie at 20 goes to input a first"
    );
    assert_eq!(report.packets, 8);
    assert_eq!(report.interfaces, 2);
    assert!(report.truncated_inputs.is_empty());
    assert_eq!(read.interfaces[0].name.as_deref(), Some("a"));
    assert!(read
        .packets
        .iter()
        .all(|p| p.flags == Some(1) && p.original_len == 60));
}

#[test]
fn every_pcapng_variant_is_read() {
    // Big-endian, 2^-20 s units, an obsolete Packet Block, a Simple Packet Block, an
    // unknown block, and a second section with its own interfaces.
    let mut w = BlockWriter::new(Order::Big);
    w.section_header();
    w.interface_with(1, 0, &[(2, b"bin".to_vec()), (9, vec![0x80 | 20])]);
    w.interface_with(1, 8, &[(2, b"micro".to_vec())]);
    w.obsolete_packet(0, 1 << 20, &[1; 10], 10, Some(2));
    w.block(0x8000_0001, &[0; 8]);
    w.enhanced_packet(1, 1_500_000, &[2; 8], 100, None);
    // Interface 0's snap length is unlimited: all 10 bytes.
    w.simple_packet(&[3; 10], 10);
    w.section_header();
    w.interface("second-section", 3);
    w.enhanced_packet(0, 2_000, &[4; 4], 4, None);
    let (report, out) = merge_to_vec(vec![input("odd", w.bytes)], OutputFormat::Pcapng).unwrap();
    let read = read_back(&out);
    assert_eq!(
        times(&read),
        [1_000_000_000, 1_500_000_000, 1_500_000_000, 2_000_000_000]
    );
    let frames: Vec<(u32, usize, Option<u32>)> = read
        .packets
        .iter()
        .map(|p| (p.interface, p.data.len(), p.flags))
        .collect();
    assert_eq!(
        frames,
        [(0, 10, Some(2)), (1, 8, None), (0, 10, None), (2, 4, None)]
    );
    assert_eq!(report.interfaces, 3);
}

#[test]
fn all_four_pcap_magics_are_read() {
    let mut inputs = Vec::new();
    for (i, (order, nanoseconds)) in [
        (Order::Little, false),
        (Order::Big, false),
        (Order::Little, true),
        (Order::Big, true),
    ]
    .into_iter()
    .enumerate()
    {
        let mut w = BlockWriter::new(order);
        w.pcap_header(nanoseconds, 1, 65_535);
        w.pcap_record(i as u32 + 1, 7, &[i as u8; 20], 20);
        inputs.push(input(&format!("pcap{i}"), w.bytes));
    }
    let (_, out) = merge_to_vec(inputs, OutputFormat::Pcapng).unwrap();
    let read = read_back(&out);
    assert_eq!(
        times(&read),
        [1_000_007_000, 2_000_007_000, 3_000_000_007, 4_000_000_007]
    );
    assert_eq!(read.interfaces.len(), 4);
    let names: Vec<_> = read
        .interfaces
        .iter()
        .map(|i| i.name.clone().unwrap())
        .collect();
    assert_eq!(
        names,
        ["pcap0", "pcap1", "pcap2", "pcap3"],
        "named after their inputs"
    );
    assert!(read.interfaces.iter().all(|i| i.snap_len == 65_535));
}

#[test]
fn a_rotated_series_is_one_input_with_one_set_of_interfaces() {
    let mut files = Vec::new();
    for (n, a_ns, b_us) in [(1u64, 100u64, 1u64), (2, 2_000, 3)] {
        let mut w = BlockWriter::new(Order::Little);
        w.section_header();
        w.interface("veth-a", 9);
        w.interface("veth-b", 6);
        w.enhanced_packet(0, a_ns, &[1; 4], 4, None);
        w.enhanced_packet(1, b_us, &[2; 4], 4, None);
        // The agent's statistics are running totals since the capture started.
        w.statistics(0, a_ns + 1, &[(4, 10 * n), (5, n)], Some(1), Some(a_ns + 1));
        files.push(Ok(InputFile {
            label: format!("web-00000{n}.pcapng"),
            reader: Box::new(io::Cursor::new(w.bytes)),
        }));
    }
    let series = MergeInput::chained("web-1", ChainedInput::files(files))
        .with_description("shop/web-1 on node-a");
    let other = input("db", pcapng_file(Order::Little, "veth-db", &[1_500]));
    let (report, out) = merge_to_vec(vec![series, other], OutputFormat::Pcapng).unwrap();
    let read = read_back(&out);
    assert_eq!(report.interfaces, 3);
    let names: Vec<_> = read
        .interfaces
        .iter()
        .map(|i| i.name.clone().unwrap())
        .collect();
    assert_eq!(names, ["veth-a", "veth-b", "veth-db"]);
    assert_eq!(
        read.interfaces[0].description.as_deref(),
        Some("shop/web-1 on node-a")
    );
    assert_eq!(read.interfaces[2].description, None);
    let order: Vec<(u32, u64)> = read
        .packets
        .iter()
        .map(|p| (p.interface, p.timestamp_ns))
        .collect();
    assert_eq!(
        order,
        [(0, 100), (1, 1_000), (2, 1_500), (0, 2_000), (1, 3_000)]
    );
    assert_eq!(
        read.statistics,
        [(0, Some(20), Some(2))],
        "the last running total, not the sum"
    );
}

#[test]
fn a_truncated_last_record_ends_that_input_only() {
    let mut cut = pcapng_file(Order::Little, "cut", &[1, 3, 5]);
    cut.truncate(cut.len() - 7);
    let whole = pcapng_file(Order::Little, "whole", &[2, 4, 6]);
    let mut pcap = BlockWriter::new(Order::Big);
    pcap.pcap_header(true, 1, 100);
    pcap.pcap_record(0, 7, &[0; 30], 30);
    pcap.pcap_record(0, 8, &[0; 30], 30);
    pcap.bytes.truncate(pcap.bytes.len() - 29);
    let inputs = vec![
        input("cut", cut),
        input("whole", whole),
        input("short-pcap", pcap.bytes),
    ];
    let (report, out) = merge_to_vec(inputs, OutputFormat::Pcapng).unwrap();
    assert_eq!(times(&read_back(&out)), [1, 2, 3, 4, 6, 7]);
    assert_eq!(report.truncated_inputs, ["cut", "short-pcap"]);
}

#[test]
fn a_truncated_file_inside_a_chain_goes_on_with_the_next_file() {
    let mut first = pcapng_file(Order::Little, "a", &[1, 2]);
    first.truncate(first.len() - 1);
    let second = pcapng_file(Order::Little, "a", &[3]);
    let files = [first, second].into_iter().enumerate().map(|(i, bytes)| {
        Ok(InputFile {
            label: format!("file{i}"),
            reader: Box::new(io::Cursor::new(bytes)) as Box<dyn Read + Send>,
        })
    });
    let files: Vec<_> = files.collect();
    let (report, out) = merge_to_vec(
        vec![MergeInput::chained("a", ChainedInput::files(files))],
        OutputFormat::Pcapng,
    )
    .unwrap();
    let read = read_back(&out);
    assert_eq!(times(&read), [1, 3]);
    assert_eq!(report.truncated_inputs, ["a (file0)"]);
    assert_eq!(read.interfaces.len(), 1);
}

#[test]
fn empty_inputs_merge_to_nothing() {
    let header_only = pcapng_file(Order::Little, "idle", &[]);
    let (report, out) = merge_to_vec(
        vec![input("zero bytes", Vec::new()), input("idle", header_only)],
        OutputFormat::Pcapng,
    )
    .unwrap();
    assert_eq!(report.packets, 0);
    assert!(report.truncated_inputs.is_empty());
    assert_eq!(read_back(&out).interfaces.len(), 1);
    let (report, _) = merge_to_vec(Vec::new(), OutputFormat::Pcap).unwrap();
    assert_eq!(report.bytes_written, 24, "a pcap header and nothing else");
}

#[test]
fn damage_names_the_input_the_file_and_the_offset() {
    let mut bad = pcapng_file(Order::Little, "a", &[1, 2]);
    let second_packet = bad.len() - 60;
    bad[second_packet + 4] = 0x41; // a block length that is not a multiple of 4
    let files = vec![Ok(InputFile {
        label: "/data/web-000002.pcapng".into(),
        reader: Box::new(io::Cursor::new(bad)) as Box<dyn Read + Send>,
    })];
    let error = merge_to_vec(
        vec![MergeInput::chained("web-1", ChainedInput::files(files))],
        OutputFormat::Pcapng,
    )
    .unwrap_err()
    .to_string();
    assert!(
        error.contains("web-1 (/data/web-000002.pcapng) is damaged at byte"),
        "{error}"
    );
    assert!(error.contains(&format!("byte {second_packet}")), "{error}");
    assert!(error.contains("multiple of 4"), "{error}");
}

#[test]
fn a_file_that_is_not_a_capture_is_named() {
    let error = merge_to_vec(
        vec![input("web-1", b"<html>oops</html>".to_vec())],
        OutputFormat::Pcapng,
    )
    .unwrap_err()
    .to_string();
    assert!(
        error.contains("web-1 is neither a pcap nor a pcapng file"),
        "{error}"
    );
    assert!(error.contains("\"<htm\""), "{error}");
}

#[test]
fn a_missing_file_of_a_chain_is_named() {
    let paths = vec!["/nonexistent/podcap-merge-test-000001.pcapng".into()];
    let error = merge_to_vec(
        vec![MergeInput::chained("web-1", ChainedInput::paths(paths))],
        OutputFormat::Pcapng,
    )
    .unwrap_err()
    .to_string();
    assert!(
        error.contains("reading web-1: opening /nonexistent/podcap-merge-test-000001.pcapng"),
        "{error}"
    );
}

#[test]
fn pcap_output_has_nanoseconds_and_one_link_type() {
    let a = pcapng_file(Order::Big, "a", &[1_000_000_007]);
    let mut b = BlockWriter::new(Order::Little);
    b.pcap_header(false, 1, 1500);
    b.pcap_record(0, 5, &[9; 3], 3);
    let (report, out) =
        merge_to_vec(vec![input("a", a), input("b", b.bytes)], OutputFormat::Pcap).unwrap();
    assert_eq!(report.packets, 2);
    let order = native();
    assert_eq!(order.u32(&out, 0), 0xa1b2_3c4d);
    assert_eq!(
        order.u32(&out, 16),
        262_144,
        "the largest snap length of the inputs"
    );
    assert_eq!(order.u32(&out, 20), 1);
    // First record: 0 s + 5000 ns, 3 bytes; second: 1 s + 7 ns.
    assert_eq!(
        [
            order.u32(&out, 24),
            order.u32(&out, 28),
            order.u32(&out, 32)
        ],
        [0, 5_000, 3]
    );
    let second = 24 + 16 + 3;
    assert_eq!(
        [order.u32(&out, second), order.u32(&out, second + 4)],
        [1, 7]
    );

    let mut raw_ip = BlockWriter::new(Order::Little);
    raw_ip.pcap_header(true, 101, 1500);
    let a = pcapng_file(Order::Big, "a", &[1]);
    let error = merge_to_vec(
        vec![input("eth", a), input("raw", raw_ip.bytes)],
        OutputFormat::Pcap,
    )
    .unwrap_err()
    .to_string();
    assert!(
        error.contains("raw has link type 101 and eth has 1"),
        "{error}"
    );
    assert!(error.contains("pcapng instead"), "{error}");
}

/// A reader that hands out a few bytes per read, as a slow HTTP body might.
struct Dribble {
    bytes: io::Cursor<Vec<u8>>,
    step: usize,
}

impl Read for Dribble {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        self.step = self.step % 7 + 1;
        let len = out.len().min(self.step);
        self.bytes.read(&mut out[..len])
    }
}

#[test]
fn reads_of_any_size_give_the_same_merge() {
    let a = pcapng_file(Order::Little, "a", &[1, 4, 9, 16]);
    let b = pcapng_file(Order::Big, "b", &[2, 3, 10]);
    let whole = merge_to_vec(
        vec![input("a", a.clone()), input("b", b.clone())],
        OutputFormat::Pcapng,
    )
    .unwrap();
    let dribbled = merge_to_vec(
        vec![
            MergeInput::new(
                "a",
                Dribble {
                    bytes: io::Cursor::new(a),
                    step: 0,
                },
            ),
            MergeInput::new(
                "b",
                Dribble {
                    bytes: io::Cursor::new(b),
                    step: 3,
                },
            ),
        ],
        OutputFormat::Pcapng,
    )
    .unwrap();
    assert_eq!(whole.1, dribbled.1);
}

#[test]
fn buffers_do_not_grow_with_the_input() {
    // 1000 packets of 1000 bytes through a 64 KiB-per-input budget.
    let packets: Vec<u64> = (0..1000).collect();
    let mut w = BlockWriter::new(Order::Little);
    w.section_header();
    w.interface("big", 9);
    for &t in &packets {
        w.enhanced_packet(0, t, &[0; 1000], 1000, None);
    }
    let inputs: Vec<MergeInput> = (0..300)
        .map(|i| input(&format!("in{i}"), w.bytes.clone()))
        .collect();
    let (report, _) = merge_to_vec(inputs, OutputFormat::Pcapng).unwrap();
    assert_eq!(report.packets, 300_000);
    assert_eq!(
        report.peak_buffer_bytes,
        300 * MIN_READ_BUFFER + writer::OUTPUT_BUFFER_LEN
    );
}

/// A file of every block kind, to damage.
fn specimen() -> Vec<u8> {
    let mut w = BlockWriter::new(Order::Big);
    w.section_header();
    w.interface_with(
        1,
        64,
        &[(2, b"eth0".to_vec()), (9, vec![6]), (11, b"\0tcp".to_vec())],
    );
    w.enhanced_packet(0, 1_000, &[1; 30], 30, Some(1));
    w.obsolete_packet(0, 2_000, &[2; 10], 10, None);
    w.simple_packet(&[3; 7], 7);
    w.statistics(0, 3_000, &[(4, 5), (5, 1)], Some(1_000), Some(3_000));
    w.bytes
}

proptest::proptest! {
    // Failures print the input; no regression file is written outside this module.
    #![proptest_config(proptest::test_runner::Config {
        failure_persistence: None,
        ..proptest::test_runner::Config::default()
    })]

    /// Damaged input never panics the merge: it merges, reports a truncation, or fails with
    /// an error naming the input.
    #[test]
    fn damaged_input_never_panics(
        flips in proptest::collection::vec((0usize..4096, proptest::prelude::any::<u8>()), 0..6),
        cut in 0usize..4096,
    ) {
        let mut bytes = specimen();
        for (at, value) in flips {
            let len = bytes.len();
            bytes[at % len] = value;
        }
        bytes.truncate(cut.max(1));
        let other = pcapng_file(Order::Little, "other", &[1, 2]);
        match merge_to_vec(vec![input("damaged", bytes), input("other", other)], OutputFormat::Pcapng) {
            Ok((report, out)) => {
                proptest::prop_assert_eq!(report.bytes_written, out.len() as u64);
                proptest::prop_assert!(report.packets >= 2, "the other input is merged whole");
            }
            Err(error) => proptest::prop_assert!(error.to_string().contains("damaged"), "{}", error),
        }
    }
}

#[test]
fn visit_sees_what_merge_writes_and_stops_when_told() {
    let a = pcapng_file(Order::Little, "a", &[10, 20, 30, 30]);
    let b = pcapng_file(Order::Big, "b", &[5, 20, 25, 40]);
    let mut seen = Vec::new();
    let visited = visit(
        vec![input("a", a.clone()), input("b", b.clone())],
        |packet| {
            seen.push((
                packet.timestamp_ns,
                packet.input,
                packet.frame.to_vec(),
                packet.link_type,
                packet.flags,
            ));
            std::ops::ControlFlow::Continue(())
        },
    )
    .unwrap();
    assert_eq!(visited, 8);
    let (_, out) = merge_to_vec(
        vec![input("a", a.clone()), input("b", b.clone())],
        OutputFormat::Pcapng,
    )
    .unwrap();
    let merged = read_back(&out);
    assert_eq!(
        seen.iter().map(|s| s.0).collect::<Vec<_>>(),
        times(&merged),
        "the merge's order"
    );
    let inputs: Vec<usize> = seen.iter().map(|s| s.1).collect();
    assert_eq!(
        inputs,
        [1, 0, 0, 1, 1, 0, 0, 1],
        "ties go to the earlier input"
    );
    assert!(seen
        .iter()
        .zip(&merged.packets)
        .all(|(s, m)| s.2 == m.data && s.3 == 1 && s.4 == Some(1)));

    let mut first_three = 0;
    let visited = visit(vec![input("a", a), input("b", b)], |_| {
        first_three += 1;
        if first_three == 3 {
            std::ops::ControlFlow::Break(())
        } else {
            std::ops::ControlFlow::Continue(())
        }
    })
    .unwrap();
    assert_eq!((visited, first_three), (3, 3), "Break ends the walk");
}
