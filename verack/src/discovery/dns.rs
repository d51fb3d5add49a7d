//! Asking one DNS seed, as Bitcoin Core's `CConnman::ThreadDNSAddressSeed` (`src/net.cpp`).
//!
//! Core asks each seed for the service-filtered name `x9.<seed>` (the hex of
//! [`seeds_service_flags`], `NODE_NETWORK | NODE_WITNESS`), keeps at most
//! [`MAX_IPS_PER_SEED`] answers, gives each the seed's default port, the assumed services
//! [`seeds_assumed_service_flags`] and a random age of 3 to 7 days, and takes the seed's name
//! as their source. A seed that answers nothing for the filtered name (it may not support
//! filtering) gets an addr-fetch connection to its plain name instead
//! ([`SeedQuery::addr_fetch`]); with a name proxy Core skips the lookup and addr-fetches
//! every seed by name.
//!
//! The decisions are plain functions; [`query_dns_seed`] takes the lookup as an argument
//! ([`system_lookup`] is the system resolver), so tests and proxies can answer for it.

use std::future::Future;
use std::io;
use std::net::IpAddr;
use std::time::Duration;

use bitcoin::p2p::address::AddrV2Message;
use bitcoin::p2p::ServiceFlags;

use crate::server::addr_v2;

/// Most addresses taken from one seed (Core's `nMaxIPs`, 32), so that no seed dominates the
/// address manager.
pub const MAX_IPS_PER_SEED: usize = 32;

/// Bound on one system lookup in [`system_lookup`]: 20 seconds.
pub const DEFAULT_LOOKUP_TIMEOUT: Duration = Duration::from_secs(20);

/// The services asked of DNS seeds (Core's `SeedsServiceFlags`): `NODE_NETWORK |
/// NODE_WITNESS`, which names the `x9` subdomain.
pub fn seeds_service_flags() -> ServiceFlags {
    ServiceFlags::NETWORK | ServiceFlags::WITNESS
}

/// The services assumed of an address a seed hands out (Core's `SeedsAssumedServiceFlags`):
/// [`seeds_service_flags`] plus `NODE_P2P_V2`.
pub fn seeds_assumed_service_flags() -> ServiceFlags {
    seeds_service_flags() | ServiceFlags::P2P_V2
}

/// The service-filtered name Core looks up for `seed`: `x<services in hex>.<seed>`, e.g.
/// `x9.seed.bitcoin.sipa.be` for [`seeds_service_flags`].
pub fn filtered_seed_host(seed: &str, services: ServiceFlags) -> String {
    format!("x{:x}.{seed}", services.to_u64())
}

/// The address-manager entries for a seed's answer: at most [`MAX_IPS_PER_SEED`] of `ips`, in
/// order, each on `port` with [`seeds_assumed_service_flags`] and a time `now - 3 days - u ×
/// 4 days` (Unix seconds; `u` in `[0, 1)` drawn per entry by `uniform`), as Core's
/// `rand_uniform_delay(now - 3 * 24h, -4 * 24h)`: seed answers rank below live gossip.
pub fn seed_entries(
    ips: &[IpAddr],
    port: u16,
    now: u64,
    mut uniform: impl FnMut() -> f64,
) -> Vec<AddrV2Message> {
    const DAY: u64 = 86_400;
    ips.iter()
        .take(MAX_IPS_PER_SEED)
        .map(|ip| {
            let age = 3 * DAY + (uniform().clamp(0.0, 1.0) * (4 * DAY) as f64) as u64;
            AddrV2Message {
                time: u32::try_from(now.saturating_sub(age)).unwrap_or(u32::MAX),
                services: seeds_assumed_service_flags(),
                addr: addr_v2(*ip),
                port,
            }
        })
        .collect()
}

/// What asking one seed gave.
#[derive(Debug)]
pub struct SeedQuery {
    /// The seed's name as configured (the source of its entries in the address manager).
    pub seed: String,
    /// The name looked up ([`filtered_seed_host`]).
    pub host: String,
    /// The entries to add ([`seed_entries`]); empty if the lookup failed or found nothing.
    pub entries: Vec<AddrV2Message>,
    /// Why the lookup failed, if it did (a timeout is [`io::ErrorKind::TimedOut`]).
    pub error: Option<io::Error>,
}

impl SeedQuery {
    /// The address-manager source of [`entries`](Self::entries): the internal address of the
    /// looked-up name ([`internal_source`](crate::addrman::internal_source) of
    /// [`host`](Self::host)), as Core's `ThreadDNSAddressSeed`, so each seed is a source group
    /// of its own whatever IPs it hands out.
    pub fn source(&self) -> bitcoin::p2p::address::AddrV2 {
        crate::addrman::internal_source(&self.host)
    }

