//! Raw frames (issue 14, item 5): a hook that sees every frame read (command, payload as
//! `Bytes`, checksum, decode outcome, dropped frames included) and a send path for
//! pre-encoded payloads, framed by the writer for v1 or v2 and counted in stats.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bitcoin::p2p::message::{CommandString, NetworkMessage};
use bitcoin::Network;
use bytes::Bytes;
use common::*;
use tokio::io::AsyncReadExt;
use tokio_util::sync::CancellationToken;
use verack::peer::{
    FrameOutcome, IgnoreMessages, MessageHooks, Peer, PeerId, RawFrame, SendError, TransportKind,
};
use verack::wire::{DecodeError, RawMessage, V2Error};

/// What the hook saw of one frame.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    command: String,
    payload: Bytes,
    checksum: Option<[u8; 4]>,
    wire_len: usize,
    transport: TransportKind,
    /// "decoded:<command>" or "dropped:<error kind>".
    outcome: String,
    forward: Option<RawMessage>,
}

#[derive(Default)]
struct Recorder(Mutex<Vec<Seen>>);

impl MessageHooks for Recorder {
    fn frame_read(&self, _peer: PeerId, _remote: SocketAddr, frame: &RawFrame<'_>) {
        let outcome = match frame.outcome {
            FrameOutcome::Decoded(m) => format!("decoded:{}", m.command()),
            FrameOutcome::Dropped(DecodeError::BadChecksum { .. }) => "dropped:checksum".into(),
            FrameOutcome::Dropped(DecodeError::Undecodable { .. }) => "dropped:undecodable".into(),
            FrameOutcome::Dropped(DecodeError::V2(V2Error::UnknownShortId { .. })) => {
                "dropped:short-id".into()
            }
            FrameOutcome::Dropped(e) => format!("dropped:{e}"),
            _ => "other".into(),
        };
        self.0.lock().unwrap().push(Seen {
            command: frame.command.to_string(),
            payload: frame.payload.clone(),
            checksum: frame.checksum,
            wire_len: frame.wire_len,
            transport: frame.transport,
            outcome,
            forward: frame.to_raw_message(),
        });
    }
}

impl Recorder {
    fn seen(&self) -> Vec<Seen> {
        self.0.lock().unwrap().clone()
    }
}

/// A v1 frame with `checksum` (the right one when `None`).
fn v1_frame(command: &str, payload: &[u8], checksum: Option<[u8; 4]>) -> Vec<u8> {
    let mut f = Network::Regtest.magic().to_bytes().to_vec();
    let mut name = [0u8; 12];
    name[..command.len()].copy_from_slice(command.as_bytes());
    f.extend_from_slice(&name);
    f.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    f.extend_from_slice(&checksum.unwrap_or_else(|| RawMessage::checksum_of(payload)));
    f.extend_from_slice(payload);
    f
}

fn command(name: &'static str) -> CommandString {
    CommandString::try_from_static(name).unwrap()
}

async fn read_exact(remote: &mut Script, n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    tokio::time::timeout(Duration::from_secs(5), remote.stream.read_exact(&mut buf))
        .await
        .expect("in time")
        .expect("bytes");
    buf
}

