//! Soak: the daemon against the embedded endpoint for 24 simulated hours (tokio's
//! paused clock, seeded faults): restarts of albatrossd, albatross-stats and the
//! TLS endpoint, silent streams, refused and hung creates, clones dying, and the
//! daemon killed (as by `kill -9`) and started again, mid-action or not. After
//! every 10 s step:
//! * never more than `max_instances` of the group run;
//! * nothing it does not own is destroyed (a foreign `demo:web-clone-9` and the
//!   primary are never destroyed);
//! * every clone of the group that runs is in the ownership record;
//! * after each fault, samples flow and the group is evaluated again within
//!   `stats_idle_timeout` + 3 intervals.

use std::collections::BTreeMap;
use std::time::Duration;

use albatross_autoscale::core::{Action, Output};
use albatross_autoscale::daemon::ownership::Ownership;
use albatross_autoscale::name::Name;
use albatross_autoscale::sandbox::{StatsBody, TestPki};
use tokio::sync::broadcast::error::TryRecvError;
use tokio::time::Instant;

const STEP: Duration = Duration::from_secs(10);
const HOURS: u64 = 24;
const MAX: usize = 4;
/// stats_idle_timeout (3 × 10 s) + 3 intervals.
const RECOVERY: Duration = Duration::from_secs(60);

/// xorshift64*: reproducible faults from a fixed seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Fault {
    AlbatrossdRestart,
    StatsRestart,
    EndpointRestart,
    SilentStreams,
    RefusedCreates,
    HungCreate,
    CloneDies,
    DaemonKilled,
    DaemonKilledMidAction,
}

const FAULTS: [Fault; 9] = [
    Fault::AlbatrossdRestart,
    Fault::StatsRestart,
    Fault::EndpointRestart,
    Fault::SilentStreams,
    Fault::RefusedCreates,
    Fault::HungCreate,
    Fault::CloneDies,
    Fault::DaemonKilled,
    Fault::DaemonKilledMidAction,
];

mod world;

use world::{World, name};

fn policy() -> String {
    format!(
        "sample_interval = \"10s\"\nscale_up_threshold = 75\nscale_up_ticks = 2\nscale_down_threshold = 30\nscale_down_ticks = 3\n\
         scale_up_cooldown = \"30s\"\nscale_down_cooldown = \"60s\"\ndeath_timeout = \"60s\"\nmax_instances = {MAX}\nmax_actions_per_hour = 1000\n\
         retry_backoff = \"10s\"\nretry_backoff_max = \"60s\"\n"
    )
}

const ALBATROSS: &str =
    "reconnect_min = \"1s\"\nreconnect_max = \"10s\"\nrequest_timeout = \"60s\"\n";

