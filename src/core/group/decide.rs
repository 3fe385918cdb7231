//! One tick of a group: the group average over fresh members, the threshold
//! streaks, and the decision with its "why not". The rules that bound every action
//! (in flight, min/max, cooldowns, backoff, budget) live here together.

use super::*;

impl Group {
    /// One tick: deaths, group average over fresh members, counters, decision.
    pub(super) fn evaluate(&mut self, now: Timestamp, out: &mut Vec<Output>) {
        self.check_deaths(now, out);
        // Once per tick at most, and only when a window may have opened or closed.
        self.sched.refresh(&self.policy.schedule, now);
        if !self.phase.is_zero() {
            self.phase = Duration::ZERO;
            self.refile_eval();
        }
        self.set_last_eval(now);
        self.redecide_at = None;
        let (avg, fresh, fresh_vcpus) = self.average(now);
        // Predictive hook (core::predict): may swap a lone outlier for the median
        // and flag a forecast breach; a no-op unless the policy enables it.
        let (avg, predicted) = self.guard_and_forecast(now, avg, fresh_vcpus);
        self.last_avg = avg;
        self.track(now, avg, fresh_vcpus);
        match avg {
            Some(bp) if bp > self.policy.scale_up_threshold * 100 => {
                self.high += 1;
                self.low = 0;
            }
            Some(_) if predicted => {
                self.high += 1;
                self.low = 0;
            }
            Some(bp) if bp < self.policy.scale_down_threshold * 100 => {
                self.low += 1;
                self.high = 0;
            }
            // Between the thresholds, or nothing to average: both streaks end.
            _ => {
                self.high = 0;
                self.low = 0;
            }
        }
        self.signal.note_streak(self.high, predicted);
        // Emergency: the first evaluation at or above the threshold starts a burst of
        // emergency_step scale-ups (decide() spends it one at a time). Staying above
        // starts no new burst (the clones are still booting); the average has to
        // drop below the threshold first. Meanwhile the streak rules apply as usual.
        let above = matches!((self.policy.emergency_threshold, avg),
            (Some(th), Some(bp)) if bp >= th.saturating_mul(100));
        if above && !self.emergency_above && self.emergency_left == 0 {
            self.emergency_left = self.policy.emergency_step.max(1);
        }
        self.emergency_above = above;
        let verdict = self.decide(now, avg, out);
        out.push(self.evaluation(now, avg, Some(fresh), verdict));
    }

    pub(super) fn evaluation(
        &self,
        now: Timestamp,
        avg: Option<Bp>,
        fresh: Option<u32>,
        verdict: Verdict,
    ) -> Output {
        Output::Evaluation(Evaluation {
            t: now,
            group: self.group.clone(),
            avg_bp: avg,
            fresh: fresh.unwrap_or_else(|| self.average(now).1),
            instances: self.count(),
            high_ticks: self.high,
            low_ticks: self.low,
            budget_left: self.budget_left(now),
            verdict,
        })
    }

    /// Running, past its grace, and heard from within `death_timeout`.
    pub(super) fn is_fresh(&self, m: &Member, now: Timestamp) -> bool {
        m.state == MemberState::Running
            && now >= m.grace_until
            && m.last_seen
                .is_some_and(|t| t.plus(self.policy.death_timeout) > now)
    }

    /// vCPU-weighted average share of the fresh members, how many there were, and
    /// their vCPUs (average × vCPUs = the demand they serve).
    pub(super) fn average(&self, now: Timestamp) -> (Option<Bp>, u32, u32) {
        let (mut sum, mut weight, mut n) = (0u64, 0u64, 0u32);
        for m in self.members.values() {
            if let (true, Some(bp)) = (self.is_fresh(m, now), m.bp) {
                // A share above 100 % is measurement jitter; it must not outvote others.
                sum += u64::from(bp.min(cpu::FULL)) * u64::from(m.vcpus);
                weight += u64::from(m.vcpus);
                n += 1;
            }
        }
        let avg = (weight > 0).then(|| Bp::try_from(sum / weight).unwrap_or(cpu::FULL));
        (avg, n, u32::try_from(weight).unwrap_or(u32::MAX))
    }

