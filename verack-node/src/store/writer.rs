//! The store writer: keeps the store a copy of the node's active chain, never with a gap.
//!
//! The writer does not write the tip changes it is sent; they only wake it. It reads what to
//! write from the header tree, which stays authoritative: the fork point between the stored
//! chain and the active chain (at the stored tip when the chain only grew), then the active
//! headers above it. So a write that fails loses nothing: the headers stay in the tree and the
//! next attempt writes them, whatever arrived meanwhile and in whatever order tip changes were
//! sent.
//!
//! - Batches: a write waits up to [`BATCH_WAIT`] after a wake-up, or until
//!   [`BATCH_HEADERS`] new headers, and writes at most [`CHUNK`] headers above the stored tip
//!   per transaction (a reorg's replaced rows and their replacements are always in one).
//! - Failures (disk full, I/O errors): retried after [`RETRY_FIRST`], doubling up to
//!   [`RETRY_MAX`]; one error line when writes start failing or the cause changes, one line
//!   when they succeed again. Meanwhile [`StoreStatus::warning`] says so (RPC `warnings`).
//! - A store found damaged while running (`SQLITE_CORRUPT`) is moved aside and the whole
//!   chain is written again to a fresh one (at most [`MAX_REPLACEMENTS`] times per run).
//! - On stop, everything left is written, retrying for up to [`FINAL_FLUSH`]; what still
//!   fails is reported (the stored chain is a consistent prefix; the rest is downloaded again
//!   at the next start).

use std::sync::Arc;
use std::time::Duration;

use bitcoin::BlockHash;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use verack::chain::{HeaderTree, TipChange};

use super::{HeaderStore, Row, StoreError, StoreStatus};

/// How long a write waits for more tip changes after the first: 1 s.
pub const BATCH_WAIT: Duration = Duration::from_secs(1);
/// New headers that start a write before [`BATCH_WAIT`]: 2000 (one `headers` message).
pub const BATCH_HEADERS: usize = 2000;
/// Headers above the stored tip written per transaction at most: 20,000.
pub const CHUNK: u32 = 20_000;
/// The first retry after a failed write: 500 ms.
pub const RETRY_FIRST: Duration = Duration::from_millis(500);
/// Retries slow down (doubling) to one every 10 s.
pub const RETRY_MAX: Duration = Duration::from_secs(10);
/// How long the writer keeps retrying its last writes once asked to stop: 3 s.
pub const FINAL_FLUSH: Duration = Duration::from_secs(3);
/// Damaged stores replaced while running, at most, per run: 3 (after that a damaged store is
/// a failing one, retried and reported).
pub const MAX_REPLACEMENTS: u32 = 3;

/// Gives the writer a look at the header tree (under its lock, briefly).
pub trait TreeAccess: Send + Sync {
    /// Calls `f` with the tree.
    fn with_tree(&self, f: &mut dyn FnMut(&HeaderTree));
}

impl TreeAccess for std::sync::Mutex<HeaderTree> {
    fn with_tree(&self, f: &mut dyn FnMut(&HeaderTree)) {
        f(&self.lock().expect("header tree lock"));
    }
}

impl<T: TreeAccess + ?Sized> TreeAccess for Arc<T> {
    fn with_tree(&self, f: &mut dyn FnMut(&HeaderTree)) {
        (**self).with_tree(f);
    }
}

/// One write to do: keep the stored rows up to `fork`, then `rows`.
#[derive(Debug, PartialEq)]
struct Plan {
    fork: u32,
    rows: Vec<Row>,
    /// The active chain goes beyond `rows` (more chunks to write).
    more: bool,
}

