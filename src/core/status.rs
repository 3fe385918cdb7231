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
    pub high_ticks: u32,
    pub low_ticks: u32,
    pub scale_up_cooldown_left_ms: u64,
    pub scale_down_cooldown_left_ms: u64,
    pub budget_left: u32,
    pub max_actions_per_hour: u32,
    pub owned_clones: Vec<String>,
    pub pending: Option<Pending>,
    pub members: Vec<MemberStatus>,
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
