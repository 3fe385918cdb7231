//! `tune`: search a group's policy for the least slack whose under-provisioned
//! timeshare stays at most `max_under` and whose actions per hour stay within the
//! budget, on the first part of a trace; report the choice, the current policy,
//! the HPA at its own best target and mollymawk on the rest (out of sample).
//!
//! The search is a seeded random sample of a fixed grid over both rules (plus the
//! current policy), so a seed gives the same answer everywhere. Candidates are
//! simulated independently: `jobs` threads split them, results keep their order.

use std::time::Duration;

use crate::core::time::duration_ms;
use crate::core::{Policy, Rule};
use crate::name::Name;

use super::baselines::Hpa;
use super::metrics::Metrics;
use super::seasonal::Fits;
use super::simulate::{self, Fitting, Kind, Run, Spec, grid_ms};
use super::trace::{Rng, Trace};

/// What to search for.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Share of the trace's duration fitted on (the rest measures).
    pub train: f64,
    /// Most under-provisioned time allowed on the training part.
    pub max_under: Bound,
    /// Candidates simulated (besides the current policy); the grid if smaller.
    pub samples: usize,
    pub seed: u64,
    /// Threads.
    pub jobs: usize,
    /// Search this rule only (`None`: both).
    pub rule: Option<Rule>,
    /// Whether the daemon fits seasonal forecasts for this group (not for
    /// `[[lxc]]` containers: forecasting candidates then have Holt's only).
    pub seasonal: bool,
}

/// The most under-provisioned time a candidate may have on the training part.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Bound {
    /// This timeshare (0.01 = 1 %).
    Share(f64),
    /// No more than the current policy (`--max-under current`).
    Current,
}

/// One candidate and its figures on the training part.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub policy: Policy,
    pub train: Metrics,
}

impl Candidate {
    /// Within `max_under` and the policy's action budget.
    pub fn feasible(&self, max_under: f64) -> bool {
        self.train.under_provisioned_timeshare <= max_under && self.within_budget()
    }

    /// Within the policy's action budget on the training part.
    pub fn within_budget(&self) -> bool {
        self.train.actions_per_hour <= f64::from(self.policy.max_actions_per_hour)
    }
}

/// The outcome of a search.
#[derive(Debug, Clone)]
pub struct Tuned {
    /// Every candidate, the current policy first.
    pub candidates: Vec<Candidate>,
    /// Index of the recommendation in `candidates`.
    pub best: usize,
    /// Whether the recommendation met the bound and the budget on training.
    pub feasible: bool,
    /// The bound as a timeshare (the current policy's, for [`Bound::Current`]).
    pub max_under: f64,
    /// The HPA's best target on training.
    pub hpa_target: u32,
    /// Whether the recommendation forecasts (`predictive = true`).
    pub forecast: bool,
    /// The recommendation with the forecast the other way, on the training part.
    pub forecast_train: Metrics,
    /// Out of sample: current, tuned (as recommended), tuned with the forecast the
    /// other way, HPA at its best target, mollymawk, and the clairvoyant floor.
    pub test: Vec<Run>,
    /// Where the test part starts, ms.
    pub split_ms: u64,
}

impl Tuned {
    /// The recommended policy. One that does not forecast keeps the current
    /// policy's shadow mode (`predictive = "shadow"`): the forecast stays
    /// measured and logged.
    pub fn recommended(&self) -> Policy {
        let p = &self.candidates[self.best].policy;
        Policy {
            predictive_shadow: !p.predictive && self.candidates[0].policy.predictive_shadow,
            ..p.clone()
        }
    }

    /// An out-of-sample run by name.
    pub fn test_run(&self, name: &str) -> Option<&Run> {
        self.test.iter().find(|r| r.name == name)
    }
}

