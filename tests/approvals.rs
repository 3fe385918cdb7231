//! Manual approval end to end: the Proxmox loop (`proxmox::run`) against the fake
//! Proxmox API on 127.0.0.1, and the HTTP API router in process, on tokio's paused
//! clock (polls, task waits and the approval timeout run in virtual time).
//! A scale-up waits (nothing cloned), is approved and executed; the next one is
//! rejected and not executed; the one after is left alone and expires. The same for
//! an albatross group through the engine task (runner), with a re-check that
//! refuses an approval once the group was paused. The same harness serves the
//! Proxmox status view (`GET /v1/containers`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use albatross_autoscale::config::Config;
use albatross_autoscale::core::{Action, Decision, Engine, Options, Timestamp};
use albatross_autoscale::daemon::approvals::{Book, Inbox, SharedBook, State};
use albatross_autoscale::daemon::decision_log::DecisionLog;
use albatross_autoscale::daemon::ownership::Ownership;
use albatross_autoscale::daemon::runner::EngineHandle;
use albatross_autoscale::daemon::{Actuator, Done, Event, Failed, Runner, RunnerSettings};
use albatross_autoscale::http::Api;
use albatross_autoscale::http::limit::ManualClock;
use albatross_autoscale::name::Name;
use albatross_autoscale::notify::Notices;
use albatross_autoscale::proxmox::{self, RunOptions};
use albatross_autoscale::sandbox::proxmox::{Ct, Fake, FakeServer};
use albatross_autoscale::service::{Service, ServiceOptions};
use axum::http::{Method, StatusCode};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

mod common;

const SECRET: &str = "3f0c5a52-0000-4000-8000-000000000001";
const TOKEN: &str = "autoscale@pve!scaler";
const KEY: &str = "approver-key-0123456789";

fn dir(name: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("approvals-{name}"));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

async fn call(api: &Arc<Api>, method: Method, path: &str) -> (StatusCode, Value) {
    let (status, text) = common::api::request(api, method, path, KEY).await;
    let v = if text.starts_with('{') {
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
    } else {
        Value::String(text)
    };
    (status, v)
}

/// `proxmox::run` in a task until the returned token is cancelled.
fn spawn_loop(
    config: &Config,
    opts: RunOptions,
) -> (
    CancellationToken,
    tokio::task::JoinHandle<anyhow::Result<()>>,
) {
    let shutdown = CancellationToken::new();
    let task = tokio::spawn({
        let (config, shutdown) = (config.clone(), shutdown.clone());
        async move { proxmox::run(&config, opts, shutdown).await }
    });
    (shutdown, task)
}

/// A fake Proxmox with a hot container `web` (101) and its template (9000); the
/// token secret and an API key `ops` written into `d`.
async fn hot_web(d: &std::path::Path) -> FakeServer {
    let mut fake = Fake::new(&format!("PVEAPIToken={TOKEN}={SECRET}"));
    fake.node("pve", 65_536, 8_192);
    let mut web = Ct::new("pve", "web", 2, 1024);
    web.cpu = 0.95;
    let mut tpl = Ct::new("pve", "web-tpl", 1, 512);
    (tpl.running, tpl.template) = (false, true);
    fake.cts.extend([(101, web), (9000, tpl)]);
    std::fs::write(d.join("secret"), SECRET).unwrap();
    std::fs::write(d.join("keys"), format!("ops {KEY}\n")).unwrap();
    FakeServer::start(fake).await.unwrap()
}

