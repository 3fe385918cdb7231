//! What `check` concludes from what it read: pure functions over the albatross
//! listing and policy, and the Proxmox permissions and resources, so every rule is
//! tested without a server.

use std::collections::BTreeSet;

use serde::Serialize;
use serde_json::Value;

use crate::config::proxmox::{Lxc, Mode};
use crate::core::policy::ClonePool;
use crate::name::Name;
use crate::proxmox::types::Resource;
use crate::wire::{NamedUnikernelInfo, Policy};

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Ok,
    Warn,
    Fail,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Warn => "warn",
            Self::Fail => "fail",
        }
    }
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub level: Level,
    /// What it is about: `albatross default`, `group alice:web`, `proxmox`, `lxc 101`.
    pub about: String,
    pub message: String,
}

impl Finding {
    pub fn new(level: Level, about: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            level,
            about: about.into(),
            message: message.into(),
        }
    }
}

/// The findings for albatross group `primary` (at most `max_instances`), given the
/// path's `unikernel info` listing and its `policy` (if albatross sent one).
pub fn albatross_group(
    primary: &Name,
    max_instances: u32,
    same_cpu: bool,
    pool: Option<&ClonePool>,
    listing: &[NamedUnikernelInfo],
    policy: Option<&Policy>,
) -> Vec<Finding> {
    let about = format!("group {primary}");
    let mut out = Vec::new();
    let Some(p) = listing.iter().find(|u| u.name == *primary) else {
        out.push(Finding::new(
            Level::Fail,
            &about,
            format!(
                "the primary is not running under this certificate's path ({} unikernel(s) listed)",
                listing.len()
            ),
        ));
        return out;
    };
    let info = &p.info;
    out.push(Finding::new(
        Level::Ok,
        &about,
        format!(
            "primary found: {:?}, {} MB, cpuids {:?}",
            info.typ, info.memory, info.cpuids
        ),
    ));
    if !info.block_devices.is_empty() {
        let names: Vec<&str> = info
            .block_devices
            .iter()
            .map(|b| b.unikernel_device.as_str())
            .collect();
        out.push(Finding::new(
            Level::Fail,
            &about,
            format!(
                "the primary has block devices ({}): albatross refuses a clone that would share them, so this group cannot scale out",
                names.join(", ")
            ),
        ));
    }
    if let Some(arg) = info.argv.iter().find(|a| a.starts_with("--ipv4=")) {
        let clones = u64::from(max_instances.saturating_sub(1));
        out.push(address(&about, arg, pool, clones));
    }
    let clones = i64::from(max_instances.saturating_sub(1));
    let Some(policy) = policy else {
        out.push(Finding::new(
            Level::Warn,
            &about,
            "albatross sent no policy for this path: limits not checked",
        ));
        return out;
    };
    let running = i64::try_from(listing.len()).unwrap_or(i64::MAX);
    let room = (policy.unikernels - running).max(0);
    if room < clones {
        out.push(Finding::new(
            Level::Warn,
            &about,
            format!(
                "albatross policy allows {} unikernel(s) at this path, {running} run: room for {room} clone(s), max_instances {max_instances} asks for {clones}",
                policy.unikernels
            ),
        ));
    }
    let used: i64 = listing.iter().map(|u| u.info.memory).sum();
    let mem_room = if info.memory > 0 {
        (policy.memory - used).max(0) / info.memory
    } else {
        clones
    };
    if mem_room < clones {
        out.push(Finding::new(
            Level::Warn,
            &about,
            format!(
                "albatross policy allows {} MB, {used} used: room for {mem_room} clone(s) of {} MB, max_instances {max_instances} asks for {clones}",
                policy.memory, info.memory
            ),
        ));
    }
    // Clones are pinned to the least used allowed CPU: those not taken add one.
    let taken: BTreeSet<i64> = listing
        .iter()
        .flat_map(|u| u.info.cpuids.iter().copied())
        .collect();
    let free = policy.cpuids.iter().filter(|c| !taken.contains(c)).count();
    let free = i64::try_from(free).unwrap_or(i64::MAX);
    if clones > 0 && same_cpu {
        out.push(Finding::new(
            Level::Warn,
            &about,
            format!(
                "clone_cpus = \"same\": every clone is pinned to the primary's CPUs {:?}, so scaling this group adds no CPU capacity",
                info.cpuids
            ),
        ));
    } else if clones > 0 && policy.cpuids.len() <= 1 {
        out.push(Finding::new(
            Level::Warn,
            &about,
            format!(
                "albatross policy allows CPUs {:?} only: every clone shares the primary's CPU, so scaling this group adds no CPU capacity",
                policy.cpuids
            ),
        ));
    } else if free < clones {
        out.push(Finding::new(
            Level::Warn,
            &about,
            format!(
                "albatross policy allows CPUs {:?}, {} taken: {free} clone(s) get a CPU of their own, max_instances {max_instances} asks for {clones} (the others share one)",
                policy.cpuids,
                taken.len()
            ),
        ));
    } else if clones > 0 {
        out.push(Finding::new(
            Level::Ok,
            &about,
            format!(
                "albatross policy: room for {clones} clone(s), each on a CPU of its own ({free} free of {:?})",
                policy.cpuids
            ),
        ));
    }
    out
}

