//! Handshake: success in both directions with exact byte counts, and every error kind
//! provoked from both sides.

mod common;

use std::time::Duration;

use bitcoin::hashes::Hash;
use bitcoin::p2p::message::{CommandString, NetworkMessage};
use bitcoin::p2p::message_blockdata::GetHeadersMessage;
use bitcoin::p2p::message_compact_blocks::SendCmpct;
use bitcoin::BlockHash;
use common::*;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use verack::peer::{
    Direction, DisconnectReason, Feature, FeatureError, HandshakeError, IgnoreMessages,
    MessageHandler, Peer, PeerHandle, TxReconciliation, Violation, DEFAULT_PROTOCOL_VERSION,
    DEFAULT_USER_AGENT, MAX_FEATURE_DATA_LEN, MAX_FEATURE_ID_LEN, MAX_RECORDED_FEATURES,
};

/// Version payload: 4 version + 8 services + 8 time + 26 + 26 addresses + 8 nonce +
/// 1 + len(user agent) + 4 height + 1 relay.
fn version_frame_len(user_agent: &str) -> u64 {
    24 + 86 + user_agent.len() as u64
}

#[tokio::test(start_paused = true)]
async fn handshake_succeeds_both_directions_with_exact_byte_counts() {
    let (out, inb) = connected_pair(config(), config()).await;
    let (out, inb) = (out.unwrap(), inb.unwrap());
    // Each side sent version + wtxidrelay + sendaddrv2 + verack (24 bytes each but version).
    let expected = version_frame_len(DEFAULT_USER_AGENT) + 3 * 24;
    assert_eq!(
        expected, 196,
        "default user agent /verack:0.1.0/ is 14 bytes"
    );
    for (peer, dir) in [(&out, Direction::Outbound), (&inb, Direction::Inbound)] {
        let s = peer.handle().stats();
        assert_eq!(s.direction, dir);
        assert_eq!(s.local, None, "an in-memory pipe has no socket address");
        assert_eq!(s.remote_version, 70017);
        assert_eq!(s.bytes_sent, expected);
        assert_eq!(s.bytes_received, expected);
        assert_eq!(s.messages_sent, 4);
        assert_eq!(s.messages_received, 4);
        assert_eq!(
            s.bytes_sent_per_command["version"],
            version_frame_len(DEFAULT_USER_AGENT)
        );
        assert_eq!(s.bytes_sent_per_command["verack"], 24);
        assert_eq!(s.user_agent, DEFAULT_USER_AGENT);
        assert_eq!(s.protocol_version, 70017);
        let n = peer.negotiated();
        assert!(n.features.wtxid_relay && n.features.addr_v2);
        assert_eq!(n.protocol_version, 70017, "both sides speak BIP434's 70017");
        assert!(n.features.features.is_empty() && n.features.tx_reconciliation.is_none());
    }
    assert_eq!(out.negotiated().remote_nonce, inb.negotiated().local_nonce);
    assert_ne!(out.negotiated().local_nonce, 0);
}

#[tokio::test]
async fn handshake_over_loopback_tcp() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let at = listener.local_addr().unwrap();
    let cancel = CancellationToken::new();
    let server = tokio::spawn(async move {
        let (sock, from) = listener.accept().await.unwrap();
        let peer = Peer::inbound(sock, from, config())
            .handshake(&CancellationToken::new(), accept)
            .await
            .unwrap();
        let handle = peer.handle();
        let reason = peer.run(IgnoreMessages, CancellationToken::new()).await;
        (handle.stats(), reason)
    });
    let sock = TcpStream::connect(at).await.unwrap();
    let mut cfg = config();
    cfg.user_agent = "/tcp-test:1/".into();
    let peer = Peer::outbound(sock, at, cfg)
        .handshake(&cancel, accept)
        .await
        .unwrap();
    let handle = peer.handle();
    let run = tokio::spawn(peer.run(IgnoreMessages, cancel.clone()));
    // Wait for the first ping round trip, then close.
    for _ in 0..200 {
        if handle.stats().last_ping.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let ours = handle.stats();
    assert!(ours.last_ping.is_some(), "ping answered over TCP");
    handle.disconnect();
    assert!(matches!(
        run.await.unwrap(),
        verack::peer::DisconnectReason::LocalRequest
    ));
    let (theirs, reason) = server.await.unwrap();
    assert!(
        matches!(reason, verack::peer::DisconnectReason::RemoteClosed),
        "{reason:?}"
    );
    assert_eq!(theirs.user_agent, "/tcp-test:1/");
    let hs = version_frame_len("/tcp-test:1/") + 72;
    assert_eq!(
        handle.stats().bytes_sent_per_command["version"],
        version_frame_len("/tcp-test:1/")
    );
    assert!(theirs.bytes_received >= hs);
    assert_eq!(
        theirs.bytes_received,
        handle.stats().bytes_sent,
        "every byte we wrote was read"
    );
}

