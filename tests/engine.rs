//! Scenario tests of the pure engine: explicit `now`, no clock, no I/O.

use std::time::Duration;

use albatross_autoscale::core::group::Input;
use albatross_autoscale::core::{Action, MemberState, Output, Policy, PrimaryDeath, Timestamp};
use albatross_autoscale::name::Name;

mod common;

use common::*;

fn policy() -> Policy {
    Policy {
        scale_up_threshold: 80,
        scale_up_ticks: 3,
        scale_down_threshold: 40,
        scale_down_ticks: 2,
        scale_up_cooldown: Duration::from_secs(60),
        scale_down_cooldown: Duration::from_secs(60),
        ..Policy::default()
    }
}

#[test]
fn scales_up_on_the_third_high_tick_and_names_the_clone() {
    let mut h = H::new(policy());
    h.sample("alice:web", 0);
    for i in 1..=2 {
        assert!(
            decisions(&h.round(&["alice:web"], 85)).is_empty(),
            "tick {i}"
        );
    }
    let d = decisions(&h.round(&["alice:web"], 85));
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].action, Action::ScaleUp);
    assert_eq!(d[0].instance.to_string(), "alice:web-clone-1");
    assert_eq!(d[0].avg_bp, Some(8_500));
    assert!(
        d[0].reason.to_string().contains("85.00% > 80% for 3"),
        "{}",
        d[0].reason
    );
}

#[test]
fn between_thresholds_both_streaks_end() {
    let mut h = H::new(policy());
    h.sample("alice:web", 0);
    h.round(&["alice:web"], 90);
    h.round(&["alice:web"], 90);
    h.round(&["alice:web"], 60); // hysteresis band
    h.round(&["alice:web"], 90);
    h.round(&["alice:web"], 90);
    assert!(decisions(&h.log).is_empty());
    assert_eq!(h.c().counters(), (2, 0));
}

#[test]
fn clone_samples_do_not_speed_up_the_counters() {
    let mut h = H::new(Policy {
        max_instances: 2,
        ..policy()
    });
    h.input(Input::Adopt {
        vm: name("alice:web-clone-1"),
    });
    h.sample("alice:web", 0);
    h.sample("alice:web-clone-1", 0);
    h.round(&["alice:web", "alice:web-clone-1"], 95);
    h.round(&["alice:web", "alice:web-clone-1"], 95);
    assert_eq!(
        h.c().counters().0,
        2,
        "two intervals are two ticks, whatever the member count"
    );
}

#[test]
fn up_cooldown_blocks_with_a_reason_and_acts_when_it_ends() {
    let mut h = H::new(Policy {
        scale_up_ticks: 1,
        ..policy()
    });
    h.sample("alice:web", 0);
    h.round(&["alice:web"], 95);
    h.ack_all(true);
    let out = h.round(&["alice:web"], 95);
    assert!(
        why_not(&out)[0].starts_with("scale_up_cooldown: "),
        "{:?}",
        why_not(&out)
    );
    // The cooldown (60 s after t = 10 s) ends at 70 s: the re-decision fires then,
    // on the timer, not at the next sample.
    h.at(75_000);
    let d = decisions(&h.log);
    assert_eq!(d.len(), 2);
    assert_eq!(d[1].t, Timestamp(70_000));
    assert_eq!(d[1].instance.to_string(), "alice:web-clone-2");
}

#[test]
fn max_instances_is_never_exceeded_and_says_why() {
    let mut h = H::new(Policy {
        max_instances: 2,
        scale_up_ticks: 1,
        scale_up_cooldown: Duration::ZERO,
        ..policy()
    });
    h.sample("alice:web", 0);
    for _ in 0..5 {
        h.round(&["alice:web"], 99);
        h.ack_all(true);
    }
    assert_eq!(decisions(&h.log).len(), 1);
    assert!(why_not(&h.log).iter().any(|w| w == "at max_instances (2)"));
    assert_eq!(h.c().members().count(), 2);
}

