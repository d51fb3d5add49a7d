//! End-to-end tests: a real server on loopback, a fake backend, and raw HTTP/1.1 requests
//! over a `TcpStream`, so status lines and headers are checked as a client sees them.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use bitcoin::block::{Header, Version as BlockVersion};
use bitcoin::consensus::encode::serialize_hex;
use bitcoin::hashes::Hash as _;
use bitcoin::{BlockHash, CompactTarget, Network, TxMerkleNode, Work};
use ipnet::IpNet;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::types::*;
use super::{cookie_path, default_rpc_port, serve, Cookie, RpcAuth, RpcBackend};

const USER: &str = "alice";
const PASS: &str = "correct horse";

// ---------------------------------------------------------------------------
// Fake node.

struct Fake {
    chain: Vec<Header>,
    peers: Vec<RpcPeer>,
    local_services: u64,
    added: Mutex<Vec<String>>,
    onetry: Mutex<Vec<(String, bool)>>,
    disconnected: Mutex<Vec<DisconnectTarget>>,
    bans: Mutex<Vec<(IpNet, BanExpiry)>>,
    stopped: AtomicBool,
}

impl Fake {
    fn new() -> Self {
        // Regtest genesis plus two headers on top; proof of work is not checked here.
        let genesis = bitcoin::blockdata::constants::genesis_block(Network::Regtest).header;
        let mut chain = vec![genesis];
        for i in 1..=2u32 {
            let prev = chain.last().expect("non-empty").block_hash();
            chain.push(Header {
                version: BlockVersion::from_consensus(0x2000_0000),
                prev_blockhash: prev,
                merkle_root: TxMerkleNode::from_byte_array([i as u8; 32]),
                time: genesis.time + 600 * i,
                bits: CompactTarget::from_consensus(0x207f_ffff),
                nonce: i,
            });
        }
        let mut outbound = RpcPeer::new(
            7,
            "203.0.113.9:18444".parse().expect("addr"),
            ConnectionType::OutboundFullRelay,
        );
        outbound.network = RpcNetwork::Ipv4;
        outbound.services = 1 | (1 << 3) | (1 << 10) | (1 << 11) | (1 << 40);
        outbound.subver = "/Satoshi:27.0.0/\u{7}<evil>".into();
        outbound.ping_time = Some(Duration::from_micros(1500));
        outbound.min_ping = Some(Duration::from_micros(1200));
        outbound.addr_bind = Some("127.0.0.1:50000".parse().expect("addr"));
        // As reported in the peer's `version` (IPv4-mapped, as on the wire).
        outbound.addr_local = Some("[::ffff:198.51.100.7]:18444".parse().expect("addr"));
        outbound.version = 70016;
        outbound.bytes_sent_per_msg = BTreeMap::from([("headers".into(), 0), ("ping".into(), 32)]);
        outbound.transport = Transport::V2 {
            session_id: [0xab; 32],
        };
        outbound.synced_headers = 2;
        outbound.presynced_headers = 4000;
        let mut inbound = RpcPeer::new(
            8,
            "127.0.0.1:61000".parse().expect("addr"),
            ConnectionType::Inbound,
        );
        // What Core sends to a peer whose address is not routable: not shown.
        inbound.addr_local = Some("0.0.0.0:0".parse().expect("addr"));
        Self {
            chain,
            peers: vec![outbound, inbound],
            local_services: 1 | (1 << 3) | (1 << 11),
            added: Mutex::new(Vec::new()),
            onetry: Mutex::new(Vec::new()),
            disconnected: Mutex::new(Vec::new()),
            bans: Mutex::new(Vec::new()),
            stopped: AtomicBool::new(false),
        }
    }

    fn info(&self, height: usize) -> RpcHeaderInfo {
        let tip = self.chain.len() - 1;
        RpcHeaderInfo {
            header: self.chain[height],
            height: height as u32,
            chainwork: Work::from_be_bytes({
                let mut w = [0u8; 32];
                w[31] = 2 * (height as u8 + 1);
                w
            }),
            confirmations: (tip - height + 1) as i64,
            median_time: self.chain[height].time,
            next_hash: self.chain.get(height + 1).map(Header::block_hash),
            n_tx: 0,
        }
    }
}