// ---- errors, outbound side failing (scripted inbound remote) ----

#[tokio::test(start_paused = true)]
async fn messages_before_version_are_ignored_as_core_both_sides() {
    // Core ignores non-version messages before version; the handshake then completes.
    for direction in [Direction::Outbound, Direction::Inbound] {
        let (a, b) = tokio::io::duplex(DUPLEX_BUFFER);
        let mut remote = Script::new(b);
        let task = tokio::spawn(async move {
            if direction == Direction::Outbound {
                remote.expect_command("version").await;
            }
            for m in [NetworkMessage::Ping(1), NetworkMessage::SendHeaders] {
                remote.send(m).await;
            }
            remote.send(remote_version(70017, 9)).await;
            remote.send(NetworkMessage::Verack).await;
            remote
        });
        // Over v1: with v2 allowed, bytes that are not a v1 `version` header are a v2
        // initiator's key (BIP324 detection).
        let mut cfg = config();
        cfg.v2 = verack::transport::V2Mode::Off;
        let peer = Peer::new(a, direction, addr(1), cfg)
            .handshake(&CancellationToken::new(), accept)
            .await;
        assert!(peer.is_ok(), "{direction:?}: {:?}", peer.err());
        drop(task.await.unwrap());
    }
}

#[tokio::test(start_paused = true)]
async fn too_many_messages_before_version_fail_with_not_version() {
    let (a, b) = tokio::io::duplex(1 << 20);
    let mut remote = Script::new(b);
    for _ in 0..=verack::peer::MAX_IGNORED_BEFORE_VERSION {
        remote.send(NetworkMessage::Ping(1)).await;
    }
    let mut cfg = config();
    cfg.v2 = verack::transport::V2Mode::Off;
    let err = handshake_err(Direction::Inbound, a, cfg).await;
    assert!(
        matches!(err, HandshakeError::NotVersion { ref command } if command == "ping"),
        "{err:?}"
    );
    // Nothing was sent to a peer that never sent its version.
    assert!(remote.recv().await.is_none());
}

#[tokio::test(start_paused = true)]
async fn inbound_detects_self_connection_through_shared_nonce_cache() {
    let cfg = config();
    // Same config (shared cache) on both ends: we dialled ourselves.
    let (out, inb) = connected_pair(cfg.clone(), cfg).await;
    assert!(matches!(
        inb.unwrap_err(),
        HandshakeError::SelfConnection { .. }
    ));
    // The inbound side closes without answering; the outbound side sees the connection end.
    assert!(
        matches!(out.unwrap_err(), HandshakeError::Io(ref e) if e.kind() == std::io::ErrorKind::UnexpectedEof)
    );
}

#[tokio::test(start_paused = true)]
async fn outbound_detects_a_reflected_nonce() {
    let (a, b) = tokio::io::duplex(DUPLEX_BUFFER);
    let mut remote = Script::new(b);
    let task = tokio::spawn(async move {
        let NetworkMessage::Version(ours) = remote.expect_command("version").await else {
            unreachable!()
        };
        remote.send(remote_version(70016, ours.nonce)).await;
        remote
    });
    let err = handshake_err(Direction::Outbound, a, config()).await;
    assert!(
        matches!(err, HandshakeError::SelfConnection { .. }),
        "{err:?}"
    );
    let mut remote = task.await.unwrap();
    assert!(remote.recv().await.is_none(), "no verack after a rejection");
}

