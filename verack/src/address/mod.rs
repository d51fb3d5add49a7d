//! Peer addresses beyond IP: IPv4, IPv6, Tor v3, I2P and CJDNS, as BIP155 (`addrv2`)
//! carries them, with their text forms and the network each belongs to.
//!
//! - [`PeerAddr`]: a [`Host`] and a port, parsed from and written as Bitcoin Core writes them
//!   (`1.2.3.4:8333`, `[2001:db8::1]:8333`, `<56 chars>.onion:8333`,
//!   `<52 chars>.b32.i2p:0`, `[fc00::1]:8333`), converted to and from rust-bitcoin's
//!   [`AddrV2`] / [`AddrV2Message`].
//! - [`Net`]: Bitcoin Core's `Network` enum as `-onlynet` names it (`ipv4`, `ipv6`, `onion`,
//!   `i2p`, `cjdns`).
//! - [`OnlyNetworks`]: an [`AddressSource`](crate::server::AddressSource) wrapper that offers
//!   outbound candidates of the given networks only (Core's `-onlynet`).
//!
//! The server keys peers by [`SocketAddr`] (its registry, events, `AddressSource`, peer
//! `remote` and stats). Tor, I2P and CJDNS peers travel there as a [stand-in](stand_in)
//! address, [`PeerAddr::stand_in`], read back with [`PeerAddr::from_stand_in`]; the server
//! dials them through [`Dialer::dial_peer`](crate::server::Dialer::dial_peer) with the real
//! [`PeerAddr`], never by the stand-in.

mod only_net;
pub mod stand_in;
mod text;

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

use bitcoin::p2p::address::{AddrV2, AddrV2Message};
use bitcoin::p2p::ServiceFlags;

pub use only_net::OnlyNetworks;
pub use stand_in::is_stand_in;

/// A network a peer address belongs to: Bitcoin Core's `enum Network` (src/netaddress.h)
/// without its internal and unroutable members, named as `-onlynet` and `getnetworkinfo`
/// name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Net {
    /// IPv4 (`ipv4`).
    Ipv4,
    /// IPv6 (`ipv6`), except CJDNS's fc00::/8.
    Ipv6,
    /// Tor onion services (`onion`; `tor` is accepted too when parsing, as Core).
    Onion,
    /// I2P (`i2p`).
    I2p,
    /// CJDNS (`cjdns`): IPv6 addresses in fc00::/8 on a CJDNS network.
    Cjdns,
}

impl Net {
    /// Every network, in Core's order.
    pub const ALL: [Net; 5] = [Net::Ipv4, Net::Ipv6, Net::Onion, Net::I2p, Net::Cjdns];

    /// Core's name: `ipv4`, `ipv6`, `onion`, `i2p` or `cjdns` (`GetNetworkName`).
    pub fn name(self) -> &'static str {
        match self {
            Net::Ipv4 => "ipv4",
            Net::Ipv6 => "ipv6",
            Net::Onion => "onion",
            Net::I2p => "i2p",
            Net::Cjdns => "cjdns",
        }
    }
}

impl fmt::Display for Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A network name that is not one of Core's (`ParseNetwork`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown network '{0}' (ipv4, ipv6, onion, i2p, cjdns)")]
pub struct UnknownNetError(pub String);

impl FromStr for Net {
    type Err = UnknownNetError;

    /// `ipv4`, `ipv6`, `onion` (or `tor`), `i2p`, `cjdns`, in any case (Core's
    /// `ParseNetwork`).
    fn from_str(s: &str) -> Result<Net, UnknownNetError> {
        match s.to_ascii_lowercase().as_str() {
            "ipv4" => Ok(Net::Ipv4),
            "ipv6" => Ok(Net::Ipv6),
            "onion" | "tor" => Ok(Net::Onion),
            "i2p" => Ok(Net::I2p),
            "cjdns" => Ok(Net::Cjdns),
            _ => Err(UnknownNetError(s.to_owned())),
        }
    }
}

