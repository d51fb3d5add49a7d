//! Onion peers in the server: a Tor candidate goes to the onion proxy as a name, unresolved,
//! and is never dialled when no onion proxy is set (Bitcoin Core's `-onion` / `IsReachable`).
//!
//! The refusal case uses a SOCKS5 server written here, on loopback, that records the request
//! and answers "host unreachable" as Tor does for an unknown onion service: `microsocks` would
//! hand an onion name to the system resolver, whose DNS query would leave loopback. The
//! routing case goes through a real `microsocks` (Debian package, installed by `.ci/run`).

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use verack_testkit::Microsocks;

use bitcoin::p2p::ServiceFlags;
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;
use verack::address::{Net, PeerAddr};
use verack::peer::{IgnoreMessages, Peer, PeerHandle};
use verack::proxy::{NetworkDialer, ReplyCode, Socks5Dialer, Socks5Error};
use verack::server::{
    ConnectionKind, DialFuture, Dialer, FixedAddresses, PeerEvent, Server, ServerConfig,
};

const ONION: &str = "pg6mmjiyjmcrsslvykfwnntlaru7p5svn6y2ymmju6nubxndf4pscryd.onion:8333";
const WITHIN: Duration = Duration::from_secs(20);

fn handlers() -> impl Fn(&PeerHandle, ConnectionKind) -> IgnoreMessages + Send + Sync + 'static {
    |_: &PeerHandle, _| IgnoreMessages
}

fn server_config(targets: usize) -> ServerConfig {
    let mut cfg = ServerConfig::new(config());
    cfg.target_full_relay = targets;
    cfg.target_block_relay = 0;
    cfg.feeler_interval = None;
    cfg.dial_timeout = Duration::from_secs(10);
    cfg
}

/// A one-shot SOCKS5 server on loopback: accepts one client, takes "no authentication",
/// reads the CONNECT request and answers reply code 4 (host unreachable). Returns its address
/// and a task giving (address type, host bytes, port) of the request.
async fn refusing_socks5() -> (SocketAddr, tokio::task::JoinHandle<(u8, Vec<u8>, u16)>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut head = [0u8; 2];
        s.read_exact(&mut head).await.unwrap();
        assert_eq!(head[0], 5, "SOCKS version");
        let mut methods = vec![0u8; head[1] as usize];
        s.read_exact(&mut methods).await.unwrap();
        assert!(
            methods.contains(&0),
            "offers no authentication: {methods:?}"
        );
        s.write_all(&[5, 0]).await.unwrap();
        let mut req = [0u8; 4];
        s.read_exact(&mut req).await.unwrap();
        assert_eq!(req[..3], [5, 1, 0], "CONNECT");
        let host = match req[3] {
            1 => {
                let mut b = vec![0u8; 4];
                s.read_exact(&mut b).await.unwrap();
                b
            }
            3 => {
                let len = s.read_u8().await.unwrap();
                let mut b = vec![0u8; len as usize];
                s.read_exact(&mut b).await.unwrap();
                b
            }
            4 => {
                let mut b = vec![0u8; 16];
                s.read_exact(&mut b).await.unwrap();
                b
            }
            other => panic!("address type {other}"),
        };
        let port = s.read_u16().await.unwrap();
        s.write_all(&[5, 4, 0, 1, 0, 0, 0, 0, 0, 0]).await.unwrap();
        (req[3], host, port)
    });
    (addr, task)
}

#[tokio::test]
async fn an_onion_candidate_goes_to_the_onion_proxy_by_name_and_its_refusal_is_typed() {
    let onion: PeerAddr = ONION.parse().unwrap();
    let (proxy, request) = refusing_socks5().await;
    // IP unreachable here (no IP candidates anyway); Tor through the refusing proxy.
    let dialer = NetworkDialer::new().with_onion_proxy(Some(Socks5Dialer::new(proxy)));
    let server = Server::new(server_config(1), handlers())
        .with_dialer(dialer)
        .with_address_source(FixedAddresses::new(vec![onion.stand_in()]));
    let mut events = server.subscribe();
    let shutdown = CancellationToken::new();
    server.start(shutdown.clone()).await.unwrap();

    let (addr, error) = tokio::time::timeout(WITHIN, async {
        loop {
            if let PeerEvent::DialFailed { addr, error } = events.recv().await.unwrap() {
                return (addr, error);
            }
        }
    })
    .await
    .expect("a dial failure within 20 s");
    // The event names the peer by its stand-in, which reads back as the onion address.
    assert_eq!(addr, onion.stand_in());
    assert_eq!(PeerAddr::from_stand_in(addr), Some(onion));
    // The proxy's refusal arrives typed.
    assert_eq!(error.kind(), std::io::ErrorKind::HostUnreachable);
    let socks = error
        .get_ref()
        .and_then(|e| e.downcast_ref::<Socks5Error>())
        .expect("a Socks5Error inside");
    assert!(
        matches!(socks, Socks5Error::Refused { code, .. } if *code == ReplyCode(4)),
        "{socks}"
    );
    // The proxy got the name (ATYP 3), unresolved, and the port.
    let (atyp, host, port) = request.await.unwrap();
    assert_eq!(atyp, 3, "sent as a name");
    assert_eq!(String::from_utf8(host).unwrap(), onion.host.to_string());
    assert_eq!(port, 8333);
    shutdown.cancel();
}

/// Records every dial and delegates to a [`NetworkDialer`].
struct Recording {
    inner: NetworkDialer,
    dials: Arc<Mutex<Vec<PeerAddr>>>,
}

