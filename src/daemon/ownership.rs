//! The ownership record: which instances this autoscaler created, per group.
//! Only these are ever destroyed. Written atomically (see `state_file`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::state_file;
pub use super::state_file::StateError;

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
