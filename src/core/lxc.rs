//! The LXC machine: everything the Proxmox side decides, as one value. It holds
//! each container's vertical machine, the horizontal engine for the clones, the
//! coupling between the two (clone only once resizing is at its cap), the gauge →
//! share → counter conversion, and the cost room under the global ceiling.
//!
//! The Proxmox shell turns `GET /cluster/resources` and the ownership record into
//! a [`Poll`], sizes read from a container's config into [`Input::Size`], and
//! carries out what [`Output`] says; nothing here knows HTTP or the clock.

use std::collections::HashMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::cpu::Bp;
use super::gate::{Answer, Gate};
use super::machine::Machine;
use super::vertical::{self, Size, Usage, Vertical, VerticalPolicy};
use super::{ActionId, Engine, Options, Policy, Timestamp, WhyNot};
use crate::name::Name;

/// How a container is scaled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    Vertical,
    Horizontal,
    /// Grow in place up to the cap, then clone; shrink clones first, then size.
    VerticalThenHorizontal,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Vertical => "vertical",
            Self::Horizontal => "horizontal",
            Self::VerticalThenHorizontal => "vertical-then-horizontal",
        }
    }

    /// Clones are made (a group in the horizontal engine).
    pub fn clones(self) -> bool {
        self != Self::Vertical
    }
}

/// One configured container.
#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    pub vmid: u32,
    pub name: Name,
    pub mode: Mode,
    pub policy: Policy,
    pub vertical: VerticalPolicy,
}

/// A container as one poll of `/cluster/resources` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    pub vmid: u32,
    pub running: bool,
    pub template: bool,
    /// Busy share of `maxcpu` (Proxmox's `cpu` gauge).
    pub cpu: f64,
    pub maxcpu: Option<f64>,
    pub mem_mib: u32,
    /// Configured memory; unknown until Proxmox reports it.
    pub maxmem_mib: Option<u32>,
    /// Free memory of its node (`None`: unknown, so no growth).
    pub node_free_mib: Option<u32>,
    /// Carries the autoscaler's tag (a clone counts only then).
    pub tagged: bool,
}

/// A clone the ownership record holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Owned {
    pub group: Name,
    pub clone: Name,
    /// `None` until the clone call chose an id.
    pub vmid: Option<u32>,
}

/// One poll: the rows of the configured containers and the owned clones, and the
/// ownership record at that moment.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Poll {
    pub rows: Vec<Row>,
    pub owned: Vec<Owned>,
}

/// An input.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    Poll(Poll),
    /// cores / cpulimit as read from a container's config (`/cluster/resources`
    /// has only `maxcpu`).
    Size {
        vmid: u32,
        size: Size,
    },
    /// How a resize ended.
    Resized {
        vmid: u32,
        id: ActionId,
        to: Size,
        outcome: Result<(), String>,
    },
    /// An operator's answer (API key `by`) to resize `id` of `vmid`, held for
    /// approval.
    AnswerResize {
        vmid: u32,
        id: ActionId,
        approve: bool,
        by: String,
    },
    /// An input for the clones' groups: results, operator commands, costs, origin.
    Engine(super::Input),
    Tick,
}

/// An output.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// What the horizontal engine said.
    Engine(super::Output),
    /// What a container's vertical machine said.
    Vertical { vmid: u32, out: vertical::Output },
    /// An owned clone is gone from the cluster: drop it from the record.
    Forget { group: Name, clone: Name },
    /// A resize held for approval was answered or expired; only an approved one
    /// is carried out (the others fail for the container's vertical machine).
    ResizeAnswered {
        vmid: u32,
        resize: vertical::Resize,
        answer: Answer,
    },
    /// A resize-only container was seen (for the history: no engine sees it).
    Observed {
        vmid: u32,
        cpu_bp: Bp,
        cores: u32,
        /// CPUs busy, in thousandths.
        busy_milli: u64,
    },
}

/// One container's state.
#[derive(Debug, Clone, PartialEq)]
pub struct Container {
    spec: Spec,
    vertical: Option<Vertical>,
    known: Option<Size>,
    /// The size just set, used until the poll shows it (pvestatd lags).
    expect: Option<(Size, Timestamp)>,
    /// Why the last wanted resize was not made.
    why_not: Option<WhyNot>,
    /// The usage of the last poll that saw it running.
    seen: Option<Usage>,
    /// The last poll saw it running with a known size.
    running: bool,
}

