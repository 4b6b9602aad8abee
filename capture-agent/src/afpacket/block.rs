//! One TPACKET_V3 block handed over by the kernel, and the packets in it.
//!
//! A block is a run of packets, each a `tpacket3_hdr` followed by a `sockaddr_ll` and the frame.
//! Parsing is done with bounds-checked reads of the block's bytes (no pointer casts), so a
//! malformed offset ends iteration instead of reading outside the block. Dropping the [`Block`]
//! gives it back to the kernel.

use std::sync::atomic::{AtomicU32, Ordering};

/// Offsets inside `struct tpacket_block_desc` (version, offset_to_priv, then `tpacket_hdr_v1`).
pub(super) const BLOCK_STATUS_OFFSET: usize = 8;
pub(super) const NUM_PKTS_OFFSET: usize = 12;
pub(super) const FIRST_PACKET_OFFSET: usize = 16;
/// sizeof(struct tpacket_block_desc): the body handed to [`Block`] starts here.
pub(super) const BLOCK_HEADER_LEN: usize = 48;
/// The block header plus one packet's headers: what a block holds besides packet bytes.
pub(super) const BLOCK_AND_PACKET_OVERHEAD: u32 = (BLOCK_HEADER_LEN + PACKET_HEADERS_LEN) as u32;

/// Offsets inside `struct tpacket3_hdr`.
const TP_NEXT_OFFSET: usize = 0;
const TP_SEC: usize = 4;
const TP_NSEC: usize = 8;
const TP_SNAPLEN: usize = 12;
const TP_LEN: usize = 16;
const TP_STATUS: usize = 20;
const TP_MAC: usize = 24;
const TP_VLAN_TCI: usize = 32;
const TP_VLAN_TPID: usize = 36;
/// `sockaddr_ll` follows the header at TPACKET_ALIGN(sizeof(tpacket3_hdr)) = 48.
const SLL_OFFSET: usize = 48;
const SLL_PKTTYPE: usize = SLL_OFFSET + 10;
/// tpacket3_hdr (48) + sockaddr_ll (20), 16-byte aligned.
const PACKET_HEADERS_LEN: usize = 80;

/// Which way a packet crossed the interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Received on the interface (on a pod's host veth: sent by the pod). Carries the link-layer
    /// packet type: host, broadcast, multicast or another host.
    Inbound(u8),
    /// Sent out of the interface (on a pod's host veth: sent to the pod).
    Outbound,
}

impl Direction {
    /// The same crossing as the other end of a veth pair sees it (a pod, when its host-side veth
    /// is captured): what one end receives the other sent, and what one end sends the other
    /// receives, as unicast to it, broadcast or multicast by the frame's destination MAC.
    pub fn seen_from_peer(self, frame: &[u8]) -> Direction {
        match self {
            Direction::Inbound(_) => Direction::Outbound,
            Direction::Outbound => Direction::Inbound(match frame.first() {
                Some(_) if frame.get(..6) == Some(&[0xff; 6]) => libc::PACKET_BROADCAST,
                Some(first) if first & 1 == 1 => libc::PACKET_MULTICAST,
                _ => libc::PACKET_HOST,
            }),
        }
    }
}

/// Whose point of view a ring's packet directions take.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Viewpoint {
    /// The captured interface's own (the CLI on any interface; a pod's own eth0).
    #[default]
    Interface,
    /// The other end of the captured veth: a pod's, when its host-side veth is captured, so a
    /// pod's files say in/out the same way whichever end is captured.
    Peer,
}

/// The 802.1Q/802.1ad tag the kernel stripped from the frame before handing it over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VlanTag {
    pub tpid: u16,
    pub tci: u16,
}

/// One captured packet, borrowed from its block.
#[derive(Debug, Clone, Copy)]
pub struct Packet<'a> {
    /// Kernel receive time, nanoseconds since the Unix epoch.
    pub timestamp_ns: u64,
    /// Length on the wire.
    pub original_len: u32,
    /// The bytes kept (at most the snap length), starting at the Ethernet header.
    pub data: &'a [u8],
    pub direction: Direction,
    pub vlan: Option<VlanTag>,
}

/// A block the kernel has handed over; it goes back to the kernel on drop.
pub struct Block<'a> {
    /// The block's bytes after its 48-byte header; packet offsets are from the block start.
    body: &'a [u8],
    num_packets: u32,
    first_packet: u32,
    status: &'a AtomicU32,
    viewpoint: Viewpoint,
}

impl<'a> Block<'a> {
    pub(super) fn new(
        body: &'a [u8],
        num_packets: u32,
        first_packet: u32,
        status: &'a AtomicU32,
    ) -> Self {
        Block {
            body,
            num_packets,
            first_packet,
            status,
            viewpoint: Viewpoint::Interface,
        }
    }

