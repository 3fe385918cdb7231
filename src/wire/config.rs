//! Unikernel configuration (create / force-create), restart arguments and policies
//! (protocol §3.4, §3.6).

use std::fmt;

use serde::Serialize;

use super::der::{self, Reader, Writer, der_sort};
use super::error::DecodeErrorKind;

/// Hypervisor kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Typ {
    Solo5,
    Bhyve,
}

/// What albatross does when the unikernel exits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum FailBehaviour {
    Quit,
    /// Restart on these exit codes (a SET: encoded sorted). Empty = albatross'
    /// default: any exit code except 1 and 60..=64 — *not* "never".
    Restart {
        exit_codes: Vec<i64>,
    },
}

/// A MAC address (6-byte OCTET STRING).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Mac(pub [u8; 6]);

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

impl Serialize for Mac {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

/// A block device of a create request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BlockSpec {
    /// Device name in the unikernel's manifest.
    pub name: String,
    /// Albatross block device label (absent = `name`).
    pub device: Option<String>,
    pub sector_size: Option<i64>,
}

/// A network interface of a create request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NetSpec {
    /// Interface name in the unikernel's manifest.
    pub name: String,
    /// Host bridge (absent = `name`).
    pub host_device: Option<String>,
    /// Absent = albatross derives one from the name (do not copy MACs to clones).
    pub mac: Option<Mac>,
}

/// `UnikernelConfig` (albatross ≥ 2.7.0). Set-valued fields (`cpuids`, `blocks`,
/// `bridges`, restart exit codes) are encoded sorted by DER bytes, so they decode
/// back in that order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnikernelConfig {
    pub typ: Typ,
    /// The image is zlib-compressed (see [`super::compress_image`]).
    pub compressed: bool,
    /// Empty = the image is uploaded in frames after the handshake.
    #[serde(serialize_with = "super::json::image")]
    pub image: Vec<u8>,
    /// Boot priority; absent = 50.
    pub startup: Option<i64>,
    /// Prepend `--name=<label>` to argv.
    pub add_name: bool,
    pub fail_behaviour: FailBehaviour,
    pub cpuids: Vec<i64>,
    /// MB.
    pub memory: i64,
    pub block_devices: Vec<BlockSpec>,
    pub bridges: Vec<NetSpec>,
    pub argv: Vec<String>,
    /// vCPUs; albatross' encoder always writes it (absent = 1).
    pub numcpus: Option<i64>,
    pub linux_boot_partition: Option<String>,
}

/// `UnikernelArguments` of `restart [14] arguments [3]`: a config without typ and
/// image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UnikernelArguments {
    pub fail_behaviour: FailBehaviour,
    pub startup: Option<i64>,
    pub add_name: bool,
    pub cpuids: Vec<i64>,
    pub memory: i64,
    pub block_devices: Vec<BlockSpec>,
    pub bridges: Vec<NetSpec>,
    pub argv: Vec<String>,
    pub numcpus: Option<i64>,
    pub linux_boot_partition: Option<String>,
}

/// Resource policy of a path (intermediate certificates, `policy info` replies).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Policy {
    /// Allowed host CPUs (a SEQUENCE OF: order kept).
    pub cpuids: Vec<i64>,
    /// Maximum number of running unikernels.
    pub unikernels: i64,
    /// MB in total.
    pub memory: i64,
    /// MB of block storage; absent = no block devices allowed.
    pub block: Option<i64>,
    pub bridges: Vec<String>,
}

impl FailBehaviour {
    fn canonicalize(&mut self) {
        if let FailBehaviour::Restart { exit_codes } = self {
            der_sort(exit_codes, |w, c| w.int(*c));
        }
    }
}

impl UnikernelConfig {
    /// Put every SET OF in DER order (what the encoder writes, hence what decoding
    /// an albatross message yields), so configs compare equal as sets.
    pub fn canonicalize(&mut self) {
        self.fail_behaviour.canonicalize();
        der_sort(&mut self.cpuids, |w, c| w.int(*c));
        der_sort(&mut self.block_devices, encode_block_spec);
        der_sort(&mut self.bridges, encode_net_spec);
    }
}

