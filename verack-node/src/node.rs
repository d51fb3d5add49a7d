//! The node's shared state and the per-peer message handler: headers-first sync, following
//! announcements, serving `getheaders`, announcing new tips.
//!
//! Sync: one outbound peer at a time is the *sync peer* (Core's initial-headers-sync peer); it
//! gets `getheaders` with our locator and, after each full batch of 2000, another from the last
//! header it sent. When it stalls (the peer core's 2-minute headers deadline disconnects it) or
//! sends an invalid header (scored 100: banned unless local or trusted), another outbound peer
//! takes over. Once synced, every new outbound peer also gets one `getheaders`, and block
//! announcements (`inv`, or `headers` under BIP130 `sendheaders`) are followed from any peer.
//! Headers that do not connect trigger a `getheaders` for the gap instead of a penalty.

use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bitcoin::block::Header;
use bitcoin::hashes::Hash;
use bitcoin::p2p::message::NetworkMessage;
use bitcoin::p2p::message_blockdata::{GetHeadersMessage, Inventory};
use bitcoin::{BlockHash, Network};
use tokio::sync::mpsc;
use verack::chain::{HeaderError, HeaderTree, TipChange};
use verack::peer::{Direction, MessageHandler, PeerHandle, PeerId};
use verack::server::{ConnectionKind, PeerHandlers, Server};

/// Headers per `headers` message (Core's `MAX_HEADERS_RESULTS`).
pub const MAX_HEADERS: usize = 2000;
/// New tip headers announced by `headers` to BIP130 peers at most (Core's
/// `MAX_BLOCKS_TO_ANNOUNCE`).
pub const MAX_BLOCKS_TO_ANNOUNCE: usize = 8;
/// A tip older than this means we are still catching up (Core's `DEFAULT_MAX_TIP_AGE`).
pub const MAX_TIP_AGE: Duration = Duration::from_secs(24 * 3600);
/// The first version with `sendheaders` (BIP130).
pub const SENDHEADERS_VERSION: u32 = 70012;

/// State shared by every peer handler, the RPC and the progress reporter.
pub struct Node {
    /// The network.
    pub network: Network,
    tree: Mutex<HeaderTree>,
    store: mpsc::UnboundedSender<TipChange>,
    server: OnceLock<Weak<Server<NodeHandlers>>>,
    sync_peer: Mutex<Option<PeerId>>,
    /// The best height any peer claimed (for progress).
    pub best_known_height: AtomicI32,
    /// Our tip height, readable without the tree lock (for `version` start heights).
    pub tip_height: Arc<AtomicI32>,
    /// Headers accepted since start.
    pub headers_accepted: AtomicU64,
    /// When the node started.
    pub started: SystemTime,
    /// Bytes sent to and received from peers that have disconnected (for `getnettotals`).
    pub departed_bytes: (AtomicU64, AtomicU64),
    /// The metrics, when enabled.
    pub metrics: OnceLock<Arc<crate::metrics::Metrics>>,
}

/// Unix seconds now.
pub fn unix_now() -> u32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as u32)
        .unwrap_or(0)
}

impl Node {
    /// A node over `tree`, sending every tip change to the store writer `store`.
    pub fn new(
        network: Network,
        tree: HeaderTree,
        store: mpsc::UnboundedSender<TipChange>,
    ) -> Arc<Node> {
        let height = tree.height() as i32;
        Arc::new(Node {
            network,
            tree: Mutex::new(tree),
            store,
            server: OnceLock::new(),
            sync_peer: Mutex::new(None),
            best_known_height: AtomicI32::new(height),
            tip_height: Arc::new(AtomicI32::new(height)),
            headers_accepted: AtomicU64::new(0),
            started: SystemTime::now(),
            departed_bytes: (AtomicU64::new(0), AtomicU64::new(0)),
            metrics: OnceLock::new(),
        })
    }

    /// Links the server (once, right after creating it).
    pub fn set_server(&self, server: &Arc<Server<NodeHandlers>>) {
        let _ = self.server.set(Arc::downgrade(server));
    }

    /// The server, while it exists.
    pub fn server(&self) -> Option<Arc<Server<NodeHandlers>>> {
        self.server.get().and_then(Weak::upgrade)
    }

