//! Errors from decoding v1 frames.

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
}

impl DecodeError {
    /// Whether the connection must be dropped (`true`) or the next frame can be read.
    pub fn is_fatal(&self) -> bool {
        !matches!(
            self,
            DecodeError::BadChecksum { .. } | DecodeError::Undecodable { .. }
        )
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
