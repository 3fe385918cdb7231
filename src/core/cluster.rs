//! One scaling group: a primary and its clones, as an immutable state machine.
//!
//! Calling contract (as in quinn-proto and str0m): feed every input with the time it
//! happened, `handle(self, now, input) -> (Self, outputs)`, and call `handle(now,
//! Input::Tick)` no later than [`Cluster::next_deadline`]. `now` must not go
//! backwards. Every decision that [`Action::needs_result`] must be answered with
//! [`Input::ActionResult`]; until then the group takes no other action.

use std::sync::Arc;
use std::time::Duration;

use super::budget::Budget;
use super::cpu::{self, Bp, Delta, Reading};
use super::members::Members;
use super::naming;
use super::output::{Action, ActionId, Decision, Evaluation, Output, SampleReport, Verdict};
use super::policy::{Policy, PrimaryDeath};
use super::predict;
use super::time::Timestamp;
use crate::name::Name;

/// An input to a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// A statistics sample of a member: cumulative utime + stime in microseconds.
    Sample {
        vm: Arc<Name>,
        cpu_us: u64,
        /// vCPUs of the instance, if the source knows (else the policy's `vcpus`).
        vcpus: Option<u32>,
    },
    /// Time passed; call at or after [`Cluster::next_deadline`].
    Tick,
    /// The actuator's answer to a decision.
    ActionResult {
        id: ActionId,
        outcome: Result<(), String>,
    },
    /// An owned clone known to be running (from the ownership record or a replay).
    Adopt { vm: Arc<Name> },
    /// A name in use by something the group does not own: never reused, never touched.
    Foreign { vm: Arc<Name> },
    /// Operator (HTTP API): recommend-only. Evaluations still run and say what the
    /// group would do (`Verdict::Blocked` with a "paused" why-not); nothing is acted on.
    Pause,
    /// Operator: back to automatic scaling; clears [`Input::Pause`] and any manual target.
    Resume,
    /// Operator: hold the group at `target` instances (must be within
    /// min..=max_instances). Acted on even when paused (it is the operator's own
    /// order); cooldowns do not apply, the budget and one-action-at-a-time do.
    Scale { target: u32 },
}

/// Operator overrides of a group, set through [`Input::Pause`], [`Input::Resume`]
/// and [`Input::Scale`]; kept across config reloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Control {
    pub paused: bool,
    pub target: Option<u32>,
}

/// Why-not prefix of evaluations of a paused group (stable: scripts match it).
pub const PAUSED: &str = "paused (recommend-only)";
/// Reason prefix of decisions taken for a manual target (audited in the decision log).
pub const MANUAL: &str = "manual scale to";

/// A member's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Primary,
    Clone,
}

/// A member's lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberState {
    Running,
    /// Being created (a clone) or re-created (the primary) by action `id`.
    Creating(ActionId),
    /// Being destroyed by action `id`; still counted against `max_instances`.
    Leaving(ActionId),
    /// The primary stopped reporting (clones are dropped instead).
    Dead,
}

/// One instance of the group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub name: Arc<Name>,
    pub role: Role,
    /// Created or adopted by the autoscaler: only owned clones are ever destroyed.
    pub owned: bool,
    /// Join order; the newest owned clone is the scale-down victim.
    pub seq: u64,
    /// When it joined, or finished being created.
    pub since: Timestamp,
    /// Its samples are not averaged before this (boot CPU; see `startup_grace`).
    pub grace_until: Timestamp,
    pub reading: Option<Reading>,
    pub last_seen: Option<Timestamp>,
    pub bp: Option<Bp>,
    pub vcpus: u32,
    pub state: MemberState,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct InFlight {
    id: ActionId,
    action: Action,
    instance: Arc<Name>,
}

