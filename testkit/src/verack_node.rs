//! The `verack` node binary on loopback regtest, queried through its RPC cookie.
//!
//! The binary's path is an argument (tests in `verack-node` pass
//! `env!("CARGO_BIN_EXE_verack")`), so this crate does not depend on the node.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use serde_json::Value;
use tokio::time::{sleep, Instant};

use crate::process::{file_tail, kill_and_reap, scratch_dir, send_sigterm, wait_or_kill};
use crate::wait::{wait_for, POLL_INTERVAL};
use crate::{free_port, rpc_call};

/// How long a start may take until RPC answers: 20 s.
pub const VERACK_START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long [`VerackNode::terminate`] waits after SIGTERM before killing: 10 s (the node's
/// documented stop bound).
pub const VERACK_STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Lines of the node's log quoted in panic messages: 40.
pub const VERACK_LOG_TAIL_LINES: usize = 40;
/// Starts tried (each on new ports) when a port turns out to be taken: 3.
const START_ATTEMPTS: u32 = 3;

/// A running `verack --network=regtest` with its own scratch data directory, listening on
/// `127.0.0.1:<free port>` with RPC on another free port. Its log (stderr) goes to
/// `<datadir>/verack.log`. Dropping it kills the process and removes the data directory.
pub struct VerackNode {
    child: Child,
    /// Its P2P listening address.
    pub p2p: SocketAddr,
    /// Its JSON-RPC address.
    pub rpc: SocketAddr,
    datadir: PathBuf,
}

impl VerackNode {
    /// Starts the binary at `bin` with `--network=regtest --datadir=… --listen=127.0.0.1:P
    /// --rpc-port=R` and `extra_args` (e.g. `--connect=127.0.0.1:P`, `--v2transport=false`;
    /// `--log-level=info` unless given). Waits up to [`VERACK_START_TIMEOUT`] for RPC; a start
    /// that fails because a port was taken is retried on new ports, up to 3 times.
    ///
    /// # Panics
    /// When an extra `--connect`/`--addnode`/`--listen`/`--rpc-bind` is off loopback, or the
    /// node does not start (the message quotes its log tail).
    pub async fn start(bin: &Path, extra_args: &[&str]) -> VerackNode {
        for arg in extra_args {
            assert!(is_loopback_only(arg), "not a loopback-only argument: {arg}");
        }
        let mut datadir = scratch_dir("node");
        let mut attempt = 1;
        loop {
            let (p2p, rpc) = (free_port().await, free_port().await);
            match launch(bin, datadir, p2p, rpc, extra_args, &[]).await {
                Ok(node) => return node,
                Err(f) if f.port_taken && attempt < START_ATTEMPTS => {
                    datadir = f.datadir;
                    attempt += 1;
                }
                Err(f) => {
                    let _ = std::fs::remove_dir_all(&f.datadir);
                    panic!("verack did not start (attempt {attempt}): {}", f.report)
                }
            }
        }
    }

    /// Stops the node as [`terminate`](Self::terminate) does (SIGTERM, killed after
    /// [`VERACK_STOP_TIMEOUT`]) but keeps its data directory, then starts the binary at `bin`
    /// again on that data directory with `extra_args` (the previous run's arguments are not
    /// reused), on the same P2P and RPC ports (new ones if a port was taken meanwhile, up to 3
    /// starts). Returns the first run's exit status and the new node; the log file continues.
    ///
    /// # Panics
    /// As [`start`](Self::start).
    pub async fn restart(mut self, bin: &Path, extra_args: &[&str]) -> (ExitStatus, VerackNode) {
        for arg in extra_args {
            assert!(is_loopback_only(arg), "not a loopback-only argument: {arg}");
        }
        let status = self.stop().await;
        let (mut p2p, mut rpc) = (self.p2p.port(), self.rpc.port());
        let mut datadir = self.release();
        let mut attempt = 1;
        loop {
            match launch(bin, datadir, p2p, rpc, extra_args, &[]).await {
                Ok(node) => return (status, node),
                Err(f) if f.port_taken && attempt < START_ATTEMPTS => {
                    datadir = f.datadir;
                    (p2p, rpc) = (free_port().await, free_port().await);
                    attempt += 1;
                }
                Err(f) => {
                    let _ = std::fs::remove_dir_all(&f.datadir);
                    panic!("verack did not restart (attempt {attempt}): {}", f.report)
                }
            }
        }
    }

    /// Starts the binary at `bin` as [`start`](Self::start) does, but on an existing data
    /// directory (one handed back by [`kill_keeping_datadir`](Self::kill_keeping_datadir) or
    /// [`stop_keeping_datadir`](Self::stop_keeping_datadir), possibly changed meanwhile), with
    /// `env` added to the child's environment. The node owns `datadir` again (removed on drop).
    ///
    /// # Panics
    /// As [`start`](Self::start).
    pub async fn start_in(
        bin: &Path,
        datadir: PathBuf,
        extra_args: &[&str],
        env: &[(&str, &str)],
    ) -> VerackNode {
        for arg in extra_args {
            assert!(is_loopback_only(arg), "not a loopback-only argument: {arg}");
        }
        let mut datadir = datadir;
        let mut attempt = 1;
        loop {
            let (p2p, rpc) = (free_port().await, free_port().await);
            match launch(bin, datadir, p2p, rpc, extra_args, env).await {
                Ok(node) => return node,
                Err(f) if f.port_taken && attempt < START_ATTEMPTS => {
                    datadir = f.datadir;
                    attempt += 1;
                }
                Err(f) => {
                    let tail = f.report;
                    let _ = std::fs::remove_dir_all(&f.datadir);
                    panic!("verack did not start (attempt {attempt}): {tail}")
                }
            }
        }
    }

    /// Kills the process with SIGKILL, as `kill -9` (no shutdown of any kind), and hands back
    /// its data directory, which the caller then owns.
    pub fn kill_keeping_datadir(self) -> PathBuf {
        self.release()
    }

    /// Stops the node as [`terminate`](Self::terminate) does and hands back its exit status
    /// and its data directory, which the caller then owns.
    pub async fn stop_keeping_datadir(mut self) -> (ExitStatus, PathBuf) {
        let status = self.stop().await;
        (status, self.release())
    }

    /// The data directory (`--datadir`; regtest files are in its `regtest/` folder).
    pub fn datadir(&self) -> &Path {
        &self.datadir
    }

    /// The process id of the running node (e.g. to read `/proc/<pid>/status`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The last `lines` lines of the node's log.
    pub fn log_tail(&self, lines: usize) -> String {
        file_tail(&self.datadir.join("verack.log"), lines)
    }

    /// The RPC cookie's user and password (empty when the cookie is absent).
    fn cookie(&self) -> (String, String) {
        let text =
            std::fs::read_to_string(self.datadir.join("regtest/.cookie")).unwrap_or_default();
        let (user, pass) = text.trim().split_once(':').unwrap_or(("", ""));
        (user.to_string(), pass.to_string())
    }

    /// Calls an RPC method with `params` (a JSON array as text); returns `result`.
    ///
    /// # Errors
    /// As [`rpc_call`].
    pub async fn call(&self, method: &str, params: &str) -> std::io::Result<Value> {
        let (user, pass) = self.cookie();
        rpc_call(self.rpc, &user, &pass, method, params).await
    }

    /// [`call`](Self::call) that must succeed.
    ///
    /// # Panics
    /// On any error, quoting it and the log tail.
    pub async fn must_call(&self, method: &str, params: &str) -> Value {
        match self.call(method, params).await {
            Ok(value) => value,
            Err(e) => panic!(
                "verack RPC {method} {params} failed: {e}\n--- verack log tail ---\n{}",
                self.log_tail(VERACK_LOG_TAIL_LINES)
            ),
        }
    }

    /// `getblockcount`.
    pub async fn block_count(&self) -> u64 {
        self.must_call("getblockcount", "[]")
            .await
            .as_u64()
            .expect("getblockcount is a number")
    }

    /// `getbestblockhash`.
    pub async fn best_hash(&self) -> String {
        self.must_call("getbestblockhash", "[]")
            .await
            .as_str()
            .expect("getbestblockhash is a string")
            .to_string()
    }

    /// `getpeerinfo`.
    pub async fn peer_info(&self) -> Vec<Value> {
        self.must_call("getpeerinfo", "[]")
            .await
            .as_array()
            .expect("getpeerinfo is an array")
            .clone()
    }

    /// Polls `getpeerinfo` until an entry satisfies `pred`, up to `within`; returns it.
    ///
    /// # Panics
    /// At the deadline, naming `what` and quoting the last `getpeerinfo` and the log tail.
    pub async fn wait_for_peer(
        &self,
        what: &str,
        within: Duration,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        crate::wait::wait_for_peer_entry(
            "verack",
            what,
            within,
            || self.peer_info(),
            pred,
            || self.log_tail(VERACK_LOG_TAIL_LINES),
        )
        .await
    }

    /// Polls until `getbestblockhash` equals `hash`, up to `within`.
    ///
    /// # Panics
    /// At the deadline (the message has the height reached).
    pub async fn wait_for_best_hash(&self, hash: &str, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let best = self.best_hash().await;
            if best == hash {
                return;
            }
            if Instant::now() >= deadline {
                panic!(
                    "verack stuck at height {} ({best}) after {within:?}, wanted {hash}\n--- verack log tail ---\n{}",
                    self.block_count().await,
                    self.log_tail(VERACK_LOG_TAIL_LINES)
                );
            }
            sleep(POLL_INTERVAL).await;
        }
    }

    /// Polls until `getblockcount` is at least `height`, up to `within`; returns it.
    ///
    /// # Panics
    /// At the deadline.
    pub async fn wait_for_height(&self, height: u64, within: Duration) -> u64 {
        wait_for(
            &format!("verack's height to reach {height}"),
            within,
            || async {
                let now = self.block_count().await;
                (now >= height).then_some(now)
            },
        )
        .await
    }

    /// Sends SIGTERM and waits up to [`VERACK_STOP_TIMEOUT`] for the exit, killing after
    /// that. Returns the exit status (success after a clean stop). The data directory is then
    /// removed.
    pub async fn terminate(mut self) -> ExitStatus {
        self.stop().await
    }

    /// SIGTERM, then wait up to [`VERACK_STOP_TIMEOUT`], killing after that.
    async fn stop(&mut self) -> ExitStatus {
        send_sigterm(&self.child).expect("SIGTERM to verack");
        let (status, killed) = wait_or_kill(&mut self.child, VERACK_STOP_TIMEOUT).await;
        if killed {
            eprintln!("verack did not stop within {VERACK_STOP_TIMEOUT:?}; killed");
        }
        status
    }

    /// Kills the process if still running and hands back the data directory without removing
    /// it.
    fn release(mut self) -> PathBuf {
        kill_and_reap(&mut self.child);
        std::mem::take(&mut self.datadir)
    }
}

