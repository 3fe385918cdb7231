//! `demo [--duration DUR]`: the whole product on one machine. A throw-away CA,
//! an in-process albatross endpoint hosting `demo:web` under a load profile (ramp,
//! plateau, spike, quiet), and the real daemon against it over TLS with the real
//! wire format. Prints decisions as they happen and a summary.

use std::fmt::Write as _;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::config::Config;
use crate::core::{Action, Output, Verdict, cpu};
use crate::name::Name;
use crate::sandbox::{Endpoint, EndpointConfig, PkiFiles, TestPki};
use crate::service::{Service, ServiceOptions};

/// Arguments of `demo`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// How long to run; the load profile and the sample interval scale with it
    /// (60 s: one sample per second).
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Print every evaluation, not only changes.
    #[arg(long)]
    pub verbose: bool,
    /// Keep the working directory (config, decision log, throw-away certificates
    /// and keys) instead of removing it at exit.
    #[arg(long)]
    pub keep: bool,
    /// Flight recorder: every engine input to FILE (kept whatever `--keep`), for
    /// `replay --inputs FILE`.
    #[arg(long, value_name = "FILE")]
    pub record: Option<std::path::PathBuf>,
}

/// Demand of the demo group in vCPUs at fraction `x` (0..1) of the run.
pub fn demand(x: f64) -> f64 {
    match x {
        x if x < 0.12 => 0.3,
        x if x < 0.32 => 0.3 + (x - 0.12) / 0.20 * 1.3, // ramp to 1.6
        x if x < 0.52 => 1.6,                           // plateau
        x if x < 0.62 => 2.6,                           // spike
        _ => 0.2,                                       // quiet
    }
}

fn demo_config(files: &PkiFiles, endpoint: &str, tick: Duration) -> String {
    let q = |p: &Path| format!("{:?}", p.display().to_string());
    let d = |n: u32| format!("{}ms", tick.as_millis() * u128::from(n));
    format!(
        r#"# Written by `albatross-autoscale demo`; one sample every {tick}.
[policy]
sample_interval = "{tick}"
scale_up_threshold = 75
scale_up_ticks = 3
scale_down_threshold = 30
scale_down_ticks = 4
scale_up_cooldown = "{up}"
scale_down_cooldown = "{down}"
death_timeout = "{death}"
min_instances = 1
max_instances = 4
max_actions_per_hour = 60

[albatross]
endpoint = "{endpoint}"
ca = {ca}
cert = {cert}
key = {key}

[daemon]
decision_log = "decisions.jsonl"
state_file = "state.json"

[[group]]
primary = "demo:web"
# demo:web has a static address (--ipv4=10.0.42.2/24): each clone gets its own.
clone_ipv4 = "10.0.42.10-10.0.42.50"
"#,
        tick = d(1),
        up = d(4),
        down = d(8),
        death = d(6),
        ca = q(&files.ca),
        cert = q(&files.subca),
        key = q(&files.subca_key),
    )
}

/// Removes a directory (and what is in it) when dropped.
struct RemoveOnDrop(std::path::PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Run `demo`.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(demo(args))
}

