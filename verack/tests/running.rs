//! The running peer: keep-alive, deadlines, limits, queueing, trickling, push helpers and
//! protocol rules. All time is tokio's paused clock.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bitcoin::hashes::Hash;
use bitcoin::p2p::address::{AddrV2, AddrV2Message};
use bitcoin::p2p::message::{CommandString, NetworkMessage};
use bitcoin::p2p::message_blockdata::Inventory;
use bitcoin::p2p::message_bloom::{BloomFlags, FilterLoad};
use bitcoin::p2p::message_network::RejectReason;
use bitcoin::p2p::ServiceFlags;
use bitcoin::{BlockHash, Txid};
use common::*;
use tokio::sync::{mpsc, Notify};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use verack::peer::{
    DisconnectReason, IgnoreMessages, MessageHandler, MessageHooks, PeerHandle, PeerId, SendError,
    StallKind, Violation, OTHER_COMMAND,
};

const BUF: usize = 1 << 20;

fn txinv(n: u32) -> Inventory {
    let mut b = [0u8; 32];
    b[..4].copy_from_slice(&n.to_le_bytes());
    Inventory::Transaction(Txid::from_byte_array(b))
}

fn block_hash(n: u8) -> BlockHash {
    BlockHash::from_byte_array([n; 32])
}

/// Forwards every message to a channel.
struct Recorder(mpsc::UnboundedSender<NetworkMessage>);
impl MessageHandler for Recorder {
    async fn on_message(&mut self, _peer: &PeerHandle, message: NetworkMessage) {
        let _ = self.0.send(message);
    }
}

#[tokio::test(start_paused = true)]
async fn two_peers_stay_connected_by_ping_pong() {
    let (out, inb) = connected_pair(config(), config()).await;
    let (out, inb) = (out.unwrap(), inb.unwrap());
    let (ho, hi) = (out.handle(), inb.handle());
    let cancel = CancellationToken::new();
    let ro = tokio::spawn(out.run(IgnoreMessages, cancel.clone()));
    let ri = tokio::spawn(inb.run(IgnoreMessages, cancel.clone()));
    // An hour with nothing but keep-alive traffic: pings every 2 min beat the 5 min idle timeout.
    tokio::time::sleep(Duration::from_secs(3600)).await;
    assert!(
        !ho.is_disconnected() && !hi.is_disconnected(),
        "{:?} {:?}",
        ho.disconnect_reason(),
        hi.disconnect_reason()
    );
    let s = ho.stats();
    assert!(s.last_ping.is_some() && s.min_ping.is_some());
    // 1 ping at start + one every 2 minutes over the hour, from each side.
    let pings = s.bytes_sent_per_command["ping"] / 32;
    assert!((30..=31).contains(&pings), "{pings} pings");
    assert_eq!(s.bytes_received_per_command["pong"] / 32, pings);
    cancel.cancel();
    assert!(matches!(ro.await.unwrap(), DisconnectReason::Cancelled));
    assert!(matches!(
        ri.await.unwrap(),
        DisconnectReason::Cancelled | DisconnectReason::RemoteClosed
    ));
}

#[tokio::test(start_paused = true)]
async fn idle_timeout_after_five_minutes_of_silence() {
    let (peer, _remote) = handshaked_with_script(config(), 70016, true, vec![], BUF).await;
    let started = Instant::now();
    let reason = peer.run(IgnoreMessages, CancellationToken::new()).await;
    assert!(
        matches!(reason, DisconnectReason::IdleTimeout { after } if after == Duration::from_secs(300)),
        "{reason:?}"
    );
    assert_eq!(started.elapsed(), Duration::from_secs(300));
}

#[tokio::test(start_paused = true)]
async fn wrong_nonce_pong_does_not_clear_the_ping_which_times_out() {
    let mut cfg = config();
    cfg.ping_timeout = Duration::from_secs(180);
    let (peer, mut remote) = handshaked_with_script(cfg, 70016, true, vec![], BUF).await;
    let (handle, run) = spawn_run(peer, IgnoreMessages);
    let NetworkMessage::Ping(nonce) = remote.expect_command("ping").await else {
        unreachable!()
    };
    assert_ne!(nonce, 0);
    let started = Instant::now();
    // Keep the connection busy with wrong pongs every minute.
    for _ in 0..3 {
        remote
            .send(NetworkMessage::Pong(nonce.wrapping_add(1)))
            .await;
        tokio::time::sleep(Duration::from_secs(60)).await;
        // The ping is still in flight, and its wait (Core's pingwait) grows.
        if started.elapsed() < Duration::from_secs(180) {
            let wait = handle.stats().ping_wait.expect("a ping in flight");
            assert!(wait >= started.elapsed(), "{wait:?}");
        }
    }
    let reason = run.await.unwrap();
    assert!(
        matches!(reason, DisconnectReason::PingTimeout { .. }),
        "{reason:?}"
    );
    assert_eq!(started.elapsed(), Duration::from_secs(180));
    assert!(handle.stats().last_ping.is_none());
}

