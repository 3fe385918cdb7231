//! Reading the history back: a group's demand (and CPU, instances) over a time
//! range at a step, and its decisions. Steps below 5 minutes read raw rows; steps
//! of 5 minutes and more read the aggregates, plus the raw rows newer than the
//! roll-up watermark so the latest minutes are never missing.

use std::collections::BTreeMap;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use super::store::{BUCKET_MS, rolled_up};

/// Which rows a query reads and how it groups them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Every raw evaluation as its own point.
    Raw,
    /// Points `ms` apart (aligned on the Unix epoch).
    Every(i64),
}

impl Step {
    /// `raw`, or a duration such as `10s`, `5m`, `1h`.
    pub fn parse(s: &str) -> Result<Self, String> {
        if s == "raw" {
            return Ok(Self::Raw);
        }
        let d = humantime::parse_duration(s).map_err(|e| {
            format!("step {s:?}: {e} (expected raw or a duration such as 10s, 5m, 1h)")
        })?;
        if d < Duration::from_millis(10) {
            return Err(format!("step {s:?}: must be at least 10ms"));
        }
        Ok(Self::Every(
            i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        ))
    }

    /// Whether this step reads the 5-minute aggregates.
    pub fn aggregated(self) -> bool {
        matches!(self, Self::Every(ms) if ms >= BUCKET_MS)
    }

    /// The label used in answers.
    pub fn label(self) -> String {
        match self {
            Self::Raw => "raw".into(),
            Self::Every(ms) => {
                humantime::format_duration(Duration::from_millis(ms.unsigned_abs())).to_string()
            }
        }
    }
}

/// A point in time given as RFC 3339 (`2026-11-23T10:00:00Z`), `now`, or a
/// duration before `now` (`-1h`, `2d`, `90m`). Returns Unix milliseconds.
pub fn parse_time(s: &str, now_ms: i64) -> Result<i64, String> {
    let s = s.trim();
    if s == "now" {
        return Ok(now_ms);
    }
    if let Ok(t) = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339) {
        return i64::try_from(t.unix_timestamp_nanos() / 1_000_000)
            .map_err(|_| format!("{s:?} is out of range"));
    }
    let ago = s.strip_prefix('-').unwrap_or(s);
    match humantime::parse_duration(ago) {
        Ok(d) => Ok(now_ms.saturating_sub(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))),
        Err(_) => Err(format!(
            "{s:?} is neither RFC 3339 (2026-11-23T10:00:00Z), now, nor a duration before now (-1h, 2d)"
        )),
    }
}

/// RFC 3339 of Unix milliseconds.
pub fn rfc3339(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// One point of a group's history. Demand in vCPUs, CPU in percent of the
/// instances' vCPUs (the group average the engine evaluated).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Point {
    pub time: String,
    pub t_ms: i64,
    /// Evaluations behind the point.
    pub samples: u64,
    pub min: f64,
    pub mean: f64,
    pub max: f64,
    pub cpu_min: f64,
    pub cpu_mean: f64,
    pub cpu_max: f64,
    /// Most instances counted in the step.
    pub instances: u32,
}

/// Running totals of one step (milli-vCPUs, basis points).
#[derive(Debug, Clone, Copy)]
struct Acc {
    n: i64,
    min_d: i64,
    max_d: i64,
    sum_d: i64,
    min_bp: i64,
    max_bp: i64,
    sum_bp: i64,
    instances: i64,
}

impl Acc {
    fn add(&mut self, o: &Acc) {
        self.n += o.n;
        self.min_d = self.min_d.min(o.min_d);
        self.max_d = self.max_d.max(o.max_d);
        self.sum_d += o.sum_d;
        self.min_bp = self.min_bp.min(o.min_bp);
        self.max_bp = self.max_bp.max(o.max_bp);
        self.sum_bp += o.sum_bp;
        self.instances = self.instances.max(o.instances);
    }

    fn point(&self, t_ms: i64) -> Point {
        let n = self.n.max(1) as f64;
        let r4 = |x: f64| (x * 10_000.0).round() / 10_000.0;
        Point {
            time: rfc3339(t_ms),
            t_ms,
            samples: u64::try_from(self.n).unwrap_or(0),
            min: r4(self.min_d as f64 / 1000.0),
            mean: r4(self.sum_d as f64 / n / 1000.0),
            max: r4(self.max_d as f64 / 1000.0),
            cpu_min: r4(self.min_bp as f64 / 100.0),
            cpu_mean: r4(self.sum_bp as f64 / n / 100.0),
            cpu_max: r4(self.max_bp as f64 / 100.0),
            instances: u32::try_from(self.instances).unwrap_or(u32::MAX),
        }
    }
}

/// One recorded decision.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DecisionRow {
    pub time: String,
    pub t_ms: i64,
    pub action: String,
    pub instance: String,
    pub reason: String,
    pub emergency: bool,
}

/// The id of a group's name, if anything about it was recorded.
pub fn group_id(conn: &Connection, group: &str) -> rusqlite::Result<Option<i64>> {
    conn.query_row("SELECT id FROM name WHERE name = ?1", [group], |r| r.get(0))
        .optional()
}

