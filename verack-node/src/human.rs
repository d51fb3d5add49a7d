//! Durations, rates and counts as people read them in the log.

use std::time::Duration;

use bitcoin::Network;

/// The network as the user names it (`--network`): `mainnet`, `testnet3`, `testnet4`,
/// `signet`, `regtest`; not rust-bitcoin's `bitcoin`.
pub fn network(network: Network) -> &'static str {
    match network {
        Network::Bitcoin => "mainnet",
        Network::Testnet => "testnet3",
        Network::Testnet4 => "testnet4",
        Network::Signet => "signet",
        _ => "regtest",
    }
}

/// A duration, short: `0.4s`, `2.5s`, `45s`, `2m19s`, `1h02m`, `3d04h`. Below 10 s one
/// decimal, above that whole units, two units at most.
pub fn duration(d: Duration) -> String {
    let secs = d.as_secs_f64();
    if secs < 10.0 {
        return format!("{secs:.1}s");
    }
    let s = d.as_secs() + u64::from(d.subsec_millis() >= 500);
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        3600..=86_399 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86_400, s % 86_400 / 3600),
    }
}

/// `n` followed by `one` or `many`: `1 peer`, `0 peers`.
pub fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// A rate per second, rounded: `5230/s`, `12/s`, `0.5/s`.
pub fn rate(per_second: f64) -> String {
    if per_second >= 10.0 {
        format!("{per_second:.0}/s")
    } else {
        format!("{per_second:.1}/s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let ms = Duration::from_millis;
        assert_eq!(duration(ms(400)), "0.4s");
        assert_eq!(duration(ms(1_370)), "1.4s");
        assert_eq!(duration(ms(9_940)), "9.9s");
        assert_eq!(duration(ms(10_000)), "10s");
        assert_eq!(duration(ms(59_600)), "1m00s");
        assert_eq!(duration(Duration::from_secs(139)), "2m19s");
        assert_eq!(duration(Duration::from_secs(3_720)), "1h02m");
        assert_eq!(
            duration(Duration::from_secs(3 * 86_400 + 4 * 3600)),
            "3d04h"
        );
    }

    #[test]
    fn network_names_are_the_flags() {
        assert_eq!(network(Network::Bitcoin), "mainnet");
        assert_eq!(network(Network::Testnet), "testnet3");
        assert_eq!(network(Network::Testnet4), "testnet4");
        assert_eq!(network(Network::Regtest), "regtest");
    }

    #[test]
    fn counts_and_rates() {
        assert_eq!(count(1, "peer", "peers"), "1 peer");
        assert_eq!(count(0, "peer", "peers"), "0 peers");
        assert_eq!(rate(5230.4), "5230/s");
        assert_eq!(rate(0.46), "0.5/s");
    }
}
