//! The ownership record: which instances this autoscaler created, per group.
//! Only these are ever destroyed. Written atomically (see `state_file`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::core::{Action, ActionId, Decision};
pub use crate::state::StateError;
use crate::state::file as state_file;

/// Group name → the instances created for it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, from = "RawOwnership")]
pub struct Ownership {
    version: u32,
    owned: BTreeMap<String, BTreeMap<String, Entry>>,
}

/// One owned instance.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// Unix ms when its create was decided: an instance of that name that started
    /// well before is not ours (see [`Keeper::reconcile`]). 0: unknown (version 1).
    pub intent_ms: i64,
    /// albatross answered the create (or it was adopted): certainly ours.
    pub confirmed: bool,
}

/// Version 1 kept a set of names per group; version 2 an [`Entry`] per name.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOwnership {
    version: u32,
    owned: BTreeMap<String, RawGroup>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawGroup {
    V2(BTreeMap<String, Entry>),
    V1(BTreeSet<String>),
}

impl From<RawOwnership> for Ownership {
    fn from(r: RawOwnership) -> Self {
        let owned = r
            .owned
            .into_iter()
            .map(|(g, names)| {
                let names = match names {
                    RawGroup::V2(m) => m,
                    RawGroup::V1(set) => set
                        .into_iter()
                        .map(|n| {
                            let e = Entry {
                                intent_ms: 0,
                                confirmed: true,
                            };
                            (n, e)
                        })
                        .collect(),
                };
                (g, names)
            })
            .collect();
        Self {
            version: r.version,
            owned,
        }
    }
}

const VERSION: u32 = 2;

impl Ownership {
    /// Read the record (version 1 or 2); a missing file is an empty record.
    pub fn load(path: &Path) -> Result<Self, StateError> {
        // Version 1 is read as version 2 with every entry confirmed.
        let o = state_file::load(path, VERSION, |o: &Self| match o.version {
            1 => VERSION,
            v => v,
        })?;
        Ok(o.map_or(
            Self {
                version: VERSION,
                ..Self::default()
            },
            |o| Self {
                version: VERSION,
                ..o
            },
        ))
    }

    /// Write the record atomically.
    pub fn save(&self, path: &Path) -> Result<(), StateError> {
        state_file::save(self, path)
    }

    /// Record that `instance` belongs to `group` (confirmed: adopted, or created).
    pub fn add(&mut self, group: &str, instance: &str) -> bool {
        self.insert(
            group,
            instance,
            Entry {
                intent_ms: 0,
                confirmed: true,
            },
        )
    }

    fn insert(&mut self, group: &str, instance: &str, e: Entry) -> bool {
        self.version = VERSION;
        self.owned
            .entry(group.to_string())
            .or_default()
            .insert(instance.to_string(), e)
            .is_none()
    }

    /// Forget `instance`.
    pub fn remove(&mut self, group: &str, instance: &str) -> bool {
        let Some(set) = self.owned.get_mut(group) else {
            return false;
        };
        let removed = set.remove(instance).is_some();
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
            .map(|(n, _)| n.as_str())
    }

    /// Whether `instance` is owned by `group`.
    pub fn owns(&self, group: &str, instance: &str) -> bool {
        self.entry(group, instance).is_some()
    }

    /// The record of `instance`, if owned by `group`.
    pub fn entry(&self, group: &str, instance: &str) -> Option<Entry> {
        self.owned.get(group)?.get(instance).copied()
    }

    fn confirm(&mut self, group: &str, instance: &str) -> bool {
        match self.owned.get_mut(group).and_then(|g| g.get_mut(instance)) {
            Some(e) if !e.confirmed => {
                e.confirmed = true;
                true
            }
            _ => false,
        }
    }
}

/// How much earlier than the create's decision a same-named instance may have
/// started and still be ours (clock skew between this host and albatross').
pub const SKEW_MS: i64 = 5_000;

/// The record and the actions in flight on it, kept pure so that a property test
/// can drive it with the engine (tests/ownership_props.rs). The rule: a name has at
/// most one action in flight, and the record changes only through that action.
#[derive(Debug, Clone, Default)]
pub struct Keeper {
    pub record: Ownership,
    /// Instance → the action in flight on it.
    busy: HashMap<String, Claim>,
}

/// What [`Keeper::reconcile`] found for one group.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Reconciled {
    /// Owned clones that run: adopt them.
    pub adopt: Vec<String>,
    /// Owned clones that no longer run: forgotten.
    pub forgot: Vec<String>,
    /// Recorded but never confirmed, and running since before the create was
    /// decided: someone else's instance of that name (the daemon stopped mid-create).
    pub disowned: Vec<String>,
    /// The record changed (to be saved).
    pub changed: bool,
}

