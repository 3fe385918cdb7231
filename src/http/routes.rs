//! Routes, the gate (rate limit, then API key) and JSON errors with one shape:
//! `{"error": {"status": 401, "code": "unauthorized", "message": "..."}}`.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use super::api::{Api, Gate, matches_filter};
use crate::core::status::Status;
use crate::core::{Input, Output};
use crate::daemon::approvals;
use crate::name::Name;

/// An API error: status, stable machine code, human message.
#[derive(Debug)]
pub struct ApiError {
    pub(super) status: StatusCode,
    code: &'static str,
    message: String,
}

impl ApiError {
    pub(super) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({"error": {"status": self.status.as_u16(), "code": self.code, "message": self.message}});
        let mut r = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        r
    }
}

type Result<T> = std::result::Result<T, ApiError>;

/// Who made an authenticated request (the key's name), for the audit log.
#[derive(Debug, Clone)]
struct Client(String);

/// The router over `api`.
pub fn router(api: Arc<Api>) -> Router {
    let limit = api.max_body();
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/version", get(version))
        .route("/openapi.json", get(openapi))
        .route("/metrics", get(metrics))
        .route("/v1/config", get(config))
        .route("/v1/groups", get(groups))
        .route("/v1/groups/{name}", get(group))
        .route("/v1/groups/{name}/pause", post(pause))
        .route("/v1/groups/{name}/resume", post(resume))
        .route("/v1/groups/{name}/scale", post(scale))
        .route("/v1/groups/{name}/history", get(super::history::history))
        .route("/v1/groups/{name}/forecast", get(super::history::forecast))
        .route("/v1/containers", get(containers))
        .route("/v1/containers/{key}", get(container))
        .route("/v1/containers/{key}/pause", post(container_pause))
        .route("/v1/containers/{key}/resume", post(container_resume))
        .route("/v1/containers/{key}/scale", post(container_scale))
        .route("/v1/decisions", get(decisions))
        .route("/v1/approvals", get(approvals))
        .route("/v1/approvals/{id}/approve", post(approve))
        .route("/v1/approvals/{id}/reject", post(reject))
        .fallback(|| async {
            ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
        })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "method not allowed here",
            )
        })
        .layer(DefaultBodyLimit::max(limit))
        .layer(middleware::from_fn_with_state(api.clone(), gate))
        .with_state(api)
}

/// Paths anyone may read: probes and self-description.
fn public(path: &str) -> bool {
    matches!(path, "/health" | "/ready" | "/version" | "/openapi.json")
}

/// Rate limit every request (so key guessing is limited too), then require a
/// key outside the public paths; count every response.
async fn gate(State(api): State<Arc<Api>>, mut req: Request, next: Next) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let r = match api.gate(peer) {
        Gate::Limited(wait) => {
            let mut r = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!("too many requests; retry in {} ms", wait.as_millis()),
            )
            .into_response();
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
            r
        }
        Gate::Pass if public(req.uri().path()) => next.run(req).await,
        Gate::Pass => {
            let token = req
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::trim);
            match token.map(|t| api.authenticate(t)) {
                None => ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    "missing `Authorization: Bearer <key>`",
                )
                .into_response(),
                Some(None) => {
                    ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "invalid API key")
                        .into_response()
                }
                Some(Some(name)) => {
                    req.extensions_mut().insert(Client(name));
                    next.run(req).await
                }
            }
        }
    };
    api.metrics.http_response(r.status().as_u16());
    r
}

async fn health() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

async fn ready(State(api): State<Arc<Api>>) -> Response {
    let (ok, body) = api.readiness().await;
    let code = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body)).into_response()
}

async fn version() -> Json<Value> {
    Json(
        json!({"name": env!("CARGO_PKG_NAME"), "version": env!("CARGO_PKG_VERSION"), "revision": super::GIT_REVISION}),
    )
}

async fn openapi() -> Json<Value> {
    Json(super::openapi::document())
}

