//! Exponential backoff with jitter, as a pure function of the attempt number and a uniform
//! draw.

use std::time::Duration;

/// Delays that double per attempt from `initial` up to `max`, then spread by ±`jitter`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// The delay before jitter for attempt 0.
    pub initial: Duration,
    /// The largest delay before jitter.
    pub max: Duration,
    /// Fraction of spread either side, in `[0, 1)`: 0.5 gives delays between 50% and 150% of
    /// the doubled value.
    pub jitter: f64,
}

impl Backoff {
    /// Persistent-peer reconnection: 1 s doubling to 5 min, ±50% jitter (dcrd's connmgr; btcd's
    /// linear 5 s steps without jitter synchronise reconnect storms, lnd #9294).
    pub const PERSISTENT_PEER: Backoff = Backoff {
        initial: Duration::from_secs(1),
        max: Duration::from_secs(300),
        jitter: 0.5,
    };

    /// Accept-loop errors: 5 ms doubling to 1 s, no jitter (lnd #983: retrying "too many open
    /// files" without sleeping spins).
    pub const ACCEPT_ERROR: Backoff = Backoff {
        initial: Duration::from_millis(5),
        max: Duration::from_secs(1),
        jitter: 0.0,
    };

    /// The delay after `attempt` failures (0-based), given a uniform draw `u` in `[0, 1)`.
    pub fn delay(&self, attempt: u32, u: f64) -> Duration {
        let doubled = self
            .initial
            .saturating_mul(1u32.checked_shl(attempt.min(31)).unwrap_or(u32::MAX));
        let base = doubled.min(self.max);
        let factor = 1.0 - self.jitter + 2.0 * self.jitter * u.clamp(0.0, 1.0);
        base.mul_f64(factor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn persistent_peer_schedule_and_jitter_bounds() {
        let b = Backoff::PERSISTENT_PEER;
        let mid: Vec<u64> = (0..12).map(|a| b.delay(a, 0.5).as_secs()).collect();
        assert_eq!(mid, vec![1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);
        assert_eq!(b.delay(0, 0.0), Duration::from_millis(500));
        assert_eq!(b.delay(0, 1.0), Duration::from_millis(1500));
        assert_eq!(b.delay(20, 0.0), Duration::from_secs(150));
        assert_eq!(b.delay(20, 1.0), Duration::from_secs(450));
        assert_eq!(
            b.delay(u32::MAX, 0.5),
            Duration::from_secs(300),
            "no overflow"
        );
    }

    #[test]
    fn accept_error_schedule() {
        let b = Backoff::ACCEPT_ERROR;
        let ms: Vec<u128> = (0..10).map(|a| b.delay(a, 0.9).as_millis()).collect();
        assert_eq!(ms, vec![5, 10, 20, 40, 80, 160, 320, 640, 1000, 1000]);
    }
}
