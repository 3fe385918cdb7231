//! Addresses for clones (`clone_ipv4`). A MirageOS unikernel takes a static
//! address from `--ipv4=<addr>/<prefix>` in its arguments; a clone created with the
//! primary's arguments would take the same one. Each clone gets the lowest address
//! of the group's pool that no unikernel at the path uses (what albatross lists is
//! the truth: an address is free again once its clone is destroyed, and nothing can
//! drift after a crash), with the primary's prefix length; other arguments (the
//! gateway among them) stay as they are.

use std::net::Ipv4Addr;

use crate::core::policy::ClonePool;
use crate::wire::NamedUnikernelInfo;

const FLAG: &str = "--ipv4=";

/// Where the address is in `argv`: the index of the argument holding the value
/// (`--ipv4=X/N`, or the one after `--ipv4`, as cmdliner accepts both).
fn position(argv: &[String]) -> Option<(usize, &str)> {
    argv.iter()
        .enumerate()
        .find_map(|(i, a)| match a.strip_prefix(FLAG) {
            Some(v) => Some((i, v)),
            None if a == "--ipv4" => argv.get(i + 1).map(|v| (i + 1, v.as_str())),
            None => None,
        })
}

/// The address and prefix length of `--ipv4` in `argv`, if any.
pub fn static_ipv4(argv: &[String]) -> Option<(Ipv4Addr, u8)> {
    let (_, v) = position(argv)?;
    let (addr, prefix) = v.split_once('/').unwrap_or((v, "32"));
    Some((addr.parse().ok()?, prefix.parse().ok()?))
}

/// The arguments of a clone of a primary started with `argv`, under `pool`, with
/// `running` the path's listing and `creating` the addresses of clones being
/// created. `Err` is why the clone must not be created: a refusal waiting cannot
/// change until a clone leaves or the configuration changes.
pub fn clone_argv(
    argv: &[String],
    pool: Option<&ClonePool>,
    running: &[NamedUnikernelInfo],
    creating: &[Ipv4Addr],
) -> Result<(Vec<String>, Option<Ipv4Addr>), String> {
    let Some((own, prefix)) = static_ipv4(argv) else {
        // DHCP (or no network): nothing to change, whatever the pool says.
        return Ok((argv.to_vec(), None));
    };
    let (pool, first, last) = match pool {
        Some(ClonePool::Keep) => return Ok((argv.to_vec(), None)),
        Some(p @ ClonePool::Range { first, last }) => (p, *first, *last),
        None => {
            return Err(format!(
                "the primary has a static address ({FLAG}{own}/{prefix}) and the group no clone_ipv4: every clone would take the same address; set clone_ipv4 = \"<first>-<last>\" (a pool) or \"keep\""
            ));
        }
    };
    let used: Vec<Ipv4Addr> = running
        .iter()
        .filter_map(|u| static_ipv4(&u.info.argv).map(|(a, _)| a))
        .chain(creating.iter().copied())
        .collect();
    let free = pool.pick(&used).ok_or_else(|| {
        format!("clone_ipv4 pool {first}-{last} exhausted: every address is in use at the path")
    })?;
    let mut out = argv.to_vec();
    if let Some((i, _)) = position(argv) {
        let value = format!("{free}/{prefix}");
        out[i] = if out[i].starts_with(FLAG) {
            format!("{FLAG}{value}")
        } else {
            value
        };
    }
    Ok((out, Some(free)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::name::Name;

    fn running(addrs: &[&str]) -> Vec<NamedUnikernelInfo> {
        let info = crate::wire::UnikernelInfo {
            typ: crate::wire::Typ::Solo5,
            startup: None,
            fail_behaviour: crate::wire::FailBehaviour::Quit,
            cpuids: vec![0],
            memory: 64,
            digest: Vec::new(),
            block_devices: Vec::new(),
            bridges: Vec::new(),
            argv: Vec::new(),
            started: None,
            numcpus: None,
            linux_boot_partition: None,
        };
        addrs
            .iter()
            .enumerate()
            .map(|(i, a)| {
                let mut info = info.clone();
                info.argv = vec![format!("--ipv4={a}/24")];
                NamedUnikernelInfo {
                    name: Name::parse(&format!("a:u{i}")).unwrap(),
                    info,
                }
            })
            .collect()
    }

    fn pool(a: &str, b: &str) -> ClonePool {
        ClonePool::Range {
            first: a.parse().unwrap(),
            last: b.parse().unwrap(),
        }
    }

    #[test]
    fn the_lowest_free_address_with_the_primarys_prefix_the_rest_kept() {
        let argv: Vec<String> = [
            "--name=web",
            "--ipv4=10.0.42.2/24",
            "--ipv4-gateway=10.0.42.1",
        ]
        .map(String::from)
        .to_vec();
        let p = pool("10.0.42.10", "10.0.42.12");
        let listed = running(&["10.0.42.2", "10.0.42.10"]);
        let creating = ["10.0.42.11".parse().unwrap()];
        let (got, addr) = clone_argv(&argv, Some(&p), &listed, &creating).unwrap();
        assert_eq!(addr, Some("10.0.42.12".parse().unwrap()));
        assert_eq!(
            got,
            [
                "--name=web",
                "--ipv4=10.0.42.12/24",
                "--ipv4-gateway=10.0.42.1"
            ]
        );
        // All three taken: exhausted, a refusal naming the pool.
        let listed = running(&["10.0.42.10", "10.0.42.11", "10.0.42.12"]);
        let e = clone_argv(&argv, Some(&p), &listed, &[]).unwrap_err();
        assert!(e.contains("10.0.42.10-10.0.42.12 exhausted"), "{e}");
    }

    #[test]
    fn a_static_primary_needs_a_pool_or_keep_and_dhcp_needs_nothing() {
        let argv = vec!["--ipv4=192.168.1.5/16".to_string()];
        let e = clone_argv(&argv, None, &[], &[]).unwrap_err();
        assert!(
            e.contains("clone_ipv4") && e.contains("192.168.1.5/16"),
            "{e}"
        );
        let (kept, _) = clone_argv(&argv, Some(&ClonePool::Keep), &[], &[]).unwrap();
        assert_eq!(kept, argv);
        let dhcp = vec!["--name=web".to_string()];
        assert_eq!(clone_argv(&dhcp, None, &[], &[]).unwrap(), (dhcp, None));
        assert_eq!(
            static_ipv4(&["--ipv4=10.1.2.3/8".into()]),
            Some(("10.1.2.3".parse().unwrap(), 8))
        );
        assert_eq!(static_ipv4(&["--ipv4=garbage".into()]), None);
        // The two-argument form cmdliner accepts too.
        let two: Vec<String> = ["--ipv4", "10.0.42.2/24"].map(String::from).to_vec();
        let (got, _) = clone_argv(&two, Some(&pool("10.0.42.10", "10.0.42.12")), &[], &[]).unwrap();
        assert_eq!(got, ["--ipv4", "10.0.42.10/24"]);
    }
}
