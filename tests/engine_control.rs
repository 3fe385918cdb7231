//! Operator control of the pure engine: pause (recommend-only), resume, manual
//! scale. Explicit `now`, no clock, no I/O (same style as tests/engine.rs).

use std::time::Duration;

use albatross_autoscale::core::group::{MANUAL, PAUSED};
use albatross_autoscale::core::{
    Action, Engine, Input, Options, Output, Policy, Timestamp, Verdict,
};
use albatross_autoscale::name::Name;

mod common;

use common::{IV, decisions};

fn n(s: &str) -> Name {
    Name::parse(s).unwrap()
}

/// One group `alice:web`; the primary reports `pct` % every interval.
struct H {
    e: Engine,
    now: u64,
    cpu: u64,
    log: Vec<Output>,
}

impl H {
    fn new(policy: Policy) -> Self {
        let e = Engine::new(
            vec![(n("alice:web"), policy)],
            Options::default(),
            Timestamp(0),
        );
        let mut h = Self {
            e,
            now: 0,
            cpu: 1_000_000,
            log: Vec::new(),
        };
        h.sample(0);
        h
    }
    fn input(&mut self, input: Input) -> Vec<Output> {
        let mut out = Vec::new();
        self.e.step(Timestamp(self.now), input, &mut out);
        self.log.extend(out.iter().cloned());
        out
    }
    fn sample(&mut self, pct: u64) -> Vec<Output> {
        self.cpu += IV * 10 * pct;
        self.input(Input::Sample {
            vm: n("alice:web"),
            cpu_us: self.cpu,
            vcpus: None,
        })
    }
    /// One interval at `pct`, acknowledging every decision that needs a result.
    fn round(&mut self, pct: u64) -> Vec<Output> {
        self.now += IV;
        let out = self.sample(pct);
        self.ack(out)
    }
    /// An operator command whose decisions the actuator carries out at once.
    fn order(&mut self, input: Input) -> Vec<Output> {
        let out = self.input(input);
        self.ack(out)
    }
    fn ack(&mut self, mut out: Vec<Output>) -> Vec<Output> {
        let acks: Vec<Input> = decisions(&out)
            .iter()
            .filter(|d| d.action.needs_result())
            .map(|d| Input::ActionResult {
                group: n("alice:web"),
                id: d.id,
                outcome: Ok(()),
            })
            .collect();
        for a in acks {
            out.extend(self.input(a));
        }
        out
    }
    fn instances(&self) -> usize {
        self.e.groups()[0].members().count()
    }
}

fn verdicts(out: &[Output]) -> Vec<Verdict> {
    out.iter()
        .filter_map(|o| match o {
            Output::Evaluation(e) => Some(e.verdict.clone()),
            _ => None,
        })
        .collect()
}

fn policy() -> Policy {
    Policy {
        scale_up_threshold: 80,
        scale_up_ticks: 2,
        scale_down_threshold: 40,
        scale_down_ticks: 2,
        scale_up_cooldown: Duration::from_secs(60),
        scale_down_cooldown: Duration::from_secs(60),
        min_instances: 1,
        max_instances: 4,
        ..Policy::default()
    }
}

#[test]
fn paused_group_recommends_but_never_acts() {
    let mut h = H::new(policy());
    h.input(Input::Pause {
        group: n("alice:web"),
    });
    assert!(h.e.groups()[0].control().paused);
    for _ in 0..5 {
        let out = h.round(95);
        assert!(decisions(&out).is_empty(), "{out:?}");
    }
    // Every evaluation past the streak says what it would have done and why.
    let blocked: Vec<String> = verdicts(&h.log)
        .into_iter()
        .filter_map(|v| match v {
            Verdict::Blocked {
                wanted: Action::ScaleUp,
                why_not,
            } => Some(why_not.to_string()),
            _ => None,
        })
        .collect();
    assert_eq!(blocked.len(), 4, "{blocked:?}");
    assert!(
        blocked[0].starts_with(PAUSED) && blocked[0].contains("would scale_up"),
        "{blocked:?}"
    );
    assert_eq!(h.instances(), 1);
}

#[test]
fn resume_acts_on_the_standing_recommendation_at_once() {
    let mut h = H::new(policy());
    h.input(Input::Pause {
        group: n("alice:web"),
    });
    h.round(95);
    h.round(95);
    let out = h.input(Input::Resume {
        group: n("alice:web"),
    });
    let d = decisions(&out);
    assert_eq!(d.len(), 1, "{out:?}");
    assert_eq!(d[0].action, Action::ScaleUp);
    assert!(!h.e.groups()[0].control().paused);
}

