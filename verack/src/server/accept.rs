//! The accept loop: a pending slot before `accept`, backoff on errors, checkpoint 1.

use std::sync::Arc;

use tokio::net::TcpListener;

use crate::backoff::Backoff;
use crate::peer::Direction;

use super::session::{serve, PendingSlot};
use super::{ConnectionKind, Inner, PeerEvent, PeerHandlers};

pub(crate) async fn accept_loop<H: PeerHandlers>(inner: Arc<Inner<H>>, listener: TcpListener) {
    let mut failures: u32 = 0;
    loop {
        // The slot is taken before accepting, so silent connections cannot starve the loop:
        // at most `max_pending_handshakes` sockets are ever waiting for a handshake.
        let permit = tokio::select! {
            p = inner.pending_slots.clone().acquire_owned() => p.expect("semaphore never closed"),
            _ = inner.cancel.cancelled() => return,
        };
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
        let banned = inner.is_banned(addr);
        let admitted = inner
            .registry()
            .begin_pending(addr.ip(), banned, &inner.config.admission);
        if let Err(refusal) = admitted {
            tracing::debug!(%addr, %refusal, "inbound refused before the handshake");
            inner.emit(PeerEvent::Refused {
                addr,
                direction: Direction::Inbound,
                refusal,
            });
            continue; // drops the stream (closed) and the permit
        }
        let _ = stream.set_nodelay(true);
        let slot = PendingSlot::new(inner.clone(), permit, addr.ip());
        inner.tracker.spawn(serve(
            inner.clone(),
            Box::new(stream),
            addr,
            ConnectionKind::Inbound,
            Some(slot),
        ));
    }
}
