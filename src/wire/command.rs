//! Commands (protocol §3.3): `WireCommand ::= CHOICE { console [0], statistics [1],
//! log [2] (removed), unikernel [3], policy [4], block [5] }`, each a CHOICE itself.
//! Nesting has no wire form, so the domain type is one flat enum.

use serde::Serialize;

use super::config::{
    Policy, UnikernelArguments, UnikernelConfig, decode_arguments, decode_config, decode_policy,
    encode_arguments, encode_config, encode_policy,
};
use super::der::{self, Reader, Tlv, Writer};
use super::error::DecodeErrorKind;
use super::time::Time;

/// Where a console subscription starts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsoleStart {
    /// `since [0]`: every buffered line not older than this.
    Since(Time),
    /// `count [1]`: the last N lines (capped at 1024 by albatross).
    Count(i64),
}

/// A tap of a `stats add` (daemon-internal).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StatsTap {
    pub bridge: String,
    pub tap: String,
}

/// Every command of the current grammar. The old create/info encodings of
/// albatross < 2.7 are not decoded (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Command {
    /// `console [0] add [0]` (daemon-internal): ring buffers for the path.
    ConsoleAdd { limit: i64 },
    /// `console [0] subscribe [2]`.
    ConsoleSubscribe { start: ConsoleStart },
    /// `console [0] list-inactive [3]`.
    ConsoleListInactive,
    /// `statistics [1] add [0]` (daemon-internal).
    StatsAdd {
        vmmdev: String,
        pid: i64,
        network: Vec<StatsTap>,
    },
    /// `statistics [1] remove [1]` (daemon-internal).
    StatsRemove,
    /// `statistics [1] subscribe [2]`.
    StatsSubscribe,
    /// `statistics [1] initial [3]` (daemon-internal).
    StatsInitial,
    /// `unikernel [3] destroy [3]`.
    UnikernelDestroy,
    /// `unikernel [3] get [11]` with a compression level 0..=9.
    UnikernelGet { level: i64 },
    /// `unikernel [3] restart [14]`: `None` = no-arguments [0], else arguments [3].
    UnikernelRestart {
        arguments: Option<Box<UnikernelArguments>>,
    },
    /// `unikernel [3] info [19]`.
    UnikernelInfo,
    /// `unikernel [3] create [20]`.
    UnikernelCreate { config: Box<UnikernelConfig> },
    /// `unikernel [3] force-create [21]`.
    UnikernelForceCreate { config: Box<UnikernelConfig> },
    /// `policy [4] info [0]`.
    PolicyInfo,
    /// `policy [4] add [1]`.
    PolicyAdd { policy: Policy },
    /// `policy [4] remove [2]`.
    PolicyRemove,
    /// `block [5] info [0]`.
    BlockInfo,
    /// `block [5] add [1]`, size in MB.
    BlockAdd { size: i64 },
    /// `block [5] remove [2]`.
    BlockRemove,
    /// `block [5] dump [6]`, compression level.
    BlockDump { level: i64 },
    /// `block [5] set [7]`: the uploaded data is zlib-compressed.
    BlockSet { compressed: bool },
}

fn unknown(r: &Reader<'_>, tlv: &Tlv<'_>, field: &'static str, choice: &'static str) -> der::Error {
    r.err(
        tlv.offset,
        field,
        DecodeErrorKind::UnknownAlternative {
            choice,
            tag: tlv.info().number,
        },
    )
}

/// Decode a `WireCommand` (the next element of `r`).
pub(crate) fn decode_command(r: &mut Reader<'_>) -> der::Result<Command> {
    const F: &str = "command";
    let (tag, tlv) = r.choice(F)?;
    let mut inner = r.explicit_content(&tlv, F)?;
    let cmd = match tag {
        0 => decode_console(&mut inner)?,
        1 => decode_stats_cmd(&mut inner)?,
        2 => {
            return Err(r.err(tlv.offset, F, DecodeErrorKind::Removed("the log command")));
        }
        3 => decode_unikernel(&mut inner)?,
        4 => decode_policy_cmd(&mut inner)?,
        5 => decode_block(&mut inner)?,
        _ => return Err(unknown(r, &tlv, F, "command")),
    };
    inner.finish(F)?;
    Ok(cmd)
}

