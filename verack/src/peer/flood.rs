//! The flood guard: messages per second averaged over the connection (Floresta's rule).

use std::time::Duration;

/// The average rate, counting at least one second so a burst right after connecting is not
/// divided by almost nothing.
pub(crate) fn message_rate(messages: u64, connected_for: Duration) -> f64 {
    messages as f64 / connected_for.as_secs_f64().max(1.0)
}

/// `Err(rate)` when `messages` over `connected_for` exceeds `limit` per second.
pub(crate) fn check_flood(
    limit: Option<f64>,
    messages: u64,
    connected_for: Duration,
) -> Result<(), f64> {
    match limit {
        Some(limit) => {
            let rate = message_rate(messages, connected_for);
            if rate > limit {
                Err(rate)
            } else {
                Ok(())
            }
        }
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn averages_over_at_least_a_second() {
        assert_eq!(
            check_flood(Some(10.0), 10, Duration::from_millis(5)),
            Ok(())
        );
        assert_eq!(
            check_flood(Some(10.0), 11, Duration::from_millis(5)),
            Err(11.0)
        );
        assert_eq!(
            check_flood(Some(10.0), 200, Duration::from_secs(20)),
            Ok(())
        );
        assert_eq!(
            check_flood(Some(10.0), 201, Duration::from_secs(20)),
            Err(10.05)
        );
        assert_eq!(check_flood(None, 1_000_000, Duration::ZERO), Ok(()));
    }
}
