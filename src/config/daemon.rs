//! The daemon's sections: `[albatross]` endpoints (one table, or several as
//! `[[albatross]]` with a `name` each) and `[daemon]` (decision log, state file).
//! Relative paths are resolved against the config file's directory.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// One albatross TLS endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// How groups refer to it (`endpoint = "..."`); `default` for a single `[albatross]`.
    pub name: String,
    /// `host:port` of albatross-tls-endpoint.
    pub address: String,
    /// Trust anchor for the server certificate.
    pub ca: PathBuf,
    /// The operator's CA or sub-CA certificate (PEM; may be followed by its chain).
    pub cert: PathBuf,
    /// Its private key: signs one short-lived leaf per command.
    pub key: PathBuf,
    /// Name expected in the server certificate (its SAN, or its CN when it has no
    /// SAN). Empty (the default) checks only that the chain leads to `ca`: albatross
    /// server certificates are made by `albatross-client generate` with a CN such as
    /// `albatross-server` and no SAN, so they rarely name the host.
    pub server_name: String,
    pub connect_timeout: Duration,
    /// A single-reply command (create, destroy, info, ...) unanswered this long is
    /// given up; a create's outcome is then unknown until the next reconcile.
    pub request_timeout: Duration,
    /// Reconnect delays of the stats stream: doubling from `reconnect_min` up to this.
    pub reconnect_max: Duration,
    pub reconnect_min: Duration,
    /// A stats stream with no frame for this long is closed and subscribed again
    /// (after an albatrossd restart albatross-stats forgets its subscribers without
    /// closing them). `None`: 3 × the smallest `sample_interval` of its groups.
    pub stats_idle_timeout: Option<Duration>,
    /// How often `unikernel info` of the path is compared with the groups (and at
    /// once after every resubscribe).
    pub reconcile_interval: Duration,
}

/// `[daemon]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonConfig {
    /// JSON Lines decision log (appended).
    pub decision_log: Option<PathBuf>,
    /// Ownership record: the clones this autoscaler created.
    pub state_file: PathBuf,
    /// Global ceiling on the hourly cost of everything this daemon scales (albatross
    /// groups and LXC containers together), in millionths of the currency unit.
    pub max_cost_micros: Option<u64>,
    /// `run --record`: past this size the recording is rotated (one older file kept).
    pub record_max_bytes: u64,
}

/// Default `record_max_bytes`: 64 MiB (about a day of 100 VMs at a 10 s cadence).
const RECORD_MAX_BYTES: u64 = 64 * 1024 * 1024;