#[test]
fn scale_down_removes_the_newest_owned_clone_never_primary_or_foreign() {
    let mut h = H::new(Policy {
        scale_down_cooldown: Duration::ZERO,
        ..policy()
    });
    h.input(Input::Foreign {
        vm: name("alice:web-clone-9"),
    });
    h.input(Input::Adopt {
        vm: name("alice:web-clone-1"),
    });
    h.input(Input::Adopt {
        vm: name("alice:web-clone-2"),
    });
    let all = ["alice:web", "alice:web-clone-1", "alice:web-clone-2"];
    for vm in all {
        h.sample(vm, 0);
    }
    h.round(&all, 5);
    let d = decisions(&h.round(&all, 5));
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].action, Action::ScaleDown);
    assert_eq!(d[0].instance.to_string(), "alice:web-clone-2");
    h.ack_all(true);
    h.round(&all[..2], 5);
    let d = decisions(&h.round(&all[..2], 5));
    assert_eq!(d[0].instance.to_string(), "alice:web-clone-1");
    h.input(Input::ActionResult {
        id: d[0].id,
        outcome: Ok(()),
    });
    for _ in 0..5 {
        h.round(&all[..1], 5);
    }
    assert_eq!(decisions(&h.log).len(), 2, "the primary is never a victim");
    assert!(why_not(&h.log).iter().any(|w| w == "at min_instances (1)"));
    // The foreign clone-9 was never touched, and a new clone reuses index 1.
    assert!(
        decisions(&h.log)
            .iter()
            .all(|d| d.instance.to_string() != "alice:web-clone-9")
    );
}

#[test]
fn a_silent_clone_is_not_averaged_and_is_dropped_after_death_timeout() {
    let mut h = H::new(Policy {
        death_timeout: Duration::from_secs(30),
        ..policy()
    });
    h.input(Input::Adopt {
        vm: name("alice:web-clone-1"),
    });
    h.sample("alice:web", 0);
    h.sample("alice:web-clone-1", 0);
    h.round(&["alice:web", "alice:web-clone-1"], 100);
    // The clone goes silent at 10 s at 100 %; the primary idles at 50 %.
    h.round(&["alice:web"], 50);
    h.round(&["alice:web"], 50);
    let out = h.round(&["alice:web"], 50); // t = 40 s: clone silent for 30 s
    let d = decisions(&out);
    assert_eq!(d[0].action, Action::CloneLost);
    assert_eq!(d[0].instance.to_string(), "alice:web-clone-1");
    let Some(Output::Evaluation(e)) = out.last() else {
        panic!()
    };
    // Not averaged; still counted (its remains may run) until the cleanup answers.
    assert_eq!((e.avg_bp, e.fresh, e.instances), (Some(5_000), 1, 2));
    h.input(Input::ActionResult {
        id: d[0].id,
        outcome: Ok(()),
    });
    assert!(!h.c().has_member(&name("alice:web-clone-1")));
    assert!(h.c().is_retired(&name("alice:web-clone-1")));
}

/// Seen against a real albatross: a clone died while its group was hot and at
/// max_instances; `clone_lost` and `scale_up` of the same name went out a few ms
/// apart, and the older destroy's completion erased the new clone's ownership.
/// The lost clone's name stays taken until its cleanup is answered.
#[test]
fn a_lost_clone_name_is_not_reused_before_its_cleanup_is_answered() {
    let mut h = H::new(Policy {
        max_instances: 2,
        scale_up_ticks: 1,
        scale_up_cooldown: Duration::ZERO,
        death_timeout: Duration::from_secs(30),
        ..policy()
    });
    h.input(Input::Adopt {
        vm: name("alice:web-clone-1"),
    });
    h.sample("alice:web", 0);
    h.sample("alice:web-clone-1", 0);
    h.round(&["alice:web", "alice:web-clone-1"], 95);
    // The clone dies; the primary stays hot.
    let mut lost = None;
    let mut during = Vec::new();
    for _ in 0..6 {
        for d in decisions(&h.round(&["alice:web"], 95)) {
            match (d.action, lost) {
                (Action::CloneLost, None) => lost = Some(d.id),
                (_, None) => {}
                (_, Some(_)) => during.push(d),
            }
        }
    }
    let lost = lost.expect("the silent clone is lost");
    assert!(
        during.is_empty(),
        "nothing acts on the name (or above max) before the cleanup answers: {during:?}"
    );
    h.input(Input::ActionResult {
        id: lost,
        outcome: Ok(()),
    });
    let d = decisions(&h.round(&["alice:web"], 95));
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(d[0].action, Action::ScaleUp);
    assert_eq!(d[0].instance.to_string(), "alice:web-clone-1");
}

#[test]
fn counter_reset_starts_a_new_baseline() {
    let mut h = H::new(policy());
    h.sample("alice:web", 0);
    h.now += IV;
    let out = h.input(Input::Sample {
        vm: name("alice:web"),
        cpu_us: 5,
        vcpus: None,
    });
    assert!(matches!(out[0], Output::CounterReset { .. }));
    h.now += IV;
    let out = h.input(Input::Sample {
        vm: name("alice:web"),
        cpu_us: 5 + 5_000_000,
        vcpus: None,
    });
    let Output::Sample(s) = &out[0] else {
        panic!("{out:?}")
    };
    assert_eq!(s.bp, 5_000);
}

