//! When to ask the DNS seeds and when to fall back to the fixed seeds, as a pure state
//! machine: the time, the address count and the outbound peer count come in, a [`SeedStep`]
//! goes out. The caller does the lookups and the sleeping.
//!
//! As Bitcoin Core (`ThreadDNSAddressSeed`, `ThreadOpenConnections`):
//! - With an empty address manager the DNS seeds are asked at once. With some addresses
//!   known they are asked after [`delay_when_known`](SeedingPolicy::delay_when_known) (11 s),
//!   with many after [`delay_when_many`](SeedingPolicy::delay_when_many) (5 min), and not at
//!   all if by then [`enough_outbound`](SeedingPolicy::enough_outbound) (2) outbound peers
//!   are connected.
//! - Unlike Core, which asks once, a round that leaves the address manager empty is retried
//!   with [`dns_retry`](SeedingPolicy::dns_retry) backoff (15 s doubling to 10 min) for as
//!   long as it stays empty, so a node started offline finds peers when the network comes
//!   back.
//! - The fixed seeds are added once, when the address manager is still empty
//!   [`fixed_seeds_after`](SeedingPolicy::fixed_seeds_after) (60 s) after start, or at once
//!   when there are no DNS seeds and no manual peers (Core with `-dnsseed=0` and no
//!   `-addnode`/`-seednode`).

use std::time::Duration;

use tokio::time::Instant;

use crate::backoff::Backoff;

/// The schedule's parameters; [`SeedingPolicy::CORE`] is Core's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SeedingPolicy {
    /// Known addresses from which the first DNS round waits
    /// [`delay_when_many`](Self::delay_when_many) (Core's `DNSSEEDS_DELAY_PEER_THRESHOLD`: 1000).
    pub many_addresses: usize,
    /// Wait before the first DNS round when some addresses are known (Core's
    /// `DNSSEEDS_DELAY_FEW_PEERS`: 11 s).
    pub delay_when_known: Duration,
    /// Wait before the first DNS round when many addresses are known (Core's
    /// `DNSSEEDS_DELAY_MANY_PEERS`: 5 min).
    pub delay_when_many: Duration,
    /// Outbound peers that make the delayed first DNS round unnecessary (Core: 2).
    pub enough_outbound: usize,
    /// Delays between DNS rounds while the address manager stays empty.
    pub dns_retry: Backoff,
    /// How long after start the fixed seeds are added if the address manager is still empty
    /// (Core: 60 s).
    pub fixed_seeds_after: Duration,
    /// How often a pending condition (the address count) is checked again when no deadline
    /// is nearer.
    pub recheck: Duration,
}

impl SeedingPolicy {
    /// Bitcoin Core's timings, with DNS retries every 15 s doubling to 10 min (±20%).
    pub const CORE: SeedingPolicy = SeedingPolicy {
        many_addresses: 1000,
        delay_when_known: Duration::from_secs(11),
        delay_when_many: Duration::from_secs(300),
        enough_outbound: 2,
        dns_retry: Backoff {
            initial: Duration::from_secs(15),
            max: Duration::from_secs(600),
            jitter: 0.2,
        },
        fixed_seeds_after: Duration::from_secs(60),
        recheck: Duration::from_secs(5),
    };
}

impl Default for SeedingPolicy {
    fn default() -> Self {
        SeedingPolicy::CORE
    }
}

/// The address sources a node has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SeedSources {
    /// The network has DNS seeds (and they are enabled).
    pub dns: bool,
    /// The network has fixed seeds (and they are enabled).
    pub fixed: bool,
    /// Manual peers (`--addnode`) or seed nodes may bring addresses: the fixed seeds wait
    /// [`fixed_seeds_after`](SeedingPolicy::fixed_seeds_after) even without DNS seeds.
    pub manual: bool,
}

/// What to do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeedStep {
    /// Ask every DNS seed, add the answers, then call [`Seeding::dns_queried`].
    QueryDns,
    /// Add the fixed seeds, then call [`Seeding::fixed_seeds_added`].
    AddFixedSeeds,
    /// Nothing before this instant (poll again then, or sooner).
    Wait(Instant),
    /// Nothing more will ever be done.
    Finished,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pending {
    /// Due at this instant; `first` for the first DNS round (which may be skipped).
    At {
        at: Instant,
        first: bool,
    },
    Done,
}

/// The seeding schedule of one node run.
#[derive(Debug, Clone)]
pub struct Seeding {
    policy: SeedingPolicy,
    dns: Pending,
    fixed: Pending,
    dns_rounds: u32,
}

