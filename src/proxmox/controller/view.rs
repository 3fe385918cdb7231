//! The snapshot behind `GET /v1/containers`, rebuilt after every poll.

use super::Controller;
use crate::core::vertical::{CpuKnob, Vertical};
use crate::core::{Timestamp, WhyNot};
use crate::proxmox::view::{ContainerStatus, Containers, SharedView, VerticalStatus};

impl Controller {
    /// Publish a snapshot of every container into `view` after each poll.
    pub fn with_view(mut self, view: SharedView) -> Self {
        self.view = Some(view);
        self
    }

    /// Send every engine output to `tx` (the API and metrics follow it).
    pub fn with_outputs(mut self, tx: tokio::sync::broadcast::Sender<crate::core::Output>) -> Self {
        self.outputs = Some(tx);
        self
    }

    /// Rebuild the snapshot from the poll's rows (only with a view: the API's).
    pub(super) fn publish(&self, now: Timestamp) {
        let Some(view) = &self.view else { return };
        let groups = self.machine.engine().status(now);
        let containers = self
            .machine
            .containers()
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let spec = c.spec();
                let row = self.rows.get(&spec.vmid);
                let running = row.is_some_and(|r| r.running() && r.template != Some(1));
                // What `decide` saw this poll (a running container), not a recomputation.
                let usage = c.seen().filter(|_| running);
                let size = c.seen().map(|u| u.size).or(c.known());
                let name = spec.name.to_string();
                let priced = spec.vertical.pricing.by_size()
                    || spec.vertical.pricing.instance_micros > 0
                    || spec.policy.instance_cost_micros > 0;
                ContainerStatus {
                    vmid: spec.vmid,
                    mode: spec.mode.as_str(),
                    state: match row {
                        None => "missing",
                        Some(r) if r.template == Some(1) => "template",
                        Some(r) if r.running() => "running",
                        Some(_) => "stopped",
                    },
                    node: row.map(|r| r.node.clone()),
                    cores: size.map(|s| s.cores),
                    cpulimit: size
                        .filter(|s| s.cpulimit_centi > 0)
                        .map(|s| f64::from(s.cpulimit_centi) / 100.0),
                    memory_mib: size.map(|s| s.memory_mib),
                    cpu_percent: usage.map(|u| f64::from(u.cpu_bp) / 100.0),
                    memory_used_mib: usage.map(|u| u.mem_used_mib),
                    cost_per_hour: priced.then(|| self.machine.own_cost(i) as f64 / 1e6),
                    vertical: c.vertical().map(|v| vertical_status(v, now, c.why_not())),
                    horizontal: groups.group(&name).cloned(),
                    name,
                }
            })
            .collect();
        let snapshot = Containers {
            t_ms: now.as_millis(),
            polled_at: crate::history::query::rfc3339(crate::daemon::unix_ms_now()),
            containers,
        };
        *view.lock().unwrap_or_else(|e| e.into_inner()) = Some(snapshot);
    }
}

fn vertical_status(v: &Vertical, now: Timestamp, why_not: Option<&WhyNot>) -> VerticalStatus {
    let p = v.policy();
    let [cpu_min, cpu_max, memory_min_mib, memory_max_mib] = v.limits();
    let (cpu_knob, per) = match p.knob {
        CpuKnob::Cores => ("cores", 1.0),
        CpuKnob::Cpulimit => ("cpulimit", 100.0),
    };
    VerticalStatus {
        cpu_knob,
        cpu_min: f64::from(cpu_min) / per,
        cpu_max: f64::from(cpu_max) / per,
        memory_min_mib,
        memory_max_mib,
        active_windows: v.active_windows().map(str::to_string).collect(),
        budget_left: v.budget_left(now),
        max_actions_per_hour: p.max_actions_per_hour,
        why_not: why_not.map(WhyNot::to_string),
    }
}
