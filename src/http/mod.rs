//! The operations API (axum): health, status, decisions, operator commands,
//! metrics. Off unless `[http] listen` is set.
//!
//! * [`api::Api`] holds the state (keys, limiter, redacted config, decision ring,
//!   metrics, the engine handle); [`routes::router`] serves it.
//! * [`status`] is the read model the engine task builds on request.
//! * [`limit`] and [`auth`] are pure: a token bucket taking `now`, digests of keys.

pub mod api;
pub mod auth;
mod history;
pub mod limit;
pub mod metrics;
pub mod openapi;
pub mod routes;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

pub use api::Api;
pub use routes::router;

/// The git revision the binary was built from (build.rs; "unknown" without git).
pub const GIT_REVISION: &str = env!("AA_GIT_REVISION");

/// Serve `api` on `listen` until `shutdown`. Returns once bound (errors if the
/// address cannot be bound); the server runs on a spawned task.
pub async fn serve(
    api: Arc<Api>,
    listen: SocketAddr,
    shutdown: CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| anyhow::anyhow!("http.listen {listen}: {e}"))?;
    let app = router(api).into_make_service_with_connect_info::<SocketAddr>();
    tracing::info!(%listen, "HTTP API listening");
    Ok(tokio::spawn(async move {
        let r = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        if let Err(e) = r {
            tracing::error!(error = %e, "HTTP API stopped");
        }
    }))
}
