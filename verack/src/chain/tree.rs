//! The header tree: every known header (active chain and forks), best-tip selection, reorgs,
//! locators, `getheaders` answers and the fork-header bound.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};

use bitcoin::block::Header;
use bitcoin::hashes::Hash as _;
use bitcoin::{BlockHash, Work};

use super::archive::Archive;
use super::pow::{
    add_work, adjustment_interval, block_proof, check_proof_of_work, next_work_required,
    AncestorInfo, MAX_TIMEWARP,
};
use super::{ChainParams, HeaderError};

/// Core's `MAX_FUTURE_BLOCK_TIME` (`src/chain.h`): a header may be at most 2 hours ahead of now.
pub const MAX_FUTURE_BLOCK_TIME: u32 = 2 * 60 * 60;

/// Core's `MAX_HEADERS_RESULTS` (`src/net_processing.cpp`): most headers in one `headers`
/// message.
pub const MAX_HEADERS_RESULTS: usize = 2000;

/// Blocks whose median time is the "median time past" (Core's `nMedianTimeSpan`).
const MEDIAN_TIME_SPAN: usize = 11;

/// No node: the parent of the tree's first header.
const NONE: u32 = u32::MAX;
/// Id tag of an archived header: `ARCHIVED | height` (heights are at most `i32::MAX`).
const ARCHIVED: u32 = 1 << 31;
/// Default of [`HeaderTree::set_recent_headers`]: two difficulty periods.
pub const DEFAULT_RECENT_HEADERS: u32 = 2 * 2016;
/// Node flag: the node was on the active chain and a reorg took it off (Core's analogue:
/// a connected block, shown as "valid-fork" once disconnected).
const WAS_ACTIVE: u8 = 1;
/// Node flag: the slot is free (its header was dropped by the fork bound).
const DEAD: u8 = 2;

/// An accepted header in the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderEntry {
    /// The 80-byte header.
    pub header: Header,
    /// Its hash (double SHA-256, cached).
    pub hash: BlockHash,
    /// Its height: genesis is 0.
    pub height: u32,
    /// Total work of the chain ending here, genesis included (Core's `nChainWork`): the sum of
    /// [`block_proof`](super::block_proof) over the header and its ancestors.
    pub chain_work: Work,
}

/// What changed on the active chain when headers were accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TipChange {
    /// The best tip before.
    pub old_tip: BlockHash,
    /// The best tip after.
    pub new_tip: BlockHash,
    /// Height of the last header the old and new active chains share.
    pub fork_height: u32,
    /// Old active headers above `fork_height`, tip first: empty when the tip was only extended.
    /// The reorg depth is its length.
    pub disconnected: Vec<BlockHash>,
    /// New active headers above `fork_height`, in height order (the new tip last).
    pub connected: Vec<HeaderEntry>,
}

/// The status of a chain tip, as Core's `getchaintips`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TipStatus {
    /// The tip of the active (most-work) chain: `"active"`.
    Active,
    /// A branch that was once the active chain and was reorganised away: `"valid-fork"` (Core
    /// shows this for fully validated blocks, which here means headers once connected).
    ValidFork,
    /// A branch of valid headers that never was the active chain: `"valid-headers"`.
    ValidHeaders,
}

impl TipStatus {
    /// Core's `getchaintips` status string.
    pub fn as_str(self) -> &'static str {
        match self {
            TipStatus::Active => "active",
            TipStatus::ValidFork => "valid-fork",
            TipStatus::ValidHeaders => "valid-headers",
        }
    }
}

impl std::fmt::Display for TipStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One chain tip (a header without children), as an entry of Core's `getchaintips`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainTip {
    /// Height of the tip.
    pub height: u32,
    /// Hash of the tip.
    pub hash: BlockHash,
    /// Headers between the tip and the active chain (0 for the active tip).
    pub branch_len: u32,
    /// Whether the branch is active, was active, or never was.
    pub status: TipStatus,
}

/// The rejection of a header in a batch given to [`HeaderTree::accept`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("header {index} of the batch was rejected: {error}")]
pub struct AcceptError {
    /// Index in the batch of the rejected header; the headers before it were accepted, the ones
    /// after it were not looked at.
    pub index: usize,
    /// Why it was rejected.
    pub error: HeaderError,
    /// How the headers accepted before it moved the best tip, if they did.
    pub tip_change: Option<TipChange>,
}

/// All known headers: the active (most-work) chain and its forks, from genesis (or a trusted
/// start) up.
///
/// Storage has two tiers (see the [module docs](super#memory)):
/// - the recent part: fixed-size nodes addressed by `u32` ids in one `Vec` (a dropped fork
///   header's slot is reused), a hash → id map, and the active chain above the archive as a
///   `Vec` of ids indexed by height. Every fork header and the last
///   [`recent_headers`](Self::set_recent_headers) active headers are here;
/// - the archive: the active headers below that, as bare 80-byte headers with a height index.
///
/// Headers move to the archive in batches as the tip advances, and back to nodes if a reorg
/// ever forks below the archive's top. Neither move is visible through the API.
pub struct HeaderTree {
    params: ChainParams,
    nodes: Vec<Node>,
    free: Vec<u32>,
    index: HashMap<BlockHash, u32, BuildHasherDefault<FoldHasher>>,
    /// The deep active chain, from `base_height` up to `archive.end()`.
    archive: Archive,
    /// `active[h - archive.end()]` is the id of the active header at height `h`: never empty
    /// (the tip is always a node).
    active: Vec<u32>,
    /// Active headers kept as nodes above the archive (at least this many, at most this plus
    /// a batch).
    recent: u32,
    /// Height of the tree's first header (0 = genesis).
    base_height: u32,
    /// Arrival order, to drop the newest of equal-work fork branches first.
    next_seq: u32,
}

struct Node {
    entry: HeaderEntry,
    parent: u32,
    children: u32,
    seq: u32,
    flags: u8,
}

