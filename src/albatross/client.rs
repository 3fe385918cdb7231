//! Typed albatross operations over [`Connector`]: one command per connection, the
//! command in the leaf certificate, replies decoded by the wire codec.

use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use super::tls::{Connection, Connector, FrameReader, TlsError};
use crate::cert;
use crate::name::Name;
use crate::wire::{self, Command, NamedUnikernelInfo, Payload, Policy, Success, UnikernelConfig};

/// Why an operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// albatross answered with a failure reply.
    #[error("albatross {endpoint}: {command} {name}: {message}")]
    Failure {
        endpoint: String,
        command: &'static str,
        name: String,
        message: String,
    },
    #[error("albatross {endpoint}: {command} {name}: unexpected reply {got}")]
    Unexpected {
        endpoint: String,
        command: &'static str,
        name: String,
        got: String,
    },
    #[error("{name} is not under {path}, the path of the operator certificate for {endpoint}")]
    OutsidePath {
        endpoint: String,
        name: String,
        path: String,
    },
    #[error("albatross {endpoint}: the image of {name}: {source}")]
    Image {
        endpoint: String,
        name: String,
        source: wire::ImageError,
    },
}

/// A client for one albatross endpoint.
#[derive(Clone)]
pub struct Client {
    connector: Arc<Connector>,
    /// The path the operator certificate speaks for (its sub-CA CNs).
    path: Name,
    /// The policy of `path` as `policy info` last said (`None`: not read yet).
    policy: Arc<Mutex<Option<Policy>>>,
    /// Set by the actuator when the stream of this endpoint must be resubscribed
    /// and reconciled (a re-create found the primary alive), or by a reload.
    resync: Arc<Notify>,
    /// Set on reload: reconcile (and read the policy) now.
    reconcile: Arc<Notify>,
}

impl Client {
    /// A client; the path comes from the policy sub-CAs on the chain albatross'
    /// verifier builds from the issuer's file (repeats and strays dropped).
    pub fn new(connector: Arc<Connector>) -> Self {
        let path = cert::path_of_chain(connector.issuer().intermediates()).unwrap_or_else(|e| {
            // albatross refuses such a chain too; every command will say so.
            tracing::warn!(endpoint = connector.endpoint(), error = %e, "cannot derive the certificate path; using the root path");
            Name::default()
        });
        Self {
            connector,
            path,
            policy: Arc::default(),
            resync: Arc::default(),
            reconcile: Arc::default(),
        }
    }

    /// A client for a configured endpoint: loads its certificates.
    pub fn from_endpoint(ep: &crate::config::Endpoint) -> Result<Self, TlsError> {
        let settings = super::tls::TlsSettings {
            endpoint: ep.address.clone(),
            ca: ep.ca.clone(),
            cert: ep.cert.clone(),
            key: ep.key.clone(),
            server_name: ep.server_name.clone(),
        };
        let connector = Connector::new(&settings)?
            .with_connect_timeout(ep.connect_timeout)
            .with_request_timeout(ep.request_timeout);
        Ok(Self::new(Arc::new(connector)))
    }

    /// The endpoint's address.
    pub fn endpoint(&self) -> &str {
        self.connector.endpoint()
    }

    /// The path commands are issued under (`alice:` for sub-CA alice; `:` for the root CA).
    pub fn path(&self) -> &Name {
        &self.path
    }

