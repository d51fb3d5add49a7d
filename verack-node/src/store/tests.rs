//! The store on real files: round trips, reorg writes, the start-up check's repairs, and the
//! writer's retries.

use std::io::{Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bitcoin::block::{Header, Version};
use bitcoin::hashes::Hash;
use bitcoin::{BlockHash, CompactTarget, Network, Target, TxMerkleNode};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use verack::chain::{ChainParams, HeaderTree};

use super::check::open_checked;
use super::writer::{self, TreeAccess};
use super::*;

fn genesis() -> Header {
    bitcoin::constants::genesis_block(Network::Regtest).header
}

fn genesis_hash() -> BlockHash {
    genesis().block_hash()
}

/// `n` valid regtest headers on top of `parent` (at `height`), different for each `salt`.
fn extend(parent: &Header, height: u32, n: u32, salt: u8) -> Vec<Header> {
    let bits = CompactTarget::from_consensus(0x207f_ffff);
    let target = Target::from_compact(bits);
    let mut prev = *parent;
    (1..=n)
        .map(|i| {
            let mut root = [salt; 32];
            root[..4].copy_from_slice(&(height + i).to_le_bytes());
            let mut header = Header {
                version: Version::from_consensus(0x2000_0000),
                prev_blockhash: prev.block_hash(),
                merkle_root: TxMerkleNode::from_byte_array(root),
                time: prev.time + 1,
                bits,
                nonce: 0,
            };
            while !target.is_met_by(header.block_hash()) {
                header.nonce += 1;
            }
            prev = header;
            header
        })
        .collect()
}

fn rows(headers: &[Header], first_height: u32) -> Vec<Row> {
    headers
        .iter()
        .enumerate()
        .map(|(i, h)| Row {
            height: first_height + i as u32,
            hash: h.block_hash(),
            header: *h,
        })
        .collect()
}

/// A store at `path` holding `chain` (heights 1…), closed again (checkpointed by SQLite).
fn stored(path: &Path, chain: &[Header]) {
    let mut opened = open_checked(path, genesis_hash()).expect("open");
    opened.store.write(0, &rows(chain, 1)).expect("write");
}

fn assert_is_chain(headers: &[Header]) {
    let mut prev = genesis_hash();
    for (i, h) in headers.iter().enumerate() {
        assert_eq!(h.prev_blockhash, prev, "height {} links", i + 1);
        prev = h.block_hash();
    }
}

/// Files in `dir` whose name contains `part`.
fn files_with(dir: &Path, part: &str) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(part))
        .collect();
    names.sort();
    names
}

#[test]
fn a_new_store_is_empty_and_keeps_what_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("headers.sqlite");
    let opened = open_checked(&path, genesis_hash()).unwrap();
    assert!(opened.headers.is_empty());
    assert!(opened.repair.is_none());
    assert_eq!(opened.store.tip(), (0, genesis_hash()));
    drop(opened);
    let chain = extend(&genesis(), 0, 50, 1);
    stored(&path, &chain);
    let again = open_checked(&path, genesis_hash()).unwrap();
    assert_eq!(again.headers, chain);
    assert!(again.repair.is_none());
    assert_eq!(again.store.tip(), (50, chain[49].block_hash()));
    assert_eq!(files_with(dir.path(), "corrupt"), Vec::<String>::new());
}

#[test]
fn a_reorg_replaces_the_branch_in_one_write() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("headers.sqlite");
    let a = extend(&genesis(), 0, 30, 1);
    stored(&path, &a);
    let b = extend(&a[19], 20, 15, 2);
    let mut opened = open_checked(&path, genesis_hash()).unwrap();
    opened.store.write(20, &rows(&b, 21)).unwrap();
    assert_eq!(opened.store.hash_at(21).unwrap(), Some(b[0].block_hash()));
    assert_eq!(opened.store.hash_at(36).unwrap(), None);
    drop(opened);
    let again = open_checked(&path, genesis_hash()).unwrap();
    let expected: Vec<Header> = a[..20].iter().chain(&b).copied().collect();
    assert_eq!(again.headers, expected);
    assert!(again.repair.is_none());
}

