//! Readiness and drain in the pure engine (issue 16 item 4): a clone counts only
//! once ready, is checked and given up on time, and drains before its destroy.
//! Explicit `now`; the shell's answers are inputs.

use std::time::Duration;

use albatross_autoscale::core::lifecycle::{Event, Hook, Lifecycle};
use albatross_autoscale::core::{
    Action, Decision, Engine, Input, Options, Output, Policy, Reason, RequireApproval, Timestamp,
};
use albatross_autoscale::name::Name;

mod common;
use common::decisions;

const IV: u64 = 10_000;

fn n(s: &str) -> Name {
    Name::parse(s).unwrap()
}

/// One engine, one group `alice:web`; each VM's counter advances by a percentage
/// of the interval since its previous sample.
struct H {
    e: Engine,
    now: u64,
    cpu: std::collections::HashMap<String, (u64, u64)>,
    log: Vec<Output>,
}

impl H {
    fn new(policy: Policy, approvals: bool) -> Self {
        let e = Engine::new(
            vec![(n("alice:web"), policy)],
            Options::default(),
            Timestamp(0),
        )
        .with_approvals(approvals);
        let mut h = Self {
            e,
            now: 0,
            cpu: Default::default(),
            log: Vec::new(),
        };
        h.sample("alice:web", 0);
        h
    }

    fn input(&mut self, input: Input) -> Vec<Output> {
        let mut out = Vec::new();
        self.e.step(Timestamp(self.now), input, &mut out);
        self.log.extend(out.iter().cloned());
        out
    }

    /// Advance to `ms`, ticking at every deadline in between as a shell would.
    fn at(&mut self, ms: u64) -> Vec<Output> {
        let mut out = Vec::new();
        let mut ticks = 0;
        while let Some(t) = self.e.next_deadline().filter(|t| t.0 <= ms) {
            self.now = t.0.max(self.now);
            out.extend(self.input(Input::Tick));
            ticks += 1;
            assert!(
                ticks < 10_000,
                "the deadline {t:?} does not move: {:#?}",
                self.e.groups()[0]
            );
        }
        self.now = ms;
        out
    }

    fn sample(&mut self, vm: &str, pct: u64) -> Vec<Output> {
        let (last, total) = self.cpu.get(vm).copied().unwrap_or((self.now, 1_000_000));
        let total = total + (self.now - last) * 10 * pct;
        self.cpu.insert(vm.to_string(), (self.now, total));
        self.input(Input::Sample {
            vm: n(vm),
            cpu_us: total,
            vcpus: None,
        })
    }

    /// One interval: `vms` report at `pct`, the primary last.
    fn round(&mut self, vms: &[&str], pct: u64) -> Vec<Output> {
        let mut out = self.at(self.now + IV);
        for vm in vms.iter().rev() {
            out.extend(self.sample(vm, pct));
        }
        out
    }

    fn result(&mut self, id: u64, ok: bool) -> Vec<Output> {
        self.input(Input::ActionResult {
            group: n("alice:web"),
            id,
            outcome: if ok { Ok(()) } else { Err("boom".into()) },
        })
    }

    fn answer(&mut self, vm: &str, event: Event, ok: bool) -> Vec<Output> {
        self.input(Input::Lifecycle {
            group: n("alice:web"),
            vm: n(vm),
            event,
            outcome: if ok { Ok(()) } else { Err("refused".into()) },
        })
    }

    fn state(&self, vm: &str) -> &'static str {
        let s = self.e.status(Timestamp(self.now));
        s.groups[0]
            .members
            .iter()
            .find(|m| m.name == vm)
            .map(|m| m.state)
            .unwrap_or("absent")
    }

    /// Scale up once (the primary hot) and acknowledge the create.
    fn scaled_up(&mut self) -> Decision {
        for _ in 0..10 {
            let d = decisions(&self.round(&["alice:web"], 95));
            if let Some(d) = d.into_iter().find(|d| d.action == Action::ScaleUp) {
                self.result(d.id, true);
                return d;
            }
        }
        panic!("no scale-up");
    }
}

fn hooks(out: &[Output]) -> Vec<Hook> {
    out.iter()
        .filter_map(|o| match o {
            Output::Lifecycle(h) => Some(h.clone()),
            _ => None,
        })
        .collect()
}

fn drained(out: &[Output]) -> Vec<(Timestamp, Decision)> {
    out.iter()
        .filter_map(|o| match o {
            Output::Drained { t, decision } => Some((*t, (**decision).clone())),
            _ => None,
        })
        .collect()
}