    /// Instances counted against `max_instances`: everything that exists or is
    /// being created or destroyed.
    pub(super) fn count(&self) -> u32 {
        u32::try_from(self.members.len()).unwrap_or(u32::MAX)
    }

    /// Instances that will remain: counted against `min_instances`.
    pub(super) fn staying(&self) -> u32 {
        let leaving = self
            .members
            .values()
            .filter(|m| matches!(m.state, MemberState::Leaving(_) | MemberState::Draining(_)))
            .count();
        self.count()
            .saturating_sub(u32::try_from(leaving).unwrap_or(u32::MAX))
    }

    /// Effective instance bounds (see [`schedule::Schedule::instances`]).
    #[inline]
    pub(super) fn bounds(&self) -> (Limit, Limit) {
        let p = &self.policy;
        if self.sched.active.is_empty() {
            let at = |value| Limit { value, by: None };
            return (at(p.min_instances), at(p.max_instances));
        }
        p.schedule
            .instances(&self.sched.active, p.min_instances, p.max_instances)
    }

    /// A bound for reasons and why-nots, with its window's name if one set it.
    pub(super) fn bound(&self, l: Limit, side: Side) -> Bound {
        Bound {
            side,
            value: l.value,
            window: l.by.map(|i| self.policy.schedule.name(i).into()),
        }
    }

    pub(super) fn primary_member(&self) -> Option<&Member> {
        // Members are in join order: the primary is nearly always first.
        self.members.values().find(|m| m.role == Role::Primary)
    }

    pub(super) fn primary_state(&self) -> Option<MemberState> {
        self.primary_member().map(|m| m.state)
    }

    pub(super) fn decide(
        &mut self,
        now: Timestamp,
        avg: Option<Bp>,
        out: &mut Vec<Output>,
    ) -> Verdict {
        let p = &self.policy;
        if self.primary_state() == Some(MemberState::Dead) {
            self.emergency_left = 0;
            return self.decide_primary_dead(now, out);
        }
        if let Some(target) = self.control.target {
            self.emergency_left = 0;
            return self.decide_manual(now, target, avg, out);
        }
        // A reload may have lowered the step or removed the threshold.
        let step = p.emergency_step.max(1);
        self.emergency_left = match p.emergency_threshold {
            Some(_) => self.emergency_left.min(step),
            None => 0,
        };
        let (min, max) = self.bounds();
        let staying = self.staying();
        let below_min = staying < min.value;
        let emergency = self.emergency_left > 0 && !below_min;
        let tracking = p.rule == crate::core::Rule::Target;
        // A later scale-up of a target burst skips the up-cooldown.
        let mut burst = false;
        let (want, reason) = if below_min {
            let reason = match min.by {
                None => Reason::BelowMin {
                    staying,
                    min: min.value,
                },
                Some(_) => Reason::Window {
                    bound: self.bound(min, Side::Min),
                    staying,
                },
            };
            (Action::ScaleUp, reason)
        } else if max.by.is_some() && staying > max.value {
            // A window's maximum (energy saving): down with the normal pacing.
            let bound = self.bound(max, Side::Max);
            (Action::ScaleDown, Reason::Window { bound, staying })
        } else if emergency {
            (
                Action::ScaleUp,
                Reason::Emergency {
                    k: step - self.emergency_left + 1,
                    step,
                    threshold: p.emergency_threshold.unwrap_or(0),
                    avg,
                },
            )
        } else if tracking {
            match self.target_want(now) {
                Some((want, reason, later)) => {
                    burst = later;
                    (want, reason)
                }
                None => return Verdict::Hold,
            }
        } else if self.high >= p.scale_up_ticks {
            (
                Action::ScaleUp,
                Reason::Streak {
                    up: true,
                    avg: avg.unwrap_or(0),
                    threshold: p.scale_up_threshold,
                    ticks: self.high,
                    predicted: self.predicted(),
                },
            )
        } else if self.low >= p.scale_down_ticks {
            (
                Action::ScaleDown,
                Reason::Streak {
                    up: false,
                    avg: avg.unwrap_or(0),
                    threshold: p.scale_down_threshold,
                    ticks: self.low,
                    predicted: None,
                },
            )
        } else {
            return Verdict::Hold;
        };
        // Emergency skips the up-cooldown; every other rule of blocker() applies.
        let verdict = match self.blocker(now, want, !below_min && !emergency && !burst) {
            Some(why_not) => Verdict::Blocked {
                wanted: want,
                why_not,
            },
            // Recommend-only: the decision is computed and explained, never taken.
            None if self.control.paused => Verdict::Blocked {
                wanted: want,
                why_not: WhyNot::Paused {
                    would: want,
                    reason: Box::new(reason),
                },
            },
            None => {
                if tracking && want == Action::ScaleUp && !emergency {
                    self.target_acted(&reason);
                }
                let verdict = self.act(now, want, reason, avg, emergency, out);
                if emergency && matches!(verdict, Verdict::Acted(_)) {
                    self.emergency_left -= 1;
                }
                return verdict;
            }
        };
        if tracking {
            self.target_blocked();
        }
        // A burst waits only for the action in flight; any other block ends it (the
        // next evaluation at the threshold starts a new one).
        if emergency && self.in_flight.is_none() {
            self.emergency_left = 0;
        }
        verdict
    }

