//! Peer discovery until the address manager lands: DNS seeds per network (Core's
//! `vSeeds`), resolved in the background, offered in random order.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bitcoin::Network;
use rand::seq::SliceRandom;
use verack::server::{AddressSource, ConnectionKind};

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

/// Addresses learned from DNS seeds.
#[derive(Debug, Default, Clone)]
pub struct SeedAddresses {
    addrs: Arc<Mutex<Vec<SocketAddr>>>,
}

impl SeedAddresses {
    /// Resolves every seed of `network` once (`port` is the network's P2P port); logs clearly
    /// when nothing resolves (no network?).
    pub async fn resolve(&self, network: Network, port: u16) {
        let mut found = Vec::new();
        for seed in dns_seeds(network) {
            match tokio::net::lookup_host((*seed, port)).await {
                Ok(addrs) => found.extend(addrs),
                Err(e) => tracing::debug!(seed, error = %e, "DNS seed lookup failed"),
            }
        }
        found.sort();
        found.dedup();
        if found.is_empty() && !dns_seeds(network).is_empty() {
            tracing::warn!("no addresses from any DNS seed: is there a network connection? (use --connect or --addnode)");
        } else {
            tracing::info!(count = found.len(), "addresses from DNS seeds");
        }
        self.addrs.lock().expect("seed lock").extend(found);
    }
}

impl AddressSource for SeedAddresses {
    fn candidates(&self, _kind: ConnectionKind, n: usize) -> Vec<SocketAddr> {
        let mut addrs = self.addrs.lock().expect("seed lock").clone();
        addrs.shuffle(&mut rand::thread_rng());
        addrs.truncate(n);
        addrs
    }
}
