//! Carries out the engine's decisions on albatross: clone = `info` + `get` of the
//! primary, then `create` under the new name; destroy = `destroy` of an owned clone;
//! re-create a dead primary from the configuration and image cached while it ran.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::client::{Client, ClientError};
use crate::core::{Action, Decision};
use crate::daemon::Actuator;
use crate::name::Name;
use crate::wire::{BlockSpec, NetSpec, UnikernelConfig, UnikernelInfo};

/// vCPUs per unikernel, learnt from `info` (stats carry no CPU count).
pub type VcpuMap = Arc<Mutex<HashMap<Name, u32>>>;

/// What is needed to create a primary again, or a clone of it.
#[derive(Clone)]
pub struct PrimarySpec {
    pub info: UnikernelInfo,
    pub image: Arc<Vec<u8>>,
}

/// The albatross actuator: one client per group.
pub struct AlbatrossActuator {
    /// Group → client; replaced as a whole on a configuration reload.
    clients: std::sync::RwLock<HashMap<Name, Client>>,
    specs: Mutex<HashMap<Name, PrimarySpec>>,
    vcpus: VcpuMap,
}

impl AlbatrossActuator {
    /// `clients`: group name → the client of the endpoint that runs it.
    pub fn new(clients: HashMap<Name, Client>, vcpus: VcpuMap) -> Self {
        Self {
            clients: std::sync::RwLock::new(clients),
            specs: Mutex::new(HashMap::new()),
            vcpus,
        }
    }

    /// Use these clients from now on (configuration reload).
    pub fn set_clients(&self, clients: HashMap<Name, Client>) {
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
            .cloned()
            .ok_or_else(|| format!("no albatross endpoint configured for group {group}"))
    }

    /// Fetch and cache the primary's configuration and image, so that it can be
    /// cloned and, if it dies, created again.
    pub async fn snapshot(&self, group: &Name, primary: &Name) -> Result<PrimarySpec, ClientError> {
        let client = self.client(group).map_err(|_| ClientError::OutsidePath {
            endpoint: String::new(),
            name: primary.to_string(),
            path: "(no endpoint)".into(),
        })?;
        let info = client
            .info(Some(primary))
            .await?
            .into_iter()
            .find(|i| i.name == *primary)
            .ok_or_else(|| ClientError::Failure {
                endpoint: client.endpoint().to_string(),
                command: "info",
                name: primary.to_string(),
                message: "not running".into(),
            })?
            .info;
        let image = Arc::new(client.get_image(primary).await?);
        if let Some(n) = info.numcpus.and_then(|n| u32::try_from(n).ok()) {
            lock(&self.vcpus).insert(primary.clone(), n.max(1));
        }
        let spec = PrimarySpec { info, image };
        lock(&self.specs).insert(primary.clone(), spec.clone());
        Ok(spec)
    }

    async fn scale_up(&self, d: &Decision) -> Result<(), String> {
        let client = self.client(&d.group)?;
        let spec = self
            .snapshot(&d.group, &d.primary)
            .await
            .map_err(|e| e.to_string())?;
        let config = clone_config(&d.primary, &spec.info)?;
        client
            .create(&d.instance, config, &spec.image)
            .await
            .map_err(|e| e.to_string())?;
        if let Some(n) = spec.info.numcpus.and_then(|n| u32::try_from(n).ok()) {
            lock(&self.vcpus).insert((*d.instance).clone(), n.max(1));
        }
        Ok(())
    }

    async fn destroy(&self, d: &Decision) -> Result<(), String> {
        let client = self.client(&d.group)?;
        match client.destroy(&d.instance).await {
            // Already gone is what we wanted.
            Ok(_) => Ok(()),
            Err(e) => Err(e.to_string()),
        }
    }

    async fn recreate(&self, d: &Decision) -> Result<(), String> {
        let client = self.client(&d.group)?;
        let spec = lock(&self.specs).get(&d.instance).cloned().ok_or_else(|| {
            format!(
                "no configuration of {} was seen while it ran (the daemon started after it died?); create it by hand",
                d.instance
            )
        })?;
        let config = recreate_config(&spec.info);
        client
            .create(&d.instance, config, &spec.image)
            .await
            .map_err(|e| e.to_string())
    }
}

impl Actuator for AlbatrossActuator {
    async fn execute(&self, d: Decision) -> Result<(), String> {
        match d.action {
            Action::ScaleUp => self.scale_up(&d).await,
            Action::ScaleDown | Action::CloneLost => self.destroy(&d).await,
            Action::ReplacePrimary => self.recreate(&d).await,
            Action::Promote => Ok(()),
        }
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
