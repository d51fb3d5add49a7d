//! What goes into the [`SyncManager`](super::SyncManager) and what comes out: inputs, actions,
//! typed misbehaviour, the configuration and its Core constants.

use std::time::{Duration, SystemTime};

use bitcoin::block::Header;
use bitcoin::p2p::ServiceFlags;
use bitcoin::BlockHash;

use crate::chain::{ChainParams, HeaderError, TipChange};
use crate::peer::{Negotiated, PeerId};
use crate::server::ConnectionKind;

use super::presync::HeadersSyncParams;

/// Core's `HEADERS_DOWNLOAD_TIMEOUT_BASE` (`src/net_processing.cpp`): the initial-sync peer
/// gets 15 minutes, plus [`HEADERS_DOWNLOAD_TIMEOUT_PER_HEADER`] per header expected.
pub const HEADERS_DOWNLOAD_TIMEOUT_BASE: Duration = Duration::from_secs(15 * 60);
/// Core's `HEADERS_DOWNLOAD_TIMEOUT_PER_HEADER`: 1 ms per header expected.
pub const HEADERS_DOWNLOAD_TIMEOUT_PER_HEADER: Duration = Duration::from_millis(1);
/// Core's `HEADERS_RESPONSE_TIME`: a new `getheaders` goes to a peer only when none was sent in
/// the last 2 minutes, unless an answer (a `headers` message that connects, or an empty one)
/// came in between (`MaybeSendGetHeaders`).
pub const HEADERS_RESPONSE_TIME: Duration = Duration::from_secs(2 * 60);
/// Core's `MAX_BLOCKS_TO_ANNOUNCE`: at most 8 new headers are announced by `headers`; a longer
/// run of new blocks is announced by `inv` of the tip.
pub const MAX_BLOCKS_TO_ANNOUNCE: usize = 8;
/// Core's `DEFAULT_MAX_TIP_AGE`: a tip older than 24 hours means we are still catching up
/// (initial block download, for headers).
pub const MAX_TIP_AGE: Duration = Duration::from_secs(24 * 60 * 60);
/// The first protocol version with `sendheaders` (BIP130; Core's `SENDHEADERS_VERSION`).
pub const SENDHEADERS_VERSION: u32 = 70012;
/// Core's `GetAntiDoSWorkThreshold` buffer: a chain is stored as it arrives only if its work
/// reaches our tip's minus 144 blocks of our tip's difficulty (and at least the minimum chain
/// work); a lower-work chain goes through presync.
pub const ANTI_DOS_WORK_BUFFER_BLOCKS: u32 = 144;

/// Settings of a [`SyncManager`](super::SyncManager). [`SyncConfig::new`] gives Core's values;
/// the fields are public so tests (or a light client) can change them.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SyncConfig {
    /// Headers per `headers` message: a message this long is "full" and the peer may have more
    /// (Core's `MAX_HEADERS_RESULTS`, 2000).
    pub max_headers: usize,
    /// See [`HEADERS_DOWNLOAD_TIMEOUT_BASE`] (15 min).
    pub download_timeout_base: Duration,
    /// See [`HEADERS_DOWNLOAD_TIMEOUT_PER_HEADER`] (1 ms).
    pub download_timeout_per_header: Duration,
    /// See [`HEADERS_RESPONSE_TIME`] (2 min).
    pub response_time: Duration,
    /// See [`MAX_TIP_AGE`] (24 h).
    pub max_tip_age: Duration,
    /// See [`MAX_BLOCKS_TO_ANNOUNCE`] (8).
    pub max_blocks_to_announce: usize,
    /// Presync memory parameters ([`HeadersSyncParams::for_network`]).
    pub presync: HeadersSyncParams,
}

impl SyncConfig {
    /// Core's values for the network of `params`.
    pub fn new(params: &ChainParams) -> SyncConfig {
        SyncConfig {
            max_headers: crate::chain::MAX_HEADERS_RESULTS,
            download_timeout_base: HEADERS_DOWNLOAD_TIMEOUT_BASE,
            download_timeout_per_header: HEADERS_DOWNLOAD_TIMEOUT_PER_HEADER,
            response_time: HEADERS_RESPONSE_TIME,
            max_tip_age: MAX_TIP_AGE,
            max_blocks_to_announce: MAX_BLOCKS_TO_ANNOUNCE,
            presync: HeadersSyncParams::for_network(params.network),
        }
    }
}

