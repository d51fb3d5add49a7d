//! Inbound eviction: which peer to disconnect when inbound slots are full, as Bitcoin Core's
//! `SelectNodeToEvict` (src/node/eviction.cpp).
//!
//! The selection works by elimination: each rule removes ("protects") the peers that are best by
//! one metric an attacker finds hard to fake, and a peer is only evicted from whatever survives
//! every rule. Ordering conventions follow Core: every comparator sorts the peers most worth
//! keeping to the *end*, and protection erases from the end.
//!
//! Core sorts with `std::sort`, which is unstable, so its choice among exact ties is
//! implementation-defined. This port sorts stably, so ties resolve by input order and the result
//! is a pure function of the input vector.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::time::Duration;

/// The network a candidate is connected over (Core's `Network` for eviction purposes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EvictionNetwork {
    /// Clearnet IPv4 (`NET_IPV4`).
    Ipv4,
    /// Clearnet IPv6 (`NET_IPV6`).
    Ipv6,
    /// Tor onion service (`NET_ONION`); disadvantaged by latency, so shares uptime protection.
    Onion,
    /// I2P (`NET_I2P`); disadvantaged by latency, so shares uptime protection.
    I2p,
    /// CJDNS (`NET_CJDNS`); disadvantaged, so shares uptime protection.
    Cjdns,
}

/// What eviction needs to know about one inbound peer (Core's `NodeEvictionCandidate`).
#[derive(Debug, Clone, PartialEq)]
pub struct EvictionCandidate {
    /// Peer id (Core's `NodeId`); the value returned when this peer is chosen.
    pub id: u64,
    /// When the peer connected, as time since an arbitrary fixed epoch (larger = younger).
    pub connected: Duration,
    /// Smallest ping round trip seen; None = never measured (sorts as worst, like Core's max).
    pub min_ping: Option<Duration>,
    /// When the peer last sent us a novel block (ZERO = never), same epoch as `connected`.
    pub last_block_time: Duration,
    /// When the peer last sent us a novel transaction (ZERO = never).
    pub last_tx_time: Duration,
    /// Whether it offers the services we want (Core's fRelevantServices).
    pub relevant_services: bool,
    /// Whether we relay transactions to it (Core's m_relay_txs).
    pub relay_txs: bool,
    /// Whether it loaded a bloom filter.
    pub bloom_filter: bool,
    /// Keyed hash of its netgroup.
    pub keyed_netgroup: u64,
    /// Prefer evicting this one (Core's prefer_evict, e.g. from -whitebind discouraged).
    pub prefer_evict: bool,
    /// Connected from localhost.
    pub is_local: bool,
    /// Network the connection runs over; onion, I2P and CJDNS get a reserved protection share.
    pub network: EvictionNetwork,
    /// NoBan permission: never evicted.
    pub noban: bool,
    /// Outbound/manual peers are not candidates in Core; set true only for inbound peers.
    pub inbound: bool,
}

/// A class of peers that `ProtectEvictionCandidatesByRatio` reserves uptime slots for.
/// Core models localhost as the pseudo-network `NET_MAX`, which no real peer has; an explicit
/// variant says the same without a sentinel.
#[derive(Debug, Clone, Copy)]
enum Disadvantaged {
    Localhost,
    Net(EvictionNetwork),
}

impl Disadvantaged {
    fn matches(self, c: &EvictionCandidate) -> bool {
        match self {
            Disadvantaged::Localhost => c.is_local,
            Disadvantaged::Net(n) => c.network == n,
        }
    }
}

/// Core's `ReverseCompareNodeMinPingTime`: slowest first, so the fastest end up protected.
fn reverse_compare_min_ping(a: &EvictionCandidate, b: &EvictionCandidate) -> Ordering {
    // Core initialises an unmeasured ping to microseconds::max(), i.e. the worst possible.
    let key = |c: &EvictionCandidate| c.min_ping.unwrap_or(Duration::MAX);
    key(b).cmp(&key(a))
}

/// Core's `ReverseCompareNodeTimeConnected`: youngest first, so the longest-connected end last.
fn reverse_compare_connected(a: &EvictionCandidate, b: &EvictionCandidate) -> Ordering {
    b.connected.cmp(&a.connected)
}

/// Core's `CompareNetGroupKeyed`: the key is secret per node, so which netgroups land at the end
/// is unpredictable to an attacker.
fn compare_netgroup_keyed(a: &EvictionCandidate, b: &EvictionCandidate) -> Ordering {
    a.keyed_netgroup.cmp(&b.keyed_netgroup)
}

/// Core's `CompareNodeBlockTime`. The fall-throughs matter because many peers have never relayed
/// a block, and among those we would rather keep ones offering relevant services and uptime.
fn compare_block_time(a: &EvictionCandidate, b: &EvictionCandidate) -> Ordering {
    a.last_block_time
        .cmp(&b.last_block_time)
        .then_with(|| a.relevant_services.cmp(&b.relevant_services))
        .then_with(|| reverse_compare_connected(a, b))
}

/// Core's `CompareNodeTXTime`. Among peers with no novel tx yet, prefer keeping tx-relaying
/// peers, then ones without a bloom filter (bloom peers sort first: cheaper to lose), then uptime.
fn compare_tx_time(a: &EvictionCandidate, b: &EvictionCandidate) -> Ordering {
    a.last_tx_time
        .cmp(&b.last_tx_time)
        .then_with(|| a.relay_txs.cmp(&b.relay_txs))
        .then_with(|| b.bloom_filter.cmp(&a.bloom_filter))
        .then_with(|| reverse_compare_connected(a, b))
}

/// Core's `CompareNodeBlockRelayOnlyTime`: tx-relaying peers first so that the non-relaying ones
/// (potential block-relay-only peers) gather at the end, ordered by last novel block.
fn compare_block_relay_only_time(a: &EvictionCandidate, b: &EvictionCandidate) -> Ordering {
    b.relay_txs
        .cmp(&a.relay_txs)
        .then_with(|| a.last_block_time.cmp(&b.last_block_time))
        .then_with(|| a.relevant_services.cmp(&b.relevant_services))
        .then_with(|| reverse_compare_connected(a, b))
}