#[tokio::test(start_paused = true)]
async fn protocol_too_old_from_both_sides() {
    // Outbound rejecting an old inbound remote.
    let (a, b) = tokio::io::duplex(DUPLEX_BUFFER);
    let mut remote = Script::new(b);
    let task = tokio::spawn(async move {
        remote.expect_command("version").await;
        remote.send(remote_version(31799, 5)).await;
        remote.recv().await
    });
    let err = handshake_err(Direction::Outbound, a, config()).await;
    assert!(
        matches!(
            err,
            HandshakeError::ProtocolTooOld {
                version: 31799,
                min: 31800
            }
        ),
        "{err:?}"
    );
    assert!(task.await.unwrap().is_none(), "no verack sent");

    // Inbound rejecting: a verack peer configured to need 70016 facing one that speaks 70015.
    let mut strict = config();
    strict.min_protocol_version = 70016;
    let mut old = config();
    old.protocol_version = 70015;
    let (out, inb) = connected_pair(old, strict).await;
    assert!(matches!(
        inb.unwrap_err(),
        HandshakeError::ProtocolTooOld { version: 70015, .. }
    ));
    assert!(out.is_err());
}

#[tokio::test(start_paused = true)]
async fn callback_refusal_reaches_the_caller_unchanged_both_sides() {
    #[derive(Debug, thiserror::Error, PartialEq)]
    #[error("no thanks: {0}")]
    struct NoThanks(String);

    for refusing in [Direction::Outbound, Direction::Inbound] {
        let (a, b) = tokio::io::duplex(DUPLEX_BUFFER);
        let cancel = CancellationToken::new();
        let refuse = |v: &bitcoin::p2p::message_network::VersionMessage| -> Result<(), NoThanks> {
            Err(NoThanks(v.user_agent.clone()))
        };
        let out = Peer::outbound(a, addr(1), config());
        let inb = Peer::inbound(b, addr(2), config());
        let (o, i) = match refusing {
            Direction::Outbound => tokio::join!(
                out.handshake(&cancel, refuse),
                inb.handshake(&cancel, accept)
            ),
            Direction::Inbound => tokio::join!(
                out.handshake(&cancel, accept),
                inb.handshake(&cancel, refuse)
            ),
        };
        let (refuser, other) = match refusing {
            Direction::Outbound => (o.unwrap_err(), i.unwrap_err()),
            Direction::Inbound => (i.unwrap_err(), o.unwrap_err()),
        };
        let HandshakeError::Refused(source) = refuser else {
            panic!("{refuser:?}")
        };
        let ours = source
            .downcast_ref::<NoThanks>()
            .expect("the callback's own error type");
        assert_eq!(ours, &NoThanks(verack::peer::DEFAULT_USER_AGENT.into()));
        assert!(matches!(other, HandshakeError::Io(_)), "{other:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn timeout_from_both_sides() {
    // Outbound: the remote reads our version and never answers.
    let (a, b) = tokio::io::duplex(DUPLEX_BUFFER);
    let _silent = b;
    let err = handshake_err(Direction::Outbound, a, config()).await;
    assert!(
        matches!(err, HandshakeError::Timeout { after } if after == Duration::from_secs(30)),
        "{err:?}"
    );

    // Inbound: the remote connects and sends nothing; a shorter configured timeout applies.
    let (a, b) = tokio::io::duplex(DUPLEX_BUFFER);
    let _silent = b;
    let mut cfg = config();
    cfg.handshake_timeout = Duration::from_secs(5);
    let started = tokio::time::Instant::now();
    let err = handshake_err(Direction::Inbound, a, cfg).await;
    assert!(matches!(err, HandshakeError::Timeout { .. }));
    assert_eq!(started.elapsed(), Duration::from_secs(5));

    // Verack never comes after version.
    let (a, b) = tokio::io::duplex(DUPLEX_BUFFER);
    let mut remote = Script::new(b);
    let task = tokio::spawn(async move {
        remote.expect_command("version").await;
        remote.send(remote_version(70016, 9)).await;
        remote
    });
    let err = handshake_err(Direction::Outbound, a, config()).await;
    assert!(matches!(err, HandshakeError::Timeout { .. }));
    drop(task);
}

#[tokio::test(start_paused = true)]
async fn cancellation_is_distinct_from_timeout_both_sides() {
    for direction in [Direction::Outbound, Direction::Inbound] {
        let (a, _b) = tokio::io::duplex(DUPLEX_BUFFER);
        let cancel = CancellationToken::new();
        let c = cancel.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(3)).await;
            c.cancel();
        });
        let started = tokio::time::Instant::now();
        let err = Peer::new(a, direction, addr(1), config())
            .handshake(&cancel, accept)
            .await
            .unwrap_err();
        assert!(matches!(err, HandshakeError::Cancelled), "{err:?}");
        assert_eq!(started.elapsed(), Duration::from_secs(3));
    }
}

