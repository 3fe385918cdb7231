//! Per-client rate limiting: a token bucket per client address. Pure state driven
//! by an injected `now` (milliseconds), so tests control time exactly.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A source of milliseconds for the limiter (monotonic; origin irrelevant).
pub trait Clock: Send + Sync + 'static {
    fn now_ms(&self) -> u64;
}

/// The real clock: milliseconds since it was made.
#[derive(Debug)]
pub struct MonotonicClock(Instant);

impl Default for MonotonicClock {
    fn default() -> Self {
        Self(Instant::now())
    }
}

impl Clock for MonotonicClock {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.0.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

/// A clock that moves only when told (tests).
#[derive(Debug, Default)]
pub struct ManualClock(AtomicU64);

impl ManualClock {
    pub fn advance(&self, d: Duration) {
        let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        self.0.fetch_add(ms, Ordering::Relaxed);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// One request in bucket units: a bucket holds `per_minute` requests and refills
/// `per_minute` units per millisecond, so integer arithmetic is exact.
const REQUEST: u64 = 60_000;
/// Clients tracked at most; beyond, full (idle) buckets are dropped first.
const MAX_CLIENTS: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: u64,
    at: u64,
}

/// The buckets of all clients.
#[derive(Debug, Clone)]
pub struct Limiter {
    per_minute: u64,
    buckets: HashMap<IpAddr, Bucket>,
}

impl Limiter {
    pub fn new(per_minute: u32) -> Self {
        Self {
            per_minute: u64::from(per_minute.max(1)),
            buckets: HashMap::new(),
        }
    }

    /// Change the rate (config reload); buckets keep their level, capped.
    pub fn set_rate(&mut self, per_minute: u32) {
        self.per_minute = u64::from(per_minute.max(1));
        let cap = self.capacity();
        for b in self.buckets.values_mut() {
            b.tokens = b.tokens.min(cap);
        }
    }

    fn capacity(&self) -> u64 {
        self.per_minute * REQUEST
    }

    /// Admit a request of `client` at `now_ms`, or say how long until one would be.
    pub fn check(&mut self, client: IpAddr, now_ms: u64) -> Result<(), Duration> {
        let cap = self.capacity();
        if self.buckets.len() >= MAX_CLIENTS && !self.buckets.contains_key(&client) {
            self.evict(now_ms);
        }
        let rate = self.per_minute;
        let b = self.buckets.entry(client).or_insert(Bucket {
            tokens: cap,
            at: now_ms,
        });
        let elapsed = now_ms.saturating_sub(b.at);
        b.tokens = b
            .tokens
            .saturating_add(elapsed.saturating_mul(rate))
            .min(cap);
        b.at = b.at.max(now_ms);
        if b.tokens >= REQUEST {
            b.tokens -= REQUEST;
            Ok(())
        } else {
            Err(Duration::from_millis((REQUEST - b.tokens).div_ceil(rate)))
        }
    }

    fn evict(&mut self, now_ms: u64) {
        let (cap, rate) = (self.capacity(), self.per_minute);
        self.buckets.retain(|_, b| {
            b.tokens
                .saturating_add(now_ms.saturating_sub(b.at).saturating_mul(rate))
                < cap
        });
        if self.buckets.len() >= MAX_CLIENTS {
            // Every tracked client is busy: forget them rather than grow unbounded.
            self.buckets.clear();
        }
    }

    /// Clients tracked.
    pub fn clients(&self) -> usize {
        self.buckets.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_to_the_limit_then_refills_one_per_interval() {
        let ip: IpAddr = [10, 0, 0, 1].into();
        let mut l = Limiter::new(60);
        for _ in 0..60 {
            assert!(l.check(ip, 0).is_ok());
        }
        assert_eq!(l.check(ip, 0), Err(Duration::from_secs(1)));
        assert_eq!(l.check(ip, 999), Err(Duration::from_millis(1)));
        assert!(l.check(ip, 1000).is_ok());
        // Another client is not affected.
        assert!(l.check([10, 0, 0, 2].into(), 1000).is_ok());
        // Time going backwards (it cannot with a monotonic clock) refills nothing.
        assert!(l.check(ip, 0).is_err());
    }

    #[test]
    fn the_table_stays_bounded() {
        let mut l = Limiter::new(1);
        for i in 0..(MAX_CLIENTS as u32 + 10) {
            let _ = l.check(IpAddr::from(i.to_be_bytes()), 0);
        }
        assert!(l.clients() <= MAX_CLIENTS);
    }
}
