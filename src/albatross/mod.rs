//! The albatross shell: TLS transport to albatross' endpoint.

pub mod tls;
pub mod actuator;
pub mod client;
pub mod stats;
