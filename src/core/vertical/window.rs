//! Schedule windows of a container: the bounds in force, and the resize that brings
//! the size into them.

use super::{CpuKnob, Direction, Size, Usage, Vertical};
use crate::core::schedule::Limit;

/// Effective bounds: the policy's, or a schedule's while a window is in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Bounds {
    pub(super) cpu_min: Limit,
    pub(super) cpu_max: Limit,
    pub(super) mem_min: Limit,
    pub(super) mem_max: Limit,
}

impl Vertical {
    pub(super) fn bounds(&self) -> Bounds {
        let p = &self.policy;
        let at = |value| Limit { value, by: None };
        let (mut cpu_min, mut cpu_max) = (at(p.cpu_min), at(p.cpu_max));
        let (mut mem_min, mut mem_max) = (at(p.memory_min_mib), at(p.memory_max_mib));
        if !self.sched.active.is_empty() {
            let s = &p.schedule;
            let pair = |v: Option<(u32, u32)>| (v.map(|v| v.0), v.map(|v| v.1));
            if p.knob == CpuKnob::Cores {
                (cpu_min, cpu_max) =
                    s.bounds(&self.sched.active, |w| pair(w.cores), p.cpu_min, p.cpu_max);
            }
            (mem_min, mem_max) = s.bounds(
                &self.sched.active,
                |w| pair(w.memory_mib),
                p.memory_min_mib,
                p.memory_max_mib,
            );
        }
        Bounds {
            cpu_min,
            cpu_max,
            mem_min,
            mem_max,
        }
    }

    /// A window's bounds the size is outside of: the size that fits them (memory
    /// growth within host admission), which way, and why. Growing first.
    pub(super) fn want_window(&self, u: &Usage) -> Option<(Direction, Size, String)> {
        let (p, b) = (&self.policy, self.bounds());
        let name = |l: Limit| l.by.map(|i| p.schedule.name(i).to_string());
        let cur = self.knob_value(u.size);
        let mem = u.size.memory_mib;
        let room = u
            .node_free_mib
            .map_or(0, |f| f.saturating_sub(p.host_memory_reserve_mib));
        let up_mem = b.mem_min.value.min(mem.saturating_add(room));
        let (dir, to, limits) = if (cur < b.cpu_min.value && name(b.cpu_min).is_some())
            || (mem < up_mem && name(b.mem_min).is_some())
        {
            let mut to = u.size;
            if name(b.cpu_min).is_some() && cur < b.cpu_min.value {
                to = self.with_knob(to, b.cpu_min.value);
            }
            if name(b.mem_min).is_some() && mem < up_mem {
                to.memory_mib = up_mem;
            }
            (Direction::Up, to, [b.cpu_min, b.mem_min])
        } else if (cur > b.cpu_max.value && name(b.cpu_max).is_some())
            || (mem > b.mem_max.value && name(b.mem_max).is_some())
        {
            let mut to = u.size;
            if name(b.cpu_max).is_some() && cur > b.cpu_max.value {
                to = self.with_knob(to, b.cpu_max.value);
            }
            // Never below usage + margin.
            let floor = u.mem_used_mib.saturating_add(p.memory_margin_mib);
            let down_mem = b.mem_max.value.max(floor);
            if name(b.mem_max).is_some() && mem > down_mem {
                to.memory_mib = down_mem;
            }
            if to == u.size {
                return None;
            }
            (Direction::Down, to, [b.cpu_max, b.mem_max])
        } else {
            return None;
        };
        let mut names: Vec<String> = limits.into_iter().filter_map(name).collect();
        names.dedup();
        let reason = format!(
            "schedule '{}': cores {}..={}, memory {}..={} MiB",
            names.join("', '"),
            b.cpu_min.value,
            b.cpu_max.value,
            b.mem_min.value,
            b.mem_max.value
        );
        Some((dir, to, reason))
    }
}
