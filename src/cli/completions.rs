//! `completions SHELL` and `man`: generated from the clap definition, so they never
//! drift from the real arguments.

use std::io::Write;
use std::process::ExitCode;

/// Arguments of `completions`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The shell to generate completions for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// Print completions for `args.shell` of the command `cmd` to stdout.
pub fn completions(args: Args, mut cmd: clap::Command) -> anyhow::Result<ExitCode> {
    let name = cmd.get_name().to_string();
    // Into a buffer first: clap_complete panics on a write error (`| head`).
    let mut out = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, name, &mut out);
    print(&out)
}

/// Print the man page (roff) of `cmd` to stdout.
pub fn man(cmd: clap::Command) -> anyhow::Result<ExitCode> {
    let mut out = Vec::new();
    clap_mangen::Man::new(cmd).render(&mut out)?;
    print(&out)
}

fn print(out: &[u8]) -> anyhow::Result<ExitCode> {
    super::stdout_result(std::io::stdout().write_all(out))?;
    Ok(ExitCode::SUCCESS)
}