    /// The block with its packets' directions as `viewpoint` sees them.
    pub(super) fn seen_from(mut self, viewpoint: Viewpoint) -> Self {
        self.viewpoint = viewpoint;
        self
    }

    pub fn len(&self) -> u32 {
        self.num_packets
    }

    pub fn is_empty(&self) -> bool {
        self.num_packets == 0
    }

    /// The packets in kernel order.
    pub fn packets(&self) -> Packets<'_> {
        Packets {
            body: self.body,
            next: (self.first_packet as usize).checked_sub(BLOCK_HEADER_LEN),
            remaining: self.num_packets,
            viewpoint: self.viewpoint,
        }
    }
}

impl Drop for Block<'_> {
    fn drop(&mut self) {
        // Release: our reads of the block happen before the kernel may overwrite it.
        self.status.store(libc::TP_STATUS_KERNEL, Ordering::Release);
    }
}

/// Iterator over a block's packets.
pub struct Packets<'a> {
    body: &'a [u8],
    /// Offset of the next packet header in `body`; `None` once done or on a malformed offset.
    next: Option<usize>,
    remaining: u32,
    viewpoint: Viewpoint,
}

#[inline]
fn read_u32(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

#[inline]
fn read_u16(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(bytes.get(at..at + 2)?.try_into().ok()?))
}

impl<'a> Packets<'a> {
    #[inline]
    fn parse(&self, at: usize) -> Option<(Packet<'a>, u32)> {
        let header = self.body.get(at..at + PACKET_HEADERS_LEN)?;
        let status = read_u32(header, TP_STATUS)?;
        let captured = read_u32(header, TP_SNAPLEN)? as usize;
        let mac = usize::from(read_u16(header, TP_MAC)?);
        let data = self.body.get(at + mac..at + mac + captured)?;
        let vlan = (status & libc::TP_STATUS_VLAN_VALID != 0).then(|| VlanTag {
            tpid: if status & libc::TP_STATUS_VLAN_TPID_VALID != 0 {
                read_u16(header, TP_VLAN_TPID).unwrap_or(0x8100)
            } else {
                0x8100
            },
            tci: read_u32(header, TP_VLAN_TCI).unwrap_or(0) as u16,
        });
        let packet_type = header[SLL_PKTTYPE];
        let direction = if packet_type == libc::PACKET_OUTGOING {
            Direction::Outbound
        } else {
            Direction::Inbound(packet_type)
        };
        let direction = match self.viewpoint {
            Viewpoint::Interface => direction,
            Viewpoint::Peer => direction.seen_from_peer(data),
        };
        let packet = Packet {
            timestamp_ns: u64::from(read_u32(header, TP_SEC)?) * 1_000_000_000
                + u64::from(read_u32(header, TP_NSEC)?),
            original_len: read_u32(header, TP_LEN)?,
            data,
            direction,
            vlan,
        };
        Some((packet, read_u32(header, TP_NEXT_OFFSET)?))
    }
}

impl<'a> Iterator for Packets<'a> {
    type Item = Packet<'a>;

    // Inlined into the capture loop: at 64-byte packets the call and the by-value return of
    // the packet cost as much as the rest of the per-packet work.
    #[inline]
    fn next(&mut self) -> Option<Packet<'a>> {
        if self.remaining == 0 {
            return None;
        }
        let at = self.next?;
        let Some((packet, next_offset)) = self.parse(at) else {
            tracing::warn!(
                offset = at,
                "malformed packet header in ring block; skipping the rest of the block"
            );
            self.next = None;
            return None;
        };
        self.remaining -= 1;
        self.next = (next_offset != 0).then(|| at + next_offset as usize);
        Some(packet)
    }
}

#[cfg(test)]
mod viewpoint_tests {
    use super::*;

    #[test]
    fn the_peer_sees_each_crossing_the_other_way() {
        let unicast = [0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2];
        let multicast = [0x01, 0x00, 0x5e, 0, 0, 1];
        let broadcast = [0xff; 12];
        let sent_by_pod = Direction::Inbound(libc::PACKET_OTHERHOST);
        assert_eq!(sent_by_pod.seen_from_peer(&unicast), Direction::Outbound);
        let to_pod = Direction::Outbound;
        assert_eq!(
            to_pod.seen_from_peer(&unicast),
            Direction::Inbound(libc::PACKET_HOST)
        );
        assert_eq!(
            to_pod.seen_from_peer(&multicast),
            Direction::Inbound(libc::PACKET_MULTICAST)
        );
        assert_eq!(
            to_pod.seen_from_peer(&broadcast),
            Direction::Inbound(libc::PACKET_BROADCAST)
        );
    }
}
