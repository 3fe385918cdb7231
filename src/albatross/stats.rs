//! The statistics stream of one endpoint: subscribe, timestamp each sample on
//! arrival, hand it to the engine task; reconnect with capped exponential backoff
//! and jitter when the stream ends. albatross allows one subscriber per exact name,
//! so there is one stream per endpoint, for the path of the operator certificate.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, mpsc};
use tokio::time::{Instant, timeout};
use tokio_util::sync::CancellationToken;

use super::actuator::VcpuMap;
use super::client::Client;
use crate::name::Name;
use crate::notify::notice::Reach;
use crate::wire::{NoStats, Payload, Success};

/// Health of a stream, shared with the status surface.
#[derive(Debug, Default)]
pub struct StreamHealth {
    pub up: AtomicBool,
    pub reconnects: AtomicU64,
    pub samples: AtomicU64,
    /// Streams closed by the idle watchdog (open, but silent for `stats_idle_timeout`).
    pub stalls: AtomicU64,
    unreadable: Mutex<Unreadable>,
    /// Unreadable frames arrived since the last readable one: the per-sample path
    /// reads this flag and takes the lock only when it is set.
    unreadable_since: AtomicBool,
}

/// Data frames that yielded no sample, by data tag.
#[derive(Debug, Default)]
struct Unreadable {
    by_tag: BTreeMap<u32, u64>,
    /// The first such frame since the last readable one, and the latest.
    since: Option<Instant>,
    last: Option<Instant>,
    interval: Duration,
}

impl StreamHealth {
    fn unreadable(&self) -> std::sync::MutexGuard<'_, Unreadable> {
        self.unreadable.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Count a data frame that yielded no sample; `true` the first time for `tag`.
    fn frame_unreadable(&self, tag: u32, at: Instant) -> bool {
        let mut u = self.unreadable();
        u.since.get_or_insert(at);
        self.unreadable_since.store(true, Ordering::Relaxed);
        u.last = Some(at);
        let n = u.by_tag.entry(tag).or_default();
        *n += 1;
        *n == 1
    }

    fn frame_readable(&self) {
        if self.unreadable_since.swap(false, Ordering::Relaxed) {
            self.unreadable().since = None;
        }
    }

    /// Data frames that yielded no sample so far, by tag.
    pub fn unreadable_counts(&self) -> Vec<(u32, u64)> {
        self.unreadable()
            .by_tag
            .iter()
            .map(|(t, n)| (*t, *n))
            .collect()
    }

    /// Frames have arrived for 3 intervals and none could be read (a newer albatross).
    pub fn unreadable_only(&self, now: Instant) -> bool {
        let u = self.unreadable();
        let recent = u
            .last
            .is_some_and(|l| now.saturating_duration_since(l) <= u.interval * 2);
        recent
            && u.since
                .is_some_and(|s| now.saturating_duration_since(s) >= u.interval * 3)
    }
}

/// One statistics sample of a unikernel, stamped on arrival: what the stream
/// hands to whoever consumes it (the daemon's engine task).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    pub vm: Name,
    /// Cumulative utime + stime, microseconds.
    pub cpu_us: u64,
    pub vcpus: Option<u32>,
    pub at: Instant,
}

/// How a stream is kept.
#[derive(Debug, Clone, Copy)]
pub struct StreamSettings {
    pub backoff: Backoff,
    /// No frame for this long: the stream is closed and subscribed again.
    pub idle_timeout: Duration,
    /// The smallest `sample_interval` of the endpoint's groups.
    pub interval: Duration,
}

/// Reconnect delays: doubling from `reconnect_min` to `reconnect_max`, jittered.
/// The attempt counter resets once a stream delivered a sample.
pub use crate::core::backoff::Backoff;

/// Why one subscription ended.
#[derive(Debug)]
enum End {
    /// Never subscribed: connect, TLS or the subscription failed.
    NotUp(String),
    /// No frame for `idle_timeout`: albatross-stats forgot us (albatrossd restarted).
    Stalled,
    /// albatross ended the stream with a failure: another subscriber with the same
    /// name took it, or albatross-stats restarted.
    Failure(String),
    /// Asked to resubscribe (a re-create found the primary running).
    Resync,
    /// Closed or broken.
    Closed(String),
    EngineGone,
}

/// Run the stream until `shutdown`. After every subscription but the first,
/// `resubscribed` is notified (the endpoint task reconciles then).
#[allow(clippy::too_many_arguments)]
pub async fn run<T: From<Sample> + Send>(
    client: Client,
    events: mpsc::Sender<T>,
    vcpus: VcpuMap,
    settings: StreamSettings,
    health: Arc<StreamHealth>,
    mut reach: Reach,
    resubscribed: Arc<Notify>,
    shutdown: CancellationToken,
) {
    let endpoint = client.endpoint().to_string();
    let path = client.path().to_string();
    health.unreadable().interval = settings.interval;
    let mut rng = jitter_seed(&endpoint);
    let mut attempt = 0u32;
    let mut first = true;
    loop {
        let (delivered, end) = tokio::select! {
            () = shutdown.cancelled() => return,
            r = one_stream(&client, &events, &vcpus, &settings, &health, &resubscribed, &mut first) => r,
        };
        // Subscribed then ended: reachable, a reconnect may well work. Never
        // subscribed: the endpoint is down (one notice per outage).
        if health.up.swap(false, Ordering::Relaxed) {
            reach.reachable();
        } else if let End::NotUp(why) = &end {
            reach.failed(why);
        }
        if delivered {
            attempt = 0;
        }
        let why = match end {
            End::EngineGone => return,
            End::Stalled => {
                health.stalls.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%endpoint, %path, idle_timeout = %humantime::format_duration(settings.idle_timeout), "stats stream silent: closing it and subscribing again (after an albatrossd restart albatross-stats forgets its subscribers without closing them)");
                attempt = 0;
                "silent".to_string()
            }
            End::Failure(f) => {
                tracing::warn!(%endpoint, %path, albatross = %f, "another subscriber took the stats stream for {path} (or albatross-stats restarted): albatross allows one subscriber per name; subscribing again");
                format!("albatross ended the stream: {f}")
            }
            End::Resync => {
                tracing::info!(%endpoint, %path, "resubscribing the stats stream on request");
                attempt = 0;
                "resync".to_string()
            }
            End::NotUp(why) | End::Closed(why) => why,
        };
        if events.is_closed() {
            return;
        }
        let delay = backoff_delay(&settings, attempt, &mut rng);
        attempt = attempt.saturating_add(1);
        health.reconnects.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(%endpoint, reason = %why, retry_in = %humantime::format_duration(Duration::from_millis(delay.as_millis() as u64)), "stats stream ended; reconnecting");
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(delay) => {}
        }
    }
}