    /// Whether Core would now make an addr-fetch connection to the seed's plain name
    /// (`AddAddrFetch(seed)`): the filtered lookup gave no address.
    pub fn addr_fetch(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Asks `seed` as Core does: looks up [`filtered_seed_host`] of [`seeds_service_flags`] with
/// `lookup` (host name → IPs) and turns the answer into [`seed_entries`] on `port` (the
/// network's default port) at `now` (Unix seconds).
pub async fn query_dns_seed<F, Fut>(
    seed: &str,
    port: u16,
    now: u64,
    lookup: F,
    uniform: impl FnMut() -> f64,
) -> SeedQuery
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = io::Result<Vec<IpAddr>>>,
{
    let host = filtered_seed_host(seed, seeds_service_flags());
    let (entries, error) = match lookup(host.clone()).await {
        Ok(ips) => (seed_entries(&ips, port, now, uniform), None),
        Err(e) => (Vec::new(), Some(e)),
    };
    SeedQuery {
        seed: seed.to_owned(),
        host,
        entries,
        error,
    }
}

/// The system resolver for [`query_dns_seed`], bounded by `timeout`
/// ([`DEFAULT_LOOKUP_TIMEOUT`] is Core-like).
///
/// # Errors
/// The resolver's error, or [`io::ErrorKind::TimedOut`] after `timeout`.
pub async fn system_lookup(host: String, timeout: Duration) -> io::Result<Vec<IpAddr>> {
    let found = tokio::time::timeout(timeout, tokio::net::lookup_host((host.as_str(), 0)))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "DNS lookup timed out"))??;
    let mut ips: Vec<IpAddr> = Vec::new();
    for addr in found {
        if !ips.contains(&addr.ip()) {
            ips.push(addr.ip());
        }
    }
    Ok(ips)
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    #[test]
    fn filtered_name_is_cores_x9() {
        assert_eq!(
            filtered_seed_host("seed.bitcoin.sipa.be", seeds_service_flags()),
            "x9.seed.bitcoin.sipa.be"
        );
        assert_eq!(
            filtered_seed_host("s.example", ServiceFlags::NETWORK_LIMITED),
            "x400.s.example"
        );
        assert_eq!(seeds_assumed_service_flags().to_u64(), 0x809);
    }

    #[test]
    fn entries_are_capped_aged_and_on_the_default_port() {
        let ips: Vec<IpAddr> = (0..40u8)
            .map(|i| IpAddr::V4(Ipv4Addr::new(1, 2, 3, i)))
            .collect();
        let now = 1_800_000_000;
        let mut draws = [0.0, 0.999_999, 0.5].into_iter().cycle();
        let entries = seed_entries(&ips, 8333, now, || draws.next().unwrap());
        assert_eq!(entries.len(), MAX_IPS_PER_SEED);
        assert_eq!(entries[0].addr, addr_v2(ips[0]));
        assert_eq!(entries[31].addr, addr_v2(ips[31]));
        assert!(entries.iter().all(|e| e.port == 8333));
        assert!(entries
            .iter()
            .all(|e| e.services == seeds_assumed_service_flags()));
        assert_eq!(u64::from(entries[0].time), now - 3 * 86_400);
        assert!(u64::from(entries[1].time) > now - 7 * 86_400);
        assert!(u64::from(entries[1].time) < now - 6 * 86_400);
        assert_eq!(u64::from(entries[2].time), now - 5 * 86_400);
    }

    #[tokio::test]
    async fn asks_the_filtered_name_and_falls_back_to_addr_fetch_when_empty() {
        let asked = std::sync::Mutex::new(Vec::new());
        let q = query_dns_seed(
            "seed.example",
            18444,
            1_800_000_000,
            |host| {
                asked.lock().unwrap().push(host);
                async { Ok(vec![IpAddr::V4(Ipv4Addr::new(9, 9, 9, 9))]) }
            },
            || 0.5,
        )
        .await;
        assert_eq!(asked.lock().unwrap().as_slice(), ["x9.seed.example"]);
        assert_eq!(q.host, "x9.seed.example");
        assert_eq!(
            q.source(),
            crate::addrman::internal_source("x9.seed.example")
        );
        assert_eq!(q.entries.len(), 1);
        assert!(!q.addr_fetch());

        let empty =
            query_dns_seed("seed.example", 18444, 0, |_| async { Ok(vec![]) }, || 0.0).await;
        assert!(empty.addr_fetch());
        assert!(empty.error.is_none());
        let failed = query_dns_seed(
            "seed.example",
            18444,
            0,
            |_| async { Err(io::Error::new(io::ErrorKind::NotFound, "NXDOMAIN")) },
            || 0.0,
        )
        .await;
        assert!(failed.addr_fetch());
        assert_eq!(failed.error.unwrap().kind(), io::ErrorKind::NotFound);
    }

    #[tokio::test]
    async fn system_lookup_resolves_localhost() {
        let ips = system_lookup("localhost".into(), DEFAULT_LOOKUP_TIMEOUT)
            .await
            .expect("localhost resolves");
        assert!(ips.iter().all(|ip| ip.is_loopback()), "{ips:?}");
        assert!(!ips.is_empty());
    }
}
