//! BIP324 v2 transport: handshakes and messaging between two peers (duplex and loopback TCP),
//! transport selection and detection, the v1 fallback hint, timeouts, decoys, and messages
//! split at arbitrary byte boundaries.

mod v2_support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use bitcoin::p2p::message::{CommandString, NetworkMessage};
use bitcoin::p2p::message_blockdata::Inventory;
use bitcoin::p2p::ServiceFlags;
use bitcoin::{hashes::Hash, Txid};
use proptest::prelude::*;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use v2_support::*;
use verack::peer::{
    HandshakeError, HandshakedPeer, Peer, PeerHandle, RetryV1Reason, Transport, TransportKind,
    V2Mode, OTHER_COMMAND,
};

const DUPLEX: usize = 1 << 20;

fn unknown(command: &'static str, payload: Vec<u8>) -> NetworkMessage {
    NetworkMessage::Unknown {
        command: CommandString::try_from_static(command).unwrap(),
        payload,
    }
}

/// Message `i` of a stream: short-id and long-form commands, varied sizes.
fn nth_message(i: u32) -> NetworkMessage {
    match i % 3 {
        0 => NetworkMessage::Inv(vec![Inventory::Transaction(Txid::from_byte_array(
            [(i % 251) as u8; 32],
        ))]),
        1 => unknown("seq", i.to_le_bytes().repeat((i % 50) as usize + 1)),
        _ => NetworkMessage::FeeFilter(i64::from(i)),
    }
}

fn session(t: &Transport) -> [u8; 32] {
    *t.session_id().expect("v2")
}

/// Waits (real time) until `a` sent what `b` received and the other way round, then checks
/// both against the bytes that crossed the wire.
async fn assert_wire_bytes(
    a: &PeerHandle,
    b: &PeerHandle,
    a_written: &std::sync::atomic::AtomicU64,
    b_written: &std::sync::atomic::AtomicU64,
) {
    let settled = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let (sa, sb) = (a.stats(), b.stats());
            if sa.bytes_sent == sb.bytes_received
                && sb.bytes_sent == sa.bytes_received
                && sa.bytes_sent == a_written.load(Ordering::SeqCst)
                && sb.bytes_sent == b_written.load(Ordering::SeqCst)
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    let (sa, sb) = (a.stats(), b.stats());
    assert!(
        settled.is_ok(),
        "a sent {} (wire {}), b received {}; b sent {} (wire {}), a received {}",
        sa.bytes_sent,
        a_written.load(Ordering::SeqCst),
        sb.bytes_received,
        sb.bytes_sent,
        b_written.load(Ordering::SeqCst),
        sa.bytes_received
    );
}

/// Exchanges `count` messages each way, checks order, transports and byte counts.
async fn exchange_both_ways<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    out: HandshakedPeer<Counted<S>>,
    inb: HandshakedPeer<Counted<S>>,
    out_written: std::sync::Arc<std::sync::atomic::AtomicU64>,
    in_written: std::sync::Arc<std::sync::atomic::AtomicU64>,
    count: u32,
) {
    let (ha, mut rxa, run_a) = run_forwarding(out);
    let (hb, mut rxb, run_b) = run_forwarding(inb);
    for i in 0..count {
        ha.send(nth_message(i)).unwrap();
        hb.send(nth_message(i + 1_000_000)).unwrap();
    }
    for i in 0..count {
        assert_eq!(next_non_ping(&mut rxb).await, nth_message(i), "a→b #{i}");
        assert_eq!(
            next_non_ping(&mut rxa).await,
            nth_message(i + 1_000_000),
            "b→a #{i}"
        );
    }
    assert_wire_bytes(&ha, &hb, &out_written, &in_written).await;
    let (sa, sb) = (ha.stats(), hb.stats());
    assert!(matches!(sa.transport, Transport::V2 { .. }));
    assert_eq!(sa.transport, sb.transport, "same session id on both ends");
    assert!(sa.messages_sent >= u64::from(count) + 2);
    // Per-command counts are whole packets: every `seq` packet is 20 + 13 + payload bytes.
    let seq_sent: u64 = (0..count)
        .filter(|i| i % 3 == 1)
        .map(|i| 33 + 4 * (u64::from(i % 50) + 1))
        .sum();
    // `seq` is not one of Core's message types, so it is counted under `*other*`.
    assert_eq!(sa.bytes_sent_per_command[OTHER_COMMAND], seq_sent);
    assert_eq!(sb.bytes_received_per_command[OTHER_COMMAND], seq_sent);
    ha.disconnect();
    run_a.await.unwrap();
    run_b.await.unwrap();
}

