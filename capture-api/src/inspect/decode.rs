//! One captured frame turned into a row of the capture preview: source, destination, protocol
//! and a one-line summary in the spirit of Wireshark's Info column. Parsing is etherparse's lax
//! slicer, so a frame cut short by the snap length still shows what its headers say; what
//! cannot be parsed is named, never guessed.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr};

use etherparse::{
    ArpOperation, Icmpv4Type, Icmpv6Type, LaxNetSlice, LaxSlicedPacket, LinkSlice, TcpSlice,
    TransportSlice, UdpSlice,
};

use super::dns;

/// Ethernet, the link type of every capture podcap writes.
pub const LINKTYPE_ETHERNET: u16 = 1;

/// What the preview shows of one frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    pub source: String,
    pub destination: String,
    pub protocol: String,
    pub info: String,
}

/// Decodes a frame of link type `link_type`.
pub fn decode(link_type: u16, frame: &[u8]) -> Decoded {
    if link_type != LINKTYPE_ETHERNET {
        return Decoded {
            source: String::new(),
            destination: String::new(),
            protocol: format!("link type {link_type}"),
            info: format!("{} bytes", frame.len()),
        };
    }
    let packet = match LaxSlicedPacket::from_ethernet(frame) {
        Ok(packet) => packet,
        Err(_) => {
            return Decoded {
                source: String::new(),
                destination: String::new(),
                protocol: "Ethernet".into(),
                info: format!(
                    "frame too short for an Ethernet header ({} bytes)",
                    frame.len()
                ),
            }
        }
    };
    match &packet.net {
        Some(LaxNetSlice::Ipv4(ip)) => {
            let header = ip.header();
            let source = IpAddr::V4(header.source_addr());
            let destination = IpAddr::V4(header.destination_addr());
            let fragment = header.fragments_offset().value() > 0;
            ip_packet(&packet, source, destination, header.protocol().0, fragment)
        }
        Some(LaxNetSlice::Ipv6(ip)) => {
            let header = ip.header();
            ip_packet(
                &packet,
                IpAddr::V6(header.source_addr()),
                IpAddr::V6(header.destination_addr()),
                ip.payload().ip_number.0,
                ip.payload().fragmented,
            )
        }
        Some(LaxNetSlice::Arp(arp)) => {
            let sender = ipv4_of(arp.sender_protocol_addr());
            let target = ipv4_of(arp.target_protocol_addr());
            let info = match arp.operation() {
                ArpOperation::REQUEST => format!("Who has {target}? Tell {sender}"),
                ArpOperation::REPLY => {
                    format!("{sender} is at {}", mac(arp.sender_hw_addr()))
                }
                other => format!("operation {}", other.0),
            };
            Decoded {
                source: mac(arp.sender_hw_addr()),
                destination: mac(arp.target_hw_addr()),
                protocol: "ARP".into(),
                info,
            }
        }
        None => {
            let (source, destination, ether_type) = match &packet.link {
                Some(LinkSlice::Ethernet2(ethernet)) => (
                    mac(&ethernet.source()),
                    mac(&ethernet.destination()),
                    Some(ethernet.ether_type().0),
                ),
                _ => (String::new(), String::new(), None),
            };
            let info = match (ether_type, &packet.stop_err) {
                (_, Some((error, _))) => format!("not decoded: {error}"),
                (Some(ether_type), None) => format!("EtherType 0x{ether_type:04x}"),
                (None, None) => format!("{} bytes", frame.len()),
            };
            Decoded {
                source,
                destination,
                protocol: "Ethernet".into(),
                info,
            }
        }
    }
}

/// An IPv4 or IPv6 packet: the transport layer names the protocol and the summary.
fn ip_packet(
    packet: &LaxSlicedPacket<'_>,
    source: IpAddr,
    destination: IpAddr,
    ip_number: u8,
    later_fragment: bool,
) -> Decoded {
    let (protocol, info) = match &packet.transport {
        Some(TransportSlice::Tcp(tcp)) => ("TCP".to_string(), tcp_info(tcp)),
        Some(TransportSlice::Udp(udp)) => udp_summary(udp),
        Some(TransportSlice::Icmpv4(icmp)) => ("ICMP".to_string(), icmpv4_info(icmp.icmp_type())),
        Some(TransportSlice::Icmpv6(icmp)) => ("ICMPv6".to_string(), icmpv6_info(icmp.icmp_type())),
        Some(TransportSlice::Igmp(_)) => ("IGMP".to_string(), String::new()),
        None => {
            let name = ip_protocol_name(ip_number);
            let info = if later_fragment {
                "fragment (continued)".to_string()
            } else if let Some((error, _)) = &packet.stop_err {
                format!("not decoded: {error}")
            } else {
                String::new()
            };
            (name, info)
        }
    };
    Decoded {
        source: source.to_string(),
        destination: destination.to_string(),
        protocol,
        info,
    }
}

