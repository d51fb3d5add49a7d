//! Server, inbound side, over loopback TCP (real sockets, so real time with short bounds).
//! Clients bind distinct loopback addresses (127.x.y.z) to play different hosts.

mod common;

use std::time::Duration;

use common::tcp::*;
use tokio::time::{sleep, timeout, Instant};
use tokio_util::sync::CancellationToken;
use verack::peer::{DisconnectReason, HandshakeError};
use verack::server::{PeerEvent, Refusal, Server};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_flood_holds_at_most_the_pending_slots_and_an_honest_peer_gets_in() {
    let mut cfg = server_config();
    // Short enough that the test ends soon, long enough that an honest peer getting in
    // well before it shows a slot was made for it (on a loaded 2-core machine).
    cfg.peer.handshake_timeout = Duration::from_secs(5);
    let (server, shutdown, at) = started(cfg).await;
    // 200 silent connections from 25 different /24s (8 each, the per-/24 limit).
    let mut silent = Vec::new();
    for i in 0..200 {
        silent.push(connect_from(&format!("127.0.{}.{}", 1 + i / 8, 1 + i % 8), at).await);
    }
    wait_until("the flood fills the default 50 slots", || {
        server.pending_handshakes() == 50
    })
    .await;
    let honest = tokio::spawn(client("127.0.200.1", at));
    let started_at = Instant::now();
    let mut max_pending = server.pending_handshakes();
    while !honest.is_finished() {
        max_pending = max_pending.max(server.pending_handshakes());
        assert!(
            started_at.elapsed() < Duration::from_secs(20),
            "honest peer never got in"
        );
        sleep(Duration::from_millis(5)).await;
    }
    // 50 was reached above; the honest peer may already have taken and released a slot by
    // the first sample, so only the bound is checked here.
    assert!(
        max_pending <= 50,
        "the flood never holds more than the default 50 slots: {max_pending}"
    );
    let peer = honest
        .await
        .unwrap()
        .expect("honest handshake completes during the flood");
    assert!(
        started_at.elapsed() < Duration::from_secs(3),
        "it made room by dropping a silent one, not by waiting for their 5 s timeouts"
    );
    // Every silent connection is closed: dropped to make room, or by the handshake timeout.
    for s in silent.iter_mut() {
        assert!(closed_within(s, Duration::from_secs(10)).await);
    }
    drop(peer);
    shutdown.cancel();
    server.stopped().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admission_before_the_handshake_ban_allow_deny_pending_per_ip() {
    let mut cfg = server_config();
    cfg.admission.deny = vec!["127.0.9.0/24".parse().unwrap()];
    cfg.admission.max_per_ip = 2;
    cfg.admission.max_pending_per_group = 2;
    cfg.peer.handshake_timeout = Duration::from_secs(2);
    let (server, shutdown, at) = started(cfg).await;
    let mut events = server.subscribe();

    server.ban(
        "127.0.5.5/32".parse().unwrap(),
        Duration::from_secs(60),
        "test",
    );
    let mut s = connect_from("127.0.5.5", at).await;
    assert!(closed_within(&mut s, Duration::from_secs(2)).await);
    assert!(matches!(next_refusal(&mut events).await, Refusal::Banned));

    let mut s = connect_from("127.0.9.1", at).await;
    assert!(closed_within(&mut s, Duration::from_secs(2)).await);
    assert!(matches!(next_refusal(&mut events).await, Refusal::Denied));

    // Pending per /24: two silent ones fill 127.0.7.0/24; a third from it is not refused but
    // makes room by dropping the longest-pending one (server_pending_flood.rs has the floods).
    let mut a = connect_from("127.0.7.1", at).await;
    let _b = connect_from("127.0.7.2", at).await;
    wait_until("two pending", || server.pending_handshakes() == 2).await;
    let _c = connect_from("127.0.7.3", at).await;
    assert!(closed_within(&mut a, Duration::from_secs(1)).await);
    assert_eq!(server.pending_handshakes(), 2);

    // Per IP: two established from 127.0.8.8; the third is refused.
    let (_h1, _r1) = keep(client("127.0.8.8", at).await.unwrap());
    let (_h2, _r2) = keep(client("127.0.8.8", at).await.unwrap());
    wait_until("two admitted", || {
        server.count(verack::peer::Direction::Inbound) == 2
    })
    .await;
    let mut s = connect_from("127.0.8.8", at).await;
    assert!(closed_within(&mut s, Duration::from_secs(2)).await);
    assert!(matches!(
        next_refusal(&mut events).await,
        Refusal::TooManyFromIp { .. }
    ));

    shutdown.cancel();
    server.stopped().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_list_and_ipv6() {
    let mut cfg = server_config();
    cfg.listen = vec!["[::1]:0".parse().unwrap()];
    cfg.admission.allow = vec!["::1/128".parse().unwrap()];
    let (server, shutdown, at) = started(cfg).await;
    assert!(at.is_ipv6());
    let (h, _r) = keep(client("::1", at).await.unwrap());
    wait_until("admitted over IPv6", || {
        server.count(verack::peer::Direction::Inbound) == 1
    })
    .await;
    assert!(!h.is_disconnected());
    // A ban of ::1/128 disconnects the connected peer and refuses the next.
    server.ban("::1/128".parse().unwrap(), Duration::from_secs(60), "test");
    wait_until("banned peer disconnected", || {
        server.count(verack::peer::Direction::Inbound) == 0
    })
    .await;
    assert_eq!(server.bans().len(), 1);
    let mut events = server.subscribe();
    let mut s = connect_from("::1", at).await;
    assert!(closed_within(&mut s, Duration::from_secs(2)).await);
    assert!(matches!(next_refusal(&mut events).await, Refusal::Banned));
    shutdown.cancel();
    server.stopped().await.unwrap();

    // An IPv4 listener with an IPv6-only allow list refuses IPv4 clients.
    let mut cfg = server_config();
    cfg.admission.allow = vec!["2600::/16".parse().unwrap()];
    let (server, shutdown, at) = started(cfg).await;
    let mut events = server.subscribe();
    let mut s = connect_from("127.0.0.1", at).await;
    assert!(closed_within(&mut s, Duration::from_secs(2)).await);
    assert!(matches!(
        next_refusal(&mut events).await,
        Refusal::NotAllowed
    ));
    shutdown.cancel();
    server.stopped().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_connection_is_detected_through_the_shared_nonce_cache() {
    let mut cfg = server_config();
    // Dial our own listener as a persistent peer.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let at = listener.local_addr().unwrap();
    drop(listener);
    cfg.listen = vec![at];
    cfg.persistent = vec![at.into()];
    cfg.connect_only = true;
    let server = Server::new(cfg, ignore as Handlers);
    let mut events = server.subscribe();
    let shutdown = CancellationToken::new();
    server.start(shutdown.clone()).await.unwrap();
    loop {
        match timeout(Duration::from_secs(5), events.recv())
            .await
            .unwrap()
            .unwrap()
        {
            PeerEvent::HandshakeFailed { error, .. }
                if matches!(*error, HandshakeError::SelfConnection { .. }) =>
            {
                break
            }
            PeerEvent::Connected { .. } => panic!("connected to ourselves"),
            _ => {}
        }
    }
    assert_eq!(server.count(verack::peer::Direction::Inbound), 0);
    shutdown.cancel();
    server.stopped().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_inbound_refuses_when_nobody_is_evictable_and_trusted_bypass() {
    let mut cfg = server_config();
    cfg.admission.max_inbound = 2;
    cfg.admission.trusted = vec!["127.0.0.99/32".parse().unwrap()];
    let (server, shutdown, at) = started(cfg).await;
    let mut events = server.subscribe();
    let (_a, _ra) = keep(client("127.0.1.1", at).await.unwrap());
    let (_b, _rb) = keep(client("127.0.2.1", at).await.unwrap());
    wait_until("two admitted", || {
        server.count(verack::peer::Direction::Inbound) == 2
    })
    .await;
    // With two candidates Core's protections cover both: the newcomer is refused.
    let c = client("127.0.3.1", at).await.unwrap();
    assert!(matches!(
        next_refusal(&mut events).await,
        Refusal::InboundFull
    ));
    let (_hc, rc) = keep(c);
    let reason = timeout(Duration::from_secs(5), rc).await.unwrap().unwrap();
    assert!(
        matches!(
            reason,
            DisconnectReason::RemoteClosed | DisconnectReason::Io(_)
        ),
        "{reason:?}"
    );
    // A trusted peer gets in regardless.
    let (_t, _rt) = keep(client("127.0.0.99", at).await.unwrap());
    wait_until("trusted admitted beyond the limit", || {
        server.count(verack::peer::Direction::Inbound) == 3
    })
    .await;
    shutdown.cancel();
    server.stopped().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_inbound_evicts_the_youngest_unprotected_peer_never_a_trusted_one() {
    let mut cfg = server_config();
    cfg.admission.max_inbound = 40;
    cfg.admission.max_per_ip = 100;
    cfg.admission.trusted = vec!["127.0.0.99/32".parse().unwrap()];
    let (server, shutdown, at) = started(cfg).await;
    let mut events = server.subscribe();
    let mut clients = Vec::new();
    // The trusted peer connects last of the 40, so it would be the youngest.
    for i in 0..39 {
        clients.push(keep(client(&format!("127.1.{i}.1"), at).await.unwrap()));
    }
    clients.push(keep(client("127.0.0.99", at).await.unwrap()));
    wait_until("40 admitted", || {
        server.count(verack::peer::Direction::Inbound) == 40
    })
    .await;
    let (newcomer, _rn) = keep(client("127.2.0.1", at).await.unwrap());
    wait_until("newcomer admitted", || {
        server
            .peers()
            .iter()
            .any(|p| p.remote.ip().to_string() == "127.2.0.1")
    })
    .await;
    assert_eq!(
        server.count(verack::peer::Direction::Inbound),
        40,
        "one evicted to make room"
    );
    assert!(
        server
            .peers()
            .iter()
            .any(|p| p.remote.ip().to_string() == "127.0.0.99"),
        "trusted never evicted"
    );
    // The victim's side sees the close a moment after the server removed it.
    wait_until("the evicted client sees the close", || {
        clients
            .iter()
            .any(|(h, r)| r.is_finished() || h.is_disconnected())
    })
    .await;
    let mut evicted_reason = None;
    for (h, r) in clients {
        if r.is_finished() || h.is_disconnected() {
            evicted_reason = Some(r.await.unwrap());
        }
    }
    assert!(
        matches!(
            evicted_reason,
            Some(DisconnectReason::RemoteClosed | DisconnectReason::Io(_))
        ),
        "{evicted_reason:?}"
    );
    assert!(!newcomer.is_disconnected());
    let _ = events.try_recv();
    shutdown.cancel();
    server.stopped().await.unwrap();
}

/// The server's peers carry both socket ends, read through the boxed stream: our end (Core's
/// `addrbind`), the address the remote says we have (Core's `addrlocal`: none on loopback,
/// which is not routable) and the protocol version the remote announced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_stats_carry_both_socket_ends_and_the_remote_version() {
    let (server, shutdown, at) = started(server_config()).await;
    let (h, _r) = keep(client("127.0.6.6", at).await.unwrap());
    wait_until("admitted", || {
        server.count(verack::peer::Direction::Inbound) == 1
    })
    .await;
    let theirs = server.peers()[0].clone();
    assert_eq!(theirs.remote.ip().to_string(), "127.0.6.6");
    assert_eq!(theirs.local, Some(at), "our end of an accepted socket");
    assert_eq!(
        theirs.addr_local, None,
        "a loopback address is not routable: the client sends [::]:0 (Core's addrYou)"
    );
    assert_eq!(
        theirs.remote_version,
        verack::peer::DEFAULT_PROTOCOL_VERSION
    );
    // The client side (a plain TcpStream) sees the mirror image.
    let ours = h.stats();
    assert_eq!(ours.local, Some(theirs.remote));
    assert_eq!(ours.addr_local, None);
    h.disconnect();
    shutdown.cancel();
    server.stopped().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misbehaviour_bans_non_local_peers_and_only_disconnects_local_ones() {
    let (server, shutdown, at) = started(server_config()).await;
    let (h, r) = keep(client("127.0.4.4", at).await.unwrap());
    wait_until("admitted", || {
        server.count(verack::peer::Direction::Inbound) == 1
    })
    .await;
    let id = server.peers()[0].id;
    assert!(!server.misbehaving(id, 60, "test"));
    sleep(Duration::from_millis(100)).await;
    assert!(
        !h.is_disconnected(),
        "below the threshold of 100 nothing happens"
    );
    // Loopback peers are "local" (Core's IsLocal): disconnected at the threshold, never banned.
    assert!(!server.misbehaving(id, 40, "test"));
    let reason = timeout(Duration::from_secs(5), r).await.unwrap().unwrap();
    assert!(
        matches!(
            reason,
            DisconnectReason::RemoteClosed | DisconnectReason::Io(_)
        ),
        "{reason:?}"
    );
    assert!(server.bans().is_empty());
    drop(h);
    shutdown.cancel();
    server.stopped().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bans_persist_across_restart_and_a_corrupt_file_is_moved_aside() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("banlist.json");
    let mut cfg = server_config();
    cfg.bans_path = Some(path.clone());
    let (server, shutdown, _) = started(cfg.clone()).await;
    server.ban(
        "203.0.113.0/24".parse().unwrap(),
        Duration::from_secs(3600),
        "manual",
    );
    server.ban(
        "2001:db8::/64".parse().unwrap(),
        Duration::from_secs(3600),
        "manual",
    );
    assert!(server.unban("2001:db8::/64".parse().unwrap()));
    shutdown.cancel();
    server.stopped().await.unwrap();

    let (server, shutdown, _) = started(cfg.clone()).await;
    let bans = server.bans();
    assert_eq!(bans.len(), 1);
    assert_eq!(bans[0].0, "203.0.113.0/24".parse::<ipnet::IpNet>().unwrap());
    assert_eq!(bans[0].1.reason, "manual");
    server.clear_bans();
    assert!(server.bans().is_empty());
    shutdown.cancel();
    server.stopped().await.unwrap();

    std::fs::write(&path, b"{\"version\": 1, \"bans\": [trunc").unwrap();
    let (server, shutdown, _) = started(cfg).await;
    assert!(server.bans().is_empty());
    let moved: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("banlist.json.corrupt-"))
        .collect();
    assert_eq!(
        moved.len(),
        1,
        "the corrupt file is kept aside, never deleted"
    );
    assert_eq!(
        std::fs::read(dir.path().join(&moved[0])).unwrap(),
        b"{\"version\": 1, \"bans\": [trunc"
    );
    shutdown.cancel();
    server.stopped().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_arrive_in_order_and_a_slow_subscriber_learns_what_it_missed() {
    let mut cfg = server_config();
    cfg.event_capacity = 4;
    let (server, shutdown, at) = started(cfg).await;
    let mut prompt = server.subscribe();
    let mut slow = server.subscribe();
    for i in 0..6 {
        let (h, r) = keep(client(&format!("127.0.{}.1", 10 + i), at).await.unwrap());
        // Connected, then Disconnected, for each.
        match timeout(Duration::from_secs(5), prompt.recv())
            .await
            .unwrap()
            .unwrap()
        {
            PeerEvent::Connected { addr, .. } => {
                assert_eq!(addr.ip().to_string(), format!("127.0.{}.1", 10 + i))
            }
            other => panic!("expected Connected, got {other:?}"),
        }
        h.disconnect();
        r.await.unwrap();
        match timeout(Duration::from_secs(5), prompt.recv())
            .await
            .unwrap()
            .unwrap()
        {
            // A clean FIN, or a reset when the client closed with unread bytes.
            PeerEvent::Disconnected {
                id, reason, stats, ..
            } => {
                assert!(
                    matches!(
                        reason,
                        DisconnectReason::RemoteClosed | DisconnectReason::Io(_)
                    ),
                    "{reason:?}"
                );
                // The final stats ride along: the handshake's traffic both ways.
                assert_eq!(stats.id, id);
                assert!(
                    stats.bytes_received > 0 && stats.bytes_sent > 0,
                    "{stats:?}"
                );
            }
            other => panic!("expected Disconnected, got {other:?}"),
        }
    }
    // 12 events were sent; the slow subscriber kept only the last 4.
    match slow.recv().await {
        Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => assert_eq!(missed, 8),
        other => panic!("expected Lagged, got {other:?}"),
    }
    assert!(matches!(
        slow.recv().await.unwrap(),
        PeerEvent::Connected { .. }
    ));
    shutdown.cancel();
    server.stopped().await.unwrap();
}

#[tokio::test]
async fn a_stopped_server_cannot_be_restarted() {
    let (server, shutdown, _) = started(server_config()).await;
    assert!(matches!(
        server.start(CancellationToken::new()).await,
        Err(verack::server::ServerError::AlreadyStarted)
    ));
    shutdown.cancel();
    server.stopped().await.unwrap();
    assert!(matches!(
        server.start(CancellationToken::new()).await,
        Err(verack::server::ServerError::AlreadyStarted)
    ));
}