fn policy(lifecycle: Lifecycle) -> Policy {
    Policy {
        scale_up_ticks: 2,
        scale_down_ticks: 2,
        scale_up_cooldown: Duration::ZERO,
        scale_down_cooldown: Duration::ZERO,
        max_instances: 3,
        retry_backoff: Duration::from_secs(30),
        lifecycle,
        ..Policy::default()
    }
}

const CLONE: &str = "alice:web-clone-1";

/// A group with room for one clone (nothing else in flight when it is given up).
fn one_clone(life: Lifecycle) -> H {
    H::new(
        Policy {
            max_instances: 2,
            ..policy(life)
        },
        false,
    )
}

/// Cool rounds with the clone reporting until a scale-down is decided.
fn next_scale_down(h: &mut H) -> Decision {
    for _ in 0..10 {
        let d = decisions(&h.round(&["alice:web", CLONE], 5));
        if let Some(d) = d.into_iter().find(|d| d.action == Action::ScaleDown) {
            return d;
        }
    }
    panic!("no scale-down");
}

#[test]
fn without_checks_a_clone_is_ready_at_its_first_sample() {
    let mut h = H::new(policy(Lifecycle::default()), false);
    let d = h.scaled_up();
    assert_eq!(d.instance.to_string(), CLONE);
    assert_eq!(h.state(CLONE), "booting");
    let out = h.round(&["alice:web", CLONE], 50);
    assert!(hooks(&out).is_empty(), "no check configured: {out:?}");
    assert_eq!(h.state(CLONE), "ready");
    assert_eq!(h.state("alice:web"), "running");
}

#[test]
fn a_checked_clone_counts_only_once_its_check_passes() {
    let life = Lifecycle {
        check_ready: true,
        ..Lifecycle::default()
    };
    let mut h = H::new(policy(life), false);
    h.scaled_up();
    // First sample: a check is asked for, once (not again at the next sample).
    let out = h.round(&["alice:web", CLONE], 10);
    let asked = hooks(&out);
    assert_eq!(asked.len(), 1, "{out:?}");
    assert_eq!(
        (asked[0].event, asked[0].attempt, asked[0].vm.to_string()),
        (Event::Ready, 1, CLONE.to_string())
    );
    // Booting clones are not averaged: the primary alone (95 %) makes the average
    // even though the clone idles at 10 %.
    let out = h.round(&["alice:web", CLONE], 95);
    assert!(hooks(&out).is_empty(), "one check at a time: {out:?}");
    let avg = out.iter().find_map(|o| match o {
        Output::Evaluation(e) => Some((e.avg_bp, e.fresh)),
        _ => None,
    });
    assert_eq!(avg, Some((Some(9_500), 1)), "{out:?}");
    // A failed check is retried an interval later, not before.
    h.answer(CLONE, Event::Ready, false);
    assert_eq!(h.state(CLONE), "booting");
    let retry = h.at(h.now + IV - 1);
    assert!(hooks(&retry).is_empty(), "{retry:?}");
    let retry = h.at(h.now + 1);
    assert_eq!(hooks(&retry).len(), 1, "{retry:?}");
    assert_eq!(hooks(&retry)[0].attempt, 2);
    h.answer(CLONE, Event::Ready, true);
    assert_eq!(h.state(CLONE), "ready");
    let out = h.round(&["alice:web", CLONE], 30);
    let fresh = out.iter().find_map(|o| match o {
        Output::Evaluation(e) => Some(e.fresh),
        _ => None,
    });
    assert_eq!(fresh, Some(2), "ready now: averaged: {out:?}");
}

