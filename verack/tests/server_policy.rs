//! The server's peer policy over loopback TCP with library peers: a refused inbound peer uses
//! no slot (no `Connected`, no eviction, counted in stats); outbound candidates are filtered by
//! their advertised services and outbound versions checked against Core's desirable services;
//! callers can override the rule.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bitcoin::p2p::ServiceFlags;
use common::tcp::*;
use common::{accept, config};
use tokio::net::TcpListener;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;
use verack::peer::{Direction, HandshakeError, IgnoreMessages, Peer, PeerConfig};
use verack::server::{
    AddressSource, ConnectionKind, PeerEvent, PeerPolicy, PolicyRefusal, Refusal, Server,
    ServerConfig, ServiceRule,
};

const N: ServiceFlags = ServiceFlags::NETWORK;
const W: ServiceFlags = ServiceFlags::WITNESS;

/// A client config with `agent` as its user agent.
fn agent(agent: &str) -> PeerConfig {
    let mut cfg = config();
    cfg.user_agent = agent.into();
    cfg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_inbound_peer_uses_no_slot_and_is_counted() {
    let mut cfg = server_config();
    cfg.admission.max_inbound = 2;
    cfg.policy = PeerPolicy::with_check(|ctx, version| {
        if ctx.direction == Direction::Inbound && version.user_agent.contains("bad") {
            Err(format!("user agent {}", version.user_agent))
        } else {
            Ok(())
        }
    });
    let (server, shutdown, at) = started(cfg).await;
    let mut events = server.subscribe();
    let (a, _ra) = keep(client("127.0.1.1", at).await.unwrap());
    let (b, _rb) = keep(client("127.0.2.1", at).await.unwrap());
    wait_until("two admitted", || server.count(Direction::Inbound) == 2).await;

    // Inbound is full: reaching admission would give InboundFull (or evict); the policy
    // refuses first, so neither happens.
    let refused = client_with("127.0.3.1", at, agent("/bad:1.0/")).await;
    assert!(refused.is_err(), "the refused client sees no handshake");
    let mut connected_after = 0;
    let refusal = loop {
        match timeout(Duration::from_secs(5), events.recv())
            .await
            .expect("an event")
            .unwrap()
        {
            PeerEvent::Refused {
                refusal,
                direction,
                addr,
            } => {
                assert_eq!(direction, Direction::Inbound);
                assert_eq!(addr.ip().to_string(), "127.0.3.1");
                break refusal;
            }
            PeerEvent::Connected { .. } => connected_after += 1,
            PeerEvent::Disconnected { .. } => panic!("nobody is evicted for a refused peer"),
            _ => {}
        }
    };
    assert_eq!(
        refusal,
        Refusal::Policy(PolicyRefusal::Rejected {
            reason: "user agent /bad:1.0/".into()
        })
    );
    // Both Connected events of a and b may still have been queued before the refusal.
    assert!(connected_after <= 2);
    assert_eq!(server.count(Direction::Inbound), 2);
    assert!(!a.is_disconnected() && !b.is_disconnected());
    wait_until("its pending slot is released", || {
        server.pending_handshakes() == 0
    })
    .await;
    let stats = server.stats();
    assert_eq!(stats.policy_refusals, 1);
    assert_eq!(stats.policy_refusals_inbound, 1);
    // No Connected event for it, ever.
    while let Ok(event) = events.try_recv() {
        assert!(
            !matches!(event, PeerEvent::Connected { addr, .. } if addr.ip().to_string() == "127.0.3.1")
        );
    }
    shutdown.cancel();
    server.stopped().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn required_services_refuse_inbound_peers_without_them() {
    let mut cfg = server_config();
    cfg.policy.required_services = ServiceFlags::COMPACT_FILTERS;
    let (server, shutdown, at) = started(cfg).await;
    let mut events = server.subscribe();
    let error = client("127.0.1.1", at).await.expect_err("refused");
    assert!(
        matches!(
            error,
            HandshakeError::Io(_) | HandshakeError::NotVersion { .. }
        ),
        "{error:?}"
    );
    let refusal = next_refusal(&mut events).await;
    assert!(
        matches!(
            refusal,
            Refusal::Policy(PolicyRefusal::MissingServices { expected, .. })
                if expected == ServiceFlags::COMPACT_FILTERS
        ),
        "{refusal:?}"
    );
    let mut with = config();
    with.services = ServiceFlags::COMPACT_FILTERS;
    let (_h, _r) = keep(client_with("127.0.2.1", at, with).await.unwrap());
    wait_until("the peer with the service admitted", || {
        server.count(Direction::Inbound) == 1
    })
    .await;
    assert_eq!(server.stats().policy_refusals, 1);
    shutdown.cancel();
    server.stopped().await.unwrap();
}

/// An address source with fixed candidates and advertised services, recording what the
/// server reports back.
#[derive(Default)]
struct Source {
    candidates: Vec<SocketAddr>,
    advertised: HashMap<SocketAddr, ServiceFlags>,
    good: Mutex<Vec<SocketAddr>>,
    seen: Mutex<HashMap<SocketAddr, ServiceFlags>>,
}

impl AddressSource for Source {
    fn candidates(&self, _kind: ConnectionKind, _n: usize) -> Vec<SocketAddr> {
        self.candidates.clone()
    }
    fn connected(&self, addr: SocketAddr) {
        self.good.lock().unwrap().push(addr);
    }
    fn services_of(&self, addr: SocketAddr) -> Option<ServiceFlags> {
        self.advertised.get(&addr).copied()
    }
    fn set_services(&self, addr: SocketAddr, services: ServiceFlags) {
        self.seen.lock().unwrap().insert(addr, services);
    }
}

/// A library peer listening on `ip`, advertising `services`; counts accepted connections.
async fn remote(ip: &str, services: ServiceFlags) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind((ip, 0)).await.unwrap();
    let at = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((stream, from)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            let mut cfg = config();
            cfg.services = services;
            tokio::spawn(async move {
                if let Ok(p) = Peer::inbound(stream, from, cfg)
                    .handshake(&CancellationToken::new(), accept)
                    .await
                {
                    p.run(IgnoreMessages, CancellationToken::new()).await;
                }
            });
        }
    });
    (at, accepted)
}

