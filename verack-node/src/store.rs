//! The header store: the active chain in SQLite (bundled), written in batches, crash-safe.
//!
//! One row per active-chain header, keyed by height. A batch (one or more tip changes) is one
//! transaction: after `kill -9` the database holds exactly the batches committed before it, in
//! WAL mode with `synchronous=NORMAL` (a process crash loses nothing committed; an OS crash can
//! lose the last batches but never corrupts). A reorg deletes the rows above the fork height and
//! inserts the new branch in the same transaction.

use std::path::Path;

use bitcoin::block::Header;
use bitcoin::consensus::{deserialize, serialize};
use rusqlite::{params, Connection};
use verack::chain::TipChange;

/// Store errors.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite failed (open, read, write).
    #[error("header database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A stored row does not decode as a header.
    #[error("header database row at height {height} is corrupt")]
    Corrupt {
        /// The height of the bad row.
        height: u32,
    },
}

/// The active chain on disk.
pub struct HeaderStore {
    conn: Connection,
}

impl HeaderStore {
    /// Opens (creating if needed) the database at `path`.
    ///
    /// # Errors
    /// [`StoreError::Sqlite`] if the file cannot be opened or created (unwritable directory,
    /// not a database).
    pub fn open(path: &Path) -> Result<HeaderStore, StoreError> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS headers (
                 height INTEGER PRIMARY KEY,
                 hash   BLOB NOT NULL UNIQUE,
                 header BLOB NOT NULL
             );",
        )?;
        Ok(HeaderStore { conn })
    }

    /// The stored active chain above genesis, in height order.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] for a row that is not an 80-byte header; SQLite errors.
    pub fn load(&self) -> Result<Vec<Header>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT height, header FROM headers WHERE height > 0 ORDER BY height")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, u32>(0)?, r.get::<_, Vec<u8>>(1)?)))?;
        let mut out = Vec::new();
        for row in rows {
            let (height, bytes) = row?;
            let header: Header = deserialize(&bytes).map_err(|_| StoreError::Corrupt { height })?;
            out.push(header);
        }
        Ok(out)
    }

    /// Writes `changes` (in order) as one transaction.
    ///
    /// # Errors
    /// SQLite errors; nothing of the batch is written then.
    pub fn apply(&mut self, changes: &[TipChange]) -> Result<(), StoreError> {
        let tx = self.conn.transaction()?;
        {
            let mut delete = tx.prepare_cached("DELETE FROM headers WHERE height > ?1")?;
            let mut insert = tx.prepare_cached(
                "INSERT OR REPLACE INTO headers (height, hash, header) VALUES (?1, ?2, ?3)",
            )?;
            for change in changes {
                delete.execute(params![change.fork_height])?;
                for entry in &change.connected {
                    insert.execute(params![
                        entry.height,
                        serialize(&entry.hash),
                        serialize(&entry.header)
                    ])?;
                }
            }
        }
        tx.commit()?;
        Ok(())
    }
}