/// Core's `CompareNodeNetworkTime`: peers outside `class` first, then members of `class`; each
/// part youngest first, so the longest-connected members of `class` end up last.
///
/// Core tests `is_local` only for the localhost entry and the network only for the others (the
/// localhost entry's `NET_MAX` never matches), which is exactly `class.matches`.
fn compare_network_time(
    class: Disadvantaged,
    a: &EvictionCandidate,
    b: &EvictionCandidate,
) -> Ordering {
    class
        .matches(a)
        .cmp(&class.matches(b))
        .then_with(|| reverse_compare_connected(a, b))
}

/// Core's `EraseLastKElements`: sort by `compare`, then among the last `k` remove those for which
/// `protect` holds. Removal keeps the survivors' order, which later steps rely on.
fn erase_last_k(
    candidates: &mut Vec<EvictionCandidate>,
    compare: impl FnMut(&EvictionCandidate, &EvictionCandidate) -> Ordering,
    k: usize,
    protect: impl Fn(&EvictionCandidate) -> bool,
) {
    candidates.sort_by(compare);
    let start = candidates.len() - k.min(candidates.len());
    let tail = candidates.split_off(start);
    candidates.extend(tail.into_iter().filter(|c| !protect(c)));
}

/// Core's `ProtectEvictionCandidatesByRatio`: removes (protects) half of `candidates`, rounded
/// down, by longest uptime (smallest `connected`).
///
/// Up to half of those slots (a quarter of the candidates, rounded down) are first reserved for
/// peers of the disadvantaged classes CJDNS, I2P, localhost and onion, which would otherwise lose
/// out on latency-based rules; within each class the longest-connected go first. Classes with
/// fewer candidates are served first (ties in Core's array order CJDNS, I2P, localhost, onion),
/// the reserved slots are split evenly per round (at least one each), and slots a class cannot
/// use are recovered by the others in later rounds. Whatever the reservation leaves unused goes
/// to the longest-connected of all remaining candidates.
///
/// Afterwards `candidates` is sorted youngest first, which `select_node_to_evict` relies on.
pub fn protect_by_ratio(candidates: &mut Vec<EvictionCandidate>) {
    let initial_size = candidates.len();
    let total_protect_size = initial_size / 2;

    struct Net {
        class: Disadvantaged,
        count: usize,
    }
    let mut networks = [
        Disadvantaged::Net(EvictionNetwork::Cjdns),
        Disadvantaged::Net(EvictionNetwork::I2p),
        Disadvantaged::Localhost,
        Disadvantaged::Net(EvictionNetwork::Onion),
    ]
    .map(|class| Net {
        class,
        count: candidates.iter().filter(|c| class.matches(c)).count(),
    });
    // Stable, as in Core, so equal counts keep the array order above.
    networks.sort_by_key(|n| n.count);

    let max_protect_by_network = total_protect_size / 2;
    let mut num_protected = 0;

    while num_protected < max_protect_by_network {
        let num_networks = networks.iter().filter(|n| n.count > 0).count();
        if num_networks == 0 {
            break;
        }
        let disadvantaged_to_protect = max_protect_by_network - num_protected;
        let protect_per_network = (disadvantaged_to_protect / num_networks).max(1);
        // A class's count can overstate what is left (a local onion peer is counted twice but
        // removed once), so a round may protect nobody; stop rather than spin.
        let mut protected_at_least_one = false;

        for n in networks.iter_mut() {
            if n.count == 0 {
                continue;
            }
            let class = n.class;
            let before = candidates.len();
            erase_last_k(
                candidates,
                |a, b| compare_network_time(class, a, b),
                protect_per_network,
                |c| class.matches(c),
            );
            let delta = before - candidates.len();
            if delta > 0 {
                protected_at_least_one = true;
                num_protected += delta;
                if num_protected >= max_protect_by_network {
                    break;
                }
                n.count -= delta;
            }
        }
        if !protected_at_least_one {
            break;
        }
    }

    debug_assert_eq!(num_protected, initial_size - candidates.len());
    let remaining_to_protect = total_protect_size - num_protected;
    erase_last_k(
        candidates,
        reverse_compare_connected,
        remaining_to_protect,
        |_| true,
    );
}

/// Core's `SelectNodeToEvict`: the id of the peer to evict, or None if every candidate is
/// protected. Callers may pass every connected peer; ineligible ones are dropped first.
///
/// Steps, in Core's order (each protects from what the previous steps left):
/// 1. Drop `noban` peers and non-`inbound` peers (`ProtectNoBanConnections`,
///    `ProtectOutboundConnections`): they are never evicted.
/// 2. Protect 4 by highest keyed netgroup: an attacker cannot predict which groups win.
/// 3. Protect the 8 with the lowest minimum ping: needs physical proximity to fake.
/// 4. Protect the 4 that most recently sent a novel transaction accepted to the mempool.
/// 5. Protect up to 8 non-tx-relaying peers with relevant services that most recently sent a
///    novel block (likely block-relay-only peers).
/// 6. Protect the 4 that most recently sent a novel block.
/// 7. [`protect_by_ratio`]: half of the rest by uptime, with the disadvantaged-network share.
/// 8. If any survivor has `prefer_evict`, consider only those. This comes after the protections
///    on purpose: a peer that is best by some criterion is worth keeping regardless.
/// 9. Of the netgroup with the most survivors (ties: the group whose youngest member connected
///    most recently), evict its youngest member.
pub fn select_node_to_evict(mut candidates: Vec<EvictionCandidate>) -> Option<u64> {
    candidates.retain(|c| !c.noban);
    candidates.retain(|c| c.inbound);

    erase_last_k(&mut candidates, compare_netgroup_keyed, 4, |_| true);
    erase_last_k(&mut candidates, reverse_compare_min_ping, 8, |_| true);
    erase_last_k(&mut candidates, compare_tx_time, 4, |_| true);
    erase_last_k(&mut candidates, compare_block_relay_only_time, 8, |c| {
        !c.relay_txs && c.relevant_services
    });
    erase_last_k(&mut candidates, compare_block_time, 4, |_| true);

    protect_by_ratio(&mut candidates);

    if candidates.is_empty() {
        return None;
    }

    if candidates.iter().any(|c| c.prefer_evict) {
        candidates.retain(|c| c.prefer_evict);
    }

    // `candidates` is youngest first (left so by protect_by_ratio), so the first member seen of
    // each group is its youngest.
    struct Group {
        size: usize,
        youngest_connected: Duration,
        youngest_id: u64,
    }
    let mut groups: HashMap<u64, Group> = HashMap::new();
    let mut most_connections = 0;
    let mut most_connections_time = Duration::ZERO;
    let mut most_connections_group = None;
    for c in &candidates {
        let group = groups.entry(c.keyed_netgroup).or_insert(Group {
            size: 0,
            youngest_connected: c.connected,
            youngest_id: c.id,
        });
        group.size += 1;
        if group.size > most_connections
            || (group.size == most_connections && group.youngest_connected > most_connections_time)
        {
            most_connections = group.size;
            most_connections_time = group.youngest_connected;
            most_connections_group = Some(c.keyed_netgroup);
        }
    }

    most_connections_group.map(|g| groups[&g].youngest_id)
}

