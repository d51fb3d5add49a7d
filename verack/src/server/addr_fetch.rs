//! Addr-fetch connections (Bitcoin Core's `ADDR_FETCH`, made by `-seednode`): connect, send
//! `getaddr`, give the `addr`/`addrv2` answer to the address source, and disconnect once an
//! answer with more than one address arrived (a lone address is usually the peer announcing
//! itself) or after [`addr_fetch_timeout`](super::ServerConfig::addr_fetch_timeout). The
//! connection is never admitted: it takes no outbound slot and emits no `Connected` event.
//!
//! Started by [`Server::addr_fetch`](super::Server::addr_fetch) (one address, awaitable
//! outcome) or by [`ServerConfig::seed_nodes`](super::ServerConfig::seed_nodes) (repeated while
//! addresses are scarce).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use bitcoin::p2p::message::NetworkMessage;
use tokio::sync::oneshot;

use crate::peer::{HandshakeError, MessageHandler, PeerHandle};

use super::stats::Counters;
use super::{Inner, PeerHandlers, Refusal};

/// How an addr-fetch connection ended after its handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct AddrFetchOutcome {
    /// Address entries received (every `addr`/`addrv2` entry, given to the address source,
    /// which decides what to keep).
    pub addresses: usize,
    /// Whether an answer with more than one address arrived (the connection was then closed
    /// by us); `false`: the timeout elapsed or the peer closed first.
    pub answered: bool,
}

/// Why an addr-fetch did not get as far as asking.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum AddrFetchError {
    /// The server is not running (before `start`, or stopping).
    #[error("server not running")]
    NotRunning,
    /// The address is already connected or being dialled.
    #[error("already connected or being dialled")]
    Busy,
    /// Refused before dialling (banned, allow/deny list) or by the peer policy after the
    /// remote's `version` (addr-fetch peers are held to
    /// [`PeerPolicy::outbound_services`](super::PeerPolicy::outbound_services), as Core's
    /// `ExpectServicesFromConn`).
    #[error("refused: {0}")]
    Refused(Refusal),
    /// The dial failed or timed out ([`dial_timeout`](super::ServerConfig::dial_timeout)).
    #[error("dial failed: {0}")]
    Dial(Arc<std::io::Error>),
    /// The handshake failed.
    #[error("handshake failed: {0}")]
    Handshake(Arc<HandshakeError>),
}

/// What [`Server::addr_fetch`](super::Server::addr_fetch) resolves to.
pub type AddrFetchResult = Result<AddrFetchOutcome, AddrFetchError>;

/// Callers waiting on an addr-fetch to each address.
pub(crate) type Waiters =
    std::collections::HashMap<SocketAddr, Vec<oneshot::Sender<AddrFetchResult>>>;

impl<H> Inner<H> {
    /// Completes every caller waiting on an addr-fetch to `addr`.
    pub(crate) fn finish_addr_fetch(&self, addr: SocketAddr, result: AddrFetchResult) {
        let waiting = self
            .addr_fetch_waiters
            .lock()
            .expect("addr-fetch waiters lock")
            .remove(&addr)
            .unwrap_or_default();
        for tx in waiting {
            let _ = tx.send(result.clone());
        }
    }
}

/// What the handler saw, shared with the task that awaits the run.
#[derive(Debug, Default)]
pub(crate) struct FetchState {
    pub(crate) addresses: AtomicUsize,
    pub(crate) answered: AtomicBool,
}

impl FetchState {
    pub(crate) fn outcome(&self) -> AddrFetchOutcome {
        AddrFetchOutcome {
            addresses: self.addresses.load(Ordering::Relaxed),
            answered: self.answered.load(Ordering::Relaxed),
        }
    }
}

/// An addr-fetch connection's handler: give every address message to the source; hang up
/// after one with more than one address (Core: `IsAddrFetchConn() && vAddr.size() > 1`).
pub(crate) struct AddrFetchHandler<H> {
    pub(crate) inner: Arc<Inner<H>>,
    pub(crate) seed: SocketAddr,
    pub(crate) state: Arc<FetchState>,
}

impl<H: PeerHandlers> MessageHandler for AddrFetchHandler<H> {
    async fn on_message(&mut self, peer: &PeerHandle, message: NetworkMessage) {
        let list = match message {
            NetworkMessage::AddrV2(list) => list,
            NetworkMessage::Addr(list) => super::relay::to_v2(list),
            _ => return,
        };
        self.inner.source.add(&list, self.seed);
        self.state
            .addresses
            .fetch_add(list.len(), Ordering::Relaxed);
        Counters::bump(&self.inner.counters.addr_fetch_addresses, list.len() as u64);
        if list.len() > 1 {
            self.state.answered.store(true, Ordering::Relaxed);
            peer.disconnect();
        }
    }
}
