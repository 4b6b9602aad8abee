//! The AF_PACKET TPACKET_V3 receive ring: the one place podcap talks to the kernel's packet
//! sockets, and the only module with `unsafe` code.
//!
//! A [`Ring`] is a packet socket bound to one interface (by ifindex), with a memory-mapped ring of
//! blocks the kernel fills and hands to us. It receives both directions once each (on a pod's
//! host-side veth the pod's packets are inbound and packets to it outbound), with kernel nanosecond
//! timestamps, original and captured lengths, direction and the VLAN tag the kernel stripped.
//!
//! Order of set-up matters: the socket is created with protocol 0, so it receives nothing until
//! `bind`; the BPF filter and the ring are installed before the bind, so no unfiltered packet ever
//! enters the ring. Stopping is two steps: [`Ring::detach_traffic`] swaps in a drop-all filter, then
//! the caller drains blocks until [`Ring::is_drained`] — the kernel retires a partly filled block
//! after the block timeout, so no packet already accepted is lost on stop.
//!
//! Why our own module and not the `afpacket` crate: it has no mmap ring, no drop counters, and a
//! `Clone` on a type whose `Drop` closes the fd.

// Each `unsafe` here says why it is sound in a `// SAFETY:` comment; clippy holds us to it.
#![deny(clippy::undocumented_unsafe_blocks)]

mod block;
mod sys;

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub use block::{Block, Direction, Packet, Viewpoint, VlanTag};

use crate::bpf::Program;

/// Geometry of one interface's ring: `block_count` blocks of `block_size` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingConfig {
    /// Bytes per block; a power of two, a multiple of the page size, and larger than the biggest
    /// packet kept (a packet never spans blocks).
    pub block_size: u32,
    pub block_count: u32,
    /// How long the kernel fills a block before handing it over partly full. Bounds the latency at
    /// low packet rates and the time a stop waits to drain.
    pub block_timeout: Duration,
}

impl RingConfig {
    /// 1 MiB blocks hold four maximum-size (262144 B) GRO frames and amortise a wake-up over
    /// hundreds of ordinary packets.
    pub const DEFAULT_BLOCK_SIZE: u32 = 1 << 20;
    /// 64 MiB per interface: ~85 ms of buffering at 6 Gbit/s, enough for scheduling delay on a
    /// busy node; the same memory as `tcpdump -B 65536`.
    pub const DEFAULT_RING_SIZE: u64 = 64 << 20;

    /// A ring of about `ring_size` bytes in blocks of `block_size`.
    pub fn with_size(
        ring_size: u64,
        block_size: u32,
        block_timeout: Duration,
    ) -> Result<RingConfig, RingError> {
        let page = sys::page_size();
        if block_size == 0 || !block_size.is_power_of_two() || (block_size as usize) < page {
            return Err(RingError::BadGeometry(format!(
                "block size {block_size} must be a power of two of at least the page size ({page} bytes)"
            )));
        }
        let block_count = (ring_size / u64::from(block_size)).max(2);
        let block_count = u32::try_from(block_count).map_err(|_| {
            RingError::BadGeometry(format!(
                "ring size {ring_size} is too large for block size {block_size}"
            ))
        })?;
        if block_timeout.is_zero() || block_timeout > Duration::from_secs(10) {
            return Err(RingError::BadGeometry(
                "block timeout must be between 1 ms and 10 s".into(),
            ));
        }
        Ok(RingConfig {
            block_size,
            block_count,
            block_timeout,
        })
    }

    pub fn ring_bytes(&self) -> u64 {
        u64::from(self.block_size) * u64::from(self.block_count)
    }

    /// The largest packet a block can hold whole (block header and packet headers take the rest).
    pub fn max_packet_in_block(&self) -> u32 {
        self.block_size
            .saturating_sub(block::BLOCK_AND_PACKET_OVERHEAD)
    }
}

impl Default for RingConfig {
    fn default() -> Self {
        RingConfig {
            block_size: Self::DEFAULT_BLOCK_SIZE,
            block_count: (Self::DEFAULT_RING_SIZE / u64::from(Self::DEFAULT_BLOCK_SIZE)) as u32,
            block_timeout: Duration::from_millis(50),
        }
    }
}

