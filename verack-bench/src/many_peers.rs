//! Scenario `many-peers`: what thousands of idle, handshaked peers cost a verack server
//! (memory per peer, CPU while idle) and how fast it still answers pings; plus the [`Fleet`]
//! of raw-socket peers that this scenario and `fanout` drive.
//!
//! Steps (the server is a `serve` child; the fleet runs in this process):
//! 1. server RSS after start;
//! 2. `--peers` handshakes, `--in-flight` at a time (raw v1 frames, see [`crate::handshake`]);
//! 3. after the server admitted them and 2 s of settling: RSS again, per peer = delta / peers;
//! 4. server CPU over `--idle-secs` with no traffic (its own pings are 2 min apart);
//! 5. every peer pings once a second for `--ping-secs` (spread evenly over each second) and
//!    times the matching `pong`; the server's CPU during it goes in `extra`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bitcoin::p2p::message::NetworkMessage;
use bitcoin::p2p::message_blockdata::Inventory;
use bitcoin::p2p::Magic;
use bitcoin::{BlockHash, Network};
use bytes::BytesMut;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::time::Instant;
use tokio_util::codec::Decoder;
use verack::wire::{encode_frame, V1Codec};

use crate::handshake::{dial, exchange, runtime, HANDSHAKE_TIMEOUT, READ_CHUNK};
use crate::process::{self, Helper};
use crate::report;

/// Flags of the `many-peers` scenario.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Idle peers to connect.
    #[arg(long, default_value_t = 10_000)]
    pub peers: usize,
    /// Handshakes in progress at once.
    #[arg(long, default_value_t = 256)]
    pub in_flight: usize,
    /// Seconds of the idle-CPU window.
    #[arg(long, default_value_t = 5.0)]
    pub idle_secs: f64,
    /// Seconds during which every peer pings once a second.
    #[arg(long, default_value_t = 5)]
    pub ping_secs: u32,
    /// Runs (each with a fresh server); each result is the median.
    #[arg(long, default_value_t = 1)]
    pub runs: usize,
}

/// How long all handshakes of a fleet may take: 30 s.
pub const CONNECT_BOUND: Duration = Duration::from_secs(30);
/// Settling time after the last handshake before memory is read: 2 s.
const SETTLE: Duration = Duration::from_secs(2);

/// What every peer of a [`Fleet`] should do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Answer pings, record block announcements, send nothing of our own.
    Idle,
    /// Ping once a second, `rounds` times; peer `i` of `n` starts at `start + i/n s`.
    Ping {
        /// When the first second begins.
        start: Instant,
        /// Pings per peer.
        rounds: u32,
    },
    /// Close the connection.
    Close,
}

/// What a fleet peer reports.
#[derive(Debug)]
enum Event {
    Handshaked,
    Failed(String),
    /// A ping's round trip, in ms.
    Rtt(f64),
    /// A block `inv` and when the read carrying it returned.
    Block(BlockHash, Instant),
    /// Disconnected after the handshake, and why.
    Lost(String),
}

/// How the fleet's handshakes went.
#[derive(Debug, Default)]
pub struct Handshakes {
    /// Completed handshakes.
    pub ok: usize,
    /// Failed ones by reason (`unfinished` if the bound passed first).
    pub failures: BTreeMap<String, u64>,
    /// Seconds from the fleet's start to the last handshake.
    pub seconds: f64,
}

/// Many raw-socket peers of one target, each a task on the caller's runtime, steered by
/// [`Phase`] and reporting through one channel.
pub struct Fleet {
    phase: watch::Sender<Phase>,
    events: mpsc::UnboundedReceiver<Event>,
    peers: usize,
    started: Instant,
    /// Peers that lost their connection after the handshake, by reason.
    pub lost: BTreeMap<String, u64>,
}

