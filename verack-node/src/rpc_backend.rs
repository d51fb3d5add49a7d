//! The node as the JSON-RPC server sees it: [`RpcBackend`] over the node, its header tree and
//! the server.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bitcoin::{BlockHash, Network};
use ipnet::IpNet;
use tokio_util::sync::CancellationToken;
use verack::chain::{HeaderEntry, TipStatus};
use verack::peer::{Direction, PeerStats, DEFAULT_PROTOCOL_VERSION, DEFAULT_USER_AGENT};
use verack::server::addr_relay::AddrRelayState;
use verack::server::{ConnectionKind, ManualTransport, PeerTarget};

use crate::node::Node;
use bitcoin::p2p::address::AddrV2;
use verack::addrman::AddrNetwork;

use crate::rpc::types::{
    BanExpiry, ChainTipStatus, ConnectionType, DisconnectTarget, RpcAddrmanCounts, RpcBan,
    RpcChainStatus, RpcChainTip, RpcHeaderInfo, RpcNetTotals, RpcNetwork, RpcNetworkInfo,
    RpcNodeAddress, RpcPeer,
};
use crate::rpc::RpcBackend;

/// The RPC backend.
pub struct NodeRpc {
    /// The node.
    pub node: Arc<Node>,
    /// Cancelled by `stop`.
    pub shutdown: CancellationToken,
    /// The header database (for `size_on_disk`).
    pub database: PathBuf,
    /// How far the header store has got; while its writes fail, its warning is in
    /// `warnings` (as Core reports disk problems there).
    pub store: Arc<crate::store::StoreStatus>,
    /// The default P2P port (for `addnode` without a port).
    pub default_port: u16,
    /// Ban duration when `setban` gives none.
    pub ban_duration: Duration,
    /// The address manager (shared with the server).
    pub addrman: Arc<verack::server::AddrManSource>,
    /// The service bits we advertise (`getnetworkinfo.localservices`).
    pub local_services: u64,
    /// Networks automatic connections can reach: routed (`--proxy`, `--onion`) and allowed
    /// by `--onlynet` (Core's `g_reachable_nets`; `getnetworkinfo.networks[].reachable`).
    pub reachable: Vec<RpcNetwork>,
    /// The SOCKS5 proxy of each proxied network (`getnetworkinfo.networks[].proxy`).
    pub proxies: Vec<crate::rpc::types::RpcProxy>,
}

fn unix(t: Option<SystemTime>) -> u64 {
    t.and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs())
}

/// `major*10000 + minor*100 + patch`, Core's `CLIENT_VERSION` encoding.
fn client_version() -> u32 {
    let mut parts = env!("CARGO_PKG_VERSION")
        .split('.')
        .map(|p| p.parse::<u32>().unwrap_or(0));
    parts.next().unwrap_or(0) * 10_000 + parts.next().unwrap_or(0) * 100 + parts.next().unwrap_or(0)
}

impl NodeRpc {
    /// `node` as Core's `addnode` takes it (host, host:port, IP, IP:port, [v6]:port; the
    /// network's port by default); `None` if malformed.
    fn target(&self, node: &str) -> Option<PeerTarget> {
        PeerTarget::parse(node, self.default_port).ok()
    }

    /// `node`'s address now: as given, or its host name looked up (the first answer).
    fn resolve(&self, node: &str) -> Option<SocketAddr> {
        match self.target(node)? {
            PeerTarget::Addr(addr) => Some(addr),
            PeerTarget::Name { host, port } => (host.as_str(), port).to_socket_addrs().ok()?.next(),
        }
    }

    fn header_info(&self, entry: &HeaderEntry) -> RpcHeaderInfo {
        let tree = self.node.tree();
        let active = tree.is_active(&entry.hash);
        RpcHeaderInfo {
            header: entry.header,
            height: entry.height,
            chainwork: entry.chain_work,
            confirmations: if active {
                i64::from(tree.height()) - i64::from(entry.height) + 1
            } else {
                -1
            },
            median_time: tree
                .median_time_past(&entry.hash)
                .unwrap_or(entry.header.time),
            next_hash: if active {
                tree.hash_at(entry.height + 1)
            } else {
                None
            },
            n_tx: 0,
        }
    }

