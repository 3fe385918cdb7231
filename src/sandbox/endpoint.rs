//! An in-process albatross TLS endpoint on 127.0.0.1 (protocol doc §1.4, §2.3, §4,
//! §5) with simulated unikernels, for integration tests and the demo.
//!
//! Like albatross-tls-endpoint it requires a client certificate chaining to the CA,
//! derives the name from the chain's CNs, takes the command from the leaf's
//! extension (decoded with the real codec), and closes without a frame when it
//! refuses the chain. One command per connection. Replies are real frames.
//!
//! Time is tokio time, so tests may run under `tokio::time::pause()`; certificate
//! validity is still checked against the wall clock (rustls' own clock).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use super::hosted::{Fleet, GroupFn, Hosted, LoadFn, default_group};
use super::pki::TestPki;
use super::session;
use super::vmmd::{self, Block, Exit};
use crate::cert::{self, CertError};
use crate::name::Name;
use crate::wire::{self, Data, Header, Message, Payload, Policy, UnikernelConfig};

/// How the endpoint is set up.
pub struct EndpointConfig {
    /// Trust anchor for client chains.
    pub ca: CertificateDer<'static>,
    pub server_chain: Vec<CertificateDer<'static>>,
    pub server_key: PrivateKeyDer<'static>,
    /// albatross-stats' `--interval` (10 s there).
    pub stats_interval: Duration,
    /// A created instance takes no load before this much time has passed.
    pub boot_delay: Duration,
    pub load: LoadFn,
    pub group_of: GroupFn,
    /// Time between a restart-on-fail exit and the new process. albatrossd
    /// restarts at once (zero); a destroy in this window answers
    /// `destroyed: removed from restarting`.
    pub restart_delay: Duration,
    /// Instances pinned to the same host CPU share it, as under albatross'
    /// `taskset` (true). False: every instance gets its vCPUs whatever its cpuids.
    pub cpu_pinning: bool,
    /// How statistics frames look (2.7, or a newer albatross).
    pub stats_body: StatsBody,
}

/// The shape of the statistics the endpoint sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StatsBody {
    /// albatross 2.7: `data [1] statistics`.
    #[default]
    V27,
    /// A newer albatross: the sample under this data tag in the plausible 2.8
    /// layout ([`wire::stats_as_unknown`]).
    V28 { tag: u8 },
    /// A newer albatross whose frames under this tag carry no stats body.
    Unreadable { tag: u8 },
}

impl EndpointConfig {
    /// The PKI's CA and server identity; 1 s stats, no boot delay, no load.
    pub fn from_pki(pki: &TestPki) -> Result<Self, CertError> {
        let (server_chain, server_key) = pki.server_identity()?;
        Ok(Self {
            ca: pki.ca_der()?,
            server_chain,
            server_key,
            stats_interval: Duration::from_secs(1),
            boot_delay: Duration::ZERO,
            load: Arc::new(|_, _| 0.0),
            group_of: Arc::new(default_group),
            restart_delay: Duration::ZERO,
            cpu_pinning: true,
            stats_body: StatsBody::V27,
        })
    }
}

/// What the endpoint did with one connection (for assertions).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handled {
    /// The certificate-derived name (root if the chain was refused before that).
    pub name: Name,
    /// `Debug` of the command kind, e.g. `UnikernelDestroy`, or `-` when refused.
    pub command: String,
    pub outcome: Outcome,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Closed without a frame, as albatross does for a bad chain or command.
    Refused(String),
    Success(String),
    Failure(String),
    /// A stats subscription was accepted.
    Subscribed,
    /// A create read its upload and was left unanswered (`hang_next_creates`).
    Hung,
}

pub(super) enum SubEvent {
    Frame(Vec<u8>),
    /// albatross' stats daemon dropped this subscriber.
    Close,
    /// albatross-stats forgot this subscriber (albatrossd restarted): the stream
    /// stays open and silent.
    Silence,
}

pub(super) struct Subscriber {
    pub id: u64,
    pub tx: mpsc::UnboundedSender<SubEvent>,
}

#[derive(Default)]
pub(super) struct World {
    pub fleet: Fleet,
    pub subscribers: HashMap<Name, Subscriber>,
    pub next_id: u64,
    /// The endpoint's command counter (header sequence of stream replies).
    pub sequence: i64,
    pub fail_creates: VecDeque<String>,
    /// Creates left unanswered, see [`Endpoint::hang_next_creates`].
    pub hang_creates: usize,
    pub history: Vec<Handled>,
    /// albatrossd's policies by path (`alice:`), learnt from client chains.
    pub policies: BTreeMap<Name, Policy>,
    pub blocks: BTreeMap<Name, Block>,
    /// Exited, waiting for their restart-on-fail: (timer id, configuration).
    pub restarting: BTreeMap<Name, (u64, UnikernelConfig)>,
}

