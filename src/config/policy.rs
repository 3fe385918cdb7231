//! The policy keys: parsed from `[policy]` and every `[[group]]`, merged over the
//! defaults, and checked with messages that name the key.

use std::time::Duration;

use serde::Deserialize;

use super::GROUP_KEYS;
use crate::core::naming;
use crate::core::policy::ClonePool;
use crate::core::schedule::Schedule;
use crate::core::{CloneCpus, Policy, PrimaryDeath, RequireApproval, Rule};
use crate::name::{self, Name};

/// The policy keys, all optional: `[policy]` and every `[[group]]` may set them.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PolicyFile {
    #[serde(default, with = "humantime_serde")]
    sample_interval: Option<Duration>,
    scale_up_threshold: Option<i64>,
    scale_up_ticks: Option<i64>,
    scale_down_threshold: Option<i64>,
    scale_down_ticks: Option<i64>,
    #[serde(default, with = "humantime_serde")]
    scale_up_cooldown: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    scale_down_cooldown: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    death_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    startup_grace: Option<Duration>,
    min_instances: Option<i64>,
    max_instances: Option<i64>,
    max_actions_per_hour: Option<i64>,
    clone_name: Option<String>,
    primary_death: Option<PrimaryDeath>,
    vcpus: Option<i64>,
    /// Raw, checked by hand (`spread` or `same`).
    clone_cpus: Option<String>,
    /// Raw, checked by hand (`keep` or `<first>-<last>`).
    clone_ipv4: Option<String>,
    #[serde(default, with = "humantime_serde")]
    retry_backoff: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    retry_backoff_max: Option<Duration>,
    /// Raw, checked by `predictive_mode` (`true`, `false` or `"shadow"`).
    predictive: Option<toml::Value>,
    #[serde(default, with = "humantime_serde")]
    forecast_horizon: Option<Duration>,
    forecast_max_error: Option<i64>,
    #[serde(default, with = "humantime_serde")]
    forecast_margin: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    forecast_refit: Option<Duration>,
    anomaly_guard: Option<bool>,
    anomaly_z: Option<f64>,
    #[serde(default, with = "humantime_serde")]
    boot_time: Option<Duration>,
    emergency_threshold: Option<i64>,
    emergency_step: Option<i64>,
    instance_cost_per_hour: Option<f64>,
    max_cost_per_hour: Option<f64>,
    /// Raw, checked by `approvals` (its own messages, not serde's).
    require_approval: Option<toml::Value>,
    #[serde(default, with = "humantime_serde")]
    approval_timeout: Option<Duration>,
    /// Raw, checked by hand (`tcp:PORT` or `none`).
    health_check: Option<String>,
    #[serde(default, with = "humantime_serde")]
    health_check_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    ready_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    drain_period: Option<Duration>,
    /// Raw hook tables, checked by `hooks::parse` (messages that name the key).
    on_ready: Option<toml::Value>,
    on_draining: Option<toml::Value>,
    on_removed: Option<toml::Value>,
    /// Raw `[[...schedule]]` tables, parsed by `policy_file` into `windows`.
    schedule: Option<toml::Value>,
    #[serde(skip)]
    pub(super) windows: Option<Schedule>,
    /// Raw, checked by hand (`thresholds` or `target`).
    pub(super) rule: Option<String>,
    target_cpu_percent: Option<i64>,
    tolerance: Option<f64>,
    max_step_up: Option<i64>,
    #[serde(default, with = "humantime_serde")]
    scale_down_stabilization: Option<Duration>,
}

