//! Header sync progress: a bar on a terminal, otherwise a log line every
//! [`LINE_PERIOD`] while syncing; in both cases one `synced at height H` line when caught up,
//! then a line when the best header moves (at most one per [`LINE_PERIOD`]).
//!
//! The decisions are in [`SyncTracker`], a pure state machine fed [`SyncSample`]s and the
//! time; it shows the best known height, percent, rate and ETA only when each is known (no
//! full bar for `0/0`, no rate before two samples, no ETA without a rate). The node is read
//! through the narrow [`SyncView`] trait.

use std::collections::VecDeque;
use std::io::IsTerminal;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::human;
use crate::node::Node;

/// Headers per second are measured over this window (10 s).
pub const RATE_WINDOW: Duration = Duration::from_secs(10);
/// At most one progress (or new best header) log line per this period (10 s).
pub const LINE_PERIOD: Duration = Duration::from_secs(10);
/// A synced node that falls this many headers behind the best known height is syncing again.
pub const BEHIND: u32 = 6;

/// What the reporter reads from the node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncSample {
    /// Our best header's height.
    pub height: u32,
    /// The best height any peer claimed or sent (at least `height` once known).
    pub best_known: u32,
    /// Headers accepted since start (its rate of change is the sync speed).
    pub accepted: u64,
    /// Peers connected now.
    pub peers: usize,
    /// The node considers its tip current (recent, with the minimum chain work).
    pub tip_current: bool,
}

/// The node as the reporter sees it.
pub trait SyncView: Send + Sync + 'static {
    /// A sample now.
    fn sample(&self) -> SyncSample;
}

impl SyncView for Node {
    fn sample(&self) -> SyncSample {
        let height = self.tip_height.load(Ordering::Relaxed).max(0) as u32;
        let peers = self.server().map_or(0, |s| {
            s.count(verack::peer::Direction::Inbound) + s.count(verack::peer::Direction::Outbound)
        });
        SyncSample {
            height,
            best_known: self.best_known_height.load(Ordering::Relaxed).max(0) as u32,
            accepted: self.headers_accepted.load(Ordering::Relaxed),
            peers,
            tip_current: self.is_synced(),
        }
    }
}

/// Where the sync is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// No peer has told us a height yet, or no peer is connected.
    Waiting,
    /// Behind the best known height.
    Syncing,
    /// Caught up.
    Synced,
}

/// The progress at one instant, each part present only when known.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Status {
    /// Our height.
    pub height: u32,
    /// The best known height, once a peer has told one.
    pub best: Option<u32>,
    /// Headers per second over the last [`RATE_WINDOW`], when headers arrived in it.
    pub rate: Option<f64>,
}

impl Status {
    /// Percent of the best known height reached.
    pub fn percent(&self) -> Option<f64> {
        let best = self.best.filter(|&b| b > 0)?;
        Some((f64::from(self.height) * 100.0 / f64::from(best)).min(100.0))
    }

    /// Time left at the current rate.
    pub fn eta(&self) -> Option<Duration> {
        let left = self.best?.checked_sub(self.height)?;
        let rate = self.rate.filter(|r| *r > 0.0)?;
        Some(Duration::from_secs_f64(f64::from(left) / rate))
    }

    /// E.g. `headers 120000/850000 (14.1%), 5230/s, eta 2m19s`, or
    /// `headers 0, best height not known yet` before any peer told one.
    pub fn text(&self) -> String {
        let mut text = match (self.best, self.percent()) {
            (Some(best), Some(pct)) => format!("headers {}/{best} ({pct:.1}%)", self.height),
            _ => format!("headers {}, best height not known yet", self.height),
        };
        if let Some(rate) = self.rate {
            text.push_str(&format!(", {}", human::rate(rate)));
        }
        if let Some(eta) = self.eta() {
            text.push_str(&format!(", eta {}", human::duration(eta)));
        }
        text
    }
}

