//! [`NetworkDialer`]: which way each network is reached, as Bitcoin Core's `-proxy`,
//! `-onion` and `IsReachable` decide it.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::address::{Host, Net, PeerAddr};
use crate::server::{DialFuture, Dialer, ResolveFuture, TcpDialer};

use super::Socks5Dialer;

/// How peers of one network are reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// A TCP connection from this host (IPv4/IPv6 without a proxy; CJDNS when enabled).
    Direct,
    /// Through the SOCKS5 proxy at this address.
    Proxy(SocketAddr),
    /// Not at all: candidates of the network are skipped (Core's `IsReachable` false) and a
    /// manual dial fails with [`std::io::ErrorKind::Unsupported`].
    Unreachable,
}

/// A [`Dialer`] that routes by network as Bitcoin Core does:
///
/// | network | route |
/// | --- | --- |
/// | IPv4, IPv6 | the IP proxy (`-proxy`) if set, else direct |
/// | Tor | the onion proxy (`-onion`; the node passes `-proxy` when `-onion` is not given, as Core), else unreachable |
/// | I2P | unreachable (Core reaches I2P through a SAM router, `-i2psam`, not SOCKS5) |
/// | CJDNS | direct when [`with_cjdns_reachable`](NetworkDialer::with_cjdns_reachable) (Core's `-cjdnsreachable`), else unreachable |
///
/// A Tor peer's name goes to the onion proxy unresolved; nothing of an unreachable network is
/// ever dialled. `-onlynet` is not applied here (it limits automatic connections only:
/// [`OnlyNetworks`](crate::address::OnlyNetworks)).
#[derive(Debug, Clone, Default)]
pub struct NetworkDialer {
    ip_proxy: Option<Arc<Socks5Dialer>>,
    onion_proxy: Option<Arc<Socks5Dialer>>,
    cjdns: bool,
}

impl NetworkDialer {
    /// IPv4 and IPv6 direct; Tor, I2P and CJDNS unreachable.
    pub fn new() -> NetworkDialer {
        NetworkDialer::default()
    }

    /// IPv4 and IPv6 through `proxy` (Core's `-proxy`); `None`: direct.
    pub fn with_ip_proxy(mut self, proxy: Option<Socks5Dialer>) -> NetworkDialer {
        self.ip_proxy = proxy.map(Arc::new);
        self
    }

    /// Tor peers through `proxy` (Core's `-onion`, which defaults to `-proxy`); `None`: Tor
    /// unreachable (Core's `-onion=0`, or no proxy at all).
    pub fn with_onion_proxy(mut self, proxy: Option<Socks5Dialer>) -> NetworkDialer {
        self.onion_proxy = proxy.map(Arc::new);
        self
    }

    /// CJDNS peers reachable directly (Core's `-cjdnsreachable`; default off: an fc00::/8
    /// address is dialled only on a host that runs CJDNS).
    pub fn with_cjdns_reachable(mut self, reachable: bool) -> NetworkDialer {
        self.cjdns = reachable;
        self
    }

    /// How `net` is reached.
    pub fn route(&self, net: Net) -> Route {
        let via = |p: &Option<Arc<Socks5Dialer>>| match p {
            Some(p) => Route::Proxy(p.proxy()),
            None => Route::Unreachable,
        };
        match net {
            Net::Ipv4 | Net::Ipv6 => match &self.ip_proxy {
                Some(p) => Route::Proxy(p.proxy()),
                None => Route::Direct,
            },
            Net::Onion => via(&self.onion_proxy),
            Net::I2p => Route::Unreachable,
            Net::Cjdns if self.cjdns => Route::Direct,
            Net::Cjdns => Route::Unreachable,
        }
    }

    /// The SOCKS5 dialer `net` goes through, if any.
    pub fn proxy_for(&self, net: Net) -> Option<&Socks5Dialer> {
        match net {
            Net::Ipv4 | Net::Ipv6 => self.ip_proxy.as_deref(),
            Net::Onion => self.onion_proxy.as_deref(),
            Net::I2p | Net::Cjdns => None,
        }
    }
}

impl Dialer for NetworkDialer {
    /// An IP address, by the route of its network.
    fn dial(&self, addr: SocketAddr) -> DialFuture {
        self.dial_peer(&PeerAddr::from_socket_addr(addr))
    }

    /// By the route of `addr`'s network ([`NetworkDialer::route`]).
    ///
    /// # Errors
    /// [`std::io::ErrorKind::Unsupported`] for an unreachable network (nothing is dialled);
    /// otherwise the direct or SOCKS5 dial's error.
    fn dial_peer(&self, addr: &PeerAddr) -> DialFuture {
        match (self.route(addr.net()), self.proxy_for(addr.net())) {
            (Route::Proxy(_), Some(proxy)) => proxy.dial_peer(addr),
            (Route::Direct, _) => match (addr.host, addr.to_socket_addr()) {
                (Host::TorV3(_) | Host::I2p(_), _) | (_, None) => unreachable(addr),
                (_, Some(sock)) => TcpDialer.dial(sock),
            },
            _ => unreachable(addr),
        }
    }

    fn reaches(&self, net: Net) -> bool {
        self.route(net) != Route::Unreachable
    }

