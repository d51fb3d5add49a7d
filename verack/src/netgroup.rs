//! Network groups: which addresses are "close" to each other, as Bitcoin Core's
//! `NetGroupManager::GetGroup` (src/netgroup.cpp) computes them without an ASMap.
//!
//! Diversity rules use them: at most one outbound peer per group, eviction protects peers from
//! many groups, pending handshakes are limited per (smaller) group.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

/// The group an address belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NetGroup {
    /// Loopback and unspecified addresses: one group.
    Local,
    /// Addresses that are not globally routable (private, link-local, documentation…): one
    /// group, as Core's `NET_UNROUTABLE`.
    Unroutable,
    /// An IPv4 /16 (also for IPv4 embedded in IPv6: mapped, 6to4, Teredo).
    Ipv4([u8; 2]),
    /// An IPv6 /32, or /36 inside Hurricane Electric's tunnel broker `2001:470::/32` (Core's
    /// rule).
    Ipv6([u8; 5]),
}

/// The group of `ip`, or, when `loopback_as_ipv4` (test networks on one machine), loopback
/// `127.a.b.c` grouped by `a.b` like an IPv4 /16.
pub fn netgroup_with(ip: IpAddr, loopback_as_ipv4: bool) -> NetGroup {
    match canonical(ip) {
        IpAddr::V4(v4) if loopback_as_ipv4 && v4.is_loopback() => {
            let o = v4.octets();
            NetGroup::Ipv4([o[1], o[2]])
        }
        _ => netgroup(ip),
    }
}

/// The group of `ip`.
///
/// A [stand-in](crate::address::stand_in) for a Tor, I2P or CJDNS peer is grouped as Core's
/// `GetGroup` groups those networks: by network and the first 4 bits of the host (Tor, I2P:
/// the key's first byte; CJDNS: the byte after the constant `fc`). Such a group is returned as
/// [`NetGroup::Ipv6`]`([0xfd, 0x87, network id, a, b])`, which no routable IPv6 /32 can equal
/// (`fd87::/16` is unique-local).
pub fn netgroup(ip: IpAddr) -> NetGroup {
    if let Some((id, [b0, b1])) = crate::address::stand_in::stand_in_parts(ip) {
        let (a, b) = match id {
            6 => (b0, b1 & 0xf0),
            _ => (b0 & 0xf0, 0),
        };
        return NetGroup::Ipv6([0xfd, 0x87, id, a, b]);
    }
    let ip = canonical(ip);
    if is_local(ip) {
        return NetGroup::Local;
    }
    if !is_routable(ip) {
        return NetGroup::Unroutable;
    }
    match ip {
        IpAddr::V4(v4) => group_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = embedded_ipv4(v6) {
                return group_v4(v4);
            }
            let o = v6.octets();
            if o[..4] == [0x20, 0x01, 0x04, 0x70] {
                NetGroup::Ipv6([o[0], o[1], o[2], o[3], o[4] & 0xf0])
            } else {
                NetGroup::Ipv6([o[0], o[1], o[2], o[3], 0])
            }
        }
    }
}

fn group_v4(v4: Ipv4Addr) -> NetGroup {
    let o = v4.octets();
    NetGroup::Ipv4([o[0], o[1]])
}

/// IPv4 carried inside 6to4 (`2002::/16`) or Teredo (`2001::/32`, obfuscated) addresses.
fn embedded_ipv4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    let o = v6.octets();
    if o[0] == 0x20 && o[1] == 0x02 {
        return Some(Ipv4Addr::new(o[2], o[3], o[4], o[5]));
    }
    if o[..4] == [0x20, 0x01, 0x00, 0x00] {
        return Some(Ipv4Addr::new(!o[12], !o[13], !o[14], !o[15]));
    }
    None
}

/// IPv4-mapped IPv6 (`::ffff:a.b.c.d`) as plain IPv4; everything else unchanged.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// Loopback or unspecified (Core's `IsLocal`): such peers are never banned.
pub fn is_local(ip: IpAddr) -> bool {
    let ip = canonical(ip);
    ip.is_loopback() || ip.is_unspecified()
}

/// Whether `ip` is globally routable (Core's `IsRoutable`, for IP networks): not private
/// (RFC1918, RFC4193), link-local, shared (RFC6598), documentation, benchmarking, ORCHID
/// (RFC4843, RFC7343), multicast, reserved, loopback or unspecified.
pub fn is_routable(ip: IpAddr) -> bool {
    match canonical(ip) {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            !(v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_documentation()
                || v4.is_multicast()
                || o[0] == 0
                || (o[0] == 100 && (64..128).contains(&o[1])) // RFC6598 shared space
                || (o[0] == 198 && (o[1] == 18 || o[1] == 19)) // RFC2544 benchmarking
                || o[0] >= 240)
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // RFC4193 unique local
                || (s[0] & 0xffc0) == 0xfe80 // link local
                || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
                || (s[0] == 0x2001 && (s[1] & 0xfff0) == 0x0010) // RFC4843 ORCHID
                || (s[0] == 0x2001 && (s[1] & 0xfff0) == 0x0020)) // RFC7343 ORCHIDv2
        }
    }
}

