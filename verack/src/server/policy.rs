//! The server's peer policy: which remote `version`s are accepted before a peer is admitted,
//! and which advertised services make an address worth an outbound slot.
//!
//! The decisions are plain functions over services and the remote `version`
//! ([`PeerPolicy::check`], [`ServiceRule::missing`]); the server applies them at two places:
//!
//! 1. **Outbound selection**: candidates from the address source whose advertised services
//!    (as [`AddressSource::services_of`](super::AddressSource::services_of) knows them) fail
//!    [`PeerPolicy::outbound_services`] are skipped, as Bitcoin Core's `ThreadOpenConnections`
//!    skips addresses without `HasAllDesirableServiceFlags(addr.nServices)`. Addresses whose
//!    services the source does not know are dialled; the version check decides.
//! 2. **The remote `version`**, inside the handshake (before our `version` on inbound, before
//!    our `verack` on outbound): required services, the outbound service rule for the kinds
//!    Core expects services from (full-relay, block-relay-only, addr-fetch: Core's
//!    `ExpectServicesFromConn`), then the caller's [`VersionCheck`].
//!
//! A refused peer ends as [`Refusal::Policy`](super::Refusal::Policy) in a
//! [`PeerEvent::Refused`](super::PeerEvent::Refused) event and in
//! [`ServerStats::policy_refusals`](super::ServerStats::policy_refusals); it uses no slot: it
//! never reaches admission, so its address is not marked good, no `Connected` event is sent and
//! no inbound peer is evicted for it. Feelers are not checked (they only test reachability and
//! are never admitted, as Core's feelers skip the services check).

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;

use bitcoin::p2p::message_network::VersionMessage;
use bitcoin::p2p::ServiceFlags;

use crate::peer::Direction;

use super::ConnectionKind;

/// Which advertised services a peer must have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ServiceRule {
    /// Any services, `NODE_NONE` included.
    Any,
    /// Every flag of the set.
    All(ServiceFlags),
    /// Bitcoin Core's `HasAllDesirableServiceFlags` (`net_processing.cpp`,
    /// `GetDesirableServiceFlags`): `NODE_WITNESS` plus `NODE_NETWORK`, or plus
    /// `NODE_NETWORK_LIMITED` (BIP159). Core takes a limited peer only while its own tip is
    /// within `NODE_NETWORK_LIMITED_ALLOW_CONN_BLOCKS` (144) blocks of now; the server does
    /// not know the chain, so it always takes one (use [`All`](Self::All) with
    /// `NETWORK | WITNESS` to refuse limited peers while far behind). The default.
    #[default]
    CoreDesirable,
}

impl ServiceRule {
    /// `None` if `services` satisfy the rule, else the flags that were expected (for Core's
    /// rule: `NETWORK_LIMITED | WITNESS` when `services` has `NETWORK_LIMITED` and no
    /// `NETWORK`, else `NETWORK | WITNESS`, as Core's `GetDesirableServiceFlags`).
    pub fn missing(&self, services: ServiceFlags) -> Option<ServiceFlags> {
        let expected = match *self {
            ServiceRule::Any => return None,
            ServiceRule::All(flags) => flags,
            ServiceRule::CoreDesirable => {
                if services.has(ServiceFlags::NETWORK_LIMITED)
                    && !services.has(ServiceFlags::NETWORK)
                {
                    ServiceFlags::NETWORK_LIMITED | ServiceFlags::WITNESS
                } else {
                    ServiceFlags::NETWORK | ServiceFlags::WITNESS
                }
            }
        };
        (!services.has(expected)).then_some(expected)
    }

    /// Whether `services` satisfy the rule.
    pub fn satisfied_by(&self, services: ServiceFlags) -> bool {
        self.missing(services).is_none()
    }
}

/// What a [`VersionCheck`] is told about the connection besides the remote `version`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct PolicyContext {
    /// The remote socket address.
    pub addr: SocketAddr,
    /// Who opened the connection.
    pub direction: Direction,
    /// Why it exists ([`ConnectionKind::Inbound`] for inbound ones).
    pub kind: ConnectionKind,
    /// Whether the address is trusted ([`AdmissionRules`](super::AdmissionRules)' trusted
    /// list): the policy applies to trusted peers too; a callback may let them through.
    pub trusted: bool,
}

