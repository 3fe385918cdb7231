//! Typed Proxmox responses, lenient like Proxmox's own Rust types: numbers may
//! arrive as strings (Perl's JSON encoder), booleans as 0/1, fields may be missing,
//! unknown fields are ignored (PVE adds fields between releases).

use serde::{Deserialize, Deserializer};

/// A number sent as a JSON number or a string (`"cpulimit":"1.5"`).
fn lax_f64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum N {
        F(f64),
        S(String),
        B(bool),
    }
    Ok(match Option::<N>::deserialize(d)? {
        None => None,
        Some(N::F(f)) => Some(f),
        Some(N::B(b)) => Some(if b { 1.0 } else { 0.0 }),
        Some(N::S(s)) if s.trim().is_empty() => None,
        Some(N::S(s)) => Some(
            s.trim()
                .parse()
                .map_err(|_| serde::de::Error::custom(format!("{s:?} is not a number")))?,
        ),
    })
}

fn lax_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Ok(lax_f64(d)?.filter(|f| *f >= 0.0).map(|f| f as u64))
}

/// One row of `GET /cluster/resources` (containers, VMs, nodes; others ignored).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct Resource {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(deserialize_with = "lax_u64")]
    pub vmid: Option<u64>,
    pub node: String,
    pub name: Option<String>,
    pub status: Option<String>,
    #[serde(deserialize_with = "lax_u64")]
    pub template: Option<u64>,
    pub lock: Option<String>,
    /// Semicolon-separated.
    pub tags: Option<String>,
    /// Fraction of `maxcpu`.
    #[serde(deserialize_with = "lax_f64")]
    pub cpu: Option<f64>,
    #[serde(deserialize_with = "lax_f64")]
    pub maxcpu: Option<f64>,
    /// Bytes, without page cache.
    #[serde(deserialize_with = "lax_u64")]
    pub mem: Option<u64>,
    #[serde(deserialize_with = "lax_u64")]
    pub maxmem: Option<u64>,
}

impl Resource {
    /// Whether the container carries `tag`.
    pub fn has_tag(&self, tag: &str) -> bool {
        self.tags
            .as_deref()
            .is_some_and(|t| t.split([';', ',', ' ']).any(|x| x == tag))
    }

    pub fn running(&self) -> bool {
        self.status.as_deref() == Some("running")
    }
}

/// `GET /nodes/{node}/lxc/{vmid}/config` (the fields the autoscaler uses).
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct LxcConfig {
    /// The first network interface (`name=eth0,bridge=vmbr0,ip=10.0.0.5/24,gw=...`).
    pub net0: Option<String>,
    #[serde(deserialize_with = "lax_u64")]
    pub cores: Option<u64>,
    #[serde(deserialize_with = "lax_f64")]
    pub cpulimit: Option<f64>,
    #[serde(deserialize_with = "lax_u64")]
    pub memory: Option<u64>,
    pub hostname: Option<String>,
    pub lock: Option<String>,
    pub tags: Option<String>,
    pub description: Option<String>,
    pub digest: String,
}

/// `GET /nodes/{node}/tasks/{upid}/status`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(default)]
pub struct TaskStatus {
    /// `running` or `stopped`.
    pub status: String,
    pub exitstatus: Option<String>,
}

impl TaskStatus {
    /// `Some(Ok)` once stopped with `OK` or `WARNINGS: n`, `Some(Err(text))` once
    /// stopped otherwise, `None` while running.
    pub fn outcome(&self) -> Option<Result<(), String>> {
        if self.status != "stopped" {
            return None;
        }
        Some(match self.exitstatus.as_deref() {
            Some("OK") => Ok(()),
            Some(s) if s.starts_with("WARNINGS") => Ok(()),
            Some(s) => Err(s.to_string()),
            None => Err("stopped without exit status".into()),
        })
    }
}

/// The node a UPID belongs to (`UPID:<node>:...`): its status is asked there.
pub fn upid_node(upid: &str) -> Option<&str> {
    let mut it = upid.split(':');
    (it.next()? == "UPID").then_some(())?;
    it.next().filter(|n| !n.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_as_strings_and_unknown_fields() {
        let r: Resource = serde_json::from_str(
            r#"{"id":"lxc/101","type":"lxc","vmid":"101","node":"pve","cpu":"0.5","maxcpu":2,"mem":1048576,"maxmem":"2097152","template":0,"new_field":[1],"tags":"a;albatross-autoscale"}"#,
        )
        .unwrap();
        assert_eq!(r.vmid, Some(101));
        assert_eq!(r.cpu, Some(0.5));
        assert_eq!(r.maxmem, Some(2_097_152));
        assert!(r.has_tag("albatross-autoscale") && !r.has_tag("b"));
        let c: LxcConfig =
            serde_json::from_str(r#"{"cores":2,"cpulimit":"1.5","memory":"512","digest":"ab"}"#)
                .unwrap();
        assert_eq!(
            (c.cores, c.cpulimit, c.memory),
            (Some(2), Some(1.5), Some(512))
        );
    }

    #[test]
    fn task_outcomes_and_upid_node() {
        let t = |s: &str, e: Option<&str>| TaskStatus {
            status: s.into(),
            exitstatus: e.map(Into::into),
        };
        assert_eq!(t("running", None).outcome(), None);
        assert_eq!(t("stopped", Some("OK")).outcome(), Some(Ok(())));
        assert_eq!(t("stopped", Some("WARNINGS: 2")).outcome(), Some(Ok(())));
        assert!(matches!(t("stopped", Some("boom")).outcome(), Some(Err(e)) if e == "boom"));
        assert_eq!(
            upid_node("UPID:pve2:0000AB12:00C0FFEE:65000000:vzclone:101:a@pve!s:"),
            Some("pve2")
        );
        assert_eq!(upid_node("nope"), None);
    }
}
