//! Misbehaving BIP324 peers: each case is a typed error, never a panic, and our peer reads a
//! bounded number of bytes however much the remote sends.

mod v2_support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use bitcoin::p2p::message::NetworkMessage;
use tokio::io::{AsyncWriteExt, DuplexStream};
use tokio_util::sync::CancellationToken;
use v2_support::*;
use verack::peer::{DisconnectReason, HandshakeError, Peer, TransportKind};
use verack::transport::{MAX_CONTENTS_LEN, MAX_GARBAGE_LEN};
use verack::wire::{DecodeError, V2Error};

const DUPLEX: usize = 1 << 20;
/// What our peer may read beyond the bytes it needs: one read chunk (64 KiB) and slack.
const READ_SLACK: u64 = 256 * 1024;

/// Our inbound peer over a counted pipe; returns its handshake result and the bytes it read.
async fn inbound_outcome(
    ours: DuplexStream,
) -> (
    Result<verack::peer::HandshakedPeer<Counted<DuplexStream>>, HandshakeError>,
    u64,
) {
    let ours = Counted::new(ours);
    let read = ours.read.clone();
    let r = Peer::inbound(ours, addr(1), config())
        .handshake(&CancellationToken::new(), accept)
        .await;
    (r, read.load(Ordering::SeqCst))
}

fn v2_error(e: HandshakeError) -> V2Error {
    match e {
        HandshakeError::Framing(DecodeError::V2(v2)) => v2,
        other => panic!("expected a v2 framing error, got {other:?}"),
    }
}

#[tokio::test]
async fn wrong_network_magic_in_the_v1_prefix() {
    let (a, b) = tokio::io::duplex(DUPLEX);
    let mut remote = b;
    let frame =
        verack::wire::encode_frame(bitcoin::Network::Bitcoin.magic(), &remote_version()).unwrap();
    remote.write_all(&frame).await.unwrap();
    let (r, _) = inbound_outcome(a).await;
    match r.unwrap_err() {
        HandshakeError::Framing(DecodeError::WrongMagic { expected, actual }) => {
            assert_eq!(expected, bitcoin::Network::Regtest.magic());
            assert_eq!(actual, bitcoin::Network::Bitcoin.magic());
        }
        other => panic!("{other:?}"),
    }
    // We did not answer with a v2 key: nothing was sent.
    let mut rest = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut remote, &mut rest)
        .await
        .unwrap();
    assert!(rest.is_empty());
}

#[tokio::test]
async fn missing_garbage_terminator_after_4095_plus_16_bytes() {
    // A key and then a megabyte of bytes without any terminator.
    let (a, mut b) = tokio::io::duplex(DUPLEX);
    let writer = tokio::spawn(async move {
        let mut junk = vec![0x42u8; 64];
        junk.extend((0..1_000_000u32).map(|i| (i * 7 % 251) as u8));
        let _ = b.write_all(&junk).await;
        b
    });
    let (r, read) = inbound_outcome(a).await;
    assert_eq!(
        v2_error(r.unwrap_err()),
        V2Error::NoGarbageTerminator { searched: 4111 }
    );
    assert!(read < 64 + 4111 + READ_SLACK, "read {read} bytes");
    drop(writer);
}

#[tokio::test]
async fn wrong_garbage_terminator_is_never_found() {
    // A real initiator whose terminator is wrong, followed by more than 4 KiB of packets.
    let (a, b) = tokio::io::duplex(DUPLEX);
    let writer = RawV2::initiate(
        b,
        Misbehave {
            garbage: vec![1; 100],
            wrong_terminator: Some([0xab; 16]),
            trailing: vec![0x33; 8000],
            ..Misbehave::default()
        },
    );
    let (remote, (r, read)) = tokio::join!(writer, inbound_outcome(a));
    assert!(remote.is_err(), "the script stopped after its bad opening");
    assert!(matches!(
        v2_error(r.unwrap_err()),
        V2Error::NoGarbageTerminator { .. }
    ));
    assert!(read < 64 + 4111 + READ_SLACK);
}