/// `require_approval`, read by hand so that every mistake names the key: `"all"`, one
/// action, or a list of actions (`["all"]` too; duplicates are harmless). The error
/// starts with the key (`require_approval: ...`, `require_approval[1]: ...`).
fn approvals(v: &toml::Value) -> Result<RequireApproval, String> {
    let expected = || {
        format!(
            "expected \"all\" or a list of actions ({})",
            RequireApproval::NAMES.join(", ")
        )
    };
    let action = |set: &mut RequireApproval, n: &str| {
        if set.set(n) {
            Ok(())
        } else {
            Err(format!(
                "require_approval: unknown action {n:?} ({})",
                expected()
            ))
        }
    };
    let mut set = RequireApproval::default();
    match v {
        toml::Value::String(s) if s == "all" => set = RequireApproval::ALL,
        toml::Value::String(s) => action(&mut set, s)?,
        toml::Value::Array(items) => {
            let names = items
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    v.as_str().ok_or_else(|| {
                        format!(
                            "require_approval[{i}]: expected an action ({}), got {}",
                            RequireApproval::NAMES.join(", "),
                            kind(v)
                        )
                    })
                })
                .collect::<Result<Vec<&str>, String>>()?;
            if names.contains(&"all") {
                if names.iter().any(|n| *n != "all") {
                    return Err(
                        "require_approval: \"all\" stands alone: write require_approval = \"all\", or list only actions"
                            .into(),
                    );
                }
                set = RequireApproval::ALL;
            }
            for n in names.into_iter().filter(|n| *n != "all") {
                action(&mut set, n)?;
            }
        }
        other => {
            return Err(format!(
                "require_approval: {}, got {}",
                expected(),
                kind(other)
            ));
        }
    }
    Ok(set)
}

/// `predictive`: `true` (act on forecasts), `false`, or `"shadow"` (forecast, score
/// and log, never act). Returns (predictive, shadow).
fn predictive_mode(v: &toml::Value) -> Result<(bool, bool), String> {
    match v {
        toml::Value::Boolean(b) => Ok((*b, false)),
        toml::Value::String(s) if s == "shadow" => Ok((false, true)),
        toml::Value::String(s) => Err(format!(
            "predictive: {s:?} is not true, false or \"shadow\" (forecast and log without acting)"
        )),
        other => Err(format!(
            "predictive: expected true, false or \"shadow\", got {}",
            kind(other)
        )),
    }
}

/// Bounds of `forecast_refit`: a fit costs a fraction of a second per group.
const REFIT_MIN: Duration = Duration::from_secs(300);
const REFIT_MAX: Duration = Duration::from_secs(7 * 86_400);
/// Upper bound of `forecast_margin`.
const MARGIN_MAX: Duration = Duration::from_secs(86_400);

/// A TOML value's type with its article, for messages.
fn kind(v: &toml::Value) -> &'static str {
    match v {
        toml::Value::String(_) => "a string",
        toml::Value::Integer(_) => "an integer",
        toml::Value::Float(_) => "a float",
        toml::Value::Boolean(_) => "a boolean",
        toml::Value::Datetime(_) => "a datetime",
        toml::Value::Array(_) => "an array",
        toml::Value::Table(_) => "a table",
    }
}

pub(super) fn policy_file(
    t: toml::Table,
    at: &str,
    problems: &mut Vec<String>,
) -> Option<PolicyFile> {
    match PolicyFile::deserialize(toml::Value::Table(t)) {
        Ok(mut f) => {
            // Windows size containers only under [[lxc]] (and [policy], for them).
            let lxc_keys = !at.starts_with("group");
            if let Some(v) = f.schedule.take() {
                f.windows = super::schedule::parse(v, at, lxc_keys, problems);
            }
            Some(f)
        }
        Err(e) => {
            let hint = if e.message().contains("unknown field") && at.starts_with("group") {
                format!(
                    " (a [[group]] takes {} and the [policy] keys)",
                    GROUP_KEYS.join(", ")
                )
            } else {
                String::new()
            };
            problems.push(format!("{}{hint}", super::de_error(at, &e)));
            None
        }
    }
}

