//! Notifications over 127.0.0.1: a signed webhook from a real engine decision, a dead
//! webhook that neither slows scaling nor grows without bound, `notify-test`, and a
//! tiny SMTP server for email.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use albatross_autoscale::config::Config;
use albatross_autoscale::core::{Action, Decision, Engine, Input, Options, Policy, Timestamp};
use albatross_autoscale::daemon::decision_log::DecisionLog;
use albatross_autoscale::daemon::ownership::Ownership;
use albatross_autoscale::daemon::{Actuator, Done, Event, Failed, Runner, RunnerSettings};
use albatross_autoscale::name::Name;
use albatross_autoscale::notify::{Counters, Dispatcher, Envelope, Sink, webhook};
use albatross_autoscale::notify::{Notice, Notices};
use axum::body::Bytes;
use axum::http::HeaderMap;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

const SECRET: &str = "hunter2-not-in-logs";
/// Real time allowed for a local delivery before the test fails (never waited on
/// when things work: every wait below ends on a message).
const PATIENCE: Duration = Duration::from_secs(20);

fn dir(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("notify-{name}"));
    std::fs::create_dir_all(&d).unwrap();
    d
}

type Got = mpsc::UnboundedReceiver<(String, HeaderMap, Bytes)>;

/// A webhook receiver: every request's path, headers and body.
async fn receiver() -> (String, Got) {
    answering(axum::http::StatusCode::OK).await
}

/// A receiver that answers every request with `status`.
async fn answering(status: axum::http::StatusCode) -> (String, Got) {
    let (tx, rx) = mpsc::unbounded_channel();
    let app = axum::Router::new().fallback(
        move |uri: axum::http::Uri, headers: HeaderMap, body: Bytes| {
            let tx = tx.clone();
            async move {
                let _ = tx.send((uri.path().to_string(), headers, body));
                status
            }
        },
    );
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(l, app).await });
    (url, rx)
}

/// A webhook that accepts connections and never answers; tells when one arrives.
async fn dead_receiver() -> (String, mpsc::UnboundedReceiver<()>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", l.local_addr().unwrap());
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = l.accept().await {
            held.push(s);
            let _ = tx.send(());
        }
    });
    (url, rx)
}

/// An actuator that succeeds at once and records when each action ran.
#[derive(Default)]
struct Record {
    done: Mutex<Vec<(Action, String, Duration)>>,
    start: Mutex<Option<Instant>>,
}

impl Actuator for Record {
    async fn execute(&self, d: Decision) -> Result<Done, Failed> {
        let at = self
            .start
            .lock()
            .unwrap()
            .map(|s| s.elapsed())
            .unwrap_or_default();
        self.done
            .lock()
            .unwrap()
            .push((d.action, d.instance.to_string(), at));
        Ok(Done::Executed)
    }
}

struct Rig {
    tx: mpsc::Sender<Event>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<Engine>,
    cpu: u64,
}

fn runner(actuator: Arc<Record>, policy: Policy, notices: &Notices, name: &str) -> Rig {
    let d = dir(name);
    let primary = Name::parse("alice:web").unwrap();
    let engine = Engine::new(vec![(primary, policy)], Options::default(), Timestamp::ZERO);
    let settings = RunnerSettings {
        dry_run: false,
        state_file: d.join("state.json"),
        shutdown_grace: Duration::from_secs(30),
    };
    let _ = std::fs::remove_file(d.join("state.json"));
    let log = DecisionLog::open(None).unwrap();
    *actuator.start.lock().unwrap() = Some(Instant::now());
    let r = Runner::new(
        engine,
        actuator,
        log,
        Ownership::default(),
        settings,
        Instant::now(),
    )
    .with_notices(notices.clone());
    let (tx, rx) = mpsc::channel(64);
    let stop = CancellationToken::new();
    let task = tokio::spawn(r.run(rx, stop.clone()));
    Rig {
        tx,
        stop,
        task,
        cpu: 0,
    }
}

impl Rig {
    /// Ten seconds pass; the primary reports `pct` % over them.
    async fn tick(&mut self, pct: u64) {
        tokio::time::sleep(Duration::from_secs(10)).await;
        self.cpu += pct * 100_000;
        let ev = Event::Sample {
            vm: Name::parse("alice:web").unwrap(),
            cpu_us: self.cpu,
            vcpus: None,
            at: Instant::now(),
        };
        self.tx.send(ev).await.unwrap();
    }

