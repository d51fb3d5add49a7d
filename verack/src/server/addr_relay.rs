//! Address relay rules (Bitcoin Core's net_processing `ProcessAddrs`/`RelayAddress`) as pure
//! functions of time and a secret key.

use std::hash::{BuildHasher, Hash, Hasher};
use std::time::Duration;

use crate::peer::PeerId;

/// Tokens gained per second: 0.1 (Core's `MAX_ADDR_RATE_PER_SECOND`).
pub const ADDR_TOKENS_PER_SECOND: f64 = 0.1;
/// The bucket's cap: 1000 (Core's `MAX_ADDR_PROCESSING_TOKEN_BUCKET`).
pub const ADDR_TOKEN_CAP: f64 = 1000.0;
/// Tokens granted when we send `getaddr`: 1000 (Core's `MAX_ADDR_TO_SEND`).
pub const GETADDR_TOKENS: f64 = 1000.0;
/// A message with more addresses than this is not forwarded (Core: 10).
pub const MAX_ADDRS_TO_FORWARD: usize = 10;
/// An address older than this is not fresh, not forwarded (Core: 10 minutes).
pub const FRESH_ADDR_AGE: Duration = Duration::from_secs(600);
/// Peers each fresh address is forwarded to (Core: 2 for reachable networks).
pub const RELAY_TARGETS: usize = 2;
/// The forwarding choice rotates this often (Core: 24 h).
pub const RELAY_ROTATION: Duration = Duration::from_secs(24 * 3600);

/// A peer's address-processing token bucket (Core's `m_addr_token_bucket`): starts with one
/// token, fills at 0.1/s up to 1000, gets +1000 when we ask with `getaddr`; each address
/// processed costs one token, and addresses beyond the tokens are dropped (rate limited).
#[derive(Debug, Clone, PartialEq)]
pub struct TokenBucket {
    tokens: f64,
    /// Last refill time, seconds on any monotonic clock.
    last: f64,
}

impl TokenBucket {
    /// A fresh bucket at time `now` (seconds).
    pub fn new(now: f64) -> TokenBucket {
        TokenBucket {
            tokens: 1.0,
            last: now,
        }
    }

    /// We sent `getaddr`: the answer may be large.
    pub fn sent_getaddr(&mut self) {
        self.tokens += GETADDR_TOKENS;
    }

    /// Refills to `now`, then spends one token per address of `count`; returns how many may be
    /// processed (the rest are rate limited). `unlimited` peers (Core's `Addr` permission) spend
    /// nothing.
    pub fn take(&mut self, count: usize, now: f64, unlimited: bool) -> usize {
        let elapsed = (now - self.last).max(0.0);
        self.last = now;
        // As Core: the refill may not lift the bucket above the cap, but getaddr credit may.
        if self.tokens < ADDR_TOKEN_CAP {
            self.tokens = (self.tokens + elapsed * ADDR_TOKENS_PER_SECOND).min(ADDR_TOKEN_CAP);
        }
        if unlimited {
            return count;
        }
        let allowed = (self.tokens.floor().max(0.0) as usize).min(count);
        self.tokens -= allowed as f64;
        allowed
    }

    /// Tokens available now (for tests and stats).
    pub fn tokens(&self) -> f64 {
        self.tokens
    }
}

/// The peers an address is forwarded to: the `RELAY_TARGETS` candidates with the highest keyed
/// hash of (address, the current 24-hour period, peer id), as Core's `RelayAddress`, so the
/// choice is stable for a day and unpredictable to others. `addr_key` identifies the address
/// (hash it with [`addr_key`]); `now` is Unix seconds.
pub fn relay_targets<S: BuildHasher>(
    key: &S,
    addr_key: u64,
    now: u64,
    candidates: &[PeerId],
) -> Vec<PeerId> {
    let period = (now.wrapping_add(addr_key)) / RELAY_ROTATION.as_secs();
    let mut scored: Vec<(u64, PeerId)> = candidates
        .iter()
        .map(|&id| {
            let mut h = key.build_hasher();
            addr_key.hash(&mut h);
            period.hash(&mut h);
            id.hash(&mut h);
            (h.finish(), id)
        })
        .collect();
    scored.sort_unstable_by_key(|s| std::cmp::Reverse(s.0));
    scored
        .into_iter()
        .take(RELAY_TARGETS)
        .map(|(_, id)| id)
        .collect()
}

/// A stable key for an address (its network bytes and port) under `key`.
pub fn addr_key<S: BuildHasher, A: Hash>(key: &S, addr: &A) -> u64 {
    key.hash_one(addr)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::hash_map::RandomState;

    #[test]
    fn token_bucket_matches_cores_counts() {
        // Core's p2p_addr_relay: a fresh peer may send 1 address; after getaddr, 1000 more.
        let mut b = TokenBucket::new(0.0);
        assert_eq!(b.take(5, 0.0, false), 1);
        assert_eq!(b.take(5, 0.0, false), 0);
        // 100 s later: 10 tokens.
        assert_eq!(b.take(600, 100.0, false), 10);
        b.sent_getaddr();
        assert_eq!(b.take(1200, 100.0, false), 1000, "getaddr credit");
        // The refill never exceeds the cap of 1000...
        assert_eq!(b.take(1210, 1_000_000.0, false), 1000);
        // ...but getaddr credit stacks above it, as Core's 600/1200/1210 checks show.
        let mut b = TokenBucket::new(0.0);
        b.sent_getaddr();
        assert_eq!(b.take(600, 0.0, false), 600);
        assert_eq!(b.tokens(), 401.0);
        // A bucket at or above the cap is not refilled: 1 + 1000 credit, however long ago.
        let mut c = TokenBucket::new(0.0);
        c.sent_getaddr();
        assert_eq!(c.take(1210, 20_000.0, false), 1001);
        assert_eq!(
            TokenBucket::new(0.0).take(5000, 0.0, true),
            5000,
            "Addr-permitted peers are not limited"
        );
    }

    #[test]
    fn relay_targets_are_two_stable_within_a_day_and_rotate() {
        let key = RandomState::new();
        let peers: Vec<PeerId> = (1..=20).map(PeerId).collect();
        let a = addr_key(&key, &("1.2.3.4", 8333u16));
        let first = relay_targets(&key, a, 1_000_000, &peers);
        assert_eq!(first.len(), 2);
        assert_ne!(first[0], first[1]);
        // Same period: same choice.
        let period_start = (1_000_000 + a) / 86_400 * 86_400 - a;
        assert_eq!(relay_targets(&key, a, period_start + 10, &peers), first);
        // Over many days the choice changes.
        let changed =
            (1..30).any(|d| relay_targets(&key, a, 1_000_000 + d * 86_400, &peers) != first);
        assert!(changed);
        // Another address picks (usually) other peers; the choice spreads over the peers.
        let mut chosen = std::collections::HashSet::new();
        for n in 0..200u32 {
            chosen.extend(relay_targets(&key, addr_key(&key, &n), 1_000_000, &peers));
        }
        assert!(chosen.len() >= 18, "spread over peers: {}", chosen.len());
        assert_eq!(relay_targets(&key, a, 0, &peers[..1]), vec![PeerId(1)]);
    }
}
