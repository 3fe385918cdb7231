//! Readiness and drain (see [`crate::core::lifecycle`]): when a booting clone is
//! checked, when it counts, when it is given up; when a draining clone goes.

use super::*;
use crate::core::lifecycle::Hook;

/// How long past a hook's own timeout the core waits for its answer.
const HOOK_MARGIN: Duration = Duration::from_secs(30);

/// A scale-down whose clone drains before its destroy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Drain {
    /// Carried out on [`Output::Drained`].
    decision: Box<Decision>,
    /// When the drain period ends; `None` until released (approval).
    until: Option<Timestamp>,
    /// `on_draining` asked for and not answered yet.
    hook_pending: bool,
    /// Given up on that answer then (the hook's timeout and a margin): a lost
    /// answer must not hold the group's one action forever.
    hook_by: Option<Timestamp>,
}

impl Group {
    /// The clone at `i` sent a sample while booting: ready now, or checked.
    pub(super) fn booted(&mut self, now: Timestamp, i: usize, out: &mut Vec<Output>) {
        let check = self.policy.lifecycle.check_ready;
        let Some(m) = self.members.at_mut(i) else {
            return;
        };
        let MemberState::Booting(mut b) = m.state else {
            return;
        };
        if !check {
            m.state = MemberState::Running;
            m.served = true;
            self.refile_life();
            return;
        }
        if b.checking || b.retry_at.is_some_and(|t| t > now) {
            return;
        }
        b.checking = true;
        b.attempts += 1;
        m.state = MemberState::Booting(b);
        let vm = m.name.clone();
        self.hook(now, vm, Event::Ready, b.attempts, out);
        self.refile_life();
    }

    fn hook(
        &self,
        now: Timestamp,
        vm: Arc<Name>,
        event: Event,
        attempt: u32,
        out: &mut Vec<Output>,
    ) {
        out.push(Output::Lifecycle(Hook {
            t: now,
            group: self.group.clone(),
            vm,
            event,
            attempt,
        }));
    }

    /// The shell's answer to a readiness check or `on_draining`.
    pub(super) fn on_lifecycle(
        &mut self,
        now: Timestamp,
        vm: &Name,
        event: Event,
        outcome: Result<(), String>,
        out: &mut Vec<Output>,
    ) {
        match event {
            Event::Ready => {
                let retry = now.plus(self.policy.sample_interval);
                let removed = self.policy.lifecycle.on_removed;
                let Some(m) = self.members.get_mut(vm) else {
                    // Gone while `on_ready` ran: if it announced the clone,
                    // `on_removed` takes it back now.
                    if outcome.is_ok() && removed {
                        self.hook(now, Arc::new(vm.clone()), Event::Removed, 1, out);
                    }
                    return;
                };
                let MemberState::Booting(mut b) = m.state else {
                    // Chosen by a scale-down while its check ran: if `on_ready`
                    // announced it, `on_removed` must take it back.
                    m.served |= outcome.is_ok();
                    return;
                };
                if !b.checking {
                    return;
                }
                if outcome.is_ok() {
                    m.state = MemberState::Running;
                    m.served = true;
                } else {
                    // Retried an interval later, until `ready_timeout`.
                    b.checking = false;
                    b.retry_at = Some(retry);
                    m.state = MemberState::Booting(b);
                }
            }
            Event::Draining => {
                let Some(d) = self.drain.as_mut() else {
                    return;
                };
                if *d.decision.instance != *vm {
                    return;
                }
                // A failing hook is the shell's to log: the destroy goes ahead.
                d.hook_pending = false;
            }
            Event::Removed => {}
        }
        self.lifecycle_due(now, out);
    }

    /// Start draining the clone of scale-down `id` (not held, or approved).
    pub(super) fn release(&mut self, now: Timestamp, id: ActionId, out: &mut Vec<Output>) {
        let life = self.policy.lifecycle;
        let Some(d) = self.drain.as_mut().filter(|d| d.decision.id == id) else {
            return;
        };
        if d.until.is_some() {
            return;
        }
        d.until = Some(now.plus(life.drain_period));
        d.hook_pending = life.on_draining;
        let timeout = self
            .policy
            .hooks
            .as_ref()
            .and_then(|h| h.on_draining.as_ref())
            .map_or(crate::core::lifecycle::HookCommand::TIMEOUT, |c| c.timeout);
        d.hook_by = Some(now.plus(timeout + HOOK_MARGIN));
        let vm = d.decision.instance.clone();
        if life.on_draining {
            self.hook(now, vm, Event::Draining, 1, out);
        }
        self.lifecycle_due(now, out);
    }

    /// Scale-down `d` (just decided) drains its clone first.
    pub(super) fn start_drain(&mut self, d: &mut Decision) {
        d.drain = true;
        if let Some(m) = self.members.get_mut(&d.instance) {
            m.state = MemberState::Draining(d.id);
        }
        self.drain = Some(Box::new(Drain {
            decision: Box::new(d.clone()),
            until: None,
            hook_pending: false,
            hook_by: None,
        }));
    }

