//! `verack --proxy`: the node reaches the bundled Bitcoin Core only through a real SOCKS5
//! server, `microsocks` (Debian package `microsocks`, installed by `.ci/run`), on loopback.
//! microsocks binds its outgoing connections to 127.0.0.2 (`-b`), so Core's `getpeerinfo`
//! shows whether a connection came through the proxy (127.0.0.2) or directly (127.0.0.1).

use std::path::Path;
use std::time::Duration;

use verack_testkit::{
    free_port, wait_for, BitcoinCore, Microsocks, VerackNode, MICROSOCKS_SOURCE_IP,
};

const WITHIN: Duration = Duration::from_secs(30);

fn verack_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_verack"))
}

#[tokio::test]
async fn connect_through_the_proxy_reaches_core_only_through_it() {
    let (core, proxy) = tokio::join!(BitcoinCore::start(), Microsocks::start(&[]));
    core.mine(5).await;
    let node = VerackNode::start(
        verack_bin(),
        &[
            &format!("--proxy={}", proxy.addr),
            &format!("--connect={}", core.p2p),
        ],
    )
    .await;
    let entry = core
        .wait_for_peer("verack, handshaked, from the proxy", WITHIN, |p| {
            BitcoinCore::handshaked(p) && p["subver"].as_str().unwrap_or("").contains("verack")
        })
        .await;
    let from = entry["addr"].as_str().unwrap();
    assert!(
        from.starts_with(&format!("{MICROSOCKS_SOURCE_IP}:")),
        "Core sees verack at {from}, not at the proxy's outgoing address"
    );
    assert_eq!(entry["inbound"], true);
    // Every connection Core has is the proxy's (the v2 attempt and any v1 re-dial included).
    for peer in core.peer_info().await {
        let addr = peer["addr"].as_str().unwrap_or("");
        assert!(
            addr.starts_with(MICROSOCKS_SOURCE_IP),
            "direct connection: {peer}"
        );
    }
    let log = proxy.log();
    assert!(
        log.contains(&format!("connected to {}", core.p2p)),
        "microsocks log: {log}"
    );
    // verack names the peer it asked for, and syncs through the tunnel.
    let target = core.p2p.to_string();
    node.wait_for_peer("Core, handshaked", WITHIN, |p| {
        p["addr"] == target.as_str() && p["version"].as_u64().unwrap_or(0) > 0
    })
    .await;
    node.wait_for_height(5, WITHIN).await;
    let verack_log = node.log_tail(200);
    assert!(
        verack_log.contains("outbound connections go through the SOCKS5 proxy"),
        "{verack_log}"
    );
}

#[tokio::test]
async fn a_wrong_proxy_port_means_no_connection() {
    let core = BitcoinCore::start().await;
    // Nothing listens on this port: no proxy there.
    let dead_proxy = free_port().await;
    let node = VerackNode::start(
        verack_bin(),
        &[
            &format!("--proxy=127.0.0.1:{dead_proxy}"),
            &format!("--addnode={}", core.p2p),
        ],
    )
    .await;
    let line = wait_for("a failed attempt through the proxy", WITHIN, || async {
        node.log_tail(200)
            .lines()
            .find(|l| l.contains(&format!("could not reach {}", core.p2p)))
            .map(str::to_owned)
    })
    .await;
    assert!(
        line.contains(&format!(
            "cannot reach the SOCKS5 proxy 127.0.0.1:{dead_proxy}"
        )),
        "{line}"
    );
    // No direct connection was made instead.
    assert!(core.peer_info().await.is_empty());
    assert!(node.peer_info().await.is_empty());
}

/// `getnetworkinfo.networks` for one network, by name.
fn network<'a>(info: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    info["networks"]
        .as_array()
        .expect("networks is an array")
        .iter()
        .find(|n| n["name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {info}"))
}

#[tokio::test]
async fn getnetworkinfo_names_each_networks_proxy_as_core() {
    let proxy = Microsocks::start(&[]).await;
    // Connect-only, to a loopback port where nothing listens: nothing is learned or reached.
    let nobody = free_port().await;
    let onion_port = free_port().await;
    let node = VerackNode::start(
        verack_bin(),
        &[
            &format!("--proxy={}", proxy.addr),
            &format!("--onion=127.0.0.1:{onion_port}"),
            "--onlynet=ipv4",
            "--onlynet=onion",
            &format!("--connect=127.0.0.1:{nobody}"),
        ],
    )
    .await;
    let info = node.must_call("getnetworkinfo", "[]").await;
    let proxy_text = proxy.addr.to_string();
    let ipv4 = network(&info, "ipv4");
    assert_eq!(ipv4["reachable"], true, "{info}");
    assert_eq!(ipv4["limited"], false);
    assert_eq!(ipv4["proxy"], proxy_text.as_str());
    assert_eq!(ipv4["proxy_randomize_credentials"], true);
    // Routed through the proxy, but not allowed by --onlynet (Core: limited, proxy shown).
    let ipv6 = network(&info, "ipv6");
    assert_eq!(ipv6["reachable"], false, "{info}");
    assert_eq!(ipv6["proxy"], proxy_text.as_str());
    // --onion, not --proxy, carries onion peers.
    let onion = network(&info, "onion");
    assert_eq!(onion["reachable"], true, "{info}");
    assert_eq!(onion["proxy"], format!("127.0.0.1:{onion_port}").as_str());
    for name in ["i2p", "cjdns"] {
        let net = network(&info, name);
        assert_eq!(net["reachable"], false, "{info}");
        assert_eq!(net["proxy"], "");
    }
    let log = node.log_tail(200);
    assert!(
        log.contains("onion peers are dialled through the SOCKS5 proxy"),
        "{log}"
    );
    drop(node);

    // --onion=0: Tor unreachable even with a proxy; fixed (no) credentials.
    let node = VerackNode::start(
        verack_bin(),
        &[
            &format!("--proxy={}", proxy.addr),
            "--onion=0",
            "--proxyrandomize=false",
            &format!("--connect=127.0.0.1:{nobody}"),
        ],
    )
    .await;
    let info = node.must_call("getnetworkinfo", "[]").await;
    let onion = network(&info, "onion");
    assert_eq!(onion["reachable"], false, "{info}");
    assert_eq!(onion["proxy"], "");
    let ipv4 = network(&info, "ipv4");
    assert_eq!(ipv4["reachable"], true);
    assert_eq!(ipv4["proxy_randomize_credentials"], false);
    assert_eq!(network(&info, "ipv6")["reachable"], true);
}
