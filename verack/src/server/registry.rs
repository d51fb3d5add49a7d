//! Who is connected, who is pending, and whether another connection may join: the admission
//! checkpoints as plain data and functions (no I/O), so every rule is unit-tested.
//!
//! Peers are keyed by socket address; a Tor, I2P or CJDNS peer by its
//! [stand-in](crate::address::stand_in), whose network group is Core's for that network
//! ([`crate::netgroup::netgroup`]), so one outbound peer per onion group, as Core.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

#[cfg(test)]
use crate::netgroup::netgroup;
use crate::netgroup::{canonical, netgroup_with, pending_group, NetGroup};
use crate::peer::{Direction, PeerId};

use super::ConnectionKind;

/// Admission limits; every field is a [`ServerConfig`](super::ServerConfig) field too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdmissionRules {
    /// When non-empty, only these networks may connect or be dialled (geth's `NetRestrict`).
    pub allow: Vec<IpNet>,
    /// These networks are refused and never dialled.
    pub deny: Vec<IpNet>,
    /// Peers in these networks bypass every limit and ban, and are never evicted.
    pub trusted: Vec<IpNet>,
    /// Inbound handshakes in progress per /24 (IPv4) or /64 (IPv6). Default 8. When a
    /// newcomer's /24 or /64 is at this limit, the longest-pending handshake of that group is
    /// dropped to make room (see [`select_pending_to_drop`]); trusted handshakes do not count.
    pub max_pending_per_group: usize,
    /// Established connections per IP address. Default 5 (dcrd).
    pub max_per_ip: usize,
    /// Established inbound connections. Default 114 (Core: 125 total − 11 outbound).
    pub max_inbound: usize,
    /// Established connections of any direction before inbound ones are refused. Default 125
    /// (Core v31's `DEFAULT_MAX_PEER_CONNECTIONS`).
    pub max_total: usize,
}

impl Default for AdmissionRules {
    fn default() -> Self {
        AdmissionRules {
            allow: Vec::new(),
            deny: Vec::new(),
            trusted: Vec::new(),
            max_pending_per_group: 8,
            max_per_ip: 5,
            max_inbound: 114,
            max_total: 125,
        }
    }
}

impl AdmissionRules {
    /// Whether `ip` is in a trusted network.
    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.trusted.iter().any(|n| n.contains(&ip))
    }

    /// Whether the allow/deny lists permit `ip`.
    pub fn permits(&self, ip: IpAddr) -> Result<(), Refusal> {
        let ip = canonical(ip);
        if self.deny.iter().any(|n| n.contains(&ip)) {
            return Err(Refusal::Denied);
        }
        if !self.allow.is_empty() && !self.allow.iter().any(|n| n.contains(&ip)) {
            return Err(Refusal::NotAllowed);
        }
        Ok(())
    }
}

/// Why a connection was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// The address is banned.
    #[error("banned")]
    Banned,
    /// Not in the allow list.
    #[error("not in the allow list")]
    NotAllowed,
    /// In the deny list.
    #[error("in the deny list")]
    Denied,
    /// Too many handshakes in progress from this /24 or /64, or in total, and none could be
    /// dropped to make room (only trusted ones are pending, or the limit is 0).
    #[error("too many pending handshakes from {group}")]
    TooManyPending {
        /// The /24 or /64.
        group: IpNet,
    },
    /// Too many established connections from this IP.
    #[error("too many connections from {ip}")]
    TooManyFromIp {
        /// The address.
        ip: IpAddr,
    },
    /// Already connected to this address or to the node with this nonce.
    #[error("duplicate of peer {existing}")]
    Duplicate {
        /// The peer already connected.
        existing: PeerId,
    },
    /// Inbound slots are full and no inbound peer could be evicted.
    #[error("inbound slots full and no peer evictable")]
    InboundFull,
    /// The total connection limit is reached.
    #[error("connection limit reached")]
    TooManyPeers,
    /// The server is shutting down.
    #[error("server shutting down")]
    ShuttingDown,
    /// The [`PeerPolicy`](super::PeerPolicy) refused the remote's `version` (checked in the
    /// handshake, so the peer never held a slot).
    #[error("peer policy: {0}")]
    Policy(super::PolicyRefusal),
}

/// An established connection's bookkeeping; `T` is what the server keeps with it (its handle).
#[derive(Debug, Clone)]
pub struct Established<T> {
    /// Peer id.
    pub id: PeerId,
    /// Remote socket address.
    pub addr: SocketAddr,
    /// Who opened it.
    pub direction: Direction,
    /// Why it exists.
    pub kind: ConnectionKind,
    /// Bypasses limits and bans; never evicted.
    pub trusted: bool,
    /// The nonce of the remote's `version` (0 if it sent none).
    pub remote_nonce: u64,
    /// The remote's network group.
    pub netgroup: NetGroup,
    /// When it was admitted.
    pub connected_at: Instant,
    /// When it last sent us a block we did not have (set by the caller), for eviction.
    pub last_novel_block: Option<Instant>,
    /// When it last sent us a transaction we did not have, for eviction.
    pub last_novel_tx: Option<Instant>,
    /// Address relay with this peer (the server's one record of it: forwarding targets,
    /// self-announcement and getpeerinfo read it).
    pub addr_relay: super::addr_relay::AddrRelayState,
    /// The caller's data.
    pub payload: T,
}

