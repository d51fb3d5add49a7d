//! Unit tests that need the internals: Core's deterministic-key scenarios (key = 1, as
//! Core's `AddrMan(..., deterministic=true)`), so Core's "magic number" expectations from
//! src/test/addrman_tests.cpp apply unchanged.

use bitcoin::p2p::address::{AddrV2, AddrV2Message};
use bitcoin::p2p::ServiceFlags;
use rand::rngs::StdRng;
use rand::SeedableRng;

use super::bucket::v4;
use super::*;

const NOW: u64 = 1_700_000_000;

/// Core's deterministic addrman: key `uint256{1}`. Core's tests use 250.0.0.0/8 and
/// 252.0.0.0/8, which Core routes and our rules do not, so `allow_local` is on: it groups
/// those by /16 exactly as Core does.
fn core_deterministic() -> AddrMan {
    let mut key = [0u8; 32];
    key[0] = 1;
    AddrMan::with_key(
        AddrManConfig { allow_local: true },
        StdRng::seed_from_u64(0),
        key,
    )
}

/// Core's `CAddress(ResolveService(ip), NODE_NONE)`: port 0, time `TIME_INIT` (100000000).
fn core_addr(addr: AddrV2) -> AddrV2Message {
    AddrV2Message {
        time: 100_000_000,
        services: ServiceFlags::NONE,
        addr,
        port: 0,
    }
}

fn a250(d: u8) -> AddrV2 {
    v4(250, 1, 1, d)
}

fn source() -> AddrV2 {
    v4(252, 2, 2, 2)
}

#[test]
fn core_new_collisions() {
    // addrman_new_collisions: 250.1.1.1 - .22 do not collide with key 1; .23 does.
    let mut man = core_deterministic();
    for d in 1..=22u8 {
        assert_eq!(man.add(&[core_addr(a250(d))], &source(), 0, NOW), 1);
        assert_eq!(man.size(None, None), d as usize, "no collision yet at {d}");
    }
    assert_eq!(man.add(&[core_addr(a250(23))], &source(), 0, NOW), 1);
    assert_eq!(
        man.size(None, None),
        22,
        "collision replaced a terrible entry"
    );
    assert_eq!(man.add(&[core_addr(a250(24))], &source(), 0, NOW), 1);
    assert_eq!(man.size(None, None), 23);
    man.check().unwrap();
}

fn fill_tried(man: &mut AddrMan, range: std::ops::RangeInclusive<u8>) {
    for d in range {
        assert_eq!(man.add(&[core_addr(a250(d))], &source(), 0, NOW), 1);
        assert!(man.good(&a250(d), 0, NOW), "250.1.1.{d} should reach tried");
        assert!(man.select_tried_collision().is_none());
    }
}

#[test]
fn core_tried_collisions() {
    // addrman_tried_collisions: .1 - .35 do not collide in tried with key 1; .36 does.
    let mut man = core_deterministic();
    fill_tried(&mut man, 1..=35);
    assert_eq!(man.add(&[core_addr(a250(36))], &source(), 0, NOW), 1);
    assert!(!man.good(&a250(36), 0, NOW));
    assert_eq!(man.add(&[core_addr(a250(37))], &source(), 0, NOW), 1);
    assert!(man.good(&a250(37), 0, NOW));
    man.check().unwrap();
}

#[test]
fn core_select_tried_collision_duplicates() {
    // addrman_selecttriedcollision: good() on an address already in tried is no collision.
    let mut man = core_deterministic();
    assert!(man.select_tried_collision().is_none());
    fill_tried(&mut man, 1..=22);
    for d in 1..=22u8 {
        assert!(!man.good(&a250(d), 0, NOW));
        assert!(man.select_tried_collision().is_none());
    }
}

#[test]
fn core_noevict() {
    let mut man = core_deterministic();
    fill_tried(&mut man, 1..=35);
    assert_eq!(man.add(&[core_addr(a250(36))], &source(), 0, NOW), 1);
    assert!(!man.good(&a250(36), 0, NOW));
    let (old, _) = man.select_tried_collision().expect("collision queued");
    assert_eq!((old.addr, old.port), (a250(19), 0));
    // 19 succeeded just now: it stays, 36 stays in new.
    man.resolve_collisions(NOW);
    assert!(man.select_tried_collision().is_none());
    assert!(!man.get(&a250(36), 0).unwrap().in_tried);
    assert!(man.get(&a250(19), 0).unwrap().in_tried);

    fill_tried(&mut man, 37..=58);
    assert_eq!(man.add(&[core_addr(a250(59))], &source(), 0, NOW), 1);
    assert!(!man.good(&a250(59), 0, NOW));
    assert_eq!(man.select_tried_collision().unwrap().0.addr, a250(10));
    // A second collision: 36 against 19 again.
    assert_eq!(man.add(&[core_addr(a250(36))], &source(), 0, NOW), 0);
    assert!(!man.good(&a250(36), 0, NOW));
    assert_eq!(man.tried_collisions.len(), 2);
    man.resolve_collisions(NOW);
    assert!(man.select_tried_collision().is_none());
    man.check().unwrap();
}

