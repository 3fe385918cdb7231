//! The Proxmox controller against the fake API on 127.0.0.1. Time is explicit: each
//! cycle gets its `now`; nothing sleeps to synchronise.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use albatross_autoscale::config::Config;
use albatross_autoscale::core::Timestamp;
use albatross_autoscale::proxmox::actuator::Tasks;
use albatross_autoscale::proxmox::breaker::State;
use albatross_autoscale::proxmox::client::{Client, Options};
use albatross_autoscale::proxmox::state::CloneState;
use albatross_autoscale::proxmox::{Controller, ControllerSettings};
use albatross_autoscale::sandbox::proxmox::{Ct, Fake, FakeServer};

mod recording;

const SECRET: &str = "3f0c5a52-0000-4000-8000-000000000001";
const TOKEN: &str = "autoscale@pve!scaler";

fn auth() -> String {
    format!("PVEAPIToken={TOKEN}={SECRET}")
}

fn opts(url: &str) -> Options {
    Options {
        url: url.into(),
        token_id: TOKEN.into(),
        max_concurrency: 8,
        request_timeout: Duration::from_secs(5),
        retries: 1,
        retry_base: Duration::from_millis(1),
        breaker_failures: 3,
        breaker_open: Duration::from_secs(30),
    }
}

async fn fake(cts: Vec<(u32, Ct)>) -> FakeServer {
    let mut f = Fake::new(&auth());
    f.node("pve", 65_536, 8_192);
    f.node("pve2", 65_536, 8_192);
    f.cts.extend(cts);
    FakeServer::start(f).await.unwrap()
}

const POLICY: &str = "scale_up_ticks = 2\nscale_down_ticks = 3\nscale_up_cooldown = \"0s\"\nscale_down_cooldown = \"0s\"\nsample_interval = \"10s\"\ndeath_timeout = \"60s\"\n";

fn controller(server: &FakeServer, o: Options, lxc: &str) -> Controller {
    build(server, o, lxc, Duration::from_secs(5), false)
}

fn build(
    server: &FakeServer,
    o: Options,
    lxc: &str,
    task_timeout: Duration,
    dry_run: bool,
) -> Controller {
    let text = format!(
        "[policy]\n{POLICY}[proxmox]\nurl = \"{}\"\ntoken_id = \"{TOKEN}\"\ntoken_secret_env = \"UNUSED\"\nhost_memory_reserve_mib = 1024\n{lxc}",
        server.url()
    );
    let config = Config::parse(&text, Path::new("t.toml")).unwrap();
    let client = Arc::new(Client::new(o, SECRET, None).unwrap());
    let settings = ControllerSettings {
        tag: "albatross-autoscale".into(),
        tasks: Tasks {
            timeout: task_timeout,
            every: Duration::from_millis(1),
        },
        dry_run,
        poll_interval: Duration::from_secs(10),
        state_file: None,
        decision_log: None,
    };
    Controller::new(
        client,
        config.lxc,
        CloneState::default(),
        settings,
        Timestamp::ZERO,
    )
    .unwrap()
}

fn t(s: u64) -> Timestamp {
    Timestamp(s * 1000)
}

fn hot(cores: u32, memory: u32) -> Ct {
    let mut c = Ct::new("pve", "web", cores, memory);
    c.cpu = 0.95;
    c.mem_used_mib = u64::from(memory) / 4;
    c
}

#[tokio::test]
async fn a_hot_container_gains_a_core_with_one_poll_per_cycle() {
    let s = fake(vec![
        (101, hot(2, 2048)),
        (102, Ct::new("pve", "other", 1, 512)),
    ])
    .await;
    let mut c = controller(&s, opts(&s.url()), "[[lxc]]\nvmid = 101\ncores = [1, 8]\n");
    c.cycle(t(10)).await.unwrap();
    assert_eq!(
        s.with(|f| f.cts[&101].cores),
        Some(2),
        "one high sample is not enough"
    );
    let r = c.cycle(t(20)).await.unwrap();
    assert_eq!(r.actions.len(), 1, "{:?}", r.actions);
    assert!(r.actions[0].1.is_ok(), "{:?}", r.actions);
    s.with(|f| {
        assert_eq!(f.cts[&101].cores, Some(3));
        assert_eq!(f.count("GET", "/cluster/resources"), 2);
        assert_eq!(
            f.count("GET", "status/current"),
            0,
            "no per-container metrics calls"
        );
        assert!(
            f.requests.iter().all(|(_, p)| !p.contains("/102/")),
            "unconfigured containers are never touched"
        );
    });
}

