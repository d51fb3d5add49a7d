//! The synchronous version/verack exchange (see the [module docs](super) for the steps).

use std::net::{Ipv6Addr, SocketAddr};
use std::time::{SystemTime, UNIX_EPOCH};

use bitcoin::p2p::address::Address;
use bitcoin::p2p::message::NetworkMessage;
use bitcoin::p2p::message_network::VersionMessage;
use rand::Rng;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;

use super::connection::{read_frame, write_messages, ReadError};
use super::negotiated::{
    Feature, FeatureError, TxReconciliation, FEATURE_VERSION, MAX_RECORDED_FEATURES,
};
use super::run::HandshakedPeer;
use super::{BoxError, Direction, HandshakeError, Negotiated, Peer, RemoteFeatures};

/// Messages other than `verack`, feature negotiation and messages of unknown type held during
/// the handshake: 3 (dcrd).
pub const MAX_HELD_MESSAGES: usize = 3;
/// Messages before the remote's `version` that are ignored (as Core) before the handshake
/// fails with [`HandshakeError::NotVersion`]: 100. Core ignores any number until its
/// handshake timeout; the cap bounds the work a peer can cause before it is known.
pub const MAX_IGNORED_BEFORE_VERSION: usize = 100;
/// The first version with `wtxidrelay` (BIP339) and `sendaddrv2` (BIP155).
pub const WTXID_RELAY_VERSION: u32 = 70016;
/// Messages of unknown type received before `verack` kept in
/// [`Negotiated::extra_messages`]: 32 (our bound; BIP434 allows any number and Core keeps
/// none). Later ones are ignored, not refused.
pub const MAX_EXTRA_MESSAGES: usize = 32;
/// Payload bytes, summed, of the messages kept in [`Negotiated::extra_messages`]: 65,536 (our
/// bound: 32 BIP434 `feature`s of the largest size fit). A message that would cross it is
/// ignored, not refused.
pub const MAX_EXTRA_MESSAGE_BYTES: usize = 64 * 1024;

/// What the remote sent before its `verack`, besides `version`.
struct BeforeVerack {
    features: RemoteFeatures,
    held: Vec<NetworkMessage>,
    extra: Vec<NetworkMessage>,
}

/// What the exchange produced.
pub(crate) struct Exchange {
    pub(crate) negotiated: Negotiated,
    pub(crate) held: Vec<NetworkMessage>,
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + 'static> Peer<S> {
    /// Settles the transport (v1, or the BIP324 v2 key exchange; see the [module
    /// docs](super)), then exchanges `version` and `verack` with the remote, all within the
    /// configured [`handshake_timeout`](super::PeerConfig::handshake_timeout).
    ///
    /// `on_version` sees the remote `version` after the built-in checks passed and before we
    /// send anything more; returning `Err` fails the handshake with
    /// [`HandshakeError::Refused`] carrying that error unchanged. It may rely on the remote
    /// `version` being decoded and its version being at least our minimum; it must not assume
    /// a `verack` will follow.
    ///
    /// # Errors
    /// Every [`HandshakeError`] kind: [`NotVersion`](HandshakeError::NotVersion),
    /// [`SelfConnection`](HandshakeError::SelfConnection),
    /// [`ProtocolTooOld`](HandshakeError::ProtocolTooOld),
    /// [`NotVerack`](HandshakeError::NotVerack),
    /// [`InvalidFeature`](HandshakeError::InvalidFeature), [`Timeout`](HandshakeError::Timeout),
    /// [`Cancelled`](HandshakeError::Cancelled) when `cancel` fires first,
    /// [`Refused`](HandshakeError::Refused), [`Io`](HandshakeError::Io),
    /// [`Framing`](HandshakeError::Framing) (v2 errors included), and for v2
    /// [`V2RetryV1`](HandshakeError::V2RetryV1) (re-dial over v1) and
    /// [`V1NotAllowed`](HandshakeError::V1NotAllowed). `Timeout { after }` carries the
    /// v2 handshake timeout when that one expired. On error the connection is dropped (closed).
    pub async fn handshake<F, E>(
        mut self,
        cancel: &CancellationToken,
        on_version: F,
    ) -> Result<HandshakedPeer<S>, HandshakeError>
    where
        F: FnOnce(&VersionMessage) -> Result<(), E>,
        E: Into<BoxError>,
    {
        let after = self.config.handshake_timeout;
        let result = tokio::select! {
            biased;
            _ = cancel.cancelled() => Err(HandshakeError::Cancelled),
            r = tokio::time::timeout(after, self.exchange(on_version)) => {
                r.unwrap_or(Err(HandshakeError::Timeout { after }))
            }
        };
        // The whole-handshake deadline may end an outbound v2 attempt before its own did.
        let result = match result {
            Err(e @ HandshakeError::Timeout { .. }) if self.in_v2_key_exchange() => {
                Err(self.initiator_failure(e))
            }
            other => other,
        };
        match result {
            Ok(exchange) => Ok(HandshakedPeer::start(self, exchange)),
            Err(e) => {
                tracing::debug!(peer = self.ctx.id.0, remote = %self.ctx.remote, error = %e, "handshake failed");
                Err(e)
            }
        }
    }