    /// The first rule that forbids `want` now; `None` if allowed.
    pub(super) fn blocker(
        &mut self,
        now: Timestamp,
        want: Action,
        cooldowns: bool,
    ) -> Option<WhyNot> {
        if let Some(f) = &self.in_flight {
            return Some(f.why_not());
        }
        // A permanent refusal holds until a member leaves (or a reload or a
        // policy change lifts it).
        if let Some((why, n)) = &self.refusal
            && matches!(want, Action::ScaleUp)
        {
            if self.count() >= *n {
                return Some(why.clone());
            }
            self.refusal = None;
        }
        let (min, max) = self.bounds();
        match want {
            Action::ScaleUp if self.count() >= max.value => {
                return Some(WhyNot::AtBound(self.bound(max, Side::Max)));
            }
            Action::ScaleDown if self.staying() <= min.value => {
                return Some(WhyNot::AtBound(self.bound(min, Side::Min)));
            }
            _ => {}
        }
        let p = &self.policy;
        if want == Action::ScaleUp
            && let Some(why) = self.over_cost(self.count().saturating_add(1))
        {
            return Some(why);
        }
        if let (Action::ScaleUp, Some(room)) = (want, self.cost_room)
            && p.instance_cost_micros > room
        {
            return Some(WhyNot::GlobalCost {
                unit: p.instance_cost_micros,
                room,
            });
        }
        let cooldown_end = match want {
            Action::ScaleUp => self
                .last_up
                .map(|t| (t.plus(p.scale_up_cooldown), Cooldown::Up)),
            Action::ScaleDown => self
                .last_action
                .map(|t| (t.plus(p.scale_down_cooldown), Cooldown::Down)),
            _ => None,
        };
        let pacing = budget::Pacing {
            cooldown: cooldown_end.filter(|_| cooldowns),
            retry_at: self.retry_at,
            failures: self.failures,
            what: Paced::Actions,
            budget: &self.budget,
            max_per_hour: p.max_actions_per_hour,
        };
        if let Some((why_not, again)) = budget::blocker(now, &pacing) {
            self.redecide_at = again;
            return Some(why_not);
        }
        match want {
            Action::ScaleUp if self.new_clone_name().is_none() => Some(WhyNot::NoCloneName),
            Action::ScaleDown if self.victim().is_none() => Some(WhyNot::NoVictim),
            _ => None,
        }
    }

