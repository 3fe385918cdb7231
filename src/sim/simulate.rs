//! The simulator: one group serving a demand trace, scaled by the real engine or a
//! baseline rule, measured with [`super::metrics`].
//!
//! Model: every instance has `vcpus` vCPUs; the demand is spread evenly over the
//! instances that have booted (`boot_time` after creation); each uses
//! min(1, share / vcpus) of its vCPUs, and the rest of the demand is unmet. Every
//! booted instance reports its cumulative CPU time each `sample_interval`, as
//! albatross-stats does (booting ones too, at ~0 %); the primary at t = 0, each
//! clone at a seeded phase after its creation. The
//! engine gets exactly the daemon's inputs and its decisions are carried out at
//! once (destroy: immediately; create: serves after `boot_time`).
//!
//! No clock, no OS randomness: a run is a function of (trace, policy, seed).

use std::sync::Arc;
use std::time::Duration;

use crate::core::cpu::{self, Bp, Delta, Reading};
use crate::core::naming;
use crate::core::{Action, Engine, Input, Options, Output, Policy, Timestamp};
use crate::name::Name;

use super::baselines::{Hpa, Mollymawk, View};
use super::metrics::{Meter, Metrics};
pub use super::seasonal::Fitting;
use super::trace::{Rng, Trace, gcd};

/// Which controller scales the group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// The engine with this policy.
    Engine(Box<Policy>),
    Mollymawk,
    /// HPA aiming at `target` utilisation percent, with this scale-down
    /// stabilization window.
    Hpa {
        target: u32,
        window: Duration,
    },
    /// The clairvoyant floor ([`super::oracle`]): no controller.
    Oracle,
}

/// A named controller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    pub name: String,
    pub kind: Kind,
}

/// Policy names `simulate --policy` accepts.
pub const NAMES: &[&str] = &[
    "engine",
    "reactive",
    "predictive",
    "thresholds",
    "target",
    "mollymawk",
    "hpa",
    "oracle",
];

impl Spec {
    /// `engine` (the configured policy), `reactive` (it without forecast and guard),
    /// `predictive` (it with both), `thresholds` / `target` (it with that `rule`),
    /// `mollymawk` (as at its HEAD), `hpa` (Kubernetes' defaults: 80 %, 300 s),
    /// `oracle` (the clairvoyant floor).
    pub fn named(name: &str, base: &Policy) -> Option<Self> {
        Self::named_with(name, base, Hpa::TARGET_PERCENT, Hpa::DOWN_WINDOW)
    }

    /// [`Spec::named`] with the HPA's target and stabilization window.
    pub fn named_with(
        name: &str,
        base: &Policy,
        hpa_target: u32,
        hpa_window: Duration,
    ) -> Option<Self> {
        let kind = match name {
            "thresholds" => Kind::Engine(Box::new(Policy {
                rule: crate::core::Rule::Thresholds,
                ..base.clone()
            })),
            "target" => Kind::Engine(Box::new(Policy {
                rule: crate::core::Rule::Target,
                ..base.clone()
            })),
            "engine" => Kind::Engine(Box::new(base.clone())),
            "reactive" => Kind::Engine(Box::new(Policy {
                predictive: false,
                anomaly_guard: false,
                ..base.clone()
            })),
            "predictive" => Kind::Engine(Box::new(Policy {
                predictive: true,
                anomaly_guard: true,
                ..base.clone()
            })),
            "mollymawk" => Kind::Mollymawk,
            "oracle" => Kind::Oracle,
            "hpa" => Kind::Hpa {
                target: hpa_target,
                window: hpa_window,
            },
            _ => return None,
        };
        Some(Self {
            name: name.to_string(),
            kind,
        })
    }
}

/// A scale action as carried out.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub t_ms: u64,
    pub up: bool,
    pub instance: String,
    pub reason: String,
}

/// One plotted point: means over a bucket of grid steps.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub t_s: f64,
    pub demand: f64,
    pub supply: f64,
}

/// The outcome of one run.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    pub name: String,
    pub metrics: Metrics,
    pub series: Vec<Point>,
    pub events: Vec<Event>,
}

