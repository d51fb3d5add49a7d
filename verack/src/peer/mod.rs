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
//! `feature`); they are recorded in [`Negotiated::features`]. Up to three other messages are
//! held and delivered, in order, as the first messages once the peer runs (dcrd's rule for old
//! peers that send `getheaders` early); a fourth fails with [`HandshakeError::NotVerack`].

mod config;
mod connection;
mod error;
mod flood;
mod handle;
mod handshake;
mod hooks;
mod inventory;
mod negotiated;
mod nonce;
mod ping;
mod push;
mod receive;
mod run;
mod stall;
mod stats;

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite};

pub use config::{
    PeerConfig, StartHeight, DEFAULT_MIN_PROTOCOL_VERSION, DEFAULT_PROTOCOL_VERSION,
    DEFAULT_USER_AGENT,
};
pub use error::{BoxError, DisconnectReason, HandshakeError, SendError, StallKind, Violation};
pub use handle::PeerHandle;
pub use handshake::{MAX_HELD_MESSAGES, WTXID_RELAY_VERSION};
pub use hooks::{dispatch, IgnoreMessages, MessageHandler, MessageHooks};
pub use inventory::{poisson_delay, MAX_INV_PER_MESSAGE};
pub use negotiated::{Negotiated, RemoteFeatures};
pub use nonce::{NonceCache, NONCE_CACHE_SIZE};
pub use ping::BIP31_VERSION;
pub use push::{select_addresses, MAX_ADDR_TO_SEND};
pub use receive::{
    BIP111_VERSION, MAX_ADDR_ENTRIES, MAX_HEADERS_ENTRIES, MAX_INV_ENTRIES, MAX_LOCATOR_ENTRIES,
};
pub use run::HandshakedPeer;
pub use stats::{PeerStats, OTHER_COMMAND};

use connection::PeerContext;
use stats::Counters;

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

/// A connection that has not completed the handshake. It can only be
/// [handshaked](Peer::handshake) or dropped.
pub struct Peer<S> {
    stream: S,
    read_buf: BytesMut,
    codec: V1Codec,
    ctx: Arc<PeerContext>,
    config: PeerConfig,
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> Peer<S> {
    /// A peer over `stream`, a connection in `direction` with `remote`.
    pub fn new(stream: S, direction: Direction, remote: SocketAddr, config: PeerConfig) -> Peer<S> {
        let ctx = PeerContext {
            id: PeerId(NEXT_PEER_ID.fetch_add(1, Ordering::Relaxed)),
            remote,
            direction,
            counters: Counters::new(),
            hooks: config.hooks.clone(),
        };
        Peer {
            stream,
            read_buf: BytesMut::new(),
            codec: V1Codec::new(config.network.magic()),
            ctx: Arc::new(ctx),
            config,
        }
    }

    /// A peer over a connection we opened to `remote`.
    pub fn outbound(stream: S, remote: SocketAddr, config: PeerConfig) -> Peer<S> {
        Peer::new(stream, Direction::Outbound, remote, config)
    }

    /// A peer over a connection `remote` opened to us.
    pub fn inbound(stream: S, remote: SocketAddr, config: PeerConfig) -> Peer<S> {
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

impl<S> fmt::Debug for Peer<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Peer")
            .field("id", &self.ctx.id)
            .field("remote", &self.ctx.remote)
            .field("direction", &self.ctx.direction)
            .finish_non_exhaustive()
    }
}
