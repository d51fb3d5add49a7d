//! Scenario `handshake`: how many version/verack handshakes per second a node completes, how
//! long each takes, and how much CPU the node spends on each.
//!
//! The load client speaks raw v1 frames over tokio sockets (only `verack::wire`'s encoder and
//! constants are used, not verack's `Peer`), so it can be pointed at any Bitcoin node with
//! `--connect`.
//! Each of `--in-flight` workers repeats, until `--duration` or `--count`:
//! 1. TCP connect (from 127.0.0.1 to 127.0.0.`--sources` in turn when the target is loopback);
//! 2. send `version` (protocol 70016, services NONE, a fresh random nonce, height 0, relay
//!    false; encoded once per run, only the nonce and checksum are rewritten per connection);
//! 3. read frames until both the remote's `version` and `verack` arrived (frame headers are
//!    checked for magic and size; payloads are skipped, not decoded or checksummed);
//! 4. send `verack`; with `--await-admission`, wait for one more frame from the remote (it
//!    admitted us: Core sends `sendcmpct`, verack `sendheaders`) or its close (it refused us);
//! 5. close with `SO_LINGER` 0 (a reset, so no `TIME_WAIT` piles up).
//!
//! Latency is from step 1 to step 4. Without `--connect` a verack server child (role `serve`)
//! is the target.
//!
//! **Comparisons in one run.** `--baseline HOST:PORT` loads a second node (Bitcoin Core in
//! `scripts/bench.sh`) and `--floor` a third: a bare tokio server child (role `floor`, see
//! [`crate::floor`]) that answers with canned frames, the least any tokio server can spend per
//! handshake. Their runs are interleaved with the subject's (the starting target rotates from
//! run to run), so load from other tenants of the machine falls on all of them alike; the
//! results carry the baseline's median and the ratio. `--pid`/`--baseline-pid` name the nodes'
//! processes, whose CPU time is read around each run: CPU per handshake is the server's cost
//! without the scheduling noise a rate carries.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bitcoin::p2p::address::Address;
use bitcoin::p2p::message::NetworkMessage;
use bitcoin::p2p::message_network::VersionMessage;
use bitcoin::p2p::{Magic, ServiceFlags};
use bitcoin::Network;
use bytes::{Buf, Bytes, BytesMut};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::Instant;
use verack::wire::{encode_frame, HEADER_LEN, MAX_PAYLOAD_LEN};

use crate::process::{self, Helper};
use crate::report;

/// The whole of one handshake (connect included) must finish within this: 10 s.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Our protocol version: 70016 (BIP339 `wtxidrelay`).
const PROTOCOL_VERSION: u32 = 70016;
/// Bytes reserved in the read buffer before each read.
pub const READ_CHUNK: usize = 4096;
/// Loopback source addresses used in turn by default: 127.0.0.1 to 127.0.0.250.
const SOURCE_ADDRESSES: u64 = 250;
/// Where the nonce sits in a v1 `version` frame: after the header, then version (4),
/// services (8), timestamp (8), and the receiver's and sender's addresses (26 each).
const NONCE_OFFSET: usize = HEADER_LEN + 4 + 8 + 8 + 26 + 26;
/// Command fields (12 bytes, NUL-padded) of the frames the client waits for.
const VERSION: [u8; 12] = *b"version\0\0\0\0\0";
const VERACK: [u8; 12] = *b"verack\0\0\0\0\0\0";

