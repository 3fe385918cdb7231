//! Shared state of the API: keys, limiter, the effective config (redacted), the
//! ring of recent decisions, the metrics, and the handle to the engine task.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};

use super::auth::Keys;
use super::limit::{Clock, Limiter};
use crate::albatross::stats::StreamHealth;
use crate::config::Config;
use crate::config::http::Http;
use crate::config::notify::Kind;
use crate::config::proxmox::{Secret, Tls};
use crate::core::{Output, Policy, Verdict};
use crate::daemon::approvals::{Command, SharedBook};
use crate::daemon::runner::EngineHandle;
use crate::http::metrics::Metrics;

const REDACTED: &str = "<redacted>";

/// The state behind every handler.
pub struct Api {
    pub(super) engine: Option<EngineHandle>,
    pub(super) health: Vec<(String, Arc<StreamHealth>)>,
    pub(super) metrics: Arc<Metrics>,
    pub(super) clock: Arc<dyn Clock>,
    /// `[history]` as the daemon started with it (its writer is not reloaded).
    pub(super) history: crate::config::history::History,
    inner: Mutex<Inner>,
    ring: Mutex<VecDeque<Value>>,
    approvals: OnceLock<Desk>,
    containers: OnceLock<crate::proxmox::view::SharedView>,
    /// The way to the Proxmox loop for pause, resume and scale of containers.
    container_controls: OnceLock<mpsc::Sender<crate::proxmox::Control>>,
}

/// The approval book and the way to the Proxmox loop (the albatross engine task is
/// reached through the engine handle).
pub(super) struct Desk {
    pub(super) book: SharedBook,
    pub(super) proxmox: Option<mpsc::Sender<Command>>,
}

struct Inner {
    keys: Keys,
    limiter: Limiter,
    http: Http,
    /// Rendered (redacted) on request: a 10 000-group JSON tree kept in memory
    /// took 45 MB (issue 18).
    config: Arc<Config>,
    decision_log: Option<PathBuf>,
    albatross: bool,
    /// With Proxmox containers: how recent a successful poll must be to be ready.
    proxmox: Option<std::time::Duration>,
}

/// What an incoming request may do, decided before it reaches a handler.
pub(super) enum Gate {
    Pass,
    Limited(std::time::Duration),
}

impl Api {
    /// State for `config`; fails if the keys file cannot be read.
    pub fn new(
        config: &Config,
        engine: Option<EngineHandle>,
        health: Vec<(String, Arc<StreamHealth>)>,
        clock: Arc<dyn Clock>,
    ) -> Result<Arc<Self>, String> {
        Self::new_shared(Arc::new(config.clone()), engine, health, clock)
    }

    /// [`Api::new`] sharing the caller's configuration.
    pub fn new_shared(
        config: Arc<Config>,
        engine: Option<EngineHandle>,
        health: Vec<(String, Arc<StreamHealth>)>,
        clock: Arc<dyn Clock>,
    ) -> Result<Arc<Self>, String> {
        let keys = load_keys(&config.http)?;
        Ok(Arc::new(Self {
            engine,
            health,
            metrics: Arc::new(Metrics::new()),
            clock,
            history: config.history.clone(),
            inner: Mutex::new(Inner {
                keys,
                limiter: Limiter::new(config.http.rate_limit_per_minute),
                http: config.http.clone(),
                decision_log: config.daemon.decision_log.clone(),
                albatross: !config.endpoints.is_empty(),
                proxmox: config
                    .proxmox
                    .as_ref()
                    .filter(|_| !config.lxc.is_empty())
                    .map(|p| p.poll_interval * 3),
                config,
            }),
            ring: Mutex::new(VecDeque::new()),
            approvals: OnceLock::new(),
            containers: OnceLock::new(),
            container_controls: OnceLock::new(),
        }))
    }

    /// Serve `/v1/approvals` from `book`; commands for Proxmox entries go to
    /// `proxmox` (the loop's inbox). Set once; without it the book is empty.
    pub fn set_approvals(&self, book: SharedBook, proxmox: Option<mpsc::Sender<Command>>) {
        let _ = self.approvals.set(Desk { book, proxmox });
    }

    pub(super) fn approvals(&self) -> Option<&Desk> {
        self.approvals.get()
    }

    /// Serve `/v1/containers` from the Proxmox loop's snapshot. Set once; without
    /// it (no `[[lxc]]`) the route answers `404 proxmox_off`.
    pub fn set_containers(&self, view: crate::proxmox::view::SharedView) {
        let _ = self.containers.set(view);
    }

