//! # albatross-autoscale
//!
//! Autoscales MirageOS unikernels run by [albatross](https://github.com/robur-coop/albatross)
//! and Proxmox LXC containers with one decision engine.
//!
//! ## Architecture
//!
//! Data flows one way:
//!
//! ```text
//! socket → frame → message → sample → engine → decision → actuator
//!          wire/   wire/     sim/ daemon  core/    core/      albatross/ proxmox/
//! ```
//!
//! * [`core`] is a sans-IO state machine in the style of quinn-proto and str0m: no
//!   tokio, no clock, no I/O. [`core::Cluster::handle`] takes `(self, now, input)` and
//!   returns the next state plus decisions; [`core::Cluster::next_deadline`] says when
//!   to call it again if nothing arrives. Time is always a parameter.
//! * [`wire`] is the albatross codec (framing, DER decode/encode). Its ASN.1 types stay
//!   private; plain domain types cross its edge.
//! * [`config`] parses and validates the TOML file into the engine's policy.
//! * [`sim`] drives the core with recorded or synthetic load; `replay`, `simulate` and
//!   the tests share it.
//! * [`cli`] holds the subcommands; `src/main.rs` only parses arguments and prints
//!   the error, if any.
//!
//! Shells that do I/O (`albatross/`, `proxmox/`, `daemon/`) turn bytes into core
//! inputs and decisions into calls; they hold no policy of their own. Beside the
//! main flow, off the hot path:
//!
//! * `daemon/` also holds what spans both loops: the approval book, the notice bus,
//!   the cost ledger of the global ceiling, the state lock.
//! * [`notify`] delivers notices to webhooks and email from bounded queues.
//! * [`history`] stores samples and decisions in SQLite (one writer thread) and
//!   reads them back for `history export` and the API's history and forecast.
//! * [`http`] is the operations API; [`metrics`] its Prometheus registry.

pub mod actuate;
pub mod albatross;
pub mod cert;
pub mod cli;
pub mod config;
pub mod core;
pub mod daemon;
pub mod history;
pub mod http;
pub mod jsonl;
pub mod name;
pub mod notify;
pub mod proxmox;
#[cfg(feature = "sandbox")]
pub mod sandbox;
pub mod sim;
pub mod state;
pub mod wire;
