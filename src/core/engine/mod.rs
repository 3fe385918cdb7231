//! All groups of a daemon or replay: routes samples to their group and keeps CPU
//! meters for instances that belong to none (so every sample can be reported).

use std::sync::Arc;

use super::cpu::{self, Delta, Reading};
use super::due::{self, Queue};
use super::gate::{Answer, Gate};
use super::group::{self, Group};
use super::members::FxMap;
use super::output::{Action, ActionId, Decision, Output, SampleReport};
use super::policy::{Interner, Policy};
use super::time::Timestamp;
use crate::name::Name;

/// An input to the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// A statistics sample: cumulative utime + stime of `vm` in microseconds.
    Sample {
        vm: Name,
        cpu_us: u64,
        vcpus: Option<u32>,
    },
    /// Time passed; call at or after [`Engine::next_deadline`].
    Tick,
    /// The actuator's answer to decision `id` of `group`.
    ActionResult {
        group: Name,
        id: ActionId,
        outcome: Result<(), String>,
    },
    /// An owned clone of `group` known to be running.
    Adopt { group: Name, vm: Name },
    /// An instance named like a clone of `group` that the group does not own: its
    /// name is never reused and it is never touched.
    Foreign { group: Name, vm: Name },
    /// The orchestrator refuses scale-ups of `group` for a reason waiting cannot
    /// change (`why`, the why-not), or lifts that (`None`: its policy changed).
    Refusal { group: Name, why: Option<String> },
    /// A configuration reload: the new groups and policies. Groups that stay keep
    /// their state under the new policy, new ones start now, removed ones go.
    Reconfigure { groups: Vec<(Name, Policy)> },
    /// The global ceiling on the hourly cost (`[daemon] max_cost_per_hour`), in
    /// millionths; `None`: no ceiling.
    CostCeiling { micros: Option<u64> },
    /// The hourly cost, in millionths, of what shares the global ceiling but is
    /// scaled elsewhere (the daemon's other loop).
    ExternalCost { micros: u64 },
    /// The cost of one instance of `group` changed (LXC: priced by its size).
    InstanceCost { group: Name, micros: u64 },
    /// Unix ms of t = 0: schedules are evaluated at `origin_ms + now`.
    WallOrigin { origin_ms: i64 },
    /// An owned clone of `group` that the orchestrator no longer lists (a
    /// reconcile): it leaves the group at once, without a destroy.
    Gone { group: Name, vm: Name },
    /// Operator (HTTP API): make `group` recommend-only ([`group::Input::Pause`]).
    Pause { group: Name },
    /// Operator: `group` back to automatic scaling (clears pause and manual target).
    Resume { group: Name },
    /// Operator: hold `group` at `target` instances ([`group::Input::Scale`]).
    Scale { group: Name, target: u32 },
    /// Operator (API key `by`): carry out decision `id` of `group`, held for
    /// approval, if the rules in force still allow it.
    Approve {
        group: Name,
        id: ActionId,
        by: String,
    },
    /// Operator (API key `by`): drop decision `id` of `group`, held for approval.
    Reject {
        group: Name,
        id: ActionId,
        by: String,
    },
    /// Whether the orchestrator allows `group`'s clones a CPU other than the
    /// primary's (albatross: the policy's cpuids), so a scale-up's reason can say
    /// when a clone adds no CPU.
    CpuRoom { group: Name, other_cpus: bool },
    /// The shell's answer to a [`crate::core::lifecycle::Hook`] of `group`'s
    /// clone `vm` (a readiness check, `on_draining`).
    Lifecycle {
        group: Name,
        vm: Name,
        event: crate::core::lifecycle::Event,
        outcome: Result<(), String>,
    },
    /// A seasonal forecast of `group`'s demand, fitted off the hot path (the
    /// daemon's refit task, the simulator); the group only reads it.
    Forecast {
        group: Name,
        forecast: Arc<super::seasonal::Forecast>,
    },
}

