//! Simulated unikernels: each has CPU counters that a group-wide load function
//! advances. The demand of a group (in vCPUs) is spread evenly over its instances
//! that have finished booting; each takes at most its own vCPU count. Then the host
//! CPUs limit it: albatross runs each unikernel under `taskset -c <cpuids>`, and a
//! host CPU gives at most one CPU-second per second (see [`share_cpus`]). Demand
//! that nothing can take is lost, as on an overloaded host.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use crate::name::Name;
use crate::wire::{
    BlockInfo, FailBehaviour, IfData, KinfoMem, Mac, NamedUnikernelInfo, NetInfo, NetSpec, Rusage,
    StatsData, Time, Timeval, Typ, UnikernelConfig, UnikernelInfo,
};

/// A small Solo5 unikernel with one network interface (`service`) and one vCPU:
/// the primary of the demo and of the tests.
pub fn small_unikernel() -> UnikernelConfig {
    UnikernelConfig {
        typ: Typ::Solo5,
        compressed: false,
        image: b"\x7fELF demo unikernel image".repeat(64),
        startup: None,
        add_name: true,
        fail_behaviour: FailBehaviour::Quit,
        cpuids: vec![0],
        memory: 64,
        block_devices: Vec::new(),
        bridges: vec![NetSpec {
            name: "service".into(),
            host_device: Some("service".into()),
            mac: None,
        }],
        argv: vec!["--ipv4=10.0.42.2/24".into()],
        numcpus: Some(1),
        linux_boot_partition: None,
    }
}

/// Demand of a group, in vCPUs, at time `t` since the endpoint started. The group is
/// named by its primary (`alice:web`).
pub type LoadFn = Arc<dyn Fn(&str, Duration) -> f64 + Send + Sync>;

/// The group of an instance: its primary's name.
pub type GroupFn = Arc<dyn Fn(&Name) -> Name + Send + Sync>;

/// The default grouping: `<primary>-clone-<n>` belongs to `<primary>`, anything else
/// is its own group (the clone naming of mollymawk and the engine's default).
pub fn default_group(name: &Name) -> Name {
    let Some(label) = &name.label else {
        return name.clone();
    };
    if let Some((primary, n)) = label.rsplit_once("-clone-")
        && !primary.is_empty()
        && !n.is_empty()
        && n.bytes().all(|b| b.is_ascii_digit())
    {
        return name.with_label(primary.to_string());
    }
    name.clone()
}

/// One running (simulated) unikernel.
#[derive(Debug, Clone)]
pub struct Hosted {
    pub group: Name,
    /// As created, including the image (uncompressed or zlib per `compressed`).
    pub config: UnikernelConfig,
    /// SHA-256 of the uncompressed image (what `info` reports).
    pub digest: Vec<u8>,
    /// Endpoint time from which it takes load (creation + boot delay).
    pub serving_from: Duration,
    pub started: Option<Time>,
    /// Accumulated CPU time, µs (fractional to avoid drift at small ticks).
    pub cpu_us: f64,
    /// Packets the unikernel received (grows with the CPU it used).
    pub packets: f64,
}

impl Hosted {
    /// vCPUs this instance can use: a solo5 tender gives one whatever `numcpus`
    /// says; only bhyve uses `numcpus`.
    pub fn vcpus(&self) -> f64 {
        match self.config.typ {
            Typ::Solo5 => 1.0,
            _ => self.config.numcpus.unwrap_or(1).max(1) as f64,
        }
    }

    /// The statistics sample albatross would send now.
    pub fn stats(&self) -> StatsData {
        let cpu = self.cpu_us.max(0.0) as i64;
        // albatross reports utime and stime separately; a unikernel spends most of
        // its time in the guest (user) part.
        let stime = cpu / 10;
        let utime = cpu - stime;
        let tv = |us: i64| Timeval {
            sec: us / 1_000_000,
            usec: us % 1_000_000,
        };
        // Saturating: memory comes from a client's create request.
        let pages = self.config.memory.max(1).saturating_mul(256);
        let packets = self.packets as i64;
        StatsData {
            rusage: Rusage {
                utime: tv(utime),
                stime: tv(stime),
                maxrss: pages.saturating_mul(4),
                minflt: pages,
                nvcsw: packets,
                nivcsw: cpu / 10_000,
                ..Rusage::default()
            },
            ifdata: self
                .config
                .bridges
                .iter()
                .map(|b| IfData {
                    bridge: b.name.clone(),
                    flags: 0x11043,
                    mtu: 1500,
                    input_packets: packets,
                    input_bytes: packets.saturating_mul(800),
                    output_packets: packets,
                    output_bytes: packets.saturating_mul(200),
                    ..IfData::default()
                })
                .collect(),
            vmm: None,
            kinfo_mem: Some(KinfoMem {
                vsize: self.config.memory.saturating_mul(1024 * 1024),
                rss: pages,
                runtime: cpu,
                start: Timeval {
                    sec: self.started.map_or(0, |t| t.unix_seconds()),
                    usec: 0,
                },
                ..KinfoMem::default()
            }),
        }
    }

