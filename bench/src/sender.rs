//! The traffic generator (`podcap-bench send`): enters a pod's network
//! namespace (or several, one after the other, opening its sockets in each),
//! then sends UDP datagrams of a given Ethernet frame size at a given combined
//! rate for a bounded time, batched with `sendmmsg` on connected UDP sockets
//! (with several pods, batch by batch in turn), and prints
//! `{"sent":..,"matched":..,"seconds":..}` as JSON. The benchmark runs it as
//! its own process pinned to CPU 0, so its cost never lands on the capturer's
//! core.

use std::fs::File;
use std::io::IoSlice;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use clap::Args;
use nix::errno::Errno;
use nix::sched::{setns, CloneFlags};
use nix::sys::socket::{
    bind, connect, sendmmsg, setsockopt, socket, sockopt, AddressFamily, MsgFlags, MultiHeaders,
    SockFlag, SockType, SockaddrIn,
};
use nix::sys::time::TimeVal;
use serde::{Deserialize, Serialize};

use crate::scenario::{Rate, Scenario};

/// Ethernet (14) + IPv4 (20) + UDP (8) header bytes in front of the payload.
const HEADER_BYTES: usize = 14 + 20 + 8;
/// Datagrams per `sendmmsg` call; large enough to amortise the syscall, small
/// enough to keep pacing smooth at 100k pps (one batch every 640 µs).
const BATCH: usize = 64;
/// Longest a paced sender sleeps in one go; it spins for shorter waits because
/// the timer slack of a sleep would make the rate ragged.
const SPIN_BELOW: Duration = Duration::from_micros(200);
/// The sender gives up after this much longer than asked, whatever happens.
const OVERRUN_LIMIT: Duration = Duration::from_secs(5);

#[derive(Args, Debug, Clone)]
pub struct SendArgs {
    /// Network namespace to send from (a name under /var/run/netns); repeat
    /// it to send from several pods, which share the rate.
    #[arg(long, required = true)]
    pub netns: Vec<String>,
    /// Destination address (must be the benchmark's own host-side veth).
    #[arg(long)]
    pub dst: Ipv4Addr,
    /// Destination UDP port of matching datagrams; the others go to port + 1.
    #[arg(long)]
    pub port: u16,
    /// Ethernet frame length in bytes (payload = size - 42).
    #[arg(long)]
    pub size: usize,
    /// Datagrams per second, or `max`.
    #[arg(long)]
    pub rate: Rate,
    /// Seconds to send for.
    #[arg(long)]
    pub duration: f64,
    /// Only every Nth datagram goes to `--port`, the others to `--port + 1`.
    #[arg(long)]
    pub match_every: Option<u64>,
}

/// What the sender prints when it is done.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SenderReport {
    /// Datagrams the kernel accepted.
    pub sent: u64,
    /// Of those, datagrams sent to the matching port.
    pub matched: u64,
    /// Datagrams the kernel refused (e.g. ENOBUFS).
    pub refused: u64,
    /// Time from the first send to the last.
    pub seconds: f64,
}

/// The command line that starts a sender for `scenario` from the pods of
/// `netns` (combined rate), pinned to CPU 0.
pub fn command(
    own_binary: &Path,
    netns: &[&str],
    dst: Ipv4Addr,
    port: u16,
    scenario: &Scenario,
    duration: Duration,
) -> Vec<String> {
    let mut args = vec![
        "taskset".to_string(),
        "-c".to_string(),
        "0".to_string(),
        own_binary.display().to_string(),
        "send".to_string(),
    ];
    for name in netns {
        args.push("--netns".to_string());
        args.push(name.to_string());
    }
    args.extend([
        "--dst".to_string(),
        dst.to_string(),
        "--port".to_string(),
        port.to_string(),
        "--size".to_string(),
        scenario.frame_size.to_string(),
        "--rate".to_string(),
        scenario.rate.to_string(),
        "--duration".to_string(),
        format!("{}", duration.as_secs_f64()),
    ]);
    if let Some(n) = scenario.match_every {
        args.push("--match-every".to_string());
        args.push(n.to_string());
    }
    args
}

/// Turns a command line from [`command`] into a `Command`.
pub fn to_command(args: &[String]) -> Command {
    let mut command = Command::new(&args[0]);
    command.args(&args[1..]);
    command
}

