//! How discovery waits between tries: capped exponential backoff with equal jitter, and
//! above a server's `Retry-After` a spread that doubles while the server keeps
//! throttling, so that a herd of nodes told to come back in a second does not.
//!
//! `examples/herd.rs` runs this very code against thousands of agents in virtual time.

use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

/// The first retry comes after 250–500 ms: a bootstrap signer that lags is usually a
/// second or two behind.
pub const FIRST_INTERVAL: Duration = Duration::from_millis(500);
/// The ceiling grows to 10 s, so a server that keeps failing is asked every 5–10 s:
/// never more often than kubeadm's fixed 5 s poll, whatever the discovery timeout.
pub const MAX_INTERVAL: Duration = Duration::from_secs(10);
/// The first spread above a `Retry-After`, in units of it: a server that admits R
/// requests a second and refills a burst of R while the herd waits out N = 1 s takes
/// back the 2.5 R of a herd it turned away within the window without turning any away
/// again (measured in `examples/herd.rs`).
pub const FIRST_SPREAD: f64 = 2.5;
/// How much the spread above a `Retry-After` grows with each consecutive throttled
/// answer: by half, so that the last window overshoots what the server needs by at most
/// that much.
pub const SPREAD_GROWTH: f64 = 1.5;
/// The widest spread above a `Retry-After`.
pub const MAX_SPREAD: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    attempt: u32,
    /// Consecutive answers with `Retry-After` (429 or 503 from a throttling server).
    throttled: u32,
}

impl Backoff {
    pub fn new(base: Duration, cap: Duration) -> Self {
        Backoff {
            base: base.min(cap),
            cap,
            attempt: 0,
            throttled: 0,
        }
    }

    /// The backoff of a discovery.
    pub fn for_discovery() -> Self {
        Backoff::new(FIRST_INTERVAL, MAX_INTERVAL)
    }

