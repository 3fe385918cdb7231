//! Maintenance of the store: closed 5-minute buckets rolled up into aggregates (and
//! late rows added to theirs), rows past their retention deleted in bounded slices,
//! free pages handed back to the file system.

use std::time::Instant;

use rusqlite::{Connection, OptionalExtension, params};

use super::*;

// One merge rule per aggregate table, for the roll-up and for late rows alike.
macro_rules! sample_5m_merge {
    () => {
        "ON CONFLICT (bucket, vm) DO UPDATE SET n = n + excluded.n,
           min_bp = min(min_bp, excluded.min_bp), max_bp = max(max_bp, excluded.max_bp),
           sum_bp = sum_bp + excluded.sum_bp"
    };
}

macro_rules! group_5m_merge {
    () => {
        "ON CONFLICT (grp, bucket) DO UPDATE SET n = n + excluded.n,
           min_demand = min(min_demand, excluded.min_demand), max_demand = max(max_demand, excluded.max_demand),
           sum_demand = sum_demand + excluded.sum_demand,
           min_bp = min(min_bp, excluded.min_bp), max_bp = max(max_bp, excluded.max_bp),
           sum_bp = sum_bp + excluded.sum_bp,
           max_instances = max(max_instances, excluded.max_instances),
           sum_instances = sum_instances + excluded.sum_instances"
    };
}

/// Buckets rolled up per maintenance step at most (catching up after a pause is
/// spread over several steps so writes are never held up for long).
pub(super) const ROLLUP_BUCKETS: usize = 48;
/// Time one maintenance step may spend deleting expired rows.
const DELETE_BUDGET: Duration = Duration::from_millis(250);
/// Rows older than the cutoff are deleted this many milliseconds at a time.
const DELETE_SLICE_MS: i64 = 10 * 60_000;

impl Store {
    /// Where the roll-up stands: every bucket before this is aggregated.
    pub fn rolled_up(&self) -> rusqlite::Result<Option<i64>> {
        Ok(self.rolled)
    }

    /// One maintenance step at `now` (Unix ms): roll up closed buckets, delete rows
    /// past their retention (raw rows only once rolled up), hand back free pages.
    pub fn maintain(&mut self, now: i64, keep: Retention) -> rusqlite::Result<Maintained> {
        let mut done = Maintained {
            buckets_rolled: self.roll_up(now)?,
            ..Maintained::default()
        };
        let w = self.rolled_up()?.unwrap_or(i64::MIN);
        let raw_cut = now.saturating_sub(ms(keep.raw)).min(w);
        let agg_cut = now.saturating_sub(ms(keep.aggregates));
        let started = Instant::now();
        for (table, col, cut) in [
            ("sample", "t", raw_cut),
            ("evaluation", "t", raw_cut),
            ("sample_5m", "bucket", agg_cut),
            ("group_5m", "bucket", agg_cut),
            ("decision", "t", agg_cut),
        ] {
            done.rows_deleted += self.delete_before(table, col, cut, started)?;
        }
        done.pages_freed = self.shrink()?;
        Ok(done)
    }

