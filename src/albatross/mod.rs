//! The albatross shell: TLS transport to albatross' endpoint.

pub mod tls;
pub mod client;
