//! The LXC machine on its own (explicit `now`, no server): a resize held for
//! approval on a resize-only container expires at the machine's own deadline, and
//! a `vcpus` meant for albatross groups does not rescale container shares, and a
//! horizontal group tracks a target (`rule = "target"`).

use std::path::Path;
use std::time::Duration;

use albatross_autoscale::config::Config;
use albatross_autoscale::core::gate::Answer;
use albatross_autoscale::core::lxc::{Input, Lxc, Output, Poll, Row};
use albatross_autoscale::core::vertical::{self, Size};
use albatross_autoscale::core::{Machine, Timestamp};

fn machine(lxc: &str) -> Lxc {
    let text = format!(
        "[policy]\nvcpus = 4\n[proxmox]\nurl = \"http://127.0.0.1:8006\"\ntoken_id = \"a@pve!s\"\ntoken_secret_env = \"X\"\n{lxc}"
    );
    let c = Config::parse(&text, Path::new("t.toml")).unwrap();
    let specs = c.lxc.into_iter().map(|l| l.into_spec()).collect();
    Lxc::new(specs, Duration::from_secs(10), Timestamp::ZERO).with_approvals(true)
}

/// Container 101 known at 2 cores and 1 GiB, then polled at `cpu` every 10 s
/// until `stop` says so (or 5 polls); every output.
fn run(m: &mut Lxc, cpu: f64, mut stop: impl FnMut(&[Output]) -> bool) -> (Vec<Output>, u64) {
    let mut out = Vec::new();
    let size = Size {
        cores: 2,
        cpulimit_centi: 0,
        memory_mib: 1024,
    };
    m.step(Timestamp(0), Input::Size { vmid: 101, size }, &mut out);
    for i in 1..=5u64 {
        m.step(Timestamp(i * 10_000), poll(cpu), &mut out);
        if stop(&out) {
            return (out, i * 10_000);
        }
    }
    (out, 50_000)
}

fn poll(cpu: f64) -> Input {
    Input::Poll(Poll {
        rows: vec![Row {
            vmid: 101,
            running: true,
            template: false,
            cpu,
            maxcpu: Some(2.0),
            mem_mib: 256,
            maxmem_mib: Some(1024),
            node_free_mib: Some(30_000),
            tagged: false,
        }],
        owned: Vec::new(),
    })
}

#[test]
fn a_held_resize_of_a_resize_only_container_expires_on_the_machines_deadline() {
    let mut m = machine(
        "[[lxc]]\nvmid = 101\nname = \"web\"\nmode = \"vertical\"\ncores = [1, 4]\nscale_up_ticks = 2\nrequire_approval = [\"scale_up\"]\napproval_timeout = \"2m\"\n",
    );
    let resize = |out: &[Output]| {
        out.iter().find_map(|o| match o {
            Output::Vertical {
                out: vertical::Output::Resize(r),
                ..
            } => Some(r.clone()),
            _ => None,
        })
    };
    let (out, at) = run(&mut m, 0.95, |o| resize(o).is_some());
    let r = resize(&out).expect("a hot container asks for a core");
    let mut out = Vec::new();
    assert!(m.is_held_resize(101, r.id));
    // Nothing else has a deadline: the machine's is the expiry.
    assert_eq!(m.next_deadline(), Some(Timestamp(at + 120_000)));
    out.clear();
    m.step(Timestamp(at + 119_999), Input::Tick, &mut out);
    assert!(m.is_held_resize(101, r.id), "not a moment early: {out:?}");
    m.step(Timestamp(at + 120_000), Input::Tick, &mut out);
    assert!(
        out.iter().any(|o| matches!(
            o,
            Output::ResizeAnswered {
                answer: Answer::Expired,
                ..
            }
        )),
        "{out:?}"
    );
    assert!(
        out.iter().any(|o| matches!(o, Output::Vertical { out: vertical::Output::Failed { error, .. }, .. } if error == "approval expired")),
        "the vertical machine is told, and backs off: {out:?}"
    );
    assert!(!m.is_held_resize(101, r.id));
}

#[test]
fn a_policy_vcpus_does_not_rescale_container_shares() {
    // [policy] vcpus = 4 (for albatross groups): a container at 95 % still reads 95 %.
    let mut m = machine(
        "[[lxc]]\nvmid = 101\nname = \"web\"\nmode = \"horizontal\"\nmax_instances = 2\nscale_up_ticks = 2\nscale_up_cooldown = \"0s\"\n",
    );
    let (out, _) = run(&mut m, 0.95, |_| false);
    let shares: Vec<f64> = out
        .iter()
        .filter_map(|o| match o {
            Output::Engine(albatross_autoscale::core::Output::Sample(s)) => Some(s.cpu_percent()),
            _ => None,
        })
        .collect();
    assert!(
        !shares.is_empty() && shares.iter().all(|p| (*p - 95.0).abs() < 0.5),
        "{shares:?}"
    );
}

#[test]
fn a_horizontal_container_group_tracks_a_target() {
    // 95 % of a container at a 50 % target: desired 2, on the first evaluation
    // with a share (no tick streak).
    let mut m = machine(
        "[[lxc]]\nvmid = 101\nname = \"web\"\nmode = \"horizontal\"\nmax_instances = 3\nrule = \"target\"\ntarget_cpu_percent = 50\n",
    );
    let decision = |out: &[Output]| {
        out.iter().find_map(|o| match o {
            Output::Engine(albatross_autoscale::core::Output::Decision(d)) => Some(d.clone()),
            _ => None,
        })
    };
    let (out, _) = run(&mut m, 0.95, |o| decision(o).is_some());
    let d = decision(&out).expect("a scale-up");
    assert_eq!(d.action, albatross_autoscale::core::Action::ScaleUp);
    assert!(
        d.reason_text()
            .starts_with("desired 2 = ceil(0.95 vCPU / (50 % × 1 vCPU)) > 1 instance(s)"),
        "{}",
        d.reason_text()
    );
}
