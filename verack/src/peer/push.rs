//! Choosing the addresses of an `addr`/`addrv2` message.

use std::collections::HashSet;

use bitcoin::p2p::address::AddrV2Message;
use rand::seq::index;
use rand::Rng;

/// Addresses per `addr`/`addrv2` message: 1000 (Core's `MAX_ADDR_TO_SEND`).
pub const MAX_ADDR_TO_SEND: usize = 1000;

/// The addresses to send from `addrs`: duplicates (same address and port) removed, then, if
/// more than `max` remain, a uniformly random subset of `max` without duplicates (btcd's
/// `PushAddrMsg` rule, without its addrv2 duplicate bug). Order is kept when nothing is cut.
pub fn select_addresses<R: Rng + ?Sized>(
    addrs: &[AddrV2Message],
    max: usize,
    rng: &mut R,
) -> Vec<AddrV2Message> {
    let mut seen = HashSet::with_capacity(addrs.len().min(4 * max));
    let unique: Vec<&AddrV2Message> = addrs
        .iter()
        .filter(|a| seen.insert((&a.addr, a.port)))
        .collect();
    if unique.len() <= max {
        return unique.into_iter().cloned().collect();
    }
    index::sample(rng, unique.len(), max)
        .into_iter()
        .map(|i| unique[i].clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::p2p::address::AddrV2;
    use bitcoin::p2p::ServiceFlags;
    use rand::rngs::StdRng;
    use rand::SeedableRng;
    use std::net::Ipv4Addr;

    fn addr(n: u32) -> AddrV2Message {
        AddrV2Message {
            time: 0,
            services: ServiceFlags::NETWORK,
            addr: AddrV2::Ipv4(Ipv4Addr::from(n)),
            port: 8333,
        }
    }

    #[test]
    fn caps_at_max_without_duplicates() {
        let mut rng = StdRng::seed_from_u64(7);
        let many: Vec<_> = (0..2500).map(addr).collect();
        let chosen = select_addresses(&many, MAX_ADDR_TO_SEND, &mut rng);
        assert_eq!(chosen.len(), 1000);
        let distinct: HashSet<_> = chosen.iter().collect();
        assert_eq!(distinct.len(), 1000);
        assert!(chosen.iter().all(|a| many.contains(a)));
    }

    #[test]
    fn removes_duplicates_and_keeps_order_under_the_cap() {
        let mut rng = StdRng::seed_from_u64(7);
        let input = vec![addr(1), addr(2), addr(1), addr(3), addr(2)];
        assert_eq!(
            select_addresses(&input, 1000, &mut rng),
            vec![addr(1), addr(2), addr(3)]
        );
    }

    #[test]
    fn duplicates_do_not_bias_the_sample_size() {
        let mut rng = StdRng::seed_from_u64(1);
        // 1200 entries but only 600 distinct: all 600 are sent.
        let input: Vec<_> = (0..1200).map(|n| addr(n % 600)).collect();
        assert_eq!(select_addresses(&input, 1000, &mut rng).len(), 600);
    }
}
