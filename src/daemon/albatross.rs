//! The albatross daemon: one client and one stats stream per endpoint, the engine
//! task, and the actuator, wired with tokio. Used by `run`, `demo` and the tests.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::sync::{Notify, broadcast, mpsc};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::approvals::SharedBook;
use super::cost::CostLedger;
use super::decision_log::DecisionLog;
use super::ownership::Ownership;
use super::recorder::Recorder;
use super::runner::{EngineHandle, Event, Listing, Runner, RunnerSettings};
use crate::albatross::actuator::{AlbatrossActuator, DEFAULT_RULES, ImageFetch, VcpuMap};
use crate::albatross::client::{Client, ClientError};
use crate::albatross::stats::{self, Backoff, StreamHealth, StreamSettings};
use crate::config::{Config, Endpoint};
use crate::core::{Engine, Input, Options, Output, Policy, Timestamp};
use crate::name::Name;
use crate::notify::notice::{Notices, Reach};
use crate::state::{ImageStore, StateLock};

/// Endpoints listed at once at start-up: 100 endpoints do not all handshake in the
/// same instant.
const STARTING_AT_ONCE: usize = 16;
/// Image `get`s under way at once, over all endpoints (each holds one image).
const FETCHES_AT_ONCE: usize = 4;

/// How to run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Decide and log, never actuate.
    pub dry_run: bool,
    /// How long shutdown waits for actions in flight.
    pub shutdown_grace: Duration,
    /// Where the engine task publishes notices (notifications listen here).
    pub notices: Notices,
    /// Where decisions that need approval wait (shared with the API).
    pub approvals: SharedBook,
    /// Hourly costs shared with the Proxmox loop (global cost ceiling).
    pub costs: Arc<CostLedger>,
    /// The state lock, when the caller took it before starting anything else;
    /// `None`: `start` takes it.
    pub state_lock: Option<Arc<StateLock>>,
    /// `run --record FILE`: every engine input, for `replay --inputs`.
    pub record: Option<PathBuf>,
    /// A recording shared with the Proxmox loop (`run --record`); wins over `record`.
    pub recorder: Option<crate::daemon::recorder::Recorder>,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            dry_run: false,
            shutdown_grace: Duration::from_secs(120),
            notices: Notices::default(),
            approvals: SharedBook::default(),
            costs: Arc::default(),
            state_lock: None,
            record: None,
            recorder: None,
        }
    }
}

/// A running daemon.
pub struct Daemon {
    events: mpsc::Sender<Event>,
    shutdown: CancellationToken,
    runner: JoinHandle<Engine>,
    observers: broadcast::Sender<Output>,
    /// Stats stream health per endpoint name (kept across reloads of an endpoint).
    pub health: Vec<(String, Arc<StreamHealth>)>,
    streams: HashMap<String, Stream>,
    actuator: Arc<AlbatrossActuator>,
    vcpus: VcpuMap,
    /// Where streams publish `unreachable` notices.
    notices: Notices,
    /// Bounds on first listings and on image fetches.
    limits: Limits,
    /// Wall-clock time of the engine's t = 0 (engine times are ms since then).
    origin: std::time::SystemTime,
    /// One daemon per state file: held until the daemon (and, in `stop`, the engine
    /// task's last state save) is gone.
    _lock: Arc<StateLock>,
}

/// What endpoint tasks share: how many list at once at start-up, how many images
/// are fetched at once, and how many endpoints have not been listed yet (the
/// image store is swept of an earlier run's leftovers once all have).
#[derive(Clone)]
struct Limits {
    starting: Arc<tokio::sync::Semaphore>,
    fetches: Arc<tokio::sync::Semaphore>,
    unlisted: Arc<std::sync::atomic::AtomicUsize>,
}

