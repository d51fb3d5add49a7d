//! The accept loop: accept, back off on errors, checkpoint 1 (which may drop a pending
//! handshake to make room), then one task per admitted connection.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::time::Instant;

use crate::backoff::Backoff;
use crate::peer::Direction;

use super::dial::BoxedConnection;
use super::session::{serve, PendingSlot};
use super::{ConnectionKind, Inner, PeerEvent, PeerHandlers, Refusal};

/// Accepts until the server stops. There is no slot to wait for before `accept`: when the
/// pending handshakes are at their limit (in total or for the newcomer's /24 or /64),
/// checkpoint 1 removes the longest-pending handshake of the group holding the most
/// ([`select_pending_to_drop`](super::registry::select_pending_to_drop)) and this loop cancels
/// it, so pending handshakes in the registry never exceed
/// [`max_pending_handshakes`](super::ServerConfig::max_pending_handshakes) (plus trusted ones),
/// and open sockets exceed it only by the dropped ones whose tasks have not yet run.
pub(crate) async fn accept_loop<H: PeerHandlers>(inner: Arc<Inner<H>>, listener: TcpListener) {
    let mut failures: u32 = 0;
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = inner.cancel.cancelled() => return,
        };
        let (stream, addr) = match accepted {
            Ok(conn) => {
                if failures > 0 {
                    tracing::info!(failures, "accepting again after errors");
                    failures = 0;
                }
                conn
            }
            Err(e) => {
                if failures == 0 {
                    tracing::warn!(error = %e, "accept failed; backing off");
                }
                let delay = Backoff::ACCEPT_ERROR.delay(failures, 0.0);
                failures = failures.saturating_add(1);
                tokio::select! {
                    _ = tokio::time::sleep(delay) => continue,
                    _ = inner.cancel.cancelled() => return,
                }
            }
        };
        let _ = stream.set_nodelay(true);
        let _ = admit_inbound(&inner, Box::new(stream), addr);
    }
}

/// Checkpoint 1 for an accepted connection from `addr` (bans, allow/deny lists, per-IP limit,
/// pending-handshake slots, dropping the longest-pending handshake of the busiest group when
/// full), then its handshake and admission on a task of its own. Used by the listeners and by
/// [`Server::accept_inbound`](super::Server::accept_inbound).
///
/// # Errors
/// The [`Refusal`] of checkpoint 1 (after emitting it as [`PeerEvent::Refused`]); `stream` is
/// dropped (closed) then.
pub(crate) fn admit_inbound<H: PeerHandlers>(
    inner: &Arc<Inner<H>>,
    stream: BoxedConnection,
    addr: SocketAddr,
) -> Result<(), Refusal> {
    let banned = inner.is_banned(addr);
    let cancel = inner.cancel.child_token();
    let admitted = inner.registry().begin_pending(
        addr.ip(),
        banned,
        &inner.config.admission,
        inner.config.max_pending_handshakes,
        Instant::now(),
        cancel.clone(),
    );
    let admission = match admitted {
        Ok(admission) => admission,
        Err(refusal) => {
            tracing::debug!(%addr, %refusal, "inbound refused before the handshake");
            inner.emit(PeerEvent::Refused {
                addr,
                direction: Direction::Inbound,
                refusal: refusal.clone(),
            });
            return Err(refusal); // drops the stream (closed)
        }
    };
    if let Some(dropped) = admission.dropped {
        tracing::debug!(
            dropped = %dropped.ip,
            pending_for = ?dropped.started_at.elapsed(),
            for_peer = %addr,
            "pending handshakes full: dropping the longest-pending of the busiest group"
        );
        // Its task ends the handshake (HandshakeError::Cancelled) and closes the socket;
        // its slot was already released by the registry.
        dropped.cancel.cancel();
    }
    let slot = PendingSlot::new(inner.clone(), admission.id, cancel);
    inner.tracker.spawn(serve(
        inner.clone(),
        stream,
        addr,
        ConnectionKind::Inbound,
        None,
        Some(slot),
    ));
    Ok(())
}
