//! Feeds the metrics: a [`MetricsSource`] over the node and server, and a task turning server
//! events into event-driven metrics.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use verack::peer::{Direction, HandshakeError, PeerStats};
use verack::server::PeerEvent;

use crate::metrics::{Metrics, MetricsSource, PeerSample};
use crate::node::Node;

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

/// Records handshake failures from the server's events until the channel closes.
pub async fn follow_events(
    mut events: tokio::sync::broadcast::Receiver<PeerEvent>,
    metrics: Arc<Metrics>,
) {
    loop {
        match events.recv().await {
            Ok(PeerEvent::HandshakeFailed { error, .. }) => {
                metrics.handshake_failed(handshake_kind(&error))
            }
            Ok(_) => {}
            Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                tracing::debug!(missed, "metrics missed server events");
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        }
    }
}