impl UnikernelArguments {
    /// See [`UnikernelConfig::canonicalize`].
    pub fn canonicalize(&mut self) {
        self.fail_behaviour.canonicalize();
        der_sort(&mut self.cpuids, |w, c| w.int(*c));
        der_sort(&mut self.block_devices, encode_block_spec);
        der_sort(&mut self.bridges, encode_net_spec);
    }
}

// ---- decoding -------------------------------------------------------------------

pub(crate) fn decode_typ(r: &mut Reader<'_>) -> der::Result<Typ> {
    const F: &str = "config.typ";
    let (tag, tlv) = r.choice(F)?;
    let typ = match tag {
        0 => Typ::Solo5,
        1 => Typ::Bhyve,
        tag => {
            return Err(r.err(
                tlv.offset,
                F,
                DecodeErrorKind::UnknownAlternative { choice: "typ", tag },
            ));
        }
    };
    r.explicit_null(&tlv, F)?;
    Ok(typ)
}

pub(crate) fn decode_fail(r: &mut Reader<'_>) -> der::Result<FailBehaviour> {
    const F: &str = "config.fail_behaviour";
    let (tag, tlv) = r.choice(F)?;
    match tag {
        0 => {
            r.explicit_null(&tlv, F)?;
            Ok(FailBehaviour::Quit)
        }
        1 => {
            let mut inner = r.explicit_content(&tlv, F)?;
            let codes = inner
                .set(F)?
                .many(|r| r.int("config.fail_behaviour.exit_code"))?;
            inner.finish(F)?;
            Ok(FailBehaviour::Restart { exit_codes: codes })
        }
        tag => Err(r.err(
            tlv.offset,
            F,
            DecodeErrorKind::UnknownAlternative {
                choice: "fail_behaviour",
                tag,
            },
        )),
    }
}

pub(crate) fn decode_mac(r: &mut Reader<'_>, field: &'static str) -> der::Result<Mac> {
    let offset = r.offset();
    let bytes = r.octets(field)?;
    let mac: [u8; 6] = bytes
        .try_into()
        .map_err(|_| r.err(offset, field, DecodeErrorKind::BadMacLength(bytes.len())))?;
    Ok(Mac(mac))
}

fn decode_block_spec(r: &mut Reader<'_>) -> der::Result<BlockSpec> {
    const F: &str = "config.block_devices";
    let mut s = r.sequence(F)?;
    let name = s.utf8("config.block_devices.name")?;
    let device = if s.next_is_universal(der::UTF8_STRING) {
        Some(s.utf8("config.block_devices.device")?)
    } else {
        None
    };
    let sector_size = if s.next_is_universal(der::INTEGER) {
        Some(s.int("config.block_devices.sector_size")?)
    } else {
        None
    };
    s.finish(F)?;
    Ok(BlockSpec {
        name,
        device,
        sector_size,
    })
}

fn decode_net_spec(r: &mut Reader<'_>) -> der::Result<NetSpec> {
    const F: &str = "config.bridges";
    let mut s = r.sequence(F)?;
    let name = s.utf8("config.bridges.name")?;
    let host_device = if s.next_is_universal(der::UTF8_STRING) {
        Some(s.utf8("config.bridges.host_device")?)
    } else {
        None
    };
    let mac = if s.is_empty() {
        None
    } else {
        Some(decode_mac(&mut s, "config.bridges.mac")?)
    };
    s.finish(F)?;
    Ok(NetSpec {
        name,
        host_device,
        mac,
    })
}

/// The optional tail shared by configs and restart arguments.
struct Tail {
    blocks: Vec<BlockSpec>,
    bridges: Vec<NetSpec>,
    argv: Vec<String>,
    numcpus: Option<i64>,
    linux_boot_partition: Option<String>,
}

