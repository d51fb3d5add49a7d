//! Support for the v2 transport tests: peers over any stream, a scripted raw BIP324 remote
//! (built on the `bip324` crate's state machine, so it can misbehave precisely), and stream
//! wrappers that split or count bytes.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use bip324::{GarbageResult, Handshake, Initialized, ReceivedKey, Role, VersionResult};
use bitcoin::p2p::message::NetworkMessage;
use bitcoin::Network;
use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio_util::sync::CancellationToken;
use verack::peer::{
    BoxError, HandshakeError, HandshakedPeer, MessageHandler, Peer, PeerConfig, PeerHandle,
    TransportKind,
};
use verack::transport::{encode_contents, PacketDecoder, PacketEncoder};

pub const MAGIC: [u8; 4] = [0xfa, 0xbf, 0xb5, 0xda]; // regtest

pub fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

pub fn config() -> PeerConfig {
    PeerConfig::new(Network::Regtest)
}

pub fn accept(_: &bitcoin::p2p::message_network::VersionMessage) -> Result<(), BoxError> {
    Ok(())
}

/// Forwards every message to a channel.
pub struct Forward(pub tokio::sync::mpsc::UnboundedSender<NetworkMessage>);

impl MessageHandler for Forward {
    async fn on_message(&mut self, _peer: &PeerHandle, message: NetworkMessage) {
        let _ = self.0.send(message);
    }
}

/// Handshakes an outbound peer over `a` (transport `kind`) with an inbound peer over `b`.
pub async fn pair<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    a: S,
    b: S,
    kind: TransportKind,
    out_cfg: PeerConfig,
    in_cfg: PeerConfig,
) -> (
    Result<HandshakedPeer<S>, HandshakeError>,
    Result<HandshakedPeer<S>, HandshakeError>,
) {
    let cancel = CancellationToken::new();
    let out = Peer::outbound_with_transport(a, addr(18444), out_cfg, kind);
    let inb = Peer::inbound(b, addr(50000), in_cfg);
    tokio::join!(
        out.handshake(&cancel, accept),
        inb.handshake(&cancel, accept)
    )
}

/// Runs `peer`, forwarding its messages; returns the handle, the receiver and the run task.
pub fn run_forwarding<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    peer: HandshakedPeer<S>,
) -> (
    PeerHandle,
    tokio::sync::mpsc::UnboundedReceiver<NetworkMessage>,
    tokio::task::JoinHandle<verack::peer::DisconnectReason>,
) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let handle = peer.handle();
    let run = tokio::spawn(peer.run(Forward(tx), CancellationToken::new()));
    (handle, rx, run)
}

/// The next message that is not a ping or pong (the peers answer those themselves).
pub async fn next_non_ping(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<NetworkMessage>,
) -> NetworkMessage {
    loop {
        match rx.recv().await.expect("peer ended") {
            NetworkMessage::Ping(_) | NetworkMessage::Pong(_) => continue,
            other => return other,
        }
    }
}

/// Counts the bytes read from and written to the inner stream.
pub struct Counted<S> {
    inner: S,
    pub read: Arc<AtomicU64>,
    pub written: Arc<AtomicU64>,
}