    /// The ceiling of the next delay: `min(cap, base * 2^attempt)`.
    pub fn ceiling(&self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt.min(16)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// The next delay; `unit` is a uniform random number in `[0, 1)`.
    ///
    /// Without `Retry-After`: equal jitter, a delay in `[ceiling / 2, ceiling)`.
    ///
    /// With `Retry-After: N` the server says how long it wants to be left alone, and it
    /// says the same to every node it throttles: N is a floor (raised to the backoff's
    /// half-ceiling once that is larger), and the delay is spread uniformly over
    /// `[floor, floor + spread)`, where the spread starts at [`FIRST_SPREAD`] times N and
    /// grows by [`SPREAD_GROWTH`] with each consecutive throttled answer, up to
    /// [`MAX_SPREAD`]. A herd thus comes back over a window that widens until it fits
    /// what the server admits.
    pub fn next_delay(&mut self, retry_after: Option<Duration>, unit: f64) -> Duration {
        let unit = unit.clamp(0.0, 1.0);
        let ceiling = self.ceiling();
        self.attempt = self.attempt.saturating_add(1);
        match retry_after {
            None => {
                self.throttled = 0;
                ceiling / 2 + (ceiling / 2).mul_f64(unit)
            }
            Some(floor) => {
                let factor = SPREAD_GROWTH.powi(self.throttled.min(64) as i32);
                self.throttled = self.throttled.saturating_add(1);
                let spread = floor
                    .max(FIRST_INTERVAL)
                    .mul_f64(FIRST_SPREAD * factor.min(1e6))
                    .min(MAX_SPREAD);
                // A server that keeps failing is asked less and less often, as without
                // Retry-After: the floor rises with the backoff's half-ceiling.
                floor.max(ceiling / 2) + spread.mul_f64(unit)
            }
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

    fn ms(d: Duration) -> u128 {
        d.as_millis()
    }

    #[test]
    fn grows_exponentially_up_to_the_cap() {
        let mut b = Backoff::for_discovery();
        let ceilings: Vec<_> = (0..7)
            .map(|_| {
                let c = b.ceiling();
                b.next_delay(None, 0.5);
                ms(c)
            })
            .collect();
        assert_eq!(ceilings, [500, 1000, 2000, 4000, 8000, 10000, 10000]);
    }

    #[test]
    fn equal_jitter_stays_in_the_upper_half() {
        let mut b = Backoff::for_discovery();
        assert_eq!(ms(b.next_delay(None, 0.0)), 250);
        assert_eq!(ms(b.next_delay(None, 0.5)), 750);
        assert!(b.next_delay(None, 0.999) < Duration::from_secs(2));
    }

    #[test]
    fn a_failing_server_is_asked_every_5_to_10_s_at_most() {
        let mut b = Backoff::for_discovery();
        for _ in 0..5 {
            b.next_delay(None, 0.0);
        }
        for unit in [0.0, 0.5, 0.999] {
            let d = b.next_delay(None, unit);
            assert!(d >= Duration::from_secs(5) && d < MAX_INTERVAL, "{d:?}");
        }
    }

    /// How many requests a server answering like this gets in 12 s, with the same
    /// jitter for every delay.
    fn requests_in_12_s(retry_after: Option<Duration>, unit: f64) -> u32 {
        let mut b = Backoff::for_discovery();
        let (mut t, mut requests) = (Duration::ZERO, 1);
        loop {
            t += b.next_delay(retry_after, unit);
            if t >= Duration::from_secs(12) {
                return requests;
            }
            requests += 1;
        }
    }

    #[test]
    fn a_server_down_for_12_s_is_asked_at_most_6_times_in_12_s() {
        // Whatever the jitter: the first 6 delays add up to more than 12 s.
        for unit in [0.0, 0.3, 0.999] {
            let requests = requests_in_12_s(None, unit);
            assert!(requests <= 6, "{requests} requests with unit {unit}");
        }
    }

    #[test]
    fn retry_after_is_a_floor_with_a_spread_that_grows() {
        let one = Some(Duration::from_secs(1));
        let mut low = Backoff::for_discovery();
        let mut high = Backoff::for_discovery();
        let lows: Vec<_> = (0..7).map(|_| ms(low.next_delay(one, 0.0))).collect();
        let highs: Vec<_> = (0..7).map(|_| ms(high.next_delay(one, 0.9999))).collect();
        // The floor: Retry-After, then the backoff's half-ceiling once that is larger.
        assert_eq!(lows, [1000, 1000, 1000, 2000, 4000, 5000, 5000]);
        // The spread above it: 2.5 s, then half as much again each time, up to a minute.
        let spreads: Vec<_> = lows
            .iter()
            .zip(&highs)
            .map(|(l, h)| (h - l + 1) / 10 * 10)
            .collect();
        assert_eq!(spreads, [2500, 3750, 5620, 8430, 12650, 18980, 28470]);
        for _ in 0..10 {
            high.next_delay(one, 0.9999);
        }
        assert!(high.next_delay(one, 0.9999) <= MAX_SPREAD + MAX_INTERVAL);
        // An answer without Retry-After starts the spread over.
        high.next_delay(None, 0.5);
        assert!(high.next_delay(one, 0.9999) < Duration::from_secs(9));
    }

    #[test]
    fn a_server_throttling_for_12_s_is_asked_at_most_6_times_in_12_s() {
        for unit in [0.0, 0.3, 0.999] {
            let requests = requests_in_12_s(Some(Duration::from_secs(1)), unit);
            assert!(requests <= 6, "{requests} requests with unit {unit}");
        }
    }

    #[test]
    fn huge_attempt_counts_do_not_overflow() {
        let mut b = Backoff::for_discovery();
        for _ in 0..100 {
            b.next_delay(None, 1.0);
            b.next_delay(Some(Duration::from_secs(u64::MAX / 4)), 1.0);
        }
        assert_eq!(b.ceiling(), MAX_INTERVAL);
    }

    #[test]
    fn random_unit_is_in_range() {
        for _ in 0..100 {
            let u = random_unit();
            assert!((0.0..1.0).contains(&u));
        }
    }
}
