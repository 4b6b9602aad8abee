//! HTTPS for the API (`--tls-cert FILE --tls-key FILE`): packet data must never cross a network
//! in clear, so the API serves TLS itself instead of relying on something in front of it.
//!
//! The certificate chain and the private key are PEM files, read at start and then looked at
//! every [`RELOAD_CHECK`]: when their contents change (a renewed certificate, a Kubernetes
//! Secret volume that swapped its files), the new pair is loaded and serves every connection
//! from then on, without a restart. A new pair that does not load (a half-written file, a key
//! that does not match) is refused with a log line saying why, and the old pair keeps serving:
//! a bad renewal never takes the API down. rustls with the `ring` provider, like the rest of the
//! workspace; HTTP/2 and HTTP/1.1 are offered by ALPN.

use std::path::{Path, PathBuf};
use std::time::Duration;

use axum_server::tls_rustls::RustlsConfig;
use thiserror::Error;

/// How often the certificate files are read to see whether they changed.
pub const RELOAD_CHECK: Duration = Duration::from_secs(2);

/// Where the API's certificate chain and private key are.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Error)]
pub enum TlsError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the certificate {cert} and key {key} do not make a TLS configuration: {source}; both must be PEM, the key unencrypted (PKCS#8, PKCS#1 or SEC1) and matching the first certificate")]
    Invalid {
        cert: PathBuf,
        key: PathBuf,
        source: std::io::Error,
    },
}

/// The bytes of both files, to notice a change.
#[derive(PartialEq, Eq)]
struct Pair {
    cert: Vec<u8>,
    key: Vec<u8>,
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_path_buf(),
        source,
    })
}

impl TlsFiles {
    fn read(&self) -> Result<Pair, TlsError> {
        Ok(Pair {
            cert: read(&self.cert)?,
            key: read(&self.key)?,
        })
    }

    fn invalid(&self, source: std::io::Error) -> TlsError {
        TlsError::Invalid {
            cert: self.cert.clone(),
            key: self.key.clone(),
            source,
        }
    }

    /// Loads the pair and starts watching the files on the current tokio runtime (until it
    /// ends, with the server).
    pub async fn load_and_watch(self) -> Result<RustlsConfig, TlsError> {
        let pair = self.read()?;
        let config = RustlsConfig::from_pem(pair.cert.clone(), pair.key.clone())
            .await
            .map_err(|source| self.invalid(source))?;
        tokio::spawn(watch(self, pair, config.clone()));
        Ok(config)
    }
}

/// Reloads `config` whenever the files' contents differ from what was loaded last.
async fn watch(files: TlsFiles, mut loaded: Pair, config: RustlsConfig) {
    let mut refused: Option<Pair> = None;
    let mut ticks = tokio::time::interval(RELOAD_CHECK);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let pair = match files.read() {
            Ok(pair) => pair,
            Err(error) => {
                tracing::warn!(%error, "cannot read the TLS files; the loaded certificate keeps serving");
                continue;
            }
        };
        if pair == loaded || refused.as_ref() == Some(&pair) {
            continue;
        }
        match config
            .reload_from_pem(pair.cert.clone(), pair.key.clone())
            .await
        {
            Ok(()) => {
                tracing::info!(cert = %files.cert.display(), "TLS certificate reloaded");
                loaded = pair;
                refused = None;
            }
            Err(source) => {
                let error = files.invalid(source);
                tracing::warn!(%error, "the changed TLS files were not loaded; the previous certificate keeps serving");
                refused = Some(pair);
            }
        }
    }
}
