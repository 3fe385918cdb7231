//! Vertical sizing of one container (Proxmox LXC resizes live): a pure state machine
//! in the style of [`super::Group`].
//!
//! Calling contract: feed one [`Input::Sample`] per poll with the time it was taken,
//! answer every [`Resize`] with [`Input::Result`], and call [`Input::Tick`] no later
//! than [`Vertical::next_deadline`] (when a cooldown, backoff or budget that blocked
//! an action ends). `now` must not go backwards.
//!
//! Rules, each with an explicit "why not" when it stops an action:
//! * CPU and memory each count consecutive high/low samples; `scale_up_ticks` high
//!   ones grow that dimension by one step, `scale_down_ticks` low ones shrink it.
//! * Growing wins over shrinking; one resize (both dimensions at once) per decision.
//! * Changed values land inside the configured bounds.
//! * Memory never shrinks below usage + margin, and never grows beyond what the node
//!   has free after the host reserve (host admission).
//! * Per-direction cooldowns, an hourly action budget, exponential backoff after a
//!   failed resize, and one resize in flight at a time.

use std::time::Duration;

use super::budget::{self, Budget};
use super::cpu::{self, Bp};
use super::output::ActionId;
use super::schedule::{self, Schedule};
use super::time::Timestamp;
use super::why::{Cooldown, Paced, SizeRule, WhyNot};

mod cost;
mod window;

pub use cost::Pricing;

/// The resources of a container this machine sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct Size {
    pub cores: u32,
    /// `cpulimit` in hundredths of a CPU; 0 = no limit.
    pub cpulimit_centi: u32,
    pub memory_mib: u32,
}

/// Which setting carries the CPU allowance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CpuKnob {
    /// `cores` (the cpuset size).
    Cores,
    /// `cpulimit` (CPU time quota), in hundredths of a CPU.
    Cpulimit,
}

/// Sizing policy of one container. All bounds inclusive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerticalPolicy {
    /// Percent of the effective CPU allowance; above it a sample is high.
    pub cpu_up_threshold: u32,
    pub cpu_down_threshold: u32,
    /// Percent of the memory limit.
    pub mem_up_threshold: u32,
    pub mem_down_threshold: u32,
    pub up_ticks: u32,
    pub down_ticks: u32,
    /// Minimum time from one grow to the next.
    pub up_cooldown: Duration,
    /// Minimum time from any resize to a shrink.
    pub down_cooldown: Duration,
    pub max_actions_per_hour: u32,
    pub retry_backoff: Duration,
    pub retry_backoff_max: Duration,
    pub knob: CpuKnob,
    /// Bounds and step of the knob: cores, or cpulimit in hundredths.
    pub cpu_min: u32,
    pub cpu_max: u32,
    pub cpu_step: u32,
    pub memory_min_mib: u32,
    pub memory_max_mib: u32,
    pub memory_step_mib: u32,
    /// Memory is never set below usage plus this.
    pub memory_margin_mib: u32,
    /// Memory growth must leave this much free on the node.
    pub host_memory_reserve_mib: u32,
    /// Windows whose `cores` / `memory_mib` override the bounds while active
    /// (`cores` only when the knob is [`CpuKnob::Cores`]).
    pub schedule: Schedule,
    /// What the container costs per hour (no ceiling by default).
    pub pricing: Pricing,
}

/// One observation of a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// The size in force.
    pub size: Size,
    /// CPU use as a share of the effective allowance (see [`cpu_share`]).
    pub cpu_bp: Bp,
    pub mem_used_mib: u32,
    /// Free memory of the node (`maxmem - mem`); `None` if unknown (then no growth).
    pub node_free_mib: Option<u32>,
    /// Clones of this container exist (vertical-then-horizontal): they shrink first.
    pub clones: u32,
}

/// An input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    Sample(Usage),
    Tick,
    Result {
        id: ActionId,
        outcome: Result<(), String>,
    },
}

/// Grow or shrink.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Up,
    Down,
}

/// A resize to carry out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resize {
    pub id: ActionId,
    pub t: Timestamp,
    pub direction: Direction,
    pub from: Size,
    pub to: Size,
    pub reason: String,
}

/// The verdict of one evaluation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Hold,
    Acted(Direction),
    /// A change was wanted and not made; `why_not` names the rule.
    Blocked {
        wanted: Direction,
        why_not: WhyNot,
    },
}

