//! Address relay through the server over loopback TCP: Core's rate limit and its counts,
//! `getaddr` answered once per inbound connection from a cache, fresh addresses forwarded to
//! exactly two other peers that address relay is enabled with (an inbound peer only once it
//! sent an address message), self-announcement likewise.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bitcoin::p2p::address::{AddrV2, AddrV2Message};
use bitcoin::p2p::message::NetworkMessage;
use bitcoin::p2p::ServiceFlags;
use common::*;
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::mpsc;
use tokio::time::{sleep, timeout, Instant};
use tokio_util::sync::CancellationToken;
use verack::peer::{IgnoreMessages, MessageHandler, Peer, PeerHandle};
use verack::server::addr_relay::AddrRelayState;
use verack::server::{AddressSource, ConnectionKind, Server, ServerConfig};

#[derive(Default)]
struct Recording {
    added: Mutex<Vec<(AddrV2Message, SocketAddr)>>,
    known: Vec<AddrV2Message>,
    /// `get_addr` calls so far.
    asked: AtomicUsize,
}

struct Source(Arc<Recording>);

impl AddressSource for Source {
    fn candidates(&self, _: ConnectionKind, _: usize) -> Vec<SocketAddr> {
        Vec::new()
    }
    fn add(&self, addrs: &[AddrV2Message], source: SocketAddr) {
        self.0
            .added
            .lock()
            .unwrap()
            .extend(addrs.iter().map(|a| (a.clone(), source)));
    }
    /// The known addresses, rotated by one more place at every call (as an address manager
    /// answers in a new random order each time).
    fn get_addr(&self) -> Vec<AddrV2Message> {
        let n = self.0.asked.fetch_add(1, Ordering::SeqCst);
        let mut known = self.0.known.clone();
        if !known.is_empty() {
            let len = known.len();
            known.rotate_left(n % len);
        }
        known
    }
}

fn now() -> u32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as u32
}

fn routable(n: u8) -> AddrV2Message {
    AddrV2Message {
        time: now(),
        services: ServiceFlags::NETWORK,
        addr: AddrV2::Ipv4([8, 8, 8, n].into()),
        port: 8333,
    }
}

struct Forward(mpsc::UnboundedSender<NetworkMessage>);
impl MessageHandler for Forward {
    async fn on_message(&mut self, _peer: &PeerHandle, message: NetworkMessage) {
        let _ = self.0.send(message);
    }
}

type TestServer = Server<fn(&PeerHandle, ConnectionKind) -> IgnoreMessages>;

async fn start(
    known: Vec<AddrV2Message>,
) -> (TestServer, Arc<Recording>, CancellationToken, SocketAddr) {
    start_with(known, |_| {}).await
}

async fn start_with(
    known: Vec<AddrV2Message>,
    tweak: impl FnOnce(&mut ServerConfig),
) -> (TestServer, Arc<Recording>, CancellationToken, SocketAddr) {
    fn ignore(_: &PeerHandle, _: ConnectionKind) -> IgnoreMessages {
        IgnoreMessages
    }
    let rec = Arc::new(Recording {
        known,
        ..Default::default()
    });
    let mut cfg = ServerConfig::new(config());
    cfg.listen = vec!["127.0.0.1:0".parse().unwrap()];
    cfg.target_full_relay = 0;
    cfg.target_block_relay = 0;
    cfg.feeler_interval = None;
    tweak(&mut cfg);
    let server = Server::new(
        cfg,
        ignore as fn(&PeerHandle, ConnectionKind) -> IgnoreMessages,
    )
    .with_address_source(Source(rec.clone()));
    let shutdown = CancellationToken::new();
    server.start(shutdown.clone()).await.unwrap();
    let at = server.local_addrs()[0];
    (server, rec, shutdown, at)
}

/// A client from `from` that forwards what it receives.
async fn client(
    from: &str,
    to: SocketAddr,
) -> (PeerHandle, mpsc::UnboundedReceiver<NetworkMessage>) {
    let socket = TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::new(from.parse().unwrap(), 0))
        .unwrap();
    let stream: TcpStream = socket.connect(to).await.unwrap();
    let peer = Peer::outbound(stream, to, config())
        .handshake(&CancellationToken::new(), accept)
        .await
        .unwrap();
    let handle = peer.handle();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(peer.run(Forward(tx), CancellationToken::new()));
    (handle, rx)
}

