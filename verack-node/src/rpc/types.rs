//! Plain data exchanged between the RPC server and the node behind [`RpcBackend`].
//!
//! The node fills these in; the server turns them into Bitcoin Core's JSON shapes, so
//! every unit and every "unknown" sentinel here follows what Core reports for the same
//! field (cited per item).
//!
//! [`RpcBackend`]: super::RpcBackend

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bitcoin::block::Header;
use bitcoin::{BlockHash, Work};

/// Bitcoin Core's JSON-RPC error codes (`src/rpc/protocol.h`, `enum RPCErrorCode`), the
/// subset this server can answer with.
pub mod error_code {
    /// The request is not a valid JSON-RPC request object (HTTP 400 for a 1.0 request).
    pub const RPC_INVALID_REQUEST: i32 = -32600;
    /// No method of that name (HTTP 404 for a 1.0 request).
    pub const RPC_METHOD_NOT_FOUND: i32 = -32601;
    /// The parameters are unusable as a whole, e.g. `disconnectnode` given both targets.
    pub const RPC_INVALID_PARAMS: i32 = -32602;
    /// The body is not JSON, or its top level is neither an object nor an array.
    pub const RPC_PARSE_ERROR: i32 = -32700;
    /// A generic failure; also how Core reports a wrong number of arguments (with the
    /// method's help text as the message).
    pub const RPC_MISC_ERROR: i32 = -1;
    /// An argument has the wrong JSON type.
    pub const RPC_TYPE_ERROR: i32 = -3;
    /// Unknown block hash (`getblockheader`).
    pub const RPC_INVALID_ADDRESS_OR_KEY: i32 = -5;
    /// An argument has the right type but an unusable value, e.g. a height past the tip.
    pub const RPC_INVALID_PARAMETER: i32 = -8;
    /// `addnode add` of a node already added; `setban add` of something already banned.
    pub const RPC_CLIENT_NODE_ALREADY_ADDED: i32 = -23;
    /// `addnode remove` of a node never added.
    pub const RPC_CLIENT_NODE_NOT_ADDED: i32 = -24;
    /// `disconnectnode` found no such connected peer.
    pub const RPC_CLIENT_NODE_NOT_CONNECTED: i32 = -29;
    /// `setban` given something that is not an IP or subnet, or unbanning what is not banned.
    pub const RPC_CLIENT_INVALID_IP_OR_SUBNET: i32 = -30;
}

/// A JSON-RPC error object: `{"code": code, "message": message}` (Core's `JSONRPCError`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpcError {
    /// One of [`error_code`]'s values.
    pub code: i32,
    /// Human-readable text; Core's exact wording where Core has one.
    pub message: String,
}

impl RpcError {
    /// An error with `code` (see [`error_code`]) and `message`.
    pub fn new(code: i32, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

impl fmt::Display for RpcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (code {})", self.message, self.code)
    }
}

impl std::error::Error for RpcError {}

/// The network class of an address, as Core's `GetNetworkName` names it (`src/netbase.cpp`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RpcNetwork {
    /// Publicly routable IPv4: `"ipv4"`.
    Ipv4,
    /// Publicly routable IPv6: `"ipv6"`.
    Ipv6,
    /// Tor: `"onion"`.
    Onion,
    /// I2P: `"i2p"`.
    I2p,
    /// CJDNS: `"cjdns"`.
    Cjdns,
    /// Loopback, private, link-local and other non-routable ranges:
    /// `"not_publicly_routable"` (Core's `NET_UNROUTABLE`).
    NotPubliclyRoutable,
}

impl RpcNetwork {
    /// The networks `getnetworkinfo` lists under `networks`, in Core's order.
    pub const LISTED: [RpcNetwork; 5] = [
        RpcNetwork::Ipv4,
        RpcNetwork::Ipv6,
        RpcNetwork::Onion,
        RpcNetwork::I2p,
        RpcNetwork::Cjdns,
    ];

