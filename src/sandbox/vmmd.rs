//! albatrossd's side of the endpoint: stored policies and block devices, the
//! resource checks of a create (`src/vmm_resources.ml`), destroy and
//! restart-on-fail (`src/vmm_vmmd.ml`, `src/vmm_core.ml`, `daemon/albatrossd.ml`).
//! Failure texts are albatross' own.

use std::collections::BTreeSet;

use super::endpoint::World;
use super::hosted::Hosted;
use crate::name::Name;
use crate::wire::{
    BlockSpec, FailBehaviour, NamedPolicy, Payload, Policy, Success, UnikernelConfig,
};

/// A block device: size in MB, and whether a unikernel uses it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Block {
    pub size: i64,
    pub active: bool,
}

/// How a unikernel process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Exit {
    Code(i32),
    Signal(i32),
}

/// The path part of `name` as a name (`alice:web` → `alice:`).
fn path_of(name: &Name) -> Name {
    Name::new(name.path.clone(), None)
}

fn below(name: &Name, path: &Name) -> bool {
    name.path.starts_with(&path.path)
}

/// What the TLS endpoint does before every albatrossd command: `policy add` for
/// each intermediate's policy. albatrossd's `insert_policy` checks (fits the parent,
/// covers the children) are not simulated.
pub(super) fn learn_policies(w: &mut World, policies: &[(Name, Policy)]) {
    for (path, p) in policies {
        w.policies.insert(path_of(path), p.clone());
    }
}

/// `policy info` (`handle_policy_cmd`): every policy at or below the path of
/// `name`, named relative to it (the path's own policy as `:`).
pub(super) fn policy_info(w: &World, name: &Name) -> Payload {
    let base = path_of(name);
    let list = w
        .policies
        .iter()
        .filter(|(p, _)| below(p, &base))
        .map(|(p, policy)| NamedPolicy {
            name: Name::new(p.path[base.path.len()..].to_vec(), None),
            policy: policy.clone(),
        })
        .collect();
    Payload::Success(Success::Policies(list))
}

/// `Name.block_name`: the block device lives in the unikernel's path.
fn block_name(name: &Name, spec: &BlockSpec) -> Name {
    let label = spec.device.clone().unwrap_or_else(|| spec.name.clone());
    name.with_label(label)
}

/// `Unikernel.bridges`: the host bridge of each interface.
fn host_bridges(config: &UnikernelConfig) -> impl Iterator<Item = &String> {
    config
        .bridges
        .iter()
        .map(|b| b.host_device.as_ref().unwrap_or(&b.name))
}

/// `Vmm_resources.check_policy`, in albatross' order.
fn check_policy(p: &Policy, running: i64, used: i64, c: &UnikernelConfig) -> Result<(), String> {
    if running + 1 > p.unikernels {
        return Err(format!(
            "maximum amount of unikernels ({}) reached",
            p.unikernels
        ));
    }
    if c.memory > p.memory.saturating_sub(used) {
        return Err(format!(
            "maximum allowed memory ({}, used {used}) would be exceeded (requesting {})",
            p.memory, c.memory
        ));
    }
    let allowed: BTreeSet<i64> = p.cpuids.iter().copied().collect();
    let diff: BTreeSet<i64> = c
        .cpuids
        .iter()
        .copied()
        .filter(|c| !allowed.contains(c))
        .collect();
    if !diff.is_empty() {
        let list: Vec<String> = diff.iter().map(i64::to_string).collect();
        return Err(format!(
            "CPUids {} are not allowed by policy",
            list.join(", ")
        ));
    }
    let disallowed: Vec<&str> = host_bridges(c)
        .filter(|b| !p.bridges.contains(b))
        .map(String::as_str)
        .collect();
    if !disallowed.is_empty() {
        return Err(format!(
            "bridges {} not allowed by policy",
            disallowed.join(", ")
        ));
    }
    Ok(())
}

/// `Vmm_resources.check_unikernel`: the stored policy of the unikernel's path,
/// then its block devices, then the name.
pub(super) fn check_unikernel(w: &World, name: &Name, c: &UnikernelConfig) -> Result<(), String> {
    let path = path_of(name);
    if let Some(p) = w.policies.get(&path) {
        let (mut running, mut used) = (0i64, 0i64);
        for (n, h) in &w.fleet.unikernels {
            if below(n, &path) {
                running += 1;
                used = used.saturating_add(h.config.memory);
            }
        }
        check_policy(p, running, used, c)?;
    }
    for spec in &c.block_devices {
        let b = block_name(name, spec);
        match w.blocks.get(&b) {
            None => return Err(format!("block device {b} not found")),
            Some(Block { active: true, .. }) => {
                return Err(format!("block device {b} already in use"));
            }
            Some(_) => {}
        }
    }
    if w.fleet.unikernels.contains_key(name) {
        return Err("unikernel with same name already exists".to_string());
    }
    Ok(())
}

fn use_blocks(w: &mut World, name: &Name, c: &UnikernelConfig, active: bool) {
    for spec in &c.block_devices {
        let b = block_name(name, spec);
        w.blocks
            .entry(b)
            .or_insert(Block { size: 0, active })
            .active = active;
    }
}

