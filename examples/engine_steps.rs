//! Feeds N sampling rounds of a group of M members through the engine, for
//! instruction counting with callgrind (wall time on a shared 2-core machine is noisy):
//! `valgrind --tool=callgrind --callgrind-out-file=/dev/null target/release/examples/engine_steps 64 2000`
//! (a third argument: 0 inputs only, 1 the engine, 2 the engine and a
//! `next_deadline()` after every step, as the daemon asks before every event)

use albatross_autoscale::core::{Engine, Input, Options, Policy, Timestamp};
use albatross_autoscale::name::Name;

fn main() {
    let mut args = std::env::args()
        .skip(1)
        .map(|a| a.parse::<u64>().expect("numbers"));
    let members = args.next().unwrap_or(1);
    let rounds = args.next().unwrap_or(10_000);
    // A third argument 0 skips the engine: the cost of making the inputs alone;
    // 2 also asks for the next deadline after every step, as the daemon does.
    let mode = args.next().unwrap_or(1);
    let engine = mode != 0;
    let mut deadlines = 0u64;
    let primary = Name::parse("alice:web").unwrap();
    let policy = Policy {
        max_instances: 1000,
        ..Policy::default()
    };
    let mut e = Engine::new(
        vec![(primary.clone(), policy)],
        Options::default(),
        Timestamp(0),
    );
    let names: Vec<Name> = std::iter::once(primary.clone())
        .chain((1..members).map(|i| primary.with_label(format!("web-clone-{i}"))))
        .collect();
    for n in &names[1..] {
        e = e
            .handle(
                Timestamp(0),
                Input::Adopt {
                    group: primary.clone(),
                    vm: n.clone(),
                },
            )
            .0;
    }
    let mut out = Vec::new();
    let mut count = 0u64;
    for r in 0..rounds {
        for n in names.iter().rev() {
            out.clear();
            let input = Input::Sample {
                vm: n.clone(),
                cpu_us: r * 5_000_000,
                vcpus: None,
            };
            if engine {
                e.step(Timestamp(r * 10_000), input, &mut out);
                if mode == 2 {
                    deadlines ^= std::hint::black_box(e.next_deadline()).map_or(0, |t| t.0);
                }
            } else {
                std::hint::black_box(input);
            }
            count += out.len() as u64;
        }
    }
    println!(
        "{} samples, {count} outputs ({deadlines})",
        rounds * members
    );
}