/// Tip movements during one `accept` call, folded into one [`TipChange`].
struct Batch {
    old_tip: BlockHash,
    /// Lowest fork height of any tip switch so far: active heights at or below it are unchanged.
    low: u32,
    /// Original active hashes above `low`, tip first.
    disconnected: Vec<BlockHash>,
}

impl std::fmt::Debug for HeaderTree {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeaderTree")
            .field("network", &self.params.network)
            .field("tip", &self.tip().hash)
            .field("height", &self.height())
            .field("headers", &self.len())
            .field("fork_headers", &self.fork_header_count())
            .field("archived", &self.archive.len())
            .finish()
    }
}

impl HeaderTree {
    /// A tree holding only the network's genesis header.
    pub fn new(params: ChainParams) -> HeaderTree {
        let genesis = params.genesis;
        Self::trusted(
            params,
            0,
            Work::from_le_bytes([0; 32]),
            genesis,
            std::iter::empty(),
        )
        .expect("a lone genesis header always builds")
    }

    /// Rebuild from stored active-chain headers, in height order starting at height 1 (genesis
    /// is implied). Only linkage is checked (each header's `prev_blockhash` is the previous
    /// header's hash): this is for our own storage, which held validated headers, and is fast
    /// (one hash per header).
    ///
    /// # Errors
    /// [`HeaderError::UnknownParent`] for the first header that does not link.
    pub fn from_active_chain(
        params: ChainParams,
        headers: impl IntoIterator<Item = Header>,
    ) -> Result<HeaderTree, HeaderError> {
        let genesis = params.genesis;
        Self::trusted(params, 0, Work::from_le_bytes([0; 32]), genesis, headers)
    }

    /// A tree that starts at a trusted header instead of genesis (a checkpoint, or a window of
    /// real headers in tests): `first` is at `start_height`, `rest` must link to it in order
    /// (linkage only, as [`from_active_chain`](Self::from_active_chain)), and `chain_work_below`
    /// is the total work of the headers below `start_height`.
    ///
    /// Nothing below `start_height` is known, so a later header whose rules read an ancestor
    /// below it (the previous 11 for the median time past, the period's first header for a
    /// retarget, the testnet walk-back) is rejected with [`HeaderError::MissingAncestor`]: give
    /// at least 11 trusted headers, and the current period's first one. The
    /// [locator](Self::locator) ends at `first`, and `headers_after` starts after it.
    ///
    /// # Errors
    /// [`HeaderError::UnknownParent`] for the first header of `rest` that does not link.
    ///
    /// # Panics
    /// If `start_height > i32::MAX` (Core's heights are `int`; this keeps `height + 1` from
    /// overflowing).
    pub fn with_trusted_start(
        params: ChainParams,
        start_height: u32,
        chain_work_below: Work,
        first: Header,
        rest: impl IntoIterator<Item = Header>,
    ) -> Result<HeaderTree, HeaderError> {
        assert!(
            start_height <= i32::MAX as u32,
            "start height above i32::MAX"
        );
        Self::trusted(params, start_height, chain_work_below, first, rest)
    }

    fn trusted(
        params: ChainParams,
        base_height: u32,
        work_below: Work,
        first: Header,
        rest: impl IntoIterator<Item = Header>,
    ) -> Result<HeaderTree, HeaderError> {
        // Everything goes to the archive first (one hash per header, no node), then the top
        // `recent` headers come back as nodes.
        let mut archive = Archive::new(base_height);
        let mut work = add_work(work_below, block_proof(first.bits));
        let mut top = first.block_hash();
        archive.push(first, top, work);
        for header in rest {
            let hash = header.block_hash();
            if header.prev_blockhash != top {
                return Err(HeaderError::UnknownParent {
                    hash,
                    prev: header.prev_blockhash,
                });
            }
            if archive.end() > i32::MAX as u32 {
                return Err(HeaderError::HeightTooLarge { hash });
            }
            work = add_work(work, block_proof(header.bits));
            archive.push(header, hash, work);
            top = hash;
        }
        let mut tree = HeaderTree {
            params,
            nodes: Vec::new(),
            free: Vec::new(),
            index: HashMap::default(),
            archive,
            active: Vec::new(),
            recent: DEFAULT_RECENT_HEADERS,
            base_height,
            next_seq: 0,
        };
        let keep = tree
            .archive
            .end()
            .saturating_sub(tree.recent)
            .max(base_height);
        tree.thaw(keep);
        Ok(tree)
    }

    /// Keep at least `n` (at least 1) active headers as full nodes above the archive; deeper
    /// active headers are archived in batches of [`DEFAULT_RECENT_HEADERS`]`/2`. Default
    /// [`DEFAULT_RECENT_HEADERS`] (4032: two difficulty periods, so checking a new tip's
    /// difficulty and time reads only nodes). Only memory and speed depend on it; tests set it
    /// low to exercise the archive.
    pub fn set_recent_headers(&mut self, n: u32) {
        // Capped so that `recent` plus a batch never overflows; more than 2^31 headers never
        // exist (heights are at most `i32::MAX`).
        self.recent = n.clamp(1, i32::MAX as u32);
        self.freeze();
    }

    /// The parameters the tree validates with.
    pub fn params(&self) -> &ChainParams {
        &self.params
    }

    /// The best (most-work) header.
    pub fn tip(&self) -> &HeaderEntry {
        &self.nodes[self.tip_id() as usize].entry
    }

    /// Height of the best header.
    pub fn height(&self) -> u32 {
        self.tip().height
    }

    /// Height of the tree's first header: 0, or the trusted start.
    pub fn start_height(&self) -> u32 {
        self.base_height
    }

    /// The header with this hash, on any branch (a copy: deep active headers are stored
    /// compactly and their entry is rebuilt, its chain work summed from the nearest stored
    /// mark).
    pub fn get(&self, hash: &BlockHash) -> Option<HeaderEntry> {
        self.lookup(hash).map(|id| self.entry(id))
    }