#[test]
fn a_failed_write_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("headers.sqlite");
    let a = extend(&genesis(), 0, 10, 1);
    stored(&path, &a);
    let mut opened = open_checked(&path, genesis_hash()).unwrap();
    opened.store.injected_faults = 1;
    let b = extend(&a[4], 5, 10, 2);
    let err = opened.store.write(5, &rows(&b, 6)).unwrap_err();
    assert!(
        err.to_string().contains("database or disk is full"),
        "{err}"
    );
    assert!(err.to_string().contains("headers.sqlite"), "{err}");
    assert_eq!(opened.store.tip(), (10, a[9].block_hash()));
    drop(opened);
    assert_eq!(open_checked(&path, genesis_hash()).unwrap().headers, a);
}

/// Overwrites `len` bytes at `offset` with a fixed pseudo-random pattern.
fn scribble(path: &Path, offset: u64, len: usize) {
    let mut file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    file.seek(SeekFrom::Start(offset)).unwrap();
    let mut x: u32 = 0x9e37_79b9 ^ offset as u32;
    let garbage: Vec<u8> = (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect();
    file.write_all(&garbage).unwrap();
}

#[test]
fn garbage_anywhere_is_moved_aside_and_the_valid_prefix_kept() {
    let chain = extend(&genesis(), 0, 3000, 1);
    let dir = tempfile::tempdir().unwrap();
    let reference = dir.path().join("reference.sqlite");
    stored(&reference, &chain);
    let size = std::fs::metadata(&reference).unwrap().len();
    assert!(size > 64 * 1024, "a store of several pages: {size}");
    for eighth in 0..8 {
        let case = dir.path().join(format!("case{eighth}"));
        std::fs::create_dir(&case).unwrap();
        let path = case.join("headers.sqlite");
        std::fs::copy(&reference, &path).unwrap();
        scribble(&path, size * eighth / 8, 4096);
        let opened = open_checked(&path, genesis_hash())
            .unwrap_or_else(|e| panic!("offset {eighth}/8: {e}"));
        let repair = opened
            .repair
            .clone()
            .unwrap_or_else(|| panic!("offset {eighth}/8: damage not noticed"));
        eprintln!(
            "offset {eighth}/8: {} (kept {})",
            repair.reason, repair.kept
        );
        assert!(repair.moved_to.exists(), "offset {eighth}/8");
        assert_eq!(repair.kept as usize, opened.headers.len());
        assert_is_chain(&opened.headers);
        assert_eq!(opened.headers[..], chain[..opened.headers.len()]);
        drop(opened);
        let again = open_checked(&path, genesis_hash()).unwrap();
        assert!(
            again.repair.is_none(),
            "offset {eighth}/8: the new store is sound"
        );
        assert_eq!(again.headers.len() as u32, repair.kept);
        let moved: Vec<String> = files_with(&case, "corrupt")
            .into_iter()
            .filter(|n| !n.ends_with("-wal") && !n.ends_with("-shm"))
            .collect();
        assert_eq!(moved.len(), 1, "{:?}", files_with(&case, ""));
    }
}

#[test]
fn a_truncated_store_keeps_what_remains() {
    let chain = extend(&genesis(), 0, 3000, 1);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("headers.sqlite");
    stored(&path, &chain);
    let size = std::fs::metadata(&path).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(size / 2)
        .unwrap();
    let opened = open_checked(&path, genesis_hash()).unwrap();
    assert!(opened.repair.is_some());
    assert!(opened.headers.len() < chain.len());
    assert_eq!(opened.headers[..], chain[..opened.headers.len()]);
}

#[test]
fn not_a_database_is_moved_aside_with_its_side_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("headers.sqlite");
    std::fs::write(&path, vec![0x5a; 8192]).unwrap();
    std::fs::write(dir.path().join("headers.sqlite-wal"), b"not a wal").unwrap();
    std::fs::write(dir.path().join("headers.sqlite-shm"), b"not a shm").unwrap();
    let opened = open_checked(&path, genesis_hash()).unwrap();
    let repair = opened.repair.expect("repaired");
    assert_eq!(repair.kept, 0);
    assert!(opened.headers.is_empty());
    let moved = repair
        .moved_to
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert!(moved.starts_with("headers.sqlite.corrupt-"), "{moved}");
    assert_eq!(std::fs::read(&repair.moved_to).unwrap(), vec![0x5a; 8192]);
    assert_eq!(
        std::fs::read(format!("{}-wal", repair.moved_to.display())).unwrap(),
        b"not a wal"
    );
    assert!(Path::new(&format!("{}-shm", repair.moved_to.display())).exists());
}

