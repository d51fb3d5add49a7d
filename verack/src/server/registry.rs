//! Who is connected, who is pending, and whether another connection may join: the admission
//! checkpoints as plain data and functions (no I/O), so every rule is unit-tested.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;
use tokio::time::Instant;

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
    /// Inbound handshakes in progress per /24 (IPv4) or /64 (IPv6). Default 8.
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
    /// Too many handshakes in progress from this /24 or /64.
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
    /// The caller's data.
    pub payload: T,
}

/// Connections known to the server.
#[derive(Debug)]
pub struct Registry<T> {
    peers: HashMap<PeerId, Established<T>>,
    by_addr: HashMap<SocketAddr, PeerId>,
    by_nonce: HashMap<u64, PeerId>,
    per_ip: HashMap<IpAddr, usize>,
    pending: HashMap<IpNet, usize>,
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

    /// Checkpoint before an inbound handshake: bans, allow/deny, pending per /24 or /64, and
    /// established per IP. On success the pending slot is taken; release it with
    /// [`end_pending`](Self::end_pending).
    ///
    /// # Errors
    /// The [`Refusal`] of the first rule that fails; trusted addresses only obey allow/deny.
    pub fn begin_pending(
        &mut self,
        ip: IpAddr,
        banned: bool,
        rules: &AdmissionRules,
    ) -> Result<(), Refusal> {
        let ip = canonical(ip);
        rules.permits(ip)?;
        let group = pending_group(ip);
        if !rules.is_trusted(ip) {
            if banned {
                return Err(Refusal::Banned);
            }
            if self.pending.get(&group).copied().unwrap_or(0) >= rules.max_pending_per_group {
                return Err(Refusal::TooManyPending { group });
            }
            if self.per_ip.get(&ip).copied().unwrap_or(0) >= rules.max_per_ip {
                return Err(Refusal::TooManyFromIp { ip });
            }
        }
        *self.pending.entry(group).or_default() += 1;
        Ok(())
    }

    /// Releases the pending slot taken by [`begin_pending`](Self::begin_pending).
    pub fn end_pending(&mut self, ip: IpAddr) {
        let group = pending_group(ip);
        if let Some(n) = self.pending.get_mut(&group) {
            *n -= 1;
            if *n == 0 {
                self.pending.remove(&group);
            }
        }
    }

    /// Inbound handshakes in progress from the /24 or /64 of `ip`.
    pub fn pending_in_group(&self, ip: IpAddr) -> usize {
        self.pending.get(&pending_group(ip)).copied().unwrap_or(0)
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
                let total_after = self.peers.len() - usize::from(needs_eviction);
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
            payload: (),
        }
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn bans_and_lists_are_checked_before_the_handshake() {
        let mut r = Registry::<()>::default();
        let mut rules = rules();
        assert_eq!(
            r.begin_pending(ip("1.2.3.4"), true, &rules),
            Err(Refusal::Banned)
        );
        rules.deny = vec!["1.2.0.0/16".parse().unwrap()];
        assert_eq!(
            r.begin_pending(ip("1.2.3.4"), false, &rules),
            Err(Refusal::Denied)
        );
        rules.deny.clear();
        rules.allow = vec!["5.0.0.0/8".parse().unwrap(), "2600::/16".parse().unwrap()];
        assert_eq!(
            r.begin_pending(ip("1.2.3.4"), false, &rules),
            Err(Refusal::NotAllowed)
        );
        assert_eq!(r.begin_pending(ip("5.6.7.8"), false, &rules), Ok(()));
        assert_eq!(r.begin_pending(ip("2600::1"), false, &rules), Ok(()));
        assert_eq!(
            r.begin_pending(ip("::ffff:5.6.7.9"), false, &rules),
            Ok(()),
            "mapped IPv4 is IPv4"
        );
        assert_eq!(
            r.begin_pending(ip("2700::1"), false, &rules),
            Err(Refusal::NotAllowed)
        );
    }

    #[test]
    fn pending_handshakes_are_limited_per_24_and_64() {
        let mut r = Registry::<()>::default();
        let rules = rules();
        assert!(r.begin_pending(ip("1.2.3.4"), false, &rules).is_ok());
        assert!(r.begin_pending(ip("1.2.3.5"), false, &rules).is_ok());
        assert!(matches!(
            r.begin_pending(ip("1.2.3.6"), false, &rules),
            Err(Refusal::TooManyPending { .. })
        ));
        assert!(
            r.begin_pending(ip("1.2.4.6"), false, &rules).is_ok(),
            "another /24"
        );
        r.end_pending(ip("1.2.3.4"));
        assert!(
            r.begin_pending(ip("1.2.3.6"), false, &rules).is_ok(),
            "slot released"
        );
        assert!(r.begin_pending(ip("2600:1:2:3::1"), false, &rules).is_ok());
        assert!(r.begin_pending(ip("2600:1:2:3::2"), false, &rules).is_ok());
        assert!(matches!(
            r.begin_pending(ip("2600:1:2:3:ffff::9"), false, &rules),
            Err(Refusal::TooManyPending { .. })
        ));
        assert!(
            r.begin_pending(ip("2600:1:2:4::1"), false, &rules).is_ok(),
            "another /64"
        );
    }

    #[test]
    fn trusted_peers_bypass_limits_and_bans() {
        let mut r = Registry::<()>::default();
        let mut rules = rules();
        rules.trusted = vec!["9.9.9.0/24".parse().unwrap()];
        for _ in 0..10 {
            assert!(r.begin_pending(ip("9.9.9.9"), true, &rules).is_ok());
        }
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
            r.begin_pending(ip("1.1.1.1"), false, &rules),
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
        assert!(r.begin_pending(ip("1.1.1.1"), false, &rules).is_ok());
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
