//! The server's own message handling, wrapped around the user's handler: address relay
//! (`addr`, `addrv2`, `getaddr`) as Bitcoin Core's net_processing does it. Every message is
//! then passed on to the user's handler unchanged.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bitcoin::p2p::address::{AddrV2, AddrV2Message};
use bitcoin::p2p::message::NetworkMessage;
use rand::seq::SliceRandom;
use rand::Rng;
use tokio::time::Instant;

use crate::netgroup::{is_routable, netgroup, NetGroup};
use crate::peer::{MessageHandler, PeerHandle};

use super::addr_relay::{
    addr_key, addr_relay_allowed, clamp_addr_time, may_forward, relay_targets, TokenBucket,
    FRESH_ADDR_AGE, GETADDR_ANSWER_SIZE, RELAY_ROTATION,
};

use super::{unix_now, ConnectionKind, Inner, PeerHandlers};

/// Addresses remembered as forwarded; beyond this the oldest half is dropped.
const MAX_RELAYED_REMEMBERED: usize = 10_000;

/// What a cached `getaddr` answer is keyed by (Core's `CNode::m_network_key`): the
/// requestor's network class and the local socket it reached us on.
pub(crate) type AddrCacheKey = (NetClass, Option<SocketAddr>);

/// Core's `GetNetClass` for a peer: local and non-routable addresses form one class, IPv6
/// carrying IPv4 (6to4, Teredo) counts as IPv4, and a Tor, I2P or CJDNS peer (a
/// [stand-in](crate::address::stand_in)) is its own network, by BIP155 id, so its `getaddr`
/// answer is cached apart from IPv6's (Core keys the cache by `ConnectedThroughNetwork`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum NetClass {
    Unroutable,
    Ipv4,
    Ipv6,
    Other(u8),
}

fn net_class(ip: IpAddr) -> NetClass {
    if let Some((id, _)) = crate::address::stand_in::stand_in_parts(ip) {
        return NetClass::Other(id);
    }
    match netgroup(ip) {
        NetGroup::Local | NetGroup::Unroutable => NetClass::Unroutable,
        NetGroup::Ipv4(_) => NetClass::Ipv4,
        NetGroup::Ipv6(_) => NetClass::Ipv6,
    }
}

/// Wraps the user's handler for one admitted peer.
pub(crate) struct ServerHandler<H: PeerHandlers> {
    pub(crate) user: H::Handler,
    pub(crate) inner: Arc<Inner<H>>,
    pub(crate) kind: ConnectionKind,
    pub(crate) trusted: bool,
    pub(crate) bucket: TokenBucket,
    /// Our `getaddr` to this peer is unanswered (Core's `m_getaddr_sent`).
    pub(crate) getaddr_sent: bool,
    pub(crate) answered_getaddr: bool,
}

impl<H: PeerHandlers> ServerHandler<H> {
    /// Sets up relay state. Outbound peers that relay addresses (full-relay and manual) are
    /// asked for addresses at once, as Core's `SetupAddressRelay` + `getaddr` on `version`
    /// from an outbound peer (block-relay-only peers relay no addresses; addr-fetch and feeler
    /// connections are served elsewhere). Whether relay is enabled is kept in the registry
    /// entry (set at admission, [`AddrRelayState::at_connect`](super::addr_relay::AddrRelayState::at_connect)).
    pub(crate) fn new(
        inner: Arc<Inner<H>>,
        peer: &PeerHandle,
        kind: ConnectionKind,
        trusted: bool,
    ) -> Self {
        let user = inner.handlers.handler(peer, kind);
        let mut bucket = TokenBucket::new(seconds(&inner));
        let asks = matches!(kind, ConnectionKind::FullRelay | ConnectionKind::Manual);
        let getaddr_sent = asks && peer.send(NetworkMessage::GetAddr).is_ok();
        if getaddr_sent {
            bucket.sent_getaddr();
        }
        ServerHandler {
            user,
            inner,
            kind,
            trusted,
            bucket,
            getaddr_sent,
            answered_getaddr: false,
        }
    }