impl<S> Counted<S> {
    pub fn new(inner: S) -> Counted<S> {
        Counted {
            inner,
            read: Arc::default(),
            written: Arc::default(),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        self.read.fetch_add(n as u64, Ordering::SeqCst);
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, data);
        if let Poll::Ready(Ok(n)) = r {
            self.written.fetch_add(n as u64, Ordering::SeqCst);
        }
        r
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Reads and writes at most the next size of a cycling sequence per call, so the bytes of
/// every packet arrive split at arbitrary boundaries.
pub struct Chunked<S> {
    inner: S,
    sizes: Vec<usize>,
    next_read: AtomicUsize,
    next_write: AtomicUsize,
}

impl<S> Chunked<S> {
    pub fn new(inner: S, sizes: Vec<usize>) -> Chunked<S> {
        assert!(sizes.iter().all(|&n| n > 0));
        Chunked {
            inner,
            sizes,
            next_read: AtomicUsize::new(0),
            next_write: AtomicUsize::new(0),
        }
    }

    fn size(&self, counter: &AtomicUsize) -> usize {
        let i = counter.fetch_add(1, Ordering::Relaxed);
        self.sizes[i % self.sizes.len()]
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Chunked<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let limit = self.size(&self.next_read).min(buf.remaining());
        let mut small = ReadBuf::new(buf.initialize_unfilled_to(limit));
        let r = Pin::new(&mut self.inner).poll_read(cx, &mut small);
        let n = small.filled().len();
        buf.advance(n);
        if r.is_pending() {
            // Not consumed: give the same size to the next call.
            self.next_read.fetch_sub(1, Ordering::Relaxed);
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Chunked<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let limit = self.size(&self.next_write).min(data.len());
        let r = Pin::new(&mut self.inner).poll_write(cx, &data[..limit]);
        if r.is_pending() {
            self.next_write.fetch_sub(1, Ordering::Relaxed);
        }
        r
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// How a scripted v2 initiator deviates from BIP324.
#[derive(Default, Clone)]
pub struct Misbehave {
    /// Garbage given to the crate (at most 4095 bytes; authenticated).
    pub garbage: Vec<u8>,
    /// Bytes inserted after the authenticated garbage, before the terminator (so the garbage
    /// grows beyond what the crate allows, and is not authenticated).
    pub extra_garbage: Vec<u8>,
    /// Send these 16 bytes instead of the garbage terminator.
    pub wrong_terminator: Option<[u8; 16]>,
    /// Flip a bit in the version packet's tag.
    pub corrupt_version: bool,
    /// Decoy packets before the version packet.
    pub decoys: Vec<Vec<u8>>,
    /// Bytes sent after the version packet.
    pub trailing: Vec<u8>,
    /// Stop after writing the opening, even if it is honest (the peer is expected to fail).
    pub stop: bool,
}

impl Misbehave {
    fn is_honest(&self) -> bool {
        !self.stop
            && self.extra_garbage.is_empty()
            && self.wrong_terminator.is_none()
            && !self.corrupt_version
    }
}

/// A raw BIP324 remote after its handshake.
pub struct RawV2<S> {
    pub stream: S,
    buf: BytesMut,
    decoder: PacketDecoder,
    encoder: PacketEncoder,
    pub session_id: [u8; 32],
    skipped: usize,
}

async fn read_until<S: AsyncRead + Unpin>(stream: &mut S, buf: &mut BytesMut, len: usize) {
    while buf.len() < len {
        let n = stream.read_buf(buf).await.expect("read");
        assert!(n > 0, "stream ended with {} of {len} bytes", buf.len());
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> RawV2<S> {
    /// Plays the initiator against our inbound peer. With `misbehave` honest, completes the
    /// handshake; otherwise writes the bad opening from a task that holds the stream open
    /// (returned: it ends with the stream once everything was written or the write failed).
    pub async fn initiate(
        mut stream: S,
        misbehave: Misbehave,
    ) -> Result<RawV2<S>, tokio::task::JoinHandle<S>>
    where
        S: 'static,
    {
        let handshake = Handshake::<Initialized>::new(MAGIC, Role::Initiator).unwrap();
        let mut out = vec![0u8; Handshake::<Initialized>::send_key_len(Some(&misbehave.garbage))];
        let handshake = handshake
            .send_key(Some(&misbehave.garbage), &mut out)
            .unwrap();
        stream.write_all(&out).await.unwrap();
        let mut buf = BytesMut::new();
        read_until(&mut stream, &mut buf, 64).await;
        let key: [u8; 64] = buf.split_to(64)[..].try_into().unwrap();
        let handshake = handshake.receive_key(key).unwrap();
        let decoys: Vec<&[u8]> = misbehave.decoys.iter().map(Vec::as_slice).collect();
        let decoy_arg = (!decoys.is_empty()).then_some(decoys.as_slice());
        let mut out = vec![0u8; Handshake::<ReceivedKey>::send_version_len(decoy_arg)];
        let handshake = handshake.send_version(&mut out, decoy_arg).unwrap();
        if let Some(wrong) = misbehave.wrong_terminator {
            out[..16].copy_from_slice(&wrong);
        }
        if misbehave.corrupt_version {
            let last = out.len() - 1;
            out[last] ^= 1;
        }
        let mut wire = misbehave.extra_garbage.clone();
        wire.extend_from_slice(&out);
        wire.extend_from_slice(&misbehave.trailing);
        if !misbehave.is_honest() {
            // Writing may block on a pipe the peer stops reading: do it aside.
            return Err(tokio::spawn(async move {
                let _ = stream.write_all(&wire).await;
                stream
            }));
        }
        stream.write_all(&wire).await.unwrap();
        Ok(RawV2::finish(stream, buf, handshake).await)
    }

    /// Plays the responder against our outbound v2 peer.
    pub async fn respond(mut stream: S) -> RawV2<S> {
        let mut buf = BytesMut::new();
        read_until(&mut stream, &mut buf, 64).await;
        let key: [u8; 64] = buf.split_to(64)[..].try_into().unwrap();
        let handshake = Handshake::<Initialized>::new(MAGIC, Role::Responder).unwrap();
        let garbage = vec![7u8; 100];
        let mut out = vec![0u8; Handshake::<Initialized>::send_key_len(Some(&garbage))];
        let handshake = handshake.send_key(Some(&garbage), &mut out).unwrap();
        let handshake = handshake.receive_key(key).unwrap();
        let mut out2 = vec![0u8; Handshake::<ReceivedKey>::send_version_len(None)];
        let handshake = handshake.send_version(&mut out2, None).unwrap();
        out.extend_from_slice(&out2);
        stream.write_all(&out).await.unwrap();
        RawV2::finish(stream, buf, handshake).await
    }

    async fn finish(
        mut stream: S,
        mut buf: BytesMut,
        handshake: Handshake<bip324::SentVersion>,
    ) -> RawV2<S> {
        let mut sent = handshake;
        let mut window: Vec<u8>;
        let (mut received, consumed) = loop {
            window = buf[..buf.len().min(4111)].to_vec();
            match sent.receive_garbage(&window) {
                Ok(GarbageResult::FoundGarbage {
                    handshake,
                    consumed_bytes,
                }) => break (handshake, consumed_bytes),
                Ok(GarbageResult::NeedMoreData(h)) => sent = h,
                Err(e) => panic!("garbage: {e}"),
            }
            let n = stream.read_buf(&mut buf).await.expect("read");
            assert!(n > 0, "stream ended during the handshake");
        };
        let _ = buf.split_to(consumed);
        let cipher = loop {
            read_until(&mut stream, &mut buf, 3).await;
            let rest = received
                .decrypt_packet_len(buf[..3].try_into().unwrap())
                .unwrap();
            read_until(&mut stream, &mut buf, 3 + rest).await;
            let mut packet = buf.split_to(3 + rest);
            match received.receive_version(&mut packet[3..]).unwrap() {
                VersionResult::Complete { cipher } => break cipher,
                VersionResult::Decoy(h) => received = h,
            }
        };
        let session_id = *cipher.id();
        let (inbound, outbound) = cipher.into_split();
        RawV2 {
            stream,
            buf,
            decoder: PacketDecoder::new(inbound),
            encoder: PacketEncoder::new(outbound),
            session_id,
            skipped: 0,
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> RawV2<S> {
    /// Encrypts `contents` as one packet.
    pub fn seal(&mut self, contents: &[u8], decoy: bool) -> Vec<u8> {
        let mut out = BytesMut::new();
        self.encoder.encode_into(contents, decoy, &mut out);
        out.to_vec()
    }

    pub async fn send(&mut self, msg: &NetworkMessage) {
        let contents = encode_contents(msg).unwrap();
        let packet = self.seal(&contents, false);
        self.stream.write_all(&packet).await.unwrap();
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.unwrap();
    }

    /// The next message, or `None` at end of stream (or on a decoding error).
    pub async fn recv(&mut self) -> Option<NetworkMessage> {
        loop {
            let decoded = self.decoder.decode(&mut self.buf);
            self.skipped += self.decoder.take_skipped();
            match decoded {
                Ok(Some(frame)) => return Some(frame.message),
                Ok(None) => {}
                Err(_) => return None,
            }
            let n = self.stream.read_buf(&mut self.buf).await.ok()?;
            if n == 0 {
                return None;
            }
        }
    }

    /// Bytes of decoy packets received (and skipped) so far.
    pub fn decoys_skipped(&self) -> usize {
        self.skipped
    }

    /// Completes a version/verack exchange with our peer (which speaks first if outbound).
    pub async fn handshake_messages(&mut self, we_are_inbound: bool) {
        if we_are_inbound {
            self.send(&remote_version()).await;
            self.expect("version").await;
        } else {
            self.expect("version").await;
            self.send(&remote_version()).await;
        }
        self.send(&NetworkMessage::Verack).await;
        loop {
            if self.recv().await.expect("verack") == NetworkMessage::Verack {
                break;
            }
        }
    }

    pub async fn expect(&mut self, command: &str) -> NetworkMessage {
        let msg = self
            .recv()
            .await
            .unwrap_or_else(|| panic!("ended, expected {command}"));
        assert_eq!(msg.command().as_ref(), command, "got {msg:?}");
        msg
    }

    /// True once the other side closed, discarding what arrives.
    pub async fn closed(&mut self) -> bool {
        let mut scratch = [0u8; 4096];
        loop {
            match self.stream.read(&mut scratch).await {
                Ok(0) | Err(_) => return true,
                Ok(_) => {}
            }
        }
    }
}

/// A `version` as a remote would send it.
pub fn remote_version() -> NetworkMessage {
    use bitcoin::p2p::address::Address;
    use bitcoin::p2p::ServiceFlags;
    let a = Address::new(&addr(1), ServiceFlags::NONE);
    let mut v = bitcoin::p2p::message_network::VersionMessage::new(
        ServiceFlags::NETWORK | ServiceFlags::P2P_V2,
        1_700_000_000,
        a.clone(),
        a,
        0xdead,
        "/raw-v2:1.0/".into(),
        100,
    );
    v.version = 70016;
    NetworkMessage::Version(v)
}
