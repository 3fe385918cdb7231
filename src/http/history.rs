//! `GET /v1/groups/{name}/history` and `GET /v1/groups/{name}/forecast`: the
//! stored history (`[history]`), read on a blocking thread through a read-only
//! connection of its own, never through the writer.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::api::Api;
use super::routes::ApiError;
use crate::history::forecast;
use crate::history::query::{self, Step, rfc3339};
use crate::history::store::{self, BUCKET_MS};
use crate::history::writer::unix_ms;

type Result<T> = std::result::Result<T, ApiError>;

/// Points one answer carries at most.
const MAX_POINTS: usize = 10_000;
/// Decisions one history answer carries at most (the newest).
const MAX_DECISIONS: usize = 1_000;
/// Lead times a forecast carries at most.
const MAX_HORIZON_STEPS: usize = 1_000;
/// The default step is raw rows for ranges up to this long.
const RAW_SPAN: i64 = 6 * 3_600_000;

#[derive(Deserialize)]
pub(super) struct HistoryQuery {
    since: Option<String>,
    until: Option<String>,
    step: Option<String>,
}

#[derive(Deserialize)]
pub(super) struct ForecastQuery {
    horizon: Option<String>,
    step: Option<String>,
    since: Option<String>,
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "bad_query", message)
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// The history file, or 404 when `[history]` is off.
fn history_path(api: &Api) -> Result<std::path::PathBuf> {
    api.history.path.clone().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "history_off",
            "the history is off: set [history] path in the configuration",
        )
    })
}

fn time(s: &Option<String>, default: i64, now: i64, what: &str) -> Result<i64> {
    match s {
        None => Ok(default),
        Some(s) => query::parse_time(s, now).map_err(|e| bad(format!("{what}: {e}"))),
    }
}

/// Read group `name`'s points (and decisions, when asked) on a blocking thread.
async fn read(
    path: std::path::PathBuf,
    name: String,
    (since, until, step): (i64, i64, Step),
    with_decisions: bool,
) -> Result<(Vec<query::Point>, Vec<query::DecisionRow>)> {
    tokio::task::spawn_blocking(move || {
        let unavailable =
            |e: String| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "history_unavailable", e);
        let conn = store::open_read(&path).map_err(|e| unavailable(format!("{e:#}")))?;
        let grp = query::group_id(&conn, &name)
            .map_err(|e| unavailable(e.to_string()))?
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::NOT_FOUND,
                    "unknown_group",
                    format!("nothing recorded for a group named {name:?}"),
                )
            })?;
        let points = query::points(&conn, grp, since, until, step, MAX_POINTS)
            .map_err(|e| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "too_many_points", e))?;
        let decisions = if with_decisions {
            query::decisions(&conn, grp, since, until, MAX_DECISIONS)
                .map_err(|e| unavailable(e.to_string()))?
        } else {
            Vec::new()
        };
        Ok((points, decisions))
    })
    .await
    .map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("history query failed: {e}"),
        )
    })?
}

pub(super) async fn history(
    State(api): State<Arc<Api>>,
    Path(name): Path<String>,
    q: std::result::Result<Query<HistoryQuery>, QueryRejection>,
) -> Result<Json<Value>> {
    let Query(q) = q.map_err(|e| bad(e.body_text()))?;
    let path = history_path(&api)?;
    let now = unix_ms(SystemTime::now());
    let since = time(&q.since, now - 86_400_000, now, "since")?;
    let until = time(&q.until, now + 1, now, "until")?;
    if since >= until {
        return Err(bad("since must be before until"));
    }
    // Saturating: `since=-300000000y` with a far `until` must not overflow (found
    // by reading the fuzz target's neighbourhood).
    let span = until.saturating_sub(since);
    let step = match &q.step {
        Some(s) => Step::parse(s).map_err(bad)?,
        // Raw rows while they cover a short range, else the aggregates.
        None if span <= RAW_SPAN && since >= now.saturating_sub(ms(api.history.raw_retention)) => {
            Step::Raw
        }
        None => Step::Every(BUCKET_MS),
    };
    if let Step::Every(ms) = step
        && span / ms > MAX_POINTS as i64
    {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "too_many_points",
            format!(
                "more than {MAX_POINTS} steps of {} in that range: ask for a larger step or a shorter range",
                step.label()
            ),
        ));
    }
    let (points, decisions) = read(path, name.clone(), (since, until, step), true).await?;
    Ok(Json(json!({
        "group": name,
        "since": rfc3339(since),
        "until": rfc3339(until),
        "step": step.label(),
        "source": if step.aggregated() { "5m" } else { "raw" },
        "units": {"demand": "vCPUs (average CPU share x fresh instances x vCPUs)", "cpu": "percent of the instances' vCPUs"},
        "count": points.len(),
        "points": points,
        "decisions": decisions,
    })))
}