#[tokio::test]
async fn v2_pair_over_duplex_crosses_rekeying_both_directions() {
    let (a, b) = tokio::io::duplex(DUPLEX);
    let (a, b) = (Counted::new(a), Counted::new(b));
    let (aw, bw) = (a.written.clone(), b.written.clone());
    let (out, inb) = pair(a, b, TransportKind::V2, config(), config()).await;
    let (out, inb) = (out.unwrap(), inb.unwrap());
    let (no, ni) = (out.negotiated().clone(), inb.negotiated().clone());
    assert_eq!(no.transport.kind(), TransportKind::V2);
    assert_eq!(session(&no.transport), session(&ni.transport));
    assert_eq!(no.transport.session_id_hex().len(), 64);
    assert_eq!(no.transport.to_string(), "v2");
    // Both advertise NODE_P2P_V2 by default.
    assert!(no.services.has(ServiceFlags::P2P_V2));
    assert!(ni.services.has(ServiceFlags::P2P_V2));
    // 400 packets each way, plus the handshake's: the ciphers rekeyed (every 224).
    exchange_both_ways(out, inb, aw, bw, 400).await;
}

#[tokio::test]
async fn v2_pair_over_loopback_tcp_with_rekeying_and_a_3_9_mb_message() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let local = listener.local_addr().unwrap();
    let (dialled, accepted) = tokio::join!(TcpStream::connect(local), listener.accept());
    let (a, b) = (
        Counted::new(dialled.unwrap()),
        Counted::new(accepted.unwrap().0),
    );
    let (aw, bw) = (a.written.clone(), b.written.clone());
    let (out, inb) = pair(a, b, TransportKind::V2, config(), config()).await;
    let (out, inb) = (out.unwrap(), inb.unwrap());
    let (ha, mut rxa, run_a) = run_forwarding(out);
    let (hb, mut rxb, run_b) = run_forwarding(inb);
    let big = unknown("big", (0..3_900_000u32).map(|i| (i % 253) as u8).collect());
    for i in 0..300 {
        ha.send(nth_message(i)).unwrap();
        hb.send(nth_message(i)).unwrap();
    }
    ha.send(big.clone()).unwrap();
    hb.send(big.clone()).unwrap();
    for i in 0..300 {
        assert_eq!(next_non_ping(&mut rxb).await, nth_message(i));
        assert_eq!(next_non_ping(&mut rxa).await, nth_message(i));
    }
    assert_eq!(next_non_ping(&mut rxb).await, big);
    assert_eq!(next_non_ping(&mut rxa).await, big);
    assert_wire_bytes(&ha, &hb, &aw, &bw).await;
    // `big` and the `seq` messages share Core's `*other*` counter.
    let seq_sent: u64 = (0..300u64)
        .filter(|i| i % 3 == 1)
        .map(|i| 33 + 4 * (i % 50 + 1))
        .sum();
    assert_eq!(
        ha.stats().bytes_sent_per_command[OTHER_COMMAND],
        3_900_000 + 33 + seq_sent
    );
    ha.disconnect();
    run_a.await.unwrap();
    run_b.await.unwrap();
}