#[cfg(test)]
mod tests {
    use super::EvictionNetwork::{Cjdns, I2p, Ipv4, Ipv6, Onion};
    use super::*;

    /// splitmix64: deterministic stand-in for Core's `FastRandomContext{true}`.
    struct Rng(u64);

    impl Rng {
        fn next_u64(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }

        /// Uniform enough in [0, n) for test data; the modulo bias is irrelevant here.
        fn range(&mut self, n: u64) -> u64 {
            self.next_u64() % n
        }

        fn coin(&mut self) -> bool {
            self.next_u64() & 1 == 1
        }

        fn shuffle<T>(&mut self, v: &mut [T]) {
            for i in (1..v.len()).rev() {
                let j = self.range(i as u64 + 1) as usize;
                v.swap(i, j);
            }
        }
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    /// Core's `GetRandomNodeEvictionCandidates`: ids 0..n, every metric random in [0, 100).
    fn random_candidates(n: u64, rng: &mut Rng) -> Vec<EvictionCandidate> {
        const NETS: [EvictionNetwork; 5] = [Ipv4, Ipv6, Onion, I2p, Cjdns];
        (0..n)
            .map(|id| EvictionCandidate {
                id,
                connected: secs(rng.range(100)),
                min_ping: Some(Duration::from_micros(rng.range(100))),
                last_block_time: secs(rng.range(100)),
                last_tx_time: secs(rng.range(100)),
                relevant_services: rng.coin(),
                relay_txs: rng.coin(),
                bloom_filter: rng.coin(),
                keyed_netgroup: rng.range(100),
                prefer_evict: rng.coin(),
                is_local: rng.coin(),
                network: NETS[rng.range(NETS.len() as u64) as usize],
                noban: false,
                inbound: true,
            })
            .collect()
    }

    type Setup = fn(&mut EvictionCandidate, u64);

    /// Core's `IsProtected`: after `protect_by_ratio`, exactly half (rounded up) remain, none of
    /// `protected` remain and all of `unprotected` remain.
    fn check_protected(
        case: usize,
        num_peers: u64,
        setup: Setup,
        protected: &[u64],
        unprotected: &[u64],
        rng: &mut Rng,
    ) {
        let mut candidates = random_candidates(num_peers, rng);
        for c in &mut candidates {
            setup(c, num_peers);
        }
        rng.shuffle(&mut candidates);
        let size = candidates.len();
        protect_by_ratio(&mut candidates);
        assert_eq!(
            candidates.len(),
            size - size / 2,
            "case {case}: remaining count"
        );
        let remaining: Vec<u64> = candidates.iter().map(|c| c.id).collect();
        for id in protected {
            assert!(
                !remaining.contains(id),
                "case {case}: {id} should be protected, left {remaining:?}"
            );
        }
        for id in unprotected {
            assert!(
                remaining.contains(id),
                "case {case}: {id} should be unprotected, left {remaining:?}"
            );
        }
    }

