//! Addr-fetch connections in the library (Core's `ADDR_FETCH`, `-seednode`): connect, send
//! `getaddr`, give the answer to the address manager, disconnect after it or a timeout; over
//! loopback TCP with library peers, no node binary; host names through the dialer's resolver.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bitcoin::p2p::address::Address;
use bitcoin::p2p::message::NetworkMessage;
use bitcoin::p2p::ServiceFlags;
use common::accept;
use common::tcp::{ignore, wait_until, Handlers};
use tokio::net::TcpListener;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;
use verack::addrman::{AddrMan, AddrManConfig};
use verack::peer::{MessageHandler, Peer, PeerConfig, PeerHandle};
use verack::server::{
    AddrFetchError, AddrManSource, DialFuture, Dialer, PeerEvent, PeerTarget, PolicyRefusal,
    Refusal, ResolveFuture, Server, ServerConfig, TcpDialer,
};

/// How the remote answers `getaddr`.
#[derive(Clone, Copy)]
enum Answer {
    /// With this many routable addresses.
    Addresses(u8),
    /// With only its own address (a lone self-announcement), then nothing.
    SelfOnly,
}

struct Remote {
    answer: Answer,
    getaddrs: Arc<AtomicUsize>,
}

impl MessageHandler for Remote {
    async fn on_message(&mut self, peer: &PeerHandle, message: NetworkMessage) {
        if !matches!(message, NetworkMessage::GetAddr) {
            return;
        }
        self.getaddrs.fetch_add(1, Ordering::SeqCst);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as u32;
        let services = ServiceFlags::NETWORK | ServiceFlags::WITNESS;
        let list: Vec<(u32, Address)> = match self.answer {
            Answer::Addresses(n) => (0..n)
                .map(|i| {
                    let a: SocketAddr = format!("{}.{}.1.1:8333", 20 + i, 30 + i).parse().unwrap();
                    (now, Address::new(&a, services))
                })
                .collect(),
            Answer::SelfOnly => vec![(
                now,
                Address::new(&"99.1.1.1:8333".parse().unwrap(), services),
            )],
        };
        let _ = peer.send(NetworkMessage::Addr(list));
    }
}

/// A library peer listening on loopback, advertising `services`, answering `getaddr` as
/// `answer`; returns its address, how many `getaddr` it got, and how many of its connections
/// ended.
async fn remote(
    services: ServiceFlags,
    answer: Answer,
) -> (SocketAddr, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let at = listener.local_addr().unwrap();
    let getaddrs = Arc::new(AtomicUsize::new(0));
    let ended = Arc::new(AtomicUsize::new(0));
    let (g, e) = (getaddrs.clone(), ended.clone());
    tokio::spawn(async move {
        while let Ok((stream, from)) = listener.accept().await {
            let mut cfg = common::config();
            cfg.services = services;
            let (g, e) = (g.clone(), e.clone());
            tokio::spawn(async move {
                if let Ok(p) = Peer::inbound(stream, from, cfg)
                    .handshake(&CancellationToken::new(), accept)
                    .await
                {
                    p.run(
                        Remote {
                            answer,
                            getaddrs: g,
                        },
                        CancellationToken::new(),
                    )
                    .await;
                }
                e.fetch_add(1, Ordering::SeqCst);
            });
        }
    });
    (at, getaddrs, ended)
}

/// A server with no listener, no outbound targets and a real address manager.
fn server(tweak: impl FnOnce(&mut ServerConfig)) -> (Server<Handlers>, Arc<AddrManSource>) {
    let mut cfg = ServerConfig::new(PeerConfig::new(bitcoin::Network::Regtest));
    cfg.target_full_relay = 0;
    cfg.target_block_relay = 0;
    cfg.feeler_interval = None;
    tweak(&mut cfg);
    let source = Arc::new(AddrManSource::new(
        AddrMan::new(AddrManConfig::default(), 7),
        None,
    ));
    let server = Server::new(cfg, ignore as Handlers).with_address_source(source.clone());
    (server, source)
}

