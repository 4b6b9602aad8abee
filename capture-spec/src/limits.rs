//! Capture limits, file rotation and output format: how much a capture keeps and how it is cut
//! into files. Defaults follow what a veth needs (GRO/GSO frames exceed 64 KiB, so the default
//! snap length is libpcap's maximum, 262144).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The default and largest snap length: libpcap's MAXIMUM_SNAPLEN, big enough for GRO frames.
pub const DEFAULT_SNAP_LENGTH: u32 = 262_144;
pub const MAX_SNAP_LENGTH: u32 = 262_144;

/// The file format written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "kube", derive(schemars::JsonSchema))]
pub enum OutputFormat {
    /// pcapng: per-interface names and descriptions, directions, drop statistics.
    #[default]
    Pcapng,
    /// Classic pcap with nanosecond timestamps, Ethernet link type.
    Pcap,
}

impl OutputFormat {
    pub fn extension(self) -> &'static str {
        match self {
            OutputFormat::Pcapng => "pcapng",
            OutputFormat::Pcap => "pcap",
        }
    }
}

impl FromStr for OutputFormat {
    type Err = LimitsError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim().to_ascii_lowercase().as_str() {
            "pcapng" => Ok(OutputFormat::Pcapng),
            "pcap" => Ok(OutputFormat::Pcap),
            other => Err(LimitsError::UnknownFormat(other.to_string())),
        }
    }
}

impl fmt::Display for OutputFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.extension())
    }
}

/// When to start a new file, and how many to keep (a ring of files when `max_files` is set).
/// Unknown fields are refused: a misspelt `maxFiles` would otherwise keep every file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "kube", derive(schemars::JsonSchema))]
pub struct Rotation {
    /// Start a new file before one would grow past this many bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    // `MIN_FILE_BYTES`; utoipa takes only a literal here (a test checks they agree).
    #[cfg_attr(feature = "openapi", schema(minimum = 4096))]
    #[cfg_attr(feature = "kube", schemars(range(min = MIN_FILE_BYTES)))]
    pub max_file_bytes: Option<u64>,
    /// Start a new file when the current one has been open this many seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1))]
    #[cfg_attr(feature = "kube", schemars(range(min = 1)))]
    pub max_file_seconds: Option<u64>,
    /// Keep at most this many files, deleting the oldest (a ring of files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1))]
    #[cfg_attr(feature = "kube", schemars(range(min = 1)))]
    pub max_files: Option<u32>,
}

impl Rotation {
    /// True when any rotation trigger is set, so files carry a sequence number.
    pub fn rotates(&self) -> bool {
        self.max_file_bytes.is_some() || self.max_file_seconds.is_some()
    }

    pub fn max_file_duration(&self) -> Option<Duration> {
        self.max_file_seconds.map(Duration::from_secs)
    }
}

/// How much one capture keeps in total.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CaptureLimits {
    /// Bytes kept of each packet; the original length is always recorded.
    #[serde(default = "default_snap_length")]
    pub snap_length: u32,
    /// Stop after this many bytes of packet data; no packet is written that would pass it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_bytes: Option<u64>,
    /// Stop after exactly this many packets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_packets: Option<u64>,
    #[serde(default)]
    pub rotation: Rotation,
}

/// The serde default of every `snapLength` field.
pub(crate) fn default_snap_length() -> u32 {
    DEFAULT_SNAP_LENGTH
}

impl Default for CaptureLimits {
    fn default() -> Self {
        CaptureLimits {
            snap_length: DEFAULT_SNAP_LENGTH,
            max_bytes: None,
            max_packets: None,
            rotation: Rotation::default(),
        }
    }
}

impl CaptureLimits {
    /// Checks every limit, naming the field and the accepted values; reports the first problem.
    pub fn validate(&self) -> Result<(), LimitsError> {
        match self.problems().into_iter().next() {
            Some((_, error)) => Err(error),
            None => Ok(()),
        }
    }