    async fn stop(self) {
        self.stop.cancel();
        self.task.await.unwrap();
    }
}

fn config(d: &Path, text: &str) -> Config {
    std::fs::write(d.join("secret"), format!("{SECRET}\n")).unwrap();
    std::fs::write(d.join("token"), "gotify-app-token\n").unwrap();
    Config::parse(text, &d.join("c.toml")).unwrap_or_else(|e| panic!("{e}"))
}

async fn next<T>(rx: &mut mpsc::UnboundedReceiver<T>) -> T {
    tokio::time::timeout(PATIENCE, rx.recv())
        .await
        .expect("nothing arrived")
        .expect("channel closed")
}

#[tokio::test]
async fn an_engine_decision_reaches_a_local_receiver_signed_and_in_each_format() {
    let (url, mut got) = receiver().await;
    let d = dir("signed");
    let c = config(
        &d,
        &format!(
            "[[notify]]\nkind = \"webhook\"\nname = \"plain\"\nurl = \"{url}/plain\"\nsecret_file = \"secret\"\nevents = [\"decision_executed\"]\n\
             [[notify]]\nkind = \"webhook\"\nname = \"slack\"\nurl = \"{url}/slack\"\nformat = \"slack\"\nevents = [\"decision_executed\"]\n\
             [[notify]]\nkind = \"webhook\"\nname = \"gotify\"\nurl = \"{url}/gotify\"\nformat = \"gotify\"\ntoken_file = \"token\"\nevents = [\"decision_executed\"]\n\
             [[notify]]\nkind = \"webhook\"\nname = \"ntfy\"\nurl = \"{url}/ntfy\"\nformat = \"ntfy\"\nevents = [\"decision_executed\"]\n\
             [[notify]]\nkind = \"webhook\"\nname = \"failures-only\"\nurl = \"{url}/failures\"\nevents = [\"action_failed\"]\n"
        ),
    );
    let notices = Notices::default();
    let sinks = Sink::open_all(&c.notify).unwrap();
    let counters = Counters::default();
    let dispatcher = Dispatcher::start(sinks, notices.subscribe(), counters.clone());
    let actuator = Arc::new(Record::default());
    let rig = runner(actuator.clone(), Policy::default(), &notices, "signed");
    // An operator order: the engine decides at once, the actuator runs it, and the
    // runner publishes decision_executed.
    let (reply, _outputs) = tokio::sync::oneshot::channel();
    let order = Input::Scale {
        group: Name::parse("alice:web").unwrap(),
        target: 2,
    };
    rig.tx
        .send(Event::Control {
            input: order,
            reply,
        })
        .await
        .unwrap();
    let mut by_path = std::collections::HashMap::new();
    for _ in 0..4 {
        let (path, headers, body) = next(&mut got).await;
        by_path.insert(path, (headers, body));
    }
    let (h, body) = &by_path["/plain"];
    // The receiver recomputes the signature over the exact bytes it got.
    let sig = h["x-autoscale-signature"].to_str().unwrap();
    assert_eq!(sig, webhook::sign(SECRET.as_bytes(), body));
    assert_ne!(sig, webhook::sign(b"another secret", body));
    assert_eq!(h["content-type"], "application/json");
    assert_eq!(h["x-autoscale-event"], "decision_executed");
    let v: serde_json::Value = serde_json::from_slice(body).unwrap();
    assert_eq!(v["event"], "decision_executed");
    assert_eq!(v["group"], "alice:web");
    assert_eq!(v["instance"], "alice:web-clone-1");
    assert_eq!(v["action"], "scale_up");
    assert!(
        v["reason"].as_str().unwrap().contains("by the operator"),
        "{v}"
    );
    assert_eq!(v["dry_run"], false);
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .starts_with("alice:web: scale_up alice:web-clone-1: ")
    );

    let (h, body) = &by_path["/slack"];
    assert!(
        h.get("x-autoscale-signature").is_none(),
        "no secret, no signature"
    );
    let v: serde_json::Value = serde_json::from_slice(body).unwrap();
    assert!(
        v["text"]
            .as_str()
            .unwrap()
            .contains("scale_up alice:web-clone-1"),
        "{v}"
    );

    let (h, body) = &by_path["/gotify"];
    assert_eq!(h["x-gotify-key"], "gotify-app-token");
    let v: serde_json::Value = serde_json::from_slice(body).unwrap();
    assert_eq!(v["title"], "albatross-autoscale: scale_up in alice:web");
    assert_eq!(v["priority"], 4);

    let (h, body) = &by_path["/ntfy"];
    assert_eq!(h["title"], "albatross-autoscale: scale_up in alice:web");
    assert_eq!(h["tags"], "gear,decision_executed");
    assert!(
        std::str::from_utf8(body)
            .unwrap()
            .contains("scale_up alice:web-clone-1")
    );

    assert_eq!(
        actuator.done.lock().unwrap()[0].0,
        Action::ScaleUp,
        "the actuator ran it"
    );
    rig.stop().await;
    dispatcher.finish(PATIENCE).await;
    for s in ["plain", "slack", "gotify", "ntfy"] {
        assert_eq!(
            (counters.sent(s), counters.failed(s), counters.dropped(s)),
            (1, 0, 0),
            "{s}"
        );
    }
    // Filtered out: nothing for the failures-only sink.
    assert_eq!(counters.sent("failures-only"), 0);
    assert!(got.try_recv().is_err(), "nothing else was sent");
}

