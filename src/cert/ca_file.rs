//! Trust from a PEM file of certificates (a webhook's `ca`): the certificates are the
//! only roots, and a receiver whose own certificate is in the file is accepted even
//! where WebPKI would refuse it as a leaf. `openssl req -x509` makes self-signed
//! certificates with basicConstraints CA:TRUE, which WebPKI will not take as the
//! end entity (`CaUsedAsEndEntity`), yet that certificate is exactly what the
//! operator put in the file. Host name and validity period are still checked, and
//! the handshake signature proves the peer holds the certificate's key.

use std::sync::Arc;

use rustls::client::danger::{ServerCertVerified, ServerCertVerifier};
use rustls::client::{verify_server_cert_signed_by_trust_anchor, verify_server_name};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{CertificateError, ClientConfig, RootCertStore};

/// WebPKI against the file's certificates (chain, validity, EKU serverAuth, host
/// name); failing that, an end-entity certificate byte-for-byte in the file, valid
/// now and for the host name.
#[derive(Debug)]
pub struct CaFileVerifier {
    roots: RootCertStore,
    own: Vec<CertificateDer<'static>>,
    provider: Arc<CryptoProvider>,
}

impl CaFileVerifier {
    /// The file's certificates in order; an error names the (1-based) position of
    /// one that cannot be a trust anchor.
    pub fn new(
        certs: Vec<CertificateDer<'static>>,
        provider: Arc<CryptoProvider>,
    ) -> Result<Self, String> {
        let mut roots = RootCertStore::empty();
        for (i, c) in certs.iter().enumerate() {
            roots
                .add(c.clone())
                .map_err(|e| format!("certificate {}: {e}", i + 1))?;
        }
        Ok(Self {
            roots,
            own: certs,
            provider,
        })
    }
}

/// Inside `der`'s validity period at `now`.
fn check_validity(der: &[u8], now: UnixTime) -> Result<(), rustls::Error> {
    let bad = || rustls::Error::InvalidCertificate(CertificateError::BadEncoding);
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|_| bad())?;
    let now = i64::try_from(now.as_secs()).map_err(|_| bad())?;
    let validity = cert.validity();
    if now < validity.not_before.timestamp() {
        return Err(rustls::Error::InvalidCertificate(
            CertificateError::NotValidYet,
        ));
    }
    if now > validity.not_after.timestamp() {
        return Err(rustls::Error::InvalidCertificate(CertificateError::Expired));
    }
    Ok(())
}

impl ServerCertVerifier for CaFileVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let parsed = ParsedCertificate::try_from(end_entity)?;
        let webpki = verify_server_cert_signed_by_trust_anchor(
            &parsed,
            &self.roots,
            intermediates,
            now,
            self.provider.signature_verification_algorithms.all,
        )
        .and_then(|()| verify_server_name(&parsed, server_name));
        match webpki {
            Ok(()) => Ok(ServerCertVerified::assertion()),
            Err(_) if self.own.iter().any(|c| c.as_ref() == end_entity.as_ref()) => {
                verify_server_name(&parsed, server_name)?;
                check_validity(end_entity, now)?;
                Ok(ServerCertVerified::assertion())
            }
            Err(e) => Err(e),
        }
    }

    super::provider_signatures!();
}

/// The certificates of the PEM file `path` (a `ca` key). A file with none is an
/// error, not an empty trust store that refuses every server later.
pub fn read_ca_file(path: &std::path::Path) -> Result<Vec<CertificateDer<'static>>, String> {
    use rustls::pki_types::pem::PemObject;
    let at = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| at(&e))?
        .map(|c| c.map_err(|e| at(&e)))
        .collect::<Result<Vec<_>, _>>()?;
    if certs.is_empty() {
        return Err(at(&"no PEM certificate in it"));
    }
    Ok(certs)
}

/// A client config trusting the PEM file's `certs` as [`CaFileVerifier`] does, on
/// the crate's crypto provider.
pub fn ca_file_client_config(certs: Vec<CertificateDer<'static>>) -> Result<ClientConfig, String> {
    let provider = super::crypto_provider();
    let verifier = Arc::new(CaFileVerifier::new(certs, provider.clone())?);
    Ok(ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};

    fn self_signed(name: &str, days: std::ops::Range<i64>) -> CertificateDer<'static> {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(vec![name.to_string()]).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let now = time::OffsetDateTime::now_utc();
        p.not_before = now + time::Duration::days(days.start);
        p.not_after = now + time::Duration::days(days.end);
        p.self_signed(&key).unwrap().der().clone()
    }

    fn verify(file: Vec<CertificateDer<'static>>, ee: &CertificateDer<'_>, host: &str) -> String {
        let v = CaFileVerifier::new(file, crate::cert::crypto_provider()).unwrap();
        let name = ServerName::try_from(host.to_string()).unwrap();
        match v.verify_server_cert(ee, &[], &name, &[], UnixTime::now()) {
            Ok(_) => "ok".into(),
            Err(e) => format!("{e:?}"),
        }
    }

    #[test]
    fn a_self_signed_ca_certificate_is_accepted_only_as_itself_for_its_name_and_dates() {
        let own = self_signed("localhost", -1..30);
        let other = self_signed("localhost", -1..30);
        assert_eq!(
            verify(vec![other.clone(), own.clone()], &own, "localhost"),
            "ok"
        );
        assert!(
            verify(vec![other], &own, "localhost").contains("CaUsedAsEndEntity"),
            "WebPKI's own verdict when the certificate is not in the file"
        );
        assert!(verify(vec![own.clone()], &own, "elsewhere.example").contains("NotValidForName"));
        let expired = self_signed("localhost", -30..-1);
        assert_eq!(
            verify(vec![expired.clone()], &expired, "localhost"),
            "InvalidCertificate(Expired)"
        );
        let early = self_signed("localhost", 1..30);
        assert_eq!(
            verify(vec![early.clone()], &early, "localhost"),
            "InvalidCertificate(NotValidYet)"
        );
    }
}
