//! The Proxmox ownership record: per group, the clones this autoscaler created and
//! their vmid (known before the clone call, so a clone whose task timed out is still
//! found and counted). Written atomically like the albatross record; a separate file
//! so the two daemons never overwrite each other.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::state::file as state_file;
pub use crate::state::file::StateError;

/// Group → clone name → vmid (`None` while the id is not chosen yet).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloneState {
    version: u32,
    clones: BTreeMap<String, BTreeMap<String, Option<u32>>>,
}

const VERSION: u32 = 1;

impl CloneState {
    pub fn load(path: &Path) -> Result<Self, StateError> {
        let s = state_file::load(path, VERSION, |s: &Self| s.version)?;
        Ok(s.unwrap_or(Self {
            version: VERSION,
            ..Self::default()
        }))
    }

    /// Write atomically.
    pub fn save(&self, path: &Path) -> Result<(), StateError> {
        state_file::save(self, path)
    }

    pub fn set(&mut self, group: &str, name: &str, vmid: Option<u32>) {
        self.version = VERSION;
        self.clones
            .entry(group.to_string())
            .or_default()
            .insert(name.to_string(), vmid);
    }

    pub fn remove(&mut self, group: &str, name: &str) -> bool {
        let Some(m) = self.clones.get_mut(group) else {
            return false;
        };
        let r = m.remove(name).is_some();
        if m.is_empty() {
            self.clones.remove(group);
        }
        r
    }

    /// The clones of `group`: (name, vmid).
    pub fn clones(&self, group: &str) -> impl Iterator<Item = (&str, Option<u32>)> {
        self.clones
            .get(group)
            .into_iter()
            .flatten()
            .map(|(n, v)| (n.as_str(), *v))
    }

    pub fn vmid(&self, group: &str, name: &str) -> Option<u32> {
        self.clones.get(group)?.get(name).copied().flatten()
    }
}
