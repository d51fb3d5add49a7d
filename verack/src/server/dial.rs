//! The dial side: how connections are opened ([`Dialer`]), where outbound addresses come
//! from ([`AddressSource`]), and which candidates may be dialled (a pure filter).

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Mutex;

use bitcoin::p2p::address::AddrV2Message;
use rand::seq::SliceRandom;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::netgroup::NetGroup;

use super::{AdmissionRules, ConnectionKind, Registry};

/// Any byte stream a peer can run over.
pub trait Connection: AsyncRead + AsyncWrite + Send + Unpin + 'static {
    /// Our end's socket address, when the stream is a [`tokio::net::TcpStream`]; `None` for
    /// any other stream (test pipes, wrappers). The peer records it as
    /// [`PeerStats::local`](crate::peer::PeerStats::local) (Core's `addrbind`).
    fn local_socket_addr(&self) -> Option<SocketAddr>;
}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Connection for T {
    fn local_socket_addr(&self) -> Option<SocketAddr> {
        crate::peer::local_addr_of(self)
    }
}

/// A boxed [`Connection`], so TCP, proxies and test pipes mix in one server.
pub type BoxedConnection = Box<dyn Connection>;

/// A future returned by [`Dialer::dial`].
pub type DialFuture = Pin<Box<dyn Future<Output = io::Result<BoxedConnection>> + Send>>;

/// A future returned by [`Dialer::resolve`].
pub type ResolveFuture = Pin<Box<dyn Future<Output = io::Result<Vec<SocketAddr>>> + Send>>;

/// Opens outbound connections. The server applies its own timeout around `dial`,
/// `dial_peer` and `resolve` (each [`dial_timeout`](super::ServerConfig::dial_timeout)).
///
/// IPv4 and IPv6 peers are dialled with [`dial`](Dialer::dial); Tor, I2P and CJDNS peers
/// (carried in the server as [stand-ins](crate::address::stand_in)) with
/// [`dial_peer`](Dialer::dial_peer), and only when [`reaches`](Dialer::reaches) says their
/// network can be reached (Core's `IsReachable`): other candidates are never dialled.
pub trait Dialer: Send + Sync + 'static {
    /// Connects to `addr` (an IPv4 or IPv6 address).
    fn dial(&self, addr: SocketAddr) -> DialFuture;

    /// Connects to a peer of any network. The default dials IPv4 and IPv6 with
    /// [`dial`](Dialer::dial) and fails at once for Tor, I2P and CJDNS, which plain TCP
    /// cannot (or must not, without Core's `-cjdnsreachable`) reach. A proxy dialer
    /// overrides it: [`Socks5Dialer`](crate::proxy::Socks5Dialer) hands `.onion` and
    /// `.b32.i2p` names to the proxy unresolved.
    ///
    /// # Errors
    /// The default: [`io::ErrorKind::Unsupported`] for a network other than IPv4/IPv6.
    fn dial_peer(&self, addr: &crate::address::PeerAddr) -> DialFuture {
        use crate::address::Host;
        match addr.host {
            Host::Ipv4(_) | Host::Ipv6(_) => {
                self.dial(addr.to_socket_addr().expect("IPv4 and IPv6 have an IP"))
            }
            _ => unsupported(addr),
        }
    }

    /// Whether peers of `net` can be reached through this dialer (Bitcoin Core's
    /// `IsReachable`, as far as routing decides it). Automatic outbound and feeler
    /// candidates of other networks are skipped, never dialled; manual peers are dialled
    /// regardless and fail in [`dial_peer`](Dialer::dial_peer). Default: IPv4 and IPv6.
    fn reaches(&self, net: crate::address::Net) -> bool {
        use crate::address::Net;
        matches!(net, Net::Ipv4 | Net::Ipv6)
    }

    /// The addresses of a persistent peer given by host name, asked before each dial of it,
    /// in the order to try them. The default is [`PeerTarget::resolve`](super::PeerTarget):
    /// the system resolver, no caching. Override to resolve elsewhere (or, in tests, to
    /// count lookups or move a name).
    ///
    /// Tor and I2P names (`.onion`, `.i2p`) are never looked up (Core resolves them only
    /// through a proxy, RFC 7686): the default refuses them with
    /// [`io::ErrorKind::Unsupported`] before any query is sent. The server dials valid ones by
    /// name through [`dial_peer`](Dialer::dial_peer) instead.
    ///
    /// # Errors
    /// The lookup's error; an empty answer should be [`io::ErrorKind::NotFound`].
    fn resolve(&self, host: &str, port: u16) -> ResolveFuture {
        let lower = host.to_ascii_lowercase();
        if lower.ends_with(".onion") || lower.ends_with(".i2p") {
            let error = io::Error::new(
                io::ErrorKind::Unsupported,
                format!(
                    "{host}: Tor and I2P names are not looked up (dialled by name through a proxy)"
                ),
            );
            return Box::pin(async move { Err(error) });
        }
        let target = super::PeerTarget::Name {
            host: host.to_owned(),
            port,
        };
        Box::pin(async move { target.resolve().await })
    }
}

