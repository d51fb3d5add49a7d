//! The SOCKS5 client handshake (RFC 1928 `CONNECT`, RFC 1929 username/password), over any
//! byte stream, as Bitcoin Core's `Socks5()` (src/netbase.cpp) speaks it.
//!
//! 1. Greeting: version 5 and the methods we offer: "no authentication" (0x00), plus
//!    "username/password" (0x02) when we have credentials.
//! 2. The proxy picks one; for 0x02 we send RFC 1929's sub-negotiation (version 1, user,
//!    password, each 1..=255 bytes) and need status 0.
//! 3. `CONNECT` request: IPv4 (ATYP 1), domain name (ATYP 3, resolved by the proxy: host
//!    names, `.onion`, `.b32.i2p`) or IPv6 (ATYP 4), and the port.
//! 4. Reply: code 0 is success, anything else is [`Socks5Error::Refused`] with the code;
//!    the bound address that follows is read and discarded. The stream then carries the
//!    peer's bytes.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::Target;

/// SOCKS protocol version 5.
const VERSION: u8 = 0x05;
/// RFC 1929 sub-negotiation version.
const AUTH_VERSION: u8 = 0x01;
/// Method: no authentication.
const METHOD_NONE: u8 = 0x00;
/// Method: username/password (RFC 1929).
const METHOD_USER_PASSWORD: u8 = 0x02;
/// Method reply: none of ours is acceptable.
const METHOD_NONE_ACCEPTABLE: u8 = 0xff;
/// Command: CONNECT.
const CMD_CONNECT: u8 = 0x01;
/// Address types.
const ATYP_IPV4: u8 = 0x01;
const ATYP_DOMAIN: u8 = 0x03;
const ATYP_IPV6: u8 = 0x04;

/// A SOCKS5 reply code other than success (RFC 1928 section 6; 0xf0–0xf7 are Tor's
/// extended codes for onion services, which Core names too).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ReplyCode(pub u8);

impl ReplyCode {
    /// 0x05 "connection refused": the proxy reached the host, which refused.
    pub const CONNECTION_REFUSED: ReplyCode = ReplyCode(0x05);

    /// What the code means, as RFC 1928 (and Tor's extensions) word it.
    pub fn description(self) -> &'static str {
        match self.0 {
            0x01 => "general SOCKS server failure",
            0x02 => "connection not allowed by ruleset",
            0x03 => "network unreachable",
            0x04 => "host unreachable",
            0x05 => "connection refused",
            0x06 => "TTL expired",
            0x07 => "command not supported",
            0x08 => "address type not supported",
            0xf0 => "onion service descriptor can not be found",
            0xf1 => "onion service descriptor is invalid",
            0xf2 => "onion service introduction failed",
            0xf3 => "onion service rendezvous failed",
            0xf4 => "onion service missing client authorization",
            0xf5 => "onion service wrong client authorization",
            0xf6 => "onion service invalid address",
            0xf7 => "onion service introduction timed out",
            _ => "unknown reply code",
        }
    }
}

impl fmt::Display for ReplyCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (0x{:02x})", self.description(), self.0)
    }
}

