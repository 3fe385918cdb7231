//! A thin Proxmox VE API client: token auth, `{"data": ...}` envelopes, errors
//! carrying the HTTP status and Proxmox's message, bounded concurrency, a timeout per
//! request, retries with backoff for idempotent calls, and a breaker per node.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::header::{AUTHORIZATION, HeaderValue};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::breaker::Breakers;
use super::types::{LxcConfig, Resource, TaskStatus, upid_node};
use crate::config::proxmox::{Proxmox, Secret, Tls};
use crate::core::Timestamp;

/// What went wrong talking to Proxmox. Messages name the call; never the secret.
#[derive(Debug, thiserror::Error)]
pub enum ProxmoxError {
    #[error("{method} {path}: HTTP {status}: {message}")]
    Api {
        method: Method,
        path: String,
        status: u16,
        message: String,
    },
    #[error("{method} {path}: {source}")]
    Transport {
        method: Method,
        path: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("{method} {path}: no answer within {}", humantime::format_duration(*timeout))]
    Timeout {
        method: Method,
        path: String,
        timeout: Duration,
    },
    #[error("{method} {path}: unexpected response: {message}")]
    Decode {
        method: Method,
        path: String,
        message: String,
    },
    #[error("node {node}: circuit breaker open ({} left)", humantime::format_duration(*retry_in))]
    BreakerOpen { node: String, retry_in: Duration },
    #[error("task {upid}: {message}")]
    Task { upid: String, message: String },
    /// Not attempted, for a reason waiting cannot change (a `clone_ipv4` rule).
    #[error("{0}")]
    Refused(String),
    #[error("TLS setup: {0}")]
    Tls(String),
    #[error("token secret: {0}")]
    Secret(String),
    #[error("HTTP client setup: {0}")]
    Setup(String),
}

impl ProxmoxError {
    /// The HTTP status, if Proxmox answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether the node (not the request) failed: trips the breaker and is retried.
    pub fn is_node_failure(&self) -> bool {
        match self {
            Self::Transport { .. } | Self::Timeout { .. } => true,
            Self::Api { status, .. } => matches!(status, 502..=504 | 595..=599),
            _ => false,
        }
    }

    /// A `PUT config` refused because the digest no longer matches.
    pub fn is_digest_conflict(&self) -> bool {
        matches!(self, Self::Api { status: 500, message, .. } if message.contains("detected modified configuration"))
    }
}

/// Client settings (from `[proxmox]`, or built directly by tests and benchmarks).
#[derive(Debug, Clone)]
pub struct Options {
    /// `https://host:8006`; `/api2/json` is appended.
    pub url: String,
    pub token_id: String,
    pub max_concurrency: usize,
    pub request_timeout: Duration,
    pub retries: u32,
    /// First retry delay; doubles per retry.
    pub retry_base: Duration,
    pub breaker_failures: u32,
    pub breaker_open: Duration,
}

impl Options {
    pub fn from_config(c: &Proxmox) -> Self {
        Self {
            url: c.url.clone(),
            token_id: c.token_id.clone(),
            max_concurrency: c.max_concurrency,
            request_timeout: c.request_timeout,
            retries: c.retries,
            retry_base: Duration::from_millis(500),
            breaker_failures: c.breaker_failures,
            breaker_open: c.breaker_open,
        }
    }
}

/// Read the token secret from its file or environment variable.
pub fn read_secret(s: &Secret) -> Result<String, ProxmoxError> {
    let v = match s {
        Secret::File(p) => std::fs::read_to_string(p)
            .map_err(|e| ProxmoxError::Secret(format!("{}: {e}", p.display())))?,
        Secret::Env(var) => std::env::var(var)
            .map_err(|e| ProxmoxError::Secret(format!("environment variable {var}: {e}")))?,
    };
    let v = v.trim().to_string();
    if v.is_empty() {
        return Err(ProxmoxError::Secret("empty".into()));
    }
    Ok(v)
}

/// Told about every request and breaker change (the daemon's metrics).
pub trait Observer: Send + Sync {
    /// One request to `node` (`cluster` for cluster-wide paths) took `seconds`;
    /// `ok` if Proxmox answered it with success.
    fn request(&self, node: &str, seconds: f64, ok: bool);
    /// `node`'s breaker is now closed (0), half-open (1) or open (2).
    fn breaker(&self, node: &str, state: i64);
}

/// The client. Cheap to share behind an `Arc`.
pub struct Client {
    http: reqwest::Client,
    base: String,
    auth: HeaderValue,
    sem: Semaphore,
    opts: Options,
    breakers: Mutex<Breakers>,
    start: Instant,
    observer: Option<Arc<dyn Observer>>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base)
            .field("token_id", &self.opts.token_id)
            .finish_non_exhaustive()
    }
}

/// Percent-encode one path segment (UPIDs contain ':', '@', '!').
pub fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn node_of(path: &str) -> Option<&str> {
    path.strip_prefix("/nodes/")?.split('/').next()
}

