//! Cron expressions with Kubernetes CronJob semantics, computed by `croner`.
//!
//! What a schedule may say, as in a CronJob:
//!
//! - 5 fields, `minute hour day-of-month month day-of-week`; or 6 with a leading seconds field;
//! - numbers, `*`, ranges `1-5`, lists `1,15`, steps `*/10`, `10-30/5` and `5/15` (from 5 to the
//!   end), `?` as `*` in the day fields, names `JAN`-`DEC` and `SUN`-`SAT` in any case;
//! - day-of-week 0-7, where both 0 and 7 are Sunday;
//! - when both day-of-month and day-of-week are restricted (neither is `*`), a day matches when
//!   EITHER matches (Vixie cron, robfig/cron and so CronJob): `0 0 13 * 5` runs on every 13th and
//!   every Friday, not only on Friday the 13th;
//! - `@yearly`/`@annually`, `@monthly`, `@weekly`, `@daily`/`@midnight`, `@hourly`.
//!
//! croner's own extensions (`L`, `W`, `#`, the `+` day-AND prefix, a year field) are refused,
//! so every schedule podcap accepts means the same in a CronJob. So are `CRON_TZ=`/`TZ=`
//! prefixes, which CronJob validation refuses too: the zone goes in `timeZone`.

use chrono::{DateTime, TimeZone, Utc};
use croner::parser::{CronParser, Seconds, Year};
use croner::Cron;

const MINUTE_FIELDS: [&str; 5] = ["minute", "hour", "day-of-month", "month", "day-of-week"];
const SECOND_FIELDS: [&str; 6] = [
    "second",
    "minute",
    "hour",
    "day-of-month",
    "month",
    "day-of-week",
];

/// A parsed, checked cron expression.
#[derive(Debug, Clone)]
pub struct CronSchedule {
    expression: String,
    cron: Cron,
}

/// Why a schedule is not a CronJob cron expression, and what to write instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CronExpressionError {
    #[error("schedule is empty: write a cron expression such as \"0 2 * * *\" (02:00 every day) or @daily")]
    Empty,
    #[error("cron needs 5 fields (minute hour day-of-month month day-of-week) or 6 with seconds first; got {count}: {expression:?}; write e.g. \"0 2 * * *\" for 02:00 every day")]
    FieldCount { count: usize, expression: String },
    #[error("schedule {0:?} sets its time zone with CRON_TZ= or TZ=, which Kubernetes CronJobs refuse: remove it and set timeZone instead, e.g. \"timeZone\": \"Europe/Berlin\"")]
    TimeZoneInSchedule(String),
    #[error("unknown schedule {0:?}: use @yearly (@annually), @monthly, @weekly, @daily (@midnight), @hourly, or 5 cron fields such as \"0 2 * * *\"")]
    UnknownMacro(String),
    #[error("{0:?} is not supported, as captures run on clock times: write cron fields instead, e.g. \"*/10 * * * *\" for every 10 minutes")]
    Every(String),
    #[error("cron field {position} ({name}) {value:?} is not valid: {name} takes {allowed}, with * , - and / as in */15 or 1-5 ({detail})")]
    InvalidField {
        position: usize,
        name: &'static str,
        value: String,
        allowed: &'static str,
        detail: String,
    },
    #[error(
        "schedule {expression:?} is not valid ({detail}): write 5 fields such as \"0 2 * * *\""
    )]
    Invalid { expression: String, detail: String },
    #[error("cron field {name} {value:?} uses {feature}, which Kubernetes CronJob schedules do not have: use numbers, ranges (1-5), lists (1,15), steps (*/10) and names (MON, JAN)")]
    Extension {
        name: &'static str,
        value: String,
        feature: &'static str,
    },
    #[error("schedule {0:?} never runs: none of its months has those days (e.g. 30 February); pick days that exist")]
    NeverRuns(String),
    #[error("could not compute the next run of {expression:?} ({detail}): simplify the schedule, and report it as a podcap bug")]
    Search { expression: String, detail: String },
}