fn policy() -> Policy {
    Policy {
        scale_up_threshold: 80,
        scale_down_threshold: 30,
        scale_up_ticks: 2,
        scale_down_ticks: 2,
        scale_up_cooldown: Duration::from_secs(20),
        scale_down_cooldown: Duration::from_secs(20),
        max_instances: 3,
        max_actions_per_hour: 3,
        death_timeout: Duration::from_secs(600),
        ..Policy::default()
    }
}

/// Up, up, down under load swings, then the hourly budget runs out. Returns when
/// each action ran.
async fn scenario(notices: &Notices, name: &str) -> Vec<(Action, String, Duration)> {
    let actuator = Arc::new(Record::default());
    let mut rig = runner(actuator.clone(), policy(), notices, name);
    rig.tick(0).await;
    for pct in [95, 95, 95, 95, 95, 95, 5, 5, 5, 5, 95, 95, 95, 95] {
        rig.tick(pct).await;
    }
    rig.stop().await;
    actuator.done.lock().unwrap().clone()
}

#[tokio::test(start_paused = true)]
async fn a_dead_webhook_does_not_slow_scaling_and_drops_the_oldest() {
    // Baseline: no sink at all.
    let quiet = Notices::default();
    let baseline = scenario(&quiet, "baseline").await;
    assert!(baseline.len() >= 3, "{baseline:?}");

    // The same load with a webhook that accepts and never answers (each attempt
    // waits its full 5-minute timeout, far past the scenario), behind a queue of 2.
    let (url, mut accepted) = dead_receiver().await;
    let d = dir("dead");
    let c = config(
        &d,
        &format!(
            "[[notify]]\nkind = \"webhook\"\nname = \"dead\"\nurl = \"{url}\"\ntimeout = \"5m\"\nqueue = 2\n"
        ),
    );
    let notices = Notices::default();
    let mut tap = notices.subscribe();
    let counters = Counters::default();
    let dispatcher = Dispatcher::start(
        Sink::open_all(&c.notify).unwrap(),
        notices.subscribe(),
        counters.clone(),
    );
    let slowed = scenario(&notices, "dead").await;
    assert_eq!(slowed, baseline, "same actions at the same engine times");
    accepted.recv().await.expect("the sink tried to deliver");

    let mut published = Vec::new();
    while let Ok(n) = tap.try_recv() {
        published.push(n.kind());
    }
    assert!(published.contains(&"decision_executed"), "{published:?}");
    assert!(published.contains(&"ceiling_reached"), "{published:?}");
    assert!(published.len() > 3, "{published:?}");
    // One stuck in delivery, two queued, the oldest of the rest dropped and counted.
    assert_eq!(dispatcher.queued("dead"), 2);
    assert_eq!(counters.dropped("dead"), published.len() as u64 - 3);
    assert_eq!((counters.sent("dead"), counters.failed("dead")), (0, 0));
    dispatcher.finish(Duration::from_secs(1)).await;
}

