//! Peer discovery: Core's DNS seeds per network, queried when the address manager knows too
//! few addresses, their answers added to it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bitcoin::p2p::address::AddrV2Message;
use bitcoin::p2p::ServiceFlags;
use bitcoin::Network;
use tokio_util::sync::CancellationToken;
use verack::server::{addr_v2, AddrManSource};

/// Below this many known addresses the DNS seeds are asked at once; above it, after
/// [`SEED_DELAY`] only if still needed (Core's `DNSSEEDS_DELAY_PEER_THRESHOLD`).
pub const SEED_THRESHOLD: usize = 1000;
/// How long a node that knows addresses waits before asking seeds (Core: 11 s).
pub const SEED_DELAY: Duration = Duration::from_secs(11);

/// Core's DNS seeds (src/kernel/chainparams.cpp); regtest has none.
pub fn dns_seeds(network: Network) -> &'static [&'static str] {
    match network {
        Network::Bitcoin => &[
            "seed.bitcoin.sipa.be",
            "dnsseed.bluematt.me",
            "seed.bitcoin.jonasschnelli.ch",
            "seed.btc.petertodd.net",
            "seed.bitcoin.sprovoost.nl",
            "dnsseed.emzy.de",
            "seed.bitcoin.wiz.biz",
            "seed.mainnet.achownodes.xyz",
        ],
        Network::Testnet => &[
            "testnet-seed.bitcoin.jonasschnelli.ch",
            "seed.tbtc.petertodd.net",
            "seed.testnet.bitcoin.sprovoost.nl",
            "testnet-seed.bluematt.me",
        ],
        Network::Testnet4 => &[
            "seed.testnet4.bitcoin.sprovoost.nl",
            "seed.testnet4.wiz.biz",
        ],
        Network::Signet => &[
            "seed.signet.bitcoin.sprovoost.nl",
            "seed.signet.achownodes.xyz",
        ],
        _ => &[],
    }
}

/// Asks the DNS seeds when the address manager knows fewer than [`SEED_THRESHOLD`]
/// addresses (after [`SEED_DELAY`] if it knows some), adding what they return. Logs clearly
/// when no seed answers (no network?).
pub async fn seed_if_needed(
    addrman: Arc<AddrManSource>,
    network: Network,
    port: u16,
    stop: CancellationToken,
) {
    let seeds = dns_seeds(network);
    if seeds.is_empty() {
        return;
    }
    let known = addrman.lock().size(None, None);
    if known >= SEED_THRESHOLD {
        return;
    }
    if known > 0 {
        tokio::select! {
            _ = tokio::time::sleep(SEED_DELAY) => {}
            _ = stop.cancelled() => return,
        }
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut total = 0;
    for seed in seeds {
        let found: Vec<SocketAddr> = tokio::select! {
            r = tokio::net::lookup_host((*seed, port)) => match r {
                Ok(addrs) => addrs.collect(),
                Err(e) => {
                    tracing::debug!(seed, error = %e, "DNS seed lookup failed");
                    continue;
                }
            },
            _ = stop.cancelled() => return,
        };
        let Some(first) = found.first() else { continue };
        // Core gives seed results a random age of 3-7 days, so they rank below live gossip.
        let entries: Vec<AddrV2Message> = found
            .iter()
            .map(|a| AddrV2Message {
                time: now.saturating_sub(3 * 86_400 + rand::random::<u64>() % (4 * 86_400)) as u32,
                services: ServiceFlags::NETWORK | ServiceFlags::WITNESS,
                addr: addr_v2(a.ip()),
                port: a.port(),
            })
            .collect();
        total += addrman.lock().add(&entries, &addr_v2(first.ip()), 0, now);
    }
    if total == 0 {
        tracing::warn!("no addresses from any DNS seed: is there a network connection? (use --connect or --addnode)");
    } else {
        tracing::info!(added = total, "addresses from DNS seeds");
    }
}
