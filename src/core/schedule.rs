//! Schedules: windows of wall-clock time that override a group's bounds ("weekdays
//! 08:00-18:00 Europe/Berlin min 2", "nights max 1").
//!
//! Pure: a window is evaluated at a wall-clock instant given as Unix milliseconds;
//! the machines get it from their `now` plus a wall-clock origin (the Unix time of
//! their t = 0), never from a clock. Each evaluation also says until when its answer
//! holds, so a machine looks at its windows again only then, not on every sample.
//!
//! Several windows active at once combine: the effective minimum is the largest
//! minimum they set, the effective maximum the smallest maximum, each falling back
//! to the policy's bound when no active window sets it; and the minimum is never
//! above the maximum (a "max 1" window caps a "min 2" one).

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Datelike, Offset, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use croner::Cron;

/// When a window is active.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum When {
    /// From each occurrence of `cron` (in the window's time zone) for `duration`.
    Cron { cron: Box<Cron>, duration: Duration },
    /// On the given local weekdays from `start` to `end` (minutes of the day; `end`
    /// at or before `start` runs past midnight into the next day, which belongs to
    /// the window of the day it started on).
    Hours {
        /// Bit 0 = Monday .. bit 6 = Sunday.
        days: u8,
        start: u16,
        /// 1..=1440.
        end: u16,
    },
}

/// One window of a schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    pub name: String,
    pub when: When,
    pub timezone: Tz,
    pub min_instances: Option<u32>,
    pub max_instances: Option<u32>,
    /// LXC: `[min, max]` cores while active.
    pub cores: Option<(u32, u32)>,
    /// LXC: `[min, max]` memory in MiB while active.
    pub memory_mib: Option<(u32, u32)>,
}

const MINUTE_MS: i64 = 60_000;
const DAY_MIN: i64 = 1440;

impl Window {
    /// Whether the window is active at `wall` (Unix ms), and the earliest Unix ms at
    /// which that may change (`i64::MAX`: never).
    pub fn at(&self, wall: i64) -> (bool, i64) {
        let Some(utc) = DateTime::<Utc>::from_timestamp_millis(wall) else {
            return (false, i64::MAX);
        };
        let local = utc.with_timezone(&self.timezone);
        match &self.when {
            When::Cron { cron, duration } => {
                let d = i64::try_from(duration.as_millis()).unwrap_or(i64::MAX / 4);
                // The first occurrence after `wall - d`: active iff it is not later
                // than `wall` (occurrence o covers [o, o + d)).
                let Some(from) = DateTime::<Utc>::from_timestamp_millis(wall.saturating_sub(d))
                else {
                    return (false, i64::MAX);
                };
                match cron.find_next_occurrence(&from.with_timezone(&self.timezone), false) {
                    Ok(o) => {
                        let o = o.timestamp_millis();
                        if o <= wall {
                            // A later occurrence may extend it: look again at the end.
                            (true, o.saturating_add(d))
                        } else {
                            (false, o)
                        }
                    }
                    Err(_) => (false, i64::MAX),
                }
            }
            When::Hours { days, start, end } => {
                let (start, end) = (i64::from(*start), i64::from(*end));
                let wd = local.weekday().num_days_from_monday();
                let on = |d: u32| days & (1 << (d % 7)) != 0;
                let m = i64::from(local.hour() * 60 + local.minute());
                let active = if end > start {
                    on(wd) && (start..end).contains(&m)
                } else {
                    (on(wd) && m >= start) || (on(wd + 6) && m < end)
                };
                // The answer changes only at a local start, end or midnight.
                let ahead = [start, end % DAY_MIN, 0]
                    .into_iter()
                    .map(|b| match (b - m).rem_euclid(DAY_MIN) {
                        0 => DAY_MIN,
                        n => n,
                    })
                    .min()
                    .unwrap_or(1);
                let into_minute = i64::from(local.second()) * 1000
                    + i64::from(local.timestamp_subsec_millis().min(999));
                let next = wall - into_minute + ahead * MINUTE_MS;
                // A change of UTC offset (DST) on the way moves the local boundaries:
                // then look again each minute until it has passed.
                let offset = |t: i64| {
                    DateTime::<Utc>::from_timestamp_millis(t).map(|u| {
                        self.timezone
                            .offset_from_utc_datetime(&u.naive_utc())
                            .fix()
                            .local_minus_utc()
                    })
                };
                if offset(next) == offset(wall) {
                    (active, next)
                } else {
                    (active, wall - into_minute + MINUTE_MS)
                }
            }
        }
    }
}