    /// Every case of Core's `peer_protection_test`, in order.
    #[test]
    fn peer_protection_test() {
        let cases: &[(u64, Setup, &[u64], &[u64])] = &[
            // Half of the peers with the greatest uptime are protected.
            (
                12,
                |c, _| {
                    c.connected = secs(c.id);
                    c.is_local = false;
                    c.network = Ipv4;
                },
                &[0, 1, 2, 3, 4, 5],
                &[6, 7, 8, 9, 10, 11],
            ),
            // The opposite direction.
            (
                12,
                |c, n| {
                    c.connected = secs(n - c.id);
                    c.is_local = false;
                    c.network = Ipv6;
                },
                &[6, 7, 8, 9, 10, 11],
                &[0, 1, 2, 3, 4, 5],
            ),
            // 1/4 onion peers protected if no localhost, I2P or CJDNS peers.
            (
                12,
                |c, _| {
                    c.is_local = false;
                    c.network = if [3, 8, 9].contains(&c.id) {
                        Onion
                    } else {
                        Ipv4
                    };
                },
                &[3, 8, 9],
                &[],
            ),
            // 1/4 onion and 1/4 others by uptime.
            (
                12,
                |c, _| {
                    c.connected = secs(c.id);
                    c.is_local = false;
                    c.network = if c.id == 3 || c.id > 7 { Onion } else { Ipv6 };
                },
                &[0, 1, 2, 3, 8, 9],
                &[4, 5, 6, 7, 10, 11],
            ),
            // 1/4 localhost peers protected if no onion, I2P or CJDNS peers.
            (
                12,
                |c, _| {
                    c.is_local = [1, 9, 11].contains(&c.id);
                    c.network = Ipv4;
                },
                &[1, 9, 11],
                &[],
            ),
            // 1/4 localhost and 1/4 others by uptime.
            (
                12,
                |c, _| {
                    c.connected = secs(c.id);
                    c.is_local = c.id > 6;
                    c.network = Ipv6;
                },
                &[0, 1, 2, 7, 8, 9],
                &[3, 4, 5, 6, 10, 11],
            ),
            // 1/4 I2P peers protected if no onion, localhost or CJDNS peers.
            (
                12,
                |c, _| {
                    c.is_local = false;
                    c.network = if [2, 7, 10].contains(&c.id) {
                        I2p
                    } else {
                        Ipv4
                    };
                },
                &[2, 7, 10],
                &[],
            ),
            // 1/4 I2P and 1/4 others by uptime.
            (
                12,
                |c, _| {
                    c.connected = secs(c.id);
                    c.is_local = false;
                    c.network = if c.id == 4 || c.id > 8 { I2p } else { Ipv6 };
                },
                &[0, 1, 2, 4, 9, 10],
                &[3, 5, 6, 7, 8, 11],
            ),
            // 1/4 CJDNS peers protected if no onion, localhost or I2P peers.
            (
                12,
                |c, _| {
                    c.is_local = false;
                    c.network = if [2, 7, 10].contains(&c.id) {
                        Cjdns
                    } else {
                        Ipv4
                    };
                },
                &[2, 7, 10],
                &[],
            ),
            // 1/4 CJDNS and 1/4 others by uptime.
            (
                12,
                |c, _| {
                    c.connected = secs(c.id);
                    c.is_local = false;
                    c.network = if c.id == 4 || c.id > 8 { Cjdns } else { Ipv6 };
                },
                &[0, 1, 2, 4, 9, 10],
                &[3, 5, 6, 7, 8, 11],
            ),
            // Two networks. 1 localhost, 1 onion of 4 (Core's id 4 does not exist, kept as is).
            (
                4,
                |c, _| {
                    c.connected = secs(c.id);
                    c.is_local = c.id == 4;
                    c.network = if c.id == 3 { Onion } else { Ipv4 };
                },
                &[0, 4],
                &[1, 2],
            ),
            // 1 localhost, 1 onion of 7: localhost wins the tie by array order.
            (
                7,
                |c, _| {
                    c.connected = secs(c.id);
                    c.is_local = c.id == 6;
                    c.network = if c.id == 5 { Onion } else { Ipv4 };
                },
                &[0, 1, 6],
                &[2, 3, 4, 5],
            ),
            // 1 localhost, 1 onion of 8: both protected.
            (
                8,
                |c, _| {
                    c.connected = secs(c.id);
                    c.is_local = c.id == 6;
                    c.network = if c.id == 5 { Onion } else { Ipv4 };
                },
                &[0, 1, 5, 6],
                &[2, 3, 4, 7],
            ),
            // 3 localhost, 3 onion of 12: 2 localhost, 1 onion.
            (
                12,
                |c, _| {
                    c.connected = secs(c.id);
                    c.is_local = [6, 9, 11].contains(&c.id);
                    c.network = if [7, 8, 10].contains(&c.id) {
                        Onion
                    } else {
                        Ipv6
                    };
                },
                &[0, 1, 2, 6, 7, 9],
                &[3, 4, 5, 8, 10, 11],
            ),
            // 4 localhost, 1 onion of 12: 2 localhost, 1 onion.
            (
                12,
                |c, _| {
                    c.connected = secs(c.id);
                    c.is_local = c.id > 4 && c.id < 9;
                    c.network = if c.id == 10 { Onion } else { Ipv4 };
                },
                &[0, 1, 2, 5, 6, 10],
                &[3, 4, 7, 8, 9, 11],
            ),
            // 4 localhost, 2 onion of 16: 2 and 2.
            (
                16,
                |c, _| {
                    c.connected = secs(c.id);
                    c.is_local = [6, 9, 11, 12].contains(&c.id);
                    c.network = if c.id == 8 || c.id == 10 { Onion } else { Ipv6 };
                },
                &[0, 1, 2, 3, 6, 8, 9, 10],
                &[4, 5, 7, 11, 12, 13, 14, 15],
            ),
            // 5 localhost, 1 onion of 16: localhost recovers the unused onion slot.
            (
                16,
                |c, _| {
                    c.connected = secs(c.id);
                    c.is_local = c.id > 10;
                    c.network = if c.id == 10 { Onion } else { Ipv4 };
                },
                &[0, 1, 2, 3, 10, 11, 12, 13],
                &[4, 5, 6, 7, 8, 9, 14, 15],
            ),
            // 1 localhost, 4 onion of 16: onion recovers the unused localhost slot.
            (
                16,
                |c, _| {
                    c.connected = secs(c.id);
                    c.is_local = c.id == 15;
                    c.network = if c.id > 6 && c.id < 11 { Onion } else { Ipv6 };
                },
                &[0, 1, 2, 3, 7, 8, 9, 15],
                &[5, 6, 10, 11, 12, 13, 14],
            ),
            // 2 onion, 4 I2P of 12: onion first for having fewer candidates.
            (
                12,
                |c, _| {
                    c.connected = secs(c.id);
                    c.is_local = false;
                    c.network = if c.id == 8 || c.id == 10 {
                        Onion
                    } else if [6, 9, 11, 12].contains(&c.id) {
                        I2p
                    } else {
                        Ipv4
                    };
                },
                &[0, 1, 2, 6, 8, 10],
                &[3, 4, 5, 7, 9, 11],
            ),
            // Three networks. 1 localhost, 1 I2P, 1 onion of 4: I2P wins by array order.
            (
                4,
                |c, _| {
                    c.connected = secs(c.id);
                    c.is_local = c.id == 2;
                    c.network = match c.id {
                        3 => I2p,
                        1 => Onion,
                        _ => Ipv6,
                    };
                },
                &[0, 3],
                &[1, 2],
            ),
            // Same of 7.
            (
                7,
                |c, _| {
                    c.connected = secs(c.id);
                    c.is_local = c.id == 4;
                    c.network = match c.id {
                        6 => I2p,
                        5 => Onion,
                        _ => Ipv6,
                    };
                },
                &[0, 1, 6],
                &[2, 3, 4, 5],
            ),
            // Same of 8: I2P then localhost.
            (
                8,
                |c, _| {
                    c.connected = secs(c.id);
                    c.is_local = c.id == 6;
                    c.network = match c.id {
                        5 => I2p,
                        4 => Onion,
                        _ => Ipv6,
                    };
                },
                &[0, 1, 5, 6],
                &[2, 3, 4, 7],
            ),
            // 4 localhost, 2 I2P, 2 onion of 16: 1, 2, 1.
            (
                16,
                |c, _| {
                    c.connected = secs(c.id);
                    c.is_local = c.id == 6 || c.id > 11;
                    c.network = match c.id {
                        7 | 11 => I2p,
                        9 | 10 => Onion,
                        _ => Ipv4,
                    };
                },
                &[0, 1, 2, 3, 6, 7, 9, 11],
                &[4, 5, 8, 10, 12, 13, 14, 15],
            ),
            // 1 localhost, 8 I2P, 1 onion of 24: 1, 4, 1.
            (
                24,
                |c, _| {
                    c.connected = secs(c.id);
                    c.is_local = c.id == 12;
                    c.network = match c.id {
                        15..=22 => I2p,
                        23 => Onion,
                        _ => Ipv6,
                    };
                },
                &[0, 1, 2, 3, 4, 5, 12, 15, 16, 17, 18, 23],
                &[6, 7, 8, 9, 10, 11, 13, 14, 19, 20, 21, 22],
            ),
            // 1 localhost, 3 I2P, 6 onion of 24: I2P takes the unused localhost slot.
            (
                24,
                |c, _| {
                    c.connected = secs(c.id);
                    c.is_local = c.id == 15;
                    c.network = match c.id {
                        12 | 14 | 17 => I2p,
                        18.. => Onion,
                        _ => Ipv4,
                    };
                },
                &[0, 1, 2, 3, 4, 5, 12, 14, 15, 17, 18, 19],
                &[6, 7, 8, 9, 10, 11, 13, 16, 20, 21, 22, 23],
            ),
            // 1 localhost, 7 I2P, 4 onion of 24: 1, 2, 3.
            (
                24,
                |c, _| {
                    c.connected = secs(c.id);
                    c.is_local = c.id == 13;
                    c.network = match c.id {
                        17.. => I2p,
                        12 | 14 | 15 | 16 => Onion,
                        _ => Ipv6,
                    };
                },
                &[0, 1, 2, 3, 4, 5, 12, 13, 14, 15, 17, 18],
                &[6, 7, 8, 9, 10, 11, 16, 19, 20, 21, 22, 23],
            ),
            // 8 localhost, 4 CJDNS, 3 onion of 24: 2 of each.
            (
                24,
                |c, _| {
                    c.connected = secs(c.id);
                    c.is_local = c.id > 15;
                    c.network = match c.id {
                        11..=14 => Cjdns,
                        7..=9 => Onion,
                        _ => Ipv4,
                    };
                },
                &[0, 1, 2, 3, 4, 5, 7, 8, 11, 12, 16, 17],
                &[6, 9, 10, 13, 14, 15, 18, 19, 20, 21, 22, 23],
            ),
            // Four networks. 1 each of 5: CJDNS wins by array order.
            (
                5,
                |c, _| {
                    c.connected = secs(c.id);
                    c.is_local = c.id == 3;
                    c.network = match c.id {
                        4 => Cjdns,
                        1 => I2p,
                        2 => Onion,
                        _ => Ipv6,
                    };
                },
                &[0, 4],
                &[1, 2, 3],
            ),
            // 1 each of 7.
            (
                7,
                |c, _| {
                    c.connected = secs(c.id);
                    c.is_local = c.id == 4;
                    c.network = match c.id {
                        6 => Cjdns,
                        5 => I2p,
                        3 => Onion,
                        _ => Ipv4,
                    };
                },
                &[0, 1, 6],
                &[2, 3, 4, 5],
            ),
            // 1 each of 8 (Core's localhost peer 3 is also its onion peer).
            (
                8,
                |c, _| {
                    c.connected = secs(c.id);
                    c.is_local = c.id == 3;
                    c.network = match c.id {
                        5 => Cjdns,
                        6 => I2p,
                        3 => Onion,
                        _ => Ipv6,
                    };
                },
                &[0, 1, 5, 6],
                &[2, 3, 4, 7],
            ),
            // 2 CJDNS, 2 I2P, 4 localhost (more via overlap), 2 onion of 16: 1 each.
            (
                16,
                |c, _| {
                    c.connected = secs(c.id);
                    c.is_local = c.id > 5;
                    c.network = match c.id {
                        11 | 15 => Cjdns,
                        10 | 14 => I2p,
                        8 | 9 => Onion,
                        _ => Ipv4,
                    };
                },
                &[0, 1, 2, 3, 6, 8, 10, 11],
                &[4, 5, 7, 9, 12, 13, 14, 15],
            ),
            // 6 CJDNS, 1 I2P, 1 localhost, 4 onion of 24: 2, 1, 1, 2.
            (
                24,
                |c, _| {
                    c.connected = secs(c.id);
                    c.is_local = c.id == 13;
                    c.network = match c.id {
                        18.. => Cjdns,
                        17 => I2p,
                        12 | 14 | 15 | 16 => Onion,
                        _ => Ipv6,
                    };
                },
                &[0, 1, 2, 3, 4, 5, 12, 13, 14, 17, 18, 19],
                &[6, 7, 8, 9, 10, 11, 15, 16, 20, 21, 22, 23],
            ),
        ];
        assert_eq!(cases.len(), 32);
        let mut rng = Rng(1);
        // Several shuffles per case, since input order must not matter for these.
        for round in 0..8 {
            for (i, &(n, setup, protected, unprotected)) in cases.iter().enumerate() {
                check_protected(i + 100 * round, n, setup, protected, unprotected, &mut rng);
            }
        }
    }

