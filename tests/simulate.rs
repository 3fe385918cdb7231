//! The simulator end to end: metrics on hand-checkable traces, the engine against
//! the baselines on the shipped traces, the predictive policy and the anomaly guard,
//! and the `simulate` command's JSON report and plot.

use std::path::{Path, PathBuf};
use std::process::Command;

use albatross_autoscale::config::Config;
use albatross_autoscale::core::Policy;
use albatross_autoscale::name::Name;
use albatross_autoscale::sim::metrics::Meter;
use albatross_autoscale::sim::simulate::{self, Kind, Run, Spec};
use albatross_autoscale::sim::trace::{self, Shape, Trace};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/traces")
        .join(name)
}

fn policy() -> Policy {
    Policy::clone(&Config::load(&fixture("engine.toml")).unwrap().groups[0].policy)
}

fn primary() -> Name {
    Name::parse("sim:app").unwrap()
}

fn load(name: &str) -> Trace {
    trace::load(&fixture(name), std::time::Duration::from_secs(10)).unwrap()
}

fn run(trace: &Trace, policy: &Policy, name: &str) -> Run {
    let spec = Spec::named(name, policy).unwrap();
    simulate::run(trace, &primary(), policy, &spec, 1)
}

fn trace(rows: &[(u64, f64)]) -> Trace {
    Trace {
        t_ms: rows.iter().map(|r| r.0 * 1000).collect(),
        demand: rows.iter().map(|r| r.1).collect(),
    }
}

/// The most actions in any sliding hour.
fn max_per_hour(run: &Run) -> usize {
    let t: Vec<u64> = run.events.iter().map(|e| e.t_ms).collect();
    (0..t.len())
        .map(|i| t[i..].iter().take_while(|x| **x < t[i] + 3_600_000).count())
        .max()
        .unwrap_or(0)
}

#[test]
fn the_shipped_traces_are_the_generators_output() {
    for (file, shape, hours) in [
        ("diurnal.csv", Shape::Diurnal, 24.0),
        ("spike.csv", Shape::Spike, 6.0),
        ("flap.csv", Shape::Flap, 2.0),
        ("step.csv", Shape::Step, 1.0),
    ] {
        let text = std::fs::read_to_string(fixture(file)).unwrap();
        assert_eq!(trace::generate(shape, hours, 7).to_csv(), text, "{file}");
    }
    // `cargo run --example weekly_trace` prints trace::weekly(7), `-- 28` the
    // month, whose first two weeks are the weekly trace.
    let weekly = trace::weekly(7);
    let text = std::fs::read_to_string(fixture("weekly.csv")).unwrap();
    assert_eq!(weekly.to_csv(), text);
    let month = std::fs::read_to_string(fixture("month.csv")).unwrap();
    assert_eq!(trace::weekly_days(7, 28).to_csv(), month);
    assert_eq!(month.lines().count(), 1 + 28 * 288);
    assert!(month.starts_with(&text));
    assert_eq!(weekly.t_ms.len(), 14 * 288);
    // Weekdays are busier than the weekend: mean of Monday vs Saturday.
    let day = |d: usize| weekly.demand[d * 288..(d + 1) * 288].iter().sum::<f64>() / 288.0;
    assert!(day(0) > 1.5 * day(5), "{} vs {}", day(0), day(5));
    assert_ne!(
        trace::generate(Shape::Diurnal, 1.0, 7),
        trace::generate(Shape::Diurnal, 1.0, 8)
    );
}

#[test]
fn meter_matches_hand_computed_values() {
    let mut m = Meter::default();
    // 2 s with demand 2 on one 1-vCPU instance, then 2 s of demand 1 on two.
    m.step(1000, 2.0, 1.0, 1.0, 1);
    m.step(1000, 2.0, 1.0, 1.0, 1);
    m.action(true, 1);
    m.step(1000, 1.0, 2.0, 2.0, 2);
    m.step(1000, 1.0, 2.0, 2.0, 2);
    m.action(false, 1);
    m.action(true, 1);
    let r = m.finish();
    assert_eq!(r.under_provisioned_timeshare, 0.5);
    // unmet 1+1 over demand 2+2+1+1; idle 0+0+1+1 over supply 1+1+2+2.
    assert!((r.under_provisioning_accuracy - 2.0 / 6.0).abs() < 1e-12);
    assert!((r.slack - 2.0 / 6.0).abs() < 1e-12);
    assert_eq!(r.actions, 3);
    let hours = 4.0 / 3600.0;
    assert!((r.actions_per_hour - 3.0 / hours).abs() < 1e-6);
    // up, down, up: two changes of direction.
    assert!((r.instability_per_hour - 2.0 / hours).abs() < 1e-6);
    assert_eq!(r.time_to_capacity_s, 2.0);
    assert_eq!(r.mean_instances, 1.5);
}

