//! How callers see messages: a typed handler and raw read/write hooks.
//!
//! # Where they run
//! - [`MessageHandler`] methods run on the peer's *handler task*, spawned by
//!   [`HandshakedPeer::run`](super::HandshakedPeer::run) and separate from its I/O. A slow
//!   (awaiting) handler delays only the delivery of this peer's later messages: pings are still
//!   answered, writes continue, and other peers are unaffected. While more than
//!   [`receive_buffer_limit`](super::PeerConfig::receive_buffer_limit) bytes wait for the
//!   handler, the peer stops reading its socket (backpressure), as Core pauses a peer's receive
//!   queue. Blocking the thread inside a handler (CPU work, blocking I/O) occupies a runtime
//!   worker: use `tokio::task::spawn_blocking` for that.
//! - [`MessageHooks`] methods run inline on the peer's I/O task, once per frame: keep them to
//!   counting or logging; blocking in one stalls this peer's reads (for `message_read`) or
//!   writes (for `message_written`).

use std::future::Future;
use std::net::SocketAddr;

use bitcoin::p2p::address::{AddrV2Message, Address};
use bitcoin::p2p::message::{CommandString, NetworkMessage};
use bitcoin::p2p::message_blockdata::{GetBlocksMessage, GetHeadersMessage, Inventory};
use bitcoin::p2p::message_bloom::{FilterAdd, FilterLoad};
use bitcoin::p2p::message_compact_blocks::{BlockTxn, CmpctBlock, GetBlockTxn, SendCmpct};
use bitcoin::p2p::message_filter::{
    CFCheckpt, CFHeaders, CFilter, GetCFCheckpt, GetCFHeaders, GetCFilters,
};
use bitcoin::p2p::message_network::Reject;
use bitcoin::{block, Block, MerkleBlock, Transaction};
use bytes::Bytes;

use super::{PeerHandle, PeerId};
use crate::transport::TransportKind;
use crate::wire::{DecodeError, RawMessage};

/// What became of a frame read from the stream (see [`MessageHooks::frame_read`]).
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum FrameOutcome<'a> {
    /// The payload decoded into this message, which the peer now processes (handshake or
    /// running rules, then the handler).
    Decoded(&'a NetworkMessage),
    /// The frame is dropped and the connection kept, as Bitcoin Core does:
    /// [`DecodeError::BadChecksum`] (v1), [`DecodeError::Undecodable`] (a known command
    /// whose payload rust-bitcoin cannot decode), or for v2
    /// [`V2Error::UnknownShortId`](crate::wire::V2Error::UnknownShortId) /
    /// [`V2Error::BadMessageType`](crate::wire::V2Error::BadMessageType) (the command is
    /// then empty).
    Dropped(&'a DecodeError),
}

/// One frame as read, before the peer acts on it: see [`MessageHooks::frame_read`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RawFrame<'a> {
    /// The message type (at most 12 ASCII bytes); empty when a v2 message type could not be
    /// read.
    pub command: &'a str,
    /// The payload exactly as received (v2: decrypted), without the v1 header or v2 message
    /// type. Shares the read buffer's memory: cloning it or keeping it copies nothing (and
    /// keeps that buffer alive while held).
    pub payload: Bytes,
    /// The v1 header's checksum as sent (first 4 bytes of the payload's double SHA-256 when
    /// the outcome is not [`DecodeError::BadChecksum`]); `None` for v2, which has none.
    pub checksum: Option<[u8; 4]>,
    /// Bytes on the wire: v1 header + payload, or the whole v2 packet (3 length + 1 header
    /// + contents + 16 tag).
    pub wire_len: usize,
    /// The transport it came over.
    pub transport: TransportKind,
    /// Decoded, or dropped and why.
    pub outcome: FrameOutcome<'a>,
}

impl RawFrame<'_> {
    /// This frame as a message to send on with
    /// [`PeerHandle::send_raw`](super::PeerHandle::send_raw), unchanged and without
    /// re-encoding: the payload is shared, and a v1 checksum that matched is reused so
    /// forwarding to a v1 peer hashes nothing. `None` when the command is empty (a v2 message
    /// type that could not be read).
    pub fn to_raw_message(&self) -> Option<RawMessage> {
        let command = bitcoin::p2p::message::CommandString::try_from(self.command.to_string())
            .ok()
            .filter(|_| !self.command.is_empty())?;
        let checksum = match self.outcome {
            FrameOutcome::Dropped(DecodeError::BadChecksum { .. }) => None,
            _ => self.checksum,
        };
        Some(match checksum {
            Some(sum) => RawMessage::with_checksum(command, self.payload.clone(), sum),
            None => RawMessage::new(command, self.payload.clone()),
        })
    }
}

