//! Pending-handshake floods over loopback TCP (real sockets, so real time with short bounds):
//! silent connections that never send a byte hold pending slots, and a newcomer makes room by
//! dropping the longest-pending handshake of the busiest /24 instead of being refused until the
//! silent ones time out (30 s).

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bitcoin::p2p::message::NetworkMessage;
use common::tcp::*;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::{sleep, timeout, Instant};
use tokio_util::sync::CancellationToken;
use verack::peer::{MessageHandler, PeerHandle};
use verack::server::Server;

/// Silent connections per flood.
const SILENT: usize = 300;
/// What an honest peer is given to get in and be answered.
const HONEST_BOUND: Duration = Duration::from_secs(2);

/// Forwards the nonce of every `pong`.
struct Pongs(mpsc::UnboundedSender<u64>);

impl MessageHandler for Pongs {
    async fn on_pong(&mut self, _: &PeerHandle, nonce: u64) {
        let _ = self.0.send(nonce);
    }
}

/// An honest peer from `from`: version/verack, then a ping answered by a pong. Returns how long
/// it took; panics past [`HONEST_BOUND`].
async fn honest_ping_pong(from: &str, at: SocketAddr) -> Duration {
    let started = Instant::now();
    let exchange = async {
        let peer = client(from, at).await.expect("handshake completes");
        let (tx, mut pongs) = mpsc::unbounded_channel();
        let handle = peer.handle();
        let run = tokio::spawn(peer.run(Pongs(tx), CancellationToken::new()));
        handle.send(NetworkMessage::Ping(0x5eed)).unwrap();
        while pongs.recv().await.expect("connection stays up") != 0x5eed {}
        (handle, run)
    };
    let (handle, run) = timeout(HONEST_BOUND, exchange)
        .await
        .unwrap_or_else(|_| panic!("{from}: no version/verack and ping/pong within 2 s"));
    let took = started.elapsed();
    handle.disconnect();
    let _ = run.await;
    took
}

/// Samples the server's pending count every millisecond until stopped (at most 60 s); returns
/// the largest seen.
fn sample_pending(
    server: &Arc<Server<Handlers>>,
) -> (Arc<AtomicBool>, tokio::task::JoinHandle<usize>) {
    let stop = Arc::new(AtomicBool::new(false));
    let (server, done) = (server.clone(), stop.clone());
    let sampler = tokio::spawn(async move {
        let mut max = 0;
        for _ in 0..60_000 {
            max = max.max(server.pending_handshakes());
            if done.load(Ordering::Relaxed) {
                break;
            }
            sleep(Duration::from_millis(1)).await;
        }
        max
    });
    (stop, sampler)
}

/// How many of `streams` the server has closed (end of stream or reset), without waiting.
fn closed_by_server(streams: &[TcpStream]) -> usize {
    let mut buf = [0u8; 64];
    streams
        .iter()
        .filter(|s| match s.try_read(&mut buf) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
        })
        .count()
}

/// Opens [`SILENT`] connections from `from(i)` that never send anything (a bounded loop).
async fn silent_flood(from: impl Fn(usize) -> String, at: SocketAddr) -> Vec<TcpStream> {
    let mut silent = Vec::with_capacity(SILENT);
    for i in 0..SILENT {
        silent.push(connect_from(&from(i), at).await);
    }
    silent
}