    /// Core's `IsEvicted`: shuffle, select, and report whether the evicted id is in `ids`.
    fn is_evicted(mut candidates: Vec<EvictionCandidate>, ids: &[u64], rng: &mut Rng) -> bool {
        rng.shuffle(&mut candidates);
        select_node_to_evict(candidates).is_some_and(|id| ids.contains(&id))
    }

    fn is_evicted_with(n: u64, setup: Setup, ids: &[u64], rng: &mut Rng) -> bool {
        let mut candidates = random_candidates(n, rng);
        for c in &mut candidates {
            setup(c, n);
        }
        is_evicted(candidates, ids, rng)
    }

    /// Core's `peer_eviction_test`: each protection rule shields specific ids in random sets.
    #[test]
    fn peer_eviction_test() {
        let cases: &[(&str, Setup, &[u64])] = &[
            (
                "4 highest keyed netgroups",
                |c, n| c.keyed_netgroup = n - c.id,
                &[0, 1, 2, 3],
            ),
            (
                "8 lowest min ping",
                |c, _| c.min_ping = Some(Duration::from_micros(c.id)),
                &[0, 1, 2, 3, 4, 5, 6, 7],
            ),
            (
                "4 most recent novel tx",
                |c, n| c.last_tx_time = secs(n - c.id),
                &[0, 1, 2, 3],
            ),
            (
                "8 most recent block-relay-only blocks",
                |c, n| {
                    c.last_block_time = secs(n - c.id);
                    if c.id <= 7 {
                        c.relay_txs = false;
                        c.relevant_services = true;
                    }
                },
                &[0, 1, 2, 3, 4, 5, 6, 7],
            ),
            (
                "4 most recent novel blocks",
                |c, n| c.last_block_time = secs(n - c.id),
                &[0, 1, 2, 3],
            ),
            (
                "8 block-relay-only plus 4 blocks",
                |c, n| {
                    c.last_block_time = secs(n - c.id);
                    if c.id <= 7 {
                        c.relay_txs = false;
                        c.relevant_services = true;
                    }
                },
                &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11],
            ),
            (
                "all combined",
                |c, n| {
                    c.keyed_netgroup = n - c.id;
                    c.min_ping = Some(Duration::from_micros(c.id));
                    c.last_tx_time = secs(n - c.id);
                    c.last_block_time = secs(n - c.id);
                },
                &(0..20).collect::<Vec<_>>(),
            ),
        ];
        let mut rng = Rng(2);
        let mut evictions = 0;
        for n in 0..200 {
            for &(name, setup, ids) in cases {
                assert!(
                    !is_evicted_with(n, setup, ids, &mut rng),
                    "{name}, {n} nodes"
                );
            }
            // At most 4 + 8 + 4 + 8 + 4 = 28 are protected before the ratio step, and half of
            // one remaining peer rounds down to none.
            if n >= 29 {
                assert!(
                    select_node_to_evict(random_candidates(n, &mut rng)).is_some(),
                    "{n}"
                );
                evictions += 1;
            }
            // At least 4 + 8 + 4 + 4 = 20 are always protected.
            if n <= 20 {
                assert_eq!(
                    select_node_to_evict(random_candidates(n, &mut rng)),
                    None,
                    "{n}"
                );
            }
        }
        assert_eq!(evictions, 171);
    }

