//! Outbound connections: keeping the targets filled from the address source, and persistent
//! peers with backoff.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;

use super::dial::pick_dials;
use super::session::serve;
use super::{ConnectionKind, Inner, ManualTransport, PeerEvent, PeerHandlers, PeerTarget};

/// The least time between two fills, so disconnect storms cannot make the loop spin.
const MIN_FILL_SPACING: Duration = Duration::from_millis(100);

/// Keeps `target_full_relay` + `target_block_relay` outbound peers.
pub(crate) async fn outbound_loop<H: PeerHandlers>(inner: Arc<Inner<H>>) {
    loop {
        for (kind, target) in [
            (
                ConnectionKind::BlockRelayOnly,
                inner.config.target_block_relay,
            ),
            (ConnectionKind::FullRelay, inner.config.target_full_relay),
        ] {
            fill(&inner, kind, target);
        }
        // Woken early when an outbound peer disconnects; failed dials are not retried before
        // the interval (the address source decides what to offer next).
        tokio::select! {
            _ = tokio::time::sleep(inner.config.outbound_interval) => {}
            _ = inner.wake_outbound.notified() => {
                tokio::select! {
                    _ = tokio::time::sleep(MIN_FILL_SPACING) => {}
                    _ = inner.cancel.cancelled() => return,
                }
            }
            _ = inner.cancel.cancelled() => return,
        }
    }
}

/// Whether the peer keyed by `addr` is in one of `nets` (an unknown stand-in is in none).
fn reachable(nets: &[crate::address::Net], addr: SocketAddr) -> bool {
    super::dial::net_of_key(addr).is_some_and(|net| nets.contains(&net))
}

impl<H> Inner<H> {
    /// The networks the server's dialer reaches ([`Dialer::reaches`](super::Dialer::reaches)).
    fn reachable_nets(&self) -> Vec<crate::address::Net> {
        crate::address::Net::ALL
            .into_iter()
            .filter(|&net| self.dialer.reaches(net))
            .collect()
    }
}

/// Starts dials for the deficit of `kind`, within the in-flight bound.
fn fill<H: PeerHandlers>(inner: &Arc<Inner<H>>, kind: ConnectionKind, target: usize) {
    let (deficit, room) = {
        let reg = inner.registry();
        let have = reg.count_kind(kind) + reg.dials_of(kind);
        (
            target.saturating_sub(have),
            inner
                .config
                .max_dials_in_flight
                .saturating_sub(reg.dials_in_flight()),
        )
    };
    let want = deficit.min(room);
    if want == 0 {
        return;
    }
    // Anchors (block-relay-only peers of the last run) first, then the source; ask for more
    // than needed: some are filtered out.
    let mut candidates: Vec<SocketAddr> = Vec::new();
    if kind == ConnectionKind::BlockRelayOnly {
        candidates.append(&mut inner.anchors.lock().expect("anchors lock"));
    }
    // Core's ThreadOpenConnections: skip addresses whose advertised services fail the policy
    // (anchors included: they were full nodes, but their services may have changed).
    // Core's IsReachable: only networks the dialer has a route to (a Tor peer only through
    // an onion proxy); others are never dialled.
    let nets = inner.reachable_nets();
    candidates.retain(|&a| reachable(&nets, a));
    candidates.extend(inner.source.candidates_in(kind, want * 4 + 8, &nets));
    let policy = &inner.config.policy;
    let total = candidates.len();
    candidates.retain(|&a| policy.candidate_ok(kind, inner.source.services_of(a)));
    let skipped = total - candidates.len();
    if skipped > 0 {
        super::stats::Counters::bump(
            &inner.counters.candidates_skipped_for_services,
            skipped as u64,
        );
    }
    let own = inner.local_addrs.lock().expect("local addrs lock").clone();
    let picked = {
        let mut reg = inner.registry();
        let picked = pick_dials(
            &candidates,
            want,
            &reg,
            &inner.config.admission,
            &own,
            |a| inner.is_banned(a),
        );
        for &addr in &picked {
            reg.begin_dial(addr, kind);
        }
        picked
    };
    for addr in picked {
        let inner2 = inner.clone();
        inner.tracker.spawn(async move {
            dial_and_serve(&inner2, addr, kind).await;
        });
    }
}

/// Dials `addr` (already marked as dialling) and serves the connection; returns how long it
/// stayed admitted (`None` if it never was). Manual connections go through
/// [`dial_and_serve_manual`].
pub(crate) async fn dial_and_serve<H: PeerHandlers>(
    inner: &Arc<Inner<H>>,
    addr: SocketAddr,
    kind: ConnectionKind,
) -> Option<Duration> {
    dial_and_serve_as(inner, addr, kind, None).await
}