#[test]
fn a_fixed_group_on_a_tiny_trace_gives_hand_computed_metrics() {
    // One instance that may not grow: 0.5 vCPU for 10 s, then 1.5 for 10 s.
    let p = Policy {
        max_instances: 1,
        ..policy()
    };
    let r = run(&trace(&[(0, 0.5), (10, 1.5)]), &p, "engine");
    let m = &r.metrics;
    assert!(r.events.is_empty());
    assert_eq!(m.under_provisioned_timeshare, 0.5);
    assert_eq!(m.under_provisioning_accuracy, 0.25); // 0.5×10 / (0.5×10 + 1.5×10)
    assert_eq!(m.slack, 0.25); // 0.5×10 idle / 1×20 supplied
    assert_eq!(m.time_to_capacity_s, 10.0);
    assert_eq!(m.mean_instances, 1.0);
    assert_eq!(m.actions, 0);
    // engine.toml prices an instance at 0.05/h: 20 s of one instance.
    assert!((m.cost - 0.05 * 20.0 / 3600.0).abs() < 1e-12, "{}", m.cost);
}

#[test]
fn cost_is_instance_hours_times_the_price() {
    // Priced at 3.6 per instance-hour: 1 instance for 20 s costs 0.02.
    let p = Policy {
        max_instances: 1,
        instance_cost_micros: 3_600_000,
        ..policy()
    };
    let m = run(&trace(&[(0, 0.5), (10, 1.5)]), &p, "engine").metrics;
    assert!((m.cost - 0.02).abs() < 1e-12, "{}", m.cost);
    assert!((m.cost_per_hour - 3.6).abs() < 1e-12, "{}", m.cost_per_hour);
}

#[test]
fn the_engine_beats_mollymawk_on_a_step() {
    let t = load("step.csv");
    let p = policy();
    let engine = run(&t, &p, "engine").metrics;
    let molly = run(&t, &p, "mollymawk").metrics;
    assert!(
        engine.under_provisioned_timeshare * 5.0 < molly.under_provisioned_timeshare,
        "{engine:?} vs {molly:?}"
    );
    assert!(engine.time_to_capacity_s <= 70.0, "{engine:?}");
    // mollymawk: 3 ticks, then one clone per 600 s cooldown.
    assert!(molly.time_to_capacity_s > 600.0, "{molly:?}");
}

#[test]
fn baselines_act_per_their_definitions_on_a_step() {
    let t = load("step.csv");
    let p = policy();
    let molly = run(&t, &p, "mollymawk");
    for w in molly.events.windows(2) {
        assert!(
            w[1].t_ms - w[0].t_ms >= 600_000,
            "cooldown: {:?}",
            molly.events
        );
    }
    assert!(
        molly
            .events
            .iter()
            .all(|e| e.reason.starts_with("mollymawk"))
    );
    // HPA: the step up (t = 600 s) is met within one 15 s period plus boot; the
    // step down (t = 2400 s) waits for the 300 s stabilisation window.
    let hpa = run(&t, &p, "hpa");
    let first_up = hpa
        .events
        .iter()
        .find(|e| e.up && e.t_ms >= 600_000)
        .unwrap();
    assert!(first_up.t_ms <= 630_000, "{:?}", hpa.events);
    let first_down = hpa.events.iter().find(|e| !e.up).unwrap();
    assert!(first_down.t_ms >= 2_700_000, "{:?}", hpa.events);
}

#[test]
fn the_engine_serves_the_diurnal_trace_within_target() {
    let r = run(&load("diurnal.csv"), &policy(), "engine").metrics;
    assert!(r.under_provisioned_timeshare <= 0.02, "{r:?}");
    assert!(r.slack <= 0.35, "{r:?}");
}

#[test]
fn the_engine_keeps_the_flap_budget_on_the_flapping_trace() {
    let p = policy();
    let r = run(&load("flap.csv"), &p, "engine");
    let most = max_per_hour(&r);
    assert!(
        most > 0 && most <= p.max_actions_per_hour as usize,
        "{most}"
    );
}