/// The host part of a peer address (BIP155 network IDs 1, 2, 4, 5 and 6; Tor v2, ID 3, was
/// retired and is not represented).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Host {
    /// An IPv4 address (BIP155 ID 1).
    Ipv4(Ipv4Addr),
    /// An IPv6 address (BIP155 ID 2). IPv4-mapped addresses are kept as [`Host::Ipv4`] by
    /// the constructors here.
    Ipv6(Ipv6Addr),
    /// A Tor v3 onion service: its 32-byte ed25519 public key (BIP155 ID 4).
    TorV3([u8; 32]),
    /// An I2P destination: the 32-byte SHA-256 of the destination (BIP155 ID 5).
    I2p([u8; 32]),
    /// A CJDNS address, in fc00::/8 (BIP155 ID 6).
    Cjdns(Ipv6Addr),
}

impl Host {
    /// The network it belongs to.
    pub fn net(&self) -> Net {
        match self {
            Host::Ipv4(_) => Net::Ipv4,
            Host::Ipv6(_) => Net::Ipv6,
            Host::TorV3(_) => Net::Onion,
            Host::I2p(_) => Net::I2p,
            Host::Cjdns(_) => Net::Cjdns,
        }
    }

    /// The IP address for IPv4, IPv6 and CJDNS (reached by IP over the CJDNS interface);
    /// `None` for Tor and I2P, which only a proxy or router can reach.
    pub fn ip(&self) -> Option<IpAddr> {
        match *self {
            Host::Ipv4(ip) => Some(IpAddr::V4(ip)),
            Host::Ipv6(ip) | Host::Cjdns(ip) => Some(IpAddr::V6(ip)),
            Host::TorV3(_) | Host::I2p(_) => None,
        }
    }

    /// The host of an IP address: IPv4-mapped IPv6 becomes IPv4; other IPv6 (fc00::/8
    /// included) stays IPv6, as Core reads an address that did not come as CJDNS.
    pub fn from_ip(ip: IpAddr) -> Host {
        match ip {
            IpAddr::V4(v4) => Host::Ipv4(v4),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Host::Ipv4(v4),
                None => Host::Ipv6(v6),
            },
        }
    }
}

impl fmt::Display for Host {
    /// IPv4 dotted, IPv6 and CJDNS in RFC 5952 form (no brackets), Tor as `<56 chars>.onion`,
    /// I2P as `<52 chars>.b32.i2p`, as Core's `ToStringAddr`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Ipv4(ip) => write!(f, "{ip}"),
            Host::Ipv6(ip) | Host::Cjdns(ip) => write!(f, "{ip}"),
            Host::TorV3(key) => f.write_str(&text::onion_name(key)),
            Host::I2p(hash) => f.write_str(&text::i2p_name(hash)),
        }
    }
}

/// A peer's address: host and port. `Display`/`FromStr` use Core's forms: `1.2.3.4:8333`,
/// `[2001:db8::1]:8333`, `<56 chars>.onion:8333`, `<52 chars>.b32.i2p:0`,
/// `[fc00::1]:8333` (I2P peers use port 0 in Core, as SAM 3.1 has no ports).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerAddr {
    /// The host.
    pub host: Host,
    /// The port (0 for I2P as Core).
    pub port: u16,
}

/// Why text or an [`AddrV2`] is not a [`PeerAddr`]. Messages are one lower-case line naming
/// the offending text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AddressError {
    /// No `:port` after the host (brackets needed around IPv6: `[v6]:port`).
    #[error("'{text}' has no port (HOST:PORT, or [IPv6]:PORT)")]
    MissingPort {
        /// The whole text.
        text: String,
    },
    /// The port is not a number from 0 to 65535.
    #[error("port '{port}' is not a number from 0 to 65535")]
    InvalidPort {
        /// The text after the colon.
        port: String,
    },
    /// A `.onion` name that is not a Tor v3 address (bad base32, length or checksum).
    #[error("'{host}' is not a valid Tor v3 onion address")]
    InvalidOnion {
        /// The host part.
        host: String,
    },
    /// A 16-character Tor v2 `.onion` name (retired by Tor in 2021; BIP155 ID 3).
    #[error("'{host}' is a Tor v2 onion address, no longer supported (Tor v3 has 56 characters)")]
    TorV2 {
        /// The host part.
        host: String,
    },
    /// A `.b32.i2p` name that is not 52 base32 characters.
    #[error("'{host}' is not a valid I2P .b32.i2p address")]
    InvalidI2p {
        /// The host part.
        host: String,
    },
    /// Neither an IP address nor an onion or I2P name: a host name, which must be looked up
    /// (or handed to a proxy as a name: [`crate::proxy::Target::Name`]).
    #[error("'{host}' is not an IP, .onion or .b32.i2p address")]
    NotAnAddress {
        /// The host part.
        host: String,
    },
    /// An `addrv2` entry of a network not represented here (Tor v2, or an unknown BIP155
    /// network ID), or a CJDNS address outside fc00::/8.
    #[error("unsupported BIP155 address (network id {network_id})")]
    Unsupported {
        /// The BIP155 network ID (3 = Tor v2; 6 = CJDNS outside fc00::/8).
        network_id: u8,
    },
}

