//! Carries out the engine's decisions on albatross: clone = `info` of the path, the
//! policy checked, the primary's image (from the on-disk store, or `get` once per
//! digest), then `create` under the new name; destroy = `destroy` of an owned
//! clone; re-create a dead primary from the configuration seen while it ran and the
//! image stored on disk then.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::address;
use super::client::{Client, ClientError};
use super::policy;
use super::tls::TlsError;
use crate::actuate::{Actuator, Done, Failed};
use crate::core::policy::ClonePool;
use crate::core::{Action, CloneCpus, Decision};
use crate::name::Name;
use crate::state::ImageStore;
use crate::state::images::hex;
use crate::wire::{BlockSpec, NetSpec, Typ, UnikernelConfig, UnikernelInfo};

/// vCPUs per unikernel, learnt from `info` (stats carry no CPU count).
pub type VcpuMap = Arc<Mutex<HashMap<Name, u32>>>;

/// An image to fetch into the store: who to `get` it from, the digest albatross
/// reports (hex, maybe empty) and the primaries that run it.
#[derive(Debug, Clone)]
pub struct ImageFetch {
    /// A reported digest, or the primary's name when albatross reports none.
    pub key: String,
    pub reported: String,
    pub source: Name,
    pub primaries: Vec<Name>,
}

/// The albatross actuator: one client per group.
pub struct AlbatrossActuator {
    /// Group → client (one `Arc` per endpoint); replaced as a whole on a
    /// configuration reload.
    clients: std::sync::RwLock<HashMap<Name, Arc<Client>>>,
    /// Each primary's configurations, newest first: the last one listed, and the
    /// one before if its image differs (a re-create pairs a configuration with the
    /// image stored for it, not a new configuration with an old image).
    specs: Mutex<HashMap<Name, Vec<UnikernelInfo>>>,
    images: Arc<ImageStore>,
    vcpus: VcpuMap,
    /// Clones being created: their CPUs and address (placement counts them).
    creating: Mutex<HashMap<Name, InFlight>>,
    /// Each group's `clone_cpus` and `clone_ipv4`.
    rules: std::sync::RwLock<HashMap<Name, CloneRules>>,
    /// Clones' static addresses (health checks and hooks): from their create,
    /// and from listings after a restart.
    addresses: Mutex<HashMap<Name, std::net::Ipv4Addr>>,
}

/// How a group's clones are placed and addressed.
pub type CloneRules = (CloneCpus, Option<ClonePool>);

/// The rules of a group [`AlbatrossActuator::set_clone_rules`] did not name.
pub const DEFAULT_RULES: CloneRules = (CloneCpus::Spread, None);

/// A clone being created: its CPUs and its address.
type InFlight = (Vec<i64>, Option<std::net::Ipv4Addr>);

impl AlbatrossActuator {
    /// `clients`: group name → the client of the endpoint that runs it.
    /// `images`: where primaries' images are kept for re-creates and clones.
    pub fn new(
        clients: HashMap<Name, Arc<Client>>,
        vcpus: VcpuMap,
        images: Arc<ImageStore>,
    ) -> Self {
        Self {
            clients: std::sync::RwLock::new(clients),
            specs: Mutex::new(HashMap::new()),
            images,
            vcpus,
            creating: Mutex::new(HashMap::new()),
            rules: std::sync::RwLock::default(),
            addresses: Mutex::new(HashMap::new()),
        }
    }

    /// Each group's `clone_cpus` and `clone_ipv4`; set at start and on every
    /// reload. A group not in `rules` has [`DEFAULT_RULES`].
    pub fn set_clone_rules(&self, rules: HashMap<Name, CloneRules>) {
        *self
            .rules
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = rules;
    }

    fn rules_of(&self, group: &Name) -> CloneRules {
        self.rules
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(group)
            .copied()
            .unwrap_or(DEFAULT_RULES)
    }

    /// Use these clients from now on (configuration reload).
    pub fn set_clients(&self, clients: HashMap<Name, Arc<Client>>) {
        *self
            .clients
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = clients;
    }