/// The state of one group. A value: `Clone + Debug + PartialEq`, no I/O.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cluster {
    group: Arc<Name>,
    primary: Arc<Name>,
    policy: Policy,
    members: Members,
    foreign: Vec<Arc<Name>>,
    /// Clones this group destroyed (most recent last, bounded): late samples from
    /// them must not bring them back by name.
    retired: Vec<Arc<Name>>,
    high: u32,
    low: u32,
    last_eval: Timestamp,
    last_avg: Option<Bp>,
    /// Anomaly guard and forecaster state (inert unless the policy enables them).
    signal: predict::Signal,
    last_up: Option<Timestamp>,
    last_action: Option<Timestamp>,
    budget: Budget,
    in_flight: Option<InFlight>,
    failures: u32,
    retry_at: Option<Timestamp>,
    redecide_at: Option<Timestamp>,
    death_check_at: Timestamp,
    next_id: ActionId,
    next_seq: u64,
    membership: u64,
    /// Operator overrides (pause, manual target).
    control: Control,
}

impl Cluster {
    /// A group whose primary is `primary`, created at `now` (the primary's death
    /// clock starts now).
    pub fn new(primary: Name, policy: Policy, now: Timestamp) -> Self {
        let primary = Arc::new(primary);
        let mut members = Members::default();
        members.insert(Member {
            name: primary.clone(),
            role: Role::Primary,
            owned: false,
            seq: 0,
            since: now,
            // Running before we started: not booting.
            grace_until: now,
            reading: None,
            last_seen: None,
            bp: None,
            vcpus: policy.vcpus,
            state: MemberState::Running,
        });
        Self {
            group: primary.clone(),
            primary,
            death_check_at: now.plus(policy.death_timeout),
            policy,
            members,
            foreign: Vec::new(),
            retired: Vec::new(),
            high: 0,
            low: 0,
            last_eval: now,
            last_avg: None,
            signal: predict::Signal::default(),
            last_up: None,
            last_action: None,
            budget: Budget::default(),
            in_flight: None,
            failures: 0,
            retry_at: None,
            redecide_at: None,
            next_id: 1,
            next_seq: 1,
            membership: 0,
            control: Control::default(),
        }
    }

    /// The group's name (its original primary).
    pub fn group(&self) -> &Arc<Name> {
        &self.group
    }

    /// The current primary (differs from the group name after a promotion).
    pub fn primary(&self) -> &Arc<Name> {
        &self.primary
    }

    /// The policy in force.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Apply a new policy (config reload). Counters, cooldowns, the budget spent
    /// and members are kept; the new bounds apply from the next evaluation.
    pub fn set_policy(&mut self, policy: Policy) {
        self.policy = policy;
    }

    /// Members, by name.
    pub fn members(&self) -> impl Iterator<Item = &Member> {
        self.members.values()
    }

    /// Whether `vm` is a member.
    pub fn has_member(&self, vm: &Name) -> bool {
        self.members.contains_key(vm)
    }

    /// Changes whenever members join or leave (for routing caches).
    pub fn membership(&self) -> u64 {
        self.membership
    }

    /// Consecutive high and low ticks.
    pub fn counters(&self) -> (u32, u32) {
        (self.high, self.low)
    }

    /// Actions left in the sliding hour at `now`.
    pub fn budget_left(&self, now: Timestamp) -> u32 {
        self.budget.left(now, self.policy.max_actions_per_hour)
    }

    /// Whether the group destroyed `vm` (and has not created it again since).
    pub fn is_retired(&self, vm: &Name) -> bool {
        self.retired.iter().any(|r| **r == *vm)
    }

    /// Whether `vm` is named like a clone of this group under its template.
    pub fn matches_clone_pattern(&self, vm: &Name) -> bool {
        let (Some(p), Some(l)) = (self.group.label.as_deref(), vm.label.as_deref()) else {
            return false;
        };
        vm.path == self.group.path && naming::index_of(&self.policy.clone_name, p, l).is_some()
    }

    /// The latest time at which [`Input::Tick`] must be handled.
    pub fn next_deadline(&self) -> Timestamp {
        let eval = self
            .last_eval
            .plus(self.policy.sample_interval.mul_f32(1.5));
        [Some(eval), Some(self.death_check_at), self.redecide_at]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(eval)
    }

    /// Advance the state machine.
    pub fn handle(mut self, now: Timestamp, input: Input) -> (Self, Vec<Output>) {
        let mut out = Vec::new();
        self.step(now, input, &mut out);
        (self, out)
    }

