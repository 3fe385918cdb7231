//! Notices: what operators want to hear about, published by the engine task, the
//! Proxmox loop and the approval book; heard by notification sinks and anything else
//! that subscribes. Publishing never blocks and never fails: a notice nobody listens
//! to, or that a slow listener misses, is dropped (a broadcast channel lags, it does
//! not push back on the engine).

use std::collections::HashMap;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::broadcast;

use crate::core::{Ceiling, Timestamp, WhyNot};

/// One notice. Serialised as the body of plain JSON notifications, so field names are
/// an interface: add, do not rename.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Notice {
    /// A decision was carried out (or, with `dry_run`, would have been).
    DecisionExecuted {
        group: String,
        instance: String,
        action: String,
        reason: String,
        dry_run: bool,
    },
    /// An action failed; the engine retries after `retry_in_s` when it applies.
    ActionFailed {
        group: String,
        instance: String,
        action: String,
        reason: String,
    },
    /// A decision waits for an operator (`POST /v1/approvals/{id}/approve`).
    ApprovalPending {
        id: String,
        group: String,
        instance: String,
        action: String,
        reason: String,
        /// RFC 3339 wall-clock time after which it is dropped.
        expires_at: String,
    },
    /// An albatross endpoint or a Proxmox node cannot be reached.
    Unreachable {
        /// `albatross:<endpoint name>` or `proxmox:<node or url>`.
        target: String,
        reason: String,
    },
    /// A target that was `unreachable` answers again (the outage is over).
    Reachable {
        /// As in `unreachable`.
        target: String,
        reason: String,
    },
    /// The hourly action budget or a cost ceiling kept a group from scaling.
    CeilingReached {
        group: String,
        /// `budget` or `cost`.
        ceiling: String,
        reason: String,
    },
    /// `notify-test`: checks that a sink is reachable.
    Test { reason: String },
    /// A lifecycle hook (`on_ready`, `on_draining`, `on_removed` with `notify`):
    /// a clone joins, is about to leave, or left. Goes to the hook's sink only
    /// (whatever its `events`), and to no other.
    Lifecycle {
        /// `clone_ready`, `clone_draining` or `clone_removed`.
        lifecycle: String,
        group: String,
        instance: String,
        /// The clone's IPv4 address, if known (`clone_ipv4`).
        address: Option<String>,
        #[serde(skip)]
        sink: String,
    },
}

impl Notice {
    /// What became of decision `d`: executed, or failed with the error as reason.
    pub fn outcome(d: &crate::core::Decision, r: &Result<(), String>, dry_run: bool) -> Self {
        let (group, instance) = (d.group.to_string(), d.instance.to_string());
        let action = d.action.as_str().to_string();
        match r {
            Ok(()) => Notice::DecisionExecuted {
                group,
                instance,
                action,
                reason: d.reason_text(),
                dry_run,
            },
            Err(e) => Notice::ActionFailed {
                group,
                instance,
                action,
                reason: e.clone(),
            },
        }
    }

    /// The event name used by `[[notify]] events` filters.
    pub fn kind(&self) -> &'static str {
        match self {
            Notice::DecisionExecuted { .. } => "decision_executed",
            Notice::ActionFailed { .. } => "action_failed",
            Notice::ApprovalPending { .. } => "approval_pending",
            Notice::Unreachable { .. } => "unreachable",
            Notice::Reachable { .. } => "reachable",
            Notice::CeilingReached { .. } => "ceiling_reached",
            Notice::Test { .. } => "test",
            Notice::Lifecycle { .. } => "lifecycle",
        }
    }

    /// The one sink a notice is for, if it names one (lifecycle hooks).
    pub fn sink(&self) -> Option<&str> {
        match self {
            Notice::Lifecycle { sink, .. } => Some(sink),
            _ => None,
        }
    }

    /// Every event name (config validation keeps the list: it is what an
    /// operator may write in `events`).
    pub const KINDS: &'static [&'static str] = crate::config::notify::EVENTS;
}

