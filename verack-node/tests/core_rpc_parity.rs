//! RPC parity with Bitcoin Core, measured.
//!
//! Every method verack implements runs on the bundled Bitcoin Core and on verack over the same
//! regtest chain (200 blocks, then an 11-block branch abandoned for a 20-block one, so both nodes
//! have two chain tips; the abandoned branch is headers-only for verack). The replies are walked
//! side by side: every field name on either side and every JSON type (an integer and a float are
//! different types: `1` is not `1.0`) must match. For the methods whose values mean the same on
//! both nodes (the chain, the header fields, the ban list, addresses, `help` lines, error codes
//! and messages) the values must match too.
//!
//! Each difference that remains is in [`DELIBERATE`] with its reason (README, "JSON-RPC", lists
//! the same). Any other difference fails the test, and so does an entry of [`DELIBERATE`] that
//! no longer occurs, so the list stays exact.
//!
//! A second Core (B) that dials verack and gets only headers from it shows what Core itself
//! reports for headers whose blocks it lacks: the evidence behind verack's `nTx` and
//! `headers-only` values.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use verack_testkit::{BitcoinCore, VerackNode, CORE_RPC_PASSWORD, CORE_RPC_USER};

/// Bound for a handshake (and its first ping) to show up on both sides.
const HANDSHAKE: Duration = Duration::from_secs(20);
/// Bound for a header sync of a few hundred headers over loopback.
const SYNC: Duration = Duration::from_secs(30);

/// What differs at a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Diff {
    /// The field is in Core's reply only.
    OnlyInCore,
    /// The field is in verack's reply only.
    OnlyInVerack,
    /// Both have it, with different JSON types.
    Type,
    /// Both have it with the same type, and the values differ where they are compared.
    Value,
}

/// One deliberate difference: where (method, then the path of the field; `[]` is any array
/// element), what, and why.
struct Deliberate {
    at: &'static str,
    diff: Diff,
    why: &'static str,
}

/// Every difference from Core that this test accepts, each with its reason.
const DELIBERATE: &[Deliberate] = &[
    Deliberate {
        at: "getnetworkinfo.relayfee",
        diff: Diff::OnlyInCore,
        why: "verack has no mempool; Core prints relayfee only when it has one (src/rpc/net.cpp: `if (node.mempool)`)",
    },
    Deliberate {
        at: "getnetworkinfo.incrementalfee",
        diff: Diff::OnlyInCore,
        why: "verack has no mempool; Core prints incrementalfee only when it has one",
    },
    Deliberate {
        at: "getblockheader.nTx",
        diff: Diff::Value,
        why: "verack never has the block, so 0: the value Core gives for a header whose block it has not downloaded (checked against Core B below)",
    },
    Deliberate {
        at: "getchaintips[].status",
        diff: Diff::Value,
        why: "verack has no blocks, so a branch off the active chain is headers-only (headers valid, blocks not available) where Core, which validated that branch's blocks, says valid-fork",
    },
    Deliberate {
        at: "getblockchaininfo.size_on_disk",
        diff: Diff::Value,
        why: "verack stores headers only: the size of its header database, not of block and undo files",
    },
    Deliberate {
        at: "getblockchaininfo.warnings",
        diff: Diff::Value,
        why: "the bundled Core is a pre-release build and warns so; verack has no warnings",
    },
    Deliberate {
        at: "stop",
        diff: Diff::Value,
        why: "the reply names the program: \"verack stopping\" (Core: \"Bitcoin Core stopping\")",
    },
];

/// Keys whose objects are data (message types seen on this connection), not a fixed set of
/// fields: only the types of their values are compared.
const MAPS: &[&str] = &[
    "getpeerinfo[].bytessent_per_msg",
    "getpeerinfo[].bytesrecv_per_msg",
];

/// Fields Core's help marks optional and shows only in passing states: absence on either side
/// is not a difference.
const TRANSIENT: &[&str] = &["getpeerinfo[].pingwait"];