fn tcp_info(tcp: &TcpSlice<'_>) -> String {
    let mut flags = Vec::with_capacity(4);
    for (set, name) in [
        (tcp.syn(), "SYN"),
        (tcp.fin(), "FIN"),
        (tcp.rst(), "RST"),
        (tcp.psh(), "PSH"),
        (tcp.ack(), "ACK"),
    ] {
        if set {
            flags.push(name);
        }
    }
    let mut info = format!("{} → {}", tcp.source_port(), tcp.destination_port());
    if !flags.is_empty() {
        let _ = write!(info, " [{}]", flags.join(", "));
    }
    let _ = write!(info, " Seq={}", tcp.sequence_number());
    if tcp.ack() {
        let _ = write!(info, " Ack={}", tcp.acknowledgment_number());
    }
    let _ = write!(
        info,
        " Win={} Len={}",
        tcp.window_size(),
        tcp.payload().len()
    );
    info
}

/// UDP, or DNS when either port is 53 and the payload reads as a DNS message.
fn udp_summary(udp: &UdpSlice<'_>) -> (String, String) {
    let ports = (udp.source_port(), udp.destination_port());
    if ports.0 == dns::PORT || ports.1 == dns::PORT {
        if let Some(summary) = dns::summary(udp.payload()) {
            return ("DNS".to_string(), summary);
        }
    }
    (
        "UDP".to_string(),
        format!("{} → {} Len={}", ports.0, ports.1, udp.payload().len()),
    )
}

fn icmpv4_info(kind: Icmpv4Type) -> String {
    match kind {
        Icmpv4Type::EchoRequest(echo) => {
            format!("Echo (ping) request id=0x{:04x}, seq={}", echo.id, echo.seq)
        }
        Icmpv4Type::EchoReply(echo) => {
            format!("Echo (ping) reply id=0x{:04x}, seq={}", echo.id, echo.seq)
        }
        Icmpv4Type::DestinationUnreachable(_) => "Destination unreachable".into(),
        Icmpv4Type::Redirect(_) => "Redirect".into(),
        Icmpv4Type::TimeExceeded(_) => "Time-to-live exceeded".into(),
        Icmpv4Type::ParameterProblem(_) => "Parameter problem".into(),
        Icmpv4Type::TimestampRequest(_) => "Timestamp request".into(),
        Icmpv4Type::TimestampReply(_) => "Timestamp reply".into(),
        Icmpv4Type::Unknown {
            type_u8, code_u8, ..
        } => format!("type {type_u8}, code {code_u8}"),
    }
}

fn icmpv6_info(kind: Icmpv6Type) -> String {
    match kind {
        Icmpv6Type::EchoRequest(echo) => {
            format!("Echo (ping) request id=0x{:04x}, seq={}", echo.id, echo.seq)
        }
        Icmpv6Type::EchoReply(echo) => {
            format!("Echo (ping) reply id=0x{:04x}, seq={}", echo.id, echo.seq)
        }
        Icmpv6Type::DestinationUnreachable(_) => "Destination unreachable".into(),
        Icmpv6Type::PacketTooBig { mtu } => format!("Packet too big, MTU {mtu}"),
        Icmpv6Type::TimeExceeded(_) => "Time exceeded".into(),
        Icmpv6Type::ParameterProblem(_) => "Parameter problem".into(),
        Icmpv6Type::RouterSolicitation => "Router solicitation".into(),
        Icmpv6Type::RouterAdvertisement(_) => "Router advertisement".into(),
        Icmpv6Type::NeighborSolicitation => "Neighbor solicitation".into(),
        Icmpv6Type::NeighborAdvertisement(_) => "Neighbor advertisement".into(),
        Icmpv6Type::Redirect => "Redirect".into(),
        Icmpv6Type::Unknown {
            type_u8, code_u8, ..
        } => format!("type {type_u8}, code {code_u8}"),
    }
}

/// The name of an IP protocol number etherparse does not slice.
fn ip_protocol_name(number: u8) -> String {
    match number {
        // Named too when their header was cut off by the snap length.
        1 => "ICMP".into(),
        6 => "TCP".into(),
        17 => "UDP".into(),
        58 => "ICMPv6".into(),
        4 => "IPIP".into(),
        41 => "IPv6-in-IP".into(),
        47 => "GRE".into(),
        50 => "ESP".into(),
        51 => "AH".into(),
        132 => "SCTP".into(),
        136 => "UDPLite".into(),
        other => format!("IP proto {other}"),
    }
}

fn ipv4_of(bytes: &[u8]) -> String {
    match <[u8; 4]>::try_from(bytes) {
        Ok(octets) => Ipv4Addr::from(octets).to_string(),
        Err(_) => hex_bytes(bytes),
    }
}

