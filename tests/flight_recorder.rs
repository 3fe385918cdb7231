//! The flight recorder: a daemon run against the embedded endpoint (paused clock)
//! with scaling, a policy refusal, an operator pause and resume and an albatrossd
//! restart is recorded with `--record`; `replay --inputs` (the real binary) of the
//! recording prints the decision log's decisions and failures, byte for byte; so
//! does a target-tracking run whose scale-ups come in bursts (`rule = "target"`).

use std::time::Duration;

use albatross_autoscale::core::{Action, Input, Output};
use albatross_autoscale::sandbox::{StatsBody, TestPki};
use albatross_autoscale::service::{Service, ServiceOptions};
use albatross_autoscale::wire::Policy;

mod recording;
mod world;

use world::name;

const POLICY: &str = "sample_interval = \"1s\"\nscale_up_threshold = 75\nscale_up_ticks = 2\nscale_down_threshold = 30\nscale_down_ticks = 3\n\
    scale_up_cooldown = \"3s\"\nscale_down_cooldown = \"5s\"\ndeath_timeout = \"10s\"\nmax_instances = 4\nmax_actions_per_hour = 1000\n\
    retry_backoff = \"2s\"\nretry_backoff_max = \"4s\"\n";

/// Run for `secs` simulated seconds, counting decisions of `action`.
async fn run_for(
    rx: &mut tokio::sync::broadcast::Receiver<Output>,
    secs: u64,
    action: Action,
) -> usize {
    let mut n = 0;
    let _ = tokio::time::timeout(Duration::from_secs(secs), async {
        loop {
            if let Ok(Output::Decision(d)) = rx.recv().await
                && d.action == action
            {
                n += 1;
            }
        }
    })
    .await;
    n
}

#[tokio::test(start_paused = true)]
async fn a_recorded_run_replays_to_the_same_decisions() {
    // Room for one clone only: the second scale-up is refused by the policy.
    let policy = Policy {
        unikernels: 2,
        ..TestPki::default_policy()
    };
    let w = world::world(
        &policy,
        StatsBody::V27,
        Duration::from_secs(1),
        Duration::ZERO,
    )
    .await;
    let rec = w.dir.join("inputs.jsonl");
    let config = w.config(POLICY, "reconnect_min = \"500ms\"\n");
    // Started as `run` starts it: through the one function.
    let opts = ServiceOptions {
        record: Some(rec.clone()),
        ..ServiceOptions::default()
    };
    let d = Service::start(config, opts).await.unwrap();
    let mut rx = d.subscribe().unwrap();
    w.load.set(3.0);
    assert!(run_for(&mut rx, 40, Action::ScaleUp).await >= 1);
    let handle = d.albatross().unwrap().handle();
    let group = name("demo:web");
    handle
        .control(Input::Pause {
            group: group.clone(),
        })
        .await
        .unwrap();
    w.load.set(0.05);
    run_for(&mut rx, 20, Action::ScaleDown).await;
    handle.control(Input::Resume { group }).await.unwrap();
    assert!(run_for(&mut rx, 40, Action::ScaleDown).await >= 1);
    w.endpoint.restart_albatrossd();
    w.load.set(3.0);
    run_for(&mut rx, 60, Action::ScaleUp).await;
    d.stop().await.unwrap();

    let logged = recording::decision_lines(&w.decision_log());
    assert!(
        logged.iter().any(|l| l.contains("albatross policy")),
        "the run had a refusal: {logged:#?}"
    );
    assert!(logged.len() >= 4, "{logged:#?}");
    let replayed = recording::replayed(&rec);
    eprintln!("{} decision lines replayed", logged.len());
    assert_eq!(replayed, logged);
}

#[test]
fn a_recording_without_its_start_says_so() {
    let dir = std::env::temp_dir().join(format!("aa-inputs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("rotated.jsonl");
    std::fs::write(&p, "{\"input\":\"tick\",\"t_ms\":5}\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_albatross-autoscale"))
        .args(["replay", "--inputs"])
        .arg(&p)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("rotated.jsonl") && err.contains("start"),
        "{err}"
    );
    std::fs::write(&p, "{\"input\":\"tick\"}\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_albatross-autoscale"))
        .args(["replay", "--inputs"])
        .arg(&p)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("rotated.jsonl:1:") && err.contains("t_ms"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(start_paused = true)]
async fn a_target_tracking_run_with_bursts_replays_to_the_same_decisions() {
    let w = world::world(
        &TestPki::default_policy(),
        StatsBody::V27,
        Duration::from_secs(1),
        Duration::ZERO,
    )
    .await;
    let rec = w.dir.join("inputs.jsonl");
    let policy = "sample_interval = \"1s\"\nrule = \"target\"\ntarget_cpu_percent = 50\nmax_step_up = 2\n\
        scale_down_stabilization = \"5s\"\nscale_up_cooldown = \"3s\"\nscale_down_cooldown = \"2s\"\n\
        death_timeout = \"10s\"\nmax_instances = 4\nmax_actions_per_hour = 1000\n";
    let config = w.config(policy, "reconnect_min = \"500ms\"\n");
    let opts = ServiceOptions {
        record: Some(rec.clone()),
        ..ServiceOptions::default()
    };
    let d = Service::start(config, opts).await.unwrap();
    let mut rx = d.subscribe().unwrap();
    w.load.set(3.0);
    assert!(run_for(&mut rx, 40, Action::ScaleUp).await >= 2);
    w.load.set(0.05);
    assert!(run_for(&mut rx, 60, Action::ScaleDown).await >= 1);
    d.stop().await.unwrap();

    let logged = recording::decision_lines(&w.decision_log());
    // The runner and the actuator carried out a burst (two scale-ups of one step).
    assert!(
        logged.iter().any(|l| l.contains("scale-up 2 of 2")),
        "{logged:#?}"
    );
    assert!(
        logged
            .iter()
            .any(|l| l.contains("every desired count of the last 5s")),
        "{logged:#?}"
    );
    assert_eq!(recording::replayed(&rec), logged);
}
