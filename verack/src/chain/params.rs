//! Per-network consensus parameters for header validation.

use bitcoin::params::Params;
use bitcoin::{Network, Work};

/// Consensus parameters for header validation.
///
/// [`ChainParams::new`] fills every field from the network; all fields are public so a caller
/// can adjust them afterwards (e.g. a lower `max_fork_headers`, or a custom regtest).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ChainParams {
    /// The network the headers belong to.
    pub network: Network,
    /// rust-bitcoin's consensus parameters: proof-of-work limit, target spacing (600 s) and
    /// timespan (seconds), the testnet minimum-difficulty and regtest no-retarget flags, and the
    /// BIP34/65/66 activation heights.
    pub consensus: Params,
    /// Bitcoin Core's `nMinimumChainWork`: below this total work a header chain is not
    /// trusted to be the real one ([`HeaderTree::is_synced_enough`](super::HeaderTree::is_synced_enough)).
    pub min_chain_work: Work,
    /// Most headers kept off the active chain (default 20 000): the bound on memory a peer can
    /// make us spend on low-work forks. See the [module docs](super#low-work-flood-bound).
    pub max_fork_headers: usize,
    /// BIP94 (testnet4): retarget from the period's first header's bits, and reject a period's
    /// first header more than [`MAX_TIMEWARP`](super::MAX_TIMEWARP) seconds older than its parent.
    /// rust-bitcoin 0.32's `Params` has no such flag (Core's `enforce_BIP94`), so it lives here.
    pub enforce_bip94: bool,
}

impl ChainParams {
    /// Default headers kept off the active chain.
    pub const DEFAULT_MAX_FORK_HEADERS: usize = 20_000;

    /// The parameters of `network`, as Bitcoin Core's `src/kernel/chainparams.cpp`.
    ///
    /// `min_chain_work` is Core's `nMinimumChainWork` (as of bitcoin/bitcoin commit
    /// `284c42a3`, September 2025): mainnet `…dee8e2a309ad8a9820433c68`, testnet3
    /// `…16dd270dd94fac1d7632`, testnet4 `…034a4690fe592dc49c7c`, default signet
    /// `…067d328e681a`, regtest 0.
    ///
    /// Regtest follows Core's `CRegTestParams` where rust-bitcoin 0.32 still carries older
    /// values: BIP34/65/66 active from height 1 (so headers there need version ≥ 4) and a one-day
    /// timespan (144-block periods; regtest never retargets, so this only moves the period start
    /// that the minimum-difficulty walk-back stops at).
    pub fn new(network: Network) -> ChainParams {
        let mut consensus = Params::new(network);
        let min_chain_work = match network {
            Network::Bitcoin => "0000000000000000000000000000000000000000dee8e2a309ad8a9820433c68",
            Network::Testnet => "0000000000000000000000000000000000000000000016dd270dd94fac1d7632",
            Network::Testnet4 => "00000000000000000000000000000000000000000000034a4690fe592dc49c7c",
            Network::Signet => "0000000000000000000000000000000000000000000000000000067d328e681a",
            Network::Regtest => "0000000000000000000000000000000000000000000000000000000000000000",
        };
        if network == Network::Regtest {
            consensus.bip34_height = 1;
            consensus.bip65_height = 1;
            consensus.bip66_height = 1;
            consensus.pow_target_timespan = 24 * 60 * 60;
        }
        ChainParams {
            network,
            consensus,
            min_chain_work: Work::from_unprefixed_hex(min_chain_work)
                .expect("64 hex digits are a valid 256-bit number"),
            max_fork_headers: Self::DEFAULT_MAX_FORK_HEADERS,
            enforce_bip94: network == Network::Testnet4,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn min_chain_work_parses() {
        let w = ChainParams::new(Network::Bitcoin).min_chain_work;
        let mut be = [0u8; 32];
        be[20..].copy_from_slice(&[
            0xde, 0xe8, 0xe2, 0xa3, 0x09, 0xad, 0x8a, 0x98, 0x20, 0x43, 0x3c, 0x68,
        ]);
        assert_eq!(w, Work::from_be_bytes(be));
        assert_eq!(
            ChainParams::new(Network::Regtest).min_chain_work,
            Work::from_be_bytes([0; 32])
        );
        for n in [Network::Testnet, Network::Testnet4, Network::Signet] {
            assert!(ChainParams::new(n).min_chain_work > Work::from_be_bytes([0; 32]));
        }
    }
}
