//! Seasonal forecasts end to end: fitted from a `[history]` database as the
//! daemon's refit task does, handed to the engine as an input, and shown by
//! `GET /v1/groups/{name}/forecast` and the metrics.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use albatross_autoscale::config::Config;
use albatross_autoscale::core::{Engine, Input, Options, Timestamp};
use albatross_autoscale::daemon::forecast::from_history;
use albatross_autoscale::daemon::runner::{EngineHandle, Event};
use albatross_autoscale::history::store::{Row, Store};
use albatross_autoscale::history::writer::unix_ms;
use albatross_autoscale::http::Api;
use albatross_autoscale::http::limit::ManualClock;
use albatross_autoscale::name::Name;
use axum::http::StatusCode;
use serde_json::Value;

mod common;

const KEY: &str = "forecast-key-0123456789abcdef";
const STEP: i64 = 300_000;

fn dir(name: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("forecast-{name}"));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A daily pattern in milli-vCPUs: 1 vCPU at night, 4 in office hours.
fn daily(t: i64) -> u64 {
    let h = (t.rem_euclid(86_400_000)) as f64 / 3_600_000.0;
    if (8.0..18.0).contains(&h) {
        4_000
    } else {
        1_000
    }
}

async fn get(api: &Arc<Api>, path: &str) -> (StatusCode, Value) {
    let (st, text) = get_text(api, path).await;
    (st, serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn get_text(api: &Arc<Api>, path: &str) -> (StatusCode, String) {
    common::api::request(api, axum::http::Method::GET, path, KEY).await
}

#[tokio::test]
async fn a_fit_from_history_reaches_the_api_with_its_measured_error() {
    let d = dir("api");
    std::fs::write(d.join("keys"), format!("ops {KEY}\n")).unwrap();
    let cfg = d.join("c.toml");
    std::fs::write(
        &cfg,
        "[history]\npath = \"h.db\"\n[http]\nlisten = \"127.0.0.1:0\"\napi_keys_file = \"keys\"\n\
         [policy]\npredictive = \"shadow\"\nboot_time = \"1m\"\nforecast_margin = \"4m\"\n\
         [[group]]\nprimary = \"alice:web\"\n[[group]]\nprimary = \"alice:new\"\n",
    )
    .unwrap();
    let config = Config::load(&cfg).unwrap();
    let db = config.history.path.clone().unwrap();
    // Three days of alice:web, one evaluation per step; three hours of alice:new.
    let now = unix_ms(SystemTime::now());
    let until = now - now.rem_euclid(STEP);
    let row = |g: &str, t: i64| Row::Evaluation {
        t,
        group: Arc::new(Name::parse(g).unwrap()),
        avg_bp: 5_000,
        fresh: 1,
        instances: 1,
        demand: daily(t),
    };
    let mut rows: Vec<Row> = (1..=3 * 288)
        .map(|i| row("alice:web", until - i * STEP))
        .collect();
    rows.extend((1..=36).map(|i| row("alice:new", until - i * STEP)));
    let mut s = Store::open(&db).unwrap();
    s.write(&rows).unwrap();
    drop(s);

    let web = from_history(&db, "alice:web", now).unwrap();
    assert_eq!(web.history_ms, 3 * 86_400_000);
    assert_eq!((web.start_ms, web.step_ms), (until, STEP as u64));
    assert!(web.model.starts_with("mstl(288)"), "{}", web.model);
    assert_eq!(web.points.len(), 288);
    // A pattern that repeats exactly is forecast to within a few percent.
    let mape = web.mape_hundredths.expect("two days: measured");
    assert!(mape < 500, "{mape}");
    let new = from_history(&db, "alice:new", now).unwrap();
    assert!(new.points.is_empty() && new.history_ms == 3 * 3_600_000);
    let none = from_history(&db, "alice:gone", now).unwrap();
    assert_eq!(none.history_ms, 0);

    // The engine holds the fits; its status is what the API reads.
    let groups = config
        .groups
        .iter()
        .map(|g| (g.primary.clone(), (*g.policy).clone()))
        .collect();
    let origin = now - 60_000;
    let mut engine =
        Engine::new(groups, Options::default(), Timestamp::ZERO).with_wall_origin(origin);
    let mut out = Vec::new();
    for (g, f) in [("alice:web", web.clone()), ("alice:new", new)] {
        let input = Input::Forecast {
            group: Name::parse(g).unwrap(),
            forecast: Arc::new(f),
        };
        engine.step(Timestamp::from_millis(60_000), input, &mut out);
    }
    let status = engine.status(Timestamp::from_millis(60_000));
    let (tx, mut rx) = tokio::sync::mpsc::channel(4);
    tokio::spawn(async move {
        while let Some(e) = rx.recv().await {
            if let Event::Status(reply) = e {
                let _ = reply.send(status.clone());
            }
        }
    });
    let api = Api::new(
        &config,
        Some(EngineHandle::new(tx)),
        Vec::new(),
        Arc::new(ManualClock::default()),
    )
    .unwrap();

    let (st, v) = get(&api, "/v1/groups/alice:web/forecast?horizon=1h").await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let s = &v["seasonal"];
    assert_eq!(s["mode"], "shadow");
    assert_eq!(s["status"], "trusted", "{s}");
    assert_eq!(
        s["mape_percent"].as_f64(),
        Some(f64::from(mape) / 100.0),
        "{s}"
    );
    assert_eq!(s["max_error_percent"], 10);
    assert_eq!(s["history_span"], "3days");
    assert_eq!(s["lead"], "5m");
    assert_eq!(s["horizon"], "1h");
    assert_eq!(s["fitted_at_ms"].as_i64(), Some(until));
    assert!(s["fitted_at"].as_str().unwrap().ends_with('Z'), "{s}");
    // The curve from now on for an hour: the step holding now and the next 11 or 12.
    let pts = s["points"].as_array().unwrap();
    assert!((12..=13).contains(&pts.len()), "{}", pts.len());
    let first = pts[0]["t_ms"].as_i64().unwrap();
    assert!(first <= now && now < first + STEP, "{first} {now}");
    // The forecast of a step is the pattern there, within the measured error.
    for p in pts {
        let (t, f) = (p["t_ms"].as_i64().unwrap(), p["demand"].as_f64().unwrap());
        let want = daily(t) as f64 / 1000.0;
        assert!((f - want).abs() <= want * 0.25, "{p} vs {want}");
    }
    // The Holt view of the same history is still there.
    assert!(v["points"].as_array().is_some_and(|p| !p.is_empty()), "{v}");

    let (st, v) = get(&api, "/v1/groups/alice:new/forecast").await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["seasonal"]["status"], "needs_history");
    assert_eq!(v["seasonal"]["message"], "needs 1 day of history, has 3h");
    assert_eq!(v["seasonal"]["points"], Value::Array(vec![]));

    // The metrics carry the measured error and whether it is trusted.
    let (st, text) = get_text(&api, "/metrics").await;
    assert_eq!(st, StatusCode::OK);
    let line = format!(
        "albatross_autoscale_forecast_mape_percent{{group=\"alice:web\"}} {}",
        f64::from(mape) / 100.0
    );
    assert!(text.contains(&line), "{line}\n{text}");
    assert!(
        text.contains("albatross_autoscale_forecast_trusted{group=\"alice:web\"} 1")
            && text.contains("albatross_autoscale_forecast_trusted{group=\"alice:new\"} 0"),
        "{text}"
    );
}
