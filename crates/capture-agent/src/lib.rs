//! capture-agent: everything in podcap that touches packets.
pub mod bpf;
