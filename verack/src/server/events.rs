//! Peer events for subscribers.
//!
//! Delivery uses a bounded broadcast channel: the server never waits for a subscriber. A
//! subscriber that falls more than [`event_capacity`](super::ServerConfig::event_capacity)
//! events behind gets `Err(RecvError::Lagged(n))` telling how many it missed, then continues
//! with the oldest event still buffered (unlike geth's feed, whose `Send` blocks on slow
//! subscribers).
//!
//! Addresses are the server's keys: the socket address of an IPv4/IPv6 peer, a
//! [stand-in](crate::address::stand_in) (`fd87:d87e:eb43::/48`) for a Tor, I2P or CJDNS peer.
//! [`PeerAddr::from_stand_in`](crate::address::PeerAddr::from_stand_in) gives the real address
//! (`xxx.onion:8333`), as Core's `getpeerinfo` shows it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;

use crate::peer::{Direction, DisconnectReason, HandshakeError, Negotiated, PeerId, PeerStats};

use super::{ConnectionKind, Refusal};

/// Something that happened to a connection.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum PeerEvent {
    /// A peer completed the handshake and was admitted.
    Connected {
        /// Its id.
        id: PeerId,
        /// Its address.
        addr: SocketAddr,
        /// Why it exists.
        kind: ConnectionKind,
        /// What the handshake agreed on.
        negotiated: Box<Negotiated>,
    },
    /// An admitted peer disconnected.
    Disconnected {
        /// Its id.
        id: PeerId,
        /// Its address.
        addr: SocketAddr,
        /// Why.
        reason: DisconnectReason,
        /// How long it was connected.
        connected_for: Duration,
        /// Its final stats (bytes and messages each way, ping times, what it announced), taken
        /// after its tasks ended, so nothing it did is missed.
        stats: Box<PeerStats>,
    },
    /// A handshake failed.
    HandshakeFailed {
        /// The remote address.
        addr: SocketAddr,
        /// Who opened the connection.
        direction: Direction,
        /// The typed error.
        error: Arc<HandshakeError>,
    },
    /// A connection was refused by an admission checkpoint (before or after the handshake),
    /// or by the [`PeerPolicy`](super::PeerPolicy) at the remote's `version`
    /// ([`Refusal::Policy`]); a refused connection never held a slot.
    Refused {
        /// The remote address.
        addr: SocketAddr,
        /// Who opened the connection.
        direction: Direction,
        /// Which rule refused it.
        refusal: Refusal,
    },
    /// A dial failed or timed out.
    DialFailed {
        /// The address dialled.
        addr: SocketAddr,
        /// What went wrong.
        error: Arc<std::io::Error>,
    },
    /// A persistent peer's host name could not be looked up (or had no address); the peer is
    /// tried again after its backoff, with a new lookup.
    ResolveFailed {
        /// The host name.
        host: String,
        /// The port it was to be dialled on.
        port: u16,
        /// The resolver's error (a timeout after
        /// [`dial_timeout`](super::ServerConfig::dial_timeout) is
        /// [`TimedOut`](std::io::ErrorKind::TimedOut)).
        error: Arc<std::io::Error>,
    },
    /// A round of attempts to reach a persistent peer ended without admitting it: the
    /// lookup, the dial, the handshake or admission failed (the
    /// [`ResolveFailed`](Self::ResolveFailed), [`DialFailed`](Self::DialFailed),
    /// [`HandshakeFailed`](Self::HandshakeFailed) or [`Refused`](Self::Refused) events just
    /// before say why). The next round is due after `retry_in`. Not sent after a connection
    /// that was admitted ([`Disconnected`](Self::Disconnected) covers it).
    PersistentRetry {
        /// The persistent peer, as configured.
        target: super::PeerTarget,
        /// Attempts in a row that failed or ended early (1 after the first failure).
        failures: u32,
        /// The backoff before the next attempt.
        retry_in: Duration,
    },
    /// A subnet was banned.
    Banned {
        /// The subnet (a single address is a /32 or /128).
        subnet: IpNet,
        /// Unix time (seconds) when the ban ends.
        until: u64,
        /// Why.
        reason: String,
    },
}