/// A caller's verdict over a remote `version`: `Ok(())` accepts, `Err(reason)` refuses with
/// [`PolicyRefusal::Rejected`] carrying `reason`. Called once per handshake, on the
/// connection's task, before anything more is sent: keep it quick and non-blocking.
pub type VersionCheck =
    Arc<dyn Fn(&PolicyContext, &VersionMessage) -> Result<(), String> + Send + Sync>;

/// Why the peer policy refused a peer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyRefusal {
    /// The remote's `version` lacks services the policy requires
    /// ([`PeerPolicy::required_services`], or [`PeerPolicy::outbound_services`] for the kinds
    /// it covers).
    #[error("missing services: offers {offered}, expected {expected}")]
    MissingServices {
        /// The services in its `version`.
        offered: ServiceFlags,
        /// The flags expected (all of them).
        expected: ServiceFlags,
    },
    /// The caller's [`VersionCheck`] refused it.
    #[error("refused by the version check: {reason}")]
    Rejected {
        /// The callback's reason.
        reason: String,
    },
}

/// The server's peer policy ([`ServerConfig::policy`](super::ServerConfig::policy)).
#[derive(Clone)]
#[non_exhaustive]
pub struct PeerPolicy {
    /// Services every checked peer (inbound, outbound, manual, addr-fetch) must advertise in
    /// its `version`. Default `NODE_NONE` (none required).
    pub required_services: ServiceFlags,
    /// The services automatic outbound peers must advertise (full-relay, block-relay-only and
    /// addr-fetch, Core's `ExpectServicesFromConn`), applied both to candidates by their
    /// advertised services and to the remote `version`. Manual peers and inbound peers are not
    /// held to it (as Core). Default [`ServiceRule::CoreDesirable`].
    pub outbound_services: ServiceRule,
    /// The caller's check over the remote `version`, after the service checks passed.
    /// Default `None`.
    pub check: Option<VersionCheck>,
}

impl Default for PeerPolicy {
    fn default() -> PeerPolicy {
        PeerPolicy {
            required_services: ServiceFlags::NONE,
            outbound_services: ServiceRule::CoreDesirable,
            check: None,
        }
    }
}

impl fmt::Debug for PeerPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PeerPolicy")
            .field("required_services", &self.required_services)
            .field("outbound_services", &self.outbound_services)
            .field("check", &self.check.as_ref().map(|_| "Fn"))
            .finish()
    }
}

impl PeerPolicy {
    /// No requirement at all: any services, no callback (the server's behaviour before the
    /// policy existed).
    pub fn accept_all() -> PeerPolicy {
        PeerPolicy {
            required_services: ServiceFlags::NONE,
            outbound_services: ServiceRule::Any,
            check: None,
        }
    }

    /// The default policy with `check` as its [`VersionCheck`].
    pub fn with_check(
        check: impl Fn(&PolicyContext, &VersionMessage) -> Result<(), String> + Send + Sync + 'static,
    ) -> PeerPolicy {
        PeerPolicy {
            check: Some(Arc::new(check)),
            ..PeerPolicy::default()
        }
    }

    /// Whether connections of `kind` are checked at all (feelers are not).
    pub fn applies_to(kind: ConnectionKind) -> bool {
        kind != ConnectionKind::Feeler
    }

    /// Whether [`outbound_services`](Self::outbound_services) applies to `kind`: full-relay,
    /// block-relay-only and addr-fetch connections (Core's `ExpectServicesFromConn`).
    pub fn expects_services(kind: ConnectionKind) -> bool {
        matches!(
            kind,
            ConnectionKind::FullRelay | ConnectionKind::BlockRelayOnly | ConnectionKind::AddrFetch
        )
    }

