//! The reference vectors: cases copied from the test suites of the implementations podcap must
//! agree with (`../shared/vectors/`, beside the repository; see its README). `cron.json` holds
//! robfig/cron's and Kubernetes' CronJob cases, `selectors.json` apimachinery's label selector and
//! label syntax cases. Every case is run against capture-spec here and must come out as its
//! reference says, or be listed in [`CRON_DIFFERENCES`] or [`SELECTOR_DIFFERENCES`] with the
//! reason podcap differs and what podcap does instead. A listed case that starts to agree, a
//! listed case that differs in another way, an unlisted case that differs, a list entry that
//! names no case, and a new kind of case all fail the test, so a change of outcome is always
//! seen and every difference is a decision.

use std::collections::BTreeMap;
use std::path::PathBuf;

use capture_spec::schedule::cron::CronExpressionError;
use capture_spec::{
    parse_time_zone, validate_label_key, validate_label_value, CronSchedule, LabelSelector,
    SelectorOperator,
};
use chrono::{DateTime, FixedOffset, TimeDelta, Utc};
use chrono_tz::Tz;
use serde_json::{json, Value};

/// A deliberate difference: why podcap differs, and the cases it covers.
struct Difference {
    reason: &'static str,
    /// Each case as (where its source says it comes from, its input, what podcap does instead):
    /// `("selector_test.go:46", "x>1", "operator \">\" only works in node affinity")`. The place is matched as a part of the case's
    /// `source`; what podcap does is a part of the outcome the check reports, so a case that
    /// starts to differ in another way is noticed too.
    cases: &'static [(&'static str, &'static str, &'static str)],
}

const SELECTOR_DIFFERENCES: &[Difference] = &[
    Difference {
        reason: "`>` and `<` (Gt, Lt) exist only in node affinity: a stored LabelSelector \
                 (podSelector) has no such operator, and every selector podcap parses must be \
                 storable as one, so podcap refuses them with a message naming the operators \
                 label selectors take",
        cases: &[
            (
                "selector_test.go:46",
                "x>1",
                "operator \">\" only works in node affinity",
            ),
            (
                "selector_test.go:47",
                "x>1,z<5",
                "operator \">\" only works in node affinity",
            ),
            (
                "selector_test.go:122",
                "x>1",
                "operator \">\" only works in node affinity",
            ),
            (
                "selector_test.go:123",
                "x<1",
                "operator \"<\" only works in node affinity",
            ),
            (
                "selector_test.go:130",
                "x>1",
                "operator \">\" only works in node affinity",
            ),
            (
                "selector_test.go:131",
                "x<1",
                "operator \"<\" only works in node affinity",
            ),
            ("selector_test.go:410", "x11 gt [1]", "unknown variant `Gt`"),
            ("selector_test.go:415", "x12 lt [6]", "unknown variant `Lt`"),
            (
                "selector_test.go:546",
                "x gt [2], y lt [8], z exists []",
                "unknown variant `Gt`",
            ),
            ("selector_test.go:590", "z gt [1]", "unknown variant `Gt`"),
            ("selector_test.go:593", "z gt [1]", "unknown variant `Gt`"),
            (
                "selector_test.go:670",
                "x>1",
                "operator \">\" only works in node affinity",
            ),
            (
                "selector_test.go:673",
                "x<7",
                "operator \"<\" only works in node affinity",
            ),
        ],
    },
    Difference {
        reason:
            "a stored LabelSelector has one spelling per meaning: `==` is the matchLabels entry \
             `=` is, and `!=` and a one-value `notin` are the same NotIn expression; podcap \
             writes them back as `=` and `!=`, which parse to the same selector",
        cases: &[
            (
                "selector_test.go:521",
                "x in [abc, def], y notin [jkl], z exists []",
                "written as \"x in (abc,def),y!=jkl,z\"",
            ),
            (
                "selector_test.go:535",
                "x notin [abc], y in [jkl, mno], z notin []",
                "written as \"x!=abc,y in (jkl,mno),z!=\"",
            ),
            (
                "selector_test.go:541",
                "x = [abc], y == [jkl], z != [a], z exists []",
                "written as \"x=abc,y=jkl,z!=a,z\"",
            ),
        ],
    },
    Difference {
        reason: "apimachinery's ConvertSelectorToLabelsMap splits `x==y` at the first `=` and \
                 refuses the value `=y`; podcap has no separate equality-only parser, and its \
                 selector parser reads `==` as `=` (as labels.Parse does), so `x==y` is the map \
                 {x: y}",
        cases: &[("labels_test.go:194", "x==y", "accepted")],
    },
];

