//! [`PeerHandle`]: what other tasks use to talk to a running peer.

use std::net::SocketAddr;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use bitcoin::hashes::Hash;
use bitcoin::p2p::address::{AddrV2Message, Address};
use bitcoin::p2p::message::{CommandString, NetworkMessage};
use bitcoin::p2p::message_blockdata::{GetBlocksMessage, GetHeadersMessage, Inventory};
use bitcoin::p2p::message_network::{Reject, RejectReason};
use bitcoin::p2p::ServiceFlags;
use bitcoin::BlockHash;
use bytes::{Bytes, BytesMut};
use rand::Rng;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::connection::PeerContext;
use super::connection::{encode_queued, encode_queued_into, encode_raw_queued};
use super::inventory::{is_block, KnownInventory, Trickle};
use super::ping::PingState;
use super::push::{select_addresses, MAX_ADDR_TO_SEND};
use super::queue::Queue;
use super::sent::{Notifier, Sent};
use super::stall::StallTracker;
use super::{
    Direction, DisconnectReason, Negotiated, PeerConfig, PeerId, PeerStats, RemoteFeatures,
    SendError,
};
use crate::wire::{payload_size_hint, OversizeMessage, RawMessage, MAX_PAYLOAD_LEN};

/// The first version that understands `reject` (BIP61).
const REJECT_VERSION: u32 = 70002;

/// Messages this large (estimated payload bytes, 64 KiB) reuse the buffer of the last large
/// frame written instead of a fresh allocation, whose pages would each fault in on first touch.
pub(crate) const SPARE_MIN: usize = 64 * 1024;

/// The most `send_all` reserves up front from its messages' estimated sizes (the buffer still
/// grows as needed).
const MAX_BATCH_HINT: usize = 4 << 20;

/// A frame waiting for the writer.
pub(crate) struct Outgoing {
    /// A whole v1 frame, or v2 packet contents the writer encrypts; for a `send_all` batch,
    /// several of them back to back.
    pub(crate) frame: Bytes,
    pub(crate) commands: Commands,
    /// Completions resolved once this entry is written (usually none or one; a trickle
    /// round's waiters ride on its last `inv`).
    pub(crate) sent: Vec<Notifier>,
}

/// The messages in an [`Outgoing`] frame: each one's command and length in bytes, in order.
pub(crate) enum Commands {
    /// One message (the whole frame).
    One([(CommandString, usize); 1]),
    /// A `send_all` batch.
    Many(Vec<(CommandString, usize)>),
}

impl Outgoing {
    /// One message's frame.
    pub(crate) fn one(frame: Bytes, command: CommandString, sent: Vec<Notifier>) -> Outgoing {
        let len = frame.len();
        Outgoing {
            frame,
            commands: Commands::One([(command, len)]),
            sent,
        }
    }

    /// The messages in this entry: each one's command and byte range in `frame`.
    pub(crate) fn messages(&self) -> impl Iterator<Item = (&str, Range<usize>)> + '_ {
        let parts: &[(CommandString, usize)] = match &self.commands {
            Commands::One(one) => one,
            Commands::Many(parts) => parts,
        };
        parts.iter().scan(0, |offset, (command, len)| {
            *offset += len;
            Some((command.as_ref(), *offset - len..*offset))
        })
    }
}

/// Mutable protocol state of a running peer, behind one short-held lock.
pub(crate) struct State {
    pub(crate) ping: PingState,
    pub(crate) stall: StallTracker,
    pub(crate) trickle: Trickle,
    pub(crate) known: KnownInventory,
    pub(crate) features: RemoteFeatures,
    /// First locator hash and stop hash of our last getheaders / getblocks.
    last_getheaders: Option<(Option<BlockHash>, BlockHash)>,
    last_getblocks: Option<(Option<BlockHash>, BlockHash)>,
}

impl State {
    /// The peer answered a `getheaders` (a `headers` message arrived): the same request may go
    /// again. Without this, a node at its tip whose `getheaders` was answered with nothing
    /// would never ask again when the peer then announces blocks by `inv`, since every
    /// request would carry the same first locator hash. Core likewise allows a new
    /// `getheaders` once the last one was answered.
    pub(crate) fn headers_answered(&mut self) {
        self.last_getheaders = None;
    }
}

