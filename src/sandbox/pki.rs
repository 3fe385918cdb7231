//! A throw-away PKI shaped like `albatross-client generate` + `add-policy` + `sign`:
//! a self-signed CA, a sub-CA carrying a `policy add` extension (the operator's
//! signing authority), and a server certificate with CN `albatross-server` and no
//! subjectAltName.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, PKCS_ED25519,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::albatross::tls::TlsSettings;
use crate::cert::{ALBATROSS_OID_ARCS, CertError, Issuer};
use crate::wire::{self, Command, Policy};

/// CN of the generated server certificate; use it as `server_name`.
pub const SERVER_NAME: &str = "albatross-server";

/// PEM texts of a generated PKI.
#[derive(Debug, Clone)]
pub struct TestPki {
    pub ca_pem: String,
    pub ca_key_pem: String,
    /// The operator's sub-CA (CN = `subca_name`, with the policy extension).
    pub subca_pem: String,
    pub subca_key_pem: String,
    pub server_pem: String,
    pub server_key_pem: String,
    pub subca_name: String,
}

/// Where [`TestPki::write_to`] put the files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PkiFiles {
    pub ca: PathBuf,
    pub ca_key: PathBuf,
    pub subca: PathBuf,
    pub subca_key: PathBuf,
    pub server: PathBuf,
    pub server_key: PathBuf,
}

fn dn(cn: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    dn
}

fn ca_usages() -> Vec<KeyUsagePurpose> {
    vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::ContentCommitment,
    ]
}

impl TestPki {
    /// Generate Ed25519 keys and certificates valid from an hour ago for 30 days.
    /// `policy_ext` is the sub-CA's albatross extension value (`SEQUENCE { 5,
    /// policy add }`, e.g. from [`crate::wire::encode_cert_extension`]).
    pub fn generate(subca_name: &str, policy_ext: &[u8]) -> Result<Self, CertError> {
        let now = time::OffsetDateTime::now_utc();
        let (from, until) = (
            now - Duration::from_secs(3600),
            now + Duration::from_secs(30 * 86400),
        );

        let ca_key = KeyPair::generate_for(&PKCS_ED25519)?;
        let mut ca = CertificateParams::default();
        ca.distinguished_name = dn("albatross-test-ca");
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = ca_usages();
        (ca.not_before, ca.not_after) = (from, until);
        let ca_cert = ca.self_signed(&ca_key)?;
        let ca_issuer = rcgen::Issuer::new(ca, &ca_key);

        let subca_key = KeyPair::generate_for(&PKCS_ED25519)?;
        let mut sub = CertificateParams::default();
        sub.distinguished_name = dn(subca_name);
        sub.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        sub.key_usages = ca_usages();
        sub.use_authority_key_identifier_extension = true;
        sub.custom_extensions = vec![CustomExtension::from_oid_content(
            &ALBATROSS_OID_ARCS,
            policy_ext.to_vec(),
        )];
        (sub.not_before, sub.not_after) = (from, until);
        let subca_cert = sub.signed_by(&subca_key, &ca_issuer)?;

        let server_key = KeyPair::generate_for(&PKCS_ED25519)?;
        let mut srv = CertificateParams::default();
        srv.distinguished_name = dn(SERVER_NAME);
        srv.is_ca = IsCa::ExplicitNoCa;
        srv.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        srv.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        srv.use_authority_key_identifier_extension = true;
        (srv.not_before, srv.not_after) = (from, until);
        let server_cert = srv.signed_by(&server_key, &ca_issuer)?;

        Ok(Self {
            ca_pem: ca_cert.pem(),
            ca_key_pem: ca_key.serialize_pem(),
            subca_pem: subca_cert.pem(),
            subca_key_pem: subca_key.serialize_pem(),
            server_pem: server_cert.pem(),
            server_key_pem: server_key.serialize_pem(),
            subca_name: subca_name.to_string(),
        })
    }