    async fn exchange<F, E>(&mut self, on_version: F) -> Result<Exchange, HandshakeError>
    where
        F: FnOnce(&VersionMessage) -> Result<(), E>,
        E: Into<BoxError>,
    {
        let local_nonce = loop {
            let n: u64 = rand::rngs::OsRng.gen();
            if n != 0 {
                break n;
            }
        };
        self.establish_transport().await?;
        let exchange = match self.ctx.direction {
            Direction::Outbound => {
                self.config.nonce_cache.insert(local_nonce);
                self.send(self.our_version(local_nonce)).await?;
                let remote = self.read_version().await?;
                let version = self.check_version(&remote, on_version)?;
                let before = self.read_until_verack(version).await?;
                let (mut replies, ours) = self.negotiation(&remote, version);
                replies.push(NetworkMessage::Verack);
                self.send_all(&replies).await?;
                self.negotiated(remote, version, local_nonce, before, ours)
            }
            Direction::Inbound => {
                let remote = self.read_version().await?;
                let version = self.check_version(&remote, on_version)?;
                // version, the feature negotiation and verack in one write (one syscall, one
                // segment) rather than four.
                let mut replies = vec![self.our_version(local_nonce)];
                let (negotiation, ours) = self.negotiation(&remote, version);
                replies.extend(negotiation);
                replies.push(NetworkMessage::Verack);
                self.send_all(&replies).await?;
                let before = self.read_until_verack(version).await?;
                self.negotiated(remote, version, local_nonce, before, ours)
            }
        };
        Ok(exchange)
    }

