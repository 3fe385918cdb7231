//! Carrying out decisions through the API: live resizes with digest-checked retries,
//! and clone/start, shutdown/destroy with task (UPID) polling.

use super::address;
use crate::core::policy::ClonePool;
use std::sync::Mutex;
use std::time::Duration;

use reqwest::Method;

use super::client::{Client, ProxmoxError};
use super::state::CloneState;
use super::types::LxcConfig;
use crate::config::proxmox::CloneSpec;
use crate::core::vertical::{Resize, Size};

/// How many times a resize re-reads the config after a digest conflict.
pub const DIGEST_ATTEMPTS: u32 = 3;

/// Task polling settings.
#[derive(Debug, Clone, Copy)]
pub struct Tasks {
    pub timeout: Duration,
    pub every: Duration,
}

/// `cpulimit` hundredths as Proxmox writes it.
pub fn cpulimit_str(centi: u32) -> String {
    format!("{}.{:02}", centi / 100, centi % 100)
}

fn size_of(c: &LxcConfig) -> Size {
    Size {
        cores: c.cores.map_or(0, |v| u32::try_from(v).unwrap_or(u32::MAX)),
        cpulimit_centi: c.cpulimit.map_or(0, |v| (v * 100.0).round() as u32),
        memory_mib: c
            .memory
            .map_or(512, |v| u32::try_from(v).unwrap_or(u32::MAX)),
    }
}

/// Read the sizing settings of a container.
pub async fn read_size(client: &Client, node: &str, vmid: u32) -> Result<Size, ProxmoxError> {
    Ok(size_of(&client.lxc_config(node, vmid).await?))
}

/// Apply `r` with the config digest; on a digest conflict read again and retry, but
/// give up if someone else changed one of the settings being resized.
pub async fn resize(
    client: &Client,
    node: &str,
    vmid: u32,
    r: &Resize,
) -> Result<(), ProxmoxError> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let conf = client.lxc_config(node, vmid).await?;
        if let Some(lock) = &conf.lock {
            return Err(ProxmoxError::Task {
                upid: format!("CT {vmid}"),
                message: format!("locked ({lock}); resize skipped"),
            });
        }
        let now = size_of(&conf);
        let mut params = Vec::new();
        let changed = |a: u32, b: u32| a != b;
        if changed(r.to.cores, r.from.cores) {
            if now.cores != r.from.cores {
                return Err(concurrent(vmid, "cores", now.cores, r.from.cores));
            }
            params.push(("cores", r.to.cores.to_string()));
        }
        if changed(r.to.cpulimit_centi, r.from.cpulimit_centi) {
            if now.cpulimit_centi != r.from.cpulimit_centi {
                return Err(concurrent(
                    vmid,
                    "cpulimit (1/100)",
                    now.cpulimit_centi,
                    r.from.cpulimit_centi,
                ));
            }
            params.push(("cpulimit", cpulimit_str(r.to.cpulimit_centi)));
        }
        if changed(r.to.memory_mib, r.from.memory_mib) {
            if now.memory_mib != r.from.memory_mib {
                return Err(concurrent(
                    vmid,
                    "memory",
                    now.memory_mib,
                    r.from.memory_mib,
                ));
            }
            params.push(("memory", r.to.memory_mib.to_string()));
        }
        if params.is_empty() {
            return Ok(());
        }
        match client.update_config(node, vmid, params, &conf.digest).await {
            Err(e) if e.is_digest_conflict() && attempt < DIGEST_ATTEMPTS => {
                tracing::info!(
                    vmid,
                    attempt,
                    "config changed under us (digest); reading again"
                );
            }
            r => return r,
        }
    }
}

fn concurrent(vmid: u32, what: &str, now: u32, expected: u32) -> ProxmoxError {
    ProxmoxError::Task {
        upid: format!("CT {vmid}"),
        message: format!(
            "{what} changed concurrently to {now} (decided from {expected}); re-deciding next cycle"
        ),
    }
}

/// What a horizontal scale-up needs.
#[derive(Debug, Clone)]
pub struct CloneJob {
    pub group: String,
    /// Clone name (the label is the new hostname).
    pub name: String,
    pub hostname: String,
    pub node: String,
    /// The vmid cloned from.
    pub source: u32,
    pub spec: CloneSpec,
    pub tag: String,
    /// The group's `clone_ipv4`.
    pub ipv4: Option<ClonePool>,
}

