//! A seasonal demand forecast as the engine holds it: a curve of demand at a fixed
//! step, fitted elsewhere (the daemon's refit task from `[history]`, the
//! simulator from the trace's past; see `crate::forecast`) and handed to a group
//! as [`crate::core::Input::Forecast`]. The group only reads it: the peak over the
//! next `boot_time` + `forecast_margin`, trusted while the error measured over the
//! last day (MAPE) is at most `forecast_max_error`.
//!
//! Integers only, so a group stays `Eq` and a recorded run replays exactly.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// History a forecast needs before it forecasts at all (one daily season).
pub const MIN_HISTORY_MS: u64 = 86_400_000;
/// History its error needs: one day to fit, the next to measure it on.
pub const MEASURED_HISTORY_MS: u64 = 2 * MIN_HISTORY_MS;

/// One fit of a group's demand.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Forecast {
    /// Unix ms when it was fitted (the end of the history it saw).
    pub fitted_at_ms: i64,
    /// History it saw, ms (gaps included).
    pub history_ms: u64,
    /// The model, for the API (`mstl(288,2016)+ets`); empty while there is none.
    pub model: String,
    /// Unix ms of `points[0]`; the points are `step_ms` apart.
    pub start_ms: i64,
    pub step_ms: u64,
    /// Demand, 10 000 = one busy vCPU. Empty: not enough history.
    pub points: Vec<u64>,
    /// Mean absolute percentage error of the forecast of the last day of history
    /// (fitted on what came before it), in hundredths of a percent. `None` until
    /// there are [`MEASURED_HISTORY_MS`] of history.
    pub mape_hundredths: Option<u32>,
}

/// Where a group's seasonal forecast stands, in words for the why-not and the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// No fit handed over yet.
    NotFitted,
    /// Less than a day of history.
    NeedsHistory { has_ms: u64 },
    /// Forecasting, but its error cannot be measured yet.
    Unmeasured { has_ms: u64 },
    /// Measured error above `forecast_max_error`.
    TooWrong { mape_hundredths: u32, max: u32 },
    /// The curve ends before now: the refit is late.
    Stale,
    /// Trusted: acted on (or, in shadow mode, would be).
    Trusted { mape_hundredths: u32 },
}

impl Standing {
    /// Short machine-readable name (the API's `status`).
    pub fn name(self) -> &'static str {
        match self {
            Self::NotFitted => "not_fitted",
            Self::NeedsHistory { .. } => "needs_history",
            Self::Unmeasured { .. } => "unmeasured",
            Self::TooWrong { .. } => "error_too_high",
            Self::Stale => "stale",
            Self::Trusted { .. } => "trusted",
        }
    }
}

impl std::fmt::Display for Standing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let span = |ms: u64| humantime::format_duration(Duration::from_secs(ms / 60_000 * 60));
        match *self {
            Self::NotFitted => write!(f, "no seasonal forecast fitted yet"),
            Self::NeedsHistory { has_ms } => write!(
                f,
                "needs 1 day of history, has {}",
                if has_ms < 60_000 {
                    "none".to_string()
                } else {
                    span(has_ms).to_string()
                }
            ),
            Self::Unmeasured { has_ms } => write!(
                f,
                "forecasting, not acted on: measuring its error needs 2 days of history (1 to fit, 1 to score), has {}",
                span(has_ms)
            ),
            Self::TooWrong {
                mape_hundredths,
                max,
            } => write!(
                f,
                "not acted on: error over the last day {:.2} % is above forecast_max_error ({max} %)",
                f64::from(mape_hundredths) / 100.0
            ),
            Self::Stale => write!(f, "not acted on: the forecast ends before now (refit late)"),
            Self::Trusted { mape_hundredths } => write!(
                f,
                "trusted: error over the last day {:.2} %",
                f64::from(mape_hundredths) / 100.0
            ),
        }
    }
}

impl Forecast {
    /// Where it stands at wall time `now_ms` against `max_error` (percent).
    pub fn standing(&self, now_ms: i64, max_error: u32) -> Standing {
        if self.points.is_empty() || self.history_ms < MIN_HISTORY_MS {
            return Standing::NeedsHistory {
                has_ms: self.history_ms,
            };
        }
        if now_ms >= self.end_ms() {
            return Standing::Stale;
        }
        match self.mape_hundredths {
            None => Standing::Unmeasured {
                has_ms: self.history_ms,
            },
            Some(m) if m > max_error.saturating_mul(100) => Standing::TooWrong {
                mape_hundredths: m,
                max: max_error,
            },
            Some(m) => Standing::Trusted { mape_hundredths: m },
        }
    }

