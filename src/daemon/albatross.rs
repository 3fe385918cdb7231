//! The albatross daemon: one client and one stats stream per endpoint, the engine
//! task, and the actuator, wired with tokio. Used by `run`, `demo` and the tests.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::decision_log::DecisionLog;
use super::ownership::Ownership;
use super::runner::{EngineHandle, Event, Runner, Settings};
use crate::albatross::actuator::{AlbatrossActuator, VcpuMap};
use crate::albatross::client::Client;
use crate::albatross::stats::{self, Backoff, StreamHealth};
use crate::config::{Config, Endpoint};
use crate::core::{Engine, Options, Output, Timestamp};
use crate::name::Name;

/// How to run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Decide and log, never actuate.
    pub dry_run: bool,
    /// How long shutdown waits for actions in flight.
    pub shutdown_grace: Duration,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            dry_run: false,
            shutdown_grace: Duration::from_secs(120),
        }
    }
}

/// A running daemon.
pub struct Daemon {
    events: mpsc::Sender<Event>,
    shutdown: CancellationToken,
    runner: JoinHandle<Engine>,
    tasks: Vec<JoinHandle<()>>,
    observers: broadcast::Sender<Output>,
    /// Stats stream health per endpoint name.
    pub health: Vec<(String, Arc<StreamHealth>)>,
    endpoints: Vec<Endpoint>,
}

impl Daemon {
    /// Load certificates, read the ownership record, start the engine task, and
    /// per endpoint: reconcile with `unikernel info`, then follow its statistics.
    pub async fn start(config: Config, opts: RunOptions) -> anyhow::Result<Self> {
        if config.endpoints.is_empty() {
            bail!("no [albatross] endpoint configured: `run` needs one (see config/example.toml)");
        }
        let mut clients: HashMap<String, Client> = HashMap::new();
        for ep in &config.endpoints {
            let client = Client::from_endpoint(ep)
                .with_context(|| format!("albatross endpoint {:?}", ep.name))?;
            clients.insert(ep.name.clone(), client);
        }
        let mut by_group = HashMap::new();
        for g in &config.groups {
            let ep = g.endpoint.as_deref().unwrap_or("default");
            let client = clients
                .get(ep)
                .with_context(|| format!("group {}: no endpoint {ep:?}", g.primary))?;
            client.label_of(&g.primary).with_context(|| {
                format!(
                    "group {}: the operator certificate cannot address it",
                    g.primary
                )
            })?;
            by_group.insert(g.primary.clone(), client.clone());
        }
        let ownership = Ownership::load(&config.daemon.state_file)?;
        let log = DecisionLog::open(config.daemon.decision_log.as_deref())
            .with_context(|| format!("decision log {:?}", config.daemon.decision_log))?;
        let vcpus: VcpuMap = Arc::default();
        let actuator = Arc::new(AlbatrossActuator::new(by_group, vcpus.clone()));
        let groups = config
            .groups
            .iter()
            .map(|g| (g.primary.clone(), g.policy.clone()))
            .collect();
        let engine = Engine::new(groups, Options::default(), Timestamp::ZERO);
        let settings = Settings {
            dry_run: opts.dry_run,
            state_file: config.daemon.state_file.clone(),
            shutdown_grace: opts.shutdown_grace,
        };
        let runner = Runner::new(
            engine,
            actuator.clone(),
            log,
            ownership,
            settings,
            Instant::now(),
        );
        let observers = runner.observers();
        let (tx, rx) = mpsc::channel(4096);
        let shutdown = CancellationToken::new();
        let runner = tokio::spawn(runner.run(rx, shutdown.child_token()));
        let mut tasks = Vec::new();
        let mut health = Vec::new();
        for ep in &config.endpoints {
            let client = clients[&ep.name].clone();
            let h = Arc::new(StreamHealth::default());
            health.push((ep.name.clone(), h.clone()));
            let groups: Vec<(Name, Name)> = config
                .groups
                .iter()
                .filter(|g| g.endpoint.as_deref().unwrap_or("default") == ep.name)
                .map(|g| (g.primary.clone(), g.primary.clone()))
                .collect();
            let backoff = Backoff {
                min: ep.reconnect_min,
                max: ep.reconnect_max,
            };
            let task = endpoint_task(
                client,
                groups,
                actuator.clone(),
                tx.clone(),
                vcpus.clone(),
                backoff,
                h,
                shutdown.child_token(),
            );
            tasks.push(tokio::spawn(task));
        }
        Ok(Self {
            events: tx,
            shutdown,
            runner,
            tasks,
            observers,
            health,
            endpoints: config.endpoints,
        })
    }

    /// Every engine output from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Output> {
        self.observers.subscribe()
    }

    /// A handle to query the engine task and send it operator commands (HTTP API).
    pub fn handle(&self) -> EngineHandle {
        EngineHandle::new(self.events.clone())
    }

    /// Apply a reloaded configuration: groups and policies change in place;
    /// changed endpoints need a restart (logged).
    pub async fn reload(&self, config: &Config) {
        if config.endpoints != self.endpoints {
            tracing::warn!("[albatross] endpoints changed: restart the daemon to apply that part");
        }
        let groups = config
            .groups
            .iter()
            .map(|g| (g.primary.clone(), g.policy.clone()))
            .collect();
        let _ = self.events.send(Event::Reconfigure(groups)).await;
    }

    /// Stop: streams first, then the engine task after its in-flight actions.
    pub async fn stop(self) -> Engine {
        self.shutdown.cancel();
        for t in self.tasks {
            let _ = t.await;
        }
        drop(self.events);
        self.runner.await.unwrap_or_else(|e| {
            tracing::error!(error = %e, "engine task failed");
            Engine::new(Vec::new(), Options::default(), Timestamp::ZERO)
        })
    }
}

/// Per endpoint: reconcile (retrying until albatross answers), snapshot each
/// primary so it can be re-created if it dies, then follow the stats stream.
#[allow(clippy::too_many_arguments)]
async fn endpoint_task(
    client: Client,
    groups: Vec<(Name, Name)>,
    actuator: Arc<AlbatrossActuator>,
    events: mpsc::Sender<Event>,
    vcpus: VcpuMap,
    backoff: Backoff,
    health: Arc<StreamHealth>,
    shutdown: CancellationToken,
) {
    let mut delay = backoff.min;
    let running = loop {
        let r = tokio::select! {
            () = shutdown.cancelled() => return,
            r = client.info(None) => r,
        };
        match r {
            Ok(list) => break list,
            Err(e) => {
                tracing::warn!(endpoint = client.endpoint(), error = %e, retry_in = ?delay, "cannot list unikernels; retrying");
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(backoff.max);
            }
        }
    };
    if let Ok(mut m) = vcpus.lock() {
        for u in &running {
            if let Some(n) = u.info.numcpus.and_then(|n| u32::try_from(n).ok()) {
                m.insert(u.name.clone(), n.max(1));
            }
        }
    }
    let names: Vec<Name> = running.iter().map(|u| u.name.clone()).collect();
    for (group, primary) in &groups {
        let ev = Event::Reconciled {
            group: group.clone(),
            running: names.clone(),
        };
        if events.send(ev).await.is_err() {
            return;
        }
        if names.contains(primary)
            && let Err(e) = actuator.snapshot(group, primary).await
        {
            tracing::warn!(%group, error = %e, "cannot snapshot the primary; re-creating it after a death will not be possible");
        }
    }
    stats::run(client, events, vcpus, backoff, health, shutdown).await;
}