/// Why a connection through a SOCKS5 proxy failed. Each variant says which side failed;
/// messages are one lower-case line.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Socks5Error {
    /// The TCP connection to the proxy itself failed (nothing listening, unreachable).
    #[error("cannot reach the SOCKS5 proxy {proxy}: {source}")]
    ProxyUnreachable {
        /// The proxy's address.
        proxy: SocketAddr,
        /// The connect error.
        #[source]
        source: io::Error,
    },
    /// Connecting to the proxy, or its handshake, took longer than allowed.
    #[error("SOCKS5 proxy {proxy} timed out after {after:?} ({stage})")]
    Timeout {
        /// The proxy's address.
        proxy: SocketAddr,
        /// The limit that passed.
        after: Duration,
        /// `"connecting to the proxy"` or `"handshake"`.
        stage: &'static str,
    },
    /// The proxy answered with another SOCKS version (it is not a SOCKS5 server).
    #[error("the proxy answered with SOCKS version {version}, not 5")]
    NotSocks5 {
        /// The version byte it sent.
        version: u8,
    },
    /// The proxy accepted none of the methods we offered (it wants credentials we have not
    /// got, or none of ours).
    #[error("the proxy accepted no authentication method we offered")]
    NoAcceptableMethod,
    /// The proxy chose a method we did not offer.
    #[error("the proxy chose authentication method 0x{method:02x}, which we did not offer")]
    UnexpectedMethod {
        /// The method byte.
        method: u8,
    },
    /// Username/password authentication was refused (RFC 1929 status other than 0).
    #[error("the proxy refused our username/password (status 0x{status:02x})")]
    AuthFailed {
        /// The RFC 1929 status byte.
        status: u8,
    },
    /// The proxy refused the `CONNECT`, with its RFC 1928 reply code.
    #[error("the proxy could not connect to {target}: {code}")]
    Refused {
        /// Where we asked it to connect.
        target: Target,
        /// Its reply code.
        code: ReplyCode,
    },
    /// A field does not fit SOCKS5: a name or a credential longer than 255 bytes, or empty.
    #[error("{what} must be 1 to 255 bytes, not {len}")]
    TooLong {
        /// `"host name"`, `"username"` or `"password"`.
        what: &'static str,
        /// Its length in bytes.
        len: usize,
    },
    /// The proxy's reply is malformed (an unknown address type in it).
    #[error("malformed SOCKS5 reply: {0}")]
    Malformed(&'static str),
    /// Reading from or writing to the proxy failed, or it closed the connection mid-way.
    #[error("SOCKS5 proxy I/O: {0}")]
    Io(#[from] io::Error),
}

impl Socks5Error {
    /// The [`io::ErrorKind`] for callers that only see [`io::Error`] (the server's
    /// `Dialer`). Only what the proxy reports about the target maps to a specific kind
    /// (reply 5 `ConnectionRefused`, 4 `HostUnreachable`, 3 `NetworkUnreachable`, 6
    /// `TimedOut`), so it reads as the peer's doing; a failure of the proxy itself (not
    /// reachable, timed out, authentication, protocol) is `Other`, so its message, which
    /// names the proxy, is what gets shown.
    pub fn io_kind(&self) -> io::ErrorKind {
        match self {
            Socks5Error::Refused { code, .. } => match code.0 {
                0x03 => io::ErrorKind::NetworkUnreachable,
                0x04 => io::ErrorKind::HostUnreachable,
                0x05 => io::ErrorKind::ConnectionRefused,
                0x06 => io::ErrorKind::TimedOut,
                _ => io::ErrorKind::Other,
            },
            _ => io::ErrorKind::Other,
        }
    }
}

impl From<Socks5Error> for io::Error {
    /// An [`io::Error`] of [`Socks5Error::io_kind`] carrying the typed error (get it back
    /// with `err.get_ref().and_then(|e| e.downcast_ref::<Socks5Error>())`).
    fn from(e: Socks5Error) -> io::Error {
        io::Error::new(e.io_kind(), e)
    }
}

/// Runs the client side of the SOCKS5 handshake on `stream` (already connected to the
/// proxy), asking it to connect to `target`, authenticating with `credentials` (username,
/// password) when given. On success the stream is a tunnel to `target`. No timeout here:
/// the caller bounds it.
///
/// # Errors
/// [`Socks5Error::TooLong`] before anything is sent; then [`NotSocks5`](Socks5Error::NotSocks5),
/// [`NoAcceptableMethod`](Socks5Error::NoAcceptableMethod),
/// [`UnexpectedMethod`](Socks5Error::UnexpectedMethod),
/// [`AuthFailed`](Socks5Error::AuthFailed), [`Refused`](Socks5Error::Refused),
/// [`Malformed`](Socks5Error::Malformed) or [`Io`](Socks5Error::Io).
pub async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    target: &Target,
    credentials: Option<(&str, &str)>,
) -> Result<(), Socks5Error> {
    let request = connect_request(target)?;
    let auth = credentials.map(auth_request).transpose()?;

    let greeting: &[u8] = if auth.is_some() {
        &[VERSION, 2, METHOD_NONE, METHOD_USER_PASSWORD]
    } else {
        &[VERSION, 1, METHOD_NONE]
    };
    stream.write_all(greeting).await?;
    let mut choice = [0u8; 2];
    stream.read_exact(&mut choice).await?;
    if choice[0] != VERSION {
        return Err(Socks5Error::NotSocks5 { version: choice[0] });
    }
    match (choice[1], &auth) {
        (METHOD_NONE, _) => {}
        (METHOD_USER_PASSWORD, Some(auth)) => {
            stream.write_all(auth).await?;
            let mut status = [0u8; 2];
            stream.read_exact(&mut status).await?;
            if status[0] != AUTH_VERSION || status[1] != 0 {
                return Err(Socks5Error::AuthFailed { status: status[1] });
            }
        }
        (METHOD_NONE_ACCEPTABLE, _) => return Err(Socks5Error::NoAcceptableMethod),
        (method, _) => return Err(Socks5Error::UnexpectedMethod { method }),
    }

    stream.write_all(&request).await?;
    let mut head = [0u8; 4];
    stream.read_exact(&mut head).await?;
    if head[0] != VERSION {
        return Err(Socks5Error::NotSocks5 { version: head[0] });
    }
    if head[1] != 0 {
        return Err(Socks5Error::Refused {
            target: target.clone(),
            code: ReplyCode(head[1]),
        });
    }
    // The bound address (and port), which we do not use.
    let skip = match head[3] {
        ATYP_IPV4 => 4 + 2,
        ATYP_IPV6 => 16 + 2,
        ATYP_DOMAIN => {
            let mut len = [0u8; 1];
            stream.read_exact(&mut len).await?;
            usize::from(len[0]) + 2
        }
        _ => return Err(Socks5Error::Malformed("unknown address type in the reply")),
    };
    let mut bound = [0u8; 255 + 2];
    stream.read_exact(&mut bound[..skip]).await?;
    Ok(())
}

