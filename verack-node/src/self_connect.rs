//! Refuses, at start, a `--connect` or `--addnode` peer that is this node's own listening
//! address: the node would only ever dial itself.
//!
//! An address is ours when its port is the listening port and its IP reaches the listener:
//! the listening IP itself, or, when listening on all addresses (`0.0.0.0` or `::`), a
//! loopback address, the unspecified address or an address of a local interface. Host names
//! are looked up once at start for this check (bounded by [`LOOKUP_TIMEOUT`]); a name that
//! does not resolve is left to the connection loop, which reports it.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use verack::netgroup::canonical;
use verack::server::PeerTarget;

/// How long a host name lookup may take for this check.
pub const LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);

/// A manual peer that is this node.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{flag} {target} is this node's own listening address (--listen {listen}): it would connect to itself; give another node's address, or move this node with --listen")]
pub struct SelfConnectError {
    /// `--connect` or `--addnode`.
    pub flag: &'static str,
    /// The peer as given.
    pub target: String,
    /// Our listening address.
    pub listen: SocketAddr,
}

/// Whether dialling `target` reaches our listener on `listen`; `is_local_ip` says whether an
/// IP belongs to one of this machine's interfaces.
pub fn is_own_address(
    target: SocketAddr,
    listen: SocketAddr,
    is_local_ip: impl Fn(IpAddr) -> bool,
) -> bool {
    if target.port() != listen.port() {
        return false;
    }
    let (t, l) = (canonical(target.ip()), canonical(listen.ip()));
    if l.is_unspecified() {
        // 0.0.0.0 takes IPv4 only; [::] takes IPv6 and (dual-stack, the default) IPv4.
        let family = l.is_ipv6() || t.is_ipv4();
        family && (t.is_unspecified() || t.is_loopback() || is_local_ip(t))
    } else {
        // Dialling the unspecified address reaches the local host.
        t == l || (t.is_unspecified() && t.is_ipv4() == l.is_ipv4())
    }
}

/// Checks every `(flag, target, addresses it resolves to)`.
///
/// # Errors
/// [`SelfConnectError`] for the first target with an address of ours.
pub fn check(
    targets: &[(&'static str, String, Vec<SocketAddr>)],
    listen: Option<SocketAddr>,
    is_local_ip: impl Fn(IpAddr) -> bool,
) -> Result<(), SelfConnectError> {
    let Some(listen) = listen else {
        return Ok(());
    };
    for (flag, target, addrs) in targets {
        if addrs
            .iter()
            .any(|&a| is_own_address(a, listen, &is_local_ip))
        {
            return Err(SelfConnectError {
                flag,
                target: target.clone(),
                listen,
            });
        }
    }
    Ok(())
}

/// Whether `ip` is an address of this machine: binding a UDP socket to it succeeds only then
/// (no packet is sent).
pub fn is_local_ip(ip: IpAddr) -> bool {
    std::net::UdpSocket::bind(SocketAddr::new(ip, 0)).is_ok()
}

/// Resolves the `--connect` and `--addnode` peers (names with a [`LOOKUP_TIMEOUT`] bound) and
/// [`check`]s them against `listen` with [`is_local_ip`].
///
/// # Errors
/// As [`check`].
pub async fn check_manual_peers(
    connect: &[PeerTarget],
    addnode: &[PeerTarget],
    listen: Option<SocketAddr>,
) -> Result<(), SelfConnectError> {
    if listen.is_none() {
        return Ok(());
    }
    let mut targets = Vec::new();
    for (flag, list) in [("--connect", connect), ("--addnode", addnode)] {
        for target in list {
            let addrs = match target {
                PeerTarget::Addr(a) => vec![*a],
                PeerTarget::Name { .. } => tokio::time::timeout(LOOKUP_TIMEOUT, target.resolve())
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .unwrap_or_default(),
            };
            targets.push((flag, target.to_string(), addrs));
        }
    }
    check(&targets, listen, is_local_ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn lan(ip: IpAddr) -> bool {
        ip == "192.168.1.20".parse::<IpAddr>().unwrap()
    }

    #[test]
    fn own_addresses() {
        let any4 = a("0.0.0.0:18444");
        assert!(is_own_address(a("127.0.0.1:18444"), any4, lan));
        assert!(is_own_address(a("127.0.0.2:18444"), any4, lan));
        assert!(is_own_address(a("0.0.0.0:18444"), any4, lan));
        assert!(is_own_address(a("192.168.1.20:18444"), any4, lan));
        assert!(is_own_address(a("[::ffff:127.0.0.1]:18444"), any4, lan));
        assert!(
            !is_own_address(a("127.0.0.1:18445"), any4, lan),
            "other port"
        );
        assert!(
            !is_own_address(a("192.168.1.21:18444"), any4, lan),
            "other host"
        );
        assert!(
            !is_own_address(a("[::1]:18444"), any4, lan),
            "0.0.0.0 is IPv4 only"
        );
        let any6 = a("[::]:18444");
        assert!(is_own_address(a("[::1]:18444"), any6, lan));
        assert!(
            is_own_address(a("127.0.0.1:18444"), any6, lan),
            "dual stack"
        );
        let lo = a("127.0.0.1:18444");
        assert!(is_own_address(a("127.0.0.1:18444"), lo, lan));
        assert!(is_own_address(a("0.0.0.0:18444"), lo, lan));
        assert!(
            !is_own_address(a("127.0.0.2:18444"), lo, lan),
            "bound to .1 only"
        );
        assert!(!is_own_address(a("192.168.1.20:18444"), lo, lan));
    }

    #[test]
    fn the_error_names_the_flag_the_peer_and_the_listener() {
        let targets = vec![
            (
                "--connect",
                "127.0.0.1:28444".to_string(),
                vec![a("127.0.0.1:28444")],
            ),
            (
                "--addnode",
                "localhost:18444".to_string(),
                vec![a("127.0.0.1:18444")],
            ),
        ];
        let e = check(&targets, Some(a("0.0.0.0:18444")), |_| false).unwrap_err();
        assert_eq!(
            e.to_string(),
            "--addnode localhost:18444 is this node's own listening address (--listen 0.0.0.0:18444): it would connect to itself; give another node's address, or move this node with --listen"
        );
        assert_eq!(check(&targets, None, |_| false), Ok(()), "not listening");
        assert_eq!(
            check(&targets[..1], Some(a("0.0.0.0:18444")), |_| false),
            Ok(())
        );
    }

    #[test]
    fn local_interface_probe() {
        assert!(is_local_ip("127.0.0.1".parse().unwrap()));
        // TEST-NET-3 (RFC 5737) is never assigned to an interface here.
        assert!(!is_local_ip("203.0.113.77".parse().unwrap()));
    }

    #[tokio::test]
    async fn manual_peers_resolve_before_the_check() {
        let listen = Some(a("127.0.0.1:18444"));
        let own = [PeerTarget::from(a("127.0.0.1:18444"))];
        let other = [PeerTarget::from(a("127.0.0.1:1"))];
        assert!(check_manual_peers(&other, &own, listen).await.is_err());
        assert!(check_manual_peers(&other, &[], listen).await.is_ok());
        assert!(check_manual_peers(&own, &[], None).await.is_ok());
    }
}
