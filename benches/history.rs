//! The metrics history ([history]) under the load of 10 000 VMs sampled every 10 s
//! (1 000 samples/s), and a 30-day query.
//!
//! * `history_write/round_10k_vms`: one 10-second round as the writer thread sees
//!   it: 10 000 samples and 100 group evaluations (100 groups of 100 VMs), written
//!   in batches of 5 000 (the default `batch`), plus every sixth round (one minute
//!   of data) the maintenance step at the simulated time: roll-up of closed
//!   5-minute buckets, retention deletes (raw_retention 10 minutes here, so deletes
//!   run in the steady state from the start), free-page check. Timed in the
//!   thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`), which is what the writer costs
//!   a core; fsync waits are not CPU. The file is prefilled past the raw retention.
//! * `history_query/30_days_5m`: one group's 30 days at a 5-minute step (8 640
//!   points, aggregates plus the raw rows after the watermark) from a file holding
//!   100 groups × 30 days, including opening the read connection and serialising
//!   the points to JSON, as `GET /v1/groups/{name}/history` does.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use albatross_autoscale::history::query::{self, Step};
use albatross_autoscale::history::store::{self, Retention, Row, Store};
use albatross_autoscale::name::Name;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const VMS: usize = 10_000;
const GROUPS: usize = 100;
const ROUND_MS: i64 = 10_000;
const BATCH: usize = 5_000;
/// 2026-01-01T00:00:00Z: a bucket boundary.
const T0: i64 = 1_767_225_600_000;

fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn dir(name: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("bench-history-{name}"));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

struct Fleet {
    vms: Vec<Arc<Name>>,
    groups: Vec<Arc<Name>>,
}

impl Fleet {
    fn new() -> Self {
        let groups: Vec<Arc<Name>> = (0..GROUPS)
            .map(|g| Arc::new(Name::parse(&format!("tenant{g}:svc")).unwrap()))
            .collect();
        let vms = (0..VMS)
            .map(|i| {
                let (g, k) = (i % GROUPS, i / GROUPS);
                let n = if k == 0 {
                    format!("tenant{g}:svc")
                } else {
                    format!("tenant{g}:svc-clone-{k}")
                };
                Arc::new(Name::parse(&n).unwrap())
            })
            .collect();
        Self { vms, groups }
    }

    /// Round `r`'s rows: samples spread over the 10 s (one per ms), then the
    /// evaluations at the end of the round.
    fn round(&self, r: i64) -> Vec<Row> {
        let start = T0 + r * ROUND_MS;
        let mut rows: Vec<Row> = self
            .vms
            .iter()
            .enumerate()
            .map(|(i, vm)| Row::Sample {
                t: start + i as i64,
                vm: vm.clone(),
                group: Some(self.groups[i % GROUPS].clone()),
                bp: 4_000 + ((i as u32 * 37 + r as u32 * 11) % 2_000),
                vcpus: 1,
            })
            .collect();
        rows.extend(self.groups.iter().map(|g| Row::Evaluation {
            t: start + ROUND_MS - 1,
            group: g.clone(),
            avg_bp: 5_000,
            fresh: 100,
            instances: 100,
            demand: 50_000,
        }));
        rows
    }
}

const KEEP: Retention = Retention {
    raw: Duration::from_secs(600),
    aggregates: Duration::from_secs(90 * 86_400),
};

/// Write round `r` as the writer does (batches), with the maintenance step once
/// per simulated minute.
fn write_round(store: &mut Store, fleet: &Fleet, r: i64) {
    let rows = fleet.round(r);
    for b in rows.chunks(BATCH) {
        store.write(b).unwrap();
    }
    if r % 6 == 5 {
        store.maintain(T0 + (r + 1) * ROUND_MS, KEEP).unwrap();
    }
}

fn write(c: &mut Criterion) {
    let d = dir("write");
    let mut store = Store::open(&d.join("h.db")).unwrap();
    let fleet = Fleet::new();
    // 15 minutes of data: past the 10-minute raw retention and several roll-ups.
    let mut r = 0i64;
    while r < 90 {
        write_round(&mut store, &fleet, r);
        r += 1;
    }
    let mut g = c.benchmark_group("history_write");
    g.throughput(Throughput::Elements(VMS as u64));
    g.sample_size(20);
    g.measurement_time(Duration::from_secs(20));
    g.bench_function("round_10k_vms", |b| {
        b.iter_custom(|iters| {
            let start = thread_cpu();
            for _ in 0..iters {
                write_round(&mut store, &fleet, r);
                r += 1;
            }
            thread_cpu() - start
        });
    });
    g.finish();
    drop(store);
    let size = std::fs::metadata(d.join("h.db"))
        .map(|m| m.len())
        .unwrap_or(0);
    // What a restart costs: the lock, the integrity check (quick_check reads the
    // whole file), the schema check.
    let t = std::time::Instant::now();
    drop(Store::open(&d.join("h.db")).unwrap());
    eprintln!(
        "history_write: {r} rounds ({:.1} h of data) written; file {:.1} MiB; reopening it (quick_check included) took {:?}",
        r as f64 * 10.0 / 3600.0,
        size as f64 / (1 << 20) as f64,
        t.elapsed()
    );
}

fn query_30_days(c: &mut Criterion) {
    let d = dir("query");
    let path = d.join("h.db");
    let mut store = Store::open(&path).unwrap();
    let groups: Vec<Arc<Name>> = (0..GROUPS)
        .map(|g| Arc::new(Name::parse(&format!("tenant{g}:svc")).unwrap()))
        .collect();
    // One evaluation per group every 5 minutes for 30 days (the aggregates do not
    // depend on how many rows a bucket had), rolled up day by day.
    let days = 30;
    let step = 300_000i64;
    let keep = Retention {
        raw: Duration::from_secs(2 * 86_400),
        aggregates: Duration::from_secs(90 * 86_400),
    };
    for day in 0..days {
        let mut rows = Vec::with_capacity(288 * GROUPS);
        for k in 0..288 {
            let t = T0 + day * 86_400_000 + k * step + 1_000;
            for (gi, g) in groups.iter().enumerate() {
                let demand = 1_000 + ((k * 7 + gi as i64 * 13) % 3_000) as u64;
                rows.push(Row::Evaluation {
                    t,
                    group: g.clone(),
                    avg_bp: 5_000,
                    fresh: 2,
                    instances: 2,
                    demand,
                });
            }
        }
        for b in rows.chunks(10_000) {
            store.write(b).unwrap();
        }
        let now = T0 + (day + 1) * 86_400_000;
        while store.maintain(now, keep).unwrap().buckets_rolled > 0 {}
    }
    drop(store);
    let now = T0 + days * 86_400_000;
    let mut g = c.benchmark_group("history_query");
    g.bench_function("30_days_5m", |b| {
        b.iter(|| {
            let conn = store::open_read(&path).unwrap();
            let grp = query::group_id(&conn, "tenant42:svc").unwrap().unwrap();
            let points = query::points(
                &conn,
                grp,
                now - days * 86_400_000,
                now,
                Step::Every(step),
                10_000,
            )
            .unwrap();
            assert_eq!(points.len(), 8_640);
            serde_json::to_vec(&points).unwrap()
        });
    });
    g.finish();
}

criterion_group!(benches, write, query_30_days);
criterion_main!(benches);
