//! A group's demand forecast from its stored history: the engine's Holt forecaster
//! ([`crate::core::predict::Signal`]) run over the series at one step, with a
//! prediction interval from its own recent errors.
//!
//! Every step of the history, the forecaster predicts each lead 1..=H steps ahead;
//! when those steps arrive the absolute errors are kept per lead (the newest
//! [`ERRORS_KEPT`]). A forecast point's interval is ± the 95th percentile of its
//! lead's recent absolute errors (empirical, no distribution assumed), and its
//! `mean_abs_error` is their mean: the measured recent error at that lead.

use std::collections::VecDeque;

use serde::Serialize;

use super::query::rfc3339;
use crate::core::predict::{ForecastSettings, Signal};

/// Recent errors kept per lead time (a day of 5-minute steps).
pub const ERRORS_KEPT: usize = 288;
/// Scored forecasts a lead needs before it gets an interval.
pub const MIN_SCORED: usize = 10;
/// The interval's coverage: this quantile of the absolute errors.
pub const QUANTILE: f64 = 0.95;

/// One forecast point. Demand in vCPUs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Point {
    pub time: String,
    pub t_ms: i64,
    pub demand: f64,
    /// `None` until the lead has [`MIN_SCORED`] scored forecasts.
    pub lower: Option<f64>,
    pub upper: Option<f64>,
    /// Mean absolute error of this lead's recent forecasts (vCPUs).
    pub mean_abs_error: Option<f64>,
    /// Forecasts of this lead scored so far (at most [`ERRORS_KEPT`] are used).
    pub scored: usize,
}

/// The forecast of a series.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Forecast {
    /// Steps of history the forecaster saw (gaps filled with the previous value).
    pub history_points: usize,
    /// The last observed step.
    pub last_t_ms: i64,
    pub last_demand: f64,
    /// Mean absolute error at the full horizon over its recent forecasts.
    pub mean_abs_error: Option<f64>,
    pub points: Vec<Point>,
}

fn r4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

/// Units the forecaster works in: 10 000 = one vCPU.
fn units(vcpus: f64) -> u64 {
    (vcpus.max(0.0) * 10_000.0).round() as u64
}

