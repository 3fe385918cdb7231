//! The engine task: owns the [`Engine`] value, feeds it samples and actuator results
//! with their arrival time, sleeps until its next deadline, and hands decisions to
//! an [`Actuator`]. The only place where tokio time meets the pure core.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

// Decisions into actions; operator approvals; reconcile with what runs;
// lifecycle hooks.
mod act;
mod approval;
mod life;
mod reconcile;

pub use reconcile::Listing;

use super::approvals::{self, At, Command, Owner, SharedBook};
use super::cost::CostLedger;
use super::decision_log::DecisionLog;
use super::driver::{self, Clock, Reconciler};
use super::ownership::{Keeper, Ownership};
use super::recorder::{Line, Recorder};
pub use crate::actuate::{Actuator, Done, Failed};
use crate::core::gate::Answer;
use crate::core::status::Status;
use crate::core::{Decision, Engine, Input, Output, Policy, Timestamp, Verdict};
use crate::name::Name;
use crate::notify::notice::{Ceilings, Notices};

/// What the engine task receives.
#[derive(Debug)]
pub enum Event {
    /// A statistics sample, timestamped on arrival.
    Sample {
        vm: Name,
        cpu_us: u64,
        vcpus: Option<u32>,
        at: Instant,
    },
    /// An owned clone found running at start (reconciliation).
    Adopt { group: Name, vm: Name },
    /// A running instance named like a clone of `group` that it does not own.
    Foreign { group: Name, vm: Name },
    /// A configuration reload: the new groups and policies, and the tables they
    /// came from (for the flight recorder).
    Reconfigure(Vec<(Name, Policy)>, String),
    /// A configuration reload: the new global cost ceiling (`[daemon] max_cost_per_hour`).
    CostCeiling(Option<u64>),
    /// What runs on the endpoint of `group` (from `unikernel info`), at start or
    /// after a reconnect: adopt owned clones that run, forget owned ones that do
    /// not, and mark others named like clones as foreign.
    Reconciled {
        group: Name,
        /// The endpoint's listing, shared by its groups' events.
        running: Arc<Listing>,
    },
    /// Operator command (HTTP API: pause, resume, scale); the reply gets the
    /// outputs it caused (decisions, and the evaluation that explains them).
    Control {
        input: Input,
        reply: oneshot::Sender<Vec<Output>>,
    },
    /// A snapshot of every group, for the API and the metrics.
    Status(oneshot::Sender<Status>),
    /// An operator's verdict on a decision held for approval (HTTP API).
    Approval(Command),
    /// A core input from a shell (a policy refusal lifted), timestamped on arrival.
    Input(Input),
}

impl From<crate::albatross::stats::Sample> for Event {
    fn from(s: crate::albatross::stats::Sample) -> Self {
        Self::Sample {
            vm: s.vm,
            cpu_us: s.cpu_us,
            vcpus: s.vcpus,
            at: s.at,
        }
    }
}

/// What the API holds to reach the engine task: a sender of [`Event`]s.
#[derive(Debug, Clone)]
pub struct EngineHandle {
    events: mpsc::Sender<Event>,
}

impl EngineHandle {
    pub fn new(events: mpsc::Sender<Event>) -> Self {
        Self { events }
    }

    /// The current status; `None` once the engine task stopped.
    pub async fn status(&self) -> Option<Status> {
        let (tx, rx) = oneshot::channel();
        self.events.send(Event::Status(tx)).await.ok()?;
        rx.await.ok()
    }

    /// Hand an approve / reject to the engine task; `false` once it stopped.
    pub async fn approval(&self, cmd: Command) -> bool {
        self.events.send(Event::Approval(cmd)).await.is_ok()
    }

    /// Hand the engine a core input (a refitted forecast); `false` once it stopped.
    pub async fn input(&self, input: Input) -> bool {
        self.events.send(Event::Input(input)).await.is_ok()
    }

    /// Apply an operator command; `None` once the engine task stopped.
    pub async fn control(&self, input: Input) -> Option<Vec<Output>> {
        let (reply, rx) = oneshot::channel();
        self.events
            .send(Event::Control { input, reply })
            .await
            .ok()?;
        rx.await.ok()
    }
}

/// How the engine task runs.
pub struct RunnerSettings {
    pub dry_run: bool,
    pub state_file: PathBuf,
    /// How long shutdown waits for in-flight actions.
    pub shutdown_grace: Duration,
}

/// The engine task.
pub struct Runner<A> {
    engine: Engine,
    actuator: Arc<A>,
    log: DecisionLog,
    /// The ownership record and the one action in flight per instance name.
    keeper: Keeper,
    settings: RunnerSettings,
    clock: Clock,
    /// Set by [`Runner::run`].
    events: Option<mpsc::Receiver<Event>>,
    observers: broadcast::Sender<Output>,
    notices: Notices,
    /// Decisions waiting for an operator (`require_approval`), by approval id.
    approvals: SharedBook,
    held: Vec<(String, Decision)>,
    ceilings: Ceilings,
    /// Shared with the Proxmox loop for the global cost ceiling.
    costs: Option<Arc<CostLedger>>,
    /// The other loop's hourly cost as last given to the engine.
    external_cost: u64,
    /// `run --record`: every engine input, with its time.
    recorder: Option<Recorder>,
    /// The `[policy]`/`[[group]]` tables in force (recorded with a reconfigure).
    config_source: String,
}