/// The tuned keys of `p`, as `(key, TOML value)` in the order written.
pub fn keys(p: &Policy) -> Vec<(&'static str, toml::Value)> {
    let dur = |d: Duration| toml::Value::String(humantime::format_duration(d).to_string());
    let int = |v: u32| toml::Value::Integer(i64::from(v));
    let mut k = vec![("rule", toml::Value::String(p.rule.as_str().into()))];
    match p.rule {
        Rule::Thresholds => k.extend([
            ("scale_up_threshold", int(p.scale_up_threshold)),
            ("scale_up_ticks", int(p.scale_up_ticks)),
            ("scale_down_threshold", int(p.scale_down_threshold)),
            ("scale_down_ticks", int(p.scale_down_ticks)),
        ]),
        Rule::Target => k.extend([
            ("target_cpu_percent", int(p.target_cpu_percent)),
            (
                "tolerance",
                toml::Value::Float(f64::from(p.tolerance_pm) / 1000.0),
            ),
            ("max_step_up", int(p.max_step_up)),
            ("scale_down_stabilization", dur(p.scale_down_stabilization)),
        ]),
    }
    k.extend([
        ("scale_up_cooldown", dur(p.scale_up_cooldown)),
        ("scale_down_cooldown", dur(p.scale_down_cooldown)),
        (
            "predictive",
            match (p.predictive, p.predictive_shadow) {
                (false, true) => toml::Value::String("shadow".into()),
                (on, _) => toml::Value::Boolean(on),
            },
        ),
    ]);
    k
}

/// The keys in one line (`rule=target target_cpu_percent=80 ...`), for tables.
pub fn summary(p: &Policy) -> String {
    keys(p)
        .iter()
        .filter(|(k, _)| *k != "rule")
        .map(|(k, v)| match v {
            toml::Value::String(s) => format!("{}={s}", short(k)),
            v => format!("{}={v}", short(k)),
        })
        .fold(p.rule.as_str().to_string(), |a, b| a + " " + &b)
}

fn short(key: &str) -> &str {
    match key {
        "scale_up_threshold" => "up",
        "scale_up_ticks" => "up_ticks",
        "scale_down_threshold" => "down",
        "scale_down_ticks" => "down_ticks",
        "target_cpu_percent" => "target",
        "tolerance" => "tol",
        "max_step_up" => "step",
        "scale_down_stabilization" => "stab",
        "scale_up_cooldown" => "up_cd",
        "scale_down_cooldown" => "down_cd",
        "predictive" => "forecast",
        k => k,
    }
}

/// The grid: both rules, every combination, in a fixed order. Candidates do not
/// forecast (a seasonal refit per candidate would cost more than the whole
/// search); the forecast is tried on the choice.
pub fn grid(base: &Policy) -> Vec<Policy> {
    let s = Duration::from_secs;
    let base = &Policy {
        predictive: false,
        predictive_shadow: false,
        ..base.clone()
    };
    let mut out = Vec::new();
    for up in [70, 75, 80, 85, 90] {
        for gap in [10, 20, 30] {
            for up_ticks in [1, 2, 3] {
                for down_ticks in [3, 6, 12] {
                    for down_cd in [s(60), s(120), s(300), s(600)] {
                        for up_cd in [s(30), s(60)] {
                            out.push(Policy {
                                rule: Rule::Thresholds,
                                scale_up_threshold: up,
                                scale_down_threshold: up - gap,
                                scale_up_ticks: up_ticks,
                                scale_down_ticks: down_ticks,
                                scale_up_cooldown: up_cd,
                                scale_down_cooldown: down_cd,
                                ..base.clone()
                            });
                        }
                    }
                }
            }
        }
    }
    for target in (50..=90).step_by(5) {
        for tolerance_pm in [50, 100] {
            for step in [1, 2, 4] {
                for stab in [s(60), s(120), s(300), s(600)] {
                    for down_cd in [s(30), s(60), s(120), s(300)] {
                        for up_cd in [s(10), s(30), s(60)] {
                            out.push(Policy {
                                rule: Rule::Target,
                                target_cpu_percent: target,
                                tolerance_pm,
                                max_step_up: step,
                                scale_down_stabilization: stab,
                                scale_up_cooldown: up_cd,
                                scale_down_cooldown: down_cd,
                                ..base.clone()
                            });
                        }
                    }
                }
            }
        }
    }
    out
}

/// `n` policies of the grid (of `rule` only, if given), chosen by `seed` (all of
/// it if smaller), in grid order.
pub fn sample(base: &Policy, n: usize, seed: u64, rule: Option<Rule>) -> Vec<Policy> {
    let mut all = grid(base);
    all.retain(|p| rule.is_none_or(|r| p.rule == r));
    if n >= all.len() {
        return all;
    }
    // Partial Fisher-Yates: the first n of a seeded shuffle.
    let mut rng = Rng::new(seed);
    let mut idx: Vec<usize> = (0..all.len()).collect();
    for i in 0..n {
        let j = i + (rng.next_u64() % (all.len() - i) as u64) as usize;
        idx.swap(i, j);
    }
    let mut pick = idx[..n].to_vec();
    pick.sort_unstable();
    pick.into_iter()
        .map(|i| std::mem::take(&mut all[i]))
        .collect()
}

