//! One node per data directory, as Bitcoin Core's `LockDirectory` (`src/util/fs_helpers.cpp`):
//! an exclusive advisory lock on `<network dir>/.lock`, held for the node's life.
//!
//! The lock is the operating system's (`flock` on Unix), so it goes away with the process,
//! also after `kill -9`: no stale lock file ever needs deleting by hand. The file itself is
//! left in place (Core leaves `.lock` too).

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

/// File name of the lock inside the network's data directory (Core's `.lock`).
pub const LOCK_FILE: &str = ".lock";

/// Why the data directory could not be locked.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds the lock: another verack (or the same one started twice).
    #[error(
        "cannot obtain a lock on data directory {}: verack is probably already running \
         (stop it, or give this one another --datadir)",
        dir.display()
    )]
    Held {
        /// The locked directory.
        dir: PathBuf,
    },
    /// The lock file could not be opened or locked.
    #[error("cannot lock data directory {} ({}): {source}", dir.display(), LOCK_FILE)]
    Io {
        /// The directory.
        dir: PathBuf,
        /// The error from opening or locking.
        source: std::io::Error,
    },
}

/// The held lock; dropping it (or the process ending) releases it.
#[derive(Debug)]
pub struct DatadirLock {
    _file: File,
}

impl DatadirLock {
    /// Locks `dir` (which must exist) for this process, without waiting.
    ///
    /// # Errors
    /// [`LockError::Held`] if another process holds it, [`LockError::Io`] if the lock file
    /// cannot be created or locked.
    pub fn acquire(dir: &Path) -> Result<DatadirLock, LockError> {
        let io = |source| LockError::Io {
            dir: dir.to_path_buf(),
            source,
        };
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(LOCK_FILE))
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => Ok(DatadirLock { _file: file }),
            Err(TryLockError::WouldBlock) => Err(LockError::Held {
                dir: dir.to_path_buf(),
            }),
            Err(TryLockError::Error(e)) => Err(io(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let first = DatadirLock::acquire(dir.path()).unwrap();
        let err = DatadirLock::acquire(dir.path()).unwrap_err();
        assert!(matches!(err, LockError::Held { .. }), "{err}");
        assert!(err.to_string().contains("already running"), "{err}");
        drop(first);
        let _again = DatadirLock::acquire(dir.path()).unwrap();
        assert!(dir.path().join(LOCK_FILE).exists());
    }

    #[test]
    fn a_missing_directory_is_an_io_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = DatadirLock::acquire(&dir.path().join("absent")).unwrap_err();
        assert!(matches!(err, LockError::Io { .. }), "{err}");
    }
}
