//! Ownership under interleavings (the race seen against a real albatross): the
//! engine and the daemon's ownership keeper, driven against a model of albatross
//! with random decisions, completions in any order, deaths, silent clones, foreign
//! instances and daemon restarts mid-action. After every step:
//! * every running clone the daemon created is in the record or being destroyed;
//! * nothing it does not own is ever destroyed;
//! * never two actions in flight on one name;
//! * never more instances than `max_instances` (foreign ones aside).

use std::collections::BTreeMap;
use std::time::Duration;

use albatross_autoscale::core::{
    Action, Decision, Engine, Input, Options, Output, Policy, Timestamp,
};
use albatross_autoscale::daemon::ownership::{Keeper, Listed, Ownership};
use albatross_autoscale::name::Name;
use proptest::prelude::*;

const IV: u64 = 10_000;
const GROUP: &str = "alice:web";
/// Unix ms of the model's t = 0.
const START: i64 = 1_700_000_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    Primary,
    /// Created by the daemon.
    Ours,
    /// Made by hand, named like a clone.
    Foreign,
}

#[derive(Debug, Clone)]
struct Running {
    who: Who,
    cpu_us: u64,
    /// Runs but sends no statistics.
    silent: bool,
    /// When it started (ms).
    started: u64,
}

#[derive(Debug, Clone)]
enum Op {
    /// One interval at this load: every reporting instance sends a sample.
    Round { hot: bool },
    /// The actuator finishes one action in flight (by index), well or not.
    Complete { idx: u8, ok: bool },
    /// The actuator gives up waiting for a reply (request_timeout); albatross
    /// carried the action out or not.
    NoReply { idx: u8, happened: bool },
    /// An instance (by index) dies.
    Kill { idx: u8 },
    /// An instance (by index) stops reporting.
    Silence { idx: u8 },
    /// Someone creates `alice:web-clone-N` by hand.
    Foreign { n: u8 },
    /// The daemon is killed and started again; actions in flight happened or not.
    Restart { applied: u8 },
    /// The periodic reconcile (`reconcile_interval`, and after a resubscribe).
    Reconcile,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => any::<bool>().prop_map(|hot| Op::Round { hot }),
        5 => (any::<u8>(), prop::bool::weighted(0.8)).prop_map(|(idx, ok)| Op::Complete { idx, ok }),
        1 => (any::<u8>(), any::<bool>()).prop_map(|(idx, happened)| Op::NoReply { idx, happened }),
        1 => any::<u8>().prop_map(|idx| Op::Kill { idx }),
        1 => any::<u8>().prop_map(|idx| Op::Silence { idx }),
        1 => (1u8..6).prop_map(|n| Op::Foreign { n }),
        1 => any::<u8>().prop_map(|applied| Op::Restart { applied }),
        1 => Just(Op::Reconcile),
    ]
}

fn name(s: &str) -> Name {
    Name::parse(s).unwrap()
}

fn policy() -> Policy {
    Policy {
        min_instances: 1,
        max_instances: 4,
        scale_up_threshold: 70,
        scale_up_ticks: 1,
        scale_down_threshold: 30,
        scale_down_ticks: 1,
        scale_up_cooldown: Duration::ZERO,
        scale_down_cooldown: Duration::ZERO,
        death_timeout: Duration::from_secs(25),
        startup_grace: Duration::ZERO,
        max_actions_per_hour: 1000,
        retry_backoff: Duration::from_secs(1),
        retry_backoff_max: Duration::from_secs(2),
        ..Policy::default()
    }
}

struct Sim {
    now: u64,
    world: BTreeMap<String, Running>,
    engine: Engine,
    keeper: Keeper,
    /// Actions the actuator is carrying out.
    pending: Vec<Decision>,
}

impl Sim {
    fn new() -> Self {
        let mut world = BTreeMap::new();
        world.insert(
            GROUP.to_string(),
            Running {
                who: Who::Primary,
                cpu_us: 0,
                silent: false,
                started: 0,
            },
        );
        Self {
            now: 0,
            world,
            engine: Self::engine(0),
            keeper: Keeper::new(Ownership::default()),
            pending: Vec::new(),
        }
    }

    fn wall(&self) -> i64 {
        START + self.now as i64
    }