/// Clone, tag, start. The vmid is recorded before the clone call so a clone whose
/// task fails or times out is still counted and later destroyed. On failure after
/// the clone exists, the clone is destroyed again (best effort).
pub async fn scale_up(
    client: &Client,
    job: &CloneJob,
    state: &Mutex<CloneState>,
    save: &(dyn Fn(&CloneState) + Send + Sync),
    tasks: Tasks,
) -> Result<u32, ProxmoxError> {
    let record = |vmid: Option<u32>| {
        let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
        s.set(&job.group, &job.name, vmid);
        save(&s);
    };
    // Before any id is taken: a source with a static address needs a pool.
    let net0 = clone_net0(client, job, state).await?;
    let mut last_err = None;
    for _ in 0..3 {
        let newid = client.next_id().await?;
        record(Some(newid));
        let mut params = vec![
            ("newid", newid.to_string()),
            ("hostname", job.hostname.clone()),
            ("full", u8::from(job.spec.full).to_string()),
            (
                "description",
                format!(
                    "albatross-autoscale: clone {} of {} (group {})",
                    job.name, job.source, job.group
                ),
            ),
        ];
        for (k, v) in [
            ("storage", &job.spec.storage),
            ("pool", &job.spec.pool),
            ("snapname", &job.spec.snapname),
        ] {
            if let Some(v) = v {
                params.push((k, v.clone()));
            }
        }
        let path = format!("/nodes/{}/lxc/{}/clone", job.node, job.source);
        match client.task(Method::POST, &path, &params).await {
            Ok(upid) => {
                let created = async {
                    client.wait_task(&upid, tasks.timeout, tasks.every).await?;
                    tag(client, &job.node, newid, &job.tag).await?;
                    if let Some(net0) = &net0 {
                        set_net0(client, &job.node, newid, net0).await?;
                    }
                    let start = format!("/nodes/{}/lxc/{newid}/status/start", job.node);
                    let upid = client.task(Method::POST, &start, &[]).await?;
                    client.wait_task(&upid, tasks.timeout, tasks.every).await
                };
                return match created.await {
                    Ok(()) => Ok(newid),
                    Err(e) => {
                        // Leave no untracked capacity: remove it, or keep the record
                        // so the next cycle counts it and cleans up.
                        if destroy(client, &job.node, newid, tasks).await.is_ok() {
                            let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
                            s.remove(&job.group, &job.name);
                            save(&s);
                        }
                        Err(e)
                    }
                };
            }
            // Nothing reserved the id: another clone took it; try the next one.
            Err(e) if e.status() == Some(500) && e.to_string().contains("already exists") => {
                last_err = Some(e);
            }
            Err(e) => {
                let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
                s.remove(&job.group, &job.name);
                save(&s);
                return Err(e);
            }
        }
    }
    Err(last_err.expect("loop ran"))
}

/// The `net0` a clone must get instead of its source's (`clone_ipv4`): `None` to
/// keep the source's (DHCP, no network, or `keep`).
async fn clone_net0(
    client: &Client,
    job: &CloneJob,
    state: &Mutex<CloneState>,
) -> Result<Option<String>, ProxmoxError> {
    if job.ipv4 == Some(ClonePool::Keep) {
        return Ok(None);
    }
    let source = client.lxc_config(&job.node, job.source).await?;
    let Some(net0) = source.net0 else {
        return Ok(None);
    };
    let Some((own, prefix)) = address::static_ip(&net0) else {
        return Ok(None);
    };
    let Some(pool) = job.ipv4 else {
        return Err(ProxmoxError::Refused(format!(
            "the clone source {} has a static address (net0 ip={own}/{prefix}) and the container no clone_ipv4: every clone would take the same address; set clone_ipv4 = \"<first>-<last>\" (a pool) or \"keep\"",
            job.source
        )));
    };
    let owned: Vec<u32> = {
        let s = state.lock().unwrap_or_else(|e| e.into_inner());
        s.clones(&job.group).filter_map(|(_, v)| v).collect()
    };
    let mut used = vec![own];
    for vmid in owned {
        // A clone gone meanwhile holds no address.
        if let Ok(c) = client.lxc_config(&job.node, vmid).await
            && let Some((a, _)) = c.net0.as_deref().and_then(address::static_ip)
        {
            used.push(a);
        }
    }
    let addr = pool.pick(&used).ok_or_else(|| {
        ProxmoxError::Refused(format!(
            "clone_ipv4 pool exhausted: every address is taken by the source or an owned clone ({} in use)",
            used.len()
        ))
    })?;
    Ok(Some(address::with_ip(&net0, addr, prefix)))
}

async fn set_net0(client: &Client, node: &str, vmid: u32, net0: &str) -> Result<(), ProxmoxError> {
    let conf = client.lxc_config(node, vmid).await?;
    client
        .update_config(node, vmid, vec![("net0", net0.to_string())], &conf.digest)
        .await
}

async fn tag(client: &Client, node: &str, vmid: u32, tag: &str) -> Result<(), ProxmoxError> {
    let conf = client.lxc_config(node, vmid).await?;
    let mut tags: Vec<&str> = conf
        .tags
        .as_deref()
        .unwrap_or("")
        .split([';', ',', ' '])
        .filter(|t| !t.is_empty() && *t != tag)
        .collect();
    tags.push(tag);
    client
        .update_config(node, vmid, vec![("tags", tags.join(";"))], &conf.digest)
        .await
}

/// Shut down (clean, then forced after the timeout) and destroy `vmid`.
pub async fn destroy(
    client: &Client,
    node: &str,
    vmid: u32,
    tasks: Tasks,
) -> Result<(), ProxmoxError> {
    let base = format!("/nodes/{node}/lxc/{vmid}");
    let status: serde_json::Value = match client
        .call(Method::GET, &format!("{base}/status/current"), &[])
        .await
    {
        // Already gone (a failed clone task removes its container).
        Err(e) if e.status() == Some(500) && e.to_string().contains("does not exist") => {
            return Ok(());
        }
        r => r?,
    };
    if status.get("status").and_then(|s| s.as_str()) == Some("running") {
        let timeout = tasks.timeout.as_secs().clamp(1, 600);
        let params = [("timeout", timeout.to_string()), ("forceStop", "1".into())];
        let upid = client
            .task(Method::POST, &format!("{base}/status/shutdown"), &params)
            .await?;
        client.wait_task(&upid, tasks.timeout, tasks.every).await?;
    }
    let upid = client
        .task(Method::DELETE, &base, &[("purge", "1".into())])
        .await?;
    client.wait_task(&upid, tasks.timeout, tasks.every).await
}
