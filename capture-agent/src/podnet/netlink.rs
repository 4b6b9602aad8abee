//! A small synchronous rtnetlink client with exactly the queries podnet needs — links, routes,
//! neighbours, the bridge forwarding database and namespace ids — answered as plain structs, so
//! the strategies never handle netlink messages.
//!
//! Why netlink rather than /proc/net/route, /proc/net/arp and /sys/class/net/<br>/brforward: one
//! source for all four lookups; it sees every routing table (/proc/net/route shows only `main`),
//! IPv6 neighbours (/proc/net/arp is IPv4 only), link kinds and veth peers (needed to validate a
//! result), and it answers for the network namespace of the socket — which is what the netns
//! fallback needs, since sysfs keeps the mounter's view even after setns. The socket is a plain
//! blocking one: the kernel answers rtnetlink requests synchronously, and the agent asks rarely
//! (when a pod appears or changes), so no async runtime is involved.

use std::io;
use std::net::IpAddr;
use std::os::fd::{AsRawFd, BorrowedFd};

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP,
    NLM_F_DUMP_INTR, NLM_F_REPLACE, NLM_F_REQUEST,
};
use netlink_packet_route::link::{InfoKind, LinkAttribute, LinkInfo, LinkMessage};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::nsid::{NsidAttribute, NsidMessage};
use netlink_packet_route::route::{RouteAddress, RouteAttribute, RouteMessage, RouteType};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

/// A dump interrupted by a concurrent change (NLM_F_DUMP_INTR) is repeated this often at most;
/// pods starting and stopping on a busy node change links and routes all the time.
const DUMP_ATTEMPTS: usize = 3;

