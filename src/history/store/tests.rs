use super::maintain::ROLLUP_BUCKETS;
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
