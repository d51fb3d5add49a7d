//! Manual peers as a user writes them (Bitcoin Core's `-connect`/`-addnode`/`addnode`): an
//! address, or a host name looked up again before every dial ([`PeerTarget`]).

use std::fmt;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use bitcoin::Network;

/// The default P2P port of `network` (Core's `nDefaultPort`): mainnet 8333, testnet3 18333,
/// testnet4 48333, signet 38333, regtest 18444. The `default_port` to give
/// [`PeerTarget::parse`].
pub fn default_p2p_port(network: Network) -> u16 {
    match network {
        Network::Bitcoin => 8333,
        Network::Testnet => 18333,
        Network::Testnet4 => 48333,
        Network::Signet => 38333,
        _ => 18444,
    }
}

/// Longest host name, in bytes (RFC 1035, without the trailing dot).
pub const MAX_HOST_NAME_LEN: usize = 253;
/// Longest label of a host name, in bytes (RFC 1035).
const MAX_LABEL_LEN: usize = 63;

/// A manual peer: an address, or a host name resolved at each (re)connection.
///
/// Made with [`PeerTarget::parse`] from the text a user gave, or from a [`SocketAddr`]
/// (`From`). [`Display`](fmt::Display) gives the canonical text: the socket address, or
/// `host:port`.
///
/// # Forms
/// [`PeerTarget::parse`] follows Core's `SplitHostPort` (`src/util/strencodings.cpp`):
///
/// | text | meaning |
/// | --- | --- |
/// | `1.2.3.4`, `2001:db8::1`, `[2001:db8::1]` | that IP on the default port |
/// | `1.2.3.4:8333`, `[2001:db8::1]:8333` | that IP and port |
/// | `node.example`, `localhost` | that host name on the default port |
/// | `node.example:8333` | that host name and port |
///
/// As in Core, a colon is a port separator only after `]` or when it is the only colon, so
/// an unbracketed `2001:db8::1` is an IPv6 address on the default port. Ports are 1..=65535
/// (Core refuses port 0). Host names are checked for shape only (labels of letters, digits,
/// `-` and `_`, at most 63 bytes each, 253 in all) and lower-cased; a name whose last label is
/// all digits (`127.1`, `256.0.0.1`) is refused as a malformed IPv4 address rather than handed
/// to the system resolver, which would read `127.1` as `127.0.0.1`. IPv6 zone ids (`%eth0`)
/// are not supported.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PeerTarget {
    /// A numeric address, dialled as is.
    Addr(SocketAddr),
    /// A host name (lower-case, no trailing dot) and port, looked up with the system resolver
    /// before each dial, so a peer that moves to another address is found again.
    Name {
        /// The host name, e.g. `localhost` or `node.example`.
        host: String,
        /// The port, 1..=65535.
        port: u16,
    },
}

/// Why a manual peer's text was refused by [`PeerTarget::parse`]. Each variant carries the
/// offending part of the text; the message is one lower-case line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PeerTargetError {
    /// Nothing was given (or only a port, as in `:8333`).
    #[error("no host or IP address")]
    Empty,
    /// The port is not a number from 1 to 65535.
    #[error("port '{port}' is not a number from 1 to 65535")]
    InvalidPort {
        /// The text after the separating colon.
        port: String,
    },
    /// The text inside `[` `]` is not an IPv6 address, or the brackets are unbalanced.
    #[error("'{text}' is not a bracketed IPv6 address ([v6] or [v6]:port)")]
    InvalidIpv6 {
        /// The whole text.
        text: String,
    },
    /// More than one colon without brackets, and not an IPv6 address.
    #[error("'{text}' is not an IP address or host name (an IPv6 address with a port goes in brackets: [v6]:port)")]
    TooManyColons {
        /// The whole text.
        text: String,
    },
    /// Dots and digits only, but not a valid IPv4 address (e.g. `256.1.1.1`, `127.1`).
    #[error("'{host}' is not a valid IPv4 address")]
    InvalidIpv4 {
        /// The host part.
        host: String,
    },
    /// Not a valid host name: empty label, a character other than letters, digits, `-`, `_`,
    /// a label starting or ending with `-`, or too long.
    #[error("'{host}' is not a valid host name")]
    InvalidHostName {
        /// The host part.
        host: String,
    },
}

