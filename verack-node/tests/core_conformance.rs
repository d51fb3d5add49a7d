//! Bitcoin Core's P2P functional-test cases against the `verack` binary: starts a regtest node
//! on loopback and runs `interop/core-conformance/run.py`, which drives it with Core's own
//! Python test framework (`P2PInterface`, `NetworkThread`, BIP324 `EncryptedP2PState`) and
//! prints one `PASS`/`FAIL` line per case. The test fails when any case fails.
//!
//! Core's framework is found in `$VERACK_CORE_DIR`, else `<repo>/../shared/bitcoin-core`, else
//! `/work/shared/bitcoin-core` (the folder holding `functional/test_framework/p2p.py`).
//!
//! Run one case: `python3 interop/core-conformance/run.py --case NAME --p2p-port P --rpc-port R
//! --datadir D --max-inbound 30 --getaddr-cache-secs 15` against a node started as below, with
//! `VERACK_TEST_GETADDR_CACHE_SECS=15` in its environment (`--list` lists the cases).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;
use verack_testkit::{scratch_dir, VerackNode, VERACK_LOG_TAIL_LINES};

/// The node's inbound slots; the eviction case fills them all (fewer connections than the
/// default 114 keep the case short).
const MAX_INBOUND: usize = 30;
/// Bound on the whole Python run (the suite itself takes about 2 minutes; three cases wait
/// out verack's 30 s handshake timeout and 10 s v2 key-exchange timeout, in parallel).
const SUITE_TIMEOUT: Duration = Duration::from_secs(300);
/// The node's `getaddr` answer cache lifetime, in seconds (Core: 21 h + up to 6 h, which its
/// tests skip with mock time or a restart): the getaddr cases wait it out (twice in all), and
/// five peers asking in a row must all fall within it.
const GETADDR_CACHE_SECS: &str = "15";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("verack-node sits in the repository")
        .to_path_buf()
}

/// Where Core's functional tests are; panics with every path tried.
fn core_dir() -> PathBuf {
    let mut candidates = Vec::new();
    if let Some(dir) = std::env::var_os("VERACK_CORE_DIR") {
        candidates.push(PathBuf::from(dir));
    }
    candidates.push(repo_root().join("../shared/bitcoin-core"));
    candidates.push(PathBuf::from("/work/shared/bitcoin-core"));
    let marker = |d: &Path| d.join("functional/test_framework/p2p.py");
    if let Some(dir) = candidates.iter().find(|d| marker(d).is_file()) {
        return dir.clone();
    }
    let tried: Vec<String> = candidates
        .iter()
        .map(|d| marker(d).display().to_string())
        .collect();
    panic!(
        "Bitcoin Core's functional test framework not found (looked for {}); set VERACK_CORE_DIR \
         to the folder holding functional/test_framework",
        tried.join(", ")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn core_p2p_functional_cases() {
    let core = core_dir();
    let runner = repo_root().join("interop/core-conformance/run.py");
    assert!(runner.is_file(), "{} missing", runner.display());

    // No automatic outbound connections: the cases fill the address manager with public
    // addresses (addpeeraddress, addr relay), which the outbound and feeler loops would dial.
    // `--connect` makes the node connect-only (ServerConfig::connect_only: no outbound or
    // feeler loop; main.rs starts no DNS or fixed-seed discovery), here to a loopback port
    // nobody listens on; regtest has no DNS seeds anyway. Only `addnode onetry` to the cases'
    // own loopback listeners dials out.
    // Port 1 (tcpmux): nothing listens there, and no parallel test can take it.
    let connect = "--connect=127.0.0.1:1".to_string();
    let max_inbound = format!("--max-inbound={MAX_INBOUND}");
    let node = VerackNode::start_in(
        Path::new(env!("CARGO_BIN_EXE_verack")),
        scratch_dir("node"),
        &[&connect, &max_inbound, "--log-level=info"],
        &[("VERACK_TEST_GETADDR_CACHE_SECS", GETADDR_CACHE_SECS)],
    )
    .await;

    let mut child = Command::new("python3")
        .arg(&runner)
        .arg(format!("--p2p-port={}", node.p2p.port()))
        .arg(format!("--rpc-port={}", node.rpc.port()))
        .arg(format!("--datadir={}", node.datadir().display()))
        .arg(format!("--max-inbound={MAX_INBOUND}"))
        .arg(format!("--getaddr-cache-secs={GETADDR_CACHE_SECS}"))
        .arg(format!("--core-dir={}", core.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python3 (needed to run Core's test framework) could not be started");
    let stdout = child.stdout.take().expect("piped");
    let stderr = child.stderr.take().expect("piped");
    let read_out = tokio::spawn(read_all(stdout));
    let read_err = tokio::spawn(read_all(stderr));
    let status = match tokio::time::timeout(SUITE_TIMEOUT, child.wait()).await {
        Ok(status) => Some(status.expect("waiting for python3")),
        Err(_) => {
            let _ = child.start_kill();
            let _ = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
            None
        }
    };
    let out = read_out.await.unwrap_or_default();
    let err = read_err.await.unwrap_or_default();
    println!("{out}");
    if !err.trim().is_empty() {
        eprintln!("--- runner stderr ---\n{err}");
    }
    let failed = status.is_none_or(|s| !s.success());
    if failed {
        eprintln!(
            "--- verack log (last {VERACK_LOG_TAIL_LINES} lines) ---\n{}",
            node.log_tail(VERACK_LOG_TAIL_LINES)
        );
    }
    let _ = node.terminate().await;
    let status = status.unwrap_or_else(|| {
        panic!("the conformance suite did not finish within {SUITE_TIMEOUT:?}\n{out}")
    });
    let summary = out
        .lines()
        .rev()
        .find(|l| l.contains(" passed, "))
        .unwrap_or("no summary line");
    assert!(
        status.success(),
        "Core conformance cases failed ({summary}; exit {status}):\n{}",
        out.lines()
            .filter(|l| l.starts_with("FAIL "))
            .collect::<Vec<_>>()
            .join("\n")
    );
    // A run that selected nothing would also exit 0: every case must have passed.
    let passed = out.lines().filter(|l| l.starts_with("PASS ")).count();
    assert!(
        passed >= MIN_CASES,
        "only {passed} cases passed ({summary}); the suite has at least {MIN_CASES}"
    );
}

/// Cases in the suite when this was written (`run.py --list`); a run passing fewer selected
/// or registered too few.
const MIN_CASES: usize = 93;

async fn read_all<R: tokio::io::AsyncRead + Unpin>(mut r: R) -> String {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::new();
    let _ = r.read_to_end(&mut buf).await;
    String::from_utf8_lossy(&buf).into_owned()
}
