//! `run --config FILE [--dry-run] [--once]`: the daemon, until SIGTERM or SIGINT;
//! SIGHUP reloads the configuration (a bad file is reported and the old one kept).
//! albatross groups and Proxmox containers run side by side from one config.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use tokio::signal::unix::{SignalKind, signal};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::history;
use crate::notify;
use crate::proxmox;
use crate::service::{Service, ServiceOptions, notify_grace, start_notify};

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
    /// Flight recorder: append every input both machines receive (samples, polls,
    /// action results, operator commands, approvals, reloads) to FILE as JSON
    /// Lines, for `replay --inputs FILE`. Rotated at `[daemon] record_max_bytes`.
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
    crate::daemon::albatross::tune_allocator();
    let config = Config::load(&args.config)?;
    let rt = tokio::runtime::Runtime::new()?;
    if args.once {
        rt.block_on(once(&config, &args))?;
        return Ok(ExitCode::SUCCESS);
    }
    rt.block_on(async move {
        // Handlers first: a SIGTERM during start-up (or right after "running") must
        // drain, not kill.
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let mut hup = signal(SignalKind::hangup())?;
        let opts = ServiceOptions {
            dry_run: args.dry_run,
            record: args.record.clone(),
            ..ServiceOptions::default()
        };
        let mut service = Service::start(config, opts)
            .await
            .with_context(|| args.config.display().to_string())?;
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
                        service.reload(c).await;
                        notify(&[sd_notify::NotifyState::Ready]);
                    }
                    Err(e) => tracing::error!(error = %e, "reload rejected; keeping the running configuration"),
                },
            }
        }
        tracing::info!("shutting down: waiting for actions in flight");
        notify(&[sd_notify::NotifyState::Stopping]);
        service.stop().await?;
        anyhow::Ok(ExitCode::SUCCESS)
    })
}

/// `--once`: one poll-decide-act cycle of the Proxmox containers (albatross
/// statistics are a stream: those groups are skipped), notices delivered, history
/// written.
async fn once(config: &Config, args: &Args) -> anyhow::Result<()> {
    let has_pve = config.proxmox.is_some() && !config.lxc.is_empty();
    if config.endpoints.is_empty() && !has_pve {
        bail!(
            "{}: nothing to run: configure an [albatross] endpoint with [[group]]s, or [proxmox] with [[lxc]] containers",
            args.config.display()
        );
    }
    if !config.endpoints.is_empty() {
        tracing::warn!("--once: albatross groups are skipped (their statistics are a stream)");
    }
    if !has_pve {
        return Ok(());
    }
    let _lock = match &config.proxmox {
        Some(pve) => Some(crate::state::StateLock::acquire(&pve.state_file)?),
        None => None,
    };
    let notices = crate::notify::Notices::default();
    let sinks = notify::Sink::open_all(&config.notify).map_err(anyhow::Error::msg)?;
    let sent = start_notify(sinks, notices.subscribe(), notify::Counters::default());
    let history = match &config.history.path {
        Some(_) => Some(history::Writer::start(&config.history)?),
        None => None,
    };
    let recorder = match &args.record {
        Some(path) => Some(
            crate::daemon::recorder::Recorder::open(path, config.daemon.record_max_bytes)
                .with_context(|| format!("recording {}", path.display()))?,
        ),
        None => None,
    };
    let (_, inbox) = crate::daemon::approvals::Inbox::channel();
    let (_, controls) = crate::daemon::approvals::Inbox::channel();
    let opts = proxmox::RunOptions {
        dry_run: args.dry_run,
        once: true,
        observer: None,
        notices,
        approvals: Default::default(),
        inbox,
        history: history.as_ref().map(history::Writer::recorder),
        costs: Default::default(),
        view: None,
        outputs: None,
        controls,
        recorder,
    };
    let r = proxmox::run(config, opts, CancellationToken::new()).await;
    if let Some(d) = sent {
        d.finish(notify_grace()).await;
    }
    if let Some(h) = history {
        h.close();
    }
    r
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
