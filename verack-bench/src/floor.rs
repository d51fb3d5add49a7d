//! Internal role `floor`: the least a tokio server can do per v1 handshake, as a floor for
//! the `handshake` scenario (`--floor`).
//!
//! On a two-worker runtime like verack's, with the same listen backlog (4096): accept, set
//! `TCP_NODELAY`, read frames until a `version` (headers checked for magic and size, the
//! payload not even checksummed), answer with `version`, `wtxidrelay`, `sendaddrv2` and
//! `verack` encoded once at start (the bytes verack sends, in one write, as verack does), then
//! read until the remote closes. No admission, no events, no timeouts, no per-peer state: what
//! is left is the kernel's TCP work and tokio's task and I/O-driver costs. A node that does its
//! job cannot be faster on the same machine with the same client, so the floor's rate bounds
//! any tokio node's, and its ratio to Bitcoin Core's bounds the ratio verack can reach.
//!
//! It prints `READY <addr>` and runs until its stdin closes.

use std::net::SocketAddr;

use bitcoin::p2p::address::Address;
use bitcoin::p2p::message::NetworkMessage;
use bitcoin::p2p::message_network::VersionMessage;
use bitcoin::p2p::{Magic, ServiceFlags};
use bitcoin::Network;
use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use verack::wire::encode_frame;

use crate::handshake::{next_frame, parse_network, READ_CHUNK};
use crate::process;

/// The listen backlog, as verack's listener (Core's SOMAXCONN).
const BACKLOG: u32 = 4096;

/// Flags of the `floor` role.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// The network whose magic the floor speaks.
    #[arg(long, default_value = "regtest", value_parser = parse_network)]
    pub network: Network,
}

/// Child role: serves on 127.0.0.1:0 on a two-worker runtime until stdin closes.
pub fn run(args: &Args) -> std::io::Result<()> {
    process::raise_fd_limit();
    let magic = args.network.magic();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("floor")
        .enable_all()
        .build()?
        .block_on(async move {
            let socket = TcpSocket::new_v4()?;
            socket.set_reuseaddr(true)?;
            socket.bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
            let listener = socket.listen(BACKLOG)?;
            println!("READY {}", listener.local_addr()?);
            let reply = reply(magic);
            let accept = async {
                loop {
                    match listener.accept().await {
                        Ok((stream, _)) => {
                            tokio::spawn(serve(stream, magic, reply.clone()));
                        }
                        Err(_) => tokio::task::yield_now().await,
                    }
                }
            };
            let mut stdin = tokio::io::stdin();
            let mut sink = Vec::new();
            tokio::select! {
                () = accept => {}
                _ = stdin.read_to_end(&mut sink) => {}
            }
            Ok(())
        })
}

/// `version` (services NONE, protocol 70016, height 0, relay false), `wtxidrelay`,
/// `sendaddrv2`, `verack`: one buffer.
fn reply(magic: Magic) -> Bytes {
    let unroutable = SocketAddr::from(([0u16; 8], 0));
    let mut version = VersionMessage::new(
        ServiceFlags::NONE,
        0,
        Address::new(&unroutable, ServiceFlags::NONE),
        Address::new(&unroutable, ServiceFlags::NONE),
        0x5eed,
        "/verack-bench-floor:0.1/".to_string(),
        0,
    );
    version.version = 70016;
    version.relay = false;
    let mut out = Vec::new();
    for message in [
        NetworkMessage::Version(version),
        NetworkMessage::WtxidRelay,
        NetworkMessage::SendAddrV2,
        NetworkMessage::Verack,
    ] {
        out.extend_from_slice(&encode_frame(magic, &message).expect("small message"));
    }
    out.into()
}

/// One connection: wait for `version`, answer, then read until the remote closes.
async fn serve(mut stream: TcpStream, magic: Magic, reply: Bytes) {
    let _ = stream.set_nodelay(true);
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    loop {
        match next_frame(&mut buf, magic) {
            Ok(Some(command)) if command.starts_with(b"version\0") => break,
            Ok(Some(_)) => {}
            Ok(None) => {
                buf.reserve(READ_CHUNK);
                if !matches!(stream.read_buf(&mut buf).await, Ok(n) if n > 0) {
                    return;
                }
            }
            Err(_) => return,
        }
    }
    if stream.write_all(&reply).await.is_err() {
        return;
    }
    // The remote's verack and then its close (a reset from the load client).
    loop {
        buf.clear();
        buf.reserve(READ_CHUNK);
        if !matches!(stream.read_buf(&mut buf).await, Ok(n) if n > 0) {
            return;
        }
    }
}
