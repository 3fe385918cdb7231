//! The real daemon against the in-process albatross endpoint over TLS on
//! 127.0.0.1, on tokio's paused clock (the SIGHUP test runs the binary, in real
//! time). Tests wait for engine outputs (with a deadline), never sleep to
//! synchronise.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use albatross_autoscale::config::Config;
use albatross_autoscale::core::{Action, Output};
use albatross_autoscale::daemon::albatross::{Daemon, RunOptions};
use albatross_autoscale::daemon::ownership::Ownership;
use albatross_autoscale::name::Name;
use albatross_autoscale::sandbox::{Endpoint, EndpointConfig, PkiFiles, TestPki};
use albatross_autoscale::wire::{BlockSpec, UnikernelConfig};
use tokio::sync::broadcast::Receiver;

mod world;

use world::{WAIT, until};

/// The demand of `demo:web` in milli-vCPUs, changed by the tests.
#[derive(Clone, Default)]
struct Load(Arc<AtomicU64>);

impl Load {
    fn set(&self, vcpus: f64) {
        self.0.store((vcpus * 1000.0) as u64, Ordering::Relaxed);
    }
}

struct World {
    endpoint: Endpoint,
    files: PkiFiles,
    dir: PathBuf,
    load: Load,
}

fn primary_config(blocks: bool) -> UnikernelConfig {
    let mut c = albatross_autoscale::sandbox::small_unikernel();
    c.image = b"\x7fELF test image".repeat(100);
    c.bridges[0].host_device = None;
    c.argv = vec!["--name=web".into(), "-l".into(), "*:debug".into()];
    if blocks {
        c.block_devices = vec![BlockSpec {
            name: "storage".into(),
            device: None,
            sector_size: None,
        }];
    }
    c
}

async fn world(blocks: bool) -> World {
    let pki = TestPki::generate_with_policy("demo", &TestPki::default_policy()).unwrap();
    let files = pki.write_to_temp().unwrap();
    let dir = files.ca.parent().unwrap().to_path_buf();
    let load = Load::default();
    let l = load.clone();
    let mut cfg = EndpointConfig::from_pki(&pki).unwrap();
    cfg.stats_interval = Duration::from_millis(100);
    cfg.boot_delay = Duration::from_millis(200);
    cfg.load = Arc::new(move |g, _| {
        if g == "demo:web" {
            l.0.load(Ordering::Relaxed) as f64 / 1000.0
        } else {
            0.0
        }
    });
    let endpoint = Endpoint::start(cfg).await.unwrap();
    endpoint.add(name("demo:web"), primary_config(blocks));
    World {
        endpoint,
        files,
        dir,
        load,
    }
}

fn name(s: &str) -> Name {
    Name::parse(s).unwrap()
}

fn q(p: &Path) -> String {
    format!("{:?}", p.display().to_string())
}

impl World {
    fn config(&self, extra: &str) -> Config {
        let text = format!(
            "[policy]\nsample_interval = \"100ms\"\nscale_up_threshold = 75\nscale_up_ticks = 2\nscale_down_threshold = 30\nscale_down_ticks = 3\n\
             scale_up_cooldown = \"300ms\"\nscale_down_cooldown = \"500ms\"\ndeath_timeout = \"2s\"\nmax_instances = 3\nmax_actions_per_hour = 100\n\
             retry_backoff = \"200ms\"\nretry_backoff_max = \"400ms\"\n{extra}\n\
             [albatross]\nendpoint = \"{}\"\nca = {}\ncert = {}\nkey = {}\nreconnect_min = \"50ms\"\nreconnect_max = \"200ms\"\n\
             [daemon]\ndecision_log = \"decisions.jsonl\"\nstate_file = \"state.json\"\n\
             [[group]]\nprimary = \"demo:web\"\n",
            self.endpoint.addr(),
            q(&self.files.ca),
            q(&self.files.subca),
            q(&self.files.subca_key),
        );
        let path = self.dir.join("test.toml");
        std::fs::write(&path, text).unwrap();
        Config::load(&path).unwrap()
    }

    async fn daemon(&self, extra: &str) -> (Daemon, Receiver<Output>) {
        let opts = RunOptions {
            dry_run: false,
            shutdown_grace: Duration::from_secs(10),
            ..RunOptions::default()
        };
        let d = Daemon::start(self.config(extra), opts).await.unwrap();
        let rx = d.subscribe();
        (d, rx)
    }