#[tokio::test(start_paused = true)]
async fn a_refusing_webhook_is_retried_with_backoff_then_given_up_and_counted() {
    // Bound then dropped: connections are refused.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let d = dir("refused");
    let c = config(
        &d,
        &format!(
            "[[notify]]\nkind = \"webhook\"\nname = \"gone\"\nurl = \"http://127.0.0.1:{port}/x\"\n"
        ),
    );
    let sink = Sink::open(&c.notify[0]).unwrap();
    let started = Instant::now();
    let e = Envelope::now(Notice::Test { reason: "t".into() });
    let err = sink.deliver_retrying(&e).await.unwrap_err();
    // Four attempts with 1 s, 2 s and 4 s between them.
    assert_eq!(started.elapsed(), Duration::from_secs(7));
    assert!(!err.contains("/x"), "no URL path in errors: {err}");
    // `attempts = 2`: one retry, 1 s later.
    let twice = config(
        &d,
        &format!(
            "[[notify]]\nkind = \"webhook\"\nurl = \"http://127.0.0.1:{port}/x\"\nattempts = 2\n"
        ),
    );
    let started = Instant::now();
    Sink::open(&twice.notify[0])
        .unwrap()
        .deliver_retrying(&e)
        .await
        .unwrap_err();
    assert_eq!(started.elapsed(), Duration::from_secs(1));

    let notices = Notices::default();
    let counters = Counters::default();
    let dispatcher = Dispatcher::start(vec![sink], notices.subscribe(), counters.clone());
    notices.publish(Notice::Test { reason: "a".into() });
    notices.publish(Notice::Test { reason: "b".into() });
    dispatcher.finish(Duration::from_secs(60)).await;
    assert_eq!((counters.sent("gone"), counters.failed("gone")), (0, 2));
}

#[tokio::test]
async fn a_refused_request_is_not_retried() {
    let (url, mut got) = answering(axum::http::StatusCode::UNAUTHORIZED).await;
    let d = dir("unauthorized");
    let c = config(
        &d,
        &format!("[[notify]]\nkind = \"webhook\"\nurl = \"{url}/hook\"\n"),
    );
    let sink = Sink::open(&c.notify[0]).unwrap();
    let e = Envelope::now(Notice::Test { reason: "t".into() });
    let err = sink.deliver_retrying(&e).await.unwrap_err();
    assert!(err.contains("401"), "{err}");
    next(&mut got).await;
    assert!(
        got.try_recv().is_err(),
        "one attempt: a bad token stays bad"
    );
}

#[tokio::test]
async fn notify_test_reports_each_sink_and_fails_if_one_did() {
    let (url, mut got) = receiver().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let d = dir("cli");
    config(&d, "");
    std::fs::write(
        d.join("c.toml"),
        format!(
            "[[notify]]\nkind = \"webhook\"\nname = \"good\"\nurl = \"{url}/hook\"\nsecret_file = \"secret\"\nevents = [\"action_failed\"]\n\
             [[notify]]\nkind = \"webhook\"\nname = \"bad\"\nurl = \"http://127.0.0.1:{port}/token-in-path\"\ntimeout = \"2s\"\n"
        ),
    )
    .unwrap();
    let cfg = d.join("c.toml");
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_albatross-autoscale"))
            .args(["notify-test", "--config"])
            .arg(&cfg)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert!(
        lines[0].starts_with(&format!("good: ok (webhook:json {url})")),
        "{stdout}"
    );
    assert!(
        lines[1].starts_with("bad: failed (webhook:json http://127.0.0.1:"),
        "{stdout}"
    );
    for secret in [SECRET, "token-in-path"] {
        assert!(
            !stdout.contains(secret) && !stderr.contains(secret),
            "{stdout}{stderr}"
        );
    }
    // The test event ignores the sink's filter and is signed like any other.
    let (_, h, body) = next(&mut got).await;
    assert_eq!(h["x-autoscale-event"], "test");
    assert_eq!(
        h["x-autoscale-signature"].to_str().unwrap(),
        webhook::sign(SECRET.as_bytes(), &body)
    );
}

