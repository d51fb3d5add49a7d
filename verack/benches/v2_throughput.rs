//! v2 (BIP324) vs v1 throughput over loopback TCP, for 1 MB and ~100-byte messages, plus the
//! in-memory cost of the framing alone (v1: double-SHA256 checksum; v2: ChaCha20-Poly1305).
//!
//! Run: `cargo bench -p verack --bench v2_throughput` (plain `main`, no harness; prints a
//! table). `V2_BENCH_SCALE=0.1` shortens it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bitcoin::hashes::Hash;
use bitcoin::p2p::message::{CommandString, NetworkMessage};
use bitcoin::p2p::message_blockdata::Inventory;
use bitcoin::{Network, Txid};
use bytes::BytesMut;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio_util::codec::Decoder;
use tokio_util::sync::CancellationToken;
use verack::peer::{BoxError, MessageHandler, Peer, PeerConfig, PeerHandle, TransportKind};
use verack::transport::{encode_contents, PacketDecoder, PacketEncoder};
use verack::wire::{encode_frame, V1Codec};

struct Count {
    received: Arc<AtomicU64>,
    target: u64,
    done: Arc<Notify>,
}

impl MessageHandler for Count {
    async fn on_message(&mut self, _peer: &PeerHandle, message: NetworkMessage) {
        if matches!(
            message,
            NetworkMessage::Unknown { .. } | NetworkMessage::Inv(_)
        ) && self.received.fetch_add(1, Ordering::Relaxed) + 1 == self.target
        {
            self.done.notify_one();
        }
    }
}

fn config() -> PeerConfig {
    let mut cfg = PeerConfig::new(Network::Regtest);
    cfg.send_queue_limit = 2 << 30;
    cfg
}

fn accept(_: &bitcoin::p2p::message_network::VersionMessage) -> Result<(), BoxError> {
    Ok(())
}

/// Sends `count` copies of `msg` from one peer to the other over loopback; returns the time
/// until the last one was handled and the bytes the receiver counted on the wire.
async fn run(kind: TransportKind, msg: NetworkMessage, count: u64) -> (Duration, u64) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let local = listener.local_addr().unwrap();
    let (a, b) = tokio::join!(TcpStream::connect(local), listener.accept());
    let (a, (b, from)) = (a.unwrap(), b.unwrap());
    a.set_nodelay(true).unwrap();
    b.set_nodelay(true).unwrap();
    let cancel = CancellationToken::new();
    let out = Peer::outbound_with_transport(a, local, config(), kind);
    let inb = Peer::inbound(b, from, config());
    let (out, inb) = tokio::join!(
        out.handshake(&cancel, accept),
        inb.handshake(&cancel, accept)
    );
    let (out, inb) = (out.unwrap(), inb.unwrap());
    assert_eq!(inb.negotiated().transport.kind(), kind);
    let done = Arc::new(Notify::new());
    let received = Arc::new(AtomicU64::new(0));
    let receiver = inb.handle();
    let sender = out.handle();
    let run_in = tokio::spawn(inb.run(
        Count {
            received,
            target: count,
            done: done.clone(),
        },
        cancel.clone(),
    ));
    let run_out = tokio::spawn(out.run(verack::peer::IgnoreMessages, cancel.clone()));
    let before = receiver.stats().bytes_received;
    let started = Instant::now();
    for _ in 0..count {
        sender.send(msg.clone()).unwrap();
    }
    done.notified().await;
    let elapsed = started.elapsed();
    let bytes = receiver.stats().bytes_received - before;
    cancel.cancel();
    let _ = run_in.await;
    let _ = run_out.await;
    (elapsed, bytes)
}

fn framing_only(msg: &NetworkMessage, count: u64) -> (Duration, Duration) {
    let magic = Network::Regtest.magic();
    let started = Instant::now();
    let mut codec = V1Codec::new(magic);
    for _ in 0..count {
        let frame = encode_frame(magic, msg).unwrap();
        let mut buf = BytesMut::from(&frame[..]);
        codec.decode(&mut buf).unwrap().unwrap();
    }
    let v1 = started.elapsed();

    // A session pair from the crate's handshake, in memory.
    let (inbound, outbound) = session_pair();
    let mut encoder = PacketEncoder::new(outbound);
    let mut decoder = PacketDecoder::new(inbound);
    let started = Instant::now();
    let mut buf = BytesMut::new();
    for _ in 0..count {
        let contents = encode_contents(msg).unwrap();
        encoder.encode_into(&contents, false, &mut buf);
        decoder.decode(&mut buf).unwrap().unwrap();
    }
    (v1, started.elapsed())
}