/// Identifies one pending inbound handshake (unique for the registry's life).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PendingId(pub u64);

/// An inbound connection in its handshake, as the registry keeps it.
#[derive(Debug, Clone)]
pub struct Pending {
    /// Its id.
    pub id: PendingId,
    /// The remote address (canonical: mapped IPv4 is IPv4).
    pub ip: IpAddr,
    /// Its /24 (IPv4) or /64 (IPv6).
    pub group: IpNet,
    /// When it was accepted.
    pub started_at: Instant,
    /// Trusted: not counted against the pending limits, never dropped.
    pub trusted: bool,
    /// Cancelled to drop this handshake; the connection's task selects on it.
    pub cancel: CancellationToken,
}

/// A pending handshake admitted by [`Registry::begin_pending`].
#[derive(Debug)]
pub struct PendingAdmission {
    /// The newcomer's id; release it with [`Registry::end_pending`].
    pub id: PendingId,
    /// The pending handshake dropped to make room, already removed from the registry (its
    /// slot is released); the caller cancels its [`cancel`](Pending::cancel) token.
    pub dropped: Option<Pending>,
}

/// What [`select_pending_to_drop`] looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingCandidate {
    /// The pending handshake.
    pub id: PendingId,
    /// Its /24 or /64.
    pub group: IpNet,
    /// When it was accepted.
    pub started_at: Instant,
}

/// Which pending handshake to drop when the pending slots are full: the longest-pending one
/// of the group holding the most pending slots (ties: the group whose longest-pending
/// handshake started first; then the lower id). With `within`, only that group is considered
/// (the newcomer's group is at its own limit, so only a drop there makes room). `None` if no
/// candidate.
///
/// This is Bitcoin Core's inbound eviction (`AttemptToEvictConnection` → `SelectNodeToEvict`:
/// evict from the netgroup with the most connections, protect long-lived peers) applied to
/// handshakes, with one inversion: an honest handshake takes one round trip, so among pending
/// connections the *oldest* is the likeliest to be silent and is dropped, where Core keeps
/// its oldest established peers and evicts the youngest. A flood from one group so mostly
/// displaces itself; a newcomer is never refused for lack of a slot, and an honest peer
/// sharing a group with a flooder (CGNAT) completes its handshake unless the flooder opens
/// `max_pending_per_group` connections within that one round trip.
pub fn select_pending_to_drop(
    candidates: &[PendingCandidate],
    within: Option<IpNet>,
) -> Option<PendingId> {
    // Per group: how many, and its longest-pending (started_at, id).
    let mut groups: HashMap<IpNet, (usize, (Instant, PendingId))> = HashMap::new();
    for c in candidates
        .iter()
        .filter(|c| within.is_none_or(|g| c.group == g))
    {
        let key = (c.started_at, c.id);
        groups
            .entry(c.group)
            .and_modify(|(n, oldest)| {
                *n += 1;
                *oldest = (*oldest).min(key);
            })
            .or_insert((1, key));
    }
    groups
        .into_values()
        .max_by(|(n_a, oldest_a), (n_b, oldest_b)| n_a.cmp(n_b).then(oldest_b.cmp(oldest_a)))
        .map(|(_, (_, id))| id)
}

/// Connections known to the server.
#[derive(Debug)]
pub struct Registry<T> {
    peers: HashMap<PeerId, Established<T>>,
    by_addr: HashMap<SocketAddr, PeerId>,
    by_nonce: HashMap<u64, PeerId>,
    per_ip: HashMap<IpAddr, usize>,
    pending: HashMap<PendingId, Pending>,
    next_pending: u64,
    dialing: HashMap<SocketAddr, ConnectionKind>,
    loopback_groups: bool,
}

impl<T> Default for Registry<T> {
    fn default() -> Self {
        Registry {
            loopback_groups: false,
            peers: HashMap::new(),
            by_addr: HashMap::new(),
            by_nonce: HashMap::new(),
            per_ip: HashMap::new(),
            pending: HashMap::new(),
            next_pending: 0,
            dialing: HashMap::new(),
        }
    }
}

impl<T> Registry<T> {
    /// A registry grouping loopback `127.a.b.c` by `a.b` (test networks on one machine).
    pub fn with_loopback_groups() -> Self {
        Registry {
            loopback_groups: true,
            ..Default::default()
        }
    }

