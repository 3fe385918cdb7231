//! Test helpers: a throw-away PKI and an in-process albatross TLS endpoint hosting
//! simulated unikernels. Used by integration tests and the `demo` command.

mod endpoint;
mod front;
mod hosted;
pub mod pki;
mod session;
mod vmmd;

pub use endpoint::{Endpoint, EndpointConfig, Handled, Outcome, StatsBody};
pub use front::{server_config, tls_front};
pub use hosted::{GroupFn, Hosted, LoadFn, default_group, small_unikernel};
pub use pki::{PkiFiles, SERVER_NAME, TestPki};
