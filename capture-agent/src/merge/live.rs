//! Interleaving live pcapng streams into one, as they arrive: what the API serves as the live
//! stream of a capture that runs on several nodes, each node's agent streaming its own pods.
//!
//! A time-ordered merge cannot serve a live view: it must hold every input's next packet
//! before it writes one, so one quiet pod would stall the others. Here each input is read on
//! its own thread and its blocks are written in the order they arrive, each input's interfaces
//! renumbered into one interface table (an input's own packets keep their order; across inputs
//! packets may step back in time by up to a block timeout, which Wireshark shows as it comes).
//! Section headers are replaced by one of ours; interface descriptions, packets (with their
//! flags) and interface statistics pass through unchanged but for the interface id.
//!
//! A reader thread blocks on its input; once the client has gone it ends with the next block
//! or the input's end, whichever comes first.

use std::io::{self, Read, Write};
use std::sync::mpsc;
use std::thread;

use crate::format::pcapng::{put_block, put_u16, put_u32, BYTE_ORDER_MAGIC, EPB, IDB, ISB, SHB};

use super::byte_order::ByteOrder;
use super::pcapng::{block_header, section_order, BLOCK_HEADER_LEN, SECTION_PROBE_LEN};

/// Blocks in flight from all readers: bounds memory when the client is slower than the inputs.
const BLOCKS_IN_FLIGHT: usize = 256;
/// The largest block accepted; podcap's snap length is 256 KiB.
const MAX_BLOCK_LEN: usize = 1 << 20;

/// One live stream to interleave.
pub struct LiveInput {
    /// How errors name it, e.g. "node-a".
    pub name: String,
    pub reader: Box<dyn Read + Send>,
}

/// What an interleave did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct LiveReport {
    pub packets: u64,
    /// Inputs that ended with an error, with it: the others went on.
    pub failed_inputs: Vec<String>,
}

enum Message {
    Block {
        input: usize,
        block_type: u32,
        bytes: Vec<u8>,
    },
    Failed {
        input: usize,
        error: String,
    },
}

/// Writes `inputs` to `out` as one pcapng stream until every input has ended; fails only when
/// writing to `out` fails (the client left).
pub fn interleave(inputs: Vec<LiveInput>, out: &mut dyn Write) -> io::Result<LiveReport> {
    let (sender, receiver) = mpsc::sync_channel(BLOCKS_IN_FLIGHT);
    let names: Vec<String> = inputs.iter().map(|input| input.name.clone()).collect();
    for (index, input) in inputs.into_iter().enumerate() {
        let sender = sender.clone();
        thread::Builder::new()
            .name(format!("live-{}", input.name))
            .spawn(move || read_blocks(index, input.reader, &sender))?;
    }
    drop(sender);

    let mut header = Vec::with_capacity(32);
    put_block(&mut header, SHB, |body| {
        put_u32(body, BYTE_ORDER_MAGIC);
        put_u16(body, 1);
        put_u16(body, 0);
        body.extend_from_slice(&u64::MAX.to_ne_bytes());
    });
    out.write_all(&header)?;
    out.flush()?;

    // Per input, the output id of each of its interfaces, in the order it declared them.
    let mut interfaces: Vec<Vec<u32>> = vec![Vec::new(); names.len()];
    let mut next_interface = 0u32;
    let mut report = LiveReport::default();
    for message in receiver {
        match message {
            Message::Failed { input, error } => {
                tracing::warn!(input = %names[input], %error, "live input ended with an error");
                report
                    .failed_inputs
                    .push(format!("{}: {error}", names[input]));
            }
            Message::Block {
                input,
                block_type,
                mut bytes,
            } => {
                match block_type {
                    SHB => {
                        // A new section restarts the input's interface numbering.
                        interfaces[input].clear();
                        continue;
                    }
                    IDB => {
                        interfaces[input].push(next_interface);
                        next_interface += 1;
                    }
                    EPB | ISB => {
                        let local = u32::from_ne_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
                        let Some(&global) = interfaces[input].get(local as usize) else {
                            report.failed_inputs.push(format!(
                                "{}: a block names interface {local}, which it never described",
                                names[input]
                            ));
                            continue;
                        };
                        bytes[8..12].copy_from_slice(&global.to_ne_bytes());
                        if block_type == EPB {
                            report.packets += 1;
                        }
                    }
                    _ => continue,
                }
                out.write_all(&bytes)?;
                // A live view shows packets as they come, not when a buffer fills.
                out.flush()?;
            }
        }
    }
    Ok(report)
}

