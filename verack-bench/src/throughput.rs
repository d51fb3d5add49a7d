//! Scenario 1, throughput: a one-way stream between two handshaked verack peers in separate
//! processes over loopback TCP, against the same frames written and read over a plain socket
//! with only the checksum verified (the limit of this protocol on this machine).
//!
//! Cases: 1 MB messages (payload MB/s, MB = 10^6 bytes) and 61-byte `inv` messages (one entry;
//! messages/s). The receiver (a child process) times from its first message to its last.
//!
//! For 1 MB messages verack is measured twice: sending `NetworkMessage`s (encoded and
//! checksummed per message), and sending pre-encoded payloads with `PeerHandle::send_raw`
//! whose checksum the caller already has (computed once, as the baseline's frames are encoded
//! once; what a relay forwarding a received v1 frame has), so the sender skips re-hashing.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Instant;

use bitcoin::hashes::Hash;
use bitcoin::p2p::message::{CommandString, NetworkMessage};
use bitcoin::p2p::message_blockdata::Inventory;
use bitcoin::{Network, Txid};
use serde_json::json;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use verack::peer::{IgnoreMessages, MessageHandler, Peer, PeerConfig, PeerHandle, Sent};
use verack::wire::{encode_frame, RawMessage};

use crate::process::{self, Helper};
use crate::report;

/// What is streamed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Case {
    /// 1,000,000-byte payloads (an unknown `bench` command; 1,000,024 bytes on the wire).
    Big,
    /// `inv` with one transaction entry: 37-byte payload, 61 bytes on the wire.
    Inv,
}

/// Who reads and writes the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    /// Two verack peers (handshake, framing, decoding, delivery to a handler).
    Verack,
    /// As `Verack`, but the sender queues pre-encoded payloads with `send_raw`, their v1
    /// checksum given (1 MB case only).
    VerackRaw,
    /// Plain sockets: pre-encoded frames written in bulk; the reader checks each checksum.
    Baseline,
    /// As `Baseline`, but the writer also computes each frame's checksum before writing it,
    /// as any v1 sender of new messages must (a second reference, not the target's baseline).
    BaselineSenderChecksum,
}

const BIG_PAYLOAD: usize = 1_000_000;

/// The `i`-th message of `case`.
pub fn message(case: Case, i: u64) -> NetworkMessage {
    match case {
        Case::Big => NetworkMessage::Unknown {
            command: CommandString::try_from_static("bench").expect("command"),
            payload: vec![0xab; BIG_PAYLOAD],
        },
        Case::Inv => {
            let mut id = [0u8; 32];
            id[..8].copy_from_slice(&i.to_le_bytes());
            NetworkMessage::Inv(vec![Inventory::Transaction(Txid::from_byte_array(id))])
        }
    }
}

fn peer_config() -> PeerConfig {
    let mut cfg = PeerConfig::new(Network::Regtest);
    cfg.send_queue_limit = 256 << 20;
    cfg
}

