//! The commands: each builds its request from the flags, calls the API and prints kubectl-style.

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use capture_spec::{Filter, LabelSelector};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::api::{token_identity, ApiError, Client, Connection};
use crate::config;
use crate::kubeconfig::{self, PortForward};
use crate::render;
use crate::{Cli, Command, Format, Global, Output, Selection};

/// The connection and, in Kubernetes mode, the port-forward it goes through.
struct Session {
    client: Client,
    _forward: Option<PortForward>,
}

fn connect(global: &Global) -> Result<Session> {
    // The config file fills in what the flags and environment leave out (standalone only).
    let config = if global.server.is_some() && global.token.is_some() {
        None
    } else {
        config::load()?
    };
    let server = global
        .server
        .clone()
        .or_else(|| config.as_ref().and_then(|c| c.server.clone()));
    if let Some(server) = &server {
        let token = match (&global.token, &config) {
            (Some(token), _) => Some(token.clone()),
            (None, Some(config)) => config::token(config)?,
            (None, None) => None,
        };
        let identity = token
            .as_deref()
            .map(token_identity)
            .unwrap_or_else(|| "an anonymous caller (no --token or PODCAP_TOKEN)".into());
        let namespace = global
            .namespace
            .clone()
            .or_else(|| config.as_ref().and_then(|c| c.namespace.clone()));
        return Ok(Session {
            client: Client::new(Connection {
                base: server.trim_end_matches('/').to_string(),
                token,
                identity,
                namespace: namespace.unwrap_or_else(|| "default".into()),
                via_proxy: false,
                ca_pem: None,
                insecure: false,
            })?,
            _forward: None,
        });
    }
    let context = kubeconfig::resolve(global.kubeconfig.as_deref(), global.context.as_deref())?;
    let (token, identity) = match (&global.token, &context.token) {
        (Some(token), _) => (token.clone(), token_identity(token)),
        (None, Some(token)) => (
            token.clone(),
            format!(
                "kubeconfig user {:?} (context {:?})",
                context.user, context.context
            ),
        ),
        (None, None) => {
            return Err(kubeconfig::KubeconfigError::NoToken {
                user: context.user,
                how: context.auth_kind,
            }
            .into())
        }
    };
    let namespace = global
        .namespace
        .clone()
        .or(context.namespace)
        .unwrap_or_else(|| "default".into());
    if global.port_forward {
        let forward = PortForward::start(global.kubeconfig.as_deref(), Some(&context.context))?;
        return Ok(Session {
            client: Client::new(Connection {
                base: forward.base.clone(),
                token: Some(token),
                identity,
                namespace,
                via_proxy: false,
                ca_pem: None,
                insecure: false,
            })?,
            _forward: Some(forward),
        });
    }
    // The API server's service proxy, with the user's own token (see kubeconfig.rs).
    let server = context.server.ok_or_else(|| {
        anyhow!(
            "kubeconfig context {:?} has no cluster server: pass --server, or --port-forward",
            context.context
        )
    })?;
    Ok(Session {
        client: Client::new(Connection {
            base: kubeconfig::proxy_base(&server),
            token: Some(token),
            identity,
            namespace,
            via_proxy: true,
            ca_pem: context.ca_pem,
            insecure: context.insecure,
        })?,
        _forward: None,
    })
}

