//! Child-process plumbing shared by the launchers: scratch directories, log tails, bounded
//! waits for exit.

use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use tokio::time::{sleep, Instant};

use crate::wait::POLL_INTERVAL;

static NEXT_DIR: AtomicU32 = AtomicU32::new(0);

/// Creates a new empty directory `<temp>/verack-<label>-<pid>-<n>` (removing any leftover of
/// that name first) and returns its path. The caller removes it.
///
/// # Panics
/// When the directory cannot be created.
pub fn scratch_dir(label: &str) -> PathBuf {
    let n = NEXT_DIR.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("verack-{label}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)
        .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    dir
}

/// The last `lines` lines of a text file, or a note saying it could not be read.
pub fn file_tail(path: &Path, lines: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("({} unreadable: {e})", path.display()),
    }
}

/// Waits up to `within` for `child` to exit on its own (polling every 50 ms); after that kills
/// it (SIGKILL) and reaps it. Returns its exit status and whether it had to be killed.
pub async fn wait_or_kill(child: &mut Child, within: Duration) -> (ExitStatus, bool) {
    let deadline = Instant::now() + within;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return (status, false);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let status = child.wait().expect("reap the killed child");
            return (status, true);
        }
        sleep(POLL_INTERVAL).await;
    }
}

/// Kills `child` (SIGKILL) if still running and reaps it; for `Drop` implementations.
pub fn kill_and_reap(child: &mut Child) {
    if let Ok(None) = child.try_wait() {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Sends SIGTERM to `child` (with the system `kill` command, so no `libc` dependency).
///
/// # Errors
/// When `kill` cannot be run or reports failure.
pub fn send_sigterm(child: &Child) -> std::io::Result<()> {
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()?;
    if status.success() {
        Ok(())
    } else {
        Err(std::io::Error::other(format!("kill -TERM: {status}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scratch_dirs_are_distinct_and_empty() {
        let a = scratch_dir("t");
        let b = scratch_dir("t");
        assert_ne!(a, b);
        assert_eq!(std::fs::read_dir(&a).unwrap().count(), 0);
        std::fs::remove_dir_all(a).unwrap();
        std::fs::remove_dir_all(b).unwrap();
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        let dir = scratch_dir("tail");
        let file = dir.join("log");
        std::fs::write(&file, "1\n2\n3\n4\n").unwrap();
        assert_eq!(file_tail(&file, 2), "3\n4");
        assert_eq!(file_tail(&file, 10), "1\n2\n3\n4");
        assert!(file_tail(&dir.join("missing"), 2).contains("unreadable"));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[tokio::test]
    async fn kills_after_the_bound() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let (status, killed) = wait_or_kill(&mut child, Duration::from_millis(100)).await;
        assert!(killed);
        assert!(!status.success());
    }
}