#[tokio::test]
async fn messages_of_3_9_mb_with_short_ids_both_directions_over_duplex() {
    let (a, b) = tokio::io::duplex(DUPLEX);
    let (out, inb) = pair(a, b, TransportKind::V2, config(), config()).await;
    let (ha, mut rxa, run_a) = run_forwarding(out.unwrap());
    let (hb, mut rxb, run_b) = run_forwarding(inb.unwrap());
    // A `tx` (1-byte id 21) whose script is 3.9 MB.
    let tx = bitcoin::Transaction {
        version: bitcoin::transaction::Version::TWO,
        lock_time: bitcoin::absolute::LockTime::ZERO,
        input: vec![],
        output: vec![bitcoin::TxOut {
            value: bitcoin::Amount::from_sat(1),
            script_pubkey: bitcoin::ScriptBuf::from_bytes(vec![0x51; 3_900_000]),
        }],
    };
    let msg = NetworkMessage::Tx(tx);
    hb.send(msg.clone()).unwrap();
    ha.send_and_wait(msg.clone()).await.unwrap();
    assert_eq!(next_non_ping(&mut rxb).await, msg);
    assert_eq!(next_non_ping(&mut rxa).await, msg);
    // A payload of exactly 4,000,000 bytes (the limit) in the long form.
    let limit = unknown("limit", vec![9; 4_000_000]);
    ha.send(limit.clone()).unwrap();
    assert_eq!(next_non_ping(&mut rxb).await, limit);
    // One byte more is refused locally, as for v1.
    assert!(ha.send(unknown("limit", vec![9; 4_000_001])).is_err());
    ha.disconnect();
    run_a.await.unwrap();
    run_b.await.unwrap();
}

#[tokio::test]
async fn v1_initiator_to_v2_capable_responder_is_detected_as_v1() {
    let (a, b) = tokio::io::duplex(DUPLEX);
    let (a, b) = (Counted::new(a), Counted::new(b));
    let (aw, bw) = (a.written.clone(), b.written.clone());
    // Peer::outbound with the default IfAdvertised and unknown services: v1.
    let cancel = CancellationToken::new();
    let out = Peer::outbound(a, addr(1), config());
    assert_eq!(out.planned_transport(), Some(TransportKind::V1));
    let inb = Peer::inbound(b, addr(2), config());
    assert_eq!(inb.planned_transport(), None);
    let (out, inb) = tokio::join!(
        out.handshake(&cancel, accept),
        inb.handshake(&cancel, accept)
    );
    let (out, inb) = (out.unwrap(), inb.unwrap());
    assert_eq!(out.negotiated().transport, Transport::V1);
    assert_eq!(inb.negotiated().transport, Transport::V1);
    assert_eq!(inb.negotiated().transport.session_id_hex(), "");
    let (ha, mut rxa, run_a) = run_forwarding(out);
    let (hb, mut rxb, run_b) = run_forwarding(inb);
    for i in 0..20 {
        ha.send(nth_message(i)).unwrap();
        hb.send(nth_message(i)).unwrap();
    }
    for i in 0..20 {
        assert_eq!(next_non_ping(&mut rxb).await, nth_message(i));
        assert_eq!(next_non_ping(&mut rxa).await, nth_message(i));
    }
    assert_wire_bytes(&ha, &hb, &aw, &bw).await;
    assert_eq!(ha.stats().transport, Transport::V1);
    ha.disconnect();
    run_a.await.unwrap();
    run_b.await.unwrap();
}

/// A v1-only node on loopback: accepts connections forever, handshakes each with V2Mode::Off.
async fn v1_only_node() -> (
    std::net::SocketAddr,
    tokio::sync::mpsc::UnboundedReceiver<Result<Transport, String>>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let local = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let (sock, from) = listener.accept().await.unwrap();
            let mut cfg = config();
            cfg.v2 = V2Mode::Off;
            let tx = tx.clone();
            tokio::spawn(async move {
                let r = Peer::inbound(sock, from, cfg)
                    .handshake(&CancellationToken::new(), accept)
                    .await;
                let _ = tx.send(
                    r.as_ref()
                        .map(|p| p.negotiated().transport)
                        .map_err(|e| e.to_string()),
                );
                if let Ok(peer) = r {
                    let _ = tokio::time::timeout(
                        Duration::from_secs(5),
                        peer.run(verack::peer::IgnoreMessages, CancellationToken::new()),
                    )
                    .await;
                }
            });
        }
    });
    (local, rx)
}

