//! Peer configuration.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bitcoin::p2p::message::NetworkMessage;
use bitcoin::p2p::message_network::VersionMessage;
use bitcoin::p2p::{Magic, ServiceFlags};
use bitcoin::Network;

use super::hooks::MessageHooks;
use super::{NonceCache, V1OnlyCache};
use crate::transport::V2Mode;

/// Our protocol version by default: 70017, Bitcoin Core's `PROTOCOL_VERSION` since BIP434
/// (v32). BIP434 requires a node advertising it to accept `feature` messages between `version`
/// and `verack` (we do, and ignore the unknown ones); sending any is optional, and like Core we
/// send none.
pub const DEFAULT_PROTOCOL_VERSION: u32 = 70017;
/// The oldest remote protocol version accepted by default: 31800, Core's `MIN_PEER_PROTO_VERSION`.
pub const DEFAULT_MIN_PROTOCOL_VERSION: u32 = 31800;
/// The user agent sent by default (BIP14): `/verack:<crate version>/`.
pub const DEFAULT_USER_AGENT: &str = concat!("/verack:", env!("CARGO_PKG_VERSION"), "/");

/// Where the `start_height` of our `version` message comes from.
#[derive(Clone)]
pub enum StartHeight {
    /// A fixed height.
    Fixed(i32),
    /// Called once per handshake, when our `version` is built (e.g. reads the chain tip).
    Callback(Arc<dyn Fn() -> i32 + Send + Sync>),
}

impl StartHeight {
    pub(crate) fn get(&self) -> i32 {
        match self {
            StartHeight::Fixed(h) => *h,
            StartHeight::Callback(f) => f(),
        }
    }
}

impl fmt::Debug for StartHeight {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartHeight::Fixed(h) => write!(f, "Fixed({h})"),
            StartHeight::Callback(_) => f.write_str("Callback(..)"),
        }
    }
}

/// Builds the extra negotiation messages we send between `version` and `verack` (see
/// [`PeerConfig::negotiation`]): called once per handshake with the remote's `version` and the
/// negotiated protocol version (`min(ours, theirs)`), after the checks and the caller's
/// `on_version` callback passed.
pub type NegotiationFn = Arc<dyn Fn(&VersionMessage, u32) -> Vec<NetworkMessage> + Send + Sync>;

