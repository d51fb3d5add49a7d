//! [`HandshakedPeer`] and its full-duplex run loop: thin tokio glue around the pure pieces
//! (ping, stall, trickle, flood, receive rules).
//!
//! `run` drives, on the caller's task, three concurrent futures — the reader, the writer and
//! the timer loop — and spawns one handler task. Whichever decides first (remote closed, a
//! violation, a timeout, a local request, cancellation) sets the reason; then the socket is
//! shut down and dropped (closed once), the handler task drains what was already delivered and
//! ends, pending `send_and_wait` calls fail, and [`PeerHandle::closed`] fires.

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::ops::Range;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bitcoin::p2p::message::NetworkMessage;
use bytes::BytesMut;
use rand::Rng;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::task::JoinHandle;
use tokio::time::{sleep_until, timeout, Instant};
use tokio_util::sync::CancellationToken;

use super::connection::{read_frame, FrameDecoder, FrameEncoder, ReadError};
use super::flood::check_flood;
use super::handle::{Outgoing, PeerHandle, Shared, SPARE_MIN};
use super::handshake::Exchange;
use super::hooks::MessageHandler;
use super::ping::{PingAction, BIP31_VERSION};
use super::queue::Queue;
use super::receive::{on_received, Delivery};
use super::{Direction, DisconnectReason, Negotiated, Peer, PeerId};
use crate::wire::DecodeError;

/// Frames coalesced into one socket write: up to this many bytes…
const MAX_BATCH_BYTES: usize = 256 * 1024;
/// …or this many frames.
const MAX_BATCH_FRAMES: usize = 1024;
/// Bytes per extra second of write deadline (dcrd: 1 s per 256 KiB).
const WRITE_BYTES_PER_SECOND_OF_DEADLINE: usize = 256 * 1024;
/// A write buffer grown beyond this by a large v2 message is released after the write.
const MAX_RETAINED_WRITE_BUFFER: usize = 4 * MAX_BATCH_BYTES;
/// How long closing waits for the remote to take our FIN.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(1);

/// A peer whose handshake succeeded. Only this type can [`run`](Self::run) and hand out
/// [`PeerHandle`]s.
///
/// Messages sent through handles before `run` starts wait in the queue and are written once it
/// does. Dropping a `HandshakedPeer` without running it closes the connection, completes
/// [`PeerHandle::closed`] with [`DisconnectReason::LocalRequest`] and fails pending
/// [`Sent`](super::Sent) completions with [`SendError::Disconnected`](super::SendError::Disconnected).
pub struct HandshakedPeer<S> {
    stream: S,
    read_buf: BytesMut,
    decoder: FrameDecoder,
    encoder: FrameEncoder,
    shared: Arc<Shared>,
    /// Messages held during the handshake, with their wire sizes.
    held: Vec<NetworkMessage>,
    _closed: ClosedGuard,
}

/// Completes `closed` (and records a reason) however the peer ends, even if never run.
struct ClosedGuard(Arc<Shared>);

impl Drop for ClosedGuard {
    fn drop(&mut self) {
        self.0.disconnect_with(DisconnectReason::LocalRequest);
        // Nothing queued will be written now: fail every pending completion.
        self.0.outbox.close_and_clear();
        self.0.state().trickle.drop_waiters();
        self.0.closed.cancel();
    }
}

