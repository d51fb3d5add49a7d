#![allow(dead_code, unused_imports)]
//! Server shutdown with 100 peers and a dial in flight. Alone in its test binary (its own
//! process), so counting the process's open file descriptors is meaningful.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use common::*;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::{sleep, timeout, Instant};
use tokio_util::sync::CancellationToken;
use verack::peer::{
    DisconnectReason, HandshakeError, HandshakedPeer, IgnoreMessages, Peer, PeerConfig, PeerHandle,
};
use verack::server::{ConnectionKind, PeerEvent, Refusal, Server, ServerConfig};

type Handlers = fn(&PeerHandle, ConnectionKind) -> IgnoreMessages;

fn ignore(_: &PeerHandle, _: ConnectionKind) -> IgnoreMessages {
    IgnoreMessages
}

fn server_config() -> ServerConfig {
    let mut cfg = ServerConfig::new(config());
    cfg.listen = vec!["127.0.0.1:0".parse().unwrap()];
    cfg.target_full_relay = 0;
    cfg.target_block_relay = 0;
    cfg
}

async fn started(cfg: ServerConfig) -> (Server<Handlers>, CancellationToken, SocketAddr) {
    let server = Server::new(cfg, ignore as Handlers);
    let shutdown = CancellationToken::new();
    server.start(shutdown.clone()).await.unwrap();
    let at = server.local_addrs()[0];
    (server, shutdown, at)
}

async fn connect_from(from: &str, to: SocketAddr) -> TcpStream {
    let ip: IpAddr = from.parse().unwrap();
    let socket = if ip.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .unwrap();
    socket.bind(SocketAddr::new(ip, 0)).unwrap();
    socket.connect(to).await.unwrap()
}

async fn client(from: &str, to: SocketAddr) -> Result<HandshakedPeer<TcpStream>, HandshakeError> {
    client_with(from, to, config()).await
}

async fn client_with(
    from: &str,
    to: SocketAddr,
    cfg: PeerConfig,
) -> Result<HandshakedPeer<TcpStream>, HandshakeError> {
    let stream = connect_from(from, to).await;
    Peer::outbound(stream, to, cfg)
        .handshake(&CancellationToken::new(), accept)
        .await
}

/// Runs a handshaked client in the background; returns its handle.
fn keep(
    peer: HandshakedPeer<TcpStream>,
) -> (PeerHandle, tokio::task::JoinHandle<DisconnectReason>) {
    let h = peer.handle();
    (
        h,
        tokio::spawn(peer.run(IgnoreMessages, CancellationToken::new())),
    )
}

/// True if the server closes `stream` within `within`.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let deadline = Instant::now() + within;
    loop {
        match timeout(
            deadline.saturating_duration_since(Instant::now()),
            stream.read(&mut buf),
        )
        .await
        {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

async fn next_refusal(events: &mut tokio::sync::broadcast::Receiver<PeerEvent>) -> Refusal {
    loop {
        match timeout(Duration::from_secs(5), events.recv())
            .await
            .expect("an event")
            .unwrap()
        {
            PeerEvent::Refused { refusal, .. } => return refusal,
            _ => continue,
        }
    }
}

async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        sleep(Duration::from_millis(10)).await;
    }
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_with_100_peers_and_dials_in_flight_is_bounded_and_leaves_nothing() {
    let baseline_fds = open_fds();
    let mut cfg = server_config();
    cfg.admission.max_per_ip = 200;
    cfg.admission.max_pending_per_group = 200;
    // A persistent peer whose listener never accepts: the TCP connect completes in the kernel
    // backlog and our handshake waits, so a dial is in flight when we stop.
    let sink = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    cfg.target_full_relay = 0;
    cfg.persistent = vec![sink.local_addr().unwrap()];
    let (server, shutdown, at) = started(cfg).await;
    let mut clients = Vec::new();
    for i in 0..100 {
        clients.push(keep(
            client(&format!("127.3.{}.{}", i / 50, 1 + i % 50), at)
                .await
                .unwrap(),
        ));
    }
    wait_until("100 admitted", || {
        server.count(verack::peer::Direction::Inbound) == 100
    })
    .await;
    wait_until("the dial in flight", || server.dials_in_flight() == 1).await;
    let began = Instant::now();
    shutdown.cancel();
    server.stopped().await.unwrap();
    let took = began.elapsed();
    assert!(took < Duration::from_secs(3), "stopping took {took:?}");
    assert_eq!(server.tasks(), 0, "no task left");
    assert_eq!(server.peers().len(), 0);
    for (_, r) in clients {
        assert!(matches!(
            timeout(Duration::from_secs(5), r).await.unwrap().unwrap(),
            DisconnectReason::RemoteClosed
        ));
    }
    drop(sink);
    drop(server);
    sleep(Duration::from_millis(100)).await;
    assert_eq!(open_fds(), baseline_fds, "every socket closed");
    assert!(matches!(
        Server::new(server_config(), ignore as Handlers)
            .stopped()
            .await,
        Err(verack::server::ServerError::NotStarted)
    ));
}
