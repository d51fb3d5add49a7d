//! Decodes a sequence of address-manager operations from the fuzz input (by hand, one opcode
//! byte then its arguments) and runs them, checking every invariant after each one:
//! `AddrMan::check` (Core's `CheckAddrman`), sizes, select/get_addr results stored and
//! matching their filters, and a byte-exact save/load round trip.
#![no_main]

use std::net::{Ipv4Addr, Ipv6Addr};

use bitcoin::p2p::address::{AddrV2, AddrV2Message};
use bitcoin::p2p::ServiceFlags;
use libfuzzer_sys::fuzz_target;
use verack::addrman::{is_terrible, network_of, AddrMan, AddrManConfig, AddrNetwork};

struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn u8(&mut self) -> Option<u8> {
        let (first, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(*first)
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes([self.u8()?, self.u8()?]))
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes([
            self.u8()?,
            self.u8()?,
            self.u8()?,
            self.u8()?,
        ]))
    }
    /// An address from a small space (so later operations hit stored entries), with every
    /// network and some unroutable addresses.
    fn addr(&mut self) -> Option<AddrV2> {
        let k = self.u8()?;
        let v = self.u8()?;
        Some(match k % 10 {
            0..=3 => AddrV2::Ipv4(Ipv4Addr::new(20 + k % 4, v % 8, v / 8, 1)),
            4 => AddrV2::Ipv6(Ipv6Addr::new(0x2600, u16::from(v % 16), 0, 0, 0, 0, 0, 1)),
            5 => AddrV2::TorV3([v % 32; 32]),
            6 => AddrV2::I2p([v % 32; 32]),
            7 => AddrV2::Cjdns(Ipv6Addr::new(
                0xfc00 | u16::from(v % 3),
                u16::from(v),
                0,
                0,
                0,
                0,
                0,
                1,
            )),
            8 => AddrV2::Ipv4(Ipv4Addr::new(127, 0, v % 4, 1)),
            _ => AddrV2::Ipv6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, u16::from(v))),
        })
    }
    fn port(&mut self) -> Option<u16> {
        Some(8333 + u16::from(self.u8()? % 3))
    }
    fn network(&mut self) -> Option<Option<AddrNetwork>> {
        let n = self.u8()?;
        Some(AddrNetwork::ALL.get(usize::from(n % 8)).copied())
    }
}

fn run(data: &[u8]) -> Option<()> {
    let mut input = Input(data);
    let allow_local = input.u8()? & 1 == 1;
    let seed = u64::from(input.u32()?);
    let mut man = AddrMan::new(AddrManConfig { allow_local }, seed);
    let mut now: u64 = 1_700_000_000;
    for _ in 0..200 {
        match input.u8()? % 12 {
            0 => {
                let n = input.u8()? % 16;
                let source = input.addr()?;
                let penalty = u64::from(input.u16()?);
                let mut msgs = Vec::new();
                for _ in 0..n {
                    msgs.push(AddrV2Message {
                        time: (now as u32).wrapping_sub(u32::from(input.u16()?) * 64),
                        services: ServiceFlags::from(u64::from(input.u8()? % 16)),
                        addr: input.addr()?,
                        port: input.port()?,
                    });
                }
                let before = man.size(None, None);
                let added = man.add(&msgs, &source, penalty, now);
                assert!(man.size(None, None) <= before + added);
            }
            1 => {
                let (a, p) = (input.addr()?, input.port()?);
                if man.good(&a, p, now) {
                    assert!(man.get(&a, p).expect("moved").in_tried);
                }
            }
            2 => {
                let (a, p, c) = (input.addr()?, input.port()?, input.u8()? & 1 == 1);
                man.attempt(&a, p, c, now);
            }
            3 => {
                let (a, p) = (input.addr()?, input.port()?);
                man.connected(&a, p, now);
            }
            4 => {
                let (a, p, s) = (input.addr()?, input.port()?, input.u8()?);
                man.set_services(&a, p, ServiceFlags::from(u64::from(s % 16)));
            }
            5 => {
                let new_only = input.u8()? & 1 == 1;
                let net = input.network()?;
                let required = ServiceFlags::from(u64::from(input.u8()? % 4));
                let nets = net.map(|n| [n]);
                if let Some((m, last_try)) =
                    man.select(new_only, nets.as_ref().map(|n| &n[..]), required, now)
                {
                    let stored = man
                        .get(&m.addr, m.port)
                        .expect("select returns a stored address");
                    assert_eq!(stored.addr, m);
                    assert_eq!(stored.last_try, last_try);
                    assert!(m.services.has(required));
                    assert!(!new_only || !stored.in_tried);
                    if let Some(n) = net {
                        assert_eq!(network_of(&m.addr), Some(n));
                    }
                }
            }
            6 => {
                let count = usize::from(input.u8()? % 20);
                let pct = usize::from(input.u8()? % 101);
                let net = input.network()?;
                for m in man.get_addr(count, pct, net, now) {
                    let stored = man.get(&m.addr, m.port).expect("stored");
                    assert!(!is_terrible(stored, now));
                }
            }
            7 => man.resolve_collisions(now),
            8 => {
                if let Some((m, _)) = man.select_tried_collision() {
                    assert!(man.get(&m.addr, m.port).expect("stored").in_tried);
                }
            }
            9 => now += u64::from(input.u32()? % (40 * 24 * 3600)),
            10 => {
                let bytes = man.to_bytes();
                let back =
                    AddrMan::from_bytes(&bytes, man.config(), now).expect("own output loads");
                assert_eq!(back.to_bytes(), bytes);
                man = back;
            }
            _ => {
                let total = man.size(None, None);
                assert_eq!(
                    total,
                    man.size(None, Some(true)) + man.size(None, Some(false))
                );
                assert_eq!(
                    total,
                    AddrNetwork::ALL
                        .iter()
                        .map(|n| man.size(Some(*n), None))
                        .sum::<usize>()
                );
                assert_eq!(total, man.entries().count());
            }
        }
        if let Err(e) = man.check() {
            panic!("invariant broken: {e}");
        }
    }
    Some(())
}

fuzz_target!(|data: &[u8]| {
    let _ = run(data);
});
