//! Decisions into actions and back: dispatch (approval or execution), the
//! ownership record around each action, and the settling of its outcome.

use serde_json::json;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::{Actuator, Done, Failed, Finished, Runner, Settled};
use crate::actuate::Shell;
use crate::core::gate::Answer;
use crate::core::{Action, Decision, Input, Output, Timestamp};
use crate::notify::notice::Notice;

impl<A: Actuator> Runner<A> {
    pub(super) fn dispatch(
        &mut self,
        now: Timestamp,
        d: &Decision,
        in_flight: &mut JoinSet<Finished>,
    ) {
        tracing::info!(group = %d.group, action = d.action.as_str(), instance = %d.instance, reason = %d.reason_text(), dry_run = self.settings.dry_run, "decision");
        match d.action {
            Action::Promote => {
                // The new primary is never a scale-down victim.
                if self
                    .keeper
                    .begin(d, crate::daemon::unix_ms_now())
                    .unwrap_or(false)
                {
                    self.save_ownership();
                }
                self.publish_outcome(d, &Ok(()));
                return;
            }
            _ if self.engine.is_held(&d.group, d.id) => {
                return self.hold(now, d);
            }
            _ => {}
        }
        if let Some(d) = Shell::plan(self, &Output::Decision(Box::new(d.clone()))) {
            self.carry_out(now, &d, in_flight);
        }
    }

    /// Carry out `d` (approved, or not needing approval): the ownership record
    /// first, then the actuator (or nothing, in dry-run).
    pub(super) fn carry_out(
        &mut self,
        now: Timestamp,
        d: &Decision,
        in_flight: &mut JoinSet<Finished>,
    ) {
        if !self.settings.dry_run {
            match self.keeper.begin(d, crate::daemon::unix_ms_now()) {
                Ok(true) => self.save_ownership(),
                Ok(false) => {}
                Err(why) => {
                    tracing::warn!(group = %d.group, action = d.action.as_str(), instance = %d.instance, "{why}; not executed");
                    return self.answer(now, d, why, in_flight);
                }
            }
        }
        if self.settings.dry_run {
            self.publish_outcome(d, &Ok(()));
            if d.action.needs_result() {
                let ack = Input::ActionResult {
                    group: (*d.group).clone(),
                    id: d.id,
                    outcome: Ok(()),
                };
                self.step(now, ack, in_flight);
            }
            return;
        }
        let job = Shell::execute(self, d.clone());
        in_flight.spawn(async move { Finished::Action(job.await) });
    }

