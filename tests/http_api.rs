//! The HTTP API in process (`tower::ServiceExt::oneshot`) over a real engine task
//! with a scripted actuator: auth, rate limit on a manual clock, operator commands
//! honoured by the engine, reload, metrics exposition, OpenAPI coverage.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use albatross_autoscale::albatross::stats::StreamHealth;
use albatross_autoscale::config::Config;
use albatross_autoscale::core::{Action, Decision, Engine, Options, Output, Timestamp};
use albatross_autoscale::daemon::decision_log::DecisionLog;
use albatross_autoscale::daemon::ownership::Ownership;
use albatross_autoscale::daemon::runner::EngineHandle;
use albatross_autoscale::daemon::{Actuator, Done, Event, Failed, Runner, RunnerSettings};
use albatross_autoscale::http::limit::ManualClock;
use albatross_autoscale::http::{Api, router};
use albatross_autoscale::name::Name;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tower::ServiceExt;

const KEY: &str = "test-key-0123456789abcdef";
const KEY2: &str = "second-key-0123456789abcdef";

/// Reports every action it carries out.
struct Script(mpsc::UnboundedSender<(Action, String)>);

impl Actuator for Script {
    async fn execute(&self, d: Decision) -> Result<Done, Failed> {
        let _ = self.0.send((d.action, d.instance.to_string()));
        Ok(Done::Executed)
    }
}

fn dir(name: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("http-{name}"));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn config_text(extra_http: &str) -> String {
    format!(
        "[policy]\nscale_up_threshold = 80\nscale_up_ticks = 2\nscale_down_cooldown = \"1m\"\n\
         [daemon]\nstate_file = \"state.json\"\ndecision_log = \"decisions.jsonl\"\n\
         [http]\nlisten = \"127.0.0.1:0\"\napi_keys_file = \"keys\"\n{extra_http}\n\
         [[group]]\nprimary = \"alice:web\"\nmin_instances = 1\nmax_instances = 4\n"
    )
}

struct Rig {
    api: Arc<Api>,
    clock: Arc<ManualClock>,
    events: mpsc::Sender<Event>,
    done: mpsc::UnboundedReceiver<(Action, String)>,
    dir: PathBuf,
    cpu: u64,
}

fn rig(name: &str, extra_http: &str) -> Rig {
    let dir = dir(name);
    std::fs::write(dir.join("keys"), format!("# test\nops {KEY}\n")).unwrap();
    let path = dir.join("c.toml");
    std::fs::write(&path, config_text(extra_http)).unwrap();
    let config = Config::load(&path).unwrap();
    let groups = config
        .groups
        .iter()
        .map(|g| (g.primary.clone(), (*g.policy).clone()))
        .collect();
    let engine = Engine::new(groups, Options::default(), Timestamp::ZERO);
    let (tx, done) = mpsc::unbounded_channel();
    let settings = RunnerSettings {
        dry_run: false,
        state_file: config.daemon.state_file.clone(),
        shutdown_grace: Duration::from_secs(5),
    };
    let log = DecisionLog::open(config.daemon.decision_log.as_deref()).unwrap();
    let runner = Runner::new(
        engine,
        Arc::new(Script(tx)),
        log,
        Ownership::default(),
        settings,
        Instant::now(),
    );
    let outputs = runner.subscribe();
    let (events, rx) = mpsc::channel(64);
    tokio::spawn(runner.run(rx, tokio_util::sync::CancellationToken::new()));
    let clock = Arc::new(ManualClock::default());
    let api = Api::new(
        &config,
        Some(EngineHandle::new(events.clone())),
        vec![("default".to_string(), Arc::new(StreamHealth::default()))],
        clock.clone(),
    )
    .unwrap();
    tokio::spawn(api.clone().follow(outputs));
    Rig {
        api,
        clock,
        events,
        done,
        dir,
        cpu: 1_000_000,
    }
}

struct Resp {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    text: String,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("{e}: {}", self.text))
    }
}

impl Rig {
    async fn call(&self, method: Method, path: &str, key: Option<&str>, body: &str) -> Resp {
        self.call_from([10, 0, 0, 1], method, path, key, body).await
    }

