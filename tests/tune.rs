//! `tune`: the search (deterministic for a seed, whatever the threads), its
//! choice against the bound, the Pareto front, the written configuration loaded
//! back with the real loader, and bad input.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use albatross_autoscale::config::Config;
use albatross_autoscale::core::{Policy, Rule};
use albatross_autoscale::name::Name;
use albatross_autoscale::sim::trace::{self, Trace};
use albatross_autoscale::sim::tune::{self, Settings};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/traces")
        .join(name)
}

fn policy() -> Policy {
    (*Config::load(&fixture("engine.toml")).unwrap().groups[0].policy).clone()
}

fn step() -> Trace {
    trace::load(&fixture("step.csv"), std::time::Duration::from_secs(10)).unwrap()
}

fn settings(jobs: usize, seed: u64) -> Settings {
    Settings {
        train: 0.5,
        max_under: tune::Bound::Share(0.05),
        samples: 40,
        seed,
        jobs,
        rule: None,
        seasonal: true,
    }
}

/// `tune --trace T --config C` and `extra`.
fn tune_on(trace: &Path, config: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "--trace",
        trace.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    tune_cli(&args)
}

fn tune_cli(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_albatross-autoscale"))
        .arg("tune")
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn a_seed_gives_one_answer_whatever_the_threads() {
    let (t, p, name) = (step(), policy(), Name::parse("sim:app").unwrap());
    let a = tune::tune(&t, &name, &p, &settings(1, 3), &|_, _| {});
    let b = tune::tune(&t, &name, &p, &settings(2, 3), &|_, _| {});
    // The current policy and 40 of the grid, then the front forecasting.
    assert_eq!(
        a.candidates.iter().filter(|c| !c.policy.predictive).count(),
        41
    );
    assert_eq!(a.candidates.len(), b.candidates.len());
    assert_eq!(a.best, b.best);
    assert_eq!(a.candidates[a.best].policy, b.candidates[b.best].policy);
    let slack =
        |x: &tune::Tuned| -> Vec<f64> { x.candidates.iter().map(|c| c.train.slack).collect() };
    assert_eq!(slack(&a), slack(&b));
    // Another seed samples other candidates.
    let c = tune::sample(&p, 40, 4, None);
    assert_ne!(tune::sample(&p, 40, 3, None), c);
    assert_eq!(tune::sample(&p, 40, 4, None), c);
    // --rule keeps the search to one rule.
    let only = tune::sample(&p, 40, 4, Some(Rule::Target));
    assert_eq!(only.len(), 40);
    assert!(only.iter().all(|x| x.rule == Rule::Target));
}

#[test]
fn the_choice_is_the_least_slack_within_the_bound_and_on_the_front() {
    let (t, p, name) = (step(), policy(), Name::parse("sim:app").unwrap());
    let s = settings(2, 1);
    let r = tune::tune(&t, &name, &p, &s, &|_, _| {});
    assert!(r.feasible);
    let best = &r.candidates[r.best];
    assert_eq!(r.max_under, 0.05);
    assert!(best.feasible(r.max_under), "{:?}", best.train);
    for c in r.candidates.iter().filter(|c| c.feasible(r.max_under)) {
        assert!(best.train.slack <= c.train.slack);
    }
    // The front: nothing dominates a member, and the choice is on it.
    let front = tune::pareto(&r.candidates);
    assert!(
        front.contains(&r.best) || {
            // or ties a member exactly
            front.iter().any(|&i| {
                let (a, b) = (&r.candidates[i].train, &best.train);
                a.slack == b.slack && a.under_provisioned_timeshare == b.under_provisioned_timeshare
            })
        }
    );
    for &i in &front {
        let m = &r.candidates[i].train;
        assert!(!r.candidates.iter().any(|c| {
            c.train.under_provisioned_timeshare <= m.under_provisioned_timeshare
                && c.train.slack < m.slack
        }));
    }
    // Out of sample: current, tuned, tuned with the forecast the other way, the
    // HPA at its best target, mollymawk, the clairvoyant floor.
    let names: Vec<&str> = r.test.iter().map(|x| x.name.as_str()).collect();
    assert_eq!(names[..2], ["current", "tuned"]);
    let other = if r.forecast {
        "tuned-forecast"
    } else {
        "tuned+forecast"
    };
    assert_eq!(names[2], other);
    assert_eq!(names[3], format!("hpa {}%", r.hpa_target));
    assert_eq!(names[4..], ["mollymawk", "oracle"]);
    assert_eq!(r.recommended(), best.policy);
    // A shadow-mode group keeps its shadow unless the forecast is recommended.
    let shadow = Policy {
        predictive_shadow: true,
        ..p.clone()
    };
    let r2 = tune::tune(&t, &name, &shadow, &s, &|_, _| {});
    let rec = r2.recommended();
    assert_eq!(rec.predictive_shadow, !rec.predictive);
    let written: Vec<String> = tune::keys(&rec)
        .iter()
        .map(|(k, v)| format!("{k} = {v}"))
        .collect();
    assert!(
        written.contains(
            &(if rec.predictive {
                "predictive = true"
            } else {
                "predictive = \"shadow\""
            })
            .to_string()
        ),
        "{written:?}"
    );
    assert_eq!(best.policy.predictive, r.forecast);
    // The forecast was tried on the training front, and competed on its terms.
    assert!(r.candidates.iter().any(|c| c.policy.predictive));
    // Nothing that never under-provisions runs with less slack than the floor.
    let floor = &r.test[5].metrics;
    assert_eq!(floor.under_provisioned_timeshare, 0.0);
    for run in r
        .test
        .iter()
        .filter(|x| x.metrics.under_provisioned_timeshare == 0.0)
    {
        assert!(
            floor.slack <= run.metrics.slack + 1e-9,
            "{}: {:?}",
            run.name,
            run.metrics
        );
    }
    // Measured on the second half only.
    for run in &r.test {
        assert!(
            (run.metrics.hours - 0.5).abs() < 0.01,
            "{}",
            run.metrics.hours
        );
    }
}

#[test]
fn the_written_config_loads_and_simulates_unchanged() {
    let dir = std::env::temp_dir().join(format!("tune-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("in.toml");
    // Two groups; the second is tuned, the first keeps its keys.
    std::fs::write(
        &config,
        "# the operator's notes\n[policy]\nmax_instances = 12\nmax_actions_per_hour = 12\n\
         [[group]]\nprimary = \"a:one\"\nscale_up_threshold = 95\nscale_down_threshold = 10\n\
         [[group]]\nprimary = \"a:two\"\nscale_up_ticks = 3 # why three\n",
    )
    .unwrap();
    let out_path = dir.join("tuned.toml");
    let svg = dir.join("tune.svg");
    let out = tune_cli(&[
        "--trace",
        fixture("step.csv").to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
        "--group",
        "a:two",
        "--samples",
        "20",
        "--max-under",
        "5%",
        "--output",
        out_path.to_str().unwrap(),
        "--plot",
        svg.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("## Pareto front"), "{stdout}");
    assert!(stdout.contains("[[group]] primary = \"a:two\""), "{stdout}");
    // The file is the operator's, keys set in place: comments and order kept.
    let text = std::fs::read_to_string(&out_path).unwrap();
    assert!(text.contains("# the operator's notes\n[policy]"), "{text}");
    assert!(text.contains("# why three"), "{text}");
    assert!(
        text.find("primary = \"a:one\"").unwrap() < text.find("primary = \"a:two\"").unwrap(),
        "{text}"
    );
    let tuned = Config::load(&out_path).unwrap();
    let before = Config::load(&config).unwrap();
    assert_eq!(tuned.groups[0].policy, before.groups[0].policy);
    let p = &tuned.groups[1].policy;
    // The printed keys are the written ones.
    let rule = match p.rule {
        Rule::Thresholds => "rule = \"thresholds\"",
        Rule::Target => "rule = \"target\"",
    };
    assert!(stdout.contains(rule), "{stdout}");
    for (k, v) in tune::keys(p) {
        assert!(
            stdout.contains(&format!("{k} = {v}")),
            "{k} = {v} in {stdout}"
        );
    }
    assert_ne!(*p, before.groups[1].policy);
    let sim = Command::new(env!("CARGO_BIN_EXE_albatross-autoscale"))
        .args(["simulate", "--group", "a:two", "--trace"])
        .arg(fixture("step.csv"))
        .arg("--config")
        .arg(&out_path)
        .output()
        .unwrap();
    assert!(
        sim.status.success(),
        "{}",
        String::from_utf8_lossy(&sim.stderr)
    );
    assert!(std::fs::read_to_string(&svg).unwrap().contains("<svg"));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn bad_input_is_named() {
    let step = fixture("step.csv");
    let step = step.to_str().unwrap();
    let engine = fixture("engine.toml");
    let engine = engine.to_str().unwrap();
    for (args, want) in [
        (
            vec!["--trace", "/nonexistent/trace.csv"],
            "/nonexistent/trace.csv: cannot read",
        ),
        (vec!["--trace", step, "--train", "1.5"], "--train"),
        (
            vec!["--trace", step, "--train", "0"],
            "must be above 0 and below 1",
        ),
        (vec!["--trace", step, "--train", "half"], "is not a number"),
        (
            vec!["--trace", step, "--max-under", "150%"],
            "between 0% and 100%",
        ),
        (
            vec!["--trace", step, "--config", engine, "--group", "sim:nope"],
            "--group sim:nope: no [[group]] with that primary and no [[lxc]] with that name or vmid (groups: sim:app)",
        ),
    ] {
        let out = tune_cli(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert!(err.contains(want), "{args:?}: {err} lacks {want:?}");
    }
    // Too short to split.
    let dir = std::env::temp_dir().join(format!("tune-short-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let short = dir.join("short.csv");
    std::fs::write(&short, "time_s,demand\n0,1\n10,2\n").unwrap();
    let out = tune_cli(&["--trace", short.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("too few to fit"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// A configuration with a vertical and a horizontal container, in `dir`.
fn lxc_config(dir: &Path) -> PathBuf {
    std::fs::write(dir.join("token"), "secret\n").unwrap();
    let path = dir.join("lxc.toml");
    std::fs::write(
        &path,
        r#"[policy]
sample_interval = "10s"
max_actions_per_hour = 12

[proxmox]
url = "https://127.0.0.1:8006"
token_id = "autoscale@pve!scaler"
token_secret_file = "token"
fingerprint = "AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99:AA:BB:CC:DD:EE:FF:00:11:22:33:44:55:66:77:88:99"
state_file = "state.json"

[[lxc]]
vmid = 101
mode = "vertical"
cores = [1, 8]
memory_mib = [512, 8192]

[[lxc]]
vmid = 102
name = "web"
mode = "horizontal"
max_instances = 12
# containers boot slowly
boot_time = "30s"
"#,
    )
    .unwrap();
    path
}

#[test]
fn a_horizontal_container_group_is_tuned_in_its_own_table() {
    let dir = std::env::temp_dir().join(format!("tune-lxc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = lxc_config(&dir);
    let out_path = dir.join("tuned.toml");
    let trace = fixture("step.csv");
    // By name, by label, by vmid: the same group.
    for group in ["lxc:web", "web", "102"] {
        let out = tune_on(
            &trace,
            &config,
            &[
                "--group",
                group,
                "--samples",
                "10",
                "--max-under",
                "5%",
                "--output",
                out_path.to_str().unwrap(),
            ],
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{group}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.contains("# [[lxc]]: the daemon fits no seasonal forecast for containers"),
            "{stdout}"
        );
        assert!(!stdout.contains("hint:"), "{stdout}");
        assert!(
            stdout.contains("## recommended keys ([[lxc]] vmid = 102)"),
            "{stdout}"
        );
    }
    let before = Config::load(&config).unwrap();
    let tuned = Config::load(&out_path).unwrap();
    let validate = Command::new(env!("CARGO_BIN_EXE_albatross-autoscale"))
        .arg("validate")
        .arg(&out_path)
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&validate.stdout).ends_with(": ok, 0 group(s), 2 container(s)\n"),
        "{}",
        String::from_utf8_lossy(&validate.stdout)
    );
    // The vertical container is untouched; the horizontal one has the tuned keys
    // (and keeps its own, such as its boot time and its comment).
    assert_eq!(tuned.lxc[0], before.lxc[0]);
    assert_ne!(tuned.lxc[1].policy, before.lxc[1].policy);
    assert_eq!(
        tuned.lxc[1].policy.boot_time,
        std::time::Duration::from_secs(30)
    );
    assert!(
        std::fs::read_to_string(&out_path)
            .unwrap()
            .contains("# containers boot slowly")
    );
    // The machine measures a container as a share of its cores: one unit each.
    let sim = Command::new(env!("CARGO_BIN_EXE_albatross-autoscale"))
        .args([
            "simulate", "--group", "web", "--policy", "engine", "--trace",
        ])
        .arg(&trace)
        .arg("--config")
        .arg(&out_path)
        .output()
        .unwrap();
    assert!(
        sim.status.success(),
        "{}",
        String::from_utf8_lossy(&sim.stderr)
    );
    // A vertical container has no clones to model.
    let out = tune_on(&trace, &config, &["--group", "101"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("--group 101: [[lxc]] vmid 101 is vertical (mode = \"vertical\")"),
        "{err}"
    );
    // Without --group and without [[group]]: the first horizontal container.
    let out = tune_on(&trace, &config, &["--samples", "4"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("[[lxc]] vmid = 102"));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_month_fitted_on_its_first_half_is_told_the_weekly_season_needs_more() {
    let dir = std::env::temp_dir().join(format!("tune-month-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // 28 days of hourly rows; a coarse grid and weekly refits keep it quick.
    let mut csv = String::from("time_s,demand\n");
    for h in 0..28 * 24u64 {
        let busy = (8..18).contains(&(h % 24)) && h / 24 % 7 < 5;
        csv.push_str(&format!("{},{}\n", h * 3600, if busy { 3.0 } else { 1.0 }));
    }
    let trace = dir.join("month.csv");
    std::fs::write(&trace, csv).unwrap();
    let config = dir.join("c.toml");
    std::fs::write(
        &config,
        "[policy]\nsample_interval = \"60s\"\nboot_time = \"60s\"\nforecast_refit = \"7days\"\n\
         max_instances = 6\n[[group]]\nprimary = \"a:web\"\n",
    )
    .unwrap();
    let out = tune_on(&trace, &config, &["--samples", "2"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // 14 days before the split; 22 of 28 days: 0.7857 rounded up.
    assert!(
        stdout.contains("hint: the training part is shorter than the two weeks (and a day) the weekly season needs before its error is measured; --train 0.79 fits on 22 days"),
        "{stdout}"
    );
    assert!(
        stdout.contains("forecast error (MAPE of the day ahead"),
        "{stdout}"
    );
    // Fitted on 0.8, the training part has them: no hint.
    let out = tune_on(&trace, &config, &["--samples", "2", "--train", "0.8"]);
    assert!(!String::from_utf8_lossy(&out.stdout).contains("hint:"));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn inline_tables_are_tuned_in_place_and_ambiguous_names_refused() {
    let dir = std::env::temp_dir().join(format!("tune-inline-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let step = fixture("step.csv");
    // The loader takes inline tables; so does --output.
    let config = dir.join("inline.toml");
    std::fs::write(
        &config,
        "policy = { max_instances = 12, max_actions_per_hour = 12 }\n\
         group = [{ primary = \"a:one\" }, { primary = \"a:two\", scale_up_ticks = 3 }]\n",
    )
    .unwrap();
    let out_path = dir.join("tuned.toml");
    let out = tune_on(
        &step,
        &config,
        &[
            "--group",
            "A:Two",
            "--samples",
            "5",
            "--max-under",
            "5%",
            "--output",
            out_path.to_str().unwrap(),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let before = Config::load(&config).unwrap();
    let tuned = Config::load(&out_path).unwrap();
    assert_eq!(tuned.groups[0].policy, before.groups[0].policy);
    let text = std::fs::read_to_string(&out_path).unwrap();
    assert!(
        text.contains("group = [{ primary = \"a:one\" }, { primary = \"a:two\""),
        "{text}"
    );
    let p = &tuned.groups[1].policy;
    for (k, v) in tune::keys(p) {
        assert!(text.contains(&format!("{k} = {v}")), "{k} = {v} in {text}");
    }
    // A container labelled like a group's primary, and a name that is a vmid.
    let lxc = lxc_config(&dir);
    let mut text = std::fs::read_to_string(&lxc).unwrap();
    text.push_str("\n[[group]]\nprimary = \"lxc:web\"\n\n[[lxc]]\nvmid = 103\nname = \"102\"\nmode = \"horizontal\"\n");
    std::fs::write(&lxc, text).unwrap();
    for (group, want) in [
        (
            "lxc:web",
            "--group lxc:web is ambiguous: it names [[group]] primary = \"lxc:web\" and [[lxc]] vmid = 102 (lxc:web)",
        ),
        (
            "102",
            "--group 102 is ambiguous: it names [[lxc]] vmid = 102 (lxc:web) and [[lxc]] vmid = 103 (lxc:102)",
        ),
    ] {
        let out = tune_on(&step, &lxc, &["--group", group, "--samples", "2"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains(want),
            "{group}: {err}"
        );
    }
    // Shadow mode on a container is allowed but does nothing: validate says so.
    let mut text = std::fs::read_to_string(lxc_config(&dir)).unwrap();
    text.push_str("predictive = \"shadow\"\n");
    let shadow = dir.join("shadow.toml");
    std::fs::write(&shadow, text).unwrap();
    let v = Command::new(env!("CARGO_BIN_EXE_albatross-autoscale"))
        .arg("validate")
        .arg(&shadow)
        .output()
        .unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&v.stdout),
        String::from_utf8_lossy(&v.stderr)
    );
    assert!(
        all.contains("lxc 102 (lxc:web): predictive = \"shadow\" does nothing for containers"),
        "{all}"
    );
    std::fs::remove_dir_all(&dir).ok();
}
