//! The one control loop. kube-runtime's `Controller` in miniature: a
//! [`Reconciler`] wraps one machine and its actuator (the albatross engine task, the
//! Proxmox loop), and [`drive`] runs any of them the same way: wait for an event,
//! a job's end or the machine's deadline (an approval's expiry included), feed it in, start
//! the jobs it says, and on shutdown drop what waits for approval and give the jobs
//! in flight a grace period. The clock is one [`Clock`] per machine.

use std::future::Future;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::core::Timestamp;

/// Monotonic machine time: milliseconds since the machine's t = 0.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    start: Instant,
    last: Timestamp,
}

impl Clock {
    pub fn new(start: Instant) -> Self {
        Self {
            start,
            last: Timestamp::ZERO,
        }
    }

    /// The machine time of `at`, never earlier than a time already given (channel
    /// delays can reorder arrivals by a hair; the core needs monotonic time).
    pub fn stamp(&mut self, at: Instant) -> Timestamp {
        let ms =
            u64::try_from(at.saturating_duration_since(self.start).as_millis()).unwrap_or(u64::MAX);
        self.last = self.last.max(Timestamp(ms));
        self.last
    }

    pub fn now(&mut self) -> Timestamp {
        self.stamp(Instant::now())
    }

    /// The instant of machine time `t`.
    pub fn instant(&self, t: Timestamp) -> Instant {
        self.start + Duration::from_millis(t.as_millis())
    }

    /// The last time given.
    pub fn last(&self) -> Timestamp {
        self.last
    }
}

/// One machine and its shell, as the driver sees them.
pub trait Reconciler: Send {
    /// What arrives from outside: samples, polls, operator commands, approvals.
    type Event: Send;
    /// A job's end, fed back as an input.
    type Done: Send + 'static;

    /// The next event; `None` when every source is closed (the loop ends). Must be
    /// cancel-safe: the driver drops it when something else comes first.
    fn recv(&mut self) -> impl Future<Output = Option<Self::Event>> + Send;

    /// Handle an event, starting the jobs it causes in `jobs`.
    fn event(
        &mut self,
        ev: Self::Event,
        jobs: &mut JoinSet<Self::Done>,
    ) -> impl Future<Output = ()> + Send;

    /// When the machine next wants a tick.
    fn deadline(&self) -> Option<Instant>;
    fn tick(&mut self, jobs: &mut JoinSet<Self::Done>);

    /// Feed a finished job back.
    fn settle(&mut self, done: Self::Done, jobs: &mut JoinSet<Self::Done>);

    /// The loop stops: what waits for approval is dropped (and logged).
    fn stop(&mut self);

    /// How long shutdown waits for jobs in flight.
    fn grace(&self) -> Duration;
}

/// Run `r` until `shutdown` fires (or its sources close) and its jobs in flight
/// have finished or the grace period ran out. Returns the reconciler.
pub async fn drive<R: Reconciler>(mut r: R, shutdown: CancellationToken) -> R {
    let mut jobs: JoinSet<R::Done> = JoinSet::new();
    loop {
        // Approvals expire on the machine's deadline too (the core's gate).
        let deadline = r.deadline();
        tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            Some(done) = jobs.join_next() => match done {
                Ok(done) => r.settle(done, &mut jobs),
                Err(e) => tracing::error!(error = %e, "an action task failed; its outcome is unknown"),
            },
            ev = r.recv() => match ev {
                Some(ev) => r.event(ev, &mut jobs).await,
                None => break,
            },
            () = sleep_until(deadline) => r.tick(&mut jobs),
        }
    }
    r.stop();
    let grace = tokio::time::sleep(r.grace());
    tokio::pin!(grace);
    while !jobs.is_empty() {
        tokio::select! {
            Some(done) = jobs.join_next() => {
                if let Ok(done) = done {
                    // No new actions during shutdown.
                    let mut late = JoinSet::new();
                    r.settle(done, &mut late);
                    late.abort_all();
                }
            }
            () = &mut grace => {
                tracing::warn!(pending = jobs.len(), "shutdown: actions still running after the grace period; their outcome is unknown");
                break;
            }
        }
    }
    r
}

/// Sleep until `deadline`, or forever without one.
pub async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}
