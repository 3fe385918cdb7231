//! The SQLite file: opening (lock, integrity, schema version) and batched inserts;
//! maintenance (closed 5-minute buckets rolled up, old rows deleted, free pages
//! handed back so the file does not keep growing) is in `maintain`.
//!
//! Times are Unix milliseconds. Every write runs on the one writer thread; readers
//! ([`super::query`]) open their own read-only connections (WAL lets them read
//! while the writer writes).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use rusqlite::{Connection, ErrorCode, OpenFlags, params};

use crate::name::Name;
use crate::state::StateLock;

// Roll-up, retention and free pages; late rows into their aggregate.
mod maintain;
pub(super) use maintain::rolled_up;
use maintain::{late_evaluation, late_sample};

/// Width of an aggregate bucket.
pub const BUCKET_MS: i64 = 300_000;
/// Schema version in `PRAGMA user_version`.
pub const VERSION: i64 = 1;
/// Rows may reach the writer this late (queue, batching): a bucket is rolled up
/// only once it closed this long ago.
pub const LATE_MS: i64 = 60_000;

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
    /// The roll-up watermark (only this writer moves it): rows before it are late.
    rolled: Option<i64>,
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
            rolled: None,
            path: path.to_owned(),
            _lock: lock,
        };
        store
            .prepare()
            .map_err(|e| match e.downcast::<rusqlite::Error>() {
                Ok(e) => explain(path, e),
                Err(e) => e.context(format!("history.path {}", path.display())),
            })?;
        store.rolled = rolled_up(&store.conn).map_err(|e| explain(path, e))?;
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
        let Self {
            conn,
            names,
            rolled,
            ..
        } = self;
        // A row older than the roll-up watermark (it waited in the queue past
        // LATE_MS) goes into its bucket's aggregate now, or it would never get there.
        let rolled = rolled.unwrap_or(i64::MIN);
        let tx = conn.transaction()?;
        {
            let mut sample = tx.prepare_cached(
                "INSERT OR IGNORE INTO sample (t, vm, grp, bp, vcpus) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            let mut eval = tx.prepare_cached(
                "INSERT OR REPLACE INTO evaluation (grp, t, avg_bp, fresh, instances, demand) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?;
            // Counted once: a late duplicate is ignored, not added to the aggregate twice.
            let mut eval_late = tx.prepare_cached(
                "INSERT OR IGNORE INTO evaluation (grp, t, avg_bp, fresh, instances, demand) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
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
                            let added = eval_late
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
mod tests;
