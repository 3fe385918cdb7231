//! The TOML configuration: `[policy]` defaults, `[[group]]` overrides, validated into
//! the engine's [`Policy`] per group. Every problem is reported with its key.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::core::naming;
use crate::core::{Policy, PrimaryDeath};
use crate::name::{self, Name};

/// A loaded, validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `[policy]` merged over the built-in defaults.
    pub policy: Policy,
    /// The groups, each with its effective policy.
    pub groups: Vec<Group>,
}

/// One scaling group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// Albatross name of the primary, e.g. `alice:web`.
    pub primary: Name,
    pub policy: Policy,
}

/// Why a configuration was rejected.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: invalid TOML: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("{path}: {} problem(s):\n  - {}", problems.len(), problems.join("\n  - "))]
    Invalid {
        path: PathBuf,
        problems: Vec<String>,
    },
}

/// The policy keys, all optional: `[policy]` and every `[[group]]` may set them.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    #[serde(default, with = "humantime_serde")]
    sample_interval: Option<Duration>,
    scale_up_threshold: Option<i64>,
    scale_up_ticks: Option<i64>,
    scale_down_threshold: Option<i64>,
    scale_down_ticks: Option<i64>,
    #[serde(default, with = "humantime_serde")]
    scale_up_cooldown: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    scale_down_cooldown: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    death_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    startup_grace: Option<Duration>,
    min_instances: Option<i64>,
    max_instances: Option<i64>,
    max_actions_per_hour: Option<i64>,
    clone_name: Option<String>,
    primary_death: Option<PrimaryDeath>,
    vcpus: Option<i64>,
    #[serde(default, with = "humantime_serde")]
    retry_backoff: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    retry_backoff_max: Option<Duration>,
}

/// Keys a `[[group]]` table has besides the policy keys.
const GROUP_KEYS: &[&str] = &["primary"];
/// Top-level sections.
const TOP_KEYS: &[&str] = &["policy", "group"];

impl Config {
    /// Read and validate a file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parse and validate text; `path` only names the source in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let table: toml::Table =
            text.parse()
                .map_err(|e: toml::de::Error| ConfigError::Syntax {
                    path: path.to_owned(),
                    message: e.to_string().trim_end().to_string(),
                })?;
        let mut problems = Vec::new();
        let config = build(table, &mut problems);
        match config {
            Some(c) if problems.is_empty() => Ok(c),
            _ => Err(ConfigError::Invalid {
                path: path.to_owned(),
                problems,
            }),
        }
    }
}

fn build(mut table: toml::Table, problems: &mut Vec<String>) -> Option<Config> {
    for key in table.keys() {
        if !TOP_KEYS.contains(&key.as_str()) {
            problems.push(format!(
                "{key}: unknown key (expected one of: {})",
                TOP_KEYS.join(", ")
            ));
        }
    }
    let top = match table.remove("policy") {
        None => PolicyFile::default(),
        Some(toml::Value::Table(t)) => policy_file(t, "policy", problems)?,
        Some(_) => {
            problems.push("policy: must be a table ([policy])".into());
            return None;
        }
    };
    let defaults = merge(Policy::default(), &top);
    check(&defaults, &top, "policy", None, problems);

    let groups = match table.remove("group") {
        None => Vec::new(),
        Some(toml::Value::Array(a)) => a,
        Some(_) => {
            problems.push("group: must be an array of tables ([[group]])".into());
            return None;
        }
    };
    let mut out = Vec::new();
    for (i, g) in groups.into_iter().enumerate() {
        let at = format!("group[{i}]");
        let toml::Value::Table(mut g) = g else {
            problems.push(format!("{at}: must be a table"));
            continue;
        };
        let primary = match g.remove("primary") {
            Some(toml::Value::String(s)) => match Name::parse(&s) {
                Ok(n) if n.label.is_some() => Some(n),
                Ok(_) => {
                    problems.push(format!(
                        "{at}.primary: {s:?} is a path, not a unikernel (it needs a label after the last ':')"
                    ));
                    None
                }
                Err(e) => {
                    problems.push(format!("{at}.primary: {s:?}: {e}"));
                    None
                }
            },
            Some(_) => {
                problems.push(format!(
                    "{at}.primary: must be a string such as \"alice:web\""
                ));
                None
            }
            None => {
                problems.push(format!("{at}: missing key primary"));
                None
            }
        };
        let at = match &primary {
            Some(p) => format!("group[{i}] ({p})"),
            None => at,
        };
        let Some(file) = policy_file(g, &at, problems) else {
            continue;
        };
        let policy = merge(defaults.clone(), &file);
        check(&policy, &file, &at, primary.as_ref(), problems);
        if let Some(primary) = primary {
            out.push(Group { primary, policy });
        }
    }
    check_groups(&out, problems);
    Some(Config {
        policy: defaults,
        groups: out,
    })
}

