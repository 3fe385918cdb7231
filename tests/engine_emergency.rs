//! Emergency scale-up (`emergency_threshold`, `emergency_step`) and the cost
//! ceiling (`instance_cost_per_hour`, `max_cost_per_hour`) of the pure engine.

use std::path::Path;
use std::time::Duration;

use albatross_autoscale::config::Config;
use albatross_autoscale::core::group::Input;
use albatross_autoscale::core::{Action, Policy};

mod common;

use common::*;

/// The harness with the primary's first reading taken.
fn h(policy: Policy) -> H {
    let mut h = H::new(policy);
    h.sample("alice:web", 0);
    h
}

fn policy() -> Policy {
    Policy {
        scale_up_threshold: 80,
        scale_up_ticks: 3,
        scale_down_threshold: 20,
        scale_down_ticks: 100,
        scale_up_cooldown: Duration::from_secs(600),
        death_timeout: Duration::from_secs(3600),
        max_instances: 10,
        emergency_threshold: Some(95),
        ..Policy::default()
    }
}

#[test]
fn one_evaluation_at_the_threshold_scales_up_at_once() {
    let mut h = h(policy());
    let d = decisions(&h.primary_round(95));
    assert_eq!(d.len(), 1, "{:?}", h.log);
    assert_eq!(d[0].action, Action::ScaleUp);
    assert!(d[0].emergency);
    assert!(
        d[0].reason.to_string().contains("emergency"),
        "{}",
        d[0].reason
    );
    assert!(d[0].reason.to_string().contains("95%"), "{}", d[0].reason);
    assert_eq!(d[0].instance.to_string(), "alice:web-clone-1");
}

#[test]
fn just_below_the_threshold_waits_for_the_streak() {
    let mut h = h(policy());
    assert!(decisions(&h.primary_round(94)).is_empty());
    assert!(decisions(&h.primary_round(94)).is_empty());
    let d = decisions(&h.primary_round(94));
    assert_eq!(d.len(), 1);
    assert!(!d[0].emergency);
    assert!(
        !d[0].reason.to_string().contains("emergency"),
        "{}",
        d[0].reason
    );
}

#[test]
fn off_unless_set() {
    let mut h = h(Policy {
        emergency_threshold: None,
        ..policy()
    });
    assert!(decisions(&h.primary_round(100)).is_empty());
}

#[test]
fn skips_the_up_cooldown_but_waits_for_the_action_in_flight() {
    let mut h = h(Policy {
        emergency_step: 2,
        ..policy()
    });
    assert_eq!(decisions(&h.primary_round(100)).len(), 1);
    // Not acknowledged yet: one action at a time.
    let out = h.primary_round(100);
    assert!(decisions(&out).is_empty());
    assert!(why_not(&out)[0].contains("in flight"), "{out:?}");
    h.ack_pending();
    // The 600 s up-cooldown is running; the emergency rule skips it.
    let d = decisions(&h.primary_round(100));
    assert_eq!(d.len(), 1, "{:?}", why_not(&h.log));
    assert!(d[0].emergency);
    assert_eq!(d[0].instance.to_string(), "alice:web-clone-2");
}

#[test]
fn staying_above_starts_no_new_burst_until_the_average_drops() {
    let mut h = h(policy());
    assert_eq!(decisions(&h.primary_round(100)).len(), 1);
    h.ack_pending();
    for _ in 0..4 {
        h.primary_round(100);
    }
    // Only the streak rule remains, and the up-cooldown stops it.
    assert_eq!(decisions(&h.log).len(), 1);
    assert!(
        why_not(&h.log)
            .iter()
            .any(|w| w.contains("scale_up_cooldown"))
    );
    h.primary_round(50);
    let d = decisions(&h.primary_round(100));
    assert_eq!(d.len(), 1, "re-armed: {:?}", why_not(&h.log));
    assert!(d[0].emergency);
}

#[test]
fn a_normal_streak_still_respects_the_up_cooldown() {
    let mut h = h(policy());
    assert_eq!(decisions(&h.primary_round(100)).len(), 1);
    h.ack_pending();
    for _ in 0..3 {
        h.primary_round(85);
    }
    assert_eq!(decisions(&h.log).len(), 1);
    assert!(
        why_not(&h.log)
            .iter()
            .any(|w| w.contains("scale_up_cooldown"))
    );
}

#[test]
fn a_burst_adds_emergency_step_instances_one_action_at_a_time() {
    let mut h = h(Policy {
        emergency_step: 3,
        ..policy()
    });
    let d = decisions(&h.primary_round(100));
    assert_eq!(d.len(), 1);
    assert!(
        d[0].reason.to_string().contains("1 of 3"),
        "{}",
        d[0].reason
    );
    // The rest of the burst follows one per evaluation after each ack, whatever the
    // load does meanwhile.
    for k in 2..=3 {
        h.ack_pending();
        let d = decisions(&h.primary_round(50));
        assert_eq!(d.len(), 1, "step {k}: {:?}", why_not(&h.log));
        assert!(d[0].emergency);
        assert!(
            d[0].reason.to_string().contains(&format!("{k} of 3")),
            "{}",
            d[0].reason
        );
    }
    h.ack_pending();
    // Burst over: back to the streak rules (50 % is in the band: nothing).
    assert!(decisions(&h.primary_round(50)).is_empty());
    assert_eq!(decisions(&h.log).len(), 3);
    assert_eq!(h.c().members().count(), 4);
}

