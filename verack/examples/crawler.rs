//! Walks a Bitcoin network by `getaddr`: from the seeds, every node reached is asked for
//! addresses, and every new address is visited in turn, up to `--max-nodes`.
//!
//! ```text
//! cargo run --release --example crawler -- --network regtest --seed 127.0.0.1:18444 \
//!     [--max-nodes N] [--json]
//! ```
//!
//! One line per node reached goes to stdout (with `--json`, one JSON object per line):
//! `address`, `user_agent`, `services` (the `version` service bits as a number),
//! `protocol_version`, `start_height`, `transport` (`"v1"` or `"v2"`), `rtt_ms` (the first
//! ping's round trip in milliseconds, `null` without a pong), `addresses` (how many the node
//! handed out) and `via` (`"seed"`, or the node whose `getaddr` answer named this one).
//! Failures and a summary go to stderr. Exit status 0 when at least one node was reached,
//! 1 otherwise, 2 for bad arguments.
//!
//! Each visit: TCP connect (`--connect-timeout`), BIP324 v2 handshake with one v1 re-dial when
//! the node turns out to be v1-only (as Core's manual connections; `--v1` dials v1 only), the
//! version handshake, `getaddr`, then wait for the first `addr`/`addrv2` message with more
//! than one entry (a single entry is often a self-announcement) or `--getaddr-timeout`,
//! whichever is first; Core answers `getaddr` on its address-relay timer (30 s on average) and
//! not at all when its address manager is empty.
//!
//! **Loopback guard.** With `--loopback-only` (the default when every seed is a loopback
//! address) nothing but loopback addresses is ever dialled: handed-out addresses elsewhere are
//! counted as skipped, and a non-loopback seed is refused. Non-IP addresses (Tor, I2P, CJDNS)
//! are always skipped: this crawler dials TCP/IP only.
//!
//! The crawl logic is [`crawl`]; `main` only parses arguments and prints, so tests can run the
//! same code in-process (`verack-node/tests/example_crawler.rs`).

use std::collections::{HashSet, VecDeque};
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use bitcoin::p2p::address::{AddrV2Message, Address};
use bitcoin::p2p::message::NetworkMessage;
use bitcoin::Network;
use clap::Parser;
use serde_json::json;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::{timeout, timeout_at, Instant};
use tokio_util::sync::CancellationToken;
use verack::peer::{
    BoxError, HandshakedPeer, MessageHandler, Peer, PeerConfig, PeerHandle, TransportKind,
};

/// At most this many addresses are remembered as seen (queued or visited): 1,000,000.
const MAX_SEEN: usize = 1_000_000;

/// Command-line arguments.
#[derive(Parser, Debug, Clone)]
#[command(about = "Walk a Bitcoin network by getaddr and print what each node reports")]
pub struct Args {
    /// bitcoin (mainnet), testnet, testnet4, signet or regtest.
    #[arg(long, default_value = "bitcoin")]
    pub network: Network,
    /// Where to start, HOST:PORT (repeatable; host names are resolved once).
    #[arg(long, required = true)]
    pub seed: Vec<String>,
    /// At most this many nodes are dialled (each at most twice: v2, then v1). Default 1000.
    #[arg(long, default_value_t = 1000)]
    pub max_nodes: usize,
    /// Print one JSON object per line instead of text.
    #[arg(long)]
    pub json: bool,
    /// Dial loopback addresses only. Default: on when every seed resolves to loopback.
    #[arg(long, num_args = 0..=1, default_missing_value = "true")]
    pub loopback_only: Option<bool>,
    /// Visits in parallel. Default 8.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Seconds allowed for each TCP connect. Default 5.
    #[arg(long, default_value_t = 5)]
    pub connect_timeout: u64,
    /// Seconds allowed for each handshake (the v2 key exchange included). Default 15.
    #[arg(long, default_value_t = 15)]
    pub handshake_timeout: u64,
    /// Seconds to wait for a node's `getaddr` answer (and first pong). Default 40.
    #[arg(long, default_value_t = 40)]
    pub getaddr_timeout: u64,
    /// Dial v1 only (default: BIP324 v2 first, one v1 re-dial for v1-only nodes).
    #[arg(long)]
    pub v1: bool,
}

/// What one node reported.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeReport {
    /// The address dialled.
    pub address: SocketAddr,
    /// Its user agent (BIP14).
    pub user_agent: String,
    /// Its `version` service bits.
    pub services: u64,
    /// The protocol version it announced.
    pub protocol_version: u32,
    /// Its `start_height`.
    pub start_height: i32,
    /// The transport the handshake ran over.
    pub transport: TransportKind,
    /// The first ping's round trip; `None` when no pong came within the getaddr wait.
    pub rtt: Option<Duration>,
    /// How many addresses it handed out (all entries of the messages received, before
    /// filtering).
    pub addresses: usize,
    /// The node whose answer named this one; `None` for a seed.
    pub via: Option<SocketAddr>,
}

