//! The classic rules the engine is compared with, as small pure policies: given
//! what the group looks like at an evaluation, the number of instances wanted.
//!
//! Both see the same correct CPU shares as the engine (computed from the same
//! counters); only the decision rule differs. Both are held to the group's
//! `min_instances..=max_instances` like the engine (mollymawk itself does not
//! consult its maximum).

use std::collections::VecDeque;
use std::time::Duration;

use crate::core::Timestamp;

/// The group at one evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct View {
    pub now: Timestamp,
    /// Instances that exist (booting ones included).
    pub instances: u32,
    /// Instances with a CPU share (booted and sampled at least twice).
    pub measured: u32,
    /// Sum of the measured instances' last shares, basis points.
    pub sum_bp: u64,
}

impl View {
    /// Mean of the last shares, basis points.
    pub fn avg_bp(&self) -> Option<u64> {
        (self.measured > 0).then(|| self.sum_bp / u64::from(self.measured))
    }
}

/// mollymawk's autoscaler as it runs at its HEAD (robur-coop/mollymawk
/// `src/core/autoscaler.ml`): every 5-minute poll, the group average of every
/// member's share over the last poll (a member not measured yet counts 0 %);
/// above 90 % for 3 consecutive polls ⇒ one clone more, < 40 % for 5 ⇒ one clone less
/// (the newest), one 600 s cooldown after any action that also resets both
/// counters. Its 900 s death timeout never fires in the simulator (nothing dies).
/// The shares are exact here; HEAD divides whole seconds by whole seconds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Mollymawk {
    high: u32,
    low: u32,
    last_action: Option<Timestamp>,
}

impl Mollymawk {
    pub const UP_PERCENT: u64 = 90;
    pub const UP_TICKS: u32 = 3;
    pub const DOWN_PERCENT: u64 = 40;
    pub const DOWN_TICKS: u32 = 5;
    pub const COOLDOWN: Duration = Duration::from_secs(600);
    pub const POLL: Duration = Duration::from_secs(300);
    pub const DEATH_TIMEOUT: Duration = Duration::from_secs(900);

    /// Instances wanted after this evaluation.
    pub fn evaluate(&mut self, v: &View) -> u32 {
        if v.measured == 0 {
            return v.instances;
        }
        // Over every instance, as HEAD: the unmeasured ones at 0 %.
        let avg = v.sum_bp / u64::from(v.instances.max(1));
        let cooldown = self
            .last_action
            .is_some_and(|t| v.now < t.plus(Self::COOLDOWN));
        let is_high = avg > Self::UP_PERCENT * 100;
        let is_low = avg < Self::DOWN_PERCENT * 100 && v.instances > 1;
        self.high = if is_high && !cooldown {
            self.high + 1
        } else {
            0
        };
        self.low = if is_low && !cooldown { self.low + 1 } else { 0 };
        if cooldown {
            return v.instances;
        }
        let want = if self.high >= Self::UP_TICKS {
            v.instances + 1
        } else if self.low >= Self::DOWN_TICKS {
            v.instances - 1
        } else {
            return v.instances;
        };
        self.high = 0;
        self.low = 0;
        self.last_action = Some(v.now);
        want
    }
}

/// Kubernetes' Horizontal Pod Autoscaler (autoscaling/v2 defaults): every 15 s,
/// `desired = ceil(current × utilisation / target)`, nothing within 10 % of the
/// target; instances without a share count as 0 % on the way up and as 100 % of
/// the target on the way down; scale-down takes the highest recommendation of the
/// stabilization window (default 300 s); scale-up is immediate, at most
/// max(double, +4) per period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hpa {
    /// Target utilisation, basis points.
    pub target_bp: u64,
    /// Scale-down stabilization window.
    pub window: Duration,
    /// Recommendations of the stabilisation window: (time, instances).
    recent: VecDeque<(Timestamp, u32)>,
}

impl Hpa {
    pub const PERIOD: Duration = Duration::from_secs(15);
    /// Tolerance, per mille.
    pub const TOLERANCE_PM: u64 = 100;
    /// Kubernetes' default scale-down stabilization window.
    pub const DOWN_WINDOW: Duration = Duration::from_secs(300);
    /// The target `kubectl autoscale` sets without `--cpu-percent`.
    pub const TARGET_PERCENT: u32 = 80;

    /// An HPA aiming at `target_percent` utilisation, Kubernetes' window.
    pub fn new(target_percent: u32) -> Self {
        Self::with_window(target_percent, Self::DOWN_WINDOW)
    }

    /// An HPA aiming at `target_percent` with a scale-down window of `window`.
    pub fn with_window(target_percent: u32, window: Duration) -> Self {
        Self {
            target_bp: u64::from(target_percent.max(1)) * 100,
            window,
            recent: VecDeque::new(),
        }
    }