/// `'business-hours' mon,tue,wed,thu,fri 08:00-18:00 Europe/Berlin: min 2`.
impl std::fmt::Display for Window {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "'{}' ", self.name)?;
        match &self.when {
            When::Cron { cron, duration } => write!(
                f,
                "cron {:?} for {}",
                cron.as_str(),
                humantime::format_duration(*duration)
            )?,
            When::Hours { days, start, end } => {
                const NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
                let days: Vec<&str> = (0..7)
                    .filter(|d| days & (1 << d) != 0)
                    .map(|d| NAMES[d])
                    .collect();
                let hm = |m: u16| format!("{:02}:{:02}", m / 60, m % 60);
                write!(f, "{} {}-{}", days.join(","), hm(*start), hm(*end))?;
            }
        }
        let mut set = Vec::new();
        if let Some(n) = self.min_instances {
            set.push(format!("min {n}"));
        }
        if let Some(n) = self.max_instances {
            set.push(format!("max {n}"));
        }
        if let Some((a, b)) = self.cores {
            set.push(format!("cores {a}..={b}"));
        }
        if let Some((a, b)) = self.memory_mib {
            set.push(format!("memory {a}..={b} MiB"));
        }
        write!(f, " {}: {}", self.timezone, set.join(", "))
    }
}

/// A group's windows (empty: no schedule). Shared, so cloning a policy is cheap.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Schedule(Arc<[Window]>);

/// The windows in force at some instant.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct InForce {
    /// Indices of the active windows, in schedule order.
    pub active: Vec<usize>,
    /// Unix ms at which to look again (`i64::MAX`: never).
    pub until: i64,
}

/// An effective bound and the window that set it (`None`: the policy's own).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub value: u32,
    pub by: Option<usize>,
}

impl Schedule {
    pub fn new(windows: Vec<Window>) -> Self {
        Self(windows.into())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn windows(&self) -> &[Window] {
        &self.0
    }

    /// The windows active at `wall` (Unix ms), and until when that holds.
    pub fn at(&self, wall: i64) -> InForce {
        let mut f = InForce {
            active: Vec::new(),
            until: i64::MAX,
        };
        for (i, w) in self.0.iter().enumerate() {
            let (on, until) = w.at(wall);
            if on {
                f.active.push(i);
            }
            f.until = f.until.min(until);
        }
        f
    }

    /// Effective `(min, max)` over the `active` windows' pairs picked by `pick`,
    /// over the policy's `(min, max)`: the largest minimum, the smallest maximum,
    /// and the minimum capped at the maximum.
    pub fn bounds(
        &self,
        active: &[usize],
        pick: impl Fn(&Window) -> (Option<u32>, Option<u32>),
        min: u32,
        max: u32,
    ) -> (Limit, Limit) {
        let mut lo: Option<Limit> = None;
        let mut hi: Option<Limit> = None;
        for &i in active {
            let (a, b) = pick(&self.0[i]);
            if let Some(v) = a.filter(|v| lo.is_none_or(|l| *v > l.value)) {
                lo = Some(Limit {
                    value: v,
                    by: Some(i),
                });
            }
            if let Some(v) = b.filter(|v| hi.is_none_or(|h| *v < h.value)) {
                hi = Some(Limit {
                    value: v,
                    by: Some(i),
                });
            }
        }
        let lo = lo.unwrap_or(Limit {
            value: min,
            by: None,
        });
        let hi = hi.unwrap_or(Limit {
            value: max,
            by: None,
        });
        if lo.value > hi.value {
            (hi, hi)
        } else {
            (lo, hi)
        }
    }

    /// Effective instance bounds under the `active` windows.
    pub fn instances(&self, active: &[usize], min: u32, max: u32) -> (Limit, Limit) {
        self.bounds(active, |w| (w.min_instances, w.max_instances), min, max)
    }

    /// The name of window `i`.
    pub fn name(&self, i: usize) -> &str {
        self.0.get(i).map_or("", |w| w.name.as_str())
    }
}

/// Cached evaluation of a schedule inside a machine: refreshed at most when due.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Tracker {
    /// Unix ms of the machine's t = 0.
    pub origin: i64,
    /// The active windows (indices into the policy's schedule).
    pub active: Vec<usize>,
    /// Machine time at which to evaluate again; `Some(ZERO)` until first evaluated,
    /// `None` when nothing will change (or there is no schedule).
    pub due: Option<super::Timestamp>,
}

