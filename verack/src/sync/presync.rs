//! Low-work headers sync ("presync"): a port of Bitcoin Core's `HeadersSyncState`
//! (`src/headerssync.{h,cpp}`, bitcoin/bitcoin#25717, as of Core commit `58a7869f860f`).
//!
//! # Why
//! A peer can serve a long header chain that has less work than our anti-DoS threshold (Core's
//! `GetAntiDoSWorkThreshold`, at least `nMinimumChainWork`). Storing it as it arrives would let
//! a cheap, minimum-difficulty chain fill our memory and disk. Core downloads such a chain
//! twice instead:
//!
//! 1. **Presync** ([`State::Presync`]): check each header minimally (it connects, and its
//!    difficulty is a [permitted transition](crate::chain::permitted_difficulty_transition) from
//!    its parent's), add up its work, and keep only a salted 1-bit commitment to the header at
//!    every height `h` with `h % commitment_period == commit_offset` (a secret, random offset).
//!    Nothing else of the chain is kept: the last header, its height and the running work.
//! 2. **Redownload** ([`State::Redownload`]): once the work reaches the threshold, ask for the
//!    chain again from the fork point. Each header is checked against the stored commitments and
//!    held in a buffer; a header leaves the buffer, to be validated and stored by the caller, only
//!    once [`HeadersSyncParams::redownload_buffer_size`] headers (about 24 commitments on
//!    mainnet) are on top of it, or once the redownloaded chain itself reaches the threshold.
//! 3. **Final** ([`State::Final`]): done, successfully or not; all memory is released.
//!
//! A peer that serves the honest (high-work) chain in presync and a cheap chain in redownload
//! passes each commitment of the cheap chain with probability ½, so it is caught within a few
//! commitments, long before a header leaves the buffer. The salt and the commit offset must be
//! secret ([`PresyncSalt::random`]) and fresh per sync: whoever knows them can craft a chain
//! that passes every commitment.
//!
//! # Memory
//! Per sync: a fixed-size state (a few hundred bytes, plus the caller's locator of the fork
//! point), one bit per `commitment_period` headers of presync, bounded by
//! [`max_commitments`](HeadersSyncState::max_commitments) (the longest chain the median-time-past
//! rule allows by `now`: 6 blocks a second), and in redownload at most
//! `redownload_buffer_size` + one `headers` message of 48-byte compressed headers. A chain that
//! never reaches the threshold costs one bit per period, whatever its length, and never reaches
//! the caller.
//!
//! # Sans-I/O
//! No clock, no randomness, no logging: `now` and the [`PresyncSalt`] are inputs, and every end
//! of a sync is reported as a typed [`SyncEnd`] (failures as [`PresyncFailure`]) so the caller can
//! log Core's `Initial headers sync …` debug lines and decide what to do with the peer.
//!
//! # How Core's caller uses it (`src/net_processing.cpp`)
//! * `TryLowWorkHeadersSync`: a `headers` message that connects to our block index at `start`
//!   but whose claimed total work ([`claimed_chain_work`]) is below the threshold
//!   ([`anti_dos_work_threshold`]): if the message is full
//!   ([`MAX_HEADERS_RESULTS`](crate::chain::MAX_HEADERS_RESULTS) headers), start a
//!   [`HeadersSyncState`] at `start` and process the message with it; otherwise ignore the
//!   headers ("Ignoring low-work chain"). Either way the headers are not stored. Skipped (the
//!   headers are processed directly) when the message's last header is already known and an
//!   ancestor of our best header or tip, and for peers with the `noban` permission.
//! * `IsContinuationOfLowWorkHeadersSync`: while a peer has a sync, every non-empty `headers`
//!   message from it goes to [`process_next_headers`](HeadersSyncState::process_next_headers)
//!   first, with `full_headers_message = (len == MAX_HEADERS_RESULTS)`. On `request_more`, send
//!   `getheaders` with [`next_headers_request_locator`](HeadersSyncState::next_headers_request_locator)
//!   (and an all-zero stop hash). On `success`, the message counts as the answer to the pending
//!   `getheaders`, and `pow_validated_headers` replaces the message's headers: those are
//!   processed as usual (full validation, storage) without a new anti-DoS work check; an empty
//!   list means nothing more to do. Once [`state`](HeadersSyncState::state) is
//!   [`State::Final`], drop the sync. On failure (`success == false`) Core neither scores nor
//!   disconnects the peer: it drops the sync and handles the message's headers as if no sync had
//!   been running (headers that do not connect to the index go to its unconnecting-headers
//!   handling, which asks for headers from our tip; headers that do may start a new sync).
//! * An empty `headers` message drops the sync without calling this type.
//! * Reporting: `getpeerinfo.presynced_headers` is [`presync_height`](HeadersSyncState::presync_height)
//!   while the peer has a sync, else −1. After each message, Core ranks the peers with a sync
//!   by `HeadersPresyncStats` = ([`presync_work`](HeadersSyncState::presync_work), then
//!   `(presync_height, presync_time)` in [`State::Presync`] or nothing in redownload, which
//!   ranks lower); when the best peer changes or improves and is in presync, its height and
//!   time go to `ChainstateManager::ReportHeadersPresync` (`src/validation.cpp`), which logs the
//!   info line `Pre-synchronizing blockheaders, height: H (~P%)` with `P` from
//!   [`presync_progress`], at most every 250 ms, only while our best header has less than
//!   `nMinimumChainWork` (the line itself only in initial block download).
//!   `getblockchaininfo.headers` is not changed by presync.

use std::collections::VecDeque;
use std::mem::size_of;

use bitcoin::block::{Header, Version};
use bitcoin::hashes::{siphash24, Hash as _};
use bitcoin::{BlockHash, CompactTarget, Network, TxMerkleNode, Work};

use crate::chain::{
    add_work, block_proof, check_proof_of_work, permitted_difficulty_transition, ChainParams,
    HeaderEntry, HeaderTree, MAX_FUTURE_BLOCK_TIME,
};

