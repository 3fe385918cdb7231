//! TLS client for albatross' endpoint (protocol doc §1.3–1.4).
//!
//! albatross takes the command from the client certificate, so every command gets a
//! fresh leaf (signed by the operator's CA or sub-CA key) and its own connection:
//! [`Connector::command`] signs, connects, handshakes and hands back the stream.
//! Replies are frames on that stream; [`FrameReader`] reads them and turns albatross'
//! way of refusing a certificate — closing before the first frame — into
//! [`TlsError::Rejected`].
//!
//! ## Server verification and `server_name`
//!
//! The server certificate must chain to exactly the configured CA (no system roots),
//! be valid now, and carry EKU serverAuth if it has an EKU. albatross server
//! certificates (`albatross-client generate`) have a CN (`server` by default) and no
//! subjectAltName, so the usual hostname check cannot work and albatross-client skips
//! it. Here `server_name` is the name the *certificate* carries, not the host's DNS
//! name:
//!
//! * certificate with subjectAltName: `server_name` must be one of its names
//!   (standard webpki rules);
//! * certificate without subjectAltName: `server_name` must equal its subject CN
//!   (ASCII case-insensitive);
//! * `server_name = ""`: no name check (what albatross-client does); chain, validity
//!   and EKU are still checked.
//!
//! `server_name` is also sent as SNI when it is a valid DNS name; albatross ignores it.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::cert::{self, CertError, Issuer, ServerVerifier};
use crate::wire::{self, Frame, FrameDecoder};

/// Upload frame size for images (albatross reads any size; 64 KiB keeps memory flat).
pub const UPLOAD_CHUNK: usize = 64 * 1024;

/// How long a single-reply command may take by default.
const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// How long TCP connect plus TLS handshake may take by default.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// One albatross endpoint as configured (`[albatross]` in the config file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// `host:port` or `ip:port` of albatross-tls-endpoint.
    pub endpoint: String,
    /// The albatross CA certificate: the only trust anchor for the server.
    pub ca: PathBuf,
    /// The operator's CA or sub-CA certificate (plus further intermediates).
    pub cert: PathBuf,
    /// Its private key: signs the per-command leaves.
    pub key: PathBuf,
    /// The name the server certificate carries (see the module docs); "" skips it.
    pub server_name: String,
}

/// A connected command stream.
pub type Connection = TlsStream<TcpStream>;

/// TLS client errors; each names the endpoint.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("albatross {endpoint}: {source}")]
    Cert { endpoint: String, source: CertError },
    #[error("albatross {endpoint}: CA file {path}: {reason}")]
    Ca {
        endpoint: String,
        path: PathBuf,
        reason: String,
    },
    #[error("albatross {endpoint}: TLS configuration: {source}")]
    Config {
        endpoint: String,
        source: rustls::Error,
    },
    #[error("albatross {endpoint}: cannot connect: {source}")]
    Connect { endpoint: String, source: io::Error },
    #[error("albatross {endpoint}: no connection within {timeout:?}")]
    Timeout { endpoint: String, timeout: Duration },
    /// Sent, and no reply in time: whether albatross carried it out is unknown.
    #[error("albatross {endpoint}: no reply within {timeout:?} (outcome unknown)")]
    NoReply { endpoint: String, timeout: Duration },
    #[error("albatross {endpoint}: TLS handshake failed: {source}")]
    Handshake { endpoint: String, source: io::Error },
    /// albatross closes without a frame when it refuses the certificate chain or the
    /// command in it (bad CN, forbidden command, policy, expired leaf, clock skew).
    #[error(
        "albatross {endpoint} refused the command: connection closed before the first reply ({detail}); check the endpoint's log, the sub-CA's policy and clock skew"
    )]
    Rejected { endpoint: String, detail: String },
    #[error("albatross {endpoint}: reading reply frame {frame}: {source}")]
    Read {
        endpoint: String,
        frame: usize,
        source: io::Error,
    },
    #[error("albatross {endpoint}: {source}")]
    Frame {
        endpoint: String,
        source: wire::FrameError,
    },
    #[error("albatross {endpoint}: reply frame {frame}: {source}")]
    Decode {
        endpoint: String,
        frame: usize,
        source: wire::DecodeError,
    },
    #[error("albatross {endpoint}: sending: {source}")]
    Write { endpoint: String, source: io::Error },
}

/// Signs leaves and opens one TLS connection per command. Cheap to share (`Arc`).
pub struct Connector {
    endpoint: String,
    server_name: String,
    issuer: Issuer,
    verifier: Arc<ServerVerifier>,
    provider: Arc<CryptoProvider>,
    connect_timeout: Duration,
    request_timeout: Duration,
}