    /// What the clone of a failed, rejected or expired scale-down `id` goes back
    /// to: booting as it was; booting anew if `on_draining` already announced it
    /// gone (readiness and `on_ready` run again); else ready.
    pub(super) fn kept_state(
        &self,
        now: Timestamp,
        id: ActionId,
        prior: Option<MemberState>,
    ) -> MemberState {
        if let Some(MemberState::Booting(mut b)) = prior {
            b.checking = false;
            return MemberState::Booting(b);
        }
        let started = self
            .drain
            .as_ref()
            .is_some_and(|d| d.decision.id == id && d.until.is_some());
        // Drained already: the drain is over and the clone waits for its destroy.
        let drained = self.policy.lifecycle.drains()
            && self
                .members
                .values()
                .any(|m| m.state == MemberState::Leaving(id));
        if self.policy.lifecycle.on_draining && (started || drained) {
            self.boot(now)
        } else {
            MemberState::Running
        }
    }

    /// The drain of scale-down `id` ended without a destroy (rejected, expired,
    /// or the destroy failed): the clone serves again.
    pub(super) fn end_drain(&mut self, id: ActionId) {
        if self.drain.as_ref().is_some_and(|d| d.decision.id == id) {
            self.drain = None;
            self.refile_life();
        }
    }

    /// Act on what came due: drains that ended, checks to retry, clones not
    /// ready in time.
    pub(super) fn lifecycle_due(&mut self, now: Timestamp, out: &mut Vec<Output>) {
        if let Some(d) = self.drain.as_mut()
            && d.hook_pending
            && d.hook_by.is_some_and(|t| t <= now)
        {
            d.hook_pending = false; // no answer: the destroy goes ahead
        }
        let drained = self
            .drain
            .as_ref()
            .is_some_and(|d| !d.hook_pending && d.until.is_some_and(|t| t <= now));
        if drained && let Some(d) = self.drain.take() {
            if let Some(m) = self.members.get_mut(&d.decision.instance) {
                m.state = MemberState::Leaving(d.decision.id);
            }
            out.push(Output::Drained {
                t: now,
                decision: d.decision,
            });
        }
        let mut late = Vec::new();
        let mut retry = Vec::new();
        // Given up only with no other action in flight and not paused (then
        // only recommended); checked meanwhile.
        let can_give_up = self.may_give_up();
        for (i, m) in self.members.values().enumerate() {
            if let MemberState::Booting(b) = m.state {
                if b.ready_by <= now && can_give_up {
                    late.push((m.name.clone(), b));
                } else if !b.checking && b.retry_at.is_some_and(|t| t <= now) {
                    retry.push(i);
                }
            }
        }
        for i in retry {
            self.booted(now, i, out);
        }
        for (vm, b) in late {
            self.not_ready(now, vm, b, out);
        }
        self.refile_life();
    }

    /// A clone not ready by `ready_timeout`: destroyed (its cleanup keeps the
    /// name taken until answered), and the group backs off as after a failed
    /// scale-up. One action at a time: with another in flight it waits.
    fn not_ready(&mut self, now: Timestamp, vm: Arc<Name>, b: Boot, out: &mut Vec<Output>) {
        let waited = self
            .members
            .get(&vm)
            .map_or(Duration::ZERO, |m| now.since(m.since));
        let reason = Reason::NotReady {
            waited,
            timeout: self.policy.lifecycle.ready_timeout,
            checks: b.attempts.saturating_sub(u32::from(b.checking)),
        };
        let id = self.push_decision(now, Action::CloneLost, vm.clone(), reason, None, out);
        if let Some(m) = self.members.get_mut(&vm) {
            m.state = MemberState::Leaving(id);
            m.bp = None;
        }
        self.back_off(now);
    }

    /// An owned clone leaves the group (destroyed, or gone); `on_removed` is
    /// asked for if it had served.
    pub(super) fn remove_clone(
        &mut self,
        now: Timestamp,
        vm: &Arc<Name>,
        retire: bool,
        out: &mut Vec<Output>,
    ) {
        let Some(m) = self.members.remove(vm) else {
            return;
        };
        self.membership += 1;
        if retire {
            self.retire(vm.clone());
        }
        if m.served && self.policy.lifecycle.on_removed {
            self.hook(now, vm.clone(), Event::Removed, 1, out);
        }
        self.refile_life();
    }

    /// Recompute [`Group::life_at`] (a lifecycle state changed).
    pub(super) fn refile_life(&mut self) {
        let mut at = self
            .drain
            .as_ref()
            .and_then(|d| if d.hook_pending { d.hook_by } else { d.until });
        // A clone late while another action is in flight (or the group paused)
        // is given up once that one is answered or the group resumed (both look
        // again), not at a tick.
        let late_ok = self.may_give_up();
        for m in self.members.values() {
            if let MemberState::Booting(b) = m.state {
                let retry = b.retry_at.filter(|_| !b.checking);
                let ready_by = Some(b.ready_by).filter(|_| late_ok);
                if let Some(next) = [retry, ready_by].into_iter().flatten().min() {
                    at = Some(at.map_or(next, |a| a.min(next)));
                }
            }
        }
        self.life_at = at;
    }

    fn may_give_up(&self) -> bool {
        self.in_flight.is_none() && !self.control.paused
    }

    /// A booting state for a clone created at `now`.
    pub(super) fn boot(&self, now: Timestamp) -> MemberState {
        MemberState::Booting(Boot {
            ready_by: now.plus(self.policy.lifecycle.ready_timeout),
            checking: false,
            retry_at: None,
            attempts: 0,
        })
    }
}
