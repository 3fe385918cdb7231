//! The operations API (axum): health, status, decisions, operator commands,
//! metrics. Off unless `[http] listen` is set.

pub mod status;

/// The git revision the binary was built from (build.rs; "unknown" without git).
pub const GIT_REVISION: &str = env!("AA_GIT_REVISION");
