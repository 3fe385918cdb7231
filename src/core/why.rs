//! Why an action was not taken, as data. `Display` gives the sentence logs, the
//! decision log and scripts have always seen; code asks the value instead
//! ([`WhyNot::ceiling`]), never the text.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::output::{Action, ActionId};
use super::policy::money;
use super::reason::Reason;
use super::time::{Timestamp, fmt_dur};
use super::vertical::Size;
use crate::name::Name;

/// Why-not prefix of evaluations of a paused group (stable: scripts match it).
pub const PAUSED: &str = "paused (recommend-only)";

/// Which side of the instance bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Min,
    Max,
}

impl Side {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Min => "min",
            Self::Max => "max",
        }
    }
}

/// An instance bound in force: the policy's, or a schedule window's (its name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bound {
    pub side: Side,
    pub value: u32,
    pub window: Option<Arc<str>>,
}

impl fmt::Display for Bound {
    /// `min_instances (2)`, or `schedule 'nights' max 1`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let side = self.side.as_str();
        match &self.window {
            None => write!(f, "{side}_instances ({})", self.value),
            Some(w) => write!(f, "schedule '{w}' {side} {}", self.value),
        }
    }
}

/// Which cooldown (named by its config key).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cooldown {
    Up,
    Down,
}

impl Cooldown {
    pub fn key(self) -> &'static str {
        match self {
            Self::Up => "scale_up_cooldown",
            Self::Down => "scale_down_cooldown",
        }
    }
}

/// What a machine paces: a group's actions or a container's resizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Paced {
    Actions,
    Resizes,
}

impl Paced {
    fn as_str(self) -> &'static str {
        match self {
            Self::Actions => "action(s)",
            Self::Resizes => "resize(s)",
        }
    }
}

/// The ceiling a why-not names (`ceiling_reached` notices).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Ceiling {
    /// `max_actions_per_hour`.
    Budget,
    /// `max_cost_per_hour`, the group's or the global one.
    Cost,
}

impl Ceiling {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Budget => "budget",
            Self::Cost => "cost",
        }
    }
}

/// One dimension of a container that cannot move (vertical machine).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SizeRule {
    CpuAtMax(u32),
    CpuAtMin(u32),
    MemAtMax(u32),
    MemAtMin(u32),
    NodeFreeUnknown,
    HostAdmission { free_mib: u32, reserve_mib: u32 },
    BelowUsage { used_mib: u32, margin_mib: u32 },
}

impl fmt::Display for SizeRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::CpuAtMax(v) => write!(f, "cpu at its maximum ({v})"),
            Self::CpuAtMin(v) => write!(f, "cpu at its minimum ({v})"),
            Self::MemAtMax(v) => write!(f, "memory at its maximum ({v} MiB)"),
            Self::MemAtMin(v) => write!(f, "memory at its minimum ({v} MiB)"),
            Self::NodeFreeUnknown => f.write_str("node free memory unknown: no memory growth"),
            Self::HostAdmission {
                free_mib,
                reserve_mib,
            } => write!(
                f,
                "host admission: node has {free_mib} MiB free, reserve {reserve_mib} MiB"
            ),
            Self::BelowUsage {
                used_mib,
                margin_mib,
            } => write!(
                f,
                "memory would fall below usage + margin ({used_mib} + {margin_mib} MiB)"
            ),
        }
    }
}

/// The rule that stopped a wanted action (horizontal or vertical).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WhyNot {
    /// One action at a time per group.
    InFlight {
        action: Action,
        instance: Arc<Name>,
    },
    /// One resize at a time per container.
    ResizeInFlight {
        id: ActionId,
    },
    /// The orchestrator refuses scale-ups ([`super::group::Input::Refusal`]); its
    /// text is the orchestrator's own.
    Refused(String),
    /// At `max` for a scale-up, at `min` for a scale-down.
    AtBound(Bound),
    /// `n` instances would cross the group's `max_cost_per_hour`.
    GroupCost {
        n: u32,
        unit: u64,
        cost: u64,
        max: u64,
    },
    /// One more instance does not fit in what the global ceiling leaves.
    GlobalCost {
        unit: u64,
        room: u64,
    },
    /// A grow to `size` would cross the container's `max_cost_per_hour`.
    SizeCost {
        size: Size,
        cost: u64,
        max: u64,
    },
    /// A grow to `size` adds more than the global ceiling leaves.
    SizeGlobalCost {
        size: Size,
        add: u64,
        room: u64,
    },
    Cooldown {
        which: Cooldown,
        until: Timestamp,
        left: Duration,
    },
    Backoff {
        failures: u32,
        what: Paced,
        until: Timestamp,
        left: Duration,
    },
    /// `max_actions_per_hour` spent in the sliding hour.
    Budget {
        max: u32,
    },
    NoCloneName,
    NoVictim,
    /// Recommend-only: what the group would do, and why.
    Paused {
        would: Action,
        reason: Box<Reason>,
    },
    /// Recommend-only after a primary death: drain, or recreate the primary.
    PausedPrimaryDead {
        primary: Arc<Name>,
        drain: bool,
    },
    /// `primary_death = drain` with no owned clone left.
    NothingToDrain,
    /// A manual target outside the policy's bounds.
    TargetOutside {
        target: u32,
        min: u32,
        max: u32,
    },
    /// Vertical: no dimension can move (each rule, in order).
    Size(Vec<SizeRule>),
    /// Vertical: clones shrink before the container does.
    ClonesExist(u32),
}

