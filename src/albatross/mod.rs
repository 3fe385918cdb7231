//! The albatross shell: TLS transport to albatross' endpoint.

pub mod actuator;
pub mod address;
pub mod client;
pub mod policy;
pub mod stats;
pub mod tls;
