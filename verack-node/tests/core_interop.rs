//! The `verack` binary against Bitcoin Core (`bitcoind` v31.99, regtest, loopback only):
//! version handshakes in both directions over v1 and BIP324 v2 (the same session id on both
//! sides), header sync from Core through a reorg, a second Core syncing headers from verack,
//! and what Core's `getpeerinfo` shows about verack (user agent, services, address relay).

use std::path::Path;
use std::time::Duration;

use bitcoin::p2p::ServiceFlags;
use serde_json::Value;
use verack::peer::DEFAULT_USER_AGENT;
use verack_testkit::{BitcoinCore, VerackNode};

/// Bound for a handshake to show up on both sides.
const HANDSHAKE: Duration = Duration::from_secs(20);
/// Bound for a header sync of a few hundred headers (loopback, both on this machine).
const SYNC: Duration = Duration::from_secs(30);

fn verack_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_verack"))
}

/// Core's view of a peer, handshaked.
fn handshaked(p: &Value) -> bool {
    BitcoinCore::handshaked(p)
}

/// verack's view of a peer: the handshake is done once the peer's version is known and the
/// transport is no longer being detected.
fn verack_handshaked(p: &Value) -> bool {
    p["version"].as_u64().unwrap_or(0) > 0 && p["transport_protocol_type"] != "detecting"
}

/// Both sides report `transport` and, for v2, the same 32-byte session id (for v1 both
/// report an empty one).
fn assert_transport(core_peer: &Value, verack_peer: &Value, transport: &str) {
    assert_eq!(
        core_peer["transport_protocol_type"], transport,
        "Core: {core_peer}"
    );
    assert_eq!(
        verack_peer["transport_protocol_type"], transport,
        "verack: {verack_peer}"
    );
    let core_session = core_peer["session_id"].as_str().expect("Core session_id");
    let verack_session = verack_peer["session_id"]
        .as_str()
        .expect("verack session_id");
    if transport == "v2" {
        assert_eq!(core_session.len(), 64, "32 bytes in hex: {core_session}");
        assert_eq!(core_session, verack_session, "BIP324 session ids agree");
    } else {
        assert_eq!(core_session, "");
        assert_eq!(verack_session, "");
    }
}

/// Core dials verack with `addnode … onetry <v2>`; returns both sides' views once handshaked.
async fn core_dials(core: &BitcoinCore, verack: &VerackNode, v2: bool) -> (Value, Value) {
    core.addnode(verack.p2p, "onetry", v2).await;
    let target = verack.p2p.to_string();
    let core_peer = core
        .wait_for_peer("handshaked with verack", HANDSHAKE, |p| {
            p["addr"] == target.as_str() && handshaked(p)
        })
        .await;
    let verack_peer = verack
        .wait_for_peer("inbound from Core, handshaked", HANDSHAKE, |p| {
            p["inbound"] == true && verack_handshaked(p)
        })
        .await;
    assert_eq!(core_peer["connection_type"], "manual");
    assert_eq!(verack_peer["connection_type"], "inbound");
    (core_peer, verack_peer)
}

