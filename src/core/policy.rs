//! The engine's view of a group's policy: already validated, in plain units.

use std::sync::Arc;
use std::time::Duration;

use super::lifecycle::{Hooks, Lifecycle};
use super::output::Action;
use super::schedule::Schedule;

/// What to do when the primary stops reporting for `death_timeout`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PrimaryDeath {
    /// Create the primary again from its last known configuration.
    Recreate,
    /// Make the oldest live clone the group's primary (no I/O; falls back to
    /// recreate when no clone is alive).
    Promote,
    /// Destroy the group's owned clones (budget permitting) and wait for the
    /// primary to come back.
    Drain,
}

/// Scaling policy of one group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Expected cadence of the primary's samples; one evaluation (tick) per interval.
    pub sample_interval: Duration,
    /// Percent of the group's vCPU time; above it a tick counts as high.
    pub scale_up_threshold: u32,
    /// Consecutive high ticks before scaling up.
    pub scale_up_ticks: u32,
    /// Percent; below it a tick counts as low.
    pub scale_down_threshold: u32,
    /// Consecutive low ticks before scaling down.
    pub scale_down_ticks: u32,
    /// Minimum time from one scale-up to the next.
    pub scale_up_cooldown: Duration,
    /// Minimum time from any scale action to a scale-down.
    pub scale_down_cooldown: Duration,
    /// No sample for this long: the instance is dead.
    pub death_timeout: Duration,
    /// Samples of an instance younger than this are not averaged (boot CPU).
    pub startup_grace: Duration,
    /// Lower bound on instances, primary included.
    pub min_instances: u32,
    /// Upper bound on instances, primary included; never exceeded.
    pub max_instances: u32,
    /// Actions in any sliding hour; never exceeded.
    pub max_actions_per_hour: u32,
    /// Clone name template with `{primary}` (the primary's label) and `{n}`.
    pub clone_name: String,
    /// Primary death handling.
    pub primary_death: PrimaryDeath,
    /// vCPUs per instance: the source's count (albatross: 1 for solo5, whatever
    /// `numcpus` says; `numcpus` for bhyve) unless `vcpus_fixed`, else this.
    pub vcpus: u32,
    /// The operator set `vcpus`: it overrides what the source says.
    pub vcpus_fixed: bool,
    /// Where a clone runs: on a CPU of its own where the orchestrator allows one
    /// (`spread`), or on the primary's (`same`).
    pub clone_cpus: CloneCpus,
    /// Addresses for clones of a primary with a static one (`clone_ipv4`).
    pub clone_ipv4: Option<ClonePool>,
    /// First retry delay after a failed action; doubles per failure.
    pub retry_backoff: Duration,
    /// Cap of the retry delay.
    pub retry_backoff_max: Duration,
    /// Count a tick as high ahead of a forecast breach (see `core::predict`, and the
    /// seasonal forecast of `core::seasonal`), while the recent forecast error is at
    /// most `forecast_max_error`. Forecasts only ever add high ticks: never a scale-in.
    pub predictive: bool,
    /// How far ahead the forecast looks.
    pub forecast_horizon: Duration,
    /// Percentage points of the group average: above this mean absolute error the
    /// forecast is ignored and the group is purely reactive. For the seasonal
    /// forecast: percent, its MAPE over the last day.
    pub forecast_max_error: u32,
    /// `predictive = "shadow"`: the seasonal forecast is fitted, scored and logged
    /// (what it would have done) but never counts a tick; `predictive` is false then.
    pub predictive_shadow: bool,
    /// Added to `boot_time`: how far ahead of a seasonal forecast's peak a
    /// scale-out starts.
    pub forecast_margin: Duration,
    /// How often the seasonal forecast is fitted again (daemon and simulator).
    pub forecast_refit: Duration,
    /// Replace a lone outlier tick (robust z-score over recent ticks) by the median.
    pub anomaly_guard: bool,
    /// Robust z-score threshold of the anomaly guard, in hundredths (350 = 3.5).
    pub anomaly_z_hundredths: u32,
    /// Time from a clone's creation until it serves load (the simulator's model).
    pub boot_time: Duration,
    /// Percent; one evaluation at or above it starts an emergency burst of
    /// `emergency_step` scale-ups that skip the tick streak and the up-cooldown (never
    /// `max_instances`, the budget, a cost ceiling or one-action-at-a-time). Off if `None`.
    pub emergency_threshold: Option<u32>,
    /// Scale-ups of one emergency burst, emitted one per evaluation after the previous
    /// one was acknowledged.
    pub emergency_step: u32,
    /// Cost of one instance per hour, in millionths of the operator's currency unit
    /// (integers keep `Policy` `Eq`; the config key is a decimal).
    pub instance_cost_micros: u64,
    /// Ceiling on the group's hourly cost (instances × `instance_cost_micros`), in
    /// millionths: a scale-up that would exceed it is not emitted. None: no ceiling.
    pub max_cost_micros: Option<u64>,
    /// Decisions that wait for an operator's approval instead of being executed.
    pub require_approval: RequireApproval,
    /// How long a decision waits for approval before it is dropped.
    pub approval_timeout: Duration,
    /// Windows of wall-clock time that override `min_instances` / `max_instances`
    /// (see `core::schedule`). Empty: none.
    pub schedule: Schedule,
    /// Readiness and drain of clones (`health_check`, `ready_timeout`,
    /// `drain_period`, the hooks).
    pub lifecycle: Lifecycle,
    /// What the shell runs for the lifecycle (shared: one copy per config).
    pub hooks: Option<std::sync::Arc<Hooks>>,
    /// How the group average becomes a decision: threshold streaks (the default) or
    /// target tracking (see [`Rule`]).
    pub rule: Rule,
    /// `rule = "target"`: the utilisation aimed at, percent of the instances' vCPUs.
    pub target_cpu_percent: u32,
    /// `rule = "target"`: no change while the average is within this share of the
    /// target, in per mille (100 = ±10 %, HPA's default).
    pub tolerance_pm: u32,
    /// `rule = "target"`: scale-ups of one burst towards the desired count.
    pub max_step_up: u32,
    /// `rule = "target"`: a scale-down needs every desired count of this window to
    /// be lower than the instances staying (HPA's stabilization window).
    pub scale_down_stabilization: Duration,
}

