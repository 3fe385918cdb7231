//! Samples per second through the engine for groups of 1, 4 and 64 members.
//! Run: `cargo bench --bench engine`.

use std::hint::black_box;

use albatross_autoscale::core::{Engine, Input, Options, Policy, Timestamp};
use albatross_autoscale::name::Name;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};

const ROUNDS: u64 = 200;

/// `ROUNDS` sampling rounds of a group with `members` instances at 50 % CPU
/// (between the thresholds: the steady state an engine spends its life in).
fn inputs(members: usize) -> (Engine, Vec<(Timestamp, Input)>) {
    let primary = Name::parse("alice:web").unwrap();
    let mut engine = Engine::new(
        vec![(
            primary.clone(),
            Policy {
                max_instances: 100,
                ..Policy::default()
            },
        )],
        Options::default(),
        Timestamp(0),
    );
    let names: Vec<Name> = std::iter::once(primary.clone())
        .chain((1..members).map(|i| primary.with_label(format!("web-clone-{i}"))))
        .collect();
    for n in &names[1..] {
        let input = Input::Adopt {
            group: primary.clone(),
            vm: n.clone(),
        };
        engine = engine.handle(Timestamp(0), input).0;
    }
    let mut v = Vec::new();
    for r in 0..ROUNDS {
        let t = Timestamp(r * 10_000);
        // Clones first, then the primary, whose sample ticks the group.
        for n in names.iter().rev() {
            v.push((
                t,
                Input::Sample {
                    vm: n.clone(),
                    cpu_us: r * 5_000_000,
                    vcpus: None,
                },
            ));
        }
    }
    (engine, v)
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("engine_samples");
    for members in [1usize, 4, 64] {
        let (engine, v) = inputs(members);
        g.throughput(Throughput::Elements(v.len() as u64));
        g.bench_function(format!("group_of_{members}"), |b| {
            b.iter_batched(
                || (engine.clone(), v.clone(), Vec::with_capacity(8)),
                |(mut e, v, mut out)| {
                    for (t, input) in v {
                        out.clear();
                        e.step(t, input, &mut out);
                        black_box(&out);
                    }
                    e
                },
                BatchSize::LargeInput,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