pub(super) fn merge(mut p: Policy, f: &PolicyFile) -> Policy {
    fn set<T: Copy>(dst: &mut T, src: Option<T>) {
        if let Some(v) = src {
            *dst = v;
        }
    }
    fn set_u32(dst: &mut u32, src: Option<i64>) {
        if let Some(v) = src {
            // Out-of-range values are reported by check(); clamp so merging never fails.
            *dst = u32::try_from(v.max(0)).unwrap_or(u32::MAX);
        }
    }
    set(&mut p.sample_interval, f.sample_interval);
    set_u32(&mut p.scale_up_threshold, f.scale_up_threshold);
    set_u32(&mut p.scale_up_ticks, f.scale_up_ticks);
    set_u32(&mut p.scale_down_threshold, f.scale_down_threshold);
    set_u32(&mut p.scale_down_ticks, f.scale_down_ticks);
    set(&mut p.scale_up_cooldown, f.scale_up_cooldown);
    set(&mut p.scale_down_cooldown, f.scale_down_cooldown);
    set(&mut p.death_timeout, f.death_timeout);
    set(&mut p.startup_grace, f.startup_grace);
    set_u32(&mut p.min_instances, f.min_instances);
    set_u32(&mut p.max_instances, f.max_instances);
    set_u32(&mut p.max_actions_per_hour, f.max_actions_per_hour);
    if let Some(t) = &f.clone_name {
        p.clone_name = t.clone();
    }
    set(&mut p.primary_death, f.primary_death);
    set_u32(&mut p.vcpus, f.vcpus);
    p.vcpus_fixed |= f.vcpus.is_some();
    if let Some(pool) = f
        .clone_ipv4
        .as_deref()
        .and_then(|v| ClonePool::parse(v).ok())
    {
        p.clone_ipv4 = Some(pool);
    }
    match f.clone_cpus.as_deref() {
        Some("spread") => p.clone_cpus = CloneCpus::Spread,
        Some("same") => p.clone_cpus = CloneCpus::Same,
        _ => {}
    }
    set(&mut p.retry_backoff, f.retry_backoff);
    set(&mut p.retry_backoff_max, f.retry_backoff_max);
    if let Some(Ok((on, shadow))) = f.predictive.as_ref().map(predictive_mode) {
        p.predictive = on;
        p.predictive_shadow = shadow;
    }
    set(&mut p.forecast_horizon, f.forecast_horizon);
    set_u32(&mut p.forecast_max_error, f.forecast_max_error);
    set(&mut p.forecast_margin, f.forecast_margin);
    set(&mut p.forecast_refit, f.forecast_refit);
    set(&mut p.anomaly_guard, f.anomaly_guard);
    if let Some(z) = f.anomaly_z.filter(|z| z.is_finite()) {
        // Hundredths keep Policy `Eq`; check() reports values out of range.
        p.anomaly_z_hundredths = (z.clamp(0.0, 1000.0) * 100.0).round() as u32;
    }
    set(&mut p.boot_time, f.boot_time);
    if let Some(v) = f.emergency_threshold {
        p.emergency_threshold = Some(u32::try_from(v.max(0)).unwrap_or(u32::MAX));
    }
    set_u32(&mut p.emergency_step, f.emergency_step);
    // check() reports values out of range.
    if let Some(c) = f.instance_cost_per_hour.filter(|c| c.is_finite()) {
        p.instance_cost_micros = cost_micros(c);
    }
    if let Some(c) = f.max_cost_per_hour.filter(|c| c.is_finite()) {
        p.max_cost_micros = Some(cost_micros(c));
    }
    // A list replaces the one of [policy] (`[]` turns approvals off for a group).
    // check() reports a bad value.
    if let Some(set) = f.require_approval.as_ref().and_then(|v| approvals(v).ok()) {
        p.require_approval = set;
    }
    set(&mut p.approval_timeout, f.approval_timeout);
    if let Some(s) = &f.windows {
        p.schedule = s.clone();
    }
    set(&mut p.lifecycle.ready_timeout, f.ready_timeout);
    set(&mut p.lifecycle.drain_period, f.drain_period);
    super::hooks::merge(&mut p, &f.hook_keys());
    if let Some(r) = f.rule.as_deref().and_then(Rule::parse) {
        p.rule = r;
    }
    set_u32(&mut p.target_cpu_percent, f.target_cpu_percent);
    if let Some(t) = f.tolerance.filter(|t| t.is_finite()) {
        // Per mille keeps Policy `Eq`; check() reports values out of range.
        p.tolerance_pm = (t.clamp(0.0, 1.0) * 1000.0).round() as u32;
    }
    set_u32(&mut p.max_step_up, f.max_step_up);
    set(&mut p.scale_down_stabilization, f.scale_down_stabilization);
    p
}

