//! An address manager after Bitcoin Core's `AddrMan` (src/addrman.cpp, src/addrman_impl.h):
//! where this node learns peer addresses, how it keeps them so that no single source can fill
//! the table (eclipse resistance), and how it picks addresses to connect to.
//!
//! # Tables
//! - **New** ([`NEW_BUCKET_COUNT`] × [`BUCKET_SIZE`] slots): addresses heard of but never
//!   connected to. The bucket comes from a keyed hash of (address group, source group), so one
//!   source group reaches at most [`NEW_BUCKETS_PER_SOURCE_GROUP`] buckets, and one address
//!   is in at most [`NEW_BUCKETS_PER_ADDRESS`] buckets.
//! - **Tried** ([`TRIED_BUCKET_COUNT`] × [`BUCKET_SIZE`] slots): addresses connected to
//!   successfully. The bucket comes from a keyed hash of the address and its group, so one
//!   group reaches at most [`TRIED_BUCKETS_PER_GROUP`] buckets.
//!
//! The slot inside a bucket is a keyed hash of the address and port. The key is a 256-bit
//! secret drawn per database and persisted with it: without it an attacker cannot aim
//! addresses at a slot.
//!
//! # Determinism
//! [`AddrMan`] does no I/O (except [`save`](AddrMan::save) and [`load`](AddrMan::load)) and
//! never reads a clock: every call that needs the time takes `now` in Unix seconds, and every
//! random choice comes from a [`StdRng`] seeded by the caller. The same seed and the same calls
//! give the same results.
//!
//! # Persistence
//! [`AddrMan::save`] / [`AddrMan::load`] keep the database in a versioned binary file with a
//! checksum (see [`AddrManError`] for what loading reports); [`AddrMan::to_bytes`] /
//! [`AddrMan::from_bytes`] are the same without files.
//!
//! # Example
//! ```
//! use bitcoin::p2p::address::{AddrV2, AddrV2Message};
//! use bitcoin::p2p::ServiceFlags;
//! use verack::addrman::{AddrMan, AddrManConfig};
//!
//! let now = 1_700_000_000;
//! let mut man = AddrMan::new(AddrManConfig::default(), 42);
//! let peer = AddrV2::Ipv4("203.0.113.7".parse().unwrap()); // documentation range: refused
//! let good = AddrV2::Ipv4("8.8.8.8".parse().unwrap());
//! let heard = |addr: AddrV2| AddrV2Message {
//!     time: now as u32,
//!     services: ServiceFlags::NETWORK,
//!     addr,
//!     port: 8333,
//! };
//! let source = AddrV2::Ipv4("1.1.1.1".parse().unwrap());
//! assert_eq!(man.add(&[heard(peer), heard(good.clone())], &source, 2 * 60 * 60, now), 1);
//! let (pick, _last_try) = man.select(false, None, ServiceFlags::NONE, now).unwrap();
//! assert_eq!(pick.addr, good);
//! man.attempt(&pick.addr, pick.port, true, now);
//! assert!(man.good(&pick.addr, pick.port, now + 1)); // handshake done: now in tried
//! assert_eq!(man.size(None, Some(false)), 1);
//! ```
//!
//! # Groups
//! IP addresses are grouped as [`crate::netgroup`] (Core's `GetGroup` without ASMap: IPv4 /16,
//! IPv6 /32, Hurricane Electric /36, IPv4 embedded in 6to4/Teredo by its /16). BIP155 networks
//! follow Core: Tor v3 and I2P by network plus the first 4 bits of the address, CJDNS by
//! network plus its first 12 bits.

mod bucket;
mod persist;
#[cfg(test)]
mod tests;

use std::collections::{BTreeSet, HashMap};
use std::fmt;

use bitcoin::p2p::address::{AddrV2, AddrV2Message};
use bitcoin::p2p::ServiceFlags;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tracing::debug;

pub use bucket::{internal_source, network_of, INTERNAL_IN_IPV6_PREFIX};
pub use persist::{AddrManError, FORMAT_VERSION, MAGIC};

use bucket::{
    bucket_position, group_of, is_storable, net_class, new_bucket, normalize, service_key,
    tried_bucket,
};

/// Number of buckets of the new table (Core's `ADDRMAN_NEW_BUCKET_COUNT`, 2^10).
pub const NEW_BUCKET_COUNT: usize = 1024;
/// Number of buckets of the tried table (Core's `ADDRMAN_TRIED_BUCKET_COUNT`, 2^8).
pub const TRIED_BUCKET_COUNT: usize = 256;
/// Slots per bucket in either table (Core's `ADDRMAN_BUCKET_SIZE`, 2^6).
pub const BUCKET_SIZE: usize = 64;
/// Over how many tried buckets the addresses of one group are spread (Core's
/// `ADDRMAN_TRIED_BUCKETS_PER_GROUP`).
pub const TRIED_BUCKETS_PER_GROUP: u64 = 8;
/// Over how many new buckets the addresses from one source group are spread (Core's
/// `ADDRMAN_NEW_BUCKETS_PER_SOURCE_GROUP`).
pub const NEW_BUCKETS_PER_SOURCE_GROUP: u64 = 64;
/// In how many new buckets one address may be at most (Core's
/// `ADDRMAN_NEW_BUCKETS_PER_ADDRESS`).
pub const NEW_BUCKETS_PER_ADDRESS: u32 = 8;
/// Addresses not seen for longer than this (30 days, in seconds) are terrible (Core's
/// `ADDRMAN_HORIZON`).
pub const HORIZON_SECS: i64 = 30 * 24 * 60 * 60;
/// After this many failed attempts without any success an address is terrible (Core's
/// `ADDRMAN_RETRIES`).
pub const RETRIES: u32 = 3;
/// This many failures ... (Core's `ADDRMAN_MAX_FAILURES`) ...
pub const MAX_FAILURES: u32 = 10;
/// ... with no success for this long (7 days, in seconds) make an address terrible (Core's
/// `ADDRMAN_MIN_FAIL`).
pub const MIN_FAIL_SECS: i64 = 7 * 24 * 60 * 60;
/// A tried entry that succeeded (or was tried) within this long (4 hours, in seconds) is not
/// evicted by a collision without a test (Core's `ADDRMAN_REPLACEMENT`).
pub const REPLACEMENT_SECS: i64 = 4 * 60 * 60;
/// At most this many tried collisions wait for a test (Core's
/// `ADDRMAN_SET_TRIED_COLLISION_SIZE`).
pub const SET_TRIED_COLLISION_SIZE: usize = 10;
/// After this long (40 minutes, in seconds) without the old entry being tested, a collision
/// evicts it anyway (Core's `ADDRMAN_TEST_WINDOW`).
pub const TEST_WINDOW_SECS: i64 = 40 * 60;
/// The most addresses a `getaddr` answer carries (Core's `MAX_ADDR_TO_SEND`, net_processing),
/// a natural `max_count` for [`AddrMan::get_addr`].
pub const GETADDR_MAX_ADDRESSES: usize = 1000;
/// The largest share of the table, in percent, that a `getaddr` answer carries (Core's
/// `MAX_PCT_ADDR_TO_SEND`), a natural `max_pct` for [`AddrMan::get_addr`].
pub const GETADDR_MAX_PCT: usize = 23;

