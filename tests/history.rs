//! The metrics history: a round trip (the real daemon against the in-process
//! albatross endpoint records a load; `history export` prints it; `simulate
//! --trace` replays it), survival across a restart, the clear errors of a locked
//! or corrupt file, and the HTTP history and forecast views.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use albatross_autoscale::config::Config;
use albatross_autoscale::core::{Action, Output};
use albatross_autoscale::daemon::albatross::{Daemon, RunOptions};
use albatross_autoscale::history::store::{Retention, Row, Store};
use albatross_autoscale::history::writer::unix_ms;
use albatross_autoscale::history::{Feed, Writer, query, store};
use albatross_autoscale::http::limit::ManualClock;
use albatross_autoscale::http::{Api, router};
use albatross_autoscale::name::Name;
use albatross_autoscale::sandbox::{Endpoint, EndpointConfig, TestPki, small_unikernel};
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use tokio::sync::broadcast::Receiver;
use tower::ServiceExt;

const WAIT: Duration = Duration::from_secs(30);
const KEY: &str = "history-key-0123456789abcdef";

fn dir(name: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("history-{name}"));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn bin(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_albatross-autoscale"))
        .args(args)
        .output()
        .unwrap()
}

fn name(s: &str) -> Arc<Name> {
    Arc::new(Name::parse(s).unwrap())
}

fn q(p: &Path) -> String {
    format!("{:?}", p.display().to_string())
}

