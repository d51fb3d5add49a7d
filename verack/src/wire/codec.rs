//! The v1 codec: bytes to [`NetworkMessage`] and back.

use bitcoin::consensus::encode::Encodable;
use bitcoin::io::FromStd;
use bitcoin::p2p::message::NetworkMessage;
use bitcoin::p2p::Magic;
use bytes::{BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use super::header::{checksum, RawHeader};
use super::{decode_message, DecodeError, HEADER_LEN, MAX_PAYLOAD_LEN};

/// One decoded message and the number of bytes it took on the wire (header included).
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    /// The message. Unrecognised commands arrive as [`NetworkMessage::Unknown`].
    pub message: NetworkMessage,
    /// Bytes on the wire: 24 header bytes plus the payload (v2: the whole packet, 20 bytes of
    /// length, header byte and tag plus the contents).
    pub wire_len: usize,
    /// The raw frame, header included (shares the read buffer's memory; no copy). For a v2
    /// packet, the decrypted contents: message type and payload.
    pub raw: Bytes,
}

/// A message type as it appeared on the wire: at most 12 ASCII bytes, kept without
/// allocating (the read path's hot loop). Empty when a v2 message type could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct WireCommand {
    bytes: [u8; 12],
    len: u8,
}

impl WireCommand {
    /// `name` (printable ASCII, at most 12 bytes; longer is cut).
    pub(crate) fn new(name: &str) -> WireCommand {
        let mut bytes = [0u8; 12];
        let len = name.len().min(12);
        bytes[..len].copy_from_slice(&name.as_bytes()[..len]);
        WireCommand {
            bytes,
            len: len as u8,
        }
    }

    pub(crate) fn as_str(&self) -> &str {
        std::str::from_utf8(&self.bytes[..self.len as usize]).unwrap_or("")
    }
}

/// One complete frame cut from the read buffer, whether or not its payload decoded: what the
/// raw-frame hook sees.
#[derive(Debug)]
pub(crate) struct RawRead {
    /// The message type.
    pub(crate) command: WireCommand,
    /// v1: the whole frame, header included; v2: the decrypted contents.
    pub(crate) raw: Bytes,
    /// Where the payload starts in `raw`.
    pub(crate) payload_start: usize,
    /// The v1 header's checksum, as sent.
    pub(crate) checksum: Option<[u8; 4]>,
    /// Bytes on the wire (as [`Frame::wire_len`]).
    pub(crate) wire_len: usize,
    /// The decoded message, or the non-fatal reason the frame is dropped.
    pub(crate) result: Result<NetworkMessage, DecodeError>,
}

impl RawRead {
    /// The frame as the peer delivers it, or the reason it is dropped.
    pub(crate) fn into_frame(self) -> Result<Frame, DecodeError> {
        Ok(Frame {
            message: self.result?,
            wire_len: self.wire_len,
            raw: self.raw,
        })
    }
}

/// The v1 framing codec for one network's magic.
///
/// Decoding never reserves buffer space from a peer-sent length: the header is validated
/// (magic, command, length ≤ [`MAX_PAYLOAD_LEN`]) from its 24 bytes alone, and the payload is
/// decoded only once all of it has arrived, so a buffer grows only as bytes actually arrive.
/// After a non-fatal [`DecodeError`] the bad frame has been consumed and `decode` can be called
/// again; note that `tokio_util::codec::FramedRead` ends its stream on any error, so callers
/// that want to survive a bad checksum drive the codec directly, as the peer does.
///
/// Encoding fails only for payloads over [`MAX_PAYLOAD_LEN`] (peers would disconnect us).
#[derive(Debug, Clone)]
pub struct V1Codec {
    magic: Magic,
    /// The validated header of the frame whose payload is still arriving.
    pending: Option<RawHeader>,
}

impl V1Codec {
    /// A codec for frames carrying `magic` (e.g. `Network::Regtest.magic()`).
    pub fn new(magic: Magic) -> V1Codec {
        V1Codec {
            magic,
            pending: None,
        }
    }

