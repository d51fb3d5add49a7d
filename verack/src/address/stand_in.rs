//! Stand-ins: how the server, which keys peers by [`SocketAddr`], carries peers that have no
//! IP address of their own (Tor v3, I2P) or whose network an IP does not tell (CJDNS).
//!
//! Each such [`PeerAddr`] gets a stand-in socket address in the OnionCat prefix
//! `fd87:d87e:eb43::/48` (where Bitcoin Core kept Tor v2 addresses inside IPv6): 6 prefix
//! bytes, the BIP155 network ID (4 Tor v3, 5 I2P, 6 CJDNS), the host's first 2 bytes (so the
//! network group can be computed from the stand-in alone, as Core's `GetGroup`), and 7 bytes
//! of a hash of the whole host; the port is the peer's port. The stand-in is deterministic, and
//! a process-wide table maps it back to the [`PeerAddr`]: [`PeerAddr::from_stand_in`].
//!
//! The server's dialling code never connects to a stand-in: it hands the [`PeerAddr`] to
//! [`Dialer::dial_peer`](crate::server::Dialer::dial_peer), and refuses a stand-in the table
//! does not know (one saved in a previous run, for instance) with
//! [`std::io::ErrorKind::Unsupported`].

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::{Mutex, OnceLock};

use super::{Host, PeerAddr};

/// The stand-in prefix, `fd87:d87e:eb43::/48` (OnionCat's, as Core used for Tor v2).
pub const STAND_IN_PREFIX: [u8; 6] = [0xfd, 0x87, 0xd8, 0x7e, 0xeb, 0x43];

/// Stand-in IP → host. Grows with the distinct non-IP hosts the process handles (the address
/// manager holds at most a few tens of thousands): 16 + 34 bytes or so each.
fn table() -> &'static Mutex<HashMap<Ipv6Addr, Host>> {
    static TABLE: OnceLock<Mutex<HashMap<Ipv6Addr, Host>>> = OnceLock::new();
    TABLE.get_or_init(Default::default)
}

/// Whether `ip` is in the stand-in prefix `fd87:d87e:eb43::/48`.
pub fn is_stand_in(ip: IpAddr) -> bool {
    matches!(ip, IpAddr::V6(v6) if v6.octets()[..6] == STAND_IN_PREFIX)
}

/// The BIP155 network ID and first two host bytes a stand-in carries, or `None` for any
/// other IP. The network group of a stand-in ([`crate::netgroup::netgroup`]) is made of these.
pub fn stand_in_parts(ip: IpAddr) -> Option<(u8, [u8; 2])> {
    match ip {
        IpAddr::V6(v6) if is_stand_in(ip) => {
            let o = v6.octets();
            Some((o[6], [o[7], o[8]]))
        }
        _ => None,
    }
}

/// The stand-in IP of a non-IP (or CJDNS) host.
fn stand_in_ip(host: &Host) -> Option<Ipv6Addr> {
    let (id, bytes): (u8, Vec<u8>) = match host {
        Host::Ipv4(_) | Host::Ipv6(_) => return None,
        Host::TorV3(key) => (4, key.to_vec()),
        Host::I2p(hash) => (5, hash.to_vec()),
        Host::Cjdns(ip) => (6, ip.octets().to_vec()),
    };
    // SipHash with fixed keys: the same host gets the same stand-in in every run.
    #[allow(deprecated)]
    let mut hasher = std::hash::SipHasher::new();
    bytes.hash(&mut hasher);
    let h = hasher.finish().to_be_bytes();
    let mut o = [0u8; 16];
    o[..6].copy_from_slice(&STAND_IN_PREFIX);
    o[6] = id;
    o[7] = bytes[0];
    o[8] = bytes[1];
    o[9..].copy_from_slice(&h[..7]);
    Some(Ipv6Addr::from(o))
}

impl PeerAddr {
    /// The socket address the server keys this peer by: the address itself for IPv4 and
    /// IPv6, a [stand-in](self) in `fd87:d87e:eb43::/48` for Tor v3, I2P and CJDNS (recorded so
    /// [`PeerAddr::from_stand_in`] finds the peer again). Give it to an
    /// [`AddressSource`](crate::server::AddressSource) as an outbound candidate.
    pub fn stand_in(&self) -> SocketAddr {
        match stand_in_ip(&self.host) {
            None => self.to_socket_addr().expect("IPv4 and IPv6 have an IP"),
            Some(ip) => {
                let mut table = table().lock().expect("stand-in table lock");
                // A hash collision (2^-56 per pair) keeps the first host: the second is then
                // never dialled under the first one's name.
                table.entry(ip).or_insert(self.host);
                SocketAddr::new(IpAddr::V6(ip), self.port)
            }
        }
    }

    /// The peer behind a socket address the server uses: the [`PeerAddr`] whose
    /// [`stand_in`](PeerAddr::stand_in) it is, or, for any address outside the stand-in
    /// prefix, [`PeerAddr::from_socket_addr`]. `None` for a stand-in this process never made
    /// (or that collided). This is how [`PeerEvent`](crate::server::PeerEvent)s,
    /// [`PeerStats::remote`](crate::peer::PeerStats::remote) and the registry's addresses are
    /// read back as `xxx.onion:8333`.
    pub fn from_stand_in(addr: SocketAddr) -> Option<PeerAddr> {
        if !is_stand_in(addr.ip()) {
            return Some(PeerAddr::from_socket_addr(addr));
        }
        let IpAddr::V6(ip) = addr.ip() else {
            return None;
        };
        let host = *table().lock().expect("stand-in table lock").get(&ip)?;
        (stand_in_ip(&host) == Some(ip)).then_some(PeerAddr::new(host, addr.port()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ONION: &str = "pg6mmjiyjmcrsslvykfwnntlaru7p5svn6y2ymmju6nubxndf4pscryd.onion:8333";

    #[test]
    fn stand_ins_round_trip_and_carry_the_network() {
        let onion: PeerAddr = ONION.parse().unwrap();
        let s = onion.stand_in();
        assert!(is_stand_in(s.ip()));
        assert_eq!(s.port(), 8333);
        assert_eq!(s, onion.stand_in(), "deterministic");
        assert_eq!(PeerAddr::from_stand_in(s), Some(onion));
        let Host::TorV3(key) = onion.host else {
            unreachable!()
        };
        assert_eq!(stand_in_parts(s.ip()), Some((4, [key[0], key[1]])));

        let cjdns: PeerAddr = "[fc00::1]:8333".parse().unwrap();
        let c = cjdns.stand_in();
        assert_ne!(
            c,
            cjdns.to_socket_addr().unwrap(),
            "CJDNS needs its network kept"
        );
        assert_eq!(PeerAddr::from_stand_in(c), Some(cjdns));
        assert_eq!(stand_in_parts(c.ip()).unwrap().0, 6);

        let v4: SocketAddr = "1.2.3.4:8333".parse().unwrap();
        assert_eq!(PeerAddr::from_socket_addr(v4).stand_in(), v4);
        assert_eq!(
            PeerAddr::from_stand_in(v4),
            Some(PeerAddr::from_socket_addr(v4))
        );
        assert_eq!(stand_in_parts(v4.ip()), None);

        // Never made by this process: unknown, so never dialled.
        let unknown: SocketAddr = "[fd87:d87e:eb43:400::1]:8333".parse().unwrap();
        assert_eq!(PeerAddr::from_stand_in(unknown), None);
    }
}
