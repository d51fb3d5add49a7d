//! Test support shared by verack's crates.
//!
//! - [`Bcoin`]: a real, independently written full node (bcoin 1.0.2 from npm, installed by
//!   `.ci/run` into `interop/bcoin`) started on loopback regtest with its own ports, isolated
//!   from any other network and from the environment.
//! - [`BitcoinCore`]: Bitcoin Core's `bitcoind` (the reference implementation, from
//!   `/work/shared/bitcoin-core` or `$VERACK_CORE_DIR`) on loopback regtest, with its own data
//!   directory and ports.
//! - [`VerackNode`]: the `verack` binary (path given by the caller) on loopback regtest.
//! - [`rpc_call`]: a minimal JSON-RPC-over-HTTP client (one request per connection).
//! - [`wait_for`]: bounded polling.
//!
//! Every wait is bounded; tests fail, never skip, when bcoin or Core cannot start.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use base64::Engine;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};
use tokio::time::{sleep, timeout, Instant};

mod core;
mod microsocks;
mod process;
mod verack_node;
mod wait;

pub use crate::core::{
    core_dir, BitcoinCore, CORE_DIR_ENV, CORE_LOG_TAIL_LINES, CORE_MINING_DESCRIPTOR,
    CORE_RPC_PASSWORD, CORE_RPC_USER, CORE_START_TIMEOUT, CORE_STOP_TIMEOUT,
};
pub use crate::microsocks::{Microsocks, MICROSOCKS_SOURCE_IP, MICROSOCKS_START_TIMEOUT};
pub use crate::process::{file_tail, scratch_dir};
pub use crate::verack_node::{
    VerackNode, VERACK_LOG_TAIL_LINES, VERACK_START_TIMEOUT, VERACK_STOP_TIMEOUT,
};
pub use crate::wait::{wait_for, POLL_INTERVAL};

/// bcoin's RPC API key (the Basic-auth password; any user name).
pub const BCOIN_API_KEY: &str = "interop";
/// A bcoin regtest (bech32 `rb`) address to mine to; bcoin rejects Core's `bcrt` prefix.
pub const MINING_ADDRESS: &str = "rb1qqyqszqgpqyqszqgpqyqszqgpqyqszqgpefl3jh";
/// Services bcoin requires of a peer it dials: NETWORK | WITNESS.
pub const BCOIN_REQUIRED_SERVICES: u64 = 0x9;

/// A free loopback TCP port (bound then released; tiny race accepted in tests).
pub async fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running bcoin regtest node; killed when dropped.
pub struct Bcoin {
    child: Child,
    /// Its P2P address.
    pub p2p: SocketAddr,
    /// Its JSON-RPC address.
    pub rpc: SocketAddr,
    prefix: PathBuf,
}

impl Bcoin {
    /// Starts bcoin on fresh ports; it dials only `dial` if given (else a dead port).
    pub async fn start(dial: Option<SocketAddr>) -> Bcoin {
        Bcoin::start_on(free_port().await, free_port().await, dial).await
    }

