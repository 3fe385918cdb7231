//! The operator's signing authority: a CA or sub-CA certificate plus its private key.

use std::fmt;
use std::path::Path;

use rcgen::KeyPair;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use x509_parser::prelude::*;

use super::CertError;

/// Signs per-command leaves. Built from the operator's certificate file (the CA or
/// sub-CA first, optionally followed by further intermediates up to the root, as
/// `albatross-client sign` writes them) and the matching private key (PKCS#8, SEC1 or
/// PKCS#1 PEM; Ed25519, ECDSA P-256/P-384/P-521 or RSA).
pub struct Issuer {
    pub(super) rcgen: rcgen::Issuer<'static, KeyPair>,
    /// Certificates sent after the leaf: the issuer itself, then the rest of its file.
    pub(super) intermediates: Vec<CertificateDer<'static>>,
    /// Whether the issuer has a subjectKeyIdentifier. Only then do leaves get an
    /// authorityKeyIdentifier: rcgen would otherwise invent one (SHA-256 based) that
    /// matches nothing, and albatross compares AKI with SKI only when both exist.
    pub(super) has_ski: bool,
    subject_cn: Option<String>,
    not_before: ::time::OffsetDateTime,
    not_after: ::time::OffsetDateTime,
}

impl Issuer {
    /// Load from PEM files; errors name the file.
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<Self, CertError> {
        let read = |p: &Path| {
            std::fs::read(p).map_err(|source| CertError::Io {
                path: p.to_path_buf(),
                source,
            })
        };
        let cert_pem = read(cert)?;
        let key_pem = read(key)?;
        Self::from_pem(
            &cert_pem,
            &key_pem,
            &cert.display().to_string(),
            &key.display().to_string(),
        )
    }

    /// Load from PEM bytes. `cert_what` / `key_what` name the sources in errors.
    pub fn from_pem(
        cert_pem: &[u8],
        key_pem: &[u8],
        cert_what: &str,
        key_what: &str,
    ) -> Result<Self, CertError> {
        let certs = CertificateDer::pem_slice_iter(cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| CertError::BadPem {
                what: cert_what.to_string(),
                reason: e.to_string(),
            })?;
        if certs.is_empty() {
            return Err(CertError::NoPem {
                what: cert_what.to_string(),
                expected: "CERTIFICATE",
            });
        }
        let duplicates = super::duplicate_certs(&certs);
        if duplicates > 0 {
            // Harmless to albatross (its verifier drops repeats) but a sign the file
            // was assembled by hand; the path is computed the way albatross does.
            tracing::warn!(
                file = cert_what,
                duplicates,
                "certificate file holds the same certificate more than once; repeats are ignored for the path"
            );
        }
        let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| match e {
            rustls_pki_types::pem::Error::NoItemsFound => CertError::NoPem {
                what: key_what.to_string(),
                expected: "PRIVATE KEY",
            },
            e => CertError::BadPem {
                what: key_what.to_string(),
                reason: e.to_string(),
            },
        })?;
        let key = KeyPair::try_from(&key).map_err(|e| CertError::BadKey {
            what: key_what.to_string(),
            reason: e.to_string(),
        })?;
        Self::from_der(certs, key, cert_what)
    }

    /// Build from parsed parts: `certs[0]` is the issuing certificate.
    pub fn from_der(
        certs: Vec<CertificateDer<'static>>,
        key: KeyPair,
        cert_what: &str,
    ) -> Result<Self, CertError> {
        let Some(first) = certs.first() else {
            return Err(CertError::EmptyChain);
        };
        let parse_err = |reason: String| CertError::Parse {
            what: cert_what.to_string(),
            reason,
        };
        let (rest, x509) = parse_x509_certificate(first).map_err(|e| parse_err(e.to_string()))?;
        if !rest.is_empty() {
            return Err(parse_err(format!("{} trailing bytes", rest.len())));
        }
        if x509.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
            return Err(CertError::KeyMismatch {
                cert: cert_what.to_string(),
            });
        }
        let is_ca = x509
            .basic_constraints()
            .map_err(|e| parse_err(e.to_string()))?
            .is_some_and(|bc| bc.value.ca);
        if !is_ca {
            return Err(CertError::NotCa {
                what: cert_what.to_string(),
            });
        }
        let has_ski = x509.iter_extensions().any(|e| {
            matches!(
                e.parsed_extension(),
                ParsedExtension::SubjectKeyIdentifier(_)
            )
        });
        let subject_cn = x509
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok())
            .map(str::to_string);
        let not_before = x509.validity().not_before.to_datetime();
        let not_after = x509.validity().not_after.to_datetime();
        let rcgen = rcgen::Issuer::from_ca_cert_der(first, key)?;
        Ok(Self {
            rcgen,
            intermediates: certs,
            has_ski,
            subject_cn,
            not_before,
            not_after,
        })
    }

    /// The certificates presented after each leaf (issuer first).
    pub fn intermediates(&self) -> &[CertificateDer<'static>] {
        &self.intermediates
    }

    /// The issuer's subject CN (the path label for a policy sub-CA).
    pub fn subject_cn(&self) -> Option<&str> {
        self.subject_cn.as_deref()
    }

    /// The issuer's validity window; leaves signed outside it will be refused.
    pub fn validity(&self) -> (::time::OffsetDateTime, ::time::OffsetDateTime) {
        (self.not_before, self.not_after)
    }
}

impl fmt::Debug for Issuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Issuer")
            .field("subject_cn", &self.subject_cn)
            .field("intermediates", &self.intermediates.len())
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}
