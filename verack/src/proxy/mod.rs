//! Outbound connections through a SOCKS5 proxy (RFC 1928, with RFC 1929 username/password),
//! as Bitcoin Core's `-proxy`: to IP addresses, or to names the proxy resolves (host names,
//! Tor `.onion` and I2P `.b32.i2p` names), with Core's stream isolation.
//!
//! [`Socks5Dialer`] connects to the proxy, runs the [`socks5::handshake`] and hands back the
//! tunnelled [`TcpStream`]. It implements the server's [`Dialer`], so a server (or the node's
//! `--proxy`) dials every outbound peer through it:
//!
//! ```no_run
//! # use verack::{peer::PeerConfig, proxy::Socks5Dialer, server::{Server, ServerConfig}};
//! # fn f(config: ServerConfig, handlers: impl verack::server::PeerHandlers) {
//! let tor = Socks5Dialer::new("127.0.0.1:9050".parse().unwrap()); // random credentials
//! let server = Server::new(config, handlers).with_dialer(tor);
//! # }
//! ```
//!
//! **Stream isolation** (Core's `-proxyrandomize`, on by default): each connection
//! authenticates with fresh credentials, so Tor puts every peer on its own circuit and peers
//! cannot link our connections by exit. A proxy that does not ask for authentication just
//! picks "no authentication", so random credentials work with any proxy.
//!
//! [`seed::fetch_addresses`] asks a DNS seed for addresses through the proxy, as Core does
//! with `-proxy` (an addr-fetch connection to the seed's name).
//!
//! Onion peers reach the server's dialer through [`Dialer::dial_peer`] (as
//! [stand-ins](crate::address::stand_in)): a [`Socks5Dialer`] hands their `.onion` name to
//! the proxy unresolved. [`NetworkDialer`] routes each network as Core does: IPv4/IPv6
//! through `-proxy` or directly, Tor through `-onion` (else `-proxy`), networks with no route
//! not at all. The server's [`Dialer::resolve`] for `--connect HOST` peers still uses the
//! system resolver for ordinary names (`.onion`/`.i2p` names are never looked up).
//!
//! A Tor-only node, as Core's `-proxy=127.0.0.1:9050 -onlynet=onion`: every connection
//! through Tor (manual IP peers too), automatic ones to onion peers only:
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use verack::address::{Net, OnlyNetworks};
//! # use verack::proxy::{NetworkDialer, Socks5Dialer};
//! # use verack::server::{AddrManSource, Server, ServerConfig};
//! # fn f(config: ServerConfig, handlers: impl verack::server::PeerHandlers, addrman: Arc<AddrManSource>) {
//! let tor = || Socks5Dialer::new("127.0.0.1:9050".parse().unwrap());
//! let server = Server::new(config, handlers)
//!     .with_dialer(NetworkDialer::new().with_ip_proxy(Some(tor())).with_onion_proxy(Some(tor())))
//!     .with_address_source(OnlyNetworks::new(addrman, vec![Net::Onion]));
//! # }
//! ```

mod route;
pub mod seed;
pub mod socks5;

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::net::TcpStream;

use crate::address::{Host, Net, PeerAddr};
use crate::server::{BoxedConnection, DialFuture, Dialer, ResolveFuture};

pub use route::{NetworkDialer, Route};
pub use socks5::{ReplyCode, Socks5Error};

/// Time allowed to open the TCP connection to the proxy: 5 s (Core's
/// `DEFAULT_CONNECT_TIMEOUT`, `-timeout`).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Time allowed for the SOCKS5 handshake, `CONNECT` reply included: 20 s (Core's
/// `SOCKS5_RECV_TIMEOUT`; Tor may take that long to reach an onion service).
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(20);

/// Where to ask the proxy to connect.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    /// An IP address and port (sent as SOCKS5 ATYP 1 or 4).
    Addr(SocketAddr),
    /// A name the proxy resolves (ATYP 3): a host name, a `.onion` or a `.b32.i2p` name,
    /// 1 to 255 bytes.
    Name {
        /// The name, e.g. `seed.example.org` or `<56 chars>.onion`.
        host: String,
        /// The port.
        port: u16,
    },
}

impl From<SocketAddr> for Target {
    fn from(addr: SocketAddr) -> Target {
        Target::Addr(addr)
    }
}

impl From<PeerAddr> for Target {
    /// IPv4, IPv6 and CJDNS as addresses; Tor and I2P as their names (`.onion`,
    /// `.b32.i2p`), which only the proxy can resolve.
    fn from(addr: PeerAddr) -> Target {
        match addr.host {
            Host::TorV3(_) | Host::I2p(_) => Target::Name {
                host: addr.host.to_string(),
                port: addr.port,
            },
            _ => Target::Addr(
                addr.to_socket_addr()
                    .expect("IP hosts have a socket address"),
            ),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Addr(addr) => write!(f, "{addr}"),
            Target::Name { host, port } => write!(f, "{host}:{port}"),
        }
    }
}

