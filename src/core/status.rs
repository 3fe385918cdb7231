//! The read model of the API and the metrics: a plain, serializable snapshot of
//! every group, built by the engine task on request (so it is always consistent
//! with one engine state and costs nothing between requests).

use serde::Serialize;

use super::{Action, Engine, MemberState, Role, Timestamp, cpu};

/// All groups at `t_ms` (engine time: milliseconds since the daemon started).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Status {
    pub t_ms: u64,
    pub groups: Vec<GroupStatus>,
}

/// One group.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct GroupStatus {
    pub name: String,
    pub primary: String,
    /// Recommend-only (set with `POST /v1/groups/{name}/pause`).
    pub paused: bool,
    /// Manual target (set with `POST /v1/groups/{name}/scale`), if any.
    pub manual_target: Option<u32>,
    /// Members counted against `max_instances` (pending creates included).
    pub instances: u32,
    pub min_instances: u32,
    pub max_instances: u32,
    /// Names of the schedule windows in force (`schedule` policy key).
    pub active_windows: Vec<String>,
    /// The bounds in force: the schedule's while a window is active, else the above.
    pub effective_min_instances: u32,
    pub effective_max_instances: u32,
    /// vCPU-weighted average CPU % of members with a share (not only fresh ones).
    pub cpu_percent: Option<f64>,
    pub scale_up_threshold: u32,
    pub scale_down_threshold: u32,
    /// `thresholds` or `target` (the `rule` key).
    pub rule: &'static str,
    /// `rule = "target"`: `target_cpu_percent`, and the desired count of the last
    /// evaluation (absent with nothing measured).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_cpu_percent: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub desired_instances: Option<u32>,
    pub high_ticks: u32,
    pub low_ticks: u32,
    pub scale_up_cooldown_left_ms: u64,
    pub scale_down_cooldown_left_ms: u64,
    pub budget_left: u32,
    pub max_actions_per_hour: u32,
    pub owned_clones: Vec<String>,
    pub pending: Option<Pending>,
    pub members: Vec<MemberStatus>,
    /// The seasonal forecast; absent unless `predictive` is true or `"shadow"`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forecast: Option<ForecastStatus>,
}

/// The action in flight.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Pending {
    pub id: u64,
    pub action: Action,
    pub instance: String,
}

/// One member.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct MemberStatus {
    pub name: String,
    /// `primary` or `clone`.
    pub role: &'static str,
    /// A clone: `creating`, `booting` (created, not ready yet), `ready`,
    /// `draining` (chosen by a scale-down, uncounted) or `leaving`; the primary:
    /// `running`, `creating` (re-created) or `dead`.
    pub state: &'static str,
    pub owned: bool,
    pub vcpus: u32,
    /// CPU % of the last interval.
    pub cpu_percent: Option<f64>,
    /// Time since its last sample.
    pub sample_age_ms: Option<u64>,
}

/// A group's seasonal forecast (`predictive = true` or `"shadow"`).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ForecastStatus {
    /// `"true"` (acts on it) or `"shadow"` (forecasts and logs only).
    pub mode: &'static str,
    /// `trusted`, `needs_history`, `unmeasured`, `error_too_high`, `stale`,
    /// `not_fitted`.
    pub status: &'static str,
    /// The status in words ("needs 1 day of history, has 3h").
    pub message: String,
    /// Measured error: MAPE of the forecast of the last day, percent.
    pub mape_percent: Option<f64>,
    /// `forecast_max_error`: acted on only at or under it.
    pub max_error_percent: u32,
    /// `boot_time` + `forecast_margin`: how far ahead of a peak it scales out.
    pub lead_ms: u64,
    pub model: Option<String>,
    /// `forecast_refit`: how often the daemon fits it again, ms.
    pub refit_ms: u64,
    /// Unix ms of the fit; `None` before the first.
    pub fitted_at_ms: Option<i64>,
    /// History the fit saw, ms.
    pub history_ms: u64,
    /// The curve (for `/v1/groups/{name}/forecast`; not in the group listing).
    #[serde(skip)]
    pub curve: Option<std::sync::Arc<super::seasonal::Forecast>>,
}