impl<S> fmt::Debug for HandshakedPeer<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HandshakedPeer")
            .field("id", &self.shared.ctx.id)
            .field("remote", &self.shared.ctx.remote)
            .field("negotiated", &self.shared.negotiated)
            .finish_non_exhaustive()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> HandshakedPeer<S> {
    pub(crate) fn start(peer: Peer<S>, exchange: Exchange) -> HandshakedPeer<S> {
        let shared = Arc::new(Shared::new(peer.ctx, peer.config, exchange.negotiated));
        tracing::debug!(
            peer = shared.ctx.id.0,
            remote = %shared.ctx.remote,
            version = shared.negotiated.protocol_version,
            user_agent = %shared.negotiated.user_agent,
            transport = %shared.negotiated.transport,
            "handshake complete"
        );
        HandshakedPeer {
            stream: peer.stream,
            read_buf: peer.read_buf,
            decoder: peer.decoder,
            encoder: peer.encoder,
            _closed: ClosedGuard(shared.clone()),
            shared,
            held: exchange.held,
        }
    }

    /// What the handshake agreed on.
    pub fn negotiated(&self) -> &Negotiated {
        &self.shared.negotiated
    }

    /// A handle for sending, stats and disconnecting; clone freely.
    pub fn handle(&self) -> PeerHandle {
        PeerHandle {
            shared: self.shared.clone(),
        }
    }

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

    /// Runs full-duplex I/O until the peer disconnects; returns why.
    ///
    /// Messages held during the handshake reach `handler` first. `cancel` ends the peer with
    /// [`DisconnectReason::Cancelled`]. When this returns, the socket is closed, the handler
    /// task has ended and [`PeerHandle::closed`] has fired. If this future is dropped instead,
    /// the handler task is aborted and the socket closed on drop. Must be called within a
    /// tokio runtime (the handler task is spawned).
    pub async fn run<H: MessageHandler>(
        self,
        handler: H,
        cancel: CancellationToken,
    ) -> DisconnectReason {
        let HandshakedPeer {
            stream,
            mut read_buf,
            mut decoder,
            mut encoder,
            shared,
            held,
            _closed,
        } = self;
        let to_handler = Arc::new(Queue::<Batch>::new());
        let handler_task = AbortOnDrop(tokio::spawn(handler_loop(
            handler,
            to_handler.clone(),
            PeerHandle {
                shared: shared.clone(),
            },
        )));
        let (mut rd, mut wr) = tokio::io::split(stream);

        // Biased: a local decision already taken (stop, cancel) wins over I/O events noticed in
        // the same poll, so the reason is deterministic.
        let decided = tokio::select! {
            biased;
            _ = shared.stop.cancelled() => DisconnectReason::LocalRequest,
            _ = cancel.cancelled() => DisconnectReason::Cancelled,
            r = read_loop(held, &mut rd, &mut read_buf, &mut decoder, &shared, &to_handler) => r,
            r = write_loop(&mut wr, &mut encoder, &shared) => r,
            r = timer_loop(&shared) => r,
        };
        let reason = shared.disconnect_with(decided);
        tracing::debug!(peer = shared.ctx.id.0, remote = %shared.ctx.remote, %reason, "disconnecting");

        to_handler.close(); // the handler drains what was delivered, then ends
        let mut stream = rd.unsplit(wr);
        let _ = Box::pin(timeout(SHUTDOWN_GRACE, stream.shutdown())).await;
        drop(stream);
        shared.outbox.close_and_clear(); // pending send_and_wait calls now fail
        shared.state().trickle.drop_waiters(); // and so do those waiting for a trickle
        handler_task.join().await;
        drop(_closed);
        reason
    }
}

/// Aborts the task if dropped before it was joined, so no task outlives its peer.
struct AbortOnDrop(JoinHandle<()>);

