//! `decode`: the codec's public face for operators. A framed stream (`decode FILE`)
//! becomes JSON Lines, one object per frame; `--hex` decodes one DER message (or a
//! certificate extension value); `--cert` summarises certificates and decodes the
//! albatross command they carry. On malformed input everything decoded so far is
//! printed, then the error (frame index, byte offset, reason) goes to stderr and the
//! exit code is non-zero.

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use serde::Serialize;
use serde_json::{Value, json};

use crate::wire::{self, Frame, FrameDecoder, Message};

/// Arguments.
#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("input").required(true).args(["file", "hex", "cert"])))]
pub struct Args {
    /// Framed albatross stream (e.g. a capture of a TLS or unix-socket session).
    pub file: Option<PathBuf>,
    /// One DER message in hex (whitespace allowed); a certificate extension value
    /// (`SEQUENCE { INTEGER 5, command }`) is recognised too.
    #[arg(long, value_name = "HEX")]
    pub hex: Option<String>,
    /// Certificate file (PEM, possibly a chain, or DER): subject, validity and the
    /// decoded albatross command.
    #[arg(long, value_name = "FILE.pem")]
    pub cert: Option<PathBuf>,
    /// Largest frame accepted, in bytes.
    #[arg(long, default_value_t = wire::DEFAULT_MAX_FRAME)]
    pub max_frame: usize,
}

/// Run the subcommand.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let stdout = io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    let code = if let Some(hex) = &args.hex {
        decode_hex(hex, &mut out)?
    } else if let Some(path) = &args.cert {
        decode_cert(path, &mut out)?
    } else if let Some(path) = &args.file {
        let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
        decode_stream(file, args.max_frame, &mut out)?
    } else {
        anyhow::bail!("give a FILE, --hex or --cert");
    };
    out.flush()?;
    Ok(code)
}

#[derive(Serialize)]
struct FrameJson<'a> {
    index: usize,
    offset: u64,
    length: usize,
    #[serde(flatten)]
    message: &'a Message,
}

fn line(out: &mut impl Write, v: &impl Serialize) -> anyhow::Result<()> {
    serde_json::to_writer(&mut *out, v)?;
    out.write_all(b"\n")?;
    Ok(())
}

/// Report on stderr after flushing what was decoded, and fail.
fn fail(out: &mut impl Write, msg: String) -> anyhow::Result<ExitCode> {
    out.flush()?;
    eprintln!("error: {msg}");
    Ok(ExitCode::FAILURE)
}

/// Decode a framed stream read in chunks (the decoder is sans-IO).
pub fn decode_stream(
    mut input: impl Read,
    max_frame: usize,
    out: &mut impl Write,
) -> anyhow::Result<ExitCode> {
    let mut dec = FrameDecoder::new(max_frame);
    let mut chunk = vec![0u8; 64 * 1024];
    let mut total: u64 = 0;
    let mut ended_at = None;
    loop {
        let n = input.read(&mut chunk).context("reading input")?;
        total += n as u64;
        if ended_at.is_none() {
            dec.push(chunk.get(..n).unwrap_or_default());
        }
        loop {
            match dec.next_frame() {
                Ok(None) => break,
                Ok(Some(Frame::Message {
                    index,
                    offset,
                    body,
                })) => match wire::decode(&body) {
                    Ok(message) => line(
                        out,
                        &FrameJson {
                            index,
                            offset,
                            length: body.len(),
                            message: &message,
                        },
                    )?,
                    Err(e) => {
                        let at = offset + 4 + e.offset as u64;
                        return fail(
                            out,
                            format!(
                                "frame {index} at byte {at} (byte {} of its body): {}: {}",
                                e.offset, e.field, e.kind
                            ),
                        );
                    }
                },
                Ok(Some(Frame::End {
                    index,
                    offset,
                    length,
                })) => {
                    line(
                        out,
                        &json!({"index": index, "offset": offset, "end_of_stream": {"length_prefix": length}}),
                    )?;
                    ended_at = Some(offset + 4);
                }
                Err(e) => return fail(out, e.to_string()),
            }
        }
        if n == 0 {
            break;
        }
    }
    if let Some(end) = ended_at {
        // Albatross stops reading at the marker; say so if anything follows.
        if total > end {
            out.flush()?;
            eprintln!(
                "note: {} byte(s) after the end-of-stream marker at byte {} were not decoded",
                total - end,
                end - 4
            );
        }
    }
    match dec.finish() {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) => fail(out, e.to_string()),
    }
}

