//! Connects to one peer, handshakes, measures one ping round trip and prints what it learned.
//!
//! ```text
//! cargo run --release --example handshake -- --network regtest 127.0.0.1:18444
//! ```
//!
//! Exits 0 on success; on failure prints the typed error and exits 1 (connect or handshake)
//! or 2 (no pong).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use bitcoin::p2p::ServiceFlags;
use bitcoin::Network;
use clap::Parser;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use verack::peer::{BoxError, IgnoreMessages, Peer, PeerConfig};

#[derive(Parser)]
#[command(about = "Handshake with one Bitcoin peer and print its version details")]
struct Args {
    /// bitcoin (mainnet), testnet, testnet4, signet or regtest.
    #[arg(long, default_value = "bitcoin")]
    network: Network,
    /// Services to advertise, as a number (e.g. 9 for NETWORK|WITNESS).
    #[arg(long, default_value_t = 0)]
    services: u64,
    /// Seconds to wait for the connection, the handshake and the pong.
    #[arg(long, default_value_t = 30)]
    timeout: u64,
    /// The peer, HOST:PORT.
    peer: SocketAddr,
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let args = Args::parse();
    let limit = Duration::from_secs(args.timeout);
    let stream = match tokio::time::timeout(limit, TcpStream::connect(args.peer)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return fail(1, format!("connect to {}: {e}", args.peer)),
        Err(_) => {
            return fail(
                1,
                format!("connect to {}: timed out after {limit:?}", args.peer),
            )
        }
    };
    let mut config = PeerConfig::new(args.network);
    config.services = ServiceFlags::from(args.services);
    config.handshake_timeout = limit;
    let cancel = CancellationToken::new();
    let peer = match Peer::outbound(stream, args.peer, config)
        .handshake(&cancel, |_| Ok::<(), BoxError>(()))
        .await
    {
        Ok(peer) => peer,
        Err(e) => return fail(1, format!("handshake with {}: {e} ({e:?})", args.peer)),
    };
    let handle = peer.handle();
    let running = tokio::spawn(peer.run(IgnoreMessages, cancel.clone()));
    // The peer pings as soon as it runs (when the remote speaks BIP31).
    let rtt = tokio::time::timeout(limit, async {
        loop {
            if let Some(rtt) = handle.stats().last_ping {
                return rtt;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    let n = handle.negotiated();
    println!("peer:             {}", args.peer);
    println!("user agent:       {}", n.user_agent);
    println!(
        "protocol version: {} (negotiated {})",
        n.remote_version, n.protocol_version
    );
    println!("services:         {}", n.services);
    println!("start height:     {}", n.start_height);
    println!("time offset:      {} s", n.time_offset);
    let f = &n.features;
    let mut before_verack = Vec::new();
    for (sent, name) in [
        (f.wtxid_relay, "wtxidrelay"),
        (f.addr_v2, "sendaddrv2"),
        (f.send_headers, "sendheaders"),
        (f.compact_blocks.is_some(), "sendcmpct"),
    ] {
        if sent {
            before_verack.push(name.to_string());
        }
    }
    if let Some(r) = f.tx_reconciliation {
        before_verack.push(format!(
            "sendtxrcncl(version {}, salt {:#x})",
            r.version, r.salt
        ));
    }
    for feature in &f.features {
        before_verack.push(format!(
            "feature({}, {} bytes)",
            String::from_utf8_lossy(&feature.id),
            feature.data.len()
        ));
    }
    println!("before verack:    {}", before_verack.join(", "));
    let code = match rtt {
        Ok(rtt) => {
            println!("ping round trip:  {:.3} ms", rtt.as_secs_f64() * 1000.0);
            ExitCode::SUCCESS
        }
        Err(_) => fail(2, format!("no pong within {limit:?}")),
    };
    handle.disconnect();
    let _ = running.await;
    code
}

fn fail(code: u8, message: String) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(code)
}
