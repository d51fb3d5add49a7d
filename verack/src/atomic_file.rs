//! Crash-safe files: replace a file atomically (write a temporary sibling, fsync it, rename it
//! over the target, fsync the directory), and move a corrupt file aside without ever
//! overwriting or deleting anything. Used for bans, the address database and anchors.
//!
//! Every write has its own temporary file, `<name>.tmp-<pid>-<n>` (process id, then a counter
//! within the process), created exclusively: two saves of the same file at once, from two
//! threads or two processes, each rename a complete file of their own (the last rename wins)
//! and never write into each other's temporary file. A temporary file left by a crash is
//! removed by a later successful write of the same file once it is
//! [`STALE_TEMPORARY_AGE`] old.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A temporary file of [`write()`] older than this was left by a crash (a write takes
/// milliseconds) and is removed by the next successful write of the same file: 10 minutes.
pub const STALE_TEMPORARY_AGE: Duration = Duration::from_secs(600);

/// Numbers the temporary files of this process.
static NEXT_TEMPORARY: AtomicU64 = AtomicU64::new(0);

/// A failed file operation and the path it failed on.
#[derive(Debug, thiserror::Error)]
#[error("{}: {source}", path.display())]
pub struct FileError {
    /// The file or directory the operation failed on.
    pub path: PathBuf,
    /// Why.
    #[source]
    pub source: io::Error,
}

/// Replaces `path` with `bytes` atomically: after a crash at any point the file holds either
/// its old or its new contents, never a mix. The temporary file is `<name>.tmp-<pid>-<n>`
/// beside it, this write's own (see the module documentation).
///
/// # Errors
/// A [`FileError`] naming the temporary file, the target or the directory, whichever failed;
/// the temporary file is removed (best effort) and `path` is untouched, except that a failed
/// directory fsync (Unix only; other platforms cannot open a directory) comes after the rename.
pub fn write(path: &Path, bytes: &[u8]) -> Result<(), FileError> {
    let n = NEXT_TEMPORARY.fetch_add(1, Ordering::Relaxed);
    let tmp = with_suffix(path, &format!(".tmp-{}-{n}", std::process::id())).map_err(|source| {
        FileError {
            path: path.to_path_buf(),
            source,
        }
    })?;
    let written = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .and_then(|mut f| {
            f.write_all(bytes)?;
            f.sync_all()
        });
    if let Err(source) = written {
        let _ = fs::remove_file(&tmp);
        return Err(FileError { path: tmp, source });
    }
    if let Err(source) = fs::rename(&tmp, path) {
        let _ = fs::remove_file(&tmp);
        return Err(FileError {
            path: path.to_path_buf(),
            source,
        });
    }
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    remove_stale_temporaries(path);
    let synced = File::open(dir).and_then(|d| d.sync_all());
    if cfg!(unix) {
        synced.map_err(|source| FileError {
            path: dir.to_path_buf(),
            source,
        })
    } else {
        Ok(())
    }
}

/// Renames `path` to a fresh `<name>.corrupt-<now>[.N]` (`now` in Unix seconds) and returns
/// the new path; never overwrites an existing file. At most 1000 names are tried, so a
/// directory full of leftovers cannot make this spin.
///
/// # Errors
/// The I/O error of the rename (with the target in the message), or `AlreadyExists` when every
/// name is taken.
pub fn move_aside(path: &Path, now: u64) -> io::Result<PathBuf> {
    let base = format!(".corrupt-{now}");
    for n in 0..1000u32 {
        let suffix = if n == 0 {
            base.clone()
        } else {
            format!("{base}.{n}")
        };
        let target = with_suffix(path, &suffix)?;
        match fs::symlink_metadata(&target) {
            Ok(_) => continue,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        return fs::rename(path, &target)
            .map(|()| target.clone())
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!(
                        "could not move {} aside to {}: {e}",
                        path.display(),
                        target.display()
                    ),
                )
            });
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        format!("every name {}{base}[.N] is taken", path.display()),
    ))
}

