//! The TOML configuration: `[policy]` defaults, `[[group]]` overrides, validated into
//! the engine's [`Policy`] per group. Every problem is reported with its key.

// Duplicate primaries and primaries named like clones, without comparing pairs.
mod clash;
mod daemon;
pub mod history;
pub(crate) mod hooks;
pub mod http;
pub mod notify;
mod policy;
mod pools;
pub mod proxmox;
mod schedule;
pub mod source;

pub use daemon::{DaemonConfig, Endpoint};

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::core::Policy;
use crate::name::Name;
use policy::{PolicyFile, check, merge, policy_file};

/// A loaded, validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `[policy]` merged over the built-in defaults.
    pub policy: Policy,
    /// The groups, each with its effective policy.
    pub groups: Vec<Group>,
    /// albatross TLS endpoints (`[albatross]` / `[[albatross]]`); none for `replay`.
    pub endpoints: Vec<Endpoint>,
    /// `[daemon]`.
    pub daemon: DaemonConfig,
    /// `[proxmox]`, if LXC containers are scaled.
    pub proxmox: Option<proxmox::Proxmox>,
    /// `[[lxc]]` containers.
    pub lxc: Vec<proxmox::Lxc>,
    /// `[http]`: status API and metrics (off by default).
    pub http: http::Http,
    /// `[[notify]]`: notification sinks.
    pub notify: Vec<notify::Notify>,
    /// `[history]`: samples and decisions in SQLite (off by default).
    pub history: history::History,
    /// The `[policy]` and `[[group]]` tables as written: what the flight recorder
    /// keeps so a recording replays against the same policies.
    pub policy_source: String,
    /// The same for the LXC machine: `[policy]`, `[[lxc]]` and what of `[proxmox]`
    /// shapes decisions (no address, no credentials).
    pub lxc_source: String,
}

/// One scaling group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// Albatross name of the primary, e.g. `alice:web`.
    pub primary: Name,
    /// Shared by the groups with an equal policy (most have the `[policy]` defaults).
    pub policy: Arc<Policy>,
    /// The albatross endpoint that runs it (`endpoint = "name"`; the only one if
    /// there is one). `None` when the config has no endpoints.
    pub endpoint: Option<String>,
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

/// A serde error of section `at` on one line, naming the key when toml knows it:
/// `policy.scale_up_threshold: invalid type: string "x", expected i64` rather than
/// the message with "in `scale_up_threshold`" on a line of its own.
pub(crate) fn de_error(at: &str, e: &toml::de::Error) -> String {
    let msg = e.message().trim_end();
    let full = e.to_string();
    let key = full
        .strip_prefix(e.message())
        .map(str::trim)
        .and_then(|r| r.strip_prefix("in `"))
        .and_then(|r| r.strip_suffix('`'))
        .filter(|k| !k.is_empty() && !k.contains('\n'));
    match key {
        Some(k) => format!("{at}.{k}: {msg}"),
        None => format!("{at}: {}", full.trim_end()),
    }
}

/// Keys a `[[group]]` table has besides the policy keys.
pub(crate) const GROUP_KEYS: &[&str] = &["primary", "endpoint"];
/// Top-level sections.
const TOP_KEYS: &[&str] = &[
    "policy",
    "group",
    "albatross",
    "daemon",
    "proxmox",
    "lxc",
    "http",
    "notify",
    "history",
];

