//! `nakamoto-sync`: time a block-header sync from exactly one peer with the independent
//! [nakamoto](https://crates.io/crates/nakamoto-client) light client.
//!
//! ```text
//! nakamoto-sync --connect HOST:PORT --height N [--network regtest] [--timeout-secs S]
//!               [--force-node-network]
//! ```
//!
//! Starts a nakamoto client on a fresh temporary data dir, connected only to `--connect`
//! (no DNS seeds, no address discovery, no listener), and waits until its header chain
//! tip reaches height `N`. Prints exactly one JSON line on stdout:
//!
//! ```text
//! {"client":"nakamoto","version":"0.4.0","height":200,"seconds":0.31,"seconds_after_connect":0.05,...}
//! ```
//!
//! and exits 0; on timeout (or if the client dies) prints `{"client":"nakamoto",...,"error":"..."}`
//! and exits 1. Bad arguments exit 2. Logging goes to stderr only: set `NAKAMOTO_SYNC_LOG` to
//! `error|warn|info|debug|trace` to see nakamoto's own log (default: off).
//!
//! `--force-node-network` (off by default) puts a loopback relay in front of the peer that
//! sets `NODE_NETWORK` in the peer's `version`; nakamoto will not sync headers from a peer
//! without that bit (see `relay.rs`). The JSON then has `"force_node_network":true`.
//!
//! Timing: `seconds` runs from just before the client is created (data dir already made) to
//! the moment the client reports the header at height `N` connected to its chain;
//! `seconds_after_connect` runs from the peer handshake completing (nakamoto's
//! `PeerNegotiated` event, i.e. our side received `verack`) to the same moment.

use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::str::FromStr;
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use std::{env, fs, thread};

mod relay;

use nakamoto_client::{chan, Client, Config, Event, Limits, Network};

/// The nakamoto-client version this binary was built against (read from Cargo.lock).
const VERSION: &str = env!("NAKAMOTO_CLIENT_VERSION");
const USAGE: &str = "usage: nakamoto-sync --connect HOST:PORT --height N [--network regtest] \
                     [--timeout-secs S] [--force-node-network]";

type Reactor = nakamoto_net_poll::Reactor<TcpStream>;