    /// The leaf label that addresses `name`, which must sit directly under the path.
    pub fn label_of<'n>(&self, name: &'n Name) -> Result<&'n str, ClientError> {
        match (&name.label, name.path == self.path.path) {
            (Some(l), true) => Ok(l),
            _ => Err(ClientError::OutsidePath {
                endpoint: self.endpoint().to_string(),
                name: name.to_string(),
                path: self.path.to_string(),
            }),
        }
    }

    async fn request(
        &self,
        what: &'static str,
        name: Option<&Name>,
        cmd: &Command,
        image: Option<&[u8]>,
    ) -> Result<Success, ClientError> {
        let label = name.map(|n| self.label_of(n)).transpose()?;
        let shown = name.map_or_else(|| self.path.to_string(), Name::to_string);
        let reply = self.connector.request(label, cmd, image).await?;
        match reply.payload {
            Payload::Success(s) => Ok(s),
            Payload::Failure(message) => Err(ClientError::Failure {
                endpoint: self.endpoint().to_string(),
                command: what,
                name: shown,
                message,
            }),
            other => Err(ClientError::Unexpected {
                endpoint: self.endpoint().to_string(),
                command: what,
                name: shown,
                got: format!("{other:?}").chars().take(120).collect(),
            }),
        }
    }

    fn unexpected(&self, what: &'static str, name: &str, got: &Success) -> ClientError {
        ClientError::Unexpected {
            endpoint: self.endpoint().to_string(),
            command: what,
            name: name.to_string(),
            got: format!("{got:?}").chars().take(120).collect(),
        }
    }

    /// `unikernel info` of one unikernel (`Some(name)`) or of every unikernel under
    /// the path (`None`). Names in the result are absolute.
    pub async fn info(&self, name: Option<&Name>) -> Result<Vec<NamedUnikernelInfo>, ClientError> {
        let s = self
            .request("info", name, &Command::UnikernelInfo, None)
            .await?;
        match s {
            Success::UnikernelInfo(list) => Ok(list
                .into_iter()
                .map(|mut i| {
                    // A path listing names entries relative to the path; a single
                    // unikernel's entry carries its full name.
                    if name.is_none() {
                        i.name = i.name.resolve_under(&self.path);
                    }
                    i
                })
                .collect()),
            other => Err(self.unexpected(
                "info",
                &name.map_or_else(|| self.path.to_string(), Name::to_string),
                &other,
            )),
        }
    }

    /// `unikernel get`: the image of a running unikernel, decompressed (bounded).
    pub async fn get_image(&self, name: &Name) -> Result<Vec<u8>, ClientError> {
        let s = self
            .request("get", Some(name), &Command::UnikernelGet { level: 9 }, None)
            .await?;
        match s {
            Success::UnikernelImage {
                compressed: false,
                image,
            } => Ok(image),
            Success::UnikernelImage {
                compressed: true,
                image,
            } => wire::decompress_image(&image, wire::DEFAULT_MAX_FRAME).map_err(|source| {
                ClientError::Image {
                    endpoint: self.endpoint().to_string(),
                    name: name.to_string(),
                    source,
                }
            }),
            other => Err(self.unexpected("get", &name.to_string(), &other)),
        }
    }

    /// `unikernel create`: the image is zlib-compressed and uploaded after the
    /// handshake (the config in the certificate carries an empty image), so the
    /// certificate stays small whatever the image size.
    pub async fn create(
        &self,
        name: &Name,
        mut config: UnikernelConfig,
        image: &[u8],
    ) -> Result<(), ClientError> {
        let compressed = wire::compress_image(image);
        config.compressed = true;
        config.image = Vec::new();
        let cmd = Command::UnikernelCreate {
            config: Box::new(config),
        };
        match self
            .request("create", Some(name), &cmd, Some(&compressed))
            .await?
        {
            Success::String(_) | Success::Empty => Ok(()),
            other => Err(self.unexpected("create", &name.to_string(), &other)),
        }
    }

    /// `unikernel destroy`. `Ok(false)` if albatross does not know the unikernel.
    pub async fn destroy(&self, name: &Name) -> Result<bool, ClientError> {
        match self
            .request("destroy", Some(name), &Command::UnikernelDestroy, None)
            .await
        {
            Ok(_) => Ok(true),
            Err(ClientError::Failure { message, .. }) if message.contains("not found") => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// `policy info` of the path: the policy of the path itself (named `:` in the
    /// reply), remembered for [`Client::policy`]. `Ok(true)` if it changed since the
    /// last reading (not on the first).
    pub async fn read_policy(&self) -> Result<bool, ClientError> {
        let s = self
            .request("policy info", None, &Command::PolicyInfo, None)
            .await?;
        let Success::Policies(list) = s else {
            return Err(self.unexpected("policy info", &self.path.to_string(), &s));
        };
        let own = list
            .into_iter()
            .find(|p| p.name.path.is_empty() && p.name.label.is_none())
            .map(|p| p.policy);
        let mut cached = self.policy.lock().unwrap_or_else(|e| e.into_inner());
        let changed = cached.is_some() && *cached != own;
        *cached = own;
        Ok(changed)
    }

    /// The policy of the path as last read (`None`: unknown, or albatross has none).
    pub fn policy(&self) -> Option<Policy> {
        self.policy
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Ask the endpoint's task to resubscribe its stats stream and reconcile.
    pub fn request_resync(&self) {
        self.resync.notify_one();
    }

    /// Wait for [`Client::request_resync`].
    pub async fn resync_requested(&self) {
        self.resync.notified().await;
    }

    /// Ask the endpoint's task to reconcile now (a reload).
    pub fn request_reconcile(&self) {
        self.reconcile.notify_one();
    }

    /// Wait for [`Client::request_reconcile`].
    pub async fn reconcile_requested(&self) {
        self.reconcile.notified().await;
    }

    /// Open a `stats subscribe` stream for the whole path (leaf CN `.`): every
    /// unikernel under it, names relative to the path.
    pub async fn subscribe_stats(&self) -> Result<FrameReader<Connection>, ClientError> {
        Ok(self.connector.subscribe_stats(None).await?)
    }

    /// A `stats subscribe` stream for one unikernel: a subscriber name of its own,
    /// so it does not knock the path's subscriber (the daemon) off.
    pub async fn subscribe_stats_of(
        &self,
        name: &Name,
    ) -> Result<FrameReader<Connection>, ClientError> {
        let label = self.label_of(name)?;
        Ok(self.connector.subscribe_stats(Some(label)).await?)
    }
}