impl Container {
    pub fn spec(&self) -> &Spec {
        &self.spec
    }
    pub fn vertical(&self) -> Option<&Vertical> {
        self.vertical.as_ref()
    }
    pub fn known(&self) -> Option<Size> {
        self.known
    }
    pub fn why_not(&self) -> Option<&WhyNot> {
        self.why_not.as_ref()
    }
    pub fn seen(&self) -> Option<Usage> {
        self.seen
    }
}

/// The LXC machine. A value: no I/O, no clock.
#[derive(Debug, Clone)]
pub struct Lxc {
    containers: Vec<Container>,
    /// vmid → index in `containers`.
    by_vmid: HashMap<u32, usize>,
    engine: Engine,
    /// Synthetic cumulative CPU counters, by instance.
    counters: HashMap<Name, (Timestamp, u64)>,
    poll_interval: Duration,
    cost_ceiling: Option<u64>,
    /// What shares the ceiling but is scaled elsewhere (the albatross groups).
    external_cost: u64,
    /// Hold what `require_approval` covers (see [`Lxc::with_approvals`]).
    approvals: bool,
    /// Resizes waiting for an operator, by container.
    resizes: Gate<(u32, vertical::Resize)>,
}

impl Lxc {
    pub fn new(mut specs: Vec<Spec>, poll_interval: Duration, now: Timestamp) -> Self {
        for s in &mut specs {
            // Shares are fed as counters on a 1-vCPU scale (see `sample`): a `vcpus`
            // meant for albatross groups in `[policy]` must not rescale them.
            s.policy.vcpus = 1;
            s.policy.vcpus_fixed = false;
        }
        let groups = specs
            .iter()
            .filter(|s| s.mode.clones())
            .map(|s| (s.name.clone(), s.policy.clone()))
            .collect();
        let by_vmid = specs.iter().enumerate().map(|(i, s)| (s.vmid, i)).collect();
        let containers = specs
            .into_iter()
            .map(|spec| Container {
                vertical: (spec.mode != Mode::Horizontal)
                    .then(|| Vertical::new(spec.vertical.clone())),
                spec,
                known: None,
                expect: None,
                why_not: None,
                seen: None,
                running: false,
            })
            .collect();
        Self {
            containers,
            by_vmid,
            engine: Engine::new(groups, Options::default(), now),
            counters: HashMap::new(),
            poll_interval,
            cost_ceiling: None,
            external_cost: 0,
            approvals: false,
            resizes: Gate::default(),
        }
    }

    /// Hold clones, removals and resizes that need approval until an operator
    /// answers or `approval_timeout` runs out (the daemon, unless dry-run).
    pub fn with_approvals(mut self, on: bool) -> Self {
        self.engine = self.engine.with_approvals(on);
        self.approvals = on;
        self
    }

    /// Whether resize `id` of container `vmid` waits for an operator.
    pub fn is_held_resize(&self, vmid: u32, id: ActionId) -> bool {
        self.resizes.contains(|(v, r)| *v == vmid && r.id == id)
    }

