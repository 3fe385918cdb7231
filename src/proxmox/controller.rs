//! One poll-decide-act cycle over every configured container: one
//! `GET /cluster/resources`, the vertical machines and the horizontal engine fed with
//! explicit `now`, decisions turned into [`Job`]s that run concurrently (bounded by
//! the client), and their results fed back.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::task::JoinSet;

use super::actuator::{self, CloneJob, Tasks};
use super::client::{Client, ProxmoxError};
use super::state::CloneState;
use super::types::Resource;
use crate::config::proxmox::{Lxc, Mode};
use crate::core::vertical::{self, Resize, Size, Usage, Vertical};
use crate::core::{Action, Decision, Engine, Input, Options, Output, Timestamp, Verdict, WhyNot};
use crate::daemon::approvals::SharedBook;
use crate::jsonl;
use crate::name::Name;
use crate::notify::notice::{Ceilings, Notice, Notices};

// Carrying out jobs and settling their results.
mod act;
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

struct Container {
    lxc: Lxc,
    vertical: Option<Vertical>,
    /// cores and cpulimit from the config (`/cluster/resources` has only `maxcpu`).
    known: Option<Size>,
    /// The size just set, used until `/cluster/resources` shows it (pvestatd lag).
    expect: Option<(Size, Timestamp)>,
    /// Why the last wanted resize was not made (for the status view).
    why_not: Option<WhyNot>,
    /// The usage of the last poll that saw it running (for the status view).
    seen: Option<Usage>,
    /// `lxc.name`, shared with history rows.
    key: Arc<Name>,
}

