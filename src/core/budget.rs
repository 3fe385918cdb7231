//! The flap budget: at most N actions in any sliding hour.

use std::collections::VecDeque;
use std::time::Duration;

use super::time::Timestamp;

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
