//! The whole daemon behind one function (the top of the module graph: it wires
//! `daemon`, `proxmox`, `http`, `history` and `notify`, none of which import it): [`Service::start`] takes a configuration
//! and starts what it asks for — the albatross engine task and its endpoints, the
//! Proxmox loop, the history writer, the operations API and the notification
//! sinks — wired to one notice bus, one approval book, one cost ledger and one
//! flight recording. `run`, `demo` and the tests start the daemon through it;
//! [`Service::reload`] applies a new configuration (SIGHUP) and [`Service::stop`]
//! drains it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::core::Output;
use crate::daemon::albatross::{Daemon, RunOptions};
use crate::daemon::approvals::{Inbox, SharedBook};
use crate::daemon::cost::CostLedger;
use crate::daemon::recorder::Recorder;
use crate::notify::{self, Notices};
use crate::{history, http, proxmox};

/// How shutdown waits for queued notifications.
const NOTIFY_GRACE: Duration = Duration::from_secs(10);

/// How to start.
#[derive(Debug, Clone)]
pub struct ServiceOptions {
    /// Decide and log, never actuate.
    pub dry_run: bool,
    /// `--record FILE`: every input of both machines, for `replay --inputs`.
    pub record: Option<PathBuf>,
    /// How long the albatross engine task waits for actions in flight at shutdown.
    pub shutdown_grace: Duration,
}

impl Default for ServiceOptions {
    fn default() -> Self {
        Self {
            dry_run: false,
            record: None,
            shutdown_grace: Duration::from_secs(120),
        }
    }
}

/// A running daemon.
pub struct Service {
    /// Shared with the API (`/v1/config` renders it on request) and the Proxmox
    /// task: one copy of a 10 000-group configuration, not three.
    config: Arc<Config>,
    opts: ServiceOptions,
    notices: Notices,
    albatross: Option<Daemon>,
    proxmox: JoinHandle<anyhow::Result<()>>,
    proxmox_stop: CancellationToken,
    proxmox_opts: proxmox::RunOptions,
    api: Option<Arc<http::Api>>,
    history: Option<history::Writer>,
    follow: Option<JoinHandle<()>>,
    sent: Option<notify::Dispatcher>,
    counters: notify::Counters,
    shutdown: CancellationToken,
    _proxmox_lock: Option<crate::state::StateLock>,
}