impl PeerTarget {
    /// Parses `text` in any of the [forms](PeerTarget#forms); `default_port` is used
    /// when the text has no port (the network's P2P port, e.g. 8333 on mainnet, 18444 on
    /// regtest). No name is looked up here.
    ///
    /// # Errors
    /// A [`PeerTargetError`] naming what is wrong. `default_port` itself is not checked.
    pub fn parse(text: &str, default_port: u16) -> Result<PeerTarget, PeerTargetError> {
        if text.is_empty() {
            return Err(PeerTargetError::Empty);
        }
        if let Some(rest) = text.strip_prefix('[') {
            let bad = || PeerTargetError::InvalidIpv6 { text: text.into() };
            let (inside, after) = rest.split_once(']').ok_or_else(bad)?;
            let ip: Ipv6Addr = inside.parse().map_err(|_| bad())?;
            let port = match after {
                "" => default_port,
                _ => parse_port(after.strip_prefix(':').ok_or_else(bad)?)?,
            };
            return Ok(PeerTarget::Addr(SocketAddr::new(IpAddr::V6(ip), port)));
        }
        // Core: several colons without brackets make the whole text the host.
        if let Ok(ip) = text.parse::<IpAddr>() {
            return Ok(PeerTarget::Addr(SocketAddr::new(ip, default_port)));
        }
        let (host, port) = match text.split_once(':') {
            None => (text, default_port),
            Some((_, after)) if after.contains(':') => {
                return Err(PeerTargetError::TooManyColons { text: text.into() })
            }
            Some((host, port)) => (host, parse_port(port)?),
        };
        if host.is_empty() {
            return Err(PeerTargetError::Empty);
        }
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(PeerTarget::Addr(SocketAddr::new(ip, port)));
        }
        Ok(PeerTarget::Name {
            host: check_host_name(host)?,
            port,
        })
    }

    /// The port dialled.
    pub fn port(&self) -> u16 {
        match self {
            PeerTarget::Addr(addr) => addr.port(),
            PeerTarget::Name { port, .. } => *port,
        }
    }

    /// The addresses to dial, in the resolver's order of preference: the address itself, or
    /// what the system resolver (tokio's `lookup_host`, i.e. `getaddrinfo` on a blocking
    /// thread) returns for the name now. Not cached: each call looks the name up again.
    ///
    /// # Errors
    /// The resolver's error (unknown name, no network); a name with no address gives
    /// [`std::io::ErrorKind::NotFound`].
    pub async fn resolve(&self) -> std::io::Result<Vec<SocketAddr>> {
        match self {
            PeerTarget::Addr(addr) => Ok(vec![*addr]),
            PeerTarget::Name { host, port } => {
                let mut addrs: Vec<SocketAddr> = Vec::new();
                for addr in tokio::net::lookup_host((host.as_str(), *port)).await? {
                    if !addrs.contains(&addr) {
                        addrs.push(addr);
                    }
                }
                if addrs.is_empty() {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        format!("{host} has no address"),
                    ));
                }
                Ok(addrs)
            }
        }
    }
}

impl From<SocketAddr> for PeerTarget {
    fn from(addr: SocketAddr) -> PeerTarget {
        PeerTarget::Addr(addr)
    }
}

impl fmt::Display for PeerTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerTarget::Addr(addr) => write!(f, "{addr}"),
            PeerTarget::Name { host, port } => write!(f, "{host}:{port}"),
        }
    }
}

/// Digits only, 1..=65535 (`u16::from_str` alone would take `+80`).
fn parse_port(text: &str) -> Result<u16, PeerTargetError> {
    let bad = || PeerTargetError::InvalidPort { port: text.into() };
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    match text.parse::<u16>() {
        Ok(0) | Err(_) => Err(bad()),
        Ok(port) => Ok(port),
    }
}

