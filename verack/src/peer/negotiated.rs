//! What the handshake agreed on.

use bitcoin::p2p::message_compact_blocks::SendCmpct;
use bitcoin::p2p::ServiceFlags;

use crate::transport::Transport;

/// Feature-negotiation messages the remote sent.
///
/// Those sent between `version` and `verack` are in [`Negotiated::features`]; `sendheaders` and
/// `sendcmpct` may also come later and then update
/// [`PeerHandle::remote_features`](super::PeerHandle::remote_features).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RemoteFeatures {
    /// The remote sent `wtxidrelay` (BIP339): announce transactions by wtxid.
    pub wtxid_relay: bool,
    /// The remote sent `sendaddrv2` (BIP155): send it `addrv2` instead of `addr`.
    pub addr_v2: bool,
    /// The remote sent `sendheaders` (BIP130): announce blocks with `headers`.
    pub send_headers: bool,
    /// The remote's latest `sendcmpct` (BIP152), if any.
    pub compact_blocks: Option<SendCmpct>,
    /// The remote's first `sendtxrcncl` (BIP330) before `verack` with a full 12-byte payload,
    /// if any; recorded for information only. verack does not implement transaction
    /// reconciliation itself, so, as Bitcoin Core without `-txreconciliation` (net_processing),
    /// a `sendtxrcncl` before `verack` never disconnects: a short payload, a repeat and version
    /// 0 are ignored. One after `verack` is ignored too, unless we sent `sendtxrcncl` in our
    /// [handshake extension](super::PeerConfig::negotiation) (then it disconnects, as Core
    /// with `-txreconciliation`).
    pub tx_reconciliation: Option<TxReconciliation>,
    /// The remote's well-formed `feature` messages (BIP434) before `verack`, in the order
    /// received, at most [`MAX_RECORDED_FEATURES`] (later ones are ignored, not refused).
    /// verack implements no BIP434 feature, so every one is an unknown feature, which BIP434
    /// says to ignore; they are kept for the application to inspect.
    pub features: Vec<Feature>,
}

/// The first protocol version with BIP434 `feature` messages: 70017 (Core's `FEATURE_VERSION`).
/// A `feature` from a peer whose negotiated version is lower fails the handshake, as Core's
/// net_processing disconnects it.
pub const FEATURE_VERSION: u32 = 70017;
/// Shortest `featureid`, in bytes: 4 (BIP434).
pub const MIN_FEATURE_ID_LEN: usize = 4;
/// Longest `featureid`, in bytes: 80 (BIP434; Core's `MAX_FEATUREID_LENGTH`).
pub const MAX_FEATURE_ID_LEN: usize = 80;
/// Longest `featuredata`, in bytes: 512 (BIP434; Core's `MAX_FEATUREDATA_LENGTH`).
pub const MAX_FEATURE_DATA_LEN: usize = 512;
/// `feature` messages kept in [`RemoteFeatures::features`]: 32, so at most about 19 KB per peer
/// (our bound; Core keeps none, as it knows no feature). Further well-formed ones are ignored.
pub const MAX_RECORDED_FEATURES: usize = 32;
/// Length of a `sendtxrcncl` payload: a 4-byte version and an 8-byte salt (BIP330).
pub const SENDTXRCNCL_LEN: usize = 12;

/// One BIP434 `feature` message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Feature {
    /// `featureid`: 4 to 80 bytes. BIP434 says it SHOULD be printable ASCII; Core accepts any
    /// bytes, and so do we, hence bytes rather than a `String`.
    pub id: Vec<u8>,
    /// `featuredata`: at most 512 bytes, interpreted by the feature's own specification.
    pub data: Vec<u8>,
}

impl Feature {
    /// Decodes a `feature` payload: a CompactSize length and the `featureid`, then a
    /// CompactSize length and the `featuredata`, and nothing after (BIP434). Nothing is
    /// allocated before a length is checked against its limit.
    ///
    /// # Errors
    /// [`FeatureError::IdLength`], [`FeatureError::DataLength`],
    /// [`FeatureError::NonCanonicalLength`], [`FeatureError::Truncated`] or
    /// [`FeatureError::TrailingBytes`]: each is Core's "invalid feature payload", which
    /// disconnects.
    pub fn decode(payload: &[u8]) -> Result<Feature, FeatureError> {
        let mut rest = payload;
        let id_len = read_compact_size(&mut rest)?;
        if id_len > MAX_FEATURE_ID_LEN as u64 {
            return Err(FeatureError::IdLength { len: id_len });
        }
        let id = take(&mut rest, id_len as usize)?;
        let data_len = read_compact_size(&mut rest)?;
        if data_len > MAX_FEATURE_DATA_LEN as u64 {
            return Err(FeatureError::DataLength { len: data_len });
        }
        let data = take(&mut rest, data_len as usize)?;
        if id.len() < MIN_FEATURE_ID_LEN {
            return Err(FeatureError::IdLength {
                len: id.len() as u64,
            });
        }
        if !rest.is_empty() {
            return Err(FeatureError::TrailingBytes { extra: rest.len() });
        }
        Ok(Feature {
            id: id.to_vec(),
            data: data.to_vec(),
        })
    }