/// A peer as the sync manager needs to know it, from its handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    /// Its id.
    pub id: PeerId,
    /// Why it exists: only outbound peers (full-relay, block-relay-only, manual) are asked for
    /// headers on our initiative; inbound ones only when they announce a block.
    pub kind: ConnectionKind,
    /// The height it claimed in `version` (not verified; only reported).
    pub start_height: i32,
    /// Its services. Peers offering `NODE_NETWORK` or `NODE_NETWORK_LIMITED` are preferred as
    /// the initial-sync peer (Core's `CanServeBlocks`), but any outbound peer can be one, since
    /// header-only nodes such as verack serve headers without those bits.
    pub services: ServiceFlags,
    /// The negotiated protocol version (`sendheaders` needs [`SENDHEADERS_VERSION`]).
    pub protocol_version: u32,
    /// Whether it already asked for `headers` announcements (BIP130 `sendheaders` before
    /// `verack`); a later `sendheaders` is [`Input::SendHeaders`].
    pub prefers_headers: bool,
}

impl PeerInfo {
    /// The info of peer `id` of `kind` from its handshake outcome.
    pub fn from_negotiated(id: PeerId, kind: ConnectionKind, negotiated: &Negotiated) -> PeerInfo {
        PeerInfo {
            id,
            kind,
            start_height: negotiated.start_height,
            services: negotiated.services,
            protocol_version: negotiated.protocol_version,
            prefers_headers: negotiated.features.send_headers,
        }
    }

    /// Whether we opened the connection and it stays (not inbound, feeler or addr-fetch).
    pub fn is_outbound(&self) -> bool {
        matches!(
            self.kind,
            ConnectionKind::FullRelay | ConnectionKind::BlockRelayOnly | ConnectionKind::Manual
        )
    }
}

/// Something that happened, for [`SyncManager::handle`](super::SyncManager::handle).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// A peer completed the handshake.
    Connected(PeerInfo),
    /// The peer sent `sendheaders` (BIP130): announce new blocks to it with `headers`.
    SendHeaders(PeerId),
    /// The peer sent a `headers` message.
    Headers {
        /// Who sent it.
        peer: PeerId,
        /// Its headers, in message order.
        headers: Vec<Header>,
    },
    /// The peer announced blocks with `inv` (block items only: `MSG_BLOCK` and its witness and
    /// compact variants).
    BlockInv {
        /// Who sent it.
        peer: PeerId,
        /// The announced block hashes, in message order.
        blocks: Vec<BlockHash>,
    },
    /// The peer sent `getheaders`.
    GetHeaders {
        /// Who sent it.
        peer: PeerId,
        /// Its locator, newest first.
        locator: Vec<BlockHash>,
        /// Its stop hash (all zero: no stop).
        stop: BlockHash,
    },
    /// The peer disconnected.
    Disconnected(PeerId),
    /// Time passed: check the sync timeout. Call it every second or so.
    Tick,
}

/// How a new tip is announced to one peer (BIP130, as Core's `SendMessages`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Announcement {
    /// A `headers` message with these headers (at most [`MAX_BLOCKS_TO_ANNOUNCE`], the first
    /// building on a header the peer has).
    Headers(Vec<Header>),
    /// An `inv` of this block (the tip), through the peer's trickling and known-inventory
    /// filter.
    Inv(BlockHash),
}

/// Something for the caller to do, returned by [`SyncManager::handle`](super::SyncManager::handle)
/// in the order to do it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send `getheaders`.
    GetHeaders {
        /// To whom.
        peer: PeerId,
        /// The locator, newest first.
        locator: Vec<BlockHash>,
        /// The stop hash (always all-zero: as many as the peer gives).
        stop: BlockHash,
    },
    /// Answer a `getheaders` with this `headers` message (possibly empty).
    SendHeaders {
        /// To whom.
        peer: PeerId,
        /// The headers, in chain order.
        headers: Vec<Header>,
    },
    /// Send `sendheaders` (BIP130): we prefer `headers` announcements from this peer.
    PreferHeaders {
        /// To whom.
        peer: PeerId,
    },
    /// Announce a new tip.
    Announce {
        /// To whom.
        peer: PeerId,
        /// How.
        announcement: Announcement,
    },
    /// The peer misbehaved: add [`Misbehaviour::score`] to its ban score.
    Misbehaving {
        /// Who.
        peer: PeerId,
        /// What it did.
        reason: Misbehaviour,
    },
    /// Disconnect the peer.
    Disconnect {
        /// Who.
        peer: PeerId,
        /// Why.
        reason: DisconnectCause,
    },
    /// The active chain changed: persist it (the tree already holds the change).
    Persist(TipChange),
    /// The best header we know the peer has is now at `height` (for its stats; Core's
    /// `getpeerinfo.synced_headers`).
    PeerBestHeight {
        /// Who.
        peer: PeerId,
        /// The height.
        height: u32,
    },
}