/// Points kept for plotting, at most.
const MAX_POINTS: u64 = 2_000;

/// The plotted series of a run: means over buckets of grid steps, at most
/// [`MAX_POINTS`] of them.
#[derive(Debug, Default)]
pub struct Series {
    bucket: u64,
    sum: (f64, f64),
    n: u64,
    pub points: Vec<Point>,
}

impl Series {
    /// For a run measured over `steps` grid steps.
    pub fn new(steps: u64) -> Self {
        Self {
            bucket: steps.div_ceil(MAX_POINTS).max(1),
            ..Self::default()
        }
    }

    /// One measured step at `t_s` seconds (from the start of the measure).
    pub fn push(&mut self, t_s: f64, demand: f64, supply: f64) {
        self.sum.0 += demand;
        self.sum.1 += supply;
        self.n += 1;
        if self.n == self.bucket {
            let n = self.n as f64;
            self.points.push(Point {
                t_s,
                demand: self.sum.0 / n,
                supply: self.sum.1 / n,
            });
            (self.sum, self.n) = ((0.0, 0.0), 0);
        }
    }
}

struct Inst {
    name: Arc<Name>,
    /// Serves from then on (`boot_time` after its create) until it drains.
    ready_at: u64,
    next_sample: u64,
    cpu_us: f64,
}

/// Which instance a sample is from.
#[derive(Clone, Copy)]
struct Who {
    /// Booted (serving).
    ready: bool,
}

enum Cmd {
    Create(Arc<Name>, String),
    Destroy(Arc<Name>, String),
    /// A readiness check: it passes once the instance serves (`boot_time`).
    Check(Arc<Name>),
    /// Draining: still running (and paid for), no longer serving.
    Drain(Arc<Name>),
}

/// The time step a run of `policy` over `trace` takes: rows, samples and boots
/// all fall on it.
pub fn grid_ms(trace: &Trace, policy: &Policy) -> u64 {
    let interval = crate::core::time::duration_ms(policy.sample_interval).max(1);
    let boot = crate::core::time::duration_ms(policy.boot_time);
    gcd(gcd(trace.step_ms(), interval), boot).max(1)
}

/// Simulate `trace` for group `primary` under `policy` (bounds, vCPUs, cadence,
/// boot time, clone names), scaled by `spec`.
pub fn run(trace: &Trace, primary: &Name, policy: &Policy, spec: &Spec, seed: u64) -> Run {
    run_from(trace, primary, policy, spec, seed, 0, Fitting::Live)
}