/// Forecast `horizon` steps of `step_ms` after the last of `series` (time in Unix
/// ms on the step grid, demand in vCPUs; oldest first). `None` if it is empty.
pub fn forecast(series: &[(i64, f64)], step_ms: i64, horizon: usize) -> Option<Forecast> {
    let &(first, _) = series.first()?;
    let horizon = horizon.max(1);
    let settings = ForecastSettings {
        predictive: true,
        guard: false,
        horizon_ticks: u32::try_from(horizon).unwrap_or(u32::MAX),
        max_error_bp: u32::MAX,
        z_hundredths: u32::MAX,
    };
    let mut signal = Signal::default();
    // Forecasts of the last `horizon` origins, newest last: made[j][k-1] is the
    // forecast k steps ahead of origin j.
    let mut made: VecDeque<Vec<u64>> = VecDeque::with_capacity(horizon + 1);
    let mut errors: Vec<VecDeque<f64>> = vec![VecDeque::new(); horizon];
    let mut scored = vec![0usize; horizon];
    let mut observe = |x: u64, made: &mut VecDeque<Vec<u64>>| {
        // Origin `len - k` forecast this step k steps ago.
        let n = made.len();
        for k in 1..=n.min(horizon) {
            let f = made[n - k][k - 1];
            let e = errors.get_mut(k - 1).expect("k <= horizon");
            if e.len() == ERRORS_KEPT {
                e.pop_front();
            }
            e.push_back(f.abs_diff(x) as f64 / 10_000.0);
            scored[k - 1] += 1;
        }
        signal.observe(x, 1, &settings);
        if made.len() == horizon {
            made.pop_front();
        }
        made.push_back(
            (1..=horizon as u64)
                .map(|k| signal.forecast_ahead(k).unwrap_or(x))
                .collect(),
        );
    };
    let (mut t, mut last) = (first, series[0].1);
    let mut steps = 0;
    for &(ti, d) in series {
        // A gap holds the previous value (as a trace does).
        while t + step_ms < ti {
            t += step_ms;
            observe(units(last), &mut made);
            steps += 1;
        }
        t = ti;
        last = d;
        observe(units(d), &mut made);
        steps += 1;
    }
    let latest = made.back().cloned().unwrap_or_default();
    let mut points = Vec::with_capacity(horizon);
    for k in 1..=horizon {
        let demand = latest.get(k - 1).copied().unwrap_or(0) as f64 / 10_000.0;
        let e = &errors[k - 1];
        let (lower, upper, mae) = if e.len() >= MIN_SCORED {
            let mut sorted: Vec<f64> = e.iter().copied().collect();
            sorted.sort_by(f64::total_cmp);
            let i = ((QUANTILE * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
            let q = sorted[i];
            let mae = sorted.iter().sum::<f64>() / sorted.len() as f64;
            (
                Some(r4((demand - q).max(0.0))),
                Some(r4(demand + q)),
                Some(r4(mae)),
            )
        } else {
            (None, None, None)
        };
        let tk = t + step_ms * k as i64;
        points.push(Point {
            time: rfc3339(tk),
            t_ms: tk,
            demand: r4(demand),
            lower,
            upper,
            mean_abs_error: mae,
            scored: scored[k - 1],
        });
    }
    Some(Forecast {
        history_points: steps,
        last_t_ms: t,
        last_demand: r4(last),
        mean_abs_error: points.last().and_then(|p| p.mean_abs_error),
        points,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const STEP: i64 = 300_000;

    #[test]
    fn a_ramp_is_extended_with_a_tight_interval() {
        // 1 vCPU rising by 0.01 per step for 600 steps (the start-up transient of
        // the trend has left the kept errors by then).
        let series: Vec<(i64, f64)> = (0..600)
            .map(|i| (i * STEP, 1.0 + 0.01 * i as f64))
            .collect();
        let f = forecast(&series, STEP, 12).unwrap();
        assert_eq!(f.history_points, 600);
        assert_eq!(f.points.len(), 12);
        let last = &f.points[11];
        assert_eq!(last.t_ms, 611 * STEP);
        // The line reaches 1 + 0.01 × 611 = 7.11 there.
        assert!((last.demand - 7.11).abs() < 0.01, "{last:?}");
        let (lo, hi) = (last.lower.unwrap(), last.upper.unwrap());
        assert!(lo <= 7.11 && 7.11 <= hi && hi - lo < 0.02, "{last:?}");
        assert!(f.mean_abs_error.unwrap() < 0.01);
    }

    #[test]
    fn noise_widens_the_interval_and_errors_grow_with_the_lead() {
        let mut rng = crate::sim::trace::Rng::new(7);
        let series: Vec<(i64, f64)> = (0..500).map(|i| (i * STEP, 4.0 + rng.normal())).collect();
        let f = forecast(&series, STEP, 6).unwrap();
        let p = &f.points[5];
        let width = p.upper.unwrap() - p.lower.unwrap();
        // Unit noise: the 95 % band is about ±2 (wider with trend noise).
        assert!((2.5..8.0).contains(&width), "{p:?}");
        let (first, sixth) = (
            f.points[0].mean_abs_error.unwrap(),
            p.mean_abs_error.unwrap(),
        );
        assert!(first > 0.5 && sixth > first, "{first} {sixth}");
        // Every forecast a lead could score was scored.
        assert_eq!(p.scored, 500 - 6);
    }

    #[test]
    fn gaps_hold_the_previous_value_and_short_histories_have_no_interval() {
        let series = [(0, 1.0), (3 * STEP, 2.0)];
        let f = forecast(&series, STEP, 2).unwrap();
        assert_eq!(f.history_points, 4);
        assert_eq!(f.last_t_ms, 3 * STEP);
        assert!(f.points.iter().all(|p| p.lower.is_none()));
        assert!(forecast(&[], STEP, 2).is_none());
    }
}