/// Numbers Core computes as doubles. UniValue prints a double with 16 significant digits and
/// no decimal point when it is whole (`1`, `0`), so their JSON type follows the value: Core's
/// own `size_tok` reads as an integer when its bucket is full and as a float otherwise. Here
/// the type check asks what matters: that verack prints such a number as Core would print
/// the same value (a whole value without a point).
const DOUBLES: &[&str] = &[
    "getblockchaininfo.verificationprogress",
    "getblockchaininfo.difficulty",
    "getblockheader.difficulty",
    "getpeerinfo[].pingtime",
    "getpeerinfo[].minping",
    "getpeerinfo[].pingwait",
    "getnetworkinfo.inv_buckets.inbound.count_tok",
    "getnetworkinfo.inv_buckets.inbound.size_tok",
    "getnetworkinfo.inv_buckets.outbound.count_tok",
    "getnetworkinfo.inv_buckets.outbound.size_tok",
];

/// Whether `v` is printed as UniValue prints a double of its value: a JSON integer when whole
/// (below 10^16), a JSON float otherwise.
fn printed_as_core_double(v: &Value) -> bool {
    match v.as_f64() {
        Some(x) if x.fract() == 0.0 && x.abs() < 1e16 => !v.is_f64(),
        Some(_) => v.is_f64(),
        None => false,
    }
}

/// A difference found.
#[derive(Debug)]
struct Finding {
    at: String,
    diff: Diff,
    core: String,
    verack: String,
}

/// The JSON type of a value, integers and floats apart.
fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// A value shortened for the report.
fn brief(v: &Value) -> String {
    let text = v.to_string();
    if text.chars().count() > 120 {
        format!("{}…", text.chars().take(117).collect::<String>())
    } else {
        text
    }
}

/// Walks Core's and verack's replies side by side and records the differences.
#[derive(Default)]
struct Parity {
    findings: Vec<Finding>,
    /// Methods and paths compared, for the report.
    compared: Vec<String>,
}

impl Parity {
    /// Field names and JSON types, recursively.
    fn shapes(&mut self, at: &str, core: &Value, verack: &Value) {
        self.compared.push(at.to_string());
        self.walk(at, core, verack, None);
    }

    /// Names, types and values, recursively; paths in `skip` (each node's clock) are compared
    /// by type only.
    fn values(&mut self, at: &str, core: &Value, verack: &Value, skip: &[&str]) {
        self.compared.push(format!("{at} (values)"));
        self.walk(at, core, verack, Some(skip));
    }

    fn note(&mut self, at: &str, diff: Diff, core: &Value, verack: &Value) {
        self.findings.push(Finding {
            at: at.to_string(),
            diff,
            core: brief(core),
            verack: brief(verack),
        });
    }

    fn walk(&mut self, at: &str, core: &Value, verack: &Value, values: Option<&[&str]>) {
        if DOUBLES.contains(&at) && core.is_number() && verack.is_number() {
            if !printed_as_core_double(core) || !printed_as_core_double(verack) {
                self.note(at, Diff::Type, core, verack);
            } else if values.is_some_and(|skip| !skip.contains(&at))
                && core.as_f64() != verack.as_f64()
            {
                self.note(at, Diff::Value, core, verack);
            }
            return;
        }
        if kind(core) != kind(verack) {
            self.note(at, Diff::Type, core, verack);
            return;
        }
        let compare_values = values.is_some_and(|skip| !skip.contains(&at));
        match (core, verack) {
            (Value::Object(c), Value::Object(v)) if MAPS.contains(&at) => {
                for (key, value) in c.iter().chain(v.iter()) {
                    if kind(value) != "integer" {
                        self.note(&format!("{at}.{key}"), Diff::Type, value, value);
                    }
                }
            }
            (Value::Object(c), Value::Object(v)) => {
                for (key, cv) in c {
                    let path = format!("{at}.{key}");
                    match v.get(key) {
                        Some(vv) => self.walk(&path, cv, vv, values),
                        None if TRANSIENT.contains(&path.as_str()) => {}
                        None => self.note(&path, Diff::OnlyInCore, cv, &Value::Null),
                    }
                }
                for (key, vv) in v {
                    let path = format!("{at}.{key}");
                    if !c.contains_key(key) && !TRANSIENT.contains(&path.as_str()) {
                        self.note(&path, Diff::OnlyInVerack, &Value::Null, vv);
                    }
                }
            }
            (Value::Array(c), Value::Array(v)) => {
                if compare_values && c.len() != v.len() {
                    self.note(at, Diff::Value, core, verack);
                    return;
                }
                let path = format!("{at}[]");
                for (cv, vv) in c.iter().zip(v) {
                    self.walk(&path, cv, vv, values);
                }
            }
            _ => {
                if compare_values && core != verack {
                    self.note(at, Diff::Value, core, verack);
                }
            }
        }
    }

