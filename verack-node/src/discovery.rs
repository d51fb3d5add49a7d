//! Peer discovery for the node: the library's [`Seeding`] schedule run against the address
//! manager. DNS seeds are asked at start (or after 11 s when addresses are known) and again
//! with backoff while the address manager stays empty; Core's fixed seeds (IPv4 and IPv6
//! only: nothing else is reachable without a proxy) are added when it is still empty after
//! 60 s. What is planned is published in a [`DiscoveryStatus`] for the "nobody reachable"
//! report.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bitcoin::Network;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use verack::discovery::{
    dns_seeds, fixed_seeds, seed_messages, SeedSources, SeedStep, Seeding, SeedingPolicy,
};
use verack::server::{addr_v2, AddrManSource};

use crate::human;

/// How long one DNS seed lookup may take.
pub const LOOKUP_TIMEOUT: Duration = Duration::from_secs(15);

/// Opens an addr-fetch connection to a host name and port (the node passes
/// [`Server::addr_fetch`](verack::server::Server::addr_fetch)); it runs on its own, its answers
/// go to the address manager.
pub type AddrFetch = Arc<dyn Fn(String, u16) + Send + Sync>;

/// How DNS seeds are asked.
#[derive(Clone)]
pub enum SeedLookup {
    /// The service-filtered name (`x9.<seed>`) looked up with the system resolver, as Core's
    /// `ThreadDNSAddressSeed` ([`verack::discovery::query_dns_seed`]); a seed whose filtered
    /// name gives nothing gets an addr-fetch connection to its plain name, as Core's
    /// `AddAddrFetch(seed)`.
    System(AddrFetch),
    /// Through the SOCKS5 proxy, as Core with `-proxy`: an addr-fetch connection to each
    /// seed's name (resolved by the proxy), [`verack::proxy::seed::fetch_addresses`].
    Proxy(Arc<verack::proxy::Socks5Dialer>),
}

/// What discovery has done and plans, for the log.
#[derive(Debug, Default)]
pub struct DiscoveryStatus {
    inner: Mutex<Known>,
}

#[derive(Debug, Default, Clone)]
struct Known {
    running: bool,
    dns_seeds: usize,
    dns_rounds: u32,
    dns_added: usize,
    next_dns: Option<Instant>,
    fixed_at: Option<Instant>,
    fixed_added: Option<usize>,
}

impl DiscoveryStatus {
    fn publish(&self, seeding: &Seeding, update: impl FnOnce(&mut Known)) {
        let mut known = self.inner.lock().expect("discovery status lock");
        known.dns_rounds = seeding.dns_rounds();
        known.next_dns = seeding.next_dns();
        known.fixed_at = seeding.fixed_seeds_at();
        update(&mut known);
    }

    /// One line on where addresses may come from at `now`, the address manager holding
    /// `addresses`; `None` when discovery is not running (`--connect`).
    pub fn describe(&self, now: Instant, addresses: usize) -> Option<String> {
        let known = self.inner.lock().expect("discovery status lock").clone();
        if !known.running {
            return None;
        }
        let mut parts = vec![format!(
            "address manager: {}",
            human::count(addresses, "known address", "known addresses")
        )];
        if known.dns_seeds == 0 && known.fixed_at.is_none() && known.fixed_added.is_none() {
            parts.push("this network has no DNS or fixed seeds: use --connect or --addnode".into());
            return Some(parts.join("; "));
        }
        if known.dns_seeds > 0 {
            let mut dns = match known.dns_rounds {
                0 => "DNS seeds: not asked yet".to_string(),
                n => format!(
                    "DNS seeds: {} asked, {} from them",
                    human::count(n as usize, "round", "rounds"),
                    human::count(known.dns_added, "address", "addresses")
                ),
            };
            if let Some(at) = known.next_dns {
                let when = if at > now {
                    format!("in {}", human::duration(at - now))
                } else {
                    "now".into()
                };
                dns.push_str(&format!(", next round {when} if still empty"));
            }
            parts.push(dns);
        }
        match (known.fixed_added, known.fixed_at) {
            (Some(n), _) => parts.push(format!(
                "fixed seeds: {} added",
                human::count(n, "address", "addresses")
            )),
            (None, Some(at)) if at > now => parts.push(format!(
                "fixed seeds: in {} if still empty",
                human::duration(at - now)
            )),
            (None, Some(_)) => parts.push("fixed seeds: when the address manager empties".into()),
            (None, None) => {}
        }
        Some(parts.join("; "))
    }
}