impl Service {
    /// Start everything `config` configures. Fails before anything runs on what
    /// can be checked first: nothing to run, a state file locked by another
    /// daemon, a corrupt history, an unreadable recording or sink secret.
    pub async fn start(config: Config, opts: ServiceOptions) -> anyhow::Result<Self> {
        let config = Arc::new(config);
        let has_pve = config.proxmox.is_some() && !config.lxc.is_empty();
        if config.endpoints.is_empty() && !has_pve {
            bail!(
                "nothing to run: configure an [albatross] endpoint with [[group]]s, or [proxmox] with [[lxc]] containers"
            );
        }
        let mut approving = config
            .groups
            .iter()
            .map(|g| &*g.policy)
            .chain(config.lxc.iter().map(|l| &l.policy));
        if config.http.listen.is_none()
            && approving.any(|p| p.require_approval != Default::default())
        {
            tracing::warn!(
                "require_approval is set but [http] listen is not: nothing can approve, every such decision will expire"
            );
        }
        // One bus for every notice of this process (notification sinks listen on it).
        let notices = Notices::default();
        // One book of decisions waiting for approval, shared by both loops and the API.
        let approvals = SharedBook::default();
        let (pve_approvals, inbox) = Inbox::channel();
        let (pve_control_tx, pve_controls) = Inbox::channel();
        // Sinks open (secret files read) before anything runs; they listen from the start.
        let sinks = notify::Sink::open_all(&config.notify).map_err(anyhow::Error::msg)?;
        let heard = notices.subscribe();
        // One daemon per state directory: both state files are locked before anything
        // starts (history included), so a second daemon exits at once naming the pid.
        let lock = |p: &std::path::Path| crate::state::StateLock::acquire(p);
        let proxmox_lock = match config.proxmox.as_ref().filter(|_| has_pve) {
            Some(pve) => Some(lock(&pve.state_file)?),
            None => None,
        };
        let albatross_lock = match config.endpoints.is_empty() {
            false => Some(Arc::new(lock(&config.daemon.state_file)?)),
            true => None,
        };
        // A locked or corrupt history file stops the start here, before anything runs.
        let history = match &config.history.path {
            Some(_) => Some(history::Writer::start(&config.history)?),
            None => None,
        };
        // One recording of both machines' inputs, a line at a time.
        let recorder = match &opts.record {
            Some(path) => Some(
                Recorder::open(path, config.daemon.record_max_bytes)
                    .with_context(|| format!("recording {}", path.display()))?,
            ),
            None => None,
        };
        // The global cost ceiling covers the albatross groups and the containers.
        let costs = Arc::new(CostLedger::default());
        let mut proxmox_opts = proxmox::RunOptions {
            dry_run: opts.dry_run,
            once: false,
            observer: None,
            notices: notices.clone(),
            approvals: approvals.clone(),
            inbox,
            history: history.as_ref().map(history::Writer::recorder),
            costs: costs.clone(),
            // Only the API reads the snapshot: without it, none is built.
            view: (has_pve && config.http.listen.is_some())
                .then(proxmox::view::SharedView::default),
            outputs: None,
            controls: pve_controls,
            recorder: recorder.clone(),
        };
        let shutdown = CancellationToken::new();
        let albatross = if config.endpoints.is_empty() {
            None
        } else {
            let o = RunOptions {
                dry_run: opts.dry_run,
                shutdown_grace: opts.shutdown_grace,
                notices: notices.clone(),
                approvals: approvals.clone(),
                costs: costs.clone(),
                state_lock: albatross_lock,
                recorder,
                ..RunOptions::default()
            };
            Some(Daemon::start(Config::clone(&config), o).await?)
        };
        let follow = match (&history, &albatross) {
            (Some(h), Some(d)) => {
                let feed = history::Feed::new(h.recorder(), d.origin());
                Some(tokio::spawn(feed.follow(d.subscribe())))
            }
            _ => None,
        };
        // Seasonal forecasts (`predictive` true or "shadow") are refitted from the
        // history off the engine's path; the task ends with the daemon.
        if let (Some(path), Some(d)) = (&config.history.path, &albatross) {
            let stop = shutdown.child_token();
            tokio::spawn(crate::daemon::forecast::refit(
                path.clone(),
                d.handle(),
                stop,
            ));
        }
        let api = match config.http.listen {
            None => None,
            Some(listen) => {
                let handle = albatross.as_ref().map(Daemon::handle);
                let health = albatross
                    .as_ref()
                    .map(|d| d.health.clone())
                    .unwrap_or_default();
                let clock = Arc::new(http::limit::MonotonicClock::default());
                let api = http::Api::new_shared(config.clone(), handle, health, clock)
                    .map_err(anyhow::Error::msg)?;
                api.set_approvals(approvals.clone(), has_pve.then(|| pve_approvals.clone()));
                if let Some(v) = &proxmox_opts.view {
                    api.set_containers(v.clone());
                    api.set_container_controls(pve_control_tx.clone());
                }
                if let Some(h) = &history {
                    api.metrics().set_history(h.recorder().counters().clone());
                }
                if let Some(d) = &albatross {
                    tokio::spawn(api.clone().follow(d.subscribe()));
                }
                http::serve(api.clone(), listen, shutdown.clone()).await?;
                Some(api)
            }
        };
        let counters = api
            .as_ref()
            .map(|a| a.metrics().notify().clone())
            .unwrap_or_default();
        let sent = start_notify(sinks, heard, counters.clone());
        if let Some(api) = &api {
            // Proxmox request latency and breaker states go to the API's metrics.
            let metrics: Arc<dyn proxmox::client::Observer> = api.metrics().clone();
            proxmox_opts.observer = Some(metrics);
            // LXC decisions and evaluations reach /v1/decisions and the metrics too.
            if has_pve {
                let (tx, rx) = broadcast::channel(1024);
                proxmox_opts.outputs = Some(tx);
                tokio::spawn(api.clone().follow(rx));
            }
        }
        // The Proxmox loop stops on its own token (a reload restarts it) or on shutdown.
        let proxmox_stop = shutdown.child_token();
        let proxmox = spawn_proxmox(&config, &proxmox_opts, &proxmox_stop);
        Ok(Self {
            config,
            opts,
            notices,
            albatross,
            proxmox,
            proxmox_stop,
            proxmox_opts,
            api,
            history,
            follow,
            sent,
            counters,
            shutdown,
            _proxmox_lock: proxmox_lock,
        })
    }

    /// Every albatross engine output (live views, the demo, tests); `None`
    /// without albatross groups.
    pub fn subscribe(&self) -> Option<broadcast::Receiver<Output>> {
        self.albatross.as_ref().map(Daemon::subscribe)
    }

    /// The operations API, if `[http] listen` is set.
    pub fn api(&self) -> Option<&Arc<http::Api>> {
        self.api.as_ref()
    }

    /// The albatross side, if configured.
    pub fn albatross(&self) -> Option<&Daemon> {
        self.albatross.as_ref()
    }