impl Config {
    /// The groups placed on endpoint `name`.
    pub fn groups_on<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Group> + 'a {
        self.groups
            .iter()
            .filter(move |g| g.endpoint.as_deref().unwrap_or("default") == name)
    }

    /// `stats_idle_timeout` of endpoint `ep`: as set, or 3 × the smallest
    /// `sample_interval` of its groups (30 s without groups).
    pub fn stats_idle_timeout(&self, ep: &Endpoint) -> std::time::Duration {
        idle_timeout(ep, self.groups_on(&ep.name))
    }

    /// What is allowed but probably not meant, one line each, naming the key.
    pub fn warnings(&self) -> Vec<String> {
        let mut w = Vec::new();
        // Groups by endpoint once: not a pass over all groups per endpoint.
        let mut on: HashMap<&str, Vec<&Group>> = HashMap::new();
        for g in &self.groups {
            on.entry(g.endpoint.as_deref().unwrap_or("default"))
                .or_default()
                .push(g);
        }
        for ep in &self.endpoints {
            let groups = on.get(ep.name.as_str()).map_or(&[][..], Vec::as_slice);
            let idle = idle_timeout(ep, groups.iter().copied());
            for g in groups {
                if idle >= g.policy.death_timeout {
                    w.push(format!(
                        "albatross {:?}: stats_idle_timeout ({}) is not below death_timeout ({}) of group {}: after an albatrossd restart the primary is declared dead before its silent stream is resubscribed",
                        ep.name,
                        humantime::format_duration(idle),
                        humantime::format_duration(g.policy.death_timeout),
                        g.primary
                    ));
                }
            }
        }
        pools::warnings(&self.groups, &mut w);
        for l in &self.lxc {
            if l.policy.predictive_shadow && l.mode.clones() {
                w.push(format!(
                    "lxc {} ({}): predictive = \"shadow\" does nothing for containers: the seasonal forecast is fitted for albatross [[group]]s only (predictive = true acts on Holt's level + trend forecast)",
                    l.vmid, l.name
                ));
            }
        }
        for g in &self.groups {
            let p = &g.policy;
            let first_check = p.sample_interval * 2;
            if p.lifecycle.check_ready
                && !p.boot_time.is_zero()
                && p.lifecycle.ready_timeout <= p.boot_time
            {
                w.push(format!(
                    "group {}: ready_timeout ({}) is not above boot_time ({}): every clone would be given up before it serves",
                    g.primary,
                    humantime::format_duration(p.lifecycle.ready_timeout),
                    humantime::format_duration(p.boot_time)
                ));
            }
            if p.lifecycle.check_ready && p.lifecycle.ready_timeout <= first_check {
                w.push(format!(
                    "group {}: ready_timeout ({}) is not above two sample_intervals ({}): a clone is checked at its first sample, so most clones would be given up before they could pass",
                    g.primary,
                    humantime::format_duration(p.lifecycle.ready_timeout),
                    humantime::format_duration(first_check)
                ));
            }
        }
        w
    }

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
        let base = path.parent().unwrap_or(Path::new("."));
        let config = build(table, base, &mut problems);
        match config {
            Some(mut c) if problems.is_empty() => {
                c.policy_source = source::policy_tables(text);
                c.lxc_source = source::lxc_tables(text);
                Ok(c)
            }
            _ => Err(ConfigError::Invalid {
                path: path.to_owned(),
                problems,
            }),
        }
    }
}

/// [`Config::stats_idle_timeout`] of `ep`, given its groups.
fn idle_timeout<'a>(ep: &Endpoint, groups: impl Iterator<Item = &'a Group>) -> std::time::Duration {
    ep.stats_idle_timeout.unwrap_or_else(|| {
        groups
            .map(|g| g.policy.sample_interval)
            .min()
            .unwrap_or(std::time::Duration::from_secs(10))
            * 3
    })
}

fn build(mut table: toml::Table, base: &Path, problems: &mut Vec<String>) -> Option<Config> {
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

    let endpoints = daemon::endpoints(table.remove("albatross"), base, problems);
    let daemon = daemon::daemon(table.remove("daemon"), base, problems);
    let http = http::http(table.remove("http"), base, problems);
    let notify = notify::notify(table.remove("notify"), base, problems);
    let history = history::history(table.remove("history"), base, problems);
    let pve = proxmox::proxmox(table.remove("proxmox"), base, problems);
    if let Some(p) = pve.as_ref().filter(|p| p.state_file == daemon.state_file) {
        // Two ownership records in one file would overwrite each other.
        problems.push(format!(
            "proxmox.state_file: {} is also daemon.state_file; give each its own file",
            p.state_file.display()
        ));
    }
    let lxc = proxmox::lxcs(table.remove("lxc"), pve.as_ref(), &defaults, problems);
    let groups = match table.remove("group") {
        None => Vec::new(),
        Some(toml::Value::Array(a)) => a,
        Some(_) => {
            problems.push("group: must be an array of tables ([[group]])".into());
            return None;
        }
    };
    let endpoint_names: std::collections::HashSet<&str> =
        endpoints.iter().map(|x| x.name.as_str()).collect();
    let mut out = Vec::with_capacity(groups.len());
    let mut policies = crate::core::policy::Interner::default();
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
        let endpoint = match (g.remove("endpoint"), endpoints.as_slice()) {
            (Some(toml::Value::String(e)), _) if endpoint_names.contains(e.as_str()) => Some(e),
            (Some(toml::Value::String(e)), eps) => {
                let known: Vec<&str> = eps.iter().map(|x| x.name.as_str()).collect();
                problems.push(format!(
                    "{at}.endpoint: no [[albatross]] endpoint is named {e:?} (known: {known:?})"
                ));
                None
            }
            (Some(_), _) => {
                problems.push(format!("{at}.endpoint: must be a string"));
                None
            }
            (None, []) => None,
            (None, [one]) => Some(one.name.clone()),
            (None, _) => {
                problems.push(format!(
                    "{at}: missing key endpoint (there are several [[albatross]] endpoints)"
                ));
                None
            }
        };
        let Some(file) = policy_file(g, &at, problems) else {
            continue;
        };
        let policy = merge(defaults.clone(), &file);
        check(&policy, &file, &at, primary.as_ref(), problems);
        if let Some(primary) = primary {
            out.push(Group {
                primary,
                policy: policies.intern(policy),
                endpoint,
            });
        }
    }
    clash::check_groups(&out, problems);
    pools::check(&out, problems);
    let sinks: Vec<String> = notify.iter().map(|n| n.name.clone()).collect();
    hooks::check_sinks(
        std::iter::once(("policy".to_string(), &defaults)).chain(
            out.iter()
                .map(|g| (format!("group ({})", g.primary), &*g.policy)),
        ),
        &sinks,
        problems,
    );
    Some(Config {
        policy: defaults,
        groups: out,
        endpoints,
        daemon,
        proxmox: pve,
        lxc,
        http,
        notify,
        history,
        policy_source: String::new(),
        lxc_source: String::new(),
    })
}

