//! A clone's life around its capacity: *booting* from its create until it is
//! ready (its first sample, then, if configured, the shell's health check and
//! `on_ready` hook), *ready* (counted in the average and as capacity), *draining*
//! before its destroy (`drain_period`, `on_draining`), then removed (`on_removed`).
//! The core says when; the shell does the I/O (TCP connect, child processes,
//! notices) and answers with the outcome, so a run replays from its inputs.

use std::sync::Arc;
use std::time::Duration;

use super::time::Timestamp;
use crate::name::Name;

/// A step of a clone's life that the shell carries out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    /// Check that the clone serves (health check, then `on_ready`); answered.
    Ready,
    /// The clone is about to go (`on_draining`); answered.
    Draining,
    /// The clone is gone (`on_removed`); not answered.
    Removed,
}

impl Event {
    /// Every step, in the order of a clone's life.
    pub const ALL: [Self; 3] = [Self::Ready, Self::Draining, Self::Removed];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ready => "ready",
            Self::Draining => "draining",
            Self::Removed => "removed",
        }
    }
}

/// What the shell is asked to do for a clone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hook {
    pub t: Timestamp,
    pub group: Arc<Name>,
    pub vm: Arc<Name>,
    pub event: Event,
    /// 1 for the first readiness check of a clone, counting up on retries.
    pub attempt: u32,
}

/// A group's lifecycle rules (the core's part of `health_check`, `ready_timeout`,
/// `drain_period` and the hooks; the shell keeps the commands themselves).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifecycle {
    /// A health check or `on_ready` hook must pass before a clone counts.
    pub check_ready: bool,
    /// Not ready this long after its create: destroyed, and the scale-up retried
    /// with backoff.
    pub ready_timeout: Duration,
    /// Time a clone stays running, uncounted, between the scale-down decision and
    /// its destroy.
    pub drain_period: Duration,
    /// `on_draining` is configured: the destroy waits for its answer too.
    pub on_draining: bool,
    /// `on_removed` is configured.
    pub on_removed: bool,
}

impl Default for Lifecycle {
    fn default() -> Self {
        Self {
            check_ready: false,
            ready_timeout: Self::READY_TIMEOUT,
            drain_period: Duration::ZERO,
            on_draining: false,
            on_removed: false,
        }
    }
}

impl Lifecycle {
    /// Default `ready_timeout`.
    pub const READY_TIMEOUT: Duration = Duration::from_secs(300);

    /// Whether a scale-down drains its clone before the destroy.
    pub fn drains(&self) -> bool {
        !self.drain_period.is_zero() || self.on_draining
    }
}

/// A booting clone's progress towards ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Boot {
    /// Destroyed if not ready by then.
    pub ready_by: Timestamp,
    /// A check was asked for and not answered yet.
    pub checking: bool,
    /// When to check again after a failed check (`None`: at the first sample).
    pub retry_at: Option<Timestamp>,
    /// Checks asked for so far.
    pub attempts: u32,
}

/// What the shell runs for a group's clones (`health_check`, `on_ready`,
/// `on_draining`, `on_removed`): plain data the core carries in the policy and
/// never runs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Hooks {
    /// `health_check = "tcp:PORT"`: a TCP connect to the clone's address.
    pub health_check: Option<u16>,
    /// How long one connect may take (`health_check_timeout`).
    pub health_check_timeout: Duration,
    pub on_ready: Option<HookCommand>,
    pub on_draining: Option<HookCommand>,
    pub on_removed: Option<HookCommand>,
}

impl Hooks {
    /// Default `health_check_timeout`.
    pub const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

    /// The command for `event`, if any.
    pub fn command(&self, event: Event) -> Option<&HookCommand> {
        match event {
            Event::Ready => self.on_ready.as_ref(),
            Event::Draining => self.on_draining.as_ref(),
            Event::Removed => self.on_removed.as_ref(),
        }
    }

    /// Where the command for `event` is kept (config merge).
    pub fn slot(&mut self, event: Event) -> &mut Option<HookCommand> {
        match event {
            Event::Ready => &mut self.on_ready,
            Event::Draining => &mut self.on_draining,
            Event::Removed => &mut self.on_removed,
        }
    }

    /// The core's part of these hooks, with `ready_timeout` and `drain_period`.
    pub fn lifecycle(&self, ready_timeout: Duration, drain_period: Duration) -> Lifecycle {
        Lifecycle {
            check_ready: self.health_check.is_some() || self.on_ready.is_some(),
            ready_timeout,
            drain_period,
            on_draining: self.on_draining.is_some(),
            on_removed: self.on_removed.is_some(),
        }
    }
}

/// One hook: a program (argv, never a shell string) and/or a notification sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookCommand {
    pub exec: Option<Vec<String>>,
    /// The `name` of a `[[notify]]` sink.
    pub notify: Option<String>,
    /// The program is killed after this long (the hook failed).
    pub timeout: Duration,
}

impl HookCommand {
    /// Default `timeout`.
    pub const TIMEOUT: Duration = Duration::from_secs(30);
}