#[tokio::test]
async fn a_memory_hungry_container_gains_a_memory_step() {
    let mut ct = Ct::new("pve", "db", 2, 1024);
    ct.mem_used_mib = 950;
    let s = fake(vec![(101, ct)]).await;
    let mut c = controller(
        &s,
        opts(&s.url()),
        "[[lxc]]\nvmid = 101\nmemory_mib = [512, 4096]\nmemory_step_mib = 512\n",
    );
    c.cycle(t(10)).await.unwrap();
    c.cycle(t(20)).await.unwrap();
    assert_eq!(s.with(|f| f.cts[&101].memory), 1536);
}

#[tokio::test]
async fn a_cold_container_shrinks_back_after_the_ticks_never_below_usage_plus_margin() {
    let mut ct = Ct::new("pve", "web", 4, 2048);
    ct.cpu = 0.02;
    ct.mem_used_mib = 300;
    let s = fake(vec![(101, ct)]).await;
    let lxc = "[[lxc]]\nvmid = 101\ncores = [2, 8]\nmemory_mib = [256, 4096]\nmemory_step_mib = 1024\nmemory_margin_mib = 700\n";
    let mut c = controller(&s, opts(&s.url()), lxc);
    for i in 1..=2 {
        c.cycle(t(10 * i)).await.unwrap();
    }
    assert_eq!(
        s.with(|f| (f.cts[&101].cores, f.cts[&101].memory)),
        (Some(4), 2048)
    );
    c.cycle(t(30)).await.unwrap();
    // One step down for CPU; memory 2048 - 1024 = 1024 >= 300 + 700.
    assert_eq!(
        s.with(|f| (f.cts[&101].cores, f.cts[&101].memory)),
        (Some(3), 1024)
    );
    for i in 4..=12 {
        c.cycle(t(10 * i)).await.unwrap();
    }
    // Floors: cores min 2; memory never below usage + margin.
    assert_eq!(
        s.with(|f| (f.cts[&101].cores, f.cts[&101].memory)),
        (Some(2), 1000)
    );
    let r = c.cycle(t(200)).await.unwrap();
    assert!(
        r.blocked
            .iter()
            .map(|(_, w)| w.to_string())
            .any(|w| w.contains("cpu at its minimum") && w.contains("usage + margin")),
        "{:?}",
        r.blocked
    );
}

#[tokio::test]
async fn bounds_hold_and_host_admission_refuses_memory() {
    let mut ct = hot(3, 1024);
    ct.mem_used_mib = 1000;
    let s = fake(vec![(101, ct)]).await;
    // Node: 9 GiB total, 8 GiB used, reserve 1 GiB: no room for memory.
    s.with(|f| f.node("pve", 9_216, 8_192));
    let mut c = controller(&s, opts(&s.url()), "[[lxc]]\nvmid = 101\ncores = [1, 3]\n");
    let mut blocked = Vec::new();
    for i in 1..=6 {
        blocked.extend(c.cycle(t(10 * i)).await.unwrap().blocked);
    }
    assert_eq!(
        s.with(|f| (f.cts[&101].cores, f.cts[&101].memory)),
        (Some(3), 1024)
    );
    assert!(
        blocked
            .iter()
            .map(|(_, w)| w.to_string())
            .any(|w| w.contains("cpu at its maximum (3)") && w.contains("host admission")),
        "{blocked:?}"
    );
    assert_eq!(s.with(|f| f.count("PUT", "/config")), 0);
}