/// How the engine treats instances it has not been told about.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Options {
    /// Make every unknown instance a group of its own with this policy
    /// (`replay` without a config file).
    pub auto_group: Option<Policy>,
    /// Adopt unknown instances whose name matches a group's clone template as
    /// owned clones. Right for a replay (the recording is the record of what
    /// runs); wrong for the daemon, which adopts only what its ownership record says.
    pub adopt_by_name: bool,
    /// Hold decisions that need approval (`require_approval`) until an operator
    /// answers or `approval_timeout` runs out (the daemon, not in dry-run).
    pub approvals: bool,
}

/// The engine: a value, like [`Group`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Engine {
    clusters: Vec<Group>,
    /// Group name → index in `clusters` (the first, should names repeat).
    index: FxMap<Arc<Name>, usize>,
    /// Every group's next deadline, earliest first.
    queue: Queue,
    /// Sum of the groups' hourly costs (u128: cannot overflow), kept up to date by
    /// every step so the cost ceiling does not cost a pass over all groups.
    total_cost: u128,
    /// Name → (group, member index); a group's entries are re-filed when its
    /// membership changes.
    routes: FxMap<Arc<Name>, (usize, usize)>,
    /// The names each group filed in `routes`, to take them out again.
    routed: Vec<Vec<Arc<Name>>>,
    /// Some name is a member of two groups: routes are rebuilt in full, so the
    /// last group wins as it always did.
    shared: bool,
    unassigned: FxMap<Arc<Name>, Reading>,
    options: Options,
    /// Unix ms of t = 0, for schedules (0: timestamps are Unix ms themselves).
    wall_origin: i64,
    /// Global ceiling on the hourly cost of every group plus `external_cost`, in
    /// millionths (`[daemon] max_cost_per_hour`).
    cost_ceiling: Option<u64>,
    /// Hourly cost of what this engine does not scale but the ceiling covers (the
    /// other loop of the daemon: LXC containers or albatross groups).
    external_cost: u64,
    /// Decisions waiting for an operator.
    gate: Gate<Box<Decision>>,
}

impl Engine {
    /// Groups given as (primary, policy), all created at `now`.
    pub fn new(groups: Vec<(Name, Policy)>, options: Options, now: Timestamp) -> Self {
        let mut policies = Interner::default();
        let clusters = groups
            .into_iter()
            .map(|(primary, policy)| Self::fresh(primary, policies.intern(policy), now))
            .collect();
        let mut e = Self {
            clusters,
            index: FxMap::default(),
            queue: Queue::default(),
            total_cost: 0,
            routes: FxMap::default(),
            routed: Vec::new(),
            shared: false,
            unassigned: FxMap::default(),
            options,
            wall_origin: 0,
            cost_ceiling: None,
            external_cost: 0,
            gate: Gate::default(),
        };
        e.reindex();
        e
    }

    /// A group created at `now`, its first timer evaluation at its own phase.
    fn fresh(primary: Name, policy: Arc<Policy>, now: Timestamp) -> Group {
        let phase = due::phase(&primary, policy.sample_interval);
        Group::new(primary, policy, now).with_phase(phase)
    }

    /// Anchor t = 0 at `origin_ms` (Unix ms): schedules are evaluated at wall-clock
    /// time `origin_ms + now`. The daemon passes its start time; `replay` its
    /// `--start`.
    pub fn with_wall_origin(mut self, origin_ms: i64) -> Self {
        self.set_wall_origin(origin_ms);
        self
    }

    /// [`Engine::with_wall_origin`] in place ([`Input::WallOrigin`]).
    fn set_wall_origin(&mut self, origin_ms: i64) {
        self.wall_origin = origin_ms;
        for c in &mut self.clusters {
            c.set_wall_origin(origin_ms);
        }
        // Schedules' next transitions moved.
        self.queue = Queue::of(self.clusters.iter().map(Group::next_deadline));
    }

    /// Unix ms of t = 0.
    pub fn wall_origin(&self) -> i64 {
        self.wall_origin
    }

    /// The read model of every group at `now` (the API's groups, the metrics'
    /// gauges): built here, from one engine state.
    pub fn status(&self, now: Timestamp) -> super::status::Status {
        super::status::Status::of(self, now)
    }

