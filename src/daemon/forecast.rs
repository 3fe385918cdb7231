//! The seasonal refit task: every minute it asks the engine which groups forecast
//! (`predictive` true or "shadow"), and fits those whose `forecast_refit` has
//! passed from the `[history]` database, on a blocking thread, off the engine's
//! path. Each fit goes to the engine as [`Input::Forecast`], so a recording
//! replays it exactly.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;

use super::runner::EngineHandle;
use crate::core::Input;
use crate::core::seasonal::Forecast;
use crate::forecast::{self, MAX_HISTORY, STEP_MS};
use crate::history::query::{self, Step};
use crate::history::store;
use crate::history::writer::unix_ms;
use crate::name::Name;

/// How often the task looks for groups due a refit.
pub const CHECK: Duration = Duration::from_secs(60);

/// Refit the engine's seasonal forecasts from the history at `path` until `stop`.
pub async fn refit(path: PathBuf, engine: EngineHandle, stop: CancellationToken) {
    // Wall time of the last attempt per group: a silent group is not refitted
    // every minute.
    let mut tried: HashMap<String, i64> = HashMap::new();
    let mut every = tokio::time::interval(CHECK);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = every.tick() => {}
        }
        let Some(status) = engine.status().await else {
            return;
        };
        let now = unix_ms(SystemTime::now());
        for g in status.groups {
            let Some(f) = g.forecast else { continue };
            let refit = i64::try_from(f.refit_ms).unwrap_or(i64::MAX);
            if tried.get(&g.name).is_some_and(|t| now - t < refit) {
                continue;
            }
            tried.insert(g.name.clone(), now);
            let Ok(group) = Name::parse(&g.name) else {
                continue;
            };
            let (p, name) = (path.clone(), g.name.clone());
            let fitted = tokio::task::spawn_blocking(move || from_history(&p, &name, now)).await;
            match fitted {
                Ok(Ok(forecast)) => {
                    tracing::debug!(group = %g.name, model = %forecast.model, mape = ?forecast.mape_hundredths, "seasonal forecast refitted");
                    let input = Input::Forecast {
                        group,
                        forecast: Arc::new(forecast),
                    };
                    if !engine.input(input).await {
                        return;
                    }
                }
                Ok(Err(e)) => {
                    tracing::warn!(group = %g.name, error = %format!("{e:#}"), "cannot refit the seasonal forecast");
                }
                Err(e) => tracing::warn!(group = %g.name, error = %e, "seasonal refit failed"),
            }
        }
    }
}

/// Fit group `group`'s forecast from the complete 5-minute steps of the history
/// at `path` before `now_ms` (the last [`MAX_HISTORY`] steps).
pub fn from_history(path: &Path, group: &str, now_ms: i64) -> anyhow::Result<Forecast> {
    let until = now_ms - now_ms.rem_euclid(STEP_MS);
    let conn = store::open_read(path)?;
    let Some(grp) = query::group_id(&conn, group)? else {
        return Ok(forecast::fit(&[], until));
    };
    let since = until - MAX_HISTORY as i64 * STEP_MS;
    let points = query::points(
        &conn,
        grp,
        since,
        until,
        Step::Every(STEP_MS),
        MAX_HISTORY + 1,
    )
    .map_err(anyhow::Error::msg)?;
    let series: Vec<(i64, f64)> = points.iter().map(|p| (p.t_ms, p.mean)).collect();
    let (y, end) = forecast::grid(&series);
    Ok(forecast::fit(&y, if y.is_empty() { until } else { end }))
}