/// Kernel counters for one socket since it was opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KernelStats {
    /// Packets the filter accepted, delivered or dropped.
    pub received: u64,
    /// Packets the filter accepted that found no room in the ring.
    pub drops: u64,
    /// Times the kernel froze the queue because every block was ours.
    pub freezes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum RingError {
    #[error("no interface named {0:?} on this host: check `ip link`")]
    NoSuchInterface(String),
    /// The network namespace a ring was to be opened in could not be entered.
    #[error("cannot enter network namespace {}: {source}; entering another network namespace needs CAP_SYS_ADMIN", path.display())]
    Namespace {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("bad ring geometry: {0}")]
    BadGeometry(String),
    /// The kernel refused for lack of a capability; the message names which one.
    #[error("{action} on {interface} needs {capability}: {source}")]
    NeedsCapability {
        action: &'static str,
        interface: String,
        capability: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("{op} on interface {interface}: {source}{hint}")]
    Sys {
        op: &'static str,
        interface: String,
        hint: &'static str,
        #[source]
        source: io::Error,
    },
}

const SOCKET: &str = "socket(AF_PACKET)";

/// Why step `op` of [`Ring::open`] on `interface` failed with `source`, saying what to change
/// where the errno alone would not.
fn open_error(op: &'static str, interface: &str, source: io::Error) -> RingError {
    let errno = source.raw_os_error();
    // Only creating the socket checks a capability (CAP_NET_RAW, in packet_create()); podcap
    // never sets promiscuous mode, so CAP_NET_ADMIN plays no part here. An EACCES comes from a
    // security module's policy, which no capability lifts.
    if op == SOCKET && errno == Some(libc::EPERM) {
        return RingError::NeedsCapability {
            action: "opening a packet socket",
            interface: interface.to_string(),
            capability: "CAP_NET_RAW",
            source,
        };
    }
    let hint = match errno {
        Some(libc::EACCES) => ": refused by a security policy (AppArmor, SELinux)",
        Some(libc::ENOMEM) => ": the kernel could not allocate the ring; use a smaller --ring-size",
        Some(libc::ENODEV) | Some(libc::ENXIO) => ": the interface is gone",
        _ => "",
    };
    RingError::Sys {
        op,
        interface: interface.to_string(),
        hint,
        source,
    }
}

/// After a ring stops receiving (a drain's drop-all filter, or a hand-over to a successor), a
/// packet that got past the switch on another CPU may still be on its way in: the ring is not
/// taken for empty before this.
pub const IN_FLIGHT_SETTLE: Duration = Duration::from_millis(5);

/// How long a ring that stopped receiving may take to hand over its last, partly filled block:
/// the kernel does so after the block timeout; two of them, plus slack.
pub fn last_block_wait(block_timeout: Duration) -> Duration {
    2 * block_timeout + Duration::from_millis(100)
}

/// A ring to replace another one with (see [`Ring::successor`]).
#[derive(Debug)]
pub struct Successor {
    netns: Option<PathBuf>,
    interface: String,
    ifindex: u32,
    viewpoint: Viewpoint,
    filter: Program,
    config: RingConfig,
    /// The ring it replaces: its socket (a duplicate) and its fanout group.
    predecessor: OwnedFd,
    fanout: u16,
}

impl Successor {
    /// The ring's geometry.
    pub fn config(&self) -> &RingConfig {
        &self.config
    }