    /// Panics unless every finding is deliberate and every deliberate difference was found;
    /// prints the report either way.
    fn finish(self) {
        let mut report = String::from("RPC parity with Bitcoin Core\n");
        let _ = writeln!(report, "compared: {}", self.compared.join(", "));
        let mut unexpected = Vec::new();
        for f in &self.findings {
            let known = DELIBERATE.iter().find(|d| d.at == f.at && d.diff == f.diff);
            let _ = writeln!(
                report,
                "  {} {:?}: Core {} / verack {} — {}",
                f.at,
                f.diff,
                f.core,
                f.verack,
                known.map_or("NOT DELIBERATE", |d| d.why)
            );
            if known.is_none() {
                unexpected.push(f);
            }
        }
        let stale: Vec<&str> = DELIBERATE
            .iter()
            .filter(|d| {
                !self
                    .findings
                    .iter()
                    .any(|f| f.at == d.at && f.diff == d.diff)
            })
            .map(|d| d.at)
            .collect();
        eprintln!("{report}");
        assert!(
            unexpected.is_empty(),
            "differences from Core that are not in DELIBERATE: {unexpected:#?}\n{report}"
        );
        assert!(
            stale.is_empty(),
            "DELIBERATE lists differences that no longer occur (remove them, and from README): {stale:?}"
        );
    }
}

/// A JSON-RPC endpoint with its credentials.
struct Rpc {
    addr: SocketAddr,
    user: String,
    password: String,
}

impl Rpc {
    fn core(core: &BitcoinCore) -> Rpc {
        Rpc {
            addr: core.rpc,
            user: CORE_RPC_USER.into(),
            password: CORE_RPC_PASSWORD.into(),
        }
    }

    fn verack(node: &VerackNode) -> Rpc {
        let cookie = std::fs::read_to_string(node.datadir().join("regtest/.cookie"))
            .expect("verack's RPC cookie");
        let (user, password) = cookie.trim().split_once(':').expect("user:password");
        Rpc {
            addr: node.rpc,
            user: user.into(),
            password: password.into(),
        }
    }

    /// One JSON-RPC 2.0 request (as bitcoin-cli sends); returns the whole reply object. Bounded:
    /// 5 s to connect, 10 s for the reply.
    async fn reply(&self, method: &str, params: Value) -> Value {
        use base64::Engine as _;
        let body = json!({"jsonrpc": "2.0", "id": "parity", "method": method, "params": params})
            .to_string();
        let auth = base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", self.user, self.password));
        let request = format!(
            "POST / HTTP/1.0\r\nHost: 127.0.0.1\r\nAuthorization: Basic {auth}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let mut sock = timeout(Duration::from_secs(5), TcpStream::connect(self.addr))
            .await
            .expect("connect in time")
            .expect("connect");
        sock.write_all(request.as_bytes()).await.expect("send");
        let mut response = String::new();
        timeout(Duration::from_secs(10), sock.read_to_string(&mut response))
            .await
            .expect("reply in time")
            .expect("read");
        assert!(
            response.starts_with("HTTP/1.0 200") || response.starts_with("HTTP/1.1 200"),
            "{method}: JSON-RPC 2.0 replies are 200: {response}"
        );
        let json = response.split("\r\n\r\n").nth(1).unwrap_or_default();
        serde_json::from_str(json).unwrap_or_else(|e| panic!("{method}: {e}: {json}"))
    }

    /// The `result` of a call that must succeed.
    async fn result(&self, method: &str, params: Value) -> Value {
        let reply = self.reply(method, params.clone()).await;
        assert!(
            reply.get("error").is_none_or(Value::is_null),
            "{method} {params} failed: {reply}"
        );
        reply["result"].clone()
    }
}

/// Runs `method` on both; compares the replies' shapes, and values too if `values` (with the
/// paths in `skip` compared by type only). Returns both results.
async fn both(
    parity: &mut Parity,
    core: &Rpc,
    verack: &Rpc,
    method: &str,
    params: Value,
    values: Option<&[&str]>,
) -> (Value, Value) {
    let c = core.result(method, params.clone()).await;
    let v = verack.result(method, params).await;
    match values {
        Some(skip) => parity.values(method, &c, &v, skip),
        None => parity.shapes(method, &c, &v),
    }
    (c, v)
}

/// Runs a call that must fail on both; compares the error objects (code and message) and the
/// reply envelopes.
async fn both_fail(parity: &mut Parity, core: &Rpc, verack: &Rpc, method: &str, params: Value) {
    let c = core.reply(method, params.clone()).await;
    let v = verack.reply(method, params.clone()).await;
    assert!(c["error"].is_object(), "Core {method} {params}: {c}");
    parity.values(&format!("{method} error"), &c, &v, &["id"]);
}

fn verack_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_verack"))
}