/// Memory parameters of a headers sync: Core's `HeadersSyncParams` (`src/kernel/chainparams.h`).
///
/// The per-network values ([`for_network`](Self::for_network)) come from Core's
/// `src/kernel/chainparams.cpp` (commit `58a7869f860f`), where `headerssync-params.py` chose
/// them to bound the memory an attacker can make us spend per sync and in total.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadersSyncParams {
    /// Distance in headers between two commitments (Core's `commitment_period`). Must be at
    /// least 1; [`HeadersSyncState::new`] treats 0 as 1 (Core asserts it is non-zero).
    pub commitment_period: u32,
    /// Headers held in the redownload buffer before the oldest is released to the caller
    /// (Core's `redownload_buffer_size`): about `redownload_buffer_size / commitment_period`
    /// commitments are verified on top of every released header.
    pub redownload_buffer_size: usize,
}

impl HeadersSyncParams {
    /// Core's `CMainParams`: 641 / 15 218 (~23.7 commitments).
    pub const MAINNET: HeadersSyncParams = HeadersSyncParams {
        commitment_period: 641,
        redownload_buffer_size: 15_218,
    };
    /// Core's `CTestNetParams` (testnet3): 673 / 14 460 (~21.5 commitments).
    pub const TESTNET3: HeadersSyncParams = HeadersSyncParams {
        commitment_period: 673,
        redownload_buffer_size: 14_460,
    };
    /// Core's `CTestNet4Params`: 606 / 16 092 (~26.6 commitments).
    pub const TESTNET4: HeadersSyncParams = HeadersSyncParams {
        commitment_period: 606,
        redownload_buffer_size: 16_092,
    };
    /// Core's `SigNetParams`: 620 / 15 724 (~25.4 commitments).
    pub const SIGNET: HeadersSyncParams = HeadersSyncParams {
        commitment_period: 620,
        redownload_buffer_size: 15_724,
    };
    /// Core's `CRegTestParams`: 275 / 7 017 (~25.5 commitments; Core's comment says "Copied
    /// from Testnet4", from an older testnet4 generation).
    pub const REGTEST: HeadersSyncParams = HeadersSyncParams {
        commitment_period: 275,
        redownload_buffer_size: 7_017,
    };

    /// The parameters Core uses on `network` (the constants above). rust-bitcoin's
    /// `Network` is non-exhaustive; an unknown future network gets the mainnet values.
    pub fn for_network(network: Network) -> HeadersSyncParams {
        match network {
            Network::Bitcoin => Self::MAINNET,
            Network::Testnet => Self::TESTNET3,
            Network::Testnet4 => Self::TESTNET4,
            Network::Signet => Self::SIGNET,
            Network::Regtest => Self::REGTEST,
            #[allow(unreachable_patterns)]
            _ => Self::MAINNET,
        }
    }
}

/// The secret randomness of one sync: the SipHash-2-4 keys of the commitment hasher (Core's
/// `SaltedUint256Hasher`, two `FastRandomContext().rand64()`) and the commit offset (Core's
/// `m_commit_offset = FastRandomContext().randrange(commitment_period)`).
///
/// Draw a fresh one for every sync with [`PresyncSalt::random`] and keep it secret: a peer that
/// knows it can serve a cheap chain that matches every commitment.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PresyncSalt {
    /// SipHash key, first half.
    pub k0: u64,
    /// SipHash key, second half.
    pub k1: u64,
    /// Commitments are made at heights `h` with `h % commitment_period ==
    /// offset % commitment_period` (the reduction gives a bias of at most
    /// `commitment_period / 2^64` over Core's uniform `randrange`).
    pub offset: u64,
}

impl std::fmt::Debug for PresyncSalt {
    /// Does not print the secret values.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PresyncSalt(..)")
    }
}

impl PresyncSalt {
    /// Three independent 64-bit values from `rng` (use a cryptographically secure one, e.g.
    /// `rand::thread_rng()`, as Core's `FastRandomContext` is).
    pub fn random<R: rand::RngCore + ?Sized>(rng: &mut R) -> PresyncSalt {
        PresyncSalt {
            k0: rng.next_u64(),
            k1: rng.next_u64(),
            offset: rng.next_u64(),
        }
    }

    /// The commitment bit of the header `hash`: the lowest bit of SipHash-2-4 keyed with
    /// (`k0`, `k1`) over the hash's 32 bytes in internal (little-endian) order, as Core's
    /// `m_hasher(header.GetHash()) & 1` (`PresaltedSipHasher`, equal to SipHash-2-4 of the
    /// `uint256`'s bytes).
    pub fn commitment_bit(&self, hash: &BlockHash) -> bool {
        siphash24::Hash::hash_to_u64_with_keys(self.k0, self.k1, hash.as_byte_array()) & 1 == 1
    }
}

/// The header a sync starts from: the last header in our block index that the peer's chain
/// builds on (Core's `m_chain_start`, a `CBlockIndex`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainStart {
    /// The header itself (its bits are the parent bits of the first synced header; its time is
    /// [`presync_time`](HeadersSyncState::presync_time) before any header arrives).
    pub header: Header,
    /// Its hash.
    pub hash: BlockHash,
    /// Its height (genesis is 0).
    pub height: u32,
    /// Total work of the chain ending at it, genesis included (Core's `nChainWork`).
    pub chain_work: Work,
    /// Its median time past, Unix seconds (Core's `GetMedianTimePast`): the base of
    /// [`max_commitments`](HeadersSyncState::max_commitments).
    pub median_time_past: u32,
}

impl ChainStart {
    /// The chain start for a tree entry whose median time past is `median_time_past`.
    pub fn from_entry(entry: &HeaderEntry, median_time_past: u32) -> ChainStart {
        ChainStart {
            header: entry.header,
            hash: entry.hash,
            height: entry.height,
            chain_work: entry.chain_work,
            median_time_past,
        }
    }