#[tokio::test(start_paused = true)]
async fn pongs_are_sent_while_the_handler_is_slow() {
    /// Blocks on `getaddr` until released.
    struct Stuck(Arc<Notify>);
    impl MessageHandler for Stuck {
        async fn on_getaddr(&mut self, _peer: &PeerHandle) {
            self.0.notified().await;
        }
    }
    let gate = Arc::new(Notify::new());
    let (peer, mut remote) = handshaked_with_script(config(), 70016, true, vec![], BUF).await;
    let run = tokio::spawn(peer.run(Stuck(gate.clone()), CancellationToken::new()));
    remote.send(NetworkMessage::GetAddr).await; // the handler blocks on this
    for n in 1..=3u64 {
        remote.send(NetworkMessage::Ping(n)).await;
        loop {
            match remote.recv().await.unwrap() {
                NetworkMessage::Pong(got) => break assert_eq!(got, n),
                NetworkMessage::Ping(p) => remote.send(NetworkMessage::Pong(p)).await,
                _ => {}
            }
        }
    }
    drop(remote);
    gate.notify_one();
    let _ = run.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn receive_backpressure_stops_reading_over_the_limit() {
    struct Gated(Arc<Notify>, Arc<AtomicUsize>);
    impl MessageHandler for Gated {
        async fn on_message(&mut self, _peer: &PeerHandle, _message: NetworkMessage) {
            self.0.notified().await;
            self.1.fetch_add(1, Ordering::SeqCst);
        }
    }
    let mut cfg = config();
    cfg.receive_buffer_limit = 10_000;
    let (peer, mut remote) = handshaked_with_script(cfg, 70016, true, vec![], BUF).await;
    let handle = peer.handle();
    let gate = Arc::new(Notify::new());
    let handled = Arc::new(AtomicUsize::new(0));
    let run = tokio::spawn(peer.run(
        Gated(gate.clone(), handled.clone()),
        CancellationToken::new(),
    ));
    let cmd = CommandString::try_from_static("custom").unwrap();
    let before = handle.stats().bytes_received;
    for _ in 0..100 {
        remote
            .send(NetworkMessage::Unknown {
                command: cmd.clone(),
                payload: vec![7; 1000],
            })
            .await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let read = handle.stats().bytes_received - before;
    // Reading stops once more than 10,000 bytes wait: at most one frame past the limit.
    assert!(
        read <= 10_000 + 1024 + 1024,
        "read {read} bytes while the handler is stuck"
    );
    assert!(read < 100 * 1024);
    for _ in 0..100 {
        gate.notify_one();
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(
        handled.load(Ordering::SeqCst),
        100,
        "everything is delivered once the handler catches up"
    );
    handle.disconnect();
    let _ = run.await;
}

#[tokio::test(start_paused = true)]
async fn headers_stall_deadline() {
    let (peer, mut remote) = handshaked_with_script(config(), 70016, true, vec![], BUF).await;
    let (handle, run) = spawn_run(peer, IgnoreMessages);
    assert!(handle
        .push_getheaders(vec![block_hash(1)], BlockHash::all_zeros())
        .unwrap());
    let started = Instant::now();
    // The remote answers pings but never sends headers.
    let answering = tokio::spawn(async move { while remote.recv_skip_pings().await.is_some() {} });
    let reason = run.await.unwrap();
    assert!(
        matches!(
            reason,
            DisconnectReason::Stalled {
                kind: StallKind::Headers,
                ..
            }
        ),
        "{reason:?}"
    );
    assert_eq!(started.elapsed(), Duration::from_secs(120));
    answering.abort();
}

#[tokio::test(start_paused = true)]
async fn headers_reply_clears_the_stall_deadline() {
    let (peer, mut remote) = handshaked_with_script(config(), 70016, true, vec![], BUF).await;
    let (handle, run) = spawn_run(peer, IgnoreMessages);
    handle
        .push_getheaders(vec![block_hash(1)], BlockHash::all_zeros())
        .unwrap();
    loop {
        if let Some(NetworkMessage::GetHeaders(_)) = remote.recv_skip_pings().await {
            break;
        }
    }
    remote.send(NetworkMessage::Headers(vec![])).await;
    // Keep answering pings for 10 minutes: no stall.
    let _ = tokio::time::timeout(Duration::from_secs(600), async {
        while remote.recv_skip_pings().await.is_some() {}
    })
    .await;
    assert!(
        !handle.is_disconnected(),
        "{:?}",
        handle.disconnect_reason()
    );
    handle.disconnect();
    assert!(matches!(run.await.unwrap(), DisconnectReason::LocalRequest));
}

#[tokio::test(start_paused = true)]
async fn getdata_stall_deadline_per_item() {
    let (peer, mut remote) = handshaked_with_script(config(), 70016, true, vec![], BUF).await;
    let (handle, run) = spawn_run(peer, IgnoreMessages);
    let a = Inventory::Block(block_hash(1));
    let b = Inventory::Block(block_hash(2));
    handle.send(NetworkMessage::GetData(vec![a, b])).unwrap();
    let started = Instant::now();
    loop {
        if let Some(NetworkMessage::GetData(_)) = remote.recv_skip_pings().await {
            break;
        }
    }
    remote.send(NetworkMessage::NotFound(vec![a])).await; // one answered, one not
    let answering = tokio::spawn(async move { while remote.recv_skip_pings().await.is_some() {} });
    let reason = run.await.unwrap();
    assert!(
        matches!(
            reason,
            DisconnectReason::Stalled {
                kind: StallKind::Data,
                ..
            }
        ),
        "{reason:?}"
    );
    assert_eq!(started.elapsed(), Duration::from_secs(30));
    answering.abort();
}

#[tokio::test(start_paused = true)]
async fn flood_guard_disconnects_above_the_rate() {
    let mut cfg = config();
    cfg.max_messages_per_second = Some(10.0);
    let (peer, mut remote) = handshaked_with_script(cfg, 70016, true, vec![], BUF).await;
    let run = tokio::spawn(peer.run(IgnoreMessages, CancellationToken::new()));
    for n in 0..20 {
        remote.send(NetworkMessage::Pong(n)).await;
    }
    let reason = run.await.unwrap();
    assert!(
        matches!(reason, DisconnectReason::Flooding { limit, .. } if limit == 10.0),
        "{reason:?}"
    );
    assert!(reason.is_misbehaviour());
}

#[tokio::test(start_paused = true)]
async fn flood_guard_is_off_by_default() {
    let (peer, mut remote) = handshaked_with_script(config(), 70016, true, vec![], BUF).await;
    let (handle, run) = spawn_run(peer, IgnoreMessages);
    for n in 0..2000 {
        remote.send(NetworkMessage::Pong(n)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!handle.is_disconnected());
    assert_eq!(handle.stats().bytes_received_per_command["pong"], 2000 * 32);
    handle.disconnect();
    let _ = run.await;
}

#[tokio::test(start_paused = true)]
async fn send_queue_byte_limit_disconnects() {
    let mut cfg = config();
    cfg.send_queue_limit = 10_000;
    let (peer, _remote) = handshaked_with_script(cfg, 70016, true, vec![], BUF).await;
    let handle = peer.handle();
    // Not running yet: frames accumulate in the queue.
    let payload = NetworkMessage::Unknown {
        command: CommandString::try_from_static("custom").unwrap(),
        payload: vec![0; 4000],
    };
    handle.send(payload.clone()).unwrap();
    handle.send(payload.clone()).unwrap();
    let err = handle.send(payload.clone()).unwrap_err();
    assert!(
        matches!(err, SendError::QueueFull { queued } if queued == 3 * 4024),
        "{err:?}"
    );
    assert!(matches!(
        handle.send(NetworkMessage::GetAddr),
        Err(SendError::Disconnected)
    ));
    let reason = peer.run(IgnoreMessages, CancellationToken::new()).await;
    assert!(
        matches!(
            reason,
            DisconnectReason::SendQueueFull {
                queued: 12072,
                limit: 10_000
            }
        ),
        "{reason:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn write_deadline_when_the_remote_stops_reading() {
    // A 4 KiB pipe the remote never drains after the handshake.
    let (peer, _remote) = handshaked_with_script(config(), 70016, true, vec![], 4096).await;
    let handle = peer.handle();
    let big = NetworkMessage::Unknown {
        command: CommandString::try_from_static("custom").unwrap(),
        payload: vec![0; 600_000],
    };
    handle.send(big).unwrap();
    let started = Instant::now();
    let reason = peer.run(IgnoreMessages, CancellationToken::new()).await;
    // 20 s + 1 s per 256 KiB of the 600,024-byte batch (plus the initial ping in it).
    assert!(
        matches!(reason, DisconnectReason::WriteTimeout { after, .. } if after == Duration::from_secs(22)),
        "{reason:?}"
    );
    assert_eq!(started.elapsed(), Duration::from_secs(22));
}

#[tokio::test(start_paused = true)]
async fn send_and_wait_completes_when_written() {
    let (peer, mut remote) = handshaked_with_script(config(), 70016, true, vec![], 4096).await;
    let (handle, run) = spawn_run(peer, IgnoreMessages);
    let h = handle.clone();
    let msg = NetworkMessage::Unknown {
        command: CommandString::try_from_static("custom").unwrap(),
        payload: vec![1; 20_000],
    };
    let waiting = tokio::spawn(async move { h.send_and_wait(msg).await });
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(
        !waiting.is_finished(),
        "the frame does not fit the pipe until the remote reads"
    );
    loop {
        match remote.recv().await.unwrap() {
            NetworkMessage::Unknown { payload, .. } => break assert_eq!(payload.len(), 20_000),
            _ => continue,
        }
    }
    waiting.await.unwrap().unwrap();
    handle.disconnect();
    let _ = run.await;
    assert!(matches!(
        handle.send_and_wait(NetworkMessage::GetAddr).await,
        Err(SendError::Disconnected)
    ));
}

#[tokio::test(start_paused = true)]
async fn send_all_queues_in_order_counts_each_and_is_all_or_nothing() {
    let (peer, mut remote) = handshaked_with_script(config(), 70016, true, vec![], BUF).await;
    let (handle, run) = spawn_run(peer, IgnoreMessages);
    let before = handle.stats();
    let batch: Vec<NetworkMessage> = (0..500u32)
        .map(|i| match i % 3 {
            0 => NetworkMessage::Inv(vec![txinv(i)]),
            1 => NetworkMessage::FeeFilter(i64::from(i)),
            _ => NetworkMessage::Unknown {
                command: CommandString::try_from_static("custom").unwrap(),
                payload: vec![i as u8; (i % 200) as usize],
            },
        })
        .collect();
    handle.send_all(&batch).unwrap();
    let mut got = Vec::new();
    while got.len() < batch.len() {
        match remote.recv_skip_pings().await.unwrap() {
            NetworkMessage::SendHeaders | NetworkMessage::GetAddr => {}
            m => got.push(m),
        }
    }
    assert_eq!(got, batch, "same messages, same order");
    let after = handle.stats();
    assert!(after.messages_sent - before.messages_sent >= 500);
    let inv_bytes = after.bytes_sent_per_command["inv"]
        - before
            .bytes_sent_per_command
            .get("inv")
            .copied()
            .unwrap_or(0);
    assert_eq!(
        inv_bytes,
        167 * 61,
        "every inv counted with its own 61-byte frame"
    );
    // A handshake message anywhere refuses the whole batch.
    let refused = handle.send_all(&[NetworkMessage::GetAddr, NetworkMessage::Verack]);
    assert!(
        matches!(refused, Err(SendError::HandshakeMessage { .. })),
        "{refused:?}"
    );
    handle.disconnect();
    let _ = run.await;
    assert!(matches!(
        handle.send_all(&batch),
        Err(SendError::Disconnected)
    ));
}

#[tokio::test(start_paused = true)]
async fn trickled_inventory_is_batched_and_known_items_filtered() {
    let (peer, mut remote) = handshaked_with_script(config(), 70016, true, vec![], BUF).await;
    let (handle, run) = spawn_run(peer, IgnoreMessages);
    // The remote announces tx 5: it is known, so never announced back.
    remote.send(NetworkMessage::Inv(vec![txinv(5)])).await;
    tokio::time::sleep(Duration::from_millis(10)).await;
    let queued_at = Instant::now();
    handle.queue_inventory((0..2500).map(txinv)).unwrap();
    handle
        .queue_inventory([Inventory::Block(block_hash(9))])
        .unwrap();
    // The block goes out at once, before any trickle.
    let mut sizes = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut block_first = None;
    while seen.len() < 2499 {
        if let Some(NetworkMessage::Inv(items)) = remote.recv_skip_pings().await {
            if items == vec![Inventory::Block(block_hash(9))] {
                block_first.get_or_insert(Instant::now() == queued_at);
                continue;
            }
            block_first.get_or_insert(false);
            sizes.push(items.len());
            seen.extend(items);
        }
    }
    assert_eq!(
        block_first,
        Some(true),
        "block inventory is sent immediately"
    );
    assert!(sizes.iter().all(|&n| n <= 1000));
    assert_eq!(sizes.iter().sum::<usize>(), 2499);
    assert!(!seen.contains(&txinv(5)));
    // Announcing again sends nothing: all are known now.
    handle.queue_inventory((0..2500).map(txinv)).unwrap();
    handle
        .queue_inventory([Inventory::Block(block_hash(9))])
        .unwrap();
    let extra = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            if let Some(NetworkMessage::Inv(items)) = remote.recv_skip_pings().await {
                return items;
            }
        }
    })
    .await;
    assert!(extra.is_err(), "nothing re-announced: {extra:?}");
    handle.disconnect();
    let _ = run.await;
}

#[tokio::test(start_paused = true)]
async fn transactions_are_not_announced_to_relay_false_peers() {
    let (peer, mut remote) = handshaked_with_script(config(), 70016, false, vec![], BUF).await;
    let (handle, run) = spawn_run(peer, IgnoreMessages);
    handle
        .queue_inventory([txinv(1), Inventory::Block(block_hash(1))])
        .unwrap();
    // A minute of traffic (pings answered) is many trickle intervals.
    let mut announced = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(m) = remote.recv_skip_pings().await {
            if let NetworkMessage::Inv(items) = m {
                announced.extend(items);
            }
        }
    })
    .await;
    assert_eq!(
        announced,
        vec![Inventory::Block(block_hash(1))],
        "only the block"
    );
    handle.disconnect();
    let _ = run.await;
}