    fn peer(&self, stats: &PeerStats, kind: ConnectionKind, relay: AddrRelayState) -> RpcPeer {
        let connection_type = match kind {
            ConnectionKind::Inbound => ConnectionType::Inbound,
            ConnectionKind::FullRelay => ConnectionType::OutboundFullRelay,
            ConnectionKind::BlockRelayOnly => ConnectionType::BlockRelayOnly,
            ConnectionKind::Manual => ConnectionType::Manual,
            ConnectionKind::Feeler => ConnectionType::Feeler,
            ConnectionKind::AddrFetch => ConnectionType::AddrFetch,
        };
        let mut p = RpcPeer::new(stats.id.0, stats.remote, connection_type);
        p.services = stats.services.to_u64();
        p.relay_txes = kind != ConnectionKind::BlockRelayOnly;
        p.last_send = unix(stats.last_send);
        p.last_recv = unix(stats.last_receive);
        p.bytes_sent = stats.bytes_sent;
        p.bytes_recv = stats.bytes_received;
        p.conn_time = unix(Some(stats.connected_at));
        p.time_offset = stats.time_offset;
        p.ping_time = stats.last_ping;
        p.min_ping = stats.min_ping;
        // Core leaves pingwait out unless a ping is in flight for a measurable time.
        p.ping_wait = stats.ping_wait.filter(|w| !w.is_zero());
        p.addr_bind = stats.local;
        p.addr_local = stats.addr_local;
        // Core shows the version the peer announced, not the negotiated minimum.
        p.version = stats.remote_version;
        p.subver = stats.user_agent.clone();
        p.synced_headers = stats.last_block_height;
        // Core's GetNodeStateStats: the presync height while the peer has a headers sync
        // state (presync or redownload), else -1.
        p.presynced_headers = self
            .node
            .sync()
            .peer(stats.id)
            .and_then(|s| s.presync_height)
            .map_or(-1, |h| i32::try_from(h).unwrap_or(i32::MAX));
        // The server's address relay state (Core's SetupAddressRelay and ProcessAddrs counts).
        p.addr_relay_enabled = relay.enabled;
        p.addr_processed = relay.processed;
        p.addr_rate_limited = relay.rate_limited;
        p.bytes_sent_per_msg = stats.bytes_sent_per_command.clone();
        p.bytes_recv_per_msg = stats.bytes_received_per_command.clone();
        p.transport = match stats.transport {
            verack::transport::Transport::V2 { session_id } => {
                crate::rpc::types::Transport::V2 { session_id }
            }
            _ => crate::rpc::types::Transport::V1,
        };
        p
    }
}

impl RpcBackend for NodeRpc {
    fn network(&self) -> Network {
        self.node.network
    }

    fn peers(&self) -> Vec<RpcPeer> {
        let Some(server) = self.node.server() else {
            return Vec::new();
        };
        server
            .peers()
            .iter()
            .map(|s| {
                let kind = server.kind_of(s.id).unwrap_or(match s.direction {
                    Direction::Inbound => ConnectionKind::Inbound,
                    Direction::Outbound => ConnectionKind::FullRelay,
                });
                // A peer gone since `peers()` shows no relay state.
                let relay = server.addr_relay_of(s.id).unwrap_or_default();
                self.peer(s, kind, relay)
            })
            .collect()
    }

    fn connection_count(&self) -> usize {
        self.node.server().map_or(0, |s| {
            s.count(Direction::Inbound) + s.count(Direction::Outbound)
        })
    }

    fn local_services(&self) -> u64 {
        self.local_services
    }

    fn network_info(&self) -> RpcNetworkInfo {
        let mut offsets: Vec<i64> = self
            .node
            .server()
            .map(|s| s.peers().iter().map(|p| p.time_offset).collect())
            .unwrap_or_default();
        offsets.sort_unstable();
        RpcNetworkInfo {
            version: client_version(),
            subversion: DEFAULT_USER_AGENT.to_string(),
            protocol_version: DEFAULT_PROTOCOL_VERSION,
            local_relay: true,
            time_offset: offsets.get(offsets.len() / 2).copied().unwrap_or(0),
            network_active: true,
            reachable: self.reachable.clone(),
            proxies: self.proxies.clone(),
            relay_fee: None,
            incremental_fee: None,
            local_addresses: Vec::new(),
            warnings: self.store.warning().into_iter().collect(),
        }
    }

    fn net_totals(&self) -> RpcNetTotals {
        let live: (u64, u64) = self
            .node
            .server()
            .map(|s| {
                s.peers()
                    .iter()
                    .fold((0, 0), |(a, b), p| (a + p.bytes_sent, b + p.bytes_received))
            })
            .unwrap_or((0, 0));
        RpcNetTotals {
            bytes_sent: live.0 + self.node.departed_bytes.0.load(Ordering::Relaxed),
            bytes_recv: live.1 + self.node.departed_bytes.1.load(Ordering::Relaxed),
        }
    }

