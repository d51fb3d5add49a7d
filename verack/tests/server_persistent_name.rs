//! Persistent peers given by host name (Core's `-addnode=host:port`): looked up before every
//! dial, so a reconnection finds the name's current address. Over loopback TCP; the only name
//! used is `localhost` (a test resolver may answer for it with other loopback ports).

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::tcp::*;
use tokio::sync::broadcast::Receiver;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;
use verack::backoff::Backoff;
use verack::peer::{Direction, TransportKind};
use verack::server::{
    ConnectionKind, DialFuture, Dialer, ManualTransport, PeerEvent, PeerTarget, ResolveFuture,
    Server, ServerConfig, TcpDialer,
};

/// Bound for each awaited event.
const EVENT: Duration = Duration::from_secs(10);

/// How the test resolver answers for a name.
#[derive(Clone)]
enum Answer {
    /// The system resolver (tokio's `lookup_host`), as the default `Dialer::resolve`.
    System,
    /// This address, whatever the name.
    Fixed(SocketAddr),
    /// A lookup failure.
    Fail,
}

/// TCP dialing, with host names answered as `answer` says and every lookup counted.
#[derive(Clone)]
struct TestResolver {
    answer: Arc<Mutex<Answer>>,
    lookups: Arc<Mutex<Vec<(String, u16)>>>,
}

impl TestResolver {
    fn new(answer: Answer) -> TestResolver {
        TestResolver {
            answer: Arc::new(Mutex::new(answer)),
            lookups: Arc::default(),
        }
    }

    fn set(&self, answer: Answer) {
        *self.answer.lock().unwrap() = answer;
    }

    fn lookups(&self) -> usize {
        self.lookups.lock().unwrap().len()
    }
}

impl Dialer for TestResolver {
    fn dial(&self, addr: SocketAddr) -> DialFuture {
        TcpDialer.dial(addr)
    }

    fn resolve(&self, host: &str, port: u16) -> ResolveFuture {
        self.lookups.lock().unwrap().push((host.to_owned(), port));
        match self.answer.lock().unwrap().clone() {
            Answer::System => TcpDialer.resolve(host, port),
            Answer::Fixed(addr) => Box::pin(async move { Ok(vec![addr]) }),
            Answer::Fail => Box::pin(async {
                Err(std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "no such name (test)",
                ))
            }),
        }
    }
}

/// A connect-only server (no listener, no outbound loop) keeping `target`, with a short
/// backoff so reconnections are quick.
async fn keeper(
    target: PeerTarget,
    v1_only: Vec<PeerTarget>,
    dialer: TestResolver,
) -> (Server<Handlers>, CancellationToken, Receiver<PeerEvent>) {
    let mut cfg = ServerConfig::new(common::config());
    cfg.connect_only = true;
    cfg.target_full_relay = 0;
    cfg.target_block_relay = 0;
    cfg.feeler_interval = None;
    cfg.persistent = vec![target];
    cfg.v1_only_manual = v1_only;
    cfg.persistent_backoff = Backoff {
        initial: Duration::from_millis(50),
        max: Duration::from_millis(200),
        jitter: 0.0,
    };
    let server = Server::new(cfg, ignore as Handlers).with_dialer(dialer);
    let events = server.subscribe();
    let shutdown = CancellationToken::new();
    server.start(shutdown.clone()).await.unwrap();
    (server, shutdown, events)
}

/// The next `Connected` event: its address, kind and transport.
async fn next_connected(
    events: &mut Receiver<PeerEvent>,
) -> (SocketAddr, ConnectionKind, TransportKind) {
    loop {
        let event = timeout(EVENT, events.recv())
            .await
            .expect("connected within the bound")
            .unwrap();
        if let PeerEvent::Connected {
            addr,
            kind,
            negotiated,
            ..
        } = event
        {
            return (addr, kind, negotiated.transport.kind());
        }
    }
}

async fn next_disconnected(events: &mut Receiver<PeerEvent>) -> SocketAddr {
    loop {
        let event = timeout(EVENT, events.recv())
            .await
            .expect("disconnected within the bound")
            .unwrap();
        if let PeerEvent::Disconnected { addr, .. } = event {
            return addr;
        }
    }
}

