//! The address manager as the server's [`AddressSource`]: outbound candidates with Core's
//! selection loop, attempt/good bookkeeping, addresses learned from peers, `getaddr` answers,
//! feeler candidates, and persistence. Tor, I2P and CJDNS entries are offered as
//! [stand-ins](crate::address::stand_in) when the server's dialer reaches their network.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};

use bitcoin::p2p::address::{AddrV2, AddrV2Message};
use bitcoin::p2p::ServiceFlags;

use crate::address::{Net, PeerAddr};
use crate::addrman::{AddrMan, AddrManError, AddrNetwork, GETADDR_MAX_ADDRESSES, GETADDR_MAX_PCT};
use crate::netgroup::canonical;

use super::{unix_now, AddressSource, ConnectionKind};

/// Selection attempts per outbound candidate search (Core's `ThreadOpenConnections`: 100).
pub const MAX_SELECT_TRIES: usize = 100;
/// Before this many tries, skip addresses tried in the last 10 minutes (Core: 30).
pub const SKIP_RECENT_UNTIL: usize = 30;
/// Penalty, in seconds, on the time of addresses learned from peers (Core: 2 hours).
pub const PEER_ADDR_TIME_PENALTY: u64 = 2 * 3600;

/// `ip` as a BIP155 address.
pub fn addr_v2(ip: IpAddr) -> AddrV2 {
    match canonical(ip) {
        IpAddr::V4(v4) => AddrV2::Ipv4(v4),
        IpAddr::V6(v6) => AddrV2::Ipv6(v6),
    }
}

/// An address manager shared with the server, persisted to `path` on
/// [`flush`](AddressSource::flush).
pub struct AddrManSource {
    man: Mutex<AddrMan>,
    path: Option<PathBuf>,
    /// `getaddr` answer limits: (most addresses, most percent of the table); 0 is no limit.
    getaddr_limits: (usize, usize),
}

impl AddrManSource {
    /// Wraps `man`, saving to `path` (if any) on flush.
    pub fn new(man: AddrMan, path: Option<PathBuf>) -> AddrManSource {
        AddrManSource {
            man: Mutex::new(man),
            path,
            getaddr_limits: (GETADDR_MAX_ADDRESSES, GETADDR_MAX_PCT),
        }
    }

    /// Answers `getaddr` with at most `max_count` addresses and at most `max_pct` percent of
    /// the table (each 0 for no limit; see [`AddrMan::get_addr`]) instead of Core's 1000 and
    /// 23 %. For tests on one machine, where a handful of addresses must all be handed out
    /// (23 % of 4 is none); a node on a real network keeps Core's limits.
    pub fn with_getaddr_limits(mut self, max_count: usize, max_pct: usize) -> AddrManSource {
        self.getaddr_limits = (max_count, max_pct);
        self
    }

    /// The manager, locked (for RPCs such as `getnodeaddresses`, and tests).
    pub fn lock(&self) -> MutexGuard<'_, AddrMan> {
        self.man.lock().expect("addrman lock")
    }

    /// Saves now.
    ///
    /// # Errors
    /// As [`AddrMan::save`]; `Ok` when there is no path.
    pub fn save(&self) -> Result<(), AddrManError> {
        match &self.path {
            Some(path) => self.lock().save(path),
            None => Ok(()),
        }
    }
}

/// The address manager's entry key for the peer the server keys by `addr`: the IP as BIP155,
/// or the real Tor/I2P/CJDNS address of a [stand-in](crate::address::stand_in) (`None` for
/// an unknown stand-in).
fn entry_key(addr: SocketAddr) -> Option<(AddrV2, u16)> {
    if !crate::address::is_stand_in(addr.ip()) {
        return Some((addr_v2(addr.ip()), addr.port()));
    }
    PeerAddr::from_stand_in(addr).map(|p| (p.to_addrv2(), p.port))
}

