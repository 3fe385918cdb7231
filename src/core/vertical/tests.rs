//! Unit tests of the vertical machine: shares, counters, cost ceilings.

use super::*;

#[test]
fn share_uses_the_effective_allowance() {
    // 4 cores, cpulimit 1: maxcpu = 4, cpu tops out at 0.25 = 100 % of 1 CPU.
    assert_eq!(cpu_share(0.25, 4.0, 4, 100), 10_000);
    assert_eq!(cpu_share(0.5, 2.0, 2, 0), 5_000);
    assert_eq!(cpu_share(f64::NAN, 2.0, 2, 0), 0);
    assert_eq!(cpu_share(0.5, 2.0, 0, 0), 5_000);
}

#[test]
fn counter_gives_the_share_back() {
    let c = advance_counter(0, 7_500, 10_000);
    assert!(matches!(
        cpu::delta(
            cpu::Reading {
                at: Timestamp(0),
                cpu_us: 0
            },
            cpu::Reading {
                at: Timestamp(10_000),
                cpu_us: c
            },
            1
        ),
        cpu::Delta::Share { bp: 7_500, .. }
    ));
}

fn priced(max_micros: Option<u64>) -> VerticalPolicy {
    VerticalPolicy {
        cpu_up_threshold: 80,
        cpu_down_threshold: 10,
        mem_up_threshold: 95,
        mem_down_threshold: 1,
        up_ticks: 1,
        down_ticks: 100,
        up_cooldown: Duration::ZERO,
        down_cooldown: Duration::ZERO,
        max_actions_per_hour: 100,
        retry_backoff: Duration::from_secs(1),
        retry_backoff_max: Duration::from_secs(1),
        knob: CpuKnob::Cores,
        cpu_min: 1,
        cpu_max: 8,
        cpu_step: 1,
        memory_min_mib: 1024,
        memory_max_mib: 1024,
        memory_step_mib: 512,
        memory_margin_mib: 0,
        host_memory_reserve_mib: 0,
        schedule: Schedule::default(),
        pricing: Pricing {
            instance_micros: 0,
            core_micros: 1_000_000, // 1.0 per core-hour
            gib_micros: 500_000,    // 0.5 per GiB-hour
            max_micros,
        },
    }
}

/// Busy samples, each resize acknowledged; returns the cores reached and the
/// last why-not. `room` is what the global ceiling leaves at the start; like the
/// controller, the room given each sample shrinks by what was added since.
fn grow(mut v: Vertical, clones: u32, room: Option<u64>) -> (u32, Option<String>) {
    let mut size = Size {
        cores: 1,
        cpulimit_centi: 0,
        memory_mib: 1024,
    };
    let mut why = None;
    for i in 1..=10u64 {
        let now = Timestamp(i * 10_000);
        let usage = Usage {
            size,
            cpu_bp: 9_500,
            mem_used_mib: 100,
            node_free_mib: Some(1 << 20),
            clones,
        };
        let n = u64::from(clones) + 1;
        let added =
            n * (v.policy.pricing.of(size) - v.policy.pricing.of(Size { cores: 1, ..size }));
        v.set_cost_room(room.map(|r| r.saturating_sub(added)));
        let mut out = Vec::new();
        v.step(now, Input::Sample(usage), &mut out);
        for o in out {
            match o {
                Output::Resize(r) => {
                    size = r.to;
                    let mut ack = Vec::new();
                    v.step(
                        now,
                        Input::Result {
                            id: r.id,
                            outcome: Ok(()),
                        },
                        &mut ack,
                    );
                }
                Output::Evaluation {
                    verdict: Verdict::Blocked { why_not, .. },
                    ..
                } => why = Some(why_not.to_string()),
                _ => {}
            }
        }
    }
    (size.cores, why)
}

#[test]
fn a_grow_past_the_containers_cost_ceiling_is_not_made() {
    // 1 GiB = 0.5/h; 3 cores + 1 GiB = 3.5/h fits 3.6/h, a fourth core does not.
    let (cores, why) = grow(Vertical::new(priced(Some(3_600_000))), 0, None);
    assert_eq!(cores, 3);
    assert_eq!(
        why.as_deref(),
        Some("cost: 4 cores, 1024 MiB would cost 4.5/h, above max_cost_per_hour (3.6)")
    );
    assert_eq!(
        Pricing::of(
            &priced(None).pricing,
            Size {
                cores: 4,
                cpulimit_centi: 0,
                memory_mib: 2048
            }
        ),
        5_000_000
    );
}

#[test]
fn clones_are_priced_like_the_container_and_the_global_room_counts() {
    // One clone doubles every step: 2 × (2 + 0.5) = 5 fits 5.5, 2 × 3.5 does not.
    let (cores, _) = grow(Vertical::new(priced(Some(5_500_000))), 1, None);
    assert_eq!(cores, 2);
    // No own ceiling, 1.2/h of room under the global one: +1 core costs 1/h
    // once; the second step would bring the total added to 2/h.
    let (cores, why) = grow(Vertical::new(priced(None)), 0, Some(1_200_000));
    assert_eq!(cores, 2, "{why:?}");
    let (cores, why) = grow(Vertical::new(priced(None)), 0, Some(900_000));
    assert_eq!(cores, 1);
    assert!(
        why.unwrap()
            .contains("global max_cost_per_hour leaves (0.9/h)")
    );
}
