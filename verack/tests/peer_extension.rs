//! Handshake extension (issue 14, item 4): our extra negotiation messages go out before our
//! `verack`; every message of unknown type the remote sends before its `verack` lands in
//! `Negotiated::extra_messages`; a late `sendtxrcncl` follows Core's rule for our side.

mod common;

use std::sync::Arc;
use std::time::Duration;

use bitcoin::p2p::message::{CommandString, NetworkMessage};
use bitcoin::p2p::message_network::VersionMessage;
use common::*;
use tokio_util::sync::CancellationToken;
use verack::peer::{
    Direction, DisconnectReason, Feature, IgnoreMessages, NegotiationFn, Peer, TxReconciliation,
    Violation, MAX_EXTRA_MESSAGES,
};

fn unknown(command: &'static str, payload: Vec<u8>) -> NetworkMessage {
    NetworkMessage::Unknown {
        command: CommandString::try_from_static(command).unwrap(),
        payload,
    }
}

fn sendtxrcncl(salt: u64) -> NetworkMessage {
    let mut p = 1u32.to_le_bytes().to_vec();
    p.extend_from_slice(&salt.to_le_bytes());
    unknown("sendtxrcncl", p)
}

fn feature() -> NetworkMessage {
    let f = Feature {
        id: b"verack/test-feature".to_vec(),
        data: vec![7, 8, 9],
    };
    unknown("feature", f.encode())
}

/// The extension a test configures: sendtxrcncl, a BIP434 feature (only at 70017+, as BIP434
/// asks) and a message of a made-up type.
fn extension() -> NegotiationFn {
    Arc::new(|_remote: &VersionMessage, version: u32| {
        let mut msgs = vec![sendtxrcncl(0x0102_0304_0506_0708)];
        if version >= 70017 {
            msgs.push(feature());
        }
        msgs.push(unknown("xyzzy", vec![1, 2, 3]));
        // Handshake messages are never sent by the extension.
        msgs.push(NetworkMessage::Verack);
        msgs
    })
}

fn expected_extra() -> Vec<NetworkMessage> {
    vec![
        sendtxrcncl(0x0102_0304_0506_0708),
        feature(),
        unknown("xyzzy", vec![1, 2, 3]),
    ]
}

