//! The texts scripts and tests match, and the mappings code uses instead of them.

use std::time::Duration;

use super::*;

fn name(s: &str) -> Arc<Name> {
    Arc::new(s.parse().unwrap())
}

#[test]
fn why_not_texts_and_ceilings() {
    let at_max = WhyNot::AtBound(Bound {
        side: Side::Max,
        value: 2,
        window: None,
    });
    let window = WhyNot::AtBound(Bound {
        side: Side::Min,
        value: 1,
        window: Some("nights".into()),
    });
    let cases = [
        (at_max, "at max_instances (2)", None),
        (window, "at schedule 'nights' min 1", None),
        (
            WhyNot::Budget { max: 4 },
            "max_actions_per_hour (4) used up",
            Some(Ceiling::Budget),
        ),
        (
            WhyNot::GroupCost {
                n: 3,
                unit: 1_000_000,
                cost: 3_000_000,
                max: 2_000_000,
            },
            "cost: 3 instances at 1/h would cost 3/h, above max_cost_per_hour (2)",
            Some(Ceiling::Cost),
        ),
        (
            WhyNot::SizeGlobalCost {
                size: Size {
                    cores: 2,
                    cpulimit_centi: 0,
                    memory_mib: 512,
                },
                add: 500_000,
                room: 250_000,
            },
            "cost: 2 cores, 512 MiB would add 0.5/h, above what the global max_cost_per_hour leaves (0.25/h)",
            Some(Ceiling::Cost),
        ),
        (
            WhyNot::Cooldown {
                which: Cooldown::Up,
                until: Timestamp(60_000),
                left: Duration::from_secs(60),
            },
            "scale_up_cooldown: 1m left",
            None,
        ),
        (
            WhyNot::Backoff {
                failures: 1,
                what: Paced::Actions,
                until: Timestamp(30_000),
                left: Duration::from_secs(30),
            },
            "backing off after 1 failed action(s): 30s left",
            None,
        ),
        (
            WhyNot::InFlight {
                action: Action::ScaleUp,
                instance: name("a:web-1"),
            },
            "scale_up of a:web-1 still in flight",
            None,
        ),
        (
            // The orchestrator's own words, whatever they say.
            WhyNot::Refused("albatross policy: max_cost_per_hour".into()),
            "albatross policy: max_cost_per_hour",
            None,
        ),
        (
            WhyNot::Size(vec![
                SizeRule::CpuAtMin(2),
                SizeRule::BelowUsage {
                    used_mib: 1000,
                    margin_mib: 64,
                },
            ]),
            "cpu at its minimum (2); memory would fall below usage + margin (1000 + 64 MiB)",
            None,
        ),
    ];
    for (w, text, ceiling) in cases {
        assert_eq!(w.to_string(), text);
        assert_eq!(w.ceiling(), ceiling, "{text}");
        assert_eq!(serde_json::to_value(&w).unwrap(), text);
    }
}

#[test]
fn reason_texts_and_kinds() {
    let streak = Reason::Streak {
        up: true,
        avg: 8500,
        threshold: 80,
        ticks: 3,
        predicted: None,
    };
    let paused = WhyNot::Paused {
        would: Action::ScaleUp,
        reason: Box::new(streak.clone()),
    };
    assert_eq!(
        paused.to_string(),
        "paused (recommend-only); would scale_up: group average 85.00% > 80% for 3 consecutive ticks"
    );
    let cases = [
        (
            streak,
            "group average 85.00% > 80% for 3 consecutive ticks",
            "cpu_high",
        ),
        (
            Reason::Emergency {
                k: 1,
                step: 3,
                threshold: 95,
                avg: None,
            },
            "emergency scale-up 1 of 3: group average reached emergency_threshold (95%), now unknown",
            "cpu_high",
        ),
        (
            Reason::BelowMin { staying: 1, min: 2 },
            "below min_instances (1 < 2)",
            "below_min",
        ),
        (
            Reason::Window {
                bound: Bound {
                    side: Side::Max,
                    value: 1,
                    window: Some("nights".into()),
                },
                staying: 3,
            },
            "schedule 'nights' max 1 (3 instance(s) now)",
            "cpu_low",
        ),
        (
            Reason::Manual {
                target: 4,
                staying: 2,
            },
            "manual scale to 4 by the operator (2 instance(s) now)",
            "manual",
        ),
        (
            Reason::Drain {
                primary: name("a:web"),
            },
            "primary a:web dead; primary_death = drain",
            "primary_dead",
        ),
        (
            Reason::CloneLost {
                silent: Duration::from_secs(90),
                timeout: Duration::from_secs(60),
            },
            "no sample for 1m 30s; dropped from the group (death_timeout = 1m)",
            "no_samples",
        ),
    ];
    for (r, text, kind) in cases {
        assert_eq!(r.to_string(), text);
        assert_eq!(r.kind(), kind, "{text}");
    }
}