impl RpcBackend for Fake {
    fn network(&self) -> Network {
        Network::Regtest
    }
    fn peers(&self) -> Vec<RpcPeer> {
        self.peers.clone()
    }
    fn local_services(&self) -> u64 {
        self.local_services
    }
    fn network_info(&self) -> RpcNetworkInfo {
        RpcNetworkInfo {
            version: 100,
            subversion: "/verack:0.1.0/".into(),
            protocol_version: 70016,
            local_relay: false,
            time_offset: -1,
            network_active: true,
            reachable: vec![RpcNetwork::Ipv4, RpcNetwork::Ipv6, RpcNetwork::Onion],
            proxies: vec![RpcProxy {
                network: RpcNetwork::Onion,
                proxy: "127.0.0.1:9050".parse().expect("addr"),
                randomize_credentials: true,
            }],
            relay_fee: None,
            incremental_fee: None,
            local_addresses: vec![RpcLocalAddress {
                address: "198.51.100.1".parse().expect("ip"),
                port: 18444,
                score: 4,
            }],
            warnings: vec![],
        }
    }
    fn net_totals(&self) -> RpcNetTotals {
        RpcNetTotals {
            bytes_recv: 1000,
            bytes_sent: 2000,
        }
    }
    fn add_node(&self, node: &str, _v2transport: bool) -> bool {
        let mut added = self.added.lock().expect("lock");
        if added.iter().any(|n| n == node) {
            return false;
        }
        added.push(node.to_string());
        true
    }
    fn remove_added_node(&self, node: &str) -> bool {
        let mut added = self.added.lock().expect("lock");
        let before = added.len();
        added.retain(|n| n != node);
        added.len() != before
    }
    fn connect_once(&self, node: &str, v2transport: bool) {
        self.onetry
            .lock()
            .expect("lock")
            .push((node.to_string(), v2transport));
    }
    fn disconnect_node(&self, target: DisconnectTarget) -> bool {
        let found = match &target {
            DisconnectTarget::Address(a) => self.peers.iter().any(|p| &p.addr == a),
            DisconnectTarget::NodeId(id) => self.peers.iter().any(|p| p.id == *id),
        };
        self.disconnected.lock().expect("lock").push(target);
        found
    }
    fn ban(&self, subnet: IpNet, expiry: BanExpiry) -> bool {
        let mut bans = self.bans.lock().expect("lock");
        let host = subnet.prefix_len() == subnet.max_prefix_len();
        let already = bans.iter().any(|(b, _)| {
            if host {
                b.contains(&subnet.addr())
            } else {
                *b == subnet
            }
        });
        if !already {
            bans.push((subnet, expiry));
        }
        !already
    }
    fn unban(&self, subnet: &IpNet) -> bool {
        let mut bans = self.bans.lock().expect("lock");
        let before = bans.len();
        bans.retain(|(b, _)| b != subnet);
        bans.len() != before
    }
    fn list_banned(&self) -> Vec<RpcBan> {
        self.bans
            .lock()
            .expect("lock")
            .iter()
            .map(|(subnet, _)| RpcBan {
                subnet: *subnet,
                created: 1_000,
                banned_until: 4_000_000_000,
            })
            .collect()
    }
    fn clear_banned(&self) {
        self.bans.lock().expect("lock").clear();
    }
    fn tip(&self) -> RpcHeaderInfo {
        self.info(self.chain.len() - 1)
    }
    fn chain_status(&self) -> RpcChainStatus {
        RpcChainStatus {
            headers: 2,
            verification_progress: 1.0,
            initial_block_download: false,
            size_on_disk: 240,
            signet_challenge: None,
            warnings: vec!["test warning".into()],
        }
    }
    fn header_by_hash(&self, hash: &BlockHash) -> Option<RpcHeaderInfo> {
        let height = self.chain.iter().position(|h| h.block_hash() == *hash)?;
        Some(self.info(height))
    }
    fn hash_at(&self, height: u32) -> Option<BlockHash> {
        self.chain.get(height as usize).map(Header::block_hash)
    }
    fn chain_tips(&self) -> Vec<RpcChainTip> {
        vec![RpcChainTip {
            height: 2,
            hash: self.chain[2].block_hash(),
            branch_len: 0,
            status: ChainTipStatus::Active,
        }]
    }
    fn uptime(&self) -> Duration {
        Duration::from_secs(42)
    }
    fn request_stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
    }
}

// ---------------------------------------------------------------------------
// Harness.

struct Server {
    addr: SocketAddr,
    backend: Arc<Fake>,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
}

impl Server {
    async fn start(auth: RpcAuth) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let backend = Arc::new(Fake::new());
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(serve(
            listener,
            backend.clone() as Arc<dyn RpcBackend>,
            auth,
            shutdown.clone(),
        ));
        Server {
            addr,
            backend,
            shutdown,
            task,
        }
    }

    async fn with_password() -> Server {
        Server::start(RpcAuth::new().with_user_password(USER, PASS)).await
    }

    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("serve returns after cancellation")
            .expect("serve task");
    }

    /// A request with the test credentials; returns (status, parsed body or Null).
    async fn call(&self, body: &str) -> (u16, Value) {
        let resp = http(self.addr, "POST", "/", Some(&basic(USER, PASS)), body).await;
        let value = if resp.body.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&resp.body).expect("JSON body")
        };
        (resp.status, value)
    }

    /// A JSON-RPC 1.0 call that must succeed; returns `result`.
    async fn result(&self, method: &str, params: Value) -> Value {
        let (status, reply) = self
            .call(&json!({"method": method, "params": params, "id": 1}).to_string())
            .await;
        assert_eq!(status, 200, "{method}: {reply}");
        assert_eq!(reply["error"], Value::Null, "{method}");
        reply["result"].clone()
    }

    /// A JSON-RPC 1.0 call that must fail; returns (HTTP status, code, message).
    async fn error(&self, method: &str, params: Value) -> (u16, i64, String) {
        let (status, reply) = self
            .call(&json!({"method": method, "params": params, "id": 1}).to_string())
            .await;
        assert_eq!(reply["result"], Value::Null, "{method}: {reply}");
        let err = &reply["error"];
        (
            status,
            err["code"].as_i64().expect("code"),
            err["message"].as_str().expect("message").to_string(),
        )
    }
}

struct HttpResponse {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl HttpResponse {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn basic(user: &str, pass: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
    )
}

/// One HTTP/1.1 request on a fresh connection (`Connection: close`), read to EOF.
async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    authorization: Option<&str>,
    body: &str,
) -> HttpResponse {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(auth) = authorization {
        request.push_str(&format!("Authorization: {auth}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream
        .write_all(request.as_bytes())
        .await
        .expect("write request");
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw))
        .await
        .expect("response in time")
        .expect("read response");
    let text = String::from_utf8(raw).expect("UTF-8 response");
    let (head, body) = text.split_once("\r\n\r\n").expect("header end");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().expect("status line");
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status code");
    let headers = lines
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    HttpResponse {
        status,
        headers,
        body: body.to_string(),
    }
}

// ---------------------------------------------------------------------------
// Authentication and cookie.

#[tokio::test]
async fn missing_or_wrong_credentials_get_401_with_basic_challenge() {
    let server = Server::with_password().await;
    let body = r#"{"method":"getblockcount","id":1}"#;

    let resp = http(server.addr, "POST", "/", None, body).await;
    assert_eq!(resp.status, 401);
    assert_eq!(
        resp.header("WWW-Authenticate"),
        Some("Basic realm=\"jsonrpc\"")
    );
    assert!(resp.body.is_empty());

    let started = Instant::now();
    let resp = http(server.addr, "POST", "/", Some(&basic(USER, "wrong")), body).await;
    assert_eq!(resp.status, 401);
    assert_eq!(
        resp.header("WWW-Authenticate"),
        Some("Basic realm=\"jsonrpc\"")
    );
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "Core delays a wrong password by 250 ms"
    );

    for bad in [
        "Bearer abc",
        "basic YWxpY2U6Y29ycmVjdCBob3JzZQ==",
        "Basic !!!",
    ] {
        let resp = http(server.addr, "POST", "/", Some(bad), body).await;
        assert_eq!(resp.status, 401, "{bad}");
    }

    let resp = http(server.addr, "POST", "/", Some(&basic(USER, PASS)), body).await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("Content-Type"), Some("application/json"));
    assert_eq!(resp.body, "{\"result\":2,\"error\":null,\"id\":1}\n");
    server.stop().await;
}

