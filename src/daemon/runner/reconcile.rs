//! Reconcile: what `unikernel info` lists against the ownership record and the
//! engine's groups (adopt, forget, disown, foreign).

use tokio::task::JoinSet;
use tokio::time::Instant;

use super::{Actuator, Finished, Runner};
use crate::core::Input;
use crate::daemon::ownership::Listed;
use crate::name::Name;

impl<A: Actuator> Runner<A> {
    pub(super) fn reconcile(
        &mut self,
        group: Name,
        running: Vec<(Name, Option<i64>)>,
        in_flight: &mut JoinSet<Finished>,
    ) {
        let now = self.stamp(Instant::now());
        let g = group.to_string();
        let listed: Vec<Listed> = running
            .iter()
            .map(|(n, started_ms)| Listed {
                name: n.to_string(),
                started_ms: *started_ms,
            })
            .collect();
        let running: Vec<Name> = running.into_iter().map(|(n, _)| n).collect();
        let found = self.keeper.reconcile(&g, &listed);
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
            let known = self
                .engine
                .groups()
                .iter()
                .any(|c| **c.group() == group && c.has_member(vm));
            if !known {
                tracing::info!(group = %g, instance = %name, "adopting an owned clone that still runs");
            }
            let input = Input::Adopt {
                group: group.clone(),
                vm: vm.clone(),
            };
            self.step(now, input, in_flight);
        }
        let Some(c) = self.engine.groups().iter().find(|c| **c.group() == group) else {
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