/// [`dial_and_serve`] for a manual connection starting with `transport`.
pub(crate) async fn dial_and_serve_manual<H: PeerHandlers>(
    inner: &Arc<Inner<H>>,
    addr: SocketAddr,
    transport: ManualTransport,
) -> Option<Duration> {
    dial_and_serve_as(inner, addr, ConnectionKind::Manual, Some(transport)).await
}

async fn dial_and_serve_as<H: PeerHandlers>(
    inner: &Arc<Inner<H>>,
    addr: SocketAddr,
    kind: ConnectionKind,
    manual: Option<ManualTransport>,
) -> Option<Duration> {
    let dialed = tokio::select! {
        r = tokio::time::timeout(inner.config.dial_timeout, super::dial::dial_by_key(&*inner.dialer, addr)) => {
            r.unwrap_or_else(|_| Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "dial timed out")))
        }
        _ = inner.cancel.cancelled() => Err(std::io::Error::new(std::io::ErrorKind::Interrupted, "server stopping")),
    };
    match dialed {
        Ok(stream) => match serve(inner.clone(), stream, addr, kind, manual, None).await {
            Ok(lasted) => lasted,
            Err(super::session::RetryV1) => {
                // Once, immediately, over v1; not counted as a failure.
                match tokio::time::timeout(
                    inner.config.dial_timeout,
                    super::dial::dial_by_key(&*inner.dialer, addr),
                )
                .await
                {
                    Ok(Ok(stream)) => serve(inner.clone(), stream, addr, kind, manual, None)
                        .await
                        .unwrap_or(None),
                    failed => {
                        inner.registry().end_dial(addr);
                        if kind == ConnectionKind::AddrFetch {
                            let error = match failed {
                                Ok(Err(e)) => e,
                                _ => std::io::ErrorKind::TimedOut.into(),
                            };
                            inner.finish_addr_fetch(
                                addr,
                                Err(super::AddrFetchError::Dial(Arc::new(error))),
                            );
                        }
                        None
                    }
                }
            }
        },
        Err(e) => {
            inner.registry().end_dial(addr);
            let error = Arc::new(e);
            if kind == ConnectionKind::AddrFetch {
                inner.finish_addr_fetch(addr, Err(super::AddrFetchError::Dial(error.clone())));
            }
            if !inner.cancel.is_cancelled() {
                tracing::debug!(%addr, %error, "dial failed");
                inner.source.dial_failed(addr);
                inner.emit(PeerEvent::DialFailed { addr, error });
            }
            None
        }
    }
}

/// Keeps one persistent peer connected: resolve, dial, run, back off, repeat, until `stop`
/// fires (removal or shutdown).
///
/// A host name is looked up again before every round, so a peer whose name now points
/// elsewhere is found; its addresses are dialled in the resolver's order until one is
/// admitted (an address already connected or being dialled is skipped, as Core refuses a
/// second connection to it). A failed lookup is a failed round: it emits
/// [`PeerEvent::ResolveFailed`] and backs off like a failed dial.
pub(crate) async fn persistent_loop<H: PeerHandlers>(
    inner: Arc<Inner<H>>,
    target: PeerTarget,
    stop: tokio_util::sync::CancellationToken,
) {
    let mut streak: u32 = 0;
    loop {
        if stop.is_cancelled() {
            return;
        }
        let mut lasted = None;
        for addr in resolve(&inner, &target, &stop).await {
            if stop.is_cancelled() {
                return;
            }
            if !inner.registry().begin_dial(addr, ConnectionKind::Manual) {
                continue;
            }
            let transport = inner.manual_transport(&target, addr);
            lasted = dial_and_serve_manual(&inner, addr, transport).await;
            if lasted.is_some() {
                break;
            }
        }
        // A connection that lasted resets the backoff; failures and short ones grow it.
        streak = match lasted {
            Some(d) if d >= inner.config.stable_connection => 0,
            _ => streak.saturating_add(1),
        };
        let delay = inner
            .config
            .persistent_backoff
            .delay(streak.saturating_sub(1), rand::thread_rng().gen());
        tracing::debug!(%target, ?delay, streak, "persistent peer: reconnecting after backoff");
        if lasted.is_none() && !stop.is_cancelled() && !inner.cancel.is_cancelled() {
            inner.emit(PeerEvent::PersistentRetry {
                target: target.clone(),
                failures: streak,
                retry_in: delay,
            });
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop.cancelled() => return,
        }
    }
}

