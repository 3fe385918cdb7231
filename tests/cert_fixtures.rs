//! Certificates against albatross' own fixtures (fixtures/albatross/, made by
//! albatross-client 2.7.2). Fixture leaves live five minutes from
//! 2026-11-22T18:35:18Z, so every verification runs at a time taken from the
//! certificates, never at "now".

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ::time::OffsetDateTime;
use ::time::format_description::well_known::Rfc3339;
use albatross_autoscale::cert::{
    self, CertError, Issuer, albatross_extension, leaf_for_command, name_from_chain, summary,
};
use rustls::RootCertStore;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, UnixTime};
use serde_json::Value;
use x509_parser::prelude::*;

const LEAVES: [&str; 4] = [
    "cert_alice_web_stats_subscribe",
    "cert_alice_web_unikernel_create",
    "cert_alice_web_unikernel_destroy",
    "cert_root_web_unikernel_info",
];

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/albatross")
        .join(name)
}

fn read(name: &str) -> Vec<u8> {
    std::fs::read(fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

fn json(name: &str) -> Value {
    serde_json::from_slice(&read(name)).unwrap()
}

fn pem_certs(name: &str) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_slice_iter(&read(name))
        .collect::<Result<Vec<_>, _>>()
        .unwrap()
}

fn rfc3339(v: &Value) -> OffsetDateTime {
    OffsetDateTime::parse(v.as_str().unwrap(), &Rfc3339).unwrap()
}

fn unix(t: OffsetDateTime) -> UnixTime {
    UnixTime::since_unix_epoch(Duration::from_secs(t.unix_timestamp() as u64))
}

/// The instant the fixture sub-CA became valid plus a minute: inside its validity.
fn fixture_time() -> OffsetDateTime {
    rfc3339(&json("subca_alice.json")["certificate"]["not_before"]) + Duration::from_secs(60)
}

fn verify(
    roots: &[CertificateDer<'static>],
    chain: &[CertificateDer<'static>],
    at: OffsetDateTime,
) -> Result<(), rustls::Error> {
    let mut store = RootCertStore::empty();
    for r in roots {
        store.add(r.clone()).unwrap();
    }
    let verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::new(store), cert::crypto_provider())
            .build()
            .unwrap();
    verifier
        .verify_client_cert(&chain[0], &chain[1..], unix(at))
        .map(|_| ())
}

/// `(oid, critical)` of every extension, sorted.
fn extension_set(der: &[u8]) -> Vec<(String, bool)> {
    let (_, c) = parse_x509_certificate(der).unwrap();
    let mut v: Vec<_> = c
        .extensions()
        .iter()
        .map(|e| (e.oid.to_id_string(), e.critical))
        .collect();
    v.sort();
    v
}

#[test]
fn fixture_extensions_equal_their_ext_bin() {
    for leaf in LEAVES {
        let der = &pem_certs(&format!("{leaf}.pem"))[0];
        assert_eq!(
            der.as_ref(),
            read(&format!("{leaf}.der")).as_slice(),
            "{leaf}"
        );
        let (critical, value) = albatross_extension(der).unwrap().expect(leaf);
        assert!(!critical, "{leaf}");
        assert_eq!(value, read(&format!("{leaf}.ext.bin")), "{leaf}");
    }
    let sub = json("subca_alice.json");
    let (critical, value) = albatross_extension(&read("subca_alice.der"))
        .unwrap()
        .unwrap();
    assert!(!critical);
    let want = sub["certificate"]["albatross_extension"]["value_hex"]
        .as_str()
        .unwrap();
    assert_eq!(hex::encode(value), want);
    assert_eq!(albatross_extension(&read("ca.der")).unwrap(), None);
    assert_eq!(
        albatross_extension(&pem_certs("server.pem")[0]).unwrap(),
        None
    );
}

#[test]
fn fixture_summaries_match_the_sidecars() {
    for name in LEAVES
        .iter()
        .copied()
        .chain(["subca_alice", "server", "ca"])
    {
        let j = json(&format!("{name}.json"));
        let s = summary(&pem_certs(&format!("{name}.pem"))[0]).unwrap();
        let c = &j["certificate"];
        assert_eq!(s.subject_cn.as_deref(), c["subject_cn"].as_str(), "{name}");
        assert_eq!(s.issuer_cn.as_deref(), c["issuer_cn"].as_str(), "{name}");
        assert_eq!(s.not_before, rfc3339(&c["not_before"]), "{name}");
        assert_eq!(s.not_after, rfc3339(&c["not_after"]), "{name}");
        assert_eq!(s.is_ca, name == "ca" || name == "subca_alice", "{name}");
        let serial = c["serial_hex"].as_str().unwrap().trim_start_matches("00");
        assert_eq!(s.serial_hex.trim_start_matches("00"), serial, "{name}");
    }
}

#[test]
fn name_from_chain_matches_the_tls_endpoint_view() {
    for leaf in LEAVES {
        let view = &json(&format!("{leaf}.json"))["tls_endpoint_view"];
        let chain = pem_certs(&format!("{leaf}.chain.pem"));
        let got = name_from_chain(&chain).unwrap();
        assert_eq!(
            got.name.to_string(),
            view["name"]["string"].as_str().unwrap(),
            "{leaf}"
        );
        let path: Vec<&str> = view["name"]["path"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_str().unwrap())
            .collect();
        assert_eq!(got.name.path, path, "{leaf}");
        assert_eq!(
            got.name.label.as_deref(),
            view["name"]["label"].as_str(),
            "{leaf}"
        );
        let policy_paths: Vec<String> = view["policies"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["path"].as_str().unwrap().to_string())
            .collect();
        let got_paths: Vec<String> = got.policies.iter().map(|p| p.path.path.join(":")).collect();
        assert_eq!(got_paths, policy_paths, "{leaf}");
        assert_eq!(got.command, read(&format!("{leaf}.ext.bin")), "{leaf}");
    }
}

#[test]
fn fixture_chains_verify_at_their_own_time_only() {
    let ca = pem_certs("ca.pem");
    for leaf in LEAVES {
        let chain = pem_certs(&format!("{leaf}.chain.pem"));
        let s = summary(&chain[0]).unwrap();
        verify(&ca, &chain, s.not_before + Duration::from_secs(60)).unwrap();
        assert!(verify(&ca, &chain, s.not_after + Duration::from_secs(1)).is_err());
    }
}

#[test]
fn leaf_signed_by_the_fixture_sub_ca_verifies_and_carries_the_command() {
    let issuer =
        Issuer::from_pem_files(&fixture("subca_alice.pem"), &fixture("subca_alice.key.pem"))
            .unwrap();
    assert_eq!(issuer.subject_cn(), Some("alice"));
    let ext = read("cert_alice_web_stats_subscribe.ext.bin");
    let now = fixture_time();
    let leaf = leaf_for_command(&issuer, Some("web"), &ext, now).unwrap();

    assert_eq!(leaf.chain.len(), 2);
    assert_eq!(leaf.chain[1].as_ref(), read("subca_alice.der").as_slice());
    verify(&pem_certs("ca.pem"), &leaf.chain, now).unwrap();
    // Five minutes, like albatross-client: expired a second after not_after.
    assert!(
        verify(
            &pem_certs("ca.pem"),
            &leaf.chain,
            leaf.not_after + Duration::from_secs(1)
        )
        .is_err()
    );

    let (critical, value) = albatross_extension(leaf.cert()).unwrap().unwrap();
    assert!(!critical);
    assert_eq!(value, ext);
    let s = summary(leaf.cert()).unwrap();
    assert_eq!(s.subject_cn.as_deref(), Some("web"));
    assert_eq!(s.issuer_cn.as_deref(), Some("alice"));
    assert_eq!(s.not_before, now - Duration::from_secs(10));
    assert_eq!(s.not_after, now + Duration::from_secs(300));
    assert_eq!(s.serial_hex.len(), 32);
    assert!(!s.is_ca);

    // Same extensions as albatross-client's leaf; rcgen writes EKU non-critical.
    let theirs: Vec<_> = extension_set(&read("cert_alice_web_stats_subscribe.der"))
        .into_iter()
        .map(|(oid, c)| (oid.clone(), c && oid != "2.5.29.37"))
        .collect();
    assert_eq!(extension_set(leaf.cert()), theirs);

    // AKI equals the sub-CA's SKI (albatross compares them).
    let (_, l) = parse_x509_certificate(leaf.cert()).unwrap();
    let (_, sub) = parse_x509_certificate(&leaf.chain[1]).unwrap();
    let aki = l
        .iter_extensions()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(a) => {
                a.key_identifier.as_ref().map(|k| k.0.to_vec())
            }
            _ => None,
        });
    let ski = sub
        .iter_extensions()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0.to_vec()),
            _ => None,
        });
    assert_eq!(aki, ski);
    assert!(aki.is_some());

    let view = name_from_chain(&leaf.chain).unwrap();
    assert_eq!(view.name.to_string(), "alice:web");
    assert_eq!(view.command, ext);
}