    /// Core's `SetupAddressRelay` on an address message: enables relay with the peer (in its
    /// registry entry) unless its kind never relays addresses; `false` means ignore the
    /// message.
    fn setup_addr_relay(&self, peer: &PeerHandle) -> bool {
        if !addr_relay_allowed(self.kind) {
            return false;
        }
        if let Some(e) = self.inner.registry().get_mut(peer.id()) {
            e.addr_relay.setup(self.kind);
        }
        true
    }

    /// Core's `ProcessAddrs`: shuffle, spend a token per address (the rest are rate limited),
    /// skip banned addresses, forward fresh routable ones from small unsolicited messages,
    /// store them all. Unlike Core, addresses without `NODE_NETWORK`/`NODE_NETWORK_LIMITED`
    /// are kept too (verack nodes, headers only, advertise neither).
    fn on_addrs(&mut self, peer: &PeerHandle, mut addrs: Vec<AddrV2Message>) {
        if !self.setup_addr_relay(peer) {
            return;
        }
        let total = addrs.len();
        // As Core: a peer cannot choose which of its addresses get through the rate limit.
        addrs.shuffle(&mut rand::thread_rng());
        let allowed = self.bucket.take(total, seconds(&self.inner), self.trusted);
        if allowed < total {
            tracing::debug!(peer = peer.id().0, total, allowed, "address rate limit");
        }
        addrs.truncate(allowed);
        let now = unix_now();
        {
            let bans = self.inner.bans.lock().expect("ban lock");
            if !bans.is_empty() {
                addrs.retain(|a| {
                    a.socket_addr()
                        .map_or(true, |s| bans.is_banned(s.ip(), now).is_none())
                });
            }
        }
        for a in &mut addrs {
            a.time = clamp_addr_time(a.time, now);
        }
        if let Some(e) = self.inner.registry().get_mut(peer.id()) {
            e.addr_relay
                .count(addrs.len() as u64, (total - allowed) as u64);
        }
        let forward = may_forward(total, self.getaddr_sent);
        if total < GETADDR_ANSWER_SIZE {
            self.getaddr_sent = false;
        }
        self.inner.source.add(&addrs, peer.remote());
        if !forward {
            return; // a getaddr answer or a flood: stored, not forwarded (Core)
        }
        for addr in addrs
            .iter()
            .filter(|a| is_fresh(a, now) && is_relayable(a, self.inner.config.loopback_netgroups))
        {
            let key = addr_key(&self.inner.netgroup_key, &(&addr.addr, addr.port));
            if !self.first_relay(key) {
                continue;
            }
            // Core's IsAddrCompatible: addresses `addr` cannot carry go to `addrv2` peers only.
            let v1_ok = addr.socket_addr().is_ok();
            let candidates: Vec<_> = self
                .inner
                .registry()
                .iter()
                .filter(|e| {
                    e.id != peer.id()
                        && e.addr_relay.enabled
                        && (v1_ok || e.payload.remote_features().addr_v2)
                })
                .map(|e| e.id)
                .collect();
            for target in relay_targets(&self.inner.netgroup_key, key, now, &candidates) {
                if let Some(handle) = self.inner.registry().get(target).map(|e| e.payload.clone()) {
                    let _ = handle.push_addresses(std::slice::from_ref(addr));
                }
            }
        }
    }

    /// Whether `key` was not forwarded in the current rotation period; records it. Core avoids
    /// re-sending an address through per-peer known-address filters; since our targets are
    /// fixed for the period, remembering what we forwarded has the same effect: an address
    /// received again (it echoes back through the network while fresh) is not forwarded again.
    fn first_relay(&self, key: u64) -> bool {
        let now = Instant::now();
        let mut relayed = self.inner.relayed.lock().expect("relay memory lock");
        if relayed
            .get(&key)
            .is_some_and(|at| now.saturating_duration_since(*at) < RELAY_ROTATION)
        {
            return false;
        }
        if relayed.len() >= MAX_RELAYED_REMEMBERED {
            let mut times: Vec<Instant> = relayed.values().copied().collect();
            times.sort_unstable();
            let cutoff = times[times.len() / 2];
            relayed.retain(|_, at| *at > cutoff);
        }
        relayed.insert(key, now);
        true
    }