impl Status {
    /// The snapshot of `engine` at `now`.
    pub fn of(engine: &Engine, now: Timestamp) -> Self {
        let groups = engine
            .groups()
            .iter()
            .map(|c| {
                let p = c.policy();
                let (mut sum, mut weight) = (0u64, 0u64);
                let members: Vec<MemberStatus> = c
                    .members()
                    .map(|m| {
                        if let Some(bp) = m.bp {
                            sum += u64::from(bp.min(cpu::FULL)) * u64::from(m.vcpus);
                            weight += u64::from(m.vcpus);
                        }
                        MemberStatus {
                            name: m.name.to_string(),
                            role: match m.role {
                                Role::Primary => "primary",
                                Role::Clone => "clone",
                            },
                            state: match m.state {
                                MemberState::Running if m.role == Role::Clone => "ready",
                                MemberState::Running => "running",
                                MemberState::Creating(_) => "creating",
                                MemberState::Booting(_) => "booting",
                                MemberState::Draining(_) => "draining",
                                MemberState::Leaving(_) => "leaving",
                                MemberState::Dead => "dead",
                            },
                            owned: m.owned,
                            vcpus: m.vcpus,
                            cpu_percent: m.bp.map(cpu::percent),
                            sample_age_ms: m.last_seen.map(|t| now.since(t).as_millis() as u64),
                        }
                    })
                    .collect();
                let avg = (weight > 0)
                    .then(|| cpu::percent(u32::try_from(sum / weight).unwrap_or(cpu::FULL)));
                let (up, down) = c.cooldowns_left(now);
                let (high, low) = c.counters();
                let control = c.control();
                let (eff_min, eff_max) = c.instance_bounds();
                GroupStatus {
                    name: c.group().to_string(),
                    primary: c.primary().to_string(),
                    paused: control.paused,
                    manual_target: control.target,
                    instances: u32::try_from(members.len()).unwrap_or(u32::MAX),
                    min_instances: p.min_instances,
                    max_instances: p.max_instances,
                    active_windows: c.active_windows().map(str::to_string).collect(),
                    effective_min_instances: eff_min,
                    effective_max_instances: eff_max,
                    cpu_percent: avg,
                    scale_up_threshold: p.scale_up_threshold,
                    scale_down_threshold: p.scale_down_threshold,
                    rule: p.rule.as_str(),
                    target_cpu_percent: (p.rule == crate::core::policy::Rule::Target)
                        .then_some(p.target_cpu_percent),
                    desired_instances: c.desired(),
                    high_ticks: high,
                    low_ticks: low,
                    scale_up_cooldown_left_ms: up.as_millis() as u64,
                    scale_down_cooldown_left_ms: down.as_millis() as u64,
                    budget_left: c.budget_left(now),
                    max_actions_per_hour: p.max_actions_per_hour,
                    owned_clones: c
                        .members()
                        .filter(|m| m.owned)
                        .map(|m| m.name.to_string())
                        .collect(),
                    pending: c.pending().map(|(id, action, i)| Pending {
                        id,
                        action,
                        instance: i.to_string(),
                    }),
                    members,
                    forecast: forecast_status(c, now),
                }
            })
            .collect();
        Self {
            t_ms: now.as_millis(),
            groups,
        }
    }

    /// The group named `name`.
    pub fn group(&self, name: &str) -> Option<&GroupStatus> {
        self.groups.iter().find(|g| g.name == name)
    }
}

fn forecast_status(c: &super::Group, now: Timestamp) -> Option<ForecastStatus> {
    let p = c.policy();
    let mode = match (p.predictive, p.predictive_shadow) {
        (true, _) => "true",
        (false, true) => "shadow",
        (false, false) => return None,
    };
    let standing = c.seasonal_standing(now);
    let curve = c.seasonal_forecast().cloned();
    Some(ForecastStatus {
        mode,
        status: standing.name(),
        message: standing.to_string(),
        mape_percent: curve
            .as_ref()
            .and_then(|f| f.mape_hundredths)
            .map(|m| f64::from(m) / 100.0),
        max_error_percent: p.forecast_max_error,
        lead_ms: super::time::duration_ms(c.seasonal_lead()),
        refit_ms: super::time::duration_ms(p.forecast_refit),
        model: curve
            .as_ref()
            .filter(|f| !f.model.is_empty())
            .map(|f| f.model.clone()),
        fitted_at_ms: curve.as_ref().map(|f| f.fitted_at_ms),
        history_ms: curve.as_ref().map_or(0, |f| f.history_ms),
        curve,
    })
}
