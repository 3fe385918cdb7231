//! Why a decision was taken, as data. `Display` gives the sentence of the decision
//! log; [`Reason::kind`] the bounded label of `decisions_total{reason}`.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::cpu::{self, Bp};
use super::time::fmt_dur;
use super::why::{Bound, Side};
use crate::name::Name;

/// Reason prefix of decisions taken for a manual target (audited in the decision log).
pub const MANUAL: &str = "manual scale to";

/// Forecast ticks in a high streak (predictive policy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Predicted {
    pub ticks: u32,
    /// The forecast over the capacity planned then.
    pub forecast: Bp,
    pub horizon: Duration,
    pub mean_error: Option<Bp>,
    /// The seasonal forecast made the last predicted tick: its MAPE over the last
    /// day, hundredths of a percent (`horizon` is then `boot_time` +
    /// `forecast_margin`).
    pub seasonal_mape: Option<u32>,
}

/// Target tracking's arithmetic (`rule = "target"`): `desired` =
/// ceil(`demand` / (`target` % × `vcpus`)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tracking {
    pub desired: u32,
    /// Demand of the fresh members, in basis points of one vCPU (10 000 = 1 vCPU).
    pub demand: u64,
    /// `target_cpu_percent`.
    pub target: u32,
    /// vCPUs per instance.
    pub vcpus: u32,
    /// Instances before the action (up: all counted; down: those staying).
    pub instances: u32,
    pub step: TrackingStep,
    /// The demand is the seasonal forecast's peak (`predictive = true`): its
    /// error over the last day, in hundredths of a percent.
    pub forecast_mape: Option<u32>,
}

/// Which way target tracking moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrackingStep {
    /// Scale-up `k` of a burst of `step` (at most `max_step_up`).
    Up { k: u32, step: u32 },
    /// Every desired count of the last `window` was at most `highest`, below the
    /// instances staying.
    Down { highest: u32, window: Duration },
}

/// Why a decision was taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// `rule = "target"`: the desired count differs from the instances.
    Target(Tracking),
    /// The group average stayed above (`up`) or below the threshold for `ticks`.
    Streak {
        up: bool,
        avg: Bp,
        threshold: u32,
        ticks: u32,
        /// Boxed: rare, and it keeps decisions small.
        predicted: Option<Box<Predicted>>,
    },
    /// Scale-up `k` of a burst of `step` (`emergency_threshold` reached).
    Emergency {
        k: u32,
        step: u32,
        threshold: u32,
        avg: Option<Bp>,
    },
    /// Fewer instances stay than the policy's `min_instances`.
    BelowMin { staying: u32, min: u32 },
    /// A schedule window's min or max is not met (the bound names the window).
    Window { bound: Bound, staying: u32 },
    /// The operator's target.
    Manual { target: u32, staying: u32 },
    /// `primary_death = drain`.
    Drain { primary: Arc<Name> },
    /// The primary is recreated (`promote` falls back to this without a live clone).
    Recreate {
        primary: Arc<Name>,
        timeout: Duration,
        promote: bool,
    },
    /// A live clone became the primary.
    Promoted {
        primary: Arc<Name>,
        silent: Duration,
    },
    /// An owned clone stopped reporting.
    CloneLost { silent: Duration, timeout: Duration },
    /// An owned clone was not ready `waited` after its create (`ready_timeout`);
    /// `checks` readiness checks failed. The scale-up backs off and is retried.
    NotReady {
        waited: Duration,
        timeout: Duration,
        checks: u32,
    },
}

impl Reason {
    /// A bounded label for metrics (the text has numbers in it).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Streak { up: true, .. } | Self::Emergency { .. } => "cpu_high",
            Self::Streak { up: false, .. } => "cpu_low",
            Self::Target(t) => match t.step {
                TrackingStep::Up { .. } => "cpu_high",
                TrackingStep::Down { .. } => "cpu_low",
            },
            Self::BelowMin { .. } => "below_min",
            Self::Window { bound, .. } => match bound.side {
                Side::Min => "cpu_high",
                Side::Max => "cpu_low",
            },
            Self::Manual { .. } => "manual",
            Self::Drain { .. } | Self::Recreate { .. } | Self::Promoted { .. } => "primary_dead",
            Self::CloneLost { .. } => "no_samples",
            Self::NotReady { .. } => "not_ready",
        }
    }
}