    /// The header tree (short-held lock).
    pub fn tree(&self) -> MutexGuard<'_, HeaderTree> {
        self.tree.lock().expect("header tree lock")
    }

    /// Whether the tip is recent and has the minimum chain work (Core's
    /// `IsInitialBlockDownload` inverted, for headers).
    pub fn is_synced(&self) -> bool {
        let tree = self.tree();
        tree.is_synced_enough()
            && unix_now().saturating_sub(tree.tip().header.time) < MAX_TIP_AGE.as_secs() as u32
    }

    fn note_height(&self, height: i32) {
        self.best_known_height.fetch_max(height, Ordering::Relaxed);
    }

    /// A new peer was admitted.
    fn peer_admitted(&self, peer: &PeerHandle, kind: ConnectionKind) {
        self.note_height(peer.negotiated().start_height);
        if peer.negotiated().protocol_version >= SENDHEADERS_VERSION {
            let _ = peer.send(NetworkMessage::SendHeaders);
        }
        if kind == ConnectionKind::Inbound {
            return;
        }
        let mut sync = self.sync_peer.lock().expect("sync peer lock");
        if sync.is_none() {
            *sync = Some(peer.id());
            drop(sync);
            tracing::info!(peer = peer.id().0, addr = %peer.remote(), "syncing headers");
            self.request_headers(peer, None);
        } else if self.is_synced() {
            drop(sync);
            self.request_headers(peer, None);
        }
    }

    /// A peer's handler ended: if it was the sync peer, hand over to another outbound peer.
    fn peer_gone(&self, id: PeerId) {
        let mut sync = self.sync_peer.lock().expect("sync peer lock");
        if *sync != Some(id) {
            return;
        }
        *sync = None;
        let Some(server) = self.server() else { return };
        let next = server
            .handles()
            .into_iter()
            .find(|h| h.direction() == Direction::Outbound && h.id() != id && !h.is_disconnected());
        if let Some(next) = next {
            *sync = Some(next.id());
            drop(sync);
            tracing::info!(peer = next.id().0, addr = %next.remote(), "sync peer gone; syncing from another peer");
            self.request_headers(&next, None);
        }
    }

    /// Sends `getheaders` from `after` (the last header a peer sent) or from our tip.
    fn request_headers(&self, peer: &PeerHandle, after: Option<BlockHash>) {
        let mut locator = self.tree().locator();
        if let Some(last) = after {
            // Continue from the last header received even if it is not (yet) on our best chain,
            // or a long heavier fork would be requested from its start again and again.
            if locator.first() != Some(&last) {
                locator.insert(0, last);
            }
        }
        let _ = peer.push_getheaders(locator, BlockHash::all_zeros());
    }

    /// Validates and stores headers from `peer`, then continues or follows up.
    fn on_headers(&self, peer: &PeerHandle, headers: Vec<Header>) {
        if headers.is_empty() {
            return;
        }
        if let Some(index) = verack::chain::first_discontinuity(&headers) {
            // Core's CheckHeadersAreContinuous, before anything else: misbehaviour, and
            // Core disconnects (and discourages) the peer.
            tracing::warn!(peer = peer.id().0, addr = %peer.remote(), index, "non-continuous headers sequence");
            if let Some(server) = self.server() {
                server.misbehaving(peer.id(), 100, "non-continuous headers sequence");
            }
            peer.disconnect();
            return;
        }
        let count = headers.len();
        let last = headers[count - 1].block_hash();
        let outcome = self.tree().accept(&headers, unix_now());
        let (change, error) = match outcome {
            Ok(change) => (change, None),
            Err(rejected) => (rejected.tip_change, Some(rejected.error)),
        };
        if let Some(change) = change {
            self.tip_changed(change, Some(peer.id()));
        }
        match error {
            None => {
                if let Some(entry) = self.tree().get(&last) {
                    peer.update_last_block_height(entry.height as i32);
                    self.note_height(entry.height as i32);
                }
                if count == MAX_HEADERS {
                    self.request_headers(peer, Some(last));
                }
            }
            Some(HeaderError::UnknownParent { .. }) => {
                tracing::debug!(
                    peer = peer.id().0,
                    "headers do not connect; asking for the gap"
                );
                self.request_headers(peer, None);
            }
            Some(error) => {
                tracing::warn!(peer = peer.id().0, addr = %peer.remote(), %error, "invalid header");
                if let Some(server) = self.server() {
                    server.misbehaving(peer.id(), 100, &format!("invalid header: {error}"));
                }
            }
        }
    }

    /// Records, persists and announces a new tip.
    fn tip_changed(&self, change: TipChange, source: Option<PeerId>) {
        let connected = change.connected.len();
        self.headers_accepted
            .fetch_add(connected as u64, Ordering::Relaxed);
        let Some(tip) = change.connected.last().cloned() else {
            return;
        };
        self.tip_height.store(tip.height as i32, Ordering::Relaxed);
        self.note_height(tip.height as i32);
        if !change.disconnected.is_empty() {
            tracing::warn!(
                fork_height = change.fork_height,
                depth = change.disconnected.len(),
                old_tip = %change.old_tip,
                new_tip = %change.new_tip,
                "reorganisation"
            );
        }
        let announce: Vec<Header> = change
            .connected
            .iter()
            .rev()
            .take(MAX_BLOCKS_TO_ANNOUNCE)
            .rev()
            .map(|e| e.header)
            .collect();
        let _ = self.store.send(change);
        if !self.is_synced() {
            return;
        }
        let Some(server) = self.server() else { return };
        // Handles only: gathering every peer's stats per tip change would be wasted work.
        for handle in server.handles() {
            if Some(handle.id()) == source {
                continue;
            }
            if handle.remote_features().send_headers {
                let _ = handle.send(NetworkMessage::Headers(announce.clone()));
            } else {
                let _ = handle.queue_inventory([Inventory::Block(tip.hash)]);
            }
        }
    }

    /// Answers `getheaders` as Core: nothing while we are still syncing (so we never hand out a
    /// low-work chain), else up to 2000 headers after the locator's fork point.
    fn on_getheaders(&self, peer: &PeerHandle, msg: GetHeadersMessage) {
        if !self.tree().is_synced_enough() {
            tracing::debug!(
                peer = peer.id().0,
                "ignoring getheaders below the minimum chain work"
            );
            return;
        }
        let headers = self
            .tree()
            .headers_after(&msg.locator_hashes, msg.stop_hash, MAX_HEADERS);
        let _ = peer.send(NetworkMessage::Headers(headers));
    }

    /// A block `inv`: ask for headers if any announced block is unknown.
    fn on_inv(&self, peer: &PeerHandle, inv: Vec<Inventory>) {
        let unknown = inv.iter().any(|i| match i {
            Inventory::Block(h) | Inventory::WitnessBlock(h) | Inventory::CompactBlock(h) => {
                !self.tree().contains(h)
            }
            _ => false,
        });
        if unknown {
            self.request_headers(peer, None);
        }
    }
}