    fn running(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .endpoint
            .unikernels()
            .iter()
            .map(Name::to_string)
            .collect();
        v.sort();
        v
    }
}

fn decision(action: Action) -> impl FnMut(&Output) -> Option<String> {
    move |o| match o {
        Output::Decision(d) if d.action == action => Some(d.instance.to_string()),
        _ => None,
    }
}

/// Wait until the endpoint runs exactly `want`.
async fn runs(w: &World, want: &[&str]) {
    let want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
    tokio::time::timeout(WAIT, async {
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        while w.running() != want {
            tick.tick().await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("running {:?}, wanted {want:?}", w.running()));
}

#[tokio::test(start_paused = true)]
async fn scales_up_under_load_and_down_after() {
    let w = world(false).await;
    let (d, mut rx) = w.daemon("").await;
    w.load.set(1.8);
    assert_eq!(
        until(&mut rx, decision(Action::ScaleUp)).await,
        "demo:web-clone-1"
    );
    runs(&w, &["demo:web", "demo:web-clone-1"]).await;
    w.load.set(0.1);
    assert_eq!(
        until(&mut rx, decision(Action::ScaleDown)).await,
        "demo:web-clone-1"
    );
    runs(&w, &["demo:web"]).await;
    d.stop().await;
    // The decision log has the same lines replay prints, plus outcomes.
    let log = std::fs::read_to_string(w.dir.join("decisions.jsonl")).unwrap();
    assert!(
        log.contains("\"action\":\"scale_up\"") && log.contains("\"event\":\"action_done\""),
        "{log}"
    );
    // The clone was created from the primary's config without its `--name=`.
    let created = w
        .endpoint
        .history()
        .into_iter()
        .filter(|h| h.command.contains("Create"))
        .count();
    assert_eq!(created, 1);
}

#[tokio::test(start_paused = true)]
async fn reconnects_after_the_endpoint_drops_the_stream() {
    let w = world(false).await;
    let (d, mut rx) = w.daemon("").await;
    let samples = |o: &Output| matches!(o, Output::Sample(_)).then_some(());
    until(&mut rx, samples).await;
    w.endpoint.drop_stats_streams();
    let health = d.health[0].1.clone();
    tokio::time::timeout(WAIT, async {
        while health.reconnects.load(Ordering::Relaxed) == 0 {
            let _ = rx.recv().await;
        }
    })
    .await
    .expect("a reconnect");
    // Samples flow again after the reconnect.
    let before = health.samples.load(Ordering::Relaxed);
    until(&mut rx, |o| {
        (matches!(o, Output::Sample(_)) && health.samples.load(Ordering::Relaxed) > before)
            .then_some(())
    })
    .await;
    assert!(
        w.endpoint.subscribers().len() == 1,
        "exactly one subscriber after the reconnect"
    );
    d.stop().await;
}

#[tokio::test(start_paused = true)]
async fn refuses_to_clone_a_primary_with_block_devices() {
    let w = world(true).await;
    let (d, mut rx) = w.daemon("").await;
    w.load.set(1.8);
    let err = until(&mut rx, |o| match o {
        Output::ActionFailed {
            action: Action::ScaleUp,
            error,
            ..
        } => Some(error.clone()),
        _ => None,
    })
    .await;
    assert!(
        err.contains("block devices") && err.contains("demo:web"),
        "{err}"
    );
    assert_eq!(w.running(), ["demo:web"]);
    d.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_restarted_daemon_adopts_its_clones_and_never_touches_foreign_ones() {
    let w = world(false).await;
    // Someone else's unikernel with a clone-like name, on a CPU of its own
    // (albatross pins it: on the primary's CPU both would share one core).
    let mut foreign = primary_config(false);
    foreign.cpuids = vec![3];
    w.endpoint.add(name("demo:web-clone-9"), foreign);
    let (d, mut rx) = w.daemon("").await;
    w.load.set(1.8);
    assert_eq!(
        until(&mut rx, decision(Action::ScaleUp)).await,
        "demo:web-clone-1"
    );
    runs(&w, &["demo:web", "demo:web-clone-1", "demo:web-clone-9"]).await;
    d.stop().await;
    let state = Ownership::load(&w.dir.join("state.json")).unwrap();
    assert_eq!(
        state.owned("demo:web").collect::<Vec<_>>(),
        ["demo:web-clone-1"]
    );

    // A new daemon adopts clone-1 and, under low load, removes it — not clone-9.
    w.load.set(0.05);
    let (d, mut rx) = w.daemon("").await;
    assert_eq!(
        until(&mut rx, decision(Action::ScaleDown)).await,
        "demo:web-clone-1"
    );
    runs(&w, &["demo:web", "demo:web-clone-9"]).await;
    // At min (the primary plus a foreign instance do not count as ours): no more downs.
    let mut more = 0;
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        loop {
            if let Ok(Output::Decision(dd)) = rx.recv().await
                && dd.action == Action::ScaleDown
            {
                more += 1;
            }
        }
    })
    .await;
    assert_eq!(more, 0);
    d.stop().await;
    assert!(
        w.endpoint
            .history()
            .iter()
            .all(|h| !(h.command.contains("Destroy") && h.name.to_string() == "demo:web-clone-9"))
    );
}

#[tokio::test(start_paused = true)]
async fn failing_creates_back_off_and_stay_within_max() {
    let w = world(false).await;
    w.endpoint
        .fail_next_creates(4, "policy: too many unikernels");
    let (d, mut rx) = w.daemon("").await;
    w.load.set(3.5);
    let mut failures = 0;
    let mut ups = 0;
    until(&mut rx, |o| {
        match o {
            Output::ActionFailed { .. } => failures += 1,
            Output::Decision(d) if d.action == Action::ScaleUp => ups += 1,
            Output::Evaluation(e) => assert!(e.instances <= 3, "instances {} > max", e.instances),
            _ => {}
        }
        (failures == 4 && ups >= 6).then_some(())
    })
    .await;
    runs(&w, &["demo:web", "demo:web-clone-1", "demo:web-clone-2"]).await;
    d.stop().await;
    assert!(w.running().len() <= 3);
}

/// Lines of a child's stderr, as they come.
fn lines_of(child: &mut std::process::Child) -> std::sync::mpsc::Receiver<String> {
    use std::io::BufRead;
    let (tx, rx) = std::sync::mpsc::channel();
    let err = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for l in std::io::BufReader::new(err).lines().map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    rx
}

fn wait_for(rx: &std::sync::mpsc::Receiver<String>, needle: &str) -> String {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) if l.contains(needle) => return l,
            Ok(_) => {}
            Err(e) => panic!("no line with {needle:?}: {e}"),
        }
    }
}