    /// Opens the new ring and makes it receive every packet from now on, while the predecessor
    /// receives none after the packets already on their way to it, without losing or doubling
    /// one. Both are in the predecessor's fanout group ([`Ring::enable_successor`]): the new
    /// ring is opened on the same interface (by index) with a filter that drops everything,
    /// joins the group while the group's program sends every packet to member 0 (the
    /// predecessor), gets the real filter, and then the program switches to member 1 (the new
    /// ring). The caller reads what is left in the predecessor (its last block is handed over
    /// after the block timeout, see [`Ring::is_drained`]) before the new ring's packets, then
    /// drops it; the new ring is member 0 from then on.
    ///
    /// Allocating a large ring and replacing a fanout program (which waits for an RCU grace
    /// period) take milliseconds, so this runs on a thread of its own while the predecessor is
    /// still read. Returns the ring and how long opening it (the allocation) took.
    pub fn take_over(self) -> Result<(Ring, Duration), RingError> {
        let by_index = format!("#{}", self.ifindex);
        let opening = Instant::now();
        let mut ring = Ring::open_in(
            self.netns.as_deref(),
            &by_index,
            self.config,
            &Program::drop_all(),
        )?;
        let opened_in = opening.elapsed();
        ring.interface = self.interface;
        ring.viewpoint = self.viewpoint;
        let fanout_data = |source| RingError::Sys {
            op: "setsockopt(PACKET_FANOUT_DATA)",
            interface: ring.interface.clone(),
            hint: "",
            source,
        };
        sys::set_fanout_program(&self.predecessor, &Program::returning(0))
            .ok_or_else(|| fanout_data(io::Error::last_os_error()))?;
        sys::join_fanout_group(&ring.socket, self.fanout)
            .ok_or_else(|| ring.sys_error("setsockopt(PACKET_FANOUT) joining the group"))?;
        ring.fanout = Some(self.fanout);
        ring.set_filter(&self.filter)?;
        ring.filter = self.filter;
        // The program's result picks the member: 1 is the new ring.
        sys::set_fanout_program(&self.predecessor, &Program::returning(1))
            .ok_or_else(|| fanout_data(io::Error::last_os_error()))?;
        Ok((ring, opened_in))
    }
}

/// One interface's packet socket and its mapped receive ring.
pub struct Ring {
    socket: OwnedFd,
    map: sys::RingMap,
    config: RingConfig,
    interface: String,
    ifindex: u32,
    /// The next block we expect the kernel to hand over (blocks are handed over in order).
    next_block: u32,
    totals: KernelStats,
    viewpoint: Viewpoint,
    /// The namespace it was opened in (`None`: the process's), for a successor.
    netns: Option<PathBuf>,
    /// The filter, for a successor.
    filter: Program,
    /// The fanout group through which a successor takes over (see [`Ring::successor`]).
    fanout: Option<u16>,
}

impl Ring {
    /// Opens a ring on `interface` (a name, or `#<ifindex>`) that keeps only what `filter` accepts.
    pub fn open(interface: &str, config: RingConfig, filter: &Program) -> Result<Ring, RingError> {
        Ring::open_in(None, interface, config, filter)
    }

    /// [`Ring::open`] on an interface of the network namespace `netns` (a file such as
    /// /var/run/netns/NAME or /proc/PID/ns/net); `None` is this process's own. The socket is
    /// made on a short-lived thread that enters the namespace, so no other thread ever runs in
    /// it; a packet socket stays in the namespace it was made in.
    pub fn open_in(
        netns: Option<&Path>,
        interface: &str,
        config: RingConfig,
        filter: &Program,
    ) -> Result<Ring, RingError> {
        let Some(netns) = netns else {
            return Ring::open_here(interface, config, filter);
        };
        let mut ring = Ring::open_netns(netns, interface, config, filter)?;
        ring.netns = Some(netns.to_path_buf());
        Ok(ring)
    }

    fn open_netns(
        netns: &Path,
        interface: &str,
        config: RingConfig,
        filter: &Program,
    ) -> Result<Ring, RingError> {
        let entered = |source| RingError::Namespace {
            path: netns.to_path_buf(),
            source,
        };
        let namespace = std::fs::File::open(netns).map_err(entered)?;
        std::thread::scope(|scope| {
            std::thread::Builder::new()
                .name("podcap-netns".into())
                .spawn_scoped(scope, || {
                    nix::sched::setns(&namespace, nix::sched::CloneFlags::CLONE_NEWNET)
                        .map_err(|errno| entered(io::Error::from(errno)))?;
                    Ring::open_here(interface, config, filter)
                })
                .map_err(entered)?
                .join()
                .unwrap_or_else(|_| Err(entered(io::Error::other("the opening thread panicked"))))
        })
    }