/// Writes `tree`'s active chain to `store` until `stop` is cancelled (or `changes` closes),
/// then writes what is left as the module documentation says. `changes` only wakes the
/// writer. `status` is kept up to date.
pub async fn run(
    mut store: HeaderStore,
    status: Arc<StoreStatus>,
    mut changes: mpsc::UnboundedReceiver<TipChange>,
    tree: impl TreeAccess,
    stop: CancellationToken,
) {
    let mut failing: Option<String> = None;
    let mut backoff = RETRY_FIRST;
    let mut replacements = 0;
    // Whether the store may be behind the tree without a tip change saying so (after a
    // repair at start, after a failure, between chunks).
    let mut behind = true;
    loop {
        if failing.is_some() {
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                () = stop.cancelled() => break,
            }
            backoff = (backoff * 2).min(RETRY_MAX);
            while changes.try_recv().is_ok() {}
        } else if !behind {
            tokio::select! {
                change = changes.recv() => match change {
                    Some(change) => {
                        if !collect(&mut changes, change.connected.len(), &stop).await {
                            break;
                        }
                    }
                    None => break,
                },
                () = stop.cancelled() => break,
            }
        }
        match tokio::task::block_in_place(|| step(&mut store, &tree)) {
            Ok(more) => {
                behind = more;
                backoff = RETRY_FIRST;
                status.set_stored(store.tip().0);
                if failing.take().is_some() {
                    status.set_problem(None);
                    tracing::info!(
                        "header database {} is writable again; headers saved up to height {}",
                        store.path().display(),
                        store.tip().0
                    );
                }
            }
            Err(e) if e.is_damage() && replacements < MAX_REPLACEMENTS => {
                replacements += 1;
                let cause = cause_of(&e);
                match tokio::task::block_in_place(|| store.replace_damaged(&cause)) {
                    Ok(moved) => {
                        status.set_stored(0);
                        tracing::warn!(
                            "header database {} was damaged while running ({cause}); moved it \
                             to {}; writing the chain from memory to a new database",
                            store.path().display(),
                            moved.display()
                        );
                        behind = true;
                    }
                    Err(e) => note_failure(&store, &status, &e, &mut failing),
                }
            }
            Err(e) => note_failure(&store, &status, &e, &mut failing),
        }
    }
    final_flush(&mut store, &status, &tree, failing).await;
}

/// After a wake-up: waits for more tip changes until [`BATCH_WAIT`] has passed or
/// [`BATCH_HEADERS`] headers arrived. Returns false when the writer should stop.
async fn collect(
    changes: &mut mpsc::UnboundedReceiver<TipChange>,
    mut headers: usize,
    stop: &CancellationToken,
) -> bool {
    let deadline = Instant::now() + BATCH_WAIT;
    while headers < BATCH_HEADERS {
        tokio::select! {
            change = tokio::time::timeout_at(deadline, changes.recv()) => match change {
                Ok(Some(change)) => headers += change.connected.len(),
                Ok(None) => return false,
                Err(_) => break,
            },
            () = stop.cancelled() => return false,
        }
    }
    true
}

/// One write failed: log it if the cause is new, tell the RPC.
fn note_failure(
    store: &HeaderStore,
    status: &StoreStatus,
    e: &StoreError,
    failing: &mut Option<String>,
) {
    let cause = cause_of(e);
    if failing.as_deref() != Some(cause.as_str()) {
        tracing::error!(
            "cannot write headers to {}: {cause}; headers above height {} stay in memory and \
             the write is retried until it succeeds (at least every {} s)",
            store.path().display(),
            store.tip().0,
            RETRY_MAX.as_secs()
        );
    } else {
        tracing::debug!(%cause, "header write failed again");
    }
    status.set_problem(Some(cause.clone()));
    *failing = Some(cause);
}

/// What SQLite said, without the file name (the log line names it).
fn cause_of(e: &StoreError) -> String {
    match e {
        StoreError::Write { source, .. } | StoreError::Open { source, .. } => source.to_string(),
        StoreError::MoveAside { .. } => e.to_string(),
    }
}