const EMPTY: u32 = u32::MAX;

/// Test-only relaxations of the address rules. The default (all `false`) is what a node on a
/// real network must use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AddrManConfig {
    /// Accept loopback and private (non-routable) IP addresses, which are otherwise never
    /// stored, and group loopback `127.a.b.c` by `a.b` as if it were an IPv4 /16 (other
    /// private IPv4 by /16, private IPv6 by /32), for multi-node tests on one machine.
    /// Default `false`.
    pub allow_local: bool,
}

/// The networks addrman stores addresses of (Core's `Network` values that addrman keeps).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AddrNetwork {
    /// IPv4 (`NET_IPV4`).
    Ipv4,
    /// IPv6 (`NET_IPV6`).
    Ipv6,
    /// Tor v3 onion services (`NET_ONION`; Tor v2 is not stored).
    TorV3,
    /// I2P (`NET_I2P`).
    I2p,
    /// CJDNS, `fc00::/8` (`NET_CJDNS`).
    Cjdns,
}

impl AddrNetwork {
    /// Every network, in declaration order.
    pub const ALL: [AddrNetwork; 5] = [
        AddrNetwork::Ipv4,
        AddrNetwork::Ipv6,
        AddrNetwork::TorV3,
        AddrNetwork::I2p,
        AddrNetwork::Cjdns,
    ];

    fn index(self) -> usize {
        self as usize
    }
}

/// What addrman knows about one address (Core's `AddrInfo`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddrInfo {
    /// The address, port, services (a union of all that were announced, or what
    /// [`AddrMan::set_services`] set) and time last seen (Unix seconds, as announced minus the
    /// time penalty; refreshed by [`AddrMan::connected`]).
    pub addr: AddrV2Message,
    /// The network address (no port) that first told us about it (Core's `source`); its
    /// group chooses the new buckets.
    pub source: AddrV2,
    /// Last connection attempt, Unix seconds; 0 if never (`m_last_try`).
    pub last_try: u64,
    /// Last attempt that counted as a failure, Unix seconds; 0 if never
    /// (`m_last_count_attempt`).
    pub last_count_attempt: u64,
    /// Last successful connection, Unix seconds; 0 if never (`m_last_success`).
    pub last_success: u64,
    /// Failed attempts since the last success (`nAttempts`).
    pub attempts: u32,
    /// Whether it is in the tried table (`fInTried`).
    pub in_tried: bool,
    /// How many new-table slots hold it, 0 for tried entries, at most
    /// [`NEW_BUCKETS_PER_ADDRESS`] (`nRefCount`).
    pub ref_count: u32,
}

/// Where an address sits (Core's `AddressPosition`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AddrPosition {
    /// In the tried table (else the new table).
    pub tried: bool,
    /// How many slots hold the address: 1 in tried, its reference count in new.
    pub multiplicity: u32,
    /// The bucket: in [`AddrMan::find_entry`] the one its primary source maps to (as Core),
    /// in [`AddrMan::positions`] each bucket actually holding it.
    pub bucket: usize,
    /// The slot inside the bucket.
    pub position: usize,
}

/// Core's `AddrInfo::IsTerrible`: whether an address is not worth keeping or relaying.
///
/// Never terrible if tried within the last 60 s. Otherwise terrible if its time is more
/// than 10 minutes in the future, more than 30 days ([`HORIZON_SECS`]) in the past, if it was
/// tried [`RETRIES`] times and never succeeded, or failed [`MAX_FAILURES`] times with no
/// success in the last 7 days ([`MIN_FAIL_SECS`]). `now` is Unix seconds.
pub fn is_terrible(info: &AddrInfo, now: u64) -> bool {
    let now = now as i64;
    let time = i64::from(info.addr.time);
    if info.last_try != 0 && now - info.last_try as i64 <= 60 {
        return false;
    }
    if time > now + 10 * 60 {
        return true;
    }
    if now - time > HORIZON_SECS {
        return true;
    }
    if info.last_success == 0 && info.attempts >= RETRIES {
        return true;
    }
    if now - info.last_success as i64 > MIN_FAIL_SECS && info.attempts >= MAX_FAILURES {
        return true;
    }
    false
}

/// Core's `AddrInfo::GetChance`: the relative chance of selecting an address, in `(0, 1]`.
///
/// 1.0, times 0.01 if tried within the last 10 minutes, times 0.66 per failed attempt (at
/// most 8 counted, so never below about 1/28). `now` is Unix seconds.
pub fn chance(info: &AddrInfo, now: u64) -> f64 {
    let mut chance = 1.0;
    if (now as i64) - (info.last_try as i64) < 10 * 60 {
        chance *= 0.01;
    }
    chance * 0.66f64.powi(info.attempts.min(8) as i32)
}

