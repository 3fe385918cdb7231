//! The Proxmox shell around the LXC machine ([`crate::core::Lxc`]): one
//! `GET /cluster/resources` per poll turned into a [`lxc::Poll`], the machine's
//! outputs turned into [`Job`]s that run concurrently (bounded by the client), and
//! their results fed back as inputs. Every input can be recorded (`run --record`).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::task::JoinSet;

use super::actuator::{self, CloneJob, Tasks};
use super::client::{Client, ProxmoxError};
use super::state::CloneState;
use super::types::Resource;
use crate::actuate::Shell;
use crate::config::proxmox::{CloneSpec, Lxc};
use crate::core::vertical::{self, Resize};
use crate::core::{
    Action, Decision, Engine, Input, Machine, Output, Timestamp, Verdict, WhyNot, lxc,
};
use crate::daemon::approvals::SharedBook;
use crate::daemon::decision_log::DecisionLog;
use crate::daemon::recorder::{Line, Recorder};
use crate::jsonl;
use crate::name::Name;
use crate::notify::notice::{Ceilings, Notice, Notices};

// Carrying out jobs and settling their results.
pub mod act;
// Manual approval: holding, answering and expiring jobs.
mod approval;
// The global cost ceiling.
mod cost;
// The snapshot behind `GET /v1/containers`.
mod view;
// Machine outputs into jobs, decision-log lines, notices and history rows.
mod outputs;

const MIB: u64 = 1 << 20;

/// Controller settings.
#[derive(Debug, Clone)]
pub struct ControllerSettings {
    pub tag: String,
    pub tasks: Tasks,
    pub dry_run: bool,
    pub poll_interval: Duration,
    /// Ownership record; `None` keeps it in memory only (tests, benchmarks).
    pub state_file: Option<PathBuf>,
    pub decision_log: Option<PathBuf>,
}

/// Work for the actuator, carried out concurrently.
#[derive(Debug, Clone)]
pub enum Job {
    Resize {
        /// The container's index in the machine.
        c: usize,
        node: String,
        vmid: u32,
        r: Resize,
    },
    Decision {
        /// Boxed as the engine emits it (a decision is large next to a resize).
        d: Box<Decision>,
        act: Act,
    },
}

/// What a horizontal decision means for the API.
#[derive(Debug, Clone)]
pub enum Act {
    Clone(CloneJob),
    Destroy {
        node: String,
        vmid: u32,
    },
    /// Already gone: nothing to do.
    Gone,
    Refuse(String),
    Nothing,
}

/// What one cycle did, for `--once`, tests and benchmarks.
#[derive(Debug, Default)]
pub struct Report {
    pub containers_seen: usize,
    /// (job description, outcome).
    pub actions: Vec<(String, Result<(), String>)>,
    /// (vmid, why not) of every blocked vertical change.
    pub blocked: Vec<(u32, WhyNot)>,
}

/// The Proxmox side of the daemon.
pub struct Controller {
    client: Arc<Client>,
    machine: lxc::Lxc,
    /// `lxc.name` of each container (shared with history rows), by machine index.
    keys: Vec<Arc<Name>>,
    /// `lxc.clone` of each container, by machine index.
    clones: Vec<CloneSpec>,
    state: Arc<Mutex<CloneState>>,
    settings: ControllerSettings,
    log: DecisionLog,
    /// Jobs waiting for an operator (`require_approval`), by approval id.
    approvals: SharedBook,
    notices: Notices,
    held: Vec<(String, Job)>,
    /// Horizontal and vertical streaks are separate: one holding does not end the other's.
    ceilings: [Ceilings; 2],
    /// Where engine outputs are recorded (`[history]`), if anywhere.
    history: Option<crate::history::Feed>,
    /// Where the status snapshot goes after each poll (`GET /v1/containers`).
    view: Option<super::view::SharedView>,
    /// Every engine output, for the API and metrics (`/v1/decisions`, `decisions_total`).
    outputs: Option<tokio::sync::broadcast::Sender<Output>>,
    /// The last poll's rows by vmid (jobs are planned against them).
    rows: HashMap<u32, Resource>,
    /// `run --record`: every machine input, with its time.
    recorder: Option<Recorder>,
}