impl Client {
    /// A client for the configured endpoint.
    pub fn from_config(c: &Proxmox) -> Result<Self, ProxmoxError> {
        let tls = match &c.tls {
            Tls::Plain => None,
            Tls::Ca(p) => Some(super::tls::with_ca(p)?),
            Tls::Fingerprints(pins) => Some(super::tls::pinned(pins.clone())?),
        };
        Self::new(Options::from_config(c), &read_secret(&c.secret)?, tls)
    }

    /// A client; `tls` is `None` only for `http://` URLs.
    pub fn new(
        opts: Options,
        secret: &str,
        tls: Option<rustls::ClientConfig>,
    ) -> Result<Self, ProxmoxError> {
        let mut b = reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(opts.request_timeout)
            .pool_max_idle_per_host(opts.max_concurrency);
        if let Some(tls) = tls {
            b = b.tls_backend_preconfigured(tls);
        }
        let http = b.build().map_err(|e| ProxmoxError::Setup(e.to_string()))?;
        let mut auth = HeaderValue::from_str(&format!("PVEAPIToken={}={secret}", opts.token_id))
            .map_err(|_| {
                ProxmoxError::Secret("contains characters not allowed in a header".into())
            })?;
        auth.set_sensitive(true);
        Ok(Self {
            http,
            base: format!("{}/api2/json", opts.url.trim_end_matches('/')),
            auth,
            sem: Semaphore::new(opts.max_concurrency.max(1)),
            breakers: Mutex::new(Breakers::new(opts.breaker_failures, opts.breaker_open)),
            opts,
            start: Instant::now(),
            observer: None,
        })
    }

    /// Report request latency and breaker states to `observer`.
    pub fn with_observer(mut self, observer: Arc<dyn Observer>) -> Self {
        self.observer = Some(observer);
        self
    }

    fn now(&self) -> Timestamp {
        Timestamp(u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX))
    }

    /// The breaker state of `node`, for logs and tests.
    pub fn breaker(&self, node: &str) -> super::breaker::State {
        self.breakers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .state(node)
    }

    /// One call; GETs are retried on node failures. `form` goes in the body for
    /// POST/PUT and in the query for GET/DELETE.
    pub async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        form: &[(&str, String)],
    ) -> Result<T, ProxmoxError> {
        let retries = if method == Method::GET {
            self.opts.retries
        } else {
            0
        };
        let mut attempt = 0;
        loop {
            match self.once(method.clone(), path, form).await {
                Err(e) if e.is_node_failure() && attempt < retries => {
                    attempt += 1;
                    let backoff = crate::core::backoff::Backoff {
                        base: self.opts.retry_base,
                        max: Duration::MAX,
                    };
                    let delay = backoff.delay(attempt);
                    tracing::debug!(%method, path, attempt, error = %e, "retrying");
                    tokio::time::sleep(delay).await;
                }
                r => return r,
            }
        }
    }

    async fn once<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        form: &[(&str, String)],
    ) -> Result<T, ProxmoxError> {
        let node = node_of(path);
        if let Some(node) = node {
            let now = self.now();
            let admit = self
                .breakers
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .admit(node, now);
            if let Err(until) = admit {
                return Err(ProxmoxError::BreakerOpen {
                    node: node.to_string(),
                    retry_in: until.since(now),
                });
            }
        }
        let r = {
            let _permit = self.sem.acquire().await.expect("never closed");
            let started = Instant::now();
            let r = self.send(method, path, form).await;
            if let Some(o) = &self.observer {
                let secs = started.elapsed().as_secs_f64();
                o.request(node.unwrap_or("cluster"), secs, r.is_ok());
            }
            r
        };
        if let Some(node) = node {
            let failed = r.as_ref().err().is_some_and(ProxmoxError::is_node_failure);
            let mut breakers = self.breakers.lock().unwrap_or_else(|e| e.into_inner());
            breakers.record(node, self.now(), !failed);
            if let Some(o) = &self.observer {
                let state = match breakers.state(node) {
                    super::breaker::State::Closed { .. } => 0,
                    super::breaker::State::HalfOpen => 1,
                    super::breaker::State::Open { .. } => 2,
                };
                o.breaker(node, state);
            }
        }
        r
    }

    async fn send<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        form: &[(&str, String)],
    ) -> Result<T, ProxmoxError> {
        let url = format!("{}{path}", self.base);
        let mut req = self
            .http
            .request(method.clone(), &url)
            .header(AUTHORIZATION, self.auth.clone());
        req = if method == Method::GET || method == Method::DELETE {
            req.query(form)
        } else {
            req.form(form)
        };
        let timeout = self.opts.request_timeout;
        let transport = |source| ProxmoxError::Transport {
            method: method.clone(),
            path: path.to_string(),
            source,
        };
        let fut = async {
            let resp = req.send().await.map_err(transport)?;
            let status = resp.status();
            let bytes = resp.bytes().await.map_err(transport)?;
            Ok::<_, ProxmoxError>((status, bytes))
        };
        let (status, bytes) =
            tokio::time::timeout(timeout, fut)
                .await
                .map_err(|_| ProxmoxError::Timeout {
                    method: method.clone(),
                    path: path.to_string(),
                    timeout,
                })??;
        decode_response(method, path, status, &bytes)
    }

    /// Every guest and node of the cluster in one call (no `type` filter, so the
    /// nodes' free memory comes with the containers' usage).
    pub async fn resources(&self) -> Result<Vec<Resource>, ProxmoxError> {
        self.call(Method::GET, "/cluster/resources", &[]).await
    }

    pub async fn lxc_config(&self, node: &str, vmid: u32) -> Result<LxcConfig, ProxmoxError> {
        let path = format!("/nodes/{node}/lxc/{vmid}/config");
        self.call(Method::GET, &path, &[("current", "1".into())])
            .await
    }

    /// `PUT config` with `digest` (a concurrent change fails instead of being lost).
    pub async fn update_config(
        &self,
        node: &str,
        vmid: u32,
        mut params: Vec<(&str, String)>,
        digest: &str,
    ) -> Result<(), ProxmoxError> {
        params.push(("digest", digest.to_string()));
        let path = format!("/nodes/{node}/lxc/{vmid}/config");
        let _: Value = self.call(Method::PUT, &path, &params).await?;
        Ok(())
    }

    /// The next free vmid (not reserved: a clone may still collide).
    pub async fn next_id(&self) -> Result<u32, ProxmoxError> {
        let v: Value = self.call(Method::GET, "/cluster/nextid", &[]).await?;
        next_id_of(&v)
    }

    /// A POST or DELETE that starts a task; returns its UPID.
    pub async fn task(
        &self,
        method: Method,
        path: &str,
        params: &[(&str, String)],
    ) -> Result<String, ProxmoxError> {
        self.call(method, path, params).await
    }

    pub async fn task_status(&self, upid: &str) -> Result<TaskStatus, ProxmoxError> {
        let node = upid_node(upid).ok_or_else(|| ProxmoxError::Task {
            upid: upid.to_string(),
            message: "not a UPID".into(),
        })?;
        let path = format!("/nodes/{node}/tasks/{}/status", encode_segment(upid));
        self.call(Method::GET, &path, &[]).await
    }

    /// Poll a task every `every` until it stops, or fail after `timeout`.
    pub async fn wait_task(
        &self,
        upid: &str,
        timeout: Duration,
        every: Duration,
    ) -> Result<(), ProxmoxError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(outcome) = self.task_status(upid).await?.outcome() {
                return outcome.map_err(|message| ProxmoxError::Task {
                    upid: upid.to_string(),
                    message,
                });
            }
            if Instant::now() + every > deadline {
                return Err(ProxmoxError::Task {
                    upid: upid.to_string(),
                    message: format!(
                        "still running after {}",
                        humantime::format_duration(timeout)
                    ),
                });
            }
            tokio::time::sleep(every).await;
        }
    }
}