/// Wait for an output matching `f`.
async fn until(rx: &mut Receiver<Output>, mut f: impl FnMut(&Output) -> bool) {
    tokio::time::timeout(WAIT, async {
        loop {
            match rx.recv().await {
                Ok(o) if f(&o) => return,
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(e) => panic!("outputs closed: {e}"),
            }
        }
    })
    .await
    .expect("the expected output did not come in time");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_trip_run_export_simulate() {
    let pki = TestPki::generate_with_policy("demo", &TestPki::default_policy()).unwrap();
    let files = pki.write_to_temp().unwrap();
    let d = dir("round-trip");
    let load = Arc::new(AtomicU64::new(0));
    let l = load.clone();
    let mut cfg = EndpointConfig::from_pki(&pki).unwrap();
    cfg.stats_interval = Duration::from_millis(100);
    cfg.boot_delay = Duration::from_millis(200);
    cfg.load = Arc::new(move |g, _| {
        if g == "demo:web" {
            l.load(Ordering::Relaxed) as f64 / 1000.0
        } else {
            0.0
        }
    });
    let endpoint = Endpoint::start(cfg).await.unwrap();
    endpoint.add(Name::parse("demo:web").unwrap(), small_unikernel());
    let text = format!(
        "[policy]\nsample_interval = \"100ms\"\nscale_up_threshold = 75\nscale_up_ticks = 2\nscale_down_threshold = 30\nscale_down_ticks = 3\n\
         scale_up_cooldown = \"300ms\"\nscale_down_cooldown = \"500ms\"\ndeath_timeout = \"2s\"\nmax_instances = 3\nmax_actions_per_hour = 100\nboot_time = \"200ms\"\n\
         [albatross]\nendpoint = \"{}\"\nca = {}\ncert = {}\nkey = {}\nreconnect_min = \"50ms\"\nreconnect_max = \"200ms\"\n\
         [daemon]\nstate_file = \"state.json\"\n\
         [history]\npath = \"history.db\"\nflush_interval = \"50ms\"\n\
         [[group]]\nprimary = \"demo:web\"\nclone_ipv4 = \"10.0.42.10-10.0.42.50\"\n",
        endpoint.addr(),
        q(&files.ca),
        q(&files.subca),
        q(&files.subca_key),
    );
    let config_path = d.join("run.toml");
    std::fs::write(&config_path, text).unwrap();
    let config = Config::load(&config_path).unwrap();

    // As `run` does: the writer first, then the daemon, then the follower.
    let writer = Writer::start(&config.history).unwrap();
    let daemon = Daemon::start(config.clone(), RunOptions::default())
        .await
        .unwrap();
    let mut rx = daemon.subscribe();
    let follow =
        tokio::spawn(Feed::new(writer.recorder(), daemon.origin()).follow(daemon.subscribe()));
    load.store(1_200, Ordering::Relaxed);
    until(
        &mut rx,
        |o| matches!(o, Output::Decision(d) if d.action == Action::ScaleUp),
    )
    .await;
    // Two instances serving 1.2 vCPUs between them (60 %, well inside the
    // thresholds) for a while, then quiet.
    let mut serving = 0;
    until(&mut rx, |o| {
        if let Output::Evaluation(e) = o
            && e.fresh >= 2
        {
            serving += 1;
        }
        serving >= 10
    })
    .await;
    load.store(200, Ordering::Relaxed);
    until(
        &mut rx,
        |o| matches!(o, Output::Decision(d) if d.action == Action::ScaleDown),
    )
    .await;
    daemon.stop().await;
    follow.await.unwrap();
    let counters = writer.recorder().counters().clone();
    tokio::task::spawn_blocking(move || writer.close())
        .await
        .unwrap();
    assert_eq!(counters.dropped.load(Ordering::Relaxed), 0);
    assert_eq!(counters.failed.load(Ordering::Relaxed), 0);
    assert!(counters.written.load(Ordering::Relaxed) > 20);

    // The decisions are there with their reasons.
    let path = d.join("history.db");
    let conn = store::open_read(&path).unwrap();
    let grp = query::group_id(&conn, "demo:web").unwrap().unwrap();
    let decisions = query::decisions(&conn, grp, 0, i64::MAX, 100).unwrap();
    let actions: Vec<&str> = decisions.iter().map(|d| d.action.as_str()).collect();
    assert!(
        actions.starts_with(&["scale_up"]) && actions.contains(&"scale_down"),
        "{actions:?}"
    );
    assert!(decisions[0].reason.contains("75"), "{:?}", decisions[0]);
    let now = unix_ms(SystemTime::now());
    assert!(
        (now - 60_000..=now).contains(&decisions[0].t_ms),
        "{:?}",
        decisions[0]
    );

    // Export: the CSV simulate reads, with the recorded load in it.
    let cfg = config_path.to_str().unwrap();
    let out = bin(&[
        "history", "export", "--config", cfg, "--group", "demo:web", "--format", "csv",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let csv = String::from_utf8(out.stdout).unwrap();
    assert!(csv.starts_with("time_s,demand\n"), "{csv}");
    let rows: Vec<(f64, f64)> = csv
        .lines()
        .skip(1)
        .map(|l| {
            let (t, d) = l.split_once(',').unwrap();
            (t.parse().unwrap(), d.parse().unwrap())
        })
        .collect();
    assert!(rows.len() >= 15, "{csv}");
    assert_eq!(rows[0].0, 0.0);
    assert!(rows.windows(2).all(|w| w[1].0 > w[0].0), "{csv}");
    // On the 100 ms grid of the group's sample_interval.
    assert!(
        rows.iter()
            .all(|(t, _)| ((t * 10.0).round() - t * 10.0).abs() < 1e-6),
        "{csv}"
    );
    // The busy stretch recorded the 1.2 vCPUs served. Its median, not its peak: on a
    // loaded machine one late stats frame can put a single row well above it.
    let mut busy: Vec<f64> = rows.iter().map(|r| r.1).filter(|d| *d > 0.9).collect();
    busy.sort_by(f64::total_cmp);
    let median = busy[busy.len() / 2];
    assert!(
        (1.05..=1.4).contains(&median),
        "busy median {median}: {csv}"
    );
    assert!(rows.last().unwrap().1 < 0.6, "{csv}");
    let trace = d.join("trace.csv");
    std::fs::write(&trace, &csv).unwrap();

    let out = bin(&[
        "simulate",
        "--trace",
        trace.to_str().unwrap(),
        "--config",
        cfg,
        "--group",
        "demo:web",
        "--report",
        "json",
        "--policy",
        "engine",
        "--policy",
        "hpa",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    // The simulated span is the recorded one, and the engine reacts to the
    // recorded load as the daemon did (at least one scale-up).
    let span_h = (rows.last().unwrap().0 + 0.1) / 3600.0;
    for p in ["engine", "hpa"] {
        let h = report[p]["hours"].as_f64().unwrap_or(0.0);
        assert!(
            (h - span_h).abs() < 1e-3,
            "{p}: {h} h, recorded {span_h} h: {report}"
        );
        assert!(
            report[p]["mean_instances"].as_f64().unwrap() >= 1.0,
            "{report}"
        );
    }
    assert!(
        report["engine"]["actions"].as_u64().unwrap() >= 1,
        "{report}"
    );

    // JSON Lines carry min/mean/max, CPU and instances per step.
    let out = bin(&[
        "history", "export", "--config", cfg, "--group", "demo:web", "--format", "jsonl",
    ]);
    assert!(out.status.success());
    let lines: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), rows.len());
    assert!(lines.iter().any(|v| v["instances"] == 2), "{lines:?}");
    assert!(
        lines
            .iter()
            .all(|v| v["min"].as_f64() <= v["max"].as_f64() && v["time"].is_string())
    );

    // Unknown group, missing history: errors that say what is wrong.
    let out = bin(&["history", "export", "--config", cfg, "--group", "demo:nope"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("nothing recorded for group \"demo:nope\"")
    );
}

fn history_config(d: &Path, extra: &str) -> Config {
    let path = d.join("c.toml");
    std::fs::write(
        &path,
        format!("[history]\npath = \"h.db\"\nflush_interval = \"10ms\"\n{extra}\n[[group]]\nprimary = \"alice:web\"\n"),
    )
    .unwrap();
    Config::load(&path).unwrap()
}

fn eval(t: i64, demand: u64) -> Row {
    Row::Evaluation {
        t,
        group: name("alice:web"),
        avg_bp: u32::try_from(demand * 10 / 2).unwrap(),
        fresh: 2,
        instances: 2,
        demand,
    }
}

#[test]
fn data_survives_a_restart() {
    let d = dir("restart");
    let config = history_config(&d, "");
    let w = Writer::start(&config.history).unwrap();
    let t0 = unix_ms(SystemTime::now()) - 600_000;
    for i in 0..100 {
        w.recorder().push(eval(t0 + i * 1_000, 1_000 + i as u64));
    }
    w.close();
    let w = Writer::start(&config.history).unwrap();
    w.recorder().push(eval(t0 + 200_000, 5_000));
    w.close();
    let conn = store::open_read(config.history.path.as_deref().unwrap()).unwrap();
    let grp = query::group_id(&conn, "alice:web").unwrap().unwrap();
    let p = query::points(&conn, grp, 0, i64::MAX, query::Step::Raw, 1_000).unwrap();
    assert_eq!(p.len(), 101);
    assert_eq!((p[0].mean, p[99].mean, p[100].mean), (1.0, 1.099, 5.0));
    assert_eq!(p[0].instances, 2);
    assert_eq!(p[0].cpu_mean, 50.0);
}

#[test]
fn a_file_in_use_or_locked_is_a_clear_error_at_start() {
    let d = dir("locked");
    let config = history_config(&d, "");
    let path = config.history.path.clone().unwrap();
    let shown = path.display().to_string();
    // Another writer of ours.
    let w = Writer::start(&config.history).unwrap();
    let err = format!("{:#}", Writer::start(&config.history).err().unwrap());
    assert!(err.contains(&shown) && err.contains("in use"), "{err}");
    assert!(
        err.contains(&format!("pid {}", std::process::id())),
        "{err}"
    );
    w.close();
    // Another program holding a write lock on the file.
    let other = rusqlite::Connection::open(&path).unwrap();
    other.execute_batch("BEGIN EXCLUSIVE;").unwrap();
    let err = format!("{:#}", Writer::start(&config.history).err().unwrap());
    assert!(
        err.contains(&shown) && err.contains("locked by another process"),
        "{err}"
    );
    other.execute_batch("COMMIT;").unwrap();
    drop(other);
    Writer::start(&config.history).unwrap().close();
}

#[test]
fn a_corrupt_file_is_a_clear_error_at_start_also_for_run() {
    let d = dir("corrupt");
    let config = history_config(&d, "");
    let path = config.history.path.clone().unwrap();
    let shown = path.display().to_string();
    // Not a database at all.
    std::fs::write(&path, vec![b'x'; 8192]).unwrap();
    let err = format!("{:#}", Writer::start(&config.history).err().unwrap());
    assert!(
        err.contains(&shown) && err.contains("not a usable SQLite database"),
        "{err}"
    );
    // A real history with pages overwritten in the middle.
    std::fs::remove_file(&path).unwrap();
    let mut s = Store::open(&path).unwrap();
    let rows: Vec<Row> = (0..20_000).map(|i| eval(i * 1_000, 1_000)).collect();
    s.write(&rows).unwrap();
    drop(s);
    let mut bytes = std::fs::read(&path).unwrap();
    assert!(bytes.len() > 64 * 1024, "{}", bytes.len());
    for b in &mut bytes[8192..40_960] {
        *b = 0xa5;
    }
    std::fs::write(&path, bytes).unwrap();
    let err = format!("{:#}", Writer::start(&config.history).err().unwrap());
    assert!(
        err.contains(&shown) && err.contains("move the file away"),
        "{err}"
    );

    // `run` stops at start with that message (nothing else is started).
    let pki = TestPki::generate_with_policy("demo", &TestPki::default_policy()).unwrap();
    let files = pki.write_to_temp().unwrap();
    let text = format!(
        "[albatross]\nendpoint = \"127.0.0.1:9\"\nca = {}\ncert = {}\nkey = {}\n[daemon]\nstate_file = \"state.json\"\n\
         [history]\npath = \"h.db\"\n[[group]]\nprimary = \"demo:web\"\n",
        q(&files.ca),
        q(&files.subca),
        q(&files.subca_key),
    );
    let cfg = d.join("run.toml");
    std::fs::write(&cfg, text).unwrap();
    let out = bin(&["run", "--config", cfg.to_str().unwrap()]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("history.path {shown}")),
        "{stderr}"
    );
}

async fn get(api: &Arc<Api>, path: &str, key: Option<&str>) -> (StatusCode, Value) {
    let mut req = Request::builder().uri(path);
    if let Some(k) = key {
        req = req.header("authorization", format!("Bearer {k}"));
    }
    let mut req = req.body(Body::empty()).unwrap();
    req.extensions_mut()
        .insert(ConnectInfo(SocketAddr::from(([10, 0, 0, 1], 40000))));
    let r = router(api.clone()).oneshot(req).await.unwrap();
    let status = r.status();
    let bytes = r.into_body().collect().await.unwrap().to_bytes();
    let v = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, v)
}

#[tokio::test]
async fn http_history_and_forecast_answer_with_json() {
    let d = dir("http");
    std::fs::write(d.join("keys"), format!("ops {KEY}\n")).unwrap();
    let config = history_config(
        &d,
        "[http]\nlisten = \"127.0.0.1:0\"\napi_keys_file = \"keys\"\n",
    );
    // Three hours of a group rising from 1 to 4 vCPUs, one evaluation per 10 s,
    // rolled up as the writer would have.
    let now = unix_ms(SystemTime::now());
    let start = now - 3 * 3_600_000;
    let mut s = Store::open(config.history.path.as_deref().unwrap()).unwrap();
    let rows: Vec<Row> = (0..1080)
        .map(|i| eval(start + i * 10_000, 1_000 + i as u64 * 3_000 / 1080))
        .chain([Row::Decision {
            t: now - 1_800_000,
            group: name("alice:web"),
            action: "scale_up",
            instance: name("alice:web-clone-1"),
            reason: "average 85.00% >= 80% for 2 ticks".into(),
            emergency: false,
        }])
        .collect();
    s.write(&rows).unwrap();
    let keep = Retention {
        raw: config.history.raw_retention,
        aggregates: config.history.retention,
    };
    while s.maintain(now, keep).unwrap().buckets_rolled > 0 {}
    drop(s);
    let api = Api::new(&config, None, Vec::new(), Arc::new(ManualClock::default())).unwrap();

    let (st, _) = get(&api, "/v1/groups/alice:web/history", None).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);

    // The last hour, raw: one point per evaluation.
    let (st, v) = get(&api, "/v1/groups/alice:web/history?since=-1h", Some(KEY)).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(
        (v["step"].as_str(), v["source"].as_str()),
        (Some("raw"), Some("raw"))
    );
    let n = v["count"].as_u64().unwrap();
    assert!((355..=361).contains(&n), "{n}");
    let p = &v["points"][0];
    assert!(
        p["time"].is_string() && p["min"] == p["max"] && p["instances"] == 2,
        "{p}"
    );
    assert_eq!(v["decisions"][0]["action"], "scale_up");

    // Everything at 5 minutes: aggregates, with the minutes not yet rolled up
    // added from the raw rows.
    let (st, v) = get(
        &api,
        "/v1/groups/alice:web/history?since=-4h&step=5m",
        Some(KEY),
    )
    .await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["source"], "5m");
    let pts = v["points"].as_array().unwrap();
    assert!((36..=38).contains(&pts.len()), "{}", pts.len());
    for p in pts {
        let (lo, mean, hi) = (
            p["min"].as_f64().unwrap(),
            p["mean"].as_f64().unwrap(),
            p["max"].as_f64().unwrap(),
        );
        assert!(lo <= mean && mean <= hi, "{p}");
    }
    assert!(
        pts[0]["mean"].as_f64().unwrap() < 1.2
            && pts[pts.len() - 2]["mean"].as_f64().unwrap() > 3.7
    );
    let total: u64 = pts.iter().map(|p| p["samples"].as_u64().unwrap()).sum();
    assert_eq!(total, 1080);

    // An hourly step merges the aggregates.
    let (_, v) = get(
        &api,
        "/v1/groups/alice:web/history?since=-3h&step=1h",
        Some(KEY),
    )
    .await;
    assert!((3..=4).contains(&v["count"].as_u64().unwrap()), "{v}");

    // Forecast: the ramp goes on, with an interval and the measured error.
    let (st, v) = get(&api, "/v1/groups/alice:web/forecast?horizon=1h", Some(KEY)).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let pts = v["points"].as_array().unwrap();
    assert_eq!(pts.len(), 12);
    let last = &pts[11];
    let (lo, f, hi) = (
        last["lower"].as_f64().unwrap(),
        last["demand"].as_f64().unwrap(),
        last["upper"].as_f64().unwrap(),
    );
    // 1 vCPU/hour: an hour past the last 5-minute mean (about 3.97) is about 5.
    assert!((4.6..=5.4).contains(&f) && lo <= f && f <= hi, "{last}");
    assert!(v["mean_abs_error"].as_f64().unwrap() < 0.5, "{v}");
    assert!(v["history_points"].as_u64().unwrap() >= 36);

    // Bad input and unknown names are errors with codes.
    for (path, status, code) in [
        (
            "/v1/groups/alice:web/history?since=yesterday",
            StatusCode::BAD_REQUEST,
            "bad_query",
        ),
        (
            "/v1/groups/alice:web/history?step=fast",
            StatusCode::BAD_REQUEST,
            "bad_query",
        ),
        (
            "/v1/groups/alice:web/history?since=-20d&step=1s",
            StatusCode::UNPROCESSABLE_ENTITY,
            "too_many_points",
        ),
        (
            "/v1/groups/alice:web/forecast?horizon=1y",
            StatusCode::BAD_REQUEST,
            "bad_query",
        ),
        (
            "/v1/groups/alice:web/forecast?step=raw",
            StatusCode::BAD_REQUEST,
            "bad_query",
        ),
        (
            "/v1/groups/bob:db/history",
            StatusCode::NOT_FOUND,
            "unknown_group",
        ),
        (
            "/v1/groups/bob:db/forecast",
            StatusCode::NOT_FOUND,
            "unknown_group",
        ),
    ] {
        let (st, v) = get(&api, path, Some(KEY)).await;
        assert_eq!(
            (st, v["error"]["code"].as_str()),
            (status, Some(code)),
            "{path}: {v}"
        );
    }

    // Without [history] the views say so.
    let off = d.join("off.toml");
    std::fs::write(
        &off,
        "[http]\nlisten = \"127.0.0.1:0\"\napi_keys_file = \"keys\"\n",
    )
    .unwrap();
    let api = Api::new(
        &Config::load(&off).unwrap(),
        None,
        Vec::new(),
        Arc::new(ManualClock::default()),
    )
    .unwrap();
    let (st, v) = get(&api, "/v1/groups/alice:web/forecast", Some(KEY)).await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("history_off"))
    );
}