impl PeerAddr {
    /// `host` at `port`.
    pub fn new(host: Host, port: u16) -> PeerAddr {
        PeerAddr { host, port }
    }

    /// The network it belongs to.
    pub fn net(&self) -> Net {
        self.host.net()
    }

    /// From a socket address, as [`Host::from_ip`] (IPv4-mapped IPv6 becomes IPv4).
    pub fn from_socket_addr(addr: SocketAddr) -> PeerAddr {
        PeerAddr::new(Host::from_ip(addr.ip()), addr.port())
    }

    /// The socket address for IPv4, IPv6 and CJDNS; `None` for Tor and I2P.
    pub fn to_socket_addr(&self) -> Option<SocketAddr> {
        self.host.ip().map(|ip| SocketAddr::new(ip, self.port))
    }

    /// Parses `text` as [`FromStr`] does, but a text without a port takes `default_port`
    /// (a bare IPv6 address may then be written without brackets).
    ///
    /// # Errors
    /// As [`FromStr`], except [`AddressError::MissingPort`].
    pub fn parse_with_port(text: &str, default_port: u16) -> Result<PeerAddr, AddressError> {
        if let Ok(ip) = text.parse::<IpAddr>() {
            return Ok(PeerAddr::new(host_of_ip(ip), default_port));
        }
        match split_host_port(text) {
            Ok((host, port)) => Ok(PeerAddr::new(parse_host(host)?, port)),
            Err(AddressError::MissingPort { .. }) => {
                let host = text
                    .strip_prefix('[')
                    .and_then(|t| t.strip_suffix(']'))
                    .unwrap_or(text);
                Ok(PeerAddr::new(parse_host(host)?, default_port))
            }
            Err(e) => Err(e),
        }
    }

    /// From a BIP155 address and port.
    ///
    /// # Errors
    /// [`AddressError::Unsupported`] for Tor v2, unknown network IDs and CJDNS outside
    /// fc00::/8 (Core refuses those too).
    pub fn from_addrv2(addr: &AddrV2, port: u16) -> Result<PeerAddr, AddressError> {
        let host = match addr {
            AddrV2::Ipv4(ip) => Host::Ipv4(*ip),
            AddrV2::Ipv6(ip) => Host::from_ip(IpAddr::V6(*ip)),
            AddrV2::TorV3(key) => Host::TorV3(*key),
            AddrV2::I2p(hash) => Host::I2p(*hash),
            AddrV2::Cjdns(ip) if is_cjdns_range(ip) => Host::Cjdns(*ip),
            AddrV2::Cjdns(_) => return Err(AddressError::Unsupported { network_id: 6 }),
            AddrV2::TorV2(_) => return Err(AddressError::Unsupported { network_id: 3 }),
            AddrV2::Unknown(id, _) => return Err(AddressError::Unsupported { network_id: *id }),
        };
        Ok(PeerAddr::new(host, port))
    }

    /// The BIP155 form of the host (the port travels beside it).
    pub fn to_addrv2(&self) -> AddrV2 {
        match self.host {
            Host::Ipv4(ip) => AddrV2::Ipv4(ip),
            Host::Ipv6(ip) => AddrV2::Ipv6(ip),
            Host::TorV3(key) => AddrV2::TorV3(key),
            Host::I2p(hash) => AddrV2::I2p(hash),
            Host::Cjdns(ip) => AddrV2::Cjdns(ip),
        }
    }

    /// An `addrv2` entry for it: `time` in Unix seconds, `services` as advertised.
    pub fn to_addrv2_message(&self, time: u32, services: ServiceFlags) -> AddrV2Message {
        AddrV2Message {
            time,
            services,
            addr: self.to_addrv2(),
            port: self.port,
        }
    }
}

impl TryFrom<&AddrV2Message> for PeerAddr {
    type Error = AddressError;

