//! The lifecycle keys: `health_check = "tcp:PORT"`, `health_check_timeout`, and
//! the hooks `on_ready`, `on_draining`, `on_removed`, each a table
//! `{ exec = ["/usr/local/bin/lb", "add"], notify = "lb", timeout = "30s" }`
//! (a program and its arguments, never a shell string; and/or a `[[notify]]`
//! sink). A section's key replaces `[policy]`'s.

use std::sync::Arc;
use std::time::Duration;

use crate::core::Policy;
use crate::core::lifecycle::{Event, HookCommand, Hooks};
use crate::core::policy::ClonePool;

/// A section's hook keys, raw.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Keys<'a> {
    pub health_check: Option<&'a str>,
    pub health_check_timeout: Option<Duration>,
    pub on_ready: Option<&'a toml::Value>,
    pub on_draining: Option<&'a toml::Value>,
    pub on_removed: Option<&'a toml::Value>,
}

impl<'a> Keys<'a> {
    fn any(&self) -> bool {
        self.health_check.is_some()
            || self.health_check_timeout.is_some()
            || self.on_ready.is_some()
            || self.on_draining.is_some()
            || self.on_removed.is_some()
    }

    fn hooks(&self) -> [(Event, Option<&'a toml::Value>); 3] {
        [
            (Event::Ready, self.on_ready),
            (Event::Draining, self.on_draining),
            (Event::Removed, self.on_removed),
        ]
    }
}

/// The config key of the hook for `event`.
pub fn key(event: Event) -> &'static str {
    match event {
        Event::Ready => "on_ready",
        Event::Draining => "on_draining",
        Event::Removed => "on_removed",
    }
}

/// `health_check`: `Some(None)` for `"none"` (turns an inherited check off).
fn health_check(v: &str) -> Result<Option<u16>, String> {
    if v == "none" {
        return Ok(None);
    }
    let port = v.strip_prefix("tcp:").ok_or_else(|| {
        format!("health_check: {v:?} is not \"tcp:PORT\" (a TCP connect to the clone's address) or \"none\"")
    })?;
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(Some(p)),
        _ => Err(format!(
            "health_check: {port:?} is not a port (1..=65535) in {v:?}"
        )),
    }
}

/// One hook table; errors name the key (`on_ready.exec: ...`).
fn command(key: &str, v: &toml::Value) -> Result<HookCommand, String> {
    let toml::Value::Table(t) = v else {
        return Err(format!(
            "{key}: must be a table such as {{ exec = [\"/usr/local/bin/lb\", \"add\"] }} or {{ notify = \"lb\" }}"
        ));
    };
    for k in t.keys() {
        if !["exec", "notify", "timeout"].contains(&k.as_str()) {
            return Err(format!(
                "{key}.{k}: unknown key (a hook takes exec, notify and timeout)"
            ));
        }
    }
    let exec = match t.get("exec") {
        None => None,
        Some(toml::Value::Array(a)) => {
            let argv = a
                .iter()
                .enumerate()
                .map(|(i, x)| {
                    x.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| format!("{key}.exec[{i}]: must be a string"))
                })
                .collect::<Result<Vec<String>, String>>()?;
            if argv.first().is_none_or(|p| p.is_empty()) {
                return Err(format!(
                    "{key}.exec: must name a program first, e.g. [\"/usr/local/bin/lb\", \"add\"]"
                ));
            }
            Some(argv)
        }
        Some(toml::Value::String(s)) => {
            return Err(format!(
                "{key}.exec: {s:?} is a string; give the program and its arguments as an array (it is run directly, never by a shell), e.g. exec = [\"/usr/local/bin/lb\", \"add\"]"
            ));
        }
        Some(_) => return Err(format!("{key}.exec: must be an array of strings")),
    };
    let notify = match t.get("notify") {
        None => None,
        Some(toml::Value::String(s)) if !s.is_empty() => Some(s.clone()),
        Some(_) => {
            return Err(format!(
                "{key}.notify: must be the name of a [[notify]] sink"
            ));
        }
    };
    let timeout = match t.get("timeout") {
        None => HookCommand::TIMEOUT,
        Some(toml::Value::String(s)) => match humantime::parse_duration(s) {
            Ok(d) if d >= Duration::from_secs(1) => d,
            Ok(_) => return Err(format!("{key}.timeout: must be at least 1s")),
            Err(e) => return Err(format!("{key}.timeout: {s:?}: {e}")),
        },
        Some(_) => {
            return Err(format!("{key}.timeout: must be a duration such as \"30s\""));
        }
    };
    if exec.is_none() && notify.is_none() {
        return Err(format!(
            "{key}: needs exec (a program to run) and/or notify (a [[notify]] sink)"
        ));
    }
    Ok(HookCommand {
        exec,
        notify,
        timeout,
    })
}