#[tokio::test(start_paused = true)]
async fn feature_messages_before_verack_are_applied() {
    let (a, b) = tokio::io::duplex(DUPLEX_BUFFER);
    let mut remote = Script::new(b);
    let task = tokio::spawn(async move {
        remote.expect_command("version").await;
        remote.send(remote_version(70017, 9)).await;
        remote.send(NetworkMessage::WtxidRelay).await;
        remote.send(NetworkMessage::SendAddrV2).await;
        remote.send(NetworkMessage::SendHeaders).await;
        remote
            .send(NetworkMessage::SendCmpct(SendCmpct {
                send_compact: false,
                version: 2,
            }))
            .await;
        remote.send(sendtxrcncl(1, 0x0707_0707_0707_0707)).await;
        remote.send(feature(b"BIP999", b"\x01")).await;
        remote.send(NetworkMessage::Verack).await;
        // Our side sends wtxidrelay and sendaddrv2 before its verack, and no feature.
        remote.expect_command("wtxidrelay").await;
        remote.expect_command("sendaddrv2").await;
        remote.expect_command("verack").await;
        remote
    });
    let peer = handshake_ok(Direction::Outbound, a, config()).await;
    let f = &peer.negotiated().features;
    assert!(f.wtxid_relay && f.addr_v2 && f.send_headers);
    assert_eq!(
        f.compact_blocks,
        Some(SendCmpct {
            send_compact: false,
            version: 2
        })
    );
    assert_eq!(
        f.tx_reconciliation,
        Some(TxReconciliation {
            version: 1,
            salt: 0x0707_0707_0707_0707
        })
    );
    assert_eq!(
        f.features,
        vec![Feature {
            id: b"BIP999".to_vec(),
            data: vec![1]
        }]
    );
    assert_eq!(peer.negotiated().user_agent, "/scripted:1.0/");
    assert_eq!(peer.negotiated().start_height, 100);
    task.await.unwrap();
}

// ---- BIP434 `feature` and BIP330 `sendtxrcncl` (protocol version 70017) ----

fn unknown(command: &'static str, payload: Vec<u8>) -> NetworkMessage {
    NetworkMessage::Unknown {
        command: CommandString::try_from_static(command).unwrap(),
        payload,
    }
}

/// A `feature` message (BIP434): CompactSize + featureid, CompactSize + featuredata.
fn feature(id: &[u8], data: &[u8]) -> NetworkMessage {
    let payload = Feature {
        id: id.to_vec(),
        data: data.to_vec(),
    }
    .encode();
    unknown("feature", payload)
}

/// A `sendtxrcncl` message (BIP330): version u32, salt u64, little-endian.
fn sendtxrcncl(version: u32, salt: u64) -> NetworkMessage {
    let mut payload = version.to_le_bytes().to_vec();
    payload.extend_from_slice(&salt.to_le_bytes());
    unknown("sendtxrcncl", payload)
}

