//! Handshake errors, send errors and disconnect reasons.

use std::sync::Arc;
use std::time::Duration;

use crate::wire::DecodeError;

/// An error from a `version` callback, passed through unchanged.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why [`Peer::handshake`](super::Peer::handshake) failed. Match on the variant; the
/// `Display` text is for logs.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// More than [`MAX_IGNORED_BEFORE_VERSION`](super::MAX_IGNORED_BEFORE_VERSION) messages
    /// arrived before the remote's `version` (fewer are ignored, as Core does).
    #[error("expected version, got {command} after too many other messages")]
    NotVersion {
        /// The command received instead.
        command: String,
    },
    /// The remote `version` carried one of our own recent nonces: we connected to ourselves.
    #[error("self-connection detected (nonce {nonce:#x})")]
    SelfConnection {
        /// The nonce seen.
        nonce: u64,
    },
    /// The remote protocol version is below our minimum.
    #[error("protocol version {version} is below the minimum {min}")]
    ProtocolTooOld {
        /// The version the remote announced.
        version: u32,
        /// Our configured minimum.
        min: u32,
    },
    /// A `verack` was due but another message came: a second `version`, or a fourth message
    /// other than `verack` and the feature-negotiation messages.
    #[error("expected verack, got {command}")]
    NotVerack {
        /// The command received instead.
        command: String,
    },
    /// A BIP434 `feature` before `verack` that Core's net_processing disconnects for: the
    /// negotiated version is below 70017, or the payload does not parse.
    #[error("invalid feature message: {0}")]
    InvalidFeature(#[source] super::negotiated::FeatureError),
    /// The handshake did not finish within the configured timeout.
    #[error("handshake timed out after {after:?}")]
    Timeout {
        /// The timeout that elapsed.
        after: Duration,
    },
    /// The caller's cancellation token fired.
    #[error("handshake cancelled")]
    Cancelled,
    /// The `version` callback refused the remote; its error is the source, unchanged.
    #[error("remote version refused: {0}")]
    Refused(#[source] BoxError),
    /// Reading or writing the connection failed; a remote that closes mid-handshake gives
    /// `UnexpectedEof`.
    #[error("i/o error during handshake: {0}")]
    Io(#[from] std::io::Error),
    /// The remote's bytes were not valid frames (v1) or packets (v2: garbage terminator,
    /// packet length, authentication, in [`DecodeError::V2`]).
    #[error("framing error during handshake: {0}")]
    Framing(#[from] DecodeError),
    /// Our outbound BIP324 v2 attempt ended the way BIP324 says a v1-only peer answers:
    /// **re-dial the address over v1**. The address was added to the config's
    /// [`V1OnlyCache`](super::V1OnlyCache), so [`Peer::outbound`](super::Peer::outbound) /
    /// [`Peer::outbound_with_services`](super::Peer::outbound_with_services) pick v1 for it
    /// next time. This crate never re-dials (the caller owns the socket). Any other v2 failure
    /// is another variant and no reason to fall back.
    #[error("remote does not speak BIP324 v2 ({reason}); re-dial over v1")]
    V2RetryV1 {
        /// What the remote did.
        reason: RetryV1Reason,
    },
    /// The remote speaks v1 and [`V2Mode::Only`](crate::transport::V2Mode::Only) refuses it
    /// (an inbound v1 prefix, or an outbound v2 attempt answered in v1).
    #[error("remote speaks v1 and only v2 is allowed")]
    V1NotAllowed,
}

impl HandshakeError {
    /// Whether this is the re-dial-over-v1 hint ([`HandshakeError::V2RetryV1`]).
    pub fn retry_v1(&self) -> bool {
        matches!(self, HandshakeError::V2RetryV1 { .. })
    }
}

/// How a v1-only peer answered our v2 attempt, all with nothing (or only v1 bytes) received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RetryV1Reason {
    /// It closed the connection (end of stream).
    Closed,
    /// It reset or aborted the connection (or our write hit a closed pipe).
    Reset,
    /// Nothing arrived within [`v2_handshake_timeout`](super::PeerConfig::v2_handshake_timeout).
    Timeout,
    /// Its first bytes were v1 (our network magic where its public key should be).
    V1Reply,
}

impl std::fmt::Display for RetryV1Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RetryV1Reason::Closed => "closed before sending anything",
            RetryV1Reason::Reset => "reset before sending anything",
            RetryV1Reason::Timeout => "silent through the v2 key exchange",
            RetryV1Reason::V1Reply => "answered in v1",
        })
    }
}