/// Apply a section's hook keys over the inherited ones (bad values are left out:
/// [`check`] reports them). Sections without hook keys share `[policy]`'s copy.
pub(super) fn merge(p: &mut Policy, keys: &Keys<'_>) {
    if keys.any() {
        let mut h = p.hooks.as_deref().cloned().unwrap_or(Hooks {
            health_check_timeout: Hooks::CHECK_TIMEOUT,
            ..Hooks::default()
        });
        if let Some(Ok(port)) = keys.health_check.map(health_check) {
            h.health_check = port;
        }
        if let Some(t) = keys.health_check_timeout {
            h.health_check_timeout = t;
        }
        for (event, v) in keys.hooks() {
            if let Some(Ok(c)) = v.map(|v| command(key(event), v)) {
                *h.slot(event) = Some(c);
            }
        }
        p.hooks = Some(Arc::new(h));
    }
    let (ready, drain) = (p.lifecycle.ready_timeout, p.lifecycle.drain_period);
    p.lifecycle = match &p.hooks {
        Some(h) => h.lifecycle(ready, drain),
        None => Hooks::default().lifecycle(ready, drain),
    };
}

/// Report bad hook keys of a section, and a health check with no address to
/// connect to.
pub(super) fn check(
    p: &Policy,
    keys: &Keys<'_>,
    is_policy: bool,
    report: &mut impl FnMut(bool, String),
) {
    if let Some(Err(e)) = keys.health_check.map(health_check) {
        report(true, e);
    }
    for (event, v) in keys.hooks() {
        if let Some(Err(e)) = v.map(|v| command(key(event), v)) {
            report(true, e);
        }
    }
    // Per group: pools are per group (they must not overlap), so [policy]'s
    // health check is checked against each group's pool, not its own.
    let checked = p.hooks.as_ref().is_some_and(|h| h.health_check.is_some());
    if !is_policy && checked && !matches!(p.clone_ipv4, Some(ClonePool::Range { .. })) {
        report(
            true,
            "health_check: needs clone_ipv4 = \"<first>-<last>\": a clone's address is known from its pool only (with DHCP the daemon never learns it)".into(),
        );
    }
}

/// The `[[notify]]` sinks named by hooks that do not exist, as problems.
pub(super) fn check_sinks<'a>(
    sections: impl Iterator<Item = (String, &'a Policy)>,
    sinks: &[String],
    problems: &mut Vec<String>,
) {
    let mut seen: Vec<*const Hooks> = Vec::new();
    for (at, p) in sections {
        let Some(h) = p.hooks.as_ref() else { continue };
        // Sections that inherit [policy]'s hooks share its copy: reported once.
        if seen.contains(&Arc::as_ptr(h)) {
            continue;
        }
        seen.push(Arc::as_ptr(h));
        for event in Event::ALL {
            let Some(name) = h.command(event).and_then(|c| c.notify.as_deref()) else {
                continue;
            };
            if !sinks.iter().any(|s| s == name) {
                problems.push(format!(
                    "{at}.{}.notify: no [[notify]] sink is named {name:?} (known: {sinks:?})",
                    key(event)
                ));
            }
        }
    }
}

