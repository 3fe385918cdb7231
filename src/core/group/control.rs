//! Operator control of a group: pause (recommend-only) and a manual target count.

use super::*;

impl Group {
    /// The operator overrides in force.
    pub fn control(&self) -> Control {
        self.control
    }

    /// The action in flight, if any: (id, action, instance).
    pub fn pending(&self) -> Option<(ActionId, Action, &Arc<Name>)> {
        self.in_flight
            .as_ref()
            .map(|f| (f.id, f.action, &f.instance))
    }

    /// Time left on the scale-up and scale-down cooldowns at `now` (zero when over).
    pub fn cooldowns_left(&self, now: Timestamp) -> (Duration, Duration) {
        let left = |at: Option<Timestamp>, d: Duration| {
            at.map_or(Duration::ZERO, |t| t.plus(d).since(now))
        };
        (
            left(self.last_up, self.policy.scale_up_cooldown),
            left(self.last_action, self.policy.scale_down_cooldown),
        )
    }

    /// Whether `target` is an acceptable manual target under the current policy.
    pub fn check_target(&self, target: u32) -> Result<(), WhyNot> {
        let (min, max) = (self.policy.min_instances, self.policy.max_instances);
        if (min..=max).contains(&target) {
            Ok(())
        } else {
            Err(WhyNot::TargetOutside { target, min, max })
        }
    }

    pub(super) fn set_target(&mut self, now: Timestamp, target: u32, out: &mut Vec<Output>) {
        if let Err(why_not) = self.check_target(target) {
            // Rejected orders are explained like any other blocked action.
            let wanted = if target > self.count() {
                Action::ScaleUp
            } else {
                Action::ScaleDown
            };
            let verdict = Verdict::Blocked { wanted, why_not };
            out.push(self.evaluation(now, self.last_avg, None, verdict));
            return;
        }
        self.control.target = Some(target);
        self.decide_now(now, out);
    }

    /// Decide at once after an operator command, so its effect (or why not) shows
    /// in the evaluation stream without waiting for the next tick.
    pub(super) fn decide_now(&mut self, now: Timestamp, out: &mut Vec<Output>) {
        let verdict = self.decide(now, self.last_avg, out);
        out.push(self.evaluation(now, self.last_avg, None, verdict));
    }

    /// Move one action at a time towards the operator's target (bounds re-checked:
    /// a reload may have narrowed them). Cooldowns do not apply; the rest does.
    pub(super) fn decide_manual(
        &mut self,
        now: Timestamp,
        target: u32,
        avg: Option<Bp>,
        out: &mut Vec<Output>,
    ) -> Verdict {
        // Within the bounds in force: a schedule window's, else the policy's.
        let (min, max) = self.bounds();
        let target = target.clamp(min.value, max.value);
        let staying = self.staying();
        let want = match staying.cmp(&target) {
            std::cmp::Ordering::Less => Action::ScaleUp,
            std::cmp::Ordering::Greater => Action::ScaleDown,
            std::cmp::Ordering::Equal => return Verdict::Hold,
        };
        let reason = Reason::Manual { target, staying };
        match self.blocker(now, want, false) {
            Some(why_not) => Verdict::Blocked {
                wanted: want,
                why_not,
            },
            None => self.act(now, want, reason, avg, false, out),
        }
    }
}

impl Group {
    /// Whether decision `d` of this group must wait for an operator: its action is
    /// listed in `require_approval`, and it is not the operator's own manual target.
    pub fn needs_approval(&self, d: &Decision) -> bool {
        !matches!(d.reason, Reason::Manual { .. })
            && self.policy.require_approval.covers(d.action, d.emergency)
    }

    /// Re-check the safety rules for decision `d`, held for approval, at the moment it
    /// is approved: the group is not paused, `d` is still the action in flight, its
    /// instance is still in the state the decision left it in, and the bounds in force
    /// (a reload or a schedule window may have changed them) still allow it. `Err` says why not.
    pub fn recheck(&self, d: &Decision) -> Result<(), String> {
        if self.control.paused {
            return Err(PAUSED.to_string());
        }
        match &self.in_flight {
            Some(f) if f.id == d.id => {}
            Some(f) => {
                return Err(format!(
                    "{} of {} is in flight instead",
                    f.action.as_str(),
                    f.instance
                ));
            }
            None => return Err("the decision is no longer pending in the engine".into()),
        }
        let m = self.members.get(&d.instance);
        // The bounds in force: the policy's or a schedule window's.
        let (min, max) = self.bounds();
        match d.action {
            Action::ScaleUp => {
                // The pending create is already counted.
                if self.count() > max.value {
                    return Err(format!("above {}", self.bound(max, Side::Max)));
                }
                if let Some(why) = self.over_cost(self.count()) {
                    return Err(why.to_string());
                }
                if m.is_none_or(|m| m.state != MemberState::Creating(d.id)) {
                    return Err(format!("{} is no longer a pending clone", d.instance));
                }
            }
            Action::ScaleDown => {
                let chosen = |m: &Member| matches!(m.state, MemberState::Leaving(id) | MemberState::Draining(id) if id == d.id);
                if m.is_none_or(|m| !chosen(m)) {
                    return Err(format!("{} is no longer a running member", d.instance));
                }
                // Draining after a primary death ignores min_instances, as decided.
                let draining = self.primary_state() == Some(MemberState::Dead);
                if !draining && self.staying() < min.value {
                    return Err(format!("below {}", self.bound(min, Side::Min)));
                }
            }
            Action::ReplacePrimary => match m {
                Some(m) if m.last_seen.is_some_and(|t| t > d.t) => {
                    return Err(format!("primary {} reports again", d.instance));
                }
                Some(m) if m.state == MemberState::Creating(d.id) => {}
                _ => return Err(format!("{} is no longer the dead primary", d.instance)),
            },
            Action::Promote | Action::CloneLost => {}
        }
        Ok(())
    }
}