/// Flags of the `handshake` scenario.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// The node to load (any Bitcoin node); default: a verack server child on loopback.
    #[arg(long, value_name = "HOST:PORT")]
    pub connect: Option<String>,
    /// The target's network: mainnet, testnet4, signet or regtest (the child is regtest).
    #[arg(long, default_value = "regtest", value_parser = parse_network)]
    pub network: Network,
    /// Handshakes in progress at once.
    #[arg(long, default_value_t = 64)]
    pub in_flight: usize,
    /// Seconds to keep starting handshakes (default 3, or 60 as a bound with --count).
    #[arg(long)]
    pub duration: Option<f64>,
    /// Stop after this many handshakes were started.
    #[arg(long)]
    pub count: Option<u64>,
    /// Runs (of each target); each result is the median.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Loopback source addresses used in turn, 127.0.0.1 upwards (1: every connection from
    /// 127.0.0.1, a single-IP burst; 0: no `bind`, the kernel picks).
    #[arg(long, default_value_t = SOURCE_ADDRESSES, value_parser = clap::value_parser!(u64).range(0..=250))]
    pub sources: u64,
    /// After our `verack`, wait for the remote's next frame (admitted) or its close (refused
    /// after the handshake); refusals are counted as failures.
    #[arg(long)]
    pub await_admission: bool,
    /// Names the subject in the case column (e.g. "verack node, default limits").
    #[arg(long)]
    pub label: Option<String>,
    /// Only the rate, the share completed and the server's CPU per connection attempted, not
    /// the latencies and the CPU per completed handshake.
    #[arg(long)]
    pub brief: bool,
    /// The `--connect` node's process id: its CPU time per handshake is reported.
    #[arg(long, requires = "connect")]
    pub pid: Option<u32>,
    /// A second node loaded in the same run, interleaved with the first; it is the baseline
    /// of the results (rate, latency, CPU per handshake).
    #[arg(long, value_name = "HOST:PORT", requires = "connect")]
    pub baseline: Option<String>,
    /// The baseline's name in the results.
    #[arg(long, default_value = "baseline")]
    pub baseline_name: String,
    /// The baseline node's process id: its CPU time per handshake is reported.
    #[arg(long, requires = "baseline")]
    pub baseline_pid: Option<u32>,
    /// The rate target as a multiple of the baseline's median rate in this run.
    #[arg(long, requires = "baseline")]
    pub target_ratio: Option<f64>,
    /// Also load a bare tokio server child (canned replies; role `floor`) in the same run: the
    /// rate no tokio server can beat on this machine with this client.
    #[arg(long)]
    pub floor: bool,
}

/// Parses a network name (`mainnet` or `bitcoin`, `testnet4`, `signet`, `regtest`, ...).
pub fn parse_network(s: &str) -> Result<Network, String> {
    match s {
        "mainnet" | "main" => Ok(Network::Bitcoin),
        other => other.parse().map_err(|e| format!("{e}")),
    }
}

/// The loopback source address for connection `i` out of `sources` when `target` is IPv4
/// loopback and `sources` is not 0, else none (the kernel picks).
pub fn source_ip(target: SocketAddr, i: u64, sources: u64) -> Option<IpAddr> {
    match target.ip() {
        IpAddr::V4(ip) if ip.is_loopback() && sources > 0 => {
            Some(Ipv4Addr::new(127, 0, 0, (1 + i % sources.min(250)) as u8).into())
        }
        _ => None,
    }
}

