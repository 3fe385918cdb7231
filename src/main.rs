//! The `albatross-autoscale` command: argument parsing only; the work lives in
//! `albatross_autoscale::cli`.

use std::process::ExitCode;

use albatross_autoscale::cli;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "albatross-autoscale", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check a configuration file and report every problem with its key.
    Validate(cli::validate::Args),
    /// Drive the engine with recorded statistics and print JSON Lines.
    Replay(cli::replay::Args),
    /// Decode albatross frames, DER messages or certificates to JSON.
    Decode(cli::decode::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Validate(args) => cli::validate::run(args),
        Command::Replay(args) => cli::replay::run(args),
        Command::Decode(args) => cli::decode::run(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
