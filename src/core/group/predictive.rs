//! Predictive policy and anomaly guard (see `core::predict`), and the seasonal
//! forecast (`core::seasonal`). Kept apart from the reactive rule in `decide`:
//! `evaluate` calls `guard_and_forecast` once per tick and counts a predicted breach
//! as a high tick; `decide` adds `predicted` to its reason. Forecasts only ever add
//! high ticks, so a group never scales in on a forecast.

use super::*;
use crate::core::policy::Rule;
use crate::core::reason::Predicted;
use crate::core::seasonal::{self, Shadow, Standing, Trigger};

/// A group's seasonal forecast and what shadow mode remembers between ticks.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(super) struct Seasonal {
    pub(super) forecast: Option<Arc<seasonal::Forecast>>,
    /// The trusted forecast breached on the last evaluation (a shadow note is
    /// written when a breach starts, not on every tick of it).
    breach: bool,
    /// The same for target tracking's shadow: the forecast's peak needed more
    /// instances than the measured demand on the last evaluation.
    target_breach: bool,
    /// A shadow note for the evaluation under way.
    pub(super) note: Option<Box<Shadow>>,
    /// (peak, MAPE) when the last tick was counted high on the seasonal forecast.
    last: Option<(u64, u32)>,
}

impl Group {
    /// Totals of the guard and the forecaster (for the simulator's report).
    pub fn forecast_stats(&self) -> predict::Stats {
        self.signal.stats()
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
        let (peak, mape) = self.seasonal_peak(now)?;
        let up = u64::from(self.policy.scale_up_threshold) * 100;
        (peak / u64::from(planned.max(1)) > up).then_some((peak, mape))
    }

    /// The trusted seasonal forecast's peak demand (bp of one vCPU) within
    /// `boot_time` + `forecast_margin`, with its error (hundredths of a percent).
    pub(super) fn seasonal_peak(&self, now: Timestamp) -> Option<(u64, u32)> {
        let f = self.seasonal.forecast.as_ref()?;
        let at = self.wall_ms(now);
        let Standing::Trusted { mape_hundredths } = f.standing(at, self.policy.forecast_max_error)
        else {
            return None;
        };
        let lead = i64::try_from(duration_ms(self.seasonal_lead())).unwrap_or(i64::MAX);
        Some((f.peak(at, at.saturating_add(lead))?, mape_hundredths))
    }