    /// The network group of `ip` under this registry's grouping.
    pub fn group_of(&self, ip: IpAddr) -> NetGroup {
        netgroup_with(ip, self.loopback_groups)
    }

    /// Checkpoint before an inbound handshake: allow/deny, bans and established per IP refuse;
    /// then the pending limits — at most `rules.max_pending_per_group` per /24 or /64 and
    /// `max_pending` in total (the server's
    /// [`max_pending_handshakes`](super::ServerConfig::max_pending_handshakes)) — make room
    /// instead of refusing: when one is reached the handshake chosen by
    /// [`select_pending_to_drop`] is removed and returned in
    /// [`PendingAdmission::dropped`] (from the newcomer's group if that group is full, else
    /// from the group holding the most). The newcomer is registered as pending since `now`,
    /// with `cancel` as its drop handle. Release it with [`end_pending`](Self::end_pending).
    ///
    /// Trusted addresses obey only allow/deny; their handshakes are not counted against the
    /// pending limits and are never dropped, so pending handshakes number at most
    /// `max_pending` plus the trusted ones.
    ///
    /// # Errors
    /// The [`Refusal`] of the first rule that fails: [`Refusal::Denied`],
    /// [`Refusal::NotAllowed`], [`Refusal::Banned`], [`Refusal::TooManyFromIp`], or
    /// [`Refusal::TooManyPending`] when a pending limit is reached and nothing can be dropped
    /// (a limit of 0, or only trusted handshakes pending).
    pub fn begin_pending(
        &mut self,
        ip: IpAddr,
        banned: bool,
        rules: &AdmissionRules,
        max_pending: usize,
        now: Instant,
        cancel: CancellationToken,
    ) -> Result<PendingAdmission, Refusal> {
        let ip = canonical(ip);
        rules.permits(ip)?;
        let group = pending_group(ip);
        let trusted = rules.is_trusted(ip);
        let mut dropped = None;
        if !trusted {
            if banned {
                return Err(Refusal::Banned);
            }
            if self.per_ip.get(&ip).copied().unwrap_or(0) >= rules.max_per_ip {
                return Err(Refusal::TooManyFromIp { ip });
            }
            let candidates: Vec<PendingCandidate> = self
                .pending
                .values()
                .filter(|p| !p.trusted)
                .map(|p| PendingCandidate {
                    id: p.id,
                    group: p.group,
                    started_at: p.started_at,
                })
                .collect();
            let in_group = candidates.iter().filter(|c| c.group == group).count();
            let group_full = in_group >= rules.max_pending_per_group;
            if group_full || candidates.len() >= max_pending {
                // Only a drop in the newcomer's own group makes room when that group is full.
                let victim = select_pending_to_drop(&candidates, group_full.then_some(group))
                    .ok_or(Refusal::TooManyPending { group })?;
                dropped = self.pending.remove(&victim);
            }
        }
        let id = PendingId(self.next_pending);
        self.next_pending += 1;
        self.pending.insert(
            id,
            Pending {
                id,
                ip,
                group,
                started_at: now,
                trusted,
                cancel,
            },
        );
        Ok(PendingAdmission { id, dropped })
    }

    /// Releases the pending slot `id` taken by [`begin_pending`](Self::begin_pending). Returns
    /// whether it was still held: `false` once released, or after it was dropped to make room
    /// (the drop released it), so a slot is released exactly once.
    pub fn end_pending(&mut self, id: PendingId) -> bool {
        self.pending.remove(&id).is_some()
    }

    /// Inbound handshakes in progress from the /24 or /64 of `ip` (trusted ones included).
    pub fn pending_in_group(&self, ip: IpAddr) -> usize {
        let group = pending_group(ip);
        self.pending.values().filter(|p| p.group == group).count()
    }

    /// Inbound handshakes in progress (trusted ones included).
    pub fn pending_count(&self) -> usize {
        self.pending.len()
    }

