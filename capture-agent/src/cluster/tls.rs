//! TLS between the API and the node agents: packets leave a node only encrypted, and only to
//! an API that can check it reached the agent it meant to.
//!
//! The podcap agent CA is a key pair and a self-signed certificate kept in one Secret
//! ([`DEFAULT_CA_SECRET`] in the API's namespace, keys [`CA_CERT_KEY`] and [`CA_KEY_KEY`]).
//! capture-api makes it the first time it starts ([`AgentCa::ensure`]) and trusts nothing else
//! when it fetches files or live streams from an agent; the URL it dials must be named in the
//! agent's certificate (rustls checks the address against the certificate's names).
//! Each agent reads the Secret at start ([`AgentCa::fetch`], waiting until the API has made
//! it), makes a key of its own that never leaves the process and issues itself a certificate
//! for its node: the node's name and addresses and any `--tls-san`. It is valid for
//! [`CERT_LIFETIME`] and issued again every [`RENEW_EVERY`] while the agent runs.
//! The agent keeps checking the API's identity as before: the API's service-account token,
//! with a TokenReview (`auth`).
//!
//! Why agents hold the CA key rather than ask the API to sign: an agent must serve its files
//! when the API restarts or is rolled, so issuing cannot depend on the API being up; and the
//! agents are the privileged DaemonSet already trusted with every packet of their node. What it
//! costs: whoever can read the Secret (the agents' and the API's service accounts; RBAC names
//! the one Secret) can mint a certificate for any node's address. deploy/README says so.

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::ByteString;
use kube::api::{Api, PostParams};
use kube::Client;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// The CA Secret's name in the API's namespace.
pub const DEFAULT_CA_SECRET: &str = "podcap-agent-ca";
/// The CA certificate (PEM) in the Secret.
pub const CA_CERT_KEY: &str = "ca.crt";
/// The CA's private key (PEM) in the Secret.
pub const CA_KEY_KEY: &str = "ca.key";
/// How long the CA is valid; no rotation yet: delete the Secret and restart the API, then the
/// agents, to make a new one.
const CA_LIFETIME: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// How long an agent's certificate is valid.
pub const CERT_LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);
/// How often a running agent issues itself a new certificate.
pub const RENEW_EVERY: Duration = Duration::from_secs(24 * 3600);
/// Certificates start this long before now, for clocks a little behind.
const CLOCK_SKEW: Duration = Duration::from_secs(5 * 60);

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot make a key or certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("the CA Secret {secret} does not exist yet: capture-api makes it when it starts")]
    Missing { secret: String },
    #[error(
        "the CA Secret {secret} lacks {key}: delete it and restart capture-api to make a new one"
    )]
    Incomplete { secret: String, key: &'static str },
    #[error("cannot read or write the CA Secret {secret}: {source}")]
    Kubernetes {
        secret: String,
        #[source]
        source: kube::Error,
    },
    #[error("the TLS configuration is invalid: {0}")]
    Config(#[source] std::io::Error),
}

/// The podcap agent CA: its certificate, and its key when it may issue.
#[derive(Clone)]
pub struct AgentCa {
    cert_pem: String,
    key_pem: String,
}

/// A certificate and its key, both PEM, for a TLS server.
pub struct ServerCert {
    pub cert_pem: String,
    pub key_pem: String,
}

/// What the CA certificate of `key` says about itself (its validity apart). Its name carries a
/// fingerprint of its key, so that two podcap CAs (another cluster's, or the one before a
/// rotation) never share a name: clients look issuers up by name, and one with the same name
/// but another key fails as a broken signature instead of as an unknown CA.
fn ca_params(key: &KeyPair) -> Result<CertificateParams, rcgen::Error> {
    use sha2::Digest;
    let fingerprint = hex::encode(&sha2::Sha256::digest(key.public_key_raw())[..6]);
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(DnType::CommonName, format!("podcap agent CA {fingerprint}"));
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    Ok(params)
}

fn validity(params: &mut CertificateParams, lifetime: Duration) {
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - CLOCK_SKEW;
    params.not_after = now + lifetime;
}

impl AgentCa {
    /// A new CA (ECDSA P-256).
    pub fn generate() -> Result<AgentCa, TlsError> {
        let key = KeyPair::generate()?;
        let mut params = ca_params(&key)?;
        validity(&mut params, CA_LIFETIME);
        let cert = params.self_signed(&key)?;
        Ok(AgentCa {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// The CA certificate (PEM): what a client trusts.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// A certificate for a server named by `names` (IP addresses or DNS names), signed by this
    /// CA, with a new key.
    pub fn issue(&self, names: &[String]) -> Result<ServerCert, TlsError> {
        let ca_key = KeyPair::from_pem(&self.key_pem)?;
        // The issuer's name and key identifier are what `generate` made; the Secret's
        // certificate is not parsed back.
        let issuer = Issuer::new(ca_params(&ca_key)?, ca_key);
        let key = KeyPair::generate()?;
        // rcgen makes an IP address SAN of each name that parses as one.
        let mut params = CertificateParams::new(names.to_vec())?;
        params.distinguished_name.push(
            DnType::CommonName,
            names.first().map(String::as_str).unwrap_or("podcap agent"),
        );
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        validity(&mut params, CERT_LIFETIME);
        let cert = params.signed_by(&key, &issuer)?;
        Ok(ServerCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// The Secret that keeps this CA as `namespace/name`.
    pub fn secret(&self, namespace: &str, name: &str) -> Secret {
        let bytes = |text: &str| ByteString(text.as_bytes().to_vec());
        Secret {
            metadata: kube::api::ObjectMeta {
                name: Some(name.to_string()),
                namespace: Some(namespace.to_string()),
                labels: Some(
                    [(
                        "app.kubernetes.io/part-of".to_string(),
                        "podcap".to_string(),
                    )]
                    .into(),
                ),
                ..Default::default()
            },
            type_: Some("Opaque".to_string()),
            data: Some(
                [
                    (CA_CERT_KEY.to_string(), bytes(&self.cert_pem)),
                    (CA_KEY_KEY.to_string(), bytes(&self.key_pem)),
                ]
                .into(),
            ),
            ..Default::default()
        }
    }

    /// The CA kept in `secret` (`name` says which, in errors).
    pub fn from_secret(secret: &Secret, name: &str) -> Result<AgentCa, TlsError> {
        let data = secret.data.clone().unwrap_or_default();
        let read = |key: &'static str| {
            data.get(key)
                .and_then(|bytes| String::from_utf8(bytes.0.clone()).ok())
                .ok_or(TlsError::Incomplete {
                    secret: name.to_string(),
                    key,
                })
        };
        Ok(AgentCa {
            cert_pem: read(CA_CERT_KEY)?,
            key_pem: read(CA_KEY_KEY)?,
        })
    }

    /// The CA of `namespace/name`, made and stored when the Secret does not exist (for the
    /// API, at start). Two APIs starting at once agree: the second's create fails with 409
    /// and it reads the first's.
    pub async fn ensure(client: &Client, namespace: &str, name: &str) -> Result<AgentCa, TlsError> {
        let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
        let label = format!("{namespace}/{name}");
        let failed = |source| TlsError::Kubernetes {
            secret: label.clone(),
            source,
        };
        if let Some(found) = secrets.get_opt(name).await.map_err(failed)? {
            return AgentCa::from_secret(&found, &label);
        }
        let ca = AgentCa::generate()?;
        let secret = ca.secret(namespace, name);
        match secrets.create(&PostParams::default(), &secret).await {
            Ok(_) => {
                tracing::info!(secret = %label, "made the podcap agent CA");
                Ok(ca)
            }
            Err(kube::Error::Api(status)) if status.code == 409 => {
                let found = secrets.get(name).await.map_err(failed)?;
                AgentCa::from_secret(&found, &label)
            }
            Err(error) => Err(failed(error)),
        }
    }

    /// The CA of `namespace/name` as stored (for the agents); [`TlsError::Missing`] until the
    /// API has made it.
    pub async fn fetch(client: &Client, namespace: &str, name: &str) -> Result<AgentCa, TlsError> {
        let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
        let label = format!("{namespace}/{name}");
        match secrets.get_opt(name).await {
            Ok(Some(found)) => AgentCa::from_secret(&found, &label),
            Ok(None) => Err(TlsError::Missing { secret: label }),
            Err(source) => Err(TlsError::Kubernetes {
                secret: label,
                source,
            }),
        }
    }
}

/// `namespace/name` of the CA Secret, as `--ca-secret` takes it.
pub fn parse_secret_ref(text: &str) -> Result<(String, String), String> {
    match text.split_once('/') {
        Some((namespace, name)) if !namespace.is_empty() && !name.is_empty() => {
            Ok((namespace.to_string(), name.to_string()))
        }
        _ => Err(format!(
            "{text:?} is not NAMESPACE/NAME, e.g. podcap-system/{DEFAULT_CA_SECRET}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_issued_certificate_names_the_node_and_chains_to_the_ca() {
        let ca = AgentCa::generate().unwrap();
        let issued = ca
            .issue(&["node-a".to_string(), "10.244.0.7".to_string()])
            .unwrap();
        assert!(issued.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(issued.key_pem.contains("PRIVATE KEY"));
        assert_ne!(issued.cert_pem, ca.cert_pem());
        // A second certificate has its own key.
        let again = ca.issue(&["node-a".to_string()]).unwrap();
        assert_ne!(again.key_pem, issued.key_pem);
    }

    #[test]
    fn the_secret_reference_is_namespace_slash_name() {
        assert_eq!(
            parse_secret_ref("podcap-system/podcap-agent-ca").unwrap(),
            ("podcap-system".to_string(), "podcap-agent-ca".to_string())
        );
        assert!(parse_secret_ref("podcap-agent-ca").is_err());
        assert!(parse_secret_ref("/x").is_err());
    }
}
