//! Bitcoin Core (`bitcoind`) on loopback regtest: the reference implementation in the loop.
//!
//! Every start follows `/work/shared/bitcoin-core/README.md`: regtest, P2P bound to
//! `127.0.0.1` only, RPC bound to and allowed from `127.0.0.1` only, no DNS seeds, no fixed
//! seeds, no address discovery, no onion listener, no NAT-PMP/PCP, nothing on the console, no
//! daemonising. Each instance has its own scratch data directory and free ports; extra
//! arguments may add connections, but only to loopback addresses.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use serde_json::Value;
use tokio::time::{sleep, Instant};

use crate::process::{file_tail, kill_and_reap, scratch_dir, wait_or_kill};
use crate::wait::{wait_for, POLL_INTERVAL};
use crate::{free_port, rpc_call};

/// Environment variable naming the Bitcoin Core directory (the one holding `bin/bitcoind`).
/// When set, it is the only place looked at.
pub const CORE_DIR_ENV: &str = "VERACK_CORE_DIR";
/// The `-rpcuser` every instance is started with.
pub const CORE_RPC_USER: &str = "verack";
/// The `-rpcpassword` every instance is started with.
pub const CORE_RPC_PASSWORD: &str = "interop";
/// How long a start may take until RPC answers: 30 s.
pub const CORE_START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long [`BitcoinCore::stop`] waits for the process to exit before killing it: 30 s.
pub const CORE_STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// The output descriptor [`BitcoinCore::mine`] pays to: `raw(51)` (`OP_TRUE`, no wallet needed).
pub const CORE_MINING_DESCRIPTOR: &str = "raw(51)";
/// Lines of `debug.log` quoted in panic messages: 40.
pub const CORE_LOG_TAIL_LINES: usize = 40;
/// Starts tried (each on new ports) when a port turns out to be taken: 3.
const START_ATTEMPTS: u32 = 3;

/// Where Bitcoin Core is: `$VERACK_CORE_DIR` if set; otherwise the first of
/// `<testkit>/../../shared/bitcoin-core` (i.e. `/work/shared` beside the repository) and
/// `/work/shared/bitcoin-core` that holds `bin/bitcoind`.
///
/// # Panics
/// When no candidate holds `bin/bitcoind`; the message lists every path tried.
pub fn core_dir() -> PathBuf {
    let candidates: Vec<PathBuf> = match std::env::var_os(CORE_DIR_ENV) {
        Some(dir) => vec![PathBuf::from(dir)],
        None => vec![
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/bitcoin-core"),
            PathBuf::from("/work/shared/bitcoin-core"),
        ],
    };
    if let Some(dir) = candidates.iter().find(|d| d.join("bin/bitcoind").is_file()) {
        return dir.clone();
    }
    let tried: Vec<String> = candidates
        .iter()
        .map(|d| d.join("bin/bitcoind").display().to_string())
        .collect();
    panic!(
        "Bitcoin Core not found: no bitcoind at {} (set {CORE_DIR_ENV} to the directory holding bin/bitcoind)",
        tried.join(", ")
    );
}

/// A running `bitcoind -regtest` on loopback. Dropping it kills the process, reaps it and
/// removes its data directory; [`BitcoinCore::stop`] shuts it down cleanly first.
pub struct BitcoinCore {
    child: Child,
    /// Its P2P address (`127.0.0.1:<free port>`).
    pub p2p: SocketAddr,
    /// Its JSON-RPC address (`127.0.0.1:<free port>`).
    pub rpc: SocketAddr,
    datadir: PathBuf,
}

/// Why one start attempt failed.
struct StartFailure {
    /// A port was taken between `free_port` and Core's bind: worth retrying on new ports.
    port_taken: bool,
    report: String,
}

impl BitcoinCore {
    /// Starts Core with only the standard loopback flags (Core's defaults otherwise, e.g.
    /// `-v2transport=1`). Waits up to [`CORE_START_TIMEOUT`] for RPC.
    ///
    /// # Panics
    /// When Core cannot be found or does not start; the message quotes its `debug.log` tail.
    pub async fn start() -> BitcoinCore {
        BitcoinCore::start_with(&[]).await
    }

