//! Target tracking (`rule = "target"`) of the pure engine: the desired count and
//! its reason, the tolerance band, bursts of up to `max_step_up`, and scale-down
//! only after a whole stabilization window of lower desired counts.

use std::time::Duration;

use albatross_autoscale::core::group::Input;
use albatross_autoscale::core::reason::{Tracking, TrackingStep};
use albatross_autoscale::core::{Action, Policy, Reason, Rule};

mod common;

use common::*;

fn policy(target: u32) -> Policy {
    Policy {
        rule: Rule::Target,
        target_cpu_percent: target,
        scale_up_cooldown: Duration::from_secs(600),
        scale_down_cooldown: Duration::from_secs(30),
        scale_down_stabilization: Duration::from_secs(60),
        death_timeout: Duration::from_secs(3600),
        max_instances: 10,
        max_actions_per_hour: 100,
        ..Policy::default()
    }
}

/// Acknowledge the action in flight and fire the timer at once, as the driver
/// does when the deadline is now (a burst's next step).
fn ack(h: &mut H) {
    h.ack_pending();
    if h.c().next_deadline().0 <= h.now {
        h.input(Input::Tick);
    }
}

fn h(policy: Policy) -> H {
    let mut h = H::new(policy);
    h.sample("alice:web", 0);
    h
}

#[test]
fn the_reason_names_the_arithmetic() {
    let mut h = h(policy(50));
    let d = decisions(&h.primary_round(100));
    assert_eq!(d.len(), 1, "{:?}", h.log);
    assert_eq!(d[0].action, Action::ScaleUp);
    assert_eq!(
        d[0].reason,
        Reason::Target(Tracking {
            desired: 2,
            demand: 10_000,
            target: 50,
            vcpus: 1,
            instances: 1,
            step: TrackingStep::Up { k: 1, step: 1 },
            forecast_mape: None,
        })
    );
    assert_eq!(
        d[0].reason_text(),
        "desired 2 = ceil(1.00 vCPU / (50 % × 1 vCPU)) > 1 instance(s): scale-up 1 of 1"
    );
    assert_eq!(d[0].reason.kind(), "cpu_high");
}

#[test]
fn nothing_happens_within_the_tolerance() {
    // 54 % of a 50 % target is within 10 %: hold, however long.
    let mut h = h(policy(50));
    for _ in 0..10 {
        assert!(decisions(&h.primary_round(54)).is_empty());
    }
    assert_eq!(h.c().desired(), Some(1));
    // 56 % is outside: ceil(0.56 / 0.5) = 2.
    let d = decisions(&h.primary_round(56));
    assert_eq!(d.len(), 1);
    assert!(d[0].reason_text().starts_with("desired 2 = ceil(0.56 vCPU"));
    // A tolerance of 0.2 (200 per mille) holds 56 % too.
    let mut h = self::h(Policy {
        tolerance_pm: 200,
        ..policy(50)
    });
    assert!(decisions(&h.primary_round(56)).is_empty());
}

#[test]
fn a_burst_adds_up_to_max_step_up_skipping_the_up_cooldown_between_its_steps() {
    // 100 % of one vCPU at a 25 % target: desired 4, 3 missing, step 2.
    let mut h = h(policy(25));
    let d = decisions(&h.primary_round(100));
    assert_eq!(d.len(), 1);
    assert!(
        d[0].reason_text().ends_with("scale-up 1 of 2"),
        "{}",
        d[0].reason_text()
    );
    // One action at a time: the second waits for the first's result, then follows
    // at once although the 600 s up-cooldown runs.
    ack(&mut h);
    let d = decisions(&h.log);
    assert_eq!(d.len(), 2, "{:?}", why_not(&h.log));
    assert!(
        d[1].reason_text().ends_with("scale-up 2 of 2"),
        "{}",
        d[1].reason_text()
    );
    assert_eq!(d[1].instance.to_string(), "alice:web-clone-2");
    ack(&mut h);
    // The burst is over: the next scale-up waits for the cooldown.
    let out = h.round(
        &["alice:web", "alice:web-clone-1", "alice:web-clone-2"],
        100,
    );
    assert!(decisions(&out).is_empty());
    assert!(
        why_not(&out)
            .iter()
            .any(|w| w.contains("scale_up_cooldown")),
        "{out:?}"
    );
}

#[test]
fn each_scale_up_of_a_burst_is_one_action_of_the_budget() {
    let mut h = h(Policy {
        max_actions_per_hour: 1,
        scale_up_cooldown: Duration::ZERO,
        ..policy(25)
    });
    assert_eq!(decisions(&h.primary_round(100)).len(), 1);
    ack(&mut h);
    assert_eq!(decisions(&h.log).len(), 1);
    let out = h.round(&["alice:web", "alice:web-clone-1"], 100);
    assert!(decisions(&out).is_empty());
    assert!(
        why_not(&out)
            .iter()
            .any(|w| w.contains("max_actions_per_hour")),
        "{out:?}"
    );
}