    /// Checkpoint after a handshake: duplicate (same address, or same remote nonce), per-IP,
    /// and for inbound peers max inbound (evicting through `choose_eviction` when full) and max
    /// total. On success the peer is registered and the inbound peer evicted to make room, if
    /// any, is returned (already removed; the caller disconnects it).
    ///
    /// # Errors
    /// [`Refusal::Duplicate`], [`Refusal::TooManyFromIp`], [`Refusal::InboundFull`] (no peer
    /// evictable) or [`Refusal::TooManyPeers`]. Trusted peers skip all but the duplicate check.
    pub fn admit(
        &mut self,
        peer: Established<T>,
        rules: &AdmissionRules,
        choose_eviction: impl FnOnce(&Self) -> Option<PeerId>,
    ) -> Result<Option<Established<T>>, Refusal> {
        if let Some(&existing) = self.by_addr.get(&peer.addr) {
            return Err(Refusal::Duplicate { existing });
        }
        if peer.remote_nonce != 0 {
            if let Some(&existing) = self.by_nonce.get(&peer.remote_nonce) {
                return Err(Refusal::Duplicate { existing });
            }
        }
        let ip = canonical(peer.addr.ip());
        let mut evicted = None;
        if !peer.trusted {
            if peer.direction == Direction::Inbound
                && self.per_ip.get(&ip).copied().unwrap_or(0) >= rules.max_per_ip
            {
                return Err(Refusal::TooManyFromIp { ip });
            }
            if peer.direction == Direction::Inbound {
                // Every check that can still refuse the newcomer runs before a victim is
                // removed: an eviction is never undone, so it happens only when admission
                // succeeds (the caller disconnects the victim it gets back).
                let needs_eviction = self.count(Direction::Inbound) >= rules.max_inbound;
                let total_after = self.peers.len().saturating_sub(usize::from(needs_eviction));
                if total_after >= rules.max_total {
                    return Err(Refusal::TooManyPeers);
                }
                if needs_eviction {
                    let victim = choose_eviction(self).ok_or(Refusal::InboundFull)?;
                    evicted = self.remove(victim);
                }
            }
        }
        self.by_addr.insert(peer.addr, peer.id);
        if peer.remote_nonce != 0 {
            self.by_nonce.insert(peer.remote_nonce, peer.id);
        }
        *self.per_ip.entry(ip).or_default() += 1;
        self.peers.insert(peer.id, peer);
        Ok(evicted)
    }