/// verack (started with `--connect=<core>`) has dialled Core; both sides' views.
async fn verack_dialed(core: &BitcoinCore, verack: &VerackNode) -> (Value, Value) {
    let core_peer = core
        .wait_for_peer("inbound from verack, handshaked", HANDSHAKE, |p| {
            p["inbound"] == true && handshaked(p)
        })
        .await;
    let target = core.p2p.to_string();
    let verack_peer = verack
        .wait_for_peer("outbound to Core, handshaked", HANDSHAKE, |p| {
            p["addr"] == target.as_str() && verack_handshaked(p)
        })
        .await;
    assert_eq!(core_peer["connection_type"], "inbound");
    assert_eq!(verack_peer["connection_type"], "manual");
    (core_peer, verack_peer)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn core_dials_verack_over_v1() {
    let core = BitcoinCore::start_with(&["-v2transport=0"]).await;
    let verack = VerackNode::start(verack_bin(), &[]).await; // v2 on: must detect v1
    let (core_peer, verack_peer) = core_dials(&core, &verack, false).await;
    assert_transport(&core_peer, &verack_peer, "v1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn core_dials_verack_over_v2() {
    let core = BitcoinCore::start().await;
    let verack = VerackNode::start(verack_bin(), &[]).await;
    let (core_peer, verack_peer) = core_dials(&core, &verack, true).await;
    assert_transport(&core_peer, &verack_peer, "v2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verack_dials_core_over_v1() {
    let core = BitcoinCore::start().await; // v2 on: must detect v1
    let connect = format!("--connect={}", core.p2p);
    let verack = VerackNode::start(verack_bin(), &[&connect, "--v2transport=false"]).await;
    let (core_peer, verack_peer) = verack_dialed(&core, &verack).await;
    assert_transport(&core_peer, &verack_peer, "v1");
}

/// As Core does for `-connect`/`-addnode`: a manual peer is tried over v2 first when we have
/// v2 enabled, whether or not its services are known yet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verack_dials_core_over_v2() {
    let core = BitcoinCore::start().await;
    let connect = format!("--connect={}", core.p2p);
    let verack = VerackNode::start(verack_bin(), &[&connect]).await;
    let (core_peer, verack_peer) = verack_dialed(&core, &verack).await;
    assert_transport(&core_peer, &verack_peer, "v2");
}

/// A v1-only Core still gets a working connection from a v2-enabled verack (over v1, after
/// at most one failed v2 attempt).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verack_reaches_a_v1_only_core() {
    let core = BitcoinCore::start_with(&["-v2transport=0"]).await;
    let connect = format!("--connect={}", core.p2p);
    let verack = VerackNode::start(verack_bin(), &[&connect]).await;
    let (core_peer, verack_peer) = verack_dialed(&core, &verack).await;
    assert_transport(&core_peer, &verack_peer, "v1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syncs_headers_from_core_through_a_reorg() {
    let core = BitcoinCore::start().await;
    core.mine(300).await;
    let connect = format!("--connect={}", core.p2p);
    let verack = VerackNode::start(verack_bin(), &[&connect]).await;
    verack
        .wait_for_best_hash(&core.best_hash().await, SYNC)
        .await;
    assert_eq!(verack.block_count().await, 300);

    // Core abandons blocks 290..=300 and mines a longer branch from 289 (paying another
    // script, so its blocks differ from the invalidated ones even within the same second).
    let old_290 = core.block_hash(290).await;
    core.invalidate_block(&old_290).await;
    assert_eq!(core.block_count().await, 289);
    core.mine_to(20, "raw(52)").await;
    assert_eq!(core.block_count().await, 309);
    let new_tip = core.best_hash().await;
    verack.wait_for_best_hash(&new_tip, SYNC).await;
    assert_eq!(verack.block_count().await, 309);
    for height in [289, 290, 300, 309] {
        assert_eq!(
            verack
                .must_call("getblockhash", &format!("[{height}]"))
                .await,
            core.block_hash(height).await,
            "active chain at {height}"
        );
    }
    assert_ne!(core.block_hash(290).await, old_290);
}

/// Core B (empty chain) dials verack, which synced from Core A; B's header chain reaches A's
/// tip through verack alone. B gets headers only: verack serves no blocks (no NODE_NETWORK).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn core_syncs_headers_from_verack() {
    let a = BitcoinCore::start().await;
    a.mine(300).await;
    let connect = format!("--connect={}", a.p2p);
    let verack = VerackNode::start(verack_bin(), &[&connect]).await;
    verack.wait_for_best_hash(&a.best_hash().await, SYNC).await;

    let b = BitcoinCore::start_with(&["-connect=0"]).await; // dials nobody but verack
    core_dials(&b, &verack, true).await;
    // Core starts a headers sync only with peers that can serve blocks; from verack it learns
    // headers when verack announces a new tip (then asks for the gap with getheaders).
    a.mine(1).await;
    let a_tip = a.best_hash().await;
    verack.wait_for_best_hash(&a_tip, SYNC).await;
    b.wait_for_header_count(301, SYNC).await;
    let tips = b.must_call("getchaintips", "[]").await;
    let tip = tips
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["hash"] == a_tip.as_str())
        .unwrap_or_else(|| panic!("A's tip among B's chain tips: {tips}"));
    assert_eq!(tip["height"], 301);
    assert_eq!(tip["status"], "headers-only", "B has no blocks: {tip}");
    assert_eq!(b.block_count().await, 0);
}