/// Opens connection number `i` to `target` (from [`source_ip`] over the default 250
/// sources), with `TCP_NODELAY`.
pub async fn dial(target: SocketAddr, i: u64) -> std::io::Result<TcpStream> {
    let stream = connect(target, source_ip(target, i, SOURCE_ADDRESSES)).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Opens a connection to `target` from `source` (any port). No `TCP_NODELAY`: the load
/// client writes once per round trip, which Nagle never delays, so the call is saved.
async fn connect(target: SocketAddr, source: Option<IpAddr>) -> std::io::Result<TcpStream> {
    let socket = match target {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    if let Some(ip) = source {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    socket.connect(target).await
}

/// The frames the client sends, built once: a `version` whose nonce and checksum are
/// rewritten per connection, and `verack`.
#[derive(Debug, Clone)]
pub struct ClientFrames {
    magic: Magic,
    version: Bytes,
    verack: Bytes,
}

impl ClientFrames {
    /// Frames for `target`: protocol 70016, services NONE, start height 0, relay false.
    pub fn new(magic: Magic, target: SocketAddr) -> ClientFrames {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let unroutable = SocketAddr::from(([0u16; 8], 0));
        let mut v = VersionMessage::new(
            ServiceFlags::NONE,
            now,
            Address::new(&target, ServiceFlags::NONE),
            Address::new(&unroutable, ServiceFlags::NONE),
            1,
            "/verack-bench:0.1/".to_string(),
            0,
        );
        v.version = PROTOCOL_VERSION;
        v.relay = false;
        let version = encode_frame(magic, &NetworkMessage::Version(v)).expect("small message");
        assert!(version.len() <= 256, "fits ClientFrames::version's array");
        ClientFrames {
            magic,
            version,
            verack: encode_frame(magic, &NetworkMessage::Verack).expect("empty message"),
        }
    }

    /// The `version` frame with `nonce` (non-zero: zero means "none" to some nodes) and its
    /// checksum recomputed.
    pub fn version(&self, nonce: u64) -> [u8; 256] {
        let mut frame = [0u8; 256];
        let len = self.version.len();
        frame[..len].copy_from_slice(&self.version);
        frame[NONCE_OFFSET..NONCE_OFFSET + 8].copy_from_slice(&(nonce | 1).to_le_bytes());
        let once = Sha256::digest(&frame[HEADER_LEN..len]);
        let twice = Sha256::digest(once);
        frame[20..24].copy_from_slice(&twice[..4]);
        frame
    }

    /// Length of the `version` frame in [`version`](Self::version)'s array.
    pub fn version_len(&self) -> usize {
        self.version.len()
    }
}

/// Takes the next complete frame off `buf` and returns its command (12 bytes, NUL-padded);
/// `None` until a whole frame has arrived. The payload is skipped unchecked.
///
/// # Errors
/// Wrong magic, or a length above verack's payload limit.
pub fn next_frame(buf: &mut BytesMut, magic: Magic) -> Result<Option<[u8; 12]>, String> {
    if buf.len() < HEADER_LEN {
        return Ok(None);
    }
    if buf[..4] != magic.to_bytes() {
        return Err("framing: wrong magic".into());
    }
    let len = u32::from_le_bytes(buf[16..20].try_into().expect("4 bytes")) as usize;
    if len > MAX_PAYLOAD_LEN {
        return Err(format!("framing: {len}-byte payload"));
    }
    if buf.len() < HEADER_LEN + len {
        return Ok(None);
    }
    let command: [u8; 12] = buf[4..16].try_into().expect("12 bytes");
    buf.advance(HEADER_LEN + len);
    Ok(Some(command))
}

/// Reads into `buf` until at least one more byte arrived.
async fn fill(stream: &mut TcpStream, buf: &mut BytesMut) -> Result<(), String> {
    buf.reserve(READ_CHUNK);
    match stream.read_buf(buf).await {
        Ok(0) => Err("closed".into()),
        Ok(_) => Ok(()),
        Err(e) => Err(e.kind().to_string()),
    }
}

/// Runs the v1 handshake as the initiator on `stream` (steps 2–4 of the module docs, without
/// the wait for admission and the close). Frames after the remote's `verack` stay in `buf`.
///
/// # Errors
/// A short reason: an I/O error kind, `closed`, or a framing error.
pub async fn exchange(
    stream: &mut TcpStream,
    magic: Magic,
    buf: &mut BytesMut,
) -> Result<(), String> {
    let target = stream.peer_addr().map_err(|e| e.kind().to_string())?;
    exchange_with(stream, &ClientFrames::new(magic, target), buf).await
}

/// [`exchange`] with frames built beforehand.
async fn exchange_with(
    stream: &mut TcpStream,
    frames: &ClientFrames,
    buf: &mut BytesMut,
) -> Result<(), String> {
    let io = |e: std::io::Error| e.kind().to_string();
    let version = frames.version(rand::random());
    stream
        .write_all(&version[..frames.version_len()])
        .await
        .map_err(io)?;
    let (mut version, mut verack) = (false, false);
    while !(version && verack) {
        match next_frame(buf, frames.magic)? {
            Some(VERSION) => version = true,
            Some(VERACK) => verack = true,
            Some(_) => {}
            None => fill(stream, buf).await?,
        }
    }
    stream.write_all(&frames.verack).await.map_err(io)
}

/// Waits for one more frame from the remote after the handshake.
///
/// # Errors
/// `refused after handshake: <reason>` when the remote closed (or reset) first.
async fn await_admission(
    stream: &mut TcpStream,
    magic: Magic,
    buf: &mut BytesMut,
) -> Result<(), String> {
    loop {
        if next_frame(buf, magic)?.is_some() {
            return Ok(());
        }
        fill(stream, buf)
            .await
            .map_err(|e| format!("refused after handshake: {e}"))?;
    }
}

/// How one load run connects and what it waits for.
#[derive(Debug, Clone)]
struct Plan {
    target: SocketAddr,
    frames: ClientFrames,
    sources: u64,
    await_admission: bool,
}

/// One handshake; returns the time the TCP connect took and the time from connect start to
/// our `verack`.
async fn one(plan: &Plan, i: u64) -> Result<(Duration, Duration), String> {
    let started = Instant::now();
    let attempt = async {
        let source = source_ip(plan.target, i, plan.sources);
        let mut stream = connect(plan.target, source)
            .await
            .map_err(|e| e.kind().to_string())?;
        let connected = started.elapsed();
        let mut buf = BytesMut::with_capacity(READ_CHUNK);
        exchange_with(&mut stream, &plan.frames, &mut buf).await?;
        let latency = started.elapsed();
        if plan.await_admission {
            await_admission(&mut stream, plan.frames.magic, &mut buf).await?;
        }
        // A reset instead of FIN: the server is done with us and no TIME_WAIT is left.
        let _ = stream.set_zero_linger();
        Ok((connected, latency))
    };
    tokio::time::timeout(HANDSHAKE_TIMEOUT, attempt)
        .await
        .unwrap_or_else(|_| Err("timeout".into()))
}

/// What a load run measured.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Latency of each completed handshake, in ms.
    pub latencies_ms: Vec<f64>,
    /// The TCP-connect part of each, in ms (the rest waits for the server).
    pub connect_ms: Vec<f64>,
    /// Failed handshakes by reason.
    pub failures: BTreeMap<String, u64>,
    /// Seconds from the first connect to the last handshake finishing.
    pub seconds: f64,
}

impl Outcome {
    fn merge(&mut self, other: Outcome) {
        self.latencies_ms.extend(other.latencies_ms);
        self.connect_ms.extend(other.connect_ms);
        for (reason, n) in other.failures {
            *self.failures.entry(reason).or_default() += n;
        }
    }

    /// Failed handshakes.
    pub fn failed(&self) -> u64 {
        self.failures.values().sum()
    }
}

/// Keeps `in_flight` handshakes going until `duration` passed or `count` were started, then
/// waits for those in progress.
async fn load(plan: Plan, in_flight: usize, duration: Duration, count: Option<u64>) -> Outcome {
    let started = Instant::now();
    let deadline = started + duration;
    let next = Arc::new(AtomicU64::new(0));
    let plan = Arc::new(plan);
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..in_flight.max(1) {
        let (next, plan) = (next.clone(), plan.clone());
        workers.spawn(async move {
            let mut mine = Outcome::default();
            while Instant::now() < deadline {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if count.is_some_and(|n| i >= n) {
                    break;
                }
                match one(&plan, i).await {
                    Ok((connect, latency)) => {
                        mine.connect_ms.push(connect.as_secs_f64() * 1e3);
                        mine.latencies_ms.push(latency.as_secs_f64() * 1e3);
                    }
                    Err(reason) => *mine.failures.entry(reason).or_default() += 1,
                }
            }
            mine
        });
    }
    let mut all = Outcome::default();
    while let Some(done) = workers.join_next().await {
        match done {
            Ok(o) => all.merge(o),
            Err(e) => *all.failures.entry(format!("worker: {e}")).or_default() += 1,
        }
    }
    all.seconds = started.elapsed().as_secs_f64();
    all
}

/// The client runtime: two workers, like the server's.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("client")
        .enable_all()
        .build()
}

/// A node loaded by the scenario, and what its runs measured.
struct Target {
    name: String,
    addr: SocketAddr,
    /// Its process, for CPU time.
    pid: Option<u32>,
    rate: Vec<f64>,
    p50: Vec<f64>,
    p99: Vec<f64>,
    completed_percent: Vec<f64>,
    /// Server CPU per completed handshake, µs.
    server_us: Vec<f64>,
    /// Server CPU per connection attempted, µs (differs when some fail).
    server_us_per_attempt: Vec<f64>,
    /// Client CPU per completed handshake, µs.
    client_us: Vec<f64>,
    /// Client and server CPU per completed handshake, µs: what a rate costs when both share
    /// the machine's cores.
    total_us: Vec<f64>,
    runs: Vec<Value>,
}

impl Target {
    fn new(name: impl Into<String>, addr: SocketAddr, pid: Option<u32>) -> Target {
        Target {
            name: name.into(),
            addr,
            pid,
            rate: Vec::new(),
            p50: Vec::new(),
            p99: Vec::new(),
            completed_percent: Vec::new(),
            server_us: Vec::new(),
            server_us_per_attempt: Vec::new(),
            client_us: Vec::new(),
            total_us: Vec::new(),
            runs: Vec::new(),
        }
    }

    /// One load run against this target; records its numbers.
    fn measure(&mut self, rt: &tokio::runtime::Runtime, args: &Args, magic: Magic) {
        let duration = duration(args);
        let plan = Plan {
            target: self.addr,
            frames: ClientFrames::new(magic, self.addr),
            sources: args.sources,
            await_admission: args.await_admission,
        };
        let server_cpu = self.pid.and_then(process::cpu_seconds);
        let own_cpu = process::cpu_seconds(std::process::id());
        let overflows = process::listen_overflows();
        let outcome = rt.block_on(load(plan, args.in_flight, duration, args.count));
        let cpu_delta = |before: Option<f64>, pid: Option<u32>| -> Option<f64> {
            Some(process::cpu_seconds(pid?)? - before?)
        };
        let server_cpu = cpu_delta(server_cpu, self.pid);
        let client_cpu = cpu_delta(own_cpu, Some(std::process::id()));
        let ok = outcome.latencies_ms.len();
        let attempted = ok as u64 + outcome.failed();
        let per_handshake_us = |cpu: f64| cpu / ok.max(1) as f64 * 1e6;
        self.rate.push(ok as f64 / outcome.seconds);
        self.p50
            .push(report::percentile(&outcome.latencies_ms, 50.0));
        self.p99
            .push(report::percentile(&outcome.latencies_ms, 99.0));
        self.completed_percent
            .push(ok as f64 / attempted.max(1) as f64 * 100.0);
        if let Some(cpu) = server_cpu {
            self.server_us.push(per_handshake_us(cpu));
            self.server_us_per_attempt
                .push(cpu / attempted.max(1) as f64 * 1e6);
        }
        if let Some(cpu) = client_cpu {
            self.client_us.push(per_handshake_us(cpu));
        }
        if let (Some(server), Some(client)) = (server_cpu, client_cpu) {
            self.total_us.push(per_handshake_us(server + client));
        }
        self.runs.push(json!({
            "target": self.name,
            "handshakes": ok,
            "failed": outcome.failed(),
            "failures": outcome.failures,
            "seconds": outcome.seconds,
            "rate": ok as f64 / outcome.seconds,
            "connect_p50_ms": report::percentile(&outcome.connect_ms, 50.0),
            "connect_p99_ms": report::percentile(&outcome.connect_ms, 99.0),
            "listen_overflows": process::listen_overflows().zip(overflows).map(|(a, b)| a - b),
            "server_cpu_percent": server_cpu.map(|c| c / outcome.seconds * 100.0),
            "client_cpu_percent": client_cpu.map(|c| c / outcome.seconds * 100.0),
            "server_cpu_us_per_handshake": server_cpu.map(per_handshake_us),
            "client_cpu_us_per_handshake": client_cpu.map(per_handshake_us),
        }));
    }

    /// A summary of this target's runs for the JSON `extra`.
    fn summary(&self) -> Value {
        json!({
            "name": self.name,
            "addr": self.addr.to_string(),
            "rate": self.rate,
            "server_cpu_us_per_handshake": self.server_us,
            "server_cpu_us_per_attempt": self.server_us_per_attempt,
            "client_cpu_us_per_handshake": self.client_us,
            "runs": self.runs,
        })
    }
}

/// How long each run keeps starting handshakes.
fn duration(args: &Args) -> Duration {
    Duration::from_secs_f64(
        args.duration
            .unwrap_or(if args.count.is_some() { 60.0 } else { 3.0 }),
    )
}

/// `a[i] / b[i]` for each run measured for both.
fn paired(a: &[f64], b: &[f64]) -> Vec<f64> {
    a.iter().zip(b).map(|(a, b)| a / b).collect()
}

/// Resolves `HOST:PORT`.
fn resolve(addr: &str) -> std::io::Result<SocketAddr> {
    addr.to_socket_addrs()?
        .next()
        .ok_or_else(|| std::io::Error::other(format!("{addr} did not resolve")))
}

/// Runs the scenario: `runs` load runs of each target (the subject, then `--baseline` and
/// the `--floor` child if asked), interleaved; results are the subject's handshakes/s, p50
/// and p99 latency (ms), share completed and server CPU per handshake, each with the
/// baseline's where there is one, and the floor's rate and CPU per handshake.
pub fn run(args: &Args) -> std::io::Result<Vec<report::Result>> {
    process::raise_fd_limit();
    // Children are killed when these drop, at the end of the scenario.
    let mut children = Vec::new();
    let (subject, network) = match &args.connect {
        Some(addr) => (
            Target::new(
                args.label.clone().unwrap_or_else(|| "verack".into()),
                resolve(addr)?,
                args.pid,
            ),
            args.network,
        ),
        None => {
            let (helper, addr) = Helper::start_piped(&["serve".to_string()])?;
            let target = Target::new(
                "verack serve child",
                addr.parse().map_err(std::io::Error::other)?,
                Some(helper.pid()),
            );
            children.push(helper);
            (target, Network::Regtest)
        }
    };
    let mut targets = vec![subject];
    let baseline = match &args.baseline {
        Some(addr) => {
            targets.push(Target::new(
                args.baseline_name.clone(),
                resolve(addr)?,
                args.baseline_pid,
            ));
            Some(targets.len() - 1)
        }
        None => None,
    };
    let floor = if args.floor {
        let (helper, addr) = Helper::start_piped(&[
            "floor".to_string(),
            "--network".to_string(),
            network.to_string(),
        ])?;
        targets.push(Target::new(
            "bare tokio floor",
            addr.parse().map_err(std::io::Error::other)?,
            Some(helper.pid()),
        ));
        children.push(helper);
        Some(targets.len() - 1)
    } else {
        None
    };
    let rt = runtime()?;
    let magic = network.magic();
    for run in 0..args.runs.max(1) {
        // The first target rotates, so none is always measured right after another.
        for k in 0..targets.len() {
            let i = (run + k) % targets.len();
            targets[i].measure(&rt, args, magic);
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    drop(children);

    let extra = json!({
        "target": targets[0].addr.to_string(),
        "network": network.to_string(),
        "in_flight": args.in_flight,
        "duration_secs": duration(args).as_secs_f64(),
        "sources": args.sources,
        "await_admission": args.await_admission,
        "failed": targets[0].runs.iter().filter_map(|r| r["failed"].as_u64()).sum::<u64>(),
        "targets": targets.iter().map(Target::summary).collect::<Vec<_>>(),
        // Run by run (the subject's and the baseline's measured seconds apart), the ratio of
        // their rates and of their server CPU per handshake: the spread a shared machine gives.
        "paired_rate_ratios": baseline.map(|b| paired(&targets[0].rate, &targets[b].rate)),
        "paired_server_cpu_ratios": baseline.map(|b| paired(&targets[0].server_us, &targets[b].server_us)),
    });
    let label = args
        .label
        .as_ref()
        .map(|l| format!(", {l}"))
        .unwrap_or_default();
    let base = baseline.map(|b| &targets[b]);
    let with_baseline = |samples: fn(&Target) -> &Vec<f64>| -> Option<(String, Vec<f64>)> {
        let b = base?;
        let s = samples(b);
        (!s.is_empty()).then(|| (b.name.clone(), s.clone()))
    };
    let result = |case: String, unit, verack: Vec<f64>, baseline, target, higher| report::Result {
        scenario: "handshake",
        case,
        unit,
        verack,
        baseline,
        target,
        higher_is_better: higher,
        extra: extra.clone(),
    };
    let subject = &targets[0];
    let rate_target = match (args.target_ratio, base) {
        (Some(ratio), Some(b)) => Some(ratio * report::median(&b.rate)),
        (None, None) if args.connect.is_none() => Some(10_000.0),
        _ => None,
    };
    // With --await-admission a success is an admission, not just a handshake.
    let (rate_case, completed_case, cpu_suffix) = if args.await_admission {
        ("admission rate", "admitted", " held until admitted")
    } else {
        ("handshake rate", "handshakes completed", "")
    };
    let mut results = vec![result(
        format!("{rate_case}{label}"),
        "handshakes/s",
        subject.rate.clone(),
        with_baseline(|t| &t.rate),
        rate_target,
        true,
    )];
    if !args.brief {
        results.push(result(
            format!("handshake latency p50{label}"),
            "ms",
            subject.p50.clone(),
            with_baseline(|t| &t.p50),
            None,
            false,
        ));
        results.push(result(
            format!("handshake latency p99{label}"),
            "ms",
            subject.p99.clone(),
            with_baseline(|t| &t.p99),
            (args.connect.is_none()).then_some(20.0),
            false,
        ));
    }
    if args.connect.is_some() {
        results.push(result(
            format!("{completed_case}{label}"),
            "% of attempts",
            subject.completed_percent.clone(),
            with_baseline(|t| &t.completed_percent),
            None,
            true,
        ));
    }
    if !subject.server_us.is_empty() && !args.brief {
        results.push(result(
            format!("server CPU per handshake{label}"),
            "µs",
            subject.server_us.clone(),
            with_baseline(|t| &t.server_us),
            None,
            false,
        ));
    }
    if !subject.server_us_per_attempt.is_empty() && args.brief {
        results.push(result(
            format!("server CPU per connection attempt{cpu_suffix}{label}"),
            "µs",
            subject.server_us_per_attempt.clone(),
            with_baseline(|t| &t.server_us_per_attempt),
            None,
            false,
        ));
    }
    if !subject.total_us.is_empty() && !args.brief {
        results.push(result(
            format!("client + server CPU per handshake{label}"),
            "µs",
            subject.total_us.clone(),
            with_baseline(|t| &t.total_us),
            None,
            false,
        ));
    }
    if let Some(f) = floor.map(|f| &targets[f]) {
        results.push(result(
            "handshake rate, bare tokio floor (canned replies)".into(),
            "handshakes/s",
            f.rate.clone(),
            with_baseline(|t| &t.rate),
            None,
            true,
        ));
        results.push(result(
            "server CPU per handshake, bare tokio floor".into(),
            "µs",
            f.server_us.clone(),
            with_baseline(|t| &t.server_us),
            None,
            false,
        ));
        results.push(result(
            "client + server CPU per handshake, bare tokio floor".into(),
            "µs",
            f.total_us.clone(),
            with_baseline(|t| &t.total_us),
            None,
            false,
        ));
    }
    Ok(results)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_sources_rotate_and_others_are_left_to_the_kernel() {
        let local: SocketAddr = "127.0.0.1:8333".parse().unwrap();
        assert_eq!(source_ip(local, 0, 250), Some([127, 0, 0, 1].into()));
        assert_eq!(source_ip(local, 249, 250), Some([127, 0, 0, 250].into()));
        assert_eq!(source_ip(local, 250, 250), Some([127, 0, 0, 1].into()));
        assert_eq!(source_ip(local, 7, 1), Some([127, 0, 0, 1].into()));
        assert_eq!(source_ip(local, 7, 3), Some([127, 0, 0, 2].into()));
        assert_eq!(source_ip(local, 7, 0), None);
        assert_eq!(source_ip("10.0.0.1:8333".parse().unwrap(), 3, 250), None);
        assert_eq!(source_ip("[::1]:8333".parse().unwrap(), 3, 250), None);
    }

    #[test]
    fn network_names() {
        assert_eq!(parse_network("mainnet"), Ok(Network::Bitcoin));
        assert_eq!(parse_network("testnet4"), Ok(Network::Testnet4));
        assert_eq!(parse_network("signet"), Ok(Network::Signet));
        assert_eq!(parse_network("regtest"), Ok(Network::Regtest));
        assert!(parse_network("moon").is_err());
    }

    #[test]
    fn version_frame_with_a_new_nonce_decodes_with_that_nonce() {
        use tokio_util::codec::Decoder;
        let magic = Network::Regtest.magic();
        let frames = ClientFrames::new(magic, "127.0.0.1:18444".parse().unwrap());
        let nonce = 0x0123_4567_89ab_cdef;
        let frame = frames.version(nonce);
        let mut buf = BytesMut::from(&frame[..frames.version_len()]);
        // The full codec checks the checksum the client rewrote.
        let decoded = verack::wire::V1Codec::new(magic)
            .decode(&mut buf)
            .unwrap()
            .unwrap();
        match decoded.message {
            NetworkMessage::Version(v) => {
                assert_eq!(v.nonce, nonce);
                assert_eq!(v.version, PROTOCOL_VERSION);
                assert!(!v.relay);
            }
            other => panic!("decoded {other:?}"),
        }
        assert!(buf.is_empty());
    }

    #[test]
    fn frames_are_taken_whole_and_bad_headers_refused() {
        let magic = Network::Regtest.magic();
        let frames = ClientFrames::new(magic, "127.0.0.1:18444".parse().unwrap());
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&frames.version(5)[..frames.version_len()]);
        buf.extend_from_slice(&frames.verack[..10]);
        assert_eq!(next_frame(&mut buf, magic), Ok(Some(VERSION)));
        assert_eq!(next_frame(&mut buf, magic), Ok(None));
        buf.extend_from_slice(&frames.verack[10..]);
        assert_eq!(next_frame(&mut buf, magic), Ok(Some(VERACK)));
        assert!(buf.is_empty());

        let mut wrong = BytesMut::from(&frames.verack[..]);
        assert!(next_frame(&mut wrong, Network::Bitcoin.magic()).is_err());
        let mut huge = BytesMut::from(&frames.verack[..]);
        huge[16..20].copy_from_slice(&(MAX_PAYLOAD_LEN as u32 + 1).to_le_bytes());
        assert!(next_frame(&mut huge, magic).is_err());
    }
}