/// An output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    Resize(Resize),
    Evaluation {
        t: Timestamp,
        cpu_bp: Bp,
        mem_bp: Bp,
        /// Consecutive high/low samples: (cpu high, cpu low, mem high, mem low).
        ticks: [u32; 4],
        budget_left: u32,
        verdict: Verdict,
    },
    Failed {
        id: ActionId,
        t: Timestamp,
        error: String,
        retry_in: Duration,
    },
}

/// The state of one container's sizing. A value: no I/O, no clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vertical {
    policy: VerticalPolicy,
    last: Option<Usage>,
    cpu_high: u32,
    cpu_low: u32,
    mem_high: u32,
    mem_low: u32,
    last_up: Option<Timestamp>,
    last_action: Option<Timestamp>,
    budget: Budget,
    in_flight: Option<Resize>,
    failures: u32,
    retry_at: Option<Timestamp>,
    redecide_at: Option<Timestamp>,
    next_id: ActionId,
    sched: schedule::Tracker,
    /// See [`Vertical::set_cost_room`].
    cost_room: Option<u64>,
}

/// CPU use as a share of the effective allowance, in basis points.
///
/// Proxmox reports `cpu` as a fraction of `maxcpu` (= cores, else cpulimit, else
/// host CPUs), so `cpu × maxcpu` CPUs are busy; the real allowance is
/// `min(cores, cpulimit)` (a container with 4 cores and cpulimit 1 tops out at 0.25).
pub fn cpu_share(cpu: f64, maxcpu: f64, cores: u32, cpulimit_centi: u32) -> Bp {
    let busy = cpu * maxcpu;
    let mut cap = if cores > 0 { f64::from(cores) } else { maxcpu };
    if cpulimit_centi > 0 {
        cap = cap.min(f64::from(cpulimit_centi) / 100.0);
    }
    if !(busy > 0.0 && cap > 0.0) {
        return 0;
    }
    let bp = (busy / cap * 10_000.0).round();
    if bp >= f64::from(Bp::MAX) {
        Bp::MAX
    } else {
        bp as Bp
    }
}

/// A cumulative CPU-µs counter advanced by a share held for `elapsed_ms`, on a
/// 1-vCPU scale: fed to [`super::Group`] with `vcpus = 1`, consecutive readings
/// give back `bp` (to within rounding). Proxmox has gauges, the engine counters.
pub fn advance_counter(cum_us: u64, bp: Bp, elapsed_ms: u64) -> u64 {
    let add = u128::from(bp) * u128::from(elapsed_ms) / 10;
    cum_us.saturating_add(u64::try_from(add).unwrap_or(u64::MAX))
}

fn pct(used: u64, total: u64) -> Bp {
    if total == 0 {
        return 0;
    }
    Bp::try_from(used.saturating_mul(10_000) / total).unwrap_or(Bp::MAX)
}

impl Vertical {
    pub fn new(policy: VerticalPolicy) -> Self {
        let policy_schedule = policy.schedule.clone();
        Self {
            policy,
            last: None,
            cpu_high: 0,
            cpu_low: 0,
            mem_high: 0,
            mem_low: 0,
            last_up: None,
            last_action: None,
            budget: Budget::default(),
            in_flight: None,
            failures: 0,
            retry_at: None,
            redecide_at: None,
            next_id: 1,
            sched: schedule::Tracker::new(&policy_schedule, Timestamp::ZERO),
            cost_room: None,
        }
    }

    /// Anchor t = 0 at `origin_ms` (Unix ms) for the schedule's windows.
    pub fn with_wall_origin(mut self, origin_ms: i64) -> Self {
        self.sched.origin = origin_ms;
        // Evaluate again at the next input (time only moves forward from zero).
        self.sched.reset(&self.policy.schedule, Timestamp::ZERO);
        self
    }

    /// Names of the schedule windows in force (as of the last sample).
    pub fn active_windows(&self) -> impl Iterator<Item = &str> {
        self.sched
            .active
            .iter()
            .map(|&i| self.policy.schedule.name(i))
    }

    pub fn policy(&self) -> &VerticalPolicy {
        &self.policy
    }

    /// The last usage seen.
    pub fn last(&self) -> Option<&Usage> {
        self.last.as_ref()
    }

    /// Actions left in the sliding hour.
    pub fn budget_left(&self, now: Timestamp) -> u32 {
        self.budget.left(now, self.policy.max_actions_per_hour)
    }

    /// The bounds in force (a schedule window's, else the policy's): CPU knob
    /// min/max (cores, or cpulimit in hundredths) and memory min/max in MiB.
    pub fn limits(&self) -> [u32; 4] {
        let b = self.bounds();
        [
            b.cpu_min.value,
            b.cpu_max.value,
            b.mem_min.value,
            b.mem_max.value,
        ]
    }