/// The smaller group used to limit pending handshakes: the /24 (IPv4) or /64 (IPv6) holding
/// `ip`.
pub fn pending_group(ip: IpAddr) -> IpNet {
    let ip = canonical(ip);
    let prefix = if ip.is_ipv4() { 24 } else { 64 };
    IpNet::new(ip, prefix).expect("valid prefix").trunc()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn onion_and_cjdns_stand_ins_group_by_network_and_four_bits_as_core() {
        use crate::address::{Host, PeerAddr};
        let onion = |first: u8, last: u8| {
            let mut key = [7u8; 32];
            key[0] = first;
            key[31] = last;
            netgroup(PeerAddr::new(Host::TorV3(key), 8333).stand_in().ip())
        };
        // Same first 4 bits: one group, whatever follows; other 4 bits: another group.
        assert_eq!(onion(0x12, 1), onion(0x1f, 2));
        assert_ne!(onion(0x12, 1), onion(0x22, 1));
        let i2p = netgroup(PeerAddr::new(Host::I2p([0x12; 32]), 0).stand_in().ip());
        assert_ne!(i2p, onion(0x12, 1), "the network is part of the group");
        let cjdns = |s: &str| {
            let Ok(IpAddr::V6(v6)) = s.parse::<IpAddr>() else {
                unreachable!()
            };
            netgroup(PeerAddr::new(Host::Cjdns(v6), 1).stand_in().ip())
        };
        assert_eq!(cjdns("fc12::1"), cjdns("fc1f:ffff::2"));
        assert_ne!(cjdns("fc12::1"), cjdns("fc22::1"));
        assert!(!matches!(
            onion(0, 0),
            NetGroup::Unroutable | NetGroup::Local
        ));
    }

    #[test]
    fn groups_as_core() {
        assert_eq!(netgroup(ip("1.2.3.4")), NetGroup::Ipv4([1, 2]));
        assert_eq!(netgroup(ip("1.2.200.9")), netgroup(ip("1.2.3.4")));
        assert_ne!(netgroup(ip("1.3.3.4")), netgroup(ip("1.2.3.4")));
        assert_eq!(
            netgroup(ip("::ffff:1.2.3.4")),
            NetGroup::Ipv4([1, 2]),
            "mapped"
        );
        assert_eq!(
            netgroup(ip("2002:102:304::1")),
            NetGroup::Ipv4([1, 2]),
            "6to4"
        );
        assert_eq!(
            netgroup(ip("2001:0:9d38:6ab8:1c48:3a1c:a95a:b1c2")),
            NetGroup::Ipv4([86, 165]),
            "teredo"
        );
        assert_eq!(
            netgroup(ip("2600:1234:5678::1")),
            NetGroup::Ipv6([0x26, 0, 0x12, 0x34, 0])
        );
        assert_eq!(
            netgroup(ip("2600:1234:ffff::1")),
            netgroup(ip("2600:1234:5678::1"))
        );
        assert_eq!(
            netgroup(ip("2001:470:abcd::1")),
            NetGroup::Ipv6([0x20, 0x01, 0x04, 0x70, 0xa0]),
            "HE /36"
        );
        assert_ne!(
            netgroup(ip("2001:470:1bcd::1")),
            netgroup(ip("2001:470:abcd::1"))
        );
        assert_eq!(netgroup(ip("127.0.0.1")), NetGroup::Local);
        assert_eq!(netgroup(ip("::1")), NetGroup::Local);
        assert_eq!(netgroup(ip("10.1.2.3")), NetGroup::Unroutable);
        assert_eq!(netgroup(ip("fd00::1")), NetGroup::Unroutable);
        assert_eq!(netgroup(ip("100.64.1.1")), NetGroup::Unroutable);
    }

    #[test]
    fn pending_groups_are_24_and_64() {
        assert_eq!(
            pending_group(ip("1.2.3.4")),
            "1.2.3.0/24".parse::<IpNet>().unwrap()
        );
        assert_eq!(
            pending_group(ip("::ffff:1.2.3.4")),
            "1.2.3.0/24".parse::<IpNet>().unwrap()
        );
        assert_eq!(
            pending_group(ip("2600:1:2:3:4::9")),
            "2600:1:2:3::/64".parse::<IpNet>().unwrap()
        );
    }

    #[test]
    fn local_and_routable() {
        assert!(
            is_local(ip("127.0.0.5")) && is_local(ip("::1")) && is_local(ip("::ffff:127.0.0.1"))
        );
        assert!(!is_local(ip("8.8.8.8")));
        assert!(is_routable(ip("8.8.8.8")) && is_routable(ip("2600::1")));
        for s in [
            "192.168.1.1",
            "172.16.0.1",
            "169.254.1.1",
            "198.18.0.1",
            "240.0.0.1",
            "fe80::1",
            "2001:db8::1",
        ] {
            assert!(!is_routable(ip(s)), "{s}");
        }
    }
}
