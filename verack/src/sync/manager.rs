//! The sync manager: header-sync decisions as plain code. See the [module docs](super).

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bitcoin::block::Header;
use bitcoin::hashes::Hash as _;
use bitcoin::p2p::ServiceFlags;
use bitcoin::{BlockHash, Work};
use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::chain::{check_proof_of_work, HeaderError, HeaderTree, TipChange};
use crate::peer::PeerId;

use super::presync::{self, ChainStart, HeadersSyncState, PresyncSalt, State as PresyncState};
use super::types::{
    Action, Announcement, DisconnectCause, Input, Misbehaviour, PeerInfo, PeerSyncInfo, SyncConfig,
    SENDHEADERS_VERSION,
};
use super::walk;

/// Presync progress lines are logged at most this often (Core: 250 ms).
const PRESYNC_LOG_INTERVAL: Duration = Duration::from_millis(250);

/// What the manager keeps per peer (Core's `Peer` and `CNodeState` sync fields).
#[derive(Debug)]
struct PeerState {
    info: PeerInfo,
    /// It sent `sendheaders` (Core's `m_prefers_headers`).
    prefers_headers: bool,
    /// We sent it `sendheaders` (Core's `m_sent_sendheaders`).
    sent_sendheaders: bool,
    /// We asked it for headers on our initiative (Core's `fSyncStarted`).
    sync_started: bool,
    /// The initial-sync deadline and the time it allowed (Core's `m_headers_sync_timeout`).
    sync_deadline: Option<(SystemTime, Duration)>,
    /// Never again chosen to sync from (it misbehaved, sent an invalid header or timed out).
    excluded: bool,
    /// When our last `getheaders` to it went out, until an answer came (Core's
    /// `m_last_getheaders_timestamp`).
    last_getheaders: Option<SystemTime>,
    /// The best header we know it has (Core's `pindexBestKnownBlock`).
    best_known: Option<BlockHash>,
    /// The last header it announced that we did not know (Core's `hashLastUnknownBlock`).
    last_unknown: Option<BlockHash>,
    /// The best header we sent it (Core's `pindexBestHeaderSent`).
    best_sent: Option<BlockHash>,
    /// A block `inv` from it already started a `getheaders` before its sync started (Core's
    /// `m_inv_triggered_getheaders_before_sync`).
    inv_triggered_before_sync: bool,
    /// Its low-work headers sync (Core's `m_headers_sync`).
    presync: Option<Box<HeadersSyncState>>,
}

impl PeerState {
    fn new(info: PeerInfo) -> PeerState {
        PeerState {
            prefers_headers: info.prefers_headers,
            info,
            sent_sendheaders: false,
            sync_started: false,
            sync_deadline: None,
            excluded: false,
            last_getheaders: None,
            best_known: None,
            last_unknown: None,
            best_sent: None,
            inv_triggered_before_sync: false,
            presync: None,
        }
    }

    /// Core's `CanServeBlocks`: the preferred initial-sync peers.
    fn serves_blocks(&self) -> bool {
        self.info.services.has(ServiceFlags::NETWORK)
            || self.info.services.has(ServiceFlags::NETWORK_LIMITED)
    }

    /// Core's `MaybeSendGetHeaders` check: no `getheaders` in flight for longer than
    /// `response_time` (a clock that went backwards allows one).
    fn may_request(&self, now: SystemTime, response_time: Duration) -> bool {
        match self.last_getheaders {
            None => true,
            Some(sent) => now.duration_since(sent).map_or(true, |d| d > response_time),
        }
    }
}

