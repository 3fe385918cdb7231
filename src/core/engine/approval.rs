//! Decisions that wait for an operator (`require_approval`): the engine holds
//! them in its gate, answers `Approve` / `Reject`, and expires them at a deadline.

use super::*;

impl Engine {
    /// Whether decision `d` must wait for an operator ([`Group::needs_approval`]).
    pub fn needs_approval(&self, d: &Decision) -> bool {
        self.cluster(&d.group).is_some_and(|c| c.needs_approval(d))
    }

    /// Re-check decision `d`, held for approval, now that it is approved
    /// ([`Group::recheck`]); `Err` says why it must not be executed.
    pub fn recheck(&self, d: &Decision) -> Result<(), String> {
        let c = self
            .cluster(&d.group)
            .ok_or_else(|| format!("group {} is no longer configured", d.group))?;
        c.recheck(d)?;
        // The pending create is already counted in its group's cost.
        let total = self.hourly_cost().saturating_add(self.external_cost);
        match self.cost_ceiling {
            Some(max) if d.action == Action::ScaleUp && total > max => Err(format!(
                "cost: {}/h in all, above the global max_cost_per_hour ({})",
                crate::core::policy::money(total),
                crate::core::policy::money(max)
            )),
            _ => Ok(()),
        }
    }

    /// Hold decisions that need approval ([`Options::approvals`]); set when the
    /// engine is built (the daemon: unless dry-run).
    pub fn with_approvals(mut self, on: bool) -> Self {
        self.options.approvals = on;
        self
    }

    /// Whether decision `id` of `group` waits for an operator.
    pub fn is_held(&self, group: &Name, id: ActionId) -> bool {
        self.gate.contains(|d| d.id == id && *d.group == *group)
    }

    /// An operator's verdict on a held decision: `approve_by` approves.
    pub(super) fn answer(
        &mut self,
        now: Timestamp,
        group: &Name,
        id: ActionId,
        approve: bool,
        by: String,
        out: &mut Vec<Output>,
    ) {
        // Unknown: answered already, expired, or never held; nothing to do.
        let Some(d) = self.gate.take(|d| d.id == id && *d.group == *group) else {
            return;
        };
        let answer = match (approve, self.recheck(&d)) {
            (true, Ok(())) => Answer::Approved { by },
            (true, Err(why)) => Answer::Refused { by, why },
            (false, _) => Answer::Rejected { by },
        };
        self.answered(now, d, answer, out);
    }

    /// Expire the held decisions whose `approval_timeout` ran out (at a tick).
    pub(super) fn expire_held(&mut self, now: Timestamp, out: &mut Vec<Output>) {
        for d in self.gate.expired(now) {
            self.answered(now, d, Answer::Expired, out);
        }
    }

    /// Say how the wait of `d` ended; one not carried out is a failed action for
    /// its group (which backs off as after any failure).
    pub(super) fn answered(
        &mut self,
        now: Timestamp,
        d: Box<Decision>,
        answer: Answer,
        out: &mut Vec<Output>,
    ) {
        let failure = answer.failure();
        let drain = d.drain && failure.is_none();
        let (group, id) = ((*d.group).clone(), d.id);
        out.push(Output::Answered {
            t: now,
            decision: d,
            answer,
        });
        if let Some(why) = failure
            && let Some(i) = self.find(&group)
        {
            let result = group::Input::ActionResult {
                id,
                outcome: Err(why),
            };
            self.step_cluster(i, now, result, out);
        }
        // Approved: its clone drains now (the destroy follows on `Drained`).
        if drain && let Some(i) = self.find(&group) {
            self.step_cluster(i, now, group::Input::Release { id }, out);
        }
    }

    /// Hold the decisions among `new` (outputs of group `i`) that need approval.
    pub(super) fn hold(&mut self, i: usize, now: Timestamp, new: &[Output]) {
        for o in new {
            if let Output::Decision(d) = o
                && self.clusters[i].needs_approval(d)
            {
                let timeout = self.clusters[i].policy().approval_timeout;
                self.gate.hold(now, d.clone(), timeout);
            }
        }
    }
}
