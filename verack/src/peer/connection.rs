//! Framed, counted, logged reads and writes on one connection, over v1 frames or v2 packets.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use bitcoin::hex::DisplayHex;
use bitcoin::p2p::message::NetworkMessage;
use bitcoin::p2p::Magic;
use bytes::{Bytes, BytesMut};
use rand::Rng;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;
use tokio_util::io::poll_read_buf;

use super::hooks::{FrameOutcome, MessageHooks, RawFrame};
use super::stats::{Counters, OTHER_COMMAND};
use super::{Direction, PeerId};
use crate::transport::{
    encode_contents_into, put_message_type, PacketDecoder, PacketEncoder, TransportKind,
};
use crate::wire::{
    encode_into, encode_raw_into, payload_size_hint, DecodeError, Frame, OversizeMessage,
    RawMessage, RawRead, V1Codec,
};

/// Bytes of free buffer space ensured before each socket read. The buffer grows only as bytes
/// arrive, never from a peer-announced length.
pub(crate) const READ_CHUNK: usize = 64 * 1024;

/// Identity and counters of one peer, shared by its tasks and handles.
pub(crate) struct PeerContext {
    pub(crate) id: PeerId,
    pub(crate) remote: SocketAddr,
    /// Our end of the socket, when the stream is TCP ([`local_addr_of`]).
    pub(crate) local: Option<SocketAddr>,
    pub(crate) direction: Direction,
    pub(crate) counters: Counters,
    pub(crate) hooks: Option<Arc<dyn MessageHooks>>,
}

impl PeerContext {
    pub(crate) fn record_read(&self, frame: &Frame, now: Instant) {
        let command = frame.message.command();
        self.counters
            .record_received(command.as_ref(), frame.wire_len, now);
        tracing::debug!(peer = self.id.0, remote = %self.remote, command = %command, bytes = frame.wire_len, "received");
        tracing::trace!(peer = self.id.0, frame = %frame.raw.as_hex(), "received frame");
        if let Some(hooks) = &self.hooks {
            hooks.message_read(self.id, self.remote, &frame.message, frame.wire_len);
        }
    }

    /// Shows the frame to the raw-frame hook, if any.
    fn show_raw(&self, read: &RawRead, transport: TransportKind) {
        let Some(hooks) = &self.hooks else {
            return;
        };
        let outcome = match &read.result {
            Ok(message) => FrameOutcome::Decoded(message),
            Err(e) => FrameOutcome::Dropped(e),
        };
        let frame = RawFrame {
            command: read.command.as_str(),
            payload: read.raw.slice(read.payload_start..),
            checksum: read.checksum,
            wire_len: read.wire_len,
            transport,
            outcome,
        };
        hooks.frame_read(self.id, self.remote, &frame);
    }

    pub(crate) fn record_written(&self, command: &str, frame: &[u8], now: Instant) {
        self.counters.record_sent(command, frame.len(), now);
        tracing::debug!(peer = self.id.0, remote = %self.remote, command, bytes = frame.len(), "sent");
        tracing::trace!(peer = self.id.0, frame = %frame.as_hex(), "sent frame");
        if let Some(hooks) = &self.hooks {
            hooks.message_written(self.id, self.remote, command, frame);
        }
    }
}

/// Our end of `stream` when it is a TCP socket: a [`tokio::net::TcpStream`], or a server's
/// boxed [`Connection`](crate::server::Connection) holding one (asked through
/// [`Connection::local_socket_addr`](crate::server::Connection::local_socket_addr)). `None`
/// for any other stream. The stream type is only known generically, hence the downcast.
pub(crate) fn local_addr_of<S: 'static>(stream: &S) -> Option<SocketAddr> {
    let any: &dyn std::any::Any = stream;
    if let Some(tcp) = any.downcast_ref::<tokio::net::TcpStream>() {
        return tcp.local_addr().ok();
    }
    if let Some(boxed) = any.downcast_ref::<crate::server::BoxedConnection>() {
        // Through the box to the inner stream's own implementation.
        return boxed.as_ref().local_socket_addr();
    }
    None
}

