//! TLS client