#[test]
fn startup_grace_keeps_boot_cpu_out_of_the_average() {
    let mut h = H::new(Policy {
        startup_grace: Duration::from_secs(25),
        scale_up_ticks: 1,
        max_instances: 2,
        ..policy()
    });
    h.sample("alice:web", 0);
    h.round(&["alice:web"], 95);
    h.ack_all(true); // clone-1 created at 10 s
    h.sample("alice:web-clone-1", 0);
    let out = h.round(&["alice:web", "alice:web-clone-1"], 0); // clone at 20 s: in grace
    let Some(Output::Evaluation(e)) = out.last() else {
        panic!()
    };
    assert_eq!(e.fresh, 1);
    h.round(&["alice:web", "alice:web-clone-1"], 0);
    let out = h.round(&["alice:web", "alice:web-clone-1"], 0); // 40 s: 30 s old
    let Some(Output::Evaluation(e)) = out.last() else {
        panic!()
    };
    assert_eq!(e.fresh, 2);
}

#[test]
fn the_hourly_budget_is_never_exceeded() {
    let p = Policy {
        max_actions_per_hour: 2,
        scale_up_ticks: 1,
        scale_down_ticks: 1,
        scale_up_cooldown: Duration::ZERO,
        scale_down_cooldown: Duration::ZERO,
        ..policy()
    };
    let mut h = H::new(p);
    h.sample("alice:web", 0);
    for i in 0..20 {
        let pct = if i % 2 == 0 { 95 } else { 5 };
        let vms: Vec<&str> = ["alice:web", "alice:web-clone-1"]
            .into_iter()
            .filter(|v| h.c().has_member(&Name::parse(v).unwrap()))
            .collect();
        h.round(&vms, pct);
        h.ack_all(true);
    }
    assert_eq!(decisions(&h.log).len(), 2);
    assert!(
        why_not(&h.log)
            .iter()
            .any(|w| w.starts_with("max_actions_per_hour (2) used up"))
    );
}

#[test]
fn a_failed_create_is_rolled_back_and_retried_after_backoff() {
    let p = Policy {
        scale_up_ticks: 1,
        scale_up_cooldown: Duration::ZERO,
        retry_backoff: Duration::from_secs(20),
        ..policy()
    };
    let mut h = H::new(p);
    h.sample("alice:web", 0);
    h.round(&["alice:web"], 95);
    h.ack_all(false);
    assert_eq!(
        h.c().members().count(),
        1,
        "the failed clone is not counted"
    );
    assert!(h.log.iter().any(|o| matches!(o, Output::ActionFailed { retry_in, .. } if *retry_in == Duration::from_secs(20))));
    let out = h.round(&["alice:web"], 95); // 20 s: 10 s into the backoff
    assert!(why_not(&out)[0].starts_with("backing off after 1 failed action(s)"));
    h.at(31_000);
    let d = decisions(&h.log);
    assert_eq!(d.len(), 2);
    assert_eq!(d[1].t, Timestamp(30_000));
    assert_eq!(d[1].instance.to_string(), "alice:web-clone-1");
}

#[test]
fn the_timer_evaluates_while_the_primary_is_silent() {
    let mut h = H::new(Policy {
        death_timeout: Duration::from_secs(300),
        ..policy()
    });
    h.input(Input::Adopt {
        vm: name("alice:web-clone-1"),
    });
    h.sample("alice:web", 0);
    h.sample("alice:web-clone-1", 0);
    // Only the clone reports, at 95 %: evaluations still happen (every interval
    // after the first 1.5 intervals of silence) and count.
    for _ in 0..4 {
        h.round(&["alice:web-clone-1"], 95);
    }
    h.at(h.now + IV);
    assert!(
        decisions(&h.log)
            .iter()
            .any(|d| d.action == Action::ScaleUp)
    );
}

fn primary_dies(death: PrimaryDeath) -> H {
    let mut h = H::new(Policy {
        primary_death: death,
        death_timeout: Duration::from_secs(30),
        ..policy()
    });
    h.input(Input::Adopt {
        vm: name("alice:web-clone-1"),
    });
    h.input(Input::Adopt {
        vm: name("alice:web-clone-2"),
    });
    for vm in ["alice:web", "alice:web-clone-1", "alice:web-clone-2"] {
        h.sample(vm, 0);
    }
    for _ in 0..5 {
        h.round(&["alice:web-clone-1", "alice:web-clone-2"], 60);
    }
    h
}