impl Controller {
    pub fn new(
        client: Arc<Client>,
        lxc: Vec<Lxc>,
        state: CloneState,
        settings: ControllerSettings,
        now: Timestamp,
    ) -> std::io::Result<Self> {
        let log = DecisionLog::open(settings.decision_log.as_deref())?;
        let keys = lxc.iter().map(|l| Arc::new(l.name.clone())).collect();
        let clones = lxc.iter().map(|l| l.clone.clone()).collect();
        let specs = lxc.into_iter().map(Lxc::into_spec).collect();
        Ok(Self {
            client,
            // Held jobs wait in the machine, unless nothing is carried out anyway.
            machine: lxc::Lxc::new(specs, settings.poll_interval, now)
                .with_approvals(!settings.dry_run),
            keys,
            clones,
            state: Arc::new(Mutex::new(state)),
            settings,
            log,
            approvals: SharedBook::default(),
            notices: Notices::default(),
            held: Vec::new(),
            ceilings: Default::default(),
            history: None,
            view: None,
            outputs: None,
            rows: HashMap::new(),
            recorder: None,
        })
    }

    /// Hold jobs that need approval in `book` (shared with the API) and announce them
    /// on `notices`, instead of a private book nobody can approve.
    pub fn with_approvals(mut self, book: SharedBook, notices: Notices) -> Self {
        self.approvals = book;
        self.notices = notices;
        self
    }

    /// Record every engine output (samples, evaluations, decisions) in the history.
    pub fn with_history(mut self, feed: crate::history::Feed) -> Self {
        self.history = Some(feed);
        self
    }

    /// Record every machine input in `recorder` (`run --record`), starting with how
    /// the machine was built: `config` (the `[policy]`, `[proxmox]` and `[[lxc]]`
    /// tables that shape it), the wall origin and the cost ceiling.
    pub fn with_recorder(mut self, mut recorder: Recorder, config: String, now: Timestamp) -> Self {
        let e = self.machine.engine();
        recorder.write(&Line::LxcStart {
            t_ms: now.as_millis(),
            config,
            origin_ms: e.wall_origin(),
            cost_ceiling: e.cost_ceiling(),
            dry_run: self.settings.dry_run,
        });
        self.recorder = Some(recorder);
        self
    }

    pub fn client(&self) -> &Arc<Client> {
        &self.client
    }

    /// Anchor t = 0 at `origin_ms` (Unix ms) for the containers' schedules.
    pub fn set_wall_origin(&mut self, origin_ms: i64) {
        // At start, before any other input (the origin does not read `now`).
        let origin = Input::WallOrigin { origin_ms };
        self.step(Timestamp::ZERO, lxc::Input::Engine(origin));
    }

    /// The horizontal engine (groups, members, counters).
    pub fn engine(&self) -> &Engine {
        self.machine.engine()
    }

    /// The LXC machine.
    pub fn machine(&self) -> &lxc::Lxc {
        &self.machine
    }