/// Runs both cases `runs` times, verack and baseline interleaved; `scale` multiplies the
/// message counts (1.0: 400 × 1 MB, 2,000,000 `inv`); `only` picks one case.
///
/// With `keep_freed_memory`, both processes tune glibc to reuse freed memory
/// ([`process::keep_freed_memory`]) and the case names say so.
pub fn run(
    runs: usize,
    scale: f64,
    only: Option<Case>,
    keep_freed_memory: bool,
) -> std::io::Result<Vec<report::Result>> {
    if keep_freed_memory {
        process::keep_freed_memory();
    }
    let mut results = Vec::new();
    for (case, base_count) in [(Case::Big, 400u64), (Case::Inv, 2_000_000)] {
        if only.is_some_and(|c| c != case) {
            continue;
        }
        let count = ((base_count as f64 * scale) as u64).max(10);
        let mut verack = Vec::new();
        let mut verack_raw = Vec::new();
        let mut baseline = Vec::new();
        let mut both_checksum = Vec::new();
        let mut cpu = Vec::new();
        for _ in 0..runs {
            for mode in [
                Mode::Verack,
                Mode::VerackRaw,
                Mode::Baseline,
                Mode::BaselineSenderChecksum,
            ] {
                if mode == Mode::VerackRaw && case != Case::Big {
                    continue;
                }
                let (secs, load) = one(case, mode, count, keep_freed_memory)?;
                cpu.push(json!({ "mode": name(mode), "cores_used": load }));
                let per_second = (count - 1) as f64 / secs;
                let value = match case {
                    Case::Big => per_second * BIG_PAYLOAD as f64 / 1e6,
                    Case::Inv => per_second,
                };
                match mode {
                    Mode::Verack => verack.push(value),
                    Mode::VerackRaw => verack_raw.push(value),
                    Mode::Baseline => baseline.push(value),
                    Mode::BaselineSenderChecksum => both_checksum.push(value),
                }
            }
        }
        let (name, unit, target) = match case {
            // The target is a ratio: 80% of the baseline measured in this run.
            Case::Big => (
                "1 MB messages",
                "MB/s",
                Some(0.8 * report::median(&baseline)),
            ),
            Case::Inv => ("61-byte inv", "messages/s", Some(1_000_000.0)),
        };
        let name = if keep_freed_memory {
            format!("{name}, malloc keeps freed memory")
        } else {
            format!("{name}, glibc malloc defaults")
        };
        let verack_median = report::median(&verack);
        if !verack_raw.is_empty() {
            let raw_median = report::median(&verack_raw);
            results.push(report::Result {
                scenario: "throughput",
                case: name.replace("1 MB messages", "1 MB messages, pre-encoded (send_raw)"),
                unit,
                verack: verack_raw,
                baseline: Some(("plain TCP, checksum only".into(), baseline.clone())),
                target,
                higher_is_better: true,
                extra: json!({
                    "messages_per_run": count,
                    "sender": "PeerHandle::send_raw with the v1 checksum given (computed once before connecting)",
                    "ratio_to_both_ends_checksum": raw_median / report::median(&both_checksum),
                    "ratio_to_networkmessage_send": raw_median / verack_median,
                }),
            });
        }
        results.push(report::Result {
            scenario: "throughput",
            case: name,
            unit,
            verack,
            baseline: Some(("plain TCP, checksum only".into(), baseline)),
            target,
            higher_is_better: true,
            extra: json!({
                "messages_per_run": count,
                "plain_tcp_both_ends_checksum": report::median(&both_checksum),
                "plain_tcp_both_ends_checksum_samples": both_checksum,
                "ratio_to_both_ends_checksum": verack_median / report::median(&both_checksum),
                "cores_used_note": "CPU seconds / wall seconds of the sending and receiving processes over a run (2 = both cores busy)",
                "cores_used": cpu,
            }),
        });
    }
    Ok(results)
}

/// One timed stream: starts the receiving child, sends `count` messages, returns the seconds
/// the receiver measured from its first to its last message, and the cores each process kept
/// busy meanwhile (`{"sender": cpu/wall, "receiver": cpu/wall}`).
fn one(
    case: Case,
    mode: Mode,
    count: u64,
    keep_freed_memory: bool,
) -> std::io::Result<(f64, serde_json::Value)> {
    let mut args = vec![
        "recv".to_string(),
        format!("--mode={}", name(mode)),
        format!("--case={}", if case == Case::Big { "big" } else { "inv" }),
        format!("--count={count}"),
    ];
    if keep_freed_memory {
        args.push("--keep-freed-memory".into());
    }
    let (mut helper, addr) = Helper::start(&args)?;
    let addr: SocketAddr = addr.parse().map_err(std::io::Error::other)?;
    let messages: Vec<NetworkMessage> = match mode {
        Mode::Verack => (0..count).map(|i| message(case, i)).collect(),
        Mode::VerackRaw | Mode::Baseline | Mode::BaselineSenderChecksum => Vec::new(),
    };
    // Pre-encoded payloads, as a relay holds them: the bytes and their checksum.
    let raw: Vec<RawMessage> = match mode {
        Mode::VerackRaw => {
            let payload = bytes::Bytes::from(vec![0xabu8; BIG_PAYLOAD]);
            let sum = RawMessage::checksum_of(&payload);
            let command = CommandString::try_from_static("bench").expect("command");
            (0..count)
                .map(|_| RawMessage::with_checksum(command.clone(), payload.clone(), sum))
                .collect()
        }
        _ => Vec::new(),
    };
    let me = std::process::id();
    let (cpu_before, started) = (process::cpu_seconds(me).unwrap_or(0.0), Instant::now());
    match mode {
        Mode::Baseline => send_plain(addr, case, count, false)?,
        Mode::BaselineSenderChecksum => send_plain(addr, case, count, true)?,
        Mode::Verack => runtime("sender").block_on(send_verack(addr, case, messages))?,
        Mode::VerackRaw => runtime("sender").block_on(send_verack_raw(addr, raw))?,
    }
    let result = helper.next_json()?;
    let sender =
        (process::cpu_seconds(me).unwrap_or(0.0) - cpu_before) / started.elapsed().as_secs_f64();
    let seconds = result["seconds"]
        .as_f64()
        .ok_or_else(|| std::io::Error::other(format!("receiver said {result}")))?;
    let receiver = result["cpu_seconds"].as_f64().unwrap_or(0.0)
        / result["wall_seconds"].as_f64().unwrap_or(1.0);
    Ok((seconds, json!({ "sender": sender, "receiver": receiver })))
}

