//! `[proxmox]` (API endpoint, token, TLS, polling) and `[[lxc]]` (one container each:
//! mode, bounds, steps, clone settings, and any `[policy]` key). Every problem names
//! its key; relative paths are resolved against the config file's directory.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::policy::{check, merge, policy_file};
use crate::core::Policy;
use crate::core::vertical::{CpuKnob, Pricing, VerticalPolicy};
use crate::name::{self, Name};

/// Where the token secret comes from. The secret itself never enters the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Secret {
    File(PathBuf),
    Env(String),
}

/// How the server certificate is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tls {
    /// Verify the chain against this CA (e.g. the cluster's `pve-root-ca.pem`).
    Ca(PathBuf),
    /// Accept a leaf whose SHA-256 is one of these (several: renewals overlap).
    Fingerprints(Vec<[u8; 32]>),
    /// `http://` URL: no TLS (tests, or a local TLS-terminating proxy).
    Plain,
}

/// `[proxmox]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proxmox {
    /// Base URL, e.g. `https://pve.example:8006` (the `/api2/json` prefix is added).
    pub url: String,
    /// `USER@REALM!TOKENID`.
    pub token_id: String,
    pub secret: Secret,
    pub tls: Tls,
    pub poll_interval: Duration,
    /// Requests in flight at once, all nodes together.
    pub max_concurrency: usize,
    pub request_timeout: Duration,
    /// Retries of idempotent calls (GET) after a transport error, 5xx or 59x.
    pub retries: u32,
    pub host_memory_reserve_mib: u32,
    /// Longest wait for a clone/start/shutdown/destroy task.
    pub task_timeout: Duration,
    /// Consecutive failures that open a node's circuit breaker.
    pub breaker_failures: u32,
    /// How long an open breaker refuses calls before one trial.
    pub breaker_open: Duration,
    /// Ownership record of the clones created (separate from albatross's).
    pub state_file: PathBuf,
    /// Tag put on every clone created; only tagged, recorded clones are destroyed.
    pub tag: String,
}

pub use crate::core::lxc::Mode;

/// Clone settings for horizontal modes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloneSpec {
    /// Clone from this vmid (a template or stopped golden container); the primary if `None`.
    pub source: Option<u32>,
    pub full: bool,
    pub storage: Option<String>,
    pub pool: Option<String>,
    /// Snapshot to clone from (a running container can only be full-cloned from one).
    pub snapname: Option<String>,
}

/// One `[[lxc]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lxc {
    pub vmid: u32,
    /// Name in decisions and the clone template (`name`, default `ct<vmid>`), under path `lxc`.
    pub name: Name,
    pub mode: Mode,
    /// Effective policy (horizontal engine; thresholds, ticks, cooldowns, budget).
    pub policy: Policy,
    pub vertical: VerticalPolicy,
    pub clone: CloneSpec,
}