/// The publishing side: cheap to clone, hand one to every task that publishes.
#[derive(Debug, Clone)]
pub struct Notices {
    tx: broadcast::Sender<Notice>,
}

impl Default for Notices {
    fn default() -> Self {
        Self::new(1024)
    }
}

impl Notices {
    /// A bus that keeps up to `capacity` notices for a slow subscriber.
    pub fn new(capacity: usize) -> Self {
        Self {
            tx: broadcast::channel(capacity.max(1)).0,
        }
    }

    /// Publish `n`; dropped when nobody listens.
    pub fn publish(&self, n: Notice) {
        let _ = self.tx.send(n);
    }

    /// Every notice published from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Notice> {
        self.tx.subscribe()
    }
}

/// Turns evaluations into `ceiling_reached` notices: one when a group starts being
/// held back by a ceiling, none while every evaluation says so again (a tick each),
/// and at most one per group and ceiling an hour when it flaps in and out.
#[derive(Debug, Default)]
pub struct Ceilings {
    groups: HashMap<String, Held>,
}

/// One group: the ceiling it is held at now, if any, and the last notice per ceiling.
#[derive(Debug, Default)]
struct Held {
    now: Option<Ceiling>,
    sent: Vec<(Ceiling, Timestamp)>,
}

const RENOTIFY: Duration = Duration::from_secs(3600);

impl Ceilings {
    /// One evaluation of `group` at `now`, `blocked` being its "why not" if an
    /// action was wanted and not taken. Returns the notice to publish, if any.
    pub fn observe(
        &mut self,
        now: Timestamp,
        group: &str,
        blocked: Option<&WhyNot>,
    ) -> Option<Notice> {
        let Some((ceiling, why)) = blocked.and_then(|w| w.ceiling().map(|c| (c, w))) else {
            // The common case, every tick: no allocation.
            if let Some(h) = self.groups.get_mut(group) {
                h.now = None;
            }
            return None;
        };
        let Held { now: held, sent } = self.groups.entry(group.to_string()).or_default();
        if *held == Some(ceiling) {
            return None;
        }
        *held = Some(ceiling);
        let recent = sent
            .iter()
            .any(|(c, t)| *c == ceiling && now.since(*t) < RENOTIFY);
        if recent {
            return None;
        }
        sent.retain(|(c, _)| *c != ceiling);
        sent.push((ceiling, now));
        Some(Notice::CeilingReached {
            group: group.to_string(),
            ceiling: ceiling.as_str().to_string(),
            reason: why.to_string(),
        })
    }
}

/// Once-per-outage notices: the first failure of a target since it was last
/// reachable is one `unreachable`, later failures (retries) are nothing, and the
/// first answer after that is one `reachable`.
#[derive(Debug, Default)]
pub struct Outages {
    down: std::collections::HashSet<String>,
}

impl Outages {
    /// `target` failed with `reason`: the notice, if this starts an outage.
    pub fn failed(&mut self, target: &str, reason: &str) -> Option<Notice> {
        self.down
            .insert(target.to_string())
            .then(|| Notice::Unreachable {
                target: target.to_string(),
                reason: reason.to_string(),
            })
    }

    /// `target` answered: the notice, if this ends an outage; a later failure is a
    /// new outage.
    pub fn reachable(&mut self, target: &str) -> Option<Notice> {
        self.down.remove(target).then(|| Notice::Reachable {
            target: target.to_string(),
            reason: "answers again".into(),
        })
    }
}

/// `unreachable` / `reachable` notices of one endpoint: one per outage, not one
/// per retry.
#[derive(Debug)]
pub struct Reach {
    target: String,
    notices: Notices,
    outages: Outages,
}

impl Reach {
    /// For albatross endpoint `endpoint` (target `albatross:<endpoint>`).
    pub fn new(endpoint: &str, notices: &Notices) -> Self {
        Self {
            target: format!("albatross:{endpoint}"),
            notices: notices.clone(),
            outages: Default::default(),
        }
    }

    /// A connection attempt failed.
    pub fn failed(&mut self, reason: &str) {
        if let Some(n) = self.outages.failed(&self.target, reason) {
            self.notices.publish(n);
        }
    }

