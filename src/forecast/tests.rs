use super::*;
use crate::core::predict::{ForecastSettings, Signal};
use crate::sim::trace::Rng;

/// Busy weekdays, quiet weekends: 1 vCPU at night, office hours up to 7 vCPUs on
/// weekdays and 2.5 on Saturdays and Sundays (days 5 and 6 of each week), plus
/// noise of standard deviation `sigma`. Returns (demand, noise) per 5-minute step.
fn weekly(days: usize, sigma: f64, seed: u64) -> (Vec<f64>, Vec<f64>) {
    let mut rng = Rng::new(seed);
    let (mut y, mut noise) = (Vec::new(), Vec::new());
    for i in 0..days * DAY {
        let day = i / DAY;
        let h = (i % DAY) as f64 / 12.0;
        let peak = if day % 7 >= 5 { 1.5 } else { 6.0 };
        // A smooth hump from 07:00 to 19:00.
        let office = if (7.0..19.0).contains(&h) {
            (std::f64::consts::PI * (h - 7.0) / 12.0).sin().powi(2)
        } else {
            0.0
        };
        let e = sigma * rng.normal();
        y.push(1.0 + peak * office + e);
        noise.push(e);
    }
    (y, noise)
}

fn mae(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).sum::<f64>() / a.len() as f64
}

/// Holt (the engine's level + trend forecaster), refreshed every step, `lead`
/// steps ahead of every step of `test`; trained on `train` first.
fn holt_rolling(train: &[f64], test: &[f64], lead: usize) -> Vec<f64> {
    let s = ForecastSettings {
        predictive: true,
        guard: false,
        horizon_ticks: lead as u32,
        max_error_bp: u32::MAX,
        z_hundredths: u32::MAX,
    };
    let units = |v: f64| (v.max(0.0) * 10_000.0).round() as u64;
    let mut sig = Signal::default();
    let all: Vec<f64> = train.iter().chain(test).copied().collect();
    let mut out = Vec::new();
    for (i, v) in all.iter().enumerate() {
        // The forecast for step i was made at step i - lead.
        if i + lead >= train.len() && i + lead < all.len() {
            sig.observe(units(*v), 1, &s);
            out.push(sig.forecast_ahead(lead as u64).unwrap_or(0) as f64 / 10_000.0);
        } else {
            sig.observe(units(*v), 1, &s);
        }
    }
    out
}

/// Seasonal day-ahead vs Holt refreshed every step at a one-hour lead, on day `d`
/// of a weekly series trained on the days before it: (MAE seasonal, MAE Holt,
/// mean |noise| of the day, the fit).
fn compare(d: usize) -> (f64, f64, f64, Forecast) {
    let (y, noise) = weekly(d + 1, 0.1, 11);
    let n = d * DAY;
    let (train, test) = (&y[..n], &y[n..]);
    let f = fit(train, n as i64 * STEP_MS);
    let seasonal: Vec<f64> = f.points.iter().map(|p| *p as f64 / 10_000.0).collect();
    assert_eq!(seasonal.len(), DAY);
    let holt = holt_rolling(train, test, 12);
    assert_eq!(holt.len(), DAY);
    let floor = noise[n..].iter().map(|e| e.abs()).sum::<f64>() / DAY as f64;
    (mae(&seasonal, test), mae(&holt, test), floor, f)
}

#[test]
fn the_seasonal_fit_beats_level_and_trend_out_of_sample_on_a_weekly_pattern() {
    // Day 26 is a Saturday after a run of weekdays (only a weekly season gets it
    // right), day 22 a Tuesday (a 6 vCPU swing that a trend chases).
    for (d, peak) in [(26, 1.5), (22, 6.0)] {
        let (e_seasonal, e_holt, floor, f) = compare(d);
        assert!(f.model.starts_with("mstl(288,2016)"), "{}", f.model);
        // No forecast beats the noise (mean |e| of the day); a seasonal one that
        // is right stays within a tenth of the hump's mean height (peak / 4:
        // sin^2 over half the day) of it.
        assert!(
            e_seasonal < floor + 0.1 * peak / 4.0,
            "day {d}: seasonal {e_seasonal:.3} vs noise {floor:.3}"
        );
        // Holt, though it sees the demand up to an hour before, lags every turn
        // of the hump: it is off by at least half as much again.
        assert!(
            e_holt > 1.5 * e_seasonal,
            "day {d}: holt {e_holt:.3} vs seasonal {e_seasonal:.3}"
        );
        // The measured error (MAPE of the last training day, fitted without it)
        // is of the order of the noise over the demand: between noise / the
        // day's highest demand and 3 x noise / its lowest.
        let mape = f64::from(f.mape_hundredths.expect("measured")) / 100.0;
        let (y, _) = weekly(d, 0.1, 11);
        let last = &y[(d - 1) * DAY..];
        let hi = last.iter().copied().fold(f64::MIN, f64::max);
        let lo = last.iter().copied().fold(f64::MAX, f64::min);
        assert!(
            mape > 100.0 * floor / hi && mape < 300.0 * floor / lo,
            "day {d}: mape {mape} (noise {floor}, demand {lo}..{hi})"
        );
    }
}

#[test]
fn a_day_of_history_forecasts_and_two_measure_the_error() {
    let (y, _) = weekly(3, 0.05, 3);
    let short = fit(&y[..DAY - 1], 0);
    assert!(short.points.is_empty());
    assert_eq!(short.history_ms, (DAY as u64 - 1) * STEP_MS as u64);
    let one = fit(&y[..DAY + DAY / 2], 0);
    assert_eq!(one.model, "seasonal naive (last day)");
    assert_eq!(one.points.len(), HORIZON);
    assert_eq!(one.mape_hundredths, None);
    // Seasonal naive: the first point is the value one day before.
    assert_eq!(
        one.points[0],
        (y[DAY / 2] * 10_000.0).round() as u64,
        "{:?}",
        &one.points[..3]
    );
    let two = fit(&y[..2 * DAY + 12], 7 * STEP_MS);
    assert!(two.model.starts_with("mstl(288)"), "{}", two.model);
    assert!(two.mape_hundredths.is_some());
    assert_eq!(two.start_ms, 7 * STEP_MS);
    assert_eq!(two.fitted_at_ms, 7 * STEP_MS);
}

#[test]
fn mape_leaves_out_idle_steps_and_grid_holds_gaps() {
    assert_eq!(mape(&[1.0, 5.0], &[2.0, 0.0]), Some(50.0));
    assert_eq!(mape(&[1.0], &[0.0]), None);
    let s = STEP_MS;
    let (g, end) = grid(&[(s, 1.0), (2 * s, 2.0), (5 * s, 3.0)]);
    assert_eq!(g, vec![1.0, 2.0, 2.0, 2.0, 3.0]);
    assert_eq!(end, 6 * s);
    assert_eq!(grid(&[]), (vec![], 0));
}