/// Everything a running peer's tasks and handles share.
pub(crate) struct Shared {
    pub(crate) ctx: Arc<PeerContext>,
    pub(crate) config: Arc<PeerConfig>,
    pub(crate) negotiated: Negotiated,
    pub(crate) outbox: Queue<Outgoing>,
    /// A written frame's buffer kept for the next large message (see [`SPARE_MIN`]); dropped
    /// when the outbox empties, so an idle peer keeps none.
    pub(crate) spare: Mutex<Option<BytesMut>>,
    pub(crate) queued_bytes: AtomicUsize,
    state: Mutex<State>,
    last_block_height: AtomicI32,
    /// Wakes the timer loop when a deadline may have moved earlier.
    pub(crate) wake: Notify,
    /// Bytes delivered to the handler queue and not yet handled; `drained` fires as it shrinks.
    pub(crate) handler_backlog: AtomicUsize,
    pub(crate) drained: Notify,
    pub(crate) reading_paused: AtomicBool,
    /// Fires when the peer decides to disconnect, for any reason.
    pub(crate) stop: CancellationToken,
    reason: OnceLock<DisconnectReason>,
    /// Fires once every task of the peer ended and the socket is closed.
    pub(crate) closed: CancellationToken,
}

impl Shared {
    pub(crate) fn new(
        ctx: Arc<PeerContext>,
        config: Arc<PeerConfig>,
        negotiated: Negotiated,
    ) -> Shared {
        let now = Instant::now();
        let trickle_mean = match ctx.direction {
            Direction::Inbound => config.inbound_trickle_interval,
            Direction::Outbound => config.outbound_trickle_interval,
        };
        let state = State {
            ping: PingState::new(now, config.ping_interval, config.ping_timeout),
            stall: StallTracker::new(
                config.headers_response_timeout,
                config.getdata_response_timeout,
            ),
            trickle: Trickle::new(trickle_mean),
            known: KnownInventory::new(config.known_inventory_capacity),
            features: negotiated.features.clone(),
            last_getheaders: None,
            last_getblocks: None,
        };
        Shared {
            last_block_height: AtomicI32::new(negotiated.start_height),
            ctx,
            config,
            negotiated,
            outbox: Queue::new(),
            spare: Mutex::new(None),
            queued_bytes: AtomicUsize::new(0),
            state: Mutex::new(state),
            wake: Notify::new(),
            handler_backlog: AtomicUsize::new(0),
            drained: Notify::new(),
            reading_paused: AtomicBool::new(false),
            stop: CancellationToken::new(),
            reason: OnceLock::new(),
            closed: CancellationToken::new(),
        }
    }