#[tokio::test]
async fn empty_auth_accepts_nobody() {
    let server = Server::start(RpcAuth::new().with_user_password("", "")).await;
    let resp = http(
        server.addr,
        "POST",
        "/",
        Some(&basic("", "")),
        r#"{"method":"uptime"}"#,
    )
    .await;
    assert_eq!(resp.status, 401);
    server.stop().await;
}

#[tokio::test]
async fn cookie_is_private_authenticates_and_is_removed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = cookie_path(dir.path(), Network::Regtest);
    assert_eq!(path, dir.path().join("regtest").join(".cookie"));

    let cookie = Cookie::create(&path).expect("create cookie");
    assert_eq!(cookie.path(), path);
    let contents = std::fs::read_to_string(&path).expect("read cookie");
    let (user, password) = contents.split_once(':').expect("user:password");
    assert_eq!(user, "__cookie__");
    assert_eq!(password.len(), 64);
    assert!(password
        .chars()
        .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)));
    assert_eq!(password, cookie.password());
    assert!(!path.with_file_name(".cookie.tmp").exists());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path)
            .expect("metadata")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    // Cookie and configured password both work when both are given.
    let server = Server::start(
        RpcAuth::new()
            .with_cookie(&cookie)
            .with_user_password(USER, PASS),
    )
    .await;
    let body = r#"{"method":"getblockcount","id":"c"}"#;
    let resp = http(server.addr, "POST", "/", Some(&basic(user, password)), body).await;
    assert_eq!(resp.status, 200);
    let resp = http(server.addr, "POST", "/", Some(&basic(USER, PASS)), body).await;
    assert_eq!(resp.status, 200);
    let resp = http(
        server.addr,
        "POST",
        "/",
        Some(&basic(user, "0".repeat(64).as_str())),
        body,
    )
    .await;
    assert_eq!(resp.status, 401);
    server.stop().await;

    cookie.remove().expect("remove cookie");
    assert!(!path.exists());

    // A second run overwrites nothing stale and is removed on drop.
    let again = Cookie::create(&path).expect("create again");
    assert_ne!(again.password(), password);
    drop(again);
    assert!(!path.exists());
}

#[test]
fn cookie_paths_and_ports_follow_core_layout_without_colliding() {
    let d = std::path::Path::new("/data");
    assert_eq!(cookie_path(d, Network::Bitcoin), d.join(".cookie"));
    assert_eq!(cookie_path(d, Network::Testnet), d.join("testnet3/.cookie"));
    assert_eq!(
        cookie_path(d, Network::Testnet4),
        d.join("testnet4/.cookie")
    );
    assert_eq!(cookie_path(d, Network::Signet), d.join("signet/.cookie"));
    assert_eq!(cookie_path(d, Network::Regtest), d.join("regtest/.cookie"));

    let core = [
        8332, 18332, 48332, 38332, 18443, 8333, 18333, 48333, 38333, 18444,
    ];
    let ours: Vec<u16> = [
        Network::Bitcoin,
        Network::Testnet,
        Network::Testnet4,
        Network::Signet,
        Network::Regtest,
    ]
    .into_iter()
    .map(default_rpc_port)
    .collect();
    assert_eq!(ours, [8342, 18342, 48342, 38342, 18453]);
    assert!(ours.iter().all(|p| !core.contains(p)));
}

// ---------------------------------------------------------------------------
// HTTP routing and JSON-RPC protocol.

#[tokio::test]
async fn routing_and_http_methods_match_core() {
    let server = Server::with_password().await;
    let auth = basic(USER, PASS);

    let resp = http(server.addr, "GET", "/", Some(&auth), "").await;
    assert_eq!(resp.status, 405);
    assert_eq!(resp.body, "JSONRPC server handles only POST requests");

    let resp = http(server.addr, "DELETE", "/", Some(&auth), "").await;
    assert_eq!(resp.status, 405);

    // Over Core's 32 MiB body limit: refused from the header alone.
    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    let head = format!(
        "POST / HTTP/1.1\r\nHost: x\r\nAuthorization: {auth}\r\nContent-Length: {}\r\n\r\n",
        super::server::MAX_BODY_BYTES + 1
    );
    stream.write_all(head.as_bytes()).await.expect("write");
    let mut buf = vec![0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf))
        .await
        .expect("answered without the body")
        .expect("read");
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 413"));

    for path in ["/wallet/w1", "/rest/chaininfo.json", "/?x=1"] {
        let resp = http(
            server.addr,
            "POST",
            path,
            Some(&auth),
            r#"{"method":"uptime"}"#,
        )
        .await;
        assert_eq!(resp.status, 404, "{path}");
    }
    server.stop().await;
}

