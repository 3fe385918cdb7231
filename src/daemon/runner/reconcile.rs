//! Reconcile: what `unikernel info` lists against the ownership record and the
//! engine's groups (adopt, forget, disown, foreign).

use std::sync::Arc;

use tokio::task::JoinSet;
use tokio::time::Instant;

use super::{Actuator, Finished, Runner};
use crate::core::Input;
use crate::daemon::ownership::Listed;
use crate::name::Name;

/// One endpoint's `unikernel info`, built once per listing and shared by the
/// events of all the groups on it (issue 18: a copy per group made the start-up
/// of 10 000 groups hold a million names at once).
#[derive(Debug, Default)]
pub struct Listing {
    pub running: Vec<Name>,
    pub listed: Vec<Listed>,
}

impl Listing {
    /// Names with when they started (Unix ms), if albatross says.
    pub fn new(running: Vec<(Name, Option<i64>)>) -> Self {
        let listed = running
            .iter()
            .map(|(n, started_ms)| Listed {
                name: n.to_string(),
                started_ms: *started_ms,
            })
            .collect();
        let running = running.into_iter().map(|(n, _)| n).collect();
        Self { running, listed }
    }
}

impl<A: Actuator> Runner<A> {
    pub(super) fn reconcile(
        &mut self,
        group: Name,
        listing: Arc<Listing>,
        in_flight: &mut JoinSet<Finished>,
    ) {
        let now = self.stamp(Instant::now());
        let g = group.to_string();
        let running = &listing.running;
        let found = self.keeper.reconcile(&g, &listing.listed);
        for name in &found.disowned {
            tracing::warn!(group = %g, instance = %name, "a create of this name was recorded but never confirmed, and an instance of that name ran before it was decided: not ours, never touched");
            if let Ok(vm) = Name::parse(name) {
                let input = Input::Foreign {
                    group: group.clone(),
                    vm,
                };
                self.step(now, input, in_flight);
            }
        }
        for name in &found.forgot {
            tracing::info!(group = %g, instance = %name, "forgetting an owned clone that no longer runs");
            if let Ok(vm) = Name::parse(name) {
                let input = Input::Gone {
                    group: group.clone(),
                    vm,
                };
                self.step(now, input, in_flight);
            }
        }
        if found.changed {
            self.save_ownership();
        }
        for name in found.adopt {
            let Some(vm) = running.iter().find(|r| r.to_string() == name) else {
                continue;
            };
            let known = self.engine.group(&group).is_some_and(|c| c.has_member(vm));
            if !known {
                tracing::info!(group = %g, instance = %name, "adopting an owned clone that still runs");
            }
            let input = Input::Adopt {
                group: group.clone(),
                vm: vm.clone(),
            };
            self.step(now, input, in_flight);
        }
        let Some(c) = self.engine.group(&group) else {
            return;
        };
        let foreign: Vec<Name> = running
            .iter()
            .filter(|r| c.matches_clone_pattern(r) && !c.has_member(r))
            .cloned()
            .collect();
        for vm in foreign {
            tracing::info!(group = %g, instance = %vm, "named like a clone but not ours: never touched");
            self.step(
                now,
                Input::Foreign {
                    group: group.clone(),
                    vm,
                },
                in_flight,
            );
        }
    }
}