impl Tracker {
    /// A tracker that evaluates `schedule` at the first opportunity from `at` on
    /// (the machine's current time: never earlier, time does not go back).
    pub fn new(schedule: &Schedule, at: super::Timestamp) -> Self {
        Self {
            origin: 0,
            active: Vec::new(),
            due: (!schedule.is_empty()).then_some(at),
        }
    }

    /// Evaluate again from `at` on (new schedule or origin). The windows in force
    /// stay until then, so a reload does not drop a window for a moment.
    pub fn reset(&mut self, schedule: &Schedule, at: super::Timestamp) {
        if schedule.is_empty() {
            self.active.clear();
            self.due = None;
        } else {
            self.active.retain(|&i| i < schedule.windows().len());
            self.due = Some(at);
        }
    }

    /// Evaluate if due at `now`; true if the set of active windows changed.
    #[inline]
    pub fn refresh(&mut self, schedule: &Schedule, now: super::Timestamp) -> bool {
        // The per-tick cost without a schedule, or between transitions: one compare.
        if self.due.is_none_or(|d| d > now) {
            return false;
        }
        self.evaluate(schedule, now)
    }

    #[cold]
    fn evaluate(&mut self, schedule: &Schedule, now: super::Timestamp) -> bool {
        let wall = self
            .origin
            .saturating_add(i64::try_from(now.as_millis()).unwrap_or(i64::MAX));
        let f = schedule.at(wall);
        self.due = (f.until != i64::MAX).then(|| {
            let ahead = u64::try_from(f.until.saturating_sub(wall)).unwrap_or(0);
            super::Timestamp(now.as_millis().saturating_add(ahead.max(1)))
        });
        let changed = f.active != self.active;
        self.active = f.active;
        changed
    }
}

