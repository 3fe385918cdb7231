//! `tune --trace FILE [--config FILE] [--group NAME] [--train 0.5] [--max-under 1%]
//! [--samples N] [--seed N] [--jobs N] [--output FILE] [--plot FILE]`: the policy
//! with the least slack that keeps under-provisioning within `--max-under`, fitted
//! on the first part of the trace and measured on the rest.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};

use super::pick::{Section, load_and_pick};
use crate::config::Config;
use crate::core::Policy;
use crate::sim::tune::{self, Bound, Settings};
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
    /// The group to tune: a [[group]]'s primary, or a horizontal [[lxc]]'s name
    /// (`lxc:web` or `web`) or vmid; default: the first [[group]], else the first
    /// horizontal [[lxc]].
    #[arg(long)]
    pub group: Option<String>,
    /// Share of the trace fitted on (`0.5` or `50%`); the rest measures.
    #[arg(long, default_value = "0.5", value_parser = parse_train)]
    pub train: f64,
    /// Most under-provisioned time allowed on the training part: `1%` (or `1`),
    /// or `current` (no more than the current configuration there).
    #[arg(long, default_value = "1%", value_parser = parse_bound)]
    pub max_under: Bound,
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

/// `--max-under`: `current`, or a percentage.
fn parse_bound(s: &str) -> Result<Bound, String> {
    if s.trim() == "current" {
        return Ok(Bound::Current);
    }
    parse_percent(s).map(Bound::Share)
}

/// A percentage, with or without `%`, 0..=100; as a share.
fn parse_percent(s: &str) -> Result<f64, String> {
    let t = s.trim();
    let v: f64 = t
        .strip_suffix('%')
        .unwrap_or(t)
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a percentage such as 1%, nor current"))?;
    if !(v.is_finite() && (0.0..=100.0).contains(&v)) {
        return Err(format!("{s}: must be between 0% and 100%"));
    }
    Ok(v / 100.0)
}

