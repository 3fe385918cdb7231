//! albatross' resource policy, checked before a clone is created: the same rules
//! as albatrossd's `check_policy` (src/vmm_resources.ml), so a refusal that waiting
//! cannot change is known before the image is fetched, and named in plain words.

use crate::wire::{NamedUnikernelInfo, Policy, UnikernelConfig};

/// Why `config` cannot be created as a clone under the path whose `policy` is
/// given, with `running` the `unikernel info` listing of that path (the whole
/// subtree, as albatross counts it). The text is the why-not.
pub fn check_clone(
    policy: &Policy,
    running: &[NamedUnikernelInfo],
    config: &UnikernelConfig,
) -> Result<(), String> {
    let used: i64 = running.iter().map(|u| u.info.memory).sum();
    let count = i64::try_from(running.len()).unwrap_or(i64::MAX);
    if count.saturating_add(1) > policy.unikernels {
        return Err(format!(
            "albatross policy: maximum amount of unikernels {} reached, a clone needs one more",
            policy.unikernels
        ));
    }
    if config.memory > policy.memory.saturating_sub(used) {
        return Err(format!(
            "albatross policy: maximum allowed memory {} MB, used {used}, a clone needs {}",
            policy.memory, config.memory
        ));
    }
    let cpus: Vec<String> = config
        .cpuids
        .iter()
        .filter(|c| !policy.cpuids.contains(c))
        .map(i64::to_string)
        .collect();
    if !cpus.is_empty() {
        return Err(format!(
            "albatross policy: CPUids {} are not allowed by policy",
            cpus.join(", ")
        ));
    }
    let bridges: Vec<&str> = config
        .bridges
        .iter()
        .filter_map(|b| b.host_device.as_deref().or(Some(b.name.as_str())))
        .filter(|b| !policy.bridges.iter().any(|p| p == b))
        .collect();
    if !bridges.is_empty() {
        return Err(format!(
            "albatross policy: bridges {} not allowed by policy",
            bridges.join(", ")
        ));
    }
    Ok(())
}

/// Whether albatross' failure text of a create is a refusal that waiting cannot
/// change (its policy checks and block devices), as opposed to a transient failure.
pub fn is_permanent_refusal(message: &str) -> bool {
    const PERMANENT: [&str; 4] = [
        "maximum amount of unikernels",
        "maximum allowed memory",
        "not allowed by policy",
        "block device",
    ];
    PERMANENT.iter().any(|p| message.contains(p))
}

/// Whether a create failed because the name is taken (albatross 2.7,
/// src/vmm_vmmd.ml l.202; "unikernel with same name already exists" from the
/// resource check).
pub fn is_already_running(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("same name is already running") || m.contains("same name already exists")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::name::Name;
    use crate::sandbox::small_unikernel;
    use crate::wire::UnikernelInfo;

    fn listing(n: usize, memory: i64) -> Vec<NamedUnikernelInfo> {
        let c = small_unikernel();
        (0..n)
            .map(|i| NamedUnikernelInfo {
                name: Name::parse(&format!("alice:u{i}")).unwrap(),
                info: UnikernelInfo {
                    typ: c.typ,
                    startup: None,
                    fail_behaviour: c.fail_behaviour.clone(),
                    cpuids: c.cpuids.clone(),
                    memory,
                    digest: Vec::new(),
                    block_devices: Vec::new(),
                    bridges: Vec::new(),
                    argv: Vec::new(),
                    started: None,
                    numcpus: None,
                    linux_boot_partition: None,
                },
            })
            .collect()
    }

    fn policy() -> Policy {
        Policy {
            cpuids: vec![0, 1],
            unikernels: 4,
            memory: 100,
            block: None,
            bridges: vec!["service".into()],
        }
    }

    #[test]
    fn names_the_limit_as_albatross_checks_it() {
        let c = small_unikernel(); // 64 MB, cpu 0, bridge service
        assert_eq!(check_clone(&policy(), &listing(1, 30), &c), Ok(()));
        assert_eq!(
            check_clone(&policy(), &listing(1, 64), &c).unwrap_err(),
            "albatross policy: maximum allowed memory 100 MB, used 64, a clone needs 64"
        );
        let one = Policy {
            unikernels: 1,
            ..policy()
        };
        assert!(
            check_clone(&one, &listing(1, 1), &c)
                .unwrap_err()
                .contains("maximum amount of unikernels 1 reached")
        );
        let cpu = Policy {
            cpuids: vec![1],
            ..policy()
        };
        assert_eq!(
            check_clone(&cpu, &listing(0, 0), &c).unwrap_err(),
            "albatross policy: CPUids 0 are not allowed by policy"
        );
        let br = Policy {
            bridges: vec!["other".into()],
            ..policy()
        };
        assert!(
            check_clone(&br, &listing(0, 0), &c)
                .unwrap_err()
                .contains("bridges service not allowed")
        );
    }

    #[test]
    fn albatross_refusals_are_told_apart() {
        assert!(is_permanent_refusal(
            "maximum allowed memory (100, used 64) would be exceeded (requesting 64)"
        ));
        assert!(is_permanent_refusal(
            "maximum amount of unikernels (1) reached"
        ));
        assert!(is_permanent_refusal("CPUids 3 are not allowed by policy"));
        assert!(!is_permanent_refusal("couldn't reach service"));
        assert!(is_already_running(
            "Unikernel with same name is already running"
        ));
        assert!(!is_already_running("destroy: not found"));
    }
}
