//! The daemon: tokio wiring around the pure machines. [`driver::drive`] is the one
//! control loop; [`runner::Runner`] (the albatross engine) and the Proxmox loop are
//! the reconcilers it runs. Stats streams and actuators are shells.

pub mod albatross;
pub mod approvals;
pub mod cost;
pub mod decision_log;
pub mod driver;
pub mod forecast;
pub mod hooks;
pub mod ownership;
pub mod recorder;
pub mod runner;

pub use runner::{Actuator, Done, Event, Failed, Runner, RunnerSettings};

/// The Unix time in milliseconds: the wall-clock origin (t = 0) handed to the
/// engines at start, against which schedules are evaluated.
pub fn unix_ms_now() -> i64 {
    unix_ms(std::time::SystemTime::now())
}

/// `t` as Unix milliseconds (0 before 1970).
pub fn unix_ms(t: std::time::SystemTime) -> i64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