    /// The ownership record.
    pub fn clone_state(&self) -> CloneState {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn write(&mut self, v: Value) {
        self.log.line(&v);
    }

    /// Feed the machine one input (recorded first); its outputs, in order.
    fn step(&mut self, now: Timestamp, input: lxc::Input) -> Vec<lxc::Output> {
        if let Some(r) = &mut self.recorder {
            r.write(&Line::of_lxc(now, &input));
        }
        let mut out = Vec::new();
        self.machine.step(now, input, &mut out);
        out
    }

    /// Poll, decide, act and settle, all at `now` (`run --once`, tests, benchmarks).
    pub async fn cycle(&mut self, now: Timestamp) -> Result<Report, ProxmoxError> {
        let resources = self.client.resources().await?;
        let mut report = Report::default();
        let jobs = self.decide(now, &resources, &mut report).await;
        let mut set = JoinSet::new();
        for job in jobs {
            set.spawn(self.execute(job));
        }
        while let Some(done) = set.join_next().await {
            if let Ok((job, r)) = done {
                let shown = r.clone().map_err(|f| f.message().to_string());
                report.actions.push((describe(&job), shown));
                self.settle(now, job, r);
            }
        }
        Ok(report)
    }

    /// Feed one poll to the machine; returns the jobs to run.
    pub async fn decide(
        &mut self,
        now: Timestamp,
        res: &[Resource],
        report: &mut Report,
    ) -> Vec<Job> {
        let poll = self.poll_of(res);
        report.containers_seen = poll
            .rows
            .iter()
            .filter(|r| r.running && !r.template && self.machine.index_of(r.vmid).is_some())
            .count();
        self.refresh_known(now, &poll).await;
        let out = self.step(now, lxc::Input::Poll(poll));
        let mut jobs = Vec::new();
        for o in out {
            self.output(now, o, &mut jobs, report);
        }
        self.publish(now);
        self.start_jobs(now, jobs)
    }

    /// What the machine sees of a poll: the rows of the configured containers and
    /// of the owned clones, and the ownership record. Keeps the rows for planning.
    fn poll_of(&mut self, res: &[Resource]) -> lxc::Poll {
        let node_free: HashMap<&str, u32> = res
            .iter()
            .filter(|r| r.kind == "node")
            .filter_map(|r| {
                let free = r.maxmem?.saturating_sub(r.mem?) / MIB;
                Some((r.node.as_str(), u32::try_from(free).unwrap_or(u32::MAX)))
            })
            .collect();
        let mut owned = Vec::new();
        {
            let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
            for c in self.machine.containers() {
                let group = c.spec().name.to_string();
                for (n, vmid) in s.clones(&group) {
                    // A name that no longer parses was not written by this version.
                    if let Ok(clone) = Name::parse(n) {
                        owned.push(lxc::Owned {
                            group: c.spec().name.clone(),
                            clone,
                            vmid,
                        });
                    }
                }
            }
        }
        let wanted: std::collections::HashSet<u32> = self
            .machine
            .containers()
            .iter()
            .map(|c| c.spec().vmid)
            .chain(owned.iter().filter_map(|o| o.vmid))
            .collect();
        self.rows = res
            .iter()
            .filter(|r| r.kind == "lxc")
            .filter_map(|r| Some((u32::try_from(r.vmid?).ok()?, r.clone())))
            .collect();
        let mib = |b: u64| u32::try_from(b / MIB).unwrap_or(u32::MAX);
        let mut rows: Vec<lxc::Row> = self
            .rows
            .iter()
            .filter(|(v, _)| wanted.contains(v))
            .map(|(&vmid, r)| lxc::Row {
                vmid,
                running: r.running(),
                template: r.template == Some(1),
                cpu: r.cpu.unwrap_or(0.0),
                maxcpu: r.maxcpu,
                mem_mib: mib(r.mem.unwrap_or(0)),
                maxmem_mib: r.maxmem.map(mib),
                node_free_mib: node_free.get(r.node.as_str()).copied(),
                tagged: r.has_tag(&self.settings.tag),
            })
            .collect();
        rows.sort_by_key(|r| r.vmid);
        lxc::Poll { rows, owned }
    }

    /// Adopt the clones the ownership record holds (at start, once the recording,
    /// if any, is attached): they count against `max_instances` and the cost
    /// ceiling before the first poll, as a reconcile would make them.
    pub fn adopt_recorded(&mut self, now: Timestamp) {
        let owned: Vec<(Name, Name)> = {
            let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
            self.machine
                .containers()
                .iter()
                .filter(|c| c.spec().mode.clones())
                .flat_map(|c| {
                    let group = c.spec().name.clone();
                    s.clones(&group.to_string())
                        .filter_map(|(n, _)| Name::parse(n).ok())
                        .map(move |vm| (group.clone(), vm))
                        .collect::<Vec<_>>()
                })
                .collect()
        };
        for (group, vm) in owned {
            self.step(now, lxc::Input::Engine(Input::Adopt { group, vm }));
        }
    }

    /// An operator command (the API's pause, resume, scale of a horizontal
    /// container group): its outputs, and the jobs it starts (planned against the
    /// last poll).
    pub fn control(&mut self, now: Timestamp, input: Input) -> (Vec<Output>, Vec<Job>) {
        tracing::info!(command = ?input, "operator command (proxmox)");
        let out = self.step(now, lxc::Input::Engine(input));
        let engine: Vec<Output> = out
            .iter()
            .filter_map(|o| match o {
                lxc::Output::Engine(e) => Some(e.clone()),
                _ => None,
            })
            .collect();
        let mut jobs = Vec::new();
        for o in out {
            self.output(now, o, &mut jobs, &mut Report::default());
        }
        (engine, self.start_jobs(now, jobs))
    }

    /// Deadlines between polls (cooldowns, schedule windows): the machine's tick.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        self.machine.next_deadline()
    }

