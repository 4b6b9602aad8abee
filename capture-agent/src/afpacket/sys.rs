//! Thin, checked wrappers over the system calls behind a packet socket: socket options, the ring
//! mapping, bind, statistics and poll. Each returns `None`/`Err` with `errno` left for the caller
//! to report, and each `unsafe` block says why it is sound.

use std::ffi::CString;
use std::io;
use std::mem::size_of;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use super::block::{
    Block, BLOCK_HEADER_LEN, BLOCK_STATUS_OFFSET, FIRST_PACKET_OFFSET, NUM_PKTS_OFFSET,
};
use super::{KernelStats, Readiness, RingConfig};
use crate::bpf::Program;

/// Bytes per V3 frame slot. V3 packs packets tightly inside blocks, so this only has to satisfy
/// the kernel's checks (at least the header size, a multiple of TPACKET_ALIGNMENT).
const FRAME_SIZE: u32 = 2048;

pub(super) fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions and touches no memory of ours.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(size).unwrap_or(4096)
}

pub(super) fn interface_index(name: &str) -> Option<u32> {
    let name = CString::new(name).ok()?;
    // SAFETY: `name` is a valid NUL-terminated string that outlives the call.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    (index != 0).then_some(index)
}

pub(super) fn packet_socket() -> Option<OwnedFd> {
    // SAFETY: plain socket(2); protocol 0 means no packet is queued before bind().
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: `fd` was just returned by socket(2) and is owned by nobody else.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn set_option<T>(socket: &OwnedFd, level: libc::c_int, name: libc::c_int, value: &T) -> Option<()> {
    let len = libc::socklen_t::try_from(size_of::<T>()).ok()?;
    // SAFETY: `value` points to a live, initialised T of exactly `len` bytes for the whole call,
    // and the kernel only reads it.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (value as *const T).cast(),
            len,
        )
    };
    (rc == 0).then_some(())
}

pub(super) fn set_tpacket_v3(socket: &OwnedFd) -> Option<()> {
    let version = libc::tpacket_versions::TPACKET_V3 as libc::c_int;
    set_option(socket, libc::SOL_PACKET, libc::PACKET_VERSION, &version)
}

/// `program` as the kernel's sock_fprog, handed to `set` (the kernel copies the program during
/// the call, so the instructions may be freed afterwards).
fn with_fprog(program: &Program, set: impl FnOnce(&libc::sock_fprog) -> Option<()>) -> Option<()> {
    let mut instructions: Vec<libc::sock_filter> = program
        .instructions()
        .iter()
        .map(|i| libc::sock_filter {
            code: i.code,
            jt: i.jt,
            jf: i.jf,
            k: i.k,
        })
        .collect();
    let prog = libc::sock_fprog {
        len: u16::try_from(instructions.len()).ok()?,
        filter: instructions.as_mut_ptr(),
    };
    set(&prog)
}

pub(super) fn attach_filter(socket: &OwnedFd, program: &Program) -> Option<()> {
    with_fprog(program, |prog| {
        set_option(socket, libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, prog)
    })
}

// linux/if_packet.h: fanout groups, where a classic BPF program picks the member socket.
const PACKET_FANOUT: libc::c_int = 18;
const PACKET_FANOUT_DATA: libc::c_int = 22;
const PACKET_FANOUT_CBPF: u32 = 6;
const PACKET_FANOUT_FLAG_UNIQUEID: u32 = 0x2000;

/// Makes a bound socket the first member of a new fanout group with an id the kernel picks
/// (unique in the socket's network namespace); returns that id.
pub(super) fn create_fanout_group(socket: &OwnedFd) -> Option<u16> {
    let argument = ((PACKET_FANOUT_CBPF | PACKET_FANOUT_FLAG_UNIQUEID) << 16) as libc::c_int;
    set_option(socket, libc::SOL_PACKET, PACKET_FANOUT, &argument)?;
    let value = get_option::<libc::c_int>(socket, libc::SOL_PACKET, PACKET_FANOUT, 0)?;
    Some((value & 0xffff) as u16)
}

/// Adds a bound socket to fanout group `id` (as its last member).
pub(super) fn join_fanout_group(socket: &OwnedFd, id: u16) -> Option<()> {
    let argument = (u32::from(id) | (PACKET_FANOUT_CBPF << 16)) as libc::c_int;
    set_option(socket, libc::SOL_PACKET, PACKET_FANOUT, &argument)
}

/// Sets the program that picks the member (by index, modulo the member count) for each packet
/// of the group `socket` belongs to.
pub(super) fn set_fanout_program(socket: &OwnedFd, program: &Program) -> Option<()> {
    with_fprog(program, |prog| {
        set_option(socket, libc::SOL_PACKET, PACKET_FANOUT_DATA, prog)
    })
}