#[tokio::test]
async fn parse_errors_and_invalid_requests() {
    let server = Server::with_password().await;

    // Not JSON: 500 with -32700 and no id (none could be read).
    let (status, reply) = server.call("{nope").await;
    assert_eq!(status, 500);
    assert_eq!(
        reply,
        json!({"result": null, "error": {"code": -32700, "message": "Parse error"}})
    );

    let (status, reply) = server.call("42").await;
    assert_eq!(status, 500);
    assert_eq!(reply["error"]["message"], "Top-level object parse error");

    // Invalid request objects: 400 with -32600, id kept.
    for (body, message) in [
        (r#"{"id":5}"#, "Missing method"),
        (r#"{"id":5,"method":1}"#, "Method must be a string"),
        (
            r#"{"id":5,"method":"uptime","params":3}"#,
            "Params must be an array or object",
        ),
        (
            r#"{"id":5,"method":"uptime","jsonrpc":"3.0"}"#,
            "JSON-RPC version not supported",
        ),
        (
            r#"{"id":5,"method":"uptime","jsonrpc":2}"#,
            "jsonrpc field must be a string",
        ),
    ] {
        let (status, reply) = server.call(body).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(reply["error"]["code"], -32600, "{body}");
        assert_eq!(reply["error"]["message"], message, "{body}");
        assert_eq!(reply["id"], 5, "{body}");
    }
    server.stop().await;
}

#[tokio::test]
async fn v1_errors_map_to_http_statuses() {
    let server = Server::with_password().await;

    let (status, code, message) = server.error("getblocktemplate", json!([])).await;
    assert_eq!(
        (status, code, message.as_str()),
        (404, -32601, "Method not found")
    );

    let (status, code, message) = server.error("getblockhash", json!(["1"])).await;
    assert_eq!((status, code), (500, -3));
    assert_eq!(
        message,
        "Wrong type passed:\n{\n    \"Position 1 (height)\": \"JSON value of type string is not of expected type number\"\n}"
    );

    // Wrong argument count: the help text as RPC_MISC_ERROR.
    let (status, code, message) = server.error("getblockcount", json!([1])).await;
    assert_eq!((status, code), (500, -1));
    assert!(message.starts_with("getblockcount\n"), "{message}");
    let (_, code, message) = server.error("getblockhash", json!([])).await;
    assert_eq!(code, -1);
    assert!(message.starts_with("getblockhash height\n"), "{message}");

    let (_, code, message) = server.error("getblockhash", json!([1.5])).await;
    assert_eq!((code, message.as_str()), (-1, "JSON integer out of range"));
    server.stop().await;
}

#[tokio::test]
async fn json_rpc_2_replies_notifications_and_batches() {
    let server = Server::with_password().await;

    let (status, reply) = server
        .call(r#"{"jsonrpc":"2.0","method":"getblockcount","id":"a"}"#)
        .await;
    assert_eq!(status, 200);
    assert_eq!(reply, json!({"jsonrpc": "2.0", "result": 2, "id": "a"}));

    // Errors are 200 with only `error`.
    let (status, reply) = server
        .call(r#"{"jsonrpc":"2.0","method":"nosuch","id":null}"#)
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        reply,
        json!({"jsonrpc": "2.0", "error": {"code": -32601, "message": "Method not found"}, "id": null})
    );

    // A notification is executed but not answered.
    let resp = http(
        server.addr,
        "POST",
        "/",
        Some(&basic(USER, PASS)),
        r#"{"jsonrpc":"2.0","method":"stop"}"#,
    )
    .await;
    assert_eq!(resp.status, 204);
    assert!(resp.body.is_empty());
    assert!(server.backend.stopped.load(Ordering::SeqCst));

    // A mixed batch: always 200, one reply per non-notification, each in its dialect.
    let (status, reply) = server
        .call(
            r#"[7,
                {"method":"getblockcount","id":1},
                {"jsonrpc":"2.0","method":"nosuch","id":2},
                {"jsonrpc":"2.0","method":"uptime"},
                {"method":"getblockhash","params":["x"],"id":3}]"#,
        )
        .await;
    assert_eq!(status, 200);
    let replies = reply.as_array().expect("array");
    assert_eq!(replies.len(), 4);
    assert_eq!(
        replies[0],
        json!({"result": null, "error": {"code": -32600, "message": "Invalid Request object"}})
    );
    assert_eq!(replies[1], json!({"result": 2, "error": null, "id": 1}));
    assert_eq!(replies[2]["jsonrpc"], "2.0");
    assert_eq!(replies[2]["error"]["code"], -32601);
    assert!(replies[2].get("result").is_none());
    assert_eq!(replies[3]["error"]["code"], -3);
    assert_eq!(replies[3]["id"], 3);

    // All notifications: 204. Empty batch: `[]`, as Core keeps for old clients.
    let resp = http(
        server.addr,
        "POST",
        "/",
        Some(&basic(USER, PASS)),
        r#"[{"jsonrpc":"2.0","method":"uptime"}]"#,
    )
    .await;
    assert_eq!(resp.status, 204);
    let (status, reply) = server.call("[]").await;
    assert_eq!((status, reply), (200, json!([])));
    server.stop().await;
}

#[tokio::test]
async fn named_parameters() {
    let server = Server::with_password().await;
    let hash1 = server.backend.chain[1].block_hash().to_string();

    assert_eq!(
        server.result("getblockhash", json!({"height": 1})).await,
        hash1
    );
    let hex = server
        .result(
            "getblockheader",
            json!({"blockhash": hash1, "verbose": false}),
        )
        .await;
    assert_eq!(hex.as_str().map(str::len), Some(160));
    // Gaps before a given parameter are filled with null.
    assert_eq!(
        server.result("disconnectnode", json!({"nodeid": 7})).await,
        Value::Null
    );

    let (status, code, message) = server.error("getblockhash", json!({"hieght": 1})).await;
    assert_eq!(
        (status, code, message.as_str()),
        (500, -8, "Unknown named parameter hieght")
    );

    // `args` supplies leading positional values.
    assert_eq!(
        server
            .result("getblockheader", json!({"args": [hash1], "verbose": false}))
            .await,
        hex
    );
    let (_, code, message) = server
        .error(
            "getblockheader",
            json!({"args": [hash1], "blockhash": hash1}),
        )
        .await;
    assert_eq!(code, -8);
    assert_eq!(
        message,
        "Parameter blockhash specified twice both as positional and named argument"
    );
    server.stop().await;
}

// ---------------------------------------------------------------------------
// Blockchain methods.

#[tokio::test]
async fn blockchain_methods() {
    let server = Server::with_password().await;
    let chain = server.backend.chain.clone();
    let [h0, h1, h2] = [0, 1, 2].map(|i| chain[i].block_hash().to_string());

    assert_eq!(server.result("getblockcount", json!([])).await, 2);
    assert_eq!(server.result("getbestblockhash", json!([])).await, h2);
    assert_eq!(server.result("getblockhash", json!([0])).await, h0);
    for bad in [json!([3]), json!([-1])] {
        let (_, code, message) = server.error("getblockhash", bad).await;
        assert_eq!((code, message.as_str()), (-8, "Block height out of range"));
    }

    let verbose = server.result("getblockheader", json!([h1])).await;
    assert_eq!(verbose["hash"], h1);
    assert_eq!(verbose["height"], 1);
    assert_eq!(verbose["confirmations"], 2);
    assert_eq!(verbose["version"], 0x2000_0000);
    assert_eq!(verbose["versionHex"], "20000000");
    assert_eq!(verbose["bits"], "207fffff");
    assert_eq!(verbose["nonce"], 1);
    assert_eq!(verbose["nTx"], 0);
    assert_eq!(verbose["previousblockhash"], h0);
    assert_eq!(verbose["nextblockhash"], h2);
    // Checked as text: serde_json's default float parsing may be off by one ulp.
    let raw = http(
        server.addr,
        "POST",
        "/",
        Some(&basic(USER, PASS)),
        &json!({"method": "getblockheader", "params": [h1], "id": 1}).to_string(),
    )
    .await
    .body;
    assert!(
        raw.contains(r#""difficulty":4.656542373906925e-10,"#),
        "{raw}"
    );
    assert_eq!(
        verbose["chainwork"],
        "0000000000000000000000000000000000000000000000000000000000000004"
    );
    assert_eq!(
        verbose["target"],
        "7fffff0000000000000000000000000000000000000000000000000000000000"
    );
    let keys: Vec<&str> = verbose
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "hash",
            "confirmations",
            "height",
            "version",
            "versionHex",
            "merkleroot",
            "time",
            "mediantime",
            "nonce",
            "bits",
            "target",
            "difficulty",
            "chainwork",
            "nTx",
            "previousblockhash",
            "nextblockhash"
        ],
        "Core's key order"
    );

    let genesis = server.result("getblockheader", json!([h0, true])).await;
    assert!(genesis.get("previousblockhash").is_none());
    let tip = server.result("getblockheader", json!([h2])).await;
    assert!(tip.get("nextblockhash").is_none());

    // verbose=false: the 80-byte header as 160 hex digits.
    let hex = server.result("getblockheader", json!([h1, false])).await;
    let hex = hex.as_str().expect("hex string");
    assert_eq!(hex.len(), 160);
    assert_eq!(hex, serialize_hex(&chain[1]));

    let (_, code, message) = server
        .error("getblockheader", json!(["00".repeat(32)]))
        .await;
    assert_eq!((code, message.as_str()), (-5, "Block not found"));
    let (_, code, message) = server.error("getblockheader", json!(["abc"])).await;
    assert_eq!(code, -8);
    assert_eq!(message, "hash must be of length 64 (not 3, for 'abc')");
    let zs = "z".repeat(64);
    let (_, code, message) = server.error("getblockheader", json!([zs])).await;
    assert_eq!(code, -8);
    assert_eq!(
        message,
        format!("hash must be hexadecimal string (not '{zs}')")
    );

    let tips = server.result("getchaintips", json!([])).await;
    assert_eq!(
        tips,
        json!([{"height": 2, "hash": h2, "branchlen": 0, "status": "active"}])
    );

    let info = server.result("getblockchaininfo", json!([])).await;
    assert_eq!(info["chain"], "regtest");
    assert_eq!(info["blocks"], 2);
    assert_eq!(info["headers"], 2);
    assert_eq!(info["bestblockhash"], h2);
    assert!(info["difficulty"].as_f64().expect("difficulty") > 4.6e-10);
    assert_eq!(info["time"], chain[2].time);
    assert_eq!(info["mediantime"], chain[2].time);
    // Core prints a whole double without a decimal point: an integer to JSON readers.
    assert!(info["verificationprogress"].is_u64(), "{info}");
    assert_eq!(info["verificationprogress"], 1);
    assert_eq!(info["initialblockdownload"], false);
    assert_eq!(info["size_on_disk"], 240);
    assert_eq!(info["pruned"], false);
    assert_eq!(info["warnings"], json!(["test warning"]));
    assert!(info.get("signet_challenge").is_none());
    server.stop().await;
}

// ---------------------------------------------------------------------------
// Network and control methods.

#[tokio::test]
async fn peer_and_network_info() {
    let server = Server::with_password().await;

    assert_eq!(server.result("getconnectioncount", json!([])).await, 2);

    let peers = server.result("getpeerinfo", json!([])).await;
    let peers = peers.as_array().expect("array");
    assert_eq!(peers.len(), 2);
    let out = &peers[0];
    assert_eq!(out["id"], 7);
    assert_eq!(out["addr"], "203.0.113.9:18444");
    assert_eq!(out["addrbind"], "127.0.0.1:50000");
    assert_eq!(
        out["addrlocal"], "198.51.100.7:18444",
        "IPv4-mapped printed as IPv4"
    );
    assert_eq!(
        out["version"], 70016,
        "the version the peer announced, as given"
    );
    assert_eq!(out["network"], "ipv4");
    assert_eq!(out["services"], "0000010000000c09");
    assert_eq!(
        out["servicesnames"],
        json!([
            "NETWORK",
            "WITNESS",
            "NETWORK_LIMITED",
            "P2P_V2",
            "UNKNOWN[2^40]"
        ])
    );
    assert_eq!(out["pingtime"], 0.0015);
    assert_eq!(out["minping"], 0.0012);
    assert!(out.get("pingwait").is_none());
    assert_eq!(
        out["subver"], "/Satoshi:27.0.0/evil",
        "sanitized as Core does"
    );
    assert_eq!(out["inbound"], false);
    assert_eq!(out["connection_type"], "outbound-full-relay");
    assert_eq!(out["synced_headers"], 2);
    assert_eq!(out["presynced_headers"], 4000, "the peer's presync height");
    assert_eq!(out["bytessent_per_msg"], json!({"ping": 32}));
    assert_eq!(out["bytesrecv_per_msg"], json!({}));
    assert_eq!(out["transport_protocol_type"], "v2");
    assert_eq!(out["session_id"], "ab".repeat(32));
    let inbound = &peers[1];
    assert_eq!(inbound["network"], "not_publicly_routable");
    assert_eq!(inbound["inbound"], true);
    assert_eq!(inbound["connection_type"], "inbound");
    assert_eq!(inbound["transport_protocol_type"], "v1");
    assert_eq!(inbound["session_id"], "");
    assert!(inbound.get("addrbind").is_none());
    assert!(
        inbound.get("addrlocal").is_none(),
        "0.0.0.0 fails Core's IsValid"
    );
    assert!(
        inbound.get("startingheight").is_none(),
        "gone from Core's getpeerinfo"
    );
    assert!(inbound.get("pingtime").is_none());
    for key in [
        "relaytxes",
        "lastsend",
        "lastrecv",
        "bytessent",
        "bytesrecv",
        "conntime",
        "timeoffset",
        "version",
        "presynced_headers",
    ] {
        assert!(inbound.get(key).is_some(), "{key}");
    }
    assert_eq!(inbound["presynced_headers"], -1, "no presync: -1, as Core");

    let net = server.result("getnetworkinfo", json!([])).await;
    assert_eq!(net["subversion"], "/verack:0.1.0/");
    assert_eq!(net["protocolversion"], 70016);
    assert_eq!(net["localservices"], "0000000000000809");
    assert_eq!(
        net["localservicesnames"],
        json!(["NETWORK", "WITNESS", "P2P_V2"])
    );
    assert_eq!(net["connections"], 2);
    assert_eq!(net["connections_in"], 1);
    assert_eq!(net["connections_out"], 1);
    assert_eq!(net["networks"].as_array().map(Vec::len), Some(5));
    assert_eq!(
        net["networks"][2],
        json!({"name": "onion", "limited": false, "reachable": true, "proxy": "127.0.0.1:9050", "proxy_randomize_credentials": true})
    );
    assert_eq!(
        net["networks"][3],
        json!({"name": "i2p", "limited": true, "reachable": false, "proxy": "", "proxy_randomize_credentials": false})
    );
    assert_eq!(net["networks"][0]["reachable"], true);
    assert_eq!(net["networks"][0]["proxy"], "");
    assert!(
        net.get("relayfee").is_none(),
        "no mempool, as Core without one"
    );
    assert_eq!(
        net["localaddresses"],
        json!([{"address": "198.51.100.1", "port": 18444, "score": 4}])
    );
    assert_eq!(net["warnings"], json!([]));
    assert_eq!(net["tx_send_rate"], 0);
    assert_eq!(
        net["inv_buckets"]["inbound"],
        json!({"backlog": 0, "count_tok": 0, "size_tok": 0})
    );
    assert_eq!(
        net["inv_buckets"]["outbound"],
        net["inv_buckets"]["inbound"]
    );

    let totals = server.result("getnettotals", json!([])).await;
    assert_eq!(totals["totalbytesrecv"], 1000);
    assert_eq!(totals["totalbytessent"], 2000);
    assert!(totals["timemillis"].as_u64().expect("millis") > 1_600_000_000_000);
    assert_eq!(totals["uploadtarget"]["timeframe"], 86400);
    assert_eq!(totals["uploadtarget"]["target"], 0);
    server.stop().await;
}

#[tokio::test]
async fn addnode_and_disconnectnode() {
    let server = Server::with_password().await;

    assert_eq!(
        server
            .result("addnode", json!(["10.0.0.1:18444", "add"]))
            .await,
        Value::Null
    );
    let (_, code, message) = server
        .error("addnode", json!(["10.0.0.1:18444", "add"]))
        .await;
    assert_eq!((code, message.as_str()), (-23, "Error: Node already added"));
    assert_eq!(
        server
            .result("addnode", json!(["10.0.0.1:18444", "remove"]))
            .await,
        Value::Null
    );
    let (_, code, message) = server
        .error("addnode", json!(["10.0.0.1:18444", "remove"]))
        .await;
    assert_eq!(code, -24);
    assert_eq!(
        message,
        "Error: Node could not be removed. It has not been added previously."
    );
    let (_, code, message) = server.error("addnode", json!(["x", "connect"])).await;
    assert_eq!(code, -1);
    assert!(
        message.starts_with("addnode \"node\" \"command\" ( v2transport )"),
        "{message}"
    );

    // onetry defaults to v2 because our services include NODE_P2P_V2.
    assert_eq!(
        server.result("addnode", json!(["h:1", "onetry"])).await,
        Value::Null
    );
    assert_eq!(
        server
            .result("addnode", json!(["h:2", "onetry", false]))
            .await,
        Value::Null
    );
    assert_eq!(
        *server.backend.onetry.lock().expect("lock"),
        [("h:1".to_string(), true), ("h:2".to_string(), false)]
    );

    assert_eq!(
        server
            .result("disconnectnode", json!(["203.0.113.9:18444"]))
            .await,
        Value::Null
    );
    assert_eq!(
        server.result("disconnectnode", json!(["", 8])).await,
        Value::Null
    );
    let (_, code, message) = server.error("disconnectnode", json!(["1.2.3.4:5"])).await;
    assert_eq!(
        (code, message.as_str()),
        (-29, "Node not found in connected nodes")
    );
    let (_, code, _) = server.error("disconnectnode", json!([null, 99])).await;
    assert_eq!(code, -29);
    let (status, code, message) = server
        .error("disconnectnode", json!(["1.2.3.4:5", 8]))
        .await;
    assert_eq!(
        (status, code, message.as_str()),
        (
            500,
            -32602,
            "Only one of address and nodeid should be provided."
        )
    );
    let (_, code, _) = server.error("disconnectnode", json!([])).await;
    assert_eq!(code, -32602);
    assert_eq!(
        *server.backend.disconnected.lock().expect("lock"),
        [
            DisconnectTarget::Address("203.0.113.9:18444".into()),
            DisconnectTarget::NodeId(8),
            DisconnectTarget::Address("1.2.3.4:5".into()),
            DisconnectTarget::NodeId(99),
        ]
    );
    server.stop().await;
}

#[tokio::test]
async fn addnode_v2transport_needs_local_support() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let mut fake = Fake::new();
    fake.local_services = 1 | (1 << 3);
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(serve(
        listener,
        Arc::new(fake),
        RpcAuth::new().with_user_password(USER, PASS),
        shutdown.clone(),
    ));
    let resp = http(
        addr,
        "POST",
        "/",
        Some(&basic(USER, PASS)),
        r#"{"method":"addnode","params":["h:1","onetry",true],"id":1}"#,
    )
    .await;
    let reply: Value = serde_json::from_str(&resp.body).expect("json");
    assert_eq!(reply["error"]["code"], -8);
    assert_eq!(
        reply["error"]["message"],
        "Error: v2transport requested but not enabled (see -v2transport)"
    );
    shutdown.cancel();
    task.await.expect("serve");
}

