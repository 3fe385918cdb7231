//! Wire codec throughput: statistics frames decoded per second on one core, side by
//! side with a plain byte-sum over the same bytes (the floor of touching every byte).
//! All benchmarks report "elements" = stats frames, so the rates compare directly.
//!
//! `cargo bench --bench wire`

use std::hint::black_box;
use std::path::PathBuf;

use albatross_autoscale::wire::{self, Frame, FrameDecoder, Payload};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

/// The stats frames (and their bodies) of the albatross-generated fixture stream.
fn stats_frames() -> (Vec<u8>, Vec<Vec<u8>>) {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/albatross/stats_alice_web.bin");
    let bytes = std::fs::read(path).expect("fixture");
    let mut dec = FrameDecoder::new(wire::STATS_MAX_FRAME);
    dec.push(&bytes);
    let mut bodies = Vec::new();
    while let Some(Frame::Message { body, .. }) = dec.next_frame().expect("frame") {
        if matches!(
            wire::decode(&body).expect("decode").payload,
            Payload::Data(_)
        ) {
            bodies.push(body);
        }
    }
    let stream: Vec<u8> = bodies.iter().flat_map(|b| wire::frame(b)).collect();
    (stream, bodies)
}

fn bench(c: &mut Criterion) {
    let (stream, bodies) = stats_frames();
    let n = bodies.len() as u64;
    let mut g = c.benchmark_group("wire");
    g.throughput(Throughput::Elements(n));

    g.bench_function("byte_sum", |b| {
        b.iter(|| {
            let s = black_box(&stream)
                .iter()
                .fold(0u64, |acc, &x| acc.wrapping_add(u64::from(x)));
            black_box(s)
        });
    });
    g.bench_function("decode_stats_frames", |b| {
        b.iter(|| {
            for body in black_box(&bodies) {
                black_box(wire::decode(body).expect("decode"));
            }
        });
    });
    g.bench_function("frame_and_decode_stream", |b| {
        b.iter(|| {
            let mut dec = FrameDecoder::new(wire::STATS_MAX_FRAME);
            dec.push(black_box(&stream));
            while let Some(Frame::Message { body, .. }) = dec.next_frame().expect("frame") {
                black_box(wire::decode(&body).expect("decode"));
            }
        });
    });
    let msgs: Vec<_> = bodies
        .iter()
        .map(|b| wire::decode(b).expect("decode"))
        .collect();
    g.bench_function("encode_stats_frames", |b| {
        b.iter(|| {
            for m in black_box(&msgs) {
                black_box(wire::encode(m));
            }
        });
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
