//! `--signetchallenge` (issue 14 item 3): a node on a custom signet speaks the magic derived
//! from its challenge (BIP325, as Core's `-signetchallenge`) and nothing else.
//!
//! Bitcoin Core runs only on regtest in these tests (`../shared/bitcoin-core/README.md`), so
//! the peer here is the library's own `Peer` configured from `ChainParams::custom_signet`; the
//! derivation itself is checked against Core's default signet magic `0a03cf40` in
//! `verack::chain::params`. The node is started directly (the test launcher runs regtest
//! only): loopback listener, `--connect` to a dead loopback port (connect-only: no DNS seeds,
//! no automatic outbound), its own data directory.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bitcoin::Network;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use verack::chain::ChainParams;
use verack::peer::{BoxError, HandshakedPeer, Peer, PeerConfig, TransportKind};
use verack_testkit::{file_tail, free_port, scratch_dir, wait_for};

/// `OP_TRUE`.
const CHALLENGE: &str = "51";
const START_BOUND: Duration = Duration::from_secs(20);

fn verack_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_verack"))
}

/// The node process; killed and its directory removed on drop.
struct Node {
    child: Child,
    dir: std::path::PathBuf,
    p2p: SocketAddr,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn start() -> Node {
    let dir = scratch_dir("signet");
    let (p2p, rpc) = (free_port().await, free_port().await);
    let child = Command::new(verack_bin())
        .args([
            "--network=signet",
            &format!("--signetchallenge={CHALLENGE}"),
        ])
        .arg(format!("--datadir={}", dir.display()))
        .arg(format!("--listen=127.0.0.1:{p2p}"))
        .arg(format!("--rpc-port={rpc}"))
        .args(["--connect=127.0.0.1:1", "--log-level=info"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("verack.log")).unwrap())
        .spawn()
        .expect("run verack");
    let node = Node {
        child,
        dir,
        p2p: SocketAddr::from(([127, 0, 0, 1], p2p)),
    };
    wait_for("the signet node to listen", START_BOUND, || async {
        TcpStream::connect(node.p2p).await.ok().map(drop)
    })
    .await;
    node
}

async fn handshake(
    node: &Node,
    config: PeerConfig,
    transport: TransportKind,
) -> Result<HandshakedPeer<TcpStream>, String> {
    let stream = TcpStream::connect(node.p2p)
        .await
        .map_err(|e| e.to_string())?;
    Peer::outbound_with_transport(stream, node.p2p, config, transport)
        .handshake(&CancellationToken::new(), |_| Ok::<(), BoxError>(()))
        .await
        .map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_custom_signet_node_speaks_only_its_derived_magic() {
    let node = start().await;
    let params = ChainParams::custom_signet(&[0x51]);
    let mut custom = PeerConfig::new(Network::Signet);
    custom.magic = Some(params.magic);
    custom.handshake_timeout = Duration::from_secs(10);
    for transport in [TransportKind::V1, TransportKind::V2] {
        let peer = handshake(&node, custom.clone(), transport)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "{transport} handshake with the custom signet node: {e}\n{}",
                    file_tail(&node.dir.join("verack.log"), 30)
                )
            });
        let n = peer.negotiated();
        assert!(n.user_agent.starts_with("/verack:"), "{}", n.user_agent);
        assert_eq!(n.transport.kind(), transport);
        assert_eq!(n.start_height, 0);
    }
    // The default signet's magic is another network.
    let mut default = PeerConfig::new(Network::Signet);
    default.handshake_timeout = Duration::from_secs(10);
    let refused = handshake(&node, default, TransportKind::V1).await;
    assert!(refused.is_err(), "the default signet's magic is refused");
    let log = file_tail(&node.dir.join("verack.log"), 200);
    assert!(
        log.contains("custom signet") || log.contains("starting"),
        "{log}"
    );
}
