//! The BIP324 v2 encrypted transport beneath the peer: detection of v1 vs v2 on inbound
//! connections, short message ids, packet contents ↔ [`NetworkMessage`], and the packet
//! decoder/encoder around the `bip324` crate's ciphers.
//!
//! The `bip324` crate does the key exchange (ElligatorSwift + ECDH), the garbage terminator
//! search and the ChaCha20-Poly1305 packet cipher with its rekeying every 224 packets. This
//! module is the message layer on top (sans I/O); the tokio glue (handshake, timeouts, v1
//! fallback hint) is in [`crate::peer`].
//!
//! # Wire layout after the handshake
//! `length (3, encrypted) | header (1: bit 7 = decoy) | contents | tag (16)` where contents is
//! a message type (a 1-byte id from [`V2_MESSAGE_IDS`], or 0 then the 12-byte NUL-padded ASCII
//! command as in v1) followed by the payload. Contents are limited to [`MAX_CONTENTS_LEN`]
//! (13 + 4,000,000 bytes, Core's limit), checked from the length alone.
//!
//! [`NetworkMessage`]: bitcoin::p2p::message::NetworkMessage

mod message;
mod packet;
mod short_id;

use std::fmt;

use bitcoin::hex::DisplayHex;
use bitcoin::p2p::Magic;

pub(crate) use message::put_message_type;
pub use message::{decode_contents, encode_contents, encode_contents_into, LONG_MESSAGE_TYPE_LEN};
pub use packet::{PacketDecoder, PacketEncoder, LENGTH_LEN};
pub use short_id::{command_for_id, short_id, V2_MESSAGE_IDS};

use crate::wire::MAX_PAYLOAD_LEN;

/// Most garbage bytes either side may send after its public key: 4095.
pub const MAX_GARBAGE_LEN: usize = 4095;
/// Length of a garbage terminator: 16.
pub const GARBAGE_TERMINATOR_LEN: usize = 16;
/// Length of an ElligatorSwift-encoded public key: 64.
pub const ELLSWIFT_KEY_LEN: usize = 64;
/// Largest packet contents (message type + payload) accepted: 13 + 4,000,000, Core's
/// `V2Transport::MAX_CONTENTS_LEN`.
pub const MAX_CONTENTS_LEN: usize = LONG_MESSAGE_TYPE_LEN + MAX_PAYLOAD_LEN;
/// Bytes a packet adds to its contents: 3 length + 1 header + 16 tag.
pub const PACKET_OVERHEAD: usize = 20;
/// Bytes of the v1 prefix a responder compares: magic (4) + `version` and five NULs (12).
pub const V1_PREFIX_LEN: usize = 16;
/// The command field of a v1 `version` header.
const VERSION_COMMAND: &[u8; 12] = b"version\0\0\0\0\0";

/// Which transport a connection uses, with the v2 session id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// Plaintext v1 framing.
    V1,
    /// BIP324 v2 encryption.
    V2 {
        /// The BIP324 session id (HKDF of the ECDH secret, `info = "session_id"`); both ends
        /// see the same one. Bitcoin Core's `getpeerinfo` shows it as `session_id` in hex.
        session_id: [u8; 32],
    },
}

impl Transport {
    /// V1 or V2, without the session id.
    pub fn kind(&self) -> TransportKind {
        match self {
            Transport::V1 => TransportKind::V1,
            Transport::V2 { .. } => TransportKind::V2,
        }
    }

    /// The session id, for v2.
    pub fn session_id(&self) -> Option<&[u8; 32]> {
        match self {
            Transport::V1 => None,
            Transport::V2 { session_id } => Some(session_id),
        }
    }

    /// The session id as 64 lowercase hex digits, empty for v1 (Core's `getpeerinfo`
    /// `session_id`).
    pub fn session_id_hex(&self) -> String {
        self.session_id()
            .map(|id| id.to_lower_hex_string())
            .unwrap_or_default()
    }
}

impl fmt::Display for Transport {
    /// `v1` or `v2`, as Core's `transport_protocol_type`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.kind().fmt(f)
    }
}

/// A transport to use, chosen before the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransportKind {
    /// Plaintext v1.
    V1,
    /// BIP324 v2.
    V2,
}

impl fmt::Display for TransportKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TransportKind::V1 => "v1",
            TransportKind::V2 => "v2",
        })
    }
}