async fn addrs_within(
    rx: &mut mpsc::UnboundedReceiver<NetworkMessage>,
    within: Duration,
) -> Vec<AddrV2Message> {
    let mut got = Vec::new();
    let deadline = Instant::now() + within;
    while let Ok(Some(msg)) = timeout(
        deadline.saturating_duration_since(Instant::now()),
        rx.recv(),
    )
    .await
    {
        match msg {
            NetworkMessage::AddrV2(list) => got.extend(list),
            NetworkMessage::Addr(list) => got.extend(list.into_iter().map(|(time, a)| {
                let s = a.socket_addr().unwrap();
                let ip = match s.ip() {
                    std::net::IpAddr::V4(v4) => AddrV2::Ipv4(v4),
                    std::net::IpAddr::V6(v6) => v6
                        .to_ipv4_mapped()
                        .map(AddrV2::Ipv4)
                        .unwrap_or(AddrV2::Ipv6(v6)),
                };
                AddrV2Message {
                    time,
                    services: a.services,
                    addr: ip,
                    port: s.port(),
                }
            })),
            _ => {}
        }
    }
    got
}

/// The server's address relay state for the client connected from `ip`.
fn relay_of(server: &TestServer, ip: &str) -> AddrRelayState {
    let id = server
        .handles()
        .iter()
        .find(|p| p.remote().ip().to_string() == ip)
        .map(|p| p.id())
        .expect("connected");
    server.addr_relay_of(id).expect("connected")
}