/// Where and how `specs` run: over `trace` (measured from `from_ms`), on `jobs`
/// threads, with shared seasonal `fits`; non-engine specs take `base`'s bounds.
struct Runs<'a> {
    trace: &'a Trace,
    primary: &'a Name,
    base: &'a Policy,
    seed: u64,
    from_ms: u64,
    jobs: usize,
    fitting: Fitting<'a>,
}

impl Runs<'_> {
    /// Results in the order of `specs`; `done` is called after each.
    fn all(&self, specs: &[Spec], done: &(dyn Fn() + Sync)) -> Vec<Run> {
        super::par::map(specs, self.jobs, |spec| {
            let policy = match &spec.kind {
                Kind::Engine(p) => p,
                _ => self.base,
            };
            let r = simulate::run_from(
                self.trace,
                self.primary,
                policy,
                spec,
                self.seed,
                self.from_ms,
                self.fitting,
            );
            done();
            r
        })
    }

    /// The metrics of each spec.
    fn metrics(&self, specs: &[Spec], done: &(dyn Fn() + Sync)) -> Vec<Metrics> {
        self.all(specs, done)
            .into_iter()
            .map(|r| r.metrics)
            .collect()
    }
}

/// The least slack among `ms` meeting `max_under` (and `ok`); else the least
/// under-provisioned. Ties: fewer actions, then the earlier.
fn pick(ms: &[Metrics], max_under: f64, ok: impl Fn(usize) -> bool) -> (usize, bool) {
    let key = |i: usize| (ms[i].slack, ms[i].actions_per_hour, i);
    let feasible =
        (0..ms.len()).filter(|&i| ms[i].under_provisioned_timeshare <= max_under && ok(i));
    if let Some(i) = feasible.min_by(|&a, &b| {
        key(a)
            .partial_cmp(&key(b))
            .unwrap_or(std::cmp::Ordering::Equal)
    }) {
        return (i, true);
    }
    let under = |i: usize| (ms[i].under_provisioned_timeshare, ms[i].slack, i);
    let i = (0..ms.len())
        .min_by(|&a, &b| {
            under(a)
                .partial_cmp(&under(b))
                .unwrap_or(std::cmp::Ordering::Equal)
        })
        .unwrap_or(0);
    (i, false)
}

/// HPA targets tried for its best.
pub const HPA_TARGETS: [u32; 14] = [30, 35, 40, 45, 50, 55, 60, 65, 70, 75, 80, 85, 90, 95];