/// When a peer uses BIP324 v2 (see [`PeerConfig::v2`](crate::peer::PeerConfig::v2)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum V2Mode {
    /// v1 only: inbound connections are not inspected, outbound ones use v1, `NODE_P2P_V2` is
    /// not advertised.
    Off,
    /// The default. Inbound: detect v1 or v2 from the first bytes. Outbound: v2 when the remote
    /// is known to advertise `NODE_P2P_V2` (see
    /// [`Peer::outbound_with_services`](crate::peer::Peer::outbound_with_services)) and is not
    /// in the [`V1OnlyCache`](crate::peer::V1OnlyCache), else v1. `NODE_P2P_V2` is advertised.
    #[default]
    IfAdvertised,
    /// As `IfAdvertised`, but outbound connections try v2 whatever the remote advertises
    /// (unless the address is in the `V1OnlyCache`).
    Always,
    /// v2 only: inbound v1 connections are refused with
    /// [`HandshakeError::V1NotAllowed`](crate::peer::HandshakeError::V1NotAllowed), outbound
    /// connections always use v2 and a v1-speaking remote is an error, not a fallback hint.
    Only,
}

impl V2Mode {
    /// Whether v2 is enabled at all (and `NODE_P2P_V2` advertised).
    pub fn enabled(self) -> bool {
        self != V2Mode::Off
    }
}

/// What the first bytes of an inbound connection say about its transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detected {
    /// Too few bytes to tell.
    NeedMore,
    /// A v1 peer: the first 16 bytes are our magic and a `version` command. Continue with v1
    /// on the same bytes.
    V1,
    /// A v1 `version` header with another network's magic.
    WrongMagic(Magic),
    /// Anything else: a v2 initiator's public key.
    V2,
}

/// Classifies the first bytes received on an inbound connection (BIP324's responder rule).
///
/// As BIP324 and Bitcoin Core's `V2Transport::ProcessReceivedMaybeV1Bytes`: the connection is
/// v1 only when all 16 bytes of the v1 prefix (`magic + "version\0\0\0\0\0"`) match, and v2
/// as soon as one byte differs, so an initiator whose public key happens to start with the
/// magic (about 1 in 2^32 keys; BIP324 does not ask initiators to avoid them) is taken as v2.
/// Bytes with another magic followed by `version` are a v1 peer of another network
/// ([`Detected::WrongMagic`]). Fewer than 16 bytes that match either pattern so far are
/// [`Detected::NeedMore`]: nothing is sent until the bytes decide.
pub fn detect_transport(prefix: &[u8], magic: Magic) -> Detected {
    let ours = magic.to_bytes();
    let seen = &prefix[..prefix.len().min(V1_PREFIX_LEN)];
    let magic_len = seen.len().min(4);
    let command = &seen[magic_len..];
    if command != &VERSION_COMMAND[..command.len()] {
        return Detected::V2;
    }
    let our_magic = seen[..magic_len] == ours[..magic_len];
    if seen.len() < V1_PREFIX_LEN {
        // Still a prefix of our v1 `version` header, or (magic differing) of another
        // network's: more bytes decide.
        return Detected::NeedMore;
    }
    if our_magic {
        Detected::V1
    } else {
        Detected::WrongMagic(Magic::from_bytes(seen[..4].try_into().expect("4 bytes")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::Network;

    #[test]
    fn detection_follows_the_v1_prefix() {
        let magic = Network::Regtest.magic();
        let mut v1 = magic.to_bytes().to_vec();
        v1.extend_from_slice(VERSION_COMMAND);
        assert_eq!(detect_transport(&[], magic), Detected::NeedMore);
        assert_eq!(detect_transport(&v1[..3], magic), Detected::NeedMore);
        // The magic alone decides nothing: all 16 bytes must match for v1.
        for n in 4..V1_PREFIX_LEN {
            assert_eq!(
                detect_transport(&v1[..n], magic),
                Detected::NeedMore,
                "{n} bytes"
            );
        }
        assert_eq!(detect_transport(&v1, magic), Detected::V1);
        // A v2 key that starts with our magic: v2 at the first byte that differs.
        let mut key = magic.to_bytes().to_vec();
        key.extend_from_slice(b"versiox");
        assert_eq!(detect_transport(&key[..10], magic), Detected::NeedMore);
        assert_eq!(detect_transport(&key[..11], magic), Detected::V2);
        key[4] = 0xff;
        assert_eq!(detect_transport(&key[..5], magic), Detected::V2);
        let main = Network::Bitcoin.magic();
        let mut other = main.to_bytes().to_vec();
        other.extend_from_slice(VERSION_COMMAND);
        assert_eq!(detect_transport(&other[..15], magic), Detected::NeedMore);
        assert_eq!(detect_transport(&other, magic), Detected::WrongMagic(main));
        // Another magic and another command: v2, as soon as the command differs.
        other[4] = b'p';
        assert_eq!(detect_transport(&other[..5], magic), Detected::V2);
        assert_eq!(detect_transport(&[0x01], magic), Detected::NeedMore);
        assert_eq!(detect_transport(&[1, 2, 3, 4, 5], magic), Detected::V2);
    }
}