fn v2addr(n: u32) -> AddrV2Message {
    AddrV2Message {
        time: 1,
        services: ServiceFlags::NETWORK,
        addr: AddrV2::Ipv4(std::net::Ipv4Addr::from(n)),
        port: 8333,
    }
}

#[tokio::test(start_paused = true)]
async fn push_addresses_uses_addrv2_when_negotiated_and_caps_at_1000() {
    let (peer, mut remote) =
        handshaked_with_script(config(), 70016, true, vec![NetworkMessage::SendAddrV2], BUF).await;
    let (handle, run) = spawn_run(peer, IgnoreMessages);
    let mut many: Vec<_> = (0..2500).map(v2addr).collect();
    many.push(AddrV2Message {
        time: 1,
        services: ServiceFlags::NONE,
        addr: AddrV2::TorV3([7; 32]),
        port: 8333,
    });
    assert_eq!(handle.push_addresses(&many).unwrap(), 1000);
    loop {
        if let Some(NetworkMessage::AddrV2(list)) = remote.recv_skip_pings().await {
            let distinct: std::collections::HashSet<_> = list.iter().collect();
            assert_eq!((list.len(), distinct.len()), (1000, 1000));
            break;
        }
    }
    handle.disconnect();
    let _ = run.await;
}

#[tokio::test(start_paused = true)]
async fn push_addresses_falls_back_to_addr_with_ip_entries_only() {
    let (peer, mut remote) = handshaked_with_script(config(), 70016, true, vec![], BUF).await;
    let (handle, run) = spawn_run(peer, IgnoreMessages);
    let tor = AddrV2Message {
        time: 1,
        services: ServiceFlags::NONE,
        addr: AddrV2::TorV3([7; 32]),
        port: 8333,
    };
    assert_eq!(
        handle
            .push_addresses(&[v2addr(1), tor.clone(), v2addr(2), v2addr(1)])
            .unwrap(),
        2
    );
    assert_eq!(
        handle.push_addresses(&[tor]).unwrap(),
        0,
        "nothing representable: nothing sent"
    );
    loop {
        if let Some(NetworkMessage::Addr(list)) = remote.recv_skip_pings().await {
            assert_eq!(list.len(), 2);
            break;
        }
    }
    handle.disconnect();
    let _ = run.await;
}