fn decode_tail(r: &mut Reader<'_>) -> der::Result<Tail> {
    let blocks = r
        .opt_explicit(0, "config.block_devices", |r| {
            r.set("config.block_devices")?.many(decode_block_spec)
        })?
        .unwrap_or_default();
    let bridges = r
        .opt_explicit(1, "config.bridges", |r| {
            r.set("config.bridges")?.many(decode_net_spec)
        })?
        .unwrap_or_default();
    let argv = r
        .opt_explicit(2, "config.argv", |r| {
            r.sequence("config.argv")?.many(|r| r.utf8("config.argv"))
        })?
        .unwrap_or_default();
    let numcpus = r.opt_explicit(3, "config.numcpus", |r| r.int("config.numcpus"))?;
    let linux_boot_partition = r.opt_explicit(4, "config.linux_boot_partition", |r| {
        r.utf8("config.linux_boot_partition")
    })?;
    Ok(Tail {
        blocks,
        bridges,
        argv,
        numcpus,
        linux_boot_partition,
    })
}

fn decode_startup(r: &mut Reader<'_>) -> der::Result<Option<i64>> {
    if r.next_is_universal(der::INTEGER) {
        Ok(Some(r.int("config.startup")?))
    } else {
        Ok(None)
    }
}

pub(crate) fn decode_config(r: &mut Reader<'_>) -> der::Result<UnikernelConfig> {
    const F: &str = "config";
    let mut s = r.sequence(F)?;
    let typ = decode_typ(&mut s)?;
    let compressed = s.bool("config.compressed")?;
    let image = s.octets("config.image")?.to_vec();
    let startup = decode_startup(&mut s)?;
    let add_name = s.bool("config.add_name")?;
    let fail_behaviour = decode_fail(&mut s)?;
    let cpuids = s.set("config.cpuids")?.many(|r| r.int("config.cpuids"))?;
    let memory = s.int("config.memory")?;
    let t = decode_tail(&mut s)?;
    s.finish(F)?;
    Ok(UnikernelConfig {
        typ,
        compressed,
        image,
        startup,
        add_name,
        fail_behaviour,
        cpuids,
        memory,
        block_devices: t.blocks,
        bridges: t.bridges,
        argv: t.argv,
        numcpus: t.numcpus,
        linux_boot_partition: t.linux_boot_partition,
    })
}

pub(crate) fn decode_arguments(r: &mut Reader<'_>) -> der::Result<UnikernelArguments> {
    const F: &str = "restart.arguments";
    let mut s = r.sequence(F)?;
    let fail_behaviour = decode_fail(&mut s)?;
    let startup = decode_startup(&mut s)?;
    let add_name = s.bool("restart.arguments.add_name")?;
    let cpuids = s
        .set("restart.arguments.cpuids")?
        .many(|r| r.int("config.cpuids"))?;
    let memory = s.int("restart.arguments.memory")?;
    let t = decode_tail(&mut s)?;
    s.finish(F)?;
    Ok(UnikernelArguments {
        fail_behaviour,
        startup,
        add_name,
        cpuids,
        memory,
        block_devices: t.blocks,
        bridges: t.bridges,
        argv: t.argv,
        numcpus: t.numcpus,
        linux_boot_partition: t.linux_boot_partition,
    })
}

pub(crate) fn decode_policy(r: &mut Reader<'_>) -> der::Result<Policy> {
    const F: &str = "policy";
    let mut s = r.sequence(F)?;
    let cpuids = s
        .sequence("policy.cpuids")?
        .many(|r| r.int("policy.cpuids"))?;
    let unikernels = s.int("policy.unikernels")?;
    let memory = s.int("policy.memory")?;
    let block = if s.next_is_universal(der::INTEGER) {
        Some(s.int("policy.block")?)
    } else {
        None
    };
    let bridges = s
        .sequence("policy.bridges")?
        .many(|r| r.utf8("policy.bridges"))?;
    s.finish(F)?;
    Ok(Policy {
        cpuids,
        unikernels,
        memory,
        block,
        bridges,
    })
}

