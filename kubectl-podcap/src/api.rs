//! The REST client: one connection (base URL, bearer token, who the token is), JSON calls that
//! turn every error answer into a [`Problem`] a person can act on, and raw streams for downloads.

use std::fmt;
use std::io::Read;
use std::time::Duration;

use serde_json::Value;

/// Where the API is and who calls it.
#[derive(Debug, Clone)]
pub struct Connection {
    /// e.g. `http://127.0.0.1:8080` (no trailing slash): `/api/v1/...` is appended.
    pub base: String,
    pub token: Option<String>,
    /// Who the token is, for 401/403 messages: `token pcp_1234…` or `kubeconfig user alice`.
    pub identity: String,
    pub namespace: String,
    /// Through the API server's service proxy: the token also goes in `X-Podcap-Authorization`,
    /// since the API server strips `Authorization` before forwarding.
    pub via_proxy: bool,
    /// Root CAs for an `https` base (the kubeconfig's); the system's when `None`.
    pub ca_pem: Option<Vec<u8>>,
    pub insecure: bool,
}

/// An RFC 7807 problem as the API sent it (or as close as the answer allows).
#[derive(Debug, Clone)]
pub struct Problem {
    pub status: u16,
    pub title: String,
    pub detail: String,
    pub fields: Vec<(String, String)>,
    pub identity: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.status {
            401 => write!(
                f,
                "not authenticated as {} ({} {}): {}",
                self.identity, self.status, self.title, self.detail
            )?,
            403 => write!(
                f,
                "{} may not do this ({} {}): {}",
                self.identity, self.status, self.title, self.detail
            )?,
            _ => write!(f, "{} ({} {})", self.detail, self.status, self.title)?,
        }
        for (name, reason) in &self.fields {
            write!(f, "\n  {name}: {reason}")?;
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    Problem(Box<Problem>),
    #[error("cannot reach the podcap API at {url}: {source}")]
    Transport {
        url: String,
        #[source]
        source: ureq::Error,
    },
    #[error("the podcap API answered {request} with something that is not JSON: {reason}")]
    NotJson { request: String, reason: String },
}

pub type Response = ureq::http::Response<ureq::Body>;

#[derive(Clone)]
pub struct Client {
    pub conn: Connection,
    agent: ureq::Agent,
}

impl Client {
    pub fn new(conn: Connection) -> Result<Client, ApiError> {
        let mut tls = ureq::tls::TlsConfig::builder().disable_verification(conn.insecure);
        if let Some(pem) = &conn.ca_pem {
            let certs = ureq::tls::parse_pem(pem)
                .filter_map(|item| match item {
                    Ok(ureq::tls::PemItem::Certificate(cert)) => Some(Ok(cert)),
                    Ok(_) => None,
                    Err(e) => Some(Err(e)),
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(|source| ApiError::Transport {
                    url: conn.base.clone(),
                    source,
                })?;
            tls = tls.root_certs(ureq::tls::RootCerts::new_with_certs(&certs));
        }
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(10)))
            .tls_config(tls.build())
            .build()
            .into();
        Ok(Client { conn, agent })
    }

    /// `/api/v1/namespaces/NS/` + `rest`.
    pub fn ns_path(&self, rest: &str) -> String {
        format!("/api/v1/namespaces/{}/{rest}", self.conn.namespace)
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.conn.base)
    }

    fn auth(&self) -> Option<String> {
        self.conn.token.as_ref().map(|t| format!("Bearer {t}"))
    }

    /// Sends a request; any status of 400 or more becomes a [`Problem`].
    pub fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, String)],
    ) -> Result<Response, ApiError> {
        let url = self.url(path);
        let mut builder = ureq::http::Request::builder().method(method).uri(&url);
        if let Some(auth) = self.auth() {
            if self.conn.via_proxy {
                // The API server authenticates `Authorization` for the proxy and strips it; this
                // copy reaches capture-api (see kubeconfig.rs).
                builder = builder.header("X-Podcap-Authorization", auth.clone());
            }
            builder = builder.header("Authorization", auth);
        }
        for (name, value) in headers {
            builder = builder.header(*name, value);
        }
        let transport = |source| ApiError::Transport {
            url: self.conn.base.clone(),
            source,
        };
        let result = match body {
            Some(body) => {
                let text = serde_json::to_vec(body).unwrap_or_default();
                let request = builder
                    .header("Content-Type", "application/json")
                    .body(text)
                    .map_err(|e| transport(ureq::Error::Http(e)))?;
                self.agent.run(request)
            }
            None => {
                let request = builder
                    .body(())
                    .map_err(|e| transport(ureq::Error::Http(e)))?;
                self.agent.run(request)
            }
        };
        let response = result.map_err(transport)?;
        if response.status().as_u16() >= 400 {
            return Err(self.problem(method, path, response));
        }
        Ok(response)
    }

    fn problem(&self, method: &str, path: &str, mut response: Response) -> ApiError {
        let status = response.status().as_u16();
        let mut text = String::new();
        let _ = response
            .body_mut()
            .as_reader()
            .take(1 << 20)
            .read_to_string(&mut text);
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let field = |name: &str| value.get(name).and_then(Value::as_str).map(str::to_string);
        let reason = response
            .status()
            .canonical_reason()
            .unwrap_or("error")
            .to_string();
        // A Kubernetes Status (the API server's own refusal, e.g. no `get services/proxy`) says
        // it in `message`.
        let detail = field("detail")
            .or_else(|| field("message"))
            .unwrap_or_else(|| {
                let text = text.trim();
                if text.is_empty() {
                    format!("{method} {path} failed")
                } else {
                    text.chars().take(500).collect()
                }
            });
        let fields = value
            .get("invalidParams")
            .and_then(Value::as_array)
            .map(|params| {
                params
                    .iter()
                    .map(|p| {
                        (
                            p["name"].as_str().unwrap_or("?").to_string(),
                            p["reason"].as_str().unwrap_or("").to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        ApiError::Problem(Box::new(Problem {
            status,
            title: field("title").unwrap_or(reason),
            detail,
            fields,
            identity: self.conn.identity.clone(),
        }))
    }

    pub fn json(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value, ApiError> {
        let mut response = self.send(method, path, body, &[])?;
        let mut text = String::new();
        response
            .body_mut()
            .as_reader()
            .read_to_string(&mut text)
            .map_err(|e| ApiError::NotJson {
                request: format!("{method} {path}"),
                reason: e.to_string(),
            })?;
        if text.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text).map_err(|e| ApiError::NotJson {
            request: format!("{method} {path}"),
            reason: e.to_string(),
        })
    }

    pub fn get(&self, path: &str) -> Result<Value, ApiError> {
        self.json("GET", path, None)
    }

    /// Every item of a paged list (`?limit=&continue=`).
    pub fn list_all(&self, path: &str) -> Result<Vec<Value>, ApiError> {
        let mut items = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let page_path = match &next {
                Some(token) => format!("{path}?continue={token}"),
                None => path.to_string(),
            };
            let page = self.get(&page_path)?;
            if let Some(page_items) = page["items"].as_array() {
                items.extend(page_items.iter().cloned());
            }
            match page["metadata"]["continue"].as_str() {
                Some(token) if !token.is_empty() => next = Some(token.to_string()),
                _ => return Ok(items),
            }
        }
    }
}

/// Describes a token without showing it: its first characters.
pub fn token_identity(token: &str) -> String {
    let shown: String = token.chars().take(8).collect();
    format!("token {shown}…")
}