    /// [`Self::generate`] with the extension for `policy add policy`.
    pub fn generate_with_policy(subca_name: &str, policy: &Policy) -> Result<Self, CertError> {
        let ext = wire::encode_cert_extension(&Command::PolicyAdd {
            policy: policy.clone(),
        });
        Self::generate(subca_name, &ext)
    }

    /// A generous policy for tests and the demo: 16 unikernels, 4096 MB, CPUs 0-3,
    /// bridge `service`.
    pub fn default_policy() -> Policy {
        Policy {
            cpuids: vec![0, 1, 2, 3],
            unikernels: 16,
            memory: 4096,
            block: None,
            bridges: vec!["service".to_string()],
        }
    }

    /// The CA certificate (trust anchor for both sides).
    pub fn ca_der(&self) -> Result<CertificateDer<'static>, CertError> {
        pem_cert(&self.ca_pem, "test CA")
    }

    /// The sub-CA as an issuer of per-command leaves (names under `subca_name:`).
    pub fn issuer(&self) -> Result<Issuer, CertError> {
        Issuer::from_pem(
            self.subca_pem.as_bytes(),
            self.subca_key_pem.as_bytes(),
            "test sub-CA",
            "test sub-CA key",
        )
    }

    /// The CA as an issuer (names at the root, e.g. `:web`).
    pub fn root_issuer(&self) -> Result<Issuer, CertError> {
        Issuer::from_pem(
            self.ca_pem.as_bytes(),
            self.ca_key_pem.as_bytes(),
            "test CA",
            "test CA key",
        )
    }

    /// The endpoint's certificate chain and key.
    pub fn server_identity(
        &self,
    ) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), CertError> {
        let cert = pem_cert(&self.server_pem, "test server certificate")?;
        let key = PrivateKeyDer::from_pem_slice(self.server_key_pem.as_bytes()).map_err(|e| {
            CertError::BadPem {
                what: "test server key".to_string(),
                reason: e.to_string(),
            }
        })?;
        Ok((vec![cert], key))
    }

    /// Write all PEM files into `dir` (created if missing).
    pub fn write_to(&self, dir: &Path) -> io::Result<PkiFiles> {
        std::fs::create_dir_all(dir)?;
        let files = PkiFiles {
            ca: dir.join("cacert.pem"),
            ca_key: dir.join("cacert.key"),
            subca: dir.join(format!("{}.pem", self.subca_name)),
            subca_key: dir.join(format!("{}.key", self.subca_name)),
            server: dir.join("server.pem"),
            server_key: dir.join("server.key"),
        };
        for (path, text) in [
            (&files.ca, &self.ca_pem),
            (&files.ca_key, &self.ca_key_pem),
            (&files.subca, &self.subca_pem),
            (&files.subca_key, &self.subca_key_pem),
            (&files.server, &self.server_pem),
            (&files.server_key, &self.server_key_pem),
        ] {
            std::fs::write(path, text)?;
        }
        Ok(files)
    }

    /// Write the files into a fresh directory under the system temp dir (for the
    /// demo; the caller removes it if it wants to).
    pub fn write_to_temp(&self) -> io::Result<PkiFiles> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        // A counter too: worlds made at the same time in one process (parallel
        // tests) must not share a directory (nor its daemon lock).
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!(
            "albatross-autoscale-demo-{}-{nanos}-{n}",
            std::process::id()
        ));
        self.write_to(&dir)
    }

    /// Client settings for the files written by [`Self::write_to`].
    pub fn tls_settings(files: &PkiFiles, endpoint: SocketAddr) -> TlsSettings {
        TlsSettings {
            endpoint: endpoint.to_string(),
            ca: files.ca.clone(),
            cert: files.subca.clone(),
            key: files.subca_key.clone(),
            server_name: SERVER_NAME.to_string(),
        }
    }
}

fn pem_cert(pem: &str, what: &str) -> Result<CertificateDer<'static>, CertError> {
    CertificateDer::from_pem_slice(pem.as_bytes()).map_err(|e| CertError::BadPem {
        what: what.to_string(),
        reason: e.to_string(),
    })
}
