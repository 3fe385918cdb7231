//! Frame decoder + message decoder over arbitrary bytes. The first byte chooses
//! where the stream is split between two pushes; every decoded message must
//! re-encode to bytes that decode to the same message (encoding is canonical:
//! sets sorted, names lower-cased, so compare re-encodings, not the input).
#![no_main]

use albatross_autoscale::wire;
use libfuzzer_sys::fuzz_target;

fn check_message(body: &[u8]) {
    if let Ok(m) = wire::decode(body) {
        let der = wire::encode(&m);
        let again = wire::decode(&der).expect("re-encoded message must decode");
        assert_eq!(wire::encode(&again), der);
        // The JSON view must never fail either.
        serde_json::to_string(&m).expect("JSON");
    }
}

fn check_extension(body: &[u8]) {
    if let Ok((_, cmd)) = wire::decode_cert_extension(body) {
        let der = wire::encode_cert_extension(&cmd);
        let (_, again) =
            wire::decode_cert_extension(&der).expect("re-encoded extension must decode");
        assert_eq!(wire::encode_cert_extension(&again), der);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&split, stream)) = data.split_first() else {
        return;
    };
    let (a, b) = stream.split_at(usize::from(split).min(stream.len()));
    let mut dec = wire::FrameDecoder::new(4096);
    for part in [a, b] {
        dec.push(part);
        while let Ok(Some(frame)) = dec.next_frame() {
            if let wire::Frame::Message { body, .. } = frame {
                check_message(&body);
            }
        }
    }
    let _ = dec.finish();
    // The whole input as one message body and as a certificate extension.
    check_message(stream);
    check_extension(stream);
});
