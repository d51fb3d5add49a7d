#![deny(missing_docs, rustdoc::broken_intra_doc_links)]
//! verack: a Bitcoin peer-to-peer networking stack.
//!
//! This crate speaks the Bitcoin wire protocol (v1 framing) over any async byte stream, with a
//! handshake that is awaited to completion before any other I/O, as dcrd's synchronous
//! handshake. Message types are rust-bitcoin's [`bitcoin::p2p`]; the runtime is tokio.
//!
//! # Layout
//! - [`wire`]: the 24-byte header, the [`V1Codec`](wire::V1Codec) (bytes ↔ `NetworkMessage`,
//!   limits checked before allocation), [`RawMessage`](wire::RawMessage) (a pre-encoded
//!   payload) and the [`DecodeError`](wire::DecodeError)s.
//! - [`transport`]: BIP324 v2 encrypted transport beneath the peer, with v1/v2 detection.
//! - [`peer`]: one peer: [`Peer`](peer::Peer) (constructed, not handshaked) →
//!   [`HandshakedPeer`](peer::HandshakedPeer) (runs) and [`PeerHandle`](peer::PeerHandle)
//!   (sends, with a [`Sent`](peer::Sent) completion on every path; stats; disconnect). Pure
//!   decision logic (ping schedule, stall deadlines, trickle timing, known inventory, address
//!   selection, flood rate) lives in small modules that take time and randomness as inputs;
//!   the tokio glue is in `peer::run`.
//! - [`server`]: many peers: listeners and [`accept_inbound`](server::Server::accept_inbound)
//!   for streams accepted elsewhere, admission (bans, allow/deny lists, limits, eviction), a
//!   [`PeerPolicy`](server::PeerPolicy) over each remote `version`, outbound targets chosen by
//!   services, persistent peers, [`addr_fetch`](server::Server::addr_fetch), addr relay, events,
//!   graceful shutdown.
//! - [`addrman`]: Bitcoin Core's address manager (new/tried tables).
//! - [`address`]: peer addresses beyond IP (BIP155: IPv4, IPv6, Tor v3, I2P, CJDNS) and
//!   `-onlynet`.
//! - [`proxy`]: SOCKS5 dialing (Core's `-proxy`, `-onion`, `-proxyrandomize`).
//! - [`discovery`]: Core's DNS seeds (asked as Core does, `x9` names) and fixed seeds, and
//!   when to use them.
//! - [`chain`]: header validation and the header tree; [`sync`]: the sans-I/O header sync
//!   manager with Core's presync.
//!
//! # Building on it
//! - **An SPV client**: a [`Server`](server::Server) with the default
//!   [`PeerPolicy`](server::PeerPolicy) (outbound peers must offer `NODE_NETWORK` or
//!   `NODE_NETWORK_LIMITED` plus `NODE_WITNESS`, as Core), an
//!   [`AddrManSource`](server::AddrManSource) filled from [`discovery`], and a
//!   [`SyncManager`](sync::SyncManager) fed from the peers' `headers` (the `verack` node is
//!   this, plus storage and RPC).
//! - **A crawler**: [`Peer::outbound`](peer::Peer::outbound) per address, a handshake whose
//!   callback records the remote `version`, `getaddr`, and the `addr`/`addrv2` answers as the
//!   next addresses (`examples/crawler.rs`).
//! - **A bridge or relay**: a [`MessageHooks::frame_read`](peer::MessageHooks::frame_read) hook
//!   sees every frame as received (payload as `Bytes`, even frames dropped for a bad checksum)
//!   and [`PeerHandle::send_raw`](peer::PeerHandle::send_raw) forwards it unchanged; extra
//!   negotiation messages go before `verack` with
//!   [`PeerConfig::negotiation`](peer::PeerConfig::negotiation). A bridge that must not
//!   handshake itself relays [`wire`] frames directly (`examples/bridge.rs`).
//! - **A Tor-only node**: [`Server::with_dialer`](server::Server::with_dialer) with a
//!   [`Socks5Dialer`](proxy::Socks5Dialer) (random credentials per connection), the address
//!   source wrapped in [`OnlyNetworks`](address::OnlyNetworks) for onion, no DNS lookups
//!   outside the proxy ([`proxy::seed::fetch_addresses`]), and inbound connections from the
//!   onion service's local port handed in with
//!   [`Server::accept_inbound`](server::Server::accept_inbound).
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
//! token fires, with a distinct error for each. Feature-negotiation messages are recorded, and
//! messages of types the peer does not know are kept in
//! [`Negotiated::extra_messages`](peer::Negotiated) (the handshake extension); up to three
//! other messages are held.
//!
//! **After the handshake** ([`HandshakedPeer`](peer::HandshakedPeer)): both `version` and
//! `verack` were exchanged; [`Negotiated`](peer::Negotiated) is fixed (protocol version =
//! min of both, services, user agent, start height, relay, time offset, announced features).
//! Handles may queue messages at once; they are written when [`run`](peer::HandshakedPeer::run)
//! starts. While running, pings (BIP31), pongs, idle/stall/write deadlines, the send-queue
//! bound and receive backpressure are handled by the peer; the handler sees messages in
//! arrival order, held ones first. A `version`/`verack` (or a late `wtxidrelay`, `sendaddrv2`
//! or `feature`) from the remote disconnects. When `run` returns, the socket is closed, every task of the peer has
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
