//! Capped exponential backoff with full jitter, honouring a server's `Retry-After`.

use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

/// kubeadm polls cluster-info every 5 s; we never wait longer than that between tries.
pub const MAX_INTERVAL: Duration = Duration::from_secs(5);
pub const FIRST_INTERVAL: Duration = Duration::from_millis(500);

#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    attempt: u32,
}

impl Backoff {
    pub fn new(base: Duration, cap: Duration) -> Self {
        Backoff {
            base: base.min(cap),
            cap,
            attempt: 0,
        }
    }

    /// The backoff for a discovery with this timeout: the interval is capped at a fifth
    /// of the timeout, so that short timeouts still get several tries.
    pub fn for_timeout(timeout: Duration) -> Self {
        let cap = MAX_INTERVAL.min(timeout / 5).max(Duration::from_millis(20));
        Backoff::new(FIRST_INTERVAL, cap)
    }

    /// The ceiling of the next delay before jitter: `min(cap, base * 2^attempt)`.
    pub fn ceiling(&self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt.min(16)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// The next delay. `unit` is a uniform random number in `[0, 1)` (full jitter); a
    /// server's `Retry-After` is a floor.
    pub fn next_delay(&mut self, retry_after: Option<Duration>, unit: f64) -> Duration {
        let jittered = self.ceiling().mul_f64(unit.clamp(0.0, 1.0));
        self.attempt = self.attempt.saturating_add(1);
        match retry_after {
            Some(floor) => jittered.max(floor),
            None => jittered,
        }
    }
}

/// A uniform random number in `[0, 1)` from the standard library's per-process random
/// hasher keys; good enough for jitter, not for secrets.
pub fn random_unit() -> f64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0),
    );
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_exponentially_up_to_the_cap() {
        let mut b = Backoff::new(Duration::from_millis(500), Duration::from_secs(5));
        let ceilings: Vec<_> = (0..6)
            .map(|_| {
                let c = b.ceiling();
                b.next_delay(None, 0.5);
                c.as_millis()
            })
            .collect();
        assert_eq!(ceilings, [500, 1000, 2000, 4000, 5000, 5000]);
    }

    #[test]
    fn full_jitter_stays_within_the_ceiling() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(5));
        assert_eq!(b.next_delay(None, 0.0), Duration::ZERO);
        assert_eq!(b.next_delay(None, 0.5), Duration::from_secs(1));
        assert!(b.next_delay(None, 0.999) < Duration::from_secs(4));
    }

    #[test]
    fn retry_after_is_a_floor() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        assert_eq!(
            b.next_delay(Some(Duration::from_secs(2)), 0.5),
            Duration::from_secs(2)
        );
    }

    #[test]
    fn huge_attempt_counts_do_not_overflow() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(5));
        for _ in 0..100 {
            b.next_delay(None, 1.0);
        }
        assert_eq!(b.ceiling(), Duration::from_secs(5));
    }

    #[test]
    fn short_timeouts_get_short_intervals() {
        assert_eq!(
            Backoff::for_timeout(Duration::from_secs(1)).ceiling(),
            Duration::from_millis(200)
        );
        assert_eq!(
            Backoff::for_timeout(Duration::from_secs(300)).ceiling(),
            Duration::from_millis(500)
        );
    }

    #[test]
    fn random_unit_is_in_range() {
        for _ in 0..100 {
            let u = random_unit();
            assert!((0.0..1.0).contains(&u));
        }
    }
}