#[tokio::test]
async fn v2_initiator_to_v1_only_responder_hints_retry_and_v1_redial_succeeds() {
    let (node, mut outcomes) = v1_only_node().await;
    let mut cfg = config();
    cfg.v2 = V2Mode::Always;
    let cancel = CancellationToken::new();

    let first = Peer::outbound(TcpStream::connect(node).await.unwrap(), node, cfg.clone());
    assert_eq!(first.planned_transport(), Some(TransportKind::V2));
    let err = first.handshake(&cancel, accept).await.unwrap_err();
    assert!(
        matches!(
            err,
            HandshakeError::V2RetryV1 {
                reason: RetryV1Reason::Closed | RetryV1Reason::Reset
            }
        ),
        "{err:?}"
    );
    assert!(err.retry_v1());
    // The v1 node saw our key as a frame of another network.
    assert!(outcomes
        .recv()
        .await
        .unwrap()
        .unwrap_err()
        .contains("magic"));
    assert!(cfg.v1_only_cache.contains(node));

    // Re-dial the same way: the cache makes it v1.
    let second = Peer::outbound(TcpStream::connect(node).await.unwrap(), node, cfg.clone());
    assert_eq!(second.planned_transport(), Some(TransportKind::V1));
    let peer = second.handshake(&cancel, accept).await.unwrap();
    assert_eq!(peer.negotiated().transport, Transport::V1);
    assert_eq!(outcomes.recv().await.unwrap().unwrap(), Transport::V1);

    // Even when the address advertises NODE_P2P_V2 (addr relay may lie), the cache wins.
    let third = Peer::outbound_with_services(
        TcpStream::connect(node).await.unwrap(),
        node,
        cfg.clone(),
        ServiceFlags::P2P_V2,
    );
    assert_eq!(third.planned_transport(), Some(TransportKind::V1));
}

#[tokio::test]
async fn v2_initiator_to_v1_only_responder_over_duplex_is_closed_hint() {
    let (a, b) = tokio::io::duplex(DUPLEX);
    let mut v1 = config();
    v1.v2 = V2Mode::Off;
    let cfg = config();
    let (out, inb) = pair(a, b, TransportKind::V2, cfg.clone(), v1).await;
    let err = out.unwrap_err();
    assert!(
        matches!(
            err,
            HandshakeError::V2RetryV1 {
                reason: RetryV1Reason::Closed
            }
        ),
        "{err:?}"
    );
    assert!(matches!(
        inb.unwrap_err(),
        HandshakeError::Framing(verack::wire::DecodeError::WrongMagic { .. })
    ));
    assert!(cfg.v1_only_cache.contains(addr(18444)));
}

