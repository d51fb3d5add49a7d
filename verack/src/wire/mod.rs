//! v1 wire framing: the 24-byte message header, the codec that turns bytes into
//! [`NetworkMessage`]s and back, and the errors a peer's bytes can cause (v1 and, through
//! [`V2Error`], the BIP324 v2 transport of [`crate::transport`]). [`decode_message`] decodes a
//! bare payload by command, as v2 packets carry it. [`RawMessage`] is a pre-encoded message
//! (command + payload bytes + optional known checksum) for
//! [`PeerHandle::send_raw`](crate::peer::PeerHandle::send_raw).
//!
//! A v1 frame is `magic (4) | command (12, NUL-padded ASCII) | payload length (4, LE) |
//! checksum (4: first bytes of double-SHA256 of the payload) | payload`.
//!
//! The decoder checks the header (magic, command, length ≤ [`MAX_PAYLOAD_LEN`]) as soon as
//! 24 bytes are buffered, *before* waiting for or allocating the payload, as Bitcoin Core's
//! `V1Transport` does since the 2024 allocation disclosure.
//!
//! [`NetworkMessage`]: bitcoin::p2p::message::NetworkMessage

mod codec;
mod error;
mod header;
mod payload;
mod raw;
mod version;

pub use codec::{encode_frame, Frame, OversizeMessage, V1Codec};
pub(crate) use codec::{encode_into, encode_raw_into, payload_size_hint, RawRead, WireCommand};
pub use error::{DecodeError, V2Error};
pub(crate) use header::parse_command;
pub use header::{FrameHeader, HEADER_LEN};
pub use payload::decode_message;
pub use raw::RawMessage;
pub use version::{decode_version, MAX_USER_AGENT_LEN};

/// The largest payload accepted or sent, in bytes: 4,000,000, Bitcoin Core's
/// `MAX_PROTOCOL_MESSAGE_LENGTH` (src/net.h).
pub const MAX_PAYLOAD_LEN: usize = 4_000_000;