#[derive(Debug, Clone)]
struct Slot {
    info: AddrInfo,
    random_pos: u32,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct NewTried {
    n_new: usize,
    n_tried: usize,
}

/// The address manager. See the [module docs](self).
///
/// Memory: entries live in a `Vec` indexed by a 32-bit id (freed ids are reused), looked up
/// through a `HashMap` from (address, port); the tables are flat arrays of ids (320 KiB).
/// A full manager holds at most `1024 × 64 + 256 × 64` = 81,920 entries.
#[derive(Clone)]
pub struct AddrMan {
    config: AddrManConfig,
    rng: StdRng,
    key: [u8; 32],
    entries: Vec<Option<Slot>>,
    free: Vec<u32>,
    index: HashMap<(AddrV2, u16), u32>,
    /// Core's `vRandom`: every id, in an order shuffled by `get_addr`.
    random: Vec<u32>,
    new_table: Box<[u32]>,
    tried_table: Box<[u32]>,
    /// Occupied slots per bucket, so `select` skips empty buckets without scanning them.
    new_fill: Box<[u8]>,
    tried_fill: Box<[u8]>,
    n_new: usize,
    n_tried: usize,
    counts: [NewTried; 5],
    tried_collisions: BTreeSet<u32>,
    /// Core's `m_last_good`: time of the last [`good`](AddrMan::good) call (starts at 1, as
    /// Core, so the first failures count).
    last_good: u64,
}

impl fmt::Debug for AddrMan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The key stays secret.
        f.debug_struct("AddrMan")
            .field("config", &self.config)
            .field("new", &self.n_new)
            .field("tried", &self.n_tried)
            .field("tried_collisions", &self.tried_collisions.len())
            .finish_non_exhaustive()
    }
}

impl AddrMan {
    /// An empty manager. Its random generator is `StdRng::seed_from_u64(seed)`, and the
    /// bucket key is the first 32 bytes it draws (never all zero). Use a fresh random seed
    /// in production (a predictable key lets an attacker aim at buckets), a fixed one in
    /// tests.
    pub fn new(config: AddrManConfig, seed: u64) -> AddrMan {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut key = [0u8; 32];
        while key == [0u8; 32] {
            rng.fill(&mut key);
        }
        AddrMan::with_key(config, rng, key)
    }

    fn with_key(config: AddrManConfig, rng: StdRng, key: [u8; 32]) -> AddrMan {
        AddrMan {
            config,
            rng,
            key,
            entries: Vec::new(),
            free: Vec::new(),
            index: HashMap::new(),
            random: Vec::new(),
            new_table: vec![EMPTY; NEW_BUCKET_COUNT * BUCKET_SIZE].into_boxed_slice(),
            tried_table: vec![EMPTY; TRIED_BUCKET_COUNT * BUCKET_SIZE].into_boxed_slice(),
            new_fill: vec![0; NEW_BUCKET_COUNT].into_boxed_slice(),
            tried_fill: vec![0; TRIED_BUCKET_COUNT].into_boxed_slice(),
            n_new: 0,
            n_tried: 0,
            counts: [NewTried::default(); 5],
            tried_collisions: BTreeSet::new(),
            last_good: 1,
        }
    }

    /// The configuration this manager was made with.
    pub fn config(&self) -> AddrManConfig {
        self.config
    }

    // -----------------------------------------------------------------------------------
    // Public operations
    // -----------------------------------------------------------------------------------

    /// Core's `Add`: learn `addrs` from `source` (the network address of the peer that sent
    /// them; its port is irrelevant).
    ///
    /// Addresses that are not routable (loopback, private, link-local, documentation, …),
    /// Tor v2, unknown networks and CJDNS outside `fc00::/8` are never stored (unless
    /// [`AddrManConfig::allow_local`] admits local/private IPs). An IPv4-mapped IPv6 address
    /// is stored as IPv4.
    ///
    /// A new address gets time `addr.time - time_penalty_secs` (no penalty when the address is
    /// the source itself) and one slot in the bucket chosen by its group and the source's
    /// group; an occupied slot is taken over only if its entry is terrible or is also in
    /// other buckets. A known address has its services extended, its time refreshed if the
    /// announcement is more than an hour newer (a day if the announcement is older than a
    /// day), and, if still in new and the announcement is newer, may gain one more bucket
    /// with probability 2^-n for n buckets held (at most [`NEW_BUCKETS_PER_ADDRESS`]).
    ///
    /// Returns how many of `addrs` were put into a new-table slot (a new entry or a further
    /// bucket for a known one), as Core's `Add_` counts. `now` is Unix seconds.
    pub fn add(
        &mut self,
        addrs: &[AddrV2Message],
        source: &AddrV2,
        time_penalty_secs: u64,
        now: u64,
    ) -> usize {
        let source = normalize(source);
        let added = addrs
            .iter()
            .filter(|a| self.add_single(a, &source, time_penalty_secs, now))
            .count();
        if added > 0 {
            debug!(
                added,
                of = addrs.len(),
                new = self.n_new,
                tried = self.n_tried,
                "addrman: added addresses"
            );
        }
        added
    }

    /// Core's `Good`: a connection to `addr:port` succeeded (handshake done) at `now` (Unix
    /// seconds). Sets the last success and last try to `now` and the attempts to 0 (the
    /// entry's time is not updated, so as not to leak current connections), then moves the
    /// entry from new to tried. If its tried slot is taken, nothing moves: the entry is queued
    /// as a tried collision (at most [`SET_TRIED_COLLISION_SIZE`] are queued) for
    /// [`resolve_collisions`](Self::resolve_collisions), and the old entry can be fetched
    /// with [`select_tried_collision`](Self::select_tried_collision) for a feeler test.
    ///
    /// Returns whether the entry moved to tried (unknown address, already tried or a
    /// collision: `false`).
    pub fn good(&mut self, addr: &AddrV2, port: u16, now: u64) -> bool {
        self.good_inner(&normalize(addr), port, true, now)
    }

