//! Off the hot path: engine outputs become rows ([`Feed`]) that go through a
//! bounded queue ([`Recorder::push`] never waits: a full queue drops the row and
//! counts it) to one writer thread, which writes them in batches and runs the
//! maintenance step once a minute.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender, TrySendError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::broadcast;

use super::store::{Retention, Row, Store};
use crate::config::history::History as Config;
use crate::core::vertical::{Direction, Resize};
use crate::core::{Output, Timestamp};
use crate::name::Name;

/// How often the writer rolls up, deletes and shrinks.
const MAINTAIN_EVERY: Duration = Duration::from_secs(60);

/// What the writer side has seen; shared with the recorders.
#[derive(Debug, Default)]
pub struct Counters {
    /// Rows dropped because the queue was full (or the writer gone).
    pub dropped: AtomicU64,
    /// Engine outputs the follower missed because it fell behind the broadcast.
    pub lagged: AtomicU64,
    /// Rows written.
    pub written: AtomicU64,
    /// Rows lost to a failed write (disk full, I/O error).
    pub failed: AtomicU64,
}

enum Msg {
    Row(Row),
    Stop,
}

/// A cheap handle that queues rows for the writer.
#[derive(Clone)]
pub struct Recorder {
    tx: SyncSender<Msg>,
    counters: Arc<Counters>,
}

impl Recorder {
    /// Queue `row` without waiting; a full queue drops it (counted).
    pub fn push(&self, row: Row) {
        match self.tx.try_send(Msg::Row(row)) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// The counters.
    pub fn counters(&self) -> &Arc<Counters> {
        &self.counters
    }
}

/// Unix milliseconds of a wall-clock time.
pub fn unix_ms(t: SystemTime) -> i64 {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX),
    }
}

/// Turns engine outputs into rows: engine time (ms since the engine's t = 0) into
/// Unix time, and group evaluations into demand in vCPUs.
pub struct Feed {
    origin_ms: i64,
    /// vCPUs of a group's instances, as its latest sample said.
    vcpus: HashMap<Arc<Name>, u32>,
    recorder: Recorder,
}

impl Feed {
    /// A feed whose engine started (t = 0) at `origin`.
    pub fn new(recorder: Recorder, origin: SystemTime) -> Self {
        Self {
            origin_ms: unix_ms(origin),
            vcpus: HashMap::new(),
            recorder,
        }
    }

    fn at(&self, t: Timestamp) -> i64 {
        self.origin_ms
            .saturating_add(i64::try_from(t.as_millis()).unwrap_or(i64::MAX))
    }

    /// Record one output (samples, evaluations with an average, decisions).
    pub fn output(&mut self, o: &Output) {
        let row = match o {
            Output::Sample(s) => {
                if let Some(g) = &s.group
                    && self.vcpus.get(g) != Some(&s.vcpus)
                {
                    self.vcpus.insert(g.clone(), s.vcpus);
                }
                Row::Sample {
                    t: self.at(s.t),
                    vm: s.vm.clone(),
                    group: s.group.clone(),
                    bp: s.bp,
                    vcpus: s.vcpus,
                }
            }
            // Without a fresh member nothing was measured: no demand to record.
            Output::Evaluation(e) => {
                let Some(avg) = e.avg_bp else { return };
                let vcpus = self.vcpus.get(&e.group).copied().unwrap_or(1).max(1);
                Row::Evaluation {
                    t: self.at(e.t),
                    group: e.group.clone(),
                    avg_bp: avg,
                    fresh: e.fresh,
                    instances: e.instances,
                    demand: demand_milli(avg, e.fresh, vcpus),
                }
            }
            Output::Decision(d) => Row::Decision {
                t: self.at(d.t),
                group: d.group.clone(),
                action: d.action.as_str(),
                instance: d.instance.clone(),
                reason: d.reason_text(),
                emergency: d.emergency,
            },
            _ => return,
        };
        self.recorder.push(row);
    }

    /// Record one poll of a resize-only container, which has no engine: the poll is
    /// both its sample and its evaluation (one instance; demand = the CPUs it keeps
    /// busy, `busy_milli`).
    pub fn container(
        &mut self,
        t: Timestamp,
        name: &Arc<Name>,
        bp: u32,
        vcpus: u32,
        busy_milli: u64,
    ) {
        let t = self.at(t);
        self.recorder.push(Row::Sample {
            t,
            vm: name.clone(),
            group: Some(name.clone()),
            bp,
            vcpus,
        });
        self.recorder.push(Row::Evaluation {
            t,
            group: name.clone(),
            avg_bp: bp,
            fresh: 1,
            instances: 1,
            demand: busy_milli,
        });
    }

    /// Record a container's resize as a decision (`resize_up` / `resize_down`).
    pub fn resize(&mut self, name: &Arc<Name>, r: &Resize) {
        self.recorder.push(Row::Decision {
            t: self.at(r.t),
            group: name.clone(),
            action: match r.direction {
                Direction::Up => "resize_up",
                Direction::Down => "resize_down",
            },
            instance: name.clone(),
            reason: r.reason.clone(),
            emergency: false,
        });
    }

