//! `tune --trace FILE [--config FILE] [--group NAME] [--train 0.5] [--max-under 1%]
//! [--samples N] [--seed N] [--jobs N] [--output FILE] [--plot FILE]`: the policy
//! with the least slack that keeps under-provisioning within `--max-under`, fitted
//! on the first part of the trace and measured on the rest.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};

use crate::config::Config;
use crate::core::Policy;
use crate::name::Name;
use crate::sim::tune::{self, Settings};
use crate::sim::{metrics, plot, trace};

/// Arguments of `tune`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Load trace: CSV `time_s,demand` (e.g. `history export`) or a recording.
    #[arg(long)]
    pub trace: PathBuf,
    /// The operator's configuration to start from (its group's policy is "current").
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// The [[group]] to tune (its primary's name); default: the first.
    #[arg(long)]
    pub group: Option<Name>,
    /// Share of the trace fitted on (`0.5` or `50%`); the rest measures.
    #[arg(long, default_value = "0.5", value_parser = parse_train)]
    pub train: f64,
    /// Most under-provisioned time allowed on the training part (`1%` or `1`).
    #[arg(long, default_value = "1%", value_parser = parse_percent)]
    pub max_under: f64,
    /// Candidates simulated (a seeded sample of the grid), besides the current policy.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub samples: u64,
    /// Seed of the sample and of the clones' sample phases.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Search one rule only (default: both).
    #[arg(long, value_parser = ["thresholds", "target"])]
    pub rule: Option<String>,
    /// Threads (default: the CPUs available).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1024))]
    pub jobs: Option<u64>,
    /// Write the configuration (`--config` with the group's keys replaced) here.
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Draw the out-of-sample runs into this SVG file.
    #[arg(long)]
    pub plot: Option<PathBuf>,
}

/// `--train`: a share strictly between 0 and 1 (`0.5`, `50%`).
fn parse_train(s: &str) -> Result<f64, String> {
    let v = match s.trim().strip_suffix('%') {
        Some(p) => p.trim().parse::<f64>().map(|v| v / 100.0),
        None => s.trim().parse::<f64>(),
    }
    .map_err(|_| format!("{s:?} is not a number (a share such as 0.5 or 50%)"))?;
    if !(v.is_finite() && v > 0.0 && v < 1.0) {
        return Err(format!(
            "{s}: must be above 0 and below 1 (the share fitted on; the rest measures)"
        ));
    }
    Ok(v)
}

/// `--max-under`: percent, with or without `%`, 0..=100; as a share.
fn parse_percent(s: &str) -> Result<f64, String> {
    let t = s.trim();
    let v: f64 = t
        .strip_suffix('%')
        .unwrap_or(t)
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a percentage such as 1%"))?;
    if !(v.is_finite() && (0.0..=100.0).contains(&v)) {
        return Err(format!("{s}: must be between 0% and 100%"));
    }
    Ok(v / 100.0)
}

