//! Connection management for many peers: listening, admission, dialing, persistent peers,
//! bans, eviction, events and graceful shutdown, as go-ethereum's p2p server and btcd's
//! server/connmgr do, with Bitcoin Core's limits.
//!
//! # Accept path
//! ```text
//! accept() ── error: back off 5 ms → 1 s, log once per burst
//! (or Server::accept_inbound: a stream the caller accepted, same path from here)
//!   └─ checkpoint 1 (Registry::begin_pending): allow/deny list, ban,
//!      ≤ 5 established per IP                                        ── refuse: close at once
//!      pending full (8 per /24 or /64, max_pending_handshakes = 50 in total)
//!        ── drop the longest-pending handshake of the busiest group (its token is cancelled)
//!        └─ handshake (peer core; self-connection via the shared nonce cache), raced
//!           against its pending token; the remote `version` meets the PeerPolicy
//!           (required services, callback) ── refuse: Refusal::Policy, no slot used
//!             └─ checkpoint 2 (Registry::admit): duplicate address or nonce, per IP,
//!                max inbound → evict (SelectNodeToEvict) or refuse, max total
//!                  └─ run until disconnect → score misbehaviour → maybe ban
//! ```
//! Full pending slots make room rather than refuse: a flood of silent connections (which
//! never finish a handshake) would otherwise lock out every honest peer of its /24 — CGNAT
//! users, one ISP's customers — until the handshake timeout. As Core's
//! `AttemptToEvictConnection` evicts from the netgroup with the most connections, the
//! handshake dropped is one of the group holding the most pending slots; unlike Core, which
//! protects its long-lived peers, it is that group's *longest-pending* one, since an honest
//! handshake takes one round trip ([`select_pending_to_drop`]). The accept loop therefore
//! never waits for a slot; pending handshakes stay within `max_pending_handshakes` (trusted
//! ones excepted), each released exactly once.
//! # Dial path
//! ```text
//! outbound loop (every outbound_interval, and after each disconnect)
//!   └─ deficit per kind (8 full-relay, 2 block-relay-only) minus dials in flight
//!        └─ AddressSource::candidates → advertised services meet the PeerPolicy (Core's
//!           desirable services by default) → pick_dials: not own, allow/deny, not banned,
//!           not connected/dialing, one per netgroup; ≤ max_dials_in_flight
//!             └─ dial with timeout → handshake (version meets the PeerPolicy) →
//!                checkpoint 2 → run
//! addr-fetch (Server::addr_fetch, ServerConfig::seed_nodes): dial → handshake (policy) →
//! getaddr → addresses to the source → hang up after the answer or addr_fetch_timeout
//! persistent peers: one loop each: resolve (a host name, looked up every time) → dial each
//! address in turn until one is admitted → run → backoff 1 s…5 min ±50% (reset after a
//! connection that lasted) → resolve again, until shutdown
//! ```
//! Trusted peers bypass every limit and ban and are never evicted. Bans are checked at accept
//! and before dialing.
//!
//! # Lifecycle
//! [`Server::new`] does no I/O. [`Server::start`] binds the listeners and spawns the tasks; it
//! can be called once: a running or stopped server returns [`ServerError::AlreadyStarted`] —
//! a stopped server cannot be restarted; build a new one. Cancelling the token given to
//! `start` stops it: listeners close, dials and handshakes are cancelled, every peer is
//! disconnected, and [`Server::stopped`] returns once every task ended, or with
//! [`ServerError::ShutdownTimeout`] after
//! [`shutdown_timeout`](ServerConfig::shutdown_timeout).

mod accept;
mod addr_fetch;
pub mod addr_relay;
mod addrman_source;
mod anchors;
pub mod ban;
mod config;
mod dial;
mod events;
pub mod eviction;
mod misbehaviour;
mod outbound;
pub mod policy;
mod registry;
mod relay;
mod session;
mod stats;
mod target;

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bitcoin::p2p::message::NetworkMessage;
use bitcoin::p2p::message_blockdata::Inventory;
use ipnet::IpNet;
use tokio::net::TcpListener;
use tokio::sync::{broadcast, Notify};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use addr_fetch::{AddrFetchError, AddrFetchOutcome, AddrFetchResult};
pub use addrman_source::{addr_v2, AddrManSource};
pub use ban::{BanEntry, BanFileError, BanList, BanScore};
pub use config::{ConnectionKind, ManualTransport, ServerConfig};
pub use dial::{
    pick_dials, AddressSource, BoxedConnection, Connection, DialFuture, Dialer, FixedAddresses,
    ResolveFuture, TcpDialer,
};
pub use events::PeerEvent;
pub use misbehaviour::misbehaviour_score;
pub use policy::{PeerPolicy, PolicyContext, PolicyRefusal, ServiceRule, VersionCheck};
pub use registry::{
    select_pending_to_drop, AdmissionRules, Established, Pending, PendingAdmission,
    PendingCandidate, PendingId, Refusal, Registry,
};
pub use stats::ServerStats;
pub use target::{default_p2p_port, PeerTarget, PeerTargetError, MAX_HOST_NAME_LEN};

