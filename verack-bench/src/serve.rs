//! Internal role `serve`: a verack [`Server`] on 127.0.0.1:0 (regtest) that only listens,
//! driven by one command per stdin line, for the `handshake`, `many-peers` and `fanout`
//! scenarios.
//!
//! It prints `READY <addr>`, then answers each command with one JSON line:
//! - `count`: `{"inbound": admitted inbound peers, "pending": handshakes in progress}`;
//! - `relay [HASH]`: relays one block inventory (HASH in hex, else random) to every peer:
//!   `{"relayed": peers queued for, "at_unix_ns": wall clock when the call started,
//!   "queue_ns": how long `relay_inventory` took}`;
//! - `quit` (or EOF): stops the server and exits, printing nothing.
//!
//! Admission limits are raised so thousands of loopback connections are not throttled; no
//! outbound connections are made; every message is ignored (pings are still answered).

use std::net::SocketAddr;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bitcoin::hashes::Hash;
use bitcoin::p2p::message_blockdata::Inventory;
use bitcoin::{BlockHash, Network};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_util::sync::CancellationToken;
use verack::peer::{IgnoreMessages, PeerConfig, PeerHandle};
use verack::server::{ConnectionKind, Server, ServerConfig};

use crate::process;

/// Inbound and total connection limits of the bench server (the client side has 20,000 fds).
pub const MAX_PEERS: usize = 20_000;
/// Effectively unlimited per-IP and pending-per-/24 limits (all bench peers are 127.0.0.x).
const UNLIMITED: usize = 1_000_000;

/// The server configuration: regtest, listening on 127.0.0.1:0, limits raised, no outbound
/// connections, feelers or seeds; `max_pending` handshakes at once.
pub fn config(max_pending: usize) -> ServerConfig {
    let mut cfg = ServerConfig::new(PeerConfig::new(Network::Regtest));
    cfg.listen = vec![SocketAddr::from(([127, 0, 0, 1], 0))];
    cfg.max_pending_handshakes = max_pending;
    cfg.admission.max_per_ip = UNLIMITED;
    cfg.admission.max_pending_per_group = UNLIMITED;
    cfg.admission.max_inbound = MAX_PEERS;
    cfg.admission.max_total = MAX_PEERS;
    cfg.target_full_relay = 0;
    cfg.target_block_relay = 0;
    cfg.feeler_interval = None;
    cfg.connect_only = true;
    cfg.shutdown_timeout = Duration::from_secs(5);
    cfg
}

/// Child role: runs the server on a two-worker runtime until `quit` or EOF on stdin.
pub fn run(max_pending: usize) -> std::io::Result<()> {
    process::raise_fd_limit();
    crate::heap::enable();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("serve")
        .enable_all()
        .build()?
        .block_on(serve(max_pending))
}

async fn serve(max_pending: usize) -> std::io::Result<()> {
    let server = Server::new(config(max_pending), |_: &PeerHandle, _: ConnectionKind| {
        IgnoreMessages
    });
    let cancel = CancellationToken::new();
    server
        .start(cancel.clone())
        .await
        .map_err(std::io::Error::other)?;
    let addr = server.local_addrs()[0];
    println!("READY {addr}");
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = lines.next_line().await? {
        match command(&server, line.trim()) {
            Some(reply) => println!("{reply}"),
            None => break,
        }
    }
    cancel.cancel();
    let _ = server.stopped().await;
    Ok(())
}

/// Executes one command; `None` means quit.
fn command<H: verack::server::PeerHandlers>(server: &Server<H>, line: &str) -> Option<Value> {
    let mut words = line.split_whitespace();
    let reply = match words.next() {
        Some("count") => json!({
            "inbound": server.count(verack::peer::Direction::Inbound),
            "pending": server.pending_handshakes(),
            "heap_bytes": crate::heap::live_bytes(),
        }),
        Some("relay") => {
            let hash = match words.next().map(BlockHash::from_str) {
                Some(Ok(h)) => h,
                Some(Err(e)) => return Some(json!({ "error": e.to_string() })),
                None => BlockHash::from_byte_array(rand::random()),
            };
            relay(server, hash)
        }
        Some("quit") => return None,
        other => json!({ "error": format!("unknown command {other:?}") }),
    };
    Some(reply)
}

/// Relays `hash` as a block inventory to every peer (blocks are sent at once, not trickled).
fn relay<H: verack::server::PeerHandlers>(server: &Server<H>, hash: BlockHash) -> Value {
    let at_unix_ns = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let started = std::time::Instant::now();
    let relayed = server.relay_inventory(&[Inventory::Block(hash)], None);
    let queue_ns = started.elapsed().as_nanos() as u64;
    json!({ "relayed": relayed, "at_unix_ns": at_unix_ns, "queue_ns": queue_ns })
}