    /// The active-chain header at `height` (a copy, as [`get`](Self::get)).
    pub fn at_height(&self, height: u32) -> Option<HeaderEntry> {
        self.active_id_at(height).map(|id| self.entry(id))
    }

    /// The bare active-chain header at `height`, without its hash or work: the cheap read for
    /// serving `headers`.
    pub fn header_at(&self, height: u32) -> Option<Header> {
        self.active_id_at(height).map(|id| *self.hdr(id))
    }

    /// The hash of the active-chain header at `height`.
    pub fn hash_at(&self, height: u32) -> Option<BlockHash> {
        self.active_id_at(height).map(|id| self.hash_of(id))
    }

    /// Height of the header with this hash, on any branch.
    pub fn height_of_hash(&self, hash: &BlockHash) -> Option<u32> {
        self.lookup(hash).map(|id| self.height_of(id))
    }

    /// Whether a header with this hash is known, on any branch.
    pub fn contains(&self, hash: &BlockHash) -> bool {
        self.lookup(hash).is_some()
    }

    /// Whether the header with this hash is on the active chain.
    pub fn is_active(&self, hash: &BlockHash) -> bool {
        self.lookup(hash).is_some_and(|id| self.is_active_id(id))
    }

    /// Number of headers held, all branches.
    pub fn len(&self) -> usize {
        self.nodes.len() - self.free.len() + self.archive.len() as usize
    }

    /// Number of active headers stored compactly (below the recent window).
    pub fn archived_len(&self) -> usize {
        self.archive.len() as usize
    }

    /// Always false: a tree holds at least its first header.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Number of headers held off the active chain (bounded by
    /// [`ChainParams::max_fork_headers`]).
    pub fn fork_header_count(&self) -> usize {
        self.nodes.len() - self.free.len() - self.active.len()
    }

    /// Whether the best chain has at least [`ChainParams::min_chain_work`] (Core's
    /// `nMinimumChainWork` check before trusting a headers chain).
    pub fn is_synced_enough(&self) -> bool {
        self.tip().chain_work >= self.params.min_chain_work
    }

    /// Median time past of the header `hash`: the median timestamp (Unix seconds) of it and its
    /// 10 ancestors, fewer near the tree's start (Core's `CBlockIndex::GetMedianTimePast`). A
    /// new child must be later than this.
    pub fn median_time_past(&self, hash: &BlockHash) -> Option<u32> {
        let id = self.lookup(hash)?;
        Some(self.mtp(id).0)
    }

    /// Core's `CChain::GetLocator` (`LocatorEntries`, `src/chain.cpp`): active hashes from the
    /// tip down, the 12 highest one by one (Core doubles the step only once it holds more than
    /// 10), then with gaps of 2, 4, 8, …, ending with genesis (or the trusted start).
    pub fn locator(&self) -> Vec<BlockHash> {
        let mut out = Vec::with_capacity(32);
        let mut height = self.height();
        let mut step = 1u32;
        loop {
            out.push(self.hash_of(self.active_id_at(height).expect("active")));
            if height == self.base_height {
                break;
            }
            height = height.saturating_sub(step).max(self.base_height);
            if out.len() > 10 {
                step = step.saturating_mul(2);
            }
        }
        out
    }

    /// The answer to `getheaders`, as Core's `net_processing` (`ProcessMessage` for
    /// `GETHEADERS`, `FindForkInGlobalIndex`): take the first locator hash that is on the active
    /// chain (genesis, or the trusted start, if none is), then return the active headers after
    /// it, at most `max` (capped at [`MAX_HEADERS_RESULTS`] = 2000), ending early after `stop`
    /// if it is met (all-zero `stop` = no stop).
    ///
    /// An empty locator asks for `stop` alone: it is returned if it is on the active chain.
    pub fn headers_after(&self, locator: &[BlockHash], stop: BlockHash, max: usize) -> Vec<Header> {
        let max = max.min(MAX_HEADERS_RESULTS);
        if locator.is_empty() {
            return match self.lookup(&stop) {
                Some(id) if max > 0 && self.is_active_id(id) => vec![*self.hdr(id)],
                _ => Vec::new(),
            };
        }
        let tip_height = self.height();
        let fork = locator
            .iter()
            .find_map(|hash| {
                let id = self.lookup(hash)?;
                if self.is_active_id(id) {
                    return Some(self.height_of(id));
                }
                // Core: a locator entry descending from our tip means the peer is ahead.
                let mut cursor = Cursor::new(self, id);
                (cursor.ancestor(tip_height) == Some(self.tip_id())).then_some(tip_height)
            })
            .unwrap_or(self.base_height);
        let mut out = Vec::new();
        let mut height = fork;
        while out.len() < max && height < tip_height {
            height += 1;
            let header = self.header_at(height).expect("active");
            out.push(header);
            if stop != BlockHash::from_byte_array([0; 32]) && self.hash_at(height) == Some(stop) {
                break;
            }
        }
        out
    }

    /// Every chain tip (header without children) and the active tip, as Core's `getchaintips`:
    /// highest first (then by hash).
    pub fn tips(&self) -> Vec<ChainTip> {
        let tip_id = self.tip_id();
        let mut memo: HashMap<u32, u32, BuildHasherDefault<FoldHasher>> = HashMap::default();
        let mut out = Vec::new();
        for (id, node) in self.nodes.iter().enumerate() {
            let id = id as u32;
            if node.flags & DEAD != 0 || (node.children != 0 && id != tip_id) {
                continue;
            }
            let height = node.entry.height;
            let (branch_len, status) = if id == tip_id {
                (0, TipStatus::Active)
            } else if self.is_active_id(id) {
                continue;
            } else {
                let fork = self.fork_height(id, &mut memo);
                let status = if node.flags & WAS_ACTIVE != 0 {
                    TipStatus::ValidFork
                } else {
                    TipStatus::ValidHeaders
                };
                (height - fork, status)
            };
            out.push(ChainTip {
                height,
                hash: node.entry.hash,
                branch_len,
                status,
            });
        }
        out.sort_by(|a, b| b.height.cmp(&a.height).then(a.hash.cmp(&b.hash)));
        out
    }

