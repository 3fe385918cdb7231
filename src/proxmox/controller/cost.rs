//! The global cost ceiling on the Proxmox side: the ceiling and the other loop's
//! cost are inputs of the LXC machine, which keeps the room each container has.

use super::{Controller, lxc};
use crate::core::{Input, Timestamp};

impl Controller {
    /// Cap the hourly cost of every container (and the external cost) together.
    pub fn with_cost_ceiling(mut self, micros: Option<u64>) -> Self {
        let ceiling = lxc::Input::Engine(Input::CostCeiling { micros });
        self.step(Timestamp::ZERO, ceiling);
        self
    }

    /// The hourly cost, in millionths, of what shares the ceiling but is scaled
    /// elsewhere (the albatross groups); given before each poll.
    pub fn set_external_cost(&mut self, now: Timestamp, micros: u64) {
        let known = self.machine.external_cost();
        if known != micros {
            self.step(now, lxc::Input::Engine(Input::ExternalCost { micros }));
        }
    }

    /// The hourly cost of every container and clone at the last poll, in millionths.
    pub fn hourly_cost(&self) -> u64 {
        self.machine.hourly_cost()
    }
}