    /// Core's `Attempt`: a connection to `addr:port` was attempted at `now` (Unix seconds).
    /// Sets the last try; with `count_failure`, also counts one failed attempt, but at most
    /// one per [`good`](Self::good) call anywhere (Core: only if the last counted attempt was
    /// before the last success of any address, so that losing connectivity does not wear
    /// every entry out).
    pub fn attempt(&mut self, addr: &AddrV2, port: u16, count_failure: bool, now: u64) {
        let last_good = self.last_good;
        let Some(id) = self.find(&normalize(addr), port) else {
            return;
        };
        let info = self.info_mut(id);
        info.last_try = now;
        if count_failure && info.last_count_attempt < last_good {
            info.last_count_attempt = now;
            info.attempts = info.attempts.saturating_add(1);
        }
    }

    /// Core's `Connected`: we are (or were until now) connected to `addr:port`. Sets its time
    /// to `now` (Unix seconds) if that is more than 20 minutes newer, so the times we relay
    /// do not reveal our connections to the minute.
    pub fn connected(&mut self, addr: &AddrV2, port: u16, now: u64) {
        let Some(id) = self.find(&normalize(addr), port) else {
            return;
        };
        let info = self.info_mut(id);
        if now as i64 - i64::from(info.addr.time) > 20 * 60 {
            info.addr.time = clamp_u32(now);
        }
    }

    /// Core's `SetServices`: replace the services of `addr:port` (learned from its `version`
    /// message), unlike [`add`](Self::add), which only adds flags.
    pub fn set_services(&mut self, addr: &AddrV2, port: u16, services: ServiceFlags) {
        if let Some(id) = self.find(&normalize(addr), port) {
            self.info_mut(id).addr.services = services;
        }
    }

    /// Core's `Select(new_only, networks)`: pick an address to connect to.
    ///
    /// With `new_only`, only the new table is searched; otherwise new and tried with equal
    /// probability (the only table with candidates if one has none). `networks`: `None` for
    /// any network, else only those listed (an empty list selects nothing). `required`: only
    /// entries whose services include these flags (`ServiceFlags::NONE` for any).
    ///
    /// The search is Core's: a random bucket and start slot, the first candidate from there
    /// in that bucket, accepted with probability [`chance`] × a factor that grows by 1.2 per
    /// rejection. So an entry tried in the last 10 minutes is picked about 100 times less
    /// often, and each failed attempt lowers the odds by a third.
    ///
    /// Returns the entry and its last try (Unix seconds, 0 if never), or `None` if there is
    /// no candidate. `now` is Unix seconds. With `required` other than `NONE`, candidates are
    /// first counted by a pass over all entries (O(n)); otherwise per-network counts are
    /// used, as Core.
    pub fn select(
        &mut self,
        new_only: bool,
        networks: Option<&[AddrNetwork]>,
        required: ServiceFlags,
        now: u64,
    ) -> Option<(AddrV2Message, u64)> {
        if self.random.is_empty() {
            return None;
        }
        let (new_count, tried_count) = self.candidate_counts(networks, required);
        if new_only && new_count == 0 {
            return None;
        }
        if new_count + tried_count == 0 {
            return None;
        }
        let search_tried = if new_only || tried_count == 0 {
            false
        } else if new_count == 0 {
            true
        } else {
            self.rng.gen::<bool>()
        };
        let bucket_count = if search_tried {
            TRIED_BUCKET_COUNT
        } else {
            NEW_BUCKET_COUNT
        };
        // Core draws a uniformly random bucket and retries while it is empty; drawing
        // uniformly among the non-empty buckets gives the same distribution without the
        // retries, which matter when the table is sparse and chance() rejects often.
        let nonempty: Vec<usize> = (0..bucket_count)
            .filter(|&b| self.bucket_fill(search_tried, b) > 0)
            .collect();
        if nonempty.is_empty() {
            return None;
        }
        let mut chance_factor = 1.0f64;
        loop {
            let bucket = nonempty[self.rng.gen_range(0..nonempty.len())];
            let initial = self.rng.gen_range(0..BUCKET_SIZE);
            let mut found = None;
            for i in 0..BUCKET_SIZE {
                let position = (initial + i) % BUCKET_SIZE;
                let id = self.entry_at(search_tried, bucket, position);
                if id != EMPTY && self.is_candidate(id, networks, required) {
                    found = Some(id);
                    break;
                }
            }
            let Some(id) = found else {
                continue;
            };
            let draw = f64::from(self.rng.gen::<u32>() >> 2);
            let info = &self.slot(id).info;
            if draw < chance_factor * chance(info, now) * f64::from(1u32 << 30) {
                return Some((info.addr.clone(), info.last_try));
            }
            chance_factor *= 1.2;
        }
    }

    /// Core's `GetAddr`: random addresses to answer a `getaddr` or to share.
    ///
    /// At most `max_count` (0: no limit) and at most `max_pct` percent (0: no limit; capped
    /// at 100) of all stored addresses, counted before filtering; a node answering `getaddr`
    /// uses [`GETADDR_MAX_ADDRESSES`] and [`GETADDR_MAX_PCT`]. With `network`, only that
    /// network class (IPv6 carrying IPv4, i.e. 6to4 and Teredo, counts as IPv4, as Core's
    /// `GetNetClass`). Terrible entries ([`is_terrible`] at `now`, Unix seconds) are skipped.
    pub fn get_addr(
        &mut self,
        max_count: usize,
        max_pct: usize,
        network: Option<AddrNetwork>,
        now: u64,
    ) -> Vec<AddrV2Message> {
        let total = self.random.len();
        let mut n = total;
        if max_pct != 0 {
            n = max_pct.min(100) * n / 100;
        }
        if max_count != 0 {
            n = n.min(max_count);
        }
        let mut out = Vec::with_capacity(n);
        for i in 0..total {
            if out.len() >= n {
                break;
            }
            let r = self.rng.gen_range(i..total);
            self.swap_random(i, r);
            let info = &self.slot(self.random[i]).info;
            if network.is_some() && net_class(&info.addr.addr) != network {
                continue;
            }
            if is_terrible(info, now) {
                continue;
            }
            out.push(info.addr.clone());
        }
        out
    }

