//! kubectl-style output: aligned tables with upper-case headers, ages, sizes, `describe` text.

use capture_spec::{FilterRule, LabelSelector};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;

/// Columns separated by three spaces, each as wide as its widest cell (as kubectl prints).
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
    }
    let mut out = String::new();
    let line = |cells: Vec<&str>, out: &mut String| {
        let mut text = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                text.push_str(cell);
            } else {
                text.push_str(cell);
                let pad = widths[i] - cell.chars().count() + 3;
                text.push_str(&" ".repeat(pad));
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(header.to_vec(), &mut out);
    for row in rows {
        line(row.iter().map(String::as_str).collect(), &mut out);
    }
    out
}

/// kubectl's age: `42s`, `5m`, `3h`, `12d`; `<unknown>` without a time.
pub fn age(time: Option<&str>, now: DateTime<Utc>) -> String {
    let Some(time) = time.and_then(|t| DateTime::parse_from_rfc3339(t).ok()) else {
        return "<unknown>".into();
    };
    let seconds = (now - time.with_timezone(&Utc)).num_seconds().max(0);
    match seconds {
        s if s < 120 => format!("{s}s"),
        s if s < 120 * 60 => format!("{}m", s / 60),
        s if s < 48 * 3600 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

pub fn bytes(n: u64) -> String {
    bytesize::ByteSize::b(n).display().iec().to_string()
}

fn num(value: &Value) -> String {
    value
        .as_u64()
        .map(|n| n.to_string())
        .unwrap_or_else(|| "0".into())
}

fn text(value: &Value) -> String {
    value.as_str().unwrap_or("").to_string()
}

/// A label selector as `-l` takes it: `app=web,tier in (a,b)` (capture-spec's kubectl form);
/// `<all pods>` for the empty one, the JSON itself if it is not a selector.
pub fn selector(value: &Value) -> String {
    match LabelSelector::deserialize(value) {
        Ok(selector) if selector == LabelSelector::default() => "<all pods>".into(),
        Ok(selector) => selector.to_string(),
        Err(_) if value.is_null() => "<all pods>".into(),
        // The API writes the object form; a string is already the `-l` form.
        Err(_) => value
            .as_str()
            .map_or_else(|| value.to_string(), str::to_string),
    }
}

/// Filters as `--filter` takes them, one rule after another: `udp:53 tcp:443` (capture-spec's
/// CLI form of each rule); `<all packets>` without rules, the JSON itself if they are not rules.
pub fn filters(value: &Value) -> String {
    match Vec::<FilterRule>::deserialize(value) {
        Ok(rules) if rules.is_empty() => "<all packets>".into(),
        Ok(rules) => rules
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(" "),
        Err(_) if value.is_null() => "<all packets>".into(),
        Err(_) => value.to_string(),
    }
}

/// Pods, packets, bytes and drops of a capture: the status's totals where the API gives them,
/// else the sums over its targets.
pub fn totals(status: &Value) -> [u64; 4] {
    let targets = status["targets"].as_array().cloned().unwrap_or_default();
    let sum = |key: &str| targets.iter().filter_map(|t| t[key].as_u64()).sum::<u64>();
    let pods = {
        let mut pods: Vec<String> = targets
            .iter()
            .map(|t| format!("{}/{}", text(&t["namespace"]), text(&t["pod"])))
            .collect();
        pods.sort();
        pods.dedup();
        pods.len() as u64
    };
    [
        status["pods"].as_u64().unwrap_or(pods),
        status["packets"].as_u64().unwrap_or_else(|| sum("packets")),
        status["bytes"].as_u64().unwrap_or_else(|| sum("bytes")),
        status["drops"].as_u64().unwrap_or_else(|| sum("drops")),
    ]
}

pub const CAPTURE_HEADER: &[&str] = &["NAME", "PHASE", "PODS", "PACKETS", "DROPS", "AGE"];
pub const CAPTURE_HEADER_WIDE: &[&str] = &[
    "NAME", "PHASE", "PODS", "PACKETS", "BYTES", "DROPS", "AGE", "SELECTOR", "FILTERS",
];

pub fn capture_row(capture: &Value, wide: bool, now: DateTime<Utc>) -> Vec<String> {
    let status = &capture["status"];
    let [pods, packets, size, drops] = totals(status);
    let mut row = vec![
        text(&capture["metadata"]["name"]),
        status["phase"].as_str().unwrap_or("Pending").to_string(),
        pods.to_string(),
        packets.to_string(),
    ];
    if wide {
        row.push(bytes(size));
    }
    row.push(drops.to_string());
    row.push(age(capture["metadata"]["creationTimestamp"].as_str(), now));
    if wide {
        row.push(selector(&capture["spec"]["podSelector"]));
        row.push(filters(&capture["spec"]["filters"]));
    }
    row
}

/// `files`: the capture's `.../files` list (each with `pod` = `namespace/pod`), when readable;
/// otherwise the files the targets' statuses name.
pub fn describe_capture(
    capture: &Value,
    files: Option<&[Value]>,
    shares: Option<&[Value]>,
    now: DateTime<Utc>,
) -> String {
    let meta = &capture["metadata"];
    let spec = &capture["spec"];
    let status = &capture["status"];
    let mut out = String::new();
    let mut field = |name: &str, value: String| {
        if !value.is_empty() {
            out.push_str(&format!("{:<12}{value}\n", format!("{name}:")));
        }
    };
    field("Name", text(&meta["name"]));
    field("Namespace", text(&meta["namespace"]));
    field(
        "Created",
        format!(
            "{} ({} ago)",
            text(&meta["creationTimestamp"]),
            age(meta["creationTimestamp"].as_str(), now)
        ),
    );
    field(
        "Phase",
        status["phase"].as_str().unwrap_or("Pending").into(),
    );
    field("Message", text(&status["message"]));
    field("Selector", selector(&spec["podSelector"]));
    field("Filters", filters(&spec["filters"]));
    field("BPF filter", text(&spec["bpfFilter"]));
    field(
        "Captured",
        match spec["capturePoint"].as_str() {
            Some("podNetns") => "inside each pod's network namespace (podNetns)".into(),
            Some(other) => other.to_string(),
            None => "on each pod's host-side veth (hostVeth)".into(),
        },
    );
    let window = [
        ("start", &spec["startTime"]),
        ("end", &spec["endTime"]),
        ("for", &spec["duration"]),
    ]
    .iter()
    .filter_map(|(k, v)| v.as_str().map(|v| format!("{k} {v}")))
    .collect::<Vec<_>>()
    .join(", ");
    field(
        "Window",
        if window.is_empty() {
            "until stopped".into()
        } else {
            window
        },
    );
    if let Some(max) = spec["maxBytes"].as_u64() {
        field("Max size", bytes(max));
    }
    field("Format", text(&spec["format"]));
    field("Started", text(&status["startedAt"]));
    field("Finished", text(&status["finishedAt"]));
    let [pods, packets, size, drops] = totals(status);
    field(
        "Totals",
        format!(
            "{pods} pods, {packets} packets, {}, {drops} drops",
            bytes(size)
        ),
    );
    let targets = status["targets"].as_array().cloned().unwrap_or_default();
    let files: Vec<Value> = match files {
        Some(files) => files.to_vec(),
        None => targets
            .iter()
            .flat_map(|t| {
                let pod = format!("{}/{}", text(&t["namespace"]), text(&t["pod"]));
                t["files"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .into_iter()
                    .map(move |mut f| {
                        f["pod"] = Value::String(pod.clone());
                        f
                    })
            })
            .collect(),
    };
    out.push_str("Targets:\n");
    if targets.is_empty() {
        out.push_str("  <none>\n");
    } else {
        let rows: Vec<Vec<String>> = targets
            .iter()
            .map(|t| {
                let pod = format!("{}/{}", text(&t["namespace"]), text(&t["pod"]));
                let count = files.iter().filter(|f| text(&f["pod"]) == pod).count();
                vec![
                    text(&t["node"]),
                    pod,
                    text(&t["interface"]),
                    text(&t["state"]),
                    num(&t["packets"]),
                    bytes(t["bytes"].as_u64().unwrap_or(0)),
                    num(&t["drops"]),
                    count.to_string(),
                    text(&t["error"]),
                ]
            })
            .collect();
        indent(
            &mut out,
            &table(
                &[
                    "NODE",
                    "POD",
                    "INTERFACE",
                    "STATE",
                    "PACKETS",
                    "BYTES",
                    "DROPS",
                    "FILES",
                    "ERROR",
                ],
                &rows,
            ),
        );
    }
    out.push_str("Files:\n");
    let files: Vec<Vec<String>> = files
        .iter()
        .map(|f| {
            vec![
                text(&f["id"]),
                text(&f["pod"]),
                text(&f["name"]),
                bytes(f["size"].as_u64().unwrap_or(0)),
                num(&f["packets"]),
            ]
        })
        .collect();
    if files.is_empty() {
        out.push_str("  <none>\n");
    } else {
        indent(
            &mut out,
            &table(&["ID", "POD", "NAME", "SIZE", "PACKETS"], &files),
        );
    }
    if let Some(shares) = shares {
        out.push_str("Shares:\n");
        if shares.is_empty() {
            out.push_str("  <none>\n");
        } else {
            indent(&mut out, &shares_table(shares));
        }
    }
    out.push_str("Events:\n");
    let events = events(capture, now);
    if events.is_empty() {
        out.push_str("  <none>\n");
    } else {
        indent(
            &mut out,
            &table(&["TIME", "TYPE", "REASON", "AGE", "MESSAGE"], &events),
        );
    }
    out
}

/// The capture's life, in time order, from what the API keeps: created, the scheduled start,
/// started, per target its first and last packet and its state (with its error), and the end
/// with the capture's message. Rows: TIME, TYPE, REASON, AGE, MESSAGE.
pub fn events(capture: &Value, now: DateTime<Utc>) -> Vec<Vec<String>> {
    let meta = &capture["metadata"];
    let spec = &capture["spec"];
    let status = &capture["status"];
    let time = |v: &Value| {
        v.as_str()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.with_timezone(&Utc))
    };
    // (time, order among equal times, type, reason, message)
    let mut events: Vec<(DateTime<Utc>, u8, &str, String, String)> = Vec::new();
    if let Some(t) = time(&meta["creationTimestamp"]) {
        events.push((
            t,
            0,
            "Normal",
            "Created".into(),
            format!("capture {}", text(&meta["name"])),
        ));
    }
    if let Some(t) = time(&spec["startTime"]) {
        let message = match time(&spec["endTime"]) {
            Some(end) => format!(
                "window until {}",
                end.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ),
            None => format!("for {}", text(&spec["duration"])),
        };
        events.push((t, 1, "Normal", "ScheduledStart".into(), message));
    }
    let started = time(&status["startedAt"]);
    if let Some(t) = started {
        events.push((
            t,
            2,
            "Normal",
            "Started".into(),
            "the first target started recording".into(),
        ));
    }
    let finished = time(&status["finishedAt"]);
    for target in status["targets"].as_array().into_iter().flatten() {
        let pod = format!("{}/{}", text(&target["namespace"]), text(&target["pod"]));
        let files = target["files"].as_array().cloned().unwrap_or_default();
        let first = files.iter().filter_map(|f| time(&f["firstPacketAt"])).min();
        let last = files.iter().filter_map(|f| time(&f["lastPacketAt"])).max();
        if let Some(t) = first {
            events.push((
                t,
                3,
                "Normal",
                "FirstPacket".into(),
                format!("{pod} on {}", text(&target["node"])),
            ));
        }
        if let Some(t) = last {
            events.push((
                t,
                4,
                "Normal",
                "LastPacket".into(),
                format!(
                    "{pod}: {} packets, {} drops",
                    num(&target["packets"]),
                    num(&target["drops"])
                ),
            ));
        }
        // A target's state has no time of its own: placed at its last packet, else the end.
        let state = text(&target["state"]);
        let error = text(&target["error"]);
        let failed = !error.is_empty() || state == "Failed";
        if let Some(t) = last.or(finished).or(started) {
            let mut message = format!("{pod} {state}");
            if !error.is_empty() {
                message.push_str(&format!(": {error}"));
            }
            events.push((
                t,
                5,
                if failed { "Warning" } else { "Normal" },
                format!("Target{state}"),
                message,
            ));
        }
    }
    if let Some(t) = finished {
        let phase = status["phase"].as_str().unwrap_or("Finished");
        let message = match status["message"].as_str() {
            Some(m) if !m.is_empty() => m.to_string(),
            _ => format!("capture {}", phase.to_lowercase()),
        };
        events.push((
            t,
            6,
            if phase == "Failed" {
                "Warning"
            } else {
                "Normal"
            },
            phase.to_string(),
            message,
        ));
    }
    events.sort_by_key(|e| (e.0, e.1));
    events
        .into_iter()
        .map(|(t, _, kind, reason, message)| {
            let stamp = t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            vec![
                stamp.clone(),
                kind.to_string(),
                reason,
                age(Some(&stamp), now),
                message,
            ]
        })
        .collect()
}

pub fn shares_table(shares: &[Value]) -> String {
    let rows: Vec<Vec<String>> = shares
        .iter()
        .map(|s| {
            vec![
                text(&s["id"]),
                text(&s["state"]),
                text(&s["createdAt"]),
                text(&s["expiresAt"]),
                num(&s["downloads"]),
            ]
        })
        .collect();
    table(&["ID", "STATE", "CREATED", "EXPIRES", "DOWNLOADS"], &rows)
}

pub fn schedules_table(schedules: &[Value], now: DateTime<Utc>) -> String {
    let rows: Vec<Vec<String>> = schedules
        .iter()
        .map(|s| {
            let spec = &s["spec"];
            let status = &s["status"];
            vec![
                text(&s["metadata"]["name"]),
                text(&spec["schedule"]),
                spec["timeZone"].as_str().unwrap_or("UTC").to_string(),
                spec["suspend"].as_bool().unwrap_or(false).to_string(),
                status["active"].as_array().map_or(0, Vec::len).to_string(),
                match status["lastScheduleTime"].as_str() {
                    Some(t) => age(Some(t), now),
                    None => "<none>".into(),
                },
                status["nextScheduleTime"]
                    .as_str()
                    .unwrap_or("<none>")
                    .to_string(),
                age(s["metadata"]["creationTimestamp"].as_str(), now),
            ]
        })
        .collect();
    table(
        &[
            "NAME", "SCHEDULE", "TIMEZONE", "SUSPEND", "ACTIVE", "LAST", "NEXT", "AGE",
        ],
        &rows,
    )
}

fn indent(out: &mut String, text: &str) {
    for line in text.lines() {
        out.push_str("  ");
        out.push_str(line);
        out.push('\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tables_align_like_kubectl() {
        let out = table(
            &["NAME", "PHASE"],
            &[
                vec!["a".into(), "Completed".into()],
                vec!["long-name".into(), "Failed".into()],
            ],
        );
        assert_eq!(
            out,
            "NAME        PHASE\na           Completed\nlong-name   Failed\n"
        );
    }

    #[test]
    fn selectors_and_filters_read_back_as_flags() {
        let sel = json!({"matchLabels": {"app": "web"}, "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]}]});
        assert_eq!(selector(&sel), "app=web,tier in (a,b)");
        let f = json!([{"protocol": "UDP", "ports": [53], "peers": ["10.96.0.10"]}, {"protocol": "TCP", "ports": ["8000-8080"]}]);
        assert_eq!(filters(&f), "udp:53@10.96.0.10 tcp:8000-8080");
        assert_eq!(filters(&json!([])), "<all packets>");
    }

    #[test]
    fn ages() {
        let now = Utc::now();
        let t = (now - chrono::Duration::seconds(300)).to_rfc3339();
        assert_eq!(age(Some(&t), now), "5m");
        assert_eq!(age(None, now), "<unknown>");
    }
}
