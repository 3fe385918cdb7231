//! `history export --config FILE --group NAME [--since T] [--until T] [--step S]
//! [--format csv|jsonl]`: a group's recorded demand. The CSV is what
//! `simulate --trace` reads (`time_s,demand`, time relative to the first row,
//! demand in vCPUs): record real load, then compare policies on it.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::SystemTime;

use anyhow::{Context, bail};
use serde_json::json;

use crate::config::Config;
use crate::history::query::{self, Step};
use crate::history::store;
use crate::history::writer::unix_ms;
use crate::sim::trace::Trace;

/// Arguments of `history`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    pub command: Command,
}

/// `history` subcommands.
#[derive(clap::Subcommand, Debug)]
pub enum Command {
    /// Print a group's recorded demand (CSV for `simulate --trace`, or JSON Lines).
    Export(ExportArgs),
}

/// Output format of `history export`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// `time_s,demand`: the mean demand of each step, for `simulate --trace`.
    Csv,
    /// One JSON object per step: time, demand min/mean/max, CPU, instances.
    Jsonl,
}

/// Arguments of `history export`.
#[derive(clap::Args, Debug)]
pub struct ExportArgs {
    /// Configuration file (its `[history] path` is read).
    #[arg(long, short, env = "ALBATROSS_AUTOSCALE_CONFIG")]
    pub config: PathBuf,
    /// The group (its original primary, e.g. alice:web; for LXC the [[lxc]] name).
    #[arg(long)]
    pub group: String,
    /// Start: RFC 3339, or a duration before now (-2d, 6h). Default: everything.
    #[arg(long, allow_hyphen_values = true)]
    pub since: Option<String>,
    /// End (exclusive), same forms. Default: now.
    #[arg(long, allow_hyphen_values = true)]
    pub until: Option<String>,
    /// Row spacing: the group's sample_interval by default (raw rows); 5m or more
    /// reads the 5-minute aggregates, which outlive the raw rows (retention).
    #[arg(long)]
    pub step: Option<String>,
    #[arg(long, value_enum, default_value = "csv")]
    pub format: Format,
}

/// Run `history`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    match args.command {
        Command::Export(a) => export(a),
    }
}

fn export(args: ExportArgs) -> anyhow::Result<ExitCode> {
    let config = Config::load(&args.config)?;
    let path = config.history.path.as_deref().with_context(|| {
        format!(
            "{}: no [history] path: nothing is recorded",
            args.config.display()
        )
    })?;
    let now = unix_ms(SystemTime::now());
    let time = |s: &Option<String>, default: i64, what: &str| match s {
        None => Ok(default),
        Some(s) => query::parse_time(s, now).map_err(|e| anyhow::anyhow!("--{what}: {e}")),
    };
    let since = time(&args.since, i64::MIN, "since")?;
    let until = time(&args.until, now.saturating_add(1), "until")?;
    if since >= until {
        bail!("--since must be before --until");
    }
    let interval = config
        .groups
        .iter()
        .find(|g| g.primary.to_string() == args.group)
        .map(|g| g.policy.sample_interval)
        .or_else(|| {
            config
                .lxc
                .iter()
                .find(|l| l.name.to_string() == args.group)
                .map(|l| l.policy.sample_interval)
        })
        .unwrap_or(config.policy.sample_interval);
    let step = match &args.step {
        Some(s) => Step::parse(s).map_err(|e| anyhow::anyhow!("--{e}"))?,
        None => Step::Every(i64::try_from(interval.as_millis()).unwrap_or(1_000).max(10)),
    };
    if step == Step::Raw && args.format == Format::Csv {
        bail!(
            "--step raw keeps the irregular engine times; the CSV needs a regular step (for example 10s)"
        );
    }
    let conn = store::open_read(path)?;
    let grp = query::group_id(&conn, &args.group)
        .with_context(|| format!("history.path {}", path.display()))?
        .with_context(|| {
            format!(
                "history.path {}: nothing recorded for group {:?}",
                path.display(),
                args.group
            )
        })?;
    let points = query::points(&conn, grp, since, until, step, 10_000_000)
        .map_err(|e| anyhow::anyhow!("history.path {}: {e}", path.display()))?;
    let Some(first) = points.first() else {
        let hint = if step.aggregated() {
            " (5-minute aggregates appear once a bucket has closed)"
        } else {
            " (raw rows are kept for history.raw_retention; older ones exist as 5-minute aggregates: --step 5m)"
        };
        bail!(
            "history.path {}: no rows for group {:?} in that range{hint}",
            path.display(),
            args.group
        );
    };
    let t0 = first.t_ms;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let written = match args.format {
        Format::Csv => {
            let trace = Trace {
                t_ms: points
                    .iter()
                    .map(|p| (p.t_ms - t0).unsigned_abs())
                    .collect(),
                demand: points.iter().map(|p| p.mean).collect(),
            };
            out.write_all(trace.to_csv().as_bytes())
        }
        Format::Jsonl => points.iter().try_for_each(|p| {
            let mut v = serde_json::to_value(p).unwrap_or_default();
            v["time_s"] = json!((p.t_ms - t0) as f64 / 1000.0);
            v["demand"] = json!(p.mean);
            writeln!(out, "{v}")
        }),
    }
    .and_then(|()| out.flush());
    super::stdout_result(written)?;
    Ok(ExitCode::SUCCESS)
}