#[tokio::test]
async fn a_digest_conflict_is_read_again_and_retried() {
    let s = fake(vec![(101, hot(2, 2048))]).await;
    s.with(|f| f.concurrent_writes = 1);
    let mut c = controller(&s, opts(&s.url()), "[[lxc]]\nvmid = 101\n");
    c.cycle(t(10)).await.unwrap();
    let r = c.cycle(t(20)).await.unwrap();
    assert!(r.actions[0].1.is_ok(), "{:?}", r.actions);
    s.with(|f| {
        assert_eq!(f.cts[&101].cores, Some(3));
        assert_eq!(
            f.count("PUT", "/lxc/101/config"),
            2,
            "first PUT refused, second after re-read"
        );
    });
}

#[tokio::test]
async fn a_failing_node_trips_the_breaker_without_stalling_others() {
    let mut far = hot(2, 2048);
    far.node = "pve2".into();
    let s = fake(vec![(101, hot(2, 2048)), (201, far)]).await;
    s.with(|f| f.nodes.get_mut("pve2").unwrap().dead = true);
    let o = Options {
        request_timeout: Duration::from_millis(300),
        breaker_failures: 1,
        ..opts(&s.url())
    };
    let lxc = "[[lxc]]\nvmid = 101\n[[lxc]]\nvmid = 201\nname = \"far\"\n";
    let mut c = controller(&s, o, lxc);
    c.cycle(t(10)).await.unwrap();
    assert!(matches!(c.client().breaker("pve2"), State::Open { .. }));
    let started = Instant::now();
    let r = c.cycle(t(20)).await.unwrap();
    assert!(
        started.elapsed() < Duration::from_millis(250),
        "an open breaker refuses at once"
    );
    assert_eq!(
        s.with(|f| f.cts[&101].cores),
        Some(3),
        "the healthy node's container was resized: {r:?}"
    );
    assert!(matches!(c.client().breaker("pve"), State::Closed { .. }));
}

#[tokio::test]
async fn horizontal_scaling_creates_and_later_destroys_only_its_own_clones() {
    let mut tpl = Ct::new("pve", "web-tpl", 1, 512);
    tpl.running = false;
    tpl.template = true;
    let mut foreign = Ct::new("pve", "web-clone-1", 1, 512);
    foreign.tags = "someone-else".into();
    let s = fake(vec![(101, hot(2, 1024)), (150, foreign), (9000, tpl)]).await;
    let lxc = "[[lxc]]\nvmid = 101\nname = \"web\"\nmode = \"horizontal\"\nmax_instances = 2\nscale_down_ticks = 1\nclone_source = 9000\nfull_clone = false\n";
    let mut c = controller(&s, opts(&s.url()), lxc);
    for i in 1..=4 {
        c.cycle(t(10 * i)).await.unwrap();
    }
    let clones: Vec<u32> = s.with(|f| {
        f.cts
            .iter()
            .filter(|(_, ct)| ct.tags.contains("albatross-autoscale"))
            .map(|(v, _)| *v)
            .collect()
    });
    assert_eq!(clones.len(), 1, "max_instances = 2 holds");
    let id = clones[0];
    s.with(|f| {
        let ct = &f.cts[&id];
        assert!(
            ct.running && ct.description.contains("albatross-autoscale"),
            "{ct:?}"
        );
        assert_eq!(ct.name, "web-clone-1");
    });
    assert_eq!(c.clone_state().vmid("lxc:web", "lxc:web-clone-1"), Some(id));
    s.with(|f| f.cts.get_mut(&101).unwrap().cpu = 0.01);
    for i in 5..=7 {
        c.cycle(t(10 * i)).await.unwrap();
    }
    s.with(|f| {
        assert!(!f.cts.contains_key(&id), "our clone is destroyed");
        assert!(f.cts.contains_key(&150) && f.cts.contains_key(&101) && f.cts.contains_key(&9000));
        assert_eq!(f.count("DELETE", "/lxc/150"), 0);
    });
    assert_eq!(c.clone_state().clones("lxc:web").count(), 0);
}

