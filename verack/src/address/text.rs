//! The text forms of non-IP addresses: Tor v3 `.onion` names (rend-spec-v3: base32 of
//! public key, 2-byte SHA3 checksum and version 3) and I2P `.b32.i2p` names (base32 of the
//! destination's 32-byte SHA-256 hash), as Bitcoin Core's `CNetAddr::ToStringAddr` and
//! `SetSpecial` write and read them.

use sha3::{Digest, Sha3_256};

/// RFC 4648 base32 alphabet, lower-case (as onion and I2P names are written).
const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// The version byte of a Tor v3 onion address.
const TORV3_VERSION: u8 = 3;

/// RFC 4648 base32 of `data`, lower-case, without padding.
pub(super) fn base32_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(5) * 8);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &byte in data {
        acc = (acc << 8) | u32::from(byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((acc >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((acc << (5 - bits)) & 31) as usize] as char);
    }
    out
}

/// Decodes unpadded base32 (either case). `None` for a character outside the alphabet, or
/// leftover bits that are not zero (a name with two spellings is refused).
pub(super) fn base32_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 5 / 8);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.bytes() {
        let value = ALPHABET.iter().position(|&a| a == c.to_ascii_lowercase())? as u32;
        acc = ((acc << 5) | value) & 0xffff;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    (acc & ((1 << bits) - 1) == 0).then_some(out)
}

/// The 2-byte checksum of a Tor v3 address: `SHA3-256(".onion checksum" || key || 0x03)[..2]`.
fn torv3_checksum(key: &[u8; 32]) -> [u8; 2] {
    let mut hasher = Sha3_256::new();
    hasher.update(b".onion checksum");
    hasher.update(key);
    hasher.update([TORV3_VERSION]);
    let digest = hasher.finalize();
    [digest[0], digest[1]]
}

/// `<56 base32 characters>.onion` for an ed25519 public key.
pub(super) fn onion_name(key: &[u8; 32]) -> String {
    let mut bytes = [0u8; 35];
    bytes[..32].copy_from_slice(key);
    bytes[32..34].copy_from_slice(&torv3_checksum(key));
    bytes[34] = TORV3_VERSION;
    format!("{}.onion", base32_encode(&bytes))
}

/// `<52 base32 characters>.b32.i2p` for a destination hash.
pub(super) fn i2p_name(hash: &[u8; 32]) -> String {
    format!("{}.b32.i2p", base32_encode(hash))
}

/// Why an `.onion` or `.b32.i2p` name was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum NameError {
    /// Not base32, or the wrong length for its kind.
    Encoding,
    /// A 16-character Tor v2 name (retired by Tor in 2021; Core dropped them in 22.0).
    TorV2,
    /// The checksum or version byte of a Tor v3 name does not match.
    Checksum,
}

/// The public key of a Tor v3 name (without the `.onion` suffix).
pub(super) fn parse_onion(label: &str) -> Result<[u8; 32], NameError> {
    if label.len() == 16 {
        return Err(NameError::TorV2);
    }
    if label.len() != 56 {
        return Err(NameError::Encoding);
    }
    let bytes = base32_decode(label).ok_or(NameError::Encoding)?;
    let key: [u8; 32] = bytes[..32].try_into().map_err(|_| NameError::Encoding)?;
    if bytes[32..34] != torv3_checksum(&key) || bytes[34] != TORV3_VERSION {
        return Err(NameError::Checksum);
    }
    Ok(key)
}

/// The destination hash of an I2P name (without the `.b32.i2p` suffix).
pub(super) fn parse_i2p(label: &str) -> Result<[u8; 32], NameError> {
    if label.len() != 52 {
        return Err(NameError::Encoding);
    }
    let bytes = base32_decode(label).ok_or(NameError::Encoding)?;
    bytes.try_into().map_err(|_| NameError::Encoding)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base32_matches_rfc4648_vectors() {
        // RFC 4648 section 10, lower-case and without padding.
        for (plain, encoded) in [
            ("", ""),
            ("f", "my"),
            ("fo", "mzxq"),
            ("foo", "mzxw6"),
            ("foob", "mzxw6yq"),
            ("fooba", "mzxw6ytb"),
            ("foobar", "mzxw6ytboi"),
        ] {
            assert_eq!(base32_encode(plain.as_bytes()), encoded);
            assert_eq!(base32_decode(encoded).unwrap(), plain.as_bytes());
        }
        assert_eq!(base32_decode("MZXW6").unwrap(), b"foo");
        assert_eq!(base32_decode("mzxw7"), None, "non-zero leftover bits");
        assert_eq!(base32_decode("mz1w6"), None, "'1' is not base32");
    }

    #[test]
    fn onion_names_round_trip_and_check_their_checksum() {
        // Tor's rend-spec-v3 example address.
        let name = "pg6mmjiyjmcrsslvykfwnntlaru7p5svn6y2ymmju6nubxndf4pscryd";
        let key = parse_onion(name).unwrap();
        assert_eq!(onion_name(&key), format!("{name}.onion"));
        let mut bad = name.to_string();
        bad.replace_range(0..1, "q");
        assert_eq!(parse_onion(&bad), Err(NameError::Checksum));
        assert_eq!(parse_onion("expyuzz4wqqyqhjn"), Err(NameError::TorV2));
        assert_eq!(parse_onion("abc"), Err(NameError::Encoding));
    }

    #[test]
    fn i2p_names_round_trip() {
        let label = "22pis7zmm4r466tciqekpwjwzf2qi3a536bow7k5tu5kxgmbvrkq";
        let hash = parse_i2p(label).unwrap();
        assert_eq!(hash[..3], [0xd6, 0x9e, 0x89]);
        assert_eq!(i2p_name(&hash), format!("{label}.b32.i2p"));
        assert_eq!(parse_i2p(&label[1..]), Err(NameError::Encoding));
    }
}
