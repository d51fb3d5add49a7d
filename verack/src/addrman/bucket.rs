//! Address classification, network groups and the keyed bucket hashes of Core's addrman.
//!
//! Everything here is a pure function. The hashes are Core's byte for byte (`AddrInfo::
//! GetTriedBucket`, `GetNewBucket` and `GetBucketPosition` in src/addrman.cpp, with the group
//! encoding of `NetGroupManager::GetGroup` in src/netgroup.cpp and the key of
//! `CService::GetKey` in src/netaddress.cpp), so Core's test vectors apply.

use std::net::IpAddr;

use bitcoin::hashes::{sha256d, Hash, HashEngine};
use bitcoin::p2p::address::AddrV2;

use super::{
    AddrNetwork, BUCKET_SIZE, NEW_BUCKETS_PER_SOURCE_GROUP, NEW_BUCKET_COUNT,
    TRIED_BUCKETS_PER_GROUP, TRIED_BUCKET_COUNT,
};
use crate::netgroup::{canonical, is_routable, netgroup, NetGroup};

/// Core's `enum Network` values as written into group keys (`GetNetClass`).
const NET_UNROUTABLE: u8 = 0;
const NET_IPV4: u8 = 1;
const NET_IPV6: u8 = 2;
const NET_ONION: u8 = 3;
const NET_I2P: u8 = 4;
const NET_CJDNS: u8 = 5;
/// Core's `NET_INTERNAL`: a name standing in as an address (a DNS seed as a source).
const NET_INTERNAL: u8 = 6;

/// Core's `INTERNAL_IN_IPV6_PREFIX` (`fd6b:88c0:8724::/48`): an internal address is this plus
/// 10 bytes of the SHA-256 of its name (Core's `CNetAddr::SetInternal`).
pub const INTERNAL_IN_IPV6_PREFIX: [u8; 6] = [0xfd, 0x6b, 0x88, 0xc0, 0x87, 0x24];

/// The internal address for `name` (Core's `CNetAddr::SetInternal`): the address-manager
/// source of what a DNS seed answered, so that each seed's answers share one source group of
/// their own, whatever IPs the seed hands out (Core's `ThreadDNSAddressSeed` passes the
/// seed's host name this way). An IPv6 address in [`INTERNAL_IN_IPV6_PREFIX`]; never
/// stored as a peer address (it is not routable).
pub fn internal_source(name: &str) -> AddrV2 {
    let hash = bitcoin::hashes::sha256::Hash::hash(name.as_bytes());
    let mut octets = [0u8; 16];
    octets[..6].copy_from_slice(&INTERNAL_IN_IPV6_PREFIX);
    octets[6..].copy_from_slice(&hash.as_byte_array()[..10]);
    AddrV2::Ipv6(std::net::Ipv6Addr::from(octets))
}

/// A group key: Core's `GetGroup` bytes (network class, then a prefix). At most 6 bytes
/// (IPv6 in Hurricane Electric's /36).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Group {
    bytes: [u8; 11],
    len: u8,
}

impl Group {
    pub(crate) fn new(bytes: &[u8]) -> Group {
        let mut out = [0u8; 11];
        out[..bytes.len()].copy_from_slice(bytes);
        Group {
            bytes: out,
            len: bytes.len() as u8,
        }
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }
}

/// A service key: Core's `CService::GetKey` (address bytes, then the port big-endian).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ServiceKey {
    bytes: [u8; 34],
    len: u8,
}

impl ServiceKey {
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }
}

/// IPv4-mapped IPv6 (`::ffff:a.b.c.d`) as IPv4; everything else unchanged. Core never keeps
/// such an address as IPv6 (its addrv2 decoder rejects it; its v1 decoder turns it into IPv4).
pub(crate) fn normalize(addr: &AddrV2) -> AddrV2 {
    match addr {
        AddrV2::Ipv6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => AddrV2::Ipv4(v4),
            None => addr.clone(),
        },
        other => other.clone(),
    }
}

/// The network an address is on (Core's `CNetAddr::GetNetwork`); `None` for Tor v2 (no
/// longer supported by Core) and unknown BIP155 network ids.
pub fn network_of(addr: &AddrV2) -> Option<AddrNetwork> {
    match addr {
        AddrV2::Ipv4(_) => Some(AddrNetwork::Ipv4),
        AddrV2::Ipv6(v6) if v6.to_ipv4_mapped().is_some() => Some(AddrNetwork::Ipv4),
        AddrV2::Ipv6(_) => Some(AddrNetwork::Ipv6),
        AddrV2::TorV3(_) => Some(AddrNetwork::TorV3),
        AddrV2::I2p(_) => Some(AddrNetwork::I2p),
        AddrV2::Cjdns(_) => Some(AddrNetwork::Cjdns),
        AddrV2::TorV2(_) | AddrV2::Unknown(..) => None,
    }
}

