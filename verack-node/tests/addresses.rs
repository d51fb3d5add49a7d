//! Addresses as Bitcoin Core takes them, through the `verack` binary: `--connect` and the
//! config file's `connect` with a host name (`localhost`, the only name tests use) reach a
//! real Core on loopback; `listen = 0` in the config file works; bad values and a data
//! directory that is a file each fail with one line naming the value and where it came from.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::process::{Child, Command};
use tokio::time::{sleep, Instant};
use verack_testkit::{free_port, rpc_call, BitcoinCore};

/// Bound for the node's RPC to come up.
const START: Duration = Duration::from_secs(20);
/// Bound for a handshake to show on both sides.
const HANDSHAKE: Duration = Duration::from_secs(20);
/// RPC credentials given to the node (no cookie to read).
const RPC_USER: &str = "u";
const RPC_PASSWORD: &str = "p";

/// A `verack` process on regtest with its own data directory; killed on drop.
struct Node {
    child: Child,
    rpc: SocketAddr,
    _datadir: tempfile::TempDir,
}

impl Node {
    /// Starts the binary with `config` as `verack.toml` (if any) and `flags`, RPC on a free
    /// loopback port; waits until RPC answers.
    async fn start(config: Option<&str>, flags: &[String]) -> Node {
        let datadir = tempfile::tempdir().unwrap();
        if let Some(text) = config {
            std::fs::write(datadir.path().join("verack.toml"), text).unwrap();
        }
        let rpc = SocketAddr::from(([127, 0, 0, 1], free_port().await));
        let mut child = Command::new(env!("CARGO_BIN_EXE_verack"))
            .arg(format!("--datadir={}", datadir.path().display()))
            .arg(format!("--rpc-port={}", rpc.port()))
            .arg(format!("--rpc-user={RPC_USER}"))
            .arg(format!("--rpc-password={RPC_PASSWORD}"))
            .args(flags)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("verack binary");
        let deadline = Instant::now() + START;
        while rpc_call(rpc, RPC_USER, RPC_PASSWORD, "getblockcount", "[]")
            .await
            .is_err()
        {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("verack exited during startup: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "verack RPC not up within {START:?}"
            );
            sleep(Duration::from_millis(50)).await;
        }
        Node {
            child,
            rpc,
            _datadir: datadir,
        }
    }

    /// verack's `getpeerinfo` entry for `addr` once it has handshaked.
    async fn wait_for_peer(&self, addr: SocketAddr) -> Value {
        let deadline = Instant::now() + HANDSHAKE;
        loop {
            let peers = rpc_call(self.rpc, RPC_USER, RPC_PASSWORD, "getpeerinfo", "[]")
                .await
                .unwrap();
            let found = peers.as_array().unwrap().iter().find(|p| {
                p["addr"] == addr.to_string().as_str() && p["version"].as_u64().unwrap_or(0) > 0
            });
            if let Some(p) = found {
                return p.clone();
            }
            assert!(
                Instant::now() < deadline,
                "verack: no handshaked peer {addr} within {HANDSHAKE:?}: {peers}"
            );
            sleep(Duration::from_millis(50)).await;
        }
    }

    async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// Runs the binary to completion with `flags` (and `datadir`'s config file); returns the
/// exit code and stderr.
async fn run(datadir: &Path, flags: &[&str]) -> (Option<i32>, String) {
    // Bounded: a settings regression must fail here, not leave a running node behind.
    let out = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        Command::new(env!("CARGO_BIN_EXE_verack"))
            .arg(format!("--datadir={}", datadir.display()))
            .args(flags)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the node exits on a settings error within 20 s")
    .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).trim().to_string(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_by_host_name_reaches_core_from_the_flag_and_the_config_file() {
    let core = BitcoinCore::start().await;
    core.mine(3).await;
    let port = core.p2p.port();
    let core_addr = SocketAddr::from(([127, 0, 0, 1], port));

    // --connect=localhost:PORT, with listening off by flag.
    let by_flag = Node::start(
        None,
        &[
            "--network=regtest".into(),
            "--listen=0".into(),
            format!("--connect=localhost:{port}"),
        ],
    )
    .await;
    let peer = by_flag.wait_for_peer(core_addr).await;
    assert_eq!(peer["connection_type"], "manual", "{peer}");
    core.wait_for_peer("inbound from verack (by flag)", HANDSHAKE, |p| {
        p["inbound"] == true
            && BitcoinCore::handshaked(p)
            && p["subver"].as_str().unwrap_or("").contains("verack")
    })
    .await;

    // The same from the config file, with `listen = 0` as a number.
    let by_file = Node::start(
        Some(&format!(
            "network = \"regtest\"\nlisten = 0\nconnect = [\"localhost:{port}\"]\n"
        )),
        &[],
    )
    .await;
    let peer = by_file.wait_for_peer(core_addr).await;
    assert_eq!(peer["connection_type"], "manual", "{peer}");
    let deadline = Instant::now() + HANDSHAKE;
    loop {
        let verack_peers = core
            .peer_info()
            .await
            .into_iter()
            .filter(|p| {
                p["inbound"] == true
                    && BitcoinCore::handshaked(p)
                    && p["subver"].as_str().unwrap_or("").contains("verack")
            })
            .count();
        if verack_peers == 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Core: {verack_peers} verack peers, expected 2"
        );
        sleep(Duration::from_millis(50)).await;
    }
    by_flag.stop().await;
    by_file.stop().await;
    core.stop().await;
}

#[tokio::test]
async fn bad_addresses_fail_with_one_line_naming_the_value_and_its_source() {
    let dir = tempfile::tempdir().unwrap();
    let (code, err) = run(dir.path(), &["--connect", "localhost:99999"]).await;
    assert_eq!(code, Some(2), "{err}");
    assert_eq!(
        err,
        "error: invalid --connect 'localhost:99999': port '99999' is not a number from 1 to 65535"
    );
    let (code, err) = run(dir.path(), &["--addnode", "1.2.3.4:5:6"]).await;
    assert_eq!(code, Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("error: invalid --addnode '1.2.3.4:5:6': "),
        "{err}"
    );

    let config = dir.path().join("verack.toml");
    std::fs::write(
        &config,
        "network = \"regtest\"\nconnect = [\"localhost\", \"127.0.0.1:0\"]\n",
    )
    .unwrap();
    let (code, err) = run(dir.path(), &[]).await;
    assert_eq!(code, Some(2), "{err}");
    assert_eq!(
        err,
        format!(
            "error: config file {}: line 2, column 25: invalid connect \"127.0.0.1:0\": port '0' is not a number from 1 to 65535",
            config.display()
        )
    );
    std::fs::write(&config, "listen = \"localhost\"\n").unwrap();
    let (code, err) = run(dir.path(), &[]).await;
    assert_eq!(code, Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains(&format!(
            "config file {}: line 1, column 10: invalid listen",
            config.display()
        )),
        "{err}"
    );
}

#[tokio::test]
async fn a_datadir_that_is_a_file_is_reported_as_such() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("datadir");
    std::fs::write(&file, "not a directory").unwrap();
    let (code, err) = run(&file, &["--network=regtest"]).await;
    assert_eq!(code, Some(2), "{err}");
    assert_eq!(
        err,
        format!(
            "error: data directory {0} is not a directory: {0} is a file",
            file.display()
        )
    );
}