    pub(crate) fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("peer state lock")
    }

    /// Records `reason` if none was recorded yet and stops the peer; returns the reason that
    /// won.
    pub(crate) fn disconnect_with(&self, reason: DisconnectReason) -> DisconnectReason {
        let winner = self.reason.get_or_init(|| reason).clone();
        self.stop.cancel();
        winner
    }

    /// Whether a disconnect was decided: one atomic load (the reason is set before `stop` is
    /// cancelled), cheaper than `CancellationToken::is_cancelled`, which takes a lock.
    pub(crate) fn is_stopping(&self) -> bool {
        self.reason.get().is_some()
    }

    pub(crate) fn reason(&self) -> Option<DisconnectReason> {
        self.reason.get().cloned()
    }

    /// Encodes and queues `msg` for the writer; `sent` completes when it is written.
    pub(crate) fn enqueue(
        &self,
        msg: &NetworkMessage,
        sent: Option<Notifier>,
    ) -> Result<(), SendError> {
        self.enqueue_with(msg, sent.into_iter().collect())
    }

    /// [`enqueue`](Self::enqueue) with any number of completions riding on the frame.
    pub(crate) fn enqueue_with(
        &self,
        msg: &NetworkMessage,
        sent: Vec<Notifier>,
    ) -> Result<(), SendError> {
        if self.is_stopping() {
            return Err(SendError::Disconnected);
        }
        self.note_sending(std::slice::from_ref(msg))?;
        let spare = if payload_size_hint(msg) >= SPARE_MIN {
            self.spare.lock().expect("spare lock").take()
        } else {
            None
        };
        let frame = encode_queued(
            self.negotiated.transport.kind(),
            self.ctx_magic(),
            msg,
            spare,
        )?;
        let len = frame.len();
        self.reserve_queue(len)?;
        self.outbox
            .push(Outgoing::one(frame, msg.command(), sent))
            .map_err(|_| {
                self.queued_bytes.fetch_sub(len, Ordering::AcqRel);
                SendError::Disconnected
            })
    }

    /// Frames a pre-encoded message and queues it (see [`PeerHandle::send_raw`]).
    pub(crate) fn enqueue_raw(
        &self,
        msg: &RawMessage,
        sent: Option<Notifier>,
    ) -> Result<(), SendError> {
        if self.is_stopping() {
            return Err(SendError::Disconnected);
        }
        let command = msg.command.as_ref();
        if command == "version" || command == "verack" {
            return Err(SendError::HandshakeMessage {
                command: command.to_string(),
            });
        }
        if msg.payload.len() > MAX_PAYLOAD_LEN {
            return Err(SendError::Oversize(OversizeMessage {
                command: command.to_string(),
                len: msg.payload.len(),
            }));
        }
        let spare = if msg.payload.len() >= SPARE_MIN {
            self.spare.lock().expect("spare lock").take()
        } else {
            None
        };
        let frame = encode_raw_queued(
            self.negotiated.transport.kind(),
            self.ctx_magic(),
            msg,
            spare,
        );
        let len = frame.len();
        self.reserve_queue(len)?;
        self.outbox
            .push(Outgoing::one(
                frame,
                msg.command.clone(),
                sent.into_iter().collect(),
            ))
            .map_err(|_| {
                self.queued_bytes.fetch_sub(len, Ordering::AcqRel);
                SendError::Disconnected
            })
    }

    /// Encodes `msgs` into one buffer and queues them as one entry (one allocation, one queue
    /// operation); the writer still counts each message. All or nothing.
    pub(crate) fn enqueue_all(
        &self,
        msgs: &[NetworkMessage],
        sent: Option<Notifier>,
    ) -> Result<(), SendError> {
        if self.is_stopping() {
            return Err(SendError::Disconnected);
        }
        self.note_sending(msgs)?;
        let kind = self.negotiated.transport.kind();
        let hint: usize = msgs.iter().map(|m| 24 + payload_size_hint(m)).sum();
        let mut buf = BytesMut::with_capacity(hint.min(MAX_BATCH_HINT));
        let mut ends = Vec::with_capacity(msgs.len());
        for msg in msgs {
            encode_queued_into(kind, self.ctx_magic(), msg, &mut buf)?;
            ends.push(buf.len());
        }
        let total = buf.len();
        self.reserve_queue(total)?;
        let mut start = 0;
        let parts = msgs
            .iter()
            .zip(ends)
            .map(|(msg, end)| {
                let len = end - start;
                start = end;
                (msg.command(), len)
            })
            .collect();
        let batch = Outgoing {
            frame: buf.freeze(),
            commands: Commands::Many(parts),
            sent: sent.into_iter().collect(),
        };
        self.outbox.push(batch).map_err(|_| {
            self.queued_bytes.fetch_sub(total, Ordering::AcqRel);
            SendError::Disconnected
        })
    }

    /// Checks `msgs` may be sent and records what sending them means (stall deadlines for
    /// requests, known inventory for announcements), under one lock.
    fn note_sending(&self, msgs: &[NetworkMessage]) -> Result<(), SendError> {
        if let Some(msg) = msgs
            .iter()
            .find(|m| matches!(m, NetworkMessage::Version(_) | NetworkMessage::Verack))
        {
            return Err(SendError::HandshakeMessage {
                command: msg.cmd().to_string(),
            });
        }
        let tracked = |m: &NetworkMessage| {
            matches!(
                m,
                NetworkMessage::GetHeaders(_) | NetworkMessage::GetData(_) | NetworkMessage::Inv(_)
            )
        };
        if !msgs.iter().any(tracked) {
            return Ok(());
        }
        let now = Instant::now();
        let mut wake = false;
        let mut state = self.state();
        for msg in msgs {
            match msg {
                NetworkMessage::GetHeaders(_) => {
                    state.stall.requested_headers(now);
                    wake = true;
                }
                NetworkMessage::GetData(items) => {
                    for item in items {
                        if let Some(hash) = item_hash(item) {
                            state.stall.requested_item(hash, now);
                        }
                    }
                    wake = true;
                }
                NetworkMessage::Inv(items) => {
                    for item in items {
                        state.known.insert(item);
                    }
                }
                _ => {}
            }
        }
        drop(state);
        if wake {
            self.wake.notify_one();
        }
        Ok(())
    }

    /// Counts `len` more bytes queued; over the limit, disconnects with `SendQueueFull`.
    fn reserve_queue(&self, len: usize) -> Result<(), SendError> {
        let queued = self.queued_bytes.fetch_add(len, Ordering::AcqRel) + len;
        if queued > self.config.send_queue_limit {
            self.queued_bytes.fetch_sub(len, Ordering::AcqRel);
            self.disconnect_with(DisconnectReason::SendQueueFull {
                queued,
                limit: self.config.send_queue_limit,
            });
            return Err(SendError::QueueFull { queued });
        }
        Ok(())
    }

    fn ctx_magic(&self) -> bitcoin::p2p::Magic {
        self.config.wire_magic()
    }
}