#[tokio::test]
async fn setban_listbanned_clearbanned() {
    let server = Server::with_password().await;

    assert_eq!(
        server.result("setban", json!(["192.0.2.7", "add"])).await,
        Value::Null
    );
    // Host bits are cleared, as Core's CSubNet does; a netmask works as a prefix.
    assert_eq!(
        server
            .result("setban", json!(["10.1.2.3/16", "add", 3600]))
            .await,
        Value::Null
    );
    assert_eq!(
        server
            .result("setban", json!(["2001:db9::1/ffff:ffff::", "add"]))
            .await,
        Value::Null
    );
    let bans = server.backend.bans.lock().expect("lock").clone();
    assert_eq!(
        bans[0],
        ("192.0.2.7/32".parse().expect("net"), BanExpiry::Default)
    );
    assert_eq!(
        bans[1],
        (
            "10.1.0.0/16".parse().expect("net"),
            BanExpiry::After(Duration::from_secs(3600))
        )
    );
    assert_eq!(bans[2].0, "2001:db9::/32".parse::<IpNet>().expect("net"));

    let (_, code, message) = server.error("setban", json!(["192.0.2.7", "add"])).await;
    assert_eq!(
        (code, message.as_str()),
        (-23, "Error: IP/Subnet already banned")
    );
    // Covered by an existing subnet ban counts as banned for a single address.
    let (_, code, _) = server.error("setban", json!(["10.1.200.200", "add"])).await;
    assert_eq!(code, -23);

    for bad in [
        "example.com",
        "300.1.1.1",
        "10.0.0.0/33",
        "0.0.0.0",
        "1.2.3.4/255.0.255.0",
        "1.2.3.4/",
        "1.2.3.4/ffff::",
    ] {
        let (_, code, message) = server.error("setban", json!([bad, "add"])).await;
        assert_eq!(
            (code, message.as_str()),
            (-30, "Error: Invalid IP/Subnet"),
            "{bad}"
        );
    }
    let (_, code, message) = server
        .error("setban", json!(["192.0.2.8", "add", 1000, true]))
        .await;
    assert_eq!(
        (code, message.as_str()),
        (-8, "Error: Absolute timestamp is in the past")
    );
    assert_eq!(
        server
            .result(
                "setban",
                json!(["192.0.2.8", "add", 4_000_000_000u64, true])
            )
            .await,
        Value::Null
    );
    let (_, code, _) = server.error("setban", json!(["192.0.2.8", "ban"])).await;
    assert_eq!(code, -1);

    let listed = server.result("listbanned", json!([])).await;
    let first = &listed[0];
    assert_eq!(first["address"], "192.0.2.7/32");
    assert_eq!(first["ban_created"], 1000);
    assert_eq!(first["banned_until"], 4_000_000_000u64);
    assert_eq!(first["ban_duration"], 4_000_000_000u64 - 1000);
    assert!(first["time_remaining"].as_i64().expect("remaining") > 0);
    assert_eq!(
        server
            .result("setban", json!(["10.1.0.0/16", "remove"]))
            .await,
        Value::Null
    );
    let (_, code, message) = server
        .error("setban", json!(["10.1.0.0/16", "remove"]))
        .await;
    assert_eq!(code, -30);
    assert_eq!(
        message,
        "Error: Unban failed. Requested address/subnet was not previously manually banned."
    );

    assert_eq!(server.result("clearbanned", json!([])).await, Value::Null);
    assert_eq!(server.result("listbanned", json!([])).await, json!([]));
    server.stop().await;
}