/// Bytes to messages: the v1 codec or the v2 packet decoder.
pub(crate) enum FrameDecoder {
    V1(V1Codec),
    V2(PacketDecoder),
}

impl FrameDecoder {
    /// The next complete frame, decoded or not; `Err` only for fatal errors.
    fn decode_raw(&mut self, buf: &mut BytesMut) -> Result<Option<RawRead>, DecodeError> {
        match self {
            FrameDecoder::V1(codec) => codec.decode_raw(buf),
            FrameDecoder::V2(packets) => packets.decode_raw(buf),
        }
    }

    fn kind(&self) -> TransportKind {
        match self {
            FrameDecoder::V1(_) => TransportKind::V1,
            FrameDecoder::V2(_) => TransportKind::V2,
        }
    }

    /// Bytes still missing from a partially received v1 frame (0 if unknown).
    fn frame_remaining(&self, buffered: usize) -> usize {
        match self {
            FrameDecoder::V1(codec) => codec.frame_remaining(buffered),
            FrameDecoder::V2(_) => 0,
        }
    }

    /// Bytes consumed that carried no message (v2 decoys).
    fn take_skipped(&mut self) -> usize {
        match self {
            FrameDecoder::V1(_) => 0,
            FrameDecoder::V2(packets) => packets.take_skipped(),
        }
    }
}

/// Queued frames to wire bytes: v1 frames go out as they are, v2 contents are encrypted.
pub(crate) enum FrameEncoder {
    V1,
    V2 {
        packets: PacketEncoder,
        /// Send a decoy packet before some batches.
        decoys: bool,
    },
}

/// One in this many write batches is preceded by a decoy when decoys are on.
const DECOY_ONE_IN: u32 = 8;
/// Largest decoy contents sent.
const MAX_DECOY_LEN: usize = 64;

impl FrameEncoder {
    /// Appends the wire bytes of one queued frame (from [`encode_queued`]) to `dst`.
    pub(crate) fn seal_into(&mut self, frame: &[u8], dst: &mut BytesMut) {
        match self {
            FrameEncoder::V1 => dst.extend_from_slice(frame),
            FrameEncoder::V2 { packets, .. } => {
                packets.encode_into(frame, false, dst);
            }
        }
    }

    /// Maybe appends a decoy packet to `dst`; returns its length (0 if none).
    pub(crate) fn maybe_decoy(&mut self, dst: &mut BytesMut) -> usize {
        match self {
            FrameEncoder::V2 {
                packets,
                decoys: true,
            } => {
                let mut rng = rand::thread_rng();
                if !rng.gen_ratio(1, DECOY_ONE_IN) {
                    return 0;
                }
                let mut contents = [0u8; MAX_DECOY_LEN];
                let len = rng.gen_range(0..=MAX_DECOY_LEN);
                rng.fill(&mut contents[..len]);
                packets.encode_into(&contents[..len], true, dst)
            }
            _ => 0,
        }
    }
}

/// Encodes `msg` as the writer queues it: a whole v1 frame, or v2 packet contents (sealed
/// later). `reuse`, when large enough for `msg`, is cleared and encoded into, so a stream of
/// large messages reuses one buffer instead of touching fresh memory each time.
pub(crate) fn encode_queued(
    kind: TransportKind,
    magic: Magic,
    msg: &NetworkMessage,
    reuse: Option<BytesMut>,
) -> Result<Bytes, OversizeMessage> {
    let needed = 64 + payload_size_hint(msg);
    let mut buf = match reuse {
        Some(mut buf) if buf.capacity() >= needed => {
            buf.clear();
            buf
        }
        _ => BytesMut::with_capacity(needed),
    };
    encode_queued_into(kind, magic, msg, &mut buf)?;
    Ok(buf.freeze())
}

