//! capture-agent: everything in podcap that touches packets — the AF_PACKET ring (the only
//! `unsafe` code), the BPF generator, the pcap/pcapng writers with rotation, and the capture
//! engine that ties them together, and the node agent of a cluster (`cluster`). The
//! `capture-agent` binary is its command line.

// `unsafe` is refused everywhere but in `afpacket`, the one module that talks to the kernel's
// packet ring; `deny` rather than `forbid` so that one `allow` below can lift it there.
#![deny(unsafe_code)]

#[allow(unsafe_code)]
pub mod afpacket;
pub mod bpf;
pub mod budget;
pub mod cluster;
mod elastic;
pub mod engine;
pub mod format;
pub mod hub;
pub mod merge;
pub mod output;
pub mod podnet;
pub mod reconcile;
pub mod rings;
pub mod stop;
pub mod tap;
pub mod target;

pub use engine::{
    Capture, CaptureConfig, CaptureError, CaptureReport, EndReason, InterfaceReport, InterfaceSpec,
    LiveView, OutputPlan,
};
pub use stop::{StopHandle, StopSignal};