#[tokio::test]
async fn help_uptime_and_stop() {
    let server = Server::with_password().await;

    let help = server.result("help", json!([])).await;
    let help = help.as_str().expect("text");
    assert!(
        help.starts_with("== Blockchain ==\ngetbestblockhash\n"),
        "{help}"
    );
    assert!(
        help.contains("\n\n== Control ==\nhelp ( \"command\" )\nstop\nuptime\n"),
        "{help}"
    );
    assert!(
        help.contains("getblockheader \"blockhash\" ( verbose )"),
        "{help}"
    );
    assert!(
        help.contains("disconnectnode ( \"address\" nodeid )"),
        "{help}"
    );
    assert!(
        help.contains("setban \"subnet\" \"command\" ( bantime absolute )"),
        "{help}"
    );
    assert!(
        help.ends_with("setban \"subnet\" \"command\" ( bantime absolute )"),
        "{help}"
    );
    for method in [
        "getpeerinfo",
        "getnetworkinfo",
        "getconnectioncount",
        "getnettotals",
        "addnode",
        "listbanned",
        "clearbanned",
        "getblockcount",
        "getblockhash",
        "getchaintips",
        "getblockchaininfo",
    ] {
        assert!(help.contains(&format!("\n{method}")), "{method}");
    }
    // As Core: test-only methods (category "hidden") are left out of the list, but
    // `help <name>` answers for them.
    assert!(
        !help.contains("Hidden") && !help.contains("addpeeraddress"),
        "{help}"
    );
    let hidden = server.result("help", json!(["addpeeraddress"])).await;
    assert!(hidden
        .as_str()
        .expect("text")
        .starts_with("addpeeraddress \"address\" port ( tried )"));
    let one = server.result("help", json!(["getblockhash"])).await;
    assert!(one
        .as_str()
        .expect("text")
        .starts_with("getblockhash height\n\n"));
    assert_eq!(
        server.result("help", json!(["nosuch"])).await,
        "help: unknown command: nosuch"
    );

    assert_eq!(server.result("uptime", json!([])).await, 42);
    assert!(!server.backend.stopped.load(Ordering::SeqCst));
    assert_eq!(server.result("stop", json!([])).await, "verack stopping");
    assert!(server.backend.stopped.load(Ordering::SeqCst));
    server.stop().await;
}