/// A dial that fails at once: `addr`'s network is not reachable by this dialer
/// ([`io::ErrorKind::Unsupported`], naming the address and network).
pub(crate) fn unsupported(addr: &crate::address::PeerAddr) -> DialFuture {
    let error = io::Error::new(
        io::ErrorKind::Unsupported,
        format!(
            "{addr}: no route to the {} network (not dialled)",
            addr.net()
        ),
    );
    Box::pin(async move { Err(error) })
}

/// Dials the peer the server keys by `addr`: [`Dialer::dial`] for an IP address,
/// [`Dialer::dial_peer`] with the real [`PeerAddr`](crate::address::PeerAddr) for a
/// [stand-in](crate::address::stand_in). A stand-in this process does not know (e.g. an
/// anchor saved by an earlier run) is refused with [`io::ErrorKind::Unsupported`]: a stand-in
/// is never connected to as an IP address.
pub(crate) fn dial_by_key(dialer: &dyn Dialer, addr: SocketAddr) -> DialFuture {
    if !crate::address::is_stand_in(addr.ip()) {
        return dialer.dial(addr);
    }
    match crate::address::PeerAddr::from_stand_in(addr) {
        Some(peer) => dialer.dial_peer(&peer),
        None => {
            let error = io::Error::new(
                io::ErrorKind::Unsupported,
                format!("{addr} stands in for a peer this process does not know (not dialled)"),
            );
            Box::pin(async move { Err(error) })
        }
    }
}

/// The network of the peer the server keys by `addr` (a stand-in's own network; `None` for
/// an unknown stand-in).
pub(crate) fn net_of_key(addr: SocketAddr) -> Option<crate::address::Net> {
    crate::address::PeerAddr::from_stand_in(addr).map(|p| p.net())
}

/// Plain TCP with `TCP_NODELAY`.
#[derive(Debug, Default, Clone, Copy)]
pub struct TcpDialer;

impl Dialer for TcpDialer {
    fn dial(&self, addr: SocketAddr) -> DialFuture {
        Box::pin(async move {
            let stream = tokio::net::TcpStream::connect(addr).await?;
            stream.set_nodelay(true)?;
            Ok(Box::new(stream) as BoxedConnection)
        })
    }
}

/// Where outbound addresses come from (the address manager implements this).
pub trait AddressSource: Send + Sync + 'static {
    /// Up to `n` addresses worth trying for a connection of `kind`; the server filters out
    /// banned, restricted, connected, dialling, own and same-netgroup addresses.
    fn candidates(&self, kind: ConnectionKind, n: usize) -> Vec<SocketAddr>;

    /// Up to `n` candidates of the networks `nets` (those the server's dialer
    /// [reaches](Dialer::reaches)); Tor, I2P and CJDNS peers as their
    /// [stand-ins](crate::address::PeerAddr::stand_in). This is what the server asks. The
    /// default asks [`candidates`](AddressSource::candidates) and drops other networks;
    /// the address manager selects within `nets` (Core's `Select` with reachable networks).
    fn candidates_in(
        &self,
        kind: ConnectionKind,
        n: usize,
        nets: &[crate::address::Net],
    ) -> Vec<SocketAddr> {
        let mut out = self.candidates(kind, n);
        out.retain(|&a| net_of_key(a).is_some_and(|net| nets.contains(&net)));
        out
    }

    /// A dial to `addr` was attempted and failed (Core's `Attempt`).
    fn dial_failed(&self, addr: SocketAddr) {
        let _ = addr;
    }

    /// A handshake with `addr` succeeded (Core's `Good`).
    fn connected(&self, addr: SocketAddr) {
        let _ = addr;
    }

    /// Addresses a peer at `source` told us about (`addr`/`addrv2`), after rate limiting.
    fn add(&self, addrs: &[AddrV2Message], source: SocketAddr) {
        let _ = (addrs, source);
    }

    /// Addresses to answer a `getaddr` with (Core: at most 1000 or 23% of those known).
    fn get_addr(&self) -> Vec<AddrV2Message> {
        Vec::new()
    }

    /// An address to test with a short-lived feeler connection (Core: from the new table, or
    /// a tried entry whose slot a newer address wants).
    fn feeler_candidate(&self) -> Option<SocketAddr> {
        None
    }

    /// A feeler candidate of the networks `nets` (those the dialer reaches); what the server
    /// asks. The default filters [`feeler_candidate`](AddressSource::feeler_candidate); the
    /// address manager selects within `nets` (Core's `Select(true, reachable networks)`).
    fn feeler_candidate_in(&self, nets: &[crate::address::Net]) -> Option<SocketAddr> {
        self.feeler_candidate()
            .filter(|&a| net_of_key(a).is_some_and(|net| nets.contains(&net)))
    }

    /// Persists what the source learned (called periodically and at shutdown).
    fn flush(&self) {}

    /// The services `addr` is known to advertise, if known (decides whether to try BIP324 v2:
    /// bit 11, `NODE_P2P_V2`). Default `None`.
    fn services_of(&self, addr: SocketAddr) -> Option<bitcoin::p2p::ServiceFlags> {
        let _ = addr;
        None
    }

    /// The services `addr` offered in its `version` (outbound connections only; Core's
    /// `SetServices`), which replace the advertised ones. Default: ignored.
    fn set_services(&self, addr: SocketAddr, services: bitcoin::p2p::ServiceFlags) {
        let _ = (addr, services);
    }

    /// How many addresses the source knows, if it can tell (seed nodes are asked while it
    /// knows few). Default `None`: seed nodes are asked once, at start.
    fn known(&self) -> Option<usize> {
        None
    }
}