impl PolicyFile {
    /// The first lifecycle key this section sets, if any.
    pub(super) fn lifecycle_key(&self) -> Option<&'static str> {
        let k = self.hook_keys();
        [
            ("health_check", k.health_check.is_some()),
            ("health_check_timeout", k.health_check_timeout.is_some()),
            ("ready_timeout", self.ready_timeout.is_some()),
            ("drain_period", self.drain_period.is_some()),
            ("on_ready", k.on_ready.is_some()),
            ("on_draining", k.on_draining.is_some()),
            ("on_removed", k.on_removed.is_some()),
        ]
        .into_iter()
        .find_map(|(key, set)| set.then_some(key))
    }

    /// The lifecycle hook keys of this section, raw.
    pub(super) fn hook_keys(&self) -> super::hooks::Keys<'_> {
        super::hooks::Keys {
            health_check: self.health_check.as_deref(),
            health_check_timeout: self.health_check_timeout,
            on_ready: self.on_ready.as_ref(),
            on_draining: self.on_draining.as_ref(),
            on_removed: self.on_removed.as_ref(),
        }
    }
}

/// Upper bound of the cost keys (per hour, in the operator's currency unit).
pub(super) const MAX_COST: f64 = 1e9;

/// A cost per hour in millionths (integers keep policies `Eq`).
pub(super) fn cost_micros(v: f64) -> u64 {
    (v.clamp(0.0, MAX_COST) * 1e6).round() as u64
}