/// The hook tables of `section` as a recording keeps them: present (the
/// engine's behaviour depends on it), without their programs or sinks.
pub(super) fn redact(section: &mut toml::Table) {
    for event in Event::ALL {
        if let Some(v) = section.get_mut(key(event)) {
            *v = toml::Value::Table(toml::Table::from_iter([(
                "exec".to_string(),
                toml::Value::Array(vec!["(recorded)".into()]),
            )]));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::Config;

    fn problems(text: &str) -> String {
        match Config::parse(text, Path::new("t.toml")) {
            Ok(_) => String::new(),
            Err(e) => e.to_string(),
        }
    }

    const GROUP: &str = "[[group]]\nprimary = \"a:web\"\nclone_ipv4 = \"10.0.0.10-10.0.0.20\"\n";

    #[test]
    fn hooks_parse_into_the_policy_and_its_lifecycle() {
        let text = format!(
            "{GROUP}health_check = \"tcp:8080\"\nready_timeout = \"1m\"\ndrain_period = \"30s\"\n\
             on_ready = {{ exec = [\"/usr/local/bin/lb\", \"add\"], timeout = \"5s\" }}\non_removed = {{ notify = \"dns\" }}\n\
             [[notify]]\nkind = \"webhook\"\nname = \"dns\"\nurl = \"http://127.0.0.1:9/\"\n"
        );
        let c = Config::parse(&text, Path::new("t.toml")).unwrap();
        let p = &c.groups[0].policy;
        let h = p.hooks.as_ref().unwrap();
        assert_eq!(h.health_check, Some(8080));
        let ready = h.on_ready.as_ref().unwrap();
        assert_eq!(
            ready.exec.as_deref(),
            Some(&["/usr/local/bin/lb".to_string(), "add".to_string()][..])
        );
        assert_eq!(ready.timeout, std::time::Duration::from_secs(5));
        assert_eq!(
            h.on_removed.as_ref().unwrap().notify.as_deref(),
            Some("dns")
        );
        assert!(p.lifecycle.check_ready && p.lifecycle.on_removed && !p.lifecycle.on_draining);
        assert_eq!(
            p.lifecycle.ready_timeout,
            std::time::Duration::from_secs(60)
        );
        assert_eq!(p.lifecycle.drain_period, std::time::Duration::from_secs(30));
        // The recording keeps that hooks exist, not what they run.
        assert!(
            !c.policy_source.contains("/usr/local/bin/lb"),
            "{}",
            c.policy_source
        );
        let replayed = crate::config::source::groups_of(&c.policy_source).unwrap();
        assert_eq!(replayed[0].1.lifecycle, p.lifecycle);
    }

    #[test]
    fn bad_hook_keys_are_named() {
        let cases = [
            (
                "on_ready = { exec = \"/usr/local/bin/lb add\" }",
                "on_ready.exec: \"/usr/local/bin/lb add\" is a string",
            ),
            (
                "on_ready = { exec = [] }",
                "on_ready.exec: must name a program",
            ),
            (
                "on_draining = { timeout = \"5s\" }",
                "on_draining: needs exec",
            ),
            (
                "on_removed = { exec = [\"/x\"], shell = true }",
                "on_removed.shell: unknown key",
            ),
            (
                "on_ready = { exec = [\"/x\"], timeout = \"0s\" }",
                "on_ready.timeout: must be at least 1s",
            ),
            ("on_ready = \"/x\"", "on_ready: must be a table"),
            (
                "health_check = \"http:80\"",
                "health_check: \"http:80\" is not \"tcp:PORT\"",
            ),
            (
                "health_check = \"tcp:0\"",
                "health_check: \"0\" is not a port",
            ),
            (
                "ready_timeout = \"0s\"",
                "ready_timeout: must be at least 1s",
            ),
            (
                "on_ready = { notify = \"nope\" }",
                "on_ready.notify: no [[notify]] sink is named \"nope\"",
            ),
        ];
        for (line, want) in cases {
            let p = problems(&format!("{GROUP}{line}\n"));
            assert!(p.contains(want), "{line}: {p}");
            assert!(
                p.contains("group[0] (a:web)") || p.contains("group (a:web)"),
                "{line}: {p}"
            );
        }
    }

    #[test]
    fn a_health_check_needs_a_pool_and_lxc_sections_reject_lifecycle_keys() {
        let p = problems("[[group]]\nprimary = \"a:web\"\nhealth_check = \"tcp:80\"\n");
        assert!(p.contains("health_check: needs clone_ipv4"), "{p}");
        let p = problems(
            "[[group]]\nprimary = \"a:web\"\nclone_ipv4 = \"keep\"\nhealth_check = \"tcp:80\"\n",
        );
        assert!(p.contains("health_check: needs clone_ipv4"), "{p}");
        // [policy]'s check with each group's own pool: fine; a group without: named.
        let p = problems(
            "[policy]\nhealth_check = \"tcp:80\"\n[[group]]\nprimary = \"a:web\"\nclone_ipv4 = \"10.0.0.10-10.0.0.20\"\n",
        );
        assert_eq!(p, "");
        let p = problems(
            "[policy]\nhealth_check = \"tcp:80\"\n[[group]]\nprimary = \"a:web\"\nclone_ipv4 = \"10.0.0.10-10.0.0.20\"\n[[group]]\nprimary = \"a:db\"\n",
        );
        assert!(
            p.contains("group[1] (a:db).health_check: needs clone_ipv4"),
            "{p}"
        );
        assert!(!p.contains("a:web"), "{p}");
        let lxc = "[proxmox]\nurl = \"https://127.0.0.1:8006\"\ntoken_id = \"a@pve!b\"\ntoken_secret_env = \"X\"\nfingerprint = \"00\"\n\
                   [[lxc]]\nvmid = 101\nmode = \"horizontal\"\nmax_instances = 2\ndrain_period = \"10s\"\n";
        let p = problems(lxc);
        assert!(p.contains("lxc[0] (101).drain_period: readiness checks, drain and lifecycle hooks apply to albatross [[group]]s"), "{p}");
    }
}
