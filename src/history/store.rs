//! The SQLite file: opening (lock, integrity, schema version), batched inserts, and
//! maintenance: closed 5-minute buckets rolled up, old rows deleted, free pages
//! handed back so the file does not keep growing.
//!
//! Times are Unix milliseconds. Every write runs on the one writer thread; readers
//! ([`super::query`]) open their own read-only connections (WAL lets them read
//! while the writer writes).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, params};

use crate::daemon::lock::StateLock;
use crate::name::Name;

/// Width of an aggregate bucket.
pub const BUCKET_MS: i64 = 300_000;
/// Schema version in `PRAGMA user_version`.
pub const VERSION: i64 = 1;
/// Rows may reach the writer this late (queue, batching): a bucket is rolled up
/// only once it closed this long ago.
pub const LATE_MS: i64 = 60_000;
/// Buckets rolled up per maintenance step at most (catching up after a pause is
/// spread over several steps so writes are never held up for long).
const ROLLUP_BUCKETS: usize = 48;
/// Time one maintenance step may spend deleting expired rows.
const DELETE_BUDGET: Duration = Duration::from_millis(250);
/// Rows older than the cutoff are deleted this many milliseconds at a time.
const DELETE_SLICE_MS: i64 = 10 * 60_000;

const SCHEMA: &str = "
CREATE TABLE name (id INTEGER PRIMARY KEY, name TEXT NOT NULL UNIQUE);
-- One computed CPU share of one instance (bp: basis points of its vCPUs).
CREATE TABLE sample (
    t INTEGER NOT NULL, vm INTEGER NOT NULL, grp INTEGER,
    bp INTEGER NOT NULL, vcpus INTEGER NOT NULL,
    PRIMARY KEY (t, vm)) WITHOUT ROWID;
CREATE TABLE sample_5m (
    bucket INTEGER NOT NULL, vm INTEGER NOT NULL, grp INTEGER,
    n INTEGER NOT NULL, min_bp INTEGER NOT NULL, max_bp INTEGER NOT NULL, sum_bp INTEGER NOT NULL,
    PRIMARY KEY (bucket, vm)) WITHOUT ROWID;
-- One group evaluation; demand in milli-vCPUs (average share x fresh vCPUs).
CREATE TABLE evaluation (
    grp INTEGER NOT NULL, t INTEGER NOT NULL,
    avg_bp INTEGER NOT NULL, fresh INTEGER NOT NULL, instances INTEGER NOT NULL,
    demand INTEGER NOT NULL,
    PRIMARY KEY (grp, t)) WITHOUT ROWID;
CREATE INDEX evaluation_t ON evaluation (t);
CREATE TABLE group_5m (
    grp INTEGER NOT NULL, bucket INTEGER NOT NULL, n INTEGER NOT NULL,
    min_demand INTEGER NOT NULL, max_demand INTEGER NOT NULL, sum_demand INTEGER NOT NULL,
    min_bp INTEGER NOT NULL, max_bp INTEGER NOT NULL, sum_bp INTEGER NOT NULL,
    max_instances INTEGER NOT NULL, sum_instances INTEGER NOT NULL,
    PRIMARY KEY (grp, bucket)) WITHOUT ROWID;
CREATE INDEX group_5m_bucket ON group_5m (bucket);
CREATE TABLE decision (
    t INTEGER NOT NULL, grp INTEGER NOT NULL, action TEXT NOT NULL,
    instance TEXT NOT NULL, reason TEXT NOT NULL, emergency INTEGER NOT NULL);
CREATE INDEX decision_grp_t ON decision (grp, t);
CREATE INDEX decision_t ON decision (t);
-- rolled_up: every bucket that starts before this (ms) is in the aggregates.
CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
";

/// One thing to store. Times are Unix milliseconds.
#[derive(Debug, Clone, PartialEq)]
pub enum Row {
    Sample {
        t: i64,
        vm: Arc<Name>,
        group: Option<Arc<Name>>,
        bp: u32,
        vcpus: u32,
    },
    Evaluation {
        t: i64,
        group: Arc<Name>,
        avg_bp: u32,
        fresh: u32,
        instances: u32,
        /// Milli-vCPUs of work: the average share × the fresh members' vCPUs.
        demand: u64,
    },
    Decision {
        t: i64,
        group: Arc<Name>,
        action: &'static str,
        instance: Arc<Name>,
        reason: String,
        emergency: bool,
    },
}