/// A line to log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncLine {
    /// Progress while syncing (the [`Status::text`]).
    Progress(String),
    /// Caught up, at this height.
    Synced(u32),
    /// While synced, the best header moved up to `height`, `added` headers more since the
    /// last such line.
    NewTip {
        /// The new height.
        height: u32,
        /// Headers added since the last line.
        added: u32,
    },
}

impl std::fmt::Display for SyncLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SyncLine::Progress(text) => write!(f, "syncing {text}"),
            SyncLine::Synced(height) => write!(f, "synced at height {height}"),
            SyncLine::NewTip { height, added } => {
                write!(f, "new best header at height {height} (+{added})")
            }
        }
    }
}

/// Sync progress decisions.
#[derive(Debug, Clone)]
pub struct SyncTracker {
    phase: Phase,
    peer_seen: bool,
    samples: VecDeque<(Instant, u64)>,
    last_line: Option<(Instant, u32)>,
    last_tip: u32,
    last_tip_line: Option<Instant>,
}

impl SyncTracker {
    /// A tracker starting at `now`.
    pub fn new() -> SyncTracker {
        SyncTracker {
            phase: Phase::Waiting,
            peer_seen: false,
            samples: VecDeque::new(),
            last_line: None,
            last_tip: 0,
            last_tip_line: None,
        }
    }

    /// Where the sync is.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Takes the sample `s` taken at `now`; returns the status and the line to log, if any.
    pub fn update(&mut self, now: Instant, s: SyncSample) -> (Status, Option<SyncLine>) {
        self.peer_seen |= s.peers > 0;
        let best = (self.peer_seen || s.best_known > s.height).then(|| s.best_known.max(s.height));
        let status = Status {
            height: s.height,
            best,
            rate: self.rate(now, s.accepted),
        };
        let caught_up = s.peers > 0 && best.is_some_and(|b| s.height >= b) && s.tip_current;
        let behind = best.is_some_and(|b| b > s.height);
        let line = match self.phase {
            Phase::Waiting | Phase::Syncing if caught_up => {
                self.phase = Phase::Synced;
                self.last_tip = s.height;
                self.last_tip_line = None;
                Some(SyncLine::Synced(s.height))
            }
            Phase::Waiting | Phase::Syncing if behind => {
                self.phase = Phase::Syncing;
                self.progress_line(now, &status)
            }
            Phase::Waiting | Phase::Syncing => None,
            Phase::Synced if best.is_some_and(|b| b > s.height.saturating_add(BEHIND)) => {
                self.phase = Phase::Syncing;
                self.last_line = None;
                self.progress_line(now, &status)
            }
            Phase::Synced if s.height > self.last_tip => {
                let due = self
                    .last_tip_line
                    .is_none_or(|at| now.saturating_duration_since(at) >= LINE_PERIOD);
                if due {
                    let added = s.height - self.last_tip;
                    self.last_tip = s.height;
                    self.last_tip_line = Some(now);
                    Some(SyncLine::NewTip {
                        height: s.height,
                        added,
                    })
                } else {
                    None
                }
            }
            Phase::Synced => {
                // A shorter best chain (a reorganisation is logged by the node).
                self.last_tip = self.last_tip.min(s.height);
                None
            }
        };
        (status, line)
    }

    /// A progress line, at most one per [`LINE_PERIOD`] and only when the height moved.
    fn progress_line(&mut self, now: Instant, status: &Status) -> Option<SyncLine> {
        let due = match self.last_line {
            None => true,
            Some((at, height)) => {
                now.saturating_duration_since(at) >= LINE_PERIOD && status.height != height
            }
        };
        if !due {
            return None;
        }
        self.last_line = Some((now, status.height));
        Some(SyncLine::Progress(status.text()))
    }

