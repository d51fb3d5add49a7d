//! One Bitcoin peer over any async byte stream: construct, handshake, run.
//!
//! # Lifecycle
//! 1. [`Peer::outbound`] / [`Peer::inbound`] (or [`Peer::new`]) take an established connection
//!    (any `AsyncRead + AsyncWrite`: a `TcpStream`, a `tokio::io::duplex` half, a proxy
//!    stream), the remote address and a [`PeerConfig`]. Nothing is sent yet. The caller dials
//!    and listens.
//! 2. [`Peer::handshake`] is awaited: it exchanges `version`/`verack` and returns a
//!    [`HandshakedPeer`] or a [`HandshakeError`]. A [`Peer`] has no way to send messages or to
//!    run, so no message can go out before the handshake succeeded.
//! 3. [`HandshakedPeer::run`] drives full-duplex I/O until the peer disconnects and returns the
//!    [`DisconnectReason`]. [`PeerHandle`]s (from [`HandshakedPeer::handle`]) send messages,
//!    queue inventory, read stats and disconnect, from any task.
//!
//! # Transport (BIP324)
//! Before `version`, the transport is settled:
//! - **Inbound** (unless [`PeerConfig::v2`] is [`V2Mode::Off`]): the first bytes decide
//!   ([`detect_transport`](crate::transport::detect_transport)). All 16 bytes of a v1
//!   `version` header start (our magic, `version`, five NULs) mean v1: the handshake continues
//!   on the same bytes. Another magic followed by `version` fails with
//!   [`DecodeError::WrongMagic`](crate::wire::DecodeError::WrongMagic). Anything else is a v2
//!   initiator's key: we answer as the v2 responder. [`V2Mode::Only`] refuses v1 with
//!   [`HandshakeError::V1NotAllowed`].
//! - **Outbound**: the constructor decides. [`Peer::outbound`] (remote services unknown) uses
//!   v2 only with [`V2Mode::Always`]/[`V2Mode::Only`]; [`Peer::outbound_with_services`] also
//!   uses it with the default [`V2Mode::IfAdvertised`] when the remote advertises
//!   `NODE_P2P_V2` (e.g. from addr relay); both use v1 for an address in the
//!   [`V1OnlyCache`] (except with `Only`). [`Peer::outbound_with_transport`] forces a choice.
//!
//! The v2 key exchange (keys, up to 4095 bytes of random garbage, terminator, optional decoys,
//! version packet whose contents are ignored) has its own deadline,
//! [`PeerConfig::v2_handshake_timeout`] (10 s), inside the whole-handshake one. If an outbound
//! v2 attempt receives nothing before the remote closes, resets or the v2 deadline passes (or
//! the remote answers in v1), the error is [`HandshakeError::V2RetryV1`]: the caller should
//! re-dial over v1 — calling `Peer::outbound` or `Peer::outbound_with_services` again for the
//! same address does, since the address is now in the [`V1OnlyCache`]. Every other v2 failure
//! is a plain error. After the key exchange, `version`/`verack` and everything else travel in
//! v2 packets; [`Negotiated::transport`] and [`PeerStats::transport`] report the transport and
//! the BIP324 session id.
//!
//! # Handshake steps
//! Outbound: send `version` → read `version` → checks and callback → read until `verack` →
//! send `wtxidrelay` and `sendaddrv2` (negotiated version ≥ 70016) → send `verack`.
//!
//! Inbound: read `version` → checks and callback → send `version` → send `wtxidrelay` and
//! `sendaddrv2` (≥ 70016) → send `verack` → read until `verack`.
//!
//! This is dcrd's order (its synchronous-handshake change); Bitcoin Core interoperates with it
//! in both directions. Nothing is sent after a rejection: a refused inbound peer never sees our
//! `version`, a refused outbound peer never gets our `verack`. The checks, in order:
//! self-connection (the remote nonce is one of our recent outbound nonces), protocol version
//! below the minimum, then the caller's callback.
//!
//! Between `version` and `verack` the remote may send the feature-negotiation messages Core
//! accepts there (`sendheaders`, `sendcmpct`, `wtxidrelay`, `sendaddrv2`, `sendtxrcncl`,
//! BIP434 `feature`); they are recorded in [`Negotiated::features`]. A `feature` at a
//! negotiated version below 70017 or with a malformed payload fails with
//! [`HandshakeError::InvalidFeature`] (Core disconnects). Every message of a type rust-bitcoin
//! does not know (`sendtxrcncl`, `feature` and any other, e.g. a future extension's) is kept,
//! in order, in [`Negotiated::extra_messages`] (at most [`MAX_EXTRA_MESSAGES`] messages and
//! [`MAX_EXTRA_MESSAGE_BYTES`] bytes of payload; beyond that they are ignored, as BIP434 and
//! Core ignore unknown messages). Up to three other messages are held and delivered, in
//! order, as the first messages once the peer runs (dcrd's rule for old peers that send
//! `getheaders` early); a fourth fails with [`HandshakeError::NotVerack`].
//!
//! # Sending and "sent" notification
//! Every [`PeerHandle`] send queues its frame(s) before it returns, so calls made in order are
//! written in order. Each send path has a variant handing back a [`Sent`] future that resolves
//! once the frame(s) were written to the stream, or with the [`SendError`] saying why they
//! never will be (btcd's done channel): [`PeerHandle::send_and_wait`] and the `*_notify`
//! methods ([`PeerHandle::send_notify`], [`PeerHandle::send_all_notify`],
//! [`PeerHandle::queue_inventory_notify`], the `push_*_notify` helpers and
//! [`PeerHandle::send_raw_notify`]).
//!
//! # Raw frames
//! [`MessageHooks::frame_read`] sees every frame read as a [`RawFrame`]: command, payload as
//! [`bytes::Bytes`] sharing the read buffer, the v1 checksum and a [`FrameOutcome`] (decoded, or
//! dropped for a bad checksum or an undecodable payload, which otherwise only count under
//! `*other*`). [`PeerHandle::send_raw`] sends a pre-encoded
//! [`RawMessage`](crate::wire::RawMessage) (command + `Bytes` payload, optional known
//! checksum), framed by the writer for v1 or v2 and counted in stats, so a relay forwards a
//! frame with one copy and no re-encoding or re-hashing ([`RawFrame::to_raw_message`]).
//! rust-bitcoin's [`NetworkMessage`](bitcoin::p2p::message::NetworkMessage) owns its payloads
//! as `Vec`s, so decoded messages still cost one copy of the payload.
//!
//! # Handshake extension
//! [`PeerConfig::negotiation`] adds our own negotiation messages (e.g. `sendtxrcncl`, BIP434
//! `feature`), sent after `wtxidrelay`/`sendaddrv2` and before our `verack`; the remote's are in
//! [`Negotiated::extra_messages`], so a caller can implement a negotiated feature without
//! changing the handshake.

