//! Hand-made packets for the protocols the kernel has no socket type for here (SCTP, UDPLite and
//! GRE over raw IP, 802.1Q-tagged Ethernet frames), their checksums, and a one-line description
//! of a captured frame for failure messages.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
pub const IPPROTO_GRE: u8 = 47;
pub const IPPROTO_ICMPV6: u8 = 58;
pub const IPPROTO_SCTP: u8 = 132;
pub const IPPROTO_UDPLITE: u8 = 136;

/// The Internet checksum (RFC 1071) of `parts` taken as one byte string.
pub fn internet_checksum(parts: &[&[u8]]) -> u16 {
    let bytes: Vec<u8> = parts.concat();
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// The pseudo-header of TCP/UDP/UDPLite checksums.
fn pseudo_header(src: IpAddr, dst: IpAddr, protocol: u8, len: usize) -> Vec<u8> {
    let mut out = Vec::new();
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            out.extend_from_slice(&s.octets());
            out.extend_from_slice(&d.octets());
            out.extend_from_slice(&[0, protocol]);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            out.extend_from_slice(&s.octets());
            out.extend_from_slice(&d.octets());
            out.extend_from_slice(&(len as u32).to_be_bytes());
            out.extend_from_slice(&[0, 0, 0, protocol]);
        }
        _ => panic!("mixed address families"),
    }
    out
}

/// CRC-32C (Castagnoli), as SCTP's checksum, bit by bit: speed does not matter here.
fn crc32c(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// An SCTP packet with one DATA chunk carrying `payload`, with a valid CRC-32C.
pub fn sctp_packet(src_port: u16, dst_port: u16, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&src_port.to_be_bytes());
    out.extend_from_slice(&dst_port.to_be_bytes());
    out.extend_from_slice(&0x0504_0302u32.to_be_bytes()); // verification tag
    out.extend_from_slice(&[0; 4]); // checksum, filled below
    let chunk_len = 16 + payload.len();
    out.extend_from_slice(&[0, 0x03]); // DATA, unfragmented (B and E bits)
    out.extend_from_slice(&(chunk_len as u16).to_be_bytes());
    out.extend_from_slice(&1u32.to_be_bytes()); // TSN
    out.extend_from_slice(&0u16.to_be_bytes()); // stream id
    out.extend_from_slice(&0u16.to_be_bytes()); // stream sequence
    out.extend_from_slice(&0u32.to_be_bytes()); // payload protocol id
    out.extend_from_slice(payload);
    out.resize(out.len() + (4 - chunk_len % 4) % 4, 0);
    let crc = crc32c(&out);
    // SCTP stores the CRC in little-endian byte order (RFC 4960 appendix B).
    out[8..12].copy_from_slice(&crc.to_le_bytes());
    out
}

/// A UDPLite datagram whose checksum covers the whole datagram (coverage 0).
pub fn udplite_packet(
    src: IpAddr,
    dst: IpAddr,
    src_port: u16,
    dst_port: u16,
    payload: &[u8],
) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&src_port.to_be_bytes());
    out.extend_from_slice(&dst_port.to_be_bytes());
    out.extend_from_slice(&0u16.to_be_bytes()); // checksum coverage: 0 = everything
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(payload);
    let sum = internet_checksum(&[&pseudo_header(src, dst, IPPROTO_UDPLITE, out.len()), &out]);
    out[6..8].copy_from_slice(&sum.to_be_bytes());
    out
}

/// A minimal GRE header (no options) carrying opaque bytes. The protocol type is the local
/// experimental ethertype 0x88B5, so tshark shows the payload as data instead of dissecting an
/// inner IP packet whose ports would match the port display filters.
pub fn gre_packet(payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, 0x88, 0xB5];
    out.extend_from_slice(payload);
    out
}

/// An IPv4 header + `payload` for an IPPROTO_RAW socket. The kernel fills in the total length,
/// the identification and the header checksum of a raw IPPROTO_RAW packet; they are computed here
/// anyway, so the same bytes also serve in a hand-made Ethernet frame.
pub fn ipv4_packet(src: Ipv4Addr, dst: Ipv4Addr, protocol: u8, id: u16, payload: &[u8]) -> Vec<u8> {
    let total = 20 + payload.len();
    let mut out = vec![0x45, 0];
    out.extend_from_slice(&(total as u16).to_be_bytes());
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&0x4000u16.to_be_bytes()); // DF, not a fragment
    out.extend_from_slice(&[64, protocol, 0, 0]);
    out.extend_from_slice(&src.octets());
    out.extend_from_slice(&dst.octets());
    let sum = internet_checksum(&[&out]);
    out[10..12].copy_from_slice(&sum.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// An IPv6 header + `payload`: the transport header follows the fixed header directly.
pub fn ipv6_packet(src: Ipv6Addr, dst: Ipv6Addr, next_header: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0x60, 0, 0, 0];
    out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    out.extend_from_slice(&[next_header, 64]);
    out.extend_from_slice(&src.octets());
    out.extend_from_slice(&dst.octets());
    out.extend_from_slice(payload);
    out
}