/// Core's `GetNetClass`, used by `GetAddr`'s network filter: like [`network_of`], except that
/// IPv6 addresses carrying an IPv4 address (6to4, Teredo) count as IPv4.
pub(crate) fn net_class(addr: &AddrV2) -> Option<AddrNetwork> {
    match addr {
        AddrV2::Ipv6(v6) if matches!(netgroup(IpAddr::V6(*v6)), NetGroup::Ipv4(_)) => {
            Some(AddrNetwork::Ipv4)
        }
        other => network_of(other),
    }
}

/// Whether addrman may store `addr` (Core's `AddSingle` keeps only `IsRoutable()` addresses,
/// and `IsValid()` rejects CJDNS addresses outside `fc00::/8`). With `allow_local`, loopback
/// and private IP addresses are accepted too (never the unspecified or broadcast address).
pub(crate) fn is_storable(addr: &AddrV2, allow_local: bool) -> bool {
    match normalize(addr) {
        AddrV2::Ipv4(v4) => {
            if allow_local {
                !v4.is_unspecified() && !v4.is_broadcast()
            } else {
                is_routable(IpAddr::V4(v4))
            }
        }
        AddrV2::Ipv6(v6) => {
            if allow_local {
                !v6.is_unspecified()
            } else {
                is_routable(IpAddr::V6(v6))
            }
        }
        AddrV2::TorV3(_) | AddrV2::I2p(_) => true,
        AddrV2::Cjdns(ip) => ip.octets()[0] == 0xfc,
        AddrV2::TorV2(_) | AddrV2::Unknown(..) => false,
    }
}

/// Core's `NetGroupManager::GetGroup` without an ASMap, as bytes: the network class, then
/// IPv4 /16, IPv6 /32 (Hurricane Electric /36 with the low nibble set), the first 4 bits of a
/// Tor v3 or I2P address (low nibble set), 12 bits of a CJDNS address; local and unroutable
/// addresses are one group per class ([`NET_UNROUTABLE`]).
///
/// With `allow_local`, loopback IPv4 `127.a.b.c` is grouped by `a.b` (key `[1, 127, a, b]`),
/// other local/private IPv4 by /16 and local/private IPv6 by /32, so that multi-node tests
/// on loopback spread like real addresses.
pub(crate) fn group_of(addr: &AddrV2, allow_local: bool) -> Group {
    match normalize(addr) {
        AddrV2::Ipv4(v4) => ip_group(IpAddr::V4(v4), allow_local),
        AddrV2::Ipv6(v6) if v6.octets()[..6] == INTERNAL_IN_IPV6_PREFIX => {
            // Core: every internal address is its own group (the 10 bytes after the prefix).
            let mut key = [NET_INTERNAL; 11];
            key[1..].copy_from_slice(&v6.octets()[6..]);
            Group::new(&key)
        }
        AddrV2::Ipv6(v6) => ip_group(IpAddr::V6(v6), allow_local),
        AddrV2::TorV3(k) => Group::new(&[NET_ONION, k[0] | 0x0f]),
        AddrV2::I2p(k) => Group::new(&[NET_I2P, k[0] | 0x0f]),
        AddrV2::Cjdns(ip) => {
            let o = ip.octets();
            Group::new(&[NET_CJDNS, o[0], o[1] | 0x0f])
        }
        AddrV2::TorV2(_) | AddrV2::Unknown(..) => Group::new(&[NET_UNROUTABLE]),
    }
}

fn ip_group(ip: IpAddr, allow_local: bool) -> Group {
    match netgroup(ip) {
        NetGroup::Ipv4([a, b]) => Group::new(&[NET_IPV4, a, b]),
        NetGroup::Ipv6(o) => ipv6_group(o),
        NetGroup::Local | NetGroup::Unroutable => {
            if allow_local {
                local_group(canonical(ip))
            } else {
                Group::new(&[NET_UNROUTABLE])
            }
        }
    }
}

fn ipv6_group(o: [u8; 5]) -> Group {
    if o[..4] == [0x20, 0x01, 0x04, 0x70] {
        // Core: nBits = 36, so the fifth byte keeps its high nibble and gets the low one set.
        Group::new(&[NET_IPV6, o[0], o[1], o[2], o[3], o[4] | 0x0f])
    } else {
        Group::new(&[NET_IPV6, o[0], o[1], o[2], o[3]])
    }
}