    /// Apply `c` (SIGHUP). Each part that rejects it keeps running as before and
    /// says why in the log; the others take it.
    pub async fn reload(&mut self, c: Config) {
        let c = Arc::new(c);
        if let Some(d) = &mut self.albatross
            && let Err(e) = d.reload(&c).await
        {
            tracing::error!(error = %format!("{e:#}"), "[albatross] reload rejected; keeping the running endpoints and groups");
        }
        if let Some(api) = &self.api
            && let Err(e) = api.reload_shared(c.clone())
        {
            tracing::error!(error = %e, "[http] reload rejected; keeping the running API keys and settings");
        }
        if c.notify != self.config.notify {
            // New sinks listen before the old ones drain: a notice in between may go
            // out twice, none is lost.
            match notify::Sink::open_all(&c.notify) {
                Ok(sinks) => {
                    let old = self.sent.take();
                    self.sent =
                        start_notify(sinks, self.notices.subscribe(), self.counters.clone());
                    if let Some(d) = old {
                        d.finish(NOTIFY_GRACE).await;
                    }
                    tracing::info!(sinks = c.notify.len(), "[[notify]] reloaded");
                }
                Err(e) => {
                    tracing::error!(error = %e, "[[notify]] reload rejected; keeping the running sinks")
                }
            }
        }
        if c.history != self.config.history {
            tracing::warn!("[history] changed: restart the daemon to apply that part");
        }
        if c.proxmox != self.config.proxmox || c.lxc != self.config.lxc {
            match self.reload_proxmox(&c).await {
                Ok(()) => tracing::info!(
                    containers = c.lxc.len(),
                    "[proxmox] / [[lxc]] reloaded: the Proxmox loop restarted (ownership kept; counters and cooldowns start over)"
                ),
                Err(e) => {
                    tracing::error!(error = %format!("{e:#}"), "[proxmox] / [[lxc]] reload rejected; keeping the running loop")
                }
            }
        }
        self.config = c;
    }

    /// Restart the Proxmox loop on `c`: the new controller is built first (a bad
    /// token file or URL keeps the running loop), then the old loop drains its
    /// actions in flight and the new one takes over its channels to the API.
    async fn reload_proxmox(&mut self, c: &Arc<Config>) -> anyhow::Result<()> {
        if c.proxmox.is_some() && !c.lxc.is_empty() {
            proxmox::controller(c, self.opts.dry_run)?;
        }
        self.proxmox_stop.cancel();
        match (&mut self.proxmox).await {
            Ok(Err(e)) => {
                tracing::warn!(error = %format!("{e:#}"), "the old Proxmox loop ended with an error")
            }
            Err(e) => tracing::warn!(error = %e, "the old Proxmox loop failed"),
            Ok(Ok(())) => {}
        }
        self.proxmox_stop = self.shutdown.child_token();
        self.proxmox = spawn_proxmox(c, &self.proxmox_opts, &self.proxmox_stop);
        Ok(())
    }

    /// Stop: both loops drain their actions in flight, then the notices still
    /// queued go out and the history is closed.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        if let Some(d) = self.albatross.take() {
            d.stop().await;
        }
        let pve = (&mut self.proxmox).await;
        // After the engines: their last notices still go out.
        if let Some(d) = self.sent.take() {
            d.finish(NOTIFY_GRACE).await;
        }
        // Every output is in the queue once the follower has seen the engine end.
        if let Some(f) = self.follow.take() {
            let _ = f.await;
        }
        if let Some(h) = self.history.take() {
            let _ = tokio::task::spawn_blocking(move || h.close()).await;
        }
        match pve {
            Ok(r) => r,
            Err(e) => bail!("the Proxmox task failed: {e}"),
        }
    }
}

fn spawn_proxmox(
    config: &Arc<Config>,
    opts: &proxmox::RunOptions,
    stop: &CancellationToken,
) -> JoinHandle<anyhow::Result<()>> {
    let (config, opts, stop) = (config.clone(), opts.clone(), stop.clone());
    tokio::spawn(async move { proxmox::run(&config, opts, stop).await })
}

/// Deliver `heard` notices to `sinks`, if there are any.
pub fn start_notify(
    sinks: Vec<notify::Sink>,
    heard: broadcast::Receiver<notify::Notice>,
    counters: notify::Counters,
) -> Option<notify::Dispatcher> {
    if sinks.is_empty() {
        return None;
    }
    for s in &sinks {
        let events = match s.config.events.as_slice() {
            [] => "all".to_string(),
            e => e.join(","),
        };
        tracing::info!(sink = s.name(), kind = %s.kind(), %events, "notification sink");
    }
    Some(notify::Dispatcher::start(sinks, heard, counters))
}

/// How long shutdown waits for queued notifications (`run --once` too).
pub fn notify_grace() -> Duration {
    NOTIFY_GRACE
}