    /// As [`PeerAddr::from_addrv2`] with the entry's port.
    fn try_from(msg: &AddrV2Message) -> Result<PeerAddr, AddressError> {
        PeerAddr::from_addrv2(&msg.addr, msg.port)
    }
}

impl From<SocketAddr> for PeerAddr {
    fn from(addr: SocketAddr) -> PeerAddr {
        PeerAddr::from_socket_addr(addr)
    }
}

impl From<PeerAddr> for AddrV2 {
    fn from(addr: PeerAddr) -> AddrV2 {
        addr.to_addrv2()
    }
}

impl fmt::Display for PeerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.host {
            Host::Ipv6(_) | Host::Cjdns(_) => write!(f, "[{}]:{}", self.host, self.port),
            _ => write!(f, "{}:{}", self.host, self.port),
        }
    }
}

impl FromStr for PeerAddr {
    type Err = AddressError;

    /// `IPv4:PORT`, `[IPv6]:PORT`, `<56 chars>.onion:PORT`, `<52 chars>.b32.i2p:PORT`
    /// (either case). An IPv6 address in fc00::/8 is read as CJDNS, as Core does once CJDNS
    /// is reachable; use [`PeerAddr::from_socket_addr`] for plain IPv6 there.
    ///
    /// # Errors
    /// [`AddressError::MissingPort`], [`InvalidPort`](AddressError::InvalidPort),
    /// [`InvalidOnion`](AddressError::InvalidOnion), [`TorV2`](AddressError::TorV2),
    /// [`InvalidI2p`](AddressError::InvalidI2p) or
    /// [`NotAnAddress`](AddressError::NotAnAddress) (a host name).
    fn from_str(text: &str) -> Result<PeerAddr, AddressError> {
        let (host, port) = split_host_port(text)?;
        Ok(PeerAddr::new(parse_host(host)?, port))
    }
}

/// Whether `ip` is in CJDNS's fc00::/8.
pub fn is_cjdns_range(ip: &Ipv6Addr) -> bool {
    ip.octets()[0] == 0xfc
}

/// An IP's host, reading fc00::/8 as CJDNS (the text forms do).
fn host_of_ip(ip: IpAddr) -> Host {
    match Host::from_ip(ip) {
        Host::Ipv6(v6) if is_cjdns_range(&v6) => Host::Cjdns(v6),
        host => host,
    }
}

/// Splits `HOST:PORT` / `[IPv6]:PORT`; the host comes back without brackets.
fn split_host_port(text: &str) -> Result<(&str, u16), AddressError> {
    let missing = || AddressError::MissingPort {
        text: text.to_owned(),
    };
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or_else(missing)?;
        (host, after.strip_prefix(':').ok_or_else(missing)?)
    } else {
        let (host, port) = text.rsplit_once(':').ok_or_else(missing)?;
        if host.contains(':') {
            return Err(missing()); // A bare IPv6 address: the port needs brackets.
        }
        (host, port)
    };
    let port = port.parse::<u16>().map_err(|_| AddressError::InvalidPort {
        port: port.to_owned(),
    })?;
    Ok((host, port))
}