/// Let virtual time pass in one-second steps until `cond` holds (at most `limit`).
async fn wait_until(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Names of the running containers carrying our tag.
fn clones(s: &FakeServer) -> Vec<String> {
    s.with(|f| {
        f.cts
            .values()
            .filter(|c| c.tags.contains("albatross-autoscale") && c.running)
            .map(|c| c.name.clone())
            .collect()
    })
}

#[tokio::test(start_paused = true)]
async fn pending_approved_executed_then_rejected_then_expired() {
    let d = dir("flow");
    let s = hot_web(&d).await;
    let text = format!(
        "[policy]\nscale_up_ticks = 2\nscale_down_ticks = 1000\nscale_up_cooldown = \"0s\"\n\
         sample_interval = \"10s\"\ndeath_timeout = \"60s\"\nretry_backoff = \"10s\"\n\
         [daemon]\nstate_file = \"state.json\"\ndecision_log = \"decisions.jsonl\"\n\
         [http]\nlisten = \"127.0.0.1:0\"\napi_keys_file = \"keys\"\n\
         [proxmox]\nurl = \"{}\"\ntoken_id = \"{TOKEN}\"\ntoken_secret_file = \"secret\"\n\
         poll_interval = \"10s\"\nstate_file = \"pve-state.json\"\n\
         [[lxc]]\nvmid = 101\nname = \"web\"\nmode = \"horizontal\"\nmax_instances = 4\n\
         clone_source = 9000\nfull_clone = false\n\
         require_approval = [\"scale_up\"]\napproval_timeout = \"5m\"\n",
        s.url()
    );
    let path = d.join("c.toml");
    std::fs::write(&path, text).unwrap();
    let config = Config::load(&path).unwrap();
    assert!(config.lxc[0].policy.require_approval.scale_up);

    let book = SharedBook::new(Book::with_prefix("t"));
    let (tx, inbox) = Inbox::channel();
    let api = Api::new(&config, None, Vec::new(), Arc::new(ManualClock::default())).unwrap();
    api.set_approvals(book.clone(), Some(tx));
    let notices = Notices::default();
    let mut heard = notices.subscribe();
    let opts = RunOptions {
        notices,
        approvals: book.clone(),
        inbox,
        ..RunOptions::default()
    };
    let (shutdown, task) = spawn_loop(&config, opts);
    let mut next_pending = async || loop {
        let n = heard.recv().await.unwrap();
        if n.kind() == "approval_pending" {
            return serde_json::to_value(&n).unwrap();
        }
    };

    // 1. Two hot polls: the scale-up waits; nothing is cloned.
    let n = next_pending().await;
    assert_eq!(n["group"], "lxc:web");
    assert_eq!(n["action"], "scale_up");
    let (st, list) = call(&api, Method::GET, "/v1/approvals").await;
    assert_eq!(st, StatusCode::OK, "{list}");
    assert_eq!(list["count"], 1, "{list}");
    let first = &list["items"][0];
    assert_eq!(first["id"], n["id"]);
    assert_eq!(first["state"], "pending");
    assert_eq!(first["instance"], "lxc:web-clone-1");
    assert_eq!(first["inputs"]["instances"], 1);
    assert!(
        first["inputs"]["avg_cpu_percent"].as_f64().unwrap() > 90.0,
        "{first}"
    );
    assert!(
        first["reason"]
            .as_str()
            .unwrap()
            .contains("consecutive ticks")
    );
    assert!(first["expires_at"].as_str().unwrap().ends_with('Z'));
    let (_, m) = call(&api, Method::GET, "/metrics").await;
    assert!(
        m.as_str()
            .unwrap()
            .contains("albatross_autoscale_approvals_pending 1"),
        "{m}"
    );
    // While it waits, more hot polls issue no duplicate and change nothing.
    tokio::time::sleep(Duration::from_secs(45)).await;
    assert_eq!(book.lock().pending().count(), 1);
    assert_eq!(s.with(|f| f.count("POST", "/clone")), 0);
    assert!(clones(&s).is_empty());

    // 2. Approve: executed by the normal actuator.
    let id1 = first["id"].as_str().unwrap().to_string();
    let (st, v) = call(&api, Method::POST, &format!("/v1/approvals/{id1}/approve")).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["approval"]["state"], "approved");
    assert_eq!(v["approval"]["decided_by"], "ops");
    assert_eq!(v["approval"]["outcome"], "executing");
    wait_until(Duration::from_secs(60), "the approved clone", || {
        clones(&s) == ["web-clone-1"]
    })
    .await;
    let (st, v) = call(&api, Method::POST, &format!("/v1/approvals/{id1}/approve")).await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["error"]["code"], "already_decided");

    // 3. Both instances hot: the next scale-up waits and is rejected.
    s.with(|f| {
        for c in f.cts.values_mut().filter(|c| c.name == "web-clone-1") {
            c.cpu = 0.95;
        }
    });
    let n = next_pending().await;
    assert_eq!(n["instance"], "lxc:web-clone-2");
    let id2 = n["id"].as_str().unwrap().to_string();
    let (st, v) = call(&api, Method::POST, &format!("/v1/approvals/{id2}/reject")).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["approval"]["state"], "rejected");
    assert_eq!(v["approval"]["outcome"], "rejected by ops");
    let (st, v) = call(&api, Method::POST, &format!("/v1/approvals/{id2}/approve")).await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (StatusCode::CONFLICT, Some("already_decided"))
    );
    let (st, v) = call(&api, Method::POST, "/v1/approvals/t-999/approve").await;
    assert_eq!(
        (st, v["error"]["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("unknown_approval"))
    );

    // 4. After the engine's backoff it asks again; left alone, that one expires
    //    after approval_timeout, on the loop's own deadline.
    let n = next_pending().await;
    let asked = Instant::now();
    let id3 = n["id"].as_str().unwrap().to_string();
    assert_ne!(id3, id2);
    wait_until(Duration::from_secs(400), "the expiry", || {
        book.lock()
            .get(&id3)
            .is_some_and(|e| e.state == State::Expired)
    })
    .await;
    let waited = asked.elapsed();
    assert!(
        waited >= Duration::from_secs(300) && waited <= Duration::from_secs(301),
        "{waited:?}"
    );
    assert_eq!(
        clones(&s),
        ["web-clone-1"],
        "rejected and expired: not executed"
    );
    assert_eq!(s.with(|f| f.count("POST", "/clone")), 1);
    let (_, list) = call(&api, Method::GET, "/v1/approvals").await;
    let recent = list["recent"].as_array().unwrap();
    let state_of = |id: &str| {
        recent
            .iter()
            .find(|e| e["id"] == id)
            .map(|e| e["state"].as_str().unwrap().to_string())
    };
    assert_eq!(state_of(&id1).as_deref(), Some("approved"));
    assert_eq!(state_of(&id2).as_deref(), Some("rejected"));
    assert_eq!(state_of(&id3).as_deref(), Some("expired"));

    shutdown.cancel();
    task.await.unwrap().unwrap();

    // 5. The decision log has each step with the approval id, the key and the time.
    let log: Vec<Value> = std::fs::read_to_string(d.join("decisions.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let find = |event: &str, id: &str| {
        log.iter()
            .find(|v| v["event"] == event && v["approval"] == id)
            .unwrap_or_else(|| panic!("no {event} of {id} in {log:#?}"))
    };
    assert_eq!(find("approval_pending", &id1)["action"], "scale_up");
    let approved = find("approved", &id1);
    assert_eq!(approved["key"], "ops");
    assert!(approved["at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(find("rejected", &id2)["key"], "ops");
    find("approval_expired", &id3);
    let failed = |why: &str| {
        log.iter()
            .any(|v| v["event"] == "action_failed" && v["error"] == why)
    };
    assert!(failed("rejected by ops") && failed("approval expired"));
    assert!(
        log.iter()
            .any(|v| v["event"] == "action_done" && v["instance"] == "lxc:web-clone-1")
    );
}

/// Reports every action it carries out.
struct Script(mpsc::UnboundedSender<(Action, String)>);

impl Actuator for Script {
    async fn execute(&self, d: Decision) -> Result<Done, Failed> {
        let _ = self.0.send((d.action, d.instance.to_string()));
        Ok(Done::Executed)
    }
}

#[tokio::test(start_paused = true)]
async fn albatross_runner_holds_rechecks_and_expires() {
    let d = dir("runner");
    std::fs::write(d.join("keys"), format!("ops {KEY}\n")).unwrap();
    let text = "[policy]\nscale_up_threshold = 80\nscale_up_ticks = 2\nscale_up_cooldown = \"0s\"\n\
         retry_backoff = \"10s\"\nrequire_approval = \"all\"\napproval_timeout = \"2m\"\n\
         [daemon]\nstate_file = \"state.json\"\ndecision_log = \"decisions.jsonl\"\n\
         [http]\nlisten = \"127.0.0.1:0\"\napi_keys_file = \"keys\"\n\
         [[group]]\nprimary = \"alice:web\"\nmax_instances = 4\n";
    let path = d.join("c.toml");
    std::fs::write(&path, text).unwrap();
    let config = Config::load(&path).unwrap();
    let groups = config
        .groups
        .iter()
        .map(|g| (g.primary.clone(), (*g.policy).clone()))
        .collect();
    let engine = Engine::new(groups, Options::default(), Timestamp::ZERO);
    let (tx, mut done) = mpsc::unbounded_channel();
    let settings = RunnerSettings {
        dry_run: false,
        state_file: config.daemon.state_file.clone(),
        shutdown_grace: Duration::from_secs(5),
    };
    let log = DecisionLog::open(config.daemon.decision_log.as_deref()).unwrap();
    let book = SharedBook::new(Book::with_prefix("a"));
    let notices = Notices::default();
    let mut heard = notices.subscribe();
    let runner = Runner::new(
        engine,
        Arc::new(Script(tx)),
        log,
        Ownership::default(),
        settings,
        Instant::now(),
    )
    .with_notices(notices)
    .with_approvals(book.clone());
    let (events, rx) = mpsc::channel(64);
    let stop = CancellationToken::new();
    let task = tokio::spawn(runner.run(rx, stop.clone()));
    let api = Api::new(
        &config,
        Some(EngineHandle::new(events.clone())),
        Vec::new(),
        Arc::new(ManualClock::default()),
    )
    .unwrap();
    api.set_approvals(book.clone(), None);
    let mut cpu = 0u64;
    let mut sample = async |pct: u64| {
        tokio::time::advance(Duration::from_secs(10)).await;
        cpu += 10_000 * 10 * pct;
        let ev = Event::Sample {
            vm: Name::parse("alice:web").unwrap(),
            cpu_us: cpu,
            vcpus: None,
            at: Instant::now(),
        };
        events.send(ev).await.unwrap();
    };
    let mut next_pending = async || loop {
        let n = heard.recv().await.unwrap();
        if n.kind() == "approval_pending" {
            return serde_json::to_value(&n).unwrap();
        }
    };

    // Hot: the scale-up waits, the actuator sees nothing; approved: it runs.
    for _ in 0..3 {
        sample(95).await;
    }
    let n = next_pending().await;
    assert_eq!(n["instance"], "alice:web-clone-1");
    let (_, list) = call(&api, Method::GET, "/v1/approvals").await;
    assert_eq!(list["items"][0]["owner"], "albatross", "{list}");
    assert!(done.try_recv().is_err());
    let id1 = n["id"].as_str().unwrap().to_string();
    let (st, v) = call(&api, Method::POST, &format!("/v1/approvals/{id1}/approve")).await;
    assert_eq!(
        (st, &v["approval"]["outcome"]),
        (StatusCode::OK, &Value::from("executing")),
        "{v}"
    );
    assert_eq!(
        done.recv().await.unwrap(),
        (Action::ScaleUp, "alice:web-clone-1".to_string())
    );

    // Still hot: the next one waits; the group is paused before the approval, so
    // the re-check refuses it and nothing runs.
    sample(95).await;
    sample(95).await;
    let n = next_pending().await;
    assert_eq!(n["instance"], "alice:web-clone-2");
    let (st, _) = call(&api, Method::POST, "/v1/groups/alice:web/pause").await;
    assert_eq!(st, StatusCode::OK);
    let id2 = n["id"].as_str().unwrap().to_string();
    let (st, v) = call(&api, Method::POST, &format!("/v1/approvals/{id2}/approve")).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let outcome = v["approval"]["outcome"].as_str().unwrap();
    assert!(
        outcome.starts_with("approved by ops but not executed: paused"),
        "{outcome}"
    );

    // Resumed: asked again after the backoff; left alone, it expires after 2m.
    call(&api, Method::POST, "/v1/groups/alice:web/resume").await;
    for _ in 0..3 {
        sample(95).await;
    }
    let n = next_pending().await;
    let id3 = n["id"].as_str().unwrap().to_string();
    let asked = Instant::now();
    while book
        .lock()
        .get(&id3)
        .is_some_and(|e| e.state == State::Pending)
    {
        assert!(asked.elapsed() < Duration::from_secs(200), "never expired");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert_eq!(book.lock().get(&id3).unwrap().state, State::Expired);
    // The engine counts `approval_timeout` from the decision, i.e. the arrival of
    // the sample that caused it, which the test's 10 s steps put before it noticed.
    let waited = asked.elapsed();
    assert!(
        waited >= Duration::from_secs(110) && waited <= Duration::from_secs(121),
        "{waited:?}"
    );
    // Only the clean-up of clone-1 (it never reported, so it was lost) ran: lost
    // clones are never held.
    while let Ok((action, instance)) = done.try_recv() {
        assert_eq!(
            (action, instance.as_str()),
            (Action::CloneLost, "alice:web-clone-1"),
            "refused and expired: not executed"
        );
    }
    stop.cancel();
    task.await.unwrap();
    let log = std::fs::read_to_string(d.join("decisions.jsonl")).unwrap();
    for want in [
        "\"event\":\"approved\"".to_string(),
        format!("\"approval\":\"{id3}\""),
        "\"error\":\"approval expired\"".to_string(),
        "\"key\":\"ops\"".to_string(),
    ] {
        assert!(log.contains(&want), "{want} not in {log}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_vertical_resize_waits_as_a_scale_up_and_runs_once_approved() {
    let d = dir("resize");
    let mut fake = Fake::new(&format!("PVEAPIToken={TOKEN}={SECRET}"));
    fake.node("pve", 65_536, 8_192);
    let mut db = Ct::new("pve", "db", 2, 1024);
    db.cpu = 0.95;
    fake.cts.insert(101, db);
    let s = FakeServer::start(fake).await.unwrap();
    std::fs::write(d.join("secret"), SECRET).unwrap();
    let text = format!(
        "[policy]\nscale_up_ticks = 2\nrequire_approval = [\"scale_up\"]\n\
         [daemon]\nstate_file = \"state.json\"\ndecision_log = \"decisions.jsonl\"\n\
         [proxmox]\nurl = \"{}\"\ntoken_id = \"{TOKEN}\"\ntoken_secret_file = \"secret\"\n\
         state_file = \"pve-state.json\"\n\
         [[lxc]]\nvmid = 101\nname = \"db\"\ncores = [1, 8]\n",
        s.url()
    );
    let path = d.join("c.toml");
    std::fs::write(&path, text).unwrap();
    let config = Config::load(&path).unwrap();
    let book = SharedBook::new(Book::with_prefix("v"));
    let (tx, inbox) = Inbox::channel();
    let notices = Notices::default();
    let mut heard = notices.subscribe();
    let opts = RunOptions {
        notices,
        approvals: book.clone(),
        inbox,
        ..RunOptions::default()
    };
    let (shutdown, task) = spawn_loop(&config, opts);
    let n = loop {
        let n = heard.recv().await.unwrap();
        if n.kind() == "approval_pending" {
            break serde_json::to_value(&n).unwrap();
        }
    };
    assert_eq!(
        (n["group"].as_str(), n["action"].as_str()),
        (Some("lxc:db"), Some("scale_up"))
    );
    let e = book.lock().get(n["id"].as_str().unwrap()).unwrap().clone();
    assert_eq!(
        e.request.inputs["resize"]["to"]["cores"], 3,
        "{:?}",
        e.request
    );
    tokio::time::sleep(Duration::from_secs(30)).await;
    assert_eq!(
        s.with(|f| (f.cts[&101].cores, f.count("PUT", "/config"))),
        (Some(2), 0)
    );
    assert_eq!(
        book.lock().pending().count(),
        1,
        "no second resize while one waits"
    );
    // Approved: through the inbox, as the API does it.
    let (reply, answer) = tokio::sync::oneshot::channel();
    tx.send(albatross_autoscale::daemon::approvals::Command {
        id: e.id.clone(),
        approve: true,
        key: "ops".into(),
        reply,
    })
    .await
    .unwrap();
    let decided = answer.await.unwrap().unwrap();
    assert_eq!(decided.outcome.as_deref(), Some("executing"));
    wait_until(Duration::from_secs(30), "the resize", || {
        s.with(|f| f.cts[&101].cores) == Some(3)
    })
    .await;
    shutdown.cancel();
    task.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn containers_show_size_usage_bounds_in_force_and_the_clone_group() {
    let d = dir("containers");
    let mut fake = Fake::new(&format!("PVEAPIToken={TOKEN}={SECRET}"));
    fake.node("pve", 65_536, 8_192);
    let mut db = Ct::new("pve", "db", 2, 1024);
    db.cpu = 0.5;
    let mut web = Ct::new("pve", "web", 1, 512);
    web.cpu = 0.25;
    fake.cts.extend([(101, db), (102, web)]);
    let s = FakeServer::start(fake).await.unwrap();
    std::fs::write(d.join("secret"), SECRET).unwrap();
    std::fs::write(d.join("keys"), format!("ops {KEY}\n")).unwrap();
    let text = format!(
        "[policy]\nsample_interval = \"10s\"\n\
         [daemon]\nstate_file = \"state.json\"\n\
         [http]\nlisten = \"127.0.0.1:0\"\napi_keys_file = \"keys\"\n\
         [proxmox]\nurl = \"{}\"\ntoken_id = \"{TOKEN}\"\ntoken_secret_file = \"secret\"\n\
         poll_interval = \"10s\"\nstate_file = \"pve-state.json\"\n\
         [[lxc]]\nvmid = 101\nname = \"db\"\ncores = [1, 8]\nmemory_mib = [512, 4096]\n\
         [[lxc.schedule]]\nname = \"always\"\ncron = \"* * * * *\"\nduration = \"1h\"\ncores = [1, 4]\n\
         [[lxc]]\nvmid = 102\nname = \"web\"\nmode = \"horizontal\"\nmax_instances = 3\n",
        s.url()
    );
    let path = d.join("c.toml");
    std::fs::write(&path, text).unwrap();
    let config = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    let api = Api::new(&config, None, Vec::new(), Arc::new(ManualClock::default())).unwrap();
    let (st, v) = call(&api, Method::GET, "/v1/containers").await;
    assert_eq!(
        (st, &v["error"]["code"]),
        (StatusCode::NOT_FOUND, &Value::from("proxmox_off"))
    );
    let view = proxmox::view::SharedView::default();
    api.set_containers(view.clone());
    let (st, v) = call(&api, Method::GET, "/v1/containers").await;
    assert_eq!(st, StatusCode::SERVICE_UNAVAILABLE, "{v}");
    assert_eq!(v["error"]["code"], "not_polled_yet");

    let opts = RunOptions {
        view: Some(view.clone()),
        ..RunOptions::default()
    };
    let (shutdown, task) = spawn_loop(&config, opts);
    wait_until(Duration::from_secs(30), "the first poll", || {
        view.lock().unwrap().is_some()
    })
    .await;

    let (st, v) = call(&api, Method::GET, "/v1/containers").await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert!(v["polled_at"].as_str().unwrap().ends_with('Z'), "{v}");
    let cts = v["containers"].as_array().unwrap();
    assert_eq!(cts.len(), 2, "{v}");
    let db = &cts[0];
    assert_eq!(
        (
            &db["vmid"],
            &db["name"],
            &db["mode"],
            &db["state"],
            &db["node"]
        ),
        (
            &Value::from(101),
            &Value::from("lxc:db"),
            &Value::from("vertical"),
            &Value::from("running"),
            &Value::from("pve")
        ),
        "{db}"
    );
    assert_eq!(
        (&db["cores"], &db["memory_mib"]),
        (&Value::from(2), &Value::from(1024)),
        "{db}"
    );
    assert_eq!(db["cpu_percent"], 50.0, "{db}");
    let vert = &db["vertical"];
    assert_eq!(vert["cpu_knob"], "cores");
    // The window's cores bound is in force, not the policy's 8.
    assert_eq!(
        (&vert["cpu_min"], &vert["cpu_max"]),
        (&Value::from(1.0), &Value::from(4.0)),
        "{vert}"
    );
    assert_eq!(
        (&vert["memory_min_mib"], &vert["memory_max_mib"]),
        (&Value::from(512), &Value::from(4096))
    );
    assert_eq!(
        vert["active_windows"],
        serde_json::json!(["always"]),
        "{vert}"
    );
    assert!(db["horizontal"].is_null(), "{db}");

    let (st, v) = call(&api, Method::GET, "/v1/containers/102").await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let web = &v["container"];
    assert_eq!(
        (&web["name"], &web["mode"]),
        (&Value::from("lxc:web"), &Value::from("horizontal"))
    );
    assert!(web["vertical"].is_null(), "{web}");
    let group = &web["horizontal"];
    assert_eq!(group["name"], "lxc:web", "{web}");
    assert_eq!(
        (&group["instances"], &group["max_instances"]),
        (&Value::from(1), &Value::from(3)),
        "{group}"
    );
    let (st, v) = call(&api, Method::GET, "/v1/containers/lxc:db").await;
    assert_eq!(
        (st, &v["container"]["vmid"]),
        (StatusCode::OK, &Value::from(101))
    );
    let (st, v) = call(&api, Method::GET, "/v1/containers/nope").await;
    assert_eq!(
        (st, &v["error"]["code"]),
        (StatusCode::NOT_FOUND, &Value::from("unknown_container"))
    );

    // A resize shows on the next poll.
    s.with(|f| f.cts.get_mut(&101).unwrap().cores = Some(3));
    tokio::time::sleep(Duration::from_secs(10)).await;
    wait_until(Duration::from_secs(30), "the new size", || {
        view.lock()
            .unwrap()
            .as_ref()
            .is_some_and(|c| c.containers[0].cores == Some(3))
    })
    .await;
    shutdown.cancel();
    task.await.unwrap().unwrap();
}

/// LXC decisions and evaluations reach what the albatross side's do: the API's
/// `/v1/decisions` and `decisions_total`, and containers are paused and resumed
/// through the API like groups (issue 17: LXC everywhere).
#[tokio::test(start_paused = true)]
async fn lxc_decisions_reach_v1_decisions_and_the_metrics() {
    let d = dir("lxc-decisions");
    let s = hot_web(&d).await;
    let text = format!(
        "[policy]\nscale_up_ticks = 2\nscale_down_ticks = 1000\nscale_up_cooldown = \"0s\"\n\
         sample_interval = \"10s\"\ndeath_timeout = \"60s\"\n\
         [http]\nlisten = \"127.0.0.1:0\"\napi_keys_file = \"keys\"\n\
         [proxmox]\nurl = \"{}\"\ntoken_id = \"{TOKEN}\"\ntoken_secret_file = \"secret\"\n\
         poll_interval = \"10s\"\nstate_file = \"pve-state.json\"\n\
         [[lxc]]\nvmid = 101\nname = \"web\"\nmode = \"horizontal\"\nmax_instances = 2\n\
         clone_source = 9000\nfull_clone = false\n",
        s.url()
    );
    let path = d.join("c.toml");
    std::fs::write(&path, text).unwrap();
    let config = Config::load(&path).unwrap();
    // Started as `run` starts it: the Proxmox loop, the API and its followers wired
    // by the one function.
    let service = Service::start(config, ServiceOptions::default())
        .await
        .unwrap();
    let api = service.api().unwrap().clone();
    // Paused (recommend-only) from the first poll on: hot, but nothing is cloned.
    let polled = async || {
        for _ in 0..30 {
            let (_, v) = call(&api, Method::GET, "/v1/containers").await;
            if v["containers"][0]["state"] == "running" {
                return;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        panic!("no poll in 30 s");
    };
    polled().await;
    let (st, v) = call(&api, Method::POST, "/v1/containers/101/pause").await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["container"], "101");
    let (st, v) = call(&api, Method::POST, "/v1/containers/nope/pause").await;
    assert_eq!(st, StatusCode::NOT_FOUND, "{v}");
    assert_eq!(v["error"]["code"], "unknown_container", "{v}");
    let (st, v) = call(&api, Method::POST, "/v1/containers/lxc:web/scale").await;
    assert_eq!(st, StatusCode::BAD_REQUEST, "{v}");
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert!(clones(&s).is_empty(), "paused: {:?}", clones(&s));
    let (st, v) = call(&api, Method::POST, "/v1/containers/lxc:web/resume").await;
    assert_eq!(st, StatusCode::OK, "{v}");
    wait_until(Duration::from_secs(120), "the clone", || {
        clones(&s) == ["web-clone-1"]
    })
    .await;
    let (st, v) = call(&api, Method::GET, "/v1/decisions").await;
    assert_eq!(st, StatusCode::OK, "{v}");
    let text = v.to_string();
    assert!(
        text.contains("\"group\":\"lxc:web\"") && text.contains("scale_up"),
        "{v}"
    );
    let (_, m) = call(&api, Method::GET, "/metrics").await;
    let m = m.as_str().unwrap().to_string();
    assert!(
        m.lines().any(|l| l.starts_with(
            "albatross_autoscale_decisions_total{group=\"lxc:web\",action=\"scale_up\""
        )),
        "{m}"
    );
    service.stop().await.unwrap();
}
