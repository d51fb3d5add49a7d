//! Server configuration.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::backoff::Backoff;
use crate::peer::PeerConfig;

use super::{AdmissionRules, PeerPolicy, PeerTarget};

/// Why an outbound connection exists, or that it is inbound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConnectionKind {
    /// The remote connected to us.
    Inbound,
    /// Outbound, relaying blocks, transactions and addresses.
    FullRelay,
    /// Outbound, blocks only: our `version` has `relay = false` (Core's `BLOCK_RELAY`).
    BlockRelayOnly,
    /// A persistent peer we were told to keep (Core's `-addnode`/`-connect`).
    Manual,
    /// A short-lived connection testing that an address works (Core's feeler): disconnected
    /// right after the handshake, never admitted.
    Feeler,
    /// A short-lived connection to a seed node that asks for addresses and disconnects once
    /// they arrive (Core's `ADDR_FETCH`, from `-seednode`); never admitted.
    AddrFetch,
}

/// Everything the server needs; build with [`ServerConfig::new`] and adjust fields.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServerConfig {
    /// The template for every peer; its nonce cache is shared, so self-connections are caught.
    pub peer: PeerConfig,
    /// Addresses to listen on (IPv4 and/or IPv6). Default none.
    pub listen: Vec<SocketAddr>,
    /// Inbound connections allowed in the handshake at once across all listeners (trusted
    /// ones not counted); when full, the longest-pending handshake of the /24 or /64 holding
    /// the most is dropped to admit a newcomer. Default 50 (geth's `MaxPendingPeers`).
    pub max_pending_handshakes: usize,
    /// Admission limits, allow/deny/trusted lists.
    pub admission: AdmissionRules,
    /// Outbound full-relay peers to keep. Default 8 (Core).
    pub target_full_relay: usize,
    /// Outbound block-relay-only peers to keep. Default 2 (Core).
    pub target_block_relay: usize,
    /// Outbound dials in flight at once. Default 8.
    pub max_dials_in_flight: usize,
    /// Deadline for a TCP connect. Default 5 s.
    pub dial_timeout: Duration,
    /// How often the outbound target is re-checked (also after every disconnect). Default 1 s.
    pub outbound_interval: Duration,
    /// Persistent peers, always reconnected (Core's `-addnode`): addresses, or host names
    /// looked up again before every dial ([`PeerTarget`]). Default none. Manual connections
    /// try BIP324 v2 first ([`ManualTransport::V2First`]) unless listed in
    /// [`v1_only_manual`](Self::v1_only_manual).
    pub persistent: Vec<PeerTarget>,
    /// Manual peers (persistent or [`connect_once`](super::Server::connect_once)) dialled
    /// over v1 only ([`ManualTransport::V1Only`]). A host name here covers every address it
    /// resolves to when dialled as that persistent peer. Default none.
    pub v1_only_manual: Vec<PeerTarget>,
    /// Dial only the persistent peers, never the address source (Core's `-connect`). Default
    /// `false`.
    pub connect_only: bool,
    /// Reconnection delays for persistent peers. Default [`Backoff::PERSISTENT_PEER`]
    /// (1 s doubling to 5 min, ±50%).
    pub persistent_backoff: Backoff,
    /// A persistent connection that lasted this long resets its backoff. Default 60 s.
    pub stable_connection: Duration,
    /// Ban score at which a peer is disconnected and banned. Default 100 (btcd, Core's old
    /// `-banscore`).
    pub ban_threshold: u32,
    /// How long a misbehaviour ban lasts. Default 24 h (Core's `DEFAULT_MISBEHAVING_BANTIME`).
    pub ban_duration: Duration,
    /// Where bans persist (JSON, written atomically); `None` keeps them in memory. Default
    /// `None`.
    pub bans_path: Option<PathBuf>,
    /// How long stopping may take before [`ServerError::ShutdownTimeout`](super::ServerError).
    /// Default 10 s.
    pub shutdown_timeout: Duration,
    /// Events buffered per subscriber before a slow one starts missing them. Default 1024.
    pub event_capacity: usize,
    /// Mean interval between feeler connections (Poisson). Default 2 min (Core's
    /// `FEELER_INTERVAL`); `None` disables feelers.
    pub feeler_interval: Option<Duration>,
    /// Mean interval between announcements of our own address to each peer (Poisson). Default
    /// 24 h (Core's `AVG_LOCAL_ADDRESS_BROADCAST_INTERVAL`). The address is
    /// [`PeerConfig::local_address`](crate::peer::PeerConfig::local_address); none, none sent.
    pub self_announce_interval: Duration,
    /// How long a `getaddr` answer is served from the cache (one per requestor network and
    /// local socket) before it is recomputed: this plus a uniformly random jitter below
    /// [`getaddr_cache_jitter`](Self::getaddr_cache_jitter). Default 21 h (Core's
    /// `GetAddresses`; mock time shortens it in Core's tests). Peers asking in between all get
    /// the same answer, so scraping the address manager yields little.
    pub getaddr_cache_lifetime: Duration,
    /// The random part of the `getaddr` cache lifetime. Default 6 h (Core).
    pub getaddr_cache_jitter: Duration,
    /// Where the block-relay-only peers are saved at shutdown and dialled first at the next
    /// start (the file is then removed), as Core's `anchors.dat`. Default `None`.
    pub anchors_path: Option<PathBuf>,
    /// How often the address source is asked to persist. Default 15 min (Core's
    /// `DUMP_PEERS_INTERVAL`).
    pub address_flush_interval: Duration,
    /// Seed nodes (Core's `-seednode`): while the address source knows fewer than
    /// [`SEED_NODE_THRESHOLD`](super::SEED_NODE_THRESHOLD) addresses and outbound slots are
    /// free, each is asked for addresses over a short-lived connection, every
    /// `seed_node_interval`. Default none.
    pub seed_nodes: Vec<SocketAddr>,
    /// How often seed nodes are asked again while addresses are scarce. Default 30 s.
    pub seed_node_interval: Duration,
    /// The peer policy: required services, the outbound service rule (Core's desirable
    /// services by default) and an optional check over each remote `version`. Default
    /// [`PeerPolicy::default`]; [`PeerPolicy::accept_all`] takes any peer.
    pub policy: PeerPolicy,
    /// How long an addr-fetch connection may stay open waiting for the `addr` answer after the
    /// handshake. Default 300 s (Core: `10 * AVG_ADDRESS_BROADCAST_INTERVAL` of 30 s).
    pub addr_fetch_timeout: Duration,
    /// Test-only: group loopback addresses `127.a.b.c` by `a.b` like IPv4 /16s, so many nodes on
    /// one machine form distinct netgroups. Default `false`.
    pub loopback_netgroups: bool,
}

