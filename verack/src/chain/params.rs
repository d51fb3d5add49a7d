//! Per-network consensus parameters for header validation.

use bitcoin::block::Header;
use bitcoin::consensus::encode::serialize;
use bitcoin::hashes::{sha256d, Hash};
use bitcoin::p2p::Magic;
use bitcoin::params::Params;
use bitcoin::{Network, Work};

/// The challenge of the default signet (Bitcoin Core's `SigNetParams` without
/// `-signetchallenge`): a 1-of-2 bare multisig script, 71 bytes. Its derived magic is
/// `0a03cf40`, rust-bitcoin's `Network::Signet.magic()`.
pub const DEFAULT_SIGNET_CHALLENGE: &str = "512103ad5e0edad18cb1f0fc0d28a3d4f1f3e445640337489abb10404f2d1e086be430210359ef5021964fe22d6f8e05b2463c9540ce96883fe3b278760f048f5189f2e6c452ae";

/// The network magic of a signet whose block challenge is the script `challenge` (raw script
/// bytes, as Core's `-signetchallenge` takes them in hex): the first 4 bytes of the double
/// SHA-256 of the challenge serialized as a byte vector (compact-size length, then the bytes),
/// as BIP325 ("message start") and Core's `SigNetParams` (`HashWriter << signet_challenge`).
pub fn signet_magic(challenge: &[u8]) -> Magic {
    let hash = sha256d::Hash::hash(&serialize(&challenge.to_vec()));
    let b = hash.to_byte_array();
    Magic::from_bytes([b[0], b[1], b[2], b[3]])
}

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
    /// The 4-byte message start framing every P2P message (Core's `pchMessageStart`): the
    /// network's own (`network.magic()`) unless overridden, e.g. by
    /// [`ChainParams::custom_signet`]. Give the same value to
    /// [`PeerConfig::magic`](crate::peer::PeerConfig::magic) so peers speak this network.
    pub magic: Magic,
    /// The genesis block header: the network's own (`bitcoin::constants::genesis_block`)
    /// unless overridden. The header tree starts from it.
    pub genesis: Header,
    /// A custom signet's block challenge (raw script bytes), as given to
    /// [`ChainParams::custom_signet`]; `None` otherwise. Block signatures are not checked
    /// (verack validates headers only), so this is informational.
    pub signet_challenge: Option<Vec<u8>>,
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
        let genesis = bitcoin::constants::genesis_block(&consensus).header;
        ChainParams {
            network,
            consensus,
            min_chain_work: Work::from_unprefixed_hex(min_chain_work)
                .expect("64 hex digits are a valid 256-bit number"),
            max_fork_headers: Self::DEFAULT_MAX_FORK_HEADERS,
            enforce_bip94: network == Network::Testnet4,
            magic: network.magic(),
            genesis,
            signet_challenge: None,
        }
    }

    /// A custom signet, as Bitcoin Core's `-signet -signetchallenge=<hex>`: signet's consensus
    /// rules and genesis block (the same for every signet), the magic derived from `challenge`
    /// ([`signet_magic`], BIP325), and, as Core for any challenge other than the default, a
    /// minimum chain work of 0 (a new signet has no history to require).
    ///
    /// `challenge` is the raw script (e.g. `51` for `OP_TRUE`). The default signet's challenge
    /// ([`DEFAULT_SIGNET_CHALLENGE`]) gives the default signet's magic but still the custom
    /// minimum chain work of 0; use [`ChainParams::new`]`(Network::Signet)` for it instead.
    pub fn custom_signet(challenge: &[u8]) -> ChainParams {
        let mut params = ChainParams::new(Network::Signet);
        params.magic = signet_magic(challenge);
        params.min_chain_work = Work::from_be_bytes([0; 32]);
        params.signet_challenge = Some(challenge.to_vec());
        params
    }

    /// A private network on `base`'s consensus rules with its own `magic` and `genesis` header
    /// (for library users running their own test network): everything else as
    /// [`ChainParams::new`]`(base)`, with a minimum chain work of 0. Headers are validated
    /// against `base`'s proof-of-work limit and retarget rules, so `genesis` must meet them.
    pub fn custom(base: Network, magic: Magic, genesis: Header) -> ChainParams {
        let mut params = ChainParams::new(base);
        params.magic = magic;
        params.genesis = genesis;
        params.min_chain_work = Work::from_be_bytes([0; 32]);
        params
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

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn default_signet_challenge_gives_cores_signet_magic() {
        // Core's chainparams.cpp: the default signet's pchMessageStart is 0a 03 cf 40.
        let magic = signet_magic(&hex(DEFAULT_SIGNET_CHALLENGE));
        assert_eq!(magic.to_bytes(), [0x0a, 0x03, 0xcf, 0x40]);
        assert_eq!(magic, Network::Signet.magic());
        assert_eq!(ChainParams::new(Network::Signet).magic, magic);
    }

    /// The magic of the signet whose challenge is `OP_TRUE` (`-signetchallenge=51`): the first
    /// bytes of sha256d(01 51), computed independently with Python's hashlib.
    const OP_TRUE_SIGNET_MAGIC: [u8; 4] = [0x54, 0xd2, 0x6f, 0xbd];

    #[test]
    fn custom_signet_magic_is_sha256d_of_the_pushed_challenge() {
        let params = ChainParams::custom_signet(&[0x51]);
        assert_eq!(params.magic.to_bytes(), OP_TRUE_SIGNET_MAGIC);
        assert_ne!(params.magic, Network::Signet.magic());
        assert_eq!(params.network, Network::Signet);
        assert_eq!(params.genesis, ChainParams::new(Network::Signet).genesis);
        assert_eq!(params.min_chain_work, Work::from_be_bytes([0; 32]));
        assert_eq!(params.signet_challenge.as_deref(), Some(&[0x51][..]));
    }

    #[test]
    fn custom_network_overrides_magic_and_genesis() {
        let genesis = bitcoin::constants::genesis_block(Params::new(Network::Bitcoin)).header;
        let magic = Magic::from_bytes([1, 2, 3, 4]);
        let params = ChainParams::custom(Network::Regtest, magic, genesis);
        assert_eq!(params.magic, magic);
        assert_eq!(params.genesis, genesis);
        assert_eq!(params.network, Network::Regtest);
        assert_eq!(
            ChainParams::new(Network::Regtest)
                .genesis
                .block_hash()
                .to_string(),
            "0f9188f13cb7b2c71f2a335e3a4fc328bf5beb436012afca590b1a11466e2206"
        );
    }
}