    /// Core's name for the network.
    pub fn name(self) -> &'static str {
        match self {
            RpcNetwork::Ipv4 => "ipv4",
            RpcNetwork::Ipv6 => "ipv6",
            RpcNetwork::Onion => "onion",
            RpcNetwork::I2p => "i2p",
            RpcNetwork::Cjdns => "cjdns",
            RpcNetwork::NotPubliclyRoutable => "not_publicly_routable",
        }
    }

    /// Classifies an IP as Core's `CNetAddr::GetNetClass` does: non-routable ranges
    /// (`IsRoutable`: RFC 1918, 2544, 3927, 4862, 6598, 5737, 4193, 4843, 7343, local and
    /// invalid addresses) are [`NotPubliclyRoutable`](Self::NotPubliclyRoutable), so a
    /// regtest peer on 127.0.0.1 shows `"not_publicly_routable"`, as it does in Core.
    /// IPv4-mapped IPv6 addresses count as IPv4, as Core stores them.
    pub fn classify(ip: IpAddr) -> RpcNetwork {
        let ip = verack::netgroup::canonical(ip);
        if !verack::netgroup::is_routable(ip) {
            RpcNetwork::NotPubliclyRoutable
        } else if ip.is_ipv4() {
            RpcNetwork::Ipv4
        } else {
            RpcNetwork::Ipv6
        }
    }

    /// The network of a peer address's network.
    pub fn from_net(net: verack::address::Net) -> RpcNetwork {
        use verack::address::Net;
        match net {
            Net::Ipv4 => RpcNetwork::Ipv4,
            Net::Ipv6 => RpcNetwork::Ipv6,
            Net::Onion => RpcNetwork::Onion,
            Net::I2p => RpcNetwork::I2p,
            Net::Cjdns => RpcNetwork::Cjdns,
        }
    }
}

/// The SOCKS5 proxy a network is reached through (`getnetworkinfo`'s `networks[].proxy`
/// and `proxy_randomize_credentials`, as Core's `GetNetworksInfo`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RpcProxy {
    /// The network.
    pub network: RpcNetwork,
    /// The proxy's address (printed as `IP:port`).
    pub proxy: SocketAddr,
    /// Whether each connection gets random credentials (Core's `-proxyrandomize`).
    pub randomize_credentials: bool,
}

/// How a peer connection came about (Core's `ConnectionTypeAsString`, `src/node/connection_types.cpp`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
// Core's full set of values; verack produces the others as feelers, BIP324 and block
// validation land.
#[allow(dead_code)]
pub enum ConnectionType {
    /// We accepted it: `"inbound"`.
    Inbound,
    /// An automatic outbound peer relaying blocks, headers and addresses: `"outbound-full-relay"`.
    OutboundFullRelay,
    /// An automatic outbound peer for blocks/headers only: `"block-relay-only"`.
    BlockRelayOnly,
    /// Dialled because of `addnode` or a configured peer: `"manual"`.
    Manual,
    /// A short-lived probe of an address's reachability: `"feeler"`.
    Feeler,
    /// A short-lived connection to fetch addresses: `"addr-fetch"`.
    AddrFetch,
}

impl ConnectionType {
    /// Core's string for the type.
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionType::Inbound => "inbound",
            ConnectionType::OutboundFullRelay => "outbound-full-relay",
            ConnectionType::BlockRelayOnly => "block-relay-only",
            ConnectionType::Manual => "manual",
            ConnectionType::Feeler => "feeler",
            ConnectionType::AddrFetch => "addr-fetch",
        }
    }
}

/// The peer's transport (BIP 324), Core's `TransportTypeAsString` plus the session id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
// Core's full set of values; verack produces the others as feelers, BIP324 and block
// validation land.
#[allow(dead_code)]
pub enum Transport {
    /// Inbound connection whose first bytes have not shown v1 or v2 yet: `"detecting"`.
    Detecting,
    /// Plaintext v1 transport: `"v1"`, `session_id` `""`.
    V1,
    /// Encrypted v2 transport: `"v2"`, `session_id` the 32-byte id as 64 hex digits.
    V2 {
        /// BIP 324 session id, in the byte order Core prints it (as-is, not reversed).
        session_id: [u8; 32],
    },
}

