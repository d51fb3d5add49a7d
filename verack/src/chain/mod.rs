//! Block-header chain: validation, the tree of known headers, best-tip selection and reorgs.
//!
//! Pure: no I/O, no clock reads (the caller passes `now`), no randomness. A [`HeaderTree`]
//! holds every known header (the active chain and its forks) and answers what the P2P layer
//! needs: [`locator`](HeaderTree::locator) for `getheaders`, [`headers_after`](HeaderTree::headers_after)
//! to answer one, [`tips`](HeaderTree::tips) as Core's `getchaintips`, and
//! [`TipChange`]s when [`accept`](HeaderTree::accept) moves the best tip.
//!
//! # Rules checked
//! For each new header on top of its parent, as Bitcoin Core's `ContextualCheckBlockHeader`
//! (`src/validation.cpp`) and `CheckProofOfWork` (`src/pow.cpp`):
//! * **bits** = [`next_work_required`] (Core's `GetNextWorkRequired`): unchanged within a
//!   2016-block period; at a boundary the period's span (its last header's time minus its first's)
//!   clamped to ÷4…×4 of two weeks scales the target, capped at the proof-of-work limit; regtest
//!   never retargets; testnet3/testnet4 allow a minimum-difficulty header more than 20 minutes
//!   after its parent (otherwise the bits of the last non-minimum-difficulty header of the
//!   period); testnet4 retargets from the period's first header (BIP94);
//!   → [`HeaderError::BadDifficulty`];
//! * **time** > median of the previous 11 headers' times → [`HeaderError::TimeTooOld`];
//!   testnet4 (BIP94): a period's first header at most 600 s older than its parent →
//!   [`HeaderError::TimeWarp`]; time ≤ `now` + 2 h → [`HeaderError::TimeTooNew`];
//! * **version** ≥ 2, 3, 4 from the BIP34, BIP66, BIP65 activation heights →
//!   [`HeaderError::BadVersion`];
//! * **proof of work**: the hash, as a little-endian number, ≤ the target, and the target a
//!   valid compact value ≤ the network's limit → [`HeaderError::BadProofOfWork`].
//!
//! Chain work is Core's: the sum of [`block_proof`] (`2^256 / (target + 1)`) from genesis. The
//! best tip has the most chain work; of equal-work tips the first seen stays.
//!
//! **Not checked**: signet's block signature (BIP325; the challenge lives in the coinbase, which
//! a header does not carry: signet headers are checked for difficulty and proof of work only);
//! checkpoints (Core removed them); `nMinimumChainWork` as an acceptance rule here (the tree
//! only reports it, by [`HeaderTree::is_synced_enough`]: Core's headers presync, which keeps a
//! chain below the minimum chain work out of the tree until it has been downloaded once with
//! only salted commitments kept and then redownloaded against them, is done before headers
//! reach the tree, by [`crate::sync`] with [`crate::sync::presync::HeadersSyncState`], using
//! [`permitted_difficulty_transition`] as its difficulty check); anything needing block bodies
//! (merkle root, BIP34 coinbase height).
//!
//! # Low-work flood bound
//! This bound is what remains once headers reach the tree: presync ([`crate::sync`]) keeps
//! out a chain whose work stays below its threshold (the minimum chain work, or our tip's work
//! less 144 blocks' if more), but a fork above it enters the tree.
//! Headers off the active chain are kept in memory only, at most
//! [`ChainParams::max_fork_headers`] (20 000 by default). When a new header makes more, fork
//! headers are dropped, the branch with the least chain work first (from its tip down; the
//! newest of equal-work branches first), down to 7/8 of the bound so the pass is amortised.
//! The active chain is never dropped. A header whose parent was dropped is then
//! [`HeaderError::UnknownParent`], like any header that does not connect. Every stored header
//! still had to pass the difficulty rules and carry real proof of work, so this bounds the
//! memory a peer can make us spend on a fork that will never become the best chain to
//! `max_fork_headers` entries (about 250 bytes each), whatever it sends;
//! a fork that gains work is kept, as its tip outranks the low-work branches.
//!
//! # Memory
//! Two tiers. The recent part is one fixed-size node per header (the 160-byte [`HeaderEntry`],
//! parent id, child count, arrival number, flags: 176 bytes) in one `Vec`, a
//! `BlockHash → u32` map, and the active chain above the archive as a `Vec<u32>`: every fork
//! header and the last [`DEFAULT_RECENT_HEADERS`] (4032) active headers, about 1 MB in all.
//! Below that the active chain is archived as bare 80-byte headers in 1.25 MiB chunks, a
//! `u32`-height hash index (5 bytes a slot at hashbrown's load factor, 6–11 bytes a header),
//! and the chain work every 64 heights: 86–92 bytes a header, some 80 MB for 900,000 mainnet
//! headers (it was about 250 bytes, 225 MB, with nodes throughout). An archived header's hash
//! is its successor's `prev_blockhash`, and its chain work is summed from the nearest mark, so
//! reading one costs at most 63 [`block_proof`] calls; headers served to peers and locators
//! read only the header and hash.
//!
//! # Trusted starts
//! [`HeaderTree::from_active_chain`] rebuilds from our own storage (linkage checked only).
//! [`HeaderTree::with_trusted_start`] starts at a header other than genesis; rules that need an
//! ancestor below it fail with [`HeaderError::MissingAncestor`] rather than being skipped.

