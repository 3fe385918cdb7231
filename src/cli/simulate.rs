//! `simulate --trace FILE [--config FILE] [--policy NAME]... [--report json|table]
//! [--plot out.svg] [--seed N]`: how well each policy serves a load trace, side by
//! side; `simulate --generate SHAPE [--hours N] [--seed S]` prints a synthetic trace.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use crate::sim::simulate::{self, Spec};
use crate::sim::trace::{self, Shape};
use crate::sim::{metrics, plot};

/// Report format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Report {
    Table,
    Json,
}

/// Arguments of `simulate`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Load trace: CSV with header `time_s,demand` (vCPUs), or a JSONL / framed
    /// recording (demand = CPU time used by all its instances).
    #[arg(long, required_unless_present = "generate")]
    pub trace: Option<PathBuf>,
    /// Configuration: the policy of the first [[group]] (else the first horizontal
    /// [[lxc]], else [policy]) is simulated.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// The group whose policy to use: a [[group]]'s primary, or a horizontal
    /// [[lxc]]'s name (`lxc:web` or `web`) or vmid.
    #[arg(long)]
    pub group: Option<String>,
    /// Policies to compare: engine (as configured), reactive (without forecast and
    /// anomaly guard), predictive (with both), thresholds / target (with that
    /// rule), mollymawk (as at its HEAD), hpa. Repeatable; default: engine,
    /// mollymawk, hpa.
    #[arg(long = "policy", value_parser = clap::builder::PossibleValuesParser::new(simulate::NAMES))]
    pub policies: Vec<String>,
    /// The HPA baseline's target utilisation, percent (Kubernetes' default: 80).
    #[arg(long, default_value_t = crate::sim::baselines::Hpa::TARGET_PERCENT,
        value_parser = clap::value_parser!(u32).range(1..=100))]
    pub hpa_target: u32,
    /// The HPA baseline's scale-down stabilization window (Kubernetes' default: 5m).
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    pub hpa_stabilization: std::time::Duration,
    #[arg(long, value_enum, default_value = "table")]
    pub report: Report,
    /// Draw demand, supply and actions per policy into this SVG file.
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Seed of the clones' sample phases (and of --generate).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Also print every scale action with its reason (to stderr).
    #[arg(long)]
    pub explain: bool,
    /// Print a synthetic trace as CSV instead of simulating.
    #[arg(long, value_enum, conflicts_with_all = ["trace", "plot"])]
    pub generate: Option<Shape>,
    /// Length of the generated trace.
    #[arg(long, default_value_t = 24.0, requires = "generate")]
    pub hours: f64,
}

/// Run `simulate`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if let Some(shape) = args.generate {
        if !(args.hours.is_finite() && args.hours > 0.0 && args.hours <= 24.0 * 366.0) {
            anyhow::bail!("--hours must be above 0 and at most a year");
        }
        let csv = trace::generate(shape, args.hours, args.seed).to_csv();
        super::stdout_result(std::io::stdout().lock().write_all(csv.as_bytes()))?;
        return Ok(ExitCode::SUCCESS);
    }
    // `--group`, else the first [[group]], else the first horizontal [[lxc]],
    // else `[policy]` (or the defaults) for `sim:app`.
    let (_, picked) = super::pick::load_and_pick(args.config.as_deref(), args.group.as_deref())?;
    let (primary, policy) = (&picked.name, &picked.policy);
    let fitting = if picked.seasonal() {
        simulate::Fitting::Live
    } else {
        simulate::Fitting::Off
    };
    let path = args.trace.as_deref().context("--trace is required")?;
    let trace = trace::load(path, policy.sample_interval)?;
    let names: Vec<String> = if args.policies.is_empty() {
        ["engine", "mollymawk", "hpa"].map(String::from).to_vec()
    } else {
        args.policies.clone()
    };
    let mut runs = Vec::new();
    for name in &names {
        let spec = Spec::named_with(name, policy, args.hpa_target, args.hpa_stabilization)
            .context("unknown policy")?;
        runs.push(simulate::run_from(
            &trace, primary, policy, &spec, args.seed, 0, fitting,
        ));
    }
    if args.explain {
        let mut err = std::io::stderr().lock();
        for r in &runs {
            for e in &r.events {
                let dir = if e.up { "up  " } else { "down" };
                let t = e.t_ms as f64 / 1000.0;
                writeln!(
                    err,
                    "{:<11} {t:>9.0}s {dir} {} ({})",
                    r.name, e.instance, e.reason
                )?;
            }
        }
    }
    let mut out = String::new();
    match args.report {
        Report::Json => {
            let mut obj = serde_json::Map::new();
            for r in &runs {
                obj.insert(r.name.clone(), serde_json::to_value(&r.metrics)?);
            }
            out.push_str(&serde_json::to_string_pretty(&obj)?);
            out.push('\n');
        }
        Report::Table => {
            let rows: Vec<(String, metrics::Metrics)> = runs
                .iter()
                .map(|r| (r.name.clone(), r.metrics.clone()))
                .collect();
            out.push_str(&metrics::table(&rows));
        }
    }
    super::stdout_result(std::io::stdout().lock().write_all(out.as_bytes()))?;
    if let Some(svg) = &args.plot {
        let title = format!(
            "{} ({} x {} vCPU max, boot {})",
            path.display(),
            policy.max_instances,
            policy.vcpus,
            humantime::format_duration(policy.boot_time)
        );
        plot::svg(svg, &title, &runs)?;
    }
    Ok(ExitCode::SUCCESS)
}