impl fmt::Display for Predicted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(m) = self.seasonal_mape {
            return write!(
                f,
                " ({} predicted: seasonal forecast peaks at {:.2}% within {}, error over the last day {:.2} %)",
                self.ticks,
                cpu::percent(self.forecast),
                fmt_dur(self.horizon),
                f64::from(m) / 100.0
            );
        }
        write!(
            f,
            " ({} predicted: forecast {:.2}% in {}, mean forecast error {:.2} points)",
            self.ticks,
            cpu::percent(self.forecast),
            fmt_dur(self.horizon),
            self.mean_error.map_or(0.0, cpu::percent)
        )
    }
}

impl fmt::Display for Tracking {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "desired {} = ceil({:.2} vCPU / ({} % × {} vCPU))",
            self.desired,
            self.demand as f64 / f64::from(cpu::FULL),
            self.target,
            self.vcpus
        )?;
        if let Some(m) = self.forecast_mape {
            write!(
                f,
                " (the seasonal forecast's peak, error over the last day {:.2} %)",
                f64::from(m) / 100.0
            )?;
        }
        match self.step {
            TrackingStep::Up { k, step } => write!(
                f,
                " > {} instance(s): scale-up {k} of {step}",
                self.instances
            ),
            TrackingStep::Down { highest, window } => write!(
                f,
                "; every desired count of the last {} at most {highest} < {} instance(s)",
                fmt_dur(window),
                self.instances
            ),
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Target(t) => write!(f, "{t}"),
            Self::Streak {
                up,
                avg,
                threshold,
                ticks,
                predicted,
            } => {
                write!(
                    f,
                    "group average {:.2}% {} {threshold}% for {ticks} consecutive ticks",
                    cpu::percent(*avg),
                    if *up { '>' } else { '<' }
                )?;
                match predicted {
                    Some(p) => write!(f, "{p}"),
                    None => Ok(()),
                }
            }
            Self::Emergency {
                k,
                step,
                threshold,
                avg,
            } => {
                write!(
                    f,
                    "emergency scale-up {k} of {step}: group average reached emergency_threshold ({threshold}%), now "
                )?;
                match avg {
                    Some(bp) => write!(f, "{:.2}%", cpu::percent(*bp)),
                    None => f.write_str("unknown"),
                }
            }
            Self::BelowMin { staying, min } => {
                write!(f, "below min_instances ({staying} < {min})")
            }
            Self::Window { bound, staying } => write!(f, "{bound} ({staying} instance(s) now)"),
            Self::Manual { target, staying } => write!(
                f,
                "{MANUAL} {target} by the operator ({staying} instance(s) now)"
            ),
            Self::Drain { primary } => write!(f, "primary {primary} dead; primary_death = drain"),
            Self::Recreate {
                primary,
                timeout,
                promote,
            } => write!(
                f,
                "primary {primary} sent no sample for death_timeout ({}); primary_death = {}",
                fmt_dur(*timeout),
                if *promote {
                    "promote, but no live clone: recreate"
                } else {
                    "recreate"
                }
            ),
            Self::Promoted { primary, silent } => write!(
                f,
                "primary {primary} sent no sample for {}; primary_death = promote",
                fmt_dur(*silent)
            ),
            Self::CloneLost { silent, timeout } => write!(
                f,
                "no sample for {}; dropped from the group (death_timeout = {})",
                fmt_dur(*silent),
                fmt_dur(*timeout)
            ),
            Self::NotReady {
                waited,
                timeout,
                checks,
            } => write!(
                f,
                "not ready {} after its create (ready_timeout = {}; {} readiness check{} failed); destroyed, the scale-up is retried with backoff",
                fmt_dur(*waited),
                fmt_dur(*timeout),
                checks,
                if *checks == 1 { "" } else { "s" }
            ),
        }
    }
}

/// As its text: the decision log carries the sentence.
impl serde::Serialize for Reason {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}