    pub(super) fn decide_primary_dead(&mut self, now: Timestamp, out: &mut Vec<Output>) -> Verdict {
        let primary = self.primary.clone();
        if self.control.paused {
            // Recommend-only covers replacing or draining after a primary death too.
            let drain = self.policy.primary_death == PrimaryDeath::Drain;
            let wanted = if drain {
                Action::ScaleDown
            } else {
                Action::ReplacePrimary
            };
            return Verdict::Blocked {
                wanted,
                why_not: WhyNot::PausedPrimaryDead { primary, drain },
            };
        }
        if self.policy.primary_death == PrimaryDeath::Drain {
            // Draining ignores min_instances and cooldowns, never the budget.
            let why_not = if self.victim().is_none() {
                Some(WhyNot::NothingToDrain)
            } else if let Some(f) = &self.in_flight {
                Some(f.why_not())
            } else if self.budget_left(now) == 0 {
                self.redecide_at = self.budget.refill_at(now);
                Some(WhyNot::Budget {
                    max: self.policy.max_actions_per_hour,
                })
            } else {
                None
            };
            return match why_not {
                Some(why_not) => Verdict::Blocked {
                    wanted: Action::ScaleDown,
                    why_not,
                },
                None => {
                    let reason = Reason::Drain { primary };
                    self.act(now, Action::ScaleDown, reason, None, false, out)
                }
            };
        }
        match self.blocker(now, Action::ReplacePrimary, false) {
            Some(why_not) => Verdict::Blocked {
                wanted: Action::ReplacePrimary,
                why_not,
            },
            None => {
                let reason = Reason::Recreate {
                    primary,
                    timeout: self.policy.death_timeout,
                    promote: self.policy.primary_death == PrimaryDeath::Promote,
                };
                self.act(now, Action::ReplacePrimary, reason, None, false, out)
            }
        }
    }

    pub(super) fn new_clone_name(&self) -> Option<Name> {
        let taken = self.members.keys().chain(self.foreign.iter()).map(|n| &**n);
        naming::next_free(&self.policy.clone_name, &self.group, taken)
    }

    /// The newest owned running (or booting) clone: never the primary, never a
    /// foreign instance.
    pub(super) fn victim(&self) -> Option<Arc<Name>> {
        self.members
            .values()
            .filter(|m| m.role == Role::Clone && m.owned && m.state.is_live())
            .max_by_key(|m| m.seq)
            .map(|m| m.name.clone())
    }

    pub(super) fn act(
        &mut self,
        now: Timestamp,
        action: Action,
        reason: Reason,
        avg: Option<Bp>,
        emergency: bool,
        out: &mut Vec<Output>,
    ) -> Verdict {
        let instance = match action {
            Action::ScaleUp => {
                let Some(name) = self.new_clone_name() else {
                    return Verdict::Hold; // blocker() checked; unreachable in practice
                };
                Arc::new(name)
            }
            Action::ScaleDown => match self.victim() {
                Some(v) => v,
                None => return Verdict::Hold,
            },
            _ => self.primary.clone(),
        };
        let id = self.push_decision(now, action, instance.clone(), reason, avg, out);
        // A clone never announced (booting, no check under way) goes at once.
        let announced = self
            .members
            .get(&instance)
            .is_some_and(|m| !matches!(m.state, MemberState::Booting(b) if !b.checking));
        let drains = action == Action::ScaleDown && announced && self.policy.lifecycle.drains();
        if let Some(Output::Decision(d)) = out.last_mut() {
            d.emergency = emergency;
            if drains {
                self.start_drain(d);
            }
        }
        self.budget.spend(now);
        self.last_action = Some(now);
        let prior = self.members.get(&instance).map(|m| m.state);
        self.in_flight = Some(InFlight {
            id,
            action,
            instance: instance.clone(),
            prior,
        });
        self.high = 0;
        self.low = 0;
        match action {
            Action::ScaleUp => {
                self.last_up = Some(now);
                let member = self.new_clone(now, instance, MemberState::Creating(id));
                self.members.insert(member);
                self.foreign.retain(|f| !self.members.contains_key(f));
                self.retired.retain(|r| !self.members.contains_key(r));
                self.membership += 1;
            }
            Action::ScaleDown if drains => {} // draining since start_drain
            Action::ScaleDown => {
                if let Some(m) = self.members.get_mut(&instance) {
                    m.state = MemberState::Leaving(id);
                }
            }
            Action::ReplacePrimary => {
                if let Some(m) = self.members.get_mut(&instance) {
                    m.state = MemberState::Creating(id);
                }
            }
            Action::Promote | Action::CloneLost => {}
        }
        Verdict::Acted(action)
    }

