//! `replay [--config FILE] [--interval DUR] [--start RFC3339] [--explain] FILE...`:
//! recorded stats through the engine, JSON Lines on stdout.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use crate::config::Config;
use crate::core::{Engine, Options, Policy, Timestamp};
use crate::jsonl;
use crate::name::Name;
use crate::sim::{recording, replay};

/// Arguments of `replay`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Configuration file; without it every VM is its own group with the default policy.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Time between two samples of a VM in a framed stream (stats carry no timestamp).
    /// Default: the config's sample_interval, else 10s.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub interval: Option<Duration>,
    /// Name of the subscriber, to resolve relative names when the stream lacks the
    /// leading subscribe reply.
    #[arg(long)]
    pub subscription: Option<Name>,
    /// Also print one line per evaluation with counters and the "why not".
    #[arg(long)]
    pub explain: bool,
    /// Wall-clock time of the recording's t = 0 (RFC 3339, e.g.
    /// 2026-03-02T07:00:00Z), against which schedules are evaluated. Default: the
    /// Unix epoch, i.e. the recording's `t_ms` are read as Unix milliseconds.
    #[arg(long, value_parser = parse_start)]
    pub start: Option<i64>,
    /// The files are flight recordings of `run --record` (oldest first): feed
    /// their inputs to the same engine and print the decisions the daemon logged,
    /// line for line. `--config`, `--interval`, `--start` and `--explain` do not
    /// apply (the recording holds them).
    #[arg(long, conflicts_with_all = ["config", "interval", "start", "explain", "subscription"])]
    pub inputs: bool,
    /// Framed albatross stats streams (.bin) or JSON Lines recordings.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

fn parse_start(s: &str) -> Result<i64, String> {
    crate::core::schedule::parse_rfc3339(s)
}

/// Run `replay`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if args.inputs {
        return inputs(&args.files);
    }
    let config = args.config.as_deref().map(Config::load).transpose()?;
    let interval = args
        .interval
        .or(config.as_ref().map(|c| c.policy.sample_interval))
        .unwrap_or(Duration::from_secs(10));
    if interval.is_zero() {
        anyhow::bail!("--interval must be above 0s");
    }
    let framed = recording::FramedOptions {
        interval,
        subscription: args.subscription.clone(),
    };
    let mut records = Vec::new();
    for f in &args.files {
        records.extend(recording::load(f, &framed)?);
    }
    let (groups, auto_group) = match &config {
        Some(c) => (
            c.groups
                .iter()
                .map(|g| (g.primary.clone(), Policy::clone(&g.policy)))
                .collect(),
            None,
        ),
        None => (
            Vec::new(),
            Some(Policy {
                sample_interval: interval,
                ..Policy::default()
            }),
        ),
    };
    let options = Options {
        auto_group,
        adopt_by_name: true,
        // A trace has no operator: decisions are shown, never held.
        approvals: false,
    };
    if args.start.is_none()
        && let Some((name, _)) = groups.iter().find(|(_, p)| !p.schedule.is_empty())
    {
        // Not an error (a replay of thresholds alone is fine), but easy to miss.
        // Not eprintln!: a closed stderr must not panic.
        let _ = writeln!(
            std::io::stderr(),
            "warning: {name} has schedule windows and no --start was given: the replay runs at 1970-01-01T00:00:00Z; pass --start RFC3339 to place it in time"
        );
    }
    let start = records.iter().map(|r| r.t).min().unwrap_or(Timestamp::ZERO);
    let engine = Engine::new(groups, options, start).with_wall_origin(args.start.unwrap_or(0));
    let stdout = std::io::stdout();
    let mut w = std::io::BufWriter::new(stdout.lock());
    let mut result = Ok(());
    replay::run(engine, &records, |o| {
        if let (Ok(()), Some(line)) = (&result, jsonl::line(o, args.explain)) {
            result = writeln!(w, "{line}");
        }
    });
    super::stdout_result(result.and_then(|()| w.flush()))?;
    Ok(ExitCode::SUCCESS)
}

/// `replay --inputs`: the decisions of a flight recording.
fn inputs(files: &[PathBuf]) -> anyhow::Result<ExitCode> {
    let stdout = std::io::stdout();
    let mut w = std::io::BufWriter::new(stdout.lock());
    let mut result = Ok(());
    let files: Vec<&std::path::Path> = files.iter().map(PathBuf::as_path).collect();
    crate::sim::inputs::replay(&files, |line| {
        if result.is_ok() {
            result = writeln!(w, "{line}");
        }
    })?;
    super::stdout_result(result.and_then(|()| w.flush()))?;
    Ok(ExitCode::SUCCESS)
}