#[tokio::test(start_paused = true)]
async fn extra_messages_reach_the_other_library_peer_in_both_directions() {
    for extended in [Direction::Outbound, Direction::Inbound] {
        let (mut out_cfg, mut in_cfg) = (config(), config());
        match extended {
            Direction::Outbound => out_cfg.negotiation = Some(extension()),
            Direction::Inbound => in_cfg.negotiation = Some(extension()),
        }
        let (out, inb) = connected_pair(out_cfg, in_cfg).await;
        let (out, inb) = (out.unwrap(), inb.unwrap());
        let (ours, theirs) = match extended {
            Direction::Outbound => (&out, &inb),
            Direction::Inbound => (&inb, &out),
        };
        assert_eq!(
            ours.negotiated().local_extra_messages,
            expected_extra(),
            "{extended:?}"
        );
        assert!(ours.negotiated().extra_messages.is_empty());
        let n = theirs.negotiated();
        assert_eq!(n.extra_messages, expected_extra(), "{extended:?}");
        assert!(n.local_extra_messages.is_empty());
        assert_eq!(
            n.features.tx_reconciliation,
            Some(TxReconciliation {
                version: 1,
                salt: 0x0102_0304_0506_0708
            })
        );
        assert_eq!(n.features.features.len(), 1);
        assert_eq!(n.features.features[0].id, b"verack/test-feature");
        // Counted: version, wtxidrelay, sendaddrv2, 3 extra, verack.
        assert_eq!(ours.handle().stats().messages_sent, 7);
        assert_eq!(theirs.handle().stats().messages_received, 7);
        let sent = ours.handle().stats().bytes_sent_per_command;
        assert_eq!(sent["sendtxrcncl"], 36);
        assert_eq!(
            sent[verack::peer::OTHER_COMMAND],
            27,
            "xyzzy, as Core's *other*"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn extra_messages_go_after_negotiation_and_before_our_verack() {
    let (ours, theirs) = tokio::io::duplex(DUPLEX_BUFFER);
    let mut cfg = config();
    cfg.negotiation = Some(extension());
    let peer = tokio::spawn(async move {
        Peer::outbound(ours, addr(1), cfg)
            .handshake(&CancellationToken::new(), accept)
            .await
    });
    let mut remote = Script::new(theirs);
    remote.expect_command("version").await;
    // A 70016 remote: the extension leaves BIP434's feature out.
    remote.send(remote_version(70016, 99)).await;
    remote.send(NetworkMessage::Verack).await;
    for command in ["wtxidrelay", "sendaddrv2", "sendtxrcncl", "xyzzy", "verack"] {
        remote.expect_command(command).await;
    }
    let peer = peer.await.unwrap().unwrap();
    assert_eq!(peer.negotiated().protocol_version, 70016);
    assert_eq!(peer.negotiated().local_extra_messages.len(), 2);
}

#[tokio::test(start_paused = true)]
async fn unknown_messages_before_verack_are_kept_up_to_the_bound() {
    let (ours, theirs) = tokio::io::duplex(DUPLEX_BUFFER);
    let peer = tokio::spawn(async move {
        Peer::inbound(ours, addr(1), config())
            .handshake(&CancellationToken::new(), accept)
            .await
    });
    let mut remote = Script::new(theirs);
    remote.send(remote_version(70017, 99)).await;
    for i in 0..MAX_EXTRA_MESSAGES + 8 {
        remote.send(unknown("futureext", vec![i as u8])).await;
    }
    remote.send(NetworkMessage::Verack).await;
    let peer = peer.await.unwrap().expect("unknown messages never fail it");
    let extra = &peer.negotiated().extra_messages;
    assert_eq!(extra.len(), MAX_EXTRA_MESSAGES);
    assert_eq!(extra[5], unknown("futureext", vec![5]));
}

/// A late `sendtxrcncl` disconnects only when we offered BIP330 ourselves (Core with
/// `-txreconciliation`); otherwise it is ignored (Core without it).
#[tokio::test(start_paused = true)]
async fn late_sendtxrcncl_follows_cores_rule_for_our_side() {
    for offered in [false, true] {
        let (ours, theirs) = tokio::io::duplex(DUPLEX_BUFFER);
        let mut cfg = config();
        if offered {
            cfg.negotiation = Some(extension());
        }
        let peer = tokio::spawn(async move {
            Peer::inbound(ours, addr(1), cfg)
                .handshake(&CancellationToken::new(), accept)
                .await
        });
        let mut remote = Script::new(theirs);
        remote.send(remote_version(70017, 99)).await;
        remote.send(NetworkMessage::Verack).await;
        let peer = peer.await.unwrap().unwrap();
        let (handle, run) = spawn_run(peer, IgnoreMessages);
        remote.send(sendtxrcncl(5)).await;
        remote.send(NetworkMessage::Ping(42)).await;
        if offered {
            let reason = tokio::time::timeout(Duration::from_secs(5), run)
                .await
                .unwrap()
                .unwrap();
            assert!(
                matches!(
                    &reason,
                    DisconnectReason::ProtocolViolation(Violation::LateNegotiation { command })
                        if command == "sendtxrcncl"
                ),
                "{reason:?}"
            );
        } else {
            // Still running: the ping after it is answered.
            loop {
                if let NetworkMessage::Pong(n) = remote.recv().await.expect("open") {
                    assert_eq!(n, 42);
                    break;
                }
            }
            assert!(!handle.is_disconnected());
            handle.disconnect();
            run.await.unwrap();
        }
    }
}

/// Tells the test when a `pong` arrives.
struct Pongs(tokio::sync::mpsc::UnboundedSender<u64>);

impl verack::peer::MessageHandler for Pongs {
    async fn on_pong(&mut self, _peer: &verack::peer::PeerHandle, nonce: u64) {
        let _ = self.0.send(nonce);
    }
}

/// Against Bitcoin Core run with `-txreconciliation=1`: we offer `sendtxrcncl` and a BIP434
/// `feature` before our verack; Core keeps the connection (it accepts both before verack) and
/// its own `sendtxrcncl` reaches `Negotiated::extra_messages`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bitcoin_core_accepts_our_extension_and_sends_its_own() {
    let core =
        verack_testkit::BitcoinCore::start_with(&["-txreconciliation=1", "-debug=net"]).await;
    let stream = tokio::net::TcpStream::connect(core.p2p).await.unwrap();
    let mut cfg = config();
    cfg.negotiation = Some(Arc::new(|_: &VersionMessage, version: u32| {
        let mut msgs = vec![sendtxrcncl(77)];
        if version >= 70017 {
            msgs.push(feature());
        }
        msgs
    }));
    let peer = tokio::time::timeout(
        Duration::from_secs(30),
        Peer::outbound(stream, core.p2p, cfg).handshake(&CancellationToken::new(), accept),
    )
    .await
    .expect("handshake in time")
    .expect("Core accepts the extension");
    let n = peer.negotiated().clone();
    assert_eq!(n.protocol_version, 70017, "Core speaks BIP434");
    let theirs: Vec<String> = n
        .extra_messages
        .iter()
        .map(|m| m.command().to_string())
        .collect();
    assert!(
        theirs.iter().any(|c| c == "sendtxrcncl"),
        "Core sent {theirs:?}"
    );
    assert!(matches!(
        n.features.tx_reconciliation,
        Some(TxReconciliation { version: 1, .. })
    ));
    let (pongs_tx, mut pongs) = tokio::sync::mpsc::unbounded_channel();
    let handle = peer.handle();
    let run = tokio::spawn(peer.run(Pongs(pongs_tx), CancellationToken::new()));
    // Core finished its side of the handshake and still holds the connection after a round
    // trip (its ping answered by us, ours by it).
    core.wait_for_peer("our extended peer", Duration::from_secs(20), |p| {
        verack_testkit::BitcoinCore::handshaked(p)
            && p["bytesrecv_per_msg"]["sendtxrcncl"].as_u64() == Some(36)
            && p["bytesrecv_per_msg"]["feature"].as_u64().is_some()
    })
    .await;
    handle.send(NetworkMessage::Ping(7)).expect("queued");
    let answered = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(nonce) = pongs.recv().await {
            if nonce == 7 {
                return true;
            }
        }
        false
    })
    .await;
    assert_eq!(
        answered,
        Ok(true),
        "Core answers our ping after the extension"
    );
    assert!(
        !handle.is_disconnected(),
        "{:?}",
        handle.disconnect_reason()
    );
    handle.disconnect();
    run.await.unwrap();
}