#[test]
fn primary_death_recreate() {
    let mut h = primary_dies(PrimaryDeath::Recreate);
    let d = decisions(&h.log);
    assert_eq!(d.len(), 1);
    assert_eq!(
        (d[0].action, d[0].instance.to_string()),
        (Action::ReplacePrimary, "alice:web".to_string())
    );
    h.ack_all(true);
    let m = h
        .c()
        .members()
        .find(|m| m.name.to_string() == "alice:web")
        .unwrap();
    assert_eq!(m.state, MemberState::Running);
}

#[test]
fn primary_death_promote() {
    let h = primary_dies(PrimaryDeath::Promote);
    let d = decisions(&h.log);
    assert_eq!(
        (d[0].action, d[0].instance.to_string()),
        (Action::Promote, "alice:web-clone-1".to_string())
    );
    assert_eq!(h.c().primary().to_string(), "alice:web-clone-1");
    assert_eq!(h.c().members().count(), 2);
}

#[test]
fn primary_death_drain_destroys_owned_clones_newest_first() {
    let mut h = primary_dies(PrimaryDeath::Drain);
    h.ack_all(true);
    h.round(&["alice:web-clone-1"], 60);
    h.round(&["alice:web-clone-1"], 60);
    h.ack_all(true);
    let d: Vec<String> = decisions(&h.log)
        .iter()
        .map(|d| format!("{}:{}", d.action.as_str(), d.instance))
        .collect();
    assert_eq!(
        d,
        [
            "scale_down:alice:web-clone-2",
            "scale_down:alice:web-clone-1"
        ]
    );
}

/// `vcpus` set by the operator overrides what the source says (albatross reports
/// `numcpus`, which a solo5 unikernel does not get); unset, the source's count is
/// used. One second of CPU in ten over 2 vCPUs is 5 %, over 1 vCPU 10 %.
#[test]
fn an_explicit_vcpus_overrides_the_sources_count() {
    use albatross_autoscale::core::{Engine, Input as E, Options};
    let share = |p: Policy, source: u32| {
        let mut e = Engine::new(
            vec![(name_of("a:web"), p)],
            Options::default(),
            Timestamp(0),
        );
        let mut out = Vec::new();
        for (t, cpu) in [(0u64, 0u64), (10_000, 1_000_000)] {
            e.step(
                Timestamp(t),
                E::Sample {
                    vm: name_of("a:web"),
                    cpu_us: cpu,
                    vcpus: Some(source),
                },
                &mut out,
            );
        }
        out.iter()
            .find_map(|o| match o {
                Output::Sample(s) => Some((s.cpu_percent(), s.vcpus)),
                _ => None,
            })
            .unwrap()
    };
    assert_eq!(share(policy(), 1), (10.0, 1));
    assert_eq!(share(policy(), 2), (5.0, 2));
    let fixed = Policy {
        vcpus: 1,
        vcpus_fixed: true,
        ..policy()
    };
    assert_eq!(share(fixed, 2), (10.0, 1), "the key wins over numcpus");
}

fn name_of(s: &str) -> Name {
    Name::parse(s).unwrap()
}

/// A scale-up's reason says when the clone adds no CPU: the orchestrator allows
/// no CPU but the primary's (`CpuRoom`), or `clone_cpus = "same"`; otherwise it is
/// the plain reason.
#[test]
fn a_scale_up_says_when_its_clone_adds_no_cpu() {
    let reason = |p: Policy, room: Option<bool>| {
        let mut h = H::new(p);
        if let Some(other_cpus) = room {
            h.input(Input::CpuRoom { other_cpus });
        }
        h.sample("alice:web", 0);
        let mut d = Vec::new();
        for _ in 0..3 {
            d.extend(decisions(&h.round(&["alice:web"], 85)));
        }
        d[0].reason_text()
    };
    const NOTE: &str = "the clone shares the primary's CPU, so it adds no CPU capacity";
    assert!(!reason(policy(), None).contains(NOTE));
    assert!(!reason(policy(), Some(true)).contains(NOTE));
    let r = reason(policy(), Some(false));
    assert!(r.contains("85.00% > 80% for 3") && r.ends_with(NOTE), "{r}");
    let same = Policy {
        clone_cpus: albatross_autoscale::core::CloneCpus::Same,
        ..policy()
    };
    assert!(reason(same, Some(true)).ends_with(NOTE));
}
