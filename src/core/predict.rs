//! The predictive policy and the anomaly guard: a group's CPU demand per tick goes
//! through a robust outlier filter (median / MAD z-score) and a Holt forecaster
//! (double exponential smoothing: level + trend) whose forecast error is scored
//! against what actually happened `horizon` ticks later.
//!
//! Everything is integer arithmetic so a [`super::Group`] stays `Eq`, hashable in
//! tests, and bit-for-bit deterministic across platforms.
//!
//! Why Holt and not Holt-Winters or MSTL (`augurs`): a daily season at a 10 s
//! cadence is 8,640 slots per group held in the engine's state, and `augurs-ets`
//! fits by numerical optimisation over floats; over a horizon of a minute or two the
//! local trend carries the prediction, and the error gate switches it off where the
//! trend does not. Demand (average × fresh vCPUs), not the average, is modelled:
//! the average halves when the group doubles, the demand does not.

use std::collections::VecDeque;

/// Fixed-point scale of the smoothed state (demand units × 1000).
const SCALE: i64 = 1_000;
/// Level smoothing, per mille: weight of the new observation.
const ALPHA: i64 = 300;
/// Trend smoothing, per mille.
const BETA: i64 = 100;
/// Observations the outlier window holds.
const WINDOW: usize = 30;
/// Observations needed before the guard judges anything.
const MIN_WINDOW: usize = 10;
/// Scored forecasts the error gate averages over.
const ERRORS: usize = 30;
/// Scored forecasts needed before a forecast is trusted.
const MIN_ERRORS: usize = 10;

/// What the group's policy asks of the signal, in ticks and basis points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ForecastSettings {
    pub predictive: bool,
    pub guard: bool,
    /// Ticks ahead to forecast (at least 1).
    pub horizon_ticks: u32,
    /// Mean absolute forecast error, in basis points of the group average, above
    /// which forecasts are not acted on.
    pub max_error_bp: u32,
    /// Robust z-score above which a lone observation is an outlier, in hundredths.
    pub z_hundredths: u32,
}

/// What one observation yields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observed {
    /// The demand to count: the observation, or the window median if it was a lone
    /// outlier.
    pub demand: u64,
    pub outlier: bool,
    /// Demand forecast `horizon_ticks` ahead, only while the error gate is open.
    pub forecast: Option<u64>,
    /// Mean absolute error of the recent scored forecasts (bp of the average).
    pub mean_error_bp: Option<u32>,
}

/// Running totals, for the simulator's report and the evaluation log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    /// Observations seen.
    pub ticks: u64,
    /// Lone outliers replaced by the median.
    pub outliers: u64,
    /// Forecasts scored against what happened.
    pub scored: u64,
    /// Sum of their absolute errors, bp of the group average.
    pub abs_error_bp: u64,
    /// Ticks on which the error gate was open.
    pub trusted: u64,
    /// Ticks counted high on a forecast alone.
    pub predicted_high: u64,
    /// Of those, ticks counted high on the seasonal forecast alone.
    pub seasonal_high: u64,
    /// Shadow mode: breaches of the seasonal forecast it would have acted on.
    pub shadow_notes: u64,
}

impl Stats {
    /// Mean absolute forecast error over the whole run, in percentage points.
    pub fn mean_error_points(&self) -> Option<f64> {
        (self.scored > 0).then(|| self.abs_error_bp as f64 / self.scored as f64 / 100.0)
    }
}

/// Per-group state of the guard and the forecaster.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Signal {
    window: VecDeque<u64>,
    /// The previous observation was far from the window's median.
    prev_far: bool,
    /// (level, trend) × [`SCALE`]; `None` before the first observation.
    holt: Option<(i64, i64)>,
    tick: u64,
    /// Forecasts waiting for their due tick: (due, demand).
    pending: VecDeque<(u64, u64)>,
    errors: VecDeque<u32>,
    /// Predicted ticks in the current high streak (for the decision's reason).
    streak_predicted: u32,
    last_forecast: Option<u64>,
    /// The forecast of the latest tick counted high on it.
    predicted_forecast: Option<u64>,
    pub stats: Stats,
}

/// A [`Signal`] allocated on its first observation: most groups enable neither
/// the guard nor the forecaster, and 10 000 signals inline were 2 MB (issue 18).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LazySignal(Option<Box<Signal>>);

impl LazySignal {
    /// [`Signal::observe`].
    pub fn observe(&mut self, raw: u64, weight: u32, s: &ForecastSettings) -> Observed {
        self.0.get_or_insert_default().observe(raw, weight, s)
    }

