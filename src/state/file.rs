//! Small JSON state files written atomically (temp file, fsync, rename, fsync of the
//! directory), so a crash leaves the old or the new content, never half of one.
//! Shared by the albatross and Proxmox ownership records.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Why a state file could not be read or written.
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

/// Read `path`; `Ok(None)` if it does not exist (first start). `version_of` gives
/// the file's format version, which must equal `version`.
pub fn load<T: DeserializeOwned>(
    path: &Path,
    version: u32,
    version_of: impl Fn(&T) -> u32,
) -> Result<Option<T>, StateError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(StateError::Io {
                path: path.to_owned(),
                source,
            });
        }
    };
    let parse = |message: String| StateError::Parse {
        path: path.to_owned(),
        message,
    };
    let v: T = serde_json::from_str(&text).map_err(|e| parse(e.to_string()))?;
    let found = version_of(&v);
    if found != version {
        return Err(parse(format!(
            "version {found} (this build reads {version})"
        )));
    }
    Ok(Some(v))
}

/// Write `value` to `path` atomically.
pub fn save<T: Serialize>(value: &T, path: &Path) -> Result<(), StateError> {
    let mut text = serde_json::to_string_pretty(value).map_err(|e| StateError::Io {
        path: path.to_owned(),
        source: std::io::Error::other(e),
    })?;
    text.push('\n');
    write_atomic(path, text.as_bytes())
}

/// Write `bytes` to `path` atomically: a temporary file next to it, fsync, rename,
/// fsync of the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StateError> {
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
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)?;
    // The rename is durable only once the directory is synced.
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}
