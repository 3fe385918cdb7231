//! One scaling group: a primary and its clones, as an immutable state machine.
//!
//! Calling contract (as in quinn-proto and str0m): feed every input with the time it
//! happened, `handle(self, now, input) -> (Self, outputs)`, and call `handle(now,
//! Input::Tick)` no later than [`Group::next_deadline`]. `now` must not go
//! backwards. Every decision that [`Action::needs_result`] must be answered with
//! [`Input::ActionResult`]; until then the group takes no other action (a
//! `clone_lost` cleanup only keeps its name taken until answered).

use std::sync::Arc;
use std::time::Duration;

use super::budget::{self, Budget};
use super::cpu::{self, Bp, Delta, Reading};
use super::lifecycle::{Boot, Event};
use super::members::Members;
use super::naming;
use super::output::{Action, ActionId, Decision, Evaluation, Output, SampleReport, Verdict};
use super::policy::{Policy, PrimaryDeath};
use super::predict;
use super::reason::Reason;
use super::schedule::{self, Limit};
use super::time::{Timestamp, duration_ms};
use super::why::{Bound, Cooldown, Paced, Side, WhyNot};
use crate::name::Name;

// The tick and its rules; operator control; the predictive hooks; readiness
// and drain.
mod control;
mod death;
mod decide;
mod life;
mod predictive;
mod target;

use life::Drain;

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
    /// Time passed; call at or after [`Group::next_deadline`].
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
    /// Scale-ups are refused for a reason waiting cannot change (the why-not), until
    /// a member leaves, the policy is reloaded, or `None` lifts it.
    Refusal { why: Option<String> },
    /// Whether the orchestrator allows a CPU other than the primary's.
    CpuRoom { other_cpus: bool },
    /// An owned clone the orchestrator no longer lists: it leaves without a destroy
    /// (one being created or destroyed settles through its own action).
    Gone { vm: Arc<Name> },
    /// Operator (HTTP API): recommend-only. Evaluations still run and say what the
    /// group would do (`Verdict::Blocked` with a "paused" why-not); nothing is acted on.
    Pause,
    /// Operator: back to automatic scaling; clears [`Input::Pause`] and any manual target.
    Resume,
    /// Operator: hold the group at `target` instances (must be within
    /// min..=max_instances). Acted on even when paused (it is the operator's own
    /// order); cooldowns do not apply, the budget and one-action-at-a-time do.
    Scale { target: u32 },
    /// The shell's answer to a [`Hook`] (readiness check, `on_draining`).
    Lifecycle {
        vm: Arc<Name>,
        event: Event,
        outcome: Result<(), String>,
    },
    /// Scale-down `id` may go ahead (not held for approval, or approved): its
    /// clone starts draining. From the engine, which holds the gate.
    Release { id: ActionId },
    /// A seasonal forecast of the group's demand (see `core::seasonal`).
    Forecast(Arc<super::seasonal::Forecast>),
}

/// Operator overrides of a group, set through [`Input::Pause`], [`Input::Resume`]
/// and [`Input::Scale`]; kept across config reloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Control {
    pub paused: bool,
    pub target: Option<u32>,
}

pub use super::reason::MANUAL;
pub use super::why::PAUSED;

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
    /// Created, not ready yet: counted against `max_instances`, not in the
    /// average nor as capacity.
    Booting(Boot),
    /// Chosen by scale-down `id`: running, uncounted, destroyed once drained.
    Draining(ActionId),
    /// Being destroyed by action `id`; still counted against `max_instances`.
    Leaving(ActionId),
    /// The primary stopped reporting (clones are dropped instead).
    Dead,
}