struct Args {
    connect: SocketAddr,
    height: u64,
    network: Network,
    timeout: Duration,
    force_node_network: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut connect = None;
    let mut height = None;
    let mut network = Network::Regtest;
    let mut timeout = Duration::from_secs(120);
    let mut force_node_network = false;
    let mut it = env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "-h" || flag == "--help" {
            return Err(String::new());
        }
        // Accept both `--flag value` and `--flag=value`.
        let (name, inline) = match flag.split_once('=') {
            Some((n, v)) => (n.to_string(), Some(v.to_string())),
            None => (flag.clone(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| it.next())
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match name.as_str() {
            "--connect" => {
                let v = value()?;
                let addr = v
                    .to_socket_addrs()
                    .map_err(|e| format!("--connect {v}: {e}"))?
                    .next()
                    .ok_or_else(|| format!("--connect {v}: no address"))?;
                connect = Some(addr);
            }
            "--height" => {
                let v = value()?;
                height = Some(v.parse::<u64>().map_err(|e| format!("--height {v}: {e}"))?);
            }
            "--network" => {
                let v = value()?;
                network = Network::from_str(&v)?;
            }
            "--timeout-secs" => {
                let v = value()?;
                let s = v
                    .parse::<f64>()
                    .map_err(|e| format!("--timeout-secs {v}: {e}"))?;
                if !(s.is_finite() && s > 0.0) {
                    return Err(format!("--timeout-secs {v}: must be > 0"));
                }
                timeout = Duration::from_secs_f64(s);
            }
            "--force-node-network" if inline.is_none() => force_node_network = true,
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(Args {
        connect: connect.ok_or("--connect is required")?,
        height: height.ok_or("--height is required")?,
        network,
        timeout,
        force_node_network,
    })
}

/// Minimal stderr logger for nakamoto's `log` output (enabled by `NAKAMOTO_SYNC_LOG`).
struct StderrLogger {
    start: Instant,
}

impl log::Log for StderrLogger {
    fn enabled(&self, m: &log::Metadata) -> bool {
        m.level() <= log::max_level()
    }
    fn log(&self, r: &log::Record) {
        if self.enabled(r.metadata()) {
            eprintln!(
                "[{:8.3}] {:5} {}: {}",
                self.start.elapsed().as_secs_f64(),
                r.level(),
                r.target(),
                r.args()
            );
        }
    }
    fn flush(&self) {}
}

fn init_logging(start: Instant) {
    let level = match env::var("NAKAMOTO_SYNC_LOG").ok().as_deref() {
        Some("error") => log::LevelFilter::Error,
        Some("warn") => log::LevelFilter::Warn,
        Some("info") => log::LevelFilter::Info,
        Some("debug") => log::LevelFilter::Debug,
        Some("trace") => log::LevelFilter::Trace,
        _ => return,
    };
    if log::set_boxed_logger(Box::new(StderrLogger { start })).is_ok() {
        log::set_max_level(level);
    }
}

/// Quote a string as a JSON string literal.
fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A fresh, private data dir under the system temp dir; removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> std::io::Result<Self> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let path = env::temp_dir().join(format!("nakamoto-sync-{}-{}", std::process::id(), nanos));
        fs::create_dir(&path)?; // fails if it somehow exists: never reuse state
        Ok(TempDir(path))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// What we learned about the peer from its handshake.
struct PeerInfo {
    at: Instant,
    user_agent: String,
    version: u32,
    services: u64,
    height: u64,
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("nakamoto-sync: {e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let t0 = Instant::now();
    init_logging(t0);

    let dir = match TempDir::new() {
        Ok(d) => d,
        Err(e) => return fail(&args, t0, None, 0, &format!("temp dir: {e}")),
    };

    let target = if args.force_node_network {
        match relay::start(args.connect) {
            Ok(a) => a,
            Err(e) => return fail(&args, t0, None, 0, &format!("relay: {e}")),
        }
    } else {
        args.connect
    };
    let config = Config {
        network: args.network,
        // Only this peer: a non-empty `connect` list makes nakamoto skip DNS seeding and
        // turns off its address-book-driven outbound connection maintenance.
        connect: vec![target],
        // No listener at all (the default is 0.0.0.0:0).
        listen: vec![],
        root: dir.0.clone(),
        limits: Limits {
            max_outbound_peers: 1,
            max_inbound_peers: 0,
            ..Limits::default()
        },
        ..Config::default()
    };

    let t_start = Instant::now();
    let client = match Client::<Reactor>::new() {
        Ok(c) => c,
        Err(e) => return fail(&args, t_start, None, 0, &format!("client: {e}")),
    };
    let handle = client.handle();
    // Subscribe before the client runs, so no event is missed.
    let events = nakamoto_client::traits::Handle::events(&handle);
    let (done_tx, done_rx) = mpsc::channel::<String>();
    let runner = thread::Builder::new()
        .name("nakamoto".into())
        .spawn(move || {
            let r = client.run(config);
            let _ = done_tx.send(match r {
                Ok(()) => "client stopped".to_string(),
                Err(e) => format!("client error: {e}"),
            });
        })
        .expect("spawn client thread");

    let deadline = t_start + args.timeout;
    let mut peer: Option<PeerInfo> = None;
    let mut tip: u64 = 0;
    let mut outcome: Result<Instant, String> = Err("timeout".into());

    if args.height == 0 {
        outcome = Ok(Instant::now());
    }
    while outcome.is_err() {
        let now = Instant::now();
        if now >= deadline {
            outcome = Err(format!(
                "timeout after {:.1}s at height {tip} (handshake {})",
                args.timeout.as_secs_f64(),
                if peer.is_some() { "done" } else { "not done" }
            ));
            break;
        }
        if let Ok(msg) = done_rx.try_recv() {
            outcome = Err(msg);
            break;
        }
        let wait = (deadline - now).min(Duration::from_millis(200));
        match events.recv_timeout(wait) {
            Ok(Event::PeerNegotiated {
                addr,
                services,
                height,
                user_agent,
                version,
                ..
            }) => {
                let at = Instant::now();
                eprintln!(
                    "nakamoto-sync: [{:.3}s] handshake with {addr} done: {user_agent} v{version} \
                     services={:#x} height={height}",
                    (at - t_start).as_secs_f64(),
                    services.to_u64()
                );
                if peer.is_none() {
                    peer = Some(PeerInfo {
                        at,
                        user_agent,
                        version,
                        services: services.to_u64(),
                        height,
                    });
                }
            }
            Ok(Event::BlockConnected { height, .. }) => {
                tip = tip.max(height);
                if tip >= args.height {
                    outcome = Ok(Instant::now());
                }
            }
            Ok(Event::PeerConnected { addr, link }) => {
                eprintln!(
                    "nakamoto-sync: [{:.3}s] connection to {addr} opened ({link:?})",
                    t_start.elapsed().as_secs_f64()
                );
            }
            Ok(Event::PeerDisconnected { addr, reason }) => {
                eprintln!(
                    "nakamoto-sync: [{:.3}s] peer {addr} disconnected: {reason}",
                    t_start.elapsed().as_secs_f64()
                );
            }
            Ok(Event::PeerConnectionFailed { addr, error }) => {
                eprintln!(
                    "nakamoto-sync: [{:.3}s] connection to {addr} failed: {error}",
                    t_start.elapsed().as_secs_f64()
                );
            }
            Ok(_) => {}
            Err(chan::RecvTimeoutError::Timeout) => {}
            Err(chan::RecvTimeoutError::Disconnected) => {
                outcome = Err(done_rx
                    .recv_timeout(Duration::from_secs(1))
                    .unwrap_or_else(|_| "client event channel closed".into()));
            }
        }
    }

    // Stop the client (bounded wait), then report.
    let _ = nakamoto_client::traits::Handle::shutdown(handle);
    let _ = done_rx.recv_timeout(Duration::from_secs(5));
    let code = match outcome {
        Ok(t_done) => {
            let mut line = format!(
                "{{\"client\":\"nakamoto\",\"version\":{},\"peer\":{},\"height\":{},\"tip\":{},\"seconds\":{:.6}",
                json_str(VERSION),
                json_str(&args.connect.to_string()),
                args.height,
                tip,
                (t_done - t_start).as_secs_f64()
            );
            match &peer {
                Some(p) => line.push_str(&format!(
                    ",\"seconds_to_handshake\":{:.6},\"seconds_after_connect\":{:.6},\"peer_user_agent\":{},\"peer_version\":{},\"peer_services\":{},\"peer_start_height\":{}",
                    (p.at - t_start).as_secs_f64(),
                    t_done.saturating_duration_since(p.at).as_secs_f64(),
                    json_str(&p.user_agent),
                    p.version,
                    p.services,
                    p.height
                )),
                None => line.push_str(",\"seconds_after_connect\":null"),
            }
            if args.force_node_network {
                line.push_str(",\"force_node_network\":true");
            }
            line.push('}');
            println!("{line}");
            ExitCode::SUCCESS
        }
        Err(e) => fail(&args, t_start, peer.as_ref(), tip, &e),
    };
    drop(dir);
    // The client thread is normally gone by now; don't wait for it if it is not.
    if runner.is_finished() {
        let _ = runner.join();
    }
    code
}

fn fail(args: &Args, t_start: Instant, peer: Option<&PeerInfo>, tip: u64, err: &str) -> ExitCode {
    println!(
        "{{\"client\":\"nakamoto\",\"version\":{},\"peer\":{},\"height\":{},\"target_height\":{},\"seconds\":{:.6},\"handshake\":{},\"force_node_network\":{},\"error\":{}}}",
        json_str(VERSION),
        json_str(&args.connect.to_string()),
        tip,
        args.height,
        t_start.elapsed().as_secs_f64(),
        peer.is_some(),
        args.force_node_network,
        json_str(err)
    );
    ExitCode::FAILURE
}
