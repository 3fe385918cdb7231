//! Property tests of the engine over random sample sequences and actuator failures.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use albatross_autoscale::core::group::Input;
use albatross_autoscale::core::{
    Action, Group, MemberState, Output, Policy, PrimaryDeath, Role, Rule, Timestamp,
};
use albatross_autoscale::name::Name;
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    /// Every live member reports once at this CPU %, then time moves on.
    Round { pct: u8, advance_ms: u32 },
    /// One member (by index) reports at this CPU %.
    One { idx: u8, pct: u8 },
    /// The actuator answers the oldest unanswered decision.
    Answer { ok: bool },
    /// Time passes without samples.
    Silence { ms: u32 },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (0u8..=100, 1_000u32..30_000).prop_map(|(pct, advance_ms)| Op::Round { pct, advance_ms }),
        2 => (0u8..8, 0u8..=100).prop_map(|(idx, pct)| Op::One { idx, pct }),
        3 => any::<bool>().prop_map(|ok| Op::Answer { ok }),
        1 => (1_000u32..400_000).prop_map(|ms| Op::Silence { ms }),
    ]
}

fn policy() -> impl Strategy<Value = Policy> {
    (
        (1u32..=3, 1u32..=6, 0u32..=3),
        (50u32..=95, 1u32..=4, 5u32..=45, 1u32..=4),
        (0u64..=120, 0u64..=600, 20u64..=200),
        (1u32..=6, 0usize..3, any::<bool>(), 10u32..=95),
    )
        .prop_map(
            |(
                (min, extra, budget),
                (up, upt, down, downt),
                (upc, downc, death),
                (step, pd, target, pct),
            )| Policy {
                // Both rules keep the same invariants (bursts of `step` included).
                rule: if target {
                    Rule::Target
                } else {
                    Rule::Thresholds
                },
                target_cpu_percent: pct,
                max_step_up: step,
                scale_down_stabilization: Duration::from_secs(downc / 2),
                min_instances: min,
                max_instances: min + extra,
                max_actions_per_hour: budget + 1,
                scale_up_threshold: up,
                scale_up_ticks: upt,
                scale_down_threshold: down,
                scale_down_ticks: downt,
                scale_up_cooldown: Duration::from_secs(upc),
                scale_down_cooldown: Duration::from_secs(downc),
                death_timeout: Duration::from_secs(death),
                primary_death: [
                    PrimaryDeath::Recreate,
                    PrimaryDeath::Promote,
                    PrimaryDeath::Drain,
                ][pd],
                retry_backoff: Duration::from_secs(5),
                ..Policy::default()
            },
        )
}

struct Run {
    c: Group,
    now: u64,
    cpu: HashMap<Arc<Name>, u64>,
    pending: VecDeque<u64>,
    outputs: Vec<Output>,
}

impl Run {
    fn feed(&mut self, input: Input) {
        let (c, out) = self.c.clone().handle(Timestamp(self.now), input);
        self.c = c;
        for o in &out {
            if let Output::Decision(d) = o
                && d.action.needs_result()
            {
                self.pending.push_back(d.id);
            }
        }
        self.outputs.extend(out);
    }
    fn advance(&mut self, ms: u64) {
        let until = self.now + ms;
        while self.c.next_deadline().0 <= until {
            self.now = self.now.max(self.c.next_deadline().0);
            self.feed(Input::Tick);
            if self.c.next_deadline().0 <= self.now {
                self.now += 1; // deadline did not move; never loop
            }
        }
        self.now = until;
    }
    fn sample(&mut self, vm: Arc<Name>, pct: u8, ms: u64) {
        let total = self.cpu.entry(vm.clone()).or_insert(0);
        *total += ms * 10 * u64::from(pct);
        let cpu_us = *total;
        self.feed(Input::Sample {
            vm,
            cpu_us,
            vcpus: None,
        });
    }
}

fn live(c: &Group) -> Vec<Arc<Name>> {
    c.members()
        .filter(|m| {
            matches!(
                m.state,
                MemberState::Running | MemberState::Leaving(_) | MemberState::Dead
            )
        })
        .map(|m| m.name.clone())
        .collect()
}

fn run(policy: &Policy, ops: &[Op]) -> Run {
    let mut r = Run {
        c: Group::new(Name::parse("u:svc").unwrap(), policy.clone(), Timestamp(0)),
        now: 0,
        cpu: HashMap::new(),
        pending: VecDeque::new(),
        outputs: Vec::new(),
    };
    for op in ops {
        match *op {
            Op::Round { pct, advance_ms } => {
                r.advance(u64::from(advance_ms));
                for vm in live(&r.c) {
                    r.sample(vm, pct, u64::from(advance_ms));
                }
            }
            Op::One { idx, pct } => {
                let members = live(&r.c);
                if let Some(vm) = members
                    .get(usize::from(idx) % members.len().max(1))
                    .cloned()
                {
                    r.sample(vm, pct, 10_000);
                }
            }
            Op::Answer { ok } => {
                if let Some(id) = r.pending.pop_front() {
                    let outcome = if ok { Ok(()) } else { Err("injected".into()) };
                    r.feed(Input::ActionResult { id, outcome });
                }
            }
            Op::Silence { ms } => r.advance(u64::from(ms)),
        }
        assert_invariants(policy, &r);
    }
    r
}

fn assert_invariants(p: &Policy, r: &Run) {
    let count = r.c.members().count() as u32;
    assert!(
        count <= p.max_instances,
        "{count} instances > max {}",
        p.max_instances
    );
    let primary = r.c.primary().clone();
    assert!(
        r.c.members()
            .any(|m| m.name == primary && m.role == Role::Primary),
        "the primary is always a member"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn bounds_budget_victims_and_determinism(p in policy(), ops in prop::collection::vec(op(), 1..120)) {
        let r = run(&p, &ops);
        // Budgeted actions in any sliding hour never exceed the budget.
        let spent: Vec<u64> = r.outputs.iter().filter_map(|o| match o {
            Output::Decision(d) if matches!(d.action, Action::ScaleUp | Action::ScaleDown | Action::ReplacePrimary) => Some(d.t.0),
            _ => None,
        }).collect();
        for (i, t) in spent.iter().enumerate() {
            let in_hour = spent[i..].iter().take_while(|u| **u < t + 3_600_000).count();
            prop_assert!(in_hour as u32 <= p.max_actions_per_hour, "{in_hour} actions in the hour from {t}");
        }
        for o in &r.outputs {
            if let Output::Decision(d) = o {
                match d.action {
                    Action::ScaleDown => {
                        prop_assert!(d.instance.label.as_deref() != Some("svc"), "the primary was a victim");
                        // Below min only when draining after the primary died.
                        prop_assert!(d.instances > p.min_instances || d.reason.to_string().contains("drain"), "{d:?}");
                    }
                    Action::ScaleUp => prop_assert!(d.instances < p.max_instances, "{d:?}"),
                    _ => {}
                }
            }
        }
        // Same inputs, same outputs and state.
        let again = run(&p, &ops);
        prop_assert_eq!(&again.outputs, &r.outputs);
        prop_assert_eq!(&again.c, &r.c);
    }
}
