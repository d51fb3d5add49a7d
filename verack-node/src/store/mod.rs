//! The header store: the active chain in SQLite (bundled), crash-safe, checked at every start.
//!
//! One row per active-chain header above genesis, keyed by height: the 80-byte header alone,
//! its hash recomputed when read (stores written before had a hash column; they are moved to
//! this schema at start, see [`connect`]). The rows on disk always form
//! one chain from genesis (a *prefix* of some active chain the node had): every write is one
//! transaction that deletes the rows above a fork height and inserts the headers above it, in
//! WAL mode with `synchronous=NORMAL` (a process crash loses nothing committed; an OS crash can
//! lose the last transactions but never corrupts).
//!
//! - [`check::open_checked`] opens the store at start: SQLite's `quick_check`, then every row
//!   decoded, hashed and its link to the row below followed. A damaged store is
//!   moved aside (with its `-wal` and `-shm` files) and its longest valid prefix copied to a
//!   fresh one; one line says which file and what happens next.
//! - [`writer::run`] writes the node's active chain to the store, reading it from the header
//!   tree (the tree in memory stays authoritative): a write that fails (disk full, I/O error)
//!   is retried with backoff until it succeeds, so nothing is ever skipped, and a store found
//!   damaged while running is moved aside and rewritten from the tree.
//! - [`StoreStatus`] tells the RPC how far the store has got and why it is behind.

pub mod check;
pub mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;

use bitcoin::block::Header;
use bitcoin::consensus::{deserialize, serialize};
use bitcoin::BlockHash;
use rusqlite::{params, Connection, ErrorCode, OptionalExtension};

/// The environment variable that injects write faults, for tests: the next `N` write
/// transactions (`VERACK_TEST_STORE_WRITE_FAULTS=N`) are rolled back and reported as
/// "database or disk is full", as a full disk would.
pub const WRITE_FAULTS_ENV: &str = "VERACK_TEST_STORE_WRITE_FAULTS";

/// Store errors. Each names the database file.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be opened or read for a reason other than damage (permissions,
    /// a full disk, an I/O error, another process holding it). Nothing was changed.
    #[error("cannot use the header database {}: {source}{}", path.display(), hint(source))]
    Open {
        /// The database file.
        path: PathBuf,
        /// What SQLite said.
        #[source]
        source: rusqlite::Error,
    },
    /// The database is damaged and could not be moved aside; nothing was changed.
    #[error(
        "the header database {} is damaged ({reason}) and could not be moved aside ({source}); \
         move it and its -wal and -shm files out of the way (or delete them), then start again",
        path.display()
    )]
    MoveAside {
        /// The database file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
        /// Why the rename failed.
        #[source]
        source: std::io::Error,
    },
    /// A write transaction failed; nothing of it was written.
    #[error("cannot write headers to {}: {source}", path.display())]
    Write {
        /// The database file.
        path: PathBuf,
        /// What SQLite said.
        #[source]
        source: rusqlite::Error,
    },
}

impl StoreError {
    /// Whether the error says the file is damaged (SQLite's `SQLITE_CORRUPT` or
    /// `SQLITE_NOTADB`), as opposed to the disk or the system failing.
    pub fn is_damage(&self) -> bool {
        match self {
            StoreError::Open { source, .. } | StoreError::Write { source, .. } => is_damage(source),
            StoreError::MoveAside { .. } => true,
        }
    }
}

/// Whether SQLite reports a damaged file.
pub(crate) fn is_damage(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase)
    )
}

/// What the user can do about an open error.
fn hint(e: &rusqlite::Error) -> &'static str {
    match e.sqlite_error_code() {
        Some(ErrorCode::DiskFull) => "; free some disk space and start again",
        Some(ErrorCode::ReadOnly | ErrorCode::PermissionDenied | ErrorCode::CannotOpen) => {
            "; check that the file and its directory are writable by this user"
        }
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
            "; is another verack running on this data directory?"
        }
        // A full disk often shows as an I/O error: SQLite cannot grow its `-shm` file.
        Some(ErrorCode::SystemIoFailure) => {
            "; check that the disk has free space and no errors, then start again"
        }
        _ => "",
    }
}

/// How far the store has got, shared with the RPC: the stored height, and while writes fail,
/// why.
#[derive(Debug)]
pub struct StoreStatus {
    path: PathBuf,
    stored_height: AtomicU32,
    problem: Mutex<Option<String>>,
}

impl StoreStatus {
    /// A status for the database at `path`, stored up to `height`.
    pub fn new(path: &Path, height: u32) -> StoreStatus {
        StoreStatus {
            path: path.to_path_buf(),
            stored_height: AtomicU32::new(height),
            problem: Mutex::new(None),
        }
    }

