//! The target reconciler of both modes: one rule for which pod interfaces a capture records on
//! this node (or machine) and what becomes of each. The standalone API's in-process runner and
//! the cluster node agent both hand it a [`CaptureRun`] once a pass; they differ only in how
//! pods are found ([`PodSource`]: network namespaces and an inventory, or the pods the API
//! server lists for this node) and in where the status goes (the SQLite store, or a
//! server-side apply of this node's entries), which stays with them.
//!
//! Each pass, while the capture's window is open and its limits are not reached:
//!
//! - a wanted pod interface without a target gets one, in a new file segment that carries on
//!   the counters and files of its earlier segments — unless its target already completed (a
//!   limit) or failed to open in this window, or an attempt is less than [`RETRY_AFTER`] old;
//!   a pod whose host interface cannot be found yet waits (`Waiting`, with why) and is tried
//!   again, while one whose interface can never be found (its [`LocateError`] is permanent: a
//!   hostNetwork pod) fails (`Failed`, with why) and is not tried again in this window;
//! - a target whose pod went away or stopped matching ends as `Gone`, its files kept;
//! - a target whose pod was recreated (new uid) or whose host interface changed ends as `Gone`
//!   and starts again in a new segment — it is "re-mapped";
//! - a target that ended by itself (a limit, its interface deleted, a write error) keeps the
//!   state its engine reported;
//! - an entry of an earlier process (restart) whose pod is not here any more ends as `Gone`.
//!
//! When the window closes or the capture's `maxPackets`/`maxBytes` are reached, every target is
//! drained and ends `Completed`. Engines and their rings are opened through an [`Opener`], so
//! the decisions can be checked with fakes in milliseconds (see `tests`), while the real
//! [`RingOpener`] binds AF_PACKET rings.

mod converge;
mod opener;
mod run;
mod source;

#[cfg(test)]
mod fixtures;
#[cfg(test)]
mod tests;

pub use converge::{Ended, WindowState, RETRY_AFTER};
pub use opener::{OpenError, Opener, RingOpener, Target};
pub use run::{CaptureRun, Running};
pub use source::{LocateError, PodSource, Wanted};