#[tokio::test]
async fn shutdown_closes_idle_keepalive_connections_and_returns() {
    let server = Server::with_password().await;
    // A kept-alive connection with one answered request, left idle.
    let mut idle = TcpStream::connect(server.addr).await.expect("connect");
    let body = r#"{"method":"uptime","id":1}"#;
    let request = format!(
        "POST / HTTP/1.1\r\nHost: x\r\nAuthorization: {}\r\nContent-Length: {}\r\n\r\n{body}",
        basic(USER, PASS),
        body.len()
    );
    idle.write_all(request.as_bytes()).await.expect("write");
    let mut buf = vec![0u8; 4096];
    let n = idle.read(&mut buf).await.expect("read");
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200 OK"));

    let started = Instant::now();
    let addr = server.addr;
    server.stop().await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "idle connections do not hold shutdown"
    );
    // The idle connection was closed and the listener is gone.
    let n = tokio::time::timeout(Duration::from_secs(5), idle.read(&mut buf))
        .await
        .expect("closed in time")
        .unwrap_or(0);
    assert_eq!(n, 0);
    assert!(TcpStream::connect(addr).await.is_err());
}

// ---------------------------------------------------------------------------
// Pure helpers.

#[test]
fn network_classification_matches_core() {
    let class = |s: &str| RpcNetwork::classify(s.parse().expect("ip"));
    assert_eq!(class("8.8.8.8"), RpcNetwork::Ipv4);
    assert_eq!(class("::ffff:8.8.8.8"), RpcNetwork::Ipv4);
    assert_eq!(class("2a01:4f8::1"), RpcNetwork::Ipv6);
    for unroutable in [
        "127.0.0.1",
        "10.1.1.1",
        "192.168.0.1",
        "172.20.0.1",
        "100.64.0.1",
        "169.254.1.1",
        "198.18.0.1",
        "192.0.2.1",
        "::1",
        "fe80::1",
        "fd00::1",
        "2001:db8::1",
        "2001:10::1",
    ] {
        assert_eq!(
            class(unroutable),
            RpcNetwork::NotPubliclyRoutable,
            "{unroutable}"
        );
    }
}

