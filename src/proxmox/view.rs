//! The read model of the Proxmox side for `GET /v1/containers`: a plain snapshot of
//! every `[[lxc]]` container, rebuilt by the controller after each poll and read by
//! the API (the controller runs in its own task; a lock around a clone is enough).

use std::sync::{Arc, Mutex};

use serde::Serialize;

use crate::core::status::GroupStatus;

/// The latest snapshot, shared by the Proxmox loop (writer) and the API (reader).
pub type SharedView = Arc<Mutex<Option<Containers>>>;

/// Every configured container as of the last successful poll.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Containers {
    /// Controller time of the poll (ms since the loop started).
    pub t_ms: u64,
    /// Wall-clock time of the poll (RFC 3339).
    pub polled_at: String,
    pub containers: Vec<ContainerStatus>,
}

impl Containers {
    /// The container named `key` (its `name`, e.g. `lxc:ct101`) or with vmid `key`.
    pub fn find(&self, key: &str) -> Option<&ContainerStatus> {
        self.containers
            .iter()
            .find(|c| c.name == key || c.vmid.to_string() == key)
    }
}

/// One `[[lxc]]` container.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ContainerStatus {
    pub vmid: u32,
    pub name: String,
    /// `vertical`, `horizontal` or `vertical-then-horizontal` (as in the config).
    pub mode: &'static str,
    /// `running`, `stopped`, `template` or `missing` (not in `/cluster/resources`).
    pub state: &'static str,
    pub node: Option<String>,
    /// The size in force (as last read or set).
    pub cores: Option<u32>,
    /// CPUs; absent without a limit.
    pub cpulimit: Option<f64>,
    pub memory_mib: Option<u32>,
    /// CPU % of the effective allowance (`min(cores, cpulimit)`).
    pub cpu_percent: Option<f64>,
    pub memory_used_mib: Option<u32>,
    /// What the container and its clones cost per hour, when priced.
    pub cost_per_hour: Option<f64>,
    pub vertical: Option<VerticalStatus>,
    /// The horizontal group (clones), as `GET /v1/groups/{name}` shows groups.
    pub horizontal: Option<GroupStatus>,
}

/// The resizing side of a container.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct VerticalStatus {
    /// `cores` or `cpulimit`: the setting that carries the CPU allowance.
    pub cpu_knob: &'static str,
    /// Bounds in force of that setting (cores, or CPUs for cpulimit).
    pub cpu_min: f64,
    pub cpu_max: f64,
    pub memory_min_mib: u32,
    pub memory_max_mib: u32,
    /// Names of the schedule windows in force.
    pub active_windows: Vec<String>,
    pub budget_left: u32,
    pub max_actions_per_hour: u32,
    /// The last resize that was wanted and not made, and why (cleared by the next
    /// evaluation that is not blocked).
    pub why_not: Option<String>,
}
