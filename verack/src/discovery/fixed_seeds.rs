//! Bitcoin Core's fixed seed nodes: a last resort when the DNS seeds give nothing.
//!
//! The table is generated from Core's `chainparamsseeds.h` by `scripts/gen-fixed-seeds.py`
//! ([`SOURCE_COMMIT`] names the Core commit) and stored as Core stores it, BIP155-serialized;
//! [`fixed_seeds`] decodes it with rust-bitcoin's [`AddrV2`]. As Core's `ConvertSeeds`,
//! [`seed_messages`] turns the seeds into address-manager entries with
//! [`seed_services`] and a last-seen time one to two weeks ago, so that any address learned
//! from a live peer ranks above them.

use std::fmt;

use bitcoin::consensus::Decodable;
use bitcoin::p2p::address::{AddrV2, AddrV2Message};
use bitcoin::p2p::ServiceFlags;
use bitcoin::Network;

use super::fixed_seeds_table as table;

/// The Bitcoin Core commit whose `src/chainparamsseeds.h` the table was generated from.
pub const SOURCE_COMMIT: &str = table::SOURCE_COMMIT;

/// Services assumed of a fixed seed (Core's `SeedsServiceFlags`: `NODE_NETWORK |
/// NODE_WITNESS`).
pub fn seed_services() -> ServiceFlags {
    ServiceFlags::NETWORK | ServiceFlags::WITNESS
}

/// One week in seconds: a seed's last-seen time is between one and two weeks before `now`.
const WEEK: u64 = 7 * 24 * 3600;

/// A fixed seed: a BIP155 address (IPv4, IPv6, TorV3, I2P or CJDNS) and its port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FixedSeed {
    /// The address.
    pub addr: AddrV2,
    /// The port (0 for I2P, which has none).
    pub port: u16,
}

impl FixedSeed {
    /// Whether this is an IPv4 or IPv6 address, reachable over plain TCP without a proxy.
    pub fn is_ip(&self) -> bool {
        matches!(self.addr, AddrV2::Ipv4(_) | AddrV2::Ipv6(_))
    }
}

/// A table entry that is not one BIP155 `(network id, address, port)` tuple.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedDecodeError {
    /// What was wrong.
    pub reason: String,
}

impl fmt::Display for SeedDecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid fixed seed entry: {}", self.reason)
    }
}

impl std::error::Error for SeedDecodeError {}

/// Decodes one entry: a BIP155 address (network id, compact-size length, bytes) followed by
/// a big-endian port, nothing after.
///
/// # Errors
/// [`SeedDecodeError`] when the address does not decode (unknown network id or wrong length
/// for its network), the port is missing, or bytes are left over.
pub fn decode_seed(entry: &[u8]) -> Result<FixedSeed, SeedDecodeError> {
    let mut rest = entry;
    let addr = AddrV2::consensus_decode(&mut rest).map_err(|e| SeedDecodeError {
        reason: e.to_string(),
    })?;
    if let AddrV2::Unknown(id, _) = addr {
        return Err(SeedDecodeError {
            reason: format!("unknown network id {id}"),
        });
    }
    match rest {
        [hi, lo] => Ok(FixedSeed {
            addr,
            port: u16::from_be_bytes([*hi, *lo]),
        }),
        _ => Err(SeedDecodeError {
            reason: format!(
                "{} bytes after the address, expected a 2-byte port",
                rest.len()
            ),
        }),
    }
}

/// The raw table of `network`: one BIP155-serialized entry per seed; empty for regtest.
pub fn raw_fixed_seeds(network: Network) -> &'static [&'static [u8]] {
    match network {
        Network::Bitcoin => table::MAIN,
        Network::Testnet => table::TESTNET3,
        Network::Testnet4 => table::TESTNET4,
        Network::Signet => table::SIGNET,
        _ => &[],
    }
}

/// Core's fixed seeds for `network`, decoded (every network Core lists: IPv4, IPv6, TorV3,
/// I2P, CJDNS); empty for regtest. Entries that do not decode are skipped (the table's test
/// checks there are none).
pub fn fixed_seeds(network: Network) -> Vec<FixedSeed> {
    raw_fixed_seeds(network)
        .iter()
        .filter_map(|entry| decode_seed(entry).ok())
        .collect()
}