/// Runs our side of a handshake in `direction` against a remote speaking `remote_version`
/// that sends `before_verack` after its `version`, then (if we still talk) its `verack`.
/// Returns our result, what we sent up to our `verack`, and the remote (still connected).
async fn handshake_with(
    direction: Direction,
    cfg: verack::peer::PeerConfig,
    remote_version_number: u32,
    before_verack: Vec<NetworkMessage>,
) -> (
    Result<verack::peer::HandshakedPeer<tokio::io::DuplexStream>, HandshakeError>,
    Vec<NetworkMessage>,
    Script,
) {
    let (a, b) = tokio::io::duplex(DUPLEX_BUFFER);
    let mut remote = Script::new(b);
    let task = tokio::spawn(async move {
        let mut got = Vec::new();
        if direction == Direction::Outbound {
            got.push(remote.expect_command("version").await);
        }
        // Our side may close mid-script (that is what some cases test): write errors are
        // expected then.
        let mut script = vec![remote_version(remote_version_number, 9)];
        script.extend(before_verack);
        script.push(NetworkMessage::Verack);
        for m in script {
            let frame = verack::wire::encode_frame(bitcoin::Network::Regtest.magic(), &m).unwrap();
            if remote.stream.write_all(&frame).await.is_err() {
                break;
            }
        }
        // Everything our side sent, until it sends verack or closes.
        while let Some(m) = remote.recv().await {
            let done = m == NetworkMessage::Verack;
            got.push(m);
            if done {
                break;
            }
        }
        (got, remote)
    });
    let result = Peer::new(a, direction, addr(1), cfg)
        .handshake(&CancellationToken::new(), accept)
        .await;
    let (sent, remote) = task.await.unwrap();
    (result, sent, remote)
}

#[tokio::test(start_paused = true)]
async fn we_advertise_70017_and_send_no_feature_as_core() {
    for (theirs, negotiated) in [(70017, 70017), (70016, 70016), (70018, 70017)] {
        for direction in [Direction::Outbound, Direction::Inbound] {
            let (peer, sent, _) = handshake_with(direction, config(), theirs, vec![]).await;
            assert_eq!(peer.unwrap().negotiated().protocol_version, negotiated);
            let NetworkMessage::Version(ours) = &sent[0] else {
                panic!("{sent:?}")
            };
            assert_eq!(ours.version, 70017);
            assert_eq!(DEFAULT_PROTOCOL_VERSION, 70017);
            let commands: Vec<_> = sent[1..].iter().map(|m| m.command().to_string()).collect();
            assert_eq!(
                commands,
                ["wtxidrelay", "sendaddrv2", "verack"],
                "{direction:?}"
            );
        }
    }
}

#[tokio::test(start_paused = true)]
async fn features_sendtxrcncl_and_unknown_messages_before_verack_both_sides() {
    for direction in [Direction::Outbound, Direction::Inbound] {
        let mut before = vec![
            feature(b"BIP434v2", b""),
            // Core accepts an id that is not printable ASCII (BIP434 only says SHOULD).
            feature(b"\x00\xff\x01\x7f", &[7; MAX_FEATURE_DATA_LEN]),
            sendtxrcncl(1, 42),
            // Only the first sendtxrcncl is recorded; Core without -txreconciliation ignores
            // every one, so a repeat never disconnects.
            sendtxrcncl(2, 43),
        ];
        // Messages of unknown type are ignored (BIP434, Core), and do not count towards the
        // three held messages.
        for _ in 0..10 {
            before.push(unknown("futuremsg", vec![1, 2, 3]));
        }
        before.push(feature(&[b'x'; MAX_FEATURE_ID_LEN], b"data"));
        before.push(NetworkMessage::GetAddr);
        let (peer, _, _remote) = handshake_with(direction, config(), 70017, before).await;
        let peer = peer.unwrap();
        let f = &peer.negotiated().features;
        let ids: Vec<&[u8]> = f.features.iter().map(|f| &f.id[..]).collect();
        assert_eq!(
            ids,
            [&b"BIP434v2"[..], b"\x00\xff\x01\x7f", &[b'x'; 80]],
            "{direction:?}"
        );
        assert_eq!(f.features[1].data, vec![7; 512]);
        assert_eq!(f.features[2].data, b"data");
        assert_eq!(
            f.tx_reconciliation,
            Some(TxReconciliation {
                version: 1,
                salt: 42
            })
        );
        // The known message is still held for the handler, the unknown ones are gone.
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let (handle, run) = spawn_run(peer, Recorder(tx));
        assert_eq!(rx.recv().await.unwrap(), NetworkMessage::GetAddr);
        handle.disconnect();
        run.await.unwrap();
        assert!(rx.recv().await.is_none(), "nothing else was delivered");
    }
}

