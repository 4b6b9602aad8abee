//! When a capture runs, as the node agent sees it: the window rule of the whole product,
//! [`capture_spec::CaptureWindow::of`], which the API's status controller follows too, so the
//! agents and the API agree when a capture starts and ends. It is anchored on fields that do not
//! move (start = `spec.startTime`, else `metadata.creationTimestamp`; end = `spec.endTime`, else
//! start + `spec.duration`, else start + `--max-window`), so the agent comes to the same answer
//! whenever it looks, including after a restart; a window longer than `--max-window` (an object
//! applied with kubectl, `duration: "1000000years"`) is cut to it, never overflowed; and a
//! capture whose `endTime` is at or before now is over (the API stops a capture by setting
//! `endTime` to now).

pub use capture_spec::CaptureWindow as Window;