/// The addresses of `target` now: the address itself, or the name looked up with
/// [`Dialer::resolve`](super::Dialer::resolve) (bounded by
/// [`dial_timeout`](super::ServerConfig::dial_timeout)). Empty when the lookup fails (after
/// emitting [`PeerEvent::ResolveFailed`]) or `stop` fires.
async fn resolve<H: PeerHandlers>(
    inner: &Inner<H>,
    target: &PeerTarget,
    stop: &tokio_util::sync::CancellationToken,
) -> Vec<SocketAddr> {
    let (host, port) = match target {
        PeerTarget::Addr(addr) => return vec![*addr],
        PeerTarget::Name { host, port } => (host, port),
    };
    // A Tor or I2P name (Core's `-connect=<name>.onion`) is not looked up: the dialer's
    // `dial_peer` hands it to the proxy.
    if let Ok(peer) = format!("{host}:{port}").parse::<crate::address::PeerAddr>() {
        if peer.host.ip().is_none() {
            return vec![peer.stand_in()];
        }
    }
    let looked_up = tokio::select! {
        r = tokio::time::timeout(inner.config.dial_timeout, inner.dialer.resolve(host, *port)) => {
            r.unwrap_or_else(|_| Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "host name lookup timed out")))
        }
        _ = stop.cancelled() => return Vec::new(),
    };
    let looked_up = looked_up.and_then(|addrs| match addrs.is_empty() {
        true => Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("{host} has no address"),
        )),
        false => Ok(addrs),
    });
    match looked_up {
        Ok(addrs) => {
            tracing::debug!(%target, ?addrs, "persistent peer: host name resolved");
            addrs
        }
        Err(error) => {
            if !inner.cancel.is_cancelled() {
                tracing::debug!(%target, %error, "persistent peer: host name lookup failed");
                inner.emit(PeerEvent::ResolveFailed {
                    host: host.clone(),
                    port: *port,
                    error: Arc::new(error),
                });
            }
            Vec::new()
        }
    }
}

/// Feeler connections (Core's `FEELER_INTERVAL`): on Poisson-distributed intervals, once the
/// outbound targets are met, test one address from the source with a short-lived connection.
pub(crate) async fn feeler_loop<H: PeerHandlers>(inner: Arc<Inner<H>>, mean: Duration) {
    loop {
        let delay = crate::peer::poisson_delay(mean, rand::thread_rng().gen());
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = inner.cancel.cancelled() => return,
        }
        let full = {
            let reg = inner.registry();
            reg.count_kind(ConnectionKind::FullRelay) >= inner.config.target_full_relay
                && reg.count_kind(ConnectionKind::BlockRelayOnly) >= inner.config.target_block_relay
        };
        if !full {
            continue;
        }
        let nets = inner.reachable_nets();
        let Some(candidate) = inner.source.feeler_candidate_in(&nets) else {
            continue;
        };
        if !reachable(&nets, candidate) {
            continue;
        }
        // Core's ThreadOpenConnections: feelers only to addresses that may have a useful
        // address database.
        if !inner
            .config
            .policy
            .feeler_candidate_ok(inner.source.services_of(candidate))
        {
            super::stats::Counters::bump(&inner.counters.candidates_skipped_for_services, 1);
            continue;
        }
        let own = inner.local_addrs.lock().expect("local addrs lock").clone();
        let ok = {
            let mut reg = inner.registry();
            let ok = !own.contains(&candidate)
                && inner.config.admission.permits(candidate.ip()).is_ok()
                && !inner.is_banned(candidate)
                && !reg.is_connected_or_dialing(candidate);
            ok && reg.begin_dial(candidate, ConnectionKind::Feeler)
        };
        if ok {
            let inner2 = inner.clone();
            inner.tracker.spawn(async move {
                dial_and_serve(&inner2, candidate, ConnectionKind::Feeler).await;
            });
        }
    }
}

