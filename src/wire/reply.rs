//! Success replies (protocol §3.5): `Success ::= CHOICE { empty [0], string [1],
//! policies [2], block-devices [4], unikernel-image [6], old-block-device-image [7],
//! block-device-image [10], consoles [12], unikernel-info [13] }`.

use serde::Serialize;

use super::config::{
    FailBehaviour, Mac, Policy, Typ, decode_fail, decode_mac, decode_policy, decode_typ,
    encode_fail, encode_policy, encode_typ,
};
use super::der::{self, Reader, Writer, der_sort};
use super::error::DecodeErrorKind;
use super::message::{decode_name, encode_name};
use super::time::Time;
use crate::name::Name;

/// A block device attached to a running unikernel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BlockInfo {
    /// Name in the manifest.
    pub unikernel_device: String,
    /// Albatross block device label.
    pub host_device: String,
    pub sector_size: i64,
    /// MB (0 in path listings below the root: an albatross quirk).
    pub size: i64,
}

/// A network interface of a running unikernel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NetInfo {
    pub unikernel_device: String,
    /// Host bridge.
    pub host_device: String,
    /// The MAC actually used.
    pub mac: Mac,
}

/// `UnikernelInfo` (albatross ≥ 2.7.0): no image, `compressed` or `add_name`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnikernelInfo {
    pub typ: Typ,
    pub startup: Option<i64>,
    pub fail_behaviour: FailBehaviour,
    pub cpuids: Vec<i64>,
    /// MB.
    pub memory: i64,
    /// SHA-256 of the uncompressed image (Solo5) or the bhyve VM name.
    #[serde(rename = "digest_hex", serialize_with = "super::json::hex")]
    pub digest: Vec<u8>,
    pub block_devices: Vec<BlockInfo>,
    pub bridges: Vec<NetInfo>,
    pub argv: Vec<String>,
    pub started: Option<Time>,
    pub numcpus: Option<i64>,
    pub linux_boot_partition: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NamedUnikernelInfo {
    #[serde(serialize_with = "super::json::name")]
    pub name: Name,
    pub info: UnikernelInfo,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NamedPolicy {
    #[serde(serialize_with = "super::json::name")]
    pub name: Name,
    pub policy: Policy,
}

/// An albatross block device (`block info`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BlockDevice {
    #[serde(serialize_with = "super::json::name")]
    pub name: Name,
    /// MB.
    pub size: i64,
    /// In use by a unikernel.
    pub active: bool,
}

/// `reply [1]` payloads. Names in lists are relative to the requested path, except
/// a single-name `info`, which carries the full name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Success {
    Empty,
    String(String),
    Policies(Vec<NamedPolicy>),
    BlockDevices(Vec<BlockDevice>),
    /// `get` reply. `compressed` = zlib; always honour it.
    UnikernelImage {
        compressed: bool,
        image: Vec<u8>,
    },
    /// `[7]`, reply of the old block dump.
    OldBlockDeviceImage {
        compressed: bool,
        image: Vec<u8>,
    },
    /// `[10]`: the following block data frames are compressed (or not).
    BlockDeviceImage {
        compressed: bool,
    },
    Consoles(Vec<Name>),
    UnikernelInfo(Vec<NamedUnikernelInfo>),
}

/// JSON shape of [`Success`]: `{"kind": ..., fields}` like the fixture sidecars.
#[derive(Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum SuccessJson<'a> {
    Empty,
    String {
        value: &'a str,
    },
    Policies {
        policies: &'a [NamedPolicy],
    },
    BlockDevices {
        devices: &'a [BlockDevice],
    },
    UnikernelImage {
        compressed: bool,
        #[serde(serialize_with = "super::json::image")]
        image: &'a [u8],
    },
    OldBlockDeviceImage {
        compressed: bool,
        #[serde(serialize_with = "super::json::image")]
        image: &'a [u8],
    },
    BlockDeviceImage {
        compressed: bool,
    },
    Consoles {
        #[serde(serialize_with = "super::json::names")]
        names: &'a [Name],
    },
    UnikernelInfo {
        unikernels: &'a [NamedUnikernelInfo],
    },
}

impl Serialize for Success {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Success::Empty => SuccessJson::Empty,
            Success::String(value) => SuccessJson::String { value },
            Success::Policies(policies) => SuccessJson::Policies { policies },
            Success::BlockDevices(devices) => SuccessJson::BlockDevices { devices },
            Success::UnikernelImage { compressed, image } => SuccessJson::UnikernelImage {
                compressed: *compressed,
                image,
            },
            Success::OldBlockDeviceImage { compressed, image } => {
                SuccessJson::OldBlockDeviceImage {
                    compressed: *compressed,
                    image,
                }
            }
            Success::BlockDeviceImage { compressed } => SuccessJson::BlockDeviceImage {
                compressed: *compressed,
            },
            Success::Consoles(names) => SuccessJson::Consoles { names },
            Success::UnikernelInfo(unikernels) => SuccessJson::UnikernelInfo { unikernels },
        }
        .serialize(s)
    }
}

