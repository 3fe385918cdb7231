//! The Proxmox VE shell: scales LXC containers with the same engine as albatross
//! groups, vertically (live `PUT config` of cores / cpulimit / memory, decided by
//! [`crate::core::vertical`]) and horizontally (clone + start, shutdown + destroy,
//! decided by [`crate::core::Group`]).
//!
//! * [`client`]: thin reqwest client (token auth, CA or fingerprint TLS, lenient
//!   types, bounded concurrency, timeouts, retries, a breaker per node).
//! * [`controller`]: one poll-decide-act cycle; [`run`] loops it.
//! * [`view`]: the per-poll snapshot behind `GET /v1/containers`.
//!
//! Horizontal mode feeds the engine a synthetic cumulative CPU counter per container
//! ([`crate::core::vertical::advance_counter`]): Proxmox reports a gauge (`cpu` as a
//! fraction of `maxcpu`), normalised here by the effective allowance, and the engine
//! wants counters; on a 1-vCPU scale the engine reads back exactly that share.

pub mod actuator;
pub mod address;
pub mod breaker;
pub mod client;
pub mod controller;
pub mod state;
pub mod tls;
pub mod types;
pub mod view;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub use client::{Client, ProxmoxError};
pub use controller::{Controller, ControllerSettings, Job, Report};

use crate::actuate::Shell;
use crate::config::Config;
use crate::core::Timestamp;
use crate::daemon::approvals;
use crate::daemon::driver::{self, Clock};
use crate::notify::notice::{Notices, Outages};

/// Passes requests and breaker states on to the metrics, and publishes
/// `unreachable` when a node's breaker opens (once per outage).
struct BreakerNotices {
    inner: Option<Arc<dyn client::Observer>>,
    notices: Notices,
    outages: Mutex<Outages>,
}

impl client::Observer for BreakerNotices {
    fn request(&self, node: &str, seconds: f64, ok: bool) {
        if let Some(o) = &self.inner {
            o.request(node, seconds, ok);
        }
    }

    fn breaker(&self, node: &str, state: i64) {
        if let Some(o) = &self.inner {
            o.breaker(node, state);
        }
        let target = format!("proxmox:{node}");
        let mut outages = self.outages.lock().unwrap_or_else(|e| e.into_inner());
        match state {
            2 => {
                let why = "circuit breaker open after repeated failures";
                if let Some(n) = outages.failed(&target, why) {
                    self.notices.publish(n);
                }
            }
            0 => {
                if let Some(n) = outages.reachable(&target) {
                    self.notices.publish(n);
                }
            }
            _ => {}
        }
    }
}

/// Options of `run` that apply to the Proxmox side.
#[derive(Clone, Default)]
pub struct RunOptions {
    /// Log decisions, change nothing.
    pub dry_run: bool,
    /// One poll-decide-act cycle, wait for its actions, return.
    pub once: bool,
    /// Told about request latency and breaker states (the daemon's metrics).
    pub observer: Option<Arc<dyn client::Observer>>,
    /// Where the loop publishes notices (notifications listen here).
    pub notices: crate::notify::Notices,
    /// Where decisions that need approval wait (shared with the API).
    pub approvals: crate::daemon::approvals::SharedBook,
    /// Approve / reject commands from the API.
    pub inbox: crate::daemon::approvals::Inbox,
    /// Where engine outputs are recorded (`[history]`).
    pub history: Option<crate::history::Recorder>,
    /// Hourly costs shared with the albatross engine task (global cost ceiling).
    pub costs: Arc<crate::daemon::cost::CostLedger>,
    /// Where each poll's status snapshot goes (`GET /v1/containers`).
    pub view: Option<view::SharedView>,
    /// Where every engine output goes (the API's `/v1/decisions` and metrics).
    pub outputs: Option<tokio::sync::broadcast::Sender<crate::core::Output>>,
    /// Operator commands from the API (pause, resume, scale of a container group).
    pub controls: crate::daemon::approvals::Inbox<Control>,
    /// `run --record`: every input of the LXC machine.
    pub recorder: Option<crate::daemon::recorder::Recorder>,
}

/// An operator command for the Proxmox loop; the reply gets the outputs it caused.
#[derive(Debug)]
pub struct Control {
    pub input: crate::core::Input,
    pub reply: tokio::sync::oneshot::Sender<Vec<crate::core::Output>>,
}

/// A controller for `config` (`[proxmox]` and `[[lxc]]`).
pub fn controller(config: &Config, dry_run: bool) -> anyhow::Result<Controller> {
    observed_controller(config, dry_run, None)
}

