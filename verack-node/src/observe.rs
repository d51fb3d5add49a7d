//! What the node tells about its peers: a [`MetricsSource`] over the node and server, a task
//! turning server events into event-driven metrics, and a task turning them into log lines
//! (one per peer connected or gone, with the count; each failed attempt to reach a manual
//! peer, with its retry; and the "nobody reachable" reports of [`Reachability`]).

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast::error::RecvError;
use tokio::time::Instant;
use verack::peer::{Direction, DisconnectReason, HandshakeError, Negotiated, PeerStats};
use verack::server::{ConnectionKind, PeerEvent};
use verack::transport::TransportKind;

use crate::human;
use crate::metrics::{Metrics, MetricsSource, PeerSample};
use crate::node::Node;
use crate::reachability::Reachability;

/// The node seen by the metrics.
pub struct NodeMetrics {
    /// The node.
    pub node: Arc<Node>,
}

/// A metrics sample of one peer's stats.
pub fn sample(stats: &PeerStats) -> PeerSample {
    PeerSample {
        inbound: stats.direction == Direction::Inbound,
        transport: match stats.transport.kind() {
            verack::transport::TransportKind::V2 => "v2",
            _ => "v1",
        },
        bytes_sent_per_command: stats.bytes_sent_per_command.clone(),
        bytes_received_per_command: stats.bytes_received_per_command.clone(),
        messages_sent: stats.messages_sent,
        messages_received: stats.messages_received,
        last_ping: stats.last_ping,
    }
}

impl MetricsSource for NodeMetrics {
    fn peers(&self) -> Vec<PeerSample> {
        self.node
            .server()
            .map(|s| s.peers().iter().map(sample).collect())
            .unwrap_or_default()
    }

    fn header_height(&self) -> u64 {
        self.node.tip_height.load(Ordering::Relaxed).max(0) as u64
    }

    fn headers_accepted_total(&self) -> u64 {
        self.node.headers_accepted.load(Ordering::Relaxed)
    }

    fn bans(&self) -> u64 {
        self.node
            .server()
            .map(|s| s.bans().len() as u64)
            .unwrap_or(0)
    }

    fn best_known_height(&self) -> u64 {
        let best = self.node.best_known_height.load(Ordering::Relaxed);
        best.max(self.node.tip_height.load(Ordering::Relaxed))
            .max(0) as u64
    }

    fn synced(&self) -> bool {
        self.node.is_synced()
    }
}

/// The `kind` label of a failed handshake.
pub fn handshake_kind(error: &HandshakeError) -> &'static str {
    match error {
        HandshakeError::NotVersion { .. } => "not_version",
        HandshakeError::SelfConnection { .. } => "self_connection",
        HandshakeError::ProtocolTooOld { .. } => "protocol_too_old",
        HandshakeError::NotVerack { .. } => "not_verack",
        HandshakeError::Timeout { .. } => "timeout",
        HandshakeError::Cancelled => "cancelled",
        HandshakeError::Refused(_) => "refused",
        HandshakeError::Io(_) => "io",
        HandshakeError::Framing(_) => "framing",
        _ => "other",
    }
}

/// Records handshake failures and peer-policy refusals from the server's events until the
/// channel closes.
pub async fn follow_events(
    mut events: tokio::sync::broadcast::Receiver<PeerEvent>,
    metrics: Arc<Metrics>,
) {
    loop {
        match events.recv().await {
            Ok(PeerEvent::HandshakeFailed { error, .. }) => {
                metrics.handshake_failed(handshake_kind(&error))
            }
            Ok(PeerEvent::Refused {
                refusal: verack::server::Refusal::Policy(_),
                ..
            }) => metrics.policy_refused(),
            Ok(_) => {}
            Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                tracing::debug!(missed, "metrics missed server events");
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        }
    }
}

/// How a connection kind reads in the log.
pub fn kind_name(kind: ConnectionKind) -> &'static str {
    match kind {
        ConnectionKind::Inbound => "inbound",
        ConnectionKind::FullRelay => "outbound full-relay",
        ConnectionKind::BlockRelayOnly => "outbound block-relay-only",
        ConnectionKind::Manual => "outbound manual",
        ConnectionKind::Feeler => "feeler",
        ConnectionKind::AddrFetch => "addr-fetch",
    }
}

/// How a peer address reads in the log: as given, or for an onion/I2P/CJDNS peer (carried as a
/// stand-in `SocketAddr`, [`verack::address::PeerAddr::stand_in`]) its real name, e.g.
/// `xxx.onion:8333`.
pub fn shown(addr: SocketAddr) -> String {
    match verack::address::PeerAddr::from_stand_in(addr) {
        Some(peer) => peer.to_string(),
        None => addr.to_string(),
    }
}