    /// The network magic this codec reads and writes.
    pub fn magic(&self) -> Magic {
        self.magic
    }

    /// Bytes still missing from the frame being received, counted from its header (0 when no
    /// partial frame is pending), given `buffered` bytes in the read buffer. At most
    /// 24 + [`MAX_PAYLOAD_LEN`].
    pub(crate) fn frame_remaining(&self, buffered: usize) -> usize {
        self.pending
            .map_or(0, |h| (HEADER_LEN + h.payload_len).saturating_sub(buffered))
    }

    /// As [`Decoder::decode`], but a complete frame whose checksum or payload is bad comes back
    /// as a [`RawRead`] with the error inside (the frame consumed); `Err` is only for the
    /// header's fatal errors.
    pub(crate) fn decode_raw(
        &mut self,
        src: &mut BytesMut,
    ) -> Result<Option<RawRead>, DecodeError> {
        let header = match self.pending.take() {
            Some(header) => header,
            None => {
                let Some(raw) = src.get(..HEADER_LEN) else {
                    return Ok(None);
                };
                RawHeader::parse(raw.try_into().expect("24 bytes"), self.magic)?
            }
        };
        let wire_len = HEADER_LEN + header.payload_len;
        if src.len() < wire_len {
            self.pending = Some(header);
            return Ok(None);
        }
        let raw = src.split_to(wire_len).freeze();
        let result = decode_payload(&header, &raw);
        Ok(Some(RawRead {
            command: WireCommand::new(header.command()),
            raw,
            payload_start: HEADER_LEN,
            checksum: Some(header.checksum),
            wire_len,
            result,
        }))
    }
}

impl Decoder for V1Codec {
    type Item = Frame;
    type Error = DecodeError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, DecodeError> {
        self.decode_raw(src)?.map(RawRead::into_frame).transpose()
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, DecodeError> {
        match self.decode(src)? {
            Some(frame) => Ok(Some(frame)),
            None if src.is_empty() => Ok(None),
            None => Err(DecodeError::Truncated {
                buffered: src.len(),
            }),
        }
    }
}

impl From<std::io::Error> for DecodeError {
    /// `tokio_util`'s `FramedRead` reports the stream's I/O errors through the decoder's type.
    fn from(e: std::io::Error) -> Self {
        DecodeError::Io(e.kind())
    }
}

/// Decodes a complete frame (`header` already validated) into a message.
fn decode_payload(header: &RawHeader, frame: &[u8]) -> Result<NetworkMessage, DecodeError> {
    let payload = &frame[HEADER_LEN..];
    let actual = checksum(payload);
    if actual != header.checksum {
        return Err(DecodeError::BadChecksum {
            command: header.command().to_string(),
            expected: header.checksum,
            actual,
        });
    }
    // Straight from the frame's bytes: no copy of the payload before decoding (rust-bitcoin's
    // `RawNetworkMessage` copies it into a `Vec` first), same rules.
    decode_message(header.command(), payload).map_err(|e| DecodeError::Undecodable {
        command: header.command().to_string(),
        len: payload.len(),
        reason: e.to_string(),
    })
}

/// A message whose payload would exceed [`MAX_PAYLOAD_LEN`]; it was not encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{command} payload of {len} bytes exceeds the {MAX_PAYLOAD_LEN}-byte limit")]
pub struct OversizeMessage {
    /// The message's command.
    pub command: String,
    /// Its payload length in bytes.
    pub len: usize,
}

impl Encoder<&NetworkMessage> for V1Codec {
    type Error = std::io::Error;

    fn encode(&mut self, msg: &NetworkMessage, dst: &mut BytesMut) -> Result<(), std::io::Error> {
        encode_into(self.magic, msg, dst)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))
    }
}

/// Encodes `msg` as one v1 frame.
///
/// # Errors
/// [`OversizeMessage`] when the payload would exceed [`MAX_PAYLOAD_LEN`] bytes.
pub fn encode_frame(magic: Magic, msg: &NetworkMessage) -> Result<Bytes, OversizeMessage> {
    let mut buf = BytesMut::with_capacity(HEADER_LEN + payload_size_hint(msg));
    encode_into(magic, msg, &mut buf)?;
    Ok(buf.freeze())
}

