//! The header store under faults, against Bitcoin Core on loopback regtest: a truncated store,
//! 4 KiB of garbage at eight offsets, failing writes (injected, and a real full disk on a
//! tmpfs when running as root), and `kill -9` at random points. After each fault the node
//! reaches Core's tip by itself, and a restart with no reachable peer still reports that tip
//! from its store.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use verack_testkit::{scratch_dir, wait_for, BitcoinCore, VerackNode};

/// Bound for a sync of a few hundred headers from Core (loopback, one machine), including a
/// repair at start.
const SYNC: Duration = Duration::from_secs(30);
/// Bound for the store to catch up or report a failure (writes are retried at least every
/// 10 s).
const STORE: Duration = Duration::from_secs(30);
/// The node's fault-injection variable (`store::WRITE_FAULTS_ENV`).
const WRITE_FAULTS_ENV: &str = "VERACK_TEST_STORE_WRITE_FAULTS";

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_verack"))
}

/// Core's tip: height and hash.
async fn core_tip(core: &BitcoinCore) -> (u64, String) {
    (core.block_count().await, core.best_hash().await)
}

/// `--connect` to a loopback port nothing listens on (port 1, which no parallel test can
/// take): a node with no reachable peer.
async fn no_peer() -> String {
    "--connect=127.0.0.1:1".to_string()
}

fn log_of(datadir: &Path) -> String {
    std::fs::read_to_string(datadir.join("verack.log")).unwrap_or_default()
}

fn count(text: &str, needle: &str) -> usize {
    text.matches(needle).count()
}

/// Restarts `node` (SIGTERM, same data directory) with no reachable peer and checks that it
/// reports `tip` (height and hash) from its store alone.
async fn assert_stored_tip(node: VerackNode, tip: &(u64, String), what: &str) -> VerackNode {
    let (status, node) = node.restart(bin(), &[&no_peer().await]).await;
    assert!(status.success(), "{what}: clean stop, got {status}");
    assert_eq!(
        (node.block_count().await, node.best_hash().await),
        *tip,
        "{what}: a restart with no peer reports the tip from the store\n{}",
        node.log_tail(20)
    );
    node
}

/// `getblockchaininfo.warnings`.
async fn warnings(node: &VerackNode) -> Vec<String> {
    match &node.must_call("getblockchaininfo", "[]").await["warnings"] {
        Value::Array(items) => items
            .iter()
            .map(|w| w.as_str().unwrap_or_default().to_string())
            .collect(),
        other => panic!("warnings is an array: {other}"),
    }
}

async fn wait_for_warning(node: &VerackNode, what: &str) -> String {
    wait_for(what, STORE, || async {
        warnings(node).await.into_iter().next()
    })
    .await
}

async fn wait_for_no_warning(node: &VerackNode, what: &str) {
    wait_for(what, STORE, || async {
        warnings(node).await.is_empty().then_some(())
    })
    .await
}

/// Overwrites 4 KiB at `offset` with pseudo-random bytes.
fn scribble(path: &Path, offset: u64) {
    use std::io::{Seek, SeekFrom, Write};
    let mut file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    file.seek(SeekFrom::Start(offset)).unwrap();
    let mut x = 0x2545_f491_u32 ^ offset as u32;
    let garbage: Vec<u8> = (0..4096)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect();
    file.write_all(&garbage).unwrap();
}