/// The line for a peer that connected; `count` peers are connected now, it included.
pub fn connected_line(
    addr: SocketAddr,
    kind: ConnectionKind,
    negotiated: &Negotiated,
    count: usize,
) -> String {
    peer_line(
        addr,
        kind,
        negotiated.transport.kind(),
        &negotiated.user_agent,
        negotiated.start_height,
        count,
    )
}

/// [`connected_line`] from its parts.
fn peer_line(
    addr: SocketAddr,
    kind: ConnectionKind,
    transport: TransportKind,
    user_agent: &str,
    start_height: i32,
    count: usize,
) -> String {
    let transport = match transport {
        TransportKind::V2 => "v2",
        _ => "v1",
    };
    let addr = shown(addr);
    format!(
        "peer connected: {addr} ({}, {transport}, {user_agent}, height {start_height}); {} connected",
        kind_name(kind),
        human::count(count, "peer", "peers")
    )
}

/// The line for a peer that went away after `connected_for`; `count` peers remain.
pub fn gone_line(
    addr: SocketAddr,
    reason: &DisconnectReason,
    connected_for: Duration,
    count: usize,
) -> String {
    let addr = shown(addr);
    format!(
        "peer gone: {addr} after {} ({reason}); {} connected",
        human::duration(connected_for),
        human::count(count, "peer", "peers")
    )
}

/// Why a connection could not be made, in a few words: `connection refused`, `timed out`,
/// or the system's message.
pub fn io_reason(error: &std::io::Error) -> String {
    use std::io::ErrorKind as K;
    match error.kind() {
        K::ConnectionRefused => "connection refused".into(),
        K::TimedOut => "timed out".into(),
        K::ConnectionReset => "connection reset".into(),
        K::ConnectionAborted => "connection aborted".into(),
        K::HostUnreachable => "host unreachable".into(),
        K::NetworkUnreachable => "network unreachable".into(),
        K::AddrNotAvailable => "address not available".into(),
        _ => error.to_string(),
    }
}

/// Why a handshake failed, in a few words.
pub fn handshake_reason(error: &HandshakeError) -> String {
    match error {
        HandshakeError::SelfConnection { .. } => "it is this node (self-connection)".into(),
        HandshakeError::Io(e) => format!("handshake failed: {}", io_reason(e)),
        other => format!("handshake failed: {other}"),
    }
}

/// For an event that says an outbound attempt failed: what was tried and why it failed.
pub fn failed_attempt(event: &PeerEvent) -> Option<(String, String)> {
    match event {
        PeerEvent::DialFailed { addr, error } => Some((shown(*addr), io_reason(error))),
        PeerEvent::HandshakeFailed {
            addr,
            direction: Direction::Outbound,
            error,
        } => Some((shown(*addr), handshake_reason(error))),
        PeerEvent::Refused {
            addr,
            direction: Direction::Outbound,
            refusal,
        } => Some((shown(*addr), format!("refused: {refusal}"))),
        PeerEvent::ResolveFailed { host, port, error } => Some((
            format!("{host}:{port}"),
            format!("host name lookup failed: {}", io_reason(error)),
        )),
        _ => None,
    }
}

