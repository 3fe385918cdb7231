//! `check --config FILE [--json]`: a preflight an operator runs before `run`. It
//! talks to every configured albatross endpoint and the Proxmox API and says, one
//! line per check, every reason the setup would not scale: certificates and the
//! path they map to, each primary found or not, the albatross policy's limits
//! against `max_instances` (how many clones can really get a CPU of their own),
//! whether a primary can be cloned, whether a stats subscription yields readable
//! samples; the Proxmox token's privileges for each container's actions, each
//! container on its node, `/cluster/nextid`. Exit 0 (all ok), 1 (warnings),
//! 2 (failures).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use reqwest::Method;
use serde_json::Value;
use tokio::time::{Instant, timeout};

use crate::albatross::client::Client;
use crate::config::{Config, Endpoint};
use crate::name::Name;
use crate::proxmox::types::Resource;
use crate::wire::Payload;

mod findings;

pub use findings::{Finding, Level, exit_code as findings_exit_code};

/// Arguments of `check`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[arg(long, short, env = "ALBATROSS_AUTOSCALE_CONFIG")]
    pub config: PathBuf,
    /// One JSON object (`findings`, `exit`) instead of lines.
    #[arg(long)]
    pub json: bool,
    /// Longest wait for any one connection or request.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
}

/// Run `check`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let found = match Config::load(&args.config) {
        Ok(config) => {
            let rt = tokio::runtime::Runtime::new()?;
            rt.block_on(check(&config, args.timeout))
        }
        Err(e) => vec![Finding::new(Level::Fail, "config", e.to_string())],
    };
    let code = findings::exit_code(&found);
    if args.json {
        let v = serde_json::json!({"findings": found, "exit": code});
        println!("{v}");
    } else {
        for f in &found {
            println!("{:<4} {}: {}", f.level.as_str(), f.about, f.message);
        }
    }
    Ok(ExitCode::from(code))
}

/// Each hook program (`on_ready`, `on_draining`, `on_removed`): it exists and
/// is executable, once per program.
fn hook_programs(config: &Config) -> Vec<Finding> {
    use crate::core::lifecycle::Event;
    use std::os::unix::fs::PermissionsExt;
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for g in &config.groups {
        let Some(h) = &g.policy.hooks else { continue };
        for event in Event::ALL {
            let Some(program) = h
                .command(event)
                .and_then(|c| c.exec.as_ref())
                .and_then(|a| a.first())
            else {
                continue;
            };
            if !seen.insert(program.clone()) {
                continue;
            }
            let about = format!("{} {}", crate::config::hooks::key(event), program);
            if !program.contains('/') {
                out.push(Finding::new(
                    Level::Warn,
                    about,
                    "not a path: looked up in the daemon's PATH when run; an absolute path is safer",
                ));
                continue;
            }
            let f = match std::fs::metadata(program) {
                Ok(m) if m.is_file() && m.permissions().mode() & 0o111 != 0 => {
                    Finding::new(Level::Ok, about, "exists and is executable")
                }
                Ok(_) => Finding::new(Level::Fail, about, "not an executable file"),
                Err(e) => Finding::new(Level::Fail, about, format!("cannot be run: {e}")),
            };
            out.push(f);
        }
    }
    out
}

/// Every check of `config`, endpoints first.
pub async fn check(config: &Config, wait: Duration) -> Vec<Finding> {
    let mut out = Vec::new();
    for w in config.warnings() {
        out.push(Finding::new(Level::Warn, "config", w));
    }
    for ep in &config.endpoints {
        out.extend(albatross(config, ep, wait).await);
    }
    out.extend(hook_programs(config));
    if let Some(pve) = &config.proxmox {
        out.extend(proxmox(config, pve, wait).await);
    }
    if config.endpoints.is_empty() && config.proxmox.is_none() {
        out.push(Finding::new(
            Level::Warn,
            "config",
            "nothing to check: no [albatross] endpoint and no [proxmox]",
        ));
    }
    out
}