/// Announces our own address to each peer address relay is enabled with (Core's
/// `MaybeSendAddr`: outbound full-relay and manual peers from the start, an inbound peer once
/// it sent `addr`, `addrv2` or `getaddr`, never block-relay-only ones): first within a second
/// of relay being enabled, then on Poisson intervals averaging `self_announce_interval`
/// (Core's `AVG_LOCAL_ADDRESS_BROADCAST_INTERVAL`).
pub(crate) async fn self_announce_loop<H: PeerHandlers>(inner: Arc<Inner<H>>, ours: SocketAddr) {
    use std::collections::HashMap;
    let mean = inner.config.self_announce_interval;
    let mut next: HashMap<crate::peer::PeerId, tokio::time::Instant> = HashMap::new();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = inner.cancel.cancelled() => return,
        }
        let now = tokio::time::Instant::now();
        let peers: Vec<(crate::peer::PeerId, ConnectionKind, crate::peer::PeerHandle)> = inner
            .registry()
            .iter()
            .filter(|e| e.addr_relay.enabled)
            .map(|e| (e.id, e.kind, e.payload.clone()))
            .collect();
        next.retain(|id, _| peers.iter().any(|(p, _, _)| p == id));
        for (id, kind, handle) in peers {
            // Core's first local-address send is due at once for every peer
            // (m_next_local_addr_send starts at zero), then on Poisson intervals.
            let _ = kind;
            let due = *next.entry(id).or_insert(now);
            if due <= now {
                let me = self_address(&inner, ours);
                let _ = handle.push_addresses(&[me]);
                next.insert(
                    id,
                    now + crate::peer::poisson_delay(mean, rand::thread_rng().gen()),
                );
            }
        }
    }
}

fn self_address<H>(inner: &Inner<H>, ours: SocketAddr) -> bitcoin::p2p::address::AddrV2Message {
    use bitcoin::p2p::address::AddrV2Message;
    let addr = super::addr_v2(ours.ip());
    AddrV2Message {
        time: super::unix_now() as u32,
        services: inner.config.peer.services,
        addr,
        port: ours.port(),
    }
}

/// Asks the address source to persist every `address_flush_interval`.
pub(crate) async fn flush_loop<H: PeerHandlers>(inner: Arc<Inner<H>>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(inner.config.address_flush_interval) => {
                let inner2 = inner.clone();
                let _ = tokio::task::spawn_blocking(move || inner2.source.flush()).await;
            }
            _ = inner.cancel.cancelled() => return,
        }
    }
}

/// Asks the seed nodes for addresses (Core's `-seednode` addr-fetch connections): at start,
/// then every `seed_node_interval` while the source knows fewer than
/// [`SEED_NODE_THRESHOLD`](super::SEED_NODE_THRESHOLD) addresses and outbound slots are free.
pub(crate) async fn seed_node_loop<H: PeerHandlers>(inner: Arc<Inner<H>>) {
    let mut first = true;
    loop {
        let known = inner.source.known();
        let scarce = match known {
            Some(n) => n < super::SEED_NODE_THRESHOLD,
            None => first,
        };
        let free =
            inner.registry().count_kind(ConnectionKind::FullRelay) < inner.config.target_full_relay;
        if scarce && (free || first) {
            for &seed in &inner.config.seed_nodes {
                if let Err(error) = start_addr_fetch(&inner, seed) {
                    tracing::debug!(%seed, %error, "seed node not asked");
                }
            }
        }
        first = false;
        tokio::select! {
            _ = tokio::time::sleep(inner.config.seed_node_interval) => {}
            _ = inner.cancel.cancelled() => return,
        }
    }
}

/// Starts an addr-fetch connection to `addr` (not own, permitted, not banned, not connected or
/// being dialled); its end completes the waiters on `addr`.
///
/// # Errors
/// [`AddrFetchError::Busy`](super::AddrFetchError::Busy) or
/// [`AddrFetchError::Refused`](super::AddrFetchError::Refused); nothing is started then.
pub(crate) fn start_addr_fetch<H: PeerHandlers>(
    inner: &Arc<Inner<H>>,
    addr: SocketAddr,
) -> Result<(), super::AddrFetchError> {
    use super::{AddrFetchError, Refusal};
    inner
        .config
        .admission
        .permits(addr.ip())
        .map_err(AddrFetchError::Refused)?;
    if inner.is_banned(addr) && !inner.config.admission.is_trusted(addr.ip()) {
        return Err(AddrFetchError::Refused(Refusal::Banned));
    }
    if inner
        .local_addrs
        .lock()
        .expect("local addrs lock")
        .contains(&addr)
        || !inner.registry().begin_dial(addr, ConnectionKind::AddrFetch)
    {
        return Err(AddrFetchError::Busy);
    }
    let inner2 = inner.clone();
    inner.tracker.spawn(async move {
        dial_and_serve(&inner2, addr, ConnectionKind::AddrFetch).await;
    });
    Ok(())
}