/// Everything a peer needs to know about us and its limits.
///
/// Build with [`PeerConfig::new`] and adjust the public fields. Cloning shares the
/// [`nonce_cache`](Self::nonce_cache), so every peer created from clones of one config detects
/// self-connections among them, and the [`v1_only_cache`](Self::v1_only_cache).
#[derive(Clone)]
#[non_exhaustive]
pub struct PeerConfig {
    /// The network whose magic frames every message (unless [`magic`](Self::magic) is set).
    pub network: Network,
    /// A magic that replaces `network`'s on the wire (v1 frames and the BIP324 v2 key
    /// exchange), for custom networks such as a custom signet
    /// ([`ChainParams::custom_signet`](crate::chain::ChainParams::custom_signet), BIP325) or a
    /// private test network ([`ChainParams::custom`](crate::chain::ChainParams::custom)).
    /// Default `None`: `network.magic()`. See [`wire_magic`](Self::wire_magic).
    pub magic: Option<Magic>,
    /// Our protocol version; the negotiated version is `min(ours, theirs)`. Default 70017
    /// ([`DEFAULT_PROTOCOL_VERSION`]).
    pub protocol_version: u32,
    /// Remote versions below this fail the handshake with
    /// [`ProtocolTooOld`](super::HandshakeError::ProtocolTooOld). Default 31800.
    pub min_protocol_version: u32,
    /// Services we advertise. Default `NONE`. Without `NODE_BLOOM`, BIP111 rules apply to
    /// `filterload`/`filteradd`/`filterclear`. `NODE_P2P_V2` is added when [`v2`](Self::v2) is
    /// enabled (see [`advertised_services`](Self::advertised_services)).
    pub services: ServiceFlags,
    /// User agent (BIP14). Default [`DEFAULT_USER_AGENT`].
    pub user_agent: String,
    /// Our best height, sent in `version`. Default `Fixed(0)`.
    pub start_height: StartHeight,
    /// The `relay` flag of our `version` (BIP37): whether we want transaction announcements.
    /// Default `true`.
    pub relay: bool,
    /// Our listening address, sent as `addr_from`; `None` sends the unroutable `[::]:0` as
    /// Bitcoin Core does.
    pub local_address: Option<SocketAddr>,
    /// Whole-handshake deadline, the v2 key exchange included. Default 30 s (btcd/dcrd
    /// `negotiateTimeout`).
    pub handshake_timeout: Duration,
    /// When to use the BIP324 v2 encrypted transport. Default [`V2Mode::IfAdvertised`]: inbound
    /// connections are detected as v1 or v2, outbound ones use v2 when the remote is known to
    /// advertise `NODE_P2P_V2`, and we advertise it.
    pub v2: V2Mode,
    /// Deadline for the v2 key exchange (keys, garbage, version packets), inside
    /// [`handshake_timeout`](Self::handshake_timeout). Default 10 s. When it expires on an
    /// outbound attempt that received nothing, the error is the re-dial-over-v1 hint.
    pub v2_handshake_timeout: Duration,
    /// Send decoy packets (random contents, ignored by the remote) in the v2 handshake and, now
    /// and then, before our messages. Default `false`. Received decoys are always ignored.
    pub v2_decoys: bool,
    /// Addresses that answered a v2 attempt as v1-only peers, shared by clones of this config
    /// (see [`V1OnlyCache`]).
    pub v1_only_cache: Arc<V1OnlyCache>,
    /// Interval between our pings once running (BIP31; only when the negotiated version is
    /// above 60000). Default 2 min (Core, btcd).
    pub ping_interval: Duration,
    /// Disconnect when a ping gets no matching pong for this long. Default 20 min (Core's
    /// `TIMEOUT_INTERVAL`).
    pub ping_timeout: Duration,
    /// Disconnect when nothing at all is received for this long. Default 5 min (btcd's idle
    /// timeout). Time spent with reading paused for backpressure does not count.
    pub idle_timeout: Duration,
    /// Deadline for a `headers` reply to our `getheaders`. Default 2 min (Core's
    /// `HEADERS_RESPONSE_TIME`).
    pub headers_response_timeout: Duration,
    /// Deadline for each item of our `getdata` to arrive as `block`/`tx`/`merkleblock`/
    /// `cmpctblock` or be listed in `notfound`. Default 30 s (btcd's stall handler).
    pub getdata_response_timeout: Duration,
    /// Disconnect when the messages received per second, averaged since the connection
    /// started, exceed this. Default `None` (off). Floresta uses 10.
    pub max_messages_per_second: Option<f64>,
    /// Stop reading the socket while this many bytes of received messages wait for the
    /// handler. Default 5,000,000 (Core's `-maxreceivebuffer` of 5,000 KB).
    pub receive_buffer_limit: usize,
    /// Disconnect when our queued, unwritten bytes exceed this. Default 40 MiB (dcrd).
    pub send_queue_limit: usize,
    /// Base write deadline: a write of `n` bytes that has not finished after this plus 1 s per
    /// 256 KiB of `n` disconnects. Default 20 s (dcrd).
    pub write_timeout: Duration,
    /// Mean of the Poisson-distributed interval between transaction-inventory announcements
    /// to inbound peers. Default 5 s (Core's `INBOUND_INVENTORY_BROADCAST_INTERVAL`).
    pub inbound_trickle_interval: Duration,
    /// The same for outbound peers. Default 2 s (Core's
    /// `OUTBOUND_INVENTORY_BROADCAST_INTERVAL`).
    pub outbound_trickle_interval: Duration,
    /// How many inventory items per peer are remembered as known to the remote (announced by
    /// it or sent by us), so they are not announced again. Default 50,000 (Core's
    /// `m_tx_inventory_known_filter`). Memory grows with use, up to about 16 bytes per item.
    pub known_inventory_capacity: usize,
    /// Nonces of our recent outbound `version`s, shared by clones of this config.
    pub nonce_cache: Arc<NonceCache>,
    /// Observers of every message read and written. Default none.
    pub hooks: Option<Arc<dyn MessageHooks>>,
    /// Extra negotiation messages to send before our `verack` (handshake extension), e.g. a
    /// BIP330 `sendtxrcncl` or BIP434 `feature`s, built per handshake from the remote's
    /// `version` and the negotiated version (see [`NegotiationFn`]); usually
    /// `NetworkMessage::Unknown { command, payload }`. Default `None`: we send only
    /// `wtxidrelay` and `sendaddrv2` (at 70016 and later).
    ///
    /// They go after our `wtxidrelay`/`sendaddrv2` and before our `verack`, in the order
    /// returned, in the same write; they are counted in stats and seen by the hooks. The
    /// function decides what suits the remote: BIP434 says to send `feature` only to peers at
    /// 70017 or later (Core disconnects otherwise), and Core only reads pre-`verack`
    /// negotiation from peers at 70016 or later. A `version` or `verack` returned is not sent.
    /// What we sent is kept in [`Negotiated::local_extra_messages`](super::Negotiated::local_extra_messages).
    /// A returned message over 4,000,000 bytes fails the handshake with
    /// [`HandshakeError::Io`](super::HandshakeError::Io) (`InvalidInput`).
    ///
    /// Sending `sendtxrcncl` means we speak BIP330 (as Core with `-txreconciliation`): a
    /// `sendtxrcncl` the remote sends *after* `verack` then disconnects it as a
    /// [`LateNegotiation`](super::Violation::LateNegotiation), as Core's net_processing does
    /// ("sendtxrcncl received after verack"); without it, a late one is ignored, as Core
    /// without `-txreconciliation`.
    pub negotiation: Option<NegotiationFn>,
}

