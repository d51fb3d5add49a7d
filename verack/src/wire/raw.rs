//! [`RawMessage`]: a message already encoded by the caller (command + payload bytes), sent
//! without going through [`NetworkMessage`](bitcoin::p2p::message::NetworkMessage).

use bitcoin::p2p::message::CommandString;
use bytes::Bytes;

use super::header::checksum;

/// A pre-encoded message for [`PeerHandle::send_raw`](crate::peer::PeerHandle::send_raw): the
/// command and the payload bytes as they go on the wire, plus, optionally, the v1 checksum
/// the caller already has.
///
/// The peer frames it for its transport (v1: a 24-byte header with our network's magic; v2:
/// the BIP324 message type, then encryption) and counts it in stats like any message. The
/// payload is not decoded or checked: it must be a valid payload for `command`, or the remote
/// will drop the frame (Core) or disconnect.
///
/// A v1 frame needs the payload's checksum, the first 4 bytes of its double SHA-256, which
/// costs about 0.7 ms per MB. Give it with [`with_checksum`](Self::with_checksum) when it is
/// known (a frame received over v1, see
/// [`RawFrame::to_raw_message`](crate::peer::RawFrame::to_raw_message), or one computed once
/// for many peers with [`RawMessage::checksum_of`]) and it is not computed again; it is not
/// verified either, so a wrong one makes the remote drop the frame. v2 has no checksum and
/// ignores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawMessage {
    /// The message type (at most 12 ASCII bytes).
    pub command: CommandString,
    /// The payload, at most [`MAX_PAYLOAD_LEN`](super::MAX_PAYLOAD_LEN) (4,000,000) bytes.
    pub payload: Bytes,
    /// The v1 checksum of `payload`, if the caller has it; computed when sending over v1
    /// otherwise.
    pub checksum: Option<[u8; 4]>,
}

impl RawMessage {
    /// A message whose v1 checksum is computed when it is sent over v1.
    pub fn new(command: CommandString, payload: impl Into<Bytes>) -> RawMessage {
        RawMessage {
            command,
            payload: payload.into(),
            checksum: None,
        }
    }

    /// A message with its v1 checksum already known (trusted, not verified).
    pub fn with_checksum(
        command: CommandString,
        payload: impl Into<Bytes>,
        checksum: [u8; 4],
    ) -> RawMessage {
        RawMessage {
            command,
            payload: payload.into(),
            checksum: Some(checksum),
        }
    }

    /// The v1 checksum of `payload`: the first 4 bytes of its double SHA-256.
    pub fn checksum_of(payload: &[u8]) -> [u8; 4] {
        checksum(payload)
    }
}