    /// Whether a candidate advertising `services` is worth dialling as `kind` (Core's
    /// `ThreadOpenConnections` filter). Unknown services (`None`) pass: the version check
    /// decides.
    pub fn candidate_ok(&self, kind: ConnectionKind, services: Option<ServiceFlags>) -> bool {
        let Some(services) = services else {
            return true;
        };
        if Self::expects_services(kind) && !self.outbound_services.satisfied_by(services) {
            return false;
        }
        services.has(self.required_services)
    }

    /// Whether an address advertising `services` is worth a feeler: Core's
    /// `MayHaveUsefulAddressDB` (`NODE_NETWORK` or `NODE_NETWORK_LIMITED`) while
    /// [`outbound_services`](Self::outbound_services) is not [`ServiceRule::Any`]. Unknown
    /// services pass.
    pub fn feeler_candidate_ok(&self, services: Option<ServiceFlags>) -> bool {
        match services {
            Some(s) if self.outbound_services != ServiceRule::Any => {
                s.has(ServiceFlags::NETWORK) || s.has(ServiceFlags::NETWORK_LIMITED)
            }
            _ => true,
        }
    }

    /// The policy's verdict on a remote `version` for the connection `ctx`: required
    /// services, then the outbound rule (for the kinds it covers), then the callback.
    /// Feelers always pass.
    ///
    /// # Errors
    /// [`PolicyRefusal::MissingServices`] or [`PolicyRefusal::Rejected`].
    pub fn check(
        &self,
        ctx: &PolicyContext,
        version: &VersionMessage,
    ) -> Result<(), PolicyRefusal> {
        if !Self::applies_to(ctx.kind) {
            return Ok(());
        }
        let offered = version.services;
        if !offered.has(self.required_services) {
            return Err(PolicyRefusal::MissingServices {
                offered,
                expected: self.required_services,
            });
        }
        if Self::expects_services(ctx.kind) {
            if let Some(expected) = self.outbound_services.missing(offered) {
                return Err(PolicyRefusal::MissingServices { offered, expected });
            }
        }
        if let Some(check) = &self.check {
            check(ctx, version).map_err(|reason| PolicyRefusal::Rejected { reason })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::p2p::address::Address;

    const N: ServiceFlags = ServiceFlags::NETWORK;
    const L: ServiceFlags = ServiceFlags::NETWORK_LIMITED;
    const W: ServiceFlags = ServiceFlags::WITNESS;

    fn version(services: ServiceFlags, agent: &str) -> VersionMessage {
        let a = Address::new(&"127.0.0.1:1".parse().unwrap(), ServiceFlags::NONE);
        let mut v = VersionMessage::new(services, 0, a.clone(), a, 7, agent.into(), 0);
        v.version = 70016;
        v
    }

    fn ctx(kind: ConnectionKind) -> PolicyContext {
        PolicyContext {
            addr: "10.0.0.1:8333".parse().unwrap(),
            direction: if kind == ConnectionKind::Inbound {
                Direction::Inbound
            } else {
                Direction::Outbound
            },
            kind,
            trusted: false,
        }
    }

    #[test]
    fn core_desirable_is_network_or_limited_plus_witness() {
        let rule = ServiceRule::CoreDesirable;
        let table = [
            (ServiceFlags::NONE, Some(N | W)),
            (N, Some(N | W)),
            (W, Some(N | W)),
            (N | W, None),
            (L | W, None),
            (N | L | W, None),
            (L, Some(L | W)),
            (N | W | ServiceFlags::P2P_V2, None),
            (ServiceFlags::P2P_V2, Some(N | W)),
        ];
        for (services, missing) in table {
            assert_eq!(rule.missing(services), missing, "{services}");
            assert_eq!(rule.satisfied_by(services), missing.is_none());
        }
        assert_eq!(ServiceRule::Any.missing(ServiceFlags::NONE), None);
        assert_eq!(ServiceRule::All(N).missing(L | W), Some(N));
        assert_eq!(ServiceRule::default(), ServiceRule::CoreDesirable);
    }

    #[test]
    fn outbound_rule_covers_automatic_kinds_only() {
        let policy = PeerPolicy::default();
        let bare = version(ServiceFlags::NONE, "/x/");
        for kind in [
            ConnectionKind::FullRelay,
            ConnectionKind::BlockRelayOnly,
            ConnectionKind::AddrFetch,
        ] {
            assert_eq!(
                policy.check(&ctx(kind), &bare),
                Err(PolicyRefusal::MissingServices {
                    offered: ServiceFlags::NONE,
                    expected: N | W
                }),
                "{kind:?}"
            );
            assert!(policy.check(&ctx(kind), &version(N | W, "/x/")).is_ok());
        }
        for kind in [
            ConnectionKind::Inbound,
            ConnectionKind::Manual,
            ConnectionKind::Feeler,
        ] {
            assert!(policy.check(&ctx(kind), &bare).is_ok(), "{kind:?}");
        }
    }

    #[test]
    fn required_services_apply_to_every_checked_kind_but_feelers() {
        let policy = PeerPolicy {
            required_services: ServiceFlags::COMPACT_FILTERS,
            ..PeerPolicy::accept_all()
        };
        let without = version(N | W, "/x/");
        let with = version(N | W | ServiceFlags::COMPACT_FILTERS, "/x/");
        for kind in [
            ConnectionKind::Inbound,
            ConnectionKind::FullRelay,
            ConnectionKind::Manual,
            ConnectionKind::AddrFetch,
        ] {
            assert!(matches!(
                policy.check(&ctx(kind), &without),
                Err(PolicyRefusal::MissingServices { expected, .. })
                    if expected == ServiceFlags::COMPACT_FILTERS
            ));
            assert!(policy.check(&ctx(kind), &with).is_ok());
        }
        assert!(policy.check(&ctx(ConnectionKind::Feeler), &without).is_ok());
    }

    #[test]
    fn callback_sees_context_and_runs_after_service_checks() {
        let policy = PeerPolicy::with_check(|ctx, v| {
            if v.user_agent.contains("bad") && ctx.kind == ConnectionKind::Inbound {
                Err(format!("agent {}", v.user_agent))
            } else {
                Ok(())
            }
        });
        assert_eq!(
            policy.check(
                &ctx(ConnectionKind::Inbound),
                &version(ServiceFlags::NONE, "/bad/")
            ),
            Err(PolicyRefusal::Rejected {
                reason: "agent /bad/".into()
            })
        );
        assert!(policy
            .check(
                &ctx(ConnectionKind::Inbound),
                &version(ServiceFlags::NONE, "/good/")
            )
            .is_ok());
        // The service rule refuses first.
        assert!(matches!(
            policy.check(
                &ctx(ConnectionKind::FullRelay),
                &version(ServiceFlags::NONE, "/bad/")
            ),
            Err(PolicyRefusal::MissingServices { .. })
        ));
    }

    #[test]
    fn candidates_are_filtered_by_advertised_services_when_known() {
        let policy = PeerPolicy::default();
        let full = ConnectionKind::FullRelay;
        assert!(policy.candidate_ok(full, None));
        assert!(policy.candidate_ok(full, Some(N | W)));
        assert!(policy.candidate_ok(full, Some(L | W)));
        assert!(!policy.candidate_ok(full, Some(ServiceFlags::NONE)));
        assert!(!policy.candidate_ok(ConnectionKind::BlockRelayOnly, Some(N)));
        assert!(policy.candidate_ok(ConnectionKind::Manual, Some(ServiceFlags::NONE)));
        assert!(PeerPolicy::accept_all().candidate_ok(full, Some(ServiceFlags::NONE)));
        // Feelers: Core's MayHaveUsefulAddressDB.
        assert!(policy.feeler_candidate_ok(None));
        assert!(policy.feeler_candidate_ok(Some(L)));
        assert!(policy.feeler_candidate_ok(Some(N)));
        assert!(!policy.feeler_candidate_ok(Some(W | ServiceFlags::P2P_V2)));
        assert!(PeerPolicy::accept_all().feeler_candidate_ok(Some(ServiceFlags::NONE)));
    }
}
