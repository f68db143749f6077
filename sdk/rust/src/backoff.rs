//! Reconnect delays: full-jitter exponential backoff (a uniform delay in `[0, min(cap, base ·
//! 2^attempt))`, 100 ms doubling to 10 s), so a fleet that lost its edge together does not come
//! back together; and a flat 30 s after the edge refused the token, because retrying a bad key
//! sooner only loads the edge. The random source is injected (a seeded [`Rng`]) so tests pin it.

use std::time::Duration;

pub(crate) const BASE: Duration = Duration::from_millis(100);
pub(crate) const CAP: Duration = Duration::from_secs(10);
pub(crate) const REFUSED: Duration = Duration::from_secs(30);

#[derive(Debug)]
pub(crate) struct Backoff {
    attempt: u32,
    rng: Rng,
}

impl Backoff {
    pub fn new(rng: Rng) -> Backoff {
        Backoff { attempt: 0, rng }
    }

    /// The delay before the next attempt after a failure.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = BASE
            .saturating_mul(1u32.checked_shl(self.attempt).unwrap_or(u32::MAX))
            .min(CAP);
        self.attempt = self.attempt.saturating_add(1);
        ceiling.mul_f64(self.rng.next_f64())
    }

    /// The delay after the edge refused the token.
    pub fn refused_delay(&mut self) -> Duration {
        self.attempt = self.attempt.saturating_add(1);
        REFUSED
    }

    /// A session got established: the next failure starts from the base again.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// SplitMix64: tiny, fast, good enough for jitter and instance ids (nothing secret).
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    #[cfg(test)]
    pub fn seeded(seed: u64) -> Rng {
        Rng(seed)
    }

    /// Seeded from the clock, the pid and a process-wide counter, so clients created in the
    /// same instant (a load test's thousands) still jitter apart.
    pub fn from_entropy() -> Rng {
        use std::sync::atomic::{AtomicU64, Ordering};
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or_default();
        let count = COUNTER.fetch_add(1, Ordering::Relaxed);
        let mut rng = Rng(nanos
            ^ (u64::from(std::process::id()) << 32)
            ^ count.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        rng.next_u64();
        rng
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_stay_under_a_doubling_ceiling_capped_at_ten_seconds() {
        let mut backoff = Backoff::new(Rng::seeded(7));
        for attempt in 0..40u32 {
            let ceiling = BASE
                .saturating_mul(1u32.checked_shl(attempt).unwrap_or(u32::MAX))
                .min(CAP);
            let delay = backoff.next_delay();
            assert!(
                delay < ceiling,
                "attempt {attempt}: {delay:?} >= {ceiling:?}"
            );
        }
    }

    #[test]
    fn jitter_spreads_delays_and_reset_starts_over() {
        let mut backoff = Backoff::new(Rng::seeded(1));
        for _ in 0..20 {
            backoff.next_delay();
        }
        // At the cap, 1,000 draws cover [0, 10 s) with no clustering at either end.
        let draws: Vec<Duration> = (0..1000).map(|_| backoff.next_delay()).collect();
        let low = draws
            .iter()
            .filter(|d| **d < Duration::from_secs(2))
            .count();
        let high = draws
            .iter()
            .filter(|d| **d >= Duration::from_secs(8))
            .count();
        assert!((120..280).contains(&low), "{low} of 1000 below 2 s");
        assert!((120..280).contains(&high), "{high} of 1000 above 8 s");
        backoff.reset();
        assert!(backoff.next_delay() < BASE);
    }

    #[test]
    fn a_refused_token_waits_the_maximum() {
        let mut backoff = Backoff::new(Rng::seeded(3));
        assert_eq!(backoff.refused_delay(), Duration::from_secs(30));
        assert_eq!(backoff.refused_delay(), Duration::from_secs(30));
    }
}