/// The 32-byte hash a reply to this `getdata` item carries, for stall tracking.
pub(crate) fn item_hash(item: &Inventory) -> Option<[u8; 32]> {
    match item {
        Inventory::Transaction(t) | Inventory::WitnessTransaction(t) => Some(t.to_byte_array()),
        Inventory::WTx(w) => Some(w.to_byte_array()),
        Inventory::Block(b) | Inventory::WitnessBlock(b) | Inventory::CompactBlock(b) => {
            Some(b.to_byte_array())
        }
        Inventory::Unknown { hash, .. } => Some(*hash),
        Inventory::Error => None,
    }
}

/// A cheap, cloneable reference to a handshaked peer, usable from any task.
///
/// Every method is non-blocking except [`closed`](Self::closed); each send queues its
/// frame(s) before it returns. After the peer disconnected, sends fail with
/// [`SendError::Disconnected`] and the getters keep returning the last values.
///
/// # "Sent" notification
/// As btcd's `QueueMessage(msg, doneChan)`: every send path has a variant that hands back a
/// [`Sent`] future resolving when the frame(s) were written to the stream, or with the reason
/// they never will be — [`send_and_wait`](Self::send_and_wait) (returns the [`Sent`] itself;
/// its errors come through it), and [`send_notify`](Self::send_notify),
/// [`send_all_notify`](Self::send_all_notify),
/// [`queue_inventory_notify`](Self::queue_inventory_notify),
/// [`push_addresses_notify`](Self::push_addresses_notify),
/// [`push_getheaders_notify`](Self::push_getheaders_notify),
/// [`push_getblocks_notify`](Self::push_getblocks_notify),
/// [`push_reject_notify`](Self::push_reject_notify) and
/// [`send_raw_notify`](Self::send_raw_notify), which return the immediate errors (nothing
/// queued) directly. The plain methods are unchanged and cost no completion.
#[derive(Clone)]
pub struct PeerHandle {
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for PeerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerHandle")
            .field("id", &self.id())
            .field("remote", &self.remote())
            .finish()
    }
}

impl PeerHandle {
    /// The peer's id.
    pub fn id(&self) -> PeerId {
        self.shared.ctx.id
    }

    /// The remote socket address.
    pub fn remote(&self) -> SocketAddr {
        self.shared.ctx.remote
    }

    /// Who opened the connection.
    pub fn direction(&self) -> Direction {
        self.shared.ctx.direction
    }

    /// What the handshake agreed on.
    pub fn negotiated(&self) -> &Negotiated {
        &self.shared.negotiated
    }

    /// The remote's features now: those of the handshake, updated by later `sendheaders` and
    /// `sendcmpct`.
    pub fn remote_features(&self) -> RemoteFeatures {
        self.shared.state().features.clone()
    }

    /// Queues `msg` without waiting.
    ///
    /// # Errors
    /// [`SendError::Disconnected`] after disconnect; [`SendError::HandshakeMessage`] for
    /// `version`/`verack`; [`SendError::Oversize`] for payloads over 4,000,000 bytes;
    /// [`SendError::QueueFull`] when the queue would exceed
    /// [`send_queue_limit`](super::PeerConfig::send_queue_limit) bytes, which also disconnects
    /// the peer with [`DisconnectReason::SendQueueFull`].
    pub fn send(&self, msg: NetworkMessage) -> Result<(), SendError> {
        self.shared.enqueue(&msg, None)
    }

    /// As [`send`](Self::send), and hands back a [`Sent`] that resolves once the frame has been
    /// written to the stream, or with [`SendError::Disconnected`] if the peer disconnects
    /// first. The message is queued before this returns.
    ///
    /// # Errors
    /// As [`send`](Self::send) (nothing was queued).
    pub fn send_notify(&self, msg: NetworkMessage) -> Result<Sent, SendError> {
        let (sent, notifier) = Sent::pair();
        self.shared.enqueue(&msg, Some(notifier))?;
        Ok(sent)
    }