    /// The chain start for the header `hash` of `tree`, or `None` if the tree does not hold it.
    pub fn from_tree(tree: &HeaderTree, hash: &BlockHash) -> Option<ChainStart> {
        let entry = tree.get(hash)?;
        let mtp = tree.median_time_past(hash)?;
        Some(ChainStart::from_entry(&entry, mtp))
    }
}

/// Where a sync is (Core's `HeadersSyncState::State`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// The peer has not yet shown that its chain has enough work; only commitments are kept.
    Presync,
    /// The peer's chain had enough work; it is being downloaded again, checked against the
    /// commitments, and released to the caller.
    Redownload,
    /// The sync is over (see [`HeadersSyncState::end`]); all its memory is released.
    Final,
}

/// The phase a failure or an incomplete message happened in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    /// [`State::Presync`].
    Presync,
    /// [`State::Redownload`].
    Redownload,
}

impl Phase {
    /// `"presync"` or `"redownload"`, as Core's log lines say.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Presync => "presync",
            Phase::Redownload => "redownload",
        }
    }
}

/// Why a sync was aborted (`success == false`). Each variant is one of Core's
/// `Initial headers sync aborted with peer=N: …` reasons; `height` is the height the offending
/// header would have had.
///
/// Core does not score any of these as misbehaviour (the comment in `ProcessNextHeaders`:
/// "We could consider looking at the reason for failure and punishing the peer, but for now
/// just give up on sync"); the typed reason lets a caller decide otherwise.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum PresyncFailure {
    /// A header does not build on the one before it (the last header of the previous message
    /// for the first of a message). Core: "non-continuous headers at height=H (presync
    /// phase)" / "(redownload phase)"; in presync Core checks only a message's first header and
    /// relies on its caller's `CheckHeadersAreContinuous` for the rest: here every header is
    /// checked.
    #[error("non-continuous headers at height {height} ({} phase)", phase.as_str())]
    NonContinuous {
        /// Phase of the sync.
        phase: Phase,
        /// Height of the header that does not connect.
        height: u32,
    },
    /// A header's hash is above its own target, or its bits are not a valid target within the
    /// network's limit ([`check_proof_of_work`]). Core checks
    /// this in its caller (`CheckHeadersPoW`, a misbehaviour: "header with invalid proof of
    /// work") before the headers reach `HeadersSyncState`; it is checked again here so the
    /// work counted is real whatever the caller does.
    #[error("header at height {height} fails its proof of work ({} phase)", phase.as_str())]
    InvalidProofOfWork {
        /// Phase of the sync.
        phase: Phase,
        /// Height of the header.
        height: u32,
    },
    /// A header's bits are not a [permitted transition](crate::chain::permitted_difficulty_transition)
    /// from its parent's. Core: "invalid difficulty transition at height=H (… phase)".
    #[error("invalid difficulty transition at height {height} ({} phase)", phase.as_str())]
    InvalidDifficultyTransition {
        /// Phase of the sync.
        phase: Phase,
        /// Height of the header.
        height: u32,
    },
    /// The presync chain is longer than any chain the median-time-past rule allows by `now`
    /// ([`HeadersSyncState::max_commitments`]), or its height passed `u32::MAX`. Core: "exceeded
    /// max commitments at height=H (presync phase)"; Core notes the chain may have grown since
    /// the sync started, so a later sync might succeed.
    #[error("exceeded max commitments at height {height} (presync phase)")]
    ExceededMaxCommitments {
        /// Height of the header that needed one commitment too many.
        height: u32,
    },
    /// In redownload, a committed height was reached after every stored commitment had been
    /// used, before the redownloaded chain reached the work threshold: the peer served a
    /// different, lower-work chain. Core: "commitment overrun at height=H (redownload phase)".
    #[error("commitment overrun at height {height} (redownload phase)")]
    CommitmentOverrun {
        /// Height of the header.
        height: u32,
    },
    /// In redownload, a header's commitment bit differs from the one stored in presync: the
    /// peer served a different chain. Core: "commitment mismatch at height=H (redownload
    /// phase)".
    #[error("commitment mismatch at height {height} (redownload phase)")]
    CommitmentMismatch {
        /// Height of the header.
        height: u32,
    },
}

/// How a sync ended ([`HeadersSyncState::end`]), with the height Core's log line names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SyncEnd {
    /// The redownloaded chain reached the work threshold and every buffered header was
    /// released. Core: "Initial headers sync complete with peer=N: releasing all at height=H
    /// (redownload phase)".
    Complete {
        /// Height of the last released header.
        height: u32,
    },
    /// A headers message that was not full arrived before the sync could finish: the peer has
    /// no more headers to give, so its chain has too little work (presync), or it declined to
    /// serve the high-work chain again (redownload). Not a failure: `success` stays true and
    /// headers released by that message are still valid. Core: "incomplete headers message at
    /// height=H (… phase)".
    IncompleteHeadersMessage {
        /// Phase of the sync.
        phase: Phase,
        /// Presync height, or height of the last redownloaded header.
        height: u32,
    },
    /// The sync was aborted.
    Failed(PresyncFailure),
}

/// What [`HeadersSyncState::process_next_headers`] returns (Core's `ProcessingResult`, plus
/// the typed failure).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcessingResult {
    /// Headers, in chain order, that the caller can now fully validate and store without a
    /// further anti-DoS work check: they are on a chain with enough work and are covered by
    /// verified commitments. The first builds on the chain start or on the last header
    /// released before. Empty in presync.
    pub pow_validated_headers: Vec<Header>,
    /// False if the sync was aborted (see `failure`) or the call was not processed (empty
    /// input or a finished sync); true otherwise.
    pub success: bool,
    /// True if the caller should send `getheaders` with
    /// [`HeadersSyncState::next_headers_request_locator`]; only ever with `success`.
    pub request_more: bool,
    /// Why the sync was aborted; `Some` exactly when `success` is false after headers were
    /// processed (`None` with `success == false` means the call was ignored: no headers, or
    /// the sync had already ended).
    pub failure: Option<PresyncFailure>,
}