#[test]
fn validate_names_the_bad_notify_key() {
    let d = dir("validate");
    std::fs::write(
        d.join("bad.toml"),
        "[[notify]]\nkind = \"webhook\"\nurl = \"http://127.0.0.1:9/\"\nevents = [\"decision_executed\", \"x\"]\n",
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_albatross-autoscale"))
        .arg("validate")
        .arg(d.join("bad.toml"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("notify[0].events[1]: unknown event \"x\"; one of decision_executed, action_failed, approval_pending, unreachable, reachable, ceiling_reached, test"),
        "{stderr}"
    );
}

/// Just enough SMTP for one message; returns what followed DATA. With `tls` it
/// offers STARTTLS and goes on over TLS after it.
async fn smtp_server(tls: Option<rustls::ServerConfig>) -> (u16, mpsc::UnboundedReceiver<String>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        s.write_all(b"220 fake ESMTP\r\n").await.unwrap();
        let Some(tls) = tls else {
            smtp_session(s, false, &tx).await;
            return;
        };
        // The client asked for STARTTLS: the same dialogue over TLS.
        if let Some(s) = smtp_session(s, true, &tx).await
            && let Ok(s) = tokio_rustls::TlsAcceptor::from(Arc::new(tls))
                .accept(s)
                .await
        {
            smtp_session(s, false, &tx).await;
        }
    });
    (port, rx)
}

/// One SMTP dialogue on `s`; the stream back when the client sent STARTTLS (and
/// `starttls` offered it).
async fn smtp_session<S>(s: S, starttls: bool, tx: &mpsc::UnboundedSender<String>) -> Option<S>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut s = BufReader::new(s);
    let mut line = String::new();
    loop {
        line.clear();
        if s.read_line(&mut line).await.ok()? == 0 {
            return None;
        }
        let cmd = line.to_ascii_uppercase();
        let reply: &[u8] = if cmd.starts_with("EHLO") && starttls {
            b"250-fake\r\n250-STARTTLS\r\n250 AUTH PLAIN\r\n"
        } else if cmd.starts_with("EHLO") {
            b"250-fake\r\n250 AUTH PLAIN\r\n"
        } else if cmd.starts_with("STARTTLS") && starttls {
            s.write_all(b"220 go ahead\r\n").await.ok()?;
            return Some(s.into_inner());
        } else if cmd.starts_with("AUTH") {
            b"235 ok\r\n"
        } else if cmd.starts_with("DATA") {
            s.write_all(b"354 go\r\n").await.ok()?;
            let mut data = String::new();
            loop {
                let mut l = String::new();
                s.read_line(&mut l).await.ok()?;
                if l == ".\r\n" {
                    break;
                }
                data.push_str(&l);
            }
            let _ = tx.send(data);
            b"250 queued\r\n"
        } else if cmd.starts_with("QUIT") {
            let _ = s.write_all(b"221 bye\r\n").await;
            return None;
        } else {
            // MAIL FROM, RCPT TO, RSET, NOOP
            b"250 ok\r\n"
        };
        s.write_all(reply).await.ok()?;
    }
}

