#![deny(missing_docs, rustdoc::broken_intra_doc_links)]
//! verack: a Bitcoin peer-to-peer networking stack.
//!
//! This crate speaks the Bitcoin wire protocol (v1 framing) over any async byte stream, with a
//! handshake that is awaited to completion before any other I/O, as dcrd's synchronous
//! handshake. Message types are rust-bitcoin's [`bitcoin::p2p`]; the runtime is tokio.
//!
//! # Layout
//! - [`wire`]: the 24-byte header, the [`V1Codec`](wire::V1Codec) (bytes ↔ `NetworkMessage`,
//!   limits checked before allocation) and its [`DecodeError`](wire::DecodeError)s.
//! - [`peer`]: one peer: [`Peer`](peer::Peer) (constructed, not handshaked) →
//!   [`HandshakedPeer`](peer::HandshakedPeer) (runs) and [`PeerHandle`](peer::PeerHandle)
//!   (sends, stats, disconnect). Pure decision logic (ping schedule, stall deadlines, trickle
//!   timing, known inventory, address selection, flood rate) lives in small modules that take
//!   time and randomness as inputs; the tokio glue is in `peer::run`.
//!
//! # What a caller can rely on
//! **Before the handshake** ([`Peer`](peer::Peer)): nothing has been sent or read. The only
//! operations are [`handshake`](peer::Peer::handshake) and drop (which closes the
//! connection). There is no way to send a message or start I/O.
//!
//! **During the handshake**: messages go in the order given in [`peer`]'s docs. The
//! `on_version` callback sees the decoded remote `version` after the self-connection and
//! minimum-version checks passed; it may refuse it, and then nothing more is sent. The
//! handshake ends within the configured timeout (30 s by default) or when the cancellation
//! token fires, with a distinct error for each. Feature-negotiation messages are recorded;
//! up to three other messages are held.
//!
//! **After the handshake** ([`HandshakedPeer`](peer::HandshakedPeer)): both `version` and
//! `verack` were exchanged; [`Negotiated`](peer::Negotiated) is fixed (protocol version =
//! min of both, services, user agent, start height, relay, time offset, announced features).
//! Handles may queue messages at once; they are written when [`run`](peer::HandshakedPeer::run)
//! starts. While running, pings (BIP31), pongs, idle/stall/write deadlines, the send-queue
//! bound and receive backpressure are handled by the peer; the handler sees messages in
//! arrival order, held ones first. A `version`/`verack` (or late negotiation message) from the
//! remote disconnects. When `run` returns, the socket is closed, every task of the peer has
//! ended, and [`PeerHandle::closed`](peer::PeerHandle::closed) has completed with the same
//! [`DisconnectReason`](peer::DisconnectReason).
//!
//! # Example
//! ```no_run
//! use bitcoin::Network;
//! use tokio::net::TcpStream;
//! use tokio_util::sync::CancellationToken;
//! use verack::peer::{BoxError, IgnoreMessages, Peer, PeerConfig};
//!
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! let addr = "127.0.0.1:18444".parse()?;
//! let stream = TcpStream::connect(addr).await?;
//! let cancel = CancellationToken::new();
//! let peer = Peer::outbound(stream, addr, PeerConfig::new(Network::Regtest))
//!     .handshake(&cancel, |version| {
//!         println!("remote is {}", version.user_agent);
//!         Ok::<(), BoxError>(())
//!     })
//!     .await?;
//! println!("negotiated {}", peer.negotiated().protocol_version);
//! let reason = peer.run(IgnoreMessages, cancel).await;
//! println!("disconnected: {reason}");
//! # Ok(())
//! # }
//! ```

pub mod address;
pub mod addrman;
pub mod atomic_file;
pub mod backoff;
pub mod chain;
pub mod discovery;
pub mod netgroup;
pub mod peer;
pub mod proxy;
pub mod server;
pub mod sync;
pub mod transport;
pub mod wire;