impl<T: AddressSource> AddressSource for std::sync::Arc<T> {
    fn candidates(&self, kind: ConnectionKind, n: usize) -> Vec<SocketAddr> {
        (**self).candidates(kind, n)
    }
    fn candidates_in(
        &self,
        kind: ConnectionKind,
        n: usize,
        nets: &[crate::address::Net],
    ) -> Vec<SocketAddr> {
        (**self).candidates_in(kind, n, nets)
    }
    fn dial_failed(&self, addr: SocketAddr) {
        (**self).dial_failed(addr)
    }
    fn connected(&self, addr: SocketAddr) {
        (**self).connected(addr)
    }
    fn add(&self, addrs: &[AddrV2Message], source: SocketAddr) {
        (**self).add(addrs, source)
    }
    fn get_addr(&self) -> Vec<AddrV2Message> {
        (**self).get_addr()
    }
    fn feeler_candidate(&self) -> Option<SocketAddr> {
        (**self).feeler_candidate()
    }
    fn feeler_candidate_in(&self, nets: &[crate::address::Net]) -> Option<SocketAddr> {
        (**self).feeler_candidate_in(nets)
    }
    fn flush(&self) {
        (**self).flush()
    }
    fn known(&self) -> Option<usize> {
        (**self).known()
    }
    fn services_of(&self, addr: SocketAddr) -> Option<bitcoin::p2p::ServiceFlags> {
        (**self).services_of(addr)
    }
    fn set_services(&self, addr: SocketAddr, services: bitcoin::p2p::ServiceFlags) {
        (**self).set_services(addr, services)
    }
}

/// A fixed list of addresses, offered in random order (Tor, I2P and CJDNS peers as their
/// [stand-ins](crate::address::PeerAddr::stand_in)).
#[derive(Debug, Default)]
pub struct FixedAddresses {
    addrs: Mutex<Vec<SocketAddr>>,
}

impl FixedAddresses {
    /// A source offering `addrs`.
    pub fn new(addrs: Vec<SocketAddr>) -> FixedAddresses {
        FixedAddresses {
            addrs: Mutex::new(addrs),
        }
    }
}

impl AddressSource for FixedAddresses {
    fn candidates(&self, _kind: ConnectionKind, n: usize) -> Vec<SocketAddr> {
        let mut addrs = self.addrs.lock().expect("address list lock").clone();
        addrs.shuffle(&mut rand::thread_rng());
        addrs.truncate(n);
        addrs
    }

    /// Those of `nets`, filtered before the `n` are drawn.
    fn candidates_in(
        &self,
        _kind: ConnectionKind,
        n: usize,
        nets: &[crate::address::Net],
    ) -> Vec<SocketAddr> {
        let mut addrs = self.addrs.lock().expect("address list lock").clone();
        addrs.retain(|&a| net_of_key(a).is_some_and(|net| nets.contains(&net)));
        addrs.shuffle(&mut rand::thread_rng());
        addrs.truncate(n);
        addrs
    }
}