pub(super) struct Shared {
    world: Mutex<World>,
    pub stats_interval: Duration,
    pub boot_delay: Duration,
    pub load: LoadFn,
    pub group_of: GroupFn,
    restart_delay: Duration,
    stats_body: StatsBody,
    start: Instant,
    pub cancel: CancellationToken,
    /// Cancelled to drop every open connection (`restart_endpoint`).
    conns: Mutex<CancellationToken>,
}

impl Shared {
    pub fn lock(&self) -> MutexGuard<'_, World> {
        // A panicking test task must not wedge the others: take the data anyway.
        self.world.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Endpoint time (tokio clock).
    pub fn now(&self) -> Duration {
        self.start.elapsed()
    }

    /// Bring counters up to now before the set of instances changes.
    pub fn advance(&self, w: &mut World) {
        w.fleet.advance(self.now(), &self.load);
    }

    pub fn record(&self, name: Name, command: String, outcome: Outcome) {
        self.lock().history.push(Handled {
            name,
            command,
            outcome,
        });
    }

    /// One stats tick: advance counters, send a frame per unikernel in scope to
    /// every subscriber (names relative to the subscriber's path, sequence 0).
    fn tick(&self) {
        let mut w = self.lock();
        self.advance(&mut w);
        let w = &mut *w;
        let mut gone = Vec::new();
        for (sub, s) in &w.subscribers {
            for (rel, h) in w.fleet.in_scope(sub) {
                let msg = Message {
                    header: Header::new(0, rel),
                    payload: Payload::Data(match self.stats_body {
                        StatsBody::V27 => Data::Stats(Box::new(h.stats())),
                        StatsBody::V28 { tag } => wire::stats_as_unknown(tag, &h.stats()),
                        StatsBody::Unreadable { tag } => unreadable(tag),
                    }),
                };
                if s.tx
                    .send(SubEvent::Frame(wire::frame(&wire::encode(&msg))))
                    .is_err()
                {
                    gone.push(sub.clone());
                    break;
                }
            }
        }
        for g in gone {
            w.subscribers.remove(&g);
        }
    }

