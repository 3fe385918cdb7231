//! Readiness, drain and lifecycle hooks end to end (issue 16 items 4 and 5): the
//! daemon against the in-process albatross endpoint over TLS on 127.0.0.1, a real
//! TCP listener as the clone's health check, real child processes as hooks. In
//! real time (child processes and connects do not run on tokio's paused clock);
//! every wait is for an output or a file line, with a deadline.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use albatross_autoscale::core::lifecycle::Event;
use albatross_autoscale::core::{Action, Output, Reason};
use albatross_autoscale::daemon::albatross::{Daemon, RunOptions};
use albatross_autoscale::name::Name;
use albatross_autoscale::sandbox::{StatsBody, TestPki};
use tokio::sync::broadcast::Receiver;

mod world;

use world::{WAIT, World, until};

/// `demo:web` with a static address (clones get theirs from the pool, with its
/// prefix), reporting every 100 ms.
async fn world() -> World {
    let w = world::world(
        &TestPki::default_policy(),
        StatsBody::V27,
        Duration::from_millis(100),
        Duration::from_millis(50),
    )
    .await;
    let mut c = world::primary();
    c.argv = vec![
        "--ipv4=10.0.42.2/8".into(),
        "--ipv4-gateway=10.0.42.1".into(),
    ];
    w.endpoint.add(world::name("demo:web"), c);
    w
}

fn q(p: &Path) -> String {
    format!("{:?}", p.display().to_string())
}