#[tokio::test(start_paused = true)]
async fn a_resize_only_container_is_recorded_with_its_resizes() {
    use albatross_autoscale::sandbox::proxmox::FakeServer;
    const PVE_SECRET: &str = "3f0c5a52-0000-4000-8000-0000000000ee";
    let pve = FakeServer::one_hot_container(PVE_SECRET, 0.95)
        .await
        .unwrap();
    let d = dir("vertical");
    let cfg = d.join("c.toml");
    std::fs::write(
        &cfg,
        format!(
            "[policy]\nscale_up_ticks = 1\nscale_up_cooldown = \"0s\"\n\
             [proxmox]\nurl = \"{}\"\ntoken_id = \"autoscale@pve!scaler\"\ntoken_secret_env = \"PVE_TEST_SECRET\"\n\
             [history]\npath = \"h.db\"\nflush_interval = \"10ms\"\n\
             [[lxc]]\nvmid = 101\ncores = [1, 8]\n",
            pve.url()
        ),
    )
    .unwrap();
    let before = unix_ms(SystemTime::now());
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_albatross-autoscale"))
            .args(["run", "--once", "--config"])
            .arg(&cfg)
            .env("PVE_TEST_SECRET", PVE_SECRET)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let after = unix_ms(SystemTime::now());

    let conn = store::open_read(&d.join("h.db")).unwrap();
    let grp = query::group_id(&conn, "lxc:ct101")
        .unwrap()
        .expect("the container is recorded under its name");
    let p = query::points(&conn, grp, 0, i64::MAX, query::Step::Raw, 100).unwrap();
    assert_eq!(p.len(), 1, "{p:?}");
    // 95 % of its 2 cores: 1.9 CPUs busy, one instance.
    assert_eq!((p[0].mean, p[0].cpu_mean, p[0].instances), (1.9, 95.0, 1));
    assert!((before..=after).contains(&p[0].t_ms), "{p:?}");
    let decisions = query::decisions(&conn, grp, 0, i64::MAX, 10).unwrap();
    assert_eq!(decisions.len(), 1, "{decisions:?}");
    assert_eq!(decisions[0].action, "resize_up");
    assert_eq!(decisions[0].instance, "lxc:ct101");
    assert!(!decisions[0].reason.is_empty());
}

