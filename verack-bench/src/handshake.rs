//! Scenario `handshake`: how many version/verack handshakes per second a node completes, and
//! how long each takes.
//!
//! The load client speaks raw v1 frames over tokio sockets (only `verack::wire` framing is
//! used, not verack's `Peer`), so it can be pointed at any Bitcoin node with `--connect`.
//! Each of `--in-flight` workers repeats, until `--duration` or `--count`:
//! 1. TCP connect (from 127.0.0.1–250 in turn when the target is loopback, so ephemeral
//!    ports do not run out);
//! 2. send `version` (protocol 70016, services NONE, random nonce, height 0, relay false);
//! 3. read frames until both the remote's `version` and `verack` arrived;
//! 4. send `verack`, then close with `SO_LINGER` 0 (a reset, so no `TIME_WAIT` piles up).
//!
//! Latency is from step 1 to step 4. Without `--connect` a verack server child (role
//! `serve`) is the target.

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
use bytes::BytesMut;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::Instant;
use tokio_util::codec::Decoder;
use verack::wire::{encode_frame, V1Codec};

use crate::process::{self, Helper};
use crate::report;

/// The whole of one handshake (connect included) must finish within this: 10 s.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Our protocol version: 70016 (BIP339 `wtxidrelay`).
const PROTOCOL_VERSION: u32 = 70016;
/// Bytes reserved in the read buffer before each read.
pub const READ_CHUNK: usize = 4096;
/// Loopback source addresses used in turn: 127.0.0.1 to 127.0.0.250.
const SOURCE_ADDRESSES: u64 = 250;

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
    /// Runs; each result is the median.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
}

/// Parses a network name (`mainnet` or `bitcoin`, `testnet4`, `signet`, `regtest`, ...).
pub fn parse_network(s: &str) -> Result<Network, String> {
    match s {
        "mainnet" | "main" => Ok(Network::Bitcoin),
        other => other.parse().map_err(|e| format!("{e}")),
    }
}

/// The loopback source address for connection `i` when `target` is IPv4 loopback, else none
/// (the kernel picks).
pub fn source_ip(target: SocketAddr, i: u64) -> Option<IpAddr> {
    match target.ip() {
        IpAddr::V4(ip) if ip.is_loopback() => {
            Some(Ipv4Addr::new(127, 0, 0, (1 + i % SOURCE_ADDRESSES) as u8).into())
        }
        _ => None,
    }
}