    /// Queues `msgs`, in order, as [`send`](Self::send) would one by one, but encoded into one
    /// buffer and queued under one lock: for many small messages (a stream of `inv`s, say),
    /// one allocation and one queue operation instead of one per message. The writer still
    /// counts and reports each message. All or nothing: on error none is queued.
    ///
    /// # Errors
    /// As [`send`](Self::send), for any of the messages (the queue limit applies to their total).
    pub fn send_all(&self, msgs: &[NetworkMessage]) -> Result<(), SendError> {
        self.shared.enqueue_all(msgs, None)
    }

    /// As [`send_all`](Self::send_all), and hands back a [`Sent`] that resolves once the whole
    /// batch has been written (it is written in order, in one or more socket writes).
    ///
    /// # Errors
    /// As [`send_all`](Self::send_all) (nothing was queued).
    pub fn send_all_notify(&self, msgs: &[NetworkMessage]) -> Result<Sent, SendError> {
        let (sent, notifier) = Sent::pair();
        self.shared.enqueue_all(msgs, Some(notifier))?;
        Ok(sent)
    }

    /// Queues `msg` at once and returns a [`Sent`] that resolves when its frame has been
    /// written to the socket: `handle.send_and_wait(msg).await` waits for the write, as before.
    ///
    /// Unlike an `async fn`, the message is queued when this is *called*, not when the result
    /// is first polled (btcd's `QueueMessage` with a done channel), so calls made in order are
    /// written in order, and dropping the [`Sent`] does not cancel the send. The result used to
    /// be an `async fn` future with the same output; code that awaits it is unchanged.
    ///
    /// # Errors
    /// The [`Sent`] resolves to the errors of [`send`](Self::send) when nothing could be
    /// queued, and to [`SendError::Disconnected`] if the peer disconnects before the frame was
    /// written.
    pub fn send_and_wait(&self, msg: NetworkMessage) -> Sent {
        self.send_notify(msg)
            .unwrap_or_else(|e| Sent::ready(Err(e)))
    }

    /// Queues a pre-encoded message ([`RawMessage`]: command + payload bytes) without decoding
    /// or re-encoding it: the writer frames it for this peer's transport (v1 header with the
    /// checksum the message carries, or computed here if it has none; v2 message type, then
    /// encryption), and it is counted in stats and shown to the hooks like any message. One
    /// copy of the payload is made, into the frame buffer.
    ///
    /// Raw messages are not inspected: they start no stall deadline (`getheaders`,
    /// `getdata`) and mark no inventory as known (`inv`); use [`send`](Self::send) for those
    /// when that matters.
    ///
    /// # Errors
    /// [`SendError::Disconnected`]; [`SendError::HandshakeMessage`] for `version`/`verack`;
    /// [`SendError::Oversize`] for a payload over 4,000,000 bytes; [`SendError::QueueFull`]
    /// (which disconnects), as [`send`](Self::send).
    pub fn send_raw(&self, msg: &RawMessage) -> Result<(), SendError> {
        self.shared.enqueue_raw(msg, None)
    }

    /// As [`send_raw`](Self::send_raw), and hands back a [`Sent`] that resolves once the frame
    /// has been written.
    ///
    /// # Errors
    /// As [`send_raw`](Self::send_raw) (nothing was queued).
    pub fn send_raw_notify(&self, msg: &RawMessage) -> Result<Sent, SendError> {
        let (sent, notifier) = Sent::pair();
        self.shared.enqueue_raw(msg, Some(notifier))?;
        Ok(sent)
    }

    /// Queues inventory for announcement. Items the remote is known to have are skipped.
    /// Block items (`Block`, `WitnessBlock`, `CompactBlock`) are announced at once in one
    /// `inv`; others are trickled on Poisson intervals (see
    /// [`PeerConfig::inbound_trickle_interval`](super::PeerConfig::inbound_trickle_interval))
    /// in batches of at most 1000, and dropped if the remote's `version` had `relay = false`.
    ///
    /// # Errors
    /// As [`send`](Self::send), for the immediate block announcement.
    pub fn queue_inventory(
        &self,
        items: impl IntoIterator<Item = Inventory>,
    ) -> Result<(), SendError> {
        self.queue_inventory_inner(items, None)
    }

