//! Settling the transport before `version`: inbound v1/v2 detection and the BIP324 v2 key
//! exchange (with the `bip324` crate's handshake state machine), with its deadline and the
//! v1 fallback hint for outbound attempts.

use std::io;

use bip324::{
    GarbageResult, Handshake, InboundCipher, Initialized, OutboundCipher, ReceivedKey, Role,
    VersionResult,
};
use bytes::Buf;
use rand::Rng;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::{timeout, Instant};

use super::connection::{FrameDecoder, FrameEncoder, READ_CHUNK};
use super::{HandshakeError, Peer, Plan, RetryV1Reason, Transport, V2Mode};
use crate::transport::{
    detect_transport, Detected, PacketDecoder, PacketEncoder, ELLSWIFT_KEY_LEN,
    GARBAGE_TERMINATOR_LEN, LENGTH_LEN, MAX_CONTENTS_LEN, MAX_GARBAGE_LEN, PACKET_OVERHEAD,
    V1_PREFIX_LEN,
};
use crate::wire::{DecodeError, V2Error};

/// Most decoy packets sent before our version packet when decoys are on.
const MAX_HANDSHAKE_DECOYS: usize = 2;
/// Largest decoy contents sent in the handshake.
const MAX_HANDSHAKE_DECOY_LEN: usize = 64;

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> Peer<S> {
    /// Detects or negotiates the transport as planned; afterwards the decoder, encoder and
    /// `transport` are those of the connection and `read_buf` holds what followed.
    pub(crate) async fn establish_transport(&mut self) -> Result<(), HandshakeError> {
        match self.plan {
            Plan::V1 => Ok(()),
            Plan::Detect => {
                if self.detect_v2().await? {
                    self.v2_with_deadline(Role::Responder).await
                } else if self.config.v2 == V2Mode::Only {
                    Err(HandshakeError::V1NotAllowed)
                } else {
                    Ok(())
                }
            }
            Plan::V2Initiator => match self.v2_with_deadline(Role::Initiator).await {
                Ok(()) => Ok(()),
                Err(e) => Err(self.initiator_failure(e)),
            },
        }
    }

    /// Whether an outbound v2 attempt is still in its key exchange (for the overall timeout).
    pub(crate) fn in_v2_key_exchange(&self) -> bool {
        self.plan == Plan::V2Initiator && self.transport == Transport::V1
    }

    /// Turns the failure of an outbound v2 attempt into the re-dial-over-v1 hint when BIP324
    /// says the remote speaks v1: nothing received and the connection closed, reset or silent
    /// until the v2 deadline, or v1 bytes where its key should be. Remembers the address.
    pub(crate) fn initiator_failure(&self, e: HandshakeError) -> HandshakeError {
        let silent = self.setup_bytes_read == 0;
        let reason = match &e {
            HandshakeError::V2RetryV1 { reason } => Some(*reason),
            HandshakeError::Timeout { .. } if silent => Some(RetryV1Reason::Timeout),
            HandshakeError::Io(err) if silent => match err.kind() {
                io::ErrorKind::UnexpectedEof => Some(RetryV1Reason::Closed),
                io::ErrorKind::ConnectionReset
                | io::ErrorKind::ConnectionAborted
                | io::ErrorKind::BrokenPipe => Some(RetryV1Reason::Reset),
                _ => None,
            },
            _ => None,
        };
        let Some(reason) = reason else {
            return e;
        };
        if self.config.v2 == V2Mode::Only {
            return match reason {
                RetryV1Reason::V1Reply => HandshakeError::V1NotAllowed,
                _ => e,
            };
        }
        self.config.v1_only_cache.insert(self.ctx.remote);
        tracing::debug!(peer = self.ctx.id.0, remote = %self.ctx.remote, %reason, "v2 attempt failed; remote speaks v1");
        HandshakeError::V2RetryV1 { reason }
    }

    /// Reads until the first bytes tell v1 (`false`) from v2 (`true`).
    async fn detect_v2(&mut self) -> Result<bool, HandshakeError> {
        let magic = self.config.wire_magic();
        loop {
            let seen = &self.read_buf[..self.read_buf.len().min(V1_PREFIX_LEN)];
            match detect_transport(seen, magic) {
                Detected::V1 => return Ok(false),
                Detected::V2 => return Ok(true),
                Detected::WrongMagic(actual) => {
                    return Err(DecodeError::WrongMagic {
                        expected: magic,
                        actual,
                    }
                    .into())
                }
                Detected::NeedMore => self.fill().await?,
            }
        }
    }

    async fn v2_with_deadline(&mut self, role: Role) -> Result<(), HandshakeError> {
        let after = self.config.v2_handshake_timeout;
        let (inbound, outbound, session_id) = timeout(after, self.v2_key_exchange(role))
            .await
            .unwrap_or(Err(HandshakeError::Timeout { after }))?;
        self.decoder = FrameDecoder::V2(PacketDecoder::new(inbound));
        self.encoder = FrameEncoder::V2 {
            packets: PacketEncoder::new(outbound),
            decoys: self.config.v2_decoys,
        };
        self.transport = Transport::V2 { session_id };
        tracing::debug!(
            peer = self.ctx.id.0,
            remote = %self.ctx.remote,
            session_id = %self.transport.session_id_hex(),
            "v2 transport established"
        );
        Ok(())
    }

    /// BIP324's handshake: our key and garbage; their key; our terminator, decoys and version
    /// packet; their garbage up to the terminator; their packets until the version packet
    /// (contents ignored). Bytes read beyond stay in `read_buf`.
    async fn v2_key_exchange(
        &mut self,
        role: Role,
    ) -> Result<(InboundCipher, OutboundCipher, [u8; 32]), HandshakeError> {
        let magic = self.config.wire_magic().to_bytes();
        let handshake = Handshake::<Initialized>::new(magic, role).map_err(key_exchange)?;
        let garbage = random_bytes(MAX_GARBAGE_LEN);
        let mut out = vec![0u8; Handshake::<Initialized>::send_key_len(Some(&garbage))];
        let handshake = handshake
            .send_key(Some(&garbage), &mut out)
            .map_err(key_exchange)?;
        self.write_raw(&out).await?;

        self.fill_to(ELLSWIFT_KEY_LEN).await?;
        let their_key: [u8; ELLSWIFT_KEY_LEN] = self.read_buf[..ELLSWIFT_KEY_LEN]
            .try_into()
            .expect("64 bytes");
        self.consume(ELLSWIFT_KEY_LEN);
        let handshake = match handshake.receive_key(their_key) {
            Ok(handshake) => handshake,
            Err(bip324::Error::V1Protocol) if role == Role::Initiator => {
                return Err(HandshakeError::V2RetryV1 {
                    reason: RetryV1Reason::V1Reply,
                })
            }
            Err(e) => return Err(key_exchange(e)),
        };

        let decoys = if self.config.v2_decoys {
            random_decoys()
        } else {
            Vec::new()
        };
        let decoy_refs: Vec<&[u8]> = decoys.iter().map(Vec::as_slice).collect();
        let decoy_arg = (!decoy_refs.is_empty()).then_some(decoy_refs.as_slice());
        let mut out = vec![0u8; Handshake::<ReceivedKey>::send_version_len(decoy_arg)];
        let handshake = handshake
            .send_version(&mut out, decoy_arg)
            .map_err(key_exchange)?;
        self.write_raw(&out).await?;

        // Their garbage and terminator, searched within the first 4095 + 16 bytes only. The
        // crate's garbage-authenticating state borrows the bytes searched, so they are searched
        // in a copy (at most 4111 bytes).
        let search_limit = MAX_GARBAGE_LEN + GARBAGE_TERMINATOR_LEN;
        let mut sent = handshake;
        let mut window: Vec<u8>;
        let (mut received, consumed) = loop {
            window = self.read_buf[..self.read_buf.len().min(search_limit)].to_vec();
            match sent.receive_garbage(&window) {
                Ok(GarbageResult::FoundGarbage {
                    handshake,
                    consumed_bytes,
                }) => break (handshake, consumed_bytes),
                Ok(GarbageResult::NeedMoreData(handshake)) => sent = handshake,
                Err(bip324::Error::NoGarbageTerminator) => {
                    return Err(DecodeError::from(V2Error::NoGarbageTerminator {
                        searched: search_limit,
                    })
                    .into())
                }
                Err(e) => return Err(key_exchange(e)),
            }
            self.fill().await?;
        };
        self.consume(consumed);

        loop {
            self.fill_to(LENGTH_LEN).await?;
            let rest = received
                .decrypt_packet_len(self.read_buf[..LENGTH_LEN].try_into().expect("3 bytes"))
                .map_err(key_exchange)?;
            let contents = rest + LENGTH_LEN - PACKET_OVERHEAD;
            if contents > MAX_CONTENTS_LEN {
                return Err(DecodeError::from(V2Error::PacketTooLarge {
                    len: contents,
                    max: MAX_CONTENTS_LEN,
                })
                .into());
            }
            self.fill_to(LENGTH_LEN + rest).await?;
            let mut packet = self.read_buf.split_to(LENGTH_LEN + rest);
            self.ctx
                .counters
                .record_overhead_received(packet.len(), Instant::now());
            match received.receive_version(&mut packet[LENGTH_LEN..]) {
                Ok(VersionResult::Complete { cipher }) => {
                    let session_id = *cipher.id();
                    let (inbound, outbound) = cipher.into_split();
                    return Ok((inbound, outbound, session_id));
                }
                Ok(VersionResult::Decoy(handshake)) => received = handshake,
                Err(bip324::Error::Decryption(_)) | Err(bip324::Error::CiphertextTooSmall) => {
                    return Err(DecodeError::from(V2Error::Decryption).into())
                }
                Err(e) => return Err(key_exchange(e)),
            }
        }
    }

    /// Reads once more into `read_buf` (growing it only as bytes arrive).
    async fn fill(&mut self) -> Result<(), HandshakeError> {
        if self.read_buf.capacity() - self.read_buf.len() < READ_CHUNK {
            self.read_buf.reserve(READ_CHUNK);
        }
        match self.stream.read_buf(&mut self.read_buf).await {
            Ok(0) => Err(HandshakeError::Io(io::ErrorKind::UnexpectedEof.into())),
            Ok(n) => {
                self.setup_bytes_read += n;
                Ok(())
            }
            Err(e) => Err(HandshakeError::Io(e)),
        }
    }

    async fn fill_to(&mut self, len: usize) -> Result<(), HandshakeError> {
        while self.read_buf.len() < len {
            self.fill().await?;
        }
        Ok(())
    }

    /// Drops `n` handshake bytes from `read_buf`, counting them as received.
    fn consume(&mut self, n: usize) {
        self.read_buf.advance(n);
        self.ctx
            .counters
            .record_overhead_received(n, Instant::now());
    }

    /// Writes handshake bytes that carry no message, counting them as sent.
    async fn write_raw(&mut self, bytes: &[u8]) -> Result<(), HandshakeError> {
        self.stream.write_all(bytes).await?;
        self.stream.flush().await?;
        self.ctx
            .counters
            .record_overhead_sent(bytes.len(), Instant::now());
        Ok(())
    }
}

fn key_exchange(e: bip324::Error) -> HandshakeError {
    DecodeError::from(V2Error::KeyExchange {
        reason: e.to_string(),
    })
    .into()
}

/// Random bytes of a random length in `0..=max` (garbage).
fn random_bytes(max: usize) -> Vec<u8> {
    let mut rng = rand::thread_rng();
    let mut bytes = vec![0u8; rng.gen_range(0..=max)];
    rng.fill(&mut bytes[..]);
    bytes
}

fn random_decoys() -> Vec<Vec<u8>> {
    let count = rand::thread_rng().gen_range(1..=MAX_HANDSHAKE_DECOYS);
    (0..count)
        .map(|_| random_bytes(MAX_HANDSHAKE_DECOY_LEN))
        .collect()
}
