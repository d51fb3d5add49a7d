//! Scenario `fanout`: how long a verack server takes to announce a new block to every peer.
//!
//! A `serve` child gets `--peers` idle raw-socket peers (a [`Fleet`]). Each run, this process
//! writes `relay <hash>` to the server's stdin and the fleet records, on the same monotonic
//! clock, when each peer's read carrying the block `inv` returned. Reported: from writing the
//! command to the last peer having the `inv` (ms). In `extra`: the median peer, and the
//! server-side part: from the server starting `relay_inventory` (its wall clock; same machine)
//! to the last arrival, and how long the `relay_inventory` call itself took.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bitcoin::hashes::Hash;
use bitcoin::{BlockHash, Network};
use serde_json::json;
use tokio::time::Instant;

use crate::handshake::runtime;
use crate::many_peers::{start_server, wait_admitted, Fleet, CONNECT_BOUND};
use crate::process;
use crate::report;

/// Flags of the `fanout` scenario.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Peers to announce to.
    #[arg(long, default_value_t = 1000)]
    pub peers: usize,
    /// Handshakes in progress at once while connecting.
    #[arg(long, default_value_t = 256)]
    pub in_flight: usize,
    /// Announcements (each a new block hash); the result is the median.
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
}

/// How long one announcement may take to reach everyone: 5 s.
const ARRIVAL_BOUND: Duration = Duration::from_secs(5);
/// Pause between announcements, so each starts from idle: 200 ms.
const PAUSE: Duration = Duration::from_millis(200);

fn unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Runs the scenario; one result: command to last arrival (ms), median of `runs`.
pub fn run(args: &Args) -> std::io::Result<Vec<report::Result>> {
    process::raise_fd_limit();
    let wall = std::time::Instant::now();
    let rt = runtime()?;
    let (mut server, addr) = start_server()?;
    let mut fleet = Fleet::start(
        rt.handle(),
        addr,
        Network::Regtest.magic(),
        args.peers,
        args.in_flight,
    );
    let hs = rt.block_on(fleet.handshakes(CONNECT_BOUND));
    if hs.ok < args.peers {
        eprintln!(
            "fanout: only {} of {} peers handshaked: {:?}",
            hs.ok, args.peers, hs.failures
        );
    }
    let admitted = wait_admitted(&mut server, hs.ok, Duration::from_secs(5))?;
    // Let the server's first pings be answered so the announcement meets idle peers.
    std::thread::sleep(Duration::from_secs(1));
    let (mut last, mut runs) = (Vec::new(), Vec::new());
    for _ in 0..args.runs.max(1) {
        let hash = BlockHash::from_byte_array(rand::random());
        let (sent_unix_ns, sent) = (unix_ns(), Instant::now());
        server.send_line(&format!("relay {hash}"))?;
        let arrivals = rt.block_on(fleet.blocks(hash, admitted, ARRIVAL_BOUND));
        let reply = server.next_json()?;
        let after: Vec<f64> = arrivals.iter().map(|a| ms(*a - sent)).collect();
        let last_ms = after.iter().copied().fold(0.0, f64::max);
        let relay_start_ns = reply["at_unix_ns"].as_u64().unwrap_or(sent_unix_ns);
        let stdin_ms = relay_start_ns.saturating_sub(sent_unix_ns) as f64 / 1e6;
        last.push(last_ms);
        runs.push(json!({
            "last_ms": last_ms,
            "p50_ms": report::percentile(&after, 50.0),
            "received": arrivals.len(),
            "relayed": reply["relayed"],
            "command_to_relay_start_ms": stdin_ms,
            "server_relay_start_to_last_ms": last_ms - stdin_ms,
            "relay_inventory_call_ms": reply["queue_ns"].as_f64().map(|ns| ns / 1e6),
        }));
        std::thread::sleep(PAUSE);
    }
    let pick = |key: &str| {
        runs.iter()
            .filter_map(|r| r[key].as_f64())
            .collect::<Vec<_>>()
    };
    let extra = json!({
        "peers": args.peers,
        "handshaked": hs.ok,
        "admitted": admitted,
        "lost": fleet.lost,
        "p50_ms": report::median(&pick("p50_ms")),
        "server_relay_start_to_last_ms": report::median(&pick("server_relay_start_to_last_ms")),
        "relay_inventory_call_ms": report::median(&pick("relay_inventory_call_ms")),
        "runs": runs,
        "wall_secs": wall.elapsed().as_secs_f64(),
    });
    Ok(vec![report::Result {
        scenario: "fanout",
        case: format!("block inv to {} peers, last arrival", args.peers),
        unit: "ms",
        verack: last,
        baseline: None,
        target: Some(50.0),
        higher_is_better: false,
        extra,
    }])
}