fn mac(bytes: &[u8]) -> String {
    hex_bytes(bytes)
}

fn hex_bytes(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(bytes.len() * 3);
    for (index, byte) in bytes.iter().enumerate() {
        if index > 0 {
            text.push(':');
        }
        let _ = write!(text, "{byte:02x}");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;

    const MAC_A: [u8; 6] = [0x02, 0, 0, 0, 0, 1];
    const MAC_B: [u8; 6] = [0x02, 0, 0, 0, 0, 2];

    fn build(
        builder: etherparse::PacketBuilderStep<etherparse::UdpHeader>,
        payload: &[u8],
    ) -> Vec<u8> {
        let mut frame = Vec::new();
        builder.write(&mut frame, payload).unwrap();
        frame
    }

    #[test]
    fn tcp_shows_ports_flags_and_length() {
        let mut frame = Vec::new();
        PacketBuilder::ethernet2(MAC_A, MAC_B)
            .ipv4([10, 244, 1, 2], [10, 244, 1, 1], 64)
            .tcp(43210, 443, 1000, 64240)
            .syn()
            .write(&mut frame, &[])
            .unwrap();
        let row = decode(LINKTYPE_ETHERNET, &frame);
        assert_eq!(row.source, "10.244.1.2");
        assert_eq!(row.destination, "10.244.1.1");
        assert_eq!(row.protocol, "TCP");
        assert_eq!(row.info, "43210 → 443 [SYN] Seq=1000 Win=64240 Len=0");
    }

    #[test]
    fn udp_over_ipv6_and_dns_queries_are_named() {
        let frame = build(
            PacketBuilder::ethernet2(MAC_A, MAC_B)
                .ipv6(
                    [0xfd, 0, 2, 0x44, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
                    [0xfd, 0, 2, 0x44, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
                    64,
                )
                .udp(5000, 6000),
            b"hello",
        );
        let row = decode(LINKTYPE_ETHERNET, &frame);
        assert_eq!(row.source, "fd00:244:1::2");
        assert_eq!(
            (row.protocol.as_str(), row.info.as_str()),
            ("UDP", "5000 → 6000 Len=5")
        );

        let query = dns::tests::query(0x1234, "web.shop.svc", 28);
        let frame = build(
            PacketBuilder::ethernet2(MAC_A, MAC_B)
                .ipv4([10, 244, 1, 2], [10, 244, 1, 1], 64)
                .udp(40000, 53),
            &query,
        );
        let row = decode(LINKTYPE_ETHERNET, &frame);
        assert_eq!(row.protocol, "DNS");
        assert_eq!(row.info, "Standard query 0x1234 AAAA web.shop.svc");
    }

    #[test]
    fn icmp_echo_and_arp() {
        let mut frame = Vec::new();
        PacketBuilder::ethernet2(MAC_A, MAC_B)
            .ipv4([10, 244, 1, 2], [10, 244, 1, 1], 64)
            .icmpv4_echo_request(7, 3)
            .write(&mut frame, b"ping")
            .unwrap();
        let row = decode(LINKTYPE_ETHERNET, &frame);
        assert_eq!(row.protocol, "ICMP");
        assert_eq!(row.info, "Echo (ping) request id=0x0007, seq=3");

        let mut arp = vec![0xff; 6];
        arp.extend_from_slice(&MAC_A);
        arp.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
        arp.extend_from_slice(&MAC_A);
        arp.extend_from_slice(&[10, 244, 1, 2]);
        arp.extend_from_slice(&[0; 6]);
        arp.extend_from_slice(&[10, 244, 1, 1]);
        let row = decode(LINKTYPE_ETHERNET, &arp);
        assert_eq!(row.protocol, "ARP");
        assert_eq!(row.info, "Who has 10.244.1.1? Tell 10.244.1.2");
    }

    #[test]
    fn truncated_and_foreign_frames_are_named_not_guessed() {
        let mut frame = Vec::new();
        PacketBuilder::ethernet2(MAC_A, MAC_B)
            .ipv4([10, 244, 1, 2], [10, 244, 1, 1], 64)
            .tcp(1, 2, 3, 4)
            .write(&mut frame, &[0; 100])
            .unwrap();
        // Snap length 40: the IPv4 header survives, the TCP header does not.
        let row = decode(LINKTYPE_ETHERNET, &frame[..40]);
        assert_eq!(row.source, "10.244.1.2");
        assert_eq!(row.protocol, "TCP");
        assert!(row.info.starts_with("not decoded"), "{row:?}");

        assert_eq!(decode(LINKTYPE_ETHERNET, &[1, 2, 3]).protocol, "Ethernet");
        assert_eq!(decode(101, &[0x45; 20]).protocol, "link type 101");
    }
}