    /// Starts Core with `extra_args` appended, e.g. `-v2transport=0`, `-debug=net`,
    /// `-addnode=127.0.0.1:P`, `-connect=127.0.0.1:P`, `-maxconnections=N`,
    /// `-whitelist=noban@127.0.0.1`. `-listen=1` is always given (Core turns listening off
    /// under `-connect` otherwise), and `-connect=0` unless `extra_args` has a `-connect=`, so
    /// Core never makes automatic outbound connections (to addresses a test gave it). A start that fails because a port was taken is retried on
    /// new ports, up to 3 times. Waits up to [`CORE_START_TIMEOUT`] per start for RPC.
    ///
    /// # Panics
    /// When an extra `-addnode`/`-connect`/`-seednode`/`-bind`/`-rpcbind` points off loopback,
    /// when Core cannot be found, or when it does not start (with its `debug.log` tail).
    pub async fn start_with(extra_args: &[&str]) -> BitcoinCore {
        for arg in extra_args {
            assert!(is_loopback_only(arg), "not a loopback-only argument: {arg}");
        }
        let bitcoind = core_dir().join("bin/bitcoind");
        let mut attempt = 1;
        loop {
            let (p2p, rpc) = (free_port().await, free_port().await);
            match launch(&bitcoind, p2p, rpc, extra_args).await {
                Ok(core) => return core,
                Err(f) if f.port_taken && attempt < START_ATTEMPTS => attempt += 1,
                Err(f) => panic!(
                    "Bitcoin Core did not start (attempt {attempt}): {}",
                    f.report
                ),
            }
        }
    }

    /// The data directory (`-datadir`; regtest files are in its `regtest/` folder).
    pub fn datadir(&self) -> &Path {
        &self.datadir
    }

    /// The last `lines` lines of `regtest/debug.log`.
    pub fn debug_log_tail(&self, lines: usize) -> String {
        file_tail(&self.datadir.join("regtest/debug.log"), lines)
    }

    /// Calls an RPC method with `params` (a JSON array as text); returns `result`.
    ///
    /// # Errors
    /// As [`rpc_call`]: transport failures, timeouts (5 s connect, 10 s reply), non-200
    /// replies, JSON-RPC errors (Core's message included).
    pub async fn call(&self, method: &str, params: &str) -> std::io::Result<Value> {
        rpc_call(self.rpc, CORE_RPC_USER, CORE_RPC_PASSWORD, method, params).await
    }

    /// [`call`](Self::call) that must succeed.
    ///
    /// # Panics
    /// On any error, quoting it and the `debug.log` tail.
    pub async fn must_call(&self, method: &str, params: &str) -> Value {
        match self.call(method, params).await {
            Ok(value) => value,
            Err(e) => panic!(
                "Core RPC {method} {params} failed: {e}\n--- debug.log tail ---\n{}",
                self.debug_log_tail(CORE_LOG_TAIL_LINES)
            ),
        }
    }

    /// Mines `n` blocks to [`CORE_MINING_DESCRIPTOR`]; returns their hashes, oldest first.
    pub async fn mine(&self, n: u32) -> Vec<String> {
        self.mine_to(n, CORE_MINING_DESCRIPTOR).await
    }

