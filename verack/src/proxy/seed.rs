//! Asking a DNS seed for addresses through the proxy, as Bitcoin Core does with `-proxy`
//! (`ThreadDNSAddressSeed`: with a name proxy, each seed becomes an `ADDR_FETCH` connection
//! to the seed's *name*): no name is looked up outside the proxy. The proxy resolves the
//! seed's name and connects to one of the nodes it lists; that node answers `getaddr`.
//!
//! 1. Connect through the proxy to `seed:port` (SOCKS5 ATYP domain).
//! 2. Version handshake (v1), `getaddr`.
//! 3. Keep `addr`/`addrv2` entries until an answer with more than one address arrived (a lone
//!    address is usually the peer announcing itself, as Core's addr-fetch rule), the peer
//!    closed, or the wait ran out; then disconnect.

use std::time::Duration;

use bitcoin::p2p::address::{AddrV2, AddrV2Message, Address};
use bitcoin::p2p::message::NetworkMessage;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::address::Host;
use crate::peer::{BoxError, HandshakeError, MessageHandler, Peer, PeerConfig, PeerHandle};

use super::{Socks5Dialer, Socks5Error, Target};

/// How long [`fetch_addresses`] waits for an answer after the handshake by default: 30 s.
pub const DEFAULT_ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// Why [`fetch_addresses`] got no answer at all.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// The tunnel through the proxy failed (e.g. [`Socks5Error::Refused`] when the proxy
    /// could not resolve or reach the seed).
    #[error(transparent)]
    Proxy(#[from] Socks5Error),
    /// The version handshake with the node behind the seed's name failed.
    #[error("handshake failed: {0}")]
    Handshake(#[from] HandshakeError),
}

/// Forwards every `addr`/`addrv2` message's entries to the fetch.
struct Collect(mpsc::Sender<Vec<AddrV2Message>>);

impl MessageHandler for Collect {
    async fn on_addr(&mut self, _peer: &PeerHandle, addrs: Vec<(u32, Address)>) {
        let entries = addrs
            .into_iter()
            .filter_map(|(time, a)| {
                let socket = a.socket_addr().ok()?;
                let addr = match Host::from_ip(socket.ip()) {
                    Host::Ipv4(ip) => AddrV2::Ipv4(ip),
                    Host::Ipv6(ip) => AddrV2::Ipv6(ip),
                    _ => return None,
                };
                Some(AddrV2Message {
                    time,
                    services: a.services,
                    addr,
                    port: socket.port(),
                })
            })
            .collect();
        let _ = self.0.send(entries).await;
    }

    async fn on_addrv2(&mut self, _peer: &PeerHandle, addrs: Vec<AddrV2Message>) {
        let _ = self.0.send(addrs).await;
    }
}

/// Asks the node behind `seed` (usually a [`Target::Name`], resolved by the proxy) for
/// addresses through `dialer`, as the steps in the [module docs](self); `config` is the
/// peer configuration for the connection (network, user agent; v1 transport). Returns every
/// entry received, possibly none (the wait of `answer_timeout` ran out or the node closed).
/// The whole call takes at most the dialer's timeouts, the handshake timeout of `config` and
/// `answer_timeout`.
///
/// # Errors
/// [`FetchError::Proxy`] when the tunnel fails, [`FetchError::Handshake`] when the
/// handshake does.
pub async fn fetch_addresses(
    dialer: &Socks5Dialer,
    seed: impl Into<Target>,
    config: PeerConfig,
    answer_timeout: Duration,
) -> Result<Vec<AddrV2Message>, FetchError> {
    let stream = dialer.connect(seed).await?;
    // The peer's remote is the proxy: that is all the socket knows.
    let remote = stream.peer_addr().unwrap_or(dialer.proxy());
    let cancel = CancellationToken::new();
    let peer = Peer::outbound(stream, remote, config)
        .handshake(&cancel, |_| Ok::<(), BoxError>(()))
        .await?;
    let handle = peer.handle();
    let (tx, mut rx) = mpsc::channel(16);
    let run = tokio::spawn(peer.run(Collect(tx), cancel.clone()));
    let mut entries = Vec::new();
    if handle.send(NetworkMessage::GetAddr).is_ok() {
        let deadline = tokio::time::sleep(answer_timeout);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                batch = rx.recv() => match batch {
                    Some(batch) => {
                        let answer = batch.len() > 1;
                        entries.extend(batch);
                        if answer {
                            break;
                        }
                    }
                    None => break,
                },
                () = &mut deadline => break,
            }
        }
    }
    cancel.cancel();
    let _ = run.await;
    Ok(entries)
}
