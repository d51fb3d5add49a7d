//! Server, outbound side, with an in-memory dialer and the paused clock: target filling,
//! netgroup diversity, the in-flight bound, persistent-peer backoff, connect-only mode.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use verack::peer::{IgnoreMessages, Peer, PeerHandle};
use verack::server::{
    BoxedConnection, ConnectionKind, DialFuture, Dialer, FixedAddresses, PeerEvent, Server,
    ServerConfig,
};

fn handlers() -> impl Fn(&PeerHandle, ConnectionKind) -> IgnoreMessages + Send + Sync + 'static {
    |_: &PeerHandle, _| IgnoreMessages
}

/// How the fake network answers a dial.
#[derive(Clone, Copy)]
enum Answer {
    /// A verack peer accepts and runs.
    Peer,
    /// The connection is refused.
    Refuse,
    /// The dial never completes.
    Hang,
    /// A verack peer accepts, then sends `filterload` although we do not offer NODE_BLOOM.
    Misbehave,
}

/// Dials in memory: each address gets a fresh verack peer on the far end of a duplex pipe.
#[derive(Clone)]
struct FakeNet {
    answer: Answer,
    dials: Arc<Mutex<Vec<(SocketAddr, Instant)>>>,
}

impl FakeNet {
    fn new(answer: Answer) -> FakeNet {
        FakeNet {
            answer,
            dials: Arc::default(),
        }
    }
    fn dials(&self) -> Vec<(SocketAddr, Instant)> {
        self.dials.lock().unwrap().clone()
    }
}

impl Dialer for FakeNet {
    fn dial(&self, addr: SocketAddr) -> DialFuture {
        self.dials.lock().unwrap().push((addr, Instant::now()));
        let answer = self.answer;
        Box::pin(async move {
            match answer {
                Answer::Refuse => Err(std::io::ErrorKind::ConnectionRefused.into()),
                Answer::Hang => std::future::pending().await,
                Answer::Peer | Answer::Misbehave => {
                    let (ours, theirs) = tokio::io::duplex(1 << 16);
                    tokio::spawn(async move {
                        // A full node, as the server's default peer policy (Core's desirable
                        // services) wants of outbound peers.
                        let mut remote_cfg = config();
                        remote_cfg.services = bitcoin::p2p::ServiceFlags::NETWORK
                            | bitcoin::p2p::ServiceFlags::WITNESS;
                        let remote = Peer::inbound(theirs, common::addr(9), remote_cfg);
                        if let Ok(p) = remote.handshake(&CancellationToken::new(), accept).await {
                            if matches!(answer, Answer::Misbehave) {
                                let filter = bitcoin::p2p::message_bloom::FilterLoad {
                                    filter: vec![0; 8],
                                    hash_funcs: 1,
                                    tweak: 0,
                                    flags: bitcoin::p2p::message_bloom::BloomFlags::None,
                                };
                                let _ = p.handle().send(
                                    bitcoin::p2p::message::NetworkMessage::FilterLoad(filter),
                                );
                            }
                            p.run(IgnoreMessages, CancellationToken::new()).await;
                        }
                    });
                    Ok(Box::new(ours) as BoxedConnection)
                }
            }
        })
    }
}

fn spread(n: u8) -> Vec<SocketAddr> {
    // Two addresses in each of n /16 groups.
    (0..n)
        .flat_map(|g| {
            [
                format!("{}.1.0.1:8333", 10 + g),
                format!("{}.1.9.9:8333", 10 + g),
            ]
        })
        .map(|s| s.parse().unwrap())
        .collect()
}