/// Work for the actuator, carried out concurrently.
#[derive(Debug, Clone)]
pub enum Job {
    Resize {
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
    containers: Vec<Container>,
    engine: Engine,
    counters: HashMap<String, (Timestamp, u64)>,
    state: Arc<Mutex<CloneState>>,
    settings: ControllerSettings,
    log: Option<BufWriter<File>>,
    pending: Vec<Output>,
    /// Jobs waiting for an operator (`require_approval`), by approval id.
    approvals: SharedBook,
    notices: Notices,
    held: Vec<(String, Job)>,
    /// Horizontal and vertical streaks are separate: one holding does not end the other's.
    ceilings: [Ceilings; 2],
    /// Where engine outputs are recorded (`[history]`), if anywhere.
    history: Option<crate::history::Feed>,
    /// `[daemon] max_cost_per_hour`, in millionths.
    cost_ceiling: Option<u64>,
    /// Hourly cost of the daemon's albatross groups (they share the ceiling).
    external_cost: u64,
    /// Where the status snapshot goes after each poll (`GET /v1/containers`).
    view: Option<super::view::SharedView>,
    /// Every engine output, for the API and metrics (`/v1/decisions`, `decisions_total`).
    outputs: Option<tokio::sync::broadcast::Sender<Output>>,
    /// The last poll's rows (operator commands plan clones against them).
    last_rows: Vec<Resource>,
}

impl Controller {
    pub fn new(
        client: Arc<Client>,
        lxc: Vec<Lxc>,
        state: CloneState,
        settings: ControllerSettings,
        now: Timestamp,
    ) -> std::io::Result<Self> {
        let groups = lxc
            .iter()
            .filter(|l| l.mode != Mode::Vertical)
            .map(|l| (l.name.clone(), l.policy.clone()))
            .collect();
        let mut engine = Engine::new(groups, Options::default(), now);
        for l in lxc.iter().filter(|l| l.mode != Mode::Vertical) {
            for (n, _) in state.clones(&l.name.to_string()) {
                if let Ok(vm) = Name::parse(n) {
                    engine.step(
                        now,
                        Input::Adopt {
                            group: l.name.clone(),
                            vm,
                        },
                        &mut Vec::new(),
                    );
                }
            }
        }
        let log = match &settings.decision_log {
            Some(p) => Some(BufWriter::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)?,
            )),
            None => None,
        };
        let containers = lxc
            .into_iter()
            .map(|l| Container {
                vertical: (l.mode != Mode::Horizontal).then(|| Vertical::new(l.vertical.clone())),
                key: Arc::new(l.name.clone()),
                lxc: l,
                known: None,
                expect: None,
                why_not: None,
                seen: None,
            })
            .collect();
        Ok(Self {
            client,
            containers,
            engine,
            counters: HashMap::new(),
            state: Arc::new(Mutex::new(state)),
            settings,
            log,
            pending: Vec::new(),
            approvals: SharedBook::default(),
            notices: Notices::default(),
            held: Vec::new(),
            ceilings: Default::default(),
            history: None,
            cost_ceiling: None,
            external_cost: 0,
            view: None,
            outputs: None,
            last_rows: Vec::new(),
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

    pub fn client(&self) -> &Arc<Client> {
        &self.client
    }

    /// Anchor t = 0 at `origin_ms` (Unix ms) for the containers' schedules.
    pub fn set_wall_origin(&mut self, origin_ms: i64) {
        // At start, before any other input (the origin does not read `now`).
        let origin = Input::WallOrigin { origin_ms };
        self.engine.step(Timestamp::ZERO, origin, &mut Vec::new());
        for c in &mut self.containers {
            if let Some(v) = c.vertical.take() {
                c.vertical = Some(v.with_wall_origin(origin_ms));
            }
        }
    }

    /// The horizontal engine (groups, members, counters).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The ownership record.
    pub fn clone_state(&self) -> CloneState {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn write(&mut self, v: Value) {
        if let Some(w) = &mut self.log
            && let Err(e) = writeln!(w, "{v}").and_then(|()| w.flush())
        {
            tracing::error!(error = %e, "cannot write the decision log");
        }
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
                report.actions.push((describe(&job), r.clone()));
                self.settle(now, job, r);
            }
        }
        Ok(report)
    }

    /// Feed one poll to the machines; returns the jobs to run.
    pub async fn decide(
        &mut self,
        now: Timestamp,
        res: &[Resource],
        report: &mut Report,
    ) -> Vec<Job> {
        let by_vmid: HashMap<u64, &Resource> = res
            .iter()
            .filter(|r| r.kind == "lxc")
            .filter_map(|r| Some((r.vmid?, r)))
            .collect();
        let node_free: HashMap<&str, u32> = res
            .iter()
            .filter(|r| r.kind == "node")
            .filter_map(|r| {
                let free = r.maxmem?.saturating_sub(r.mem?) / MIB;
                Some((r.node.as_str(), u32::try_from(free).unwrap_or(u32::MAX)))
            })
            .collect();
        self.refresh_known(&by_vmid).await;
        // Resize-only containers share the ceiling with the horizontal groups (their
        // cost as of the last poll).
        let external = Input::ExternalCost {
            micros: self.external_cost + self.vertical_only_cost(),
        };
        self.engine.step(now, external, &mut Vec::new());
        let mut jobs = Vec::new();
        for i in 0..self.containers.len() {
            let vmid = self.containers[i].lxc.vmid;
            let Some(row) = by_vmid.get(&u64::from(vmid)).copied() else {
                tracing::debug!(vmid, "container not in /cluster/resources");
                continue;
            };
            if !row.running() || row.template == Some(1) {
                continue;
            }
            report.containers_seen += 1;
            let Some(size) = self.size_now(i, row, now) else {
                continue;
            };
            let bp = vertical::cpu_share(
                row.cpu.unwrap_or(0.0),
                row.maxcpu.unwrap_or(0.0),
                size.cores,
                size.cpulimit_centi,
            );
            let group = self.containers[i].lxc.name.to_string();
            let clones = u32::try_from(self.state_of(&group).len()).unwrap_or(u32::MAX);
            let usage = Usage {
                size,
                cpu_bp: bp,
                mem_used_mib: u32::try_from(row.mem.unwrap_or(0) / MIB).unwrap_or(u32::MAX),
                node_free_mib: node_free.get(row.node.as_str()).copied(),
                clones,
            };
            self.containers[i].seen = Some(usage);
            let pricing = self.containers[i].lxc.vertical.pricing;
            if pricing.by_size() && self.containers[i].lxc.mode != Mode::Vertical {
                // Clones are copies: a container's instance costs what its size costs.
                let name = self.containers[i].lxc.name.clone();
                let cost = Input::InstanceCost {
                    group: name,
                    micros: pricing.of(size),
                };
                self.engine.step(now, cost, &mut Vec::new());
            }
            let room = self.cost_room(i);
            let c = &mut self.containers[i];
            let mut cap = true;
            if let Some(v) = c.vertical.as_mut() {
                v.set_cost_room(room);
                let mut out = Vec::new();
                v.step(now, vertical::Input::Sample(usage), &mut out);
                cap = v.cpu_at_cap();
                for o in out {
                    self.vertical_output(i, &row.node, o, &mut jobs, report);
                }
            }
            let c = &self.containers[i];
            if c.lxc.mode == Mode::Vertical {
                // No engine sees it: the history records the poll itself.
                if let Some(h) = &mut self.history {
                    let busy = row.cpu.unwrap_or(0.0) * row.maxcpu.unwrap_or(0.0) * 1000.0;
                    h.container(now, &c.key, bp, size.cores, busy.round().max(0.0) as u64);
                }
                continue;
            }
            // Until vertical is at its cap, horizontal sees load capped at its scale-up
            // threshold: it never clones early, but still removes clones when cold.
            let seen = if cap {
                bp
            } else {
                bp.min(c.lxc.policy.scale_up_threshold * 100)
            };
            let name = c.lxc.name.clone();
            self.reconcile(now, &name, &group, &by_vmid);
            self.sample(now, name, seen);
            for (clone, vmid) in self.state_of(&group) {
                let Some(r) = vmid.and_then(|v| by_vmid.get(&u64::from(v))) else {
                    continue;
                };
                if r.running() && r.has_tag(&self.settings.tag) {
                    let bp =
                        vertical::cpu_share(r.cpu.unwrap_or(0.0), r.maxcpu.unwrap_or(0.0), 0, 0);
                    if let Ok(n) = Name::parse(&clone) {
                        self.sample(now, n, bp);
                    }
                }
            }
        }
        let mut out = Vec::new();
        if self.engine.next_deadline().is_some_and(|t| t <= now) {
            self.engine.step(now, Input::Tick, &mut out);
        }
        // Engine outputs were collected per sample too (see `sample`); drain them here.
        out.append(&mut self.pending);
        for o in out {
            self.engine_output(now, o, &by_vmid, &mut jobs);
        }
        self.publish(now, &by_vmid);
        // An operator command between polls plans against these rows.
        self.last_rows = res.to_vec();
        self.start_jobs(now, jobs)
    }

    /// An operator command (the API's pause, resume, scale of a horizontal
    /// container group): its outputs, and the jobs it starts (planned against the
    /// last poll).
    pub fn control(&mut self, now: Timestamp, input: Input) -> (Vec<Output>, Vec<Job>) {
        tracing::info!(command = ?input, "operator command (proxmox)");
        let mut out = Vec::new();
        self.engine.step(now, input, &mut out);
        let rows = std::mem::take(&mut self.last_rows);
        let by_vmid: HashMap<u64, &Resource> = rows
            .iter()
            .filter(|r| r.kind == "lxc")
            .filter_map(|r| Some((r.vmid?, r)))
            .collect();
        let mut jobs = Vec::new();
        for o in out.clone() {
            self.engine_output(now, o, &by_vmid, &mut jobs);
        }
        drop(by_vmid);
        self.last_rows = rows;
        (out, self.start_jobs(now, jobs))
    }

    /// Jobs to run now: held for approval, recorded in dry-run, or started.
    fn start_jobs(&mut self, now: Timestamp, jobs: Vec<Job>) -> Vec<Job> {
        if self.settings.dry_run {
            return self.dry_run(now, jobs);
        }
        let mut run = Vec::new();
        for job in jobs {
            if self.needs_approval(&job) {
                self.hold(now, job);
            } else {
                self.start(&job);
                run.push(job);
            }
        }
        run
    }

    /// Read cores/cpulimit of containers not known yet, or whose `maxcpu` no longer
    /// matches (changed by someone else), concurrently.
    async fn refresh_known(&mut self, by_vmid: &HashMap<u64, &Resource>) {
        let mut set = JoinSet::new();
        for (i, c) in self.containers.iter().enumerate() {
            let Some(row) = by_vmid.get(&u64::from(c.lxc.vmid)) else {
                continue;
            };
            if !row.running() {
                continue;
            }
            let stale = match c.known {
                None => true,
                Some(k) if c.expect.is_none() => row.maxcpu.is_some_and(|m| {
                    (m - maxcpu(k)).abs() > 0.005 && k.cores + k.cpulimit_centi > 0
                }),
                Some(_) => false,
            };
            if stale {
                let (client, node, vmid) = (self.client.clone(), row.node.clone(), c.lxc.vmid);
                set.spawn(async move { (i, actuator::read_size(&client, &node, vmid).await) });
            }
        }
        while let Some(Ok((i, r))) = set.join_next().await {
            match r {
                Ok(size) => self.containers[i].known = Some(size),
                Err(e) => {
                    tracing::warn!(vmid = self.containers[i].lxc.vmid, error = %e, "cannot read the container config")
                }
            }
        }
    }

    fn size_now(&mut self, i: usize, row: &Resource, now: Timestamp) -> Option<Size> {
        let poll = self.settings.poll_interval;
        let c = &mut self.containers[i];
        let k = c.known?;
        let seen = Size {
            memory_mib: u32::try_from(row.maxmem? / MIB).unwrap_or(u32::MAX),
            ..k
        };
        if let Some((exp, at)) = c.expect {
            if seen.memory_mib != exp.memory_mib && now < at.plus(poll * 3) {
                return Some(exp);
            }
            c.expect = None;
        }
        Some(seen)
    }

    /// Recorded clones that exist but are not members (a clone whose task failed or
    /// timed out after the id was taken) are adopted, so they count against
    /// `max_instances` and are eventually removed; records of vanished ones are dropped.
    fn reconcile(
        &mut self,
        now: Timestamp,
        group_name: &Name,
        group: &str,
        by_vmid: &HashMap<u64, &Resource>,
    ) {
        let Some(cluster) = self
            .engine
            .groups()
            .iter()
            .find(|c| **c.group() == *group_name)
        else {
            return;
        };
        let mut adopt = Vec::new();
        let mut drop = Vec::new();
        for (n, vmid) in self.state_of(group) {
            let Ok(name) = Name::parse(&n) else { continue };
            if cluster.has_member(&name) {
                continue;
            }
            match vmid {
                Some(v) if by_vmid.contains_key(&u64::from(v)) => adopt.push(name),
                _ => drop.push(n),
            }
        }
        for vm in adopt {
            tracing::info!(group, clone = %vm, "adopting a recorded clone");
            self.engine.step(
                now,
                Input::Adopt {
                    group: group_name.clone(),
                    vm,
                },
                &mut self.pending,
            );
        }
        if !drop.is_empty() {
            let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
            for n in drop {
                s.remove(group, &n);
            }
            self.save(&s);
        }
    }

    fn state_of(&self, group: &str) -> Vec<(String, Option<u32>)> {
        let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.clones(group).map(|(n, v)| (n.to_string(), v)).collect()
    }

    /// Feed a share as a synthetic cumulative counter (1 vCPU scale).
    fn sample(&mut self, now: Timestamp, vm: Name, bp: u32) {
        let key = vm.to_string();
        let (at, cum) = self.counters.get(&key).copied().unwrap_or((now, 0));
        let cum = vertical::advance_counter(cum, bp, now.since(at).as_millis() as u64);
        self.counters.insert(key, (now, cum));
        let input = Input::Sample {
            vm,
            cpu_us: cum,
            vcpus: Some(1),
        };
        let mut out = std::mem::take(&mut self.pending);
        self.engine.step(now, input, &mut out);
        self.pending = out;
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

fn maxcpu(k: Size) -> f64 {
    if k.cores > 0 {
        f64::from(k.cores)
    } else {
        f64::from(k.cpulimit_centi) / 100.0
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