    /// The height of the last header written (committed) to the database.
    pub fn stored_height(&self) -> u32 {
        self.stored_height.load(Ordering::Relaxed)
    }

    /// While writes fail: a sentence for RPC `warnings` saying that the chain above the stored
    /// height is in memory only, and why.
    pub fn warning(&self) -> Option<String> {
        self.problem
            .lock()
            .expect("store status lock")
            .as_ref()
            .map(|cause| {
                format!(
                    "headers above height {} are not yet saved to {} ({cause}); retrying",
                    self.stored_height(),
                    self.path.display()
                )
            })
    }

    fn set_stored(&self, height: u32) {
        self.stored_height.store(height, Ordering::Relaxed);
    }

    fn set_problem(&self, cause: Option<String>) {
        *self.problem.lock().expect("store status lock") = cause;
    }
}

/// One header to write, with its height and hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Row {
    /// Its height.
    pub height: u32,
    /// Its hash.
    pub hash: BlockHash,
    /// The header.
    pub header: Header,
}

/// The active chain on disk.
pub struct HeaderStore {
    conn: Connection,
    path: PathBuf,
    /// Height and hash of the highest stored row (genesis when empty).
    tip: (u32, BlockHash),
    genesis: BlockHash,
    /// Write transactions still to fail on purpose ([`WRITE_FAULTS_ENV`]).
    injected_faults: u32,
    /// The file was moved aside but the new one could not be opened yet: `conn` is an empty
    /// in-memory placeholder and the next write opens the file first.
    reopen: bool,
}

/// The table: one row per header, keyed by height, holding the 80-byte header alone (about
/// 90 bytes a row on disk). Hashes are not stored: the start-up check hashes every header
/// anyway, and [`HeaderStore::hash_at`] hashes the one it reads.
const TABLE: &str = "chain";

/// The table of stores written before `chain` (up to commit 32379e2): the same rows plus a
/// `hash BLOB NOT NULL UNIQUE` column and its index (about 170 bytes a row on disk). The
/// start-up check reads it (and checks each stored hash too) when `chain` is absent, and
/// [`connect`] then moves its rows to `chain` in one transaction.
const LEGACY_TABLE: &str = "headers";

/// Whether the database on `conn` has a table `name`.
fn has_table(conn: &Connection, name: &str) -> rusqlite::Result<bool> {
    conn.query_row(
        "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = ?1",
        [name],
        |r| r.get::<_, i64>(0),
    )
    .map(|n| n > 0)
}

/// Opens the file at `path` in WAL mode and creates the table if needed. A store with only the
/// [`LEGACY_TABLE`] (already checked: `connect` is called only on a store that passed the
/// start-up check, or on a new file) is migrated: its rows are copied to the table and the
/// legacy table dropped, in one transaction (a failure leaves the legacy store as it was),
/// then the file is compacted (`VACUUM`; a failure there only leaves free pages in the file).
/// Errors are SQLite's.
fn connect(path: &Path) -> rusqlite::Result<Connection> {
    let mut conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    let tx = conn.transaction()?;
    let migrate = !has_table(&tx, TABLE)? && has_table(&tx, LEGACY_TABLE)?;
    tx.execute_batch(&format!(
        "CREATE TABLE IF NOT EXISTS {TABLE} (
             height INTEGER PRIMARY KEY,
             header BLOB NOT NULL
         );"
    ))?;
    if migrate {
        tx.execute_batch(&format!(
            "INSERT INTO {TABLE} (height, header)
                 SELECT height, header FROM {LEGACY_TABLE} ORDER BY height;
             DROP TABLE {LEGACY_TABLE};"
        ))?;
    }
    tx.commit()?;
    if migrate {
        let compacted = conn
            .execute_batch("VACUUM;")
            .and_then(|()| conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);"));
        match compacted {
            Ok(()) => tracing::info!(
                "header database {} moved to the compact schema (no stored hashes)",
                path.display()
            ),
            Err(e) => tracing::warn!(
                error = %e,
                "header database {} moved to the compact schema, but could not be compacted; \
                 its free pages will be reused",
                path.display()
            ),
        }
    }
    Ok(conn)
}

