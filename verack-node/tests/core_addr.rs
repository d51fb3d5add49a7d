//! Address discovery from Bitcoin Core (issue 11 item 2): verack asks a manual peer for
//! addresses with `getaddr` as Core does on every outbound connection that relays addresses,
//! keeps what Core answers in its address manager, and still has it after a clean restart
//! (`peers.dat`).
//!
//! Nothing may be dialled off loopback, yet the addresses learned are routable ones (Core only
//! relays those). Core runs with `-connect=0` (no automatic outbound connections, as in Core's
//! functional tests). verack's two runs both use `--connect` (connect-only: no outbound loop,
//! no feelers, no DNS seeds; see `Server::start` and `verack-node/src/main.rs`): first to
//! Core, then to a loopback port nobody listens on. Throughout, `/proc/net/tcp` must show no
//! socket to any of the addresses.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use tokio::task::JoinSet;
use tokio::time::{sleep, Instant};
use verack_testkit::{
    free_port, rpc_call, BitcoinCore, VerackNode, CORE_LOG_TAIL_LINES, CORE_RPC_PASSWORD,
    CORE_RPC_USER, POLL_INTERVAL, VERACK_LOG_TAIL_LINES,
};

/// Bound for the handshake to show up on both sides.
const HANDSHAKE: Duration = Duration::from_secs(20);
/// Bound for Core's `getaddr` answer to reach verack's address manager.
const LEARN: Duration = Duration::from_secs(20);
/// How long the restarted node is watched for dials beyond its dead `--connect` port.
const QUIET: Duration = Duration::from_secs(1);
/// Addresses put into Core's address manager. Core answers `getaddr` with at most 23% of
/// them (`MAX_PCT_ADDR_TO_SEND`), so a few hundred give dozens.
const CORE_ADDRESSES: u32 = 300;
/// Core's `MAX_PCT_ADDR_TO_SEND`.
const CORE_MAX_PCT: usize = 23;

fn verack_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_verack"))
}

/// One routable-looking IPv4 address per index, each in its own /16 (first octets 11..=99,
/// none of them private, reserved or shared ranges), on one of two ports.
fn test_address(i: u32) -> (String, u16) {
    let (a, b) = (11 + i / 200, 1 + i % 200);
    assert!(a <= 99, "index {i} out of range");
    let ip = format!("{a}.{b}.{}.{}", 1 + i % 7, 1 + i % 250);
    let port = if i.is_multiple_of(2) { 8333 } else { 18444 };
    (ip, port)
}

/// `(address, port)` of every entry of a `getnodeaddresses` answer.
fn address_set(answer: &Value) -> BTreeSet<(String, u16)> {
    answer
        .as_array()
        .expect("getnodeaddresses is an array")
        .iter()
        .map(|a| {
            let ip = a["address"].as_str().expect("address").to_string();
            let port = a["port"].as_u64().expect("port");
            (ip, u16::try_from(port).expect("port fits u16"))
        })
        .collect()
}

/// verack's view of a peer: handshaked once the version is known and the transport detected.
fn verack_handshaked(p: &Value) -> bool {
    p["version"].as_u64().unwrap_or(0) > 0 && p["transport_protocol_type"] != "detecting"
}

/// Every peer verack lists is on loopback (a guard on top of connect-only mode).
fn assert_all_loopback(peers: &[Value]) {
    for p in peers {
        let addr = p["addr"].as_str().expect("addr");
        let ip: IpAddr = addr
            .parse::<SocketAddr>()
            .map(|a| a.ip())
            .unwrap_or_else(|e| panic!("unparsable peer address {addr}: {e}"));
        assert!(ip.is_loopback(), "verack has a peer off loopback: {p}");
    }
}

/// The remote end of every TCP socket in this network namespace (`/proc/net/tcp` and
/// `/proc/net/tcp6`, IPv4-mapped addresses unmapped), connecting ones (`SYN_SENT`) included.
///
/// # Panics
/// When `/proc/net/tcp` cannot be read or parsed.
fn tcp_remotes() -> Vec<SocketAddr> {
    let mut remotes = Vec::new();
    for (path, required) in [("/proc/net/tcp", true), ("/proc/net/tcp6", false)] {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if required => panic!("cannot read {path}: {e}"),
            Err(_) => continue,
        };
        for line in text.lines().skip(1) {
            let remote = line.split_whitespace().nth(2).expect("rem_address column");
            let (ip_hex, port_hex) = remote.split_once(':').expect("ip:port");
            let port = u16::from_str_radix(port_hex, 16).expect("hex port");
            // The kernel prints each 32-bit word of the address as read from memory.
            let words: Vec<[u8; 4]> = (0..ip_hex.len() / 8)
                .map(|w| {
                    u32::from_str_radix(&ip_hex[w * 8..w * 8 + 8], 16)
                        .expect("hex address")
                        .to_ne_bytes()
                })
                .collect();
            let ip = match words.len() {
                1 => IpAddr::from(words[0]),
                4 => {
                    let bytes: [u8; 16] = words.concat().try_into().expect("16 bytes");
                    let v6 = std::net::Ipv6Addr::from(bytes);
                    v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4)
                }
                n => panic!("{path}: address of {n} words: {line}"),
            };
            remotes.push(SocketAddr::new(ip, port));
        }
    }
    remotes
}

