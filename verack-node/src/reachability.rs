//! "Nobody reachable" reports, as a pure state machine: connection events and the time come
//! in; when no peer has been connected for [`REPORT_AFTER`], a [`Report`] comes out saying
//! what was tried, why each attempt failed and when the next try is. Reports repeat while it
//! lasts, at doubling intervals up to [`MAX_REPORT_GAP`], and stop when a peer connects.

use std::time::Duration;

use tokio::time::Instant;

use crate::human;

/// How long without any peer before the first report (30 s).
pub const REPORT_AFTER: Duration = Duration::from_secs(30);
/// The longest gap between two reports while nobody is reachable (10 min).
pub const MAX_REPORT_GAP: Duration = Duration::from_secs(600);
/// Addresses listed in a report at most (the most recent); the rest are summed up.
pub const MAX_LISTED: usize = 8;
/// Attempts older than this are forgotten (1 h).
const FORGET_AFTER: Duration = Duration::from_secs(3600);

/// Failed attempts to reach one address or host name.
#[derive(Debug, Clone, PartialEq)]
struct Attempts {
    target: String,
    why: String,
    failures: u32,
    last: Instant,
    /// When the next attempt is due, for peers that are retried on a schedule (manual peers).
    retry_at: Option<Instant>,
}

/// What a report says: a headline and one line per address tried (and perhaps one about
/// the address sources), each to be logged on its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// E.g. `no peer reachable for 30s; tried 1 address`.
    pub headline: String,
    /// E.g. `127.0.0.1:1: connection refused (5 attempts, last 2.0s ago); next try in 8.0s`.
    pub lines: Vec<String>,
}

/// The reachability of the node's peers.
#[derive(Debug, Clone)]
pub struct Reachability {
    connected: usize,
    /// Since when no peer is connected (`None` while some are).
    alone_since: Option<Instant>,
    next_report: Option<Instant>,
    gap: Duration,
    attempts: Vec<Attempts>,
}

impl Reachability {
    /// A node that started at `now` with no peer.
    pub fn new(now: Instant) -> Reachability {
        Reachability {
            connected: 0,
            alone_since: Some(now),
            next_report: Some(now + REPORT_AFTER),
            gap: REPORT_AFTER,
            attempts: Vec::new(),
        }
    }

    /// The number of connected peers changed to `count` at `now`.
    pub fn peers(&mut self, now: Instant, count: usize) {
        let was = self.connected;
        self.connected = count;
        if count > 0 {
            self.alone_since = None;
            self.next_report = None;
            self.attempts.clear();
        } else if was > 0 || self.alone_since.is_none() {
            self.alone_since = Some(now);
            self.next_report = Some(now + REPORT_AFTER);
            self.gap = REPORT_AFTER;
        }
    }

    /// An attempt to reach `target` failed at `now`, because of `why`.
    pub fn failed(&mut self, now: Instant, target: &str, why: &str) {
        let entry = self.entry(now, target);
        entry.failures = entry.failures.saturating_add(1);
        entry.why = why.to_string();
        entry.last = now;
        entry.retry_at = None;
    }

    /// `target` will be tried again `after` from `now`; `failures` attempts in a row failed.
    pub fn retry(&mut self, now: Instant, target: &str, failures: u32, after: Duration) {
        let entry = self.entry(now, target);
        entry.failures = entry.failures.max(failures);
        entry.retry_at = Some(now + after);
    }

    /// What `target` last failed with, if it did.
    pub fn last_failure(&self, target: &str) -> Option<&str> {
        self.attempts
            .iter()
            .find(|a| a.target == target && !a.why.is_empty())
            .map(|a| a.why.as_str())
    }

    fn entry(&mut self, now: Instant, target: &str) -> &mut Attempts {
        self.attempts
            .retain(|a| now.saturating_duration_since(a.last) < FORGET_AFTER);
        match self.attempts.iter().position(|a| a.target == target) {
            Some(i) => &mut self.attempts[i],
            None => {
                self.attempts.push(Attempts {
                    target: target.to_string(),
                    why: String::new(),
                    failures: 0,
                    last: now,
                    retry_at: None,
                });
                self.attempts.last_mut().expect("just pushed")
            }
        }
    }

    /// When [`poll`](Self::poll) may next have a report (`None` while peers are connected).
    pub fn next_check(&self) -> Option<Instant> {
        self.next_report
    }

    /// The report due at `now`, if any. `sources` describes where further addresses may come
    /// from (e.g. `DNS seeds: no answer, next try in 40s`), one line each; it is appended.
    pub fn poll(&mut self, now: Instant, sources: &[String]) -> Option<Report> {
        let (since, due) = (self.alone_since?, self.next_report?);
        if self.connected > 0 || now < due {
            return None;
        }
        self.gap = (self.gap * 2).min(MAX_REPORT_GAP);
        self.next_report = Some(now + self.gap);
        let mut recent: Vec<&Attempts> = self.attempts.iter().collect();
        recent.sort_by_key(|a| std::cmp::Reverse(a.last));
        let tried = match recent.len() {
            0 => "nothing tried yet".to_string(),
            n => format!("tried {}", human::count(n, "address", "addresses")),
        };
        let headline = format!(
            "no peer reachable for {}; {tried}",
            human::duration(now.saturating_duration_since(since))
        );
        let mut lines: Vec<String> = recent
            .iter()
            .take(MAX_LISTED)
            .map(|a| attempt_line(a, now))
            .collect();
        if recent.len() > MAX_LISTED {
            let rest = &recent[MAX_LISTED..];
            let failures: u32 = rest.iter().map(|a| a.failures).sum();
            lines.push(format!(
                "and {} more {} ({failures} failed attempts)",
                rest.len(),
                if rest.len() == 1 {
                    "address"
                } else {
                    "addresses"
                },
            ));
        }
        lines.extend(sources.iter().cloned());
        Some(Report { headline, lines })
    }
}