/// Writes what is left, retrying for up to [`FINAL_FLUSH`].
async fn final_flush(
    store: &mut HeaderStore,
    status: &StoreStatus,
    tree: &impl TreeAccess,
    mut failing: Option<String>,
) {
    let deadline = Instant::now() + FINAL_FLUSH;
    loop {
        match tokio::task::block_in_place(|| step(store, tree)) {
            Ok(true) => {}
            Ok(false) => {
                status.set_stored(store.tip().0);
                if failing.is_some() {
                    status.set_problem(None);
                    tracing::info!(
                        "header database {} is writable again; headers saved up to height {}",
                        store.path().display(),
                        store.tip().0
                    );
                }
                return;
            }
            Err(e) => {
                failing = Some(cause_of(&e));
                if Instant::now() >= deadline {
                    break;
                }
                tokio::time::sleep(RETRY_FIRST / 5).await;
            }
        }
        status.set_stored(store.tip().0);
    }
    let mut height = 0;
    tree.with_tree(&mut |t| height = t.height());
    tracing::error!(
        "headers above height {} could not be saved to {} ({}); the next start downloads \
         them again (up to height {height})",
        store.tip().0,
        store.path().display(),
        failing.unwrap_or_default()
    );
}

/// Plans one write under the tree lock and does it. Returns whether more is left.
fn step(store: &mut HeaderStore, tree: &impl TreeAccess) -> Result<bool, StoreError> {
    let mut planned = Ok(None);
    tree.with_tree(&mut |t| planned = plan(t, store.tip(), |h| store.hash_at(h)));
    let Some(plan) = planned? else {
        return Ok(false);
    };
    store.write(plan.fork, &plan.rows)?;
    Ok(plan.more)
}

/// What to write so that the store (ending at `stored`) follows `tree`'s active chain, or
/// `None` when it already does. `hash_at` reads the store's hash at a height.
fn plan(
    tree: &HeaderTree,
    stored: (u32, BlockHash),
    hash_at: impl Fn(u32) -> Result<Option<BlockHash>, StoreError>,
) -> Result<Option<Plan>, StoreError> {
    let tip = tree.tip();
    if tip.hash == stored.1 {
        return Ok(None);
    }
    let tip_height = tip.height;
    let fork = fork_height(tree, stored, hash_at)?;
    // A reorg's replacements reach at least the old stored height, in the same transaction.
    let end = tip_height.min(stored.0.max(fork).saturating_add(CHUNK));
    let mut rows = Vec::with_capacity((end - fork) as usize);
    for height in fork + 1..=end {
        let (Some(header), Some(hash)) = (tree.header_at(height), tree.hash_at(height)) else {
            break;
        };
        rows.push(Row {
            height,
            hash,
            header,
        });
    }
    let more = fork + (rows.len() as u32) < tip_height;
    Ok(Some(Plan { fork, rows, more }))
}

/// The highest height at which the stored chain (ending at `stored`) and the active chain
/// agree. Stored chains are chains, so they agree up to one height and differ above it: the
/// stored tip's ancestors are followed in the tree, and when they are not all there (a
/// forgotten fork) the store is searched by bisection.
fn fork_height(
    tree: &HeaderTree,
    stored: (u32, BlockHash),
    hash_at: impl Fn(u32) -> Result<Option<BlockHash>, StoreError>,
) -> Result<u32, StoreError> {
    let active_at = |h: u32| tree.hash_at(h);
    if active_at(stored.0) == Some(stored.1) {
        return Ok(stored.0);
    }
    let mut hash = stored.1;
    while let Some(entry) = tree.get(&hash) {
        if active_at(entry.height) == Some(hash) {
            return Ok(entry.height);
        }
        if entry.height <= tree.start_height() {
            break;
        }
        hash = entry.header.prev_blockhash;
    }
    let (mut agree, mut differ) = (tree.start_height(), stored.0.min(tree.height()) + 1);
    while differ - agree > 1 {
        let mid = agree + (differ - agree) / 2;
        let stored_hash = hash_at(mid)?;
        if stored_hash.is_some() && stored_hash == active_at(mid) {
            agree = mid;
        } else {
            differ = mid;
        }
    }
    Ok(agree)
}
