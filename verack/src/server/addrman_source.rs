//! The address manager as the server's [`AddressSource`]: outbound candidates with Core's
//! selection loop, attempt/good bookkeeping, addresses learned from peers, `getaddr` answers,
//! feeler candidates, and persistence.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};

use bitcoin::p2p::address::{AddrV2, AddrV2Message};
use bitcoin::p2p::ServiceFlags;

use crate::addrman::{AddrMan, AddrManError, GETADDR_MAX_ADDRESSES, GETADDR_MAX_PCT};
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

impl AddressSource for AddrManSource {
    fn candidates(&self, _kind: ConnectionKind, n: usize) -> Vec<SocketAddr> {
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
            let Some((entry, last_try)) = man.select(false, None, ServiceFlags::NONE, now) else {
                break;
            };
            // Core: early on, skip what was tried in the last 10 minutes.
            if tries < SKIP_RECENT_UNTIL && now.saturating_sub(last_try) < 600 {
                continue;
            }
            if let Ok(sock) = entry.socket_addr() {
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
        self.lock()
            .attempt(&addr_v2(addr.ip()), addr.port(), true, unix_now());
    }

    fn connected(&self, addr: SocketAddr) {
        self.lock()
            .good(&addr_v2(addr.ip()), addr.port(), unix_now());
    }

    fn add(&self, addrs: &[AddrV2Message], source: SocketAddr) {
        self.lock().add(
            addrs,
            &addr_v2(source.ip()),
            PEER_ADDR_TIME_PENALTY,
            unix_now(),
        );
    }

    fn get_addr(&self) -> Vec<AddrV2Message> {
        let (max_count, max_pct) = self.getaddr_limits;
        self.lock().get_addr(max_count, max_pct, None, unix_now())
    }

    fn feeler_candidate(&self) -> Option<SocketAddr> {
        let now = unix_now();
        let mut man = self.lock();
        man.resolve_collisions(now);
        let (entry, _) = match man.select_tried_collision() {
            Some(found) => found,
            None => man.select(true, None, ServiceFlags::NONE, now)?,
        };
        entry.socket_addr().ok()
    }

    fn services_of(&self, addr: SocketAddr) -> Option<ServiceFlags> {
        self.lock()
            .get(&addr_v2(addr.ip()), addr.port())
            .map(|info| info.addr.services)
    }

    fn set_services(&self, addr: SocketAddr, services: ServiceFlags) {
        self.lock()
            .set_services(&addr_v2(addr.ip()), addr.port(), services);
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