impl Dialer for Recording {
    fn dial(&self, addr: SocketAddr) -> DialFuture {
        self.dials
            .lock()
            .unwrap()
            .push(PeerAddr::from_socket_addr(addr));
        self.inner.dial(addr)
    }
    fn dial_peer(&self, addr: &PeerAddr) -> DialFuture {
        self.dials.lock().unwrap().push(*addr);
        self.inner.dial_peer(addr)
    }
    fn reaches(&self, net: Net) -> bool {
        self.inner.reaches(net)
    }
}

/// A verack full node listening on loopback, accepting one peer.
async fn listening_peer() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (stream, from) = listener.accept().await.unwrap();
        let mut cfg = config();
        cfg.services = ServiceFlags::NETWORK | ServiceFlags::WITNESS;
        let peer = Peer::inbound(stream, from, cfg);
        if let Ok(p) = peer.handshake(&CancellationToken::new(), accept).await {
            p.run(IgnoreMessages, CancellationToken::new()).await;
        }
    });
    addr
}

#[tokio::test]
async fn without_an_onion_proxy_the_onion_candidate_is_never_dialled() {
    let socks = Microsocks::start(&[]).await;
    let onion: PeerAddr = ONION.parse().unwrap();
    let ip_peer = listening_peer().await;
    // As the node with --proxy and --onion=0: IP through microsocks, Tor unreachable.
    let dialer = NetworkDialer::new().with_ip_proxy(Some(Socks5Dialer::new(socks.addr)));
    assert!(!dialer.reaches(Net::Onion));
    let dials = Arc::new(Mutex::new(Vec::new()));
    let server = Server::new(server_config(2), handlers())
        .with_dialer(Recording {
            inner: dialer,
            dials: dials.clone(),
        })
        .with_address_source(FixedAddresses::new(vec![onion.stand_in(), ip_peer]));
    let mut events = server.subscribe();
    let shutdown = CancellationToken::new();
    server.start(shutdown.clone()).await.unwrap();

    let connected = tokio::time::timeout(WITHIN, async {
        loop {
            match events.recv().await.unwrap() {
                PeerEvent::Connected { addr, .. } => return addr,
                PeerEvent::DialFailed { addr, error } => panic!("dial of {addr} failed: {error}"),
                _ => {}
            }
        }
    })
    .await
    .expect("connected within 20 s");
    assert_eq!(connected, ip_peer);
    // The fill that dialled the IP peer had both candidates and left the onion one alone.
    assert_eq!(
        *dials.lock().unwrap(),
        vec![PeerAddr::from_socket_addr(ip_peer)]
    );
    let log = socks.log();
    assert!(
        log.contains(&format!("connected to {ip_peer}")),
        "the IP peer was reached through microsocks: {log}"
    );
    assert!(!log.contains(".onion"), "{log}");
    shutdown.cancel();
}

#[tokio::test]
async fn a_manual_onion_peer_is_dialled_by_name_not_looked_up() {
    use verack::server::PeerTarget;
    let onion: PeerAddr = ONION.parse().unwrap();
    // As Core's -connect=<name>.onion: a host name the server must not resolve.
    let target = PeerTarget::parse(ONION, 18444).unwrap();
    assert!(matches!(target, PeerTarget::Name { .. }));
    let (proxy, request) = refusing_socks5().await;
    let mut cfg = server_config(0);
    cfg.persistent = vec![target];
    cfg.connect_only = true;
    let server = Server::new(cfg, handlers())
        .with_dialer(NetworkDialer::new().with_onion_proxy(Some(Socks5Dialer::new(proxy))));
    let mut events = server.subscribe();
    let shutdown = CancellationToken::new();
    server.start(shutdown.clone()).await.unwrap();
    let failed = tokio::time::timeout(WITHIN, async {
        loop {
            match events.recv().await.unwrap() {
                PeerEvent::DialFailed { addr, error } => return (addr, error),
                PeerEvent::ResolveFailed { host, error, .. } => {
                    panic!("{host} was looked up: {error}")
                }
                _ => {}
            }
        }
    })
    .await
    .expect("a dial failure within 20 s");
    assert_eq!(PeerAddr::from_stand_in(failed.0), Some(onion));
    assert_eq!(failed.1.kind(), std::io::ErrorKind::HostUnreachable);
    let (atyp, host, port) = request.await.unwrap();
    assert_eq!(
        (atyp, String::from_utf8(host).unwrap(), port),
        (3, onion.host.to_string(), 8333)
    );
    shutdown.cancel();
}

#[tokio::test]
async fn an_addr_fetch_to_an_onion_name_goes_to_the_proxy_not_the_resolver() {
    use verack::server::{AddrFetchError, PeerTarget};
    let onion: PeerAddr = ONION.parse().unwrap();
    let (proxy, request) = refusing_socks5().await;
    let server = Server::new(server_config(0), handlers())
        .with_dialer(NetworkDialer::new().with_onion_proxy(Some(Socks5Dialer::new(proxy))));
    let shutdown = CancellationToken::new();
    server.start(shutdown.clone()).await.unwrap();
    let target = PeerTarget::parse(ONION, 18444).unwrap();
    let result = tokio::time::timeout(WITHIN, server.addr_fetch(target))
        .await
        .expect("the addr-fetch ends within 20 s");
    match result {
        Err(AddrFetchError::Dial(error)) => {
            assert_eq!(error.kind(), std::io::ErrorKind::HostUnreachable)
        }
        other => panic!("expected the proxy's refusal as a dial error, got {other:?}"),
    }
    let (atyp, host, port) = request.await.unwrap();
    assert_eq!(
        (atyp, String::from_utf8(host).unwrap(), port),
        (3, onion.host.to_string(), 8333)
    );
    shutdown.cancel();
}
