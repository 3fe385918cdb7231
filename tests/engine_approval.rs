//! The pure side of manual approval: which decisions wait (`Engine::needs_approval`)
//! and the re-check at the moment of approval (`Engine::recheck`). Explicit `now`.

use std::time::Duration;

use albatross_autoscale::core::{
    Action, Decision, Engine, Input, Options, Output, Policy, RequireApproval, Timestamp,
};
use albatross_autoscale::name::Name;

const IV: u64 = 10_000;

fn n(s: &str) -> Name {
    Name::parse(s).unwrap()
}

struct H {
    e: Engine,
    now: u64,
    cpu: u64,
}

impl H {
    fn new(policy: Policy) -> Self {
        let e = Engine::new(
            vec![(n("alice:web"), policy)],
            Options::default(),
            Timestamp(0),
        );
        let mut h = Self { e, now: 0, cpu: 0 };
        h.sample(0);
        h
    }

    fn input(&mut self, input: Input) -> Vec<Decision> {
        let mut out = Vec::new();
        self.e.step(Timestamp(self.now), input, &mut out);
        out.into_iter()
            .filter_map(|o| match o {
                Output::Decision(d) => Some(*d),
                _ => None,
            })
            .collect()
    }

    /// One interval later, the primary at `pct` %.
    fn sample(&mut self, pct: u64) -> Vec<Decision> {
        self.cpu += IV * 10 * pct;
        self.input(Input::Sample {
            vm: n("alice:web"),
            cpu_us: self.cpu,
            vcpus: None,
        })
    }

    fn until_decision(&mut self, pct: u64) -> Decision {
        for _ in 0..20 {
            self.now += IV;
            if let Some(d) = self.sample(pct).pop() {
                return d;
            }
        }
        panic!("no decision at {pct} %");
    }

    fn policy(&mut self, p: Policy) {
        let groups = vec![(n("alice:web"), p)];
        self.e.step(
            Timestamp(self.now),
            Input::Reconfigure { groups },
            &mut Vec::new(),
        );
    }
}

fn policy(require: RequireApproval) -> Policy {
    Policy {
        scale_up_ticks: 2,
        scale_down_ticks: 2,
        scale_up_cooldown: Duration::ZERO,
        scale_down_cooldown: Duration::ZERO,
        require_approval: require,
        ..Policy::default()
    }
}

#[test]
fn a_held_scale_up_is_rechecked_against_pause_reload_and_its_own_fate() {
    let mut up = RequireApproval::default();
    up.set("scale_up");
    let mut h = H::new(policy(up));
    let d = h.until_decision(95);
    assert_eq!(d.action, Action::ScaleUp);
    assert!(h.e.needs_approval(&d));
    assert_eq!(h.e.recheck(&d), Ok(()));
    // A reload lowers max_instances below the count that includes the pending clone.
    h.policy(Policy {
        max_instances: 1,
        min_instances: 1,
        ..policy(up)
    });
    let why = h.e.recheck(&d).unwrap_err();
    assert!(why.contains("max_instances (1)"), "{why}");
    h.policy(policy(up));
    h.input(Input::Pause {
        group: n("alice:web"),
    });
    assert!(h.e.recheck(&d).unwrap_err().starts_with("paused"));
    h.input(Input::Resume {
        group: n("alice:web"),
    });
    assert_eq!(h.e.recheck(&d), Ok(()));
    // Answered (rejected): nothing is pending any more.
    h.input(Input::ActionResult {
        group: n("alice:web"),
        id: d.id,
        outcome: Err("rejected by ops".into()),
    });
    assert!(h.e.recheck(&d).is_err());
    // Unknown group (removed by a reload).
    let none = Input::Reconfigure { groups: Vec::new() };
    h.e.step(Timestamp(h.now), none, &mut Vec::new());
    assert!(
        h.e.recheck(&d)
            .unwrap_err()
            .contains("no longer configured")
    );
}

#[test]
fn the_operators_own_target_and_unlisted_actions_never_wait() {
    let mut h = H::new(policy(RequireApproval::ALL));
    let d = h
        .input(Input::Scale {
            group: n("alice:web"),
            target: 2,
        })
        .pop()
        .unwrap();
    assert_eq!(d.action, Action::ScaleUp);
    assert!(!h.e.needs_approval(&d), "{}", d.reason);
    let mut down = RequireApproval::default();
    down.set("scale_down");
    let mut h = H::new(policy(down));
    let d = h.until_decision(95);
    assert!(!h.e.needs_approval(&d));
}

#[test]
fn a_held_scale_down_respects_a_raised_minimum_and_a_dead_primary_that_returns() {
    let mut h = H::new(Policy {
        max_instances: 3,
        ..policy(RequireApproval::ALL)
    });
    h.input(Input::Adopt {
        group: n("alice:web"),
        vm: n("alice:web-clone-1"),
    });
    let d = h.until_decision(5);
    assert_eq!(d.action, Action::ScaleDown);
    assert!(h.e.needs_approval(&d));
    assert_eq!(h.e.recheck(&d), Ok(()));
    h.policy(Policy {
        min_instances: 2,
        max_instances: 3,
        ..policy(RequireApproval::ALL)
    });
    assert!(h.e.recheck(&d).unwrap_err().contains("min_instances (2)"));

    // The primary goes silent: recreating it waits; it reports again before approval.
    let mut h = H::new(policy(RequireApproval::ALL));
    h.now += 100_000;
    let d = h.input(Input::Tick).pop().expect("replace_primary");
    assert_eq!(d.action, Action::ReplacePrimary);
    assert!(h.e.needs_approval(&d));
    assert_eq!(h.e.recheck(&d), Ok(()));
    h.now += IV;
    h.sample(50);
    assert!(h.e.recheck(&d).unwrap_err().contains("reports again"));
}