/// Filters `candidates` down to at most `want` addresses that may be dialled now: not ours,
/// permitted by allow/deny, not banned, not connected or being dialled, and each in a network
/// group with no outbound peer yet (one per /16 IPv4, /32 IPv6, as Core), counting the picks
/// themselves.
pub fn pick_dials<T>(
    candidates: &[SocketAddr],
    want: usize,
    registry: &Registry<T>,
    rules: &AdmissionRules,
    own: &[SocketAddr],
    is_banned: impl Fn(SocketAddr) -> bool,
) -> Vec<SocketAddr> {
    let mut picked: Vec<SocketAddr> = Vec::new();
    let mut groups: Vec<NetGroup> = Vec::new();
    for &addr in candidates {
        if picked.len() == want {
            break;
        }
        let group = registry.group_of(addr.ip());
        let skip = own.contains(&addr)
            || rules.permits(addr.ip()).is_err()
            || is_banned(addr)
            || registry.is_connected_or_dialing(addr)
            || picked.contains(&addr)
            || groups.contains(&group)
            || registry.has_outbound_in(group);
        if !skip {
            picked.push(addr);
            groups.push(group);
        }
    }
    picked
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn onion_and_i2p_names_are_never_looked_up() {
        for name in ["abc.onion", "X.ONION", "x.b32.i2p"] {
            let err = TcpDialer.resolve(name, 8333).await.unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::Unsupported, "{name}");
        }
    }

    #[tokio::test]
    async fn the_default_dial_peer_dials_ip_only() {
        struct Count(std::sync::atomic::AtomicUsize);
        impl Dialer for Count {
            fn dial(&self, _: SocketAddr) -> DialFuture {
                self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                Box::pin(async { Err(io::ErrorKind::ConnectionRefused.into()) })
            }
        }
        let d = Count(Default::default());
        let onion: crate::address::PeerAddr =
            "pg6mmjiyjmcrsslvykfwnntlaru7p5svn6y2ymmju6nubxndf4pscryd.onion:8333"
                .parse()
                .unwrap();
        let Err(e) = d.dial_peer(&onion).await else {
            panic!("dialled an onion peer over TCP")
        };
        assert_eq!(e.kind(), io::ErrorKind::Unsupported);
        // An unknown stand-in is refused, never dialled as an IP.
        let unknown: SocketAddr = "[fd87:d87e:eb43:400::1]:8333".parse().unwrap();
        let Err(e) = dial_by_key(&d, unknown).await else {
            panic!("dialled a stand-in")
        };
        assert_eq!(e.kind(), io::ErrorKind::Unsupported);
        assert_eq!(d.0.load(std::sync::atomic::Ordering::SeqCst), 0);
        let _ = d.dial_peer(&"1.2.3.4:8333".parse().unwrap()).await;
        let _ = dial_by_key(&d, onion.stand_in()).await;
        assert_eq!(
            d.0.load(std::sync::atomic::Ordering::SeqCst),
            1,
            "only the IP"
        );
        assert!(d.reaches(crate::address::Net::Ipv6));
        assert!(!d.reaches(crate::address::Net::Onion));
    }

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn one_per_netgroup_and_never_own_banned_restricted_or_busy() {
        let mut reg = Registry::<()>::default();
        assert!(reg.begin_dial(a("7.7.1.1:8333"), ConnectionKind::FullRelay));
        let rules = AdmissionRules {
            deny: vec!["9.0.0.0/8".parse().unwrap()],
            ..Default::default()
        };
        let candidates = [
            a("1.1.1.1:8333"),
            a("1.1.2.2:8333"), // same /16 as the first
            a("2.2.2.2:8333"), // ours
            a("3.3.3.3:8333"), // banned
            a("9.9.9.9:8333"), // denied
            a("7.7.9.9:8333"), // same /16 as a dial in flight
            a("[2600:1::1]:8333"),
            a("[2600:1:ffff::1]:8333"), // same /32
            a("[2600:2::1]:8333"),
            a("4.4.4.4:8333"),
        ];
        let picked = pick_dials(&candidates, 10, &reg, &rules, &[a("2.2.2.2:8333")], |x| {
            x == a("3.3.3.3:8333")
        });
        assert_eq!(
            picked,
            vec![
                a("1.1.1.1:8333"),
                a("[2600:1::1]:8333"),
                a("[2600:2::1]:8333"),
                a("4.4.4.4:8333")
            ]
        );
        let two = pick_dials(&candidates, 2, &reg, &rules, &[], |_| false);
        assert_eq!(two.len(), 2);
    }
}