mod archive;
mod params;
mod pow;
mod tree;

use bitcoin::{BlockHash, CompactTarget};

pub use params::{signet_magic, ChainParams, DEFAULT_SIGNET_CHALLENGE};
pub use pow::{
    add_work, block_proof, calculate_next_work_required, check_proof_of_work, next_work_required,
    permitted_difficulty_transition, pow_limit_bits, AncestorInfo, MissingAncestor, MAX_TIMEWARP,
};
pub use tree::{
    AcceptError, ChainTip, HeaderEntry, HeaderTree, TipChange, TipStatus, DEFAULT_RECENT_HEADERS,
    MAX_FUTURE_BLOCK_TIME, MAX_HEADERS_RESULTS,
};

/// Why a header was rejected. Each variant names the rule and Core's reject reason.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// The header's parent is not in the tree (never seen, or dropped by the fork bound).
    /// Core: `prev-blk-not-found`.
    #[error("header {hash} does not connect: its parent {prev} is unknown")]
    UnknownParent {
        /// The header's hash.
        hash: BlockHash,
        /// Its `prev_blockhash`.
        prev: BlockHash,
    },
    /// The hash is above the header's own target, or the bits do not encode a valid target at
    /// or below the network's proof-of-work limit. Core's `CheckProofOfWork`: `high-hash`.
    #[error("header {hash} fails its proof of work")]
    BadProofOfWork {
        /// The header's hash.
        hash: BlockHash,
    },
    /// The bits are not the ones [`next_work_required`] gives for this height. Core's
    /// `ContextualCheckBlockHeader`: `bad-diffbits`.
    #[error("header {hash} at height {height} has bits {actual:08x}, expected {expected:08x}")]
    BadDifficulty {
        /// The header's hash.
        hash: BlockHash,
        /// The header's height.
        height: u32,
        /// The bits required.
        expected: CompactTarget,
        /// The bits the header has.
        actual: CompactTarget,
    },
    /// The time is not after the median time past of the previous 11 headers. Core's
    /// `ContextualCheckBlockHeader`: `time-too-old`.
    #[error("header {hash} time {time} is not after the median time past {median_time_past}")]
    TimeTooOld {
        /// The header's hash.
        hash: BlockHash,
        /// The header's time, Unix seconds.
        time: u32,
        /// Median time of the previous 11 headers, Unix seconds.
        median_time_past: u32,
    },
    /// The time is more than 2 hours after `now`. Core's `ContextualCheckBlockHeader`:
    /// `time-too-new`. Unlike the others, this header may become valid later.
    #[error("header {hash} time {time} is after {max} (now + 2 h)")]
    TimeTooNew {
        /// The header's hash.
        hash: BlockHash,
        /// The header's time, Unix seconds.
        time: u32,
        /// The latest time accepted: `now` + 7200, Unix seconds.
        max: u32,
    },
    /// BIP94 (testnet4): the first header of a difficulty period is more than
    /// [`MAX_TIMEWARP`] (600 s) older than its parent. Core's `ContextualCheckBlockHeader`:
    /// `time-timewarp-attack`.
    #[error("header {hash} time {time} is before {min} (parent time - 600 s) at a retarget")]
    TimeWarp {
        /// The header's hash.
        hash: BlockHash,
        /// The header's time, Unix seconds.
        time: u32,
        /// The earliest time accepted: parent's time − 600, Unix seconds.
        min: u32,
    },
    /// The version is below 2, 3 or 4 at or above the BIP34, BIP66 or BIP65 activation height.
    /// Core's `ContextualCheckBlockHeader`: `bad-version(0x…)`.
    #[error("header {hash} at height {height} has outdated version {version:#010x}")]
    BadVersion {
        /// The header's hash.
        hash: BlockHash,
        /// The header's version.
        version: i32,
        /// The header's height.
        height: u32,
    },
    /// A rule needs an ancestor below the tree's trusted start
    /// ([`HeaderTree::with_trusted_start`]); never happens in a tree that starts at genesis.
    #[error(
        "header {hash} at height {height} needs the header at {needed}, below the trusted start"
    )]
    MissingAncestor {
        /// The header's hash.
        hash: BlockHash,
        /// The header's height.
        height: u32,
        /// Height of the ancestor the rule needed.
        needed: u32,
    },
    /// The header would be above height `i32::MAX` (Core's heights are `int`); reachable only
    /// from a trusted start placed just below it.
    #[error("header {hash} would be above height {max}", max = i32::MAX)]
    HeightTooLarge {
        /// The header's hash.
        hash: BlockHash,
    },
}

/// Whether each header of a `headers` message builds on the one before it (the first may
/// build on anything). Bitcoin Core checks this before any other processing
/// (`CheckHeadersAreContinuous` in net_processing) and treats a peer that fails it as
/// misbehaving ("non-continuous headers sequence"), disconnecting it; returns the index of
/// the first header that does not connect to its predecessor, or `None` when all connect.
pub fn first_discontinuity(headers: &[bitcoin::block::Header]) -> Option<usize> {
    headers
        .windows(2)
        .position(|pair| pair[1].prev_blockhash != pair[0].block_hash())
        .map(|i| i + 1)
}