/// How a [`Socks5Dialer`] authenticates to the proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credentials {
    /// Offer only "no authentication".
    None,
    /// Fresh username/password per connection (Core's `-proxyrandomize`, the default):
    /// a random prefix per dialer plus a connection counter, as both username and password.
    Randomize,
    /// These (RFC 1929; each 1 to 255 bytes) on every connection.
    Fixed {
        /// The username.
        username: String,
        /// The password.
        password: String,
    },
}

/// Dials through a SOCKS5 proxy. Cheap to share: the counter for random credentials is
/// atomic. Implements the server's [`Dialer`] (with `TCP_NODELAY` on the tunnel).
#[derive(Debug)]
pub struct Socks5Dialer {
    proxy: SocketAddr,
    credentials: Credentials,
    connect_timeout: Duration,
    handshake_timeout: Duration,
    /// Random per dialer, so credentials never repeat across restarts.
    isolation_prefix: String,
    counter: AtomicU64,
    /// Networks [`Dialer::reaches`] reports.
    networks: Vec<Net>,
}

impl Socks5Dialer {
    /// Through the proxy at `proxy`, with random credentials per connection
    /// ([`Credentials::Randomize`]) and the default timeouts
    /// ([`DEFAULT_CONNECT_TIMEOUT`], [`DEFAULT_HANDSHAKE_TIMEOUT`]).
    pub fn new(proxy: SocketAddr) -> Socks5Dialer {
        Socks5Dialer {
            proxy,
            credentials: Credentials::Randomize,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            isolation_prefix: format!("{:016x}-", rand::random::<u64>()),
            counter: AtomicU64::new(0),
            networks: vec![Net::Ipv4, Net::Ipv6, Net::Onion],
        }
    }

    /// Reporting `networks` as reachable through this proxy ([`Dialer::reaches`]) instead of
    /// the default IPv4, IPv6 and Tor (Core's `-proxy`, which also serves onion peers unless
    /// `-onion` says otherwise). The proxy itself decides what it can connect to; this only
    /// decides which automatic candidates the server offers it.
    pub fn with_networks(mut self, networks: Vec<Net>) -> Socks5Dialer {
        self.networks = networks;
        self
    }

    /// With `credentials` instead of random ones.
    pub fn with_credentials(mut self, credentials: Credentials) -> Socks5Dialer {
        self.credentials = credentials;
        self
    }

    /// With these timeouts: `connect` for the TCP connection to the proxy, `handshake` for
    /// the whole SOCKS5 exchange.
    pub fn with_timeouts(mut self, connect: Duration, handshake: Duration) -> Socks5Dialer {
        self.connect_timeout = connect;
        self.handshake_timeout = handshake;
        self
    }

    /// The proxy's address.
    pub fn proxy(&self) -> SocketAddr {
        self.proxy
    }

    /// The credentials configured.
    pub fn credentials(&self) -> &Credentials {
        &self.credentials
    }

    /// The username/password for the next connection, if any.
    fn next_credentials(&self) -> Option<(String, String)> {
        match &self.credentials {
            Credentials::None => None,
            Credentials::Randomize => {
                let n = self.counter.fetch_add(1, Ordering::Relaxed);
                let token = format!("{}{n}", self.isolation_prefix);
                Some((token.clone(), token))
            }
            Credentials::Fixed { username, password } => Some((username.clone(), password.clone())),
        }
    }

    /// Connects to `target` through the proxy; the returned stream carries the peer's
    /// bytes.
    ///
    /// # Errors
    /// [`Socks5Error::ProxyUnreachable`] or [`Socks5Error::Timeout`] reaching the proxy;
    /// then any handshake error ([`socks5::handshake`]), e.g. [`Socks5Error::Refused`] with
    /// the proxy's reply code when the target cannot be reached, or
    /// [`Socks5Error::AuthFailed`]; [`Socks5Error::Timeout`] when the handshake outlasts
    /// its limit.
    pub async fn connect(&self, target: impl Into<Target>) -> Result<TcpStream, Socks5Error> {
        let timeouts = (self.connect_timeout, self.handshake_timeout);
        tunnel(self.proxy, timeouts, target.into(), self.next_credentials()).await
    }
}

/// Connects to `proxy` and runs the handshake for `target` with `credentials`, within
/// `(connect, handshake)` timeouts.
async fn tunnel(
    proxy: SocketAddr,
    (connect_timeout, handshake_timeout): (Duration, Duration),
    target: Target,
    credentials: Option<(String, String)>,
) -> Result<TcpStream, Socks5Error> {
    let mut stream = tokio::time::timeout(connect_timeout, TcpStream::connect(proxy))
        .await
        .map_err(|_| Socks5Error::Timeout {
            proxy,
            after: connect_timeout,
            stage: "connecting to the proxy",
        })?
        .map_err(|source| Socks5Error::ProxyUnreachable { proxy, source })?;
    stream.set_nodelay(true)?;
    let auth = credentials.as_ref().map(|(u, p)| (u.as_str(), p.as_str()));
    tokio::time::timeout(
        handshake_timeout,
        socks5::handshake(&mut stream, &target, auth),
    )
    .await
    .map_err(|_| Socks5Error::Timeout {
        proxy,
        after: handshake_timeout,
        stage: "handshake",
    })??;
    Ok(stream)
}