#[test]
fn never_above_max_instances() {
    let mut h = h(Policy {
        max_instances: 2,
        emergency_step: 5,
        ..policy()
    });
    for _ in 0..5 {
        h.primary_round(100);
        h.ack_pending();
    }
    let d = decisions(&h.log);
    assert_eq!(d.len(), 1, "{d:?}");
    assert!(why_not(&h.log).iter().any(|w| w.contains("max_instances")));
}

#[test]
fn never_above_the_hourly_budget() {
    let mut h = h(Policy {
        max_actions_per_hour: 2,
        emergency_step: 5,
        ..policy()
    });
    for _ in 0..5 {
        h.primary_round(100);
        h.ack_pending();
    }
    assert_eq!(decisions(&h.log).len(), 2);
    assert!(
        why_not(&h.log)
            .iter()
            .any(|w| w.contains("max_actions_per_hour"))
    );
}

#[test]
fn paused_groups_only_recommend_it() {
    let mut h = h(policy());
    h.input(Input::Pause);
    let out = h.primary_round(100);
    assert!(decisions(&out).is_empty());
    let w = why_not(&out);
    assert!(
        w[0].contains("paused") && w[0].contains("emergency"),
        "{w:?}"
    );
}

fn problems(text: &str) -> String {
    match Config::parse(text, Path::new("t.toml")) {
        Ok(_) => String::new(),
        Err(e) => e.to_string(),
    }
}

#[test]
fn config_keys_are_validated_naming_the_key() {
    let base = "[[group]]\nprimary = \"alice:web\"\n";
    let ok = format!("[policy]\nemergency_threshold = 97\nemergency_step = 2\n{base}");
    let c = Config::parse(&ok, Path::new("t.toml")).unwrap();
    let p = &c.groups[0].policy;
    assert_eq!((p.emergency_threshold, p.emergency_step), (Some(97), 2));
    let e = problems(&format!("[policy]\nemergency_threshold = 90\n{base}"));
    assert!(
        e.contains("policy.emergency_threshold: 90 must be above scale_up_threshold (90)"),
        "{e}"
    );
    let e = problems(&format!("[policy]\nemergency_threshold = 101\n{base}"));
    assert!(e.contains("emergency_threshold"), "{e}");
    let e = problems(&format!("[policy]\nemergency_step = 0\n{base}"));
    assert!(
        e.contains("policy.emergency_step: 0 is out of range"),
        "{e}"
    );
    // Defaults: off, step 1.
    let c = Config::parse(base, Path::new("t.toml")).unwrap();
    assert_eq!(c.groups[0].policy.emergency_threshold, None);
    assert_eq!(c.groups[0].policy.emergency_step, 1);
}

fn priced(max_cost_micros: Option<u64>) -> Policy {
    Policy {
        instance_cost_micros: 500_000, // 0.5 per hour
        max_cost_micros,
        emergency_step: 5,
        scale_up_cooldown: Duration::ZERO,
        ..policy()
    }
}

#[test]
fn a_scale_up_past_the_cost_ceiling_is_not_emitted() {
    // 1.2/h at 0.5/h an instance: two instances fit, a third would cost 1.5/h.
    let mut h = h(priced(Some(1_200_000)));
    for _ in 0..6 {
        h.primary_round(85);
        h.ack_pending();
    }
    let d = decisions(&h.log);
    assert_eq!(d.len(), 1, "{d:?}");
    assert!(!d[0].emergency);
    let w = why_not(&h.log);
    assert!(
        w.iter()
            .any(|w| w
                == "cost: 3 instances at 0.5/h would cost 1.5/h, above max_cost_per_hour (1.2)"),
        "{w:?}"
    );
}

#[test]
fn the_cost_ceiling_stops_an_emergency_burst_too() {
    let mut h = h(priced(Some(1_000_000)));
    for _ in 0..4 {
        h.primary_round(100);
        h.ack_pending();
    }
    let d = decisions(&h.log);
    assert_eq!(d.len(), 1, "{d:?}");
    assert!(d[0].emergency);
    assert!(why_not(&h.log).iter().any(|w| w.starts_with("cost:")));
}

#[test]
fn without_a_ceiling_cost_never_blocks() {
    let mut h = h(priced(None));
    for _ in 0..4 {
        h.primary_round(100);
        h.ack_pending();
    }
    assert_eq!(decisions(&h.log).len(), 4);
}

#[test]
fn cost_keys_are_validated_naming_the_key() {
    let base = "[[group]]\nprimary = \"alice:web\"\n";
    let ok = format!("[policy]\ninstance_cost_per_hour = 0.25\nmax_cost_per_hour = 1\n{base}");
    let c = Config::parse(&ok, Path::new("t.toml")).unwrap();
    let p = &c.groups[0].policy;
    assert_eq!(
        (p.instance_cost_micros, p.max_cost_micros),
        (250_000, Some(1_000_000))
    );
    let e = problems(&format!("[policy]\ninstance_cost_per_hour = -1.0\n{base}"));
    assert!(
        e.contains("policy.instance_cost_per_hour: -1 is out of range"),
        "{e}"
    );
    let e = problems(&format!("[policy]\nmax_cost_per_hour = 0.0\n{base}"));
    assert!(
        e.contains("policy.max_cost_per_hour: 0 must be above 0"),
        "{e}"
    );
    let e = problems(&format!(
        "[policy]\ninstance_cost_per_hour = 1.0\nmax_cost_per_hour = 1.5\nmin_instances = 2\n{base}"
    ));
    assert!(
        e.contains("policy.max_cost_per_hour: 1.5 is below min_instances (2)"),
        "{e}"
    );
}