/// Makes a [`PeerHandler`] for each admitted peer.
pub struct NodeHandlers {
    /// The shared node.
    pub node: Arc<Node>,
}

impl PeerHandlers for NodeHandlers {
    type Handler = PeerHandler;

    fn handler(&self, peer: &PeerHandle, kind: ConnectionKind) -> PeerHandler {
        self.node.peer_admitted(peer, kind);
        PeerHandler {
            node: self.node.clone(),
            peer: peer.clone(),
        }
    }
}

/// One peer's handler; when dropped (the peer ended) a new sync peer is chosen if needed and
/// the peer's final traffic is folded into the metrics.
pub struct PeerHandler {
    node: Arc<Node>,
    peer: PeerHandle,
}

impl Drop for PeerHandler {
    fn drop(&mut self) {
        let stats = self.peer.stats();
        self.node
            .departed_bytes
            .0
            .fetch_add(stats.bytes_sent, Ordering::Relaxed);
        self.node
            .departed_bytes
            .1
            .fetch_add(stats.bytes_received, Ordering::Relaxed);
        if let Some(metrics) = self.node.metrics.get() {
            metrics.departed_peer(&crate::observe::sample(&stats));
        }
        self.node.peer_gone(self.peer.id());
    }
}

impl MessageHandler for PeerHandler {
    async fn on_headers(&mut self, peer: &PeerHandle, headers: Vec<Header>) {
        self.node.on_headers(peer, headers);
    }

    async fn on_getheaders(&mut self, peer: &PeerHandle, msg: GetHeadersMessage) {
        self.node.on_getheaders(peer, msg);
    }

    async fn on_inv(&mut self, peer: &PeerHandle, inv: Vec<Inventory>) {
        self.node.on_inv(peer, inv);
    }

    async fn on_pong(&mut self, peer: &PeerHandle, _nonce: u64) {
        if let (Some(metrics), Some(rtt)) = (self.node.metrics.get(), peer.stats().last_ping) {
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