pub(super) fn request_rx_ring(socket: &OwnedFd, config: &RingConfig) -> Option<()> {
    let request = libc::tpacket_req3 {
        tp_block_size: config.block_size,
        tp_block_nr: config.block_count,
        tp_frame_size: FRAME_SIZE,
        tp_frame_nr: (config.block_size / FRAME_SIZE).checked_mul(config.block_count)?,
        tp_retire_blk_tov: u32::try_from(config.block_timeout.as_millis()).ok()?.max(1),
        tp_sizeof_priv: 0,
        tp_feature_req_word: 0,
    };
    set_option(socket, libc::SOL_PACKET, libc::PACKET_RX_RING, &request)
}

pub(super) fn bind_all_protocols(socket: &OwnedFd, ifindex: u32) -> Option<()> {
    // SAFETY: sockaddr_ll is plain old data; all-zero is a valid value.
    let mut address: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    address.sll_family = libc::AF_PACKET as u16;
    address.sll_protocol = (libc::ETH_P_ALL as u16).to_be();
    address.sll_ifindex = i32::try_from(ifindex).ok()?;
    let len = libc::socklen_t::try_from(size_of::<libc::sockaddr_ll>()).ok()?;
    // SAFETY: `address` is a valid sockaddr_ll of `len` bytes that lives for the whole call.
    let rc = unsafe {
        libc::bind(
            socket.as_raw_fd(),
            (&address as *const libc::sockaddr_ll).cast(),
            len,
        )
    };
    (rc == 0).then_some(())
}

/// Reads a socket option into `value` (which gives its initial contents); `None` on failure.
fn get_option<T>(
    socket: &OwnedFd,
    level: libc::c_int,
    name: libc::c_int,
    mut value: T,
) -> Option<T> {
    let mut len = libc::socklen_t::try_from(size_of::<T>()).ok()?;
    // SAFETY: `value` is a live, writable T of `len` bytes for the whole call; the kernel writes
    // at most `len` bytes into it (plain integers and structs of integers here) and updates `len`.
    let rc = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (&mut value as *mut T).cast(),
            &mut len,
        )
    };
    (rc == 0).then_some(value)
}

pub(super) fn read_stats(socket: &OwnedFd) -> Option<KernelStats> {
    let empty = libc::tpacket_stats_v3 {
        tp_packets: 0,
        tp_drops: 0,
        tp_freeze_q_cnt: 0,
    };
    let stats = get_option(socket, libc::SOL_PACKET, libc::PACKET_STATISTICS, empty)?;
    Some(KernelStats {
        received: u64::from(stats.tp_packets),
        drops: u64::from(stats.tp_drops),
        freezes: u64::from(stats.tp_freeze_q_cnt),
    })
}