/// `podcap-bench send`.
pub fn run(args: &SendArgs) -> Result<()> {
    // setns only moves the calling thread, and this process has no other
    // thread: each pod's sockets are opened while the process is in that pod,
    // and a socket stays in the namespace it was created in.
    ensure!(
        args.size >= HEADER_BYTES && args.size <= 1514,
        "--size must be between {HEADER_BYTES} and 1514 bytes (an untagged Ethernet frame)"
    );
    ensure!(
        args.duration > 0.0 && args.duration <= 60.0,
        "--duration must be in (0, 60] seconds"
    );
    ensure!(
        args.port < u16::MAX - 3,
        "--port must leave room for port + 3"
    );
    if let Some(n) = args.match_every {
        ensure!(n >= 1, "--match-every must be at least 1");
    }

    let payload = vec![0x5a_u8; args.size - HEADER_BYTES];
    let mut pods = Vec::with_capacity(args.netns.len());
    for name in &args.netns {
        enter_netns(name)?;
        // Source ports differ from both destination ports, so a `port P`
        // filter only ever matches on the destination.
        pods.push(PodSockets {
            matching: connected_udp_socket(args.port + 2, args.dst, args.port)?,
            other: connected_udp_socket(args.port + 3, args.dst, args.port + 1)?,
        });
    }

    let report = send_loop(args, &payload, &pods)?;
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

fn enter_netns(name: &str) -> Result<()> {
    let path = PathBuf::from("/var/run/netns").join(name);
    let file = File::open(&path).with_context(|| format!("opening {}", path.display()))?;
    setns(&file, CloneFlags::CLONE_NEWNET)
        .with_context(|| format!("entering network namespace {name}"))?;
    Ok(())
}

fn connected_udp_socket(src_port: u16, dst: Ipv4Addr, dst_port: u16) -> Result<OwnedFd> {
    let socket = socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .context("creating UDP socket")?;
    // A blocked send must not outlive the duration bound.
    setsockopt(&socket, sockopt::SendTimeout, &TimeVal::new(0, 100_000))
        .context("setting SO_SNDTIMEO")?;
    bind(
        socket.as_raw_fd(),
        &SockaddrIn::from(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, src_port)),
    )
    .with_context(|| format!("binding UDP source port {src_port}"))?;
    connect(
        socket.as_raw_fd(),
        &SockaddrIn::from(SocketAddrV4::new(dst, dst_port)),
    )
    .with_context(|| format!("connecting UDP socket to {dst}:{dst_port}"))?;
    Ok(socket)
}

/// The two sockets of one pod: to the matching port and to the other one.
struct PodSockets {
    matching: OwnedFd,
    other: OwnedFd,
}

/// Sends until the duration is over: token bucket refilled from the clock,
/// drained in batches of at most `BATCH`, each batch from the next pod.
fn send_loop(args: &SendArgs, payload: &[u8], pods: &[PodSockets]) -> Result<SenderReport> {
    let iovecs: Vec<[IoSlice<'_>; 1]> = (0..BATCH).map(|_| [IoSlice::new(payload)]).collect();
    // Connected sockets: no per-message address.
    let no_addresses: Vec<Option<()>> = vec![None; BATCH];
    let mut headers = MultiHeaders::<()>::preallocate(BATCH, None);

    let duration = Duration::from_secs_f64(args.duration);
    let start = Instant::now();
    let deadline = start + duration;
    let (mut sent, mut matched, mut refused) = (0_u64, 0_u64, 0_u64);
    // Sequence number of the next datagram, which decides its port.
    let mut sequence = 0_u64;
    let mut next_pod = 0_usize;

    loop {
        let now = Instant::now();
        if now >= deadline || now > start + duration + OVERRUN_LIMIT {
            break;
        }
        let batch = match args.rate {
            Rate::Max => BATCH as u64,
            Rate::PacketsPerSecond(pps) => {
                let due = (pps as f64 * (now - start).as_secs_f64()) as u64;
                let owed = due.saturating_sub(sent + refused);
                if owed == 0 {
                    let next_due =
                        start + Duration::from_secs_f64((sent + refused + 1) as f64 / pps as f64);
                    let wait = next_due.saturating_duration_since(now).min(deadline - now);
                    if wait > SPIN_BELOW {
                        std::thread::sleep(wait - SPIN_BELOW / 2);
                    } else {
                        std::hint::spin_loop();
                    }
                    continue;
                }
                owed.min(BATCH as u64)
            }
        };

        let matching_in_batch = match args.match_every {
            None => batch,
            Some(n) => count_multiples(sequence, batch, n),
        };
        let other_in_batch = batch - matching_in_batch;
        sequence += batch;
        let pod = &pods[next_pod % pods.len()];
        next_pod = next_pod.wrapping_add(1);

        for (socket, count, is_match) in [
            (&pod.matching, matching_in_batch, true),
            (&pod.other, other_in_batch, false),
        ] {
            if count == 0 {
                continue;
            }
            let count = count as usize;
            let accepted = match sendmmsg(
                socket.as_raw_fd(),
                &mut headers,
                &iovecs[..count],
                &no_addresses[..count],
                [],
                MsgFlags::empty(),
            ) {
                Ok(results) => results.count() as u64,
                // Transient: the device queue or socket buffer is full.
                Err(Errno::ENOBUFS | Errno::EAGAIN | Errno::EINTR) => 0,
                Err(error) => bail!("sendmmsg failed: {error}"),
            };
            sent += accepted;
            refused += count as u64 - accepted;
            if is_match {
                matched += accepted;
            }
        }
    }

    Ok(SenderReport {
        sent,
        matched,
        refused,
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// How many of the sequence numbers `first..first + count` are multiples of `n`.
fn count_multiples(first: u64, count: u64, n: u64) -> u64 {
    let below = |x: u64| x.div_ceil(n); // multiples of n in 0..x
    below(first + count) - below(first)
}

#[cfg(test)]
mod tests {
    use super::count_multiples;

    #[test]
    fn counts_every_nth() {
        assert_eq!(count_multiples(0, 64, 100), 1);
        assert_eq!(count_multiples(1, 64, 100), 0);
        assert_eq!(count_multiples(64, 64, 100), 1);
        assert_eq!(count_multiples(0, 1000, 100), 10);
        assert_eq!(count_multiples(5, 10, 1), 10);
    }
}