    /// Prepares the ring to be replaced by a larger or smaller one without losing or doubling a
    /// packet: it becomes the only member of a fanout group of its own, whose program sends
    /// every packet to it. Call it right after opening (the switch into the group may miss a
    /// packet arriving at that instant, as opening itself would).
    pub fn enable_successor(&mut self) -> Result<(), RingError> {
        let id = sys::create_fanout_group(&self.socket)
            .ok_or_else(|| self.sys_error("setsockopt(PACKET_FANOUT)"))?;
        self.fanout = Some(id);
        Ok(())
    }

    /// What it takes to replace this ring by one of `config` on the same interface, namespace,
    /// filter and viewpoint ([`Successor::take_over`], on another thread). The ring must have
    /// been made ready with [`Ring::enable_successor`].
    pub fn successor(&self, config: RingConfig) -> Result<Successor, RingError> {
        let fanout = self.fanout.ok_or_else(|| {
            RingError::BadGeometry("the ring was not opened for a successor".into())
        })?;
        let predecessor = self.socket.try_clone().map_err(|source| RingError::Sys {
            op: "dup(socket)",
            interface: self.interface.clone(),
            hint: "",
            source,
        })?;
        Ok(Successor {
            netns: self.netns.clone(),
            interface: self.interface.clone(),
            ifindex: self.ifindex,
            viewpoint: self.viewpoint,
            filter: self.filter.clone(),
            config,
            predecessor,
            fanout,
        })
    }

    fn sys_error(&self, op: &'static str) -> RingError {
        RingError::Sys {
            op,
            interface: self.interface.clone(),
            hint: "",
            source: io::Error::last_os_error(),
        }
    }

    /// Directions as `viewpoint` sees them from now on.
    pub fn set_viewpoint(&mut self, viewpoint: Viewpoint) {
        self.viewpoint = viewpoint;
    }

    fn open_here(interface: &str, config: RingConfig, filter: &Program) -> Result<Ring, RingError> {
        let ifindex = match interface.strip_prefix('#') {
            Some(index) => index
                .parse::<u32>()
                .map_err(|_| RingError::NoSuchInterface(interface.into()))?,
            None => sys::interface_index(interface)
                .ok_or_else(|| RingError::NoSuchInterface(interface.into()))?,
        };
        let fail = |op: &'static str| open_error(op, interface, io::Error::last_os_error());
        // Protocol 0: the socket receives nothing until bind() names ETH_P_ALL.
        let socket = sys::packet_socket().ok_or_else(|| fail(SOCKET))?;
        sys::set_tpacket_v3(&socket).ok_or_else(|| fail("setsockopt(PACKET_VERSION)"))?;
        sys::attach_filter(&socket, filter).ok_or_else(|| fail("setsockopt(SO_ATTACH_FILTER)"))?;
        sys::request_rx_ring(&socket, &config).ok_or_else(|| fail("setsockopt(PACKET_RX_RING)"))?;
        let map =
            sys::RingMap::new(&socket, config.ring_bytes()).ok_or_else(|| fail("mmap(ring)"))?;
        sys::bind_all_protocols(&socket, ifindex).ok_or_else(|| fail("bind"))?;
        Ok(Ring {
            socket,
            map,
            config,
            interface: interface.to_string(),
            ifindex,
            next_block: 0,
            totals: KernelStats::default(),
            viewpoint: Viewpoint::Interface,
            netns: None,
            filter: filter.clone(),
            fanout: None,
        })
    }

    pub fn interface(&self) -> &str {
        &self.interface
    }

    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    pub fn config(&self) -> &RingConfig {
        &self.config
    }