fn local_group(ip: IpAddr) -> Group {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            if v4.is_loopback() {
                Group::new(&[NET_IPV4, 127, o[1], o[2]])
            } else {
                Group::new(&[NET_IPV4, o[0], o[1]])
            }
        }
        IpAddr::V6(v6) => {
            let o = v6.octets();
            Group::new(&[NET_IPV6, o[0], o[1], o[2], o[3]])
        }
    }
}

/// Core's `CService::GetKey`: `GetAddrBytes()` (16 bytes, IPv4 as `::ffff:a.b.c.d`, for
/// addrv1-compatible networks; the raw 32 or 16 bytes for Tor v3, I2P and CJDNS), then the
/// port big-endian.
pub(crate) fn service_key(addr: &AddrV2, port: u16) -> ServiceKey {
    let mut bytes = [0u8; 34];
    let n = match addr {
        AddrV2::Ipv4(v4) => {
            bytes[..16].copy_from_slice(&v4.to_ipv6_mapped().octets());
            16
        }
        AddrV2::Ipv6(v6) | AddrV2::Cjdns(v6) => {
            bytes[..16].copy_from_slice(&v6.octets());
            16
        }
        AddrV2::TorV3(k) | AddrV2::I2p(k) => {
            bytes[..32].copy_from_slice(k);
            32
        }
        AddrV2::TorV2(k) => {
            bytes[..10].copy_from_slice(k);
            10
        }
        // Never stored; only the port distinguishes such keys.
        AddrV2::Unknown(..) => 0,
    };
    bytes[n..n + 2].copy_from_slice(&port.to_be_bytes());
    ServiceKey {
        bytes,
        len: (n + 2) as u8,
    }
}

/// Core's `HashWriter{} << ... ).GetCheapHash()`: the first 8 bytes of a double SHA-256,
/// little-endian.
fn cheap_hash(write: impl FnOnce(&mut bitcoin::hashes::sha256::HashEngine)) -> u64 {
    let mut engine = sha256d::Hash::engine();
    write(&mut engine);
    let digest = sha256d::Hash::from_engine(engine).to_byte_array();
    u64::from_le_bytes(digest[..8].try_into().expect("8 bytes"))
}

/// A byte vector as Core serializes `std::vector<unsigned char>`: CompactSize length, bytes.
/// Every vector here is shorter than 253 bytes, so the length is one byte.
fn write_vec(engine: &mut bitcoin::hashes::sha256::HashEngine, bytes: &[u8]) {
    debug_assert!(bytes.len() < 253);
    engine.input(&[bytes.len() as u8]);
    engine.input(bytes);
}

/// Core's `AddrInfo::GetTriedBucket`: an address's group spreads over at most
/// [`TRIED_BUCKETS_PER_GROUP`] of the [`TRIED_BUCKET_COUNT`] tried buckets.
pub(crate) fn tried_bucket(key: &[u8; 32], service: &ServiceKey, group: &Group) -> usize {
    let hash1 = cheap_hash(|e| {
        e.input(key);
        write_vec(e, service.as_bytes());
    });
    let hash2 = cheap_hash(|e| {
        e.input(key);
        write_vec(e, group.as_bytes());
        e.input(&(hash1 % TRIED_BUCKETS_PER_GROUP).to_le_bytes());
    });
    (hash2 % TRIED_BUCKET_COUNT as u64) as usize
}

/// Core's `AddrInfo::GetNewBucket`: addresses of one group from one source group land in one
/// bucket; one source group spreads over at most [`NEW_BUCKETS_PER_SOURCE_GROUP`] of the
/// [`NEW_BUCKET_COUNT`] new buckets.
pub(crate) fn new_bucket(key: &[u8; 32], group: &Group, source_group: &Group) -> usize {
    let hash1 = cheap_hash(|e| {
        e.input(key);
        write_vec(e, group.as_bytes());
        write_vec(e, source_group.as_bytes());
    });
    let hash2 = cheap_hash(|e| {
        e.input(key);
        write_vec(e, source_group.as_bytes());
        e.input(&(hash1 % NEW_BUCKETS_PER_SOURCE_GROUP).to_le_bytes());
    });
    (hash2 % NEW_BUCKET_COUNT as u64) as usize
}