pub fn run(cli: Cli) -> Result<()> {
    let session = connect(&cli.global)?;
    let c = &session.client;
    match cli.command {
        Command::Capture {
            name,
            selection,
            duration,
            until,
            at,
            wait,
            output,
        } => {
            let mut spec = spec_of(&selection)?;
            if let Some(d) = duration {
                spec["duration"] = json!(d);
            }
            if let Some(t) = until {
                spec["endTime"] = json!(time_arg("--until", &t)?);
            }
            if let Some(t) = at {
                spec["startTime"] = json!(time_arg("--at", &t)?);
            }
            let mut metadata = json!({});
            if let Some(name) = name {
                metadata["name"] = json!(name);
            }
            let created = c.json(
                "POST",
                &c.ns_path("captures"),
                Some(&json!({"metadata": metadata, "spec": spec})),
            )?;
            let name = created["metadata"]["name"]
                .as_str()
                .unwrap_or("")
                .to_string();
            match output {
                Some(Output::Json | Output::Yaml) => print_object(&created, output)?,
                Some(Output::Name) => println!("packetcapture.podcap.io/{name}"),
                _ => println!("packetcapture.podcap.io/{name} created"),
            }
            if wait {
                wait_for_end(c, &name)?;
            }
        }
        Command::Get {
            name,
            output,
            watch,
        } => get(c, name.as_deref(), output, watch)?,
        Command::Describe { name } => {
            let mut capture = c.get(&c.ns_path(&format!("captures/{name}")))?;
            // A capture across many pods carries only its first targets: page through the rest.
            if capture["status"]["targetsOmitted"].as_u64().unwrap_or(0) > 0 {
                capture["status"]["targets"] = Value::Array(all_targets(c, &name)?);
            }
            // Files and share links need the packets permission; shown when allowed.
            let files = c
                .get(&c.ns_path(&format!("captures/{name}/files")))
                .ok()
                .and_then(|v| v["items"].as_array().cloned());
            let shares = c
                .get(&c.ns_path(&format!("captures/{name}/shares")))
                .ok()
                .and_then(|v| v["items"].as_array().cloned());
            print!(
                "{}",
                render::describe_capture(&capture, files.as_deref(), shares.as_deref(), Utc::now())
            );
        }
        Command::Stop { name } => {
            c.json("POST", &c.ns_path(&format!("captures/{name}/stop")), None)?;
            println!("packetcapture.podcap.io/{name} stopped");
        }
        Command::Delete { names } => {
            for name in names {
                c.json("DELETE", &c.ns_path(&format!("captures/{name}")), None)?;
                println!("packetcapture.podcap.io/{name} deleted");
            }
        }
        Command::Download {
            name,
            output,
            format,
            file,
        } => download(c, &name, output, format, file.as_deref())?,
        Command::Live {
            selection,
            duration,
            wireshark,
        } => live(c, &selection, &duration, wireshark)?,
        Command::Complete { .. } => {
            let mut stdout = std::io::stdout().lock();
            for item in c.list_all(&c.ns_path("captures"))? {
                if let Some(name) = item["metadata"]["name"].as_str() {
                    writeln!(stdout, "{name}")?;
                }
            }
        }
        Command::Share { name, expires } => {
            let share = c.json(
                "POST",
                &c.ns_path(&format!("captures/{name}/shares")),
                Some(&json!({"expiresIn": expires})),
            )?;
            let url = share["url"].as_str().unwrap_or("");
            // The API names itself by the Host it was asked with; through a port-forward that
            // is a local port, so show the path on the server the user asked for.
            let url = match url.find("/share/") {
                Some(at) => format!("{}{}", c.conn.base, &url[at..]),
                None => url.to_string(),
            };
            println!("{url}");
            eprintln!(
                "share {} of {name}: expires {}",
                share["id"].as_str().unwrap_or(""),
                share["expiresAt"].as_str().unwrap_or("")
            );
        }
        Command::Shares { name } => {
            let shares = c.get(&c.ns_path(&format!("captures/{name}/shares")))?;
            let items = shares["items"].as_array().cloned().unwrap_or_default();
            print!("{}", render::shares_table(&items));
        }
        Command::Revoke { name, id } => {
            c.json(
                "DELETE",
                &c.ns_path(&format!("captures/{name}/shares/{id}")),
                None,
            )?;
            println!("share {id} of {name} revoked");
        }
        Command::Schedule {
            name,
            cron,
            tz,
            selection,
            duration,
            output,
        } => {
            let mut template = spec_of(&selection)?;
            template["duration"] = json!(duration);
            let mut spec = json!({"schedule": cron, "template": template});
            if let Some(tz) = tz {
                spec["timeZone"] = json!(tz);
            }
            let created = c.json(
                "POST",
                &c.ns_path("schedules"),
                Some(&json!({"metadata": {"name": name}, "spec": spec})),
            )?;
            match output {
                Some(Output::Json | Output::Yaml) => print_object(&created, output)?,
                _ => println!(
                    "packetcaptureschedule.podcap.io/{name} created (next run {})",
                    created["status"]["nextScheduleTime"]
                        .as_str()
                        .unwrap_or("<none>")
                ),
            }
        }
        Command::Schedules { output } => {
            let items = c.list_all(&c.ns_path("schedules"))?;
            match output {
                Some(Output::Json | Output::Yaml) => {
                    print_object(&json!({"items": items}), output)?
                }
                _ => print!("{}", render::schedules_table(&items, Utc::now())),
            }
        }
        Command::Suspend { name } => set_suspend(c, &name, true)?,
        Command::Resume { name } => set_suspend(c, &name, false)?,
        Command::Unschedule { name } => {
            c.json("DELETE", &c.ns_path(&format!("schedules/{name}")), None)?;
            println!("packetcaptureschedule.podcap.io/{name} deleted");
        }
        Command::Completion { .. } => unreachable!("handled in main"),
    }
    Ok(())
}

