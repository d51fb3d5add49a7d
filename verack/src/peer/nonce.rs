//! Self-connection detection through the nonces of our own `version` messages.

use std::collections::VecDeque;
use std::sync::Mutex;

/// How many recent outbound nonces are remembered: 50, as btcd's `sentNonces`.
pub const NONCE_CACHE_SIZE: usize = 50;

/// The nonces of our last [`NONCE_CACHE_SIZE`] outbound `version` messages.
///
/// An inbound `version` carrying one of them means we connected to ourselves. Share one cache
/// (through [`PeerConfig`](super::PeerConfig) clones) among all peers of a node.
#[derive(Debug, Default)]
pub struct NonceCache {
    recent: Mutex<VecDeque<u64>>,
}

impl NonceCache {
    /// Remembers `nonce`, forgetting the oldest beyond [`NONCE_CACHE_SIZE`].
    pub fn insert(&self, nonce: u64) {
        let mut recent = self.recent.lock().expect("nonce cache lock");
        if recent.len() == NONCE_CACHE_SIZE {
            recent.pop_front();
        }
        recent.push_back(nonce);
    }

    /// Whether `nonce` is one of ours.
    pub fn contains(&self, nonce: u64) -> bool {
        self.recent
            .lock()
            .expect("nonce cache lock")
            .contains(&nonce)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_the_last_50() {
        let cache = NonceCache::default();
        for n in 1..=60 {
            cache.insert(n);
        }
        assert!(!cache.contains(10), "evicted");
        assert!(cache.contains(11));
        assert!(cache.contains(60));
    }
}