    async fn call_from(
        &self,
        ip: [u8; 4],
        method: Method,
        path: &str,
        key: Option<&str>,
        body: &str,
    ) -> Resp {
        let mut req = Request::builder().method(method).uri(path);
        if let Some(k) = key {
            req = req.header("authorization", format!("Bearer {k}"));
        }
        let mut req = req
            .header("content-type", "application/json")
            .body(Body::from(body.to_string()))
            .unwrap();
        req.extensions_mut()
            .insert(ConnectInfo(SocketAddr::from((ip, 40000))));
        let r = router(self.api.clone()).oneshot(req).await.unwrap();
        let status = r.status();
        let headers = r.headers().clone();
        let bytes = r.into_body().collect().await.unwrap().to_bytes();
        Resp {
            status,
            headers,
            text: String::from_utf8(bytes.to_vec()).unwrap(),
        }
    }

    async fn get(&self, path: &str) -> Resp {
        self.call(Method::GET, path, Some(KEY), "").await
    }

    async fn post(&self, path: &str, body: &str) -> Resp {
        self.call(Method::POST, path, Some(KEY), body).await
    }

    /// One interval of the primary at `pct` %, through the engine task's channel.
    async fn sample(&mut self, pct: u64) {
        tokio::time::advance(Duration::from_secs(10)).await;
        self.cpu += 10_000 * 10 * pct;
        let ev = Event::Sample {
            vm: Name::parse("alice:web").unwrap(),
            cpu_us: self.cpu,
            vcpus: None,
            at: Instant::now(),
        };
        self.events.send(ev).await.unwrap();
    }
}

fn assert_error(r: &Resp, status: StatusCode, code: &str) {
    assert_eq!(r.status, status, "{}", r.text);
    let v = r.json();
    assert_eq!(v["error"]["code"], code, "{v}");
    assert_eq!(v["error"]["status"], status.as_u16());
    assert!(v["error"]["message"].is_string());
}

#[tokio::test(start_paused = true)]
async fn auth_missing_wrong_and_right_key() {
    let r = rig("auth", "");
    let missing = r.call(Method::GET, "/v1/groups", None, "").await;
    assert_error(&missing, StatusCode::UNAUTHORIZED, "unauthorized");
    assert_eq!(missing.headers["www-authenticate"], "Bearer");
    let wrong = r
        .call(Method::GET, "/v1/groups", Some("nope-nope-nope-nope"), "")
        .await;
    assert_error(&wrong, StatusCode::UNAUTHORIZED, "unauthorized");
    assert!(
        wrong.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("invalid")
    );
    let right = r.get("/v1/groups").await;
    assert_eq!(right.status, StatusCode::OK, "{}", right.text);
    assert_eq!(right.json()["groups"][0]["name"], "alice:web");
    // Metrics need a key too; probes do not.
    let m = r.call(Method::GET, "/metrics", None, "").await;
    assert_error(&m, StatusCode::UNAUTHORIZED, "unauthorized");
    for p in ["/health", "/ready", "/version", "/openapi.json"] {
        assert_eq!(
            r.call(Method::GET, p, None, "").await.status,
            StatusCode::OK,
            "{p}"
        );
    }
    // The key never shows in the effective config.
    let c = r.get("/v1/config").await;
    assert!(!c.text.contains(KEY));
}