/// Search. `progress(done, total)` is called as candidates finish.
///
/// The grid's candidates run without a forecast; then each candidate of the
/// training front runs again with `predictive = true`, its seasonal fits made
/// once for all of them, and competes on the same terms: the forecast is
/// recommended only where it bought less slack within the bound.
pub fn tune(
    trace: &Trace,
    primary: &Name,
    current: &Policy,
    s: &Settings,
    progress: &(dyn Fn(usize, usize) + Sync),
) -> Tuned {
    let split_ms = (trace.duration_ms() as f64 * s.train).round() as u64;
    let head = trace.head(split_ms);
    let mut policies = vec![current.clone()];
    policies.extend(sample(current, s.samples, s.seed, s.rule));
    let engine = |p: &Policy| Spec {
        name: "candidate".into(),
        kind: Kind::Engine(Box::new(p.clone())),
    };
    let mut specs: Vec<Spec> = policies.iter().map(engine).collect();
    specs.extend(HPA_TARGETS.iter().map(|&t| Spec {
        name: format!("hpa {t}%"),
        kind: Kind::Hpa {
            target: t,
            window: Hpa::DOWN_WINDOW,
        },
    }));
    let refits = (trace.duration_ms() / duration_ms(current.forecast_refit).max(1)) as usize + 1;
    // Grid, HPA targets, fits, the front with forecasts (about a tenth), the
    // choice's counterpart and the out-of-sample runs.
    let total = std::sync::atomic::AtomicUsize::new(specs.len() + refits + specs.len() / 10 + 7);
    let count = std::sync::atomic::AtomicUsize::new(0);
    let done = || {
        let n = count.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        let t = total
            .fetch_max(n, std::sync::atomic::Ordering::Relaxed)
            .max(n);
        progress(n, t);
    };
    let on = |trace, from_ms, fitting| Runs {
        trace,
        primary,
        base: current,
        seed: s.seed,
        from_ms,
        jobs: s.jobs,
        fitting,
    };
    let mut ms = on(&head, 0, Fitting::Off).metrics(&specs, &done);
    let hpa_ms = ms.split_off(policies.len());
    // Made on the training part's grid (the out-of-sample runs, on the whole
    // trace's, use them too when the grids agree, as they do for regular rows).
    let fits = s
        .seasonal
        .then(|| Fits::new(trace, current, grid_ms(&head, current), s.jobs, &done));
    let fitting = fits.as_ref().map_or(Fitting::Off, Fitting::Shared);
    // The training front again, forecasting.
    let mut candidates: Vec<Candidate> = policies
        .into_iter()
        .zip(ms)
        .map(|(policy, train)| Candidate { policy, train })
        .collect();
    let forecasting: Vec<Policy> = pareto(&candidates)
        .into_iter()
        .filter(|&i| !candidates[i].policy.predictive)
        .map(|i| forecast(&candidates[i].policy, true))
        .collect();
    let specs: Vec<Spec> = forecasting.iter().map(engine).collect();
    let fc_ms = on(&head, 0, fitting).metrics(&specs, &done);
    candidates.extend(
        forecasting
            .into_iter()
            .zip(fc_ms)
            .map(|(policy, train)| Candidate { policy, train }),
    );
    let ms: Vec<Metrics> = candidates.iter().map(|c| c.train.clone()).collect();
    let budget = |i: usize| candidates[i].within_budget();
    let max_under = match s.max_under {
        Bound::Share(v) => v,
        Bound::Current => ms[0].under_provisioned_timeshare,
    };
    let (best, feasible) = pick(&ms, max_under, budget);
    // The choice with the forecast the other way, for the report.
    let tuned = candidates[best].policy.clone();
    let other = forecast(&tuned, !tuned.predictive);
    let other_train = candidates
        .iter()
        .find(|c| c.policy == other)
        .map(|c| c.train.clone())
        .unwrap_or_else(|| {
            let m = simulate::run_from(&head, primary, &other, &engine(&other), s.seed, 0, fitting)
                .metrics;
            done();
            m
        });
    let (h, _) = pick(&hpa_ms, max_under, |_| true);
    let hpa_target = HPA_TARGETS[h];
    let named = |name: &str, kind: Kind| Spec {
        name: name.into(),
        kind,
    };
    let test_specs = [
        named("current", Kind::Engine(Box::new(current.clone()))),
        named("tuned", Kind::Engine(Box::new(tuned.clone()))),
        named(
            if other.predictive {
                "tuned+forecast"
            } else {
                "tuned-forecast"
            },
            Kind::Engine(Box::new(other)),
        ),
        named(
            &format!("hpa {hpa_target}%"),
            Kind::Hpa {
                target: hpa_target,
                window: Hpa::DOWN_WINDOW,
            },
        ),
        named("mollymawk", Kind::Mollymawk),
        named("oracle", Kind::Oracle),
    ];
    let test = on(trace, split_ms, fitting).all(&test_specs, &done);
    Tuned {
        candidates,
        best,
        feasible,
        max_under,
        forecast: tuned.predictive,
        forecast_train: other_train,
        hpa_target,
        test,
        split_ms,
    }
}

/// `p` with the seasonal forecast on or off.
fn forecast(p: &Policy, on: bool) -> Policy {
    Policy {
        predictive: on,
        predictive_shadow: false,
        ..p.clone()
    }
}

/// Indexes of the candidates no other beats on both under-provisioned time and
/// slack (training figures), by under-provisioned time.
pub fn pareto(c: &[Candidate]) -> Vec<usize> {
    let m = |i: usize| (c[i].train.under_provisioned_timeshare, c[i].train.slack);
    let mut front: Vec<usize> = (0..c.len())
        .filter(|&i| {
            let (u, s) = m(i);
            !(0..c.len()).any(|j| {
                let (uj, sj) = m(j);
                uj <= u && sj <= s && (uj < u || sj < s)
            })
        })
        .collect();
    front.sort_by(|&a, &b| m(a).partial_cmp(&m(b)).unwrap_or(std::cmp::Ordering::Equal));
    // Equal points: keep the first.
    front.dedup_by(|a, b| m(*a) == m(*b));
    front
}
