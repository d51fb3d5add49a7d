//! Inventory announcement: the known-inventory filter and Poisson trickling, as pure
//! structures (Core's `m_tx_inventory_known_filter` and `NextInvToInbounds`/`rand_exp_duration`).

use std::collections::hash_map::RandomState;
use std::collections::HashSet;
use std::hash::BuildHasher;
use std::time::Duration;

use bitcoin::p2p::message_blockdata::Inventory;
use tokio::time::Instant;

/// Entries per `inv` message: 1000 (btcd's `maxInvTrickleSize`; Core's receive limit is
/// `MAX_INV_SZ` = 50,000).
pub const MAX_INV_PER_MESSAGE: usize = 1000;
/// Queued, not yet announced transaction inventory kept per peer; more is dropped.
pub const MAX_PENDING_INVENTORY: usize = 50_000;

/// Whether this item is a block announcement, sent at once rather than trickled.
pub(crate) fn is_block(inv: &Inventory) -> bool {
    matches!(
        inv,
        Inventory::Block(_) | Inventory::WitnessBlock(_) | Inventory::CompactBlock(_)
    )
}

/// Items the remote is known to have, bounded: two generations of keyed 64-bit fingerprints;
/// when the current one holds half the capacity it becomes the previous one and the oldest
/// generation is forgotten. The key is random per peer, so a remote cannot craft colliding
/// items. Memory grows with use (nothing is allocated for an idle peer).
#[derive(Debug)]
pub(crate) struct KnownInventory {
    capacity: usize,
    hasher: RandomState,
    current: HashSet<u64>,
    previous: HashSet<u64>,
}

impl KnownInventory {
    pub(crate) fn new(capacity: usize) -> KnownInventory {
        KnownInventory {
            capacity: capacity.max(2),
            hasher: RandomState::new(),
            current: HashSet::new(),
            previous: HashSet::new(),
        }
    }

    pub(crate) fn contains(&self, inv: &Inventory) -> bool {
        let key = self.hasher.hash_one(inv);
        self.current.contains(&key) || self.previous.contains(&key)
    }

    /// Remembers `inv`; returns `false` if it was already known.
    pub(crate) fn insert(&mut self, inv: &Inventory) -> bool {
        let key = self.hasher.hash_one(inv);
        if self.previous.contains(&key) || !self.current.insert(key) {
            return false;
        }
        if self.current.len() >= self.capacity / 2 {
            self.previous = std::mem::take(&mut self.current);
        }
        true
    }
}

/// The delay to the next event of a Poisson process with the given mean, from a uniform draw
/// `u` in `[0, 1)`: `-ln(1 - u) · mean` (Core's `rand_exp_duration`).
pub fn poisson_delay(mean: Duration, u: f64) -> Duration {
    let u = u.clamp(0.0, 1.0 - f64::EPSILON);
    mean.mul_f64(-(1.0 - u).ln())
}

/// Transaction inventory waiting to be announced on Poisson-distributed intervals.
#[derive(Debug)]
pub(crate) struct Trickle {
    mean: Duration,
    pending: Vec<Inventory>,
    next_send: Option<Instant>,
}

impl Trickle {
    pub(crate) fn new(mean: Duration) -> Trickle {
        Trickle {
            mean,
            pending: Vec::new(),
            next_send: None,
        }
    }

    /// Queues a non-block item (filtering is the caller's); `u` is a uniform draw used to
    /// schedule the next announcement if none is scheduled. Returns `false` when the queue is
    /// full and the item was dropped.
    pub(crate) fn push(&mut self, inv: Inventory, now: Instant, u: f64) -> bool {
        if self.pending.len() >= MAX_PENDING_INVENTORY {
            return false;
        }
        self.pending.push(inv);
        if self.next_send.is_none() {
            self.next_send = Some(now + poisson_delay(self.mean, u));
        }
        true
    }

    /// When due, the queued items not yet known to the remote, in `inv`-sized batches of at most
    /// [`MAX_INV_PER_MESSAGE`]; each sent item becomes known.
    pub(crate) fn poll(&mut self, now: Instant, known: &mut KnownInventory) -> Vec<Vec<Inventory>> {
        match self.next_send {
            Some(at) if at <= now => {}
            _ => return Vec::new(),
        }
        self.next_send = None;
        let fresh: Vec<Inventory> = self
            .pending
            .drain(..)
            .filter(|inv| known.insert(inv))
            .collect();
        fresh
            .chunks(MAX_INV_PER_MESSAGE)
            .map(<[Inventory]>::to_vec)
            .collect()
    }

    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.next_send
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::hashes::Hash;
    use bitcoin::Txid;

    fn tx(n: u32) -> Inventory {
        let mut b = [0u8; 32];
        b[..4].copy_from_slice(&n.to_le_bytes());
        Inventory::Transaction(Txid::from_byte_array(b))
    }

    #[test]
    fn poisson_delay_is_the_exponential_quantile() {
        let mean = Duration::from_secs(5);
        assert_eq!(poisson_delay(mean, 0.0), Duration::ZERO);
        let median = poisson_delay(mean, 0.5).as_secs_f64();
        assert!((median - 5.0 * std::f64::consts::LN_2).abs() < 1e-6);
        // The mean over a fine uniform grid approaches the configured mean.
        let n = 100_000;
        let avg: f64 = (0..n)
            .map(|i| poisson_delay(mean, (i as f64 + 0.5) / n as f64).as_secs_f64())
            .sum::<f64>()
            / n as f64;
        assert!((avg - 5.0).abs() < 0.05, "average {avg}");
    }

    #[test]
    fn known_inventory_is_bounded_and_remembers_recent() {
        let mut k = KnownInventory::new(100);
        for n in 0..1000 {
            assert!(k.insert(&tx(n)));
        }
        assert!(!k.insert(&tx(999)), "recent item known");
        assert!(k.contains(&tx(960)));
        assert!(!k.contains(&tx(0)), "old items forgotten");
        assert!(k.current.len() + k.previous.len() <= 100);
    }

    #[test]
    fn trickle_batches_at_most_1000_and_skips_known() {
        let t0 = Instant::now();
        let mut k = KnownInventory::new(50_000);
        let mut t = Trickle::new(Duration::from_secs(2));
        k.insert(&tx(5));
        for n in 0..2501 {
            assert!(t.push(tx(n), t0, 0.5));
        }
        t.push(tx(7), t0, 0.5); // duplicate in the queue
        let due = t0 + poisson_delay(Duration::from_secs(2), 0.5);
        assert_eq!(t.next_deadline(), Some(due));
        assert!(t.poll(due - Duration::from_millis(1), &mut k).is_empty());
        let batches = t.poll(due, &mut k);
        let sizes: Vec<usize> = batches.iter().map(Vec::len).collect();
        assert_eq!(
            sizes,
            vec![1000, 1000, 500],
            "2501 items minus the known one"
        );
        assert!(batches.iter().flatten().all(|i| *i != tx(5)));
        assert!(k.contains(&tx(2500)));
        assert_eq!(t.next_deadline(), None);
    }
}