#[tokio::test]
async fn an_email_goes_through_a_local_smtp_server() {
    let (port, mut got) = smtp_server(None).await;
    let d = dir("email");
    std::fs::write(d.join("password"), "smtp-password\n").unwrap();
    let c = config(
        &d,
        &format!(
            "[[notify]]\nkind = \"email\"\nsmtp_host = \"127.0.0.1\"\nsmtp_port = {port}\nstarttls = false\n\
             username = \"autoscale\"\npassword_file = \"password\"\nfrom = \"autoscale@example.org\"\nto = [\"ops@example.org\"]\n"
        ),
    );
    let sink = Sink::open(&c.notify[0]).unwrap();
    let e = Envelope::now(Notice::CeilingReached {
        group: "alice:web".into(),
        ceiling: "budget".into(),
        reason: "max_actions_per_hour (3) used up".into(),
    });
    sink.deliver(&e).await.unwrap();
    let data = next(&mut got).await;
    assert!(
        data.contains("Subject: albatross-autoscale: budget ceiling reached in alice:web"),
        "{data}"
    );
    assert!(data.contains("To: ops@example.org"), "{data}");
    assert!(
        data.contains("alice:web: budget ceiling reached: max_actions_per_hour (3) used up"),
        "{data}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_once_against_fake_proxmox_notifies_the_resize_before_it_exits() {
    use albatross_autoscale::sandbox::proxmox::FakeServer;
    const PVE_SECRET: &str = "3f0c5a52-0000-4000-8000-0000000000dd";
    let pve = FakeServer::one_hot_container(PVE_SECRET, 0.97)
        .await
        .unwrap();
    let (url, mut got) = receiver().await;
    let d = dir("run-once");
    config(&d, "");
    let _ = std::fs::remove_file(d.join("state.json"));
    let cfg = d.join("c.toml");
    std::fs::write(
        &cfg,
        format!(
            "[policy]\nscale_up_ticks = 1\nscale_up_cooldown = \"0s\"\n\
             [proxmox]\nurl = \"{}\"\ntoken_id = \"autoscale@pve!scaler\"\ntoken_secret_env = \"PVE_TEST_SECRET\"\n\
             [daemon]\nstate_file = \"state.json\"\n\
             [[lxc]]\nvmid = 101\ncores = [1, 8]\n\
             [[notify]]\nkind = \"webhook\"\nurl = \"{url}/hook\"\nsecret_file = \"secret\"\nevents = [\"decision_executed\"]\n",
            pve.url()
        ),
    )
    .unwrap();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_albatross-autoscale"))
            .args(["run", "--once", "--config"])
            .arg(&cfg)
            .env("PVE_TEST_SECRET", PVE_SECRET)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(!err.contains(SECRET), "{err}");
    // Delivered before the process exited: it is already in the channel.
    let (_, h, body) = got.try_recv().expect("the notice went out before exit");
    assert_eq!(
        h["x-autoscale-signature"].to_str().unwrap(),
        webhook::sign(SECRET.as_bytes(), &body)
    );
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["event"], "decision_executed");
    assert_eq!(v["action"], "resize");
    assert_eq!(v["instance"], "vmid 101");
    assert!(!v["reason"].as_str().unwrap().is_empty(), "{v}");
}

#[test]
fn secrets_and_url_paths_stay_out_of_debug_and_v1_config() {
    let d = dir("redacted");
    std::fs::write(d.join("password"), "smtp-password\n").unwrap();
    let c = config(
        &d,
        "[[notify]]\nkind = \"webhook\"\nurl = \"https://hooks.example.org/T000/B000/slack-path-token\"\nformat = \"slack\"\nsecret_file = \"secret\"\ntoken_file = \"token\"\n\
         [[notify]]\nkind = \"email\"\nsmtp_host = \"mail.example.org\"\nusername = \"u\"\npassword_file = \"password\"\nfrom = \"a@example.org\"\nto = [\"b@example.org\"]\n",
    );
    let shown = albatross_autoscale::http::api::redacted(&c).to_string();
    let debug = format!("{c:?}");
    let sink = Sink::open(&c.notify[0]).unwrap().kind();
    for text in [&shown, &debug, &sink] {
        for secret in [
            SECRET,
            "slack-path-token",
            "gotify-app-token",
            "smtp-password",
        ] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
    }
    assert!(
        shown.contains("\"url\":\"https://hooks.example.org\""),
        "{shown}"
    );
    assert!(shown.contains("\"signed\":true"), "{shown}");
}

/// A private CA and a `localhost` certificate it signed, as a TLS server config,
/// plus the CA in PEM.
fn private_ca() -> (rustls::ServerConfig, String) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    let config =
        albatross_autoscale::sandbox::server_config(leaf.der().clone(), key.serialize_der())
            .unwrap();
    (config, ca_cert.pem())
}

/// A receiver behind TLS (`tls`) and two webhook sinks to it, each with its extra
/// config lines (`files` are written first). A test notice through the first must
/// arrive; through the second it must not: its error is returned.
async fn first_trusted_second_refused(
    name: &str,
    tls: rustls::ServerConfig,
    files: &[(&str, &str)],
    first: &str,
    second: &str,
) -> String {
    let (plain, mut got) = receiver().await;
    let backend = plain.trim_start_matches("http://").parse().unwrap();
    let (url, _front) = albatross_autoscale::sandbox::tls_front(backend, tls)
        .await
        .unwrap();
    let d = dir(name);
    for (file, text) in files {
        std::fs::write(d.join(file), text).unwrap();
    }
    let c = config(
        &d,
        &format!(
            "[[notify]]\nkind = \"webhook\"\nname = \"first\"\nurl = \"{url}/hook\"\n{first}\n\
             [[notify]]\nkind = \"webhook\"\nname = \"second\"\nurl = \"{url}/hook\"\n{second}\n"
        ),
    );
    let e = Envelope::now(Notice::Test { reason: "t".into() });
    Sink::open(&c.notify[0]).unwrap().deliver(&e).await.unwrap();
    let (path, _, body) = next(&mut got).await;
    assert_eq!(path, "/hook");
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["event"], "test");
    let err = Sink::open(&c.notify[1])
        .unwrap()
        .deliver(&e)
        .await
        .unwrap_err();
    assert!(got.try_recv().is_err(), "nothing got through: {err}");
    err
}