fn name(mode: Mode) -> &'static str {
    match mode {
        Mode::Verack => "verack",
        Mode::VerackRaw => "verack-raw",
        Mode::Baseline => "baseline",
        Mode::BaselineSenderChecksum => "baseline-sender-checksum",
    }
}

fn runtime(name: &str) -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name(name)
        .enable_all()
        .build()
        .expect("runtime")
}

/// Writes `count` copies of the case's frame in ~1 MB writes; with `checksum_each`, every
/// frame's checksum is computed (and stored in its header) before it is written.
fn send_plain(
    addr: SocketAddr,
    case: Case,
    count: u64,
    checksum_each: bool,
) -> std::io::Result<()> {
    let magic = Network::Regtest.magic();
    let frame = encode_frame(magic, &message(case, 0)).map_err(std::io::Error::other)?;
    // About 1 MB of frames per write for small messages.
    let per_write = (1_000_000 / frame.len()).max(1) as u64;
    let mut chunk = Vec::with_capacity(per_write as usize * frame.len());
    for _ in 0..per_write {
        chunk.extend_from_slice(&frame);
    }
    let mut stream = TcpStream::connect(addr)?;
    stream.set_nodelay(true)?;
    let mut sent = 0;
    while sent < count {
        let n = per_write.min(count - sent);
        let bytes = &mut chunk[..n as usize * frame.len()];
        if checksum_each {
            for f in bytes.chunks_mut(frame.len()) {
                let sum = checksum(&f[24..]);
                f[20..24].copy_from_slice(&sum);
            }
        }
        stream.write_all(bytes)?;
        sent += n;
    }
    Ok(())
}

/// Sends `messages`, built before connecting (as the plain sender's frames are), so the time
/// is verack's: encoding, queueing, writing.
async fn send_verack(
    addr: SocketAddr,
    case: Case,
    messages: Vec<NetworkMessage>,
) -> std::io::Result<()> {
    let count = messages.len() as u64;
    let stream = tokio::net::TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let cancel = CancellationToken::new();
    let peer = Peer::outbound(stream, addr, peer_config())
        .handshake(&cancel, |_: &_| Ok::<(), std::io::Error>(()))
        .await
        .map_err(std::io::Error::other)?;
    let handle = peer.handle();
    let running = tokio::spawn(peer.run(IgnoreMessages, cancel.clone()));
    // Keep at most two windows queued: wait for the window before last to be written.
    let window = match case {
        Case::Big => 8,
        Case::Inv => 20_000,
    };
    let mut previous: Option<tokio::task::JoinHandle<_>> = None;
    let mut messages = messages.into_iter();
    let mut sent = 0;
    while sent < count {
        let end = (sent + window).min(count);
        // All but the last of the window: 1 MB messages one by one (as blocks would be sent),
        // `inv`s with `send_all` in groups of 1000 (one buffer, one queue operation each).
        let mut rest: Vec<NetworkMessage> = messages.by_ref().take((end - sent) as usize).collect();
        let last = rest.pop().expect("window of at least one");
        match case {
            Case::Big => {
                for msg in rest {
                    handle.send(msg).map_err(std::io::Error::other)?;
                }
            }
            Case::Inv => {
                for group in rest.chunks(1000) {
                    handle.send_all(group).map_err(std::io::Error::other)?;
                }
            }
        }
        let h = handle.clone();
        let written = tokio::spawn(async move { h.send_and_wait(last).await });
        sent = end;
        if let Some(p) = previous.replace(written) {
            p.await?.map_err(std::io::Error::other)?;
        }
    }
    if let Some(p) = previous {
        p.await?.map_err(std::io::Error::other)?;
    }
    // The receiver exits after the last message; our side then sees the close.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(30), handle.closed()).await;
    cancel.cancel();
    let _ = running.await;
    Ok(())
}

/// As [`send_verack`] for 1 MB messages, through `send_raw` (windows of 8, the last of each
/// with a `Sent` to wait on).
async fn send_verack_raw(addr: SocketAddr, messages: Vec<RawMessage>) -> std::io::Result<()> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let cancel = CancellationToken::new();
    let peer = Peer::outbound(stream, addr, peer_config())
        .handshake(&cancel, |_: &_| Ok::<(), std::io::Error>(()))
        .await
        .map_err(std::io::Error::other)?;
    let handle = peer.handle();
    let running = tokio::spawn(peer.run(IgnoreMessages, cancel.clone()));
    let mut previous: Option<Sent> = None;
    for window in messages.chunks(8) {
        let (last, rest) = window.split_last().expect("non-empty window");
        for msg in rest {
            handle.send_raw(msg).map_err(std::io::Error::other)?;
        }
        let written = handle
            .send_raw_notify(last)
            .map_err(std::io::Error::other)?;
        if let Some(p) = previous.replace(written) {
            p.await.map_err(std::io::Error::other)?;
        }
    }
    if let Some(p) = previous {
        p.await.map_err(std::io::Error::other)?;
    }
    let _ = tokio::time::timeout(std::time::Duration::from_secs(30), handle.closed()).await;
    cancel.cancel();
    let _ = running.await;
    Ok(())
}