    pub(super) fn settle(&mut self, (d, r): Settled, in_flight: &mut JoinSet<Finished>) {
        let now = self.stamp(Instant::now());
        let (group, instance) = (d.group.to_string(), d.instance.to_string());
        let changed = match &r {
            Err(Failed::Unknown(_)) => self.keeper.release(&d),
            r => self.keeper.finish(&d, r.is_ok()),
        };
        if changed {
            self.save_ownership();
        }
        if r == Ok(Done::AlreadyRunning) {
            tracing::info!(%group, %instance, "albatross says the primary is already running: alive; resubscribing and reconciling instead of retrying");
            self.log.line(&json!({
                "event": "primary_alive", "t_ms": now.as_millis(), "group": d.group,
                "instance": d.instance, "id": d.id,
                "reason": "albatross answered `Unikernel with same name is already running`: the primary is alive; no retry, its stats stream is resubscribed and reconciled",
            }));
        }
        let hold = match &r {
            Err(Failed::Permanent(why)) if d.action == Action::ScaleUp => {
                tracing::warn!(%group, %instance, %why, "a refusal that waiting cannot change: scale-ups of the group are held until a member leaves, the configuration is reloaded or the policy changes");
                Some(Input::Refusal {
                    group: (*d.group).clone(),
                    why: Some(why.clone()),
                })
            }
            _ => None,
        };
        if let Err(Failed::Unknown(why)) = &r {
            // It may run: counted as created (max_instances holds), its record
            // stays unconfirmed, and a reconcile now settles which it is (a clone
            // that does not exist is forgotten; one that does is adopted).
            tracing::warn!(%group, action = d.action.as_str(), %instance, %why, "no reply: the outcome is unknown; reconciling");
            self.log.line(&json!({
                "event": "action_unknown", "t_ms": now.as_millis(), "group": d.group,
                "action": d.action, "instance": d.instance, "id": d.id, "error": why,
            }));
            self.actuator.outcome_unknown(&d);
        }
        let unknown = matches!(r, Err(Failed::Unknown(_)));
        let r: Result<(), String> = match r {
            Ok(_) => Ok(()),
            Err(Failed::Unknown(_)) if d.action == Action::ScaleUp => Ok(()),
            Err(f) => Err(f.message().to_string()),
        };
        // An unknown outcome is neither "executed" nor "failed" (its own log line).
        if !unknown {
            self.publish_outcome(&d, &r);
        }
        if r.is_ok() && !unknown {
            self.log.done(&d, now.as_millis());
            tracing::info!(%group, action = d.action.as_str(), %instance, "action done");
        }
        if let (Action::CloneLost, Err(e)) = (d.action, &r) {
            tracing::warn!(%group, action = d.action.as_str(), %instance, error = %e, "cleanup failed; the instance stays in the ownership record");
        }
        let ok_destroy = r.is_ok() && matches!(d.action, Action::ScaleDown | Action::CloneLost);
        if d.action.needs_result() {
            // The engine logs failures itself (action_failed) with the retry delay.
            let result = Input::ActionResult {
                group: (*d.group).clone(),
                id: d.id,
                outcome: r,
            };
            self.step(now, result, in_flight);
        }
        // Destroyed: its address is not needed past its `on_removed` (which the
        // result above started, with the address).
        if ok_destroy {
            self.actuator.forget_address(&d.instance);
        }
        // After the result: the failed create has left, the hold counts from here.
        if let Some(hold) = hold {
            self.step(now, hold, in_flight);
        }
    }

    /// Tell the engine that decision `d` was not carried out.
    fn answer(
        &mut self,
        now: Timestamp,
        d: &Decision,
        why: String,
        in_flight: &mut JoinSet<Finished>,
    ) {
        let result = Input::ActionResult {
            group: (*d.group).clone(),
            id: d.id,
            outcome: Err(why),
        };
        self.step(now, result, in_flight);
    }

    /// `decision_executed` or `action_failed` for notification sinks.
    pub(super) fn publish_outcome(&self, d: &Decision, r: &Result<(), String>) {
        self.notices
            .publish(Notice::outcome(d, r, self.settings.dry_run));
    }

    pub(super) fn save_ownership(&self) {
        if let Err(e) = self.keeper.record.save(&self.settings.state_file) {
            tracing::error!(error = %e, "cannot write the ownership record");
        }
    }
}

impl<A: Actuator> Shell for Runner<A> {
    type Output = Output;
    type Job = Decision;
    type Done = Settled;

    /// A decision is its own job, once nothing holds it: not a promotion
    /// (bookkeeping), not waiting for approval, not draining; an approved one
    /// when answered; a drained one when its drain ends.
    fn plan(&self, out: &Output) -> Option<Decision> {
        match out {
            // A draining scale-down is carried out on `Drained`.
            Output::Decision(d)
                if d.action != Action::Promote
                    && !d.drain
                    && !self.engine.is_held(&d.group, d.id) =>
            {
                Some((**d).clone())
            }
            Output::Answered {
                decision,
                answer: Answer::Approved { .. },
                ..
            } if !decision.drain => Some((**decision).clone()),
            Output::Drained { decision, .. } => Some((**decision).clone()),
            _ => None,
        }
    }

    fn execute(&self, d: Decision) -> impl std::future::Future<Output = Settled> + Send + 'static {
        let actuator = self.actuator.clone();
        async move {
            let r = actuator.execute(d.clone()).await;
            (d, r)
        }
    }
}