    /// Headers per second over the window, if any arrived in it.
    fn rate(&mut self, now: Instant, accepted: u64) -> Option<f64> {
        self.samples.push_back((now, accepted));
        // Keep one sample at or before the window's start, to measure the whole window.
        while self.samples.len() > 2
            && now.saturating_duration_since(self.samples[1].0) >= RATE_WINDOW
        {
            self.samples.pop_front();
        }
        let (t0, a0) = *self.samples.front()?;
        let elapsed = now.saturating_duration_since(t0).as_secs_f64();
        let added = accepted.saturating_sub(a0);
        (elapsed >= 1.0 && added > 0).then(|| added as f64 / elapsed)
    }
}

impl Default for SyncTracker {
    fn default() -> Self {
        SyncTracker::new()
    }
}

/// Reports until `stop` fires: on a terminal a bar while syncing, otherwise progress lines;
/// the `synced` and new-tip lines in both cases.
pub async fn report(view: Arc<impl SyncView>, stop: CancellationToken) {
    let terminal = std::io::stderr().is_terminal();
    let period = if terminal {
        Duration::from_millis(500)
    } else {
        Duration::from_secs(1)
    };
    let mut tracker = SyncTracker::new();
    let mut bar: Option<(ProgressBar, bool)> = None;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(period) => {}
            _ = stop.cancelled() => break,
        }
        let (status, line) = tracker.update(Instant::now(), view.sample());
        if terminal && tracker.phase() == Phase::Syncing {
            draw(&mut bar, &status);
        } else if let Some((b, _)) = bar.take() {
            crate::logging::set_bar(None);
            b.finish_and_clear();
        }
        match line {
            Some(SyncLine::Progress(_)) if terminal => {}
            Some(line) => tracing::info!("{line}"),
            None => {}
        }
    }
    if let Some((b, _)) = bar {
        crate::logging::set_bar(None);
        b.finish_and_clear();
    }
}