    /// Unix ms just after the last point.
    pub fn end_ms(&self) -> i64 {
        let n = i64::try_from(self.points.len()).unwrap_or(i64::MAX);
        self.start_ms
            .saturating_add(n.saturating_mul(i64::try_from(self.step_ms).unwrap_or(i64::MAX)))
    }

    /// The highest forecast demand over `[from_ms, to_ms]` (the step holding
    /// `from_ms` included), or `None` if the curve does not reach that far.
    pub fn peak(&self, from_ms: i64, to_ms: i64) -> Option<u64> {
        let step = i64::try_from(self.step_ms.max(1)).unwrap_or(i64::MAX);
        if from_ms < self.start_ms || to_ms >= self.end_ms() || to_ms < from_ms {
            return None;
        }
        let i = usize::try_from((from_ms - self.start_ms) / step).ok()?;
        let j = usize::try_from((to_ms - self.start_ms) / step).ok()?;
        self.points.get(i..=j)?.iter().copied().max()
    }
}

/// What a group in shadow mode would have done on its seasonal forecast.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shadow {
    pub t: crate::core::Timestamp,
    pub group: std::sync::Arc<crate::name::Name>,
    pub would: crate::core::Action,
    /// The forecast's peak demand over the lead, 10 000 = one busy vCPU.
    pub peak: u64,
    /// vCPUs running or being created.
    pub planned_vcpus: u32,
    /// `boot_time` + `forecast_margin`.
    pub lead: Duration,
    /// What the forecast would have triggered.
    pub trigger: Trigger,
    pub mape_hundredths: u32,
}

/// The rule a shadow forecast would have tripped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// `rule = "thresholds"`: the peak over the planned vCPUs is above
    /// `scale_up_threshold` (percent).
    Threshold(u32),
    /// `rule = "target"`: the peak needs `needs` instances at `target` percent,
    /// more than the `desired` count of the demand measured now and than the
    /// instances there are.
    Target {
        target: u32,
        needs: u32,
        desired: u32,
    },
}

impl std::fmt::Display for Shadow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "shadow: would {} now: the seasonal forecast peaks at {:.2} vCPU within {} (boot_time + forecast_margin), ",
            self.would.as_str(),
            self.peak as f64 / 10_000.0,
            humantime::format_duration(self.lead),
        )?;
        match self.trigger {
            Trigger::Threshold(t) => write!(
                f,
                "{:.1} % of the {} vCPU planned (above scale_up_threshold {t} %)",
                self.peak as f64 / 100.0 / f64::from(self.planned_vcpus.max(1)),
                self.planned_vcpus,
            )?,
            Trigger::Target {
                target,
                needs,
                desired,
            } => write!(
                f,
                "needing {needs} instance(s) at target_cpu_percent {target} % (desired now {desired}, {} vCPU planned)",
                self.planned_vcpus,
            )?,
        }
        write!(
            f,
            "; error over the last day {:.2} %",
            f64::from(self.mape_hundredths) / 100.0
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn curve() -> Forecast {
        Forecast {
            fitted_at_ms: 0,
            history_ms: 3 * MIN_HISTORY_MS,
            model: "test".into(),
            start_ms: 1_000,
            step_ms: 100,
            points: vec![5, 9, 2, 7],
            mape_hundredths: Some(500),
        }
    }

    #[test]
    fn the_peak_covers_the_steps_touched_and_nothing_past_the_end() {
        let c = curve();
        assert_eq!(c.peak(1_000, 1_099), Some(5));
        assert_eq!(c.peak(1_050, 1_150), Some(9));
        assert_eq!(c.peak(1_200, 1_399), Some(7));
        assert_eq!(c.peak(1_200, 1_400), None);
        assert_eq!(c.peak(999, 1_100), None);
    }

    #[test]
    fn standing_needs_a_day_then_a_measured_error_under_the_limit() {
        let mut c = curve();
        assert_eq!(
            c.standing(1_000, 10),
            Standing::Trusted {
                mape_hundredths: 500
            }
        );
        assert!(!matches!(c.standing(1_000, 4), Standing::Trusted { .. }));
        assert_eq!(c.standing(1_400, 10), Standing::Stale);
        c.mape_hundredths = None;
        assert_eq!(c.standing(1_000, 10).name(), "unmeasured");
        c.history_ms = 3 * 3_600_000;
        c.points.clear();
        let s = c.standing(1_000, 10);
        assert_eq!(s.to_string(), "needs 1 day of history, has 3h");
    }
}
