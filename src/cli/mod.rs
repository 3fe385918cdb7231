//! Subcommand implementations; `src/main.rs` only parses arguments and calls these.
//! Each returns the process exit code, or an error whose chain is printed.

pub mod check;
pub mod completions;
pub mod decode;
#[cfg(feature = "sandbox")]
pub mod demo;
pub mod history;
pub mod info;
pub mod notify_test;
pub mod pick;
pub mod replay;
pub mod run;
pub mod simulate;
pub mod tune;
pub mod validate;

use anyhow::Context;

/// The reader of our standard output went away (`| head`): the command stops early
/// and exits 0. Only writes to stdout map to it, so a connection closed anywhere
/// else is still an error.
#[derive(Debug, thiserror::Error)]
#[error("standard output closed")]
pub struct StdoutClosed;

/// The outcome of writing to stdout: a closed pipe becomes [`StdoutClosed`].
pub fn stdout_result(r: std::io::Result<()>) -> anyhow::Result<()> {
    match r {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(StdoutClosed.into()),
        r => r.context("writing to stdout"),
    }
}