impl Fleet {
    /// Starts `peers` peers of `target` on `rt`, at most `in_flight` handshaking at once.
    pub fn start(
        rt: &tokio::runtime::Handle,
        target: SocketAddr,
        magic: Magic,
        peers: usize,
        in_flight: usize,
    ) -> Fleet {
        let (phase, _) = watch::channel(Phase::Idle);
        let (events, rx) = mpsc::unbounded_channel();
        let slots = Arc::new(Semaphore::new(in_flight.max(1)));
        for index in 0..peers {
            let me = Member {
                index,
                peers,
                magic,
                phase: phase.subscribe(),
                events: events.clone(),
            };
            rt.spawn(me.run(target, slots.clone()));
        }
        Fleet {
            phase,
            events: rx,
            peers,
            started: Instant::now(),
            lost: BTreeMap::new(),
        }
    }

    /// Tells every peer what to do.
    pub fn set(&self, phase: Phase) {
        self.phase.send_replace(phase);
    }

    /// Waits until every handshake succeeded or failed, or `within` passed since the start.
    pub async fn handshakes(&mut self, within: Duration) -> Handshakes {
        let deadline = self.started + within;
        let mut h = Handshakes::default();
        let mut settled = 0;
        while settled < self.peers {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(Event::Handshaked)) => h.ok += 1,
                Ok(Some(Event::Failed(reason))) => *h.failures.entry(reason).or_default() += 1,
                Ok(Some(other)) => {
                    self.note(other);
                    continue;
                }
                Ok(None) | Err(_) => {
                    h.failures
                        .insert("unfinished".into(), (self.peers - settled) as u64);
                    break;
                }
            }
            settled += 1;
        }
        h.seconds = self.started.elapsed().as_secs_f64();
        h
    }

    /// Round trips (ms) reported until `until`.
    pub async fn rtts(&mut self, until: Instant) -> Vec<f64> {
        let mut rtts = Vec::new();
        while let Ok(Some(event)) = tokio::time::timeout_at(until, self.events.recv()).await {
            match event {
                Event::Rtt(ms) => rtts.push(ms),
                other => self.note(other),
            }
        }
        rtts
    }

    /// Arrival times of the block `inv` for `hash`, until `expected` peers had it or `within`
    /// passed.
    pub async fn blocks(
        &mut self,
        hash: BlockHash,
        expected: usize,
        within: Duration,
    ) -> Vec<Instant> {
        let deadline = Instant::now() + within;
        let mut arrivals = Vec::new();
        while arrivals.len() < expected {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(Event::Block(h, at))) if h == hash => arrivals.push(at),
                Ok(Some(other)) => self.note(other),
                Ok(None) | Err(_) => break,
            }
        }
        arrivals
    }

    fn note(&mut self, event: Event) {
        if let Event::Lost(reason) = event {
            *self.lost.entry(reason).or_default() += 1;
        }
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        self.set(Phase::Close);
    }
}

/// How a member's connection ended.
enum End {
    Told,
    Lost(String),
}

/// One peer of a fleet.
struct Member {
    index: usize,
    peers: usize,
    magic: Magic,
    phase: watch::Receiver<Phase>,
    events: mpsc::UnboundedSender<Event>,
}