    /// Encodes this feature as a `feature` payload (the inverse of [`Feature::decode`]); the
    /// lengths are not checked.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.id.len() + self.data.len() + 6);
        write_compact_size(&mut out, self.id.len());
        out.extend_from_slice(&self.id);
        write_compact_size(&mut out, self.data.len());
        out.extend_from_slice(&self.data);
        out
    }
}

/// Why a `feature` message failed the handshake. Every kind is a disconnect in Core's
/// net_processing (BIP434 allows it: "MAY disconnect peers that send `feature` messages where
/// the payload cannot be correctly parsed").
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FeatureError {
    /// The negotiated protocol version is below [`FEATURE_VERSION`] (Core: "feature received
    /// with incompatible version").
    #[error("feature at negotiated protocol version {version} (needs {FEATURE_VERSION})")]
    IncompatibleVersion {
        /// The negotiated version.
        version: u32,
    },
    /// The `featureid` length is outside 4..=80 bytes.
    #[error("featureid of {len} bytes (must be {MIN_FEATURE_ID_LEN} to {MAX_FEATURE_ID_LEN})")]
    IdLength {
        /// The announced length.
        len: u64,
    },
    /// The `featuredata` length is over 512 bytes.
    #[error("featuredata of {len} bytes (at most {MAX_FEATURE_DATA_LEN})")]
    DataLength {
        /// The announced length.
        len: u64,
    },
    /// A length is not minimally encoded (Core's `ReadCompactSize` rejects it; BIP434 uses only
    /// minimal CompactSize encodings).
    #[error("non-canonical CompactSize length")]
    NonCanonicalLength,
    /// The payload ends inside a field.
    #[error("payload ends inside a field")]
    Truncated,
    /// Bytes follow the `featuredata`.
    #[error("{extra} bytes after featuredata")]
    TrailingBytes {
        /// How many.
        extra: usize,
    },
}

/// The payload of a BIP330 `sendtxrcncl`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxReconciliation {
    /// The reconciliation protocol version the remote speaks (1 today).
    pub version: u32,
    /// The remote's salt for short transaction ids.
    pub salt: u64,
}

impl TxReconciliation {
    /// Decodes a `sendtxrcncl` payload: version (`u32`) then salt (`u64`), little-endian.
    /// `None` when it is shorter than [`SENDTXRCNCL_LEN`] bytes; bytes after the salt are
    /// ignored, as Core's stream decoding does.
    pub fn decode(payload: &[u8]) -> Option<TxReconciliation> {
        let version = payload.get(0..4)?;
        let salt = payload.get(4..SENDTXRCNCL_LEN)?;
        Some(TxReconciliation {
            version: u32::from_le_bytes(version.try_into().ok()?),
            salt: u64::from_le_bytes(salt.try_into().ok()?),
        })
    }
}

/// Reads a CompactSize, rejecting non-minimal encodings as Core's `ReadCompactSize`.
fn read_compact_size(rest: &mut &[u8]) -> Result<u64, FeatureError> {
    let (&first, tail) = rest.split_first().ok_or(FeatureError::Truncated)?;
    *rest = tail;
    let (width, min) = match first {
        0..=0xfc => return Ok(u64::from(first)),
        0xfd => (2, 0xfd),
        0xfe => (4, 0x1_0000),
        0xff => (8, 0x1_0000_0000),
    };
    let bytes = take(rest, width)?;
    let mut le = [0u8; 8];
    le[..width].copy_from_slice(bytes);
    let n = u64::from_le_bytes(le);
    if n < min {
        return Err(FeatureError::NonCanonicalLength);
    }
    Ok(n)
}

fn write_compact_size(out: &mut Vec<u8>, n: usize) {
    let n = n as u64;
    match n {
        0..=0xfc => out.push(n as u8),
        0xfd..=0xffff => {
            out.push(0xfd);
            out.extend_from_slice(&(n as u16).to_le_bytes());
        }
        0x1_0000..=0xffff_ffff => {
            out.push(0xfe);
            out.extend_from_slice(&(n as u32).to_le_bytes());
        }
        _ => {
            out.push(0xff);
            out.extend_from_slice(&n.to_le_bytes());
        }
    }
}

/// Splits `n` bytes off the front of `rest`.
fn take<'a>(rest: &mut &'a [u8], n: usize) -> Result<&'a [u8], FeatureError> {
    if rest.len() < n {
        return Err(FeatureError::Truncated);
    }
    let (head, tail) = rest.split_at(n);
    *rest = tail;
    Ok(head)
}

