//! [`OnlyNetworks`]: Bitcoin Core's `-onlynet` as an address-source wrapper.

use std::net::SocketAddr;

use bitcoin::p2p::address::AddrV2Message;
use bitcoin::p2p::ServiceFlags;

use crate::server::{AddressSource, ConnectionKind};

use super::{Net, PeerAddr};

/// Offers the inner source's outbound and feeler candidates only when their network is one
/// of `nets` (Core's `-onlynet`: automatic outbound connections only; manual peers and
/// inbound connections are not affected). Everything else (learning, `getaddr` answers,
/// persistence) passes through unchanged, so addresses of other networks are still kept
/// and relayed, as Core.
///
/// A candidate is classified with [`PeerAddr::from_stand_in`]: IPv4 (and IPv4-mapped
/// IPv6) is [`Net::Ipv4`], other IPv6 [`Net::Ipv6`], a stand-in its own network (an unknown
/// stand-in is never allowed).
#[derive(Debug)]
pub struct OnlyNetworks<S> {
    inner: S,
    nets: Vec<Net>,
}

/// Candidates asked of the inner source per candidate wanted, so filtering still leaves
/// enough: 4.
const OVERSAMPLE: usize = 4;

impl<S: AddressSource> OnlyNetworks<S> {
    /// `inner`, offering candidates of `nets` only. An empty `nets` allows every network
    /// (as Core without `-onlynet`).
    pub fn new(inner: S, nets: Vec<Net>) -> OnlyNetworks<S> {
        OnlyNetworks { inner, nets }
    }

    /// The inner source.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// Whether `addr` may be dialled automatically.
    pub fn allows(&self, addr: SocketAddr) -> bool {
        match PeerAddr::from_stand_in(addr) {
            Some(peer) => self.nets.is_empty() || self.nets.contains(&peer.net()),
            None => false,
        }
    }
}

impl<S: AddressSource> AddressSource for OnlyNetworks<S> {
    fn candidates(&self, kind: ConnectionKind, n: usize) -> Vec<SocketAddr> {
        if self.nets.is_empty() {
            return self.inner.candidates(kind, n);
        }
        let mut picked: Vec<SocketAddr> = self
            .inner
            .candidates(kind, n.saturating_mul(OVERSAMPLE))
            .into_iter()
            .filter(|a| self.allows(*a))
            .collect();
        picked.truncate(n);
        picked
    }
    /// The inner source's candidates in `nets` that are also allowed here.
    fn candidates_in(&self, kind: ConnectionKind, n: usize, nets: &[Net]) -> Vec<SocketAddr> {
        if self.nets.is_empty() {
            return self.inner.candidates_in(kind, n, nets);
        }
        let both: Vec<Net> = nets
            .iter()
            .copied()
            .filter(|net| self.nets.contains(net))
            .collect();
        if both.is_empty() {
            return Vec::new();
        }
        self.inner.candidates_in(kind, n, &both)
    }
    fn dial_failed(&self, addr: SocketAddr) {
        self.inner.dial_failed(addr)
    }
    fn connected(&self, addr: SocketAddr) {
        self.inner.connected(addr)
    }
    fn add(&self, addrs: &[AddrV2Message], source: SocketAddr) {
        self.inner.add(addrs, source)
    }
    fn get_addr(&self) -> Vec<AddrV2Message> {
        self.inner.get_addr()
    }
    fn feeler_candidate(&self) -> Option<SocketAddr> {
        self.inner.feeler_candidate().filter(|a| self.allows(*a))
    }
    fn feeler_candidate_in(&self, nets: &[Net]) -> Option<SocketAddr> {
        let both: Vec<Net> = nets
            .iter()
            .copied()
            .filter(|net| self.nets.is_empty() || self.nets.contains(net))
            .collect();
        self.inner.feeler_candidate_in(&both)
    }
    fn flush(&self) {
        self.inner.flush()
    }
    fn services_of(&self, addr: SocketAddr) -> Option<ServiceFlags> {
        self.inner.services_of(addr)
    }
    fn set_services(&self, addr: SocketAddr, services: ServiceFlags) {
        self.inner.set_services(addr, services)
    }
    fn known(&self) -> Option<usize> {
        self.inner.known()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::FixedAddresses;

    #[test]
    fn only_the_given_networks_are_offered() {
        let v4: SocketAddr = "1.2.3.4:8333".parse().unwrap();
        let v6: SocketAddr = "[2001:db8::1]:8333".parse().unwrap();
        let mapped: SocketAddr = "[::ffff:5.6.7.8]:8333".parse().unwrap();
        let all = || FixedAddresses::new(vec![v4, v6, mapped]);
        let kind = ConnectionKind::FullRelay;

        let mut only4 = OnlyNetworks::new(all(), vec![Net::Ipv4]).candidates(kind, 10);
        only4.sort();
        let mut want = vec![v4, mapped];
        want.sort();
        assert_eq!(only4, want);
        assert_eq!(
            OnlyNetworks::new(all(), vec![Net::Ipv6]).candidates(kind, 10),
            vec![v6]
        );
        assert!(OnlyNetworks::new(all(), vec![Net::Onion])
            .candidates(kind, 10)
            .is_empty());
        assert_eq!(
            OnlyNetworks::new(all(), vec![]).candidates(kind, 10).len(),
            3
        );
        assert_eq!(
            OnlyNetworks::new(all(), vec![Net::Ipv4])
                .candidates(kind, 1)
                .len(),
            1
        );
    }

    #[test]
    fn onion_stand_ins_are_classified_as_onion() {
        let v4: SocketAddr = "1.2.3.4:8333".parse().unwrap();
        let onion: PeerAddr = "pg6mmjiyjmcrsslvykfwnntlaru7p5svn6y2ymmju6nubxndf4pscryd.onion:8333"
            .parse()
            .unwrap();
        let key = onion.stand_in();
        let kind = ConnectionKind::FullRelay;
        let only_onion = OnlyNetworks::new(FixedAddresses::new(vec![v4, key]), vec![Net::Onion]);
        assert!(only_onion.allows(key));
        assert!(!only_onion.allows(v4));
        // The server asks for the networks its dialer reaches: onion among them, or not.
        assert_eq!(
            only_onion.candidates_in(kind, 10, &[Net::Ipv4, Net::Onion]),
            vec![key]
        );
        assert!(only_onion
            .candidates_in(kind, 10, &[Net::Ipv4, Net::Ipv6])
            .is_empty());
        let only_v4 = OnlyNetworks::new(FixedAddresses::new(vec![v4, key]), vec![Net::Ipv4]);
        assert_eq!(
            only_v4.candidates_in(kind, 10, &[Net::Ipv4, Net::Onion]),
            vec![v4]
        );
        // An unknown stand-in is never allowed.
        let unknown: SocketAddr = "[fd87:d87e:eb43:400::1]:1".parse().unwrap();
        assert!(!OnlyNetworks::new(FixedAddresses::new(vec![]), vec![]).allows(unknown));
    }
}