fn attempt_line(a: &Attempts, now: Instant) -> String {
    let why = if a.why.is_empty() {
        "failed"
    } else {
        a.why.as_str()
    };
    let next = match a.retry_at {
        Some(at) if at > now => format!("next try in {}", human::duration(at - now)),
        Some(_) => "retrying now".to_string(),
        None => "next try when the address manager offers it again".to_string(),
    };
    format!(
        "{}: {why} ({}, last {} ago); {next}",
        a.target,
        human::count(a.failures.max(1) as usize, "attempt", "attempts"),
        human::duration(now.saturating_duration_since(a.last))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn reports_after_30_s_alone_with_each_failure_and_the_next_try() {
        let t0 = Instant::now();
        let mut r = Reachability::new(t0);
        r.failed(t0 + S(1), "127.0.0.1:1", "connection refused");
        r.retry(t0 + S(1), "127.0.0.1:1", 1, S(1));
        r.failed(t0 + S(22), "127.0.0.1:1", "connection refused");
        r.retry(t0 + S(22), "127.0.0.1:1", 5, S(16));
        assert_eq!(r.poll(t0 + S(29), &[]), None);
        assert_eq!(r.next_check(), Some(t0 + S(30)));
        let report = r
            .poll(t0 + S(30), &["address manager: 0 addresses".into()])
            .expect("a report at 30 s");
        assert_eq!(
            report.headline,
            "no peer reachable for 30s; tried 1 address"
        );
        assert_eq!(
            report.lines,
            vec![
                "127.0.0.1:1: connection refused (5 attempts, last 8.0s ago); next try in 8.0s"
                    .to_string(),
                "address manager: 0 addresses".to_string(),
            ]
        );
        assert_eq!(r.last_failure("127.0.0.1:1"), Some("connection refused"));
        // Then at doubling intervals: 60 s later, 120 s after that, up to 10 min.
        assert_eq!(r.poll(t0 + S(31), &[]), None);
        assert_eq!(r.next_check(), Some(t0 + S(90)));
        assert!(r.poll(t0 + S(90), &[]).is_some());
        assert_eq!(r.next_check(), Some(t0 + S(210)));
        for _ in 0..10 {
            let at = r.next_check().unwrap();
            assert!(r.poll(at, &[]).is_some());
        }
        let at = r.next_check().unwrap();
        r.poll(at, &[]);
        assert_eq!(r.next_check().unwrap() - at, MAX_REPORT_GAP);
    }

    #[test]
    fn a_connected_peer_silences_reports_and_a_departure_restarts_the_clock() {
        let t0 = Instant::now();
        let mut r = Reachability::new(t0);
        r.failed(t0, "10.0.0.1:8333", "timed out");
        r.peers(t0 + S(10), 1);
        assert_eq!(r.next_check(), None);
        assert_eq!(r.poll(t0 + S(40), &[]), None);
        r.peers(t0 + S(100), 0);
        assert_eq!(r.poll(t0 + S(129), &[]), None);
        let report = r.poll(t0 + S(130), &[]).unwrap();
        assert_eq!(
            report.headline,
            "no peer reachable for 30s; nothing tried yet"
        );
        assert!(
            report.lines.is_empty(),
            "attempts before the peer connected are cleared"
        );
    }

    #[test]
    fn many_addresses_are_listed_most_recent_first_then_summed_up() {
        let t0 = Instant::now();
        let mut r = Reachability::new(t0);
        for i in 0..12u64 {
            let target = format!("10.0.{i}.1:8333");
            r.failed(t0 + S(i), &target, "timed out");
        }
        let report = r.poll(t0 + S(30), &[]).unwrap();
        assert_eq!(
            report.headline,
            "no peer reachable for 30s; tried 12 addresses"
        );
        assert_eq!(report.lines.len(), MAX_LISTED + 1);
        assert!(report.lines[0].starts_with("10.0.11.1:8333: timed out (1 attempt, last 19s ago); next try when the address manager"), "{}", report.lines[0]);
        assert_eq!(
            report.lines[MAX_LISTED],
            "and 4 more addresses (4 failed attempts)"
        );
    }

    #[test]
    fn a_retry_without_a_recorded_reason_still_reports() {
        let t0 = Instant::now();
        let mut r = Reachability::new(t0);
        r.retry(t0 + S(5), "node.example:8333", 2, S(3));
        let report = r.poll(t0 + S(30), &[]).unwrap();
        assert_eq!(
            report.lines[0],
            "node.example:8333: failed (2 attempts, last 25s ago); retrying now"
        );
    }
}