    /// The next block the kernel has handed over, if any. It goes back to the kernel when dropped.
    pub fn next_block(&mut self) -> Option<Block<'_>> {
        let index = self.next_block;
        let block = self.map.block(index, self.config.block_size)?;
        self.next_block = (index + 1) % self.config.block_count;
        Some(block.seen_from(self.viewpoint))
    }

    /// Replaces the filter; packets already in the ring stay.
    /// Whether [`Ring::next_block`] would return a block now.
    pub fn has_ready_block(&self) -> bool {
        self.map.is_ready(self.next_block, self.config.block_size)
    }

    pub fn set_filter(&self, program: &Program) -> Result<(), RingError> {
        sys::attach_filter(&self.socket, program).ok_or_else(|| RingError::Sys {
            op: "setsockopt(SO_ATTACH_FILTER)",
            interface: self.interface.clone(),
            hint: "",
            source: io::Error::last_os_error(),
        })
    }

    /// First step of a clean stop: accept no new packets, keep what is in the ring.
    pub fn detach_traffic(&self) -> Result<(), RingError> {
        self.set_filter(&Program::drop_all())
    }

    /// After [`Ring::detach_traffic`]: true once the block the kernel is filling holds no packet,
    /// so every accepted packet has been handed over (or is in a block we have not read yet,
    /// which `next_block` returns).
    pub fn is_drained(&self) -> bool {
        self.map
            .pending_packets(self.next_block, self.config.block_size)
            == 0
    }

    /// Takes the socket's pending error, so poll stops reporting it.
    pub fn take_error(&self) -> Option<io::Error> {
        sys::take_socket_error(&self.socket)
    }

    /// False once the interface this ring is bound to has been deleted (e.g. its pod is gone).
    pub fn interface_exists(&self) -> bool {
        // A failed getsockname says nothing about the interface; only the kernel's -1 does.
        sys::bound_ifindex(&self.socket).is_none_or(|index| index > 0)
    }

    /// Kernel counters since the socket opened (the kernel resets them on every read, so they
    /// are accumulated here).
    pub fn stats(&mut self) -> Result<KernelStats, RingError> {
        let delta = sys::read_stats(&self.socket).ok_or_else(|| RingError::Sys {
            op: "getsockopt(PACKET_STATISTICS)",
            interface: self.interface.clone(),
            hint: "",
            source: io::Error::last_os_error(),
        })?;
        self.totals.received += delta.received;
        self.totals.drops += delta.drops;
        self.totals.freezes += delta.freezes;
        Ok(self.totals)
    }
}

impl AsFd for Ring {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }
}

impl std::fmt::Debug for Ring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ring")
            .field("interface", &self.interface)
            .field("ifindex", &self.ifindex)
            .field("fd", &self.socket.as_raw_fd())
            .field("config", &self.config)
            .finish()
    }
}

/// What poll(2) said about one descriptor.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Readiness {
    pub readable: bool,
    /// The socket has a pending error (see [`Ring::take_error`]).
    pub error: bool,
}

/// Waits until any of `fds` is readable or has an error, or `timeout` passes. An interrupted
/// wait (a signal) returns with nothing ready.
pub fn wait(fds: &[BorrowedFd<'_>], timeout: Duration) -> io::Result<Vec<Readiness>> {
    sys::poll(fds, timeout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_socket_refused_for_lack_of_cap_net_raw_says_so() {
        let error = open_error(SOCKET, "veth1", io::Error::from_raw_os_error(libc::EPERM));
        assert_eq!(
            error.to_string(),
            format!(
                "opening a packet socket on veth1 needs CAP_NET_RAW: {}",
                io::Error::from_raw_os_error(libc::EPERM)
            )
        );
    }

    #[test]
    fn other_failures_name_the_step_and_what_to_check() {
        let ring = open_error(
            "setsockopt(PACKET_RX_RING)",
            "veth1",
            io::Error::from_raw_os_error(libc::ENOMEM),
        );
        let text = ring.to_string();
        assert!(
            text.starts_with("setsockopt(PACKET_RX_RING) on interface veth1: ")
                && text.ends_with("; use a smaller --ring-size"),
            "{text}"
        );
        let denied = open_error(SOCKET, "veth1", io::Error::from_raw_os_error(libc::EACCES));
        assert!(!denied.to_string().contains("CAP_"), "{denied}");
    }
}