    /// The global cost ceiling in force, in millionths.
    pub fn cost_ceiling(&self) -> Option<u64> {
        self.cost_ceiling
    }

    fn new_cluster(&self, primary: Name, policy: Arc<Policy>, now: Timestamp) -> Group {
        let mut c = Self::fresh(primary, policy, now);
        if self.wall_origin != 0 {
            c.set_wall_origin(self.wall_origin);
        }
        c
    }

    /// Cap the hourly cost of all groups together (plus [`Input::ExternalCost`])
    /// at `micros` millionths: a scale-up that would cross it is not emitted.
    pub fn with_cost_ceiling(mut self, micros: Option<u64>) -> Self {
        self.set_cost_ceiling(micros);
        self
    }

    /// [`Engine::with_cost_ceiling`] in place ([`Input::CostCeiling`]).
    fn set_cost_ceiling(&mut self, micros: Option<u64>) {
        self.cost_ceiling = micros;
        if micros.is_none() {
            for c in &mut self.clusters {
                c.set_cost_room(None);
            }
        }
    }

    /// The hourly cost of every group now, in millionths.
    pub fn hourly_cost(&self) -> u64 {
        u64::try_from(self.total_cost).unwrap_or(u64::MAX)
    }

    /// Change the cost of one instance of `group` (LXC containers are priced by
    /// their current size, known only at run time): [`Input::InstanceCost`].
    fn set_instance_cost(&mut self, group: &Name, micros: u64) {
        if let Some(i) = self.find(group) {
            let c = &mut self.clusters[i];
            let before = c.hourly_cost();
            c.set_instance_cost(micros);
            self.total_cost =
                self.total_cost.saturating_sub(u128::from(before)) + u128::from(c.hourly_cost());
        }
    }

    /// Tell group `i` how much cost the global ceiling leaves it. Only with a
    /// ceiling, so the sample path pays one branch without one.
    fn share_cost_room(&mut self, i: usize) {
        let Some(max) = self.cost_ceiling else {
            return;
        };
        let own = self.clusters[i].hourly_cost();
        let others = u64::try_from(self.total_cost.saturating_sub(u128::from(own)))
            .unwrap_or(u64::MAX)
            .saturating_add(self.external_cost);
        let room = max.saturating_sub(others).saturating_sub(own);
        self.clusters[i].set_cost_room(Some(room));
    }

    /// What the shell runs for `group`'s clones (health check, hooks).
    pub fn hooks_of(&self, group: &Name) -> Option<Arc<crate::core::lifecycle::Hooks>> {
        self.cluster(group)?.policy().hooks.clone()
    }

    /// The groups.
    pub fn groups(&self) -> &[Group] {
        &self.clusters
    }

    /// The group named `name`: O(1).
    pub fn group(&self, name: &Name) -> Option<&Group> {
        self.cluster(name)
    }

    /// Replace the set of groups ([`Input::Reconfigure`]).
    fn reconfigure(&mut self, groups: Vec<(Name, Policy)>, now: Timestamp) {
        // New groups may claim instances that were in none.
        self.unassigned.clear();
        // Old groups by name, each taken at most once (the first of a repeated
        // name, as a linear search would): O(n) for the whole reload.
        let mut old: FxMap<Arc<Name>, Vec<Group>> = FxMap::default();
        for c in std::mem::take(&mut self.clusters).into_iter().rev() {
            old.entry(c.group().clone()).or_default().push(c);
        }
        let mut policies = Interner::default();
        for (primary, policy) in groups {
            let policy = policies.intern(policy);
            match old.get_mut(&primary).and_then(Vec::pop) {
                Some(mut c) => {
                    c.set_policy(policy);
                    self.clusters.push(c);
                }
                None => {
                    let c = self.new_cluster(primary, policy, now);
                    self.clusters.push(c);
                }
            }
        }
        self.reindex();
    }

    /// The earliest time at which [`Input::Tick`] must be handled: O(1).
    pub fn next_deadline(&self) -> Option<Timestamp> {
        [self.queue.first(), self.gate.next_deadline()]
            .into_iter()
            .flatten()
            .min()
    }

