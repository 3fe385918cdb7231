//! The one backoff: capped exponential delays, with jitter where many clients may
//! retry together. Pure: the jitter's randomness is a seed the caller keeps (the
//! shells seed it per process), so the engine, which uses the plain delay, stays
//! deterministic and replayable.

use std::time::Duration;

/// Delays doubling from `base` up to `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
}

impl Backoff {
    /// The delay before retry `n` (1 = the first): `base · 2^(n−1)`, at most `max`.
    pub fn delay(&self, n: u32) -> Duration {
        self.base
            .saturating_mul(1 << n.saturating_sub(1).min(20))
            .min(self.max)
    }

    /// [`Backoff::delay`] drawn from `[d/2, d]` (so daemons restarted together do
    /// not retry in lock step); `seed` is an xorshift state, advanced.
    pub fn jittered(&self, n: u32, seed: &mut u64) -> Duration {
        let d = self.delay(n);
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        let half = d / 2;
        half + half.mul_f64((*seed % 1000) as f64 / 1000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_caps_and_jitters_within_half() {
        let b = Backoff {
            base: Duration::from_secs(1),
            max: Duration::from_secs(10),
        };
        let got: Vec<u64> = (1..=6).map(|n| b.delay(n).as_secs()).collect();
        assert_eq!(got, [1, 2, 4, 8, 10, 10]);
        assert_eq!(b.delay(0), Duration::from_secs(1));
        let mut s = 0x2545_f491_u64;
        for n in 1..=6 {
            let j = b.jittered(n, &mut s);
            assert!(j >= b.delay(n) / 2 && j <= b.delay(n), "{j:?}");
        }
    }
}