/// Unix seconds now.
fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Runs the seeding schedule until it is finished or `stop` fires. `lookup` says how DNS
/// seeds are asked (through the proxy with `--proxy`); `outbound` gives the number of outbound full-relay peers; `manual` says
/// whether `--addnode` peers exist (the fixed seeds then wait 60 s even without DNS seeds).
#[allow(clippy::too_many_arguments)]
pub async fn run(
    addrman: Arc<AddrManSource>,
    network: Network,
    port: u16,
    lookup: SeedLookup,
    status: Arc<DiscoveryStatus>,
    outbound: impl Fn() -> usize,
    manual: bool,
    stop: CancellationToken,
) {
    let seeds = dns_seeds(network);
    let fixed: Vec<_> = fixed_seeds(network)
        .into_iter()
        .filter(|s| s.is_ip())
        .collect();
    let sources = SeedSources {
        dns: !seeds.is_empty(),
        fixed: !fixed.is_empty(),
        manual,
    };
    let known = addrman.lock().size(None, None);
    let mut seeding = Seeding::new(SeedingPolicy::CORE, Instant::now(), sources, known);
    status.publish(&seeding, |k| {
        k.running = true;
        k.dns_seeds = seeds.len();
    });
    loop {
        let now = Instant::now();
        let known = addrman.lock().size(None, None);
        match seeding.poll(now, known, outbound()) {
            SeedStep::QueryDns => {
                let added = tokio::select! {
                    added = query_seeds(&addrman, seeds, port, &lookup, network) => added,
                    _ = stop.cancelled() => return,
                };
                seeding.dns_queried(Instant::now(), rand::random());
                let round = seeding.dns_rounds();
                status.publish(&seeding, |k| k.dns_added += added);
                let next = seeding
                    .next_dns()
                    .map(|at| human::duration(at.saturating_duration_since(Instant::now())))
                    .unwrap_or_default();
                if added > 0 {
                    tracing::info!(
                        "DNS seeds: {} added",
                        human::count(added, "address", "addresses")
                    );
                } else if round == 1 {
                    tracing::warn!(
                        "DNS seeds: no address from any of {} seeds (no network?); asking again in {next} (or use --connect/--addnode)",
                        seeds.len()
                    );
                } else {
                    tracing::info!(
                        "DNS seeds: still no address after {} rounds; asking again in {next}",
                        round
                    );
                }
            }
            SeedStep::AddFixedSeeds => {
                let entries = seed_messages(&fixed, unix_now(), rand::random::<f64>);
                let source = addr_v2(IpAddr::V4(Ipv4Addr::LOCALHOST));
                let added = addrman.lock().add(&entries, &source, 0, unix_now());
                seeding.fixed_seeds_added();
                status.publish(&seeding, |k| k.fixed_added = Some(added));
                tracing::info!(
                    "added {} of Bitcoin Core's fixed seeds (IPv4/IPv6): the address manager was still empty",
                    added
                );
            }
            SeedStep::Wait(at) => {
                status.publish(&seeding, |_| {});
                tokio::select! {
                    _ = tokio::time::sleep_until(at) => {}
                    _ = stop.cancelled() => return,
                }
            }
            SeedStep::Finished => {
                status.publish(&seeding, |_| {});
                return;
            }
        }
    }
}

