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
use super::{Inner, PeerHandlers, PeerTarget, Refusal};

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
    /// A host name target could not be looked up, or has no address
    /// ([`NotFound`](std::io::ErrorKind::NotFound)); a lookup slower than
    /// [`dial_timeout`](super::ServerConfig::dial_timeout) is
    /// [`TimedOut`](std::io::ErrorKind::TimedOut).
    #[error("host name lookup failed: {0}")]
    Resolve(Arc<std::io::Error>),
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

/// Starts an addr-fetch to `target` (the server is running); the receiver gets its end.
pub(crate) fn start<H: PeerHandlers>(
    inner: &Arc<Inner<H>>,
    target: PeerTarget,
) -> oneshot::Receiver<AddrFetchResult> {
    let (tx, rx) = oneshot::channel();
    match target {
        PeerTarget::Addr(addr) => {
            if let Err(error) = start_addr(inner, addr, tx) {
                tracing::debug!(%addr, %error, "addr-fetch not started");
            }
        }
        PeerTarget::Name { host, port } => {
            let inner2 = inner.clone();
            inner.tracker.spawn(async move {
                let result = fetch_name(&inner2, &host, port).await;
                let _ = tx.send(result);
            });
        }
    }
    rx
}

/// Registers `tx` as a waiter on `addr` and starts the connection; on error `tx` gets it.
fn start_addr<H: PeerHandlers>(
    inner: &Arc<Inner<H>>,
    addr: SocketAddr,
    tx: oneshot::Sender<AddrFetchResult>,
) -> Result<(), AddrFetchError> {
    // Registered first, under the lock (held while starting, so no other waiter slips in
    // between): the connection may end before this function returns. Lock order: waiters,
    // then registry.
    let mut waiters = inner
        .addr_fetch_waiters
        .lock()
        .expect("addr-fetch waiters lock");
    let list = waiters.entry(addr).or_default();
    list.push(tx);
    let started = super::outbound::start_addr_fetch(inner, addr);
    if let Err(error) = &started {
        // Ours is the last one; a fetch already under way keeps its own waiters.
        if let Some(tx) = list.pop() {
            let _ = tx.send(Err(error.clone()));
        }
        if list.is_empty() {
            waiters.remove(&addr);
        }
    }
    started
}

/// Looks `host` up and addr-fetches its addresses in turn until one completes a handshake.
async fn fetch_name<H: PeerHandlers>(
    inner: &Arc<Inner<H>>,
    host: &str,
    port: u16,
) -> AddrFetchResult {
    // A Tor or I2P name is never looked up: its stand-in goes to the dialer, whose
    // `dial_peer` hands the name to the proxy (or refuses it when no route exists), as for
    // persistent peers.
    if let Ok(peer) = format!("{host}:{port}").parse::<crate::address::PeerAddr>() {
        if peer.host.ip().is_none() {
            let (tx, rx) = oneshot::channel();
            let _ = start_addr(inner, peer.stand_in(), tx);
            return rx.await.unwrap_or(Err(AddrFetchError::NotRunning));
        }
    }
    let timed_out =
        || std::io::Error::new(std::io::ErrorKind::TimedOut, "host name lookup timed out");
    let looked_up = tokio::select! {
        r = tokio::time::timeout(inner.config.dial_timeout, inner.dialer.resolve(host, port)) => {
            r.unwrap_or_else(|_| Err(timed_out()))
        }
        _ = inner.cancel.cancelled() => return Err(AddrFetchError::NotRunning),
    };
    let addrs = match looked_up {
        Ok(addrs) if addrs.is_empty() => Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("{host} has no address"),
        )),
        other => other,
    }
    .map_err(|e| AddrFetchError::Resolve(Arc::new(e)))?;
    let mut last = Err(AddrFetchError::NotRunning);
    for addr in addrs {
        if inner.cancel.is_cancelled() {
            return Err(AddrFetchError::NotRunning);
        }
        let (tx, rx) = oneshot::channel();
        // On error `tx` already carries it.
        let _ = start_addr(inner, addr, tx);
        last = rx.await.unwrap_or(Err(AddrFetchError::NotRunning));
        if last.is_ok() {
            break;
        }
    }
    last
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
