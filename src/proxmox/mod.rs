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

use crate::config::Config;
use crate::core::Timestamp;
use crate::daemon::approvals;
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
    let mut outages = Outages::default();
    let start = Instant::now();
    // Schedules see wall-clock time: t = 0 is now.
    c.set_wall_origin(crate::daemon::unix_ms_now());
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
    let mut tick = tokio::time::interval(poll);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut running = JoinSet::new();
    let mut inbox = opts.inbox.take();
    let mut controls = opts.controls.take();
    loop {
        let expiry = c.next_expiry();
        tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            Some(Ok((job, r))) = running.join_next() => {
                c.settle(now(), job, r);
                opts.costs.set_proxmox(c.hourly_cost());
            }
            Some(ctl) = approvals::recv(&mut controls) => {
                let (out, jobs) = c.control(now(), ctl.input);
                let _ = ctl.reply.send(out);
                for job in jobs {
                    running.spawn(c.execute(job));
                }
                opts.costs.set_proxmox(c.hourly_cost());
            }
            Some(cmd) = approvals::recv(&mut inbox) => {
                if let Some(job) = c.answer(now(), cmd).await {
                    running.spawn(c.execute(job));
                }
            }
            () = sleep_until(expiry) => c.expire(now()),
            _ = tick.tick() => match c.client().resources().await {
                Ok(res) => {
                    if let Some(n) = outages.reachable(&target) {
                        opts.notices.publish(n);
                    }
                    let mut report = Report::default();
                    c.set_external_cost(now(), opts.costs.albatross());
                    for job in c.decide(now(), &res, &mut report).await {
                        running.spawn(c.execute(job));
                    }
                    opts.costs.set_proxmox(c.hourly_cost());
                }
                Err(e) => {
                    tracing::warn!(error = %e, "proxmox: poll failed; next cycle retries");
                    if let Some(n) = outages.failed(&target, &e.to_string()) {
                        opts.notices.publish(n);
                    }
                }
            },
        }
    }
    // Held decisions die with the loop: nothing executes them any more.
    c.abandon(now());
    // Let actions in flight finish so the ownership record stays right.
    let grace = tokio::time::sleep(Duration::from_secs(30));
    tokio::pin!(grace);
    while !running.is_empty() {
        tokio::select! {
            Some(Ok((job, r))) = running.join_next() => c.settle(now(), job, r),
            () = &mut grace => break,
        }
    }
    // A reload starts the next loop on the same channels from the API.
    opts.inbox.restore(inbox);
    opts.controls.restore(controls);
    Ok(())
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
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