    /// Aggregate closed buckets from the watermark on (empty stretches skipped).
    fn roll_up(&mut self, now: i64) -> rusqlite::Result<usize> {
        let closed = (now - LATE_MS).div_euclid(BUCKET_MS) * BUCKET_MS;
        let mut rolled = 0;
        while rolled < ROLLUP_BUCKETS {
            let w = self.rolled_up()?;
            // The first bucket at or after the watermark that has rows.
            let first: Option<i64> = self.conn.query_row(
                "SELECT min(m) FROM (SELECT min(t) AS m FROM sample WHERE t >= ?1 UNION ALL SELECT min(t) FROM evaluation WHERE t >= ?1)",
                [w.unwrap_or(i64::MIN)],
                |r| r.get(0),
            )?;
            let Some(first) = first else {
                return Ok(rolled);
            };
            let b = first.div_euclid(BUCKET_MS) * BUCKET_MS;
            if b >= closed {
                return Ok(rolled);
            }
            let tx = self.conn.transaction()?;
            tx.prepare_cached(concat!(
                "INSERT INTO sample_5m (bucket, vm, grp, n, min_bp, max_bp, sum_bp)
                 SELECT ?1, vm, max(grp), count(*), min(bp), max(bp), sum(bp)
                 FROM sample WHERE t >= ?1 AND t < ?2 GROUP BY vm ",
                sample_5m_merge!()
            ))?
            .execute([b, b + BUCKET_MS])?;
            tx.prepare_cached(concat!(
                "INSERT INTO group_5m (grp, bucket, n, min_demand, max_demand, sum_demand, min_bp, max_bp, sum_bp, max_instances, sum_instances)
                 SELECT grp, ?1, count(*), min(demand), max(demand), sum(demand), min(avg_bp), max(avg_bp), sum(avg_bp), max(instances), sum(instances)
                 FROM evaluation WHERE t >= ?1 AND t < ?2 GROUP BY grp ",
                group_5m_merge!()
            ))?
            .execute([b, b + BUCKET_MS])?;
            // The watermark moves in the same transaction: a crash never counts a
            // bucket twice.
            tx.prepare_cached(
                "INSERT INTO meta (key, value) VALUES ('rolled_up', ?1) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            )?
            .execute([b + BUCKET_MS])?;
            tx.commit()?;
            self.rolled = Some(b + BUCKET_MS);
            rolled += 1;
        }
        Ok(rolled)
    }

    /// Delete rows of `table` with `col < cut`, oldest first in slices, within the
    /// step's time budget (the rest waits for the next step).
    fn delete_before(
        &mut self,
        table: &str,
        col: &str,
        cut: i64,
        started: Instant,
    ) -> rusqlite::Result<usize> {
        let mut deleted = 0;
        loop {
            let oldest: Option<i64> =
                self.conn
                    .query_row(&format!("SELECT min({col}) FROM {table}"), [], |r| r.get(0))?;
            let Some(oldest) = oldest.filter(|o| *o < cut) else {
                return Ok(deleted);
            };
            let upto = oldest.saturating_add(DELETE_SLICE_MS).min(cut);
            deleted += self
                .conn
                .prepare_cached(&format!("DELETE FROM {table} WHERE {col} < ?1"))?
                .execute([upto])?;
            if started.elapsed() > DELETE_BUDGET {
                return Ok(deleted);
            }
        }
    }

    /// Hand free pages back to the file system once they exceed a tenth of the
    /// file (a steady state reuses its own free pages; after a retention cut or a
    /// quiet period the file shrinks). Bounded per step.
    fn shrink(&mut self) -> rusqlite::Result<i64> {
        let free: i64 = self
            .conn
            .query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
        let pages: i64 = self.conn.query_row("PRAGMA page_count", [], |r| r.get(0))?;
        if free == 0 || free * 10 <= pages {
            return Ok(0);
        }
        let n = (free - pages / 20).clamp(0, 20_000);
        self.conn
            .execute_batch(&format!("PRAGMA incremental_vacuum({n});"))?;
        Ok(n)
    }
}

/// Add one late sample to its (already rolled-up) bucket's aggregate.
pub(super) fn late_sample(
    tx: &rusqlite::Transaction<'_>,
    t: i64,
    vm: i64,
    grp: Option<i64>,
    bp: u32,
) -> rusqlite::Result<()> {
    tx.prepare_cached(concat!(
        "INSERT INTO sample_5m (bucket, vm, grp, n, min_bp, max_bp, sum_bp) VALUES (?1, ?2, ?3, 1, ?4, ?4, ?4) ",
        sample_5m_merge!()
    ))?
    .execute(params![t.div_euclid(BUCKET_MS) * BUCKET_MS, vm, grp, bp])?;
    Ok(())
}

/// Add one late evaluation to its (already rolled-up) bucket's aggregate.
pub(super) fn late_evaluation(
    tx: &rusqlite::Transaction<'_>,
    t: i64,
    grp: i64,
    avg_bp: u32,
    instances: u32,
    demand: i64,
) -> rusqlite::Result<()> {
    tx.prepare_cached(concat!(
        "INSERT INTO group_5m (grp, bucket, n, min_demand, max_demand, sum_demand, min_bp, max_bp, sum_bp, max_instances, sum_instances)
         VALUES (?1, ?2, 1, ?3, ?3, ?3, ?4, ?4, ?4, ?5, ?5) ",
        group_5m_merge!()
    ))?
    .execute(params![grp, t.div_euclid(BUCKET_MS) * BUCKET_MS, demand, avg_bp, instances])?;
    Ok(())
}

/// The roll-up watermark of a connection's file.
pub(in crate::history) fn rolled_up(conn: &Connection) -> rusqlite::Result<Option<i64>> {
    conn.query_row("SELECT value FROM meta WHERE key = 'rolled_up'", [], |r| {
        r.get(0)
    })
    .optional()
}