#[test]
fn a_gap_or_a_foreign_chain_is_repaired_to_the_valid_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("headers.sqlite");
    let chain = extend(&genesis(), 0, 40, 1);
    stored(&path, &chain);
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute("DELETE FROM chain WHERE height = 10", [])
            .unwrap();
    }
    let opened = open_checked(&path, genesis_hash()).unwrap();
    let repair = opened.repair.clone().expect("repaired");
    assert!(
        repair.reason.contains("no header at height 10"),
        "{}",
        repair.reason
    );
    assert_eq!(opened.headers, chain[..9]);
    drop(opened);

    // A store of another network: nothing links to this genesis.
    let other = dir.path().join("other.sqlite");
    stored(&other, &chain);
    let mainnet = bitcoin::constants::genesis_block(Network::Bitcoin).block_hash();
    let opened = open_checked(&other, mainnet).unwrap();
    assert_eq!(opened.repair.expect("repaired").kept, 0);
    assert!(opened.headers.is_empty());
}

/// A store at `path` in the legacy schema (a hash column with its index), as written before
/// the compact schema, holding `chain` (heights 1…).
fn legacy_stored(path: &Path, chain: &[Header]) {
    let mut conn = rusqlite::Connection::open(path).unwrap();
    conn.pragma_update(None, "journal_mode", "WAL").unwrap();
    let tx = conn.transaction().unwrap();
    tx.execute_batch(
        "CREATE TABLE headers (
             height INTEGER PRIMARY KEY,
             hash   BLOB NOT NULL UNIQUE,
             header BLOB NOT NULL
         );",
    )
    .unwrap();
    for (i, h) in chain.iter().enumerate() {
        tx.execute(
            "INSERT INTO headers (height, hash, header) VALUES (?1, ?2, ?3)",
            params![i as u32 + 1, serialize(&h.block_hash()), serialize(h)],
        )
        .unwrap();
    }
    tx.commit().unwrap();
}

/// The tables of the database at `path`.
fn tables(path: &Path) -> Vec<String> {
    let conn = rusqlite::Connection::open(path).unwrap();
    let mut stmt = conn
        .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name")
        .unwrap();
    let names = stmt
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<rusqlite::Result<_>>()
        .unwrap();
    names
}

/// Bytes of the database at `path` and its side files.
fn store_bytes(path: &Path) -> u64 {
    ["", "-wal", "-shm"]
        .iter()
        .filter_map(|suffix| std::fs::metadata(format!("{}{suffix}", path.display())).ok())
        .map(|m| m.len())
        .sum()
}

#[test]
fn a_legacy_store_is_moved_to_the_compact_schema_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("headers.sqlite");
    let chain = extend(&genesis(), 0, 2000, 1);
    legacy_stored(&path, &chain);
    let legacy_bytes = store_bytes(&path);
    let mut opened = open_checked(&path, genesis_hash()).unwrap();
    assert!(opened.repair.is_none());
    assert_eq!(opened.headers, chain);
    assert_eq!(opened.store.tip(), (2000, chain[1999].block_hash()));
    assert_eq!(
        opened.store.hash_at(1500).unwrap(),
        Some(chain[1499].block_hash())
    );
    assert_eq!(tables(&path), vec!["chain".to_string()]);
    // The migrated store takes writes: a reorg at 1990.
    let b = extend(&chain[1989], 1990, 20, 2);
    opened.store.write(1990, &rows(&b, 1991)).unwrap();
    drop(opened);
    assert!(
        store_bytes(&path) * 10 < legacy_bytes * 7,
        "compacted: {} bytes, legacy {legacy_bytes}",
        store_bytes(&path)
    );
    let again = open_checked(&path, genesis_hash()).unwrap();
    assert!(again.repair.is_none());
    let expected: Vec<Header> = chain[..1990].iter().chain(&b).copied().collect();
    assert_eq!(again.headers, expected);
    assert_eq!(files_with(dir.path(), "corrupt"), Vec::<String>::new());
}

