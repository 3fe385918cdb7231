//! The configuration a machine was built from, as the flight recorder keeps it:
//! only the tables that shape decisions, never paths, addresses or secrets, and
//! the machines' settings read back from them for `replay --inputs`.

use std::path::Path;

use crate::core::{Policy, lxc};
use crate::name::Name;

/// The `[policy]` and `[[group]]` tables of a configuration, as TOML text: all the
/// engine is built from (no paths, no secrets).
pub fn policy_tables(config_text: &str) -> String {
    let Ok(mut table) = config_text.parse::<toml::Table>() else {
        return String::new();
    };
    table.retain(|k, _| k == "policy" || k == "group");
    if let Some(toml::Value::Table(p)) = table.get_mut("policy") {
        super::hooks::redact(p);
    }
    // A group's endpoint names an [albatross] table that is not kept; hooks
    // name programs and sinks that are not kept either.
    if let Some(toml::Value::Array(groups)) = table.get_mut("group") {
        for g in groups {
            if let toml::Value::Table(t) = g {
                t.remove("endpoint");
                super::hooks::redact(t);
            }
        }
    }
    toml::to_string(&table).unwrap_or_default()
}

/// The groups and policies of recorded `[policy]`/`[[group]]` tables.
pub fn groups_of(config: &str) -> Result<Vec<(Name, Policy)>, String> {
    let c =
        super::Config::parse(config, Path::new("(recorded config)")).map_err(|e| e.to_string())?;
    Ok(c.groups
        .into_iter()
        .map(|g| (g.primary, Policy::clone(&g.policy)))
        .collect())
}

/// The tables an LXC machine is built from: `[policy]`, `[[lxc]]`, and of
/// `[proxmox]` what shapes decisions (`poll_interval`, `host_memory_reserve_mib`),
/// with a placeholder address and credentials so the recording never holds them.
pub fn lxc_tables(config_text: &str) -> String {
    let Ok(mut table) = config_text.parse::<toml::Table>() else {
        return String::new();
    };
    table.retain(|k, _| k == "policy" || k == "lxc" || k == "proxmox");
    if let Some(toml::Value::Table(p)) = table.get_mut("proxmox") {
        p.retain(|k, _| k == "poll_interval" || k == "host_memory_reserve_mib");
        p.insert("url".into(), "https://recorded.invalid:8006".into());
        p.insert("token_id".into(), "recorded@pve!replay".into());
        p.insert("token_secret_env".into(), "UNUSED".into());
        p.insert("fingerprint".into(), "00".repeat(32).into());
    }
    toml::to_string(&table).unwrap_or_default()
}

/// The containers and the poll interval of recorded [`lxc_tables`].
pub fn lxc_of(config: &str) -> Result<(Vec<lxc::Spec>, std::time::Duration), String> {
    let c =
        super::Config::parse(config, Path::new("(recorded config)")).map_err(|e| e.to_string())?;
    let poll = c
        .proxmox
        .as_ref()
        .map_or(std::time::Duration::from_secs(10), |p| p.poll_interval);
    Ok((
        c.lxc
            .into_iter()
            .map(super::proxmox::Lxc::into_spec)
            .collect(),
        poll,
    ))
}
