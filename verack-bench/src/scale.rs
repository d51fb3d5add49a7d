//! Scenario `scale`: the verack node at mainnet scale (issue 13's goals, at 900,000 headers by
//! default): resident memory, memory per header, start-up time from the store, and the store's
//! size on disk per header.
//!
//! 1. N regtest headers are generated in memory and served by the in-process feeder
//!    ([`crate::regtest_chain`]). A verack node (`--network regtest`, a temporary data dir)
//!    syncs them and writes them to its header store itself, with the store's own code; it is
//!    left to go idle (its store writer done) and stopped with SIGTERM.
//! 2. The store's files (`headers.sqlite` plus any `-wal`/`-shm`) are measured: bytes ÷ N.
//! 3. Each run: the real binary is started on that data dir with `--connect` to a dead
//!    loopback port (no peer can add headers) and `--listen=0`, timed from spawn to
//!    `getblockcount` = N (start-up: the store checked and loaded, the tree built, RPC up);
//!    then, once idle, its `VmRSS`. The same on an empty data dir gives the node's baseline;
//!    (RSS at N − empty RSS) ÷ N is the memory per header.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use serde_json::json;

use crate::headers::{settle, thousands, Node};
use crate::process::{free_port, rss_bytes};
use crate::regtest_chain::{Chain, Feeder};
use crate::report::{self, median};

/// Goal: RSS of the whole node at N headers, in MB (10^6 bytes).
const GOAL_RSS_MB: f64 = 128.0;
/// Goal: bytes per header in memory.
const GOAL_MEMORY_BYTES_PER_HEADER: f64 = 100.0;
/// Goal: start-up from the store, in seconds.
const GOAL_STARTUP_SECONDS: f64 = 1.5;
/// Goal: store bytes per header on disk.
const GOAL_STORE_BYTES_PER_HEADER: f64 = 100.0;
/// The header count the goals are set for.
const GOAL_HEADERS: u32 = 900_000;

/// Flags of the `scale` scenario.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Headers in the chain (above genesis).
    #[arg(long, default_value_t = GOAL_HEADERS)]
    pub headers: u32,
    /// Start-ups from the store (and from an empty store); the results are medians.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// The verack node binary.
    #[arg(long, default_value = "target/release/verack")]
    pub verack: std::path::PathBuf,
}