#[test]
fn a_legacy_store_whose_stored_hash_is_wrong_is_repaired_to_the_compact_schema() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("headers.sqlite");
    let chain = extend(&genesis(), 0, 40, 1);
    legacy_stored(&path, &chain);
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute(
            "UPDATE headers SET hash = ?1 WHERE height = 7",
            [serialize(&BlockHash::all_zeros())],
        )
        .unwrap();
    }
    let opened = open_checked(&path, genesis_hash()).unwrap();
    let repair = opened.repair.clone().expect("repaired");
    assert!(
        repair
            .reason
            .contains("height 7 does not match its stored hash"),
        "{}",
        repair.reason
    );
    assert_eq!(opened.headers, chain[..6]);
    drop(opened);
    assert_eq!(tables(&path), vec!["chain".to_string()]);
    // The moved-aside legacy file is left as it was.
    assert_eq!(tables(&repair.moved_to), vec!["headers".to_string()]);
    let again = open_checked(&path, genesis_hash()).unwrap();
    assert!(again.repair.is_none());
    assert_eq!(again.headers, chain[..6]);
}

#[test]
fn an_unopenable_store_is_an_error_and_nothing_moves() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing-dir").join("headers.sqlite");
    let err = open_checked(&path, genesis_hash()).err().expect("fails");
    assert!(matches!(err, StoreError::Open { .. }), "{err}");
    assert!(
        err.to_string().contains("missing-dir/headers.sqlite"),
        "{err}"
    );
    assert!(err.to_string().contains("writable"), "{err}");
}

fn tree() -> Arc<Mutex<HeaderTree>> {
    Arc::new(Mutex::new(HeaderTree::new(ChainParams::new(
        Network::Regtest,
    ))))
}

fn now() -> u32 {
    crate::node::unix_now()
}