use crate::netgroup::is_local;
use crate::peer::{
    Direction, MessageHandler, PeerConfig, PeerHandle, PeerId, PeerStats, SendError,
};

/// Seed nodes are asked for addresses while the address source knows fewer than this (Core
/// adds fixed seeds while its address manager is empty; a few more keeps small test networks
/// moving).
pub const SEED_NODE_THRESHOLD: usize = 100;

/// Makes the message handler for each admitted peer.
///
/// Implemented for closures `Fn(&PeerHandle, ConnectionKind) -> H`.
pub trait PeerHandlers: Send + Sync + 'static {
    /// The handler type.
    type Handler: MessageHandler;
    /// A handler for a newly admitted peer.
    fn handler(&self, peer: &PeerHandle, kind: ConnectionKind) -> Self::Handler;
}

impl<F, H> PeerHandlers for F
where
    F: Fn(&PeerHandle, ConnectionKind) -> H + Send + Sync + 'static,
    H: MessageHandler,
{
    type Handler = H;
    fn handler(&self, peer: &PeerHandle, kind: ConnectionKind) -> H {
        self(peer, kind)
    }
}

/// Server lifecycle errors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// `start` was called on a server that is running or has stopped.
    #[error("server already started (a stopped server cannot be restarted)")]
    AlreadyStarted,
    /// `stopped` was called before `start`.
    #[error("server not started")]
    NotStarted,
    /// A listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// [`Server::accept_inbound`] was called on a server that is not running.
    #[error("server not running")]
    NotRunning,
    /// [`Server::accept_inbound`]: the connection was refused at checkpoint 1 (and closed).
    #[error("inbound connection refused: {0}")]
    Refused(Refusal),
    /// Tasks were still running when the shutdown bound elapsed.
    #[error("{remaining} tasks still running after {after:?}")]
    ShutdownTimeout {
        /// Tasks not finished.
        remaining: usize,
        /// The bound.
        after: Duration,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lifecycle {
    New,
    Running,
    Stopped,
}

/// What the server keeps with each admitted peer.
pub(crate) type Entry = PeerHandle;

pub(crate) struct Inner<H> {
    pub(crate) config: ServerConfig,
    /// `config.peer`, shared by every peer (one copy, not one per peer), and the same with
    /// `relay` off for block-relay-only connections.
    pub(crate) peer_config: Arc<PeerConfig>,
    pub(crate) block_relay_config: Arc<PeerConfig>,
    pub(crate) handlers: H,
    pub(crate) dialer: Box<dyn Dialer>,
    pub(crate) source: Box<dyn AddressSource>,
    pub(crate) registry: Mutex<Registry<Entry>>,
    pub(crate) bans: Mutex<BanList>,
    pub(crate) scores: Mutex<HashMap<PeerId, BanScore>>,
    pub(crate) events: broadcast::Sender<PeerEvent>,
    pub(crate) tracker: TaskTracker,
    pub(crate) cancel: CancellationToken,
    pub(crate) local_addrs: Mutex<Vec<SocketAddr>>,
    pub(crate) netgroup_key: RandomState,
    pub(crate) epoch: Instant,
    /// Wakes the outbound loop (after a disconnect or a finished dial).
    pub(crate) wake_outbound: Notify,
    /// Persistent peers and the token that stops each one's loop.
    persistent: Mutex<HashMap<PeerTarget, CancellationToken>>,
    /// Manual peers dialled over v1 only ([`ManualTransport::V1Only`]).
    manual_v1_only: Mutex<HashSet<PeerTarget>>,
    /// Block-relay-only peers of the last run, dialled first (Core's anchors).
    pub(crate) anchors: Mutex<Vec<SocketAddr>>,
    /// Addresses already forwarded, by key, with when (bounded; see `relay`).
    pub(crate) relayed: Mutex<HashMap<u64, Instant>>,
    /// Cached `getaddr` answers by requestor network and local socket (bounded; see
    /// [`AddrResponseCache`](addr_relay::AddrResponseCache)).
    pub(crate) addr_responses: Mutex<addr_relay::AddrResponseCache<relay::AddrCacheKey>>,
    /// Server-wide counters ([`Server::stats`]).
    pub(crate) counters: stats::Counters,
    /// Callers of [`Server::addr_fetch`] waiting for the outcome, by address.
    pub(crate) addr_fetch_waiters: Mutex<addr_fetch::Waiters>,
    lifecycle: Mutex<Lifecycle>,
}

impl<H> Inner<H> {
    /// The transport a manual connection to `addr`, dialled for `target`, starts with: v1
    /// only if either is listed as such.
    pub(crate) fn manual_transport(
        &self,
        target: &PeerTarget,
        addr: SocketAddr,
    ) -> ManualTransport {
        let v1 = self.manual_v1_only.lock().expect("manual transport lock");
        if v1.contains(target) || v1.contains(&PeerTarget::Addr(addr)) {
            ManualTransport::V1Only
        } else {
            ManualTransport::V2First
        }
    }

    pub(crate) fn registry(&self) -> MutexGuard<'_, Registry<Entry>> {
        self.registry.lock().expect("registry lock")
    }

    pub(crate) fn emit(&self, event: PeerEvent) {
        // No subscribers is fine.
        let _ = self.events.send(event);
    }

    pub(crate) fn is_banned(&self, addr: SocketAddr) -> bool {
        self.bans
            .lock()
            .expect("ban lock")
            .is_banned(addr.ip(), unix_now())
            .is_some()
    }

    /// Adds `score` to `id`'s ban score; at the threshold disconnects it and bans its address
    /// (trusted and local peers are only disconnected). Returns whether it was banned.
    pub(crate) fn misbehaving(
        &self,
        id: PeerId,
        addr: SocketAddr,
        score: u32,
        reason: &str,
    ) -> bool {
        if score == 0 {
            return false;
        }
        let total = {
            let mut scores = self.scores.lock().expect("score lock");
            scores
                .entry(id)
                .or_default()
                .increase(score, 0, Instant::now().into_std())
        };
        tracing::debug!(peer = id.0, %addr, score, total, reason, "misbehaving");
        if total < self.config.ban_threshold {
            return false;
        }
        if let Some(handle) = self.registry().get(id).map(|e| e.payload.clone()) {
            handle.disconnect();
        }
        if self.config.admission.is_trusted(addr.ip()) || is_local(addr.ip()) {
            tracing::info!(peer = id.0, %addr, reason, "not banning a trusted or local peer");
            return false;
        }
        let subnet = IpNet::from(crate::netgroup::canonical(addr.ip()));
        self.ban(
            subnet,
            self.config.ban_duration,
            format!("ban score {total}: {reason}"),
        );
        true
    }

    pub(crate) fn ban(&self, subnet: IpNet, duration: Duration, reason: String) {
        let now = unix_now();
        let until = now.saturating_add(duration.as_secs());
        {
            let mut bans = self.bans.lock().expect("ban lock");
            bans.ban(subnet, until, reason.clone(), now);
            if let Some(path) = &self.config.bans_path {
                if let Err(e) = bans.save(path) {
                    tracing::error!(error = %e, "could not save bans");
                }
            }
        }
        let victims: Vec<PeerHandle> = self
            .registry()
            .iter()
            .filter(|p| !p.trusted && subnet.contains(&crate::netgroup::canonical(p.addr.ip())))
            .map(|p| p.payload.clone())
            .collect();
        for v in victims {
            v.disconnect();
        }
        tracing::info!(%subnet, until, reason, "banned");
        self.emit(PeerEvent::Banned {
            subnet,
            until,
            reason,
        });
    }
}

