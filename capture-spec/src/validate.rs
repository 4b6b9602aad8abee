//! Whole-spec validation: every problem with a capture or schedule spec at once, each located by
//! a field path (`spec.endTime`, `spec.filters[1].ports[0]`,
//! `spec.podSelector.matchExpressions[0].values`) and explained with what to write instead. The
//! API returns these as one problem+json response, and the CLI prints them, so a user fixes
//! everything in one round.
//!
//! Filters are checked when they are deserialized (a `FilterRule` cannot hold ports on ICMP);
//! [`crate::CaptureSpec::from_json_value`] turns those serde errors into located field errors.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::capture::{bpf_filter_problem, CaptureSpec};
use crate::duration::compact_duration;
use crate::schedule::{ScheduleSpec, MAX_HISTORY_LIMIT};
use crate::selector::label_map_errors;
use crate::window::{CaptureWindow, WindowError};

/// One problem, at one field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    /// Where, as a path into the object: `spec.rotation.maxFiles`, `spec.filters[1].ports[0]`.
    pub field: String,
    /// What is wrong and what to write instead.
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        FieldError {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Every problem found, in field order. Never empty when returned as an error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", list(.0))]
pub struct ValidationErrors(pub Vec<FieldError>);

fn list(errors: &[FieldError]) -> String {
    match errors {
        [one] => one.to_string(),
        many => {
            let lines: Vec<String> = many.iter().map(|e| format!("- {e}")).collect();
            format!("{} problems:\n{}", many.len(), lines.join("\n"))
        }
    }
}

impl ValidationErrors {
    pub fn errors(&self) -> &[FieldError] {
        &self.0
    }

    /// The errors at exactly this field.
    pub fn at<'a>(&'a self, field: &'a str) -> impl Iterator<Item = &'a FieldError> + 'a {
        self.0.iter().filter(move |e| e.field == field)
    }

    /// `Ok(value)` when nothing was found, otherwise every error.
    pub(crate) fn or_ok<T>(errors: Vec<FieldError>, value: T) -> Result<T, ValidationErrors> {
        if errors.is_empty() {
            Ok(value)
        } else {
            Err(ValidationErrors(errors))
        }
    }
}

impl IntoIterator for ValidationErrors {
    type Item = FieldError;
    type IntoIter = std::vec::IntoIter<FieldError>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

/// The path of `field` inside the object at `path`.
fn at(path: &str, field: &str) -> String {
    format!("{path}.{field}")
}

impl CaptureSpec {
    /// Checks the whole spec for creation at `now` and returns the window it will run in.
    ///
    /// Checks the pod and node selectors, the `bpfFilter` text (length, one line), the limits (`spec.snapLength`, `spec.rotation.maxFiles`,
    /// ...) and the window (`spec.endTime`, `spec.duration`), and refuses a window longer than
    /// `max_window`. A capture with neither `endTime` nor `duration` gets `max_window` as its
    /// length, so every capture ends even if nobody stops it: the returned window says when.
    pub fn validate(
        &self,
        now: DateTime<Utc>,
        max_window: Duration,
    ) -> Result<CaptureWindow, ValidationErrors> {
        let mut errors = self.selection_and_limit_errors("spec");
        match self.window(now, max_window) {
            Ok(window) => ValidationErrors::or_ok(errors, window),
            Err(e) => {
                errors.push(window_error("spec", self, &e));
                Err(ValidationErrors(errors))
            }
        }
    }