#[test]
fn a_clone_not_ready_in_time_is_destroyed_and_the_scale_up_backs_off() {
    let life = Lifecycle {
        check_ready: true,
        ready_timeout: Duration::from_secs(60),
        ..Lifecycle::default()
    };
    let mut h = one_clone(life);
    let up = h.scaled_up();
    let created = h.now;
    // It samples, every check fails.
    for _ in 0..5 {
        h.round(&["alice:web", CLONE], 95);
        if h.state(CLONE) == "booting" {
            h.answer(CLONE, Event::Ready, false);
        }
    }
    let out = h.at(created + 60_000);
    let d = decisions(&out);
    assert_eq!(d.len(), 1, "{out:?}");
    assert_eq!(d[0].action, Action::CloneLost);
    assert_eq!(d[0].instance.to_string(), CLONE);
    assert_eq!(d[0].t, Timestamp(created + 60_000));
    match &d[0].reason {
        Reason::NotReady {
            waited, timeout, ..
        } => {
            assert_eq!(*waited, Duration::from_secs(60));
            assert_eq!(*timeout, Duration::from_secs(60));
        }
        r => panic!("{r:?}"),
    }
    assert!(d[0].reason.to_string().contains("ready_timeout = 1m"));
    h.result(d[0].id, true);
    assert_eq!(h.state(CLONE), "absent");
    // Backoff: no new scale-up for 30 s though the primary stays hot.
    let mut next = None;
    for _ in 0..6 {
        if let Some(d) = decisions(&h.round(&["alice:web"], 95))
            .into_iter()
            .find(|d| d.action == Action::ScaleUp)
        {
            next = Some(d);
            break;
        }
    }
    let next = next.expect("the scale-up is retried");
    assert_ne!(next.id, up.id);
    assert!(
        next.t.0 >= created + 60_000 + 30_000,
        "retried after the backoff: {:?}",
        next.t
    );
}

/// A group with one ready clone, scaled down by a cool primary and clone.
fn scaled_down(h: &mut H) -> Decision {
    h.scaled_up();
    h.round(&["alice:web", CLONE], 50);
    assert_eq!(h.state(CLONE), "ready");
    next_scale_down(h)
}

#[test]
fn a_scale_down_drains_its_clone_for_drain_period_then_destroys_it() {
    let life = Lifecycle {
        drain_period: Duration::from_secs(30),
        on_removed: true,
        ..Lifecycle::default()
    };
    let mut h = H::new(policy(life), false);
    let d = scaled_down(&mut h);
    assert!(d.drain, "the shell must wait for Drained");
    let decided = d.t.0;
    assert_eq!(h.state(CLONE), "draining");
    // Draining: still reporting, not averaged.
    let out = h.round(&["alice:web", CLONE], 5);
    let fresh = out.iter().find_map(|o| match o {
        Output::Evaluation(e) => Some(e.fresh),
        _ => None,
    });
    assert_eq!(fresh, Some(1), "{out:?}");
    assert!(drained(&h.at(decided + 29_999)).is_empty());
    let out = h.at(decided + 30_000);
    let dr = drained(&out);
    assert_eq!(dr.len(), 1, "{out:?}");
    assert_eq!(dr[0].0, Timestamp(decided + 30_000));
    assert_eq!(dr[0].1.id, d.id);
    assert_eq!(h.state(CLONE), "leaving");
    let out = h.result(d.id, true);
    let removed = hooks(&out);
    assert_eq!(removed.len(), 1, "{out:?}");
    assert_eq!(removed[0].event, Event::Removed);
    assert_eq!(h.state(CLONE), "absent");
}

#[test]
fn on_draining_holds_the_destroy_until_answered_and_a_failure_does_not_stop_it() {
    let life = Lifecycle {
        on_draining: true,
        ..Lifecycle::default()
    };
    let mut h = H::new(policy(life), false);
    let d = scaled_down(&mut h);
    let asked: Vec<Hook> = hooks(&h.log)
        .into_iter()
        .filter(|k| k.event == Event::Draining)
        .collect();
    assert_eq!(asked.len(), 1);
    assert_eq!(asked[0].t, d.t, "asked for at the decision");
    // No drain period, but the hook has not answered: nothing destroyed yet.
    assert!(drained(&h.round(&["alice:web", CLONE], 5)).is_empty());
    let out = h.answer(CLONE, Event::Draining, false);
    assert_eq!(drained(&out).len(), 1, "{out:?}");
}

#[test]
fn a_drain_waiting_for_approval_starts_when_approved_and_a_rejection_keeps_the_clone() {
    let life = Lifecycle {
        drain_period: Duration::from_secs(20),
        on_draining: true,
        ..Lifecycle::default()
    };
    let mut h = H::new(
        Policy {
            require_approval: RequireApproval {
                scale_down: true,
                ..RequireApproval::default()
            },
            ..policy(life)
        },
        true,
    );
    let d = scaled_down(&mut h);
    assert!(
        !hooks(&h.log).iter().any(|k| k.event == Event::Draining),
        "held: no drain yet"
    );
    // Held for a minute: no drain, no destroy.
    h.at(h.now + 60_000);
    assert!(drained(&h.log).is_empty());
    let out = h.input(Input::Reject {
        group: n("alice:web"),
        id: d.id,
        by: "ops".into(),
    });
    assert!(hooks(&out).is_empty() && drained(&out).is_empty());
    assert_eq!(h.state(CLONE), "ready");

    // The next one is approved: the drain starts at the approval.
    let d = next_scale_down(&mut h);
    h.at(h.now + 5_000);
    let approved = h.now;
    let out = h.input(Input::Approve {
        group: n("alice:web"),
        id: d.id,
        by: "ops".into(),
    });
    assert_eq!(hooks(&out).len(), 1, "{out:?}");
    h.answer(CLONE, Event::Draining, true);
    assert!(drained(&h.at(approved + 19_999)).is_empty());
    let out = h.at(approved + 20_000);
    assert_eq!(drained(&out).len(), 1, "{out:?}");
}

