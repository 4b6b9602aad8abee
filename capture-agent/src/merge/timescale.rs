//! Turning a file's raw timestamps into nanoseconds since the epoch, the unit of the merge and
//! of everything it writes.
//!
//! pcapng interfaces count time in units of `if_tsresol`: 10^-n seconds, or 2^-n seconds when
//! the top bit is set (no option means microseconds), and may add `if_tsoffset` seconds.
//! Conversions round down, as Wireshark does, so a merged file shows the times Wireshark
//! shows for the originals.

const NANOS_PER_SECOND: u64 = 1_000_000_000;
/// Decimal resolutions finer than 10^-28 s would need divisors beyond u64; no clock has them.
const FINEST_DECIMAL_RESOLUTION: u8 = 28;

/// How one interface's raw timestamps become nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct TimeScale {
    unit: Unit,
    /// `if_tsoffset` in nanoseconds.
    offset_ns: i128,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unit {
    /// Units of 10^-n s with n <= 9: multiply by 10^(9-n).
    Multiply(u64),
    /// Units of 10^-n s with n > 9: divide by 10^(n-9).
    Divide(u64),
    /// Units of 2^-n s.
    BinaryFraction(u32),
}

impl Default for TimeScale {
    /// pcapng's default without `if_tsresol`: microseconds.
    fn default() -> TimeScale {
        TimeScale::NANOSECONDS.with_unit(Unit::Multiply(1_000))
    }
}

impl TimeScale {
    pub(super) const NANOSECONDS: TimeScale = TimeScale {
        unit: Unit::Multiply(1),
        offset_ns: 0,
    };

    fn with_unit(self, unit: Unit) -> TimeScale {
        TimeScale { unit, ..self }
    }

    /// The scale an `if_tsresol` byte describes; the error says why a value is unusable.
    pub(super) fn from_tsresol(tsresol: u8) -> Result<TimeScale, String> {
        let exponent = tsresol & 0x7f;
        let unit = if tsresol & 0x80 != 0 {
            Unit::BinaryFraction(u32::from(exponent))
        } else if exponent <= 9 {
            Unit::Multiply(10u64.pow(u32::from(9 - exponent)))
        } else if exponent <= FINEST_DECIMAL_RESOLUTION {
            Unit::Divide(10u64.pow(u32::from(exponent - 9)))
        } else {
            return Err(format!(
                "if_tsresol 10^-{exponent} s is finer than any clock (at most 10^-{FINEST_DECIMAL_RESOLUTION})"
            ));
        };
        Ok(TimeScale::NANOSECONDS.with_unit(unit))
    }

    /// The same scale with `if_tsoffset` (whole seconds added to every timestamp).
    pub(super) fn with_offset_seconds(self, seconds: i64) -> TimeScale {
        TimeScale {
            offset_ns: i128::from(seconds) * i128::from(NANOS_PER_SECOND),
            ..self
        }
    }

    /// Nanoseconds for a raw timestamp, clamped to what a u64 holds (year 1970 to 2554).
    #[inline]
    pub(super) fn to_ns(self, raw: u64) -> u64 {
        let ns = match self.unit {
            Unit::Multiply(1) => u128::from(raw),
            Unit::Multiply(factor) => u128::from(raw) * u128::from(factor),
            Unit::Divide(divisor) => u128::from(raw / divisor),
            Unit::BinaryFraction(bits) => (u128::from(raw) * u128::from(NANOS_PER_SECOND)) >> bits,
        };
        if self.offset_ns == 0 {
            return u64::try_from(ns).unwrap_or(u64::MAX);
        }
        let shifted = (ns as i128).saturating_add(self.offset_ns);
        u64::try_from(shifted.max(0)).unwrap_or(u64::MAX)
    }
}

/// Nanoseconds for a classic pcap record's seconds and fraction (micro- or nanoseconds).
#[inline]
pub(super) fn pcap_ns(seconds: u32, fraction: u32, fraction_is_nanoseconds: bool) -> u64 {
    let fraction_ns = if fraction_is_nanoseconds {
        u64::from(fraction)
    } else {
        u64::from(fraction) * 1_000
    };
    u64::from(seconds) * NANOS_PER_SECOND + fraction_ns
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scale(tsresol: u8) -> TimeScale {
        TimeScale::from_tsresol(tsresol).unwrap()
    }

    #[test]
    fn decimal_resolutions() {
        assert_eq!(TimeScale::default().to_ns(1_500_000), 1_500_000_000);
        assert_eq!(scale(6).to_ns(1_500_000), 1_500_000_000);
        assert_eq!(scale(9).to_ns(123), 123);
        assert_eq!(scale(0).to_ns(2), 2_000_000_000);
        // Picoseconds round down to the nanosecond.
        assert_eq!(scale(12).to_ns(1_999), 1);
    }

    #[test]
    fn binary_resolutions_round_down() {
        // 2^-10 s: 1 unit is 976562.5 ns.
        assert_eq!(scale(0x80 | 10).to_ns(1), 976_562);
        assert_eq!(scale(0x80 | 10).to_ns(1024), 1_000_000_000);
        // 2^-30 s units of a 2023 timestamp do not overflow.
        let raw = 1_700_000_000u64 << 30;
        assert_eq!(
            scale(0x80 | 30).to_ns(raw),
            1_700_000_000 * NANOS_PER_SECOND
        );
    }

    #[test]
    fn offsets_shift_by_whole_seconds() {
        assert_eq!(scale(9).with_offset_seconds(2).to_ns(5), 2_000_000_005);
        assert_eq!(scale(9).with_offset_seconds(-2).to_ns(5), 0);
    }

    #[test]
    fn absurd_resolutions_are_refused() {
        assert!(TimeScale::from_tsresol(29).is_err());
        assert!(TimeScale::from_tsresol(28).is_ok());
    }

    #[test]
    fn pcap_fractions() {
        assert_eq!(pcap_ns(1, 5, false), 1_000_005_000);
        assert_eq!(pcap_ns(1, 5, true), 1_000_000_005);
    }
}
