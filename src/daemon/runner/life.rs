//! Lifecycle steps of clones (readiness checks, hooks) as jobs of the engine
//! task; their outcome goes back to the engine and into the decision log.

use tokio::task::JoinSet;
use tokio::time::Instant;

use super::{Actuator, Finished, Runner};
use crate::core::Timestamp;
use crate::core::lifecycle::{Event, Hook};
use crate::daemon::hooks::{self, HookDone, HookJob};

impl<A: Actuator> Runner<A> {
    /// Start lifecycle step `h` (in dry-run nothing runs: a check passes).
    pub(super) fn lifecycle(&mut self, now: Timestamp, h: &Hook, jobs: &mut JoinSet<Finished>) {
        let hooks = self.engine.hooks_of(&h.group);
        let done = |outcome| HookDone {
            hook: h.clone(),
            outcome,
            runs: Vec::new(),
            address: None,
        };
        let (Some(hooks), false) = (hooks, self.settings.dry_run) else {
            return self.answer_hook(now, done(Ok(())), jobs);
        };
        let address = self.actuator.address(&h.vm);
        let job = HookJob {
            hook: h.clone(),
            hooks,
            address,
            notices: self.notices.clone(),
        };
        jobs.spawn(async move { Finished::Hook(hooks::run(job).await) });
    }

    /// A lifecycle step ended.
    pub(super) fn hook_done(&mut self, done: HookDone, jobs: &mut JoinSet<Finished>) {
        let now = self.stamp(Instant::now());
        self.log.line(&done.log_line(now.as_millis()));
        match &done.outcome {
            Ok(()) => {
                tracing::info!(group = %done.hook.group, instance = %done.hook.vm, lifecycle = done.hook.event.as_str(), "hook done");
            }
            Err(e) if done.hook.event == Event::Ready => {
                tracing::info!(group = %done.hook.group, instance = %done.hook.vm, attempt = done.hook.attempt, error = %e, "clone not ready yet");
            }
            Err(e) => {
                tracing::warn!(group = %done.hook.group, instance = %done.hook.vm, lifecycle = done.hook.event.as_str(), error = %e, "hook failed; going ahead");
            }
        }
        self.answer_hook(now, done, jobs);
    }

    fn answer_hook(&mut self, now: Timestamp, done: HookDone, jobs: &mut JoinSet<Finished>) {
        if let Some(input) = done.input() {
            self.step(now, input, jobs);
        }
    }
}