/// Retention, as the maintenance step applies it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub raw: Duration,
    pub aggregates: Duration,
}

/// What one maintenance step did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Maintained {
    pub buckets_rolled: usize,
    pub rows_deleted: usize,
    pub pages_freed: i64,
}

/// The writer's connection, holding the file's lock for its life.
pub struct Store {
    conn: Connection,
    names: HashMap<Name, i64>,
    path: PathBuf,
    _lock: StateLock,
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// Explain an SQLite error at open in the operator's terms.
fn explain(path: &Path, e: rusqlite::Error) -> anyhow::Error {
    let p = path.display();
    match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => anyhow::anyhow!(
            "history.path {p}: the database is locked by another process ({e}); stop the other writer or point history.path elsewhere"
        ),
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => anyhow::anyhow!(
            "history.path {p}: not a usable SQLite database ({e}); move the file away to start a new history"
        ),
        _ => anyhow::anyhow!("history.path {p}: {e}"),
    }
}

impl Store {
    /// Open (or create) the history at `path` for writing. Fails, naming the path,
    /// if another process holds it, if it is not a healthy SQLite file, or if its
    /// schema is not one this build knows.
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| {
                format!(
                    "history.path {}: creating {}",
                    path.display(),
                    dir.display()
                )
            })?;
        }
        // Our own writers exclude each other (with the holder's pid in the message)...
        let lock = StateLock::acquire(path)
            .with_context(|| format!("history.path {}: already in use", path.display()))?;
        let conn = Connection::open(path).map_err(|e| explain(path, e))?;
        let mut store = Self {
            conn,
            names: HashMap::new(),
            path: path.to_owned(),
            _lock: lock,
        };
        store
            .prepare()
            .map_err(|e| match e.downcast::<rusqlite::Error>() {
                Ok(e) => explain(path, e),
                Err(e) => e.context(format!("history.path {}", path.display())),
            })?;
        Ok(store)
    }

    fn prepare(&mut self) -> anyhow::Result<()> {
        let c = &self.conn;
        // ...and anything else writing to the file (an sqlite3 shell in a write
        // transaction, an EXCLUSIVE lock) shows up now, not at the first batch.
        c.busy_timeout(Duration::ZERO)?;
        c.execute_batch("BEGIN IMMEDIATE; ROLLBACK;")?;
        let check: Vec<String> = c
            .prepare("PRAGMA quick_check(5)")?
            .query_map([], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        if check != ["ok"] {
            bail!(
                "the integrity check failed ({}); move the file away to start a new history",
                check.join("; ")
            );
        }
        let version: i64 = c.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        let tables: i64 = c.query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0))?;
        match version {
            0 if tables == 0 => {
                // Must precede the first table; lets maintenance return free pages.
                c.execute_batch("PRAGMA auto_vacuum = INCREMENTAL;")?;
                c.execute_batch(&format!(
                    "BEGIN; {SCHEMA} PRAGMA user_version = {VERSION}; COMMIT;"
                ))?;
            }
            0 => bail!(
                "not an albatross-autoscale history (it has other tables and no schema version)"
            ),
            VERSION => {}
            v => bail!(
                "schema version {v}, but this build reads version {VERSION} (written by a newer albatross-autoscale?)"
            ),
        }
        let mode: String = c.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        if mode != "wal" {
            bail!("cannot switch to WAL mode (journal_mode is {mode})");
        }
        // WAL + NORMAL: a crash loses at most the last batches, never consistency.
        c.execute_batch(
            "PRAGMA synchronous = NORMAL; PRAGMA journal_size_limit = 67108864; PRAGMA foreign_keys = OFF;",
        )?;
        c.busy_timeout(Duration::from_secs(5))?;
        Ok(())
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn name_id(
        tx: &rusqlite::Transaction<'_>,
        names: &mut HashMap<Name, i64>,
        n: &Name,
    ) -> rusqlite::Result<i64> {
        if let Some(id) = names.get(n) {
            return Ok(*id);
        }
        let text = n.to_string();
        tx.prepare_cached("INSERT INTO name (name) VALUES (?1) ON CONFLICT (name) DO NOTHING")?
            .execute([&text])?;
        let id = tx
            .prepare_cached("SELECT id FROM name WHERE name = ?1")?
            .query_row([&text], |r| r.get(0))?;
        names.insert(n.clone(), id);
        Ok(id)
    }

    /// Write `rows` in one transaction.
    pub fn write(&mut self, rows: &[Row]) -> rusqlite::Result<()> {
        let r = self.write_inner(rows);
        if r.is_err() {
            // Ids learnt inside a rolled-back transaction may not exist.
            self.names.clear();
        }
        r
    }

    fn write_inner(&mut self, rows: &[Row]) -> rusqlite::Result<()> {
        let Self { conn, names, .. } = self;
        let tx = conn.transaction()?;
        // A row older than the roll-up watermark (it waited in the queue past
        // LATE_MS) goes into its bucket's aggregate now, or it would never get there.
        let rolled = rolled_up(&tx)?.unwrap_or(i64::MIN);
        {
            let mut sample = tx.prepare_cached(
                "INSERT OR IGNORE INTO sample (t, vm, grp, bp, vcpus) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            let mut eval = tx.prepare_cached(
                "INSERT OR REPLACE INTO evaluation (grp, t, avg_bp, fresh, instances, demand) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            let mut decision = tx.prepare_cached(
                "INSERT INTO decision (t, grp, action, instance, reason, emergency) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            for row in rows {
                match row {
                    Row::Sample {
                        t,
                        vm,
                        group,
                        bp,
                        vcpus,
                    } => {
                        let vm = Self::name_id(&tx, names, vm)?;
                        let grp = match group {
                            Some(g) => Some(Self::name_id(&tx, names, g)?),
                            None => None,
                        };
                        let added = sample.execute(params![t, vm, grp, bp, vcpus])?;
                        if *t < rolled && added == 1 {
                            late_sample(&tx, *t, vm, grp, *bp)?;
                        }
                    }
                    Row::Evaluation {
                        t,
                        group,
                        avg_bp,
                        fresh,
                        instances,
                        demand,
                    } => {
                        let grp = Self::name_id(&tx, names, group)?;
                        let demand = i64::try_from(*demand).unwrap_or(i64::MAX);
                        if *t < rolled {
                            // Counted once: a late duplicate is not added twice.
                            let added = tx
                                .prepare_cached(
                                    "INSERT OR IGNORE INTO evaluation (grp, t, avg_bp, fresh, instances, demand) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                                )?
                                .execute(params![grp, t, avg_bp, fresh, instances, demand])?;
                            if added == 1 {
                                late_evaluation(&tx, *t, grp, *avg_bp, *instances, demand)?;
                            }
                        } else {
                            eval.execute(params![grp, t, avg_bp, fresh, instances, demand])?;
                        }
                    }
                    Row::Decision {
                        t,
                        group,
                        action,
                        instance,
                        reason,
                        emergency,
                    } => {
                        let grp = Self::name_id(&tx, names, group)?;
                        decision.execute(params![
                            t,
                            grp,
                            action,
                            instance.to_string(),
                            reason,
                            emergency
                        ])?;
                    }
                }
            }
        }
        tx.commit()
    }

    /// Where the roll-up stands: every bucket before this is aggregated.
    pub fn rolled_up(&self) -> rusqlite::Result<Option<i64>> {
        rolled_up(&self.conn)
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
            tx.prepare_cached(
                "INSERT INTO sample_5m (bucket, vm, grp, n, min_bp, max_bp, sum_bp)
                 SELECT ?1, vm, max(grp), count(*), min(bp), max(bp), sum(bp)
                 FROM sample WHERE t >= ?1 AND t < ?2 GROUP BY vm
                 ON CONFLICT (bucket, vm) DO UPDATE SET n = n + excluded.n,
                   min_bp = min(min_bp, excluded.min_bp), max_bp = max(max_bp, excluded.max_bp),
                   sum_bp = sum_bp + excluded.sum_bp",
            )?
            .execute([b, b + BUCKET_MS])?;
            tx.prepare_cached(
                "INSERT INTO group_5m (grp, bucket, n, min_demand, max_demand, sum_demand, min_bp, max_bp, sum_bp, max_instances, sum_instances)
                 SELECT grp, ?1, count(*), min(demand), max(demand), sum(demand), min(avg_bp), max(avg_bp), sum(avg_bp), max(instances), sum(instances)
                 FROM evaluation WHERE t >= ?1 AND t < ?2 GROUP BY grp
                 ON CONFLICT (grp, bucket) DO UPDATE SET n = n + excluded.n,
                   min_demand = min(min_demand, excluded.min_demand), max_demand = max(max_demand, excluded.max_demand),
                   sum_demand = sum_demand + excluded.sum_demand,
                   min_bp = min(min_bp, excluded.min_bp), max_bp = max(max_bp, excluded.max_bp),
                   sum_bp = sum_bp + excluded.sum_bp,
                   max_instances = max(max_instances, excluded.max_instances),
                   sum_instances = sum_instances + excluded.sum_instances",
            )?
            .execute([b, b + BUCKET_MS])?;
            // The watermark moves in the same transaction: a crash never counts a
            // bucket twice.
            tx.prepare_cached(
                "INSERT INTO meta (key, value) VALUES ('rolled_up', ?1) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            )?
            .execute([b + BUCKET_MS])?;
            tx.commit()?;
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
fn late_sample(
    tx: &rusqlite::Transaction<'_>,
    t: i64,
    vm: i64,
    grp: Option<i64>,
    bp: u32,
) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO sample_5m (bucket, vm, grp, n, min_bp, max_bp, sum_bp) VALUES (?1, ?2, ?3, 1, ?4, ?4, ?4)
         ON CONFLICT (bucket, vm) DO UPDATE SET n = n + 1,
           min_bp = min(min_bp, excluded.min_bp), max_bp = max(max_bp, excluded.max_bp),
           sum_bp = sum_bp + excluded.sum_bp",
    )?
    .execute(params![t.div_euclid(BUCKET_MS) * BUCKET_MS, vm, grp, bp])?;
    Ok(())
}

/// Add one late evaluation to its (already rolled-up) bucket's aggregate.
fn late_evaluation(
    tx: &rusqlite::Transaction<'_>,
    t: i64,
    grp: i64,
    avg_bp: u32,
    instances: u32,
    demand: i64,
) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT INTO group_5m (grp, bucket, n, min_demand, max_demand, sum_demand, min_bp, max_bp, sum_bp, max_instances, sum_instances)
         VALUES (?1, ?2, 1, ?3, ?3, ?3, ?4, ?4, ?4, ?5, ?5)
         ON CONFLICT (grp, bucket) DO UPDATE SET n = n + 1,
           min_demand = min(min_demand, excluded.min_demand), max_demand = max(max_demand, excluded.max_demand),
           sum_demand = sum_demand + excluded.sum_demand,
           min_bp = min(min_bp, excluded.min_bp), max_bp = max(max_bp, excluded.max_bp),
           sum_bp = sum_bp + excluded.sum_bp,
           max_instances = max(max_instances, excluded.max_instances),
           sum_instances = sum_instances + excluded.sum_instances",
    )?
    .execute(params![grp, t.div_euclid(BUCKET_MS) * BUCKET_MS, demand, avg_bp, instances])?;
    Ok(())
}