impl PeerConfig {
    /// The defaults documented on each field, for `network`.
    pub fn new(network: Network) -> PeerConfig {
        PeerConfig {
            network,
            magic: None,
            protocol_version: DEFAULT_PROTOCOL_VERSION,
            min_protocol_version: DEFAULT_MIN_PROTOCOL_VERSION,
            services: ServiceFlags::NONE,
            user_agent: DEFAULT_USER_AGENT.to_string(),
            start_height: StartHeight::Fixed(0),
            relay: true,
            local_address: None,
            handshake_timeout: Duration::from_secs(30),
            v2: V2Mode::IfAdvertised,
            v2_handshake_timeout: Duration::from_secs(10),
            v2_decoys: false,
            v1_only_cache: Arc::new(V1OnlyCache::default()),
            ping_interval: Duration::from_secs(120),
            ping_timeout: Duration::from_secs(20 * 60),
            idle_timeout: Duration::from_secs(5 * 60),
            headers_response_timeout: Duration::from_secs(120),
            getdata_response_timeout: Duration::from_secs(30),
            max_messages_per_second: None,
            receive_buffer_limit: 5_000_000,
            send_queue_limit: 40 * 1024 * 1024,
            write_timeout: Duration::from_secs(20),
            inbound_trickle_interval: Duration::from_secs(5),
            outbound_trickle_interval: Duration::from_secs(2),
            known_inventory_capacity: 50_000,
            nonce_cache: Arc::new(NonceCache::default()),
            hooks: None,
            negotiation: None,
        }
    }

    /// The 4-byte message start our peers use: [`magic`](Self::magic) if set, else
    /// `network.magic()`.
    pub fn wire_magic(&self) -> Magic {
        self.magic.unwrap_or_else(|| self.network.magic())
    }

    /// The services in our `version`: [`services`](Self::services), plus `NODE_P2P_V2` (bit 11)
    /// when [`v2`](Self::v2) is enabled.
    pub fn advertised_services(&self) -> ServiceFlags {
        if self.v2.enabled() {
            self.services | ServiceFlags::P2P_V2
        } else {
            self.services
        }
    }
}

impl fmt::Debug for PeerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeerConfig")
            .field("network", &self.network)
            .field("magic", &self.wire_magic())
            .field("protocol_version", &self.protocol_version)
            .field("min_protocol_version", &self.min_protocol_version)
            .field("services", &self.services)
            .field("user_agent", &self.user_agent)
            .field("start_height", &self.start_height)
            .field("relay", &self.relay)
            .field("handshake_timeout", &self.handshake_timeout)
            .field("v2", &self.v2)
            .field("v2_handshake_timeout", &self.v2_handshake_timeout)
            .field("v2_decoys", &self.v2_decoys)
            .field("hooks", &self.hooks.is_some())
            .field("negotiation", &self.negotiation.is_some())
            .finish_non_exhaustive()
    }
}