/// A UDP datagram with a valid checksum.
pub fn udp_packet(
    src: IpAddr,
    dst: IpAddr,
    src_port: u16,
    dst_port: u16,
    payload: &[u8],
) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&src_port.to_be_bytes());
    out.extend_from_slice(&dst_port.to_be_bytes());
    out.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(payload);
    let sum = internet_checksum(&[&pseudo_header(src, dst, IPPROTO_UDP, out.len()), &out]);
    out[6..8].copy_from_slice(&if sum == 0 { 0xffff } else { sum }.to_be_bytes());
    out
}

/// An Ethernet frame with an 802.1Q tag.
pub fn vlan_frame(
    dst: [u8; 6],
    src: [u8; 6],
    vlan_id: u16,
    ethertype: u16,
    payload: &[u8],
) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&dst);
    out.extend_from_slice(&src);
    out.extend_from_slice(&0x8100u16.to_be_bytes());
    out.extend_from_slice(&(vlan_id & 0x0fff).to_be_bytes());
    out.extend_from_slice(&ethertype.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// An ICMP (v4) echo request with a valid checksum.
pub fn icmp_echo_request(id: u16, seq: u16, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![8, 0, 0, 0];
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(payload);
    let sum = internet_checksum(&[&out]);
    out[2..4].copy_from_slice(&sum.to_be_bytes());
    out
}

/// An ICMPv6 echo request; the kernel fills in the checksum of raw ICMPv6 sockets.
pub fn icmpv6_echo_request(id: u16, seq: u16, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![128, 0, 0, 0];
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// What a frame is, in one line: `02:44:..:02 > 02:44:..:01 vlan 100 IPv4 10.244.3.2 > 10.244.3.1 proto 17 ports 33000 > 53 len 60`.
pub fn describe(frame: &[u8]) -> String {
    let mac = |m: &[u8]| {
        m.iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":")
    };
    if frame.len() < 14 {
        return format!("runt frame of {} bytes", frame.len());
    }
    let mut text = format!("{} > {}", mac(&frame[6..12]), mac(&frame[0..6]));
    let mut offset = 12;
    let mut ethertype = u16::from_be_bytes([frame[12], frame[13]]);
    while (ethertype == 0x8100 || ethertype == 0x88a8) && frame.len() >= offset + 6 {
        let tci = u16::from_be_bytes([frame[offset + 2], frame[offset + 3]]);
        text += &format!(" vlan {}", tci & 0x0fff);
        offset += 4;
        ethertype = u16::from_be_bytes([frame[offset], frame[offset + 1]]);
    }
    let l3 = &frame[offset + 2..];
    let ports = |proto: u8, l4: &[u8]| -> String {
        if matches!(
            proto,
            IPPROTO_TCP | IPPROTO_UDP | IPPROTO_SCTP | IPPROTO_UDPLITE
        ) && l4.len() >= 4
        {
            format!(
                " ports {} > {}",
                u16::from_be_bytes([l4[0], l4[1]]),
                u16::from_be_bytes([l4[2], l4[3]])
            )
        } else if matches!(proto, IPPROTO_ICMP | IPPROTO_ICMPV6) && !l4.is_empty() {
            format!(" type {}", l4[0])
        } else {
            String::new()
        }
    };
    match ethertype {
        0x0800 if l3.len() >= 20 => {
            let ihl = usize::from(l3[0] & 0x0f) * 4;
            let src = Ipv4Addr::new(l3[12], l3[13], l3[14], l3[15]);
            let dst = Ipv4Addr::new(l3[16], l3[17], l3[18], l3[19]);
            text += &format!(
                " IPv4 {src} > {dst} proto {}{}",
                l3[9],
                ports(l3[9], l3.get(ihl..).unwrap_or(&[]))
            );
        }
        0x86dd if l3.len() >= 40 => {
            let src = Ipv6Addr::from(<[u8; 16]>::try_from(&l3[8..24]).unwrap());
            let dst = Ipv6Addr::from(<[u8; 16]>::try_from(&l3[24..40]).unwrap());
            text += &format!(
                " IPv6 {src} > {dst} next {}{}",
                l3[6],
                ports(l3[6], &l3[40..])
            );
        }
        0x0806 => text += " ARP",
        other => text += &format!(" ethertype {other:#06x}"),
    }
    text + &format!(" len {}", frame.len())
}