impl Drop for VerackNode {
    fn drop(&mut self) {
        kill_and_reap(&mut self.child);
        // Empty after `release`: the directory lives on.
        if !self.datadir.as_os_str().is_empty() {
            let _ = std::fs::remove_dir_all(&self.datadir);
        }
    }
}

/// Why one start attempt failed; the data directory is handed back, not removed.
struct LaunchFailure {
    /// The log suggests a port was taken: worth retrying on new ports.
    port_taken: bool,
    report: String,
    datadir: PathBuf,
}

/// One start on `datadir` and the given ports, with `env` added to the environment; the log
/// is appended to `<datadir>/verack.log`.
async fn launch(
    bin: &Path,
    datadir: PathBuf,
    p2p: u16,
    rpc: u16,
    extra_args: &[&str],
    env: &[(&str, &str)],
) -> Result<VerackNode, LaunchFailure> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(datadir.join("verack.log"))
        .expect("verack log file");
    let mut cmd = Command::new(bin);
    cmd.arg("--network=regtest")
        .arg(format!("--datadir={}", datadir.display()))
        .arg(format!("--listen=127.0.0.1:{p2p}"))
        .arg(format!("--rpc-port={rpc}"))
        .args(extra_args)
        .envs(env.iter().copied());
    if !extra_args.iter().any(|a| a.starts_with("--log-level")) {
        cmd.arg("--log-level=info");
    }
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
    let mut node = VerackNode {
        child,
        p2p: SocketAddr::from(([127, 0, 0, 1], p2p)),
        rpc: SocketAddr::from(([127, 0, 0, 1], rpc)),
        datadir,
    };
    let deadline = Instant::now() + VERACK_START_TIMEOUT;
    loop {
        if let Ok(Some(status)) = node.child.try_wait() {
            let tail = node.log_tail(VERACK_LOG_TAIL_LINES);
            return Err(LaunchFailure {
                port_taken: tail.contains("in use"),
                report: format!("exited during startup: {status}\n{tail}"),
                datadir: node.release(),
            });
        }
        if node.call("getblockcount", "[]").await.is_ok() {
            return Ok(node);
        }
        if Instant::now() >= deadline {
            let tail = node.log_tail(VERACK_LOG_TAIL_LINES);
            return Err(LaunchFailure {
                port_taken: false,
                report: format!("RPC did not answer within {VERACK_START_TIMEOUT:?}\n{tail}"),
                datadir: node.release(),
            });
        }
        sleep(POLL_INTERVAL).await;
    }
}