    /// Forgets a peer; returns its entry if it was registered.
    pub fn remove(&mut self, id: PeerId) -> Option<Established<T>> {
        let peer = self.peers.remove(&id)?;
        self.by_addr.remove(&peer.addr);
        if self.by_nonce.get(&peer.remote_nonce) == Some(&id) {
            self.by_nonce.remove(&peer.remote_nonce);
        }
        let ip = canonical(peer.addr.ip());
        if let Some(n) = self.per_ip.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                self.per_ip.remove(&ip);
            }
        }
        Some(peer)
    }

    /// Marks `addr` as being dialled for a `kind` connection; `false` if it already was.
    pub fn begin_dial(&mut self, addr: SocketAddr, kind: ConnectionKind) -> bool {
        if self.dialing.contains_key(&addr) {
            return false;
        }
        self.dialing.insert(addr, kind);
        true
    }

    /// Dials in flight for `kind` connections.
    pub fn dials_of(&self, kind: ConnectionKind) -> usize {
        self.dialing.values().filter(|k| **k == kind).count()
    }

    /// Clears the dialling mark of `addr`.
    pub fn end_dial(&mut self, addr: SocketAddr) {
        self.dialing.remove(&addr);
    }

    /// Dials in flight.
    pub fn dials_in_flight(&self) -> usize {
        self.dialing.len()
    }

    /// Whether `addr` is connected or being dialled.
    pub fn is_connected_or_dialing(&self, addr: SocketAddr) -> bool {
        self.by_addr.contains_key(&addr) || self.dialing.contains_key(&addr)
    }

    /// Whether an outbound peer (connected or being dialled) is in `group`.
    pub fn has_outbound_in(&self, group: NetGroup) -> bool {
        self.peers
            .values()
            .any(|p| p.direction == Direction::Outbound && p.netgroup == group)
            || self.dialing.keys().any(|a| self.group_of(a.ip()) == group)
    }

    /// Established peers in `direction`.
    pub fn count(&self, direction: Direction) -> usize {
        self.peers
            .values()
            .filter(|p| p.direction == direction)
            .count()
    }

    /// Established outbound peers of `kind`.
    pub fn count_kind(&self, kind: ConnectionKind) -> usize {
        self.peers.values().filter(|p| p.kind == kind).count()
    }

    /// Established peers.
    pub fn len(&self) -> usize {
        self.peers.len()
    }

    /// Whether no peer is established.
    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }

    /// A peer by id.
    pub fn get(&self, id: PeerId) -> Option<&Established<T>> {
        self.peers.get(&id)
    }

    /// A peer by id, mutably.
    pub fn get_mut(&mut self, id: PeerId) -> Option<&mut Established<T>> {
        self.peers.get_mut(&id)
    }

    /// A peer by remote address.
    pub fn find_addr(&self, addr: SocketAddr) -> Option<&Established<T>> {
        self.by_addr.get(&addr).and_then(|id| self.peers.get(id))
    }

    /// Every established peer.
    pub fn iter(&self) -> impl Iterator<Item = &Established<T>> {
        self.peers.values()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn rules() -> AdmissionRules {
        AdmissionRules {
            max_inbound: 3,
            max_total: 5,
            max_per_ip: 2,
            max_pending_per_group: 2,
            ..Default::default()
        }
    }

    fn peer(id: u64, addr: &str, direction: Direction, nonce: u64) -> Established<()> {
        let addr: SocketAddr = addr.parse().unwrap();
        Established {
            id: PeerId(id),
            addr,
            direction,
            kind: if direction == Direction::Inbound {
                ConnectionKind::Inbound
            } else {
                ConnectionKind::FullRelay
            },
            trusted: false,
            remote_nonce: nonce,
            netgroup: netgroup(addr.ip()),
            connected_at: Instant::now(),
            last_novel_block: None,
            last_novel_tx: None,
            addr_relay: Default::default(),
            payload: (),
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    /// `begin_pending` with 100 total pending slots, now; the id of the dropped handshake.
    fn try_begin(
        r: &mut Registry<()>,
        addr: &str,
        banned: bool,
        rules: &AdmissionRules,
    ) -> Result<Option<PendingId>, Refusal> {
        r.begin_pending(
            ip(addr),
            banned,
            rules,
            100,
            Instant::now(),
            CancellationToken::new(),
        )
        .map(|a| a.dropped.map(|d| d.id))
    }

    #[test]
    fn bans_and_lists_are_checked_before_the_handshake() {
        let mut r = Registry::<()>::default();
        let mut rules = rules();
        assert_eq!(
            try_begin(&mut r, "1.2.3.4", true, &rules),
            Err(Refusal::Banned)
        );
        rules.deny = vec!["1.2.0.0/16".parse().unwrap()];
        assert_eq!(
            try_begin(&mut r, "1.2.3.4", false, &rules),
            Err(Refusal::Denied)
        );
        rules.deny.clear();
        rules.allow = vec!["5.0.0.0/8".parse().unwrap(), "2600::/16".parse().unwrap()];
        assert_eq!(
            try_begin(&mut r, "1.2.3.4", false, &rules),
            Err(Refusal::NotAllowed)
        );
        assert_eq!(try_begin(&mut r, "5.6.7.8", false, &rules), Ok(None));
        assert_eq!(try_begin(&mut r, "2600::1", false, &rules), Ok(None));
        assert_eq!(
            try_begin(&mut r, "::ffff:5.6.7.9", false, &rules),
            Ok(None),
            "mapped IPv4 is IPv4"
        );
        assert_eq!(
            try_begin(&mut r, "2700::1", false, &rules),
            Err(Refusal::NotAllowed)
        );
    }

    fn candidate(id: u64, group: &str, started_secs: u64) -> PendingCandidate {
        PendingCandidate {
            id: PendingId(id),
            group: group.parse().unwrap(),
            started_at: epoch() + Duration::from_secs(started_secs),
        }
    }

    fn epoch() -> Instant {
        static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        *EPOCH.get_or_init(Instant::now)
    }

    #[test]
    fn the_longest_pending_of_the_most_pending_group_is_dropped() {
        assert_eq!(select_pending_to_drop(&[], None), None);
        let a = "1.2.3.0/24";
        let b = "5.6.7.0/24";
        let c = "2600:1:2:3::/64";
        // b holds the most; its longest-pending (started at 3) goes, not the oldest overall.
        let entries = [
            candidate(1, a, 1),
            candidate(2, b, 4),
            candidate(3, b, 3),
            candidate(4, c, 2),
            candidate(5, b, 5),
            candidate(6, a, 6),
        ];
        assert_eq!(select_pending_to_drop(&entries, None), Some(PendingId(3)));
        // Restricted to one group: that group's longest-pending.
        assert_eq!(
            select_pending_to_drop(&entries, Some(a.parse().unwrap())),
            Some(PendingId(1))
        );
        assert_eq!(
            select_pending_to_drop(&entries, Some("9.9.9.0/24".parse().unwrap())),
            None
        );
        // A tie in size: the group whose longest-pending started first; equal times: lower id.
        let tied = [
            candidate(1, a, 5),
            candidate(2, b, 2),
            candidate(3, a, 3),
            candidate(4, b, 9),
        ];
        assert_eq!(select_pending_to_drop(&tied, None), Some(PendingId(2)));
        let same_time = [candidate(7, a, 1), candidate(4, b, 1), candidate(9, a, 1)];
        assert_eq!(select_pending_to_drop(&same_time, None), Some(PendingId(7)));
        let same_time = [candidate(7, a, 1), candidate(4, b, 1)];
        assert_eq!(select_pending_to_drop(&same_time, None), Some(PendingId(4)));
    }

    #[test]
    fn a_full_24_or_64_drops_its_own_longest_pending_instead_of_refusing() {
        let mut r = Registry::<()>::default();
        let rules = rules(); // 2 per group
        let t = |s: u64| epoch() + Duration::from_secs(s);
        let begin = |r: &mut Registry<()>, addr: &str, at: u64| {
            r.begin_pending(
                ip(addr),
                false,
                &rules,
                100,
                t(at),
                CancellationToken::new(),
            )
            .unwrap()
        };
        let first = begin(&mut r, "1.2.3.4", 0);
        let second = begin(&mut r, "1.2.3.5", 1);
        assert!(first.dropped.is_none() && second.dropped.is_none());
        let other = begin(&mut r, "1.2.4.6", 2);
        assert!(other.dropped.is_none(), "another /24");
        let third = begin(&mut r, "1.2.3.6", 3);
        let dropped = third.dropped.expect("the /24 is full: one is dropped");
        assert_eq!(dropped.id, first.id, "its longest-pending");
        assert_eq!(dropped.ip, ip("1.2.3.4"));
        assert_eq!(r.pending_in_group(ip("1.2.3.1")), 2);
        assert_eq!(r.pending_count(), 3);
        // IPv6: per /64.
        let v6 = begin(&mut r, "2600:1:2:3::1", 4);
        begin(&mut r, "2600:1:2:3::2", 5);
        assert_eq!(
            begin(&mut r, "2600:1:2:3:ffff::9", 6).dropped.map(|d| d.id),
            Some(v6.id)
        );
        assert!(
            begin(&mut r, "2600:1:2:4::1", 7).dropped.is_none(),
            "another /64"
        );
        assert_eq!(r.pending_in_group(ip("2600:1:2:3::7")), 2);
    }

    #[test]
    fn full_total_drops_from_the_group_holding_the_most() {
        let mut r = Registry::<()>::default();
        let rules = AdmissionRules {
            max_pending_per_group: 3,
            ..rules()
        };
        let t = |s: u64| epoch() + Duration::from_secs(s);
        let begin = |r: &mut Registry<()>, addr: &str, at: u64| {
            r.begin_pending(ip(addr), false, &rules, 4, t(at), CancellationToken::new())
                .unwrap()
        };
        let lone = begin(&mut r, "7.7.7.7", 0); // the oldest overall, alone in its /24
        let a1 = begin(&mut r, "1.2.3.1", 1);
        let a2 = begin(&mut r, "1.2.3.2", 2);
        begin(&mut r, "1.2.3.3", 3);
        assert_eq!(r.pending_count(), 4);
        // Total full: the newcomer from a fresh /24 gets in; the busiest /24 loses its oldest.
        let newcomer = begin(&mut r, "5.5.5.5", 4);
        assert_eq!(newcomer.dropped.as_ref().map(|d| d.id), Some(a1.id));
        assert_eq!(r.pending_count(), 4, "bounded by the total");
        // Its token is handed back for the caller to cancel.
        let dropped = newcomer.dropped.unwrap();
        assert!(!dropped.cancel.is_cancelled());
        // The flooder's own next connection displaces itself, never the lone peer.
        assert_eq!(
            begin(&mut r, "1.2.3.9", 5).dropped.map(|d| d.id),
            Some(a2.id)
        );
        assert!(r.end_pending(lone.id), "the lone peer was never dropped");
    }

    #[test]
    fn a_pending_slot_is_released_exactly_once() {
        let mut r = Registry::<()>::default();
        let rules = rules(); // 2 per group
        let start = |r: &mut Registry<()>, addr: &str| {
            r.begin_pending(
                ip(addr),
                false,
                &rules,
                100,
                Instant::now(),
                CancellationToken::new(),
            )
            .unwrap()
        };
        let a = start(&mut r, "1.2.3.1");
        let b = start(&mut r, "1.2.3.2");
        let c = start(&mut r, "1.2.3.3");
        assert_eq!(c.dropped.map(|d| d.id), Some(a.id));
        // The dropped connection's task ends later and releases its slot: a no-op.
        assert!(!r.end_pending(a.id), "already released by the drop");
        assert_eq!(r.pending_in_group(ip("1.2.3.0")), 2);
        assert!(r.end_pending(b.id));
        assert!(!r.end_pending(b.id), "a second release is a no-op");
        assert_eq!(r.pending_in_group(ip("1.2.3.0")), 1);
        assert!(r.end_pending(c.id));
        assert_eq!(r.pending_count(), 0);
        assert_eq!(r.pending_in_group(ip("1.2.3.0")), 0);
    }

    #[test]
    fn refusals_still_refuse_when_a_drop_would_make_room() {
        let mut r = Registry::<()>::default();
        let mut rules = rules();
        rules.deny = vec!["1.2.3.9/32".parse().unwrap()];
        try_begin(&mut r, "1.2.3.1", false, &rules).unwrap();
        try_begin(&mut r, "1.2.3.2", false, &rules).unwrap();
        assert_eq!(
            try_begin(&mut r, "1.2.3.3", true, &rules),
            Err(Refusal::Banned)
        );
        assert_eq!(
            try_begin(&mut r, "1.2.3.9", false, &rules),
            Err(Refusal::Denied)
        );
        assert_eq!(r.pending_in_group(ip("1.2.3.0")), 2, "nothing dropped");
        // Limits of 0 leave nothing to drop: refused.
        let mut r = Registry::<()>::default();
        let zero = AdmissionRules {
            max_pending_per_group: 0,
            ..rules.clone()
        };
        assert!(matches!(
            try_begin(&mut r, "1.2.3.1", false, &zero),
            Err(Refusal::TooManyPending { .. })
        ));
        assert!(matches!(
            r.begin_pending(
                ip("1.2.3.1"),
                false,
                &rules,
                0,
                Instant::now(),
                CancellationToken::new()
            ),
            Err(Refusal::TooManyPending { .. })
        ));
    }

    #[test]
    fn trusted_peers_bypass_limits_and_bans() {
        let mut r = Registry::<()>::default();
        let mut rules = rules();
        rules.trusted = vec!["9.9.9.0/24".parse().unwrap()];
        for _ in 0..10 {
            assert_eq!(try_begin(&mut r, "9.9.9.9", true, &rules), Ok(None));
        }
        // Trusted handshakes are not counted and never dropped: with only those pending, a
        // full total refuses an untrusted newcomer rather than drop one.
        assert_eq!(r.pending_count(), 10);
        assert!(matches!(
            r.begin_pending(
                ip("9.9.6.1"),
                false,
                &rules,
                0,
                Instant::now(),
                CancellationToken::new()
            ),
            Err(Refusal::TooManyPending { .. })
        ));
        assert_eq!(try_begin(&mut r, "9.9.8.1", false, &rules), Ok(None));
        assert!(matches!(
            r.begin_pending(
                ip("9.9.7.1"),
                false,
                &rules,
                1,
                Instant::now(),
                CancellationToken::new()
            )
            .map(|a| a.dropped.map(|d| d.ip)),
            Ok(Some(dropped)) if dropped == ip("9.9.8.1")
        ));
        assert_eq!(r.pending_count(), 11);
        for n in 0..10 {
            let mut p = peer(n, &format!("9.9.9.9:{}", 1000 + n), Direction::Inbound, 0);
            p.trusted = true;
            assert!(r.admit(p, &rules, |_| None).is_ok());
        }
        assert_eq!(r.count(Direction::Inbound), 10);
    }

    #[test]
    fn per_ip_limit_before_and_after_the_handshake() {
        let mut r = Registry::<()>::default();
        let rules = rules();
        assert!(r
            .admit(peer(1, "1.1.1.1:1", Direction::Inbound, 1), &rules, |_| {
                None
            })
            .is_ok());
        assert!(r
            .admit(peer(2, "1.1.1.1:2", Direction::Inbound, 2), &rules, |_| {
                None
            })
            .is_ok());
        assert_eq!(
            try_begin(&mut r, "1.1.1.1", false, &rules),
            Err(Refusal::TooManyFromIp { ip: ip("1.1.1.1") })
        );
        assert_eq!(
            r.admit(peer(3, "1.1.1.1:3", Direction::Inbound, 3), &rules, |_| {
                None
            })
            .err(),
            Some(Refusal::TooManyFromIp { ip: ip("1.1.1.1") })
        );
        r.remove(PeerId(1));
        assert!(try_begin(&mut r, "1.1.1.1", false, &rules).is_ok());
    }

    #[test]
    fn duplicates_by_address_and_by_nonce() {
        let mut r = Registry::<()>::default();
        let rules = rules();
        assert!(r
            .admit(
                peer(1, "1.1.1.1:8333", Direction::Outbound, 77),
                &rules,
                |_| None
            )
            .is_ok());
        assert_eq!(
            r.admit(
                peer(2, "1.1.1.1:8333", Direction::Outbound, 78),
                &rules,
                |_| None
            )
            .err(),
            Some(Refusal::Duplicate {
                existing: PeerId(1)
            })
        );
        assert_eq!(
            r.admit(
                peer(3, "[2600::1]:8333", Direction::Inbound, 77),
                &rules,
                |_| None
            )
            .err(),
            Some(Refusal::Duplicate {
                existing: PeerId(1)
            }),
            "same node reached over another address"
        );
        assert!(r
            .admit(peer(4, "2.2.2.2:1", Direction::Inbound, 0), &rules, |_| {
                None
            })
            .is_ok());
        assert!(
            r.admit(peer(5, "2.2.2.3:1", Direction::Inbound, 0), &rules, |_| {
                None
            })
            .is_ok(),
            "nonce 0 is not an identity"
        );
    }

    #[test]
    fn inbound_full_evicts_or_refuses_and_total_is_capped() {
        let mut r = Registry::<()>::default();
        let rules = rules();
        for n in 1..=3 {
            assert!(r
                .admit(
                    peer(n, &format!("3.{n}.0.1:1"), Direction::Inbound, 0),
                    &rules,
                    |_| None
                )
                .is_ok());
        }
        // Full: no victim means refusal; a victim makes room.
        assert_eq!(
            r.admit(peer(10, "4.0.0.1:1", Direction::Inbound, 0), &rules, |_| {
                None
            })
            .err(),
            Some(Refusal::InboundFull)
        );
        let admitted = r.admit(
            peer(11, "4.0.0.2:1", Direction::Inbound, 0),
            &rules,
            |reg| {
                assert_eq!(reg.count(Direction::Inbound), 3);
                Some(PeerId(2))
            },
        );
        assert_eq!(admitted.map(|e| e.map(|p| p.id)), Ok(Some(PeerId(2))));
        assert!(r.get(PeerId(2)).is_none());
        assert_eq!(r.count(Direction::Inbound), 3);
        // Outbound peers count towards the total; inbound is refused once it is reached.
        assert!(r
            .admit(
                peer(20, "5.0.0.1:1", Direction::Outbound, 0),
                &rules,
                |_| None
            )
            .is_ok());
        assert!(r
            .admit(
                peer(21, "5.1.0.1:1", Direction::Outbound, 0),
                &rules,
                |_| None
            )
            .is_ok());
        assert_eq!(r.len(), 5);
        r.remove(PeerId(1));
        assert!(r
            .admit(peer(12, "4.0.0.3:1", Direction::Inbound, 0), &rules, |_| {
                None
            })
            .is_ok());
        r.remove(PeerId(3));
        assert!(r
            .admit(
                peer(22, "5.2.0.1:1", Direction::Outbound, 0),
                &rules,
                |_| None
            )
            .is_ok());
        assert_eq!(
            r.admit(peer(13, "4.0.0.4:1", Direction::Inbound, 0), &rules, |_| {
                None
            })
            .err(),
            Some(Refusal::TooManyPeers)
        );
    }

    #[test]
    fn a_refused_newcomer_evicts_nobody() {
        // Inbound full and total full even after one eviction: the newcomer is refused
        // and the would-be victim stays registered (it is never removed without being
        // disconnected).
        let mut r = Registry::<()>::default();
        let rules = rules();
        for n in 1..=3 {
            let p = peer(n, &format!("3.{n}.0.1:1"), Direction::Inbound, 0);
            assert!(r.admit(p, &rules, |_| None).is_ok());
        }
        for n in 4..=6 {
            let p = peer(n, &format!("5.{n}.0.1:1"), Direction::Outbound, 0);
            assert!(r.admit(p, &rules, |_| None).is_ok());
        }
        assert_eq!(r.len(), 6);
        let refused = r.admit(peer(10, "4.0.0.1:1", Direction::Inbound, 0), &rules, |_| {
            panic!("no victim is chosen when the newcomer cannot be admitted")
        });
        assert_eq!(refused.err(), Some(Refusal::TooManyPeers));
        assert!(r.get(PeerId(1)).is_some() && r.get(PeerId(2)).is_some());
        assert_eq!(r.count(Direction::Inbound), 3);
        assert_eq!(r.len(), 6);
        // One outbound gone: evicting one inbound now makes room, so eviction happens.
        r.remove(PeerId(6));
        r.remove(PeerId(5));
        let admitted = r.admit(peer(11, "4.0.0.2:1", Direction::Inbound, 0), &rules, |_| {
            Some(PeerId(2))
        });
        assert_eq!(admitted.map(|e| e.map(|p| p.id)), Ok(Some(PeerId(2))));
        assert_eq!(r.len(), 4);
    }

    #[test]
    fn dialing_and_outbound_netgroups() {
        let mut r = Registry::<()>::default();
        let a: SocketAddr = "6.6.1.1:8333".parse().unwrap();
        assert!(r.begin_dial(a, ConnectionKind::FullRelay));
        assert!(!r.begin_dial(a, ConnectionKind::Manual), "already dialing");
        assert_eq!(r.dials_of(ConnectionKind::FullRelay), 1);
        assert!(r.is_connected_or_dialing(a));
        assert!(
            r.has_outbound_in(netgroup(ip("6.6.200.1"))),
            "same /16 as a dial in flight"
        );
        r.end_dial(a);
        assert!(!r.has_outbound_in(netgroup(ip("6.6.200.1"))));
        assert!(r
            .admit(
                peer(1, "6.6.1.1:8333", Direction::Outbound, 0),
                &AdmissionRules::default(),
                |_| None
            )
            .is_ok());
        assert!(r.has_outbound_in(netgroup(ip("6.6.9.9"))));
        assert!(!r.has_outbound_in(netgroup(ip("6.7.9.9"))));
    }
}