fn decode_console(r: &mut Reader<'_>) -> der::Result<Command> {
    const F: &str = "command.console";
    let (tag, tlv) = r.choice(F)?;
    Ok(match tag {
        0 => Command::ConsoleAdd {
            limit: r.explicit_int(&tlv, "command.console.add")?,
        },
        2 => {
            let mut inner = r.explicit_content(&tlv, "command.console.subscribe")?;
            let (stag, stlv) = inner.choice("command.console.subscribe")?;
            let start = match stag {
                0 => {
                    let mut c = inner.explicit_content(&stlv, "command.console.subscribe.since")?;
                    let t = Time::decode(&mut c, "command.console.subscribe.since")?;
                    c.finish("command.console.subscribe.since")?;
                    ConsoleStart::Since(t)
                }
                1 => ConsoleStart::Count(
                    inner.explicit_int(&stlv, "command.console.subscribe.count")?,
                ),
                _ => {
                    return Err(unknown(
                        r,
                        &stlv,
                        "command.console.subscribe",
                        "console subscribe",
                    ));
                }
            };
            inner.finish("command.console.subscribe")?;
            Command::ConsoleSubscribe { start }
        }
        3 => {
            r.explicit_null(&tlv, "command.console.list_inactive")?;
            Command::ConsoleListInactive
        }
        _ => return Err(unknown(r, &tlv, F, "console command")),
    })
}

fn decode_stats_cmd(r: &mut Reader<'_>) -> der::Result<Command> {
    const F: &str = "command.stats";
    let (tag, tlv) = r.choice(F)?;
    Ok(match tag {
        0 => {
            const A: &str = "command.stats.add";
            let mut inner = r.explicit_content(&tlv, A)?;
            let mut s = inner.sequence(A)?;
            let vmmdev = s.utf8("command.stats.add.vmmdev")?;
            let pid = s.int("command.stats.add.pid")?;
            let network = s.sequence("command.stats.add.network")?.many(|r| {
                let mut t = r.sequence("command.stats.add.network")?;
                let bridge = t.utf8("command.stats.add.network.bridge")?;
                let tap = t.utf8("command.stats.add.network.tap")?;
                t.finish("command.stats.add.network")?;
                Ok(StatsTap { bridge, tap })
            })?;
            s.finish(A)?;
            inner.finish(A)?;
            Command::StatsAdd {
                vmmdev,
                pid,
                network,
            }
        }
        1 => {
            r.explicit_null(&tlv, "command.stats.remove")?;
            Command::StatsRemove
        }
        2 => {
            r.explicit_null(&tlv, "command.stats.subscribe")?;
            Command::StatsSubscribe
        }
        3 => {
            r.explicit_null(&tlv, "command.stats.initial")?;
            Command::StatsInitial
        }
        _ => return Err(unknown(r, &tlv, F, "stats command")),
    })
}

fn decode_unikernel(r: &mut Reader<'_>) -> der::Result<Command> {
    const F: &str = "command.unikernel";
    let (tag, tlv) = r.choice(F)?;
    Ok(match tag {
        3 => {
            r.explicit_null(&tlv, "command.unikernel.destroy")?;
            Command::UnikernelDestroy
        }
        11 => Command::UnikernelGet {
            level: r.explicit_int(&tlv, "command.unikernel.get")?,
        },
        14 => {
            const R: &str = "command.unikernel.restart";
            let mut inner = r.explicit_content(&tlv, R)?;
            let (rtag, rtlv) = inner.choice(R)?;
            let arguments = match rtag {
                0 => {
                    inner.explicit_null(&rtlv, R)?;
                    None
                }
                3 => {
                    let mut c = inner.explicit_content(&rtlv, R)?;
                    let a = decode_arguments(&mut c)?;
                    c.finish(R)?;
                    Some(Box::new(a))
                }
                _ => return Err(unknown(r, &rtlv, R, "restart arguments")),
            };
            inner.finish(R)?;
            Command::UnikernelRestart { arguments }
        }
        19 => {
            r.explicit_null(&tlv, "command.unikernel.info")?;
            Command::UnikernelInfo
        }
        20 | 21 => {
            let mut inner = r.explicit_content(&tlv, "command.unikernel.create")?;
            let config = Box::new(decode_config(&mut inner)?);
            inner.finish("command.unikernel.create")?;
            if tag == 20 {
                Command::UnikernelCreate { config }
            } else {
                Command::UnikernelForceCreate { config }
            }
        }
        _ => return Err(unknown(r, &tlv, F, "unikernel command")),
    })
}