/// A header without its `prev_blockhash` (Core's `CompressedHeader`, 48 bytes): the
/// redownload buffer stores these and restores the parent hash from the previous entry.
#[derive(Debug, Clone, Copy)]
struct CompressedHeader {
    version: Version,
    merkle_root: TxMerkleNode,
    time: u32,
    bits: CompactTarget,
    nonce: u32,
}

// Core's memory analysis (headerssync-params.py) assumes 48 bytes per buffered header.
const _: () = assert!(size_of::<CompressedHeader>() == 48);

impl CompressedHeader {
    fn new(h: &Header) -> CompressedHeader {
        CompressedHeader {
            version: h.version,
            merkle_root: h.merkle_root,
            time: h.time,
            bits: h.bits,
            nonce: h.nonce,
        }
    }

    fn full(&self, prev_blockhash: BlockHash) -> Header {
        Header {
            version: self.version,
            prev_blockhash,
            merkle_root: self.merkle_root,
            time: self.time,
            bits: self.bits,
            nonce: self.nonce,
        }
    }
}

/// A queue of bits, one bit of memory each (Core's `bitdeque<>`): push at the back, pop at the
/// front.
#[derive(Debug, Clone, Default)]
struct BitDeque {
    words: VecDeque<u64>,
    /// Bits of `words[0]` already popped (0..64).
    head: u32,
    len: u64,
}

impl BitDeque {
    fn len(&self) -> u64 {
        self.len
    }

    fn push_back(&mut self, bit: bool) {
        let index = u64::from(self.head) + self.len;
        let word = (index / 64) as usize;
        if word == self.words.len() {
            self.words.push_back(0);
        }
        if bit {
            if let Some(w) = self.words.get_mut(word) {
                *w |= 1 << (index % 64);
            }
        }
        self.len += 1;
    }

    fn pop_front(&mut self) -> Option<bool> {
        if self.len == 0 {
            return None;
        }
        let bit = (self.words.front()? >> self.head) & 1 == 1;
        self.len -= 1;
        self.head += 1;
        if self.head == 64 || self.len == 0 {
            self.words.pop_front();
            self.head = 0;
            if self.len == 0 {
                self.words.clear();
            }
        }
        Some(bit)
    }
}

/// One peer's low-work headers sync (Core's `HeadersSyncState`). See the
/// [module docs](self) for the scheme and for how Core's caller drives it.
///
/// Create one with [`new`](Self::new) when a full `headers` message connects to our index but
/// its chain has too little work, feed it every following non-empty `headers` message of that
/// peer with [`process_next_headers`](Self::process_next_headers), and drop it once
/// [`state`](Self::state) is [`State::Final`].
#[derive(Clone)]
pub struct HeadersSyncState {
    params: ChainParams,
    sync_params: HeadersSyncParams,
    /// `sync_params.commitment_period`, at least 1.
    period: u32,
    /// Core's `m_commit_offset`: commitments at heights `h % period == commit_offset`.
    commit_offset: u32,
    salt: PresyncSalt,
    chain_start: ChainStart,
    chain_start_locator: Vec<BlockHash>,
    minimum_required_work: Work,

    /// Work of the presync chain so far (Core's `m_current_chain_work`), from the chain
    /// start's chain work.
    current_chain_work: Work,
    /// Core's `m_header_commitments`.
    header_commitments: BitDeque,
    /// Core's `m_max_commitments`.
    max_commitments: u64,
    /// Core's `m_last_header_received` (initially the chain start) and its hash.
    last_header_received: Header,
    last_header_hash: BlockHash,
    /// Core's `m_current_height`: height of `last_header_received`.
    current_height: u32,

    /// Core's `m_redownloaded_headers`.
    redownloaded_headers: VecDeque<CompressedHeader>,
    /// Core's `m_redownload_buffer_last_height`.
    redownload_buffer_last_height: u32,
    /// Core's `m_redownload_buffer_last_hash`.
    redownload_buffer_last_hash: BlockHash,
    /// Bits of the last redownloaded header (initially the chain start's). Core reads the bits
    /// of the buffer's last entry, or the chain start's when the buffer is empty; with a
    /// non-zero buffer size the buffer is never empty after the first redownloaded header, so
    /// the two agree on every network; with `redownload_buffer_size == 0` this keeps the real
    /// parent's bits where Core would use the chain start's.
    redownload_buffer_last_bits: CompactTarget,
    /// Core's `m_redownload_buffer_first_prev_hash`.
    redownload_buffer_first_prev_hash: BlockHash,
    /// Core's `m_redownload_chain_work`.
    redownload_chain_work: Work,
    /// Core's `m_process_all_remaining_headers`.
    process_all_remaining_headers: bool,

    state: State,
    end: Option<SyncEnd>,
}

impl std::fmt::Debug for HeadersSyncState {
    /// The state, heights, work and memory use; not the salt, the commit offset or the
    /// commitments (secrets of the sync).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeadersSyncState")
            .field("state", &self.state)
            .field(
                "chain_start",
                &(self.chain_start.height, self.chain_start.hash),
            )
            .field("presync_height", &self.current_height)
            .field("presync_work", &self.current_chain_work)
            .field("minimum_required_work", &self.minimum_required_work)
            .field("commitments", &self.header_commitments.len())
            .field("max_commitments", &self.max_commitments)
            .field("redownload_height", &self.redownload_height())
            .field("redownload_buffer", &self.redownloaded_headers.len())
            .field("end", &self.end)
            .finish()
    }
}

