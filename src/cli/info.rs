//! `info --config FILE [--endpoint NAME] [NAME]` and `stats --config FILE NAME`:
//! operator helpers in the style of albatross-client, to check connectivity and
//! certificates.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use crate::albatross::client::Client;
use crate::config::Config;
use crate::core::Timestamp;
use crate::core::cpu::{self, Delta, Reading};
use crate::name::Name;
use crate::wire::{Message, Payload};

/// Arguments of `info`.
#[derive(clap::Args, Debug)]
pub struct InfoArgs {
    #[arg(long, short, env = "ALBATROSS_AUTOSCALE_CONFIG")]
    pub config: PathBuf,
    /// Which `[[albatross]]` endpoint (default: the only one).
    #[arg(long)]
    pub endpoint: Option<String>,
    /// A unikernel (e.g. `alice:web`); default: everything under the certificate's path.
    pub name: Option<Name>,
}

/// Arguments of `stats`.
#[derive(clap::Args, Debug)]
pub struct StatsArgs {
    #[arg(long, short, env = "ALBATROSS_AUTOSCALE_CONFIG")]
    pub config: PathBuf,
    #[arg(long)]
    pub endpoint: Option<String>,
    /// Only this unikernel; default: all under the path.
    pub name: Option<Name>,
    /// Stop after this many samples.
    #[arg(long)]
    pub count: Option<u64>,
}

fn client(config: &std::path::Path, endpoint: Option<&str>) -> anyhow::Result<Client> {
    let c = Config::load(config)?;
    let ep = match endpoint {
        Some(n) => c
            .endpoints
            .iter()
            .find(|e| e.name == n)
            .with_context(|| format!("no endpoint named {n:?}"))?,
        None => c
            .endpoints
            .first()
            .context("no [albatross] endpoint in the configuration")?,
    };
    Ok(Client::from_endpoint(ep)?)
}

/// Run `info`: one JSON object per unikernel.
pub fn info(args: InfoArgs) -> anyhow::Result<ExitCode> {
    let client = client(&args.config, args.endpoint.as_deref())?;
    let rt = tokio::runtime::Runtime::new()?;
    let list = rt.block_on(client.info(args.name.as_ref()))?;
    for u in list {
        println!("{}", serde_json::to_string(&u)?);
    }
    Ok(ExitCode::SUCCESS)
}

/// Run `stats`: one JSON line per sample, with the CPU share since the previous one.
pub fn stats(args: StatsArgs) -> anyhow::Result<ExitCode> {
    let client = client(&args.config, args.endpoint.as_deref())?;
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(async move {
        // albatross keeps one subscriber per name: the whole path is the daemon's
        // subscription (it would be knocked off); one unikernel has a name of its own.
        let mut reader = match &args.name {
            Some(name) => client.subscribe_stats_of(name).await?,
            None => {
                // Not eprintln!: a closed stderr must not panic.
                let _ = writeln!(
                    std::io::stderr(),
                    "note: subscribing as {} takes the stats stream of a daemon that uses the same certificate path (one subscriber per name); name a unikernel to subscribe under its own name",
                    client.path()
                );
                client.subscribe_stats().await?
            }
        };
        let start = tokio::time::Instant::now();
        let sub = match reader.next_message().await? {
            Some(Message { payload: Payload::Failure(f), .. }) => {
                anyhow::bail!("albatross refused the subscription: {f}")
            }
            Some(m) => m.header.name,
            None => anyhow::bail!("the stream ended before the subscription reply"),
        };
        let _ = writeln!(std::io::stderr(), "subscribed as {sub}");
        let mut last: std::collections::HashMap<Name, Reading> = Default::default();
        let mut n = 0u64;
        while let Some(m) = reader.next_message().await? {
            let s = match m.payload {
                Payload::Data(d) => match d.into_stats() {
                    Ok(s) => s,
                    Err(_) => continue,
                },
                // One subscriber per name: another one (the daemon, with the same
                // certificate path) took the stream, or albatross-stats restarted.
                Payload::Failure(f) => anyhow::bail!(
                    "albatross ended the stats stream after {n} sample(s): {f} (albatross allows one stats subscriber per name: a daemon subscribed with the same certificate path takes the stream back and is knocked off in turn; use a certificate with another CN, see the README)"
                ),
                _ => continue,
            };
            let vm = m.header.name.resolve_under(&sub);
            if args.name.as_ref().is_some_and(|want| *want != vm) {
                continue;
            }
            let Ok(cpu_us) = s.cpu_micros() else { continue };
            let now = Reading { at: Timestamp(start.elapsed().as_millis() as u64), cpu_us };
            let pct = match last.insert(vm.clone(), now).map(|p| cpu::delta(p, now, 1)) {
                Some(Delta::Share { bp, .. }) => Some(cpu::percent(bp)),
                _ => None,
            };
            println!("{}", serde_json::json!({"vm": vm, "cpu_us": cpu_us, "cpu_percent_per_vcpu": pct, "rss_pages": s.kinfo_mem.as_ref().map(|k| k.rss)}));
            n += 1;
            if args.count.is_some_and(|c| n >= c) {
                break;
            }
        }
        Ok(ExitCode::SUCCESS)
    })
}