impl AbortOnDrop {
    async fn join(mut self) {
        let _ = (&mut self.0).await;
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Future for AbortOnDrop {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        Pin::new(&mut self.0).poll(cx).map(|_| ())
    }
}

/// Messages handed from the reader to the handler task: every frame decoded from one read
/// goes over the channel as one batch (one channel operation per read, not per message), each
/// with its size on the wire for the backlog.
type Batch = Vec<(NetworkMessage, usize)>;

async fn handler_loop<H: MessageHandler>(
    mut handler: H,
    batches: Arc<Queue<Batch>>,
    peer: PeerHandle,
) {
    while let Some(batch) = batches.pop().await {
        for (message, size) in batch {
            // Boxed: a handler's future (the default dispatch over every message kind is about
            // a kilobyte) exists only while a message is handled, not for the life of every
            // idle peer's task.
            Box::pin(handler.on_message(&peer, message)).await;
            peer.shared
                .handler_backlog
                .fetch_sub(size, Ordering::SeqCst);
            // Only a paused reader waits for this (see `wait_for_handler`).
            if peer.shared.reading_paused.load(Ordering::SeqCst) {
                peer.shared.drained.notify_waiters();
            }
        }
    }
}

/// Applies the peer's own rules to `message` and, if it is let through, adds it to the batch
/// for the handler (counting its `wire_len` bytes in the backlog).
fn process(
    shared: &Shared,
    message: NetworkMessage,
    wire_len: usize,
    now: Instant,
    batch: &mut Batch,
) -> Result<(), DisconnectReason> {
    match on_received(shared, &message, now)? {
        Delivery::Deliver => {
            shared.handler_backlog.fetch_add(wire_len, Ordering::SeqCst);
            batch.push((message, wire_len));
        }
        Delivery::Drop => {}
    }
    Ok(())
}

/// Hands the batch collected so far to the handler task (nothing if empty).
fn deliver(batch: &mut Batch, to_handler: &Queue<Batch>) -> Result<(), DisconnectReason> {
    if batch.is_empty() {
        return Ok(());
    }
    to_handler
        .push(std::mem::take(batch))
        .map_err(|_| DisconnectReason::LocalRequest)
}

async fn read_loop<R: AsyncRead + Unpin>(
    held: Vec<NetworkMessage>,
    rd: &mut R,
    buf: &mut BytesMut,
    decoder: &mut FrameDecoder,
    shared: &Shared,
    to_handler: &Queue<Batch>,
) -> DisconnectReason {
    // Messages held during the handshake go first, through the same rules (a held `ping` is
    // answered). They were counted when read; they are small, so backpressure ignores them.
    let mut batch = Batch::new();
    for message in held {
        if let Err(reason) = process(shared, message, 0, Instant::now(), &mut batch) {
            return reason;
        }
    }
    let mut read_at = Instant::now();
    loop {
        if shared.handler_backlog.load(Ordering::SeqCst) > shared.config.receive_buffer_limit {
            if let Err(reason) = deliver(&mut batch, to_handler) {
                return reason;
            }
            wait_for_handler(shared).await;
        }
        let read = {
            let read = read_frame(rd, buf, decoder, &shared.ctx, &mut read_at);
            tokio::pin!(read);
            // Frames already buffered decode without waiting; before waiting for the socket,
            // hand the handler what this read produced.
            match poll_once(read.as_mut()) {
                Some(read) => read,
                None => {
                    if let Err(reason) = deliver(&mut batch, to_handler) {
                        return reason;
                    }
                    read.await
                }
            }
        };
        let frame = match read {
            Ok(frame) => frame,
            Err(ReadError::Closed) => return DisconnectReason::RemoteClosed,
            Err(ReadError::Decode(e)) if !e.is_fatal() => {
                // Core drops a frame with a bad checksum or undecodable payload and keeps the
                // connection. A `pong` too short for its nonce still ends the pending ping
                // (Core's "Short payload").
                tracing::debug!(peer = shared.ctx.id.0, error = %e, "skipping bad frame");
                if matches!(&e, DecodeError::Undecodable { command, .. } if command == "pong")
                    && shared.state().ping.cancel()
                {
                    shared.wake.notify_one();
                }
                continue;
            }
            Err(ReadError::Decode(e)) => return DisconnectReason::Framing(e),
            Err(ReadError::Io(e)) => return DisconnectReason::Io(Arc::new(e)),
        };
        let now = read_at;
        let counters = &shared.ctx.counters;
        let received = counters.messages_received();
        if let Err(rate) = check_flood(
            shared.config.max_messages_per_second,
            received,
            now - counters.connected_at,
        ) {
            return DisconnectReason::Flooding {
                rate,
                limit: shared.config.max_messages_per_second.unwrap_or(0.0),
            };
        }
        if let Err(reason) = process(shared, frame.message, frame.wire_len, now, &mut batch) {
            return reason;
        }
    }
}

/// Polls `fut` once without registering interest anywhere; `None` if it is not ready.
fn poll_once<F: Future + ?Sized>(fut: Pin<&mut F>) -> Option<F::Output> {
    let mut cx = Context::from_waker(std::task::Waker::noop());
    match fut.poll(&mut cx) {
        Poll::Ready(out) => Some(out),
        Poll::Pending => None,
    }
}

/// Waits until the handler's backlog is at most `receive_buffer_limit` bytes, with
/// `reading_paused` set meanwhile (the idle timeout does not run while paused).
///
/// The flag is raised before the backlog is re-checked and the handler checks the flag after
/// shrinking the backlog (both SeqCst): either the handler sees the flag and wakes us, or we
/// see the smaller backlog, so no wake-up is lost while the handler wakes nobody in the
/// common, unpaused case.
async fn wait_for_handler(shared: &Shared) {
    let limit = shared.config.receive_buffer_limit;
    let mut waited = false;
    loop {
        let drained = shared.drained.notified();
        tokio::pin!(drained);
        drained.as_mut().enable();
        shared.reading_paused.store(true, Ordering::SeqCst);
        if shared.handler_backlog.load(Ordering::SeqCst) <= limit {
            break;
        }
        if !waited {
            waited = true;
            tracing::debug!(
                peer = shared.ctx.id.0,
                "handler backlog over limit; reading paused"
            );
        }
        drained.await;
    }
    if waited {
        shared.ctx.counters.touch_received(Instant::now());
    }
    shared.reading_paused.store(false, Ordering::SeqCst);
}

async fn write_loop<W: AsyncWrite + Unpin>(
    wr: &mut W,
    encoder: &mut FrameEncoder,
    shared: &Shared,
) -> DisconnectReason {
    let mut batch: Vec<Outgoing> = Vec::new();
    let mut coalesced = BytesMut::new();
    let mut spans: Vec<Range<usize>> = Vec::new();
    loop {
        let Some(first) = shared.outbox.pop().await else {
            // The outbox is closed only after the run ends, so this is unreachable while it runs.
            return DisconnectReason::LocalRequest;
        };
        let mut bytes = first.frame.len();
        batch.push(first);
        let mut frames = 1;
        shared.outbox.drain_into(&mut batch, |next| {
            let take = bytes < MAX_BATCH_BYTES && frames < MAX_BATCH_FRAMES;
            if take {
                bytes += next.frame.len();
                frames += 1;
            }
            take
        });
        let after = shared.config.write_timeout
            + Duration::from_secs((bytes / WRITE_BYTES_PER_SECOND_OF_DEADLINE) as u64);
        // Boxed: the write and its deadline exist only while writing, so an idle peer's run
        // future does not carry their space (one allocation per batch, beside a syscall).
        let written = Box::pin(timeout(
            after,
            write_batch(wr, &batch, encoder, &mut coalesced, &mut spans),
        ))
        .await;
        let overhead = match written {
            Err(_) => return DisconnectReason::WriteTimeout { bytes, after },
            Ok(Err(e)) => return DisconnectReason::Io(Arc::new(e)),
            Ok(Ok(overhead)) => overhead,
        };
        let now = Instant::now();
        if overhead > 0 {
            shared.ctx.counters.record_overhead_sent(overhead, now);
        }
        let mut spans_iter = spans.iter();
        for out in batch.drain(..) {
            for (command, range) in out.messages() {
                let wire = match spans_iter.next() {
                    Some(span) => &coalesced[span.clone()],
                    None => &out.frame[range],
                };
                shared.ctx.record_written(command, wire, now);
            }
            shared
                .queued_bytes
                .fetch_sub(out.frame.len(), Ordering::AcqRel);
            for sent in out.sent {
                sent.written();
            }
            if out.frame.len() >= SPARE_MIN {
                if let Ok(buf) = out.frame.try_into_mut() {
                    let mut spare = shared.spare.lock().expect("spare lock");
                    if spare.as_ref().is_none_or(|s| s.capacity() < buf.capacity()) {
                        *spare = Some(buf);
                    }
                }
            }
        }
        // Keep the spare and coalescing buffers only while more is queued: an idle peer holds
        // none, and a burst never leaves more than MAX_RETAINED_WRITE_BUFFER behind.
        let idle = shared.outbox.is_empty();
        if idle {
            shared.spare.lock().expect("spare lock").take();
        }
        if idle || coalesced.capacity() > MAX_RETAINED_WRITE_BUFFER {
            coalesced = BytesMut::new();
        }
    }
}

/// Writes one batch; returns the bytes written that carried no message (v2 decoys).
///
/// A single v1 frame is written as is (`spans` left empty); otherwise the wire bytes of every
/// frame (v2: encrypted, in queue order) are put in `coalesced`, frame `i` at `spans[i]`, so
/// small messages cost one syscall per batch rather than one each.
async fn write_batch<W: AsyncWrite + Unpin>(
    wr: &mut W,
    batch: &[Outgoing],
    encoder: &mut FrameEncoder,
    coalesced: &mut BytesMut,
    spans: &mut Vec<Range<usize>>,
) -> std::io::Result<usize> {
    spans.clear();
    let mut overhead = 0;
    match (batch, &*encoder) {
        ([single], FrameEncoder::V1) => wr.write_all(&single.frame).await?,
        _ => {
            coalesced.clear();
            overhead = encoder.maybe_decoy(coalesced);
            for out in batch {
                for (_, range) in out.messages() {
                    let start = coalesced.len();
                    encoder.seal_into(&out.frame[range], coalesced);
                    spans.push(start..coalesced.len());
                }
            }
            wr.write_all(coalesced).await?;
        }
    }
    wr.flush().await?;
    Ok(overhead)
}

/// Pings, idle and stall deadlines, and inventory trickling.
async fn timer_loop(shared: &Shared) -> DisconnectReason {
    let pings = shared.negotiated.protocol_version > BIP31_VERSION;
    loop {
        let now = Instant::now();
        let idle_deadline = shared.ctx.counters.last_received() + shared.config.idle_timeout;
        if now >= idle_deadline && !shared.reading_paused.load(Ordering::Acquire) {
            return DisconnectReason::IdleTimeout {
                after: shared.config.idle_timeout,
            };
        }
        let mut to_send = Vec::new();
        let (next, mut waiters) = {
            let mut state = shared.state();
            let state = &mut *state;
            let mut next = idle_deadline.max(now + Duration::from_millis(1));
            if pings {
                match state.ping.poll(now, nonzero_nonce()) {
                    PingAction::TimedOut => {
                        return DisconnectReason::PingTimeout {
                            after: shared.config.ping_timeout,
                        }
                    }
                    PingAction::Send(nonce) => to_send.push(NetworkMessage::Ping(nonce)),
                    PingAction::Wait => {}
                }
                next = next.min(state.ping.next_deadline());
            }
            if let Some((kind, after)) = state.stall.expired(now) {
                return DisconnectReason::Stalled { kind, after };
            }
            if let Some(deadline) = state.stall.next_deadline() {
                next = next.min(deadline);
            }
            let round = state.trickle.poll(now, &mut state.known);
            to_send.extend(round.batches.into_iter().map(NetworkMessage::Inv));
            let waiters = round.waiters;
            if let Some(deadline) = state.trickle.next_deadline() {
                next = next.min(deadline);
            }
            (next, waiters)
        };
        if to_send.is_empty() {
            // A round whose items were all known by now: nothing will be written for them.
            waiters.drain(..).for_each(super::sent::Notifier::written);
        }
        let last = to_send.len().saturating_sub(1);
        for (i, msg) in to_send.iter().enumerate() {
            // A round's waiters ride on its last `inv` (frames are written in order).
            let sent = if i == last {
                std::mem::take(&mut waiters)
            } else {
                Vec::new()
            };
            if shared.enqueue_with(msg, sent).is_err() {
                return shared.reason().unwrap_or(DisconnectReason::LocalRequest);
            }
        }
        tokio::select! {
            _ = sleep_until(next) => {}
            _ = shared.wake.notified() => {}
        }
    }
}

fn nonzero_nonce() -> u64 {
    rand::thread_rng().gen_range(1..=u64::MAX)
}
