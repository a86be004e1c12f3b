//! Exponential backoff with full jitter, for transient delivery failures.
//!
//! Retry n (from 0) waits a uniformly random time in `[0, min(max, base × 2ⁿ)]` ("full jitter"):
//! when a thousand-node job ends, a thousand epilogs hit the collector at once, and if it is busy
//! or restarting, equal delays would bring them back at once too. At most `retries` retries in a
//! row; the caller also never starts a wait that would end past its deadline.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

/// A random `u64` per call; injected so that tests see a fixed schedule.
pub type RandomSource = Box<dyn FnMut() -> u64 + Send>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// Retries in a row before giving up (0: never retry).
    pub retries: u32,
    pub base: Duration,
    /// Ceiling of one wait, however many retries came before.
    pub max: Duration,
}

impl Backoff {
    /// No retries: the first transient failure ends the attempt.
    pub const NONE: Backoff = Backoff { retries: 0, base: Duration::ZERO, max: Duration::ZERO };

    pub fn new(retries: u32, base_ms: u64, max_ms: u64) -> Self {
        Backoff { retries, base: Duration::from_millis(base_ms), max: Duration::from_millis(max_ms.max(base_ms)) }
    }

    /// The longest wait before retry `n` (from 0): `min(max, base × 2ⁿ)`, saturating.
    pub fn ceiling(&self, n: u32) -> Duration {
        let base = self.base.as_millis().min(u64::MAX as u128) as u64;
        let grown = base.saturating_mul(1u64.checked_shl(n).unwrap_or(u64::MAX));
        Duration::from_millis(grown).min(self.max)
    }

    /// The wait before retry `n`: `random` mapped onto `[0, ceiling(n)]` (whole milliseconds).
    pub fn delay(&self, n: u32, random: u64) -> Duration {
        let ceiling = self.ceiling(n).as_millis() as u64;
        Duration::from_millis(random % (ceiling.saturating_add(1)).max(1))
    }
}

/// Randomness good enough to spread retries: std's per-process random SipHash keys over a
/// counter. Not for secrets; it saves a dependency for this one use.
pub fn random_source() -> RandomSource {
    let keys = RandomState::new();
    let mut n = 0u64;
    Box::new(move || {
        n += 1;
        let mut h = keys.build_hasher();
        h.write_u64(n);
        h.finish()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn ceilings_double_up_to_the_cap() {
        let b = Backoff::new(8, 100, 2000);
        let c: Vec<u64> = (0..8).map(|n| b.ceiling(n).as_millis() as u64).collect();
        assert_eq!(c, vec![100, 200, 400, 800, 1600, 2000, 2000, 2000]);
        // Far beyond 64 doublings nothing overflows; the cap holds.
        assert_eq!(b.ceiling(200), ms(2000));
        assert_eq!(Backoff::new(3, u64::MAX, u64::MAX).ceiling(5), ms(u64::MAX));
        // A cap below the base is taken as the base.
        assert_eq!(Backoff::new(3, 500, 10).ceiling(4), ms(500));
        assert_eq!(Backoff::NONE.ceiling(3), Duration::ZERO);
    }

    #[test]
    fn delays_are_full_jitter_within_the_ceiling() {
        let b = Backoff::new(5, 100, 1000);
        for n in 0..6 {
            let ceil = b.ceiling(n);
            assert_eq!(b.delay(n, 0), Duration::ZERO, "retry {n}: the low end is no wait at all");
            let top = ceil.as_millis() as u64;
            assert_eq!(b.delay(n, top), ceil, "retry {n}: the high end is the ceiling itself");
            assert_eq!(b.delay(n, top + 1), Duration::ZERO, "retry {n}: wraps, never beyond");
            for r in [1, 7, 99, 12_345, u64::MAX / 3, u64::MAX] {
                assert!(b.delay(n, r) <= ceil, "retry {n}, random {r}: {:?} > {ceil:?}", b.delay(n, r));
            }
        }
        assert_eq!(b.delay(2, 250), ms(250));
        assert_eq!(Backoff::NONE.delay(0, u64::MAX), Duration::ZERO);
    }

    #[test]
    fn random_source_spreads_over_the_range() {
        let b = Backoff::new(3, 100, 2000);
        let mut r = random_source();
        let delays: Vec<Duration> = (0..200).map(|_| b.delay(3, r())).collect();
        assert!(delays.iter().all(|d| *d <= ms(800)));
        // 200 draws from [0, 800] ms: both halves are hit (chance of failing: about 2⁻¹⁹⁹).
        assert!(delays.iter().any(|d| *d < ms(400)) && delays.iter().any(|d| *d > ms(400)), "{delays:?}");
        // Two sources (two processes) do not produce the same sequence.
        let (mut a, mut b) = (random_source(), random_source());
        assert_ne!((0..4).map(|_| a()).collect::<Vec<_>>(), (0..4).map(|_| b()).collect::<Vec<_>>());
    }
}