#[tokio::test(start_paused = true)]
async fn malformed_sendtxrcncl_before_verack_is_ignored() {
    // A short payload, then version 0 (a BIP330 violation Core punishes only with
    // -txreconciliation), at 70015 (below wtxidrelay): never a disconnect.
    let before = vec![
        unknown("sendtxrcncl", vec![1, 0, 0, 0, 5]),
        sendtxrcncl(0, 5),
    ];
    let (peer, _, _) = handshake_with(Direction::Inbound, config(), 70015, before).await;
    let f = peer.unwrap().negotiated().features.clone();
    assert_eq!(
        f.tx_reconciliation,
        Some(TxReconciliation {
            version: 0,
            salt: 5
        }),
        "the first full payload is recorded as sent"
    );
    let (peer, _, _) = handshake_with(
        Direction::Inbound,
        config(),
        70017,
        vec![unknown("sendtxrcncl", vec![])],
    )
    .await;
    assert_eq!(peer.unwrap().negotiated().features.tx_reconciliation, None);
}

#[tokio::test(start_paused = true)]
async fn features_beyond_the_record_limit_are_ignored_not_refused() {
    let before: Vec<_> = (0..MAX_RECORDED_FEATURES + 8)
        .map(|i| feature(format!("feat{i:04}").as_bytes(), b""))
        .collect();
    let (peer, _, _) = handshake_with(Direction::Outbound, config(), 70017, before).await;
    let peer = peer.unwrap();
    let f = &peer.negotiated().features.features;
    assert_eq!(f.len(), MAX_RECORDED_FEATURES);
    assert_eq!(f[0].id, b"feat0000");
    assert_eq!(f[31].id, b"feat0031");
}

#[tokio::test(start_paused = true)]
async fn malformed_features_fail_the_handshake_as_core() {
    let wire = |id: &[u8], data: &[u8]| {
        Feature {
            id: id.to_vec(),
            data: data.to_vec(),
        }
        .encode()
    };
    let mut trailing = wire(b"abcd", b"");
    trailing.push(0);
    // The cases of Core's p2p_bip434_feature.py that disconnect, plus a non-minimal length.
    let cases: Vec<(Vec<u8>, FeatureError)> = vec![
        (wire(b"", b""), FeatureError::IdLength { len: 0 }),
        (wire(b"abc", b""), FeatureError::IdLength { len: 3 }),
        (wire(&[b'a'; 81], b""), FeatureError::IdLength { len: 81 }),
        (
            wire(b"abcd", &[0; MAX_FEATURE_DATA_LEN + 1]),
            FeatureError::DataLength { len: 513 },
        ),
        (trailing, FeatureError::TrailingBytes { extra: 1 }),
        (b"\x0aabcde".to_vec(), FeatureError::Truncated),
        (b"\x04abcd\x0axx".to_vec(), FeatureError::Truncated),
        (
            b"\xfd\x04\x00abcd\x00".to_vec(),
            FeatureError::NonCanonicalLength,
        ),
    ];
    for (payload, expected) in cases {
        for direction in [Direction::Outbound, Direction::Inbound] {
            let (result, sent, _) = handshake_with(
                direction,
                config(),
                70017,
                vec![unknown("feature", payload.clone())],
            )
            .await;
            let err = result.expect_err("handshake should fail");
            assert!(
                matches!(err, HandshakeError::InvalidFeature(ref e) if *e == expected),
                "{direction:?} {payload:?}: {err:?}"
            );
            if direction == Direction::Outbound {
                assert!(
                    !sent.contains(&NetworkMessage::Verack),
                    "no verack to a peer that broke BIP434"
                );
            }
        }
    }
}

