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

use std::collections::{HashMap, VecDeque};
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
use crate::cert::{self, CertError};
use crate::name::Name;
use crate::wire::{self, Data, Header, Message, Payload, UnikernelConfig};

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
}

pub(super) enum SubEvent {
    Frame(Vec<u8>),
    /// albatross' stats daemon dropped this subscriber.
    Close,
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
    pub history: Vec<Handled>,
}

pub(super) struct Shared {
    world: Mutex<World>,
    pub stats_interval: Duration,
    pub boot_delay: Duration,
    pub load: LoadFn,
    pub group_of: GroupFn,
    start: Instant,
    pub cancel: CancellationToken,
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
                    payload: Payload::Data(Data::Stats(Box::new(h.stats()))),
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
        let shared = Arc::new(Shared {
            world: Mutex::new(World::default()),
            stats_interval: config.stats_interval.max(Duration::from_millis(1)),
            boot_delay: config.boot_delay,
            load: config.load,
            group_of: config.group_of,
            start: Instant::now(),
            cancel: CancellationToken::new(),
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
        w.fleet.unikernels.insert(name, h);
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

    /// The next `n` creates fail with `message` (as albatrossd failures).
    pub fn fail_next_creates(&self, n: usize, message: &str) {
        let mut w = self.shared.lock();
        w.fail_creates
            .extend(std::iter::repeat_n(message.to_string(), n));
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
                    let cancel = shared.cancel.clone();
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