/// An IP, `.onion` or `.b32.i2p` host (no brackets, no port).
fn parse_host(host: &str) -> Result<Host, AddressError> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(host_of_ip(ip));
    }
    let lower = host.to_ascii_lowercase();
    if let Some(label) = lower.strip_suffix(".onion") {
        return text::parse_onion(label)
            .map(Host::TorV3)
            .map_err(|e| match e {
                text::NameError::TorV2 => AddressError::TorV2 {
                    host: host.to_owned(),
                },
                _ => AddressError::InvalidOnion {
                    host: host.to_owned(),
                },
            });
    }
    if let Some(label) = lower.strip_suffix(".b32.i2p") {
        return text::parse_i2p(label)
            .map(Host::I2p)
            .map_err(|_| AddressError::InvalidI2p {
                host: host.to_owned(),
            });
    }
    Err(AddressError::NotAnAddress {
        host: host.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ONION: &str = "pg6mmjiyjmcrsslvykfwnntlaru7p5svn6y2ymmju6nubxndf4pscryd.onion";
    const I2P: &str = "22pis7zmm4r466tciqekpwjwzf2qi3a536bow7k5tu5kxgmbvrkq.b32.i2p";

    #[test]
    fn text_forms_round_trip_per_network() {
        for (text, net) in [
            ("1.2.3.4:8333", Net::Ipv4),
            ("[2001:db8::1]:8333", Net::Ipv6),
            (&format!("{ONION}:8333"), Net::Onion),
            (&format!("{I2P}:0"), Net::I2p),
            ("[fc00::1]:8333", Net::Cjdns),
        ] {
            let addr: PeerAddr = text.parse().unwrap();
            assert_eq!(addr.net(), net, "{text}");
            assert_eq!(addr.to_string(), text);
            let v2 = addr.to_addrv2();
            assert_eq!(PeerAddr::from_addrv2(&v2, addr.port).unwrap(), addr);
            let msg = addr.to_addrv2_message(1, ServiceFlags::NETWORK);
            assert_eq!(PeerAddr::try_from(&msg).unwrap(), addr);
        }
        let upper: PeerAddr = format!("{}:9", ONION.to_uppercase()).parse().unwrap();
        assert_eq!(upper.to_string(), format!("{ONION}:9"));
    }

    #[test]
    fn bad_text_gives_the_matching_error() {
        let err = |t: &str| t.parse::<PeerAddr>().unwrap_err();
        assert!(matches!(err("1.2.3.4"), AddressError::MissingPort { .. }));
        assert!(matches!(err("::1"), AddressError::MissingPort { .. }));
        assert!(matches!(
            err("1.2.3.4:99999"),
            AddressError::InvalidPort { .. }
        ));
        assert!(matches!(
            err("expyuzz4wqqyqhjn.onion:8333"),
            AddressError::TorV2 { .. }
        ));
        let mut broken = ONION.to_string();
        broken.replace_range(0..1, "a");
        assert!(matches!(
            err(&format!("{broken}:1")),
            AddressError::InvalidOnion { .. }
        ));
        assert!(matches!(
            err("abc.b32.i2p:0"),
            AddressError::InvalidI2p { .. }
        ));
        assert!(matches!(
            err("seed.bitcoin.sipa.be:8333"),
            AddressError::NotAnAddress { .. }
        ));
        assert_eq!(
            err("1.2.3.4").to_string(),
            "'1.2.3.4' has no port (HOST:PORT, or [IPv6]:PORT)"
        );
    }

    #[test]
    fn default_port_applies_when_none_is_given() {
        let p = |t: &str| PeerAddr::parse_with_port(t, 8333).unwrap().to_string();
        assert_eq!(p("1.2.3.4"), "1.2.3.4:8333");
        assert_eq!(p("1.2.3.4:1"), "1.2.3.4:1");
        assert_eq!(p("::1"), "[::1]:8333");
        assert_eq!(p("[::1]"), "[::1]:8333");
        assert_eq!(p(ONION), format!("{ONION}:8333"));
    }

    #[test]
    fn socket_addresses_and_unsupported_addrv2() {
        let mapped: SocketAddr = "[::ffff:1.2.3.4]:5".parse().unwrap();
        assert_eq!(
            PeerAddr::from_socket_addr(mapped).host,
            Host::Ipv4(Ipv4Addr::new(1, 2, 3, 4))
        );
        let fc: SocketAddr = "[fc00::1]:5".parse().unwrap();
        assert_eq!(PeerAddr::from(fc).net(), Net::Ipv6);
        assert_eq!(PeerAddr::from(fc).to_socket_addr(), Some(fc));
        let onion: PeerAddr = format!("{ONION}:1").parse().unwrap();
        assert_eq!(onion.to_socket_addr(), None);
        assert_eq!(
            PeerAddr::from_addrv2(&AddrV2::TorV2([0; 10]), 1),
            Err(AddressError::Unsupported { network_id: 3 })
        );
        assert_eq!(
            PeerAddr::from_addrv2(&AddrV2::Cjdns(Ipv6Addr::LOCALHOST), 1),
            Err(AddressError::Unsupported { network_id: 6 })
        );
        assert!(PeerAddr::from_addrv2(&AddrV2::Unknown(9, vec![1]), 1).is_err());
    }

    #[test]
    fn network_names_as_core() {
        for net in Net::ALL {
            assert_eq!(net.name().parse::<Net>().unwrap(), net);
        }
        assert_eq!("TOR".parse::<Net>().unwrap(), Net::Onion);
        assert!("internal".parse::<Net>().is_err());
    }
}
