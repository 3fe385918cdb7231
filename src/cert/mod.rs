//! Certificates in albatross' scheme (protocol doc §2): the per-command leaf the client
//! signs with the operator's CA or sub-CA key, and the parsing the endpoint side needs
//! (extension extraction, name from the chain, a summary for `decode --cert`).
//!
//! Paths come from the chain albatross' verifier builds ([`chain_order`]: issuers
//! upward, repeated and unrelated certificates dropped), both for the operator's
//! file ([`path_of_chain`]) and for a chain as an endpoint receives it
//! ([`name_from_chain`]), never from the order certificates were sent in.
//!
//! The command travels only in the leaf's extension 1.3.6.1.4.1.49836.42, whose value
//! is the DER that [`crate::wire::encode_cert_extension`] produces. This module treats
//! that value as opaque bytes: the codec lives in [`crate::wire`].
//!
//! One crypto provider (aws-lc-rs) is used for everything; [`crypto_provider`] hands
//! out the shared instance so no code depends on a process-wide default.

mod ca_file;
mod chain;
mod issuer;
mod leaf;
mod parse;
mod server_verify;
pub(crate) use server_verify::provider_signatures;

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

pub use ca_file::{CaFileVerifier, ca_file_client_config, read_ca_file};
pub use chain::{chain_order, duplicate_certs, path_of_chain};
pub use issuer::Issuer;
pub use leaf::{LEAF_BACKDATE, LEAF_LIFETIME, Leaf, leaf_for_command};
pub use parse::{
    CertSummary, ChainView, MAX_CHAIN_LEN, PolicyCert, albatross_extension, name_from_chain,
    summary,
};
pub use server_verify::ServerVerifier;

/// The albatross extension OID, as arcs (rcgen wants them this way).
pub const ALBATROSS_OID_ARCS: [u64; 8] = [1, 3, 6, 1, 4, 1, 49836, 42];

/// The albatross extension OID in dotted form, for messages.
pub const ALBATROSS_OID: &str = "1.3.6.1.4.1.49836.42";

/// The aws-lc-rs provider shared by certificate generation, the TLS client and the
/// test endpoint. Built once; passing it explicitly avoids rustls' process default,
/// which panics if a second provider is ever linked in.
pub fn crypto_provider() -> Arc<rustls::crypto::CryptoProvider> {
    static PROVIDER: OnceLock<Arc<rustls::crypto::CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .clone()
}

/// Everything that can go wrong with certificates and keys. Messages name the file or
/// the certificate position so an operator can act on them.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("reading {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{what}: no PEM {expected} found")]
    NoPem {
        what: String,
        expected: &'static str,
    },
    #[error("{what}: {reason}")]
    BadPem { what: String, reason: String },
    #[error("{what}: unsupported or unparsable private key: {reason}")]
    BadKey { what: String, reason: String },
    #[error("the private key does not belong to the certificate {cert}")]
    KeyMismatch { cert: String },
    #[error(
        "certificate {what} is not a CA (basicConstraints CA=true missing); it cannot sign leaves"
    )]
    NotCa { what: String },
    #[error("cannot parse certificate {what}: {reason}")]
    Parse { what: String, reason: String },
    #[error("certificate {what} carries the albatross extension more than once")]
    DuplicateExtension { what: String },
    #[error("certificate {what} has no albatross extension ({ALBATROSS_OID})")]
    MissingExtension { what: String },
    #[error("certificate {what}: bad common name: {source}")]
    BadName {
        what: String,
        source: crate::name::NameError,
    },
    #[error("certificate {what} carries a policy but has no common name")]
    PolicyWithoutName { what: String },
    #[error("chain has {len} certificates; albatross accepts fewer than {max}")]
    ChainTooLong { len: usize, max: usize },
    #[error("empty certificate chain")]
    EmptyChain,
    #[error("leaf certificate is {len} bytes; TLS allows less than 16 MiB")]
    TooBig { len: usize },
    #[error("generating the certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("random number generator failed")]
    Random,
}