#[tokio::test(start_paused = true)]
async fn wrong_garbage_terminator_then_silence_times_out() {
    let (a, b) = tokio::io::duplex(DUPLEX);
    let writer = RawV2::initiate(
        b,
        Misbehave {
            wrong_terminator: Some([0xab; 16]),
            ..Misbehave::default()
        },
    );
    let started = tokio::time::Instant::now();
    let (_remote, (r, _)) = tokio::join!(writer, inbound_outcome(a));
    assert!(
        matches!(r.unwrap_err(), HandshakeError::Timeout { after } if after == Duration::from_secs(10))
    );
    assert_eq!(started.elapsed(), Duration::from_secs(10));
}

#[tokio::test]
async fn garbage_over_the_limit_fails_and_at_the_limit_succeeds() {
    // 4096 bytes of garbage (one over), then the right terminator.
    let (a, b) = tokio::io::duplex(DUPLEX);
    let writer = RawV2::initiate(
        b,
        Misbehave {
            extra_garbage: vec![5; MAX_GARBAGE_LEN + 1],
            ..Misbehave::default()
        },
    );
    let (_remote, (r, _)) = tokio::join!(writer, inbound_outcome(a));
    assert_eq!(
        v2_error(r.unwrap_err()),
        V2Error::NoGarbageTerminator { searched: 4111 }
    );

    // Exactly 4095 bytes: fine.
    let (a, b) = tokio::io::duplex(DUPLEX);
    let remote = tokio::spawn(async move {
        let mut remote = RawV2::initiate(
            b,
            Misbehave {
                garbage: vec![5; MAX_GARBAGE_LEN],
                ..Misbehave::default()
            },
        )
        .await
        .unwrap_or_else(|_| panic!("honest"));
        remote.handshake_messages(true).await;
        remote
    });
    let (r, _) = inbound_outcome(a).await;
    let peer = r.unwrap();
    assert_eq!(
        peer.negotiated().transport.session_id(),
        Some(&remote.await.unwrap().session_id)
    );
}

#[tokio::test]
async fn unauthenticated_garbage_is_a_decryption_failure() {
    // One garbage byte the version packet does not authenticate (AAD mismatch).
    let (a, b) = tokio::io::duplex(DUPLEX);
    let writer = RawV2::initiate(
        b,
        Misbehave {
            garbage: vec![9; 20],
            extra_garbage: vec![0x5a],
            ..Misbehave::default()
        },
    );
    let (_remote, (r, _)) = tokio::join!(writer, inbound_outcome(a));
    assert_eq!(v2_error(r.unwrap_err()), V2Error::Decryption);
}

#[tokio::test]
async fn corrupted_version_packet_is_a_decryption_failure() {
    let (a, b) = tokio::io::duplex(DUPLEX);
    let writer = RawV2::initiate(
        b,
        Misbehave {
            corrupt_version: true,
            ..Misbehave::default()
        },
    );
    let (_remote, (r, _)) = tokio::join!(writer, inbound_outcome(a));
    assert_eq!(v2_error(r.unwrap_err()), V2Error::Decryption);
}

#[tokio::test]
async fn packet_length_over_the_limit_in_the_handshake() {
    // A decoy of 4,000,014 content bytes before the version packet: refused from its length.
    let (a, b) = tokio::io::duplex(DUPLEX);
    let remote = RawV2::initiate(
        b,
        Misbehave {
            decoys: vec![vec![0; MAX_CONTENTS_LEN + 1]],
            stop: true,
            ..Misbehave::default()
        },
    );
    let (_remote, (r, read)) = tokio::join!(remote, inbound_outcome(a));
    assert_eq!(
        v2_error(r.unwrap_err()),
        V2Error::PacketTooLarge {
            len: MAX_CONTENTS_LEN + 1,
            max: MAX_CONTENTS_LEN
        }
    );
    assert!(
        read < 64 + 4111 + READ_SLACK,
        "read {read} of the 4 MB packet"
    );
}