fn policy_file(t: toml::Table, at: &str, problems: &mut Vec<String>) -> Option<PolicyFile> {
    match PolicyFile::deserialize(toml::Value::Table(t)) {
        Ok(f) => Some(f),
        Err(e) => {
            let msg = e.to_string();
            let msg = msg.trim_end();
            let hint = if msg.contains("unknown field") && at.starts_with("group") {
                format!(
                    " (a [[group]] takes {} and the [policy] keys)",
                    GROUP_KEYS.join(", ")
                )
            } else {
                String::new()
            };
            problems.push(format!("{at}: {msg}{hint}"));
            None
        }
    }
}

fn merge(mut p: Policy, f: &PolicyFile) -> Policy {
    fn set<T: Copy>(dst: &mut T, src: Option<T>) {
        if let Some(v) = src {
            *dst = v;
        }
    }
    fn set_u32(dst: &mut u32, src: Option<i64>) {
        if let Some(v) = src {
            // Out-of-range values are reported by check(); clamp so merging never fails.
            *dst = u32::try_from(v.max(0)).unwrap_or(u32::MAX);
        }
    }
    set(&mut p.sample_interval, f.sample_interval);
    set_u32(&mut p.scale_up_threshold, f.scale_up_threshold);
    set_u32(&mut p.scale_up_ticks, f.scale_up_ticks);
    set_u32(&mut p.scale_down_threshold, f.scale_down_threshold);
    set_u32(&mut p.scale_down_ticks, f.scale_down_ticks);
    set(&mut p.scale_up_cooldown, f.scale_up_cooldown);
    set(&mut p.scale_down_cooldown, f.scale_down_cooldown);
    set(&mut p.death_timeout, f.death_timeout);
    set(&mut p.startup_grace, f.startup_grace);
    set_u32(&mut p.min_instances, f.min_instances);
    set_u32(&mut p.max_instances, f.max_instances);
    set_u32(&mut p.max_actions_per_hour, f.max_actions_per_hour);
    if let Some(t) = &f.clone_name {
        p.clone_name = t.clone();
    }
    set(&mut p.primary_death, f.primary_death);
    set_u32(&mut p.vcpus, f.vcpus);
    set(&mut p.retry_backoff, f.retry_backoff);
    set(&mut p.retry_backoff_max, f.retry_backoff_max);
    p
}