    pub(super) fn containers(&self) -> Option<crate::proxmox::view::Containers> {
        let v = self.containers.get()?;
        v.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Send pause, resume and scale of containers to the Proxmox loop. Set once.
    pub fn set_container_controls(&self, tx: mpsc::Sender<crate::proxmox::Control>) {
        let _ = self.container_controls.set(tx);
    }

    /// Apply an operator command in the Proxmox loop; `None` once it stopped.
    pub(super) async fn container_control(
        &self,
        input: crate::core::Input,
    ) -> Option<Vec<crate::core::Output>> {
        let tx = self.container_controls.get()?;
        let (reply, rx) = tokio::sync::oneshot::channel();
        tx.send(crate::proxmox::Control { input, reply })
            .await
            .ok()?;
        rx.await.ok()
    }

    pub(super) fn has_containers(&self) -> bool {
        self.containers.get().is_some()
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        // A poisoned lock only means a handler panicked mid-update of plain data.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Apply a reloaded config: keys re-read, rate and view updated. On error
    /// nothing changes (the running config stays in force).
    pub fn reload(&self, config: &Config) -> Result<(), String> {
        self.reload_shared(Arc::new(config.clone()))
    }

    /// [`Api::reload`] sharing the caller's configuration.
    pub fn reload_shared(&self, config: Arc<Config>) -> Result<(), String> {
        let keys = load_keys(&config.http)?;
        let mut i = self.inner();
        if config.http.listen != i.http.listen {
            tracing::warn!("[http] listen changed: restart the daemon to apply that part");
        }
        i.keys = keys;
        i.limiter.set_rate(config.http.rate_limit_per_minute);
        i.http = Http {
            listen: i.http.listen,
            ..config.http.clone()
        };
        i.decision_log = config.daemon.decision_log.clone();
        i.config = config;
        Ok(())
    }

    /// [`Api::reload`] from a file (SIGHUP path): a file that does not load or
    /// validate is refused as a whole.
    pub fn reload_file(&self, path: &Path) -> Result<(), String> {
        let c = Config::load(path).map_err(|e| e.to_string())?;
        self.reload(&c)
    }

    /// The metrics registry.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    pub(super) fn max_body(&self) -> usize {
        self.inner().http.max_body_bytes
    }

    pub(super) fn gate(&self, client: Option<IpAddr>) -> Gate {
        let now = self.clock.now_ms();
        let mut i = self.inner();
        let ip = client.unwrap_or(IpAddr::from([0u8; 4]));
        if i.http.localhost_bypass && ip.is_loopback() {
            return Gate::Pass;
        }
        match i.limiter.check(ip, now) {
            Ok(()) => Gate::Pass,
            Err(d) => Gate::Limited(d),
        }
    }

    /// The client name of a bearer token, if valid.
    pub(super) fn authenticate(&self, token: &str) -> Option<String> {
        self.inner().keys.check(token).map(str::to_string)
    }

    /// `/v1/config` as JSON bytes, rendered now.
    pub(super) fn config_view(&self) -> Vec<u8> {
        let config = self.inner().config.clone();
        render_redacted(&config)
    }

    pub(super) fn decision_log(&self) -> Option<PathBuf> {
        self.inner().decision_log.clone()
    }

    /// Whether the daemon can do its job: the engine answers and, with albatross
    /// endpoints, at least one statistics stream is up.
    pub(super) async fn readiness(&self) -> (bool, Value) {
        let (albatross, proxmox) = {
            let i = self.inner();
            (i.albatross, i.proxmox)
        };
        let polled = proxmox.map(|d| self.metrics.proxmox_polled_within(d));
        let engine = match &self.engine {
            Some(e) => e.status().await.is_some(),
            None => true,
        };
        let streams: Vec<Value> = self
            .health
            .iter()
            .map(|(n, h)| json!({"endpoint": n, "up": h.up.load(Ordering::Relaxed)}))
            .collect();
        let any_up = self
            .health
            .iter()
            .any(|(_, h)| h.up.load(Ordering::Relaxed));
        // Frames arrive but none decodes: the stream is up and useless (a newer
        // albatross whose statistics this version cannot read).
        let now = tokio::time::Instant::now();
        let unreadable: Vec<&str> = self
            .health
            .iter()
            .filter(|(_, h)| h.unreadable_only(now))
            .map(|(n, _)| n.as_str())
            .collect();
        // Ready once any source of samples works: an albatross stream or a Proxmox poll.
        let sources = albatross || proxmox.is_some();
        let ready = engine && unreadable.is_empty() && (!sources || any_up || polled == Some(true));
        let mut body = json!({"ready": ready, "config_loaded": true, "engine": engine, "streams": streams, "proxmox_polled_recently": polled});
        if !unreadable.is_empty() {
            body["reason"] = json!("stats frames arrive but none can be read (newer albatross?)");
            body["unreadable_endpoints"] = json!(unreadable);
        }
        (ready, body)
    }

    /// Keep what the API reports about engine outputs: counters in the metrics,
    /// decisions, failures and non-trivial evaluations in the ring. Runs until the
    /// engine task ends.
    ///
    /// The engine never waits for a follower, so one that falls behind the
    /// broadcast misses outputs; that is counted (`outputs_missed_total`). What
    /// recovers by itself: gauges are read from the engine at every scrape, a
    /// group's desired count follows its next evaluation (every interval), and the
    /// decision log (`/v1/decisions?log=true`) has every decision. What does not:
    /// `decisions_total` and the in-memory ring lack the missed ones. Work per
    /// output is bounded and the channel holds an interval of outputs of every
    /// group ([`crate::core::output::channel_capacity`]), so a lag needs this task
    /// starved for about an interval.
    pub async fn follow(self: Arc<Self>, mut rx: broadcast::Receiver<Output>) {
        loop {
            match rx.recv().await {
                Ok(o) => self.record(&o),
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    self.metrics.outputs_missed(n);
                    tracing::warn!(missed = n, "status API fell behind the engine outputs");
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    }

    /// Record one engine output (what [`Api::follow`] does per output).
    pub fn record(&self, o: &Output) {
        self.metrics.observe(o);
        let keep = match o {
            Output::Decision(_) | Output::ActionFailed { .. } => true,
            Output::Evaluation(e) => !matches!(e.verdict, Verdict::Hold),
            _ => false,
        };
        if !keep {
            return;
        }
        let Some(mut v) = crate::jsonl::line(o, true) else {
            return;
        };
        v["at"] = json!(now_rfc3339());
        let cap = self.inner().http.decisions_kept;
        let mut r = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        while r.len() >= cap {
            r.pop_front();
        }
        r.push_back(v);
    }

    /// Recent ring entries, oldest first, filtered.
    pub(super) fn recent(&self, group: Option<&str>, since: Option<u64>) -> Vec<Value> {
        let r = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        r.iter()
            .filter(|v| matches_filter(v, group, since))
            .cloned()
            .collect()
    }
}

pub(super) fn matches_filter(v: &Value, group: Option<&str>, since: Option<u64>) -> bool {
    group.is_none_or(|g| v["group"].as_str() == Some(g))
        && since.is_none_or(|s| v["t_ms"].as_u64().is_some_and(|t| t >= s))
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn load_keys(http: &Http) -> Result<Keys, String> {
    match &http.api_keys_file {
        Some(p) => Keys::load(p).map_err(|e| format!("http.api_keys_file: {e}")),
        // Without [http] listen there is no server; an unusable key set is fine.
        None => Ok(Keys::none()),
    }
}

fn policy(p: &Policy) -> Value {
    let d = |d: std::time::Duration| humantime::format_duration(d).to_string();
    json!({
        "sample_interval": d(p.sample_interval),
        "scale_up_threshold": p.scale_up_threshold,
        "scale_up_ticks": p.scale_up_ticks,
        "scale_down_threshold": p.scale_down_threshold,
        "scale_down_ticks": p.scale_down_ticks,
        "scale_up_cooldown": d(p.scale_up_cooldown),
        "scale_down_cooldown": d(p.scale_down_cooldown),
        "death_timeout": d(p.death_timeout),
        "startup_grace": d(p.startup_grace),
        "min_instances": p.min_instances,
        "max_instances": p.max_instances,
        "max_actions_per_hour": p.max_actions_per_hour,
        "clone_name": p.clone_name,
        "primary_death": p.primary_death,
        "vcpus": p.vcpus,
        "retry_backoff": d(p.retry_backoff),
        "retry_backoff_max": d(p.retry_backoff_max),
        "require_approval": p.require_approval.names(),
        "approval_timeout": d(p.approval_timeout),
        "schedule": p.schedule.windows().iter().map(ToString::to_string).collect::<Vec<_>>(),
    })
}

fn group(g: &crate::config::Group) -> Value {
    json!({"primary": g.primary, "endpoint": g.endpoint, "policy": policy(&g.policy)})
}

/// [`redacted`] as compact JSON, one group at a time: the whole tree of 10 000
/// groups is never built (the bytes are a tenth of it).
pub fn render_redacted(c: &Config) -> Vec<u8> {
    let mut out = Vec::with_capacity(256 + c.groups.len() * 1024);
    // Writing to a Vec cannot fail, nor can serialising a Value.
    out.extend_from_slice(b"{\"policy\":");
    let _ = serde_json::to_writer(&mut out, &policy(&c.policy));
    out.extend_from_slice(b",\"groups\":[");
    for (i, g) in c.groups.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let _ = serde_json::to_writer(&mut out, &group(g));
    }
    out.push(b']');
    let rest = serde_json::to_vec(&rest(c)).unwrap_or_default();
    // `rest` is a non-empty object: its members follow the groups.
    out.push(b',');
    out.extend_from_slice(rest.get(1..).unwrap_or(b"}"));
    out
}

/// The effective config with secrets (private key paths, token sources) redacted.
pub fn redacted(c: &Config) -> Value {
    let mut v = serde_json::Map::new();
    v.insert("policy".into(), policy(&c.policy));
    v.insert("groups".into(), c.groups.iter().map(group).collect());
    if let Value::Object(rest) = rest(c) {
        v.extend(rest);
    }
    Value::Object(v)
}

/// Everything of [`redacted`] after `policy` and `groups`.
fn rest(c: &Config) -> Value {
    let endpoints: Vec<Value> = c
        .endpoints
        .iter()
        .map(|e| {
            json!({
                "name": e.name, "endpoint": e.address, "ca": e.ca, "cert": e.cert,
                "key": REDACTED, "server_name": e.server_name,
            })
        })
        .collect();
    let proxmox = c.proxmox.as_ref().map(|p| {
        json!({
            "url": p.url,
            "token_id": p.token_id,
            "secret": match &p.secret { Secret::File(_) => "<redacted: file>", Secret::Env(_) => "<redacted: env>" },
            "tls": match &p.tls { Tls::Ca(path) => json!({"ca": path}), Tls::Fingerprints(f) => json!({"fingerprints": f.len()}), Tls::Plain => json!("plain") },
            "poll_interval": humantime::format_duration(p.poll_interval).to_string(),
            "state_file": p.state_file,
            "tag": p.tag,
        })
    });
    // URLs only by origin (Slack paths and ntfy topics are secrets), secrets not at all.
    let notify: Vec<Value> = c
        .notify
        .iter()
        .map(|n| {
            let kind = match &n.kind {
                Kind::Webhook(w) => json!({
                    "kind": "webhook", "url": crate::config::notify::origin(&w.url),
                    "format": w.format.as_str(), "signed": w.secret_file.is_some(),
                    "token": w.token_file.as_ref().map(|_| "<redacted: file>"),
                    "ca": w.ca,
                }),
                Kind::Email(e) => json!({
                    "kind": "email", "smtp_host": e.smtp_host, "smtp_port": e.smtp_port,
                    "starttls": e.starttls, "username": e.username,
                    "password": e.password_file.as_ref().map(|_| "<redacted: file>"),
                    "ca": e.ca,
                    "from": e.from, "to": e.to,
                }),
            };
            json!({"name": n.name, "events": n.events, "timeout": humantime::format_duration(n.timeout).to_string(),
                "attempts": n.attempts, "queue": n.queue, "sink": kind})
        })
        .collect();
    json!({
        "albatross": endpoints,
        "daemon": {"decision_log": c.daemon.decision_log, "state_file": c.daemon.state_file},
        "proxmox": proxmox,
        "lxc": {"containers": c.lxc.len()},
        "http": {
            "listen": c.http.listen.map(|a| a.to_string()),
            "api_keys_file": c.http.api_keys_file,
            "rate_limit_per_minute": c.http.rate_limit_per_minute,
            "localhost_bypass": c.http.localhost_bypass,
            "max_body_bytes": c.http.max_body_bytes,
            "decisions_kept": c.http.decisions_kept,
        },
        "notify": notify,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bytes rendered group by group are the tree [`redacted`] builds.
    #[test]
    fn rendered_config_is_the_redacted_tree() {
        let text = "[policy]\nsample_interval = \"10s\"\n[[group]]\nprimary = \"alice:a\"\n[[group]]\nprimary = \"alice:b\"\nmax_instances = 3\n";
        let dir = std::env::temp_dir().join(format!("aa-render-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("c.toml");
        std::fs::write(&path, text).unwrap();
        let c = Config::load(&path).unwrap();
        let bytes = render_redacted(&c);
        let parsed: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(parsed, redacted(&c));
        assert_eq!(
            bytes,
            serde_json::to_vec(&redacted(&c)).unwrap(),
            "same order"
        );
        assert_eq!(parsed["groups"][1]["policy"]["max_instances"], 3);
    }
}
