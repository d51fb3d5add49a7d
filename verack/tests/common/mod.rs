//! Test helpers: configs, connected peer pairs, and a scripted remote that speaks raw frames.
#![allow(dead_code, unused_imports)]

pub mod tcp;

use std::net::SocketAddr;
use std::time::Duration;

use bitcoin::p2p::address::Address;
use bitcoin::p2p::message::NetworkMessage;
use bitcoin::p2p::message_network::VersionMessage;
use bitcoin::p2p::ServiceFlags;
use bitcoin::Network;
use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio_util::codec::Decoder;
use tokio_util::sync::CancellationToken;
use verack::peer::{
    BoxError, Direction, DisconnectReason, HandshakeError, HandshakedPeer, MessageHandler, Peer,
    PeerConfig, PeerHandle,
};
use verack::wire::{encode_frame, V1Codec};

pub const DUPLEX_BUFFER: usize = 1 << 20;

pub fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

pub fn config() -> PeerConfig {
    PeerConfig::new(Network::Regtest)
}

/// Accepts any remote version.
pub fn accept(_: &VersionMessage) -> Result<(), BoxError> {
    Ok(())
}

/// Handshakes an outbound and an inbound peer over one duplex pipe.
pub async fn connected_pair(
    out_cfg: PeerConfig,
    in_cfg: PeerConfig,
) -> (
    Result<HandshakedPeer<DuplexStream>, HandshakeError>,
    Result<HandshakedPeer<DuplexStream>, HandshakeError>,
) {
    let (a, b) = tokio::io::duplex(DUPLEX_BUFFER);
    let cancel = CancellationToken::new();
    let out = Peer::outbound(a, addr(18444), out_cfg);
    let inb = Peer::inbound(b, addr(50000), in_cfg);
    tokio::join!(
        out.handshake(&cancel, accept),
        inb.handshake(&cancel, accept)
    )
}

/// Handshakes our side of `stream` in `direction`; panics on success.
pub async fn handshake_err(
    direction: Direction,
    stream: DuplexStream,
    cfg: PeerConfig,
) -> HandshakeError {
    Peer::new(stream, direction, addr(1), cfg)
        .handshake(&CancellationToken::new(), accept)
        .await
        .expect_err("handshake should fail")
}

/// Handshakes our side of `stream` in `direction`; panics on failure.
pub async fn handshake_ok(
    direction: Direction,
    stream: DuplexStream,
    cfg: PeerConfig,
) -> HandshakedPeer<DuplexStream> {
    Peer::new(stream, direction, addr(1), cfg)
        .handshake(&CancellationToken::new(), accept)
        .await
        .expect("handshake should succeed")
}

/// Runs `peer` with `handler` on its own task; returns a handle and the run's outcome.
pub fn spawn_run<H: MessageHandler>(
    peer: HandshakedPeer<DuplexStream>,
    handler: H,
) -> (PeerHandle, tokio::task::JoinHandle<DisconnectReason>) {
    let handle = peer.handle();
    (
        handle,
        tokio::spawn(peer.run(handler, CancellationToken::new())),
    )
}

/// A remote driven by the test, frame by frame.
pub struct Script {
    pub stream: DuplexStream,
    buf: BytesMut,
    codec: V1Codec,
}

impl Script {
    pub fn new(stream: DuplexStream) -> Script {
        Script {
            stream,
            buf: BytesMut::new(),
            codec: V1Codec::new(Network::Regtest.magic()),
        }
    }

    pub async fn send(&mut self, msg: NetworkMessage) {
        let frame = encode_frame(Network::Regtest.magic(), &msg).unwrap();
        self.stream.write_all(&frame).await.unwrap();
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    /// The next message, or `None` at end of stream.
    pub async fn recv(&mut self) -> Option<NetworkMessage> {
        loop {
            if let Some(frame) = self.codec.decode(&mut self.buf).unwrap() {
                return Some(frame.message);
            }
            let n = self.stream.read_buf(&mut self.buf).await.ok()?;
            if n == 0 {
                return None;
            }
        }
    }

    /// The next message other than ping/pong (answering pings), or `None` at end of stream.
    pub async fn recv_skip_pings(&mut self) -> Option<NetworkMessage> {
        loop {
            match self.recv().await? {
                NetworkMessage::Ping(n) => self.send(NetworkMessage::Pong(n)).await,
                NetworkMessage::Pong(_) => {}
                other => return Some(other),
            }
        }
    }

    pub async fn expect_command(&mut self, command: &str) -> NetworkMessage {
        let msg = self
            .recv()
            .await
            .unwrap_or_else(|| panic!("stream ended, expected {command}"));
        assert_eq!(msg.command().as_ref(), command, "got {msg:?}");
        msg
    }

    /// True once the other side has closed (end of stream), reading and discarding frames.
    pub async fn closed(&mut self) -> bool {
        loop {
            let mut scratch = [0u8; 4096];
            match tokio::time::timeout(Duration::from_secs(3600), self.stream.read(&mut scratch))
                .await
            {
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(_)) => {}
                Err(_) => return false,
            }
        }
    }
}

/// A version message as a remote would send it.
pub fn remote_version(version: u32, nonce: u64) -> NetworkMessage {
    let a = Address::new(&addr(1), ServiceFlags::NONE);
    let mut v = VersionMessage::new(
        ServiceFlags::NETWORK | ServiceFlags::WITNESS,
        1_700_000_000,
        a.clone(),
        a,
        nonce,
        "/scripted:1.0/".into(),
        100,
    );
    v.version = version;
    v.relay = true;
    NetworkMessage::Version(v)
}

/// A scripted inbound remote facing our outbound peer: returns after the verack exchange.
pub async fn script_accepts(script: &mut Script, version: u32) {
    script.expect_command("version").await;
    script.send(remote_version(version, 0xdead)).await;
    script.send(NetworkMessage::Verack).await;
}

/// Our outbound peer handshaked with a scripted remote speaking `version`, which sends `extra`
/// (feature messages) before its verack. The pipe holds `buffer` bytes each way.
pub async fn handshaked_with_script(
    cfg: PeerConfig,
    version: u32,
    relay: bool,
    extra: Vec<NetworkMessage>,
    buffer: usize,
) -> (HandshakedPeer<DuplexStream>, Script) {
    let (a, b) = tokio::io::duplex(buffer);
    let mut remote = Script::new(b);
    let task = tokio::spawn(async move {
        remote.expect_command("version").await;
        let mut v = remote_version(version, 0xdead);
        if let NetworkMessage::Version(ref mut v) = v {
            v.relay = relay;
        }
        remote.send(v).await;
        for m in extra {
            remote.send(m).await;
        }
        remote.send(NetworkMessage::Verack).await;
        // Read our negotiation messages and verack.
        loop {
            if remote.recv().await.expect("verack") == NetworkMessage::Verack {
                break;
            }
        }
        remote
    });
    let peer = Peer::outbound(a, addr(18444), cfg)
        .handshake(&CancellationToken::new(), accept)
        .await
        .unwrap();
    (peer, task.await.unwrap())
}
