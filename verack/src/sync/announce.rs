//! BIP130 tip announcements as Core's `SendMessages` makes them, for one peer.

use bitcoin::BlockHash;

use crate::chain::HeaderTree;

use super::types::Announcement;

/// How to announce the new active headers `new` (oldest first, at most `max`: Core's
/// `m_blocks_for_headers_relay`) to a peer that prefers `headers` announcements or not, where
/// `peer_has(hash)` says whether the peer is known to have a header (Core's `PeerHasHeader`).
///
/// With `headers` (the peer sent `sendheaders`, and at most `max` new headers): every header
/// from the first the peer lacks, provided it builds on one the peer has; nothing when it has
/// them all. Otherwise, or when the new headers do not build on anything the peer has (a
/// longer reorg), or are no longer active: an `inv` of the tip, if the peer lacks it.
pub(crate) fn announcement(
    tree: &HeaderTree,
    new: &[BlockHash],
    prefers_headers: bool,
    max: usize,
    peer_has: impl Fn(&BlockHash) -> bool,
) -> Option<Announcement> {
    let tip = *new.last()?;
    let mut revert_to_inv = !prefers_headers || new.len() > max;
    let mut headers = Vec::new();
    if !revert_to_inv {
        let mut found_start = false;
        let mut previous: Option<BlockHash> = None;
        for hash in new {
            let Some(entry) = tree.get(hash) else {
                revert_to_inv = true;
                break;
            };
            if !tree.is_active(hash) || previous.is_some_and(|p| entry.header.prev_blockhash != p) {
                revert_to_inv = true;
                break;
            }
            previous = Some(*hash);
            if found_start {
                headers.push(entry.header);
            } else if peer_has(hash) {
                continue;
            } else if entry.height == tree.start_height() || peer_has(&entry.header.prev_blockhash)
            {
                found_start = true;
                headers.push(entry.header);
            } else {
                revert_to_inv = true;
                break;
            }
        }
    }
    if !revert_to_inv {
        return (!headers.is_empty()).then_some(Announcement::Headers(headers));
    }
    (!peer_has(&tip)).then_some(Announcement::Inv(tip))
}