    /// A plain inbound IPv4 peer that wins no protection category.
    fn peer(id: u64, connected: u64, netgroup: u64) -> EvictionCandidate {
        EvictionCandidate {
            id,
            connected: secs(connected),
            min_ping: None,
            last_block_time: Duration::ZERO,
            last_tx_time: Duration::ZERO,
            relevant_services: false,
            relay_txs: true,
            bloom_filter: false,
            keyed_netgroup: netgroup,
            prefer_evict: false,
            is_local: false,
            network: Ipv4,
            noban: false,
            inbound: true,
        }
    }

    /// 28 peers that take every slot of the five fixed-count rules, one group per rule:
    /// ids 1000.. netgroup, 1010.. ping, 1020.. tx, 1030.. block-relay-only, 1040.. block.
    fn fodder() -> Vec<EvictionCandidate> {
        let mut v = Vec::new();
        let mk = |id: u64| peer(id, 5, 500_000 + id);
        for i in 0..4 {
            // Even keys, so a test peer can slot strictly between two of them.
            v.push(EvictionCandidate {
                keyed_netgroup: 1_000_000 + 2 * i,
                ..mk(1000 + i)
            });
        }
        for i in 0..8 {
            v.push(EvictionCandidate {
                min_ping: Some(Duration::from_micros(1 + i)),
                ..mk(1010 + i)
            });
        }
        for i in 0..4 {
            v.push(EvictionCandidate {
                last_tx_time: secs(100 + i),
                ..mk(1020 + i)
            });
        }
        for i in 0..8 {
            v.push(EvictionCandidate {
                relay_txs: false,
                relevant_services: true,
                last_block_time: secs(200 + i),
                ..mk(1030 + i)
            });
        }
        for i in 0..4 {
            v.push(EvictionCandidate {
                last_block_time: secs(300 + i),
                ..mk(1040 + i)
            });
        }
        v
    }

    /// Fodder plus peers 1..=12 connected at second `id`. The ratio step protects 1..=6 by
    /// uptime; 7..=12 sit in netgroups A{7,10}, B{8,11}, C{9}, D{12}.
    fn scenario() -> Vec<EvictionCandidate> {
        let mut v = fodder();
        for id in 1..=12 {
            let group = match id {
                7 | 10 => 1,
                8 | 11 => 2,
                9 => 3,
                12 => 4,
                _ => 100 + id,
            };
            v.push(peer(id, id, group));
        }
        v
    }

    fn evict(mut candidates: Vec<EvictionCandidate>, seed: u64) -> Option<u64> {
        Rng(seed).shuffle(&mut candidates);
        select_node_to_evict(candidates)
    }

    fn modify(id: u64, f: impl Fn(&mut EvictionCandidate)) -> Vec<EvictionCandidate> {
        let mut v = scenario();
        v.iter_mut().filter(|c| c.id == id).for_each(f);
        v
    }

    #[test]
    fn all_protected_gives_none() {
        assert_eq!(select_node_to_evict(Vec::new()), None);
        assert_eq!(evict(fodder(), 3), None);
        // One unprotected peer: half of one rounds down, so it is evicted.
        let mut v = fodder();
        v.push(peer(1, 1, 1));
        assert_eq!(evict(v, 3), Some(1));
        // Two: the older one is protected by uptime.
        let mut v = fodder();
        v.push(peer(1, 1, 1));
        v.push(peer(2, 2, 2));
        assert_eq!(evict(v, 3), Some(2));
    }