    /// The average to count (a lone outlier replaced by the recent median) and
    /// whether the trusted forecast, `forecast_horizon` ahead and over the
    /// capacity that will exist then, breaches `scale_up_threshold`.
    pub(super) fn guard_and_forecast(
        &mut self,
        now: Timestamp,
        avg: Option<Bp>,
        fresh_vcpus: u32,
    ) -> (Option<Bp>, bool) {
        self.seasonal.last = None;
        let p = &self.policy;
        let seasonal_on = (p.predictive || p.predictive_shadow) && self.seasonal.forecast.is_some();
        let Some(bp) = avg.filter(|_| p.predictive || p.anomaly_guard || seasonal_on) else {
            self.seasonal.breach = false;
            return (avg, false);
        };
        // Demand is average × fresh vCPUs (as `average` counted them), so it does
        // not drop when a clone joins. Planned capacity counts clones being
        // created: they serve by the time the forecast comes due.
        let (fresh_w, planned_w) = (fresh_vcpus.max(1), self.planned_vcpus());
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
                self.signal.stats_mut().seasonal_high += u64::from(alone);
            } else if alone && !self.seasonal.breach && p.rule == Rule::Thresholds {
                // Target tracking notes its own (`shadow_target`): a threshold
                // breach is not what would move it.
                let trigger = Trigger::Threshold(self.policy.scale_up_threshold);
                self.note_shadow(now, peak, planned_w, trigger, mape);
            }
        }
        self.seasonal.breach = breach.is_some();
        (Some(filtered), predicted)
    }

    /// `predictive = "shadow"` under target tracking: note (once per episode)
    /// when the trusted forecast's peak within the lead needs more instances
    /// (`per` bp each) than the `desired` count and the instances there are.
    pub(super) fn shadow_target(&mut self, now: Timestamp, desired: u32, per: u64) {
        let p = &self.policy;
        if !p.predictive_shadow || p.predictive {
            return;
        }
        // What would move it: more than the instances staying (not those
        // draining) and than the measured desired count, within max_instances.
        let staying = self.staying();
        let most = p.max_instances;
        let would = self.seasonal_peak(now).and_then(|(peak, mape)| {
            let needs = u32::try_from(peak.div_ceil(per.max(1)))
                .unwrap_or(u32::MAX)
                .min(most);
            (needs > desired.max(staying)).then_some((peak, mape, needs))
        });
        if let Some((peak, mape, needs)) = would
            && !self.seasonal.target_breach
        {
            let trigger = Trigger::Target {
                target: self.policy.target_cpu_percent,
                needs,
                desired,
            };
            self.note_shadow(now, peak, self.planned_vcpus(), trigger, mape);
        }
        self.seasonal.target_breach = would.is_some();
    }

    /// A measurement gap ends target tracking's shadow episode: the next breach
    /// is noted again.
    pub(super) fn end_shadow_target(&mut self) {
        self.seasonal.target_breach = false;
    }

    /// What shadow mode would have done, for this evaluation's outputs.
    fn note_shadow(
        &mut self,
        now: Timestamp,
        peak: u64,
        planned: u32,
        trigger: Trigger,
        mape: u32,
    ) {
        self.signal.stats_mut().shadow_notes += 1;
        self.seasonal.note = Some(Box::new(Shadow {
            t: now,
            group: self.group.clone(),
            would: Action::ScaleUp,
            peak,
            planned_vcpus: planned,
            lead: self.seasonal_lead(),
            trigger,
            mape_hundredths: mape,
        }));
    }

    /// vCPUs running, booting or being created: what serves by the time a
    /// forecast comes due.
    fn planned_vcpus(&self) -> u32 {
        self.members
            .values()
            .filter(|m| m.state.is_live() || matches!(m.state, MemberState::Creating(_)))
            .map(|m| m.vcpus)
            .sum()
    }

    /// The forecast ticks that are part of the high streak, if any.
    pub(super) fn predicted(&self) -> Option<Box<Predicted>> {
        let n = self.signal.streak_predicted();
        if n == 0 {
            return None;
        }
        let planned = self.planned_vcpus();
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::core::seasonal::{Forecast, MIN_HISTORY_MS};
    use crate::core::{Action, Engine, Input, Options, Output, Policy, Timestamp};
    use crate::name::Name;

    const MIN: u64 = 60_000;

    fn policy(predictive: bool, shadow: bool) -> Policy {
        Policy {
            predictive,
            predictive_shadow: shadow,
            boot_time: Duration::from_secs(60),
            forecast_margin: Duration::from_secs(240),
            max_instances: 4,
            scale_up_cooldown: Duration::from_secs(10),
            scale_down_cooldown: Duration::from_secs(10),
            ..Policy::default()
        }
    }

    /// 5-minute steps from t = 0: `low` vCPUs for the first half hour, `high` after.
    fn curve(low: f64, high: f64, mape_hundredths: u32) -> Input {
        let v = |x: f64| (x * 10_000.0) as u64;
        Input::Forecast {
            group: Name::parse("a:web").unwrap(),
            forecast: std::sync::Arc::new(Forecast {
                fitted_at_ms: 0,
                history_ms: 2 * MIN_HISTORY_MS,
                model: "test".into(),
                start_ms: 0,
                step_ms: 5 * MIN,
                points: (0..24)
                    .map(|i| if i < 6 { v(low) } else { v(high) })
                    .collect(),
                mape_hundredths: Some(mape_hundredths),
            }),
        }
    }

    /// Run an hour with the group's members at `share` (percent) each, a clone
    /// adopted first; the outputs with their times.
    fn hour(p: Policy, forecast: Input, share: u64) -> Vec<(u64, Output)> {
        let web = Name::parse("a:web").unwrap();
        let clone = Name::parse("a:web-clone-1").unwrap();
        let mut e = Engine::new(vec![(web.clone(), p)], Options::default(), Timestamp::ZERO);
        let mut log = Vec::new();
        let mut step = |e: &mut Engine, t: u64, i: Input| {
            let mut out = Vec::new();
            e.step(Timestamp::from_millis(t), i, &mut out);
            log.extend(out.into_iter().map(|o| (t, o)));
        };
        step(
            &mut e,
            0,
            Input::Adopt {
                group: web.clone(),
                vm: clone.clone(),
            },
        );
        step(&mut e, 0, forecast);
        for k in 0..360u64 {
            let t = k * 10_000;
            for vm in [&clone, &web] {
                let cpu_us = k * 100_000 * share;
                step(
                    &mut e,
                    t,
                    Input::Sample {
                        vm: vm.clone(),
                        cpu_us,
                        vcpus: Some(1),
                    },
                );
            }
            step(&mut e, t, Input::Tick);
        }
        // Decisions are acknowledged by nobody: the first one stays in flight,
        // which is all these tests look at.
        log
    }

    fn decisions(log: &[(u64, Output)]) -> Vec<(u64, Action, String)> {
        log.iter()
            .filter_map(|(t, o)| match o {
                Output::Decision(d) => Some((*t, d.action, d.reason.to_string())),
                _ => None,
            })
            .collect()
    }

    fn shadow_notes(log: &[(u64, Output)]) -> Vec<(u64, String)> {
        log.iter()
            .filter_map(|(t, o)| match o {
                Output::Shadow(n) => Some((*t, n.to_string())),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn true_scales_out_ahead_of_the_peak_by_boot_time_and_margin() {
        // 2 instances at 50 %: no reactive reason; 3 vCPU forecast from 30 min on,
        // 150 % of the 2 planned vCPUs.
        let log = hour(policy(true, false), curve(1.0, 3.0, 500), 50);
        let d = decisions(&log);
        assert_eq!(d.len(), 1, "{d:?}");
        let (t, action, reason) = &d[0];
        assert_eq!(*action, Action::ScaleUp);
        // The peak enters the lead (5 min) at 25 min; three high ticks later.
        assert!((25 * MIN..=25 * MIN + 40_000).contains(t), "{t}");
        assert!(
            reason.contains("seasonal forecast peaks at 150.00%"),
            "{reason}"
        );
        assert!(
            reason.contains("error over the last day 5.00 %"),
            "{reason}"
        );
    }

    #[test]
    fn target_tracking_scales_out_to_the_forecast_peak_never_in() {
        use crate::core::policy::Rule;
        let target = |predictive| Policy {
            rule: Rule::Target,
            target_cpu_percent: 75,
            ..policy(predictive, false)
        };
        // 2 instances at 50 % (1 vCPU of demand, desired 2 within... below
        // target: no reactive change); the 3-vCPU peak from 30 min on wants
        // ceil(3 / 0.75) = 4 instances, from 25 min (boot + margin ahead).
        let log = hour(target(true), curve(1.0, 3.0, 500), 50);
        let d = decisions(&log);
        let ups: Vec<_> = d.iter().filter(|x| x.1 == Action::ScaleUp).collect();
        assert!(!ups.is_empty(), "{d:?}");
        let (t, _, reason) = ups[0];
        assert!((25 * MIN..=25 * MIN + 10_000).contains(t), "{t}");
        assert!(
            reason.starts_with("desired 4 = ceil(3.00 vCPU / (75 % × 1 vCPU)) (the seasonal forecast's peak, error over the last day 5.00 %)"),
            "{reason}"
        );
        assert!(!d.iter().any(|x| x.1 == Action::ScaleDown), "{d:?}");
        // Without predictive the same hour does nothing but (perhaps) scale in.
        let log = hour(target(false), curve(1.0, 3.0, 500), 50);
        assert!(
            !decisions(&log).iter().any(|x| x.1 == Action::ScaleUp),
            "{:?}",
            decisions(&log)
        );
    }

    #[test]
    fn shadow_never_acts_and_notes_what_it_would_have_done_once() {
        let log = hour(policy(false, true), curve(1.0, 3.0, 500), 50);
        assert_eq!(decisions(&log), vec![]);
        let notes = shadow_notes(&log);
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert_eq!(notes[0].0, 25 * MIN);
        assert!(
            notes[0].1.starts_with("shadow: would scale_up now"),
            "{notes:?}"
        );
    }

    #[test]
    fn shadow_under_target_tracking_notes_the_count_the_peak_needs_once() {
        use crate::core::policy::Rule;
        let p = Policy {
            rule: Rule::Target,
            target_cpu_percent: 75,
            ..policy(false, true)
        };
        // 2 instances at 50 %: desired 2 (1 vCPU / 75 %); from 25 min the 3-vCPU
        // peak within boot + margin needs ceil(3 / 0.75) = 4.
        let log = hour(p.clone(), curve(1.0, 3.0, 500), 50);
        assert!(
            !decisions(&log).iter().any(|x| x.1 == Action::ScaleUp),
            "{:?}",
            decisions(&log)
        );
        let notes = shadow_notes(&log);
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert_eq!(notes[0].0, 25 * MIN);
        assert_eq!(
            notes[0].1,
            "shadow: would scale_up now: the seasonal forecast peaks at 3.00 vCPU within 5m (boot_time + forecast_margin), needing 4 instance(s) at target_cpu_percent 75 % (desired now 2, 2 vCPU planned); error over the last day 5.00 %"
        );
        // A peak the instances there already cover is no note, nor one that
        // would need more than max_instances allows.
        let log = hour(p.clone(), curve(1.0, 1.4, 500), 50);
        assert!(shadow_notes(&log).is_empty());
        let at_most_two = Policy {
            max_instances: 2,
            ..p
        };
        let log = hour(at_most_two, curve(1.0, 3.0, 500), 50);
        assert!(shadow_notes(&log).is_empty(), "{:?}", shadow_notes(&log));
    }

    #[test]
    fn an_untrusted_forecast_is_not_acted_on() {
        // 25 % error over the last day, above forecast_max_error (10).
        let log = hour(policy(true, false), curve(1.0, 3.0, 2_500), 50);
        assert_eq!(decisions(&log), vec![]);
    }

    #[test]
    fn a_low_forecast_never_scales_in() {
        // 2 instances at 50 %: above scale_down_threshold (40); a forecast of
        // nothing at all does not take one away...
        let log = hour(policy(true, false), curve(0.0, 0.0, 100), 50);
        assert_eq!(decisions(&log), vec![]);
        // ...while the measured average below the threshold does (the rule works).
        let log = hour(policy(true, false), curve(0.0, 0.0, 100), 30);
        let d = decisions(&log);
        assert_eq!(d.first().map(|d| d.1), Some(Action::ScaleDown), "{d:?}");
    }
}
