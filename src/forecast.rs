//! Fitting the seasonal forecast ([`crate::core::seasonal::Forecast`]) off the hot
//! path: the daemon's refit task over `[history]`, the simulator over the trace's
//! past. The engine only reads the curve this produces.
//!
//! The model is `augurs`' MSTL (multiple seasonal-trend decomposition by LOESS)
//! with a non-seasonal AutoETS on the trend: a daily season (288 steps of 5
//! minutes) once there are two days, a weekly one (2 016 steps) once there are two
//! weeks. With one to two days of history (STL needs two periods) it repeats the
//! last day (seasonal naive). The error is measured out of sample: the same
//! procedure fitted without the last day forecasts that day, and the MAPE of that
//! forecast against what happened is the forecast's error.

use augurs::ets::AutoETS;
use augurs::mstl::MSTLModel;
use augurs::prelude::*;

use crate::core::seasonal::Forecast;

/// The forecast's step: the history's aggregate bucket.
pub const STEP_MS: i64 = 300_000;
/// Steps of a day and of a week.
pub const DAY: usize = 288;
pub const WEEK: usize = 7 * DAY;
/// History a fit uses at most (older steps are dropped: bounded fit time).
pub const MAX_HISTORY: usize = 3 * WEEK;
/// Steps a fit forecasts: a day ahead, so a late refit still has a curve.
pub const HORIZON: usize = DAY;
/// Actual demand below this (vCPUs) is left out of the MAPE: a relative error of
/// an idle group says nothing.
pub const MAPE_FLOOR: f64 = 0.01;

/// Fit `series` (demand in vCPUs per [`STEP_MS`] step, oldest first, gaps filled)
/// whose last step ends at `end_ms` (Unix ms); the curve starts there.
pub fn fit(series: &[f64], end_ms: i64) -> Forecast {
    let series = &series[series.len().saturating_sub(MAX_HISTORY)..];
    let n = series.len();
    let mut f = Forecast {
        fitted_at_ms: end_ms,
        history_ms: n as u64 * STEP_MS as u64,
        start_ms: end_ms,
        step_ms: STEP_MS as u64,
        ..Forecast::default()
    };
    if n < DAY {
        return f;
    }
    let (model, points) = predict(series, HORIZON);
    f.model = model;
    f.points = points
        .iter()
        .map(|v| (v.max(0.0) * 10_000.0).round() as u64)
        .collect();
    if n >= 2 * DAY {
        let (_, back) = predict(&series[..n - DAY], DAY);
        f.mape_hundredths = mape(&back, &series[n - DAY..]).map(|m| (m * 100.0).round() as u32);
    }
    f
}

/// The model's forecast of `h` steps after `y` (at least [`DAY`] long), and its name.
pub fn predict(y: &[f64], h: usize) -> (String, Vec<f64>) {
    if y.len() >= 2 * DAY {
        let mut periods = vec![DAY];
        if y.len() >= 2 * WEEK {
            periods.push(WEEK);
        }
        let name = format!(
            "mstl({})+ets",
            periods
                .iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join(",")
        );
        let trend = AutoETS::non_seasonal().into_trend_model();
        let fitted = MSTLModel::new(periods, trend)
            .fit(y)
            .and_then(|m| m.predict(h, None));
        match fitted {
            Ok(f) if f.point.len() == h && f.point.iter().all(|v| v.is_finite()) => {
                return (name, f.point);
            }
            Ok(_) => tracing::debug!("seasonal fit gave no usable forecast; seasonal naive"),
            Err(e) => tracing::debug!(error = %e, "seasonal fit failed; seasonal naive"),
        }
    }
    ("seasonal naive (last day)".into(), naive(y, h))
}

/// The last day, repeated.
fn naive(y: &[f64], h: usize) -> Vec<f64> {
    let day = &y[y.len().saturating_sub(DAY)..];
    if day.is_empty() {
        return vec![0.0; h];
    }
    (0..h).map(|i| day[i % day.len()]).collect()
}

/// Mean absolute percentage error (percent) of `forecast` against `actual`, over
/// the steps whose actual is at least [`MAPE_FLOOR`].
pub fn mape(forecast: &[f64], actual: &[f64]) -> Option<f64> {
    let (sum, n) = forecast
        .iter()
        .zip(actual)
        .filter(|(_, a)| **a >= MAPE_FLOOR)
        .fold((0.0, 0usize), |(s, n), (f, a)| {
            (s + (f - a).abs() / a, n + 1)
        });
    (n > 0).then(|| sum / n as f64 * 100.0)
}

/// `(t_ms, demand)` points (oldest first, `t_ms` the start of a step) on the
/// [`STEP_MS`] grid: a gap holds the previous value, as a trace does. Returns the
/// series and the end of its last step.
pub fn grid(points: &[(i64, f64)]) -> (Vec<f64>, i64) {
    let mut out = Vec::with_capacity(points.len());
    let Some(&(first, _)) = points.first() else {
        return (out, 0);
    };
    let (mut t, mut last) = (first - first.rem_euclid(STEP_MS), 0.0);
    for &(ti, d) in points {
        while t + STEP_MS <= ti {
            out.push(last);
            t += STEP_MS;
        }
        if ti >= t {
            out.push(d);
            last = d;
            t += STEP_MS;
        }
    }
    (out, t)
}

#[cfg(test)]
mod tests;