    /// The `info` entry for this instance.
    pub fn info(&self, name: Name, full: &Name) -> NamedUnikernelInfo {
        let c = &self.config;
        NamedUnikernelInfo {
            name,
            info: UnikernelInfo {
                typ: c.typ,
                startup: c.startup,
                fail_behaviour: c.fail_behaviour.clone(),
                cpuids: c.cpuids.clone(),
                memory: c.memory,
                digest: self.digest.clone(),
                block_devices: c
                    .block_devices
                    .iter()
                    .map(|b| BlockInfo {
                        unikernel_device: b.name.clone(),
                        host_device: b.device.clone().unwrap_or_else(|| b.name.clone()),
                        sector_size: b.sector_size.unwrap_or(512),
                        size: 0,
                    })
                    .collect(),
                bridges: c
                    .bridges
                    .iter()
                    .map(|b| NetInfo {
                        unikernel_device: b.name.clone(),
                        host_device: b.host_device.clone().unwrap_or_else(|| b.name.clone()),
                        mac: b.mac.unwrap_or_else(|| derived_mac(&b.name, full)),
                    })
                    .collect(),
                argv: c.argv.clone(),
                started: self.started,
                numcpus: c.numcpus,
                linux_boot_partition: c.linux_boot_partition.clone(),
            },
        }
    }
}

/// albatross derives a MAC from the interface and unikernel names (MD5 there; any
/// stable hash is fine for a simulation): `00:80:41` + 3 bytes.
fn derived_mac(netif: &str, name: &Name) -> Mac {
    let mut h: u32 = 0x811c_9dc5;
    for b in netif.bytes().chain(name.to_string().bytes()) {
        h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    let [_, a, b, c] = h.to_be_bytes();
    Mac([0x00, 0x80, 0x41, a, b, c])
}

/// All hosted unikernels, by full name.
#[derive(Default)]
pub struct Fleet {
    pub unikernels: BTreeMap<Name, Hosted>,
    /// Endpoint time the counters were last advanced to.
    pub advanced_to: Duration,
    /// Whether host CPUs limit instances by their cpuids ([`share_cpus`]).
    pub pin_cpus: bool,
}

impl Fleet {
    /// Advance every counter from `advanced_to` to `t`, split where an instance
    /// finishes booting so the share changes at the right moment.
    pub fn advance(&mut self, t: Duration, load: &LoadFn) {
        while self.advanced_to < t {
            let from = self.advanced_to;
            let to = self
                .unikernels
                .values()
                .map(|h| h.serving_from)
                .filter(|&s| s > from && s < t)
                .min()
                .unwrap_or(t);
            self.advance_segment(from, to, load);
            self.advanced_to = to;
        }
    }

    /// Over `[from, to)` the set of serving instances is fixed; the demand is the
    /// one at `to`.
    fn advance_segment(&mut self, from: Duration, to: Duration, load: &LoadFn) {
        let mut serving: BTreeMap<Name, Vec<Name>> = BTreeMap::new();
        for (name, h) in &self.unikernels {
            if h.serving_from <= from {
                serving
                    .entry(h.group.clone())
                    .or_default()
                    .push(name.clone());
            }
        }
        let dt_us = (to - from).as_secs_f64() * 1e6;
        let mut wants: Vec<(Name, f64)> = Vec::new();
        for (group, members) in serving {
            let demand = load(&group.to_string(), to);
            let demand = if demand.is_finite() {
                demand.max(0.0)
            } else {
                0.0
            };
            let share = demand / members.len() as f64;
            for m in members {
                if let Some(h) = self.unikernels.get(&m) {
                    wants.push((m, share.min(h.vcpus())));
                }
            }
        }
        let pinned: Vec<(BTreeSet<i64>, f64)> = wants
            .iter()
            .map(|(m, want)| {
                let cpus = self.unikernels[m].config.cpuids.iter().copied().collect();
                (cpus, *want)
            })
            .collect();
        let granted = if self.pin_cpus {
            share_cpus(&pinned)
        } else {
            pinned.iter().map(|(_, want)| *want).collect()
        };
        for ((m, _), got) in wants.iter().zip(granted) {
            if let Some(h) = self.unikernels.get_mut(m) {
                let used = got * dt_us;
                h.cpu_us += used;
                h.packets += used / 1000.0;
            }
        }
    }

    /// Unikernels a subscriber named `sub` sees, with names relative to its path
    /// (§4.2): a name with a label sees exactly that unikernel; a path sees every
    /// unikernel at or below it.
    pub fn in_scope<'a>(&'a self, sub: &'a Name) -> impl Iterator<Item = (Name, &'a Hosted)> + 'a {
        self.unikernels.iter().filter_map(move |(name, h)| {
            let rel = relative(name, sub)?;
            Some((rel, h))
        })
    }
}

