//! `run --config FILE [--dry-run] [--once]`: the daemon, until SIGTERM or SIGINT;
//! SIGHUP reloads the configuration (a bad file is reported and the old one kept).
//! albatross groups and Proxmox containers run side by side from one config.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::daemon::albatross::{Daemon, RunOptions};
use crate::history;
use crate::http;
use crate::notify;
use crate::proxmox;

/// Arguments of `run`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Configuration file.
    #[arg(long, short, env = "ALBATROSS_AUTOSCALE_CONFIG")]
    pub config: PathBuf,
    /// Decide and log, never actuate.
    #[arg(long)]
    pub dry_run: bool,
    /// One poll-decide-act cycle of the Proxmox containers, then exit (for cron and
    /// tests). albatross statistics are a stream, so albatross groups are not run.
    #[arg(long)]
    pub once: bool,
    /// Flight recorder: append every input the albatross engine receives (samples,
    /// action results, operator commands, reloads) to FILE as JSON Lines, for
    /// `replay --inputs FILE`. Rotated at `[daemon] record_max_bytes`.
    #[arg(long, value_name = "FILE")]
    pub record: Option<PathBuf>,
}

/// Set up logging for long-running commands: `RUST_LOG` filters (default `info`).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();
}

/// Run `run`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    init_tracing();
    let config = Config::load(&args.config)?;
    let has_pve = config.proxmox.is_some() && !config.lxc.is_empty();
    if config.endpoints.is_empty() && !has_pve {
        bail!(
            "{}: nothing to run: configure an [albatross] endpoint with [[group]]s, or [proxmox] with [[lxc]] containers",
            args.config.display()
        );
    }
    let mut approving = config
        .groups
        .iter()
        .map(|g| &g.policy)
        .chain(config.lxc.iter().map(|l| &l.policy));
    if config.http.listen.is_none() && approving.any(|p| p.require_approval != Default::default()) {
        tracing::warn!(
            "require_approval is set but [http] listen is not: nothing can approve, every such decision will expire"
        );
    }
    // One bus for every notice of this process (notification sinks listen on it).
    let notices = crate::notify::Notices::default();
    // One book of decisions waiting for approval, shared by both loops and the API.
    let approvals = crate::daemon::approvals::SharedBook::default();
    let (pve_approvals, inbox) = crate::daemon::approvals::Inbox::channel();
    let (pve_control_tx, pve_controls) = crate::daemon::approvals::Inbox::channel();
    // Sinks open (secret files read) before anything runs; they listen from the start.
    let sinks = notify::Sink::open_all(&config.notify).map_err(anyhow::Error::msg)?;
    let heard = notices.subscribe();
    // One daemon per state directory: both state files are locked before anything
    // starts (history included), so a second daemon exits at once naming the pid.
    // Held until `run` returns.
    let lock = |p: &std::path::Path| crate::state::StateLock::acquire(p);
    let _pve_lock = match config.proxmox.as_ref().filter(|_| has_pve) {
        Some(pve) => Some(lock(&pve.state_file)?),
        None => None,
    };
    let albatross_lock = match (args.once, config.endpoints.is_empty()) {
        (false, false) => Some(std::sync::Arc::new(lock(&config.daemon.state_file)?)),
        _ => None,
    };
    // A locked or corrupt history file stops the start here, before anything runs.
    let history = match &config.history.path {
        Some(_) => Some(history::Writer::start(&config.history)?),
        None => None,
    };
    // `--record`: one recording of both machines' inputs, a line at a time.
    let recorder = match &args.record {
        Some(path) => Some(
            crate::daemon::recorder::Recorder::open(path, config.daemon.record_max_bytes)
                .with_context(|| format!("recording {}", path.display()))?,
        ),
        None => None,
    };
    // The global cost ceiling covers the albatross groups and the containers.
    let costs = std::sync::Arc::new(crate::daemon::cost::CostLedger::default());
    let mut pve_opts = proxmox::RunOptions {
        dry_run: args.dry_run,
        once: args.once,
        observer: None,
        notices: notices.clone(),
        approvals: approvals.clone(),
        inbox,
        history: history.as_ref().map(history::Writer::recorder),
        costs: costs.clone(),
        // Only the API reads the snapshot: without it, none is built.
        view: (has_pve && !args.once && config.http.listen.is_some())
            .then(proxmox::view::SharedView::default),
        outputs: None,
        controls: pve_controls,
        recorder: recorder.clone(),
    };
    let rt = tokio::runtime::Runtime::new()?;
    if args.once {
        if !config.endpoints.is_empty() {
            tracing::warn!("--once: albatross groups are skipped (their statistics are a stream)");
        }
        let r = rt.block_on(async {
            let sent = start_notify(sinks, heard, notify::Counters::default());
            let r = proxmox::run(&config, pve_opts, CancellationToken::new()).await;
            if let Some(d) = sent {
                d.finish(NOTIFY_GRACE).await;
            }
            r
        });
        if let Some(h) = history {
            h.close();
        }
        r?;
        return Ok(ExitCode::SUCCESS);
    }
    rt.block_on(async move {
        // Handlers first: a SIGTERM during start-up (or right after "running") must
        // drain, not kill.
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let mut hup = signal(SignalKind::hangup())?;
        let shutdown = CancellationToken::new();
        let mut daemon = if config.endpoints.is_empty() {
            None
        } else {
            let opts = RunOptions {
                dry_run: args.dry_run,
                notices: notices.clone(),
                approvals: approvals.clone(),
                costs: costs.clone(),
                state_lock: albatross_lock,
                recorder: recorder.clone(),
                ..RunOptions::default()
            };
            Some(Daemon::start(config.clone(), opts).await?)
        };
        let follow = match (&history, &daemon) {
            (Some(h), Some(d)) => {
                let feed = history::Feed::new(h.recorder(), d.origin());
                Some(tokio::spawn(feed.follow(d.subscribe())))
            }
            _ => None,
        };
        let api = match config.http.listen {
            None => None,
            Some(listen) => {
                let handle = daemon.as_ref().map(Daemon::handle);
                let health = daemon.as_ref().map(|d| d.health.clone()).unwrap_or_default();
                let clock = std::sync::Arc::new(http::limit::MonotonicClock::default());
                let api = http::Api::new(&config, handle, health, clock).map_err(anyhow::Error::msg)?;
                api.set_approvals(approvals.clone(), has_pve.then(|| pve_approvals.clone()));
                if let Some(v) = &pve_opts.view {
                    api.set_containers(v.clone());
                    api.set_container_controls(pve_control_tx.clone());
                }
                if let Some(h) = &history {
                    api.metrics().set_history(h.recorder().counters().clone());
                }
                if let Some(d) = &daemon {
                    tokio::spawn(api.clone().follow(d.subscribe()));
                }
                http::serve(api.clone(), listen, shutdown.clone()).await?;
                Some(api)
            }
        };
        let counters = api.as_ref().map(|a| a.metrics().notify().clone()).unwrap_or_default();
        let sent = start_notify(sinks, heard, counters.clone());
        // Proxmox request latency and breaker states go to the API's metrics.
        if let Some(api) = &api {
            let metrics: std::sync::Arc<dyn proxmox::client::Observer> = api.metrics().clone();
            pve_opts.observer = Some(metrics);
            // LXC decisions and evaluations reach /v1/decisions and the metrics too.
            if has_pve {
                let (tx, rx) = tokio::sync::broadcast::channel(1024);
                pve_opts.outputs = Some(tx);
                tokio::spawn(api.clone().follow(rx));
            }
        }
        // The Proxmox loop stops on its own token (a reload restarts it) or on shutdown.
        let pve_stop = shutdown.child_token();
        let mut pve = tokio::spawn({
            let (config, stop, opts) = (config.clone(), pve_stop.clone(), pve_opts.clone());
            async move { proxmox::run(&config, opts, stop).await }
        });
        let mut pve_stop = pve_stop;
        let mut sent = sent;
        let mut current = config.clone();
        // systemd watchdog (WatchdogSec=): ping at half the interval, only when asked.
        let mut watchdog = watchdog_interval().map(tokio::time::interval);
        tracing::info!(config = %args.config.display(), dry_run = args.dry_run, "running");
        notify(&[sd_notify::NotifyState::Ready]);
        loop {
            tokio::select! {
                _ = term.recv() => break,
                _ = int.recv() => break,
                _ = tick(&mut watchdog) => notify(&[sd_notify::NotifyState::Watchdog]),
                _ = hup.recv() => match Config::load(&args.config) {
                    Ok(c) => {
                        tracing::info!(config = %args.config.display(), "reloading");
                        notify(&[sd_notify::NotifyState::Reloading]);
                        if let Some(d) = &mut daemon
                            && let Err(e) = d.reload(&c).await
                        {
                            tracing::error!(error = %format!("{e:#}"), "[albatross] reload rejected; keeping the running endpoints and groups");
                        }
                        if let Some(api) = &api
                            && let Err(e) = api.reload(&c)
                        {
                            tracing::error!(error = %e, "[http] reload rejected; keeping the running API keys and settings");
                        }
                        if c.notify != current.notify {
                            // New sinks listen before the old ones drain: a notice in
                            // between may go out twice, none is lost.
                            match notify::Sink::open_all(&c.notify) {
                                Ok(sinks) => {
                                    let old = sent.take();
                                    sent = start_notify(sinks, notices.subscribe(), counters.clone());
                                    if let Some(d) = old {
                                        d.finish(NOTIFY_GRACE).await;
                                    }
                                    tracing::info!(sinks = c.notify.len(), "[[notify]] reloaded");
                                }
                                Err(e) => tracing::error!(error = %e, "[[notify]] reload rejected; keeping the running sinks"),
                            }
                        }
                        if c.history != current.history {
                            tracing::warn!("[history] changed: restart the daemon to apply that part");
                        }
                        if c.proxmox != current.proxmox || c.lxc != current.lxc {
                            match reload_proxmox(&c, &args, &mut pve, &mut pve_stop, &pve_opts, &shutdown).await {
                                Ok(()) => tracing::info!(containers = c.lxc.len(), "[proxmox] / [[lxc]] reloaded: the Proxmox loop restarted (ownership kept; counters and cooldowns start over)"),
                                Err(e) => tracing::error!(error = %format!("{e:#}"), "[proxmox] / [[lxc]] reload rejected; keeping the running loop"),
                            }
                        }
                        current = c;
                        notify(&[sd_notify::NotifyState::Ready]);
                    }
                    Err(e) => tracing::error!(error = %e, "reload rejected; keeping the running configuration"),
                },
            }
        }
        tracing::info!("shutting down: waiting for actions in flight");
        notify(&[sd_notify::NotifyState::Stopping]);
        shutdown.cancel();
        if let Some(d) = daemon {
            d.stop().await;
        }
        let pve = pve.await;
        // After the engines: their last notices still go out.
        if let Some(d) = sent {
            d.finish(NOTIFY_GRACE).await;
        }
        // Every output is in the queue once the follower has seen the engine end.
        if let Some(f) = follow {
            let _ = f.await;
        }
        if let Some(h) = history {
            let _ = tokio::task::spawn_blocking(move || h.close()).await;
        }
        match pve {
            Ok(r) => r?,
            Err(e) => bail!("the Proxmox task failed: {e}"),
        }
        anyhow::Ok(ExitCode::SUCCESS)
    })
}

