//! Predictive policy and anomaly guard (see `core::predict`). Kept apart from the
//! reactive rule in `decide`: `evaluate` calls `guard_and_forecast` once per tick and
//! counts a predicted breach as a high tick; `decide` adds `predicted` to its reason.

use super::*;
use crate::core::reason::Predicted;

impl Group {
    /// Totals of the guard and the forecaster (for the simulator's report).
    pub fn forecast_stats(&self) -> predict::Stats {
        self.signal.stats()
    }

    /// The average to count (a lone outlier replaced by the recent median) and
    /// whether the trusted forecast, `forecast_horizon` ahead and over the
    /// capacity that will exist then, breaches `scale_up_threshold`.
    pub(super) fn guard_and_forecast(
        &mut self,
        now: Timestamp,
        avg: Option<Bp>,
    ) -> (Option<Bp>, bool) {
        let p = &self.policy;
        let Some(bp) = avg.filter(|_| p.predictive || p.anomaly_guard) else {
            return (avg, false);
        };
        // Same freshness rule as `average`: demand is average × fresh vCPUs, so
        // it does not drop when a clone joins. Planned capacity counts clones
        // being created: they serve by the time the forecast comes due.
        let (mut fresh_w, mut planned_w) = (0u32, 0u32);
        for m in self.members.values() {
            let fresh = m.state == MemberState::Running
                && now >= m.grace_until
                && m.bp.is_some()
                && m.last_seen.is_some_and(|t| t.plus(p.death_timeout) > now);
            if fresh {
                fresh_w += m.vcpus;
            }
            if matches!(m.state, MemberState::Running | MemberState::Creating(_)) {
                planned_w += m.vcpus;
            }
        }
        let fresh_w = fresh_w.max(1);
        let interval_ms = crate::core::time::duration_ms(p.sample_interval).max(1);
        let settings = predict::ForecastSettings {
            predictive: p.predictive,
            guard: p.anomaly_guard,
            horizon_ticks: u32::try_from(
                crate::core::time::duration_ms(p.forecast_horizon).div_ceil(interval_ms),
            )
            .unwrap_or(u32::MAX),
            max_error_bp: p.forecast_max_error.saturating_mul(100),
            z_hundredths: p.anomaly_z_hundredths,
        };
        let o = self
            .signal
            .observe(u64::from(bp) * u64::from(fresh_w), fresh_w, &settings);
        let filtered = Bp::try_from(o.demand / u64::from(fresh_w)).unwrap_or(cpu::FULL);
        let up = u64::from(p.scale_up_threshold) * 100;
        let predicted = o
            .forecast
            .is_some_and(|f| f / u64::from(planned_w.max(1)) > up);
        (Some(filtered), predicted)
    }

    /// The forecast ticks that are part of the high streak, if any.
    pub(super) fn predicted(&self) -> Option<Box<Predicted>> {
        let n = self.signal.streak_predicted();
        if n == 0 {
            return None;
        }
        let planned: u32 = self
            .members
            .values()
            .filter(|m| matches!(m.state, MemberState::Running | MemberState::Creating(_)))
            .map(|m| m.vcpus)
            .sum();
        let f = self.signal.predicted_forecast().unwrap_or(0) / u64::from(planned.max(1));
        Some(Box::new(Predicted {
            ticks: n,
            forecast: Bp::try_from(f).unwrap_or(Bp::MAX),
            horizon: self.policy.forecast_horizon,
            mean_error: self.signal.mean_error_bp(),
        }))
    }
}