/// `rule`: how a group decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Rule {
    /// Scale by one after `scale_up_ticks` above / `scale_down_ticks` below the thresholds.
    #[default]
    Thresholds,
    /// desired = ceil(demand / (target × vCPUs per instance)), as the HPA.
    Target,
}

impl Rule {
    pub const ALL: [Self; 2] = [Self::Thresholds, Self::Target];

    /// The config value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Thresholds => "thresholds",
            Self::Target => "target",
        }
    }

    /// From its config value.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// `clone_cpus`: where a clone's vCPU is pinned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CloneCpus {
    /// The least used CPU the orchestrator's policy allows: a clone adds a CPU.
    #[default]
    Spread,
    /// The primary's CPUs (albatross pins both to them: a clone adds no CPU).
    Same,
}

impl CloneCpus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Spread => "spread",
            Self::Same => "same",
        }
    }
}

/// `clone_ipv4`: where a clone's static address comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClonePool {
    /// The primary's own address, copied (the operator's choice, `"keep"`).
    Keep,
    /// The lowest free address of `first..=last`.
    Range {
        first: std::net::Ipv4Addr,
        last: std::net::Ipv4Addr,
    },
}

impl ClonePool {
    /// `"keep"` or `"<first>-<last>"`.
    pub fn parse(s: &str) -> Result<Self, String> {
        if s == "keep" {
            return Ok(Self::Keep);
        }
        let bad = || {
            format!(
                "{s:?} is not \"keep\" or a range of IPv4 addresses such as \"10.0.42.10-10.0.42.50\""
            )
        };
        let (a, b) = s.split_once('-').ok_or_else(bad)?;
        let first: std::net::Ipv4Addr = a.trim().parse().map_err(|_| bad())?;
        let last: std::net::Ipv4Addr = b.trim().parse().map_err(|_| bad())?;
        if first > last {
            return Err(format!("{s:?}: {first} is after {last}"));
        }
        Ok(Self::Range { first, last })
    }

    /// The lowest address of the pool not in `used` (`None` for `keep`, or when
    /// every address is taken).
    pub fn pick(&self, used: &[std::net::Ipv4Addr]) -> Option<std::net::Ipv4Addr> {
        let Self::Range { first, last } = self else {
            return None;
        };
        (u32::from(*first)..=u32::from(*last))
            .map(std::net::Ipv4Addr::from)
            .find(|a| !used.contains(a))
    }

    /// Addresses in the pool (`None`: unbounded, `keep`).
    pub fn size(&self) -> Option<u64> {
        match self {
            Self::Keep => None,
            Self::Range { first, last } => {
                Some(u64::from(u32::from(*last)) - u64::from(u32::from(*first)) + 1)
            }
        }
    }
}