/// The answer `bytes` with `status` to `method path`, as [`Client::call`] decodes it:
/// an error status becomes [`ProxmoxError::Api`] with Proxmox's message, a success
/// must carry `{"data": ...}` that deserialises to `T`. Public for the
/// `proxmox_json` fuzz target.
pub fn decode_response<T: DeserializeOwned>(
    method: Method,
    path: &str,
    status: StatusCode,
    bytes: &[u8],
) -> Result<T, ProxmoxError> {
    let body: Option<Value> = serde_json::from_slice(bytes).ok();
    if !status.is_success() {
        return Err(ProxmoxError::Api {
            method,
            path: path.to_string(),
            status: status.as_u16(),
            message: error_message(status, body.as_ref()),
        });
    }
    let data = body
        .and_then(|mut v| v.get_mut("data").map(Value::take))
        .ok_or_else(|| ProxmoxError::Decode {
            method: method.clone(),
            path: path.to_string(),
            message: "no {\"data\": ...} envelope".into(),
        })?;
    serde_json::from_value(data).map_err(|e| ProxmoxError::Decode {
        method,
        path: path.to_string(),
        message: e.to_string(),
    })
}

/// The vmid in the `data` of `GET /cluster/nextid` (a number or a string).
pub fn next_id_of(v: &Value) -> Result<u32, ProxmoxError> {
    let n = match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    };
    n.and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| ProxmoxError::Decode {
            method: Method::GET,
            path: "/cluster/nextid".into(),
            message: format!("{v} is not a vmid"),
        })
}

fn error_message(status: StatusCode, body: Option<&Value>) -> String {
    let msg = body
        .and_then(|b| b.get("message"))
        .and_then(Value::as_str)
        .map(|m| m.trim().to_string())
        .filter(|m| !m.is_empty())
        // Before libpve-http-server 5.2 the message was only in the reason phrase.
        .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_string());
    match body
        .and_then(|b| b.get("errors"))
        .and_then(Value::as_object)
    {
        Some(errs) if !errs.is_empty() => {
            let list: Vec<String> = errs
                .iter()
                .map(|(k, v)| format!("{k}: {}", v.as_str().unwrap_or(&v.to_string()).trim()))
                .collect();
            format!("{msg} ({})", list.join("; "))
        }
        _ => msg,
    }
}
