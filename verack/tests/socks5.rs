//! The SOCKS5 dialer through a real SOCKS5 server, `microsocks` (Debian package
//! `microsocks`, installed by `.ci/run`), on loopback, reaching the bundled Bitcoin Core.
//! microsocks binds its outgoing connections to 127.0.0.2 (`-b`), so Core's `getpeerinfo`
//! tells a proxied connection (from 127.0.0.2) from a direct one (from 127.0.0.1).

use std::net::SocketAddr;
use std::time::Duration;

use bitcoin::Network;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use verack::peer::{BoxError, IgnoreMessages, Peer, PeerConfig};
use verack::proxy::{seed, Credentials, ReplyCode, Socks5Dialer, Socks5Error, Target};
use verack_testkit::{free_port, BitcoinCore, Microsocks, MICROSOCKS_SOURCE_IP};

const WITHIN: Duration = Duration::from_secs(20);

/// Handshakes with Core at `core` over a tunnel from `dialer`, keeps the peer running until
/// `cancel`, and returns Core's `getpeerinfo` entry for it.
async fn handshake_through(
    dialer: &Socks5Dialer,
    core: &BitcoinCore,
    cancel: &CancellationToken,
) -> Value {
    let stream = tokio::time::timeout(WITHIN, dialer.connect(core.p2p))
        .await
        .expect("tunnel within 20 s")
        .expect("tunnel through microsocks");
    let peer = Peer::outbound(stream, core.p2p, PeerConfig::new(Network::Regtest))
        .handshake(cancel, |_| Ok::<(), BoxError>(()))
        .await
        .expect("handshake with Core through the proxy");
    assert!(peer.negotiated().user_agent.contains("Satoshi"));
    tokio::spawn(peer.run(IgnoreMessages, cancel.clone()));
    core.wait_for_peer("a handshaked peer from the proxy", WITHIN, |p| {
        p["addr"]
            .as_str()
            .is_some_and(|a| a.starts_with(&format!("{MICROSOCKS_SOURCE_IP}:")))
            && BitcoinCore::handshaked(p)
    })
    .await
}

#[tokio::test]
async fn the_handshake_with_core_completes_through_microsocks() {
    let (core, proxy) = tokio::join!(
        BitcoinCore::start_with(&["-v2transport=0"]),
        Microsocks::start(&[])
    );
    let cancel = CancellationToken::new();
    // Random credentials (Core's -proxyrandomize, the default): a proxy without
    // authentication picks "no authentication".
    let dialer = Socks5Dialer::new(proxy.addr);
    assert_eq!(dialer.credentials(), &Credentials::Randomize);
    let entry = handshake_through(&dialer, &core, &cancel).await;
    assert_eq!(entry["inbound"], true);
    let peers = core.peer_info().await;
    assert_eq!(peers.len(), 1, "only the proxied connection: {peers:?}");
    let log = proxy.log();
    assert!(
        log.contains(&format!("connected to {}", core.p2p)),
        "microsocks log: {log}"
    );
    cancel.cancel();
}

#[tokio::test]
async fn username_and_password_are_checked_by_microsocks() {
    let (core, proxy) = tokio::join!(
        BitcoinCore::start_with(&["-v2transport=0"]),
        Microsocks::start(&["-u", "alice", "-P", "s3cret"])
    );
    let cancel = CancellationToken::new();
    let good = Socks5Dialer::new(proxy.addr).with_credentials(Credentials::Fixed {
        username: "alice".into(),
        password: "s3cret".into(),
    });
    handshake_through(&good, &core, &cancel).await;

    let wrong = Socks5Dialer::new(proxy.addr).with_credentials(Credentials::Fixed {
        username: "alice".into(),
        password: "wrong".into(),
    });
    let err = wrong.connect(core.p2p).await.unwrap_err();
    assert!(matches!(err, Socks5Error::AuthFailed { .. }), "{err}");
    // Random credentials are refused by a proxy that wants fixed ones.
    let err = Socks5Dialer::new(proxy.addr)
        .connect(core.p2p)
        .await
        .unwrap_err();
    assert!(matches!(err, Socks5Error::AuthFailed { .. }), "{err}");
    // Without credentials microsocks accepts none of our methods.
    let err = Socks5Dialer::new(proxy.addr)
        .with_credentials(Credentials::None)
        .connect(core.p2p)
        .await
        .unwrap_err();
    assert!(matches!(err, Socks5Error::NoAcceptableMethod), "{err}");
    assert_eq!(core.peer_info().await.len(), 1, "only the good connection");
    cancel.cancel();
}

#[tokio::test]
async fn a_refused_target_and_an_absent_proxy_are_typed_errors() {
    let proxy = Microsocks::start(&[]).await;
    // Port 1 on loopback: nothing listens there in tests.
    let dead: SocketAddr = ([127, 0, 0, 1], 1).into();
    let err = Socks5Dialer::new(proxy.addr)
        .connect(dead)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Socks5Error::Refused { code, .. } if code == ReplyCode::CONNECTION_REFUSED),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "the proxy could not connect to 127.0.0.1:1: connection refused (0x05)"
    );
    // Through the server's Dialer trait the typed error travels inside io::Error.
    let io = verack::server::Dialer::dial(&Socks5Dialer::new(proxy.addr), dead)
        .await
        .err()
        .expect("refused");
    assert_eq!(io.kind(), std::io::ErrorKind::ConnectionRefused);
    assert!(io
        .get_ref()
        .and_then(|e| e.downcast_ref::<Socks5Error>())
        .is_some_and(|e| matches!(e, Socks5Error::Refused { .. })));

    let free = free_port().await;
    let err = Socks5Dialer::new(([127, 0, 0, 1], free).into())
        .connect(dead)
        .await
        .unwrap_err();
    assert!(matches!(err, Socks5Error::ProxyUnreachable { .. }), "{err}");
}

#[tokio::test]
async fn a_seed_is_asked_by_name_through_the_proxy() {
    let (core, proxy) = tokio::join!(
        BitcoinCore::start_with(&["-v2transport=0"]),
        Microsocks::start(&[])
    );
    // Addresses only for Core to hand out (nothing dials them): Core answers getaddr with at
    // most 23% of what it knows, so give it 40.
    for i in 1..=40 {
        core.must_call("addpeeraddress", &format!(r#"["{i}.{i}.1.1", 8333]"#))
            .await;
    }
    let dialer = Socks5Dialer::new(proxy.addr);
    // The name goes to the proxy, which resolves it (as a DNS seed's name would be).
    let seed_name = Target::Name {
        host: "localhost".into(),
        port: core.p2p.port(),
    };
    let entries = seed::fetch_addresses(
        &dialer,
        seed_name,
        PeerConfig::new(Network::Regtest),
        WITHIN,
    )
    .await
    .expect("Core answered through the proxy");
    assert!(entries.len() > 1, "{entries:?}");
    let log = proxy.log();
    assert!(
        log.contains(&format!("connected to localhost:{}", core.p2p.port())),
        "the proxy resolved the name: {log}"
    );
}
