//! Traffic between a pod and its host end, every loop bounded in count and time.
//!
//! The pod side (functions meant to run inside [`in_pod`]) sends requests across the veth; the
//! host side ([`HostServices`], running in the test's own namespace, bound to the host end's
//! addresses only) answers them, so both directions appear on the host end. Sends are spaced a
//! little and every exchange waits for its answer, so the frames arrive one at a time and every
//! capturer sees them in the same order.

use std::io::{ErrorKind, Read, Write};
use std::net::{
    IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, TcpListener, TcpStream,
    UdpSocket,
};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use nix::sys::socket::{
    recv, sendto, setsockopt, socket, sockopt, AddressFamily, MsgFlags, SockFlag, SockProtocol,
    SockType, SockaddrIn, SockaddrIn6,
};
use nix::sys::time::TimeVal;

use crate::packets::{self, IPPROTO_GRE, IPPROTO_SCTP, IPPROTO_UDP, IPPROTO_UDPLITE};
use crate::pod::{in_pod, Pod, POD_IF, VLAN_ID};

/// Pause between two sends: long enough for the previous exchange to settle.
pub const GAP: Duration = Duration::from_millis(5);
/// No single wait for an answer lasts longer than this.
const IO_TIMEOUT: Duration = Duration::from_secs(2);

pub const TCP_PORTS: [u16; 3] = [8080, 443, 9000];
pub const UDP_PORTS: [u16; 2] = [53, 5353];
pub const SCTP_PORTS: [u16; 2] = [9899, 9900];
pub const UDPLITE_PORTS: [u16; 2] = [5000, 6000];
/// Source port of the hand-made SCTP/UDPLite/VLAN packets: outside every filter under test and
/// outside the ephemeral range (32768-60999), so it never collides with a kernel-chosen port.
pub const RAW_SOURCE_PORT: u16 = 31000;