#[tokio::test]
async fn a_webhook_behind_a_private_ca_is_reached_with_ca_and_refused_without() {
    let (tls, ca_pem) = private_ca();
    // The second sink trusts only the built-in roots.
    first_trusted_second_refused(
        "private-ca",
        tls,
        &[("ca.pem", &ca_pem)],
        "ca = \"ca.pem\"",
        "",
    )
    .await;
}

#[test]
fn a_ca_file_without_a_certificate_is_an_error_naming_the_key() {
    let d = dir("bad-ca");
    std::fs::write(d.join("ca.pem"), "not a certificate\n").unwrap();
    let c = config(
        &d,
        "[[notify]]\nkind = \"webhook\"\nurl = \"https://hooks.example.org/x\"\nca = \"ca.pem\"\n",
    );
    let err = Sink::open(&c.notify[0]).err().expect("refused");
    assert!(
        err.contains("ca: ") && err.contains("ca.pem") && err.contains("no PEM certificate"),
        "{err}"
    );
    let problems = Config::parse(
        "[[notify]]\nkind = \"webhook\"\nurl = \"http://hooks.example.org/x\"\nca = \"ca.pem\"\n",
        &d.join("c.toml"),
    )
    .unwrap_err()
    .to_string();
    assert!(
        problems.contains("notify[0].ca: set, but url is not https://"),
        "{problems}"
    );
}

/// A self-signed certificate for `name` made the way `openssl req -x509` makes one
/// (basicConstraints CA:TRUE), as a TLS server config, plus itself in PEM.
/// `expired` puts its validity period in the past.
fn self_signed(name: &str, expired: bool) -> (rustls::ServerConfig, String) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec![name.to_string()]).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    if expired {
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::days(30);
        params.not_after = now - time::Duration::days(1);
    }
    let cert = params.self_signed(&key).unwrap();
    let config =
        albatross_autoscale::sandbox::server_config(cert.der().clone(), key.serialize_der())
            .unwrap();
    (config, cert.pem())
}

#[tokio::test]
async fn a_self_signed_receiver_is_reached_with_its_own_certificate_as_ca() {
    let (tls, own_pem) = self_signed("localhost", false);
    let (_, other_pem) = self_signed("localhost", false);
    // Another self-signed certificate in the file: refused, in plain words.
    let err = first_trusted_second_refused(
        "self-signed",
        tls,
        &[("own.pem", &own_pem), ("other.pem", &other_pem)],
        "ca = \"own.pem\"",
        "ca = \"other.pem\"",
    )
    .await;
    assert!(
        err.contains("certificate not trusted by ca file") && err.contains("other.pem"),
        "{err}"
    );
    assert!(!err.contains("OtherError"), "{err}");
}

#[tokio::test]
async fn a_self_signed_certificate_in_the_ca_file_still_needs_the_right_name_and_dates() {
    let (plain, mut got) = receiver().await;
    let backend: std::net::SocketAddr = plain.trim_start_matches("http://").parse().unwrap();
    let d = dir("self-signed-checks");
    for (file, name, expired, says) in [
        (
            "elsewhere.pem",
            "elsewhere.example",
            false,
            "certificate name does not match host",
        ),
        ("expired.pem", "localhost", true, "certificate expired"),
    ] {
        let (tls, pem) = self_signed(name, expired);
        let (url, _front) = albatross_autoscale::sandbox::tls_front(backend, tls)
            .await
            .unwrap();
        std::fs::write(d.join(file), pem).unwrap();
        let c = config(
            &d,
            &format!("[[notify]]\nkind = \"webhook\"\nurl = \"{url}/hook\"\nca = \"{file}\"\n"),
        );
        let e = Envelope::now(Notice::Test { reason: "t".into() });
        let err = Sink::open(&c.notify[0])
            .unwrap()
            .deliver(&e)
            .await
            .unwrap_err();
        assert!(
            got.try_recv().is_err(),
            "{file}: nothing got through: {err}"
        );
        assert!(err.contains(says), "{file}: {err}");
    }
}

