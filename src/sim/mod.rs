//! Drives the core with recorded or synthetic load. `replay`, `simulate` and the
//! tests share it; nothing here touches a socket or a clock.

pub mod baselines;
pub mod inputs;
pub mod metrics;
pub mod oracle;
pub mod par;
pub mod plot;
pub mod recording;
pub mod replay;
pub mod seasonal;
pub mod simulate;
pub mod trace;
pub mod tune;
