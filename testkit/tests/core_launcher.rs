//! The Bitcoin Core launcher against the real `bitcoind`: starts on loopback, mines, answers
//! RPC, stops cleanly and leaves no data directory behind; two instances connect.

use std::time::Duration;

use verack_testkit::BitcoinCore;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starts_mines_and_stops_cleanly() {
    let core = BitcoinCore::start().await;
    let dir = core.datadir().to_path_buf();
    assert!(dir.join("regtest/debug.log").exists());
    assert_eq!(core.block_count().await, 0);
    let hashes = core.mine(5).await;
    assert_eq!(hashes.len(), 5);
    assert_eq!(core.block_count().await, 5);
    assert_eq!(core.best_hash().await, hashes[4]);
    assert_eq!(core.block_hash(5).await, hashes[4]);
    assert_eq!(core.header_count().await, 5);
    let info = core.must_call("getnetworkinfo", "[]").await;
    assert_eq!(
        info["localaddresses"],
        serde_json::json!([]),
        "no discovery"
    );
    let status = core.stop().await;
    assert!(status.success(), "{status}");
    assert!(!dir.exists(), "data directory removed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_connect_and_share_blocks() {
    let a = BitcoinCore::start().await;
    let b = BitcoinCore::start_with(&[&format!("-connect={}", a.p2p)]).await;
    a.mine(3).await;
    let peer = b
        .wait_for_peer("handshaked with A", Duration::from_secs(20), |p| {
            BitcoinCore::handshaked(p)
        })
        .await;
    assert_eq!(peer["addr"], a.p2p.to_string());
    b.wait_for_header_count(3, Duration::from_secs(20)).await;
    let dir = b.datadir().to_path_buf();
    drop(b);
    assert!(!dir.exists(), "drop removes the data directory");
}

#[test]
#[should_panic(expected = "not a loopback-only argument")]
fn refuses_non_loopback_connections() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(BitcoinCore::start_with(&["-addnode=192.0.2.1:18444"]));
}