impl UnikernelInfo {
    /// Put every SET OF in DER order; see [`super::UnikernelConfig::canonicalize`].
    pub fn canonicalize(&mut self) {
        if let FailBehaviour::Restart { exit_codes } = &mut self.fail_behaviour {
            der_sort(exit_codes, |w, c| w.int(*c));
        }
        der_sort(&mut self.cpuids, |w, c| w.int(*c));
        der_sort(&mut self.block_devices, encode_block_info);
        der_sort(&mut self.bridges, encode_net_info);
    }
}

// ---- decoding -------------------------------------------------------------------

fn decode_info(r: &mut Reader<'_>) -> der::Result<UnikernelInfo> {
    const F: &str = "info";
    let mut s = r.sequence(F)?;
    let typ = decode_typ(&mut s)?;
    let startup = if s.next_is_universal(der::INTEGER) {
        Some(s.int("info.startup")?)
    } else {
        None
    };
    let fail_behaviour = decode_fail(&mut s)?;
    let cpuids = s.set("info.cpuids")?.many(|r| r.int("info.cpuids"))?;
    let memory = s.int("info.memory")?;
    let digest = s.octets("info.digest")?.to_vec();
    let block_devices = s
        .opt_explicit(0, "info.block_devices", |r| {
            r.set("info.block_devices")?.many(|r| {
                let mut b = r.sequence("info.block_devices")?;
                let v = BlockInfo {
                    unikernel_device: b.utf8("info.block_devices.unikernel_device")?,
                    host_device: b.utf8("info.block_devices.host_device")?,
                    sector_size: b.int("info.block_devices.sector_size")?,
                    size: b.int("info.block_devices.size")?,
                };
                b.finish("info.block_devices")?;
                Ok(v)
            })
        })?
        .unwrap_or_default();
    let bridges = s
        .opt_explicit(1, "info.bridges", |r| {
            r.set("info.bridges")?.many(|r| {
                let mut b = r.sequence("info.bridges")?;
                let v = NetInfo {
                    unikernel_device: b.utf8("info.bridges.unikernel_device")?,
                    host_device: b.utf8("info.bridges.host_device")?,
                    mac: decode_mac(&mut b, "info.bridges.mac")?,
                };
                b.finish("info.bridges")?;
                Ok(v)
            })
        })?
        .unwrap_or_default();
    let argv = s
        .opt_explicit(2, "info.argv", |r| {
            r.sequence("info.argv")?.many(|r| r.utf8("info.argv"))
        })?
        .unwrap_or_default();
    let started = s.opt_explicit(3, "info.started", |r| Time::decode(r, "info.started"))?;
    let numcpus = s.opt_explicit(4, "info.numcpus", |r| r.int("info.numcpus"))?;
    let linux_boot_partition = s.opt_explicit(5, "info.linux_boot_partition", |r| {
        r.utf8("info.linux_boot_partition")
    })?;
    s.finish(F)?;
    Ok(UnikernelInfo {
        typ,
        startup,
        fail_behaviour,
        cpuids,
        memory,
        digest,
        block_devices,
        bridges,
        argv,
        started,
        numcpus,
        linux_boot_partition,
    })
}

fn decode_image(r: &mut Reader<'_>, field: &'static str) -> der::Result<(bool, Vec<u8>)> {
    let mut s = r.sequence(field)?;
    let compressed = s.bool(field)?;
    let image = s.octets(field)?.to_vec();
    s.finish(field)?;
    Ok((compressed, image))
}