    fn client(&self, group: &Name) -> Result<Client, String> {
        self.clients
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(group)
            .map(|c| Client::clone(c))
            .ok_or_else(|| format!("no albatross endpoint configured for group {group}"))
    }

    /// Learn the static addresses of `clones` (a listing, primaries left out).
    pub fn learn_addresses<'a>(
        &self,
        clones: impl Iterator<Item = &'a crate::wire::NamedUnikernelInfo>,
    ) {
        let mut a = lock(&self.addresses);
        for u in clones {
            if let Some((ip, _)) = address::static_ipv4(&u.info.argv) {
                a.insert(u.name.clone(), ip);
            }
        }
    }

    /// The image store.
    pub fn images(&self) -> &Arc<ImageStore> {
        &self.images
    }

    /// Remember the primary's configuration (from a listing), so that it can be
    /// created again if it dies. Cheap: no image is fetched here. `Some` when its
    /// image is not stored yet and must be fetched ([`AlbatrossActuator::fetch`]).
    pub fn remember(&self, primary: &Name, info: UnikernelInfo) -> Option<ImageFetch> {
        if let Some(n) = vcpus_of(&info) {
            lock(&self.vcpus).insert(primary.clone(), n);
        }
        let reported = hex(&info.digest);
        {
            let mut specs = lock(&self.specs);
            match specs.get_mut(primary) {
                // Listed as before (every reconcile): nothing to do.
                Some(seen) if seen.first() == Some(&info) => {}
                Some(seen) => {
                    // Exactly as many slots as kept (a `Vec` grows to 4 at once:
                    // 10 000 primaries held three unused configurations each).
                    let before = seen.drain(..).find(|i| i.digest != info.digest);
                    let mut kept = Vec::with_capacity(1 + usize::from(before.is_some()));
                    kept.push(info);
                    kept.extend(before);
                    *seen = kept;
                }
                None => {
                    specs.insert(primary.clone(), vec![info]);
                }
            }
        }
        self.missing_image(primary, &reported, primary)
    }

    /// A dead primary's image when it is not stored (a failed fetch, a corrupt
    /// file): fetched from `source`, a unikernel that runs the same digest.
    pub fn refetch_from(
        &self,
        primary: &Name,
        running: &[crate::wire::NamedUnikernelInfo],
    ) -> Option<ImageFetch> {
        let digest = lock(&self.specs)
            .get(primary)
            .and_then(|s| s.first())
            .map(|i| i.digest.clone())?;
        if digest.is_empty() {
            return None;
        }
        let source = running.iter().find(|u| u.info.digest == digest)?;
        self.missing_image(primary, &hex(&digest), &source.name)
    }

    fn missing_image(&self, primary: &Name, reported: &str, source: &Name) -> Option<ImageFetch> {
        if let Some(d) = self.images.stored_as(reported) {
            self.images.claim(primary, &d);
            return None;
        }
        // Without a reported digest a change cannot be seen: keep what is stored.
        if reported.is_empty() && self.images.claim_of(primary).is_some() {
            return None;
        }
        Some(ImageFetch {
            key: if reported.is_empty() {
                primary.to_string()
            } else {
                reported.to_string()
            },
            reported: reported.to_string(),
            source: source.clone(),
            primaries: vec![primary.clone()],
        })
    }

    /// `get` an image into the store, once per digest: a fetch of the same digest
    /// under way takes `f`'s primaries instead.
    pub async fn fetch(&self, client: &Client, f: ImageFetch) -> Result<(), String> {
        if !self.images.begin_fetch(&f.key, &f.primaries) {
            return Ok(());
        }
        let got = client.get_image(&f.source).await;
        let image = got.as_ref().ok().map(Vec::as_slice);
        let stored = self.images.end_fetch(&f.key, &f.reported, image);
        got.map_err(|e| e.to_string())?;
        stored.map_err(|e| e.to_string())?;
        Ok(())
    }

    /// The primary's image for a clone: from the store, else `get` from the
    /// (running) primary and stored.
    async fn image_of(
        &self,
        client: &Client,
        primary: &Name,
        info: &UnikernelInfo,
    ) -> Result<Vec<u8>, String> {
        if let Some(f) = self.remember(primary, info.clone()) {
            self.fetch(client, f).await?;
        }
        let reported = hex(&info.digest);
        let stored = match reported.as_str() {
            "" => self.images.claim_of(primary),
            r => self.images.stored_as(r),
        };
        // Not stored: another fetch of this digest is under way, or failed.
        if let Some(d) = stored {
            match self.images.load(&d) {
                Ok(image) => return Ok(image),
                Err(e) => tracing::warn!(%primary, error = %e, "fetching the image again"),
            }
        }
        let image = client.get_image(primary).await.map_err(|e| e.to_string())?;
        match self.images.put(&reported, &image) {
            Ok(d) => self.images.claim(primary, &d),
            Err(e) => tracing::warn!(%primary, error = %e, "cannot store the image"),
        }
        Ok(image)
    }

    /// A dead primary's image from the store. Not there (its fetch failed or is
    /// under way) or corrupt: say so, and reconcile so that a unikernel running
    /// the same digest (a clone) serves it again.
    /// The configuration of `primary` that goes with its stored image: the newest
    /// one whose image is the one claimed (an update whose image was not stored
    /// yet is passed over), else the newest.
    fn paired_spec(&self, primary: &Name) -> Option<UnikernelInfo> {
        let specs = lock(&self.specs).get(primary).cloned()?;
        let claimed = self.images.claim_of(primary);
        let paired = specs.iter().find(|i| {
            let r = hex(&i.digest);
            !r.is_empty() && claimed.is_some() && self.images.stored_as(&r) == claimed
        });
        if let (Some(p), Some(newest)) = (paired, specs.first())
            && p.digest != newest.digest
        {
            tracing::warn!(%primary, "its newest image was not stored before it died: re-creating it with the image and configuration it ran before");
        }
        paired.or(specs.first()).cloned()
    }

    fn stored_image(&self, client: &Client, primary: &Name) -> Result<Vec<u8>, Failed> {
        let Some(digest) = self.images.claim_of(primary) else {
            client.request_reconcile();
            return Err(Failed::Transient(format!(
                "the image of {primary} was not stored while it ran (its fetch failed or had not ended); it is fetched again from a unikernel running the same digest, if any"
            )));
        };
        self.images.load(&digest).map_err(|e| {
            client.request_reconcile();
            Failed::Transient(format!("re-creating {primary}: {e}"))
        })
    }

    async fn scale_up(&self, d: &Decision) -> Result<Done, Failed> {
        let client = self.client(&d.group)?;
        // One listing of the path: the primary's configuration and what counts
        // against the policy, checked before any image is fetched.
        let running = client.info(None).await.map_err(|e| e.to_string())?;
        let info = find(&client, &running, &d.primary).map_err(|e| e.to_string())?;
        let mut config = clone_config(&d.primary, &info).map_err(Failed::Permanent)?;
        let (cpus, pool) = self.rules_of(&d.group);
        // Addresses of clones still being created count as taken (pools of groups
        // on one endpoint do not overlap: the config refuses it).
        // Chosen and recorded under one lock: two clones created at once (of
        // two groups) never take the same address or the same free CPU.
        let (placed, creating) = {
            let mut inflight = lock(&self.creating);
            let taken: Vec<std::net::Ipv4Addr> = inflight.values().filter_map(|c| c.1).collect();
            let (argv, addr) = address::clone_argv(&config.argv, pool.as_ref(), &running, &taken)
                .map_err(Failed::Permanent)?;
            config.argv = argv;
            let placed =
                cpus == CloneCpus::Spread && place(&client, &running, &inflight, &mut config);
            inflight.insert((*d.instance).clone(), (config.cpuids.clone(), addr));
            let creating = Creating {
                map: &self.creating,
                name: (*d.instance).clone(),
            };
            (placed, creating)
        };
        if let Some(policy) = client.policy() {
            policy::check_clone(&policy, &running, &config).map_err(Failed::Permanent)?;
        }
        if !placed {
            tracing::info!(group = %d.group, instance = %d.instance, cpuids = ?config.cpuids, "the clone shares the primary's CPU: albatross pins both to it, so it adds no CPU capacity (clone_cpus = \"same\", or the policy allows no other CPU, or it is not known)");
        }
        let image = self.image_of(&client, &d.primary, &info).await?;
        let result = client.create(&d.instance, config, &image).await;
        drop(image);
        if let Err(e) = result {
            return Err(match &e {
                ClientError::Failure { message, .. } if policy::is_permanent_refusal(message) => {
                    // Our copy of the policy was stale: read it again.
                    if let Err(e) = client.read_policy().await {
                        tracing::warn!(endpoint = client.endpoint(), error = %e, "cannot read the policy");
                    }
                    Failed::Permanent(e.to_string())
                }
                ClientError::Tls(TlsError::NoReply { .. }) => Failed::Unknown(e.to_string()),
                _ => Failed::Transient(e.to_string()),
            });
        }
        if let Some(n) = vcpus_of(&info) {
            lock(&self.vcpus).insert((*d.instance).clone(), n);
        }
        if let Some(a) = creating.address() {
            lock(&self.addresses).insert((*d.instance).clone(), a);
        }
        Ok(Done::Executed)
    }

    async fn destroy(&self, d: &Decision) -> Result<Done, Failed> {
        let client = self.client(&d.group)?;
        match client.destroy(&d.instance).await {
            // Already gone is what we wanted.
            Ok(_) => Ok(Done::Executed),
            Err(e) => Err(Failed::Transient(e.to_string())),
        }
    }

    async fn recreate(&self, d: &Decision) -> Result<Done, Failed> {
        let client = self.client(&d.group)?;
        let info = self.paired_spec(&d.instance).ok_or_else(|| {
            format!(
                "no configuration of {} was seen while it ran (the daemon started after it died?); create it by hand",
                d.instance
            )
        })?;
        let image = match self.stored_image(&client, &d.instance) {
            Ok(image) => image,
            // No image to create it with: if it is listed it did not die (its
            // stats went silent), which albatross' `already running` would say.
            Err(e) => {
                let listed = client.info(Some(&d.instance)).await;
                if listed.is_ok_and(|l| l.iter().any(|u| u.name == *d.instance)) {
                    client.request_resync();
                    return Ok(Done::AlreadyRunning);
                }
                return Err(e);
            }
        };
        let config = recreate_config(&info);
        match client.create(&d.instance, config, &image).await {
            Ok(()) => Ok(Done::Executed),
            // It runs: its stats went silent, it did not die (albatrossd restarted
            // and restored it). Resubscribe instead of retrying forever.
            Err(ClientError::Failure { message, .. }) if policy::is_already_running(&message) => {
                client.request_resync();
                Ok(Done::AlreadyRunning)
            }
            Err(e) => Err(Failed::Transient(e.to_string())),
        }
    }
}

