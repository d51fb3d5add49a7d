//! Errors from decoding v1 frames and v2 (BIP324) packets.

use bitcoin::p2p::Magic;

/// Why bytes from a peer could not be turned into a message.
///
/// [`DecodeError::is_fatal`] tells whether the stream can continue: after a fatal error the
/// frame boundaries are lost (or the peer is on another network) and the connection must be
/// dropped; after a non-fatal one the bad frame has been consumed and the next frame can be
/// read, as Bitcoin Core keeps the connection on a bad checksum.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The header's magic is not this network's. Fatal.
    #[error("wrong network magic: expected {expected}, got {actual}")]
    WrongMagic {
        /// Our network's magic.
        expected: Magic,
        /// The magic the peer sent.
        actual: Magic,
    },
    /// The header announces a payload above the limit. Fatal; detected before any payload
    /// byte is read or allocated.
    #[error("{command} payload of {len} bytes exceeds the {max}-byte limit")]
    Oversize {
        /// The command in the header.
        command: String,
        /// The payload length the peer announced, in bytes.
        len: usize,
        /// The limit, in bytes ([`MAX_PAYLOAD_LEN`](super::MAX_PAYLOAD_LEN)).
        max: usize,
    },
    /// The 12-byte command field is not printable ASCII followed by NUL padding. Fatal.
    #[error("malformed command field {raw:02x?}")]
    BadCommand {
        /// The raw command field.
        raw: [u8; 12],
    },
    /// The payload does not match the header's checksum. Not fatal: the frame is skipped.
    #[error(
        "bad checksum for {command}: header says {expected:02x?}, payload hashes to {actual:02x?}"
    )]
    BadChecksum {
        /// The command in the header.
        command: String,
        /// The checksum in the header.
        expected: [u8; 4],
        /// The checksum of the payload received.
        actual: [u8; 4],
    },
    /// A known command whose payload could not be decoded. Not fatal: the frame is skipped.
    #[error("undecodable {command} payload ({len} bytes): {reason}")]
    Undecodable {
        /// The command in the header.
        command: String,
        /// Payload length in bytes.
        len: usize,
        /// What the payload decoder reported.
        reason: String,
    },
    /// The stream ended inside a frame (`buffered` bytes of an unfinished frame). Fatal.
    #[error("stream ended inside a frame ({buffered} bytes buffered)")]
    Truncated {
        /// Bytes of the unfinished frame that had arrived.
        buffered: usize,
    },
    /// The underlying stream failed (only through `tokio_util::codec::FramedRead`, which routes
    /// I/O errors through the decoder's error type). Fatal.
    #[error("i/o error: {0}")]
    Io(std::io::ErrorKind),
    /// A BIP324 v2 transport error (key exchange, garbage, packet framing or decryption, message
    /// type). Fatal or not as [`V2Error::is_fatal`] says.
    ///
    /// A v1 prefix with another network's magic (detected by a v2-capable responder) is
    /// reported as [`DecodeError::WrongMagic`], as for v1 frames.
    #[error("v2 transport: {0}")]
    V2(#[from] V2Error),
}

/// Why BIP324 v2 bytes from a peer could not be turned into a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum V2Error {
    /// The remote's garbage terminator did not appear within the first 4095 + 16 bytes after
    /// its public key (too much garbage, or a wrong terminator). Fatal; at most that many bytes
    /// were examined.
    #[error("no garbage terminator within {searched} bytes")]
    NoGarbageTerminator {
        /// Bytes searched: 4095 bytes of garbage plus the 16-byte terminator.
        searched: usize,
    },
    /// A packet's (decrypted) length field announces more contents than the limit: 13 bytes of
    /// message type plus [`MAX_PAYLOAD_LEN`](super::MAX_PAYLOAD_LEN) (Core's
    /// `V2Transport::MAX_CONTENTS_LEN`). Fatal; detected from the 3-byte length alone, before
    /// any of the packet is buffered beyond what arrived.
    #[error("v2 packet contents of {len} bytes exceed the {max}-byte limit")]
    PacketTooLarge {
        /// The announced contents length in bytes.
        len: usize,
        /// The limit in bytes.
        max: usize,
    },
    /// A packet failed authentication (ChaCha20-Poly1305 tag mismatch: corrupted, forged, or
    /// the garbage it authenticates was altered). Fatal.
    #[error("packet failed decryption/authentication")]
    Decryption,
    /// A 1-byte message type id that BIP324 does not assign. Not fatal: the packet is skipped,
    /// as Bitcoin Core drops such messages and keeps the connection.
    #[error("unknown short message id {id}")]
    UnknownShortId {
        /// The id received.
        id: u8,
    },
    /// The packet's contents are too short for a message type, or a 12-byte ASCII message type
    /// is not printable ASCII padded with NULs. Not fatal: the packet is skipped (Core).
    #[error("malformed message type {raw:02x?}")]
    BadMessageType {
        /// The bytes where the message type was expected (at most 13).
        raw: Vec<u8>,
    },
    /// The key exchange failed locally (secret generation), or the remote's public key was
    /// unusable. Fatal.
    #[error("key exchange failed: {reason}")]
    KeyExchange {
        /// What the `bip324` crate reported.
        reason: String,
    },
}

impl V2Error {
    /// Whether the connection must be dropped (`true`) or the next packet can be read.
    pub fn is_fatal(&self) -> bool {
        !matches!(
            self,
            V2Error::UnknownShortId { .. } | V2Error::BadMessageType { .. }
        )
    }
}

impl DecodeError {
    /// Whether the connection must be dropped (`true`) or the next frame can be read.
    pub fn is_fatal(&self) -> bool {
        match self {
            DecodeError::BadChecksum { .. } | DecodeError::Undecodable { .. } => false,
            DecodeError::V2(e) => e.is_fatal(),
            _ => true,
        }
    }

    /// The command of the offending frame, when the header was readable.
    pub fn command(&self) -> Option<&str> {
        match self {
            DecodeError::Oversize { command, .. }
            | DecodeError::BadChecksum { command, .. }
            | DecodeError::Undecodable { command, .. } => Some(command),
            _ => None,
        }
    }
}

impl From<DecodeError> for std::io::Error {
    fn from(e: DecodeError) -> Self {
        std::io::Error::new(std::io::ErrorKind::InvalidData, e)
    }
}