impl HeadersSyncState {
    /// Start a sync from `chain_start` (Core's `HeadersSyncState` constructor).
    ///
    /// * `params`: the network's consensus parameters (difficulty transitions, proof-of-work
    ///   limit).
    /// * `sync_params`: [`HeadersSyncParams::for_network`] unless testing;
    ///   a `commitment_period` of 0 is taken as 1.
    /// * `chain_start`: the header the peer's headers build on (see [`ChainStart`]).
    /// * `chain_start_locator`: the block locator of `chain_start` (Core's
    ///   `LocatorEntries(&m_chain_start)`: its hash first, then its ancestors, densely near it
    ///   and with doubling gaps down to genesis). Appended to every locator this sync asks for.
    ///   If it does not begin with `chain_start.hash`, that hash is put in front.
    /// * `minimum_required_work`: the total chain work (genesis included) the peer's chain
    ///   must reach to be redownloaded and released (Core's `GetAntiDoSWorkThreshold()`).
    /// * `salt`: fresh secret randomness ([`PresyncSalt::random`]).
    /// * `now`: the current time, Unix seconds. Sets [`max_commitments`](Self::max_commitments)
    ///   to `6 × (now − chain_start.median_time_past + MAX_FUTURE_BLOCK_TIME) / commitment_period`,
    ///   as Core (6 headers a second is the fastest the median-time-past rule allows; 0 if the
    ///   time span is not positive, where Core's unsigned conversion would lift the bound).
    pub fn new(
        params: &ChainParams,
        sync_params: HeadersSyncParams,
        chain_start: &ChainStart,
        mut chain_start_locator: Vec<BlockHash>,
        minimum_required_work: Work,
        salt: PresyncSalt,
        now: u32,
    ) -> HeadersSyncState {
        let period = sync_params.commitment_period.max(1);
        // `offset % period` < period ≤ u32::MAX.
        let commit_offset = (salt.offset % u64::from(period)) as u32;
        let max_seconds_since_start = i64::from(now) - i64::from(chain_start.median_time_past)
            + i64::from(MAX_FUTURE_BLOCK_TIME);
        let max_commitments = u64::try_from(max_seconds_since_start)
            .unwrap_or(0)
            .saturating_mul(6)
            / u64::from(period);
        if chain_start_locator.first() != Some(&chain_start.hash) {
            chain_start_locator.insert(0, chain_start.hash);
        }
        HeadersSyncState {
            params: params.clone(),
            sync_params,
            period,
            commit_offset,
            salt,
            chain_start: chain_start.clone(),
            chain_start_locator,
            minimum_required_work,
            current_chain_work: chain_start.chain_work,
            header_commitments: BitDeque::default(),
            max_commitments,
            last_header_received: chain_start.header,
            last_header_hash: chain_start.hash,
            current_height: chain_start.height,
            redownloaded_headers: VecDeque::new(),
            redownload_buffer_last_height: 0,
            redownload_buffer_last_hash: BlockHash::all_zeros(),
            redownload_buffer_last_bits: chain_start.header.bits,
            redownload_buffer_first_prev_hash: BlockHash::all_zeros(),
            redownload_chain_work: Work::from_le_bytes([0; 32]),
            process_all_remaining_headers: false,
            state: State::Presync,
            end: None,
        }
    }

    /// Where the sync is (Core's `GetState`).
    pub fn state(&self) -> State {
        self.state
    }

    /// How the sync ended: `None` until [`state`](Self::state) is [`State::Final`].
    pub fn end(&self) -> Option<SyncEnd> {
        self.end
    }

    /// Height reached in presync (Core's `GetPresyncHeight`): the chain start's height until a
    /// header arrives; it stays at the presync chain's height during redownload; 0 once
    /// [`State::Final`] (Core's `Finalize` resets it). Core's `getpeerinfo.presynced_headers`.
    pub fn presync_height(&self) -> u32 {
        self.current_height
    }

    /// Timestamp (Unix seconds) of the last header received in presync (Core's
    /// `GetPresyncTime`); the chain start's until a header arrives; 0 once [`State::Final`].
    pub fn presync_time(&self) -> u32 {
        if self.state == State::Final {
            0
        } else {
            self.last_header_received.time
        }
    }

    /// Total work of the presync chain (Core's `GetPresyncWork`), from the chain start's chain
    /// work; kept as it was when the sync moved on to redownload or ended.
    pub fn presync_work(&self) -> Work {
        self.current_chain_work
    }

    /// The work threshold this sync was started with.
    pub fn minimum_required_work(&self) -> Work {
        self.minimum_required_work
    }

    /// The chain start this sync was started with.
    pub fn chain_start(&self) -> &ChainStart {
        &self.chain_start
    }

    /// Most commitments presync may store (Core's `m_max_commitments`): see [`new`](Self::new).
    pub fn max_commitments(&self) -> u64 {
        self.max_commitments
    }

    /// Commitments held: stored in presync, not yet checked in redownload; 0 once final.
    /// Memory: one bit each.
    pub fn commitment_count(&self) -> u64 {
        self.header_commitments.len()
    }

    /// Headers held in the redownload buffer (48 bytes each); 0 in presync and once final.
    pub fn redownload_buffer_len(&self) -> usize {
        self.redownloaded_headers.len()
    }

    /// Height of the last redownloaded header (Core's `m_redownload_buffer_last_height`),
    /// `None` unless in [`State::Redownload`].
    pub fn redownload_height(&self) -> Option<u32> {
        (self.state == State::Redownload).then_some(self.redownload_buffer_last_height)
    }

