//! `[history]`: the metrics history in SQLite (off unless `path` is set). Raw rows
//! are kept for `raw_retention`, 5-minute aggregates for `retention`; writes are
//! batched, `batch` rows or `flush_interval`, whichever comes first.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// `[history]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct History {
    /// The SQLite file; `None` (the default) disables the history.
    pub path: Option<PathBuf>,
    /// How long raw samples, evaluations and their per-tick detail are kept.
    pub raw_retention: Duration,
    /// How long 5-minute aggregates and decisions are kept.
    pub retention: Duration,
    /// Rows written per transaction at most.
    pub batch: usize,
    /// Longest a row waits before its batch is written.
    pub flush_interval: Duration,
    /// Rows the queue to the writer holds; when full, new rows are dropped (and
    /// counted) rather than slowing the engine.
    pub queue: usize,
}

impl Default for History {
    fn default() -> Self {
        Self {
            path: None,
            raw_retention: Duration::from_secs(2 * 86_400),
            retention: Duration::from_secs(90 * 86_400),
            batch: 5_000,
            flush_interval: Duration::from_secs(1),
            queue: 100_000,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HistoryFile {
    path: Option<PathBuf>,
    #[serde(default, with = "humantime_serde")]
    raw_retention: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    retention: Option<Duration>,
    batch: Option<usize>,
    #[serde(default, with = "humantime_serde")]
    flush_interval: Option<Duration>,
    queue: Option<usize>,
}

/// Parse `[history]`; every problem names its key.
pub(super) fn history(v: Option<toml::Value>, base: &Path, problems: &mut Vec<String>) -> History {
    let d = History::default();
    let Some(v) = v else { return d };
    let f = match HistoryFile::deserialize(v) {
        Ok(f) => f,
        Err(e) => {
            problems.push(super::de_error("history", &e));
            return d;
        }
    };
    let path = f.path.and_then(|p| {
        if p.as_os_str().is_empty() {
            problems.push(
                "history.path: must not be empty (leave it out to disable the history)".into(),
            );
            return None;
        }
        Some(if p.is_absolute() { p } else { base.join(p) })
    });
    let fmt = |d: Duration| humantime::format_duration(d).to_string();
    let raw = f.raw_retention.unwrap_or(d.raw_retention);
    if raw < Duration::from_secs(600) {
        problems.push(format!(
            "history.raw_retention: {} is too short (at least 10m: raw rows are rolled up into 5-minute aggregates first)",
            fmt(raw)
        ));
    }
    let retention = f.retention.unwrap_or(d.retention);
    if retention < raw {
        problems.push(format!(
            "history.retention: {} must be at least history.raw_retention ({})",
            fmt(retention),
            fmt(raw)
        ));
    }
    if retention > Duration::from_secs(10 * 366 * 86_400) {
        problems.push(format!(
            "history.retention: {} is more than 10 years",
            fmt(retention)
        ));
    }
    let batch = f.batch.unwrap_or(d.batch);
    if !(1..=1_000_000).contains(&batch) {
        problems.push(format!(
            "history.batch: {batch} is out of range (1..=1000000)"
        ));
    }
    let flush = f.flush_interval.unwrap_or(d.flush_interval);
    if !(Duration::from_millis(10)..=Duration::from_secs(60)).contains(&flush) {
        problems.push(format!(
            "history.flush_interval: {} is out of range (10ms..=1m)",
            fmt(flush)
        ));
    }
    let queue = f.queue.unwrap_or(d.queue);
    if !(1..=10_000_000).contains(&queue) {
        problems.push(format!(
            "history.queue: {queue} is out of range (1..=10000000)"
        ));
    }
    History {
        path,
        raw_retention: raw,
        retention,
        batch,
        flush_interval: flush,
        queue,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> (History, Vec<String>) {
        let mut problems = Vec::new();
        let v: toml::Table = text.parse().unwrap();
        let h = history(
            v.get("history").cloned(),
            Path::new("/etc/aa"),
            &mut problems,
        );
        (h, problems)
    }

    #[test]
    fn off_by_default_and_relative_paths_resolve() {
        assert_eq!(parse("").0, History::default());
        let (h, p) = parse("[history]\npath = \"h.db\"\nraw_retention = \"1d\"\n");
        assert!(p.is_empty(), "{p:?}");
        assert_eq!(h.path.as_deref(), Some(Path::new("/etc/aa/h.db")));
        assert_eq!(h.raw_retention, Duration::from_secs(86_400));
        assert_eq!(h.retention, Duration::from_secs(90 * 86_400));
    }

    #[test]
    fn each_problem_names_its_key() {
        let cases = [
            (
                "raw_retention = \"1m\"",
                "history.raw_retention: 1m is too short",
            ),
            (
                "raw_retention = \"3d\"\nretention = \"1d\"",
                "history.retention: 1day must be at least history.raw_retention",
            ),
            ("retention = \"20years\"", "history.retention:"),
            ("batch = 0", "history.batch: 0 is out of range"),
            (
                "flush_interval = \"2m\"",
                "history.flush_interval: 2m is out of range",
            ),
            ("queue = 0", "history.queue: 0 is out of range"),
            ("path = \"\"", "history.path: must not be empty"),
            ("pth = \"x\"", "unknown field `pth`"),
            (
                "raw_retention = \"soon\"",
                "history.raw_retention: invalid value: string \"soon\", expected a duration",
            ),
        ];
        for (text, want) in cases {
            let (_, p) = parse(&format!("[history]\n{text}\n"));
            assert!(
                p.iter().any(|p| p.contains(want)),
                "{text:?}: {p:?} lacks {want:?}"
            );
        }
    }
}