#[tokio::test]
async fn failed_or_hung_clone_tasks_never_exceed_max_instances() {
    let mut tpl = Ct::new("pve", "tpl", 1, 512);
    (tpl.running, tpl.template) = (false, true);
    let s = fake(vec![(101, hot(2, 1024)), (9000, tpl)]).await;
    s.with(|f| {
        f.fail_tasks.insert("vzclone".into());
    });
    let lxc = "[[lxc]]\nvmid = 101\nname = \"web\"\nmode = \"horizontal\"\nmax_instances = 2\nclone_source = 9000\nretry_backoff = \"1s\"\n";
    let mut c = controller(&s, opts(&s.url()), lxc);
    for i in 1..=3 {
        c.cycle(t(10 * i)).await.unwrap();
    }
    assert_eq!(
        s.with(|f| f.cts.len()),
        2,
        "a failed clone task leaves nothing behind"
    );
    assert_eq!(c.clone_state().clones("lxc:web").count(), 0);
    // Now the clone task hangs past the task timeout: the clone stays locked.
    s.with(|f| {
        f.fail_tasks.clear();
        f.hang_tasks.insert("vzclone".into());
    });
    let mut c = build(&s, opts(&s.url()), lxc, Duration::from_millis(30), false);
    for i in 1..=6 {
        c.cycle(t(10 * i)).await.unwrap();
    }
    let extra = s.with(|f| f.cts.keys().filter(|v| **v != 101 && **v != 9000).count());
    assert_eq!(extra, 1, "one hung clone, counted: no second one");
    assert_eq!(
        c.clone_state().clones("lxc:web").count(),
        1,
        "kept in the record"
    );
}

#[tokio::test]
async fn dry_run_changes_nothing() {
    let s = fake(vec![(101, hot(2, 2048))]).await;
    let mut c = build(
        &s,
        opts(&s.url()),
        "[[lxc]]\nvmid = 101\n",
        Duration::from_secs(1),
        true,
    );
    c.cycle(t(10)).await.unwrap();
    c.cycle(t(10)).await.unwrap();
    assert_eq!(
        s.with(|f| (f.cts[&101].cores, f.count("PUT", ""))),
        (Some(2), 0)
    );
}