/// Appends `msg` to `dst` as [`encode_queued`] encodes it (nothing is appended on error).
pub(crate) fn encode_queued_into(
    kind: TransportKind,
    magic: Magic,
    msg: &NetworkMessage,
    dst: &mut BytesMut,
) -> Result<(), OversizeMessage> {
    match kind {
        TransportKind::V1 => encode_into(magic, msg, dst),
        TransportKind::V2 => encode_contents_into(msg, dst),
    }
}

/// Encodes a pre-encoded message as the writer queues it (a whole v1 frame, or v2 contents):
/// one copy of the payload behind the header or message type, and for v1 the checksum only
/// when the caller did not give it. `reuse` as in [`encode_queued`]. The caller has checked
/// the payload length.
pub(crate) fn encode_raw_queued(
    kind: TransportKind,
    magic: Magic,
    msg: &RawMessage,
    reuse: Option<BytesMut>,
) -> Bytes {
    let needed = 24 + msg.payload.len();
    let mut buf = match reuse {
        Some(mut buf) if buf.capacity() >= needed => {
            buf.clear();
            buf
        }
        _ => BytesMut::with_capacity(needed),
    };
    match kind {
        TransportKind::V1 => encode_raw_into(
            magic,
            msg.command.as_ref(),
            &msg.payload,
            msg.checksum,
            &mut buf,
        ),
        TransportKind::V2 => {
            put_message_type(msg.command.as_ref(), &mut buf);
            buf.extend_from_slice(&msg.payload);
        }
    }
    buf.freeze()
}

/// Why [`read_frame`] returned no frame.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// The remote closed at a frame boundary.
    Closed,
    /// Bad bytes; after a non-fatal one the next frame can be read.
    Decode(DecodeError),
    /// The socket failed.
    Io(io::Error),
}

/// Reads the next frame, growing `buf` in [`READ_CHUNK`] steps as bytes arrive. Counts and
/// logs good frames; counts frames skipped for a non-fatal error under `*other*`, and v2 decoy
/// packets as bytes received without a message.
///
/// `read_at` is when the last read returned bytes: every frame completed by one read is
/// stamped with that time (one clock reading per read, not per frame); it is updated here.
///
/// Cancel safety: bytes read stay in `buf`, so dropping the future loses nothing.
pub(crate) async fn read_frame<R: AsyncRead + Unpin>(
    rd: &mut R,
    buf: &mut BytesMut,
    decoder: &mut FrameDecoder,
    ctx: &PeerContext,
    read_at: &mut Instant,
) -> Result<Frame, ReadError> {
    loop {
        let before = buf.len();
        let decoded = decoder.decode_raw(buf);
        let skipped = decoder.take_skipped();
        if skipped > 0 {
            ctx.counters.record_overhead_received(skipped, *read_at);
        }
        match decoded {
            Ok(Some(read)) => {
                ctx.show_raw(&read, decoder.kind());
                match read.into_frame() {
                    Ok(frame) => {
                        ctx.record_read(&frame, *read_at);
                        return Ok(frame);
                    }
                    Err(e) => {
                        // Dropped, connection kept: counted under `*other*`, as Core.
                        ctx.counters.record_received(
                            OTHER_COMMAND,
                            before - buf.len() - skipped,
                            *read_at,
                        );
                        return Err(ReadError::Decode(e));
                    }
                }
            }
            Ok(None) => {}
            Err(e) => {
                if !e.is_fatal() {
                    ctx.counters.record_received(
                        OTHER_COMMAND,
                        before - buf.len() - skipped,
                        *read_at,
                    );
                }
                return Err(ReadError::Decode(e));
            }
        }
        // Room for the rest of a large frame, but never more than what has arrived so far
        // (the buffer at most doubles per read), so a header announcing 4 MB allocates nothing
        // until the bytes come.
        let room = READ_CHUNK.max(decoder.frame_remaining(buf.len()).min(buf.len()));
        match read_some(rd, buf, room).await {
            Ok(0) if buf.is_empty() => return Err(ReadError::Closed),
            Ok(0) => {
                return Err(ReadError::Decode(DecodeError::Truncated {
                    buffered: buf.len(),
                }))
            }
            Ok(_) => *read_at = Instant::now(),
            Err(e) => return Err(ReadError::Io(e)),
        }
    }
}

