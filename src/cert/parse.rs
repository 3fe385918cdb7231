//! Reading certificates: the albatross extension, a summary for operators, and the
//! name albatross derives from a chain.

use rustls_pki_types::CertificateDer;
use x509_parser::oid_registry::Oid;
use x509_parser::prelude::*;

use super::{ALBATROSS_OID_ARCS, CertError};
use crate::name::{self, Name};

/// albatross refuses chains of this many certificates or more (§2.3).
pub const MAX_CHAIN_LEN: usize = 10;

fn albatross_oid() -> Oid<'static> {
    // The arcs are constants that encode; the fallback is unreachable in practice and
    // would only make lookups miss, never panic.
    Oid::from(&ALBATROSS_OID_ARCS).unwrap_or_else(|_| Oid::new(std::borrow::Cow::Borrowed(&[])))
}

fn parse<'a>(der: &'a [u8], what: &str) -> Result<X509Certificate<'a>, CertError> {
    let (rest, cert) = parse_x509_certificate(der).map_err(|e| CertError::Parse {
        what: what.to_string(),
        reason: e.to_string(),
    })?;
    if !rest.is_empty() {
        return Err(CertError::Parse {
            what: what.to_string(),
            reason: format!("{} trailing bytes after the certificate", rest.len()),
        });
    }
    Ok(cert)
}

fn extension_of(
    cert: &X509Certificate<'_>,
    what: &str,
) -> Result<Option<(bool, Vec<u8>)>, CertError> {
    match cert.get_extension_unique(&albatross_oid()) {
        Ok(Some(ext)) => Ok(Some((ext.critical, ext.value.to_vec()))),
        Ok(None) => Ok(None),
        Err(_) => Err(CertError::DuplicateExtension {
            what: what.to_string(),
        }),
    }
}

fn common_name(cert: &X509Certificate<'_>, what: &str) -> Result<Option<String>, CertError> {
    match cert.subject().iter_common_name().next() {
        None => Ok(None),
        Some(cn) => cn
            .as_str()
            .map(|s| Some(s.to_string()))
            .map_err(|e| CertError::Parse {
                what: what.to_string(),
                reason: format!("common name is not a string: {e}"),
            }),
    }
}

/// The albatross extension of a DER certificate: `(critical, value)` where value is
/// the extnValue contents (`SEQUENCE { INTEGER version, command }`), or `None`.
/// A certificate carrying the extension twice is an error, as for albatross.
pub fn albatross_extension(cert_der: &[u8]) -> Result<Option<(bool, Vec<u8>)>, CertError> {
    let cert = parse(cert_der, "certificate")?;
    extension_of(&cert, "certificate")
}

/// What `decode --cert` prints besides the decoded command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertSummary {
    pub subject_cn: Option<String>,
    pub issuer_cn: Option<String>,
    pub serial_hex: String,
    pub not_before: ::time::OffsetDateTime,
    pub not_after: ::time::OffsetDateTime,
    pub is_ca: bool,
    /// `(critical, value)` of the albatross extension.
    pub extension: Option<(bool, Vec<u8>)>,
}

/// Summarise one DER certificate.
pub fn summary(cert_der: &[u8]) -> Result<CertSummary, CertError> {
    // Names what is parsed in `cannot parse certificate {what}: ...`.
    let what = "(DER)";
    let cert = parse(cert_der, what)?;
    let issuer_cn = cert
        .issuer()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_string);
    let is_ca = cert
        .basic_constraints()
        .ok()
        .flatten()
        .is_some_and(|bc| bc.value.ca);
    Ok(CertSummary {
        subject_cn: common_name(&cert, what)?,
        issuer_cn,
        serial_hex: cert
            .raw_serial()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
        not_before: cert.validity().not_before.to_datetime(),
        not_after: cert.validity().not_after.to_datetime(),
        is_ca,
        extension: extension_of(&cert, what)?,
    })
}

/// A policy certificate found in a chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyCert {
    /// The path this policy applies to (the CNs down to and including this one).
    pub path: Name,
    /// Its albatross extension value (should decode to `policy add`).
    pub extension: Vec<u8>,
}

/// What albatross' TLS endpoint derives from a verified chain (§2.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainView {
    pub name: Name,
    /// Root-most first, as collected (albatross applies them deepest first).
    pub policies: Vec<PolicyCert>,
    /// The leaf's extension value: `SEQUENCE { INTEGER version, command }`.
    pub command: Vec<u8>,
}

/// The policies of CA certificates in chain order (issuer first, `(index in the
/// input, certificate)`), walked root-most first as albatross does: one without the
/// albatross extension is ignored (a root CA someone sent along); one with it adds
/// its CN (a label, lower-cased) to the path.
pub(super) fn policies_of(
    chain: &[(usize, &CertificateDer<'_>)],
) -> Result<Vec<PolicyCert>, CertError> {
    let mut path = Vec::new();
    let mut policies = Vec::new();
    for (i, der) in chain.iter().rev() {
        let what = format!("#{i} (intermediate)");
        let cert = parse(der, &what)?;
        let Some((_critical, ext)) = extension_of(&cert, &what)? else {
            continue;
        };
        let cn = common_name(&cert, &what)?
            .ok_or_else(|| CertError::PolicyWithoutName { what: what.clone() })?;
        path.push(name::label(&cn).map_err(|source| CertError::BadName { what, source })?);
        policies.push(PolicyCert {
            path: Name::new(path.clone(), None),
            extension: ext,
        });
    }
    Ok(policies)
}

/// Derive `(name, policies, command)` from a chain, leaf first, as albatross does.
/// The chain is the one its verifier builds ([`super::chain_order`]): the leaf, its
/// issuer among the other certificates, and so on, repeats and certificates off the
/// chain dropped; it must be shorter than [`MAX_CHAIN_LEN`]. The intermediates give
/// the path (`policies_of`). The leaf must carry the extension; its CN is the
/// label, or `.`/`:`/absent for the path itself.
///
/// The caller decodes the extension values (policy add in intermediates, a command
/// allowed in leaves) with the wire codec.
pub fn name_from_chain(chain: &[CertificateDer<'_>]) -> Result<ChainView, CertError> {
    let Some(leaf) = chain.first() else {
        return Err(CertError::EmptyChain);
    };
    let order = super::chain_order(chain);
    if order.len() >= MAX_CHAIN_LEN {
        return Err(CertError::ChainTooLong {
            len: order.len(),
            max: MAX_CHAIN_LEN,
        });
    }
    let intermediates: Vec<_> = order.iter().skip(1).map(|&i| (i, &chain[i])).collect();
    let policies = policies_of(&intermediates)?;
    let path = policies
        .last()
        .map(|p| p.path.path.clone())
        .unwrap_or_default();
    let what = "#0 (leaf)".to_string();
    let cert = parse(leaf, &what)?;
    let (_critical, command) = extension_of(&cert, &what)?
        .ok_or_else(|| CertError::MissingExtension { what: what.clone() })?;
    let label = match common_name(&cert, &what)?.as_deref() {
        None | Some(".") | Some(":") => None,
        Some(cn) => Some(name::label(cn).map_err(|source| CertError::BadName { what, source })?),
    };
    Ok(ChainView {
        name: Name::new(path, label),
        policies,
        command,
    })
}