    fn engine(now: u64) -> Engine {
        Engine::new(
            vec![(name(GROUP), policy())],
            Options::default(),
            Timestamp(now),
        )
    }

    fn step(&mut self, input: Input) {
        let mut out = Vec::new();
        self.engine.step(Timestamp(self.now), input, &mut out);
        for o in out {
            if let Output::Decision(d) = o {
                self.dispatch(*d);
            }
        }
    }

    /// As the runner does: one action per name, the record written before a create.
    fn dispatch(&mut self, d: Decision) {
        if d.action == Action::Promote {
            let _ = self.keeper.begin(&d, self.wall());
            return;
        }
        match self.keeper.begin(&d, self.wall()) {
            Ok(_) => self.pending.push(d),
            Err(why) => self.answer(&d, Err(why)),
        }
    }

    fn answer(&mut self, d: &Decision, outcome: Result<(), String>) {
        if d.action.needs_result() {
            self.step(Input::ActionResult {
                group: (*d.group).clone(),
                id: d.id,
                outcome,
            });
        }
    }

    /// What albatross does with the action; whether it worked.
    fn apply(&mut self, d: &Decision, ok: bool) -> bool {
        let n = d.instance.to_string();
        match d.action {
            Action::ScaleUp | Action::ReplacePrimary => {
                if !ok || self.world.contains_key(&n) {
                    return false; // refused, or "already running"
                }
                let who = if d.action == Action::ScaleUp {
                    Who::Ours
                } else {
                    Who::Primary
                };
                self.world.insert(
                    n,
                    Running {
                        who,
                        cpu_us: 0,
                        silent: false,
                        started: self.now,
                    },
                );
                true
            }
            Action::ScaleDown | Action::CloneLost => {
                if !ok {
                    return false;
                }
                if let Some(r) = self.world.get(&n) {
                    assert_eq!(r.who, Who::Ours, "destroyed {n}, which it does not own");
                    self.world.remove(&n);
                }
                true
            }
            Action::Promote => true,
        }
    }

    fn run(&mut self, op: &Op) {
        match *op {
            Op::Round { hot } => {
                self.now += IV;
                let share = if hot { 95 } else { 10 };
                let names: Vec<String> = self.world.keys().cloned().collect();
                for n in names {
                    let r = self.world.get_mut(&n).unwrap();
                    r.cpu_us += IV * 1000 * share / 100;
                    if r.silent {
                        continue;
                    }
                    let cpu_us = r.cpu_us;
                    self.step(Input::Sample {
                        vm: name(&n),
                        cpu_us,
                        vcpus: Some(1),
                    });
                }
                self.step(Input::Tick);
            }
            Op::Complete { idx, ok } => {
                if self.pending.is_empty() {
                    return;
                }
                self.now += 100;
                let d = self.pending.remove(usize::from(idx) % self.pending.len());
                let ok = self.apply(&d, ok);
                self.keeper.finish(&d, ok);
                let outcome = if ok { Ok(()) } else { Err("refused".into()) };
                self.answer(&d, outcome);
            }
            Op::NoReply { idx, happened } => {
                if self.pending.is_empty() {
                    return;
                }
                self.now += 100;
                let d = self.pending.remove(usize::from(idx) % self.pending.len());
                if happened {
                    self.apply(&d, true);
                }
                self.keeper.release(&d);
                // As the runner: an unanswered create counts as created.
                let outcome = if d.action == Action::ScaleUp {
                    Ok(())
                } else {
                    Err("no reply".into())
                };
                self.answer(&d, outcome);
                self.reconcile();
            }
            Op::Kill { idx } | Op::Silence { idx } => {
                let names: Vec<String> = self.world.keys().cloned().collect();
                if names.is_empty() {
                    return;
                }
                let n = &names[usize::from(idx) % names.len()];
                if matches!(op, Op::Kill { .. }) {
                    self.world.remove(n);
                } else if let Some(r) = self.world.get_mut(n) {
                    r.silent = true;
                }
            }
            Op::Foreign { n } => {
                let n = format!("alice:web-clone-{n}");
                // Nobody names a machine like one the daemon's record holds.
                if !self.world.contains_key(&n) && !self.keeper.record.owns(GROUP, &n) {
                    self.world.insert(
                        n,
                        Running {
                            who: Who::Foreign,
                            cpu_us: 0,
                            silent: false,
                            started: self.now,
                        },
                    );
                }
            }
            Op::Restart { applied } => {
                // Actions in flight at the crash happened (bit set) or not.
                for (i, d) in std::mem::take(&mut self.pending).iter().enumerate() {
                    if applied >> (i % 8) & 1 == 1 {
                        self.apply(d, true);
                    }
                }
                let record = self.keeper.record.clone();
                self.keeper = Keeper::new(record);
                self.engine = Self::engine(self.now);
                self.reconcile();
            }
            Op::Reconcile => self.reconcile(),
        }
    }