const CRON_DIFFERENCES: &[Difference] = &[
    Difference {
        reason:
            "on the night clocks spring forward, a wall-clock time in the skipped hour does not \
             exist; robfig skips that day's run (a nightly capture silently missing once a \
             year), podcap runs it at the first instant after the gap, as Vixie cron and \
             cronie do (see schedule/cron.rs, daylight_saving_days)",
        cases: &[
            (
                "spec_test.go:114",
                "TZ=America/New_York 0 30 2 11 Mar ?",
                "next run 2012-03-11T03:00:00-04:00",
            ),
            (
                "spec_test.go:133",
                "TZ=America/New_York 0 0 2 * * ?",
                "next run 2012-03-11T03:00:00-04:00",
            ),
        ],
    },
    Difference {
        reason:
            "on the night clocks fall back, the repeated hour's wall-clock times happen twice; \
             robfig runs them twice, an hour apart, which would start a second capture of the \
             same slot (two files of one nightly window); podcap runs them once, at the \
             first, as Vixie cron and cronie do",
        cases: &[
            (
                "spec_test.go:137",
                "TZ=America/New_York 0 30 1 04 Nov ?",
                "next run 2013-11-04T01:30:00-05:00",
            ),
            (
                "spec_test.go:146",
                "TZ=America/New_York 0 0 1 * * ?",
                "next run 2012-11-05T01:00:00-05:00",
            ),
            (
                "spec_test.go:164",
                "0 0 1 * * ?",
                "next run 2012-11-05T01:00:00-05:00",
            ),
        ],
    },
    Difference {
        reason: "`@every` has no fixed run times (robfig counts from whenever the cron last \
                 looked), so a schedule could not show its next run times ahead or start the \
                 same run after an API restart; podcap refuses it and suggests a `*/N` field",
        cases: &[
            ("parser_test.go:152", "@every 5m", "is not supported"),
            ("parser_test.go:326", "@every 5m", "is not supported"),
            ("cron_test.go:208", "@every 2s", "is not supported"),
            (
                "TestMostRecentScheduleTime \"@every schedule\"",
                "@every 1h",
                "is not supported",
            ),
        ],
    },
    Difference {
        reason: "a schedule whose days never exist (30 or 31 February, 31 April) never runs; \
                 robfig and CronJob accept it and then never start it (the CronJob controller \
                 only warns), podcap refuses it when the schedule is created, naming the days",
        cases: &[
            ("cron_test.go:441", "0 0 0 30 Feb ?", "never runs"),
            (
                "TestNextScheduleTime case 8 / TestMostRecentScheduleTime \"rogue cronjob\"",
                "59 23 31 2 *",
                "never runs",
            ),
        ],
    },
    Difference {
        reason:
            "CronJob's mostRecentScheduleTime estimates how many runs were missed from the gap \
             between the first two run times and then searches only after that estimate; with \
             uneven schedules it overshoots and misses the run that was due (here Friday \
             12:30). podcap walks the run times, so it finds that run",
        cases: &[(
            "TestMostRecentScheduleTime \"another complex schedule\"",
            "30 10,11,12 * * 1-5",
            "most recent 2016-05-20T12:30:00Z",
        )],
    },
];

fn vectors(file: &str) -> Vec<Value> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/vectors")
        .join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "reading {}: {e}; the reference vectors live in shared/vectors beside the repository",
            path.display()
        )
    });
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn text<'a>(case: &'a Value, field: &str) -> &'a str {
    case[field]
        .as_str()
        .unwrap_or_else(|| panic!("case without {field}: {case}"))
}

fn flag(case: &Value, field: &str) -> bool {
    case[field]
        .as_bool()
        .unwrap_or_else(|| panic!("case without {field}: {case}"))
}