/// Every problem `text` has (empty if it is valid), for the config tests.
#[cfg(test)]
pub(crate) fn problems(text: &str) -> Vec<String> {
    match Config::parse(text, Path::new("t.toml")) {
        Ok(_) => Vec::new(),
        Err(ConfigError::Invalid { problems, .. }) => problems,
        Err(e) => vec![e.to_string()],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pool_smaller_than_the_clones_is_a_warning_and_apart_pools_are_fine() {
        let c = Config::parse(
            "[policy]\nmax_instances = 4\n[[group]]\nprimary = \"a:web\"\nclone_ipv4 = \"10.0.0.10-10.0.0.11\"\n[[group]]\nprimary = \"a:db\"\nclone_ipv4 = \"10.0.0.12-10.0.0.20\"\n[[group]]\nprimary = \"a:kv\"\nclone_ipv4 = \"keep\"\n",
            Path::new("t.toml"),
        )
        .unwrap();
        let w = c.warnings();
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].contains("a:web: clone_ipv4 has 2 address(es) for up to 3 clone(s)"));
    }

    #[test]
    fn clone_cpus_and_an_explicit_vcpus_are_read_per_group() {
        let c = Config::parse(
            "[policy]\nvcpus = 2\n[[group]]\nprimary = \"a:web\"\nclone_cpus = \"same\"\n[[group]]\nprimary = \"a:db\"\n",
            Path::new("t.toml"),
        )
        .unwrap();
        let (web, db) = (&c.groups[0].policy, &c.groups[1].policy);
        let w = c.warnings();
        assert!(
            w.len() == 1
                && w[0].contains("a:web: clone_cpus = \"same\"")
                && w[0].contains("adds no CPU capacity"),
            "{w:?}"
        );
        assert_eq!(web.clone_cpus, crate::core::CloneCpus::Same);
        assert_eq!(db.clone_cpus, crate::core::CloneCpus::Spread);
        assert!(web.vcpus_fixed && db.vcpus_fixed && db.vcpus == 2);
        let c = Config::parse("[[group]]\nprimary = \"a:web\"\n", Path::new("t.toml")).unwrap();
        assert!(!c.groups[0].policy.vcpus_fixed);
    }

    #[test]
    fn groups_with_equal_policies_share_one_copy() {
        let c = Config::parse(
            "[policy]\nmax_instances = 3\n[[group]]\nprimary = \"a:web\"\n[[group]]\nprimary = \"a:db\"\nmax_instances = 5\n[[group]]\nprimary = \"a:kv\"\n[[group]]\nprimary = \"a:mq\"\nmax_instances = 5\n",
            Path::new("t.toml"),
        )
        .unwrap();
        let p: Vec<&Arc<Policy>> = c.groups.iter().map(|g| &g.policy).collect();
        assert!(Arc::ptr_eq(p[0], p[2]) && Arc::ptr_eq(p[1], p[3]));
        assert!(!Arc::ptr_eq(p[0], p[1]));
        assert_eq!((p[0].max_instances, p[1].max_instances), (3, 5));
        // The engine shares them too, and a change to one group's copy (LXC prices
        // by size) does not reach the others.
        let groups = c
            .groups
            .iter()
            .map(|g| (g.primary.clone(), Policy::clone(&g.policy)))
            .collect();
        let e = crate::core::Engine::new(
            groups,
            crate::core::Options::default(),
            crate::core::Timestamp::ZERO,
        );
        let (web, kv) = (&e.groups()[0], &e.groups()[2]);
        assert!(std::ptr::eq(web.policy(), kv.policy()));
        assert!(!std::ptr::eq(web.policy(), e.groups()[1].policy()));
        let mut web = web.clone();
        web.set_instance_cost(7);
        assert_eq!(web.policy().instance_cost_micros, 7);
        assert_eq!(kv.policy().instance_cost_micros, 0);
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
        assert_eq!(p.scale_down_cooldown, std::time::Duration::from_secs(300));
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
                "[[group]]\nprimary = \"a:b\"\nclone_ipv4 = \"10.0.0.9-10.0.0.2\"\n",
                "group[0] (a:b).clone_ipv4: \"10.0.0.9-10.0.0.2\": 10.0.0.9 is after 10.0.0.2",
            ),
            (
                "[[group]]\nprimary = \"a:b\"\nclone_ipv4 = \"dhcp\"\n",
                "group[0] (a:b).clone_ipv4: \"dhcp\" is not \"keep\" or a range",
            ),
            (
                "[[group]]\nprimary = \"a:b\"\nclone_ipv4 = \"10.0.0.10-10.0.0.20\"\n[[group]]\nprimary = \"a:c\"\nclone_ipv4 = \"10.0.0.20-10.0.0.30\"\n",
                "group[1] (a:c).clone_ipv4: overlaps the pool of group[0] (a:b)",
            ),
            (
                "[[group]]\nprimary = \"a:b\"\nclone_cpus = \"spreaded\"\n",
                "group[0] (a:b).clone_cpus: \"spreaded\" is not \"spread\"",
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
            (
                "[policy]\nsample_interval = \"10 parsecs\"\n",
                "policy.sample_interval: ",
            ),
            (
                "[policy]\nscale_up_threshold = \"x\"\n",
                "policy.scale_up_threshold: invalid type: string \"x\", expected i64",
            ),
            (
                "[[group]]\nprimary = \"a:b\"\nmax_instances = 2.5\n",
                "group[0] (a:b).max_instances: invalid type: floating point `2.5`, expected i64",
            ),
            (
                "[daemon]\nstate_file = 3\n",
                "daemon.state_file: invalid type: integer `3`",
            ),
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
            assert!(
                got.iter().all(|p| !p.contains('\n')),
                "{text:?}: {got:?} has a multi-line problem"
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

    #[test]
    fn endpoints_resolve_relative_paths_and_groups_pick_theirs() {
        let dir = std::env::temp_dir().join(format!("aa-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for f in ["ca.pem", "sub.pem", "sub.key"] {
            std::fs::write(dir.join(f), "x").unwrap();
        }
        let text = "[[albatross]]\nname = \"a\"\nendpoint = \"127.0.0.1:1025\"\nca = \"ca.pem\"\ncert = \"sub.pem\"\nkey = \"sub.key\"\n\
            [[albatross]]\nname = \"b\"\nendpoint = \"host-b:1025\"\nca = \"ca.pem\"\ncert = \"sub.pem\"\nkey = \"sub.key\"\n\
            [daemon]\nstate_file = \"state.json\"\n\
            [[group]]\nprimary = \"alice:web\"\nendpoint = \"b\"\n";
        let c = Config::parse(text, &dir.join("c.toml")).unwrap();
        assert_eq!(c.endpoints.len(), 2);
        assert_eq!(c.endpoints[0].ca, dir.join("ca.pem"));
        assert_eq!(c.daemon.state_file, dir.join("state.json"));
        assert_eq!(c.groups[0].endpoint.as_deref(), Some("b"));
        let bad = text
            .replace("endpoint = \"b\"", "endpoint = \"c\"")
            .replace("host-b:1025", "host-b");
        let err = Config::parse(&bad, &dir.join("c.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("group[0] (alice:web).endpoint: no [[albatross]] endpoint is named \"c\""),
            "{err}"
        );
        assert!(
            err.contains("albatross[1].endpoint: \"host-b\" is not host:port"),
            "{err}"
        );
        let missing = text.replace("key = \"sub.key\"\n\\", "key = \"nope.key\"\n");
        let err = Config::parse(
            &missing.replacen("sub.key", "nope.key", 1),
            &dir.join("c.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("albatross[0].key:") && err.contains("nope.key"),
            "{err}"
        );
    }
}