/// The server's key for an address manager entry: its socket address for IPv4/IPv6, a
/// stand-in for Tor, I2P and CJDNS; `None` for what [`PeerAddr`] does not represent.
fn server_key(entry: &AddrV2Message) -> Option<SocketAddr> {
    PeerAddr::try_from(entry).ok().map(|p| p.stand_in())
}

/// Core's network of the address manager for `net`.
fn addr_network(net: Net) -> AddrNetwork {
    match net {
        Net::Ipv4 => AddrNetwork::Ipv4,
        Net::Ipv6 => AddrNetwork::Ipv6,
        Net::Onion => AddrNetwork::TorV3,
        Net::I2p => AddrNetwork::I2p,
        Net::Cjdns => AddrNetwork::Cjdns,
    }
}

impl AddressSource for AddrManSource {
    /// IPv4 and IPv6 candidates ([`candidates_in`](AddressSource::candidates_in) those two).
    fn candidates(&self, kind: ConnectionKind, n: usize) -> Vec<SocketAddr> {
        self.candidates_in(kind, n, &[Net::Ipv4, Net::Ipv6])
    }

    /// Core's selection loop restricted to `nets` (its `Select` with the reachable
    /// networks); Tor, I2P and CJDNS entries as stand-ins.
    fn candidates_in(&self, _kind: ConnectionKind, n: usize, nets: &[Net]) -> Vec<SocketAddr> {
        if nets.is_empty() {
            return Vec::new();
        }
        let networks: Vec<AddrNetwork> = nets.iter().map(|&net| addr_network(net)).collect();
        let now = unix_now();
        let mut man = self.lock();
        let mut out: Vec<SocketAddr> = Vec::new();
        let mut repeats = 0;
        for tries in 0..MAX_SELECT_TRIES {
            // Stop once we have enough, or when the manager keeps offering what we already
            // have (it knows few addresses).
            if out.len() >= n || repeats >= 3 {
                break;
            }
            let Some((entry, last_try)) =
                man.select(false, Some(&networks), ServiceFlags::NONE, now)
            else {
                break;
            };
            // Core: early on, skip what was tried in the last 10 minutes.
            if tries < SKIP_RECENT_UNTIL && now.saturating_sub(last_try) < 600 {
                continue;
            }
            if let Some(sock) = server_key(&entry) {
                if out.contains(&sock) {
                    repeats += 1;
                } else {
                    out.push(sock);
                }
            }
        }
        out
    }

    fn dial_failed(&self, addr: SocketAddr) {
        if let Some((key, port)) = entry_key(addr) {
            self.lock().attempt(&key, port, true, unix_now());
        }
    }

    fn connected(&self, addr: SocketAddr) {
        if let Some((key, port)) = entry_key(addr) {
            self.lock().good(&key, port, unix_now());
        }
    }

    fn add(&self, addrs: &[AddrV2Message], source: SocketAddr) {
        let Some((source, _)) = entry_key(source) else {
            return;
        };
        self.lock()
            .add(addrs, &source, PEER_ADDR_TIME_PENALTY, unix_now());
    }

    fn get_addr(&self) -> Vec<AddrV2Message> {
        let (max_count, max_pct) = self.getaddr_limits;
        self.lock().get_addr(max_count, max_pct, None, unix_now())
    }

    /// A feeler candidate of any network (Tor, I2P and CJDNS as stand-ins).
    fn feeler_candidate(&self) -> Option<SocketAddr> {
        self.feeler_candidate_in(&Net::ALL)
    }

    /// Core's feeler choice: a tried entry whose slot a newer address wants (if of `nets`),
    /// else a new-table address selected within `nets`.
    fn feeler_candidate_in(&self, nets: &[Net]) -> Option<SocketAddr> {
        if nets.is_empty() {
            return None;
        }
        let networks: Vec<AddrNetwork> = nets.iter().map(|&net| addr_network(net)).collect();
        let now = unix_now();
        let mut man = self.lock();
        man.resolve_collisions(now);
        let collision = man.select_tried_collision().and_then(|(entry, _)| {
            server_key(&entry)
                .filter(|&k| super::dial::net_of_key(k).is_some_and(|n| nets.contains(&n)))
        });
        match collision {
            Some(key) => Some(key),
            None => {
                let (entry, _) = man.select(true, Some(&networks), ServiceFlags::NONE, now)?;
                server_key(&entry)
            }
        }
    }

