//! [`Sent`]: the completion of a queued send, as btcd's `doneChan` ("sent" notification).
//!
//! A send call encodes and queues its frame(s) before it returns; the [`Sent`] it hands back
//! resolves once every frame of the call has been written to the stream (and flushed), or
//! with the reason it never will be. Inside the crate each queued frame carries a
//! [`Notifier`] (one share of the call's completion); the writer calls
//! [`Notifier::written`], and a notifier dropped unwritten (queue cleared at disconnect, a
//! trickle round abandoned) fails the completion with [`SendError::Disconnected`].

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::sync::oneshot;

use super::SendError;

/// Resolves when the frame(s) of one send call have been written to the stream, or with why
/// they never will be.
///
/// Returned by [`PeerHandle::send_and_wait`](super::PeerHandle::send_and_wait) and the
/// `*_notify` send methods. The message is already queued when the call returns (btcd's
/// semantics): dropping a `Sent` does not cancel it, it only stops listening. Awaiting it
/// gives:
/// - `Ok(())`: every frame of the call was written to the stream and flushed (not a sign the
///   remote read it). For a `send_all` batch, the whole batch; for trickled inventory, the
///   `inv` messages carrying the items.
/// - `Err(`[`SendError::Disconnected`]`)`: the peer disconnected (or its
///   [`HandshakedPeer`](super::HandshakedPeer) was dropped without running) before the frame
///   was written; [`PeerHandle::disconnect_reason`](super::PeerHandle::disconnect_reason)
///   says why.
/// - the send call's own error, when `send_and_wait` could not queue
///   ([`SendError::Oversize`], [`SendError::QueueFull`], [`SendError::HandshakeMessage`],
///   [`SendError::Disconnected`]); the `*_notify` methods return those directly instead.
///
/// `Send`, `Unpin` and `'static`: it can be awaited from any task, or polled once, cheaply.
#[derive(Debug)]
pub struct Sent {
    state: State,
}

#[derive(Debug)]
enum State {
    Ready(Option<Result<(), SendError>>),
    Waiting(oneshot::Receiver<Result<(), SendError>>),
}

impl Sent {
    /// A completion and its first share (see [`Notifier::share`]).
    pub(crate) fn pair() -> (Sent, Notifier) {
        let (tx, rx) = oneshot::channel();
        let group = Arc::new(Group {
            remaining: AtomicUsize::new(1),
            tx: Mutex::new(Some(tx)),
        });
        (
            Sent {
                state: State::Waiting(rx),
            },
            Notifier { group, done: false },
        )
    }

    /// A completion that already has its outcome.
    pub(crate) fn ready(outcome: Result<(), SendError>) -> Sent {
        Sent {
            state: State::Ready(Some(outcome)),
        }
    }
}

impl Future for Sent {
    type Output = Result<(), SendError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.state {
            State::Ready(outcome) => Poll::Ready(outcome.take().unwrap_or(Ok(()))),
            State::Waiting(rx) => Pin::new(rx)
                .poll(cx)
                .map(|r| r.unwrap_or(Err(SendError::Disconnected))),
        }
    }
}

/// The shared state of one send call's completion.
#[derive(Debug)]
struct Group {
    /// Shares not yet written.
    remaining: AtomicUsize,
    tx: Mutex<Option<oneshot::Sender<Result<(), SendError>>>>,
}

impl Group {
    fn finish(&self, outcome: Result<(), SendError>) {
        let tx = self.tx.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(tx) = tx {
            let _ = tx.send(outcome);
        }
    }
}

/// One share of a [`Sent`]: the completion resolves `Ok` once every share was
/// [written](Self::written), and `Err` as soon as one fails or is dropped unwritten.
#[derive(Debug)]
pub(crate) struct Notifier {
    group: Arc<Group>,
    done: bool,
}

impl Notifier {
    /// Another share of the same completion (for a call that queues several frames).
    pub(crate) fn share(&self) -> Notifier {
        self.group.remaining.fetch_add(1, Ordering::AcqRel);
        Notifier {
            group: self.group.clone(),
            done: false,
        }
    }

    /// This share's frame was written.
    pub(crate) fn written(mut self) {
        self.done = true;
        if self.group.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.group.finish(Ok(()));
        }
    }

    /// This share's frame will never be written, because of `error`.
    pub(crate) fn fail(mut self, error: SendError) {
        self.done = true;
        self.group.finish(Err(error));
    }
}

impl Drop for Notifier {
    fn drop(&mut self) {
        if !self.done {
            self.group.finish(Err(SendError::Disconnected));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now(sent: &mut Sent) -> Option<Result<(), SendError>> {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        match Pin::new(sent).poll(&mut cx) {
            Poll::Ready(r) => Some(r),
            Poll::Pending => None,
        }
    }

    #[test]
    fn resolves_ok_only_after_every_share_is_written() {
        let (mut sent, first) = Sent::pair();
        let second = first.share();
        first.written();
        assert!(now(&mut sent).is_none());
        second.written();
        assert!(matches!(now(&mut sent), Some(Ok(()))));
    }

    #[test]
    fn a_dropped_or_failed_share_fails_it() {
        let (mut sent, first) = Sent::pair();
        let second = first.share();
        first.written();
        drop(second);
        assert!(matches!(now(&mut sent), Some(Err(SendError::Disconnected))));
        let (mut sent, first) = Sent::pair();
        first.fail(SendError::QueueFull { queued: 9 });
        assert!(matches!(
            now(&mut sent),
            Some(Err(SendError::QueueFull { queued: 9 }))
        ));
    }
}