async fn metrics(State(api): State<Arc<Api>>) -> Response {
    let status = match &api.engine {
        Some(e) => e.status().await,
        None => None,
    };
    if let Some(d) = api.approvals() {
        api.metrics
            .set_approvals_pending(d.book.lock().pending().count());
    }
    let text = api.metrics.render(status.as_ref(), &api.health);
    drop(status);
    // The snapshot and the scrape's gauges are gone: return their pages.
    crate::daemon::albatross::return_freed_memory();
    let mut r = text.into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(crate::http::metrics::CONTENT_TYPE),
    );
    r
}

async fn config(State(api): State<Arc<Api>>) -> Response {
    let mut r = api.config_view().into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

async fn status(api: &Api) -> Result<Status> {
    match &api.engine {
        None => Ok(Status {
            t_ms: 0,
            groups: Vec::new(),
        }),
        Some(e) => e.status().await.ok_or_else(|| {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "engine_stopped",
                "the engine task is not running",
            )
        }),
    }
}

async fn groups(State(api): State<Arc<Api>>) -> Result<Json<Status>> {
    Ok(Json(status(&api).await?))
}

async fn group(State(api): State<Arc<Api>>, Path(name): Path<String>) -> Result<Json<Value>> {
    let s = status(&api).await?;
    let g = s.group(&name).ok_or_else(|| no_group(&name))?;
    Ok(Json(json!({"t_ms": s.t_ms, "group": g})))
}

fn no_group(name: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "unknown_group",
        format!("no group named {name:?}"),
    )
}

/// The Proxmox loop's last snapshot, or why there is none.
fn snapshot(api: &Api) -> Result<crate::proxmox::view::Containers> {
    if !api.has_containers() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "proxmox_off",
            "no [[lxc]] containers are configured",
        ));
    }
    api.containers().ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_polled_yet",
            "the Proxmox cluster has not been polled successfully yet",
        )
    })
}

async fn containers(State(api): State<Arc<Api>>) -> Result<Json<Value>> {
    Ok(Json(json!(snapshot(&api)?)))
}

async fn container(State(api): State<Arc<Api>>, Path(key): Path<String>) -> Result<Json<Value>> {
    let s = snapshot(&api)?;
    let c = s.find(&key).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_container",
            format!("no container named {key:?} or with that vmid"),
        )
    })?;
    Ok(Json(
        json!({"t_ms": s.t_ms, "polled_at": s.polled_at, "container": c}),
    ))
}

#[derive(Deserialize)]
struct DecisionQuery {
    group: Option<String>,
    since: Option<u64>,
    limit: Option<usize>,
    /// Also read the tail of the JSONL decision log (older runs included).
    log: Option<bool>,
}

/// Bytes of the decision log's tail read for `?log=true`.
const LOG_TAIL: u64 = 256 * 1024;

async fn decisions(
    State(api): State<Arc<Api>>,
    q: std::result::Result<Query<DecisionQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>> {
    let Query(q) =
        q.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_query", e.body_text()))?;
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let mut items: Vec<Value> = Vec::new();
    if q.log == Some(true)
        && let Some(path) = api.decision_log()
    {
        let lines = tokio::task::spawn_blocking(move || read_tail(&path))
            .await
            .unwrap_or_default();
        items.extend(
            lines
                .into_iter()
                .filter(|v| matches_filter(v, q.group.as_deref(), q.since))
                .map(|mut v| {
                    v["source"] = json!("log");
                    v
                }),
        );
    }
    items.extend(
        api.recent(q.group.as_deref(), q.since)
            .into_iter()
            .map(|mut v| {
                v["source"] = json!("memory");
                v
            }),
    );
    // The newest `limit`, oldest first.
    let skip = items.len().saturating_sub(limit);
    let items: Vec<Value> = items.into_iter().skip(skip).collect();
    Ok(Json(json!({"count": items.len(), "items": items})))
}

fn read_tail(path: &std::path::Path) -> Vec<Value> {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut f) = std::fs::File::open(path) else {
        return Vec::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let start = len.saturating_sub(LOG_TAIL);
    let mut buf = Vec::new();
    if f.seek(SeekFrom::Start(start)).is_err() || f.read_to_end(&mut buf).is_err() {
        return Vec::new();
    }
    let text = String::from_utf8_lossy(&buf);
    // The first line may be cut by the seek; unparsable lines are skipped.
    text.lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

async fn command(
    api: &Api,
    name: &str,
    who: &Client,
    input: impl FnOnce(Name) -> Input,
) -> Result<Json<Value>> {
    let s = status(api).await?;
    let g = s.group(name).ok_or_else(|| no_group(name))?;
    let group = Name::parse(&g.name)
        .map_err(|e| ApiError::new(StatusCode::NOT_FOUND, "unknown_group", e.to_string()))?;
    let input = input(group);
    tracing::info!(client = %who.0, group = %name, command = ?input, "API command");
    let engine = api.engine.as_ref().ok_or_else(|| no_group(name))?;
    let out = engine.control(input).await.ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "engine_stopped",
            "the engine task is not running",
        )
    })?;
    let after = status(api).await?;
    Ok(Json(json!({
        "group": after.group(name),
        "outputs": out.iter().filter_map(|o: &Output| crate::jsonl::line(o, true)).collect::<Vec<_>>(),
    })))
}