#[tokio::test(start_paused = true)]
async fn rate_limit_is_per_client_and_follows_the_clock() {
    let r = rig("limit", "rate_limit_per_minute = 3\n");
    for _ in 0..3 {
        assert_eq!(r.get("/health").await.status, StatusCode::OK);
    }
    let limited = r.get("/health").await;
    assert_error(&limited, StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    assert_eq!(limited.headers["retry-after"], "20");
    // Wrong keys are limited too (no free guessing).
    let guess = r.call(Method::GET, "/v1/groups", Some("x"), "").await;
    assert_eq!(guess.status, StatusCode::TOO_MANY_REQUESTS);
    // Another client has its own bucket.
    let other = r
        .call_from([10, 0, 0, 2], Method::GET, "/health", None, "")
        .await;
    assert_eq!(other.status, StatusCode::OK);
    r.clock.advance(Duration::from_millis(19_999));
    assert_eq!(r.get("/health").await.status, StatusCode::TOO_MANY_REQUESTS);
    r.clock.advance(Duration::from_millis(1));
    assert_eq!(r.get("/health").await.status, StatusCode::OK);
    // Loopback is limited unless localhost_bypass is on.
    for _ in 0..3 {
        r.call_from([127, 0, 0, 1], Method::GET, "/health", None, "")
            .await;
    }
    let lo = r
        .call_from([127, 0, 0, 1], Method::GET, "/health", None, "")
        .await;
    assert_eq!(lo.status, StatusCode::TOO_MANY_REQUESTS);
    let b = rig(
        "bypass",
        "rate_limit_per_minute = 1\nlocalhost_bypass = true\n",
    );
    for _ in 0..10 {
        let ok = b
            .call_from([127, 0, 0, 1], Method::GET, "/health", None, "")
            .await;
        assert_eq!(ok.status, StatusCode::OK);
    }
}

#[tokio::test(start_paused = true)]
async fn pause_resume_and_manual_scale_are_honoured_by_the_engine() {
    let mut r = rig("control", "");
    let p = r.post("/v1/groups/alice:web/pause", "").await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.text);
    assert_eq!(p.json()["group"]["paused"], true);
    // High load while paused: recommendations, no action.
    for _ in 0..4 {
        r.sample(95).await;
    }
    let g = r.get("/v1/groups/alice:web").await.json();
    assert_eq!(g["group"]["instances"], 1, "{g}");
    assert!(r.done.try_recv().is_err());
    let d = r.get("/v1/decisions?group=alice:web&limit=5").await.json();
    let items = d["items"].as_array().unwrap();
    assert!(!items.is_empty(), "{d}");
    assert!(
        items
            .iter()
            .all(|i| i["event"] == "evaluation"
                && i["why_not"].as_str().unwrap().starts_with("paused")),
        "{d}"
    );
    // A manual target is carried out even while paused, and audited.
    let s = r
        .post("/v1/groups/alice:web/scale", r#"{"target": 2}"#)
        .await;
    assert_eq!(s.status, StatusCode::OK, "{}", s.text);
    let out = s.json()["outputs"].clone();
    let decision = out
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["event"] == "decision")
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        decision["reason"]
            .as_str()
            .unwrap()
            .starts_with("manual scale to 2")
    );
    assert_eq!(
        r.done.recv().await.unwrap(),
        (Action::ScaleUp, "alice:web-clone-1".to_string())
    );
    let log = std::fs::read_to_string(r.dir.join("decisions.jsonl")).unwrap();
    assert!(log.contains("manual scale to 2"), "{log}");
    // Bad orders: out of range, bad body, too large, unknown group.
    let e = r
        .post("/v1/groups/alice:web/scale", r#"{"target": 9}"#)
        .await;
    assert_error(&e, StatusCode::UNPROCESSABLE_ENTITY, "target_out_of_range");
    let e = r.post("/v1/groups/alice:web/scale", r#"{"tgt": 2}"#).await;
    assert_error(&e, StatusCode::BAD_REQUEST, "bad_body");
    let e = r.post("/v1/groups/alice:web/scale", "{").await;
    assert_error(&e, StatusCode::BAD_REQUEST, "bad_body");
    let big = format!(r#"{{"target": 2, "pad": "{}"}}"#, "x".repeat(20_000));
    let e = r.post("/v1/groups/alice:web/scale", &big).await;
    assert_error(&e, StatusCode::PAYLOAD_TOO_LARGE, "body_too_large");
    let e = r.post("/v1/groups/bob:db/pause", "").await;
    assert_error(&e, StatusCode::NOT_FOUND, "unknown_group");
    // Resume: automatic again, target cleared.
    let g = r.post("/v1/groups/alice:web/resume", "").await.json();
    assert_eq!(g["group"]["paused"], false, "{g}");
    assert_eq!(g["group"]["manual_target"], Value::Null);
}

#[tokio::test(start_paused = true)]
async fn reload_with_a_bad_file_keeps_the_old_config_and_keys() {
    let r = rig("reload", "rate_limit_per_minute = 100\n");
    let path = r.dir.join("c.toml");
    std::fs::write(&path, "[http\n").unwrap();
    assert!(r.api.reload_file(&path).is_err());
    std::fs::write(r.dir.join("keys"), "tiny-k3y\n").unwrap();
    std::fs::write(&path, config_text("rate_limit_per_minute = 5\n")).unwrap();
    let e = r.api.reload_file(&path).unwrap_err();
    assert!(
        e.contains("api_keys_file") && !e.contains("tiny-k3y"),
        "{e}"
    );
    let c = r.get("/v1/config").await;
    assert_eq!(c.status, StatusCode::OK);
    assert_eq!(c.json()["http"]["rate_limit_per_minute"], 100);
    // A good reload swaps the keys.
    std::fs::write(r.dir.join("keys"), format!("{KEY2}\n")).unwrap();
    r.api.reload_file(&path).unwrap();
    assert_eq!(r.get("/v1/groups").await.status, StatusCode::UNAUTHORIZED);
    let c = r.call(Method::GET, "/v1/config", Some(KEY2), "").await;
    assert_eq!(c.json()["http"]["rate_limit_per_minute"], 5);
}

/// Buckets (le, cumulative count) in order, and `_count`, of one histogram series.
type Hist = (Vec<(f64, f64)>, Option<f64>);

/// A strict OpenMetrics text parser: families declared before their samples,
/// sample names matching the family type, valid labels and values, no duplicate
/// series, cumulative histogram buckets ending in +Inf == _count, `# EOF` last.
fn parse_exposition(text: &str) -> Result<BTreeMap<String, (String, usize)>, String> {
    let mut families: BTreeMap<String, (String, usize)> = BTreeMap::new();
    let mut current: Option<(String, String)> = None;
    let mut seen = HashSet::new();
    // Per histogram series (labels without `le`): buckets in order, and _count.
    let mut hist: BTreeMap<String, Hist> = BTreeMap::new();
    let valid_name = |n: &str| {
        !n.is_empty()
            && n.chars().enumerate().all(|(i, c)| {
                c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit())
            })
    };
    let lines: Vec<&str> = text.split('\n').collect();
    if lines.last() != Some(&"") || lines.len() < 2 || lines[lines.len() - 2] != "# EOF" {
        return Err("must end with `# EOF\\n`".into());
    }
    for (no, line) in lines[..lines.len() - 2].iter().enumerate() {
        let err = |m: &str| Err(format!("line {}: {m}: {line}", no + 1));
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let (kw, name, arg) = (parts.next(), parts.next(), parts.next());
            let Some(name) = name.filter(|n| valid_name(n)) else {
                return err("bad metadata");
            };
            match (kw, arg) {
                (Some("TYPE"), Some(t)) => {
                    let known = [
                        "counter",
                        "gauge",
                        "histogram",
                        "info",
                        "unknown",
                        "stateset",
                        "summary",
                        "gaugehistogram",
                    ];
                    if !known.contains(&t) || families.contains_key(name) {
                        return err("bad or repeated TYPE");
                    }
                    families.insert(name.to_string(), (t.to_string(), 0));
                    current = Some((name.to_string(), t.to_string()));
                }
                (Some("HELP"), Some(_)) => {}
                (Some("UNIT"), Some(u)) if name.ends_with(&format!("_{u}")) => {}
                _ => return err("bad metadata line"),
            }
            continue;
        }
        let Some((fam, ty)) = &current else {
            return err("sample before TYPE");
        };
        let (series, value) = line.rsplit_once(' ').ok_or("no value")?;
        let v: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v
                .parse()
                .map_err(|_| format!("line {}: bad value {v}", no + 1))?,
        };
        let (name, labels) = match series.split_once('{') {
            Some((n, l)) => (n, l.strip_suffix('}').ok_or("unclosed labels")?),
            None => (series, ""),
        };
        let mut le = None;
        let mut others = Vec::new();
        let mut rest = labels;
        while !rest.is_empty() {
            let (k, r) = rest.split_once("=\"").ok_or("bad label")?;
            if !valid_name(k) {
                return err("bad label name");
            }
            let mut val = String::new();
            let mut chars = r.char_indices();
            let end = loop {
                match chars.next() {
                    Some((_, '\\')) => match chars.next() {
                        Some((_, c @ ('\\' | '"'))) => val.push(c),
                        Some((_, 'n')) => val.push('\n'),
                        _ => return err("bad escape"),
                    },
                    Some((i, '"')) => break i,
                    Some((_, c)) => val.push(c),
                    None => return err("unterminated label value"),
                }
            };
            if k == "le" {
                le = Some(val.clone());
            } else {
                others.push(format!("{k}={val}"));
            }
            rest = &r[end + 1..];
            rest = rest.strip_prefix(',').unwrap_or(rest);
        }
        let suffix = name
            .strip_prefix(fam.as_str())
            .ok_or("sample outside its family")?;
        let ok = match ty.as_str() {
            "counter" => ["_total", "_created"].contains(&suffix),
            "gauge" | "unknown" => suffix.is_empty(),
            "info" => suffix == "_info" && v == 1.0,
            "histogram" => ["_bucket", "_count", "_sum", "_created"].contains(&suffix),
            _ => true,
        };
        if !ok {
            return err("sample name does not fit the family type");
        }
        if !seen.insert(series.to_string()) {
            return err("duplicate series");
        }
        if ty == "histogram" {
            let h = hist.entry(format!("{fam}{others:?}")).or_default();
            if suffix == "_bucket" {
                let le = le.ok_or("bucket without le")?;
                let b = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().map_err(|_| "bad le")?
                };
                if h.0.last().is_some_and(|&(pb, pc)| b <= pb || v < pc) {
                    return err("buckets not cumulative");
                }
                h.0.push((b, v));
            } else if suffix == "_count" {
                h.1 = Some(v);
            }
        }
        families.get_mut(fam).unwrap().1 += 1;
    }
    for (series, (b, count)) in hist {
        if b.last().map(|l| l.0) != Some(f64::INFINITY) || b.last().map(|l| l.1) != count {
            return Err(format!(
                "{series}: +Inf bucket missing or differs from _count"
            ));
        }
    }
    Ok(families)
}