/// One endpoint's task (reconcile, then statistics) and what it was started with.
struct Stream {
    endpoint: Endpoint,
    client: Client,
    /// The groups placed on it (updated in place on reload).
    groups: Groups,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

/// The groups of one endpoint, shared with its task.
type Groups = Arc<std::sync::Mutex<Vec<Name>>>;

/// The client of each group, checked: every group's primary must be addressable
/// with its endpoint's certificate.
fn placement(
    config: &Config,
    clients: &HashMap<String, Client>,
) -> anyhow::Result<HashMap<Name, Arc<Client>>> {
    // One copy of each endpoint's client, not one per group.
    let shared: HashMap<&str, Arc<Client>> = clients
        .iter()
        .map(|(ep, c)| (ep.as_str(), Arc::new(c.clone())))
        .collect();
    let mut by_group = HashMap::with_capacity(config.groups.len());
    for g in &config.groups {
        let ep = g.endpoint.as_deref().unwrap_or("default");
        let client = shared
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
    Ok(by_group)
}

/// Each group's `clone_cpus` and `clone_ipv4`, for the actuator: only the groups
/// that do not have the defaults (the actuator's answer for any other).
fn clone_rules(config: &Config) -> HashMap<Name, crate::albatross::actuator::CloneRules> {
    config
        .groups
        .iter()
        .map(|g| (g, (g.policy.clone_cpus, g.policy.clone_ipv4)))
        .filter(|(_, rules)| *rules != DEFAULT_RULES)
        .map(|(g, rules)| (g.primary.clone(), rules))
        .collect()
}

fn engine_groups(config: &Config) -> Vec<(Name, Policy)> {
    config
        .groups
        .iter()
        .map(|g| (g.primary.clone(), Policy::clone(&g.policy)))
        .collect()
}

impl Daemon {
    /// Load certificates, read the ownership record, start the engine task, and
    /// per endpoint: reconcile with `unikernel info`, then follow its statistics.
    pub async fn start(config: Config, opts: RunOptions) -> anyhow::Result<Self> {
        if config.endpoints.is_empty() {
            bail!("no [albatross] endpoint configured: `run` needs one (see config/example.toml)");
        }
        for w in config.warnings() {
            tracing::warn!("{w}");
        }
        let mut clients: HashMap<String, Client> = HashMap::new();
        for ep in &config.endpoints {
            let client = Client::from_endpoint(ep)
                .with_context(|| format!("albatross endpoint {:?}", ep.name))?;
            clients.insert(ep.name.clone(), client);
        }
        let by_group = placement(&config, &clients)?;
        // Before reading the state: a second daemon must not touch it at all.
        let lock = match opts.state_lock.clone() {
            Some(l) => l,
            None => Arc::new(StateLock::acquire(&config.daemon.state_file)?),
        };
        let ownership = Ownership::load(&config.daemon.state_file)?;
        let log = DecisionLog::open(config.daemon.decision_log.as_deref())
            .with_context(|| format!("decision log {:?}", config.daemon.decision_log))?;
        let images_dir = ImageStore::dir_for(&config.daemon.state_file);
        let images = ImageStore::open(&images_dir)
            .with_context(|| format!("image store {}", images_dir.display()))?;
        let vcpus: VcpuMap = Arc::default();
        let actuator = Arc::new(AlbatrossActuator::new(
            by_group,
            vcpus.clone(),
            Arc::new(images),
        ));
        actuator.set_clone_rules(clone_rules(&config));
        // One wall-clock reading for t = 0 (the runner's start below): schedules
        // and the history's timestamps agree on it.
        let origin = std::time::SystemTime::now();
        let engine = Engine::new(engine_groups(&config), Options::default(), Timestamp::ZERO)
            .with_wall_origin(super::unix_ms(origin))
            .with_cost_ceiling(config.daemon.max_cost_micros);
        let settings = RunnerSettings {
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
        )
        .with_notices(opts.notices.clone())
        .with_approvals(opts.approvals.clone())
        .with_costs(opts.costs.clone());
        let runner = match (&opts.record, &opts.recorder) {
            (_, Some(r)) => runner.with_recorder(r.clone(), config.policy_source.clone()),
            (Some(path), None) => {
                let r = Recorder::open(path, config.daemon.record_max_bytes)
                    .with_context(|| format!("recording {}", path.display()))?;
                runner.with_recorder(r, config.policy_source.clone())
            }
            (None, None) => runner,
        };
        let observers = runner.observers();
        let (tx, rx) = mpsc::channel(4096);
        let shutdown = CancellationToken::new();
        let runner = tokio::spawn(runner.run(rx, shutdown.child_token()));
        let mut daemon = Self {
            events: tx,
            shutdown,
            runner,
            observers,
            health: Vec::new(),
            streams: HashMap::new(),
            actuator,
            vcpus,
            notices: opts.notices.clone(),
            limits: Limits {
                starting: Arc::new(tokio::sync::Semaphore::new(STARTING_AT_ONCE)),
                fetches: Arc::new(tokio::sync::Semaphore::new(FETCHES_AT_ONCE)),
                unlisted: Arc::new(config.endpoints.len().into()),
            },
            origin,
            _lock: lock,
        };
        for ep in &config.endpoints {
            daemon.start_stream(ep.clone(), clients[&ep.name].clone(), &config);
        }
        Ok(daemon)
    }

    /// Start (or restart) the task of endpoint `ep` for the groups placed on it.
    fn start_stream(&mut self, ep: Endpoint, client: Client, config: &Config) {
        let health = match self.health.iter().find(|(n, _)| *n == ep.name) {
            Some((_, h)) => h.clone(),
            None => {
                let h = Arc::new(StreamHealth::default());
                self.health.push((ep.name.clone(), h.clone()));
                h
            }
        };
        let groups: Groups = Arc::new(std::sync::Mutex::new(self.groups_on(&ep.name, config)));
        let settings = StreamSettings {
            backoff: Backoff {
                base: ep.reconnect_min,
                max: ep.reconnect_max,
            },
            idle_timeout: config.stats_idle_timeout(&ep),
            interval: config
                .groups_on(&ep.name)
                .map(|g| g.policy.sample_interval)
                .min()
                .unwrap_or(Duration::from_secs(10)),
        };
        let stop = self.shutdown.child_token();
        let shell = Shell {
            client: client.clone(),
            groups: groups.clone(),
            actuator: self.actuator.clone(),
            events: self.events.clone(),
            vcpus: self.vcpus.clone(),
            limits: self.limits.clone(),
            stop: stop.clone(),
        };
        let task = tokio::spawn(endpoint_task(
            shell,
            settings,
            ep.reconcile_interval,
            health,
            Reach::new(&ep.name, &self.notices),
            stop.clone(),
        ));
        let name = ep.name.clone();
        self.streams.insert(
            name,
            Stream {
                endpoint: ep,
                client,
                groups,
                stop,
                task,
            },
        );
    }

    fn groups_on(&self, endpoint: &str, config: &Config) -> Vec<Name> {
        config
            .groups_on(endpoint)
            .map(|g| g.primary.clone())
            .collect()
    }

    /// Every engine output from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Output> {
        self.observers.subscribe()
    }

    /// Wall-clock time of the engine's t = 0, to turn output times into dates.
    pub fn origin(&self) -> std::time::SystemTime {
        self.origin
    }

    /// A handle to query the engine task and send it operator commands (HTTP API).
    pub fn handle(&self) -> EngineHandle {
        EngineHandle::new(self.events.clone())
    }

    /// Apply a reloaded configuration. Groups and policies change in place (counters,
    /// cooldowns and members kept); an endpoint whose settings changed gets a new
    /// client and stream, new endpoints start, removed ones stop, and unchanged
    /// endpoints keep their streams (new groups on them are reconciled). If a
    /// certificate cannot be loaded or a group cannot be addressed, nothing changes.
    pub async fn reload(&mut self, config: &Config) -> anyhow::Result<()> {
        let mut clients = HashMap::new();
        for ep in &config.endpoints {
            let client = match self.streams.get(&ep.name) {
                Some(s) if s.endpoint == *ep => s.client.clone(),
                _ => Client::from_endpoint(ep)
                    .with_context(|| format!("albatross endpoint {:?}", ep.name))?,
            };
            clients.insert(ep.name.clone(), client);
        }
        let by_group = placement(config, &clients)?;
        // Images of primaries no longer configured go.
        self.actuator.images().retain(|p| by_group.contains_key(p));
        self.actuator.set_clients(by_group);
        self.actuator.set_clone_rules(clone_rules(config));
        let _ = self
            .events
            .send(Event::Reconfigure(
                engine_groups(config),
                config.policy_source.clone(),
            ))
            .await;
        let _ = self
            .events
            .send(Event::CostCeiling(config.daemon.max_cost_micros))
            .await;
        // Stop the streams of endpoints that changed or went away.
        let stale: Vec<String> = self
            .streams
            .iter()
            .filter(|(n, s)| {
                config
                    .endpoints
                    .iter()
                    .all(|e| e.name != **n || *e != s.endpoint)
            })
            .map(|(n, _)| n.clone())
            .collect();
        for name in stale {
            if let Some(s) = self.streams.remove(&name) {
                tracing::info!(endpoint = %name, "endpoint changed or removed: stopping its stream");
                s.stop.cancel();
                let _ = s.task.await;
            }
        }
        for ep in &config.endpoints {
            if !self.streams.contains_key(&ep.name) {
                tracing::info!(endpoint = %ep.name, "starting the stream of a new or changed endpoint");
                self.start_stream(ep.clone(), clients[&ep.name].clone(), config);
                continue;
            }
            // Unchanged endpoint: its task reconciles the groups now on it (and
            // reads the policy again) at once.
            if let Some(st) = self.streams.get(&ep.name) {
                *st.groups.lock().unwrap_or_else(|e| e.into_inner()) =
                    self.groups_on(&ep.name, config);
                st.client.request_reconcile();
            }
        }
        Ok(())
    }

    /// End at once, as `kill -9` would: no grace, actions in flight abandoned
    /// mid-way, nothing saved beyond what was already written (soak tests).
    pub async fn kill(self) {
        for (_, s) in self.streams {
            s.task.abort();
            let _ = s.task.await;
        }
        self.runner.abort();
        let _ = self.runner.await;
        self.shutdown.cancel();
    }

    /// Stop: streams first, then the engine task after its in-flight actions.
    pub async fn stop(self) -> Engine {
        self.shutdown.cancel();
        for (_, s) in self.streams {
            let _ = s.task.await;
        }
        drop(self.events);
        self.runner.await.unwrap_or_else(|e| {
            tracing::error!(error = %e, "engine task failed");
            Engine::new(Vec::new(), Options::default(), Timestamp::ZERO)
        })
    }
}

/// What an endpoint's task works with.
struct Shell {
    client: Client,
    groups: Groups,
    actuator: Arc<AlbatrossActuator>,
    events: mpsc::Sender<Event>,
    vcpus: VcpuMap,
    limits: Limits,
    /// Ends the endpoint's image fetches with it.
    stop: CancellationToken,
}

impl Shell {
    fn groups(&self) -> Vec<Name> {
        self.groups
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// Per endpoint: reconcile its groups (retrying until albatross answers), then
/// follow the stats stream, and reconcile again every `reconcile_interval`, after
/// every resubscribe and on request (a reload).
async fn endpoint_task(
    shell: Shell,
    settings: StreamSettings,
    reconcile_interval: Duration,
    health: Arc<StreamHealth>,
    mut reach: Reach,
    shutdown: CancellationToken,
) {
    let mut seed = stats::jitter_seed(shell.client.endpoint());
    let mut attempt = 0u32;
    loop {
        let r = tokio::select! {
            () = shutdown.cancelled() => return,
            r = async {
                let _permit = shell.limits.starting.acquire().await;
                reconcile(&shell).await
            } => r,
        };
        match r {
            Ok(true) => {
                reach.reachable();
                let unlisted = &shell.limits.unlisted;
                let before = unlisted
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
                if before == Ok(1) {
                    shell.actuator.images().sweep();
                    // The start-up burst is over: give its freed memory back.
                    return_freed_memory();
                }
                break;
            }
            Ok(false) => return, // the engine task is gone
            Err(e) => {
                reach.failed(&e.to_string());
                attempt = attempt.saturating_add(1);
                let delay = settings.backoff.jittered(attempt, &mut seed);
                tracing::warn!(endpoint = shell.client.endpoint(), error = %e, retry_in = ?delay, "cannot list unikernels; retrying");
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
    let resubscribed = Arc::new(Notify::new());
    let stream = stats::run(
        shell.client.clone(),
        shell.events.clone(),
        shell.vcpus.clone(),
        settings,
        health,
        reach,
        resubscribed.clone(),
        shutdown.clone(),
    );
    let periodic = async {
        loop {
            tokio::select! {
                () = tokio::time::sleep(reconcile_interval) => {}
                () = resubscribed.notified() => {}
                () = shell.client.reconcile_requested() => {}
            }
            match reconcile(&shell).await {
                Ok(true) => return_freed_memory(),
                Ok(false) => return,
                Err(e) => {
                    tracing::warn!(endpoint = shell.client.endpoint(), error = %e, "reconcile: cannot list unikernels; trying again later");
                }
            }
        }
    };
    tokio::select! {
        () = shutdown.cancelled() => {}
        () = stream => {}
        () = periodic => {}
    }
}

/// List the endpoint's unikernels, read its policy, learn their vCPUs, tell the
/// engine task what runs for each group, and remember each running primary's
/// configuration so it can be re-created if it dies; its image (once per digest)
/// is fetched into the store in the background. `Ok(false)` if the engine task is
/// gone.
async fn reconcile(shell: &Shell) -> Result<bool, ClientError> {
    let client = &shell.client;
    let running = client.info(None).await?;
    let groups = shell.groups();
    match client.read_policy().await {
        // The limits changed: scale-ups held by a refusal may work now.
        Ok(true) => {
            tracing::info!(endpoint = client.endpoint(), "the albatross policy changed");
            for group in &groups {
                let lift = Input::Refusal {
                    group: group.clone(),
                    why: None,
                };
                if shell.events.send(Event::Input(lift)).await.is_err() {
                    return Ok(false);
                }
            }
        }
        Ok(false) => {}
        Err(e) => {
            tracing::warn!(endpoint = client.endpoint(), error = %e, "cannot read the albatross policy (`policy info`); scale-ups are not checked against it beforehand");
        }
    }
    // Whether clones can get a CPU other than their primary's (the scale-up's
    // reason says when not).
    if let Some(policy) = client.policy() {
        for group in &groups {
            let Some(p) = running.iter().find(|u| u.name == *group) else {
                continue;
            };
            let other_cpus = policy.cpuids.iter().any(|c| !p.info.cpuids.contains(c));
            let room = Input::CpuRoom {
                group: group.clone(),
                other_cpus,
            };
            if shell.events.send(Event::Input(room)).await.is_err() {
                return Ok(false);
            }
        }
    }
    if let Ok(mut m) = shell.vcpus.lock() {
        for u in &running {
            if let Some(n) = crate::albatross::actuator::vcpus_of(&u.info) {
                m.insert(u.name.clone(), n);
            }
        }
    }
    let names = Arc::new(Listing::new(
        running
            .iter()
            .map(|u| {
                let started = u
                    .info
                    .started
                    .map(|t| t.unix_seconds().saturating_mul(1000));
                (u.name.clone(), started)
            })
            .collect(),
    ));
    // Images are fetched after the listing, in the background: the stats stream
    // does not wait for them (issue 18: a `get` per group made start-up grow
    // faster than the fleet).
    let mut fetches: HashMap<String, ImageFetch> = HashMap::new();
    // Clones' addresses, for health checks and hooks after a restart.
    let primaries: std::collections::HashSet<&Name> = groups.iter().collect();
    shell
        .actuator
        .learn_addresses(running.iter().filter(|u| !primaries.contains(&u.name)));
    for group in &groups {
        let ev = Event::Reconciled {
            group: group.clone(),
            running: names.clone(),
        };
        if shell.events.send(ev).await.is_err() {
            return Ok(false);
        }
        // The group's name is its original primary.
        let fetch = match running.iter().find(|u| u.name == *group) {
            Some(u) => shell.actuator.remember(group, u.info.clone()),
            None => shell.actuator.refetch_from(group, &running),
        };
        if let Some(f) = fetch {
            fetches
                .entry(f.key.clone())
                .and_modify(|e| e.primaries.push(group.clone()))
                .or_insert(f);
        }
    }
    if !fetches.is_empty() {
        tokio::spawn(fetch_images(
            client.clone(),
            shell.actuator.clone(),
            shell.limits.fetches.clone(),
            fetches.into_values().collect(),
            shell.stop.clone(),
        ));
    }
    Ok(true)
}

/// `get` images into the store, a bounded number at a time over all endpoints.
async fn fetch_images(
    client: Client,
    actuator: Arc<AlbatrossActuator>,
    permits: Arc<tokio::sync::Semaphore>,
    fetches: Vec<ImageFetch>,
    stop: CancellationToken,
) {
    let all = async {
        let mut set = tokio::task::JoinSet::new();
        for f in fetches {
            let Ok(permit) = permits.clone().acquire_owned().await else {
                return;
            };
            let (client, actuator) = (client.clone(), actuator.clone());
            set.spawn(async move {
                let primaries = f.primaries.clone();
                if let Err(e) = actuator.fetch(&client, f).await {
                    tracing::warn!(?primaries, error = %e, "cannot store the primary's image; re-creating it after a death will not be possible until it is fetched");
                }
                drop(permit);
            });
        }
        while set.join_next().await.is_some() {}
    };
    tokio::select! {
        () = stop.cancelled() => {}
        () = all => {}
    }
}

/// Large blocks (a 10 000-group table, a `/metrics` text, a listing) straight
/// from the operating system and back to it when freed. glibc raises this
/// threshold each time such a block is freed, after which the next ones are cut
/// from the heap and leave holes it cannot return (issue 18). Call once, early;
/// glibc's own `MALLOC_MMAP_THRESHOLD_`, if set, is left to decide.
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_none() {
        // SAFETY: mallopt only sets glibc's tunables; the value is in range.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
        }
    }
}

/// Give memory freed since to the operating system: glibc keeps freed chunks in
/// its per-thread arenas, which after a 10 000-VM start-up held more than the
/// live heap (issue 18). A few milliseconds; called after bursts, not per event.
pub fn return_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks glibc's own arenas.
    unsafe {
        libc::malloc_trim(0);
    }
}