    fn our_version(&self, nonce: u64) -> NetworkMessage {
        let unroutable = SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), 0);
        let services = self.config.advertised_services();
        // The remote's address as we see it only when it is routable, else `[::]:0`, as
        // Core's PushNodeVersion (`addrYou`): a private or loopback address tells the remote
        // nothing it could advertise.
        let remote = if crate::netgroup::is_routable(self.ctx.remote.ip()) {
            self.ctx.remote
        } else {
            unroutable
        };
        let mut v = VersionMessage::new(
            services,
            unix_now(),
            Address::new(&remote, bitcoin::p2p::ServiceFlags::NONE),
            Address::new(&self.config.local_address.unwrap_or(unroutable), services),
            nonce,
            self.config.user_agent.clone(),
            self.config.start_height.get(),
        );
        v.version = self.config.protocol_version;
        v.relay = self.config.relay;
        NetworkMessage::Version(v)
    }

    /// Checks a remote `version`; returns the negotiated protocol version.
    fn check_version<F, E>(
        &self,
        remote: &VersionMessage,
        on_version: F,
    ) -> Result<u32, HandshakeError>
    where
        F: FnOnce(&VersionMessage) -> Result<(), E>,
        E: Into<BoxError>,
    {
        if self.config.nonce_cache.contains(remote.nonce) {
            return Err(HandshakeError::SelfConnection {
                nonce: remote.nonce,
            });
        }
        if remote.version < self.config.min_protocol_version {
            return Err(HandshakeError::ProtocolTooOld {
                version: remote.version,
                min: self.config.min_protocol_version,
            });
        }
        on_version(remote).map_err(|e| HandshakeError::Refused(e.into()))?;
        Ok(remote.version.min(self.config.protocol_version))
    }

    /// The feature negotiation sent between `version` and `verack` (BIP339 `wtxidrelay`,
    /// BIP155 `sendaddrv2`) at protocol `version` 70016 and later, then the caller's extra
    /// messages ([`PeerConfig::negotiation`](super::PeerConfig::negotiation), `version` and
    /// `verack` left out); returns all of them and the extra ones alone. No BIP434 `feature`
    /// is sent by default: verack implements none, and Bitcoin Core (which advertises 70017)
    /// sends none either; BIP434 requires only that we accept them.
    fn negotiation(
        &self,
        remote: &VersionMessage,
        version: u32,
    ) -> (Vec<NetworkMessage>, Vec<NetworkMessage>) {
        let mut all = if version >= WTXID_RELAY_VERSION {
            vec![NetworkMessage::WtxidRelay, NetworkMessage::SendAddrV2]
        } else {
            Vec::new()
        };
        let extra: Vec<NetworkMessage> = match &self.config.negotiation {
            Some(build) => build(remote, version)
                .into_iter()
                .filter(|m| !matches!(m, NetworkMessage::Version(_) | NetworkMessage::Verack))
                .collect(),
            None => Vec::new(),
        };
        all.extend(extra.iter().cloned());
        (all, extra)
    }

    /// Reads until `version`. Other messages are ignored, as Core's net_processing does
    /// ("non-version message before version handshake"), up to
    /// [`MAX_IGNORED_BEFORE_VERSION`]; one more fails with [`HandshakeError::NotVersion`]. The
    /// handshake deadline bounds the time spent either way.
    async fn read_version(&mut self) -> Result<VersionMessage, HandshakeError> {
        let mut ignored = 0;
        loop {
            match self.read().await? {
                NetworkMessage::Version(v) => return Ok(v),
                other if ignored == MAX_IGNORED_BEFORE_VERSION => {
                    return Err(HandshakeError::NotVersion {
                        command: other.command().to_string(),
                    })
                }
                other => {
                    ignored += 1;
                    tracing::debug!(peer = self.ctx.id.0, command = %other.command(), "message before version ignored");
                }
            }
        }
    }

    /// Reads until `verack`, recording feature negotiation, keeping messages of unknown type
    /// (within [`MAX_EXTRA_MESSAGES`] and [`MAX_EXTRA_MESSAGE_BYTES`]) and holding up to
    /// [`MAX_HELD_MESSAGES`] others.
    async fn read_until_verack(&mut self, version: u32) -> Result<BeforeVerack, HandshakeError> {
        let mut features = RemoteFeatures::default();
        let mut held = Vec::new();
        let mut extra = Vec::new();
        let mut extra_bytes = 0;
        loop {
            match self.read().await? {
                NetworkMessage::Verack => {
                    return Ok(BeforeVerack {
                        features,
                        held,
                        extra,
                    })
                }
                NetworkMessage::SendHeaders => features.send_headers = true,
                NetworkMessage::SendCmpct(m) => features.compact_blocks = Some(m),
                // Core ignores wtxidrelay from peers below 70016.
                NetworkMessage::WtxidRelay => {
                    features.wtxid_relay |= version >= WTXID_RELAY_VERSION
                }
                NetworkMessage::SendAddrV2 => features.addr_v2 = true,
                NetworkMessage::Unknown { command, payload } => {
                    on_unknown_before_verack(&mut features, version, command.as_ref(), &payload)
                        .map_err(HandshakeError::InvalidFeature)?;
                    if extra.len() < MAX_EXTRA_MESSAGES
                        && extra_bytes + payload.len() <= MAX_EXTRA_MESSAGE_BYTES
                    {
                        extra_bytes += payload.len();
                        extra.push(NetworkMessage::Unknown { command, payload });
                    }
                }
                other @ NetworkMessage::Version(_) => {
                    return Err(HandshakeError::NotVerack {
                        command: other.command().to_string(),
                    })
                }
                other if held.len() == MAX_HELD_MESSAGES => {
                    return Err(HandshakeError::NotVerack {
                        command: other.command().to_string(),
                    })
                }
                other => held.push(other),
            }
        }
    }

    fn negotiated(
        &self,
        remote: VersionMessage,
        protocol_version: u32,
        local_nonce: u64,
        before: BeforeVerack,
        local_extra_messages: Vec<NetworkMessage>,
    ) -> Exchange {
        Exchange {
            negotiated: Negotiated {
                protocol_version,
                remote_version: remote.version,
                services: remote.services,
                user_agent: remote.user_agent,
                start_height: remote.start_height,
                relay: remote.relay,
                time_offset: remote.timestamp.saturating_sub(unix_now()),
                // `[::]:0` (or 0.0.0.0:0) says the remote does not know our address.
                addr_local: remote
                    .receiver
                    .socket_addr()
                    .ok()
                    .filter(|a| !a.ip().is_unspecified()),
                remote_nonce: remote.nonce,
                local_nonce,
                features: before.features,
                extra_messages: before.extra,
                local_extra_messages,
                transport: self.transport,
            },
            held: before.held,
        }
    }

    async fn read(&mut self) -> Result<NetworkMessage, HandshakeError> {
        match read_frame(
            &mut self.stream,
            &mut self.read_buf,
            &mut self.decoder,
            &self.ctx,
            &mut tokio::time::Instant::now(),
        )
        .await
        {
            Ok(frame) => Ok(frame.message),
            Err(ReadError::Closed) => {
                Err(HandshakeError::Io(std::io::ErrorKind::UnexpectedEof.into()))
            }
            Err(ReadError::Decode(e)) => Err(HandshakeError::Framing(e)),
            Err(ReadError::Io(e)) => Err(HandshakeError::Io(e)),
        }
    }

    async fn send(&mut self, msg: NetworkMessage) -> Result<(), HandshakeError> {
        self.send_all(std::slice::from_ref(&msg)).await
    }

    async fn send_all(&mut self, msgs: &[NetworkMessage]) -> Result<(), HandshakeError> {
        let magic = self.config.wire_magic();
        Ok(write_messages(&mut self.stream, &mut self.encoder, magic, &self.ctx, msgs).await?)
    }
}

