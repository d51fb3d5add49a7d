//! Listens, keeps 8 outbound full-relay peers from a fixed list, and prints peer events until
//! Ctrl-C; then prints the server's counters.
//!
//! The peer policy in use: outbound full-relay peers must offer Core's desirable services
//! (`NODE_NETWORK` or `NODE_NETWORK_LIMITED`, plus `NODE_WITNESS`; `--any-services` drops the
//! rule), and a version check refuses peers below `--min-version` in either direction. A
//! refused peer shows as `Refused { refusal: Policy(..) }` and takes no slot.
//!
//! `--proxy HOST:PORT` dials every outbound peer through a SOCKS5 proxy (Tor's is
//! `127.0.0.1:9050`) with a fresh random login per connection (Core's `-proxyrandomize`), so
//! Tor isolates each peer on its own circuit.
//!
//! A raw-frame hook ([`MessageHooks::frame_read`]) sees every frame read, before decoding
//! decides its fate: frames the peers dropped (bad checksum, a payload rust-bitcoin cannot
//! decode) are printed with their command and size, and counted at exit.
//!
//! ```text
//! cargo run --release --example server -- --network regtest --listen 127.0.0.1:18445 \
//!     --peer 127.0.0.1:18444 --peer 127.0.0.1:18446
//! ```

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bitcoin::Network;
use clap::Parser;
use tokio_util::sync::CancellationToken;
use verack::peer::{
    FrameOutcome, IgnoreMessages, MessageHooks, PeerConfig, PeerHandle, PeerId, RawFrame,
};
use verack::proxy::Socks5Dialer;
use verack::server::{
    default_p2p_port, ConnectionKind, FixedAddresses, PeerEvent, PeerPolicy, PeerTarget,
    PolicyContext, Server, ServerConfig, ServiceRule,
};

#[derive(Parser)]
#[command(about = "Run a verack server and print its peer events")]
struct Args {
    /// bitcoin (mainnet), testnet, testnet4, signet or regtest.
    #[arg(long, default_value = "regtest")]
    network: Network,
    /// Address to listen on (repeatable).
    #[arg(long)]
    listen: Vec<SocketAddr>,
    /// Outbound candidates (repeatable).
    #[arg(long)]
    peer: Vec<SocketAddr>,
    /// Persistent peers (repeatable), reconnected forever: IP, IP:PORT, [IPv6]:PORT, HOST or
    /// HOST:PORT (host names looked up at each connection; the network's port by default).
    #[arg(long)]
    addnode: Vec<String>,
    /// Refuse peers whose `version` is below this protocol version.
    #[arg(long, default_value_t = 70016)]
    min_version: u32,
    /// Take outbound peers whatever services they offer (not Core's desirable ones).
    #[arg(long)]
    any_services: bool,
    /// Dial outbound peers through this SOCKS5 proxy (e.g. Tor at 127.0.0.1:9050).
    #[arg(long)]
    proxy: Option<SocketAddr>,
}

/// Counts and prints frames that were read but dropped (the connection stays up, as Core).
#[derive(Default)]
struct DroppedFrames(AtomicU64);

impl MessageHooks for DroppedFrames {
    fn frame_read(&self, peer: PeerId, remote: SocketAddr, frame: &RawFrame<'_>) {
        if let FrameOutcome::Dropped(why) = frame.outcome {
            self.0.fetch_add(1, Ordering::Relaxed);
            println!(
                "dropped      #{peer} {remote} '{}' ({} bytes): {why}",
                frame.command,
                frame.payload.len()
            );
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let args = Args::parse();
    let dropped = Arc::new(DroppedFrames::default());
    let mut peer = PeerConfig::new(args.network);
    peer.hooks = Some(dropped.clone());
    let mut config = ServerConfig::new(peer);
    config.listen = args.listen;
    let port = default_p2p_port(args.network);
    for text in &args.addnode {
        let target =
            PeerTarget::parse(text, port).map_err(|e| format!("--addnode '{text}': {e}"))?;
        config.persistent.push(target);
    }
    config.target_full_relay = 8;
    config.target_block_relay = 0;
    let min_version = args.min_version;
    config.policy = PeerPolicy::with_check(move |ctx: &PolicyContext, version| {
        if version.version < min_version {
            return Err(format!(
                "protocol version {} below {min_version} ({:?} {})",
                version.version, ctx.kind, ctx.addr
            ));
        }
        Ok(())
    });
    if args.any_services {
        config.policy.outbound_services = ServiceRule::Any;
    }
    let mut server = Server::new(config, |_: &PeerHandle, _: ConnectionKind| IgnoreMessages)
        .with_address_source(FixedAddresses::new(args.peer));
    if let Some(proxy) = args.proxy {
        server = server.with_dialer(Socks5Dialer::new(proxy));
    }
    let mut events = server.subscribe();
    let shutdown = CancellationToken::new();
    server.start(shutdown.clone()).await?;
    for addr in server.local_addrs() {
        println!("listening on {addr}");
    }
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            event = events.recv() => match event {
                Ok(PeerEvent::Connected { id, addr, kind, negotiated }) => {
                    println!("connected    #{id} {addr} {kind:?} {} v{}", negotiated.user_agent, negotiated.protocol_version)
                }
                Ok(PeerEvent::Disconnected { id, addr, reason, connected_for, stats }) => {
                    println!(
                        "disconnected #{id} {addr} after {connected_for:?}: {reason} ({} bytes in, {} out)",
                        stats.bytes_received, stats.bytes_sent
                    )
                }
                Ok(other) => println!("{other:?}"),
                Err(e) => println!("events: {e}"),
            },
        }
    }
    shutdown.cancel();
    server.stopped().await?;
    println!("{:?}", server.stats());
    println!("{} frames dropped", dropped.0.load(Ordering::Relaxed));
    println!("stopped");
    Ok(())
}
