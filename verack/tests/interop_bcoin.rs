//! Interop against bcoin, an independently written full node, on loopback regtest.
//!
//! The test starts bcoin itself (installed by `npm ci` in `interop/bcoin`, which `.ci/run`
//! does) and fails — never skips — when it cannot. bcoin is told to dial our listener
//! (`--only`), so both directions are exercised: bcoin → us (inbound), then us → bcoin
//! (outbound: handshake, ping, getheaders → headers).

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use bitcoin::blockdata::constants::genesis_block;
use bitcoin::hashes::Hash;
use bitcoin::p2p::message::NetworkMessage;
use bitcoin::p2p::ServiceFlags;
use bitcoin::{block, BlockHash, Network};
use common::*;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::{sleep, timeout, Instant};
use tokio_util::sync::CancellationToken;
use verack::peer::{Direction, MessageHandler, Peer, PeerConfig, PeerHandle};
use verack_testkit::{free_port, Bcoin, BCOIN_REQUIRED_SERVICES};

struct Forward(mpsc::UnboundedSender<NetworkMessage>);
impl MessageHandler for Forward {
    async fn on_message(&mut self, _peer: &PeerHandle, message: NetworkMessage) {
        let _ = self.0.send(message);
    }
}

async fn wait_for_ping(handle: &PeerHandle) -> Duration {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(rtt) = handle.stats().last_ping {
            return rtt;
        }
        assert!(Instant::now() < deadline, "no pong within 10 s");
        sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bcoin_regtest_both_directions() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let node = Bcoin::start(Some(listener.local_addr().unwrap())).await;
    let mut cfg = PeerConfig::new(Network::Regtest);
    cfg.services = ServiceFlags::from(BCOIN_REQUIRED_SERVICES);

    // Inbound: bcoin dials us.
    let (sock, from) = timeout(Duration::from_secs(15), listener.accept())
        .await
        .expect("bcoin dials within 15 s")
        .unwrap();
    let cancel = CancellationToken::new();
    let inbound = Peer::inbound(sock, from, cfg.clone())
        .handshake(&cancel, accept)
        .await
        .expect("inbound handshake with bcoin");
    assert_eq!(inbound.direction(), Direction::Inbound);
    assert!(
        inbound.negotiated().user_agent.starts_with("/bcoin:"),
        "{}",
        inbound.negotiated().user_agent
    );
    assert_eq!(inbound.negotiated().protocol_version, 70015);
    let in_handle = inbound.handle();
    let in_run = tokio::spawn(inbound.run(verack::peer::IgnoreMessages, cancel.clone()));
    let rtt = wait_for_ping(&in_handle).await;
    assert!(rtt < Duration::from_secs(5));

    // Mine so that bcoin answers getheaders (it never sends an empty `headers`).
    assert_eq!(node.mine(5).await.len(), 5);

    // Outbound: we dial bcoin.
    let sock = TcpStream::connect(node.p2p).await.unwrap();
    let outbound = Peer::outbound(sock, node.p2p, cfg)
        .handshake(&cancel, accept)
        .await
        .expect("outbound handshake with bcoin");
    let n = outbound.negotiated().clone();
    assert!(n.user_agent.starts_with("/bcoin:"));
    assert_eq!((n.remote_version, n.protocol_version), (70015, 70015));
    assert!(n.services.has(ServiceFlags::NETWORK));
    assert_eq!(n.start_height, 5);
    let handle = outbound.handle();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let run = tokio::spawn(outbound.run(Forward(tx), cancel.clone()));
    wait_for_ping(&handle).await;

    let genesis = genesis_block(Network::Regtest).block_hash();
    assert!(handle
        .push_getheaders(vec![genesis], BlockHash::all_zeros())
        .unwrap());
    let headers: Vec<block::Header> = timeout(Duration::from_secs(10), async {
        loop {
            if let Some(NetworkMessage::Headers(h)) = rx.recv().await {
                return h;
            }
        }
    })
    .await
    .expect("headers within 10 s");
    assert_eq!(headers.len(), 5);
    assert_eq!(headers[0].prev_blockhash, genesis);
    for pair in headers.windows(2) {
        assert_eq!(
            pair[1].prev_blockhash,
            pair[0].block_hash(),
            "headers connect"
        );
    }
    for h in &headers {
        h.validate_pow(h.target()).expect("regtest proof of work");
    }
    let s = handle.stats();
    assert!(s.bytes_received_per_command["headers"] >= 24 + 1 + 5 * 81);
    assert!(!handle.is_disconnected() && !in_handle.is_disconnected());

    handle.disconnect();
    in_handle.disconnect();
    assert!(matches!(
        run.await.unwrap(),
        verack::peer::DisconnectReason::LocalRequest
    ));
    assert!(matches!(
        in_run.await.unwrap(),
        verack::peer::DisconnectReason::LocalRequest
    ));
    drop(node);
}