pub type Settled = (Decision, Result<Done, Failed>);

/// A job of the engine task that ended: an action, or a lifecycle step.
pub enum Finished {
    Action(Settled),
    Hook(super::hooks::HookDone),
}

impl<A: Actuator> Runner<A> {
    /// A runner whose time origin is `start` (the engine's t = 0).
    pub fn new(
        engine: Engine,
        actuator: Arc<A>,
        log: DecisionLog,
        ownership: Ownership,
        settings: RunnerSettings,
        start: Instant,
    ) -> Self {
        let capacity = crate::core::output::channel_capacity(engine.groups().len());
        Self {
            // Held decisions wait in the engine, unless nothing is carried out anyway.
            engine: engine.with_approvals(!settings.dry_run),
            actuator,
            log,
            keeper: Keeper::new(ownership),
            settings,
            clock: Clock::new(start),
            events: None,
            observers: broadcast::channel(capacity).0,
            notices: Notices::default(),
            approvals: SharedBook::default(),
            held: Vec::new(),
            ceilings: Ceilings::default(),
            costs: None,
            external_cost: 0,
            recorder: None,
            config_source: String::new(),
        }
    }

    /// Record every engine input in `recorder` (`run --record`), starting with how
    /// the engine was built: `config` (its `[policy]`/`[[group]]` tables), the wall
    /// origin and cost ceiling it holds now.
    pub fn with_recorder(mut self, mut recorder: Recorder, config: String) -> Self {
        recorder.write(&Line::Start {
            t_ms: self.clock.last().as_millis(),
            config: config.clone(),
            origin_ms: self.engine.wall_origin(),
            cost_ceiling: self.engine.cost_ceiling(),
            dry_run: self.settings.dry_run,
        });
        self.config_source = config;
        self.recorder = Some(recorder);
        self
    }

    fn record(&mut self, now: Timestamp, input: &Input) {
        if let Some(r) = &mut self.recorder {
            r.write(&Line::of(now, input, Some(&self.config_source)));
        }
    }

    /// Hold decisions that need approval in `book` (shared with the API) instead of
    /// a private one nobody can approve.
    pub fn with_approvals(mut self, book: SharedBook) -> Self {
        self.approvals = book;
        self
    }

    /// Share hourly costs with the Proxmox loop (the global cost ceiling covers both).
    pub fn with_costs(mut self, costs: Arc<CostLedger>) -> Self {
        self.costs = Some(costs);
        self
    }

    /// Publish notices (executed, failed, ...) on `notices` instead of a private bus.
    pub fn with_notices(mut self, notices: Notices) -> Self {
        self.notices = notices;
        self
    }

    /// The bus this runner publishes notices on.
    pub fn notices(&self) -> &Notices {
        &self.notices
    }

    /// Every engine output, for live views, metrics and tests.
    pub fn subscribe(&self) -> broadcast::Receiver<Output> {
        self.observers.subscribe()
    }

    /// The sender behind [`Runner::subscribe`], to subscribe after the runner started.
    pub fn observers(&self) -> broadcast::Sender<Output> {
        self.observers.clone()
    }

    fn stamp(&mut self, at: Instant) -> Timestamp {
        self.clock.stamp(at)
    }

    /// Run until `shutdown` fires and the in-flight actions have finished (or the
    /// grace period ran out), on the one driver. Returns the final engine.
    pub async fn run(
        mut self,
        events: mpsc::Receiver<Event>,
        shutdown: CancellationToken,
    ) -> Engine {
        self.events = Some(events);
        driver::drive(self, shutdown).await.engine
    }

    fn on_event(&mut self, ev: Event, in_flight: &mut JoinSet<Finished>) {
        match ev {
            Event::Sample {
                vm,
                cpu_us,
                vcpus,
                at,
            } => {
                let now = self.stamp(at);
                self.step(now, Input::Sample { vm, cpu_us, vcpus }, in_flight);
            }
            Event::Adopt { group, vm } => {
                let now = self.stamp(Instant::now());
                self.step(now, Input::Adopt { group, vm }, in_flight);
            }
            Event::Foreign { group, vm } => {
                let now = self.stamp(Instant::now());
                self.step(now, Input::Foreign { group, vm }, in_flight);
            }
            Event::Reconciled { group, running } => self.reconcile(group, running, in_flight),
            Event::Approval(cmd) => self.on_approval(cmd, in_flight),
            Event::Status(reply) => {
                let now = self.stamp(Instant::now());
                let _ = reply.send(self.engine.status(now));
            }
            Event::Control { input, reply } => {
                let now = self.stamp(Instant::now());
                // Audit trail in the daemon log; actions it causes are decision lines.
                tracing::info!(command = ?input, "operator command");
                let mut kept = Vec::new();
                self.step_keep(now, input, in_flight, Some(&mut kept));
                let _ = reply.send(kept);
            }
            Event::Input(input) => {
                let now = self.stamp(Instant::now());
                self.step(now, input, in_flight);
            }
            Event::CostCeiling(micros) => {
                let now = self.stamp(Instant::now());
                self.step(now, Input::CostCeiling { micros }, in_flight);
            }
            Event::Reconfigure(groups, source) => {
                let now = self.stamp(Instant::now());
                self.config_source = source;
                self.step(now, Input::Reconfigure { groups }, in_flight);
                tracing::info!(groups = self.engine.groups().len(), "configuration applied");
            }
        }
    }