#[test]
fn a_held_scale_up_is_refused_once_the_global_cost_ceiling_is_used_up_elsewhere() {
    let mut h = H::new(Policy {
        instance_cost_micros: 1_000_000,
        ..policy(RequireApproval::ALL)
    });
    // 3/h in all: the primary (1/h) may get one clone while the rest costs 1/h.
    let t = Timestamp(h.now);
    h.e.step(
        t,
        Input::ExternalCost { micros: 1_000_000 },
        &mut Vec::new(),
    );
    h.e = h.e.clone().with_cost_ceiling(Some(3_000_000));
    let d = h.until_decision(95);
    assert_eq!(d.action, Action::ScaleUp);
    assert_eq!(h.e.recheck(&d), Ok(()));
    // Meanwhile the Proxmox side grew: approving now would cross the ceiling.
    let t = Timestamp(h.now);
    h.e.step(
        t,
        Input::ExternalCost { micros: 2_000_000 },
        &mut Vec::new(),
    );
    let why = h.e.recheck(&d).unwrap_err();
    assert!(why.contains("global max_cost_per_hour (3)"), "{why}");
}

/// The gate in the core: a held decision is answered by `Approve` / `Reject`
/// inputs or expires at an engine deadline; only an approved one comes out to be
/// carried out, the others fail for the group with the texts the log has always
/// shown. Explicit `now`; nothing waits.
#[test]
fn the_gate_holds_answers_and_expires_on_the_engines_own_deadline() {
    use albatross_autoscale::core::gate::Answer;
    let policy = Policy {
        require_approval: RequireApproval {
            scale_up: true,
            ..RequireApproval::default()
        },
        approval_timeout: Duration::from_secs(120),
        scale_up_cooldown: Duration::ZERO,
        retry_backoff: Duration::from_secs(10),
        ..Policy::default()
    };
    let mut h = H::new(policy.clone());
    h.e = Engine::new(
        vec![(n("alice:web"), policy)],
        Options::default(),
        Timestamp(0),
    )
    .with_approvals(true);
    h.sample(0);
    let d = h.until_decision(95);
    assert!(
        h.e.is_held(&d.group, d.id),
        "a scale-up needing approval waits"
    );
    // Held: the deadline is at most the expiry, and an unrelated tick keeps it.
    let expiry = Timestamp(h.now + 120_000);
    assert!(h.e.next_deadline().is_some_and(|t| t <= expiry));

    // Approved by ops: it comes out once, to be carried out.
    let mut out = Vec::new();
    let (group, id) = ((*d.group).clone(), d.id);
    h.e.step(
        Timestamp(h.now + 1_000),
        Input::Approve {
            group: group.clone(),
            id,
            by: "ops".into(),
        },
        &mut out,
    );
    assert!(
        matches!(&out[..], [Output::Answered { decision, answer: Answer::Approved { by }, .. }] if decision.id == id && by == "ops"),
        "{out:?}"
    );
    assert!(!h.e.is_held(&group, id));
    // A second answer to the same decision does nothing.
    out.clear();
    h.e.step(
        Timestamp(h.now + 2_000),
        Input::Reject {
            group: group.clone(),
            id,
            by: "ops".into(),
        },
        &mut out,
    );
    assert!(out.is_empty(), "{out:?}");
    h.now += 2_000;
    h.input(Input::ActionResult {
        group: group.clone(),
        id,
        outcome: Ok(()),
    });

    // The next one is rejected: a failure for the group, with the key's name.
    let d = h.until_decision(95);
    out.clear();
    h.e.step(
        Timestamp(h.now),
        Input::Reject {
            group: group.clone(),
            id: d.id,
            by: "ops".into(),
        },
        &mut out,
    );
    assert!(matches!(
        &out[0],
        Output::Answered {
            answer: Answer::Rejected { .. },
            ..
        }
    ));
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::ActionFailed { error, .. } if error == "rejected by ops")),
        "{out:?}"
    );

    // The next is left alone: it expires at its own deadline, not a moment before.
    let d = h.until_decision(95);
    let held_at = h.now;
    let mut t = held_at;
    let mut expired_at = None;
    while expired_at.is_none() && t < held_at + 300_000 {
        t = h.e.next_deadline().unwrap().0.max(t + 1);
        out.clear();
        h.e.step(Timestamp(t), Input::Tick, &mut out);
        if out.iter().any(|o| matches!(o, Output::Answered { decision, answer: Answer::Expired, .. } if decision.id == d.id)) {
            expired_at = Some(t);
        }
    }
    assert_eq!(expired_at, Some(held_at + 120_000));
    assert!(
        out.iter().any(
            |o| matches!(o, Output::ActionFailed { error, .. } if error == "approval expired")
        ),
        "{out:?}"
    );
    assert!(!h.e.is_held(&group, d.id));
}
