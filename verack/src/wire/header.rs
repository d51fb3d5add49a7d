//! The 24-byte v1 message header.

use bitcoin::hashes::{sha256d, Hash};
use bitcoin::p2p::Magic;

use super::{DecodeError, MAX_PAYLOAD_LEN};

/// Length of a v1 message header in bytes: magic 4 + command 12 + length 4 + checksum 4.
pub const HEADER_LEN: usize = 24;

/// A parsed, validated v1 message header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameHeader {
    /// The command, with the NUL padding removed (ASCII, at most 12 bytes).
    pub command: String,
    /// Payload length in bytes; never above [`MAX_PAYLOAD_LEN`].
    pub payload_len: usize,
    /// The first 4 bytes of the payload's double-SHA256, as sent.
    pub checksum: [u8; 4],
}

impl FrameHeader {
    /// Parses and validates a header.
    ///
    /// # Errors
    /// - [`DecodeError::WrongMagic`] when the first 4 bytes are not `magic`.
    /// - [`DecodeError::BadCommand`] when the command is not printable ASCII padded with NULs
    ///   (a NUL followed by a non-NUL byte, as Core's `CMessageHeader::IsCommandValid`).
    /// - [`DecodeError::Oversize`] when the announced length exceeds [`MAX_PAYLOAD_LEN`].
    pub fn parse(bytes: &[u8; HEADER_LEN], magic: Magic) -> Result<FrameHeader, DecodeError> {
        let got = Magic::from_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        if got != magic {
            return Err(DecodeError::WrongMagic {
                expected: magic,
                actual: got,
            });
        }
        let raw_command = &bytes[4..16];
        let command = parse_command(raw_command).ok_or(DecodeError::BadCommand {
            raw: raw_command.try_into().expect("12 bytes"),
        })?;
        let payload_len = u32::from_le_bytes(bytes[16..20].try_into().expect("4 bytes")) as usize;
        if payload_len > MAX_PAYLOAD_LEN {
            return Err(DecodeError::Oversize {
                command,
                len: payload_len,
                max: MAX_PAYLOAD_LEN,
            });
        }
        let checksum = bytes[20..24].try_into().expect("4 bytes");
        Ok(FrameHeader {
            command,
            payload_len,
            checksum,
        })
    }
}

/// The v1 checksum of a payload: the first 4 bytes of its double-SHA256.
pub(crate) fn checksum(payload: &[u8]) -> [u8; 4] {
    let hash = sha256d::Hash::hash(payload);
    hash.as_byte_array()[..4].try_into().expect("4 bytes")
}

/// Printable ASCII followed only by NULs; `None` otherwise.
pub(crate) fn parse_command(raw: &[u8]) -> Option<String> {
    let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
    let (name, padding) = raw.split_at(end);
    if padding.iter().any(|&b| b != 0) || !name.iter().all(|b| (0x20..0x7f).contains(b)) {
        return None;
    }
    Some(String::from_utf8(name.to_vec()).expect("ASCII"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::Network;

    fn header(magic: [u8; 4], command: &[u8], len: u32) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[..4].copy_from_slice(&magic);
        h[4..4 + command.len()].copy_from_slice(command);
        h[16..20].copy_from_slice(&len.to_le_bytes());
        h
    }

    #[test]
    fn accepts_valid_header() {
        let m = Network::Regtest.magic();
        let h = FrameHeader::parse(&header(m.to_bytes(), b"verack", 0), m).unwrap();
        assert_eq!(h.command, "verack");
        assert_eq!(h.payload_len, 0);
    }

    #[test]
    fn rejects_wrong_magic_and_oversize_and_bad_command() {
        let m = Network::Regtest.magic();
        let main = Network::Bitcoin.magic();
        assert!(matches!(
            FrameHeader::parse(&header(main.to_bytes(), b"ping", 8), m),
            Err(DecodeError::WrongMagic { actual, .. }) if actual == main
        ));
        assert!(matches!(
            FrameHeader::parse(&header(m.to_bytes(), b"block", 4_000_001), m),
            Err(DecodeError::Oversize { len: 4_000_001, .. })
        ));
        // exactly the limit is fine
        assert!(FrameHeader::parse(&header(m.to_bytes(), b"block", 4_000_000), m).is_ok());
        assert!(matches!(
            FrameHeader::parse(&header(m.to_bytes(), b"ping\0x", 8), m),
            Err(DecodeError::BadCommand { .. })
        ));
        assert!(matches!(
            FrameHeader::parse(&header(m.to_bytes(), b"pi\x01g", 8), m),
            Err(DecodeError::BadCommand { .. })
        ));
    }
}