#[test]
fn max_instances_bounds_the_desired_count() {
    let mut h = h(Policy {
        max_instances: 2,
        scale_up_cooldown: Duration::ZERO,
        ..policy(10)
    });
    assert_eq!(decisions(&h.primary_round(100)).len(), 1);
    ack(&mut h);
    let out = h.round(&["alice:web", "alice:web-clone-1"], 100);
    assert!(decisions(&out).is_empty());
    assert!(
        why_not(&out).iter().any(|w| w.contains("max_instances")),
        "{out:?}"
    );
}

#[test]
fn scale_down_waits_for_a_whole_window_of_lower_counts_and_goes_one_at_a_time() {
    // 100 % at a 34 % target: desired 3 (a burst of 2).
    let mut h = h(policy(34));
    h.primary_round(100);
    ack(&mut h);
    ack(&mut h);
    let all = ["alice:web", "alice:web-clone-1", "alice:web-clone-2"];
    h.round(&all, 34);
    h.round(&all, 34);
    assert_eq!(decisions(&h.log).len(), 2);
    // 3 × 10 % = 0.3 vCPU: desired 1. Nothing until the 60 s window holds only
    // lower counts.
    let low_from = h.now + IV;
    let mut first_down = None;
    for _ in 0..20 {
        let out = h.round(&all, 10);
        if let Some(d) = decisions(&out).first() {
            assert_eq!(d.action, Action::ScaleDown);
            first_down = Some((h.now, d.clone()));
            break;
        }
    }
    let (t, d) = first_down.expect("a scale-down");
    assert!(t >= low_from + 60_000, "after {} ms", t - low_from);
    assert!(t <= low_from + 70_000, "after {} ms", t - low_from);
    assert_eq!(d.instance.to_string(), "alice:web-clone-2");
    assert_eq!(
        d.reason_text(),
        "desired 1 = ceil(0.30 vCPU / (34 % × 1 vCPU)); every desired count of the last 1m at most 1 < 3 instance(s)"
    );
    assert_eq!(d.reason.kind(), "cpu_low");
    ack(&mut h);
    // One at a time: the next one waits for scale_down_cooldown (30 s).
    let out = h.round(&all[..2], 10);
    assert!(decisions(&out).is_empty());
    assert!(
        why_not(&out)
            .iter()
            .any(|w| w.contains("scale_down_cooldown")),
        "{out:?}"
    );
    let mut downs = 0;
    for _ in 0..5 {
        downs += decisions(&h.round(&all[..2], 10)).len();
        ack(&mut h);
    }
    assert_eq!(downs, 1, "then down to min_instances and no further");
}

#[test]
fn one_higher_count_in_the_window_holds_the_scale_down() {
    let mut h = h(policy(34));
    h.primary_round(100);
    ack(&mut h);
    ack(&mut h);
    let all = ["alice:web", "alice:web-clone-1", "alice:web-clone-2"];
    for i in 0..12 {
        // Every 5th round the group is busy again: desired 3 is back in the window.
        let pct = if i % 5 == 4 { 34 } else { 10 };
        let out = h.round(&all, pct);
        assert!(decisions(&out).is_empty(), "round {i}: {out:?}");
    }
}

#[test]
fn thresholds_stay_the_default() {
    assert_eq!(Policy::default().rule, Rule::Thresholds);
    let mut h = h(Policy {
        rule: Rule::Thresholds,
        ..policy(25)
    });
    // 100 % for one tick: the threshold rule wants 3 ticks.
    assert!(decisions(&h.primary_round(100)).is_empty());
    assert_eq!(h.c().desired(), None);
}

mod config {
    use std::path::Path;
    use std::time::Duration;

    use albatross_autoscale::config::Config;
    use albatross_autoscale::core::Rule;

    const PVE: &str = "[proxmox]\nurl = \"http://127.0.0.1:8006\"\ntoken_id = \"a@pve!s\"\ntoken_secret_env = \"X\"\n";

    fn errors(text: &str) -> String {
        match Config::parse(text, Path::new("t.toml")) {
            Ok(_) => String::new(),
            Err(e) => format!("{e:#}"),
        }
    }