/// A Proxmox run recorded (`run --record`) replays to the decision log's own
/// decisions and failures, byte for byte: resizes up to the cap, a clone, an
/// operator's pause, a failing resize, and the way back down.
#[tokio::test]
async fn a_recorded_proxmox_run_replays_to_the_same_decisions() {
    use albatross_autoscale::core::Input;
    use albatross_autoscale::daemon::recorder::Recorder;
    use albatross_autoscale::name::Name;
    let mut tpl = Ct::new("pve", "tpl", 1, 512);
    (tpl.running, tpl.template) = (false, true);
    let s = fake(vec![(101, hot(1, 1024)), (9000, tpl)]).await;
    let dir = std::env::temp_dir().join(format!("aa-pve-rec-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (rec, log) = (dir.join("rec.jsonl"), dir.join("decisions.jsonl"));
    let lxc = "[[lxc]]\nvmid = 101\nname = \"web\"\nmode = \"vertical-then-horizontal\"\ncores = [1, 2]\nmax_instances = 3\nscale_down_ticks = 1\nclone_source = 9000\nfull_clone = false\n";
    let text = format!(
        "[policy]\n{POLICY}[proxmox]\nurl = \"{}\"\ntoken_id = \"{TOKEN}\"\ntoken_secret_env = \"UNUSED\"\nhost_memory_reserve_mib = 1024\n{lxc}",
        s.url()
    );
    let config = Config::parse(&text, Path::new("t.toml")).unwrap();
    let settings = ControllerSettings {
        tag: "albatross-autoscale".into(),
        tasks: Tasks {
            timeout: Duration::from_secs(5),
            every: Duration::from_millis(1),
        },
        dry_run: false,
        poll_interval: Duration::from_secs(10),
        state_file: None,
        decision_log: Some(log.clone()),
    };
    let client = Arc::new(Client::new(opts(&s.url()), SECRET, None).unwrap());
    let recorder = Recorder::open(&rec, 1 << 20).unwrap();
    let mut c = Controller::new(
        client,
        config.lxc.clone(),
        CloneState::default(),
        settings,
        Timestamp::ZERO,
    )
    .unwrap()
    .with_cost_ceiling(None)
    .with_recorder(recorder, config.lxc_source.clone(), Timestamp::ZERO);
    c.set_wall_origin(1_764_900_000_000);
    for i in 1..=6 {
        c.cycle(t(10 * i)).await.unwrap();
    }
    let group = Name::parse("lxc:web").unwrap();
    let (out, jobs) = c.control(
        t(65),
        Input::Pause {
            group: group.clone(),
        },
    );
    assert!(jobs.is_empty(), "{out:?}");
    c.control(t(66), Input::Resume { group });
    // Someone else holds the config lock: the next resize fails.
    s.with(|f| {
        f.cts.get_mut(&101).unwrap().cpu = 0.01;
        f.cts.get_mut(&101).unwrap().lock = Some("backup".into());
    });
    for i in 7..=9 {
        c.cycle(t(10 * i)).await.unwrap();
    }
    s.with(|f| f.cts.get_mut(&101).unwrap().lock = None);
    for i in 10..=16 {
        c.cycle(t(10 * i)).await.unwrap();
    }
    drop(c);
    let logged = recording::decision_lines(&std::fs::read_to_string(&log).unwrap());
    let has = |what: &str| logged.iter().any(|l| l.contains(what));
    assert!(
        has("\"action\":\"resize\"") && has("\"action\":\"scale_up\"") && has("scale_down"),
        "resizes, a clone and its removal: {logged:#?}"
    );
    let replayed = recording::replayed(&rec);
    eprintln!("{} decision lines replayed", logged.len());
    assert_eq!(replayed, logged);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `clone_ipv4` for containers: clones of a source with a static `net0` address
/// get the pool's lowest free addresses (gateway and bridge kept); without a pool
/// nothing is cloned, the refusal names the key and holds the group's scale-ups
/// (one failure, not one per backoff).
#[tokio::test]
async fn clones_of_a_static_source_get_pool_addresses_or_are_refused() {
    let net0 = "name=eth0,bridge=vmbr0,ip=10.0.0.5/24,gw=10.0.0.1,type=veth";
    let mk = || {
        let mut tpl = Ct::new("pve", "web-tpl", 1, 512);
        (tpl.running, tpl.template) = (false, true);
        tpl.net0 = net0.into();
        tpl
    };
    let s = fake(vec![(101, hot(2, 1024)), (9000, mk())]).await;
    let lxc = "[[lxc]]\nvmid = 101\nname = \"web\"\nmode = \"horizontal\"\nmax_instances = 3\nclone_source = 9000\nfull_clone = false\nclone_ipv4 = \"10.0.0.20-10.0.0.29\"\n";
    let mut c = controller(&s, opts(&s.url()), lxc);
    for i in 1..=8 {
        c.cycle(t(10 * i)).await.unwrap();
    }
    let mut nets: Vec<String> = s.with(|f| {
        f.cts
            .iter()
            .filter(|(_, ct)| ct.tags.contains("albatross-autoscale"))
            .map(|(_, ct)| ct.net0.clone())
            .collect()
    });
    nets.sort();
    assert_eq!(
        nets,
        [
            "name=eth0,bridge=vmbr0,ip=10.0.0.20/24,gw=10.0.0.1,type=veth",
            "name=eth0,bridge=vmbr0,ip=10.0.0.21/24,gw=10.0.0.1,type=veth"
        ]
    );

    // The same source, no pool: refused once, then held.
    let s = fake(vec![(101, hot(2, 1024)), (9000, mk())]).await;
    let lxc = "[[lxc]]\nvmid = 101\nname = \"web\"\nmode = \"horizontal\"\nmax_instances = 3\nclone_source = 9000\nfull_clone = false\n";
    let mut c = controller(&s, opts(&s.url()), lxc);
    let mut failures = Vec::new();
    for i in 1..=20 {
        let r = c.cycle(t(10 * i)).await.unwrap();
        failures.extend(r.actions.into_iter().filter_map(|(_, r)| r.err()));
    }
    assert_eq!(s.with(|f| f.count("POST", "/clone")), 0);
    assert_eq!(failures.len(), 1, "held after the first: {failures:?}");
    assert!(
        failures[0].contains("clone_ipv4") && failures[0].contains("10.0.0.5/24"),
        "{failures:?}"
    );
}