impl CronSchedule {
    /// Parses and checks a CronJob schedule.
    pub fn parse(expression: &str) -> Result<CronSchedule, CronExpressionError> {
        let trimmed = expression.trim();
        if trimmed.is_empty() {
            return Err(CronExpressionError::Empty);
        }
        let upper = trimmed.to_ascii_uppercase();
        if upper.starts_with("TZ=") || upper.starts_with("CRON_TZ=") {
            return Err(CronExpressionError::TimeZoneInSchedule(trimmed.to_string()));
        }
        let fields_text = if trimmed.starts_with('@') {
            expand_macro(trimmed)?
        } else {
            trimmed
        };
        let fields: Vec<&str> = fields_text.split_whitespace().collect();
        let names: &[&'static str] = match fields.len() {
            5 => &MINUTE_FIELDS,
            6 => &SECOND_FIELDS,
            count => {
                return Err(CronExpressionError::FieldCount {
                    count,
                    expression: trimmed.to_string(),
                })
            }
        };
        let cron = parse_fields(&fields)
            .map_err(|e| locate_error(&fields, names, e.to_string(), trimmed))?;
        refuse_extensions(&cron, &fields, names)?;
        if never_runs(&cron) {
            return Err(CronExpressionError::NeverRuns(trimmed.to_string()));
        }
        Ok(CronSchedule {
            expression: trimmed.to_string(),
            cron,
        })
    }

    /// The expression as written (trimmed).
    pub fn expression(&self) -> &str {
        &self.expression
    }

    /// The first run strictly after `after`, on the wall clock of `after`'s time zone.
    pub fn next_after<Tz: TimeZone>(
        &self,
        after: &DateTime<Tz>,
    ) -> Result<DateTime<Tz>, CronExpressionError> {
        self.cron
            .find_next_occurrence(after, false)
            .map_err(|e| match e {
                croner::errors::CronError::TimeSearchLimitExceeded => {
                    CronExpressionError::NeverRuns(self.expression.clone())
                }
                other => CronExpressionError::Search {
                    expression: self.expression.clone(),
                    detail: other.to_string(),
                },
            })
    }

    /// The next `n` runs strictly after `after`, computed on the wall clock of `zone`.
    pub fn next_runs<Tz: TimeZone>(
        &self,
        zone: &Tz,
        after: DateTime<Utc>,
        n: usize,
    ) -> Result<Vec<DateTime<Utc>>, CronExpressionError> {
        let mut runs = Vec::with_capacity(n);
        let mut cursor = after.with_timezone(zone);
        for _ in 0..n {
            cursor = self.next_after(&cursor)?;
            runs.push(cursor.with_timezone(&Utc));
        }
        Ok(runs)
    }
}

/// The CronJob (robfig/cron) descriptors, as the 5 fields they stand for.
fn expand_macro(text: &str) -> Result<&'static str, CronExpressionError> {
    let lower = text.to_ascii_lowercase();
    Ok(match lower.as_str() {
        "@yearly" | "@annually" => "0 0 1 1 *",
        "@monthly" => "0 0 1 * *",
        "@weekly" => "0 0 * * 0",
        "@daily" | "@midnight" => "0 0 * * *",
        "@hourly" => "0 * * * *",
        every if every.starts_with("@every") => {
            return Err(CronExpressionError::Every(text.to_string()))
        }
        _ => return Err(CronExpressionError::UnknownMacro(text.to_string())),
    })
}

/// croner configured for CronJob semantics: optional leading seconds, no year field, day-of-month
/// OR day-of-week (`dom_and_dow` off), Sunday = 0 = 7 (`alternative_weekdays` off, which would be
/// Quartz's 1 = Sunday), and `5/15` read as robfig reads it (`sloppy_ranges`).
fn parser() -> CronParser {
    CronParser::builder()
        .seconds(Seconds::Optional)
        .year(Year::Disallowed)
        .dom_and_dow(false)
        .alternative_weekdays(false)
        .sloppy_ranges(true)
        .build()
}