pub(super) fn poll(fds: &[BorrowedFd<'_>], timeout: Duration) -> io::Result<Vec<Readiness>> {
    let mut polled: Vec<libc::pollfd> = fds
        .iter()
        .map(|fd| libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let millis = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
    let count = libc::nfds_t::try_from(polled.len())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `polled` is a live array of `count` pollfd the kernel may write `revents` into.
    let rc = unsafe { libc::poll(polled.as_mut_ptr(), count, millis) };
    if rc < 0 {
        let error = io::Error::last_os_error();
        if error.kind() == io::ErrorKind::Interrupted {
            return Ok(vec![Readiness::default(); fds.len()]);
        }
        return Err(error);
    }
    Ok(polled
        .iter()
        .map(|p| Readiness {
            readable: p.revents & libc::POLLIN != 0,
            error: p.revents & (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) != 0,
        })
        .collect())
}

/// Takes (and so clears) the socket's pending error, e.g. ENETDOWN when its interface went away.
pub(super) fn take_socket_error(socket: &OwnedFd) -> Option<io::Error> {
    match get_option::<libc::c_int>(socket, libc::SOL_SOCKET, libc::SO_ERROR, 0) {
        Some(0) => None,
        Some(code) => Some(io::Error::from_raw_os_error(code)),
        None => Some(io::Error::last_os_error()),
    }
}

/// Whether an interface with this index exists (in this network namespace).
/// The ifindex a packet socket is bound to now: the kernel sets it to -1 when that interface is
/// unregistered (deleted, or its namespace destroyed), in whatever namespace the socket lives,
/// so this answers for a ring opened in a pod's namespace too, where an index lookup from this
/// thread's namespace would find another interface. `None` if getsockname fails.
pub(super) fn bound_ifindex(socket: &OwnedFd) -> Option<i32> {
    // SAFETY: sockaddr_ll is plain old data; all-zero is a valid value.
    let mut address: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    let mut len = libc::socklen_t::try_from(size_of::<libc::sockaddr_ll>()).ok()?;
    // SAFETY: `address` is writable for `len` bytes, and `len` is a valid in/out length that
    // lives for the whole call.
    let rc = unsafe {
        libc::getsockname(
            socket.as_raw_fd(),
            (&mut address as *mut libc::sockaddr_ll).cast(),
            &mut len,
        )
    };
    (rc == 0).then_some(address.sll_ifindex)
}

/// The ring's shared mapping; unmapped on drop.
pub(super) struct RingMap {
    base: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is exclusively owned by one Ring; every access goes through `&RingMap`
// from that Ring's methods, and block ownership is arbitrated with atomics shared with the kernel.
unsafe impl Send for RingMap {}

impl RingMap {
    pub(super) fn new(socket: &OwnedFd, len: u64) -> Option<RingMap> {
        let len = usize::try_from(len).ok()?;
        // SAFETY: mapping the packet socket's ring (set up by PACKET_RX_RING just before) with the
        // exact length the kernel allocated; the kernel validates length and offset.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                socket.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return None;
        }
        Some(RingMap {
            base: NonNull::new(ptr.cast())?,
            len,
        })
    }

    /// The status word of block `index`, shared with the kernel.
    fn status_word(&self, index: u32, block_size: u32, offset: usize) -> Option<&AtomicU32> {
        let start = usize::try_from(index)
            .ok()?
            .checked_mul(block_size as usize)?;
        if start.checked_add(block_size as usize)? > self.len {
            return None;
        }
        // SAFETY: `start + offset + 4 <= len` (offset is inside the 48-byte block header and
        // blocks are at least a page); block headers are 8-byte aligned (page-aligned blocks);
        // the kernel updates this word concurrently, which is why it is viewed as an atomic.
        Some(unsafe { AtomicU32::from_ptr(self.base.as_ptr().add(start + offset).cast()) })
    }

    /// Block `index` if the kernel has handed it to user space.
    pub(super) fn block(&self, index: u32, block_size: u32) -> Option<Block<'_>> {
        let status = self.status_word(index, block_size, BLOCK_STATUS_OFFSET)?;
        if status.load(Ordering::Acquire) & libc::TP_STATUS_USER == 0 {
            return None;
        }
        let num_packets = self
            .status_word(index, block_size, NUM_PKTS_OFFSET)?
            .load(Ordering::Relaxed);
        let first_packet = self
            .status_word(index, block_size, FIRST_PACKET_OFFSET)?
            .load(Ordering::Relaxed);
        let start = index as usize * block_size as usize + BLOCK_HEADER_LEN;
        // SAFETY: the body (everything after the block header, so never the status word we store
        // to) lies inside the mapping (checked by status_word), and the Acquire load above saw
        // TP_STATUS_USER, so the kernel has finished writing it and will not touch it until
        // Block's drop stores TP_STATUS_KERNEL. The slice borrows `self`, so it cannot outlive
        // the mapping.
        let body = unsafe {
            std::slice::from_raw_parts(
                self.base.as_ptr().add(start),
                block_size as usize - BLOCK_HEADER_LEN,
            )
        };
        Some(Block::new(body, num_packets, first_packet, status))
    }

    /// How many packets the kernel has put in block `index` so far (meaningful for the block
    /// it is filling, once no new packets can arrive).
    /// Whether block `index` is handed over to us (without taking it).
    pub(super) fn is_ready(&self, index: u32, block_size: u32) -> bool {
        self.status_word(index, block_size, BLOCK_STATUS_OFFSET)
            .is_some_and(|status| status.load(Ordering::Acquire) & libc::TP_STATUS_USER != 0)
    }

    pub(super) fn pending_packets(&self, index: u32, block_size: u32) -> u32 {
        match self.status_word(index, block_size, BLOCK_STATUS_OFFSET) {
            Some(status) if status.load(Ordering::Acquire) & libc::TP_STATUS_USER != 0 => 1,
            Some(_) => self
                .status_word(index, block_size, NUM_PKTS_OFFSET)
                .map_or(0, |n| n.load(Ordering::Acquire)),
            None => 0,
        }
    }
}

impl Drop for RingMap {
    fn drop(&mut self) {
        // SAFETY: `base`/`len` are exactly what mmap returned, and no Block can be alive here
        // because blocks borrow the mapping.
        unsafe {
            libc::munmap(self.base.as_ptr().cast(), self.len);
        }
    }
}