    #[test]
    fn youngest_of_biggest_netgroup_with_tie_break() {
        // A and B tie at two members; B's youngest (11) is younger than A's (10). Not 12, the
        // youngest overall, whose group is smaller.
        for seed in 0..20 {
            assert_eq!(evict(scenario(), seed), Some(11), "seed {seed}");
        }
        // Make B strictly biggest: its youngest is still chosen.
        assert_eq!(evict(modify(9, |c| c.keyed_netgroup = 2), 1), Some(11));
        // Make A strictly biggest.
        assert_eq!(evict(modify(12, |c| c.keyed_netgroup = 1), 1), Some(12));
        assert_eq!(evict(modify(9, |c| c.keyed_netgroup = 1), 1), Some(10));
    }

    #[test]
    fn each_rule_protects_exactly_its_count() {
        // A runner-up in each category is not protected by it, so it is the only peer left.
        let runners_up = [
            peer(1, 1, 999_999),
            EvictionCandidate {
                min_ping: Some(Duration::from_micros(9)),
                ..peer(1, 1, 1)
            },
            EvictionCandidate {
                last_tx_time: secs(99),
                ..peer(1, 1, 1)
            },
            EvictionCandidate {
                relay_txs: false,
                relevant_services: true,
                last_block_time: secs(199),
                ..peer(1, 1, 1)
            },
            EvictionCandidate {
                last_block_time: secs(299),
                ..peer(1, 1, 1)
            },
        ];
        for (i, r) in runners_up.into_iter().enumerate() {
            let mut v = fodder();
            v.push(r);
            assert_eq!(evict(v, i as u64), Some(1), "runner-up {i}");
        }
        // Beating the weakest member of each group takes its slot, leaving that member as the
        // only peer not protected.
        let winners = [
            (peer(1, 1, 1_000_001), 1000),
            (
                EvictionCandidate {
                    min_ping: Some(Duration::from_nanos(1500)),
                    ..peer(1, 1, 1)
                },
                1017,
            ),
            (
                EvictionCandidate {
                    last_tx_time: secs(101),
                    ..peer(1, 1, 1)
                },
                1020,
            ),
            (
                EvictionCandidate {
                    relay_txs: false,
                    relevant_services: true,
                    last_block_time: secs(201),
                    ..peer(1, 1, 1)
                },
                1030,
            ),
            (
                EvictionCandidate {
                    last_block_time: secs(301),
                    ..peer(1, 1, 1)
                },
                1040,
            ),
        ];
        for (i, (w, displaced)) in winners.into_iter().enumerate() {
            let mut v = fodder();
            v.push(w);
            assert_eq!(evict(v, i as u64), Some(displaced), "winner {i}");
        }
    }

    /// Sorts shuffled copies of `peers` by `compare` and checks the order is `expected` ids.
    fn assert_order(
        compare: fn(&EvictionCandidate, &EvictionCandidate) -> Ordering,
        peers: &[EvictionCandidate],
        expected: &[u64],
    ) {
        let mut rng = Rng(8);
        for _ in 0..10 {
            let mut v = peers.to_vec();
            rng.shuffle(&mut v);
            v.sort_by(compare);
            assert_eq!(v.iter().map(|c| c.id).collect::<Vec<_>>(), expected);
        }
    }

    /// The fall-through keys of Core's comparators, most evictable first.
    #[test]
    fn comparator_tie_breaks() {
        let p = |id, connected| peer(id, connected, 1);
        // Tx: time, then not relaying before relaying, then bloom before none, then youngest.
        assert_order(
            compare_tx_time,
            &[
                EvictionCandidate {
                    last_tx_time: secs(1),
                    ..p(5, 9)
                },
                EvictionCandidate {
                    relay_txs: false,
                    ..p(1, 1)
                },
                EvictionCandidate {
                    bloom_filter: true,
                    ..p(2, 1)
                },
                p(3, 9),
                p(4, 1),
            ],
            &[1, 2, 3, 4, 5],
        );
        // Block: time, then irrelevant services before relevant, then youngest.
        assert_order(
            compare_block_time,
            &[
                EvictionCandidate {
                    last_block_time: secs(1),
                    ..p(4, 9)
                },
                p(1, 1),
                EvictionCandidate {
                    relevant_services: true,
                    ..p(2, 9)
                },
                EvictionCandidate {
                    relevant_services: true,
                    ..p(3, 1)
                },
            ],
            &[1, 2, 3, 4],
        );
        // Block-relay-only: tx-relaying first, then as the block comparator.
        let no_relay = |id, connected| EvictionCandidate {
            relay_txs: false,
            ..p(id, connected)
        };
        assert_order(
            compare_block_relay_only_time,
            &[
                EvictionCandidate {
                    last_block_time: secs(9),
                    ..p(1, 1)
                },
                EvictionCandidate {
                    last_block_time: secs(1),
                    ..no_relay(5, 9)
                },
                no_relay(2, 1),
                EvictionCandidate {
                    relevant_services: true,
                    ..no_relay(3, 9)
                },
                EvictionCandidate {
                    relevant_services: true,
                    ..no_relay(4, 1)
                },
            ],
            &[1, 2, 3, 4, 5],
        );
        // Network/uptime: outside the class first, each part youngest first.
        assert_order(
            |a, b| compare_network_time(Disadvantaged::Net(Onion), a, b),
            &[
                EvictionCandidate {
                    network: Onion,
                    ..p(3, 9)
                },
                EvictionCandidate {
                    network: Onion,
                    ..p(4, 1)
                },
                EvictionCandidate {
                    is_local: true,
                    ..p(1, 9)
                },
                p(2, 1),
            ],
            &[1, 2, 3, 4],
        );
        assert_order(
            |a, b| compare_network_time(Disadvantaged::Localhost, a, b),
            &[
                EvictionCandidate {
                    is_local: true,
                    ..p(3, 9)
                },
                EvictionCandidate {
                    is_local: true,
                    network: Onion,
                    ..p(4, 1)
                },
                EvictionCandidate {
                    network: Onion,
                    ..p(1, 9)
                },
                p(2, 1),
            ],
            &[1, 2, 3, 4],
        );
    }