    /// [`Signal::note_streak`]: nothing to note for a signal never observed
    /// unless a tick was predicted.
    pub fn note_streak(&mut self, high: u32, predicted: bool) {
        match &mut self.0 {
            Some(s) => s.note_streak(high, predicted),
            None if predicted => self.0.get_or_insert_default().note_streak(high, predicted),
            None => {}
        }
    }

    pub fn stats(&self) -> Stats {
        self.0.as_ref().map(|s| s.stats).unwrap_or_default()
    }

    /// The counters, to add to (allocates the signal if it never observed).
    pub fn stats_mut(&mut self) -> &mut Stats {
        &mut self.0.get_or_insert_default().stats
    }

    /// [`Signal::streak_predicted`].
    pub fn streak_predicted(&self) -> u32 {
        self.0.as_ref().map_or(0, |s| s.streak_predicted())
    }

    /// [`Signal::predicted_forecast`].
    pub fn predicted_forecast(&self) -> Option<u64> {
        self.0.as_ref().and_then(|s| s.predicted_forecast())
    }

    /// [`Signal::mean_error_bp`].
    pub fn mean_error_bp(&self) -> Option<u32> {
        self.0.as_ref().and_then(|s| s.mean_error_bp())
    }
}

impl Signal {
    /// Feed one tick's demand (bp × vCPUs: 10 000 = one busy vCPU) measured over
    /// `weight` fresh vCPUs.
    pub fn observe(&mut self, raw: u64, weight: u32, s: &ForecastSettings) -> Observed {
        self.tick += 1;
        self.stats.ticks += 1;
        let weight = u64::from(weight.max(1));
        // Only the first of a run of far values is held back: two in a row are a
        // shift, and every later one of the run passes too.
        let far = s.guard && self.is_far(raw, s.z_hundredths);
        let outlier = far && !self.prev_far;
        self.prev_far = far;
        let demand = if outlier {
            self.stats.outliers += 1;
            median(&self.window)
        } else {
            raw
        };
        // The raw value enters the window: a real shift becomes the new normal.
        if self.window.len() == WINDOW {
            self.window.pop_front();
        }
        self.window.push_back(raw);
        if !s.predictive {
            return Observed {
                demand,
                outlier,
                forecast: None,
                mean_error_bp: None,
            };
        }
        self.score(demand, weight);
        self.smooth(demand);
        let h = u64::from(s.horizon_ticks.max(1));
        let f = self.forecast(h);
        self.pending.push_back((self.tick + h, f));
        let mean = self.mean_error_bp();
        let trusted = self.errors.len() >= MIN_ERRORS && mean.is_some_and(|m| m <= s.max_error_bp);
        if trusted {
            self.stats.trusted += 1;
        }
        self.last_forecast = trusted.then_some(f);
        Observed {
            demand,
            outlier,
            forecast: self.last_forecast,
            mean_error_bp: mean,
        }
    }

    /// Record how the high streak went: `high` is the streak after this tick,
    /// `predicted` whether this tick was high on the forecast alone.
    pub fn note_streak(&mut self, high: u32, predicted: bool) {
        if predicted {
            self.stats.predicted_high += 1;
            self.predicted_forecast = self.last_forecast;
        }
        self.streak_predicted = match high {
            0 => 0,
            1 => u32::from(predicted),
            _ => self.streak_predicted + u32::from(predicted),
        };
    }

    /// Predicted ticks in the current high streak.
    pub fn streak_predicted(&self) -> u32 {
        self.streak_predicted
    }

    /// The forecast (demand units) of the latest tick counted high on it.
    pub fn predicted_forecast(&self) -> Option<u64> {
        self.predicted_forecast
    }

    /// Mean absolute error of the recent scored forecasts (bp of the average).
    pub fn mean_error_bp(&self) -> Option<u32> {
        let n = self.errors.len() as u64;
        (n > 0).then(|| {
            let sum: u64 = self.errors.iter().map(|e| u64::from(*e)).sum();
            u32::try_from(sum / n).unwrap_or(u32::MAX)
        })
    }

    /// The demand forecast `h` ticks after the latest observation, trusted by the
    /// error gate or not (`None` before the first observation). The history's
    /// forecast endpoint measures its own error per lead time.
    pub fn forecast_ahead(&self, h: u64) -> Option<u64> {
        self.holt.map(|_| self.forecast(h))
    }