/// Pin the clone to the least used CPU the policy allows (counted over the path's
/// unikernels and the clones being created), as mollymawk does: albatross runs
/// every unikernel under `taskset -c <cpuids>`, so a clone on the primary's CPU
/// shares it and adds nothing. `false` if it stays on the primary's CPU.
fn place(
    client: &Client,
    running: &[crate::wire::NamedUnikernelInfo],
    creating: &HashMap<Name, InFlight>,
    config: &mut UnikernelConfig,
) -> bool {
    let Some(policy) = client.policy().filter(|p| !p.cpuids.is_empty()) else {
        return false;
    };
    let mut load: HashMap<i64, usize> = policy.cpuids.iter().map(|&c| (c, 0)).collect();
    let used = running
        .iter()
        .flat_map(|u| u.info.cpuids.iter())
        .chain(creating.values().flat_map(|c| c.0.iter()));
    for c in used {
        if let Some(n) = load.get_mut(c) {
            *n += 1;
        }
    }
    // Least used first; ties to the lowest id (stable placement).
    let Some(best) = policy.cpuids.iter().min_by_key(|c| (load[c], **c)).copied() else {
        return false;
    };
    let same = config.cpuids == [best];
    config.cpuids = vec![best];
    !same || load[&best] == 0
}

/// A clone being created (its CPUs and address counted by [`place`] and the
/// address choice) until the create ends: dropping it forgets the entry.
struct Creating<'a> {
    map: &'a Mutex<HashMap<Name, InFlight>>,
    name: Name,
}

