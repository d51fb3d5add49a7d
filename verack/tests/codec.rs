//! v1 framing: round trips, arbitrary splits, and malformed input.

use bitcoin::block::{Header, Version};
use bitcoin::hashes::Hash;
use bitcoin::p2p::address::{AddrV2, AddrV2Message, Address};
use bitcoin::p2p::message::{CommandString, NetworkMessage};
use bitcoin::p2p::message_blockdata::{GetBlocksMessage, GetHeadersMessage, Inventory};
use bitcoin::p2p::message_network::{Reject, RejectReason, VersionMessage};
use bitcoin::p2p::ServiceFlags;
use bitcoin::{BlockHash, CompactTarget, Network, TxMerkleNode, Txid, Wtxid};
use bytes::BytesMut;
use proptest::prelude::*;
use tokio_util::codec::Decoder;
use verack::wire::{encode_frame, DecodeError, V1Codec, HEADER_LEN, MAX_PAYLOAD_LEN};

fn codec() -> V1Codec {
    V1Codec::new(Network::Regtest.magic())
}

fn hash() -> impl Strategy<Value = [u8; 32]> {
    any::<[u8; 32]>()
}

fn inventory() -> impl Strategy<Value = Inventory> {
    prop_oneof![
        hash().prop_map(|h| Inventory::Transaction(Txid::from_byte_array(h))),
        hash().prop_map(|h| Inventory::Block(BlockHash::from_byte_array(h))),
        hash().prop_map(|h| Inventory::WTx(Wtxid::from_byte_array(h))),
        hash().prop_map(|h| Inventory::WitnessBlock(BlockHash::from_byte_array(h))),
        hash().prop_map(|h| Inventory::CompactBlock(BlockHash::from_byte_array(h))),
    ]
}

fn address() -> impl Strategy<Value = Address> {
    (any::<u64>(), any::<[u16; 8]>(), any::<u16>()).prop_map(|(s, address, port)| Address {
        services: ServiceFlags::from(s),
        address,
        port,
    })
}

fn header() -> impl Strategy<Value = Header> {
    (
        any::<i32>(),
        hash(),
        hash(),
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
    )
        .prop_map(|(v, p, m, t, b, n)| Header {
            version: Version::from_consensus(v),
            prev_blockhash: BlockHash::from_byte_array(p),
            merkle_root: TxMerkleNode::from_byte_array(m),
            time: t,
            bits: CompactTarget::from_consensus(b),
            nonce: n,
        })
}

/// Every message kind verack itself sends.
fn message() -> impl Strategy<Value = NetworkMessage> {
    prop_oneof![
        (
            any::<u32>(),
            any::<u64>(),
            any::<i64>(),
            address(),
            address(),
            any::<u64>(),
            "[ -~]{0,40}",
            any::<i32>(),
            any::<bool>()
        )
            .prop_map(
                |(
                    version,
                    s,
                    timestamp,
                    receiver,
                    sender,
                    nonce,
                    user_agent,
                    start_height,
                    relay,
                )| {
                    NetworkMessage::Version(VersionMessage {
                        version,
                        services: ServiceFlags::from(s),
                        timestamp,
                        receiver,
                        sender,
                        nonce,
                        user_agent,
                        start_height,
                        relay,
                    })
                }
            ),
        Just(NetworkMessage::Verack),
        Just(NetworkMessage::WtxidRelay),
        Just(NetworkMessage::SendAddrV2),
        Just(NetworkMessage::GetAddr),
        Just(NetworkMessage::SendHeaders),
        any::<u64>().prop_map(NetworkMessage::Ping),
        any::<u64>().prop_map(NetworkMessage::Pong),
        (prop::collection::vec(hash(), 0..101), hash()).prop_map(|(l, s)| {
            NetworkMessage::GetHeaders(GetHeadersMessage::new(
                l.into_iter().map(BlockHash::from_byte_array).collect(),
                BlockHash::from_byte_array(s),
            ))
        }),
        (prop::collection::vec(hash(), 0..101), hash()).prop_map(|(l, s)| {
            NetworkMessage::GetBlocks(GetBlocksMessage::new(
                l.into_iter().map(BlockHash::from_byte_array).collect(),
                BlockHash::from_byte_array(s),
            ))
        }),
        prop::collection::vec(inventory(), 0..64).prop_map(NetworkMessage::Inv),
        prop::collection::vec(inventory(), 0..64).prop_map(NetworkMessage::GetData),
        prop::collection::vec(inventory(), 0..64).prop_map(NetworkMessage::NotFound),
        prop::collection::vec(header(), 0..40).prop_map(NetworkMessage::Headers),
        prop::collection::vec((any::<u32>(), address()), 0..40).prop_map(NetworkMessage::Addr),
        prop::collection::vec((any::<u32>(), any::<[u8; 4]>(), any::<u16>()), 0..40).prop_map(
            |v| NetworkMessage::AddrV2(
                v.into_iter()
                    .map(|(time, ip, port)| AddrV2Message {
                        time,
                        services: ServiceFlags::NETWORK,
                        addr: AddrV2::Ipv4(ip.into()),
                        port
                    })
                    .collect()
            )
        ),
        ("[a-z]{1,12}", "[ -~]{0,20}", hash()).prop_map(|(m, r, h)| NetworkMessage::Reject(
            Reject {
                message: m.into(),
                ccode: RejectReason::Invalid,
                reason: r.into(),
                hash: bitcoin::hashes::sha256d::Hash::from_byte_array(h),
            }
        )),
        ("x[a-z]{0,11}", prop::collection::vec(any::<u8>(), 0..300)).prop_map(|(c, payload)| {
            NetworkMessage::Unknown {
                command: CommandString::try_from(c).unwrap(),
                payload,
            }
        }),
    ]
}