/// Our inbound peer running against an honest raw remote.
async fn running_against_raw() -> (
    RawV2<DuplexStream>,
    verack::peer::PeerHandle,
    tokio::sync::mpsc::UnboundedReceiver<NetworkMessage>,
    tokio::task::JoinHandle<DisconnectReason>,
) {
    let (a, b) = tokio::io::duplex(DUPLEX);
    let remote = tokio::spawn(async move {
        let mut remote = RawV2::initiate(b, Misbehave::default())
            .await
            .unwrap_or_else(|_| panic!("honest"));
        remote.handshake_messages(true).await;
        remote
    });
    let peer = Peer::inbound(a, addr(1), config())
        .handshake(&CancellationToken::new(), accept)
        .await
        .unwrap();
    let (handle, rx, run) = run_forwarding(peer);
    (remote.await.unwrap(), handle, rx, run)
}

fn framing_v2(reason: DisconnectReason) -> V2Error {
    match reason {
        DisconnectReason::Framing(DecodeError::V2(e)) => e,
        other => panic!("expected a v2 framing error, got {other:?}"),
    }
}

#[tokio::test]
async fn decryption_failure_while_running() {
    let (mut remote, handle, _rx, run) = running_against_raw().await;
    let contents = verack::transport::encode_contents(&NetworkMessage::Ping(5)).unwrap();
    let mut packet = remote.seal(&contents, false);
    packet[5] ^= 0x80; // inside the encrypted contents
    remote.send_raw(&packet).await;
    let reason = run.await.unwrap();
    assert!(reason.is_misbehaviour());
    assert_eq!(framing_v2(reason), V2Error::Decryption);
    assert!(matches!(
        handle.closed().await,
        DisconnectReason::Framing(_)
    ));
}

#[tokio::test]
async fn packet_length_over_the_limit_while_running() {
    let (a, b) = tokio::io::duplex(DUPLEX);
    let remote = tokio::spawn(async move {
        let mut remote = RawV2::initiate(b, Misbehave::default())
            .await
            .unwrap_or_else(|_| panic!("honest"));
        remote.handshake_messages(true).await;
        remote
    });
    let ours = Counted::new(a);
    let read = ours.read.clone();
    let peer = Peer::inbound(ours, addr(1), config())
        .handshake(&CancellationToken::new(), accept)
        .await
        .unwrap();
    let (_handle, _rx, run) = run_forwarding(peer);
    let mut remote = remote.await.unwrap();
    let before = read.load(Ordering::SeqCst);
    let packet = remote.seal(&vec![0u8; MAX_CONTENTS_LEN + 1], false);
    let writer = tokio::spawn(async move {
        let _ = remote.send_raw(&packet).await;
    });
    let reason = run.await.unwrap();
    assert_eq!(
        framing_v2(reason),
        V2Error::PacketTooLarge {
            len: MAX_CONTENTS_LEN + 1,
            max: MAX_CONTENTS_LEN
        }
    );
    let after = read.load(Ordering::SeqCst);
    assert!(
        after - before < READ_SLACK,
        "read {} bytes of it",
        after - before
    );
    writer.abort();
}

