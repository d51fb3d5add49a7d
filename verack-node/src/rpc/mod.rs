//! Bitcoin Core-compatible JSON-RPC over HTTP, so `bitcoin-cli -rpcport=…` and scripts
//! written for Core work against verack.
//!
//! - Transport, status codes, JSON-RPC 1.0/2.0 and batches: [`serve`], following Core's
//!   `src/httprpc.cpp` and `src/rpc/request.cpp`.
//! - Authentication: HTTP Basic with a [`Cookie`] and/or a configured user and password
//!   ([`RpcAuth`]).
//! - The node behind it: [`RpcBackend`], with plain data from this module's types.
//!
//! Methods: `getpeerinfo`, `getnetworkinfo`, `getconnectioncount`, `getnettotals`,
//! `addnode`, `disconnectnode`, `setban`, `listbanned`, `clearbanned`, `getblockcount`,
//! `getbestblockhash`, `getblockhash`, `getblockheader`, `getchaintips`,
//! `getblockchaininfo`, `getnodeaddresses`, `getaddrmaninfo`, `addpeeraddress`, `uptime`,
//! `stop`, `help`. Positional and named parameters both work, with Core's parameter errors.
//! Doubles are printed as Core's UniValue prints them (16 significant digits, `1` rather than
//! `1.0` for a whole value).
//!
//! `verack-node/tests/core_rpc_parity.rs` compares every method with the bundled Core on one
//! chain; its `DELIBERATE` list (and README's "JSON-RPC") has each remaining difference with
//! its reason. Besides those: `stop` answers "verack stopping"; there is no `rpcauth`,
//! `rpcwhitelist` or wallet endpoint (`/wallet/…` is 404, as in a Core built without a
//! wallet).

mod auth;
pub mod backend;
mod dispatch;
mod methods;
mod server;
pub mod types;

#[cfg(test)]
mod tests;

use std::net::{IpAddr, Ipv4Addr};

use bitcoin::Network;

pub use auth::{cookie_path, Cookie, RpcAuth};
pub use backend::RpcBackend;
pub use server::serve;

/// Address the RPC server binds to unless configured otherwise: loopback only, as Core
/// (`-rpcbind` defaults to localhost).
pub const DEFAULT_RPC_BIND: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// verack's default RPC port for `network`.
///
/// Core's port plus 10 (regtest: 18443 + 10), so verack and Core run side by side on
/// one machine without either needing configuration:
///
/// | network  | verack | Core  |
/// |----------|--------|-------|
/// | mainnet  | 8342   | 8332  |
/// | testnet3 | 18342  | 18332 |
/// | testnet4 | 48342  | 48332 |
/// | signet   | 38342  | 38332 |
/// | regtest  | 18453  | 18443 |
///
/// None of these is a Core P2P port (8333, 18333, 48333, 38333, 18444) either.
/// Use `bitcoin-cli -rpcport=<port>` to reach verack.
pub fn default_rpc_port(network: Network) -> u16 {
    match network {
        Network::Bitcoin => 8342,
        Network::Testnet => 18342,
        Network::Testnet4 => 48342,
        Network::Signet => 38342,
        Network::Regtest => 18453,
    }
}