    /// As [`queue_inventory`](Self::queue_inventory), and hands back a [`Sent`] that resolves
    /// once every item it queued has been written in an `inv`: block items at once, others at
    /// the next trickle (up to a few times the trickle interval later). Items that are not
    /// announced (already known to the remote, transactions to a `relay = false` peer, or
    /// beyond the 50,000 pending items) are not waited for; with none queued it resolves at
    /// once. It fails with [`SendError::Disconnected`] if the peer disconnects first.
    ///
    /// # Errors
    /// As [`queue_inventory`](Self::queue_inventory).
    pub fn queue_inventory_notify(
        &self,
        items: impl IntoIterator<Item = Inventory>,
    ) -> Result<Sent, SendError> {
        let (sent, notifier) = Sent::pair();
        self.queue_inventory_inner(items, Some(notifier))?;
        Ok(sent)
    }

    fn queue_inventory_inner(
        &self,
        items: impl IntoIterator<Item = Inventory>,
        notifier: Option<Notifier>,
    ) -> Result<(), SendError> {
        if self.shared.is_stopping() {
            return Err(SendError::Disconnected);
        }
        let now = Instant::now();
        let mut blocks = Vec::new();
        let mut rng = rand::thread_rng();
        let relay = self.shared.negotiated.relay;
        {
            let mut state = self.shared.state();
            let state = &mut *state;
            let mut trickled = false;
            for item in items {
                if state.known.contains(&item) {
                    continue;
                }
                if is_block(&item) {
                    state.known.insert(&item);
                    blocks.push(item);
                } else if relay && !state.trickle.push(item, now, rng.gen()) {
                    tracing::debug!(peer = self.id().0, "inventory queue full; item dropped");
                } else {
                    trickled |= relay;
                }
            }
            // Under the state lock, so a disconnect that already cleared the waiters is seen
            // (the reason is set before they are cleared).
            if let (true, Some(n)) = (trickled, &notifier) {
                if self.shared.is_stopping() {
                    return Err(SendError::Disconnected);
                }
                state.trickle.push_waiter(n.share());
            }
        }
        self.shared.wake.notify_one();
        for batch in blocks.chunks(super::inventory::MAX_INV_PER_MESSAGE) {
            let share = notifier.as_ref().map(Notifier::share);
            if let Err(e) = self
                .shared
                .enqueue(&NetworkMessage::Inv(batch.to_vec()), share)
            {
                if let Some(n) = notifier {
                    n.fail(e.clone());
                }
                return Err(e);
            }
        }
        if let Some(n) = notifier {
            n.written(); // the caller's own share: everything is queued
        }
        Ok(())
    }

    /// Sends addresses: `addrv2` (BIP155) if the remote sent `sendaddrv2`, else `addr` with
    /// the IPv4/IPv6 entries only. At most [`MAX_ADDR_TO_SEND`] go out, a uniformly random
    /// subset without duplicates when more are given (see [`select_addresses`]). Returns how
    /// many were sent; nothing is sent for an empty selection.
    ///
    /// # Errors
    /// As [`send`](Self::send).
    pub fn push_addresses(&self, addrs: &[AddrV2Message]) -> Result<usize, SendError> {
        self.push_addresses_inner(addrs, None)
    }

    /// As [`push_addresses`](Self::push_addresses), and hands back a [`Sent`] for the message:
    /// `(n, Some(sent))`, or `(0, None)` when nothing was sent.
    ///
    /// # Errors
    /// As [`push_addresses`](Self::push_addresses).
    pub fn push_addresses_notify(
        &self,
        addrs: &[AddrV2Message],
    ) -> Result<(usize, Option<Sent>), SendError> {
        let (sent, notifier) = Sent::pair();
        let n = self.push_addresses_inner(addrs, Some(notifier))?;
        Ok((n, (n > 0).then_some(sent)))
    }

    fn push_addresses_inner(
        &self,
        addrs: &[AddrV2Message],
        notifier: Option<Notifier>,
    ) -> Result<usize, SendError> {
        let mut rng = rand::thread_rng();
        let (msg, n) = if self.shared.state().features.addr_v2 {
            let chosen = select_addresses(addrs, MAX_ADDR_TO_SEND, &mut rng);
            let n = chosen.len();
            (NetworkMessage::AddrV2(chosen), n)
        } else {
            // `addr` carries only IPv4/IPv6; filter before sampling so the cap is filled.
            let ip: Vec<AddrV2Message> = addrs
                .iter()
                .filter(|a| a.socket_addr().is_ok())
                .cloned()
                .collect();
            let v1: Vec<(u32, Address)> = select_addresses(&ip, MAX_ADDR_TO_SEND, &mut rng)
                .iter()
                .filter_map(|a| Some((a.time, Address::new(&a.socket_addr().ok()?, a.services))))
                .collect();
            let n = v1.len();
            (NetworkMessage::Addr(v1), n)
        };
        if n > 0 {
            self.shared.enqueue(&msg, notifier)?;
        }
        Ok(n)
    }

