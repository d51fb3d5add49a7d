//! `Server::accept_inbound`: connections the caller accepted itself (a TCP listener of its
//! own, an in-memory pipe standing in for an onion service or a proxied listener) go through
//! the same checkpoints as the server's own listeners.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::tcp::*;
use common::{accept, config};
use tokio::io::{AsyncReadExt, DuplexStream};
use tokio::net::TcpListener;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;
use verack::peer::{Direction, HandshakedPeer, Peer};
use verack::server::{ConnectionKind, PeerEvent, Refusal, Server, ServerError};

fn at(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// A library client handshaking over `stream` with the server.
async fn client_over(stream: DuplexStream) -> HandshakedPeer<DuplexStream> {
    timeout(
        Duration::from_secs(10),
        Peer::outbound(stream, at("10.0.0.1:8333"), config())
            .handshake(&CancellationToken::new(), accept),
    )
    .await
    .expect("handshake within 10 s")
    .expect("handshake succeeds")
}

/// True once the far end of a pipe handed to the server is closed.
async fn pipe_closed(end: &mut DuplexStream) -> bool {
    let mut buf = [0u8; 256];
    loop {
        match timeout(Duration::from_secs(5), end.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handed_in_streams_are_served_as_inbound_peers() {
    let mut cfg = server_config();
    cfg.listen.clear();
    let server = Server::new(cfg, ignore as Handlers);
    // Not running yet.
    let (ours, _theirs) = tokio::io::duplex(1 << 16);
    assert!(matches!(
        server.accept_inbound(ours, at("10.1.0.1:1")),
        Err(ServerError::NotRunning)
    ));
    let shutdown = CancellationToken::new();
    server.start(shutdown.clone()).await.unwrap();
    let mut events = server.subscribe();

    // An in-memory pipe, with a made-up remote address (as an onion service would give).
    let (ours, theirs) = tokio::io::duplex(1 << 16);
    let remote = at("10.1.2.3:5555");
    server.accept_inbound(ours, remote).unwrap();
    let (_pipe_peer, _r1) = {
        let p = client_over(theirs).await;
        let h = p.handle();
        (
            h,
            tokio::spawn(p.run(verack::peer::IgnoreMessages, CancellationToken::new())),
        )
    };
    // A TCP connection accepted by the caller's own listener.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let target = listener.local_addr().unwrap();
    let (dialled, accepted) = tokio::join!(client("127.0.7.1", target), async {
        let (stream, from) = listener.accept().await.unwrap();
        server.accept_inbound(stream, from).unwrap();
        from
    });
    let (_tcp_peer, _r2) = keep(dialled.unwrap());

    let mut seen = Vec::new();
    while seen.len() < 2 {
        let event = timeout(Duration::from_secs(10), events.recv())
            .await
            .expect("events")
            .unwrap();
        if let PeerEvent::Connected { addr, kind, .. } = event {
            assert_eq!(kind, ConnectionKind::Inbound);
            seen.push(addr);
        }
    }
    seen.sort();
    let mut want = vec![remote, accepted];
    want.sort();
    assert_eq!(seen, want);
    assert_eq!(server.count(Direction::Inbound), 2);
    assert!(server.peer_by_addr(remote).is_some());
    assert_eq!(server.stats().external_inbound, 2);
    shutdown.cancel();
    server.stopped().await.unwrap();
    let (ours, _theirs) = tokio::io::duplex(1 << 16);
    assert!(matches!(
        server.accept_inbound(ours, at("10.1.0.2:1")),
        Err(ServerError::NotRunning)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handed_in_streams_pass_the_listener_checkpoints() {
    let mut cfg = server_config();
    cfg.listen.clear();
    cfg.admission.deny = vec!["10.8.0.0/16".parse().unwrap()];
    cfg.admission.max_inbound = 2;
    cfg.max_pending_handshakes = 2;
    let server = Server::new(cfg, ignore as Handlers);
    let shutdown = CancellationToken::new();
    server.start(shutdown.clone()).await.unwrap();
    let mut events = server.subscribe();

    // Bans.
    server.ban(
        "10.9.9.9/32".parse().unwrap(),
        Duration::from_secs(60),
        "test",
    );
    let (ours, mut theirs) = tokio::io::duplex(1 << 16);
    assert!(matches!(
        server.accept_inbound(ours, at("10.9.9.9:1")),
        Err(ServerError::Refused(Refusal::Banned))
    ));
    assert!(pipe_closed(&mut theirs).await, "a refused stream is closed");
    assert_eq!(next_refusal(&mut events).await, Refusal::Banned);
    // Deny list.
    let (ours, _theirs) = tokio::io::duplex(1 << 16);
    assert!(matches!(
        server.accept_inbound(ours, at("10.8.1.1:1")),
        Err(ServerError::Refused(Refusal::Denied))
    ));

    // Pending-handshake slots: two silent streams fill them; a third makes room by dropping
    // the longest-pending one.
    let (s1, mut silent1) = tokio::io::duplex(1 << 16);
    let (s2, _silent2) = tokio::io::duplex(1 << 16);
    let (s3, _silent3) = tokio::io::duplex(1 << 16);
    server.accept_inbound(s1, at("10.1.0.1:1")).unwrap();
    server.accept_inbound(s2, at("10.2.0.1:1")).unwrap();
    assert_eq!(server.pending_handshakes(), 2);
    server.accept_inbound(s3, at("10.3.0.1:1")).unwrap();
    assert_eq!(server.pending_handshakes(), 2);
    assert!(
        pipe_closed(&mut silent1).await,
        "the longest-pending handshake was dropped"
    );

    // Inbound limit: two admitted; with Core's protections covering both, a third is refused
    // after its handshake.
    let mut kept = Vec::new();
    for (i, remote) in ["10.4.0.1:1", "10.5.0.1:1", "10.6.0.1:1"]
        .iter()
        .enumerate()
    {
        let (ours, theirs) = tokio::io::duplex(1 << 16);
        server.accept_inbound(ours, at(remote)).unwrap();
        let p = client_over(theirs).await;
        let h = p.handle();
        kept.push((
            h,
            tokio::spawn(p.run(verack::peer::IgnoreMessages, CancellationToken::new())),
        ));
        if i == 1 {
            wait_until("two admitted", || server.count(Direction::Inbound) == 2).await;
        }
    }
    loop {
        match timeout(Duration::from_secs(10), events.recv())
            .await
            .expect("events")
            .unwrap()
        {
            PeerEvent::Refused { addr, refusal, .. } if addr == at("10.6.0.1:1") => {
                assert_eq!(refusal, Refusal::InboundFull);
                break;
            }
            _ => {}
        }
    }
    assert_eq!(server.count(Direction::Inbound), 2);
    assert_eq!(server.stats().external_inbound, 6);
    shutdown.cancel();
    server.stopped().await.unwrap();
}
