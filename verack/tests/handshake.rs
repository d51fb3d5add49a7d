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
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use verack::peer::{
    Direction, HandshakeError, IgnoreMessages, MessageHandler, Peer, PeerHandle, DEFAULT_USER_AGENT,
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
        assert_eq!(s.protocol_version, 70016);
        let n = peer.negotiated();
        assert!(n.features.wtxid_relay && n.features.addr_v2);
        assert_eq!(n.protocol_version, 70016);
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
async fn outbound_not_version_first() {
    let (a, b) = tokio::io::duplex(DUPLEX_BUFFER);
    let mut remote = Script::new(b);
    let task = tokio::spawn(async move {
        remote.expect_command("version").await;
        remote.send(NetworkMessage::Verack).await;
        remote
    });
    let err = handshake_err(Direction::Outbound, a, config()).await;
    assert!(
        matches!(err, HandshakeError::NotVersion { ref command } if command == "verack"),
        "{err:?}"
    );
    task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn inbound_not_version_first() {
    let (a, b) = tokio::io::duplex(DUPLEX_BUFFER);
    let mut remote = Script::new(b);
    remote.send(NetworkMessage::Ping(1)).await;
    let err = handshake_err(Direction::Inbound, a, config()).await;
    assert!(
        matches!(err, HandshakeError::NotVersion { ref command } if command == "ping"),
        "{err:?}"
    );
    // Nothing was sent to a peer that broke the order.
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
        remote.send(remote_version(70016, 9)).await;
        remote.send(NetworkMessage::WtxidRelay).await;
        remote.send(NetworkMessage::SendAddrV2).await;
        remote.send(NetworkMessage::SendHeaders).await;
        remote
            .send(NetworkMessage::SendCmpct(SendCmpct {
                send_compact: false,
                version: 2,
            }))
            .await;
        let txrcncl = CommandString::try_from_static("sendtxrcncl").unwrap();
        remote
            .send(NetworkMessage::Unknown {
                command: txrcncl,
                payload: vec![1, 0, 0, 0, 7, 7, 7, 7, 7, 7, 7, 7],
            })
            .await;
        let feature = CommandString::try_from_static("feature").unwrap();
        remote
            .send(NetworkMessage::Unknown {
                command: feature,
                payload: vec![3, b'a', b'b', b'c'],
            })
            .await;
        remote.send(NetworkMessage::Verack).await;
        // Our side sends wtxidrelay and sendaddrv2 before its verack.
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
        f.tx_reconciliation.as_deref(),
        Some(&[1, 0, 0, 0, 7, 7, 7, 7, 7, 7, 7, 7][..])
    );
    assert_eq!(f.features, vec![vec![3, b'a', b'b', b'c']]);
    assert_eq!(peer.negotiated().user_agent, "/scripted:1.0/");
    assert_eq!(peer.negotiated().start_height, 100);
    task.await.unwrap();
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