mod command_bytes;
mod config;
mod connection;
mod error;
mod fallback;
mod flood;
mod handle;
mod handshake;
mod hooks;
mod inventory;
mod negotiated;
mod nonce;
mod ping;
mod push;
mod queue;
mod receive;
mod run;
mod sent;
mod stall;
mod stats;
mod v2;

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bitcoin::p2p::ServiceFlags;
use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite};

pub use config::{
    NegotiationFn, PeerConfig, StartHeight, DEFAULT_MIN_PROTOCOL_VERSION, DEFAULT_PROTOCOL_VERSION,
    DEFAULT_USER_AGENT,
};
pub use error::{
    BoxError, DisconnectReason, HandshakeError, RetryV1Reason, SendError, StallKind, Violation,
};
pub use fallback::{V1OnlyCache, V1_ONLY_CACHE_SIZE};
pub use handle::PeerHandle;
pub use handshake::{
    MAX_EXTRA_MESSAGES, MAX_EXTRA_MESSAGE_BYTES, MAX_HELD_MESSAGES, MAX_IGNORED_BEFORE_VERSION,
    WTXID_RELAY_VERSION,
};
pub use hooks::{dispatch, FrameOutcome, IgnoreMessages, MessageHandler, MessageHooks, RawFrame};
pub use inventory::{poisson_delay, MAX_INV_PER_MESSAGE};
pub use negotiated::{
    Feature, FeatureError, Negotiated, RemoteFeatures, TxReconciliation, FEATURE_VERSION,
    MAX_FEATURE_DATA_LEN, MAX_FEATURE_ID_LEN, MAX_RECORDED_FEATURES, MIN_FEATURE_ID_LEN,
    SENDTXRCNCL_LEN,
};
pub use nonce::{NonceCache, NONCE_CACHE_SIZE};
pub use ping::BIP31_VERSION;
pub use push::{select_addresses, MAX_ADDR_TO_SEND};
pub use receive::{
    BIP111_VERSION, MAX_ADDR_ENTRIES, MAX_HEADERS_ENTRIES, MAX_INV_ENTRIES, MAX_LOCATOR_ENTRIES,
};
pub use run::HandshakedPeer;
pub use sent::Sent;
pub use stats::{PeerStats, OTHER_COMMAND};

