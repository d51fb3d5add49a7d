//! Scenario 4, `headers`: how long a fresh verack node takes to sync N regtest headers from a
//! local verack node, against the independent nakamoto 0.4 light client syncing the same
//! headers from the same node. Lower is better; the ratio is verack / nakamoto.
//!
//! 1. N headers are generated in memory and served by a feeder, an in-process verack-library
//!    listener that answers `getheaders` as a full node ([`crate::regtest_chain`]).
//! 2. Node A, `verack --network regtest` on a fresh data dir, `--connect`s to the feeder and
//!    syncs all N; the time from its spawn to `getblockcount` = N goes in `extra`.
//! 3. Each run, in alternating order: node B, a fresh `verack --connect <A>`, timed from its
//!    spawn to `getblockcount` = N (polled every [`POLL`]); and `nakamoto-sync --connect <A>
//!    --height N --force-node-network`, whose own `seconds` (client start to tip ≥ N) is the
//!    baseline sample, with the wall time around its process in `extra`.
//!
//! nakamoto 0.4 syncs headers only from a peer advertising `NODE_NETWORK` (bit 0); verack is
//! header-only and advertises only `NODE_P2P_V2`, so `--force-node-network` puts a loopback
//! relay in front of node A that sets bit 0 in A's first `version` (one extra local hop).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use verack_testkit::rpc_call;

use crate::process::{children_cpu_seconds, cpu_seconds, free_port};
use crate::regtest_chain::{Chain, Feeder};
use crate::report;

/// Interval between `getblockcount` polls of a syncing node: 5 ms.
pub const POLL: Duration = Duration::from_millis(5);
/// Bound on every sync (node A's, node B's, nakamoto's): 120 s.
pub const SYNC_TIMEOUT: Duration = Duration::from_secs(120);
/// A process using less CPU than this (seconds) in [`IDLE_WINDOW`] is idle: 0.01 s, one
/// clock tick of /proc accounting.
const IDLE_CPU: f64 = 0.01;
/// The window of the idle check: 250 ms.
const IDLE_WINDOW: Duration = Duration::from_millis(250);
/// Bound on waiting for node A to go idle after its sync: 10 s.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(10);
/// The target for node B's sync of [`TARGET_HEADERS`] headers, in seconds (none for other sizes).
const TARGET_SECONDS: f64 = 2.0;
const TARGET_HEADERS: u32 = 100_000;
const RELAY_NOTE: &str = "nakamoto 0.4 syncs headers only from peers advertising NODE_NETWORK \
    (bit 0); verack is header-only and advertises only NODE_P2P_V2, so nakamoto-sync \
    --force-node-network runs a loopback relay in front of node A that sets bit 0 in A's first \
    version message and otherwise copies bytes (one extra local hop, v1 transport)";

/// Flags of the `headers` scenario.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Headers in the chain (above genesis).
    #[arg(long, default_value_t = 100_000)]
    pub headers: u32,
    /// Runs of each client; the result is the median.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// The nakamoto-sync binary (build it in verack-bench/nakamoto-client).
    #[arg(
        long,
        default_value = "verack-bench/nakamoto-client/target/release/nakamoto-sync"
    )]
    pub nakamoto: PathBuf,
    /// The verack node binary.
    #[arg(long, default_value = "target/release/verack")]
    pub verack: PathBuf,
}