    /// The answer to a `clone_lost` cleanup (or to nothing of ours): the member
    /// leaves now. A failed cleanup is not retried and does not back off the group;
    /// its name stays in the ownership record, and a reconcile adopts it if it runs.
    fn cleanup_done(
        &mut self,
        now: Timestamp,
        id: ActionId,
        destroyed: bool,
        out: &mut Vec<Output>,
    ) {
        let lost = self
            .members
            .values()
            .find(|m| m.role == Role::Clone && m.state == MemberState::Leaving(id))
            .map(|m| m.name.clone());
        let Some(name) = lost else {
            return; // not ours, or already settled
        };
        self.remove_clone(now, &name, destroyed, out);
    }

    pub(super) fn retire(&mut self, name: Arc<Name>) {
        if self.retired.len() >= MAX_RETIRED {
            self.retired.remove(0);
        }
        self.retired.push(name);
    }

    pub(super) fn push_decision(
        &mut self,
        now: Timestamp,
        action: Action,
        instance: Arc<Name>,
        reason: Reason,
        avg: Option<Bp>,
        out: &mut Vec<Output>,
    ) -> ActionId {
        let id = self.next_id;
        self.next_id += 1;
        out.push(Output::Decision(Box::new(Decision {
            id,
            t: now,
            group: self.group.clone(),
            primary: self.primary.clone(),
            action,
            instance,
            reason,
            avg_bp: avg,
            instances: self.count(),
            high_ticks: self.high,
            low_ticks: self.low,
            emergency: false,
            no_cpu: action == Action::ScaleUp && self.clones_share_cpu(),
            drain: false,
        })));
        id
    }

    /// One more failure: the next action waits for the backoff (decided again
    /// when it ends). Returns the delay.
    pub(super) fn back_off(&mut self, now: Timestamp) -> Duration {
        self.failures += 1;
        let p = &self.policy;
        let delay = budget::backoff(p.retry_backoff, p.retry_backoff_max, self.failures);
        let at = now.plus(delay);
        self.retry_at = Some(at);
        self.redecide_at = Some(self.redecide_at.map_or(at, |r| r.min(at)));
        delay
    }

    pub(super) fn on_result(
        &mut self,
        now: Timestamp,
        id: ActionId,
        outcome: Result<(), String>,
        out: &mut Vec<Output>,
    ) {
        let Some(f) = self.in_flight.take_if(|f| f.id == id) else {
            self.cleanup_done(now, id, outcome.is_ok(), out);
            return;
        };
        let ok = outcome.is_ok();
        match (f.action, ok) {
            (Action::ScaleUp | Action::ReplacePrimary, true) => {
                // A clone boots until ready; a re-created primary counts at once.
                let state = match f.action {
                    Action::ScaleUp => self.boot(now),
                    _ => MemberState::Running,
                };
                if f.action == Action::ScaleUp && self.target_burst_left() {
                    // The next scale-up of a target burst: decide again now.
                    self.redecide_at = Some(now);
                }
                if let Some(m) = self.members.get_mut(&f.instance) {
                    // Boot starts now: grace and the death clock run from here.
                    m.state = state;
                    m.since = now;
                    m.grace_until = now.plus(self.policy.startup_grace);
                    m.reading = None;
                    m.last_seen = None;
                    m.bp = None;
                }
                self.death_check_at = self.death_check_at.min(now.plus(self.policy.death_timeout));
                self.refile_life();
            }
            (Action::ScaleUp, false) => {
                self.members.remove(&f.instance);
                self.membership += 1;
            }
            (Action::ScaleDown, true) => self.remove_clone(now, &f.instance, true, out),
            (Action::ScaleDown, false) => {
                let state = self.kept_state(now, id, f.prior);
                if let Some(m) = self.members.get_mut(&f.instance) {
                    m.state = state;
                }
                self.end_drain(id);
            }
            (Action::ReplacePrimary, false) => {
                if let Some(m) = self.members.get_mut(&f.instance) {
                    m.state = MemberState::Dead;
                }
            }
            (Action::Promote | Action::CloneLost, _) => {}
        }
        if ok {
            self.failures = 0;
            self.retry_at = None;
            // Clones that became late while this action was in flight.
            self.lifecycle_due(now, out);
            return;
        }
        let delay = self.back_off(now);
        out.push(Output::ActionFailed {
            id,
            t: now,
            group: self.group.clone(),
            action: f.action,
            instance: f.instance,
            error: outcome.err().unwrap_or_default(),
            retry_in: delay,
        });
        self.lifecycle_due(now, out);
    }
}