#[test]
fn core_evictionworks() {
    let mut man = core_deterministic();
    fill_tried(&mut man, 1..=35);
    assert_eq!(man.add(&[core_addr(a250(36))], &source(), 0, NOW), 1);
    assert!(!man.good(&a250(36), 0, NOW));
    let (old, _) = man.select_tried_collision().unwrap();
    assert_eq!(old.addr, a250(19));
    // The feeler test of 19 fails: last success in the deep past, tried 61 s ago.
    assert!(!man.good(&a250(19), 0, 1));
    man.attempt(&a250(19), 0, false, NOW - 61);
    man.resolve_collisions(NOW);
    assert!(man.select_tried_collision().is_none());
    assert!(man.find_entry(&a250(36), 0).unwrap().tried);
    assert!(!man.good(&a250(36), 0, NOW), "duplicate, not a collision");
    assert!(man.select_tried_collision().is_none());
    // 19 now collides with 36.
    assert!(!man.good(&a250(19), 0, NOW));
    assert_eq!(man.select_tried_collision().unwrap().0.addr, a250(36));
    // 4 hours later 36 was never tested: evicted anyway.
    man.resolve_collisions(NOW + 4 * 60 * 60);
    assert!(man.select_tried_collision().is_none());
    assert!(man.find_entry(&a250(19), 0).unwrap().tried);
    assert!(!man.find_entry(&a250(36), 0).unwrap().tried);
    man.check().unwrap();
}

#[test]
fn collisions_are_bounded_and_dropped_with_their_entry() {
    let mut man = core_deterministic();
    // 400 addresses of one /16 share 8 tried buckets (512 slots): many collide.
    let addrs: Vec<AddrV2> = (0..400u32)
        .map(|i| v4(250, 1, (i / 250) as u8, (i % 250) as u8 + 1))
        .collect();
    let mut collided = 0;
    for a in &addrs {
        man.add(&[core_addr(a.clone())], &source(), 0, NOW);
        if man.get(a, 0).is_some() && !man.good(a, 0, NOW) {
            collided += 1;
        }
    }
    assert!(collided > SET_TRIED_COLLISION_SIZE, "{collided}");
    assert_eq!(man.tried_collisions.len(), SET_TRIED_COLLISION_SIZE);
    man.check().unwrap();
    // Deleting a queued entry (its only new slot overwritten) drops its collision.
    let queued: Vec<u32> = man.tried_collisions.iter().copied().collect();
    for id in queued {
        assert!(!man.slot(id).info.in_tried);
        for p in man.positions_of(id) {
            man.clear_new(p.bucket, p.position);
        }
        assert!(!man.exists(id));
        assert!(!man.tried_collisions.contains(&id));
    }
    man.check().unwrap();
}

#[test]
fn multiplicity_needs_newer_time_and_reaches_eight() {
    // addrman_new_multiplicity, with routable addresses and our generator.
    let mut man = AddrMan::new(AddrManConfig::default(), 7);
    let addr = v4(20, 3, 3, 3);
    let mut msg = AddrV2Message {
        time: NOW as u32,
        services: ServiceFlags::NONE,
        addr: addr.clone(),
        port: 8333,
    };
    let src = |i: u32| v4((i % 200 + 1) as u8, (i / 200) as u8, 1, 1);
    for i in 1..20 {
        man.add(std::slice::from_ref(&msg), &src(i), 0, NOW);
    }
    assert_eq!(man.find_entry(&addr, 8333).unwrap().multiplicity, 1);
    for i in 1..2000u32 {
        msg.time = NOW as u32 + i;
        man.add(std::slice::from_ref(&msg), &src(i), 0, NOW);
    }
    assert_eq!(man.find_entry(&addr, 8333).unwrap().multiplicity, 8);
    assert_eq!(man.positions(&addr, 8333).len(), 8);
    assert_eq!(man.size(None, None), 1);
    man.check().unwrap();
}

#[test]
fn byte_roundtrip_is_exact_and_config_change_drops_local() {
    let mut man = core_deterministic();
    fill_tried(&mut man, 1..=35);
    man.add(&[core_addr(a250(36))], &source(), 0, NOW);
    assert!(!man.good(&a250(36), 0, NOW));
    man.add(
        &[AddrV2Message {
            time: NOW as u32,
            services: ServiceFlags::NETWORK,
            addr: v4(8, 8, 8, 8),
            port: 8333,
        }],
        &source(),
        0,
        NOW,
    );
    let bytes = man.to_bytes();
    let back = AddrMan::from_bytes(&bytes, man.config, 1).unwrap();
    assert_eq!(back.to_bytes(), bytes);
    assert_eq!(back.key, man.key);
    assert_eq!(back.tried_collisions.len(), 1);
    // Without allow_local, only the routable 8.8.8.8 survives.
    let strict = AddrMan::from_bytes(&bytes, AddrManConfig::default(), 1).unwrap();
    assert_eq!(strict.size(None, None), 1);
    assert!(strict.get(&v4(8, 8, 8, 8), 8333).is_some());
    strict.check().unwrap();
}
