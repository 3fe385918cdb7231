//! A TLS front: terminates TLS with a given server configuration and forwards the
//! plain bytes to a local backend (the fake Proxmox API, a test webhook receiver).

use std::net::SocketAddr;
use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::task::JoinHandle;

/// A plain TLS server configuration (no client certificates) for `cert` and the
/// DER of its PKCS#8 key, on the crate's crypto provider.
pub fn server_config(
    cert: CertificateDer<'static>,
    key_der: Vec<u8>,
) -> Result<rustls::ServerConfig, rustls::Error> {
    let key = PrivateKeyDer::try_from(key_der).map_err(|e| rustls::Error::General(e.into()))?;
    rustls::ServerConfig::builder_with_provider(crate::cert::crypto_provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
}

/// Listen on 127.0.0.1 (a free port), forward every TLS connection to `backend`.
/// Returns the `https://localhost:<port>` URL and the accept task.
pub async fn tls_front(
    backend: SocketAddr,
    config: rustls::ServerConfig,
) -> std::io::Result<(String, JoinHandle<()>)> {
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let task = tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                if let Ok(mut plain) = tokio::net::TcpStream::connect(backend).await {
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
                }
            });
        }
    });
    Ok((format!("https://localhost:{port}"), task))
}
