//! The simulator's seasonal refits: the trace's own past, in 5-minute means, fitted
//! every `forecast_refit` of simulated time (as the daemon does from `[history]`)
//! and handed to the engine as [`crate::core::Input::Forecast`].

use std::sync::Arc;

use crate::core::Policy;
use crate::core::seasonal::Forecast;
use crate::forecast::{self, STEP_MS};

/// Demand seen so far and when to fit next.
#[derive(Debug, Clone)]
pub struct Refit {
    every_ms: u64,
    next_ms: u64,
    /// Complete 5-minute means, oldest first.
    series: Vec<f64>,
    /// Demand × ms in the current step.
    acc: f64,
    /// Measured MAPEs of the fits (percent), for the report.
    pub mapes: Vec<f64>,
}

impl Refit {
    /// `None` unless the policy forecasts seasonally (`predictive` true or "shadow").
    pub fn new(policy: &Policy) -> Option<Self> {
        (policy.predictive || policy.predictive_shadow).then(|| Self {
            every_ms: crate::core::time::duration_ms(policy.forecast_refit).max(1),
            next_ms: 0,
            series: Vec::new(),
            acc: 0.0,
            mapes: Vec::new(),
        })
    }

    /// `demand` vCPUs were asked for over `[t, t + dt)` (the simulator's grid).
    pub fn observe(&mut self, t: u64, dt: u64, demand: f64) {
        let step = STEP_MS as u64;
        if dt >= step {
            self.series
                .extend(std::iter::repeat_n(demand, (dt / step) as usize));
            return;
        }
        self.acc += demand * dt as f64;
        if (t + dt) / step > t / step {
            self.series.push(self.acc / step as f64);
            self.acc = 0.0;
        }
    }

    /// A fit of the past if one is due at `t`.
    pub fn due(&mut self, t: u64) -> Option<Arc<Forecast>> {
        if t < self.next_ms {
            return None;
        }
        self.next_ms = t - t % self.every_ms + self.every_ms;
        let end = self.series.len() as i64 * STEP_MS;
        let f = forecast::fit(&self.series, end);
        if let Some(m) = f.mape_hundredths {
            self.mapes.push(f64::from(m) / 100.0);
        }
        Some(Arc::new(f))
    }

    /// Mean of the measured MAPEs (percent).
    pub fn mean_mape(&self) -> Option<f64> {
        (!self.mapes.is_empty()).then(|| self.mapes.iter().sum::<f64>() / self.mapes.len() as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_five_minute_means_and_fits_come_every_refit() {
        let p = Policy {
            predictive_shadow: true,
            ..Policy::default()
        };
        assert!(Refit::new(&Policy::default()).is_none());
        let mut r = Refit::new(&p).unwrap();
        // 10 s steps: 1 vCPU for the first 2.5 minutes of each 5, 3 after: mean 2.
        let mut fits = Vec::new();
        for k in 0..(3 * 8_640u64) {
            let t = k * 10_000;
            if let Some(f) = r.due(t) {
                fits.push((t, f));
            }
            r.observe(t, 10_000, if t % 300_000 < 150_000 { 1.0 } else { 3.0 });
        }
        assert_eq!(r.series.len(), 3 * 288);
        assert!(r.series.iter().all(|v| (v - 2.0).abs() < 1e-9));
        // One fit per hour of the three days, each on the complete steps before it.
        assert_eq!(fits.len(), 72);
        assert!(fits[0].1.points.is_empty());
        let (t, last) = &fits[71];
        assert_eq!(*t, 71 * 3_600_000);
        assert_eq!(last.start_ms, *t as i64);
        assert!(last.points[0].abs_diff(20_000) <= 1, "{}", last.points[0]);
        // Measured once there are two days: the fits of the third day.
        assert_eq!(r.mapes.len(), 24);
        assert!(r.mean_mape().unwrap() < 0.01);
    }
}