#[tokio::test]
async fn unknown_short_ids_and_bad_message_types_are_skipped() {
    let (mut remote, handle, mut rx, run) = running_against_raw().await;
    let unknown_id = remote.seal(&[200, 1, 2, 3], false);
    let empty = remote.seal(&[], false);
    let mut bad_ascii = vec![0u8; 13];
    bad_ascii[1..5].copy_from_slice(b"p\x01ng");
    let bad_ascii = remote.seal(&bad_ascii, false);
    let short_long = remote.seal(&[0, b'p', b'i'], false);
    // The 13-byte form of ping is the same message as id 18.
    let mut long_ping = vec![0u8; 13];
    long_ping[1..5].copy_from_slice(b"ping");
    long_ping.extend_from_slice(&7u64.to_le_bytes());
    let long_ping = remote.seal(&long_ping, false);
    for p in [unknown_id, empty, bad_ascii, short_long, long_ping] {
        remote.send_raw(&p).await;
    }
    assert_eq!(rx.recv().await.unwrap(), NetworkMessage::Ping(7));
    loop {
        if let NetworkMessage::Pong(7) = remote.recv().await.unwrap() {
            break;
        }
    }
    let stats = handle.stats();
    assert_eq!(
        stats.bytes_received_per_command["*other*"],
        // Contents of 4, 0, 13 and 3 bytes, each in a 20-byte packet overhead.
        (4 + 13 + 3) + 4 * 20
    );
    handle.disconnect();
    run.await.unwrap();
}

#[tokio::test]
async fn our_decoys_reach_the_remote_and_are_skipped() {
    let (a, b) = tokio::io::duplex(DUPLEX);
    let mut cfg = config();
    cfg.v2_decoys = true;
    let ours = tokio::spawn(async move {
        Peer::outbound_with_transport(a, addr(2), cfg, TransportKind::V2)
            .handshake(&CancellationToken::new(), accept)
            .await
    });
    let mut remote = RawV2::respond(b).await;
    remote.handshake_messages(false).await;
    let (handle, _rx, run) = run_forwarding(ours.await.unwrap().unwrap());
    for i in 0..200u64 {
        handle
            .send_and_wait(NetworkMessage::FeeFilter(i as i64))
            .await
            .unwrap();
    }
    let mut got = 0;
    while got < 200 {
        if let NetworkMessage::FeeFilter(_) = remote.recv().await.unwrap() {
            got += 1;
        }
    }
    assert!(remote.decoys_skipped() > 0, "no decoy in 200 batches");
    handle.disconnect();
    run.await.unwrap();
}

/// Core's `p2p_v2_misbehaving.py` EARLY_KEY_RESPONSE: a v2 key that starts with our magic and
/// `versio` is not answered until a byte differs from the 16-byte v1 prefix; then we answer as
/// the v2 responder and take the key (the patched `bip324` no longer refuses it on the magic).
#[tokio::test(start_paused = true)]
async fn key_starting_with_the_magic_is_answered_after_the_v1_prefix_differs() {
    use tokio::io::AsyncReadExt;
    let (a, mut remote) = tokio::io::duplex(DUPLEX);
    let ours = tokio::spawn(inbound_outcome(a));
    let mut key = bitcoin::Network::Regtest.magic().to_bytes().to_vec();
    key.extend_from_slice(b"versio");
    remote.write_all(&key).await.unwrap();
    let mut buf = [0u8; 64];
    assert!(
        tokio::time::timeout(Duration::from_secs(2), remote.read(&mut buf))
            .await
            .is_err(),
        "10 bytes of the v1 prefix: nothing is sent yet"
    );
    // The rest of a 64-byte key (the 11th byte differs from `version`), no garbage yet.
    let rest: Vec<u8> = (0..54u8).map(|i| i.wrapping_mul(37) ^ 0x5a).collect();
    remote.write_all(&rest).await.unwrap();
    tokio::time::timeout(Duration::from_secs(2), remote.read_exact(&mut buf))
        .await
        .expect("our key arrives once the prefix differs")
        .unwrap();
    // The key was accepted: we wait for the garbage terminator, no key-exchange error.
    assert!(!ours.is_finished());
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !ours.is_finished(),
        "the key starting with the magic was refused"
    );
    drop(remote);
    let (r, _) = ours.await.unwrap();
    let err = r.unwrap_err();
    assert!(
        !matches!(
            err,
            HandshakeError::Framing(DecodeError::V2(V2Error::KeyExchange { .. }))
        ),
        "{err:?}"
    );
}