#[test]
fn the_predictive_policy_pre_scales_the_morning_rise_without_more_actions() {
    let t = load("diurnal.csv");
    let p = policy();
    let reactive = run(&t, &p, "reactive");
    let predictive = run(&t, &p, "predictive");
    let (r, q) = (&reactive.metrics, &predictive.metrics);
    assert!(
        q.under_provisioned_timeshare <= r.under_provisioned_timeshare,
        "{q:?} vs {r:?}"
    );
    assert!(q.actions <= r.actions, "{q:?} vs {r:?}");
    // The forecast was trusted and acted on: a scale-up says "predicted", and
    // the rise at 07:00 gets its third clone earlier than the reactive rule does.
    assert!(q.forecast_error_points.unwrap() < p.forecast_max_error as f64);
    assert!(q.predicted_ticks.unwrap() > 0);
    assert!(
        predictive
            .events
            .iter()
            .any(|e| e.reason.contains("predicted"))
    );
    let nth_up_after = |run: &Run, n: usize| {
        run.events
            .iter()
            .filter(|e| e.up && e.t_ms >= 6 * 3_600_000)
            .nth(n)
            .unwrap()
            .t_ms
    };
    assert!(
        nth_up_after(&predictive, 2) < nth_up_after(&reactive, 2),
        "{:?}",
        predictive.events
    );
}

#[test]
fn the_predictive_policy_beats_the_reactive_one_when_instances_boot_slowly() {
    // LXC-like: a new instance serves 2 minutes after its creation, so acting
    // on the forecast instead of the breach pays off.
    let t = load("diurnal.csv");
    let p = Policy {
        boot_time: std::time::Duration::from_secs(120),
        ..policy()
    };
    let r = run(&t, &p, "reactive").metrics;
    let q = run(&t, &p, "predictive").metrics;
    assert!(
        q.under_provisioned_timeshare < r.under_provisioned_timeshare,
        "{q:?} vs {r:?}"
    );
    assert!(q.actions <= r.actions, "{q:?} vs {r:?}");
}

#[test]
fn the_forecast_is_ignored_while_its_error_is_high() {
    // Load jumping between 0.45 and 1.0 vCPU every 10 s row for an hour: a trend
    // forecast is wrong by tens of points every time. (Forecast only: the guard
    // would flatten an alternating signal to its median.)
    let rows: Vec<(u64, f64)> = (0..360)
        .map(|i| (i * 10, if i % 2 == 0 { 0.45 } else { 1.0 }))
        .collect();
    let p = policy();
    let with_bound = |max_error| Spec {
        name: "forecast".into(),
        kind: Kind::Engine(Box::new(Policy {
            predictive: true,
            forecast_max_error: max_error,
            ..p.clone()
        })),
    };
    let r = simulate::run(&trace(&rows), &primary(), &p, &with_bound(10), 1);
    assert!(r.metrics.forecast_error_points.unwrap() > p.forecast_max_error as f64);
    assert_eq!(r.metrics.predicted_ticks, Some(0));
    assert!(r.events.iter().all(|e| !e.reason.contains("predicted")));
    // The control: with the gate wide open the same forecasts do fire.
    let open = simulate::run(&trace(&rows), &primary(), &p, &with_bound(100), 1);
    assert!(
        open.metrics.predicted_ticks.unwrap() > 0,
        "{:?}",
        open.metrics
    );
}

#[test]
fn the_anomaly_guard_stops_a_lone_outlier_from_scaling_up() {
    // 0.6 vCPU with one 10-second row at 1.0 (100 %) every 10 minutes; a
    // hair-trigger policy (one high tick) without and with the guard.
    let rows: Vec<(u64, f64)> = (0..360)
        .map(|i| (i * 10, if i % 60 == 30 { 1.0 } else { 0.6 }))
        .collect();
    let t = trace(&rows);
    let p = Policy {
        scale_up_ticks: 1,
        scale_down_threshold: 40,
        ..policy()
    };
    let plain = simulate::run(&t, &primary(), &p, &Spec::named("reactive", &p).unwrap(), 1);
    assert!(
        plain.events.iter().filter(|e| e.up).count() >= 5,
        "{:?}",
        plain.events
    );
    let guarded = Policy {
        anomaly_guard: true,
        ..p.clone()
    };
    let spec = Spec {
        name: "guarded".into(),
        kind: Kind::Engine(Box::new(guarded)),
    };
    let g = simulate::run(&t, &primary(), &p, &spec, 1);
    assert!(g.events.is_empty(), "{:?}", g.events);
    assert_eq!(g.metrics.outliers_filtered, Some(6));
}