/// Echo services on the host end: TCP on [`TCP_PORTS`] and UDP on [`UDP_PORTS`], IPv4 and IPv6.
/// Stopped and joined on drop.
pub struct HostServices {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl HostServices {
    pub fn start(pod: &Pod) -> HostServices {
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for ip in [IpAddr::V4(pod.host_v4), IpAddr::V6(pod.host_v6)] {
            for port in TCP_PORTS {
                let listener = TcpListener::bind((ip, port))
                    .unwrap_or_else(|e| panic!("binding TCP {ip} port {port}: {e}"));
                listener.set_nonblocking(true).unwrap();
                let stop = stop.clone();
                threads.push(thread::spawn(move || tcp_echo_server(listener, &stop)));
            }
            for port in UDP_PORTS {
                let socket = UdpSocket::bind((ip, port))
                    .unwrap_or_else(|e| panic!("binding UDP {ip} port {port}: {e}"));
                socket
                    .set_read_timeout(Some(Duration::from_millis(20)))
                    .unwrap();
                let stop = stop.clone();
                threads.push(thread::spawn(move || udp_echo_server(socket, &stop)));
            }
        }
        HostServices { stop, threads }
    }
}

impl Drop for HostServices {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

fn tcp_echo_server(listener: TcpListener, stop: &AtomicBool) {
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((mut stream, _)) => {
                stream.set_nonblocking(false).unwrap();
                stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
                let mut buf = [0u8; 2048];
                // Echo until the client closes (or stalls); then close our side.
                while let Ok(n) = stream.read(&mut buf) {
                    if n == 0 || stream.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => thread::sleep(Duration::from_millis(2)),
            Err(e) => panic!("accept: {e}"),
        }
    }
}

fn udp_echo_server(socket: UdpSocket, stop: &AtomicBool) {
    let mut buf = [0u8; 2048];
    while !stop.load(Ordering::SeqCst) {
        if let Ok((n, from)) = socket.recv_from(&mut buf) {
            let _ = socket.send_to(&buf[..n], from);
        }
    }
}

/// A UDP socket on the host end that receives and never reads: datagrams to it are accepted
/// (and silently dropped once its buffer is full) instead of answered with ICMP port unreachable.
/// The socket is held only to keep the port bound.
pub struct UdpSink(#[allow(dead_code)] UdpSocket);

impl UdpSink {
    pub fn bind(ip: IpAddr, port: u16) -> UdpSink {
        UdpSink(
            UdpSocket::bind((ip, port))
                .unwrap_or_else(|e| panic!("binding UDP sink {ip} port {port}: {e}")),
        )
    }
}

/// Lower bounds of what [`send_all_kinds`] put on the wire.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sent {
    /// Frames the test caused for sure (requests and their answers).
    pub frames: usize,
    /// 802.1Q-tagged frames among them.
    pub vlan_frames: usize,
}

/// Every kind of traffic the filters know, from the pod to the host end and back: TCP and UDP
/// (IPv4 and IPv6) with echoes, ICMP and ICMPv6 echo, hand-made SCTP, UDPLite and GRE packets
/// over raw IP (IPv4 and IPv6) and 802.1Q VLAN 100 UDP frames to port 53. Needs
/// [`HostServices`] running. Takes well under a second.
pub fn send_all_kinds(pod: &Pod) -> Sent {
    in_pod(pod, || {
        let mut sent = Sent::default();
        for ip in [IpAddr::V4(pod.host_v4), IpAddr::V6(pod.host_v6)] {
            for port in TCP_PORTS {
                sent.frames += tcp_echo(SocketAddr::new(ip, port), 2);
            }
            for port in UDP_PORTS {
                sent.frames += udp_echo(SocketAddr::new(ip, port), 2);
            }
        }
        sent.frames += icmp_echo(pod.host_v4, 2);
        sent.frames += icmpv6_echo(pod.host_v6, 2);
        sent.frames += raw_ip_protocols(pod, 2);
        let vlan = vlan_udp(pod, 53, 3);
        sent.frames += vlan;
        sent.vlan_frames += vlan;
        sent
    })
}

/// One TCP connection sending `messages` messages and reading each echo, then a clean close.
/// Returns the least number of frames this causes (handshake, messages and echoes, two FINs).
pub fn tcp_echo(server: SocketAddr, messages: usize) -> usize {
    let mut stream = TcpStream::connect_timeout(&server, IO_TIMEOUT)
        .unwrap_or_else(|e| panic!("connecting to {server}: {e}"));
    stream.set_nodelay(true).unwrap();
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    for i in 0..messages {
        let message = format!("podcap tcp {} message {i}", server.port());
        stream.write_all(message.as_bytes()).unwrap();
        let mut echo = vec![0u8; message.len()];
        stream
            .read_exact(&mut echo)
            .unwrap_or_else(|e| panic!("reading the echo from {server}: {e}"));
        assert_eq!(echo, message.as_bytes());
        thread::sleep(GAP);
    }
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    // The server closes once it reads our FIN; wait for its FIN so the connection is done.
    let mut rest = Vec::new();
    let _ = stream.read_to_end(&mut rest);
    drop(stream);
    thread::sleep(4 * GAP);
    3 + 2 * messages + 2
}

/// `count` UDP datagrams, each answered by the host's echo service. Returns the frames caused.
pub fn udp_echo(server: SocketAddr, count: usize) -> usize {
    let local: SocketAddr = match server {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(local).unwrap();
    socket.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    for i in 0..count {
        let message = format!("podcap udp {} datagram {i}", server.port());
        socket.send_to(message.as_bytes(), server).unwrap();
        let mut buf = [0u8; 256];
        let (n, _) = socket
            .recv_from(&mut buf)
            .unwrap_or_else(|e| panic!("waiting for the echo from {server}: {e}"));
        assert_eq!(&buf[..n], message.as_bytes());
        thread::sleep(GAP);
    }
    2 * count
}

/// `count` datagrams of `payload_len` bytes to `server` as fast as the kernel takes them, each
/// starting with its sequence number (u32, big endian), e.g. to a [`UdpSink`]. A short pause
/// every 50 datagrams keeps the receive backlog far from full. Returns when the last one is sent.
pub fn udp_burst(server: SocketAddr, count: u32, payload_len: usize) {
    let local: SocketAddr = match server {
        SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let socket = UdpSocket::bind(local).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut payload = vec![0x5au8; payload_len.max(4)];
    for sequence in 0..count {
        assert!(
            Instant::now() < deadline,
            "sending {count} datagrams took too long"
        );
        payload[..4].copy_from_slice(&sequence.to_be_bytes());
        socket
            .send_to(&payload, server)
            .unwrap_or_else(|e| panic!("sending datagram {sequence} to {server}: {e}"));
        if sequence % 50 == 49 && sequence + 1 < count {
            thread::sleep(Duration::from_millis(1));
        }
    }
}

/// The sequence number [`udp_burst`] put into a captured IPv4/UDP frame (no VLAN tag).
pub fn burst_sequence(frame: &[u8]) -> Option<u32> {
    let payload = frame.get(14 + 20 + 8..14 + 20 + 8 + 4)?;
    Some(u32::from_be_bytes(payload.try_into().unwrap()))
}

fn raw_socket(family: AddressFamily, protocol: SockProtocol) -> OwnedFd {
    let fd = socket(family, SockType::Raw, SockFlag::SOCK_CLOEXEC, protocol)
        .unwrap_or_else(|e| panic!("opening a raw {family:?} socket for {protocol:?}: {e}"));
    let timeout = TimeVal::new(0, 200_000);
    setsockopt(&fd, sockopt::ReceiveTimeout, &timeout).unwrap();
    setsockopt(&fd, sockopt::SendTimeout, &timeout).unwrap();
    fd
}

/// Receives on a raw socket until `is_answer` accepts a packet or `IO_TIMEOUT` passes.
fn wait_for_answer(fd: &OwnedFd, what: &str, is_answer: impl Fn(&[u8]) -> bool) {
    let deadline = Instant::now() + IO_TIMEOUT;
    let mut buf = [0u8; 2048];
    while Instant::now() < deadline {
        match recv(fd.as_raw_fd(), &mut buf, MsgFlags::empty()) {
            Ok(n) if is_answer(&buf[..n]) => return,
            Ok(_) | Err(nix::errno::Errno::EAGAIN) | Err(nix::errno::Errno::EINTR) => {}
            Err(e) => panic!("waiting for {what}: {e}"),
        }
    }
    panic!("no {what} within {IO_TIMEOUT:?}");
}

/// `count` ICMP echo requests from a raw socket; the host kernel answers each.
pub fn icmp_echo(dst: Ipv4Addr, count: u16) -> usize {
    let fd = raw_socket(AddressFamily::Inet, SockProtocol::Icmp);
    let id = 0x7000 | (dst.octets()[2] as u16);
    for seq in 0..count {
        let request = packets::icmp_echo_request(id, seq, b"podcap icmp echo");
        sendto(
            fd.as_raw_fd(),
            &request,
            &SockaddrIn::from(SocketAddrV4::new(dst, 0)),
            MsgFlags::empty(),
        )
        .unwrap();
        // A raw IPv4 socket receives the IP header too.
        wait_for_answer(&fd, "ICMP echo reply", |p| {
            let ihl = usize::from(p[0] & 0x0f) * 4;
            p.len() >= ihl + 8
                && p[ihl] == 0
                && p[ihl + 4..ihl + 8] == [(id >> 8) as u8, id as u8, (seq >> 8) as u8, seq as u8]
        });
        thread::sleep(GAP);
    }
    2 * usize::from(count)
}

/// `count` ICMPv6 echo requests; the kernel computes their checksum and the host answers.
pub fn icmpv6_echo(dst: Ipv6Addr, count: u16) -> usize {
    let fd = raw_socket(AddressFamily::Inet6, SockProtocol::IcmpV6);
    let id = 0x7600 | (dst.segments()[2] & 0xff);
    for seq in 0..count {
        let request = packets::icmpv6_echo_request(id, seq, b"podcap icmpv6 echo");
        sendto(
            fd.as_raw_fd(),
            &request,
            &SockaddrIn6::from(SocketAddrV6::new(dst, 0, 0, 0)),
            MsgFlags::empty(),
        )
        .unwrap();
        wait_for_answer(&fd, "ICMPv6 echo reply", |p| {
            p.len() >= 8
                && p[0] == 129
                && p[4..8] == [(id >> 8) as u8, id as u8, (seq >> 8) as u8, seq as u8]
        });
        thread::sleep(GAP);
    }
    2 * usize::from(count)
}

/// Builds a transport packet (header and payload) for a source and destination address, which
/// the checksums of some protocols cover.
type TransportBuilder = Box<dyn Fn(IpAddr, IpAddr) -> Vec<u8>>;

/// Hand-made SCTP (to each of [`SCTP_PORTS`]), UDPLite (to each of [`UDPLITE_PORTS`]) and GRE
/// packets, `each` of every kind, over IPv4 and IPv6, sent with IPPROTO_RAW sockets (the header is
/// ours). Nobody answers them (the host end drops them after the taps). Returns the frames sent.
pub fn raw_ip_protocols(pod: &Pod, each: usize) -> usize {
    let v4 = raw_socket(AddressFamily::Inet, SockProtocol::Raw);
    let v6 = raw_socket(AddressFamily::Inet6, SockProtocol::Raw);
    let (src4, dst4, src6, dst6) = (pod.pod_v4, pod.host_v4, pod.pod_v6, pod.host_v6);
    let mut transports: Vec<(u8, TransportBuilder)> = Vec::new();
    for port in SCTP_PORTS {
        transports.push((
            IPPROTO_SCTP,
            Box::new(move |_, _| packets::sctp_packet(RAW_SOURCE_PORT, port, b"podcap sctp")),
        ));
    }
    for port in UDPLITE_PORTS {
        transports.push((
            IPPROTO_UDPLITE,
            Box::new(move |s, d| {
                packets::udplite_packet(s, d, RAW_SOURCE_PORT, port, b"podcap udplite")
            }),
        ));
    }
    transports.push((
        IPPROTO_GRE,
        Box::new(|_, _| packets::gre_packet(b"podcap gre payload")),
    ));
    let mut sent = 0;
    for round in 0..each {
        for (protocol, transport) in &transports {
            let packet = packets::ipv4_packet(
                src4,
                dst4,
                *protocol,
                0x4000 + round as u16,
                &transport(src4.into(), dst4.into()),
            );
            sendto(
                v4.as_raw_fd(),
                &packet,
                &SockaddrIn::from(SocketAddrV4::new(dst4, 0)),
                MsgFlags::empty(),
            )
            .unwrap_or_else(|e| panic!("sending a raw IPv4 packet of protocol {protocol}: {e}"));
            thread::sleep(GAP);
            let packet =
                packets::ipv6_packet(src6, dst6, *protocol, &transport(src6.into(), dst6.into()));
            sendto(
                v6.as_raw_fd(),
                &packet,
                &SockaddrIn6::from(SocketAddrV6::new(dst6, 0, 0, 0)),
                MsgFlags::empty(),
            )
            .unwrap_or_else(|e| panic!("sending a raw IPv6 packet of protocol {protocol}: {e}"));
            thread::sleep(GAP);
            sent += 2;
        }
    }
    sent
}

/// `count` UDP datagrams in 802.1Q VLAN 100 frames from the pod's VLAN address to the host's,
/// port `dst_port`, written whole (tag included) to a packet socket on the pod's eth0. The
/// host's receive path moves the tag into the packet metadata before the taps see the frame, and
/// then drops the frame (no VLAN device): the capturers must put the tag back.
pub fn vlan_udp(pod: &Pod, dst_port: u16, count: usize) -> usize {
    // Protocol 0: this socket only sends, it receives nothing.
    let fd = socket(
        AddressFamily::Packet,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .expect("opening a packet socket");
    // getifaddrs lists each interface's link-layer address: a sockaddr_ll with its ifindex, which
    // is the destination address a packet socket needs.
    let eth0 = nix::ifaddrs::getifaddrs()
        .expect("getifaddrs")
        .find_map(|a| {
            (a.interface_name == POD_IF)
                .then_some(a.address)
                .flatten()
                .and_then(|s| s.as_link_addr().copied())
        })
        .expect("no link-layer address for the pod's eth0");
    for i in 0..count {
        let payload = format!("podcap vlan datagram {i}");
        let (src, dst) = (pod.vlan_pod_v4, pod.vlan_host_v4);
        let udp = packets::udp_packet(
            src.into(),
            dst.into(),
            RAW_SOURCE_PORT,
            dst_port,
            payload.as_bytes(),
        );
        let ip = packets::ipv4_packet(src, dst, IPPROTO_UDP, 0x1000 + i as u16, &udp);
        let frame = packets::vlan_frame(pod.host_mac, pod.pod_mac, VLAN_ID, 0x0800, &ip);
        sendto(fd.as_raw_fd(), &frame, &eth0, MsgFlags::empty())
            .unwrap_or_else(|e| panic!("sending a VLAN frame: {e}"));
        thread::sleep(GAP);
    }
    count
}

/// Runs [`udp_burst`] inside the pod.
pub fn burst_from_pod(pod: &Pod, server: SocketAddr, count: u32, payload_len: usize) {
    in_pod(pod, || udp_burst(server, count, payload_len));
}