/// Kills the child if the test fails before it exits.
struct Reap(Option<std::process::Child>);

impl Drop for Reap {
    fn drop(&mut self) {
        if let Some(c) = &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn signal(child: &std::process::Child, sig: &str) {
    let ok = std::process::Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_reloads_on_sighup_keeps_the_old_config_when_bad_and_stops_on_sigterm() {
    let w = world(false).await;
    w.config(""); // writes test.toml
    let path = w.dir.join("test.toml");
    let good = std::fs::read_to_string(&path).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_albatross-autoscale"))
        .args(["run", "--config", path.to_str().unwrap()])
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let rx = lines_of(&mut child);
    let mut child = Reap(Some(child));
    wait_for(&rx, "stats stream up");
    std::fs::write(
        &path,
        good.replace("scale_up_threshold = 75", "scale_up_threshold = 750"),
    )
    .unwrap();
    signal(child.0.as_ref().unwrap(), "-HUP");
    wait_for(&rx, "reload rejected");
    // The problems follow, one per line, each naming its key.
    wait_for(&rx, "policy.scale_up_threshold: 750 is out of range");
    std::fs::write(
        &path,
        good.replace("scale_up_threshold = 75", "scale_up_threshold = 70"),
    )
    .unwrap();
    signal(child.0.as_ref().unwrap(), "-HUP");
    wait_for(&rx, "configuration applied");
    signal(child.0.as_ref().unwrap(), "-TERM");
    let status = tokio::time::timeout(WAIT, async {
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        loop {
            if let Some(s) = child.0.as_mut().unwrap().try_wait().unwrap() {
                child.0 = None;
                return s;
            }
            tick.tick().await;
        }
    })
    .await
    .expect("the daemon exits on SIGTERM");
    assert!(status.success(), "{status}");
}

#[test]
fn demo_shows_a_scale_up_and_a_scale_down() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_albatross-autoscale"))
        .args(["demo", "--duration", "12s"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("▲ scale_up demo:web-clone-1"), "{text}");
    assert!(text.contains("▼ scale_down"), "{text}");
    assert!(
        text.contains("summary:") && text.contains("decision log:"),
        "{text}"
    );
    // Its working directory (with the throw-away CA's key) is gone afterwards.
    let config = text
        .lines()
        .next()
        .and_then(|l| l.split(", config ").nth(1))
        .expect("the first line names the config");
    let dir = std::path::Path::new(config.trim()).parent().unwrap();
    assert!(!dir.exists(), "{} is left behind", dir.display());
}

#[test]
fn an_interrupted_demo_ends_normally_and_removes_its_directory() {
    use std::io::BufRead;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_albatross-autoscale"))
        .args(["demo", "--duration", "10m"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let config = first.split(", config ").nth(1).expect("the config path");
    let dir = std::path::Path::new(config.trim())
        .parent()
        .unwrap()
        .to_owned();
    assert!(dir.join("cacert.key").exists(), "{first}");
    // SAFETY: kill(2) on our own child's pid.
    let pid = i32::try_from(child.id()).unwrap();
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    let rest: Vec<String> = lines.map(Result::unwrap).collect();
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}: {rest:?}");
    assert!(rest.iter().any(|l| l == "interrupted"), "{rest:?}");
    assert!(!dir.exists(), "{} is left behind", dir.display());
}

fn subscriptions(w: &World) -> usize {
    w.endpoint
        .history()
        .iter()
        .filter(|h| h.outcome == albatross_autoscale::sandbox::Outcome::Subscribed)
        .count()
}

#[tokio::test(start_paused = true)]
async fn reload_restarts_only_the_endpoints_that_changed() {
    let a = world(false).await;
    let b = world(false).await;
    b.endpoint.add(name("demo:api"), primary_config(false));
    let ep = |w: &World, n: &str, max: &str| {
        format!(
            "[[albatross]]\nname = \"{n}\"\nendpoint = \"{}\"\nca = {}\ncert = {}\nkey = {}\nreconnect_min = \"50ms\"\nreconnect_max = \"{max}\"\n",
            w.endpoint.addr(),
            q(&w.files.ca),
            q(&w.files.subca),
            q(&w.files.subca_key)
        )
    };
    let write = |text: String| {
        let p = a.dir.join("reload.toml");
        std::fs::write(&p, text).unwrap();
        Config::load(&p).unwrap()
    };
    let base = "[policy]\nsample_interval = \"100ms\"\ndeath_timeout = \"2s\"\n[daemon]\nstate_file = \"state.json\"\n";
    let one = write(format!(
        "{base}{}[[group]]\nprimary = \"demo:web\"\nendpoint = \"a\"\n",
        ep(&a, "a", "200ms")
    ));
    let mut d = Daemon::start(one, RunOptions::default()).await.unwrap();
    let mut rx = d.subscribe();
    until(&mut rx, |o| matches!(o, Output::Sample(_)).then_some(())).await;
    assert_eq!(subscriptions(&a), 1);

    // Add endpoint b with a group: a keeps its stream, b starts one.
    let two = write(format!(
        "{base}{}{}[[group]]\nprimary = \"demo:web\"\nendpoint = \"a\"\n[[group]]\nprimary = \"demo:api\"\nendpoint = \"b\"\n",
        ep(&a, "a", "200ms"),
        ep(&b, "b", "200ms")
    ));
    d.reload(&two).await.unwrap();
    until(&mut rx, |o| match o {
        Output::Sample(s) if s.vm.to_string() == "demo:api" => Some(()),
        _ => None,
    })
    .await;
    assert_eq!(
        subscriptions(&a),
        1,
        "the unchanged endpoint kept its stream"
    );
    assert_eq!(subscriptions(&b), 1);

    // Change a setting of a only: a resubscribes, b does not.
    let changed = write(format!(
        "{base}{}{}[[group]]\nprimary = \"demo:web\"\nendpoint = \"a\"\n[[group]]\nprimary = \"demo:api\"\nendpoint = \"b\"\n",
        ep(&a, "a", "300ms"),
        ep(&b, "b", "200ms")
    ));
    d.reload(&changed).await.unwrap();
    let before = subscriptions(&a);
    tokio::time::timeout(WAIT, async {
        while subscriptions(&a) == before {
            let _ = rx.recv().await;
        }
    })
    .await
    .expect("endpoint a resubscribes");
    assert_eq!(subscriptions(&b), 1, "endpoint b was not touched");

    // A group the certificate cannot address rejects the whole reload.
    let mut bad = changed.clone();
    bad.groups[1].primary = name("other:api");
    assert!(d.reload(&bad).await.is_err());
    d.stop().await;
}
