//! Subcommand implementations; `src/main.rs` only parses arguments and calls these.
//! Each returns the process exit code, or an error whose chain is printed.

pub mod completions;
pub mod decode;
pub mod demo;
pub mod history;
pub mod info;
pub mod notify_test;
pub mod replay;
pub mod run;
pub mod simulate;
pub mod validate;
