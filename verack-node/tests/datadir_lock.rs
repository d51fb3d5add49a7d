//! One node per data directory, as Core's `.lock`: a second verack on a data directory in use
//! exits at once and says why, and a lock left by a node killed with SIGKILL never blocks the
//! next start (the lock is the kernel's, released with the process).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use tokio::time::{sleep, Instant};
use verack_testkit::{free_port, VerackNode};

fn verack_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_verack"))
}

/// Nothing listens on port 1 of loopback; the nodes stay connect-only.
const DEAD_PEER: &str = "--connect=127.0.0.1:1";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_node_on_the_same_datadir_is_refused_and_a_killed_nodes_lock_is_gone() {
    let first = VerackNode::start(verack_bin(), &[DEAD_PEER]).await;
    let datadir = first.datadir().to_path_buf();

    let err_path = datadir.join("second.stderr");
    let mut second = Command::new(verack_bin())
        .arg("--network=regtest")
        .arg(format!("--datadir={}", datadir.display()))
        .arg(format!("--listen=127.0.0.1:{}", free_port().await))
        .arg(format!("--rpc-port={}", free_port().await))
        .arg(DEAD_PEER)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .expect("run verack");
    let deadline = Instant::now() + Duration::from_secs(15);
    let status = loop {
        if let Some(status) = second.try_wait().unwrap() {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = second.kill();
            panic!("a second node on a locked data directory kept running");
        }
        sleep(Duration::from_millis(20)).await;
    };
    let stderr = std::fs::read_to_string(&err_path).unwrap();
    assert!(!status.success(), "{status}");
    assert!(
        stderr.contains("cannot obtain a lock on data directory")
            && stderr.contains("already running"),
        "{stderr}"
    );
    // The first node is untouched by the attempt.
    assert_eq!(first.block_count().await, 0);

    // kill -9 leaves the .lock file, but not the lock.
    let datadir = first.kill_keeping_datadir();
    assert!(datadir.join("regtest").join(".lock").exists());
    let again = VerackNode::start_in(verack_bin(), datadir, &[DEAD_PEER], &[]).await;
    assert_eq!(again.block_count().await, 0);
    again.terminate().await;
}
