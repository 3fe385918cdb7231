//! `validate CONFIG`: load the configuration and report every problem.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::config::Config;

/// Arguments of `validate`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The configuration file.
    pub config: PathBuf,
}

/// Run `validate`: exit 0 and a summary if the file is good, else the problems.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let c = Config::load(&args.config)?;
    if c.lxc.is_empty() {
        println!("{}: ok, {} group(s)", args.config.display(), c.groups.len());
    } else {
        println!(
            "{}: ok, {} group(s), {} container(s)",
            args.config.display(),
            c.groups.len(),
            c.lxc.len()
        );
    }
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
            println!("    schedule {w}");
        }
    }
    for w in c.warnings() {
        println!("  warning: {w}");
    }
    Ok(ExitCode::SUCCESS)
}