/// The server accepts bcoin's inbound connection and keeps bcoin as a persistent peer,
/// reconnecting after bcoin restarts on the same port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_accepts_bcoin_and_keeps_it_as_a_persistent_peer_across_restarts() {
    use verack::server::{ConnectionKind, PeerEvent, Server, ServerConfig};
    let (p2p, rpc) = (free_port().await, free_port().await);
    let bcoin_addr = SocketAddr::from(([127, 0, 0, 1], p2p));
    let mut peer_cfg = PeerConfig::new(Network::Regtest);
    peer_cfg.services = ServiceFlags::from(BCOIN_REQUIRED_SERVICES);
    let mut cfg = ServerConfig::new(peer_cfg);
    cfg.listen = vec!["127.0.0.1:0".parse().unwrap()];
    cfg.persistent = vec![bcoin_addr.into()];
    // bcoin bans an address that sends it a v2 key: no v2-first attempt.
    cfg.v1_only_manual = vec![bcoin_addr.into()];
    cfg.connect_only = true;
    let server = Server::new(cfg, |_: &PeerHandle, _: ConnectionKind| {
        verack::peer::IgnoreMessages
    });
    let mut events = server.subscribe();
    let shutdown = CancellationToken::new();
    server.start(shutdown.clone()).await.unwrap();
    let ours = server.local_addrs()[0];

    let node = Bcoin::start_on(p2p, rpc, Some(ours)).await;
    let (mut inbound, mut manual) = (0, 0);
    let deadline = Instant::now() + Duration::from_secs(30);
    while inbound < 1 || manual < 1 {
        let left = deadline.saturating_duration_since(Instant::now());
        match timeout(left, events.recv())
            .await
            .expect("bcoin connects both ways within 30 s")
            .unwrap()
        {
            PeerEvent::Connected {
                kind: ConnectionKind::Inbound,
                negotiated,
                ..
            } => {
                assert!(negotiated.user_agent.starts_with("/bcoin:"));
                inbound += 1;
            }
            PeerEvent::Connected {
                kind: ConnectionKind::Manual,
                addr,
                negotiated,
                ..
            } => {
                assert_eq!(addr, bcoin_addr);
                assert!(negotiated.user_agent.starts_with("/bcoin:"));
                manual += 1;
            }
            _ => {}
        }
    }
    assert_eq!(server.count_kind(ConnectionKind::Manual), 1);

    // Restart bcoin on the same port: the persistent peer comes back.
    node.stop().await;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match timeout(left, events.recv())
            .await
            .expect("the manual peer disconnects")
            .unwrap()
        {
            PeerEvent::Disconnected { addr, .. } if addr == bcoin_addr => break,
            _ => {}
        }
    }
    let node = Bcoin::start_on(p2p, rpc, Some(ours)).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let event = timeout(left, events.recv())
            .await
            .expect("reconnected after the restart")
            .unwrap();
        if let PeerEvent::Connected {
            kind: ConnectionKind::Manual,
            addr,
            ..
        } = event
        {
            assert_eq!(addr, bcoin_addr);
            break;
        }
    }
    shutdown.cancel();
    server.stopped().await.unwrap();
    assert_eq!(server.tasks(), 0);
    drop(node);
}
