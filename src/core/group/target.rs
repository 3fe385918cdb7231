//! Target tracking (`rule = "target"`), as the HPA: desired = ceil(demand of the
//! fresh members / (target × vCPUs per instance)), nothing within the tolerance,
//! up by at most `max_step_up` at once, down by one when every desired count of
//! the stabilization window is lower.
//!
//! The engine keeps one action in flight per group, so a step of k instances is a
//! burst of k scale-ups: the first waits for the up-cooldown, the next ones follow
//! as soon as the previous one is acknowledged (no cooldown between them); each is
//! one action of the budget and passes every other rule (bounds, cost, approval).

use std::collections::VecDeque;

use super::*;
use crate::core::policy::Rule;
use crate::core::reason::{Tracking, TrackingStep};

/// What target tracking computed at the last evaluation, and its window.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct TargetState {
    /// desired, demand (bp of one vCPU), vCPUs per instance, and the forecast's
    /// error when the demand is its peak.
    last: Option<(u32, u64, u32, Option<u32>)>,
    /// Desired counts of the stabilization window (time, count), oldest first; the
    /// first may predate the window (the count in force when it opened).
    recent: VecDeque<(Timestamp, u32)>,
    /// Scale-ups left in the current burst, and its size.
    left: u32,
    size: u32,
}

impl Group {
    /// Compute the desired count from the average of this evaluation (after the
    /// anomaly guard) and file it in the window. A no-op under `rule = "thresholds"`.
    pub(super) fn track(&mut self, now: Timestamp, avg: Option<Bp>, fresh_vcpus: u32) {
        let p = &self.policy;
        if p.rule != Rule::Target {
            return;
        }
        let Some(avg) = avg else {
            // Nothing measured: no recommendation (the window keeps what it had),
            // and a shadow episode ends.
            self.target.last = None;
            self.end_shadow_target();
            return;
        };
        // Demand = average × fresh vCPUs: the sum of what the fresh members use.
        let demand = u64::from(avg) * u64::from(fresh_vcpus);
        let vcpus = self.primary_member().map_or(p.vcpus, |m| m.vcpus).max(1);
        let target_bp = u64::from(p.target_cpu_percent.max(1)) * 100;
        let within =
            u64::from(avg).abs_diff(target_bp) * 1000 <= u64::from(p.tolerance_pm) * target_bp;
        let per = target_bp * u64::from(vcpus);
        let mut desired = if within {
            self.staying()
        } else {
            u32::try_from(demand.div_ceil(per)).unwrap_or(u32::MAX)
        };
        self.shadow_target(now, desired, per);
        // Ahead of a trusted seasonal peak (`predictive = true`): out, never in.
        let p = &self.policy;
        let mut last = (desired, demand, vcpus, None);
        if p.predictive
            && let Some((peak, mape)) = self.seasonal_peak(now)
        {
            let ahead = u32::try_from(peak.div_ceil(per)).unwrap_or(u32::MAX);
            if ahead > desired {
                desired = ahead;
                last = (desired, peak, vcpus, Some(mape));
            }
        }
        self.target.last = Some(last);
        let window = p.scale_down_stabilization;
        let recent = &mut self.target.recent;
        recent.push_back((now, desired));
        while recent.len() >= 2 && recent[1].0.plus(window) <= now {
            recent.pop_front();
        }
    }

    /// The action target tracking wants now, its reason, and whether it is a
    /// later scale-up of a burst (no up-cooldown). `None`: hold.
    pub(super) fn target_want(&mut self, now: Timestamp) -> Option<(Action, Reason, bool)> {
        let Some((desired, demand, vcpus, forecast_mape)) = self.target.last else {
            self.target.left = 0;
            return None;
        };
        let (target, max_step) = (self.policy.target_cpu_percent, self.policy.max_step_up);
        let window = self.policy.scale_down_stabilization;
        let tracking = |instances, step| {
            Reason::Target(Tracking {
                desired,
                demand,
                target,
                vcpus,
                instances,
                step,
                forecast_mape,
            })
        };
        let count = self.count();
        if desired > count {
            let burst = self.target.left > 0;
            let step = if burst {
                self.target.size
            } else {
                (desired - count).min(max_step.max(1))
            };
            let k = if burst {
                step - self.target.left + 1
            } else {
                1
            };
            let reason = tracking(count, TrackingStep::Up { k, step });
            return Some((Action::ScaleUp, reason, burst));
        }
        self.target.left = 0;
        let staying = self.staying();
        let recent = &self.target.recent;
        let covered = recent.front().is_some_and(|(t, _)| t.plus(window) <= now);
        let highest = recent.iter().map(|(_, d)| *d).max()?;
        if covered && highest < staying {
            let reason = tracking(staying, TrackingStep::Down { highest, window });
            return Some((Action::ScaleDown, reason, false));
        }
        None
    }

    /// A target scale-up was emitted: start or continue the burst.
    pub(super) fn target_acted(&mut self, reason: &Reason) {
        if let Reason::Target(Tracking {
            step: TrackingStep::Up { k, step },
            ..
        }) = reason
        {
            self.target.size = *step;
            self.target.left = step - k;
        }
    }

    /// A rule other than the action in flight blocked the burst: it ends.
    pub(super) fn target_blocked(&mut self) {
        if self.in_flight.is_none() {
            self.target.left = 0;
        }
    }

    /// A burst continues at once when its previous scale-up succeeded.
    pub(super) fn target_burst_left(&self) -> bool {
        self.target.left > 0
    }

    /// A reload that changes the rule or its settings starts the window afresh.
    pub(super) fn target_reload(&mut self, old: &Policy) {
        let p = &self.policy;
        let same = (
            old.rule,
            old.target_cpu_percent,
            old.tolerance_pm,
            old.scale_down_stabilization,
        ) == (
            p.rule,
            p.target_cpu_percent,
            p.tolerance_pm,
            p.scale_down_stabilization,
        );
        if !same {
            self.target = TargetState::default();
        }
    }

    /// The desired count of the last evaluation (`rule = "target"`).
    pub fn desired(&self) -> Option<u32> {
        self.target.last.map(|(d, _, _, _)| d)
    }
}
