//! The actuator contract: what a shell does with a decision, and how it ended.
//! Implemented by the albatross side (clone, destroy, re-create unikernels) and by
//! test doubles; the daemon's engine task drives it. No I/O here.

use std::future::Future;

use crate::core::Decision;

/// Carries out decisions (albatross: clone/destroy unikernels; Proxmox: containers).
pub trait Actuator: Send + Sync + 'static {
    /// Carry out `d`; `Ok` once the change is complete.
    fn execute(&self, d: Decision) -> impl Future<Output = Result<Done, Failed>> + Send;

    /// `d` ended with [`Failed::Unknown`]: look at what runs (albatross: reconcile).
    fn outcome_unknown(&self, _d: &Decision) {}
}

/// How an action ended well.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Done {
    /// As decided.
    Executed,
    /// A re-create found the primary running (albatross: `already running`): it is
    /// alive, nothing was created; its stream is resubscribed and reconciled.
    AlreadyRunning,
}

/// How an action failed: one line for the decision log, and whether waiting can help.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failed {
    /// Retried with backoff.
    Transient(String),
    /// Refused for a reason waiting cannot change (a policy limit, block devices):
    /// the group's scale-ups are held until something changes.
    Permanent(String),
    /// Sent but not answered: it may have happened. Retried with backoff; the
    /// ownership record keeps a create's name until a reconcile settles it.
    Unknown(String),
}

impl Failed {
    pub fn message(&self) -> &str {
        match self {
            Self::Transient(m) | Self::Permanent(m) | Self::Unknown(m) => m,
        }
    }
}

impl From<String> for Failed {
    fn from(m: String) -> Self {
        Self::Transient(m)
    }
}

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.message())
    }
}