    /// Through the IP proxy's rules when one is set ([`Socks5Dialer`]'s `resolve`: `.onion`
    /// and `.i2p` names never looked up), else the system resolver.
    fn resolve(&self, host: &str, port: u16) -> ResolveFuture {
        match &self.ip_proxy {
            Some(p) => p.resolve(host, port),
            None => TcpDialer.resolve(host, port),
        }
    }
}

/// A dial that fails at once: no route to `addr`'s network.
fn unreachable(addr: &PeerAddr) -> DialFuture {
    let error = std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        format!(
            "{addr}: no route to the {} network (not dialled)",
            addr.net()
        ),
    );
    Box::pin(async move { Err(error) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const ONION: &str = "pg6mmjiyjmcrsslvykfwnntlaru7p5svn6y2ymmju6nubxndf4pscryd.onion:8333";

    fn socks(port: u16) -> Socks5Dialer {
        Socks5Dialer::new(SocketAddr::from(([127, 0, 0, 1], port)))
    }

    #[test]
    fn routes_as_core() {
        let plain = NetworkDialer::new();
        assert_eq!(plain.route(Net::Ipv4), Route::Direct);
        assert_eq!(plain.route(Net::Ipv6), Route::Direct);
        for net in [Net::Onion, Net::I2p, Net::Cjdns] {
            assert_eq!(plain.route(net), Route::Unreachable, "{net}");
            assert!(!plain.reaches(net));
        }
        let p = SocketAddr::from(([127, 0, 0, 1], 9050));
        let o = SocketAddr::from(([127, 0, 0, 1], 9150));
        // -proxy only (the node passes it as the onion proxy too, as Core).
        let proxied = NetworkDialer::new()
            .with_ip_proxy(Some(socks(9050)))
            .with_onion_proxy(Some(socks(9050)));
        assert_eq!(proxied.route(Net::Ipv4), Route::Proxy(p));
        assert_eq!(proxied.route(Net::Onion), Route::Proxy(p));
        assert_eq!(proxied.route(Net::I2p), Route::Unreachable);
        // -onion only: IP direct, Tor through its proxy.
        let onion_only = NetworkDialer::new().with_onion_proxy(Some(socks(9150)));
        assert_eq!(onion_only.route(Net::Ipv6), Route::Direct);
        assert_eq!(onion_only.route(Net::Onion), Route::Proxy(o));
        // -proxy with -onion=0: Tor unreachable.
        let no_onion = NetworkDialer::new().with_ip_proxy(Some(socks(9050)));
        assert!(!no_onion.reaches(Net::Onion));
        assert!(no_onion.reaches(Net::Ipv4));
        // -cjdnsreachable.
        let cjdns = NetworkDialer::new().with_cjdns_reachable(true);
        assert_eq!(cjdns.route(Net::Cjdns), Route::Direct);
    }

    #[tokio::test]
    async fn unreachable_networks_fail_at_once_without_dialling() {
        let d = NetworkDialer::new().with_ip_proxy(Some(socks(1)));
        let onion: PeerAddr = ONION.parse().unwrap();
        let Err(e) = d.dial_peer(&onion).await else {
            panic!("dialled an onion peer with no onion proxy")
        };
        assert_eq!(e.kind(), std::io::ErrorKind::Unsupported);
        assert!(e.to_string().contains("onion"), "{e}");
        let i2p = PeerAddr::new(Host::I2p([1; 32]), 0);
        let Err(e) = NetworkDialer::new().dial_peer(&i2p).await else {
            panic!("dialled I2P")
        };
        assert_eq!(e.kind(), std::io::ErrorKind::Unsupported);
        let cjdns: PeerAddr = "[fc00::1]:8333".parse().unwrap();
        let Err(e) = NetworkDialer::new().dial_peer(&cjdns).await else {
            panic!("dialled CJDNS")
        };
        assert_eq!(e.kind(), std::io::ErrorKind::Unsupported);
    }

    /// Each network's connection arrives at its own proxy (two loopback listeners that read
    /// the SOCKS5 greeting and hang up).
    #[tokio::test]
    async fn onion_goes_to_the_onion_proxy_and_ip_to_the_ip_proxy() {
        let ip_l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let onion_l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let quick = |l: &tokio::net::TcpListener| {
            Socks5Dialer::new(l.local_addr().unwrap())
                .with_timeouts(Duration::from_secs(5), Duration::from_secs(5))
        };
        let d = NetworkDialer::new()
            .with_ip_proxy(Some(quick(&ip_l)))
            .with_onion_proxy(Some(quick(&onion_l)));
        let onion: PeerAddr = ONION.parse().unwrap();
        let dial = tokio::spawn(d.dial_peer(&onion));
        let accepted = tokio::time::timeout(Duration::from_secs(5), onion_l.accept()).await;
        drop(accepted.expect("onion proxy reached").unwrap());
        assert!(dial.await.unwrap().is_err(), "the fake proxy hung up");
        let dial = tokio::spawn(d.dial("127.0.0.1:2".parse().unwrap()));
        let accepted = tokio::time::timeout(Duration::from_secs(5), ip_l.accept()).await;
        drop(accepted.expect("IP proxy reached").unwrap());
        assert!(dial.await.unwrap().is_err());
    }
}