    /// As the runner does at start and after every resubscribe.
    fn reconcile(&mut self) {
        let running: Vec<String> = self.world.keys().cloned().collect();
        let listed: Vec<Listed> = self
            .world
            .iter()
            .map(|(n, r)| Listed {
                name: n.clone(),
                started_ms: Some(START + r.started as i64),
            })
            .collect();
        let found = self.keeper.reconcile(GROUP, &listed);
        for n in found.disowned {
            self.step(Input::Foreign {
                group: name(GROUP),
                vm: name(&n),
            });
        }
        for n in found.forgot {
            self.step(Input::Gone {
                group: name(GROUP),
                vm: name(&n),
            });
        }
        for n in found.adopt {
            self.step(Input::Adopt {
                group: name(GROUP),
                vm: name(&n),
            });
        }
        let c = &self.engine.groups()[0];
        let foreign: Vec<Name> = running
            .iter()
            .map(|n| name(n))
            .filter(|n| c.matches_clone_pattern(n) && !c.has_member(n))
            .collect();
        for vm in foreign {
            self.step(Input::Foreign {
                group: name(GROUP),
                vm,
            });
        }
    }

    fn check(&self) {
        for (n, r) in &self.world {
            if r.who != Who::Ours {
                continue;
            }
            let destroying = self.pending.iter().any(|d| {
                d.instance.to_string() == *n
                    && matches!(d.action, Action::ScaleDown | Action::CloneLost)
            });
            assert!(
                self.keeper.record.owns(GROUP, n) || destroying,
                "{n} runs, was created by the daemon, and is neither owned nor being destroyed"
            );
        }
        let mut names: Vec<String> = self
            .pending
            .iter()
            .map(|d| d.instance.to_string())
            .collect();
        names.sort();
        let len = names.len();
        names.dedup();
        assert_eq!(names.len(), len, "two actions in flight on one name");
        let ours = self
            .world
            .values()
            .filter(|r| r.who != Who::Foreign)
            .count();
        assert!(ours <= 4, "{ours} instances, above max_instances");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn every_clone_created_is_owned_and_nothing_else_is_destroyed(ops in prop::collection::vec(op(), 1..120)) {
        let mut sim = Sim::new();
        for op in &ops {
            sim.run(op);
            sim.check();
        }
    }
}

/// The interleaving seen against a real albatross, spelled out: a clone dies while
/// the group is hot at max_instances; its cleanup and a new clone of the same name
/// must not be in flight together, and the older completion must not erase the
/// newer record.
#[test]
fn a_lost_clone_and_its_successor_never_overlap() {
    let mut sim = Sim::new();
    for _ in 0..4 {
        sim.run(&Op::Round { hot: true });
        while !sim.pending.is_empty() {
            sim.run(&Op::Complete { idx: 0, ok: true });
        }
    }
    assert!(sim.world.len() >= 4, "{:?}", sim.world.keys());
    sim.run(&Op::Kill { idx: 1 }); // alice:web-clone-1 dies
    for _ in 0..5 {
        sim.run(&Op::Round { hot: true });
        sim.check();
    }
    let lost = sim
        .pending
        .iter()
        .position(|d| d.action == Action::CloneLost)
        .expect("the dead clone is lost");
    sim.run(&Op::Complete {
        idx: lost as u8,
        ok: true,
    });
    sim.run(&Op::Round { hot: true });
    while !sim.pending.is_empty() {
        sim.run(&Op::Complete { idx: 0, ok: true });
        sim.check();
    }
    assert!(sim.keeper.record.owns(GROUP, "alice:web-clone-1"));
    assert!(sim.world.contains_key("alice:web-clone-1"));
}