/// Sockets (of any process here) connected or connecting to one of `addresses`.
fn sockets_to(addresses: &BTreeSet<(String, u16)>) -> Vec<SocketAddr> {
    tcp_remotes()
        .into_iter()
        .filter(|r| addresses.contains(&(r.ip().to_string(), r.port())))
        .collect()
}

/// Gives Core [`CORE_ADDRESSES`] addresses with `addpeeraddress` (every third one moved to
/// the tried table), eight calls at a time; returns those it reported success for. A tried
/// move that collides reports failure but leaves the address in the new table.
async fn fill_core(core: &BitcoinCore) -> BTreeSet<(String, u16)> {
    let mut added = BTreeSet::new();
    let mut calls = JoinSet::new();
    for i in 0..CORE_ADDRESSES {
        if calls.len() >= 8 {
            added.extend(calls.join_next().await.expect("a call").expect("join"));
        }
        let rpc = core.rpc;
        calls.spawn(async move {
            let (ip, port) = test_address(i);
            let tried = i % 3 == 0;
            let params = format!(r#"["{ip}",{port},{tried}]"#);
            let reply = rpc_call(
                rpc,
                CORE_RPC_USER,
                CORE_RPC_PASSWORD,
                "addpeeraddress",
                &params,
            )
            .await
            .unwrap_or_else(|e| panic!("Core addpeeraddress {params}: {e}"));
            (reply["success"] == true).then_some((ip, port))
        });
    }
    while let Some(done) = calls.join_next().await {
        added.extend(done.expect("join"));
    }
    added
}

/// Polls verack's `getnodeaddresses 0` until it is non-empty, up to [`LEARN`].
///
/// # Panics
/// At the deadline, quoting both sides' peer views and log tails.
async fn wait_for_addresses(core: &BitcoinCore, verack: &VerackNode) -> BTreeSet<(String, u16)> {
    let deadline = Instant::now() + LEARN;
    loop {
        let set = address_set(&verack.must_call("getnodeaddresses", "[0]").await);
        if !set.is_empty() {
            return set;
        }
        if Instant::now() >= deadline {
            panic!(
                "verack learned no address from Core within {LEARN:?}\n\
                 Core getpeerinfo: {}\nverack getpeerinfo: {}\n\
                 --- Core debug.log tail ---\n{}\n--- verack log tail ---\n{}",
                Value::Array(core.peer_info().await),
                Value::Array(verack.peer_info().await),
                core.debug_log_tail(CORE_LOG_TAIL_LINES),
                verack.log_tail(VERACK_LOG_TAIL_LINES)
            );
        }
        sleep(POLL_INTERVAL).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verack_learns_addresses_from_core_and_keeps_them_across_restart() {
    // `-connect=0`: Core must not dial the routable addresses it is about to be given (Core's
    // own functional tests run every node so); it still listens and answers getaddr.
    let core = BitcoinCore::start_with(&["-connect=0", "-debug=net"]).await;

    let offered: BTreeSet<(String, u16)> = (0..CORE_ADDRESSES).map(test_address).collect();
    let added = fill_core(&core).await;
    let core_known = address_set(&core.must_call("getnodeaddresses", "[0]").await);
    let unknown: Vec<_> = core_known.difference(&offered).collect();
    assert!(
        unknown.is_empty(),
        "Core knows addresses not given to it: {unknown:?}"
    );
    let lost: Vec<_> = added.difference(&core_known).collect();
    assert!(
        lost.is_empty(),
        "Core reported success but does not list: {lost:?}"
    );
    assert!(
        core_known.len() * 10 >= CORE_ADDRESSES as usize * 9,
        "Core holds only {} of {CORE_ADDRESSES} addresses",
        core_known.len()
    );

    // Connect-only to Core: a manual peer, the only connection verack makes.
    let connect = format!("--connect={}", core.p2p);
    let verack = VerackNode::start(verack_bin(), &[&connect]).await;
    let target = core.p2p.to_string();
    verack
        .wait_for_peer("outbound to Core, handshaked", HANDSHAKE, |p| {
            p["addr"] == target.as_str() && verack_handshaked(p)
        })
        .await;

    let learned = wait_for_addresses(&core, &verack).await;
    // Core's own address is the only other thing verack could have been told about.
    let core_self = (core.p2p.ip().to_string(), core.p2p.port());
    let foreign: Vec<_> = learned
        .iter()
        .filter(|a| !core_known.contains(*a) && **a != core_self)
        .collect();
    assert!(
        foreign.is_empty(),
        "verack learned addresses Core never had: {foreign:?}"
    );
    // Core answers with 23% of what it holds (none of it is "terrible"); verack may lose a
    // few to collisions in its own new table, not most.
    let answer = core_known.len() * CORE_MAX_PCT / 100;
    assert!(
        learned.len() <= answer + 1 && learned.len() * 2 >= answer,
        "Core answers getaddr with {answer} ({CORE_MAX_PCT}% of {}); verack holds {}",
        core_known.len(),
        learned.len()
    );

    // Core dials nobody: its only peer is verack, inbound.
    let core_peers = core.peer_info().await;
    assert!(
        core_peers.len() == 1 && core_peers[0]["inbound"] == true,
        "Core's only connection is verack's: {}",
        Value::Array(core_peers.clone())
    );

    // Both sides agree a getaddr went out and an address answer came back.
    let core_peer = core
        .wait_for_peer("inbound from verack, handshaked", HANDSHAKE, |p| {
            p["inbound"] == true && BitcoinCore::handshaked(p)
        })
        .await;
    assert!(
        core_peer["bytesrecv_per_msg"]["getaddr"]
            .as_u64()
            .unwrap_or(0)
            > 0,
        "Core received getaddr from verack: {core_peer}"
    );
    assert_eq!(
        core_peer["addr_relay_enabled"], true,
        "Core relays addresses to verack after its getaddr: {core_peer}"
    );
    let answer_bytes = core_peer["bytessent_per_msg"]["addrv2"]
        .as_u64()
        .unwrap_or(0)
        + core_peer["bytessent_per_msg"]["addr"].as_u64().unwrap_or(0);
    assert!(answer_bytes > 0, "Core sent addresses: {core_peer}");
    let peers = verack.peer_info().await;
    assert_all_loopback(&peers);
    let verack_peer = peers
        .iter()
        .find(|p| p["addr"] == target.as_str())
        .expect("verack still lists Core");
    assert_eq!(verack_peer["connection_type"], "manual");
    assert_eq!(verack_peer["addr_relay_enabled"], true, "{verack_peer}");
    // verack's `addr_processed`/`addr_rate_limited` are not counted yet (always 0), so they
    // cannot back this up; Core's counters above and the address manager below do.

    // The socket table is read right: it shows verack's connection to Core.
    let remotes = tcp_remotes();
    assert!(
        remotes.contains(&core.p2p),
        "/proc/net/tcp lists no socket to Core at {}: {remotes:?}",
        core.p2p
    );
    let dialling = sockets_to(&offered);
    assert!(
        dialling.is_empty(),
        "sockets to Core's addresses: {dialling:?}"
    );

    // What verack holds now (a superset of the first reading, should more have arrived).
    let learned = address_set(&verack.must_call("getnodeaddresses", "[0]").await);
    let foreign: Vec<_> = learned
        .iter()
        .filter(|a| !core_known.contains(*a) && **a != core_self)
        .collect();
    assert!(foreign.is_empty(), "later from Core's peer: {foreign:?}");
    let peers_dat = verack.datadir().join("regtest/peers.dat");
    let log_path = verack.datadir().join("verack.log");

    // A clean stop saves peers.dat; the restart (debug log) dials only a dead loopback port.
    let first_log_len = std::fs::metadata(&log_path).map_or(0, |m| m.len());
    let dead = free_port().await;
    let dead_addr = format!("127.0.0.1:{dead}");
    let dead_connect = format!("--connect={dead_addr}");
    let (status, verack) = verack
        .restart(verack_bin(), &[&dead_connect, "--log-level=verack=debug"])
        .await;
    assert!(
        status.success(),
        "verack stopped cleanly on SIGTERM: {status}"
    );
    assert!(peers_dat.is_file(), "peers.dat written at shutdown");
    let info = verack.must_call("getaddrmaninfo", "[]").await;
    let after = address_set(&verack.must_call("getnodeaddresses", "[0]").await);
    assert_eq!(
        after, learned,
        "the addresses learned from Core survive the restart (getaddrmaninfo {info})"
    );

    // Connect-only: the dead port is dialled (and fails), the learned addresses are not. This
    // machine has a default route, so a dial to one would sit in SYN_SENT (seen in
    // /proc/net/tcp) until its timeout; without a route it would fail at once ("dial failed"
    // in the debug log).
    let second_log = || {
        let bytes = std::fs::read(&log_path).expect("verack log");
        String::from_utf8_lossy(&bytes[first_log_len as usize..]).into_owned()
    };
    verack_testkit::wait_for("the dead --connect port to be dialled", LEARN, || async {
        let log = second_log();
        (log.contains("dial failed") && log.contains(&dead_addr)).then_some(())
    })
    .await;
    let quiet_until = Instant::now() + QUIET;
    while Instant::now() < quiet_until {
        let dialling = sockets_to(&offered);
        assert!(
            dialling.is_empty(),
            "sockets to addresses learned from Core: {dialling:?}"
        );
        sleep(POLL_INTERVAL).await;
    }
    assert_all_loopback(&verack.peer_info().await);
    let log = second_log();
    let dialled: Vec<_> = after
        .iter()
        .filter(|(ip, port)| log.contains(&format!("{ip}:{port}")))
        .collect();
    assert!(
        dialled.is_empty(),
        "the restarted node mentions learned addresses (dialled?): {dialled:?}\n{}",
        verack.log_tail(VERACK_LOG_TAIL_LINES)
    );
    let status = verack.terminate().await;
    assert!(status.success(), "second run stopped cleanly: {status}");
    core.stop().await;
}
