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

use bitcoin::p2p::message::NetworkMessage;
use bitcoin::p2p::message_network::VersionMessage;

use crate::peer::{Direction, HandshakeError, Peer, PeerId, TransportKind};

use super::addr_fetch::{AddrFetchError, AddrFetchHandler, FetchState};
use super::policy::{PolicyContext, PolicyRefusal};
use super::stats::Counters;

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
    // The peer policy sees the remote `version` inside the handshake, before admission: a
    // refused peer never holds a slot, is never marked good and evicts nobody.
    let ctx = PolicyContext {
        addr,
        direction,
        kind,
        trusted: inner.config.admission.is_trusted(addr.ip()),
    };
    let mut offered: Option<ServiceFlags> = None;
    let policy = &inner.config.policy;
    let handshake = Box::pin(peer.handshake(cancel, |version: &VersionMessage| {
        offered = Some(version.services);
        policy.check(&ctx, version)
    }))
    .await;
    drop(slot);
    if let (Direction::Outbound, Some(services)) = (direction, offered) {
        // Core's SetServices: the services in an outbound peer's version replace the
        // advertised ones, so the candidate filter sees what the peer really offers.
        inner.source.set_services(addr, services);
    }
    let peer = match handshake {
        Ok(peer) => peer,
        Err(error) if error.retry_v1() && direction == Direction::Outbound => {
            // The address is now in the v1-only cache: the caller re-dials once over v1.
            tracing::debug!(%addr, %error, "v2 refused; re-dialling over v1");
            return Err(RetryV1);
        }
        Err(HandshakeError::Refused(error)) if error.is::<PolicyRefusal>() => {
            if direction == Direction::Outbound {
                inner.registry().end_dial(addr);
            }
            let refusal = match error.downcast::<PolicyRefusal>() {
                Ok(refusal) => *refusal,
                Err(_) => unreachable!("checked by the guard"),
            };
            Counters::bump(&inner.counters.policy_refusals, 1);
            if direction == Direction::Inbound {
                Counters::bump(&inner.counters.policy_refusals_inbound, 1);
            }
            tracing::debug!(%addr, ?kind, %refusal, "refused by the peer policy");
            let refusal = super::Refusal::Policy(refusal);
            if kind == ConnectionKind::AddrFetch {
                inner.finish_addr_fetch(addr, Err(AddrFetchError::Refused(refusal.clone())));
            }
            inner.emit(PeerEvent::Refused {
                addr,
                direction,
                refusal,
            });
            return Ok(None);
        }
        Err(error) => {
            if direction == Direction::Outbound {
                inner.registry().end_dial(addr);
            }
            let error = Arc::new(error);
            if kind == ConnectionKind::AddrFetch {
                inner.finish_addr_fetch(addr, Err(AddrFetchError::Handshake(error.clone())));
            }
            if !inner.cancel.is_cancelled() {
                tracing::debug!(%addr, %error, "handshake failed");
                inner.emit(PeerEvent::HandshakeFailed {
                    addr,
                    direction,
                    error,
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
        let state = Arc::new(FetchState::default());
        if handle.send(NetworkMessage::GetAddr).is_ok() {
            Counters::bump(&inner.counters.addr_fetches, 1);
            let fetch = AddrFetchHandler {
                inner: inner.clone(),
                seed: addr,
                state: state.clone(),
            };
            // Dropping the run on timeout closes the connection and ends its tasks.
            let _ = Box::pin(tokio::time::timeout(
                inner.config.addr_fetch_timeout,
                peer.run(fetch, inner.cancel.child_token()),
            ))
            .await;
        }
        tracing::debug!(%addr, outcome = ?state.outcome(), "addr-fetch done");
        inner.finish_addr_fetch(addr, Ok(state.outcome()));
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