/// A hook program: appends `$AA_EVENT $AA_INSTANCE $AA_ADDRESS $AA_GROUP $1`
/// to `hooks.log`, then runs `tail` (shell code of the test, not of the config:
/// the config names the program and its arguments).
fn script(w: &World, name: &str, tail: &str) -> PathBuf {
    let log = w.dir.join("hooks.log");
    let path = w.dir.join(name);
    std::fs::write(
        &path,
        format!(
            "#!/bin/sh\necho \"$AA_EVENT $AA_INSTANCE $AA_ADDRESS $AA_GROUP $1\" >> {}\n{tail}\n",
            q(&log)
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn hook_lines(w: &World) -> Vec<String> {
    std::fs::read_to_string(w.dir.join("hooks.log"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// The daemon with the test's policy plus `extra`; the one clone address is
/// 127.0.0.1, where the health checks connect.
async fn daemon(w: &World, extra: &str) -> (Daemon, Receiver<Output>) {
    let policy = format!(
        "sample_interval = \"100ms\"\nscale_up_threshold = 75\nscale_up_ticks = 2\nscale_down_threshold = 30\nscale_down_ticks = 3\n\
         scale_up_cooldown = \"300ms\"\nscale_down_cooldown = \"300ms\"\ndeath_timeout = \"3s\"\nmax_instances = 2\nmax_actions_per_hour = 100\n\
         retry_backoff = \"2s\"\nretry_backoff_max = \"4s\"\n{extra}"
    );
    let config = w.config_with(
        &policy,
        "reconnect_min = \"50ms\"\nreconnect_max = \"200ms\"",
        "clone_ipv4 = \"127.0.0.1-127.0.0.1\"",
    );
    let opts = RunOptions {
        shutdown_grace: Duration::from_secs(10),
        ..RunOptions::default()
    };
    let d = Daemon::start(config, opts).await.unwrap();
    let rx = d.subscribe();
    (d, rx)
}

/// Wait until `hooks.log` has `n` lines.
async fn hooks_ran(w: &World, n: usize) -> Vec<String> {
    tokio::time::timeout(WAIT, async {
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        loop {
            let l = hook_lines(w);
            if l.len() >= n {
                return l;
            }
            tick.tick().await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("hooks ran: {:?}", hook_lines(w)))
}

/// Wait for a decision of `action`; its instance and reason.
async fn decided(rx: &mut Receiver<Output>, action: Action) -> (String, Reason, u64) {
    until(rx, |o| match o {
        Output::Decision(d) if d.action == action => {
            Some((d.instance.to_string(), d.reason.clone(), d.t.0))
        }
        _ => None,
    })
    .await
}

async fn member_state(d: &Daemon, vm: &str) -> String {
    let s = d.handle().status().await.unwrap();
    s.groups[0]
        .members
        .iter()
        .find(|m| m.name == vm)
        .map_or("absent".into(), |m| m.state.to_string())
}

/// Wait until `vm`'s state is `want`: the hook's own output lands before the
/// daemon has taken its answer in.
async fn state_becomes(d: &Daemon, vm: &str, want: &str) {
    let last = tokio::time::timeout(WAIT, async {
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        loop {
            if member_state(d, vm).await == want {
                return;
            }
            tick.tick().await;
        }
    })
    .await;
    if last.is_err() {
        panic!("{vm} never became {want}: {}", member_state(d, vm).await);
    }
}

const CLONE: &str = "demo:web-clone-1";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clone_joins_after_its_health_check_and_on_ready_and_leaves_after_drain() {
    let w = world().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let ready = script(&w, "lb-add", "");
    let draining = script(&w, "lb-remove", "");
    let removed = script(&w, "dns-remove", "");
    let extra = format!(
        "health_check = \"tcp:{port}\"\nready_timeout = \"20s\"\ndrain_period = \"2s\"\n\
         on_ready = {{ exec = [{}, \"add\"] }}\non_draining = {{ exec = [{}, \"remove\"], timeout = \"5s\" }}\non_removed = {{ exec = [{}] }}\n",
        q(&ready),
        q(&draining),
        q(&removed)
    );
    let (d, mut rx) = daemon(&w, &extra).await;
    w.load.set(1.8);
    decided(&mut rx, Action::ScaleUp).await;
    // The check runs at the clone's first sample; on_ready once it passed.
    let lines = hooks_ran(&w, 1).await;
    assert_eq!(lines[0], format!("ready {CLONE} 127.0.0.1 demo:web add"));
    state_becomes(&d, CLONE, "ready").await;
    // The decision log has the hook run with what ran.
    let log = std::fs::read_to_string(w.dir.join("decisions.jsonl")).unwrap();
    let hook: serde_json::Value = log
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|v| v["event"] == "hook")
        .expect("a hook line");
    assert_eq!(hook["lifecycle"], "ready");
    assert_eq!(hook["ok"], true);
    assert_eq!(hook["runs"][0]["run"], "health_check");
    assert_eq!(hook["runs"][0]["target"], format!("127.0.0.1:{port}"));
    assert_eq!(hook["runs"][1]["run"], "exec");

    // Scale-down: on_draining first, the destroy after drain_period (long enough
    // that the clone is still there when the hook's line is read), on_removed last.
    w.load.set(0.1);
    let (_, _, down) = decided(&mut rx, Action::ScaleDown).await;
    let lines = hooks_ran(&w, 2).await;
    assert_eq!(
        lines[1],
        format!("draining {CLONE} 127.0.0.1 demo:web remove")
    );
    assert!(
        w.endpoint
            .unikernels()
            .iter()
            .any(|n| n.to_string() == CLONE)
    );
    let drained = until(&mut rx, |o| match o {
        Output::Drained { t, .. } => Some(*t),
        _ => None,
    })
    .await;
    assert!(drained.0 >= down + 2000, "{drained:?} {down:?}");
    let lines = hooks_ran(&w, 3).await;
    assert_eq!(lines[2], format!("removed {CLONE} 127.0.0.1 demo:web "));
    assert!(
        !w.endpoint
            .unikernels()
            .iter()
            .any(|n| n.to_string() == CLONE)
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_health_check_that_never_passes_destroys_the_clone_and_backs_off() {
    let w = world().await;
    // A port nothing listens on: every connect is refused.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let extra = format!("health_check = \"tcp:{port}\"\nready_timeout = \"1s\"\n");
    let (d, mut rx) = daemon(&w, &extra).await;
    w.load.set(1.8);
    let failed_check = until(&mut rx, |o| match o {
        Output::Lifecycle(h) if h.event == Event::Ready => Some(h.attempt),
        _ => None,
    })
    .await;
    assert_eq!(failed_check, 1);
    let (instance, reason, _) = decided(&mut rx, Action::CloneLost).await;
    assert_eq!(instance, CLONE);
    assert!(
        matches!(reason, Reason::NotReady { checks, .. } if checks >= 1),
        "{reason:?}"
    );
    // Destroyed on the endpoint; the next scale-up waits for the backoff (2 s).
    let given_up = tokio::time::Instant::now();
    decided(&mut rx, Action::ScaleUp).await;
    assert!(
        given_up.elapsed() >= Duration::from_millis(1500),
        "retried after {:?}",
        given_up.elapsed()
    );
    let log = std::fs::read_to_string(w.dir.join("decisions.jsonl")).unwrap();
    assert!(
        log.contains("connection refused") || log.contains("Connection refused"),
        "{log}"
    );
    d.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_on_draining_is_killed_at_its_timeout_and_the_destroy_goes_ahead() {
    let w = world().await;
    let hang = script(&w, "hang", "exec sleep 600");
    let extra = format!(
        "on_draining = {{ exec = [{}], timeout = \"1s\" }}\n",
        q(&hang)
    );
    let (d, mut rx) = daemon(&w, &extra).await;
    w.load.set(1.8);
    decided(&mut rx, Action::ScaleUp).await;
    w.load.set(0.1);
    decided(&mut rx, Action::ScaleDown).await;
    let started = tokio::time::Instant::now();
    until(&mut rx, |o| match o {
        Output::Drained { .. } => Some(()),
        _ => None,
    })
    .await;
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    let log = std::fs::read_to_string(w.dir.join("decisions.jsonl")).unwrap();
    assert!(log.contains("did not finish within 1s; killed"), "{log}");
    tokio::time::timeout(WAIT, async {
        while w
            .endpoint
            .unikernels()
            .iter()
            .any(|n| n.to_string() == CLONE)
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("destroyed after the hook timed out");
    d.stop().await;
}

/// A health check that never answers (a listener whose accept queue is full:
/// the kernel drops further SYNs) fails at `health_check_timeout`, naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_health_check_that_never_answers_fails_at_its_timeout() {
    use albatross_autoscale::core::lifecycle::Hooks;
    use albatross_autoscale::daemon::hooks;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(1).unwrap();
    let to = listener.local_addr().unwrap();
    // Fill the accept queue (never accepted) until a connect gets no answer.
    let mut held = Vec::new();
    let mut full = false;
    for _ in 0..64 {
        match tokio::time::timeout(
            Duration::from_millis(300),
            tokio::net::TcpStream::connect(to),
        )
        .await
        {
            Ok(Ok(s)) => held.push(s),
            Ok(Err(e)) => panic!("connect: {e}"),
            Err(_) => {
                full = true;
                break;
            }
        }
    }
    assert!(
        full,
        "the kernel kept accepting connections into a full queue"
    );
    let hooks = Hooks {
        health_check: Some(to.port()),
        health_check_timeout: Duration::from_secs(1),
        ..Hooks::default()
    };
    let job = ready_job(hooks, to.ip());
    let started = tokio::time::Instant::now();
    let done = hooks::run(job).await;
    let took = started.elapsed();
    let err = done.outcome.unwrap_err();
    assert!(err.contains("no answer within 1s"), "{err}");
    assert!(
        took >= Duration::from_millis(950) && took < Duration::from_secs(5),
        "{took:?}"
    );
    assert_eq!(done.runs[0]["run"], "health_check");
    assert_eq!(done.runs[0]["ok"], false);
    drop(held);
}

/// The readiness step of the one clone, at `address`, with `hooks`.
fn ready_job(
    hooks: albatross_autoscale::core::lifecycle::Hooks,
    address: std::net::IpAddr,
) -> albatross_autoscale::daemon::hooks::HookJob {
    use albatross_autoscale::core::Timestamp;
    use albatross_autoscale::core::lifecycle::Hook;
    albatross_autoscale::daemon::hooks::HookJob {
        hook: Hook {
            t: Timestamp(0),
            group: Arc::new(Name::parse("demo:web").unwrap()),
            vm: Arc::new(Name::parse(CLONE).unwrap()),
            event: Event::Ready,
            attempt: 1,
        },
        hooks: Arc::new(hooks),
        address: Some(address),
        notices: Default::default(),
    }
}

/// The readiness step running `argv` as `on_ready` (telling `notify`), at 127.0.0.1.
fn on_ready_job(
    argv: Vec<String>,
    notify: Option<&str>,
) -> albatross_autoscale::daemon::hooks::HookJob {
    use albatross_autoscale::core::lifecycle::{HookCommand, Hooks};
    let hooks = Hooks {
        on_ready: Some(HookCommand {
            exec: Some(argv),
            notify: notify.map(str::to_string),
            timeout: Duration::from_secs(10),
        }),
        ..Hooks::default()
    };
    ready_job(hooks, "127.0.0.1".parse().unwrap())
}

/// A hook that writes much to stderr is not killed by a closed pipe; one that
/// fails keeps the tail of its stderr in the error, and its sink hears nothing;
/// the daemon's environment does not reach it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hooks_run_with_their_own_environment_and_stderr_is_bounded() {
    use albatross_autoscale::daemon::hooks;
    let w = world().await;
    let chatty = script(
        &w,
        "chatty",
        "head -c 200000 /dev/zero | tr '\\\\0' x >&2\nexit 0",
    );
    let done = hooks::run(on_ready_job(vec![chatty.display().to_string()], None)).await;
    assert_eq!(done.outcome, Ok(()), "{:?}", done.runs);

    let failing = script(
        &w,
        "failing",
        "echo \"no backend for $AA_INSTANCE\" >&2\nexit 3",
    );
    let job = on_ready_job(vec![failing.display().to_string()], Some("lb"));
    let mut heard = job.notices.subscribe();
    let done = hooks::run(job).await;
    let err = done.outcome.unwrap_err();
    assert!(err.contains("exit status: 3"), "{err}");
    assert!(err.contains(&format!("no backend for {CLONE}")), "{err}");
    assert!(
        heard.try_recv().is_err(),
        "a failed on_ready is not announced"
    );

    // What the test process has (cargo sets these) the hook does not get.
    let ours: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| k.starts_with("CARGO") || k == "HOME")
        .collect();
    assert!(!ours.is_empty());
    let env = script(&w, "env", &format!("env > {}", q(&w.dir.join("env.txt"))));
    let done = hooks::run(on_ready_job(vec![env.display().to_string()], None)).await;
    assert_eq!(done.outcome, Ok(()));
    let seen = std::fs::read_to_string(w.dir.join("env.txt")).unwrap();
    for (k, v) in &ours {
        assert!(!seen.contains(&format!("{k}={v}")), "{k} leaked: {seen}");
    }
    assert!(
        seen.contains("AA_EVENT=ready") && seen.contains("AA_ADDRESS=127.0.0.1"),
        "{seen}"
    );
}
