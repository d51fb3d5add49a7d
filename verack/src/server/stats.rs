//! Server-wide counters ([`Server::stats`](super::Server::stats)).

use std::sync::atomic::{AtomicU64, Ordering};

/// Counts since the server was built (monotonic; never reset).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerStats {
    /// Peers refused by the [`PeerPolicy`](super::PeerPolicy) after their `version`, in both
    /// directions (each also a [`PeerEvent::Refused`](super::PeerEvent::Refused) with
    /// [`Refusal::Policy`](super::Refusal::Policy)).
    pub policy_refusals: u64,
    /// Of those, inbound ones.
    pub policy_refusals_inbound: u64,
    /// Outbound candidates skipped before dialling because their advertised services fail the
    /// policy (Core's `ThreadOpenConnections` filter).
    pub candidates_skipped_for_services: u64,
    /// Connections handed in with [`Server::accept_inbound`](super::Server::accept_inbound)
    /// that passed checkpoint 1 and went on to the handshake.
    pub external_inbound: u64,
    /// Addr-fetch connections that completed the handshake and sent `getaddr`.
    pub addr_fetches: u64,
    /// Address entries received on addr-fetch connections and given to the address source.
    pub addr_fetch_addresses: u64,
}

/// The live counters behind [`ServerStats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) policy_refusals: AtomicU64,
    pub(crate) policy_refusals_inbound: AtomicU64,
    pub(crate) candidates_skipped_for_services: AtomicU64,
    pub(crate) external_inbound: AtomicU64,
    pub(crate) addr_fetches: AtomicU64,
    pub(crate) addr_fetch_addresses: AtomicU64,
}

impl Counters {
    pub(crate) fn bump(counter: &AtomicU64, by: u64) {
        counter.fetch_add(by, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> ServerStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        ServerStats {
            policy_refusals: get(&self.policy_refusals),
            policy_refusals_inbound: get(&self.policy_refusals_inbound),
            candidates_skipped_for_services: get(&self.candidates_skipped_for_services),
            external_inbound: get(&self.external_inbound),
            addr_fetches: get(&self.addr_fetches),
            addr_fetch_addresses: get(&self.addr_fetch_addresses),
        }
    }
}