    /// [`Cluster::handle`] in place, appending to `out` (for owners of many groups).
    pub fn step(&mut self, now: Timestamp, input: Input, out: &mut Vec<Output>) {
        match input {
            Input::Sample { vm, cpu_us, vcpus } => self.on_sample(now, &vm, cpu_us, vcpus, out),
            Input::Tick => self.on_tick(now, out),
            Input::ActionResult { id, outcome } => self.on_result(now, id, outcome, out),
            Input::Adopt { vm } => self.adopt(now, vm),
            Input::Foreign { vm } => {
                if !self.members.contains_key(&vm) && !self.foreign.contains(&vm) {
                    self.foreign.push(vm);
                }
            }
            Input::Pause => self.control.paused = true,
            Input::Resume => {
                self.control = Control::default();
                self.decide_now(now, out);
            }
            Input::Scale { target } => self.set_target(now, target, out),
        }
    }

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
    pub fn check_target(&self, target: u32) -> Result<(), String> {
        let (min, max) = (self.policy.min_instances, self.policy.max_instances);
        if (min..=max).contains(&target) {
            Ok(())
        } else {
            Err(format!(
                "target {target} is outside min_instances..=max_instances ({min}..={max})"
            ))
        }
    }

    fn set_target(&mut self, now: Timestamp, target: u32, out: &mut Vec<Output>) {
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
    fn decide_now(&mut self, now: Timestamp, out: &mut Vec<Output>) {
        let verdict = self.decide(now, self.last_avg, out);
        out.push(self.evaluation(now, self.last_avg, None, verdict));
    }

    fn on_sample(
        &mut self,
        now: Timestamp,
        vm: &Arc<Name>,
        cpu_us: u64,
        vcpus: Option<u32>,
        out: &mut Vec<Output>,
    ) {
        if let Some(i) = self.members.position(vm) {
            self.sample_at(now, i, cpu_us, vcpus, out);
        }
    }

    /// Where `vm` sits among the members, for [`Cluster::sample_at`]. Valid until
    /// [`Cluster::membership`] changes.
    pub fn member_index(&self, vm: &Name) -> Option<usize> {
        self.members.position(vm)
    }

    /// [`Input::Sample`] for the member at `i` (from [`Cluster::member_index`]):
    /// spares the engine a second lookup by name on its hot path.
    pub fn sample_at(
        &mut self,
        now: Timestamp,
        i: usize,
        cpu_us: u64,
        vcpus: Option<u32>,
        out: &mut Vec<Output>,
    ) {
        let Some(m) = self.members.at_mut(i) else {
            return;
        };
        if let Some(v) = vcpus {
            m.vcpus = v.max(1);
        }
        if m.state == MemberState::Dead {
            // The primary reports again (albatross restarted it, or the network healed).
            m.state = MemberState::Running;
        }
        let next = Reading { at: now, cpu_us };
        match m.reading.map(|prev| cpu::delta(prev, next, m.vcpus)) {
            Some(Delta::Duplicate) => return,
            Some(Delta::Reset) => {
                m.bp = None;
                out.push(Output::CounterReset {
                    vm: m.name.clone(),
                    t: now,
                });
            }
            Some(Delta::Share {
                bp,
                cpu_us,
                elapsed_ms,
            }) => {
                m.bp = Some(bp);
                out.push(Output::Sample(SampleReport {
                    t: now,
                    vm: m.name.clone(),
                    group: Some(self.group.clone()),
                    bp,
                    cpu_us,
                    elapsed_ms,
                    vcpus: m.vcpus,
                }));
            }
            None => {}
        }
        m.reading = Some(next);
        m.last_seen = Some(now);
        let is_primary = m.role == Role::Primary;
        // One tick per interval, on the primary's sample: more clones must not make
        // the counters run faster.
        if is_primary && now >= self.last_eval.plus(self.policy.sample_interval / 2) {
            self.evaluate(now, out);
        } else if now >= self.death_check_at {
            self.check_deaths(now, out);
        }
    }

    fn on_tick(&mut self, now: Timestamp, out: &mut Vec<Output>) {
        if now
            >= self
                .last_eval
                .plus(self.policy.sample_interval.mul_f32(1.5))
        {
            // The primary is silent: evaluate on the timer.
            self.evaluate(now, out);
            return;
        }
        if now >= self.death_check_at {
            self.check_deaths(now, out);
        }
        if self.redecide_at.is_some_and(|t| t <= now) {
            // A cooldown or backoff that blocked an action ended: decide again with
            // the counters as they are, without counting a tick.
            self.redecide_at = None;
            let verdict = self.decide(now, self.last_avg, out);
            if matches!(verdict, Verdict::Acted(_)) {
                out.push(self.evaluation(now, self.last_avg, None, verdict));
            }
        }
    }

    fn adopt(&mut self, now: Timestamp, vm: Arc<Name>) {
        if self.members.contains_key(&vm) {
            return;
        }
        self.foreign.retain(|f| *f != vm);
        let seq = self.bump_seq();
        self.members.insert(Member {
            name: vm,
            role: Role::Clone,
            owned: true,
            seq,
            since: now,
            grace_until: now.plus(self.policy.startup_grace),
            reading: None,
            last_seen: None,
            bp: None,
            vcpus: self.policy.vcpus,
            state: MemberState::Running,
        });
        self.death_check_at = self.death_check_at.min(now.plus(self.policy.death_timeout));
        self.membership += 1;
    }

    fn bump_seq(&mut self) -> u64 {
        let s = self.next_seq;
        self.next_seq += 1;
        s
    }

    /// Drop dead clones, mark a dead primary, and remember when to look again.
    fn check_deaths(&mut self, now: Timestamp, out: &mut Vec<Output>) {
        let timeout = self.policy.death_timeout;
        let mut next_check = now.plus(timeout);
        let mut dead = Vec::new();
        for m in self.members.values() {
            if m.state != MemberState::Running {
                continue;
            }
            let deadline = m.last_seen.unwrap_or(m.since).plus(timeout);
            if deadline <= now {
                dead.push(m.name.clone());
            } else {
                next_check = next_check.min(deadline);
            }
        }
        self.death_check_at = next_check;
        for name in dead {
            let Some(m) = self.members.get(&name) else {
                continue;
            };
            let silent = now.since(m.last_seen.unwrap_or(m.since));
            if m.role == Role::Primary {
                self.primary_died(now, silent, out);
                continue;
            }
            let owned = m.owned;
            self.members.remove(&name);
            self.membership += 1;
            if owned {
                let reason = format!(
                    "no sample for {}; dropped from the group (death_timeout = {})",
                    fmt_dur(silent),
                    fmt_dur(timeout)
                );
                self.push_decision(now, Action::CloneLost, name, reason, None, out);
            }
        }
    }

    fn primary_died(&mut self, now: Timestamp, silent: Duration, out: &mut Vec<Output>) {
        let primary = self.primary.clone();
        if let Some(m) = self.members.get_mut(&primary) {
            m.state = MemberState::Dead;
            m.bp = None;
        }
        if self.policy.primary_death != PrimaryDeath::Promote {
            return;
        }
        let heir = self
            .members
            .values()
            .filter(|m| m.role == Role::Clone && m.state == MemberState::Running)
            .min_by_key(|m| m.seq)
            .map(|m| m.name.clone());
        let Some(heir) = heir else {
            return; // nobody to promote: decide() recreates the primary instead
        };
        self.members.remove(&primary);
        if let Some(m) = self.members.get_mut(&heir) {
            m.role = Role::Primary;
            m.owned = false; // a primary is never a scale-down victim
        }
        self.primary = heir.clone();
        self.membership += 1;
        let reason = format!(
            "primary {primary} sent no sample for {}; primary_death = promote",
            fmt_dur(silent)
        );
        self.push_decision(now, Action::Promote, heir, reason, None, out);
    }

    /// One tick: deaths, group average over fresh members, counters, decision.
    fn evaluate(&mut self, now: Timestamp, out: &mut Vec<Output>) {
        self.check_deaths(now, out);
        self.last_eval = now;
        self.redecide_at = None;
        let (avg, fresh) = self.average(now);
        // Predictive hook (core::predict): may swap a lone outlier for the median
        // and flag a forecast breach; a no-op unless the policy enables it.
        let (avg, predicted) = self.guard_and_forecast(now, avg);
        self.last_avg = avg;
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
        let verdict = self.decide(now, avg, out);
        out.push(self.evaluation(now, avg, Some(fresh), verdict));
    }

    fn evaluation(
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

    /// vCPU-weighted average share of the fresh members, and how many there were.
    fn average(&self, now: Timestamp) -> (Option<Bp>, u32) {
        let (mut sum, mut weight, mut n) = (0u64, 0u64, 0u32);
        for m in self.members.values() {
            let fresh = m.state == MemberState::Running
                && now >= m.grace_until
                && m.last_seen
                    .is_some_and(|t| t.plus(self.policy.death_timeout) > now);
            if let (true, Some(bp)) = (fresh, m.bp) {
                // A share above 100 % is measurement jitter; it must not outvote others.
                sum += u64::from(bp.min(cpu::FULL)) * u64::from(m.vcpus);
                weight += u64::from(m.vcpus);
                n += 1;
            }
        }
        let avg = (weight > 0).then(|| Bp::try_from(sum / weight).unwrap_or(cpu::FULL));
        (avg, n)
    }

    /// Instances counted against `max_instances`: everything that exists or is
    /// being created or destroyed.
    fn count(&self) -> u32 {
        u32::try_from(self.members.len()).unwrap_or(u32::MAX)
    }

    /// Instances that will remain: counted against `min_instances`.
    fn staying(&self) -> u32 {
        let leaving = self
            .members
            .values()
            .filter(|m| matches!(m.state, MemberState::Leaving(_)))
            .count();
        self.count()
            .saturating_sub(u32::try_from(leaving).unwrap_or(u32::MAX))
    }

    fn primary_state(&self) -> Option<MemberState> {
        // Members are in join order: the primary is nearly always first.
        self.members
            .values()
            .find(|m| m.role == Role::Primary)
            .map(|m| m.state)
    }

    fn decide(&mut self, now: Timestamp, avg: Option<Bp>, out: &mut Vec<Output>) -> Verdict {
        let p = &self.policy;
        if self.primary_state() == Some(MemberState::Dead) {
            return self.decide_primary_dead(now, out);
        }
        if let Some(target) = self.control.target {
            return self.decide_manual(now, target, avg, out);
        }
        let (want, reason) = if self.staying() < p.min_instances {
            (
                Action::ScaleUp,
                format!(
                    "below min_instances ({} < {})",
                    self.staying(),
                    p.min_instances
                ),
            )
        } else if self.high >= p.scale_up_ticks {
            (
                Action::ScaleUp,
                format!(
                    "group average {:.2}% > {}% for {} consecutive ticks{}",
                    cpu::percent(avg.unwrap_or(0)),
                    p.scale_up_threshold,
                    self.high,
                    self.prediction_note()
                ),
            )
        } else if self.low >= p.scale_down_ticks {
            (
                Action::ScaleDown,
                format!(
                    "group average {:.2}% < {}% for {} consecutive ticks",
                    cpu::percent(avg.unwrap_or(0)),
                    p.scale_down_threshold,
                    self.low
                ),
            )
        } else {
            return Verdict::Hold;
        };
        let below_min = reason.starts_with("below");
        match self.blocker(now, want, !below_min) {
            Some(why_not) => Verdict::Blocked {
                wanted: want,
                why_not,
            },
            // Recommend-only: the decision is computed and explained, never taken.
            None if self.control.paused => Verdict::Blocked {
                wanted: want,
                why_not: format!("{PAUSED}; would {}: {reason}", want.as_str()),
            },
            None => self.act(now, want, reason, avg, out),
        }
    }

    /// Move one action at a time towards the operator's target (bounds re-checked:
    /// a reload may have narrowed them). Cooldowns do not apply; the rest does.
    fn decide_manual(
        &mut self,
        now: Timestamp,
        target: u32,
        avg: Option<Bp>,
        out: &mut Vec<Output>,
    ) -> Verdict {
        let p = &self.policy;
        let target = target.clamp(p.min_instances, p.max_instances);
        let staying = self.staying();
        let want = match staying.cmp(&target) {
            std::cmp::Ordering::Less => Action::ScaleUp,
            std::cmp::Ordering::Greater => Action::ScaleDown,
            std::cmp::Ordering::Equal => return Verdict::Hold,
        };
        let reason = format!("{MANUAL} {target} by the operator ({staying} instance(s) now)");
        match self.blocker(now, want, false) {
            Some(why_not) => Verdict::Blocked {
                wanted: want,
                why_not,
            },
            None => self.act(now, want, reason, avg, out),
        }
    }

    /// The first rule that forbids `want` now, as a sentence; `None` if allowed.
    fn blocker(&mut self, now: Timestamp, want: Action, cooldowns: bool) -> Option<String> {
        let p = &self.policy;
        if let Some(f) = &self.in_flight {
            return Some(format!(
                "{} of {} still in flight",
                f.action.as_str(),
                f.instance
            ));
        }
        match want {
            Action::ScaleUp if self.count() >= p.max_instances => {
                return Some(format!("at max_instances ({})", p.max_instances));
            }
            Action::ScaleDown if self.staying() <= p.min_instances => {
                return Some(format!("at min_instances ({})", p.min_instances));
            }
            _ => {}
        }
        let cooldown_end = match want {
            Action::ScaleUp => self
                .last_up
                .map(|t| (t.plus(p.scale_up_cooldown), "scale_up_cooldown")),
            Action::ScaleDown => self
                .last_action
                .map(|t| (t.plus(p.scale_down_cooldown), "scale_down_cooldown")),
            _ => None,
        };
        if let (true, Some((end, key))) = (cooldowns, cooldown_end)
            && end > now
        {
            self.redecide_at = Some(end);
            return Some(format!("{key}: {} left", fmt_dur(end.since(now))));
        }
        if let Some(at) = self.retry_at.filter(|t| *t > now) {
            self.redecide_at = Some(at);
            return Some(format!(
                "backing off after {} failed action(s): {} left",
                self.failures,
                fmt_dur(at.since(now))
            ));
        }
        if self.budget_left(now) == 0 {
            self.redecide_at = self.budget.refill_at(now);
            return Some(format!(
                "max_actions_per_hour ({}) used up",
                p.max_actions_per_hour
            ));
        }
        match want {
            Action::ScaleUp if self.new_clone_name().is_none() => {
                Some("no free clone name under the template".to_string())
            }
            Action::ScaleDown if self.victim().is_none() => {
                Some("no owned clone to remove".to_string())
            }
            _ => None,
        }
    }

    fn decide_primary_dead(&mut self, now: Timestamp, out: &mut Vec<Output>) -> Verdict {
        let primary = self.primary.clone();
        if self.control.paused {
            // Recommend-only covers replacing or draining after a primary death too.
            let (wanted, what) = match self.policy.primary_death {
                PrimaryDeath::Drain => (Action::ScaleDown, "drain"),
                _ => (Action::ReplacePrimary, "recreate it"),
            };
            return Verdict::Blocked {
                wanted,
                why_not: format!("{PAUSED}; primary {primary} dead, would {what}"),
            };
        }
        if self.policy.primary_death == PrimaryDeath::Drain {
            // Draining ignores min_instances and cooldowns, never the budget.
            let why_not = if self.victim().is_none() {
                Some("primary dead and no owned clone left; waiting for the primary".to_string())
            } else if let Some(f) = &self.in_flight {
                Some(format!(
                    "{} of {} still in flight",
                    f.action.as_str(),
                    f.instance
                ))
            } else if self.budget_left(now) == 0 {
                self.redecide_at = self.budget.refill_at(now);
                Some(format!(
                    "max_actions_per_hour ({}) used up",
                    self.policy.max_actions_per_hour
                ))
            } else {
                None
            };
            return match why_not {
                Some(why_not) => Verdict::Blocked {
                    wanted: Action::ScaleDown,
                    why_not,
                },
                None => {
                    let reason = format!("primary {primary} dead; primary_death = drain");
                    self.act(now, Action::ScaleDown, reason, None, out)
                }
            };
        }
        match self.blocker(now, Action::ReplacePrimary, false) {
            Some(why_not) => Verdict::Blocked {
                wanted: Action::ReplacePrimary,
                why_not,
            },
            None => {
                let reason = format!(
                    "primary {primary} sent no sample for death_timeout ({}); primary_death = {}",
                    fmt_dur(self.policy.death_timeout),
                    if self.policy.primary_death == PrimaryDeath::Promote {
                        "promote, but no live clone: recreate"
                    } else {
                        "recreate"
                    }
                );
                self.act(now, Action::ReplacePrimary, reason, None, out)
            }
        }
    }

    fn new_clone_name(&self) -> Option<Name> {
        let taken = self.members.keys().chain(self.foreign.iter()).map(|n| &**n);
        naming::next_free(&self.policy.clone_name, &self.group, taken)
    }

    /// The newest owned running clone: never the primary, never a foreign instance.
    fn victim(&self) -> Option<Arc<Name>> {
        self.members
            .values()
            .filter(|m| m.role == Role::Clone && m.owned && m.state == MemberState::Running)
            .max_by_key(|m| m.seq)
            .map(|m| m.name.clone())
    }

    fn act(
        &mut self,
        now: Timestamp,
        action: Action,
        reason: String,
        avg: Option<Bp>,
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
        self.budget.spend(now);
        self.last_action = Some(now);
        self.in_flight = Some(InFlight {
            id,
            action,
            instance: instance.clone(),
        });
        self.high = 0;
        self.low = 0;
        match action {
            Action::ScaleUp => {
                self.last_up = Some(now);
                let seq = self.bump_seq();
                self.members.insert(Member {
                    name: instance,
                    role: Role::Clone,
                    owned: true,
                    seq,
                    since: now,
                    grace_until: now.plus(self.policy.startup_grace),
                    reading: None,
                    last_seen: None,
                    bp: None,
                    vcpus: self.policy.vcpus,
                    state: MemberState::Creating(id),
                });
                self.foreign.retain(|f| !self.members.contains_key(f));
                self.retired.retain(|r| !self.members.contains_key(r));
                self.membership += 1;
            }
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

    fn push_decision(
        &mut self,
        now: Timestamp,
        action: Action,
        instance: Arc<Name>,
        reason: String,
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
        })));
        id
    }