fn session_pair() -> (bip324::InboundCipher, bip324::OutboundCipher) {
    use bip324::{GarbageResult, Handshake, Initialized, ReceivedKey, Role, VersionResult};
    let magic = Network::Regtest.magic().to_bytes();
    let mut ka = [0u8; 64];
    let mut kb = [0u8; 64];
    let a = Handshake::<Initialized>::new(magic, Role::Initiator)
        .unwrap()
        .send_key(None, &mut ka)
        .unwrap();
    let b = Handshake::<Initialized>::new(magic, Role::Responder)
        .unwrap()
        .send_key(None, &mut kb)
        .unwrap();
    let a = a.receive_key(kb).unwrap();
    let b = b.receive_key(ka).unwrap();
    let mut va = vec![0u8; Handshake::<ReceivedKey>::send_version_len(None)];
    let mut vb = vec![0u8; Handshake::<ReceivedKey>::send_version_len(None)];
    let a = a.send_version(&mut va, None).unwrap();
    let b = b.send_version(&mut vb, None).unwrap();
    let finish = |sent: Handshake<bip324::SentVersion>, input: Vec<u8>| {
        let Ok(GarbageResult::FoundGarbage {
            mut handshake,
            consumed_bytes,
        }) = sent.receive_garbage(&input)
        else {
            panic!("terminator")
        };
        let mut rest = input[consumed_bytes..].to_vec();
        let len = handshake
            .decrypt_packet_len(rest[..3].try_into().unwrap())
            .unwrap();
        match handshake.receive_version(&mut rest[3..3 + len]) {
            Ok(VersionResult::Complete { cipher }) => cipher,
            _ => panic!("version"),
        }
    };
    let a = finish(a, vb);
    let b = finish(b, va);
    (b.into_split().0, a.into_split().1)
}

fn main() {
    let scale: f64 = std::env::var("V2_BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    let n = |base: u64| ((base as f64 * scale) as u64).max(1);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let big = NetworkMessage::Unknown {
        command: CommandString::try_from_static("bench").unwrap(),
        payload: vec![0xab; 1_000_000],
    };
    // `inv` with 3 entries: a 109-byte payload with a 1-byte v2 id.
    let small = NetworkMessage::Inv(
        (0..3u8)
            .map(|i| Inventory::Transaction(Txid::from_byte_array([i; 32])))
            .collect(),
    );
    println!("loopback TCP, one direction, release build; MB = 10^6 bytes of payload");
    println!(
        "{:<22} {:>10} {:>12} {:>14} {:>14}",
        "case", "messages", "seconds", "payload MB/s", "messages/s"
    );
    for (name, msg, count, payload) in [
        ("1 MB", &big, n(300), 1_000_000u64),
        ("109 B (inv x3)", &small, n(300_000), 109),
    ] {
        for kind in [TransportKind::V1, TransportKind::V2] {
            let _ = rt.block_on(run(kind, msg.clone(), n(10).min(count))); // warm-up
            let (elapsed, wire) = rt.block_on(run(kind, msg.clone(), count));
            let secs = elapsed.as_secs_f64();
            println!(
                "{:<22} {:>10} {:>12.3} {:>14.1} {:>14.0}   ({} wire bytes/message)",
                format!("{name} {kind}"),
                count,
                secs,
                (payload * count) as f64 / 1e6 / secs,
                count as f64 / secs,
                wire / count,
            );
        }
    }
    println!("\nframing alone, in memory (encode + decode, one core)");
    for (name, msg, count, payload) in [
        ("1 MB", &big, n(300), 1_000_000u64),
        ("109 B (inv x3)", &small, n(300_000), 109),
    ] {
        let (v1, v2) = framing_only(msg, count);
        println!(
            "{:<22} v1 (sha256d) {:>8.1} MB/s   v2 (ChaCha20-Poly1305) {:>8.1} MB/s",
            name,
            (payload * count) as f64 / 1e6 / v1.as_secs_f64(),
            (payload * count) as f64 / 1e6 / v2.as_secs_f64(),
        );
    }
}