/// Header sync for one node: owns the [`HeaderTree`], the initial-sync peer, each peer's best
/// known header and the presync states; takes [`Input`]s with the time and returns
/// [`Action`]s. No I/O, no clock, no ambient randomness. See the [module docs](super) for the
/// rules and their sources.
pub struct SyncManager {
    tree: HeaderTree,
    config: SyncConfig,
    peers: BTreeMap<PeerId, PeerState>,
    /// The initial-sync peer: the one asked first while no other was (Core's
    /// `nSyncStarted == 0` choice).
    sync_peer: Option<PeerId>,
    /// The best height a peer claimed or we know of, for progress reports.
    best_known_height: i32,
    /// The block whose `inv` last started a `getheaders` with a peer not yet syncing (Core's
    /// `m_last_block_inv_triggering_headers_sync`).
    last_inv_triggering_sync: Option<BlockHash>,
    /// Presync salts come from here.
    rng: StdRng,
    last_presync_log: Option<SystemTime>,
}

impl std::fmt::Debug for SyncManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncManager")
            .field("tree", &self.tree)
            .field("peers", &self.peers.len())
            .field("sync_peer", &self.sync_peer)
            .finish_non_exhaustive()
    }
}

/// Unix seconds of `now` (0 before 1970, `u32::MAX` after 2106).
fn unix_secs(now: SystemTime) -> u32 {
    now.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX))
}

impl SyncManager {
    /// A manager over `tree` (loaded from storage, or new), with `config` (usually
    /// [`SyncConfig::new`]) and `seed` for the secret presync salts: pass fresh randomness
    /// (e.g. `rand::random()`), a fixed seed only in tests.
    pub fn new(tree: HeaderTree, config: SyncConfig, seed: [u8; 32]) -> SyncManager {
        let best_known_height = i32::try_from(tree.height()).unwrap_or(i32::MAX);
        SyncManager {
            tree,
            config,
            peers: BTreeMap::new(),
            sync_peer: None,
            best_known_height,
            last_inv_triggering_sync: None,
            rng: StdRng::from_seed(seed),
            last_presync_log: None,
        }
    }

    /// The header tree (read-only: only the manager changes it).
    pub fn tree(&self) -> &HeaderTree {
        &self.tree
    }

    /// The configuration.
    pub fn config(&self) -> &SyncConfig {
        &self.config
    }

    /// The initial-sync peer, while there is one: chosen when no peer was being synced from,
    /// and kept until it disconnects, misbehaves or times out. `None` once it is gone while
    /// others are already syncing (after the tip is within 24 h of now every outbound peer is).
    pub fn sync_peer(&self) -> Option<PeerId> {
        self.sync_peer
    }

    /// The best height any peer claimed in `version` or any header we hold has: a progress
    /// target, never decreasing, not verified.
    pub fn best_known_height(&self) -> i32 {
        self.best_known_height
    }

    /// Whether the chain is synced at `now`: it has the minimum chain work and its tip is less
    /// than [`max_tip_age`](SyncConfig::max_tip_age) (24 h) old (Core's
    /// `IsInitialBlockDownload`, negated). Tip announcements wait for it.
    pub fn is_synced(&self, now: SystemTime) -> bool {
        self.tree.is_synced_enough() && !self.tip_is_old(now)
    }

    /// What the manager knows of peer `id`, if it is connected.
    pub fn peer(&self, id: PeerId) -> Option<PeerSyncInfo> {
        let p = self.peers.get(&id)?;
        Some(PeerSyncInfo {
            start_height: p.info.start_height,
            best_known: p
                .best_known
                .and_then(|h| Some((h, self.tree.height_of_hash(&h)?))),
            best_sent: p.best_sent,
            sync_started: p.sync_started,
            sync_deadline: p.sync_deadline.map(|(d, _)| d),
            prefers_headers: p.prefers_headers,
            presync_height: p
                .presync
                .as_ref()
                .filter(|s| s.state() != PresyncState::Final)
                .map(|s| s.presync_height()),
        })
    }

