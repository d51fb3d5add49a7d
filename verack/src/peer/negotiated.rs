//! What the handshake agreed on.

use bitcoin::p2p::message_compact_blocks::SendCmpct;
use bitcoin::p2p::ServiceFlags;

use crate::transport::Transport;

/// Feature-negotiation messages the remote sent.
///
/// Those sent between `version` and `verack` are in [`Negotiated::features`]; `sendheaders` and
/// `sendcmpct` may also come later and then update
/// [`PeerHandle::remote_features`](super::PeerHandle::remote_features).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RemoteFeatures {
    /// The remote sent `wtxidrelay` (BIP339): announce transactions by wtxid.
    pub wtxid_relay: bool,
    /// The remote sent `sendaddrv2` (BIP155): send it `addrv2` instead of `addr`.
    pub addr_v2: bool,
    /// The remote sent `sendheaders` (BIP130): announce blocks with `headers`.
    pub send_headers: bool,
    /// The remote's latest `sendcmpct` (BIP152), if any.
    pub compact_blocks: Option<SendCmpct>,
    /// The raw payload of the remote's `sendtxrcncl` (BIP330), if any.
    pub tx_reconciliation: Option<Vec<u8>>,
    /// Raw payloads of the remote's `feature` messages (BIP434), in order.
    pub features: Vec<Vec<u8>>,
}

/// The outcome of a successful handshake; fixed for the life of the peer.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Negotiated {
    /// `min(our version, their version)`: the version both sides speak.
    pub protocol_version: u32,
    /// The protocol version the remote announced.
    pub remote_version: u32,
    /// Services the remote advertised.
    pub services: ServiceFlags,
    /// The remote's user agent (BIP14), at most 256 bytes.
    pub user_agent: String,
    /// The remote's best height when it connected.
    pub start_height: i32,
    /// The remote's `relay` flag (BIP37): `false` means do not announce transactions to it.
    pub relay: bool,
    /// Remote clock minus ours when its `version` arrived, in seconds.
    pub time_offset: i64,
    /// The nonce of the remote's `version`.
    pub remote_nonce: u64,
    /// The nonce of our `version`.
    pub local_nonce: u64,
    /// Features the remote announced before `verack`.
    pub features: RemoteFeatures,
    /// The transport the handshake ran over: v1, or v2 with its BIP324 session id.
    pub transport: Transport,
}