/// Logs, at info level, each peer connected or gone with the count, each failed round of
/// attempts to reach a manual peer (`--connect`/`--addnode`) with its reason and retry, and
/// while no peer is connected the [`Reachability`] reports. `peer_count` gives the connected
/// count when events were missed; `sources` describes the address sources at a given instant
/// for the reports. Returns when the event channel closes.
pub async fn log_events(
    mut events: tokio::sync::broadcast::Receiver<PeerEvent>,
    peer_count: impl Fn() -> usize,
    sources: impl Fn(Instant) -> Vec<String>,
) {
    let mut reach = Reachability::new(Instant::now());
    let mut count = 0usize;
    // The last failure per address dialled, to explain a manual peer's retry.
    let mut last_failure: Option<(String, String)> = None;
    loop {
        let wake = reach.next_check();
        let event = tokio::select! {
            e = events.recv() => e,
            _ = sleep_until_or_forever(wake) => {
                let now = Instant::now();
                if let Some(report) = reach.poll(now, &sources(now)) {
                    tracing::info!("{}", report.headline);
                    for line in report.lines {
                        tracing::info!("  {line}");
                    }
                }
                continue;
            }
        };
        let now = Instant::now();
        match event {
            Ok(PeerEvent::Connected {
                addr,
                kind,
                negotiated,
                ..
            }) => {
                count += 1;
                reach.peers(now, count);
                tracing::info!("{}", connected_line(addr, kind, &negotiated, count));
            }
            Ok(PeerEvent::Disconnected {
                addr,
                reason,
                connected_for,
                ..
            }) => {
                count = count.saturating_sub(1);
                reach.peers(now, count);
                tracing::info!("{}", gone_line(addr, &reason, connected_for, count));
            }
            Ok(PeerEvent::PersistentRetry {
                target,
                failures,
                retry_in,
            }) => {
                let name = target.to_string();
                let why = reach
                    .last_failure(&name)
                    .map(str::to_string)
                    .or_else(|| last_failure.as_ref().map(|(_, why)| why.clone()))
                    .unwrap_or_else(|| "failed".into());
                reach.retry(now, &name, failures, retry_in);
                tracing::info!(
                    "could not reach {name}: {why}; retrying in {} ({})",
                    human::duration(retry_in),
                    human::count(failures as usize, "failed attempt", "failed attempts")
                );
            }
            Ok(other) => {
                if let Some((target, why)) = failed_attempt(&other) {
                    reach.failed(now, &target, &why);
                    last_failure = Some((target, why));
                }
            }
            Err(RecvError::Lagged(missed)) => {
                tracing::debug!(missed, "log missed server events");
                count = peer_count();
                reach.peers(now, count);
            }
            Err(RecvError::Closed) => return,
        }
    }
}

/// Sleeps until `at`, or forever when `None`.
async fn sleep_until_or_forever(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn peer_lines_name_the_peer_and_the_count() {
        assert_eq!(
            peer_line(
                a("127.0.0.1:18444"),
                ConnectionKind::Manual,
                TransportKind::V2,
                "/Satoshi:31.99.0/",
                200,
                1
            ),
            "peer connected: 127.0.0.1:18444 (outbound manual, v2, /Satoshi:31.99.0/, height 200); 1 peer connected"
        );
        assert_eq!(
            gone_line(
                a("[2001:db8::1]:8333"),
                &DisconnectReason::RemoteClosed,
                Duration::from_secs(312),
                3
            ),
            "peer gone: [2001:db8::1]:8333 after 5m12s (remote closed the connection); 3 peers connected"
        );
    }

    #[test]
    fn onion_peers_read_by_their_name() {
        let onion = "pg6mmjiyjmcrsslvykfwnntlaru7p5svn6y2ymmju6nubxndf4pscryd.onion:8333";
        let stand_in = verack::address::PeerAddr::parse_with_port(onion, 8333)
            .unwrap()
            .stand_in();
        assert_eq!(shown(stand_in), onion);
        let refused = PeerEvent::DialFailed {
            addr: stand_in,
            error: Arc::new(std::io::Error::from(std::io::ErrorKind::ConnectionRefused)),
        };
        assert_eq!(failed_attempt(&refused).unwrap().0, onion);
        assert!(
            gone_line(stand_in, &DisconnectReason::RemoteClosed, Duration::ZERO, 0)
                .starts_with(&format!("peer gone: {onion} "))
        );
        assert_eq!(shown(a("1.2.3.4:8333")), "1.2.3.4:8333");
    }

    #[test]
    fn failures_read_as_a_few_words() {
        use std::io::{Error, ErrorKind};
        let refused = PeerEvent::DialFailed {
            addr: a("127.0.0.1:1"),
            error: Arc::new(Error::from(ErrorKind::ConnectionRefused)),
        };
        assert_eq!(
            failed_attempt(&refused),
            Some(("127.0.0.1:1".into(), "connection refused".into()))
        );
        let timeout = Error::new(ErrorKind::TimedOut, "dial timed out");
        assert_eq!(io_reason(&timeout), "timed out");
        assert_eq!(
            handshake_reason(&HandshakeError::SelfConnection { nonce: 7 }),
            "it is this node (self-connection)"
        );
        let inbound = PeerEvent::HandshakeFailed {
            addr: a("10.0.0.1:5000"),
            direction: Direction::Inbound,
            error: Arc::new(HandshakeError::Cancelled),
        };
        assert_eq!(
            failed_attempt(&inbound),
            None,
            "inbound failures are not ours"
        );
        let lookup = PeerEvent::ResolveFailed {
            host: "node.example".into(),
            port: 8333,
            error: Arc::new(Error::other("no such host")),
        };
        assert_eq!(
            failed_attempt(&lookup),
            Some((
                "node.example:8333".into(),
                "host name lookup failed: no such host".into()
            ))
        );
    }
}
