//! The global cost ceiling (`[daemon] max_cost_per_hour`): every group of an engine
//! plus the cost of the daemon's other loop (`set_external_cost`) stay under it.

use std::path::Path;
use std::time::Duration;

use albatross_autoscale::config::Config;
use albatross_autoscale::core::{Action, Engine, Input, Options, Output, Policy, Timestamp};
use albatross_autoscale::name::Name;

mod common;

use common::{IV, decisions, why_not};

const GROUPS: [&str; 2] = ["a:web", "b:web"];

fn policy() -> Policy {
    Policy {
        scale_up_threshold: 80,
        scale_up_ticks: 1,
        scale_down_threshold: 10,
        scale_down_ticks: 1000,
        scale_up_cooldown: Duration::ZERO,
        death_timeout: Duration::from_secs(3600),
        max_instances: 10,
        instance_cost_micros: 1_000_000, // 1.0 per hour
        ..Policy::default()
    }
}

/// Both primaries at 95 % for `rounds` intervals, every decision acknowledged.
fn drive(mut e: Engine, rounds: u64) -> Vec<Output> {
    let mut log = Vec::new();
    for r in 1..=rounds {
        let now = Timestamp(r * IV);
        for g in GROUPS {
            let input = Input::Sample {
                vm: Name::parse(g).unwrap(),
                cpu_us: r * IV * 950,
                vcpus: Some(1),
            };
            let mut out = Vec::new();
            e.step(now, input, &mut out);
            for d in decisions(&out) {
                let ack = Input::ActionResult {
                    group: (*d.group).clone(),
                    id: d.id,
                    outcome: Ok(()),
                };
                e.step(now, ack, &mut out);
            }
            log.extend(out);
        }
    }
    log
}

fn engine(ceiling: Option<u64>) -> Engine {
    let groups = GROUPS
        .iter()
        .map(|g| (Name::parse(g).unwrap(), policy()))
        .collect();
    Engine::new(groups, Options::default(), Timestamp::ZERO).with_cost_ceiling(ceiling)
}

#[test]
fn groups_together_stay_under_the_global_ceiling() {
    // 3.5/h at 1.0/h an instance: the two primaries plus one clone, never a fourth.
    let log = drive(engine(Some(3_500_000)), 12);
    let ups: Vec<_> = decisions(&log)
        .into_iter()
        .filter(|d| d.action == Action::ScaleUp)
        .collect();
    assert_eq!(ups.len(), 1, "{ups:?}");
    let w = why_not(&log);
    assert!(
        w.iter().any(|w| w
            == "cost: one more instance at 1/h is above what the global max_cost_per_hour leaves (0.5/h)"),
        "{w:?}"
    );
}

#[test]
fn without_a_global_ceiling_each_group_grows_to_its_max() {
    let log = drive(engine(None), 12);
    let ups = decisions(&log)
        .into_iter()
        .filter(|d| d.action == Action::ScaleUp)
        .count();
    assert_eq!(ups, 2 * 9, "both groups reach max_instances = 10");
    assert!(why_not(&log).iter().all(|w| !w.starts_with("cost")));
}

#[test]
fn the_other_loops_cost_counts_against_the_ceiling() {
    // The containers already cost 1.5/h: 2 primaries + 1.5 = 3.5, nothing fits.
    let mut e = engine(Some(4_000_000));
    e.step(
        Timestamp(0),
        Input::ExternalCost { micros: 1_500_000 },
        &mut Vec::new(),
    );
    let log = drive(e, 6);
    assert!(decisions(&log).is_empty(), "{:?}", decisions(&log));
    assert!(
        why_not(&log)
            .iter()
            .any(|w| w.contains("global max_cost_per_hour"))
    );
    // Once the other loop shrinks, the room is there again.
    let mut e = engine(Some(4_000_000));
    e.step(
        Timestamp(0),
        Input::ExternalCost { micros: 500_000 },
        &mut Vec::new(),
    );
    let ups = decisions(&drive(e, 6)).len();
    assert_eq!(ups, 1, "2 + 0.5 + one clone = 3.5 <= 4");
}

#[test]
fn the_global_key_is_read_and_checked() {
    let c = Config::parse(
        "[daemon]\nmax_cost_per_hour = 12.5\n[[group]]\nprimary = \"a:web\"\n",
        Path::new("t.toml"),
    )
    .unwrap();
    assert_eq!(c.daemon.max_cost_micros, Some(12_500_000));
    let e = Config::parse("[daemon]\nmax_cost_per_hour = -1\n", Path::new("t.toml"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("daemon.max_cost_per_hour: -1 must be above 0"),
        "{e}"
    );
}