async fn wait_until(mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out");
        sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn getaddr_is_answered_once_per_inbound_connection() {
    let known: Vec<_> = (1..=5).map(routable).collect();
    let (server, _rec, shutdown, at) = start(known.clone()).await;
    let (h, mut rx) = client("127.0.1.1", at).await;
    h.send(NetworkMessage::GetAddr).unwrap();
    h.send(NetworkMessage::GetAddr).unwrap();
    let got = addrs_within(&mut rx, Duration::from_secs(1)).await;
    assert_eq!(
        got.len(),
        5,
        "one answer with the source's addresses, not two"
    );
    shutdown.cancel();
    server.stopped().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsolicited_addresses_are_rate_limited_by_the_token_bucket() {
    let (server, rec, shutdown, at) = start(Vec::new()).await;
    let (h, _rx) = client("127.0.2.1", at).await;
    // A fresh connection has one token: of 50 unsolicited addresses, one is processed.
    h.send(NetworkMessage::AddrV2((1..=50).map(routable).collect()))
        .unwrap();
    wait_until(|| !rec.added.lock().unwrap().is_empty()).await;
    sleep(Duration::from_millis(200)).await;
    assert_eq!(rec.added.lock().unwrap().len(), 1);
    assert_eq!(
        rec.added.lock().unwrap()[0].1.ip().to_string(),
        "127.0.2.1",
        "source recorded"
    );
    shutdown.cancel();
    server.stopped().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_address_is_forwarded_to_exactly_two_other_peers() {
    let (server, _rec, shutdown, at) = start(Vec::new()).await;
    let (sender, _srx) = client("127.0.3.1", at).await;
    let mut others = Vec::new();
    for i in 0..4 {
        let (h, rx) = client(&format!("127.0.4.{}", i + 1), at).await;
        // Core relays to an inbound peer only once it sent an address message.
        h.send(NetworkMessage::GetAddr).unwrap();
        others.push((h, rx));
    }
    wait_until(|| server.count(verack::peer::Direction::Inbound) == 5).await;
    wait_until(|| {
        server
            .handles()
            .iter()
            .filter(|p| server.addr_relay_of(p.id()).is_some_and(|r| r.enabled))
            .count()
            == 4
    })
    .await;
    sender
        .send(NetworkMessage::AddrV2(vec![routable(77)]))
        .unwrap();
    let mut receivers = 0;
    for (_, rx) in others.iter_mut() {
        if addrs_within(rx, Duration::from_millis(500))
            .await
            .iter()
            .any(|a| a.addr == AddrV2::Ipv4([8, 8, 8, 77].into()))
        {
            receivers += 1;
        }
    }
    assert_eq!(receivers, 2);
    // Stale addresses (older than 10 minutes) are stored but not forwarded.
    let (sender2, _rx2) = client("127.0.5.1", at).await;
    let mut stale = routable(78);
    stale.time -= 3600;
    sender2.send(NetworkMessage::AddrV2(vec![stale])).unwrap();
    for (_, rx) in others.iter_mut() {
        assert!(addrs_within(rx, Duration::from_millis(300))
            .await
            .is_empty());
    }
    shutdown.cancel();
    server.stopped().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manual_peer_is_asked_for_addresses_and_the_answer_is_stored() {
    // Core's SetupAddressRelay: every outbound connection that relays addresses sends
    // getaddr, manual (`-addnode`/`-connect`) ones included. A node whose only peer is manual
    // still learns addresses.
    let known: Vec<_> = (1..=5).map(routable).collect();
    let (server_a, _rec_a, shutdown_a, at) = start(known.clone()).await;
    let rec_b = Arc::new(Recording::default());
    let mut cfg = ServerConfig::new(config());
    cfg.persistent = vec![at.into()];
    cfg.connect_only = true;
    cfg.feeler_interval = None;
    let server_b = Server::new(cfg, |_: &PeerHandle, _: ConnectionKind| IgnoreMessages)
        .with_address_source(Source(rec_b.clone()));
    let shutdown_b = CancellationToken::new();
    server_b.start(shutdown_b.clone()).await.unwrap();
    wait_until(|| rec_b.added.lock().unwrap().len() >= known.len()).await;
    let added: Vec<AddrV2Message> = rec_b
        .added
        .lock()
        .unwrap()
        .iter()
        .map(|(a, _)| a.clone())
        .collect();
    for addr in &known {
        assert!(added
            .iter()
            .any(|a| a.addr == addr.addr && a.port == addr.port));
    }
    shutdown_b.cancel();
    server_b.stopped().await.unwrap();
    shutdown_a.cancel();
    server_a.stopped().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inbound_peer_gets_no_addresses_until_it_sends_an_address_message() {
    // Core's SetupAddressRelay: inbound peers are addr relay targets only once they sent
    // addr, addrv2 or getaddr (p2p_addr_relay's "blackhole" peers).
    let (server, _rec, shutdown, at) = start(Vec::new()).await;
    let (eligible, mut eligible_rx) = client("127.0.6.1", at).await;
    let (_quiet, mut quiet_rx) = client("127.0.6.2", at).await;
    let (late, mut late_rx) = client("127.0.6.3", at).await;
    eligible.send(NetworkMessage::GetAddr).unwrap();
    wait_until(|| server.count(verack::peer::Direction::Inbound) == 3).await;
    wait_until(|| relay_of(&server, "127.0.6.1").enabled).await;
    assert!(!relay_of(&server, "127.0.6.2").enabled);
    assert!(!relay_of(&server, "127.0.6.3").enabled);
    // Two peers without an address message: every fresh address goes to the one eligible
    // peer (Core: to at most 2 eligible ones), none to the others.
    let (source, _src_rx) = client("127.0.6.4", at).await;
    source
        .send(NetworkMessage::AddrV2(vec![routable(101)]))
        .unwrap();
    let got = addrs_within(&mut eligible_rx, Duration::from_millis(700)).await;
    assert_eq!(got.len(), 1, "the eligible peer gets the address: {got:?}");
    assert!(addrs_within(&mut quiet_rx, Duration::from_millis(200))
        .await
        .is_empty());
    assert!(addrs_within(&mut late_rx, Duration::from_millis(10))
        .await
        .is_empty());
    // The first source is a relay target now too (it sent addr): gone, so that the two
    // targets of the next address are the eligible peer and the late one.
    source.disconnect();
    wait_until(|| server.count(verack::peer::Direction::Inbound) == 3).await;
    // An empty addr is an address message: relay is enabled from then on.
    late.send(NetworkMessage::Addr(Vec::new())).unwrap();
    wait_until(|| relay_of(&server, "127.0.6.3").enabled).await;
    let (source2, _src2_rx) = client("127.0.6.5", at).await;
    source2
        .send(NetworkMessage::AddrV2(vec![routable(120)]))
        .unwrap();
    let to_late = addrs_within(&mut late_rx, Duration::from_millis(700)).await;
    let to_eligible = addrs_within(&mut eligible_rx, Duration::from_millis(10)).await;
    assert_eq!((to_late.len(), to_eligible.len()), (1, 1));
    assert!(addrs_within(&mut quiet_rx, Duration::from_millis(200))
        .await
        .is_empty());
    assert!(!relay_of(&server, "127.0.6.2").enabled);
    shutdown.cancel();
    server.stopped().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processed_and_rate_limited_addresses_are_counted_per_peer() {
    // Core's getpeerinfo addr_processed / addr_rate_limited (p2p_addr_relay's rate limit).
    let (server, _rec, shutdown, at) = start(Vec::new()).await;
    let (h, _rx) = client("127.0.7.1", at).await;
    wait_until(|| server.count(verack::peer::Direction::Inbound) == 1).await;
    assert_eq!(relay_of(&server, "127.0.7.1"), AddrRelayState::default());
    h.send(NetworkMessage::AddrV2((1..=50).map(routable).collect()))
        .unwrap();
    wait_until(|| {
        let s = relay_of(&server, "127.0.7.1");
        s.processed + s.rate_limited == 50
    })
    .await;
    let s = relay_of(&server, "127.0.7.1");
    assert_eq!((s.enabled, s.processed, s.rate_limited), (true, 1, 49));
    h.send(NetworkMessage::AddrV2((51..=60).map(routable).collect()))
        .unwrap();
    wait_until(|| relay_of(&server, "127.0.7.1").rate_limited >= 59).await;
    assert_eq!(
        relay_of(&server, "127.0.7.1"),
        AddrRelayState {
            enabled: true,
            processed: 1,
            rate_limited: 59
        },
        "no token left (0.1/s)"
    );
    shutdown.cancel();
    server.stopped().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_asking_in_a_row_get_the_same_cached_answer() {
    // Core's GetAddresses cache (p2p_getaddr_caching): one answer per network and local
    // socket for about a day, however the address manager's answer changes meanwhile.
    let known: Vec<_> = (1..=20).map(routable).collect();
    let (server, rec, shutdown, at) = start(known.clone()).await;
    let mut answers = Vec::new();
    for i in 1..=5 {
        let (h, mut rx) = client(&format!("127.0.8.{i}"), at).await;
        h.send(NetworkMessage::GetAddr).unwrap();
        answers.push(addrs_within(&mut rx, Duration::from_millis(500)).await);
        h.disconnect();
    }
    assert_eq!(answers[0].len(), 20);
    for (i, a) in answers.iter().enumerate() {
        assert_eq!(a, &answers[0], "answer {} differs", i + 1);
    }
    assert_eq!(
        rec.asked.load(Ordering::SeqCst),
        1,
        "the source was asked once"
    );
    shutdown.cancel();
    server.stopped().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_announcement_waits_for_address_relay_to_be_enabled() {
    // Core's MaybeSendAddr returns early for peers without m_addr_relay_enabled.
    let ours: SocketAddr = "8.8.4.4:8333".parse().unwrap();
    let (server, _rec, shutdown, at) = start_with(Vec::new(), |cfg| {
        cfg.peer.local_address = Some(ours);
    })
    .await;
    let (h, mut rx) = client("127.0.9.1", at).await;
    assert!(
        addrs_within(&mut rx, Duration::from_millis(2500))
            .await
            .is_empty(),
        "announced to a peer that sent no address message"
    );
    h.send(NetworkMessage::GetAddr).unwrap();
    let got = addrs_within(&mut rx, Duration::from_millis(2500)).await;
    assert!(
        got.iter()
            .any(|a| a.addr == AddrV2::Ipv4([8, 8, 4, 4].into()) && a.port == 8333),
        "no self-announcement after getaddr: {got:?}"
    );
    shutdown.cancel();
    server.stopped().await.unwrap();
}