/// Polls `f` every 20 ms for up to 10 s.
async fn eventually(what: &str, f: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(tokio::time::Instant::now() < deadline, "{what} within 10 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_writer_retries_failed_writes_and_leaves_no_gap() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("headers.sqlite");
    let mut opened = open_checked(&path, genesis_hash()).unwrap();
    opened.store.injected_faults = 3;
    let status = Arc::new(StoreStatus::new(&path, 0));
    let tree = tree();
    let (tx, rx) = mpsc::unbounded_channel();
    let stop = CancellationToken::new();
    let task = tokio::spawn(writer::run(
        opened.store,
        status.clone(),
        rx,
        tree.clone(),
        stop.clone(),
    ));
    let chain = extend(&genesis(), 0, 600, 1);
    for part in chain.chunks(200) {
        let change = tree.lock().unwrap().accept(part, now()).unwrap().unwrap();
        tx.send(change).unwrap();
    }
    eventually("a warning while writes fail", || status.warning().is_some()).await;
    let warning = status.warning().unwrap();
    assert!(
        warning.contains("headers.sqlite") && warning.contains("disk is full"),
        "{warning}"
    );
    eventually("all 600 stored", || status.stored_height() == 600).await;
    assert_eq!(status.warning(), None);
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(open_checked(&path, genesis_hash()).unwrap().headers, chain);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_writer_follows_reorgs_whatever_the_order_of_wakeups() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("headers.sqlite");
    let opened = open_checked(&path, genesis_hash()).unwrap();
    let status = Arc::new(StoreStatus::new(&path, 0));
    let tree = tree();
    let (tx, rx) = mpsc::unbounded_channel();
    let stop = CancellationToken::new();
    let task = tokio::spawn(writer::run(
        opened.store,
        status.clone(),
        rx,
        tree.clone(),
        stop.clone(),
    ));
    let a = extend(&genesis(), 0, 100, 1);
    let first = tree.lock().unwrap().accept(&a, now()).unwrap().unwrap();
    tx.send(first.clone()).unwrap();
    eventually("chain a stored", || status.stored_height() == 100).await;
    let b = extend(&a[79], 80, 40, 2);
    let second = tree.lock().unwrap().accept(&b, now()).unwrap().unwrap();
    assert_eq!(second.fork_height, 80);
    // Wake-ups out of order, and a stale one: the tree decides what is written.
    tx.send(second).unwrap();
    tx.send(first).unwrap();
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap();
    let expected: Vec<Header> = a[..80].iter().chain(&b).copied().collect();
    assert_eq!(
        open_checked(&path, genesis_hash()).unwrap().headers,
        expected
    );
    assert_eq!(status.stored_height(), 120);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forgotten_stored_branch_is_found_by_bisection() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("headers.sqlite");
    let a = extend(&genesis(), 0, 50, 1);
    stored(&path, &a);
    let opened = open_checked(&path, genesis_hash()).unwrap();
    // The tree never saw branch a above 30: only b, forking there.
    let b = extend(&a[29], 30, 30, 2);
    let tree = Arc::new(Mutex::new(
        HeaderTree::from_active_chain(
            ChainParams::new(Network::Regtest),
            a[..30].iter().chain(&b).copied(),
        )
        .unwrap(),
    ));
    let status = Arc::new(StoreStatus::new(&path, 50));
    let (_tx, rx) = mpsc::unbounded_channel();
    let stop = CancellationToken::new();
    let task = tokio::spawn(writer::run(
        opened.store,
        status.clone(),
        rx,
        tree.clone(),
        stop.clone(),
    ));
    eventually("branch b stored", || status.stored_height() == 60).await;
    stop.cancel();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap();
    let expected: Vec<Header> = a[..30].iter().chain(&b).copied().collect();
    assert_eq!(
        open_checked(&path, genesis_hash()).unwrap().headers,
        expected
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_replaced_while_running_is_rewritten_from_the_tree() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("headers.sqlite");
    let chain = extend(&genesis(), 0, 70, 1);
    stored(&path, &chain);
    let mut opened = open_checked(&path, genesis_hash()).unwrap();
    let moved = opened.store.replace_damaged("test").unwrap();
    assert!(moved.exists());
    assert_eq!(opened.store.tip(), (0, genesis_hash()));
    let tree = Arc::new(Mutex::new(
        HeaderTree::from_active_chain(ChainParams::new(Network::Regtest), chain.clone()).unwrap(),
    ));
    let status = Arc::new(StoreStatus::new(&path, 0));
    let (_tx, rx) = mpsc::unbounded_channel();
    let stop = CancellationToken::new();
    stop.cancel();
    // Asked to stop at once: the final flush still writes everything.
    writer::run(opened.store, status.clone(), rx, tree, stop).await;
    assert_eq!(status.stored_height(), 70);
    assert_eq!(open_checked(&path, genesis_hash()).unwrap().headers, chain);
}

#[test]
fn tree_access_sees_the_tree() {
    let tree = tree();
    let mut height = u32::MAX;
    tree.with_tree(&mut |t| height = t.height());
    assert_eq!(height, 0);
}

/// The start-up check's cost (BENCHMARKS.md, "Header store start-up check"): a synthetic
/// regtest chain of 100,000 and 900,000 headers written to a store, then the median of 5
/// `open_checked` calls (quick_check, then every row read, hashed and linked) and of the tree
/// built from the result, as the node does at start; beside it, a plain load (the rows read and
/// decoded, nothing checked: what the node did before the check existed). Warm page cache (a
/// restart); with `VERACK_BENCH_COLD=1`, as root, also one cold run each (page cache dropped
/// first). Run with
/// `cargo test --release -p verack-node --bin verack store_check_cost -- --ignored --nocapture`.
#[test]
#[ignore = "benchmark; see the doc comment"]
fn store_check_cost() {
    use std::time::Instant;
    fn median(mut v: Vec<Duration>) -> Duration {
        v.sort();
        v[v.len() / 2]
    }
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_string())
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    eprintln!("machine: {cpu}, {cores} cores, {profile} build");
    let chain = extend(&genesis(), 0, 900_000, 1);
    for n in [100_000usize, 900_000] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("headers.sqlite");
        let written = Instant::now();
        stored(&path, &chain[..n]);
        let written = written.elapsed();
        let size = std::fs::metadata(&path).unwrap().len();
        let (mut totals, mut checks, mut trees) = (Vec::new(), Vec::new(), Vec::new());
        let mut plain = Vec::new();
        for _ in 0..5 {
            let started = Instant::now();
            assert_eq!(plain_load(&path).len(), n);
            plain.push(started.elapsed());

            let started = Instant::now();
            let conn = rusqlite::Connection::open_with_flags(
                &path,
                rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
            )
            .unwrap();
            assert_eq!(super::check::quick_check(&conn).unwrap(), None);
            drop(conn);
            checks.push(started.elapsed());

            let started = Instant::now();
            let opened = open_checked(&path, genesis_hash()).unwrap();
            assert_eq!(opened.headers.len(), n);
            assert!(opened.repair.is_none());
            let checked = started.elapsed();
            let tree =
                HeaderTree::from_active_chain(ChainParams::new(Network::Regtest), opened.headers)
                    .unwrap();
            assert_eq!(tree.height() as usize, n);
            totals.push(checked);
            trees.push(started.elapsed() - checked);
        }
        let (total, check, tree) = (median(totals), median(checks), median(trees));
        eprintln!(
            "{{\"bench\":\"store_check\",\"headers\":{n},\"file_bytes\":{size},\
             \"write_ms\":{:.0},\"open_check_load_ms\":{:.1},\"quick_check_ms\":{:.1},\
             \"plain_load_ms\":{:.1},\"tree_build_ms\":{:.1},\"us_per_header\":{:.2},\
             \"cache\":\"warm\",\"profile\":\"{profile}\"}}",
            ms(written),
            ms(total),
            ms(check),
            ms(median(plain)),
            ms(tree),
            ms(total) * 1000.0 / n as f64
        );
        if std::env::var("VERACK_BENCH_COLD").as_deref() == Ok("1") {
            let drop_caches = || {
                let _ = std::process::Command::new("sync").status();
                std::fs::write("/proc/sys/vm/drop_caches", "3").is_ok()
            };
            if drop_caches() {
                let started = Instant::now();
                let opened = open_checked(&path, genesis_hash()).unwrap();
                let cold = started.elapsed();
                drop(opened);
                drop_caches();
                let started = Instant::now();
                plain_load(&path);
                let cold_plain = started.elapsed();
                eprintln!(
                    "{{\"bench\":\"store_check\",\"headers\":{n},\"open_check_load_ms\":{:.1},\
                     \"plain_load_ms\":{:.1},\"cache\":\"cold\",\"profile\":\"{profile}\"}}",
                    ms(cold),
                    ms(cold_plain)
                );
            }
        }
    }
}