    fn add_node(&self, node: &str, v2transport: bool) -> bool {
        // A host name stays one: looked up again at each connection.
        match (self.target(node), self.node.server()) {
            (Some(target), Some(server)) => server.add_persistent_with(target, manual(v2transport)),
            _ => false,
        }
    }

    fn remove_added_node(&self, node: &str) -> bool {
        match (self.target(node), self.node.server()) {
            (Some(target), Some(server)) => server.remove_persistent(target),
            _ => false,
        }
    }

    fn connect_once(&self, node: &str, v2transport: bool) {
        if let (Some(addr), Some(server)) = (self.resolve(node), self.node.server()) {
            server.connect_once_with(addr, manual(v2transport));
        }
    }

    fn disconnect_node(&self, target: DisconnectTarget) -> bool {
        let Some(server) = self.node.server() else {
            return false;
        };
        match target {
            DisconnectTarget::NodeId(id) => server.disconnect(verack::peer::PeerId(id)),
            DisconnectTarget::Address(text) => match self.resolve(&text) {
                Some(addr) => server.disconnect_addr(addr),
                None => false,
            },
        }
    }

    fn ban(&self, subnet: IpNet, expiry: BanExpiry) -> bool {
        let Some(server) = self.node.server() else {
            return false;
        };
        let now = unix(Some(SystemTime::now()));
        let already = server.bans().iter().any(|(net, _)| {
            if subnet.prefix_len() == subnet.max_prefix_len() {
                net.contains(&subnet.addr())
            } else {
                *net == subnet.trunc()
            }
        });
        if already {
            return false;
        }
        let duration = match expiry {
            BanExpiry::Default => self.ban_duration,
            BanExpiry::After(d) => d,
            BanExpiry::Until(t) => Duration::from_secs(t.saturating_sub(now)),
        };
        server.ban(subnet, duration, "manually added");
        true
    }

    fn unban(&self, subnet: &IpNet) -> bool {
        self.node.server().is_some_and(|s| s.unban(*subnet))
    }