/// One connected peer, for `getpeerinfo`, `getconnectioncount` and `getnetworkinfo`'s counts.
///
/// Field names follow Core's `getpeerinfo` keys (`src/rpc/net.cpp`); times are UNIX
/// seconds (0 = never), durations are exact and printed as float seconds.
#[derive(Debug, Clone, PartialEq)]
pub struct RpcPeer {
    /// The node's id for the peer (`id`); what `disconnectnode nodeid=…` takes.
    pub id: u64,
    /// The address as connected to or from (`addr`): `ip:port`, `[ipv6]:port`, or for a
    /// manual peer the name it was added under, as Core's `m_addr_name`.
    pub addr: String,
    /// Our local end of the socket (`addrbind`); omitted when `None`.
    pub addr_bind: Option<SocketAddr>,
    /// Our address as the peer reported it in `version` (`addrlocal`), as received. Omitted
    /// when `None` or when Core's `CNetAddr::IsValid` would refuse it (e.g. the `0.0.0.0:0`
    /// Core sends to a peer whose address is not routable).
    pub addr_local: Option<SocketAddr>,
    /// Network class of the connection (`network`).
    pub network: RpcNetwork,
    /// Service bits the peer advertised (`services` as 16 hex digits, and `servicesnames`).
    pub services: u64,
    /// Whether the peer asked for transaction relay (`relaytxes`).
    pub relay_txes: bool,
    /// UNIX seconds of the last message sent to the peer (`lastsend`), 0 if none.
    pub last_send: u64,
    /// UNIX seconds of the last message received (`lastrecv`), 0 if none.
    pub last_recv: u64,
    /// UNIX seconds the peer last gave us a new block or header (`last_block`), 0 if never.
    pub last_block: u64,
    /// Bytes sent to the peer (`bytessent`), framing included.
    pub bytes_sent: u64,
    /// Bytes received from the peer (`bytesrecv`), framing included.
    pub bytes_recv: u64,
    /// UNIX seconds the connection was established (`conntime`).
    pub conn_time: u64,
    /// Peer's clock minus ours, seconds, from its `version` message (`timeoffset`).
    pub time_offset: i64,
    /// Last measured ping round trip (`pingtime`); omitted when `None`.
    pub ping_time: Option<Duration>,
    /// Smallest ping round trip seen (`minping`); omitted when `None`.
    pub min_ping: Option<Duration>,
    /// How long an outstanding ping has been waiting (`pingwait`); omitted when `None`.
    pub ping_wait: Option<Duration>,
    /// Protocol version the peer announced in its `version` (`version`; Core's `nVersion`,
    /// not the negotiated minimum).
    pub version: u32,
    /// User agent from the peer's `version` (`subver`); the server sanitizes it as Core
    /// does (`SanitizeString`), so pass it raw.
    pub subver: String,
    /// How the connection came about (`connection_type`, and `inbound`).
    pub connection_type: ConnectionType,
    /// Height of the best header known to be shared with the peer (`synced_headers`), -1 if none.
    pub synced_headers: i32,
    /// Height its headers presync has reached while it has one (`presynced_headers`; Core's
    /// `HeadersSyncState::GetPresyncHeight`, kept through the redownload), -1 otherwise.
    pub presynced_headers: i32,
    /// Height of the best block known to be shared with the peer (`synced_blocks`), -1 if none.
    pub synced_blocks: i32,
    /// Whether we relay addresses with this peer (`addr_relay_enabled`).
    pub addr_relay_enabled: bool,
    /// Addresses from the peer we processed (`addr_processed`).
    pub addr_processed: u64,
    /// Addresses from the peer we dropped for rate limiting (`addr_rate_limited`).
    pub addr_rate_limited: u64,
    /// Core-style permission names granted to the peer, e.g. `"noban"` (`permissions`).
    pub permissions: Vec<String>,
    /// The peer's `feefilter`, satoshis per 1000 vbytes (`minfeefilter`, printed in BTC/kvB).
    pub fee_filter: u64,
    /// Bytes sent per message type (`bytessent_per_msg`); zero entries are dropped, as Core does.
    pub bytes_sent_per_msg: BTreeMap<String, u64>,
    /// Bytes received per message type (`bytesrecv_per_msg`); zero entries are dropped.
    pub bytes_recv_per_msg: BTreeMap<String, u64>,
    /// Transport and BIP 324 session (`transport_protocol_type`, `session_id`).
    pub transport: Transport,
}

