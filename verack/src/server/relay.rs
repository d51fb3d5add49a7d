//! The server's own message handling, wrapped around the user's handler: address relay
//! (`addr`, `addrv2`, `getaddr`) as Bitcoin Core's net_processing does it. Every message is
//! then passed on to the user's handler unchanged.

use std::net::SocketAddr;
use std::sync::Arc;

use bitcoin::p2p::address::{AddrV2, AddrV2Message};
use bitcoin::p2p::message::NetworkMessage;
use tokio::time::Instant;

use crate::netgroup::is_routable;
use crate::peer::{MessageHandler, PeerHandle};

use super::addr_relay::{
    addr_key, relay_targets, TokenBucket, FRESH_ADDR_AGE, MAX_ADDRS_TO_FORWARD, RELAY_ROTATION,
};

/// Addresses remembered as forwarded; beyond this the oldest half is dropped.
const MAX_RELAYED_REMEMBERED: usize = 10_000;
use super::{unix_now, ConnectionKind, Inner, PeerHandlers};

/// Wraps the user's handler for one admitted peer.
pub(crate) struct ServerHandler<H: PeerHandlers> {
    pub(crate) user: H::Handler,
    pub(crate) inner: Arc<Inner<H>>,
    pub(crate) kind: ConnectionKind,
    pub(crate) trusted: bool,
    pub(crate) bucket: TokenBucket,
    pub(crate) answered_getaddr: bool,
}

impl<H: PeerHandlers> ServerHandler<H> {
    /// Sets up relay state. Outbound peers that relay addresses (full-relay and manual) are
    /// asked for addresses at once, as Core's `SetupAddressRelay` + `getaddr` on `version`
    /// from an outbound peer (block-relay-only peers relay no addresses; addr-fetch and feeler
    /// connections are served elsewhere).
    pub(crate) fn new(
        inner: Arc<Inner<H>>,
        peer: &PeerHandle,
        kind: ConnectionKind,
        trusted: bool,
    ) -> Self {
        let user = inner.handlers.handler(peer, kind);
        let mut bucket = TokenBucket::new(seconds(&inner));
        let asks = matches!(kind, ConnectionKind::FullRelay | ConnectionKind::Manual);
        if asks && peer.send(NetworkMessage::GetAddr).is_ok() {
            bucket.sent_getaddr();
        }
        ServerHandler {
            user,
            inner,
            kind,
            trusted,
            bucket,
            answered_getaddr: false,
        }
    }

    fn relays_addresses(&self) -> bool {
        // Core: no address relay with block-relay-only peers.
        self.kind != ConnectionKind::BlockRelayOnly
    }

    fn on_addrs(&mut self, peer: &PeerHandle, addrs: Vec<AddrV2Message>) {
        if !self.relays_addresses() {
            return;
        }
        let total = addrs.len();
        let allowed = self.bucket.take(total, seconds(&self.inner), self.trusted);
        if allowed < total {
            tracing::debug!(peer = peer.id().0, total, allowed, "address rate limit");
        }
        let processed = &addrs[..allowed];
        self.inner.source.add(processed, peer.remote());
        if total > MAX_ADDRS_TO_FORWARD {
            return; // a getaddr answer or a flood: stored, not forwarded (Core)
        }
        let now = unix_now();
        for addr in processed
            .iter()
            .filter(|a| is_fresh(a, now) && is_relayable(a, self.inner.config.loopback_netgroups))
        {
            let key = addr_key(&self.inner.netgroup_key, &(&addr.addr, addr.port));
            if !self.first_relay(key) {
                continue;
            }
            let candidates: Vec<_> = self
                .inner
                .registry()
                .iter()
                .filter(|e| {
                    e.id != peer.id()
                        && matches!(
                            e.kind,
                            ConnectionKind::FullRelay
                                | ConnectionKind::Inbound
                                | ConnectionKind::Manual
                        )
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
        // Core answers getaddr once per connection, and only from inbound peers (an outbound
        // peer asking could be fingerprinting us).
        if self.kind != ConnectionKind::Inbound || self.answered_getaddr {
            return;
        }
        self.answered_getaddr = true;
        let addrs = self.inner.source.get_addr();
        let _ = peer.push_addresses(&addrs);
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
