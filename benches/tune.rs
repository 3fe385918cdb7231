//! `tune`'s cost, and what sharing the seasonal fits saves.
//!
//! * `tune/7d_10s_jobs1`: the target: a 7-day trace of 10-second rows
//!   (`simulate --generate diurnal --hours 168 --seed 7`, 60 480 rows), 200
//!   candidates + the current policy + 14 HPA targets on the first half, the
//!   seasonal fits, the training front forecasting, and the out-of-sample runs,
//!   on one thread. Goal: under a minute.
//! * `forecasting_runs/{live,shared}`: four forecasting runs of the first week of
//!   `fixtures/traces/weekly.csv` (5-minute rows on a 2 s grid, hourly refits),
//!   each fitting as it goes (live, as `simulate` does), against the fits made
//!   once and shared (as `tune` does): the same decisions, side by side.

use std::path::Path;
use std::time::Duration;

use albatross_autoscale::config::Config;
use albatross_autoscale::core::{Policy, Rule};
use albatross_autoscale::name::Name;
use albatross_autoscale::sim::seasonal::Fits;
use albatross_autoscale::sim::simulate::{self, Fitting, Kind, Spec};
use albatross_autoscale::sim::trace::{self, Shape, Trace};
use albatross_autoscale::sim::tune::{self, Bound, Settings};
use criterion::{Criterion, criterion_group, criterion_main};

fn engine_policy() -> Policy {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/traces/engine.toml");
    Policy::clone(&Config::load(&path).expect("engine.toml loads").groups[0].policy)
}

fn tune_week(c: &mut Criterion) {
    let trace = trace::generate(Shape::Diurnal, 168.0, 7);
    let (name, current) = (Name::parse("sim:app").unwrap(), engine_policy());
    let settings = Settings {
        train: 0.5,
        max_under: Bound::Share(0.01),
        samples: 200,
        seed: 1,
        jobs: 1,
        rule: None,
        seasonal: true,
    };
    let mut g = c.benchmark_group("tune");
    g.sample_size(10).measurement_time(Duration::from_secs(120));
    g.bench_function("7d_10s_jobs1", |b| {
        b.iter(|| tune::tune(&trace, &name, &current, &settings, &|_, _| {}).best)
    });
    g.finish();
}

fn forecasting_runs(c: &mut Criterion) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/traces/weekly.csv");
    let week = trace::load(&path, Duration::from_secs(10)).expect("weekly.csv loads");
    let trace = week.head(7 * 86_400_000);
    let name = Name::parse("sim:app").unwrap();
    let policies: Vec<Policy> = [75, 80, 85, 90]
        .map(|target| Policy {
            rule: Rule::Target,
            target_cpu_percent: target,
            predictive: true,
            ..engine_policy()
        })
        .to_vec();
    fn run(trace: &Trace, name: &Name, p: &Policy, fitting: Fitting<'_>) -> f64 {
        let spec = Spec {
            name: "engine".into(),
            kind: Kind::Engine(Box::new(p.clone())),
        };
        simulate::run_from(trace, name, p, &spec, 1, 0, fitting)
            .metrics
            .slack
    }
    let mut g = c.benchmark_group("forecasting_runs");
    g.sample_size(10).measurement_time(Duration::from_secs(60));
    g.bench_function("live", |b| {
        b.iter(|| {
            policies
                .iter()
                .map(|p| run(&trace, &name, p, Fitting::Live))
                .sum::<f64>()
        })
    });
    g.bench_function("shared", |b| {
        b.iter(|| {
            let dt = simulate::grid_ms(&trace, &policies[0]);
            let fits = Fits::new(&trace, &policies[0], dt, 1, &|| {});
            policies
                .iter()
                .map(|p| run(&trace, &name, p, Fitting::Shared(&fits)))
                .sum::<f64>()
        })
    });
    g.finish();
}

criterion_group!(benches, forecasting_runs, tune_week);
criterion_main!(benches);