/// A static address (`what`, e.g. `--ipv4=10.0.42.2/24`) against the group's
/// `clone_ipv4` and its `clones`.
pub fn address(about: &str, what: &str, pool: Option<&ClonePool>, clones: u64) -> Finding {
    match pool {
        None => Finding::new(
            Level::Fail,
            about,
            format!(
                "static address {what} and no clone_ipv4: no clone is made (set clone_ipv4 = \"<first>-<last>\", or \"keep\" for the same address)"
            ),
        ),
        Some(ClonePool::Keep) => Finding::new(
            Level::Warn,
            about,
            format!(
                "static address {what}: clone_ipv4 = \"keep\" gives every clone the same address"
            ),
        ),
        Some(p @ ClonePool::Range { first, last }) => {
            let n = p.size().unwrap_or(0);
            Finding::new(
                if n < clones { Level::Warn } else { Level::Ok },
                about,
                format!(
                    "static address {what}: clones take addresses of {first}-{last} ({n} for up to {clones} clone(s))"
                ),
            )
        }
    }
}

/// Whether the token holds `privilege` on `path`, from `GET /access/permissions`
/// (path → privilege → propagate): on the path itself, or inherited from an
/// ancestor whose entry propagates.
pub fn has_privilege(perms: &Value, path: &str, privilege: &str) -> bool {
    let Some(map) = perms.as_object() else {
        return false;
    };
    let mut at = path.trim_end_matches('/').to_string();
    let mut exact = true;
    loop {
        let key = if at.is_empty() { "/" } else { at.as_str() };
        if let Some(v) = map.get(key).and_then(|p| p.get(privilege)) {
            let propagates = v.as_u64().is_some_and(|n| n != 0) || v.as_bool() == Some(true);
            if exact || propagates {
                return true;
            }
        }
        if at.is_empty() {
            return false;
        }
        at = match at.rfind('/') {
            Some(i) => at[..i].to_string(),
            None => String::new(),
        };
        exact = false;
    }
}

/// The privileges container `l` needs for what its mode does, each with its path.
pub fn needed(l: &Lxc) -> Vec<(String, &'static str)> {
    let own = format!("/vms/{}", l.vmid);
    let mut out = vec![(own.clone(), "VM.Audit")];
    if l.mode != Mode::Horizontal {
        out.push((own.clone(), "VM.Config.CPU"));
        out.push((own, "VM.Config.Memory"));
    }
    if l.mode.clones() {
        let source = l.clone.source.unwrap_or(l.vmid);
        out.push((format!("/vms/{source}"), "VM.Clone"));
        // New ids are not known in advance: the right on /vms (or the pool) covers them.
        // In a pool, its ACLs cover the clones (and `/access/permissions` lists
        // the pool's path, not /vms).
        let new = match &l.clone.pool {
            Some(p) => format!("/pool/{p}"),
            None => "/vms".to_string(),
        };
        out.push((new.clone(), "VM.Allocate"));
        out.push((new.clone(), "VM.PowerMgmt"));
        out.push((new, "VM.Config.Options"));
        if let Some(s) = &l.clone.storage {
            out.push((format!("/storage/{s}"), "Datastore.AllocateSpace"));
        }
    }
    out
}

