//! Headers presync against Bitcoin Core (issue 13): a peer chain below the minimum chain work
//! is downloaded keeping only Core's `HeadersSyncState` commitments, never stored, and costs no
//! memory per header; once the chain passes the threshold it is redownloaded and accepted.
//!
//! Numbers, as the issue: Core mines 3000 regtest blocks, verack runs with a minimum chain
//! work worth [`THRESHOLD_BLOCKS`] (regtest work is 2 per block at bits `0x207fffff`, genesis
//! included), then Core mines past it. The RSS check (at most [`RSS_SLACK_KB`] more at the
//! end of the presync than at its first log line) is weak at this scale: storing the 1000
//! headers in between would have cost about 250 kB, within the slack. A larger chain did not
//! fit the time budget (Core mined well below 2000 blocks/s here).

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};
use serde_json::Value;
use tokio::time::{sleep, Instant};
use verack_testkit::{wait_for, BitcoinCore, VerackNode, VERACK_LOG_TAIL_LINES};

/// The minimum chain work given to verack, in blocks of regtest work.
const THRESHOLD_BLOCKS: u64 = 8_000;
/// The first chain: presynced, never stored.
const FIRST_BLOCKS: u32 = 3_000;
/// The chain Core ends with: past the threshold (work 2 × 8201 > 2 × 8000).
const PAST_BLOCKS: u32 = 8_200;
/// How much verack's RSS may grow from the first presync line (2000 headers) to the end of
/// the 3000-header presync.
const RSS_SLACK_KB: u64 = 2_048;
/// Bound for the presync of a chain to show up, and for traffic to go quiet after it.
const PRESYNC: Duration = Duration::from_secs(20);
/// How long the block count is watched to stay 0 after a presync.
const STAYS: Duration = Duration::from_secs(1);
/// No headers traffic for this long means the presync is over.
const QUIET: Duration = Duration::from_millis(600);
/// Bound for verack to reach Core's tip once the chain passes the threshold.
const SYNC: Duration = Duration::from_secs(30);

fn verack_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_verack"))
}

/// `2 × blocks` as the unprefixed hex `--min-chain-work` takes.
fn regtest_work_hex(blocks: u64) -> String {
    format!("{:064x}", 2 * blocks)
}

/// VmRSS of process `pid`, in kB.
fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc status")
}

/// Rows in verack's header store, read through a read-only connection.
fn stored_headers(verack: &VerackNode) -> u64 {
    let path = verack.datadir().join("regtest/headers.sqlite");
    let conn = Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .unwrap_or_else(|e| panic!("open {} read-only: {e}", path.display()));
    conn.query_row("SELECT COUNT(*) FROM chain", [], |r| r.get::<_, i64>(0))
        .expect("count the stored headers") as u64
}

/// The highest height in the log's `Pre-synchronizing blockheaders, height: H` lines.
fn logged_presync_height(verack: &VerackNode) -> Option<u64> {
    let log = std::fs::read(verack.datadir().join("verack.log")).expect("verack log");
    String::from_utf8_lossy(&log)
        .lines()
        .filter_map(|l| l.split("Pre-synchronizing blockheaders, height: ").nth(1))
        .filter_map(|rest| rest.split_whitespace().next()?.parse().ok())
        .max()
}

/// Mines `n` blocks in calls of at most 1000, each well within the RPC client's timeout.
async fn mine(core: &BitcoinCore, n: u32) {
    let mut left = n;
    while left > 0 {
        let now = left.min(1_000);
        core.mine(now).await;
        left -= now;
    }
}

/// verack's only peer (Core), once handshaked (waited for up to [`PRESYNC`]).
async fn core_peer(verack: &VerackNode) -> Value {
    verack
        .wait_for_peer("handshaked", PRESYNC, |p| {
            p["version"].as_u64().unwrap_or(0) > 0
        })
        .await;
    verack
        .peer_info()
        .await
        .into_iter()
        .find(|p| p["version"].as_u64().unwrap_or(0) > 0)
        .unwrap_or_else(|| {
            panic!(
                "verack has no peer\n{}",
                verack.log_tail(VERACK_LOG_TAIL_LINES)
            )
        })
}