#[tokio::test(start_paused = true)]
async fn hook_sees_every_v1_frame_with_its_outcome_including_dropped_ones() {
    let recorder = Arc::new(Recorder::default());
    let mut cfg = config();
    cfg.hooks = Some(recorder.clone());
    let (peer, mut remote) = handshaked_with_script(cfg, 70016, true, vec![], DUPLEX_BUFFER).await;
    let (handle, run) = spawn_run(peer, IgnoreMessages);
    let handshake = recorder.seen().len();
    let ping = 7u64.to_le_bytes();
    remote
        .send_raw(&v1_frame("ping", &ping, Some([1, 2, 3, 4])))
        .await;
    remote.send_raw(&v1_frame("ping", &[1, 2, 3], None)).await;
    remote.send_raw(&v1_frame("xyzzy", b"hello", None)).await;
    remote.send_raw(&v1_frame("ping", &ping, None)).await;
    // The good ping is answered: the dropped frames did not end the connection.
    assert_eq!(
        remote.recv_skip_pings_answering_none().await,
        NetworkMessage::Pong(7)
    );
    let seen = recorder.seen();
    let hs: Vec<&str> = seen[..handshake]
        .iter()
        .map(|s| s.outcome.as_str())
        .collect();
    assert_eq!(
        hs,
        ["decoded:version", "decoded:verack"],
        "handshake frames too"
    );
    let after = &seen[handshake..handshake + 4];
    let outcomes: Vec<&str> = after.iter().map(|s| s.outcome.as_str()).collect();
    assert_eq!(
        outcomes,
        [
            "dropped:checksum",
            "dropped:undecodable",
            "decoded:xyzzy",
            "decoded:ping"
        ]
    );
    assert_eq!(after[0].command, "ping");
    assert_eq!(after[0].payload, Bytes::copy_from_slice(&ping));
    assert_eq!(after[0].checksum, Some([1, 2, 3, 4]), "as sent");
    assert_eq!(after[0].wire_len, 32);
    assert_eq!(after[1].payload, Bytes::from_static(&[1, 2, 3]));
    assert_eq!(after[2].command, "xyzzy");
    assert_eq!(after[2].payload, Bytes::from_static(b"hello"));
    assert_eq!(after[2].checksum, Some(RawMessage::checksum_of(b"hello")));
    assert!(after.iter().all(|s| s.transport == TransportKind::V1));
    // Both dropped frames counted under *other*, as Core.
    assert_eq!(
        handle.stats().bytes_received_per_command[verack::peer::OTHER_COMMAND],
        32 + 27 + 29
    );
    handle.disconnect();
    run.await.unwrap();
}

/// The remote's next message other than a ping, without answering pings.
trait NextNonPing {
    async fn recv_skip_pings_answering_none(&mut self) -> NetworkMessage;
}

impl NextNonPing for Script {
    async fn recv_skip_pings_answering_none(&mut self) -> NetworkMessage {
        loop {
            match self.recv().await.expect("open") {
                NetworkMessage::Ping(_) => {}
                other => return other,
            }
        }
    }
}

#[tokio::test(start_paused = true)]
async fn send_raw_frames_v1_with_the_given_or_computed_checksum() {
    let (peer, mut remote) =
        handshaked_with_script(config(), 70016, true, vec![], DUPLEX_BUFFER).await;
    // Not run yet: queued frames wait, so nothing else (pings) comes between them.
    let handle = peer.handle();
    let payload = Bytes::from_static(b"payload bytes");
    handle
        .send_raw(&RawMessage::new(command("xyzzy"), payload.clone()))
        .unwrap();
    // A given checksum is trusted, not recomputed (a wrong one goes out as is).
    let sent = handle
        .send_raw_notify(&RawMessage::with_checksum(
            command("xyzzy"),
            payload.clone(),
            [9, 9, 9, 9],
        ))
        .unwrap();
    let (handle, run) = spawn_run(peer, IgnoreMessages);
    let len = 24 + payload.len();
    assert_eq!(
        read_exact(&mut remote, len).await,
        v1_frame("xyzzy", &payload, None)
    );
    assert_eq!(
        read_exact(&mut remote, len).await,
        v1_frame("xyzzy", &payload, Some([9, 9, 9, 9]))
    );
    sent.await.expect("written");
    let stats = handle.stats();
    assert_eq!(
        stats.bytes_sent_per_command[verack::peer::OTHER_COMMAND],
        2 * len as u64
    );
    // Handshake messages and oversize payloads are refused.
    assert!(matches!(
        handle.send_raw(&RawMessage::new(command("verack"), Bytes::new())),
        Err(SendError::HandshakeMessage { .. })
    ));
    assert!(matches!(
        handle.send_raw(&RawMessage::new(command("big"), vec![0u8; 4_000_001])),
        Err(SendError::Oversize(_))
    ));
    handle.disconnect();
    run.await.unwrap();
}