#[test]
fn leaf_without_label_is_cn_dot_and_names_the_path() {
    let issuer =
        Issuer::from_pem_files(&fixture("subca_alice.pem"), &fixture("subca_alice.key.pem"))
            .unwrap();
    let ext = read("cert_alice_web_stats_subscribe.ext.bin");
    let leaf = leaf_for_command(&issuer, None, &ext, fixture_time()).unwrap();
    assert_eq!(
        summary(leaf.cert()).unwrap().subject_cn.as_deref(),
        Some(".")
    );
    assert_eq!(
        name_from_chain(&leaf.chain).unwrap().name.to_string(),
        "alice:"
    );
    // Labels are validated and lower-cased like albatross does.
    let leaf = leaf_for_command(&issuer, Some("Web2"), &ext, fixture_time()).unwrap();
    assert_eq!(
        name_from_chain(&leaf.chain).unwrap().name.to_string(),
        "alice:web2"
    );
    assert!(matches!(
        leaf_for_command(&issuer, Some("alice:web"), &ext, fixture_time()),
        Err(CertError::BadName { .. })
    ));
}

#[test]
fn leaf_signed_by_the_root_ca_has_a_root_name_and_no_aki() {
    let issuer = Issuer::from_pem_files(&fixture("ca.pem"), &fixture("ca.key.pem")).unwrap();
    let ext = read("cert_root_web_unikernel_info.ext.bin");
    let now = fixture_time();
    let leaf = leaf_for_command(&issuer, Some("web"), &ext, now).unwrap();
    verify(&pem_certs("ca.pem"), &leaf.chain, now).unwrap();
    assert_eq!(
        name_from_chain(&leaf.chain).unwrap().name.to_string(),
        ":web"
    );
    // The fixture CA has no SKI, so an AKI could match nothing: leave it out.
    let exts = extension_set(leaf.cert());
    assert!(!exts.iter().any(|(oid, _)| oid == "2.5.29.35"));
}