impl Creating<'_> {
    /// The address the clone is created with, if any.
    fn address(&self) -> Option<std::net::Ipv4Addr> {
        lock(self.map).get(&self.name).and_then(|c| c.1)
    }
}

impl Drop for Creating<'_> {
    fn drop(&mut self) {
        lock(self.map).remove(&self.name);
    }
}

/// The entry of `name` in a listing.
fn find(
    client: &Client,
    list: &[crate::wire::NamedUnikernelInfo],
    name: &Name,
) -> Result<UnikernelInfo, ClientError> {
    list.iter()
        .find(|i| i.name == *name)
        .map(|i| i.info.clone())
        .ok_or_else(|| ClientError::Failure {
            endpoint: client.endpoint().to_string(),
            command: "info",
            name: name.to_string(),
            message: "not running".into(),
        })
}

impl Actuator for AlbatrossActuator {
    async fn execute(&self, d: Decision) -> Result<Done, Failed> {
        match d.action {
            Action::ScaleUp => self.scale_up(&d).await,
            // The address stays known for `on_removed` (forgotten after it).
            Action::ScaleDown | Action::CloneLost => self.destroy(&d).await,
            Action::ReplacePrimary => self.recreate(&d).await,
            Action::Promote => Ok(Done::Executed),
        }
    }

