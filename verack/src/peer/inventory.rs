//! Inventory announcement: the known-inventory filter and Poisson trickling, as pure
//! structures (Core's `m_tx_inventory_known_filter` and `NextInvToInbounds`/`rand_exp_duration`).

use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};
use std::time::Duration;

use bitcoin::hashes::Hash;
use bitcoin::p2p::message_blockdata::Inventory;
use tokio::time::Instant;

use super::sent::Notifier;

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
/// items. Memory grows with use (nothing is allocated for an idle peer); a generation that
/// filled once is re-created at its full size, so a busy peer does not rehash as it refills.
#[derive(Debug)]
pub(crate) struct KnownInventory {
    capacity: usize,
    key: [u64; 5],
    current: HashSet<u64, BuildHasherDefault<Fingerprint>>,
    previous: HashSet<u64, BuildHasherDefault<Fingerprint>>,
}

impl KnownInventory {
    pub(crate) fn new(capacity: usize) -> KnownInventory {
        KnownInventory {
            capacity: capacity.max(2),
            key: rand::random(),
            current: HashSet::default(),
            previous: HashSet::default(),
        }
    }

    /// The item's keyed 64-bit fingerprint: a multilinear hash (NH, as in UMAC) of its type and
    /// 32-byte hash under the per-peer random key, finished with a multiply-xorshift. Without
    /// the key a remote cannot choose items that collide.
    fn fingerprint(&self, inv: &Inventory) -> u64 {
        let (kind, hash) = inventory_parts(inv);
        let word = |i: usize| u64::from_le_bytes(hash[i * 8..i * 8 + 8].try_into().expect("8"));
        let k = &self.key;
        let nh = |a: u64, ka: u64, b: u64, kb: u64| {
            (a.wrapping_add(ka) as u128).wrapping_mul(b.wrapping_add(kb) as u128)
        };
        let sum = nh(word(0), k[0], word(1), k[1])
            .wrapping_add(nh(word(2), k[2], word(3), k[3]))
            .wrapping_add(u128::from(kind ^ k[4]));
        let mut x = (sum as u64) ^ ((sum >> 64) as u64);
        x ^= x >> 32;
        x = x.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        x ^ (x >> 29)
    }

    pub(crate) fn contains(&self, inv: &Inventory) -> bool {
        let key = self.fingerprint(inv);
        self.current.contains(&key) || self.previous.contains(&key)
    }

    /// Remembers `inv`; returns `false` if it was already known.
    pub(crate) fn insert(&mut self, inv: &Inventory) -> bool {
        let key = self.fingerprint(inv);
        if self.previous.contains(&key) || !self.current.insert(key) {
            return false;
        }
        if self.current.len() >= self.capacity / 2 {
            let full = HashSet::with_capacity_and_hasher(self.capacity / 2, Default::default());
            self.previous = std::mem::replace(&mut self.current, full);
        }
        true
    }
}

/// The inventory type as a number and the 32-byte hash it names.
fn inventory_parts(inv: &Inventory) -> (u64, [u8; 32]) {
    match inv {
        Inventory::Error => (0, [0; 32]),
        Inventory::Transaction(t) => (1, t.to_byte_array()),
        Inventory::Block(b) => (2, b.to_byte_array()),
        Inventory::CompactBlock(b) => (4, b.to_byte_array()),
        Inventory::WTx(w) => (5, w.to_byte_array()),
        Inventory::WitnessTransaction(t) => (0x4000_0001, t.to_byte_array()),
        Inventory::WitnessBlock(b) => (0x4000_0002, b.to_byte_array()),
        Inventory::Unknown { inv_type, hash } => (u64::from(*inv_type) | 1 << 40, *hash),
    }
}

/// The hasher of the fingerprint sets: the keys are already keyed, well-mixed hashes, so it
/// passes them through.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Fingerprint(u64);

impl Hasher for Fingerprint {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// The delay to the next event of a Poisson process with the given mean, from a uniform draw
/// `u` in `[0, 1)`: `-ln(1 - u) · mean` (Core's `rand_exp_duration`).
pub fn poisson_delay(mean: Duration, u: f64) -> Duration {
    let u = u.clamp(0.0, 1.0 - f64::EPSILON);
    mean.mul_f64(-(1.0 - u).ln())
}

/// One trickle round: the `inv` batches to send and the completions waiting on them.
#[derive(Debug, Default)]
pub(crate) struct Round {
    pub(crate) batches: Vec<Vec<Inventory>>,
    pub(crate) waiters: Vec<Notifier>,
}

/// Transaction inventory waiting to be announced on Poisson-distributed intervals.
#[derive(Debug)]
pub(crate) struct Trickle {
    mean: Duration,
    pending: Vec<Inventory>,
    /// Completions of `queue_inventory_notify` calls whose items are in `pending`: resolved
    /// when the round that takes those items has been written.
    waiters: Vec<Notifier>,
    next_send: Option<Instant>,
}

impl Trickle {
    pub(crate) fn new(mean: Duration) -> Trickle {
        Trickle {
            mean,
            pending: Vec::new(),
            waiters: Vec::new(),
            next_send: None,
        }
    }

    /// Adds a completion for the items pushed so far (see [`Trickle::poll`]).
    pub(crate) fn push_waiter(&mut self, waiter: Notifier) {
        self.waiters.push(waiter);
    }

    /// Drops every waiting completion (they fail): the peer is disconnecting.
    pub(crate) fn drop_waiters(&mut self) {
        self.waiters = Vec::new();
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
    /// [`MAX_INV_PER_MESSAGE`]; each sent item becomes known. The waiters taken with them are
    /// to be resolved once the last batch is written (or at once if there is no batch).
    pub(crate) fn poll(&mut self, now: Instant, known: &mut KnownInventory) -> Round {
        match self.next_send {
            Some(at) if at <= now => {}
            _ => return Round::default(),
        }
        self.next_send = None;
        let fresh: Vec<Inventory> = self
            .pending
            .drain(..)
            .filter(|inv| known.insert(inv))
            .collect();
        Round {
            batches: fresh
                .chunks(MAX_INV_PER_MESSAGE)
                .map(<[Inventory]>::to_vec)
                .collect(),
            waiters: std::mem::take(&mut self.waiters),
        }
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
    fn structured_items_do_not_collide_and_kinds_are_distinct() {
        // Items differing in one byte of one word, or only in type, as a remote could choose.
        let mut k = KnownInventory::new(200_000);
        for word in 0..4 {
            for i in 1..=5_000u32 {
                let mut h = [0u8; 32];
                h[word * 8..word * 8 + 4].copy_from_slice(&i.to_le_bytes());
                let id = bitcoin::Txid::from_byte_array(h);
                assert!(
                    k.insert(&Inventory::Transaction(id)),
                    "word {word} item {i}"
                );
                let wtx = Inventory::WitnessTransaction(id);
                assert!(
                    !k.contains(&wtx) && k.insert(&wtx),
                    "type is part of the key"
                );
            }
        }
        assert_eq!(k.current.len(), 2 * 4 * 5_000);
        assert!(k.previous.is_empty());
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
        assert!(t
            .poll(due - Duration::from_millis(1), &mut k)
            .batches
            .is_empty());
        let batches = t.poll(due, &mut k).batches;
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
