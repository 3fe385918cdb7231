//! The global cost ceiling on the Proxmox side: what the containers cost, and what
//! the ceiling leaves one container.

use super::Controller;
use crate::config::proxmox::Mode;
use crate::core::vertical::Vertical;

impl Controller {
    /// Cap the hourly cost of every container (and `set_external_cost`) together.
    pub fn with_cost_ceiling(mut self, micros: Option<u64>) -> Self {
        self.cost_ceiling = micros;
        let ceiling = crate::core::Input::CostCeiling { micros };
        let t = crate::core::Timestamp::ZERO;
        self.engine.step(t, ceiling, &mut Vec::new());
        self
    }

    /// The hourly cost, in millionths, of what shares the ceiling but is scaled
    /// elsewhere (the albatross groups); read before each cycle.
    pub fn set_external_cost(&mut self, micros: u64) {
        self.external_cost = micros;
    }

    /// The hourly cost of every container and clone at the last poll, in millionths.
    pub fn hourly_cost(&self) -> u64 {
        self.engine.hourly_cost() + self.vertical_only_cost()
    }

    /// Containers that only resize are not in the horizontal engine.
    pub(super) fn vertical_only_cost(&self) -> u64 {
        self.containers
            .iter()
            .filter(|c| c.lxc.mode == Mode::Vertical)
            .filter_map(|c| c.vertical.as_ref().map(Vertical::hourly_cost))
            .sum()
    }

    /// The hourly cost of container `i` and its clones: its vertical machine's for
    /// a resize-only container, else its horizontal group's.
    pub(super) fn own_cost(&self, i: usize) -> u64 {
        let c = &self.containers[i];
        if c.lxc.mode == Mode::Vertical {
            c.vertical.as_ref().map_or(0, Vertical::hourly_cost)
        } else {
            self.engine
                .groups()
                .iter()
                .find(|g| **g.group() == c.lxc.name)
                .map_or(0, |g| g.hourly_cost())
        }
    }

    /// What container `i` may add under the global ceiling.
    pub(super) fn cost_room(&self, i: usize) -> Option<u64> {
        let max = self.cost_ceiling?;
        let own = self.own_cost(i);
        let others = (self.external_cost + self.hourly_cost()).saturating_sub(own);
        Some(max.saturating_sub(others).saturating_sub(own))
    }
}