/// What each instance gets of the host CPUs it is pinned to, given what it wants
/// (in CPUs). Each host CPU gives at most 1.0:
/// - instances pinned to one CPU split it in proportion to their demand (two
///   wanting 0.95 get 0.5 each; albatross measured 0.47 and 0.45, the rest being
///   host overhead);
/// - an instance allowed several CPUs then takes what those left free, from the
///   freest CPU on (a simple stand-in for the host scheduler moving it);
/// - an instance without cpuids is not limited.
pub fn share_cpus(wants: &[(BTreeSet<i64>, f64)]) -> Vec<f64> {
    let mut load: BTreeMap<i64, f64> = BTreeMap::new();
    for (cpus, want) in wants {
        if cpus.len() == 1 {
            *load.entry(*cpus.first().unwrap_or(&0)).or_default() += want;
        }
    }
    let mut free: BTreeMap<i64, f64> = load.iter().map(|(c, l)| (*c, (1.0 - l).max(0.0))).collect();
    wants
        .iter()
        .map(|(cpus, want)| match cpus.len() {
            0 => *want,
            1 => {
                let l = cpus
                    .first()
                    .and_then(|c| load.get(c))
                    .copied()
                    .unwrap_or(0.0);
                if l > 1.0 { want / l } else { *want }
            }
            _ => {
                let mut order: Vec<i64> = cpus.iter().copied().collect();
                let free_of = |f: &BTreeMap<i64, f64>, c: &i64| f.get(c).copied().unwrap_or(1.0);
                order.sort_by(|a, b| free_of(&free, b).total_cmp(&free_of(&free, a)));
                let mut left = *want;
                for c in order {
                    let f = free.entry(c).or_insert(1.0);
                    let take = left.min(*f);
                    *f -= take;
                    left -= take;
                }
                want - left
            }
        })
        .collect()
}

/// `name` relative to `base`'s path if `base` covers it.
pub fn relative(name: &Name, base: &Name) -> Option<Name> {
    if base.label.is_some() {
        return (name == base).then(|| Name::new(Vec::new(), name.label.clone()));
    }
    let rest = name.path.strip_prefix(base.path.as_slice())?;
    Some(Name::new(rest.to_vec(), name.label.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_belong_to_their_primary() {
        let g = |s: &str| default_group(&Name::parse(s).unwrap()).to_string();
        assert_eq!(g("alice:web-clone-3"), "alice:web");
        assert_eq!(g("alice:web"), "alice:web");
        assert_eq!(g("alice:web-clone-"), "alice:web-clone-");
        assert_eq!(g(":x-clone-9"), ":x");
    }

    #[test]
    fn pinned_instances_share_their_cpu() {
        let on = |cpus: &[i64], want: f64| (cpus.iter().copied().collect(), want);
        let got = share_cpus(&[on(&[0], 0.95), on(&[0], 0.95), on(&[1], 0.95)]);
        assert_eq!(got, [0.5, 0.5, 0.95]);
        // Several cpuids: what the pinned ones leave, freest CPU first.
        let got = share_cpus(&[on(&[0], 0.8), on(&[0, 1], 0.9), on(&[0, 1], 0.5)]);
        assert_eq!(got[0], 0.8);
        assert!(
            (got[1] - 0.9).abs() < 1e-9 && (got[2] - 0.3).abs() < 1e-9,
            "{got:?}"
        );
        assert_eq!(share_cpus(&[on(&[], 3.0)]), [3.0]);
    }

    #[test]
    fn solo5_has_one_vcpu_whatever_numcpus_says() {
        let mut c = small_unikernel();
        c.numcpus = Some(4);
        let mut h = Hosted {
            group: Name::parse("a:b").unwrap(),
            config: c,
            digest: Vec::new(),
            serving_from: Duration::ZERO,
            started: None,
            cpu_us: 0.0,
            packets: 0.0,
        };
        assert_eq!(h.vcpus(), 1.0);
        h.config.typ = Typ::Bhyve;
        assert_eq!(h.vcpus(), 4.0);
    }

    #[test]
    fn names_are_relative_to_the_subscriber_path() {
        let n = |s: &str| Name::parse(s).unwrap();
        assert_eq!(
            relative(&n("user:vm1"), &n(":")).unwrap().to_string(),
            "user:vm1"
        );
        assert_eq!(
            relative(&n("user:vm1"), &n("user:")).unwrap().to_string(),
            ":vm1"
        );
        assert_eq!(
            relative(&n("user:vm1"), &n("user:vm1"))
                .unwrap()
                .to_string(),
            ":vm1"
        );
        assert_eq!(
            relative(&n("a:b:vm2"), &n("a:")).unwrap().to_string(),
            "b:vm2"
        );
        assert_eq!(relative(&n("a:vm2"), &n("b:")), None);
        assert_eq!(relative(&n("a:vm2"), &n("a:vm3")), None);
    }
}