fn decode_all(codec: &mut V1Codec, buf: &mut BytesMut) -> Vec<NetworkMessage> {
    let mut out = Vec::new();
    while let Some(frame) = codec.decode(buf).unwrap() {
        out.push(frame.message);
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn encode_then_decode_round_trips(msg in message()) {
        let frame = encode_frame(Network::Regtest.magic(), &msg).unwrap();
        let mut buf = BytesMut::from(&frame[..]);
        let decoded = codec().decode(&mut buf).unwrap().unwrap();
        prop_assert_eq!(decoded.wire_len, frame.len());
        prop_assert_eq!(&decoded.raw[..], &frame[..]);
        prop_assert_eq!(decoded.message, msg);
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn any_split_decodes_identically(msgs in prop::collection::vec(message(), 1..6), cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..12)) {
        let mut stream = Vec::new();
        for m in &msgs {
            stream.extend_from_slice(&encode_frame(Network::Regtest.magic(), m).unwrap());
        }
        let mut points: Vec<usize> = cuts.iter().map(|i| i.index(stream.len() + 1)).collect();
        points.push(0);
        points.push(stream.len());
        points.sort_unstable();
        let mut codec = codec();
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for w in points.windows(2) {
            buf.extend_from_slice(&stream[w[0]..w[1]]);
            got.extend(decode_all(&mut codec, &mut buf));
        }
        prop_assert_eq!(got, msgs);
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn garbage_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..2000)) {
        let mut codec = codec();
        let mut buf = BytesMut::from(&bytes[..]);
        for _ in 0..bytes.len() + 1 {
            match codec.decode(&mut buf) {
                Ok(Some(_)) => continue,
                Ok(None) => break,
                Err(e) if !e.is_fatal() => continue,
                Err(_) => break,
            }
        }
    }
}

fn raw_header(magic: [u8; 4], command: &str, len: u32, checksum: [u8; 4]) -> Vec<u8> {
    let mut h = Vec::with_capacity(HEADER_LEN);
    h.extend_from_slice(&magic);
    let mut c = [0u8; 12];
    c[..command.len()].copy_from_slice(command.as_bytes());
    h.extend_from_slice(&c);
    h.extend_from_slice(&len.to_le_bytes());
    h.extend_from_slice(&checksum);
    h
}

#[test]
fn wrong_magic_is_fatal() {
    let frame = encode_frame(Network::Bitcoin.magic(), &NetworkMessage::Verack).unwrap();
    let err = codec().decode(&mut BytesMut::from(&frame[..])).unwrap_err();
    assert!(matches!(err, DecodeError::WrongMagic { .. }));
    assert!(err.is_fatal());
}

