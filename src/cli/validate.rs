//! `validate CONFIG`: load the configuration and report every problem.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::config::Config;
use crate::core::schedule::{When, Window};

/// Arguments of `validate`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The configuration file.
    pub config: PathBuf,
}

/// Run `validate`: exit 0 and a summary if the file is good, else the problems.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let c = Config::load(&args.config)?;
    println!("{}: ok, {} group(s)", args.config.display(), c.groups.len());
    for g in &c.groups {
        let p = &g.policy;
        println!(
            "  {}: {}..={} instances, up > {}% x{} (cooldown {}), down < {}% x{} (cooldown {}), {} actions/h, primary_death = {}",
            g.primary,
            p.min_instances,
            p.max_instances,
            p.scale_up_threshold,
            p.scale_up_ticks,
            humantime::format_duration(p.scale_up_cooldown),
            p.scale_down_threshold,
            p.scale_down_ticks,
            humantime::format_duration(p.scale_down_cooldown),
            p.max_actions_per_hour,
            format!("{:?}", p.primary_death).to_lowercase()
        );
        for w in p.schedule.windows() {
            println!("    schedule {}", window(w));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `'business-hours' mon-fri 08:00-18:00 Europe/Berlin: min 2`.
fn window(w: &Window) -> String {
    let when = match &w.when {
        When::Cron { cron, duration } => format!(
            "cron {:?} for {}",
            cron.as_str(),
            humantime::format_duration(*duration)
        ),
        When::Hours { days, start, end } => {
            let names = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
            let days: Vec<&str> = (0..7)
                .filter(|d| days & (1 << d) != 0)
                .map(|d| names[d])
                .collect();
            let hm = |m: &u16| format!("{:02}:{:02}", m / 60, m % 60);
            format!("{} {}-{}", days.join(","), hm(start), hm(end))
        }
    };
    let mut set = Vec::new();
    if let Some(n) = w.min_instances {
        set.push(format!("min {n}"));
    }
    if let Some(n) = w.max_instances {
        set.push(format!("max {n}"));
    }
    if let Some((a, b)) = w.cores {
        set.push(format!("cores {a}..={b}"));
    }
    if let Some((a, b)) = w.memory_mib {
        set.push(format!("memory {a}..={b} MiB"));
    }
    format!("'{}' {when} {}: {}", w.name, w.timezone, set.join(", "))
}