    /// Token ending the connections accepted from now on.
    pub fn conn_token(&self) -> CancellationToken {
        self.conns.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// albatrossd starting `config` again (restart-on-fail or restore): a new
    /// process with fresh counters, if the resource checks still pass.
    fn respawn(&self, w: &mut World, name: &Name, config: UnikernelConfig) {
        let h = self.hosted(name, config, self.now() + self.boot_delay);
        match vmmd::check_unikernel(w, name, &h.config) {
            Ok(()) => vmmd::insert(w, name.clone(), h),
            Err(e) => tracing::warn!("test endpoint: {name} not restarted: {e}"),
        }
    }

    /// A hosted instance that takes load from `serving_from` (endpoint time) on.
    pub fn hosted(&self, name: &Name, config: UnikernelConfig, serving_from: Duration) -> Hosted {
        let digest = session::image_digest(&config);
        Hosted {
            group: (self.group_of)(name),
            config,
            digest,
            serving_from,
            started: wall_time(),
            cpu_us: 0.0,
            packets: 0.0,
        }
    }
}

/// A data frame of a newer albatross that is no statistics (a log event).
fn unreadable(tag: u8) -> Data {
    // [tag] { SEQUENCE { UTF8String "started", UTF8String "web" } }
    let body = [
        0x30, 0x0e, 0x0c, 0x07, b's', b't', b'a', b'r', b't', b'e', b'd', 0x0c, 0x03, b'w', b'e',
        b'b',
    ];
    let mut raw = vec![0xa0 | (tag & 0x1f), body.len() as u8];
    raw.extend_from_slice(&body);
    Data::Unknown {
        tag: u32::from(tag),
        raw,
    }
}

fn wall_time() -> Option<wire::Time> {
    wire::Time::new(time::OffsetDateTime::now_utc().unix_timestamp(), 0)
}

/// A running endpoint. Dropping it stops accepting and ends open streams.
pub struct Endpoint {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

impl Endpoint {
    /// Bind 127.0.0.1 on a free port and start serving.
    pub async fn start(config: EndpointConfig) -> io::Result<Self> {
        let provider = cert::crypto_provider();
        let mut roots = RootCertStore::empty();
        roots.add(config.ca).map_err(io::Error::other)?;
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .map_err(io::Error::other)?;
        let tls = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(io::Error::other)?
            .with_client_cert_verifier(verifier)
            .with_single_cert(config.server_chain, config.server_key)
            .map_err(io::Error::other)?;
        let acceptor = TlsAcceptor::from(Arc::new(tls));
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let cancel = CancellationToken::new();
        let shared = Arc::new(Shared {
            world: Mutex::new(World {
                fleet: Fleet {
                    pin_cpus: config.cpu_pinning,
                    ..Fleet::default()
                },
                ..World::default()
            }),
            stats_interval: config.stats_interval.max(Duration::from_millis(1)),
            boot_delay: config.boot_delay,
            load: config.load,
            group_of: config.group_of,
            restart_delay: config.restart_delay,
            stats_body: config.stats_body,
            start: Instant::now(),
            conns: Mutex::new(cancel.child_token()),
            cancel,
        });
        tokio::spawn(accept_loop(shared.clone(), listener, acceptor));
        tokio::spawn(ticker(shared.clone()));
        Ok(Self { addr, shared })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Host a unikernel that is already booted (a primary started by hand).
    pub fn add(&self, name: Name, config: UnikernelConfig) {
        let mut w = self.shared.lock();
        self.shared.advance(&mut w);
        let h = self.shared.hosted(&name, config, Duration::ZERO);
        vmmd::insert(&mut w, name, h);
    }

    /// Names of the running unikernels.
    pub fn unikernels(&self) -> Vec<Name> {
        self.shared
            .lock()
            .fleet
            .unikernels
            .keys()
            .cloned()
            .collect()
    }

    /// Accumulated CPU seconds of one unikernel.
    pub fn cpu_seconds(&self, name: &Name) -> Option<f64> {
        let mut w = self.shared.lock();
        self.shared.advance(&mut w);
        w.fleet.unikernels.get(name).map(|h| h.cpu_us / 1e6)
    }

    /// The arguments a unikernel was created with.
    pub fn argv(&self, name: &Name) -> Option<Vec<String>> {
        let w = self.shared.lock();
        w.fleet.unikernels.get(name).map(|h| h.config.argv.clone())
    }

    /// Names with an active stats subscription.
    pub fn subscribers(&self) -> Vec<Name> {
        self.shared.lock().subscribers.keys().cloned().collect()
    }

    /// End every stats stream the way albatross does when its stats daemon drops
    /// them: a final `Failure "exception while reading from fd"`, then close.
    pub fn drop_stats_streams(&self) {
        for (_, s) in self.shared.lock().subscribers.drain() {
            let _ = s.tx.send(SubEvent::Close);
        }
    }

    /// albatross-stats restarting: what its subscribers see is
    /// [`Endpoint::drop_stats_streams`].
    pub fn restart_stats(&self) {
        self.drop_stats_streams();
    }

    /// albatross-stats forgetting every subscriber without closing its
    /// connection (`daemon/albatross_stats.ml` l.93-97): open, silent streams.
    pub fn silence_stats_streams(&self) {
        for (_, s) in self.shared.lock().subscribers.drain() {
            let _ = s.tx.send(SubEvent::Silence);
        }
    }

    /// albatrossd restarting: stats streams fall silent (see
    /// [`Endpoint::silence_stats_streams`]), every unikernel is killed and
    /// restored from its stored configuration (clones and pending restarts too):
    /// same names, counters from 0, a new `started`.
    pub fn restart_albatrossd(&self) {
        self.silence_stats_streams();
        let mut w = self.shared.lock();
        self.shared.advance(&mut w);
        let mut state: Vec<(Name, UnikernelConfig)> = std::mem::take(&mut w.restarting)
            .into_iter()
            .map(|(n, (_, c))| (n, c))
            .collect();
        let names: Vec<Name> = w.fleet.unikernels.keys().cloned().collect();
        for name in names {
            if let Some(h) = vmmd::remove(&mut w, &name) {
                state.push((name, h.config));
            }
        }
        for (name, config) in state {
            self.shared.respawn(&mut w, &name, config);
        }
    }

    /// Set albatrossd's policy for `path` (`alice:`, `alice:team:`, `:`). A command
    /// whose chain carries a policy for the same path replaces it again.
    pub fn set_policy(&self, path: Name, policy: Policy) {
        self.shared
            .lock()
            .policies
            .insert(Name::new(path.path, None), policy);
    }

    /// albatrossd's stored policy for `path`.
    pub fn policy(&self, path: &Name) -> Option<Policy> {
        let key = Name::new(path.path.clone(), None);
        self.shared.lock().policies.get(&key).cloned()
    }

    /// Create block device `name` (`alice:disk`) of `size_mb`, as `block add` does,
    /// checked against the stored policy of its path.
    pub fn add_block(&self, name: &Name, size_mb: i64) -> Result<(), String> {
        vmmd::add_block(&mut self.shared.lock(), name, size_mb)
    }

    /// The unikernel `name` exits with `exit_code`. albatrossd restarts it (fresh
    /// counters) if its fail behaviour and the code allow (`src/vmm_core.ml`
    /// `should_restart`); otherwise it is gone. False if it was not running.
    pub fn kill(&self, name: &Name, exit_code: i32) -> bool {
        self.exit(name, Exit::Code(exit_code))
    }

    /// The unikernel `name` is killed by `signal` (e.g. the OOM killer): never
    /// restarted. False if it was not running.
    pub fn kill_by_signal(&self, name: &Name, signal: i32) -> bool {
        self.exit(name, Exit::Signal(signal))
    }

    fn exit(&self, name: &Name, exit: Exit) -> bool {
        let mut w = self.shared.lock();
        self.shared.advance(&mut w);
        let Some(h) = vmmd::remove(&mut w, name) else {
            return false;
        };
        let mut config = h.config;
        // albatrossd.ml l.43-46: exit 64 with an injected `--name`: once without.
        let restart = if config.add_name && exit == Exit::Code(64) {
            config.add_name = false;
            true
        } else {
            vmmd::should_restart(&config.fail_behaviour, exit)
        };
        if !restart {
            return true;
        }
        let delay = self.shared.restart_delay;
        if delay.is_zero() {
            self.shared.respawn(&mut w, name, config);
            return true;
        }
        let id = w.next_id;
        w.next_id += 1;
        w.restarting.insert(name.clone(), (id, config));
        let (shared, name) = (self.shared.clone(), name.clone());
        tokio::spawn(async move {
            tokio::select! {
                _ = shared.cancel.cancelled() => {}
                _ = tokio::time::sleep(delay) => {
                    let mut w = shared.lock();
                    shared.advance(&mut w);
                    // Destroyed (or restored) meanwhile: nothing to restart.
                    if w.restarting.get(&name).is_some_and(|(i, _)| *i == id)
                        && let Some((_, config)) = w.restarting.remove(&name)
                    {
                        shared.respawn(&mut w, &name, config);
                    }
                }
            }
        });
        true
    }

    /// Names waiting for their restart-on-fail.
    pub fn restarting(&self) -> Vec<Name> {
        self.shared.lock().restarting.keys().cloned().collect()
    }

    /// The next `n` creates fail with `message` (as albatrossd failures).
    pub fn fail_next_creates(&self, n: usize, message: &str) {
        let mut w = self.shared.lock();
        w.fail_creates
            .extend(std::iter::repeat_n(message.to_string(), n));
    }

    /// The next `n` creates read their upload and are never answered nor carried
    /// out; the connection stays open until the client leaves or shutdown.
    pub fn hang_next_creates(&self, n: usize) {
        self.shared.lock().hang_creates += n;
    }

    /// The TLS endpoint process restarting: every open connection (stats streams
    /// included) is dropped without a frame; new ones are accepted on the same
    /// port. albatross-stats notices dropped subscribers at its next tick.
    pub fn restart_endpoint(&self) {
        let fresh = self.shared.cancel.child_token();
        let old = std::mem::replace(
            &mut *self.shared.conns.lock().unwrap_or_else(|e| e.into_inner()),
            fresh,
        );
        old.cancel();
    }

    /// Every connection handled so far, in order.
    pub fn history(&self) -> Vec<Handled> {
        self.shared.lock().history.clone()
    }

    /// Stop accepting and end all streams.
    pub fn shutdown(&self) {
        self.shared.cancel.cancel();
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        self.shared.cancel.cancel();
    }
}

async fn accept_loop(shared: Arc<Shared>, listener: TcpListener, acceptor: TlsAcceptor) {
    loop {
        let accepted = tokio::select! {
            _ = shared.cancel.cancelled() => return,
            a = listener.accept() => a,
        };
        match accepted {
            Ok((tcp, _)) => {
                let (shared, acceptor) = (shared.clone(), acceptor.clone());
                tokio::spawn(async move {
                    let cancel = shared.conn_token();
                    tokio::select! {
                        _ = cancel.cancelled() => {}
                        _ = session::serve(shared, acceptor, tcp) => {}
                    }
                });
            }
            // Out of file descriptors and the like: keep serving the others.
            Err(e) => tracing::warn!("test endpoint accept: {e}"),
        }
    }
}

async fn ticker(shared: Arc<Shared>) {
    let mut iv = tokio::time::interval_at(
        Instant::now() + shared.stats_interval,
        shared.stats_interval,
    );
    iv.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shared.cancel.cancelled() => return,
            _ = iv.tick() => shared.tick(),
        }
    }
}