fn time(value: &Value) -> DateTime<FixedOffset> {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("not a time: {value}"));
    DateTime::parse_from_rfc3339(text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

fn utc(value: &Value) -> DateTime<Utc> {
    time(value).with_timezone(&Utc)
}

fn labels(value: &Value) -> BTreeMap<String, String> {
    serde_json::from_value(value.clone()).unwrap_or_else(|e| panic!("{value}: {e}"))
}

/// Runs every case through `check` and compares the outcomes with `differences`: every case
/// agrees, or is listed and differs as listed; every listed case exists.
fn run(
    file: &str,
    differences: &[Difference],
    input: fn(&Value) -> String,
    check: fn(&Value) -> Result<(), String>,
) {
    let cases = vectors(file);
    assert!(!cases.is_empty(), "{file} has no cases");
    let listed: Vec<(&Difference, &(&str, &str, &str))> = differences
        .iter()
        .flat_map(|d| d.cases.iter().map(move |case| (d, case)))
        .collect();
    let mut used = vec![false; listed.len()];
    let mut problems = Vec::new();
    for case in &cases {
        let source = text(case, "source");
        let input = input(case);
        let entry = listed
            .iter()
            .position(|(_, (place, listed, _))| source.contains(place) && *listed == input);
        match (entry, check(case)) {
            (None, Ok(())) => {}
            (None, Err(ours)) => problems.push(format!(
                "{source}: {input:?} differs from the reference: {ours}\n  case: {case}"
            )),
            (Some(index), Ok(())) => problems.push(format!(
                "{source}: {input:?} now agrees with the reference; remove it from the difference \"{}\"",
                listed[index].0.reason
            )),
            (Some(index), Err(ours)) => {
                used[index] = true;
                let (difference, (_, _, expected)) = listed[index];
                if !ours.contains(expected) {
                    problems.push(format!(
                        "{source}: {input:?} differs in another way than listed ({expected:?}, because {}): {ours}",
                        difference.reason
                    ));
                }
            }
        }
    }
    for ((difference, case), used) in listed.iter().zip(used) {
        if !used {
            problems.push(format!(
                "{case:?} is listed as a difference (\"{}\") but is no case of {file}",
                difference.reason
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "{} of {} cases in {file}:\n{}",
        problems.len(),
        cases.len(),
        problems.join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// Label selectors and label syntax (apimachinery).

/// A case's input as the difference lists name it.
fn selector_input(case: &Value) -> String {
    for field in ["selector", "labelsMapSelector", "labelKey", "labelValue"] {
        if let Some(text) = case[field].as_str() {
            return text.to_string();
        }
    }
    if case["requirement"].is_object() {
        return requirement_text(&case["requirement"]);
    }
    if let Some(requirements) = case["requirements"].as_array() {
        let texts: Vec<String> = requirements.iter().map(requirement_text).collect();
        return texts.join(", ");
    }
    if !case["set"].is_null() {
        return case["set"].to_string();
    }
    case["labelSelector"].to_string()
}

fn requirement_text(requirement: &Value) -> String {
    let values: Vec<&str> = requirement["values"]
        .as_array()
        .map(|v| v.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    format!(
        "{} {} [{}]",
        text(requirement, "key"),
        text(requirement, "operator"),
        values.join(", ")
    )
}

/// A requirement in apimachinery's `selection.Operator` terms, as the stored LabelSelector
/// writes it: `=` and `==` a matchLabels entry (which holds exactly one value), `!=` a NotIn
/// expression, `in`, `notin`, `exists` and `!` the expressions of those names. Other operators
/// (`gt`, `lt`, made-up ones) go to serde under their own name, which refuses what a
/// LabelSelector cannot hold.
fn stored_selector(requirements: &[Value]) -> Result<LabelSelector, String> {
    let mut match_labels = serde_json::Map::new();
    let mut expressions = Vec::new();
    for requirement in requirements {
        let key = text(requirement, "key");
        let values = requirement["values"].clone();
        let count = values.as_array().map_or(0, Vec::len);
        let operator = match text(requirement, "operator") {
            "=" | "==" if count == 1 => {
                match_labels.insert(key.to_string(), values[0].clone());
                continue;
            }
            "=" | "==" => {
                return Err(format!(
                    "refused: matchLabels holds one value for {key:?}, not {count}"
                ))
            }
            "!=" | "notin" => "NotIn",
            "in" => "In",
            "exists" => "Exists",
            "!" => "DoesNotExist",
            "gt" => "Gt",
            "lt" => "Lt",
            other => other,
        };
        expressions.push(json!({"key": key, "operator": operator, "values": values}));
    }
    let stored = json!({"matchLabels": match_labels, "matchExpressions": expressions});
    let selector: LabelSelector =
        serde_json::from_value(stored).map_err(|e| format!("refused: {e}"))?;
    let errors = selector.field_errors("selector");
    if errors.is_empty() {
        Ok(selector)
    } else {
        let fields: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        Err(format!("refused: {}", fields.join("; ")))
    }
}

/// A selector as a sorted list of (key, operator, sorted values) in apimachinery's terms, so
/// parsed structures compare: `==` is `=`, `!=` is a one-value `notin`.
fn normalized_reference(requirements: &[Value]) -> Vec<(String, String, Vec<String>)> {
    let mut list: Vec<_> = requirements
        .iter()
        .map(|r| {
            let operator = match text(r, "operator") {
                "==" => "=",
                "!=" => "notin",
                other => other,
            };
            let mut values: Vec<String> =
                serde_json::from_value(r["values"].clone()).unwrap_or_else(|e| panic!("{r}: {e}"));
            values.sort();
            values.dedup();
            (text(r, "key").to_string(), operator.to_string(), values)
        })
        .collect();
    list.sort();
    list
}

fn normalized_ours(selector: &LabelSelector) -> Vec<(String, String, Vec<String>)> {
    let labels = selector
        .match_labels
        .iter()
        .map(|(k, v)| (k.clone(), "=".to_string(), vec![v.clone()]));
    let expressions = selector.match_expressions.iter().map(|r| {
        let operator = match r.operator {
            SelectorOperator::In => "in",
            SelectorOperator::NotIn => "notin",
            SelectorOperator::Exists => "exists",
            SelectorOperator::DoesNotExist => "!",
        };
        let mut values = r.values.clone();
        values.sort();
        values.dedup();
        (r.key.clone(), operator.to_string(), values)
    });
    let mut list: Vec<_> = labels.chain(expressions).collect();
    list.sort();
    list
}

fn parsed(selector: &str) -> Result<LabelSelector, String> {
    selector
        .parse::<LabelSelector>()
        .map_err(|e| format!("refused: {e}"))
}

fn validity(valid: bool, ours: Result<(), String>) -> Result<(), String> {
    match (valid, ours) {
        (true, Ok(())) | (false, Err(_)) => Ok(()),
        (true, Err(refusal)) => Err(refusal),
        (false, Ok(())) => Err("accepted".to_string()),
    }
}

fn matches(selector: &LabelSelector, case: &Value) -> Result<(), String> {
    let expected = flag(case, "matches");
    let got = selector.matches(&labels(&case["labels"]));
    if got == expected {
        Ok(())
    } else {
        Err(format!("matches {got}"))
    }
}

fn written(selector: &LabelSelector, expected: &str) -> Result<(), String> {
    let ours = selector.to_string();
    if ours == expected {
        Ok(())
    } else {
        Err(format!("written as {ours:?}"))
    }
}

fn check_selector(case: &Value) -> Result<(), String> {
    let requirements = || -> &Vec<Value> {
        case["requirements"]
            .as_array()
            .unwrap_or_else(|| panic!("case without requirements: {case}"))
    };
    match text(case, "kind") {
        "parse" => {
            let valid = flag(case, "valid");
            let selector = match (parsed(text(case, "selector")), valid) {
                (Ok(selector), true) => selector,
                (ours, valid) => return validity(valid, ours.map(drop)),
            };
            if let Some(canonical) = case["canonical"].as_str() {
                written(&selector, canonical)?;
            }
            if let Some(same) = case["sameStringAs"].as_str() {
                written(&selector, &parsed(same)?.to_string())?;
            }
            if let Some(expected) = case["requirements"].as_array() {
                let ours = normalized_ours(&selector);
                if ours != normalized_reference(expected) {
                    return Err(format!("parsed as {ours:?}"));
                }
            }
            // `matchesNothing` (apimachinery's MatchesNothing, false for every case) has no
            // counterpart: podcap never decides that from a selector alone.
            Ok(())
        }
        "match" => matches(&parsed(text(case, "selector"))?, case),
        "requirement" => validity(
            flag(case, "valid"),
            stored_selector(std::slice::from_ref(&case["requirement"])).map(drop),
        )
        .and_then(|()| error_field(case)),
        "requirementsToString" => written(&stored_selector(requirements())?, text(case, "string")),
        "requirementsMatch" => matches(&stored_selector(requirements())?, case),
        "setToString" => written(
            &LabelSelector::from_labels(labels(&case["set"])),
            text(case, "string"),
        ),
        "validatedSetSelector" => {
            let selector = LabelSelector::from_labels(labels(&case["set"]));
            let errors = selector.field_errors("selector");
            validity(
                flag(case, "valid"),
                if errors.is_empty() {
                    Ok(())
                } else {
                    Err(format!("refused: {errors:?}"))
                },
            )
        }
        "labelsMap" => {
            // ConvertSelectorToLabelsMap: a selector of `key=value` pairs only, which is what a
            // label map (nodeSelector, matchLabels) can hold.
            let ours = parsed(text(case, "labelsMapSelector")).and_then(|selector| {
                if selector.match_expressions.is_empty() {
                    Ok(selector)
                } else {
                    Err(format!("refused: {selector} is not only key=value pairs"))
                }
            });
            match (ours, flag(case, "valid")) {
                (Ok(selector), true) if selector.match_labels != labels(&case["labels"]) => {
                    Err(format!("read as {:?}", selector.match_labels))
                }
                (ours, valid) => validity(valid, ours.map(drop)),
            }
        }
        "labelSelectorAsSelector" => {
            let ours = serde_json::from_value::<LabelSelector>(case["labelSelector"].clone())
                .map_err(|e| format!("refused: {e}"))
                .and_then(|selector| {
                    let errors = selector.field_errors("selector");
                    if errors.is_empty() {
                        Ok(selector)
                    } else {
                        Err(format!("refused: {errors:?}"))
                    }
                });
            match (ours, flag(case, "valid")) {
                (Ok(selector), true) => written(&selector, text(case, "string")),
                (ours, valid) => validity(valid, ours.map(drop)),
            }
        }
        "labelKey" => validity(
            flag(case, "valid"),
            validate_label_key(text(case, "labelKey")).map_err(|e| format!("refused: {e}")),
        ),
        "labelValue" => validity(
            flag(case, "valid"),
            validate_label_value(text(case, "labelValue")).map_err(|e| format!("refused: {e}")),
        ),
        other => panic!("a new kind of selector case, {other:?}: teach this test to check it"),
    }
}

/// For a refused requirement, that podcap puts the problem where apimachinery does: on the key
/// or on the values (a matchLabels entry holds its value), or, for an operator a LabelSelector
/// cannot hold, refuses the operator.
fn error_field(case: &Value) -> Result<(), String> {
    let Some(field) = case["errorField"].as_str() else {
        return Ok(());
    };
    let Err(refusal) = stored_selector(std::slice::from_ref(&case["requirement"])) else {
        return Ok(());
    };
    let root = field.split('[').next().unwrap_or(field);
    let located = refusal.contains(&format!(".{root}"))
        || (root == "values" && refusal.contains("matchLabels"))
        || refusal.contains("unknown variant");
    if located {
        Ok(())
    } else {
        Err(format!("{refusal} (not at {field})"))
    }
}

#[test]
fn selector_vectors_agree_or_differ_deliberately() {
    run(
        "selectors.json",
        SELECTOR_DIFFERENCES,
        selector_input,
        check_selector,
    );
}

// ---------------------------------------------------------------------------------------------
// Cron schedules and time zones (robfig/cron v3 and Kubernetes CronJob).

fn cron_input(case: &Value) -> String {
    case["expr"]
        .as_str()
        .or_else(|| case["timeZone"].as_str())
        .unwrap_or_default()
        .to_string()
}

/// A schedule and its zone as podcap spells them. A `TZ=` or `CRON_TZ=` prefix (which robfig
/// reads and CronJob creation refuses) is podcap's `timeZone` field, so the case gives the
/// expression without it (`schedule`) and the zone (`tz`); the prefixed text itself must be
/// refused with a message that points at `timeZone`.
fn schedule_of(case: &Value) -> Result<(CronSchedule, Tz), String> {
    let expr = text(case, "expr");
    let schedule = if expr.starts_with("TZ=") || expr.starts_with("CRON_TZ=") {
        match (CronSchedule::parse(expr), case["schedule"].as_str()) {
            (Err(CronExpressionError::TimeZoneInSchedule(_)), Some(schedule)) => schedule,
            // A Kubernetes-layer case: the prefixed text is all there is, and it is refused.
            (Err(refusal @ CronExpressionError::TimeZoneInSchedule(_)), None) => {
                return Err(format!("refused: {refusal}"))
            }
            (other, _) => {
                return Err(format!(
                    "the prefixed form is not refused as CronJob creation refuses it: {other:?}"
                ))
            }
        }
    } else {
        expr
    };
    let zone = match case["tz"].as_str() {
        Some(name) => parse_time_zone(name).map_err(|e| format!("refused: {e}"))?,
        None => Tz::UTC,
    };
    let cron = CronSchedule::parse(schedule).map_err(|e| format!("refused: {e}"))?;
    Ok((cron, zone))
}

fn next_after(
    cron: &CronSchedule,
    zone: Tz,
    after: DateTime<Utc>,
) -> Result<DateTime<Utc>, String> {
    cron.next_after(&after.with_timezone(&zone))
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("no next run: {e}"))
}

/// The run times in `(after, until]`, at most `limit` of them.
fn runs_between(
    cron: &CronSchedule,
    after: DateTime<Utc>,
    until: DateTime<Utc>,
    limit: usize,
) -> Result<Vec<DateTime<Utc>>, String> {
    let mut runs = Vec::new();
    let mut cursor = after;
    while runs.len() < limit {
        let next = next_after(cron, Tz::UTC, cursor)?;
        if next > until {
            break;
        }
        runs.push(next);
        cursor = next;
    }
    Ok(runs)
}

/// CronJob's controller arithmetic, done exactly: where the search for a due run starts, the run
/// times from there up to now, and how many were missed ("noneMissed", "fewMissed" or
/// "manyMissed", past 100).
struct Due {
    earliest: DateTime<Utc>,
    most_recent: Option<DateTime<Utc>>,
    missed: &'static str,
}

fn due(case: &Value, cron: &CronSchedule, with_deadline: bool) -> Result<Due, String> {
    let now = utc(&case["now"]);
    let mut earliest = if case["lastScheduleTime"].is_null() {
        utc(&case["creationTimestamp"])
    } else {
        utc(&case["lastScheduleTime"])
    };
    if let (true, Some(seconds)) = (with_deadline, case["startingDeadlineSeconds"].as_i64()) {
        earliest = earliest.max(now - TimeDelta::seconds(seconds));
    }
    let runs = runs_between(cron, earliest, now, 102)?;
    let missed = match runs.len() {
        0 | 1 => "noneMissed",
        2..=101 => "fewMissed",
        _ => "manyMissed",
    };
    Ok(Due {
        earliest,
        most_recent: runs.last().copied(),
        missed,
    })
}

fn optional_time(value: &Value) -> Option<DateTime<Utc>> {
    (!value.is_null()).then(|| utc(value))
}

fn check_cron(case: &Value) -> Result<(), String> {
    match text(case, "kind") {
        "parse" => {
            let ours = schedule_of(case).and_then(|(cron, _)| {
                if let Some(equivalent) = case["equivalentSpec6"].as_str() {
                    let other = CronSchedule::parse(equivalent)
                        .map_err(|e| format!("{equivalent:?} refused: {e}"))?;
                    let from = utc(&json!("2012-07-09T00:00:00Z"));
                    let (a, b) = (
                        cron.next_runs(&Utc, from, 5),
                        other.next_runs(&Utc, from, 5),
                    );
                    if a != b {
                        return Err(format!("runs {a:?}, but {equivalent:?} runs {b:?}"));
                    }
                }
                Ok(())
            });
            let zone = match case["timeZone"].as_str() {
                Some(name) => parse_time_zone(name)
                    .map(drop)
                    .map_err(|e| format!("refused: {e}")),
                None => Ok(()),
            };
            validity(flag(case, "valid"), ours.and(zone))
        }
        "timeZone" => {
            let zone = parse_time_zone(text(case, "timeZone"))
                .map(drop)
                .map_err(|e| format!("refused: {e}"));
            let schedule = match case["expr"].as_str() {
                Some(expr) => CronSchedule::parse(expr)
                    .map(drop)
                    .map_err(|e| format!("schedule refused: {e}")),
                None => Ok(()),
            };
            validity(flag(case, "valid"), zone.and(schedule))
        }
        kind @ ("next" | "notNext") => {
            // robfig's Next returns no time for a schedule that never runs.
            let never = case[kind].is_null();
            let (cron, zone) = match schedule_of(case) {
                Ok(parsed) => parsed,
                // podcap refuses such a schedule outright.
                Err(refusal) if never && refusal.contains("never runs") => return Ok(()),
                Err(refusal) => return Err(refusal),
            };
            let from = time(&case["from"]).with_timezone(&Utc);
            let next = next_after(&cron, zone, from);
            match (kind, next) {
                ("next", Ok(next)) if next == utc(&case["next"]) => Ok(()),
                ("next", Ok(next)) => Err(format!(
                    "next run {}",
                    next.with_timezone(&zone).to_rfc3339()
                )),
                (_, Err(_)) if never => Ok(()),
                (_, Ok(next)) if never => Err(format!("runs at {next}")),
                (_, Ok(next)) if next != utc(&case["notNext"]) => Ok(()),
                (_, Ok(next)) => Err(format!("next run {next}")),
                (_, Err(error)) => Err(error),
            }
        }
        "k8s_mostRecentScheduleTime" => {
            let cron = match schedule_of(case) {
                Ok((cron, _)) => cron,
                Err(refusal) if case["expectError"] == json!(true) => {
                    // CronJob finds out when it computes run times; podcap when parsing.
                    return if refusal.contains("never runs") {
                        Ok(())
                    } else {
                        Err(refusal)
                    };
                }
                Err(refusal) => return Err(refusal),
            };
            let due = due(case, &cron, flag(case, "includeStartingDeadlineSeconds"))?;
            let expected = optional_time(&case["expectedMostRecentTime"]);
            if due.earliest != utc(&case["expectedEarliestTime"]) {
                return Err(format!("searches from {}", due.earliest));
            }
            if due.most_recent != expected {
                return Err(format!(
                    "most recent {}",
                    due.most_recent.map_or("none".to_string(), |t| t
                        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                ));
            }
            if due.missed != text(case, "expectedMissed") {
                return Err(format!("missed: {}", due.missed));
            }
            Ok(())
        }
        "k8s_nextScheduleTime" => {
            let cron = match schedule_of(case) {
                Ok((cron, _)) => cron,
                Err(refusal) if case["expectError"] == json!(true) => {
                    return if refusal.contains("never runs") {
                        Ok(())
                    } else {
                        Err(refusal)
                    };
                }
                Err(refusal) => return Err(refusal),
            };
            let due = due(case, &cron, true)?;
            match (case["expectedScheduleTime"].as_str(), due.most_recent) {
                (None, None) => Ok(()),
                (Some("non-nil"), Some(_)) => Ok(()),
                (Some(expected), Some(ours)) if utc(&json!(expected)) == ours => Ok(()),
                (_, ours) => Err(format!("due run {ours:?}")),
            }
        }
        "k8s_nextScheduleTimeDuration" => {
            let (cron, _) = schedule_of(case)?;
            let now = utc(&case["now"]);
            let due = due(case, &cron, false)?;
            // As the controller: after the most recent run time; with none, after the earliest
            // time if nothing was missed, else after now.
            let base = match (due.most_recent, due.missed) {
                (Some(run), _) => run,
                (None, "noneMissed") => due.earliest,
                (None, _) => now,
            };
            let next = next_after(&cron, Tz::UTC, base)?;
            if next == utc(&case["expectedNextScheduleTime"]) {
                Ok(())
            } else {
                Err(format!("next run {next}"))
            }
        }
        other => panic!("a new kind of cron case, {other:?}: teach this test to check it"),
    }
}

#[test]
fn cron_vectors_agree_or_differ_deliberately() {
    run("cron.json", CRON_DIFFERENCES, cron_input, check_cron);
}