#[test]
fn manual_scale_moves_one_action_at_a_time_and_holds() {
    let mut h = H::new(policy());
    let out = h.input(Input::Scale {
        group: n("alice:web"),
        target: 3,
    });
    let d = decisions(&out);
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].action, Action::ScaleUp);
    assert!(
        d[0].reason.to_string().starts_with(MANUAL),
        "{}",
        d[0].reason
    );
    // One in flight: the second waits for the first result.
    h.input(Input::ActionResult {
        group: n("alice:web"),
        id: d[0].id,
        outcome: Ok(()),
    });
    // No cooldown for manual orders: the next round creates the third instance.
    let out = h.round(10);
    assert_eq!(decisions(&out).len(), 1, "{out:?}");
    assert_eq!(h.instances(), 3);
    // Held at the target even though the load is low (automatic would scale down).
    for _ in 0..5 {
        assert!(decisions(&h.round(5)).is_empty());
    }
    assert_eq!(h.instances(), 3);
    assert_eq!(h.e.groups()[0].control().target, Some(3));
}

#[test]
fn manual_scale_down_and_resume_returns_to_automatic() {
    let mut h = H::new(policy());
    h.order(Input::Scale {
        group: n("alice:web"),
        target: 2,
    });
    assert_eq!(h.instances(), 2);
    let out = h.order(Input::Scale {
        group: n("alice:web"),
        target: 1,
    });
    let d = decisions(&out);
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].action, Action::ScaleDown);
    h.round(50);
    assert_eq!(h.instances(), 1);
    h.input(Input::Resume {
        group: n("alice:web"),
    });
    assert_eq!(h.e.groups()[0].control().target, None);
}

#[test]
fn manual_scale_is_carried_out_while_paused() {
    let mut h = H::new(policy());
    h.input(Input::Pause {
        group: n("alice:web"),
    });
    let out = h.input(Input::Scale {
        group: n("alice:web"),
        target: 2,
    });
    assert_eq!(decisions(&out).len(), 1);
    assert!(h.e.groups()[0].control().paused);
}

#[test]
fn out_of_range_target_is_refused_with_a_reason() {
    let mut h = H::new(policy());
    for target in [0, 5, u32::MAX] {
        let out = h.input(Input::Scale {
            group: n("alice:web"),
            target,
        });
        assert!(decisions(&out).is_empty());
        match verdicts(&out).as_slice() {
            [Verdict::Blocked { why_not, .. }] => {
                assert!(
                    why_not
                        .to_string()
                        .contains("min_instances..=max_instances"),
                    "{why_not}"
                )
            }
            v => panic!("{v:?}"),
        }
    }
    assert_eq!(h.e.groups()[0].control().target, None);
    assert!(h.e.groups()[0].check_target(4).is_ok());
}

#[test]
fn commands_for_unknown_groups_are_ignored() {
    let mut h = H::new(policy());
    let before = h.e.clone();
    assert!(h.input(Input::Pause { group: n("bob:db") }).is_empty());
    assert!(
        h.input(Input::Scale {
            group: n("bob:db"),
            target: 2
        })
        .is_empty()
    );
    assert_eq!(h.e, before);
}

#[test]
fn control_survives_a_reload_and_a_narrowed_bound_clamps_the_target() {
    let mut h = H::new(policy());
    h.input(Input::Pause {
        group: n("alice:web"),
    });
    h.input(Input::Scale {
        group: n("alice:web"),
        target: 4,
    });
    let narrow = Policy {
        max_instances: 2,
        ..policy()
    };
    let groups = vec![(n("alice:web"), narrow)];
    h.e.step(
        Timestamp(h.now),
        Input::Reconfigure { groups },
        &mut Vec::new(),
    );
    for _ in 0..6 {
        h.round(50);
    }
    assert!(h.e.groups()[0].control().paused);
    assert_eq!(h.instances(), 2);
}

/// Paused (recommend-only): a clone that stops reporting leaves the group, but
/// no destroy is decided; the evaluation says what would be done (issue 17:
/// "leave a lost clone alone while paused" is the core's rule, not the runner's).
#[test]
fn a_lost_clone_is_left_alone_while_paused() {
    let mut h = H::new(Policy {
        death_timeout: Duration::from_secs(30),
        ..policy()
    });
    h.input(Input::Adopt {
        group: n("alice:web"),
        vm: n("alice:web-clone-1"),
    });
    h.input(Input::Pause {
        group: n("alice:web"),
    });
    for _ in 0..5 {
        h.round(50); // the clone never reports
    }
    assert!(decisions(&h.log).is_empty(), "{:?}", decisions(&h.log));
    assert!(!h.e.groups()[0].has_member(&n("alice:web-clone-1")));
    let blocked = h.log.iter().any(|o| {
        matches!(o, Output::Evaluation(e) if matches!(&e.verdict,
            Verdict::Blocked { wanted: Action::CloneLost, why_not }
                if why_not.to_string().starts_with(&format!("{PAUSED}; would clone_lost: no sample for"))))
    });
    assert!(blocked, "{:#?}", h.log);
}