#[tokio::test]
async fn transport_choice_follows_mode_services_and_cache() {
    let plan = |mode: V2Mode, services: Option<ServiceFlags>| {
        let mut cfg = config();
        cfg.v2 = mode;
        let (a, _b) = tokio::io::duplex(64);
        match services {
            None => Peer::outbound(a, addr(7), cfg),
            Some(s) => Peer::outbound_with_services(a, addr(7), cfg, s),
        }
        .planned_transport()
        .unwrap()
    };
    use TransportKind::{V1, V2};
    let v2_flag = Some(ServiceFlags::NETWORK | ServiceFlags::P2P_V2);
    assert_eq!(plan(V2Mode::IfAdvertised, None), V1);
    assert_eq!(plan(V2Mode::IfAdvertised, Some(ServiceFlags::NETWORK)), V1);
    assert_eq!(plan(V2Mode::IfAdvertised, v2_flag), V2);
    assert_eq!(plan(V2Mode::Always, None), V2);
    assert_eq!(plan(V2Mode::Only, None), V2);
    assert_eq!(plan(V2Mode::Off, v2_flag), V1);
    // A cached v1-only address: v1, except in Only mode.
    let mut cfg = config();
    cfg.v1_only_cache.insert(addr(7));
    for (mode, expected) in [
        (V2Mode::IfAdvertised, V1),
        (V2Mode::Always, V1),
        (V2Mode::Only, V2),
    ] {
        cfg.v2 = mode;
        let (a, _b) = tokio::io::duplex(64);
        let peer = Peer::outbound_with_services(a, addr(7), cfg.clone(), ServiceFlags::P2P_V2);
        assert_eq!(peer.planned_transport(), Some(expected), "{mode:?}");
    }
    // Forcing a transport ignores mode and cache.
    let (a, _b) = tokio::io::duplex(64);
    cfg.v2 = V2Mode::Off;
    let forced = Peer::outbound_with_transport(a, addr(7), cfg.clone(), V2);
    assert_eq!(forced.planned_transport(), Some(V2));
    // Advertising: bit 11 only when v2 is enabled.
    assert!(!cfg.advertised_services().has(ServiceFlags::P2P_V2));
    cfg.v2 = V2Mode::IfAdvertised;
    assert!(cfg.advertised_services().has(ServiceFlags::P2P_V2));
}

#[tokio::test]
async fn v2_off_responder_does_not_advertise_and_if_advertised_initiator_dials_v2_when_told() {
    // An outbound peer told the remote advertises NODE_P2P_V2 uses v2 against a default inbound.
    let (a, b) = tokio::io::duplex(DUPLEX);
    let cancel = CancellationToken::new();
    let out = Peer::outbound_with_services(a, addr(3), config(), ServiceFlags::P2P_V2);
    let inb = Peer::inbound(b, addr(4), config());
    let (out, inb) = tokio::join!(
        out.handshake(&cancel, accept),
        inb.handshake(&cancel, accept)
    );
    assert_eq!(
        out.unwrap().negotiated().transport.kind(),
        TransportKind::V2
    );
    drop(inb);
    // A V2Mode::Off peer does not advertise bit 11.
    let (a, b) = tokio::io::duplex(DUPLEX);
    let mut off = config();
    off.v2 = V2Mode::Off;
    let (out, inb) = pair(a, b, TransportKind::V1, off, config()).await;
    assert!(!inb.unwrap().negotiated().services.has(ServiceFlags::P2P_V2));
    assert!(out.unwrap().negotiated().services.has(ServiceFlags::P2P_V2));
}

#[tokio::test]
async fn v2_only_refuses_v1_in_both_directions() {
    // Inbound: a v1 initiator is refused.
    let (a, b) = tokio::io::duplex(DUPLEX);
    let mut only = config();
    only.v2 = V2Mode::Only;
    let (out, inb) = pair(a, b, TransportKind::V1, config(), only.clone()).await;
    assert!(matches!(inb.unwrap_err(), HandshakeError::V1NotAllowed));
    assert!(out.is_err());
    // Outbound to a v1-only node: an error, but not the fallback hint, and nothing cached.
    let (a, b) = tokio::io::duplex(DUPLEX);
    let mut v1 = config();
    v1.v2 = V2Mode::Off;
    let (out, _inb) = pair(a, b, TransportKind::V2, only.clone(), v1).await;
    let err = out.unwrap_err();
    assert!(!err.retry_v1(), "{err:?}");
    assert!(matches!(err, HandshakeError::Io(_)), "{err:?}");
    assert!(only.v1_only_cache.is_empty());
}

