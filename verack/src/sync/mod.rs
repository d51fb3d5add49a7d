//! Header sync: which peer to download headers from, what to ask it, what to do with its
//! answers and announcements, how to announce our new tips, and when a peer misbehaved or
//! stalled, as Bitcoin Core's `net_processing` does it for headers.
//!
//! # Why in the library
//! Header sync is what every Bitcoin client built on this crate needs first, full node or
//! SPV/light client alike, and its rules (which peer, Core's sync timeout, presync of low-work
//! chains, unconnecting headers, BIP130 announcements) are the same for all of them. Living
//! here, beside [`chain`](crate::chain) and [`server`](crate::server), it has no tie to the
//! `verack` node's storage, RPC or metrics: a light client drives the same
//! [`SyncManager`] from its own event loop, with its own persistence of
//! [`Action::Persist`].
//!
//! # Shape
//! [`SyncManager`] is plain code (sans-I/O): it owns the [`HeaderTree`](crate::chain::HeaderTree),
//! the initial-sync peer, each peer's best known header and the presync states
//! ([`presync::HeadersSyncState`]). [`SyncManager::handle`] takes one [`Input`] (a peer
//! connected or gone, `headers`, block `inv`, `getheaders`, `sendheaders`, a timer tick) with
//! the current time, and returns [`Action`]s for the caller to carry out (send `getheaders`,
//! answer with `headers`, announce a tip, report misbehaviour, disconnect, persist a tip
//! change). There is no clock, no socket and no ambient randomness: time is the `now`
//! argument, the presync salts come from the seed given to [`SyncManager::new`]. The caller
//! (the `verack` node: one tokio task fed by the server's peer events and by its peer
//! handlers) is the only one that calls `handle`; others may read the tree through
//! [`SyncManager::tree`] under the caller's lock.
//!
//! # Rules (sources: Bitcoin Core `src/net_processing.cpp`, commit `58a7869f860f`)
//! - **Initial sync** (`SendMessages`): while our tip is more than 24 h old, one outbound
//!   peer at a time is asked for headers (those offering `NODE_NETWORK`/`NODE_NETWORK_LIMITED`
//!   first, then by connection order; its claimed height is never trusted), with a locator
//!   from our tip's parent. Once the tip is recent, every outbound peer is asked once. Unlike
//!   Core, inbound peers are never asked on our initiative (only after they announce a block):
//!   an inbound Core in its own initial sync ignores `getheaders`, and the peer layer would
//!   disconnect it after its 2-minute response deadline.
//! - **Sync timeout**: the initial-sync peer must bring our tip within 24 h of now by
//!   [`HEADERS_DOWNLOAD_TIMEOUT_BASE`] (15 min) plus [`HEADERS_DOWNLOAD_TIMEOUT_PER_HEADER`]
//!   (1 ms) per header expected, the expected count being the time since our tip over the
//!   block interval (600 s) when the sync started. Past it, if it is the only peer syncing
//!   and another outbound peer exists, it is disconnected
//!   ([`DisconnectCause::SyncTimeout`]) and another is picked. A peer that lies about its
//!   height gains nothing: the deadline does not depend on it.
//! - **Hand-over**: when the sync peer disconnects (the peer layer disconnects one that leaves
//!   a `getheaders` unanswered for 2 minutes), misbehaves, or sends a header we reject, the
//!   next candidate is asked at once.
//! - **`headers`** (`ProcessHeadersMessage`): every header's proof of work is checked first
//!   ([`Misbehaviour::InvalidProofOfWork`]), then that each builds on the previous one
//!   ([`Misbehaviour::NonContinuousHeaders`], and a disconnect). A message that does not
//!   connect to a header we hold is answered with `getheaders` from our tip
//!   (`HandleUnconnectingHeaders`, no penalty, at most one `getheaders` in flight per peer:
//!   [`HEADERS_RESPONSE_TIME`]). A chain with less work than our tip's minus 144 blocks, or
//!   than the minimum chain work, is not stored: a full message starts a presync
//!   ([`presync`]; only the headers it releases are validated and stored), a shorter one is
//!   ignored. Otherwise the headers are validated and stored; a rejected one is
//!   [`Misbehaviour::InvalidHeader`] (except a header too far in the future, which Core does
//!   not punish). A full message (2000 headers) is followed by `getheaders` from its last
//!   header. An empty message ends the peer's presync and answers our `getheaders`.
//! - **Block `inv`**: an unknown block makes us ask its announcer for headers from our tip,
//!   for a peer not yet syncing only once and only one peer per new block.
//! - **Each peer's best known header** (`UpdateBlockAvailability`): the most-work header it
//!   sent or announced; with the best header we sent it, it decides the announcements.
//! - **Announcements** (BIP130, `UpdatedBlockTip` and `SendMessages`): once synced, each new
//!   tip goes to every peer lacking it: as `headers` (up to [`MAX_BLOCKS_TO_ANNOUNCE`], from
//!   the first one it lacks, building on one it has) to peers that sent `sendheaders`,
//!   otherwise, or for a longer reorg, as an `inv` of the tip. We send `sendheaders` to a
//!   peer once it is known to have a header above the minimum chain work.
//! - **`getheaders`** is answered once our chain has the minimum chain work (Core also waits
//!   for a recent tip), with up to 2000 active headers after the locator's fork point; a null
//!   locator with an unknown stop hash gets no answer.
//!
//! Misbehaviour scores are Core's `Misbehaving` values from before v25
//! ([`Misbehaviour::score`]); at 100 the server bans (loopback and trusted peers are only
//! disconnected).

mod announce;
mod manager;
pub mod presync;
mod types;
mod walk;

#[cfg(test)]
mod tests;

pub use manager::SyncManager;
pub use types::{
    Action, Announcement, DisconnectCause, Input, Misbehaviour, PeerInfo, PeerSyncInfo, SyncConfig,
    ANTI_DOS_WORK_BUFFER_BLOCKS, HEADERS_DOWNLOAD_TIMEOUT_BASE,
    HEADERS_DOWNLOAD_TIMEOUT_PER_HEADER, HEADERS_RESPONSE_TIME, MAX_BLOCKS_TO_ANNOUNCE,
    MAX_TIP_AGE, SENDHEADERS_VERSION,
};
