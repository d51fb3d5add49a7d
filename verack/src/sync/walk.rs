//! Walks over the header tree that the tree itself does not offer: a locator from any header
//! and an ancestor at a height, for headers on forks as well as on the active chain.

use bitcoin::BlockHash;

use crate::chain::{HeaderEntry, HeaderTree};

/// Most fork headers walked back to find an ancestor: past this a question answers "unknown"
/// (an announcement then falls back to `inv`), so a peer pointing at a long fork costs bounded
/// work. A fork is at most [`ChainParams::max_fork_headers`](crate::chain::ChainParams) long.
pub(crate) const MAX_FORK_WALK: usize = 2016;

/// The fork headers from `hash` down to (not including) the active chain, tip first, and the
/// height of the active header they build on. `None` if `hash` is unknown, or the branch is
/// longer than `max_walk` or broken (a parent missing). Active headers are only looked up
/// (never read in full): a fork header is always a recent node, cheap to read.
fn branch(tree: &HeaderTree, hash: &BlockHash, max_walk: usize) -> Option<(Vec<HeaderEntry>, u32)> {
    let mut out = Vec::new();
    let mut cur = *hash;
    loop {
        if tree.is_active(&cur) {
            return Some((out, tree.height_of_hash(&cur)?));
        }
        if out.len() >= max_walk {
            return None;
        }
        let entry = tree.get(&cur)?;
        cur = entry.header.prev_blockhash;
        out.push(entry);
    }
}

/// The hash of the header at `height` on the chain ending at `hash`, walking at most
/// [`MAX_FORK_WALK`] fork headers (Core's `CBlockIndex::GetAncestor`). `None` if `hash` is
/// unknown, `height` is above it or below the tree's start, or the walk is too long.
pub(crate) fn ancestor(tree: &HeaderTree, hash: &BlockHash, height: u32) -> Option<BlockHash> {
    let mut cur = *hash;
    let mut cur_height = tree.height_of_hash(&cur)?;
    if cur_height < height || height < tree.start_height() {
        return None;
    }
    for _ in 0..=MAX_FORK_WALK {
        if cur_height == height {
            return Some(cur);
        }
        if tree.is_active(&cur) {
            return tree.hash_at(height);
        }
        cur = tree.get(&cur)?.header.prev_blockhash;
        cur_height -= 1;
    }
    None
}

/// Whether the header `hash` is `of` or one of its ancestors (both in the tree).
pub(crate) fn is_ancestor(tree: &HeaderTree, hash: &BlockHash, of: &BlockHash) -> bool {
    let Some(height) = tree.height_of_hash(hash) else {
        return false;
    };
    ancestor(tree, of, height) == Some(*hash)
}

/// Core's `LocatorEntries` for the header `hash` (on any branch): its hash, then its ancestors
/// one by one for the 10 nearest, then with doubling gaps, ending with the tree's first header.
/// Falls back to the active chain's locator if `hash` is unknown or on a fork too long to walk.
pub(crate) fn locator(tree: &HeaderTree, hash: &BlockHash) -> Vec<BlockHash> {
    if *hash == tree.tip().hash {
        return tree.locator();
    }
    let Some((fork, fork_height)) = branch(tree, hash, tree.fork_header_count() + 1) else {
        return tree.locator();
    };
    let Some(start_height) = tree.height_of_hash(hash) else {
        return tree.locator();
    };
    let base = tree.start_height();
    let mut out = Vec::with_capacity(32);
    let mut height = start_height;
    let mut step = 1u32;
    loop {
        let entry = if height > fork_height {
            // fork[0] is at start.height, fork[i] at start.height - i.
            fork.get((start_height - height) as usize).map(|e| e.hash)
        } else {
            tree.hash_at(height)
        };
        let Some(hash) = entry else { break };
        out.push(hash);
        if height <= base {
            break;
        }
        height = height.saturating_sub(step).max(base);
        if out.len() > 10 {
            step = step.saturating_mul(2);
        }
    }
    out
}
