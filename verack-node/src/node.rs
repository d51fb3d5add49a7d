//! The node's shared state, the sync task that drives [`verack::sync::SyncManager`], and the
//! thin per-peer message handlers.
//!
//! # Who owns what
//! - **Sync state** (the header tree, the initial-sync peer, each peer's best known header,
//!   the presync states) belongs to the [`SyncManager`] in [`Node`], behind a `RwLock`. Only
//!   the sync task ([`run_sync`]) takes the write lock, once per input; everyone else (the
//!   RPC, the store writer, metrics, progress) reads through [`Node::tree`], [`Node::sync`]
//!   and [`Node::is_synced`], holding the read lock briefly. No decision is taken outside the
//!   manager.
//! - **Inputs** reach the sync task from two places: the server's
//!   `PeerEvent::Connected`/`Disconnected` ([`Server::subscribe`]) and a bounded channel
//!   ([`sync_queue`], [`SYNC_QUEUE`] entries) fed by each peer's [`PeerHandler`] with its
//!   `headers`, block `inv`, `getheaders` and `sendheaders`. A full queue makes handlers wait,
//!   so peers stop being read (the peer's receive backpressure) rather than queueing without
//!   bound. `getheaders` goes through the manager too, so serving follows the same rules and
//!   updates the peer's best header sent (which BIP130 announcements depend on).
//! - **Ordering**: the server emits a peer's `Connected` before its handler exists, so before
//!   any of its messages; the task reads every pending server event before each queued
//!   message, so the manager always learns of a peer before hearing from it. Messages of a
//!   peer already gone are ignored by the manager.
//! - **Actions** are carried out through the peer's [`PeerHandle`] (kept by the task from
//!   `Connected` to `Disconnected`) and [`Server::misbehaving`]; tip changes go to the store
//!   writer.
//! - **No back-reference**: the server is built first, with handlers that hold only the queue's
//!   sender; the node is built next and holds the server. `Disconnected` carries the peer's
//!   final stats, folded into the departed-traffic totals here.

use std::collections::HashMap;
use std::ops::Deref;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bitcoin::block::Header;
use bitcoin::p2p::message::NetworkMessage;
use bitcoin::p2p::message_blockdata::{GetHeadersMessage, Inventory};
use bitcoin::Network;
use tokio::sync::broadcast::{self, error::RecvError, error::TryRecvError};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use verack::chain::{HeaderTree, TipChange};
use verack::peer::{MessageHandler, PeerHandle, PeerId, PeerStats};
use verack::server::{ConnectionKind, PeerEvent, PeerHandlers, Server};
use verack::sync::{Action, Announcement, Input, PeerInfo, SyncManager};

use crate::metrics::Metrics;

/// Entries the sync queue holds before peer handlers wait: 1024 messages.
pub const SYNC_QUEUE: usize = 1024;
/// How often the sync task ticks the manager (sync timeouts): every second.
pub const SYNC_TICK: Duration = Duration::from_secs(1);

/// State shared by the sync task, the RPC, metrics and the progress reporter.
pub struct Node {
    /// The network.
    pub network: Network,
    sync: RwLock<SyncManager>,
    server: Arc<Server<NodeHandlers>>,
    /// The best height any peer claimed or sent headers for (for progress).
    pub best_known_height: AtomicI32,
    /// Our tip height, readable without a lock (for `version` start heights).
    pub tip_height: Arc<AtomicI32>,
    /// Headers accepted onto the active chain since start.
    pub headers_accepted: AtomicU64,
    /// When the node started.
    pub started: SystemTime,
    /// Bytes sent to and received from peers that have disconnected (for `getnettotals`).
    pub departed_bytes: (AtomicU64, AtomicU64),
    /// The metrics, when enabled (shared with the peer handlers, which time pings).
    pub metrics: Arc<OnceLock<Arc<Metrics>>>,
}

/// Unix seconds now.
pub fn unix_now() -> u32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as u32)
        .unwrap_or(0)
}

/// The header tree, read-locked (hold it briefly: the sync task waits for it).
pub struct TreeGuard<'a>(RwLockReadGuard<'a, SyncManager>);

impl Deref for TreeGuard<'_> {
    type Target = HeaderTree;
    fn deref(&self) -> &HeaderTree {
        self.0.tree()
    }
}

