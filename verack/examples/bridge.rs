//! Relays one peer connection to another node, every v1 frame unchanged, both ways.
//!
//! ```text
//! cargo run --release --example bridge -- --network regtest --listen 127.0.0.1:18555 \
//!     --connect 127.0.0.1:18444 [--log FILE]
//! ```
//!
//! The bridge accepts one connection on `--listen`, then dials `--connect` and forwards every
//! frame each side sends to the other as it arrived, byte for byte: the negotiation messages
//! too (`version`, `verack`, `wtxidrelay`, `sendaddrv2`, …), so the two nodes handshake with
//! each other and the bridge has no handshake of its own. Frames are cut with the library's v1
//! header rules ([`verack::wire::FrameHeader::parse`]: the network's magic, a well-formed
//! command, a payload of at most [`verack::wire::MAX_PAYLOAD_LEN`] bytes, checked from the 24
//! header bytes before any payload is buffered); payloads are not decoded or checked, so a
//! frame the receiver would drop (bad checksum, undecodable) is still delivered for it to
//! judge. A header that breaks those rules ends both connections, as it would end the
//! connection to either node.
//!
//! One line per frame goes to `--log` (or stderr): milliseconds since the start, direction
//! (`>` from the accepted peer to the dialled one, `<` back), command and bytes on the wire
//! (header included), e.g. `12 > version 126`. When either side closes, the other is closed
//! and a summary line is written; the exit status is 0 after a clean close, 1 after a framing
//! or I/O error.
//!
//! v1 only: the bridge reads frames, so it cannot relay BIP324 v2 (encrypted, keyed between the
//! two ends). An accepted connection whose first 4 bytes are not the network's magic (a v2
//! key) is closed before anything is dialled and the bridge accepts again (up to 3
//! connections); Bitcoin Core then re-dials over v1 by itself (its v1 fallback), or start it
//! with `-v2transport=0`. The outbound side is always v1.
//!
//! The relaying is [`Bridge`]; `main` only parses arguments, so tests can run the same code
//! in-process (`verack/tests/example_bridge.rs`).

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bitcoin::p2p::Magic;
use bitcoin::Network;
use bytes::BytesMut;
use clap::Parser;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use verack::wire::{DecodeError, FrameHeader, HEADER_LEN};

/// How long the dial to `--connect` may take: 10 s.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections accepted, at most, until one speaks v1: 3.
const MAX_ACCEPTS: u32 = 3;
/// How long an accepted connection has to send its first 4 bytes: 30 s.
const FIRST_BYTES_TIMEOUT: Duration = Duration::from_secs(30);
/// Bytes asked of the socket per read: 64 KiB.
const READ_CHUNK: usize = 64 * 1024;

/// Command-line arguments.
#[derive(Parser, Debug, Clone)]
#[command(about = "Relay one Bitcoin P2P connection to another node, frame by frame")]
pub struct Args {
    /// bitcoin (mainnet), testnet, testnet4, signet or regtest: the magic frames must carry.
    #[arg(long, default_value = "regtest")]
    pub network: Network,
    /// Where to accept the one peer, IP:PORT (port 0 picks a free one).
    #[arg(long)]
    pub listen: SocketAddr,
    /// The node to relay to, HOST:PORT.
    #[arg(long)]
    pub connect: String,
    /// Write the per-frame log here instead of stderr.
    #[arg(long)]
    pub log: Option<PathBuf>,
}

/// Which way a frame went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From the accepted peer to the dialled node (`>`).
    Forward,
    /// From the dialled node to the accepted peer (`<`).
    Back,
}

impl Direction {
    fn arrow(self) -> &'static str {
        match self {
            Direction::Forward => ">",
            Direction::Back => "<",
        }
    }
}

/// Frames and bytes relayed in one direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Frames relayed.
    pub frames: u64,
    /// Bytes relayed (headers included).
    pub bytes: u64,
}

/// What a finished relay did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// The accepted peer.
    pub accepted: SocketAddr,
    /// The dialled node.
    pub dialled: SocketAddr,
    /// Accepted peer to dialled node.
    pub forward: Counts,
    /// Dialled node to accepted peer.
    pub back: Counts,
    /// Why the relay ended: `None` for a clean close by either side, else the framing or
    /// I/O error.
    pub error: Option<String>,
}