impl Seeding {
    /// The schedule of a node starting at `now` with `sources`, its address manager holding
    /// `known` addresses.
    pub fn new(policy: SeedingPolicy, now: Instant, sources: SeedSources, known: usize) -> Seeding {
        let dns = if sources.dns {
            let delay = match known {
                0 => Duration::ZERO,
                n if n < policy.many_addresses => policy.delay_when_known,
                _ => policy.delay_when_many,
            };
            Pending::At {
                at: now + delay,
                first: true,
            }
        } else {
            Pending::Done
        };
        let fixed = if sources.fixed {
            let delay = if sources.dns || sources.manual {
                policy.fixed_seeds_after
            } else {
                Duration::ZERO
            };
            Pending::At {
                at: now + delay,
                first: true,
            }
        } else {
            Pending::Done
        };
        Seeding {
            policy,
            dns,
            fixed,
            dns_rounds: 0,
        }
    }

    /// What to do at `now` with `known` addresses in the address manager and `outbound`
    /// outbound peers connected.
    pub fn poll(&mut self, now: Instant, known: usize, outbound: usize) -> SeedStep {
        if let Pending::At { at, .. } = self.fixed {
            if now >= at && known == 0 {
                return SeedStep::AddFixedSeeds;
            }
        }
        if let Pending::At { at, first } = self.dns {
            if now >= at {
                let skip = if first {
                    known > 0 && outbound >= self.policy.enough_outbound
                } else {
                    // Retries only while the address manager is empty.
                    known > 0
                };
                if !skip {
                    return SeedStep::QueryDns;
                }
                self.dns = Pending::Done;
            }
        }
        let mut next: Option<Instant> = None;
        for pending in [self.dns, self.fixed] {
            if let Pending::At { at, .. } = pending {
                // A past deadline waits on the address count: check again after `recheck`.
                let due = if at > now {
                    at
                } else {
                    now + self.policy.recheck
                };
                next = Some(next.map_or(due, |n| n.min(due)));
            }
        }
        next.map_or(SeedStep::Finished, SeedStep::Wait)
    }

    /// A DNS round finished at `now`; `u` is a uniform draw in `[0, 1)` for the retry's
    /// jitter. The next round is due after the backoff, and runs only if the address manager
    /// is still empty then.
    pub fn dns_queried(&mut self, now: Instant, u: f64) {
        let delay = self.policy.dns_retry.delay(self.dns_rounds, u);
        self.dns_rounds = self.dns_rounds.saturating_add(1);
        self.dns = Pending::At {
            at: now + delay,
            first: false,
        };
    }

    /// The fixed seeds were added (they are never added twice).
    pub fn fixed_seeds_added(&mut self) {
        self.fixed = Pending::Done;
    }

    /// DNS rounds done so far.
    pub fn dns_rounds(&self) -> u32 {
        self.dns_rounds
    }

    /// When the next DNS round is due, if one is planned (it runs only if still needed).
    pub fn next_dns(&self) -> Option<Instant> {
        match self.dns {
            Pending::At { at, .. } => Some(at),
            Pending::Done => None,
        }
    }