fn parse_fields(fields: &[&str]) -> Result<Cron, croner::errors::CronError> {
    let (dom, dow) = (fields.len() - 3, fields.len() - 1);
    let normalized: Vec<&str> = fields
        .iter()
        .enumerate()
        // robfig/cron treats `*/1` in a day field as `*` (it keeps the star bit for a step of 1),
        // which decides between OR and AND day matching; croner only treats a bare `*` so.
        .map(|(i, f)| {
            if *f == "*/1" && (i == dom || i == dow) {
                "*"
            } else {
                f
            }
        })
        .collect();
    parser().parse(&normalized.join(" "))
}

/// Finds which field croner refused by parsing each field alone among `*`s, so the message can
/// name the field and its allowed values rather than only croner's description.
fn locate_error(
    fields: &[&str],
    names: &[&'static str],
    detail: String,
    expression: &str,
) -> CronExpressionError {
    for (i, value) in fields.iter().enumerate() {
        let alone: Vec<&str> = (0..fields.len())
            .map(|j| if j == i { *value } else { "*" })
            .collect();
        if let Err(e) = parse_fields(&alone) {
            return CronExpressionError::InvalidField {
                position: i + 1,
                name: names[i],
                value: value.to_string(),
                allowed: allowed_values(names[i]),
                detail: e.to_string(),
            };
        }
    }
    CronExpressionError::Invalid {
        expression: expression.to_string(),
        detail,
    }
}

fn allowed_values(name: &str) -> &'static str {
    match name {
        "second" | "minute" => "0-59",
        "hour" => "0-23",
        "day-of-month" => "1-31",
        "month" => "1-12 or JAN-DEC",
        _ => "0-7 or SUN-SAT (0 and 7 are Sunday)",
    }
}

