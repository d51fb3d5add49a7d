//! Address relay rules (Bitcoin Core's net_processing `SetupAddressRelay`, `ProcessAddrs`,
//! `RelayAddress`, and net's `GetAddresses` cache) as pure functions of time, randomness given
//! as input, and a secret key.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use bitcoin::p2p::address::AddrV2Message;

use crate::peer::PeerId;

use super::ConnectionKind;

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

/// Times at or below this (Unix seconds) are "no time" and replaced (Core's `ProcessAddrs`:
/// `nTime <= 100000000`).
pub const MIN_ADDR_TIME: u32 = 100_000_000;
/// An address dated more than this in the future has its time replaced (Core: 10 minutes).
pub const MAX_ADDR_FUTURE: Duration = Duration::from_secs(600);
/// A replaced time is this long before now (Core: 5 days).
pub const REPLACED_ADDR_AGE: Duration = Duration::from_secs(5 * 24 * 3600);
/// A message with this many addresses or more may be (part of) a `getaddr` answer: until a
/// smaller one arrives, addresses from a peer we sent `getaddr` are not forwarded (Core's
/// `m_getaddr_sent`, cleared by a message of fewer than `MAX_ADDR_TO_SEND` = 1000).
pub const GETADDR_ANSWER_SIZE: usize = 1000;
/// A cached `getaddr` answer lives at least this long (Core's `GetAddresses`: 21 hours)...
pub const ADDR_CACHE_LIFETIME: Duration = Duration::from_secs(21 * 3600);
/// ...plus a uniformly random jitter below this (Core: 6 hours).
pub const ADDR_CACHE_JITTER: Duration = Duration::from_secs(6 * 3600);
/// Cached `getaddr` answers kept at once (one per requestor network and local socket). Core
/// does not bound its `m_addr_response_caches` (a few networks times the listening sockets);
/// verack drops the one expiring first beyond 32, about 32 × 1000 addresses at most.
pub const MAX_ADDR_CACHES: usize = 32;

/// Whether address relay can ever be set up with a `kind` connection (Core's
/// `SetupAddressRelay`): never with block-relay-only connections (their link would show in
/// address traffic) nor with feelers (gone before an answer comes).
pub fn addr_relay_allowed(kind: ConnectionKind) -> bool {
    !matches!(
        kind,
        ConnectionKind::BlockRelayOnly | ConnectionKind::Feeler
    )
}

/// The server's address relay state for one admitted peer (Core's `Peer` fields
/// `m_addr_relay_enabled`, `m_addr_processed`, `m_addr_rate_limited`), shown by getpeerinfo
/// as `addr_relay_enabled`, `addr_processed` and `addr_rate_limited`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AddrRelayState {
    /// Addresses are relayed to this peer: our own (self-announcement) and others' (as a
    /// forwarding target). Default `false`.
    pub enabled: bool,
    /// Addresses from this peer processed: let through by the token bucket and not banned.
    pub processed: u64,
    /// Addresses from this peer dropped by the token bucket.
    pub rate_limited: u64,
}

impl AddrRelayState {
    /// The state at admission. As Core's `SetupAddressRelay` on `version`, outbound
    /// connections that may relay addresses (full-relay, manual, addr-fetch) have relay
    /// enabled at once; inbound peers start disabled, until they send an address message
    /// ([`setup`](Self::setup)).
    pub fn at_connect(kind: ConnectionKind) -> AddrRelayState {
        AddrRelayState {
            enabled: kind != ConnectionKind::Inbound && addr_relay_allowed(kind),
            ..AddrRelayState::default()
        }
    }

    /// The peer sent `addr`, `addrv2` or `getaddr`: enables relay if the kind allows it (Core's
    /// `SetupAddressRelay` on the first address message). Returns whether relay is enabled;
    /// if not, the message is ignored.
    pub fn setup(&mut self, kind: ConnectionKind) -> bool {
        if addr_relay_allowed(kind) {
            self.enabled = true;
        }
        self.enabled
    }

    /// Adds one message's counts (saturating).
    pub fn count(&mut self, processed: u64, rate_limited: u64) {
        self.processed = self.processed.saturating_add(processed);
        self.rate_limited = self.rate_limited.saturating_add(rate_limited);
    }
}