/// Reads `reader`'s blocks and sends the ones the interleave keeps, in this machine's byte
/// order only (an input in the other order is refused: converting every field is not worth it
/// for agents that all run on one architecture).
fn read_blocks(input: usize, mut reader: Box<dyn Read + Send>, sender: &mpsc::SyncSender<Message>) {
    let fail = |error: String| {
        let _ = sender.send(Message::Failed { input, error });
    };
    let mut probe = [0u8; SECTION_PROBE_LEN];
    match read_full(&mut reader, &mut probe) {
        Ok(true) => {}
        Ok(false) => return,
        Err(e) => return fail(format!("reading the stream's start: {e}")),
    }
    let order = match section_order(&probe) {
        Ok(order) => order,
        Err(e) => return fail(e),
    };
    if order != ByteOrder::native() {
        return fail("the stream is in the other byte order than this machine's".into());
    }
    // The probe is the start of the section header: read the rest of it and drop it.
    let (_, len) = match block_header(order, &probe[..BLOCK_HEADER_LEN]) {
        Ok(header) => header,
        Err(e) => return fail(e),
    };
    let mut rest = vec![0u8; len.saturating_sub(SECTION_PROBE_LEN)];
    if let Err(e) = reader.read_exact(&mut rest) {
        return fail(format!("reading the section header: {e}"));
    }
    loop {
        let mut header = [0u8; BLOCK_HEADER_LEN];
        match read_full(&mut reader, &mut header) {
            Ok(true) => {}
            Ok(false) => return,
            Err(e) => return fail(format!("reading a block: {e}")),
        }
        let (block_type, len) = match block_header(order, &header) {
            Ok(header) => header,
            Err(e) => return fail(e),
        };
        if len > MAX_BLOCK_LEN {
            return fail(format!(
                "a block of {len} bytes is larger than any podcap writes"
            ));
        }
        let mut bytes = vec![0u8; len];
        bytes[..BLOCK_HEADER_LEN].copy_from_slice(&header);
        if let Err(e) = reader.read_exact(&mut bytes[BLOCK_HEADER_LEN..]) {
            return fail(format!("reading a block's body: {e}"));
        }
        let kept = matches!(block_type, SHB | IDB | EPB | ISB);
        let minimum = if block_type == IDB { 16 } else { 12 };
        if kept && len >= minimum {
            let message = Message::Block {
                input,
                block_type,
                bytes,
            };
            if sender.send(message).is_err() {
                return; // the client left
            }
        }
    }
}

/// Fills `buffer`; `Ok(false)` when the input ended cleanly before its first byte.
fn read_full(reader: &mut dyn Read, buffer: &mut [u8]) -> io::Result<bool> {
    let mut filled = 0;
    while filled < buffer.len() {
        match reader.read(&mut buffer[filled..]) {
            Ok(0) if filled == 0 => return Ok(false),
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::super::testing::{BlockWriter, Order};
    use super::*;

    fn native() -> Order {
        if cfg!(target_endian = "little") {
            Order::Little
        } else {
            Order::Big
        }
    }

    /// A stream with two interfaces and a packet on each, at `times`.
    fn stream(names: [&str; 2], times: [u64; 2]) -> Vec<u8> {
        let mut w = BlockWriter::new(native());
        w.section_header();
        w.interface(names[0], 9);
        w.interface(names[1], 9);
        w.enhanced_packet(1, times[1], &[0xbb; 20], 20, Some(2));
        w.enhanced_packet(0, times[0], &[0xaa; 20], 20, Some(1));
        w.statistics(1, 5, &[], None, None);
        w.bytes
    }

    fn input(name: &str, bytes: Vec<u8>) -> LiveInput {
        LiveInput {
            name: name.into(),
            reader: Box::new(io::Cursor::new(bytes)),
        }
    }

    /// (interface ids of the packets in order, number of IDBs) of an interleaved stream.
    fn read(bytes: &[u8]) -> (Vec<(u32, u8)>, usize) {
        let order = ByteOrder::native();
        let mut at = 0;
        let mut packets = Vec::new();
        let mut interfaces = 0;
        while at < bytes.len() {
            let (block_type, len) = block_header(order, &bytes[at..at + 8]).unwrap();
            match block_type {
                IDB => interfaces += 1,
                EPB => packets.push((order.u32(bytes, at + 8), bytes[at + 28])),
                _ => {}
            }
            at += len;
        }
        (packets, interfaces)
    }

    #[test]
    fn interfaces_are_renumbered_and_every_packet_kept() {
        let mut out = Vec::new();
        let report = interleave(
            vec![
                input("node-a", stream(["a0", "a1"], [10, 20])),
                input("node-b", stream(["b0", "b1"], [15, 25])),
            ],
            &mut out,
        )
        .unwrap();
        assert_eq!(
            report,
            LiveReport {
                packets: 4,
                failed_inputs: vec![]
            }
        );
        let (packets, interfaces) = read(&out);
        assert_eq!(interfaces, 4);
        // Each input's interface 1 packet (0xbb) then its interface 0 packet (0xaa), on the
        // ids that input's interfaces got, whatever order the inputs arrived in.
        let mut by_input: Vec<Vec<(u32, u8)>> = vec![Vec::new(), Vec::new()];
        for (id, byte) in packets {
            by_input[(id / 2) as usize].push((id % 2, byte));
        }
        for packets in by_input {
            assert_eq!(packets, [(1, 0xbb), (0, 0xaa)]);
        }
        assert_eq!(
            u32::from_ne_bytes(out[8..12].try_into().unwrap()),
            BYTE_ORDER_MAGIC
        );
    }

    #[test]
    fn a_broken_input_is_reported_and_the_others_go_on() {
        let mut broken = stream(["x0", "x1"], [1, 2]);
        broken.truncate(broken.len() - 30);
        let mut out = Vec::new();
        let report = interleave(
            vec![
                input("bad", broken),
                input("good", stream(["g0", "g1"], [3, 4])),
                input("empty", Vec::new()),
            ],
            &mut out,
        )
        .unwrap();
        assert!(report.packets >= 2, "{report:?}");
        assert_eq!(report.failed_inputs.len(), 1, "{report:?}");
        assert!(report.failed_inputs[0].starts_with("bad: "), "{report:?}");
    }
}