/// The group's instances that run (the foreign clone-9 aside).
fn group(w: &World) -> Vec<String> {
    w.endpoint
        .unikernels()
        .iter()
        .map(Name::to_string)
        .filter(|n| n.starts_with("demo:web") && n != "demo:web-clone-9")
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_day_of_faults() {
    let w = world::world(
        &TestPki::default_policy(),
        StatsBody::V27,
        STEP,
        Duration::from_secs(5),
    )
    .await;
    w.load.set(0.5);
    // Someone else's instance named like a clone, on a CPU of its own.
    let mut foreign = world::primary();
    foreign.cpuids = vec![3];
    w.endpoint.add(name("demo:web-clone-9"), foreign);

    let mut rng = Rng(0x005e_ed0f_a1b2_c3d4);
    let (mut daemon, mut rx) = w.daemon(&policy(), ALBATROSS).await;
    let start = Instant::now();
    let mut survived: BTreeMap<Fault, u32> = BTreeMap::new();
    let mut recoveries: Vec<Duration> = Vec::new();
    // The fault being recovered from: (kind, when).
    let mut open: Option<(Fault, Instant)> = None;
    let mut next_fault = start + Duration::from_secs(600);
    let mut next_load = start;
    let mut last_sample: Option<Instant> = None;
    let mut last_eval: Option<Instant> = None;
    let mut decisions = 0u32;
    let steps = HOURS * 3600 / STEP.as_secs();
    for step in 0..steps {
        let now = Instant::now();
        if now >= next_load {
            // A demand between 0.2 and 3.6 vCPUs for 5 to 60 minutes.
            w.load.set((200 + rng.below(3400)) as f64 / 1000.0);
            next_load = now + Duration::from_secs(300 + rng.below(3300));
        }
        if open.is_none() && now >= next_fault {
            let fault = FAULTS[rng.below(FAULTS.len() as u64) as usize];
            match fault {
                Fault::AlbatrossdRestart => w.endpoint.restart_albatrossd(),
                Fault::StatsRestart => w.endpoint.restart_stats(),
                Fault::EndpointRestart => w.endpoint.restart_endpoint(),
                Fault::SilentStreams => w.endpoint.silence_stats_streams(),
                Fault::RefusedCreates => {
                    w.endpoint.fail_next_creates(2, "couldn't reach service");
                    w.load.set(3.5);
                }
                Fault::HungCreate => {
                    w.endpoint.hang_next_creates(1);
                    w.load.set(3.5);
                }
                Fault::CloneDies => {
                    let clones: Vec<String> =
                        group(&w).into_iter().filter(|n| n != "demo:web").collect();
                    if let Some(c) = clones.first() {
                        w.endpoint.kill(&name(c), 1);
                    }
                }
                Fault::DaemonKilled | Fault::DaemonKilledMidAction => {
                    if fault == Fault::DaemonKilledMidAction {
                        // Wait (up to 10 min) for a decision, then kill at once.
                        w.load.set(3.5);
                        let _ = tokio::time::timeout(Duration::from_secs(600), async {
                            loop {
                                match rx.recv().await {
                                    Ok(Output::Decision(d)) if d.action != Action::Promote => {
                                        return;
                                    }
                                    Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                                        return;
                                    }
                                    _ => {}
                                }
                            }
                        })
                        .await;
                    }
                    daemon.kill().await;
                    (daemon, rx) = w.daemon(&policy(), ALBATROSS).await;
                    last_sample = None;
                    last_eval = None;
                }
            }
            *survived.entry(fault).or_default() += 1;
            open = Some((fault, Instant::now()));
            next_fault = Instant::now() + Duration::from_secs(600 + rng.below(1800));
        }

        tokio::time::sleep(STEP).await;

        loop {
            match rx.try_recv() {
                Ok(Output::Sample(s)) if s.vm.to_string() == "demo:web" => {
                    last_sample = Some(Instant::now());
                }
                Ok(Output::Evaluation(e)) if e.group.to_string() == "demo:web" => {
                    last_eval = Some(Instant::now());
                }
                Ok(Output::Decision(_)) => decisions += 1,
                Ok(_) | Err(TryRecvError::Lagged(_)) => {}
                Err(TryRecvError::Empty | TryRecvError::Closed) => break,
            }
        }

        // Invariants.
        let group = group(&w);
        assert!(
            group.len() <= MAX,
            "step {step}: {} instances run: {group:?}",
            group.len()
        );
        let owned = Ownership::load(&w.dir.join("state.json")).unwrap();
        for n in group.iter().filter(|n| *n != "demo:web") {
            assert!(
                owned.owns("demo:web", n),
                "step {step}: {n} runs and is not in the ownership record"
            );
        }
        for h in w.endpoint.history() {
            if h.command == "UnikernelDestroy" {
                let n = h.name.to_string();
                assert!(
                    n != "demo:web" && n != "demo:web-clone-9",
                    "step {step}: destroyed {n}, which it does not own"
                );
            }
        }
        assert!(
            w.endpoint.unikernels().contains(&name("demo:web-clone-9")),
            "the foreign instance is gone"
        );
        if let Some((fault, at)) = open {
            let now = Instant::now();
            let back = last_sample.is_some_and(|t| t > at) && last_eval.is_some_and(|t| t > at);
            if back {
                recoveries.push(now - at);
                open = None;
            } else {
                assert!(
                    now - at <= RECOVERY,
                    "step {step}: no sample and evaluation {:?} after {fault:?}",
                    now - at
                );
            }
        }
    }
    daemon.stop().await;
    let worst = recoveries.iter().max().copied().unwrap_or_default();
    let total: u32 = survived.values().sum();
    eprintln!(
        "soak: {HOURS} h simulated, {total} faults survived {survived:?}, {decisions} decisions, worst recovery {worst:?}"
    );
    assert!(total >= 40, "too few faults: {survived:?}");
    assert!(
        decisions > 10,
        "the group hardly scaled: {decisions} decisions"
    );
    for f in FAULTS {
        assert!(
            survived.contains_key(&f),
            "{f:?} never happened: {survived:?}"
        );
    }
}