    fn outcome_unknown(&self, d: &Decision) {
        if let Ok(c) = self.client(&d.group) {
            c.request_reconcile();
        }
    }

    fn address(&self, vm: &Name) -> Option<std::net::IpAddr> {
        lock(&self.addresses).get(vm).map(|&a| a.into())
    }

    fn forget_address(&self, vm: &Name) {
        lock(&self.addresses).remove(vm);
    }
}

/// The vCPUs a unikernel really gets, to normalise its CPU time by: a solo5
/// unikernel runs one vCPU whatever `numcpus` says (only bhyve uses it); `None`
/// when `info` does not say.
pub fn vcpus_of(info: &UnikernelInfo) -> Option<u32> {
    match info.typ {
        Typ::Solo5 => Some(1),
        Typ::Bhyve => info
            .numcpus
            .and_then(|n| u32::try_from(n).ok())
            .map(|n| n.max(1)),
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding these maps leaves plain data; keep going.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The configuration of a clone of `primary`, as mollymawk builds it: same type,
/// resources, restart behaviour and arguments; a fresh MAC per interface (albatross
/// derives one from the new name); no block devices.
pub fn clone_config(primary: &Name, info: &UnikernelInfo) -> Result<UnikernelConfig, String> {
    if !info.block_devices.is_empty() {
        let names: Vec<&str> = info
            .block_devices
            .iter()
            .map(|b| b.host_device.as_str())
            .collect();
        return Err(format!(
            "refusing to clone {primary}: it has block devices ({}); a block device can be attached to one unikernel only",
            names.join(", ")
        ));
    }
    Ok(config_from_info(info, false))
}

/// The configuration to create a dead primary again: everything as it ran,
/// including its block devices (freed when it died) and its MACs (its identity).
pub fn recreate_config(info: &UnikernelInfo) -> UnikernelConfig {
    config_from_info(info, true)
}

/// A create configuration from what `info` reports; `same_identity` keeps block
/// devices and MACs (re-creating the same unikernel) instead of dropping them (a clone).
fn config_from_info(info: &UnikernelInfo, same_identity: bool) -> UnikernelConfig {
    UnikernelConfig {
        typ: info.typ,
        compressed: true,
        image: Vec::new(),
        startup: info.startup,
        // albatross puts `--name=<label>` first in argv, so each clone reports and
        // logs under its own name.
        add_name: true,
        fail_behaviour: info.fail_behaviour.clone(),
        cpuids: info.cpuids.clone(),
        memory: info.memory,
        block_devices: if same_identity {
            info.block_devices
                .iter()
                .map(|b| BlockSpec {
                    name: b.unikernel_device.clone(),
                    device: Some(b.host_device.clone()),
                    sector_size: Some(b.sector_size),
                })
                .collect()
        } else {
            Vec::new()
        },
        bridges: info
            .bridges
            .iter()
            .map(|b| NetSpec {
                name: b.unikernel_device.clone(),
                host_device: Some(b.host_device.clone()),
                mac: same_identity.then_some(b.mac),
            })
            .collect(),
        // A `--name=` copied from the primary would make the clone claim the
        // primary's name, next to the one albatross adds (mollymawk review, PR #254).
        argv: info
            .argv
            .iter()
            .filter(|a| !a.starts_with("--name="))
            .cloned()
            .collect(),
        numcpus: info.numcpus,
        linux_boot_partition: info.linux_boot_partition.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::{Hosted, small_unikernel};

    fn info(typ: Typ, numcpus: Option<i64>) -> UnikernelInfo {
        let name = Name::parse("alice:web").unwrap();
        let mut config = small_unikernel();
        config.typ = typ;
        config.numcpus = numcpus;
        let h = Hosted {
            group: name.clone(),
            config,
            digest: Vec::new(),
            serving_from: std::time::Duration::ZERO,
            started: None,
            cpu_us: 0.0,
            packets: 0.0,
        };
        h.info(name.clone(), &name).info
    }

    /// albatross-real.md point 4: dividing a solo5 unikernel's CPU time by
    /// `numcpus = 2` showed a busy core as 24 %.
    #[test]
    fn solo5_gets_one_vcpu_whatever_numcpus_says() {
        assert_eq!(vcpus_of(&info(Typ::Solo5, Some(2))), Some(1));
        assert_eq!(vcpus_of(&info(Typ::Solo5, None)), Some(1));
        assert_eq!(vcpus_of(&info(Typ::Bhyve, Some(2))), Some(2));
        assert_eq!(vcpus_of(&info(Typ::Bhyve, Some(0))), Some(1));
        assert_eq!(vcpus_of(&info(Typ::Bhyve, None)), None);
    }

    /// An image update seen while the primary ran, whose new image was not
    /// stored before it died: the re-create pairs the configuration it ran before
    /// with the image stored for it, never the new configuration with the old image.
    #[test]
    fn a_re_create_pairs_a_configuration_with_its_own_image() {
        let dir = std::env::temp_dir().join(format!("aa-pair-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let images = ImageStore::open(&dir).unwrap();
        let a = AlbatrossActuator::new(HashMap::new(), VcpuMap::default(), Arc::new(images));
        let p = Name::parse("alice:web").unwrap();
        let mut old = info(Typ::Solo5, None);
        old.digest = vec![0xaa; 32];
        old.memory = 64;
        let mut new = old.clone();
        new.digest = vec![0xbb; 32];
        new.memory = 128;
        a.remember(&p, old.clone());
        let d = a.images().put(&hex(&old.digest), b"old image").unwrap();
        a.images().claim(&p, &d);
        assert_eq!(a.paired_spec(&p).unwrap().memory, 64);
        // The update is listed; its image is not stored yet.
        assert!(a.remember(&p, new.clone()).is_some(), "a fetch is due");
        assert_eq!(
            a.paired_spec(&p).unwrap().memory,
            64,
            "old config, old image"
        );
        // Once stored and claimed, the new pair is used.
        let d = a.images().put(&hex(&new.digest), b"new image").unwrap();
        a.images().claim(&p, &d);
        assert_eq!(a.paired_spec(&p).unwrap().memory, 128);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
