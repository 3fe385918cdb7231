//! The actuator contract: what a shell makes of a machine's outputs ([`Shell`]:
//! plan an output into a job, carry the job out; implemented by the albatross
//! engine task and the Proxmox controller), what the albatross side does with a
//! decision ([`Actuator`]; also test doubles), and how an action ended. No I/O here.

use std::future::Future;

use crate::core::Decision;

/// The shell side of a machine, in two steps as kube-runtime's reconcile: what a
/// machine output asks for as a job, planned against what the shell last saw,
/// and the carrying out of a job. The albatross engine task plans each decision
/// that is not waiting for approval into itself and carries it out through its
/// [`Actuator`]; the Proxmox controller plans the LXC machine's outputs against
/// the last poll into clone, destroy and resize jobs.
pub trait Shell {
    /// What the machine says.
    type Output;
    /// Work for the actuator.
    type Job: Send + 'static;
    /// A job's end, fed back to the machine.
    type Done: Send + 'static;

    /// The job `out` asks for, if any.
    fn plan(&self, out: &Self::Output) -> Option<Self::Job>;

    /// Carry `job` out (off the driver's task: the future owns what it needs).
    fn execute(&self, job: Self::Job) -> impl Future<Output = Self::Done> + Send + 'static;
}

/// Carries out decisions (albatross: clone/destroy unikernels; Proxmox: containers).
pub trait Actuator: Send + Sync + 'static {
    /// Carry out `d`; `Ok` once the change is complete.
    fn execute(&self, d: Decision) -> impl Future<Output = Result<Done, Failed>> + Send;

    /// `d` ended with [`Failed::Unknown`]: look at what runs (albatross: reconcile).
    fn outcome_unknown(&self, _d: &Decision) {}

    /// The address of instance `vm`, if known (health checks, hooks).
    fn address(&self, _vm: &crate::name::Name) -> Option<std::net::IpAddr> {
        None
    }

    /// Instance `vm` is gone and announced so: its address is not needed any more.
    fn forget_address(&self, _vm: &crate::name::Name) {}
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
