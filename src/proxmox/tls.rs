//! TLS for the Proxmox API: the cluster CA with normal hostname checks, or the
//! leaf certificate pinned by SHA-256 (Proxmox ships self-signed certificates;
//! `pvenode cert info` prints the fingerprint). One crypto provider: aws-lc-rs.

use std::path::Path;
use std::sync::Arc;

use rustls::ClientConfig;
use rustls::client::danger::{ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

use super::client::ProxmoxError;
use crate::cert::crypto_provider;

/// SHA-256 of a DER certificate.
pub fn fingerprint(der: &[u8]) -> [u8; 32] {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// Colon hex, as Proxmox prints fingerprints.
pub fn fingerprint_hex(fp: &[u8; 32]) -> String {
    fp.iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Accepts exactly the leaf certificates whose SHA-256 is pinned; the handshake
/// signature is still verified, so the peer must hold the pinned key.
#[derive(Debug)]
pub struct PinnedVerifier {
    pins: Vec<[u8; 32]>,
    provider: Arc<CryptoProvider>,
}

#[derive(Debug, thiserror::Error)]
#[error("server certificate fingerprint {found} is not pinned in proxmox.fingerprint")]
struct NotPinned {
    found: String,
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let fp = fingerprint(end_entity);
        if self.pins.contains(&fp) {
            return Ok(ServerCertVerified::assertion());
        }
        Err(rustls::Error::InvalidCertificate(
            rustls::CertificateError::Other(rustls::OtherError(Arc::new(NotPinned {
                found: fingerprint_hex(&fp),
            }))),
        ))
    }

    crate::cert::provider_signatures!();
}

fn builder() -> Result<rustls::ConfigBuilder<ClientConfig, rustls::WantsVerifier>, ProxmoxError> {
    ClientConfig::builder_with_provider(crypto_provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| ProxmoxError::Tls(e.to_string()))
}

/// A client config pinned to `pins`.
pub fn pinned(pins: Vec<[u8; 32]>) -> Result<ClientConfig, ProxmoxError> {
    let verifier = Arc::new(PinnedVerifier {
        pins,
        provider: crypto_provider(),
    });
    Ok(builder()?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth())
}

/// A client config trusting only the CA certificates in the PEM file `ca`.
pub fn with_ca(ca: &Path) -> Result<ClientConfig, ProxmoxError> {
    let bad = |reason: String| ProxmoxError::Tls(format!("{}: {reason}", ca.display()));
    let certs = crate::cert::read_ca_file(ca).map_err(ProxmoxError::Tls)?;
    // The CA (pve-root-ca.pem), or a node's own self-signed certificate: the same
    // rules as a webhook's `ca`.
    crate::cert::ca_file_client_config(certs).map_err(bad)
}