    /// Core's `ResolveCollisions`: settle the queued tried collisions at `now` (Unix
    /// seconds). For each, if the tried slot is free now, the entry moves in. Otherwise the
    /// old entry in the slot:
    /// - succeeded within [`REPLACEMENT_SECS`]: it stays, the collision is dropped;
    /// - was tried (and so failed) within [`REPLACEMENT_SECS`], more than 60 s ago: it is
    ///   evicted to the new table and the new entry takes its slot;
    /// - was not tried, and the new entry's success is more than [`TEST_WINDOW_SECS`] old:
    ///   evicted anyway (it could not be tested);
    /// - else the collision stays queued.
    pub fn resolve_collisions(&mut self, now: u64) {
        let now_i = now as i64;
        let ids: Vec<u32> = self.tried_collisions.iter().copied().collect();
        for id_new in ids {
            let mut erase = false;
            if !self.exists(id_new) {
                erase = true;
            } else {
                let (bucket, position) = self.tried_position_of(id_new);
                let id_old = self.entry_at(true, bucket, position);
                if id_old != EMPTY {
                    let old = &self.slot(id_old).info;
                    let new = &self.slot(id_new).info;
                    if now_i - (old.last_success as i64) < REPLACEMENT_SECS {
                        erase = true;
                    } else if now_i - (old.last_try as i64) < REPLACEMENT_SECS {
                        if now_i - (old.last_try as i64) > 60 {
                            debug!(old = ?old.addr.addr, new = ?new.addr.addr, "addrman: replacing tried entry after a failed test");
                            let (addr, port) = (new.addr.addr.clone(), new.addr.port);
                            self.good_inner(&addr, port, false, now);
                            erase = true;
                        }
                    } else if now_i - (new.last_success as i64) > TEST_WINDOW_SECS {
                        debug!(old = ?old.addr.addr, new = ?new.addr.addr, "addrman: unable to test; replacing tried entry anyway");
                        let (addr, port) = (new.addr.addr.clone(), new.addr.port);
                        self.good_inner(&addr, port, false, now);
                        erase = true;
                    }
                } else {
                    let new = &self.slot(id_new).info;
                    let (addr, port) = (new.addr.addr.clone(), new.addr.port);
                    self.good_inner(&addr, port, false, now);
                    erase = true;
                }
            }
            if erase {
                self.tried_collisions.remove(&id_new);
            }
        }
    }

    /// Core's `SelectTriedCollision`: for a random queued collision, the tried entry that
    /// blocks it (to test with a feeler connection) and that entry's last try (Unix seconds).
    /// `None` if nothing is queued (or the slot has been freed since).
    pub fn select_tried_collision(&mut self) -> Option<(AddrV2Message, u64)> {
        if self.tried_collisions.is_empty() {
            return None;
        }
        let k = self.rng.gen_range(0..self.tried_collisions.len());
        let id_new = *self.tried_collisions.iter().nth(k).expect("k < len");
        if !self.exists(id_new) {
            self.tried_collisions.remove(&id_new);
            return None;
        }
        let (bucket, position) = self.tried_position_of(id_new);
        let id_old = self.entry_at(true, bucket, position);
        if id_old == EMPTY {
            return None;
        }
        let old = &self.slot(id_old).info;
        Some((old.addr.clone(), old.last_try))
    }

    /// Core's `Size(net, in_new)`: how many addresses are stored, optionally only of one
    /// network ([`network_of`]) and/or only in the new (`Some(true)`) or tried
    /// (`Some(false)`) table.
    pub fn size(&self, network: Option<AddrNetwork>, in_new: Option<bool>) -> usize {
        let (n_new, n_tried) = match network {
            None => (self.n_new, self.n_tried),
            Some(net) => {
                let c = self.counts[net.index()];
                (c.n_new, c.n_tried)
            }
        };
        match in_new {
            None => n_new + n_tried,
            Some(true) => n_new,
            Some(false) => n_tried,
        }
    }

    /// The entry for `addr:port`, if stored.
    pub fn get(&self, addr: &AddrV2, port: u16) -> Option<&AddrInfo> {
        self.find(&normalize(addr), port)
            .map(|id| &self.slot(id).info)
    }

    /// Core's `FindAddressEntry`: where `addr:port` is: its tried slot, or for a new entry the
    /// slot its primary source maps to and its multiplicity (that slot may hold another
    /// entry if this one was placed elsewhere from other sources; see
    /// [`positions`](Self::positions)).
    pub fn find_entry(&self, addr: &AddrV2, port: u16) -> Option<AddrPosition> {
        let id = self.find(&normalize(addr), port)?;
        let info = &self.slot(id).info;
        if info.in_tried {
            let (bucket, position) = self.tried_position_of(id);
            Some(AddrPosition {
                tried: true,
                multiplicity: 1,
                bucket,
                position,
            })
        } else {
            let bucket = self.primary_new_bucket(id);
            Some(AddrPosition {
                tried: false,
                multiplicity: info.ref_count,
                bucket,
                position: self.new_position(id, bucket),
            })
        }
    }

    /// Every slot holding `addr:port`: one tried slot, or 1 to [`NEW_BUCKETS_PER_ADDRESS`] new
    /// slots, in bucket order. Empty if not stored. Scans the new table (65,536 slots).
    pub fn positions(&self, addr: &AddrV2, port: u16) -> Vec<AddrPosition> {
        let Some(id) = self.find(&normalize(addr), port) else {
            return Vec::new();
        };
        self.positions_of(id)
    }