async fn stop(server: Server<Handlers>, shutdown: CancellationToken) {
    shutdown.cancel();
    server.stopped().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn localhost_is_looked_up_again_at_each_reconnection() {
    let (remote, remote_stop, at) = started(server_config()).await;
    let text = format!("localhost:{}", at.port());
    let target = PeerTarget::parse(&text, 18444).unwrap();
    assert_eq!(
        target,
        PeerTarget::Name {
            host: "localhost".into(),
            port: at.port()
        }
    );
    let resolver = TestResolver::new(Answer::System);
    let (server, shutdown, mut events) = keeper(target.clone(), vec![], resolver.clone()).await;
    assert_eq!(server.persistent_peers(), vec![target.clone()]);

    let (addr, kind, transport) = next_connected(&mut events).await;
    assert_eq!(
        (addr, kind),
        (at, ConnectionKind::Manual),
        "localhost resolved to the listener"
    );
    assert_eq!(transport, TransportKind::V2, "manual peers try v2 first");
    let first = resolver.lookups();
    assert!(first >= 1);

    // The remote goes away and comes back on the same port: a new lookup precedes the
    // reconnection.
    stop(remote, remote_stop).await;
    assert_eq!(next_disconnected(&mut events).await, at);
    let mut cfg = server_config();
    cfg.listen = vec![at];
    let (remote, remote_stop, again) = started(cfg).await;
    assert_eq!(again, at);
    let (addr, kind, _) = next_connected(&mut events).await;
    assert_eq!((addr, kind), (at, ConnectionKind::Manual));
    assert!(
        resolver.lookups() > first,
        "looked up again before reconnecting"
    );
    assert!(resolver
        .lookups
        .lock()
        .unwrap()
        .iter()
        .all(|(host, port)| host == "localhost" && *port == at.port()));
    assert_eq!(server.count(Direction::Outbound), 1);
    stop(server, shutdown).await;
    stop(remote, remote_stop).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_that_moves_is_followed_on_reconnection() {
    let (old, old_stop, old_at) = started(server_config()).await;
    let (new, new_stop, new_at) = started(server_config()).await;
    let resolver = TestResolver::new(Answer::Fixed(old_at));
    let target = PeerTarget::parse("localhost", 18444).unwrap();
    let (server, shutdown, mut events) = keeper(target, vec![], resolver.clone()).await;
    assert_eq!(next_connected(&mut events).await.0, old_at);

    resolver.set(Answer::Fixed(new_at));
    stop(old, old_stop).await;
    assert_eq!(next_disconnected(&mut events).await, old_at);
    assert_eq!(
        next_connected(&mut events).await.0,
        new_at,
        "the name's new address is dialled"
    );
    stop(server, shutdown).await;
    stop(new, new_stop).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_lookup_is_an_event_and_is_retried() {
    let (remote, remote_stop, at) = started(server_config()).await;
    let resolver = TestResolver::new(Answer::Fail);
    let target = PeerTarget::parse(&format!("localhost:{}", at.port()), 18444).unwrap();
    let (server, shutdown, mut events) = keeper(target, vec![], resolver.clone()).await;
    loop {
        let event = timeout(EVENT, events.recv()).await.unwrap().unwrap();
        match event {
            PeerEvent::ResolveFailed { host, port, error } => {
                assert_eq!((host.as_str(), port), ("localhost", at.port()));
                assert_eq!(error.kind(), std::io::ErrorKind::NotFound);
                break;
            }
            PeerEvent::Connected { .. } => panic!("connected without an address"),
            _ => {}
        }
    }
    resolver.set(Answer::System);
    assert_eq!(next_connected(&mut events).await.0, at);
    stop(server, shutdown).await;
    stop(remote, remote_stop).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_only_by_name_covers_the_resolved_address() {
    let (remote, remote_stop, at) = started(server_config()).await;
    let target = PeerTarget::parse(&format!("localhost:{}", at.port()), 18444).unwrap();
    let resolver = TestResolver::new(Answer::System);
    let (server, shutdown, mut events) =
        keeper(target.clone(), vec![target.clone()], resolver).await;
    assert_eq!(
        server.manual_transport(target.clone()),
        ManualTransport::V1Only
    );
    assert_eq!(server.manual_transport(at), ManualTransport::V2First);
    let (addr, _, transport) = next_connected(&mut events).await;
    assert_eq!((addr, transport), (at, TransportKind::V1));
    assert!(server.remove_persistent(target.clone()));
    assert!(!server.remove_persistent(target));
    stop(server, shutdown).await;
    stop(remote, remote_stop).await;
}
