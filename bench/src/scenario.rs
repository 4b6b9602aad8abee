//! The traffic scenarios of the benchmark: frame size, offered rate and, for
//! the filter scenario, the share of datagrams the capture filter matches.

use std::fmt;
use std::str::FromStr;

use anyhow::{bail, Context};

/// UDP port the filtered scenario's capture filter selects. Non-matching
/// datagrams go to `MATCH_PORT + 1`; the sender's source ports are above both
/// so a "port P" filter can only match the destination.
pub const MATCH_PORT: u16 = 9000;

/// Requested sending rate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rate {
    PacketsPerSecond(u64),
    /// As fast as one core can send.
    Max,
}

impl FromStr for Rate {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> anyhow::Result<Rate> {
        if text == "max" {
            return Ok(Rate::Max);
        }
        let pps: u64 = text
            .parse()
            .with_context(|| format!("rate must be packets per second or `max`, got {text:?}"))?;
        if pps == 0 {
            bail!("rate must be positive");
        }
        Ok(Rate::PacketsPerSecond(pps))
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rate::PacketsPerSecond(pps) => write!(f, "{pps}"),
            Rate::Max => f.write_str("max"),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Scenario {
    /// Ethernet frame length in bytes (without FCS), as a capture shows it.
    pub frame_size: usize,
    pub rate: Rate,
    /// Every Nth datagram matches the capture filter; `None` = no filter.
    pub match_every: Option<u64>,
}

impl Scenario {
    pub fn name(&self) -> String {
        let rate = match self.rate {
            Rate::PacketsPerSecond(pps) if pps % 1000 == 0 => format!("{}k pps", pps / 1000),
            Rate::PacketsPerSecond(pps) => format!("{pps} pps"),
            Rate::Max => "max rate".to_string(),
        };
        match self.match_every {
            Some(n) => format!("{} B @ {rate}, filter matches 1/{n}", self.frame_size),
            None => format!("{} B @ {rate}", self.frame_size),
        }
    }
}

/// The scenarios of a full run, in the order they run.
pub fn all() -> Vec<Scenario> {
    let mut scenarios = Vec::new();
    for frame_size in [64, 1400] {
        for rate in [
            Rate::PacketsPerSecond(100_000),
            Rate::PacketsPerSecond(300_000),
            Rate::Max,
        ] {
            scenarios.push(Scenario {
                frame_size,
                rate,
                match_every: None,
            });
        }
    }
    scenarios.push(Scenario {
        frame_size: 1400,
        rate: Rate::Max,
        match_every: Some(100),
    });
    scenarios
}
