//! Crash-safe files: replace a file atomically (write a temporary sibling, fsync it, rename it
//! over the target, fsync the directory), and move a corrupt file aside without ever
//! overwriting or deleting anything. Used for bans, the address database and anchors.

use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

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
/// its old or its new contents, never a mix. The temporary file is `<name>.tmp` beside it.
///
/// # Errors
/// A [`FileError`] naming the temporary file, the target or the directory, whichever failed;
/// the temporary file is removed (best effort) and `path` is untouched, except that a failed
/// directory fsync (Unix only; other platforms cannot open a directory) comes after the rename.
pub fn write(path: &Path, bytes: &[u8]) -> Result<(), FileError> {
    let tmp = with_suffix(path, ".tmp").map_err(|source| FileError {
        path: path.to_path_buf(),
        source,
    })?;
    let written = File::create(&tmp).and_then(|mut f| {
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
        assert!(err.path.ends_with("state.bin.tmp"));
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
