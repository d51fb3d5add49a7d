//! Anchors: the block-relay-only peers of the last run, saved at shutdown and dialled first at
//! the next start, as Bitcoin Core's `anchors.dat` (an eclipse attacker who restarts us cannot
//! also replace these). The file is JSON, written atomically, and removed once read.

use std::net::SocketAddr;
use std::path::Path;

/// At most this many anchors are kept (Core: the 2 block-relay-only peers).
pub const MAX_ANCHORS: usize = 2;

/// Reads and removes the anchors file; a missing or unreadable file gives none (logged).
pub(crate) fn take(path: &Path) -> Vec<SocketAddr> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot read anchors");
            return Vec::new();
        }
    };
    if let Err(e) = std::fs::remove_file(path) {
        tracing::warn!(path = %path.display(), error = %e, "cannot remove anchors file");
    }
    match serde_json::from_str::<Vec<SocketAddr>>(&text) {
        Ok(mut anchors) => {
            anchors.truncate(MAX_ANCHORS);
            tracing::info!(count = anchors.len(), "dialling anchors first");
            anchors
        }
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "anchors file is corrupt; ignored");
            Vec::new()
        }
    }
}

/// Writes `peers` (at most [`MAX_ANCHORS`]) atomically (see [`crate::atomic_file::write`]).
pub(crate) fn save(path: &Path, peers: &[SocketAddr]) {
    let peers = &peers[..peers.len().min(MAX_ANCHORS)];
    let json = match serde_json::to_vec(peers) {
        Ok(json) => json,
        Err(e) => return tracing::warn!(error = %e, "cannot encode anchors"),
    };
    let result = crate::atomic_file::write(path, &json);
    if let Err(e) = result {
        tracing::warn!(path = %path.display(), error = %e, "cannot save anchors");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_then_removed_and_capped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("anchors.json");
        let peers: Vec<SocketAddr> = ["1.2.3.4:8333", "[2600::1]:8333", "5.6.7.8:8333"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        save(&path, &peers);
        assert_eq!(take(&path), peers[..2].to_vec());
        assert!(!path.exists(), "removed once read");
        assert!(take(&path).is_empty());
        std::fs::write(&path, b"[not json").unwrap();
        assert!(take(&path).is_empty());
        assert!(!path.exists());
    }
}