    /// Instances wanted after this evaluation (before the min/max clamp).
    pub fn evaluate(&mut self, v: &View) -> u32 {
        let current = v.instances.max(1);
        let raw = self.recommend(v, current);
        self.recent.push_back((v.now, raw));
        while self
            .recent
            .front()
            .is_some_and(|(t, _)| t.plus(self.window) <= v.now)
        {
            self.recent.pop_front();
        }
        if raw >= current {
            // Up: no stabilisation, rate limited.
            return raw.min(current.saturating_mul(2).max(current + 4));
        }
        // Down: the highest recommendation in the window, never above current.
        let stable = self.recent.iter().map(|(_, r)| *r).max().unwrap_or(raw);
        stable.min(current)
    }

    fn recommend(&self, v: &View, current: u32) -> u32 {
        let Some(avg) = v.avg_bp() else {
            return current;
        };
        let t = self.target_bp;
        // ratio within 1 ± tolerance: keep.
        if avg * 1000 <= t * (1000 + Self::TOLERANCE_PM)
            && avg * 1000 >= t * (1000 - Self::TOLERANCE_PM)
        {
            return current;
        }
        let missing = u64::from(current.saturating_sub(v.measured));
        let usage = if avg > t {
            v.sum_bp // not-yet-measured instances at 0 %
        } else {
            v.sum_bp + missing * t // missing ones at 100 % of target
        };
        let desired = usage.div_ceil(t);
        // The recomputed ratio flipped direction: keep.
        if (avg > t) != (desired > u64::from(current)) && desired != u64::from(current) {
            return current;
        }
        u32::try_from(desired).unwrap_or(u32::MAX).max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(s: u64, instances: u32, shares: &[u64]) -> View {
        View {
            now: Timestamp::from_millis(s * 1000),
            instances,
            measured: shares.len() as u32,
            sum_bp: shares.iter().sum(),
        }
    }

    #[test]
    fn mollymawk_needs_three_high_then_cools_down_600s() {
        let mut m = Mollymawk::default();
        assert_eq!(m.evaluate(&view(10, 1, &[9_500])), 1);
        assert_eq!(m.evaluate(&view(20, 1, &[9_500])), 1);
        assert_eq!(m.evaluate(&view(30, 1, &[9_500])), 2);
        // Cooldown: even 100 % does nothing for 600 s, and counters stay at 0.
        assert_eq!(m.evaluate(&view(620, 2, &[10_000, 10_000])), 2);
        assert_eq!(m.evaluate(&view(630, 2, &[10_000, 10_000])), 2);
        assert_eq!(m.evaluate(&view(640, 2, &[10_000, 10_000])), 2);
        assert_eq!(m.evaluate(&view(650, 2, &[10_000, 10_000])), 3);
        // Five low ticks remove one; a middle tick resets the streak.
        let mut m = Mollymawk::default();
        for s in 1..=4 {
            assert_eq!(m.evaluate(&view(s * 10, 3, &[1_000, 1_000, 1_000])), 3);
        }
        assert_eq!(m.evaluate(&view(50, 3, &[5_000, 5_000, 5_000])), 3);
        for s in 6..=9 {
            assert_eq!(m.evaluate(&view(s * 10, 3, &[1_000, 1_000, 1_000])), 3);
        }
        assert_eq!(m.evaluate(&view(100, 3, &[1_000, 1_000, 1_000])), 2);
    }

    #[test]
    fn mollymawk_counts_an_unmeasured_clone_at_zero() {
        // 2 instances, only one measured at 100 %: average 50 %, not high.
        let mut m = Mollymawk::default();
        for s in 1..=5 {
            assert_eq!(m.evaluate(&view(s * 300, 2, &[10_000])), 2);
        }
    }

    #[test]
    fn hpa_follows_the_ratio_with_tolerance_and_a_down_window() {
        let mut h = Hpa::new(50);
        // 2 at 90 % of a 50 % target: ceil(2 × 1.8) = 4.
        assert_eq!(h.evaluate(&view(15, 2, &[9_000, 9_000])), 4);
        // 54 % is within 10 % of 50 %: keep.
        assert_eq!(h.evaluate(&view(30, 4, &[5_400; 4])), 4);
        // 4 at 20 %: ceil(4 × 0.4) = 2, but the window holds 4 for 300 s.
        assert_eq!(h.evaluate(&view(45, 4, &[2_000; 4])), 4);
        // The last 4 (t = 30 s, within tolerance) leaves the window at 330 s.
        assert_eq!(h.evaluate(&view(320, 4, &[2_000; 4])), 4);
        assert_eq!(h.evaluate(&view(331, 4, &[2_000; 4])), 2);
        // A 60 s window: the same drop is followed after 60 s.
        let mut h = Hpa::with_window(50, Duration::from_secs(60));
        assert_eq!(h.evaluate(&view(15, 4, &[5_000; 4])), 4);
        assert_eq!(h.evaluate(&view(30, 4, &[2_000; 4])), 4);
        assert_eq!(h.evaluate(&view(76, 4, &[2_000; 4])), 2);
        // Rate limit: 1 at 100 % of a 10 % target wants 10, gets max(2, 1+4) = 5.
        let mut h = Hpa::new(10);
        assert_eq!(h.evaluate(&view(15, 1, &[10_000])), 5);
        // An unmeasured (booting) instance counts 0 % on the way up.
        let mut h = Hpa::new(50);
        assert_eq!(h.evaluate(&view(15, 2, &[9_000])), 2);
    }
}