/// Run `h` under `name`, taking its block devices (created if unknown, for
/// unikernels started by hand).
pub(super) fn insert(w: &mut World, name: Name, h: Hosted) {
    use_blocks(w, &name, &h.config, true);
    w.fleet.unikernels.insert(name, h);
}

/// Stop `name` (its process is gone), freeing its block devices.
pub(super) fn remove(w: &mut World, name: &Name) -> Option<Hosted> {
    let h = w.fleet.unikernels.remove(name)?;
    use_blocks(w, name, &h.config, false);
    Some(h)
}

/// `handle_create` (+ `force-create`): the hosted instance is built by the caller.
pub(super) fn create(w: &mut World, name: &Name, h: Hosted, force: bool) -> Payload {
    if !force && w.fleet.unikernels.contains_key(name) {
        return Payload::Failure("Unikernel with same name is already running".to_string());
    }
    if let Some(message) = w.fail_creates.pop_front() {
        return Payload::Failure(message);
    }
    // force-create checks against the resources without the old instance.
    let old = if force { remove(w, name) } else { None };
    if let Err(message) = check_unikernel(w, name, &h.config) {
        if let Some(old) = old {
            insert(w, name.clone(), old);
        }
        return Payload::Failure(message);
    }
    if force {
        w.restarting.remove(name);
    }
    insert(w, name.clone(), h);
    Payload::Success(Success::String("created unikernel".to_string()))
}

/// `Unikernel_destroy` and `stop_create`.
pub(super) fn destroy(w: &mut World, name: &Name) -> Payload {
    let text = if remove(w, name).is_some() {
        "destroyed unikernel"
    } else if w.restarting.remove(name).is_some() {
        "destroyed: removed from restarting"
    } else {
        return Payload::Failure("destroy: not found".to_string());
    };
    Payload::Success(Success::String(text.to_string()))
}

/// `Vmm_core.should_restart`: never after a signal, 1 or 60-64; otherwise the
/// configured exit codes (none = any).
pub(super) fn should_restart(fb: &FailBehaviour, exit: Exit) -> bool {
    let FailBehaviour::Restart { exit_codes } = fb else {
        return false;
    };
    match exit {
        Exit::Signal(_) | Exit::Code(1) | Exit::Code(60..=64) => false,
        Exit::Code(c) => exit_codes.is_empty() || exit_codes.contains(&i64::from(c)),
    }
}

/// `Block_add` / `Vmm_resources.check_block`: limited by the policy's `block`.
pub(super) fn add_block(w: &mut World, name: &Name, size: i64) -> Result<(), String> {
    if w.blocks.contains_key(name) {
        return Err("block device with same name already exists".to_string());
    }
    let path = path_of(name);
    if let Some(p) = w.policies.get(&path) {
        let used: i64 = w
            .blocks
            .iter()
            .filter(|(n, _)| below(n, &path))
            .map(|(_, b)| b.size)
            .sum();
        match p.block {
            None => return Err("no block devices are allowed by policy".to_string()),
            Some(limit) if size > limit - used => {
                return Err(format!(
                    "block device policy limit of {limit} MB (used {used} MB) would be exceeded by the request ({size} MB)"
                ));
            }
            Some(_) => {}
        }
    }
    w.blocks.insert(
        name.clone(),
        Block {
            size,
            active: false,
        },
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_follows_albatross_exit_rules() {
        let any = FailBehaviour::Restart {
            exit_codes: Vec::new(),
        };
        let only_2 = FailBehaviour::Restart {
            exit_codes: vec![2],
        };
        assert!(should_restart(&any, Exit::Code(0)));
        assert!(should_restart(&any, Exit::Code(2)));
        assert!(should_restart(&any, Exit::Code(255)));
        for c in [1, 60, 61, 62, 63, 64] {
            assert!(!should_restart(&any, Exit::Code(c)), "{c}");
        }
        assert!(!should_restart(&any, Exit::Signal(9)));
        assert!(should_restart(&only_2, Exit::Code(2)));
        assert!(!should_restart(&only_2, Exit::Code(0)));
        assert!(!should_restart(&FailBehaviour::Quit, Exit::Code(0)));
    }

    #[test]
    fn policy_messages_are_albatross_own() {
        let p = Policy {
            cpuids: vec![0, 1],
            unikernels: 2,
            memory: 100,
            block: None,
            bridges: vec!["service".to_string()],
        };
        let mut c = crate::sandbox::small_unikernel();
        assert_eq!(check_policy(&p, 1, 0, &c), Ok(()));
        assert_eq!(
            check_policy(&p, 2, 0, &c).unwrap_err(),
            "maximum amount of unikernels (2) reached"
        );
        assert_eq!(
            check_policy(&p, 1, 64, &c).unwrap_err(),
            "maximum allowed memory (100, used 64) would be exceeded (requesting 64)"
        );
        c.cpuids = vec![3, 1, 2, 3];
        assert_eq!(
            check_policy(&p, 0, 0, &c).unwrap_err(),
            "CPUids 2, 3 are not allowed by policy"
        );
        c.cpuids = vec![1];
        c.bridges[0].host_device = None;
        c.bridges[0].name = "public".to_string();
        assert_eq!(
            check_policy(&p, 0, 0, &c).unwrap_err(),
            "bridges public not allowed by policy"
        );
    }
}