impl fmt::Debug for Connector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connector")
            .field("endpoint", &self.endpoint)
            .field("server_name", &self.server_name)
            .field("issuer", &self.issuer)
            .field("connect_timeout", &self.connect_timeout)
            .finish()
    }
}

impl Connector {
    /// Load the CA, the operator's certificate and key named in `settings`.
    pub fn new(settings: &TlsSettings) -> Result<Self, TlsError> {
        let endpoint = settings.endpoint.clone();
        let issuer = Issuer::from_pem_files(&settings.cert, &settings.key).map_err(|source| {
            TlsError::Cert {
                endpoint: endpoint.clone(),
                source,
            }
        })?;
        let ca = load_ca(&settings.ca, &endpoint)?;
        Self::from_parts(endpoint, ca, issuer, settings.server_name.clone())
    }

    /// Build from loaded parts (tests, the demo).
    pub fn from_parts(
        endpoint: String,
        ca: CertificateDer<'static>,
        issuer: Issuer,
        server_name: String,
    ) -> Result<Self, TlsError> {
        let provider = cert::crypto_provider();
        let mut roots = RootCertStore::empty();
        roots.add(ca).map_err(|e| TlsError::Config {
            endpoint: endpoint.clone(),
            source: e,
        })?;
        let verifier = Arc::new(ServerVerifier::new(
            Arc::new(roots),
            server_name.clone(),
            provider.clone(),
        ));
        Ok(Self {
            endpoint,
            server_name,
            issuer,
            verifier,
            provider,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
        })
    }

    /// Bound a whole single-reply command, upload included (default 120 s): a
    /// create albatross never answers must not hold its group forever.
    pub fn with_request_timeout(mut self, timeout: Duration) -> Self {
        self.request_timeout = timeout;
        self
    }

    /// Bound TCP connect plus handshake (default 10 s).
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// The configured `host:port`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The operator's issuer (its CN is the path the commands address).
    pub fn issuer(&self) -> &Issuer {
        &self.issuer
    }

    /// Sign a leaf for this command (`label`: unikernel label, `None` for the
    /// issuer's path; `extension_der` from [`wire::encode_cert_extension`]),
    /// connect and complete the handshake. One command per connection.
    ///
    /// A refused certificate is only visible on the first read (TLS 1.3): use
    /// [`FrameReader`] on the returned stream.
    pub async fn command(
        &self,
        label: Option<&str>,
        extension_der: &[u8],
    ) -> Result<Connection, TlsError> {
        let now = time::OffsetDateTime::now_utc();
        let leaf =
            cert::leaf_for_command(&self.issuer, label, extension_der, now).map_err(|source| {
                TlsError::Cert {
                    endpoint: self.endpoint.clone(),
                    source,
                }
            })?;
        let config = rustls::ClientConfig::builder_with_provider(self.provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .and_then(|b| {
                b.dangerous()
                    .with_custom_certificate_verifier(self.verifier.clone())
                    .with_client_auth_cert(leaf.chain, leaf.key)
            })
            .map_err(|source| TlsError::Config {
                endpoint: self.endpoint.clone(),
                source,
            })?;
        let connector = TlsConnector::from(Arc::new(config));
        let endpoint = self.endpoint.clone();
        let work = async {
            let tcp =
                TcpStream::connect(&self.endpoint)
                    .await
                    .map_err(|source| TlsError::Connect {
                        endpoint: endpoint.clone(),
                        source,
                    })?;
            // Replies are small and latency matters more than packet count.
            let _ = tcp.set_nodelay(true);
            let sni = self.sni(&tcp);
            connector
                .connect(sni, tcp)
                .await
                .map_err(|source| TlsError::Handshake {
                    endpoint: endpoint.clone(),
                    source,
                })
        };
        match tokio::time::timeout(self.connect_timeout, work).await {
            Ok(r) => r,
            Err(_) => Err(TlsError::Timeout {
                endpoint,
                timeout: self.connect_timeout,
            }),
        }
    }

    /// One command with a single reply (info, get, create, destroy, ...): connect,
    /// upload `image` if given (a create whose config carries an empty image), and
    /// return the reply. `Failure` replies are returned as messages, not errors.
    pub async fn request(
        &self,
        label: Option<&str>,
        cmd: &wire::Command,
        image: Option<&[u8]>,
    ) -> Result<wire::Message, TlsError> {
        let mut conn = self
            .command(label, &wire::encode_cert_extension(cmd))
            .await?;
        let work = async {
            if let Some(image) = image {
                upload(&mut conn, &self.endpoint, image, UPLOAD_CHUNK).await?;
            }
            let mut reader = FrameReader::new(conn, &self.endpoint, wire::DEFAULT_MAX_FRAME);
            reader
                .next_message()
                .await?
                .ok_or_else(|| TlsError::Rejected {
                    endpoint: self.endpoint.clone(),
                    detail: "end marker instead of a reply".to_string(),
                })
        };
        match tokio::time::timeout(self.request_timeout, work).await {
            Ok(r) => r,
            Err(_) => Err(TlsError::NoReply {
                endpoint: self.endpoint.clone(),
                timeout: self.request_timeout,
            }),
        }
    }

    /// Open a stats subscription for the issuer's path (`label: None`) or one
    /// unikernel; read it with [`FrameReader::next_message`]. The first message is
    /// `Success (String "subscribed")`, then `Data Stats` per unikernel per tick.
    pub async fn subscribe_stats(
        &self,
        label: Option<&str>,
    ) -> Result<FrameReader<Connection>, TlsError> {
        let ext = wire::encode_cert_extension(&wire::Command::StatsSubscribe);
        let conn = self.command(label, &ext).await?;
        Ok(FrameReader::new(
            conn,
            &self.endpoint,
            wire::STATS_MAX_FRAME,
        ))
    }

    /// What rustls gets as the server name: the configured name if it is a DNS name
    /// (sent as SNI), else the peer's IP (no SNI). The verifier ignores it.
    fn sni(&self, tcp: &TcpStream) -> ServerName<'static> {
        if let Ok(ServerName::DnsName(d)) = ServerName::try_from(self.server_name.as_str()) {
            return ServerName::DnsName(d.to_owned());
        }
        match tcp.peer_addr() {
            Ok(addr) => ServerName::IpAddress(addr.ip().into()),
            Err(_) => ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()),
        }
    }
}