impl MemberState {
    /// A process that runs and reports (ready or booting): not being created,
    /// drained, destroyed, and not dead.
    pub fn is_live(self) -> bool {
        matches!(self, Self::Running | Self::Booting(_))
    }
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
    /// It was ready once (its removal is announced with `on_removed`).
    pub served: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct InFlight {
    id: ActionId,
    action: Action,
    instance: Arc<Name>,
    /// The instance's state before the action (a failed scale-down restores it).
    prior: Option<MemberState>,
}

impl InFlight {
    fn why_not(&self) -> WhyNot {
        WhyNot::InFlight {
            action: self.action,
            instance: self.instance.clone(),
        }
    }
}

/// The state of one group. A value: `Clone + Debug + PartialEq`, no I/O.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    group: Arc<Name>,
    primary: Arc<Name>,
    /// Shared by the groups with an equal policy (the engine interns them).
    policy: Arc<Policy>,
    members: Members,
    foreign: Vec<Arc<Name>>,
    /// Clones this group destroyed (most recent last, bounded): late samples from
    /// them must not bring them back by name.
    retired: Vec<Arc<Name>>,
    high: u32,
    low: u32,
    last_eval: Timestamp,
    /// Added to the first timer evaluation only ([`Group::with_phase`]); zero once
    /// the group has evaluated.
    phase: Duration,
    /// When the timer evaluates if the primary stays silent: `last_eval` +
    /// `eval_delay`, kept so a deadline costs no arithmetic per sample.
    eval_at: Timestamp,
    /// 1.5 intervals + `phase`, in ms (changes with the policy and the phase only).
    eval_delay: u64,
    last_avg: Option<Bp>,
    /// Anomaly guard and forecaster state (inert unless the policy enables them).
    signal: predict::LazySignal,
    /// The latest seasonal forecast handed over, and the shadow mode's state.
    seasonal: predictive::Seasonal,
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
    /// Scale-ups left in the current emergency burst (see `emergency_threshold`).
    emergency_left: u32,
    /// The last evaluation was at or above `emergency_threshold`: a burst starts on
    /// the crossing only, not again while the average stays up.
    emergency_above: bool,
    /// The policy's schedule: windows in force, and when to look again.
    sched: schedule::Tracker,
    /// What this group may add to its hourly cost under the global ceiling
    /// (`[daemon] max_cost_per_hour`), set by the engine before each step; `None`
    /// without a global ceiling.
    cost_room: Option<u64>,
    /// A refusal of scale-ups that waiting cannot change (why-not, instances then).
    refusal: Option<(WhyNot, u32)>,
    /// Whether the orchestrator allows a CPU other than the primary's (`None`:
    /// not known): a clone pinned to the primary's adds no CPU.
    other_cpus: Option<bool>,
    /// The scale-down whose clone drains (one action at a time: at most one).
    drain: Option<Box<Drain>>,
    /// The next readiness deadline, readiness retry or drain end.
    life_at: Option<Timestamp>,
    /// Target tracking's desired counts and burst (`rule = "target"`).
    target: target::TargetState,
}