/// What Core records about verack: its BIP14 user agent, the services it advertises (only
/// NODE_P2P_V2, or none with v2 off), and address relay per Core's rule: Core enables address
/// relay with an outbound peer at once (it sends `getaddr`), and with an inbound peer only once
/// that peer sends `addr`, `addrv2` or `getaddr` (p2p_addr_relay.py, blackhole_peer).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn core_sees_user_agent_services_and_addr_relay() {
    let p2p_v2 = format!("{:016x}", ServiceFlags::P2P_V2.to_u64());

    // Core dials verack (v2 enabled): Core's outbound peer.
    let core = BitcoinCore::start().await;
    let verack = VerackNode::start(verack_bin(), &[]).await;
    let (core_peer, verack_peer) = core_dials(&core, &verack, true).await;
    assert_eq!(core_peer["subver"], DEFAULT_USER_AGENT);
    assert_eq!(core_peer["services"], p2p_v2.as_str());
    assert_eq!(core_peer["servicesnames"], serde_json::json!(["P2P_V2"]));
    let local = verack.must_call("getnetworkinfo", "[]").await;
    assert_eq!(core_peer["services"], local["localservices"]);
    assert_eq!(core_peer["version"], local["protocolversion"]);
    // And the other way round: verack records what Core says about itself.
    let core_local = core.must_call("getnetworkinfo", "[]").await;
    assert_eq!(verack_peer["subver"], core_local["subversion"]);
    assert_eq!(verack_peer["services"], core_local["localservices"]);
    assert_eq!(verack_peer["version"], core_local["protocolversion"]);
    assert!(
        core_peer["bytessent_per_msg"]["getaddr"]
            .as_u64()
            .unwrap_or(0)
            > 0,
        "Core asks its outbound peer for addresses: {core_peer}"
    );
    assert_eq!(core_peer["addr_relay_enabled"], true, "{core_peer}");
    drop(verack);
    drop(core);

    // verack dials Core with v2 off: Core's inbound peer.
    let core = BitcoinCore::start().await;
    let connect = format!("--connect={}", core.p2p);
    let verack = VerackNode::start(verack_bin(), &[&connect, "--v2transport=false"]).await;
    let (core_peer, _) = verack_dialed(&core, &verack).await;
    assert_eq!(core_peer["subver"], DEFAULT_USER_AGENT);
    assert_eq!(core_peer["services"], "0000000000000000");
    assert_eq!(core_peer["servicesnames"], serde_json::json!([]));
    // Core pings at once after the handshake; `pingtime` appears when Core has processed the
    // pong, so every message verack sent before it (e.g. a getaddr) has been processed too
    // (Core handles one peer's messages in order).
    let core_peer = core
        .wait_for_peer("whose pong Core has processed", HANDSHAKE, |p| {
            handshaked(p) && p["pingtime"].is_number()
        })
        .await;
    let received = &core_peer["bytesrecv_per_msg"];
    // As Core does with every outbound peer that relays addresses (manual ones included),
    // verack asks Core for addresses at once; so Core enables relay with it.
    assert!(
        received["getaddr"].as_u64().unwrap_or(0) > 0,
        "verack sent getaddr to its manual peer: {core_peer}"
    );
    let addr_messages = ["addr", "addrv2", "getaddr"]
        .iter()
        .any(|m| received[m].as_u64().unwrap_or(0) > 0);
    assert_eq!(
        core_peer["addr_relay_enabled"], addr_messages,
        "Core enables address relay with an inbound peer iff it sent addr/addrv2/getaddr: {core_peer}"
    );
}