impl Lxc {
    /// What the LXC machine needs of this container (the clone settings stay with
    /// the Proxmox shell).
    pub fn into_spec(self) -> crate::core::lxc::Spec {
        crate::core::lxc::Spec {
            vmid: self.vmid,
            name: self.name,
            mode: self.mode,
            policy: self.policy,
            vertical: self.vertical,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProxmoxFile {
    url: String,
    token_id: String,
    token_secret_file: Option<PathBuf>,
    token_secret_env: Option<String>,
    fingerprint: Option<OneOrMany>,
    ca: Option<PathBuf>,
    #[serde(default, with = "humantime_serde")]
    poll_interval: Option<Duration>,
    max_concurrency: Option<i64>,
    #[serde(default, with = "humantime_serde")]
    request_timeout: Option<Duration>,
    retries: Option<i64>,
    host_memory_reserve_mib: Option<i64>,
    #[serde(default, with = "humantime_serde")]
    task_timeout: Option<Duration>,
    breaker_failures: Option<i64>,
    #[serde(default, with = "humantime_serde")]
    breaker_open: Option<Duration>,
    state_file: Option<PathBuf>,
    tag: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

/// The `[[lxc]]` keys besides the policy keys.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct LxcFile {
    vmid: Option<i64>,
    name: Option<String>,
    mode: Option<Mode>,
    cores: Option<[i64; 2]>,
    core_step: Option<i64>,
    cpulimit: Option<[f64; 2]>,
    cpulimit_step: Option<f64>,
    memory_mib: Option<[i64; 2]>,
    memory_step_mib: Option<i64>,
    memory_margin_mib: Option<i64>,
    memory_up_threshold: Option<i64>,
    memory_down_threshold: Option<i64>,
    clone_source: Option<i64>,
    full_clone: Option<bool>,
    clone_storage: Option<String>,
    clone_pool: Option<String>,
    clone_snapshot: Option<String>,
    core_cost_per_hour: Option<f64>,
    gib_cost_per_hour: Option<f64>,
}

const LXC_KEYS: &[&str] = &[
    "vmid",
    "name",
    "mode",
    "cores",
    "core_step",
    "cpulimit",
    "cpulimit_step",
    "memory_mib",
    "memory_step_mib",
    "memory_margin_mib",
    "memory_up_threshold",
    "memory_down_threshold",
    "clone_source",
    "full_clone",
    "clone_storage",
    "clone_pool",
    "clone_snapshot",
    "core_cost_per_hour",
    "gib_cost_per_hour",
];

fn resolve(base: &Path, p: PathBuf) -> PathBuf {
    if p.is_absolute() { p } else { base.join(p) }
}

/// Parse a SHA-256 fingerprint in colon hex (as `pvenode cert info` prints it).
pub fn parse_fingerprint(s: &str) -> Option<[u8; 32]> {
    let hex: String = s.chars().filter(|c| *c != ':').collect();
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// A price per hour (core-hour, GiB-hour) in millionths; 0 when unset.
fn price(at: &str, key: &str, v: Option<f64>, problems: &mut Vec<String>) -> u64 {
    match v {
        None => 0,
        Some(c) if c.is_finite() && (0.0..=super::policy::MAX_COST).contains(&c) => {
            super::policy::cost_micros(c)
        }
        Some(c) => {
            problems.push(format!(
                "{at}.{key}: {c} is out of range 0..={}",
                super::policy::MAX_COST
            ));
            0
        }
    }
}

fn range(
    at: &str,
    key: &str,
    v: Option<i64>,
    lo: i64,
    hi: i64,
    default: u32,
    problems: &mut Vec<String>,
) -> u32 {
    match v {
        None => default,
        Some(v) if (lo..=hi).contains(&v) => u32::try_from(v).unwrap_or(default),
        Some(v) => {
            problems.push(format!("{at}.{key}: {v} is out of range {lo}..={hi}"));
            default
        }
    }
}

/// Parse `[proxmox]`.
pub(super) fn proxmox(
    v: Option<toml::Value>,
    base: &Path,
    problems: &mut Vec<String>,
) -> Option<Proxmox> {
    let at = "proxmox";
    let f = match ProxmoxFile::deserialize(v?) {
        Ok(f) => f,
        Err(e) => {
            problems.push(super::de_error(at, &e));
            return None;
        }
    };
    let https = f.url.starts_with("https://");
    if !https && !f.url.starts_with("http://") {
        problems.push(format!(
            "{at}.url: {:?} must start with https:// (Proxmox listens on :8006)",
            f.url
        ));
    }
    let tid_ok = f
        .token_id
        .split_once('!')
        .is_some_and(|(user, tok)| user.contains('@') && !tok.is_empty());
    if !tid_ok {
        problems.push(format!(
            "{at}.token_id: {:?} is not USER@REALM!TOKENID",
            f.token_id
        ));
    }
    let secret = match (f.token_secret_file, f.token_secret_env) {
        (Some(p), None) => {
            let p = resolve(base, p);
            if let Err(e) = std::fs::metadata(&p) {
                problems.push(format!("{at}.token_secret_file: {}: {e}", p.display()));
            }
            Secret::File(p)
        }
        (None, Some(var)) => Secret::Env(var),
        _ => {
            problems.push(format!(
                "{at}: set exactly one of token_secret_file, token_secret_env"
            ));
            Secret::Env(String::new())
        }
    };
    let tls = match (f.ca, f.fingerprint) {
        (Some(_), Some(_)) => {
            problems.push(format!("{at}: set one of ca, fingerprint, not both"));
            Tls::Plain
        }
        (Some(p), None) => {
            let p = resolve(base, p);
            if let Err(e) = std::fs::metadata(&p) {
                problems.push(format!("{at}.ca: {}: {e}", p.display()));
            }
            Tls::Ca(p)
        }
        (None, Some(fp)) => {
            let list = match fp {
                OneOrMany::One(s) => vec![s],
                OneOrMany::Many(v) => v,
            };
            let mut pins = Vec::new();
            for s in list {
                match parse_fingerprint(&s) {
                    Some(p) => pins.push(p),
                    None => problems.push(format!(
                        "{at}.fingerprint: {s:?} is not a SHA-256 fingerprint (32 hex bytes, colons allowed)"
                    )),
                }
            }
            Tls::Fingerprints(pins)
        }
        (None, None) if https => {
            problems.push(format!(
                "{at}: set ca or fingerprint (Proxmox certificates are self-signed)"
            ));
            Tls::Plain
        }
        (None, None) => Tls::Plain,
    };
    let poll_interval = f.poll_interval.unwrap_or(Duration::from_secs(10));
    if poll_interval < Duration::from_secs(1) {
        problems.push(format!("{at}.poll_interval: must be at least 1s"));
    }
    let request_timeout = f.request_timeout.unwrap_or(Duration::from_secs(10));
    if request_timeout.is_zero() {
        problems.push(format!("{at}.request_timeout: must be above 0s"));
    }
    let breaker_open = f.breaker_open.unwrap_or(Duration::from_secs(30));
    let mut tag = f.tag.unwrap_or_else(|| "albatross-autoscale".to_string());
    if tag.is_empty() || tag.contains([';', ',', ' ']) {
        problems.push(format!("{at}.tag: {tag:?} must be one non-empty tag"));
        tag = "albatross-autoscale".into();
    }
    Some(Proxmox {
        url: f.url.trim_end_matches('/').to_string(),
        token_id: f.token_id,
        secret,
        tls,
        poll_interval,
        max_concurrency: range(
            at,
            "max_concurrency",
            f.max_concurrency,
            1,
            1024,
            16,
            problems,
        ) as usize,
        request_timeout,
        retries: range(at, "retries", f.retries, 0, 10, 2, problems),
        host_memory_reserve_mib: range(
            at,
            "host_memory_reserve_mib",
            f.host_memory_reserve_mib,
            0,
            i64::from(u32::MAX),
            2048,
            problems,
        ),
        task_timeout: f.task_timeout.unwrap_or(Duration::from_secs(300)),
        breaker_failures: range(
            at,
            "breaker_failures",
            f.breaker_failures,
            1,
            1000,
            3,
            problems,
        ),
        breaker_open,
        state_file: resolve(
            base,
            f.state_file
                .unwrap_or_else(|| PathBuf::from("albatross-autoscale.proxmox-state.json")),
        ),
        tag,
    })
}

/// Parse `[[lxc]]`; `defaults` is the merged `[policy]`.
pub(super) fn lxcs(
    v: Option<toml::Value>,
    proxmox: Option<&Proxmox>,
    defaults: &Policy,
    problems: &mut Vec<String>,
) -> Vec<Lxc> {
    let tables = match v {
        None => return Vec::new(),
        Some(toml::Value::Array(a)) => a,
        Some(_) => {
            problems.push("lxc: must be an array of tables ([[lxc]])".into());
            return Vec::new();
        }
    };
    if proxmox.is_none() {
        problems.push("lxc: [[lxc]] needs a [proxmox] section".into());
    }
    let reserve = proxmox.map_or(2048, |p| p.host_memory_reserve_mib);
    let mut out: Vec<Lxc> = Vec::new();
    // Duplicates by hashed look-up: a long [[lxc]] list is not checked pairwise.
    let (mut vmids, mut names) = (
        std::collections::HashSet::new(),
        std::collections::HashSet::new(),
    );
    for (i, t) in tables.into_iter().enumerate() {
        let mut at = format!("lxc[{i}]");
        let toml::Value::Table(mut t) = t else {
            problems.push(format!("{at}: must be a table"));
            continue;
        };
        let mine: toml::Table = LXC_KEYS
            .iter()
            .filter_map(|k| t.remove(*k).map(|v| (k.to_string(), v)))
            .collect();
        let f = match LxcFile::deserialize(toml::Value::Table(mine)) {
            Ok(f) => f,
            Err(e) => {
                problems.push(super::de_error(&at, &e));
                LxcFile::default()
            }
        };
        let Some(vmid) = f.vmid else {
            problems.push(format!("{at}: missing key vmid"));
            continue;
        };
        let Some(vmid) = u32::try_from(vmid).ok().filter(|v| *v >= 100) else {
            problems.push(format!(
                "{at}.vmid: {vmid} is out of range 100..=4294967295"
            ));
            continue;
        };
        at = format!("lxc[{i}] ({vmid})");
        let label = f.name.clone().unwrap_or_else(|| format!("ct{vmid}"));
        let name = match name::label(&label) {
            Ok(l) => Name {
                path: vec!["lxc".into()],
                label: Some(l),
            },
            Err(e) => {
                problems.push(format!("{at}.name: {e}"));
                continue;
            }
        };
        let Some(pf) = policy_file(t, &at, problems) else {
            continue;
        };
        let mut policy = merge(defaults.clone(), &pf);
        check(&policy, &pf, &at, Some(&name), problems);
        if let Some(key) = pf.lifecycle_key() {
            problems.push(format!(
                "{at}.{key}: readiness checks, drain and lifecycle hooks apply to albatross [[group]]s; [[lxc]] clones count from their first poll and are destroyed at once"
            ));
        }
        // Inherited from [policy]: not for containers (the controller runs no hooks).
        policy.lifecycle = crate::core::lifecycle::Lifecycle::default();
        policy.hooks = None;
        let mode = f.mode.unwrap_or(Mode::Vertical);
        if mode == Mode::Vertical && pf.rule.as_deref() == Some("target") {
            problems.push(format!(
                "{at}.rule: \"target\" applies to horizontal modes (mode = \"horizontal\" or \"vertical-then-horizontal\"); vertical sizing keeps its thresholds"
            ));
        }
        let pair = |key: &str,
                    v: Option<[i64; 2]>,
                    lo: i64,
                    hi: i64,
                    d: (u32, u32),
                    p: &mut Vec<String>| {
            let Some([a, b]) = v else { return d };
            if !(lo..=hi).contains(&a) || !(lo..=hi).contains(&b) || a > b {
                p.push(format!(
                    "{at}.{key}: [{a}, {b}] must be [min, max] with {lo} <= min <= max <= {hi}"
                ));
                return d;
            }
            (a as u32, b as u32)
        };
        let (cmin, cmax) = pair("cores", f.cores, 1, 8192, (1, 4), problems);
        let (mmin, mmax) = pair(
            "memory_mib",
            f.memory_mib,
            16,
            1 << 30,
            (512, 8192),
            problems,
        );
        let (knob, cpu_min, cpu_max, cpu_step) = match f.cpulimit {
            None => (
                CpuKnob::Cores,
                cmin,
                cmax,
                range(&at, "core_step", f.core_step, 1, 8192, 1, problems),
            ),
            Some([a, b]) => {
                let centi = |x: f64| (x * 100.0).round() as i64;
                let step = f.cpulimit_step.map_or(50, centi);
                if !(a > 0.0 && a <= b && b <= 8192.0) {
                    problems.push(format!(
                        "{at}.cpulimit: [{a}, {b}] must be [min, max] with 0 < min <= max <= 8192"
                    ));
                }
                if !(1..=819_200).contains(&step) {
                    problems.push(format!("{at}.cpulimit_step: must be in 0.01..=8192"));
                }
                let c = |x: i64| u32::try_from(x.clamp(1, 819_200)).unwrap_or(1);
                (CpuKnob::Cpulimit, c(centi(a)), c(centi(b)), c(step))
            }
        };
        let mem_up = range(
            &at,
            "memory_up_threshold",
            f.memory_up_threshold,
            1,
            100,
            85,
            problems,
        );
        let mem_down = range(
            &at,
            "memory_down_threshold",
            f.memory_down_threshold,
            0,
            99,
            40,
            problems,
        );
        if mem_down >= mem_up {
            problems.push(format!(
                "{at}.memory_down_threshold: {mem_down} must be below memory_up_threshold ({mem_up})"
            ));
        }
        let vertical = VerticalPolicy {
            cpu_up_threshold: policy.scale_up_threshold,
            cpu_down_threshold: policy.scale_down_threshold,
            mem_up_threshold: mem_up,
            mem_down_threshold: mem_down,
            up_ticks: policy.scale_up_ticks,
            down_ticks: policy.scale_down_ticks,
            up_cooldown: policy.scale_up_cooldown,
            down_cooldown: policy.scale_down_cooldown,
            max_actions_per_hour: policy.max_actions_per_hour,
            retry_backoff: policy.retry_backoff,
            retry_backoff_max: policy.retry_backoff_max,
            knob,
            cpu_min,
            cpu_max,
            cpu_step,
            memory_min_mib: mmin,
            memory_max_mib: mmax,
            memory_step_mib: range(
                &at,
                "memory_step_mib",
                f.memory_step_mib,
                1,
                1 << 30,
                512,
                problems,
            ),
            memory_margin_mib: range(
                &at,
                "memory_margin_mib",
                f.memory_margin_mib,
                0,
                1 << 30,
                256,
                problems,
            ),
            host_memory_reserve_mib: reserve,
            schedule: policy.schedule.clone(),
            pricing: Pricing {
                instance_micros: policy.instance_cost_micros,
                core_micros: price(&at, "core_cost_per_hour", f.core_cost_per_hour, problems),
                gib_micros: price(&at, "gib_cost_per_hour", f.gib_cost_per_hour, problems),
                max_micros: policy.max_cost_micros,
            },
        };
        if knob == CpuKnob::Cpulimit {
            for (j, w) in policy.schedule.windows().iter().enumerate() {
                if w.cores.is_some() {
                    problems.push(format!(
                        "{at}.schedule[{j}].cores: this container is sized by cpulimit; a window can set memory_mib only"
                    ));
                }
            }
        }
        let source = f.clone_source.and_then(|s| match u32::try_from(s) {
            Ok(v) if v >= 100 => Some(v),
            _ => {
                problems.push(format!("{at}.clone_source: {s} is not a vmid"));
                None
            }
        });
        if !vmids.insert(vmid) {
            problems.push(format!("{at}.vmid: {vmid} is listed twice"));
        }
        if !names.insert(name.clone()) {
            problems.push(format!("{at}.name: {name} is used twice"));
        }
        out.push(Lxc {
            vmid,
            name,
            mode,
            policy,
            vertical,
            clone: CloneSpec {
                source,
                full: f.full_clone.unwrap_or(true),
                storage: f.clone_storage,
                pool: f.clone_pool,
                snapname: f.clone_snapshot,
            },
        });
    }
    out
}

#[cfg(test)]
mod tests;