fn outbound_config() -> ServerConfig {
    let mut cfg = ServerConfig::new(config());
    cfg.target_full_relay = 3;
    cfg.target_block_relay = 0;
    cfg.feeler_interval = None;
    cfg.outbound_interval = Duration::from_millis(100);
    cfg.loopback_netgroups = true;
    cfg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbound_uses_cores_desirable_services_for_candidates_and_versions() {
    // Unknown services, NODE_NONE in its version: dialled, refused at its version.
    let (bare, _) = remote("127.1.0.1", ServiceFlags::NONE).await;
    // Unknown services, NETWORK | WITNESS in its version: connected.
    let (full, _) = remote("127.2.0.1", N | W).await;
    // Advertised NODE_NONE by the source: never dialled (it would pass the version check).
    let (skipped, skipped_accepts) = remote("127.3.0.1", N | W).await;
    // Advertised NETWORK_LIMITED | WITNESS, and so in its version: connected (BIP159).
    let (limited, _) = remote("127.4.0.1", ServiceFlags::NETWORK_LIMITED | W).await;
    let source = Arc::new(Source {
        candidates: vec![bare, full, skipped, limited],
        advertised: HashMap::from([
            (skipped, ServiceFlags::NONE),
            (limited, ServiceFlags::NETWORK_LIMITED | W),
        ]),
        ..Source::default()
    });
    let server =
        Server::new(outbound_config(), ignore as Handlers).with_address_source(source.clone());
    let mut events = server.subscribe();
    let shutdown = CancellationToken::new();
    server.start(shutdown.clone()).await.unwrap();

    let mut connected = Vec::new();
    let mut refused = None;
    while connected.len() < 2 || refused.is_none() {
        match timeout(Duration::from_secs(10), events.recv())
            .await
            .expect("events")
            .unwrap()
        {
            PeerEvent::Connected { addr, kind, .. } => {
                assert_eq!(kind, ConnectionKind::FullRelay);
                connected.push(addr);
            }
            PeerEvent::Refused {
                addr,
                refusal,
                direction,
            } => {
                assert_eq!(addr, bare);
                assert_eq!(direction, Direction::Outbound);
                refused = Some(refusal);
            }
            _ => {}
        }
    }
    connected.sort();
    assert_eq!(connected, vec![full, limited]);
    // NODE_NONE plus the NODE_P2P_V2 every library peer advertises by default.
    let offered = config().advertised_services();
    assert!(!offered.has(N) && !offered.has(W));
    assert_eq!(
        refused.unwrap(),
        Refusal::Policy(PolicyRefusal::MissingServices {
            offered,
            expected: N | W,
        })
    );
    let stats = server.stats();
    assert!(stats.policy_refusals >= 1);
    assert_eq!(stats.policy_refusals_inbound, 0);
    assert!(stats.candidates_skipped_for_services >= 1);
    assert_eq!(skipped_accepts.load(Ordering::SeqCst), 0, "never dialled");
    let good = source.good.lock().unwrap().clone();
    assert!(
        !good.contains(&bare),
        "a refused address is not marked good"
    );
    assert!(good.contains(&full) && good.contains(&limited));
    assert_eq!(
        source.seen.lock().unwrap().get(&bare),
        Some(&offered),
        "the services in its version are reported to the source (Core's SetServices)"
    );
    assert_eq!(server.count_kind(ConnectionKind::FullRelay), 2);
    shutdown.cancel();
    server.stopped().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_can_override_the_outbound_rule() {
    let (bare, _) = remote("127.1.0.1", ServiceFlags::NONE).await;
    let (advertised_none, accepts) = remote("127.3.0.1", ServiceFlags::NONE).await;
    let source = Arc::new(Source {
        candidates: vec![bare, advertised_none],
        advertised: HashMap::from([(advertised_none, ServiceFlags::NONE)]),
        ..Source::default()
    });
    let mut cfg = outbound_config();
    cfg.policy.outbound_services = ServiceRule::Any;
    let server = Server::new(cfg, ignore as Handlers).with_address_source(source.clone());
    let shutdown = CancellationToken::new();
    server.start(shutdown.clone()).await.unwrap();
    wait_until("both connected", || {
        server.count_kind(ConnectionKind::FullRelay) == 2
    })
    .await;
    assert_eq!(accepts.load(Ordering::SeqCst), 1);
    assert_eq!(server.stats().policy_refusals, 0);
    assert_eq!(server.stats().candidates_skipped_for_services, 0);
    shutdown.cancel();
    server.stopped().await.unwrap();
}