/// Run `tune`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let (loaded, picked) = load_and_pick(args.config.as_deref(), args.group.as_deref())?;
    let (primary, current) = (picked.name.clone(), picked.policy.clone());
    let trace = trace::load(&args.trace, current.sample_interval)?;
    let split = (trace.duration_ms() as f64 * args.train).round() as u64;
    let before = trace.rows_before(split);
    if before < 2 || trace.t_ms.len() - before < 2 {
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
        seasonal: picked.seasonal(),
        rule: args.rule.as_deref().and_then(crate::core::Rule::parse),
        jobs: args.jobs.map_or_else(
            || std::thread::available_parallelism().map_or(1, usize::from),
            |j| usize::try_from(j).unwrap_or(1),
        ),
    };
    let terminal = std::io::stderr().is_terminal();
    // Runs and fits; the total is an estimate until the training front is known.
    let progress = |done: usize, total: usize| {
        if terminal && done.is_multiple_of(5) {
            let filled = (done * 30 / total.max(1)).min(30);
            let _ = write!(
                std::io::stderr(),
                "\rtune [{}{}] {done}/~{total} runs and fits",
                "#".repeat(filled),
                ".".repeat(30 - filled)
            );
        }
    };
    let t = tune::tune(&trace, &primary, &current, &settings, &progress);
    if terminal {
        let _ = writeln!(
            std::io::stderr(),
            "\rtune [{}] done{}",
            "#".repeat(30),
            " ".repeat(24)
        );
    }
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
    if !settings.seasonal {
        out.push_str("# [[lxc]]: the daemon fits no seasonal forecast for containers; predictive = true acts on Holt's (level + trend) forecast only, and so do these runs\n");
    }
    if args.max_under == Bound::Current {
        out.push_str(&format!(
            "# --max-under current: at most {:.2}% under-provisioned time on the training part (the current configuration's)\n",
            t.max_under * 100.0
        ));
    }
    if !t.feasible {
        out.push_str(&format!(
            "# no candidate kept under-provisioned time within {:.2}% and actions within max_actions_per_hour on the training part; the least under-provisioned is shown\n",
            t.max_under * 100.0
        ));
    }
    out.push_str("\n## out of sample\n");
    let rows: Vec<(String, metrics::Metrics)> = t
        .test
        .iter()
        .map(|r| (r.name.clone(), r.metrics.clone()))
        .collect();
    out.push_str(&metrics::table(&rows));
    let recommended = t.recommended();
    out.push_str(&format!(
        "\ncurrent: {}\ntuned:   {}\n",
        tune::summary(&current),
        tune::summary(&recommended)
    ));
    out.push_str(&verdict(
        &t,
        &best.train,
        trace.duration_ms(),
        settings.seasonal,
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
    let section = picked.header(loaded.as_ref());
    out.push_str(&format!("\n## recommended keys ({section})\n"));
    for (k, v) in tune::keys(&recommended) {
        out.push_str(&format!("{k} = {v}\n"));
    }
    super::stdout_result(std::io::stdout().lock().write_all(out.as_bytes()))?;
    if let Some(path) = &args.output {
        let text = config_with(args.config.as_deref(), picked.section, &recommended)?;
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

/// What the out-of-sample rows say, in words: the tuned keys against the current
/// ones, whether the forecast was kept, and the clairvoyant floor.
fn verdict(t: &tune::Tuned, train: &metrics::Metrics, trace_ms: u64, seasonal: bool) -> String {
    let pct = |m: &metrics::Metrics| {
        (
            m.slack * 100.0,
            m.under_provisioned_timeshare * 100.0,
            m.actions_per_hour,
        )
    };
    let mut s = String::from("\n");
    if let (Some(cur), Some(tuned)) = (t.test_run("current"), t.test_run("tuned")) {
        let ((s0, u0, _), (s1, u1, _)) = (pct(&cur.metrics), pct(&tuned.metrics));
        let idle = if (s0 - s1).abs() < 0.05 {
            "as much".to_string()
        } else if s0 > 0.0 {
            format!(
                "{:.0}% {}",
                ((s0 - s1) / s0 * 100.0).abs(),
                if s1 <= s0 { "less" } else { "more" }
            )
        } else {
            "no change in".into()
        };
        s.push_str(&format!(
            "tuned vs current, out of sample: {idle} idle capacity (slack {s0:.1}% -> {s1:.1}%), under-provisioned time {u0:.2}% -> {u1:.2}% ({:+.2} points)\n",
            u1 - u0
        ));
    }
    let (os, ou, _) = pct(&t.forecast_train);
    let (ts, tu, _) = pct(train);
    let tried = t
        .candidates
        .iter()
        .skip(1)
        .filter(|c| c.policy.predictive)
        .count();
    s.push_str(&if t.forecast {
        format!(
            "forecast: the choice forecasts (predictive = true): on the training part {tu:.2}% under-provisioned at {ts:.1}% slack, {ou:.2}% at {os:.1}% without\n"
        )
    } else {
        format!(
            "forecast: tried on {tried} candidates of the training front, none did better; the choice with it: {ou:.2}% under-provisioned at {os:.1}% slack on the training part ({tu:.2}% at {ts:.1}% without)\n"
        )
    });
    // The forecast's measured error on each part, and whether the training part
    // was long enough for the weekly season (two weeks before the split).
    let fc_train = if t.forecast { train } else { &t.forecast_train };
    let fc_test = t
        .test
        .iter()
        .find(|r| r.name.ends_with("forecast") || (r.name == "tuned" && t.forecast))
        .filter(|r| r.metrics.forecast_mape_percent.is_some());
    if let (Some(a), Some(b)) = (
        fc_train.forecast_mape_percent,
        fc_test.and_then(|r| r.metrics.forecast_mape_percent),
    ) {
        s.push_str(&format!(
            "forecast error (MAPE of the day ahead, mean of the refits): {a:.1}% on the training part, {b:.1}% on the rest; acted on only while at most forecast_max_error\n"
        ));
    }
    // Two weeks and a day measure the weekly season once; a week more lets the
    // training part see it at work.
    let (fortnight, enough) = (15 * 86_400_000u64, 22 * 86_400_000u64);
    let share = enough as f64 / trace_ms.max(1) as f64;
    if seasonal && !t.forecast && t.split_ms < fortnight && share <= 0.9 {
        s.push_str(&format!(
            "hint: the training part is shorter than the two weeks (and a day) the weekly season needs before its error is measured; --train {:.2} fits on {} days, a week of them with it\n",
            (share * 100.0).ceil() / 100.0,
            22
        ));
    }
    if let Some(o) = t.test_run("oracle") {
        let (os, ou, oa) = pct(&o.metrics);
        s.push_str(&format!(
            "oracle (clairvoyant, no budget): {os:.1}% slack at {ou:.2}% under-provisioned and {oa:.2} actions/h is the floor no policy beats on this part\n"
        ));
    }
    s
}

/// The configuration text with the tuned keys set in `section` (the picked
/// group's table, else `[policy]`); everything else of the file (comments, order)
/// is kept. Without `--config`, a `[policy]` of the keys alone.
pub fn config_with(
    config: Option<&Path>,
    section: Section,
    policy: &Policy,
) -> anyhow::Result<String> {
    use toml_edit::{DocumentMut, Item, Table, TableLike};
    let mut doc = match config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("{}: cannot read", path.display()))?;
            text.parse::<DocumentMut>()
                .with_context(|| format!("{}: not TOML", path.display()))?
        }
        None => DocumentMut::new(),
    };
    let (key, index) = match section {
        Section::Group(i) => ("group", Some(i)),
        Section::Lxc(i) => ("lxc", Some(i)),
        Section::Policy => ("policy", None),
    };
    // `[[group]]` tables or an inline array (`group = [{ ... }]`); `[policy]` or
    // `policy = { ... }`: the loader takes both, so must this.
    let table: &mut dyn TableLike = match index {
        Some(i) => match doc.get_mut(key) {
            Some(Item::ArrayOfTables(a)) => a.get_mut(i).map(|t| t as &mut dyn TableLike),
            Some(Item::Value(toml_edit::Value::Array(a))) => a
                .get_mut(i)
                .and_then(toml_edit::Value::as_inline_table_mut)
                .map(|t| t as &mut dyn TableLike),
            _ => None,
        }
        .with_context(|| format!("{key} entry {}: not a table in the file", i + 1))?,
        None => doc
            .entry("policy")
            .or_insert_with(|| Item::Table(Table::new()))
            .as_table_like_mut()
            .context("policy: not a table in the file")?,
    };
    for (k, v) in tune::keys(policy) {
        let v: toml_edit::Value = match v {
            toml::Value::String(s) => s.into(),
            toml::Value::Integer(n) => n.into(),
            toml::Value::Float(f) => f.into(),
            toml::Value::Boolean(b) => b.into(),
            other => bail!("{k}: cannot write {other}"),
        };
        match table.get_mut(k).and_then(Item::as_value_mut) {
            // Keep the key's place and its comments.
            Some(old) => {
                let decor = old.decor().clone();
                *old = v;
                *old.decor_mut() = decor;
            }
            None => {
                table.insert(k, toml_edit::value(v));
            }
        }
    }
    Ok(format!(
        "# Tuned by `albatross-autoscale tune` ({}).\n{doc}",
        tune::summary(policy),
    ))
}
