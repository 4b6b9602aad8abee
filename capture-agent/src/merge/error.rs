//! What can stop a merge, each saying which input (and which file of a chained input) it was
//! and what to do about it. A truncated last record is not among them: a killed capture leaves
//! one, so the merge stops reading that file there and reports it (see `MergeReport`).

use std::io;

#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error("reading {input}: {source}")]
    Read {
        input: String,
        #[source]
        source: io::Error,
    },

    #[error(
        "{input} is neither a pcap nor a pcapng file (it starts with {start}); \
         only capture files can be merged"
    )]
    NotACaptureFile { input: String, start: String },

    #[error("{input} is damaged at byte {offset}: {problem}")]
    Damaged {
        input: String,
        offset: u64,
        problem: String,
    },

    #[error(
        "classic pcap holds one link type, but {input} has link type {link_type} and \
         {first_input} has {first_link_type}; merge into pcapng instead"
    )]
    MixedLinkTypes {
        input: String,
        link_type: u16,
        first_input: String,
        first_link_type: u16,
    },

    #[error(
        "{input} has a packet at {timestamp_ns} ns since 1970, beyond what classic pcap's \
         32-bit seconds hold (year 2106); merge into pcapng instead"
    )]
    BeyondPcapTime { input: String, timestamp_ns: u64 },

    #[error("writing the merged capture: {0}")]
    Write(#[source] io::Error),
}
