//! The albatross shell: TLS transport to albatross' endpoint.

pub mod tls;