/// Why the bridge could not relay at all.
#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    /// Binding `--listen` failed.
    #[error("listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The error.
        source: std::io::Error,
    },
    /// Accepting the peer failed.
    #[error("accept: {0}")]
    Accept(std::io::Error),
    /// Dialling `--connect` failed or timed out.
    #[error("connect to {target}: {reason}")]
    Connect {
        /// `--connect` as given.
        target: String,
        /// Why.
        reason: String,
    },
    /// The log file could not be opened.
    #[error("log file {path}: {source}")]
    Log {
        /// The path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

/// Where frame lines go.
type LogSink = Arc<Mutex<Box<dyn Write + Send>>>;

/// A bound bridge, ready to accept its one peer.
pub struct Bridge {
    listener: TcpListener,
    magic: Magic,
    connect: String,
    log: LogSink,
    start: Instant,
}

impl Bridge {
    /// Binds `args.listen` and opens the log (`args.log`, appended to, or stderr).
    ///
    /// # Errors
    /// [`BridgeError::Listen`] or [`BridgeError::Log`].
    pub async fn bind(args: &Args) -> Result<Bridge, BridgeError> {
        let log: Box<dyn Write + Send> = match &args.log {
            Some(path) => Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|source| BridgeError::Log {
                        path: path.clone(),
                        source,
                    })?,
            ),
            None => Box::new(std::io::stderr()),
        };
        let listener =
            TcpListener::bind(args.listen)
                .await
                .map_err(|source| BridgeError::Listen {
                    addr: args.listen,
                    source,
                })?;
        Ok(Bridge {
            listener,
            magic: args.network.magic(),
            connect: args.connect.clone(),
            log: Arc::new(Mutex::new(log)),
            start: Instant::now(),
        })
    }

    /// The address the bridge listens on (with the port chosen for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener")
    }

    /// Accepts connections until one starts with a v1 frame (the network's magic), up to
    /// [`MAX_ACCEPTS`]; returns it with the bytes read from it. A connection whose first 4
    /// bytes (read within [`FIRST_BYTES_TIMEOUT`]) are anything else, such as a BIP324 v2
    /// key, is closed: Core then re-dials over v1.
    async fn accept_v1(&self) -> Result<(TcpStream, SocketAddr, BytesMut), BridgeError> {
        let mut attempt = 1;
        loop {
            let (mut stream, from) = self.listener.accept().await.map_err(BridgeError::Accept)?;
            let mut first = [0u8; 4];
            let why = match tokio::time::timeout(FIRST_BYTES_TIMEOUT, stream.read_exact(&mut first))
                .await
            {
                Ok(Ok(_)) if first == self.magic.to_bytes() => {
                    return Ok((stream, from, BytesMut::from(&first[..])))
                }
                Ok(Ok(_)) => {
                    format!("starts with {first:02x?}, not the v1 magic (a BIP324 v2 key?)")
                }
                Ok(Err(e)) => format!("read: {e}"),
                Err(_) => format!("sent nothing within {FIRST_BYTES_TIMEOUT:?}"),
            };
            log_line(
                &self.log,
                format!(
                    "{} closed {from}: {why}; the bridge relays v1 only",
                    self.start.elapsed().as_millis()
                ),
            );
            if attempt == MAX_ACCEPTS {
                return Err(BridgeError::Accept(std::io::Error::other(format!(
                    "no v1 peer in {MAX_ACCEPTS} connections"
                ))));
            }
            attempt += 1;
        }
    }

    /// Accepts one peer, dials the target and relays until either side closes; then closes
    /// the other and returns what was relayed. The listener is closed once the peer is
    /// accepted.
    ///
    /// # Errors
    /// [`BridgeError::Accept`] or [`BridgeError::Connect`]; errors during the relay are in
    /// [`Summary::error`].
    pub async fn run(self) -> Result<Summary, BridgeError> {
        let (inbound, accepted, first) = self.accept_v1().await?;
        drop(self.listener);
        let outbound =
            match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(self.connect.as_str()))
                .await
            {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    return Err(BridgeError::Connect {
                        target: self.connect,
                        reason: e.to_string(),
                    })
                }
                Err(_) => {
                    return Err(BridgeError::Connect {
                        target: self.connect,
                        reason: format!("timed out after {CONNECT_TIMEOUT:?}"),
                    })
                }
            };
        let dialled = outbound.peer_addr().map_err(|e| BridgeError::Connect {
            target: self.connect.clone(),
            reason: e.to_string(),
        })?;
        let _ = inbound.set_nodelay(true);
        let _ = outbound.set_nodelay(true);
        let (in_rd, in_wr) = inbound.into_split();
        let (out_rd, out_wr) = outbound.into_split();
        let line = |l: String| log_line(&self.log, l);
        line(format!(
            "{} bridge {accepted} <-> {dialled}",
            self.start.elapsed().as_millis()
        ));
        let (mut forward, mut back) = (Counts::default(), Counts::default());
        // The first side to finish ends the relay; dropping the other pump closes its halves.
        let error = tokio::select! {
            r = pump(first, in_rd, out_wr, self.magic, Direction::Forward, &mut forward, &self.log, self.start) => r,
            r = pump(BytesMut::new(), out_rd, in_wr, self.magic, Direction::Back, &mut back, &self.log, self.start) => r,
        };
        let summary = Summary {
            accepted,
            dialled,
            forward,
            back,
            error,
        };
        line(format!(
            "{} closed: {} frames / {} bytes >, {} frames / {} bytes <{}",
            self.start.elapsed().as_millis(),
            summary.forward.frames,
            summary.forward.bytes,
            summary.back.frames,
            summary.back.bytes,
            summary
                .error
                .as_ref()
                .map_or(String::new(), |e| format!(" ({e})"))
        ));
        Ok(summary)
    }
}