fn decode_policy_cmd(r: &mut Reader<'_>) -> der::Result<Command> {
    const F: &str = "command.policy";
    let (tag, tlv) = r.choice(F)?;
    Ok(match tag {
        0 => {
            r.explicit_null(&tlv, "command.policy.info")?;
            Command::PolicyInfo
        }
        1 => {
            let mut inner = r.explicit_content(&tlv, "command.policy.add")?;
            let policy = decode_policy(&mut inner)?;
            inner.finish("command.policy.add")?;
            Command::PolicyAdd { policy }
        }
        2 => {
            r.explicit_null(&tlv, "command.policy.remove")?;
            Command::PolicyRemove
        }
        _ => return Err(unknown(r, &tlv, F, "policy command")),
    })
}

fn decode_block(r: &mut Reader<'_>) -> der::Result<Command> {
    const F: &str = "command.block";
    let (tag, tlv) = r.choice(F)?;
    Ok(match tag {
        0 => {
            r.explicit_null(&tlv, "command.block.info")?;
            Command::BlockInfo
        }
        1 => Command::BlockAdd {
            size: r.explicit_int(&tlv, "command.block.add")?,
        },
        2 => {
            r.explicit_null(&tlv, "command.block.remove")?;
            Command::BlockRemove
        }
        6 => Command::BlockDump {
            level: r.explicit_int(&tlv, "command.block.dump")?,
        },
        7 => Command::BlockSet {
            compressed: r.explicit_bool(&tlv, "command.block.set")?,
        },
        _ => return Err(unknown(r, &tlv, F, "block command")),
    })
}

/// Encode a `WireCommand`.
pub(crate) fn encode_command(w: &mut Writer, c: &Command) {
    match c {
        Command::ConsoleAdd { limit } => w.explicit(0, |w| w.explicit_int(0, *limit)),
        Command::ConsoleSubscribe { start } => w.explicit(0, |w| {
            w.explicit(2, |w| match start {
                ConsoleStart::Since(t) => w.explicit(0, |w| t.encode(w)),
                ConsoleStart::Count(n) => w.explicit_int(1, *n),
            });
        }),
        Command::ConsoleListInactive => w.explicit(0, |w| w.explicit_null(3)),
        Command::StatsAdd {
            vmmdev,
            pid,
            network,
        } => w.explicit(1, |w| {
            w.explicit(0, |w| {
                w.sequence(|w| {
                    w.utf8(vmmdev.as_bytes());
                    w.int(*pid);
                    w.sequence_of(network, |w, t| {
                        w.sequence(|w| {
                            w.utf8(t.bridge.as_bytes());
                            w.utf8(t.tap.as_bytes());
                        });
                    });
                });
            });
        }),
        Command::StatsRemove => w.explicit(1, |w| w.explicit_null(1)),
        Command::StatsSubscribe => w.explicit(1, |w| w.explicit_null(2)),
        Command::StatsInitial => w.explicit(1, |w| w.explicit_null(3)),
        Command::UnikernelDestroy => w.explicit(3, |w| w.explicit_null(3)),
        Command::UnikernelGet { level } => w.explicit(3, |w| w.explicit_int(11, *level)),
        Command::UnikernelRestart { arguments } => w.explicit(3, |w| {
            w.explicit(14, |w| match arguments {
                None => w.explicit_null(0),
                Some(a) => w.explicit(3, |w| encode_arguments(w, a)),
            });
        }),
        Command::UnikernelInfo => w.explicit(3, |w| w.explicit_null(19)),
        Command::UnikernelCreate { config } => {
            w.explicit(3, |w| w.explicit(20, |w| encode_config(w, config)));
        }
        Command::UnikernelForceCreate { config } => {
            w.explicit(3, |w| w.explicit(21, |w| encode_config(w, config)));
        }
        Command::PolicyInfo => w.explicit(4, |w| w.explicit_null(0)),
        Command::PolicyAdd { policy } => {
            w.explicit(4, |w| w.explicit(1, |w| encode_policy(w, policy)))
        }
        Command::PolicyRemove => w.explicit(4, |w| w.explicit_null(2)),
        Command::BlockInfo => w.explicit(5, |w| w.explicit_null(0)),
        Command::BlockAdd { size } => w.explicit(5, |w| w.explicit_int(1, *size)),
        Command::BlockRemove => w.explicit(5, |w| w.explicit_null(2)),
        Command::BlockDump { level } => w.explicit(5, |w| w.explicit_int(6, *level)),
        Command::BlockSet { compressed } => {
            w.explicit(5, |w| w.explicit(7, |w| w.bool(*compressed)));
        }
    }
}