/// Removes (best effort) temporary files of `path` left by crashed writes: siblings named
/// `<name>.tmp…` last modified [`STALE_TEMPORARY_AGE`] ago or more. A write in progress is
/// younger than that, so it is never touched.
fn remove_stale_temporaries(path: &Path) {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return;
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    // Ours only: `<name>.tmp-<pid>-<n>`, and the single `<name>.tmp` of older versions; not a
    // neighbour such as `<name>.tmpbackup`.
    let mut old = OsString::from(name);
    old.push(".tmp");
    let mut prefix = old.clone();
    prefix.push("-");
    let (old, prefix) = (old.as_encoded_bytes(), prefix.as_encoded_bytes());
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let file = entry.file_name();
        let file = file.as_encoded_bytes();
        if !(file.starts_with(prefix) || file == old) {
            continue;
        }
        let stale = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age >= STALE_TEMPORARY_AGE);
        if stale {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// `path` with `suffix` appended to its file name (not replacing an extension).
fn with_suffix(path: &Path, suffix: &str) -> io::Result<PathBuf> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let mut new_name = OsString::from(name);
    new_name.push(suffix);
    Ok(path.with_file_name(new_name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_replace_and_leave_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.bin");
        write(&path, b"one").unwrap();
        write(&path, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no .tmp left behind"
        );
        let err = write(&dir.path().join("missing/state.bin"), b"x").unwrap_err();
        let failed = err.path.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            failed.starts_with(&format!("state.bin.tmp-{}-", std::process::id())),
            "{failed}"
        );
    }

    #[test]
    fn concurrent_writes_never_share_a_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("banlist.json");
        let contents: Vec<Vec<u8>> = (0..8u8).map(|i| vec![b'a' + i; 64 * 1024]).collect();
        std::thread::scope(|scope| {
            for bytes in &contents {
                let path = &path;
                scope.spawn(move || {
                    for _ in 0..20 {
                        write(path, bytes).expect("every concurrent write succeeds");
                    }
                });
            }
        });
        let last = fs::read(&path).unwrap();
        assert!(contents.contains(&last), "one complete write, not a mix");
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "no temporary file left: {names:?}");
    }

    #[test]
    fn stale_temporaries_are_removed_fresh_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("peers.dat");
        let stale = dir.path().join("peers.dat.tmp");
        let crashed = dir.path().join("peers.dat.tmp-1-0");
        let fresh = dir.path().join("peers.dat.tmp-2-0");
        let other = dir.path().join("anchors.json.tmp");
        let neighbour = dir.path().join("peers.dat.tmpbackup");
        for f in [&stale, &crashed, &fresh, &other, &neighbour] {
            fs::write(f, b"x").unwrap();
        }
        let old = std::time::SystemTime::now() - STALE_TEMPORARY_AGE - Duration::from_secs(1);
        for f in [&stale, &crashed, &other, &neighbour] {
            File::options()
                .write(true)
                .open(f)
                .unwrap()
                .set_modified(old)
                .unwrap();
        }
        write(&path, b"new").unwrap();
        assert!(!stale.exists() && !crashed.exists());
        assert!(fresh.exists(), "a write in progress is never touched");
        assert!(other.exists(), "only this file's temporaries");
        assert!(
            neighbour.exists(),
            "not a file that merely starts with `<name>.tmp`"
        );
    }

    #[test]
    fn move_aside_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("peers.dat");
        fs::write(&path, b"first").unwrap();
        let a = move_aside(&path, 7).unwrap();
        fs::write(&path, b"second").unwrap();
        let b = move_aside(&path, 7).unwrap();
        assert_eq!(a.file_name().unwrap(), "peers.dat.corrupt-7");
        assert_eq!(b.file_name().unwrap(), "peers.dat.corrupt-7.1");
        assert_eq!(
            (fs::read(&a).unwrap(), fs::read(&b).unwrap()),
            (b"first".to_vec(), b"second".to_vec())
        );
        assert!(!path.exists());
    }
}