impl WhyNot {
    /// The ceiling this names, if any.
    pub fn ceiling(&self) -> Option<Ceiling> {
        match self {
            Self::Budget { .. } => Some(Ceiling::Budget),
            Self::GroupCost { .. }
            | Self::GlobalCost { .. }
            | Self::SizeCost { .. }
            | Self::SizeGlobalCost { .. } => Some(Ceiling::Cost),
            _ => None,
        }
    }
}

fn size(s: Size) -> String {
    format!("{} cores, {} MiB", s.cores, s.memory_mib)
}

impl fmt::Display for WhyNot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InFlight { action, instance } => {
                write!(f, "{} of {instance} still in flight", action.as_str())
            }
            Self::ResizeInFlight { id } => write!(f, "resize {id} still in flight"),
            Self::Refused(why) => f.write_str(why),
            Self::AtBound(b) => write!(f, "at {b}"),
            Self::GroupCost { n, unit, cost, max } => write!(
                f,
                "cost: {n} instances at {}/h would cost {}/h, above max_cost_per_hour ({})",
                money(*unit),
                money(*cost),
                money(*max)
            ),
            Self::GlobalCost { unit, room } => write!(
                f,
                "cost: one more instance at {}/h is above what the global max_cost_per_hour leaves ({}/h)",
                money(*unit),
                money(*room)
            ),
            Self::SizeCost { size: s, cost, max } => write!(
                f,
                "cost: {} would cost {}/h, above max_cost_per_hour ({})",
                size(*s),
                money(*cost),
                money(*max)
            ),
            Self::SizeGlobalCost { size: s, add, room } => write!(
                f,
                "cost: {} would add {}/h, above what the global max_cost_per_hour leaves ({}/h)",
                size(*s),
                money(*add),
                money(*room)
            ),
            Self::Cooldown { which, left, .. } => {
                write!(f, "{}: {} left", which.key(), fmt_dur(*left))
            }
            Self::Backoff {
                failures,
                what,
                left,
                ..
            } => write!(
                f,
                "backing off after {failures} failed {}: {} left",
                what.as_str(),
                fmt_dur(*left)
            ),
            Self::Budget { max } => write!(f, "max_actions_per_hour ({max}) used up"),
            Self::NoCloneName => f.write_str("no free clone name under the template"),
            Self::NoVictim => f.write_str("no owned clone to remove"),
            Self::Paused { would, reason } => {
                write!(f, "{PAUSED}; would {}: {reason}", would.as_str())
            }
            Self::PausedPrimaryDead { primary, drain } => write!(
                f,
                "{PAUSED}; primary {primary} dead, would {}",
                if *drain { "drain" } else { "recreate it" }
            ),
            Self::NothingToDrain => {
                f.write_str("primary dead and no owned clone left; waiting for the primary")
            }
            Self::TargetOutside { target, min, max } => write!(
                f,
                "target {target} is outside min_instances..=max_instances ({min}..={max})"
            ),
            Self::Size(rules) => {
                for (i, r) in rules.iter().enumerate() {
                    if i > 0 {
                        f.write_str("; ")?;
                    }
                    write!(f, "{r}")?;
                }
                Ok(())
            }
            Self::ClonesExist(n) => write!(f, "{n} clone(s) exist: horizontal shrinks first"),
        }
    }
}

/// As its text: the JSON lines carry the sentence.
impl serde::Serialize for WhyNot {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests;