/// The spec fields shared by `capture`, `live` and `schedule`.
fn spec_of(selection: &Selection) -> Result<Value> {
    let mut spec = json!({});
    if let Some(text) = &selection.selector {
        let selector: LabelSelector = text
            .trim()
            .parse()
            .map_err(|e| anyhow!("bad selector -l {text:?}: {e}"))?;
        spec["podSelector"] = serde_json::to_value(selector)?;
    }
    if !selection.filters.is_empty() {
        let filter =
            Filter::parse_cli(&selection.filters).map_err(|e| anyhow!("bad --filter: {e}"))?;
        spec["filters"] = serde_json::to_value(filter)?;
    }
    if let Some(bpf) = &selection.bpf {
        spec["bpfFilter"] = json!(bpf);
    }
    if let Some(point) = selection.capture_point {
        spec["capturePoint"] = json!(capture_spec::CapturePoint::from(point).api_name());
    }
    if let Some(size) = &selection.max_size {
        let bytes: bytesize::ByteSize = size
            .parse()
            .map_err(|e| anyhow!("bad --max-size {size:?}: {e} (write e.g. 500MiB or 1GB)"))?;
        spec["maxBytes"] = json!(bytes.as_u64());
    }
    Ok(spec)
}

/// An RFC 3339 time, or a duration from now (`10m`).
fn time_arg(flag: &str, text: &str) -> Result<String> {
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Ok(time.with_timezone(&Utc).to_rfc3339());
    }
    let length = humantime::parse_duration(text.trim_start_matches('+')).map_err(|_| {
        anyhow!("bad {flag} {text:?}: write an RFC 3339 time (2025-06-01T02:00:00Z) or a duration from now (10m)")
    })?;
    Ok((Utc::now() + chrono::Duration::from_std(length)?).to_rfc3339())
}

fn print_object(value: &Value, output: Option<Output>) -> Result<()> {
    match output {
        Some(Output::Yaml) => print!("{}", serde_norway::to_string(value)?),
        _ => println!("{}", serde_json::to_string_pretty(value)?),
    }
    Ok(())
}

fn is_terminal_phase(phase: &str) -> bool {
    matches!(phase, "Completed" | "Stopped" | "Failed")
}

