//! tshark and capinfos as independent judges of the files: Wireshark's readers are what
//! operators open captures with, so a file they warn about is a broken file.

use std::path::Path;
use std::process::Command;

fn tool(program: &str, args: &[&str], file: &Path) -> std::process::Output {
    Command::new(program)
        .args(args)
        .arg(file)
        .env("LC_ALL", "C")
        .output()
        .unwrap_or_else(|e| panic!("starting {program}: {e}"))
}

/// tshark's stderr without the note it prints for every run as root.
fn tshark_stderr(stderr: &[u8]) -> String {
    String::from_utf8_lossy(stderr)
        .lines()
        .filter(|l| !l.contains("Running as user \"root\""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `tshark -r FILE` must exit 0 and print nothing on stderr (no "cut short", no "appears to be
/// damaged", no unknown-block warnings). Returns the number of frames it lists.
pub fn assert_tshark_reads_cleanly(file: &Path) -> usize {
    let out = Command::new("tshark")
        .arg("-n")
        .arg("-r")
        .arg(file)
        .env("LC_ALL", "C")
        .output()
        .unwrap_or_else(|e| panic!("starting tshark: {e}"));
    let stderr = tshark_stderr(&out.stderr);
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "tshark -r {} failed or warned ({}):\n{stderr}",
        file.display(),
        out.status
    );
    String::from_utf8_lossy(&out.stdout).lines().count()
}

/// `tshark -r FILE [-Y FILTER] -T fields -e F...`: one Vec per frame, one String per field.
pub fn fields(file: &Path, display_filter: Option<&str>, names: &[&str]) -> Vec<Vec<String>> {
    let mut args = vec![
        "-n",
        "-T",
        "fields",
        "-E",
        "separator=\t",
        "-E",
        "occurrence=f",
    ];
    for name in names {
        args.extend(["-e", name]);
    }
    if let Some(filter) = display_filter {
        args.extend(["-Y", filter]);
    }
    args.push("-r");
    let out = tool("tshark", &args, file);
    let stderr = tshark_stderr(&out.stderr);
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "tshark {} {} failed or warned ({}):\n{stderr}",
        args.join(" "),
        file.display(),
        out.status
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|line| line.split('\t').map(str::to_string).collect())
        .collect()
}

/// The 0-based indexes (file order) of the frames of FILE that match a display filter.
pub fn matching_indexes(file: &Path, display_filter: &str) -> Vec<usize> {
    fields(file, Some(display_filter), &["frame.number"])
        .into_iter()
        .map(|row| {
            row[0]
                .parse::<usize>()
                .unwrap_or_else(|e| panic!("frame.number {:?}: {e}", row[0]))
                - 1
        })
        .collect()
}

/// Number of frames of FILE that match a display filter.
pub fn count_matching(file: &Path, display_filter: &str) -> usize {
    matching_indexes(file, display_filter).len()
}

/// `frame.time_epoch` of every frame as nanoseconds since the epoch, parsed from tshark's
/// decimal text without going through floating point.
pub fn epoch_ns(file: &Path) -> Vec<u64> {
    fields(file, None, &["frame.time_epoch"])
        .into_iter()
        .map(|row| {
            let text = &row[0];
            let (seconds, fraction) = text.split_once('.').unwrap_or((text, ""));
            let fraction = format!("{fraction:0<9}");
            seconds.parse::<u64>().unwrap() * 1_000_000_000 + fraction[..9].parse::<u64>().unwrap()
        })
        .collect()
}

/// `capinfos` output for a file, asserting that capinfos had no complaint.
pub fn capinfos(file: &Path) -> String {
    let out = tool("capinfos", &[], file);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        out.status.success() && stderr.trim().is_empty(),
        "capinfos {} failed ({}):\n{stderr}",
        file.display(),
        out.status
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The value of one `Name: value` line of capinfos output.
pub fn capinfos_value<'a>(report: &'a str, name: &str) -> Option<&'a str> {
    report.lines().find_map(|l| {
        l.trim_start()
            .strip_prefix(name)?
            .trim_start()
            .strip_prefix(':')
            .map(str::trim)
    })
}

/// tshark reading a live pcapng stream (an HTTP body, a pipe) as it arrives, until it has seen a
/// number of frames or the stream ends: how an operator watches `…/live` in Wireshark.
pub struct LiveTshark {
    tshark: std::process::Child,
    relay: std::thread::JoinHandle<()>,
}

impl LiveTshark {
    /// Starts `tshark -r - -c FRAMES -T fields -e FIELD…` fed from `stream`. The relay copies
    /// chunk by chunk (flushing each), so tshark sees packets as they come.
    pub fn start(
        mut stream: impl std::io::Read + Send + 'static,
        frames: usize,
        fields: &[&str],
    ) -> LiveTshark {
        let mut args = vec![
            "-n".to_string(),
            "-r".into(),
            "-".into(),
            "-c".into(),
            frames.to_string(),
            "-T".into(),
            "fields".into(),
        ];
        for field in fields {
            args.push("-e".into());
            args.push(field.to_string());
        }
        let mut tshark = Command::new("tshark")
            .args(&args)
            .env("LC_ALL", "C")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting tshark: {e}"));
        let mut tshark_in = tshark.stdin.take().expect("a piped stdin");
        let relay = std::thread::spawn(move || {
            use std::io::Write;
            // Ends when tshark has its frames and closes its input, or the stream ends.
            let mut buffer = [0u8; 16 * 1024];
            while let Ok(n) = stream.read(&mut buffer) {
                if n == 0 || tshark_in.write_all(&buffer[..n]).is_err() {
                    break;
                }
                let _ = tshark_in.flush();
            }
        });
        LiveTshark { tshark, relay }
    }

    /// Waits for tshark to end; the rows it printed (the fields, split at tabs) and the relay,
    /// which ends with the stream (join it to see that it does).
    pub fn rows(self) -> (Vec<Vec<String>>, std::thread::JoinHandle<()>) {
        let output = self.tshark.wait_with_output().expect("tshark ran");
        let rows = String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(|line| line.split('\t').map(str::to_string).collect())
            .collect();
        (rows, self.relay)
    }
}
