//! The `bridge` example (issue 14 item 9) end to end: Bitcoin Core A, started with
//! `-connect=<bridge>`, does its initial block download of [`BLOCKS`] blocks from Core B
//! through the bridge and ends on B's tip. The two Cores handshake with each other (the
//! bridge has no handshake of its own), and the bytes each Core counts per command equal what
//! the bridge relayed.
//!
//! The example's code runs in-process (its source is included as a module, so the test needs
//! no second build): [`bridge::Bridge`] is exactly what `cargo run --example bridge` runs.

use std::collections::BTreeMap;
use std::time::Duration;

use clap::Parser;
use serde_json::Value;
use verack_testkit::{wait_for, BitcoinCore};

#[allow(dead_code)]
#[path = "../examples/bridge.rs"]
mod bridge;

/// Blocks B mines before A starts.
const BLOCKS: u64 = 210;
/// Bound for A's download through the bridge.
const IBD_BOUND: Duration = Duration::from_secs(120);
/// Bound for the bridge to finish once A has stopped.
const CLOSE_BOUND: Duration = Duration::from_secs(30);

/// Per-command byte totals of one direction (`>` or `<`) in the bridge's log.
fn logged_bytes(log: &str, arrow: &str) -> BTreeMap<String, u64> {
    let mut totals = BTreeMap::new();
    for line in log.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        if let [_ms, dir, command, bytes] = fields[..] {
            if dir == arrow {
                *totals.entry(command.to_string()).or_default() += bytes.parse::<u64>().unwrap();
            }
        }
    }
    totals
}

/// One Core peer entry's `bytes{sent,recv}_per_msg` for `command` (0 when absent).
fn per_msg(peer: &Value, field: &str, command: &str) -> u64 {
    peer[field][command].as_u64().unwrap_or(0)
}

/// B mines, the bridge relays A to B, A (started with `a_args`) syncs; `v2_first` says whether
/// A's first connection must have been a v2 attempt that the bridge closed.
async fn relay_ibd(a_args: &[&str], v2_first: bool) {
    let b = BitcoinCore::start().await;
    b.mine(BLOCKS as u32).await;
    let tip = b.best_hash().await;

    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("bridge.log");
    let args = bridge::Args::parse_from([
        "bridge",
        "--network",
        "regtest",
        "--listen",
        "127.0.0.1:0",
        "--connect",
        &b.p2p.to_string(),
        "--log",
        log_path.to_str().unwrap(),
    ]);
    let relay = bridge::Bridge::bind(&args).await.expect("bridge binds");
    let at = relay.local_addr();
    let running = tokio::spawn(relay.run());

    let connect = format!("-connect={at}");
    let mut a_all = vec![connect.as_str()];
    a_all.extend_from_slice(a_args);
    let a = BitcoinCore::start_with(&a_all).await;
    wait_for("A's tip to be B's", IBD_BOUND, || async {
        (a.best_hash().await == tip).then_some(())
    })
    .await;
    assert_eq!(a.block_count().await, BLOCKS);

    // A's one peer is the bridge; B's is the bridge's dial. Each saw the other's version.
    let a_peers = a.peer_info().await;
    assert_eq!(a_peers.len(), 1, "{a_peers:#?}");
    let a_peer = &a_peers[0];
    assert_eq!(a_peer["addr"], at.to_string());
    assert_eq!(a_peer["connection_type"], "manual");
    assert_eq!(a_peer["transport_protocol_type"], "v1");
    assert!(a_peer["subver"].as_str().unwrap().starts_with("/Satoshi:"));
    assert_eq!(a_peer["version"], 70017, "B's version reached A");
    assert_eq!(a_peer["synced_blocks"], BLOCKS);
    let b_peers = b.peer_info().await;
    assert_eq!(b_peers.len(), 1, "{b_peers:#?}");
    let b_peer = &b_peers[0];
    assert_eq!(b_peer["inbound"], true);
    assert!(b_peer["subver"].as_str().unwrap().starts_with("/Satoshi:"));
    assert_eq!(b_peer["version"], 70017, "A's version reached B");
    assert!(per_msg(b_peer, "bytessent_per_msg", "block") > 0);

    a.stop().await;
    let summary = tokio::time::timeout(CLOSE_BOUND, running)
        .await
        .expect("the bridge ends when A closes")
        .expect("the bridge task does not panic")
        .expect("the bridge accepted and dialled");
    assert_eq!(summary.error, None, "a clean close");
    let log = std::fs::read_to_string(&log_path).unwrap();
    let forward = logged_bytes(&log, ">");
    let back = logged_bytes(&log, "<");
    assert_eq!(
        summary.forward.bytes,
        forward.values().sum::<u64>(),
        "one log line per frame"
    );
    assert_eq!(summary.back.bytes, back.values().sum::<u64>());
    let refused = log
        .lines()
        .filter(|l| l.contains("not the v1 magic"))
        .count();
    assert_eq!(refused, usize::from(v2_first), "v2 attempts closed:\n{log}");
    let blocks = log.lines().filter(|l| l.contains(" < block ")).count();
    assert!(blocks >= BLOCKS as usize, "{blocks} blocks relayed");
    for command in ["version", "verack", "sendaddrv2", "wtxidrelay"] {
        assert!(forward.contains_key(command), "A's {command} relayed");
        assert!(back.contains_key(command), "B's {command} relayed");
    }
    // Byte for byte: what each Core counted for these commands (header included) is what the
    // bridge relayed; none of them can still be in flight once A is at B's tip.
    for command in ["version", "verack", "headers", "block"] {
        assert_eq!(
            per_msg(a_peer, "bytesrecv_per_msg", command),
            back.get(command).copied().unwrap_or(0),
            "A received {command}"
        );
        assert_eq!(
            per_msg(b_peer, "bytessent_per_msg", command),
            back.get(command).copied().unwrap_or(0),
            "B sent {command}"
        );
    }
    for command in ["version", "verack", "getheaders", "getdata"] {
        assert_eq!(
            per_msg(a_peer, "bytessent_per_msg", command),
            forward.get(command).copied().unwrap_or(0),
            "A sent {command}"
        );
        assert_eq!(
            per_msg(b_peer, "bytesrecv_per_msg", command),
            forward.get(command).copied().unwrap_or(0),
            "B received {command}"
        );
    }
    b.stop().await;
}

