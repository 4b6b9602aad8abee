//! Capture file formats: what goes at the start of a file, how each packet is recorded, and what
//! closes a file. Encoders append to a caller-owned buffer, so the hot path allocates nothing and
//! the caller decides when to write (large writes, few syscalls).

pub(crate) mod pcap;
/// Block encoding helpers are shared with the merge writer.
pub(crate) mod pcapng;

use capture_spec::OutputFormat;

use crate::afpacket::Packet;

/// One interface as the file describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceInfo {
    /// The interface name (`if_name`), e.g. the pod's host-side veth.
    pub name: String,
    /// Free text (`if_description`), e.g. "shop/web-1 on node-a".
    pub description: String,
    /// The libpcap expression of the capture filter (`if_filter`); empty for none.
    pub filter_expression: String,
}

/// What a file starts with.
pub struct FileHeaderInfo<'a> {
    pub interfaces: &'a [InterfaceInfo],
    pub snap_length: u32,
    pub application: &'a str,
}

/// Per-interface counters written when a file closes (pcapng Interface Statistics Block).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct InterfaceTotals {
    pub started_ns: u64,
    pub at_ns: u64,
    /// Packets the kernel accepted through the filter (delivered or dropped).
    pub kernel_received: u64,
    pub kernel_drops: u64,
    /// Packets written to files so far.
    pub delivered: u64,
}

/// A packet on its way into a file, with the interface it belongs to in that file.
pub struct PacketRecord<'a> {
    pub interface_id: u32,
    pub packet: &'a Packet<'a>,
}

/// Length of the 802.1Q tag put back into frames whose tag the kernel stripped.
const VLAN_TAG_LEN: usize = 4;
/// Destination and source MAC: the tag goes right after them.
const MAC_ADDRESSES_LEN: usize = 12;

fn has_tag_to_restore(packet: &Packet<'_>) -> bool {
    packet.vlan.is_some() && packet.data.len() >= MAC_ADDRESSES_LEN
}

/// Bytes of frame a file holds for `packet`: the captured bytes, plus the restored VLAN tag.
pub fn frame_len(packet: &Packet<'_>) -> usize {
    packet.data.len()
        + if has_tag_to_restore(packet) {
            VLAN_TAG_LEN
        } else {
            0
        }
}

impl PacketRecord<'_> {
    fn has_tag_to_restore(&self) -> bool {
        has_tag_to_restore(self.packet)
    }

    pub fn captured_len(&self) -> usize {
        frame_len(self.packet)
    }

    pub fn original_len(&self) -> u32 {
        self.packet.original_len
            + if self.has_tag_to_restore() {
                VLAN_TAG_LEN as u32
            } else {
                0
            }
    }

    /// Appends the frame as it was on the wire: the kernel hands VLAN frames over with the tag
    /// stripped, so it is put back (as libpcap does) and the file shows the VLAN.
    #[inline]
    fn put_frame(&self, out: &mut Vec<u8>) {
        let data = self.packet.data;
        match self.packet.vlan {
            Some(tag) if self.has_tag_to_restore() => {
                out.extend_from_slice(&data[..MAC_ADDRESSES_LEN]);
                out.extend_from_slice(&tag.tpid.to_be_bytes());
                out.extend_from_slice(&tag.tci.to_be_bytes());
                out.extend_from_slice(&data[MAC_ADDRESSES_LEN..]);
            }
            _ => out.extend_from_slice(data),
        }
    }
}

/// Encodes records in one format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Encoder {
    format: OutputFormat,
}

impl Encoder {
    pub fn new(format: OutputFormat) -> Encoder {
        Encoder { format }
    }

    pub fn format(&self) -> OutputFormat {
        self.format
    }

    pub fn file_header(&self, out: &mut Vec<u8>, info: &FileHeaderInfo<'_>) {
        match self.format {
            OutputFormat::Pcapng => pcapng::file_header(out, info),
            OutputFormat::Pcap => pcap::file_header(out, info),
        }
    }

    /// The bytes [`Encoder::packet`] will append for this record.
    pub fn packet_len(&self, record: &PacketRecord<'_>) -> usize {
        match self.format {
            OutputFormat::Pcapng => pcapng::packet_len(record.captured_len()),
            OutputFormat::Pcap => pcap::packet_len(record.captured_len()),
        }
    }

    #[inline]
    pub fn packet(&self, out: &mut Vec<u8>, record: &PacketRecord<'_>) {
        match self.format {
            OutputFormat::Pcapng => pcapng::packet(out, record),
            OutputFormat::Pcap => pcap::packet(out, record),
        }
    }

    /// The bytes [`Encoder::file_footer`] appends for `interfaces` interfaces.
    pub fn footer_len(&self, interfaces: usize) -> usize {
        match self.format {
            OutputFormat::Pcapng => interfaces * pcapng::ISB_LEN,
            OutputFormat::Pcap => 0,
        }
    }

    /// What closes a file: pcapng's statistics blocks; nothing for pcap.
    pub fn file_footer(&self, out: &mut Vec<u8>, totals: &[InterfaceTotals]) {
        if self.format == OutputFormat::Pcapng {
            for (id, interface_totals) in totals.iter().enumerate() {
                pcapng::interface_statistics(out, id as u32, interface_totals);
            }
        }
    }
}