    /// Validate and add `headers` in order. Each must connect to a known header (any branch) or
    /// to an earlier one in the batch; a header already known is skipped (accepting it again is
    /// `Ok` and changes nothing). `now` is the current time, Unix seconds, for the 2-hour future
    /// rule.
    ///
    /// The best tip becomes the header with the most chain work; on equal work the first seen
    /// stays. Forks are kept, within [`ChainParams::max_fork_headers`] (see the
    /// [module docs](super#low-work-flood-bound)).
    ///
    /// Returns how the best tip moved over the whole batch (`None` if it did not).
    ///
    /// # Errors
    /// Stops at the first invalid header: [`AcceptError`] gives its index, the
    /// [`HeaderError`], and the tip change made by the headers accepted before it.
    // The error is ~200 bytes and returned at most once per batch of up to 2000 headers; boxing
    // it would cost every caller a deref for no measurable gain.
    #[allow(clippy::result_large_err)]
    pub fn accept(
        &mut self,
        headers: &[Header],
        now: u32,
    ) -> Result<Option<TipChange>, AcceptError> {
        let mut batch = Batch {
            old_tip: self.tip().hash,
            low: self.height(),
            disconnected: Vec::new(),
        };
        for (index, header) in headers.iter().enumerate() {
            if let Err(error) = self.accept_one(header, now, &mut batch) {
                let tip_change = self.finish(batch);
                self.freeze();
                return Err(AcceptError {
                    index,
                    error,
                    tip_change,
                });
            }
        }
        let change = self.finish(batch);
        self.freeze();
        Ok(change)
    }

    fn accept_one(
        &mut self,
        header: &Header,
        now: u32,
        batch: &mut Batch,
    ) -> Result<(), HeaderError> {
        let hash = header.block_hash();
        if self.contains(&hash) {
            return Ok(());
        }
        let Some(parent) = self.lookup(&header.prev_blockhash) else {
            return Err(HeaderError::UnknownParent {
                hash,
                prev: header.prev_blockhash,
            });
        };
        if self.height_of(parent) >= i32::MAX as u32 {
            return Err(HeaderError::HeightTooLarge { hash });
        }
        self.check(header, hash, parent, now)?;
        let (height, work) = (self.height_of(parent) + 1, self.work_of(parent));
        let id = self.insert(*header, hash, parent, height, work);
        // Strictly more work: on a tie the first-seen tip stays (Core's nSequenceId rule).
        if self.nodes[id as usize].entry.chain_work > self.tip().chain_work {
            self.switch_tip(id, batch);
        }
        if self.fork_header_count() > self.params.max_fork_headers {
            self.prune();
        }
        Ok(())
    }

    /// Core's `ContextualCheckBlockHeader` (`src/validation.cpp`) and `CheckBlockHeader`'s
    /// proof-of-work check, for `header` on top of `parent`.
    ///
    /// Order: Core's contextual order (bits, time vs MTP, BIP94 timewarp, future time, version),
    /// then the hash against the target. Core checks the hash first; every check here is cheap
    /// and all of them must pass, so only the reported error differs, and checking the fields
    /// first names the field that is wrong (a corrupted time reads as a time error, not as the
    /// hash mismatch the corruption also causes).
    fn check(
        &self,
        header: &Header,
        hash: BlockHash,
        parent: u32,
        now: u32,
    ) -> Result<(), HeaderError> {
        let height = self.height_of(parent) + 1;
        let parent_time = self.hdr(parent).time;
        let missing = |needed: u32| HeaderError::MissingAncestor {
            hash,
            height,
            needed,
        };

        let mut cursor = Cursor::new(self, parent);
        let expected = next_work_required(&self.params, height, header.time, |h| {
            cursor.ancestor(h).map(|id| AncestorInfo::of(self.hdr(id)))
        })
        .map_err(|m| missing(m.height))?;
        if header.bits != expected {
            return Err(HeaderError::BadDifficulty {
                hash,
                height,
                expected,
                actual: header.bits,
            });
        }

        let (median_time_past, below_start) = self.mtp(parent);
        if let Some(needed) = below_start {
            return Err(missing(needed));
        }
        if header.time <= median_time_past {
            return Err(HeaderError::TimeTooOld {
                hash,
                time: header.time,
                median_time_past,
            });
        }

        if self.params.enforce_bip94 && height.is_multiple_of(adjustment_interval(&self.params)) {
            let min = parent_time.saturating_sub(MAX_TIMEWARP);
            if header.time < min {
                return Err(HeaderError::TimeWarp {
                    hash,
                    time: header.time,
                    min,
                });
            }
        }

        let max = now.saturating_add(MAX_FUTURE_BLOCK_TIME);
        if header.time > max {
            return Err(HeaderError::TimeTooNew {
                hash,
                time: header.time,
                max,
            });
        }

        // BIP34/66/65: versions below 2/3/4 are invalid from the activation heights (Core's
        // `DeploymentActiveAfter(pindexPrev, …)`: the new header's height ≥ activation height).
        let c = &self.params.consensus;
        let version = header.version.to_consensus();
        if (version < 2 && height >= c.bip34_height)
            || (version < 3 && height >= c.bip66_height)
            || (version < 4 && height >= c.bip65_height)
        {
            return Err(HeaderError::BadVersion {
                hash,
                version,
                height,
            });
        }

        if !check_proof_of_work(&self.params, hash, header.bits) {
            return Err(HeaderError::BadProofOfWork { hash });
        }
        Ok(())
    }

