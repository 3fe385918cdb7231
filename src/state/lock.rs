//! One daemon per state directory: an exclusive `flock(2)` on `<state_file>.lock`,
//! taken at start and held for the daemon's life. The file holds the holder's pid
//! as text, so a second daemon can say who is in the way.
//!
//! The kernel releases the lock when the holder's descriptor is closed, including
//! when the process crashes: a lock file left behind by a dead daemon does not block
//! a restart (its stale pid is simply overwritten). The file is never deleted, as
//! deleting a lock file races with a starting daemon that already opened it.
//! `flock` locks belong to the open file description, so two [`StateLock`]s on one
//! path conflict even within one process.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Why the lock was not taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "{path}: held by another albatross-autoscale daemon (pid {pid}), which is running on the same files; stop it first (one daemon per state directory)"
    )]
    Held { path: PathBuf, pid: String },
    #[error("{path}: cannot take the state lock: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// The held lock; released when dropped (or when the process ends).
#[derive(Debug)]
pub struct StateLock {
    path: PathBuf,
    _file: File,
}

impl StateLock {
    /// The lock file of `state_file`: the same path with `.lock` appended.
    pub fn path_for(state_file: &Path) -> PathBuf {
        let mut p = state_file.as_os_str().to_owned();
        p.push(".lock");
        PathBuf::from(p)
    }

    /// Take the lock of `state_file` without waiting, and write our pid into it.
    pub fn acquire(state_file: &Path) -> Result<Self, LockError> {
        let path = Self::path_for(state_file);
        let io = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .open(&path)
            .map_err(io)?;
        // SAFETY: flock on a descriptor we own, for the duration of the call.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::WouldBlock {
                let mut text = String::new();
                // The holder may not have written its pid yet.
                let _ = file.read_to_string(&mut text);
                let pid = match text.trim() {
                    "" => "unknown".to_string(),
                    t => t.to_string(),
                };
                return Err(LockError::Held { path, pid });
            }
            return Err(io(err));
        }
        // Ours now: replace whatever pid a previous (dead) holder left.
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        writeln!(file, "{}", std::process::id()).map_err(io)?;
        file.flush().map_err(io)?;
        Ok(Self { path, _file: file })
    }

    /// The lock file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}