/// Whether an extra argument keeps the node on loopback: `--connect`, `--addnode`, `--listen`
/// (or `0`), `--rpc-bind` and `--metrics-bind` must name loopback addresses.
fn is_loopback_only(arg: &str) -> bool {
    let Some((name, value)) = arg.split_once('=') else {
        return !matches!(
            arg,
            "--connect" | "--addnode" | "--listen" | "--rpc-bind" | "--metrics-bind"
        );
    };
    match name {
        "--connect" | "--addnode" | "--metrics-bind" => value
            .parse::<SocketAddr>()
            .is_ok_and(|a| a.ip().is_loopback()),
        "--listen" => {
            value == "0"
                || value
                    .parse::<SocketAddr>()
                    .is_ok_and(|a| a.ip().is_loopback())
        }
        "--rpc-bind" => value
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback()),
        "--network" | "--datadir" => false,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_arguments_pass() {
        assert!(is_loopback_only("--connect=127.0.0.1:18444"));
        assert!(is_loopback_only("--v2transport=false"));
        assert!(is_loopback_only("--listen=0"));
        assert!(!is_loopback_only("--connect=1.2.3.4:8333"));
        assert!(!is_loopback_only("--connect"));
        assert!(!is_loopback_only("--network=mainnet"));
    }
}
