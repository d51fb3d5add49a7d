//! One connection's life in the server: handshake, checkpoint 2 (admission, eviction), run,
//! then cleanup, misbehaviour scoring and events.

use std::hash::BuildHasher;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::netgroup::is_local;
use bitcoin::p2p::ServiceFlags;

use crate::peer::{BoxError, Direction, Peer, PeerId, TransportKind};

use super::dial::BoxedConnection;
use super::eviction::{select_node_to_evict, EvictionCandidate, EvictionNetwork};
use super::misbehaviour::misbehaviour_score;
use super::registry::PendingId;
use super::{
    ConnectionKind, Entry, Established, Inner, ManualTransport, PeerEvent, PeerHandlers, Registry,
};

/// An inbound connection's pending-handshake slot in the registry, and the token that drops
/// the handshake (a child of the server's token, cancelled by the accept loop when this
/// handshake is chosen to make room). Dropping the slot releases it: a no-op if it was already
/// released by being dropped to make room, so each slot is released exactly once.
pub(crate) struct PendingSlot {
    release: Box<dyn FnOnce() + Send>,
    cancel: CancellationToken,
}

impl PendingSlot {
    pub(crate) fn new<H: PeerHandlers>(
        inner: Arc<Inner<H>>,
        id: PendingId,
        cancel: CancellationToken,
    ) -> PendingSlot {
        PendingSlot {
            release: Box::new(move || {
                inner.registry().end_pending(id);
            }),
            cancel,
        }
    }

    /// Fires when the server stops or this handshake is dropped to make room.
    pub(crate) fn cancel(&self) -> &CancellationToken {
        &self.cancel
    }
}

impl Drop for PendingSlot {
    fn drop(&mut self) {
        let release = std::mem::replace(&mut self.release, Box::new(|| {}));
        release();
    }
}

/// A BIP324 v2 attempt met a v1-only peer: re-dial once (the peer core remembers the address
/// as v1-only, so the next attempt is v1).
#[derive(Debug)]
pub(crate) struct RetryV1;

/// Serves one connection to the end. For outbound connections `addr` is marked as dialling
/// and the mark is cleared once admission is decided; a manual one starts with `manual`
/// (`None`: the default, v2 first). Returns how long the peer stayed admitted, or `None` if it
/// never was.
pub(crate) async fn serve<H: PeerHandlers>(
    inner: Arc<Inner<H>>,
    stream: BoxedConnection,
    addr: SocketAddr,
    kind: ConnectionKind,
    manual: Option<ManualTransport>,
    slot: Option<PendingSlot>,
) -> Result<Option<Duration>, RetryV1> {
    let direction = if kind == ConnectionKind::Inbound {
        Direction::Inbound
    } else {
        Direction::Outbound
    };
    let config = if kind == ConnectionKind::BlockRelayOnly {
        inner.block_relay_config.clone()
    } else {
        inner.peer_config.clone()
    };
    // BIP324: automatic connections use v2 when the remote is known to advertise it (the
    // peer's V2Mode decides). Manual ones try v2 first as Core does (unless opted out per
    // address), with one v1 re-dial when the attempt fails with nothing received.
    let known = inner.source.services_of(addr);
    let peer = match (direction, kind) {
        (Direction::Inbound, _) => Peer::new(stream, direction, addr, config),
        (_, ConnectionKind::Manual) => match manual.unwrap_or_default() {
            ManualTransport::V2First => {
                let services = known.unwrap_or(ServiceFlags::NONE) | ServiceFlags::P2P_V2;
                Peer::outbound_with_services(stream, addr, config, services)
            }
            ManualTransport::V1Only => {
                Peer::outbound_with_transport(stream, addr, config, TransportKind::V1)
            }
        },
        (_, _) => match known {
            Some(services) => Peer::outbound_with_services(stream, addr, config, services),
            None => Peer::new(stream, direction, addr, config),
        },
    };
    // Boxed: the handshake's state is freed once it ends instead of staying part of this
    // task's future (sized for its largest state) for the peer's whole life.
    // An inbound handshake also ends when its pending slot is dropped to make room.
    let cancel = slot.as_ref().map_or(&inner.cancel, PendingSlot::cancel);
    let handshake = Box::pin(peer.handshake(cancel, |_| Ok::<(), BoxError>(()))).await;
    drop(slot);
    let peer = match handshake {
        Ok(peer) => peer,
        Err(error) if error.retry_v1() && direction == Direction::Outbound => {
            // The address is now in the v1-only cache: the caller re-dials once over v1.
            tracing::debug!(%addr, %error, "v2 refused; re-dialling over v1");
            return Err(RetryV1);
        }
        Err(error) => {
            if direction == Direction::Outbound {
                inner.registry().end_dial(addr);
            }
            if !inner.cancel.is_cancelled() {
                tracing::debug!(%addr, %error, "handshake failed");
                inner.emit(PeerEvent::HandshakeFailed {
                    addr,
                    direction,
                    error: Arc::new(error),
                });
            }
            return Ok(None);
        }
    };
    if kind == ConnectionKind::Feeler {
        // A feeler only proves the address works (Core): mark it good, then hang up.
        inner.registry().end_dial(addr);
        inner.source.connected(addr);
        tracing::debug!(%addr, "feeler succeeded");
        return Ok(None);
    }
    if kind == ConnectionKind::AddrFetch {
        inner.registry().end_dial(addr);
        let handle = peer.handle();
        if handle
            .send(bitcoin::p2p::message::NetworkMessage::GetAddr)
            .is_ok()
        {
            let fetch = AddrFetch {
                inner: inner.clone(),
                seed: addr,
            };
            // Dropping the run on timeout closes the connection and ends its tasks.
            let _ = Box::pin(tokio::time::timeout(
                ADDR_FETCH_TIMEOUT,
                peer.run(fetch, inner.cancel.child_token()),
            ))
            .await;
        }
        return Ok(None);
    }
    let handle = peer.handle();
    let id = peer.id();
    let entry = Established {
        id,
        addr,
        direction,
        kind,
        trusted: inner.config.admission.is_trusted(addr.ip()),
        remote_nonce: peer.negotiated().remote_nonce,
        netgroup: inner.registry().group_of(addr.ip()),
        connected_at: Instant::now(),
        last_novel_block: None,
        last_novel_tx: None,
        addr_relay: super::addr_relay::AddrRelayState::at_connect(kind),
        payload: handle.clone(),
    };
    let admitted = {
        let mut reg = inner.registry();
        if direction == Direction::Outbound {
            reg.end_dial(addr);
        }
        if inner.cancel.is_cancelled() {
            Err(super::Refusal::ShuttingDown)
        } else {
            reg.admit(entry, &inner.config.admission, |r| {
                choose_eviction(&inner, r)
            })
        }
    };
    match admitted {
        Ok(evicted) => {
            if let Some(victim) = evicted {
                tracing::info!(
                    evicted = victim.id.0,
                    for_peer = id.0,
                    "inbound slots full: evicting"
                );
                victim.payload.disconnect();
            }
        }
        Err(refusal) => {
            tracing::debug!(%addr, %refusal, "refused after the handshake");
            inner.emit(PeerEvent::Refused {
                addr,
                direction,
                refusal,
            });
            return Ok(None);
        }
    }
    if direction == Direction::Outbound {
        inner.source.connected(addr);
    }
    inner.emit(PeerEvent::Connected {
        id,
        addr,
        kind,
        negotiated: Box::new(peer.negotiated().clone()),
    });
    let trusted = inner.config.admission.is_trusted(addr.ip());
    let handler = super::relay::ServerHandler::new(inner.clone(), &handle, kind, trusted);
    let started = Instant::now();
    let reason = peer.run(handler, inner.cancel.child_token()).await;
    let connected_for = started.elapsed();
    inner.misbehaving(id, addr, misbehaviour_score(&reason), &reason.to_string());
    inner.registry().remove(id);
    inner.scores.lock().expect("score lock").remove(&id);
    inner.emit(PeerEvent::Disconnected {
        id,
        addr,
        reason,
        connected_for,
        stats: Box::new(handle.stats()),
    });
    inner.wake_outbound.notify_one();
    Ok(Some(connected_for))
}