async fn demo(args: Args) -> anyhow::Result<ExitCode> {
    let total = args.duration.max(Duration::from_secs(6));
    let tick = total / 60;
    let pki = TestPki::generate_with_policy("demo", &TestPki::default_policy())?;
    let files = pki
        .write_to_temp()
        .context("writing the demo certificates")?;
    let dir = files
        .ca
        .parent()
        .context("certificate directory")?
        .to_path_buf();
    // The throw-away CA's key and the demo's files go when the demo does, on every
    // path out of here (Ctrl-C included: it ends the loop below).
    let _cleanup = (!args.keep).then(|| RemoveOnDrop(dir.clone()));
    // Ctrl-C ends the demo early but normally (summary printed, directory removed);
    // taken over now, before anything is printed.
    let mut interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    let mut ep_cfg = EndpointConfig::from_pki(&pki)?;
    ep_cfg.stats_interval = tick;
    ep_cfg.boot_delay = tick * 2;
    let start = tokio::time::Instant::now();
    let total_s = total.as_secs_f64();
    ep_cfg.load = Arc::new(move |group, t| {
        if group == "demo:web" {
            demand(t.as_secs_f64() / total_s)
        } else {
            0.0
        }
    });
    let endpoint = Endpoint::start(ep_cfg)
        .await
        .context("starting the embedded albatross endpoint")?;
    let primary = Name::parse("demo:web")?;
    endpoint.add(primary.clone(), crate::sandbox::small_unikernel());

    let text = demo_config(&files, &endpoint.addr().to_string(), tick);
    let cfg_path = dir.join("demo.toml");
    std::fs::write(&cfg_path, &text)?;
    let config = Config::load(&cfg_path)?;
    let log_path = config.daemon.decision_log.clone();
    println!(
        "albatross-autoscale demo: embedded albatross on {} (TLS 1.3, mutual auth), config {}",
        endpoint.addr(),
        cfg_path.display()
    );
    println!(
        "load on demo:web: quiet, ramp to 1.6 vCPU, plateau, spike to 2.6, quiet; 1 vCPU per instance\n"
    );

    let service = Service::start(
        config,
        ServiceOptions {
            dry_run: false,
            shutdown_grace: tick * 10,
            record: args.record.clone(),
        },
    )
    .await?;
    let mut outputs = service
        .subscribe()
        .context("the demo configures an albatross group")?;
    let mut timeline: Vec<(f64, u32)> = Vec::new();
    let (mut ups, mut downs, mut last_line) = (0u32, 0u32, String::new());
    let deadline = tokio::time::sleep(total);
    tokio::pin!(deadline);
    loop {
        let o = tokio::select! {
            () = &mut deadline => break,
            _ = interrupt.recv() => {
                println!("interrupted");
                break;
            }
            o = outputs.recv() => match o {
                Ok(o) => o,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                Err(_) => break,
            },
        };
        let t = start.elapsed().as_secs_f64();
        match &o {
            Output::Evaluation(e) => {
                timeline.push((t, e.instances));
                let line = format!(
                    "instances {}  avg {:>6}  high {} low {}{}",
                    e.instances,
                    e.avg_bp
                        .map_or("-".into(), |b| format!("{:.1}%", cpu::percent(b))),
                    e.high_ticks,
                    e.low_ticks,
                    match &e.verdict {
                        Verdict::Blocked { why_not, .. } => format!("  (waiting: {why_not})"),
                        _ => String::new(),
                    }
                );
                if args.verbose || line.split("  avg").next() != last_line.split("  avg").next() {
                    println!("[{t:5.1}s] demand {:.2} vCPU  {line}", demand(t / total_s));
                }
                last_line = line;
            }
            Output::Decision(d) => {
                let arrow = match d.action {
                    Action::ScaleUp => {
                        ups += 1;
                        "▲"
                    }
                    Action::ScaleDown => {
                        downs += 1;
                        "▼"
                    }
                    _ => "•",
                };
                println!(
                    "[{t:5.1}s] {arrow} {} {}: {}",
                    d.action.as_str(),
                    d.instance,
                    d.reason
                );
            }
            Output::ActionFailed {
                action,
                instance,
                error,
                ..
            } => {
                println!(
                    "[{t:5.1}s] ✗ {} {instance} failed: {error}",
                    action.as_str()
                );
            }
            _ => {}
        }
    }
    service.stop().await?;
    let running = endpoint.unikernels();
    endpoint.shutdown();
    println!(
        "\nsummary: {ups} scale-up(s), {downs} scale-down(s); running at the end: {}",
        running
            .iter()
            .map(Name::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!("instances over time: {}", sparkline(&timeline, total_s));
    if let Some(p) = log_path {
        if args.keep {
            println!("decision log: {} (kept with --keep)", p.display());
        } else {
            println!(
                "decision log: {} (removed at exit with the demo's keys; --keep keeps it)",
                p.display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One digit per tenth of the run: the instance count at its end.
fn sparkline(timeline: &[(f64, u32)], total: f64) -> String {
    let mut s = String::new();
    for i in 1..=10 {
        let until = total * f64::from(i) / 10.0;
        let n = timeline
            .iter()
            .take_while(|(t, _)| *t <= until)
            .last()
            .map_or(1, |(_, n)| *n);
        let _ = write!(s, "{n}");
    }
    s
}