    /// Process one `headers` message from the peer (Core's `ProcessNextHeaders`).
    ///
    /// * `headers`: the message's headers, in order. Core's caller has already checked that
    ///   they are continuous and that each meets its own proof-of-work target; both are
    ///   checked again here (typed failures, no panic).
    /// * `full_headers_message`: the message held the maximum
    ///   ([`MAX_HEADERS_RESULTS`](crate::chain::MAX_HEADERS_RESULTS), 2000) headers, so the
    ///   peer may have more.
    ///
    /// In presync: each header must connect, meet its proof of work and be a permitted
    /// difficulty transition; a commitment is stored at each committed height and the work
    /// added. After the whole message, if the work reached the threshold the sync moves to
    /// redownload from the chain start (`request_more`, nothing released). Otherwise a full
    /// message asks for more, and a non-full one ends the sync
    /// ([`SyncEnd::IncompleteHeadersMessage`], still `success`).
    ///
    /// In redownload: each header must connect, meet its proof of work and be a permitted
    /// transition; at each committed height, until the redownloaded chain has reached the
    /// threshold, its commitment bit must equal the next stored one. Headers then leave the
    /// buffer while it holds more than `redownload_buffer_size`, or all of them once the
    /// threshold was reached (then the sync is [`SyncEnd::Complete`]). A non-full message
    /// before completion ends the sync with `success`.
    ///
    /// Any failure aborts the sync ([`State::Final`], `success == false`, `failure` set,
    /// nothing released from that message). Empty `headers`, or a sync already
    /// [`State::Final`], are ignored: `success == false`, `failure == None`, no state change
    /// (Core's caller never does either).
    pub fn process_next_headers(
        &mut self,
        headers: &[Header],
        full_headers_message: bool,
    ) -> ProcessingResult {
        let mut ret = ProcessingResult::default();
        if headers.is_empty() || self.state == State::Final {
            return ret;
        }

        match self.state {
            State::Presync => match self.validate_and_store_headers_commitments(headers) {
                Err(failure) => {
                    ret.failure = Some(failure);
                }
                Ok(()) => {
                    ret.success = true;
                    if full_headers_message || self.state == State::Redownload {
                        // A full message: the peer may have more. Or we just switched to
                        // redownload, and must ask again from the chain start.
                        ret.request_more = true;
                    } else {
                        // The peer's chain ended below the threshold.
                        self.end = Some(SyncEnd::IncompleteHeadersMessage {
                            phase: Phase::Presync,
                            height: self.current_height,
                        });
                    }
                }
            },
            State::Redownload => {
                let mut outcome = Ok(());
                for header in headers {
                    outcome = self.validate_and_store_redownloaded_header(header);
                    if outcome.is_err() {
                        break;
                    }
                }
                match outcome {
                    Err(failure) => ret.failure = Some(failure),
                    Ok(()) => {
                        ret.success = true;
                        ret.pow_validated_headers = self.pop_headers_ready_for_acceptance();
                        if self.redownloaded_headers.is_empty()
                            && self.process_all_remaining_headers
                        {
                            self.end = Some(SyncEnd::Complete {
                                height: self.redownload_buffer_last_height,
                            });
                        } else if full_headers_message {
                            ret.request_more = true;
                        } else {
                            // The peer gave us a high-work chain but now declines to serve it
                            // in full. What was released is still valid.
                            self.end = Some(SyncEnd::IncompleteHeadersMessage {
                                phase: Phase::Redownload,
                                height: self.redownload_buffer_last_height,
                            });
                        }
                    }
                }
            }
            State::Final => {}
        }

        if !(ret.success && ret.request_more) {
            if let Some(failure) = ret.failure {
                self.end = Some(SyncEnd::Failed(failure));
            }
            self.finalize();
        }
        ret
    }

    /// The locator for the next `getheaders` (Core's `NextHeadersRequestLocator`): the last
    /// header received in presync, or the last redownloaded one (the chain start right after
    /// the switch to redownload), followed by the chain start's locator. Empty once
    /// [`State::Final`].
    pub fn next_headers_request_locator(&self) -> Vec<BlockHash> {
        let first = match self.state {
            State::Final => return Vec::new(),
            State::Presync => self.last_header_hash,
            State::Redownload => self.redownload_buffer_last_hash,
        };
        let mut locator = Vec::with_capacity(1 + self.chain_start_locator.len());
        locator.push(first);
        locator.extend_from_slice(&self.chain_start_locator);
        locator
    }

    /// Core's `Finalize`: release all memory and end the sync.
    fn finalize(&mut self) {
        self.header_commitments = BitDeque::default();
        self.redownloaded_headers = VecDeque::new();
        self.chain_start_locator = Vec::new();
        self.last_header_hash = BlockHash::all_zeros();
        self.redownload_buffer_last_hash = BlockHash::all_zeros();
        self.redownload_buffer_first_prev_hash = BlockHash::all_zeros();
        self.process_all_remaining_headers = false;
        self.current_height = 0;
        self.state = State::Final;
    }

    /// Core's `ValidateAndStoreHeadersCommitments` (presync).
    fn validate_and_store_headers_commitments(
        &mut self,
        headers: &[Header],
    ) -> Result<(), PresyncFailure> {
        for header in headers {
            self.validate_and_process_single_header(header)?;
        }
        if self.current_chain_work >= self.minimum_required_work {
            self.redownloaded_headers.clear();
            self.redownload_buffer_last_height = self.chain_start.height;
            self.redownload_buffer_first_prev_hash = self.chain_start.hash;
            self.redownload_buffer_last_hash = self.chain_start.hash;
            self.redownload_buffer_last_bits = self.chain_start.header.bits;
            self.redownload_chain_work = self.chain_start.chain_work;
            self.state = State::Redownload;
        }
        Ok(())
    }

    /// Core's `ValidateAndProcessSingleHeader` (presync), with the connection and
    /// proof-of-work checks Core leaves to its caller.
    fn validate_and_process_single_header(
        &mut self,
        header: &Header,
    ) -> Result<(), PresyncFailure> {
        let phase = Phase::Presync;
        let next_height = self
            .current_height
            .checked_add(1)
            .ok_or(PresyncFailure::ExceededMaxCommitments { height: u32::MAX })?;
        if header.prev_blockhash != self.last_header_hash {
            return Err(PresyncFailure::NonContinuous {
                phase,
                height: next_height,
            });
        }
        let hash = header.block_hash();
        if !check_proof_of_work(&self.params, hash, header.bits) {
            return Err(PresyncFailure::InvalidProofOfWork {
                phase,
                height: next_height,
            });
        }
        // Difficulty may not change faster than the retarget rules allow: an attacker with
        // little hash power has better odds compressing its work into few headers.
        if !permitted_difficulty_transition(
            &self.params,
            next_height,
            self.last_header_received.bits,
            header.bits,
        ) {
            return Err(PresyncFailure::InvalidDifficultyTransition {
                phase,
                height: next_height,
            });
        }
        if next_height % self.period == self.commit_offset {
            self.header_commitments
                .push_back(self.salt.commitment_bit(&hash));
            if self.header_commitments.len() > self.max_commitments {
                // Longer than any chain the time rules allow by now.
                return Err(PresyncFailure::ExceededMaxCommitments {
                    height: next_height,
                });
            }
        }
        self.current_chain_work = add_work(self.current_chain_work, block_proof(header.bits));
        self.last_header_received = *header;
        self.last_header_hash = hash;
        self.current_height = next_height;
        Ok(())
    }