#[tokio::test(start_paused = true)]
async fn fills_the_outbound_targets_one_per_netgroup() {
    let net = FakeNet::new(Answer::Peer);
    let server = Server::new(ServerConfig::new(config()), handlers())
        .with_dialer(net.clone())
        .with_address_source(FixedAddresses::new(spread(30)));
    let mut events = server.subscribe();
    let shutdown = CancellationToken::new();
    server.start(shutdown.clone()).await.unwrap();
    for _ in 0..10 {
        match events.recv().await.unwrap() {
            PeerEvent::Connected { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(server.count_kind(ConnectionKind::FullRelay), 8);
    assert_eq!(server.count_kind(ConnectionKind::BlockRelayOnly), 2);
    let groups: std::collections::HashSet<u8> = server
        .peers()
        .iter()
        .map(|p| match p.remote {
            SocketAddr::V4(a) => a.ip().octets()[0],
            _ => unreachable!(),
        })
        .collect();
    assert_eq!(groups.len(), 10, "one peer per /16");
    assert_eq!(
        net.dials().len(),
        10,
        "no needless dials once the targets are met"
    );
    // Block-relay-only peers were told not to relay transactions.
    for p in server.peers() {
        let h = server.peer(p.id).unwrap();
        assert_eq!(h.negotiated().protocol_version, 70017);
    }
    shutdown.cancel();
    server.stopped().await.unwrap();
    assert_eq!(server.tasks(), 0);
}

#[tokio::test(start_paused = true)]
async fn dials_in_flight_are_bounded() {
    let net = FakeNet::new(Answer::Hang);
    let mut cfg = ServerConfig::new(config());
    cfg.max_dials_in_flight = 3;
    cfg.dial_timeout = Duration::from_secs(5);
    let server = Server::new(cfg, handlers())
        .with_dialer(net.clone())
        .with_address_source(FixedAddresses::new(spread(30)));
    let shutdown = CancellationToken::new();
    server.start(shutdown.clone()).await.unwrap();
    let mut max_seen = 0;
    for _ in 0..200 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        max_seen = max_seen.max(server.dials_in_flight());
    }
    assert_eq!(max_seen, 3);
    // Hanging dials time out after 5 s and are retried: 20 s saw several rounds of 3.
    let dials = net.dials().len();
    assert!((9..=15).contains(&dials), "{dials} dials in 20 s");
    shutdown.cancel();
    server.stopped().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn persistent_peer_backoff_grows_with_jitter_bounds() {
    let net = FakeNet::new(Answer::Refuse);
    let target: SocketAddr = "20.0.0.1:8333".parse().unwrap();
    let mut cfg = ServerConfig::new(config());
    cfg.persistent = vec![target.into()];
    cfg.connect_only = true;
    let server = Server::new(cfg, handlers()).with_dialer(net.clone());
    let shutdown = CancellationToken::new();
    server.start(shutdown.clone()).await.unwrap();
    tokio::time::sleep(Duration::from_secs(1200)).await;
    let times: Vec<Instant> = net
        .dials()
        .iter()
        .map(|(a, t)| {
            assert_eq!(*a, target);
            *t
        })
        .collect();
    assert!(times.len() >= 8, "{} dials", times.len());
    for (i, pair) in times.windows(2).enumerate() {
        let gap = pair[1] - pair[0];
        let base = Duration::from_secs(1u64 << i.min(30)).min(Duration::from_secs(300));
        assert!(
            gap >= base / 2 && gap <= base * 3 / 2,
            "gap {i}: {gap:?} outside 50%..150% of {base:?}"
        );
    }
    shutdown.cancel();
    server.stopped().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn persistent_peers_reconnect_and_connect_only_ignores_the_source() {
    let net = FakeNet::new(Answer::Peer);
    let target: SocketAddr = "20.0.0.1:8333".parse().unwrap();
    let mut cfg = ServerConfig::new(config());
    cfg.persistent = vec![target.into()];
    cfg.connect_only = true;
    let server = Server::new(cfg, handlers())
        .with_dialer(net.clone())
        .with_address_source(FixedAddresses::new(spread(10)));
    let mut events = server.subscribe();
    let shutdown = CancellationToken::new();
    server.start(shutdown.clone()).await.unwrap();
    let mut connects = 0;
    while connects < 3 {
        match events.recv().await.unwrap() {
            PeerEvent::Connected { id, addr, kind, .. } => {
                assert_eq!((addr, kind), (target, ConnectionKind::Manual));
                connects += 1;
                tokio::time::sleep(Duration::from_secs(5)).await;
                assert!(server.disconnect(id));
            }
            PeerEvent::Disconnected { .. } => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    let dialled: std::collections::HashSet<SocketAddr> =
        net.dials().iter().map(|(a, _)| *a).collect();
    assert_eq!(
        dialled,
        [target].into_iter().collect(),
        "connect-only never uses the address source"
    );
    shutdown.cancel();
    server.stopped().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn dial_failures_are_reported_to_the_source_and_as_events() {
    #[derive(Default)]
    struct Recording {
        failed: Mutex<HashMap<SocketAddr, usize>>,
    }
    struct Source(Arc<Recording>, Vec<SocketAddr>);
    impl verack::server::AddressSource for Source {
        fn candidates(&self, _: ConnectionKind, n: usize) -> Vec<SocketAddr> {
            self.1.iter().copied().take(n).collect()
        }
        fn dial_failed(&self, addr: SocketAddr) {
            *self.0.failed.lock().unwrap().entry(addr).or_default() += 1;
        }
    }
    let rec = Arc::new(Recording::default());
    let net = FakeNet::new(Answer::Refuse);
    let server = Server::new(ServerConfig::new(config()), handlers())
        .with_dialer(net)
        .with_address_source(Source(rec.clone(), spread(2)));
    let mut events = server.subscribe();
    let shutdown = CancellationToken::new();
    server.start(shutdown.clone()).await.unwrap();
    match events.recv().await.unwrap() {
        PeerEvent::DialFailed { error, .. } => {
            assert_eq!(error.kind(), std::io::ErrorKind::ConnectionRefused)
        }
        other => panic!("unexpected {other:?}"),
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(rec.failed.lock().unwrap().values().sum::<usize>() >= 2);
    shutdown.cancel();
    server.stopped().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn misbehaving_remote_peers_are_banned_and_not_redialled() {
    let net = FakeNet::new(Answer::Misbehave);
    let bad: SocketAddr = "30.1.2.3:8333".parse().unwrap();
    let mut cfg = ServerConfig::new(config());
    cfg.target_full_relay = 1;
    cfg.target_block_relay = 0;
    let server = Server::new(cfg, handlers())
        .with_dialer(net.clone())
        .with_address_source(FixedAddresses::new(vec![bad]));
    let mut events = server.subscribe();
    let shutdown = CancellationToken::new();
    server.start(shutdown.clone()).await.unwrap();
    let mut saw = (false, false);
    while !(saw.0 && saw.1) {
        match events.recv().await.unwrap() {
            PeerEvent::Disconnected { reason, .. } => {
                assert!(reason.is_misbehaviour(), "{reason:?}");
                saw.0 = true;
            }
            PeerEvent::Banned { subnet, .. } => {
                assert_eq!(subnet, "30.1.2.3/32".parse::<ipnet::IpNet>().unwrap());
                saw.1 = true;
            }
            _ => {}
        }
    }
    assert_eq!(server.bans().len(), 1);
    // A banned address is never dialled again.
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(net.dials().len(), 1);
    shutdown.cancel();
    server.stopped().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn reported_misbehaviour_accumulates_to_a_ban() {
    let net = FakeNet::new(Answer::Peer);
    let mut cfg = ServerConfig::new(config());
    cfg.target_full_relay = 1;
    cfg.target_block_relay = 0;
    let server = Server::new(cfg, handlers())
        .with_dialer(net.clone())
        .with_address_source(FixedAddresses::new(vec!["30.9.9.9:8333".parse().unwrap()]));
    let mut events = server.subscribe();
    let shutdown = CancellationToken::new();
    server.start(shutdown.clone()).await.unwrap();
    let id = loop {
        if let PeerEvent::Connected { id, .. } = events.recv().await.unwrap() {
            break id;
        }
    };
    assert!(!server.misbehaving(id, 50, "first"));
    assert!(server.peer(id).is_some_and(|h| !h.is_disconnected()));
    assert!(
        server.misbehaving(id, 50, "second"),
        "50 + 50 reaches the threshold of 100"
    );
    assert!(server
        .bans()
        .iter()
        .any(|(net, e)| net.to_string() == "30.9.9.9/32" && e.reason.contains("second")));
    shutdown.cancel();
    server.stopped().await.unwrap();
}