/// Reads what the stream has into `buf`, reserving `room` bytes first when less is free.
/// While the stream has nothing to read and `buf` holds no partial frame, the buffer's memory
/// is released, so an idle peer holds no read buffer (it is allocated again when the stream
/// becomes readable).
async fn read_some<R: AsyncRead + Unpin>(
    rd: &mut R,
    buf: &mut BytesMut,
    room: usize,
) -> io::Result<usize> {
    std::future::poll_fn(|cx| {
        if buf.capacity() - buf.len() < room {
            buf.reserve(room);
        }
        let polled = poll_read_buf(std::pin::Pin::new(&mut *rd), cx, buf);
        if polled.is_pending() && buf.is_empty() {
            *buf = BytesMut::new();
        }
        polled
    })
    .await
}

/// Encodes `msgs` and writes them with one `write_all` and a flush (used by the handshake,
/// where each step sends one message or a few together), then counts each message.
pub(crate) async fn write_messages<W: AsyncWrite + Unpin>(
    wr: &mut W,
    encoder: &mut FrameEncoder,
    magic: Magic,
    ctx: &PeerContext,
    msgs: &[NetworkMessage],
) -> io::Result<()> {
    let kind = match encoder {
        FrameEncoder::V1 => TransportKind::V1,
        FrameEncoder::V2 { .. } => TransportKind::V2,
    };
    let mut wire = BytesMut::new();
    let mut ends = Vec::with_capacity(msgs.len());
    for msg in msgs {
        let frame = encode_queued(kind, magic, msg, None)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        encoder.seal_into(&frame, &mut wire);
        ends.push(wire.len());
    }
    wr.write_all(&wire).await?;
    wr.flush().await?;
    let now = Instant::now();
    let mut start = 0;
    for (msg, end) in msgs.iter().zip(ends) {
        ctx.record_written(msg.command().as_ref(), &wire[start..end], now);
        start = end;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::Network;
    use std::time::Duration;

    #[tokio::test]
    async fn read_buffer_grows_only_with_arriving_bytes() {
        let (mut remote, mut ours) = tokio::io::duplex(1 << 20);
        let magic = Network::Regtest.magic();
        let mut header = [0u8; 24];
        header[..4].copy_from_slice(&magic.to_bytes());
        header[4..9].copy_from_slice(b"block");
        header[16..20].copy_from_slice(&3_999_999u32.to_le_bytes());
        remote.write_all(&header).await.unwrap();
        remote.write_all(&[0u8; 1000]).await.unwrap();
        let ctx = PeerContext {
            id: PeerId(0),
            remote: "127.0.0.1:1".parse().unwrap(),
            local: None,
            direction: Direction::Inbound,
            counters: Counters::new(),
            hooks: None,
        };
        let mut buf = BytesMut::new();
        let mut codec = FrameDecoder::V1(V1Codec::new(magic));
        let read = tokio::time::timeout(
            Duration::from_millis(50),
            read_frame(&mut ours, &mut buf, &mut codec, &ctx, &mut Instant::now()),
        )
        .await;
        assert!(read.is_err(), "still waiting for the payload");
        assert_eq!(buf.len(), 1024);
        assert!(
            buf.capacity() <= 2 * READ_CHUNK,
            "capacity {} for 1024 bytes received",
            buf.capacity()
        );
        drop(remote);
        let err = read_frame(&mut ours, &mut buf, &mut codec, &ctx, &mut Instant::now())
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                ReadError::Decode(DecodeError::Truncated { buffered: 1024 })
            ),
            "{err:?}"
        );
    }
}