fn unknown_container(key: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "unknown_container",
        format!("no container named {key:?} or with that vmid"),
    )
}

/// A container's clone group as of the last poll (its name and bounds), or why
/// an operator command cannot apply to it.
fn container_group(api: &Api, key: &str) -> Result<crate::core::status::GroupStatus> {
    let s = snapshot(api)?;
    let c = s.find(key).ok_or_else(|| unknown_container(key))?;
    c.horizontal.clone().ok_or_else(|| {
        ApiError::new(
            StatusCode::CONFLICT,
            "resize_only",
            format!(
                "{key}: a resize-only container (mode = \"vertical\") has no clone group to pause, resume or scale"
            ),
        )
    })
}

/// pause / resume / scale of a container's clone group, in the Proxmox loop.
async fn container_command(
    api: &Api,
    key: &str,
    who: &Client,
    input: impl FnOnce(Name) -> Input,
) -> Result<Json<Value>> {
    let g = container_group(api, key)?;
    let group = Name::parse(&g.name).map_err(|_| unknown_container(key))?;
    let input = input(group);
    tracing::info!(client = %who.0, container = %key, command = ?input, "API command");
    let out = api.container_control(input).await.ok_or_else(|| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "engine_stopped",
            "the Proxmox loop is not running",
        )
    })?;
    Ok(Json(json!({
        "container": key,
        "outputs": out.iter().filter_map(|o: &Output| crate::jsonl::line(o, true)).collect::<Vec<_>>(),
    })))
}

async fn container_pause(
    State(api): State<Arc<Api>>,
    Path(key): Path<String>,
    axum::Extension(who): axum::Extension<Client>,
) -> Result<Json<Value>> {
    container_command(&api, &key, &who, |group| Input::Pause { group }).await
}

async fn container_resume(
    State(api): State<Arc<Api>>,
    Path(key): Path<String>,
    axum::Extension(who): axum::Extension<Client>,
) -> Result<Json<Value>> {
    container_command(&api, &key, &who, |group| Input::Resume { group }).await
}

async fn container_scale(
    State(api): State<Arc<Api>>,
    Path(key): Path<String>,
    axum::Extension(who): axum::Extension<Client>,
    body: std::result::Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Json<Value>> {
    let target = scale_target(&body_bytes(body)?)?;
    let g = container_group(&api, &key)?;
    check_target(target, g.min_instances, g.max_instances)?;
    container_command(&api, &key, &who, |group| Input::Scale { group, target }).await
}

async fn pause(
    State(api): State<Arc<Api>>,
    Path(name): Path<String>,
    axum::Extension(who): axum::Extension<Client>,
) -> Result<Json<Value>> {
    command(&api, &name, &who, |group| Input::Pause { group }).await
}

async fn resume(
    State(api): State<Arc<Api>>,
    Path(name): Path<String>,
    axum::Extension(who): axum::Extension<Client>,
) -> Result<Json<Value>> {
    command(&api, &name, &who, |group| Input::Resume { group }).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScaleBody {
    target: u32,
}

/// The target of a `POST /v1/groups/{name}/scale` body (`{"target": <count>}`), or
/// the `400 bad_body` error the handler answers. Public for the `api_json` fuzz target.
pub fn scale_target(body: &[u8]) -> Result<u32> {
    let ScaleBody { target } = serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_body",
            format!("expected {{\"target\": <count>}}: {e}"),
        )
    })?;
    Ok(target)
}

