//! The config file for standalone use: `${XDG_CONFIG_HOME:-~/.config}/podcap/config.yaml` (or
//! the file `PODCAP_CONFIG` names), YAML read with serde_norway:
//!
//! ```yaml
//! server: http://127.0.0.1:8080
//! token_file: /path/to/podcap-data/admin-token   # or token: pcp_...
//! namespace: default                             # optional
//! ```
//!
//! Flags and environment (`--server`/`PODCAP_SERVER`, `--token`/`PODCAP_TOKEN`, `-n`) win over
//! it. A file holding a token (or a token file) that others may read is refused, naming the
//! chmod that fixes it.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub server: Option<String>,
    pub token: Option<String>,
    #[serde(alias = "tokenFile")]
    pub token_file: Option<PathBuf>,
    pub namespace: Option<String>,
}

/// Where the config file is looked for.
pub fn path() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("PODCAP_CONFIG").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(path));
    }
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("podcap").join("config.yaml"))
}

/// The config file, if there is one.
pub fn load() -> Result<Option<Config>> {
    let Some(path) = path() else { return Ok(None) };
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let config: Config = if text.trim().is_empty() {
        Config::default()
    } else {
        serde_norway::from_str(&text)
            .with_context(|| format!("bad config file {}", path.display()))?
    };
    if config.token.is_some() {
        private(&path, "holds a token")?;
    }
    Ok(Some(config))
}

/// The token of the config: `token`, else the first line of `token_file` (relative to the
/// config file's directory).
pub fn token(config: &Config) -> Result<Option<String>> {
    if let Some(token) = &config.token {
        return Ok(Some(token.trim().to_string()));
    }
    let Some(file) = &config.token_file else {
        return Ok(None);
    };
    let file = match (file.is_relative(), path()) {
        (true, Some(config_path)) => config_path
            .parent()
            .map(|dir| dir.join(file))
            .unwrap_or_else(|| file.clone()),
        _ => file.clone(),
    };
    private(&file, "is a token file")?;
    let text = std::fs::read_to_string(&file)
        .with_context(|| format!("cannot read token_file {}", file.display()))?;
    Ok(Some(text.lines().next().unwrap_or("").trim().to_string()))
}

/// Refuses a file everyone may read.
fn private(path: &Path, what: &str) -> Result<()> {
    let mode = std::fs::metadata(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .permissions()
        .mode();
    if mode & 0o004 != 0 {
        bail!(
            "{} {what} and is readable by everyone (mode {:o}): run `chmod 600 {}`",
            path.display(),
            mode & 0o777,
            path.display()
        );
    }
    Ok(())
}