/// Seconds since the Unix epoch (ban times persist across restarts).
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A server managing many peers. Cheap to share behind an `Arc`; every method takes `&self`.
pub struct Server<H: PeerHandlers> {
    inner: Arc<Inner<H>>,
}

impl<H: PeerHandlers> Server<H> {
    /// A server with `config`, making each peer's handler with `handlers`, dialling TCP and
    /// drawing outbound addresses from a [`FixedAddresses`] list that is initially empty
    /// (replace with [`with_address_source`](Self::with_address_source)). Loads persisted bans
    /// from [`bans_path`](ServerConfig::bans_path); a corrupt file is moved aside and logged.
    pub fn new(config: ServerConfig, handlers: H) -> Server<H> {
        let bans = match &config.bans_path {
            Some(path) => {
                let (list, error) = BanList::load(path, unix_now());
                if let Some(e) = error {
                    tracing::error!(error = %e, "ban list not loaded");
                }
                list
            }
            None => BanList::default(),
        };
        let (events, _) = broadcast::channel(config.event_capacity.max(1));
        let registry = if config.loopback_netgroups {
            Registry::with_loopback_groups()
        } else {
            Registry::default()
        };
        let manual_v1_only = config.v1_only_manual.iter().cloned().collect();
        Server {
            inner: Arc::new(Inner {
                peer_config: Arc::new(config.peer.clone()),
                block_relay_config: Arc::new(PeerConfig {
                    relay: false,
                    ..config.peer.clone()
                }),
                config,
                handlers,
                dialer: Box::new(TcpDialer),
                source: Box::new(FixedAddresses::default()),
                registry: Mutex::new(registry),
                bans: Mutex::new(bans),
                scores: Mutex::new(HashMap::new()),
                events,
                tracker: TaskTracker::new(),
                cancel: CancellationToken::new(),
                local_addrs: Mutex::new(Vec::new()),
                netgroup_key: RandomState::new(),
                epoch: Instant::now(),
                wake_outbound: Notify::new(),
                persistent: Mutex::new(HashMap::new()),
                manual_v1_only: Mutex::new(manual_v1_only),
                anchors: Mutex::new(Vec::new()),
                relayed: Mutex::new(HashMap::new()),
                addr_responses: Mutex::new(addr_relay::AddrResponseCache::new()),
                counters: stats::Counters::default(),
                addr_fetch_waiters: Mutex::new(addr_fetch::Waiters::new()),
                lifecycle: Mutex::new(Lifecycle::New),
            }),
        }
    }