    /// A value whose robust z-score against the window exceeds the threshold.
    fn is_far(&self, x: u64, z_hundredths: u32) -> bool {
        if self.window.len() < MIN_WINDOW {
            return false;
        }
        let med = median(&self.window);
        let dev: VecDeque<u64> = self.window.iter().map(|v| v.abs_diff(med)).collect();
        // A flat window has MAD 0: floor it at 2 % of the median (and 0.5 % of a
        // vCPU) so ordinary jitter on a steady load is not "infinitely" unusual.
        let mad = median(&dev).max(med / 50).max(50);
        // z = 0.6745 · |x − med| / MAD, in hundredths.
        let z = u128::from(x.abs_diff(med)) * 6745 / (u128::from(mad) * 100);
        z > u128::from(z_hundredths)
    }

    fn score(&mut self, actual: u64, weight: u64) {
        while let Some(&(due, f)) = self.pending.front() {
            if due > self.tick {
                break;
            }
            self.pending.pop_front();
            if due < self.tick {
                continue; // a skipped tick (no fresh member): nothing to compare with
            }
            let err = u32::try_from(f.abs_diff(actual) / weight).unwrap_or(u32::MAX);
            self.stats.scored += 1;
            self.stats.abs_error_bp += u64::from(err);
            if self.errors.len() == ERRORS {
                self.errors.pop_front();
            }
            self.errors.push_back(err);
        }
    }

    fn smooth(&mut self, x: u64) {
        let x = i64::try_from(x).unwrap_or(i64::MAX / SCALE) * SCALE;
        self.holt = Some(match self.holt {
            None => (x, 0),
            Some((level, trend)) => {
                let new_level = (ALPHA * x + (SCALE - ALPHA) * (level + trend)) / SCALE;
                let new_trend = (BETA * (new_level - level) + (SCALE - BETA) * trend) / SCALE;
                (new_level, new_trend)
            }
        });
    }

    fn forecast(&self, h: u64) -> u64 {
        let (level, trend) = self.holt.unwrap_or((0, 0));
        let f = level + trend * i64::try_from(h).unwrap_or(i64::MAX / 2);
        u64::try_from(f.max(0) / SCALE).unwrap_or(0)
    }
}

/// Lower median (no floats, no averaging of the middle pair).
fn median(v: &VecDeque<u64>) -> u64 {
    if v.is_empty() {
        return 0;
    }
    let mut s: Vec<u64> = v.iter().copied().collect();
    let mid = (s.len() - 1) / 2;
    *s.select_nth_unstable(mid).1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> ForecastSettings {
        ForecastSettings {
            predictive: true,
            guard: true,
            horizon_ticks: 3,
            max_error_bp: 1_000,
            z_hundredths: 350,
        }
    }

    #[test]
    fn a_lone_spike_is_replaced_by_the_median_and_a_shift_is_not() {
        let s = settings();
        let mut sig = Signal::default();
        for i in 0..20 {
            let o = sig.observe(5_000 + (i % 3) * 100, 1, &s);
            assert!(!o.outlier);
        }
        let o = sig.observe(10_000, 1, &s);
        assert!(o.outlier);
        assert_eq!(o.demand, 5_100);
        assert!(!sig.observe(5_000, 1, &s).outlier);
        // A step: the first tick is held back, the second passes.
        assert!(sig.observe(9_500, 1, &s).outlier);
        let o = sig.observe(9_500, 1, &s);
        assert!(!o.outlier);
        assert_eq!(o.demand, 9_500);
        assert_eq!(sig.stats.outliers, 2);
    }

    #[test]
    fn a_linear_ramp_is_forecast_and_trusted() {
        let s = settings();
        let mut sig = Signal::default();
        let mut last = None;
        for i in 0..60u64 {
            last = Some(sig.observe(2_000 + i * 50, 1, &s));
        }
        let o = last.unwrap();
        // After 60 ticks the trend is learnt: 3 ticks ahead of 4950 is about 5100.
        let f = o.forecast.expect("trusted");
        assert!((5_050..=5_150).contains(&f), "{f}");
        assert!(o.mean_error_bp.unwrap() < 100);
    }

    #[test]
    fn a_noisy_signal_closes_the_gate() {
        let s = ForecastSettings {
            guard: false,
            max_error_bp: 500,
            ..settings()
        };
        let mut sig = Signal::default();
        let mut trusted = 0;
        for i in 0..100u64 {
            let x = if i % 2 == 0 { 1_000 } else { 9_000 };
            trusted += u32::from(sig.observe(x, 1, &s).forecast.is_some());
        }
        assert_eq!(trusted, 0);
        assert!(sig.stats.mean_error_points().unwrap() > 20.0);
    }
}