#[tokio::test(start_paused = true)]
async fn feature_below_70017_fails_the_handshake_as_core() {
    // The remote announces 70016 yet sends a feature (Core: "feature received with
    // incompatible version").
    let (result, _, _) = handshake_with(
        Direction::Outbound,
        config(),
        70016,
        vec![feature(b"abcd", b"")],
    )
    .await;
    let err = result.expect_err("handshake should fail");
    assert!(
        matches!(
            err,
            HandshakeError::InvalidFeature(FeatureError::IncompatibleVersion { version: 70016 })
        ),
        "{err:?}"
    );
    // We are configured for 70016: the negotiated version is below 70017 whatever they say.
    let mut old = config();
    old.protocol_version = 70016;
    let (result, _, _) =
        handshake_with(Direction::Inbound, old, 70017, vec![feature(b"abcd", b"")]).await;
    assert!(matches!(
        result.err(),
        Some(HandshakeError::InvalidFeature(
            FeatureError::IncompatibleVersion { version: 70016 }
        ))
    ));
}

#[tokio::test(start_paused = true)]
async fn after_verack_sendtxrcncl_is_ignored_and_feature_disconnects_as_core() {
    let (peer, mut remote) =
        handshaked_with_script(config(), 70017, true, vec![], DUPLEX_BUFFER).await;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let (_handle, run) = spawn_run(peer, Recorder(tx));
    // Core without -txreconciliation ignores a late sendtxrcncl: the peer stays, the handler
    // does not see it.
    remote.send(sendtxrcncl(1, 2)).await;
    remote.send(NetworkMessage::GetAddr).await;
    assert_eq!(rx.recv().await.unwrap(), NetworkMessage::GetAddr);
    // Core: "feature received after verack" disconnects.
    remote.send(feature(b"abcd", b"")).await;
    let reason = run.await.unwrap();
    assert!(
        matches!(
            reason,
            DisconnectReason::ProtocolViolation(Violation::LateNegotiation { ref command })
                if command == "feature"
        ),
        "{reason:?}"
    );
    assert!(rx.recv().await.is_none(), "neither reached the handler");
    assert!(remote.closed().await);
}

#[tokio::test(start_paused = true)]
async fn below_70016_no_wtxidrelay_or_sendaddrv2_is_sent() {
    let (a, b) = tokio::io::duplex(DUPLEX_BUFFER);
    let mut remote = Script::new(b);
    let task = tokio::spawn(async move {
        remote.send(remote_version(70015, 9)).await;
        remote.expect_command("version").await;
        remote.expect_command("verack").await;
        remote.send(NetworkMessage::WtxidRelay).await; // ignored below 70016, as Core
        remote.send(NetworkMessage::Verack).await;
        remote
    });
    let peer = handshake_ok(Direction::Inbound, a, config()).await;
    assert_eq!(peer.negotiated().protocol_version, 70015);
    assert!(!peer.negotiated().features.wtxid_relay);
    task.await.unwrap();
}

fn getheaders() -> NetworkMessage {
    NetworkMessage::GetHeaders(GetHeadersMessage::new(
        vec![BlockHash::all_zeros()],
        BlockHash::all_zeros(),
    ))
}

/// Records messages in order.
struct Recorder(tokio::sync::mpsc::UnboundedSender<NetworkMessage>);
impl MessageHandler for Recorder {
    async fn on_message(&mut self, _peer: &PeerHandle, message: NetworkMessage) {
        let _ = self.0.send(message);
    }
}