impl RpcPeer {
    /// A peer at socket address `addr` with everything else empty: `addr` printed as Core
    /// prints it, `network` classified from the IP, counters zero, heights -1, v1 transport.
    /// A Tor, I2P or CJDNS peer's [stand-in](verack::address::stand_in) shows its real
    /// address (`xxx.onion:8333`) and network (`onion`), as Core's `getpeerinfo`.
    pub fn new(id: u64, addr: SocketAddr, connection_type: ConnectionType) -> Self {
        let (text, network) = match verack::address::PeerAddr::from_stand_in(addr) {
            Some(peer) if verack::address::is_stand_in(addr.ip()) => {
                (peer.to_string(), RpcNetwork::from_net(peer.net()))
            }
            _ => (addr.to_string(), RpcNetwork::classify(addr.ip())),
        };
        Self {
            id,
            addr: text,
            addr_bind: None,
            addr_local: None,
            network,
            services: 0,
            relay_txes: false,
            last_send: 0,
            last_recv: 0,
            last_block: 0,
            bytes_sent: 0,
            bytes_recv: 0,
            conn_time: 0,
            time_offset: 0,
            ping_time: None,
            min_ping: None,
            ping_wait: None,
            version: 0,
            subver: String::new(),
            connection_type,
            synced_headers: -1,
            presynced_headers: -1,
            synced_blocks: -1,
            addr_relay_enabled: false,
            addr_processed: 0,
            addr_rate_limited: 0,
            permissions: Vec::new(),
            fee_filter: 0,
            bytes_sent_per_msg: BTreeMap::new(),
            bytes_recv_per_msg: BTreeMap::new(),
            transport: Transport::V1,
        }
    }
}

/// One of our own addresses as advertised to peers (`getnetworkinfo.localaddresses`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpcLocalAddress {
    /// The address (`address`).
    pub address: IpAddr,
    /// The port advertised with it (`port`).
    pub port: u16,
    /// Core's local-address score, higher is preferred (`score`).
    pub score: i32,
}

/// Node-wide network state for `getnetworkinfo` (`src/rpc/net.cpp`), apart from
/// `localservices` ([`RpcBackend::local_services`]) and the connection counts (from
/// [`RpcBackend::peers`]).
///
/// [`RpcBackend::local_services`]: super::RpcBackend::local_services
/// [`RpcBackend::peers`]: super::RpcBackend::peers
#[derive(Debug, Clone, PartialEq)]
pub struct RpcNetworkInfo {
    /// Client version as one integer, Core's `CLIENT_VERSION` style: major*10000 + minor*100 + patch (`version`).
    pub version: u32,
    /// User agent we send in `version`, e.g. `/verack:0.1.0/` (`subversion`).
    pub subversion: String,
    /// P2P protocol version we speak (`protocolversion`).
    pub protocol_version: u32,
    /// Whether we relay transactions to peers (`localrelay`).
    pub local_relay: bool,
    /// Median clock offset of outbound peers, seconds (`timeoffset`).
    pub time_offset: i64,
    /// Whether P2P networking is enabled (`networkactive`).
    pub network_active: bool,
    /// Networks we can make connections to (`networks[].reachable`, `limited` is its negation).
    pub reachable: Vec<RpcNetwork>,
    /// The proxy of each proxied network (`networks[].proxy`; `""` for the others).
    pub proxies: Vec<RpcProxy>,
    /// Minimum relay fee, satoshis per 1000 vbytes (`relayfee`, printed in BTC/kvB). Core
    /// prints it only when it has a mempool, so `None` omits it.
    pub relay_fee: Option<u64>,
    /// Incremental relay fee, satoshis per 1000 vbytes (`incrementalfee`); `None` omits it.
    pub incremental_fee: Option<u64>,
    /// Our advertised addresses (`localaddresses`).
    pub local_addresses: Vec<RpcLocalAddress>,
    /// Active node warnings (`warnings`, an array as in Core 28+).
    pub warnings: Vec<String>,
}

/// Byte counters since start, for `getnettotals` (`totalbytesrecv`, `totalbytessent`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RpcNetTotals {
    /// Bytes received from all peers since start.
    pub bytes_recv: u64,
    /// Bytes sent to all peers since start.
    pub bytes_sent: u64,
}

/// Which peer `disconnectnode` targets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DisconnectTarget {
    /// By address as given: an IP (every peer at that IP, Core's `DisconnectNode(CNetAddr)`)
    /// or the `addr` string a peer is listed under.
    Address(String),
    /// By [`RpcPeer::id`].
    NodeId(u64),
}

/// When a `setban add` ban ends (Core's `BanMan::Ban` arguments, normalized).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BanExpiry {
    /// `bantime` 0 or absent: the node's default ban time (Core: 24 hours, `-bantime`).
    Default,
    /// A relative `bantime` in seconds from now.
    After(Duration),
    /// `absolute=true`: ends at this UNIX time, seconds (never in the past; the server refuses that).
    Until(u64),
}

