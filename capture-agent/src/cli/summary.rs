//! The end-of-capture summary: packets, bytes, kernel drops and files, for a person (text) or a
//! program (`--json`).

use std::io::Write;

use capture_agent::{CaptureReport, EndReason};
use serde_json::json;

fn end_text(end: &EndReason) -> String {
    match end {
        EndReason::Stopped => "stopped".into(),
        EndReason::Duration => "duration reached".into(),
        EndReason::PacketLimit => "packet limit reached".into(),
        EndReason::ByteLimit => "byte limit reached".into(),
        EndReason::InterfacesGone => "every interface was deleted".into(),
        EndReason::Failed(message) => format!("failed: {message}"),
    }
}

pub fn print(report: &CaptureReport, as_json: bool) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    if as_json {
        let value = json!({
            "end": end_text(&report.end),
            "packets": report.packets,
            "bytes": report.bytes,
            "drops": report.drops,
            "freezes": report.freezes,
            "interfaces": report.interfaces.iter().map(|i| json!({
                "name": i.name,
                "description": i.description,
                "packets": i.packets,
                "bytes": i.bytes,
                "kernelReceived": i.kernel_received,
                "drops": i.drops,
                "freezes": i.freezes,
                "gone": i.gone,
            })).collect::<Vec<_>>(),
            "files": report.files.iter().map(|f| json!({
                "path": f.path,
                "packets": f.packets,
                "bytes": f.bytes,
                "firstPacketNs": f.first_packet_ns,
                "lastPacketNs": f.last_packet_ns,
            })).collect::<Vec<_>>(),
            "deletedFiles": report.deleted_files,
        });
        writeln!(out, "{value}")?;
        return Ok(());
    }
    writeln!(
        out,
        "{} packets captured ({} bytes), {} dropped by kernel ({} ring freezes); {}",
        report.packets,
        report.bytes,
        report.drops,
        report.freezes,
        end_text(&report.end)
    )?;
    for i in &report.interfaces {
        writeln!(
            out,
            "  interface {}: {} packets, {} bytes, {} dropped by kernel",
            i.name, i.packets, i.bytes, i.drops
        )?;
    }
    for f in &report.files {
        writeln!(
            out,
            "  file {}: {} packets, {} bytes",
            f.path.display(),
            f.packets,
            f.bytes
        )?;
    }
    if report.deleted_files > 0 {
        writeln!(
            out,
            "  {} older files deleted to keep within --max-files",
            report.deleted_files
        )?;
    }
    Ok(())
}
