//! capture-spec: the model every part of podcap agrees on, with validation whose errors say what
//! to fix. The capture spec and status (`PacketCapture`), the schedule spec and status
//! (`PacketCaptureSchedule`, cron with Kubernetes CronJob semantics), packet filters, Kubernetes
//! label selectors, limits and output formats, capture windows, object names, and whole-spec
//! validation that reports every problem with its field path. No I/O and no clock or randomness
//! live here: callers pass "now" and random suffixes in, so every result is reproducible. The
//! agent, the API and the CRDs all build on these types; their JSON shapes are the REST contract
//! (the API's OpenAPI document) and the CRD contract (`deploy/crds`, generated from them).

#![forbid(unsafe_code)]

pub mod capture;
pub mod capture_point;
#[cfg(feature = "kube")]
pub mod crd;
pub mod decode;
pub mod duration;
pub mod filter;
pub mod label;
pub mod limits;
pub mod names;
#[cfg(feature = "openapi")]
mod openapi;
pub mod peer;
pub mod schedule;
pub mod selector;
#[cfg(feature = "kube")]
pub mod slice;
pub mod status;
pub mod time;
pub mod validate;
pub mod window;

pub use capture::CaptureSpec;
pub use capture_point::{CapturePoint, UnknownCapturePoint};
#[cfg(feature = "kube")]
pub use crd::{PacketCapture, PacketCaptureSchedule};
pub use duration::{compact_duration, CaptureDuration, DurationError};
pub use filter::{Filter, FilterError, FilterRule, PortRange, Protocol};
pub use label::{validate_label_key, validate_label_value, LabelError};
pub use limits::{
    CaptureLimits, LimitsError, OutputFormat, Rotation, DEFAULT_SNAP_LENGTH, MAX_SNAP_LENGTH,
};
pub use names::{
    generate_name, validate_name, validate_namespace, NameError, GENERATED_SUFFIX_ALPHABET,
};
pub use peer::{Peer, MAX_PEERS};
pub use schedule::cron::{CronExpressionError, CronSchedule};
pub use schedule::{
    parse_time_zone, ConcurrencyPolicy, ScheduleError, ScheduleRun, ScheduleSpec, ScheduleStatus,
    DEFAULT_HISTORY_LIMIT, MAX_HISTORY_LIMIT, NEXT_SCHEDULE_TIMES_SHOWN,
};
pub use selector::{
    LabelSelector, LabelSelectorRequirement, SelectorError, SelectorOperator, SelectorProblem,
};
#[cfg(feature = "kube")]
pub use slice::{PacketCaptureSlice, SliceSpec, SliceSummary};
pub use status::{
    CaptureStatus, Counters, FileStatus, Phase, TargetKey, TargetState, TargetStatus,
};
pub use time::{parse_rfc3339, rfc3339, TimeError};
pub use validate::{FieldError, ValidationErrors};
pub use window::{CaptureWindow, StoredWindow, WindowClamped, WindowError};