    /// The horizontal engine (groups, members, counters).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn containers(&self) -> &[Container] {
        &self.containers
    }

    pub fn container(&self, vmid: u32) -> Option<&Container> {
        self.index_of(vmid).map(|i| &self.containers[i])
    }

    /// The index of container `vmid` in [`Lxc::containers`].
    pub fn index_of(&self, vmid: u32) -> Option<usize> {
        self.by_vmid.get(&vmid).copied()
    }

    /// The container whose group is `name`.
    pub fn by_name(&self, name: &Name) -> Option<&Container> {
        self.containers.iter().find(|c| c.spec.name == *name)
    }

    /// Containers running in `poll` whose cores/cpulimit must be read first: never
    /// read, or `maxcpu` changed by someone else.
    pub fn stale(&self, poll: &Poll) -> Vec<u32> {
        let rows: HashMap<u32, &Row> = poll.rows.iter().map(|r| (r.vmid, r)).collect();
        let mut out = Vec::new();
        for c in &self.containers {
            let Some(row) = rows.get(&c.spec.vmid).filter(|r| r.running) else {
                continue;
            };
            let stale = match c.known {
                None => true,
                Some(k) if c.expect.is_none() => row.maxcpu.is_some_and(|m| {
                    (m - maxcpu(k)).abs() > 0.005 && k.cores + k.cpulimit_centi > 0
                }),
                Some(_) => false,
            };
            if stale {
                out.push(c.spec.vmid);
            }
        }
        out
    }

    /// What shares the ceiling but is scaled elsewhere, as last given.
    pub fn external_cost(&self) -> u64 {
        self.external_cost
    }

    /// The hourly cost of every container and clone, in millionths.
    pub fn hourly_cost(&self) -> u64 {
        self.engine.hourly_cost() + self.vertical_only_cost()
    }

    /// Containers that only resize are not in the horizontal engine.
    fn vertical_only_cost(&self) -> u64 {
        self.containers
            .iter()
            .filter(|c| !c.spec.mode.clones())
            .filter_map(|c| c.vertical.as_ref().map(Vertical::hourly_cost))
            .sum()
    }

    /// The hourly cost of container `i` and its clones.
    pub fn own_cost(&self, i: usize) -> u64 {
        let c = &self.containers[i];
        if c.spec.mode.clones() {
            self.engine
                .groups()
                .iter()
                .find(|g| **g.group() == c.spec.name)
                .map_or(0, |g| g.hourly_cost())
        } else {
            c.vertical.as_ref().map_or(0, Vertical::hourly_cost)
        }
    }

    /// What container `i` may add under the global ceiling.
    fn cost_room(&self, i: usize) -> Option<u64> {
        let max = self.cost_ceiling?;
        let own = self.own_cost(i);
        let others = (self.external_cost + self.hourly_cost()).saturating_sub(own);
        Some(max.saturating_sub(others).saturating_sub(own))
    }

    fn on_poll(&mut self, now: Timestamp, poll: &Poll, out: &mut Vec<Output>) {
        let rows: HashMap<u32, &Row> = poll.rows.iter().map(|r| (r.vmid, r)).collect();
        // Engine outputs follow the vertical ones, the tick's first (as they always did).
        let mut engine_out = Vec::new();
        // Resize-only containers share the ceiling with the horizontal groups.
        let micros = self.external_cost + self.vertical_only_cost();
        let external = super::Input::ExternalCost { micros };
        self.engine.step(now, external, &mut engine_out);
        for i in 0..self.containers.len() {
            let vmid = self.containers[i].spec.vmid;
            self.containers[i].running = false;
            let Some(row) = rows.get(&vmid).copied() else {
                continue;
            };
            if !row.running || row.template {
                continue;
            }
            let Some(size) = self.size_now(i, row, now) else {
                continue;
            };
            self.containers[i].running = true;
            let bp = vertical::cpu_share(
                row.cpu,
                row.maxcpu.unwrap_or(0.0),
                size.cores,
                size.cpulimit_centi,
            );
            let name = self.containers[i].spec.name.clone();
            let owned: Vec<&Owned> = poll.owned.iter().filter(|o| o.group == name).collect();
            let usage = Usage {
                size,
                cpu_bp: bp,
                mem_used_mib: row.mem_mib,
                node_free_mib: row.node_free_mib,
                clones: u32::try_from(owned.len()).unwrap_or(u32::MAX),
            };
            self.containers[i].seen = Some(usage);
            let spec = &self.containers[i].spec;
            let pricing = spec.vertical.pricing;
            if pricing.by_size() && spec.mode.clones() {
                // Clones are copies: a container's instance costs what its size costs.
                let cost = super::Input::InstanceCost {
                    group: name.clone(),
                    micros: pricing.of(size),
                };
                self.engine.step(now, cost, &mut engine_out);
            }
            let room = self.cost_room(i);
            let mut cap = true;
            if let Some(v) = self.containers[i].vertical.as_mut() {
                v.set_cost_room(room);
                let mut vout = Vec::new();
                v.step(now, vertical::Input::Sample(usage), &mut vout);
                cap = v.cpu_at_cap();
                for o in vout {
                    self.vertical_out(i, o, out);
                }
            }
            let spec = &self.containers[i].spec;
            if !spec.mode.clones() {
                let busy = row.cpu * row.maxcpu.unwrap_or(0.0) * 1000.0;
                out.push(Output::Observed {
                    vmid,
                    cpu_bp: bp,
                    cores: size.cores,
                    busy_milli: busy.round().max(0.0) as u64,
                });
                continue;
            }
            // Until vertical is at its cap, horizontal sees load capped at its scale-up
            // threshold: it never clones early, but still removes clones when cold.
            let seen = if cap {
                bp
            } else {
                bp.min(spec.policy.scale_up_threshold * 100)
            };
            self.reconcile(now, &name, &owned, &rows, &mut engine_out, out);
            self.sample(now, name, seen, &mut engine_out);
            for o in owned {
                let Some(r) = o.vmid.and_then(|v| rows.get(&v)) else {
                    continue;
                };
                if r.running && r.tagged {
                    let bp = vertical::cpu_share(r.cpu, r.maxcpu.unwrap_or(0.0), 0, 0);
                    self.sample(now, o.clone.clone(), bp, &mut engine_out);
                }
            }
        }
        if self.engine.next_deadline().is_some_and(|t| t <= now) {
            let mut tick = Vec::new();
            self.engine.step(now, super::Input::Tick, &mut tick);
            out.extend(tick.into_iter().map(Output::Engine));
        }
        out.extend(engine_out.into_iter().map(Output::Engine));
    }

    fn size_now(&mut self, i: usize, row: &Row, now: Timestamp) -> Option<Size> {
        let poll = self.poll_interval;
        let c = &mut self.containers[i];
        let seen = Size {
            memory_mib: row.maxmem_mib?,
            ..c.known?
        };
        if let Some((exp, at)) = c.expect {
            if seen.memory_mib != exp.memory_mib && now < at.plus(poll * 3) {
                return Some(exp);
            }
            c.expect = None;
        }
        Some(seen)
    }

    /// Owned clones that exist but are not members (a clone whose task failed or
    /// timed out after the id was taken) are adopted, so they count against
    /// `max_instances` and are removed in time; records of vanished ones are dropped.
    fn reconcile(
        &mut self,
        now: Timestamp,
        group: &Name,
        owned: &[&Owned],
        rows: &HashMap<u32, &Row>,
        engine_out: &mut Vec<super::Output>,
        out: &mut Vec<Output>,
    ) {
        let Some(g) = self.engine.groups().iter().find(|g| **g.group() == *group) else {
            return;
        };
        let mut adopt = Vec::new();
        for o in owned {
            if g.has_member(&o.clone) {
                continue;
            }
            match o.vmid {
                Some(v) if rows.contains_key(&v) => adopt.push(o.clone.clone()),
                _ => out.push(Output::Forget {
                    group: group.clone(),
                    clone: o.clone.clone(),
                }),
            }
        }
        for vm in adopt {
            let input = super::Input::Adopt {
                group: group.clone(),
                vm,
            };
            self.engine.step(now, input, engine_out);
        }
    }

    /// Feed a share as a synthetic cumulative counter (1 vCPU scale).
    fn sample(&mut self, now: Timestamp, vm: Name, bp: Bp, out: &mut Vec<super::Output>) {
        let (at, cum) = self.counters.get(&vm).copied().unwrap_or((now, 0));
        let cum = vertical::advance_counter(cum, bp, now.since(at).as_millis() as u64);
        self.counters.insert(vm.clone(), (now, cum));
        let input = super::Input::Sample {
            vm,
            cpu_us: cum,
            vcpus: Some(1),
        };
        self.engine.step(now, input, out);
    }

    /// A vertical output, noting why a wanted resize was not made (the status view).
    fn vertical_out(&mut self, i: usize, o: vertical::Output, out: &mut Vec<Output>) {
        let c = &mut self.containers[i];
        if let vertical::Output::Resize(r) = &o
            && self.approvals
        {
            let action = match r.direction {
                vertical::Direction::Up => super::Action::ScaleUp,
                vertical::Direction::Down => super::Action::ScaleDown,
            };
            if c.spec.policy.require_approval.covers(action, false) {
                let timeout = c.spec.policy.approval_timeout;
                self.resizes.hold(r.t, (c.spec.vmid, r.clone()), timeout);
            }
        }
        if let vertical::Output::Evaluation { verdict, .. } = &o {
            c.why_not = match verdict {
                vertical::Verdict::Blocked { why_not, .. } => Some(why_not.clone()),
                _ => None,
            };
        }
        out.push(Output::Vertical {
            vmid: c.spec.vmid,
            out: o,
        });
    }

    /// Say how the wait of resize `r` ended; one not carried out fails for the
    /// container's vertical machine (which backs off as after any failure).
    fn resize_answered(
        &mut self,
        now: Timestamp,
        vmid: u32,
        r: vertical::Resize,
        answer: Answer,
        out: &mut Vec<Output>,
    ) {
        let failure = answer.failure();
        let id = r.id;
        out.push(Output::ResizeAnswered {
            vmid,
            resize: r,
            answer,
        });
        let Some(why) = failure else { return };
        let Some(i) = self.index_of(vmid) else {
            return;
        };
        let mut vout = Vec::new();
        if let Some(v) = self.containers[i].vertical.as_mut() {
            let input = vertical::Input::Result {
                id,
                outcome: Err(why),
            };
            v.step(now, input, &mut vout);
        }
        for o in vout {
            self.vertical_out(i, o, out);
        }
    }

    fn on_engine(&mut self, now: Timestamp, input: super::Input, out: &mut Vec<Output>) {
        match &input {
            // Added to the resize-only containers' cost at each poll.
            super::Input::ExternalCost { micros } => {
                self.external_cost = *micros;
                return;
            }
            super::Input::CostCeiling { micros } => self.cost_ceiling = *micros,
            super::Input::WallOrigin { origin_ms } => {
                for c in &mut self.containers {
                    if let Some(v) = c.vertical.take() {
                        c.vertical = Some(v.with_wall_origin(*origin_ms));
                    }
                }
            }
            _ => {}
        }
        let mut eo = Vec::new();
        self.engine.step(now, input, &mut eo);
        out.extend(eo.into_iter().map(Output::Engine));
    }
}