    /// Every problem with the limits, each with the field it is about as the spec names it
    /// (`snapLength`, `rotation.maxFiles`), so validation can report them all at once.
    pub fn problems(&self) -> Vec<(&'static str, LimitsError)> {
        let mut problems = Vec::new();
        if self.snap_length == 0 || self.snap_length > MAX_SNAP_LENGTH {
            problems.push(("snapLength", LimitsError::SnapLength(self.snap_length)));
        }
        if self.max_packets == Some(0) {
            problems.push(("maxPackets", LimitsError::Zero("maxPackets")));
        }
        if self.max_bytes == Some(0) {
            problems.push(("maxBytes", LimitsError::Zero("maxBytes")));
        }
        let rotation = &self.rotation;
        if let Some(bytes) = rotation.max_file_bytes.filter(|b| *b < MIN_FILE_BYTES) {
            problems.push(("rotation.maxFileBytes", LimitsError::FileTooSmall(bytes)));
        }
        if rotation.max_file_seconds == Some(0) {
            problems.push((
                "rotation.maxFileSeconds",
                LimitsError::Zero("rotation.maxFileSeconds"),
            ));
        }
        if rotation.max_files == Some(0) {
            problems.push(("rotation.maxFiles", LimitsError::Zero("rotation.maxFiles")));
        } else if rotation.max_files.is_some() && !rotation.rotates() {
            problems.push(("rotation.maxFiles", LimitsError::MaxFilesWithoutRotation));
        }
        problems
    }
}

/// The smallest rotation size accepted: room for the file headers and a few packets.
pub const MIN_FILE_BYTES: u64 = 4096;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitsError {
    #[error("snapLength {0} is out of range: use 1-262144 (the default, 262144, keeps whole GRO frames)")]
    SnapLength(u32),
    #[error("{0} is 0: leave it out for no limit, or give a positive number")]
    Zero(&'static str),
    #[error("rotation.maxFileBytes {0} is too small: use at least 4096")]
    FileTooSmall(u64),
    #[error("rotation.maxFiles needs maxFileBytes or maxFileSeconds: without them there is only one file")]
    MaxFilesWithoutRotation,
    #[error("unknown format {0:?}: use pcapng or pcap")]
    UnknownFormat(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_keep_gro_frames() {
        let limits = CaptureLimits::default();
        assert_eq!(limits.snap_length, 262_144);
        limits.validate().unwrap();
    }

    #[test]
    fn problems_lists_every_field() {
        let limits = CaptureLimits {
            snap_length: 0,
            max_bytes: Some(0),
            max_packets: Some(0),
            rotation: Rotation {
                max_file_bytes: Some(10),
                max_file_seconds: Some(0),
                max_files: Some(0),
            },
        };
        let fields: Vec<&str> = limits.problems().iter().map(|(f, _)| *f).collect();
        assert_eq!(
            fields,
            [
                "snapLength",
                "maxPackets",
                "maxBytes",
                "rotation.maxFileBytes",
                "rotation.maxFileSeconds",
                "rotation.maxFiles"
            ]
        );
        assert_eq!(limits.validate().unwrap_err(), LimitsError::SnapLength(0));
        assert!(CaptureLimits::default().problems().is_empty());
    }

    #[test]
    fn bad_limits_name_the_field() {
        let mut limits = CaptureLimits {
            snap_length: 300_000,
            ..Default::default()
        };
        assert!(limits
            .validate()
            .unwrap_err()
            .to_string()
            .contains("snapLength 300000"));
        limits.snap_length = 1500;
        limits.rotation.max_files = Some(3);
        assert!(limits
            .validate()
            .unwrap_err()
            .to_string()
            .contains("maxFileBytes or maxFileSeconds"));
        limits.rotation.max_file_bytes = Some(100);
        assert!(limits
            .validate()
            .unwrap_err()
            .to_string()
            .contains("at least 4096"));
        assert!("pcapx"
            .parse::<OutputFormat>()
            .unwrap_err()
            .to_string()
            .contains("pcapng or pcap"));
    }
}