/// Check an effective policy. A problem is reported under the section that set the
/// offending key: this one, or `[policy]`, whose own check already reported it.
pub(super) fn check(
    p: &Policy,
    here: &PolicyFile,
    at: &str,
    primary: Option<&Name>,
    problems: &mut Vec<String>,
) {
    let is_policy = at == "policy";
    // Report a rule on this section if it set one of the keys involved, or if this
    // is [policy] itself; otherwise the [policy] check already said it.
    let mut report = |set_here: bool, msg: String| {
        if set_here || is_policy {
            problems.push(format!("{at}.{msg}"));
        }
    };
    if let Some(v) = here
        .clone_cpus
        .as_deref()
        .filter(|v| !["spread", "same"].contains(v))
    {
        report(
            true,
            format!(
                "clone_cpus: {v:?} is not \"spread\" (a CPU of its own per clone, the default) or \"same\" (the primary's)"
            ),
        );
    }
    if let Some(Err(e)) = here.clone_ipv4.as_deref().map(ClonePool::parse) {
        report(true, format!("clone_ipv4: {e}"));
    }
    if let Some(v) = here.rule.as_deref().filter(|v| Rule::parse(v).is_none()) {
        report(
            true,
            format!(
                "rule: {v:?} is not \"thresholds\" (streaks over scale_up_threshold / scale_down_threshold, the default) or \"target\" (target tracking at target_cpu_percent)"
            ),
        );
    }
    if let Some(t) = here
        .tolerance
        .filter(|t| !(t.is_finite() && (0.0..1.0).contains(t)))
    {
        report(
            true,
            format!(
                "tolerance: {t} is out of range 0.0..1.0 (a share of target_cpu_percent; 0.1 = ±10 %)"
            ),
        );
    }
    let ranges: [(&str, Option<i64>, i64, i64); 12] = [
        ("target_cpu_percent", here.target_cpu_percent, 1, 100),
        ("max_step_up", here.max_step_up, 1, 10_000),
        ("scale_up_threshold", here.scale_up_threshold, 0, 100),
        ("scale_down_threshold", here.scale_down_threshold, 0, 100),
        ("scale_up_ticks", here.scale_up_ticks, 1, 1_000_000),
        ("scale_down_ticks", here.scale_down_ticks, 1, 1_000_000),
        ("min_instances", here.min_instances, 1, 10_000),
        ("max_instances", here.max_instances, 1, 10_000),
        (
            "max_actions_per_hour",
            here.max_actions_per_hour,
            1,
            1_000_000,
        ),
        ("vcpus", here.vcpus, 1, 4096),
        ("forecast_max_error", here.forecast_max_error, 0, 100),
        ("emergency_step", here.emergency_step, 1, 10_000),
    ];
    for (key, value, lo, hi) in ranges {
        if let Some(v) = value.filter(|v| !(lo..=hi).contains(v)) {
            report(true, format!("{key}: {v} is out of range {lo}..={hi}"));
        }
    }
    let (up, down) = (p.scale_up_threshold, p.scale_down_threshold);
    if down >= up && up <= 100 {
        report(
            here.scale_up_threshold.is_some() || here.scale_down_threshold.is_some(),
            format!(
                "scale_down_threshold: {down} must be below scale_up_threshold ({up}), or the group would flap"
            ),
        );
    }
    if let Some(e) = p.emergency_threshold
        && (e <= up || e > 100)
    {
        // The value as written (merge clamps it), or the inherited one.
        let e = here.emergency_threshold.unwrap_or(i64::from(e));
        let range = if up < 100 {
            format!(" ({}..=100)", up + 1)
        } else {
            "; lower scale_up_threshold first".into()
        };
        report(
            here.emergency_threshold.is_some() || here.scale_up_threshold.is_some(),
            format!(
                "emergency_threshold: {e} must be above scale_up_threshold ({up}) and at most 100{range}"
            ),
        );
    }
    if let Some(c) = here
        .instance_cost_per_hour
        .filter(|c| !(c.is_finite() && (0.0..=MAX_COST).contains(c)))
    {
        report(
            true,
            format!("instance_cost_per_hour: {c} is out of range 0..={MAX_COST}"),
        );
    }
    if let Some(c) = here
        .max_cost_per_hour
        .filter(|c| !(c.is_finite() && *c > 0.0 && *c <= MAX_COST))
    {
        report(
            true,
            format!("max_cost_per_hour: {c} must be above 0 and at most {MAX_COST}"),
        );
    }
    if let Some(max) = p.max_cost_micros
        && u64::from(p.min_instances).saturating_mul(p.instance_cost_micros) > max
    {
        report(
            here.max_cost_per_hour.is_some()
                || here.instance_cost_per_hour.is_some()
                || here.min_instances.is_some(),
            format!(
                "max_cost_per_hour: {} is below min_instances ({}) x instance_cost_per_hour ({})",
                max as f64 / 1e6,
                p.min_instances,
                p.instance_cost_micros as f64 / 1e6
            ),
        );
    }
    if let Some(Err(e)) = here.require_approval.as_ref().map(approvals) {
        report(true, e);
    }
    if let Some(Err(e)) = here.predictive.as_ref().map(predictive_mode) {
        report(true, e);
    }
    if let Some(r) = here
        .forecast_refit
        .filter(|r| !(REFIT_MIN..=REFIT_MAX).contains(r))
    {
        report(
            true,
            format!(
                "forecast_refit: {} is out of range 5m..=7days",
                humantime::format_duration(r)
            ),
        );
    }
    if let Some(m) = here.forecast_margin.filter(|m| *m > MARGIN_MAX) {
        report(
            true,
            format!(
                "forecast_margin: {} is above 1day",
                humantime::format_duration(m)
            ),
        );
    }
    if p.approval_timeout < Duration::from_secs(1) {
        report(
            here.approval_timeout.is_some(),
            "approval_timeout: must be at least 1s".into(),
        );
    }
    if p.min_instances > p.max_instances {
        report(
            here.min_instances.is_some() || here.max_instances.is_some(),
            format!(
                "min_instances: {} is above max_instances ({})",
                p.min_instances, p.max_instances
            ),
        );
    }
    check_windows(p, here, &mut report);
    super::hooks::check(p, &here.hook_keys(), is_policy, &mut report);
    for (key, v) in [
        ("ready_timeout", here.ready_timeout),
        ("health_check_timeout", here.health_check_timeout),
    ] {
        if v.is_some_and(|v| v < Duration::from_secs(1)) {
            report(true, format!("{key}: must be at least 1s"));
        }
    }
    if p.sample_interval.is_zero() {
        report(
            here.sample_interval.is_some(),
            "sample_interval: must be above 0s".into(),
        );
    }
    if p.death_timeout <= p.sample_interval {
        report(
            here.death_timeout.is_some() || here.sample_interval.is_some(),
            format!(
                "death_timeout: {} must be longer than sample_interval ({}), or every instance dies between two samples",
                humantime::format_duration(p.death_timeout),
                humantime::format_duration(p.sample_interval)
            ),
        );
    }
    if p.retry_backoff.is_zero() || p.retry_backoff_max < p.retry_backoff {
        report(
            here.retry_backoff.is_some() || here.retry_backoff_max.is_some(),
            "retry_backoff: must be above 0s and not above retry_backoff_max".into(),
        );
    }
    if let Some(z) = here
        .anomaly_z
        .filter(|z| !(z.is_finite() && (1.0..=100.0).contains(z)))
    {
        report(true, format!("anomaly_z: {z} is out of range 1.0..=100.0"));
    }
    if p.predictive && p.forecast_horizon < p.sample_interval {
        report(
            here.forecast_horizon.is_some() || here.predictive.is_some(),
            format!(
                "forecast_horizon: {} must be at least sample_interval ({}): the forecast looks whole ticks ahead",
                humantime::format_duration(p.forecast_horizon),
                humantime::format_duration(p.sample_interval)
            ),
        );
    }
    let template_set = here.clone_name.is_some();
    if let Err(e) = check_template(&p.clone_name, primary) {
        // A template that only fails for this group's (long) primary is this group's problem.
        let only_here = primary.is_some() && check_template(&p.clone_name, None).is_ok();
        report(template_set || only_here, format!("clone_name: {e}"));
    }
}