    /// Starts bcoin listening on `p2p`, RPC on `rpc`, dialling only `dial` (if given).
    pub async fn start_on(p2p: u16, rpc: u16, dial: Option<SocketAddr>) -> Bcoin {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../interop/bcoin");
        let bin = dir.join("node_modules/bcoin/bin/node");
        assert!(
            bin.exists(),
            "bcoin is not installed: run `npm ci` in {} (.ci/run does)",
            dir.display()
        );
        let prefix =
            std::env::temp_dir().join(format!("verack-bcoin-{}-{p2p}", std::process::id()));
        // Without --only bcoin would dial nobody anyway (--seeds=,), but say so explicitly.
        let only = dial.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 1)));
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
            .arg(format!("--api-key={BCOIN_API_KEY}"))
            .arg(format!("--only={only}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        // bcoin reads every BCOIN_* variable as configuration.
        for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("BCOIN_")) {
            cmd.env_remove(key);
        }
        let child = cmd.spawn().expect("node runs (the machine's Node 20)");
        let mut node = Bcoin {
            child,
            p2p: SocketAddr::from(([127, 0, 0, 1], p2p)),
            rpc: SocketAddr::from(([127, 0, 0, 1], rpc)),
            prefix,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = node.child.try_wait() {
                panic!("bcoin exited during startup: {status}");
            }
            if node.call("getblockcount", "[]").await.is_ok()
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

    /// Kills bcoin and waits until it has exited (its ports are free again).
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }

    /// Calls a bcoin RPC method; returns `result`.
    ///
    /// # Errors
    /// An I/O error for transport failures, non-200 replies or a JSON-RPC error.
    pub async fn call(&self, method: &str, params: &str) -> std::io::Result<Value> {
        rpc_call(self.rpc, "x", BCOIN_API_KEY, method, params).await
    }

    /// Mines `n` blocks; returns their hashes.
    pub async fn mine(&self, n: u32) -> Vec<String> {
        let v = self
            .call("generatetoaddress", &format!(r#"[{n},"{MINING_ADDRESS}"]"#))
            .await
            .expect("generatetoaddress");
        v.as_array()
            .expect("hash list")
            .iter()
            .map(|h| h.as_str().unwrap().to_string())
            .collect()
    }

    /// The best block hash.
    pub async fn best_hash(&self) -> String {
        self.call("getbestblockhash", "[]")
            .await
            .unwrap()
            .as_str()
            .unwrap()
            .to_string()
    }

    /// The block count.
    pub async fn block_count(&self) -> u64 {
        self.call("getblockcount", "[]")
            .await
            .unwrap()
            .as_u64()
            .unwrap()
    }
}

impl Drop for Bcoin {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        let _ = std::fs::remove_dir_all(&self.prefix);
    }
}

/// One JSON-RPC call with HTTP Basic auth (`user`, `password`) over HTTP/1.0; returns the
/// `result` member.
///
/// # Errors
/// An I/O error for transport failures, timeouts (5 s connect, 10 s reply), a non-200 status or
/// a non-null `error` member (its text in the message).
pub async fn rpc_call(
    addr: SocketAddr,
    user: &str,
    password: &str,
    method: &str,
    params: &str,
) -> std::io::Result<Value> {
    let body = format!(r#"{{"jsonrpc":"1.0","id":1,"method":"{method}","params":{params}}}"#);
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let request = format!(
        "POST / HTTP/1.0\r\nHost: 127.0.0.1\r\nAuthorization: Basic {auth}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut sock = timeout(Duration::from_secs(5), TcpStream::connect(addr)).await??;
    sock.write_all(request.as_bytes()).await?;
    let mut response = String::new();
    timeout(Duration::from_secs(10), sock.read_to_string(&mut response)).await??;
    let status_ok = response.starts_with("HTTP/1.1 200") || response.starts_with("HTTP/1.0 200");
    let json = response.split("\r\n\r\n").nth(1).unwrap_or_default();
    if !status_ok {
        // Core answers JSON-RPC 1.0 errors with a 4xx/5xx status and the error in the body.
        let error = serde_json::from_str::<Value>(json)
            .map(|v| v["error"].to_string())
            .unwrap_or_default();
        return Err(std::io::Error::other(format!(
            "{method}: {} {error}",
            response.lines().next().unwrap_or_default()
        )));
    }
    let value: Value = serde_json::from_str(json).map_err(std::io::Error::other)?;
    if !value["error"].is_null() {
        return Err(std::io::Error::other(format!(
            "{method}: {}",
            value["error"]
        )));
    }
    Ok(value["result"].clone())
}

#[cfg(test)]
mod tests {
    #[test]
    fn basic_auth_encoding() {
        use base64::Engine;
        assert_eq!(
            base64::engine::general_purpose::STANDARD.encode("x:interop"),
            "eDppbnRlcm9w"
        );
    }
}
