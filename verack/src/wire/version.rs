//! Lenient decoding of `version` payloads, as Bitcoin Core's `ProcessMessage` reads them.

use bitcoin::consensus::encode::{self, Decodable};
use bitcoin::p2p::address::Address;
use bitcoin::p2p::message_network::VersionMessage;
use bitcoin::p2p::ServiceFlags;
use bitcoin::VarInt;

/// Longest user agent accepted, in bytes: Core's `MAX_SUBVERSION_LENGTH` (256).
pub const MAX_USER_AGENT_LEN: usize = 256;

/// Decodes a `version` payload.
///
/// The fields after `addr_recv` (`addr_from`, `nonce`, `user_agent`, `start_height`, `relay`)
/// are optional, each read only if bytes remain, and trailing bytes are ignored — as Core does,
/// so that old and future peers both handshake. A missing `relay` means `true` (BIP37).
///
/// # Errors
/// An [`encode::Error`] when a present field is cut short, the user agent is longer than
/// [`MAX_USER_AGENT_LEN`] bytes, or it is not UTF-8.
pub fn decode_version(payload: &[u8]) -> Result<VersionMessage, encode::Error> {
    let mut r = payload;
    let version = u32::consensus_decode(&mut r)?;
    let services = ServiceFlags::consensus_decode(&mut r)?;
    let timestamp = i64::consensus_decode(&mut r)?;
    let receiver = Address::consensus_decode(&mut r)?;
    let mut msg = VersionMessage {
        version,
        services,
        timestamp,
        receiver,
        sender: Address {
            services: ServiceFlags::NONE,
            address: [0; 8],
            port: 0,
        },
        nonce: 0,
        user_agent: String::new(),
        start_height: 0,
        relay: true,
    };
    if !r.is_empty() {
        msg.sender = Address::consensus_decode(&mut r)?;
    }
    if !r.is_empty() {
        msg.nonce = u64::consensus_decode(&mut r)?;
    }
    if !r.is_empty() {
        let len = VarInt::consensus_decode(&mut r)?.0;
        if len > MAX_USER_AGENT_LEN as u64 {
            return Err(encode::Error::ParseFailed(
                "user agent longer than 256 bytes",
            ));
        }
        let len = len as usize;
        let bytes = r
            .get(..len)
            .ok_or(encode::Error::ParseFailed("user agent cut short"))?;
        msg.user_agent = String::from_utf8(bytes.to_vec())
            .map_err(|_| encode::Error::ParseFailed("user agent is not UTF-8"))?;
        r = &r[len..];
    }
    if !r.is_empty() {
        msg.start_height = i32::consensus_decode(&mut r)?;
    }
    if !r.is_empty() {
        msg.relay = u8::consensus_decode(&mut r)? != 0;
    }
    Ok(msg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::consensus::serialize;

    fn sample() -> VersionMessage {
        let addr = Address {
            services: ServiceFlags::NONE,
            address: [0; 8],
            port: 0,
        };
        let mut v = VersionMessage::new(
            ServiceFlags::NETWORK,
            1_700_000_000,
            addr.clone(),
            addr,
            42,
            "/verack:0.1.0/".into(),
            7,
        );
        v.version = 70016;
        v.relay = false;
        v
    }

    #[test]
    fn full_payload_round_trips() {
        let v = sample();
        assert_eq!(decode_version(&serialize(&v)).unwrap(), v);
    }

    #[test]
    fn optional_fields_may_be_missing() {
        let v = sample();
        let bytes = serialize(&v);
        // Without relay (pre-70001 peers): relay defaults to true.
        let no_relay = decode_version(&bytes[..bytes.len() - 1]).unwrap();
        assert!(no_relay.relay);
        assert_eq!(no_relay.start_height, 7);
        // Only the mandatory 46 bytes.
        let minimal = decode_version(&bytes[..46]).unwrap();
        assert_eq!(minimal.version, 70016);
        assert_eq!(minimal.nonce, 0);
        assert!(minimal.user_agent.is_empty());
        // Trailing bytes after relay are ignored.
        let mut longer = bytes.clone();
        longer.extend_from_slice(&[1, 2, 3]);
        assert_eq!(decode_version(&longer).unwrap(), v);
    }

    #[test]
    fn rejects_cut_fields_and_long_user_agent() {
        let bytes = serialize(&sample());
        assert!(decode_version(&bytes[..45]).is_err());
        assert!(decode_version(&bytes[..60]).is_err()); // inside addr_from
        let mut v = sample();
        v.user_agent = "x".repeat(257);
        assert!(decode_version(&serialize(&v)).is_err());
    }
}
