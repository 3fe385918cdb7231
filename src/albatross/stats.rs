//! The statistics stream of one endpoint: subscribe, timestamp each sample on
//! arrival, hand it to the engine task; reconnect with capped exponential backoff
//! and jitter when the stream ends. albatross allows one subscriber per exact name,
//! so there is one stream per endpoint, for the path of the operator certificate.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::actuator::VcpuMap;
use super::client::Client;
use crate::daemon::Event;
use crate::daemon::albatross::Reach;
use crate::name::Name;
use crate::wire::{Data, Payload, StatsData, Success};

/// Health of a stream, shared with the status surface.
#[derive(Debug, Default)]
pub struct StreamHealth {
    pub up: AtomicBool,
    pub reconnects: AtomicU64,
    pub samples: AtomicU64,
}

/// Reconnect delays: doubling from `min` to `max`, each drawn from [d/2, d]
/// (jitter, so daemons restarted together do not reconnect in lock step). The
/// attempt counter resets once a stream delivered a sample.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub min: Duration,
    pub max: Duration,
}

impl Backoff {
    fn delay(&self, attempt: u32, rng: &mut u64) -> Duration {
        let d = self.min.saturating_mul(1 << attempt.min(20)).min(self.max);
        // xorshift: jitter needs no cryptographic randomness.
        *rng ^= *rng << 13;
        *rng ^= *rng >> 7;
        *rng ^= *rng << 17;
        let half = d / 2;
        half + half.mul_f64((*rng % 1000) as f64 / 1000.0)
    }
}

/// utime + stime in microseconds, if the counters are sane.
pub fn cpu_micros(s: &StatsData) -> Option<u64> {
    let u = u64::try_from(s.rusage.utime.total_micros()?).ok()?;
    let st = u64::try_from(s.rusage.stime.total_micros()?).ok()?;
    u.checked_add(st)
}

/// Run the stream until `shutdown`.
pub async fn run(
    client: Client,
    events: mpsc::Sender<Event>,
    vcpus: VcpuMap,
    backoff: Backoff,
    health: Arc<StreamHealth>,
    mut reach: Reach,
    shutdown: CancellationToken,
) {
    let endpoint = client.endpoint().to_string();
    let mut rng = 0x9E37_79B9_7F4A_7C15u64 ^ u64::from(std::process::id()) ^ endpoint.len() as u64;
    let mut attempt = 0u32;
    loop {
        let delivered = tokio::select! {
            () = shutdown.cancelled() => return,
            r = one_stream(&client, &events, &vcpus, &health) => r,
        };
        let (got_samples, why) = delivered;
        // Subscribed then ended: reachable, a reconnect may well work. Never
        // subscribed: the endpoint is down (one notice per outage).
        if health.up.swap(false, Ordering::Relaxed) {
            reach.reachable();
        } else {
            reach.failed(&why);
        }
        if got_samples {
            attempt = 0;
        }
        if events.is_closed() {
            return;
        }
        let delay = backoff.delay(attempt, &mut rng);
        attempt = attempt.saturating_add(1);
        health.reconnects.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(%endpoint, reason = %why, retry_in = %humantime::format_duration(Duration::from_millis(delay.as_millis() as u64)), "stats stream ended; reconnecting");
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(delay) => {}
        }
    }
}

/// One subscription; returns whether it delivered samples and why it ended.
async fn one_stream(
    client: &Client,
    events: &mpsc::Sender<Event>,
    vcpus: &VcpuMap,
    health: &StreamHealth,
) -> (bool, String) {
    let mut reader = match client.subscribe_stats().await {
        Ok(r) => r,
        Err(e) => return (false, e.to_string()),
    };
    // The first frame is the subscription reply; its header names the subscriber,
    // the base of the relative names in the data frames.
    let sub = match reader.next_message().await {
        Ok(Some(m)) => match m.payload {
            Payload::Success(Success::String(_)) => m.header.name,
            Payload::Failure(f) => return (false, format!("subscription refused: {f}")),
            other => return (false, format!("unexpected first frame: {other:?}")),
        },
        Ok(None) => return (false, "stream ended before the subscription reply".into()),
        Err(e) => return (false, e.to_string()),
    };
    tracing::info!(endpoint = client.endpoint(), subscription = %sub, "stats stream up");
    health.up.store(true, Ordering::Relaxed);
    let mut got = false;
    loop {
        let msg = match reader.next_message().await {
            Ok(Some(m)) => m,
            Ok(None) => return (got, "end of stream".into()),
            Err(e) => return (got, e.to_string()),
        };
        match msg.payload {
            Payload::Data(Data::Stats(s)) => {
                let at = Instant::now();
                let vm: Name = msg.header.name.resolve_under(&sub);
                let Some(cpu_us) = cpu_micros(&s) else {
                    tracing::debug!(%vm, "sample with invalid cpu counters skipped");
                    continue;
                };
                let n = vcpus.lock().ok().and_then(|m| m.get(&vm).copied());
                got = true;
                health.samples.fetch_add(1, Ordering::Relaxed);
                if events
                    .send(Event::Sample {
                        vm,
                        cpu_us,
                        vcpus: n,
                        at,
                    })
                    .await
                    .is_err()
                {
                    return (got, "engine stopped".into());
                }
            }
            Payload::Failure(f) => return (got, format!("albatross ended the stream: {f}")),
            // Console, unknown data of newer servers: not for us.
            _ => {}
        }
    }
}