/// [`run`] over the whole trace, measured (metrics, series, events) from
/// `from_ms` on only: the controller starts from the state the earlier part left
/// (out-of-sample figures of `tune`). Series times count from `from_ms`. `fits`:
/// seasonal fits made beforehand (`tune`: one set for all of its candidates), of
/// this trace's grid and `forecast_refit`; see [`Fitting`].
pub fn run_from(
    trace: &Trace,
    primary: &Name,
    policy: &Policy,
    spec: &Spec,
    seed: u64,
    from_ms: u64,
    fitting: Fitting<'_>,
) -> Run {
    if spec.kind == Kind::Oracle {
        return super::oracle::run(trace, policy, &spec.name, from_ms);
    }
    let interval = crate::core::time::duration_ms(policy.sample_interval).max(1);
    let boot = crate::core::time::duration_ms(policy.boot_time);
    let dt = grid_ms(trace, policy);
    let end = trace.duration_ms();
    let vcpus = policy.vcpus.max(1);
    let mut rng = Rng::new(seed);
    let mut ctl = Controller::new(primary, policy, spec);
    let mut insts = vec![Inst {
        name: Arc::new(primary.clone()),
        ready_at: 0,
        next_sample: 0,
        cpu_us: 0.0,
    }];
    let (mut meter, mut events) = (Meter::default(), Vec::new());
    let mut series = Series::new(end.saturating_sub(from_ms) / dt);
    let (mut cursor, mut cmds) = (0usize, Vec::new());
    let mut t = 0u64;
    // The seasonal forecast, refitted from the trace's past (engine policies only).
    let mut refit = match &spec.kind {
        Kind::Engine(p) => super::seasonal::Source::new(p, fitting, dt),
        _ => None,
    };
    while t < end {
        let now = Timestamp::from_millis(t);
        if let Some(forecast) = refit.as_mut().and_then(|r| r.due(t)) {
            ctl.forecast(now, primary, forecast, &mut cmds);
        }
        // Samples due now; the primary last, so its evaluation sees fresh clones.
        for i in (0..insts.len()).rev() {
            let inst = &mut insts[i];
            // A booting instance is a running process: albatross reports it (at
            // ~0 % CPU) before it serves, and the engine's startup_grace decides
            // whether to average it.
            if inst.next_sample <= t {
                inst.next_sample = t + interval;
                let (name, cpu_us) = (inst.name.clone(), inst.cpu_us as u64);
                let who = Who {
                    ready: inst.ready_at <= t,
                };
                ctl.sample(now, &name, cpu_us, vcpus, who, &mut cmds);
            }
        }
        ctl.tick(now, &mut cmds);
        let mut checks = Vec::new();
        for cmd in std::mem::take(&mut cmds) {
            let (up, name, reason) = match cmd {
                Cmd::Check(name) => {
                    let ok = insts.iter().any(|i| i.name == name && i.ready_at <= t);
                    checks.push((name, ok));
                    continue;
                }
                Cmd::Drain(name) => {
                    if let Some(i) = insts.iter_mut().find(|i| i.name == name) {
                        i.ready_at = u64::MAX;
                    }
                    continue;
                }
                Cmd::Create(name, reason) => {
                    // A seeded phase: clones do not all report in the primary's step.
                    let phase = (rng.next_u64() % (interval / dt).max(1)) * dt;
                    insts.push(Inst {
                        name: name.clone(),
                        ready_at: t + boot,
                        next_sample: t + phase,
                        cpu_us: 0.0,
                    });
                    (true, name, reason)
                }
                Cmd::Destroy(name, reason) => {
                    let before = insts.len();
                    insts.retain(|i| i.name != name);
                    if insts.len() == before {
                        continue;
                    }
                    (false, name, reason)
                }
            };
            if t < from_ms {
                continue;
            }
            meter.action(up, 1);
            events.push(Event {
                t_ms: t,
                up,
                instance: name.to_string(),
                reason,
            });
        }
        // Answered after the step's commands (what they cause runs next step).
        for (name, ok) in checks {
            ctl.checked(now, primary, &name, ok, &mut cmds);
        }
        // Serve [t, t + dt).
        let demand = trace.at(t, &mut cursor);
        if let Some(r) = refit.as_mut() {
            r.observe(t, dt, demand);
        }
        let serving = insts.iter().filter(|i| i.ready_at <= t).count() as u32;
        let capacity = f64::from(serving * vcpus);
        let supply = f64::from(insts.len() as u32 * vcpus);
        if serving > 0 {
            let per = demand.min(capacity) / f64::from(serving);
            for i in insts.iter_mut().filter(|i| i.ready_at <= t) {
                i.cpu_us += per * dt as f64 * 1000.0;
            }
        }
        if t < from_ms {
            t += dt;
            continue;
        }
        meter.step(dt, demand, supply, capacity, insts.len() as u32);
        series.push((t - from_ms) as f64 / 1000.0, demand, supply);
        t += dt;
    }
    let mut metrics = meter.finish_priced(policy.instance_cost_micros);
    if let (Controller::Engine { engine, .. }, Kind::Engine(p)) = (&ctl, &spec.kind)
        && let Some(c) = engine.groups().first()
    {
        let s = c.forecast_stats();
        if p.predictive {
            metrics.forecast_error_points = s.mean_error_points();
            metrics.predicted_ticks = Some(s.predicted_high);
        }
        if p.anomaly_guard {
            metrics.outliers_filtered = Some(s.outliers);
        }
        if let Some(r) = &refit {
            metrics.forecast_mape_percent = r.mean_mape(from_ms);
            metrics.seasonal_ticks = Some(s.seasonal_high + s.shadow_notes);
        }
    }
    Run {
        name: spec.name.clone(),
        metrics,
        series: series.points,
        events,
    }
}