#[tokio::test]
async fn metrics_carry_the_writers_counters() {
    let d = dir("metrics");
    std::fs::write(d.join("keys"), format!("ops {KEY}\n")).unwrap();
    let config = history_config(
        &d,
        "[http]\nlisten = \"127.0.0.1:0\"\napi_keys_file = \"keys\"\n",
    );
    let w = Writer::start(&config.history).unwrap();
    let t0 = unix_ms(SystemTime::now()) - 60_000;
    for i in 0..7 {
        w.recorder().push(eval(t0 + i * 1_000, 1_000));
    }
    let counters = w.recorder().counters().clone();
    tokio::task::spawn_blocking(move || w.close())
        .await
        .unwrap();
    let api = Api::new(&config, None, Vec::new(), Arc::new(ManualClock::default())).unwrap();
    api.metrics().set_history(counters);
    let mut req = Request::builder()
        .uri("/metrics")
        .header("authorization", format!("Bearer {KEY}"))
        .body(Body::empty())
        .unwrap();
    req.extensions_mut()
        .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40000))));
    let r = router(api.clone()).oneshot(req).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let text =
        String::from_utf8(r.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
    for line in [
        "albatross_autoscale_history_rows_written_total 7",
        "albatross_autoscale_history_rows_dropped_total 0",
        "albatross_autoscale_history_rows_failed_total 0",
        "albatross_autoscale_history_outputs_missed_total 0",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
    }
}
