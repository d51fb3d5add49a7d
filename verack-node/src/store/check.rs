//! The start-up check: open the store, verify it, and repair it by itself when damaged.
//!
//! Every start runs SQLite's `PRAGMA quick_check` (the b-tree structure of every page) and,
//! at the same time on another thread, reads every row in height order: it must decode as an
//! 80-byte header, its height must follow the row below and it must link to that row (height 1
//! to the network's genesis); in a legacy store (a hash column) its stored hash must also be
//! the header's hash. A store that passes is used as is.
//!
//! A store that fails (or that SQLite cannot read: `SQLITE_CORRUPT`, `SQLITE_NOTADB`, a
//! missing or unexpected table) is never changed or deleted: it is renamed to
//! `headers.sqlite.corrupt-<unix seconds>` (its `-wal` and `-shm` files beside it with the same
//! new name, so it stays openable), the longest valid prefix read from it is copied into a
//! fresh database, and one warning names the file, the cause and what happens next. The node
//! then downloads the rest from peers. Errors that are not damage (a full disk, permissions,
//! an I/O error, another process holding the lock) leave everything as it is and stop the
//! start with [`StoreError::Open`], which says what to do.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bitcoin::block::Header;
use bitcoin::consensus::deserialize;
use bitcoin::BlockHash;
use rusqlite::{Connection, ErrorCode, OpenFlags};

use super::{connect, HeaderStore, Row, StoreError};

/// Problems reported by `quick_check` that are quoted in the log line, at most.
const QUICK_CHECK_REPORTED: usize = 3;

/// The store after the start-up check.
pub struct Opened {
    /// The store, ready for the writer.
    pub store: HeaderStore,
    /// The stored active chain above genesis, in height order (the valid prefix after a
    /// repair).
    pub headers: Vec<Header>,
    /// Set when the store was damaged and repaired (already logged).
    pub repair: Option<Repair>,
    /// How long the open and the check took.
    pub elapsed: Duration,
}

/// What a repair did (already logged by [`open_checked`]; the node only counts repairs).
#[derive(Debug, Clone)]
#[cfg_attr(not(test), allow(dead_code))]
pub struct Repair {
    /// What was wrong.
    pub reason: String,
    /// Where the damaged file is now.
    pub moved_to: PathBuf,
    /// Valid headers kept (copied into the new database, or left for the writer to copy when
    /// that write failed).
    pub kept: u32,
}

/// The outcome of reading the store without changing it.
enum Inspection {
    /// Passed (or absent): the chain.
    Sound(Vec<Header>),
    /// Damaged: why, and the valid prefix read before the damage.
    Damaged(String, Vec<Header>),
    /// Could not be read for a reason that is not damage.
    Failed(rusqlite::Error),
}

/// Opens the store at `path` (creating it if absent), checks it and repairs it if damaged, as
/// the module documentation says. `genesis` is the network's genesis hash.
///
/// # Errors
/// [`StoreError::Open`] when the store cannot be opened or read for a reason other than damage
/// (nothing is changed then); [`StoreError::MoveAside`] when it is damaged but cannot be
/// renamed.
pub fn open_checked(path: &Path, genesis: BlockHash) -> Result<Opened, StoreError> {
    let started = Instant::now();
    let open_error = |source| StoreError::Open {
        path: path.to_path_buf(),
        source,
    };
    let (reason, prefix) = match inspect(path, genesis) {
        Inspection::Sound(headers) => {
            // The pragmas and the table, only now that the file is known to be sound.
            let conn = connect(path).map_err(open_error)?;
            let tip = tip_of(&headers, genesis);
            return Ok(Opened {
                store: HeaderStore::from_parts(conn, path, tip, genesis),
                headers,
                repair: None,
                elapsed: started.elapsed(),
            });
        }
        Inspection::Failed(source) => return Err(open_error(source)),
        Inspection::Damaged(reason, prefix) => (reason, prefix),
    };
    let moved_to = move_aside(path, &reason)?;
    let conn = connect(path).map_err(open_error)?;
    let mut store = HeaderStore::from_parts(conn, path, (0, genesis), genesis);
    let rows = rows_of(&prefix);
    let kept = prefix.len() as u32;
    // Copy the prefix as one transaction. If that fails (a full disk) the writer copies it
    // later from the tree, which is built from `prefix`: nothing is lost either way.
    let copied = store.write(0, &rows);
    let what = if kept == 0 {
        "started a new database and will download the headers from peers".to_string()
    } else {
        format!(
            "kept its first {kept} headers (to height {kept}) in a new database and will \
             download the rest from peers"
        )
    };
    tracing::warn!(
        "header database {} was damaged ({reason}); moved it to {}; {what}",
        path.display(),
        moved_to.display()
    );
    if let Err(e) = copied {
        tracing::warn!(error = %e, "could not copy the kept headers yet; will retry");
    }
    Ok(Opened {
        store,
        headers: prefix,
        repair: Some(Repair {
            reason,
            moved_to,
            kept,
        }),
        elapsed: started.elapsed(),
    })
}