/// A received address's time as Core's `ProcessAddrs` keeps it: a time at or below
/// [`MIN_ADDR_TIME`] or more than [`MAX_ADDR_FUTURE`] ahead of `now` (Unix seconds) becomes
/// `now` − [`REPLACED_ADDR_AGE`].
pub fn clamp_addr_time(time: u32, now: u64) -> u32 {
    if time <= MIN_ADDR_TIME || u64::from(time) > now.saturating_add(MAX_ADDR_FUTURE.as_secs()) {
        u32::try_from(now.saturating_sub(REPLACED_ADDR_AGE.as_secs())).unwrap_or(u32::MAX)
    } else {
        time
    }
}

/// Whether addresses of a `message_len`-address message may be forwarded (Core's
/// `RelayAddress` condition in `ProcessAddrs`): at most [`MAX_ADDRS_TO_FORWARD`], and not
/// while our `getaddr` to the peer is unanswered (`getaddr_sent`; the answer is stored only).
/// Each address must also be fresh and routable.
pub fn may_forward(message_len: usize, getaddr_sent: bool) -> bool {
    message_len <= MAX_ADDRS_TO_FORWARD && !getaddr_sent
}

/// Cached `getaddr` answers, one per key (Core's `m_addr_response_caches`, keyed by the
/// requestor's network and our local socket, so a node reachable over several networks or
/// addresses cannot be recognised by comparing answers). An answer is computed once and served
/// to every requestor with the same key until it expires, [`ADDR_CACHE_LIFETIME`] plus a
/// random jitter after it was computed (as the caller says): scraping the address manager by asking repeatedly yields
/// the same at most 1000 addresses for about a day. Holds at most [`MAX_ADDR_CACHES`] answers.
#[derive(Debug)]
pub struct AddrResponseCache<K> {
    entries: HashMap<K, CachedAnswer>,
}

#[derive(Debug)]
struct CachedAnswer {
    addrs: Arc<[AddrV2Message]>,
    /// Expiry, seconds on the caller's clock.
    expires: u64,
}

impl<K> Default for AddrResponseCache<K> {
    fn default() -> Self {
        AddrResponseCache {
            entries: HashMap::new(),
        }
    }
}

impl<K: Eq + Hash + Clone> AddrResponseCache<K> {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// The answer for `key` at `now` (seconds on any monotonic clock): the cached one, or, when
    /// there is none or it expired (expiry before `now`), a new one from `fill`, cached until
    /// `now` + `lifetime` (Core: [`ADDR_CACHE_LIFETIME`] plus a uniformly random jitter below
    /// [`ADDR_CACHE_JITTER`]).
    pub fn get(
        &mut self,
        key: &K,
        now: u64,
        lifetime: Duration,
        fill: impl FnOnce() -> Vec<AddrV2Message>,
    ) -> Arc<[AddrV2Message]> {
        if let Some(entry) = self.entries.get(key) {
            if entry.expires >= now {
                return entry.addrs.clone();
            }
        }
        self.entries.retain(|_, e| e.expires >= now);
        if self.entries.len() >= MAX_ADDR_CACHES && !self.entries.contains_key(key) {
            if let Some(first) = self
                .entries
                .iter()
                .min_by_key(|(_, e)| e.expires)
                .map(|(k, _)| k.clone())
            {
                self.entries.remove(&first);
            }
        }
        let addrs: Arc<[AddrV2Message]> = fill().into();
        self.entries.insert(
            key.clone(),
            CachedAnswer {
                addrs: addrs.clone(),
                expires: now.saturating_add(lifetime.as_secs()),
            },
        );
        addrs
    }

    /// Answers cached now.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

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
    use bitcoin::p2p::ServiceFlags;
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

    #[test]
    fn addr_relay_is_set_up_as_cores_setup_address_relay() {
        use ConnectionKind::*;
        // Outbound peers that relay addresses: at once.
        for kind in [FullRelay, Manual, AddrFetch] {
            assert!(AddrRelayState::at_connect(kind).enabled, "{kind:?}");
        }
        // Inbound: only after an address message.
        let mut inbound = AddrRelayState::at_connect(Inbound);
        assert!(!inbound.enabled);
        assert!(inbound.setup(Inbound));
        assert!(inbound.enabled);
        // Never with block-relay-only or feeler connections, whatever they send.
        for kind in [BlockRelayOnly, Feeler] {
            let mut s = AddrRelayState::at_connect(kind);
            assert!(!s.enabled);
            assert!(!s.setup(kind), "{kind:?}");
            assert!(!s.enabled);
        }
        let mut s = AddrRelayState::default();
        s.count(1, 599);
        s.count(0, 600);
        assert_eq!((s.processed, s.rate_limited), (1, 1199));
        s.count(u64::MAX, 0);
        assert_eq!(s.processed, u64::MAX, "saturates");
    }