/// Draws `status` on the bar (created on first use): a bar when the best height is known,
/// a spinner otherwise.
fn draw(bar: &mut Option<(ProgressBar, bool)>, status: &Status) {
    let with_bar = status.best.is_some();
    let (b, styled_as_bar) = bar.get_or_insert_with(|| {
        let b = ProgressBar::new(0);
        crate::logging::set_bar(Some(b.clone()));
        (b, !with_bar)
    });
    if *styled_as_bar != with_bar {
        let template = if with_bar {
            "{spinner} [{bar:30}] {msg}"
        } else {
            "{spinner} {msg}"
        };
        b.set_style(
            ProgressStyle::with_template(template)
                .expect("valid template")
                .progress_chars("=> "),
        );
        *styled_as_bar = with_bar;
    }
    if let Some(best) = status.best {
        b.set_length(u64::from(best));
        b.set_position(u64::from(status.height.min(best)));
    }
    b.set_message(status.text());
    b.tick();
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;

    fn sample(height: u32, best_known: u32, accepted: u64, peers: usize) -> SyncSample {
        SyncSample {
            height,
            best_known,
            accepted,
            peers,
            tip_current: true,
        }
    }

    #[test]
    fn status_shows_only_what_is_known() {
        let unknown = Status {
            height: 0,
            best: None,
            rate: None,
        };
        assert_eq!(unknown.text(), "headers 0, best height not known yet");
        assert_eq!((unknown.percent(), unknown.eta()), (None, None));
        let zero = Status {
            height: 0,
            best: Some(0),
            rate: None,
        };
        assert_eq!(zero.percent(), None, "no 100% bar for 0/0");
        let syncing = Status {
            height: 120_000,
            best: Some(850_000),
            rate: Some(5230.4),
        };
        assert_eq!(
            syncing.text(),
            "headers 120000/850000 (14.1%), 5230/s, eta 2m20s"
        );
        let no_rate = Status {
            rate: None,
            ..syncing
        };
        assert_eq!(no_rate.text(), "headers 120000/850000 (14.1%)");
    }

    #[test]
    fn waiting_then_syncing_then_one_synced_line_then_new_tips() {
        let t0 = Instant::now();
        let mut t = SyncTracker::new();
        // No peer yet: nothing said, best unknown.
        let (status, line) = t.update(t0, sample(0, 0, 0, 0));
        assert_eq!((status.best, line), (None, None));
        assert_eq!(t.phase(), Phase::Waiting);
        // A peer at 200: syncing, a first line at once, without a rate.
        let (_, line) = t.update(t0 + S(1), sample(0, 200, 0, 1));
        assert_eq!(
            line,
            Some(SyncLine::Progress("headers 0/200 (0.0%)".into()))
        );
        // Progress lines at most every 10 s, with the rate over the window and the ETA.
        let (_, line) = t.update(t0 + S(2), sample(20, 200, 20, 1));
        assert_eq!(line, None);
        let (status, line) = t.update(t0 + S(11), sample(110, 200, 110, 1));
        assert_eq!(status.rate, Some(11.0));
        assert_eq!(
            line,
            Some(SyncLine::Progress(
                "headers 110/200 (55.0%), 11/s, eta 8.2s".into()
            ))
        );
        // Caught up: one line.
        let (_, line) = t.update(t0 + S(12), sample(200, 200, 200, 1));
        assert_eq!(line, Some(SyncLine::Synced(200)));
        assert_eq!(line.unwrap().to_string(), "synced at height 200");
        let (_, line) = t.update(t0 + S(13), sample(200, 200, 200, 1));
        assert_eq!(line, None, "said once");
        // New blocks while synced: a line at once, then at most one per 10 s, summed up.
        let (_, line) = t.update(t0 + S(14), sample(203, 203, 203, 1));
        assert_eq!(
            line.unwrap().to_string(),
            "new best header at height 203 (+3)"
        );
        assert_eq!(t.update(t0 + S(15), sample(204, 204, 204, 1)).1, None);
        assert_eq!(t.update(t0 + S(20), sample(206, 206, 206, 1)).1, None);
        assert_eq!(
            t.update(t0 + S(24), sample(206, 206, 206, 1)).1,
            Some(SyncLine::NewTip {
                height: 206,
                added: 3
            })
        );
        // Far behind again (a peer with a much longer chain): syncing, then synced again.
        let (_, line) = t.update(t0 + S(25), sample(206, 400, 206, 2));
        assert!(matches!(line, Some(SyncLine::Progress(_))), "{line:?}");
        let (_, line) = t.update(t0 + S(26), sample(400, 400, 400, 2));
        assert_eq!(line, Some(SyncLine::Synced(400)));
    }

    #[test]
    fn not_synced_without_a_peer_or_a_current_tip() {
        let t0 = Instant::now();
        let mut t = SyncTracker::new();
        // A stored chain at 500 and no peer: waiting, not synced.
        assert_eq!(t.update(t0, sample(500, 500, 0, 0)).1, None);
        // A peer claiming 0 (or our own height) while our tip is old: not synced either.
        let stale = SyncSample {
            tip_current: false,
            ..sample(500, 500, 0, 1)
        };
        assert_eq!(t.update(t0 + S(1), stale).1, None);
        assert_eq!(t.phase(), Phase::Waiting);
        assert_eq!(
            t.update(t0 + S(2), sample(500, 500, 0, 1)).1,
            Some(SyncLine::Synced(500))
        );
    }

    #[test]
    fn the_rate_forgets_old_headers() {
        let t0 = Instant::now();
        let mut t = SyncTracker::new();
        t.update(t0, sample(0, 10_000, 0, 1));
        let (status, _) = t.update(t0 + S(5), sample(5_000, 10_000, 5_000, 1));
        assert_eq!(status.rate, Some(1000.0));
        // Nothing for over a window: no rate, no ETA (not a slowly decaying one).
        t.update(t0 + S(10), sample(5_000, 10_000, 5_000, 1));
        t.update(t0 + S(20), sample(5_000, 10_000, 5_000, 1));
        let (status, _) = t.update(t0 + S(21), sample(5_000, 10_000, 5_000, 1));
        assert_eq!((status.rate, status.eta()), (None, None));
        assert_eq!(status.text(), "headers 5000/10000 (50.0%)");
    }
}