#[test]
fn a_paused_group_gives_no_clone_up_until_resumed() {
    let life = Lifecycle {
        check_ready: true,
        ready_timeout: Duration::from_secs(30),
        ..Lifecycle::default()
    };
    let mut h = one_clone(life);
    h.scaled_up();
    let created = h.now;
    h.input(Input::Pause {
        group: n("alice:web"),
    });
    // Long past ready_timeout, reporting, every check failing: recommend-only,
    // nothing destroyed, no busy loop.
    while h.now < created + 120_000 {
        h.round(&["alice:web", CLONE], 50);
        if hooks(&h.log).iter().any(|k| k.event == Event::Ready) {
            h.answer(CLONE, Event::Ready, false);
        }
    }
    assert!(
        !decisions(&h.log)
            .iter()
            .any(|d| d.action == Action::CloneLost),
        "{:?}",
        decisions(&h.log)
    );
    assert_eq!(h.state(CLONE), "booting");
    let out = h.input(Input::Resume {
        group: n("alice:web"),
    });
    let lost: Vec<Decision> = decisions(&out)
        .into_iter()
        .filter(|d| d.action == Action::CloneLost)
        .collect();
    assert_eq!(lost.len(), 1, "{out:?}");
    assert!(matches!(lost[0].reason, Reason::NotReady { .. }));
}

#[test]
fn a_lost_on_draining_answer_does_not_hold_the_group_forever() {
    let life = Lifecycle {
        on_draining: true,
        ..Lifecycle::default()
    };
    let mut h = H::new(policy(life), false);
    let d = scaled_down(&mut h);
    // Never answered: the destroy goes ahead after the hook's timeout (30 s by
    // default, no hooks configured here) and the core's margin (30 s).
    assert!(drained(&h.at(d.t.0 + 59_999)).is_empty());
    let out = h.at(d.t.0 + 60_000);
    assert_eq!(drained(&out).len(), 1, "{out:?}");
}

#[test]
fn a_failed_destroy_after_on_draining_checks_the_clone_again() {
    let life = Lifecycle {
        on_draining: true,
        check_ready: true,
        on_removed: true,
        ..Lifecycle::default()
    };
    let mut h = H::new(policy(life), false);
    h.scaled_up();
    h.round(&["alice:web", CLONE], 50);
    h.answer(CLONE, Event::Ready, true);
    assert_eq!(h.state(CLONE), "ready");
    let d = next_scale_down(&mut h);
    let out = h.answer(CLONE, Event::Draining, true);
    assert_eq!(drained(&out).len(), 1);
    // The destroy fails: the clone was taken out of the load balancer, so it is
    // booting again (checked, on_ready again), not counted.
    h.result(d.id, false);
    assert_eq!(h.state(CLONE), "booting");
    let out = h.round(&["alice:web", CLONE], 50);
    assert!(
        hooks(&out).iter().any(|k| k.event == Event::Ready),
        "{out:?}"
    );
}

#[test]
fn a_ready_answer_for_a_clone_gone_meanwhile_takes_it_back_with_on_removed() {
    let life = Lifecycle {
        check_ready: true,
        on_removed: true,
        ready_timeout: Duration::from_secs(30),
        ..Lifecycle::default()
    };
    let mut h = one_clone(life);
    h.scaled_up();
    let created = h.now;
    h.round(&["alice:web", CLONE], 50); // check asked, not answered yet
    let out = h.at(created + 30_000);
    let lost = decisions(&out);
    assert_eq!(lost.len(), 1, "{out:?}");
    h.result(lost[0].id, true);
    assert_eq!(h.state(CLONE), "absent");
    // The check (on_ready) ends well after all: the clone was announced.
    let out = h.answer(CLONE, Event::Ready, true);
    let back: Vec<Hook> = hooks(&out);
    assert_eq!(back.len(), 1, "{out:?}");
    assert_eq!(back[0].event, Event::Removed);
}
