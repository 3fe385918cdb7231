//! The HTTP API router in process: one authenticated request from a fixed peer.

use std::net::SocketAddr;
use std::sync::Arc;

use albatross_autoscale::http::{Api, router};
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;

/// `method path` with `Bearer key`, from 10.0.0.1: the status and the body.
pub async fn request(
    api: &Arc<Api>,
    method: Method,
    path: &str,
    key: &str,
) -> (StatusCode, String) {
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", format!("Bearer {key}"))
        .body(Body::empty())
        .unwrap();
    req.extensions_mut()
        .insert(ConnectInfo(SocketAddr::from(([10, 0, 0, 1], 40000))));
    let r = router(api.clone()).oneshot(req).await.unwrap();
    let status = r.status();
    let bytes = r.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}