/// verack's view of a peer: handshaked (version known, transport settled) and pinged.
fn verack_ready(p: &Value) -> bool {
    p["version"].as_u64().unwrap_or(0) > 0
        && p["transport_protocol_type"] != "detecting"
        && p["pingtime"].is_number()
}

/// Core's view of a peer: handshaked and pinged.
fn core_ready(p: &Value) -> bool {
    BitcoinCore::handshaked(p) && p["pingtime"].is_number()
}

/// Sorted by height (highest first), then hash, so both nodes' tips pair up.
fn sorted_tips(tips: &Value) -> Value {
    let mut list = tips.as_array().expect("tips").clone();
    list.sort_by_key(|t| {
        (
            std::cmp::Reverse(t["height"].as_u64()),
            t["hash"].as_str().map(str::to_owned),
        )
    });
    Value::Array(list)
}

/// The usage lines of a `help` listing (category headings and blank lines left out).
fn usage_lines(help: &Value) -> Vec<String> {
    help.as_str()
        .expect("help text")
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with("=="))
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_method_matches_core_but_the_deliberate_differences() {
    // Core A: the chain. `-connect=0`: it dials nobody by itself (addresses added below stay
    // unused; only loopback traffic).
    let a = BitcoinCore::start_with(&["-connect=0"]).await;
    a.mine(200).await;
    let connect = format!("--connect={}", a.p2p);
    let verack = VerackNode::start(verack_bin(), &[&connect]).await;
    verack.wait_for_best_hash(&a.best_hash().await, SYNC).await;

    // A fork: blocks 190..=200 abandoned for a longer branch from 189; verack saw the old
    // branch, so it keeps it as a headers-only fork. Reconsidering the old branch makes it a
    // valid (not invalid) fork on Core too: both nodes have the same two tips.
    let old_190 = a.block_hash(190).await;
    let old_tip = a.best_hash().await;
    a.invalidate_block(&old_190).await;
    a.mine_to(20, "raw(52)").await;
    a.must_call("reconsiderblock", &format!(r#"["{old_190}"]"#))
        .await;
    verack.wait_for_best_hash(&a.best_hash().await, SYNC).await;

    // Core B dials verack and gets headers only from it (verack serves no blocks).
    let b = BitcoinCore::start_with(&["-connect=0"]).await;
    b.addnode(verack.p2p, "onetry", true).await;
    verack
        .wait_for_peer("inbound from Core B", HANDSHAKE, |p| {
            p["inbound"] == true && verack_ready(p)
        })
        .await;
    // Core learns headers from a peer without blocks when it announces a new tip.
    a.mine(1).await;
    let tip = a.best_hash().await;
    verack.wait_for_best_hash(&tip, SYNC).await;
    b.wait_for_header_count(210, SYNC).await;

    let core = Rpc::core(&a);
    let core_b = Rpc::core(&b);
    let node = Rpc::verack(&verack);
    let mut parity = Parity::default();

    // == Blockchain: the same chain, so the same values.
    both(
        &mut parity,
        &core,
        &node,
        "getblockcount",
        json!([]),
        Some(&[]),
    )
    .await;
    both(
        &mut parity,
        &core,
        &node,
        "getbestblockhash",
        json!([]),
        Some(&[]),
    )
    .await;
    for height in [0, 100, 189, 190, 210] {
        both(
            &mut parity,
            &core,
            &node,
            "getblockhash",
            json!([height]),
            Some(&[]),
        )
        .await;
    }
    let genesis = a.block_hash(0).await;
    let fork_first = old_190.clone();
    for hash in [
        &genesis,
        &a.block_hash(150).await,
        &tip,
        &old_tip,
        &fork_first,
    ] {
        both(
            &mut parity,
            &core,
            &node,
            "getblockheader",
            json!([hash]),
            Some(&[]),
        )
        .await;
        both(
            &mut parity,
            &core,
            &node,
            "getblockheader",
            json!([hash, false]),
            Some(&[]),
        )
        .await;
    }
    let (core_tips, verack_tips) = (
        sorted_tips(&core.result("getchaintips", json!([])).await),
        sorted_tips(&node.result("getchaintips", json!([])).await),
    );
    parity.values("getchaintips", &core_tips, &verack_tips, &[]);
    assert_eq!(verack_tips[1]["hash"], old_tip.as_str(), "{verack_tips}");
    assert_eq!(verack_tips[1]["status"], "headers-only");
    assert_eq!(core_tips[1]["status"], "valid-fork");
    both(
        &mut parity,
        &core,
        &node,
        "getblockchaininfo",
        json!([]),
        Some(&[]),
    )
    .await;

    // The evidence for nTx and headers-only: what Core B, which has these headers but not
    // their blocks, reports.
    let b_header = core_b.result("getblockheader", json!([tip])).await;
    let v_header = node.result("getblockheader", json!([tip])).await;
    assert_eq!(b_header["nTx"], 0, "Core: nTx 0 without the block");
    assert_eq!(v_header["nTx"], b_header["nTx"]);
    let b_tips = core_b.result("getchaintips", json!([])).await;
    assert!(
        b_tips
            .as_array()
            .expect("tips")
            .iter()
            .any(|t| t["hash"] == tip.as_str() && t["status"] == "headers-only"),
        "Core calls a branch whose blocks it lacks headers-only: {b_tips}"
    );

    // == Network.
    let core_in = a
        .wait_for_peer("verack, inbound and pinged", HANDSHAKE, |p| {
            p["inbound"] == true && core_ready(p)
        })
        .await;
    let core_out = b
        .wait_for_peer("verack, outbound and pinged", HANDSHAKE, |p| {
            p["inbound"] == false && core_ready(p)
        })
        .await;
    let a_addr = a.p2p.to_string();
    let verack_out = verack
        .wait_for_peer("Core A, outbound and pinged", HANDSHAKE, |p| {
            p["addr"] == a_addr.as_str() && verack_ready(p)
        })
        .await;
    let verack_in = verack
        .wait_for_peer("Core B, inbound and pinged", HANDSHAKE, |p| {
            p["inbound"] == true && verack_ready(p)
        })
        .await;
    // Like for like: manual outbound on both sides, inbound on both sides.
    parity.shapes("getpeerinfo", &json!([core_out]), &json!([verack_out]));
    parity.shapes("getpeerinfo", &json!([core_in]), &json!([verack_in]));
    // Core shows the version the peer announced (verack's and Core's are both 70017 here).
    assert_eq!(verack_out["version"], core_in["version"]);
    // Our end of the socket: the address Core A saw verack come from is verack's addrbind.
    assert_eq!(
        verack_out["addrbind"].as_str(),
        core_in["addr"].as_str(),
        "verack's local end is Core A's remote end"
    );
    assert_eq!(verack_in["addrbind"], verack.p2p.to_string());
    both(&mut parity, &core, &node, "getnetworkinfo", json!([]), None).await;
    both(
        &mut parity,
        &core,
        &node,
        "getconnectioncount",
        json!([]),
        None,
    )
    .await;
    both(&mut parity, &core, &node, "getnettotals", json!([]), None).await;

    // Bans: the same subnets, durations and errors.
    both(
        &mut parity,
        &core,
        &node,
        "setban",
        json!(["192.0.2.1", "add"]),
        Some(&[]),
    )
    .await;
    both(
        &mut parity,
        &core,
        &node,
        "setban",
        json!(["198.51.100.0/24", "add", 3600]),
        Some(&[]),
    )
    .await;
    let clock = [
        "listbanned[].ban_created",
        "listbanned[].banned_until",
        "listbanned[].time_remaining",
    ];
    let (c, v) = (
        core.result("listbanned", json!([])).await,
        node.result("listbanned", json!([])).await,
    );
    parity.values("listbanned", &c, &v, &clock);
    both_fail(
        &mut parity,
        &core,
        &node,
        "setban",
        json!(["192.0.2.1", "add"]),
    )
    .await;
    both_fail(
        &mut parity,
        &core,
        &node,
        "setban",
        json!(["203.0.113.0/24", "remove"]),
    )
    .await;
    both_fail(
        &mut parity,
        &core,
        &node,
        "setban",
        json!(["not-an-ip", "add"]),
    )
    .await;
    both(
        &mut parity,
        &core,
        &node,
        "setban",
        json!(["192.0.2.1", "remove"]),
        Some(&[]),
    )
    .await;
    both(
        &mut parity,
        &core,
        &node,
        "clearbanned",
        json!([]),
        Some(&[]),
    )
    .await;
    both(
        &mut parity,
        &core,
        &node,
        "listbanned",
        json!([]),
        Some(&[]),
    )
    .await;

    // Manual peers: a loopback port nobody listens on.
    let dead = "127.0.0.1:1";
    both(
        &mut parity,
        &core,
        &node,
        "addnode",
        json!([dead, "add"]),
        Some(&[]),
    )
    .await;
    both_fail(&mut parity, &core, &node, "addnode", json!([dead, "add"])).await;
    both(
        &mut parity,
        &core,
        &node,
        "addnode",
        json!([dead, "remove"]),
        Some(&[]),
    )
    .await;
    both_fail(
        &mut parity,
        &core,
        &node,
        "addnode",
        json!([dead, "remove"]),
    )
    .await;
    both(
        &mut parity,
        &core,
        &node,
        "addnode",
        json!([dead, "onetry"]),
        Some(&[]),
    )
    .await;
    both_fail(&mut parity, &core, &node, "disconnectnode", json!([dead])).await;

    // Addresses: one added to each address manager (never dialled: Core runs with
    // -connect=0, verack with --connect).
    let added = json!(["1.2.3.4", 8333]);
    both(
        &mut parity,
        &core,
        &node,
        "addpeeraddress",
        added.clone(),
        Some(&[]),
    )
    .await;
    both(
        &mut parity,
        &core,
        &node,
        "addpeeraddress",
        added,
        Some(&[]),
    )
    .await;
    let (c, v) = (
        core.result("getnodeaddresses", json!([0, "ipv4"])).await,
        node.result("getnodeaddresses", json!([0, "ipv4"])).await,
    );
    assert!(!c.as_array().expect("list").is_empty(), "{c}");
    parity.values("getnodeaddresses", &c, &v, &["getnodeaddresses[].time"]);
    both(&mut parity, &core, &node, "getaddrmaninfo", json!([]), None).await;
    both_fail(&mut parity, &core, &node, "getnodeaddresses", json!([-1])).await;
    both_fail(
        &mut parity,
        &core,
        &node,
        "getnodeaddresses",
        json!([1, "nosuchnet"]),
    )
    .await;

    // Errors of the blockchain methods.
    both_fail(&mut parity, &core, &node, "getblockhash", json!([1000])).await;
    both_fail(
        &mut parity,
        &core,
        &node,
        "getblockheader",
        json!(["00".repeat(32)]),
    )
    .await;
    both_fail(&mut parity, &core, &node, "getblockheader", json!(["xyz"])).await;
    both_fail(&mut parity, &core, &node, "nosuchmethod", json!([])).await;

    // == Control.
    both(&mut parity, &core, &node, "uptime", json!([]), None).await;
    let (core_help, verack_help) = both(&mut parity, &core, &node, "help", json!([]), None).await;
    let core_lines = usage_lines(&core_help);
    let verack_lines = usage_lines(&verack_help);
    for line in &verack_lines {
        assert!(
            core_lines.contains(line),
            "verack's help line {line:?} is not Core's; Core's: {core_lines:#?}"
        );
    }
    assert!(!verack_help.as_str().expect("help").contains("Hidden"));
    for line in &verack_lines {
        let name = line.split(' ').next().expect("method name");
        let (c, v) = (
            core.result("help", json!([name])).await,
            node.result("help", json!([name])).await,
        );
        let first = |h: &Value| h.as_str().expect("text").lines().next().map(str::to_owned);
        assert_eq!(first(&c), first(&v), "help {name}: the same usage line");
    }

    // Disconnecting a real peer by id (two different connections, so neither is gone
    // already): Core B drops verack, verack drops Core A.
    let (b_id, verack_id) = (core_out["id"].clone(), verack_out["id"].clone());
    let c = core_b.result("disconnectnode", json!(["", b_id])).await;
    let v = node.result("disconnectnode", json!(["", verack_id])).await;
    parity.values("disconnectnode", &c, &v, &[]);

    // Last: stop both.
    let (c, v) = (
        core.result("stop", json!([])).await,
        node.result("stop", json!([])).await,
    );
    parity.values("stop", &c, &v, &[]);

    parity.finish();
}
