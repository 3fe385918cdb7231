//! The `schedule` policy key: `[[policy.schedule]]`, `[[group.schedule]]` and
//! `[[lxc.schedule]]` windows, parsed into [`Schedule`] with every problem under
//! its key path (`group[0] (alice:web).schedule[1].timezone: ...`).

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::Cron;
use serde::Deserialize;

use crate::core::schedule::{Schedule, When, Window};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WindowFile {
    name: Option<String>,
    cron: Option<String>,
    #[serde(default, with = "humantime_serde")]
    duration: Option<Duration>,
    days: Option<Days>,
    hours: Option<String>,
    timezone: Option<String>,
    min_instances: Option<i64>,
    max_instances: Option<i64>,
    cores: Option<[i64; 2]>,
    memory_mib: Option<[i64; 2]>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Days {
    One(String),
    Many(Vec<String>),
}

/// Parse the value of a `schedule` key of section `at`. `lxc_keys`: whether the
/// windows may size containers (`cores`, `memory_mib`). `None` if anything was wrong.
pub(super) fn parse(
    v: toml::Value,
    at: &str,
    lxc_keys: bool,
    problems: &mut Vec<String>,
) -> Option<Schedule> {
    let toml::Value::Array(tables) = v else {
        problems.push(format!(
            "{at}.schedule: must be an array of tables ([[...schedule]] with name, cron or days + hours, ...)"
        ));
        return None;
    };
    let before = problems.len();
    let mut windows: Vec<Window> = Vec::new();
    for (i, t) in tables.into_iter().enumerate() {
        let at = format!("{at}.schedule[{i}]");
        let f = match WindowFile::deserialize(t) {
            Ok(f) => f,
            Err(e) => {
                problems.push(super::de_error(&at, &e));
                continue;
            }
        };
        if let Some(w) = window(f, &at, i, lxc_keys, problems) {
            if let Some(j) = windows.iter().position(|o| o.name == w.name) {
                problems.push(format!(
                    "{at}.name: {:?} is already the name of schedule[{j}]",
                    w.name
                ));
            }
            windows.push(w);
        }
    }
    (problems.len() == before).then(|| Schedule::new(windows))
}

fn window(
    f: WindowFile,
    at: &str,
    i: usize,
    lxc_keys: bool,
    problems: &mut Vec<String>,
) -> Option<Window> {
    let before = problems.len();
    let name = f.name.unwrap_or_else(|| format!("schedule[{i}]"));
    if name.trim().is_empty() {
        problems.push(format!("{at}.name: must not be empty"));
    }
    let timezone = match f.timezone.as_deref() {
        None => Tz::UTC,
        Some(s) => Tz::from_str(s).unwrap_or_else(|_| {
            problems.push(format!(
                "{at}.timezone: unknown time zone {s:?} (an IANA name such as \"Europe/Berlin\" or \"UTC\")"
            ));
            Tz::UTC
        }),
    };
    let when = match (f.cron, f.days.is_some() || f.hours.is_some()) {
        (Some(_), true) => {
            problems.push(format!(
                "{at}: set cron + duration, or days + hours, not both"
            ));
            None
        }
        (Some(c), false) => {
            let cron = match Cron::from_str(&c) {
                Ok(cron) if never(&cron) => {
                    problems.push(format!("{at}.cron: {c:?} never matches"));
                    None
                }
                Ok(cron) => Some(cron),
                Err(e) => {
                    problems.push(format!("{at}.cron: {c:?} is not a cron expression: {e}"));
                    None
                }
            };
            let duration = match f.duration {
                None => {
                    problems.push(format!(
                        "{at}.duration: required with cron (how long each start lasts, e.g. \"10h\")"
                    ));
                    None
                }
                Some(d) if d.is_zero() => {
                    problems.push(format!("{at}.duration: must be above 0s"));
                    None
                }
                Some(d) => Some(d),
            };
            cron.zip(duration).map(|(cron, duration)| When::Cron {
                cron: Box::new(cron),
                duration,
            })
        }
        (None, true) => {
            if f.duration.is_some() {
                problems.push(format!(
                    "{at}.duration: only with cron (days + hours say when the window ends)"
                ));
            }
            let days = match f.days {
                None => Some(0x7f),
                Some(d) => days(d)
                    .map_err(|e| problems.push(format!("{at}.days: {e}")))
                    .ok(),
            };
            let hours = match f.hours.as_deref() {
                None => Some((0, 1440)),
                Some(h) => hours(h)
                    .map_err(|e| problems.push(format!("{at}.hours: {e}")))
                    .ok(),
            };
            days.zip(hours)
                .map(|(days, (start, end))| When::Hours { days, start, end })
        }
        (None, false) => {
            problems.push(format!(
                "{at}: set cron + duration, or days and/or hours (e.g. days = \"mon-fri\", hours = \"08:00-18:00\")"
            ));
            None
        }
    };
    let count = |key: &str, v: Option<i64>, problems: &mut Vec<String>| {
        v.and_then(|v| match u32::try_from(v) {
            Ok(n) if (1..=10_000).contains(&n) => Some(n),
            _ => {
                problems.push(format!("{at}.{key}: {v} is out of range 1..=10000"));
                None
            }
        })
    };
    let min_instances = count("min_instances", f.min_instances, problems);
    let max_instances = count("max_instances", f.max_instances, problems);
    if let (Some(a), Some(b)) = (min_instances, max_instances)
        && a > b
    {
        problems.push(format!(
            "{at}.min_instances: {a} is above max_instances ({b})"
        ));
    }
    let pair = |key: &str, v: Option<[i64; 2]>, lo: i64, hi: i64, problems: &mut Vec<String>| {
        let [a, b] = v?;
        if !lxc_keys {
            problems.push(format!(
                "{at}.{key}: only an [[lxc]] (or [policy]) window sizes containers"
            ));
            return None;
        }
        if !(lo..=hi).contains(&a) || !(lo..=hi).contains(&b) || a > b {
            problems.push(format!(
                "{at}.{key}: [{a}, {b}] must be [min, max] with {lo} <= min <= max <= {hi}"
            ));
            return None;
        }
        Some((a as u32, b as u32))
    };
    let cores = pair("cores", f.cores, 1, 8192, problems);
    let memory_mib = pair("memory_mib", f.memory_mib, 16, 1 << 30, problems);
    if problems.len() == before
        && [min_instances, max_instances].iter().all(Option::is_none)
        && cores.is_none()
        && memory_mib.is_none()
    {
        problems.push(format!(
            "{at}: sets nothing; give min_instances and/or max_instances{}",
            if lxc_keys {
                " (or cores, memory_mib)"
            } else {
                ""
            }
        ));
    }
    let when = when?;
    (problems.len() == before).then_some(Window {
        name,
        when,
        timezone,
        min_instances,
        max_instances,
        cores,
        memory_mib,
    })
}

/// Whether a valid expression can never match (e.g. February 30th).
fn never(cron: &Cron) -> bool {
    let from = DateTime::<Utc>::from_timestamp(946_684_800, 0).unwrap_or_default();
    cron.find_next_occurrence(&from, false).is_err()
}

const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
const FULL_NAMES: [&str; 7] = [
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];

/// A day by its three-letter or full name, 0 = Monday.
fn day(s: &str) -> Result<u32, String> {
    let s = s.trim().to_ascii_lowercase();
    (0..7u32)
        .find(|&i| s == DAY_NAMES[i as usize] || s == FULL_NAMES[i as usize])
        .ok_or_else(|| format!("unknown day {s:?}"))
}

/// `"mon-fri"`, `"sat,sun"`, `"fri-mon"` (wraps), `"*"`, or a list of those, as
/// a bit mask (bit 0 = Monday).
fn days(d: Days) -> Result<u8, String> {
    let items = match d {
        Days::One(s) => vec![s],
        Days::Many(v) => v,
    };
    let mut mask = 0u8;
    for item in &items {
        for part in item.split(',') {
            let part = part.trim();
            if part == "*" {
                mask = 0x7f;
                continue;
            }
            let (a, b) = match part.split_once('-') {
                Some((a, b)) => (day(a), day(b)),
                None => (day(part), day(part)),
            };
            let hint = || {
                format!(
                    "{part:?}: use {}, ranges such as \"mon-fri\", or \"*\"",
                    DAY_NAMES.join(", ")
                )
            };
            let (a, b) = (
                a.map_err(|e| format!("{e} in {}", hint()))?,
                b.map_err(|e| format!("{e} in {}", hint()))?,
            );
            let mut d = a;
            loop {
                mask |= 1 << d;
                if d == b {
                    break;
                }
                d = (d + 1) % 7;
            }
        }
    }
    if mask == 0 {
        return Err("no day given".into());
    }
    Ok(mask)
}

/// `"HH:MM-HH:MM"` as minutes of the day; the end may be `24:00`, and an end at or
/// before the start runs past midnight.
fn hours(h: &str) -> Result<(u16, u16), String> {
    let bad = || {
        format!(
            "{h:?} is not \"HH:MM-HH:MM\" (e.g. \"08:00-18:00\", or \"22:00-06:00\" past midnight)"
        )
    };
    let (a, b) = h.split_once('-').ok_or_else(bad)?;
    let clock = |s: &str, end: bool| -> Option<u16> {
        let (hh, mm) = s.trim().split_once(':')?;
        let (hh, mm): (u16, u16) = (hh.parse().ok()?, mm.parse().ok()?);
        let ok = (hh < 24 && mm < 60) || (end && hh == 24 && mm == 0);
        ok.then_some(hh * 60 + mm)
    };
    let start = clock(a, false).ok_or_else(bad)?;
    let end = clock(b, true).ok_or_else(bad)?;
    if start == end {
        return Err(format!(
            "{h:?} is empty (for a whole day use \"00:00-24:00\")"
        ));
    }
    Ok((start, end))
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, problems};
    use crate::core::schedule::When;
    use std::path::Path;

    const PVE: &str = "[proxmox]\nurl = \"http://127.0.0.1:8006\"\ntoken_id = \"a@pve!s\"\ntoken_secret_env = \"PVE_SECRET\"\n";

    #[test]
    fn windows_parse_and_groups_override_the_policy_default() {
        let text = "[[policy.schedule]]\nname = \"nights\"\nhours = \"22:00-06:00\"\nmax_instances = 1\n\
            [[group]]\nprimary = \"a:web\"\n\
            [[group.schedule]]\nname = \"business-hours\"\ndays = \"mon-fri\"\nhours = \"08:00-18:00\"\ntimezone = \"Europe/Berlin\"\nmin_instances = 2\n\
            [[group.schedule]]\nname = \"batch\"\ncron = \"0 2 * * *\"\nduration = \"3h\"\nmax_instances = 6\n\
            [[group]]\nprimary = \"a:api\"\n\
            [[group]]\nprimary = \"a:db\"\nschedule = []\n";
        let c = Config::parse(text, Path::new("t.toml")).unwrap();
        let web = c.groups[0].policy.schedule.windows();
        assert_eq!(web.len(), 2);
        assert_eq!(web[0].name, "business-hours");
        assert_eq!(web[0].timezone, chrono_tz::Europe::Berlin);
        assert_eq!(
            web[0].when,
            When::Hours {
                days: 0b1_1111,
                start: 480,
                end: 1080
            }
        );
        assert_eq!(web[0].min_instances, Some(2));
        assert_eq!(
            web[0].to_string(),
            "'business-hours' mon,tue,wed,thu,fri 08:00-18:00 Europe/Berlin: min 2"
        );
        assert_eq!(
            web[1].to_string(),
            "'batch' cron \"0 2 * * *\" for 3h UTC: max 6"
        );
        assert!(matches!(web[1].when, When::Cron { .. }));
        let api = c.groups[1].policy.schedule.windows();
        assert_eq!(api.len(), 1);
        assert_eq!(api[0].name, "nights");
        assert!(
            c.groups[2].policy.schedule.is_empty(),
            "schedule = [] turns it off"
        );
        assert_eq!(
            api[0].when,
            When::Hours {
                days: 0x7f,
                start: 1320,
                end: 360
            }
        );
    }

    #[test]
    fn each_problem_names_its_key() {
        let g =
            "[[group]]\nprimary = \"a:b\"\n[[group.schedule]]\nname = \"w\"\nmin_instances = 2\n";
        let cases = [
            (
                "hours = \"08:00-18:00\"\ntimezone = \"Europe/Berln\"\n",
                "group[0] (a:b).schedule[0].timezone: unknown time zone \"Europe/Berln\"",
            ),
            (
                "cron = \"0 8 * * mon-fry\"\nduration = \"1h\"\n",
                "group[0] (a:b).schedule[0].cron: \"0 8 * * mon-fry\" is not a cron expression",
            ),
            (
                "cron = \"0 8 * * *\"\n",
                "group[0] (a:b).schedule[0].duration: required with cron",
            ),
            (
                "cron = \"0 8 * * *\"\nduration = \"1h\"\nhours = \"08:00-09:00\"\n",
                "group[0] (a:b).schedule[0]: set cron + duration, or days + hours, not both",
            ),
            (
                "days = \"mon-fry\"\n",
                "group[0] (a:b).schedule[0].days: unknown day \"fry\"",
            ),
            (
                "hours = \"8-18\"\n",
                "group[0] (a:b).schedule[0].hours: \"8-18\" is not \"HH:MM-HH:MM\"",
            ),
            ("hours = \"08:00-25:00\"\n", "schedule[0].hours:"),
            (
                "hours = \"08:00-08:00\"\n",
                "schedule[0].hours: \"08:00-08:00\" is empty",
            ),
            (
                "cron = \"0 0 30 2 *\"\nduration = \"1h\"\n",
                "schedule[0].cron: \"0 0 30 2 *\" never matches",
            ),
            (
                "days = \"sat\"\nmax_instances = 1\n",
                "schedule[0].min_instances: 2 is above max_instances (1)",
            ),
            (
                "days = \"sat\"\ncores = [1, 2]\n",
                "schedule[0].cores: only an [[lxc]]",
            ),
            (
                "timezone = \"UTC\"\n",
                "group[0] (a:b).schedule[0]: set cron + duration, or days and/or hours",
            ),
            (
                "days = \"sat\"\nfoo = 1\n",
                "group[0] (a:b).schedule[0]: unknown field `foo`",
            ),
        ];
        for (body, want) in cases {
            let got = problems(&format!("{g}{body}"));
            assert!(
                got.iter().any(|p| p.contains(want)),
                "{body:?}: {got:?} lacks {want:?}"
            );
        }
        let nothing = problems("[[policy.schedule]]\nname = \"n\"\ndays = \"sun\"\n");
        assert!(
            nothing
                .iter()
                .any(|p| p.contains("policy.schedule[0]: sets nothing")),
            "{nothing:?}"
        );
        let twice = problems(
            "[[policy.schedule]]\nname = \"n\"\ndays = \"sun\"\nmax_instances = 1\n[[policy.schedule]]\nname = \"n\"\ndays = \"sat\"\nmax_instances = 1\n",
        );
        assert!(
            twice
                .iter()
                .any(|p| p.contains("policy.schedule[1].name: \"n\" is already")),
            "{twice:?}"
        );
        let table = problems("[policy.schedule]\nname = \"n\"\n");
        assert!(
            table
                .iter()
                .any(|p| p.contains("policy.schedule: must be an array of tables")),
            "{table:?}"
        );
    }

    #[test]
    fn a_window_min_above_the_max_in_force_is_rejected() {
        let win = |body: &str| format!("name = \"w\"\ndays = \"sat\"\n{body}");
        for (text, want) in [
            (
                format!(
                    "[[group]]\nprimary = \"alice:web\"\n[[group.schedule]]\n{}[[group.schedule]]\n{}",
                    win("max_instances = 2\n").replace("\"w\"", "\"v\""),
                    win("min_instances = 9\n")
                ),
                "group[0] (alice:web).schedule[1].min_instances: 9 is above max_instances (4); the window can never reach it (give it its own max_instances, or raise max_instances)",
            ),
            (
                format!("[[policy.schedule]]\n{}", win("min_instances = 5\n")),
                "policy.schedule[0].min_instances: 5 is above max_instances (4); the window can never reach it",
            ),
            (
                format!(
                    "[[policy.schedule]]\n{}[[group]]\nprimary = \"a:b\"\nmax_instances = 2\n",
                    win("min_instances = 3\n")
                ),
                "group[0] (a:b).max_instances: 2 is below min_instances (3) of the inherited policy.schedule[0]; that window can never reach it",
            ),
            (
                format!(
                    "{PVE}[[lxc]]\nvmid = 101\nmax_instances = 3\n[[lxc.schedule]]\n{}",
                    win("min_instances = 9\n")
                ),
                "lxc[0] (101).schedule[0].min_instances: 9 is above max_instances (3)",
            ),
        ] {
            let got = problems(&text);
            assert!(
                got.iter().any(|p| p.contains(want)),
                "{text:?}: {got:?} lacks {want:?}"
            );
        }
        // Reachable: the window's own max replaces the group's while it is active, or
        // another window's max lifts the ceiling when both are active; the group's
        // own max is fine with an inherited window it can reach.
        for text in [
            format!(
                "[[group]]\nprimary = \"a:b\"\n[[group.schedule]]\n{}",
                win("min_instances = 9\nmax_instances = 10\n")
            ),
            format!(
                "[[group]]\nprimary = \"a:b\"\n[[group.schedule]]\n{}[[group.schedule]]\n{}",
                win("min_instances = 9\n"),
                win("max_instances = 12\n").replace("\"w\"", "\"v\"")
            ),
            format!(
                "[[policy.schedule]]\n{}[[group]]\nprimary = \"a:b\"\nmax_instances = 3\n",
                win("min_instances = 3\n")
            ),
        ] {
            assert_eq!(problems(&text), Vec::<String>::new(), "{text:?}");
        }
    }

    #[test]
    fn lxc_window_bounds_may_widen_the_containers_own() {
        // A window's cores / memory_mib replace the container's while it is active
        // (core::schedule bounds), so a pair outside them still takes effect.
        let text = format!(
            "{PVE}[[lxc]]\nvmid = 101\ncores = [1, 4]\nmemory_mib = [512, 2048]\n\
             [[lxc.schedule]]\nname = \"day\"\nhours = \"08:00-18:00\"\ncores = [8, 16]\nmemory_mib = [64, 256]\n"
        );
        let c = Config::parse(&text, Path::new("t.toml")).unwrap();
        let w = &c.lxc[0].vertical.schedule.windows()[0];
        assert_eq!((w.cores, w.memory_mib), (Some((8, 16)), Some((64, 256))));
    }

    #[test]
    fn days_lists_ranges_and_wraps() {
        use super::{Days, days};
        let one = |s: &str| days(Days::One(s.into()));
        assert_eq!(one("mon-fri"), Ok(0b001_1111));
        assert_eq!(one("fri-mon"), Ok(0b111_0001));
        assert_eq!(one("Sat, sunday"), Ok(0b110_0000));
        assert_eq!(one("*"), Ok(0x7f));
        assert_eq!(
            days(Days::Many(vec!["mon".into(), "wed".into()])),
            Ok(0b101)
        );
        assert!(one("mo").is_err());
        assert!(one("mondays").is_err());
    }

    #[test]
    fn lxc_windows_size_containers_and_reject_cores_under_cpulimit() {
        let text = format!(
            "{PVE}[[lxc]]\nvmid = 101\ncores = [1, 8]\n[[lxc.schedule]]\nname = \"day\"\nhours = \"08:00-18:00\"\ncores = [4, 8]\nmemory_mib = [2048, 8192]\n"
        );
        let c = Config::parse(&text, Path::new("t.toml")).unwrap();
        let w = &c.lxc[0].vertical.schedule.windows()[0];
        assert_eq!((w.cores, w.memory_mib), (Some((4, 8)), Some((2048, 8192))));
        let got = problems(&format!(
            "{PVE}[[lxc]]\nvmid = 101\ncpulimit = [1.0, 4.0]\n[[lxc.schedule]]\nname = \"day\"\nhours = \"08:00-18:00\"\ncores = [4, 8]\n"
        ));
        assert!(
            got.iter().any(|p| p
                .contains("lxc[0] (101).schedule[0].cores: this container is sized by cpulimit")),
            "{got:?}"
        );
    }
}