/// Unix milliseconds of an RFC 3339 instant, for `replay --start`.
pub fn parse_rfc3339(s: &str) -> Result<i64, String> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_millis())
        .map_err(|e| format!("{s:?} is not an RFC 3339 time such as 2026-03-02T07:00:00Z: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn ms(s: &str) -> i64 {
        parse_rfc3339(s).unwrap()
    }

    fn hours(days: u8, start: u16, end: u16, tz: Tz) -> Window {
        Window {
            name: "w".into(),
            when: When::Hours { days, start, end },
            timezone: tz,
            min_instances: Some(2),
            max_instances: None,
            cores: None,
            memory_mib: None,
        }
    }

    const WEEKDAYS: u8 = 0b001_1111;

    #[test]
    fn weekday_hours_in_a_zone_with_dst() {
        let w = hours(WEEKDAYS, 8 * 60, 18 * 60, chrono_tz::Europe::Berlin);
        // Winter: UTC+1. Monday 2026-03-02 08:00 Berlin = 07:00Z.
        assert!(!w.at(ms("2026-03-02T06:59:59Z")).0);
        assert_eq!(
            w.at(ms("2026-03-02T06:30:00Z")),
            (false, ms("2026-03-02T07:00:00Z"))
        );
        assert_eq!(
            w.at(ms("2026-03-02T07:00:00Z")),
            (true, ms("2026-03-02T17:00:00Z"))
        );
        // Summer: UTC+2 (DST from 2026-03-29). Monday 2026-03-30 08:00 = 06:00Z.
        assert!(w.at(ms("2026-03-30T06:00:00Z")).0);
        assert!(!w.at(ms("2026-03-30T05:59:00Z")).0);
        assert!(!w.at(ms("2026-03-30T16:00:00Z")).0);
        // Saturday: off all day.
        assert!(!w.at(ms("2026-03-07T10:00:00Z")).0);
        // Friday 18:00 → next change is Monday 08:00 local, found via midnights;
        // across the DST change the answer is re-checked each minute.
        let (on, until) = w.at(ms("2026-03-27T20:00:00Z"));
        assert!(!on);
        assert_eq!(until, ms("2026-03-27T23:00:00Z"), "local midnight");
        let (_, until) = w.at(ms("2026-03-29T00:30:00Z"));
        assert_eq!(until, ms("2026-03-29T00:31:00Z"), "DST ahead: per minute");
    }

    #[test]
    fn hours_past_midnight_belong_to_the_day_they_start() {
        // Friday only, 22:00-06:00: Friday night into Saturday morning.
        let w = hours(1 << 4, 22 * 60, 6 * 60, Tz::UTC);
        assert!(!w.at(ms("2026-03-06T21:59:00Z")).0); // Fri
        assert!(w.at(ms("2026-03-06T22:00:00Z")).0);
        assert!(w.at(ms("2026-03-07T05:59:00Z")).0); // Sat morning
        assert!(!w.at(ms("2026-03-07T06:00:00Z")).0);
        assert!(!w.at(ms("2026-03-07T23:00:00Z")).0); // Sat night
        assert!(!w.at(ms("2026-03-06T03:00:00Z")).0); // Fri morning (Thu night)
        // A whole day (00:00-24:00).
        let all = hours(1 << 5, 0, 1440, Tz::UTC);
        assert_eq!(
            all.at(ms("2026-03-07T12:00:00Z")),
            (true, ms("2026-03-08T00:00:00Z"))
        );
    }

    #[test]
    fn cron_with_duration() {
        let w = Window {
            when: When::Cron {
                cron: Box::new(Cron::from_str("0 9 * * 1-5").unwrap()),
                duration: Duration::from_secs(2 * 3600),
            },
            ..hours(0, 0, 0, chrono_tz::America::New_York)
        };
        // Monday 2026-03-02 09:00 New York (EST, UTC-5) = 14:00Z, for 2h.
        assert_eq!(
            w.at(ms("2026-03-02T13:00:00Z")),
            (false, ms("2026-03-02T14:00:00Z"))
        );
        assert_eq!(
            w.at(ms("2026-03-02T14:00:00Z")),
            (true, ms("2026-03-02T16:00:00Z"))
        );
        assert!(w.at(ms("2026-03-02T15:59:59Z")).0);
        assert!(!w.at(ms("2026-03-02T16:00:00Z")).0);
        // After the US DST change (2026-03-08): 09:00 EDT = 13:00Z.
        assert!(w.at(ms("2026-03-09T13:00:00Z")).0);
        // Saturday: the next occurrence is Monday.
        assert_eq!(
            w.at(ms("2026-03-07T15:00:00Z")),
            (false, ms("2026-03-09T13:00:00Z"))
        );
    }

    #[test]
    fn overlapping_windows_combine() {
        let mut day = hours(0x7f, 0, 1440, Tz::UTC);
        day.min_instances = Some(3);
        day.max_instances = Some(6);
        let mut cap = hours(0x7f, 0, 1440, Tz::UTC);
        cap.min_instances = None;
        cap.max_instances = Some(2);
        let s = Schedule::new(vec![day, cap]);
        let (lo, hi) = s.instances(&[0], 1, 4);
        assert_eq!((lo.value, lo.by, hi.value, hi.by), (3, Some(0), 6, Some(0)));
        // max 2 wins over min 3: min capped.
        let (lo, hi) = s.instances(&[0, 1], 1, 4);
        assert_eq!((lo.value, lo.by, hi.value, hi.by), (2, Some(1), 2, Some(1)));
        let (lo, hi) = s.instances(&[], 1, 4);
        assert_eq!((lo.value, lo.by, hi.value, hi.by), (1, None, 4, None));
    }

    #[test]
    fn tracker_evaluates_only_when_due() {
        let s = Schedule::new(vec![hours(0x7f, 8 * 60, 18 * 60, Tz::UTC)]);
        let mut t = Tracker::new(&s, super::super::Timestamp(0));
        t.origin = ms("2026-03-02T07:59:00Z");
        assert!(!t.refresh(&s, super::super::Timestamp(0)));
        assert_eq!(t.due, Some(super::super::Timestamp(60_000)));
        assert!(!t.refresh(&s, super::super::Timestamp(59_999)));
        assert!(t.refresh(&s, super::super::Timestamp(60_000)));
        assert_eq!(t.active, vec![0]);
    }

    fn night(max: u32) -> Schedule {
        let mut w = hours(0x7f, 22 * 60, 6 * 60, Tz::UTC);
        w.name = "nights".into();
        (w.min_instances, w.max_instances) = (None, Some(max));
        Schedule::new(vec![w])
    }

    #[test]
    fn a_window_max_scales_down_toward_it_with_the_normal_pacing() {
        use crate::core::group::{Group, Input};
        use crate::core::{Output, Policy, Timestamp};
        use crate::name::Name;
        let policy = Policy {
            scale_down_cooldown: Duration::from_secs(60),
            schedule: night(1),
            ..Policy::default()
        };
        let name = |s: &str| Name::parse(s).unwrap();
        let mut c = Group::new(name("a:web"), policy, Timestamp(0));
        c.set_wall_origin(ms("2026-03-02T21:59:00Z"));
        let mut out = Vec::new();
        for n in ["a:web-clone-1", "a:web-clone-2"] {
            c.step(Timestamp(0), Input::Adopt { vm: name(n).into() }, &mut out);
        }
        let mut downs = Vec::new();
        let mut cpu = [0u64; 3];
        for k in 0..30u64 {
            let now = Timestamp(k * 10_000);
            while c.next_deadline() < now {
                let d = c.next_deadline();
                c.step(d, Input::Tick, &mut out);
            }
            for (i, vm) in ["a:web", "a:web-clone-1", "a:web-clone-2"]
                .iter()
                .enumerate()
            {
                cpu[i] += 5_000_000; // 50 %: no streak either way
                let input = Input::Sample {
                    vm: name(vm).into(),
                    cpu_us: cpu[i],
                    vcpus: None,
                };
                c.step(now, input, &mut out);
            }
            for o in std::mem::take(&mut out) {
                if let Output::Decision(d) = o {
                    let ack = Input::ActionResult {
                        id: d.id,
                        outcome: Ok(()),
                    };
                    c.step(now, ack, &mut out);
                    downs.push((d.t.as_millis(), d.action.as_str(), d.reason.to_string()));
                }
            }
        }
        assert_eq!(
            downs,
            vec![
                (
                    60_000,
                    "scale_down",
                    "schedule 'nights' max 1 (3 instance(s) now)".to_string()
                ),
                (
                    120_000,
                    "scale_down",
                    "schedule 'nights' max 1 (2 instance(s) now)".to_string()
                ),
            ]
        );
        assert_eq!(c.active_windows().collect::<Vec<_>>(), ["nights"]);
        assert_eq!(c.instance_bounds(), (1, 1));
    }

    #[test]
    fn an_lxc_window_moves_the_size_into_its_bounds() {
        use crate::core::Timestamp;
        use crate::core::vertical::{
            CpuKnob, Input, Output, Size, Usage, Vertical, VerticalPolicy,
        };
        let mut day = hours(0x7f, 8 * 60, 18 * 60, Tz::UTC);
        day.name = "day".into();
        day.min_instances = None;
        day.cores = Some((3, 4));
        day.memory_mib = Some((1024, 2048));
        let policy = VerticalPolicy {
            cpu_up_threshold: 80,
            cpu_down_threshold: 30,
            mem_up_threshold: 85,
            mem_down_threshold: 40,
            up_ticks: 2,
            down_ticks: 3,
            up_cooldown: Duration::from_secs(300),
            down_cooldown: Duration::from_secs(600),
            max_actions_per_hour: 10,
            retry_backoff: Duration::from_secs(10),
            retry_backoff_max: Duration::from_secs(60),
            knob: CpuKnob::Cores,
            cpu_min: 1,
            cpu_max: 4,
            cpu_step: 1,
            memory_min_mib: 512,
            memory_max_mib: 4096,
            memory_step_mib: 512,
            memory_margin_mib: 128,
            host_memory_reserve_mib: 1024,
            schedule: Schedule::new(vec![day]),
            pricing: Default::default(),
        };
        let mut v = Vertical::new(policy).with_wall_origin(ms("2026-03-02T07:59:00Z"));
        let usage = |cores, memory_mib| Usage {
            size: Size {
                cores,
                cpulimit_centi: 0,
                memory_mib,
            },
            cpu_bp: 5_000,
            mem_used_mib: 300,
            node_free_mib: Some(8192),
            clones: 0,
        };
        let resizes = |out: Vec<Output>| -> Vec<(Size, String)> {
            out.into_iter()
                .filter_map(|o| match o {
                    Output::Resize(r) => Some((r.to, r.reason)),
                    _ => None,
                })
                .collect()
        };
        // Before 08:00: the policy's bounds, nothing to do.
        let (v2, out) = v.handle(Timestamp(0), Input::Sample(usage(1, 512)));
        v = v2;
        assert!(resizes(out).is_empty());
        assert_eq!(
            v.next_deadline(),
            Some(Timestamp(60_000)),
            "the window's start"
        );
        // 08:00: grow into [3, 4] cores and [1024, 2048] MiB at once.
        let (v2, out) = v.handle(Timestamp(60_000), Input::Sample(usage(1, 512)));
        v = v2;
        let r = resizes(out);
        assert_eq!(r.len(), 1, "{r:?}");
        assert_eq!((r[0].0.cores, r[0].0.memory_mib), (3, 1024));
        assert!(
            r[0].1.starts_with("schedule 'day': cores 3..=4"),
            "{}",
            r[0].1
        );
        assert_eq!(v.active_windows().collect::<Vec<_>>(), ["day"]);
    }

    #[test]
    fn groups_added_by_a_reload_keep_the_engine_wall_origin() {
        use crate::core::{Engine, Input, Options, Policy, Timestamp};
        use crate::name::Name;
        let web = Name::parse("a:web").unwrap();
        let api = Name::parse("a:api").unwrap();
        let mut day = hours(0x7f, 8 * 60, 18 * 60, Tz::UTC);
        (day.name, day.min_instances, day.max_instances) = ("day".into(), None, Some(1));
        let policy = Policy {
            schedule: Schedule::new(vec![day]),
            ..Policy::default()
        };
        // 12:00Z: inside "day" only with the origin applied (1970-01-01 00:00 is not).
        let mut e = Engine::new(
            vec![(web.clone(), policy.clone())],
            Options::default(),
            Timestamp(0),
        )
        .with_wall_origin(ms("2026-03-02T12:00:00Z"));
        let mut out = Vec::new();
        let groups = vec![(web.clone(), policy.clone()), (api.clone(), policy)];
        e.step(Timestamp(5_000), Input::Reconfigure { groups }, &mut out);
        for (t, cpu) in [(10_000, 1_000_000), (20_000, 2_000_000)] {
            for vm in [&web, &api] {
                let input = Input::Sample {
                    vm: vm.clone(),
                    cpu_us: cpu,
                    vcpus: None,
                };
                e.step(Timestamp(t), input, &mut out);
            }
        }
        for c in e.groups() {
            assert_eq!(
                c.active_windows().collect::<Vec<_>>(),
                ["day"],
                "{}",
                c.group()
            );
            assert_eq!(c.instance_bounds(), (1, 1));
        }
        assert_eq!(e.wall_origin(), ms("2026-03-02T12:00:00Z"));
    }
}