/// Decode a `Success` CHOICE (the next element of `r`).
pub(crate) fn decode_success(r: &mut Reader<'_>) -> der::Result<Success> {
    const F: &str = "success";
    let (tag, tlv) = r.choice(F)?;
    let mut inner = r.explicit_content(&tlv, F)?;
    let v = match tag {
        0 => {
            inner.null("success.empty")?;
            Success::Empty
        }
        1 => Success::String(inner.utf8("success.string")?),
        2 => Success::Policies(inner.sequence("success.policies")?.many(|r| {
            let mut s = r.sequence("success.policies")?;
            let name = decode_name(&mut s, "success.policies.name")?;
            let policy = decode_policy(&mut s)?;
            s.finish("success.policies")?;
            Ok(NamedPolicy { name, policy })
        })?),
        4 => Success::BlockDevices(inner.sequence("success.block_devices")?.many(|r| {
            let mut s = r.sequence("success.block_devices")?;
            let name = decode_name(&mut s, "success.block_devices.name")?;
            let size = s.int("success.block_devices.size")?;
            let active = s.bool("success.block_devices.active")?;
            s.finish("success.block_devices")?;
            Ok(BlockDevice { name, size, active })
        })?),
        6 => {
            let (compressed, image) = decode_image(&mut inner, "success.unikernel_image")?;
            Success::UnikernelImage { compressed, image }
        }
        7 => {
            let (compressed, image) = decode_image(&mut inner, "success.old_block_image")?;
            Success::OldBlockDeviceImage { compressed, image }
        }
        10 => Success::BlockDeviceImage {
            compressed: inner.bool("success.block_device_image")?,
        },
        12 => Success::Consoles(
            inner
                .sequence("success.consoles")?
                .many(|r| decode_name(r, "success.consoles"))?,
        ),
        13 => Success::UnikernelInfo(inner.sequence("success.unikernel_info")?.many(|r| {
            let mut s = r.sequence("success.unikernel_info")?;
            let name = decode_name(&mut s, "success.unikernel_info.name")?;
            let info = decode_info(&mut s)?;
            s.finish("success.unikernel_info")?;
            Ok(NamedUnikernelInfo { name, info })
        })?),
        tag => {
            return Err(r.err(
                tlv.offset,
                F,
                DecodeErrorKind::UnknownAlternative {
                    choice: "success",
                    tag,
                },
            ));
        }
    };
    inner.finish(F)?;
    Ok(v)
}

// ---- encoding -------------------------------------------------------------------

fn encode_block_info(w: &mut Writer, b: &BlockInfo) {
    w.sequence(|w| {
        w.utf8(b.unikernel_device.as_bytes());
        w.utf8(b.host_device.as_bytes());
        w.int(b.sector_size);
        w.int(b.size);
    });
}

fn encode_net_info(w: &mut Writer, n: &NetInfo) {
    w.sequence(|w| {
        w.utf8(n.unikernel_device.as_bytes());
        w.utf8(n.host_device.as_bytes());
        w.octets(&n.mac.0);
    });
}

fn encode_info(w: &mut Writer, i: &UnikernelInfo) {
    w.sequence(|w| {
        encode_typ(w, i.typ);
        if let Some(s) = i.startup {
            w.int(s);
        }
        encode_fail(w, &i.fail_behaviour);
        w.set_of(&i.cpuids, |w, c| w.int(*c));
        w.int(i.memory);
        w.octets(&i.digest);
        if !i.block_devices.is_empty() {
            w.explicit(0, |w| w.set_of(&i.block_devices, encode_block_info));
        }
        if !i.bridges.is_empty() {
            w.explicit(1, |w| w.set_of(&i.bridges, encode_net_info));
        }
        if !i.argv.is_empty() {
            w.explicit(2, |w| w.sequence_of(&i.argv, |w, a| w.utf8(a.as_bytes())));
        }
        if let Some(t) = &i.started {
            w.explicit(3, |w| t.encode(w));
        }
        if let Some(n) = i.numcpus {
            w.explicit_int(4, n);
        }
        if let Some(p) = &i.linux_boot_partition {
            w.explicit(5, |w| w.utf8(p.as_bytes()));
        }
    });
}

pub(crate) fn encode_success(w: &mut Writer, s: &Success) {
    match s {
        Success::Empty => w.explicit_null(0),
        Success::String(value) => w.explicit(1, |w| w.utf8(value.as_bytes())),
        Success::Policies(policies) => w.explicit(2, |w| {
            w.sequence_of(policies, |w, p| {
                w.sequence(|w| {
                    encode_name(w, &p.name);
                    encode_policy(w, &p.policy);
                });
            });
        }),
        Success::BlockDevices(devices) => w.explicit(4, |w| {
            w.sequence_of(devices, |w, d| {
                w.sequence(|w| {
                    encode_name(w, &d.name);
                    w.int(d.size);
                    w.bool(d.active);
                });
            });
        }),
        Success::UnikernelImage { compressed, image } => w.explicit(6, |w| {
            w.sequence(|w| {
                w.bool(*compressed);
                w.octets(image);
            });
        }),
        Success::OldBlockDeviceImage { compressed, image } => w.explicit(7, |w| {
            w.sequence(|w| {
                w.bool(*compressed);
                w.octets(image);
            });
        }),
        Success::BlockDeviceImage { compressed } => w.explicit(10, |w| w.bool(*compressed)),
        Success::Consoles(names) => {
            w.explicit(12, |w| w.sequence_of(names, encode_name));
        }
        Success::UnikernelInfo(unikernels) => w.explicit(13, |w| {
            w.sequence_of(unikernels, |w, u| {
                w.sequence(|w| {
                    encode_name(w, &u.name);
                    encode_info(w, &u.info);
                });
            });
        }),
    }
}