/// Run `tune`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let (primary, current) =
        super::simulate::group_of(args.config.as_deref(), args.group.as_ref())?;
    let trace = trace::load(&args.trace, current.sample_interval)?;
    let split = (trace.duration_ms() as f64 * args.train).round() as u64;
    if trace.head(split).t_ms.len() < 2 || trace.t_ms.len() - trace.head(split).t_ms.len() < 2 {
        bail!(
            "{}: {} rows are too few to fit on {:.0}% and measure on the rest",
            args.trace.display(),
            trace.t_ms.len(),
            args.train * 100.0
        );
    }
    let settings = Settings {
        train: args.train,
        max_under: args.max_under,
        samples: usize::try_from(args.samples).unwrap_or(usize::MAX),
        seed: args.seed,
        rule: args.rule.as_deref().map(|r| match r {
            "target" => crate::core::Rule::Target,
            _ => crate::core::Rule::Thresholds,
        }),
        jobs: args.jobs.map_or_else(
            || std::thread::available_parallelism().map_or(1, usize::from),
            |j| usize::try_from(j).unwrap_or(1),
        ),
    };
    let terminal = std::io::stderr().is_terminal();
    let progress = |done: usize, total: usize| {
        if terminal && (done.is_multiple_of(10) || done == total) {
            let _ = write!(std::io::stderr(), "\rtune: {done}/{total} simulated");
            if done == total {
                let _ = writeln!(std::io::stderr());
            }
        }
    };
    let t = tune::tune(&trace, &primary, &current, &settings, &progress);
    let best = &t.candidates[t.best];
    let mut out = String::new();
    let train_pct = args.train * 100.0;
    out.push_str(&format!(
        "# {} ({} candidates, seed {}): fitted on the first {train_pct:.0}% ({:.1} h), measured on the rest\n",
        args.trace.display(),
        t.candidates.len(),
        args.seed,
        t.split_ms as f64 / 3_600_000.0
    ));
    if !t.feasible {
        out.push_str(&format!(
            "# no candidate kept under-provisioned time within {:.2}% and actions within max_actions_per_hour on the training part; the least under-provisioned is shown\n",
            args.max_under * 100.0
        ));
    }
    out.push_str("\n## out of sample\n");
    let rows: Vec<(String, metrics::Metrics)> = t
        .test
        .iter()
        .map(|r| (r.name.clone(), r.metrics.clone()))
        .collect();
    out.push_str(&metrics::table(&rows));
    out.push_str(&format!(
        "\ncurrent: {}\ntuned:   {}\n",
        tune::summary(&current),
        tune::summary(&best.policy)
    ));
    out.push_str("\n## Pareto front (training part)\n");
    out.push_str(&format!(
        "{:>8} {:>7} {:>9}  {}\n",
        "under%", "slack%", "actions/h", "policy"
    ));
    for i in tune::pareto(&t.candidates) {
        let c = &t.candidates[i];
        let mark = if i == t.best { " <- tuned" } else { "" };
        out.push_str(&format!(
            "{:>8.2} {:>7.1} {:>9.2}  {}{mark}\n",
            c.train.under_provisioned_timeshare * 100.0,
            c.train.slack * 100.0,
            c.train.actions_per_hour,
            tune::summary(&c.policy)
        ));
    }
    let section = target_section(args.config.as_deref(), args.group.as_ref())?;
    out.push_str(&format!("\n## recommended keys ({section})\n"));
    for (k, v) in tune::keys(&best.policy) {
        out.push_str(&format!("{k} = {v}\n"));
    }
    super::stdout_result(std::io::stdout().lock().write_all(out.as_bytes()))?;
    if let Some(path) = &args.output {
        let text = config_with(args.config.as_deref(), args.group.as_ref(), &best.policy)?;
        // It must load as written: the real loader, relative paths from its place.
        Config::parse(&text, path).with_context(|| {
            format!("{}: the tuned configuration does not load", path.display())
        })?;
        std::fs::write(path, text).with_context(|| format!("{}: cannot write", path.display()))?;
    }
    if let Some(svg) = &args.plot {
        let title = format!(
            "{}: out of sample, after {:.1} h of fitting",
            args.trace.display(),
            t.split_ms as f64 / 3_600_000.0
        );
        plot::svg(svg, &title, &t.test)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Where the keys go: `[[group]] <name>` or `[policy]`.
fn target_section(config: Option<&Path>, group: Option<&Name>) -> anyhow::Result<String> {
    let Some(path) = config else {
        return Ok("[policy]".into());
    };
    let c = Config::load(path)?;
    let g = match group {
        Some(g) => Some(g.clone()),
        None => c.groups.first().map(|g| g.primary.clone()),
    };
    Ok(g.map_or("[policy]".into(), |g| {
        format!("[[group]] primary = \"{g}\"")
    }))
}

/// The configuration text with the tuned keys set: in the group's table (the
/// `--group` one, else the first), else in `[policy]`. Without `--config`, a
/// `[policy]` of the keys alone. Comments of the original are not kept.
pub fn config_with(
    config: Option<&Path>,
    group: Option<&Name>,
    policy: &Policy,
) -> anyhow::Result<String> {
    let mut table = match config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("{}: cannot read", path.display()))?;
            text.parse::<toml::Table>()
                .with_context(|| format!("{}: not TOML", path.display()))?
        }
        None => toml::Table::new(),
    };
    let loaded = match config {
        Some(path) => Some(Config::load(path)?),
        None => None,
    };
    let index = loaded.as_ref().and_then(|c| match group {
        Some(g) => c.groups.iter().position(|x| x.primary == *g),
        None => (!c.groups.is_empty()).then_some(0),
    });
    let section = match (index, table.get_mut("group")) {
        (Some(i), Some(toml::Value::Array(groups))) => match groups.get_mut(i) {
            Some(toml::Value::Table(t)) => t,
            _ => bail!("[[group]] {i} is not a table"),
        },
        _ => match table
            .entry("policy")
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
        {
            toml::Value::Table(t) => t,
            _ => bail!("[policy] is not a table"),
        },
    };
    for (k, v) in tune::keys(policy) {
        section.insert(k.to_string(), v);
    }
    Ok(format!(
        "# Tuned by `albatross-autoscale tune` ({}).\n{}",
        tune::summary(policy),
        toml::to_string(&table)?
    ))
}