    /// Median time past of node `id`, over the ancestors available, and the height of the first
    /// one it needed but the tree does not have (below a trusted start; never below genesis).
    fn mtp(&self, id: u32) -> (u32, Option<u32>) {
        let mut times = [0u32; MEDIAN_TIME_SPAN];
        let mut n = 0;
        let mut cur = id;
        let mut missing = None;
        loop {
            times[n] = self.hdr(cur).time;
            n += 1;
            if n == MEDIAN_TIME_SPAN {
                break;
            }
            let parent = self.parent_of(cur);
            if parent == NONE {
                missing = self.height_of(cur).checked_sub(1);
                break;
            }
            cur = parent;
        }
        let slice = &mut times[..n];
        slice.sort_unstable();
        (slice[n / 2], missing)
    }

    fn insert(
        &mut self,
        header: Header,
        hash: BlockHash,
        parent: u32,
        height: u32,
        work_below: Work,
    ) -> u32 {
        let chain_work = add_work(work_below, block_proof(header.bits));
        self.insert_entry(
            HeaderEntry {
                header,
                hash,
                height,
                chain_work,
            },
            parent,
        )
    }

    /// Store `entry` as a node under `parent` (a node id, an archived id, or `NONE`).
    fn insert_entry(&mut self, entry: HeaderEntry, parent: u32) -> u32 {
        let hash = entry.hash;
        let node = Node {
            entry,
            parent,
            children: 0,
            seq: self.next_seq,
            flags: 0,
        };
        // Wrapping only blurs the newest-first tie-break among equal-work forks after 2^32
        // headers.
        self.next_seq = self.next_seq.wrapping_add(1);
        let id = match self.free.pop() {
            Some(id) => {
                self.nodes[id as usize] = node;
                id
            }
            None => {
                let id = u32::try_from(self.nodes.len()).expect("fewer than 2^32 headers");
                self.nodes.push(node);
                id
            }
        };
        if parent != NONE && parent & ARCHIVED == 0 {
            self.nodes[parent as usize].children += 1;
        }
        self.index.insert(hash, id);
        id
    }

    /// Make `new_tip` the active tip: disconnect the active headers above its fork point and
    /// connect its branch.
    fn switch_tip(&mut self, new_tip: u32, batch: &mut Batch) {
        let mut path = Vec::new();
        let mut cur = new_tip;
        // The tree's first header is always active, so this ends.
        while !self.is_active_id(cur) {
            path.push(cur);
            cur = self.parent_of(cur);
        }
        let fork = self.height_of(cur);
        // A fork below the archive's top: its active headers above the fork become nodes again.
        self.thaw(fork + 1);
        // Heights above `batch.low` were already replaced in this batch; below it they are the
        // original chain, which is what the caller sees disconnected.
        while batch.low > fork {
            let id = self.active_id_at(batch.low).expect("active");
            batch.disconnected.push(self.hash_of(id));
            batch.low -= 1;
        }
        let end = self.archive.end();
        for id in self.active.drain((fork + 1 - end) as usize..) {
            self.nodes[id as usize].flags |= WAS_ACTIVE;
        }
        self.active.extend(path.iter().rev());
    }

    fn finish(&self, mut batch: Batch) -> Option<TipChange> {
        let tip = self.tip();
        if tip.hash == batch.old_tip {
            return None;
        }
        // A batch can reorg away and back: original headers that are active again are not a
        // change.
        while let Some(last) = batch.disconnected.last() {
            match self.at_height(batch.low + 1) {
                Some(entry) if entry.hash == *last => {
                    batch.disconnected.pop();
                    batch.low += 1;
                }
                _ => break,
            }
        }
        let connected = (batch.low + 1..=tip.height)
            .map(|h| self.at_height(h).expect("active"))
            .collect();
        Some(TipChange {
            old_tip: batch.old_tip,
            new_tip: tip.hash,
            fork_height: batch.low,
            disconnected: batch.disconnected,
            connected,
        })
    }

    /// Drop fork headers until at most 7/8 of `max_fork_headers` remain: repeatedly the fork
    /// leaf with the least chain work (the newest among equals), so whole low-work branches go
    /// first, from their tips down. The active chain has no fork leaves and is never touched.
    /// Pruning below the bound (hysteresis) makes the O(n log n) pass run at most once per
    /// `max/8` new fork headers instead of once per header.
    fn prune(&mut self) {
        let max = self.params.max_fork_headers;
        let target = max - max / 8;
        let mut heap = BinaryHeap::new();
        for (id, node) in self.nodes.iter().enumerate() {
            let id = id as u32;
            if node.flags & DEAD == 0 && node.children == 0 && !self.is_active_id(id) {
                heap.push(Reverse((node.entry.chain_work, Reverse(node.seq), id)));
            }
        }
        while self.fork_header_count() > target {
            let Some(Reverse((_, _, id))) = heap.pop() else {
                break;
            };
            let (hash, parent) = {
                let node = &mut self.nodes[id as usize];
                node.flags |= DEAD;
                (node.entry.hash, node.parent)
            };
            self.index.remove(&hash);
            self.free.push(id);
            // Fork nodes always have a parent: the tree's first header is active. An archived
            // parent is active and keeps no child count.
            if parent & ARCHIVED != 0 {
                continue;
            }
            let p = &mut self.nodes[parent as usize];
            p.children -= 1;
            if p.children == 0 && !self.is_active_id(parent) {
                let p = &self.nodes[parent as usize];
                heap.push(Reverse((p.entry.chain_work, Reverse(p.seq), parent)));
            }
        }
    }

    /// Height of the last active ancestor of fork node `id`, memoised over the fork nodes seen.
    fn fork_height(
        &self,
        id: u32,
        memo: &mut HashMap<u32, u32, BuildHasherDefault<FoldHasher>>,
    ) -> u32 {
        let mut path = Vec::new();
        let mut cur = id;
        let fork = loop {
            if self.is_active_id(cur) {
                break self.height_of(cur);
            }
            if let Some(&h) = memo.get(&cur) {
                break h;
            }
            path.push(cur);
            cur = self.parent_of(cur);
        };
        for id in path {
            memo.insert(id, fork);
        }
        fork
    }