/// Check an effective policy. A problem is reported under the section that set the
/// offending key: this one, or `[policy]`, whose own check already reported it.
fn check(
    p: &Policy,
    here: &PolicyFile,
    at: &str,
    primary: Option<&Name>,
    problems: &mut Vec<String>,
) {
    let is_policy = at == "policy";
    // Report a rule on this section if it set one of the keys involved, or if this
    // is [policy] itself; otherwise the [policy] check already said it.
    let mut report = |set_here: bool, msg: String| {
        if set_here || is_policy {
            problems.push(format!("{at}.{msg}"));
        }
    };
    let ranges: [(&str, Option<i64>, i64, i64); 8] = [
        ("scale_up_threshold", here.scale_up_threshold, 0, 100),
        ("scale_down_threshold", here.scale_down_threshold, 0, 100),
        ("scale_up_ticks", here.scale_up_ticks, 1, 1_000_000),
        ("scale_down_ticks", here.scale_down_ticks, 1, 1_000_000),
        ("min_instances", here.min_instances, 1, 10_000),
        ("max_instances", here.max_instances, 1, 10_000),
        (
            "max_actions_per_hour",
            here.max_actions_per_hour,
            1,
            1_000_000,
        ),
        ("vcpus", here.vcpus, 1, 4096),
    ];
    for (key, value, lo, hi) in ranges {
        if let Some(v) = value.filter(|v| !(lo..=hi).contains(v)) {
            report(true, format!("{key}: {v} is out of range {lo}..={hi}"));
        }
    }
    let (up, down) = (p.scale_up_threshold, p.scale_down_threshold);
    if down >= up && up <= 100 {
        report(
            here.scale_up_threshold.is_some() || here.scale_down_threshold.is_some(),
            format!(
                "scale_down_threshold: {down} must be below scale_up_threshold ({up}), or the group would flap"
            ),
        );
    }
    if p.min_instances > p.max_instances {
        report(
            here.min_instances.is_some() || here.max_instances.is_some(),
            format!(
                "min_instances: {} is above max_instances ({})",
                p.min_instances, p.max_instances
            ),
        );
    }
    if p.sample_interval.is_zero() {
        report(
            here.sample_interval.is_some(),
            "sample_interval: must be above 0s".into(),
        );
    }
    if p.death_timeout <= p.sample_interval {
        report(
            here.death_timeout.is_some() || here.sample_interval.is_some(),
            format!(
                "death_timeout: {} must be longer than sample_interval ({}), or every instance dies between two samples",
                humantime::format_duration(p.death_timeout),
                humantime::format_duration(p.sample_interval)
            ),
        );
    }
    if p.retry_backoff.is_zero() || p.retry_backoff_max < p.retry_backoff {
        report(
            here.retry_backoff.is_some() || here.retry_backoff_max.is_some(),
            "retry_backoff: must be above 0s and not above retry_backoff_max".into(),
        );
    }
    let template_set = here.clone_name.is_some();
    if let Err(e) = check_template(&p.clone_name, primary) {
        // A template that only fails for this group's (long) primary is this group's problem.
        let only_here = primary.is_some() && check_template(&p.clone_name, None).is_ok();
        report(template_set || only_here, format!("clone_name: {e}"));
    }
}

/// A template must contain `{n}` once, only the placeholders `{primary}` and `{n}`,
/// and render to a label albatross accepts for every index up to [`naming::MAX_INDEX`].
fn check_template(t: &str, primary: Option<&Name>) -> Result<(), String> {
    if t.matches("{n}").count() != 1 {
        return Err(format!("{t:?} must contain {{n}} exactly once"));
    }
    let stripped = t.replace("{primary}", "").replace("{n}", "");
    if let Some(c) = stripped
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-' || *c == '.'))
    {
        return Err(format!(
            "{t:?} contains {c:?}; albatross labels allow only a-z, 0-9, '-' and '.' (and lower-case them)"
        ));
    }
    let label = primary.and_then(|p| p.label.as_deref()).unwrap_or("p");
    let longest = naming::render(t, label, naming::MAX_INDEX);
    if longest.len() > name::MAX_LABEL_LEN {
        return Err(format!(
            "{t:?} renders to {longest:?} ({} characters) for index {}; albatross allows at most {}",
            longest.len(),
            naming::MAX_INDEX,
            name::MAX_LABEL_LEN
        ));
    }
    name::label(&naming::render(t, label, 1)).map_err(|e| format!("{t:?}: {e}"))?;
    Ok(())
}