impl HeaderStore {
    /// Wraps an open connection whose rows end at `tip`.
    fn from_parts(
        conn: Connection,
        path: &Path,
        tip: (u32, BlockHash),
        genesis: BlockHash,
    ) -> HeaderStore {
        let injected_faults = std::env::var(WRITE_FAULTS_ENV)
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        HeaderStore {
            conn,
            path: path.to_path_buf(),
            tip,
            genesis,
            injected_faults,
            reopen: false,
        }
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Height and hash of the highest stored header (genesis, at 0, when empty).
    pub fn tip(&self) -> (u32, BlockHash) {
        self.tip
    }

    /// The hash of the stored header at `height` (genesis at 0), or `None` when there is no
    /// such row.
    ///
    /// # Errors
    /// [`StoreError::Write`] (the writer is the caller) for SQLite errors.
    pub fn hash_at(&self, height: u32) -> Result<Option<BlockHash>, StoreError> {
        if height == 0 {
            return Ok(Some(self.genesis));
        }
        let bytes: Option<Vec<u8>> = self
            .conn
            .prepare_cached(&format!("SELECT header FROM {TABLE} WHERE height = ?1"))
            .and_then(|mut s| s.query_row([height], |r| r.get(0)).optional())
            .map_err(|source| self.write_error(source))?;
        Ok(bytes.and_then(|b| deserialize::<Header>(&b).ok().map(|h| h.block_hash())))
    }

    /// Makes the stored chain the headers up to `fork` followed by `rows` (heights `fork + 1`
    /// on, in order, each linked to the one before), in one transaction: rows above `fork`
    /// are deleted and `rows` inserted.
    ///
    /// # Errors
    /// [`StoreError::Write`]; nothing of the transaction is written then, and the stored
    /// chain is the one before the call.
    pub fn write(&mut self, fork: u32, rows: &[Row]) -> Result<(), StoreError> {
        debug_assert!(rows
            .iter()
            .enumerate()
            .all(|(i, r)| r.height == fork + 1 + i as u32));
        if self.reopen {
            self.conn = connect(&self.path).map_err(|source| self.write_error(source))?;
            self.reopen = false;
        }
        let new_tip = match rows.last() {
            Some(last) => (last.height, last.hash),
            None if fork >= self.tip.0 => return Ok(()),
            None => match self.hash_at(fork)? {
                Some(hash) => (fork, hash),
                None => return Ok(()),
            },
        };
        let tx = self
            .conn
            .transaction()
            .map_err(|source| write_error(&self.path, source))?;
        let written = (|| {
            tx.prepare_cached(&format!("DELETE FROM {TABLE} WHERE height > ?1"))?
                .execute(params![fork])?;
            let mut insert = tx.prepare_cached(&format!(
                "INSERT INTO {TABLE} (height, header) VALUES (?1, ?2)"
            ))?;
            for row in rows {
                insert.execute(params![row.height, serialize(&row.header)])?;
            }
            Ok::<(), rusqlite::Error>(())
        })();
        if let Err(source) = written {
            // Dropping the transaction rolls it back.
            return Err(write_error(&self.path, source));
        }
        if self.injected_faults > 0 {
            self.injected_faults -= 1;
            drop(tx);
            return Err(write_error(
                &self.path,
                rusqlite::Error::SqliteFailure(
                    rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL),
                    Some(format!(
                        "database or disk is full (injected by {WRITE_FAULTS_ENV})"
                    )),
                ),
            ));
        }
        tx.commit()
            .map_err(|source| write_error(&self.path, source))?;
        self.tip = new_tip;
        Ok(())
    }

    /// Replaces a store found damaged while running: closes it, moves the file (and its
    /// `-wal`, `-shm`) aside as [`check::move_aside`] does, and opens a fresh, empty one.
    /// Returns where the damaged file went.
    ///
    /// # Errors
    /// [`StoreError::Open`] when the old connection cannot be closed (it stays in use, and
    /// nothing is moved: a connection still open could delete the new store's `-wal` when it
    /// closes later); [`StoreError::MoveAside`] when the file cannot be moved (the store is
    /// then reopened on it). A new store that cannot be opened yet is opened by the next
    /// [`write`](Self::write).
    pub fn replace_damaged(&mut self, reason: &str) -> Result<PathBuf, StoreError> {
        let placeholder = Connection::open_in_memory().map_err(|source| self.open_error(source))?;
        let old = std::mem::replace(&mut self.conn, placeholder);
        if let Err((conn, source)) = old.close() {
            self.conn = conn;
            return Err(self.open_error(source));
        }
        let moved = match check::move_aside(&self.path, reason) {
            Ok(moved) => moved,
            Err(e) => {
                match connect(&self.path) {
                    Ok(conn) => self.conn = conn,
                    Err(_) => self.reopen = true,
                }
                return Err(e);
            }
        };
        self.tip = (0, self.genesis);
        match connect(&self.path) {
            Ok(conn) => self.conn = conn,
            // The next write tries again.
            Err(_) => self.reopen = true,
        }
        Ok(moved)
    }

    fn write_error(&self, source: rusqlite::Error) -> StoreError {
        write_error(&self.path, source)
    }

    fn open_error(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Open {
            path: self.path.clone(),
            source,
        }
    }
}

fn write_error(path: &Path, source: rusqlite::Error) -> StoreError {
    StoreError::Write {
        path: path.to_path_buf(),
        source,
    }
}

#[cfg(test)]
mod tests;