    fn tip_id(&self) -> u32 {
        *self.active.last().expect("the tip is always a node")
    }

    fn active_id_at(&self, height: u32) -> Option<u32> {
        if self.archive.holds(height) {
            return Some(ARCHIVED | height);
        }
        let offset = height.checked_sub(self.archive.end())?;
        self.active.get(offset as usize).copied()
    }

    fn is_active_id(&self, id: u32) -> bool {
        id & ARCHIVED != 0 || self.active_id_at(self.nodes[id as usize].entry.height) == Some(id)
    }

    /// The id of the header with this hash, node or archived.
    fn lookup(&self, hash: &BlockHash) -> Option<u32> {
        match self.index.get(hash) {
            Some(&id) => Some(id),
            None => self.archive.find(hash).map(|h| ARCHIVED | h),
        }
    }

    fn hdr(&self, id: u32) -> &Header {
        if id & ARCHIVED != 0 {
            self.archive.header(id & !ARCHIVED)
        } else {
            &self.nodes[id as usize].entry.header
        }
    }

    fn height_of(&self, id: u32) -> u32 {
        if id & ARCHIVED != 0 {
            id & !ARCHIVED
        } else {
            self.nodes[id as usize].entry.height
        }
    }

    fn hash_of(&self, id: u32) -> BlockHash {
        if id & ARCHIVED != 0 {
            self.archive.hash(id & !ARCHIVED)
        } else {
            self.nodes[id as usize].entry.hash
        }
    }

    fn work_of(&self, id: u32) -> Work {
        if id & ARCHIVED != 0 {
            self.archive.work(id & !ARCHIVED)
        } else {
            self.nodes[id as usize].entry.chain_work
        }
    }

    fn parent_of(&self, id: u32) -> u32 {
        if id & ARCHIVED != 0 {
            let height = id & !ARCHIVED;
            if height == self.base_height {
                NONE
            } else {
                ARCHIVED | (height - 1)
            }
        } else {
            self.nodes[id as usize].parent
        }
    }

    fn entry(&self, id: u32) -> HeaderEntry {
        if id & ARCHIVED != 0 {
            let height = id & !ARCHIVED;
            HeaderEntry {
                header: *self.archive.header(height),
                hash: self.archive.hash(height),
                height,
                chain_work: self.archive.work(height),
            }
        } else {
            self.nodes[id as usize].entry.clone()
        }
    }

    /// Archive the lowest active nodes once more than `recent` plus a batch of them are held,
    /// leaving `recent`. Fork nodes whose parent was archived now point at the archived id.
    fn freeze(&mut self) {
        let batch = (DEFAULT_RECENT_HEADERS / 2).min(self.recent);
        let held = self.active.len() as u32;
        if held <= self.recent.saturating_add(batch) {
            return;
        }
        let count = (held - self.recent) as usize;
        let mut moved = HashMap::<u32, u32, BuildHasherDefault<FoldHasher>>::default();
        for id in self.active.drain(..count) {
            let node = &mut self.nodes[id as usize];
            node.flags |= DEAD;
            let entry = &node.entry;
            self.archive
                .push(entry.header, entry.hash, entry.chain_work);
            self.index.remove(&entry.hash);
            moved.insert(id, entry.height);
            self.free.push(id);
        }
        for node in &mut self.nodes {
            if node.flags & DEAD == 0 {
                if let Some(&height) = moved.get(&node.parent) {
                    node.parent = ARCHIVED | height;
                }
            }
        }
    }

    /// Bring the archived headers at `height` and above back as active nodes (a reorg forks
    /// below the archive's top, or the tree is being built). Fork nodes hanging off them are
    /// re-pointed at the new nodes.
    fn thaw(&mut self, height: u32) {
        let thawed = self.archive.split_off(height);
        if thawed.is_empty() {
            return;
        }
        let first_height = self.archive.end();
        let mut parent = if first_height == self.base_height {
            NONE
        } else {
            ARCHIVED | (first_height - 1)
        };
        let mut ids = Vec::with_capacity(thawed.len());
        let mut by_height = HashMap::<u32, u32, BuildHasherDefault<FoldHasher>>::default();
        for (i, (header, hash, chain_work)) in thawed.into_iter().enumerate() {
            let height = first_height + i as u32;
            let id = self.insert_entry(
                HeaderEntry {
                    header,
                    hash,
                    height,
                    chain_work,
                },
                parent,
            );
            by_height.insert(ARCHIVED | height, id);
            ids.push(id);
            parent = id;
        }
        // Nodes whose parent was one of the thawed headers: the old active nodes' lowest and
        // any fork off them.
        for i in 0..self.nodes.len() {
            let node = &self.nodes[i];
            if node.flags & DEAD != 0 {
                continue;
            }
            if let Some(&new_parent) = by_height.get(&node.parent) {
                self.nodes[i].parent = new_parent;
                self.nodes[new_parent as usize].children += 1;
            }
        }
        ids.append(&mut self.active);
        self.active = ids;
    }
}

/// Ancestor lookup from one node, remembering where it got to so that the descending lookups of
/// the difficulty walk-back cost one step each, also on a fork.
struct Cursor<'a> {
    tree: &'a HeaderTree,
    start: u32,
    cur: u32,
}