    /// Sends `getheaders` with `locator` (newest first) and `stop` (all-zero for "as many as
    /// possible"), unless the previous `getheaders` had the same first locator hash and stop
    /// hash and no `headers` message has arrived since (btcd's duplicate filter, reset by an
    /// answer). Returns whether it was sent. Starts the
    /// [headers stall deadline](super::PeerConfig::headers_response_timeout).
    ///
    /// # Errors
    /// As [`send`](Self::send).
    pub fn push_getheaders(
        &self,
        locator: Vec<BlockHash>,
        stop: BlockHash,
    ) -> Result<bool, SendError> {
        self.push_getheaders_inner(locator, stop, None)
    }

    /// As [`push_getheaders`](Self::push_getheaders), and hands back a [`Sent`] for the
    /// message; `None` when the duplicate filter skipped it.
    ///
    /// # Errors
    /// As [`push_getheaders`](Self::push_getheaders).
    pub fn push_getheaders_notify(
        &self,
        locator: Vec<BlockHash>,
        stop: BlockHash,
    ) -> Result<Option<Sent>, SendError> {
        let (sent, notifier) = Sent::pair();
        let pushed = self.push_getheaders_inner(locator, stop, Some(notifier))?;
        Ok(pushed.then_some(sent))
    }

    fn push_getheaders_inner(
        &self,
        locator: Vec<BlockHash>,
        stop: BlockHash,
        notifier: Option<Notifier>,
    ) -> Result<bool, SendError> {
        self.push_locator_request(
            |s| &mut s.last_getheaders,
            locator,
            stop,
            |l, s| {
                NetworkMessage::GetHeaders(GetHeadersMessage {
                    version: 0,
                    locator_hashes: l,
                    stop_hash: s,
                })
            },
            notifier,
        )
    }

    /// Sends `getblocks`, with the same duplicate rule as [`push_getheaders`](Self::push_getheaders).
    ///
    /// # Errors
    /// As [`send`](Self::send).
    pub fn push_getblocks(
        &self,
        locator: Vec<BlockHash>,
        stop: BlockHash,
    ) -> Result<bool, SendError> {
        self.push_getblocks_inner(locator, stop, None)
    }

    /// As [`push_getblocks`](Self::push_getblocks), and hands back a [`Sent`] for the message;
    /// `None` when the duplicate filter skipped it.
    ///
    /// # Errors
    /// As [`push_getblocks`](Self::push_getblocks).
    pub fn push_getblocks_notify(
        &self,
        locator: Vec<BlockHash>,
        stop: BlockHash,
    ) -> Result<Option<Sent>, SendError> {
        let (sent, notifier) = Sent::pair();
        let pushed = self.push_getblocks_inner(locator, stop, Some(notifier))?;
        Ok(pushed.then_some(sent))
    }

    fn push_getblocks_inner(
        &self,
        locator: Vec<BlockHash>,
        stop: BlockHash,
        notifier: Option<Notifier>,
    ) -> Result<bool, SendError> {
        self.push_locator_request(
            |s| &mut s.last_getblocks,
            locator,
            stop,
            |l, s| {
                NetworkMessage::GetBlocks(GetBlocksMessage {
                    version: 0,
                    locator_hashes: l,
                    stop_hash: s,
                })
            },
            notifier,
        )
    }

    /// Sends a locator request unless it repeats the last one (same first hash and stop hash);
    /// the message's version field is the negotiated protocol version.
    fn push_locator_request(
        &self,
        last: impl FnOnce(&mut State) -> &mut Option<(Option<BlockHash>, BlockHash)>,
        locator: Vec<BlockHash>,
        stop: BlockHash,
        build: impl FnOnce(Vec<BlockHash>, BlockHash) -> NetworkMessage,
        notifier: Option<Notifier>,
    ) -> Result<bool, SendError> {
        let key = (locator.first().copied(), stop);
        if last(&mut self.shared.state()).replace(key) == Some(key) {
            if let Some(n) = notifier {
                n.written(); // nothing to send; the caller gets `false`/`None`
            }
            return Ok(false);
        }
        let mut msg = build(locator, stop);
        if let NetworkMessage::GetHeaders(GetHeadersMessage { version, .. })
        | NetworkMessage::GetBlocks(GetBlocksMessage { version, .. }) = &mut msg
        {
            *version = self.shared.negotiated.protocol_version;
        }
        self.shared.enqueue(&msg, notifier).map(|()| true)
    }

