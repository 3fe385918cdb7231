//! A circuit breaker per node: after `failures` consecutive failures a node's calls
//! are refused at once for `open_for`, then one trial call decides. Pure state driven
//! by an injected `now`, so a dead node costs nothing and tests need no clock.

use std::collections::HashMap;
use std::time::Duration;

use crate::core::Timestamp;

/// The state of one node's breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Closed {
        failures: u32,
    },
    Open {
        until: Timestamp,
    },
    /// One trial call is in flight; others are refused until it ends.
    HalfOpen,
}

/// Breakers of all nodes.
#[derive(Debug, Clone)]
pub struct Breakers {
    failures: u32,
    open_for: Duration,
    nodes: HashMap<String, State>,
}

impl Breakers {
    pub fn new(failures: u32, open_for: Duration) -> Self {
        Self {
            failures: failures.max(1),
            open_for,
            nodes: HashMap::new(),
        }
    }

    pub fn state(&self, node: &str) -> State {
        self.nodes
            .get(node)
            .copied()
            .unwrap_or(State::Closed { failures: 0 })
    }

    /// May a call to `node` start at `now`? `Err` holds when the breaker reopens a trial.
    pub fn admit(&mut self, node: &str, now: Timestamp) -> Result<(), Timestamp> {
        match self.state(node) {
            State::Closed { .. } => Ok(()),
            State::Open { until } if until <= now => {
                self.nodes.insert(node.to_string(), State::HalfOpen);
                Ok(())
            }
            State::Open { until } => Err(until),
            // The trial is running; the others wait for its verdict.
            State::HalfOpen => Err(now.plus(self.open_for)),
        }
    }

    /// Record a call's outcome. Only node failures count (transport errors, 5xx
    /// proxy codes, timeouts), not a refused parameter.
    pub fn record(&mut self, node: &str, now: Timestamp, ok: bool) {
        let next = match (self.state(node), ok) {
            (_, true) => State::Closed { failures: 0 },
            (State::Closed { failures }, false) if failures + 1 < self.failures => State::Closed {
                failures: failures + 1,
            },
            (_, false) => State::Open {
                until: now.plus(self.open_for),
            },
        };
        self.nodes.insert(node.to_string(), next);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_failures_then_half_opens() {
        let mut b = Breakers::new(2, Duration::from_secs(30));
        let t = Timestamp(0);
        b.record("n1", t, false);
        assert!(b.admit("n1", t).is_ok());
        b.record("n1", t, false);
        assert_eq!(b.admit("n1", t), Err(Timestamp(30_000)));
        assert!(b.admit("n2", t).is_ok(), "other nodes unaffected");
        let later = Timestamp(30_000);
        assert!(b.admit("n1", later).is_ok(), "trial");
        assert!(b.admit("n1", later).is_err(), "one trial at a time");
        b.record("n1", later, true);
        assert_eq!(b.state("n1"), State::Closed { failures: 0 });
    }
}