    /// Act on due deadlines; returns the jobs to run (planned against the last poll).
    pub fn tick(&mut self, now: Timestamp) -> Vec<Job> {
        let out = self.step(now, lxc::Input::Tick);
        let mut jobs = Vec::new();
        for o in out {
            self.output(now, o, &mut jobs, &mut Report::default());
        }
        self.start_jobs(now, jobs)
    }

    /// Jobs to run now: held for approval, recorded in dry-run, or started.
    fn start_jobs(&mut self, now: Timestamp, jobs: Vec<Job>) -> Vec<Job> {
        if self.settings.dry_run {
            return self.dry_run(now, jobs);
        }
        let mut run = Vec::new();
        for job in jobs {
            // One that can only be refused (or is moot) is answered at once: an
            // operator has nothing to approve.
            let moot = matches!(
                job,
                Job::Decision {
                    act: Act::Refuse(_) | Act::Gone | Act::Nothing,
                    ..
                }
            );
            if self.needs_approval(&job) && !moot {
                self.hold(now, job);
            } else {
                self.start(&job);
                run.push(job);
            }
        }
        run
    }

    /// Read cores/cpulimit of the containers the machine does not know (or whose
    /// `maxcpu` someone else changed), concurrently; each answer is an input.
    async fn refresh_known(&mut self, now: Timestamp, poll: &lxc::Poll) {
        let mut set = JoinSet::new();
        for vmid in self.machine.stale(poll) {
            let Some(node) = self.rows.get(&vmid).map(|r| r.node.clone()) else {
                continue;
            };
            let client = self.client.clone();
            set.spawn(async move { (vmid, actuator::read_size(&client, &node, vmid).await) });
        }
        let mut sizes = Vec::new();
        while let Some(Ok((vmid, r))) = set.join_next().await {
            match r {
                Ok(size) => sizes.push((vmid, size)),
                Err(e) => tracing::warn!(vmid, error = %e, "cannot read the container config"),
            }
        }
        // In a stable order, so a recording replays the same.
        sizes.sort_by_key(|(v, _)| *v);
        for (vmid, size) in sizes {
            self.step(now, lxc::Input::Size { vmid, size });
        }
    }

    /// Before a job runs: record a clone's name first, so a crash mid-create leaves
    /// an owned name that reconciliation can clean up, not an orphan.
    fn start(&self, job: &Job) {
        if let Job::Decision {
            act: Act::Clone(cj),
            ..
        } = job
        {
            let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
            s.set(&cj.group, &cj.name, None);
            self.save(&s);
        }
    }

    fn save(&self, s: &CloneState) {
        if let Some(p) = &self.settings.state_file
            && let Err(e) = s.save(p)
        {
            tracing::error!(error = %e, "cannot write the Proxmox ownership record");
        }
    }

    /// `--dry-run`: every job succeeds without I/O.
    fn dry_run(&mut self, now: Timestamp, jobs: Vec<Job>) -> Vec<Job> {
        for job in jobs {
            self.settle(now, job, Ok(()));
        }
        Vec::new()
    }
}

fn describe(job: &Job) -> String {
    match job {
        Job::Resize { vmid, r, .. } => format!(
            "resize {vmid}: cores {}->{} cpulimit {}->{} memory {}->{} MiB",
            r.from.cores,
            r.to.cores,
            r.from.cpulimit_centi,
            r.to.cpulimit_centi,
            r.from.memory_mib,
            r.to.memory_mib
        ),
        Job::Decision { d, .. } => format!("{} {}", d.action.as_str(), d.instance),
    }
}
