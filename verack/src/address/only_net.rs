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
/// A candidate is classified with [`PeerAddr::from_socket_addr`]: IPv4 (and IPv4-mapped
/// IPv6) is [`Net::Ipv4`], other IPv6 [`Net::Ipv6`].
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
        self.nets.is_empty() || self.nets.contains(&PeerAddr::from_socket_addr(addr).net())
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
    fn flush(&self) {
        self.inner.flush()
    }
    fn services_of(&self, addr: SocketAddr) -> Option<ServiceFlags> {
        self.inner.services_of(addr)
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
}