    fn on_result(
        &mut self,
        now: Timestamp,
        id: ActionId,
        outcome: Result<(), String>,
        out: &mut Vec<Output>,
    ) {
        let Some(f) = self.in_flight.take_if(|f| f.id == id) else {
            return; // not ours, or already settled
        };
        let ok = outcome.is_ok();
        match (f.action, ok) {
            (Action::ScaleUp | Action::ReplacePrimary, true) => {
                if let Some(m) = self.members.get_mut(&f.instance) {
                    // Boot starts now: grace and the death clock run from here.
                    m.state = MemberState::Running;
                    m.since = now;
                    m.grace_until = now.plus(self.policy.startup_grace);
                    m.reading = None;
                    m.last_seen = None;
                    m.bp = None;
                }
                self.death_check_at = self.death_check_at.min(now.plus(self.policy.death_timeout));
            }
            (Action::ScaleUp, false) => {
                self.members.remove(&f.instance);
                self.membership += 1;
            }
            (Action::ScaleDown, true) => {
                self.members.remove(&f.instance);
                self.membership += 1;
                if self.retired.len() >= MAX_RETIRED {
                    self.retired.remove(0);
                }
                self.retired.push(f.instance.clone());
            }
            (Action::ScaleDown, false) => {
                if let Some(m) = self.members.get_mut(&f.instance) {
                    m.state = MemberState::Running;
                }
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
            return;
        }
        self.failures += 1;
        let delay = backoff(&self.policy, self.failures);
        let at = now.plus(delay);
        self.retry_at = Some(at);
        self.redecide_at = Some(self.redecide_at.map_or(at, |r| r.min(at)));
        out.push(Output::ActionFailed {
            id,
            t: now,
            group: self.group.clone(),
            action: f.action,
            instance: f.instance,
            error: outcome.err().unwrap_or_default(),
            retry_in: delay,
        });
    }
}

/// How many destroyed clone names a group remembers.
const MAX_RETIRED: usize = 64;

/// Exponential backoff: `retry_backoff * 2^(failures-1)`, capped.
fn backoff(p: &Policy, failures: u32) -> Duration {
    let factor = 1u32 << failures.saturating_sub(1).min(16);
    p.retry_backoff
        .saturating_mul(factor)
        .min(p.retry_backoff_max)
}

fn fmt_dur(d: Duration) -> String {
    humantime::format_duration(Duration::from_millis(
        u64::try_from(d.as_millis()).unwrap_or(u64::MAX),
    ))
    .to_string()
}

// ---------------------------------------------------------------------------
// Predictive policy and anomaly guard (see `core::predict`). Kept apart from the
// reactive rule above: `evaluate` calls `guard_and_forecast` once per tick and
// counts a predicted breach as a high tick; `decide` adds `prediction_note`.

impl Cluster {
    /// Totals of the guard and the forecaster (for the simulator's report).
    pub fn forecast_stats(&self) -> predict::Stats {
        self.signal.stats
    }

