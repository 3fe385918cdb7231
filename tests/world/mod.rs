//! The daemon against the embedded endpoint: one world (a throw-away PKI, the
//! endpoint hosting `demo:web` under a load the test sets, a config file in a
//! temporary directory) shared by tests/albatross_real.rs and albatross_soak.rs.
#![allow(dead_code)] // each test binary uses a different part

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use albatross_autoscale::config::Config;
use albatross_autoscale::core::Output;
use albatross_autoscale::daemon::albatross::{Daemon, RunOptions};
use albatross_autoscale::name::Name;
use albatross_autoscale::sandbox::{Endpoint, EndpointConfig, PkiFiles, StatsBody, TestPki};
use albatross_autoscale::wire::Policy;
use tokio::sync::broadcast::Receiver;

/// The demand of `demo:web` in milli-vCPUs (other groups idle at 0.05).
#[derive(Clone, Default)]
pub struct Load(pub Arc<AtomicU64>);

impl Load {
    pub fn set(&self, vcpus: f64) {
        self.0.store((vcpus * 1000.0) as u64, Ordering::Relaxed);
    }
}

pub struct World {
    pub endpoint: Endpoint,
    pub pki: TestPki,
    pub files: PkiFiles,
    pub dir: PathBuf,
    pub load: Load,
}

pub fn name(s: &str) -> Name {
    Name::parse(s).unwrap()
}

/// Sub-CA `demo` with `policy`; the endpoint ticks every `interval`; `demo:web`
/// (one vCPU, CPU 0) runs.
pub async fn world(
    policy: &Policy,
    stats_body: StatsBody,
    interval: Duration,
    boot_delay: Duration,
) -> World {
    let pki = TestPki::generate_with_policy("demo", policy).unwrap();
    let files = pki.write_to_temp().unwrap();
    let dir = files.ca.parent().unwrap().to_path_buf();
    let load = Load::default();
    let l = load.clone();
    let mut cfg = EndpointConfig::from_pki(&pki).unwrap();
    cfg.stats_interval = interval;
    cfg.boot_delay = boot_delay;
    cfg.stats_body = stats_body;
    cfg.load = Arc::new(move |g, _| {
        if g == "demo:web" {
            l.0.load(Ordering::Relaxed) as f64 / 1000.0
        } else {
            0.05
        }
    });
    let endpoint = Endpoint::start(cfg).await.unwrap();
    endpoint.add(name("demo:web"), primary());
    World {
        endpoint,
        pki,
        files,
        dir,
        load,
    }
}

/// The primary's configuration.
pub fn primary() -> albatross_autoscale::wire::UnikernelConfig {
    let mut c = albatross_autoscale::sandbox::small_unikernel();
    c.bridges[0].host_device = None;
    c
}

impl World {
    /// A config of one group `demo:web`: `policy` is the whole `[policy]` body,
    /// `albatross` extra `[albatross]` keys.
    pub fn config(&self, policy: &str, albatross: &str) -> Config {
        self.config_with(policy, albatross, "clone_ipv4 = \"10.0.42.10-10.0.42.50\"")
    }

    /// [`World::config`] with `group` as the `[[group]]`'s own keys.
    pub fn config_with(&self, policy: &str, albatross: &str, group: &str) -> Config {
        let q = |p: &std::path::Path| format!("{:?}", p.display().to_string());
        let text = format!(
            "[policy]\n{policy}\n\
             [albatross]\nendpoint = \"{}\"\nca = {}\ncert = {}\nkey = {}\n{albatross}\n\
             [daemon]\ndecision_log = \"decisions.jsonl\"\nstate_file = \"state.json\"\n\
             [[group]]\nprimary = \"demo:web\"\n{group}\n",
            self.endpoint.addr(),
            q(&self.files.ca),
            q(&self.files.subca),
            q(&self.files.subca_key),
        );
        let path = self.dir.join("test.toml");
        std::fs::write(&path, text).unwrap();
        Config::load(&path).unwrap()
    }

    pub async fn daemon(&self, policy: &str, albatross: &str) -> (Daemon, Receiver<Output>) {
        let d = Daemon::start(self.config(policy, albatross), RunOptions::default())
            .await
            .unwrap();
        let rx = d.subscribe();
        (d, rx)
    }

    /// Connections the endpoint handled with this command kind.
    pub fn commands(&self, kind: &str) -> usize {
        self.endpoint
            .history()
            .iter()
            .filter(|h| h.command == kind)
            .count()
    }

    pub fn decision_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("decisions.jsonl")).unwrap_or_default()
    }
}

/// How long a test waits for what it expects before it fails (never waited on
/// when things work: every wait ends on the awaited output).
pub const WAIT: Duration = Duration::from_secs(30);

/// Wait for an output matching `f`, returning what it maps to.
pub async fn until<T>(rx: &mut Receiver<Output>, mut f: impl FnMut(&Output) -> Option<T>) -> T {
    tokio::time::timeout(WAIT, async {
        loop {
            match rx.recv().await {
                Ok(o) => {
                    if let Some(t) = f(&o) {
                        return t;
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(e) => panic!("outputs closed: {e}"),
            }
        }
    })
    .await
    .expect("the expected output did not come in time")
}
