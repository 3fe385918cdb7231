//! Decisions that wait for an operator (`require_approval`): hold, answer,
//! expire.

use std::time::Duration;

use tokio::task::JoinSet;
use tokio::time::Instant;

use super::{Actuator, Finished, Runner};
use crate::core::gate::Answer;
use crate::core::{Decision, Input, Output, Timestamp};
use crate::daemon::approvals::{self, At, Command, Owner};

impl<A: Actuator> Runner<A> {
    /// Keep `d` waiting for an operator; the engine keeps it in flight meanwhile.
    pub(super) fn hold(&mut self, now: Timestamp, d: &Decision) {
        let timeout = self
            .engine
            .groups()
            .iter()
            .find(|c| *c.group() == d.group)
            .map_or(Duration::from_secs(900), |c| c.policy().approval_timeout);
        let e = self.approvals.lock().add(
            Owner::Albatross,
            approvals::Request::of(d),
            timeout,
            At::now(),
        );
        tracing::info!(approval = %e.id, group = %d.group, action = d.action.as_str(), instance = %d.instance, expires_at = %approvals::fmt_time(e.expires_at), "decision waits for approval");
        self.log.line(&approvals::log_line(
            "approval_pending",
            &e,
            now.as_millis(),
        ));
        self.notices.publish(approvals::pending_notice(&e));
        self.held.push((e.id, d.clone()));
    }

    /// An operator's verdict, for the engine to weigh: it carries the decision
    /// out after a re-check of the rules (an `Answered` output), or fails it.
    pub(super) fn on_approval(&mut self, cmd: Command, in_flight: &mut JoinSet<Finished>) {
        let now = self.stamp(Instant::now());
        let Some((mut e, d, cmd)) = approvals::take_held(&self.approvals, &mut self.held, cmd)
        else {
            return;
        };
        let (group, id, by) = ((*d.group).clone(), d.id, cmd.key.clone());
        let input = if cmd.approve {
            Input::Approve { group, id, by }
        } else {
            Input::Reject { group, id, by }
        };
        let mut out = Vec::new();
        self.step_keep(now, input, in_flight, Some(&mut out));
        let answer = out.iter().find_map(|o| match o {
            Output::Answered {
                decision, answer, ..
            } if decision.id == d.id && decision.group == d.group => Some(answer),
            _ => None,
        });
        let outcome = match answer {
            Some(Answer::Approved { .. }) => "executing".to_string(),
            Some(a) => a.failure().unwrap_or_default(),
            None => "no longer waiting (expired meanwhile)".to_string(),
        };
        self.approvals.lock().set_outcome(&e.id, outcome.clone());
        e.outcome = Some(outcome);
        let event = if cmd.approve { "approved" } else { "rejected" };
        self.log
            .line(&approvals::log_line(event, &e, now.as_millis()));
        tracing::info!(approval = %e.id, key = %cmd.key, group = %d.group, action = d.action.as_str(), instance = %d.instance, outcome = e.outcome.as_deref().unwrap_or(""), "{event}");
        let _ = cmd.reply.send(Ok(e));
    }

    /// The engine dropped held decision `d`: its `approval_timeout` ran out.
    pub(super) fn expired(&mut self, now: Timestamp, d: &Decision) {
        let Some(i) = self
            .held
            .iter()
            .position(|(_, h)| h.id == d.id && h.group == d.group)
        else {
            return;
        };
        let (id, _) = self.held.swap_remove(i);
        let Some(e) = self.approvals.lock().expire_id(&id, At::now()) else {
            return;
        };
        tracing::warn!(approval = %e.id, group = %e.request.group, action = %e.request.action, instance = %e.request.instance, "approval expired; the decision is dropped");
        self.log.line(&approvals::log_line(
            "approval_expired",
            &e,
            now.as_millis(),
        ));
    }
}