/// Asks every seed at once, as `lookup` says; returns how many addresses were new.
async fn query_seeds(
    addrman: &AddrManSource,
    seeds: &[&'static str],
    port: u16,
    lookup: &SeedLookup,
    network: Network,
) -> usize {
    match lookup {
        SeedLookup::System(addr_fetch) => query_dns_seeds(addrman, seeds, port, addr_fetch).await,
        SeedLookup::Proxy(dialer) => {
            query_seeds_via_proxy(addrman, seeds, port, dialer, network).await
        }
    }
}

/// Asks the node behind each seed's name for addresses through the proxy (each bounded by
/// the dialer's timeouts, the handshake's and [`verack::proxy::seed::DEFAULT_ANSWER_TIMEOUT`])
/// and adds the answers, with the proxy as their source; returns how many were new.
async fn query_seeds_via_proxy(
    addrman: &AddrManSource,
    seeds: &[&'static str],
    port: u16,
    dialer: &Arc<verack::proxy::Socks5Dialer>,
    network: Network,
) -> usize {
    use verack::proxy::{seed, Target};
    let mut fetches = tokio::task::JoinSet::new();
    for &name in seeds {
        let dialer = dialer.clone();
        fetches.spawn(async move {
            let target = Target::Name {
                host: name.to_owned(),
                port,
            };
            let config = verack::peer::PeerConfig::new(network);
            let found =
                seed::fetch_addresses(&dialer, target, config, seed::DEFAULT_ANSWER_TIMEOUT).await;
            (name, found)
        });
    }
    let source = addr_v2(dialer.proxy().ip());
    let mut total = 0;
    while let Some(joined) = fetches.join_next().await {
        let Ok((name, found)) = joined else { continue };
        match found {
            Ok(entries) => {
                let added = addrman.lock().add(&entries, &source, 0, unix_now());
                tracing::debug!(
                    seed = name,
                    found = entries.len(),
                    added,
                    "DNS seed answered through the proxy"
                );
                total += added;
            }
            Err(e) => tracing::debug!(seed = name, error = %e, "DNS seed through the proxy failed"),
        }
    }
    total
}

/// Asks every seed at once (each lookup bounded by [`LOOKUP_TIMEOUT`]) for its `x9` name and
/// adds the answers (at most 32 a seed, aged 3–7 days) to the address manager; a seed that
/// gives nothing gets an addr-fetch connection by name. Returns how many addresses were new.
async fn query_dns_seeds(
    addrman: &AddrManSource,
    seeds: &[&'static str],
    port: u16,
    addr_fetch: &AddrFetch,
) -> usize {
    let mut lookups = tokio::task::JoinSet::new();
    for &seed in seeds {
        lookups.spawn(async move {
            verack::discovery::query_dns_seed(
                seed,
                port,
                unix_now(),
                |host| verack::discovery::system_lookup(host, LOOKUP_TIMEOUT),
                rand::random::<f64>,
            )
            .await
        });
    }
    let now = unix_now();
    let mut total = 0;
    while let Some(joined) = lookups.join_next().await {
        let Ok(query) = joined else { continue };
        if query.addr_fetch() {
            tracing::debug!(
                seed = %query.seed,
                host = %query.host,
                error = ?query.error,
                "DNS seed gave no address for its service-filtered name; asking its node (addr-fetch)"
            );
            addr_fetch(query.seed.clone(), port);
            continue;
        }
        let source = query.source();
        let added = addrman.lock().add(&query.entries, &source, 0, now);
        tracing::debug!(seed = %query.seed, host = %query.host, found = query.entries.len(), added, "DNS seed answered");
        total += added;
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_line_says_what_is_planned() {
        let status = DiscoveryStatus::default();
        let t0 = Instant::now();
        assert_eq!(status.describe(t0, 0), None, "not running under --connect");
        let sources = SeedSources {
            dns: true,
            fixed: true,
            manual: false,
        };
        let mut seeding = Seeding::new(SeedingPolicy::CORE, t0, sources, 0);
        assert_eq!(seeding.poll(t0, 0, 0), SeedStep::QueryDns);
        seeding.dns_queried(t0, 0.5);
        status.publish(&seeding, |k| {
            k.running = true;
            k.dns_seeds = 8;
        });
        assert_eq!(
            status.describe(t0 + Duration::from_secs(5), 0).unwrap(),
            "address manager: 0 known addresses; DNS seeds: 1 round asked, 0 addresses from them, next round in 10s if still empty; fixed seeds: in 55s if still empty"
        );
        seeding.fixed_seeds_added();
        status.publish(&seeding, |k| k.fixed_added = Some(700));
        assert!(status
            .describe(t0 + Duration::from_secs(61), 700)
            .unwrap()
            .ends_with("fixed seeds: 700 addresses added"));
    }

    #[test]
    fn regtest_says_there_are_no_seeds() {
        let status = DiscoveryStatus::default();
        let t0 = Instant::now();
        let seeding = Seeding::new(SeedingPolicy::CORE, t0, SeedSources::default(), 0);
        status.publish(&seeding, |k| k.running = true);
        assert_eq!(
            status.describe(t0, 0).unwrap(),
            "address manager: 0 known addresses; this network has no DNS or fixed seeds: use --connect or --addnode"
        );
    }
}
