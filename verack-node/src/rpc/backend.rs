//! The node as the RPC server sees it.
//!
//! The server owns everything Core-specific (parameter checks, error codes and messages,
//! JSON shapes); the backend only answers questions about state and carries out
//! commands. Each method says which RPC uses it.

use std::time::Duration;

use bitcoin::{BlockHash, Network};
use ipnet::IpNet;

use super::types::{
    BanExpiry, DisconnectTarget, RpcAddrmanCounts, RpcBan, RpcChainStatus, RpcChainTip,
    RpcHeaderInfo, RpcNetTotals, RpcNetwork, RpcNetworkInfo, RpcNodeAddress, RpcPeer,
};

/// What the JSON-RPC server needs from the node.
///
/// Methods are called from a blocking thread pool (at most 16 at once, Core's
/// `-rpcthreads` default), never on an async task, so they may take
/// locks; they should still return promptly, since a slow answer holds an RPC thread.
pub trait RpcBackend: Send + Sync + 'static {
    /// The chain the node runs on (`getblockchaininfo.chain`).
    fn network(&self) -> Network;

    /// Connected peers (`getpeerinfo`; counted for `getnetworkinfo.connections*`).
    fn peers(&self) -> Vec<RpcPeer>;

    /// Number of connected peers, inbound and outbound (`getconnectioncount`). The
    /// default counts [`peers`](Self::peers); override it if a counter is cheaper.
    fn connection_count(&self) -> usize {
        self.peers().len()
    }

    /// Service bits we advertise (`getnetworkinfo.localservices`); bit 11 (`NODE_P2P_V2`)
    /// also decides whether `addnode` may use v2 transport, as in Core.
    fn local_services(&self) -> u64;

    /// Node-wide network state for `getnetworkinfo`.
    fn network_info(&self) -> RpcNetworkInfo;

    /// Byte counters since start (`getnettotals`).
    fn net_totals(&self) -> RpcNetTotals;

    /// `addnode <node> add`: remember `node` (`host:port` or `host`, as given) as a
    /// persistent peer and keep trying to connect, over v2 transport if `v2transport`.
    /// Returns `false` if it was already added (the server answers Core's
    /// `RPC_CLIENT_NODE_ALREADY_ADDED`).
    fn add_node(&self, node: &str, v2transport: bool) -> bool;

    /// `addnode <node> remove`: forget a node added with [`add_node`](Self::add_node)
    /// (without disconnecting it, as in Core). Returns `false` if it was never added.
    fn remove_added_node(&self, node: &str) -> bool;

    /// `addnode <node> onetry`: dial `node` once as a manual connection, without
    /// remembering it. Failures are not reported, as in Core.
    fn connect_once(&self, node: &str, v2transport: bool);

    /// `disconnectnode`: drop the matching peer(s). Returns `false` if none matched.
    fn disconnect_node(&self, target: DisconnectTarget) -> bool;

    /// `setban <subnet> add`: ban `subnet` (a single IP comes as a host-length prefix) until
    /// `expiry`, and disconnect the peers it covers, as Core does. Returns `false` without
    /// changing anything if already banned: for a single IP, if any ban covers it
    /// (Core's `IsBanned(CNetAddr)`); for a subnet, if that exact subnet is banned.
    fn ban(&self, subnet: IpNet, expiry: BanExpiry) -> bool;

    /// `setban <subnet> remove`: lift the ban on exactly `subnet`. Returns `false` if
    /// `subnet` was not banned.
    fn unban(&self, subnet: &IpNet) -> bool;

    /// Current bans (`listbanned`), expired ones excluded.
    fn list_banned(&self) -> Vec<RpcBan>;

    /// Lift every ban (`clearbanned`).
    fn clear_banned(&self);

    /// The active chain's tip (`getblockcount`, `getbestblockhash`, `getblockchaininfo`).
    fn tip(&self) -> RpcHeaderInfo;

    /// Chain-wide state besides the tip (`getblockchaininfo`).
    fn chain_status(&self) -> RpcChainStatus;

    /// Any header the node knows, on the active chain or not (`getblockheader`); `None`
    /// for an unknown hash (`RPC_INVALID_ADDRESS_OR_KEY`, "Block not found").
    fn header_by_hash(&self, hash: &BlockHash) -> Option<RpcHeaderInfo>;

    /// The active chain's hash at `height` (`getblockhash`); `None` above the tip
    /// (`RPC_INVALID_PARAMETER`, "Block height out of range").
    fn hash_at(&self, height: u32) -> Option<BlockHash>;

    /// Every tip of the header tree, the active one included (`getchaintips`).
    fn chain_tips(&self) -> Vec<RpcChainTip>;

    /// Time since the node started (`uptime`, printed in whole seconds).
    fn uptime(&self) -> Duration;

    /// Begin shutting the node down (`stop`). Must not block until shutdown completes:
    /// the server still has to send the reply. The node then cancels the token passed
    /// to [`serve`](super::serve).
    fn request_stop(&self);

    /// `getnodeaddresses`: up to `count` known addresses (0 = all), optionally of one network,
    /// as Core's `AddrMan::GetAddr` picks them (random, terrible ones skipped). Default none.
    fn node_addresses(&self, count: usize, network: Option<RpcNetwork>) -> Vec<RpcNodeAddress> {
        let _ = (count, network);
        Vec::new()
    }

    /// `getaddrmaninfo`: new/tried counts for each of [`RpcNetwork::LISTED`]. Default zeros.
    fn addrman_counts(&self, network: RpcNetwork) -> RpcAddrmanCounts {
        let _ = network;
        RpcAddrmanCounts::default()
    }

    /// `addpeeraddress` (a test RPC in Core): add `ip:port` to the address manager's new table,
    /// then to tried if `tried`. Returns whether it was added. Default `false`.
    fn add_peer_address(&self, ip: std::net::IpAddr, port: u16, tried: bool) -> bool {
        let _ = (ip, port, tried);
        false
    }
}