    /// Record every output of `rx` until the engine task ends; a lag is counted.
    pub async fn follow(mut self, mut rx: broadcast::Receiver<Output>) {
        loop {
            match rx.recv().await {
                Ok(o) => self.output(&o),
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    self.recorder
                        .counters
                        .lagged
                        .fetch_add(n, Ordering::Relaxed);
                    tracing::warn!(
                        missed = n,
                        "history fell behind the engine outputs; those rows are not stored"
                    );
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    }
}

/// Demand in milli-vCPUs: the group average (basis points of an instance's
/// vCPUs) × the fresh members × their vCPUs.
pub fn demand_milli(avg_bp: u32, fresh: u32, vcpus: u32) -> u64 {
    u64::from(avg_bp) * u64::from(fresh) * u64::from(vcpus) / 10
}

/// The running writer thread.
pub struct Writer {
    recorder: Recorder,
    thread: Option<JoinHandle<()>>,
}

impl Writer {
    /// Open the store (errors come back here, naming the path) and start the
    /// thread that writes to it.
    pub fn start(config: &Config) -> anyhow::Result<Self> {
        let path = config
            .path
            .as_deref()
            .ok_or_else(|| anyhow::anyhow!("history.path is not set"))?;
        let store = Store::open(path)?;
        let (tx, rx) = mpsc::sync_channel(config.queue);
        let counters = Arc::new(Counters::default());
        let recorder = Recorder {
            tx,
            counters: counters.clone(),
        };
        let settings = WriterSettings {
            batch: config.batch,
            flush: config.flush_interval,
            keep: Retention {
                raw: config.raw_retention,
                aggregates: config.retention,
            },
        };
        let thread = std::thread::Builder::new()
            .name("history-writer".into())
            .spawn(move || run(store, rx, settings, counters))?;
        tracing::info!(path = %path.display(), "history: recording samples and decisions");
        Ok(Self {
            recorder,
            thread: Some(thread),
        })
    }

    /// A handle to queue rows.
    pub fn recorder(&self) -> Recorder {
        self.recorder.clone()
    }

    /// Write what is queued, then stop the thread (blocks until it has).
    pub fn close(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        // Blocking send: the marker queues behind every row already pushed.
        let _ = self.recorder.tx.send(Msg::Stop);
        if let Some(t) = self.thread.take()
            && t.join().is_err()
        {
            tracing::error!("the history writer thread panicked");
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.stop();
        }
    }
}

struct WriterSettings {
    batch: usize,
    flush: Duration,
    keep: Retention,
}

fn run(mut store: Store, rx: mpsc::Receiver<Msg>, s: WriterSettings, counters: Arc<Counters>) {
    let mut batch: Vec<Row> = Vec::with_capacity(s.batch.min(65_536));
    // The first step runs at once: it catches up on what a restart left behind.
    let mut next_maintain = Instant::now();
    let mut first_row: Option<Instant> = None;
    let mut reported = (0, 0);
    let mut stop = false;
    while !stop {
        let flush_at = first_row.map(|t| t + s.flush);
        let wake = flush_at.map_or(next_maintain, |f| f.min(next_maintain));
        match rx.recv_timeout(wake.saturating_duration_since(Instant::now())) {
            Ok(Msg::Row(r)) => {
                first_row.get_or_insert_with(Instant::now);
                batch.push(r);
                // Take whatever else is waiting, up to a batch.
                while batch.len() < s.batch {
                    match rx.try_recv() {
                        Ok(Msg::Row(r)) => batch.push(r),
                        Ok(Msg::Stop) => {
                            stop = true;
                            break;
                        }
                        Err(_) => break,
                    }
                }
            }
            Ok(Msg::Stop) | Err(RecvTimeoutError::Disconnected) => stop = true,
            Err(RecvTimeoutError::Timeout) => {}
        }
        let due = first_row.is_some_and(|t| t.elapsed() >= s.flush);
        if !batch.is_empty() && (stop || due || batch.len() >= s.batch) {
            flush(&mut store, &mut batch, &counters);
            first_row = None;
        }
        if !stop && Instant::now() >= next_maintain {
            next_maintain = Instant::now() + MAINTAIN_EVERY;
            match store.maintain(unix_ms(SystemTime::now()), s.keep) {
                Ok(m) => tracing::debug!(?m, "history maintenance"),
                Err(e) => {
                    tracing::error!(path = %store.path().display(), error = %e, "history maintenance failed")
                }
            }
            let now = (
                counters.dropped.load(Ordering::Relaxed),
                counters.failed.load(Ordering::Relaxed),
            );
            if now != reported {
                tracing::warn!(
                    dropped = now.0,
                    failed = now.1,
                    "history: rows not stored so far (queue full, or writes failing)"
                );
                reported = now;
            }
        }
    }
}

fn flush(store: &mut Store, batch: &mut Vec<Row>, counters: &Counters) {
    let n = batch.len() as u64;
    match store.write(batch) {
        Ok(()) => {
            counters.written.fetch_add(n, Ordering::Relaxed);
        }
        Err(e) => {
            counters.failed.fetch_add(n, Ordering::Relaxed);
            tracing::error!(path = %store.path().display(), error = %e, rows = n, "history: a batch could not be written");
        }
    }
    batch.clear();
}
