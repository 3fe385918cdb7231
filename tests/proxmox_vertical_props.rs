//! Properties of the vertical sizing machine under arbitrary load: changed values
//! stay inside their bounds, memory never below usage + margin nor above the node's
//! room, the hourly budget is never exceeded, one resize in flight at a time.

use std::time::Duration;

use albatross_autoscale::core::Timestamp;
use albatross_autoscale::core::vertical::{
    CpuKnob, Input, Output, Size, Usage, Vertical, VerticalPolicy,
};
use proptest::prelude::*;

fn policy(knob: CpuKnob, budget: u32) -> VerticalPolicy {
    VerticalPolicy {
        cpu_up_threshold: 80,
        cpu_down_threshold: 30,
        mem_up_threshold: 85,
        mem_down_threshold: 40,
        up_ticks: 2,
        down_ticks: 3,
        up_cooldown: Duration::from_secs(30),
        down_cooldown: Duration::from_secs(60),
        max_actions_per_hour: budget,
        retry_backoff: Duration::from_secs(10),
        retry_backoff_max: Duration::from_secs(120),
        knob,
        cpu_min: if knob == CpuKnob::Cores { 1 } else { 50 },
        cpu_max: if knob == CpuKnob::Cores { 6 } else { 400 },
        cpu_step: if knob == CpuKnob::Cores { 1 } else { 50 },
        memory_min_mib: 256,
        memory_max_mib: 4096,
        memory_step_mib: 512,
        memory_margin_mib: 128,
        host_memory_reserve_mib: 1024,
        schedule: Default::default(),
        pricing: Default::default(),
    }
}

#[derive(Debug, Clone)]
struct Step {
    dt_s: u64,
    cpu_bp: u32,
    mem_used_pct: u32,
    node_free: Option<u32>,
    fail: bool,
}

fn steps() -> impl Strategy<Value = Vec<Step>> {
    prop::collection::vec(
        (
            1u64..40,
            0u32..12_000,
            0u32..110,
            prop::option::of(0u32..6000),
            prop::bool::weighted(0.2),
        )
            .prop_map(|(dt_s, cpu_bp, mem_used_pct, node_free, fail)| Step {
                dt_s,
                cpu_bp,
                mem_used_pct,
                node_free,
                fail,
            }),
        1..300,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn bounds_hold_and_the_budget_is_never_exceeded(
        steps in steps(),
        knob in prop_oneof![Just(CpuKnob::Cores), Just(CpuKnob::Cpulimit)],
        budget in 1u32..8,
    ) {
        let p = policy(knob, budget);
        let mut v = Vertical::new(p.clone());
        let mut size = Size { cores: 2, cpulimit_centi: 100, memory_mib: 1024 };
        let mut now = Timestamp::ZERO;
        let mut resizes: Vec<Timestamp> = Vec::new();
        for s in steps {
            now = now.plus(Duration::from_secs(s.dt_s));
            let used = size.memory_mib * s.mem_used_pct / 100;
            let usage = Usage { size, cpu_bp: s.cpu_bp, mem_used_mib: used, node_free_mib: s.node_free, clones: 0 };
            let (next, out) = v.handle(now, Input::Sample(usage));
            v = next;
            let mut in_flight = 0;
            for o in out {
                let Output::Resize(r) = o else { continue };
                in_flight += 1;
                prop_assert_eq!(r.from, size);
                let (cpu_from, cpu_to) = match knob {
                    CpuKnob::Cores => (r.from.cores, r.to.cores),
                    CpuKnob::Cpulimit => (r.from.cpulimit_centi, r.to.cpulimit_centi),
                };
                if cpu_to != cpu_from {
                    prop_assert!((p.cpu_min..=p.cpu_max).contains(&cpu_to), "cpu {cpu_to}");
                }
                if r.to.memory_mib != r.from.memory_mib {
                    prop_assert!((p.memory_min_mib..=p.memory_max_mib).contains(&r.to.memory_mib));
                    if r.to.memory_mib < r.from.memory_mib {
                        prop_assert!(r.to.memory_mib >= used + p.memory_margin_mib, "below usage + margin");
                    } else {
                        let room = s.node_free.unwrap_or(0).saturating_sub(p.host_memory_reserve_mib);
                        prop_assert!(r.to.memory_mib - r.from.memory_mib <= room, "host admission");
                    }
                }
                resizes.push(now);
                let hour_ago = now.minus(Duration::from_secs(3600));
                let in_hour = resizes.iter().filter(|t| **t > hour_ago).count();
                prop_assert!(in_hour <= budget as usize, "{in_hour} resizes in an hour, budget {budget}");
                let outcome = if s.fail { Err("boom".to_string()) } else { Ok(()) };
                if outcome.is_ok() {
                    size = r.to;
                }
                let (next, _) = v.handle(now, Input::Result { id: r.id, outcome });
                v = next;
            }
            prop_assert!(in_flight <= 1);
            if let Some(d) = v.next_deadline().filter(|d| *d > now) {
                let (next, out) = v.handle(d, Input::Tick);
                v = next;
                now = d;
                // A tick after a cooldown may act; answer it like the samples above.
                for o in out {
                    if let Output::Resize(r) = o {
                        resizes.push(now);
                        let hour_ago = now.minus(Duration::from_secs(3600));
                        prop_assert!(resizes.iter().filter(|t| **t > hour_ago).count() <= budget as usize);
                        size = r.to;
                        let (next, _) = v.handle(now, Input::Result { id: r.id, outcome: Ok(()) });
                        v = next;
                    }
                }
            }
        }
    }
}