impl Machine for Lxc {
    type Input = Input;
    type Output = Output;

    fn step(&mut self, now: Timestamp, input: Input, out: &mut Vec<Output>) {
        match input {
            Input::Poll(p) => self.on_poll(now, &p, out),
            Input::Size { vmid, size } => {
                if let Some(i) = self.index_of(vmid) {
                    self.containers[i].known = Some(size);
                }
            }
            Input::Resized {
                vmid,
                id,
                to,
                outcome,
            } => {
                // A result ends any wait for approval (a refusal by the shell).
                self.resizes.take(|(v, r)| *v == vmid && r.id == id);
                let Some(i) = self.index_of(vmid) else {
                    return;
                };
                let ok = outcome.is_ok();
                let mut vout = Vec::new();
                if let Some(v) = self.containers[i].vertical.as_mut() {
                    v.step(now, vertical::Input::Result { id, outcome }, &mut vout);
                }
                if ok {
                    self.containers[i].expect = Some((to, now));
                    self.containers[i].known = Some(to);
                }
                for o in vout {
                    self.vertical_out(i, o, out);
                }
            }
            Input::AnswerResize {
                vmid,
                id,
                approve,
                by,
            } => {
                let Some((_, r)) = self.resizes.take(|(v, r)| *v == vmid && r.id == id) else {
                    return;
                };
                let recheck = self
                    .container(vmid)
                    .and_then(|c| c.vertical.as_ref())
                    .map_or(Err("no longer configured".to_string()), |v| v.recheck(&r));
                let answer = match (approve, recheck) {
                    (true, Ok(())) => Answer::Approved { by },
                    (true, Err(why)) => Answer::Refused { by, why },
                    (false, _) => Answer::Rejected { by },
                };
                self.resize_answered(now, vmid, r, answer, out);
            }
            Input::Engine(e) => self.on_engine(now, e, out),
            Input::Tick => {
                for (vmid, r) in self.resizes.expired(now) {
                    self.resize_answered(now, vmid, r, Answer::Expired, out);
                }
                if self.engine.next_deadline().is_some_and(|t| t <= now) {
                    self.on_engine(now, super::Input::Tick, out);
                }
                for i in 0..self.containers.len() {
                    // A container not running at the last poll is not resized on
                    // what it used before it stopped.
                    if !self.containers[i].running {
                        continue;
                    }
                    let Some(v) = self.containers[i].vertical.as_mut() else {
                        continue;
                    };
                    if v.next_deadline().is_none_or(|t| t > now) {
                        continue;
                    }
                    let mut vout = Vec::new();
                    v.step(now, vertical::Input::Tick, &mut vout);
                    for o in vout {
                        self.vertical_out(i, o, out);
                    }
                }
            }
        }
    }

    fn next_deadline(&self) -> Option<Timestamp> {
        let vertical = self
            .containers
            .iter()
            .filter_map(|c| c.vertical.as_ref()?.next_deadline());
        self.engine
            .next_deadline()
            .into_iter()
            .chain(vertical)
            .chain(self.resizes.next_deadline())
            .min()
    }

    fn tick() -> Input {
        Input::Tick
    }
}

fn maxcpu(k: Size) -> f64 {
    if k.cores > 0 {
        f64::from(k.cores)
    } else {
        f64::from(k.cpulimit_centi) / 100.0
    }
}