impl Node {
    /// A node whose sync state is `sync`, talking to peers through `server`; `tip_height` is
    /// the counter the server's `version` messages read, `metrics` the cell the handlers of
    /// `server` share.
    pub fn new(
        network: Network,
        sync: SyncManager,
        server: Arc<Server<NodeHandlers>>,
        tip_height: Arc<AtomicI32>,
        metrics: Arc<OnceLock<Arc<Metrics>>>,
    ) -> Arc<Node> {
        let height = sync.tree().height() as i32;
        tip_height.store(height, Ordering::Relaxed);
        Arc::new(Node {
            network,
            best_known_height: AtomicI32::new(sync.best_known_height()),
            sync: RwLock::new(sync),
            server,
            tip_height,
            headers_accepted: AtomicU64::new(0),
            started: SystemTime::now(),
            departed_bytes: (AtomicU64::new(0), AtomicU64::new(0)),
            metrics,
        })
    }

    /// The server (always there; `Option` for the callers written when it could be gone).
    pub fn server(&self) -> Option<Arc<Server<NodeHandlers>>> {
        Some(self.server.clone())
    }

    /// The sync manager, read-locked (per-peer sync state, presync heights).
    pub fn sync(&self) -> RwLockReadGuard<'_, SyncManager> {
        self.sync.read().unwrap_or_else(|e| e.into_inner())
    }

    /// The header tree, read-locked.
    pub fn tree(&self) -> TreeGuard<'_> {
        TreeGuard(self.sync())
    }

    /// Only the sync task writes.
    fn sync_mut(&self) -> RwLockWriteGuard<'_, SyncManager> {
        self.sync.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the tip is recent and has the minimum chain work (Core's
    /// `IsInitialBlockDownload` inverted, for headers).
    pub fn is_synced(&self) -> bool {
        self.sync().is_synced(SystemTime::now())
    }

    /// Folds a departed peer's final traffic into the totals and the metrics.
    fn departed(&self, stats: &PeerStats) {
        self.departed_bytes
            .0
            .fetch_add(stats.bytes_sent, Ordering::Relaxed);
        self.departed_bytes
            .1
            .fetch_add(stats.bytes_received, Ordering::Relaxed);
        if let Some(metrics) = self.metrics.get() {
            metrics.departed_peer(&crate::observe::sample(stats));
        }
    }
}

/// The sync queue: the sender goes to [`NodeHandlers::new`], the receiver to [`run_sync`].
pub fn sync_queue() -> (mpsc::Sender<Input>, mpsc::Receiver<Input>) {
    mpsc::channel(SYNC_QUEUE)
}

/// Drives the node's [`SyncManager`] until `stop` is cancelled: server `events` (subscribed
/// before the server starts), the handlers' `inputs`, and a [`SYNC_TICK`] timer go in;
/// actions are carried out through the server and the peers' handles; tip changes go to
/// `store`. See the [module docs](self) for the ownership rules.
pub async fn run_sync(
    node: Arc<Node>,
    mut events: broadcast::Receiver<PeerEvent>,
    mut inputs: mpsc::Receiver<Input>,
    store: mpsc::UnboundedSender<TipChange>,
    stop: CancellationToken,
) {
    let mut glue = SyncGlue {
        node,
        handles: HashMap::new(),
        store,
    };
    let mut tick = tokio::time::interval(SYNC_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            () = stop.cancelled() => break,
            event = events.recv() => match event {
                Ok(event) => glue.on_event(event),
                Err(RecvError::Lagged(missed)) => glue.reconcile(missed),
                Err(RecvError::Closed) => break,
            },
            input = inputs.recv() => {
                let Some(input) = input else { break };
                // A peer's Connected was emitted before any of its messages was queued.
                glue.drain_events(&mut events);
                glue.apply(input);
            }
            _ = tick.tick() => glue.apply(Input::Tick),
        }
    }
}

/// The sync task's state: the node, the handles of connected peers, the store's channel.
struct SyncGlue {
    node: Arc<Node>,
    handles: HashMap<PeerId, PeerHandle>,
    store: mpsc::UnboundedSender<TipChange>,
}

impl SyncGlue {
    fn drain_events(&mut self, events: &mut broadcast::Receiver<PeerEvent>) {
        loop {
            match events.try_recv() {
                Ok(event) => self.on_event(event),
                Err(TryRecvError::Lagged(missed)) => self.reconcile(missed),
                Err(TryRecvError::Empty | TryRecvError::Closed) => return,
            }
        }
    }