/// Waits until the log reports a presync at `height` or above, then until headers traffic
/// from Core has stopped for [`QUIET`] with no presync left (`presynced_headers` -1). Returns
/// the highest `presynced_headers` seen meanwhile.
async fn presync_done(verack: &VerackNode, height: u64) -> i64 {
    wait_for(
        &format!("a logged presync height of at least {height}"),
        PRESYNC,
        || async { logged_presync_height(verack).filter(|&h| h >= height) },
    )
    .await;
    let deadline = Instant::now() + PRESYNC;
    let mut seen = -1;
    let mut last = (u64::MAX, Instant::now());
    loop {
        let peer = core_peer(verack).await;
        let presync = peer["presynced_headers"]
            .as_i64()
            .expect("presynced_headers");
        seen = seen.max(presync);
        let received = peer["bytesrecv_per_msg"]["headers"].as_u64().unwrap_or(0);
        if received != last.0 {
            last = (received, Instant::now());
        } else if presync == -1 && last.1.elapsed() >= QUIET {
            return seen;
        }
        assert!(
            Instant::now() < deadline,
            "headers traffic did not settle within {PRESYNC:?}: {peer}\n{}",
            verack.log_tail(VERACK_LOG_TAIL_LINES)
        );
        sleep(Duration::from_millis(20)).await;
    }
}

/// Nothing of a low-work chain is kept: block count 0 for [`STAYS`], no header in
/// `getblockchaininfo`, no row in the store.
async fn assert_nothing_kept(verack: &VerackNode, what: &str) {
    let until = Instant::now() + STAYS;
    while Instant::now() < until {
        assert_eq!(verack.block_count().await, 0, "{what}: getblockcount");
        sleep(Duration::from_millis(50)).await;
    }
    let info = verack.must_call("getblockchaininfo", "[]").await;
    assert_eq!(info["headers"], 0, "{what}: getblockchaininfo {info}");
    assert_eq!(stored_headers(verack), 0, "{what}: rows in headers.sqlite");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_low_work_chain_is_presynced_and_kept_out_until_it_passes_the_threshold() {
    let started = Instant::now();
    let core = BitcoinCore::start_with(&["-v2transport=0"]).await;
    core.mine(FIRST_BLOCKS).await;
    let mined_first = started.elapsed();

    let min_work = format!("--min-chain-work={}", regtest_work_hex(THRESHOLD_BLOCKS));
    let connect = format!("--connect={}", core.p2p);
    let verack =
        VerackNode::start(verack_bin(), &[&min_work, &connect, "--v2transport=false"]).await;

    // 1. The chain: 3000 headers presynced (the first full message logs 2000), nothing kept.
    wait_for("the first presync line", PRESYNC, || async {
        logged_presync_height(&verack)
    })
    .await;
    let rss_start = rss_kb(verack.pid());
    let seen_first = presync_done(&verack, 2_000).await;
    assert_nothing_kept(&verack, "after presyncing 3000 headers").await;
    let rss_first = rss_kb(verack.pid());
    let phase1 = started.elapsed();

    eprintln!(
        "presync: RSS {rss_start} kB at the first presync line, {rss_first} kB after 3000 headers \
         ({:+} kB); presynced_headers seen: {seen_first}; mining 3000 took {mined_first:?}",
        rss_first as i64 - rss_start as i64
    );
    assert!(
        rss_first <= rss_start + RSS_SLACK_KB,
        "RSS grew with the peer's low-work chain: {rss_start} kB -> {rss_first} kB"
    );

    // 3. Past the threshold: verack redownloads and reaches Core's tip, and stores it.
    let t = Instant::now();
    mine(&core, PAST_BLOCKS - FIRST_BLOCKS).await;
    let tip = core.best_hash().await;
    let mined_past = t.elapsed();
    let t = Instant::now();
    verack.wait_for_best_hash(&tip, SYNC).await;
    let synced = t.elapsed();
    assert_eq!(verack.block_count().await, u64::from(PAST_BLOCKS));
    let stored = wait_for("the store to hold the whole chain", SYNC, || async {
        let n = stored_headers(&verack);
        (n == u64::from(PAST_BLOCKS)).then_some(n)
    })
    .await;
    eprintln!(
        "timings: phase 1 done at {phase1:?}; mined {} more in {mined_past:?}; \
         tip reached {synced:?} after mining; {stored} rows stored; total {:?}",
        PAST_BLOCKS - FIRST_BLOCKS,
        started.elapsed()
    );
}