/// Observers of every frame read and written, unknown commands included. Shared by all peers
/// of a [`PeerConfig`](super::PeerConfig). Every method defaults to doing nothing. They run
/// inline on the peer's I/O task (see [`MessageHandler`], *Where they run*): keep them cheap.
pub trait MessageHooks: Send + Sync + 'static {
    /// Every frame read, handshake included, before the peer acts on it: its command, raw
    /// payload as [`Bytes`] (no copy), the v1 checksum and what became of it
    /// ([`FrameOutcome`]): decoded, or dropped for a bad checksum, an undecodable payload or
    /// an unreadable v2 message type. Frames that end the connection (wrong magic, oversize
    /// or malformed header, v2 decryption failure) are not frames and never reach it; v2 decoy
    /// packets neither. Called before [`message_read`](Self::message_read) for a decoded
    /// frame. A relay keeps `frame.payload` (or [`RawFrame::to_raw_message`]) to forward the
    /// frame unchanged.
    fn frame_read(&self, peer: PeerId, remote: SocketAddr, frame: &RawFrame<'_>) {
        let _ = (peer, remote, frame);
    }

    /// A frame of `wire_len` bytes (header included; for v2 the whole packet: length, header
    /// byte, contents and tag) was read and decoded into `message`. Called for handshake
    /// messages too.
    fn message_read(
        &self,
        peer: PeerId,
        remote: SocketAddr,
        message: &NetworkMessage,
        wire_len: usize,
    ) {
        let _ = (peer, remote, message, wire_len);
    }

    /// A frame carrying `command` was written to the socket; `frame` is its raw bytes, header
    /// included (for v2, the encrypted packet as written).
    fn message_written(&self, peer: PeerId, remote: SocketAddr, command: &str, frame: &[u8]) {
        let _ = (peer, remote, command, frame);
    }
}