    fn on_event(&mut self, event: PeerEvent) {
        match event {
            PeerEvent::Connected {
                id,
                kind,
                negotiated,
                ..
            } => {
                if self.handles.contains_key(&id) {
                    return; // Already added by a reconcile.
                }
                if let Some(handle) = self.node.server.peer(id) {
                    self.handles.insert(id, handle);
                }
                self.apply(Input::Connected(PeerInfo::from_negotiated(
                    id,
                    kind,
                    &negotiated,
                )));
            }
            PeerEvent::Disconnected { id, stats, .. } => {
                self.node.departed(&stats);
                self.handles.remove(&id);
                self.apply(Input::Disconnected(id));
            }
            _ => {}
        }
    }

    /// After missing `missed` events: the server's peers are the truth.
    fn reconcile(&mut self, missed: u64) {
        tracing::warn!(
            missed,
            "sync task fell behind the server's events; re-reading the peer list"
        );
        let server = self.node.server.clone();
        let current = server.handles();
        let infos: Vec<PeerInfo> = current
            .iter()
            .map(|h| {
                let kind = server.kind_of(h.id()).unwrap_or(ConnectionKind::Inbound);
                PeerInfo::from_negotiated(h.id(), kind, h.negotiated())
            })
            .collect();
        let known: Vec<PeerId> = self.node.sync().peer_ids().collect();
        self.handles
            .retain(|id, _| current.iter().any(|h| h.id() == *id));
        for handle in current {
            self.handles.entry(handle.id()).or_insert(handle);
        }
        for input in reconcile_inputs(&known, infos) {
            self.apply(input);
        }
    }

    fn apply(&mut self, input: Input) {
        let actions = {
            let mut sync = self.node.sync_mut();
            let actions = sync.handle(input, SystemTime::now());
            self.node
                .tip_height
                .store(sync.tree().height() as i32, Ordering::Relaxed);
            self.node
                .best_known_height
                .fetch_max(sync.best_known_height(), Ordering::Relaxed);
            actions
        };
        for action in actions {
            self.execute(action);
        }
    }

    fn execute(&mut self, action: Action) {
        let handle = |peer: &PeerId| self.handles.get(peer);
        match action {
            Action::GetHeaders {
                peer,
                locator,
                stop,
            } => {
                if let Some(h) = handle(&peer) {
                    let _ = h.push_getheaders(locator, stop);
                }
            }
            Action::SendHeaders { peer, headers } => {
                if let Some(h) = handle(&peer) {
                    let _ = h.send(NetworkMessage::Headers(headers));
                }
            }
            Action::PreferHeaders { peer } => {
                if let Some(h) = handle(&peer) {
                    let _ = h.send(NetworkMessage::SendHeaders);
                }
            }
            Action::Announce { peer, announcement } => {
                if let Some(h) = handle(&peer) {
                    let _ = match announcement {
                        Announcement::Headers(headers) => h.send(NetworkMessage::Headers(headers)),
                        Announcement::Inv(hash) => h.queue_inventory([Inventory::Block(hash)]),
                    };
                }
            }
            Action::Misbehaving { peer, reason } => {
                self.node
                    .server
                    .misbehaving(peer, reason.score(), &reason.to_string());
            }
            Action::Disconnect { peer, reason } => {
                if let Some(h) = handle(&peer) {
                    tracing::info!(peer = peer.0, addr = %h.remote(), %reason, "disconnecting");
                    h.disconnect();
                }
            }
            Action::Persist(change) => {
                self.node
                    .headers_accepted
                    .fetch_add(change.connected.len() as u64, Ordering::Relaxed);
                let _ = self.store.send(change);
            }
            Action::PeerBestHeight { peer, height } => {
                if let Some(h) = handle(&peer) {
                    h.update_last_block_height(i32::try_from(height).unwrap_or(i32::MAX));
                }
            }
        }
    }
}

/// The inputs that bring a manager knowing peers `known` in line with the server's `current`
/// peers: `Disconnected` for each known one no longer there, then `Connected` for each new one.
fn reconcile_inputs(known: &[PeerId], current: Vec<PeerInfo>) -> Vec<Input> {
    let mut out: Vec<Input> = known
        .iter()
        .filter(|id| !current.iter().any(|p| p.id == **id))
        .map(|id| Input::Disconnected(*id))
        .collect();
    out.extend(
        current
            .into_iter()
            .filter(|p| !known.contains(&p.id))
            .map(Input::Connected),
    );
    out
}