/// Millionths of the currency unit as the operator wrote them (`2.5`, not `2500000`).
pub fn money(micros: u64) -> String {
    (micros as f64 / 1e6).to_string()
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            sample_interval: Duration::from_secs(10),
            scale_up_threshold: 90,
            scale_up_ticks: 3,
            scale_down_threshold: 40,
            scale_down_ticks: 5,
            scale_up_cooldown: Duration::from_secs(60),
            scale_down_cooldown: Duration::from_secs(600),
            death_timeout: Duration::from_secs(90),
            startup_grace: Duration::ZERO,
            min_instances: 1,
            max_instances: 4,
            max_actions_per_hour: 12,
            clone_name: "{primary}-clone-{n}".to_string(),
            primary_death: PrimaryDeath::Recreate,
            vcpus: 1,
            vcpus_fixed: false,
            clone_cpus: CloneCpus::Spread,
            clone_ipv4: None,
            retry_backoff: Duration::from_secs(10),
            retry_backoff_max: Duration::from_secs(300),
            predictive: false,
            forecast_horizon: Duration::from_secs(60),
            forecast_max_error: 10,
            predictive_shadow: false,
            forecast_margin: Duration::from_secs(300),
            forecast_refit: Duration::from_secs(3600),
            anomaly_guard: false,
            anomaly_z_hundredths: 350,
            boot_time: Duration::from_secs(2),
            emergency_threshold: None,
            emergency_step: 1,
            instance_cost_micros: 0,
            max_cost_micros: None,
            require_approval: RequireApproval::default(),
            approval_timeout: Duration::from_secs(15 * 60),
            schedule: Schedule::default(),
            lifecycle: Lifecycle::default(),
            hooks: None,
            rule: Rule::Thresholds,
            target_cpu_percent: 75,
            tolerance_pm: 100,
            max_step_up: 2,
            scale_down_stabilization: Duration::from_secs(300),
        }
    }
}

/// Which decisions wait for an operator (`require_approval`); none by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RequireApproval {
    pub scale_up: bool,
    pub scale_down: bool,
    /// Emergency scale-ups (see `emergency_threshold`).
    pub emergency: bool,
    /// Re-creating a dead primary.
    pub replace_primary: bool,
}

impl RequireApproval {
    /// The names of the config key, in order.
    pub const NAMES: [&'static str; 4] = ["scale_up", "scale_down", "emergency", "replace_primary"];

    /// Everything (`require_approval = "all"`).
    pub const ALL: Self = Self {
        scale_up: true,
        scale_down: true,
        emergency: true,
        replace_primary: true,
    };

    /// Turn on the action named `name`; `false` if the name is unknown.
    pub fn set(&mut self, name: &str) -> bool {
        match name {
            "scale_up" => self.scale_up = true,
            "scale_down" => self.scale_down = true,
            "emergency" => self.emergency = true,
            "replace_primary" => self.replace_primary = true,
            _ => return false,
        }
        true
    }

    /// The names turned on, in [`Self::NAMES`] order.
    pub fn names(&self) -> Vec<&'static str> {
        let on = [
            self.scale_up,
            self.scale_down,
            self.emergency,
            self.replace_primary,
        ];
        Self::NAMES
            .into_iter()
            .zip(on)
            .filter_map(|(n, on)| on.then_some(n))
            .collect()
    }

    /// Whether an `action` must wait. An emergency scale-up waits if either
    /// `emergency` or `scale_up` is listed (listing `scale_up` holds every scale-up;
    /// `emergency` alone holds only the emergency ones). A promotion (bookkeeping, no
    /// I/O) and the clean-up of a lost clone never wait.
    pub fn covers(&self, action: Action, emergency: bool) -> bool {
        match action {
            Action::ScaleUp => self.scale_up || (emergency && self.emergency),
            Action::ScaleDown => self.scale_down,
            Action::ReplacePrimary => self.replace_primary,
            Action::Promote | Action::CloneLost => false,
        }
    }
}

/// Equal policies share one allocation: the groups of a large fleet mostly have
/// the `[policy]` defaults (≈ 400 bytes per group and copy otherwise; issue 18).
#[derive(Debug, Default)]
pub struct Interner(Vec<Arc<Policy>>);

impl Interner {
    /// Distinct policies remembered: a bound on the compares per group.
    const KEEP: usize = 16;

    /// `p`, shared with an equal policy interned before if there is one.
    pub fn intern(&mut self, p: Policy) -> Arc<Policy> {
        if let Some(a) = self.0.iter().find(|a| ***a == p) {
            return a.clone();
        }
        let a = Arc::new(p);
        if self.0.len() < Self::KEEP {
            self.0.push(a.clone());
        }
        a
    }
}