fn observed_controller(
    config: &Config,
    dry_run: bool,
    observer: Option<Arc<dyn client::Observer>>,
) -> anyhow::Result<Controller> {
    let pve = config
        .proxmox
        .as_ref()
        .context("no [proxmox] section in the configuration")?;
    let mut client = Client::from_config(pve)?;
    if let Some(o) = observer {
        client = client.with_observer(o);
    }
    let client = Arc::new(client);
    let state = state::CloneState::load(&pve.state_file)?;
    let settings = ControllerSettings {
        tag: pve.tag.clone(),
        tasks: actuator::Tasks {
            timeout: pve.task_timeout,
            every: Duration::from_secs(1),
        },
        dry_run,
        poll_interval: pve.poll_interval,
        state_file: Some(pve.state_file.clone()),
        decision_log: config.daemon.decision_log.clone(),
    };
    let c = Controller::new(client, config.lxc.clone(), state, settings, Timestamp::ZERO)
        .context("opening the decision log")?
        .with_cost_ceiling(config.daemon.max_cost_micros);
    Ok(c)
}

/// Drive the `[[lxc]]` containers until `shutdown` (or one cycle with `once`).
/// Actions run concurrently with later polls, so a slow clone or a dead node never
/// delays the other containers. Returns `Ok` without a `[proxmox]` section.
pub async fn run(
    config: &Config,
    opts: RunOptions,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    if config.proxmox.is_none() || config.lxc.is_empty() {
        return Ok(());
    }
    let observer: Arc<dyn client::Observer> = Arc::new(BreakerNotices {
        inner: opts.observer.clone(),
        notices: opts.notices.clone(),
        outages: Mutex::default(),
    });
    let mut c = observed_controller(config, opts.dry_run, Some(observer))?
        .with_approvals(opts.approvals.clone(), opts.notices.clone());
    if let Some(v) = &opts.view {
        c = c.with_view(v.clone());
    }
    if let Some(tx) = &opts.outputs {
        c = c.with_outputs(tx.clone());
    }
    // The cluster-wide poll has no node (so no breaker): its outages are counted here.
    let target = config
        .proxmox
        .as_ref()
        .map_or_else(String::new, |p| format!("proxmox:{}", p.url));
    let outages = Outages::default();
    let start = Instant::now();
    if let Some(r) = &opts.recorder {
        c = c.with_recorder(r.clone(), config.lxc_source.clone(), Timestamp::ZERO);
    }
    // Schedules see wall-clock time: t = 0 is now.
    c.set_wall_origin(crate::daemon::unix_ms_now());
    c.adopt_recorded(Timestamp::ZERO);
    if let Some(r) = &opts.history {
        // The controller's t = 0 is `start`.
        c = c.with_history(crate::history::Feed::new(
            r.clone(),
            std::time::SystemTime::now(),
        ));
    }
    let now = || Timestamp(u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX));
    if opts.once {
        c.set_external_cost(now(), opts.costs.albatross());
        let r = c.cycle(now()).await?;
        // Nobody can approve within one cycle: what waits is dropped (and logged).
        c.abandon(now());
        tracing::info!(
            containers = r.containers_seen,
            actions = r.actions.len(),
            "proxmox: one cycle done"
        );
        for (what, r) in &r.actions {
            match r {
                Ok(()) => tracing::info!(action = %what, "done"),
                Err(e) => tracing::warn!(action = %what, error = %e, "failed"),
            }
        }
        return Ok(());
    }
    let poll = config
        .proxmox
        .as_ref()
        .map_or(Duration::from_secs(10), |p| p.poll_interval);
    // Polls come from their own task, so a slow `/cluster/resources` never holds
    // up results, approvals or operator commands (one poll waits at most).
    let (tx, polls) = tokio::sync::mpsc::channel(1);
    let poller = tokio::spawn(poller(c.client().clone(), poll, tx));
    let l = Loop {
        inbox: opts.inbox.take(),
        controls: opts.controls.take(),
        c,
        clock: Clock::new(start),
        polls,
        opts,
        outages,
        target,
    };
    let l = driver::drive(l, shutdown).await;
    poller.abort();
    // A reload starts the next loop on the same channels from the API.
    l.opts.inbox.restore(l.inbox);
    l.opts.controls.restore(l.controls);
    Ok(())
}

/// `GET /cluster/resources` every `every` (delayed, not bunched, after a slow one),
/// each result with the instant it arrived.
async fn poller(
    client: Arc<Client>,
    every: Duration,
    tx: tokio::sync::mpsc::Sender<(Instant, Result<Vec<types::Resource>, ProxmoxError>)>,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let r = client.resources().await;
        if tx.send((Instant::now(), r)).await.is_err() {
            return;
        }
    }
}