fn parse_hex(text: &str) -> anyhow::Result<Vec<u8>> {
    let digits: Vec<u8> = text
        .trim()
        .trim_start_matches("0x")
        .bytes()
        .filter(|b| !b.is_ascii_whitespace() && *b != b':')
        .collect();
    anyhow::ensure!(digits.len().is_multiple_of(2), "odd number of hex digits");
    digits
        .chunks_exact(2)
        .enumerate()
        .map(|(i, pair)| {
            std::str::from_utf8(pair)
                .ok()
                .and_then(|s| u8::from_str_radix(s, 16).ok())
                .with_context(|| format!("not a hex byte at position {}", i * 2))
        })
        .collect()
}

fn decode_hex(text: &str, out: &mut impl Write) -> anyhow::Result<ExitCode> {
    let der = parse_hex(text)?;
    match wire::decode(&der) {
        Ok(m) => {
            line(out, &m)?;
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => match wire::decode_cert_extension(&der) {
            Ok((version, command)) => {
                line(
                    out,
                    &json!({"cert_extension": {"version": version, "command": command}}),
                )?;
                Ok(ExitCode::SUCCESS)
            }
            Err(_) => fail(out, format!("byte {}: {}: {}", e.offset, e.field, e.kind)),
        },
    }
}

fn rfc3339(t: ::time::OffsetDateTime) -> String {
    t.format(&::time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

fn decode_cert(path: &PathBuf, out: &mut impl Write) -> anyhow::Result<ExitCode> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    decode_cert_bytes(&bytes, &path.display().to_string(), out)
}

/// `decode --cert` on the file's contents `bytes` (a PEM chain, leaf first, or one
/// DER certificate); `what` names the file in messages. Public for the `cert_chain`
/// fuzz target.
pub fn decode_cert_bytes(
    bytes: &[u8],
    what: &str,
    out: &mut impl Write,
) -> anyhow::Result<ExitCode> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;

    let mut certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(bytes)
        .collect::<Result<_, _>>()
        .with_context(|| format!("reading PEM from {what}"))?;
    if certs.is_empty() {
        if bytes.first() != Some(&0x30) {
            // Neither PEM nor DER (a DER certificate is a SEQUENCE: 0x30).
            return fail(
                out,
                format!(
                    "{what}: no certificate: neither PEM (-----BEGIN CERTIFICATE-----) nor DER"
                ),
            );
        }
        // Not PEM: a single DER certificate.
        certs.push(CertificateDer::from(bytes.to_vec()));
    }
    let mut failed = false;
    for (index, der) in certs.iter().enumerate() {
        let s = match crate::cert::summary(der) {
            Ok(s) => s,
            Err(e) => return fail(out, format!("certificate {index}: {e}")),
        };
        let extension = match &s.extension {
            None => Value::Null,
            Some((critical, value)) => match wire::decode_cert_extension(value) {
                Ok((version, command)) => json!({
                    "oid": crate::cert::ALBATROSS_OID,
                    "critical": critical,
                    "version": version,
                    "command": command,
                }),
                Err(e) => {
                    failed = true;
                    eprintln!("error: certificate {index}: albatross extension: {e}");
                    json!({"oid": crate::cert::ALBATROSS_OID, "critical": critical, "error": e.to_string()})
                }
            },
        };
        line(
            out,
            &json!({
                "index": index,
                "subject_cn": s.subject_cn,
                "issuer_cn": s.issuer_cn,
                "serial_hex": s.serial_hex,
                "not_before": rfc3339(s.not_before),
                "not_after": rfc3339(s.not_after),
                "is_ca": s.is_ca,
                "albatross_extension": extension,
            }),
        )?;
    }
    // What albatross' endpoint would derive from this chain (leaf first).
    if let Ok(view) = crate::cert::name_from_chain(&certs) {
        let n = &view.name;
        line(
            out,
            &json!({"chain": {
                "name": {"string": n.to_string(), "path": n.path, "label": n.label},
                "policy_paths": view.policies.iter().map(|p| p.path.to_string()).collect::<Vec<_>>(),
            }}),
        )?;
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