/// A window `min_instances` the engine can never reach: above the section's
/// `max_instances`, with no `max_instances` of its own (it replaces the section's
/// while active) and none in another window that could lift the ceiling when both
/// are active. A window's own min above its own max is reported by the parser.
fn check_windows(p: &Policy, here: &PolicyFile, report: &mut impl FnMut(bool, String)) {
    let windows = p.schedule.windows();
    for (i, w) in windows.iter().enumerate() {
        let Some(min) = w.min_instances else { continue };
        if w.max_instances.is_some()
            || min <= p.max_instances
            || windows
                .iter()
                .any(|o| o.max_instances.is_some_and(|m| m >= min))
        {
            continue;
        }
        if here.windows.is_some() {
            report(
                true,
                format!(
                    "schedule[{i}].min_instances: {min} is above max_instances ({}); the window can never reach it (give it its own max_instances, or raise max_instances)",
                    p.max_instances
                ),
            );
        } else {
            // Inherited from [policy], whose own check covers its max_instances.
            report(
                here.max_instances.is_some(),
                format!(
                    "max_instances: {} is below min_instances ({min}) of the inherited policy.schedule[{i}]; that window can never reach it",
                    p.max_instances
                ),
            );
        }
    }
}

/// A template must contain `{n}` once, only the placeholders `{primary}` and `{n}`,
/// and render to a label albatross accepts for every index up to [`naming::MAX_INDEX`].
fn check_template(t: &str, primary: Option<&Name>) -> Result<(), String> {
    if t.matches("{n}").count() != 1 {
        return Err(format!("{t:?} must contain {{n}} exactly once"));
    }
    let stripped = t.replace("{primary}", "").replace("{n}", "");
    if let Some(c) = stripped
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-' || *c == '.'))
    {
        return Err(format!(
            "{t:?} contains {c:?}; albatross labels allow only a-z, 0-9, '-' and '.' (and lower-case them)"
        ));
    }
    let label = primary.and_then(|p| p.label.as_deref()).unwrap_or("p");
    let longest = naming::render(t, label, naming::MAX_INDEX);
    if longest.len() > name::MAX_LABEL_LEN {
        return Err(format!(
            "{t:?} renders to {longest:?} ({} characters) for index {}; albatross allows at most {}",
            longest.len(),
            naming::MAX_INDEX,
            name::MAX_LABEL_LEN
        ));
    }
    name::label(&naming::render(t, label, 1)).map_err(|e| format!("{t:?}: {e}"))?;
    Ok(())
}

#[cfg(test)]
mod approval_tests;

#[cfg(test)]
mod forecast_tests;
