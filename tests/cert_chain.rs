//! The certificate path as albatross computes it: from the chain its verifier builds
//! (albatross-real.md §6), not from the file as sent.

use std::sync::Arc;

use ::time::OffsetDateTime;
use albatross_autoscale::albatross::client::Client;
use albatross_autoscale::albatross::tls::Connector;
use albatross_autoscale::cert::{
    self, CertError, Issuer, chain_order, duplicate_certs, leaf_for_command, name_from_chain,
    path_of_chain,
};
use albatross_autoscale::sandbox::TestPki;
use albatross_autoscale::wire::{self, Command};
use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DistinguishedName, DnType, IsCa, KeyPair,
    KeyUsagePurpose, PKCS_ED25519,
};
use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::{CertificateDer, UnixTime};

struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
    params: CertificateParams,
}

impl Ca {
    fn der(&self) -> CertificateDer<'static> {
        self.cert.der().clone()
    }
}

/// A CA named `cn`, with a policy extension if `policy`, signed by `parent` (or
/// self-signed).
fn ca(cn: &str, policy: bool, parent: Option<&Ca>) -> Ca {
    let key = KeyPair::generate_for(&PKCS_ED25519).unwrap();
    let mut p = CertificateParams::default();
    p.distinguished_name = DistinguishedName::new();
    p.distinguished_name.push(DnType::CommonName, cn);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p.use_authority_key_identifier_extension = parent.is_some();
    if policy {
        let ext = wire::encode_cert_extension(&Command::PolicyAdd {
            policy: TestPki::default_policy(),
        });
        p.custom_extensions = vec![CustomExtension::from_oid_content(
            &cert::ALBATROSS_OID_ARCS,
            ext,
        )];
    }
    let cert = match parent {
        None => p.self_signed(&key).unwrap(),
        Some(parent) => {
            let issuer = rcgen::Issuer::new(parent.params.clone(), &parent.key);
            p.signed_by(&key, &issuer).unwrap()
        }
    };
    Ca {
        cert,
        key,
        params: p,
    }
}

/// CA → alice → team, the operator signing with `team`.
fn pki() -> (Ca, Ca, Ca) {
    let root = ca("albatross-test-ca", false, None);
    let alice = ca("alice", true, Some(&root));
    let team = ca("team", true, Some(&alice));
    (root, alice, team)
}

fn issuer(file: &[CertificateDer<'static>], key: &KeyPair) -> Issuer {
    let key = KeyPair::try_from(key.serialize_der().as_slice()).unwrap();
    Issuer::from_der(file.to_vec(), key, "team.pem").unwrap()
}

fn ext() -> Vec<u8> {
    wire::encode_cert_extension(&Command::UnikernelInfo)
}

#[test]
fn an_intermediate_twice_in_the_file_counts_once() {
    let (root, alice, team) = pki();
    let file = [team.der(), alice.der(), alice.der()];
    assert_eq!(duplicate_certs(&file), 1);
    assert_eq!(path_of_chain(&file).unwrap().to_string(), "alice:team:");

    // Loading such a file works (with a warning naming it); what is sent is unchanged.
    let pem: String = [&team, &alice, &alice]
        .iter()
        .map(|c| c.cert.pem())
        .collect();
    let loaded = Issuer::from_pem(
        pem.as_bytes(),
        team.key.serialize_pem().as_bytes(),
        "team.pem",
        "team.key",
    )
    .unwrap();
    assert_eq!(loaded.intermediates(), file);

    // Client::new uses it.
    let connector = Connector::from_parts(
        "127.0.0.1:1".into(),
        root.der(),
        issuer(&file, &team.key),
        "".into(),
    )
    .unwrap();
    let client = Client::new(Arc::new(connector));
    assert_eq!(client.path().path, ["alice", "team"]);

    // The endpoint side agrees, and the chain as sent still verifies.
    let now = OffsetDateTime::now_utc();
    let leaf = leaf_for_command(&issuer(&file, &team.key), Some("web"), &ext(), now).unwrap();
    assert_eq!(leaf.chain.len(), 4);
    assert_eq!(
        name_from_chain(&leaf.chain).unwrap().name.to_string(),
        "alice:team:web"
    );
    let policy_paths: Vec<String> = name_from_chain(&leaf.chain)
        .unwrap()
        .policies
        .iter()
        .map(|p| p.path.to_string())
        .collect();
    assert_eq!(policy_paths, ["alice:", "alice:team:"]);
    let mut roots = RootCertStore::empty();
    roots.add(root.der()).unwrap();
    let verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), cert::crypto_provider())
            .build()
            .unwrap();
    let at =
        UnixTime::since_unix_epoch(std::time::Duration::from_secs(now.unix_timestamp() as u64));
    verifier
        .verify_client_cert(&leaf.chain[0], &leaf.chain[1..], at)
        .unwrap();
}

#[test]
fn order_follows_the_issuers_not_the_file() {
    let (root, alice, team) = pki();
    let stray = ca("bob", true, Some(&root));
    // Root-most first, a stray sub-CA in between, the root sent along.
    let file = [team.der(), root.der(), stray.der(), alice.der()];
    assert_eq!(chain_order(&file), [0, 3, 1]);
    assert_eq!(duplicate_certs(&file), 0);
    assert_eq!(path_of_chain(&file).unwrap().to_string(), "alice:team:");
    let leaf = leaf_for_command(
        &issuer(&file, &team.key),
        Some("web"),
        &ext(),
        OffsetDateTime::now_utc(),
    )
    .unwrap();
    assert_eq!(
        name_from_chain(&leaf.chain).unwrap().name.to_string(),
        "alice:team:web"
    );
    // Signing with the root: nothing above it counts.
    assert_eq!(
        path_of_chain(&[root.der(), alice.der()])
            .unwrap()
            .to_string(),
        ":"
    );
    assert_eq!(duplicate_certs(&[root.der(), root.der(), root.der()]), 2);
}

#[test]
fn the_length_limit_applies_to_the_verified_chain() {
    // 10 certificates sent, but one certificate repeated: a chain of one.
    let (_, alice, _) = pki();
    let repeated: Vec<_> = std::iter::repeat_n(alice.der(), 10).collect();
    assert_eq!(chain_order(&repeated), [0]);
    assert!(name_from_chain(&repeated).is_ok());

    // A real chain of ten: leaf + nine CAs.
    let mut cas = vec![ca("root", false, None)];
    for i in 1..9 {
        let next = ca(&format!("level{i}"), true, cas.last());
        cas.push(next);
    }
    let signer = cas.last().unwrap();
    let file: Vec<_> = cas.iter().rev().map(Ca::der).collect();
    let leaf = leaf_for_command(
        &issuer(&file, &signer.key),
        Some("web"),
        &ext(),
        OffsetDateTime::now_utc(),
    )
    .unwrap();
    assert!(matches!(
        name_from_chain(&leaf.chain),
        Err(CertError::ChainTooLong { len: 10, .. })
    ));
    let shorter = &leaf.chain[..9];
    assert_eq!(
        name_from_chain(shorter).unwrap().name.path.len(),
        8,
        "level1..level8"
    );
}
