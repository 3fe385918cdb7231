//! The chain albatross works on: the path its X.509 verifier builds, not the
//! certificates in the order they were sent (albatross-real.md §6). A file holding
//! an intermediate twice maps to `alice:team` in albatross; walked naively it would
//! be `alice:alice:team`.

use rustls_pki_types::CertificateDer;
use x509_parser::prelude::*;

use super::CertError;
use super::parse::{PolicyCert, policies_of};
use crate::name::Name;

fn key_id(cert: &X509Certificate<'_>, authority: bool) -> Option<Vec<u8>> {
    cert.iter_extensions()
        .find_map(|e| match (e.parsed_extension(), authority) {
            (ParsedExtension::AuthorityKeyIdentifier(a), true) => {
                a.key_identifier.as_ref().map(|k| k.0.to_vec())
            }
            (ParsedExtension::SubjectKeyIdentifier(k), false) => Some(k.0.to_vec()),
            _ => None,
        })
}

/// Whether `parent` can have issued `child`: names match, and the key identifiers
/// too when both are present (the checks albatross makes besides the signature).
fn issued(child: &X509Certificate<'_>, parent: &X509Certificate<'_>) -> bool {
    child.issuer().as_raw() == parent.subject().as_raw()
        && match (key_id(child, true), key_id(parent, false)) {
            (Some(aki), Some(ski)) => aki == ski,
            _ => true,
        }
}

/// Indices into `certs` of the chain the verifier builds from `certs[0]`: each next
/// certificate is the first (in file order) that issued the previous one. A
/// certificate already on the chain (same DER) is never taken again, certificates
/// off the chain are ignored, and the walk stops at a self-issued certificate.
/// Unparsable certificates cannot be on the chain.
pub fn chain_order(certs: &[CertificateDer<'_>]) -> Vec<usize> {
    let parsed: Vec<Option<X509Certificate<'_>>> = certs
        .iter()
        .map(|c| parse_x509_certificate(c).ok().map(|(_, x)| x))
        .collect();
    let mut order = Vec::new();
    if certs.is_empty() {
        return order;
    }
    order.push(0);
    let mut current = 0;
    while let Some(Some(child)) = parsed.get(current) {
        if child.issuer().as_raw() == child.subject().as_raw() {
            break;
        }
        let on_chain = |i: usize| order.iter().any(|&j| certs[j] == certs[i]);
        let next = parsed.iter().enumerate().position(|(i, p)| {
            !on_chain(i) && p.as_ref().is_some_and(|parent| issued(child, parent))
        });
        let Some(next) = next else { break };
        order.push(next);
        current = next;
    }
    order
}

/// The path the operator certificate file speaks for: `certs` is the file as loaded
/// (the issuing CA first, as [`super::Issuer::intermediates`]); the path is made of
/// the CNs of the policy CAs on its verified chain, root-most first.
pub fn path_of_chain(certs: &[CertificateDer<'_>]) -> Result<Name, CertError> {
    let order = chain_order(certs);
    let chain: Vec<(usize, &CertificateDer<'_>)> = order.iter().map(|&i| (i, &certs[i])).collect();
    let policies: Vec<PolicyCert> = policies_of(&chain)?;
    Ok(policies
        .last()
        .map_or_else(Name::default, |p| p.path.clone()))
}

/// How many certificates in `certs` repeat an earlier one byte for byte. albatross
/// drops the repeats; a file with any is worth a warning.
pub fn duplicate_certs(certs: &[CertificateDer<'_>]) -> usize {
    certs
        .iter()
        .enumerate()
        .filter(|(i, c)| certs[..*i].contains(c))
        .count()
}