impl Dialer for Socks5Dialer {
    /// [`Socks5Dialer::connect`] to `addr`; the [`Socks5Error`] travels inside the
    /// [`std::io::Error`] (kind from [`Socks5Error::io_kind`]).
    fn dial(&self, addr: SocketAddr) -> DialFuture {
        let (proxy, timeouts) = (self.proxy, (self.connect_timeout, self.handshake_timeout));
        // Drawn now, so the counter advances once per dial.
        let credentials = self.next_credentials();
        Box::pin(async move {
            let stream = tunnel(proxy, timeouts, Target::Addr(addr), credentials).await?;
            Ok(Box::new(stream) as BoxedConnection)
        })
    }

    /// Any peer: IPs as [`dial`](Dialer::dial), Tor and I2P as their names (ATYP 3), which
    /// only the proxy resolves ([`Target::from`]`(PeerAddr)`).
    fn dial_peer(&self, addr: &PeerAddr) -> DialFuture {
        let (proxy, timeouts) = (self.proxy, (self.connect_timeout, self.handshake_timeout));
        let credentials = self.next_credentials();
        let target = Target::from(*addr);
        Box::pin(async move {
            let stream = tunnel(proxy, timeouts, target, credentials).await?;
            Ok(Box::new(stream) as BoxedConnection)
        })
    }

    /// The networks given to [`Socks5Dialer::with_networks`]; by default IPv4, IPv6 and Tor.
    fn reaches(&self, net: Net) -> bool {
        self.networks.contains(&net)
    }

    /// Host names of persistent peers: `.onion` and `.b32.i2p` names are refused
    /// ([`std::io::ErrorKind::Unsupported`]) rather than leaked to the system resolver (the
    /// server dials them by name through [`Dialer::dial_peer`] and never asks for them here);
    /// other names use the system resolver, as the default [`Dialer::resolve`].
    fn resolve(&self, host: &str, port: u16) -> ResolveFuture {
        let lower = host.to_ascii_lowercase();
        if lower.ends_with(".onion") || lower.ends_with(".i2p") {
            let message = format!(
                "{host}: onion and I2P names are dialled through the proxy by name; \
                 not looked up outside it"
            );
            return Box::pin(async move {
                Err(std::io::Error::new(
                    std::io::ErrorKind::Unsupported,
                    message,
                ))
            });
        }
        let target = crate::server::PeerTarget::Name {
            host: host.to_owned(),
            port,
        };
        Box::pin(async move { target.resolve().await })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_credentials_differ_per_connection_and_per_dialer() {
        let proxy = "127.0.0.1:9050".parse().unwrap();
        let a = Socks5Dialer::new(proxy);
        let (u1, p1) = a.next_credentials().unwrap();
        let (u2, _) = a.next_credentials().unwrap();
        assert_eq!(u1, p1, "username = password, as Core");
        assert_ne!(u1, u2);
        let b = Socks5Dialer::new(proxy);
        assert_ne!(b.next_credentials().unwrap().0, u1);
        let none = Socks5Dialer::new(proxy).with_credentials(Credentials::None);
        assert_eq!(none.next_credentials(), None);
    }

    #[test]
    fn onion_and_i2p_go_to_the_proxy_as_names() {
        let onion: PeerAddr = "pg6mmjiyjmcrsslvykfwnntlaru7p5svn6y2ymmju6nubxndf4pscryd.onion:8333"
            .parse()
            .unwrap();
        assert!(
            matches!(Target::from(onion), Target::Name { port: 8333, ref host } if host.ends_with(".onion"))
        );
        let ip: PeerAddr = "[fc00::1]:1".parse().unwrap();
        assert_eq!(
            Target::from(ip),
            Target::Addr("[fc00::1]:1".parse().unwrap())
        );
    }

    #[tokio::test]
    async fn onion_names_are_never_resolved_locally() {
        let dialer = Socks5Dialer::new("127.0.0.1:9050".parse().unwrap());
        for name in ["abc.onion", "ABC.ONION", "x.b32.i2p"] {
            let err = dialer.resolve(name, 8333).await.unwrap_err();
            assert_eq!(err.kind(), std::io::ErrorKind::Unsupported, "{name}");
        }
        let local = dialer.resolve("localhost", 1).await.unwrap();
        assert!(local.iter().all(|a| a.ip().is_loopback()));
    }

    #[tokio::test]
    async fn an_unreachable_proxy_is_named() {
        // Port 1 on loopback: nothing listens there in tests.
        let dialer = Socks5Dialer::new("127.0.0.1:1".parse().unwrap());
        let err = dialer
            .connect("127.0.0.1:2".parse::<SocketAddr>().unwrap())
            .await
            .unwrap_err();
        assert!(matches!(err, Socks5Error::ProxyUnreachable { .. }), "{err}");
        // The proxy's failure is not the peer's: its message is shown, not "refused".
        assert_eq!(err.io_kind(), std::io::ErrorKind::Other);
        assert!(err
            .to_string()
            .starts_with("cannot reach the SOCKS5 proxy 127.0.0.1:1: "));
    }
}