#[test]
fn runs_are_deterministic_for_a_seed() {
    let t = load("spike.csv");
    let p = policy();
    let spec = Spec::named("engine", &p).unwrap();
    let a = simulate::run(&t, &primary(), &p, &spec, 42);
    let b = simulate::run(&t, &primary(), &p, &spec, 42);
    assert_eq!(a, b);
}

#[test]
fn the_new_policy_keys_parse_and_problems_name_them() {
    let ok = "[policy]\npredictive = true\nforecast_horizon = \"2m\"\nforecast_max_error = 5\n\
              anomaly_guard = true\nanomaly_z = 4.25\nboot_time = \"45s\"\n";
    let c = Config::parse(ok, Path::new("t.toml")).unwrap();
    let p = &c.policy;
    assert!(p.predictive && p.anomaly_guard);
    assert_eq!(p.forecast_horizon.as_secs(), 120);
    assert_eq!((p.forecast_max_error, p.anomaly_z_hundredths), (5, 425));
    assert_eq!(p.boot_time.as_secs(), 45);
    let bad = "[policy]\npredictive = true\nforecast_horizon = \"1s\"\nforecast_max_error = 101\nanomaly_z = 0.5\n";
    let err = Config::parse(bad, Path::new("t.toml"))
        .unwrap_err()
        .to_string();
    for key in [
        "policy.forecast_horizon",
        "policy.forecast_max_error",
        "policy.anomaly_z",
    ] {
        assert!(err.contains(key), "{key} in {err}");
    }
}

