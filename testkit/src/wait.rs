//! Bounded polling: wait until a condition holds, or panic at a deadline.

use std::future::Future;
use std::time::Duration;

use tokio::time::{sleep, Instant};

/// How often [`wait_for`] polls: every 50 ms.
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Polls `poll` every [`POLL_INTERVAL`] until it returns `Some`, and returns that value.
///
/// `within` bounds the whole wait (wall-clock time); `poll` runs at least once and at most
/// `within / 50 ms + 1` times.
///
/// # Panics
/// When `within` has passed without `Some`: the message names `what` and the time waited.
pub async fn wait_for<T, F, Fut>(what: &str, within: Duration, mut poll: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = poll().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        sleep(POLL_INTERVAL).await;
    }
}

/// Polls `peer_info` (a `getpeerinfo` result) until an entry satisfies `pred`, up to
/// `within`; returns that entry. Shared by the Core and verack launchers.
///
/// # Panics
/// At the deadline, naming `node` and `what` and quoting the last `getpeerinfo` and
/// `log_tail()` (the node's log, read only then).
pub async fn wait_for_peer_entry<F, Fut>(
    node: &str,
    what: &str,
    within: Duration,
    mut peer_info: F,
    pred: impl Fn(&serde_json::Value) -> bool,
    log_tail: impl FnOnce() -> String,
) -> serde_json::Value
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Vec<serde_json::Value>>,
{
    let deadline = Instant::now() + within;
    loop {
        let peers = peer_info().await;
        if let Some(p) = peers.iter().find(|p| pred(p)) {
            return p.clone();
        }
        if Instant::now() >= deadline {
            panic!(
                "{node}: no peer {what} within {within:?}; getpeerinfo: {}\n--- {node} log tail ---\n{}",
                serde_json::Value::Array(peers),
                log_tail()
            );
        }
        sleep(POLL_INTERVAL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn returns_the_first_some() {
        let mut calls = 0;
        let got = wait_for("third call", Duration::from_secs(5), || {
            calls += 1;
            let now = calls;
            async move { (now >= 3).then_some(now) }
        })
        .await;
        assert_eq!(got, 3);
    }

    #[tokio::test]
    #[should_panic(expected = "waiting for never")]
    async fn panics_at_the_deadline() {
        wait_for("never", Duration::from_millis(120), || async { None::<()> }).await;
    }
}
