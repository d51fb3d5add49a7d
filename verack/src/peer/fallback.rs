//! Remembering which addresses answered a v2 attempt as v1-only peers.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Mutex;

/// Addresses a [`V1OnlyCache`] holds by default: 1000.
pub const V1_ONLY_CACHE_SIZE: usize = 1000;

/// A bounded, least-recently-used set of addresses that answered a BIP324 v2 attempt the way
/// BIP324 says a v1-only peer does (closed, reset or silent with nothing received, or a v1
/// reply).
///
/// An outbound handshake that ends with
/// [`HandshakeError::V2RetryV1`](super::HandshakeError::V2RetryV1) inserts its address. Peers
/// built by [`Peer::outbound`](super::Peer::outbound) /
/// [`Peer::outbound_with_services`](super::Peer::outbound_with_services) use v1 for an address
/// in the cache, so a caller that re-dials the same way after the hint gets v1. Share one cache
/// (through [`PeerConfig`](super::PeerConfig) clones) among all peers of a node; memory is
/// bounded by the capacity (oldest entries are forgotten first).
#[derive(Debug)]
pub struct V1OnlyCache {
    capacity: usize,
    inner: Mutex<Lru>,
}

#[derive(Debug, Default)]
struct Lru {
    /// Address → its last-use stamp.
    stamps: HashMap<SocketAddr, u64>,
    /// Stamp → address, oldest first.
    order: BTreeMap<u64, SocketAddr>,
    next: u64,
}

impl Lru {
    fn touch(&mut self, addr: SocketAddr) {
        let stamp = self.next;
        self.next += 1;
        if let Some(old) = self.stamps.insert(addr, stamp) {
            self.order.remove(&old);
        }
        self.order.insert(stamp, addr);
    }
}

impl V1OnlyCache {
    /// A cache holding at most `capacity` addresses (at least 1).
    pub fn new(capacity: usize) -> V1OnlyCache {
        V1OnlyCache {
            capacity: capacity.max(1),
            inner: Mutex::new(Lru::default()),
        }
    }

    /// Remembers `addr` as v1-only (most recently used), forgetting the least recently used
    /// address beyond the capacity.
    pub fn insert(&self, addr: SocketAddr) {
        let mut lru = self.lock();
        lru.touch(addr);
        while lru.stamps.len() > self.capacity {
            let (_, oldest) = lru.order.pop_first().expect("non-empty");
            lru.stamps.remove(&oldest);
        }
    }

    /// Whether `addr` is known to speak only v1; a hit counts as a use.
    pub fn contains(&self, addr: SocketAddr) -> bool {
        let mut lru = self.lock();
        if lru.stamps.contains_key(&addr) {
            lru.touch(addr);
            true
        } else {
            false
        }
    }

    /// Forgets `addr` (e.g. when it was seen speaking v2 inbound); returns whether it was there.
    pub fn remove(&self, addr: SocketAddr) -> bool {
        let mut lru = self.lock();
        match lru.stamps.remove(&addr) {
            Some(stamp) => {
                lru.order.remove(&stamp);
                true
            }
            None => false,
        }
    }

    /// Addresses held.
    pub fn len(&self) -> usize {
        self.lock().stamps.len()
    }

    /// Whether no address is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The maximum number of addresses held.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Lru> {
        self.inner.lock().expect("v1-only cache lock")
    }
}

impl Default for V1OnlyCache {
    /// A cache of [`V1_ONLY_CACHE_SIZE`] addresses.
    fn default() -> V1OnlyCache {
        V1OnlyCache::new(V1_ONLY_CACHE_SIZE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, 1], port))
    }

    #[test]
    fn bounded_and_least_recently_used_first() {
        let cache = V1OnlyCache::new(3);
        cache.insert(addr(1));
        cache.insert(addr(2));
        cache.insert(addr(3));
        assert!(cache.contains(addr(1))); // 1 is now the most recent
        cache.insert(addr(4)); // evicts 2
        assert!(!cache.contains(addr(2)));
        assert!(cache.contains(addr(1)) && cache.contains(addr(3)) && cache.contains(addr(4)));
        assert_eq!(cache.len(), 3);
        assert!(cache.remove(addr(3)));
        assert!(!cache.remove(addr(3)));
        assert_eq!(cache.len(), 2);
        cache.insert(addr(4)); // re-insert refreshes, no duplicate
        assert_eq!(cache.len(), 2);
        assert_eq!(V1OnlyCache::default().capacity(), 1000);
    }
}