    fn inner_mut(&mut self) -> &mut Inner<H> {
        Arc::get_mut(&mut self.inner).expect("configure the server before starting it")
    }

    /// Uses `dialer` for outbound connections (e.g. a proxy, or in-memory pipes in tests).
    pub fn with_dialer(mut self, dialer: impl Dialer) -> Self {
        self.inner_mut().dialer = Box::new(dialer);
        self
    }

    /// Draws outbound addresses from `source`.
    pub fn with_address_source(mut self, source: impl AddressSource) -> Self {
        self.inner_mut().source = Box::new(source);
        self
    }

    /// Binds the listeners and starts every task; returns once listening.
    ///
    /// # Errors
    /// [`ServerError::AlreadyStarted`] if called twice (also after stopping);
    /// [`ServerError::Bind`] if a listen address cannot be bound (nothing is left running).
    pub async fn start(&self, shutdown: CancellationToken) -> Result<(), ServerError> {
        {
            let mut state = self.inner.lifecycle.lock().expect("lifecycle lock");
            if *state != Lifecycle::New {
                return Err(ServerError::AlreadyStarted);
            }
            *state = Lifecycle::Running;
        }
        let mut listeners = Vec::new();
        for &addr in &self.inner.config.listen {
            match listen(addr) {
                Ok(l) => listeners.push(l),
                Err(source) => {
                    self.inner.cancel.cancel();
                    *self.inner.lifecycle.lock().expect("lifecycle lock") = Lifecycle::Stopped;
                    return Err(ServerError::Bind { addr, source });
                }
            }
        }
        let inner = &self.inner;
        for listener in listeners {
            let local = listener.local_addr().map_err(|source| ServerError::Bind {
                addr: listener_addr(&listener),
                source,
            })?;
            inner
                .local_addrs
                .lock()
                .expect("local addrs lock")
                .push(local);
            tracing::info!(%local, "listening");
            inner
                .tracker
                .spawn(accept::accept_loop(inner.clone(), listener));
        }
        if !inner.config.connect_only
            && (inner.config.target_full_relay + inner.config.target_block_relay) > 0
        {
            inner.tracker.spawn(outbound::outbound_loop(inner.clone()));
        }
        // Configured persistent peers, and any added before start.
        let persistent: Vec<(PeerTarget, CancellationToken)> = {
            let mut map = inner.persistent.lock().expect("persistent lock");
            for target in &inner.config.persistent {
                map.entry(target.clone())
                    .or_insert_with(|| inner.cancel.child_token());
            }
            map.iter().map(|(a, t)| (a.clone(), t.clone())).collect()
        };
        for (target, token) in persistent {
            inner
                .tracker
                .spawn(outbound::persistent_loop(inner.clone(), target, token));
        }
        if let Some(path) = &inner.config.anchors_path {
            *inner.anchors.lock().expect("anchors lock") = anchors::take(path);
        }
        if !inner.config.connect_only {
            if let Some(mean) = inner.config.feeler_interval {
                inner
                    .tracker
                    .spawn(outbound::feeler_loop(inner.clone(), mean));
            }
        }
        if !inner.config.seed_nodes.is_empty() {
            inner.tracker.spawn(outbound::seed_node_loop(inner.clone()));
        }
        if let Some(ours) = inner.config.peer.local_address {
            inner
                .tracker
                .spawn(outbound::self_announce_loop(inner.clone(), ours));
        }
        inner.tracker.spawn(outbound::flush_loop(inner.clone()));
        let watcher = inner.clone();
        inner.tracker.spawn(async move {
            tokio::select! {
                _ = shutdown.cancelled() => {
                    // Capture the block-relay-only peers before they are disconnected.
                    if let Some(path) = &watcher.config.anchors_path {
                        let peers: Vec<SocketAddr> = watcher
                            .registry()
                            .iter()
                            .filter(|e| e.kind == ConnectionKind::BlockRelayOnly)
                            .map(|e| e.addr)
                            .collect();
                        anchors::save(path, &peers);
                    }
                    watcher.cancel.cancel()
                }
                _ = watcher.cancel.cancelled() => {}
            }
        });
        Ok(())
    }