impl Group {
    /// A group whose primary is `primary`, created at `now` (the primary's death
    /// clock starts now).
    pub fn new(primary: Name, policy: impl Into<Arc<Policy>>, now: Timestamp) -> Self {
        let policy = policy.into();
        let primary = Arc::new(primary);
        let policy_schedule = policy.schedule.clone();
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
            served: true,
        });
        let mut g = Self {
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
            phase: Duration::ZERO,
            eval_at: now,
            eval_delay: 0,
            last_avg: None,
            signal: predict::LazySignal::default(),
            seasonal: predictive::Seasonal::default(),
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
            emergency_left: 0,
            emergency_above: false,
            sched: schedule::Tracker::new(&policy_schedule, now),
            cost_room: None,
            refusal: None,
            other_cpus: None,
            drain: None,
            life_at: None,
            target: target::TargetState::default(),
        };
        g.refile_eval();
        g
    }

    /// Delay the first timer evaluation (the primary silent since creation) by
    /// `phase`. Later ones follow `sample_interval` from the last evaluation, so a
    /// phase given at creation keeps groups created together apart for good;
    /// evaluations on the primary's samples do not wait for it.
    pub fn with_phase(mut self, phase: Duration) -> Self {
        self.phase = phase;
        self.refile_eval();
        self
    }

    /// Recompute `eval_delay` and `eval_at` (the policy or the phase changed).
    fn refile_eval(&mut self) {
        let delay = self.policy.sample_interval.mul_f32(1.5);
        self.eval_delay = duration_ms(delay).saturating_add(duration_ms(self.phase));
        self.set_last_eval(self.last_eval);
    }

    /// An evaluation at `t` (the phase applies to the first one only).
    pub(super) fn set_last_eval(&mut self, t: Timestamp) {
        self.last_eval = t;
        self.eval_at = Timestamp(t.0.saturating_add(self.eval_delay));
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

    /// The group's hourly cost now (instances × `instance_cost_micros`), in millionths.
    #[inline]
    pub fn hourly_cost(&self) -> u64 {
        u64::from(self.count()).saturating_mul(self.policy.instance_cost_micros)
    }

    /// Why `n` instances would break the group's `max_cost_per_hour`, if they would.
    /// One rule for the decision and for the re-check at approval.
    pub(crate) fn over_cost(&self, n: u32) -> Option<WhyNot> {
        let p = &self.policy;
        let max = p.max_cost_micros?;
        let cost = u64::from(n).saturating_mul(p.instance_cost_micros);
        (cost > max).then_some(WhyNot::GroupCost {
            n,
            unit: p.instance_cost_micros,
            cost,
            max,
        })
    }

    /// What the group may add to its hourly cost under a global ceiling (see
    /// [`crate::core::Engine::with_cost_ceiling`]).
    pub(crate) fn set_cost_room(&mut self, room: Option<u64>) {
        self.cost_room = room;
    }

    /// Change the cost of one instance (LXC: priced by its current size).
    pub fn set_instance_cost(&mut self, micros: u64) {
        if self.policy.instance_cost_micros != micros {
            Arc::make_mut(&mut self.policy).instance_cost_micros = micros;
        }
    }

    /// Apply a new policy (config reload). Counters, cooldowns, the budget spent
    /// and members are kept; the new bounds apply from the next evaluation.
    pub fn set_policy(&mut self, policy: impl Into<Arc<Policy>>) {
        let old = std::mem::replace(&mut self.policy, policy.into());
        self.target_reload(&old);
        if self.policy.vcpus_fixed {
            let v = self.policy.vcpus.max(1);
            for i in 0..self.members.len() {
                if let Some(m) = self.members.at_mut(i) {
                    m.vcpus = v;
                }
            }
        }
        self.refile_eval();
        self.refusal = None;
        self.sched.reset(&self.policy.schedule, self.last_eval);
    }

    /// A clone would share the primary's CPU: `clone_cpus = "same"`, or the
    /// orchestrator allows no other CPU.
    pub(crate) fn clones_share_cpu(&self) -> bool {
        self.policy.clone_cpus == crate::core::CloneCpus::Same || self.other_cpus == Some(false)
    }

    /// Set the Unix time (ms) of t = 0, which schedules are evaluated against.
    pub fn set_wall_origin(&mut self, origin_ms: i64) {
        self.sched.origin = origin_ms;
        self.sched.reset(&self.policy.schedule, self.last_eval);
    }

    /// Names of the schedule windows in force (as of the last evaluation).
    pub fn active_windows(&self) -> impl Iterator<Item = &str> {
        self.sched
            .active
            .iter()
            .map(|&i| self.policy.schedule.name(i))
    }

    /// Effective `(min, max)` instances: the policy's, or a schedule's while one of
    /// its windows is in force.
    pub fn instance_bounds(&self) -> (u32, u32) {
        let (lo, hi) = self.bounds();
        (lo.value, hi.value)
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
    #[inline]
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
    #[inline]
    pub fn next_deadline(&self) -> Timestamp {
        // On every step of the engine: no iterator, no arithmetic.
        let mut t = self.eval_at.min(self.death_check_at);
        if let Some(r) = self.redecide_at {
            t = t.min(r);
        }
        if let Some(s) = self.sched.due {
            t = t.min(s);
        }
        if let Some(l) = self.life_at {
            t = t.min(l);
        }
        t
    }

    /// Advance the state machine.
    pub fn handle(mut self, now: Timestamp, input: Input) -> (Self, Vec<Output>) {
        let mut out = Vec::new();
        self.step(now, input, &mut out);
        (self, out)
    }

    /// [`Group::handle`] in place, appending to `out` (for owners of many groups).
    pub fn step(&mut self, now: Timestamp, input: Input, out: &mut Vec<Output>) {
        match input {
            Input::Sample { vm, cpu_us, vcpus } => self.on_sample(now, &vm, cpu_us, vcpus, out),
            Input::Tick => self.on_tick(now, out),
            Input::Forecast(f) => self.seasonal.forecast = Some(f),
            Input::ActionResult { id, outcome } => self.on_result(now, id, outcome, out),
            Input::Adopt { vm } => self.adopt(now, vm),
            Input::Foreign { vm } => {
                // A clone believed ours turned out not to be (a create that got no
                // reply, of a name someone else holds): it leaves, never touched.
                let disowned = self
                    .members
                    .get(&vm)
                    .is_some_and(|m| m.role == Role::Clone && m.state.is_live());
                if disowned {
                    self.members.remove(&vm);
                    self.membership += 1;
                }
                if !self.members.contains_key(&vm) && !self.foreign.contains(&vm) {
                    self.foreign.push(vm);
                }
            }
            Input::Gone { vm } => {
                let running_clone = self
                    .members
                    .get(&vm)
                    .is_some_and(|m| m.role == Role::Clone && m.owned && m.state.is_live());
                if running_clone {
                    self.remove_clone(now, &vm, false, out);
                }
            }
            Input::Refusal { why } => {
                let lifted = self.refusal.is_some() && why.is_none();
                self.refusal = why.map(|w| (WhyNot::Refused(w), self.count()));
                if lifted {
                    self.decide_now(now, out);
                }
            }
            Input::CpuRoom { other_cpus } => self.other_cpus = Some(other_cpus),
            Input::Pause => {
                self.control.paused = true;
                self.refile_life();
            }
            Input::Resume => {
                self.control = Control::default();
                self.decide_now(now, out);
                // Clones that became late while paused.
                self.lifecycle_due(now, out);
            }
            Input::Scale { target } => self.set_target(now, target, out),
            Input::Lifecycle { vm, event, outcome } => {
                self.on_lifecycle(now, &vm, event, outcome, out);
            }
            Input::Release { id } => self.release(now, id, out),
        }
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

    /// Where `vm` sits among the members, for [`Group::sample_at`]. Valid until
    /// [`Group::membership`] changes.
    pub fn member_index(&self, vm: &Name) -> Option<usize> {
        self.members.position(vm)
    }

    /// [`Input::Sample`] for the member at `i` (from [`Group::member_index`]):
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
        if let Some(v) = vcpus.filter(|_| !self.policy.vcpus_fixed) {
            m.vcpus = v.max(1);
        }
        if m.state == MemberState::Dead {
            // The primary reports again (albatross restarted it, or the network healed).
            m.state = MemberState::Running;
        }
        let booting = matches!(m.state, MemberState::Booting(_));
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
        if booting {
            self.booted(now, i, out);
        }
        // One tick per interval, on the primary's sample: more clones must not make
        // the counters run faster.
        if is_primary && now >= self.last_eval.plus(self.policy.sample_interval / 2) {
            self.evaluate_noting(now, out);
        } else if now >= self.death_check_at {
            self.check_deaths(now, out);
        }
    }

    fn on_tick(&mut self, now: Timestamp, out: &mut Vec<Output>) {
        if now >= self.eval_at {
            // The primary is silent: evaluate on the timer.
            self.evaluate_noting(now, out);
            if self.life_at.is_some_and(|t| t <= now) {
                self.lifecycle_due(now, out);
            }
            return;
        }
        if now >= self.death_check_at {
            self.check_deaths(now, out);
        }
        if self.life_at.is_some_and(|t| t <= now) {
            self.lifecycle_due(now, out);
        }
        // A window opened or closed: its bounds apply now, not at the next sample.
        let window = self.sched.refresh(&self.policy.schedule, now);
        if window || self.redecide_at.is_some_and(|t| t <= now) {
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
        // After a restart its readiness is not known: checked again (so
        // `on_ready` runs again: hooks must be idempotent).
        let state = if self.policy.lifecycle.check_ready {
            self.boot(now)
        } else {
            MemberState::Running
        };
        let member = self.new_clone(now, vm, state);
        self.members.insert(member);
        self.death_check_at = self.death_check_at.min(now.plus(self.policy.death_timeout));
        self.membership += 1;
    }

    /// An owned clone joining now (adopted, or being created): its boot grace runs
    /// from now.
    fn new_clone(&mut self, now: Timestamp, name: Arc<Name>, state: MemberState) -> Member {
        Member {
            name,
            role: Role::Clone,
            owned: true,
            seq: self.bump_seq(),
            since: now,
            grace_until: now.plus(self.policy.startup_grace),
            reading: None,
            last_seen: None,
            bp: None,
            vcpus: self.policy.vcpus,
            state,
            // Adopted clones were counted before the restart.
            served: state == MemberState::Running,
        }
    }

    fn bump_seq(&mut self) -> u64 {
        let s = self.next_seq;
        self.next_seq += 1;
        s
    }
}

/// How many destroyed clone names a group remembers.
const MAX_RETIRED: usize = 64;