#[tokio::test(start_paused = true)]
async fn metrics_are_valid_exposition_with_the_documented_series() {
    let mut r = rig("metrics", "");
    r.sample(95).await;
    r.sample(95).await;
    r.sample(95).await;
    assert_eq!(r.done.recv().await.unwrap().0, Action::ScaleUp);
    r.api.metrics().observe_proxmox_request("pve1", 0.02);
    r.api.metrics().observe_proxmox_request("pve1", 3.0);
    r.api.metrics().set_proxmox_breaker("pve1", 2);
    r.api.metrics().notify().add_sink("ops");
    let web = Arc::new(Name::parse("alice:web").unwrap());
    r.api.record(&Output::ActionFailed {
        id: 9,
        t: Timestamp(1),
        group: web.clone(),
        action: Action::ScaleDown,
        instance: web,
        error: "boom".into(),
        retry_in: Duration::from_secs(10),
    });
    r.get("/health").await;
    let m = r.get("/metrics").await;
    assert_eq!(m.status, StatusCode::OK);
    assert!(
        m.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    let fams = parse_exposition(&m.text).unwrap_or_else(|e| panic!("{e}\n{}", m.text));
    for s in albatross_autoscale::http::metrics::SERIES {
        let full = format!("albatross_autoscale_{s}");
        let base = full
            .strip_suffix("_total")
            .or_else(|| full.strip_suffix("_info"))
            .unwrap_or(&full);
        assert!(fams.contains_key(base), "{full} missing:\n{}", m.text);
    }
    assert!(m.text.contains("albatross_autoscale_decisions_total{group=\"alice:web\",action=\"scale_up\",reason=\"cpu_high\"} 1"), "{}", m.text);
    assert!(
        m.text
            .contains("albatross_autoscale_group_instances{group=\"alice:web\"} 2"),
        "{}",
        m.text
    );
    // Issue 18: the per-group gauges live only during a scrape (described, empty).
    let kept = r.api.metrics().encode();
    assert!(!kept.contains("group_instances{"), "{kept}");
    assert!(!kept.contains("sample_age_seconds{"), "{kept}");
    assert!(
        kept.contains("# TYPE albatross_autoscale_group_instances gauge"),
        "{kept}"
    );
    assert!(
        m.text
            .contains("albatross_autoscale_proxmox_breaker_state{node=\"pve1\"} 2")
    );
    assert!(
        m.text
            .contains("albatross_autoscale_notify_dropped_total{sink=\"ops\"} 0"),
        "{}",
        m.text
    );
    // The parser rejects what Prometheus would.
    assert!(parse_exposition("x 1\n# EOF\n").is_err());
    assert!(parse_exposition("# TYPE x gauge\nx 1\n").is_err());
    assert!(parse_exposition("# TYPE x counter\nx 1\n# EOF\n").is_err());
    assert!(parse_exposition("# TYPE x gauge\nx{a=\"1} 1\n# EOF\n").is_err());
}

#[tokio::test(start_paused = true)]
async fn openapi_lists_every_route_and_every_route_is_served() {
    let r = rig("openapi", "");
    let doc = r.call(Method::GET, "/openapi.json", None, "").await.json();
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    let want = json!({
        "/health": "get", "/ready": "get", "/version": "get", "/openapi.json": "get",
        "/metrics": "get", "/v1/config": "get", "/v1/groups": "get",
        "/v1/groups/{name}": "get", "/v1/groups/{name}/pause": "post",
        "/v1/groups/{name}/resume": "post", "/v1/groups/{name}/scale": "post",
        "/v1/decisions": "get", "/v1/approvals": "get",
        "/v1/approvals/{id}/approve": "post", "/v1/approvals/{id}/reject": "post",
        "/v1/groups/{name}/history": "get", "/v1/groups/{name}/forecast": "get",
        "/v1/containers": "get", "/v1/containers/{key}": "get",
        "/v1/containers/{key}/pause": "post", "/v1/containers/{key}/resume": "post",
        "/v1/containers/{key}/scale": "post",
    });
    let want = want.as_object().unwrap();
    assert_eq!(
        paths.keys().collect::<HashSet<_>>(),
        want.keys().collect::<HashSet<_>>()
    );
    for (p, m) in want {
        assert!(paths[p][m.as_str().unwrap()].is_object(), "{p} {m}");
        let method = if m == "post" {
            Method::POST
        } else {
            Method::GET
        };
        let body = if p.ends_with("scale") {
            r#"{"target": 1}"#
        } else {
            ""
        };
        let got = r
            .call(method, &p.replace("{name}", "alice:web"), Some(KEY), body)
            .await;
        if p.contains("{id}") {
            // Served, but nothing waits for approval here.
            assert_error(&got, StatusCode::NOT_FOUND, "unknown_approval");
            continue;
        }
        if p.starts_with("/v1/containers") {
            // Served, and off without [[lxc]] (tests/approvals.rs has them on).
            assert_error(&got, StatusCode::NOT_FOUND, "proxmox_off");
            continue;
        }
        if p.ends_with("history") || p.ends_with("forecast") {
            // Served, and off without [history] (tests/history.rs has them on).
            assert_error(&got, StatusCode::NOT_FOUND, "history_off");
            continue;
        }
        assert_eq!(got.status, StatusCode::OK, "{p}: {}", got.text);
    }
    assert_error(
        &r.get("/v2/nothing").await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_error(
        &r.call(Method::DELETE, "/v1/groups", Some(KEY), "").await,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    );
    let v = r.get("/version").await.json();
    assert!(v["revision"].is_string() && v["version"].is_string());
}

/// A follower that falls behind the engine's broadcast counts what it missed and
/// still records what it got (no sleeps: the channel is filled, closed, drained).
#[tokio::test(start_paused = true)]
async fn a_lagging_follower_counts_the_outputs_it_missed() {
    let r = rig("lag", "");
    let (tx, rx) = tokio::sync::broadcast::channel(4);
    let web = Arc::new(Name::parse("alice:web").unwrap());
    for id in 0..10 {
        tx.send(Output::ActionFailed {
            id,
            t: Timestamp(id),
            group: web.clone(),
            action: Action::ScaleDown,
            instance: web.clone(),
            error: "boom".into(),
            retry_in: Duration::from_secs(10),
        })
        .unwrap();
    }
    drop(tx);
    // Returns once the closed channel is drained: 6 overwritten, 4 left.
    r.api.clone().follow(rx).await;
    let m = r.get("/metrics").await;
    for line in [
        "albatross_autoscale_outputs_missed_total{follower=\"api\"} 6",
        "albatross_autoscale_outputs_missed_total{follower=\"history\"} 0",
        "albatross_autoscale_actuation_failures_total{group=\"alice:web\",action=\"scale_down\"} 4",
    ] {
        assert!(m.text.contains(line), "{line} missing:\n{}", m.text);
    }
}