#[test]
fn p256_and_ed25519_issuers_both_sign_verifiable_leaves() {
    for alg in [&rcgen::PKCS_ECDSA_P256_SHA256, &rcgen::PKCS_ED25519] {
        let ca_key = rcgen::KeyPair::generate_for(alg).unwrap();
        let mut p = rcgen::CertificateParams::default();
        p.distinguished_name = rcgen::DistinguishedName::new();
        p.distinguished_name
            .push(rcgen::DnType::CommonName, "test-ca");
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let ca = p.self_signed(&ca_key).unwrap();
        let issuer = Issuer::from_pem(
            ca.pem().as_bytes(),
            ca_key.serialize_pem().as_bytes(),
            "ca",
            "key",
        )
        .unwrap();
        let ext = read("cert_alice_web_unikernel_destroy.ext.bin");
        let now = OffsetDateTime::now_utc();
        let leaf = leaf_for_command(&issuer, Some("web"), &ext, now).unwrap();
        verify(&[ca.der().clone()], &leaf.chain, now).unwrap();
        assert_eq!(albatross_extension(leaf.cert()).unwrap().unwrap().1, ext);
    }
}

#[test]
fn issuer_loading_rejects_wrong_inputs_with_the_reason() {
    // The key of another certificate.
    let e =
        Issuer::from_pem_files(&fixture("subca_alice.pem"), &fixture("ca.key.pem")).unwrap_err();
    assert!(matches!(e, CertError::KeyMismatch { .. }), "{e}");
    // A server certificate cannot sign leaves.
    let e = Issuer::from_pem_files(&fixture("server.pem"), &fixture("server.key.pem")).unwrap_err();
    assert!(matches!(e, CertError::NotCa { .. }), "{e}");
    // A key file given as the certificate, and the reverse.
    let e = Issuer::from_pem_files(&fixture("ca.key.pem"), &fixture("ca.key.pem")).unwrap_err();
    assert!(matches!(e, CertError::NoPem { .. }), "{e}");
    let e = Issuer::from_pem_files(&fixture("ca.pem"), &fixture("ca.pem")).unwrap_err();
    assert!(matches!(e, CertError::NoPem { .. }), "{e}");
    let e = Issuer::from_pem_files(&fixture("missing.pem"), &fixture("ca.pem")).unwrap_err();
    assert!(e.to_string().contains("missing.pem"), "{e}");
}

#[test]
fn chains_albatross_rejects_are_rejected() {
    let sub = pem_certs("subca_alice.pem");
    // A leaf must carry the extension.
    let e = name_from_chain(&pem_certs("server.pem")).unwrap_err();
    assert!(matches!(e, CertError::MissingExtension { .. }), "{e}");
    // The limit is on the verified chain, where repeats count once (cert_chain.rs).
    let long: Vec<_> = std::iter::repeat_n(sub[0].clone(), 10).collect();
    assert_eq!(name_from_chain(&long).unwrap().name.to_string(), ":alice");
    assert!(matches!(name_from_chain(&[]), Err(CertError::EmptyChain)));
    let garbage = CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01, 0x05]);
    assert!(matches!(
        albatross_extension(&garbage),
        Err(CertError::Parse { .. })
    ));
}
