//! Keep-alive pings (BIP31) as a pure state machine: time and nonces come in, actions go out.

use std::time::Duration;

use tokio::time::Instant;

/// Protocol versions above this answer `ping` with `pong` (BIP31: 60001).
pub const BIP31_VERSION: u32 = 60000;

/// What the ping timer wants done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PingAction {
    /// Nothing now.
    Wait,
    /// Send `ping` with this nonce.
    Send(u64),
    /// The pending ping went unanswered for the timeout.
    TimedOut,
}

/// Ping schedule and round-trip tracking for one peer.
#[derive(Debug)]
pub(crate) struct PingState {
    interval: Duration,
    timeout: Duration,
    next_ping: Instant,
    /// Nonce and send time of the ping awaiting its pong.
    pending: Option<(u64, Instant)>,
    pub(crate) last_rtt: Option<Duration>,
    pub(crate) min_rtt: Option<Duration>,
}

impl PingState {
    /// The first ping is due at `now` (as Core pings right after the handshake), then every
    /// `interval` once the previous one is answered.
    pub(crate) fn new(now: Instant, interval: Duration, timeout: Duration) -> PingState {
        PingState {
            interval,
            timeout,
            next_ping: now,
            pending: None,
            last_rtt: None,
            min_rtt: None,
        }
    }

    /// `nonce` is drawn by the caller and must be non-zero; it is used only if a ping is due.
    pub(crate) fn poll(&mut self, now: Instant, nonce: u64) -> PingAction {
        match self.pending {
            Some((_, sent)) if now.saturating_duration_since(sent) >= self.timeout => {
                PingAction::TimedOut
            }
            Some(_) => PingAction::Wait,
            None if now >= self.next_ping => {
                self.pending = Some((nonce, now));
                self.next_ping = now + self.interval;
                PingAction::Send(nonce)
            }
            None => PingAction::Wait,
        }
    }

    /// A `pong` arrived; returns whether it ended the pending ping. As Core's net_processing:
    /// the matching nonce answers it (the round trip is measured); a nonce of 0 cancels it
    /// ("Nonce zero", no measurement); any other nonce leaves it pending ("Nonce mismatch").
    pub(crate) fn on_pong(&mut self, nonce: u64, now: Instant) -> bool {
        match self.pending {
            Some((expected, sent)) if expected == nonce => {
                let rtt = now.saturating_duration_since(sent);
                self.last_rtt = Some(rtt);
                self.min_rtt = Some(self.min_rtt.map_or(rtt, |m| m.min(rtt)));
                self.pending = None;
                true
            }
            Some(_) if nonce == 0 => self.cancel(),
            _ => false,
        }
    }

    /// A `pong` whose payload is shorter than its 8-byte nonce arrived: as Core ("Short
    /// payload"), the pending ping is cancelled without a measurement. Returns whether one was
    /// pending.
    pub(crate) fn cancel(&mut self) -> bool {
        self.pending.take().is_some()
    }

    /// How long the pending ping has been waiting for its pong at `now` (Core's `pingwait`);
    /// `None` when no ping is pending.
    pub(crate) fn waiting(&self, now: Instant) -> Option<Duration> {
        self.pending
            .map(|(_, sent)| now.saturating_duration_since(sent))
    }

    /// When [`poll`](Self::poll) next has something to do.
    pub(crate) fn next_deadline(&self) -> Instant {
        match self.pending {
            Some((_, sent)) => sent + self.timeout,
            None => self.next_ping,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_secs(60);

    #[test]
    fn pings_at_start_then_every_interval_after_the_pong() {
        let t0 = Instant::now();
        let mut p = PingState::new(t0, 2 * MIN, 20 * MIN);
        assert_eq!(p.poll(t0, 7), PingAction::Send(7));
        assert_eq!(
            p.poll(t0 + 3 * MIN, 8),
            PingAction::Wait,
            "one ping in flight at a time"
        );
        assert!(p.on_pong(7, t0 + Duration::from_millis(30)));
        assert_eq!(p.waiting(t0 + MIN), None, "answered");
        assert_eq!(p.last_rtt, Some(Duration::from_millis(30)));
        assert_eq!(p.next_deadline(), t0 + 2 * MIN);
        assert_eq!(p.poll(t0 + MIN, 9), PingAction::Wait);
        assert_eq!(p.poll(t0 + 2 * MIN, 9), PingAction::Send(9));
        assert!(p.on_pong(9, t0 + 2 * MIN + Duration::from_millis(10)));
        assert_eq!(p.min_rtt, Some(Duration::from_millis(10)));
        assert_eq!(p.last_rtt, Some(Duration::from_millis(10)));
    }

    #[test]
    fn zero_nonce_or_short_pong_cancels_without_measuring() {
        let t0 = Instant::now();
        let mut p = PingState::new(t0, MIN, 20 * MIN);
        assert_eq!(p.poll(t0, 7), PingAction::Send(7));
        assert!(!p.on_pong(9, t0 + MIN / 2), "mismatch keeps it pending");
        assert!(p.waiting(t0 + MIN / 2).is_some());
        assert!(p.on_pong(0, t0 + MIN / 2), "nonce zero cancels");
        assert_eq!(p.waiting(t0 + MIN / 2), None);
        assert_eq!(p.last_rtt, None, "a cancelled ping is not measured");
        assert!(
            !p.on_pong(7, t0 + MIN / 2),
            "the late matching pong answers nothing"
        );
        assert_eq!(p.last_rtt, None);
        assert_eq!(p.poll(t0 + MIN, 8), PingAction::Send(8));
        assert!(p.cancel(), "short payload cancels");
        assert!(!p.cancel());
        assert_eq!(p.last_rtt, None);
    }

    #[test]
    fn wrong_nonce_does_not_clear_and_timeout_fires() {
        let t0 = Instant::now();
        let mut p = PingState::new(t0, 2 * MIN, 20 * MIN);
        assert_eq!(p.waiting(t0), None, "nothing in flight yet");
        assert_eq!(p.poll(t0, 7), PingAction::Send(7));
        assert!(!p.on_pong(8, t0 + MIN));
        assert_eq!(
            p.waiting(t0 + MIN),
            Some(MIN),
            "still waiting for the right pong"
        );
        assert!(p.last_rtt.is_none());
        assert_eq!(p.next_deadline(), t0 + 20 * MIN);
        assert_eq!(
            p.poll(t0 + 20 * MIN - Duration::from_millis(1), 1),
            PingAction::Wait
        );
        assert_eq!(p.poll(t0 + 20 * MIN, 1), PingAction::TimedOut);
    }
}