/// One instance of a `unikernel info` listing: its name and when it started (Unix ms).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub name: String,
    pub started_ms: Option<i64>,
}

/// The action in flight on a name.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Claim {
    group: String,
    id: ActionId,
    /// This action added the name to the record (a create of a name not owned before).
    added: bool,
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
    pub fn begin(&mut self, d: &Decision, now_ms: i64) -> Result<bool, String> {
        let (group, instance) = (d.group.to_string(), d.instance.to_string());
        if let Some(c) = self.busy.get(&instance) {
            return Err(format!(
                "an earlier action (group {}, id {}) on {instance} is still in flight",
                c.group, c.id
            ));
        }
        let changed = match d.action {
            Action::Promote => return Ok(self.record.remove(&group, &instance)),
            Action::ScaleUp => {
                let e = Entry {
                    intent_ms: now_ms,
                    confirmed: false,
                };
                !self.record.owns(&group, &instance) && self.record.insert(&group, &instance, e)
            }
            _ => false,
        };
        let claim = Claim {
            group,
            id: d.id,
            added: changed,
        };
        self.busy.insert(instance, claim);
        Ok(changed)
    }

    /// The action `d` ended; `true` if the record changed. Only the action that is
    /// in flight on the name may change its record entry.
    pub fn finish(&mut self, d: &Decision, ok: bool) -> bool {
        let (group, instance) = (d.group.to_string(), d.instance.to_string());
        let claim = match self.busy.get(&instance) {
            Some(c) if c.group == group && c.id == d.id => c.clone(),
            _ => return false,
        };
        self.busy.remove(&instance);
        // A failed create forgets only the entry it added: a name that was owned
        // before (an earlier clone still running under it) stays owned.
        match (ok, d.action) {
            (true, Action::ScaleDown | Action::CloneLost) => self.record.remove(&group, &instance),
            (false, Action::ScaleUp) if claim.added => self.record.remove(&group, &instance),
            (true, Action::ScaleUp) => self.record.confirm(&group, &instance),
            _ => false,
        }
    }

    /// The action `d` ended without an answer (it may have happened): its name
    /// is free for another action, the record stays as it is until a reconcile.
    pub fn release(&mut self, d: &Decision) -> bool {
        let instance = d.instance.to_string();
        if self.busy.get(&instance).is_some_and(|c| c.id == d.id) {
            self.busy.remove(&instance);
        }
        false
    }

    /// Whether an action is in flight on `instance`.
    pub fn is_busy(&self, instance: &str) -> bool {
        self.busy.contains_key(instance)
    }

    /// Compare the record of `group` with what runs: owned and running → adopt
    /// (and confirmed); owned, not running and not busy → forgotten (a create in
    /// flight is not listed yet, a destroy in flight settles itself); recorded,
    /// unconfirmed, not busy and running since before its create was decided →
    /// disowned (the daemon stopped mid-create of a name someone else holds).
    pub fn reconcile(&mut self, group: &str, running: &[Listed]) -> Reconciled {
        let mut r = Reconciled::default();
        let owned: Vec<(String, Entry)> = self
            .record
            .owned
            .get(group)
            .into_iter()
            .flatten()
            .map(|(n, e)| (n.clone(), *e))
            .collect();
        for (name, e) in owned {
            if self.busy.contains_key(&name) {
                continue;
            }
            match running.iter().find(|l| l.name == name) {
                Some(l)
                    if !e.confirmed && l.started_ms.is_some_and(|s| s + SKEW_MS < e.intent_ms) =>
                {
                    self.record.remove(group, &name);
                    r.disowned.push(name);
                }
                Some(_) => {
                    r.changed |= self.record.confirm(group, &name);
                    r.adopt.push(name);
                }
                None => {
                    self.record.remove(group, &name);
                    r.forgot.push(name);
                }
            }
        }
        r.changed |= !r.forgot.is_empty() || !r.disowned.is_empty();
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
        // Version 1 (a set of names per group) is read as confirmed entries.
        std::fs::write(
            &p,
            r#"{"version":1,"owned":{"alice:web":["alice:web-clone-2"]}}"#,
        )
        .unwrap();
        let v1 = Ownership::load(&p).unwrap();
        assert_eq!(
            v1.entry("alice:web", "alice:web-clone-2"),
            Some(Entry {
                intent_ms: 0,
                confirmed: true
            })
        );
        std::fs::write(&p, r#"{"version":3,"owned":{}}"#).unwrap();
        assert!(Ownership::load(&p).is_err(), "a newer format is refused");
        std::fs::write(&p, "{not json").unwrap();
        let err = Ownership::load(&p).unwrap_err().to_string();
        assert!(
            err.contains("state.json") && err.contains("not a valid state file"),
            "{err}"
        );
    }
}
