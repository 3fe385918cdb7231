//! # albatross-autoscale
//!
//! Autoscales MirageOS unikernels run by [albatross](https://github.com/robur-coop/albatross)
//! and Proxmox LXC containers with one decision engine.
//!
//! ## Architecture
//!
//! Two data flows, one engine. albatross:
//!
//! ```text
//! TLS socket → frame → message → Sample → engine input → Decision → actuator → TLS command
//! albatross/   wire/   wire/     albatross/ daemon/runner  core/     albatross/actuator
//!   (tls, client: one command per connection; stats: the subscription stream)
//! ```
//!
//! Proxmox (LXC containers):
//!
//! ```text
//! HTTPS poll → resources → lxc::Poll → LXC machine (gauge → counter → engine, vertical) → Job → HTTPS
//! proxmox/client  proxmox/controller   core/lxc                                         proxmox/actuator
//! ```
//!
//! Both machines implement [`core::Machine`] (`step(now, input, out)`,
//! `next_deadline()`), and one driver ([`daemon::driver::drive`]) runs both shells
//! ([`daemon::driver::Reconciler`]): it waits for an event, a job's end or the
//! machine's deadline, feeds it in and starts the jobs that come out.
//!
//! * [`core`]: the sans-IO machines in the style of quinn-proto and str0m: no tokio,
//!   no clock, no I/O. [`core::Engine::step`] takes `(now, input)` and appends
//!   outputs; `next_deadline()` says when to tick. Every change is an [`core::Input`]
//!   (samples, results, reloads, costs, operator commands, approvals), so a run
//!   replays from its inputs ([`daemon::recorder`]). [`core::lxc`] is the LXC
//!   machine (vertical and horizontal, their coupling, the gauge → counter
//!   conversion); [`core::gate`] holds what waits for approval, with its expiry as a
//!   deadline. Reasons and why-nots are typed ([`core::Reason`], [`core::WhyNot`]);
//!   [`core::status`] is the read model; [`core::backoff`] the one backoff.
//! * [`wire`]: the albatross codec (framing, DER); its ASN.1 types stay private.
//! * [`albatross`]: the albatross shell: TLS, typed commands, the stats stream, the
//!   actuator, the policy check. It never imports `daemon`.
//! * [`proxmox`]: the Proxmox shell: client, controller (polls into the LXC
//!   machine, its outputs into jobs), actuator, view.
//! * [`actuate`]: the actuator contract ([`actuate::Actuator`], how an action ended).
//! * [`daemon`]: the one driver and its clock ([`daemon::driver`]), the albatross
//!   engine task ([`daemon::runner`]: decision log, ownership, dry-run), the
//!   endpoint tasks, the flight recorder, the approval book and the cost ledger
//!   shared by both loops.
//! * [`state`]: state files written atomically and the one-daemon lock.
//! * [`notify`]: notices (the bus) and their delivery to webhooks and email.
//! * [`history`]: samples and decisions in SQLite, read back for export and the API.
//! * [`http`]: the operations API and its Prometheus metrics.
//! * [`config`]: the TOML file into policies; [`cert`]: certificates and chains;
//!   [`name`]: albatross names; [`jsonl`]: the JSON Lines of the decision log.
//! * [`sim`]: drives the same machines for `replay`, `simulate` and the tests.
//! * [`service`]: the whole daemon behind one function ([`service::Service::start`]):
//!   both loops, history, API and notifications on one bus; `run`, `demo` and the
//!   tests start it, SIGHUP reloads it.
//! * [`cli`]: the subcommands (`src/main.rs` only parses arguments).
//! * `sandbox` (feature `sandbox`, default): the test PKI, the embedded albatross
//!   endpoint and the fake Proxmox API, for `demo`, tests and benchmarks.

pub mod actuate;
pub mod albatross;
pub mod cert;
pub mod cli;
pub mod config;
pub mod core;
pub mod daemon;
pub mod forecast;
pub mod history;
pub mod http;
pub mod jsonl;
pub mod name;
pub mod notify;
pub mod proxmox;
#[cfg(feature = "sandbox")]
pub mod sandbox;
pub mod service;
pub mod sim;
pub mod state;
pub mod wire;
