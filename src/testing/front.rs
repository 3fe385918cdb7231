//! A TLS front: terminates TLS with a given server configuration and forwards the
//! plain bytes to a local backend (the fake Proxmox API, a test webhook receiver).

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::task::JoinHandle;

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