    /// Whether the CPU knob is at its upper bound (vertical-then-horizontal: time to clone).
    pub fn cpu_at_cap(&self) -> bool {
        self.last
            .is_some_and(|u| self.knob_value(u.size) >= self.bounds().cpu_max.value)
    }

    /// When a blocked action may become allowed.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        [self.redecide_at, self.sched.due]
            .into_iter()
            .flatten()
            .min()
    }

    pub fn handle(mut self, now: Timestamp, input: Input) -> (Self, Vec<Output>) {
        let mut out = Vec::new();
        self.step(now, input, &mut out);
        (self, out)
    }

    /// [`Vertical::handle`] in place.
    pub fn step(&mut self, now: Timestamp, input: Input, out: &mut Vec<Output>) {
        match input {
            Input::Sample(u) => self.on_sample(now, u, out),
            Input::Tick => {
                let window = self.sched.refresh(&self.policy.schedule, now);
                if window || self.redecide_at.is_some_and(|t| t <= now) {
                    self.redecide_at = None;
                    if let Some(u) = self.last {
                        let verdict = self.decide(now, u, out);
                        if matches!(verdict, Verdict::Acted(_)) {
                            out.push(self.evaluation(now, u, verdict));
                        }
                    }
                }
            }
            Input::Result { id, outcome } => self.on_result(now, id, outcome, out),
        }
    }

    /// Re-check resize `r`, held for approval, at the moment it is approved: it is
    /// still the resize in flight and its target is inside the bounds in force (the
    /// policy's, or a schedule window's).
    pub fn recheck(&self, r: &Resize) -> Result<(), String> {
        if self.in_flight.as_ref().is_none_or(|f| f.id != r.id) {
            return Err(format!("resize {} is no longer pending", r.id));
        }
        let b = self.bounds();
        let cpu = self.knob_value(r.to);
        let (lo, hi) = (b.cpu_min.value, b.cpu_max.value);
        if !(lo..=hi).contains(&cpu) {
            return Err(format!("cpu {cpu} is outside {lo}..={hi}"));
        }
        let mem = r.to.memory_mib;
        let (lo, hi) = (b.mem_min.value, b.mem_max.value);
        if !(lo..=hi).contains(&mem) {
            return Err(format!("memory {mem} MiB is outside {lo}..={hi} MiB"));
        }
        // Cost ceilings (the container's and the room left under the global one).
        match (r.direction, self.last) {
            (Direction::Up, Some(u)) => self
                .cost_blocker(&u, r.to)
                .map_or(Ok(()), |w| Err(w.to_string())),
            _ => Ok(()),
        }
    }

    fn knob_value(&self, s: Size) -> u32 {
        match self.policy.knob {
            CpuKnob::Cores => s.cores,
            CpuKnob::Cpulimit => s.cpulimit_centi,
        }
    }

    fn with_knob(&self, mut s: Size, v: u32) -> Size {
        match self.policy.knob {
            CpuKnob::Cores => s.cores = v,
            CpuKnob::Cpulimit => s.cpulimit_centi = v,
        }
        s
    }

    fn mem_bp(u: &Usage) -> Bp {
        pct(u64::from(u.mem_used_mib), u64::from(u.size.memory_mib))
    }

    fn on_sample(&mut self, now: Timestamp, u: Usage, out: &mut Vec<Output>) {
        let p = &self.policy;
        let count = |v: Bp, up: u32, down: u32, high: &mut u32, low: &mut u32| {
            if v > up * 100 {
                *high += 1;
                *low = 0;
            } else if v < down * 100 {
                *low += 1;
                *high = 0;
            } else {
                *high = 0;
                *low = 0;
            }
        };
        let (cu, cd, mu, md) = (
            p.cpu_up_threshold,
            p.cpu_down_threshold,
            p.mem_up_threshold,
            p.mem_down_threshold,
        );
        count(u.cpu_bp, cu, cd, &mut self.cpu_high, &mut self.cpu_low);
        count(
            Self::mem_bp(&u),
            mu,
            md,
            &mut self.mem_high,
            &mut self.mem_low,
        );
        self.last = Some(u);
        self.redecide_at = None;
        self.sched.refresh(&self.policy.schedule, now);
        let verdict = self.decide(now, u, out);
        out.push(self.evaluation(now, u, verdict));
    }

    fn evaluation(&self, now: Timestamp, u: Usage, verdict: Verdict) -> Output {
        Output::Evaluation {
            t: now,
            cpu_bp: u.cpu_bp,
            mem_bp: Self::mem_bp(&u),
            ticks: [self.cpu_high, self.cpu_low, self.mem_high, self.mem_low],
            budget_left: self.budget_left(now),
            verdict,
        }
    }

    /// The size wanted upward, with reasons; or why not.
    fn want_up(&self, u: &Usage) -> Option<Result<(Size, Vec<String>), WhyNot>> {
        let (p, b) = (&self.policy, self.bounds());
        let (cpu, mem) = (self.cpu_high >= p.up_ticks, self.mem_high >= p.up_ticks);
        if !cpu && !mem {
            return None;
        }
        let mut to = u.size;
        let mut why = Vec::new();
        let mut why_not = Vec::new();
        if cpu {
            let cur = self.knob_value(u.size);
            let t = cur
                .saturating_add(p.cpu_step)
                .min(b.cpu_max.value)
                .max(b.cpu_min.value);
            if t > cur {
                to = self.with_knob(to, t);
                why.push(format!(
                    "cpu {:.2}% > {}% for {} samples",
                    cpu::percent(u.cpu_bp),
                    p.cpu_up_threshold,
                    self.cpu_high
                ));
            } else {
                why_not.push(SizeRule::CpuAtMax(b.cpu_max.value));
            }
        }
        if mem {
            let cur = u.size.memory_mib;
            let t = cur
                .saturating_add(p.memory_step_mib)
                .min(b.mem_max.value)
                .max(b.mem_min.value);
            let room = u
                .node_free_mib
                .map(|f| f.saturating_sub(p.host_memory_reserve_mib));
            if t <= cur {
                why_not.push(SizeRule::MemAtMax(b.mem_max.value));
            } else {
                match room {
                    None => why_not.push(SizeRule::NodeFreeUnknown),
                    Some(0) => why_not.push(SizeRule::HostAdmission {
                        free_mib: u.node_free_mib.unwrap_or(0),
                        reserve_mib: p.host_memory_reserve_mib,
                    }),
                    Some(r) => {
                        let t = t.min(cur.saturating_add(r));
                        to.memory_mib = t;
                        why.push(format!(
                            "memory {:.2}% > {}% for {} samples{}",
                            cpu::percent(Self::mem_bp(u)),
                            p.mem_up_threshold,
                            self.mem_high,
                            if t < cur + p.memory_step_mib.min(b.mem_max.value - cur) {
                                format!(" (step cut to {} MiB by host admission)", t - cur)
                            } else {
                                String::new()
                            }
                        ));
                    }
                }
            }
        }
        Some(if why.is_empty() {
            Err(WhyNot::Size(why_not))
        } else {
            Ok((to, why))
        })
    }

    fn want_down(&self, u: &Usage) -> Option<Result<(Size, Vec<String>), WhyNot>> {
        let (p, b) = (&self.policy, self.bounds());
        let (cpu, mem) = (self.cpu_low >= p.down_ticks, self.mem_low >= p.down_ticks);
        if !cpu && !mem {
            return None;
        }
        if u.clones > 0 {
            return Some(Err(WhyNot::ClonesExist(u.clones)));
        }
        let mut to = u.size;
        let mut why = Vec::new();
        let mut why_not = Vec::new();
        if cpu {
            let cur = self.knob_value(u.size);
            let t = cur
                .saturating_sub(p.cpu_step)
                .max(b.cpu_min.value)
                .min(b.cpu_max.value);
            if t < cur {
                to = self.with_knob(to, t);
                why.push(format!(
                    "cpu {:.2}% < {}% for {} samples",
                    cpu::percent(u.cpu_bp),
                    p.cpu_down_threshold,
                    self.cpu_low
                ));
            } else {
                why_not.push(SizeRule::CpuAtMin(b.cpu_min.value));
            }
        }
        if mem {
            let cur = u.size.memory_mib;
            let floor = u.mem_used_mib.saturating_add(p.memory_margin_mib);
            let stepped = cur
                .saturating_sub(p.memory_step_mib)
                .max(b.mem_min.value)
                .min(b.mem_max.value);
            let t = stepped.max(floor);
            if stepped >= cur {
                why_not.push(SizeRule::MemAtMin(b.mem_min.value));
            } else if t >= cur || t > b.mem_max.value {
                why_not.push(SizeRule::BelowUsage {
                    used_mib: u.mem_used_mib,
                    margin_mib: p.memory_margin_mib,
                });
            } else {
                to.memory_mib = t;
                why.push(format!(
                    "memory {:.2}% < {}% for {} samples",
                    cpu::percent(Self::mem_bp(u)),
                    p.mem_down_threshold,
                    self.mem_low
                ));
            }
        }
        Some(if why.is_empty() {
            Err(WhyNot::Size(why_not))
        } else {
            Ok((to, why))
        })
    }

    fn decide(&mut self, now: Timestamp, u: Usage, out: &mut Vec<Output>) -> Verdict {
        // A window's bounds first: growing into them skips the up-cooldown (like
        // min_instances); shrinking into them is paced like any shrink.
        if let Some((dir, to, reason)) = self.want_window(&u) {
            if let Some(why_not) = self.blocker(now, dir, dir == Direction::Down) {
                return Verdict::Blocked {
                    wanted: dir,
                    why_not,
                };
            }
            return self.resize(now, u, dir, to, vec![reason], out);
        }
        let (dir, want) = match (self.want_up(&u), self.want_down(&u)) {
            (Some(Ok(w)), _) => (Direction::Up, Ok(w)),
            // Nothing can grow: a shrink of the other dimension may still go ahead.
            (Some(Err(_)), Some(Ok(w))) => (Direction::Down, Ok(w)),
            (Some(Err(e)), _) => (Direction::Up, Err(e)),
            (None, Some(w)) => (Direction::Down, w),
            (None, None) => return Verdict::Hold,
        };
        let (to, why) = match want {
            Ok(w) => w,
            Err(why_not) => {
                return Verdict::Blocked {
                    wanted: dir,
                    why_not,
                };
            }
        };
        let blocked = match dir {
            Direction::Up => self.cost_blocker(&u, to),
            Direction::Down => None,
        };
        if let Some(why_not) = blocked.or_else(|| self.blocker(now, dir, true)) {
            return Verdict::Blocked {
                wanted: dir,
                why_not,
            };
        }
        self.resize(now, u, dir, to, why, out)
    }

    fn resize(
        &mut self,
        now: Timestamp,
        u: Usage,
        dir: Direction,
        to: Size,
        why: Vec<String>,
        out: &mut Vec<Output>,
    ) -> Verdict {
        let id = self.next_id;
        self.next_id += 1;
        let r = Resize {
            id,
            t: now,
            direction: dir,
            from: u.size,
            to,
            reason: why.join("; "),
        };
        self.budget.spend(now);
        self.last_action = Some(now);
        if dir == Direction::Up {
            self.last_up = Some(now);
        }
        if to.memory_mib != u.size.memory_mib {
            (self.mem_high, self.mem_low) = (0, 0);
        }
        if self.knob_value(to) != self.knob_value(u.size) {
            (self.cpu_high, self.cpu_low) = (0, 0);
        }
        self.in_flight = Some(r.clone());
        out.push(Output::Resize(r));
        Verdict::Acted(dir)
    }

    fn blocker(&mut self, now: Timestamp, dir: Direction, cooldowns: bool) -> Option<WhyNot> {
        let p = &self.policy;
        if let Some(f) = &self.in_flight {
            return Some(WhyNot::ResizeInFlight { id: f.id });
        }
        let cooldown = match dir {
            Direction::Up => self.last_up.map(|t| (t.plus(p.up_cooldown), Cooldown::Up)),
            Direction::Down => self
                .last_action
                .map(|t| (t.plus(p.down_cooldown), Cooldown::Down)),
        };
        let pacing = budget::Pacing {
            cooldown: cooldown.filter(|_| cooldowns),
            retry_at: self.retry_at,
            failures: self.failures,
            what: Paced::Resizes,
            budget: &self.budget,
            max_per_hour: p.max_actions_per_hour,
        };
        let (why_not, again) = budget::blocker(now, &pacing)?;
        self.redecide_at = again;
        Some(why_not)
    }

    fn on_result(
        &mut self,
        now: Timestamp,
        id: ActionId,
        outcome: Result<(), String>,
        out: &mut Vec<Output>,
    ) {
        let Some(r) = self.in_flight.take_if(|r| r.id == id) else {
            return;
        };
        match outcome {
            Ok(()) => {
                self.failures = 0;
                self.retry_at = None;
                if let Some(u) = &mut self.last {
                    u.size = r.to;
                }
            }
            Err(error) => {
                self.failures += 1;
                let p = &self.policy;
                let retry_in = budget::backoff(p.retry_backoff, p.retry_backoff_max, self.failures);
                self.retry_at = Some(now.plus(retry_in));
                self.redecide_at = self.retry_at;
                out.push(Output::Failed {
                    id,
                    t: now,
                    error,
                    retry_in,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests;
