//! The per-command leaf certificate, modelled on albatross-client's `gen_cert`.

use std::time::Duration;

use rcgen::{
    CertificateParams, CustomExtension, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, PKCS_ED25519, SerialNumber,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use super::{ALBATROSS_OID_ARCS, CertError, Issuer, crypto_provider};
use crate::name;

/// How far `not_before` is back-dated. albatross-client uses 10 s; a server whose
/// clock runs more than this behind ours rejects the leaf as "not yet valid" (and
/// says nothing: the connection just closes). Keep clocks in sync (NTP).
pub const LEAF_BACKDATE: Duration = Duration::from_secs(10);

/// How long a leaf lives after `now`, as albatross-client: long enough for a slow
/// handshake, short enough that a leaked leaf is useless soon. A clock ahead of the
/// server by more than this would also be refused.
pub const LEAF_LIFETIME: Duration = Duration::from_secs(300);

/// TLS carries each certificate with a 3-byte length.
const MAX_CERT_LEN: usize = (1 << 24) - 1;

/// A freshly signed leaf and its key, ready for rustls.
#[derive(Debug)]
pub struct Leaf {
    /// `[leaf, issuer, further certificates of the issuer's file]`.
    pub chain: Vec<CertificateDer<'static>>,
    /// The leaf's fresh Ed25519 key (PKCS#8).
    pub key: PrivateKeyDer<'static>,
    pub not_before: time::OffsetDateTime,
    pub not_after: time::OffsetDateTime,
}

impl Leaf {
    /// The leaf certificate alone.
    pub fn cert(&self) -> &CertificateDer<'static> {
        &self.chain[0]
    }
}

/// Sign a leaf for one command.
///
/// * `label`: the unikernel label (the leaf CN); `None` addresses the issuer's path
///   itself (CN `.`). The label is validated and lower-cased as albatross would.
/// * `extension_der`: the value of the albatross extension, i.e. the DER of
///   `SEQUENCE { INTEGER 5, command }` from [`crate::wire::encode_cert_extension`].
///   It is written non-critical: albatross (and rustls) refuse unknown critical ones.
/// * `now`: validity is `now - 10 s .. now + 300 s` (whole seconds).
///
/// Extensions mirror the fixtures: keyUsage {digitalSignature, keyEncipherment}
/// (critical), basicConstraints CA=false (critical), subjectKeyIdentifier,
/// authorityKeyIdentifier (key id, when the issuer has an SKI), extendedKeyUsage
/// clientAuth (rcgen writes EKU non-critical; albatross accepts either).
pub fn leaf_for_command(
    issuer: &Issuer,
    label: Option<&str>,
    extension_der: &[u8],
    now: time::OffsetDateTime,
) -> Result<Leaf, CertError> {
    let cn = match label {
        None => ".".to_string(),
        Some(l) => name::label(l).map_err(|source| CertError::BadName {
            what: "leaf".to_string(),
            source,
        })?,
    };
    let key = KeyPair::generate_for(&PKCS_ED25519)?;

    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    params.distinguished_name = dn;
    // Whole seconds: X.509 times have no fractions, and the caller's checks should
    // see exactly what is in the certificate.
    let now = now.replace_nanosecond(0).unwrap_or(now);
    params.not_before = now - LEAF_BACKDATE;
    params.not_after = now + LEAF_LIFETIME;
    params.serial_number = Some(random_serial()?);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.use_authority_key_identifier_extension = issuer.has_ski;
    params.custom_extensions = vec![CustomExtension::from_oid_content(
        &ALBATROSS_OID_ARCS,
        extension_der.to_vec(),
    )];

    let cert = params.signed_by(&key, &issuer.rcgen)?;
    let der = cert.der().clone();
    if der.len() > MAX_CERT_LEN {
        return Err(CertError::TooBig { len: der.len() });
    }
    let mut chain = Vec::with_capacity(1 + issuer.intermediates.len());
    chain.push(der);
    chain.extend(issuer.intermediates.iter().cloned());
    Ok(Leaf {
        chain,
        key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        not_before: params.not_before,
        not_after: params.not_after,
    })
}

/// 16 random bytes, positive and without a leading zero octet, so the DER INTEGER
/// is always 16 bytes long (RFC 5280 allows up to 20).
fn random_serial() -> Result<SerialNumber, CertError> {
    let mut bytes = [0u8; 16];
    crypto_provider()
        .secure_random
        .fill(&mut bytes)
        .map_err(|_| CertError::Random)?;
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    Ok(SerialNumber::from_slice(&bytes))
}