/// The Proxmox loop as the driver runs it.
struct Loop {
    c: Controller,
    clock: Clock,
    polls: tokio::sync::mpsc::Receiver<(Instant, Result<Vec<types::Resource>, ProxmoxError>)>,
    inbox: Option<tokio::sync::mpsc::Receiver<approvals::Command>>,
    controls: Option<tokio::sync::mpsc::Receiver<Control>>,
    opts: RunOptions,
    outages: Outages,
    /// The cluster-wide poll's target in notices.
    target: String,
}

enum Event {
    Poll(Instant, Result<Vec<types::Resource>, ProxmoxError>),
    Control(Control),
    Approval(approvals::Command),
}

type Done = controller::act::Done;

impl driver::Reconciler for Loop {
    type Event = Event;
    type Done = Done;

    async fn recv(&mut self) -> Option<Event> {
        tokio::select! {
            p = self.polls.recv() => p.map(|(at, r)| Event::Poll(at, r)),
            Some(c) = approvals::recv(&mut self.controls) => Some(Event::Control(c)),
            Some(cmd) = approvals::recv(&mut self.inbox) => Some(Event::Approval(cmd)),
        }
    }

    async fn event(&mut self, ev: Event, jobs: &mut JoinSet<Done>) {
        match ev {
            Event::Poll(at, Ok(res)) => {
                if let Some(n) = self.outages.reachable(&self.target) {
                    self.opts.notices.publish(n);
                }
                let now = self.clock.stamp(at);
                self.c.set_external_cost(now, self.opts.costs.albatross());
                let mut report = Report::default();
                for job in self.c.decide(now, &res, &mut report).await {
                    jobs.spawn(self.c.execute(job));
                }
            }
            Event::Poll(_, Err(e)) => {
                tracing::warn!(error = %e, "proxmox: poll failed; next cycle retries");
                if let Some(n) = self.outages.failed(&self.target, &e.to_string()) {
                    self.opts.notices.publish(n);
                }
            }
            Event::Control(ctl) => {
                let now = self.clock.now();
                let (out, run) = self.c.control(now, ctl.input);
                let _ = ctl.reply.send(out);
                for job in run {
                    jobs.spawn(self.c.execute(job));
                }
            }
            Event::Approval(cmd) => {
                let now = self.clock.now();
                if let Some(job) = self.c.answer(now, cmd).await {
                    jobs.spawn(self.c.execute(job));
                }
            }
        }
        self.opts.costs.set_proxmox(self.c.hourly_cost());
    }

    fn deadline(&self) -> Option<Instant> {
        self.c.next_deadline().map(|t| self.clock.instant(t))
    }

    fn tick(&mut self, jobs: &mut JoinSet<Done>) {
        let now = self.clock.now();
        for job in self.c.tick(now) {
            jobs.spawn(self.c.execute(job));
        }
    }

    fn settle(&mut self, (job, r): Done, _jobs: &mut JoinSet<Done>) {
        let now = self.clock.now();
        self.c.settle(now, job, r);
        self.opts.costs.set_proxmox(self.c.hourly_cost());
    }

    fn stop(&mut self) {
        // Held decisions die with the loop: nothing executes them any more.
        let now = self.clock.now();
        self.c.abandon(now);
    }

    fn grace(&self) -> Duration {
        // Actions in flight finish so the ownership record stays right.
        Duration::from_secs(30)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::Notice;

    #[test]
    fn an_open_breaker_is_one_unreachable_notice_per_outage_and_one_reachable_after() {
        let notices = Notices::default();
        let mut rx = notices.subscribe();
        let o = BreakerNotices {
            inner: None,
            notices: notices.clone(),
            outages: Mutex::default(),
        };
        use client::Observer;
        for state in [0, 2, 2, 1, 2, 0, 2] {
            o.breaker("pve1", state);
        }
        let mut got = Vec::new();
        while let Ok(n) = rx.try_recv() {
            got.push(n);
        }
        // Down (2, 2, half-open, 2), back (0), down again.
        let kinds: Vec<&str> = got.iter().map(Notice::kind).collect();
        assert_eq!(
            kinds,
            ["unreachable", "reachable", "unreachable"],
            "{got:?}"
        );
        assert!(matches!(&got[0], Notice::Unreachable { target, .. } if target == "proxmox:pve1"));
        assert!(matches!(&got[1], Notice::Reachable { target, .. } if target == "proxmox:pve1"));
    }
}