/// The CA file must hold exactly one certificate, as albatross-tls-endpoint demands.
fn load_ca(path: &Path, endpoint: &str) -> Result<CertificateDer<'static>, TlsError> {
    let err = |reason: String| TlsError::Ca {
        endpoint: endpoint.to_string(),
        path: path.to_path_buf(),
        reason,
    };
    let pem = std::fs::read(path).map_err(|e| err(e.to_string()))?;
    let mut certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(e.to_string()))?;
    match certs.len() {
        1 => Ok(certs.remove(0)),
        0 => Err(err("no CERTIFICATE in the file".to_string())),
        n => Err(err(format!(
            "{n} certificates; the trust anchor file must hold exactly one"
        ))),
    }
}

/// Reads reply frames from a command connection.
///
/// Before the first frame, EOF (with or without close_notify) or a TLS alert means
/// albatross refused the chain or the command: [`TlsError::Rejected`]. After it, EOF
/// or the zero-length end marker ends the stream (`Ok(None)`); EOF inside a frame is
/// a [`TlsError::Frame`] error.
pub struct FrameReader<S> {
    stream: S,
    decoder: FrameDecoder,
    endpoint: String,
    frames: usize,
    buf: Vec<u8>,
}

impl<S: AsyncRead + Unpin> FrameReader<S> {
    /// `max_frame`: [`wire::STATS_MAX_FRAME`] for stats streams,
    /// [`wire::DEFAULT_MAX_FRAME`] where an image may arrive.
    pub fn new(stream: S, endpoint: &str, max_frame: usize) -> Self {
        Self {
            stream,
            decoder: FrameDecoder::new(max_frame),
            endpoint: endpoint.to_string(),
            frames: 0,
            buf: vec![0; 16 * 1024],
        }
    }

    /// Frames returned so far.
    pub fn frames(&self) -> usize {
        self.frames
    }

    /// The next frame body, or `None` at the end of the stream.
    pub async fn next_frame(&mut self) -> Result<Option<Vec<u8>>, TlsError> {
        loop {
            let next = self
                .decoder
                .next_frame()
                .map_err(|source| TlsError::Frame {
                    endpoint: self.endpoint.clone(),
                    source,
                })?;
            match next {
                Some(Frame::Message { body, .. }) => {
                    self.frames += 1;
                    return Ok(Some(body));
                }
                Some(Frame::End { .. }) if self.frames > 0 => return Ok(None),
                Some(Frame::End { length, .. }) => {
                    return Err(self.rejected(format!("end marker {length} instead of a reply")));
                }
                None => {}
            }
            match self.stream.read(&mut self.buf).await {
                Ok(0) if self.frames == 0 && self.decoder.buffered() == 0 => {
                    return Err(self.rejected("closed".to_string()));
                }
                Ok(0) => {
                    self.decoder.finish().map_err(|source| TlsError::Frame {
                        endpoint: self.endpoint.clone(),
                        source,
                    })?;
                    return Ok(None);
                }
                Ok(n) => self.decoder.push(&self.buf[..n]),
                Err(e) if self.frames == 0 && is_refusal(&e) => {
                    return Err(self.rejected(e.to_string()));
                }
                Err(source) => {
                    return Err(TlsError::Read {
                        endpoint: self.endpoint.clone(),
                        frame: self.frames,
                        source,
                    });
                }
            }
        }
    }

