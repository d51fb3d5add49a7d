//! Server: a persistent peer that cannot be reached is reported round by round: the reason
//! (`DialFailed`, `ResolveFailed`) and then `PersistentRetry` with the failure count and the
//! backoff before the next round. In-memory dialer, paused clock.

mod common;

use std::time::Duration;

use common::*;
use tokio_util::sync::CancellationToken;
use verack::peer::{IgnoreMessages, PeerHandle};
use verack::server::{
    ConnectionKind, DialFuture, Dialer, PeerEvent, PeerTarget, ResolveFuture, Server, ServerConfig,
};

/// Refuses every dial; no host name resolves.
struct Unreachable;

impl Dialer for Unreachable {
    fn dial(&self, _: std::net::SocketAddr) -> DialFuture {
        Box::pin(async { Err(std::io::ErrorKind::ConnectionRefused.into()) })
    }

    fn resolve(&self, _: &str, _: u16) -> ResolveFuture {
        Box::pin(async {
            Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no such host",
            ))
        })
    }
}

async fn events_for(target: PeerTarget, n: usize) -> Vec<PeerEvent> {
    let mut cfg = ServerConfig::new(config());
    cfg.persistent = vec![target];
    cfg.connect_only = true;
    let server = Server::new(cfg, |_: &PeerHandle, _: ConnectionKind| IgnoreMessages)
        .with_dialer(Unreachable);
    let mut events = server.subscribe();
    let shutdown = CancellationToken::new();
    server.start(shutdown.clone()).await.unwrap();
    let mut seen = Vec::new();
    while seen.len() < n {
        seen.push(events.recv().await.unwrap());
    }
    shutdown.cancel();
    server.stopped().await.unwrap();
    seen
}

#[tokio::test(start_paused = true)]
async fn each_failed_round_gives_its_reason_then_the_retry() {
    let target = addr(18444);
    let events = events_for(PeerTarget::from(target), 6).await;
    for (round, pair) in events.chunks(2).enumerate() {
        match &pair[0] {
            PeerEvent::DialFailed { addr, error } => {
                assert_eq!(*addr, target);
                assert_eq!(error.kind(), std::io::ErrorKind::ConnectionRefused);
            }
            other => panic!("round {round}: expected DialFailed, got {other:?}"),
        }
        match &pair[1] {
            PeerEvent::PersistentRetry {
                target: t,
                failures,
                retry_in,
            } => {
                assert_eq!(*t, PeerTarget::from(target));
                assert_eq!(*failures as usize, round + 1);
                // The persistent backoff: 1 s doubling, ±50%.
                let base = Duration::from_secs(1 << round);
                assert!(
                    *retry_in >= base / 2 && *retry_in <= base * 3 / 2,
                    "round {round}: {retry_in:?}"
                );
            }
            other => panic!("round {round}: expected PersistentRetry, got {other:?}"),
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_name_that_does_not_resolve_is_a_failed_round_too() {
    let target = PeerTarget::Name {
        host: "node.example".into(),
        port: 18444,
    };
    let events = events_for(target.clone(), 2).await;
    assert!(
        matches!(&events[0], PeerEvent::ResolveFailed { host, port: 18444, .. } if host == "node.example"),
        "{:?}",
        events[0]
    );
    assert!(
        matches!(&events[1], PeerEvent::PersistentRetry { target: t, failures: 1, .. } if *t == target),
        "{:?}",
        events[1]
    );
}