    /// Mines `n` blocks paying `descriptor` (e.g. `raw(52)` for a branch whose blocks must
    /// differ from an invalidated one's); returns their hashes, oldest first.
    pub async fn mine_to(&self, n: u32, descriptor: &str) -> Vec<String> {
        let v = self
            .must_call("generatetodescriptor", &format!(r#"[{n},"{descriptor}"]"#))
            .await;
        strings(&v)
    }

    /// `getbestblockhash`.
    pub async fn best_hash(&self) -> String {
        text(&self.must_call("getbestblockhash", "[]").await)
    }

    /// `getblockcount`: the height of the active chain's tip.
    pub async fn block_count(&self) -> u64 {
        self.must_call("getblockcount", "[]")
            .await
            .as_u64()
            .expect("getblockcount is a number")
    }

    /// `getblockhash height`.
    pub async fn block_hash(&self, height: u64) -> String {
        text(&self.must_call("getblockhash", &format!("[{height}]")).await)
    }

    /// `getblockchaininfo.headers`: the height of the best header known (blocks or not).
    pub async fn header_count(&self) -> u64 {
        self.must_call("getblockchaininfo", "[]").await["headers"]
            .as_u64()
            .expect("getblockchaininfo.headers is a number")
    }

    /// `getpeerinfo`: one object per connection, handshaked or not (see
    /// [`BitcoinCore::handshaked`]).
    pub async fn peer_info(&self) -> Vec<Value> {
        self.must_call("getpeerinfo", "[]")
            .await
            .as_array()
            .expect("getpeerinfo is an array")
            .clone()
    }

    /// `addnode addr command v2`: `command` is `"onetry"`, `"add"` or `"remove"`; `v2` asks
    /// for BIP324 (Core then falls back to v1 once if the remote is v1-only).
    ///
    /// # Panics
    /// When `addr` is not loopback or Core refuses.
    pub async fn addnode(&self, addr: SocketAddr, command: &str, v2: bool) {
        assert!(addr.ip().is_loopback(), "addnode to a non-loopback {addr}");
        self.must_call("addnode", &format!(r#"["{addr}","{command}",{v2}]"#))
            .await;
    }

    /// `invalidateblock hash`: the block and its descendants become invalid (a reorg to the
    /// best other chain).
    pub async fn invalidate_block(&self, hash: &str) {
        self.must_call("invalidateblock", &format!(r#"["{hash}"]"#))
            .await;
    }

    /// Whether a `getpeerinfo` entry has finished the version handshake: Core has received
    /// the peer's `verack`.
    pub fn handshaked(peer: &Value) -> bool {
        peer["bytesrecv_per_msg"]["verack"].as_u64().unwrap_or(0) > 0
    }

    /// Polls `getpeerinfo` until an entry satisfies `pred`, up to `within`; returns it.
    ///
    /// # Panics
    /// At the deadline, naming `what` and quoting the last `getpeerinfo` and `debug.log` tail.
    pub async fn wait_for_peer(
        &self,
        what: &str,
        within: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        crate::wait::wait_for_peer_entry(
            "Core",
            what,
            within,
            || self.peer_info(),
            pred,
            || self.debug_log_tail(CORE_LOG_TAIL_LINES),
        )
        .await
    }

    /// Polls until `getblockchaininfo.headers` is at least `height`, up to `within`; returns it.
    ///
    /// # Panics
    /// At the deadline.
    pub async fn wait_for_header_count(&self, height: u64, within: Duration) -> u64 {
        wait_for(
            &format!("Core's header count to reach {height}"),
            within,
            || async {
                let now = self.header_count().await;
                (now >= height).then_some(now)
            },
        )
        .await
    }

    /// Stops Core with RPC `stop` and waits up to [`CORE_STOP_TIMEOUT`] for the process to
    /// exit, killing it after that. Returns its exit status (success after a clean stop). The
    /// data directory is removed.
    pub async fn stop(mut self) -> ExitStatus {
        let asked = self.call("stop", "[]").await;
        let (status, killed) = wait_or_kill(&mut self.child, CORE_STOP_TIMEOUT).await;
        if asked.is_err() || killed {
            eprintln!(
                "Core stop: rpc {asked:?}, killed after {CORE_STOP_TIMEOUT:?}: {killed}, {status}"
            );
        }
        status
    }
}

impl Drop for BitcoinCore {
    fn drop(&mut self) {
        kill_and_reap(&mut self.child);
        let _ = std::fs::remove_dir_all(&self.datadir);
    }
}

/// One start on the given ports: spawn, then wait for RPC.
async fn launch(
    bitcoind: &Path,
    p2p: u16,
    rpc: u16,
    extra_args: &[&str],
) -> Result<BitcoinCore, StartFailure> {
    let datadir = scratch_dir("core");
    let stderr = std::fs::File::create(datadir.join("stderr.log")).expect("stderr log file");
    let child = Command::new(bitcoind)
        .arg("-regtest")
        .arg(format!("-datadir={}", datadir.display()))
        .arg(format!("-port={p2p}"))
        .arg(format!("-bind=127.0.0.1:{p2p}"))
        .arg(format!("-rpcport={rpc}"))
        .args(["-rpcbind=127.0.0.1", "-rpcallowip=127.0.0.1"])
        .arg(format!("-rpcuser={CORE_RPC_USER}"))
        .arg(format!("-rpcpassword={CORE_RPC_PASSWORD}"))
        .args([
            "-dnsseed=0",
            "-fixedseeds=0",
            "-discover=0",
            "-listenonion=0",
            "-natpmp=0",
            "-printtoconsole=0",
            "-daemon=0",
            "-listen=1",
        ])
        // No automatic outbound connections unless the test names its own `-connect`: Core
        // would otherwise dial the addresses in its address manager (from `addpeeraddress`
        // or relayed `addr`), which may be routable. Core's functional tests do the same
        // (`connect=0` in every node's config). `-addnode` and the `addnode` RPC still work.
        .args((!extra_args.iter().any(|a| a.starts_with("-connect="))).then_some("-connect=0"))
        .args(extra_args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", bitcoind.display()));
    let mut core = BitcoinCore {
        child,
        p2p: SocketAddr::from(([127, 0, 0, 1], p2p)),
        rpc: SocketAddr::from(([127, 0, 0, 1], rpc)),
        datadir,
    };
    let deadline = Instant::now() + CORE_START_TIMEOUT;
    loop {
        if let Ok(Some(status)) = core.child.try_wait() {
            let report = core.failure_report(&format!("exited during startup: {status}"));
            let port_taken = report.to_lowercase().contains("unable to bind")
                || report.contains("Address already in use");
            return Err(StartFailure { port_taken, report });
        }
        if core.call("getblockcount", "[]").await.is_ok() {
            return Ok(core);
        }
        if Instant::now() >= deadline {
            let report =
                core.failure_report(&format!("RPC did not answer within {CORE_START_TIMEOUT:?}"));
            return Err(StartFailure {
                port_taken: false,
                report,
            });
        }
        sleep(POLL_INTERVAL).await;
    }
}

impl BitcoinCore {
    /// `what`, then Core's stderr and `debug.log` tails.
    fn failure_report(&self, what: &str) -> String {
        format!(
            "{what} (p2p {}, rpc {}, datadir {})\n--- stderr ---\n{}\n--- debug.log tail ---\n{}",
            self.p2p,
            self.rpc,
            self.datadir.display(),
            file_tail(&self.datadir.join("stderr.log"), CORE_LOG_TAIL_LINES),
            self.debug_log_tail(CORE_LOG_TAIL_LINES)
        )
    }
}

/// Whether an extra argument keeps Core on loopback: address-taking options must name a
/// loopback IP (`-bind`/`-rpcbind`/`-addnode`/`-connect`/`-seednode`/`-externalip`/`-proxy`/
/// `-onion`/`-i2psam`), and DNS seeding, discovery and port mapping stay off.
fn is_loopback_only(arg: &str) -> bool {
    let (name, value) = arg.split_once('=').unwrap_or((arg, "1"));
    let name = name.trim_start_matches('-');
    match name {
        "bind" | "rpcbind" | "addnode" | "connect" | "seednode" | "externalip" | "proxy"
        | "onion" | "i2psam" => value == "0" || is_loopback_addr(value),
        "dnsseed" | "fixedseeds" | "discover" | "listenonion" | "natpmp" | "upnp"
        | "forcednsseed" => value == "0",
        "regtest" | "testnet" | "testnet4" | "signet" | "chain" | "datadir" | "daemon" => false,
        _ => true,
    }
}

/// `127.x.x.x[:port]`, `[::1][:port]`, `::1` or `localhost[:port]`.
fn is_loopback_addr(value: &str) -> bool {
    if let Ok(addr) = value.parse::<SocketAddr>() {
        return addr.ip().is_loopback();
    }
    if let Ok(ip) = value.parse::<std::net::IpAddr>() {
        return ip.is_loopback();
    }
    let host = value.rsplit_once(':').map_or(value, |(h, _)| h);
    host == "localhost"
        || host
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn text(v: &Value) -> String {
    v.as_str().expect("a JSON string").to_string()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .expect("a JSON array")
        .iter()
        .map(text)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_arguments_pass() {
        for ok in [
            "-v2transport=0",
            "-debug=net",
            "-addnode=127.0.0.1:18444",
            "-connect=[::1]:8333",
            "-connect=0",
            "-maxconnections=3",
            "-whitelist=noban@127.0.0.1",
        ] {
            assert!(is_loopback_only(ok), "{ok}");
        }
        for bad in [
            "-addnode=1.2.3.4:8333",
            "-connect=example.com",
            "-bind=0.0.0.0",
            "-dnsseed=1",
            "-discover",
            "-natpmp=1",
            "-testnet",
            "-datadir=/tmp/x",
        ] {
            assert!(!is_loopback_only(bad), "{bad}");
        }
    }
}