#[tokio::test(start_paused = true)]
async fn three_held_messages_are_delivered_in_order_both_sides() {
    for direction in [Direction::Outbound, Direction::Inbound] {
        let (a, b) = tokio::io::duplex(DUPLEX_BUFFER);
        let mut remote = Script::new(b);
        let held = vec![
            getheaders(),
            NetworkMessage::Ping(77),
            NetworkMessage::GetAddr,
        ];
        let to_send = held.clone();
        let task = tokio::spawn(async move {
            if direction == Direction::Outbound {
                remote.expect_command("version").await;
                remote.send(remote_version(70016, 9)).await;
            } else {
                remote.send(remote_version(70016, 9)).await;
                remote.expect_command("version").await;
            }
            for m in to_send {
                remote.send(m).await;
            }
            remote.send(NetworkMessage::Verack).await;
            remote
        });
        let peer = handshake_ok(direction, a, config()).await;
        let mut remote = task.await.unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let (handle, run) = spawn_run(peer, Recorder(tx));
        for expected in &held {
            assert_eq!(&rx.recv().await.unwrap(), expected);
        }
        // The held ping went through the peer's own rules: it was answered.
        loop {
            match remote.recv().await.unwrap() {
                NetworkMessage::Pong(n) => break assert_eq!(n, 77),
                _ => continue,
            }
        }
        handle.disconnect();
        run.await.unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn a_fourth_held_message_fails_with_not_verack_both_sides() {
    for direction in [Direction::Outbound, Direction::Inbound] {
        let (a, b) = tokio::io::duplex(DUPLEX_BUFFER);
        let mut remote = Script::new(b);
        let task = tokio::spawn(async move {
            if direction == Direction::Outbound {
                remote.expect_command("version").await;
                remote.send(remote_version(70016, 9)).await;
            } else {
                remote.send(remote_version(70016, 9)).await;
            }
            for _ in 0..3 {
                remote.send(NetworkMessage::GetAddr).await;
            }
            remote.send(NetworkMessage::MemPool).await;
            remote
        });
        let err = handshake_err(direction, a, config()).await;
        assert!(
            matches!(err, HandshakeError::NotVerack { ref command } if command == "mempool"),
            "{direction:?}: {err:?}"
        );
        task.await.unwrap();
    }
}

#[tokio::test(start_paused = true)]
async fn a_second_version_fails_with_not_verack() {
    let (a, b) = tokio::io::duplex(DUPLEX_BUFFER);
    let mut remote = Script::new(b);
    remote.send(remote_version(70016, 9)).await;
    remote.send(remote_version(70016, 9)).await;
    let err = handshake_err(Direction::Inbound, a, config()).await;
    assert!(
        matches!(err, HandshakeError::NotVerack { ref command } if command == "version"),
        "{err:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn framing_errors_fail_the_handshake_both_sides() {
    for direction in [Direction::Outbound, Direction::Inbound] {
        let (a, b) = tokio::io::duplex(DUPLEX_BUFFER);
        let mut remote = Script::new(b);
        // A mainnet frame on regtest.
        let frame = verack::wire::encode_frame(
            bitcoin::Network::Bitcoin.magic(),
            &remote_version(70016, 1),
        )
        .unwrap();
        remote.send_raw(&frame).await;
        let err = handshake_err(direction, a, config()).await;
        assert!(
            matches!(
                err,
                HandshakeError::Framing(verack::wire::DecodeError::WrongMagic { .. })
            ),
            "{direction:?}: {err:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn io_error_when_the_remote_vanishes_both_sides() {
    for direction in [Direction::Outbound, Direction::Inbound] {
        let (a, b) = tokio::io::duplex(DUPLEX_BUFFER);
        drop(b);
        let err = handshake_err(direction, a, config()).await;
        assert!(
            matches!(err, HandshakeError::Io(_)),
            "{direction:?}: {err:?}"
        );
    }
}

#[tokio::test]
async fn our_version_names_the_remote_only_when_it_is_routable() {
    // Core's PushNodeVersion: `addrYou` is the remote's address when routable, else `[::]:0`.
    for (remote, expected) in [
        ("127.0.0.1:18444", None),
        ("10.1.2.3:18444", None),
        ("8.8.8.8:18444", Some("8.8.8.8:18444")),
    ] {
        let remote: std::net::SocketAddr = remote.parse().unwrap();
        let (a, b) = tokio::io::duplex(DUPLEX_BUFFER);
        let mut script = Script::new(b);
        let ours = tokio::spawn(async move {
            let _ = Peer::new(a, Direction::Outbound, remote, config())
                .handshake(&CancellationToken::new(), accept)
                .await;
        });
        let NetworkMessage::Version(v) = script.expect_command("version").await else {
            panic!("not a version")
        };
        let got = v.receiver.socket_addr().unwrap();
        match expected {
            // Sent as `[::]` (rust-bitcoin reads it back as 0.0.0.0): unspecified, port 0.
            None => assert!(
                got.ip().is_unspecified() && got.port() == 0,
                "{remote}: {got}"
            ),
            Some(addr) => assert_eq!(got, addr.parse().unwrap(), "{remote}"),
        }
        drop(script);
        let _ = ours.await;
    }
}