    /// Core's `ValidateAndStoreRedownloadedHeader`, with the proof-of-work check Core leaves to
    /// its caller.
    fn validate_and_store_redownloaded_header(
        &mut self,
        header: &Header,
    ) -> Result<(), PresyncFailure> {
        let phase = Phase::Redownload;
        // The redownload cannot run more than one message past the presync height before it
        // completes or fails; the checked add is for completeness.
        let next_height = self.redownload_buffer_last_height.checked_add(1).ok_or(
            PresyncFailure::NonContinuous {
                phase,
                height: u32::MAX,
            },
        )?;
        if header.prev_blockhash != self.redownload_buffer_last_hash {
            return Err(PresyncFailure::NonContinuous {
                phase,
                height: next_height,
            });
        }
        let hash = header.block_hash();
        if !check_proof_of_work(&self.params, hash, header.bits) {
            return Err(PresyncFailure::InvalidProofOfWork {
                phase,
                height: next_height,
            });
        }
        if !permitted_difficulty_transition(
            &self.params,
            next_height,
            self.redownload_buffer_last_bits,
            header.bits,
        ) {
            return Err(PresyncFailure::InvalidDifficultyTransition {
                phase,
                height: next_height,
            });
        }

        self.redownload_chain_work = add_work(self.redownload_chain_work, block_proof(header.bits));
        if self.redownload_chain_work >= self.minimum_required_work {
            self.process_all_remaining_headers = true;
        }

        // Check the commitment at committed heights, but not once the threshold is reached:
        // the peer's chain may have grown since presync, and running out of commitments past
        // the target is no fault.
        if !self.process_all_remaining_headers && next_height % self.period == self.commit_offset {
            let Some(expected) = self.header_commitments.pop_front() else {
                return Err(PresyncFailure::CommitmentOverrun {
                    height: next_height,
                });
            };
            if self.salt.commitment_bit(&hash) != expected {
                return Err(PresyncFailure::CommitmentMismatch {
                    height: next_height,
                });
            }
        }

        self.redownloaded_headers
            .push_back(CompressedHeader::new(header));
        self.redownload_buffer_last_height = next_height;
        self.redownload_buffer_last_hash = hash;
        self.redownload_buffer_last_bits = header.bits;
        Ok(())
    }

    /// Core's `PopHeadersReadyForAcceptance`: the headers with `redownload_buffer_size` others
    /// on top, or all once the threshold is reached.
    fn pop_headers_ready_for_acceptance(&mut self) -> Vec<Header> {
        let buffer = self.sync_params.redownload_buffer_size;
        let ready = if self.process_all_remaining_headers {
            self.redownloaded_headers.len()
        } else {
            self.redownloaded_headers.len().saturating_sub(buffer)
        };
        let mut out = Vec::with_capacity(ready);
        for compressed in self.redownloaded_headers.drain(..ready) {
            let header = compressed.full(self.redownload_buffer_first_prev_hash);
            self.redownload_buffer_first_prev_hash = header.block_hash();
            out.push(header);
        }
        out
    }
}

/// The work a peer's chain must have before its headers are stored: Bitcoin Core's
/// `GetAntiDoSWorkThreshold` (`src/net_processing.cpp`), the larger of `minimum_chain_work`
/// (Core's `nMinimumChainWork`, [`ChainParams::min_chain_work`]) and our tip's chain work less
/// 144 blocks of the tip's work (`tip_work − min(144 × block_proof(tip_bits), tip_work)`), "so
/// that we'll accept headers that fork from near our tip". Core's tip here is its active
/// chain's (fully validated blocks); a headers-only node has only its best header chain.
pub fn anti_dos_work_threshold(
    tip_work: Work,
    tip_bits: CompactTarget,
    minimum_chain_work: Work,
) -> Work {
    let proof = block_proof(tip_bits);
    let mut buffer = Work::from_le_bytes([0; 32]);
    for _ in 0..super::ANTI_DOS_WORK_BUFFER_BLOCKS {
        buffer = add_work(buffer, proof);
    }
    let near_tip = tip_work - buffer.min(tip_work);
    near_tip.max(minimum_chain_work)
}

/// The total work a `headers` message claims: `start_work` (the chain work of the header the
/// first one builds on) plus each header's [`block_proof`] of its own bits, proof of work not
/// checked (Core's `chain_start_header.nChainWork + CalculateClaimedHeadersWork(headers)` in
/// `TryLowWorkHeadersSync`). Below [`anti_dos_work_threshold`], Core starts a
/// [`HeadersSyncState`] if the message is full, and otherwise ignores it.
pub fn claimed_chain_work(start_work: Work, headers: &[Header]) -> Work {
    headers
        .iter()
        .fold(start_work, |acc, h| add_work(acc, block_proof(h.bits)))
}

