//! `notify-test --config FILE`: one test notice to every `[[notify]]` sink, one line
//! per sink; exit 1 if any failed.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::bail;

use crate::config::Config;
use crate::notify::{self, Sink};

/// Arguments of `notify-test`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Configuration file.
    #[arg(long, short, env = "ALBATROSS_AUTOSCALE_CONFIG")]
    pub config: PathBuf,
}

/// Run `notify-test`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let config = Config::load(&args.config)?;
    if config.notify.is_empty() {
        bail!("{}: no [[notify]] sinks configured", args.config.display());
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let lines = rt.block_on(test(&config));
    let mut failed = false;
    for (name, kind, r) in &lines {
        match r {
            Ok(()) => println!("{name}: ok ({kind})"),
            Err(e) => {
                failed = true;
                println!("{name}: failed ({kind}): {e}");
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Each sink's name, kind and outcome, in config order (all sinks at once).
async fn test(config: &Config) -> Vec<(String, String, Result<(), String>)> {
    let mut out = Vec::new();
    let mut open = Vec::new();
    for c in &config.notify {
        match Sink::open(c) {
            Ok(s) => open.push(s),
            Err(e) => out.push((c.name.clone(), c.describe(), Err(e))),
        }
    }
    let reason = format!(
        "notify-test from albatross-autoscale {}",
        env!("CARGO_PKG_VERSION")
    );
    for ((name, r), s) in notify::test_all(&open, &reason)
        .await
        .into_iter()
        .zip(&open)
    {
        out.push((name, s.kind(), r));
    }
    let pos = |n: &str| config.notify.iter().position(|c| c.name == n);
    out.sort_by_key(|(n, _, _)| pos(n));
    out
}