async fn albatross(config: &Config, ep: &Endpoint, wait: Duration) -> Vec<Finding> {
    let about = format!("albatross {}", ep.name);
    let mut out = Vec::new();
    let client = match Client::from_endpoint(ep) {
        Ok(c) => c,
        Err(e) => {
            out.push(Finding::new(
                Level::Fail,
                &about,
                format!("cannot load the certificates: {e}"),
            ));
            return out;
        }
    };
    // One command per connection: this one proves TCP, TLS 1.3 and the chain.
    match timeout(wait, client.read_policy()).await {
        Err(_) => {
            out.push(Finding::new(
                Level::Fail,
                &about,
                format!(
                    "no answer from {} within {}",
                    ep.address,
                    humantime::format_duration(wait)
                ),
            ));
            return out;
        }
        Ok(Err(e)) => {
            out.push(Finding::new(
                Level::Fail,
                &about,
                format!("cannot connect to {}: {e}", ep.address),
            ));
            return out;
        }
        Ok(Ok(_)) => out.push(Finding::new(
            Level::Ok,
            &about,
            format!(
                "connected to {} (TLS 1.3, mutual authentication); the certificate maps to path {}",
                ep.address,
                client.path()
            ),
        )),
    }
    let listing = match timeout(wait, client.info(None)).await {
        Ok(Ok(l)) => l,
        Ok(Err(e)) => {
            out.push(Finding::new(
                Level::Fail,
                &about,
                format!("unikernel info failed: {e}"),
            ));
            return out;
        }
        Err(_) => {
            out.push(Finding::new(
                Level::Fail,
                &about,
                "unikernel info: no answer",
            ));
            return out;
        }
    };
    let policy = client.policy();
    let mut streams = tokio::task::JoinSet::new();
    for g in config.groups_on(&ep.name) {
        let f = findings::albatross_group(
            &g.primary,
            g.policy.max_instances,
            g.policy.clone_cpus == crate::core::CloneCpus::Same,
            g.policy.clone_ipv4.as_ref(),
            &listing,
            policy.as_ref(),
        );
        let found = f.first().is_some_and(|f| f.level == Level::Ok);
        out.extend(f);
        if found {
            // Two intervals, as `run` would wait before calling the stream silent.
            let span = g.policy.sample_interval * 2 + Duration::from_secs(1);
            let (client, primary) = (client.clone(), g.primary.clone());
            streams.spawn(async move { stats(&client, &primary, span, wait).await });
        }
    }
    while let Some(r) = streams.join_next().await {
        if let Ok(f) = r {
            out.push(f);
        }
    }
    out
}

/// Subscribe under the primary's own name (a daemon's subscription for the path
/// stays) and count readable samples for `span`.
async fn stats(client: &Client, primary: &Name, span: Duration, wait: Duration) -> Finding {
    let about = format!("group {primary}");
    let mut reader = match timeout(wait, client.subscribe_stats_of(primary)).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            return Finding::new(Level::Fail, about, format!("stats subscribe failed: {e}"));
        }
        Err(_) => return Finding::new(Level::Fail, about, "stats subscribe: no answer"),
    };
    let end = Instant::now() + span;
    let (mut readable, mut unreadable) = (0u32, Vec::new());
    loop {
        let m = match tokio::time::timeout_at(end, reader.next_message()).await {
            Err(_) => break,
            Ok(Ok(Some(m))) => m,
            Ok(Ok(None)) => break,
            Ok(Err(e)) => {
                return Finding::new(Level::Fail, about, format!("stats stream: {e}"));
            }
        };
        match m.payload {
            Payload::Failure(f) => {
                return Finding::new(
                    Level::Fail,
                    about,
                    format!("albatross refused or ended the stats subscription: {f}"),
                );
            }
            Payload::Data(d) => match d.into_stats() {
                Ok(_) => readable += 1,
                Err(no) => unreadable.push(no.tag),
            },
            // The subscription's own reply.
            _ => {}
        }
        if readable >= 2 {
            break;
        }
    }
    let secs = humantime::format_duration(span);
    match (readable, unreadable.is_empty()) {
        (0, false) => Finding::new(
            Level::Fail,
            about,
            format!(
                "stats frames arrive but none can be read (tags {unreadable:?}): an albatross this version does not know; see the README's albatross versions"
            ),
        ),
        (0, true) => Finding::new(
            Level::Warn,
            about,
            format!(
                "no stats sample within {secs} (two sample_interval): is albatross-stats running, and its interval shorter than sample_interval?"
            ),
        ),
        (n, _) => Finding::new(
            Level::Ok,
            about,
            format!("stats: {n} readable sample(s) within {secs}"),
        ),
    }
}