/// Damaged copies moved aside in `dir` (not their `-wal`/`-shm`).
fn moved_aside(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("headers.sqlite.corrupt-") && !n.ends_with("-wal"))
        .filter(|n| !n.ends_with("-shm"))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_or_overwritten_stores_are_repaired_and_resynced() {
    let core = BitcoinCore::start().await;
    core.mine(400).await;
    let tip = core_tip(&core).await;
    let connect = format!("--connect={}", core.p2p);
    let mut node = VerackNode::start(bin(), &[&connect]).await;
    node.wait_for_best_hash(&tip.1, SYNC).await;
    // The truncation, then 4 KiB of garbage at 0, 1/8, …, 7/8 of the file.
    let cases: Vec<Option<u64>> = std::iter::once(None).chain((0..8).map(Some)).collect();
    for (done, case) in cases.into_iter().enumerate() {
        let what = match case {
            None => "truncated to half".to_string(),
            Some(eighth) => format!("4 KiB of garbage at {eighth}/8"),
        };
        let (status, datadir) = node.stop_keeping_datadir().await;
        assert!(status.success(), "{what}: clean stop");
        let db = datadir.join("regtest/headers.sqlite");
        let leftovers: Vec<String> = std::fs::read_dir(db.parent().unwrap())
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".tmp"))
            .collect();
        assert!(
            leftovers.is_empty(),
            "a clean stop leaves no temporary files: {leftovers:?}"
        );
        let size = std::fs::metadata(&db).unwrap().len();
        assert!(size >= 32 * 1024, "a store of several pages: {size} bytes");
        match case {
            None => std::fs::OpenOptions::new()
                .write(true)
                .open(&db)
                .unwrap()
                .set_len(size / 2)
                .unwrap(),
            Some(eighth) => scribble(&db, size * eighth / 8),
        }
        node = VerackNode::start_in(bin(), datadir, &[&connect], &[]).await;
        node.wait_for_best_hash(&tip.1, SYNC).await;
        let log = log_of(node.datadir());
        assert_eq!(
            count(&log, "was damaged"),
            done + 1,
            "{what}: one line says the store was damaged and what happens\n{}",
            node.log_tail(20)
        );
        let line = log.lines().rfind(|l| l.contains("was damaged")).unwrap();
        assert!(
            line.contains(&db.display().to_string()) && line.contains("moved it to"),
            "{what}: the line names the file and where it went: {line}"
        );
        assert!(
            line.contains("download"),
            "{what}: the line says what happens: {line}"
        );
        assert_eq!(moved_aside(db.parent().unwrap()), done + 1);
        node = assert_stored_tip(node, &tip, &what).await;
        let (_, again) = node.restart(bin(), &[&connect]).await;
        node = again;
    }
    assert_eq!(node.terminate().await.code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_writes_are_retried_until_the_chain_is_stored() {
    let core = BitcoinCore::start().await;
    core.mine(400).await;
    let tip = core_tip(&core).await;
    let connect = format!("--connect={}", core.p2p);
    // The first four write transactions fail as on a full disk.
    let node = VerackNode::start_in(
        bin(),
        scratch_dir("store-faults"),
        &[&connect],
        &[(WRITE_FAULTS_ENV, "4")],
    )
    .await;
    node.wait_for_best_hash(&tip.1, SYNC).await;
    let warning = wait_for_warning(&node, "a warning while writes fail").await;
    assert!(
        warning.contains("headers.sqlite") && warning.contains("disk is full"),
        "the warning names the file and the cause: {warning}"
    );
    wait_for_no_warning(&node, "the store to catch up").await;
    let log = log_of(node.datadir());
    assert_eq!(
        count(&log, "cannot write headers to"),
        1,
        "one error line for the failing state, not one per retry\n{log}"
    );
    assert_eq!(count(&log, "writable again"), 1, "{log}");
    let node = assert_stored_tip(node, &tip, "after injected write failures").await;
    assert_eq!(node.terminate().await.code(), Some(0));
}

/// A tmpfs mounted on a directory, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// Mounts a `size` tmpfs on `dir`, or `None` when not root or mounting fails.
    fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let uid = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))?
            .split_whitespace()
            .next()?
            .to_string();
        if uid != "0" {
            return None;
        }
        std::fs::create_dir_all(dir).ok()?;
        let ok = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .ok()?
            .success();
        ok.then(|| Tmpfs(dir.to_path_buf()))
    }

    /// Fills it until a write fails (no space left).
    fn fill(&self) {
        use std::io::Write;
        let mut filler = std::fs::File::create(self.0.join("filler")).unwrap();
        let block = vec![0xa5u8; 16 * 1024];
        while filler
            .write_all(&block)
            .and_then(|()| filler.flush())
            .is_ok()
        {}
        let one = [0u8; 512];
        while filler.write_all(&one).is_ok() {}
    }

    /// Gives the space back.
    fn free(&self) {
        std::fs::remove_file(self.0.join("filler")).unwrap();
    }
}

