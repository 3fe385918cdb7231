//! The indexes against a full scan, and the groups' phases.

use std::time::Duration;

use super::*;

/// The indexes kept up to date step by step equal ones built from scratch.
fn assert_indexes(e: &Engine) {
    let scan = e.clusters.iter().map(Group::next_deadline).min();
    assert_eq!(e.next_deadline(), scan);
    let mut fresh = e.clone();
    fresh.reroute();
    assert_eq!(e.routes, fresh.routes);
    let sum: u128 = e.clusters.iter().map(|c| u128::from(c.hourly_cost())).sum();
    assert_eq!(e.total_cost, sum);
}

fn policy(k: u64) -> Policy {
    Policy {
        sample_interval: Duration::from_secs(5 + k % 3 * 5),
        scale_up_ticks: 1,
        scale_down_ticks: 1,
        scale_up_cooldown: Duration::from_secs(20),
        scale_down_cooldown: Duration::from_secs(20),
        max_instances: 3,
        instance_cost_micros: 1_000_000 + k,
        ..Policy::default()
    }
}

#[test]
fn queue_routes_and_cost_match_a_scan_after_every_input() {
    let name = |k: u64| Name::parse(&format!("a:g{k}")).unwrap();
    let groups = (0..40).map(|k| (name(k), policy(k))).collect();
    let mut e = Engine::new(groups, Options::default(), Timestamp::ZERO)
        .with_cost_ceiling(Some(60_000_000));
    let (mut now, mut x, mut cpu) = (Timestamp::ZERO, 0x2545_f491_4f6c_dd1d_u64, 0u64);
    let mut out = Vec::new();
    for step in 0..4000u64 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        now = now.plus(Duration::from_millis(x % 700));
        let k = x % 40;
        let input = match step % 97 {
            // A reload that drops one group, adds another and keeps the rest.
            0 => Input::Reconfigure {
                groups: (0..40)
                    .filter(|&j| j != k)
                    .chain([40 + step % 7])
                    .map(|j| (name(j), policy(j + step)))
                    .collect(),
            },
            1 => Input::WallOrigin {
                origin_ms: i64::try_from(step).unwrap(),
            },
            2 => Input::InstanceCost {
                group: name(k),
                micros: step,
            },
            _ if x % 5 == 0 => Input::Tick,
            _ => {
                // Busy groups (k < 10) scale up; their clones report too.
                cpu += if k < 10 { 9_000_000 } else { 1_000_000 };
                let vm = if x % 3 == 0 {
                    Name::parse(&format!("a:g{k}-clone-1")).unwrap()
                } else {
                    name(k)
                };
                Input::Sample {
                    vm,
                    cpu_us: cpu,
                    vcpus: None,
                }
            }
        };
        let input = match (input, e.next_deadline()) {
            (Input::Tick, Some(t)) => {
                now = now.max(t);
                Input::Tick
            }
            (i, _) => i,
        };
        out.clear();
        e.step(now, input, &mut out);
        // Answer every decision at once, alternately done and failed.
        let decisions: Vec<Box<Decision>> = out
            .iter()
            .filter_map(|o| match o {
                Output::Decision(d) => Some(d.clone()),
                _ => None,
            })
            .collect();
        for d in decisions {
            let outcome = if d.id % 2 == 0 {
                Ok(())
            } else {
                Err("no".into())
            };
            e.step(
                now,
                Input::ActionResult {
                    group: (*d.group).clone(),
                    id: d.id,
                    outcome,
                },
                &mut out,
            );
        }
        assert_indexes(&e);
    }
    assert!(
        e.clusters.iter().any(|c| c.members().count() > 1),
        "nothing scaled"
    );
}

#[test]
fn groups_created_together_first_evaluate_apart_and_stay_apart() {
    // 1 000 silent groups at a 10 s interval: the timer evaluates them, in
    // [15 s, 25 s) the first time and 15 s after that.
    let groups = (0..1000)
        .map(|k| (Name::parse(&format!("a:vm{k}")).unwrap(), Policy::default()))
        .collect();
    let mut e = Engine::new(groups, Options::default(), Timestamp::ZERO);
    let interval = Policy::default().sample_interval;
    let first = Timestamp::ZERO.plus(interval.mul_f32(1.5));
    let (mut evaluations, mut most, mut out) = (FxMap::default(), 0, Vec::new());
    while let Some(t) = e
        .next_deadline()
        .filter(|t| *t < first.plus(interval * 5 / 2))
    {
        out.clear();
        e.step(t, Input::Tick, &mut out);
        let mut now = 0;
        for o in &out {
            if let Output::Evaluation(ev) = o {
                assert!(t >= first, "{} evaluated at {t:?}", ev.group);
                *evaluations.entry(ev.group.clone()).or_insert(0) += 1;
                now += 1;
            }
        }
        most = most.max(now);
    }
    // Every group twice (at 15 s + its phase, 15 s later), never more than a
    // handful in one instant.
    assert_eq!(evaluations.len(), 1000);
    assert!(evaluations.values().all(|&n| n == 2), "{evaluations:?}");
    assert!(most <= 8, "{most} groups evaluated in one tick");
}
