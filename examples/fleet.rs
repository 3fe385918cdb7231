//! Fleet benchmark: the release daemon as its own process against N embedded
//! albatross endpoints (in this process) × M unikernels, every VM the primary of
//! its own group. Reports the daemon's steady RSS (`VmRSS`), CPU % of one core
//! and CPU per sample (its threads' `schedstat`, or `utime + stime` when a thread
//! came or went in the window), the time until every endpoint's stats stream is up, and
//! engine outputs its followers missed.
//!
//! ```text
//! cargo build --release --bin albatross-autoscale --example fleet
//! target/release/examples/fleet --vms 100,1000 --daemon target/release/albatross-autoscale
//! ```
//!
//! `--daemon` may be given several times (`label=PATH`) to measure builds side by
//! side in one run. The endpoints share this machine's cores with the daemon; the
//! daemon's own CPU is what is reported.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use albatross_autoscale::name::Name;
use albatross_autoscale::sandbox::{Endpoint, EndpointConfig, TestPki, small_unikernel};
use albatross_autoscale::wire::Policy;
use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const KEY: &str = "fleet-benchmark-key-0123456789abcdef";

struct Args {
    vms: Vec<usize>,
    per_endpoint: usize,
    interval: Duration,
    window: Duration,
    daemons: Vec<(String, PathBuf)>,
    /// Every `hot`-th group runs hot and scales (0: none).
    hot: usize,
    startup_limit: Duration,
    /// Keep each run's directory (config, daemon log, decision log).
    keep: bool,
}

fn usage() -> &'static str {
    "usage: fleet [--vms 100,1000] [--per-endpoint 100] [--interval 10s] [--window 60s] \
     [--hot 100] [--startup-limit 120s] [--keep] --daemon [LABEL=]PATH [--daemon ...]"
}

fn parse_args() -> anyhow::Result<Args> {
    let mut a = Args {
        vms: vec![100, 1000],
        per_endpoint: 100,
        interval: Duration::from_secs(10),
        window: Duration::from_secs(60),
        daemons: Vec::new(),
        hot: 100,
        startup_limit: Duration::from_secs(120),
        keep: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .with_context(|| format!("{flag} needs a value\n{}", usage()))
        };
        match flag.as_str() {
            "--vms" => {
                a.vms = value()?
                    .split(',')
                    .map(|v| v.trim().parse().context("--vms: a list of counts"))
                    .collect::<anyhow::Result<_>>()?;
            }
            "--per-endpoint" => a.per_endpoint = value()?.parse().context("--per-endpoint")?,
            "--interval" => a.interval = humantime::parse_duration(&value()?)?,
            "--window" => a.window = humantime::parse_duration(&value()?)?,
            "--startup-limit" => a.startup_limit = humantime::parse_duration(&value()?)?,
            "--hot" => a.hot = value()?.parse().context("--hot")?,
            "--keep" => a.keep = true,
            "--daemon" => {
                let v = value()?;
                let (label, path) = match v.split_once('=') {
                    Some((l, p)) => (l.to_string(), PathBuf::from(p)),
                    None => ("daemon".to_string(), PathBuf::from(v)),
                };
                if !path.is_file() {
                    bail!(
                        "--daemon {}: no such file (build it with cargo build --release)",
                        path.display()
                    );
                }
                a.daemons.push((label, path));
            }
            "-h" | "--help" => {
                println!("{}", usage());
                std::process::exit(0);
            }
            _ => bail!("unknown argument {flag:?}\n{}", usage()),
        }
    }
    if a.daemons.is_empty() {
        bail!("no --daemon given\n{}", usage());
    }
    if a.per_endpoint == 0 || a.vms.contains(&0) {
        bail!("--vms and --per-endpoint must be positive");
    }
    Ok(a)
}

/// One measured run.
struct Report {
    label: String,
    vms: usize,
    endpoints: usize,
    streams_up: Option<Duration>,
    all_sampled: Option<Duration>,
    rss_kib: u64,
    hwm_kib: u64,
    cpu_pct: f64,
    samples: u64,
    us_per_sample: f64,
    missed: String,
    decisions: u64,
}

fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let rt = tokio::runtime::Runtime::new()?;
    let mut reports = Vec::new();
    for &n in &args.vms {
        for (label, path) in &args.daemons {
            eprintln!("fleet: {n} VMs, {label} ({})", path.display());
            let r = rt.block_on(run_one(&args, n, label, path))?;
            eprintln!("  {}", row(&r));
            reports.push(r);
        }
    }
    println!(
        "\n| build | VMs (endpoints) | steady RSS (peak) | CPU (% of one core) | CPU per sample | samples in window | stats streams up | every VM sampled | outputs missed | decisions |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for r in &reports {
        println!("{}", row(r));
    }
    Ok(())
}