/// The `CONNECT` request for `target`.
fn connect_request(target: &Target) -> Result<Vec<u8>, Socks5Error> {
    let mut out = vec![VERSION, CMD_CONNECT, 0x00];
    let port = match target {
        Target::Addr(SocketAddr::V4(a)) => {
            out.push(ATYP_IPV4);
            out.extend_from_slice(&a.ip().octets());
            a.port()
        }
        Target::Addr(SocketAddr::V6(a)) => {
            out.push(ATYP_IPV6);
            out.extend_from_slice(&a.ip().octets());
            a.port()
        }
        Target::Name { host, port } => {
            out.push(ATYP_DOMAIN);
            out.push(len_byte("host name", host)?);
            out.extend_from_slice(host.as_bytes());
            *port
        }
    };
    out.extend_from_slice(&port.to_be_bytes());
    Ok(out)
}

/// RFC 1929's sub-negotiation request.
fn auth_request((user, password): (&str, &str)) -> Result<Vec<u8>, Socks5Error> {
    let mut out = vec![AUTH_VERSION, len_byte("username", user)?];
    out.extend_from_slice(user.as_bytes());
    out.push(len_byte("password", password)?);
    out.extend_from_slice(password.as_bytes());
    Ok(out)
}

/// The length byte of a 1..=255-byte field.
fn len_byte(what: &'static str, field: &str) -> Result<u8, Socks5Error> {
    match u8::try_from(field.len()) {
        Ok(len) if len > 0 => Ok(len),
        _ => Err(Socks5Error::TooLong {
            what,
            len: field.len(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::duplex;

    /// Runs the handshake against a scripted proxy that expects `expect` (in order) and
    /// answers `replies` after each; returns the handshake's result.
    async fn scripted(
        target: Target,
        credentials: Option<(&str, &str)>,
        steps: Vec<(Vec<u8>, Vec<u8>)>,
    ) -> Result<(), Socks5Error> {
        let (mut client, mut proxy) = duplex(1024);
        let server = tokio::spawn(async move {
            for (expect, reply) in steps {
                let mut got = vec![0u8; expect.len()];
                proxy.read_exact(&mut got).await.unwrap();
                assert_eq!(got, expect);
                proxy.write_all(&reply).await.unwrap();
            }
            proxy
        });
        let result = handshake(&mut client, &target, credentials).await;
        let _proxy = server.await.unwrap();
        result
    }

    fn ok_reply() -> Vec<u8> {
        vec![5, 0, 0, 1, 127, 0, 0, 1, 0x1f, 0x90]
    }

    #[tokio::test]
    async fn ipv4_without_auth_uses_these_exact_bytes() {
        let target = Target::Addr("1.2.3.4:8333".parse().unwrap());
        let steps = vec![
            (vec![5, 1, 0], vec![5, 0]),
            (vec![5, 1, 0, 1, 1, 2, 3, 4, 0x20, 0x8d], ok_reply()),
        ];
        scripted(target, None, steps).await.unwrap();
    }

    #[tokio::test]
    async fn names_go_as_domain_with_username_and_password() {
        let target = Target::Name {
            host: "ab.onion".into(),
            port: 8333,
        };
        let mut request = vec![5, 1, 0, 3, 8];
        request.extend_from_slice(b"ab.onion");
        request.extend_from_slice(&[0x20, 0x8d]);
        let steps = vec![
            (vec![5, 2, 0, 2], vec![5, 2]),
            (vec![1, 1, b'u', 2, b'p', b'w'], vec![1, 0]),
            (request, vec![5, 0, 0, 3, 3, b'a', b'b', b'c', 0, 1]),
        ];
        scripted(target, Some(("u", "pw")), steps).await.unwrap();
    }

    #[tokio::test]
    async fn ipv6_targets_use_atyp_4() {
        let target = Target::Addr("[::1]:1".parse().unwrap());
        let mut request = vec![5, 1, 0, 4];
        request.extend_from_slice(&std::net::Ipv6Addr::LOCALHOST.octets());
        request.extend_from_slice(&[0, 1]);
        let mut reply = vec![5, 0, 0, 4];
        reply.extend_from_slice(&[0; 18]);
        let steps = vec![(vec![5, 1, 0], vec![5, 0]), (request, reply)];
        scripted(target, None, steps).await.unwrap();
    }

    #[tokio::test]
    async fn each_failure_is_typed() {
        let t = || Target::Addr("1.2.3.4:1".parse().unwrap());
        let refused = scripted(
            t(),
            None,
            vec![
                (vec![5, 1, 0], vec![5, 0]),
                (vec![5, 1, 0, 1, 1, 2, 3, 4, 0, 1], vec![5, 5, 0, 1]),
            ],
        )
        .await
        .unwrap_err();
        assert!(matches!(
            refused,
            Socks5Error::Refused { code, .. } if code == ReplyCode::CONNECTION_REFUSED
        ));
        assert_eq!(
            io::Error::from(refused).kind(),
            io::ErrorKind::ConnectionRefused
        );
        let auth = scripted(
            t(),
            Some(("u", "p")),
            vec![
                (vec![5, 2, 0, 2], vec![5, 2]),
                (vec![1, 1, b'u', 1, b'p'], vec![1, 1]),
            ],
        )
        .await
        .unwrap_err();
        assert!(matches!(auth, Socks5Error::AuthFailed { status: 1 }));
        let none = scripted(t(), None, vec![(vec![5, 1, 0], vec![5, 0xff])])
            .await
            .unwrap_err();
        assert!(matches!(none, Socks5Error::NoAcceptableMethod));
        let v4 = scripted(t(), None, vec![(vec![5, 1, 0], vec![4, 0])])
            .await
            .unwrap_err();
        assert!(matches!(v4, Socks5Error::NotSocks5 { version: 4 }));
        let long = Target::Name {
            host: "a".repeat(256),
            port: 1,
        };
        let too_long = scripted(long, None, vec![]).await.unwrap_err();
        assert!(matches!(too_long, Socks5Error::TooLong { len: 256, .. }));
    }

    #[test]
    fn reply_codes_read_as_the_rfc() {
        assert_eq!(ReplyCode(5).to_string(), "connection refused (0x05)");
        assert_eq!(
            ReplyCode(0xf0).description(),
            "onion service descriptor can not be found"
        );
    }
}
