//! The classic BPF generator: compiles a capture [`capture_spec::Filter`] into a program the
//! kernel runs on every frame of an AF_PACKET socket, so unwanted packets never reach user space.
//!
//! - `program`: [`Instruction`] (the kernel's `struct sock_filter`) and [`Program`], which is
//!   validated like the kernel validates, so attaching it cannot fail on its contents;
//! - `codegen`: [`compile`], whose meaning (VLAN tags, fragments, truncated frames) is documented
//!   there and checked against libpcap in `tests/bpf_vs_libpcap.rs`;
//! - `portset` and `asm`: port-range decision trees and the label assembler that repairs jumps
//!   too long for 8 bits;
//! - [`interpret`]: runs a program in user space with the kernel's semantics, for tests and checks;
//! - `libpcap`: [`compile_with_expression`], a pcap-filter expression (`bpfFilter`) compiled by
//!   libpcap in process and ANDed with the rules into one program (its meaning is written there).
//!
//! No ancillary loads (`SKF_AD_*`) are used: they depend on socket-buffer metadata (for example
//! whether the kernel stripped a VLAN tag), and the programs must mean the same in the kernel, in
//! the interpreter and in libpcap.

mod asm;
mod codegen;
mod interpret;
mod libpcap;
mod portset;
mod program;

pub use codegen::compile;
pub use interpret::interpret;
pub use libpcap::{compile_with_expression, describe, ExpressionError};
pub use program::{Instruction, Program, MAX_INSTRUCTIONS};

/// Why a filter could not be turned into a program.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BpfError {
    #[error(
        "the capture filter needs {instructions} BPF instructions but the kernel accepts at most 4096: \
         use fewer rules, port ranges or peers (neighbouring ports can be merged into one range, e.g. 8000:8100, \
         and neighbouring addresses into one CIDR, e.g. 10.0.4.0/22; IPv6 peers cost the most)"
    )]
    TooLong { instructions: usize },
    #[error("snap length 0 would keep no byte of any packet: use a snap length of 1-262144")]
    ZeroSnapLength,
    #[error("internal error in the BPF generator: instruction {index} is invalid ({reason}); please report it with the filter used")]
    Invalid { index: usize, reason: String },
    #[error("internal error in the BPF generator: {0}; please report it with the filter used")]
    Internal(String),
}