/// The points of group `grp` in `[since, until)` at `step`, oldest first; at most
/// `limit` (an error asks for a larger step beyond that).
pub fn points(
    conn: &Connection,
    grp: i64,
    since: i64,
    until: i64,
    step: Step,
    limit: usize,
) -> Result<Vec<Point>, String> {
    let sql = |e: rusqlite::Error| format!("reading the history: {e}");
    let mut out: BTreeMap<i64, Acc> = BTreeMap::new();
    let too_many = || {
        format!("more than {limit} points in that range: ask for a larger step or a shorter range")
    };
    let key = |t: i64| match step {
        Step::Raw => t,
        Step::Every(ms) => t.div_euclid(ms) * ms,
    };
    let mut push = |t: i64, a: Acc| -> Result<(), String> {
        let k = key(t);
        let full = out.len() >= limit;
        match out.entry(k) {
            std::collections::btree_map::Entry::Occupied(mut e) => e.get_mut().add(&a),
            std::collections::btree_map::Entry::Vacant(_) if full => return Err(too_many()),
            std::collections::btree_map::Entry::Vacant(e) => {
                e.insert(a);
            }
        }
        Ok(())
    };
    // Raw rows start where the aggregates end.
    let mut raw_from = since;
    if step.aggregated() {
        let w = rolled_up(conn).map_err(sql)?.unwrap_or(i64::MIN);
        let mut st = conn
            .prepare_cached(
                "SELECT bucket, n, min_demand, max_demand, sum_demand, min_bp, max_bp, sum_bp, max_instances
                 FROM group_5m WHERE grp = ?1 AND bucket >= ?2 AND bucket < ?3 ORDER BY bucket",
            )
            .map_err(sql)?;
        let mut rows = st
            .query(params![
                grp,
                since.div_euclid(BUCKET_MS) * BUCKET_MS,
                until.min(w)
            ])
            .map_err(sql)?;
        while let Some(r) = rows.next().map_err(sql)? {
            let g = |i| r.get::<_, i64>(i).map_err(sql);
            push(
                g(0)?,
                Acc {
                    n: g(1)?,
                    min_d: g(2)?,
                    max_d: g(3)?,
                    sum_d: g(4)?,
                    min_bp: g(5)?,
                    max_bp: g(6)?,
                    sum_bp: g(7)?,
                    instances: g(8)?,
                },
            )?;
        }
        raw_from = raw_from.max(w);
    }
    let mut st = conn
        .prepare_cached(
            "SELECT t, demand, avg_bp, instances FROM evaluation
             WHERE grp = ?1 AND t >= ?2 AND t < ?3 ORDER BY t",
        )
        .map_err(sql)?;
    let mut rows = st.query(params![grp, raw_from, until]).map_err(sql)?;
    while let Some(r) = rows.next().map_err(sql)? {
        let g = |i| r.get::<_, i64>(i).map_err(sql);
        let (d, bp) = (g(1)?, g(2)?);
        push(
            g(0)?,
            Acc {
                n: 1,
                min_d: d,
                max_d: d,
                sum_d: d,
                min_bp: bp,
                max_bp: bp,
                sum_bp: bp,
                instances: g(3)?,
            },
        )?;
    }
    Ok(out.iter().map(|(t, a)| a.point(*t)).collect())
}

/// Decisions about group `grp` in `[since, until)`, oldest first, the newest
/// `limit` of them.
pub fn decisions(
    conn: &Connection,
    grp: i64,
    since: i64,
    until: i64,
    limit: usize,
) -> rusqlite::Result<Vec<DecisionRow>> {
    let mut st = conn.prepare_cached(
        "SELECT t, action, instance, reason, emergency FROM decision
         WHERE grp = ?1 AND t >= ?2 AND t < ?3 ORDER BY t DESC LIMIT ?4",
    )?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut v: Vec<DecisionRow> = st
        .query_map(params![grp, since, until, limit], |r| {
            let t: i64 = r.get(0)?;
            Ok(DecisionRow {
                time: rfc3339(t),
                t_ms: t,
                action: r.get(1)?,
                instance: r.get(2)?,
                reason: r.get(3)?,
                emergency: r.get(4)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    v.reverse();
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_as_rfc3339_now_or_a_duration_before_now() {
        let now = 1_800_000_000_000;
        assert_eq!(parse_time("now", now), Ok(now));
        assert_eq!(parse_time("-1h", now), Ok(now - 3_600_000));
        assert_eq!(parse_time("2d", now), Ok(now - 2 * 86_400_000));
        assert_eq!(
            parse_time("2026-11-23T10:00:00Z", now),
            Ok(1_795_428_000_000)
        );
        assert!(
            parse_time("yesterday", now)
                .unwrap_err()
                .contains("RFC 3339")
        );
        assert_eq!(rfc3339(1_795_428_000_000), "2026-11-23T10:00:00Z");
    }

    #[test]
    fn steps_choose_raw_rows_or_aggregates() {
        assert_eq!(Step::parse("raw"), Ok(Step::Raw));
        assert_eq!(Step::parse("10s"), Ok(Step::Every(10_000)));
        assert!(!Step::parse("1m").unwrap().aggregated());
        assert!(Step::parse("5m").unwrap().aggregated());
        assert!(Step::parse("1h").unwrap().aggregated());
        assert!(Step::parse("1ms").is_err());
        assert!(Step::parse("soon").unwrap_err().contains("step \"soon\""));
    }
}
