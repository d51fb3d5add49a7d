//! BIP324 through the server: remotes known to advertise `NODE_P2P_V2` are dialled over v2; a
//! remote that advertises it but speaks only v1 is re-dialled once over v1 and remembered.
//! Manual connections try v2 first whatever is known (as Core), unless opted out per address.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bitcoin::p2p::ServiceFlags;
use common::*;
use tokio_util::sync::CancellationToken;
use verack::peer::{IgnoreMessages, Peer, PeerConfig, PeerHandle};
use verack::server::{
    AddressSource, BoxedConnection, ConnectionKind, DialFuture, Dialer, FixedAddresses,
    ManualTransport, PeerEvent, Server, ServerConfig,
};
use verack::transport::{TransportKind, V2Mode};

/// Offers one address, said to advertise `NODE_P2P_V2`.
struct V2Advertiser(SocketAddr);

impl AddressSource for V2Advertiser {
    fn candidates(&self, _: ConnectionKind, _: usize) -> Vec<SocketAddr> {
        vec![self.0]
    }
    fn services_of(&self, _: SocketAddr) -> Option<ServiceFlags> {
        Some(ServiceFlags::NETWORK | ServiceFlags::P2P_V2)
    }
}

/// Each dial gets a fresh remote peer with `remote_cfg` on a duplex pipe.
#[derive(Clone)]
struct Remote {
    cfg: PeerConfig,
    dials: Arc<Mutex<usize>>,
}

impl Dialer for Remote {
    fn dial(&self, _addr: SocketAddr) -> DialFuture {
        *self.dials.lock().unwrap() += 1;
        let cfg = self.cfg.clone();
        Box::pin(async move {
            let (ours, theirs) = tokio::io::duplex(1 << 16);
            tokio::spawn(async move {
                if let Ok(p) = Peer::inbound(theirs, addr(9), cfg)
                    .handshake(&CancellationToken::new(), accept)
                    .await
                {
                    p.run(IgnoreMessages, CancellationToken::new()).await;
                }
            });
            Ok(Box::new(ours) as BoxedConnection)
        })
    }
}

/// How the server reaches the one remote of [`first_connection`].
enum Dial {
    /// An automatic full-relay connection to an address said to advertise `NODE_P2P_V2`.
    Automatic,
    /// A manual `connect_once_with` (services unknown) with this transport choice.
    Manual(ManualTransport),
}

/// The server's first connection to a remote speaking `remote_mode`; returns the transport,
/// the dials made and whether the address ended in the v1-only cache.
async fn first_connection(remote_mode: V2Mode, dial: Dial) -> (TransportKind, usize, bool) {
    let target: SocketAddr = "40.0.0.1:8333".parse().unwrap();
    let mut remote_cfg = config();
    remote_cfg.v2 = remote_mode;
    let remote = Remote {
        cfg: remote_cfg,
        dials: Arc::default(),
    };
    let mut cfg = ServerConfig::new(config());
    cfg.target_full_relay = usize::from(matches!(dial, Dial::Automatic));
    cfg.target_block_relay = 0;
    // The remote advertises no NODE_WITNESS: take it whatever its services.
    cfg.policy = verack::server::PeerPolicy::accept_all();
    cfg.feeler_interval = None;
    let cache = cfg.peer.v1_only_cache.clone();
    let server = Server::new(cfg, |_: &PeerHandle, _: ConnectionKind| IgnoreMessages)
        .with_dialer(remote.clone());
    let server = match dial {
        Dial::Automatic => server.with_address_source(V2Advertiser(target)),
        Dial::Manual(_) => server.with_address_source(FixedAddresses::default()),
    };
    let mut events = server.subscribe();
    let shutdown = CancellationToken::new();
    server.start(shutdown.clone()).await.unwrap();
    if let Dial::Manual(transport) = dial {
        assert!(server.connect_once_with(target, transport));
        assert_eq!(server.manual_transport(target), transport);
    }
    let transport = loop {
        if let PeerEvent::Connected { negotiated, .. } = events.recv().await.unwrap() {
            break negotiated.transport.kind();
        }
    };
    shutdown.cancel();
    server.stopped().await.unwrap();
    let dials = *remote.dials.lock().unwrap();
    (transport, dials, cache.contains(target))
}

async fn connect_once(remote_mode: V2Mode) -> (TransportKind, usize, bool) {
    first_connection(remote_mode, Dial::Automatic).await
}

async fn manual(remote_mode: V2Mode, transport: ManualTransport) -> (TransportKind, usize, bool) {
    first_connection(remote_mode, Dial::Manual(transport)).await
}

#[tokio::test(start_paused = true)]
async fn v2_when_the_remote_advertises_and_speaks_it() {
    let (transport, dials, cached) = connect_once(V2Mode::IfAdvertised).await;
    assert_eq!(transport, TransportKind::V2);
    assert_eq!(dials, 1);
    assert!(!cached);
}

#[tokio::test(start_paused = true)]
async fn v1_only_remote_is_redialled_once_over_v1_and_remembered() {
    let (transport, dials, cached) = connect_once(V2Mode::Off).await;
    assert_eq!(transport, TransportKind::V1);
    assert_eq!(dials, 2, "one v2 attempt, one v1 re-dial");
    assert!(cached, "remembered as v1-only");
}

#[tokio::test(start_paused = true)]
async fn manual_connections_try_v2_first_without_knowing_the_services() {
    let (transport, dials, cached) = manual(V2Mode::IfAdvertised, ManualTransport::V2First).await;
    assert_eq!(transport, TransportKind::V2);
    assert_eq!(dials, 1);
    assert!(!cached);
}

#[tokio::test(start_paused = true)]
async fn manual_v2_first_to_a_v1_only_remote_redials_once_over_v1() {
    let (transport, dials, cached) = manual(V2Mode::Off, ManualTransport::V2First).await;
    assert_eq!(transport, TransportKind::V1);
    assert_eq!(
        dials, 2,
        "one v2 attempt, one v1 re-dial (Core's reconnect over v1)"
    );
    assert!(cached);
}

#[tokio::test(start_paused = true)]
async fn manual_v1_only_sends_no_v2_key() {
    // A v2-capable remote still gets v1: the opt-out is for remotes that punish a v2 key.
    let (transport, dials, cached) = manual(V2Mode::IfAdvertised, ManualTransport::V1Only).await;
    assert_eq!(transport, TransportKind::V1);
    assert_eq!(dials, 1);
    assert!(!cached);
}
