//! The sandbox (cargo feature `sandbox`, on by default): stand-ins for the world
//! the daemon talks to, for `demo`, the tests and the benchmarks. Not needed to run
//! the daemon: `cargo build --no-default-features` leaves it out.
//!
//! * a throw-away PKI ([`TestPki`]) making albatross-style CA, sub-CA and server
//!   certificates;
//! * an in-process albatross TLS endpoint ([`Endpoint`]) hosting simulated
//!   unikernels, behaving like a real albatross 2.7 (one stats subscriber per name,
//!   silent restarts, policies, CPU pinning, ...);
//! * [`proxmox`]: a fake Proxmox VE API shaped like the real one.

mod endpoint;
mod front;
mod hosted;
pub mod pki;
pub mod proxmox;
mod session;
mod vmmd;

pub use endpoint::{Endpoint, EndpointConfig, Handled, Outcome, StatsBody};
pub use front::{server_config, tls_front};
pub use hosted::{GroupFn, Hosted, LoadFn, default_group, small_unikernel};
pub use pki::{PkiFiles, SERVER_NAME, TestPki};
