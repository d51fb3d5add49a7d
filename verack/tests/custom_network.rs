//! Custom networks (issue 14 item 3): a custom signet's magic derived from its challenge
//! (BIP325, as Core's `-signetchallenge`) carried by `PeerConfig::magic` on the wire, over v1
//! and BIP324 v2, and a raw magic and genesis override for the header tree.
//!
//! Bitcoin Core runs only on regtest in these tests (`../shared/bitcoin-core/README.md`), so
//! the derivation is checked against Core's default signet magic `0a03cf40` and an
//! independently computed vector (`chain::params` unit tests) rather than a Core signet node.

mod common;

use bitcoin::p2p::Magic;
use bitcoin::Network;
use common::*;
use tokio::io::AsyncReadExt;
use tokio_util::sync::CancellationToken;
use verack::chain::{signet_magic, ChainParams, HeaderTree};
use verack::peer::{HandshakeError, Peer, PeerConfig, TransportKind, V2Mode};
use verack::wire::DecodeError;

/// `OP_TRUE` (`-signetchallenge=51`).
const CHALLENGE: [u8; 1] = [0x51];

fn custom_signet() -> PeerConfig {
    let mut cfg = PeerConfig::new(Network::Signet);
    cfg.magic = Some(ChainParams::custom_signet(&CHALLENGE).magic);
    cfg
}

#[test]
fn the_override_is_the_wire_magic() {
    let cfg = custom_signet();
    assert_eq!(cfg.wire_magic(), signet_magic(&CHALLENGE));
    assert_ne!(cfg.wire_magic(), Network::Signet.magic());
    assert_eq!(
        PeerConfig::new(Network::Signet).wire_magic(),
        Network::Signet.magic()
    );
}

#[tokio::test]
async fn custom_signet_peers_handshake_over_v1_and_v2() {
    for v2 in [V2Mode::Off, V2Mode::Always] {
        let mut out = custom_signet();
        out.v2 = v2;
        let (a, b) = connected_pair(out, custom_signet()).await;
        let (a, b) = (a.expect("outbound"), b.expect("inbound"));
        let want = if v2 == V2Mode::Off {
            TransportKind::V1
        } else {
            TransportKind::V2
        };
        assert_eq!(a.negotiated().transport.kind(), want);
        assert_eq!(b.negotiated().transport.kind(), want);
    }
}

#[tokio::test]
async fn v1_frames_carry_the_derived_magic() {
    let (a, mut b) = tokio::io::duplex(DUPLEX_BUFFER);
    let peer = Peer::outbound(a, addr(38333), custom_signet());
    let cancel = CancellationToken::new();
    let handshake = tokio::spawn(async move { peer.handshake(&cancel, accept).await.is_ok() });
    let mut first = [0u8; 16];
    b.read_exact(&mut first).await.unwrap();
    assert_eq!(first[..4], signet_magic(&CHALLENGE).to_bytes());
    assert_eq!(&first[4..11], b"version");
    drop(b);
    assert!(!handshake.await.unwrap(), "no one answered");
}

/// Paused clock: over v2 the mismatch shows only when the garbage terminator never comes.
#[tokio::test(start_paused = true)]
async fn the_default_signet_and_a_custom_signet_do_not_talk() {
    for v2 in [V2Mode::Off, V2Mode::Always] {
        let mut out = PeerConfig::new(Network::Signet);
        out.v2 = v2;
        let (a, b) = connected_pair(out, custom_signet()).await;
        assert!(a.is_err());
        match b.expect_err("the custom signet peer refuses the default signet") {
            HandshakeError::Framing(DecodeError::WrongMagic { expected, actual }) => {
                assert_eq!(expected, signet_magic(&CHALLENGE));
                assert_eq!(actual, Network::Signet.magic());
            }
            // v2: a key from another network is not a v1 prefix; the exchange fails.
            e if v2 == V2Mode::Always => drop(e),
            e => panic!("unexpected error: {e:?}"),
        }
    }
}

#[test]
fn the_header_tree_starts_at_an_overridden_genesis() {
    // Mainnet's genesis on regtest rules, with a private magic.
    let genesis = bitcoin::constants::genesis_block(Network::Bitcoin).header;
    let params = ChainParams::custom(Network::Regtest, Magic::from_bytes([1, 2, 3, 4]), genesis);
    let tree = HeaderTree::new(params);
    assert_eq!(tree.tip().hash, genesis.block_hash());
    assert_eq!(tree.height(), 0);
}