    /// Waits until the server has stopped (after the `start` token was cancelled): every task
    /// ended and every connection closed. Saves the ban list.
    ///
    /// # Errors
    /// [`ServerError::NotStarted`] before `start`; [`ServerError::ShutdownTimeout`] if tasks
    /// remain [`shutdown_timeout`](ServerConfig::shutdown_timeout) after cancellation.
    pub async fn stopped(&self) -> Result<(), ServerError> {
        if *self.inner.lifecycle.lock().expect("lifecycle lock") == Lifecycle::New {
            return Err(ServerError::NotStarted);
        }
        self.inner.cancel.cancelled().await;
        self.inner.tracker.close();
        let after = self.inner.config.shutdown_timeout;
        let result = tokio::time::timeout(after, self.inner.tracker.wait()).await;
        *self.inner.lifecycle.lock().expect("lifecycle lock") = Lifecycle::Stopped;
        let inner = self.inner.clone();
        let _ = tokio::task::spawn_blocking(move || inner.source.flush()).await;
        if let Some(path) = &self.inner.config.bans_path {
            if let Err(e) = self.inner.bans.lock().expect("ban lock").save(path) {
                tracing::error!(error = %e, "could not save bans");
            }
        }
        match result {
            Ok(()) => Ok(()),
            Err(_) => Err(ServerError::ShutdownTimeout {
                remaining: self.inner.tracker.len(),
                after,
            }),
        }
    }

    /// [`start`](Self::start), then [`stopped`](Self::stopped).
    ///
    /// # Errors
    /// As both.
    pub async fn run(&self, shutdown: CancellationToken) -> Result<(), ServerError> {
        self.start(shutdown).await?;
        self.stopped().await
    }

    /// Keeps `target` connected from now on, as Core's `addnode add` (reconnecting with
    /// [`persistent_backoff`](ServerConfig::persistent_backoff)), trying v2 first unless
    /// [`ServerConfig::v1_only_manual`] lists it. `target` is a [`SocketAddr`] or a
    /// [`PeerTarget`]; a host name is looked up before every dial and its addresses tried in
    /// the resolver's order until one is admitted (Core picks one at random). Returns `false`
    /// if it already was persistent. Before [`start`](Self::start) it is remembered and
    /// started then.
    pub fn add_persistent(&self, target: impl Into<PeerTarget>) -> bool {
        let target = target.into();
        let transport = self.manual_transport(target.clone());
        self.add_persistent_with(target, transport)
    }

    /// [`add_persistent`](Self::add_persistent) with the transport to start with (Core's
    /// `addnode ADDR add V2TRANSPORT`); the choice also applies to later
    /// [`connect_once`](Self::connect_once) calls for an address target. Returns `false` if
    /// `target` already was persistent (its transport choice is still updated).
    pub fn add_persistent_with(
        &self,
        target: impl Into<PeerTarget>,
        transport: ManualTransport,
    ) -> bool {
        let target = target.into();
        self.set_manual_transport(target.clone(), transport);
        let token = self.inner.cancel.child_token();
        {
            let mut persistent = self.inner.persistent.lock().expect("persistent lock");
            if persistent.contains_key(&target) {
                return false;
            }
            persistent.insert(target.clone(), token.clone());
        }
        if *self.inner.lifecycle.lock().expect("lifecycle lock") == Lifecycle::Running {
            self.inner
                .tracker
                .spawn(outbound::persistent_loop(self.inner.clone(), target, token));
        }
        true
    }

    /// Stops reconnecting to `target` (Core's `addnode remove`), given as it was added (a
    /// host name is not resolved to match an address); a current connection stays. Returns
    /// `false` if it was not persistent.
    pub fn remove_persistent(&self, target: impl Into<PeerTarget>) -> bool {
        match self
            .inner
            .persistent
            .lock()
            .expect("persistent lock")
            .remove(&target.into())
        {
            Some(token) => {
                token.cancel();
                true
            }
            None => false,
        }
    }

    /// The persistent peers, as added.
    pub fn persistent_peers(&self) -> Vec<PeerTarget> {
        self.inner
            .persistent
            .lock()
            .expect("persistent lock")
            .keys()
            .cloned()
            .collect()
    }