/// Child role: accepts one connection, receives `count` messages, prints
/// `{"seconds": first-to-last}`.
pub fn receive(mode: Mode, case: Case, count: u64) -> std::io::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    println!("READY {}", listener.local_addr()?);
    let me = std::process::id();
    let (cpu_before, started) = (process::cpu_seconds(me).unwrap_or(0.0), Instant::now());
    let seconds = match mode {
        Mode::Baseline | Mode::BaselineSenderChecksum => receive_plain(listener, count)?,
        Mode::Verack | Mode::VerackRaw => {
            runtime("receiver").block_on(receive_verack(listener, case, count))?
        }
    };
    let cpu_seconds = process::cpu_seconds(me).unwrap_or(0.0) - cpu_before;
    let wall_seconds = started.elapsed().as_secs_f64();
    println!(
        "{}",
        json!({ "seconds": seconds, "cpu_seconds": cpu_seconds, "wall_seconds": wall_seconds })
    );
    Ok(())
}

fn receive_plain(listener: TcpListener, count: u64) -> std::io::Result<f64> {
    let (mut stream, _) = listener.accept()?;
    let mut buf = vec![0u8; 8 << 20];
    let (mut start, mut end) = (0usize, 0usize);
    let mut seen = 0u64;
    let mut first = None;
    loop {
        // Parse every complete frame in the buffer, checking its checksum.
        while end - start >= 24 {
            let header = &buf[start..start + 24];
            let len = u32::from_le_bytes(header[16..20].try_into().expect("4")) as usize;
            if end - start < 24 + len {
                break;
            }
            let payload = &buf[start + 24..start + 24 + len];
            if checksum(payload) != header[20..24] {
                return Err(std::io::Error::other("bad checksum"));
            }
            first.get_or_insert_with(Instant::now);
            start += 24 + len;
            seen += 1;
            if seen == count {
                return Ok(first.expect("set").elapsed().as_secs_f64());
            }
        }
        if start > 0 && buf.len() - end < (1 << 20) + 64 {
            buf.copy_within(start..end, 0);
            end -= start;
            start = 0;
        }
        let n = stream.read(&mut buf[end..])?;
        if n == 0 {
            return Err(std::io::Error::other(format!("closed after {seen} frames")));
        }
        end += n;
    }
}

struct Count {
    seen: u64,
    count: u64,
    first: Option<Instant>,
    done: Arc<Notify>,
    seconds: Arc<std::sync::Mutex<f64>>,
}

impl MessageHandler for Count {
    async fn on_message(&mut self, _peer: &PeerHandle, message: NetworkMessage) {
        if !matches!(
            message,
            NetworkMessage::Unknown { .. } | NetworkMessage::Inv(_)
        ) {
            return;
        }
        self.first.get_or_insert_with(Instant::now);
        self.seen += 1;
        if self.seen == self.count {
            *self.seconds.lock().expect("lock") = self.first.expect("set").elapsed().as_secs_f64();
            self.done.notify_one();
        }
    }
}

async fn receive_verack(listener: TcpListener, _case: Case, count: u64) -> std::io::Result<f64> {
    listener.set_nonblocking(true)?;
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let (stream, from) = listener.accept().await?;
    stream.set_nodelay(true)?;
    let cancel = CancellationToken::new();
    let peer = Peer::inbound(stream, from, peer_config())
        .handshake(&cancel, |_: &_| Ok::<(), std::io::Error>(()))
        .await
        .map_err(std::io::Error::other)?;
    let done = Arc::new(Notify::new());
    let seconds = Arc::new(std::sync::Mutex::new(0.0));
    let running = tokio::spawn(peer.run(
        Count {
            seen: 0,
            count,
            first: None,
            done: done.clone(),
            seconds: seconds.clone(),
        },
        cancel.clone(),
    ));
    done.notified().await;
    cancel.cancel();
    let _ = running.await;
    let s = *seconds.lock().expect("lock");
    Ok(s)
}

/// The v1 checksum with the fastest SHA-256 available here, the one verack uses (RustCrypto's
/// `sha2`, SHA-NI), so the baselines are this machine's limit and not a slower library's.
fn checksum(payload: &[u8]) -> [u8; 4] {
    use sha2::{Digest, Sha256};
    let twice = Sha256::digest(Sha256::digest(payload));
    [twice[0], twice[1], twice[2], twice[3]]
}