impl<'a> Cursor<'a> {
    fn new(tree: &'a HeaderTree, start: u32) -> Cursor<'a> {
        Cursor {
            tree,
            start,
            cur: start,
        }
    }

    /// The id of the ancestor at `height` (the start itself at its own height).
    fn ancestor(&mut self, height: u32) -> Option<u32> {
        let tree = self.tree;
        if tree.height_of(self.cur) < height {
            self.cur = self.start;
        }
        loop {
            let h = tree.height_of(self.cur);
            if h == height {
                return Some(self.cur);
            }
            if h < height {
                return None;
            }
            if tree.is_active_id(self.cur) {
                let id = tree.active_id_at(height)?;
                self.cur = id;
                return Some(id);
            }
            let parent = tree.parent_of(self.cur);
            if parent == NONE {
                return None;
            }
            self.cur = parent;
        }
    }
}

/// A fixed (unkeyed) hasher for the hash → id map: the keys are block hashes, already uniform,
/// and an attacker can only choose them by doing proof of work for each header (and fork
/// headers are bounded), so a keyed SipHash buys nothing and its random keys would make the tree
/// depend on randomness. Words are folded FxHash-style.
#[derive(Default)]
struct FoldHasher(u64);

impl Hasher for FoldHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(word))
                .wrapping_mul(0x517c_c1b7_2722_0a95);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use bitcoin::block::Version;
    use bitcoin::hashes::Hash as _;
    use bitcoin::{CompactTarget, Network, TxMerkleNode};

    use super::*;

    const NOW: u32 = 2_000_000_000;

    fn regtest(max_fork: usize) -> HeaderTree {
        let mut p = ChainParams::new(Network::Regtest);
        p.max_fork_headers = max_fork;
        HeaderTree::new(p)
    }

    /// Mine a regtest header on `parent` (about two tries per header at `207fffff`).
    fn mine(tree: &HeaderTree, parent: &BlockHash, salt: u32) -> Header {
        let p = tree.get(parent).expect("parent");
        let mut h = Header {
            version: Version::from_consensus(0x2000_0000),
            prev_blockhash: *parent,
            merkle_root: TxMerkleNode::from_byte_array([salt as u8; 32]),
            time: p.header.time + 600 + salt,
            bits: CompactTarget::from_consensus(0x207f_ffff),
            nonce: 0,
        };
        while !check_proof_of_work(tree.params(), h.block_hash(), h.bits) {
            h.nonce += 1;
        }
        h
    }

    fn extend(tree: &mut HeaderTree, from: BlockHash, n: usize, salt: u32) -> Vec<BlockHash> {
        let mut hashes = Vec::new();
        let mut prev = from;
        for _ in 0..n {
            let h = mine(tree, &prev, salt);
            tree.accept(&[h], NOW).expect("valid");
            prev = h.block_hash();
            hashes.push(prev);
        }
        hashes
    }

    #[test]
    fn reorg_away_and_back_in_one_batch_is_only_an_extension() {
        let mut tree = regtest(1000);
        let genesis = tree.tip().hash;
        let a = extend(&mut tree, genesis, 5, 0);
        // Build the batch on a scratch copy so every header's parent is known while mining.
        let mut scratch = HeaderTree::from_active_chain(
            tree.params().clone(),
            (1..=5).map(|h| tree.at_height(h).unwrap().header),
        )
        .unwrap();
        let mut batch = Vec::new();
        let mut prev = a[1]; // fork at height 2
        for _ in 0..4 {
            let h = mine(&scratch, &prev, 7);
            scratch.accept(&[h], NOW).unwrap();
            prev = h.block_hash();
            batch.push(h);
        }
        // B3..B6 reorgs at B6; then A6, A7 take the original branch back.
        let mut prev = a[4];
        for _ in 0..2 {
            let h = mine(&scratch, &prev, 0);
            scratch.accept(&[h], NOW).unwrap();
            prev = h.block_hash();
            batch.push(h);
        }
        let change = tree.accept(&batch, NOW).unwrap().unwrap();
        assert_eq!(change.old_tip, a[4]);
        assert_eq!(change.fork_height, 5);
        assert!(change.disconnected.is_empty());
        assert_eq!(change.connected.len(), 2);
        assert_eq!(change.connected[1].hash, tree.tip().hash);
        assert_eq!(tree.height(), 7);
    }

    #[test]
    fn dropped_slots_are_reused() {
        let mut tree = regtest(16);
        let genesis = tree.tip().hash;
        let main = extend(&mut tree, genesis, 40, 0);
        for i in 0..20u32 {
            // Branches of 3 off height 10..30: all below the tip's work.
            extend(&mut tree, main[(10 + i) as usize], 3, 1 + i);
            assert!(tree.fork_header_count() <= 16);
        }
        assert!(tree.nodes.len() <= 41 + 17, "slots {}", tree.nodes.len());
        assert_eq!(tree.len(), tree.nodes.len() - tree.free.len());
    }

    #[test]
    fn node_stays_small() {
        // The module docs promise 176 bytes a recent node.
        assert!(
            std::mem::size_of::<Node>() <= 176,
            "{}",
            std::mem::size_of::<Node>()
        );
        assert_eq!(std::mem::size_of::<HeaderEntry>(), 160);
    }

    /// Every observable answer of two trees given the same headers, one archiving almost
    /// everything (`recent` 3) and one archiving nothing, must be equal.
    fn assert_same(a: &HeaderTree, b: &HeaderTree, known: &[BlockHash]) {
        assert_eq!(a.tip(), b.tip());
        assert_eq!(a.len(), b.len());
        assert_eq!(a.fork_header_count(), b.fork_header_count());
        assert_eq!(a.tips(), b.tips());
        assert_eq!(a.locator(), b.locator());
        for hash in known {
            assert_eq!(a.get(hash), b.get(hash), "{hash}");
            assert_eq!(a.is_active(hash), b.is_active(hash));
            assert_eq!(a.median_time_past(hash), b.median_time_past(hash));
            let locator = [*hash];
            let zero = BlockHash::from_byte_array([0; 32]);
            assert_eq!(
                a.headers_after(&locator, zero, 7),
                b.headers_after(&locator, zero, 7)
            );
            assert_eq!(
                a.headers_after(&[], *hash, 1),
                b.headers_after(&[], *hash, 1)
            );
        }
        for h in 0..=a.height() + 1 {
            assert_eq!(a.at_height(h), b.at_height(h));
            assert_eq!(a.hash_at(h), b.hash_at(h));
        }
    }

    #[test]
    fn archiving_changes_no_answer() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(13);
        let mut small = regtest(64);
        small.set_recent_headers(3);
        let mut full = regtest(64);
        full.set_recent_headers(u32::MAX / 2);
        let mut known = vec![full.tip().hash];
        for round in 0..60u32 {
            // Mostly extend the tip; sometimes fork from a random known header (deep forks
            // reach into the archive and, with more work, reorg below its top).
            let from = if rng.gen_bool(0.7) {
                full.tip().hash
            } else {
                known[rng.gen_range(0..known.len())]
            };
            let n = rng.gen_range(1..6);
            let mut batch = Vec::new();
            let mut prev = from;
            for _ in 0..n {
                let h = mine(&full, &prev, round * 8 + batch.len() as u32 + 1);
                let a = small.accept(&[h], NOW);
                let b = full.accept(&[h], NOW);
                assert_eq!(a, b, "round {round}");
                prev = h.block_hash();
                batch.push(prev);
            }
            known.extend(batch);
            known.retain(|h| full.contains(h));
            assert!(small.archived_len() > 0 || full.height() < 8);
            assert_same(&small, &full, &known);
        }
        assert!(small.archived_len() > 20, "{}", small.archived_len());
    }

    #[test]
    fn a_window_larger_than_any_chain_archives_nothing() {
        let mut tree = regtest(1000);
        tree.set_recent_headers(u32::MAX);
        let genesis = tree.tip().hash;
        extend(&mut tree, genesis, 3, 0);
        assert_eq!(tree.archived_len(), 0);
        assert_eq!(tree.height(), 3);
    }

    #[test]
    fn no_header_goes_above_height_i32_max() {
        let mut source = regtest(1000);
        let genesis = source.tip().hash;
        let hashes = extend(&mut source, genesis, 4, 0);
        let headers: Vec<Header> = (0..=4).map(|h| source.header_at(h).unwrap()).collect();
        let start = i32::MAX as u32 - 1;
        let zero = Work::from_le_bytes([0; 32]);
        // Trusted headers up to i32::MAX are fine; one more is refused.
        let mut tree = HeaderTree::with_trusted_start(
            source.params().clone(),
            start,
            zero,
            headers[0],
            headers[1..2].iter().copied(),
        )
        .unwrap();
        tree.set_recent_headers(1);
        assert_eq!(tree.height(), i32::MAX as u32);
        assert_eq!(tree.hash_at(i32::MAX as u32), Some(hashes[0]));
        let err = tree.accept(&headers[2..3], NOW).unwrap_err();
        assert!(
            matches!(err.error, HeaderError::HeightTooLarge { .. }),
            "{err}"
        );
        let err = HeaderTree::with_trusted_start(
            source.params().clone(),
            start,
            zero,
            headers[0],
            headers[1..4].iter().copied(),
        )
        .unwrap_err();
        assert!(matches!(err, HeaderError::HeightTooLarge { .. }), "{err}");
    }

    #[test]
    fn reorg_below_the_archive_brings_headers_back() {
        let mut small = regtest(1000);
        small.set_recent_headers(4);
        let mut full = regtest(1000);
        let genesis = full.tip().hash;
        let main = extend(&mut full, genesis, 60, 0);
        for h in 1..=60 {
            small.accept(&[full.header_at(h).unwrap()], NOW).unwrap();
        }
        assert!(
            (53..=57).contains(&small.archived_len()),
            "{}",
            small.archived_len()
        );
        // A branch from height 5 that outgrows the main chain: the reorg forks 55 below the tip.
        let branch = extend(&mut full, main[4], 57, 99);
        let mut change = None;
        for hash in &branch {
            let h = full.get(hash).unwrap().header;
            if let Some(c) = small.accept(&[h], NOW).unwrap() {
                change.get_or_insert(c);
            }
        }
        let change = change.expect("reorg");
        assert_eq!(change.fork_height, 5);
        assert_eq!(change.disconnected.len(), 55);
        assert_eq!(change.disconnected[0], main[59]);
        assert_eq!(small.tip().hash, *branch.last().unwrap());
        let known: Vec<_> = main.iter().chain(&branch).copied().collect();
        assert_same(&small, &full, &known);
        // The old chain is a valid-fork tip; the archive again holds all but the recent few.
        assert!(small
            .tips()
            .iter()
            .any(|t| t.hash == main[59] && t.status == TipStatus::ValidFork));
        assert!(
            small.archived_len() >= 62 - 4 - 4,
            "{}",
            small.archived_len()
        );
    }

    #[test]
    fn rebuilt_from_storage_with_a_small_window_answers_as_before() {
        let mut full = regtest(1000);
        let genesis = full.tip().hash;
        let main = extend(&mut full, genesis, 50, 0);
        let rebuilt = HeaderTree::from_active_chain(
            full.params().clone(),
            (1..=50).map(|h| full.header_at(h).unwrap()),
        )
        .unwrap();
        assert_same(&rebuilt, &full, &main);
        let mut small = rebuilt;
        small.set_recent_headers(2);
        assert!(small.archived_len() >= 45);
        assert_same(&small, &full, &main);
        // A fork off an archived header is accepted and becomes a tip.
        let fork = extend(&mut full, main[9], 2, 5);
        for hash in &fork {
            small
                .accept(&[full.get(hash).unwrap().header], NOW)
                .unwrap();
        }
        let known: Vec<_> = main.iter().chain(&fork).copied().collect();
        assert_same(&small, &full, &known);
    }

    #[test]
    fn fold_hasher_spreads_words() {
        let mut a = FoldHasher::default();
        a.write(&[1; 32]);
        let mut b = FoldHasher::default();
        b.write(&[2; 32]);
        assert_ne!(a.finish(), b.finish());
    }
}