/// Makes a [`PeerHandler`] for each admitted peer.
pub struct NodeHandlers {
    sync: mpsc::Sender<Input>,
    metrics: Arc<OnceLock<Arc<Metrics>>>,
}

impl NodeHandlers {
    /// Handlers feeding `sync` (from [`sync_queue`]) and timing pings into `metrics` once set.
    pub fn new(sync: mpsc::Sender<Input>, metrics: Arc<OnceLock<Arc<Metrics>>>) -> NodeHandlers {
        NodeHandlers { sync, metrics }
    }
}

impl PeerHandlers for NodeHandlers {
    type Handler = PeerHandler;

    fn handler(&self, peer: &PeerHandle, _kind: ConnectionKind) -> PeerHandler {
        PeerHandler {
            id: peer.id(),
            sync: self.sync.clone(),
            metrics: self.metrics.clone(),
        }
    }
}

/// One peer's handler: forwards what sync needs to the sync task (waiting while its queue is
/// full) and times pings. It decides nothing and does nothing when the peer ends.
pub struct PeerHandler {
    id: PeerId,
    sync: mpsc::Sender<Input>,
    metrics: Arc<OnceLock<Arc<Metrics>>>,
}

impl PeerHandler {
    async fn forward(&self, input: Input) {
        // Fails only once the sync task has stopped (shutdown).
        let _ = self.sync.send(input).await;
    }
}

impl MessageHandler for PeerHandler {
    async fn on_headers(&mut self, _peer: &PeerHandle, headers: Vec<Header>) {
        self.forward(Input::Headers {
            peer: self.id,
            headers,
        })
        .await;
    }

    async fn on_getheaders(&mut self, _peer: &PeerHandle, msg: GetHeadersMessage) {
        self.forward(Input::GetHeaders {
            peer: self.id,
            locator: msg.locator_hashes,
            stop: msg.stop_hash,
        })
        .await;
    }

    async fn on_inv(&mut self, _peer: &PeerHandle, inv: Vec<Inventory>) {
        let blocks: Vec<_> = inv
            .iter()
            .filter_map(|i| match i {
                Inventory::Block(h) | Inventory::WitnessBlock(h) | Inventory::CompactBlock(h) => {
                    Some(*h)
                }
                _ => None,
            })
            .collect();
        if !blocks.is_empty() {
            self.forward(Input::BlockInv {
                peer: self.id,
                blocks,
            })
            .await;
        }
    }

    async fn on_sendheaders(&mut self, _peer: &PeerHandle) {
        self.forward(Input::SendHeaders(self.id)).await;
    }

    async fn on_pong(&mut self, peer: &PeerHandle, _nonce: u64) {
        if let (Some(metrics), Some(rtt)) = (self.metrics.get(), peer.stats().last_ping) {
            metrics.observe_ping(rtt);
        }
    }
}

/// Keeps the header store a copy of the node's active chain ([`crate::store::writer::run`]):
/// tip changes sent to `changes` wake it, the tree says what to write, a failed write is
/// retried until it succeeds, and `status` says how far the store has got. Returns after
/// `stop` is cancelled and what is left has been written (or reported).
pub async fn store_writer(
    store: crate::store::HeaderStore,
    status: Arc<crate::store::StoreStatus>,
    changes: mpsc::UnboundedReceiver<TipChange>,
    node: Arc<Node>,
    stop: tokio_util::sync::CancellationToken,
) {
    struct NodeTree(Arc<Node>);
    impl crate::store::writer::TreeAccess for NodeTree {
        fn with_tree(&self, f: &mut dyn FnMut(&HeaderTree)) {
            f(&self.0.tree());
        }
    }
    crate::store::writer::run(store, status, changes, NodeTree(node), stop).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::p2p::ServiceFlags;

    fn info(id: u64) -> PeerInfo {
        PeerInfo {
            id: PeerId(id),
            kind: ConnectionKind::FullRelay,
            start_height: 0,
            services: ServiceFlags::NETWORK,
            protocol_version: 70016,
            prefers_headers: false,
        }
    }

    #[test]
    fn reconcile_drops_the_gone_and_adds_the_new() {
        let known = [PeerId(1), PeerId(2)];
        let inputs = reconcile_inputs(&known, vec![info(2), info(3)]);
        assert_eq!(
            inputs,
            vec![Input::Disconnected(PeerId(1)), Input::Connected(info(3)),]
        );
        assert!(reconcile_inputs(&known, vec![info(1), info(2)]).is_empty());
    }
}
