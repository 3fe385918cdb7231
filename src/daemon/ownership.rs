//! The ownership record: which instances this autoscaler created, per group.
//! Only these are ever destroyed. Written atomically (temp file, fsync, rename) so a
//! crash leaves the old or the new record, never half of one.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Why the record could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a valid state file: {message}")]
    Parse { path: PathBuf, message: String },
}

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
        let o: Self = serde_json::from_str(&text).map_err(|e| StateError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        if o.version != VERSION {
            return Err(StateError::Parse {
                path: path.to_owned(),
                message: format!("version {} (this build reads {VERSION})", o.version),
            });
        }
        Ok(o)
    }

    /// Write the record atomically.
    pub fn save(&self, path: &Path) -> Result<(), StateError> {
        let io = |source| StateError::Io {
            path: path.to_owned(),
            source,
        };
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let tmp = dir.join(format!(
            ".{}.tmp",
            path.file_name().and_then(|n| n.to_str()).unwrap_or("state")
        ));
        let mut f = std::fs::File::create(&tmp).map_err(io)?;
        let text = serde_json::to_string_pretty(self).unwrap_or_default();
        f.write_all(text.as_bytes()).map_err(io)?;
        f.write_all(b"\n").map_err(io)?;
        f.sync_all().map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)?;
        // The rename is durable only once the directory is synced.
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
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