#[test]
fn the_command_reports_json_keyed_by_policy_and_draws_the_plot() {
    let dir = std::env::temp_dir().join(format!("sim-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let svg = dir.join("out.svg");
    let out = Command::new(env!("CARGO_BIN_EXE_albatross-autoscale"))
        .args(["simulate", "--report", "json", "--trace"])
        .arg(fixture("step.csv"))
        .arg("--config")
        .arg(fixture("engine.toml"))
        .arg("--plot")
        .arg(&svg)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, ["engine", "mollymawk", "hpa"]);
    for k in [
        "under_provisioned_timeshare",
        "slack",
        "instability_per_hour",
        "actions_per_hour",
    ] {
        assert!(v["engine"][k].is_number(), "{k}");
    }
    // engine.toml prices an instance at 0.05/h: every policy is costed alike.
    for k in keys {
        let m = &v[k];
        let want = m["mean_instances"].as_f64().unwrap() * 0.05;
        let got = m["cost_per_hour"].as_f64().unwrap();
        assert!((got - want).abs() < 1e-9, "{k}: {got} vs {want}");
        assert!(got > 0.0);
    }
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(text.contains("<svg") && text.contains("mollymawk: under-provisioned"));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_recording_becomes_the_demand_of_all_its_instances() {
    let dir = std::env::temp_dir().join(format!("sim-rec-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("rec.jsonl");
    // web: 0.5 vCPU for 10 s then 1.0; its clone: 0.25 throughout.
    std::fs::write(
        &path,
        "{\"t_ms\": 0, \"vm\": \"a:web\", \"cpu_us\": 0}\n\
         {\"t_ms\": 10000, \"vm\": \"a:web\", \"cpu_us\": 5000000}\n\
         {\"t_ms\": 20000, \"vm\": \"a:web\", \"cpu_us\": 15000000}\n\
         {\"t_ms\": 0, \"vm\": \"a:web-clone-1\", \"cpu_us\": 100}\n\
         {\"t_ms\": 20000, \"vm\": \"a:web-clone-1\", \"cpu_us\": 5000100}\n",
    )
    .unwrap();
    let t = trace::load(&path, std::time::Duration::from_secs(10)).unwrap();
    assert_eq!(t.t_ms, [0, 10_000]);
    assert_eq!(t.demand, [0.75, 1.25]);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn csv_problems_name_the_line() {
    let p = Path::new("t.csv");
    let err = |text: &str| trace::parse_csv(text, p).unwrap_err().to_string();
    assert!(err("time,load\n0,1\n").contains("t.csv:1: expected the header"));
    assert!(err("time_s,demand\n0,1\n10,x\n").contains("t.csv:3: demand \"x\""));
    assert!(err("time_s,demand\n10,1\n10,2\n").contains("t.csv:3: time_s 10 is not after"));
    assert!(err("time_s,demand\n0,-1\n").contains("t.csv:2: demand -1"));
    assert!(
        err("time_s,demand\n0,1\n1000000000,1\n")
            .contains("t.csv:3: time_s 1000000000 is more than a year")
    );
    let t = trace::parse_csv("time_s,demand\n# comment\n100,1.5\n130,2\n", p).unwrap();
    assert_eq!((t.t_ms.clone(), t.duration_ms()), (vec![0, 30_000], 60_000));
}

#[test]
fn a_csv_with_a_wrong_header_is_read_as_csv_not_as_a_recording() {
    let d = std::env::temp_dir().join(format!("aa-trace-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    let iv = std::time::Duration::from_secs(10);
    for name in ["x.csv", "x.txt"] {
        let f = d.join(name);
        std::fs::write(&f, "a,b\n1,2\n").unwrap();
        let e = trace::load(&f, iv).unwrap_err().to_string();
        assert!(
            e.contains(&format!(
                "{name}:1: expected the header time_s,demand, got \"a,b\""
            )),
            "{e}"
        );
    }
    let f = d.join("bin.csv");
    std::fs::write(&f, [0xff, 0xfe, 0, 1]).unwrap();
    let e = trace::load(&f, iv).unwrap_err().to_string();
    assert!(e.contains("not UTF-8 text"), "{e}");
}

#[test]
fn a_reader_that_stops_early_is_not_an_error() {
    use std::io::Read;
    use std::process::Stdio;
    // A month of generated rows is far more than a pipe holds: the writer meets the
    // closed pipe, as with `| head -1`.
    let mut child = Command::new(env!("CARGO_BIN_EXE_albatross-autoscale"))
        .args(["simulate", "--generate", "diurnal", "--hours", "720"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 14];
    child.stdout.take().unwrap().read_exact(&mut first).unwrap();
    assert_eq!(&first, b"time_s,demand\n");
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{:?}: {stderr}", out.status);
    assert!(stderr.is_empty(), "{stderr}");
}

/// Readiness and drain in the simulator (issue 16): a check passes once a clone
/// has booted, so a `ready_timeout` under `boot_time` gives every clone up
/// (never serving: the load goes unmet); a drain keeps paying for a clone that
/// no longer serves.
#[test]
fn ready_timeout_under_boot_time_gives_clones_up_and_a_drain_costs_instances() {
    use albatross_autoscale::core::lifecycle::Lifecycle;
    use std::time::Duration;
    // 0.5 vCPU for 10 min, 1.8 for an hour, 0.3 for an hour: one clone is needed.
    let t = trace(&[(0, 0.5), (600, 1.8), (4200, 0.3), (7800, 0.3)]);
    let base = Policy {
        boot_time: Duration::from_secs(60),
        max_instances: 2,
        lifecycle: Lifecycle {
            check_ready: true,
            ..Lifecycle::default()
        },
        ..policy()
    };
    let ok = run(&t, &base, "engine");
    assert!(ok.events.iter().any(|e| e.up), "{:?}", ok.events);
    assert!(
        !ok.events.iter().any(|e| e.reason.contains("not ready")),
        "{:?}",
        ok.events
    );
    let tight = Policy {
        lifecycle: Lifecycle {
            ready_timeout: Duration::from_secs(30),
            ..base.lifecycle
        },
        ..base.clone()
    };
    let given_up = run(&t, &tight, "engine");
    let not_ready = given_up
        .events
        .iter()
        .filter(|e| !e.up && e.reason.contains("not ready"))
        .count();
    assert!(not_ready >= 2, "{:?}", given_up.events);
    // Never served: an hour at 1.8 vCPU on one instance, 0.8 unmet for an hour
    // of two hours and ten minutes.
    assert!(
        given_up.metrics.under_provisioned_timeshare > ok.metrics.under_provisioned_timeshare + 0.3,
        "{} vs {}",
        given_up.metrics.under_provisioned_timeshare,
        ok.metrics.under_provisioned_timeshare
    );
    let drained = Policy {
        lifecycle: Lifecycle {
            drain_period: Duration::from_secs(600),
            ..base.lifecycle
        },
        ..base.clone()
    };
    let d = run(&t, &drained, "engine");
    // The same decisions, the destroy 10 min later: 10 min more of one instance
    // over the run (the trace's last row lasts a step too).
    assert_eq!(d.events.len(), ok.events.len());
    let (a, b) = (ok.metrics.mean_instances, d.metrics.mean_instances);
    let extra = 600.0 / (ok.metrics.hours * 3600.0);
    assert!(
        (b - a - extra).abs() < 0.005,
        "{a} → {b}, expected +{extra}: {:?} {:?}",
        ok.events,
        d.events
    );
}

#[test]
fn no_policy_that_never_under_provisions_beats_the_clairvoyant_floor() {
    // Every instance serving at t + boot existed at t, so a run that always meets
    // the demand pays at least for the most instances needed within a boot ahead:
    // the oracle's supply. Checked on every shipped short trace, with 2 s and
    // 120 s boots, against every controller.
    let mut compared = 0;
    for file in ["diurnal.csv", "spike.csv", "flap.csv", "step.csv"] {
        let t = load(file);
        for boot in [2, 120] {
            let p = Policy {
                boot_time: std::time::Duration::from_secs(boot),
                ..policy()
            };
            // Only demand above max_instances goes unmet (a moment of spike.csv).
            let floor = run(&t, &p, "oracle").metrics;
            assert!(
                floor.under_provisioned_timeshare < 0.001,
                "{file}: {floor:?}"
            );
            // A group held at its maximum meets all of the demand it can.
            let fixed = Policy {
                min_instances: p.max_instances,
                ..p.clone()
            };
            let runs = ["engine", "target", "predictive", "mollymawk", "hpa"]
                .map(|name| (name, run(&t, &p, name).metrics))
                .into_iter()
                .chain([("fixed", run(&t, &fixed, "engine").metrics)]);
            for (name, m) in runs {
                let ctx = format!("{file} {boot}s {name}: {m:?} vs {floor:?}");
                assert!(
                    floor.under_provisioned_timeshare <= m.under_provisioned_timeshare,
                    "{ctx}"
                );
                if m.under_provisioned_timeshare == 0.0 {
                    assert!(floor.slack <= m.slack + 1e-9, "{ctx}");
                    assert!(floor.mean_instances <= m.mean_instances + 1e-9, "{ctx}");
                    compared += 1;
                }
            }
        }
    }
    assert!(compared >= 3, "only {compared} runs met all of the demand");
}

#[test]
fn shared_seasonal_fits_decide_exactly_as_live_refits() {
    use albatross_autoscale::sim::seasonal::Fits;
    use albatross_autoscale::sim::simulate::Fitting;
    // Three days of the weekly trace, refitted every 6 hours: fits from day 1,
    // measured from day 2 (a trusted forecast can act on the third).
    let t = load("weekly.csv").head(3 * 86_400_000);
    let p = Policy {
        rule: albatross_autoscale::core::Rule::Target,
        predictive: true,
        forecast_refit: std::time::Duration::from_secs(6 * 3600),
        ..policy()
    };
    let spec = Spec::named("engine", &p).unwrap();
    let live = simulate::run_from(&t, &primary(), &p, &spec, 1, 0, Fitting::Live);
    let fits = Fits::new(&t, &p, simulate::grid_ms(&t, &p), 2, &|| {});
    assert_eq!(fits.len(), 12);
    let shared = simulate::run_from(&t, &primary(), &p, &spec, 1, 0, Fitting::Shared(&fits));
    assert_eq!(live, shared);
    // The forecast was trusted and counted (MAPE ~6 % on the third day).
    assert!(
        live.metrics.seasonal_ticks.unwrap_or(0) > 0,
        "{:?}",
        live.metrics
    );
    assert!(
        live.metrics.forecast_mape_percent.is_some(),
        "{:?}",
        live.metrics
    );
    // Measured from the second half: the MAPE of the fits from there on only.
    let from = 36 * 3_600_000;
    let late = simulate::run_from(&t, &primary(), &p, &spec, 1, from, Fitting::Shared(&fits));
    assert_eq!(
        late,
        simulate::run_from(&t, &primary(), &p, &spec, 1, from, Fitting::Live)
    );
    // Fits of another grid are not used: the run fits its own, the same way.
    let other = Policy {
        boot_time: std::time::Duration::from_secs(3),
        ..p.clone()
    };
    let spec = Spec::named("engine", &other).unwrap();
    assert_eq!(
        simulate::run_from(&t, &primary(), &other, &spec, 1, 0, Fitting::Shared(&fits)),
        simulate::run_from(&t, &primary(), &other, &spec, 1, 0, Fitting::Live)
    );
}
