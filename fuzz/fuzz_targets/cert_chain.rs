//! Certificates from any bytes: `decode --cert` on them (`cli::decode::
//! decode_cert_bytes`: a PEM chain, or one DER certificate; every certificate
//! summarised, its albatross extension decoded, the chain's name derived), the DER
//! functions directly (`cert::summary`, `albatross_extension`, `name_from_chain` on
//! the bytes as a one-certificate chain and behind a fixture leaf), and the bytes as
//! an issuer's PEM chain with the fixture CA key (`Issuer::from_pem`).
#![no_main]

use albatross_autoscale::cert::{self, Issuer};
use libfuzzer_sys::fuzz_target;
use rustls_pki_types::CertificateDer;

const CA_KEY: &[u8] = include_bytes!("../../fixtures/albatross/ca.key.pem");
const LEAF: &[u8] = include_bytes!("../../fixtures/albatross/cert_alice_web_unikernel_create.der");

fuzz_target!(|data: &[u8]| {
    let _ = albatross_autoscale::cli::decode::decode_cert_bytes(data, "fuzz", &mut std::io::sink());

    if let Ok(s) = cert::summary(data) {
        assert_eq!(
            cert::albatross_extension(data).expect("summary parsed it"),
            s.extension
        );
    }
    let der = CertificateDer::from(data);
    let _ = cert::name_from_chain(std::slice::from_ref(&der));
    let _ = cert::name_from_chain(&[CertificateDer::from(LEAF), der]);

    if let Ok(issuer) = Issuer::from_pem(data, CA_KEY, "fuzz", "ca.key.pem") {
        let _ = (
            issuer.subject_cn(),
            issuer.validity(),
            issuer.intermediates().len(),
        );
    }
});