    /// Advance the engine.
    pub fn handle(mut self, now: Timestamp, input: Input) -> (Self, Vec<Output>) {
        let mut out = Vec::new();
        self.step(now, input, &mut out);
        (self, out)
    }

    /// [`Engine::handle`] in place, appending to `out`.
    pub fn step(&mut self, now: Timestamp, input: Input, out: &mut Vec<Output>) {
        let tick = matches!(input, Input::Tick);
        match input {
            Input::Sample { vm, cpu_us, vcpus } => self.on_sample(now, vm, cpu_us, vcpus, out),
            Input::Tick => {
                // Only the groups due; stepping one does not move another's deadline.
                for i in self.queue.due(now) {
                    self.step_cluster(i, now, group::Input::Tick, out);
                }
            }
            Input::ActionResult { group, id, outcome } => {
                // A result ends any wait for approval (a refusal by the shell).
                if !self.gate.is_empty() {
                    self.gate.take(|d| d.id == id && *d.group == group);
                }
                if let Some(i) = self.find(&group) {
                    self.step_cluster(i, now, group::Input::ActionResult { id, outcome }, out);
                }
            }
            Input::Adopt { group, vm } => {
                if let Some(i) = self.find(&group) {
                    let vm = Arc::new(vm);
                    self.unassigned.remove(&vm);
                    self.step_cluster(i, now, group::Input::Adopt { vm }, out);
                }
            }
            Input::Foreign { group, vm } => {
                if let Some(i) = self.find(&group) {
                    let vm = Arc::new(vm);
                    self.step_cluster(i, now, group::Input::Foreign { vm }, out);
                }
            }
            Input::Reconfigure { groups } => self.reconfigure(groups, now),
            Input::CostCeiling { micros } => self.set_cost_ceiling(micros),
            Input::ExternalCost { micros } => self.external_cost = micros,
            Input::InstanceCost { group, micros } => self.set_instance_cost(&group, micros),
            Input::WallOrigin { origin_ms } => self.set_wall_origin(origin_ms),
            Input::Refusal { group, why } => {
                if let Some(i) = self.find(&group) {
                    self.step_cluster(i, now, group::Input::Refusal { why }, out);
                }
            }
            Input::CpuRoom { group, other_cpus } => {
                if let Some(i) = self.find(&group) {
                    self.step_cluster(i, now, group::Input::CpuRoom { other_cpus }, out);
                }
            }
            Input::Gone { group, vm } => {
                if let Some(i) = self.find(&group) {
                    let vm = Arc::new(vm);
                    self.step_cluster(i, now, group::Input::Gone { vm }, out);
                }
            }
            // Operator commands for an unknown group are dropped here; the API
            // checks the name first and answers 404.
            Input::Pause { group } => self.control(now, &group, group::Input::Pause, out),
            Input::Resume { group } => self.control(now, &group, group::Input::Resume, out),
            Input::Scale { group, target } => {
                self.control(now, &group, group::Input::Scale { target }, out);
            }
            Input::Lifecycle {
                group,
                vm,
                event,
                outcome,
            } => {
                if let Some(i) = self.find(&group) {
                    let vm = Arc::new(vm);
                    let input = group::Input::Lifecycle { vm, event, outcome };
                    self.step_cluster(i, now, input, out);
                }
            }
            Input::Forecast { group, forecast } => {
                self.control(now, &group, group::Input::Forecast(forecast), out);
            }
            Input::Approve { group, id, by } => self.answer(now, &group, id, true, by, out),
            Input::Reject { group, id, by } => self.answer(now, &group, id, false, by, out),
        }
        if tick {
            self.expire_held(now, out);
        }
    }

    fn control(
        &mut self,
        now: Timestamp,
        group: &Name,
        input: group::Input,
        out: &mut Vec<Output>,
    ) {
        if let Some(i) = self.find(group) {
            self.step_cluster(i, now, input, out);
        }
    }

    fn step_cluster(
        &mut self,
        i: usize,
        now: Timestamp,
        input: group::Input,
        out: &mut Vec<Output>,
    ) {
        self.with_group(i, now, out, |g, out| g.step(now, input, out));
    }