fn check_groups(groups: &[Group], problems: &mut Vec<String>) {
    for (i, a) in groups.iter().enumerate() {
        for (j, b) in groups.iter().enumerate().skip(i + 1) {
            if a.primary == b.primary {
                problems.push(format!(
                    "group[{j}].primary: {} is already the primary of group[{i}]",
                    b.primary
                ));
            }
        }
        for (j, b) in groups.iter().enumerate() {
            let (Some(pa), Some(lb)) = (a.primary.label.as_deref(), b.primary.label.as_deref())
            else {
                continue;
            };
            if i != j
                && a.primary.path == b.primary.path
                && naming::index_of(&a.policy.clone_name, pa, lb).is_some()
            {
                problems.push(format!(
                    "group[{j}].primary: {} matches the clone names of group[{i}] ({}); the groups would fight over it",
                    b.primary, a.primary
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(text: &str) -> Vec<String> {
        match Config::parse(text, Path::new("t.toml")) {
            Ok(_) => Vec::new(),
            Err(ConfigError::Invalid { problems, .. }) => problems,
            Err(e) => vec![e.to_string()],
        }
    }

    #[test]
    fn defaults_and_overrides_merge() {
        let c = Config::parse(
            "[policy]\nscale_up_threshold = 80\nscale_down_cooldown = \"5m\"\n[[group]]\nprimary = \"alice:web\"\nmax_instances = 3\n",
            Path::new("t.toml"),
        )
        .unwrap();
        let p = &c.groups[0].policy;
        assert_eq!(p.scale_up_threshold, 80);
        assert_eq!(p.max_instances, 3);
        assert_eq!(p.scale_down_cooldown, Duration::from_secs(300));
        assert_eq!(c.policy.max_instances, 4);
    }

    #[test]
    fn each_problem_names_its_key() {
        let cases = [
            (
                "[policy]\nscale_up_threshold = 101\n",
                "policy.scale_up_threshold: 101 is out of range",
            ),
            (
                "[policy]\nscale_up_thresold = 90\n",
                "unknown field `scale_up_thresold`",
            ),
            (
                "[policy]\nscale_down_threshold = 95\n",
                "policy.scale_down_threshold: 95 must be below",
            ),
            (
                "[[group]]\nprimary = \"a:b\"\nmin_instances = 5\nmax_instances = 2\n",
                "group[0] (a:b).min_instances: 5 is above",
            ),
            (
                "[policy]\nclone_name = \"{primary}_copy{n}\"\n",
                "policy.clone_name: \"{primary}_copy{n}\" contains '_'",
            ),
            (
                "[policy]\nclone_name = \"x\"\n",
                "must contain {n} exactly once",
            ),
            (
                "[[group]]\nprimary = \"alice:\"\n",
                "group[0].primary: \"alice:\" is a path",
            ),
            (
                "[[group]]\nprimary = \"a:b\"\n[[group]]\nprimary = \"a:b\"\n",
                "group[1].primary: a:b is already",
            ),
            (
                "[[group]]\nprimary = \"a:web\"\n[[group]]\nprimary = \"a:web-clone-2\"\n",
                "matches the clone names of group[0]",
            ),
            ("[policy]\nsample_interval = \"10 parsecs\"\n", "policy:"),
            (
                "[policy]\ndeath_timeout = \"5s\"\n",
                "policy.death_timeout: 5s must be longer",
            ),
            ("[alba]\n", "alba: unknown key"),
            (
                "[policy]\nprimary_death = \"explode\"\n",
                "unknown variant `explode`",
            ),
        ];
        for (text, want) in cases {
            let got = problems(text);
            assert!(
                got.iter().any(|p| p.contains(want)),
                "{text:?}: {got:?} lacks {want:?}"
            );
        }
    }

    #[test]
    fn a_long_primary_makes_the_template_too_long_for_that_group_only() {
        let long = "w".repeat(54);
        let got = problems(&format!("[[group]]\nprimary = \"a:{long}\"\n"));
        assert!(
            got.iter()
                .any(|p| p.starts_with("group[0] (a:") && p.contains("clone_name")),
            "{got:?}"
        );
        let ok = "w".repeat(52);
        assert!(problems(&format!("[[group]]\nprimary = \"a:{ok}\"\n")).is_empty());
    }

    #[test]
    fn syntax_errors_carry_the_line() {
        let err = Config::parse("[policy\n", Path::new("t.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("t.toml") && err.contains("line 1"), "{err}");
    }
}
