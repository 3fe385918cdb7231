//! Subcommand implementations; `src/main.rs` only parses arguments and calls these.
