//! The `crawler` example (issue 14 item 9) end to end, on loopback: three verack nodes and
//! Bitcoin Core, of which the crawler is told only the first; it must reach the other three
//! through the addresses the network itself hands out in `getaddr` answers.
//!
//! The example's code runs in-process (its source is included as a module, so the test needs
//! no second build): `crawl` is exactly what `cargo run --example crawler` runs, given the
//! same parsed arguments; only the printing is the test's.
//!
//! Core's address manager refuses non-routable addresses (127.x), so Core cannot hand out
//! loopback addresses; the verack nodes do, with the test-only `VERACK_TEST_LOCAL_ADDRESSES=1`
//! (loopback addresses kept, `getaddr` answered with all of them rather than 23 %). Each verack
//! node is connect-only (`--connect` Core, from which it syncs its headers), so it never dials
//! what it is given; each is given a routable address too, which the crawler's loopback guard
//! must skip.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use clap::Parser;
use serde_json::Value;
use verack_testkit::{scratch_dir, BitcoinCore, VerackNode};

#[allow(dead_code)]
#[path = "../../verack/examples/crawler.rs"]
mod crawler;

/// Blocks Core mines, so every node has a non-zero start height.
const HEIGHT: u64 = 7;
/// The crawler's wait for each `getaddr` answer, in seconds (Core, with nothing to say,
/// takes all of it).
const GETADDR_WAIT_SECS: &str = "3";
/// Bound for the whole crawl.
const CRAWL_BOUND: Duration = Duration::from_secs(60);
/// Routable addresses handed out beside the loopback ones: the guard must never let them be
/// dialled.
const ROUTABLE: [&str; 3] = ["8.8.8.8", "8.8.4.4", "1.1.1.1"];

fn verack_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_verack"))
}

/// A connect-only verack node that keeps and hands out loopback addresses.
async fn local_node(core: &BitcoinCore, extra: &[&str]) -> VerackNode {
    let connect = format!("--connect={}", core.p2p);
    let mut args = vec![connect.as_str()];
    args.extend_from_slice(extra);
    VerackNode::start_in(
        verack_bin(),
        scratch_dir("crawl"),
        &args,
        &[("VERACK_TEST_LOCAL_ADDRESSES", "1")],
    )
    .await
}

