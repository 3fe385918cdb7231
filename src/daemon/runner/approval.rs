//! Decisions that wait for an operator (`require_approval`): hold, answer,
//! expire.

use std::time::Duration;

use tokio::task::JoinSet;
use tokio::time::Instant;

use super::{Actuator, Runner, Settled};
use crate::core::{Decision, Input, Timestamp};
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

    /// An operator's verdict: execute after a re-check of the rules, or answer the
    /// engine with a failure (so it backs off as after any failed action).
    pub(super) fn on_approval(&mut self, cmd: Command, in_flight: &mut JoinSet<Settled>) {
        self.expire(in_flight);
        let now = self.stamp(Instant::now());
        let Some((mut e, d, cmd)) = approvals::take_held(&self.approvals, &mut self.held, cmd)
        else {
            return;
        };
        let verdict = if cmd.approve {
            self.engine
                .recheck(&d)
                .map_err(|why| format!("approved by {} but not executed: {why}", cmd.key))
        } else {
            Err(format!("rejected by {}", cmd.key))
        };
        e.outcome = Some(match &verdict {
            Ok(()) => "executing".to_string(),
            Err(why) => why.clone(),
        });
        if let Some(o) = &e.outcome {
            self.approvals.lock().set_outcome(&e.id, o.clone());
        }
        let event = if cmd.approve { "approved" } else { "rejected" };
        self.log
            .line(&approvals::log_line(event, &e, now.as_millis()));
        tracing::info!(approval = %e.id, key = %cmd.key, group = %d.group, action = d.action.as_str(), instance = %d.instance, outcome = e.outcome.as_deref().unwrap_or(""), "{event}");
        let _ = cmd.reply.send(Ok(e));
        match verdict {
            Ok(()) => self.execute(now, &d, in_flight),
            Err(why) => self.answer(now, &d, why, in_flight),
        }
    }

    /// Drop held decisions whose `approval_timeout` ran out.
    pub(super) fn expire(&mut self, in_flight: &mut JoinSet<Settled>) {
        let gone = self.approvals.lock().expire(Owner::Albatross, At::now());
        if gone.is_empty() {
            return;
        }
        let now = self.stamp(Instant::now());
        for e in gone {
            tracing::warn!(approval = %e.id, group = %e.request.group, action = %e.request.action, instance = %e.request.instance, "approval expired; the decision is dropped");
            self.log.line(&approvals::log_line(
                "approval_expired",
                &e,
                now.as_millis(),
            ));
            if let Some(i) = self.held.iter().position(|(id, _)| *id == e.id) {
                let (_, d) = self.held.swap_remove(i);
                self.answer(now, &d, "approval expired".into(), in_flight);
            }
        }
    }

    /// Tell the engine that held decision `d` was not carried out.
    pub(super) fn answer(
        &mut self,
        now: Timestamp,
        d: &Decision,
        why: String,
        in_flight: &mut JoinSet<Settled>,
    ) {
        let result = Input::ActionResult {
            group: (*d.group).clone(),
            id: d.id,
            outcome: Err(why),
        };
        self.step(now, result, in_flight);
    }
}