    fn step(&mut self, now: Timestamp, input: Input, in_flight: &mut JoinSet<Finished>) {
        self.step_keep(now, input, in_flight, None);
    }

    /// [`Runner::step`], copying the outputs into `keep` (operator commands).
    fn step_keep(
        &mut self,
        now: Timestamp,
        input: Input,
        in_flight: &mut JoinSet<Finished>,
        mut keep: Option<&mut Vec<Output>>,
    ) {
        let mut out = Vec::new();
        // The other loop's cost is an input like any other; samples (the hot path)
        // do not read it, ticks and results do.
        let costly = !matches!(input, Input::Sample { .. });
        if let Some(c) = self.costs.as_ref().filter(|_| costly) {
            let micros = c.proxmox();
            if micros != self.external_cost {
                self.external_cost = micros;
                self.record(now, &Input::ExternalCost { micros });
                self.engine
                    .step(now, Input::ExternalCost { micros }, &mut out);
            }
        }
        self.record(now, &input);
        self.engine.step(now, input, &mut out);
        if let Some(c) = &self.costs
            && (costly || out.iter().any(|o| matches!(o, Output::Decision(_))))
        {
            c.set_albatross(self.engine.hourly_cost());
        }
        for o in out {
            if let Some(k) = keep.as_deref_mut() {
                k.push(o.clone());
            }
            self.log.output(&o, self.settings.dry_run);
            if let Output::Decision(d) = &o {
                self.dispatch(now, d, in_flight);
            }
            if let Output::Answered {
                decision, answer, ..
            } = &o
            {
                match answer {
                    // A draining scale-down is destroyed on `Drained` instead.
                    Answer::Approved { .. } if !decision.drain => {
                        self.carry_out(now, decision, in_flight);
                    }
                    Answer::Expired => self.expired(now, decision),
                    _ => {}
                }
            }
            match &o {
                Output::Drained { decision, .. } => self.carry_out(now, decision, in_flight),
                Output::Lifecycle(h) => self.lifecycle(now, h, in_flight),
                _ => {}
            }
            if let Output::Evaluation(e) = &o {
                let why_not = match &e.verdict {
                    Verdict::Blocked { why_not, .. } => Some(why_not),
                    _ => None,
                };
                if let Some(n) = self.ceilings.observe(now, &e.group.to_string(), why_not) {
                    self.notices.publish(n);
                }
            }
            if let Output::ActionFailed {
                group,
                action,
                instance,
                error,
                retry_in,
                ..
            } = &o
            {
                tracing::warn!(%group, action = action.as_str(), %instance, %error, retry_in = %humantime::format_duration(*retry_in), "action failed");
            }
            let _ = self.observers.send(o);
        }
    }
}

impl<A: Actuator> Reconciler for Runner<A> {
    type Event = Event;
    type Done = Finished;

    async fn recv(&mut self) -> Option<Event> {
        match &mut self.events {
            Some(rx) => rx.recv().await,
            None => None,
        }
    }

    async fn event(&mut self, ev: Event, jobs: &mut JoinSet<Finished>) {
        self.on_event(ev, jobs);
    }

    fn deadline(&self) -> Option<Instant> {
        self.engine.next_deadline().map(|t| self.clock.instant(t))
    }

    fn tick(&mut self, jobs: &mut JoinSet<Finished>) {
        let now = self.stamp(Instant::now());
        self.step(now, Input::Tick, jobs);
    }

    fn settle(&mut self, done: Finished, jobs: &mut JoinSet<Finished>) {
        match done {
            Finished::Action(s) => Runner::settle(self, s, jobs),
            Finished::Hook(h) => self.hook_done(h, jobs),
        }
    }

    fn stop(&mut self) {
        // Held decisions die with the task: nothing executes them any more.
        let now = self.stamp(Instant::now());
        for e in self.approvals.lock().abandon(Owner::Albatross, At::now()) {
            self.log.line(&approvals::log_line(
                "approval_expired",
                &e,
                now.as_millis(),
            ));
        }
    }

    fn grace(&self) -> Duration {
        self.settings.shutdown_grace
    }
}
