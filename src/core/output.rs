//! What the engine says: computed samples, decisions, and evaluations with their
//! "why not". Plain data; the shells render it (JSON Lines, logs, metrics).

use std::sync::Arc;

use super::cpu::{self, Bp};
use super::gate::Answer;
use super::lifecycle::Hook;
use super::reason::Reason;
use super::time::Timestamp;
use super::why::WhyNot;
use crate::name::Name;

/// Identifies an action so the actuator's result can be matched to it.
pub type ActionId = u64;

/// One engine output.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// A CPU share computed from two consecutive readings of one instance.
    Sample(SampleReport),
    /// An instance's counter went backwards: a new baseline, no value.
    CounterReset { vm: Arc<Name>, t: Timestamp },
    /// Something for an actuator to do (or record).
    Decision(Box<Decision>),
    /// One group evaluation (tick) with its counters and verdict.
    Evaluation(Evaluation),
    /// The actuator reported that an action failed; the group backs off.
    ActionFailed {
        id: ActionId,
        t: Timestamp,
        group: Arc<Name>,
        action: Action,
        instance: Arc<Name>,
        error: String,
        retry_in: std::time::Duration,
    },
    /// `predictive = "shadow"`: what the seasonal forecast would have done (a
    /// scale-out ahead of its peak); nothing is acted on.
    Shadow(Box<super::seasonal::Shadow>),
    /// A decision held for approval was answered or expired; only an
    /// [`Answer::Approved`] one is carried out (the others fail for their group).
    Answered {
        t: Timestamp,
        decision: Box<Decision>,
        answer: Answer,
    },
    /// A step of a clone's life for the shell: a readiness check, or a hook.
    Lifecycle(Hook),
    /// A scale-down's clone has drained (`drain_period`, `on_draining`): destroy
    /// it now. The decision itself was not carried out (its `drain` is set).
    Drained {
        t: Timestamp,
        decision: Box<Decision>,
    },
}

/// Slots for a channel that carries every output of `groups` groups to
/// followers: one interval's worth (a sample and an evaluation per group), since
/// albatross sends the statistics of all unikernels of an endpoint at once and
/// endpoints may be in step, so a whole interval can arrive in one burst while a
/// follower waits for its turn on a busy runtime. At least 1 024.
pub fn channel_capacity(groups: usize) -> usize {
    groups.saturating_mul(2).clamp(1024, 1 << 20)
}

/// A computed sample.
#[derive(Debug, Clone, PartialEq)]
pub struct SampleReport {
    pub t: Timestamp,
    pub vm: Arc<Name>,
    /// The group the instance belongs to, if any.
    pub group: Option<Arc<Name>>,
    pub bp: Bp,
    pub cpu_us: u64,
    pub elapsed_ms: u64,
    pub vcpus: u32,
}

impl SampleReport {
    /// The share as a percentage.
    pub fn cpu_percent(&self) -> f64 {
        cpu::percent(self.bp)
    }
}

/// The kind of a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Create `instance` as a clone of the primary.
    ScaleUp,
    /// Destroy the owned clone `instance`.
    ScaleDown,
    /// Create the dead primary `instance` again from its last known configuration.
    ReplacePrimary,
    /// The live clone `instance` is now the group's primary (bookkeeping, no I/O).
    Promote,
    /// The owned clone `instance` stopped reporting and was dropped from the group;
    /// the actuator removes its remains if it still exists. Not a capacity change,
    /// so it does not use the action budget.
    CloneLost,
}

impl Action {
    /// Whether the actuator must report a result for this action. A `clone_lost`
    /// keeps its name taken (and counted) until its cleanup is answered, so a new
    /// clone of the same name is never created while the old one is destroyed.
    pub fn needs_result(self) -> bool {
        !matches!(self, Self::Promote)
    }

    /// The name used in logs and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ScaleUp => "scale_up",
            Self::ScaleDown => "scale_down",
            Self::ReplacePrimary => "replace_primary",
            Self::Promote => "promote",
            Self::CloneLost => "clone_lost",
        }
    }
}

/// A decision with the inputs that justified it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub id: ActionId,
    pub t: Timestamp,
    pub group: Arc<Name>,
    /// The group's primary when the decision was taken (differs from `group` after a
    /// promotion): the source of a clone.
    pub primary: Arc<Name>,
    pub action: Action,
    pub instance: Arc<Name>,
    pub reason: Reason,
    /// Group average over fresh members at the evaluation, if there was one.
    pub avg_bp: Option<Bp>,
    /// Instances in the group before the action (pending creates included).
    pub instances: u32,
    pub high_ticks: u32,
    pub low_ticks: u32,
    /// Taken by the emergency rule (`emergency_threshold`): skipped the tick streak
    /// and the up-cooldown.
    pub emergency: bool,
    /// A scale-up whose clone adds no CPU: it will share the primary's CPU
    /// (`clone_cpus = "same"`, or the orchestrator allows no other).
    pub no_cpu: bool,
    /// A scale-down whose clone drains first: the shell destroys it on
    /// [`Output::Drained`], not on the decision (nor on its approval).
    pub drain: bool,
}

impl Decision {
    /// The reason as the decision log, notices and approvals show it.
    pub fn reason_text(&self) -> String {
        if self.no_cpu {
            format!(
                "{}; the clone shares the primary's CPU, so it adds no CPU capacity",
                self.reason
            )
        } else {
            self.reason.to_string()
        }
    }
}

/// The verdict of one evaluation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// No threshold streak long enough; nothing wanted.
    Hold,
    /// An action was emitted (see the decision output).
    Acted(Action),
    /// An action was wanted and not emitted; the reason says which rule stopped it.
    Blocked { wanted: Action, why_not: WhyNot },
}

/// One evaluation of a group.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    pub t: Timestamp,
    pub group: Arc<Name>,
    /// `None` when no member had a fresh sample.
    pub avg_bp: Option<Bp>,
    /// Members averaged.
    pub fresh: u32,
    /// Instances counted against the bounds.
    pub instances: u32,
    pub high_ticks: u32,
    pub low_ticks: u32,
    /// Actions left in the sliding hour.
    pub budget_left: u32,
    pub verdict: Verdict,
}
