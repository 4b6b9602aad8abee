//! capture-spec: the model every part of podcap agrees on — filters, limits, output formats —
//! with validation whose errors say what to fix. No I/O lives here: the agent, the API and the
//! CRDs all build on these types.

pub mod filter;
pub mod limits;

pub use filter::{Filter, FilterError, FilterRule, PortRange, Protocol};
pub use limits::{
    CaptureLimits, LimitsError, OutputFormat, Rotation, DEFAULT_SNAP_LENGTH, MAX_SNAP_LENGTH,
};