/// Why a peer is reported as misbehaving. Scores are Core's `Misbehaving` values from before
/// v25 (when scores were replaced by immediate discouragement); at 100 a peer is banned.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Misbehaviour {
    /// A header's hash is above its own target, or its bits are not a valid target within the
    /// network's limit, checked on every header before anything else (Core's
    /// `CheckHeadersPoW`: "header with invalid proof of work"). Score 100.
    #[error("header with invalid proof of work ({hash})")]
    InvalidProofOfWork {
        /// The header's hash.
        hash: BlockHash,
    },
    /// A `headers` message whose header at `index` does not build on the one before it (Core's
    /// `CheckHeadersAreContinuous`: "non-continuous headers sequence"). Score 20, as Core
    /// v24; the peer is also disconnected, as Core does since v25.
    #[error("non-continuous headers sequence (header {index})")]
    NonContinuousHeaders {
        /// Index in the message of the first header that does not connect.
        index: usize,
    },
    /// A header broke a consensus rule (Core's `MaybePunishNodeForBlock` for
    /// `BLOCK_INVALID_HEADER`: "invalid header received"). Score 100. A header only too far in
    /// the future (Core's `BLOCK_TIME_FUTURE`) is rejected but not reported.
    #[error("invalid header received: {0}")]
    InvalidHeader(HeaderError),
}

impl Misbehaviour {
    /// The ban score it adds (Core v24's `Misbehaving` values): 100 for invalid proof of work
    /// or an invalid header, 20 for a non-continuous sequence.
    pub fn score(&self) -> u32 {
        match self {
            Misbehaviour::InvalidProofOfWork { .. } | Misbehaviour::InvalidHeader(_) => 100,
            Misbehaviour::NonContinuousHeaders { .. } => 20,
        }
    }
}

/// Why the manager asks for a disconnection.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DisconnectCause {
    /// The peer misbehaved in a way Core disconnects for (reported with
    /// [`Action::Misbehaving`] just before).
    #[error("{0}")]
    Misbehaviour(Misbehaviour),
    /// The initial-sync peer did not bring our best header within 24 hours of now by its
    /// deadline (Core: "Timeout downloading headers from peer=N, disconnecting"); another
    /// peer takes over.
    #[error("timeout downloading headers (deadline was {allowed:?} after the sync started)")]
    SyncTimeout {
        /// The time it was given: [`HEADERS_DOWNLOAD_TIMEOUT_BASE`] plus
        /// [`HEADERS_DOWNLOAD_TIMEOUT_PER_HEADER`] per header expected.
        allowed: Duration,
    },
}

/// What the manager knows of one peer, for reports (`getpeerinfo`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerSyncInfo {
    /// The height it claimed in `version`.
    pub start_height: i32,
    /// The best header we know it has (Core's `pindexBestKnownBlock`): hash and height.
    pub best_known: Option<(BlockHash, u32)>,
    /// The best header we sent it or know it has from our answers (Core's
    /// `pindexBestHeaderSent`).
    pub best_sent: Option<BlockHash>,
    /// Whether we asked it for headers on our initiative (Core's `fSyncStarted`).
    pub sync_started: bool,
    /// When the initial-sync deadline of this peer passes, while it has one.
    pub sync_deadline: Option<SystemTime>,
    /// Whether it prefers `headers` announcements (it sent `sendheaders`).
    pub prefers_headers: bool,
    /// Height reached by its presync while it has one (Core's
    /// `getpeerinfo.presynced_headers`, −1 otherwise).
    pub presync_height: Option<u32>,
}
