//! Loopback-TCP helpers for server tests: a started server, clients bound to chosen
//! 127.x.y.z addresses, and bounded waits.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::{sleep, timeout, Instant};
use tokio_util::sync::CancellationToken;
use verack::peer::{
    DisconnectReason, HandshakeError, HandshakedPeer, IgnoreMessages, Peer, PeerConfig, PeerHandle,
};
use verack::server::{ConnectionKind, PeerEvent, Refusal, Server, ServerConfig};

use super::{accept, config};

pub type Handlers = fn(&PeerHandle, ConnectionKind) -> IgnoreMessages;

pub fn ignore(_: &PeerHandle, _: ConnectionKind) -> IgnoreMessages {
    IgnoreMessages
}

pub fn server_config() -> ServerConfig {
    let mut cfg = ServerConfig::new(config());
    cfg.listen = vec!["127.0.0.1:0".parse().unwrap()];
    cfg.target_full_relay = 0;
    cfg.target_block_relay = 0;
    cfg
}

pub async fn started(cfg: ServerConfig) -> (Server<Handlers>, CancellationToken, SocketAddr) {
    let server = Server::new(cfg, ignore as Handlers);
    let shutdown = CancellationToken::new();
    server.start(shutdown.clone()).await.unwrap();
    let at = server.local_addrs()[0];
    (server, shutdown, at)
}

pub async fn connect_from(from: &str, to: SocketAddr) -> TcpStream {
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

pub async fn client(
    from: &str,
    to: SocketAddr,
) -> Result<HandshakedPeer<TcpStream>, HandshakeError> {
    client_with(from, to, config()).await
}

pub async fn client_with(
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
pub fn keep(
    peer: HandshakedPeer<TcpStream>,
) -> (PeerHandle, tokio::task::JoinHandle<DisconnectReason>) {
    let h = peer.handle();
    (
        h,
        tokio::spawn(peer.run(IgnoreMessages, CancellationToken::new())),
    )
}

/// True if the server closes `stream` within `within`.
pub async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
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

pub async fn next_refusal(events: &mut tokio::sync::broadcast::Receiver<PeerEvent>) -> Refusal {
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

pub async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        sleep(Duration::from_millis(10)).await;
    }
}