fn known(source: &AddrManSource) -> usize {
    source.lock().size(None, None)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn addr_fetch_asks_stores_the_answer_and_hangs_up() {
    let good = ServiceFlags::NETWORK | ServiceFlags::WITNESS;
    let (at, getaddrs, ended) = remote(good, Answer::Addresses(3)).await;
    let (server, source) = server(|_| {});
    assert!(matches!(
        server.addr_fetch(at).await,
        Err(AddrFetchError::NotRunning)
    ));
    let shutdown = CancellationToken::new();
    server.start(shutdown.clone()).await.unwrap();
    let mut events = server.subscribe();
    let outcome = timeout(Duration::from_secs(20), server.addr_fetch(at))
        .await
        .expect("ends within 20 s")
        .expect("fetched");
    assert_eq!(outcome.addresses, 3);
    assert!(outcome.answered);
    assert_eq!(getaddrs.load(Ordering::SeqCst), 1);
    assert_eq!(
        known(&source),
        3,
        "the answer went into the address manager"
    );
    wait_until("the remote sees the connection closed", || {
        ended.load(Ordering::SeqCst) == 1
    })
    .await;
    // Never admitted: no slot, no Connected event.
    assert!(server.peers().is_empty());
    while let Ok(event) = events.try_recv() {
        assert!(!matches!(event, PeerEvent::Connected { .. }), "{event:?}");
    }
    let stats = server.stats();
    assert_eq!(stats.addr_fetches, 1);
    assert_eq!(stats.addr_fetch_addresses, 3);
    shutdown.cancel();
    server.stopped().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_address_is_not_the_answer_the_timeout_ends_it() {
    let good = ServiceFlags::NETWORK | ServiceFlags::WITNESS;
    let (at, _getaddrs, ended) = remote(good, Answer::SelfOnly).await;
    let (server, source) = server(|cfg| cfg.addr_fetch_timeout = Duration::from_secs(1));
    let shutdown = CancellationToken::new();
    server.start(shutdown.clone()).await.unwrap();
    let outcome = timeout(Duration::from_secs(20), server.addr_fetch(at))
        .await
        .expect("ends within 20 s")
        .expect("fetched");
    assert_eq!(outcome.addresses, 1);
    assert!(!outcome.answered, "ended by the timeout");
    assert_eq!(known(&source), 1);
    wait_until("the remote sees the connection closed", || {
        ended.load(Ordering::SeqCst) == 1
    })
    .await;
    shutdown.cancel();
    server.stopped().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn addr_fetch_errors_are_typed() {
    // Core's desirable services apply to addr-fetch peers (ExpectServicesFromConn).
    let (bare, getaddrs, _) = remote(ServiceFlags::NONE, Answer::Addresses(3)).await;
    let (server, source) = server(|cfg| {
        cfg.admission.deny = vec!["127.0.9.0/24".parse().unwrap()];
    });
    let shutdown = CancellationToken::new();
    server.start(shutdown.clone()).await.unwrap();
    let refused = timeout(Duration::from_secs(20), server.addr_fetch(bare))
        .await
        .unwrap();
    assert!(
        matches!(
            refused,
            Err(AddrFetchError::Refused(Refusal::Policy(
                PolicyRefusal::MissingServices { .. }
            )))
        ),
        "{refused:?}"
    );
    assert_eq!(getaddrs.load(Ordering::SeqCst), 0);
    assert_eq!(known(&source), 0);
    assert_eq!(server.stats().policy_refusals, 1);
    // Nothing listens on port 1.
    let dead = timeout(
        Duration::from_secs(20),
        server.addr_fetch("127.0.0.1:1".parse::<SocketAddr>().unwrap()),
    )
    .await
    .unwrap();
    assert!(matches!(dead, Err(AddrFetchError::Dial(_))), "{dead:?}");
    // Deny list, before any dial.
    let denied = server
        .addr_fetch("127.0.9.1:8333".parse::<SocketAddr>().unwrap())
        .await;
    assert!(
        matches!(denied, Err(AddrFetchError::Refused(Refusal::Denied))),
        "{denied:?}"
    );
    shutdown.cancel();
    server.stopped().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_nodes_are_fetched_from_at_start() {
    let good = ServiceFlags::NETWORK | ServiceFlags::WITNESS;
    let (at, getaddrs, _) = remote(good, Answer::Addresses(5)).await;
    let (server, source) = server(|cfg| cfg.seed_nodes = vec![at]);
    let shutdown = CancellationToken::new();
    server.start(shutdown.clone()).await.unwrap();
    wait_until("the seed node's answer is stored", || known(&source) == 5).await;
    assert_eq!(getaddrs.load(Ordering::SeqCst), 1);
    assert_eq!(server.stats().addr_fetches, 1);
    shutdown.cancel();
    server.stopped().await.unwrap();
}

/// TCP dialling; names resolve as the map says (no system resolver, no DNS traffic).
struct Names(std::collections::HashMap<String, Vec<SocketAddr>>);

impl Dialer for Names {
    fn dial(&self, addr: SocketAddr) -> DialFuture {
        TcpDialer.dial(addr)
    }
    fn resolve(&self, host: &str, _port: u16) -> ResolveFuture {
        let found = self.0.get(host).cloned().unwrap_or_default();
        Box::pin(async move { Ok(found) })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_name_is_looked_up_and_its_addresses_tried_in_order() {
    let good = ServiceFlags::NETWORK | ServiceFlags::WITNESS;
    let (at, getaddrs, _) = remote(good, Answer::Addresses(2)).await;
    let dead: SocketAddr = "127.0.0.1:1".parse().unwrap();
    let names = Names(std::collections::HashMap::from([
        ("seed.test".to_string(), vec![dead, at]),
        ("empty.test".to_string(), vec![]),
    ]));
    let (server, source) = server(|_| {});
    let server = server.with_dialer(names);
    let shutdown = CancellationToken::new();
    server.start(shutdown.clone()).await.unwrap();
    let outcome = timeout(
        Duration::from_secs(20),
        server.addr_fetch(PeerTarget::Name {
            host: "seed.test".into(),
            port: at.port(),
        }),
    )
    .await
    .unwrap()
    .expect("the second address answers");
    assert_eq!(outcome.addresses, 2);
    assert!(outcome.answered);
    assert_eq!(getaddrs.load(Ordering::SeqCst), 1);
    assert_eq!(known(&source), 2);
    let empty = server
        .addr_fetch(PeerTarget::Name {
            host: "empty.test".into(),
            port: 8333,
        })
        .await;
    assert!(
        matches!(&empty, Err(AddrFetchError::Resolve(e)) if e.kind() == std::io::ErrorKind::NotFound),
        "{empty:?}"
    );
    shutdown.cancel();
    server.stopped().await.unwrap();
}