/// The rows read and decoded, nothing checked (the load before the start-up check existed).
fn plain_load(path: &Path) -> Vec<Header> {
    let conn = rusqlite::Connection::open(path).unwrap();
    let mut stmt = conn
        .prepare("SELECT header FROM chain WHERE height > 0 ORDER BY height")
        .unwrap();
    let rows = stmt
        .query_map([], |r| r.get::<_, Vec<u8>>(0))
        .unwrap()
        .map(|bytes| bitcoin::consensus::deserialize(&bytes.unwrap()).unwrap())
        .collect();
    rows
}

/// The one-time move of a legacy store to the compact schema at start (`open_checked`: the
/// check of the legacy table, the copy in one transaction, `VACUUM`) keeps every header and
/// shrinks the file (the hash column and its index, about 80 bytes a row, go). 20,000 headers
/// by default; `VERACK_MIGRATION_HEADERS=900000 cargo test --release -p verack-node --bin verack
/// legacy_migration_cost -- --nocapture` gives BENCHMARKS.md's mainnet-scale figures (sizes
/// and times printed as JSON; times are reported, never asserted).
#[test]
fn legacy_migration_cost() {
    use std::time::Instant;
    let n: u32 = std::env::var("VERACK_MIGRATION_HEADERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let chain = extend(&genesis(), 0, n, 1);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("headers.sqlite");
    legacy_stored(&path, &chain);
    let legacy = store_bytes(&path);
    let started = Instant::now();
    let opened = open_checked(&path, genesis_hash()).unwrap();
    let migrated = started.elapsed();
    assert!(opened.repair.is_none());
    assert_eq!(opened.headers.len(), n as usize);
    drop(opened);
    let compact = store_bytes(&path);
    let started = Instant::now();
    let again = open_checked(&path, genesis_hash()).unwrap();
    let reopened = started.elapsed();
    assert_eq!(again.headers.len(), n as usize);
    assert!(
        compact * 10 < legacy * 7,
        "the compact store ({compact} bytes) should be well under the legacy one ({legacy} bytes)"
    );
    eprintln!(
        "{{\"bench\":\"store_migration\",\"headers\":{n},\"legacy_bytes\":{legacy},\
         \"compact_bytes\":{compact},\"migrate_open_ms\":{:.0},\"next_open_ms\":{:.0}}}",
        migrated.as_secs_f64() * 1000.0,
        reopened.as_secs_f64() * 1000.0
    );
}