macro_rules! handler_methods {
    ($( $(#[$doc:meta])* $name:ident ( $($arg:ident : $ty:ty),* ) ; )*) => {
        $(
            $(#[$doc])*
            fn $name(&mut self, peer: &PeerHandle $(, $arg: $ty)*) -> impl Future<Output = ()> + Send {
                let _ = (peer $(, $arg)*);
                async {}
            }
        )*
    };
}

/// Reacts to a running peer's messages, one method per message kind; each defaults to doing
/// nothing.
///
/// The peer itself handles `version`/`verack` (handshake only), answers `ping` (BIP31), tracks
/// `pong`, and applies BIP111; the handler still sees `ping`, `pong` and permitted filter
/// messages. Messages that are protocol violations after the handshake (`version`, `verack`,
/// `wtxidrelay`, `sendaddrv2`, `feature`) disconnect and never reach it; a late `sendtxrcncl`
/// is dropped (Core without `-txreconciliation` ignores it), or disconnects when we sent one
/// ourselves in the handshake extension (Core with `-txreconciliation`).
///
/// Up to three messages the remote sent between `version` and `verack` are delivered first,
/// in order. Override
/// [`on_message`](Self::on_message) to see every message in one place.
///
/// # Where they run
/// - [`MessageHandler`] methods run on the peer's *handler task*, spawned by
///   [`HandshakedPeer::run`](super::HandshakedPeer::run) and separate from its I/O. A slow
///   (awaiting) handler delays only the delivery of this peer's later messages: pings are still
///   answered, writes continue, and other peers are unaffected. While more than
///   [`receive_buffer_limit`](super::PeerConfig::receive_buffer_limit) bytes wait for the
///   handler, the peer stops reading its socket (backpressure), as Core pauses a peer's receive
///   queue. Blocking the thread inside a handler (CPU work, blocking I/O) occupies a runtime
///   worker: use `tokio::task::spawn_blocking` for that.
/// - [`MessageHooks`] methods run inline on the peer's I/O task, once per frame: keep them to
///   counting or logging; blocking in one stalls this peer's reads (for `message_read`) or
///   writes (for `message_written`).
pub trait MessageHandler: Send + 'static {
    /// Called for each message; the default dispatches to the per-kind methods below.
    fn on_message(
        &mut self,
        peer: &PeerHandle,
        message: NetworkMessage,
    ) -> impl Future<Output = ()> + Send {
        async move { dispatch(self, peer, message).await }
    }

    handler_methods! {
        /// `addr`: `(timestamp, address)` pairs.
        on_addr(addrs: Vec<(u32, Address)>);
        /// `addrv2` (BIP155).
        on_addrv2(addrs: Vec<AddrV2Message>);
        /// `inv`. Its items are already remembered as known to the remote.
        on_inv(inv: Vec<Inventory>);
        /// `getdata`.
        on_getdata(inv: Vec<Inventory>);
        /// `notfound`.
        on_notfound(inv: Vec<Inventory>);
        /// `getblocks`.
        on_getblocks(msg: GetBlocksMessage);
        /// `getheaders`.
        on_getheaders(msg: GetHeadersMessage);
        /// `mempool` (BIP35).
        on_mempool();
        /// `tx`.
        on_tx(tx: Transaction);
        /// `block`.
        on_block(block: Block);
        /// `headers`.
        on_headers(headers: Vec<block::Header>);
        /// `sendheaders` (BIP130), also recorded in
        /// [`PeerHandle::remote_features`](super::PeerHandle::remote_features).
        on_sendheaders();
        /// `getaddr`.
        on_getaddr();
        /// `ping`, after the peer queued the pong.
        on_ping(nonce: u64);
        /// `pong`, after the peer matched it against its pending ping.
        on_pong(nonce: u64);
        /// `merkleblock` (BIP37).
        on_merkleblock(block: MerkleBlock);
        /// `filterload` (BIP37; only when we advertise `NODE_BLOOM` or below version 70011).
        on_filterload(filter: FilterLoad);
        /// `filteradd` (BIP37; as `filterload`).
        on_filteradd(data: FilterAdd);
        /// `filterclear` (BIP37; as `filterload`).
        on_filterclear();
        /// `getcfilters` (BIP157).
        on_getcfilters(msg: GetCFilters);
        /// `cfilter` (BIP157).
        on_cfilter(msg: CFilter);
        /// `getcfheaders` (BIP157).
        on_getcfheaders(msg: GetCFHeaders);
        /// `cfheaders` (BIP157).
        on_cfheaders(msg: CFHeaders);
        /// `getcfcheckpt` (BIP157).
        on_getcfcheckpt(msg: GetCFCheckpt);
        /// `cfcheckpt` (BIP157).
        on_cfcheckpt(msg: CFCheckpt);
        /// `sendcmpct` (BIP152), also recorded in the remote features.
        on_sendcmpct(msg: SendCmpct);
        /// `cmpctblock` (BIP152).
        on_cmpctblock(msg: CmpctBlock);
        /// `getblocktxn` (BIP152).
        on_getblocktxn(msg: GetBlockTxn);
        /// `blocktxn` (BIP152).
        on_blocktxn(msg: BlockTxn);
        /// `alert` (retired; raw payload).
        on_alert(payload: Vec<u8>);
        /// `reject` (BIP61, legacy).
        on_reject(msg: Reject);
        /// `feefilter` (BIP133), in satoshis per 1000 virtual bytes.
        on_feefilter(fee_rate: i64);
        /// A command verack does not know; the raw payload, checksum verified.
        on_unknown(command: CommandString, payload: Vec<u8>);
    }
}

/// Calls the per-kind method of `handler` for `message`.
pub async fn dispatch<H: MessageHandler + ?Sized>(
    handler: &mut H,
    peer: &PeerHandle,
    message: NetworkMessage,
) {
    use NetworkMessage as M;
    match message {
        M::Addr(a) => handler.on_addr(peer, a).await,
        M::AddrV2(a) => handler.on_addrv2(peer, a).await,
        M::Inv(i) => handler.on_inv(peer, i).await,
        M::GetData(i) => handler.on_getdata(peer, i).await,
        M::NotFound(i) => handler.on_notfound(peer, i).await,
        M::GetBlocks(m) => handler.on_getblocks(peer, m).await,
        M::GetHeaders(m) => handler.on_getheaders(peer, m).await,
        M::MemPool => handler.on_mempool(peer).await,
        M::Tx(t) => handler.on_tx(peer, t).await,
        M::Block(b) => handler.on_block(peer, b).await,
        M::Headers(h) => handler.on_headers(peer, h).await,
        M::SendHeaders => handler.on_sendheaders(peer).await,
        M::GetAddr => handler.on_getaddr(peer).await,
        M::Ping(n) => handler.on_ping(peer, n).await,
        M::Pong(n) => handler.on_pong(peer, n).await,
        M::MerkleBlock(m) => handler.on_merkleblock(peer, m).await,
        M::FilterLoad(f) => handler.on_filterload(peer, f).await,
        M::FilterAdd(f) => handler.on_filteradd(peer, f).await,
        M::FilterClear => handler.on_filterclear(peer).await,
        M::GetCFilters(m) => handler.on_getcfilters(peer, m).await,
        M::CFilter(m) => handler.on_cfilter(peer, m).await,
        M::GetCFHeaders(m) => handler.on_getcfheaders(peer, m).await,
        M::CFHeaders(m) => handler.on_cfheaders(peer, m).await,
        M::GetCFCheckpt(m) => handler.on_getcfcheckpt(peer, m).await,
        M::CFCheckpt(m) => handler.on_cfcheckpt(peer, m).await,
        M::SendCmpct(m) => handler.on_sendcmpct(peer, m).await,
        M::CmpctBlock(m) => handler.on_cmpctblock(peer, m).await,
        M::GetBlockTxn(m) => handler.on_getblocktxn(peer, m).await,
        M::BlockTxn(m) => handler.on_blocktxn(peer, m).await,
        M::Alert(a) => handler.on_alert(peer, a).await,
        M::Reject(r) => handler.on_reject(peer, r).await,
        M::FeeFilter(f) => handler.on_feefilter(peer, f).await,
        M::Unknown { command, payload } => handler.on_unknown(peer, command, payload).await,
        // Handled by the peer and never delivered.
        M::Version(_) | M::Verack | M::WtxidRelay | M::SendAddrV2 => {}
    }
}

/// A handler that ignores everything; the peer still keeps itself alive.
#[derive(Debug, Default, Clone, Copy)]
pub struct IgnoreMessages;

impl MessageHandler for IgnoreMessages {}