    /// Step group `i` with `f`, then bring the indexes up to date and hold what
    /// its decisions need approved: every change to a group goes through here.
    #[inline]
    fn with_group(
        &mut self,
        i: usize,
        now: Timestamp,
        out: &mut Vec<Output>,
        f: impl FnOnce(&mut Group, &mut Vec<Output>),
    ) {
        let before = self.before(i);
        let from = out.len();
        f(&mut self.clusters[i], out);
        self.after(i, before);
        if self.options.approvals && out.len() > from {
            self.hold(i, now, &out[from..]);
        }
        if out.len() > from && self.clusters[i].policy().lifecycle.drains() {
            self.release_drains(i, now, from, out);
        }
    }

    /// Scale-downs among `out[from..]` that drain and wait for nobody start
    /// draining now (approved ones start when answered).
    fn release_drains(&mut self, i: usize, now: Timestamp, from: usize, out: &mut Vec<Output>) {
        let ids: Vec<ActionId> = out[from..]
            .iter()
            .filter_map(|o| match o {
                Output::Decision(d) if d.drain && !self.is_held(&d.group, d.id) => Some(d.id),
                _ => None,
            })
            .collect();
        for id in ids {
            self.step_cluster(i, now, group::Input::Release { id }, out);
        }
    }

    fn on_sample(
        &mut self,
        now: Timestamp,
        vm: Name,
        cpu_us: u64,
        vcpus: Option<u32>,
        out: &mut Vec<Output>,
    ) {
        if let Some(&(i, j)) = self.routes.get(&vm) {
            // By member index: no second lookup by name on the hot path.
            return self.with_group(i, now, out, |g, out| {
                g.sample_at(now, j, cpu_us, vcpus, out);
            });
        }
        // Only a VM seen for the first time is matched against the groups' clone
        // templates; after that it is known to be in no group (until a reload).
        let known = self.unassigned.contains_key(&vm);
        let vm = Arc::new(vm);
        let matching = || {
            self.clusters
                .iter()
                .position(|c| c.matches_clone_pattern(&vm) && !c.is_retired(&vm))
        };
        if let Some(i) = (!known).then(matching).flatten() {
            let input = if self.options.adopt_by_name {
                self.unassigned.remove(&vm);
                group::Input::Adopt { vm: vm.clone() }
            } else {
                group::Input::Foreign { vm: vm.clone() }
            };
            self.step_cluster(i, now, input, out);
            if self.options.adopt_by_name {
                return self.step_cluster(i, now, group::Input::Sample { vm, cpu_us, vcpus }, out);
            }
        } else if let Some(policy) = self.options.auto_group.as_ref().filter(|_| !known) {
            let c = self.new_cluster((*vm).clone(), Arc::new(policy.clone()), now);
            let i = self.clusters.len();
            self.index.entry(c.group().clone()).or_insert(i);
            self.queue.set(i, c.next_deadline());
            self.total_cost += u128::from(c.hourly_cost());
            self.clusters.push(c);
            self.routed.push(Vec::new());
            self.reroute_group(i);
            return self.step_cluster(i, now, group::Input::Sample { vm, cpu_us, vcpus }, out);
        }
        // In no group: still report its CPU share.
        let next = Reading { at: now, cpu_us };
        let v = vcpus.unwrap_or(1);
        match self
            .unassigned
            .insert(vm.clone(), next)
            .map(|prev| cpu::delta(prev, next, v))
        {
            Some(Delta::Share {
                bp,
                cpu_us,
                elapsed_ms,
            }) => out.push(Output::Sample(SampleReport {
                t: now,
                vm,
                group: None,
                bp,
                cpu_us,
                elapsed_ms,
                vcpus: v,
            })),
            Some(Delta::Reset) => out.push(Output::CounterReset { vm, t: now }),
            Some(Delta::Duplicate) | None => {}
        }
    }
}

// The indexes over the groups (by name, by deadline, by member; the cost total).
mod index;
// Decisions held for approval: the gate.
mod approval;
#[cfg(test)]
mod tests;
