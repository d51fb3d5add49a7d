//! Interop against bcoin, an independently written full node, on loopback regtest.
//!
//! The test starts bcoin itself (installed by `npm ci` in `interop/bcoin`, which `.ci/run`
//! does) and fails — never skips — when it cannot. bcoin is told to dial our listener
//! (`--only`), so both directions are exercised: bcoin → us (inbound), then us → bcoin
//! (outbound: handshake, ping, getheaders → headers).

mod common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use bitcoin::blockdata::constants::genesis_block;
use bitcoin::hashes::Hash;
use bitcoin::p2p::message::NetworkMessage;
use bitcoin::p2p::ServiceFlags;
use bitcoin::{block, BlockHash, Network};
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio::time::{sleep, timeout, Instant};
use tokio_util::sync::CancellationToken;
use verack::peer::{Direction, MessageHandler, Peer, PeerConfig, PeerHandle};

const API_KEY: &str = "interop";
/// A bcoin regtest (bech32 `rb`) address; bcoin rejects Core's `bcrt` prefix.
const MINING_ADDRESS: &str = "rb1qqyqszqgpqyqszqgpqyqszqgpqyqszqgpefl3jh";
/// Services bcoin requires of a peer it dials: NETWORK | WITNESS.
const BCOIN_REQUIRED_SERVICES: u64 = 0x9;

struct Bcoin {
    child: Child,
    p2p: SocketAddr,
    rpc: SocketAddr,
    prefix: PathBuf,
}

impl Bcoin {
    /// Kills bcoin and waits until it has exited (its ports are free again).
    async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

impl Drop for Bcoin {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        let _ = std::fs::remove_dir_all(&self.prefix);
    }
}

async fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn start_bcoin(dial: SocketAddr) -> Bcoin {
    start_bcoin_on(free_port().await, free_port().await, dial).await
}

/// Starts bcoin listening on `p2p`, RPC on `rpc`, dialling only `dial`.
async fn start_bcoin_on(p2p: u16, rpc: u16, dial: SocketAddr) -> Bcoin {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../interop/bcoin");
    let bin = dir.join("node_modules/bcoin/bin/node");
    assert!(
        bin.exists(),
        "bcoin is not installed: run `npm ci` in {} (.ci/run does)",
        dir.display()
    );
    let prefix = std::env::temp_dir().join(format!("verack-bcoin-{}-{p2p}", std::process::id()));
    let mut cmd = Command::new("node");
    cmd.arg(&bin)
        .args([
            "--network=regtest",
            "--no-wallet",
            "--workers=false",
            "--memory",
            "--log-level=warning",
            "--log-file=false",
        ])
        .args([
            "--listen",
            "--host=127.0.0.1",
            "--public-host=1.2.3.4",
            "--seeds=,",
            "--max-outbound=1",
        ])
        .arg(format!("--prefix={}", prefix.display()))
        .arg(format!("--port={p2p}"))
        .arg("--http-host=127.0.0.1")
        .arg(format!("--http-port={rpc}"))
        .arg(format!("--api-key={API_KEY}"))
        .arg(format!("--only={dial}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("BCOIN_")) {
        cmd.env_remove(key);
    }
    let child = cmd
        .spawn()
        .expect("node runs (apt nodejs / the machine's Node 20)");
    let mut node = Bcoin {
        child,
        p2p: SocketAddr::from(([127, 0, 0, 1], p2p)),
        rpc: SocketAddr::from(([127, 0, 0, 1], rpc)),
        prefix,
    };
    // Ready when RPC answers and the P2P port accepts; bounded to 20 s.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(Some(status)) = node.child.try_wait() {
            panic!("bcoin exited during startup: {status}");
        }
        if rpc_call(node.rpc, "getblockcount", "[]").await.is_ok()
            && TcpStream::connect(node.p2p).await.is_ok()
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "bcoin did not become ready within 20 s"
        );
        sleep(Duration::from_millis(50)).await;
    }
    node
}

/// A JSON-RPC call over a bare HTTP/1.0 request (bcoin: Basic auth, password = API key).
async fn rpc_call(rpc: SocketAddr, method: &str, params: &str) -> std::io::Result<String> {
    let body = format!(r#"{{"method":"{method}","params":{params}}}"#);
    // base64("x:interop")
    let request = format!(
        "POST / HTTP/1.0\r\nHost: 127.0.0.1\r\nAuthorization: Basic eDppbnRlcm9w\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut sock = timeout(Duration::from_secs(5), TcpStream::connect(rpc)).await??;
    sock.write_all(request.as_bytes()).await?;
    let mut response = String::new();
    timeout(Duration::from_secs(10), sock.read_to_string(&mut response)).await??;
    if !response.starts_with("HTTP/1.1 200") && !response.starts_with("HTTP/1.0 200") {
        return Err(std::io::Error::other(response));
    }
    Ok(response
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_string())
}

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
    let node = start_bcoin(listener.local_addr().unwrap()).await;
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
    let mined = rpc_call(
        node.rpc,
        "generatetoaddress",
        &format!(r#"[5,"{MINING_ADDRESS}"]"#),
    )
    .await
    .unwrap();
    assert!(mined.contains("\"result\":["), "{mined}");

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
    cfg.persistent = vec![bcoin_addr];
    cfg.connect_only = true;
    let server = Server::new(cfg, |_: &PeerHandle, _: ConnectionKind| {
        verack::peer::IgnoreMessages
    });
    let mut events = server.subscribe();
    let shutdown = CancellationToken::new();
    server.start(shutdown.clone()).await.unwrap();
    let ours = server.local_addrs()[0];

    let node = start_bcoin_on(p2p, rpc, ours).await;
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
    let node = start_bcoin_on(p2p, rpc, ours).await;
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