/// Last reading and share of an instance, for the baselines.
struct Meter1 {
    name: Arc<Name>,
    reading: Option<Reading>,
    /// The newest reading (mollymawk measures from poll to poll).
    latest: Option<Reading>,
    bp: Option<Bp>,
}

/// A baseline rule and the time of its next evaluation (ms).
enum Rule {
    Mollymawk(Mollymawk, u64),
    Hpa(Hpa, u64),
}

enum Controller {
    Engine {
        // Boxed, as the baseline's policy: the variants stay of a size.
        engine: Box<Engine>,
        out: Vec<Output>,
    },
    Baseline {
        rule: Rule,
        primary: Arc<Name>,
        policy: Box<Policy>,
        /// Instances in creation order (the primary first).
        members: Vec<Meter1>,
    },
}

impl Controller {
    fn new(primary: &Name, policy: &Policy, spec: &Spec) -> Self {
        let rule = match &spec.kind {
            Kind::Engine(p) => {
                let options = Options::default();
                let engine = Engine::new(
                    vec![(primary.clone(), (**p).clone())],
                    options,
                    Timestamp::ZERO,
                );
                return Self::Engine {
                    engine: Box::new(engine),
                    out: Vec::new(),
                };
            }
            Kind::Mollymawk => Rule::Mollymawk(Mollymawk::default(), 0),
            Kind::Hpa { target, window } => Rule::Hpa(Hpa::with_window(*target, *window), 0),
            Kind::Oracle => unreachable!("run_from simulates the oracle without a controller"),
        };
        let primary = Arc::new(primary.clone());
        Self::Baseline {
            rule,
            members: vec![Meter1 {
                name: primary.clone(),
                reading: None,
                latest: None,
                bp: None,
            }],
            primary,
            policy: Box::new(policy.clone()),
        }
    }

    fn sample(
        &mut self,
        now: Timestamp,
        vm: &Arc<Name>,
        cpu_us: u64,
        vcpus: u32,
        who: Who,
        cmds: &mut Vec<Cmd>,
    ) {
        match self {
            Self::Engine { engine, out } => {
                let input = Input::Sample {
                    vm: (**vm).clone(),
                    cpu_us,
                    vcpus: Some(vcpus),
                };
                engine_step(engine, now, input, out, cmds);
            }
            Self::Baseline { members, rule, .. } => {
                // Kubernetes knows readiness: HPA leaves unready pods out (it
                // counts them at 0 % on the way up); mollymawk averages them.
                let hpa = matches!(rule, Rule::Hpa(..));
                let skip = !who.ready && hpa;
                if let Some(m) = members.iter_mut().find(|m| m.name == *vm && !skip) {
                    let next = Reading { at: now, cpu_us };
                    m.latest = Some(next);
                    if hpa {
                        m.measure(vcpus);
                    }
                }
            }
        }
    }

    /// The answer to a readiness check of `vm` (engine only).
    fn checked(&mut self, now: Timestamp, group: &Name, vm: &Name, ok: bool, cmds: &mut Vec<Cmd>) {
        if let Self::Engine { engine, out } = self {
            let input = Input::Lifecycle {
                group: group.clone(),
                vm: vm.clone(),
                event: crate::core::lifecycle::Event::Ready,
                outcome: if ok { Ok(()) } else { Err("booting".into()) },
            };
            engine_step(engine, now, input, out, cmds);
        }
    }

    /// A seasonal forecast for the engine (baselines do not forecast).
    fn forecast(
        &mut self,
        now: Timestamp,
        group: &Name,
        forecast: Arc<crate::core::seasonal::Forecast>,
        cmds: &mut Vec<Cmd>,
    ) {
        if let Self::Engine { engine, out } = self {
            let input = Input::Forecast {
                group: group.clone(),
                forecast,
            };
            engine_step(engine, now, input, out, cmds);
        }
    }

