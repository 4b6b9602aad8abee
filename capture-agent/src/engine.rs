//! The capture engine: one capture over N interfaces, with a filter, limits and rotating files.
//!
//! One thread does everything: it sleeps in poll(2) on every interface's ring (and the stop
//! signal), and when a block is handed over it encodes each packet straight from the ring into
//! a large output buffer. There is no per-packet allocation or syscall; the file write is the
//! costly part, so it happens in large batches (see `output`).
//!
//! Limits are exact: `max_packets` stops after exactly N packets, `max_bytes` writes no packet
//! that would take the captured bytes past N. A stop request or the end of the duration drains
//! the rings first (swap in a drop-all filter, read until the kernel's partly filled block has
//! been handed over), so a stop never loses a packet the kernel already accepted.

use std::os::fd::BorrowedFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use capture_spec::{CaptureLimits, Filter, LimitsError, OutputFormat};

use crate::afpacket::{self, Ring, RingConfig, RingError, Viewpoint};
use crate::bpf::{self, BpfError, ExpressionError};
use crate::budget::Budget;
use crate::elastic::ElasticRing;
use crate::format::{frame_len, Encoder, InterfaceInfo, PacketRecord};
use crate::output::{FileSummary, OutputError, OutputFiles};
use crate::rings::RingBudget;
use crate::stop::StopSignal;
use crate::tap::LiveTap;

/// The limit of `limits` that refuses one more packet of `len` bytes after `packets` packets
/// and `bytes` bytes, if any.
fn local_limit(limits: &CaptureLimits, packets: u64, bytes: u64, len: u64) -> Option<EndReason> {
    if limits.max_packets.is_some_and(|max| packets >= max) {
        return Some(EndReason::PacketLimit);
    }
    if limits.max_bytes.is_some_and(|max| bytes + len > max) {
        return Some(EndReason::ByteLimit);
    }
    None
}

/// How often kernel counters are read into the live counters and file footers.
const STATS_INTERVAL: Duration = Duration::from_secs(1);
/// How often a draining capture looks at its rings.
const DRAIN_POLL: Duration = Duration::from_millis(5);
/// The first counters tick after `now`, on a grid of [`STATS_INTERVAL`] shared by every capture
/// of the process: a thread serving a hundred quiet captures then wakes once a second for all
/// of them, not a hundred times at scattered moments.
fn next_stats_tick(now: Instant) -> Instant {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    let since = now.saturating_duration_since(epoch).as_nanos();
    let interval = STATS_INTERVAL.as_nanos();
    let ticks = u64::try_from(since / interval + 1).unwrap_or(u64::MAX);
    epoch + STATS_INTERVAL.saturating_mul(u32::try_from(ticks).unwrap_or(u32::MAX))
}

/// How often a ring being resized is looked at (is its successor open, is the old one empty).
const RESIZE_POLL: Duration = Duration::from_millis(5);

/// One interface to capture on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceSpec {
    /// The interface name in this network namespace (e.g. the pod's host-side veth).
    pub name: String,
    /// Recorded in pcapng `if_description`, e.g. "shop/web-1 on node-a".
    pub description: String,
    /// The network namespace the interface is in (a file such as /var/run/netns/NAME);
    /// `None`: this process's own.
    pub netns: Option<PathBuf>,
    /// Whose point of view the packet directions take.
    pub viewpoint: Viewpoint,
}

impl InterfaceSpec {
    /// `name` in this process's namespace, directions as the interface sees them.
    pub fn local(name: impl Into<String>, description: impl Into<String>) -> InterfaceSpec {
        InterfaceSpec {
            name: name.into(),
            description: description.into(),
            netns: None,
            viewpoint: Viewpoint::Interface,
        }
    }
}

/// Where the files go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutputPlan {
    /// Every interface into one file (or one rotating series): `--output FILE`.
    SingleFile(PathBuf),
    /// One file series per interface, named `{directory}/{interface}.{ext}`.
    PerInterface { directory: PathBuf },
}