#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    #[error("netlink socket: {0}")]
    Socket(#[source] io::Error),
    #[error("netlink {request}: {source}")]
    Kernel {
        request: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("netlink {request}: cannot decode the answer: {detail}")]
    Decode {
        request: &'static str,
        detail: String,
    },
    #[error("netlink {request}: the dump kept changing under us ({DUMP_ATTEMPTS} attempts)")]
    Inconsistent { request: &'static str },
}

impl NetlinkError {
    /// True when the kernel refused a request for lack of a capability (EPERM), as it refuses
    /// changes (a neighbour resolve) without CAP_NET_ADMIN; dumps need none.
    pub fn is_not_permitted(&self) -> bool {
        matches!(self, NetlinkError::Kernel { source, .. } if source.raw_os_error() == Some(libc::EPERM))
    }
}

/// One network interface as the strategies need it.
#[derive(Debug, Clone)]
pub struct Link {
    pub index: u32,
    pub name: String,
    pub kind: Option<InfoKind>,
    /// The bridge (or bond...) this link is a port of.
    pub master: Option<u32>,
    /// For a veth: the peer's ifindex, in the namespace named by `peer_netnsid`.
    pub peer_index: Option<u32>,
    /// Present when the peer lives in another network namespace (IFLA_LINK_NETNSID): the id of
    /// that namespace as seen from the socket's namespace.
    pub peer_netnsid: Option<i32>,
}

impl Link {
    /// A pod's host-side interface: a veth (or Cilium's netkit, its successor) whose other end
    /// is in another network namespace. This rules out veth pairs kept inside the host, such as
    /// Cilium's cilium_host/cilium_net, which carry routes to pod IPs but no single pod's traffic.
    pub fn is_pod_facing(&self) -> bool {
        matches!(self.kind, Some(InfoKind::Veth | InfoKind::Netkit)) && self.peer_netnsid.is_some()
    }

    pub fn kind_name(&self) -> String {
        self.kind
            .as_ref()
            .map_or_else(|| "unknown kind".to_string(), |kind| kind.to_string())
    }
}

/// One route of any table.
#[derive(Debug, Clone)]
pub struct Route {
    pub destination: Option<IpAddr>,
    pub prefix_len: u8,
    pub table: u32,
    pub kind: RouteType,
    pub oif: Option<u32>,
    pub gateway: Option<IpAddr>,
    /// Multipath routes name several devices; none of them alone is the pod's.
    pub multipath: bool,
}

/// A neighbour-table entry (family Inet/Inet6) or a bridge FDB entry (family Bridge).
#[derive(Debug, Clone)]
pub struct Neighbour {
    pub ifindex: u32,
    pub ip: Option<IpAddr>,
    pub mac: Option<[u8; 6]>,
    pub state: NeighbourState,
    pub flags: NeighbourFlags,
    /// FDB entries: the bridge the port belongs to (NDA_MASTER).
    pub master: Option<u32>,
}

/// A NETLINK_ROUTE socket in the network namespace of the thread that opened it.
pub struct Netlink {
    socket: Socket,
    sequence: u32,
}

impl Netlink {
    /// Opens a socket. Its namespace is fixed now: later setns calls of the thread don't move it.
    pub fn open() -> Result<Netlink, NetlinkError> {
        let mut socket = Socket::new(NETLINK_ROUTE).map_err(NetlinkError::Socket)?;
        socket.bind_auto().map_err(NetlinkError::Socket)?;
        socket
            .connect(&SocketAddr::new(0, 0))
            .map_err(NetlinkError::Socket)?;
        Ok(Netlink {
            socket,
            sequence: 0,
        })
    }

    /// All links of the namespace.
    pub fn links(&mut self) -> Result<Vec<Link>, NetlinkError> {
        let request = RouteNetlinkMessage::GetLink(LinkMessage::default());
        let answers = self.dump("link dump", request)?;
        Ok(answers
            .into_iter()
            .filter_map(|answer| match answer {
                RouteNetlinkMessage::NewLink(message) => Some(link_of(message)),
                _ => None,
            })
            .collect())
    }

    /// The link with this index, or None if there is none.
    pub fn link(&mut self, index: u32) -> Result<Option<Link>, NetlinkError> {
        let mut message = LinkMessage::default();
        message.header.index = index;
        self.get_link("link get", message)
    }

    /// The link with this name, or None if there is none.
    pub fn link_by_name(&mut self, name: &str) -> Result<Option<Link>, NetlinkError> {
        let mut message = LinkMessage::default();
        message
            .attributes
            .push(LinkAttribute::IfName(name.to_string()));
        self.get_link("link get by name", message)
    }

    fn get_link(
        &mut self,
        request: &'static str,
        message: LinkMessage,
    ) -> Result<Option<Link>, NetlinkError> {
        match self.get(request, RouteNetlinkMessage::GetLink(message)) {
            Ok(answers) => Ok(answers.into_iter().find_map(|answer| match answer {
                RouteNetlinkMessage::NewLink(message) => Some(link_of(message)),
                _ => None,
            })),
            Err(NetlinkError::Kernel { source, .. })
                if source.raw_os_error() == Some(libc::ENODEV) =>
            {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Routes of every table for one address family (IPv4 or IPv6).
    pub fn routes(&mut self, ipv6: bool) -> Result<Vec<Route>, NetlinkError> {
        let mut message = RouteMessage::default();
        message.header.address_family = family(ipv6);
        let answers = self.dump("route dump", RouteNetlinkMessage::GetRoute(message))?;
        Ok(answers
            .into_iter()
            .filter_map(|answer| match answer {
                RouteNetlinkMessage::NewRoute(message) => Some(route_of(message)),
                _ => None,
            })
            .collect())
    }

    /// The IPv4 (ARP) or IPv6 (NDP) neighbour table.
    pub fn neighbours(&mut self, ipv6: bool) -> Result<Vec<Neighbour>, NetlinkError> {
        self.neighbour_dump("neighbour dump", family(ipv6))
    }

    /// Asks the kernel to resolve `ip` on device `ifindex` now, as `ip neigh replace IP dev DEV
    /// use` does (RTM_NEWNEIGH with NTF_USE): it creates the neighbour entry if there is none
    /// and sends one ARP request (IPv4) or neighbour solicitation (IPv6). The answer fills the
    /// neighbour table and, on a bridge, teaches the bridge which port the pod is behind. Only
    /// address resolution goes to the pod, never a packet of a protocol above it. Needs
    /// CAP_NET_ADMIN.
    pub fn resolve(&mut self, ifindex: u32, ip: IpAddr) -> Result<(), NetlinkError> {
        let mut message = NeighbourMessage::default();
        message.header.family = family(ip.is_ipv6());
        message.header.ifindex = ifindex;
        // What iproute2 sends; the kernel leaves the state alone for NTF_USE.
        message.header.state = NeighbourState::Permanent;
        message.header.flags = NeighbourFlags::Use;
        message
            .attributes
            .push(NeighbourAttribute::Destination(match ip {
                IpAddr::V4(ip) => NeighbourAddress::Inet(ip),
                IpAddr::V6(ip) => NeighbourAddress::Inet6(ip),
            }));
        self.exchange(
            "neighbour resolve",
            RouteNetlinkMessage::NewNeighbour(message),
            NLM_F_REQUEST | NLM_F_CREATE | NLM_F_REPLACE | NLM_F_ACK,
        )?;
        Ok(())
    }

    /// The forwarding databases of all bridges (RTM_GETNEIGH, family AF_BRIDGE), which also
    /// lists the devices' own address filters (flagged NTF_SELF).
    pub fn fdb(&mut self) -> Result<Vec<Neighbour>, NetlinkError> {
        self.neighbour_dump("bridge fdb dump", AddressFamily::Bridge)
    }

    fn neighbour_dump(
        &mut self,
        request: &'static str,
        family: AddressFamily,
    ) -> Result<Vec<Neighbour>, NetlinkError> {
        let mut message = NeighbourMessage::default();
        message.header.family = family;
        let answers = self.dump(request, RouteNetlinkMessage::GetNeighbour(message))?;
        Ok(answers
            .into_iter()
            .filter_map(|answer| match answer {
                RouteNetlinkMessage::NewNeighbour(message) => Some(neighbour_of(message)),
                _ => None,
            })
            .collect())
    }

    /// The id this socket's namespace gives the namespace behind `ns` (an open /proc/<pid>/ns/net
    /// or /var/run/netns file), or None if it has not assigned one. This is the number other
    /// links' IFLA_LINK_NETNSID refer to, which is how a veth's peer namespace is identified.
    pub fn nsid_of(&mut self, ns: BorrowedFd<'_>) -> Result<Option<i32>, NetlinkError> {
        let mut message = NsidMessage::default();
        let fd = u32::try_from(ns.as_raw_fd()).map_err(|_| NetlinkError::Decode {
            request: "nsid get",
            detail: "negative file descriptor".to_string(),
        })?;
        message.attributes.push(NsidAttribute::Fd(fd));
        let answers = self.get("nsid get", RouteNetlinkMessage::GetNsId(message))?;
        Ok(answers.into_iter().find_map(|answer| match answer {
            RouteNetlinkMessage::NewNsId(message) => {
                message
                    .attributes
                    .iter()
                    .find_map(|attribute| match attribute {
                        NsidAttribute::Id(id) if *id >= 0 => Some(*id),
                        _ => None,
                    })
            }
            _ => None,
        }))
    }

    /// A dump request, repeated when the kernel flags it as interrupted by a concurrent change.
    fn dump(
        &mut self,
        request: &'static str,
        message: RouteNetlinkMessage,
    ) -> Result<Vec<RouteNetlinkMessage>, NetlinkError> {
        for _ in 0..DUMP_ATTEMPTS {
            let (answers, interrupted) =
                self.exchange(request, message.clone(), NLM_F_REQUEST | NLM_F_DUMP)?;
            if !interrupted {
                return Ok(answers);
            }
            tracing::debug!(
                request,
                "netlink dump interrupted by a change; repeating it"
            );
        }
        Err(NetlinkError::Inconsistent { request })
    }

    /// A single get request.
    fn get(
        &mut self,
        request: &'static str,
        message: RouteNetlinkMessage,
    ) -> Result<Vec<RouteNetlinkMessage>, NetlinkError> {
        self.exchange(request, message, NLM_F_REQUEST)
            .map(|(answers, _)| answers)
    }

    /// Sends one request and collects the answers: for a dump until NLMSG_DONE, for a get the
    /// one reply (or the error in its place).
    fn exchange(
        &mut self,
        request: &'static str,
        message: RouteNetlinkMessage,
        flags: u16,
    ) -> Result<(Vec<RouteNetlinkMessage>, bool), NetlinkError> {
        self.sequence = self.sequence.wrapping_add(1);
        let sequence = self.sequence;
        let mut header = NetlinkHeader::default();
        header.flags = flags;
        header.sequence_number = sequence;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(message));
        packet.finalize();
        let mut buffer = vec![0; packet.buffer_len()];
        packet.serialize(&mut buffer);
        self.socket
            .send(&buffer, 0)
            .map_err(|source| NetlinkError::Kernel { request, source })?;

        let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
        let mut answers = Vec::new();
        let mut interrupted = false;
        loop {
            let (datagram, _) = self
                .socket
                .recv_from_full()
                .map_err(|source| NetlinkError::Kernel { request, source })?;
            let mut rest = &datagram[..];
            while !rest.is_empty() {
                let answer =
                    NetlinkMessage::<RouteNetlinkMessage>::deserialize(rest).map_err(|e| {
                        NetlinkError::Decode {
                            request,
                            detail: e.to_string(),
                        }
                    })?;
                let length = answer.header.length as usize;
                if length == 0 || length > rest.len() {
                    return Err(NetlinkError::Decode {
                        request,
                        detail: format!("message length {length} of {} bytes left", rest.len()),
                    });
                }
                // Netlink messages are 4-byte aligned inside a datagram.
                rest = rest.get(length.next_multiple_of(4)..).unwrap_or(&[]);
                if answer.header.sequence_number != sequence {
                    // A late answer to an earlier request; not ours now.
                    continue;
                }
                interrupted |= answer.header.flags & NLM_F_DUMP_INTR != 0;
                match answer.payload {
                    NetlinkPayload::Done(_) => return Ok((answers, interrupted)),
                    NetlinkPayload::Error(error) => match error.code {
                        Some(_) => {
                            return Err(NetlinkError::Kernel {
                                request,
                                source: error.to_io(),
                            })
                        }
                        // An acknowledgement: the request is complete.
                        None => return Ok((answers, interrupted)),
                    },
                    NetlinkPayload::InnerMessage(inner) => {
                        answers.push(inner);
                        if !dump {
                            return Ok((answers, interrupted));
                        }
                    }
                    _ => {}
                }
            }
        }
    }
}

fn family(ipv6: bool) -> AddressFamily {
    if ipv6 {
        AddressFamily::Inet6
    } else {
        AddressFamily::Inet
    }
}

fn link_of(message: LinkMessage) -> Link {
    let mut link = Link {
        index: message.header.index,
        name: String::new(),
        kind: None,
        master: None,
        peer_index: None,
        peer_netnsid: None,
    };
    for attribute in message.attributes {
        match attribute {
            LinkAttribute::IfName(name) => link.name = name,
            LinkAttribute::Controller(index) => link.master = Some(index),
            LinkAttribute::Link(index) => link.peer_index = Some(index),
            LinkAttribute::LinkNetNsId(id) => link.peer_netnsid = Some(id),
            LinkAttribute::LinkInfo(infos) => {
                link.kind = infos.into_iter().find_map(|info| match info {
                    LinkInfo::Kind(kind) => Some(kind),
                    _ => None,
                });
            }
            _ => {}
        }
    }
    link
}

fn route_of(message: RouteMessage) -> Route {
    let mut route = Route {
        destination: None,
        prefix_len: message.header.destination_prefix_length,
        table: u32::from(message.header.table),
        kind: message.header.kind,
        oif: None,
        gateway: None,
        multipath: false,
    };
    for attribute in message.attributes {
        match attribute {
            RouteAttribute::Destination(address) => route.destination = ip_of_route(address),
            RouteAttribute::Gateway(address) => route.gateway = ip_of_route(address),
            RouteAttribute::Oif(index) => route.oif = Some(index),
            // Tables above 255 exist only in this attribute; the header then says 252 (compat).
            RouteAttribute::Table(table) => route.table = table,
            RouteAttribute::MultiPath(_) => route.multipath = true,
            _ => {}
        }
    }
    route
}

fn ip_of_route(address: RouteAddress) -> Option<IpAddr> {
    match address {
        RouteAddress::Inet(ip) => Some(IpAddr::V4(ip)),
        RouteAddress::Inet6(ip) => Some(IpAddr::V6(ip)),
        _ => None,
    }
}

fn neighbour_of(message: NeighbourMessage) -> Neighbour {
    let mut neighbour = Neighbour {
        ifindex: message.header.ifindex,
        ip: None,
        mac: None,
        state: message.header.state,
        flags: message.header.flags,
        master: None,
    };
    for attribute in message.attributes {
        match attribute {
            NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)) => {
                neighbour.ip = Some(IpAddr::V4(ip));
            }
            NeighbourAttribute::Destination(NeighbourAddress::Inet6(ip)) => {
                neighbour.ip = Some(IpAddr::V6(ip));
            }
            NeighbourAttribute::LinkLayerAddress(bytes) => {
                neighbour.mac = <[u8; 6]>::try_from(bytes.as_slice()).ok();
            }
            NeighbourAttribute::Controller(index) => neighbour.master = Some(index),
            _ => {}
        }
    }
    neighbour
}