#[tokio::test(start_paused = true)]
async fn push_getheaders_and_getblocks_skip_back_to_back_duplicates() {
    let (peer, _remote) = handshaked_with_script(config(), 70016, true, vec![], BUF).await;
    let handle = peer.handle();
    let zero = BlockHash::all_zeros();
    assert!(handle
        .push_getheaders(vec![block_hash(1), block_hash(0)], zero)
        .unwrap());
    assert!(!handle
        .push_getheaders(vec![block_hash(1), block_hash(0)], zero)
        .unwrap());
    assert!(handle.push_getheaders(vec![block_hash(2)], zero).unwrap());
    assert!(
        handle.push_getheaders(vec![block_hash(1)], zero).unwrap(),
        "not back-to-back any more"
    );
    assert!(handle.push_getblocks(vec![block_hash(1)], zero).unwrap());
    assert!(!handle.push_getblocks(vec![block_hash(1)], zero).unwrap());
    assert!(
        handle
            .push_getblocks(vec![block_hash(1)], block_hash(3))
            .unwrap(),
        "different stop hash"
    );
}

#[tokio::test(start_paused = true)]
async fn a_headers_answer_lets_the_same_getheaders_go_again() {
    let (peer, mut remote) = handshaked_with_script(config(), 70016, true, vec![], BUF).await;
    let (handle, run) = spawn_run(peer, IgnoreMessages);
    let zero = BlockHash::all_zeros();
    assert!(handle.push_getheaders(vec![block_hash(1)], zero).unwrap());
    assert!(
        !handle.push_getheaders(vec![block_hash(1)], zero).unwrap(),
        "unanswered: a duplicate"
    );
    // Answered with nothing new; then the peer announces a block by inv and we ask again.
    remote.send(NetworkMessage::Headers(vec![])).await;
    let mut sent = false;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(10)).await;
        if handle.push_getheaders(vec![block_hash(1)], zero).unwrap() {
            sent = true;
            break;
        }
    }
    assert!(sent, "the same getheaders goes again after an answer");
    assert!(
        !handle.push_getheaders(vec![block_hash(1)], zero).unwrap(),
        "and is a duplicate again until the next answer"
    );
    handle.disconnect();
    let _ = run.await;
}