    #[test]
    fn block_relay_only_protection_needs_relevant_services() {
        // A non-relaying peer with the newest block but no relevant services sorts last, so it
        // takes one of the 8 places without being protected, and the oldest of that group (1030,
        // block 200, connected 5) loses its place. Of the two left, the older (1030) keeps its
        // uptime protection.
        let mut v = fodder();
        v.push(EvictionCandidate {
            relay_txs: false,
            last_block_time: secs(250),
            ..peer(1, 10, 1)
        });
        assert_eq!(evict(v, 9), Some(1));
    }

    #[test]
    fn exact_ties_are_deterministic() {
        // Core's std::sort leaves exact ties unspecified; here peers 3 and 4 tie on size and
        // youngest time, and the stable sorts keep them in netgroup order from the first rule,
        // so the lower keyed netgroup is found first and kept, whatever the input order.
        let mut v = fodder();
        v.extend([
            peer(1, 1, 10),
            peer(2, 2, 11),
            peer(3, 10, 20),
            peer(4, 10, 21),
        ]);
        for seed in 0..20 {
            assert_eq!(evict(v.clone(), seed), Some(3), "seed {seed}");
        }
    }

    #[test]
    fn peer_in_two_classes_is_protected_once() {
        // Peer 7 is both localhost and onion. Localhost protects it; onion's count still says
        // one but nothing matches, so the round protects nobody and the loop must stop, leaving
        // three slots of the four to uptime.
        let mut v: Vec<_> = (0..8).map(|id| peer(id, id, id)).collect();
        v[7].is_local = true;
        v[7].network = Onion;
        Rng(10).shuffle(&mut v);
        protect_by_ratio(&mut v);
        assert_eq!(v.iter().map(|c| c.id).collect::<Vec<_>>(), [6, 5, 4, 3]);
    }

    #[test]
    fn unmeasured_ping_sorts_worst() {
        let mut v: Vec<_> = (0..8)
            .map(|i| EvictionCandidate {
                min_ping: Some(Duration::from_secs(1000 + i)),
                ..peer(i, 1, 1)
            })
            .collect();
        v.push(peer(8, 1, 1));
        erase_last_k(&mut v, reverse_compare_min_ping, 8, |_| true);
        assert_eq!(v.iter().map(|c| c.id).collect::<Vec<_>>(), [8]);
    }

    #[test]
    fn prefer_evict_narrows_only_the_survivors() {
        // A survivor marked prefer_evict is chosen even from a small, old netgroup.
        assert_eq!(evict(modify(7, |c| c.prefer_evict = true), 4), Some(7));
        // Several marked: the netgroup rule applies among them (A{7,10} beats D{12}).
        let mut v = scenario();
        for c in &mut v {
            c.prefer_evict = [7, 10, 12].contains(&c.id);
        }
        assert_eq!(evict(v, 4), Some(10));
        // Marked peers that were protected (by uptime, by ping) change nothing.
        assert_eq!(evict(modify(1, |c| c.prefer_evict = true), 4), Some(11));
        assert_eq!(evict(modify(1010, |c| c.prefer_evict = true), 4), Some(11));
    }

    #[test]
    fn noban_and_outbound_are_never_candidates() {
        // Without 11, eleven remain, 1..=5 are protected by uptime, and A{7,10} is biggest.
        assert_eq!(evict(modify(11, |c| c.noban = true), 5), Some(10));
        assert_eq!(evict(modify(11, |c| c.inbound = false), 5), Some(10));
        // prefer_evict does not override noban.
        assert_eq!(
            evict(
                modify(11, |c| {
                    c.noban = true;
                    c.prefer_evict = true
                }),
                5
            ),
            Some(10)
        );
        for flag in [
            |c: &mut EvictionCandidate| c.noban = true,
            |c: &mut EvictionCandidate| c.inbound = false,
        ] {
            let mut v = scenario();
            v.iter_mut().for_each(flag);
            assert_eq!(evict(v, 5), None);
        }
        // Random sets with random flags: the evicted peer is always an eligible one, and
        // flagging it makes the selection move elsewhere.
        let mut rng = Rng(6);
        for n in 29..120 {
            let mut v = random_candidates(n, &mut rng);
            for c in &mut v {
                c.noban = rng.range(5) == 0;
                c.inbound = rng.range(5) != 0;
            }
            if let Some(id) = select_node_to_evict(v.clone()) {
                let c = v.iter_mut().find(|c| c.id == id).unwrap();
                assert!(!c.noban && c.inbound);
                c.noban = true;
                assert_ne!(select_node_to_evict(v), Some(id));
            }
        }
    }

    #[test]
    fn disadvantaged_networks_share_uptime_protection_in_selection() {
        // 12 non-fodder peers, all younger is worse; the youngest onion, I2P, CJDNS and local
        // peers would be evicted on uptime alone, but the 3-slot reservation (12 / 2 / 2) keeps
        // one each of the three smallest classes (CJDNS, I2P, localhost tie at one; onion has
        // two), leaving onion to compete on uptime.
        let mut v = fodder();
        for id in 1..=12 {
            let mut c = peer(id, id, 100 + id);
            match id {
                12 => c.network = Cjdns,
                11 => c.network = I2p,
                10 => c.is_local = true,
                9 | 8 => c.network = Onion,
                _ => {}
            }
            v.push(c);
        }
        let mut rng = Rng(7);
        let mut left = v.clone();
        left.retain(|c| c.id < 1000);
        rng.shuffle(&mut left);
        protect_by_ratio(&mut left);
        // Protected: 10, 11, 12 by class, then 1, 2, 3 by uptime. Left youngest first.
        assert_eq!(
            left.iter().map(|c| c.id).collect::<Vec<_>>(),
            [9, 8, 7, 6, 5, 4]
        );
        // All netgroups are singletons, so the youngest survivor goes: onion peer 9.
        assert_eq!(evict(v, 7), Some(9));
    }
}