/// Restart the Proxmox loop on `c`: the new controller is built first (a bad
/// token file or URL keeps the running loop), then the old loop drains its actions
/// in flight and the new one takes over its channels to the API.
async fn reload_proxmox(
    c: &Config,
    args: &Args,
    pve: &mut tokio::task::JoinHandle<anyhow::Result<()>>,
    stop: &mut CancellationToken,
    opts: &proxmox::RunOptions,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    if c.proxmox.is_some() && !c.lxc.is_empty() {
        proxmox::controller(c, args.dry_run)?;
    }
    stop.cancel();
    match (&mut *pve).await {
        Ok(Err(e)) => {
            tracing::warn!(error = %format!("{e:#}"), "the old Proxmox loop ended with an error")
        }
        Err(e) => tracing::warn!(error = %e, "the old Proxmox loop failed"),
        Ok(Ok(())) => {}
    }
    *stop = shutdown.child_token();
    let (config, token, opts) = (c.clone(), stop.clone(), opts.clone());
    *pve = tokio::spawn(async move { proxmox::run(&config, opts, token).await });
    Ok(())
}

/// How long shutdown waits for queued notifications.
const NOTIFY_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// Deliver `heard` notices to `sinks`, if there are any.
fn start_notify(
    sinks: Vec<notify::Sink>,
    heard: tokio::sync::broadcast::Receiver<crate::notify::Notice>,
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

/// Half of `WATCHDOG_USEC` when systemd set it for this process.
fn watchdog_interval() -> Option<std::time::Duration> {
    sd_notify::watchdog_enabled()
        .filter(|d| !d.is_zero())
        .map(|d| d / 2)
}

async fn tick(w: &mut Option<tokio::time::Interval>) {
    match w {
        Some(i) => {
            i.tick().await;
        }
        None => std::future::pending().await,
    }
}

/// Tell systemd (Type=notify); a no-op outside systemd.
fn notify(states: &[sd_notify::NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::debug!(error = %e, "sd_notify");
    }
}
