//! What the `verack` binary tells its user, read from its log (loopback regtest only): a
//! dead `--connect` peer gives "connection refused; retrying in …" lines and, after 30 s, a
//! "no peer reachable" report naming the address, the reason and the next try, all without
//! ANSI colour codes in a log file; a peer (Bitcoin Core) gives "peer connected" and one
//! "synced at height H" line; `--log-level lots` and a `--connect` to our own listening
//! address are refused at start with exit code 2.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use tokio::time::{sleep, Instant};
use verack_testkit::{free_port, scratch_dir, BitcoinCore, VerackNode};

/// Bound for a line that follows an event at once.
const SOON: Duration = Duration::from_secs(20);
/// Bound for the "no peer reachable" report (due 30 s after start).
const REPORT: Duration = Duration::from_secs(60);
/// Bound for a header sync of a few hundred headers on loopback.
const SYNC: Duration = Duration::from_secs(30);

fn verack_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_verack"))
}

/// The whole log of `node`.
fn log(node: &VerackNode) -> String {
    std::fs::read_to_string(node.datadir().join("verack.log")).unwrap_or_default()
}

/// Waits until the log has a line containing every one of `parts`; returns that line.
async fn wait_for_line(node: &VerackNode, parts: &[&str], within: Duration) -> String {
    let what = format!("a log line with {parts:?}");
    let deadline = Instant::now() + within;
    loop {
        let text = log(node);
        if let Some(line) = text.lines().find(|l| parts.iter().all(|p| l.contains(p))) {
            return line.to_string();
        }
        if Instant::now() >= deadline {
            panic!("no {what} within {within:?}; log:\n{text}");
        }
        sleep(Duration::from_millis(200)).await;
    }
}

/// A loopback port nothing listens on: 1 (tcpmux), which no parallel test can take.
async fn dead_port() -> u16 {
    1
}

/// Runs the binary with `args` (it must exit on its own within 10 s); returns the exit code
/// and stderr.
async fn run_to_exit(args: &[&str]) -> (Option<i32>, String) {
    let dir = scratch_dir("observe-exit");
    let err_path = dir.join("stderr");
    let mut child = Command::new(verack_bin())
        .arg("--network=regtest")
        .arg(format!("--datadir={}", dir.display()))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .expect("run verack");
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            let _ = std::fs::remove_dir_all(&dir);
            panic!("verack {args:?} did not exit within 10 s");
        }
        sleep(Duration::from_millis(50)).await;
    };
    let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&dir);
    (status.code(), stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_peer_is_reported_with_its_reason_and_next_try_without_colour_codes() {
    let port = dead_port().await;
    let target = format!("127.0.0.1:{port}");
    let connect = format!("--connect={target}");
    let node = VerackNode::start(verack_bin(), &[&connect]).await;

    // The user's name for the network, not rust-bitcoin's.
    let starting = wait_for_line(&node, &["starting"], SOON).await;
    assert!(starting.contains("network=regtest"), "{starting}");

    // Each failed round at once: the reason and the backoff.
    let first = format!("could not reach {target}: connection refused; retrying in ");
    wait_for_line(&node, &[&first, "(1 failed attempt)"], SOON).await;

    // After 30 s with nobody: what was tried, why, and when the next try is.
    wait_for_line(&node, &["no peer reachable for", "tried 1 address"], REPORT).await;
    let detail = wait_for_line(
        &node,
        &[
            &format!("  {target}: connection refused ("),
            "; next try in ",
        ],
        SOON,
    )
    .await;
    assert!(detail.contains("attempts, last "), "{detail}");

    let text = log(&node);
    assert!(
        !text.contains('\u{1b}'),
        "ANSI escape codes in a log file:\n{text}"
    );
    assert!(
        !text.contains("synced at height"),
        "nothing to be synced with:\n{text}"
    );
    assert!(node.terminate().await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn core_as_peer_gives_connected_and_one_synced_line() {
    let core = BitcoinCore::start().await;
    core.mine(200).await;
    let connect = format!("--connect={}", core.p2p);
    let node = VerackNode::start(verack_bin(), &[&connect]).await;

    let connected = wait_for_line(
        &node,
        &[
            &format!("peer connected: {} (outbound manual", core.p2p),
            "1 peer connected",
        ],
        SOON,
    )
    .await;
    assert!(connected.contains("/Satoshi:"), "{connected}");
    wait_for_line(&node, &["synced at height 200"], SYNC).await;

    // New blocks while synced: a new best header line, and no second "synced" line.
    core.mine(3).await;
    wait_for_line(&node, &["new best header at height 203"], SYNC).await;
    let text = log(&node);
    assert_eq!(text.matches("synced at height").count(), 1, "{text}");
    assert!(!text.contains('\u{1b}'), "{text}");

    // Core going away: one "peer gone" line with the count.
    let core_addr = core.p2p;
    core.stop().await;
    wait_for_line(
        &node,
        &[&format!("peer gone: {}", core_addr), "0 peers connected"],
        SOON,
    )
    .await;
    assert!(node.terminate().await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_log_level_is_refused_with_exit_code_2() {
    let (code, stderr) = run_to_exit(&["--log-level=lots", "--listen=0"]).await;
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("invalid --log-level 'lots'"),
        "stderr: {stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connecting_to_our_own_listening_address_is_refused_at_start() {
    let port = free_port().await;
    let rpc = free_port().await;
    let listen = format!("--listen=127.0.0.1:{port}");
    let connect = format!("--connect=127.0.0.1:{port}");
    let rpc = format!("--rpc-port={rpc}");
    let (code, stderr) = run_to_exit(&[&listen, &connect, &rpc]).await;
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "--connect 127.0.0.1:{port} is this node's own listening address"
        )),
        "stderr: {stderr}"
    );
    // The same with the default listener (all addresses) and --addnode.
    let addnode = format!("--addnode=127.0.0.1:{port}");
    let listen_all = format!("--listen=0.0.0.0:{port}");
    let (code, stderr) = run_to_exit(&[&listen_all, &addnode, &rpc]).await;
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("--addnode"), "stderr: {stderr}");
}