    fn services_of(&self, addr: SocketAddr) -> Option<ServiceFlags> {
        let (key, port) = entry_key(addr)?;
        self.lock().get(&key, port).map(|info| info.addr.services)
    }

    fn set_services(&self, addr: SocketAddr, services: ServiceFlags) {
        if let Some((key, port)) = entry_key(addr) {
            self.lock().set_services(&key, port, services);
        }
    }

    fn known(&self) -> Option<usize> {
        Some(self.lock().size(None, None))
    }

    fn flush(&self) {
        if let Err(e) = self.save() {
            tracing::error!(error = %e, "could not save the address database");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::addrman::AddrManConfig;

    const ONION: &str = "pg6mmjiyjmcrsslvykfwnntlaru7p5svn6y2ymmju6nubxndf4pscryd.onion:8333";

    /// An address manager holding one routable IPv4 and one onion address (learned from a
    /// routable peer), as addrv2 brings them.
    fn source() -> (AddrManSource, SocketAddr, PeerAddr) {
        let mut man = AddrMan::new(AddrManConfig::default(), 3);
        let v4: SocketAddr = "8.8.8.8:8333".parse().unwrap();
        let onion: PeerAddr = ONION.parse().unwrap();
        let now = unix_now();
        let entries = [
            PeerAddr::from_socket_addr(v4).to_addrv2_message(now as u32, ServiceFlags::NETWORK),
            onion.to_addrv2_message(now as u32, ServiceFlags::NETWORK),
        ];
        let from = addr_v2("9.9.9.9".parse().unwrap());
        assert_eq!(man.add(&entries, &from, 0, now), 2);
        (AddrManSource::new(man, None), v4, onion)
    }

    #[test]
    fn onion_entries_are_candidates_only_where_onion_is_reachable() {
        let (src, v4, onion) = source();
        let kind = ConnectionKind::FullRelay;
        assert_eq!(src.candidates(kind, 8), vec![v4], "IP only, as before");
        assert_eq!(
            src.candidates_in(kind, 8, &[Net::Ipv4, Net::Ipv6]),
            vec![v4]
        );
        assert_eq!(
            src.candidates_in(kind, 8, &[Net::Onion]),
            vec![onion.stand_in()]
        );
        assert!(src.candidates_in(kind, 8, &[]).is_empty());
        assert!(src.candidates_in(kind, 8, &[Net::I2p]).is_empty());
        // Bookkeeping reaches the onion entry through its stand-in.
        let key = onion.stand_in();
        assert_eq!(src.services_of(key), Some(ServiceFlags::NETWORK));
        src.set_services(key, ServiceFlags::NETWORK | ServiceFlags::WITNESS);
        assert_eq!(
            src.services_of(key),
            Some(ServiceFlags::NETWORK | ServiceFlags::WITNESS)
        );
        src.connected(key);
        let tried = src
            .lock()
            .get(&onion.to_addrv2(), onion.port)
            .map(|info| info.in_tried);
        assert_eq!(tried, Some(true), "good() moved the onion entry to tried");
    }

    #[test]
    fn feelers_are_chosen_within_the_reachable_networks() {
        let (src, v4, onion) = source();
        for _ in 0..20 {
            assert_eq!(src.feeler_candidate_in(&[Net::Ipv4, Net::Ipv6]), Some(v4));
            assert_eq!(
                src.feeler_candidate_in(&[Net::Onion]),
                Some(onion.stand_in())
            );
        }
        assert_eq!(src.feeler_candidate_in(&[]), None);
    }
}