impl Member {
    async fn run(mut self, target: SocketAddr, slots: Arc<Semaphore>) {
        let attempt = {
            let _slot = slots.acquire_owned().await;
            let index = self.index as u64;
            let magic = self.magic;
            let handshake = async move {
                let mut stream = dial(target, index)
                    .await
                    .map_err(|e| format!("connect: {}", e.kind()))?;
                let mut buf = BytesMut::with_capacity(READ_CHUNK);
                exchange(&mut stream, magic, &mut buf).await?;
                Ok::<_, String>((stream, buf))
            };
            tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake)
                .await
                .unwrap_or_else(|_| Err("timeout".into()))
        };
        let (stream, buf) = match attempt {
            Ok(connected) => connected,
            Err(reason) => {
                let _ = self.events.send(Event::Failed(reason));
                return;
            }
        };
        let _ = self.events.send(Event::Handshaked);
        if let End::Lost(reason) = self.serve(stream, buf).await {
            let _ = self.events.send(Event::Lost(reason));
        }
    }

    /// Reads and answers until told to close or the connection is lost.
    async fn serve(&mut self, mut stream: TcpStream, mut buf: BytesMut) -> End {
        let mut codec = V1Codec::new(self.magic);
        let offset = Duration::from_secs_f64(self.index as f64 / self.peers.max(1) as f64);
        // The next ping and how many remain, then the pings awaiting their pong.
        let mut next_ping: Option<(Instant, u32)> = None;
        let mut pending: Vec<(u64, Instant)> = Vec::new();
        let mut nonce = (self.index as u64) << 32;
        let mut read_at = Instant::now();
        loop {
            loop {
                let message = match codec.decode(&mut buf) {
                    Ok(Some(frame)) => frame.message,
                    Ok(None) => break,
                    Err(e) => return End::Lost(format!("framing: {e}")),
                };
                if let Err(e) = self
                    .on_message(&mut stream, message, read_at, &mut pending)
                    .await
                {
                    return End::Lost(e.kind().to_string());
                }
            }
            buf.reserve(READ_CHUNK);
            let wake =
                next_ping.map_or_else(|| Instant::now() + Duration::from_secs(3600), |p| p.0);
            tokio::select! {
                read = stream.read_buf(&mut buf) => match read {
                    Ok(0) => return End::Lost("closed by server".into()),
                    Ok(_) => read_at = Instant::now(),
                    Err(e) => return End::Lost(e.kind().to_string()),
                },
                changed = self.phase.changed() => {
                    if changed.is_err() {
                        return End::Told;
                    }
                    next_ping = match *self.phase.borrow_and_update() {
                        Phase::Close => return End::Told,
                        Phase::Ping { start, rounds } if rounds > 0 => Some((start + offset, rounds)),
                        Phase::Ping { .. } | Phase::Idle => None,
                    };
                }
                _ = tokio::time::sleep_until(wake), if next_ping.is_some() => {
                    nonce += 1;
                    pending.push((nonce, Instant::now()));
                    if let Err(e) = self.send(&mut stream, NetworkMessage::Ping(nonce)).await {
                        return End::Lost(e.kind().to_string());
                    }
                    next_ping = next_ping
                        .and_then(|(at, left)| (left > 1).then(|| (at + Duration::from_secs(1), left - 1)));
                }
            }
        }
    }

    /// Answers pings, times pongs against `pending`, reports block announcements.
    async fn on_message(
        &self,
        stream: &mut TcpStream,
        message: NetworkMessage,
        read_at: Instant,
        pending: &mut Vec<(u64, Instant)>,
    ) -> std::io::Result<()> {
        match message {
            NetworkMessage::Ping(n) => self.send(stream, NetworkMessage::Pong(n)).await?,
            NetworkMessage::Pong(n) => {
                if let Some(i) = pending.iter().position(|(nonce, _)| *nonce == n) {
                    let (_, sent) = pending.swap_remove(i);
                    let ms = read_at.saturating_duration_since(sent).as_secs_f64() * 1e3;
                    let _ = self.events.send(Event::Rtt(ms));
                }
            }
            NetworkMessage::Inv(items) => {
                for item in items {
                    if let Inventory::Block(hash) = item {
                        let _ = self.events.send(Event::Block(hash, read_at));
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    async fn send(&self, stream: &mut TcpStream, message: NetworkMessage) -> std::io::Result<()> {
        let frame = encode_frame(self.magic, &message).expect("small message");
        stream.write_all(&frame).await
    }
}

/// Starts a `serve` child; returns it and its listening address.
pub fn start_server() -> std::io::Result<(Helper, SocketAddr)> {
    let (helper, addr) = Helper::start_piped(&["serve".to_string()])?;
    let addr = addr.parse().map_err(std::io::Error::other)?;
    Ok((helper, addr))
}

/// Asks the server how many inbound peers it admitted until it says at least `expected` or
/// `within` passed; returns the last count.
pub fn wait_admitted(
    server: &mut Helper,
    expected: usize,
    within: Duration,
) -> std::io::Result<usize> {
    let deadline = std::time::Instant::now() + within;
    loop {
        let inbound = server.request("count")?["inbound"].as_u64().unwrap_or(0) as usize;
        if inbound >= expected || std::time::Instant::now() >= deadline {
            return Ok(inbound);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// CPU used by `pid` while `f` runs, as a percentage of one core over `f`'s wall time.
fn cpu_percent<T>(pid: u32, f: impl FnOnce() -> T) -> (T, Option<f64>) {
    let (before, t0) = (process::cpu_seconds(pid), std::time::Instant::now());
    let out = f();
    let used = process::cpu_seconds(pid).zip(before).map(|(a, b)| a - b);
    (out, used.map(|s| s / t0.elapsed().as_secs_f64() * 100.0))
}

/// One run's measurements.
#[derive(Debug, Default)]
struct Sample {
    rss_per_peer: f64,
    idle_cpu: f64,
    rtt_p50: f64,
    rtt_p99: f64,
    handshaked: f64,
    detail: Value,
}

/// Runs the scenario `runs` times; results: RSS per peer, idle CPU, ping RTT p50/p99,
/// handshaked peers.
pub fn run(args: &Args) -> std::io::Result<Vec<report::Result>> {
    process::raise_fd_limit();
    let rt = runtime()?;
    let mut samples = Vec::new();
    for _ in 0..args.runs.max(1) {
        samples.push(one(&rt, args)?);
    }
    let pick = |f: fn(&Sample) -> f64| samples.iter().map(f).collect::<Vec<f64>>();
    let details: Vec<Value> = samples.iter().map(|s| s.detail.clone()).collect();
    let extra = json!({ "peers": args.peers, "runs": details });
    let result = |case: &str, unit, verack, target, higher_is_better| report::Result {
        scenario: "many-peers",
        case: case.into(),
        unit,
        verack,
        baseline: None,
        target,
        higher_is_better,
        extra: extra.clone(),
    };
    Ok(vec![
        result(
            "handshaked peers",
            "peers",
            pick(|s| s.handshaked),
            Some(args.peers as f64),
            true,
        ),
        result(
            "RSS per idle peer",
            "bytes",
            pick(|s| s.rss_per_peer),
            Some(8192.0),
            false,
        ),
        result(
            "idle CPU",
            "% of one core",
            pick(|s| s.idle_cpu),
            Some(2.0),
            false,
        ),
        result("ping RTT p50", "ms", pick(|s| s.rtt_p50), None, false),
        result("ping RTT p99", "ms", pick(|s| s.rtt_p99), Some(10.0), false),
    ])
}

fn one(rt: &tokio::runtime::Runtime, args: &Args) -> std::io::Result<Sample> {
    let wall = std::time::Instant::now();
    let (mut server, addr) = start_server()?;
    let pid = server.pid();
    std::thread::sleep(Duration::from_millis(500));
    let rss_before = process::rss_bytes(pid).unwrap_or(0);
    let heap_before = server.request("count")?["heap_bytes"].as_i64().unwrap_or(0);
    let magic = Network::Regtest.magic();
    let overflows = process::listen_overflows();
    let mut fleet = Fleet::start(rt.handle(), addr, magic, args.peers, args.in_flight);
    let hs = rt.block_on(fleet.handshakes(CONNECT_BOUND));
    let overflows = process::listen_overflows()
        .zip(overflows)
        .map(|(a, b)| a - b);
    if hs.ok < args.peers {
        eprintln!(
            "many-peers: only {} of {} peers handshaked: {:?}",
            hs.ok, args.peers, hs.failures
        );
    }
    let admitted = wait_admitted(&mut server, hs.ok, Duration::from_secs(5))?;
    std::thread::sleep(SETTLE);
    let rss_after = process::rss_bytes(pid).unwrap_or(0);
    let heap_after = server.request("count")?["heap_bytes"].as_i64().unwrap_or(0);
    let (_, idle_cpu) = cpu_percent(pid, || {
        std::thread::sleep(Duration::from_secs_f64(args.idle_secs))
    });
    let start = Instant::now() + Duration::from_millis(100);
    fleet.set(Phase::Ping {
        start,
        rounds: args.ping_secs,
    });
    let until = start + Duration::from_secs(u64::from(args.ping_secs) + 1);
    let own = std::process::id();
    let ((rtts, client_cpu), ping_cpu) =
        cpu_percent(pid, || cpu_percent(own, || rt.block_on(fleet.rtts(until))));
    let admitted_after = server.request("count")?["inbound"].as_u64().unwrap_or(0);
    fleet.set(Phase::Close);
    let expected_pings = hs.ok as u64 * u64::from(args.ping_secs);
    let per_peer = rss_after.saturating_sub(rss_before) as f64 / hs.ok.max(1) as f64;
    let detail = json!({
        "handshaked": hs.ok,
        "handshake_failures": hs.failures,
        "connect_secs": hs.seconds,
        "listen_overflows_while_connecting": overflows,
        "admitted": admitted,
        "admitted_at_end": admitted_after,
        "lost": fleet.lost,
        "rss_before_bytes": rss_before,
        "rss_after_bytes": rss_after,
        "heap_per_peer_bytes": (heap_after - heap_before) as f64 / hs.ok.max(1) as f64,
        "pings_sent": expected_pings,
        "pongs_timed": rtts.len(),
        "server_cpu_during_pings_percent": ping_cpu,
        "client_cpu_during_pings_percent": client_cpu,
        "wall_secs": wall.elapsed().as_secs_f64(),
    });
    drop(fleet);
    drop(server);
    Ok(Sample {
        rss_per_peer: per_peer,
        idle_cpu: idle_cpu.unwrap_or(f64::NAN),
        rtt_p50: report::percentile(&rtts, 50.0),
        rtt_p99: report::percentile(&rtts, 99.0),
        handshaked: hs.ok as f64,
        detail,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::hashes::Hash;
    use tokio_util::sync::CancellationToken;
    use verack::peer::{Direction, IgnoreMessages, PeerHandle};
    use verack::server::{ConnectionKind, Server};

    #[test]
    fn fleet_handshakes_pings_and_receives_a_relayed_block() {
        let rt = runtime().unwrap();
        let _entered = rt.enter();
        let server = Server::new(
            crate::serve::config(64),
            |_: &PeerHandle, _: ConnectionKind| IgnoreMessages,
        );
        let cancel = CancellationToken::new();
        rt.block_on(server.start(cancel.clone())).unwrap();
        let addr = server.local_addrs()[0];
        let mut fleet = Fleet::start(rt.handle(), addr, Network::Regtest.magic(), 20, 8);
        let hs = rt.block_on(fleet.handshakes(Duration::from_secs(10)));
        assert_eq!(hs.ok, 20, "{:?}", hs.failures);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while server.count(Direction::Inbound) < 20 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let start = Instant::now();
        fleet.set(Phase::Ping { start, rounds: 1 });
        let rtts = rt.block_on(fleet.rtts(start + Duration::from_millis(1500)));
        assert_eq!(rtts.len(), 20, "one pong per peer");
        let hash = BlockHash::from_byte_array([7; 32]);
        assert_eq!(server.relay_inventory(&[Inventory::Block(hash)], None), 20);
        let arrivals = rt.block_on(fleet.blocks(hash, 20, Duration::from_secs(5)));
        assert_eq!(arrivals.len(), 20);
        assert!(fleet.lost.is_empty(), "{:?}", fleet.lost);
        cancel.cancel();
        rt.block_on(server.stopped()).unwrap();
    }
}