fn get(c: &Client, name: Option<&str>, output: Option<Output>, watch: bool) -> Result<()> {
    let fetch = || -> Result<Vec<Value>, ApiError> {
        match name {
            Some(name) => Ok(vec![c.get(&c.ns_path(&format!("captures/{name}")))?]),
            None => c.list_all(&c.ns_path("captures")),
        }
    };
    let items = fetch()?;
    let wide = output == Some(Output::Wide);
    match output {
        Some(Output::Json | Output::Yaml) if !watch => {
            let value = match name {
                Some(_) => items[0].clone(),
                None => json!({"apiVersion": "v1", "kind": "List", "items": items}),
            };
            return print_object(&value, output);
        }
        Some(Output::Name) => {
            for item in &items {
                println!(
                    "packetcapture.podcap.io/{}",
                    item["metadata"]["name"].as_str().unwrap_or("")
                );
            }
            return Ok(());
        }
        _ => {}
    }
    let header = if wide {
        render::CAPTURE_HEADER_WIDE
    } else {
        render::CAPTURE_HEADER
    };
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|i| render::capture_row(i, wide, Utc::now()))
        .collect();
    if rows.is_empty() && !watch {
        eprintln!("No captures found in {} namespace.", c.conn.namespace);
        return Ok(());
    }
    let text = render::table(header, &rows);
    print!("{text}");
    if !watch {
        return Ok(());
    }
    // Widths are fixed by the first table; later rows are printed only when they change.
    let widths: Vec<usize> = text
        .lines()
        .next()
        .map(|h| column_starts(h, header))
        .unwrap_or_default();
    let key = |v: &Value| {
        let s = &v["status"];
        format!(
            "{}|{}|{}|{}",
            s["phase"], s["packets"], s["drops"], s["pods"]
        )
    };
    let mut seen: std::collections::HashMap<String, String> = items
        .iter()
        .map(|i| (i["metadata"]["name"].to_string(), key(i)))
        .collect();
    let mut stdout = std::io::stdout();
    stdout.flush()?;
    loop {
        if let (Some(_), Some(item)) = (name, items.first()) {
            if is_terminal_phase(item["status"]["phase"].as_str().unwrap_or("")) {
                return Ok(());
            }
        }
        std::thread::sleep(Duration::from_secs(1));
        let now = fetch()?;
        for item in &now {
            let id = item["metadata"]["name"].to_string();
            let k = key(item);
            if seen.get(&id) != Some(&k) {
                let row = render::capture_row(item, wide, Utc::now());
                writeln!(stdout, "{}", aligned(&row, &widths))?;
                stdout.flush()?;
                seen.insert(id, k);
            }
            if name.is_some() && is_terminal_phase(item["status"]["phase"].as_str().unwrap_or("")) {
                return Ok(());
            }
        }
    }
}

fn column_starts(header_line: &str, header: &[&str]) -> Vec<usize> {
    header
        .iter()
        .map(|h| header_line.find(h).unwrap_or(0))
        .collect()
}

fn aligned(row: &[String], starts: &[usize]) -> String {
    let mut line = String::new();
    for (i, cell) in row.iter().enumerate() {
        let start = starts.get(i).copied().unwrap_or(line.len());
        if line.len() < start {
            line.push_str(&" ".repeat(start - line.len()));
        } else if i > 0 {
            line.push(' ');
        }
        line.push_str(cell);
    }
    line
}

