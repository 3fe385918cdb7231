//! The Proxmox ownership record: per group, the clones this autoscaler created and
//! their vmid (known before the clone call, so a clone whose task timed out is still
//! found and counted). Written atomically like the albatross record; a separate file
//! so the two daemons never overwrite each other.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a valid Proxmox state file: {message}")]
    Parse { path: PathBuf, message: String },
}

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
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Self {
                    version: VERSION,
                    ..Self::default()
                });
            }
            Err(source) => {
                return Err(StateError::Io {
                    path: path.to_owned(),
                    source,
                });
            }
        };
        let s: Self = serde_json::from_str(&text).map_err(|e| StateError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        if s.version != VERSION {
            return Err(StateError::Parse {
                path: path.to_owned(),
                message: format!("version {} (this build reads {VERSION})", s.version),
            });
        }
        Ok(s)
    }

    /// Write atomically: temp file, fsync, rename.
    pub fn save(&self, path: &Path) -> Result<(), StateError> {
        let io = |source| StateError::Io {
            path: path.to_owned(),
            source,
        };
        let tmp = path.with_extension("tmp");
        let mut f = std::fs::File::create(&tmp).map_err(io)?;
        let text = serde_json::to_string_pretty(self).unwrap_or_default();
        f.write_all(text.as_bytes()).map_err(io)?;
        f.sync_all().map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)
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