    #[test]
    fn the_keys_merge_per_group_with_their_defaults() {
        let c = Config::parse(
            "[policy]\nrule = \"target\"\ntarget_cpu_percent = 70\n\
             [[group]]\nprimary = \"a:web\"\n\
             [[group]]\nprimary = \"a:db\"\ntolerance = 0.05\nmax_step_up = 4\nscale_down_stabilization = \"10m\"\n\
             [[group]]\nprimary = \"a:job\"\nrule = \"thresholds\"\n",
            Path::new("t.toml"),
        )
        .unwrap();
        let p = |i: usize| &c.groups[i].policy;
        assert_eq!((p(0).rule, p(0).target_cpu_percent), (Rule::Target, 70));
        assert_eq!((p(0).tolerance_pm, p(0).max_step_up), (100, 2));
        assert_eq!(p(0).scale_down_stabilization, Duration::from_secs(300));
        assert_eq!((p(1).tolerance_pm, p(1).max_step_up), (50, 4));
        assert_eq!(p(1).scale_down_stabilization, Duration::from_secs(600));
        assert_eq!(p(2).rule, Rule::Thresholds);
        let d = Config::parse("", Path::new("t.toml")).unwrap().policy;
        assert_eq!((d.rule, d.target_cpu_percent), (Rule::Thresholds, 75));
    }

    #[test]
    fn bad_values_name_the_key_and_the_group() {
        for (text, want) in [
            (
                "[policy]\nrule = \"hpa\"\n".to_string(),
                "policy.rule: \"hpa\" is not \"thresholds\"",
            ),
            (
                "[[group]]\nprimary = \"a:b\"\ntarget_cpu_percent = 0\n".into(),
                "group[0] (a:b).target_cpu_percent: 0 is out of range 1..=100",
            ),
            (
                "[[group]]\nprimary = \"a:b\"\ntarget_cpu_percent = 120\n".into(),
                "group[0] (a:b).target_cpu_percent: 120 is out of range 1..=100",
            ),
            (
                "[[group]]\nprimary = \"a:b\"\ntolerance = -0.1\n".into(),
                "group[0] (a:b).tolerance: -0.1 is out of range 0.0..1.0",
            ),
            (
                "[policy]\ntolerance = 1.5\n".into(),
                "policy.tolerance: 1.5 is out of range",
            ),
            (
                "[policy]\nmax_step_up = 0\n".into(),
                "policy.max_step_up: 0 is out of range 1..=10000",
            ),
            (
                "[policy]\nscale_down_stabilization = \"soon\"\n".into(),
                "scale_down_stabilization",
            ),
            (
                format!("{PVE}[[lxc]]\nvmid = 101\nrule = \"target\"\n"),
                "lxc[0] (101).rule: \"target\" applies to horizontal modes",
            ),
        ] {
            let got = errors(&text);
            assert!(got.contains(want), "{text:?}: {got} lacks {want:?}");
        }
        // Horizontal [[lxc]] groups take it.
        let ok = format!(
            "{PVE}[[lxc]]\nvmid = 101\nmode = \"horizontal\"\nrule = \"target\"\ntarget_cpu_percent = 60\n"
        );
        let c = Config::parse(&ok, Path::new("t.toml")).unwrap();
        assert_eq!(c.lxc[0].policy.rule, Rule::Target);
        assert_eq!(c.lxc[0].policy.target_cpu_percent, 60);
    }

    #[test]
    fn the_recorded_tables_carry_the_keys_for_replay() {
        use albatross_autoscale::daemon::recorder::{groups_of, policy_tables};
        let text = "[policy]\nrule = \"target\"\ntarget_cpu_percent = 65\ntolerance = 0.2\nmax_step_up = 3\nscale_down_stabilization = \"2m\"\n[[group]]\nprimary = \"a:web\"\n";
        let live = Config::parse(text, Path::new("t.toml")).unwrap();
        let replayed = groups_of(&policy_tables(text)).unwrap();
        assert_eq!(replayed[0].1, *live.groups[0].policy);
        assert_eq!(replayed[0].1.tolerance_pm, 200);
    }
}

/// `/v1/groups` shows the rule and, under target tracking, the desired count.
#[test]
fn the_status_shows_the_rule_and_the_desired_count() {
    use albatross_autoscale::core::{Engine, Input as EInput, Options, Timestamp};
    let web = albatross_autoscale::name::Name::parse("alice:web").unwrap();
    let mut e = Engine::new(
        vec![(web.clone(), policy(50))],
        Options::default(),
        Timestamp::ZERO,
    );
    let mut out = Vec::new();
    for (t, cpu_us) in [(0u64, 0u64), (10_000, 10_000_000)] {
        let input = EInput::Sample {
            vm: web.clone(),
            cpu_us,
            vcpus: Some(1),
        };
        e.step(Timestamp(t), input, &mut out);
    }
    let s = e.status(Timestamp(10_000));
    let g = &s.groups[0];
    assert_eq!(g.rule, "target");
    assert_eq!(g.target_cpu_percent, Some(50));
    // 100 % of one vCPU at a 50 % target: 2 wanted.
    assert_eq!(g.desired_instances, Some(2));
    let v = serde_json::to_value(g).unwrap();
    assert_eq!(v["rule"], "target");
    assert_eq!(v["desired_instances"], 2);
}
