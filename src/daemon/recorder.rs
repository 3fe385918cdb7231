//! The flight recorder (`run --record FILE`): every input the engine receives, with
//! its time, as JSON Lines, so `replay --inputs FILE` can feed the same inputs to
//! the same machine and print the same decisions. The first line (`start`) holds
//! what the engine was built from: the groups' configuration (the `[policy]` and
//! `[[group]]` tables of the config file), the wall-clock origin and the cost
//! ceiling. A reload is a `reconfigure` line with the new tables.
//!
//! Bounded: past `record_max_bytes` the file is renamed to `FILE.1` (one older
//! file kept) and a new one is started; `replay --inputs FILE.1 FILE` replays
//! both, in order.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use crate::config::source::{groups_of, lxc_of, lxc_tables, policy_tables};
use crate::core::vertical::Size;
use crate::core::{ActionId, Input, Timestamp, lxc};
use crate::name::Name;

/// One recorded line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "input", rename_all = "snake_case", deny_unknown_fields)]
pub enum Line {
    /// How the engine was built (the first line of a recording).
    Start {
        t_ms: u64,
        /// The `[policy]` and `[[group]]` tables of the configuration (TOML).
        config: String,
        origin_ms: i64,
        cost_ceiling: Option<u64>,
        dry_run: bool,
    },
    Sample {
        t_ms: u64,
        vm: String,
        cpu_us: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        vcpus: Option<u32>,
    },
    Tick {
        t_ms: u64,
    },
    Result {
        t_ms: u64,
        group: String,
        id: ActionId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    Adopt {
        t_ms: u64,
        group: String,
        vm: String,
    },
    Foreign {
        t_ms: u64,
        group: String,
        vm: String,
    },
    Gone {
        t_ms: u64,
        group: String,
        vm: String,
    },
    Refusal {
        t_ms: u64,
        group: String,
        why: Option<String>,
    },
    Pause {
        t_ms: u64,
        group: String,
    },
    Resume {
        t_ms: u64,
        group: String,
    },
    Scale {
        t_ms: u64,
        group: String,
        target: u32,
    },
    /// An operator approved (`approve`) or rejected a held decision.
    Approval {
        t_ms: u64,
        group: String,
        id: ActionId,
        approve: bool,
        by: String,
    },
    /// Whether the orchestrator allows the group's clones a CPU of their own.
    CpuRoom {
        t_ms: u64,
        group: String,
        other_cpus: bool,
    },
    /// The shell's answer to a readiness check or `on_draining` of a clone.
    Lifecycle {
        t_ms: u64,
        group: String,
        vm: String,
        event: crate::core::lifecycle::Event,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// A reload: the new `[policy]` and `[[group]]` tables.
    Reconfigure {
        t_ms: u64,
        config: String,
    },
    CostCeiling {
        t_ms: u64,
        micros: Option<u64>,
    },
    ExternalCost {
        t_ms: u64,
        micros: u64,
    },
    InstanceCost {
        t_ms: u64,
        group: String,
        micros: u64,
    },
    WallOrigin {
        t_ms: u64,
        origin_ms: i64,
    },
    /// A seasonal forecast handed to a group (fitted by the refit task).
    Forecast {
        t_ms: u64,
        group: String,
        forecast: crate::core::seasonal::Forecast,
    },
    /// How the LXC machine was built (the first line of the Proxmox loop).
    LxcStart {
        t_ms: u64,
        /// The `[policy]`, `[proxmox]` (without its address and credentials) and
        /// `[[lxc]]` tables (TOML).
        config: String,
        origin_ms: i64,
        cost_ceiling: Option<u64>,
        dry_run: bool,
    },
    /// One poll of `/cluster/resources`, as the LXC machine sees it.
    Poll {
        t_ms: u64,
        rows: Vec<lxc::Row>,
        owned: Vec<lxc::Owned>,
    },
    /// cores / cpulimit read from a container's config.
    Size {
        t_ms: u64,
        vmid: u32,
        size: Size,
    },
    /// How a resize ended.
    Resized {
        t_ms: u64,
        vmid: u32,
        id: ActionId,
        to: Size,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// An operator answered a resize held for approval.
    ResizeAnswer {
        t_ms: u64,
        vmid: u32,
        id: ActionId,
        approve: bool,
        by: String,
    },
    /// An input of the LXC machine's engine (its tick included): results,
    /// operator commands, costs.
    Lxc {
        t_ms: u64,
        of: Box<Line>,
    },
}

impl Line {
    /// The line of `input` at `now`; a reconfigure needs the config text it came
    /// from (`config`), which the input alone does not carry.
    pub fn of(now: Timestamp, input: &Input, config: Option<&str>) -> Self {
        let t_ms = now.as_millis();
        let s = |n: &Name| n.to_string();
        match input {
            Input::Sample { vm, cpu_us, vcpus } => Self::Sample {
                t_ms,
                vm: s(vm),
                cpu_us: *cpu_us,
                vcpus: *vcpus,
            },
            Input::Tick => Self::Tick { t_ms },
            Input::ActionResult { group, id, outcome } => Self::Result {
                t_ms,
                group: s(group),
                id: *id,
                error: outcome.as_ref().err().cloned(),
            },
            Input::Adopt { group, vm } => Self::Adopt {
                t_ms,
                group: s(group),
                vm: s(vm),
            },
            Input::Foreign { group, vm } => Self::Foreign {
                t_ms,
                group: s(group),
                vm: s(vm),
            },
            Input::Gone { group, vm } => Self::Gone {
                t_ms,
                group: s(group),
                vm: s(vm),
            },
            Input::Refusal { group, why } => Self::Refusal {
                t_ms,
                group: s(group),
                why: why.clone(),
            },
            Input::Pause { group } => Self::Pause {
                t_ms,
                group: s(group),
            },
            Input::Resume { group } => Self::Resume {
                t_ms,
                group: s(group),
            },
            Input::Scale { group, target } => Self::Scale {
                t_ms,
                group: s(group),
                target: *target,
            },
            Input::Approve { group, id, by } => Self::Approval {
                t_ms,
                group: s(group),
                id: *id,
                approve: true,
                by: by.clone(),
            },
            Input::Reject { group, id, by } => Self::Approval {
                t_ms,
                group: s(group),
                id: *id,
                approve: false,
                by: by.clone(),
            },
            Input::CpuRoom { group, other_cpus } => Self::CpuRoom {
                t_ms,
                group: s(group),
                other_cpus: *other_cpus,
            },
            Input::Lifecycle {
                group,
                vm,
                event,
                outcome,
            } => Self::Lifecycle {
                t_ms,
                group: s(group),
                vm: s(vm),
                event: *event,
                error: outcome.as_ref().err().cloned(),
            },
            Input::Reconfigure { .. } => Self::Reconfigure {
                t_ms,
                config: config.unwrap_or_default().to_string(),
            },
            Input::CostCeiling { micros } => Self::CostCeiling {
                t_ms,
                micros: *micros,
            },
            Input::ExternalCost { micros } => Self::ExternalCost {
                t_ms,
                micros: *micros,
            },
            Input::InstanceCost { group, micros } => Self::InstanceCost {
                t_ms,
                group: s(group),
                micros: *micros,
            },
            Input::WallOrigin { origin_ms } => Self::WallOrigin {
                t_ms,
                origin_ms: *origin_ms,
            },
            Input::Forecast { group, forecast } => Self::Forecast {
                t_ms,
                group: s(group),
                forecast: (**forecast).clone(),
            },
        }
    }

    /// The line of an LXC machine input at `now`.
    pub fn of_lxc(now: Timestamp, input: &lxc::Input) -> Self {
        let t_ms = now.as_millis();
        match input {
            lxc::Input::Poll(p) => Self::Poll {
                t_ms,
                rows: p.rows.clone(),
                owned: p.owned.clone(),
            },
            lxc::Input::Size { vmid, size } => Self::Size {
                t_ms,
                vmid: *vmid,
                size: *size,
            },
            lxc::Input::Resized {
                vmid,
                id,
                to,
                outcome,
            } => Self::Resized {
                t_ms,
                vmid: *vmid,
                id: *id,
                to: *to,
                error: outcome.as_ref().err().cloned(),
            },
            lxc::Input::AnswerResize {
                vmid,
                id,
                approve,
                by,
            } => Self::ResizeAnswer {
                t_ms,
                vmid: *vmid,
                id: *id,
                approve: *approve,
                by: by.clone(),
            },
            lxc::Input::Engine(e) => Self::Lxc {
                t_ms,
                of: Box::new(Self::of(now, e, None)),
            },
            lxc::Input::Tick => Self::Lxc {
                t_ms,
                of: Box::new(Self::Tick { t_ms }),
            },
        }
    }

    /// Whether this line is an LXC machine's (else the albatross engine's).
    pub fn is_lxc(&self) -> bool {
        matches!(
            self,
            Self::LxcStart { .. }
                | Self::Poll { .. }
                | Self::Size { .. }
                | Self::Resized { .. }
                | Self::ResizeAnswer { .. }
                | Self::Lxc { .. }
        )
    }

    /// The time and the LXC machine input of this line (`LxcStart` has none).
    pub fn lxc_input(self) -> Result<(Timestamp, Option<lxc::Input>), String> {
        let (t, input) = match self {
            Self::LxcStart { t_ms, .. } => (t_ms, None),
            Self::Poll { t_ms, rows, owned } => {
                (t_ms, Some(lxc::Input::Poll(lxc::Poll { rows, owned })))
            }
            Self::Size { t_ms, vmid, size } => (t_ms, Some(lxc::Input::Size { vmid, size })),
            Self::Resized {
                t_ms,
                vmid,
                id,
                to,
                error,
            } => (
                t_ms,
                Some(lxc::Input::Resized {
                    vmid,
                    id,
                    to,
                    outcome: error.map_or(Ok(()), Err),
                }),
            ),
            Self::ResizeAnswer {
                t_ms,
                vmid,
                id,
                approve,
                by,
            } => (
                t_ms,
                Some(lxc::Input::AnswerResize {
                    vmid,
                    id,
                    approve,
                    by,
                }),
            ),
            Self::Lxc { t_ms, of } => match *of {
                Self::Tick { .. } => (t_ms, Some(lxc::Input::Tick)),
                Self::Reconfigure { .. } | Self::Start { .. } => {
                    return Err("an LXC machine is not reconfigured in place".into());
                }
                of if of.is_lxc() => return Err("an LXC line inside an LXC line".into()),
                of => (t_ms, of.input()?.1.map(lxc::Input::Engine)),
            },
            _ => return Err("not an LXC machine's line".into()),
        };
        Ok((Timestamp(t), input))
    }

    /// The time and the engine input of this line; `Start` has none (the engine is
    /// built from it), `Reconfigure` needs `groups` (parse its config with
    /// [`groups_of`]).
    pub fn input(self) -> Result<(Timestamp, Option<Input>), String> {
        let n = |s: &str| Name::parse(s).map_err(|e| format!("{s:?}: {e}"));
        let (t, input) = match self {
            Self::Start { t_ms, .. } => (t_ms, None),
            Self::Sample {
                t_ms,
                vm,
                cpu_us,
                vcpus,
            } => (
                t_ms,
                Some(Input::Sample {
                    vm: n(&vm)?,
                    cpu_us,
                    vcpus,
                }),
            ),
            Self::Tick { t_ms } => (t_ms, Some(Input::Tick)),
            Self::Result {
                t_ms,
                group,
                id,
                error,
            } => (
                t_ms,
                Some(Input::ActionResult {
                    group: n(&group)?,
                    id,
                    outcome: error.map_or(Ok(()), Err),
                }),
            ),
            Self::Adopt { t_ms, group, vm } => (
                t_ms,
                Some(Input::Adopt {
                    group: n(&group)?,
                    vm: n(&vm)?,
                }),
            ),
            Self::Foreign { t_ms, group, vm } => (
                t_ms,
                Some(Input::Foreign {
                    group: n(&group)?,
                    vm: n(&vm)?,
                }),
            ),
            Self::Gone { t_ms, group, vm } => (
                t_ms,
                Some(Input::Gone {
                    group: n(&group)?,
                    vm: n(&vm)?,
                }),
            ),
            Self::Refusal { t_ms, group, why } => (
                t_ms,
                Some(Input::Refusal {
                    group: n(&group)?,
                    why,
                }),
            ),
            Self::Pause { t_ms, group } => (t_ms, Some(Input::Pause { group: n(&group)? })),
            Self::Resume { t_ms, group } => (t_ms, Some(Input::Resume { group: n(&group)? })),
            Self::Scale {
                t_ms,
                group,
                target,
            } => (
                t_ms,
                Some(Input::Scale {
                    group: n(&group)?,
                    target,
                }),
            ),
            Self::Approval {
                t_ms,
                group,
                id,
                approve,
                by,
            } => {
                let group = n(&group)?;
                let input = if approve {
                    Input::Approve { group, id, by }
                } else {
                    Input::Reject { group, id, by }
                };
                (t_ms, Some(input))
            }
            Self::CpuRoom {
                t_ms,
                group,
                other_cpus,
            } => (
                t_ms,
                Some(Input::CpuRoom {
                    group: n(&group)?,
                    other_cpus,
                }),
            ),
            Self::Lifecycle {
                t_ms,
                group,
                vm,
                event,
                error,
            } => (
                t_ms,
                Some(Input::Lifecycle {
                    group: n(&group)?,
                    vm: n(&vm)?,
                    event,
                    outcome: error.map_or(Ok(()), Err),
                }),
            ),
            Self::Reconfigure { t_ms, config } => (
                t_ms,
                Some(Input::Reconfigure {
                    groups: groups_of(&config)?,
                }),
            ),
            Self::CostCeiling { t_ms, micros } => (t_ms, Some(Input::CostCeiling { micros })),
            Self::ExternalCost { t_ms, micros } => (t_ms, Some(Input::ExternalCost { micros })),
            Self::InstanceCost {
                t_ms,
                group,
                micros,
            } => (
                t_ms,
                Some(Input::InstanceCost {
                    group: n(&group)?,
                    micros,
                }),
            ),
            Self::WallOrigin { t_ms, origin_ms } => (t_ms, Some(Input::WallOrigin { origin_ms })),
            Self::Forecast {
                t_ms,
                group,
                forecast,
            } => (
                t_ms,
                Some(Input::Forecast {
                    group: n(&group)?,
                    forecast: std::sync::Arc::new(forecast),
                }),
            ),
            Self::LxcStart { .. }
            | Self::Poll { .. }
            | Self::Size { .. }
            | Self::Resized { .. }
            | Self::ResizeAnswer { .. }
            | Self::Lxc { .. } => return Err("an LXC machine's line, not the engine's".into()),
        };
        Ok((Timestamp(t), input))
    }
}

/// Appends lines to `path`, rotating past `max_bytes`. Clones share the file:
/// both loops record into one, a line at a time.
#[derive(Clone)]
pub struct Recorder(std::sync::Arc<std::sync::Mutex<File_>>);

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let path = self.0.lock().map(|f| f.path.clone()).unwrap_or_default();
        f.debug_tuple("Recorder").field(&path).finish()
    }
}

struct File_ {
    path: PathBuf,
    out: BufWriter<File>,
    written: u64,
    max_bytes: u64,
}

impl Recorder {
    /// Open (append) `path`.
    pub fn open(path: &Path, max_bytes: u64) -> std::io::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let f = OpenOptions::new().create(true).append(true).open(path)?;
        let written = f.metadata()?.len();
        Ok(Self(std::sync::Arc::new(std::sync::Mutex::new(File_ {
            path: path.to_owned(),
            out: BufWriter::new(f),
            written,
            max_bytes: max_bytes.max(4096),
        }))))
    }

    /// Append one line. Failures are logged, never fatal: the daemon goes on.
    pub fn write(&mut self, line: &Line) {
        let Ok(mut text) = serde_json::to_string(line) else {
            return;
        };
        text.push('\n');
        let mut f = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if f.written + text.len() as u64 > f.max_bytes
            && let Err(e) = f.rotate()
        {
            tracing::error!(path = %f.path.display(), error = %e, "cannot rotate the recording");
        }
        match f
            .out
            .write_all(text.as_bytes())
            .and_then(|()| f.out.flush())
        {
            Ok(()) => f.written += text.len() as u64,
            Err(e) => {
                tracing::error!(path = %f.path.display(), error = %e, "cannot write the recording");
            }
        }
    }
}

impl File_ {
    fn rotate(&mut self) -> std::io::Result<()> {
        self.out.flush()?;
        let mut old = self.path.clone().into_os_string();
        old.push(".1");
        std::fs::rename(&self.path, &old)?;
        let f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        self.out = BufWriter::new(f);
        self.written = 0;
        tracing::info!(path = %self.path.display(), "recording rotated");
        Ok(())
    }
}

#[cfg(test)]
mod tests;