/// A over v1 (`-v2transport=0`), as the test.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn core_downloads_blocks_from_core_through_the_bridge() {
    relay_ibd(&["-v2transport=0"], false).await;
}

/// A with Core's default `-v2transport=1`: its v2 attempt is closed by the bridge, and Core
/// re-dials over v1 by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_v2_attempt_is_closed_and_core_redials_v1() {
    relay_ibd(&[], true).await;
}

/// Frames pass byte for byte, including one with a bad checksum (the receiver judges it); a
/// frame with another network's magic ends the relay with a framing error, and both
/// connections close.
#[tokio::test]
async fn frames_pass_unchanged_and_a_foreign_magic_ends_the_relay() {
    use bitcoin::p2p::message::NetworkMessage;
    use bitcoin::Network;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    use tokio::time::timeout;
    use verack::wire::encode_frame;

    let limit = Duration::from_secs(10);
    let target = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("bridge.log");
    let args = bridge::Args::parse_from([
        "bridge",
        "--listen",
        "127.0.0.1:0",
        "--connect",
        &target.local_addr().unwrap().to_string(),
        "--log",
        log_path.to_str().unwrap(),
    ]);
    let relay = bridge::Bridge::bind(&args).await.unwrap();
    let at = relay.local_addr();
    let running = tokio::spawn(relay.run());

    let mut a = TcpStream::connect(at).await.unwrap();
    let ping = encode_frame(Network::Regtest.magic(), &NetworkMessage::Ping(7)).unwrap();
    let mut bad = ping.to_vec();
    bad[20] ^= 0xff; // the checksum's first byte
    let sent = [bad.as_slice(), &ping].concat();
    a.write_all(&sent).await.unwrap();
    let (mut b, _) = timeout(limit, target.accept()).await.unwrap().unwrap();
    let mut got = vec![0; sent.len()];
    timeout(limit, b.read_exact(&mut got))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, sent, "relayed unchanged");

    let foreign = encode_frame(Network::Bitcoin.magic(), &NetworkMessage::Ping(1)).unwrap();
    b.write_all(&foreign).await.unwrap();
    let summary = timeout(limit, running).await.unwrap().unwrap().unwrap();
    let error = summary.error.expect("a framing error");
    assert!(error.contains("wrong network magic"), "{error}");
    assert_eq!(summary.forward.frames, 2);
    assert_eq!(summary.forward.bytes, sent.len() as u64);
    assert_eq!(summary.back.frames, 0);
    let mut rest = Vec::new();
    let n = timeout(limit, a.read_to_end(&mut rest))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n, 0, "A's connection closed with nothing relayed back");
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert_eq!(log.matches(" > ping 32").count(), 2, "{log}");
}