/// A rule of the protocol the remote broke after the handshake.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Violation {
    /// `version` or `verack` after the handshake.
    #[error("{command} after the handshake")]
    RepeatedHandshake {
        /// `version` or `verack`.
        command: String,
    },
    /// A message only allowed between `version` and `verack` (`wtxidrelay`, `sendaddrv2`,
    /// `feature`) came after the handshake, as Core's net_processing rejects; also a late
    /// `sendtxrcncl` when we sent one in our handshake extension (as Core with
    /// `-txreconciliation`); otherwise a late `sendtxrcncl` is ignored, as Core without it.
    #[error("{command} after verack")]
    LateNegotiation {
        /// The command.
        command: String,
    },
    /// A message with more entries than Core accepts (`inv`/`getdata`/`notfound` 50,000,
    /// `headers` 2000, `addr`/`addrv2` 1000, locator 101), which Core's net_processing treats
    /// as misbehaviour.
    #[error("{command} with {count} entries (limit {max})")]
    TooManyEntries {
        /// The command.
        command: String,
        /// Entries received.
        count: usize,
        /// Core's limit.
        max: usize,
    },
    /// A BIP37 filter message while we do not advertise `NODE_BLOOM` (BIP111, version ≥ 70011).
    #[error("{command} without NODE_BLOOM (BIP111)")]
    BloomNotOffered {
        /// `filterload`, `filteradd` or `filterclear`.
        command: String,
    },
}

/// The kind of request whose reply did not arrive in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StallKind {
    /// `getheaders` without `headers`.
    Headers,
    /// `getdata` items without `block`/`tx`/`notfound`.
    Data,
}

/// Why a running peer ended, returned by [`HandshakedPeer::run`](super::HandshakedPeer::run)
/// and [`PeerHandle::closed`](super::PeerHandle::closed). The first reason wins.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum DisconnectReason {
    /// The remote closed the connection at a frame boundary.
    #[error("remote closed the connection")]
    RemoteClosed,
    /// [`PeerHandle::disconnect`](super::PeerHandle::disconnect) was called.
    #[error("disconnect requested locally")]
    LocalRequest,
    /// The cancellation token given to `run` fired.
    #[error("cancelled")]
    Cancelled,
    /// The remote broke a protocol rule.
    #[error("protocol violation: {0}")]
    ProtocolViolation(Violation),
    /// Nothing was received for the idle timeout.
    #[error("nothing received for {after:?}")]
    IdleTimeout {
        /// The configured idle timeout.
        after: Duration,
    },
    /// A ping went unanswered for the ping timeout.
    #[error("no pong for {after:?}")]
    PingTimeout {
        /// The configured ping timeout.
        after: Duration,
    },
    /// A request was not answered within its deadline.
    #[error("stalled: no reply to {kind:?} request within {after:?}")]
    Stalled {
        /// Which request stalled.
        kind: StallKind,
        /// Its deadline.
        after: Duration,
    },
    /// The remote sent more messages per second than allowed.
    #[error("flooding: {rate:.1} messages/s over the limit of {limit}")]
    Flooding {
        /// Measured rate, averaged over the connection.
        rate: f64,
        /// The configured limit.
        limit: f64,
    },
    /// Our unwritten queue exceeded its byte limit (the remote reads too slowly).
    #[error("send queue of {queued} bytes exceeds {limit}")]
    SendQueueFull {
        /// Bytes queued when the limit was crossed.
        queued: usize,
        /// The configured limit in bytes.
        limit: usize,
    },
    /// A write made no progress within its deadline.
    #[error("write of {bytes} bytes did not finish within {after:?}")]
    WriteTimeout {
        /// Bytes in the stuck write.
        bytes: usize,
        /// The deadline computed for it.
        after: Duration,
    },
    /// The remote's bytes could not be framed (wrong magic, oversize, truncated; for v2 a
    /// packet over the limit or failing authentication).
    #[error("framing error: {0}")]
    Framing(DecodeError),
    /// The socket failed.
    #[error("i/o error: {0}")]
    Io(Arc<std::io::Error>),
}

impl DisconnectReason {
    /// Whether the remote misbehaved (as opposed to a local decision, a timeout or the network
    /// failing): protocol violations, flooding and bad framing. A server scores these.
    pub fn is_misbehaviour(&self) -> bool {
        matches!(
            self,
            DisconnectReason::ProtocolViolation(_)
                | DisconnectReason::Flooding { .. }
                | DisconnectReason::Framing(_)
        )
    }
}

/// Why a message could not be queued.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// The peer is disconnected or disconnecting.
    #[error("peer disconnected")]
    Disconnected,
    /// The message is larger than peers accept (4,000,000-byte payload).
    #[error(transparent)]
    Oversize(#[from] crate::wire::OversizeMessage),
    /// `version`/`verack` cannot be sent after the handshake.
    #[error("{command} is only sent by the handshake")]
    HandshakeMessage {
        /// The command refused.
        command: String,
    },
    /// Queuing this message crossed the send-queue byte limit; the peer is being disconnected
    /// with [`DisconnectReason::SendQueueFull`].
    #[error("send queue full ({queued} bytes)")]
    QueueFull {
        /// Bytes that would have been queued.
        queued: usize,
    },
}