/// The seeds as address-manager entries, as Core's `ConvertSeeds`: services
/// [`seed_services`], last seen between one and two weeks before `now` (Unix seconds).
/// `draw` gives one uniform value in `[0, 1)` per seed (randomness comes in; nothing is drawn
/// here).
pub fn seed_messages(
    seeds: &[FixedSeed],
    now: u64,
    mut draw: impl FnMut() -> f64,
) -> Vec<AddrV2Message> {
    seeds
        .iter()
        .map(|seed| {
            let back = WEEK + (draw().clamp(0.0, 1.0) * WEEK as f64) as u64;
            AddrV2Message {
                time: now.saturating_sub(back.min(2 * WEEK)) as u32,
                services: seed_services(),
                addr: seed.addr.clone(),
                port: seed.port,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    /// Counts per BIP155 network id (IPv4, IPv6, TorV3, I2P, CJDNS) as in Core's header.
    fn counts(network: Network) -> [usize; 5] {
        let mut n = [0; 5];
        for seed in fixed_seeds(network) {
            let i = match seed.addr {
                AddrV2::Ipv4(_) => 0,
                AddrV2::Ipv6(_) => 1,
                AddrV2::TorV3(_) => 2,
                AddrV2::I2p(_) => 3,
                AddrV2::Cjdns(_) => 4,
                ref other => panic!("unexpected network in the table: {other:?}"),
            };
            n[i] += 1;
        }
        n
    }

    #[test]
    fn every_entry_decodes_as_a_bip155_address() {
        for network in [
            Network::Bitcoin,
            Network::Testnet,
            Network::Testnet4,
            Network::Signet,
        ] {
            for (i, entry) in raw_fixed_seeds(network).iter().enumerate() {
                let seed = decode_seed(entry)
                    .unwrap_or_else(|e| panic!("{network:?} entry {i}: {e} ({entry:02x?})"));
                // Core's ports are the network's default, except I2P (no ports).
                match seed.addr {
                    AddrV2::I2p(_) => assert_eq!(seed.port, 0, "{network:?} entry {i}"),
                    _ => assert_ne!(seed.port, 0, "{network:?} entry {i}"),
                }
            }
        }
    }

    #[test]
    fn counts_per_network_match_cores_header() {
        assert_eq!(counts(Network::Bitcoin), [512, 512, 512, 512, 11]);
        assert_eq!(counts(Network::Testnet), [65, 38, 69, 8, 1]);
        assert_eq!(counts(Network::Testnet4), [63, 70, 78, 18, 1]);
        assert_eq!(counts(Network::Signet), [46, 47, 67, 9, 1]);
        assert!(fixed_seeds(Network::Regtest).is_empty(), "regtest has none");
        assert_eq!(SOURCE_COMMIT, "58a7869f860f022e6163dc3fae3106a0599830c5");
    }

    #[test]
    fn known_entries() {
        let main = fixed_seeds(Network::Bitcoin);
        // The first line of chainparams_seed_main: a CJDNS address on 8333.
        assert_eq!(
            main[0],
            FixedSeed {
                addr: AddrV2::Cjdns(Ipv6Addr::new(
                    0xfc11, 0xf769, 0x16e6, 0x3611, 0x58ae, 0x1d4a, 0xfcf7, 0x57a4
                )),
                port: 8333,
            }
        );
        assert!(main.contains(&FixedSeed {
            addr: AddrV2::Ipv4(Ipv4Addr::new(2, 121, 116, 198)),
            port: 8333,
        }));
        // The last line of chainparams_seed_testnet4: a TorV3 key on 48333.
        let last = fixed_seeds(Network::Testnet4).pop().unwrap();
        assert_eq!(last.port, 48333);
        match last.addr {
            AddrV2::TorV3(key) => assert_eq!(key[..4], [0xcd, 0x36, 0x64, 0xb0]),
            other => panic!("{other:?}"),
        }
        for seed in fixed_seeds(Network::Signet).iter().filter(|s| s.is_ip()) {
            assert_eq!(seed.port, 38333);
        }
    }

    #[test]
    fn malformed_entries_are_errors() {
        assert!(
            decode_seed(&[0x01, 0x04, 1, 2, 3, 4, 0x20]).is_err(),
            "short port"
        );
        assert!(
            decode_seed(&[0x01, 0x04, 1, 2, 3, 4, 0x20, 0x8d, 0]).is_err(),
            "trailing"
        );
        assert!(
            decode_seed(&[0x01, 0x05, 1, 2, 3, 4, 5, 0x20, 0x8d]).is_err(),
            "bad length"
        );
        assert!(
            decode_seed(&[0x09, 0x01, 7, 0x20, 0x8d]).is_err(),
            "unknown network"
        );
        assert_eq!(
            decode_seed(&[0x01, 0x04, 1, 2, 3, 4, 0x20, 0x8d]).unwrap(),
            FixedSeed {
                addr: AddrV2::Ipv4(Ipv4Addr::new(1, 2, 3, 4)),
                port: 8333
            }
        );
    }

    #[test]
    fn seed_messages_are_one_to_two_weeks_old_with_seed_services() {
        let seeds = fixed_seeds(Network::Signet);
        let now = 1_800_000_000;
        let mut draws = [0.0, 0.5, 0.999_999].into_iter().cycle();
        let msgs = seed_messages(&seeds, now, || draws.next().unwrap());
        assert_eq!(msgs.len(), seeds.len());
        for (m, s) in msgs.iter().zip(&seeds) {
            assert_eq!((&m.addr, m.port), (&s.addr, s.port));
            assert_eq!(m.services, seed_services());
            let age = now - u64::from(m.time);
            assert!((WEEK..=2 * WEEK).contains(&age), "age {age}");
        }
        assert_eq!(now - u64::from(msgs[0].time), WEEK);
        assert_eq!(now - u64::from(msgs[1].time), WEEK + WEEK / 2);
    }
}
