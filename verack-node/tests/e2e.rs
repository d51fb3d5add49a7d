//! End to end against a real bcoin regtest node: the `verack` binary syncs ≥ 500 headers,
//! matches bcoin's best hash, follows new blocks, survives `kill -9` and resumes from its
//! store, stops on SIGTERM, and serves its headers to a second `verack` over P2P.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::process::{Child, Command};
use tokio::time::{sleep, Instant};
use verack_testkit::{free_port, rpc_call, Bcoin};

/// A running `verack` binary on regtest.
struct Verack {
    child: Child,
    datadir: PathBuf,
    p2p: SocketAddr,
    rpc: SocketAddr,
    connect: SocketAddr,
}

impl Verack {
    async fn start(datadir: &Path, p2p: u16, rpc: u16, connect: SocketAddr) -> Verack {
        let child = Command::new(env!("CARGO_BIN_EXE_verack"))
            .arg("--network=regtest")
            .arg(format!("--datadir={}", datadir.display()))
            .arg(format!("--connect={connect}"))
            // bcoin bans an address that sends it a v2 key.
            .arg(format!("--v1-only={connect}"))
            .arg(format!("--listen=127.0.0.1:{p2p}"))
            .arg(format!("--rpc-port={rpc}"))
            .arg("--log-level=info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("verack binary");
        let mut v = Verack {
            child,
            datadir: datadir.to_path_buf(),
            p2p: SocketAddr::from(([127, 0, 0, 1], p2p)),
            rpc: SocketAddr::from(([127, 0, 0, 1], rpc)),
            connect,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while v.call("getblockcount").await.is_err() {
            if let Ok(Some(status)) = v.child.try_wait() {
                panic!("verack exited during startup: {status}");
            }
            assert!(Instant::now() < deadline, "verack RPC not up within 20 s");
            sleep(Duration::from_millis(50)).await;
        }
        v
    }

    async fn restart(self) -> Verack {
        let (dir, p2p, rpc, connect) = (
            self.datadir.clone(),
            self.p2p.port(),
            self.rpc.port(),
            self.connect,
        );
        drop(self);
        Verack::start(&dir, p2p, rpc, connect).await
    }

    fn cookie(&self) -> (String, String) {
        let text =
            std::fs::read_to_string(self.datadir.join("regtest/.cookie")).unwrap_or_default();
        let (user, pass) = text.trim().split_once(':').unwrap_or(("", ""));
        (user.to_string(), pass.to_string())
    }

    async fn call(&self, method: &str) -> std::io::Result<Value> {
        let (user, pass) = self.cookie();
        rpc_call(self.rpc, &user, &pass, method, "[]").await
    }

    async fn height(&self) -> u64 {
        self.call("getblockcount").await.unwrap().as_u64().unwrap()
    }

    async fn best_hash(&self) -> String {
        self.call("getbestblockhash")
            .await
            .unwrap()
            .as_str()
            .unwrap()
            .to_string()
    }

    async fn wait_for_height(&self, height: u64, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let now = self.height().await;
            if now >= height {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "stuck at {now}, wanted {height} within {within:?}"
            );
            sleep(Duration::from_millis(50)).await;
        }
    }

    fn kill9(&mut self) {
        self.child.start_kill().unwrap();
    }

    async fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().expect("running").to_string();
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .expect("stops within 10 s")
            .unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syncs_follows_resumes_and_serves_headers() {
    let bcoin = Bcoin::start(None).await;
    bcoin.mine(520).await;
    assert_eq!(bcoin.block_count().await, 520);

    let dir1 = tempfile::tempdir().unwrap();
    let v1 = Verack::start(dir1.path(), free_port().await, free_port().await, bcoin.p2p).await;
    v1.wait_for_height(520, Duration::from_secs(60)).await;
    assert_eq!(v1.best_hash().await, bcoin.best_hash().await);

    // Follows new blocks as they are announced.
    let started = Instant::now();
    bcoin.mine(10).await;
    v1.wait_for_height(530, Duration::from_secs(10)).await;
    assert_eq!(v1.best_hash().await, bcoin.best_hash().await);
    eprintln!("followed 10 new blocks in {:?}", started.elapsed());

    // kill -9, then restart: resumes from the store without re-downloading.
    sleep(Duration::from_millis(1500)).await; // the writer commits at least once a second
    let mut v1 = v1;
    v1.kill9();
    let v1 = v1.restart().await;
    assert!(v1.height().await >= 530, "resumed from the stored tip");
    assert_eq!(v1.best_hash().await, bcoin.best_hash().await);

    // A second verack syncs from the first over P2P.
    let dir2 = tempfile::tempdir().unwrap();
    let v2 = Verack::start(dir2.path(), free_port().await, free_port().await, v1.p2p).await;
    v2.wait_for_height(530, Duration::from_secs(60)).await;
    assert_eq!(v2.best_hash().await, bcoin.best_hash().await);

    // Graceful stop on SIGTERM: exit code 0, cookie removed, state kept.
    let status = v2.terminate().await;
    assert!(status.success(), "{status}");
    assert!(
        !dir2.path().join("regtest/.cookie").exists(),
        "cookie removed at stop"
    );
    let status = v1.terminate().await;
    assert!(status.success(), "{status}");
}

#[tokio::test]
async fn bad_flags_and_config_fail_with_one_line() {
    let out = Command::new(env!("CARGO_BIN_EXE_verack"))
        .args(["--max-inbound", "lots"])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("--max-inbound"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("verack.toml"),
        "network = \"regtest\"\nlisten = 5\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_verack"))
        .arg(format!("--datadir={}", dir.path().display()))
        .output()
        .await
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("line 2, column 10"), "{err}");
}

#[tokio::test]
async fn port_in_use_and_unwritable_datadir_are_clear_errors() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_verack"))
        .args([
            "--network=regtest",
            &format!("--datadir={}", dir.path().display()),
            &format!("--listen=127.0.0.1:{port}"),
            "--connect=127.0.0.1:1",
        ])
        .arg(format!("--rpc-port={}", free_port().await))
        .output()
        .await
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    let last = err.trim().lines().last().unwrap_or_default();
    assert!(
        last.starts_with("error: cannot listen on 127.0.0.1:") && last.contains("in use"),
        "{err}"
    );

    let out = Command::new(env!("CARGO_BIN_EXE_verack"))
        .args([
            "--network=regtest",
            "--datadir=/proc/verack-cannot-write-here",
            "--listen=0",
        ])
        .output()
        .await
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        err.trim()
            .lines()
            .last()
            .unwrap_or_default()
            .contains("is not writable"),
        "{err}"
    );
}