    /// Dials `addr` once as a manual connection (Core's `addnode onetry`), trying v2 first
    /// unless [`ServerConfig::v1_only_manual`] lists it; returns `false` if it is already
    /// connected or being dialled, or the server is not running.
    pub fn connect_once(&self, addr: SocketAddr) -> bool {
        let transport = self.manual_transport(addr);
        self.connect_once_with(addr, transport)
    }

    /// [`connect_once`](Self::connect_once) with the transport to start with (Core's
    /// `addnode ADDR onetry V2TRANSPORT`).
    pub fn connect_once_with(&self, addr: SocketAddr, transport: ManualTransport) -> bool {
        self.set_manual_transport(PeerTarget::Addr(addr), transport);
        if *self.inner.lifecycle.lock().expect("lifecycle lock") != Lifecycle::Running
            || !self
                .inner
                .registry()
                .begin_dial(addr, ConnectionKind::Manual)
        {
            return false;
        }
        let inner = self.inner.clone();
        self.inner.tracker.spawn(async move {
            outbound::dial_and_serve_manual(&inner, addr, transport).await;
        });
        true
    }

    /// The transport manual connections to `target` (a [`SocketAddr`] or a [`PeerTarget`])
    /// start with, as listed in [`ServerConfig::v1_only_manual`] or set by
    /// [`add_persistent_with`](Self::add_persistent_with)/
    /// [`connect_once_with`](Self::connect_once_with).
    pub fn manual_transport(&self, target: impl Into<PeerTarget>) -> ManualTransport {
        let listed = self
            .inner
            .manual_v1_only
            .lock()
            .expect("manual transport lock")
            .contains(&target.into());
        if listed {
            ManualTransport::V1Only
        } else {
            ManualTransport::V2First
        }
    }

    fn set_manual_transport(&self, target: PeerTarget, transport: ManualTransport) {
        let mut v1 = self
            .inner
            .manual_v1_only
            .lock()
            .expect("manual transport lock");
        match transport {
            ManualTransport::V1Only => v1.insert(target),
            ManualTransport::V2First => v1.remove(&target),
        };
    }