/// Core's `AddrInfo::GetBucketPosition`: the slot of an address inside `bucket` of the new
/// (`'N'`) or tried (`'K'`) table.
pub(crate) fn bucket_position(
    key: &[u8; 32],
    new: bool,
    bucket: usize,
    service: &ServiceKey,
) -> usize {
    let hash = cheap_hash(|e| {
        e.input(key);
        e.input(&[if new { b'N' } else { b'K' }]);
        e.input(&(bucket as i32).to_le_bytes());
        write_vec(e, service.as_bytes());
    });
    (hash % BUCKET_SIZE as u64) as usize
}

#[cfg(test)]
pub(crate) fn v4(a: u8, b: u8, c: u8, d: u8) -> AddrV2 {
    AddrV2::Ipv4(std::net::Ipv4Addr::new(a, b, c, d))
}

#[cfg(test)]
pub(crate) fn v6(s: &str) -> AddrV2 {
    AddrV2::Ipv6(s.parse::<std::net::Ipv6Addr>().expect("ipv6"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Core's `(HashWriter{} << n).GetHash()` used as a key in its tests.
    fn core_test_key(n: i32) -> [u8; 32] {
        sha256d::Hash::hash(&n.to_le_bytes()).to_byte_array()
    }

    /// Core's legacy-grouping group of an IPv4 address that our netgroup rules call
    /// unroutable (Core's tests use 250.0.0.0/8, which Core routes).
    fn core_v4_group(a: u8, b: u8) -> Group {
        Group::new(&[NET_IPV4, a, b])
    }

    #[test]
    fn internal_sources_are_a_group_each_as_core() {
        let a = internal_source("x9.seed.bitcoin.sipa.be");
        let b = internal_source("x9.dnsseed.bluematt.me");
        let AddrV2::Ipv6(v6) = a else {
            panic!("internal sources are IPv6")
        };
        assert_eq!(v6.octets()[..6], INTERNAL_IN_IPV6_PREFIX);
        // Core's SetInternal: the first 10 bytes of SHA-256(name).
        let hash = bitcoin::hashes::sha256::Hash::hash(b"x9.seed.bitcoin.sipa.be");
        assert_eq!(v6.octets()[6..], hash.as_byte_array()[..10]);
        assert_eq!(internal_source("x9.seed.bitcoin.sipa.be"), a);
        let (ga, gb) = (group_of(&a, false), group_of(&b, false));
        assert_ne!(ga.as_bytes(), gb.as_bytes());
        assert_eq!(ga.as_bytes().len(), 11);
        assert_eq!(ga.as_bytes()[0], NET_INTERNAL);
        // Not a storable peer address.
        assert!(!is_storable(&a, false));
    }

    #[test]
    fn core_vector_tried_bucket() {
        // addrman_tests.cpp caddrinfo_get_tried_bucket_legacy: 250.1.1.1:8333 → 40.
        let key1 = core_test_key(1);
        let key2 = core_test_key(2);
        let service = service_key(&v4(250, 1, 1, 1), 8333);
        assert_eq!(tried_bucket(&key1, &service, &core_v4_group(250, 1)), 40);
        assert_ne!(
            tried_bucket(&key1, &service, &core_v4_group(250, 1)),
            tried_bucket(&key2, &service, &core_v4_group(250, 1))
        );
        let other_port = service_key(&v4(250, 1, 1, 1), 9999);
        assert_ne!(
            tried_bucket(&key1, &service, &core_v4_group(250, 1)),
            tried_bucket(&key1, &other_port, &core_v4_group(250, 1))
        );
        // Same /16: exactly 8 buckets; 255 different /16s: Core gets 160.
        let same: std::collections::HashSet<_> = (0..255)
            .map(|i| {
                tried_bucket(
                    &key1,
                    &service_key(&v4(250, 1, 1, i), 0),
                    &core_v4_group(250, 1),
                )
            })
            .collect();
        assert_eq!(same.len(), 8);
        let diff: std::collections::HashSet<_> = (0..255)
            .map(|j| {
                tried_bucket(
                    &key1,
                    &service_key(&v4(250, j, 1, 1), 0),
                    &core_v4_group(250, j),
                )
            })
            .collect();
        assert_eq!(diff.len(), 160);
    }

    #[test]
    fn core_vector_new_bucket() {
        // addrman_tests.cpp caddrinfo_get_new_bucket_legacy: 250.1.2.1 from 250.1.2.1 → 786.
        let key1 = core_test_key(1);
        let key2 = core_test_key(2);
        let g = core_v4_group(250, 1);
        assert_eq!(new_bucket(&key1, &g, &g), 786);
        assert_ne!(new_bucket(&key1, &g, &g), new_bucket(&key2, &g, &g));
        // One source group: at most 64 buckets for 4×255 address groups.
        let src = core_v4_group(251, 4);
        let from_one_source: std::collections::HashSet<_> = (0..4 * 255u32)
            .map(|j| {
                new_bucket(
                    &key1,
                    &core_v4_group((250 + j / 255) as u8, (j % 256) as u8),
                    &src,
                )
            })
            .collect();
        assert!(from_one_source.len() <= 64, "{}", from_one_source.len());
        // One address group from 255 source groups: more than 64 buckets.
        let from_many: std::collections::HashSet<_> = (0..255)
            .map(|p| new_bucket(&key1, &g, &core_v4_group(250, p)))
            .collect();
        assert!(from_many.len() > 64, "{}", from_many.len());
    }

    #[test]
    fn groups_for_bip155_networks() {
        let tor = AddrV2::TorV3([0xab; 32]);
        assert_eq!(group_of(&tor, false).as_bytes(), &[NET_ONION, 0xaf]);
        let mut k = [0x12; 32];
        k[0] = 0xa0;
        assert_eq!(
            group_of(&AddrV2::TorV3(k), false),
            group_of(&tor, false),
            "same first 4 bits"
        );
        k[0] = 0xb0;
        assert_ne!(group_of(&AddrV2::TorV3(k), false), group_of(&tor, false));
        assert_eq!(
            group_of(&AddrV2::I2p([0x31; 32]), false).as_bytes(),
            &[NET_I2P, 0x3f]
        );
        let cj = AddrV2::Cjdns("fc12:3456::1".parse().unwrap());
        assert_eq!(group_of(&cj, false).as_bytes(), &[NET_CJDNS, 0xfc, 0x1f]);
        assert_eq!(
            group_of(&v6("2001:470:abcd::1"), false).as_bytes(),
            &[NET_IPV6, 0x20, 0x01, 0x04, 0x70, 0xaf]
        );
        assert_eq!(
            group_of(&v6("2600:1234:5678::1"), false).as_bytes(),
            &[NET_IPV6, 0x26, 0x00, 0x12, 0x34]
        );
        assert_eq!(
            group_of(&v4(8, 8, 4, 4), false).as_bytes(),
            &[NET_IPV4, 8, 8]
        );
        assert_eq!(
            group_of(&v6("::ffff:8.8.4.4"), false),
            group_of(&v4(8, 8, 4, 4), false)
        );
        assert_eq!(
            group_of(&v4(127, 0, 0, 1), false).as_bytes(),
            &[NET_UNROUTABLE]
        );
        assert_eq!(
            group_of(&v4(127, 3, 4, 1), true).as_bytes(),
            &[NET_IPV4, 127, 3, 4]
        );
        assert_eq!(
            group_of(&v4(10, 1, 2, 3), true).as_bytes(),
            &[NET_IPV4, 10, 1]
        );
    }

    #[test]
    fn storable_addresses() {
        assert!(is_storable(&v4(8, 8, 8, 8), false));
        assert!(!is_storable(&v4(127, 0, 0, 1), false));
        assert!(!is_storable(&v4(10, 0, 0, 1), false));
        assert!(!is_storable(&v4(192, 168, 1, 1), false));
        assert!(!is_storable(&v6("fe80::1"), false));
        assert!(!is_storable(&v6("::1"), false));
        assert!(is_storable(&v4(127, 0, 0, 1), true));
        assert!(is_storable(&v4(10, 0, 0, 1), true));
        assert!(!is_storable(&v4(0, 0, 0, 0), true));
        assert!(is_storable(&AddrV2::TorV3([1; 32]), false));
        assert!(is_storable(&AddrV2::I2p([1; 32]), false));
        assert!(is_storable(
            &AddrV2::Cjdns("fc00::1".parse().unwrap()),
            false
        ));
        assert!(!is_storable(
            &AddrV2::Cjdns("fd00::1".parse().unwrap()),
            false
        ));
        assert!(!is_storable(&AddrV2::TorV2([1; 10]), true));
        assert!(!is_storable(&AddrV2::Unknown(42, vec![1, 2]), true));
    }

    #[test]
    fn service_keys_as_core() {
        let k = service_key(&v4(1, 2, 3, 4), 0x208d);
        assert_eq!(
            k.as_bytes(),
            &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 1, 2, 3, 4, 0x20, 0x8d]
        );
        assert_eq!(service_key(&AddrV2::TorV3([7; 32]), 1).as_bytes().len(), 34);
        assert_eq!(net_class(&v6("2002:102:304::1")), Some(AddrNetwork::Ipv4));
        assert_eq!(network_of(&v6("2002:102:304::1")), Some(AddrNetwork::Ipv6));
    }
}