/// Renames a damaged database `path` to `<name>.corrupt-<unix seconds>[.N]` (never overwriting
/// anything) and its `-wal` and `-shm` files to the same new name plus `-wal`/`-shm`, so the
/// moved copy opens as it was. A `-wal` left beside a new database would be replayed into it,
/// so failing to move one is an error. Returns the new path of the database.
///
/// # Errors
/// [`StoreError::MoveAside`] naming `path` and `reason`.
pub fn move_aside(path: &Path, reason: &str) -> Result<PathBuf, StoreError> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let failed = |source| StoreError::MoveAside {
        path: path.to_path_buf(),
        reason: reason.to_string(),
        source,
    };
    let moved = match std::fs::symlink_metadata(path) {
        Ok(_) => verack::atomic_file::move_aside(path, now).map_err(failed)?,
        // No main file (only side files): move those beside a name that is free.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut name = path.as_os_str().to_owned();
            name.push(format!(".corrupt-{now}"));
            PathBuf::from(name)
        }
        Err(e) => return Err(failed(e)),
    };
    for suffix in ["-wal", "-shm"] {
        let side = with_suffix(path, suffix);
        let result = match std::fs::symlink_metadata(&side) {
            Ok(_) => std::fs::rename(&side, with_suffix(&moved, suffix)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            // Never leave a main file and its WAL apart (a new store created beside a stale
            // WAL could replay it): put back what was moved, best effort, and report.
            for back in ["-wal", "-shm"] {
                let _ = std::fs::rename(with_suffix(&moved, back), with_suffix(path, back));
            }
            let _ = std::fs::rename(&moved, path);
            return Err(failed(e));
        }
    }
    Ok(moved)
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Whether an error while reading means the system failed rather than the file being bad.
fn is_system_failure(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(
            ErrorCode::DiskFull
                | ErrorCode::ReadOnly
                | ErrorCode::PermissionDenied
                | ErrorCode::CannotOpen
                | ErrorCode::DatabaseBusy
                | ErrorCode::DatabaseLocked
                | ErrorCode::SystemIoFailure
                | ErrorCode::OutOfMemory
                | ErrorCode::FileLockingProtocolFailed
        )
    )
}

/// Classifies an error met while reading: damage (with `context`) or a system failure.
fn classify(e: rusqlite::Error, context: &str, prefix: Vec<Header>) -> Inspection {
    if is_system_failure(&e) {
        Inspection::Failed(e)
    } else {
        Inspection::Damaged(format!("{context}: {e}"), prefix)
    }
}

/// Reads the store without changing it: read-only connections read a `-wal` file but never
/// checkpoint or remove it (a read-write one would delete the `-wal` of a file whose header is
/// damaged when it closes, and with it the last committed writes). `quick_check` runs on a
/// second thread while the rows are read, each with its own connection.
fn inspect(path: &Path, genesis: BlockHash) -> Inspection {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Inspection::Sound(Vec::new()),
        _ => {}
    }
    let open = || {
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        Connection::open_with_flags(path, flags)
    };
    let (checked, scanned) = std::thread::scope(|scope| {
        let checked = scope.spawn(|| quick_check(&open()?));
        let scanned = match open() {
            Ok(conn) => scan(&conn, genesis),
            Err(e) => Err(classify(e, "cannot open", Vec::new())),
        };
        let checked = checked
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (checked, scanned)
    });
    let prefix_of = |scanned: Result<(Vec<Header>, Option<String>), Inspection>| match scanned {
        Ok((prefix, _)) | Err(Inspection::Damaged(_, prefix)) => prefix,
        Err(_) => Vec::new(),
    };
    match (checked, scanned) {
        (_, Err(failed @ Inspection::Failed(_))) => failed,
        (Err(e), _) if is_system_failure(&e) => Inspection::Failed(e),
        (Ok(None), Ok((headers, None))) => Inspection::Sound(headers),
        (Ok(None), Ok((prefix, Some(reason)))) => Inspection::Damaged(reason, prefix),
        (Ok(None), Err(damaged)) => damaged,
        // Salvage what reads and links; never trust it beyond that.
        (Ok(Some(problems)), scanned) => {
            Inspection::Damaged(format!("integrity check: {problems}"), prefix_of(scanned))
        }
        (Err(e), scanned) => {
            Inspection::Damaged(format!("integrity check: {e}"), prefix_of(scanned))
        }
    }
}