fn refuse_extensions(
    cron: &Cron,
    fields: &[&str],
    names: &[&'static str],
) -> Result<(), CronExpressionError> {
    let dom = fields.len() - 3;
    let dow = fields.len() - 1;
    let extension = |i: usize, feature| CronExpressionError::Extension {
        name: names[i],
        value: fields[i].to_string(),
        feature,
    };
    if cron.pattern.days.has_modifiers() {
        return Err(extension(dom, "L or W"));
    }
    if cron.pattern.days_of_week.has_modifiers() {
        return Err(extension(dow, "L or #"));
    }
    if cron.pattern.matches_dom_and_dow() {
        return Err(extension(dow, "'+' (day-of-month AND day-of-week)"));
    }
    Ok(())
}

/// True when the schedule can never fire: day-of-week is `*` (so only day-of-month counts) and no
/// chosen month has any chosen day, as with `0 0 30 2 *`. With both day fields restricted the OR
/// rule always finds a weekday, and with day-of-month `*` every month has days.
fn never_runs(cron: &Cron) -> bool {
    let pattern = &cron.pattern;
    if !pattern.is_dow_wildcard() || pattern.is_dom_wildcard() {
        return false;
    }
    let longest_day = |month: u16| match month {
        2 => 29,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    let days = pattern.days.values();
    !pattern
        .months
        .values()
        .into_iter()
        .any(|month| days.iter().any(|day| *day <= longest_day(month)))
}

#[cfg(test)]
mod tests {
    use chrono::{Datelike, Weekday};
    use chrono_tz::Tz;

    use super::*;

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap()
    }

    fn runs(expression: &str, after: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
        CronSchedule::parse(expression)
            .unwrap_or_else(|e| panic!("{expression}: {e}"))
            .next_runs(&Utc, after, n)
            .unwrap()
    }

    fn error(expression: &str) -> String {
        CronSchedule::parse(expression).unwrap_err().to_string()
    }

    #[test]
    fn five_fields_run_on_the_minute() {
        // 2025-06-01 is a Sunday.
        assert_eq!(
            runs("30 2 * * *", utc(2025, 6, 1, 2, 30, 0), 2),
            [utc(2025, 6, 2, 2, 30, 0), utc(2025, 6, 3, 2, 30, 0)],
            "strictly after: a run exactly at `after` is not repeated"
        );
        assert_eq!(
            runs("*/15 9-10 * * MON-FRI", utc(2025, 6, 1, 0, 0, 0), 3),
            [
                utc(2025, 6, 2, 9, 0, 0),
                utc(2025, 6, 2, 9, 15, 0),
                utc(2025, 6, 2, 9, 30, 0)
            ]
        );
        assert_eq!(
            runs("0 0 1 jan,Jul *", utc(2025, 6, 1, 0, 0, 0), 2),
            [utc(2025, 7, 1, 0, 0, 0), utc(2026, 1, 1, 0, 0, 0)]
        );
    }

    #[test]
    fn day_of_month_or_day_of_week() {
        // 13th of the month OR any Friday: June 2025 has Fridays 6, 13, 20, 27.
        let got = runs("0 0 13 * 5", utc(2025, 6, 1, 0, 0, 0), 5);
        assert_eq!(
            got,
            [
                utc(2025, 6, 6, 0, 0, 0),
                utc(2025, 6, 13, 0, 0, 0),
                utc(2025, 6, 20, 0, 0, 0),
                utc(2025, 6, 27, 0, 0, 0),
                utc(2025, 7, 4, 0, 0, 0),
            ]
        );
        // July 13th 2025 is a Sunday: it runs because the day of month matches.
        let july = runs("0 0 13 * FRI", utc(2025, 7, 5, 0, 0, 0), 2);
        assert_eq!(july, [utc(2025, 7, 11, 0, 0, 0), utc(2025, 7, 13, 0, 0, 0)]);
        assert_eq!(july[1].weekday(), Weekday::Sun);
        // With one day field `*`, only the other counts.
        assert_eq!(
            runs("0 0 13 * *", utc(2025, 6, 1, 0, 0, 0), 1),
            [utc(2025, 6, 13, 0, 0, 0)]
        );
        assert_eq!(
            runs("0 0 * * 5", utc(2025, 6, 1, 0, 0, 0), 1),
            [utc(2025, 6, 6, 0, 0, 0)]
        );
        assert_eq!(
            runs("0 0 ? * 5", utc(2025, 6, 1, 0, 0, 0), 1),
            [utc(2025, 6, 6, 0, 0, 0)],
            "? is * in the day fields"
        );
        // robfig reads `*/1` as `*`, so this is Fridays only, not every day.
        assert_eq!(
            runs("0 0 */1 * 5", utc(2025, 6, 1, 0, 0, 0), 1),
            [utc(2025, 6, 6, 0, 0, 0)]
        );
    }

    #[test]
    fn sunday_is_0_and_7() {
        let from = utc(2025, 6, 2, 0, 0, 0); // Monday
        let sunday = [utc(2025, 6, 8, 0, 0, 0), utc(2025, 6, 15, 0, 0, 0)];
        assert_eq!(runs("0 0 * * 0", from, 2), sunday);
        assert_eq!(runs("0 0 * * 7", from, 2), sunday);
        assert_eq!(runs("0 0 * * SUN", from, 2), sunday);
        assert_eq!(runs("0 0 * * sun", from, 2), sunday);
        assert_eq!(
            runs("0 0 * * 5-7", from, 3),
            [
                utc(2025, 6, 6, 0, 0, 0),
                utc(2025, 6, 7, 0, 0, 0),
                utc(2025, 6, 8, 0, 0, 0)
            ]
        );
        assert_eq!(
            runs("0 0 * * FRI-SUN", from, 3),
            [
                utc(2025, 6, 6, 0, 0, 0),
                utc(2025, 6, 7, 0, 0, 0),
                utc(2025, 6, 8, 0, 0, 0)
            ]
        );
    }

    #[test]
    fn six_fields_have_seconds_first() {
        assert_eq!(
            runs("*/20 * * * * *", utc(2025, 6, 1, 0, 0, 0), 3),
            [
                utc(2025, 6, 1, 0, 0, 20),
                utc(2025, 6, 1, 0, 0, 40),
                utc(2025, 6, 1, 0, 1, 0)
            ]
        );
        assert_eq!(
            runs("30 0 2 * * *", utc(2025, 6, 1, 0, 0, 0), 1),
            [utc(2025, 6, 1, 2, 0, 30)]
        );
    }

    #[test]
    fn steps_from_a_start_as_robfig_reads_them() {
        assert_eq!(
            runs("5/20 * * * *", utc(2025, 6, 1, 0, 0, 0), 4),
            [
                utc(2025, 6, 1, 0, 5, 0),
                utc(2025, 6, 1, 0, 25, 0),
                utc(2025, 6, 1, 0, 45, 0),
                utc(2025, 6, 1, 1, 5, 0)
            ]
        );
        assert_eq!(
            runs("10-30/10 * * * *", utc(2025, 6, 1, 0, 0, 0), 4),
            [
                utc(2025, 6, 1, 0, 10, 0),
                utc(2025, 6, 1, 0, 20, 0),
                utc(2025, 6, 1, 0, 30, 0),
                utc(2025, 6, 1, 1, 10, 0)
            ]
        );
    }

    #[test]
    fn macros() {
        let from = utc(2025, 6, 1, 10, 30, 0); // Sunday
        assert_eq!(runs("@hourly", from, 1), [utc(2025, 6, 1, 11, 0, 0)]);
        assert_eq!(runs("@daily", from, 1), [utc(2025, 6, 2, 0, 0, 0)]);
        assert_eq!(runs("@midnight", from, 1), [utc(2025, 6, 2, 0, 0, 0)]);
        assert_eq!(runs("@weekly", from, 1), [utc(2025, 6, 8, 0, 0, 0)]);
        assert_eq!(runs("@monthly", from, 1), [utc(2025, 7, 1, 0, 0, 0)]);
        assert_eq!(runs("@yearly", from, 1), [utc(2026, 1, 1, 0, 0, 0)]);
        assert_eq!(runs("@annually", from, 1), [utc(2026, 1, 1, 0, 0, 0)]);
        assert_eq!(runs("@Daily", from, 1), [utc(2025, 6, 2, 0, 0, 0)]);
    }

    #[test]
    fn time_zones_use_the_local_wall_clock() {
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        let schedule = CronSchedule::parse("0 2 * * *").unwrap();
        // Summer (CEST, UTC+2): 02:00 in Berlin is 00:00 UTC.
        assert_eq!(
            schedule
                .next_runs(&berlin, utc(2025, 6, 1, 12, 0, 0), 2)
                .unwrap(),
            [utc(2025, 6, 2, 0, 0, 0), utc(2025, 6, 3, 0, 0, 0)]
        );
        // Winter (CET, UTC+1): 02:00 in Berlin is 01:00 UTC.
        assert_eq!(
            schedule
                .next_runs(&berlin, utc(2025, 1, 10, 12, 0, 0), 1)
                .unwrap(),
            [utc(2025, 1, 11, 1, 0, 0)]
        );
    }

    #[test]
    fn daylight_saving_days() {
        let berlin: Tz = "Europe/Berlin".parse().unwrap();
        // 2025-03-30 02:00 CET jumps to 03:00 CEST: 02:30 does not exist that day. croner runs
        // it at the first instant after the gap (03:00 CEST = 01:00 UTC), as cronie does;
        // robfig/cron (CronJob) would skip that day's run.
        let spring = CronSchedule::parse("30 2 * * *").unwrap();
        assert_eq!(
            spring
                .next_runs(&berlin, utc(2025, 3, 29, 12, 0, 0), 2)
                .unwrap(),
            [utc(2025, 3, 30, 1, 0, 0), utc(2025, 3, 31, 0, 30, 0)]
        );
        // 2025-10-26 03:00 CEST falls back to 02:00 CET: 02:30 happens twice; it runs once, at
        // the first (00:30 UTC).
        assert_eq!(
            spring
                .next_runs(&berlin, utc(2025, 10, 25, 12, 0, 0), 2)
                .unwrap(),
            [utc(2025, 10, 26, 0, 30, 0), utc(2025, 10, 27, 1, 30, 0)]
        );
    }

    #[test]
    fn field_count_errors() {
        assert_eq!(
            error("0 2 * *"),
            "cron needs 5 fields (minute hour day-of-month month day-of-week) or 6 with seconds first; got 4: \"0 2 * *\"; write e.g. \"0 2 * * *\" for 02:00 every day"
        );
        assert!(error("0 0 2 * * * 2025").contains("got 7"));
        assert_eq!(
            error("  "),
            "schedule is empty: write a cron expression such as \"0 2 * * *\" (02:00 every day) or @daily"
        );
    }

    #[test]
    fn field_errors_name_the_field() {
        let hour = error("0 25 * * *");
        assert!(
            hour.starts_with("cron field 2 (hour) \"25\" is not valid: hour takes 0-23, with * , - and / as in */15 or 1-5 ("),
            "{hour}"
        );
        assert!(error("60 * * * *").starts_with("cron field 1 (minute) \"60\""));
        assert!(error("0 0 32 * *").contains("day-of-month takes 1-31"));
        assert!(error("0 0 * 13 *").contains("month takes 1-12 or JAN-DEC"));
        assert!(
            error("0 0 * * 8").contains("day-of-week takes 0-7 or SUN-SAT (0 and 7 are Sunday)")
        );
        assert!(error("0 0 * * FUNDAY").starts_with("cron field 5 (day-of-week)"));
        assert!(error("61 0 0 * * *").starts_with("cron field 1 (second)"));
        assert!(error("*/0 * * * *").starts_with("cron field 1 (minute)"));
    }

    #[test]
    fn croner_extensions_are_refused() {
        assert!(error("0 0 L * *").starts_with("cron field day-of-month \"L\" uses L or W, which Kubernetes CronJob schedules do not have"));
        assert!(error("0 0 15W * *").contains("uses L or W"));
        assert!(error("0 0 * * 5#2").contains("cron field day-of-week \"5#2\" uses L or #"));
        assert!(error("0 0 * * 5L").contains("uses L or #"));
        assert!(error("0 0 1 * +MON").contains("'+' (day-of-month AND day-of-week)"));
    }

    #[test]
    fn other_refusals_say_what_to_write() {
        assert!(error("CRON_TZ=Europe/Berlin 0 2 * * *").contains("set timeZone instead"));
        assert!(error("TZ=UTC 0 2 * * *").contains("CRON_TZ= or TZ="));
        assert!(error("@every 5m").contains("\"@every 5m\" is not supported"));
        assert!(error("@fortnightly").starts_with("unknown schedule \"@fortnightly\": use @yearly"));
        assert_eq!(
            error("0 0 30 2 *"),
            "schedule \"0 0 30 2 *\" never runs: none of its months has those days (e.g. 30 February); pick days that exist"
        );
        assert!(error("0 0 31 4,6 *").contains("never runs"));
        // 29 February exists in leap years; 31st exists in some listed month; a weekday rescues.
        assert_eq!(
            runs("0 0 29 2 *", utc(2025, 1, 1, 0, 0, 0), 1),
            [utc(2028, 2, 29, 0, 0, 0)]
        );
        CronSchedule::parse("0 0 31 4,5 *").unwrap();
        // 30 February OR a Monday in February: the first Monday of February 2026.
        assert_eq!(
            runs("0 0 30 2 1", utc(2025, 6, 1, 0, 0, 0), 1),
            [utc(2026, 2, 2, 0, 0, 0)]
        );
    }
}