/// Runs the scenario; one result.
///
/// # Errors
/// A missing binary, node A or a node B not reaching the tip within [`SYNC_TIMEOUT`], I/O.
/// A failed nakamoto run is recorded in `extra` instead.
pub fn run(args: &Args) -> std::io::Result<Vec<report::Result>> {
    for exe in [&args.verack, &args.nakamoto] {
        if !exe.is_file() {
            return Err(std::io::Error::other(format!(
                "{} not found (build it, or pass --verack / --nakamoto)",
                exe.display()
            )));
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("headers")
        .enable_all()
        .build()?;
    runtime.block_on(scenario(args)).map(|r| vec![r])
}

async fn scenario(args: &Args) -> std::io::Result<report::Result> {
    let started = Instant::now();
    let n = args.headers;
    let chain = Arc::new(Chain::generate(n));
    let generation = started.elapsed().as_secs_f64();
    let feeder = Feeder::start(chain).await?;
    let mut node_a = Node::spawn(&args.verack, feeder.addr(), true)?;
    let a_sync = node_a.wait_for_height(n.into()).await?;
    let a_addr = node_a.p2p.expect("node A listens");
    let a_pid = node_a.child.id();
    let a_settle = settle(a_pid).await;

    let (mut verack, mut nakamoto) = (Vec::new(), Vec::new());
    let (mut verack_runs, mut nakamoto_runs) = (Vec::new(), Vec::new());
    let mut transport = Value::Null;
    for run in 0..args.runs {
        for verack_turn in [run % 2 == 0, run % 2 == 1] {
            let a_cpu = cpu_seconds(a_pid).unwrap_or(0.0);
            if verack_turn {
                let mut node_b = Node::spawn(&args.verack, a_addr, false)?;
                let synced = node_b.wait_for_height(n.into()).await?;
                let b_cpu = cpu_seconds(node_b.child.id()).unwrap_or(0.0);
                let a_cpu = cpu_seconds(a_pid).unwrap_or(0.0) - a_cpu;
                if let Ok(peers) = node_b.call("getpeerinfo").await {
                    transport = peers[0]["transport_protocol_type"].clone();
                }
                verack.push(synced.seconds);
                verack_runs.push(json!({
                    "seconds": synced.seconds,
                    "seconds_to_rpc": synced.rpc_up,
                    "cpu_seconds": b_cpu,
                    "node_a_cpu_seconds": a_cpu,
                }));
            } else {
                let mut outcome = sync_nakamoto(&args.nakamoto, a_addr, n).await;
                outcome["node_a_cpu_seconds"] = json!(cpu_seconds(a_pid).unwrap_or(0.0) - a_cpu);
                if let Some(s) = outcome["seconds"]
                    .as_f64()
                    .filter(|_| outcome["error"].is_null())
                {
                    nakamoto.push(s);
                }
                nakamoto_runs.push(outcome);
            }
        }
    }
    let served = feeder.served();
    drop(node_a);
    drop(feeder);
    Ok(report::Result {
        scenario: "header_sync",
        case: format!("{} regtest headers from a local verack node", thousands(n)),
        unit: "s",
        verack,
        baseline: (!nakamoto.is_empty()).then(|| ("nakamoto 0.4.0 (crates.io)".into(), nakamoto)),
        target: (n == TARGET_HEADERS).then_some(TARGET_SECONDS),
        higher_is_better: false,
        extra: json!({
            "lower_is_better": true,
            "ratio_is": "verack seconds / nakamoto seconds (< 1: verack faster)",
            "headers": n,
            "verack_timing": "spawn of a fresh verack node B (--connect node A, --listen=0) to \
                its getblockcount = N, polled every 5 ms",
            "nakamoto_timing": "nakamoto-sync's own seconds: client start to tip >= N; \
                wall_seconds is the whole process",
            "verack_transport": transport,
            "verack_runs": verack_runs,
            "nakamoto_runs": nakamoto_runs,
            "node_a_cpu_seconds_note": "node A's CPU time while serving one sync",
            "node_a_initial_sync_seconds": a_sync.seconds,
            "node_a_initial_sync_note": "verack node A from an in-memory verack-library feeder, \
                spawn to getblockcount = N",
            "node_a_settle_seconds": a_settle,
            "node_a_settle_note": "wait after node A's sync until it was idle (its store \
                writer done), before the timed runs",
            "feeder_headers_served": served,
            "generation_seconds": generation,
            "relay": RELAY_NOTE,
            "scenario_seconds": started.elapsed().as_secs_f64(),
        }),
    })
}

/// Waits until process `pid` is idle: under [`IDLE_CPU`] of CPU time in [`IDLE_WINDOW`], or
/// [`SETTLE_TIMEOUT`] passed. Returns the seconds waited.
pub(crate) async fn settle(pid: u32) -> f64 {
    let started = Instant::now();
    let mut before = cpu_seconds(pid).unwrap_or(0.0);
    while started.elapsed() < SETTLE_TIMEOUT {
        tokio::time::sleep(IDLE_WINDOW).await;
        let now = cpu_seconds(pid).unwrap_or(0.0);
        if now - before < IDLE_CPU {
            break;
        }
        before = now;
    }
    started.elapsed().as_secs_f64()
}

/// `100000` as `100,000`.
pub(crate) fn thousands(n: u32) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// One `nakamoto-sync` run: its JSON line plus `wall_seconds` and `cpu_seconds` (the child's,
/// from `RUSAGE_CHILDREN`); `error` is set if it failed.
async fn sync_nakamoto(exe: &Path, peer: SocketAddr, height: u32) -> Value {
    let cpu = children_cpu_seconds();
    let started = Instant::now();
    let child = tokio::process::Command::new(exe)
        .arg(format!("--connect={peer}"))
        .arg(format!("--height={height}"))
        .arg("--force-node-network")
        .arg(format!("--timeout-secs={}", SYNC_TIMEOUT.as_secs()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn();
    let bound = SYNC_TIMEOUT + Duration::from_secs(15);
    let output = match child {
        Ok(c) => tokio::time::timeout(bound, c.wait_with_output()).await,
        Err(e) => return json!({ "error": format!("{}: {e}", exe.display()) }),
    };
    let wall = started.elapsed().as_secs_f64();
    let output = match output {
        Ok(Ok(o)) => o,
        Ok(Err(e)) => return json!({ "error": e.to_string() }),
        Err(_) => return json!({ "error": format!("no exit within {bound:?}; killed") }),
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    let mut value: Value = serde_json::from_str(line).unwrap_or_else(|_| json!({}));
    if !output.status.success() && value["error"].is_null() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        value["error"] = json!(format!("{}: {}", output.status, stderr.trim()));
    }
    value["wall_seconds"] = json!(wall);
    value["cpu_seconds"] = json!(children_cpu_seconds() - cpu);
    value
}

/// When a node reached the height, in seconds since its spawn.
pub(crate) struct Synced {
    pub(crate) seconds: f64,
    /// When its RPC first answered.
    pub(crate) rpc_up: Option<f64>,
}

/// A `verack --network regtest` child on a fresh temporary data dir; killed, and the dir
/// removed, when dropped.
pub(crate) struct Node {
    pub(crate) child: Child,
    /// Its P2P listen address, when listening.
    p2p: Option<SocketAddr>,
    rpc: SocketAddr,
    cookie: Option<(String, String)>,
    spawned: Instant,
    datadir: PathBuf,
    // Dropped after `child` is killed and waited for (see `Drop`); `None` for a data dir
    // owned by the caller.
    _dir: Option<tempfile::TempDir>,
}

impl Node {
    /// Starts `exe` connected only to `connect`, listening on a free loopback port if `listen`.
    fn spawn(exe: &Path, connect: SocketAddr, listen: bool) -> std::io::Result<Node> {
        let dir = tempfile::Builder::new()
            .prefix("verack-bench-headers-")
            .tempdir()?;
        let datadir = dir.path().to_path_buf();
        let mut node = Node::spawn_on(exe, &datadir, connect, listen)?;
        node._dir = Some(dir);
        Ok(node)
    }

    /// As [`Node::spawn`], on the data dir `datadir` (kept when the node is dropped).
    pub(crate) fn spawn_on(
        exe: &Path,
        datadir: &Path,
        connect: SocketAddr,
        listen: bool,
    ) -> std::io::Result<Node> {
        let loopback = |port| SocketAddr::from(([127, 0, 0, 1], port));
        let rpc = loopback(free_port()?);
        let p2p = if listen {
            Some(loopback(free_port()?))
        } else {
            None
        };
        let spawned = Instant::now();
        let child = Command::new(exe)
            .arg("--network=regtest")
            .arg(format!("--datadir={}", datadir.display()))
            .arg(format!("--connect={connect}"))
            .arg(format!(
                "--listen={}",
                p2p.map_or("0".into(), |a| a.to_string())
            ))
            .arg(format!("--rpc-port={}", rpc.port()))
            .arg("--log-level=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", exe.display())))?;
        Ok(Node {
            child,
            p2p,
            rpc,
            cookie: None,
            spawned,
            datadir: datadir.to_path_buf(),
            _dir: None,
        })
    }

    /// Calls `method` (no parameters) with the cookie credentials, once the cookie exists.
    pub(crate) async fn call(&mut self, method: &str) -> std::io::Result<Value> {
        if self.cookie.is_none() {
            let text = std::fs::read_to_string(self.datadir.join("regtest/.cookie"))?;
            let (user, pass) = text
                .trim()
                .split_once(':')
                .ok_or_else(|| std::io::Error::other("cookie not written yet"))?;
            self.cookie = Some((user.into(), pass.into()));
        }
        let (user, pass) = self.cookie.as_ref().expect("read above");
        rpc_call(self.rpc, user, pass, method, "[]").await
    }

    /// Polls `getblockcount` every [`POLL`] until it is at least `height`.
    ///
    /// # Errors
    /// If the node exits, or does not get there within [`SYNC_TIMEOUT`] of its spawn.
    pub(crate) async fn wait_for_height(&mut self, height: u64) -> std::io::Result<Synced> {
        let mut rpc_up = None;
        let mut last = 0;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Err(std::io::Error::other(format!("verack exited: {status}")));
            }
            if let Ok(count) = self.call("getblockcount").await {
                let at = self.spawned.elapsed().as_secs_f64();
                rpc_up.get_or_insert(at);
                last = count.as_u64().unwrap_or(0);
                if last >= height {
                    return Ok(Synced {
                        seconds: at,
                        rpc_up,
                    });
                }
            }
            if self.spawned.elapsed() > SYNC_TIMEOUT {
                return Err(std::io::Error::other(format!(
                    "verack at height {last}, not {height}, after {SYNC_TIMEOUT:?}"
                )));
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::thousands;

    #[test]
    fn groups_thousands() {
        assert_eq!(thousands(100_000), "100,000");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(thousands(999), "999");
    }
}
