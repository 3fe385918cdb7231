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

use super::approvals::{self, At, Command, Owner, SharedBook};
use super::cost::CostLedger;
use super::decision_log::DecisionLog;
use super::ownership::{Keeper, Listed, Ownership};
use super::recorder::{Line, Recorder};
pub use crate::actuate::{Actuator, Done, Failed};
use crate::core::status::Status;
use crate::core::{Action, Decision, Engine, Input, Output, Policy, Timestamp, Verdict};
use crate::name::Name;
use crate::notify::notice::{Ceilings, Notice, Notices};

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
        /// Names with when they started (Unix ms), if albatross says.
        running: Vec<(Name, Option<i64>)>,
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
    start: Instant,
    last: Timestamp,
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

type Settled = (Decision, Result<Done, Failed>);

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
        Self {
            engine,
            actuator,
            log,
            keeper: Keeper::new(ownership),
            settings,
            start,
            last: Timestamp::ZERO,
            observers: broadcast::channel(1024).0,
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
            t_ms: self.last.as_millis(),
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
        let ms =
            u64::try_from(at.saturating_duration_since(self.start).as_millis()).unwrap_or(u64::MAX);
        // Channel delays can reorder arrivals by a hair; the core needs monotonic time.
        self.last = self.last.max(Timestamp(ms));
        self.last
    }

    fn instant(&self, t: Timestamp) -> Instant {
        self.start + Duration::from_millis(t.as_millis())
    }

    /// Run until `shutdown` fires and the in-flight actions have finished (or the
    /// grace period ran out). Returns the final engine.
    pub async fn run(
        mut self,
        mut events: mpsc::Receiver<Event>,
        shutdown: CancellationToken,
    ) -> Engine {
        let mut in_flight: JoinSet<Settled> = JoinSet::new();
        loop {
            let deadline = self.engine.next_deadline().map(|t| self.instant(t));
            let expiry = self.approvals.lock().next_expiry(Owner::Albatross);
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                Some(done) = in_flight.join_next() => {
                    if let Ok(done) = done {
                        self.settle(done, &mut in_flight);
                    }
                }
                ev = events.recv() => match ev {
                    Some(ev) => self.on_event(ev, &mut in_flight),
                    None => break,
                },
                () = sleep_until(deadline) => {
                    let now = self.stamp(Instant::now());
                    self.step(now, Input::Tick, &mut in_flight);
                }
                () = sleep_until(expiry) => self.expire(&mut in_flight),
            }
        }
        // Held decisions die with the task: nothing executes them any more.
        let now = self.stamp(Instant::now());
        for e in self.approvals.lock().abandon(Owner::Albatross, At::now()) {
            self.log.line(&approvals::log_line(
                "approval_expired",
                &e,
                now.as_millis(),
            ));
        }
        // Let actions in flight finish so their outcome is recorded.
        let grace = tokio::time::sleep(self.settings.shutdown_grace);
        tokio::pin!(grace);
        while !in_flight.is_empty() {
            tokio::select! {
                Some(Ok(done)) = in_flight.join_next() => {
                    let mut late = JoinSet::new();
                    self.settle(done, &mut late);
                    // No new actions during shutdown.
                    late.abort_all();
                }
                () = &mut grace => {
                    tracing::warn!(pending = in_flight.len(), "shutdown: actions still running after the grace period; their outcome is unknown");
                    break;
                }
            }
        }
        self.engine
    }

    fn on_event(&mut self, ev: Event, in_flight: &mut JoinSet<Settled>) {
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

    fn reconcile(
        &mut self,
        group: Name,
        running: Vec<(Name, Option<i64>)>,
        in_flight: &mut JoinSet<Settled>,
    ) {
        let now = self.stamp(Instant::now());
        let g = group.to_string();
        let listed: Vec<Listed> = running
            .iter()
            .map(|(n, started_ms)| Listed {
                name: n.to_string(),
                started_ms: *started_ms,
            })
            .collect();
        let running: Vec<Name> = running.into_iter().map(|(n, _)| n).collect();
        let found = self.keeper.reconcile(&g, &listed);
        for name in &found.disowned {
            tracing::warn!(group = %g, instance = %name, "a create of this name was recorded but never confirmed, and an instance of that name ran before it was decided: not ours, never touched");
            if let Ok(vm) = Name::parse(name) {
                let input = Input::Foreign {
                    group: group.clone(),
                    vm,
                };
                self.step(now, input, in_flight);
            }
        }
        for name in &found.forgot {
            tracing::info!(group = %g, instance = %name, "forgetting an owned clone that no longer runs");
            if let Ok(vm) = Name::parse(name) {
                let input = Input::Gone {
                    group: group.clone(),
                    vm,
                };
                self.step(now, input, in_flight);
            }
        }
        if Keeper::changed(&found) {
            self.save_ownership();
        }
        for name in found.adopt {
            let Some(vm) = running.iter().find(|r| r.to_string() == name) else {
                continue;
            };
            let known = self
                .engine
                .groups()
                .iter()
                .any(|c| **c.group() == group && c.has_member(vm));
            if !known {
                tracing::info!(group = %g, instance = %name, "adopting an owned clone that still runs");
            }
            let input = Input::Adopt {
                group: group.clone(),
                vm: vm.clone(),
            };
            self.step(now, input, in_flight);
        }
        let Some(c) = self.engine.groups().iter().find(|c| **c.group() == group) else {
            return;
        };
        let foreign: Vec<Name> = running
            .iter()
            .filter(|r| c.matches_clone_pattern(r) && !c.has_member(r))
            .cloned()
            .collect();
        for vm in foreign {
            tracing::info!(group = %g, instance = %vm, "named like a clone but not ours: never touched");
            self.step(
                now,
                Input::Foreign {
                    group: group.clone(),
                    vm,
                },
                in_flight,
            );
        }
    }

    fn step(&mut self, now: Timestamp, input: Input, in_flight: &mut JoinSet<Settled>) {
        self.step_keep(now, input, in_flight, None);
    }

    /// [`Runner::step`], copying the outputs into `keep` (operator commands).
    fn step_keep(
        &mut self,
        now: Timestamp,
        input: Input,
        in_flight: &mut JoinSet<Settled>,
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

    fn dispatch(&mut self, now: Timestamp, d: &Decision, in_flight: &mut JoinSet<Settled>) {
        tracing::info!(group = %d.group, action = d.action.as_str(), instance = %d.instance, reason = %d.reason, dry_run = self.settings.dry_run, "decision");
        match d.action {
            Action::Promote => {
                // The new primary is never a scale-down victim.
                if self.keeper.begin(d, super::unix_ms_now()).unwrap_or(false) {
                    self.save_ownership();
                }
                self.publish_outcome(d, &Ok(()));
                return;
            }
            _ if !self.settings.dry_run && self.engine.needs_approval(d) => {
                return self.hold(now, d);
            }
            _ => {}
        }
        self.execute(now, d, in_flight);
    }

    /// Carry out `d` (approved, or not needing approval).
    fn execute(&mut self, now: Timestamp, d: &Decision, in_flight: &mut JoinSet<Settled>) {
        if !self.settings.dry_run {
            match self.keeper.begin(d, super::unix_ms_now()) {
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
        let actuator = self.actuator.clone();
        let d = d.clone();
        in_flight.spawn(async move {
            let r = actuator.execute(d.clone()).await;
            (d, r)
        });
    }

    /// Keep `d` waiting for an operator; the engine keeps it in flight meanwhile.
    fn hold(&mut self, now: Timestamp, d: &Decision) {
        let timeout = self
            .engine
            .groups()
            .iter()
            .find(|c| *c.group() == d.group)
            .map_or(Duration::from_secs(900), |c| c.policy().approval_timeout);
        let e = self.approvals.lock().add(
            Owner::Albatross,
            approvals::Request::of(d),
            timeout,
            At::now(),
        );
        tracing::info!(approval = %e.id, group = %d.group, action = d.action.as_str(), instance = %d.instance, expires_at = %approvals::fmt_time(e.expires_at), "decision waits for approval");
        self.log.line(&approvals::log_line(
            "approval_pending",
            &e,
            now.as_millis(),
        ));
        self.notices.publish(approvals::pending_notice(&e));
        self.held.push((e.id, d.clone()));
    }

    /// An operator's verdict: execute after a re-check of the rules, or answer the
    /// engine with a failure (so it backs off as after any failed action).
    fn on_approval(&mut self, cmd: Command, in_flight: &mut JoinSet<Settled>) {
        self.expire(in_flight);
        let now = self.stamp(Instant::now());
        let Some((mut e, d, cmd)) = approvals::take_held(&self.approvals, &mut self.held, cmd)
        else {
            return;
        };
        let verdict = if cmd.approve {
            self.engine
                .recheck(&d)
                .map_err(|why| format!("approved by {} but not executed: {why}", cmd.key))
        } else {
            Err(format!("rejected by {}", cmd.key))
        };
        e.outcome = Some(match &verdict {
            Ok(()) => "executing".to_string(),
            Err(why) => why.clone(),
        });
        if let Some(o) = &e.outcome {
            self.approvals.lock().set_outcome(&e.id, o.clone());
        }
        let event = if cmd.approve { "approved" } else { "rejected" };
        self.log
            .line(&approvals::log_line(event, &e, now.as_millis()));
        tracing::info!(approval = %e.id, key = %cmd.key, group = %d.group, action = d.action.as_str(), instance = %d.instance, outcome = e.outcome.as_deref().unwrap_or(""), "{event}");
        let _ = cmd.reply.send(Ok(e));
        match verdict {
            Ok(()) => self.execute(now, &d, in_flight),
            Err(why) => self.answer(now, &d, why, in_flight),
        }
    }

    /// Drop held decisions whose `approval_timeout` ran out.
    fn expire(&mut self, in_flight: &mut JoinSet<Settled>) {
        let gone = self.approvals.lock().expire(Owner::Albatross, At::now());
        if gone.is_empty() {
            return;
        }
        let now = self.stamp(Instant::now());
        for e in gone {
            tracing::warn!(approval = %e.id, group = %e.request.group, action = %e.request.action, instance = %e.request.instance, "approval expired; the decision is dropped");
            self.log.line(&approvals::log_line(
                "approval_expired",
                &e,
                now.as_millis(),
            ));
            if let Some(i) = self.held.iter().position(|(id, _)| *id == e.id) {
                let (_, d) = self.held.swap_remove(i);
                self.answer(now, &d, "approval expired".into(), in_flight);
            }
        }
    }

    /// Tell the engine that held decision `d` was not carried out.
    fn answer(
        &mut self,
        now: Timestamp,
        d: &Decision,
        why: String,
        in_flight: &mut JoinSet<Settled>,
    ) {
        let result = Input::ActionResult {
            group: (*d.group).clone(),
            id: d.id,
            outcome: Err(why),
        };
        self.step(now, result, in_flight);
    }

    fn settle(&mut self, (d, r): Settled, in_flight: &mut JoinSet<Settled>) {
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
            self.log.line(&serde_json::json!({
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
            self.log.line(&serde_json::json!({
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
        if d.action.needs_result() {
            // The engine logs failures itself (action_failed) with the retry delay.
            let result = Input::ActionResult {
                group: (*d.group).clone(),
                id: d.id,
                outcome: r,
            };
            self.step(now, result, in_flight);
        }
        // After the result: the failed create has left, the hold counts from here.
        if let Some(hold) = hold {
            self.step(now, hold, in_flight);
        }
    }

    /// `decision_executed` or `action_failed` for notification sinks.
    fn publish_outcome(&self, d: &Decision, r: &Result<(), String>) {
        self.notices
            .publish(Notice::outcome(d, r, self.settings.dry_run));
    }

    fn save_ownership(&self) {
        if let Err(e) = self.keeper.record.save(&self.settings.state_file) {
            tracing::error!(error = %e, "cannot write the ownership record");
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
