//! `run --config FILE [--dry-run]`: the daemon, until SIGTERM or SIGINT; SIGHUP
//! reloads the configuration (a bad file is reported and the old one kept).

use std::path::PathBuf;
use std::process::ExitCode;

use tokio::signal::unix::{SignalKind, signal};

use crate::config::Config;
use crate::daemon::albatross::{Daemon, RunOptions};

/// Arguments of `run`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Configuration file.
    #[arg(long, short, env = "ALBATROSS_AUTOSCALE_CONFIG")]
    pub config: PathBuf,
    /// Decide and log, never actuate.
    #[arg(long)]
    pub dry_run: bool,
}

/// Set up logging for long-running commands: `RUST_LOG` filters (default `info`).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Run `run`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    init_tracing();
    let config = Config::load(&args.config)?;
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        let opts = RunOptions {
            dry_run: args.dry_run,
            ..RunOptions::default()
        };
        let daemon = Daemon::start(config, opts).await?;
        tracing::info!(config = %args.config.display(), dry_run = args.dry_run, "running");
        let mut term = signal(SignalKind::terminate())?;
        let mut int = signal(SignalKind::interrupt())?;
        let mut hup = signal(SignalKind::hangup())?;
        loop {
            tokio::select! {
                _ = term.recv() => break,
                _ = int.recv() => break,
                _ = hup.recv() => match Config::load(&args.config) {
                    Ok(c) => {
                        tracing::info!(config = %args.config.display(), "reloading");
                        daemon.reload(&c).await;
                    }
                    Err(e) => tracing::error!(error = %e, "reload rejected; keeping the running configuration"),
                },
            }
        }
        tracing::info!("shutting down: waiting for actions in flight");
        daemon.stop().await;
        anyhow::Ok(ExitCode::SUCCESS)
    })
}
