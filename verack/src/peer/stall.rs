//! Deadlines for requests that expect a reply (btcd's stall handler, Core's
//! `HEADERS_RESPONSE_TIME`), as a pure structure.

use std::collections::{HashSet, VecDeque};
use std::time::Duration;

use tokio::time::Instant;

use super::StallKind;

/// At most this many outstanding `getdata` items are tracked (Core's `MAX_INV_SZ`); items
/// requested beyond it are not tracked.
pub(crate) const MAX_TRACKED_ITEMS: usize = 50_000;
/// At most this many outstanding `getheaders` are tracked.
pub(crate) const MAX_TRACKED_HEADERS: usize = 64;

/// Outstanding requests and their deadlines.
#[derive(Debug)]
pub(crate) struct StallTracker {
    headers_timeout: Duration,
    data_timeout: Duration,
    /// Deadlines of outstanding `getheaders`, oldest first; each `headers` answers one.
    headers: VecDeque<Instant>,
    /// `(deadline, item hash)` in request order; entries no longer outstanding are skipped.
    data_order: VecDeque<(Instant, [u8; 32])>,
    data_outstanding: HashSet<[u8; 32]>,
}

impl StallTracker {
    pub(crate) fn new(headers_timeout: Duration, data_timeout: Duration) -> StallTracker {
        StallTracker {
            headers_timeout,
            data_timeout,
            headers: VecDeque::new(),
            data_order: VecDeque::new(),
            data_outstanding: HashSet::new(),
        }
    }

    /// We sent `getheaders`.
    pub(crate) fn requested_headers(&mut self, now: Instant) {
        if self.headers.len() < MAX_TRACKED_HEADERS {
            self.headers.push_back(now + self.headers_timeout);
        }
    }

    /// We sent `getdata` for an item with this hash.
    pub(crate) fn requested_item(&mut self, hash: [u8; 32], now: Instant) {
        if self.data_outstanding.len() < MAX_TRACKED_ITEMS && self.data_outstanding.insert(hash) {
            self.data_order.push_back((now + self.data_timeout, hash));
        }
    }

    /// A `headers` message arrived.
    pub(crate) fn received_headers(&mut self) {
        self.headers.pop_front();
    }

    /// An item (block, tx, merkleblock, cmpctblock, or a `notfound` entry) arrived.
    pub(crate) fn received_item(&mut self, hash: &[u8; 32]) {
        if self.data_outstanding.remove(hash) && self.data_outstanding.is_empty() {
            self.data_order.clear();
        }
    }

    /// Whether any item is outstanding (so callers can skip hashing replies).
    pub(crate) fn awaits_items(&self) -> bool {
        !self.data_outstanding.is_empty()
    }

    /// The kind of the first request whose deadline passed, if any.
    pub(crate) fn expired(&mut self, now: Instant) -> Option<(StallKind, Duration)> {
        if self.headers.front().is_some_and(|d| *d <= now) {
            return Some((StallKind::Headers, self.headers_timeout));
        }
        self.drop_answered();
        match self.data_order.front() {
            Some((deadline, _)) if *deadline <= now => Some((StallKind::Data, self.data_timeout)),
            _ => None,
        }
    }

    /// The earliest deadline, if any request is outstanding.
    pub(crate) fn next_deadline(&mut self) -> Option<Instant> {
        self.drop_answered();
        let data = self.data_order.front().map(|(d, _)| *d);
        match (self.headers.front().copied(), data) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn drop_answered(&mut self) {
        while let Some((_, hash)) = self.data_order.front() {
            if self.data_outstanding.contains(hash) {
                break;
            }
            self.data_order.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracker() -> StallTracker {
        StallTracker::new(Duration::from_secs(120), Duration::from_secs(30))
    }

    #[test]
    fn headers_reply_clears_the_deadline() {
        let t0 = Instant::now();
        let mut s = tracker();
        s.requested_headers(t0);
        assert_eq!(s.next_deadline(), Some(t0 + Duration::from_secs(120)));
        assert_eq!(s.expired(t0 + Duration::from_secs(119)), None);
        s.received_headers();
        assert_eq!(s.expired(t0 + Duration::from_secs(500)), None);
        assert_eq!(s.next_deadline(), None);
    }

    #[test]
    fn unanswered_headers_expire() {
        let t0 = Instant::now();
        let mut s = tracker();
        s.requested_headers(t0);
        assert!(matches!(
            s.expired(t0 + Duration::from_secs(120)),
            Some((StallKind::Headers, _))
        ));
    }

    #[test]
    fn each_item_must_arrive_or_be_notfound() {
        let t0 = Instant::now();
        let mut s = tracker();
        s.requested_item([1; 32], t0);
        s.requested_item([2; 32], t0 + Duration::from_secs(10));
        s.received_item(&[1; 32]);
        // The first is answered: the next deadline is the second's.
        assert_eq!(s.next_deadline(), Some(t0 + Duration::from_secs(40)));
        assert_eq!(s.expired(t0 + Duration::from_secs(39)), None);
        assert!(matches!(
            s.expired(t0 + Duration::from_secs(40)),
            Some((StallKind::Data, _))
        ));
        s.received_item(&[2; 32]);
        assert_eq!(s.expired(t0 + Duration::from_secs(400)), None);
        assert!(!s.awaits_items());
    }
}