#[test]
fn enum_strings_match_core() {
    use ConnectionType::*;
    let types = [
        Inbound,
        OutboundFullRelay,
        BlockRelayOnly,
        Manual,
        Feeler,
        AddrFetch,
    ];
    assert_eq!(
        types.map(ConnectionType::as_str),
        [
            "inbound",
            "outbound-full-relay",
            "block-relay-only",
            "manual",
            "feeler",
            "addr-fetch"
        ]
    );
    use ChainTipStatus::*;
    let statuses = [Active, ValidFork, ValidHeaders, HeadersOnly, Invalid];
    assert_eq!(
        statuses.map(ChainTipStatus::as_str),
        [
            "active",
            "valid-fork",
            "valid-headers",
            "headers-only",
            "invalid"
        ]
    );
    let mut peer = RpcPeer::new(1, "[2a01:4f8::1]:8333".parse().expect("addr"), Manual);
    peer.transport = Transport::Detecting;
    let json = super::methods::peer_json(&peer);
    assert_eq!(json["addr"], "[2a01:4f8::1]:8333");
    assert_eq!(json["network"], "ipv6");
    assert_eq!(json["transport_protocol_type"], "detecting");
    assert_eq!(json["connection_type"], "manual");
}

#[test]
fn an_onion_peer_shows_its_onion_address_and_network() {
    let onion: verack::address::PeerAddr =
        "pg6mmjiyjmcrsslvykfwnntlaru7p5svn6y2ymmju6nubxndf4pscryd.onion:8333"
            .parse()
            .expect("onion");
    let peer = RpcPeer::new(3, onion.stand_in(), ConnectionType::OutboundFullRelay);
    let json = super::methods::peer_json(&peer);
    assert_eq!(
        json["addr"],
        "pg6mmjiyjmcrsslvykfwnntlaru7p5svn6y2ymmju6nubxndf4pscryd.onion:8333"
    );
    assert_eq!(json["network"], "onion");
}

#[test]
fn difficulty_matches_core() {
    use super::methods::difficulty;
    assert_eq!(difficulty(0x1d00_ffff), 1.0);
    // Mainnet block 100000's bits.
    assert_eq!(difficulty(0x1b04_864c), 14484.162361225399);
    assert_eq!(difficulty(0x207f_ffff), 4.6565423739069247e-10);
    // UniValue's setprecision(16): whole values below 1e16 print without a point.
    use super::methods::core_float;
    assert_eq!(core_float(1.0).to_string(), "1");
    assert_eq!(core_float(0.0).to_string(), "0");
    assert_eq!(core_float(0.5).to_string(), "0.5");
    assert_eq!(core_float(1e16).to_string(), "1e+16");
    assert_eq!(
        core_float(difficulty(0x207f_ffff)).to_string(),
        "4.656542373906925e-10"
    );
}

#[tokio::test]
async fn address_manager_rpcs_check_params_and_have_cores_shapes() {
    let server = Server::with_password().await;
    // The fake backend knows no addresses: empty lists and zero counts, in Core's shapes.
    assert_eq!(
        server.result("getnodeaddresses", json!([])).await,
        json!([])
    );
    assert_eq!(
        server.result("getnodeaddresses", json!([0, "ipv6"])).await,
        json!([])
    );
    let info = server.result("getaddrmaninfo", json!([])).await;
    for net in ["ipv4", "ipv6", "onion", "i2p", "cjdns", "all_networks"] {
        assert_eq!(
            info[net],
            json!({"new": 0, "tried": 0, "total": 0}),
            "{net}"
        );
    }
    let (_, code, message) = server.error("getnodeaddresses", json!([-1])).await;
    assert_eq!((code, message.as_str()), (-8, "Address count out of range"));
    let (_, code, message) = server.error("getnodeaddresses", json!([1, "moon"])).await;
    assert_eq!(
        (code, message.as_str()),
        (-8, "Network not recognized: moon")
    );
    let added = server
        .result("addpeeraddress", json!(["1.2.3.4", 8333]))
        .await;
    assert_eq!(added["success"], false, "the fake backend refuses: {added}");
    let (_, code, _) = server.error("addpeeraddress", json!(["1.2.3.4"])).await;
    assert_eq!(code, -1, "missing port: Core's help error");
}