/// How long an addr-fetch connection waits for the addresses.
const ADDR_FETCH_TIMEOUT: Duration = Duration::from_secs(30);

/// An addr-fetch connection's handler: store the first address message, then hang up.
struct AddrFetch<H> {
    inner: Arc<Inner<H>>,
    seed: SocketAddr,
}

impl<H: PeerHandlers> crate::peer::MessageHandler for AddrFetch<H> {
    async fn on_message(
        &mut self,
        peer: &crate::peer::PeerHandle,
        message: bitcoin::p2p::message::NetworkMessage,
    ) {
        use bitcoin::p2p::message::NetworkMessage;
        let list = match message {
            NetworkMessage::AddrV2(list) => list,
            NetworkMessage::Addr(list) => super::relay::to_v2(list),
            _ => return,
        };
        // A lone address is usually the seed announcing itself; wait for the getaddr answer.
        self.inner.source.add(&list, self.seed);
        if list.len() > 1 {
            peer.disconnect();
        }
    }
}

/// Builds Core's eviction candidates from the inbound peers and picks one.
fn choose_eviction<H>(inner: &Inner<H>, reg: &Registry<Entry>) -> Option<PeerId> {
    let candidates: Vec<EvictionCandidate> = reg
        .iter()
        .map(|e| {
            let negotiated = e.payload.negotiated();
            let since = |t: Option<Instant>| {
                t.map_or(Duration::ZERO, |t| t.saturating_duration_since(inner.epoch))
            };
            EvictionCandidate {
                id: e.id.0,
                connected: e.connected_at.saturating_duration_since(inner.epoch),
                min_ping: e.payload.stats().min_ping,
                last_block_time: since(e.last_novel_block),
                last_tx_time: since(e.last_novel_tx),
                relevant_services: negotiated
                    .services
                    .has(bitcoin::p2p::ServiceFlags::NETWORK | bitcoin::p2p::ServiceFlags::WITNESS),
                relay_txs: negotiated.relay,
                bloom_filter: false,
                keyed_netgroup: inner.netgroup_key.hash_one(e.netgroup),
                prefer_evict: false,
                is_local: is_local(e.addr.ip()),
                network: if crate::netgroup::canonical(e.addr.ip()).is_ipv4() {
                    EvictionNetwork::Ipv4
                } else {
                    EvictionNetwork::Ipv6
                },
                noban: e.trusted,
                inbound: e.direction == Direction::Inbound,
            }
        })
        .collect();
    select_node_to_evict(candidates).map(PeerId)
}