fn row(r: &Report) -> String {
    let secs = |d: Option<Duration>| {
        d.map_or("not within the limit".into(), |d| {
            format!("{:.1} s", d.as_secs_f64())
        })
    };
    format!(
        "| {} | {} ({}) | {:.1} MiB ({:.1}) | {:.3} % | {:.1} µs | {} | {} | {} | {} | {} |",
        r.label,
        r.vms,
        r.endpoints,
        r.rss_kib as f64 / 1024.0,
        r.hwm_kib as f64 / 1024.0,
        r.cpu_pct,
        r.us_per_sample,
        r.samples,
        secs(r.streams_up),
        secs(r.all_sampled),
        r.missed,
        r.decisions
    )
}

/// Kills the daemon if a run ends early.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn run_one(args: &Args, n: usize, label: &str, daemon: &Path) -> anyhow::Result<Report> {
    let per = args.per_endpoint.min(n);
    let endpoints = n.div_ceil(per);
    let policy = Policy {
        cpuids: vec![0, 1, 2, 3],
        unikernels: i64::try_from(per * 2 + 16)?,
        memory: i64::try_from((per * 2 + 16) * 64)?,
        block: None,
        bridges: vec!["service".to_string()],
    };
    let pki = TestPki::generate_with_policy("fleet", &policy)?;
    let dir = std::env::temp_dir().join(format!(
        "albatross-fleet-{}-{n}-{label}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    let files = pki.write_to(&dir)?;
    std::fs::write(dir.join("keys"), format!("bench {KEY}\n"))?;

    // Every `hot`-th group wants 2 vCPUs (it scales up); the rest idle along at 0.4.
    let hot = args.hot;
    let load: albatross_autoscale::sandbox::LoadFn = Arc::new(move |group, _| {
        let k: usize = group
            .rsplit("vm")
            .next()
            .and_then(|k| k.parse().ok())
            .unwrap_or(1);
        if hot > 0 && k.is_multiple_of(hot) {
            2.0
        } else {
            0.4
        }
    });
    let mut eps = Vec::new();
    let mut text = String::new();
    let q = |p: &Path| format!("{:?}", p.display().to_string());
    let interval = humantime::format_duration(args.interval).to_string();
    writeln!(
        text,
        "[policy]\nsample_interval = \"{interval}\"\nmax_instances = 2\n\n\
         [daemon]\nstate_file = \"state.json\"\ndecision_log = \"decisions.jsonl\"\n\n\
         [http]\nlisten = \"127.0.0.1:{port}\"\napi_keys_file = \"keys\"\nrate_limit_per_minute = 6000\n",
        port = free_port()?
    )?;
    for e in 0..endpoints {
        let mut cfg = EndpointConfig::from_pki(&pki)?;
        cfg.stats_interval = args.interval;
        cfg.load = load.clone();
        // Every VM its own CPU (the small unikernel is pinned to CPU 0; shared, no
        // group would ever be busy).
        cfg.cpu_pinning = false;
        let ep = Endpoint::start(cfg).await?;
        writeln!(
            text,
            "[[albatross]]\nname = \"e{e}\"\nendpoint = \"{}\"\nca = {}\ncert = {}\nkey = {}\n",
            ep.addr(),
            q(&files.ca),
            q(&files.subca),
            q(&files.subca_key)
        )?;
        for k in (e * per)..((e + 1) * per).min(n) {
            ep.add(Name::parse(&format!("fleet:vm{k}"))?, small_unikernel());
            writeln!(
                text,
                "[[group]]\nprimary = \"fleet:vm{k}\"\nendpoint = \"e{e}\""
            )?;
        }
        eps.push(ep);
    }
    let cfg_path = dir.join("fleet.toml");
    std::fs::write(&cfg_path, &text)?;
    let port = text
        .split("127.0.0.1:")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .context("port")?
        .to_string();

    let log = std::fs::File::create(dir.join("daemon.log"))?;
    let started = Instant::now();
    let child = Command::new(daemon)
        .args(["run", "--config"])
        .arg(&cfg_path)
        .current_dir(&dir)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {}", daemon.display()))?;
    let pid = child.id();
    let mut guard = Guard(child);

    // Start-up: every endpoint has its stats subscriber; then every VM sampled.
    let (mut streams_up, mut all_sampled) = (None, None);
    while started.elapsed() < args.startup_limit && all_sampled.is_none() {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if let Some(status) = guard.0.try_wait()? {
            bail!(
                "the daemon exited during start-up ({status}); see {}",
                dir.join("daemon.log").display()
            );
        }
        if streams_up.is_none() && eps.iter().all(|e| !e.subscribers().is_empty()) {
            streams_up = Some(started.elapsed());
        }
        if streams_up.is_some()
            && metric(&port, "stats_samples_total").await.unwrap_or(0.0) >= n as f64
        {
            all_sampled = Some(started.elapsed());
        }
    }
    // Two intervals to settle (first evaluations, the hot groups' scale-ups).
    tokio::time::sleep(args.interval * 2).await;
    let (cpu0, ns0) = (cpu_ticks(pid)?, thread_ns(pid)?);
    let (s0, t0) = (metric(&port, "stats_samples_total").await?, Instant::now());
    tokio::time::sleep(args.window).await;
    let (cpu1, ns1) = (cpu_ticks(pid)?, thread_ns(pid)?);
    let (s1, elapsed) = (metric(&port, "stats_samples_total").await?, t0.elapsed());
    let (rss_kib, hwm_kib) = (status_kib(pid, "VmRSS:")?, status_kib(pid, "VmHWM:")?);
    let missed = match metric(&port, "outputs_missed_total").await {
        Ok(m) => format!("{m}"),
        // A build without the series: count its warnings instead.
        Err(_) => {
            let log = std::fs::read_to_string(dir.join("daemon.log")).unwrap_or_default();
            let lines = log.lines().filter(|l| l.contains("fell behind")).count();
            format!("{lines} warning(s)")
        }
    };
    let decisions = std::fs::read_to_string(dir.join("decisions.jsonl"))
        .map(|t| {
            t.lines()
                .filter(|l| l.contains("\"event\":\"decision\""))
                .count() as u64
        })
        .unwrap_or(0);

    unsafe_sigterm(pid);
    let _ = guard.0.wait();
    drop(eps);
    if args.keep {
        eprintln!("  kept {}", dir.display());
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }

    // Nanoseconds per thread when no thread came or went in the window (exact);
    // else clock ticks of the whole process (10 ms steps).
    let cpu_s = if ns0.keys().eq(ns1.keys()) {
        ns1.values()
            .zip(ns0.values())
            .map(|(b, a)| b - a)
            .sum::<u64>() as f64
            / 1e9
    } else {
        eprintln!("  threads changed in the window: CPU in clock ticks");
        (cpu1 - cpu0) as f64 / clock_ticks_per_second()
    };
    let samples = (s1 - s0).max(0.0) as u64;
    Ok(Report {
        label: label.to_string(),
        vms: n,
        endpoints,
        streams_up,
        all_sampled,
        rss_kib,
        hwm_kib,
        cpu_pct: 100.0 * cpu_s / elapsed.as_secs_f64(),
        samples,
        us_per_sample: if samples == 0 {
            0.0
        } else {
            cpu_s * 1e6 / samples as f64
        },
        missed,
        decisions,
    })
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The sum of every series of `name` in the daemon's `/metrics`.
async fn metric(port: &str, name: &str) -> anyhow::Result<f64> {
    let mut s = tokio::net::TcpStream::connect(format!("127.0.0.1:{port}")).await?;
    let req = format!(
        "GET /metrics HTTP/1.1\r\nhost: 127.0.0.1\r\nauthorization: Bearer {KEY}\r\nconnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await?;
    let mut body = String::new();
    s.read_to_string(&mut body).await?;
    let prefixed = format!("albatross_autoscale_{name}");
    let mut found = None;
    for line in body.lines().filter(|l| l.starts_with(&prefixed)) {
        let rest = &line[prefixed.len()..];
        if !(rest.starts_with(' ') || rest.starts_with('{')) {
            continue;
        }
        let v: f64 = line
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0);
        *found.get_or_insert(0.0) += v;
    }
    found.with_context(|| format!("{prefixed} not in /metrics"))
}

/// utime + stime of `pid`, in clock ticks.
fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command (which may hold spaces) end with ')'.
    let rest = stat.rsplit_once(')').context("/proc/pid/stat")?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state): utime is field 14, stime 15.
    let utime: u64 = f.get(11).context("utime")?.parse()?;
    let stime: u64 = f.get(12).context("stime")?.parse()?;
    Ok(utime + stime)
}

/// Time on CPU of each thread of `pid`, in ns (`/proc/PID/task/TID/schedstat`).
fn thread_ns(pid: u32) -> anyhow::Result<std::collections::BTreeMap<u64, u64>> {
    let mut out = std::collections::BTreeMap::new();
    for t in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let t = t?;
        let Some(tid) = t.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        // A thread that ended since the listing is not counted.
        if let Ok(s) = std::fs::read_to_string(t.path().join("schedstat"))
            && let Some(ns) = s.split_whitespace().next().and_then(|v| v.parse().ok())
        {
            out.insert(tid, ns);
        }
    }
    Ok(out)
}

fn status_kib(pid: u32, key: &str) -> anyhow::Result<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = s
        .lines()
        .find(|l| l.starts_with(key))
        .with_context(|| format!("{key} in /proc/{pid}/status"))?;
    Ok(line
        .split_whitespace()
        .nth(1)
        .context(key.to_string())?
        .parse()?)
}

fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 { hz as f64 } else { 100.0 }
}

/// Ask the daemon to stop as an operator would (SIGTERM).
fn unsafe_sigterm(pid: u32) {
    if let Ok(pid) = i32::try_from(pid) {
        // SAFETY: signalling a child we started and have not reaped.
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
    }
}