/// A frame read is forwarded unchanged with `RawFrame::to_raw_message` + `send_raw`: the bytes
/// that come back are the bytes sent, checksum included (a wrong checksum is not "repaired").
#[tokio::test(start_paused = true)]
async fn a_received_frame_is_forwarded_byte_for_byte() {
    let recorder = Arc::new(Recorder::default());
    let mut cfg = config();
    cfg.hooks = Some(recorder.clone());
    let (peer, mut remote) = handshaked_with_script(cfg, 70016, true, vec![], DUPLEX_BUFFER).await;
    let handle = peer.handle();
    let (handle2, run) = spawn_run(peer, IgnoreMessages);
    let block_like = vec![0xabu8; 100_000];
    let original = v1_frame("block", &block_like, None);
    remote.send_raw(&original).await;
    // Wait until the hook saw it (an undecodable `block`: dropped, but forwardable).
    let seen = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Some(s) = recorder.seen().into_iter().find(|s| s.command == "block") {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap();
    assert_eq!(seen.outcome, "dropped:undecodable");
    let forward = seen.forward.expect("forwardable");
    assert_eq!(forward.checksum, Some(RawMessage::checksum_of(&block_like)));
    handle.send_raw(&forward).unwrap();
    let mut back = Vec::new();
    while back.len() < original.len() {
        let chunk = read_exact(&mut remote, 24).await;
        let len = u32::from_le_bytes(chunk[16..20].try_into().unwrap()) as usize;
        let payload = read_exact(&mut remote, len).await;
        if &chunk[4..8] == b"ping" {
            continue;
        }
        back = [chunk, payload].concat();
    }
    assert_eq!(back, original);
    handle2.disconnect();
    run.await.unwrap();
}

/// Over v2: the writer seals raw messages in v2 packets, and the hook sees them (no checksum).
#[tokio::test(start_paused = true)]
async fn raw_frames_over_v2_between_library_peers() {
    let recorder = Arc::new(Recorder::default());
    let mut in_cfg = config();
    in_cfg.hooks = Some(recorder.clone());
    let (a, b) = tokio::io::duplex(DUPLEX_BUFFER);
    let cancel = CancellationToken::new();
    let (out, inb) = tokio::join!(
        Peer::outbound_with_transport(a, addr(18444), config(), TransportKind::V2)
            .handshake(&cancel, accept),
        Peer::inbound(b, addr(50000), in_cfg).handshake(&cancel, accept)
    );
    let (out, inb) = (out.unwrap(), inb.unwrap());
    assert_eq!(out.negotiated().transport.kind(), TransportKind::V2);
    let (ha, run_a) = spawn_run(out, IgnoreMessages);
    let (hb, run_b) = spawn_run(inb, IgnoreMessages);
    // A short-id command (`ping`, id 18) and a long one.
    ha.send_raw_notify(&RawMessage::new(
        command("ping"),
        5u64.to_le_bytes().to_vec(),
    ))
    .unwrap()
    .await
    .unwrap();
    ha.send_raw_notify(&RawMessage::with_checksum(
        command("xyzzy"),
        Bytes::from_static(b"v2!"),
        [0; 4],
    ))
    .unwrap()
    .await
    .unwrap();
    let seen = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let s = recorder.seen();
            if s.iter().any(|s| s.command == "xyzzy") {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap();
    let ping = seen
        .iter()
        .find(|s| s.outcome == "decoded:ping" && s.payload[..] == 5u64.to_le_bytes())
        .expect("raw ping decoded by the remote");
    assert_eq!(ping.wire_len, 20 + 1 + 8, "short id: 1-byte type");
    let x = seen.iter().find(|s| s.command == "xyzzy").unwrap();
    assert_eq!(x.payload, Bytes::from_static(b"v2!"));
    assert_eq!(x.checksum, None);
    assert_eq!(x.transport, TransportKind::V2);
    assert_eq!(x.wire_len, 20 + 13 + 3);
    assert_eq!(x.outcome, "decoded:xyzzy");
    ha.disconnect();
    hb.disconnect();
    run_a.await.unwrap();
    run_b.await.unwrap();
}