/// Relays frames from `buf` (bytes already read) then `rd` to `wr`, counting them in `counts`, until `rd` ends (`None`: a
/// clean close, after which `wr` is shut down) or fails (the error).
#[allow(clippy::too_many_arguments)]
async fn pump(
    mut buf: BytesMut,
    mut rd: impl AsyncRead + Unpin,
    mut wr: impl AsyncWrite + Unpin,
    magic: Magic,
    dir: Direction,
    counts: &mut Counts,
    log: &LogSink,
    start: Instant,
) -> Option<String> {
    loop {
        // Cut every complete frame in the buffer; forward them in one write.
        let mut ready = 0;
        let mut lines = Vec::new();
        let mut bad = None;
        while let Some(head) = buf.get(ready..ready + HEADER_LEN) {
            let header = match FrameHeader::parse(head.try_into().expect("24 bytes"), magic) {
                Ok(h) => h,
                Err(e) => {
                    // The frames before it still go out.
                    bad = Some(framing_error(dir, &e));
                    break;
                }
            };
            let len = HEADER_LEN + header.payload_len;
            if buf.len() < ready + len {
                break;
            }
            ready += len;
            counts.frames += 1;
            counts.bytes += len as u64;
            lines.push(format!(
                "{} {} {} {len}",
                start.elapsed().as_millis(),
                dir.arrow(),
                header.command
            ));
        }
        if ready > 0 {
            let frames = buf.split_to(ready);
            if let Err(e) = wr.write_all(&frames).await {
                return Some(format!("write {}: {e}", dir.arrow()));
            }
            let mut sink = log.lock().expect("log lock");
            for l in lines {
                let _ = writeln!(sink, "{l}");
            }
            let _ = sink.flush();
        }
        if bad.is_some() {
            return bad;
        }
        buf.reserve(READ_CHUNK);
        match rd.read_buf(&mut buf).await {
            Ok(0) if buf.is_empty() => {
                let _ = wr.shutdown().await;
                return None;
            }
            Ok(0) => {
                return Some(format!(
                    "{} closed inside a frame ({} bytes buffered)",
                    dir.arrow(),
                    buf.len()
                ))
            }
            Ok(_) => {}
            Err(e) => return Some(format!("read {}: {e}", dir.arrow())),
        }
    }
}

fn framing_error(dir: Direction, e: &DecodeError) -> String {
    match e {
        DecodeError::WrongMagic { .. } if dir == Direction::Forward => {
            format!("> {e} (a BIP324 v2 attempt or another network; the bridge relays v1 only)")
        }
        _ => format!("{} {e}", dir.arrow()),
    }
}

fn log_line(log: &LogSink, line: String) {
    let mut sink = log.lock().expect("log lock");
    let _ = writeln!(sink, "{line}");
    let _ = sink.flush();
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let bridge = match Bridge::bind(&args).await {
        Ok(b) => b,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    eprintln!("listening on {}", bridge.local_addr());
    match bridge.run().await {
        Ok(summary) if summary.error.is_none() => ExitCode::SUCCESS,
        Ok(_) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}
