//! Pacing of actions, shared by the horizontal and vertical machines: the flap
//! budget (at most N actions in any sliding hour), retry backoff, and the "why not"
//! of a cooldown, backoff or spent budget.

use std::collections::VecDeque;
use std::time::Duration;

use super::time::Timestamp;
use super::why::{Cooldown, Paced, WhyNot};

const WINDOW: Duration = Duration::from_secs(3600);

/// Times of the actions taken in the last hour.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Budget {
    taken: VecDeque<Timestamp>,
}

impl Budget {
    /// Actions still allowed at `now` under a limit of `max` per hour.
    pub fn left(&self, now: Timestamp, max: u32) -> u32 {
        let used = self.taken.iter().filter(|t| t.plus(WINDOW) > now).count();
        max.saturating_sub(u32::try_from(used).unwrap_or(u32::MAX))
    }

    /// Record an action at `now`, forgetting those that left the window.
    pub fn spend(&mut self, now: Timestamp) {
        while self.taken.front().is_some_and(|t| t.plus(WINDOW) <= now) {
            self.taken.pop_front();
        }
        self.taken.push_back(now);
    }

    /// When the oldest action in the window leaves it.
    pub fn refill_at(&self, now: Timestamp) -> Option<Timestamp> {
        self.taken
            .iter()
            .map(|t| t.plus(WINDOW))
            .find(|end| *end > now)
    }
}

/// Backoff after `failures` failed actions: `base * 2^(failures-1)`, capped at
/// `max`. No jitter: the engine's timing must replay exactly.
pub fn backoff(base: Duration, max: Duration, failures: u32) -> Duration {
    super::backoff::Backoff { base, max }.delay(failures)
}

/// What is being paced, for [`blocker`].
pub struct Pacing<'a> {
    /// The cooldown that applies, if any: when it ends and which.
    pub cooldown: Option<(Timestamp, Cooldown)>,
    pub retry_at: Option<Timestamp>,
    pub failures: u32,
    /// What failed.
    pub what: Paced,
    pub budget: &'a Budget,
    pub max_per_hour: u32,
}

/// The first pacing rule that forbids acting at `now` (cooldown, then backoff, then
/// budget), and when to decide again.
pub fn blocker(now: Timestamp, p: &Pacing<'_>) -> Option<(WhyNot, Option<Timestamp>)> {
    if let Some((until, which)) = p.cooldown.filter(|(end, _)| *end > now) {
        let left = until.since(now);
        return Some((WhyNot::Cooldown { which, until, left }, Some(until)));
    }
    if let Some(until) = p.retry_at.filter(|t| *t > now) {
        let why = WhyNot::Backoff {
            failures: p.failures,
            what: p.what,
            until,
            left: until.since(now),
        };
        return Some((why, Some(until)));
    }
    if p.budget.left(now, p.max_per_hour) == 0 {
        let why = WhyNot::Budget {
            max: p.max_per_hour,
        };
        return Some((why, p.budget.refill_at(now)));
    }
    None
}