async fn add_address(node: &VerackNode, ip: &str, port: u16) {
    let v = node
        .must_call("addpeeraddress", &format!(r#"["{ip}",{port}]"#))
        .await;
    assert_eq!(v["success"], true, "addpeeraddress {ip}:{port}: {v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crawler_reaches_verack_nodes_and_core_through_handed_out_addresses() {
    let core = BitcoinCore::start().await;
    core.mine(HEIGHT as u32).await;
    let seed = local_node(&core, &[]).await;
    let middle = local_node(&core, &[]).await;
    // A v1-only node: the crawler's v2 attempt must fall back to one v1 re-dial.
    let far = local_node(&core, &["--v2transport=false"]).await;
    for node in [&seed, &middle, &far] {
        node.wait_for_height(HEIGHT, Duration::from_secs(30)).await;
    }
    // seed -> middle -> far -> Core, each with a routable address beside. One loopback
    // address per node: every 127.0.0.1 entry added this way falls in the same new-table
    // bucket (same group, same source), where two could take the same slot (1 in 64).
    add_address(&seed, "127.0.0.1", middle.p2p.port()).await;
    add_address(&middle, "127.0.0.1", far.p2p.port()).await;
    add_address(&far, "127.0.0.1", core.p2p.port()).await;
    for (node, ip) in [
        (&seed, ROUTABLE[0]),
        (&middle, ROUTABLE[1]),
        (&far, ROUTABLE[2]),
    ] {
        add_address(node, ip, 8333).await;
    }

    let args = crawler::Args::parse_from([
        "crawler",
        "--network",
        "regtest",
        "--seed",
        &seed.p2p.to_string(),
        "--max-nodes",
        "10",
        "--getaddr-timeout",
        GETADDR_WAIT_SECS,
        "--json",
    ]);
    assert_eq!(args.loopback_only, None, "the guard defaults from the seed");
    let mut lines = Vec::new();
    let mut failures = Vec::new();
    let summary = tokio::time::timeout(
        CRAWL_BOUND,
        crawler::crawl(
            &args,
            |r| lines.push(r.to_json().to_string()),
            |a, why| failures.push(format!("{a}: {why}")),
        ),
    )
    .await
    .expect("the crawl ends within its bound")
    .expect("the crawl starts");
    assert!(failures.is_empty(), "unreachable nodes: {failures:?}");

    // One JSON line per node, keyed by address.
    let by_addr: BTreeMap<SocketAddr, Value> = lines
        .iter()
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("one JSON object per line");
            (v["address"].as_str().unwrap().parse().unwrap(), v)
        })
        .collect();
    assert_eq!(lines.len(), 4, "one line per node: {lines:#?}");
    let expected: Vec<SocketAddr> = vec![seed.p2p, middle.p2p, far.p2p, core.p2p];
    for addr in &expected {
        assert!(by_addr.contains_key(addr), "{addr} not reached: {lines:#?}");
    }
    assert_eq!(summary.reached, 4);
    assert_eq!(summary.failed, 0);
    assert_eq!(summary.learned, 3, "middle, far, Core");
    assert_eq!(summary.skipped, 3, "the routable addresses, never dialled");

    let via = |a: SocketAddr| by_addr[&a]["via"].as_str().unwrap().to_string();
    assert_eq!(via(seed.p2p), "seed");
    assert_eq!(via(middle.p2p), seed.p2p.to_string());
    assert_eq!(via(far.p2p), middle.p2p.to_string());
    assert_eq!(via(core.p2p), far.p2p.to_string());

    for (addr, v) in &by_addr {
        let agent = v["user_agent"].as_str().unwrap();
        if *addr == core.p2p {
            assert!(agent.starts_with("/Satoshi:"), "{v}");
            // NODE_NETWORK | NODE_WITNESS | NODE_NETWORK_LIMITED | NODE_P2P_V2 at least.
            let services = v["services"].as_u64().unwrap();
            assert_eq!(services & 0xc09, 0xc09, "{v}");
            assert_eq!(v["addresses"], 0, "Core's address manager is empty: {v}");
        } else {
            assert!(agent.starts_with("/verack:"), "{v}");
            assert_eq!(v["addresses"], 2, "one loopback, one routable: {v}");
        }
        let transport = if *addr == far.p2p { "v1" } else { "v2" };
        assert_eq!(v["transport"], transport, "{v}");
        assert_eq!(v["protocol_version"], 70017, "{v}");
        assert_eq!(v["start_height"], HEIGHT, "{v}");
        let rtt = v["rtt_ms"].as_f64().expect("a pong from every node");
        assert!(rtt > 0.0 && rtt < 5000.0, "{v}");
    }
}

/// The loopback guard refuses a non-loopback seed before dialling anything, and is off by
/// default only when a seed is elsewhere.
#[tokio::test]
async fn loopback_guard_refuses_other_seeds() {
    let args = crawler::Args::parse_from([
        "crawler",
        "--seed",
        "127.0.0.1:1",
        "--seed",
        "192.0.2.1:8333",
        "--loopback-only",
    ]);
    assert_eq!(args.loopback_only, Some(true));
    let err = crawler::crawl(
        &args,
        |_| panic!("nothing reached"),
        |_, _| panic!("nothing dialled"),
    )
    .await
    .expect_err("a non-loopback seed is refused");
    assert!(
        matches!(err, crawler::CrawlError::NotLoopback(a) if a.ip().to_string() == "192.0.2.1")
    );
}
