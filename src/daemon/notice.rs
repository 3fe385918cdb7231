//! Notices: what operators want to hear about, published by the engine task, the
//! Proxmox loop and the approval book; heard by notification sinks and anything else
//! that subscribes. Publishing never blocks and never fails: a notice nobody listens
//! to, or that a slow listener misses, is dropped (a broadcast channel lags, it does
//! not push back on the engine).

use serde::Serialize;
use tokio::sync::broadcast;

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
    /// The hourly action budget or a cost ceiling kept a group from scaling.
    CeilingReached {
        group: String,
        /// `budget` or `cost`.
        ceiling: String,
        reason: String,
    },
    /// `notify-test`: checks that a sink is reachable.
    Test { reason: String },
}

impl Notice {
    /// The event name used by `[[notify]] events` filters.
    pub fn kind(&self) -> &'static str {
        match self {
            Notice::DecisionExecuted { .. } => "decision_executed",
            Notice::ActionFailed { .. } => "action_failed",
            Notice::ApprovalPending { .. } => "approval_pending",
            Notice::Unreachable { .. } => "unreachable",
            Notice::CeilingReached { .. } => "ceiling_reached",
            Notice::Test { .. } => "test",
        }
    }

    /// Every event name, for config validation.
    pub const KINDS: &'static [&'static str] = &[
        "decision_executed",
        "action_failed",
        "approval_pending",
        "unreachable",
        "ceiling_reached",
        "test",
    ];
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