/// Appends one frame to `dst`: the payload is encoded in place after a 24-byte gap that is then
/// filled with the header, so there is one pass over the payload plus one hash.
pub(crate) fn encode_into(
    magic: Magic,
    msg: &NetworkMessage,
    dst: &mut BytesMut,
) -> Result<(), OversizeMessage> {
    let start = dst.len();
    dst.put_bytes(0, HEADER_LEN);
    let mut writer = FromStd::new(dst.writer());
    msg.consensus_encode(&mut writer)
        .expect("writing to memory cannot fail");
    let payload_len = dst.len() - start - HEADER_LEN;
    if payload_len > MAX_PAYLOAD_LEN {
        dst.truncate(start);
        return Err(OversizeMessage {
            command: msg.command().to_string(),
            len: payload_len,
        });
    }
    let sum = checksum(&dst[start + HEADER_LEN..]);
    let header = &mut dst[start..start + HEADER_LEN];
    header[..4].copy_from_slice(&magic.to_bytes());
    let mut command = [0u8; 12];
    msg.command()
        .consensus_encode(&mut &mut command[..])
        .expect("12-byte command");
    header[4..16].copy_from_slice(&command);
    header[16..20].copy_from_slice(&(payload_len as u32).to_le_bytes());
    header[20..24].copy_from_slice(&sum);
    Ok(())
}

/// Appends one v1 frame carrying a pre-encoded `payload` to `dst`: the header with `command`
/// and `checksum` (computed from the payload when `None`), then the payload. The caller has
/// checked the length against [`MAX_PAYLOAD_LEN`].
pub(crate) fn encode_raw_into(
    magic: Magic,
    command: &str,
    payload: &[u8],
    checksum_known: Option<[u8; 4]>,
    dst: &mut BytesMut,
) {
    let sum = checksum_known.unwrap_or_else(|| checksum(payload));
    let mut header = [0u8; HEADER_LEN];
    header[..4].copy_from_slice(&magic.to_bytes());
    let name = command.as_bytes();
    header[4..4 + name.len().min(12)].copy_from_slice(&name[..name.len().min(12)]);
    header[16..20].copy_from_slice(&(payload.len() as u32).to_le_bytes());
    header[20..24].copy_from_slice(&sum);
    dst.reserve(HEADER_LEN + payload.len());
    dst.put_slice(&header);
    dst.put_slice(payload);
}

/// A close upper estimate of `msg`'s payload size in bytes, so encoding allocates once
/// instead of growing (and copying) the buffer by doubling; 64 for small messages.
pub(crate) fn payload_size_hint(msg: &NetworkMessage) -> usize {
    const VARINT: usize = 9;
    let hint = match msg {
        NetworkMessage::Unknown { payload, .. } => payload.len(),
        NetworkMessage::Block(block) => block.total_size(),
        NetworkMessage::Tx(tx) => tx.total_size(),
        NetworkMessage::Headers(headers) => VARINT + headers.len() * 81,
        NetworkMessage::Inv(items)
        | NetworkMessage::GetData(items)
        | NetworkMessage::NotFound(items) => VARINT + items.len() * 36,
        NetworkMessage::Addr(addrs) => VARINT + addrs.len() * 30,
        NetworkMessage::AddrV2(addrs) => VARINT + addrs.len() * 54,
        NetworkMessage::GetHeaders(m) => 4 + VARINT + (m.locator_hashes.len() + 1) * 32,
        NetworkMessage::GetBlocks(m) => 4 + VARINT + (m.locator_hashes.len() + 1) * 32,
        NetworkMessage::CFilter(f) => 41 + VARINT + f.filter.len(),
        NetworkMessage::CFHeaders(h) => 69 + VARINT + h.filter_hashes.len() * 32,
        _ => 64,
    };
    hint.min(MAX_PAYLOAD_LEN + 1)
}