impl ServerConfig {
    /// The documented defaults around `peer`.
    pub fn new(peer: PeerConfig) -> ServerConfig {
        ServerConfig {
            peer,
            listen: Vec::new(),
            max_pending_handshakes: 50,
            admission: AdmissionRules::default(),
            target_full_relay: 8,
            target_block_relay: 2,
            max_dials_in_flight: 8,
            dial_timeout: Duration::from_secs(5),
            outbound_interval: Duration::from_secs(1),
            persistent: Vec::new(),
            v1_only_manual: Vec::new(),
            connect_only: false,
            persistent_backoff: Backoff::PERSISTENT_PEER,
            stable_connection: Duration::from_secs(60),
            ban_threshold: 100,
            ban_duration: Duration::from_secs(24 * 3600),
            bans_path: None,
            shutdown_timeout: Duration::from_secs(10),
            event_capacity: 1024,
            feeler_interval: Some(Duration::from_secs(120)),
            self_announce_interval: Duration::from_secs(24 * 3600),
            getaddr_cache_lifetime: super::addr_relay::ADDR_CACHE_LIFETIME,
            getaddr_cache_jitter: super::addr_relay::ADDR_CACHE_JITTER,
            anchors_path: None,
            address_flush_interval: Duration::from_secs(15 * 60),
            loopback_netgroups: false,
            seed_nodes: Vec::new(),
            seed_node_interval: Duration::from_secs(30),
            policy: PeerPolicy::default(),
            addr_fetch_timeout: Duration::from_secs(300),
        }
    }
}

/// The transport a manual connection (a persistent peer, or
/// [`connect_once`](super::Server::connect_once)) starts with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum ManualTransport {
    /// BIP324 v2 first, whether or not the remote is known to advertise `NODE_P2P_V2`, unless
    /// [`PeerConfig::v2`](crate::peer::PeerConfig::v2) is off or the address is in the
    /// [`V1OnlyCache`](crate::peer::V1OnlyCache); when the v2 attempt fails with nothing
    /// received, one immediate v1 re-dial. As Bitcoin Core's `-connect`/`-addnode`/`addnode`
    /// with `-v2transport=1` (`src/net.cpp`, `use_v2transport`). The default.
    #[default]
    V2First,
    /// v1 only (Core's `addnode … v2transport=false`): for v1-only implementations that
    /// punish a v2 key (bcoin 1.0 bans the address that sent it one).
    V1Only,
}