    /// The average to count (a lone outlier replaced by the recent median) and
    /// whether the trusted forecast, `forecast_horizon` ahead and over the
    /// capacity that will exist then, breaches `scale_up_threshold`.
    fn guard_and_forecast(&mut self, now: Timestamp, avg: Option<Bp>) -> (Option<Bp>, bool) {
        let p = &self.policy;
        let Some(bp) = avg.filter(|_| p.predictive || p.anomaly_guard) else {
            return (avg, false);
        };
        // Same freshness rule as `average`: demand is average × fresh vCPUs, so
        // it does not drop when a clone joins. Planned capacity counts clones
        // being created: they serve by the time the forecast comes due.
        let (mut fresh_w, mut planned_w) = (0u32, 0u32);
        for m in self.members.values() {
            let fresh = m.state == MemberState::Running
                && now >= m.grace_until
                && m.bp.is_some()
                && m.last_seen.is_some_and(|t| t.plus(p.death_timeout) > now);
            if fresh {
                fresh_w += m.vcpus;
            }
            if matches!(m.state, MemberState::Running | MemberState::Creating(_)) {
                planned_w += m.vcpus;
            }
        }
        let fresh_w = fresh_w.max(1);
        let interval_ms = super::time::duration_ms(p.sample_interval).max(1);
        let settings = predict::Settings {
            predictive: p.predictive,
            guard: p.anomaly_guard,
            horizon_ticks: u32::try_from(
                super::time::duration_ms(p.forecast_horizon).div_ceil(interval_ms),
            )
            .unwrap_or(u32::MAX),
            max_error_bp: p.forecast_max_error.saturating_mul(100),
            z_hundredths: p.anomaly_z_hundredths,
        };
        let o = self
            .signal
            .observe(u64::from(bp) * u64::from(fresh_w), fresh_w, &settings);
        let filtered = Bp::try_from(o.demand / u64::from(fresh_w)).unwrap_or(cpu::FULL);
        let up = u64::from(p.scale_up_threshold) * 100;
        let predicted = o
            .forecast
            .is_some_and(|f| f / u64::from(planned_w.max(1)) > up);
        (Some(filtered), predicted)
    }

    /// " (N predicted: ...)" when forecast ticks are part of the high streak.
    fn prediction_note(&self) -> String {
        let n = self.signal.streak_predicted();
        if n == 0 {
            return String::new();
        }
        let planned: u32 = self
            .members
            .values()
            .filter(|m| matches!(m.state, MemberState::Running | MemberState::Creating(_)))
            .map(|m| m.vcpus)
            .sum();
        let f = self.signal.predicted_forecast().unwrap_or(0) / u64::from(planned.max(1));
        format!(
            " ({n} predicted: forecast {:.2}% in {}, mean forecast error {:.2} points)",
            cpu::percent(Bp::try_from(f).unwrap_or(Bp::MAX)),
            fmt_dur(self.policy.forecast_horizon),
            self.signal.mean_error_bp().map_or(0.0, cpu::percent)
        )
    }
}