#[tokio::test(start_paused = true)]
async fn push_reject_only_from_70002() {
    let h = bitcoin::hashes::sha256d::Hash::all_zeros();
    let (peer, _remote) = handshaked_with_script(config(), 70001, true, vec![], BUF).await;
    assert!(!peer
        .handle()
        .push_reject("tx", RejectReason::Invalid, "bad", h)
        .unwrap());
    let (peer, _remote) = handshaked_with_script(config(), 70002, true, vec![], BUF).await;
    assert!(peer
        .handle()
        .push_reject("tx", RejectReason::Invalid, "bad", h)
        .unwrap());
}

fn filterload() -> NetworkMessage {
    NetworkMessage::FilterLoad(FilterLoad {
        filter: vec![0; 8],
        hash_funcs: 1,
        tweak: 0,
        flags: BloomFlags::None,
    })
}

#[tokio::test(start_paused = true)]
async fn bloom_messages_disconnect_from_70011_without_node_bloom() {
    for msg in [filterload(), NetworkMessage::FilterClear] {
        let (peer, mut remote) = handshaked_with_script(config(), 70016, true, vec![], BUF).await;
        let run = tokio::spawn(peer.run(IgnoreMessages, CancellationToken::new()));
        remote.send(msg).await;
        let reason = run.await.unwrap();
        assert!(
            matches!(
                reason,
                DisconnectReason::ProtocolViolation(Violation::BloomNotOffered { .. })
            ),
            "{reason:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn mempool_and_filtered_block_requests_disconnect_without_node_bloom_as_core() {
    let filtered = NetworkMessage::GetData(vec![
        Inventory::Block(BlockHash::all_zeros()),
        Inventory::Unknown {
            inv_type: 3, // MSG_FILTERED_BLOCK
            hash: [1; 32],
        },
    ]);
    // Core disconnects whatever the version (not only from BIP111's 70011).
    for (msg, version) in [
        (NetworkMessage::MemPool, 70016),
        (NetworkMessage::MemPool, 70010),
        (filtered, 70016),
    ] {
        let (peer, mut remote) = handshaked_with_script(config(), version, true, vec![], BUF).await;
        let run = tokio::spawn(peer.run(IgnoreMessages, CancellationToken::new()));
        remote.send(msg).await;
        let reason = run.await.unwrap();
        assert!(
            matches!(
                reason,
                DisconnectReason::ProtocolViolation(Violation::BloomNotOffered { .. })
            ),
            "{reason:?}"
        );
    }
    // A plain getdata is delivered.
    let (peer, mut remote) = handshaked_with_script(config(), 70016, true, vec![], BUF).await;
    let handle = peer.handle();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let run = tokio::spawn(peer.run(Recorder(tx), CancellationToken::new()));
    let plain = NetworkMessage::GetData(vec![Inventory::Block(BlockHash::all_zeros())]);
    remote.send(plain.clone()).await;
    assert_eq!(rx.recv().await.unwrap(), plain);
    assert!(!handle.is_disconnected());
    handle.disconnect();
    let _ = run.await;
}

#[tokio::test(start_paused = true)]
async fn bloom_messages_are_ignored_below_70011_and_delivered_with_node_bloom() {
    let (peer, mut remote) = handshaked_with_script(config(), 70010, true, vec![], BUF).await;
    let handle = peer.handle();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let run = tokio::spawn(peer.run(Recorder(tx), CancellationToken::new()));
    remote.send(filterload()).await;
    remote.send(NetworkMessage::GetAddr).await;
    assert_eq!(
        rx.recv().await.unwrap(),
        NetworkMessage::GetAddr,
        "filterload was not delivered"
    );
    assert!(!handle.is_disconnected());
    handle.disconnect();
    let _ = run.await;

    let mut cfg = config();
    cfg.services = ServiceFlags::BLOOM;
    let (peer, mut remote) = handshaked_with_script(cfg, 70016, true, vec![], BUF).await;
    let handle = peer.handle();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let run = tokio::spawn(peer.run(Recorder(tx), CancellationToken::new()));
    remote.send(filterload()).await;
    assert_eq!(rx.recv().await.unwrap(), filterload());
    handle.disconnect();
    let _ = run.await;
}

#[tokio::test(start_paused = true)]
async fn negotiation_messages_after_the_handshake_disconnect() {
    let cases = [
        (NetworkMessage::WtxidRelay, "wtxidrelay"),
        (NetworkMessage::SendAddrV2, "sendaddrv2"),
        (
            NetworkMessage::Unknown {
                command: CommandString::try_from_static("feature").unwrap(),
                payload: vec![],
            },
            "feature",
        ),
    ];
    for (msg, command) in cases {
        let (peer, mut remote) = handshaked_with_script(config(), 70016, true, vec![], BUF).await;
        let run = tokio::spawn(peer.run(IgnoreMessages, CancellationToken::new()));
        remote.send(msg).await;
        let reason = run.await.unwrap();
        assert!(
            matches!(&reason, DisconnectReason::ProtocolViolation(Violation::LateNegotiation { command: c }) if c == command),
            "{command}: {reason:?}"
        );
        assert!(remote.closed().await, "socket closed");
    }
}

#[tokio::test(start_paused = true)]
async fn a_redundant_version_or_verack_is_ignored_as_core() {
    // Core: "redundant version message" / "ignoring redundant verack message"; the peer stays.
    for msg in [remote_version(70016, 1), NetworkMessage::Verack] {
        let (peer, mut remote) = handshaked_with_script(config(), 70016, true, vec![], BUF).await;
        let handle = peer.handle();
        let run = tokio::spawn(peer.run(IgnoreMessages, CancellationToken::new()));
        remote.send(msg).await;
        remote.send(NetworkMessage::Ping(77)).await;
        // Our first ping may come first; the pong to 77 shows the peer is still served.
        let mut answered = false;
        for _ in 0..4 {
            if let NetworkMessage::Pong(77) = remote.recv().await.expect("still connected") {
                answered = true;
                break;
            }
        }
        assert!(answered);
        assert!(!handle.is_disconnected());
        handle.disconnect();
        let _ = run.await;
    }
}

#[tokio::test(start_paused = true)]
async fn oversized_lists_are_violations() {
    let (peer, mut remote) = handshaked_with_script(config(), 70016, true, vec![], BUF).await;
    let run = tokio::spawn(peer.run(IgnoreMessages, CancellationToken::new()));
    remote
        .send(NetworkMessage::Addr(
            (0..1001)
                .map(|n| {
                    (
                        0,
                        bitcoin::p2p::address::Address::new(&addr(n as u16), ServiceFlags::NONE),
                    )
                })
                .collect(),
        ))
        .await;
    let reason = run.await.unwrap();
    assert!(
        matches!(
            reason,
            DisconnectReason::ProtocolViolation(Violation::TooManyEntries {
                count: 1001,
                max: 1000,
                ..
            })
        ),
        "{reason:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn bad_checksum_skips_the_frame_and_wrong_magic_disconnects() {
    let (peer, mut remote) = handshaked_with_script(config(), 70016, true, vec![], BUF).await;
    let handle = peer.handle();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let run = tokio::spawn(peer.run(Recorder(tx), CancellationToken::new()));
    let mut bad =
        verack::wire::encode_frame(bitcoin::Network::Regtest.magic(), &NetworkMessage::Ping(5))
            .unwrap()
            .to_vec();
    bad[20] ^= 0xff;
    remote.send_raw(&bad).await;
    remote.send(NetworkMessage::GetAddr).await;
    assert_eq!(
        rx.recv().await.unwrap(),
        NetworkMessage::GetAddr,
        "connection survives a bad checksum"
    );
    assert_eq!(handle.stats().bytes_received_per_command[OTHER_COMMAND], 32);
    let mainnet =
        verack::wire::encode_frame(bitcoin::Network::Bitcoin.magic(), &NetworkMessage::GetAddr)
            .unwrap();
    remote.send_raw(&mainnet).await;
    let reason = run.await.unwrap();
    assert!(
        matches!(
            reason,
            DisconnectReason::Framing(verack::wire::DecodeError::WrongMagic { .. })
        ),
        "{reason:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn unknown_commands_reach_the_handler_and_hooks_see_every_message() {
    #[derive(Default)]
    struct Counting {
        read: AtomicUsize,
        written: AtomicUsize,
        unknown: AtomicUsize,
    }
    impl MessageHooks for Counting {
        fn message_read(
            &self,
            _: PeerId,
            _: std::net::SocketAddr,
            m: &NetworkMessage,
            size: usize,
        ) {
            self.read.fetch_add(size, Ordering::SeqCst);
            if matches!(m, NetworkMessage::Unknown { .. }) {
                self.unknown.fetch_add(1, Ordering::SeqCst);
            }
        }
        fn message_written(&self, _: PeerId, _: std::net::SocketAddr, _: &str, frame: &[u8]) {
            self.written.fetch_add(frame.len(), Ordering::SeqCst);
        }
    }
    struct Unknowns(mpsc::UnboundedSender<(String, Vec<u8>)>);
    impl MessageHandler for Unknowns {
        async fn on_unknown(
            &mut self,
            _peer: &PeerHandle,
            command: CommandString,
            payload: Vec<u8>,
        ) {
            let _ = self.0.send((command.to_string(), payload));
        }
    }
    let hooks = Arc::new(Counting::default());
    let mut cfg = config();
    cfg.hooks = Some(hooks.clone());
    let (peer, mut remote) = handshaked_with_script(cfg, 70016, true, vec![], BUF).await;
    let handle = peer.handle();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let run = tokio::spawn(peer.run(Unknowns(tx), CancellationToken::new()));
    let cmd = CommandString::try_from_static("utreexo").unwrap();
    remote
        .send(NetworkMessage::Unknown {
            command: cmd,
            payload: vec![1, 2, 3],
        })
        .await;
    assert_eq!(
        rx.recv().await.unwrap(),
        ("utreexo".to_string(), vec![1, 2, 3])
    );
    handle.disconnect();
    let _ = run.await;
    let s = handle.stats();
    assert_eq!(
        hooks.read.load(Ordering::SeqCst) as u64,
        s.bytes_received,
        "hooks saw every byte read"
    );
    assert_eq!(
        hooks.written.load(Ordering::SeqCst) as u64,
        s.bytes_sent,
        "hooks saw every byte written"
    );
    assert_eq!(hooks.unknown.load(Ordering::SeqCst), 1);
    // As Core: commands outside its list are counted under `*other*`, so a peer cannot grow
    // the per-command map with made-up names.
    assert_eq!(
        s.bytes_received_per_command[verack::peer::OTHER_COMMAND],
        27
    );
    assert!(!s.bytes_received_per_command.contains_key("utreexo"));
}

#[tokio::test(start_paused = true)]
async fn disconnect_is_idempotent_and_closed_waits_for_everything() {
    let (peer, mut remote) = handshaked_with_script(config(), 70016, true, vec![], BUF).await;
    let (handle, run) = spawn_run(peer, IgnoreMessages);
    let h2 = handle.clone();
    let closer = tokio::spawn(async move { h2.closed().await });
    handle.disconnect();
    handle.disconnect();
    assert!(matches!(
        closer.await.unwrap(),
        DisconnectReason::LocalRequest
    ));
    assert!(run.is_finished() || matches!(run.await.unwrap(), DisconnectReason::LocalRequest));
    assert!(remote.closed().await, "remote sees the socket closed");
    assert!(matches!(
        handle.disconnect_reason(),
        Some(DisconnectReason::LocalRequest)
    ));
    assert!(matches!(
        handle.send(NetworkMessage::GetAddr),
        Err(SendError::Disconnected)
    ));
}

#[tokio::test(start_paused = true)]
async fn dropping_an_unrun_peer_closes_it() {
    let (peer, mut remote) = handshaked_with_script(config(), 70016, true, vec![], BUF).await;
    let handle = peer.handle();
    drop(peer);
    assert!(matches!(
        handle.closed().await,
        DisconnectReason::LocalRequest
    ));
    assert!(remote.closed().await);
}

#[tokio::test(start_paused = true)]
async fn remote_close_and_last_block_height() {
    let (peer, remote) = handshaked_with_script(config(), 70016, true, vec![], BUF).await;
    let handle = peer.handle();
    assert_eq!(
        handle.stats().last_block_height,
        100,
        "starts at the remote's start height"
    );
    handle.update_last_block_height(150);
    handle.update_last_block_height(120);
    assert_eq!(handle.stats().last_block_height, 150, "never decreases");
    drop(remote);
    let reason = peer.run(IgnoreMessages, CancellationToken::new()).await;
    assert!(
        matches!(reason, DisconnectReason::RemoteClosed),
        "{reason:?}"
    );
}