// ---- encoding -------------------------------------------------------------------

pub(crate) fn encode_typ(w: &mut Writer, t: Typ) {
    w.explicit_null(match t {
        Typ::Solo5 => 0,
        Typ::Bhyve => 1,
    });
}

pub(crate) fn encode_fail(w: &mut Writer, f: &FailBehaviour) {
    match f {
        FailBehaviour::Quit => w.explicit_null(0),
        FailBehaviour::Restart { exit_codes } => {
            w.explicit(1, |w| w.set_of(exit_codes, |w, c| w.int(*c)));
        }
    }
}

fn encode_block_spec(w: &mut Writer, b: &BlockSpec) {
    w.sequence(|w| {
        w.utf8(b.name.as_bytes());
        if let Some(d) = &b.device {
            w.utf8(d.as_bytes());
        }
        if let Some(s) = b.sector_size {
            w.int(s);
        }
    });
}

fn encode_net_spec(w: &mut Writer, n: &NetSpec) {
    w.sequence(|w| {
        w.utf8(n.name.as_bytes());
        if let Some(h) = &n.host_device {
            w.utf8(h.as_bytes());
        }
        if let Some(m) = n.mac {
            w.octets(&m.0);
        }
    });
}

fn encode_tail(
    w: &mut Writer,
    blocks: &[BlockSpec],
    bridges: &[NetSpec],
    argv: &[String],
    numcpus: Option<i64>,
    linux_boot_partition: Option<&String>,
) {
    // Empty lists are omitted, as albatross' encoder does.
    if !blocks.is_empty() {
        w.explicit(0, |w| w.set_of(blocks, encode_block_spec));
    }
    if !bridges.is_empty() {
        w.explicit(1, |w| w.set_of(bridges, encode_net_spec));
    }
    if !argv.is_empty() {
        w.explicit(2, |w| w.sequence_of(argv, |w, a| w.utf8(a.as_bytes())));
    }
    if let Some(n) = numcpus {
        w.explicit_int(3, n);
    }
    if let Some(p) = linux_boot_partition {
        w.explicit(4, |w| w.utf8(p.as_bytes()));
    }
}

pub(crate) fn encode_config(w: &mut Writer, c: &UnikernelConfig) {
    w.sequence(|w| {
        encode_typ(w, c.typ);
        w.bool(c.compressed);
        w.octets(&c.image);
        if let Some(s) = c.startup {
            w.int(s);
        }
        w.bool(c.add_name);
        encode_fail(w, &c.fail_behaviour);
        w.set_of(&c.cpuids, |w, c| w.int(*c));
        w.int(c.memory);
        encode_tail(
            w,
            &c.block_devices,
            &c.bridges,
            &c.argv,
            c.numcpus,
            c.linux_boot_partition.as_ref(),
        );
    });
}

pub(crate) fn encode_arguments(w: &mut Writer, a: &UnikernelArguments) {
    w.sequence(|w| {
        encode_fail(w, &a.fail_behaviour);
        if let Some(s) = a.startup {
            w.int(s);
        }
        w.bool(a.add_name);
        w.set_of(&a.cpuids, |w, c| w.int(*c));
        w.int(a.memory);
        encode_tail(
            w,
            &a.block_devices,
            &a.bridges,
            &a.argv,
            a.numcpus,
            a.linux_boot_partition.as_ref(),
        );
    });
}

pub(crate) fn encode_policy(w: &mut Writer, p: &Policy) {
    w.sequence(|w| {
        w.sequence_of(&p.cpuids, |w, c| w.int(*c));
        w.int(p.unikernels);
        w.int(p.memory);
        if let Some(b) = p.block {
            w.int(b);
        }
        w.sequence_of(&p.bridges, |w, b| w.utf8(b.as_bytes()));
    });
}