/// After a flood: every connection the server dropped is closed, the rest still pending (the
/// registry's count matches the sockets: nothing leaked); once the clients hang up, every slot
/// is released.
async fn dropped_are_closed_and_slots_come_back(server: &Server<Handlers>, silent: Vec<TcpStream>) {
    wait_until("each dropped connection closed by the server", || {
        closed_by_server(&silent) == SILENT - server.pending_handshakes()
    })
    .await;
    drop(silent);
    wait_until("every pending slot released", || {
        server.pending_handshakes() == 0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_honest_peer_sharing_an_address_with_300_silent_connections_gets_in_at_once() {
    // Defaults: 50 pending in total, 8 per /24, handshake timeout 30 s.
    let (server, shutdown, at) = started(server_config()).await;
    let server = Arc::new(server);
    let (stop, sampler) = sample_pending(&server);
    let silent = silent_flood(|_| "127.0.0.1".to_string(), at).await;
    let took = honest_ping_pong("127.0.0.1", at).await;
    stop.store(true, Ordering::Relaxed);
    let max_pending = sampler.await.unwrap();
    assert!(took < HONEST_BOUND, "{took:?}");
    assert!(
        max_pending <= 8,
        "one /24 never holds more than its 8 pending slots: saw {max_pending}"
    );
    assert!(
        max_pending >= 7,
        "the flood did fill the /24: saw {max_pending}"
    );
    dropped_are_closed_and_slots_come_back(&server, silent).await;
    shutdown.cancel();
    server.stopped().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_from_many_24s_stays_within_the_total_bound_and_newcomers_get_in() {
    let mut cfg = server_config();
    cfg.admission.trusted = vec!["127.0.0.99/32".parse().unwrap()];
    let (server, shutdown, at) = started(cfg).await;
    let server = Arc::new(server);
    let (stop, sampler) = sample_pending(&server);
    // 8 per /24 over 38 /24s: more than the 50 pending slots in total.
    let silent = silent_flood(|i| format!("127.0.{}.{}", 1 + i / 8, 1 + i % 8), at).await;
    wait_until("the flood fills the 50 slots", || {
        server.pending_handshakes() == 50
    })
    .await;
    // From a /24 of its own, and from one of the flooded /24s.
    let took = honest_ping_pong("127.0.0.1", at).await;
    assert!(took < HONEST_BOUND, "{took:?}");
    let took = honest_ping_pong("127.0.1.200", at).await;
    assert!(took < HONEST_BOUND, "{took:?}");
    stop.store(true, Ordering::Relaxed);
    let max_pending = sampler.await.unwrap();
    assert!(
        max_pending <= 50,
        "pending never exceeds max_pending_handshakes: saw {max_pending}"
    );
    // A trusted peer gets in too (trusted handshakes are outside the bound).
    let took = honest_ping_pong("127.0.0.99", at).await;
    assert!(took < HONEST_BOUND, "{took:?}");
    dropped_are_closed_and_slots_come_back(&server, silent).await;
    shutdown.cancel();
    server.stopped().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bans_and_per_ip_limits_still_refuse_during_a_flood() {
    let mut cfg = server_config();
    cfg.admission.max_per_ip = 1;
    let (server, shutdown, at) = started(cfg).await;
    let mut events = server.subscribe();
    let silent = silent_flood(|_| "127.0.3.1".to_string(), at).await;
    wait_until("the /24 is full", || server.pending_handshakes() == 8).await;
    server.ban(
        "127.0.3.2/32".parse().unwrap(),
        Duration::from_secs(60),
        "test",
    );
    let mut banned = connect_from("127.0.3.2", at).await;
    assert!(closed_within(&mut banned, Duration::from_secs(2)).await);
    assert!(matches!(
        next_refusal(&mut events).await,
        verack::server::Refusal::Banned
    ));
    // One established peer from 127.0.3.3 (it displaces a silent one to handshake); a second
    // connection from that address is refused, not given a slot.
    let peer = client("127.0.3.3", at).await.expect("handshake completes");
    let (_h, _r) = keep(peer);
    wait_until("admitted", || {
        server.count(verack::peer::Direction::Inbound) == 1
    })
    .await;
    let mut second = connect_from("127.0.3.3", at).await;
    assert!(closed_within(&mut second, Duration::from_secs(2)).await);
    let refusal = next_refusal(&mut events).await;
    assert!(
        matches!(refusal, verack::server::Refusal::TooManyFromIp { .. }),
        "{refusal}"
    );
    dropped_are_closed_and_slots_come_back(&server, silent).await;
    shutdown.cancel();
    server.stopped().await.unwrap();
}