    /// Selector, node selector, `bpfFilter` text and limit problems, under `path` (`spec`,
    /// `spec.template`). Whether libpcap compiles the expression is checked by the caller that
    /// links libpcap (the API, through the agent's compiler).
    fn selection_and_limit_errors(&self, path: &str) -> Vec<FieldError> {
        let mut errors = self.pod_selector.field_errors(&at(path, "podSelector"));
        if let Some(node_selector) = &self.node_selector {
            errors.extend(label_map_errors(node_selector, &at(path, "nodeSelector")));
        }
        if let Some(problem) = self.bpf_filter.as_deref().and_then(bpf_filter_problem) {
            errors.push(FieldError::new(at(path, "bpfFilter"), problem));
        }
        errors.extend(
            self.limits()
                .problems()
                .into_iter()
                .map(|(field, e)| FieldError::new(at(path, field), e.to_string())),
        );
        errors
    }
}

/// Puts a window error on the field the user should change.
fn window_error(path: &str, spec: &CaptureSpec, error: &WindowError) -> FieldError {
    let field = match error {
        WindowError::EndTimeAndDuration | WindowError::OutOfRange(_) => "duration",
        WindowError::EndNotInFuture { .. } | WindowError::EndNotAfterStart { .. } => "endTime",
        WindowError::TooLong { .. } if spec.duration.is_some() => "duration",
        WindowError::TooLong { .. } => "endTime",
    };
    FieldError::new(at(path, field), error.to_string())
}

impl ScheduleSpec {
    /// Checks the whole schedule: the cron expression (`spec.schedule`), `spec.timeZone`, the
    /// template (`spec.template.*`, whose window must be a `duration` of at most `max_window`),
    /// `spec.historyLimit` (at most 100) and `spec.startingDeadlineSeconds` (more than 0).
    pub fn validate(&self, max_window: Duration) -> Result<(), ValidationErrors> {
        let mut errors = Vec::new();
        if let Err(e) = self.cron() {
            errors.push(FieldError::new("spec.schedule", e.to_string()));
        }
        if self.time_zone.is_some() {
            if let Err(e) = self.zone() {
                errors.push(FieldError::new("spec.timeZone", e.to_string()));
            }
        }
        errors.extend(template_errors(&self.template, max_window));
        if let Some(limit) = self.history_limit.filter(|l| *l > MAX_HISTORY_LIMIT) {
            errors.push(FieldError::new(
                "spec.historyLimit",
                format!("historyLimit {limit} is more than {MAX_HISTORY_LIMIT}: keep at most {MAX_HISTORY_LIMIT} finished captures, or leave it out to keep 3"),
            ));
        }
        if self.starting_deadline_seconds == Some(0) {
            errors.push(FieldError::new(
                "spec.startingDeadlineSeconds",
                "startingDeadlineSeconds is 0, so no run could ever start: give a positive number of seconds, e.g. 300, or leave it out for no deadline",
            ));
        }
        ValidationErrors::or_ok(errors, ())
    }
}

/// A template is a capture whose window is only a `duration`: each run starts at its scheduled
/// time, so a fixed `startTime` or `endTime` would be wrong from the second run on.
fn template_errors(template: &CaptureSpec, max_window: Duration) -> Vec<FieldError> {
    const PATH: &str = "spec.template";
    let mut errors = template.selection_and_limit_errors(PATH);
    if template.start_time.is_some() {
        errors.push(FieldError::new(
            at(PATH, "startTime"),
            "a schedule's template cannot have startTime: each run starts at its scheduled time; remove startTime and set duration, e.g. \"10m\"",
        ));
    }
    if template.end_time.is_some() {
        errors.push(FieldError::new(
            at(PATH, "endTime"),
            "a schedule's template cannot have endTime: each run ends duration after its start; remove endTime and set duration, e.g. \"10m\"",
        ));
    }
    match template.duration {
        None => errors.push(FieldError::new(
            at(PATH, "duration"),
            "a schedule's template needs a duration, e.g. \"10m\": each run captures for that long",
        )),
        Some(length) if length.as_std() > max_window => errors.push(FieldError::new(
            at(PATH, "duration"),
            format!(
                "window is {length}; the maximum is {}: shorten duration",
                compact_duration(max_window)
            ),
        )),
        Some(_) => {}
    }
    errors
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    const DAY: Duration = Duration::from_secs(24 * 3600);

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 6, 1, 10, 0, 0).unwrap()
    }

    fn capture(json: &str) -> CaptureSpec {
        serde_json::from_str(json).unwrap_or_else(|e| panic!("{json}: {e}"))
    }

    fn capture_errors(json: &str) -> Vec<(String, String)> {
        capture(json)
            .validate(now(), DAY)
            .unwrap_err()
            .into_iter()
            .map(|e| (e.field, e.message))
            .collect()
    }

    fn schedule_errors(json: &str) -> Vec<(String, String)> {
        serde_json::from_str::<ScheduleSpec>(json)
            .unwrap_or_else(|e| panic!("{json}: {e}"))
            .validate(DAY)
            .unwrap_err()
            .into_iter()
            .map(|e| (e.field, e.message))
            .collect()
    }

    fn fields(errors: &[(String, String)]) -> Vec<&str> {
        errors.iter().map(|(f, _)| f.as_str()).collect()
    }

    #[test]
    fn a_good_capture_returns_its_window() {
        let spec = capture(
            r#"{"podSelector":{"matchLabels":{"app":"web"}},"filters":[{"protocol":"TCP","ports":[443]},{"protocol":"UDP","ports":[53]}],"duration":"10m"}"#,
        );
        let window = spec.validate(now(), DAY).unwrap();
        assert_eq!(window.start, now());
        assert_eq!(
            window.end,
            Utc.with_ymd_and_hms(2025, 6, 1, 10, 10, 0).unwrap()
        );
    }

    #[test]
    fn an_open_capture_ends_after_the_maximum_window() {
        let window = capture("{}").validate(now(), DAY).unwrap();
        assert_eq!(
            window.end,
            Utc.with_ymd_and_hms(2025, 6, 2, 10, 0, 0).unwrap()
        );
    }

    #[test]
    fn every_capture_problem_is_reported_with_its_path() {
        let errors = capture_errors(
            r#"{
                "podSelector": {"matchLabels": {"app": "web!"}, "matchExpressions": [{"key": "tier", "operator": "In"}]},
                "nodeSelector": {"bad key": "x"},
                "snapLength": 0,
                "maxBytes": 0,
                "rotation": {"maxFileBytes": 100, "maxFiles": 0},
                "endTime": "2025-06-01T11:00:00Z",
                "duration": "10m"
            }"#,
        );
        assert_eq!(
            fields(&errors),
            [
                "spec.podSelector.matchLabels",
                "spec.podSelector.matchExpressions[0].values",
                "spec.nodeSelector",
                "spec.snapLength",
                "spec.maxBytes",
                "spec.rotation.maxFileBytes",
                "spec.rotation.maxFiles",
                "spec.duration",
            ]
        );
        assert!(errors[0].1.contains("label value \"web!\" is not valid"));
        assert_eq!(
            errors[1].1,
            "operator In needs at least one value: list them, e.g. \"values\": [\"a\", \"b\"]"
        );
        assert!(errors[2].1.contains("label key \"bad key\" is not valid"));
        assert_eq!(errors[3].1, "snapLength 0 is out of range: use 1-262144 (the default, 262144, keeps whole GRO frames)");
        assert_eq!(
            errors[4].1,
            "maxBytes is 0: leave it out for no limit, or give a positive number"
        );
        assert_eq!(
            errors[5].1,
            "rotation.maxFileBytes 100 is too small: use at least 4096"
        );
        assert_eq!(
            errors[6].1,
            "rotation.maxFiles is 0: leave it out for no limit, or give a positive number"
        );
        assert!(errors[7].1.starts_with("endTime and duration are both set"));
    }

    #[test]
    fn window_errors_point_at_the_field_to_change() {
        let errors = capture_errors(r#"{"endTime": "2025-06-01T09:00:00Z"}"#);
        assert_eq!(fields(&errors), ["spec.endTime"]);
        assert!(errors[0]
            .1
            .starts_with("endTime 2025-06-01T09:00:00Z is not in the future"));
        let errors = capture_errors(
            r#"{"startTime": "2025-06-01T12:00:00Z", "endTime": "2025-06-01T11:00:00Z"}"#,
        );
        assert_eq!(fields(&errors), ["spec.endTime"]);
        assert!(errors[0]
            .1
            .contains("is not after startTime 2025-06-01T12:00:00Z"));
        let errors = capture_errors(r#"{"duration": "30h"}"#);
        assert_eq!(
            errors,
            [(
                "spec.duration".to_string(),
                "window is 30h; the maximum is 24h: shorten duration or endTime".to_string()
            )]
        );
        // A duration past the last time chrono can hold is "too long", not an overflow.
        let errors = capture_errors(r#"{"duration": "1000000years"}"#);
        assert_eq!(
            errors,
            [(
                "spec.duration".to_string(),
                "window is 8766000000h; the maximum is 24h: shorten duration or endTime"
                    .to_string()
            )]
        );
        let errors = capture_errors(
            r#"{"startTime": "2025-06-01T12:00:00Z", "endTime": "2025-06-02T18:00:00Z"}"#,
        );
        assert_eq!(
            errors,
            [(
                "spec.endTime".to_string(),
                "window is 30h; the maximum is 24h: shorten duration or endTime".to_string()
            )]
        );
    }

    #[test]
    fn errors_display_as_a_list() {
        let err = capture(r#"{"snapLength": 0, "maxPackets": 0}"#)
            .validate(now(), DAY)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "2 problems:\n- spec.snapLength: snapLength 0 is out of range: use 1-262144 (the default, 262144, keeps whole GRO frames)\n- spec.maxPackets: maxPackets is 0: leave it out for no limit, or give a positive number"
        );
        assert_eq!(err.at("spec.maxPackets").count(), 1);
        let one = capture(r#"{"duration": "30h"}"#)
            .validate(now(), DAY)
            .unwrap_err();
        assert_eq!(
            one.to_string(),
            "spec.duration: window is 30h; the maximum is 24h: shorten duration or endTime"
        );
    }

    #[test]
    fn bpf_filter_text_is_one_line_of_at_most_1024_characters() {
        let errors = |expression: &str| {
            let spec = CaptureSpec {
                bpf_filter: Some(expression.to_string()),
                ..CaptureSpec::default()
            };
            match spec.validate(now(), DAY) {
                Ok(_) => Vec::new(),
                Err(e) => e.into_iter().map(|e| (e.field, e.message)).collect(),
            }
        };
        let at = |message: &str| vec![("spec.bpfFilter".to_string(), message.to_string())];
        // Shell syntax is only text here: libpcap, not a shell, reads it (and refuses it).
        for fine in ["tcp port 443", "-z /x", "; rm -rf /", "$(reboot)", ""] {
            assert_eq!(errors(fine), [], "{fine:?}");
        }
        assert_eq!(errors(&"(".repeat(500)), []);
        assert_eq!(errors(&"x".repeat(1024)), []);
        assert_eq!(
            errors(&"x".repeat(1025)),
            at("bpfFilter is 1025 characters long; the most is 1024: shorten the expression, e.g. one \"net 10.1.0.0/16\" instead of many hosts")
        );
        // Characters, not bytes: 1024 × "é" is 2048 bytes and still fits.
        assert_eq!(errors(&"é".repeat(1024)), []);
        assert_eq!(
            errors("tcp\nport 80"),
            at("bpfFilter contains a line break (\\n) at character 4: write the expression on one line, with plain spaces between its words")
        );
        assert_eq!(
            errors("tcp\0 or udp"),
            at("bpfFilter contains a NUL character at character 4: write the expression on one line, with plain spaces between its words")
        );
        assert_eq!(
            errors("tcp\tport 80"),
            at("bpfFilter contains a tab at character 4: write the expression on one line, with plain spaces between its words")
        );
        assert_eq!(
            errors("tcp\r"),
            at("bpfFilter contains a carriage return (\\r) at character 4: write the expression on one line, with plain spaces between its words")
        );
        assert_eq!(
            errors("\u{1b}[31m"),
            at("bpfFilter contains the control character U+001B at character 1: write the expression on one line, with plain spaces between its words")
        );
    }

    #[test]
    fn a_schedule_template_bpf_filter_is_checked_too() {
        let errors = schedule_errors(
            r#"{"schedule":"@daily","template":{"duration":"1m","bpfFilter":"tcp\nport 1"}}"#,
        );
        assert_eq!(fields(&errors), ["spec.template.bpfFilter"]);
    }

    #[test]
    fn a_good_schedule_passes() {
        let spec: ScheduleSpec = serde_json::from_str(
            r#"{"schedule":"0 2 * * *","timeZone":"Europe/Berlin","historyLimit":100,"startingDeadlineSeconds":60,"template":{"podSelector":{"matchLabels":{"app":"db"}},"duration":"10m"}}"#,
        )
        .unwrap();
        spec.validate(DAY).unwrap();
    }

    #[test]
    fn every_schedule_problem_is_reported_with_its_path() {
        let errors = schedule_errors(
            r#"{
                "schedule": "0 2 * *",
                "timeZone": "Mars/Olympus",
                "historyLimit": 101,
                "startingDeadlineSeconds": 0,
                "template": {
                    "podSelector": {"matchExpressions": [{"key": "legacy", "operator": "Exists", "values": ["x"]}]},
                    "startTime": "2025-06-01T02:00:00Z",
                    "endTime": "2025-06-01T03:00:00Z",
                    "maxPackets": 0
                }
            }"#,
        );
        assert_eq!(
            fields(&errors),
            [
                "spec.schedule",
                "spec.timeZone",
                "spec.template.podSelector.matchExpressions[0].values",
                "spec.template.maxPackets",
                "spec.template.startTime",
                "spec.template.endTime",
                "spec.template.duration",
                "spec.historyLimit",
                "spec.startingDeadlineSeconds",
            ]
        );
        assert!(errors[0].1.starts_with("cron needs 5 fields (minute hour day-of-month month day-of-week) or 6 with seconds first; got 4: \"0 2 * *\""));
        assert!(errors[1].1.starts_with("unknown timeZone \"Mars/Olympus\""));
        assert!(errors[4].1.contains("remove startTime and set duration"));
        assert!(errors[5].1.contains("remove endTime and set duration"));
        assert_eq!(
            errors[6].1,
            "a schedule's template needs a duration, e.g. \"10m\": each run captures for that long"
        );
        assert_eq!(errors[7].1, "historyLimit 101 is more than 100: keep at most 100 finished captures, or leave it out to keep 3");
        assert!(errors[8].1.starts_with("startingDeadlineSeconds is 0"));
    }

    #[test]
    fn template_duration_is_limited() {
        let errors = schedule_errors(r#"{"schedule":"@daily","template":{"duration":"30h"}}"#);
        assert_eq!(
            errors,
            [(
                "spec.template.duration".to_string(),
                "window is 30h; the maximum is 24h: shorten duration".to_string()
            )]
        );
    }
}