#[tokio::test]
async fn an_email_goes_over_starttls_to_a_server_of_a_private_ca() {
    let (tls, ca_pem) = private_ca();
    let (port, mut got) = smtp_server(Some(tls.clone())).await;
    let d = dir("email-tls");
    std::fs::write(d.join("ca.pem"), ca_pem).unwrap();
    let c = config(
        &d,
        &format!(
            "[[notify]]\nkind = \"email\"\nsmtp_host = \"localhost\"\nsmtp_port = {port}\nca = \"ca.pem\"\n\
             from = \"autoscale@example.org\"\nto = [\"ops@example.org\"]\n"
        ),
    );
    let e = Envelope::now(Notice::Test {
        reason: "tls".into(),
    });
    Sink::open(&c.notify[0]).unwrap().deliver(&e).await.unwrap();
    let data = next(&mut got).await;
    assert!(
        data.contains("Subject: albatross-autoscale: test notification"),
        "{data}"
    );

    // Without `ca` the same server is not trusted: nothing is sent.
    let (port, mut got) = smtp_server(Some(tls)).await;
    let c = config(
        &d,
        &format!(
            "[[notify]]\nkind = \"email\"\nsmtp_host = \"localhost\"\nsmtp_port = {port}\n\
             from = \"autoscale@example.org\"\nto = [\"ops@example.org\"]\n"
        ),
    );
    let err = Sink::open(&c.notify[0])
        .unwrap()
        .deliver(&e)
        .await
        .unwrap_err();
    assert!(got.try_recv().is_err(), "nothing got through: {err}");
    // `ca` without TLS is a config error naming the key.
    let problems = Config::parse(
        "[[notify]]\nkind = \"email\"\nsmtp_host = \"m\"\nstarttls = false\nca = \"ca.pem\"\nfrom = \"a@b.c\"\nto = [\"d@e.f\"]\n",
        &d.join("c.toml"),
    )
    .unwrap_err()
    .to_string();
    assert!(
        problems.contains("notify[0].ca: set, but starttls = false"),
        "{problems}"
    );
}

/// A lifecycle hook's `notify` goes to the sink it names, whatever that sink's
/// `events`, and to no other sink.
#[tokio::test]
async fn a_lifecycle_notice_goes_to_its_sink_only() {
    let (url, mut got) = receiver().await;
    let d = dir("lifecycle");
    let c = config(
        &d,
        &format!(
            "[[notify]]\nkind = \"webhook\"\nname = \"lb\"\nurl = \"{url}/lb\"\nevents = [\"action_failed\"]\n\
             [[notify]]\nkind = \"webhook\"\nname = \"all\"\nurl = \"{url}/all\"\n"
        ),
    );
    let notices = Notices::default();
    let dispatcher = Dispatcher::start(
        Sink::open_all(&c.notify).unwrap(),
        notices.subscribe(),
        Counters::default(),
    );
    notices.publish(Notice::Lifecycle {
        lifecycle: "clone_ready".into(),
        group: "alice:web".into(),
        instance: "alice:web-clone-1".into(),
        address: Some("10.0.42.10".into()),
        sink: "lb".into(),
    });
    notices.publish(Notice::Test {
        reason: "after".into(),
    });
    let mut seen = Vec::new();
    for _ in 0..2 {
        let (path, _, body) = next(&mut got).await;
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        seen.push((path, v));
    }
    seen.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(seen[0].0, "/all");
    assert_eq!(
        seen[0].1["event"], "test",
        "the other sink gets no lifecycle notice"
    );
    assert_eq!(seen[1].0, "/lb");
    assert_eq!(seen[1].1["event"], "lifecycle");
    assert_eq!(seen[1].1["lifecycle"], "clone_ready");
    assert_eq!(seen[1].1["instance"], "alice:web-clone-1");
    assert_eq!(seen[1].1["address"], "10.0.42.10");
    assert!(
        seen[1].1.get("sink").is_none(),
        "routing stays out of the body"
    );
    dispatcher.finish(Duration::from_secs(1)).await;
}
