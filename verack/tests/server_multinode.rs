//! Discovery across 21 servers on loopback: one seed and 20 nodes that each know only the
//! seed. Addresses spread by self-announcement, relay and `getaddr` through each node's
//! address manager; every node ends with ≥ 8 outbound peers in distinct netgroups. Each node
//! lives on its own `127.N.0.1`, grouped by `N` as a /16 (the test-only loopback grouping), and
//! dials from that address so per-IP limits see distinct hosts.

mod common;

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bitcoin::p2p::address::AddrV2Message;
use bitcoin::p2p::ServiceFlags;
use common::*;
use tokio::net::TcpSocket;
use tokio::time::{sleep, Instant};
use tokio_util::sync::CancellationToken;
use verack::addrman::{AddrMan, AddrManConfig};
use verack::peer::{Direction, IgnoreMessages, PeerHandle};
use verack::server::{
    addr_v2, AddrManSource, BoxedConnection, ConnectionKind, DialFuture, Dialer, Server,
    ServerConfig,
};

/// Dials from a fixed local IP.
struct BindDialer(IpAddr);

impl Dialer for BindDialer {
    fn dial(&self, addr: SocketAddr) -> DialFuture {
        let local = self.0;
        Box::pin(async move {
            let socket = TcpSocket::new_v4()?;
            socket.bind(SocketAddr::new(local, 0))?;
            let stream = socket.connect(addr).await?;
            Ok(Box::new(stream) as BoxedConnection)
        })
    }
}

type Handlers = fn(&PeerHandle, ConnectionKind) -> IgnoreMessages;

fn ignore(_: &PeerHandle, _: ConnectionKind) -> IgnoreMessages {
    IgnoreMessages
}

fn node(n: u8, port: u16, seed: Option<SocketAddr>) -> (Server<Handlers>, Arc<AddrManSource>) {
    let ip: IpAddr = format!("127.{n}.0.1").parse().unwrap();
    let me = SocketAddr::new(ip, port);
    let mut peer = config();
    peer.local_address = Some(me);
    let mut cfg = ServerConfig::new(peer);
    cfg.listen = vec![me];
    cfg.loopback_netgroups = true;
    cfg.target_full_relay = 8;
    cfg.target_block_relay = 0;
    cfg.feeler_interval = None;
    // verack nodes advertise no NODE_NETWORK: take them whatever their services.
    cfg.policy = verack::server::PeerPolicy::accept_all();
    // Core caches its getaddr answer for about a day (its tests move mock time): here the
    // seed's first answer, given while it knows almost nothing, would be every node's answer.
    cfg.getaddr_cache_lifetime = Duration::from_secs(1);
    cfg.getaddr_cache_jitter = Duration::ZERO;
    let mut man = AddrMan::new(AddrManConfig { allow_local: true }, u64::from(n));
    if let Some(seed) = seed {
        cfg.seed_nodes = vec![seed];
        cfg.seed_node_interval = Duration::from_secs(5);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let entry = AddrMan_entry(seed, now as u32);
        assert_eq!(man.add(&[entry], &addr_v2(seed.ip()), 0, now), 1);
    }
    let source = Arc::new(AddrManSource::new(man, None));
    let server = Server::new(cfg, ignore as Handlers)
        .with_dialer(BindDialer(ip))
        .with_address_source(source.clone());
    (server, source)
}

#[allow(non_snake_case)]
fn AddrMan_entry(addr: SocketAddr, time: u32) -> AddrV2Message {
    AddrV2Message {
        time,
        services: ServiceFlags::NONE,
        addr: addr_v2(addr.ip()),
        port: addr.port(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_nodes_find_eight_outbound_peers_each_from_one_seed() {
    let shutdown = CancellationToken::new();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let (seed, seed_source) = node(100, port, None);
    seed.start(shutdown.clone()).await.unwrap();
    let seed_addr = seed.local_addrs()[0];
    let mut nodes = Vec::new();
    for n in 1..=20u8 {
        let (server, source) = node(n, port, Some(seed_addr));
        if n == 1 && std::env::var("MULTINODE_DEBUG").is_ok() {
            let mut ev = server.subscribe();
            tokio::spawn(async move {
                while let Ok(e) = ev.recv().await {
                    eprintln!("node1 event: {e:?}");
                }
            });
        }
        server.start(shutdown.clone()).await.unwrap();
        nodes.push((server, source));
    }
    let started = Instant::now();
    let bound = Duration::from_secs(45);
    if std::env::var("MULTINODE_DEBUG").is_ok() {
        sleep(Duration::from_secs(5)).await;
        let sizes: Vec<usize> = nodes
            .iter()
            .map(|(_, s)| s.lock().size(None, None))
            .collect();
        let peers: Vec<usize> = nodes.iter().map(|(s, _)| s.peers().len()).collect();
        eprintln!(
            "addrman sizes {sizes:?} peers {peers:?} seed peers {} seed addrman {}",
            seed.peers().len(),
            seed_source.lock().size(None, None)
        );
    }
    loop {
        let outbound: Vec<usize> = nodes
            .iter()
            .map(|(s, _)| s.count(Direction::Outbound))
            .collect();
        if outbound.iter().all(|&n| n >= 8) {
            break;
        }
        if started.elapsed() >= bound {
            let sizes: Vec<usize> = nodes
                .iter()
                .map(|(_, s)| s.lock().size(None, None))
                .collect();
            let dials: Vec<usize> = nodes.iter().map(|(s, _)| s.dials_in_flight()).collect();
            panic!("after {bound:?}: outbound {outbound:?}, addrman sizes {sizes:?}, dials in flight {dials:?}");
        }
        sleep(Duration::from_millis(200)).await;
    }
    eprintln!(
        "all 20 nodes have >= 8 outbound peers after {:?}",
        started.elapsed()
    );
    for (server, source) in &nodes {
        let groups: HashSet<[u8; 2]> = server
            .peers()
            .iter()
            .filter(|p| p.direction == Direction::Outbound)
            .map(|p| match p.remote.ip() {
                IpAddr::V4(v4) => [v4.octets()[1], v4.octets()[2]],
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(
            groups.len(),
            server.count(Direction::Outbound),
            "one outbound peer per netgroup"
        );
        assert!(
            source.lock().size(None, None) >= 8,
            "the address manager learned the network"
        );
    }
    shutdown.cancel();
    seed.stopped().await.unwrap();
    for (server, _) in &nodes {
        server.stopped().await.unwrap();
    }
}
