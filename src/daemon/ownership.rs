//! The ownership record: which instances this autoscaler created, per group.
//! Only these are ever destroyed. Written atomically (see `state_file`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::state_file;
pub use super::state_file::StateError;
use crate::core::{Action, ActionId, Decision};

/// Group name → names of the instances created for it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ownership {
    version: u32,
    owned: BTreeMap<String, BTreeSet<String>>,
}

const VERSION: u32 = 1;

impl Ownership {
    /// Read the record; a missing file is an empty record (first start).
    pub fn load(path: &Path) -> Result<Self, StateError> {
        let o = state_file::load(path, VERSION, |o: &Self| o.version)?;
        Ok(o.unwrap_or(Self {
            version: VERSION,
            ..Self::default()
        }))
    }

    /// Write the record atomically.
    pub fn save(&self, path: &Path) -> Result<(), StateError> {
        state_file::save(self, path)
    }

    /// Record that `instance` belongs to `group`.
    pub fn add(&mut self, group: &str, instance: &str) -> bool {
        self.version = VERSION;
        self.owned
            .entry(group.to_string())
            .or_default()
            .insert(instance.to_string())
    }

    /// Forget `instance`.
    pub fn remove(&mut self, group: &str, instance: &str) -> bool {
        let Some(set) = self.owned.get_mut(group) else {
            return false;
        };
        let removed = set.remove(instance);
        if set.is_empty() {
            self.owned.remove(group);
        }
        removed
    }

    /// The instances owned by `group`.
    pub fn owned(&self, group: &str) -> impl Iterator<Item = &str> {
        self.owned
            .get(group)
            .into_iter()
            .flatten()
            .map(String::as_str)
    }

    /// Whether `instance` is owned by `group`.
    pub fn owns(&self, group: &str, instance: &str) -> bool {
        self.owned.get(group).is_some_and(|s| s.contains(instance))
    }
}

/// The record and the actions in flight on it, kept pure so that a property test
/// can drive it with the engine (tests/ownership_props.rs). The rule: a name has at
/// most one action in flight, and the record changes only through that action.
#[derive(Debug, Clone, Default)]
pub struct Keeper {
    pub record: Ownership,
    /// Instance → (group, action id) of the action in flight on it.
    busy: HashMap<String, (String, ActionId)>,
}

/// What [`Keeper::reconcile`] found for one group.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Reconciled {
    /// Owned clones that run: adopt them.
    pub adopt: Vec<String>,
    /// Owned clones that no longer run: forgotten.
    pub forgot: Vec<String>,
}

impl Keeper {
    pub fn new(record: Ownership) -> Self {
        Self {
            record,
            busy: HashMap::new(),
        }
    }

    /// An action starts. `Err` names the action already in flight on the same
    /// instance (the new one must not run); `Ok(true)` if the record changed (a
    /// create is recorded before it is sent, so a crash leaves an owned name that
    /// reconciliation cleans up, not an orphan).
    pub fn begin(&mut self, d: &Decision) -> Result<bool, String> {
        let (group, instance) = (d.group.to_string(), d.instance.to_string());
        if let Some((g, id)) = self.busy.get(&instance) {
            return Err(format!(
                "an earlier action (group {g}, id {id}) on {instance} is still in flight"
            ));
        }
        let changed = match d.action {
            Action::Promote => return Ok(self.record.remove(&group, &instance)),
            Action::ScaleUp => self.record.add(&group, &instance),
            _ => false,
        };
        self.busy.insert(instance, (group, d.id));
        Ok(changed)
    }

    /// The action `d` ended; `true` if the record changed. Only the action that is
    /// in flight on the name may change its record entry.
    pub fn finish(&mut self, d: &Decision, ok: bool) -> bool {
        let (group, instance) = (d.group.to_string(), d.instance.to_string());
        if self.busy.get(&instance) != Some(&(group.clone(), d.id)) {
            return false;
        }
        self.busy.remove(&instance);
        let gone = matches!(
            (ok, d.action),
            (true, Action::ScaleDown | Action::CloneLost) | (false, Action::ScaleUp)
        );
        gone && self.record.remove(&group, &instance)
    }

    /// Whether an action is in flight on `instance`.
    pub fn is_busy(&self, instance: &str) -> bool {
        self.busy.contains_key(instance)
    }

    /// Compare the record of `group` with what runs: owned and running → adopt;
    /// owned, not running and not busy → forgotten (a create in flight is not
    /// listed yet, a destroy in flight settles itself).
    pub fn reconcile(&mut self, group: &str, running: &[String]) -> Reconciled {
        let mut r = Reconciled::default();
        let owned: Vec<String> = self.record.owned(group).map(str::to_string).collect();
        for name in owned {
            if running.contains(&name) {
                r.adopt.push(name);
            } else if !self.busy.contains_key(&name) {
                self.record.remove(group, &name);
                r.forgot.push(name);
            }
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_atomically_and_rejects_garbage() {
        let dir = std::env::temp_dir().join(format!("aa-own-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("state.json");
        let _ = std::fs::remove_file(&p);
        let mut o = Ownership::load(&p).unwrap();
        assert!(o.add("alice:web", "alice:web-clone-1"));
        o.save(&p).unwrap();
        let back = Ownership::load(&p).unwrap();
        assert!(back.owns("alice:web", "alice:web-clone-1"));
        assert_eq!(back, o);
        o.remove("alice:web", "alice:web-clone-1");
        assert_eq!(o.owned("alice:web").count(), 0);
        std::fs::write(&p, "{not json").unwrap();
        let err = Ownership::load(&p).unwrap_err().to_string();
        assert!(
            err.contains("state.json") && err.contains("not a valid state file"),
            "{err}"
        );
    }
}