    /// The peers it knows, in id order.
    pub fn peer_ids(&self) -> impl Iterator<Item = PeerId> + '_ {
        self.peers.keys().copied()
    }

    /// Takes one input at `now` and returns what to do, in order.
    ///
    /// Inputs about a peer that is not connected (no [`Input::Connected`] yet, or after
    /// [`Input::Disconnected`]) are ignored. Nothing a peer sends makes this panic.
    pub fn handle(&mut self, input: Input, now: SystemTime) -> Vec<Action> {
        let mut out = Vec::new();
        match input {
            Input::Connected(info) => {
                self.best_known_height = self.best_known_height.max(info.start_height);
                self.peers.insert(info.id, PeerState::new(info));
            }
            Input::SendHeaders(id) => {
                if let Some(p) = self.peers.get_mut(&id) {
                    p.prefers_headers = true;
                }
            }
            Input::Headers { peer, headers } => self.on_headers(peer, headers, now, &mut out),
            Input::BlockInv { peer, blocks } => self.on_block_inv(peer, &blocks, now, &mut out),
            Input::GetHeaders {
                peer,
                locator,
                stop,
            } => self.on_getheaders(peer, &locator, stop, &mut out),
            Input::Disconnected(id) => {
                self.peers.remove(&id);
                if self.sync_peer == Some(id) {
                    self.sync_peer = None;
                    tracing::info!(peer = id.0, "sync peer gone");
                }
            }
            Input::Tick => self.check_timeouts(now, &mut out),
        }
        self.start_syncs(now, &mut out);
        self.send_sendheaders(&mut out);
        out
    }

    fn tip_is_old(&self, now: SystemTime) -> bool {
        i64::from(self.tree.tip().header.time)
            <= i64::from(unix_secs(now)) - self.config.max_tip_age.as_secs() as i64
    }

    /// Core's `GetAntiDoSWorkThreshold` ([`presync::anti_dos_work_threshold`]): our tip's
    /// work minus 144 blocks at its difficulty, and at least the minimum chain work.
    fn anti_dos_threshold(&self) -> Work {
        let tip = self.tree.tip();
        presync::anti_dos_work_threshold(
            tip.chain_work,
            tip.header.bits,
            self.tree.params().min_chain_work,
        )
    }

    /// The peer stops being an initial-sync candidate (another is picked by `start_syncs`).
    fn stop_syncing_from(&mut self, id: PeerId) {
        if let Some(p) = self.peers.get_mut(&id) {
            p.excluded = true;
            p.sync_started = false;
            p.sync_deadline = None;
        }
        if self.sync_peer == Some(id) {
            self.sync_peer = None;
            tracing::info!(
                peer = id.0,
                "no longer syncing headers from this peer; choosing another"
            );
        }
    }

    fn misbehaving(&mut self, id: PeerId, reason: Misbehaviour, out: &mut Vec<Action>) {
        tracing::warn!(peer = id.0, %reason, score = reason.score(), "peer misbehaving");
        out.push(Action::Misbehaving { peer: id, reason });
        self.stop_syncing_from(id);
    }

    /// Core's `ProcessHeadersMessage`.
    fn on_headers(
        &mut self,
        id: PeerId,
        headers: Vec<Header>,
        now: SystemTime,
        out: &mut Vec<Action>,
    ) {
        let Some(p) = self.peers.get_mut(&id) else {
            return;
        };
        if headers.is_empty() {
            // Nothing more from this peer: an answer to our last getheaders, and the end of
            // any presync it was in.
            if p.presync.take().is_some() {
                tracing::debug!(peer = id.0, "presync ended by an empty headers message");
            }
            p.last_getheaders = None;
            return;
        }
        // Core's CheckHeadersPoW, before anything looks at the headers.
        if let Some(reason) = self.sanity_check(&headers) {
            self.misbehaving(id, reason.clone(), out);
            if let Misbehaviour::NonContinuousHeaders { .. } = reason {
                out.push(Action::Disconnect {
                    peer: id,
                    reason: DisconnectCause::Misbehaviour(reason),
                });
            }
            return;
        }
        let full = headers.len() == self.config.max_headers;
        let mut headers = headers;
        let mut validated_work = false;
        if self.peers.get(&id).is_some_and(|p| p.presync.is_some()) {
            // On failure the headers are handled as if there had been no presync.
            if let Some(released) = self.continue_presync(id, &headers, full, now, out) {
                validated_work = true;
                headers = released;
                if headers.is_empty() {
                    return;
                }
            }
        }
        let in_presync = self.peers.get(&id).is_some_and(|p| p.presync.is_some());
        let first_prev = headers[0].prev_blockhash;
        let last_hash = headers[headers.len() - 1].block_hash();
        let Some(start) = self.tree.get(&first_prev) else {
            self.unconnecting(id, last_hash, now, out);
            return;
        };
        let start_work = start.chain_work;
        // Headers that connect answer our getheaders.
        if let Some(p) = self.peers.get_mut(&id) {
            p.last_getheaders = None;
        }
        // Headers we hold on the active chain cost nothing more (Core's
        // IsAncestorOfBestHeaderOrTip: our best header is our tip).
        validated_work |= self.tree.is_active(&last_hash);
        if !validated_work {
            let threshold = self.anti_dos_threshold();
            if presync::claimed_chain_work(start_work, &headers) < threshold {
                if full {
                    self.start_presync(id, first_prev, threshold, &headers, now, out);
                } else {
                    tracing::debug!(
                        peer = id.0,
                        height = self.tree.height_of_hash(&first_prev).unwrap_or(0)
                            + headers.len() as u32,
                        "ignoring low-work chain"
                    );
                }
                return;
            }
        }
        self.accept(id, &headers, full && !in_presync, now, out);
    }

    /// Core's `CheckHeadersPoW`: each header meets its own proof-of-work target, then each
    /// builds on the one before it. The first failure, if any.
    fn sanity_check(&self, headers: &[Header]) -> Option<Misbehaviour> {
        let params = self.tree.params();
        for header in headers {
            let hash = header.block_hash();
            if !check_proof_of_work(params, hash, header.bits) {
                return Some(Misbehaviour::InvalidProofOfWork { hash });
            }
        }
        crate::chain::first_discontinuity(headers)
            .map(|index| Misbehaviour::NonContinuousHeaders { index })
    }

    /// Validates and stores `headers` from `id` (they connect and have enough work), announces
    /// and persists a new tip, and asks for more after a full message (`ask_more`).
    fn accept(
        &mut self,
        id: PeerId,
        headers: &[Header],
        ask_more: bool,
        now: SystemTime,
        out: &mut Vec<Action>,
    ) {
        let (change, error) = match self.tree.accept(headers, unix_secs(now)) {
            Ok(change) => (change, None),
            Err(rejected) => (rejected.tip_change, Some((rejected.index, rejected.error))),
        };
        let accepted = error.as_ref().map_or(headers.len(), |(index, _)| *index);
        if accepted > 0 {
            let last = headers[accepted - 1].block_hash();
            if let Some(height) = self.tree.height_of_hash(&last) {
                self.best_known_height = self
                    .best_known_height
                    .max(i32::try_from(height).unwrap_or(i32::MAX));
            }
            self.update_availability(id, last, out);
        }
        if let Some(change) = change {
            self.tip_changed(change, now, out);
        }
        match error {
            None => {
                let last = headers[headers.len() - 1].block_hash();
                let response_time = self.config.response_time;
                if ask_more {
                    let locator = walk::locator(&self.tree, &last);
                    if let Some(p) = self.peers.get_mut(&id) {
                        if p.may_request(now, response_time) {
                            p.last_getheaders = Some(now);
                            out.push(Action::GetHeaders {
                                peer: id,
                                locator,
                                stop: BlockHash::all_zeros(),
                            });
                        }
                    }
                }
            }
            Some((_, HeaderError::UnknownParent { hash, .. })) => {
                // A parent dropped by the fork bound while the batch was accepted.
                self.unconnecting(id, hash, now, out);
            }
            Some((
                _,
                error @ (HeaderError::TimeTooNew { .. } | HeaderError::MissingAncestor { .. }),
            )) => {
                // Core's BLOCK_TIME_FUTURE: rejected, not punished (it may become valid). A
                // missing ancestor is our trusted start's limit, not the peer's fault. As Core,
                // the peer's sync state is left alone: it is not shut out of sync (our clock
                // may be the one that is wrong), and Core's sync timeout still applies.
                tracing::debug!(peer = id.0, %error, "header not accepted");
            }
            Some((_, error)) => {
                self.misbehaving(id, Misbehaviour::InvalidHeader(error), out);
            }
        }
    }

    /// Core's `HandleUnconnectingHeaders`: ask for the gap from our tip (if no `getheaders`
    /// is in flight), remember the announced header; no penalty.
    fn unconnecting(
        &mut self,
        id: PeerId,
        last: BlockHash,
        now: SystemTime,
        out: &mut Vec<Action>,
    ) {
        let response_time = self.config.response_time;
        let Some(p) = self.peers.get_mut(&id) else {
            return;
        };
        if p.may_request(now, response_time) {
            p.last_getheaders = Some(now);
            tracing::debug!(peer = id.0, header = %last, "headers do not connect; asking for the gap");
            out.push(Action::GetHeaders {
                peer: id,
                locator: self.tree.locator(),
                stop: BlockHash::all_zeros(),
            });
        }
        self.update_availability(id, last, out);
    }

    /// Core's `ProcessBlockAvailability`: a header the peer announced before we knew it.
    fn resolve_unknown(&mut self, id: PeerId, out: &mut Vec<Action>) {
        let Some(p) = self.peers.get_mut(&id) else {
            return;
        };
        let Some(hash) = p.last_unknown else {
            return;
        };
        if self.tree.contains(&hash) {
            p.last_unknown = None;
            self.update_availability(id, hash, out);
        }
    }

    /// Core's `UpdateBlockAvailability`: the peer has `hash`.
    fn update_availability(&mut self, id: PeerId, hash: BlockHash, out: &mut Vec<Action>) {
        self.resolve_unknown(id, out);
        let Some(p) = self.peers.get_mut(&id) else {
            return;
        };
        let Some(height) = self.tree.height_of_hash(&hash) else {
            p.last_unknown = Some(hash);
            return;
        };
        if p.best_known == Some(hash) {
            return;
        }
        // On the active chain work grows with height, so two active headers compare by height
        // (one hash lookup each: a deep header's chain work is summed on demand, and a peer
        // can name 50,000 of them in one inv). Anything else compares chain work.
        let better = match p.best_known {
            None => true,
            Some(best) if self.tree.is_active(&hash) && self.tree.is_active(&best) => self
                .tree
                .height_of_hash(&best)
                .is_none_or(|best_height| height >= best_height),
            Some(best) => match (self.tree.get(&hash), self.tree.get(&best)) {
                (Some(entry), Some(best)) => entry.chain_work >= best.chain_work,
                _ => true,
            },
        };
        if better {
            p.best_known = Some(hash);
            out.push(Action::PeerBestHeight { peer: id, height });
        }
    }

    /// Core's `TryLowWorkHeadersSync`: a full message of a chain with too little work starts
    /// a presync from the header it builds on; nothing is stored.
    fn start_presync(
        &mut self,
        id: PeerId,
        start: BlockHash,
        threshold: Work,
        headers: &[Header],
        now: SystemTime,
        out: &mut Vec<Action>,
    ) {
        let Some(chain_start) = ChainStart::from_tree(&self.tree, &start) else {
            return;
        };
        let locator = walk::locator(&self.tree, &start);
        let salt = PresyncSalt::random(&mut self.rng);
        let state = HeadersSyncState::new(
            self.tree.params(),
            self.config.presync,
            &chain_start,
            locator,
            threshold,
            salt,
            unix_secs(now),
        );
        tracing::debug!(
            peer = id.0,
            start_height = chain_start.height,
            "low-work headers: starting presync"
        );
        if let Some(p) = self.peers.get_mut(&id) {
            p.presync = Some(Box::new(state));
        }
        // In presync nothing is released.
        let _ = self.continue_presync(
            id,
            headers,
            headers.len() == self.config.max_headers,
            now,
            out,
        );
    }

    /// Core's `IsContinuationOfLowWorkHeadersSync`: feeds the peer's presync. Returns the
    /// headers it releases (to validate and store without a further work check; empty while
    /// in presync), or `None` when the presync failed (then the message is handled as if
    /// there had been none).
    fn continue_presync(
        &mut self,
        id: PeerId,
        headers: &[Header],
        full: bool,
        now: SystemTime,
        out: &mut Vec<Action>,
    ) -> Option<Vec<Header>> {
        let spacing = self.tree.params().consensus.pow_target_spacing;
        let below_min = !self.tree.is_synced_enough();
        let p = self.peers.get_mut(&id)?;
        let sync = p.presync.as_mut()?;
        let result = sync.process_next_headers(headers, full);
        if result.success {
            p.last_getheaders = None;
        }
        if result.request_more {
            let locator = sync.next_headers_request_locator();
            if !locator.is_empty() {
                p.last_getheaders = Some(now);
                out.push(Action::GetHeaders {
                    peer: id,
                    locator,
                    stop: BlockHash::all_zeros(),
                });
            }
        }
        let state = sync.state();
        let (height, time, work) = (
            sync.presync_height(),
            sync.presync_time(),
            sync.presync_work(),
        );
        if state == PresyncState::Final {
            tracing::debug!(peer = id.0, end = ?sync.end(), "presync over");
            p.presync = None;
        }
        if state == PresyncState::Presync && below_min {
            let best = self
                .peers
                .values()
                .filter_map(|q| q.presync.as_ref())
                .filter(|s| s.state() == PresyncState::Presync)
                .map(|s| s.presync_work())
                .max();
            let due = self.last_presync_log.is_none_or(|t| {
                now.duration_since(t)
                    .map_or(true, |d| d >= PRESYNC_LOG_INTERVAL)
            });
            if best == Some(work) && due {
                self.last_presync_log = Some(now);
                tracing::info!(
                    "Pre-synchronizing blockheaders, height: {height} (~{:.2}%)",
                    super::presync::presync_progress(height, time, unix_secs(now), spacing)
                );
            }
        }
        result.success.then_some(result.pow_validated_headers)
    }

    /// Records, persists and announces a new tip.
    fn tip_changed(&mut self, change: TipChange, now: SystemTime, out: &mut Vec<Action>) {
        if !change.disconnected.is_empty() {
            tracing::warn!(
                fork_height = change.fork_height,
                depth = change.disconnected.len(),
                old_tip = %change.old_tip,
                new_tip = %change.new_tip,
                "reorganisation"
            );
        }
        if let Some(tip) = change.connected.last() {
            self.best_known_height = self
                .best_known_height
                .max(i32::try_from(tip.height).unwrap_or(i32::MAX));
        }
        // Core's UpdatedBlockTip: the new active hashes above the fork, at most 8 (older ones
        // are left to the peers' own sync).
        let max = self.config.max_blocks_to_announce;
        let skip = change.connected.len().saturating_sub(max);
        let new: Vec<BlockHash> = change.connected[skip..].iter().map(|e| e.hash).collect();
        out.push(Action::Persist(change));
        if new.is_empty() || !self.is_synced(now) {
            return;
        }
        let ids: Vec<PeerId> = self.peers.keys().copied().collect();
        for id in ids {
            self.resolve_unknown(id, out);
            let Some(p) = self.peers.get_mut(&id) else {
                continue;
            };
            let tree = &self.tree;
            let (known, sent) = (p.best_known, p.best_sent);
            let peer_has = |hash: &BlockHash| {
                [known, sent]
                    .iter()
                    .flatten()
                    .any(|of| walk::is_ancestor(tree, hash, of))
            };
            if let Some(announcement) =
                super::announce::announcement(tree, &new, p.prefers_headers, max, peer_has)
            {
                if let Announcement::Headers(headers) = &announcement {
                    p.best_sent = headers.last().map(Header::block_hash);
                }
                out.push(Action::Announce {
                    peer: id,
                    announcement,
                });
            }
        }
    }

    /// Core's `inv` handling for blocks.
    fn on_block_inv(
        &mut self,
        id: PeerId,
        blocks: &[BlockHash],
        now: SystemTime,
        out: &mut Vec<Action>,
    ) {
        if !self.peers.contains_key(&id) {
            return;
        }
        let mut best_block = None;
        for hash in blocks {
            if !self.tree.contains(hash) {
                best_block = Some(*hash);
            }
            self.update_availability(id, *hash, out);
        }
        let Some(block) = best_block else {
            return;
        };
        let response_time = self.config.response_time;
        let last_trigger = self.last_inv_triggering_sync;
        let Some(p) = self.peers.get_mut(&id) else {
            return;
        };
        // Before its sync started, a peer gets one getheaders for an inv, and only one peer
        // per new block (Core: "add one new peer per block to sync with").
        if p.sync_started || (!p.inv_triggered_before_sync && last_trigger != Some(block)) {
            if p.may_request(now, response_time) {
                p.last_getheaders = Some(now);
                tracing::debug!(peer = id.0, %block, "unknown block announced; asking for headers");
                out.push(Action::GetHeaders {
                    peer: id,
                    locator: self.tree.locator(),
                    stop: BlockHash::all_zeros(),
                });
            }
            if !p.sync_started {
                p.inv_triggered_before_sync = true;
                self.last_inv_triggering_sync = Some(block);
            }
        }
    }

    /// Core's `getheaders` answer: nothing while our chain has less than the minimum chain
    /// work (so we never hand out a low-work chain), nothing for a null locator whose stop
    /// hash we do not know, else up to 2000 active headers after the locator's fork point.
    fn on_getheaders(
        &mut self,
        id: PeerId,
        locator: &[BlockHash],
        stop: BlockHash,
        out: &mut Vec<Action>,
    ) {
        let Some(p) = self.peers.get_mut(&id) else {
            return;
        };
        if !self.tree.is_synced_enough() {
            tracing::debug!(
                peer = id.0,
                "ignoring getheaders below the minimum chain work"
            );
            return;
        }
        if locator.is_empty() && !self.tree.contains(&stop) {
            return;
        }
        let headers = self
            .tree
            .headers_after(locator, stop, self.config.max_headers);
        // What the peer has now (Core resets pindexBestHeaderSent to it).
        p.best_sent = match headers.last() {
            Some(last) => Some(last.block_hash()),
            None if !locator.is_empty() => Some(self.tree.tip().hash),
            None => p.best_sent,
        };
        out.push(Action::SendHeaders { peer: id, headers });
    }

    /// Core's headers-sync timeout check (`SendMessages`): while our tip is older than 24 h,
    /// the only syncing peer past its deadline is disconnected if another could take over;
    /// once the tip is recent, deadlines are dropped.
    fn check_timeouts(&mut self, now: SystemTime, out: &mut Vec<Action>) {
        let behind = self.tip_is_old(now);
        let started = self.peers.values().filter(|p| p.sync_started).count();
        let ids: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(_, p)| p.sync_deadline.is_some())
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            if !behind {
                if let Some(p) = self.peers.get_mut(&id) {
                    p.sync_deadline = None;
                }
                continue;
            }
            let Some((deadline, allowed)) = self.peers.get(&id).and_then(|p| p.sync_deadline)
            else {
                continue;
            };
            let other = self
                .peers
                .iter()
                .any(|(o, q)| *o != id && q.info.is_outbound() && !q.excluded);
            if now > deadline && started == 1 && other {
                tracing::info!(
                    peer = id.0,
                    ?allowed,
                    "timeout downloading headers; disconnecting"
                );
                out.push(Action::Disconnect {
                    peer: id,
                    reason: DisconnectCause::SyncTimeout { allowed },
                });
                self.stop_syncing_from(id);
            }
        }
    }

    /// Core's sync start (`SendMessages`): one outbound peer at a time while the tip is older
    /// than 24 h, every outbound peer once it is recent; `getheaders` from our tip's parent
    /// (so an up-to-date peer answers with at least our tip), and the download deadline.
    fn start_syncs(&mut self, now: SystemTime, out: &mut Vec<Action>) {
        let close_to_today = !self.tip_is_old(now);
        let mut started = self.peers.values().filter(|p| p.sync_started).count();
        if started > 0 && !close_to_today {
            return;
        }
        let mut candidates: Vec<(bool, PeerId)> = self
            .peers
            .iter()
            .filter(|(_, p)| p.info.is_outbound() && !p.sync_started && !p.excluded)
            .map(|(id, p)| (!p.serves_blocks(), *id))
            .collect();
        if candidates.is_empty() {
            return;
        }
        candidates.sort();
        let tip = self.tree.tip();
        let from = if tip.height > self.tree.start_height() {
            tip.header.prev_blockhash
        } else {
            tip.hash
        };
        let locator = walk::locator(&self.tree, &from);
        let spacing = self.tree.params().consensus.pow_target_spacing.max(1);
        let behind_secs = u64::from(unix_secs(now).saturating_sub(tip.header.time));
        let expected = behind_secs / spacing;
        let per_header = self.config.download_timeout_per_header.as_micros();
        let allowed = self.config.download_timeout_base
            + Duration::from_micros(
                u64::try_from(per_header.saturating_mul(u128::from(expected))).unwrap_or(u64::MAX),
            );
        let response_time = self.config.response_time;
        for (_, id) in candidates {
            if started > 0 && !close_to_today {
                break;
            }
            let Some(p) = self.peers.get_mut(&id) else {
                continue;
            };
            if !p.may_request(now, response_time) {
                continue;
            }
            p.last_getheaders = Some(now);
            p.sync_started = true;
            p.sync_deadline = Some((now + allowed, allowed));
            out.push(Action::GetHeaders {
                peer: id,
                locator: locator.clone(),
                stop: BlockHash::all_zeros(),
            });
            if started == 0 {
                self.sync_peer = Some(id);
                tracing::info!(
                    peer = id.0,
                    start_height = p.info.start_height,
                    expected,
                    ?allowed,
                    "syncing headers"
                );
            }
            started += 1;
        }
    }

    /// Core's `MaybeSendSendHeaders`: `sendheaders` once the peer is known to have a header
    /// with more than the minimum chain work (so announcements do not arrive during its
    /// initial sync).
    fn send_sendheaders(&mut self, out: &mut Vec<Action>) {
        let ids: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(_, p)| !p.sent_sendheaders && p.info.protocol_version >= SENDHEADERS_VERSION)
            .map(|(id, _)| *id)
            .collect();
        let min_work = self.tree.params().min_chain_work;
        for id in ids {
            self.resolve_unknown(id, out);
            let Some(p) = self.peers.get_mut(&id) else {
                continue;
            };
            let enough = p
                .best_known
                .and_then(|b| self.tree.get(&b))
                .is_some_and(|e| e.chain_work > min_work);
            if enough {
                p.sent_sendheaders = true;
                out.push(Action::PreferHeaders { peer: id });
            }
        }
    }
}