    /// The endpoint answered.
    pub fn reachable(&mut self) {
        if let Some(n) = self.outages.reachable(&self.target) {
            self.notices.publish(n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_ceiling_notice_per_streak_and_at_most_one_an_hour() {
        let mut c = Ceilings::default();
        let budget = &WhyNot::Budget { max: 4 };
        let budget = Some(budget);
        let t = |s: u64| Timestamp(s * 1000);
        let n = c.observe(t(0), "a:web", budget).expect("first block");
        assert_eq!(n.kind(), "ceiling_reached");
        assert!(matches!(&n, Notice::CeilingReached { ceiling, .. } if ceiling == "budget"));
        assert!(c.observe(t(10), "a:web", budget).is_none(), "same streak");
        assert!(c.observe(t(10), "b:web", budget).is_some(), "another group");
        // Cost is another ceiling: a notice of its own.
        let cost = WhyNot::GlobalCost {
            unit: 1_000_000,
            room: 0,
        };
        assert!(
            matches!(c.observe(t(20), "a:web", Some(&cost)), Some(Notice::CeilingReached { ceiling, reason, .. })
                if ceiling == "cost" && reason.starts_with("cost: one more instance"))
        );
        let cooldown = WhyNot::Cooldown {
            which: crate::core::why::Cooldown::Up,
            until: t(90),
            left: Duration::from_secs(60),
        };
        assert!(c.observe(t(30), "a:web", Some(&cooldown)).is_none());
        assert!(
            c.observe(t(40), "a:web", budget).is_none(),
            "flapping within the hour"
        );
        assert!(c.observe(t(50), "a:web", None).is_none());
        assert!(
            c.observe(t(3700), "a:web", budget).is_some(),
            "a new streak an hour later"
        );
    }

    #[test]
    fn one_unreachable_notice_per_outage() {
        let mut o = Outages::default();
        assert!(o.failed("albatross:a", "refused").is_some());
        assert!(o.failed("albatross:a", "refused").is_none());
        assert!(o.failed("proxmox:pve1", "timeout").is_some());
        assert!(o.reachable("albatross:b").is_none(), "never down");
        let back = o.reachable("albatross:a").expect("the outage ends");
        assert_eq!(back.kind(), "reachable");
        assert!(o.reachable("albatross:a").is_none(), "once");
        assert!(o.failed("albatross:a", "refused").is_some());
    }

    #[test]
    fn publish_without_listener_is_fine_and_listeners_get_json_with_the_event_name() {
        let bus = Notices::default();
        bus.publish(Notice::Test { reason: "x".into() });
        let mut rx = bus.subscribe();
        bus.publish(Notice::CeilingReached {
            group: "a:web".into(),
            ceiling: "cost".into(),
            reason: "cost ceiling 2.00/h".into(),
        });
        let n = rx.try_recv().unwrap();
        assert_eq!(n.kind(), "ceiling_reached");
        let v = serde_json::to_value(&n).unwrap();
        assert_eq!(v["event"], "ceiling_reached");
        assert_eq!(v["group"], "a:web");
        assert!(Notice::KINDS.contains(&n.kind()));
    }

    #[test]
    fn retries_of_one_outage_are_one_unreachable_notice() {
        let notices = Notices::default();
        let mut rx = notices.subscribe();
        let mut r = Reach::new("a", &notices);
        r.failed("connection refused");
        r.failed("connection refused");
        r.reachable();
        r.failed("timed out");
        let mut got = Vec::new();
        while let Ok(n) = rx.try_recv() {
            got.push(n);
        }
        assert_eq!(
            got,
            [
                Notice::Unreachable {
                    target: "albatross:a".into(),
                    reason: "connection refused".into()
                },
                Notice::Reachable {
                    target: "albatross:a".into(),
                    reason: "answers again".into()
                },
                Notice::Unreachable {
                    target: "albatross:a".into(),
                    reason: "timed out".into()
                }
            ]
        );
    }
}
