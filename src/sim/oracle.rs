//! The clairvoyant floor: what no policy can beat. At every instant exactly the
//! instances the demand needs serve (`ceil(demand / vCPUs)`, within the group's
//! bounds), each created `boot_time` ahead of its need (its boot is paid for, as
//! in every other run) and destroyed the moment it is not needed; no ticks, no
//! cooldowns, no action budget. Its slack is what the instance size alone costs;
//! its actions per hour say whether a budget allows following the demand at all.

use crate::core::Policy;
use crate::core::time::duration_ms;

use super::metrics::Meter;
use super::simulate::{Run, Series};
use super::trace::{Trace, gcd};

/// Simulate the floor over `trace`, measured from `from_ms` on (as `run_from`).
pub fn run(trace: &Trace, policy: &Policy, name: &str, from_ms: u64) -> Run {
    let vcpus = policy.vcpus.max(1);
    let (lo, hi) = (policy.min_instances.max(1), policy.max_instances.max(1));
    let boot = duration_ms(policy.boot_time);
    let dt = gcd(trace.step_ms(), boot).max(1);
    let end = trace.duration_ms();
    let steps = end.div_ceil(dt) as usize;
    let mut cursor = 0;
    let demand: Vec<f64> = (0..steps)
        .map(|i| trace.at(i as u64 * dt, &mut cursor))
        .collect();
    let need: Vec<u32> = demand
        .iter()
        .map(|d| {
            let n = (d / f64::from(vcpus) - 1e-9).ceil().max(0.0) as u32;
            n.clamp(lo, hi.max(lo))
        })
        .collect();
    // An instance needed at step j exists from `boot` before it: at step i the
    // most needed over [i, i + ahead], a sliding maximum (a deque of indexes with
    // falling needs; linear whatever the boot).
    let ahead = (boot / dt) as usize;
    let mut meter = Meter::default();
    let measured = steps.saturating_sub(from_ms.div_ceil(dt) as usize);
    let mut series = Series::new(measured as u64);
    let mut prev: Option<u32> = None;
    let mut window: std::collections::VecDeque<usize> = std::collections::VecDeque::new();
    let mut next = 0;
    for i in 0..steps {
        let t = i as u64 * dt;
        while next < steps && next <= i + ahead {
            while window.back().is_some_and(|&j| need[j] <= need[next]) {
                window.pop_back();
            }
            window.push_back(next);
            next += 1;
        }
        while window.front().is_some_and(|&j| j < i) {
            window.pop_front();
        }
        let exist = window.front().map_or(lo, |&j| need[j]);
        if t < from_ms {
            prev = Some(exist);
            continue;
        }
        if let Some(p) = prev
            && p != exist
        {
            meter.action(exist > p, exist.abs_diff(p));
        }
        prev = Some(exist);
        let supply = f64::from(exist * vcpus);
        let capacity = f64::from(need[i] * vcpus);
        meter.step(dt, demand[i], supply, capacity, exist);
        series.push((t - from_ms) as f64 / 1000.0, demand[i], supply);
    }
    Run {
        name: name.to_string(),
        metrics: meter.finish_priced(policy.instance_cost_micros),
        series: series.points,
        events: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn policy(boot_s: u64) -> Policy {
        Policy {
            min_instances: 1,
            max_instances: 10,
            vcpus: 1,
            boot_time: Duration::from_secs(boot_s),
            ..Policy::default()
        }
    }

    fn trace(rows: &[(u64, f64)]) -> Trace {
        Trace {
            t_ms: rows.iter().map(|r| r.0 * 1000).collect(),
            demand: rows.iter().map(|r| r.1).collect(),
        }
    }

    #[test]
    fn the_floor_pays_only_for_the_instance_size() {
        // 0.5 vCPU for 60 s, 2.5 for 60 s (1 then 3 instances): never unmet.
        // supply = (1·60 + 3·60) = 240 vCPU·s, served 30 + 150 = 180: slack 25 %.
        let t = trace(&[(0, 0.5), (60, 2.5)]);
        let m = run(&t, &policy(0), "oracle", 0).metrics;
        assert_eq!(m.under_provisioned_timeshare, 0.0);
        assert!((m.slack - 0.25).abs() < 1e-9, "{}", m.slack);
        assert_eq!(m.actions, 2);
    }

    #[test]
    fn a_boot_is_paid_ahead_of_the_need() {
        // With a 30 s boot the two clones exist from t = 30 s: supply 1·30 + 3·90
        // = 300 vCPU·s for 180 served: slack 40 %, still never unmet.
        let t = trace(&[(0, 0.5), (60, 2.5)]);
        let m = run(&t, &policy(30), "oracle", 0).metrics;
        assert_eq!(m.under_provisioned_timeshare, 0.0);
        assert!((m.slack - 0.4).abs() < 1e-9, "{}", m.slack);
    }

    #[test]
    fn the_sliding_maximum_is_the_plain_one() {
        // Needs 1, 3, 2, 5, 1, 1, 4, 1 at 10 s rows; a 20 s boot looks 2 rows ahead.
        let rows: Vec<(u64, f64)> = [1.0, 3.0, 2.0, 5.0, 1.0, 1.0, 4.0, 1.0]
            .iter()
            .enumerate()
            .map(|(i, d)| (i as u64 * 10, *d))
            .collect();
        let t = trace(&rows);
        let r = run(&t, &policy(20), "oracle", 0);
        // Instances per row: max over the row and the next two.
        let exist = [3.0, 5.0, 5.0, 5.0, 4.0, 4.0, 4.0, 1.0];
        let want = exist.iter().sum::<f64>() / 8.0;
        assert!(
            (r.metrics.mean_instances - want).abs() < 1e-9,
            "{}",
            r.metrics.mean_instances
        );
        assert_eq!(r.metrics.under_provisioned_timeshare, 0.0);
    }

    #[test]
    fn bounds_hold_even_against_the_demand() {
        // 20 vCPUs against max 10: unmet all the time, at 10 instances.
        let t = trace(&[(0, 20.0)]);
        let m = run(&t, &policy(0), "oracle", 0).metrics;
        assert_eq!(m.under_provisioned_timeshare, 1.0);
        assert!((m.mean_instances - 10.0).abs() < 1e-9);
    }
}