/// A scale target must lie in the group's `min_instances..=max_instances`, else
/// `422 target_out_of_range`. Public for the `api_json` fuzz target.
pub fn check_target(target: u32, min_instances: u32, max_instances: u32) -> Result<()> {
    if !(min_instances..=max_instances).contains(&target) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "target_out_of_range",
            format!(
                "target {target} is outside min_instances..=max_instances ({min_instances}..={max_instances})"
            ),
        ));
    }
    Ok(())
}

async fn scale(
    State(api): State<Arc<Api>>,
    Path(name): Path<String>,
    axum::Extension(who): axum::Extension<Client>,
    body: std::result::Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Json<Value>> {
    let target = scale_target(&body_bytes(body)?)?;
    let s = status(&api).await?;
    let g = s.group(&name).ok_or_else(|| no_group(&name))?;
    check_target(target, g.min_instances, g.max_instances)?;
    command(&api, &name, &who, |group| Input::Scale { group, target }).await
}

/// The request body, or the error for one that could not be read.
fn body_bytes(
    body: std::result::Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Bytes> {
    body.map_err(|e| {
        let status = e.status();
        let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
            "body_too_large"
        } else {
            "bad_body"
        };
        ApiError::new(status, code, e.body_text())
    })
}

async fn approvals(State(api): State<Arc<Api>>) -> Json<Value> {
    let (items, recent): (Vec<Value>, Vec<Value>) = match api.approvals() {
        None => Default::default(),
        Some(d) => {
            let b = d.book.lock();
            let json = |e: &approvals::Entry| serde_json::to_value(e).unwrap_or_default();
            (
                b.pending().map(json).collect(),
                b.decided().map(json).collect(),
            )
        }
    };
    Json(json!({"count": items.len(), "items": items, "recent": recent}))
}

async fn approve(
    State(api): State<Arc<Api>>,
    Path(id): Path<String>,
    axum::Extension(who): axum::Extension<Client>,
) -> Result<Json<Value>> {
    verdict(&api, id, &who, true).await
}

async fn reject(
    State(api): State<Arc<Api>>,
    Path(id): Path<String>,
    axum::Extension(who): axum::Extension<Client>,
) -> Result<Json<Value>> {
    verdict(&api, id, &who, false).await
}

/// Hand the verdict to the loop that holds the decision; it re-checks and executes
/// (or answers the engine) and replies with the entry as decided.
async fn verdict(api: &Api, id: String, who: &Client, approve: bool) -> Result<Json<Value>> {
    let unknown = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_approval",
            format!("no approval with id {id:?}"),
        )
    };
    let decided = |s: approvals::State| {
        ApiError::new(
            StatusCode::CONFLICT,
            "already_decided",
            format!("approval {id:?} is already {}", s.as_str()),
        )
    };
    let stopped = || {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "engine_stopped",
            "the loop holding this decision is not running",
        )
    };
    let desk = api.approvals().ok_or_else(unknown)?;
    let owner = match desk.book.lock().get(&id) {
        None => return Err(unknown()),
        Some(e) if e.state != approvals::State::Pending => return Err(decided(e.state)),
        Some(e) => e.owner,
    };
    tracing::info!(client = %who.0, approval = %id, approve, "API approval verdict");
    let (reply, rx) = tokio::sync::oneshot::channel();
    let cmd = approvals::Command {
        id: id.clone(),
        approve,
        key: who.0.clone(),
        reply,
    };
    let sent = match owner {
        approvals::Owner::Albatross => match &api.engine {
            Some(e) => e.approval(cmd).await,
            None => false,
        },
        approvals::Owner::Proxmox => match &desk.proxmox {
            Some(tx) => tx.send(cmd).await.is_ok(),
            None => false,
        },
    };
    if !sent {
        return Err(stopped());
    }
    match rx.await {
        Ok(Ok(e)) => Ok(Json(json!({"approval": e}))),
        Ok(Err(approvals::Refusal::Unknown)) => Err(unknown()),
        Ok(Err(approvals::Refusal::Decided(s))) => Err(decided(s)),
        Err(_) => Err(stopped()),
    }
}
