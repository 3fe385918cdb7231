//! The client's check of albatross' server certificate: chain to the configured CA
//! only, without the hostname rule that SAN-less albatross certificates cannot meet
//! (rust-ecosystem notes §2.3). Chain, validity and EKU checks are rustls' own.

use std::sync::Arc;

use rustls::client::danger::{ServerCertVerified, ServerCertVerifier};
use rustls::client::{verify_server_cert_signed_by_trust_anchor, verify_server_name};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{CertificateError, RootCertStore};

/// The signature half of [`ServerCertVerifier`], delegated to `self.provider`: every
/// verifier in this crate checks handshake signatures the same way and differs only
/// in how it accepts the certificate.
macro_rules! provider_signatures {
    () => {
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &rustls::pki_types::CertificateDer<'_>,
            dss: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(
                message,
                cert,
                dss,
                &self.provider.signature_verification_algorithms,
            )
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &rustls::pki_types::CertificateDer<'_>,
            dss: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(
                message,
                cert,
                dss,
                &self.provider.signature_verification_algorithms,
            )
        }

        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            self.provider
                .signature_verification_algorithms
                .supported_schemes()
        }
    };
}
pub(crate) use provider_signatures;

/// Checks the server chain against exactly the given roots (validity, EKU
/// serverAuth) and the name as the albatross client (`albatross::tls`) documents: SAN if the
/// certificate has one, else the subject CN; an empty `expected_name` skips it.
#[derive(Debug)]
pub struct ServerVerifier {
    roots: Arc<RootCertStore>,
    expected_name: String,
    provider: Arc<CryptoProvider>,
}

impl ServerVerifier {
    pub fn new(
        roots: Arc<RootCertStore>,
        expected_name: String,
        provider: Arc<CryptoProvider>,
    ) -> Self {
        Self {
            roots,
            expected_name,
            provider,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("server certificate is for {found}, configured server_name is {expected:?}")]
struct NameMismatch {
    found: String,
    expected: String,
}

impl ServerVerifier {
    fn check_name(&self, parsed: &ParsedCertificate<'_>, der: &[u8]) -> Result<(), rustls::Error> {
        if self.expected_name.is_empty() {
            return Ok(());
        }
        let mismatch = |found: String| {
            rustls::Error::InvalidCertificate(CertificateError::Other(rustls::OtherError(
                Arc::new(NameMismatch {
                    found,
                    expected: self.expected_name.clone(),
                }),
            )))
        };
        let summary = x509_parser::parse_x509_certificate(der)
            .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?
            .1;
        let has_san = summary
            .subject_alternative_name()
            .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?
            .is_some();
        if has_san {
            let name = ServerName::try_from(self.expected_name.as_str())
                .map_err(|_| mismatch("its subjectAltName".to_string()))?;
            return verify_server_name(parsed, &name)
                .map_err(|_| mismatch("other subjectAltNames".to_string()));
        }
        let cn = summary
            .subject()
            .iter_common_name()
            .next()
            .and_then(|cn| cn.as_str().ok());
        match cn {
            Some(cn) if cn.eq_ignore_ascii_case(&self.expected_name) => Ok(()),
            Some(cn) => Err(mismatch(format!("CN={cn}"))),
            None => Err(mismatch("no name at all".to_string())),
        }
    }
}

impl ServerCertVerifier for ServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let parsed = ParsedCertificate::try_from(end_entity)?;
        verify_server_cert_signed_by_trust_anchor(
            &parsed,
            &self.roots,
            intermediates,
            now,
            self.provider.signature_verification_algorithms.all,
        )?;
        self.check_name(&parsed, end_entity)?;
        Ok(ServerCertVerified::assertion())
    }

    provider_signatures!();
}