    #[test]
    fn processing_rules_match_process_addrs() {
        let now = 1_700_000_000u64;
        let replaced = (now - 5 * 24 * 3600) as u32;
        assert_eq!(clamp_addr_time(100_000_000, now), replaced);
        assert_eq!(clamp_addr_time(0, now), replaced);
        assert_eq!(clamp_addr_time(100_000_001, now), 100_000_001);
        assert_eq!(clamp_addr_time(now as u32 + 600, now), now as u32 + 600);
        assert_eq!(clamp_addr_time(now as u32 + 601, now), replaced);
        assert!(may_forward(10, false));
        assert!(!may_forward(11, false), "more than 10: stored only");
        assert!(!may_forward(1, true), "while our getaddr is unanswered");
    }

    fn answer(n: u8) -> Vec<AddrV2Message> {
        vec![AddrV2Message {
            time: 0,
            services: ServiceFlags::NETWORK,
            addr: bitcoin::p2p::address::AddrV2::Ipv4([1, 2, 3, n].into()),
            port: 8333,
        }]
    }

    #[test]
    fn getaddr_answers_are_cached_per_key_for_their_lifetime() {
        let mut cache: AddrResponseCache<u8> = AddrResponseCache::new();
        let hour = 3600;
        // Core's lifetime with a 2 h jitter: 23 h.
        let lifetime = ADDR_CACHE_LIFETIME + Duration::from_secs(2 * hour);
        let first = cache.get(&0, 1000, lifetime, || answer(1));
        assert_eq!(&first[..], &answer(1)[..]);
        // Same key until it expires: the same answer, fill not called.
        let at_expiry = 1000 + 23 * hour;
        for now in [1000, 1000 + hour, at_expiry] {
            let again = cache.get(&0, now, lifetime, || panic!("refilled at {now}"));
            assert!(Arc::ptr_eq(&again, &first));
        }
        // Another key (network or local socket) has its own answer.
        let other = cache.get(&1, 1000, lifetime, || answer(2));
        assert_eq!(&other[..], &answer(2)[..]);
        assert_eq!(cache.len(), 2);
        // After expiry: recomputed, and cached again for the lifetime given then.
        let fresh = cache.get(&0, at_expiry + 1, ADDR_CACHE_LIFETIME, || answer(3));
        assert_eq!(&fresh[..], &answer(3)[..]);
        let later = at_expiry + 1 + 21 * hour;
        let same = cache.get(&0, later, lifetime, || answer(4));
        assert!(Arc::ptr_eq(&same, &fresh));
        let renewed = cache.get(&0, later + 1, lifetime, || answer(4));
        assert_eq!(&renewed[..], &answer(4)[..]);
        // An empty answer is cached too (Core).
        let mut c: AddrResponseCache<u8> = AddrResponseCache::new();
        assert!(c.get(&0, 0, lifetime, Vec::new).is_empty());
        assert!(c.get(&0, 10, lifetime, || answer(1)).is_empty());
    }

    #[test]
    fn the_cache_holds_at_most_max_addr_caches_answers() {
        let mut cache: AddrResponseCache<usize> = AddrResponseCache::new();
        for k in 0..MAX_ADDR_CACHES + 10 {
            cache.get(&k, k as u64, ADDR_CACHE_LIFETIME, || answer(k as u8));
            assert!(cache.len() <= MAX_ADDR_CACHES);
        }
        assert_eq!(cache.len(), MAX_ADDR_CACHES);
        // The ones expiring first went; the newest are kept.
        let last = MAX_ADDR_CACHES + 9;
        let kept = cache.get(&last, last as u64, ADDR_CACHE_LIFETIME, || {
            panic!("refilled")
        });
        assert_eq!(&kept[..], &answer(last as u8)[..]);
        cache.get(&0, last as u64, ADDR_CACHE_LIFETIME, || answer(0));
        assert_eq!(cache.len(), MAX_ADDR_CACHES);
        // Expired answers are dropped when a new one is computed.
        cache.get(&1000, 100 * 3600, ADDR_CACHE_LIFETIME, || answer(9));
        assert_eq!(cache.len(), 1);
        assert!(!cache.is_empty());
    }
}