#[tokio::test(start_paused = true)]
async fn v2_handshake_timeout_gives_the_hint_only_when_nothing_was_received() {
    // Silent remote: the v2 deadline (10 s by default) gives the hint.
    let (a, _silent) = tokio::io::duplex(DUPLEX);
    let cfg = config();
    let started = tokio::time::Instant::now();
    let err = Peer::outbound_with_transport(a, addr(5), cfg.clone(), TransportKind::V2)
        .handshake(&CancellationToken::new(), accept)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            HandshakeError::V2RetryV1 {
                reason: RetryV1Reason::Timeout
            }
        ),
        "{err:?}"
    );
    assert_eq!(started.elapsed(), Duration::from_secs(10));
    assert!(cfg.v1_only_cache.contains(addr(5)));

    // The remote sent a few bytes, then nothing: a plain timeout of the v2 deadline.
    let (a, mut b) = tokio::io::duplex(DUPLEX);
    tokio::io::AsyncWriteExt::write_all(&mut b, &[1, 2, 3, 4, 5])
        .await
        .unwrap();
    let cfg = config();
    let started = tokio::time::Instant::now();
    let err = Peer::outbound_with_transport(a, addr(6), cfg.clone(), TransportKind::V2)
        .handshake(&CancellationToken::new(), accept)
        .await
        .unwrap_err();
    assert!(
        matches!(err, HandshakeError::Timeout { after } if after == Duration::from_secs(10)),
        "{err:?}"
    );
    assert_eq!(started.elapsed(), Duration::from_secs(10));
    assert!(cfg.v1_only_cache.is_empty());

    // A whole-handshake deadline shorter than the v2 one ends the attempt first: still a hint.
    let (a, _silent) = tokio::io::duplex(DUPLEX);
    let mut cfg = config();
    cfg.handshake_timeout = Duration::from_secs(4);
    let started = tokio::time::Instant::now();
    let err = Peer::outbound_with_transport(a, addr(7), cfg, TransportKind::V2)
        .handshake(&CancellationToken::new(), accept)
        .await
        .unwrap_err();
    assert!(err.retry_v1(), "{err:?}");
    assert_eq!(started.elapsed(), Duration::from_secs(4));

    // Inbound: a v2 initiator that sends its key and stalls hits the v2 deadline (3 s here).
    let (a, mut b) = tokio::io::duplex(DUPLEX);
    tokio::io::AsyncWriteExt::write_all(&mut b, &[0x42; 64])
        .await
        .unwrap();
    let mut cfg = config();
    cfg.v2_handshake_timeout = Duration::from_secs(3);
    let started = tokio::time::Instant::now();
    let err = Peer::inbound(a, addr(8), cfg)
        .handshake(&CancellationToken::new(), accept)
        .await
        .unwrap_err();
    assert!(
        matches!(err, HandshakeError::Timeout { after } if after == Duration::from_secs(3)),
        "{err:?}"
    );
    assert_eq!(started.elapsed(), Duration::from_secs(3));
}

#[tokio::test]
async fn decoys_are_sent_when_configured_and_ignored_on_receipt() {
    let (a, b) = tokio::io::duplex(DUPLEX);
    let (a, b) = (Counted::new(a), Counted::new(b));
    let (aw, bw) = (a.written.clone(), b.written.clone());
    let decoys = || {
        // Separate configs: clones would share the nonce cache (a self-connection).
        let mut cfg = config();
        cfg.v2_decoys = true;
        cfg
    };
    let (out, inb) = pair(a, b, TransportKind::V2, decoys(), decoys()).await;
    let (ha, mut rxa, run_a) = run_forwarding(out.unwrap());
    let (hb, mut rxb, run_b) = run_forwarding(inb.unwrap());
    for i in 0..300 {
        // One at a time, so each is its own write batch (a chance for a decoy each).
        ha.send_and_wait(nth_message(i)).await.unwrap();
        hb.send_and_wait(nth_message(i)).await.unwrap();
    }
    for i in 0..300 {
        assert_eq!(next_non_ping(&mut rxb).await, nth_message(i));
        assert_eq!(next_non_ping(&mut rxa).await, nth_message(i));
    }
    assert_wire_bytes(&ha, &hb, &aw, &bw).await;
    // Decoys are bytes on the wire that belong to no command.
    let s = ha.stats();
    let per_command: u64 = s.bytes_sent_per_command.values().sum();
    assert!(
        s.bytes_sent > per_command + 64,
        "{} vs {}",
        s.bytes_sent,
        per_command
    );
    ha.disconnect();
    run_a.await.unwrap();
    run_b.await.unwrap();
}