    /// The next frame, decoded.
    pub async fn next_message(&mut self) -> Result<Option<wire::Message>, TlsError> {
        let Some(body) = self.next_frame().await? else {
            return Ok(None);
        };
        wire::decode(&body)
            .map(Some)
            .map_err(|source| TlsError::Decode {
                endpoint: self.endpoint.clone(),
                frame: self.frames - 1,
                source,
            })
    }

    /// The stream, e.g. to close it.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.stream
    }

    pub fn into_inner(self) -> S {
        self.stream
    }

    fn rejected(&self, detail: String) -> TlsError {
        TlsError::Rejected {
            endpoint: self.endpoint.clone(),
            detail,
        }
    }
}

/// EOF without close_notify, a reset, or a TLS alert (a rustls peer refusing our
/// certificate sends one; albatross just closes).
fn is_refusal(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
    ) || e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .is_some_and(|r| matches!(r, rustls::Error::AlertReceived(_)))
}

/// Send an image as upload frames of at most `chunk` bytes (capped at 1 MiB), then the end marker
/// (§1.4: for a create whose `image` in the certificate is empty).
pub async fn upload<W: AsyncWrite + Unpin>(
    w: &mut W,
    endpoint: &str,
    image: &[u8],
    chunk: usize,
) -> Result<(), TlsError> {
    let err = |source| TlsError::Write {
        endpoint: endpoint.to_string(),
        source,
    };
    // Bounded so a frame length always fits albatross' signed 32-bit prefix.
    for part in image.chunks(chunk.clamp(1, 1 << 20)) {
        w.write_all(&wire::frame(part)).await.map_err(err)?;
    }
    w.write_all(&0i32.to_be_bytes()).await.map_err(err)?;
    w.flush().await.map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn reader_over(bytes: Vec<u8>) -> FrameReader<tokio::io::DuplexStream> {
        let (mut tx, rx) = tokio::io::duplex(1024);
        tokio::spawn(async move {
            let _ = tx.write_all(&bytes).await;
        });
        FrameReader::new(rx, "192.0.2.1:1025", 64)
    }

    #[tokio::test]
    async fn eof_before_the_first_frame_is_a_rejection() {
        let mut r = reader_over(Vec::new()).await;
        let e = r.next_frame().await.unwrap_err();
        assert!(matches!(e, TlsError::Rejected { .. }), "{e}");
        assert!(e.to_string().contains("192.0.2.1:1025"), "{e}");
        let mut r = reader_over(0i32.to_be_bytes().to_vec()).await;
        assert!(matches!(
            r.next_frame().await,
            Err(TlsError::Rejected { .. })
        ));
    }

    #[tokio::test]
    async fn frames_then_eof_or_end_marker_end_the_stream() {
        let mut bytes = wire::frame(b"ab");
        bytes.extend(wire::frame(b"cde"));
        let mut r = reader_over(bytes.clone()).await;
        assert_eq!(r.next_frame().await.unwrap().unwrap(), b"ab");
        assert_eq!(r.next_frame().await.unwrap().unwrap(), b"cde");
        assert!(r.next_frame().await.unwrap().is_none());
        bytes.extend(0i32.to_be_bytes());
        bytes.extend(wire::frame(b"ignored"));
        let mut r = reader_over(bytes).await;
        r.next_frame().await.unwrap().unwrap();
        r.next_frame().await.unwrap().unwrap();
        assert!(r.next_frame().await.unwrap().is_none());
        assert_eq!(r.frames(), 2);
    }

    #[tokio::test]
    async fn truncated_and_oversized_frames_are_errors() {
        let mut bytes = wire::frame(b"ab");
        bytes.extend(&wire::frame(b"cdef")[..6]);
        let mut r = reader_over(bytes).await;
        r.next_frame().await.unwrap().unwrap();
        assert!(matches!(r.next_frame().await, Err(TlsError::Frame { .. })));
        let mut r = reader_over(wire::frame(&[0u8; 65])).await;
        assert!(matches!(r.next_frame().await, Err(TlsError::Frame { .. })));
        // Bytes that are not a message: a decode error naming the frame.
        let mut r = reader_over(wire::frame(b"not der")).await;
        let e = r.next_message().await.unwrap_err();
        assert!(matches!(e, TlsError::Decode { frame: 0, .. }), "{e}");
    }

    #[tokio::test]
    async fn upload_writes_frames_and_the_end_marker() {
        let mut out = Vec::new();
        upload(&mut out, "x", b"abcde", 2).await.unwrap();
        let mut want = Vec::new();
        for part in [&b"ab"[..], b"cd", b"e"] {
            want.extend(wire::frame(part));
        }
        want.extend(0i32.to_be_bytes());
        assert_eq!(out, want);
    }
}