/// One ban, for `listbanned`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RpcBan {
    /// The banned subnet; a single address is a host-length prefix (`/32`, `/128`), printed
    /// as Core prints it (`address`, e.g. `"1.2.3.4/32"`).
    pub subnet: ipnet::IpNet,
    /// UNIX seconds the ban was made (`ban_created`).
    pub created: u64,
    /// UNIX seconds the ban ends (`banned_until`).
    pub banned_until: u64,
}

/// A header in the node's header tree with what `getblockheader` reports about it.
#[derive(Debug, Clone, PartialEq)]
pub struct RpcHeaderInfo {
    /// The 80-byte header.
    pub header: Header,
    /// Its height (`height`).
    pub height: u32,
    /// Total work of the chain up to and including it (`chainwork`, 64 hex digits).
    pub chainwork: Work,
    /// `tip height - height + 1` if on the active chain, else -1 (`confirmations`, Core's
    /// `ComputeNextBlockAndDepth`).
    pub confirmations: i64,
    /// Median time of it and its 10 predecessors, UNIX seconds (`mediantime`).
    pub median_time: u32,
    /// The active-chain successor's hash (`nextblockhash`); omitted when `None`.
    pub next_hash: Option<BlockHash>,
    /// Transactions in the block if the node has it, else 0 (`nTx`; Core prints 0 for a
    /// header whose block it has not downloaded).
    pub n_tx: u32,
}

/// Chain-wide state for `getblockchaininfo`, besides the tip itself.
#[derive(Debug, Clone, PartialEq)]
pub struct RpcChainStatus {
    /// Height of the best header known, valid or not yet validated (`headers`).
    pub headers: u32,
    /// Estimated fraction of the chain verified, 0.0–1.0 (`verificationprogress`).
    pub verification_progress: f64,
    /// Whether the node considers itself in initial download (`initialblockdownload`).
    pub initial_block_download: bool,
    /// Bytes the node's chain data uses on disk (`size_on_disk`).
    pub size_on_disk: u64,
    /// On signet, the challenge script (`signet_challenge`, hex); ignored on other chains.
    pub signet_challenge: Option<Vec<u8>>,
    /// Active chain warnings (`warnings`, an array as in Core 28+).
    pub warnings: Vec<String>,
}

/// The validity state of a chain tip, Core's `getchaintips` statuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
// Core's full set of values; verack produces the others as feelers, BIP324 and block
// validation land.
#[allow(dead_code)]
pub enum ChainTipStatus {
    /// The tip of the active chain: `"active"`.
    Active,
    /// Fully validated but not active: `"valid-fork"`.
    ValidFork,
    /// All blocks available, not fully validated: `"valid-headers"`.
    ValidHeaders,
    /// Headers valid, blocks not all available: `"headers-only"`.
    HeadersOnly,
    /// Contains at least one invalid block or header: `"invalid"`.
    Invalid,
}

impl ChainTipStatus {
    /// Core's string for the status.
    pub fn as_str(self) -> &'static str {
        match self {
            ChainTipStatus::Active => "active",
            ChainTipStatus::ValidFork => "valid-fork",
            ChainTipStatus::ValidHeaders => "valid-headers",
            ChainTipStatus::HeadersOnly => "headers-only",
            ChainTipStatus::Invalid => "invalid",
        }
    }
}

/// One tip of the header tree, for `getchaintips`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RpcChainTip {
    /// Its height (`height`).
    pub height: u32,
    /// Its hash (`hash`).
    pub hash: BlockHash,
    /// Length of the branch back to the active chain, 0 for the active tip (`branchlen`).
    pub branch_len: u32,
    /// Validity state (`status`).
    pub status: ChainTipStatus,
}

/// One `getnodeaddresses` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpcNodeAddress {
    /// When the address was last seen, Unix seconds.
    pub time: u32,
    /// Its service bits.
    pub services: u64,
    /// The address, without port (Tor/I2P/CJDNS in their usual text forms).
    pub address: String,
    /// The port.
    pub port: u16,
    /// Its network.
    pub network: RpcNetwork,
}

/// `getaddrmaninfo` counts for one network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RpcAddrmanCounts {
    /// Addresses in the new table.
    pub new: usize,
    /// Addresses in the tried table.
    pub tried: usize,
}