impl Drop for Tmpfs {
    /// Unmounts, then removes the data directory it was mounted in (after a panic the node's
    /// own removal stopped at the mount point).
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
        if let Some(datadir) = self.0.parent() {
            let _ = std::fs::remove_dir_all(datadir);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_mid_sync_leaves_no_gap() {
    let datadir = scratch_dir("store-full");
    let Some(disk) = Tmpfs::mount(&datadir.join("regtest"), "4m") else {
        eprintln!(
            "a_full_disk_mid_sync_leaves_no_gap: not root or no tmpfs; the injected-failure \
             test covers failing writes"
        );
        let _ = std::fs::remove_dir_all(&datadir);
        return;
    };
    let core = BitcoinCore::start().await;
    core.mine(200).await;
    let connect = format!("--connect={}", core.p2p);
    let node = VerackNode::start_in(bin(), datadir, &[&connect], &[]).await;
    node.wait_for_best_hash(&core.best_hash().await, SYNC).await;
    // A clean restart: the first 200 headers are stored before the disk fills.
    let (_, node) = node.restart(bin(), &[&connect]).await;
    assert_eq!(node.block_count().await, 200);

    // The disk fills while new blocks come: they are followed in memory, the writes fail, the
    // RPC says so, and once space is back the writer catches up by itself.
    disk.fill();
    core.mine(100).await;
    let tip = core_tip(&core).await;
    node.wait_for_best_hash(&tip.1, SYNC).await;
    let warning = wait_for_warning(&node, "a warning while the disk is full").await;
    assert!(warning.contains("disk is full"), "{warning}");
    disk.free();
    wait_for_no_warning(&node, "the store to catch up once space is back").await;
    let node = assert_stored_tip(node, &tip, "full disk, space back while running").await;

    // Full again, and the node stops before space comes back: the stored chain is the prefix
    // written before, which the next start uses as is; the rest is downloaded again.
    let (_, node) = node.restart(bin(), &[&connect]).await;
    node.wait_for_best_hash(&tip.1, SYNC).await;
    disk.fill();
    core.mine(100).await;
    let new_tip = core_tip(&core).await;
    node.wait_for_best_hash(&new_tip.1, SYNC).await;
    wait_for_warning(&node, "a warning while the disk is full again").await;
    let (status, datadir) = node.stop_keeping_datadir().await;
    assert!(status.success(), "a clean stop on a full disk: {status}");
    assert!(
        log_of(&datadir).contains("the next start downloads"),
        "the stop says what was not saved\n{}",
        log_of(&datadir)
    );
    disk.free();
    let node = VerackNode::start_in(bin(), datadir, &[&no_peer().await], &[]).await;
    assert_eq!(
        (node.block_count().await, node.best_hash().await),
        tip,
        "the stored prefix, with no gap"
    );
    let (_, node) = node.restart(bin(), &[&connect]).await;
    node.wait_for_best_hash(&new_tip.1, SYNC).await;
    let node = assert_stored_tip(node, &new_tip, "full disk, stopped before space came back").await;
    assert!(!log_of(node.datadir()).contains("was damaged"));
    let _ = node.stop_keeping_datadir().await;
    drop(disk);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_random_points_loses_nothing_stored() {
    let core = BitcoinCore::start().await;
    core.mine(300).await;
    let connect = format!("--connect={}", core.p2p);
    let seed: u64 = rand::random();
    eprintln!("kill -9 delays seeded with {seed}");
    let mut x = seed | 1;
    let mut next_delay = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        Duration::from_millis(x % 1500)
    };
    let mut node = VerackNode::start(bin(), &[&connect]).await;
    for round in 0..5 {
        // New blocks arrive (announcements, writes) while the node may be starting, checking
        // its store, syncing or writing; it is killed at a random moment.
        core.mine(20).await;
        let delay = next_delay();
        tokio::time::sleep(delay).await;
        let datadir = node.kill_keeping_datadir();
        let tip = core_tip(&core).await;
        node = VerackNode::start_in(bin(), datadir, &[&connect], &[]).await;
        node.wait_for_best_hash(&tip.1, SYNC).await;
        node = assert_stored_tip(node, &tip, &format!("kill -9 after {delay:?}")).await;
        let (_, again) = node.restart(bin(), &[&connect]).await;
        node = again;
        eprintln!("round {round}: killed after {delay:?}, back at {}", tip.0);
    }
    let log = log_of(node.datadir());
    assert_eq!(
        count(&log, "was damaged"),
        0,
        "kill -9 never damages the store"
    );
    assert_eq!(node.terminate().await.code(), Some(0));
}