impl NodeReport {
    /// The report as one JSON object (the fields of the module doc).
    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "address": self.address.to_string(),
            "user_agent": self.user_agent,
            "services": self.services,
            "protocol_version": self.protocol_version,
            "start_height": self.start_height,
            "transport": self.transport.to_string(),
            "rtt_ms": self.rtt.map(|d| (d.as_secs_f64() * 1e6).round() / 1e3),
            "addresses": self.addresses,
            "via": self.via.map_or("seed".to_string(), |v| v.to_string()),
        })
    }

    /// The report as one line of text.
    pub fn to_text(&self) -> String {
        let rtt = self.rtt.map_or("-".to_string(), |d| {
            format!("{:.3} ms", d.as_secs_f64() * 1e3)
        });
        format!(
            "{} {} services {:#x} version {} height {} {} rtt {} addresses {}",
            self.address,
            self.user_agent,
            self.services,
            self.protocol_version,
            self.start_height,
            self.transport,
            rtt,
            self.addresses
        )
    }
}

/// Counts for the whole crawl.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Nodes that completed the handshake.
    pub reached: usize,
    /// Nodes dialled that could not be reached or refused the handshake.
    pub failed: usize,
    /// Distinct new addresses queued from `getaddr` answers.
    pub learned: usize,
    /// Addresses not dialled because of the loopback guard or because they are not IP.
    pub skipped: usize,
}

/// Why the crawl could not start.
#[derive(Debug, thiserror::Error)]
pub enum CrawlError {
    /// A seed did not resolve.
    #[error("seed {seed}: {reason}")]
    Seed {
        /// The seed as given.
        seed: String,
        /// Why it did not resolve.
        reason: String,
    },
    /// A seed is not loopback but the loopback guard is on.
    #[error("seed {0} is not a loopback address and --loopback-only is on")]
    NotLoopback(SocketAddr),
}

/// Events from a running peer to its visit.
enum Event {
    Addresses(Vec<SocketAddr>, usize),
    Pong,
}

/// Forwards `addr`, `addrv2` and `pong` to the visit.
struct Collector(mpsc::UnboundedSender<Event>);

impl MessageHandler for Collector {
    async fn on_addr(&mut self, _peer: &PeerHandle, addrs: Vec<(u32, Address)>) {
        let n = addrs.len();
        let ips = addrs
            .iter()
            .filter_map(|(_, a)| a.socket_addr().ok())
            .collect();
        let _ = self.0.send(Event::Addresses(ips, n));
    }

    async fn on_addrv2(&mut self, _peer: &PeerHandle, addrs: Vec<AddrV2Message>) {
        let n = addrs.len();
        let ips = addrs.iter().filter_map(|a| a.socket_addr().ok()).collect();
        let _ = self.0.send(Event::Addresses(ips, n));
    }

    async fn on_pong(&mut self, _peer: &PeerHandle, _nonce: u64) {
        let _ = self.0.send(Event::Pong);
    }
}

/// Crawls from `args.seed`; calls `report` for each node reached and `failure` for each node
/// that was not, as they finish. Every wait is bounded by the timeouts in `args`, and at most
/// `args.max_nodes` nodes are dialled, so the crawl ends.
///
/// # Errors
/// A seed that does not resolve, or a non-loopback seed under the loopback guard.
pub async fn crawl(
    args: &Args,
    mut report: impl FnMut(&NodeReport),
    mut failure: impl FnMut(SocketAddr, &str),
) -> Result<Summary, CrawlError> {
    let mut seeds = Vec::new();
    for seed in &args.seed {
        let found: Vec<SocketAddr> = tokio::net::lookup_host(seed.as_str())
            .await
            .map_err(|e| CrawlError::Seed {
                seed: seed.clone(),
                reason: e.to_string(),
            })?
            .collect();
        if found.is_empty() {
            return Err(CrawlError::Seed {
                seed: seed.clone(),
                reason: "no address".into(),
            });
        }
        seeds.extend(found);
    }
    let loopback_only = args
        .loopback_only
        .unwrap_or_else(|| seeds.iter().all(|s| s.ip().is_loopback()));
    if loopback_only {
        if let Some(bad) = seeds.iter().find(|s| !s.ip().is_loopback()) {
            return Err(CrawlError::NotLoopback(*bad));
        }
    }
    let mut config = PeerConfig::new(args.network);
    config.user_agent = concat!("/verack-crawler:", env!("CARGO_PKG_VERSION"), "/").to_string();
    config.relay = false;
    config.handshake_timeout = Duration::from_secs(args.handshake_timeout);
    let config = Arc::new(config);

    let mut summary = Summary::default();
    let mut seen: HashSet<SocketAddr> = HashSet::new();
    let mut queue: VecDeque<(SocketAddr, Option<SocketAddr>)> = VecDeque::new();
    for seed in seeds {
        if seen.insert(seed) {
            queue.push_back((seed, None));
        }
    }
    let mut dialled = 0usize;
    let mut visits = JoinSet::new();
    loop {
        while visits.len() < args.concurrency.max(1) && dialled < args.max_nodes {
            let Some((addr, via)) = queue.pop_front() else {
                break;
            };
            dialled += 1;
            let (args, config) = (args.clone(), config.clone());
            visits.spawn(async move { (addr, via, visit(addr, &args, config).await) });
        }
        let Some(done) = visits.join_next().await else {
            break;
        };
        let (addr, via, outcome) = done.expect("a visit does not panic");
        match outcome {
            Ok(visited) => {
                summary.reached += 1;
                for next in visited.learned {
                    if !next.ip().is_loopback() && loopback_only {
                        summary.skipped += 1;
                    } else if seen.len() < MAX_SEEN && seen.insert(next) {
                        summary.learned += 1;
                        queue.push_back((next, Some(addr)));
                    }
                }
                summary.skipped += visited.non_ip;
                report(&NodeReport {
                    via,
                    ..visited.report
                });
            }
            Err(reason) => {
                summary.failed += 1;
                failure(addr, &reason);
            }
        }
    }
    Ok(summary)
}