    /// Every stored entry, in no particular order.
    pub fn entries(&self) -> impl Iterator<Item = &AddrInfo> + '_ {
        self.entries.iter().flatten().map(|s| &s.info)
    }

    /// Core's `CheckAddrman`: verifies every internal invariant (counts match the tables,
    /// reference counts match the new-table slots, every slot holds an entry whose hash maps
    /// there, no entry in both tables, tried entries have a success, the lookup map and the
    /// random order are complete, the per-network counts add up, the key is not zero).
    ///
    /// # Errors
    /// A description of the first violation. Never happens unless addrman has a bug; meant
    /// for tests and fuzzing. Cost: a pass over both tables (O(81,920) plus hashing).
    pub fn check(&self) -> Result<(), String> {
        if self.random.len() != self.n_new + self.n_tried {
            return Err(format!(
                "random order has {} ids, counts say {} new + {} tried",
                self.random.len(),
                self.n_new,
                self.n_tried
            ));
        }
        let mut refs: HashMap<u32, u32> = HashMap::new();
        let mut tried_seen = 0usize;
        let mut new_seen = 0usize;
        let mut counts = [NewTried::default(); 5];
        for (id, slot) in self.entries.iter().enumerate() {
            let Some(slot) = slot else { continue };
            let id = id as u32;
            let info = &slot.info;
            let net = network_of(&info.addr.addr)
                .ok_or_else(|| format!("entry {id} has an unstorable network"))?;
            if info.in_tried {
                if info.last_success == 0 {
                    return Err(format!("tried entry {id} never succeeded"));
                }
                if info.ref_count != 0 {
                    return Err(format!("tried entry {id} has ref count {}", info.ref_count));
                }
                tried_seen += 1;
                counts[net.index()].n_tried += 1;
            } else {
                if info.ref_count == 0 || info.ref_count > NEW_BUCKETS_PER_ADDRESS {
                    return Err(format!("new entry {id} has ref count {}", info.ref_count));
                }
                refs.insert(id, info.ref_count);
                new_seen += 1;
                counts[net.index()].n_new += 1;
            }
            if self.index.get(&(info.addr.addr.clone(), info.addr.port)) != Some(&id) {
                return Err(format!("entry {id} is missing from the lookup map"));
            }
            let pos = slot.random_pos as usize;
            if pos >= self.random.len() || self.random[pos] != id {
                return Err(format!("entry {id} has a wrong random position"));
            }
            if !is_storable(&info.addr.addr, self.config.allow_local) {
                return Err(format!(
                    "entry {id} holds an address that may not be stored"
                ));
            }
        }
        if self.index.len() != self.random.len() {
            return Err("lookup map size differs from the entry count".into());
        }
        if tried_seen != self.n_tried || new_seen != self.n_new {
            return Err(format!(
                "counted {new_seen} new and {tried_seen} tried, fields say {} and {}",
                self.n_new, self.n_tried
            ));
        }
        if counts != self.counts {
            return Err("per-network counts differ".into());
        }
        let mut tried_in_table = 0usize;
        for bucket in 0..TRIED_BUCKET_COUNT {
            let row = &self.tried_table[bucket * BUCKET_SIZE..(bucket + 1) * BUCKET_SIZE];
            if row.iter().filter(|id| **id != EMPTY).count() != usize::from(self.tried_fill[bucket])
            {
                return Err(format!("fill count of tried bucket {bucket} is wrong"));
            }
            for (position, &id) in row.iter().enumerate() {
                if id == EMPTY {
                    continue;
                }
                if !self.exists(id) || !self.slot(id).info.in_tried {
                    return Err(format!(
                        "tried[{bucket}][{position}] holds non-tried id {id}"
                    ));
                }
                if self.tried_position_of(id) != (bucket, position) {
                    return Err(format!(
                        "tried[{bucket}][{position}] holds misplaced id {id}"
                    ));
                }
                tried_in_table += 1;
            }
        }
        if tried_in_table != self.n_tried {
            return Err("tried table and tried count differ".into());
        }
        for bucket in 0..NEW_BUCKET_COUNT {
            let row = &self.new_table[bucket * BUCKET_SIZE..(bucket + 1) * BUCKET_SIZE];
            if row.iter().filter(|id| **id != EMPTY).count() != usize::from(self.new_fill[bucket]) {
                return Err(format!("fill count of new bucket {bucket} is wrong"));
            }
            for (position, &id) in row.iter().enumerate() {
                if id == EMPTY {
                    continue;
                }
                let Some(r) = refs.get_mut(&id) else {
                    return Err(format!("new[{bucket}][{position}] holds non-new id {id}"));
                };
                if self.new_position(id, bucket) != position {
                    return Err(format!("new[{bucket}][{position}] holds misplaced id {id}"));
                }
                *r -= 1;
                if *r == 0 {
                    refs.remove(&id);
                }
            }
        }
        if !refs.is_empty() {
            return Err("new entries with references not found in the new table".into());
        }
        if self.key == [0u8; 32] {
            return Err("bucket key is zero".into());
        }
        if self.tried_collisions.len() > SET_TRIED_COLLISION_SIZE {
            return Err("too many tried collisions".into());
        }
        if let Some(id) = self.tried_collisions.iter().find(|id| !self.exists(**id)) {
            return Err(format!("tried collision refers to missing id {id}"));
        }
        Ok(())
    }

    // -----------------------------------------------------------------------------------
    // Internals (Core's AddrManImpl helpers)
    // -----------------------------------------------------------------------------------

    fn find(&self, addr: &AddrV2, port: u16) -> Option<u32> {
        self.index.get(&(addr.clone(), port)).copied()
    }

    fn exists(&self, id: u32) -> bool {
        matches!(self.entries.get(id as usize), Some(Some(_)))
    }

    fn slot(&self, id: u32) -> &Slot {
        self.entries[id as usize].as_ref().expect("live id")
    }

    fn info_mut(&mut self, id: u32) -> &mut AddrInfo {
        &mut self.entries[id as usize].as_mut().expect("live id").info
    }

    fn entry_at(&self, tried: bool, bucket: usize, position: usize) -> u32 {
        if tried {
            self.tried_table[bucket * BUCKET_SIZE + position]
        } else {
            self.new_table[bucket * BUCKET_SIZE + position]
        }
    }

    fn set_new(&mut self, bucket: usize, position: usize, id: u32) {
        let slot = &mut self.new_table[bucket * BUCKET_SIZE + position];
        match (*slot == EMPTY, id == EMPTY) {
            (true, false) => self.new_fill[bucket] += 1,
            (false, true) => self.new_fill[bucket] -= 1,
            _ => {}
        }
        *slot = id;
    }

    fn set_tried(&mut self, bucket: usize, position: usize, id: u32) {
        let slot = &mut self.tried_table[bucket * BUCKET_SIZE + position];
        match (*slot == EMPTY, id == EMPTY) {
            (true, false) => self.tried_fill[bucket] += 1,
            (false, true) => self.tried_fill[bucket] -= 1,
            _ => {}
        }
        *slot = id;
    }

    fn bucket_fill(&self, tried: bool, bucket: usize) -> u8 {
        if tried {
            self.tried_fill[bucket]
        } else {
            self.new_fill[bucket]
        }
    }

    fn group(&self, addr: &AddrV2) -> bucket::Group {
        group_of(addr, self.config.allow_local)
    }

    fn tried_position_of(&self, id: u32) -> (usize, usize) {
        let info = &self.slot(id).info;
        let service = service_key(&info.addr.addr, info.addr.port);
        let bucket = tried_bucket(&self.key, &service, &self.group(&info.addr.addr));
        (bucket, bucket_position(&self.key, false, bucket, &service))
    }

    fn new_bucket_for(&self, id: u32, source: &AddrV2) -> usize {
        let info = &self.slot(id).info;
        new_bucket(&self.key, &self.group(&info.addr.addr), &self.group(source))
    }

    /// Core's `GetNewBucket(nKey, netgroupman)`: the bucket for the entry's primary source.
    fn primary_new_bucket(&self, id: u32) -> usize {
        let source = self.slot(id).info.source.clone();
        self.new_bucket_for(id, &source)
    }

    fn new_position(&self, id: u32, bucket: usize) -> usize {
        let info = &self.slot(id).info;
        bucket_position(
            &self.key,
            true,
            bucket,
            &service_key(&info.addr.addr, info.addr.port),
        )
    }

    fn positions_of(&self, id: u32) -> Vec<AddrPosition> {
        let info = &self.slot(id).info;
        if info.in_tried {
            let (bucket, position) = self.tried_position_of(id);
            return vec![AddrPosition {
                tried: true,
                multiplicity: 1,
                bucket,
                position,
            }];
        }
        let mut out = Vec::new();
        for bucket in 0..NEW_BUCKET_COUNT {
            let position = self.new_position(id, bucket);
            if self.entry_at(false, bucket, position) == id {
                out.push(AddrPosition {
                    tried: false,
                    multiplicity: info.ref_count,
                    bucket,
                    position,
                });
            }
        }
        out
    }

    /// Entries in (new, tried) that `select` may return under these filters.
    fn candidate_counts(
        &self,
        networks: Option<&[AddrNetwork]>,
        required: ServiceFlags,
    ) -> (usize, usize) {
        if required == ServiceFlags::NONE {
            return match networks {
                None => (self.n_new, self.n_tried),
                Some(nets) => {
                    let mut seen = [false; 5];
                    let (mut n_new, mut n_tried) = (0, 0);
                    for net in nets {
                        if !std::mem::replace(&mut seen[net.index()], true) {
                            n_new += self.counts[net.index()].n_new;
                            n_tried += self.counts[net.index()].n_tried;
                        }
                    }
                    (n_new, n_tried)
                }
            };
        }
        let (mut n_new, mut n_tried) = (0, 0);
        for (id, slot) in self.entries.iter().enumerate() {
            if slot.is_some() && self.is_candidate(id as u32, networks, required) {
                if slot.as_ref().expect("some").info.in_tried {
                    n_tried += 1;
                } else {
                    n_new += 1;
                }
            }
        }
        (n_new, n_tried)
    }

    fn is_candidate(
        &self,
        id: u32,
        networks: Option<&[AddrNetwork]>,
        required: ServiceFlags,
    ) -> bool {
        let info = &self.slot(id).info;
        if !info.addr.services.has(required) {
            return false;
        }
        match networks {
            None => true,
            Some(nets) => network_of(&info.addr.addr).is_some_and(|n| nets.contains(&n)),
        }
    }

    /// Core's `Create`.
    fn create(&mut self, msg: AddrV2Message, source: AddrV2) -> u32 {
        let net = network_of(&msg.addr).expect("storable address has a network");
        let info = AddrInfo {
            addr: msg,
            source,
            last_try: 0,
            last_count_attempt: 0,
            last_success: 0,
            attempts: 0,
            in_tried: false,
            ref_count: 0,
        };
        let key = (info.addr.addr.clone(), info.addr.port);
        let slot = Slot {
            info,
            random_pos: self.random.len() as u32,
        };
        let id = match self.free.pop() {
            Some(id) => {
                self.entries[id as usize] = Some(slot);
                id
            }
            None => {
                self.entries.push(Some(slot));
                (self.entries.len() - 1) as u32
            }
        };
        self.random.push(id);
        self.index.insert(key, id);
        self.n_new += 1;
        self.counts[net.index()].n_new += 1;
        id
    }

    /// Core's `SwapRandom`.
    fn swap_random(&mut self, p1: usize, p2: usize) {
        if p1 == p2 {
            return;
        }
        let (id1, id2) = (self.random[p1], self.random[p2]);
        self.entries[id1 as usize]
            .as_mut()
            .expect("live")
            .random_pos = p2 as u32;
        self.entries[id2 as usize]
            .as_mut()
            .expect("live")
            .random_pos = p1 as u32;
        self.random.swap(p1, p2);
    }

    /// Core's `Delete`: remove a new entry that no slot refers to any more.
    fn delete(&mut self, id: u32) {
        let slot = self.slot(id);
        debug_assert!(!slot.info.in_tried && slot.info.ref_count == 0);
        let pos = slot.random_pos as usize;
        let last = self.random.len() - 1;
        self.swap_random(pos, last);
        self.random.pop();
        let slot = self.entries[id as usize].take().expect("live");
        let net = network_of(&slot.info.addr.addr).expect("stored");
        self.counts[net.index()].n_new -= 1;
        self.index
            .remove(&(slot.info.addr.addr, slot.info.addr.port));
        self.free.push(id);
        self.n_new -= 1;
        // Core's ids are never reused; ours are, so a stale collision must not point at a
        // future entry.
        self.tried_collisions.remove(&id);
    }

    /// Core's `ClearNew`: empty a new-table slot, deleting its entry if that was its last.
    fn clear_new(&mut self, bucket: usize, position: usize) {
        let id = self.entry_at(false, bucket, position);
        if id == EMPTY {
            return;
        }
        let info = self.info_mut(id);
        debug_assert!(info.ref_count > 0);
        info.ref_count -= 1;
        let gone = info.ref_count == 0;
        self.set_new(bucket, position, EMPTY);
        if gone {
            self.delete(id);
        }
    }

    /// Core's `MakeTried`: move a new entry into its tried slot, evicting the occupant (if
    /// any) back to the new table at its primary-source slot.
    fn make_tried(&mut self, id: u32) {
        let start = self.primary_new_bucket(id);
        for n in 0..NEW_BUCKET_COUNT {
            let bucket = (start + n) % NEW_BUCKET_COUNT;
            let position = self.new_position(id, bucket);
            if self.entry_at(false, bucket, position) == id {
                self.set_new(bucket, position, EMPTY);
                let info = self.info_mut(id);
                info.ref_count -= 1;
                if info.ref_count == 0 {
                    break;
                }
            }
        }
        debug_assert_eq!(self.slot(id).info.ref_count, 0);
        let net = network_of(&self.slot(id).info.addr.addr).expect("stored");
        self.n_new -= 1;
        self.counts[net.index()].n_new -= 1;

        let (bucket, position) = self.tried_position_of(id);
        let id_evict = self.entry_at(true, bucket, position);
        if id_evict != EMPTY {
            let net_old = network_of(&self.slot(id_evict).info.addr.addr).expect("stored");
            self.info_mut(id_evict).in_tried = false;
            self.set_tried(bucket, position, EMPTY);
            self.n_tried -= 1;
            self.counts[net_old.index()].n_tried -= 1;

            let u_bucket = self.primary_new_bucket(id_evict);
            let u_position = self.new_position(id_evict, u_bucket);
            self.clear_new(u_bucket, u_position);
            self.info_mut(id_evict).ref_count = 1;
            self.set_new(u_bucket, u_position, id_evict);
            self.n_new += 1;
            self.counts[net_old.index()].n_new += 1;
            debug!(
                addr = ?self.slot(id_evict).info.addr.addr,
                "addrman: moved tried entry back to new to make space"
            );
        }
        self.set_tried(bucket, position, id);
        self.n_tried += 1;
        self.counts[net.index()].n_tried += 1;
        self.info_mut(id).in_tried = true;
    }

    /// Core's `Good_`.
    fn good_inner(&mut self, addr: &AddrV2, port: u16, test_before_evict: bool, now: u64) -> bool {
        self.last_good = now;
        let Some(id) = self.find(addr, port) else {
            return false;
        };
        let info = self.info_mut(id);
        info.last_success = now;
        info.last_try = now;
        info.attempts = 0;
        if info.in_tried || info.ref_count == 0 {
            return false;
        }
        let (bucket, position) = self.tried_position_of(id);
        if test_before_evict && self.entry_at(true, bucket, position) != EMPTY {
            if self.tried_collisions.len() < SET_TRIED_COLLISION_SIZE {
                self.tried_collisions.insert(id);
            }
            debug!(
                addr = ?addr,
                collisions = self.tried_collisions.len(),
                "addrman: tried collision"
            );
            false
        } else {
            self.make_tried(id);
            true
        }
    }

    /// Core's `AddSingle`.
    fn add_single(
        &mut self,
        msg: &AddrV2Message,
        source: &AddrV2,
        time_penalty: u64,
        now: u64,
    ) -> bool {
        let addr = normalize(&msg.addr);
        if !is_storable(&addr, self.config.allow_local) {
            return false;
        }
        // No penalty for a source's self-announcement.
        let penalty = if &addr == source {
            0
        } else {
            time_penalty.min(i64::MAX as u64) as i64
        };
        let msg_time = i64::from(msg.time);
        let id = match self.find(&addr, msg.port) {
            Some(id) => {
                let ref_count = {
                    let info = self.info_mut(id);
                    let currently_online = now as i64 - msg_time < 24 * 60 * 60;
                    let update_interval = if currently_online {
                        60 * 60
                    } else {
                        24 * 60 * 60
                    };
                    if i64::from(info.addr.time) < msg_time - update_interval - penalty {
                        info.addr.time = (msg_time - penalty).max(0) as u32;
                    }
                    info.addr.services |= msg.services;
                    if msg_time <= i64::from(info.addr.time) {
                        return false;
                    }
                    if info.in_tried || info.ref_count >= NEW_BUCKETS_PER_ADDRESS {
                        return false;
                    }
                    info.ref_count
                };
                if ref_count > 0 {
                    let factor = 1u32 << ref_count;
                    if self.rng.gen_range(0..factor) != 0 {
                        return false;
                    }
                }
                id
            }
            None => {
                let stored = AddrV2Message {
                    time: (msg_time - penalty).max(0) as u32,
                    services: msg.services,
                    addr: addr.clone(),
                    port: msg.port,
                };
                self.create(stored, source.clone())
            }
        };

        let bucket = self.new_bucket_for(id, source);
        let position = self.new_position(id, bucket);
        let existing = self.entry_at(false, bucket, position);
        let mut insert = existing == EMPTY;
        if existing != id {
            if !insert {
                let other = &self.slot(existing).info;
                if is_terrible(other, now)
                    || (other.ref_count > 1 && self.slot(id).info.ref_count == 0)
                {
                    insert = true;
                }
            }
            if insert {
                self.clear_new(bucket, position);
                self.info_mut(id).ref_count += 1;
                self.set_new(bucket, position, id);
            } else if self.slot(id).info.ref_count == 0 {
                self.delete(id);
            }
        }
        insert
    }
}

fn clamp_u32(t: u64) -> u32 {
    t.min(u64::from(u32::MAX)) as u32
}