    fn list_banned(&self) -> Vec<RpcBan> {
        self.node
            .server()
            .map(|s| {
                s.bans()
                    .into_iter()
                    .map(|(subnet, e)| RpcBan {
                        subnet,
                        created: e.banned_at,
                        banned_until: e.until,
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    fn clear_banned(&self) {
        if let Some(s) = self.node.server() {
            s.clear_bans();
        }
    }

    fn tip(&self) -> RpcHeaderInfo {
        let tip = self.node.tree().tip().clone();
        self.header_info(&tip)
    }

    fn chain_status(&self) -> RpcChainStatus {
        let height = self.node.tree().height();
        let best = self.node.best_known_height.load(Ordering::Relaxed).max(1) as f64;
        let synced = self.node.is_synced();
        RpcChainStatus {
            headers: height,
            verification_progress: if synced {
                1.0
            } else {
                (f64::from(height) / best).min(1.0)
            },
            initial_block_download: !synced,
            size_on_disk: std::fs::metadata(&self.database)
                .map(|m| m.len())
                .unwrap_or(0),
            signet_challenge: None,
            warnings: self.store.warning().into_iter().collect(),
        }
    }

    fn header_by_hash(&self, hash: &BlockHash) -> Option<RpcHeaderInfo> {
        let entry = self.node.tree().get(hash)?;
        Some(self.header_info(&entry))
    }

    fn hash_at(&self, height: u32) -> Option<BlockHash> {
        self.node.tree().hash_at(height)
    }

    fn chain_tips(&self) -> Vec<RpcChainTip> {
        self.node
            .tree()
            .tips()
            .into_iter()
            .map(|t| RpcChainTip {
                height: t.height,
                hash: t.hash,
                branch_len: t.branch_len,
                // verack never has a branch's blocks, so every branch but the active one is
                // Core's "headers-only" (headers valid, blocks not available), whether it was
                // active once (Core: "valid-fork", which needs fully validated blocks) or not.
                status: match t.status {
                    TipStatus::Active => ChainTipStatus::Active,
                    _ => ChainTipStatus::HeadersOnly,
                },
            })
            .collect()
    }

    fn uptime(&self) -> Duration {
        self.node.started.elapsed().unwrap_or_default()
    }

    fn request_stop(&self) {
        self.shutdown.cancel();
    }

    fn node_addresses(&self, count: usize, network: Option<RpcNetwork>) -> Vec<RpcNodeAddress> {
        let network = network.and_then(to_addr_network);
        let now = unix(Some(SystemTime::now()));
        let list = self.addrman.lock().get_addr(count, 0, network, now);
        list.into_iter()
            .map(|a| RpcNodeAddress {
                time: a.time,
                services: a.services.to_u64(),
                address: addr_text(&a.addr),
                port: a.port,
                network: rpc_network(&a.addr),
            })
            .collect()
    }

    fn addrman_counts(&self, network: RpcNetwork) -> RpcAddrmanCounts {
        let Some(net) = to_addr_network(network) else {
            return RpcAddrmanCounts::default();
        };
        let man = self.addrman.lock();
        RpcAddrmanCounts {
            new: man.size(Some(net), Some(true)),
            tried: man.size(Some(net), Some(false)),
        }
    }

    fn add_peer_address(&self, ip: std::net::IpAddr, port: u16, tried: bool) -> bool {
        let now = unix(Some(SystemTime::now()));
        let addr = verack::server::addr_v2(ip);
        let entry = bitcoin::p2p::address::AddrV2Message {
            time: now as u32,
            services: bitcoin::p2p::ServiceFlags::NETWORK | bitcoin::p2p::ServiceFlags::WITNESS,
            addr: addr.clone(),
            port,
        };
        let mut man = self.addrman.lock();
        // Core uses the address itself as the source.
        let added = man.add(&[entry], &addr, 0, now) > 0;
        if added && tried {
            man.good(&addr, port, now);
        }
        added
    }
}

fn to_addr_network(network: RpcNetwork) -> Option<AddrNetwork> {
    Some(match network {
        RpcNetwork::Ipv4 => AddrNetwork::Ipv4,
        RpcNetwork::Ipv6 => AddrNetwork::Ipv6,
        RpcNetwork::Onion => AddrNetwork::TorV3,
        RpcNetwork::I2p => AddrNetwork::I2p,
        RpcNetwork::Cjdns => AddrNetwork::Cjdns,
        RpcNetwork::NotPubliclyRoutable => return None,
    })
}

fn rpc_network(addr: &AddrV2) -> RpcNetwork {
    match verack::addrman::network_of(addr) {
        Some(AddrNetwork::Ipv4) => RpcNetwork::Ipv4,
        Some(AddrNetwork::Ipv6) => RpcNetwork::Ipv6,
        Some(AddrNetwork::TorV3) => RpcNetwork::Onion,
        Some(AddrNetwork::I2p) => RpcNetwork::I2p,
        Some(AddrNetwork::Cjdns) => RpcNetwork::Cjdns,
        None => RpcNetwork::NotPubliclyRoutable,
    }
}

/// An address as Core prints it (IPs; Tor v3 as `.onion`, I2P as `.b32.i2p`, CJDNS as IPv6).
fn addr_text(addr: &AddrV2) -> String {
    match addr {
        AddrV2::Ipv4(ip) => ip.to_string(),
        AddrV2::Ipv6(ip) | AddrV2::Cjdns(ip) => ip.to_string(),
        AddrV2::TorV3(key) => format!("{}.onion", base32_lower(&tor_v3_address(key))),
        AddrV2::I2p(hash) => format!("{}.b32.i2p", base32_lower(hash).trim_end_matches('=')),
        other => format!("{other:?}"),
    }
}

/// Tor v3 address bytes: pubkey || checksum(2) || version(1) (Tor's rend-spec-v3).
fn tor_v3_address(pubkey: &[u8; 32]) -> Vec<u8> {
    use sha3::{Digest, Sha3_256};
    let mut hasher = Sha3_256::new();
    hasher.update(b".onion checksum");
    hasher.update(pubkey);
    hasher.update([3u8]);
    let digest = hasher.finalize();
    let mut out = pubkey.to_vec();
    out.extend_from_slice(&digest[..2]);
    out.push(3);
    out
}

/// RFC 4648 base32, lowercase, no padding (as onion and I2P names are written).
fn base32_lower(bytes: &[u8]) -> String {
    data_encoding::BASE32_NOPAD
        .encode(bytes)
        .to_ascii_lowercase()
}

/// The `addnode` RPC's `v2transport` argument as the server's manual transport.
fn manual(v2transport: bool) -> ManualTransport {
    if v2transport {
        ManualTransport::V2First
    } else {
        ManualTransport::V1Only
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn onion_v3_names_round_trip_with_their_checksum() {
        let name = "duckduckgogg42xjoc72x3sjasowoarfbgcmvfimaftt6twagswzczad";
        let bytes = data_encoding::BASE32_NOPAD
            .decode(name.to_ascii_uppercase().as_bytes())
            .unwrap();
        let pubkey: [u8; 32] = bytes[..32].try_into().unwrap();
        assert_eq!(addr_text(&AddrV2::TorV3(pubkey)), format!("{name}.onion"));
        assert_eq!(addr_text(&AddrV2::Ipv4([1, 2, 3, 4].into())), "1.2.3.4");
    }
}