pub(crate) use connection::local_addr_of;

use connection::{FrameDecoder, FrameEncoder, PeerContext};
use stats::Counters;

pub use crate::transport::{Transport, TransportKind, V2Mode};
use crate::wire::V1Codec;

/// Who opened the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// The remote connected to us.
    Inbound,
    /// We connected to the remote.
    Outbound,
}

/// A peer's id, unique within the process (a counter starting at 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PeerId(pub u64);

impl fmt::Display for PeerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

static NEXT_PEER_ID: AtomicU64 = AtomicU64::new(1);

/// How the transport is settled before the `version` exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plan {
    /// v1 from the first byte.
    V1,
    /// Inbound: look at the first bytes.
    Detect,
    /// Outbound: the v2 key exchange as initiator.
    V2Initiator,
}

/// A connection that has not completed the handshake. It can only be
/// [handshaked](Peer::handshake) or dropped.
pub struct Peer<S> {
    stream: S,
    read_buf: BytesMut,
    decoder: FrameDecoder,
    encoder: FrameEncoder,
    transport: Transport,
    plan: Plan,
    /// Raw bytes read from the socket during transport setup (for the v1 fallback hint).
    setup_bytes_read: usize,
    ctx: Arc<PeerContext>,
    config: Arc<PeerConfig>,
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> Peer<S> {
    /// A peer over `stream`, a connection in `direction` with `remote`.
    ///
    /// Inbound peers detect v1 or v2 (unless [`V2Mode::Off`]); outbound peers choose as
    /// [`Peer::outbound`] does.
    ///
    /// `config` is a [`PeerConfig`] or an `Arc` of one: peers may share one configuration
    /// (a [`Server`](crate::server::Server) does), which saves its ~330 bytes per peer.
    pub fn new(
        stream: S,
        direction: Direction,
        remote: SocketAddr,
        config: impl Into<Arc<PeerConfig>>,
    ) -> Peer<S> {
        let config = config.into();
        let plan = match direction {
            Direction::Inbound if config.v2.enabled() => Plan::Detect,
            Direction::Inbound => Plan::V1,
            Direction::Outbound => outbound_plan(&config, remote, None),
        };
        Peer::with_plan(stream, direction, remote, config, plan)
    }

    fn with_plan(
        stream: S,
        direction: Direction,
        remote: SocketAddr,
        config: Arc<PeerConfig>,
        plan: Plan,
    ) -> Peer<S> {
        let ctx = PeerContext {
            id: PeerId(NEXT_PEER_ID.fetch_add(1, Ordering::Relaxed)),
            remote,
            local: connection::local_addr_of(&stream),
            direction,
            counters: Counters::new(),
            hooks: config.hooks.clone(),
        };
        Peer {
            stream,
            read_buf: BytesMut::new(),
            decoder: FrameDecoder::V1(V1Codec::new(config.wire_magic())),
            encoder: FrameEncoder::V1,
            transport: Transport::V1,
            plan,
            setup_bytes_read: 0,
            ctx: Arc::new(ctx),
            config,
        }
    }

    /// A peer over a connection we opened to `remote`, whose services are not known.
    ///
    /// Uses v2 when [`PeerConfig::v2`] is [`V2Mode::Always`] (and `remote` is not in the
    /// [`V1OnlyCache`]) or [`V2Mode::Only`]; v1 otherwise, so with the default
    /// [`V2Mode::IfAdvertised`] this is a v1 connection. After a
    /// [`HandshakeError::V2RetryV1`], calling this again for the same address gives v1.
    pub fn outbound(stream: S, remote: SocketAddr, config: impl Into<Arc<PeerConfig>>) -> Peer<S> {
        Peer::new(stream, Direction::Outbound, remote, config)
    }

    /// A peer over a connection we opened to `remote`, which advertises `remote_services`
    /// (from addr relay or a previous connection).
    ///
    /// As [`Peer::outbound`], and with [`V2Mode::IfAdvertised`] v2 is used when
    /// `remote_services` has `NODE_P2P_V2` (bit 11) and `remote` is not in the
    /// [`V1OnlyCache`].
    pub fn outbound_with_services(
        stream: S,
        remote: SocketAddr,
        config: impl Into<Arc<PeerConfig>>,
        remote_services: ServiceFlags,
    ) -> Peer<S> {
        let config = config.into();
        let plan = outbound_plan(&config, remote, Some(remote_services));
        Peer::with_plan(stream, Direction::Outbound, remote, config, plan)
    }

    /// A peer over a connection we opened to `remote`, with the transport chosen by the caller
    /// (regardless of [`PeerConfig::v2`] and the [`V1OnlyCache`]). A failed v2 attempt still
    /// gives [`HandshakeError::V2RetryV1`] when BIP324 says so (unless the mode is
    /// [`V2Mode::Only`]).
    pub fn outbound_with_transport(
        stream: S,
        remote: SocketAddr,
        config: impl Into<Arc<PeerConfig>>,
        transport: TransportKind,
    ) -> Peer<S> {
        let config = config.into();
        let plan = match transport {
            TransportKind::V1 => Plan::V1,
            TransportKind::V2 => Plan::V2Initiator,
        };
        Peer::with_plan(stream, Direction::Outbound, remote, config, plan)
    }

    /// The transport an outbound peer will use; `None` for an inbound peer that detects it
    /// from the remote's first bytes.
    pub fn planned_transport(&self) -> Option<TransportKind> {
        match self.plan {
            Plan::V1 => Some(TransportKind::V1),
            Plan::V2Initiator => Some(TransportKind::V2),
            Plan::Detect => None,
        }
    }

    /// A peer over a connection `remote` opened to us.
    pub fn inbound(stream: S, remote: SocketAddr, config: impl Into<Arc<PeerConfig>>) -> Peer<S> {
        Peer::new(stream, Direction::Inbound, remote, config)
    }

    /// This peer's id (also that of the [`HandshakedPeer`] it becomes).
    pub fn id(&self) -> PeerId {
        self.ctx.id
    }

    /// The remote address given at construction.
    pub fn remote(&self) -> SocketAddr {
        self.ctx.remote
    }

    /// The direction given at construction.
    pub fn direction(&self) -> Direction {
        self.ctx.direction
    }
}

/// The transport of an outbound connection to `remote` (see [`Peer::outbound`]).
fn outbound_plan(config: &PeerConfig, remote: SocketAddr, services: Option<ServiceFlags>) -> Plan {
    let advertised = services.is_some_and(|s| s.has(ServiceFlags::P2P_V2));
    let v2 = match config.v2 {
        V2Mode::Off => false,
        V2Mode::Only => true,
        V2Mode::IfAdvertised => advertised && !config.v1_only_cache.contains(remote),
        V2Mode::Always => !config.v1_only_cache.contains(remote),
    };
    if v2 {
        Plan::V2Initiator
    } else {
        Plan::V1
    }
}

impl<S> fmt::Debug for Peer<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Peer")
            .field("id", &self.ctx.id)
            .field("remote", &self.ctx.remote)
            .field("direction", &self.ctx.direction)
            .finish_non_exhaustive()
    }
}
