//! Sync progress: a progress bar on a terminal, a log line every few seconds otherwise.

use std::io::IsTerminal;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use tokio_util::sync::CancellationToken;

use crate::node::Node;

/// Reports until `stop` fires.
pub async fn report(node: Arc<Node>, stop: CancellationToken) {
    let terminal = std::io::stderr().is_terminal();
    let bar = terminal.then(|| {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} headers {pos}/{len} [{bar:30}] {per_sec} eta {eta} {msg}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        bar
    });
    let period = if terminal {
        Duration::from_millis(500)
    } else {
        Duration::from_secs(5)
    };
    let mut last_logged = -1;
    let mut last_count = node.headers_accepted.load(Ordering::Relaxed);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(period) => {}
            _ = stop.cancelled() => break,
        }
        let height = node.tip_height.load(Ordering::Relaxed);
        let best = node.best_known_height.load(Ordering::Relaxed).max(height);
        let count = node.headers_accepted.load(Ordering::Relaxed);
        match &bar {
            Some(bar) => {
                bar.set_length(best as u64);
                bar.set_position(height as u64);
            }
            None if height != last_logged => {
                let rate = (count - last_count) as f64 / period.as_secs_f64();
                tracing::info!(
                    height,
                    best_known = best,
                    headers_per_second = format!("{rate:.0}"),
                    "header sync"
                );
                last_logged = height;
            }
            None => {}
        }
        last_count = count;
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
}
