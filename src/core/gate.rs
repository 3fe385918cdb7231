//! The approval gate (`require_approval`): what waits for an operator, and until
//! when. The machine keeps a held action in flight; approve and reject are inputs
//! and the expiry is a deadline, so the rules of the wait live here and a recorded
//! run replays its approvals like everything else.

use std::time::Duration;

use super::Timestamp;

/// How a wait ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Approved (by the API key `by`) and still within the rules: carry it out.
    Approved {
        by: String,
    },
    /// Approved, but the rules in force no longer allow it.
    Refused {
        by: String,
        why: String,
    },
    Rejected {
        by: String,
    },
    /// `approval_timeout` ran out.
    Expired,
}

impl Answer {
    /// What the machine is told when the action is not carried out (the texts the
    /// decision log and notices have always shown).
    pub fn failure(&self) -> Option<String> {
        match self {
            Self::Approved { .. } => None,
            Self::Refused { by, why } => Some(format!("approved by {by} but not executed: {why}")),
            Self::Rejected { by } => Some(format!("rejected by {by}")),
            Self::Expired => Some("approval expired".into()),
        }
    }

    /// `approved`, `rejected` or `approval_expired` (decision-log events).
    pub fn event(&self) -> &'static str {
        match self {
            Self::Approved { .. } | Self::Refused { .. } => "approved",
            Self::Rejected { .. } => "rejected",
            Self::Expired => "approval_expired",
        }
    }
}

/// Items waiting for an operator, each with its expiry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gate<T> {
    held: Vec<(T, Timestamp)>,
}

impl<T> Default for Gate<T> {
    fn default() -> Self {
        Self { held: Vec::new() }
    }
}

impl<T> Gate<T> {
    /// Hold `item` from `now` for `timeout`.
    pub fn hold(&mut self, now: Timestamp, item: T, timeout: Duration) {
        self.held.push((item, now.plus(timeout)));
    }

    /// Take the held item `pick` selects, if it still waits.
    pub fn take(&mut self, pick: impl Fn(&T) -> bool) -> Option<T> {
        let i = self.held.iter().position(|(t, _)| pick(t))?;
        Some(self.held.remove(i).0)
    }

    pub fn contains(&self, pick: impl Fn(&T) -> bool) -> bool {
        self.held.iter().any(|(t, _)| pick(t))
    }

    /// Take every item whose time is up at `now`, oldest first.
    pub fn expired(&mut self, now: Timestamp) -> Vec<T> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < self.held.len() {
            if self.held[i].1 <= now {
                out.push(self.held.remove(i).0);
            } else {
                i += 1;
            }
        }
        out
    }

    /// When the next item expires.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        self.held.iter().map(|(_, t)| *t).min()
    }

    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_leave_by_answer_or_expiry_and_the_deadline_follows() {
        let mut g = Gate::default();
        g.hold(Timestamp(0), 1, Duration::from_secs(10));
        g.hold(Timestamp(1_000), 2, Duration::from_secs(5));
        assert_eq!(g.next_deadline(), Some(Timestamp(6_000)));
        assert_eq!(g.expired(Timestamp(5_999)), Vec::<i32>::new());
        assert_eq!(g.expired(Timestamp(6_000)), vec![2]);
        assert_eq!(g.next_deadline(), Some(Timestamp(10_000)));
        assert!(g.contains(|i| *i == 1));
        assert_eq!(g.take(|i| *i == 1), Some(1));
        assert_eq!(g.take(|i| *i == 1), None);
        assert!(g.is_empty() && g.next_deadline().is_none());
        assert_eq!(
            Answer::Refused {
                by: "ops".into(),
                why: "max".into()
            }
            .failure()
            .as_deref(),
            Some("approved by ops but not executed: max")
        );
    }
}