impl Default for DaemonConfig {
    fn default() -> Self {
        Self {
            decision_log: None,
            state_file: PathBuf::from("albatross-autoscale.state.json"),
            max_cost_micros: None,
            record_max_bytes: RECORD_MAX_BYTES,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EndpointFile {
    name: Option<String>,
    endpoint: String,
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    server_name: Option<String>,
    #[serde(default, with = "humantime_serde")]
    connect_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    request_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    reconnect_min: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    reconnect_max: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    stats_idle_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    reconcile_interval: Option<Duration>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DaemonFile {
    decision_log: Option<PathBuf>,
    state_file: Option<PathBuf>,
    max_cost_per_hour: Option<f64>,
    record_max_bytes: Option<u64>,
}

fn resolve(base: &Path, p: PathBuf) -> PathBuf {
    if p.is_absolute() { p } else { base.join(p) }
}

/// Parse `[albatross]` / `[[albatross]]`.
pub(super) fn endpoints(
    v: Option<toml::Value>,
    base: &Path,
    problems: &mut Vec<String>,
) -> Vec<Endpoint> {
    let tables: Vec<(String, toml::Value)> = match v {
        None => return Vec::new(),
        Some(t @ toml::Value::Table(_)) => vec![("albatross".to_string(), t)],
        Some(toml::Value::Array(a)) => a
            .into_iter()
            .enumerate()
            .map(|(i, t)| (format!("albatross[{i}]"), t))
            .collect(),
        Some(_) => {
            problems
                .push("albatross: must be a table ([albatross]) or tables ([[albatross]])".into());
            return Vec::new();
        }
    };
    let single = tables.len() == 1;
    let mut out: Vec<Endpoint> = Vec::new();
    let mut names = std::collections::HashSet::new();
    for (at, t) in tables {
        let f = match EndpointFile::deserialize(t) {
            Ok(f) => f,
            Err(e) => {
                problems.push(super::de_error(&at, &e));
                continue;
            }
        };
        let name = match (f.name, single) {
            (Some(n), _) => n,
            (None, true) => "default".to_string(),
            (None, false) => {
                problems.push(format!(
                    "{at}: missing key name (needed with several [[albatross]] endpoints)"
                ));
                continue;
            }
        };
        if !names.insert(name.clone()) {
            problems.push(format!("{at}.name: {name:?} is used twice"));
        }
        if !f
            .endpoint
            .rsplit_once(':')
            .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok())
        {
            problems.push(format!("{at}.endpoint: {:?} is not host:port (albatross-tls-endpoint listens on 1025 by default)", f.endpoint));
        }
        let ep = Endpoint {
            name,
            address: f.endpoint,
            ca: resolve(base, f.ca),
            cert: resolve(base, f.cert),
            key: resolve(base, f.key),
            server_name: f.server_name.unwrap_or_default(),
            connect_timeout: f.connect_timeout.unwrap_or(Duration::from_secs(10)),
            request_timeout: f.request_timeout.unwrap_or(Duration::from_secs(120)),
            reconnect_min: f.reconnect_min.unwrap_or(Duration::from_secs(1)),
            reconnect_max: f.reconnect_max.unwrap_or(Duration::from_secs(60)),
            stats_idle_timeout: f.stats_idle_timeout,
            reconcile_interval: f.reconcile_interval.unwrap_or(Duration::from_secs(300)),
        };
        if ep
            .stats_idle_timeout
            .is_some_and(|d| d < Duration::from_secs(1))
        {
            problems.push(format!(
                "{at}.stats_idle_timeout: must be at least 1s (albatross sends a frame per unikernel every interval)"
            ));
        }
        if ep.request_timeout < Duration::from_secs(1) {
            problems.push(format!("{at}.request_timeout: must be at least 1s"));
        }
        if ep.reconcile_interval < Duration::from_secs(1) {
            problems.push(format!("{at}.reconcile_interval: must be at least 1s"));
        }
        for (key, path) in [("ca", &ep.ca), ("cert", &ep.cert), ("key", &ep.key)] {
            if let Err(e) = std::fs::metadata(path) {
                problems.push(format!("{at}.{key}: {}: {e}", path.display()));
            }
        }
        if ep.reconnect_min.is_zero() || ep.reconnect_max < ep.reconnect_min {
            problems.push(format!(
                "{at}.reconnect_min: must be above 0s and not above reconnect_max"
            ));
        }
        out.push(ep);
    }
    out
}

/// Parse `[daemon]`.
pub(super) fn daemon(
    v: Option<toml::Value>,
    base: &Path,
    problems: &mut Vec<String>,
) -> DaemonConfig {
    let Some(v) = v else {
        return DaemonConfig {
            state_file: resolve(base, DaemonConfig::default().state_file),
            ..DaemonConfig::default()
        };
    };
    match DaemonFile::deserialize(v) {
        Ok(f) => DaemonConfig {
            decision_log: f.decision_log.map(|p| resolve(base, p)),
            state_file: resolve(
                base,
                f.state_file.unwrap_or(DaemonConfig::default().state_file),
            ),
            max_cost_micros: f.max_cost_per_hour.and_then(|c| {
                let ok = c.is_finite() && c > 0.0 && c <= super::policy::MAX_COST;
                if !ok {
                    problems.push(format!(
                        "daemon.max_cost_per_hour: {c} must be above 0 and at most {}",
                        super::policy::MAX_COST
                    ));
                }
                ok.then(|| super::policy::cost_micros(c))
            }),
            record_max_bytes: match f.record_max_bytes {
                Some(n) if n < 4096 => {
                    problems.push(format!(
                        "daemon.record_max_bytes: {n} is below 4096 (one line of a large group)"
                    ));
                    RECORD_MAX_BYTES
                }
                n => n.unwrap_or(RECORD_MAX_BYTES),
            },
        },
        Err(e) => {
            problems.push(super::de_error("daemon", &e));
            DaemonConfig::default()
        }
    }
}