/// The host name lower-cased without a trailing dot, if it has the shape of one.
fn check_host_name(host: &str) -> Result<String, PeerTargetError> {
    let bad = || PeerTargetError::InvalidHostName { host: host.into() };
    let name = host.strip_suffix('.').unwrap_or(host);
    if name.is_empty() || name.len() > MAX_HOST_NAME_LEN {
        return Err(bad());
    }
    let labels: Vec<&str> = name.split('.').collect();
    for label in &labels {
        let shaped = !label.is_empty()
            && label.len() <= MAX_LABEL_LEN
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !shaped {
            return Err(bad());
        }
    }
    // No top-level domain is all digits (RFC 3696 §2): this is a mistyped IPv4 address.
    if labels
        .last()
        .is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(PeerTargetError::InvalidIpv4 { host: host.into() });
    }
    Ok(name.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> PeerTarget {
        PeerTarget::Addr(s.parse().unwrap())
    }

    fn name(host: &str, port: u16) -> PeerTarget {
        PeerTarget::Name {
            host: host.into(),
            port,
        }
    }

    #[test]
    fn every_form_core_takes() {
        let cases = [
            ("127.0.0.1", addr("127.0.0.1:18444")),
            ("127.0.0.1:8333", addr("127.0.0.1:8333")),
            ("::1", addr("[::1]:18444")),
            ("2001:db8::1:8333", addr("[2001:db8::1:8333]:18444")),
            ("[::1]", addr("[::1]:18444")),
            ("[::1]:8333", addr("[::1]:8333")),
            ("[::ffff:1.2.3.4]:1", addr("[::ffff:1.2.3.4]:1")),
            ("localhost", name("localhost", 18444)),
            ("localhost:8333", name("localhost", 8333)),
            ("LocalHost.:65535", name("localhost", 65535)),
            ("seed.bitcoin.sipa.be", name("seed.bitcoin.sipa.be", 18444)),
            ("_srv.x-y.example:1", name("_srv.x-y.example", 1)),
            ("1.example", name("1.example", 18444)),
        ];
        for (text, want) in cases {
            assert_eq!(PeerTarget::parse(text, 18444), Ok(want), "{text}");
        }
    }

    #[test]
    fn default_ports_are_cores() {
        let ports = [
            (Network::Bitcoin, 8333),
            (Network::Testnet, 18333),
            (Network::Testnet4, 48333),
            (Network::Signet, 38333),
            (Network::Regtest, 18444),
        ];
        for (network, port) in ports {
            assert_eq!(default_p2p_port(network), port, "{network:?}");
            let target = PeerTarget::parse("127.0.0.1", default_p2p_port(network)).unwrap();
            assert_eq!(target.port(), port);
        }
    }

    #[test]
    fn the_default_port_is_the_callers() {
        for (network_port, text) in [(8333, "1.2.3.4"), (48333, "[::1]"), (38333, "localhost")] {
            assert_eq!(
                PeerTarget::parse(text, network_port).unwrap().port(),
                network_port
            );
        }
        assert_eq!(PeerTarget::parse("1.2.3.4:9", 8333).unwrap().port(), 9);
    }

    #[test]
    fn bad_values_say_what_is_wrong() {
        use PeerTargetError::*;
        let port = |p: &str| InvalidPort { port: p.into() };
        let cases = [
            ("", Empty),
            (":8333", Empty),
            ("127.0.0.1:", port("")),
            ("127.0.0.1:0", port("0")),
            ("127.0.0.1:65536", port("65536")),
            ("localhost:+80", port("+80")),
            ("localhost:http", port("http")),
            ("localhost: 80", port(" 80")),
            ("[::1]:", port("")),
            (
                "[::1",
                InvalidIpv6 {
                    text: "[::1".into(),
                },
            ),
            (
                "[1.2.3.4]:80",
                InvalidIpv6 {
                    text: "[1.2.3.4]:80".into(),
                },
            ),
            (
                "[::1]8333",
                InvalidIpv6 {
                    text: "[::1]8333".into(),
                },
            ),
            (
                "1.2.3.4:5:6",
                TooManyColons {
                    text: "1.2.3.4:5:6".into(),
                },
            ),
            (
                "fe80::1%eth0",
                TooManyColons {
                    text: "fe80::1%eth0".into(),
                },
            ),
            (
                "256.1.1.1",
                InvalidIpv4 {
                    host: "256.1.1.1".into(),
                },
            ),
            (
                "127.1:80",
                InvalidIpv4 {
                    host: "127.1".into(),
                },
            ),
            (
                "no spaces",
                InvalidHostName {
                    host: "no spaces".into(),
                },
            ),
            (
                "a..b",
                InvalidHostName {
                    host: "a..b".into(),
                },
            ),
            (
                "-a.example",
                InvalidHostName {
                    host: "-a.example".into(),
                },
            ),
            ("http://x", port("//x")),
            (".", InvalidHostName { host: ".".into() }),
        ];
        for (text, want) in cases {
            assert_eq!(PeerTarget::parse(text, 8333), Err(want), "{text:?}");
        }
        let long = format!("{}.example", "a".repeat(64));
        assert!(matches!(
            PeerTarget::parse(&long, 1),
            Err(InvalidHostName { .. })
        ));
        let too_long = ["a"; 127].join(".") + ".bc";
        assert_eq!(too_long.len(), 256);
        assert!(matches!(
            PeerTarget::parse(&too_long, 1),
            Err(InvalidHostName { .. })
        ));
    }

    #[test]
    fn messages_are_one_line_and_quote_the_value() {
        let e = PeerTarget::parse("localhost:99999", 1)
            .unwrap_err()
            .to_string();
        assert_eq!(e, "port '99999' is not a number from 1 to 65535");
        let e = PeerTarget::parse("1:2:x", 1).unwrap_err().to_string();
        assert!(e.contains("'1:2:x'") && e.contains("[v6]:port"), "{e}");
    }

    #[test]
    fn display_round_trips() {
        for text in ["127.0.0.1:1", "[::1]:2", "localhost:3"] {
            let target = PeerTarget::parse(text, 9).unwrap();
            assert_eq!(target.to_string(), text);
            assert_eq!(PeerTarget::parse(&target.to_string(), 9).unwrap(), target);
        }
        let from: PeerTarget = "1.2.3.4:5".parse::<SocketAddr>().unwrap().into();
        assert_eq!(from, addr("1.2.3.4:5"));
    }

    #[tokio::test]
    async fn resolve_looks_up_names_and_passes_addresses_through() {
        assert_eq!(
            addr("10.0.0.1:1").resolve().await.unwrap(),
            vec!["10.0.0.1:1".parse().unwrap()]
        );
        let found = name("localhost", 4).resolve().await.unwrap();
        assert!(!found.is_empty());
        assert!(found.iter().all(|a| a.ip().is_loopback() && a.port() == 4));
    }
}