pub(super) async fn forecast(
    State(api): State<Arc<Api>>,
    Path(name): Path<String>,
    q: std::result::Result<Query<ForecastQuery>, QueryRejection>,
) -> Result<Json<Value>> {
    let Query(q) = q.map_err(|e| bad(e.body_text()))?;
    let path = history_path(&api)?;
    let now = unix_ms(SystemTime::now());
    let horizon = match &q.horizon {
        None => Duration::from_secs(3_600),
        Some(h) => humantime::parse_duration(h)
            .map_err(|e| bad(format!("horizon {h:?}: {e} (a duration such as 1h)")))?,
    };
    let step = match &q.step {
        None => Step::Every(BUCKET_MS),
        Some(s) => Step::parse(s).map_err(bad)?,
    };
    let Step::Every(step_ms) = step else {
        return Err(bad(
            "step: a forecast needs a regular step (for example 5m), not raw",
        ));
    };
    let steps = usize::try_from(
        horizon
            .as_millis()
            .div_ceil(u128::from(step_ms.unsigned_abs())),
    )
    .unwrap_or(usize::MAX);
    if !(1..=MAX_HORIZON_STEPS).contains(&steps) {
        return Err(bad(format!(
            "horizon: between one step and {MAX_HORIZON_STEPS} steps of {}",
            step.label()
        )));
    }
    let since = time(&q.since, now - 7 * 86_400_000, now, "since")?;
    let seasonal = seasonal(&api, &name, now, horizon).await;
    let holt = match read(path, name.clone(), (since, now + 1, step), false).await {
        Ok((points, _)) => {
            let series: Vec<(i64, f64)> = points.iter().map(|p| (p.t_ms, p.mean)).collect();
            forecast::forecast(&series, step_ms, steps)
        }
        // The seasonal status says what history is missing.
        Err(e) if e.status == StatusCode::NOT_FOUND && seasonal.is_some() => None,
        Err(e) => return Err(e),
    };
    let Some(f) = holt else {
        if seasonal.is_none() {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "no_history",
                format!("no demand recorded for {name:?} since {}", rfc3339(since)),
            ));
        }
        return Ok(Json(json!({
            "group": name,
            "step": step.label(),
            "horizon": humantime::format_duration(horizon).to_string(),
            "since": rfc3339(since),
            "units": {"demand": "vCPUs"},
            "history_points": 0,
            "points": [],
            "seasonal": seasonal,
        })));
    };
    Ok(Json(json!({
        "group": name,
        "step": step.label(),
        "horizon": humantime::format_duration(horizon).to_string(),
        "since": rfc3339(since),
        "method": "Holt (double exponential smoothing, the engine's forecaster) over the mean demand per step",
        "interval": format!(
            "forecast +/- the {}th percentile of the recent absolute errors at the same lead (up to {} per lead; none before {} are scored)",
            (forecast::QUANTILE * 100.0).round(),
            forecast::ERRORS_KEPT,
            forecast::MIN_SCORED
        ),
        "units": {"demand": "vCPUs"},
        "history_points": f.history_points,
        "last": {"time": rfc3339(f.last_t_ms), "t_ms": f.last_t_ms, "demand": f.last_demand},
        "mean_abs_error": f.mean_abs_error,
        "points": f.points,
        "seasonal": seasonal,
    })))
}

/// The engine's seasonal forecast of group `name` (`predictive` true or
/// "shadow"): its status, measured error and the curve from `now` over `horizon`.
async fn seasonal(api: &Api, name: &str, now: i64, horizon: Duration) -> Option<Value> {
    let status = api.engine.as_ref()?.status().await?;
    let f = status.group(name)?.forecast.clone()?;
    let end = now.saturating_add(ms(horizon));
    let points: Vec<Value> = f
        .curve
        .as_ref()
        .map(|c| {
            (0..c.points.len())
                .map(|i| (c.start_ms + c.step_ms as i64 * i as i64, c.points[i]))
                .filter(|(t, _)| *t + c.step_ms as i64 > now && *t < end)
                .map(|(t, d)| json!({"time": rfc3339(t), "t_ms": t, "demand": d as f64 / 10_000.0}))
                .collect()
        })
        .unwrap_or_default();
    let span =
        |ms: u64| humantime::format_duration(Duration::from_secs(ms / 60_000 * 60)).to_string();
    Some(json!({
        "mode": f.mode,
        "status": f.status,
        "message": f.message,
        "model": f.model,
        "fitted_at": f.fitted_at_ms.map(rfc3339),
        "fitted_at_ms": f.fitted_at_ms,
        "history_span": span(f.history_ms),
        "history_ms": f.history_ms,
        "mape_percent": f.mape_percent,
        "max_error_percent": f.max_error_percent,
        "lead": span(f.lead_ms),
        "step": "5m",
        "horizon": humantime::format_duration(horizon).to_string(),
        "units": {"demand": "vCPUs"},
        "points": points,
    }))
}
