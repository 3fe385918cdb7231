//! What a container costs: its price by size, and the grows a cost ceiling forbids.

use super::{Size, Usage, Vertical};
use crate::core::why::WhyNot;

/// Hourly price of a container, in millionths of the operator's currency unit
/// (integers keep policies `Eq`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pricing {
    /// Flat, per container (`instance_cost_per_hour`).
    pub instance_micros: u64,
    /// Per core (`core_cost_per_hour`).
    pub core_micros: u64,
    /// Per GiB of memory (`gib_cost_per_hour`).
    pub gib_micros: u64,
    /// Ceiling on the container and its clones together (`max_cost_per_hour`).
    pub max_micros: Option<u64>,
}

impl Pricing {
    /// Whether the container is priced by its size (cores or memory).
    pub fn by_size(&self) -> bool {
        self.core_micros + self.gib_micros > 0
    }

    /// The hourly price of one container of size `s`.
    pub fn of(&self, s: Size) -> u64 {
        let mem = u64::from(s.memory_mib).saturating_mul(self.gib_micros) / 1024;
        self.instance_micros
            .saturating_add(u64::from(s.cores).saturating_mul(self.core_micros))
            .saturating_add(mem)
    }
}

impl Vertical {
    /// What this container may add to the hourly cost under the daemon's global
    /// ceiling; `None` without one. Set by the caller before each sample.
    pub fn set_cost_room(&mut self, room: Option<u64>) {
        self.cost_room = room;
    }

    /// The hourly cost of the container and its clones at the last usage seen.
    pub fn hourly_cost(&self) -> u64 {
        self.last.map_or(0, |u| {
            u64::from(u.clones + 1).saturating_mul(self.policy.pricing.of(u.size))
        })
    }

    /// A grow to `to` that would cross the container's or the global cost ceiling.
    /// Clones are priced like the container (they are copies of it).
    pub(super) fn cost_blocker(&self, u: &Usage, to: Size) -> Option<WhyNot> {
        let p = &self.policy.pricing;
        let n = u64::from(u.clones) + 1;
        let (before, after) = (n * p.of(u.size), n.saturating_mul(p.of(to)));
        if let Some(max) = p.max_micros
            && after > max
        {
            return Some(WhyNot::SizeCost {
                size: to,
                cost: after,
                max,
            });
        }
        match self.cost_room {
            Some(room) if after.saturating_sub(before) > room => Some(WhyNot::SizeGlobalCost {
                size: to,
                add: after - before,
                room,
            }),
            _ => None,
        }
    }
}
