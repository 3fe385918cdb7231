//! `replay --inputs`: a flight recording (`run --record`) fed to the same engine,
//! giving the decisions the daemon logged, line for line.

use std::io::BufRead;
use std::path::Path;

use serde_json::Value;

use crate::config::source::{groups_of, lxc_of};
use crate::core::{Engine, Lxc, Machine, Options, Timestamp, lxc};
use crate::daemon::recorder::Line;
use crate::jsonl;

/// Why a recording cannot be replayed.
#[derive(Debug, thiserror::Error)]
pub enum InputsError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}: {message}")]
    Line {
        path: String,
        line: usize,
        message: String,
    },
    #[error(
        "{path}: the recording does not start with a `start` line (it was rotated: replay the older file first, e.g. `replay --inputs {path}.1 {path}`)"
    )]
    NoStart { path: String },
}

/// Replay `files` in order; `each` gets every decision-log line (decisions and
/// failed actions, as the daemon's decision log writes them).
pub fn replay(files: &[&Path], mut each: impl FnMut(Value)) -> Result<(), InputsError> {
    let mut engine: Option<(Engine, bool)> = None;
    let mut out = Vec::new();
    let mut lxc: Option<(Lxc, bool)> = None;
    let mut lxc_out = Vec::new();
    for path in files {
        let shown = path.display().to_string();
        let f = std::fs::File::open(path).map_err(|source| InputsError::Read {
            path: shown.clone(),
            source,
        })?;
        for (i, text) in std::io::BufReader::new(f).lines().enumerate() {
            let text = text.map_err(|source| InputsError::Read {
                path: shown.clone(),
                source,
            })?;
            if text.trim().is_empty() {
                continue;
            }
            let bad = |message: String| InputsError::Line {
                path: shown.clone(),
                line: i + 1,
                message,
            };
            let line: Line = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
            if line.is_lxc() {
                lxc_line(&mut lxc, line, &mut lxc_out, &mut each).map_err(|e| match e {
                    LxcError::NoStart => InputsError::NoStart {
                        path: shown.clone(),
                    },
                    LxcError::Bad(m) => bad(m),
                })?;
                continue;
            }
            if let Line::Start {
                t_ms,
                config,
                origin_ms,
                cost_ceiling,
                dry_run,
            } = &line
            {
                let groups = groups_of(config).map_err(bad)?;
                // Held decisions wait as they did in the daemon (not in a dry run).
                let options = Options {
                    approvals: !*dry_run,
                    ..Options::default()
                };
                let e = Engine::new(groups, options, Timestamp(*t_ms))
                    .with_wall_origin(*origin_ms)
                    .with_cost_ceiling(*cost_ceiling);
                engine = Some((e, *dry_run));
                continue;
            }
            let Some((e, dry_run)) = engine.as_mut() else {
                return Err(InputsError::NoStart { path: shown });
            };
            let (now, input) = line.input().map_err(bad)?;
            let Some(input) = input else { continue };
            out.clear();
            e.step(now, input, &mut out);
            for v in out.iter().filter_map(|o| jsonl::decision_line(o, *dry_run)) {
                each(v);
            }
        }
    }
    Ok(())
}

enum LxcError {
    NoStart,
    Bad(String),
}

/// One line of the LXC machine: `lxc_start` builds it, the others feed it; its
/// decision-log lines go to `each`.
fn lxc_line(
    machine: &mut Option<(Lxc, bool)>,
    line: Line,
    out: &mut Vec<lxc::Output>,
    each: &mut impl FnMut(Value),
) -> Result<(), LxcError> {
    if let Line::LxcStart {
        t_ms,
        config,
        origin_ms,
        cost_ceiling,
        dry_run,
    } = &line
    {
        let (specs, poll) = lxc_of(config).map_err(LxcError::Bad)?;
        let now = Timestamp(*t_ms);
        let mut m = Lxc::new(specs, poll, now).with_approvals(!*dry_run);
        let mut ignored = Vec::new();
        for input in [
            crate::core::Input::WallOrigin {
                origin_ms: *origin_ms,
            },
            crate::core::Input::CostCeiling {
                micros: *cost_ceiling,
            },
        ] {
            m.step(now, lxc::Input::Engine(input), &mut ignored);
        }
        *machine = Some((m, *dry_run));
        return Ok(());
    }
    let Some((m, dry_run)) = machine.as_mut() else {
        return Err(LxcError::NoStart);
    };
    let (now, input) = line.lxc_input().map_err(LxcError::Bad)?;
    let Some(input) = input else { return Ok(()) };
    out.clear();
    m.step(now, input, out);
    for o in out.iter() {
        let group = match o {
            lxc::Output::Vertical { vmid, .. } => m
                .container(*vmid)
                .map(|c| c.spec().name.to_string())
                .unwrap_or_default(),
            _ => String::new(),
        };
        if let Some(v) = jsonl::lxc_decision_line(&group, o, *dry_run) {
            each(v);
        }
    }
    Ok(())
}