/// `PRAGMA quick_check`: `None` when it says "ok", else the first problems it lists.
pub(super) fn quick_check(conn: &Connection) -> rusqlite::Result<Option<String>> {
    let mut stmt = conn.prepare(&format!("PRAGMA quick_check({QUICK_CHECK_REPORTED})"))?;
    let lines: Vec<String> = stmt
        .query_map([], |r| r.get::<_, String>(0))?
        .collect::<rusqlite::Result<_>>()?;
    if lines.len() == 1 && lines[0] == "ok" {
        return Ok(None);
    }
    // One line for the log: SQLite's rows may hold several lines and a "*** in database
    // main ***" heading.
    let problems: Vec<&str> = lines
        .iter()
        .flat_map(|l| l.lines())
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("***"))
        .take(QUICK_CHECK_REPORTED)
        .collect();
    Ok(Some(problems.join("; ")))
}

/// Reads every row in height order and keeps the longest prefix that is a chain from
/// `genesis`. `Ok((chain, None))`: every row is valid; `Ok((prefix, Some(why)))`: a row is
/// not; `Err`: a read failed ([`Inspection::Damaged`] with the prefix read so far, or
/// [`Inspection::Failed`]).
fn scan(
    conn: &Connection,
    genesis: BlockHash,
) -> Result<(Vec<Header>, Option<String>), Inspection> {
    let has = |name| {
        super::has_table(conn, name).map_err(|e| classify(e, "reading the schema", Vec::new()))
    };
    // The legacy table (with a hash column) only when the current one is absent: `connect`
    // migrates it after this check.
    let (sql, legacy) = if has(super::TABLE)? {
        (
            format!(
                "SELECT height, header FROM {} ORDER BY height",
                super::TABLE
            ),
            false,
        )
    } else if has(super::LEGACY_TABLE)? {
        (
            format!(
                "SELECT height, header, hash FROM {} ORDER BY height",
                super::LEGACY_TABLE
            ),
            true,
        )
    } else {
        return Ok((Vec::new(), None));
    };
    let mut stmt = conn
        .prepare(&sql)
        .map_err(|e| classify(e, "reading the headers", Vec::new()))?;
    let mut rows = stmt
        .query([])
        .map_err(|e| classify(e, "reading the headers", Vec::new()))?;
    let mut headers: Vec<Header> = Vec::new();
    let mut prev = genesis;
    loop {
        let row = match rows.next() {
            Ok(Some(row)) => row,
            Ok(None) => return Ok((headers, None)),
            Err(e) => {
                let at = headers.len() + 1;
                return Err(classify(e, &format!("reading height {at}"), headers));
            }
        };
        let expected = headers.len() as i64 + 1;
        let problem = match check_row(row, expected, prev, legacy) {
            Ok((header, hash)) => {
                headers.push(header);
                prev = hash;
                continue;
            }
            Err(problem) => problem,
        };
        return Ok((headers, Some(problem)));
    }
}

/// One row's checks: its height is `expected`, it decodes, it links to `prev`, and in a
/// `legacy` row (a third column, the stored hash) the stored hash is the header's.
fn check_row(
    row: &rusqlite::Row<'_>,
    expected: i64,
    prev: BlockHash,
    legacy: bool,
) -> Result<(Header, BlockHash), String> {
    let height: i64 = row
        .get(0)
        .map_err(|e| format!("row after height {}: {e}", expected - 1))?;
    if height != expected {
        return Err(if height < 1 {
            format!("a row at height {height}")
        } else {
            format!("no header at height {expected} (next row is at {height})")
        });
    }
    let bad = |what: &str| format!("the header at height {height} {what}");
    let bytes: Vec<u8> = row
        .get(1)
        .map_err(|e| bad(&format!("is unreadable: {e}")))?;
    let header: Header = match deserialize(&bytes) {
        Ok(header) if bytes.len() == 80 => header,
        _ => return Err(bad("is not an 80-byte header")),
    };
    let computed = header.block_hash();
    if legacy {
        let hash: Vec<u8> = row
            .get(2)
            .map_err(|e| bad(&format!("is unreadable: {e}")))?;
        if deserialize::<BlockHash>(&hash).ok() != Some(computed) {
            return Err(bad("does not match its stored hash"));
        }
    }
    if header.prev_blockhash != prev {
        return Err(bad("does not link to the one below it"));
    }
    Ok((header, computed))
}

/// Height and hash of the last of `headers` (heights 1…), or genesis.
fn tip_of(headers: &[Header], genesis: BlockHash) -> (u32, BlockHash) {
    headers
        .last()
        .map_or((0, genesis), |h| (headers.len() as u32, h.block_hash()))
}

/// `headers` (heights 1…) as rows to write.
fn rows_of(headers: &[Header]) -> Vec<Row> {
    headers
        .iter()
        .enumerate()
        .map(|(i, header)| Row {
            height: i as u32 + 1,
            hash: header.block_hash(),
            header: *header,
        })
        .collect()
}