/// Opens connection number `i` to `target` (from [`source_ip`]), with `TCP_NODELAY`.
pub async fn dial(target: SocketAddr, i: u64) -> std::io::Result<TcpStream> {
    let socket = match target {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    if let Some(ip) = source_ip(target, i) {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    let stream = socket.connect(target).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Our `version` frame for `target`: protocol 70016, services NONE, a random non-zero nonce,
/// start height 0, relay false.
fn version_frame(magic: Magic, target: SocketAddr) -> bytes::Bytes {
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
        rand::random::<u64>() | 1,
        "/verack-bench:0.1/".to_string(),
        0,
    );
    v.version = PROTOCOL_VERSION;
    v.relay = false;
    encode_frame(magic, &NetworkMessage::Version(v)).expect("small message")
}

/// Runs the v1 handshake as the initiator on `stream` (steps 2–4 of the module docs, without
/// the close). Frames after the remote's `verack` stay in `buf`.
///
/// # Errors
/// A short reason: an I/O error kind, `closed`, or a framing error.
pub async fn exchange(
    stream: &mut TcpStream,
    magic: Magic,
    buf: &mut BytesMut,
) -> Result<(), String> {
    let target = stream.peer_addr().map_err(|e| e.kind().to_string())?;
    let io = |e: std::io::Error| e.kind().to_string();
    stream
        .write_all(&version_frame(magic, target))
        .await
        .map_err(io)?;
    let mut codec = V1Codec::new(magic);
    let (mut version, mut verack) = (false, false);
    while !(version && verack) {
        match codec.decode(buf) {
            Ok(Some(frame)) => match frame.message {
                NetworkMessage::Version(_) => version = true,
                NetworkMessage::Verack => verack = true,
                _ => {}
            },
            Ok(None) => {
                buf.reserve(READ_CHUNK);
                if stream.read_buf(buf).await.map_err(io)? == 0 {
                    return Err("closed".into());
                }
            }
            Err(e) => return Err(format!("framing: {e}")),
        }
    }
    let verack_frame = encode_frame(magic, &NetworkMessage::Verack).expect("empty message");
    stream.write_all(&verack_frame).await.map_err(io)
}

/// One handshake; returns the time the TCP connect took and the time from connect start to
/// our `verack`.
async fn one(target: SocketAddr, magic: Magic, i: u64) -> Result<(Duration, Duration), String> {
    let started = Instant::now();
    let attempt = async {
        let mut stream = dial(target, i).await.map_err(|e| e.kind().to_string())?;
        let connected = started.elapsed();
        let mut buf = BytesMut::with_capacity(READ_CHUNK);
        exchange(&mut stream, magic, &mut buf).await?;
        let latency = started.elapsed();
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

/// Keeps `in_flight` handshakes going to `target` until `duration` passed or `count` were
/// started, then waits for those in progress.
pub async fn load(
    target: SocketAddr,
    magic: Magic,
    in_flight: usize,
    duration: Duration,
    count: Option<u64>,
) -> Outcome {
    let started = Instant::now();
    let deadline = started + duration;
    let next = Arc::new(AtomicU64::new(0));
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..in_flight.max(1) {
        let next = next.clone();
        workers.spawn(async move {
            let mut mine = Outcome::default();
            while Instant::now() < deadline {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if count.is_some_and(|n| i >= n) {
                    break;
                }
                match one(target, magic, i).await {
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

/// Runs the scenario: `runs` load runs against `--connect` or a fresh `serve` child; results
/// are handshakes/s, p50 and p99 latency (ms).
pub fn run(args: &Args) -> std::io::Result<Vec<report::Result>> {
    process::raise_fd_limit();
    let (server, target, network) = match &args.connect {
        Some(addr) => {
            let target = addr
                .to_socket_addrs()?
                .next()
                .ok_or_else(|| std::io::Error::other(format!("{addr} did not resolve")))?;
            (None, target, args.network)
        }
        None => {
            let (helper, addr) = Helper::start_piped(&["serve".to_string()])?;
            (
                Some(helper),
                addr.parse().map_err(std::io::Error::other)?,
                Network::Regtest,
            )
        }
    };
    let duration = Duration::from_secs_f64(args.duration.unwrap_or(if args.count.is_some() {
        60.0
    } else {
        3.0
    }));
    let rt = runtime()?;
    let (mut rate, mut p50, mut p99, mut runs) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..args.runs.max(1) {
        let server_cpu = server.as_ref().and_then(|s| process::cpu_seconds(s.pid()));
        let own_cpu = process::cpu_seconds(std::process::id());
        let overflows = process::listen_overflows();
        let outcome = rt.block_on(load(
            target,
            network.magic(),
            args.in_flight,
            duration,
            args.count,
        ));
        let percent = |before: Option<f64>, pid: Option<u32>| -> Option<f64> {
            Some((process::cpu_seconds(pid?)? - before?) / outcome.seconds * 100.0)
        };
        let ok = outcome.latencies_ms.len();
        rate.push(ok as f64 / outcome.seconds);
        p50.push(report::percentile(&outcome.latencies_ms, 50.0));
        p99.push(report::percentile(&outcome.latencies_ms, 99.0));
        runs.push(json!({
            "handshakes": ok,
            "failed": outcome.failed(),
            "failures": outcome.failures,
            "seconds": outcome.seconds,
            "connect_p50_ms": report::percentile(&outcome.connect_ms, 50.0),
            "connect_p99_ms": report::percentile(&outcome.connect_ms, 99.0),
            "listen_overflows": process::listen_overflows().zip(overflows).map(|(a, b)| a - b),
            "server_cpu_percent": percent(server_cpu, server.as_ref().map(Helper::pid)),
            "client_cpu_percent": percent(own_cpu, Some(std::process::id())),
        }));
        std::thread::sleep(Duration::from_millis(500));
    }
    let failed: u64 = runs.iter().filter_map(|r| r["failed"].as_u64()).sum();
    let extra = json!({
        "target": server.as_ref().map_or_else(|| target.to_string(), |_| "verack serve child".into()),
        "network": network.to_string(),
        "in_flight": args.in_flight,
        "duration_secs": duration.as_secs_f64(),
        "failed": failed,
        "runs": runs,
    });
    let result = |case: &str, unit, samples, target, higher_is_better| report::Result {
        scenario: "handshake",
        case: case.into(),
        unit,
        verack: samples,
        baseline: None,
        target,
        higher_is_better,
        extra: extra.clone(),
    };
    Ok(vec![
        result("handshake rate", "handshakes/s", rate, Some(10_000.0), true),
        result("handshake latency p50", "ms", p50, None, false),
        result("handshake latency p99", "ms", p99, Some(20.0), false),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_sources_rotate_and_others_are_left_to_the_kernel() {
        let local: SocketAddr = "127.0.0.1:8333".parse().unwrap();
        assert_eq!(source_ip(local, 0), Some([127, 0, 0, 1].into()));
        assert_eq!(source_ip(local, 249), Some([127, 0, 0, 250].into()));
        assert_eq!(source_ip(local, 250), Some([127, 0, 0, 1].into()));
        assert_eq!(source_ip("10.0.0.1:8333".parse().unwrap(), 3), None);
        assert_eq!(source_ip("[::1]:8333".parse().unwrap(), 3), None);
    }

    #[test]
    fn network_names() {
        assert_eq!(parse_network("mainnet"), Ok(Network::Bitcoin));
        assert_eq!(parse_network("testnet4"), Ok(Network::Testnet4));
        assert_eq!(parse_network("signet"), Ok(Network::Signet));
        assert_eq!(parse_network("regtest"), Ok(Network::Regtest));
        assert!(parse_network("moon").is_err());
    }
}