#[derive(Debug, Clone)]
pub struct CaptureConfig {
    pub interfaces: Vec<InterfaceSpec>,
    /// A packet/byte budget shared with other engines (one per pod of a capture); when set it
    /// replaces `limits.max_packets` and `limits.max_bytes`.
    pub budget: Option<Arc<Budget>>,
    pub filter: Filter,
    /// A pcap-filter expression ANDed with `filter` (`bpfFilter`, `--bpf`); see
    /// [`bpf::compile_with_expression`].
    pub bpf_filter: Option<String>,
    pub limits: CaptureLimits,
    pub duration: Option<Duration>,
    pub format: OutputFormat,
    pub output: OutputPlan,
    /// Every interface's ring, unless `rings` is given.
    pub ring: RingConfig,
    /// A budget the rings come out of instead: each interface starts with a base ring that
    /// grows while it is busy (see [`crate::rings`]).
    pub rings: Option<Arc<RingBudget>>,
}

#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("no interface to capture on: give at least one --interface")]
    NoInterfaces,
    #[error("interface {0} is listed twice")]
    DuplicateInterface(String),
    #[error("interface {name} has link type {link_type}, not Ethernet: podcap captures Ethernet interfaces (veths, bridges, NICs)")]
    NotEthernet { name: String, link_type: String },
    #[error(transparent)]
    Limits(#[from] LimitsError),
    #[error(transparent)]
    Filter(#[from] BpfError),
    /// The `bpfFilter` expression, or the rules with it; the message names the field.
    #[error("bpfFilter: {0}")]
    Expression(#[from] ExpressionError),
    #[error(transparent)]
    Ring(#[from] RingError),
    #[error(transparent)]
    Output(#[from] OutputError),
    #[error("waiting for packets: {0}")]
    Poll(#[source] std::io::Error),
}

/// Why a capture ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndReason {
    /// Asked to stop (signal or stop handle).
    Stopped,
    /// The duration elapsed.
    Duration,
    PacketLimit,
    ByteLimit,
    /// Every interface was deleted (e.g. the pods went away).
    InterfacesGone,
    /// Writing failed (e.g. the disk is full); files up to the failure are kept.
    Failed(String),
}

/// Counters a caller may read while the capture runs (updated once per ring block).
#[derive(Debug, Default)]
pub struct InterfaceCounters {
    pub packets: AtomicU64,
    pub bytes: AtomicU64,
    pub drops: AtomicU64,
}

/// What a caller can watch while a capture runs: per-interface counters (in the order of
/// `CaptureConfig::interfaces`) and, per output, its files so far (refreshed every second).
#[derive(Debug, Default)]
pub struct LiveView {
    pub interfaces: Vec<InterfaceCounters>,
    pub files: Mutex<Vec<FileSummary>>,
    /// Copies of the packets for live watchers.
    pub tap: LiveTap,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceReport {
    pub name: String,
    pub description: String,
    /// Packets and bytes written to files.
    pub packets: u64,
    pub bytes: u64,
    /// Packets the filter accepted in the kernel (written, dropped, or left after a limit).
    pub kernel_received: u64,
    /// Packets the filter accepted that found no room in the ring.
    pub drops: u64,
    pub freezes: u64,
    /// The interface was deleted during the capture; its part ended then.
    pub gone: bool,
    /// Times its ring was replaced by a larger or smaller one (rings from a budget only).
    pub ring_resizes: u32,
    /// The size of its ring at the end, in bytes.
    pub ring_bytes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaptureReport {
    pub end: EndReason,
    pub packets: u64,
    pub bytes: u64,
    pub drops: u64,
    pub freezes: u64,
    pub interfaces: Vec<InterfaceReport>,
    /// Files on disk, in the order written.
    pub files: Vec<FileSummary>,
    /// Files deleted to stay within `maxFiles`.
    pub deleted_files: u64,
}

struct Source {
    ring: ElasticRing,
    spec: InterfaceSpec,
    output: usize,
    interface_id: u32,
    packets: u64,
    bytes: u64,
    /// The interface was deleted; the ring is no longer polled.
    gone: bool,
}

/// An open capture, ready to run.
pub struct Capture {
    sources: Vec<Source>,
    outputs: Vec<OutputFiles>,
    limits: CaptureLimits,
    budget: Option<Arc<Budget>>,
    /// When the duration ends, counted from [`Capture::open`].
    deadline: Option<Instant>,
    live: Arc<LiveView>,
    packets: u64,
    bytes: u64,
    next_stats: Instant,
    /// When a drain or a ring resize in progress wants the next look (set by `step`).
    look_again: Option<Instant>,
    draining: Option<Drain>,
}

/// A stop in progress: no new packets, the rings are being emptied.
struct Drain {
    reason: EndReason,
    /// Not done before this, whatever the rings say.
    settle: Instant,
    /// Done at this, whatever the rings say.
    give_up: Instant,
}

fn check_ethernet(name: &str) -> Result<(), CaptureError> {
    // 1 = ARPHRD_ETHER, 772 = ARPHRD_LOOPBACK (which also carries Ethernet headers).
    let path = format!("/sys/class/net/{name}/type");
    match std::fs::read_to_string(&path) {
        Ok(text) if matches!(text.trim(), "1" | "772") => Ok(()),
        Ok(text) => Err(CaptureError::NotEthernet {
            name: name.into(),
            link_type: text.trim().into(),
        }),
        // No sysfs entry: let the socket report a missing interface precisely.
        Err(_) => Ok(()),
    }
}

impl Capture {
    /// Validates the configuration, compiles the filter, opens every ring and the first file(s).
    /// Nothing is captured before this returns, and everything after it is.
    pub fn open(config: CaptureConfig) -> Result<Capture, CaptureError> {
        if config.interfaces.is_empty() {
            return Err(CaptureError::NoInterfaces);
        }
        for (i, interface) in config.interfaces.iter().enumerate() {
            if config.interfaces[..i]
                .iter()
                .any(|earlier| earlier.name == interface.name)
            {
                return Err(CaptureError::DuplicateInterface(interface.name.clone()));
            }
            // sysfs shows this process's namespace only.
            if interface.netns.is_none() {
                check_ethernet(&interface.name)?;
            }
        }
        config.limits.validate()?;
        let snap_length = config.limits.snap_length;
        if snap_length > config.ring.max_packet_in_block() {
            tracing::warn!(
                snap_length,
                block_size = config.ring.block_size,
                "packets longer than {} bytes will be cut to fit a ring block; raise --block-size to keep them whole",
                config.ring.max_packet_in_block()
            );
        }
        let expression = config.bpf_filter.as_deref();
        let program = match bpf::compile_with_expression(&config.filter, expression, snap_length) {
            // Without an expression the rules' own error says what to change.
            Err(ExpressionError::Rules(error)) => return Err(error.into()),
            other => other?,
        };
        let filter_expression = bpf::describe(&config.filter, expression);
        let info = |spec: &InterfaceSpec| InterfaceInfo {
            name: spec.name.clone(),
            description: spec.description.clone(),
            filter_expression: filter_expression.clone(),
        };
        let rotation = config.limits.rotation;
        let mut outputs = Vec::new();
        let mut routes = Vec::new();
        match &config.output {
            OutputPlan::SingleFile(path) => {
                let infos = config.interfaces.iter().map(info).collect();
                outputs.push(OutputFiles::create(
                    path,
                    config.format,
                    infos,
                    snap_length,
                    rotation,
                )?);
                routes.extend((0..config.interfaces.len()).map(|i| (0, i as u32)));
            }
            OutputPlan::PerInterface { directory } => {
                for (i, spec) in config.interfaces.iter().enumerate() {
                    let path =
                        directory.join(format!("{}.{}", spec.name, config.format.extension()));
                    outputs.push(OutputFiles::create(
                        &path,
                        config.format,
                        vec![info(spec)],
                        snap_length,
                        rotation,
                    )?);
                    routes.push((i, 0));
                }
            }
        }
        let mut sources = Vec::with_capacity(config.interfaces.len());
        for (spec, (output, interface_id)) in config.interfaces.into_iter().zip(routes) {
            let open = |geometry| -> Result<Ring, RingError> {
                let mut ring =
                    Ring::open_in(spec.netns.as_deref(), &spec.name, geometry, &program)?;
                ring.set_viewpoint(spec.viewpoint);
                Ok(ring)
            };
            let ring = match &config.rings {
                Some(budget) => {
                    let (geometry, share) = budget.base_ring(snap_length)?;
                    ElasticRing::from_budget(open(geometry)?, share, budget.clone(), snap_length)?
                }
                None => ElasticRing::fixed(open(config.ring)?),
            };
            sources.push(Source {
                ring,
                spec,
                output,
                interface_id,
                packets: 0,
                bytes: 0,
                gone: false,
            });
        }
        let files = outputs.iter().flat_map(OutputFiles::files).collect();
        let live = Arc::new(LiveView {
            interfaces: sources
                .iter()
                .map(|_| InterfaceCounters::default())
                .collect(),
            files: Mutex::new(files),
            tap: LiveTap::default(),
        });
        Ok(Capture {
            sources,
            outputs,
            limits: config.limits,
            budget: config.budget,
            deadline: config.duration.map(|d| Instant::now() + d),
            live,
            packets: 0,
            bytes: 0,
            next_stats: next_stats_tick(Instant::now()),
            look_again: None,
            draining: None,
        })
    }

    /// Counters and files to watch while the capture runs.
    pub fn live_view(&self) -> Arc<LiveView> {
        self.live.clone()
    }

    /// The interface names actually bound (ifindex-resolved), for a "capturing on" message.
    pub fn interface_names(&self) -> Vec<String> {
        self.sources
            .iter()
            .map(|s| format!("{} (ifindex {})", s.spec.name, s.ring.ring().ifindex()))
            .collect()
    }

    /// Captures until stopped, the duration ends or a limit is reached, then closes the files.
    /// The command line's loop; the service runs many captures on one thread ([`crate::hub`])
    /// through the same steps.
    pub fn run(mut self, stop: &StopSignal) -> Result<CaptureReport, CaptureError> {
        let end = loop {
            let now = Instant::now();
            if stop.is_requested() {
                self.begin_drain(EndReason::Stopped, now);
            }
            if let Some(end) = self.step(now) {
                break end;
            }
            let timeout = self
                .next_wake(Instant::now())
                .saturating_duration_since(Instant::now());
            let mut fds = Vec::new();
            self.poll_fds(&mut fds);
            fds.push(stop.wake_fd());
            match afpacket::wait(&fds, timeout) {
                Ok(readiness) => {
                    let errors = readiness.iter().any(|ready| ready.error);
                    drop(fds);
                    if errors {
                        self.take_socket_errors();
                    }
                }
                Err(error) => break EndReason::Failed(CaptureError::Poll(error).to_string()),
            }
        };
        self.finish(end)
    }

    /// The sockets to wait on: every ring whose interface is still there.
    pub(crate) fn poll_fds<'a>(&'a self, fds: &mut Vec<BorrowedFd<'a>>) {
        for source in self.sources.iter().filter(|s| !s.gone) {
            source.ring.poll_fds(fds);
        }
    }

    /// Does whatever is due at `now`: writes the handed-over blocks, and once a second reads
    /// the kernel counters, notices deleted interfaces and publishes the files; flushes files
    /// whose records have waited [`FLUSH_INTERVAL`]; while draining, checks whether the rings
    /// are empty. Returns why the capture ended, once it has.
    pub(crate) fn step(&mut self, now: Instant) -> Option<EndReason> {
        if self.draining.is_none() && self.deadline.is_some_and(|d| now >= d) {
            self.begin_drain(EndReason::Duration, now);
        }
        match self.read_ready_blocks(now) {
            Ok(Some(limit)) => return Some(limit),
            Ok(None) => {}
            Err(error) => return Some(EndReason::Failed(error.to_string())),
        }
        // A drain or a ring resize in progress is looked at again shortly, packets or not.
        self.look_again = self
            .sources
            .iter()
            .any(|s| s.ring.is_changing())
            .then_some(now + RESIZE_POLL);
        if let Some(drain) = &self.draining {
            self.look_again = Some(now + DRAIN_POLL);
            let drained = self.sources.iter().all(|s| s.gone || s.ring.is_drained());
            if now >= drain.settle && drained {
                return Some(drain.reason.clone());
            }
            if now >= drain.give_up {
                tracing::debug!("drain gave up waiting for the kernel to hand over a block");
                return Some(drain.reason.clone());
            }
            return None;
        }
        // Their last blocks are written above; nothing more can come.
        if self.sources.iter().all(|s| s.gone) {
            return Some(EndReason::InterfacesGone);
        }
        if now >= self.next_stats {
            self.next_stats = next_stats_tick(now);
            self.refresh_kernel_stats();
            self.mark_deleted_interfaces();
            self.publish_files();
        }
        if let Err(error) = self
            .outputs
            .iter_mut()
            .try_for_each(|o| o.flush_if_due(now))
        {
            return Some(EndReason::Failed(error.to_string()));
        }
        None
    }

    /// When [`Capture::step`] next has something to do if no packet arrives: the next counters
    /// tick, a flush of records waiting in a buffer, the end of the duration, or (draining) the
    /// next look at the rings. A quiet capture wakes once a second.
    pub(crate) fn next_wake(&self, now: Instant) -> Instant {
        if self.draining.is_some() {
            return self.look_again.unwrap_or(now);
        }
        let mut wake = self.next_stats;
        if let Some(flush) = self.outputs.iter().filter_map(OutputFiles::flush_due).min() {
            wake = wake.min(flush);
        }
        if let Some(deadline) = self.deadline {
            wake = wake.min(deadline);
        }
        if let Some(again) = self.look_again {
            wake = wake.min(again);
        }
        wake
    }

    /// Takes pending socket errors (ENETDOWN when an interface goes down or is deleted), so poll
    /// stops reporting them, and looks for deleted interfaces at once.
    pub(crate) fn take_socket_errors(&mut self) {
        for source in self.sources.iter().filter(|s| !s.gone) {
            if let Some(error) = source.ring.take_error() {
                tracing::debug!(interface = %source.spec.name, %error, "socket error");
            }
        }
        self.mark_deleted_interfaces();
    }

    /// Marks sources whose interface no longer exists as gone (no longer polled). The kernel
    /// reports ENETDOWN once, when the interface goes down, which can be before it is deleted,
    /// so this also runs on every statistics tick.
    fn mark_deleted_interfaces(&mut self) {
        for source in self.sources.iter_mut().filter(|s| !s.gone) {
            if !source.ring.interface_exists() {
                tracing::warn!(interface = %source.spec.name, "interface deleted; its capture ends here");
                source.gone = true;
            }
        }
    }

    /// Stops new packets and, through the next steps, writes every packet the kernel already
    /// accepted; the capture then ends for `reason`. Asking again changes nothing.
    pub(crate) fn begin_drain(&mut self, reason: EndReason, now: Instant) {
        if self.draining.is_some() {
            return;
        }
        for source in self.sources.iter_mut().filter(|s| !s.gone) {
            if let Err(error) = source.ring.detach_traffic() {
                tracing::warn!(%error, "could not stop traffic before draining");
            }
        }
        let longest_timeout = self
            .sources
            .iter()
            .map(|s| s.ring.block_timeout())
            .max()
            .unwrap_or_default();
        self.draining = Some(Drain {
            reason,
            settle: now + afpacket::IN_FLIGHT_SETTLE,
            give_up: now + afpacket::last_block_wait(longest_timeout),
        });
    }

    /// Writes every packet in every handed-over block; returns a limit if one was reached.
    fn read_ready_blocks(&mut self, now: Instant) -> Result<Option<EndReason>, OutputError> {
        let Capture {
            sources,
            outputs,
            limits,
            budget,
            live,
            packets,
            bytes,
            ..
        } = self;
        let live_encoder = Encoder::new(OutputFormat::Pcapng);
        for (index, source) in sources.iter_mut().enumerate() {
            let output = &mut outputs[source.output];
            let bytes_before = source.bytes;
            while let Some(block) = source.ring.next_block(now) {
                // Checked once per block: with no watcher, the per-packet path is unchanged.
                let mut tapped = live.tap.is_active().then(Vec::new);
                for packet in block.packets() {
                    let len = frame_len(&packet) as u64;
                    let refused = match budget {
                        Some(shared) => shared.take(len).err(),
                        None => local_limit(limits, *packets, *bytes, len),
                    };
                    if let Some(reason) = refused {
                        return Ok(Some(reason));
                    }
                    output.write(source.interface_id, &packet)?;
                    if let Some(chunk) = tapped.as_mut() {
                        let record = PacketRecord {
                            interface_id: index as u32,
                            packet: &packet,
                        };
                        live_encoder.packet(chunk, &record);
                    }
                    *packets += 1;
                    *bytes += len;
                    source.packets += 1;
                    source.bytes += len;
                }
                if let Some(chunk) = tapped.filter(|c| !c.is_empty()) {
                    live.tap.publish(chunk);
                }
                let counters = &live.interfaces[index];
                counters.packets.store(source.packets, Ordering::Relaxed);
                counters.bytes.store(source.bytes, Ordering::Relaxed);
            }
            source.ring.count(source.bytes - bytes_before);
            source.ring.after_pass(now);
        }
        // Stop as soon as the last allowed packet is written, not when the next one arrives.
        match budget {
            Some(shared) if shared.is_spent() => return Ok(Some(shared.reason())),
            None if limits.max_packets.is_some_and(|max| *packets >= max) => {
                return Ok(Some(EndReason::PacketLimit))
            }
            _ => {}
        }
        Ok(None)
    }

    fn publish_files(&self) {
        if let Ok(mut files) = self.live.files.lock() {
            *files = self.outputs.iter().flat_map(OutputFiles::files).collect();
        }
    }

    fn refresh_kernel_stats(&mut self) {
        for (index, source) in self.sources.iter_mut().enumerate() {
            match source.ring.stats() {
                Ok(stats) => {
                    source.ring.note_drops(stats.drops);
                    self.live.interfaces[index]
                        .drops
                        .store(stats.drops, Ordering::Relaxed);
                    self.outputs[source.output].set_kernel_counters(
                        source.interface_id,
                        stats.received,
                        stats.drops,
                    );
                }
                Err(error) => tracing::warn!(%error, "reading kernel counters"),
            }
        }
    }

    /// Closes the files and reports; the capture ended for `end`.
    pub(crate) fn finish(mut self, end: EndReason) -> Result<CaptureReport, CaptureError> {
        self.refresh_kernel_stats();
        let mut interfaces = Vec::with_capacity(self.sources.len());
        let (mut drops, mut freezes) = (0, 0);
        for source in &mut self.sources {
            let stats = source.ring.stats().unwrap_or_default();
            drops += stats.drops;
            freezes += stats.freezes;
            interfaces.push(InterfaceReport {
                name: source.spec.name.clone(),
                description: source.spec.description.clone(),
                packets: source.packets,
                bytes: source.bytes,
                kernel_received: stats.received,
                drops: stats.drops,
                freezes: stats.freezes,
                gone: source.gone,
                ring_resizes: source.ring.resizes(),
                ring_bytes: source.ring.ring().config().ring_bytes(),
            });
        }
        let mut files = Vec::new();
        let mut deleted_files = 0;
        let mut end = end;
        for output in self.outputs {
            deleted_files += output.deleted_files();
            let (finished, error) = output.finish();
            files.extend(finished);
            if let Some(error) = error {
                end = EndReason::Failed(error.to_string());
            }
        }
        Ok(CaptureReport {
            end,
            packets: self.packets,
            bytes: self.bytes,
            drops,
            freezes,
            interfaces,
            files,
            deleted_files,
        })
    }
}