#[test]
fn oversize_length_is_rejected_from_the_header_without_allocating() {
    let magic = Network::Regtest.magic().to_bytes();
    let mut buf = BytesMut::with_capacity(64);
    buf.extend_from_slice(&raw_header(magic, "block", 0xffff_ffff, [0; 4]));
    let before = buf.capacity();
    let err = codec().decode(&mut buf).unwrap_err();
    assert!(
        matches!(
            err,
            DecodeError::Oversize {
                len: 0xffff_ffff,
                max: MAX_PAYLOAD_LEN,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.is_fatal());
    assert_eq!(
        buf.capacity(),
        before,
        "no allocation from the announced length"
    );
}

#[test]
fn a_large_announced_payload_is_not_reserved_before_it_arrives() {
    let magic = Network::Regtest.magic().to_bytes();
    let mut buf = BytesMut::with_capacity(256);
    buf.extend_from_slice(&raw_header(magic, "block", 3_999_999, [0; 4]));
    buf.extend_from_slice(&[0u8; 100]);
    let mut codec = codec();
    assert!(codec.decode(&mut buf).unwrap().is_none());
    assert!(buf.capacity() <= 256, "capacity {}", buf.capacity());
    // At end of stream the unfinished frame is an error, not a message.
    let err = codec.decode_eof(&mut buf).unwrap_err();
    assert!(
        matches!(err, DecodeError::Truncated { buffered: 124 }),
        "{err:?}"
    );
}

#[test]
fn bad_checksum_skips_the_frame_and_the_next_decodes() {
    let mut bad = encode_frame(Network::Regtest.magic(), &NetworkMessage::Ping(1))
        .unwrap()
        .to_vec();
    bad[23] ^= 1;
    let good = encode_frame(Network::Regtest.magic(), &NetworkMessage::Ping(2)).unwrap();
    let mut buf = BytesMut::from(&bad[..]);
    buf.extend_from_slice(&good);
    let mut codec = codec();
    let err = codec.decode(&mut buf).unwrap_err();
    assert!(
        matches!(err, DecodeError::BadChecksum { ref command, .. } if command == "ping"),
        "{err:?}"
    );
    assert!(!err.is_fatal());
    assert_eq!(
        codec.decode(&mut buf).unwrap().unwrap().message,
        NetworkMessage::Ping(2)
    );
}

#[test]
fn bad_checksum_on_version_is_reported_too() {
    let mut bad = encode_frame(
        Network::Regtest.magic(),
        &NetworkMessage::Version(VersionMessage::new(
            ServiceFlags::NONE,
            0,
            Address {
                services: ServiceFlags::NONE,
                address: [0; 8],
                port: 0,
            },
            Address {
                services: ServiceFlags::NONE,
                address: [0; 8],
                port: 0,
            },
            1,
            String::new(),
            0,
        )),
    )
    .unwrap()
    .to_vec();
    bad[20] ^= 1;
    let err = codec().decode(&mut BytesMut::from(&bad[..])).unwrap_err();
    assert!(matches!(err, DecodeError::BadChecksum { ref command, .. } if command == "version"));
}

#[test]
fn undecodable_payload_of_a_known_command_is_typed_and_skippable() {
    // A 3-byte ping payload with a valid checksum.
    let payload = [1u8, 2, 3];
    let sum = bitcoin::hashes::sha256d::Hash::hash(&payload);
    let mut raw = raw_header(
        Network::Regtest.magic().to_bytes(),
        "ping",
        3,
        sum[..4].try_into().unwrap(),
    );
    raw.extend_from_slice(&payload);
    raw.extend_from_slice(
        &encode_frame(Network::Regtest.magic(), &NetworkMessage::Verack).unwrap(),
    );
    let mut buf = BytesMut::from(&raw[..]);
    let mut codec = codec();
    let err = codec.decode(&mut buf).unwrap_err();
    assert!(
        matches!(err, DecodeError::Undecodable { ref command, len: 3, .. } if command == "ping"),
        "{err:?}"
    );
    assert!(!err.is_fatal());
    assert_eq!(
        codec.decode(&mut buf).unwrap().unwrap().message,
        NetworkMessage::Verack
    );
}

#[test]
fn unknown_commands_are_messages() {
    let msg = NetworkMessage::Unknown {
        command: CommandString::try_from_static("getutreexo").unwrap(),
        payload: vec![9; 10],
    };
    let frame = encode_frame(Network::Regtest.magic(), &msg).unwrap();
    assert_eq!(
        codec()
            .decode(&mut BytesMut::from(&frame[..]))
            .unwrap()
            .unwrap()
            .message,
        msg
    );
}

#[test]
fn malformed_command_field_is_fatal() {
    let mut raw = raw_header(
        Network::Regtest.magic().to_bytes(),
        "ping",
        0,
        [0x5d, 0xf6, 0xe0, 0xe2],
    );
    raw[9] = 0;
    raw[10] = b'x'; // "ping\0x": a byte after the NUL padding started
    let err = codec().decode(&mut BytesMut::from(&raw[..])).unwrap_err();
    assert!(matches!(err, DecodeError::BadCommand { .. }));
}

#[test]
fn oversize_messages_are_not_encoded() {
    let msg = NetworkMessage::Unknown {
        command: CommandString::try_from_static("big").unwrap(),
        payload: vec![0; MAX_PAYLOAD_LEN + 1],
    };
    let err = encode_frame(Network::Regtest.magic(), &msg).unwrap_err();
    assert_eq!(err.len, MAX_PAYLOAD_LEN + 1);
    let ok = NetworkMessage::Unknown {
        command: CommandString::try_from_static("big").unwrap(),
        payload: vec![0; MAX_PAYLOAD_LEN],
    };
    let frame = encode_frame(Network::Regtest.magic(), &ok).unwrap();
    assert_eq!(frame.len(), HEADER_LEN + MAX_PAYLOAD_LEN);
    assert_eq!(
        codec()
            .decode(&mut BytesMut::from(&frame[..]))
            .unwrap()
            .unwrap()
            .message,
        ok
    );
}