/// Polls until the capture ends; progress on stderr. Fails when it failed.
fn wait_for_end(c: &Client, name: &str) -> Result<()> {
    let tty = std::io::stderr().is_terminal();
    let mut last = String::new();
    loop {
        let capture = c.get(&c.ns_path(&format!("captures/{name}")))?;
        let s = &capture["status"];
        let phase = s["phase"].as_str().unwrap_or("Pending").to_string();
        let [pods, packets, size, drops] = render::totals(s);
        let line = format!(
            "{name}: {phase}, {pods} pods, {packets} packets, {}, {drops} drops",
            render::bytes(size)
        );
        if line != last {
            if tty {
                eprint!("\r\x1b[2K{line}");
            } else {
                eprintln!("{line}");
            }
            last = line;
        }
        if is_terminal_phase(&phase) {
            if tty {
                eprintln!();
            }
            if phase == "Failed" {
                bail!(
                    "capture {name} failed: {}",
                    s["message"].as_str().unwrap_or("no message")
                );
            }
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Progress on stderr (bytes, rate, ETA) when stderr is a terminal.
struct Progress {
    enabled: bool,
    started: Instant,
    shown: Instant,
    total: Option<u64>,
    done: u64,
}

impl Progress {
    fn new(total: Option<u64>, done: u64) -> Progress {
        Progress {
            enabled: std::io::stderr().is_terminal(),
            started: Instant::now(),
            shown: Instant::now(),
            total,
            done,
        }
    }

    fn add(&mut self, n: u64, force: bool) {
        self.done += n;
        if !self.enabled || (!force && self.shown.elapsed() < Duration::from_millis(200)) {
            return;
        }
        self.shown = Instant::now();
        let secs = self.started.elapsed().as_secs_f64().max(0.001);
        let rate = self.done as f64 / secs;
        let mut line = format!(
            "{}  {}/s",
            render::bytes(self.done),
            render::bytes(rate as u64)
        );
        if let Some(total) = self.total {
            let left = total.saturating_sub(self.done) as f64 / rate.max(1.0);
            line = format!(
                "{} of {}  {}/s  ETA {}s",
                render::bytes(self.done),
                render::bytes(total),
                render::bytes(rate as u64),
                left.ceil() as u64
            );
        }
        eprint!("\r\x1b[2K{line}");
    }

    fn finish(&mut self) {
        if self.enabled {
            self.add(0, true);
            eprintln!();
        }
    }
}

fn copy_with_progress(
    reader: &mut dyn Read,
    writer: &mut dyn Write,
    progress: &mut Progress,
) -> std::io::Result<u64> {
    let mut buffer = vec![0u8; 64 * 1024];
    let mut total = 0;
    loop {
        let n = match reader.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        writer.write_all(&buffer[..n])?;
        total += n as u64;
        progress.add(n as u64, false);
    }
    writer.flush()?;
    Ok(total)
}

fn download(
    c: &Client,
    name: &str,
    output: Option<PathBuf>,
    format: Format,
    file: Option<&str>,
) -> Result<()> {
    let extension = match format {
        Format::Pcapng => "pcapng",
        Format::Pcap => "pcap",
    };
    let to_stdout = output.as_deref() == Some(Path::new("-"));
    let (path, range_from) = match file {
        Some(id) => {
            let path = output.unwrap_or_else(|| PathBuf::from(id));
            (
                c.ns_path(&format!("captures/{name}/files/{id}")),
                Some(path),
            )
        }
        None => {
            let path = output.unwrap_or_else(|| PathBuf::from(format!("{name}.{extension}")));
            (
                c.ns_path(&format!("captures/{name}/pcap?format={extension}")),
                Some(path),
            )
        }
    };
    let target = range_from.expect("a target path");
    if to_stdout {
        let mut response = c.send("GET", &path, None, &[])?;
        let mut progress = Progress::new(None, 0);
        let mut reader = response.body_mut().as_reader();
        copy_with_progress(&mut reader, &mut std::io::stdout().lock(), &mut progress)
            .context("downloading")?;
        progress.finish();
        return Ok(());
    }
    // Into TARGET.part, renamed when whole. An interrupted download keeps TARGET.part and, when
    // the API named the content (a strong ETag, else Last-Modified), TARGET.part.validator; the
    // next run asks for the rest with `Range: bytes=N-` and `If-Range: VALIDATOR`. A 206 from
    // byte N is appended; anything else (a 200: no Range support on this download, or the
    // content changed) starts the file again. Both the merged download and one file resume.
    let part = PathBuf::from(format!("{}.part", target.display()));
    let validator_file = PathBuf::from(format!("{}.validator", part.display()));
    let mut have = std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
    let validator = match have {
        0 => None,
        _ => std::fs::read_to_string(&validator_file)
            .ok()
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty()),
    };
    let mut response = loop {
        let mut headers = Vec::new();
        if have > 0 {
            headers.push(("Range", format!("bytes={have}-")));
            if let Some(validator) = &validator {
                headers.push(("If-Range", validator.clone()));
            }
        }
        match c.send("GET", &path, None, &headers) {
            // One file's .part is already whole.
            Err(ApiError::Problem(p)) if p.status == 416 && have > 0 && file.is_some() => {
                std::fs::rename(&part, &target)?;
                let _ = std::fs::remove_file(&validator_file);
                eprintln!("{} already complete", target.display());
                return Ok(());
            }
            // The merged file changed or is shorter than the .part: start again.
            Err(ApiError::Problem(p)) if p.status == 416 && have > 0 => have = 0,
            Err(e) => return Err(e.into()),
            Ok(response) => {
                let status = response.status().as_u16();
                let from = response
                    .headers()
                    .get("content-range")
                    .and_then(|v| v.to_str().ok())
                    .and_then(range_start);
                // A 206 that does not start where the .part ends cannot be appended.
                if status == 206 && from != Some(have) {
                    have = 0;
                    continue;
                }
                break response;
            }
        }
    };
    let resumed = have > 0 && response.status().as_u16() == 206;
    let length = response
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let mut out = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(resumed)
        .truncate(!resumed)
        .open(&part)
        .with_context(|| format!("cannot write {}", part.display()))?;
    if resumed {
        eprintln!("resuming {} at {}", target.display(), render::bytes(have));
    } else {
        if have > 0 {
            eprintln!(
                "{} cannot be resumed (the API sent the whole file); starting again",
                part.display()
            );
        }
        match validator_of(&response) {
            Some(v) => std::fs::write(&validator_file, v)
                .with_context(|| format!("cannot write {}", validator_file.display()))?,
            None => {
                let _ = std::fs::remove_file(&validator_file);
            }
        }
    }
    let start = if resumed { have } else { 0 };
    let mut progress = Progress::new(length.map(|l| l + start), start);
    let mut reader = response.body_mut().as_reader();
    let written = copy_with_progress(&mut reader, &mut out, &mut progress)
        .with_context(|| format!("download interrupted; {} kept", part.display()))?;
    progress.finish();
    drop(out);
    std::fs::rename(&part, &target)?;
    let _ = std::fs::remove_file(&validator_file);
    eprintln!("{} ({})", target.display(), render::bytes(written + start));
    Ok(())
}

/// `N` of a `Content-Range: bytes N-M/LEN`.
fn range_start(value: &str) -> Option<u64> {
    let range = value.trim().strip_prefix("bytes")?.trim_start();
    range.split('-').next()?.trim().parse().ok()
}

/// What `If-Range` may carry: a strong ETag, else Last-Modified.
fn validator_of(response: &crate::api::Response) -> Option<String> {
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    header("etag")
        .filter(|etag| !etag.starts_with("W/"))
        .or_else(|| header("last-modified"))
}

/// An executable on PATH.
fn on_path(program: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| {
            std::fs::metadata(candidate)
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
}

fn live(c: &Client, selection: &Selection, duration: &str, wireshark: bool) -> Result<()> {
    // Found before anything is created, so a missing Wireshark leaves no capture behind.
    let wireshark = match wireshark {
        true => Some(on_path("wireshark").ok_or_else(|| {
            anyhow!(
                "--wireshark: no `wireshark` on PATH; install Wireshark (e.g. `apt install \
                 wireshark`), or pipe the stream yourself: `... live ... | wireshark -k -i -`"
            )
        })?),
        false => None,
    };
    let mut spec = spec_of(selection)?;
    spec["duration"] = json!(duration);
    let created = c.json(
        "POST",
        &c.ns_path("captures"),
        Some(&json!({"metadata": {"name": live_name()}, "spec": spec})),
    )?;
    let name = created["metadata"]["name"]
        .as_str()
        .ok_or_else(|| anyhow!("the API created a capture without a name"))?
        .to_string();
    eprintln!("live capture {name} (deleted when the stream ends or on Ctrl-C)");
    // Stop and delete once, whichever comes first: the stream's end or a signal.
    let cleaned = Arc::new(Mutex::new(false));
    let cleanup = {
        let client = c.clone();
        let name = name.clone();
        let cleaned = cleaned.clone();
        move || {
            let Ok(mut done) = cleaned.lock() else { return };
            if *done {
                return;
            }
            let _ = client.json(
                "POST",
                &client.ns_path(&format!("captures/{name}/stop")),
                None,
            );
            if let Err(e) =
                client.json("DELETE", &client.ns_path(&format!("captures/{name}")), None)
            {
                eprintln!("warning: could not delete live capture {name}: {e}");
            }
            *done = true;
        }
    };
    let cleanup = Arc::new(cleanup);
    {
        let cleanup = cleanup.clone();
        let mut signals = signal_hook::iterator::Signals::new([
            signal_hook::consts::SIGINT,
            signal_hook::consts::SIGTERM,
            signal_hook::consts::SIGHUP,
        ])?;
        std::thread::spawn(move || {
            if signals.forever().next().is_some() {
                cleanup();
                std::process::exit(130);
            }
        });
    }
    let result = match wireshark {
        None => stream_live(c, &name, &mut std::io::stdout().lock()),
        Some(program) => {
            let mut child = std::process::Command::new(&program)
                .args(["-k", "-i", "-"])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::null())
                .spawn()
                .with_context(|| format!("cannot start {}", program.display()));
            match &mut child {
                Ok(child) => {
                    let mut stdin = child.stdin.take().expect("piped stdin");
                    let result = stream_live(c, &name, &mut stdin);
                    // End of stream: Wireshark keeps what it has until the user closes it.
                    drop(stdin);
                    cleanup();
                    eprintln!("live capture {name} ended; close Wireshark when done");
                    let _ = child.wait();
                    result
                }
                Err(_) => child.map(|_| ()),
            }
        }
    };
    cleanup();
    result
}

/// `live-` and 8 hex digits from the clock and the process id.
fn live_name() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let mixed = (nanos as u64) ^ (u64::from(std::process::id()) << 32);
    format!("live-{:08x}", (mixed ^ (mixed >> 29)) as u32)
}

fn stream_live(c: &Client, name: &str, out: &mut dyn Write) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let capture = c.get(&c.ns_path(&format!("captures/{name}")))?;
        match capture["status"]["phase"].as_str().unwrap_or("") {
            "Capturing" => break,
            "Failed" => bail!(
                "live capture {name} failed: {}",
                capture["status"]["message"]
                    .as_str()
                    .unwrap_or("no message")
            ),
            "Completed" | "Stopped" => bail!("live capture {name} ended before it streamed"),
            _ => {}
        }
        if Instant::now() > deadline {
            bail!("live capture {name} did not start capturing within 60s");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let mut response = c.send(
        "GET",
        &c.ns_path(&format!("captures/{name}/live")),
        None,
        &[],
    )?;
    let mut reader = response.body_mut().as_reader();
    let mut progress = Progress::new(None, 0);
    progress.enabled = false;
    match copy_with_progress(&mut reader, out, &mut progress) {
        Ok(_) => Ok(()),
        // The reader (wireshark, tshark) went away: that ends the stream too.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(e).context("live stream"),
    }
}

fn set_suspend(c: &Client, name: &str, suspend: bool) -> Result<()> {
    let path = c.ns_path(&format!("schedules/{name}"));
    let mut schedule = c.get(&path)?;
    schedule["spec"]["suspend"] = json!(suspend);
    c.json("PUT", &path, Some(&schedule))?;
    println!(
        "packetcaptureschedule.podcap.io/{name} {}",
        if suspend { "suspended" } else { "resumed" }
    );
    Ok(())
}

/// Every target of capture `name`, through `GET .../targets` a page (1000) at a time.
fn all_targets(c: &Client, name: &str) -> Result<Vec<Value>> {
    let mut targets = Vec::new();
    let mut next: Option<String> = None;
    loop {
        let mut path = c.ns_path(&format!("captures/{name}/targets?limit=1000"));
        if let Some(token) = &next {
            // Tokens are hex: nothing to escape.
            path.push_str(&format!("&continue={token}"));
        }
        let page = c.get(&path)?;
        targets.extend(page["items"].as_array().cloned().unwrap_or_default());
        next = page["metadata"]["continue"].as_str().map(str::to_string);
        if next.is_none() {
            return Ok(targets);
        }
    }
}