#[tokio::test]
async fn raw_v2_remote_interoperates_with_our_responder_and_initiator() {
    // Our inbound peer against a scripted initiator with maximal garbage and decoys.
    let (a, b) = tokio::io::duplex(DUPLEX);
    let ours = tokio::spawn(Peer::inbound(a, addr(9), config()).handshake_owned());
    let mut remote = RawV2::initiate(
        b,
        Misbehave {
            garbage: vec![0xee; 4095],
            decoys: vec![vec![1; 10], vec![]],
            ..Misbehave::default()
        },
    )
    .await
    .unwrap_or_else(|_| panic!("honest"));
    remote.handshake_messages(true).await;
    let peer = ours.await.unwrap().unwrap();
    assert_eq!(session(&peer.negotiated().transport), remote.session_id);
    // Unknown short ids and decoys from the remote are skipped; a ping is still answered.
    let decoy = remote.seal(b"ignored", true);
    remote.send_raw(&decoy).await;
    let (handle, mut rx, run) = run_forwarding(peer);
    remote.send(&NetworkMessage::Ping(99)).await;
    assert_eq!(rx.recv().await.unwrap(), NetworkMessage::Ping(99));
    loop {
        if let NetworkMessage::Pong(99) = remote.recv().await.unwrap() {
            break;
        }
    }
    handle.disconnect();
    run.await.unwrap();

    // Our outbound peer against a scripted responder.
    let (a, b) = tokio::io::duplex(DUPLEX);
    let ours = tokio::spawn(
        Peer::outbound_with_transport(a, addr(10), config(), TransportKind::V2).handshake_owned(),
    );
    let mut remote = RawV2::respond(b).await;
    remote.handshake_messages(false).await;
    let peer = ours.await.unwrap().unwrap();
    assert_eq!(session(&peer.negotiated().transport), remote.session_id);
}

/// `handshake` with an owned cancellation token, for spawning.
trait HandshakeOwned<S> {
    fn handshake_owned(
        self,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<HandshakedPeer<S>, HandshakeError>> + Send>,
    >;
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> HandshakeOwned<S> for Peer<S> {
    fn handshake_owned(
        self,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<HandshakedPeer<S>, HandshakeError>> + Send>,
    > {
        Box::pin(async move { self.handshake(&CancellationToken::new(), accept).await })
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Every packet (handshake included) reaches the other side split at arbitrary byte
    /// boundaries, and reads are just as arbitrary; messages still arrive whole and in order.
    #[test]
    fn messages_split_at_arbitrary_boundaries(
        out_sizes in proptest::collection::vec(1usize..200, 1..16),
        in_sizes in proptest::collection::vec(1usize..200, 1..16),
        payloads in proptest::collection::vec(0usize..3000, 1..12),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            let (a, b) = tokio::io::duplex(DUPLEX);
            let a = Chunked::new(a, out_sizes);
            let b = Chunked::new(b, in_sizes);
            let (out, inb) = pair(a, b, TransportKind::V2, config(), config()).await;
            let (ha, mut rxa, run_a) = run_forwarding(out.unwrap());
            let (hb, mut rxb, run_b) = run_forwarding(inb.unwrap());
            let messages: Vec<NetworkMessage> = payloads
                .iter()
                .enumerate()
                .map(|(i, &n)| if i % 2 == 0 {
                    unknown("split", vec![i as u8; n])
                } else {
                    NetworkMessage::Inv(vec![Inventory::Block(bitcoin::BlockHash::from_byte_array([n as u8; 32])); n % 40])
                })
                .collect();
            for m in &messages {
                ha.send(m.clone()).unwrap();
                hb.send(m.clone()).unwrap();
            }
            for m in &messages {
                assert_eq!(&next_non_ping(&mut rxb).await, m);
                assert_eq!(&next_non_ping(&mut rxa).await, m);
            }
            ha.disconnect();
            run_a.await.unwrap();
            run_b.await.unwrap();
        });
    }
}