    /// Serves a connection the caller accepted itself (an onion service, a proxied listener,
    /// a test pipe) from `addr`, through the same checkpoints as the server's own listeners:
    /// bans, allow/deny lists, the per-IP limit and the pending-handshake slots (checkpoint
    /// 1, here, before returning), then the handshake with the [`PeerPolicy`], duplicates,
    /// inbound limits and eviction (checkpoint 2, on the connection's task). `stream` is any
    /// `AsyncRead + AsyncWrite` byte stream; a [`tokio::net::TcpStream`] also gives the peer
    /// its local address. `addr` stands for the remote in every rule, in stats and in events.
    ///
    /// # Errors
    /// [`ServerError::NotRunning`] before [`start`](Self::start) or once stopping;
    /// [`ServerError::Refused`] with checkpoint 1's [`Refusal`] (also emitted as
    /// [`PeerEvent::Refused`]). `stream` is dropped (closed) on error.
    pub fn accept_inbound<S>(&self, stream: S, addr: SocketAddr) -> Result<(), ServerError>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        if *self.inner.lifecycle.lock().expect("lifecycle lock") != Lifecycle::Running
            || self.inner.cancel.is_cancelled()
        {
            return Err(ServerError::NotRunning);
        }
        accept::admit_inbound(&self.inner, Box::new(stream), addr).map_err(ServerError::Refused)?;
        stats::Counters::bump(&self.inner.counters.external_inbound, 1);
        Ok(())
    }

    /// Opens an addr-fetch connection to `target` (Bitcoin Core's `ADDR_FETCH`, as for
    /// `-seednode`, or a DNS seed that answered nothing): dial, handshake (held to
    /// [`PeerPolicy::outbound_services`] as Core's `ExpectServicesFromConn`), send `getaddr`,
    /// give every `addr`/`addrv2` entry to the address source, and disconnect once an answer
    /// with more than one address arrived or after
    /// [`addr_fetch_timeout`](ServerConfig::addr_fetch_timeout) (300 s). The connection
    /// takes no outbound slot and emits no `Connected` event.
    ///
    /// `target` is a [`SocketAddr`] or a [`PeerTarget`]; a host name is looked up with
    /// [`Dialer::resolve`] (bounded by [`dial_timeout`](ServerConfig::dial_timeout)) and its
    /// addresses tried in order until one completes a handshake.
    ///
    /// The work starts at once on a server task; the returned future only reports its end
    /// (dropping it cancels nothing). Per address it is bounded by `dial_timeout` + the
    /// handshake timeout + `addr_fetch_timeout`.
    ///
    /// # Errors
    /// [`AddrFetchError::NotRunning`] (not started, or stopped before the end),
    /// [`AddrFetchError::Resolve`] (a name that could not be looked up or has no address),
    /// [`AddrFetchError::Busy`] (already connected or dialled, or our own address),
    /// [`AddrFetchError::Refused`] (ban, allow/deny list, or the peer policy),
    /// [`AddrFetchError::Dial`], [`AddrFetchError::Handshake`]; for a name, the last
    /// address's error.
    pub fn addr_fetch(
        &self,
        target: impl Into<PeerTarget>,
    ) -> impl std::future::Future<Output = AddrFetchResult> + Send + 'static {
        let running = *self.inner.lifecycle.lock().expect("lifecycle lock") == Lifecycle::Running
            && !self.inner.cancel.is_cancelled();
        let started = running.then(|| addr_fetch::start(&self.inner, target.into()));
        async move {
            match started {
                Some(rx) => rx.await.unwrap_or(Err(AddrFetchError::NotRunning)),
                None => Err(AddrFetchError::NotRunning),
            }
        }
    }

    /// Server-wide counters: policy refusals, candidates skipped for their services, inbound
    /// connections handed in, addr-fetches.
    pub fn stats(&self) -> ServerStats {
        self.inner.counters.snapshot()
    }

    /// The bound listen addresses (with real ports when configured with port 0).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.inner
            .local_addrs
            .lock()
            .expect("local addrs lock")
            .clone()
    }

    /// A new event subscription (see [`PeerEvent`] for lag behaviour).
    pub fn subscribe(&self) -> broadcast::Receiver<PeerEvent> {
        self.inner.events.subscribe()
    }

    /// Tasks still running (accept loops, dial loops, connections); 0 once stopped.
    pub fn tasks(&self) -> usize {
        self.inner.tracker.len()
    }

    /// Inbound connections currently in the handshake (holding a pending slot): at most
    /// [`max_pending_handshakes`](ServerConfig::max_pending_handshakes) plus trusted ones.
    pub fn pending_handshakes(&self) -> usize {
        self.inner.registry().pending_count()
    }

    /// Outbound dials in flight (connecting or handshaking).
    pub fn dials_in_flight(&self) -> usize {
        self.inner.registry().dials_in_flight()
    }

    /// Handles of every admitted peer (cheap: no stats are gathered).
    pub fn handles(&self) -> Vec<PeerHandle> {
        self.inner
            .registry()
            .iter()
            .map(|e| e.payload.clone())
            .collect()
    }

    /// Stats of every admitted peer.
    pub fn peers(&self) -> Vec<PeerStats> {
        self.handles().iter().map(PeerHandle::stats).collect()
    }

    /// Admitted peers in `direction`.
    pub fn count(&self, direction: Direction) -> usize {
        self.inner.registry().count(direction)
    }

    /// Admitted peers of `kind`.
    pub fn count_kind(&self, kind: ConnectionKind) -> usize {
        self.inner.registry().count_kind(kind)
    }

    /// Why peer `id` exists (inbound, full-relay, block-relay-only, manual).
    pub fn kind_of(&self, id: PeerId) -> Option<ConnectionKind> {
        self.inner.registry().get(id).map(|e| e.kind)
    }

    /// Peer `id`'s address relay state (Core's getpeerinfo `addr_relay_enabled`,
    /// `addr_processed`, `addr_rate_limited`): relay is enabled at once with outbound
    /// full-relay and manual peers, with an inbound peer once it sent `addr`, `addrv2` or
    /// `getaddr`, never with block-relay-only ones. `None` if not connected.
    pub fn addr_relay_of(&self, id: PeerId) -> Option<addr_relay::AddrRelayState> {
        self.inner.registry().get(id).map(|e| e.addr_relay)
    }

    /// The handle of peer `id`.
    pub fn peer(&self, id: PeerId) -> Option<PeerHandle> {
        self.inner.registry().get(id).map(|e| e.payload.clone())
    }

    /// The handle of the peer at `addr`.
    pub fn peer_by_addr(&self, addr: SocketAddr) -> Option<PeerHandle> {
        self.inner
            .registry()
            .find_addr(addr)
            .map(|e| e.payload.clone())
    }

    /// Disconnects peer `id`; returns whether it was connected.
    pub fn disconnect(&self, id: PeerId) -> bool {
        self.peer(id).map(|h| h.disconnect()).is_some()
    }

    /// Disconnects the peer at `addr`; returns whether one was connected.
    pub fn disconnect_addr(&self, addr: SocketAddr) -> bool {
        self.peer_by_addr(addr).map(|h| h.disconnect()).is_some()
    }

    /// Sends `msg` to peer `id`.
    ///
    /// # Errors
    /// [`SendError::Disconnected`] if no such peer, else as [`PeerHandle::send`].
    pub fn send_to(&self, id: PeerId, msg: NetworkMessage) -> Result<(), SendError> {
        self.peer(id).ok_or(SendError::Disconnected)?.send(msg)
    }

    /// Sends `msg` to every admitted peer; returns how many accepted it.
    pub fn broadcast(&self, msg: &NetworkMessage) -> usize {
        self.handles()
            .iter()
            .filter(|h| h.send(msg.clone()).is_ok())
            .count()
    }

    /// Queues `items` for announcement to every peer except `except` (the source), through each
    /// peer's trickling and known-inventory filter; block-relay-only peers get only block
    /// items. Returns how many peers it was queued for.
    pub fn relay_inventory(&self, items: &[Inventory], except: Option<PeerId>) -> usize {
        let targets: Vec<(PeerHandle, ConnectionKind)> = self
            .inner
            .registry()
            .iter()
            .filter(|e| Some(e.id) != except)
            .map(|e| (e.payload.clone(), e.kind))
            .collect();
        let mut queued = 0;
        for (handle, kind) in targets {
            let items: Vec<Inventory> = if kind == ConnectionKind::BlockRelayOnly {
                items
                    .iter()
                    .copied()
                    .filter(|i| {
                        matches!(
                            i,
                            Inventory::Block(_)
                                | Inventory::WitnessBlock(_)
                                | Inventory::CompactBlock(_)
                        )
                    })
                    .collect()
            } else {
                items.to_vec()
            };
            if !items.is_empty() && handle.queue_inventory(items).is_ok() {
                queued += 1;
            }
        }
        queued
    }

    /// Reports misbehaviour of peer `id` with `score` (btcd's ban score: at
    /// [`ban_threshold`](ServerConfig::ban_threshold) the peer is disconnected and banned for
    /// [`ban_duration`](ServerConfig::ban_duration); trusted and local peers are only
    /// disconnected). Returns whether it was banned.
    pub fn misbehaving(&self, id: PeerId, score: u32, reason: &str) -> bool {
        let Some(addr) = self.inner.registry().get(id).map(|e| e.addr) else {
            return false;
        };
        self.inner.misbehaving(id, addr, score, reason)
    }

    /// Bans `subnet` (a single address: /32 or /128) for `duration`, disconnecting matching
    /// non-trusted peers.
    pub fn ban(&self, subnet: IpNet, duration: Duration, reason: &str) {
        self.inner.ban(subnet.trunc(), duration, reason.to_string());
    }

    /// Lifts the ban on exactly `subnet`; returns whether there was one.
    pub fn unban(&self, subnet: IpNet) -> bool {
        let removed = self
            .inner
            .bans
            .lock()
            .expect("ban lock")
            .unban(&subnet.trunc());
        self.save_bans();
        removed
    }

    /// Current bans, expired ones excluded.
    pub fn bans(&self) -> Vec<(IpNet, BanEntry)> {
        self.inner.bans.lock().expect("ban lock").list(unix_now())
    }

    /// Lifts every ban.
    pub fn clear_bans(&self) {
        self.inner.bans.lock().expect("ban lock").clear();
        self.save_bans();
    }

    fn save_bans(&self) {
        if let Some(path) = &self.inner.config.bans_path {
            if let Err(e) = self.inner.bans.lock().expect("ban lock").save(path) {
                tracing::error!(error = %e, "could not save bans");
            }
        }
    }

    /// Records that peer `id` just sent a block we did not have (protects it from eviction,
    /// as Core's `m_last_block_time`).
    pub fn mark_novel_block(&self, id: PeerId) {
        if let Some(e) = self.inner.registry().get_mut(id) {
            e.last_novel_block = Some(Instant::now());
        }
    }

    /// Records that peer `id` just sent a transaction we did not have (Core's
    /// `m_last_tx_time`).
    pub fn mark_novel_tx(&self, id: PeerId) {
        if let Some(e) = self.inner.registry().get_mut(id) {
            e.last_novel_tx = Some(Instant::now());
        }
    }
}

fn listener_addr(listener: &TcpListener) -> SocketAddr {
    listener
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
}

/// The listen backlog: connections the kernel queues before `accept` (Bitcoin Core passes
/// `SOMAXCONN`, which Linux caps at `net.core.somaxconn`, 4096 by default). tokio's
/// `TcpListener::bind` uses 128, which overflows under bursts of inbound connections and makes
/// the dropped ones retry their SYN a second later.
pub const LISTEN_BACKLOG: u32 = 4096;

/// Binds a listening socket on `addr` with address reuse (as `TcpListener::bind`) and a
/// [`LISTEN_BACKLOG`]-deep queue.
fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}