    fn on_getaddr(&mut self, peer: &PeerHandle) {
        // Core answers getaddr only from inbound peers (an outbound peer asking could be
        // fingerprinting us), and ignores it before setting up address relay.
        if self.kind != ConnectionKind::Inbound {
            return;
        }
        self.setup_addr_relay(peer);
        // Once per connection.
        if self.answered_getaddr {
            return;
        }
        self.answered_getaddr = true;
        let addrs = if self.trusted {
            // Core's `Addr` permission: a fresh answer (`GetAddressesUnsafe`).
            self.addresses_to_share().into()
        } else {
            let key = (net_class(peer.remote().ip()), peer.stats().local);
            let config = &self.inner.config;
            // Core: 21 h + randrange(6 h).
            let jitter = match config.getaddr_cache_jitter.as_secs() {
                0 => 0,
                max => rand::thread_rng().gen_range(0..max),
            };
            let lifetime = config.getaddr_cache_lifetime + Duration::from_secs(jitter);
            let now = seconds(&self.inner) as u64;
            self.inner
                .addr_responses
                .lock()
                .expect("addr cache lock")
                .get(&key, now, lifetime, || self.addresses_to_share())
        };
        let _ = peer.push_addresses(&addrs);
    }

    /// The source's `getaddr` answer without banned addresses (Core's `GetAddressesUnsafe`).
    fn addresses_to_share(&self) -> Vec<AddrV2Message> {
        let mut addrs = self.inner.source.get_addr();
        let bans = self.inner.bans.lock().expect("ban lock");
        if !bans.is_empty() {
            let now = unix_now();
            addrs.retain(|a| {
                a.socket_addr()
                    .map_or(true, |s| bans.is_banned(s.ip(), now).is_none())
            });
        }
        addrs
    }
}

fn seconds<H>(inner: &Inner<H>) -> f64 {
    Instant::now()
        .saturating_duration_since(inner.epoch)
        .as_secs_f64()
}

fn is_fresh(addr: &AddrV2Message, now: u64) -> bool {
    let time = u64::from(addr.time);
    time + FRESH_ADDR_AGE.as_secs() > now && time <= now + FRESH_ADDR_AGE.as_secs()
}

fn is_relayable(addr: &AddrV2Message, allow_loopback: bool) -> bool {
    match addr.socket_addr() {
        Ok(sock) => is_routable(sock.ip()) || (allow_loopback && sock.ip().is_loopback()),
        // Tor, I2P, CJDNS: relayed (they are routable on their networks).
        Err(_) => !matches!(addr.addr, AddrV2::Unknown(..)),
    }
}

/// `addr` entries as `addrv2` entries.
pub(crate) fn to_v2(list: Vec<(u32, bitcoin::p2p::address::Address)>) -> Vec<AddrV2Message> {
    list.into_iter()
        .filter_map(|(time, a)| {
            let sock: SocketAddr = a.socket_addr().ok()?;
            Some(AddrV2Message {
                time,
                services: a.services,
                addr: super::addr_v2(sock.ip()),
                port: sock.port(),
            })
        })
        .collect()
}

impl<H: PeerHandlers> MessageHandler for ServerHandler<H> {
    async fn on_message(&mut self, peer: &PeerHandle, message: NetworkMessage) {
        match &message {
            NetworkMessage::Addr(list) => self.on_addrs(peer, to_v2(list.clone())),
            NetworkMessage::AddrV2(list) => self.on_addrs(peer, list.clone()),
            NetworkMessage::GetAddr => self.on_getaddr(peer),
            _ => {}
        }
        self.user.on_message(peer, message).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn onion_peers_have_their_own_getaddr_cache_class() {
        let onion: crate::address::PeerAddr =
            "pg6mmjiyjmcrsslvykfwnntlaru7p5svn6y2ymmju6nubxndf4pscryd.onion:8333"
                .parse()
                .unwrap();
        let class = net_class(onion.stand_in().ip());
        assert!(matches!(class, NetClass::Other(_)), "{class:?}");
        assert_ne!(class, NetClass::Ipv6);
        assert_eq!(net_class("2a01:4f8::1".parse().unwrap()), NetClass::Ipv6);
        assert_eq!(net_class("8.8.8.8".parse().unwrap()), NetClass::Ipv4);
        assert_eq!(net_class("10.0.0.1".parse().unwrap()), NetClass::Unroutable);
    }
}