    /// When the fixed seeds will be added if the address manager is still empty; `None`
    /// once added, or when there are none.
    pub fn fixed_seeds_at(&self) -> Option<Instant> {
        match self.fixed {
            Pending::At { at, .. } => Some(at),
            Pending::Done => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: fn(u64) -> Duration = Duration::from_secs;
    const ALL: SeedSources = SeedSources {
        dns: true,
        fixed: true,
        manual: false,
    };

    /// Runs the schedule with an always-empty address manager (offline) until `end`,
    /// returning when each step happened (seconds after start).
    fn offline_run(end: u64, u: f64) -> Vec<(u64, SeedStep)> {
        let t0 = Instant::now();
        let mut s = Seeding::new(SeedingPolicy::CORE, t0, ALL, 0);
        let mut now = t0;
        let mut steps = Vec::new();
        while now < t0 + S(end) {
            match s.poll(now, 0, 0) {
                SeedStep::QueryDns => {
                    steps.push(((now - t0).as_secs(), SeedStep::QueryDns));
                    s.dns_queried(now, u);
                }
                SeedStep::AddFixedSeeds => {
                    steps.push(((now - t0).as_secs(), SeedStep::AddFixedSeeds));
                    s.fixed_seeds_added();
                }
                SeedStep::Wait(at) => {
                    assert!(at > now);
                    now = at;
                }
                SeedStep::Finished => break,
            }
        }
        steps
    }

    #[test]
    fn offline_dns_is_retried_with_backoff_and_fixed_seeds_come_after_60_s() {
        let steps = offline_run(1600, 0.5);
        let dns: Vec<u64> = steps
            .iter()
            .filter(|(_, s)| *s == SeedStep::QueryDns)
            .map(|(t, _)| *t)
            .collect();
        // 15 s doubling (15, 30, 60, 120, 240, 480), then 10 min steps.
        assert_eq!(dns, vec![0, 15, 45, 105, 225, 465, 945, 1545]);
        let fixed: Vec<u64> = steps
            .iter()
            .filter(|(_, s)| *s == SeedStep::AddFixedSeeds)
            .map(|(t, _)| *t)
            .collect();
        assert_eq!(fixed, vec![60], "once, at 60 s");
        // Jitter bounds: ±20%.
        let low = offline_run(100, 0.0);
        assert_eq!(low[1].0, 12);
        let high = offline_run(100, 0.999);
        assert_eq!(high[1].0, 17);
    }

    #[test]
    fn dns_answers_stop_retries_and_the_fixed_seeds() {
        let t0 = Instant::now();
        let mut s = Seeding::new(SeedingPolicy::CORE, t0, ALL, 0);
        assert_eq!(s.poll(t0, 0, 0), SeedStep::QueryDns);
        s.dns_queried(t0, 0.5);
        assert_eq!(s.next_dns(), Some(t0 + S(15)));
        // The seeds answered: 50 addresses. At 15 s nothing is asked again.
        assert_eq!(s.poll(t0 + S(15), 50, 0), SeedStep::Wait(t0 + S(60)));
        assert_eq!(s.next_dns(), None);
        // At 60 s the address manager is not empty: no fixed seeds; checked again later
        // (Core keeps the fallback armed while addresses are missing).
        assert_eq!(s.poll(t0 + S(60), 50, 3), SeedStep::Wait(t0 + S(65)));
        assert_eq!(s.poll(t0 + S(65), 0, 0), SeedStep::AddFixedSeeds);
        s.fixed_seeds_added();
        assert_eq!(s.poll(t0 + S(66), 0, 0), SeedStep::Finished);
    }

    #[test]
    fn known_addresses_delay_the_first_round_which_enough_peers_skip() {
        let t0 = Instant::now();
        let mut s = Seeding::new(SeedingPolicy::CORE, t0, ALL, 20);
        assert_eq!(s.poll(t0, 20, 0), SeedStep::Wait(t0 + S(11)));
        assert_eq!(s.poll(t0 + S(11), 20, 2), SeedStep::Wait(t0 + S(60)));
        assert_eq!(s.next_dns(), None, "two outbound peers: DNS skipped");

        let mut s = Seeding::new(SeedingPolicy::CORE, t0, ALL, 20);
        assert_eq!(s.poll(t0 + S(11), 20, 1), SeedStep::QueryDns);

        let mut s = Seeding::new(SeedingPolicy::CORE, t0, ALL, 5000);
        assert_eq!(s.poll(t0, 5000, 0), SeedStep::Wait(t0 + S(60)));
        assert_eq!(s.next_dns(), Some(t0 + S(300)));
    }

    #[test]
    fn without_dns_seeds_fixed_seeds_come_at_once_unless_manual_peers_may_help() {
        let t0 = Instant::now();
        let no_dns = SeedSources {
            dns: false,
            fixed: true,
            manual: false,
        };
        let mut s = Seeding::new(SeedingPolicy::CORE, t0, no_dns, 0);
        assert_eq!(s.poll(t0, 0, 0), SeedStep::AddFixedSeeds);
        let with_manual = SeedSources {
            manual: true,
            ..no_dns
        };
        let mut s = Seeding::new(SeedingPolicy::CORE, t0, with_manual, 0);
        assert_eq!(s.poll(t0, 0, 0), SeedStep::Wait(t0 + S(60)));
        assert_eq!(s.fixed_seeds_at(), Some(t0 + S(60)));
    }

    #[test]
    fn regtest_has_nothing_to_do() {
        let t0 = Instant::now();
        let mut s = Seeding::new(SeedingPolicy::CORE, t0, SeedSources::default(), 0);
        assert_eq!(s.poll(t0, 0, 0), SeedStep::Finished);
    }
}
