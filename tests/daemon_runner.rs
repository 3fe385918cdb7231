//! The engine task under tokio's paused clock with a scripted actuator.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use albatross_autoscale::core::{Action, Decision, Engine, Options, Output, Policy, Timestamp};
use albatross_autoscale::daemon::decision_log::DecisionLog;
use albatross_autoscale::daemon::ownership::Ownership;
use albatross_autoscale::daemon::{Actuator, Done, Event, Failed, Runner, RunnerSettings};
use albatross_autoscale::name::Name;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

#[derive(Default)]
struct Script {
    /// Fail this many creates before succeeding.
    fail_creates: Mutex<u32>,
    done: Mutex<Vec<(Action, String)>>,
}

impl Actuator for Script {
    async fn execute(&self, d: Decision) -> Result<Done, Failed> {
        // An action takes a while, in virtual time.
        tokio::time::sleep(Duration::from_secs(2)).await;
        if d.action == Action::ScaleUp {
            let mut f = self.fail_creates.lock().unwrap();
            if *f > 0 {
                *f -= 1;
                return Err(Failed::Transient("create: policy does not allow".into()));
            }
        }
        self.done
            .lock()
            .unwrap()
            .push((d.action, d.instance.to_string()));
        Ok(Done::Executed)
    }
}

fn tmp(name: &str) -> std::path::PathBuf {
    let d = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("runner-{name}"));
    std::fs::create_dir_all(&d).unwrap();
    d
}

struct Rig {
    tx: mpsc::Sender<Event>,
    outputs: tokio::sync::broadcast::Receiver<Output>,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<Engine>,
    cpu: u64,
    state: std::path::PathBuf,
}

fn rig(script: Arc<Script>, policy: Policy, name: &str) -> Rig {
    let dir = tmp(name);
    let state = dir.join("state.json");
    let _ = std::fs::remove_file(&state);
    let primary = Name::parse("alice:web").unwrap();
    let engine = Engine::new(vec![(primary, policy)], Options::default(), Timestamp::ZERO);
    let settings = RunnerSettings {
        dry_run: false,
        state_file: state.clone(),
        shutdown_grace: Duration::from_secs(30),
    };
    let log = DecisionLog::open(Some(&dir.join("decisions.jsonl"))).unwrap();
    let runner = Runner::new(
        engine,
        script,
        log,
        Ownership::default(),
        settings,
        Instant::now(),
    );
    let outputs = runner.subscribe();
    let (tx, rx) = mpsc::channel(64);
    let stop = CancellationToken::new();
    let task = tokio::spawn(runner.run(rx, stop.clone()));
    Rig {
        tx,
        outputs,
        stop,
        task,
        cpu: 0,
        state,
    }
}

impl Rig {
    /// Ten seconds pass; the primary reports `pct` % over them.
    async fn tick(&mut self, vm: &str, pct: u64) {
        tokio::time::sleep(Duration::from_secs(10)).await;
        self.cpu += pct * 100_000;
        let ev = Event::Sample {
            vm: Name::parse(vm).unwrap(),
            cpu_us: self.cpu,
            vcpus: None,
            at: Instant::now(),
        };
        self.tx.send(ev).await.unwrap();
    }
    fn decisions(&mut self) -> Vec<String> {
        let mut v = Vec::new();
        while let Ok(o) = self.outputs.try_recv() {
            match o {
                Output::Decision(d) => v.push(format!("{} {}", d.action.as_str(), d.instance)),
                Output::ActionFailed { action, .. } => {
                    v.push(format!("failed {}", action.as_str()))
                }
                _ => {}
            }
        }
        v
    }
}

fn policy() -> Policy {
    Policy {
        scale_up_threshold: 80,
        scale_up_ticks: 2,
        scale_down_ticks: 2,
        scale_up_cooldown: Duration::from_secs(30),
        scale_down_cooldown: Duration::from_secs(30),
        max_instances: 2,
        death_timeout: Duration::from_secs(600),
        retry_backoff: Duration::from_secs(15),
        ..Policy::default()
    }
}

#[tokio::test(start_paused = true)]
async fn scale_up_then_down_with_the_ownership_record_kept() {
    let script = Arc::new(Script::default());
    let mut r = rig(script.clone(), policy(), "updown");
    r.tick("alice:web", 0).await;
    for _ in 0..3 {
        r.tick("alice:web", 95).await;
    }
    assert_eq!(r.decisions(), ["scale_up alice:web-clone-1"]);
    tokio::time::sleep(Duration::from_secs(3)).await; // the create finishes
    let owned = Ownership::load(&r.state).unwrap();
    assert!(owned.owns("alice:web", "alice:web-clone-1"));
    for _ in 0..6 {
        r.tick("alice:web", 5).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(r.decisions(), ["scale_down alice:web-clone-1"]);
    let done = script.done.lock().unwrap().clone();
    assert_eq!(
        done,
        [
            (Action::ScaleUp, "alice:web-clone-1".to_string()),
            (Action::ScaleDown, "alice:web-clone-1".to_string())
        ]
    );
    assert_eq!(
        Ownership::load(&r.state)
            .unwrap()
            .owned("alice:web")
            .count(),
        0
    );
    r.stop.cancel();
    r.task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn failed_creates_back_off_and_never_exceed_max() {
    let script = Arc::new(Script {
        fail_creates: Mutex::new(2),
        ..Script::default()
    });
    let mut r = rig(script.clone(), policy(), "fail");
    r.tick("alice:web", 0).await;
    for _ in 0..12 {
        r.tick("alice:web", 99).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let d = r.decisions();
    assert_eq!(
        d,
        [
            "scale_up alice:web-clone-1",
            "failed scale_up",
            "scale_up alice:web-clone-1",
            "failed scale_up",
            "scale_up alice:web-clone-1",
        ],
        "two failures, each backed off, then success; max 2 stops further clones"
    );
    let engine = {
        r.stop.cancel();
        r.task.await.unwrap()
    };
    assert_eq!(engine.groups()[0].members().count(), 2);
    assert!(
        Ownership::load(&r.state)
            .unwrap()
            .owns("alice:web", "alice:web-clone-1")
    );
}

#[tokio::test(start_paused = true)]
async fn shutdown_waits_for_the_action_in_flight() {
    let script = Arc::new(Script::default());
    let mut r = rig(
        script.clone(),
        Policy {
            scale_up_ticks: 1,
            ..policy()
        },
        "shutdown",
    );
    r.tick("alice:web", 0).await;
    r.tick("alice:web", 99).await;
    tokio::task::yield_now().await;
    assert_eq!(r.decisions(), ["scale_up alice:web-clone-1"]);
    r.stop.cancel(); // the create is still running (it takes 2 s)
    let engine = r.task.await.unwrap();
    assert_eq!(
        script.done.lock().unwrap().len(),
        1,
        "the in-flight create was allowed to finish"
    );
    let clone = engine.groups()[0]
        .members()
        .find(|m| m.name.to_string() == "alice:web-clone-1")
        .unwrap();
    // Created: booting until its first sample.
    assert!(
        matches!(
            clone.state,
            albatross_autoscale::core::MemberState::Booting(_)
        ),
        "{:?}",
        clone.state
    );
}