    fn tick(&mut self, now: Timestamp, cmds: &mut Vec<Cmd>) {
        match self {
            Self::Engine { engine, out } => {
                let mut last = None;
                while let Some(d) = engine.next_deadline().filter(|d| *d <= now) {
                    if last == Some(d) {
                        break; // a deadline that does not move would loop forever
                    }
                    last = Some(d);
                    engine_step(engine, now, Input::Tick, out, cmds);
                }
            }
            Self::Baseline {
                rule,
                members,
                policy,
                ..
            } => {
                let (next, period) = match rule {
                    Rule::Hpa(_, next) => (next, Hpa::PERIOD),
                    Rule::Mollymawk(_, next) => (next, Mollymawk::POLL),
                };
                if now.as_millis() >= *next {
                    *next = now.as_millis() + crate::core::time::duration_ms(period);
                    if matches!(rule, Rule::Mollymawk(..)) {
                        // Its poll: each share over the time since the last poll.
                        let vcpus = policy.vcpus.max(1);
                        members.iter_mut().for_each(|m| m.measure(vcpus));
                    }
                    self.evaluate(now, cmds);
                }
            }
        }
    }

    fn evaluate(&mut self, now: Timestamp, cmds: &mut Vec<Cmd>) {
        let Self::Baseline {
            rule,
            primary,
            policy,
            members,
        } = self
        else {
            return;
        };
        let instances = members.len() as u32;
        let view = View {
            now,
            instances,
            measured: members.iter().filter(|m| m.bp.is_some()).count() as u32,
            sum_bp: members.iter().filter_map(|m| m.bp).map(u64::from).sum(),
        };
        let (want, who) = match rule {
            Rule::Mollymawk(m, _) => (m.evaluate(&view), "mollymawk"),
            Rule::Hpa(h, _) => (h.evaluate(&view), "hpa"),
        };
        let want = want.clamp(policy.min_instances.max(1), policy.max_instances.max(1));
        let reason = format!(
            "{who}: average {:.2}% over {} measured, {instances} -> {want}",
            cpu::percent(view.avg_bp().unwrap_or(0) as Bp),
            view.measured
        );
        for _ in instances..want {
            let taken = members.iter().map(|m| &*m.name);
            let Some(name) = naming::next_free(&policy.clone_name, primary, taken) else {
                break;
            };
            let name = Arc::new(name);
            members.push(Meter1 {
                name: name.clone(),
                reading: None,
                latest: None,
                bp: None,
            });
            cmds.push(Cmd::Create(name, reason.clone()));
        }
        for _ in want..instances {
            // The newest clone goes first; the primary never.
            if members.len() > 1
                && let Some(m) = members.pop()
            {
                cmds.push(Cmd::Destroy(m.name, reason.clone()));
            }
        }
    }
}

impl Meter1 {
    /// The share from the previous measured reading to the newest one.
    fn measure(&mut self, vcpus: u32) {
        let Some(next) = self.latest else { return };
        if let Some(Delta::Share { bp, .. }) = self.reading.map(|p| cpu::delta(p, next, vcpus)) {
            self.bp = Some(bp.min(cpu::FULL));
        }
        self.reading = Some(next);
    }
}

/// One engine input; decisions become commands and are acknowledged at once.
fn engine_step(
    engine: &mut Engine,
    now: Timestamp,
    input: Input,
    out: &mut Vec<Output>,
    cmds: &mut Vec<Cmd>,
) {
    super::replay::step_answered(engine, now, input, out, true, &mut |o| match o {
        Output::Decision(d) => match d.action {
            Action::ScaleUp => cmds.push(Cmd::Create(d.instance.clone(), d.reason.to_string())),
            // Out of the load balancer now; destroyed when drained.
            Action::ScaleDown if d.drain => cmds.push(Cmd::Drain(d.instance.clone())),
            Action::ScaleDown | Action::CloneLost => {
                cmds.push(Cmd::Destroy(d.instance.clone(), d.reason.to_string()));
            }
            Action::ReplacePrimary | Action::Promote => {}
        },
        Output::Drained { decision: d, .. } => {
            cmds.push(Cmd::Destroy(d.instance.clone(), d.reason.to_string()));
        }
        Output::Lifecycle(h) if h.event == crate::core::lifecycle::Event::Ready => {
            cmds.push(Cmd::Check(h.vm.clone()));
        }
        _ => {}
    });
}