/// Presync progress in percent, as Core's `ChainstateManager::ReportHeadersPresync`
/// (`src/validation.cpp`) computes it for the log line
/// `Pre-synchronizing blockheaders, height: {height} (~{progress:.2}%)`:
/// `100 × height / (height + blocks_left)` where
/// `blocks_left = max(0, (now − time) / pow_target_spacing)` (integer division, truncating
/// toward zero), `time` being the last presync header's timestamp and `now` the current time,
/// both Unix seconds, and `pow_target_spacing` the network's block interval in seconds (600;
/// 0 is taken as 1). Returns 0.0 where Core would divide 0 by 0 (height 0 and no block left).
pub fn presync_progress(height: u32, time: u32, now: u32, pow_target_spacing: u64) -> f64 {
    let spacing = i64::try_from(pow_target_spacing.max(1)).unwrap_or(i64::MAX);
    let blocks_left = ((i64::from(now) - i64::from(time)) / spacing).max(0);
    let total = i64::from(height) + blocks_left;
    if total == 0 {
        return 0.0;
    }
    100.0 * f64::from(height) / total as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn siphash_matches_cores_presalted_hasher() {
        // Core's src/test/data/siphash.json, checked there against PresaltedSipHasher(k0, k1)
        // on the uint256 made of these bytes.
        let salt = PresyncSalt {
            k0: 0x0706_0504_0302_0100,
            k1: 0x0f0e_0d0c_0b0a_0908,
            offset: 0,
        };
        let mut bytes = [0u8; 32];
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = i as u8;
        }
        let full = siphash24::Hash::hash_to_u64_with_keys(salt.k0, salt.k1, &bytes);
        assert_eq!(full, 0x7127_512f_72f2_7cce);
        assert!(
            !salt.commitment_bit(&BlockHash::from_byte_array(bytes)),
            "…cce is even"
        );
        let zeros = siphash24::Hash::hash_to_u64_with_keys(salt.k0, salt.k1, &[0; 32]);
        assert_eq!(zeros, 0x8990_d3e4_2994_96f4);
        let ones = siphash24::Hash::hash_to_u64_with_keys(salt.k0, salt.k1, &[0xff; 32]);
        assert_eq!(ones, 0xe104_1d47_f898_e431);
        assert!(salt.commitment_bit(&BlockHash::from_byte_array([0xff; 32])));
    }

    #[test]
    fn bitdeque_is_fifo_and_releases_words() {
        let mut q = BitDeque::default();
        let pattern = |i: u64| (i * 7 + i / 3) % 5 < 2;
        for i in 0..200 {
            q.push_back(pattern(i));
        }
        assert_eq!(q.len(), 200);
        assert_eq!(q.words.len(), 4);
        for i in 0..130 {
            assert_eq!(q.pop_front(), Some(pattern(i)));
        }
        assert_eq!(q.len(), 70);
        assert_eq!(q.words.len(), 2, "fully popped words are freed");
        for i in 200..260 {
            q.push_back(pattern(i));
        }
        for i in 130..260 {
            assert_eq!(q.pop_front(), Some(pattern(i)), "bit {i}");
        }
        assert_eq!(q.pop_front(), None);
        assert_eq!(q.len(), 0);
        assert!(q.words.is_empty());
        q.push_back(true);
        assert_eq!(q.pop_front(), Some(true));
    }

    #[test]
    fn compressed_header_round_trips() {
        let h = Header {
            version: Version::from_consensus(0x2000_0004),
            prev_blockhash: BlockHash::from_byte_array([3; 32]),
            merkle_root: TxMerkleNode::from_byte_array([4; 32]),
            time: 1_700_000_000,
            bits: CompactTarget::from_consensus(0x1703_e8b3),
            nonce: 0xdead_beef,
        };
        assert_eq!(CompressedHeader::new(&h).full(h.prev_blockhash), h);
    }

    #[test]
    fn progress_as_core() {
        // 100 headers, last one 10 blocks (6000 s) ago: 100 / 110.
        let p = presync_progress(100, 1_000_000, 1_006_000, 600);
        assert!((p - 100.0 * 100.0 / 110.0).abs() < 1e-9);
        // Timestamps in the future count no block left.
        assert_eq!(presync_progress(5, 2_000, 1_000, 600), 100.0);
        // Truncating division: 599 s is no block.
        assert_eq!(presync_progress(5, 1_000, 1_599, 600), 100.0);
        assert_eq!(presync_progress(0, 1_000, 1_000, 600), 0.0);
        assert_eq!(presync_progress(0, 0, 6_000, 0), 0.0);
    }

    #[test]
    fn params_are_cores() {
        assert_eq!(
            HeadersSyncParams::for_network(Network::Bitcoin),
            HeadersSyncParams {
                commitment_period: 641,
                redownload_buffer_size: 15_218
            }
        );
        assert_eq!(
            HeadersSyncParams::for_network(Network::Testnet).commitment_period,
            673
        );
        assert_eq!(
            HeadersSyncParams::for_network(Network::Testnet4).redownload_buffer_size,
            16_092
        );
        assert_eq!(
            HeadersSyncParams::for_network(Network::Signet).commitment_period,
            620
        );
        assert_eq!(
            HeadersSyncParams::for_network(Network::Regtest),
            HeadersSyncParams {
                commitment_period: 275,
                redownload_buffer_size: 7_017
            }
        );
    }

    #[test]
    fn anti_dos_threshold_as_core() {
        let w = |n: u64| {
            Work::from_le_bytes({
                let mut b = [0u8; 32];
                b[..8].copy_from_slice(&n.to_le_bytes());
                b
            })
        };
        let regtest = CompactTarget::from_consensus(0x207f_ffff); // work 2
                                                                  // Tip far above the minimum: 144 blocks below it.
        assert_eq!(
            anti_dos_work_threshold(w(1000), regtest, w(10)),
            w(1000 - 288)
        );
        // Short chain: the buffer is capped at the tip's work, the minimum wins.
        assert_eq!(anti_dos_work_threshold(w(100), regtest, w(10)), w(10));
        assert_eq!(anti_dos_work_threshold(w(100), regtest, w(0)), w(0));
        let h = Header {
            version: Version::from_consensus(4),
            prev_blockhash: BlockHash::all_zeros(),
            merkle_root: TxMerkleNode::all_zeros(),
            time: 0,
            bits: regtest,
            nonce: 0,
        };
        assert_eq!(claimed_chain_work(w(7), &[h, h, h]), w(13));
        assert_eq!(claimed_chain_work(w(7), &[]), w(7));
    }

    #[test]
    fn salt_debug_hides_keys() {
        let salt = PresyncSalt {
            k0: 0x1234,
            k1: 0x5678,
            offset: 9,
        };
        assert_eq!(format!("{salt:?}"), "PresyncSalt(..)");
    }
}