/// One node's outcome.
struct Visited {
    report: NodeReport,
    learned: Vec<SocketAddr>,
    non_ip: usize,
}

/// Dials, handshakes (v2 then v1, unless `--v1`), asks `getaddr` and collects the answer.
async fn visit(addr: SocketAddr, args: &Args, config: Arc<PeerConfig>) -> Result<Visited, String> {
    let first = if args.v1 {
        TransportKind::V1
    } else {
        TransportKind::V2
    };
    let peer = match handshake(addr, args, config.clone(), first).await {
        Err((e, true)) if first == TransportKind::V2 => {
            handshake(addr, args, config, TransportKind::V1)
                .await
                .map_err(|(e2, _)| format!("v2: {e}; v1: {e2}"))?
        }
        other => other.map_err(|(e, _)| e)?,
    };
    let handle = peer.handle();
    let n = handle.negotiated().clone();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let cancel = CancellationToken::new();
    let running = tokio::spawn(peer.run(Collector(tx), cancel.clone()));
    let _ = handle.send(NetworkMessage::GetAddr);

    // The peer pings as soon as it runs (BIP31); the answer to getaddr may come any time.
    let deadline = Instant::now() + Duration::from_secs(args.getaddr_timeout);
    let (mut learned, mut total, mut answered, mut rtt) = (Vec::new(), 0, false, None);
    while !(answered && rtt.is_some()) {
        match timeout_at(deadline, rx.recv()).await {
            Ok(Some(Event::Pong)) => rtt = handle.stats().last_ping,
            Ok(Some(Event::Addresses(ips, n))) => {
                answered |= n > 1;
                total += n;
                learned.extend(ips);
            }
            // Disconnected, or the wait is over.
            Ok(None) | Err(_) => break,
        }
    }
    cancel.cancel();
    let _ = running.await;
    let non_ip = total - learned.len();
    Ok(Visited {
        report: NodeReport {
            address: addr,
            user_agent: n.user_agent.clone(),
            services: n.services.to_u64(),
            protocol_version: n.remote_version,
            start_height: n.start_height,
            transport: n.transport.kind(),
            rtt,
            addresses: total,
            via: None,
        },
        learned,
        non_ip,
    })
}

/// One connection and handshake over `transport`; the error says whether BIP324 asks for a
/// v1 re-dial.
async fn handshake(
    addr: SocketAddr,
    args: &Args,
    config: Arc<PeerConfig>,
    transport: TransportKind,
) -> Result<HandshakedPeer<TcpStream>, (String, bool)> {
    let limit = Duration::from_secs(args.connect_timeout);
    let stream = match timeout(limit, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err((format!("connect: {e}"), false)),
        Err(_) => return Err((format!("connect: timed out after {limit:?}"), false)),
    };
    let cancel = CancellationToken::new();
    Peer::outbound_with_transport(stream, addr, config, transport)
        .handshake(&cancel, |_| Ok::<(), BoxError>(()))
        .await
        .map_err(|e| (format!("handshake: {e}"), e.retry_v1()))
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let args = Args::parse();
    let json = args.json;
    let result = crawl(
        &args,
        |r| {
            if json {
                println!("{}", r.to_json());
            } else {
                println!("{}", r.to_text());
            }
        },
        |addr, reason| eprintln!("unreachable {addr}: {reason}"),
    )
    .await;
    match result {
        Ok(s) => {
            eprintln!(
                "crawled: {} reached, {} unreachable, {} addresses learned, {} skipped",
                s.reached, s.failed, s.learned, s.skipped
            );
            if s.reached > 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