/// Whether the clone source's `net0` has a static address the clones would copy.
async fn lxc_address(
    client: &crate::proxmox::Client,
    l: &crate::config::proxmox::Lxc,
    resources: &[Resource],
    wait: Duration,
) -> Option<Finding> {
    let source = l.clone.source.unwrap_or(l.vmid);
    let node = resources
        .iter()
        .find(|r| r.kind == "lxc" && r.vmid == Some(u64::from(source)))?
        .node
        .clone();
    let about = format!("lxc {} ({})", l.vmid, l.name);
    let conf = match timeout(wait, client.lxc_config(&node, source)).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            return Some(Finding::new(
                Level::Warn,
                about,
                format!("cannot read the config of clone source {source}: {e}"),
            ));
        }
        Err(_) => return None,
    };
    let (addr, prefix) = conf
        .net0
        .as_deref()
        .and_then(crate::proxmox::address::static_ip)?;
    let clones = u64::from(l.policy.max_instances.saturating_sub(1));
    Some(findings::address(
        &about,
        &format!("net0 ip={addr}/{prefix}"),
        l.policy.clone_ipv4.as_ref(),
        clones,
    ))
}

async fn proxmox(
    config: &Config,
    pve: &crate::config::proxmox::Proxmox,
    wait: Duration,
) -> Vec<Finding> {
    let about = "proxmox";
    let mut out = Vec::new();
    let client = match crate::proxmox::Client::from_config(pve) {
        Ok(c) => c,
        Err(e) => {
            out.push(Finding::new(Level::Fail, about, e.to_string()));
            return out;
        }
    };
    let perms: Value =
        match timeout(wait, client.call(Method::GET, "/access/permissions", &[])).await {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => {
                out.push(Finding::new(
                    Level::Fail,
                    about,
                    format!("{}: cannot read the token's permissions: {e}", pve.url),
                ));
                return out;
            }
            Err(_) => {
                out.push(Finding::new(
                    Level::Fail,
                    about,
                    format!("{}: no answer", pve.url),
                ));
                return out;
            }
        };
    out.push(Finding::new(
        Level::Ok,
        about,
        format!(
            "connected to {} as {}; the token holds rights on {} path(s)",
            pve.url,
            pve.token_id,
            perms.as_object().map_or(0, serde_json::Map::len)
        ),
    ));
    let resources: Vec<Resource> = match timeout(wait, client.resources()).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            out.push(Finding::new(
                Level::Fail,
                about,
                format!("/cluster/resources: {e}"),
            ));
            return out;
        }
        Err(_) => {
            out.push(Finding::new(
                Level::Fail,
                about,
                "/cluster/resources: no answer",
            ));
            return out;
        }
    };
    for l in &config.lxc {
        out.extend(findings::lxc(l, &perms, &resources));
        if l.mode.clones() {
            out.extend(lxc_address(&client, l, &resources, wait).await);
        }
    }
    if config.lxc.iter().any(|l| l.mode.clones()) {
        out.push(match timeout(wait, client.next_id()).await {
            Ok(Ok(id)) => Finding::new(
                Level::Ok,
                about,
                format!("/cluster/nextid answers ({id}): clones can get an id"),
            ),
            Ok(Err(e)) => Finding::new(Level::Fail, about, format!("/cluster/nextid: {e}")),
            Err(_) => Finding::new(Level::Fail, about, "/cluster/nextid: no answer"),
        });
    }
    out
}
