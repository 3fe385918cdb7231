//! CPU share from cumulative CPU-time counters, in integer arithmetic.
//!
//! albatross reports `utime` and `stime` as (seconds, microseconds). mollymawk
//! truncated them to whole seconds and divided before multiplying, so a 95 % busy VM
//! read 0 %. Here everything stays in microseconds and the share is computed in
//! basis points (1/100 of a percent) with one rounding step at the end.

use super::time::Timestamp;

/// A CPU share in basis points: 10_000 = 100 % of the instance's vCPUs.
pub type Bp = u32;

/// 100 %, in basis points.
pub const FULL: Bp = 10_000;

/// The last cumulative reading of one instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reading {
    /// When the reading arrived.
    pub at: Timestamp,
    /// utime + stime, microseconds.
    pub cpu_us: u64,
}

/// What a new reading yields against the previous one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delta {
    /// A share over the interval since the previous reading.
    Share {
        bp: Bp,
        cpu_us: u64,
        elapsed_ms: u64,
    },
    /// The counter went backwards (the unikernel restarted): a new baseline, no value.
    Reset,
    /// No time passed since the previous reading: nothing to compute.
    Duplicate,
}

/// Share of `vcpus` CPUs used between `prev` and `next`, rounded to the nearest
/// basis point. `vcpus` of 0 is treated as 1.
pub fn delta(prev: Reading, next: Reading, vcpus: u32) -> Delta {
    if next.cpu_us < prev.cpu_us {
        return Delta::Reset;
    }
    let elapsed_ms = next.at.as_millis().saturating_sub(prev.at.as_millis());
    if elapsed_ms == 0 {
        return Delta::Duplicate;
    }
    let cpu_us = next.cpu_us - prev.cpu_us;
    // bp = cpu_us / (elapsed_ms * 1000 * vcpus) * 10_000, rounded half up. In u64
    // when it fits (always, for sane intervals), else in u128: never overflows.
    let v = u64::from(vcpus.max(1));
    let fast = cpu_us
        .checked_mul(10_000)
        .zip(elapsed_ms.checked_mul(1_000).and_then(|e| e.checked_mul(v)))
        .and_then(|(num, den)| Some(num.checked_add(den / 2)? / den));
    let bp = fast.unwrap_or_else(|| {
        let num = u128::from(cpu_us) * 10_000;
        let den = u128::from(elapsed_ms) * 1_000 * u128::from(v);
        u64::try_from((num + den / 2) / den).unwrap_or(u64::MAX)
    });
    Delta::Share {
        bp: Bp::try_from(bp).unwrap_or(Bp::MAX),
        cpu_us,
        elapsed_ms,
    }
}

/// Basis points as a percentage for display (exact: two decimals).
pub fn percent(bp: Bp) -> f64 {
    f64::from(bp) / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(ms: u64, cpu_us: u64) -> Reading {
        Reading {
            at: Timestamp(ms),
            cpu_us,
        }
    }

    #[test]
    fn ninety_five_percent_reads_as_such() {
        // mollymawk's integer-seconds arithmetic read this as 0 %.
        let d = delta(r(0, 0), r(10_000, 9_500_000), 1);
        assert_eq!(
            d,
            Delta::Share {
                bp: 9_500,
                cpu_us: 9_500_000,
                elapsed_ms: 10_000
            }
        );
    }

    #[test]
    fn normalised_by_vcpus() {
        let d = delta(r(0, 0), r(10_000, 10_000_000), 2);
        assert!(matches!(d, Delta::Share { bp: 5_000, .. }));
    }

    #[test]
    fn counter_reset_and_duplicate() {
        assert_eq!(delta(r(0, 5), r(10, 4), 1), Delta::Reset);
        assert_eq!(delta(r(10, 5), r(10, 9), 1), Delta::Duplicate);
    }

    #[test]
    fn rounding_error_is_below_half_a_basis_point() {
        for (cpu, ms, v) in [(1u64, 3u64, 1u32), (12_345_678, 9_999, 3), (7, 10_000, 4)] {
            let Delta::Share { bp, .. } = delta(r(0, 0), r(ms, cpu), v) else {
                panic!("share expected")
            };
            let exact = cpu as f64 / (ms as f64 * 1000.0 * f64::from(v)) * 10_000.0;
            assert!((f64::from(bp) - exact).abs() <= 0.5, "{bp} vs {exact}");
        }
    }
}