    /// Sends a legacy `reject` (BIP61; removed from Core in 0.20) if the negotiated version is
    /// at least 70002; returns whether it was sent.
    ///
    /// # Errors
    /// As [`send`](Self::send).
    pub fn push_reject(
        &self,
        command: &str,
        code: RejectReason,
        reason: &str,
        hash: bitcoin::hashes::sha256d::Hash,
    ) -> Result<bool, SendError> {
        self.push_reject_inner(command, code, reason, hash, None)
    }

    /// As [`push_reject`](Self::push_reject), and hands back a [`Sent`] for the message;
    /// `None` when it was not sent (negotiated version below 70002).
    ///
    /// # Errors
    /// As [`push_reject`](Self::push_reject).
    pub fn push_reject_notify(
        &self,
        command: &str,
        code: RejectReason,
        reason: &str,
        hash: bitcoin::hashes::sha256d::Hash,
    ) -> Result<Option<Sent>, SendError> {
        let (sent, notifier) = Sent::pair();
        let pushed = self.push_reject_inner(command, code, reason, hash, Some(notifier))?;
        Ok(pushed.then_some(sent))
    }

    fn push_reject_inner(
        &self,
        command: &str,
        code: RejectReason,
        reason: &str,
        hash: bitcoin::hashes::sha256d::Hash,
        notifier: Option<Notifier>,
    ) -> Result<bool, SendError> {
        if self.shared.negotiated.protocol_version < REJECT_VERSION {
            if let Some(n) = notifier {
                n.written();
            }
            return Ok(false);
        }
        let msg = Reject {
            message: command.to_string().into(),
            ccode: code,
            reason: reason.to_string().into(),
            hash,
        };
        self.shared
            .enqueue(&NetworkMessage::Reject(msg), notifier)
            .map(|()| true)
    }

    /// Raises the remote's last announced block height to `height` (never lowers it).
    pub fn update_last_block_height(&self, height: i32) {
        self.shared
            .last_block_height
            .fetch_max(height, Ordering::Relaxed);
    }

    /// A snapshot of the peer's identity, traffic and timings.
    pub fn stats(&self) -> PeerStats {
        let n = &self.shared.negotiated;
        let (last_ping, min_ping, ping_wait) = {
            let state = self.shared.state();
            let waiting = state.ping.waiting(tokio::time::Instant::now());
            (state.ping.last_rtt, state.ping.min_rtt, waiting)
        };
        let mut s = PeerStats {
            id: self.id(),
            remote: self.remote(),
            local: self.shared.ctx.local,
            addr_local: n.addr_local,
            direction: self.direction(),
            services: n.services,
            user_agent: n.user_agent.clone(),
            protocol_version: n.protocol_version,
            remote_version: n.remote_version,
            start_height: n.start_height,
            last_block_height: self.shared.last_block_height.load(Ordering::Relaxed),
            bytes_sent: 0,
            bytes_received: 0,
            messages_sent: 0,
            messages_received: 0,
            bytes_sent_per_command: Default::default(),
            bytes_received_per_command: Default::default(),
            connected_at: self.shared.ctx.counters.connected_at_wall,
            last_send: None,
            last_receive: None,
            last_ping,
            min_ping,
            ping_wait,
            time_offset: n.time_offset,
            transport: n.transport,
        };
        self.shared.ctx.counters.fill(&mut s);
        s
    }

    /// Whether we advertise `flags` (for handlers deciding what to serve).
    pub fn we_offer(&self, flags: ServiceFlags) -> bool {
        self.shared.config.advertised_services().has(flags)
    }

    /// Asks the peer to disconnect with [`DisconnectReason::LocalRequest`]. Idempotent; callable
    /// from any task; returns at once (await [`closed`](Self::closed) to wait).
    pub fn disconnect(&self) {
        self.shared.disconnect_with(DisconnectReason::LocalRequest);
    }

    /// Whether the peer has decided to disconnect (it may still be closing).
    pub fn is_disconnected(&self) -> bool {
        self.shared.is_stopping()
    }

    /// Why the peer disconnected, once it has.
    pub fn disconnect_reason(&self) -> Option<DisconnectReason> {
        self.shared.reason()
    }

    /// Waits until every task of the peer has ended and its socket is closed; returns why.
    pub async fn closed(&self) -> DisconnectReason {
        self.shared.closed.cancelled().await;
        self.shared
            .reason()
            .unwrap_or(DisconnectReason::LocalRequest)
    }
}