/// The roll-up watermark of a connection's file.
pub(super) fn rolled_up(conn: &Connection) -> rusqlite::Result<Option<i64>> {
    conn.query_row("SELECT value FROM meta WHERE key = 'rolled_up'", [], |r| {
        r.get(0)
    })
    .optional()
}

/// Open `path` read-only for queries (the API, `history export`).
pub fn open_read(path: &Path) -> anyhow::Result<Connection> {
    if !path.exists() {
        bail!(
            "history.path {}: no such file (nothing has been recorded yet: the daemon writes it when [history] path is set)",
            path.display()
        );
    }
    if path.is_dir() {
        bail!(
            "history.path {}: is a directory, not a history file",
            path.display()
        );
    }
    if std::fs::metadata(path).is_ok_and(|m| m.len() == 0) {
        bail!(
            "history.path {}: empty (nothing has been recorded yet: the daemon fills it when it runs with [history] path set)",
            path.display()
        );
    }
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags).map_err(|e| explain(path, e))?;
    conn.busy_timeout(Duration::from_secs(2))
        .map_err(|e| explain(path, e))?;
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|e| explain(path, e))?;
    if version != VERSION {
        bail!(
            "history.path {}: schema version {version}, but this build reads version {VERSION}",
            path.display()
        );
    }
    Ok(conn)
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000;

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("aa-history-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn name(s: &str) -> Arc<Name> {
        Arc::new(Name::parse(s).unwrap())
    }

    fn eval(t: i64, demand: u64, instances: u32) -> Row {
        Row::Evaluation {
            t,
            group: name("a:web"),
            avg_bp: 5_000,
            fresh: instances,
            instances,
            demand,
        }
    }

    fn sample(t: i64, bp: u32) -> Row {
        Row::Sample {
            t,
            vm: name("a:web"),
            group: Some(name("a:web")),
            bp,
            vcpus: 1,
        }
    }

    fn count(s: &Store, table: &str) -> i64 {
        s.conn
            .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
            .unwrap()
    }

    const KEEP: Retention = Retention {
        raw: Duration::from_secs(2 * 3600),
        aggregates: Duration::from_secs(24 * 3600),
    };

    #[test]
    fn closed_buckets_roll_up_once_and_open_ones_wait() {
        let d = dir("rollup");
        let mut s = Store::open(&d.join("h.db")).unwrap();
        let t0 = 100 * H; // a bucket boundary
        // Bucket 0: demand 1000, 3000 (mean 2000); bucket 1: 500; bucket 2 open.
        s.write(&[
            eval(t0 + 10_000, 1_000, 1),
            eval(t0 + 20_000, 3_000, 2),
            eval(t0 + BUCKET_MS + 5_000, 500, 1),
            eval(t0 + 2 * BUCKET_MS + 5_000, 700, 1),
            sample(t0 + 10_000, 2_000),
            sample(t0 + 20_000, 4_000),
        ])
        .unwrap();
        // Bucket 1 closed at t0+10m but is late-tolerant until +1m: not yet.
        let m = s.maintain(t0 + 2 * BUCKET_MS + 30_000, KEEP).unwrap();
        assert_eq!(m.buckets_rolled, 1);
        assert_eq!(s.rolled_up().unwrap(), Some(t0 + BUCKET_MS));
        let m = s.maintain(t0 + 2 * BUCKET_MS + LATE_MS, KEEP).unwrap();
        assert_eq!(m.buckets_rolled, 1);
        // Again at the same time: nothing new, nothing counted twice.
        assert_eq!(
            s.maintain(t0 + 2 * BUCKET_MS + LATE_MS, KEEP)
                .unwrap()
                .buckets_rolled,
            0
        );
        let rows: Vec<(i64, i64, i64, i64, i64, i64)> = s
            .conn
            .prepare("SELECT bucket, n, min_demand, max_demand, sum_demand, max_instances FROM group_5m ORDER BY bucket")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            rows,
            vec![
                (t0, 2, 1_000, 3_000, 4_000, 2),
                (t0 + BUCKET_MS, 1, 500, 500, 500, 1)
            ]
        );
        let vm: (i64, i64, i64, i64) = s
            .conn
            .query_row("SELECT n, min_bp, max_bp, sum_bp FROM sample_5m", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .unwrap();
        assert_eq!(vm, (2, 2_000, 4_000, 6_000));
    }

    #[test]
    fn reading_an_empty_file_or_a_directory_says_so() {
        let d = dir("read-odd");
        std::fs::write(d.join("empty.db"), "").unwrap();
        let e = open_read(&d.join("empty.db")).unwrap_err().to_string();
        assert!(
            e.contains("empty.db: empty (nothing has been recorded yet"),
            "{e}"
        );
        let e = open_read(&d).unwrap_err().to_string();
        assert!(e.contains("is a directory"), "{e}");
    }

    #[test]
    fn a_row_later_than_the_rollup_still_reaches_its_aggregate_once() {
        let d = dir("late");
        let mut s = Store::open(&d.join("h.db")).unwrap();
        let t0 = 100 * H;
        s.write(&[eval(t0 + 10_000, 1_000, 1), sample(t0 + 10_000, 2_000)])
            .unwrap();
        assert_eq!(
            s.maintain(t0 + BUCKET_MS + LATE_MS, KEEP)
                .unwrap()
                .buckets_rolled,
            1
        );
        // Two rows of the rolled-up bucket arrive late, one of them twice.
        let late = [eval(t0 + 20_000, 3_000, 2), sample(t0 + 20_000, 6_000)];
        s.write(&late).unwrap();
        s.write(&late).unwrap();
        let g: (i64, i64, i64, i64, i64) = s
            .conn
            .query_row(
                "SELECT n, min_demand, max_demand, sum_demand, max_instances FROM group_5m",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
            .unwrap();
        assert_eq!(g, (2, 1_000, 3_000, 4_000, 2));
        let vm: (i64, i64, i64, i64) = s
            .conn
            .query_row("SELECT n, min_bp, max_bp, sum_bp FROM sample_5m", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .unwrap();
        assert_eq!(vm, (2, 2_000, 6_000, 8_000));
        // A later roll-up does not count them again.
        s.maintain(t0 + 3 * BUCKET_MS, KEEP).unwrap();
        let n: i64 = s
            .conn
            .query_row("SELECT sum(n) FROM group_5m", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 2);
    }

    #[test]
    fn retention_deletes_raw_after_rollup_and_aggregates_later() {
        let d = dir("retention");
        let mut s = Store::open(&d.join("h.db")).unwrap();
        let t0 = 100 * H;
        // One evaluation and one sample a minute for 4 hours.
        let rows: Vec<Row> = (0..240)
            .flat_map(|i| {
                [
                    eval(t0 + i * 60_000, 1_000, 1),
                    sample(t0 + i * 60_000, 100),
                ]
            })
            .collect();
        s.write(&rows).unwrap();
        let now = t0 + 4 * H;
        // Roll-up is bounded per step; run until it has caught up.
        while s.maintain(now, KEEP).unwrap().buckets_rolled > 0 {}
        // Raw: only the last 2 hours remain; aggregates: all 4 hours (48 buckets).
        assert_eq!(count(&s, "evaluation"), 120);
        assert_eq!(count(&s, "sample"), 120);
        assert_eq!(count(&s, "group_5m"), 47); // the last bucket closed < 1 min ago
        assert_eq!(count(&s, "sample_5m"), 47);
        // A day later every aggregate has expired too.
        s.maintain(now + 25 * H, KEEP).unwrap();
        assert_eq!(count(&s, "group_5m"), 0);
        assert_eq!(count(&s, "evaluation"), 0);
    }

    #[test]
    fn raw_rows_not_yet_rolled_up_are_kept_past_their_retention() {
        let d = dir("keep-unrolled");
        let mut s = Store::open(&d.join("h.db")).unwrap();
        let t0 = 100 * H;
        let rows: Vec<Row> = (0..(60 * 24))
            .map(|i| eval(t0 + i * 60_000, 1, 1))
            .collect();
        s.write(&rows).unwrap();
        // One step rolls up at most ROLLUP_BUCKETS (4 hours): the rest of the day
        // stays raw although it is older than raw_retention.
        let now = t0 + 30 * H;
        s.maintain(now, KEEP).unwrap();
        let w = s.rolled_up().unwrap().unwrap();
        assert_eq!(w, t0 + ROLLUP_BUCKETS as i64 * BUCKET_MS);
        let oldest: i64 = s
            .conn
            .query_row("SELECT min(t) FROM evaluation", [], |r| r.get(0))
            .unwrap();
        assert_eq!(oldest, w);
    }

    #[test]
    fn data_survives_a_reopen_and_a_second_writer_is_refused() {
        let d = dir("reopen");
        let path = d.join("h.db");
        let mut s = Store::open(&path).unwrap();
        s.write(&[eval(1_000, 1, 1)]).unwrap();
        let err = Store::open(&path)
            .err()
            .expect("a second writer")
            .to_string();
        assert!(
            err.contains(&path.display().to_string()) && err.contains("in use"),
            "{err}"
        );
        drop(s);
        let s = Store::open(&path).unwrap();
        assert_eq!(count(&s, "evaluation"), 1);
    }

    #[test]
    fn a_foreign_or_newer_file_is_refused() {
        let d = dir("foreign");
        let path = d.join("h.db");
        let c = Connection::open(&path).unwrap();
        c.execute_batch("CREATE TABLE other (x); PRAGMA user_version = 0;")
            .unwrap();
        drop(c);
        let err = format!("{:#}", Store::open(&path).err().unwrap());
        assert!(err.contains("not an albatross-autoscale history"), "{err}");
        let path = d.join("newer.db");
        let c = Connection::open(&path).unwrap();
        c.execute_batch("PRAGMA user_version = 99;").unwrap();
        drop(c);
        let err = format!("{:#}", Store::open(&path).err().unwrap());
        assert!(err.contains("schema version 99"), "{err}");
    }
}