/// Runs the scenario; four results (RSS, memory per header, start-up, store per header).
///
/// # Errors
/// A missing binary, a node not reaching the height in time, I/O.
pub fn run(args: &Args) -> std::io::Result<Vec<report::Result>> {
    if !args.verack.is_file() {
        return Err(std::io::Error::other(format!(
            "{} not found (build it, or pass --verack)",
            args.verack.display()
        )));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("scale")
        .enable_all()
        .build()?;
    runtime.block_on(scenario(args))
}

/// Stops `node` with SIGTERM and waits for it to exit (it is killed when dropped otherwise).
fn terminate(mut node: Node) -> std::io::Result<()> {
    let pid = node.child.id();
    // SAFETY: kill(2) on our own child's pid has no memory-safety preconditions.
    unsafe {
        libc::kill(pid as libc::pid_t, libc::SIGTERM);
    }
    node.child.wait()?;
    Ok(())
}

/// A start on `datadir` with no reachable peer: seconds from spawn to `getblockcount` =
/// `height`, seconds to the first RPC answer, and RSS in bytes once idle.
async fn start(exe: &Path, datadir: &Path, height: u32) -> std::io::Result<(f64, f64, u64)> {
    let dead = SocketAddr::from(([127, 0, 0, 1], free_port()?));
    let mut node = Node::spawn_on(exe, datadir, dead, false)?;
    let synced = node.wait_for_height(height.into()).await?;
    let pid = node.child.id();
    settle(pid).await;
    let rss = rss_bytes(pid).ok_or_else(|| std::io::Error::other("no VmRSS"))?;
    terminate(node)?;
    Ok((synced.seconds, synced.rpc_up.unwrap_or(synced.seconds), rss))
}

async fn scenario(args: &Args) -> std::io::Result<Vec<report::Result>> {
    let started = Instant::now();
    let n = args.headers;
    let chain = Arc::new(Chain::generate(n));
    let feeder = Feeder::start(chain).await?;
    let dir = tempfile::Builder::new()
        .prefix("verack-bench-scale-")
        .tempdir()?;
    let full = dir.path().join("full");
    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&full)?;
    std::fs::create_dir_all(&empty)?;

    // 1. The store, written by the node itself.
    let mut writer = Node::spawn_on(&args.verack, &full, feeder.addr(), false)?;
    let initial_sync = writer.wait_for_height(n.into()).await?.seconds;
    settle(writer.child.id()).await;
    terminate(writer)?;
    drop(feeder);

    // 2. Its size.
    let mut store_bytes = 0;
    for name in ["headers.sqlite", "headers.sqlite-wal", "headers.sqlite-shm"] {
        if let Ok(meta) = std::fs::metadata(full.join("regtest").join(name)) {
            store_bytes += meta.len();
        }
    }
    let store_per_header = store_bytes as f64 / f64::from(n);

    // 3. Start-ups, alternating full and empty.
    let (mut startups, mut rpc_ups, mut rss_full, mut rss_empty) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..args.runs {
        let (seconds, rpc_up, rss) = start(&args.verack, &full, n).await?;
        startups.push(seconds);
        rpc_ups.push(rpc_up);
        rss_full.push(rss as f64);
        let (_, _, rss) = start(&args.verack, &empty, 0).await?;
        rss_empty.push(rss as f64);
    }
    let per_header: Vec<f64> = rss_full
        .iter()
        .zip(&rss_empty)
        .map(|(f, e)| (f - e) / f64::from(n))
        .collect();
    let mb = |v: &[f64]| v.iter().map(|b| b / 1e6).collect::<Vec<f64>>();
    let at_goal = n == GOAL_HEADERS;
    let case = |what: &str| format!("{what}, {} regtest headers", thousands(n));
    let extra = json!({
        "headers": n,
        "store_bytes": store_bytes,
        "rss_bytes_full": rss_full,
        "rss_bytes_empty": rss_empty,
        "rss_empty_mb_median": median(&rss_empty) / 1e6,
        "startup_rpc_first_answer_seconds": rpc_ups,
        "initial_sync_seconds": initial_sync,
        "method": "verack --network regtest --connect <dead loopback port> --listen=0 on the \
            data dir a node synced from the feeder (store written by the node itself); \
            start-up = spawn to getblockcount = N, polled every 5 ms; RSS = VmRSS once idle; \
            per header = (RSS at N - RSS on an empty data dir) / N; store = headers.sqlite \
            plus -wal/-shm after a SIGTERM stop",
        "scenario_seconds": started.elapsed().as_secs_f64(),
    });
    let result = |what: &str, unit, samples: Vec<f64>, goal| report::Result {
        scenario: "scale",
        case: case(what),
        unit,
        verack: samples,
        baseline: None,
        target: at_goal.then_some(goal),
        higher_is_better: false,
        extra: extra.clone(),
    };
    Ok(vec![
        result("node RSS", "MB", mb(&rss_full), GOAL_RSS_MB),
        result(
            "memory per header (RSS delta vs empty store)",
            "bytes",
            per_header,
            GOAL_MEMORY_BYTES_PER_HEADER,
        ),
        result(
            "start-up from the store to RPC getblockcount = N",
            "s",
            startups,
            GOAL_STARTUP_SECONDS,
        ),
        result(
            "store on disk per header",
            "bytes",
            vec![store_per_header],
            GOAL_STORE_BYTES_PER_HEADER,
        ),
    ])
}