/// The outcome of a successful handshake; fixed for the life of the peer.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Negotiated {
    /// `min(our version, their version)`: the version both sides speak.
    pub protocol_version: u32,
    /// The protocol version the remote announced.
    pub remote_version: u32,
    /// Services the remote advertised.
    pub services: ServiceFlags,
    /// The remote's user agent (BIP14), at most 256 bytes.
    pub user_agent: String,
    /// The remote's best height when it connected.
    pub start_height: i32,
    /// The remote's `relay` flag (BIP37): `false` means do not announce transactions to it.
    pub relay: bool,
    /// Remote clock minus ours when its `version` arrived, in seconds.
    pub time_offset: i64,
    /// Our address as the remote reported it: its `version`'s `addr_recv`, as sent (Core's
    /// `addrLocal`; Core sends `0.0.0.0:0` there for a peer whose address is not routable).
    /// `None` if it is not an IP address.
    pub addr_local: Option<std::net::SocketAddr>,
    /// The nonce of the remote's `version`.
    pub remote_nonce: u64,
    /// The nonce of our `version`.
    pub local_nonce: u64,
    /// Features the remote announced before `verack`.
    pub features: RemoteFeatures,
    /// Every message of a type rust-bitcoin does not know (`NetworkMessage::Unknown`: BIP330
    /// `sendtxrcncl`, BIP434 `feature`, any future extension) the remote sent between its
    /// `version` and `verack`, in the order received, checksum verified; at most
    /// [`MAX_EXTRA_MESSAGES`](super::MAX_EXTRA_MESSAGES) messages and
    /// [`MAX_EXTRA_MESSAGE_BYTES`](super::MAX_EXTRA_MESSAGE_BYTES) bytes of payload (later
    /// ones are ignored). `sendtxrcncl` and `feature` are also decoded into
    /// [`features`](Self::features). The handshake extension's receive side: a caller
    /// implementing a negotiated protocol reads the remote's offer here.
    pub extra_messages: Vec<bitcoin::p2p::message::NetworkMessage>,
    /// The extra negotiation messages we sent before our `verack`
    /// ([`PeerConfig::negotiation`](super::PeerConfig::negotiation)), in order.
    pub local_extra_messages: Vec<bitcoin::p2p::message::NetworkMessage>,
    /// The transport the handshake ran over: v1, or v2 with its BIP324 session id.
    pub transport: Transport,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(id: &[u8], data: &[u8]) -> Vec<u8> {
        Feature {
            id: id.to_vec(),
            data: data.to_vec(),
        }
        .encode()
    }

    #[test]
    fn feature_lengths_at_bip434_boundaries() {
        for (len, ok) in [(0, false), (3, false), (4, true), (80, true), (81, false)] {
            let r = Feature::decode(&wire(&vec![b'a'; len], b""));
            assert_eq!(r.is_ok(), ok, "id {len}: {r:?}");
        }
        for (len, ok) in [
            (0, true),
            (252, true),
            (253, true),
            (512, true),
            (513, false),
        ] {
            let r = Feature::decode(&wire(b"abcd", &vec![0; len]));
            assert_eq!(r.is_ok(), ok, "data {len}: {r:?}");
        }
        assert_eq!(
            Feature::decode(&wire(b"abcd", &[0; 513])),
            Err(FeatureError::DataLength { len: 513 })
        );
    }

    #[test]
    fn malformed_features() {
        let mut trailing = wire(b"abcd", b"");
        trailing.push(0);
        assert_eq!(
            Feature::decode(&trailing),
            Err(FeatureError::TrailingBytes { extra: 1 })
        );
        assert_eq!(Feature::decode(b""), Err(FeatureError::Truncated));
        assert_eq!(Feature::decode(b"\x0aabcde"), Err(FeatureError::Truncated));
        assert_eq!(
            Feature::decode(b"\x04abcd\x0axx"),
            Err(FeatureError::Truncated)
        );
        assert_eq!(Feature::decode(b"\x04abcd"), Err(FeatureError::Truncated));
        // 4 encoded in three bytes.
        assert_eq!(
            Feature::decode(b"\xfd\x04\x00abcd\x00"),
            Err(FeatureError::NonCanonicalLength)
        );
        // A huge announced length is refused before anything is read or allocated.
        assert_eq!(
            Feature::decode(b"\xff\xff\xff\xff\xff\xff\xff\xff\xff"),
            Err(FeatureError::IdLength { len: u64::MAX })
        );
        let ok = Feature::decode(&wire(b"\x00\xff\x01\x7f", b"xy")).unwrap();
        assert_eq!(ok.id, b"\x00\xff\x01\x7f");
        assert_eq!(ok.data, b"xy");
    }

    #[test]
    fn sendtxrcncl_payload() {
        let mut p = 1u32.to_le_bytes().to_vec();
        p.extend_from_slice(&0x0102_0304_0506_0708u64.to_le_bytes());
        let want = Some(TxReconciliation {
            version: 1,
            salt: 0x0102_0304_0506_0708,
        });
        assert_eq!(TxReconciliation::decode(&p), want);
        p.push(9);
        assert_eq!(TxReconciliation::decode(&p), want, "trailing bytes ignored");
        assert_eq!(TxReconciliation::decode(&p[..11]), None);
    }
}
