//! The daemon: tokio wiring around the pure engine. Stats streams and actuators are
//! shells; [`runner::Runner`] is the one task that owns the engine.

pub mod albatross;
pub mod approvals;
pub mod decision_log;
pub mod lock;
pub mod notice;
pub mod ownership;
pub mod runner;
pub mod state_file;

pub use notice::{Notice, Notices};
pub use runner::{Actuator, Event, Runner, Settings};