/// The findings for container `l`: its privileges and whether the cluster shows it.
pub fn lxc(l: &Lxc, perms: &Value, resources: &[Resource]) -> Vec<Finding> {
    let about = format!("lxc {} ({})", l.vmid, l.name);
    let mut out = Vec::new();
    let row = resources
        .iter()
        .find(|r| r.kind == "lxc" && r.vmid == Some(u64::from(l.vmid)));
    match row {
        None => out.push(Finding::new(
            Level::Fail,
            &about,
            "not in /cluster/resources (no such container, or the token lacks VM.Audit on it)",
        )),
        Some(r) if r.template == Some(1) => out.push(Finding::new(
            Level::Fail,
            &about,
            format!(
                "is a template on {}: scale the containers made from it",
                r.node
            ),
        )),
        Some(r) if !r.running() => out.push(Finding::new(
            Level::Warn,
            &about,
            format!(
                "found on {}, {}: nothing is scaled until it runs",
                r.node,
                r.status.as_deref().unwrap_or("status unknown")
            ),
        )),
        Some(r) => out.push(Finding::new(
            Level::Ok,
            &about,
            format!("running on {}", r.node),
        )),
    }
    if l.mode.clones()
        && let Some(source) = l.clone.source.filter(|s| *s != l.vmid)
        && !resources
            .iter()
            .any(|r| r.kind == "lxc" && r.vmid == Some(u64::from(source)))
    {
        out.push(Finding::new(
            Level::Fail,
            &about,
            format!("clone_source {source} is not in /cluster/resources"),
        ));
    }
    let missing: Vec<String> = needed(l)
        .into_iter()
        .filter(|(path, p)| !has_privilege(perms, path, p))
        .map(|(path, p)| format!("{p} on {path}"))
        .collect();
    if missing.is_empty() {
        out.push(Finding::new(
            Level::Ok,
            &about,
            format!(
                "the token holds every privilege {} scaling needs",
                l.mode.as_str()
            ),
        ));
    } else {
        out.push(Finding::new(
            Level::Fail,
            &about,
            format!(
                "the token lacks {} (for {} scaling)",
                missing.join(", "),
                l.mode.as_str()
            ),
        ));
    }
    out
}

/// The exit code for `findings`: 0 all ok, 1 warnings, 2 failures.
pub fn exit_code(findings: &[Finding]) -> u8 {
    match findings.iter().map(|f| f.level).max() {
        Some(Level::Fail) => 2,
        Some(Level::Warn) => 1,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn privileges_are_inherited_only_when_they_propagate() {
        let perms = json!({
            "/": {"Sys.Audit": 0},
            "/vms": {"VM.Audit": 1, "VM.Config.CPU": 0},
            "/vms/101": {"VM.Config.Memory": 0},
        });
        assert!(has_privilege(&perms, "/vms/101", "VM.Audit"));
        assert!(has_privilege(&perms, "/vms/101", "VM.Config.Memory"));
        assert!(!has_privilege(&perms, "/vms/102", "VM.Config.Memory"));
        // On /vms itself, not below it.
        assert!(has_privilege(&perms, "/vms", "VM.Config.CPU"));
        assert!(!has_privilege(&perms, "/vms/101", "VM.Config.CPU"));
        assert!(!has_privilege(&perms, "/vms/101", "Sys.Audit"));
        assert!(!has_privilege(&json!([]), "/vms", "VM.Audit"));
    }

    #[test]
    fn the_worst_finding_sets_the_exit_code() {
        let f = |l| Finding::new(l, "x", "y");
        assert_eq!(exit_code(&[]), 0);
        assert_eq!(exit_code(&[f(Level::Ok)]), 0);
        assert_eq!(exit_code(&[f(Level::Ok), f(Level::Warn)]), 1);
        assert_eq!(exit_code(&[f(Level::Fail), f(Level::Warn)]), 2);
    }
}
