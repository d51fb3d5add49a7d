//! Ban-score increments for the misbehaviour a running peer reports when it disconnects.
//!
//! The values follow Bitcoin Core's net_processing `Misbehaving` calls as they were before
//! Core replaced scores with immediate discouragement (v0.20–v24): oversized
//! `inv`/`getdata`/`headers`/`addr` 20, BIP111 bloom misuse 100 (btcd also adds 100);
//! redundant `version` 1. Late feature negotiation is disconnected by Core without a score:
//! 1 here, so it is recorded. Flooding has no Core equivalent; 50, so two floods ban.
//! Framing errors (wrong magic, oversize) disconnect without a score, as Core.

use crate::peer::{DisconnectReason, Violation};

/// The score a disconnect `reason` adds to the peer's ban score (0 for non-misbehaviour).
pub fn misbehaviour_score(reason: &DisconnectReason) -> u32 {
    match reason {
        DisconnectReason::ProtocolViolation(v) => match v {
            Violation::TooManyEntries { .. } => 20,
            Violation::BloomNotOffered { .. } => 100,
            Violation::RepeatedHandshake { .. } | Violation::LateNegotiation { .. } => 1,
        },
        DisconnectReason::Flooding { .. } => 50,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores() {
        let v = |v| misbehaviour_score(&DisconnectReason::ProtocolViolation(v));
        assert_eq!(
            v(Violation::BloomNotOffered {
                command: "filterload".into()
            }),
            100
        );
        assert_eq!(
            v(Violation::TooManyEntries {
                command: "inv".into(),
                count: 50_001,
                max: 50_000
            }),
            20
        );
        assert_eq!(
            v(Violation::RepeatedHandshake {
                command: "version".into()
            }),
            1
        );
        assert_eq!(
            misbehaviour_score(&DisconnectReason::Flooding {
                rate: 20.0,
                limit: 10.0
            }),
            50
        );
        assert_eq!(misbehaviour_score(&DisconnectReason::RemoteClosed), 0);
        assert_eq!(
            misbehaviour_score(&DisconnectReason::IdleTimeout {
                after: std::time::Duration::ZERO
            }),
            0
        );
    }
}