/// A message of a type rust-bitcoin does not know, received between `version` and `verack`
/// at negotiated protocol `version`: BIP330 `sendtxrcncl` and BIP434 `feature` are recorded in
/// `features`, anything else is ignored (BIP434 "SHOULD ignore unknown messages"; Core's
/// "Unsupported message prior to verack").
///
/// `sendtxrcncl` never fails (Core without `-txreconciliation` ignores it): the first with a
/// full payload is recorded. A `feature` fails as Core's net_processing disconnects: below
/// [`FEATURE_VERSION`], or a payload [`Feature::decode`] refuses; a valid one is an unknown
/// feature (verack implements none), kept while fewer than [`MAX_RECORDED_FEATURES`] are.
fn on_unknown_before_verack(
    features: &mut RemoteFeatures,
    version: u32,
    command: &str,
    payload: &[u8],
) -> Result<(), FeatureError> {
    match command {
        "sendtxrcncl" if features.tx_reconciliation.is_none() => {
            features.tx_reconciliation = TxReconciliation::decode(payload);
        }
        "feature" => {
            if version < FEATURE_VERSION {
                return Err(FeatureError::IncompatibleVersion { version });
            }
            let feature = Feature::decode(payload)?;
            if features.features.len() < MAX_RECORDED_FEATURES {
                features.features.push(feature);
            }
        }
        _ => {}
    }
    Ok(())
}

/// Seconds since the Unix epoch, for `version` timestamps and the time offset.
pub(crate) fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