fn backoff_delay(s: &StreamSettings, attempt: u32, rng: &mut u64) -> Duration {
    s.backoff.jittered(attempt.saturating_add(1), rng)
}

/// One subscription; returns whether it delivered samples and why it ended.
async fn one_stream<T: From<Sample> + Send>(
    client: &Client,
    events: &mpsc::Sender<T>,
    vcpus: &VcpuMap,
    settings: &StreamSettings,
    health: &StreamHealth,
    resubscribed: &Notify,
    first: &mut bool,
) -> (bool, End) {
    let idle = settings.idle_timeout;
    let mut reader = match timeout(idle, client.subscribe_stats()).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return (false, End::NotUp(e.to_string())),
        Err(_) => return (false, End::NotUp("subscription timed out".into())),
    };
    // The first frame is the subscription reply; its header names the subscriber,
    // the base of the relative names in the data frames.
    let sub = match timeout(idle, reader.next_message()).await {
        Ok(Ok(Some(m))) => match m.payload {
            Payload::Success(Success::String(_)) => m.header.name,
            Payload::Failure(f) => {
                return (false, End::NotUp(format!("subscription refused: {f}")));
            }
            other => {
                return (
                    false,
                    End::NotUp(format!("unexpected first frame: {other:?}")),
                );
            }
        },
        Ok(Ok(None)) => {
            return (
                false,
                End::NotUp("stream ended before the subscription reply".into()),
            );
        }
        Ok(Err(e)) => return (false, End::NotUp(e.to_string())),
        Err(_) => return (false, End::NotUp("no subscription reply".into())),
    };
    tracing::info!(endpoint = client.endpoint(), subscription = %sub, "stats stream up");
    health.up.store(true, Ordering::Relaxed);
    if !std::mem::take(first) {
        resubscribed.notify_one();
    }
    let mut got = false;
    loop {
        let next = tokio::select! {
            () = client.resync_requested() => return (got, End::Resync),
            r = timeout(idle, reader.next_message()) => r,
        };
        let msg = match next {
            Err(_) => return (got, End::Stalled),
            Ok(Ok(Some(m))) => m,
            Ok(Ok(None)) => return (got, End::Closed("end of stream".into())),
            Ok(Err(e)) => return (got, End::Closed(e.to_string())),
        };
        let at = Instant::now();
        let data = match msg.payload {
            Payload::Data(d) => d,
            Payload::Failure(f) => return (got, End::Failure(f)),
            _ => continue,
        };
        let vm: Name = msg.header.name.resolve_under(&sub);
        // A frame without a usable sample: its tag, and its bytes for the debug log.
        let sample = data
            .into_stats()
            .and_then(|s| s.cpu_micros().map_err(|_| NoStats { tag: 1, raw: None }));
        let cpu_us = match sample {
            Ok(cpu_us) => cpu_us,
            Err(NoStats { tag, raw }) => {
                if health.frame_unreadable(tag, at) {
                    tracing::warn!(endpoint = client.endpoint(), tag, %vm, "a data frame on the stats stream yields no sample (a newer albatross?); counted in albatross_autoscale_stats_frames_unreadable_total");
                    if let Some(raw) = raw {
                        tracing::debug!(endpoint = client.endpoint(), tag, hex = %hex(&raw), "the unreadable frame's data");
                    }
                }
                continue;
            }
        };
        health.frame_readable();
        let n = vcpus.lock().ok().and_then(|m| m.get(&vm).copied());
        got = true;
        health.samples.fetch_add(1, Ordering::Relaxed);
        if events
            .send(T::from(Sample {
                vm,
                cpu_us,
                vcpus: n,
                at,
            }))
            .await
            .is_err()
        {
            return (got, End::EngineGone);
        }
    }
}

/// Lower-case hex of `b` (first 4 KiB), for the debug log.
fn hex(b: &[u8]) -> String {
    use std::fmt::Write;
    b.iter().take(4096).fold(String::new(), |mut s, x| {
        let _ = write!(s, "{x:02x}");
        s
    })
}

/// A jitter seed for [`Backoff::jittered`] that differs between processes and
/// between endpoints (daemons restarted together do not retry in lock step).
pub fn jitter_seed(what: &str) -> u64 {
    let mut h = 0x9E37_79B9_7F4A_7C15u64 ^ u64::from(std::process::id());
    for b in what.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    h | 1
}
