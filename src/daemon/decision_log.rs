//! The decision log: JSON Lines appended to a file, the same lines `replay` prints,
//! plus the outcome of every action.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::core::{Decision, Output};
use crate::jsonl;

/// Appends decision lines; without a path it only keeps nothing (logs still go to tracing).
pub struct DecisionLog {
    file: Option<(PathBuf, BufWriter<File>)>,
}

impl DecisionLog {
    /// Open (append) `path`, creating its directory.
    pub fn open(path: Option<&Path>) -> std::io::Result<Self> {
        let file = match path {
            None => None,
            Some(p) => {
                if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir)?;
                }
                let f = OpenOptions::new().create(true).append(true).open(p)?;
                Some((p.to_owned(), BufWriter::new(f)))
            }
        };
        Ok(Self { file })
    }

    /// Log an engine output worth keeping: decisions and failures (not samples or
    /// evaluations, which are in the metrics and the debug log).
    pub fn output(&mut self, o: &Output, dry_run: bool) {
        if let Output::Shadow(n) = o {
            tracing::info!(group = %n.group, "{n}");
        }
        if let Some(v) = jsonl::decision_line(o, dry_run) {
            self.write(&v);
        }
    }

    /// Log that decision `d` was carried out.
    pub fn done(&mut self, d: &Decision, t_ms: u64) {
        self.write(&json!({
            "event": "action_done",
            "t_ms": t_ms,
            "group": d.group,
            "action": d.action,
            "instance": d.instance,
            "id": d.id,
        }));
    }

    /// Log a line built elsewhere (approvals: `approval_pending`, `approved`, ...).
    pub fn line(&mut self, v: &Value) {
        self.write(v);
    }

    fn write(&mut self, v: &Value) {
        if let Some((path, w)) = &mut self.file {
            let r = writeln!(w, "{v}").and_then(|()| w.flush());
            if let Err(e) = r {
                tracing::error!(path = %path.display(), error = %e, "cannot write the decision log");
            }
        }
    }
}
