//! The `albatross-autoscale` command: argument parsing only; the work lives in
//! `albatross_autoscale::cli`.

use std::io::Write;
use std::process::ExitCode;

use albatross_autoscale::cli;
use clap::{CommandFactory, Parser, Subcommand};

#[derive(Parser)]
#[command(name = "albatross-autoscale", about, long_about = None,
    version = concat!(env!("CARGO_PKG_VERSION"), " (", env!("AA_GIT_REVISION"), ")"))]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Watch a unikernel group scale up and down against an embedded albatross.
    #[cfg(feature = "sandbox")]
    Demo(cli::demo::Args),
    /// Run the autoscaler daemon.
    Run(cli::run::Args),
    /// Check a configuration file and report every problem with its key.
    Validate(cli::validate::Args),
    /// Preflight before `run`: talk to every endpoint and Proxmox and report every
    /// reason the setup would not scale (exit 0 ok, 1 warnings, 2 failures).
    Check(cli::check::Args),
    /// Drive the engine with recorded statistics and print JSON Lines.
    Replay(cli::replay::Args),
    /// Serve a load trace with the engine and the classic rules; report elasticity metrics.
    Simulate(cli::simulate::Args),
    /// Search a group's policy on a trace: the least idle capacity within an
    /// under-provisioning bound, fitted on one part and measured on the rest.
    Tune(cli::tune::Args),
    /// Read the metrics history back: `history export` prints a group's demand.
    History(cli::history::Args),
    /// Decode albatross frames, DER messages or certificates to JSON.
    Decode(cli::decode::Args),
    /// List unikernels on an albatross endpoint (checks connectivity and certificates).
    Info(cli::info::InfoArgs),
    /// Print live statistics samples from an albatross endpoint.
    Stats(cli::info::StatsArgs),
    /// Send a test notification to every [[notify]] sink and report each result.
    NotifyTest(cli::notify_test::Args),
    /// Print shell completions (bash, zsh, fish, elvish, powershell).
    Completions(cli::completions::Args),
    /// Print the man page (roff): `albatross-autoscale man | man -l -`.
    Man,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        #[cfg(feature = "sandbox")]
        Command::Demo(args) => cli::demo::run(args),
        Command::Run(args) => cli::run::run(args),
        Command::Info(args) => cli::info::info(args),
        Command::Stats(args) => cli::info::stats(args),
        Command::NotifyTest(args) => cli::notify_test::run(args),
        Command::Validate(args) => cli::validate::run(args),
        Command::Check(args) => cli::check::run(args),
        Command::Replay(args) => cli::replay::run(args),
        Command::Simulate(args) => cli::simulate::run(args),
        Command::Tune(args) => cli::tune::run(args),
        Command::Decode(args) => cli::decode::run(args),
        Command::History(args) => cli::history::run(args),
        Command::Completions(args) => cli::completions::completions(args, Cli::command()),
        Command::Man => cli::completions::man(Cli::command()),
    };
    match result {
        Ok(code) => code,
        // The reader of our output had enough (`| head`): not a failure.
        Err(err) if err.is::<cli::StdoutClosed>() => ExitCode::SUCCESS,
        Err(err) => {
            // Not eprintln!: it panics when stderr is a closed pipe too.
            let _ = writeln!(std::io::stderr(), "error: {}", describe(&err));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, each cause once: many messages already
/// quote their source (`{path}: cannot read: {source}`), so `{:#}` would repeat it.
fn describe(err: &anyhow::Error) -> String {
    let mut msg = err.to_string();
    for cause in err.chain().skip(1) {
        let c = cause.to_string();
        if !msg.contains(&c) {
            msg.push_str(": ");
            msg.push_str(&c);
        }
    }
    msg
}
