//! Predictive policy and anomaly guard (see `core::predict`), and the seasonal
//! forecast (`core::seasonal`). Kept apart from the reactive rule in `decide`:
//! `evaluate` calls `guard_and_forecast` once per tick and counts a predicted breach
//! as a high tick; `decide` adds `predicted` to its reason. Forecasts only ever add
//! high ticks, so a group never scales in on a forecast.

use super::*;
use crate::core::reason::Predicted;
use crate::core::seasonal::{self, Shadow, Standing};

/// A group's seasonal forecast and what shadow mode remembers between ticks.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(super) struct Seasonal {
    pub(super) forecast: Option<Arc<seasonal::Forecast>>,
    /// The trusted forecast breached on the last evaluation (a shadow note is
    /// written when a breach starts, not on every tick of it).
    breach: bool,
    /// A shadow note for the evaluation under way.
    note: Option<Box<Shadow>>,
    /// (peak, MAPE) when the last tick was counted high on the seasonal forecast.
    last: Option<(u64, u32)>,
}

impl Group {
    /// Totals of the guard and the forecaster (for the simulator's report).
    pub fn forecast_stats(&self) -> predict::Stats {
        self.signal.stats
    }

    /// The seasonal forecast last handed over, if any.
    pub fn seasonal_forecast(&self) -> Option<&Arc<seasonal::Forecast>> {
        self.seasonal.forecast.as_ref()
    }

    /// Where the seasonal forecast stands at `now` under the policy's
    /// `forecast_max_error`.
    pub fn seasonal_standing(&self, now: Timestamp) -> Standing {
        match &self.seasonal.forecast {
            None => Standing::NotFitted,
            Some(f) => f.standing(self.wall_ms(now), self.policy.forecast_max_error),
        }
    }

    /// `boot_time` + `forecast_margin`: how far ahead of a peak a scale-out starts.
    pub fn seasonal_lead(&self) -> Duration {
        self.policy.boot_time + self.policy.forecast_margin
    }

    fn wall_ms(&self, now: Timestamp) -> i64 {
        self.sched
            .origin
            .saturating_add(i64::try_from(now.0).unwrap_or(i64::MAX))
    }

    /// One evaluation, then the shadow note it produced, if any.
    pub(super) fn evaluate_noting(&mut self, now: Timestamp, out: &mut Vec<Output>) {
        self.evaluate(now, out);
        if let Some(n) = self.seasonal.note.take() {
            out.push(Output::Shadow(n));
        }
    }

    /// The trusted seasonal forecast's peak over the lead and its MAPE, if that peak
    /// over the `planned` vCPUs is above `scale_up_threshold`.
    fn seasonal_breach(&self, now: Timestamp, planned: u32) -> Option<(u64, u32)> {
        let f = self.seasonal.forecast.as_ref()?;
        let at = self.wall_ms(now);
        let Standing::Trusted { mape_hundredths } = f.standing(at, self.policy.forecast_max_error)
        else {
            return None;
        };
        let lead = i64::try_from(duration_ms(self.seasonal_lead())).unwrap_or(i64::MAX);
        let peak = f.peak(at, at.saturating_add(lead))?;
        let up = u64::from(self.policy.scale_up_threshold) * 100;
        (peak / u64::from(planned.max(1)) > up).then_some((peak, mape_hundredths))
    }

    /// The average to count (a lone outlier replaced by the recent median) and
    /// whether the trusted forecast, `forecast_horizon` ahead and over the
    /// capacity that will exist then, breaches `scale_up_threshold`.
    pub(super) fn guard_and_forecast(
        &mut self,
        now: Timestamp,
        avg: Option<Bp>,
    ) -> (Option<Bp>, bool) {
        self.seasonal.last = None;
        let p = &self.policy;
        let seasonal_on = (p.predictive || p.predictive_shadow) && self.seasonal.forecast.is_some();
        let Some(bp) = avg.filter(|_| p.predictive || p.anomaly_guard || seasonal_on) else {
            self.seasonal.breach = false;
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
        let mut predicted = o
            .forecast
            .is_some_and(|f| f / u64::from(planned_w.max(1)) > up);
        let breach = if seasonal_on {
            self.seasonal_breach(now, planned_w)
        } else {
            None
        };
        if let Some((peak, mape)) = breach {
            // High on the forecast alone: neither the average nor Holt say so.
            let alone = u64::from(filtered) <= up && !predicted;
            if self.policy.predictive {
                predicted = true;
                self.seasonal.last = Some((peak, mape));
                self.signal.stats.seasonal_high += u64::from(alone);
            } else if alone && !self.seasonal.breach {
                self.signal.stats.shadow_notes += 1;
                self.seasonal.note = Some(Box::new(Shadow {
                    t: now,
                    group: self.group.clone(),
                    would: Action::ScaleUp,
                    peak,
                    planned_vcpus: planned_w,
                    lead: self.seasonal_lead(),
                    threshold: self.policy.scale_up_threshold,
                    mape_hundredths: mape,
                }));
            }
        }
        self.seasonal.breach = breach.is_some();
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
        let (demand, horizon, seasonal_mape) = match self.seasonal.last {
            Some((peak, mape)) => (peak, self.seasonal_lead(), Some(mape)),
            None => (
                self.signal.predicted_forecast().unwrap_or(0),
                self.policy.forecast_horizon,
                None,
            ),
        };
        let f = demand / u64::from(planned.max(1));
        Some(Box::new(Predicted {
            ticks: n,
            forecast: Bp::try_from(f).unwrap_or(Bp::MAX),
            horizon,
            mean_error: self.signal.mean_error_bp(),
            seasonal_mape,
        }))
    }
}
