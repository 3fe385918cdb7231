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
    /// Measured MAPEs of the fits (when, percent), for the report.
    pub mapes: Vec<(u64, f64)>,
}

impl Refit {
    /// `None` unless the policy forecasts seasonally (`predictive` true or "shadow").
    pub fn new(policy: &Policy) -> Option<Self> {
        (policy.predictive || policy.predictive_shadow).then(|| Self::every(policy))
    }

    /// Refits every `forecast_refit` of `policy`, whether it forecasts or not.
    fn every(policy: &Policy) -> Self {
        Self {
            every_ms: crate::core::time::duration_ms(policy.forecast_refit).max(1),
            next_ms: 0,
            series: Vec::new(),
            acc: 0.0,
            mapes: Vec::new(),
        }
    }

    /// Whether a fit is due at `t` (and the next one then scheduled).
    fn take_due(&mut self, t: u64) -> bool {
        if t < self.next_ms {
            return false;
        }
        self.next_ms = t - t % self.every_ms + self.every_ms;
        true
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
        if !self.take_due(t) {
            return None;
        }
        let end = self.series.len() as i64 * STEP_MS;
        let f = forecast::fit(&self.series, end);
        if let Some(m) = f.mape_hundredths {
            self.mapes.push((t, f64::from(m) / 100.0));
        }
        Some(Arc::new(f))
    }
}

/// The fits a run would make, made once: a fit depends on the trace's past
/// only, not on the policy, so `tune`'s candidates share them (a month's refits
/// cost more than all of its candidates' runs).
#[derive(Debug, Clone)]
pub struct Fits {
    /// When each fit is handed over (ms) and the fit.
    fits: Vec<(u64, Arc<Forecast>)>,
    /// The grid they were made on: a run on another grid fits its own.
    dt: u64,
    /// The policy's `forecast_refit` (ms), for the same reason.
    every_ms: u64,
}

/// Where a run's seasonal fits come from.
#[derive(Debug, Clone, Copy)]
pub enum Fitting<'a> {
    /// Fitted as the run goes (`simulate`, as the daemon does).
    Live,
    /// Made beforehand for this trace (`tune`'s candidates).
    Shared(&'a Fits),
    /// None: the daemon fits none for this group (`[[lxc]]` containers), so a
    /// forecasting policy has Holt's forecast only.
    Off,
}

impl Fits {
    /// The fits of `policy`'s refit schedule (`forecast_refit`) over `trace` on a
    /// `dt` grid, made on `jobs` threads.
    pub fn new(
        trace: &super::trace::Trace,
        policy: &Policy,
        dt: u64,
        jobs: usize,
        done: &(dyn Fn() + Sync),
    ) -> Self {
        let mut r = Refit::every(policy);
        // The schedule: when a fit is due and how many steps it sees.
        let (mut due, mut cursor, mut t) = (Vec::new(), 0, 0);
        while t < trace.duration_ms() {
            if r.take_due(t) {
                due.push((t, r.series.len()));
            }
            r.observe(t, dt.max(1), trace.at(t, &mut cursor));
            t += dt.max(1);
        }
        let series = &r.series;
        let fits = super::par::map(&due, jobs, |&(t, n)| {
            let f = forecast::fit(&series[..n], n as i64 * STEP_MS);
            done();
            (t, Arc::new(f))
        });
        Self {
            fits,
            dt: dt.max(1),
            every_ms: r.every_ms,
        }
    }

    /// Fits made.
    pub fn len(&self) -> usize {
        self.fits.len()
    }

    pub fn is_empty(&self) -> bool {
        self.fits.is_empty()
    }
}

/// Where a run's seasonal fits come from: made as it goes, or shared.
#[derive(Debug)]
pub enum Source<'a> {
    Live(Refit),
    Shared {
        fits: &'a Fits,
        next: usize,
        mapes: Vec<(u64, f64)>,
    },
}

impl<'a> Source<'a> {
    /// For a run of `policy` on a `dt` grid: `None` unless it forecasts
    /// seasonally. Shared fits of another grid or refit period are not used.
    pub fn new(policy: &Policy, fitting: Fitting<'a>, dt: u64) -> Option<Self> {
        let live = Refit::new(policy)?;
        Some(match fitting {
            Fitting::Off => return None,
            Fitting::Shared(fits) if fits.dt == dt.max(1) && fits.every_ms == live.every_ms => {
                Self::Shared {
                    fits,
                    next: 0,
                    mapes: Vec::new(),
                }
            }
            _ => Self::Live(live),
        })
    }

    /// See [`Refit::observe`] (shared fits need nothing).
    pub fn observe(&mut self, t: u64, dt: u64, demand: f64) {
        if let Self::Live(r) = self {
            r.observe(t, dt, demand);
        }
    }

    /// See [`Refit::due`].
    pub fn due(&mut self, t: u64) -> Option<Arc<Forecast>> {
        match self {
            Self::Live(r) => r.due(t),
            Self::Shared { fits, next, mapes } => {
                // The newest fit due by now (one per step on the grid they were
                // made on; this also holds if steps were skipped).
                let mut newest = None;
                while let Some((at, f)) = fits.fits.get(*next).filter(|(at, _)| *at <= t) {
                    *next += 1;
                    if let Some(m) = f.mape_hundredths {
                        mapes.push((*at, f64::from(m) / 100.0));
                    }
                    newest = Some(f.clone());
                }
                newest
            }
        }
    }

    /// Mean of the measured MAPEs (percent) of the fits from `from_ms` on.
    pub fn mean_mape(&self, from_ms: u64) -> Option<f64> {
        let m = match self {
            Self::Live(r) => &r.mapes,
            Self::Shared { mapes, .. } => mapes,
        };
        let m: Vec<f64> = m
            .iter()
            .filter(|(t, _)| *t >= from_ms)
            .map(|x| x.1)
            .collect();
        (!m.is_empty()).then(|| m.iter().sum::<f64>() / m.len() as f64)
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
        assert!(r.mapes.iter().all(|m| m.1 < 0.01));
    }
}
