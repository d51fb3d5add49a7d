#![allow(dead_code, unused_imports)]
//! Server shutdown with 100 peers and a dial in flight. Alone in its test binary (its own
//! process), so counting the process's open file descriptors is meaningful.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use common::tcp::*;
use common::*;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::{sleep, timeout, Instant};
use tokio_util::sync::CancellationToken;
use verack::peer::{
    DisconnectReason, HandshakeError, HandshakedPeer, IgnoreMessages, Peer, PeerConfig, PeerHandle,
};
use verack::server::{ConnectionKind, PeerEvent, Refusal, Server, ServerConfig};

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
    cfg.persistent = vec![sink.local_addr().unwrap().into()];
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
