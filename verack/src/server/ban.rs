//! Peer misbehaviour scoring and the persistent list of banned subnets.
//!
//! Two independent pieces, both pure logic that take time as an input so they can be tested
//! without sleeping and driven by whatever clock the server uses:
//!
//! - [`BanScore`]: btcd's `dynamicBanScore`, a per-peer score with a persistent part and a
//!   transient part that decays with a 60 s half-life. Time is a monotonic [`Instant`]
//!   because the score lives only as long as the connection.
//! - [`BanList`]: Bitcoin Core's `BanMan` model, bans of whole subnets until a Unix time,
//!   persisted to a versioned JSON file (the role of Core's `banlist.json`). Time is Unix
//!   seconds because bans must survive restarts, which a monotonic clock cannot express.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ipnet::{IpNet, Ipv4Net};
use serde::{Deserialize, Serialize};
use tracing::{error, warn};

/// Score at or above which a peer should be disconnected and banned: 100.
///
/// Source: btcd's `DefaultBanThreshold` (and Bitcoin Core's former `-banscore` default).
/// [`BanScore`] itself does not enforce it; the caller compares the returned total.
pub const DEFAULT_BAN_THRESHOLD: u32 = 100;

/// How long a ban lasts when the caller has no reason to choose otherwise: 86 400 s (24 h).
///
/// Source: Bitcoin Core's `DEFAULT_MISBEHAVING_BANTIME`.
pub const DEFAULT_BAN_DURATION_SECS: u64 = 24 * 60 * 60;

/// Half-life of the transient part of a [`BanScore`]: 60 s.
///
/// Source: btcd's `Halflife`. Short enough that bursts of borderline behaviour (e.g. a peer
/// re-requesting data after a reorg) are forgiven within minutes, long enough that a flood
/// accumulates to the threshold.
pub const HALF_LIFE: Duration = Duration::from_secs(60);

/// Age after which the transient part of a [`BanScore`] counts as zero: 1800 s (30 half-lives).
///
/// Source: btcd's `Lifetime`. After 30 half-lives any transient value below 2^30 has decayed
/// below 1, so this cut-off only spares the floating-point work, it does not change results
/// for realistic scores.
pub const TRANSIENT_LIFETIME: Duration = Duration::from_secs(30 * 60);

/// Most entries a [`BanList`] holds: 100 000.
///
/// Bans are triggered by remote peers, and an attacker with many addresses (an IPv6 /48 has
/// 2^80) could otherwise grow the list, its file and every lookup without limit. When a new
/// subnet is banned while the list is full, the entry expiring soonest is evicted: it is the
/// one that would have lifted first anyway, so the least protection is lost. Not from Core,
/// whose list is unbounded.
pub const MAX_BANS: usize = 100_000;

/// Version written to, and the only one accepted from, the ban file's `"version"` field.
///
/// A version number lets a later format be migrated explicitly; any other value is treated as
/// corrupt (moved aside) rather than half-understood.
pub const BAN_FILE_VERSION: u64 = 1;

// ---------------------------------------------------------------------------------------------
// BanScore
// ---------------------------------------------------------------------------------------------

/// A peer's misbehaviour score: `persistent + transient · 2^(−Δt / 60 s)`.
///
/// Source: btcd's `dynamicBanScore` (`peer/banscore.go`). The persistent part is for
/// offences that are never acceptable (an invalid block), the transient part for behaviour
/// that is only bad in volume (too many unsolicited messages): it halves every
/// [`HALF_LIFE`] and is treated as zero after [`TRANSIENT_LIFETIME`].
///
/// Time is passed in by the caller as [`Instant`]s; nothing here reads a clock. An `Instant`
/// earlier than the last one seen is treated as "no time has passed", so a confused caller can
/// never make misbehaviour be forgiven early. All arithmetic saturates at `u32::MAX`.
///
/// Unlike btcd, which works in whole seconds, decay is continuous (sub-second precision).
/// The decayed transient part is truncated towards zero when added to the total, as btcd does.
/// The default value is a zero score.
#[derive(Debug, Clone, Default)]
pub struct BanScore {
    persistent: u32,
    transient: f64,
    /// When `transient` was last brought up to date; `None` until the first transient increase.
    last: Option<Instant>,
}

impl BanScore {
    /// A zero score.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `persistent` and `transient` points at time `now` and returns the new total score.
    ///
    /// The existing transient part is first decayed to `now`, so points added later weigh
    /// more than points added earlier. Returns the same as [`value`](Self::value) at `now`.
    /// Source: btcd's `dynamicBanScore.Increase`.
    pub fn increase(&mut self, persistent: u32, transient: u32, now: Instant) -> u32 {
        self.persistent = self.persistent.saturating_add(persistent);
        if transient > 0 {
            self.transient = self.decayed_transient(now) + f64::from(transient);
            // Never move the reference point backwards: a stale `now` must not make the
            // accumulated transient part decay again from an earlier instant.
            self.last = Some(self.last.map_or(now, |last| last.max(now)));
        }
        self.value(now)
    }

    /// The total score at time `now`: the persistent part plus the transient part decayed by
    /// `2^(−Δt / 60 s)`, truncated to an integer. Source: btcd's `dynamicBanScore.Int`.
    pub fn value(&self, now: Instant) -> u32 {
        self.persistent
            .saturating_add(transient_to_u32(self.decayed_transient(now)))
    }

    /// Sets both parts back to zero, e.g. when an operator forgives a peer.
    /// Source: btcd's `dynamicBanScore.Reset`.
    pub fn reset(&mut self) {
        *self = Self::default();
    }

    fn decayed_transient(&self, now: Instant) -> f64 {
        let Some(last) = self.last else {
            return 0.0;
        };
        let elapsed = now.saturating_duration_since(last);
        if elapsed > TRANSIENT_LIFETIME {
            return 0.0;
        }
        let half_lives = elapsed.as_secs_f64() / HALF_LIFE.as_secs_f64();
        self.transient * (-half_lives).exp2()
    }
}

/// Truncates towards zero like btcd's `uint32(float64)`; `as` saturates and maps NaN to 0,
/// so no input can panic here.
fn transient_to_u32(value: f64) -> u32 {
    value as u32
}

// ---------------------------------------------------------------------------------------------
// BanList
// ---------------------------------------------------------------------------------------------

/// One ban: when it was made, when it lifts, and why.
///
/// Serialized (with the subnet alongside) in the ban file; see [`BanList::save`].
/// Source: Bitcoin Core's `CBanEntry` (`nCreateTime`, `nBanUntil`), plus a free-text reason
/// for operators.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BanEntry {
    /// When the ban was made, Unix time in seconds.
    pub banned_at: u64,
    /// When the ban lifts, Unix time in seconds. The ban is in force while `now < until`.
    pub until: u64,
    /// Why the ban was made, for operators; never interpreted.
    pub reason: String,
}

impl BanEntry {
    /// Whether the ban has lifted at `now_unix` (Unix seconds), i.e. `until <= now_unix`.
    /// Source: Core's `BanMan::IsBanned` bans while `now < nBanUntil`.
    pub fn is_expired(&self, now_unix: u64) -> bool {
        self.until <= now_unix
    }
}

/// Errors reading or writing the ban file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BanFileError {
    /// The file (or its temporary sibling, or its directory) could not be read, written,
    /// synced or renamed. When [`BanList::load`] could not move a corrupt file aside, this is
    /// the error returned and the message names the intended destination.
    #[error("ban file I/O error on {}: {source}", path.display())]
    Io {
        /// The file the operation was about.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The file could not be parsed (invalid JSON, truncated, wrong shape, or a format
    /// version other than [`BAN_FILE_VERSION`]). It was renamed to `moved_to` (never deleted)
    /// and the bans it held are not in force.
    #[error(
        "ban file {} is corrupt ({reason}); moved it to {} and started with no bans",
        path.display(),
        moved_to.display()
    )]
    Corrupt {
        /// Where the file was.
        path: PathBuf,
        /// Where it is now: `<name>.corrupt-<unix seconds>` in the same directory.
        moved_to: PathBuf,
        /// What was wrong with it.
        reason: String,
    },
}

/// The set of banned subnets, each with an expiry in Unix seconds.
///
/// Source: Bitcoin Core's `BanMan` (`banned_nets` keyed by `CSubNet`). A single address is
/// banned as its host route (`/32` or `/128`, e.g. `IpNet::from(ip)`). Subnets are stored in
/// canonical form: host bits cleared (`1.2.3.4/24` becomes `1.2.3.0/24`) and IPv4-mapped
/// IPv6 subnets (`::ffff:1.2.3.0/120`) as their IPv4 subnet, so that the same network is never
/// two entries and lookups of mapped addresses find IPv4 bans.
///
/// Holds at most [`MAX_BANS`] entries; see there for the eviction rule. Expired entries stop
/// matching at once but stay stored until [`sweep`](Self::sweep), eviction, or a
/// [`save`](Self::save) then [`load`](Self::load) removes them. The default value is an empty list.
#[derive(Debug, Clone, Default)]
pub struct BanList {
    bans: BTreeMap<IpNet, BanEntry>,
    /// Index of `bans` by expiry, so that eviction and sweeping do not scan every entry.
    /// Invariant: contains exactly `(entry.until, net)` for each `(net, entry)` in `bans`.
    by_expiry: BTreeSet<(u64, IpNet)>,
}

impl BanList {
    /// An empty list.
    pub fn new() -> Self {
        Self::default()
    }

    /// Bans `subnet` from `now_unix` until `until_unix` (both Unix seconds) for `reason`.
    ///
    /// If the subnet is already banned, the entry with the later expiry wins whole (as in
    /// Core's `BanMan::Ban`): a shorter new ban never shortens an existing one, and a longer
    /// one replaces it with the new time and reason. A ban with `until_unix <= now_unix` would
    /// never be in force and is ignored. If adding a new subnet would exceed [`MAX_BANS`], the
    /// stored entry expiring soonest is evicted and returned (also logged at `warn`).
    pub fn ban(
        &mut self,
        subnet: IpNet,
        until_unix: u64,
        reason: String,
        now_unix: u64,
    ) -> Option<(IpNet, BanEntry)> {
        if until_unix <= now_unix {
            return None;
        }
        let net = canonical_net(subnet);
        if let Some(existing) = self.bans.get(&net) {
            if !existing.is_expired(now_unix) && existing.until >= until_unix {
                return None;
            }
        }
        let entry = BanEntry {
            banned_at: now_unix,
            until: until_unix,
            reason,
        };
        self.insert(net, entry)
    }

    /// Lifts the ban on exactly `subnet` (in canonical form, see [`BanList`]); returns whether
    /// there was one. Bans of other subnets that contain or are contained in it are kept,
    /// as in Core's `BanMan::Unban`.
    pub fn unban(&mut self, subnet: &IpNet) -> bool {
        self.remove(&canonical_net(*subnet)).is_some()
    }

    /// Lifts every ban.
    pub fn clear(&mut self) {
        self.bans.clear();
        self.by_expiry.clear();
    }

    /// The ban in force at `now_unix` (Unix seconds) whose subnet contains `ip`, if any.
    ///
    /// IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) are looked up as their IPv4 address,
    /// because a dual-stack listener reports IPv4 peers that way and the ban must still apply.
    /// When several bans contain `ip`, the one lasting longest is returned, since that is the
    /// one that decides when the address may connect again.
    pub fn is_banned(&self, ip: IpAddr, now_unix: u64) -> Option<&BanEntry> {
        let ip = ip.to_canonical();
        let max_prefix = match ip {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        };
        // One map lookup per prefix length (at most 129) rather than a scan of up to
        // MAX_BANS entries: this runs for every inbound connection.
        (0..=max_prefix)
            .filter_map(|len| IpNet::new(ip, len).ok())
            .filter_map(|net| self.bans.get(&net.trunc()))
            .filter(|entry| !entry.is_expired(now_unix))
            .max_by_key(|entry| entry.until)
    }

    /// The bans in force at `now_unix` (Unix seconds), sorted by subnet (IPv4 before IPv6,
    /// then by address and prefix length). Expired entries are left out but not removed.
    pub fn list(&self, now_unix: u64) -> Vec<(IpNet, BanEntry)> {
        self.bans
            .iter()
            .filter(|(_, entry)| !entry.is_expired(now_unix))
            .map(|(net, entry)| (*net, entry.clone()))
            .collect()
    }

    /// Removes every entry expired at `now_unix` (Unix seconds) and returns how many.
    /// Source: Core's `BanMan::SweepBanned`.
    pub fn sweep(&mut self, now_unix: u64) -> usize {
        let mut removed = 0;
        while let Some(&(until, net)) = self.by_expiry.first() {
            if until > now_unix {
                break;
            }
            self.remove(&net);
            removed += 1;
        }
        removed
    }

    /// Number of stored entries, including expired ones not yet swept.
    pub fn len(&self) -> usize {
        self.bans.len()
    }

    /// Whether no entries are stored (expired ones not yet swept count as stored).
    pub fn is_empty(&self) -> bool {
        self.bans.is_empty()
    }

    /// Reads the ban file at `path`, dropping entries expired at `now_unix` (Unix seconds).
    ///
    /// Never fails outright: a node must start even if its ban file is damaged, so the
    /// result is always a usable list, with an error beside it to report.
    ///
    /// # Errors
    ///
    /// - No file at `path`: an empty list and no error (first start).
    /// - The file cannot be read (permissions, a directory, …): an empty list and
    ///   [`BanFileError::Io`]; the file is left where it is.
    /// - The file does not parse (invalid JSON, truncated, wrong shape, `"version"` other
    ///   than [`BAN_FILE_VERSION`]): it is renamed to `<name>.corrupt-<now_unix>` in the same
    ///   directory (with `.1`, `.2`, … appended if that name is taken, so an earlier copy is
    ///   never overwritten), logged with `tracing::error!`, and an empty list is returned
    ///   with [`BanFileError::Corrupt`]. Keeping the bytes lets an operator recover bans by
    ///   hand; deleting them would silently unban every attacker.
    /// - The corrupt file cannot be renamed: an empty list and [`BanFileError::Io`] naming
    ///   the intended destination; the file is left in place, and a later
    ///   [`save`](Self::save) to the same path will replace it.
    ///
    /// Entries that parse but repeat a subnet are merged by [`ban`](Self::ban)'s rule; more
    /// than [`MAX_BANS`] entries are cut down by its eviction rule.
    pub fn load(path: &Path, now_unix: u64) -> (BanList, Option<BanFileError>) {
        let bytes = match fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return (BanList::new(), None),
            Err(source) => {
                error!(path = %path.display(), error = %source, "cannot read ban file; starting with no bans");
                return (
                    BanList::new(),
                    Some(BanFileError::Io {
                        path: path.to_path_buf(),
                        source,
                    }),
                );
            }
        };
        match parse_ban_file(&bytes) {
            Ok(file) => {
                let mut list = BanList::new();
                for record in file.bans {
                    if record.until <= now_unix {
                        continue;
                    }
                    list.load_record(record, now_unix);
                }
                (list, None)
            }
            Err(reason) => match crate::atomic_file::move_aside(path, now_unix) {
                Ok(moved_to) => {
                    error!(
                        path = %path.display(),
                        moved_to = %moved_to.display(),
                        %reason,
                        "ban file is corrupt; moved it aside and started with no bans"
                    );
                    (
                        BanList::new(),
                        Some(BanFileError::Corrupt {
                            path: path.to_path_buf(),
                            moved_to,
                            reason,
                        }),
                    )
                }
                Err(source) => {
                    error!(
                        path = %path.display(),
                        %reason,
                        error = %source,
                        "ban file is corrupt and could not be moved aside; started with no bans"
                    );
                    (
                        BanList::new(),
                        Some(BanFileError::Io {
                            path: path.to_path_buf(),
                            source,
                        }),
                    )
                }
            },
        }
    }

    /// Writes every stored entry to `path` atomically, as pretty-printed JSON:
    /// `{"version": 1, "bans": [{"subnet": "1.2.3.0/24", "banned_at": …, "until": …,
    /// "reason": "…"}]}` with times in Unix seconds, sorted by subnet.
    ///
    /// Atomic so that a crash or power loss leaves either the old file or the new one, never
    /// a torn file that the next [`load`](Self::load) would have to move aside: the data go
    /// to a temporary file of this save's own, `<path>.tmp-<pid>-<n>`, in the same directory
    /// (a rename is only atomic within a filesystem; see [`crate::atomic_file`]), which is
    /// synced, renamed over `path`, and then the directory is synced so the rename itself is
    /// durable. Source: Core's `CBanDB::Write`, which writes `banlist.json.tmp` and renames it
    /// over `banlist.json` (one name for every save; ours differ so that two saves at once
    /// never write into the same temporary file).
    ///
    /// Expired entries not yet swept are written too; `load` drops them.
    ///
    /// # Errors
    ///
    /// [`BanFileError::Io`] if the temporary file cannot be created, written, synced or
    /// renamed (the temporary file is then removed, best effort, and `path` is untouched), or
    /// if the directory cannot be synced on Unix. On other platforms, where a directory cannot
    /// be opened for syncing, that last step's error is ignored.
    pub fn save(&self, path: &Path) -> Result<(), BanFileError> {
        let file = BanFileOut {
            version: BAN_FILE_VERSION,
            bans: self
                .bans
                .iter()
                .map(|(net, entry)| BanRecordOut {
                    subnet: *net,
                    banned_at: entry.banned_at,
                    until: entry.until,
                    reason: &entry.reason,
                })
                .collect(),
        };
        let mut json = serde_json::to_vec_pretty(&file).map_err(|e| BanFileError::Io {
            path: path.to_path_buf(),
            source: io::Error::new(io::ErrorKind::InvalidData, e),
        })?;
        json.push(b'\n');

        crate::atomic_file::write(path, &json).map_err(|e| BanFileError::Io {
            path: e.path,
            source: e.source,
        })
    }

    fn load_record(&mut self, record: BanRecordIn, now_unix: u64) {
        let net = canonical_net(record.subnet);
        if let Some(existing) = self.bans.get(&net) {
            if existing.until >= record.until {
                return;
            }
        }
        let entry = BanEntry {
            banned_at: record.banned_at,
            until: record.until,
            reason: record.reason,
        };
        if let Some((evicted, _)) = self.insert(net, entry) {
            warn!(%evicted, now_unix, "ban file holds more than MAX_BANS entries; dropped the one expiring soonest");
        }
    }

    /// Inserts or replaces `net`, keeping the index in step and the size within `MAX_BANS`.
    fn insert(&mut self, net: IpNet, entry: BanEntry) -> Option<(IpNet, BanEntry)> {
        let mut evicted = None;
        if self.remove(&net).is_none() && self.bans.len() >= MAX_BANS {
            if let Some((_, soonest)) = self.by_expiry.first().copied() {
                if let Some(old) = self.remove(&soonest) {
                    warn!(evicted = %soonest, until = old.until, "ban list full; evicted the ban expiring soonest");
                    evicted = Some((soonest, old));
                }
            }
        }
        self.by_expiry.insert((entry.until, net));
        self.bans.insert(net, entry);
        evicted
    }

    fn remove(&mut self, net: &IpNet) -> Option<BanEntry> {
        let entry = self.bans.remove(net)?;
        self.by_expiry.remove(&(entry.until, *net));
        Some(entry)
    }
}

/// Clears host bits and turns IPv4-mapped IPv6 subnets into IPv4 ones, so each network has
/// exactly one key and matches `IpAddr::to_canonical` lookups.
fn canonical_net(net: IpNet) -> IpNet {
    if let IpNet::V6(v6) = net {
        if let (Some(v4), Some(len)) = (v6.addr().to_ipv4_mapped(), v6.prefix_len().checked_sub(96))
        {
            if let Ok(v4net) = Ipv4Net::new(v4, len) {
                return IpNet::V4(v4net.trunc());
            }
        }
    }
    net.trunc()
}

// ---------------------------------------------------------------------------------------------
// File format
// ---------------------------------------------------------------------------------------------

#[derive(Serialize)]
struct BanFileOut<'a> {
    version: u64,
    bans: Vec<BanRecordOut<'a>>,
}

#[derive(Serialize)]
struct BanRecordOut<'a> {
    subnet: IpNet,
    banned_at: u64,
    until: u64,
    reason: &'a str,
}

#[derive(Deserialize)]
struct BanFileIn {
    // `version` is checked by `parse_ban_file` before this struct is deserialized.
    bans: Vec<BanRecordIn>,
}

#[derive(Deserialize)]
struct BanRecordIn {
    subnet: IpNet,
    banned_at: u64,
    until: u64,
    reason: String,
}

/// Parses in two steps so that a future version with a different shape is reported as
/// "unsupported version" rather than as a confusing field error.
fn parse_ban_file(bytes: &[u8]) -> Result<BanFileIn, String> {
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| format!("invalid JSON: {e}"))?;
    let version = value
        .get("version")
        .ok_or_else(|| "no \"version\" field".to_string())?;
    if version.as_u64() != Some(BAN_FILE_VERSION) {
        return Err(format!(
            "unsupported format version {version} (this build reads version {BAN_FILE_VERSION})"
        ));
    }
    serde_json::from_value(value).map_err(|e| format!("invalid version-1 ban file: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const NOW: u64 = 1_700_000_000;

    fn net(s: &str) -> IpNet {
        s.parse().expect("test subnet parses")
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("test address parses")
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    // ----- BanScore ---------------------------------------------------------------------------

    #[test]
    fn transient_halves_after_60s_and_quarters_after_120s() {
        let t0 = Instant::now();
        let mut score = BanScore::new();
        assert_eq!(score.increase(0, 100, t0), 100);
        assert_eq!(score.value(t0), 100);
        assert_eq!(score.value(t0 + secs(60)), 50);
        assert_eq!(score.value(t0 + secs(120)), 25);
        assert_eq!(score.value(t0 + secs(30)), 70); // 100 / √2 = 70.7, truncated
    }

    #[test]
    fn persistent_part_never_decays() {
        let t0 = Instant::now();
        let mut score = BanScore::new();
        assert_eq!(score.increase(30, 40, t0), 70);
        assert_eq!(score.value(t0 + secs(60)), 50);
        assert_eq!(score.value(t0 + secs(3600)), 30);
        assert_eq!(score.value(t0 + secs(365 * 24 * 3600)), 30);
        assert_eq!(score.increase(5, 0, t0 + secs(7200)), 35);
    }

    #[test]
    fn transient_is_decayed_before_adding() {
        let t0 = Instant::now();
        let mut score = BanScore::new();
        score.increase(0, 100, t0);
        // 100 decayed to 50, plus 10; the sum then decays from t0+60.
        assert_eq!(score.increase(0, 10, t0 + secs(60)), 60);
        assert_eq!(score.value(t0 + secs(120)), 30);
    }

    #[test]
    fn transient_is_zero_after_lifetime() {
        let t0 = Instant::now();
        let mut score = BanScore::new();
        score.increase(0, u32::MAX, t0);
        assert!(score.value(t0 + TRANSIENT_LIFETIME) > 0);
        assert_eq!(score.value(t0 + TRANSIENT_LIFETIME + secs(1)), 0);
    }

    #[test]
    fn threshold_crossing_arithmetic() {
        let t0 = Instant::now();
        let mut score = BanScore::new();
        assert!(score.increase(0, 50, t0) < DEFAULT_BAN_THRESHOLD);
        // A second burst a minute later finds the first one halved: 25 + 50.
        assert_eq!(score.increase(0, 50, t0 + secs(60)), 75);
        assert!(score.value(t0 + secs(60)) < DEFAULT_BAN_THRESHOLD);
        // 75 + 25 at the same instant reaches the threshold exactly.
        assert_eq!(score.increase(0, 25, t0 + secs(60)), DEFAULT_BAN_THRESHOLD);

        let mut score = BanScore::new();
        assert_eq!(score.increase(99, 0, t0), 99);
        assert!(score.value(t0) < DEFAULT_BAN_THRESHOLD);
        assert_eq!(score.increase(1, 0, t0 + secs(1000)), DEFAULT_BAN_THRESHOLD);
    }

    #[test]
    fn earlier_instant_does_not_forgive() {
        let t0 = Instant::now();
        let mut score = BanScore::new();
        score.increase(0, 80, t0 + secs(60));
        assert_eq!(score.value(t0), 80);
        assert_eq!(score.increase(0, 20, t0), 100);
        // The reference point stayed at t0+60, so a minute after that the score is halved.
        assert_eq!(score.value(t0 + secs(120)), 50);
    }

    #[test]
    fn score_saturates_and_resets() {
        let t0 = Instant::now();
        let mut score = BanScore::new();
        assert_eq!(score.increase(u32::MAX, u32::MAX, t0), u32::MAX);
        assert_eq!(score.increase(u32::MAX, u32::MAX, t0), u32::MAX);
        score.reset();
        assert_eq!(score.value(t0), 0);
        assert_eq!(score.increase(0, 10, t0), 10);
    }

    // ----- BanList: ban, unban, lookup ----------------------------------------------------------

    #[test]
    fn ban_unban_and_clear() {
        let mut list = BanList::new();
        let a = ip("203.0.113.7");
        assert!(list.is_banned(a, NOW).is_none());
        assert!(list
            .ban(IpNet::from(a), NOW + 100, "spam".into(), NOW)
            .is_none());
        let entry = list.is_banned(a, NOW).expect("banned");
        assert_eq!(
            entry,
            &BanEntry {
                banned_at: NOW,
                until: NOW + 100,
                reason: "spam".into()
            }
        );
        assert!(list.is_banned(ip("203.0.113.8"), NOW).is_none());
        assert!(list.unban(&net("203.0.113.7/32")));
        assert!(!list.unban(&net("203.0.113.7/32")));
        assert!(list.is_banned(a, NOW).is_none());

        list.ban(net("10.0.0.0/8"), NOW + 1, "a".into(), NOW);
        list.ban(net("2001:db8::/32"), NOW + 1, "b".into(), NOW);
        assert_eq!(list.len(), 2);
        list.clear();
        assert!(list.is_empty());
        assert!(list.is_banned(ip("10.1.2.3"), NOW).is_none());
    }

    #[test]
    fn ban_extends_but_never_shortens() {
        let mut list = BanList::new();
        let n = net("198.51.100.0/24");
        list.ban(n, NOW + 100, "first".into(), NOW);
        list.ban(n, NOW + 50, "shorter".into(), NOW + 10);
        let e = list
            .is_banned(ip("198.51.100.1"), NOW + 10)
            .expect("banned");
        assert_eq!(
            (e.until, e.reason.as_str(), e.banned_at),
            (NOW + 100, "first", NOW)
        );
        list.ban(n, NOW + 500, "longer".into(), NOW + 20);
        let e = list
            .is_banned(ip("198.51.100.1"), NOW + 20)
            .expect("banned");
        assert_eq!(
            (e.until, e.reason.as_str(), e.banned_at),
            (NOW + 500, "longer", NOW + 20)
        );
        assert_eq!(list.len(), 1);
        // An already-expired ban is ignored rather than stored.
        list.ban(net("192.0.2.1/32"), NOW, "past".into(), NOW);
        assert_eq!(list.len(), 1);
    }

    #[test]
    fn ipv4_slash24_containment() {
        let mut list = BanList::new();
        list.ban(net("192.0.2.0/24"), NOW + 60, "r".into(), NOW);
        assert!(list.is_banned(ip("192.0.2.0"), NOW).is_some());
        assert!(list.is_banned(ip("192.0.2.255"), NOW).is_some());
        assert!(list.is_banned(ip("192.0.3.0"), NOW).is_none());
        assert!(list.is_banned(ip("192.0.1.255"), NOW).is_none());
    }

    #[test]
    fn ipv6_slash64_containment() {
        let mut list = BanList::new();
        list.ban(net("2001:db8:1:2::/64"), NOW + 60, "r".into(), NOW);
        assert!(list.is_banned(ip("2001:db8:1:2::1"), NOW).is_some());
        assert!(list
            .is_banned(ip("2001:db8:1:2:ffff:ffff:ffff:ffff"), NOW)
            .is_some());
        assert!(list.is_banned(ip("2001:db8:1:3::1"), NOW).is_none());
        assert!(list.is_banned(ip("192.0.2.1"), NOW).is_none());
    }

    #[test]
    fn ipv4_mapped_ipv6_is_treated_as_ipv4() {
        let mut list = BanList::new();
        list.ban(net("192.0.2.0/24"), NOW + 60, "v4".into(), NOW);
        let mapped = IpAddr::V6(Ipv4Addr::new(192, 0, 2, 9).to_ipv6_mapped());
        assert!(list.is_banned(mapped, NOW).is_some());
        assert!(list
            .is_banned(
                IpAddr::V6(Ipv4Addr::new(192, 0, 3, 9).to_ipv6_mapped()),
                NOW
            )
            .is_none());

        // A ban given as a mapped address is stored as, and matches, the IPv4 address.
        let mapped_host = IpAddr::V6(Ipv4Addr::new(198, 51, 100, 4).to_ipv6_mapped());
        list.ban(IpNet::from(mapped_host), NOW + 60, "mapped".into(), NOW);
        assert!(list.is_banned(ip("198.51.100.4"), NOW).is_some());
        let subnets: Vec<IpNet> = list.list(NOW).into_iter().map(|(n, _)| n).collect();
        assert_eq!(subnets, vec![net("192.0.2.0/24"), net("198.51.100.4/32")]);
        assert!(list.unban(&net("::ffff:198.51.100.4/128")));
        // A mapped /120 is the IPv4 /24.
        list.ban(net("::ffff:203.0.113.0/120"), NOW + 60, "m".into(), NOW);
        assert!(list.is_banned(ip("203.0.113.200"), NOW).is_some());
        // Plain IPv6 is not confused with IPv4.
        assert!(list
            .is_banned(
                IpAddr::V6(Ipv6Addr::new(0, 0, 0, 0, 0, 0, 0xc000, 0x0209)),
                NOW
            )
            .is_none());
    }

    #[test]
    fn subnets_are_stored_canonically() {
        let mut list = BanList::new();
        list.ban(net("192.0.2.77/24"), NOW + 60, "r".into(), NOW);
        assert_eq!(list.list(NOW)[0].0, net("192.0.2.0/24"));
        assert!(list.unban(&net("192.0.2.1/24")));
    }

    #[test]
    fn overlapping_bans_report_the_longest() {
        let mut list = BanList::new();
        list.ban(net("192.0.2.0/24"), NOW + 1000, "wide".into(), NOW);
        list.ban(net("192.0.2.5/32"), NOW + 10, "narrow".into(), NOW);
        assert_eq!(
            list.is_banned(ip("192.0.2.5"), NOW)
                .map(|e| e.reason.as_str()),
            Some("wide")
        );
        list.unban(&net("192.0.2.0/24"));
        assert_eq!(
            list.is_banned(ip("192.0.2.5"), NOW)
                .map(|e| e.reason.as_str()),
            Some("narrow")
        );
    }

    #[test]
    fn expiry_list_and_sweep() {
        let mut list = BanList::new();
        list.ban(net("2001:db8::/32"), NOW + 30, "c".into(), NOW);
        list.ban(net("192.0.2.0/24"), NOW + 10, "a".into(), NOW);
        list.ban(net("10.0.0.0/8"), NOW + 20, "b".into(), NOW);
        let subnets: Vec<IpNet> = list.list(NOW).into_iter().map(|(n, _)| n).collect();
        assert_eq!(
            subnets,
            vec![net("10.0.0.0/8"), net("192.0.2.0/24"), net("2001:db8::/32")]
        );

        assert!(list.is_banned(ip("192.0.2.1"), NOW + 9).is_some());
        // In force while now < until.
        assert!(list.is_banned(ip("192.0.2.1"), NOW + 10).is_none());
        assert_eq!(list.list(NOW + 10).len(), 2);
        assert_eq!(list.len(), 3, "expired entries stay until swept");

        assert_eq!(list.sweep(NOW + 9), 0);
        assert_eq!(list.sweep(NOW + 20), 2);
        assert_eq!(list.len(), 1);
        assert_eq!(list.list(NOW + 20)[0].0, net("2001:db8::/32"));
        assert_eq!(list.sweep(NOW + 20), 0);
        assert_eq!(list.sweep(u64::MAX), 1);
        assert!(list.is_empty());
    }

    #[test]
    fn expired_entry_is_replaced_by_a_new_shorter_ban() {
        let mut list = BanList::new();
        let n = net("192.0.2.0/24");
        list.ban(n, NOW + 100, "old".into(), NOW);
        // The old ban lifted at NOW+100; a new ban until NOW+150 must take effect.
        list.ban(n, NOW + 150, "new".into(), NOW + 120);
        let e = list.is_banned(ip("192.0.2.1"), NOW + 130).expect("banned");
        assert_eq!(e.reason, "new");
    }

    #[test]
    fn max_bans_evicts_the_soonest_expiring() {
        let mut list = BanList::new();
        let soonest = MAX_BANS as u64 / 2;
        for i in 0..MAX_BANS as u64 {
            let addr = Ipv4Addr::from(0x0a00_0000u32 + i as u32);
            // Every entry expires later than the chosen one, except the chosen one.
            let until = if i == soonest {
                NOW + 1
            } else {
                NOW + 1000 + i
            };
            assert!(list
                .ban(IpNet::from(IpAddr::V4(addr)), until, String::new(), NOW)
                .is_none());
        }
        assert_eq!(list.len(), MAX_BANS);
        let soonest_net = IpNet::from(IpAddr::V4(Ipv4Addr::from(0x0a00_0000u32 + soonest as u32)));

        // Re-banning an existing subnet does not evict.
        assert!(list
            .ban(list.list(NOW)[0].0, NOW + 5_000_000, "ext".into(), NOW)
            .is_none());
        assert_eq!(list.len(), MAX_BANS);

        let evicted = list.ban(net("192.0.2.1/32"), NOW + 10, "new".into(), NOW);
        assert_eq!(
            evicted.map(|(n, e)| (n, e.until)),
            Some((soonest_net, NOW + 1))
        );
        assert_eq!(list.len(), MAX_BANS);
        assert!(list.is_banned(soonest_net.addr(), NOW).is_none());
        assert!(list.is_banned(ip("192.0.2.1"), NOW).is_some());

        // Next-soonest is now the new entry (NOW+10) itself.
        let evicted = list.ban(net("192.0.2.2/32"), NOW + 10_000_000, "x".into(), NOW);
        assert_eq!(evicted.map(|(n, _)| n), Some(net("192.0.2.1/32")));
        assert_eq!(list.len(), MAX_BANS);
    }

    // ----- BanList: persistence -----------------------------------------------------------------

    fn corrupt_copies(dir: &Path) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = fs::read_dir(dir)
            .expect("read tempdir")
            .map(|e| e.expect("dir entry").path())
            .filter(|p| p.to_string_lossy().contains(".corrupt-"))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn save_load_round_trip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("banlist.json");
        let mut list = BanList::new();
        list.ban(
            net("192.0.2.0/24"),
            NOW + 100,
            "subnet \"quoted\"".into(),
            NOW,
        );
        list.ban(net("2001:db8::1/128"), NOW + 200, "host".into(), NOW - 5);
        list.ban(net("203.0.113.9/32"), NOW + 5, "short".into(), NOW);
        list.save(&path).expect("save");

        let (loaded, err) = BanList::load(&path, NOW);
        assert!(err.is_none(), "{err:?}");
        assert_eq!(loaded.list(NOW), list.list(NOW));
        assert_eq!(loaded.len(), 3);

        // Expired entries are dropped on load.
        let (later, err) = BanList::load(&path, NOW + 5);
        assert!(err.is_none());
        assert_eq!(later.len(), 2);
        assert!(later.is_banned(ip("203.0.113.9"), NOW).is_none());
    }

    #[test]
    fn save_writes_versioned_pretty_json_and_leaves_no_tmp() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("banlist.json");
        fs::write(&path, b"old contents").expect("seed");
        let mut list = BanList::new();
        list.ban(net("192.0.2.0/24"), NOW + 100, "r".into(), NOW);
        list.save(&path).expect("save");
        list.save(&path).expect("save again over an existing file");

        let names: Vec<String> = fs::read_dir(dir.path())
            .expect("read tempdir")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec!["banlist.json".to_string()]);

        let text = fs::read_to_string(&path).expect("read");
        assert!(text.contains("\n  \"version\": 1,"), "{text}");
        let v: serde_json::Value = serde_json::from_str(&text).expect("json");
        assert_eq!(
            v,
            serde_json::json!({"version": 1, "bans": [{
                "subnet": "192.0.2.0/24", "banned_at": NOW, "until": NOW + 100, "reason": "r"
            }]})
        );
    }

    #[test]
    fn save_into_missing_directory_is_an_io_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("no-such-dir").join("banlist.json");
        let err = BanList::new().save(&path).expect_err("must fail");
        assert!(matches!(err, BanFileError::Io { .. }), "{err:?}");
        assert!(!path.exists());
    }

    fn assert_moved_aside(contents: &[u8], expected_reason: &str) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("banlist.json");
        fs::write(&path, contents).expect("seed");
        let (list, err) = BanList::load(&path, NOW);
        assert!(list.is_empty());
        match err {
            Some(BanFileError::Corrupt {
                path: p,
                moved_to,
                reason,
            }) => {
                assert_eq!(p, path);
                assert_eq!(
                    moved_to,
                    dir.path().join(format!("banlist.json.corrupt-{NOW}"))
                );
                assert!(reason.contains(expected_reason), "{reason}");
                assert_eq!(fs::read(&moved_to).expect("moved file"), contents);
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
        assert!(!path.exists(), "original must be moved, not copied");
        assert_eq!(corrupt_copies(dir.path()).len(), 1);
    }

    #[test]
    fn corrupt_file_is_moved_aside() {
        assert_moved_aside(b"\x00\xffnot json at all", "invalid JSON");
    }

    #[test]
    fn truncated_file_is_moved_aside() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("full.json");
        let mut list = BanList::new();
        list.ban(net("192.0.2.0/24"), NOW + 100, "r".into(), NOW);
        list.save(&path).expect("save");
        let full = fs::read(&path).expect("read");
        assert_moved_aside(&full[..full.len() / 2], "invalid JSON");
        assert_moved_aside(b"", "invalid JSON");
    }

    #[test]
    fn wrong_version_or_shape_is_moved_aside() {
        assert_moved_aside(
            br#"{"version": 2, "bans": []}"#,
            "unsupported format version 2",
        );
        assert_moved_aside(
            br#"{"version": "1", "bans": []}"#,
            "unsupported format version",
        );
        assert_moved_aside(br#"{"bans": []}"#, "no \"version\" field");
        assert_moved_aside(
            br#"{"version": 1, "bans": [{"subnet": "300.1.2.3/8", "banned_at": 1, "until": 2, "reason": ""}]}"#,
            "invalid version-1 ban file",
        );
    }

    #[test]
    fn second_corrupt_copy_does_not_overwrite_the_first() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("banlist.json");
        fs::write(&path, b"first").expect("seed");
        let (_, err) = BanList::load(&path, NOW);
        assert!(matches!(err, Some(BanFileError::Corrupt { .. })));
        fs::write(&path, b"second").expect("seed");
        let (_, err) = BanList::load(&path, NOW);
        let Some(BanFileError::Corrupt { moved_to, .. }) = err else {
            panic!("expected Corrupt, got {err:?}");
        };
        assert_eq!(
            moved_to,
            dir.path().join(format!("banlist.json.corrupt-{NOW}.1"))
        );
        let copies = corrupt_copies(dir.path());
        assert_eq!(copies.len(), 2);
        assert_eq!(fs::read(&copies[0]).expect("first"), b"first");
        assert_eq!(fs::read(&copies[1]).expect("second"), b"second");
    }

    #[test]
    fn missing_file_is_an_empty_list_without_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (list, err) = BanList::load(&dir.path().join("banlist.json"), NOW);
        assert!(list.is_empty());
        assert!(err.is_none(), "{err:?}");
        assert!(corrupt_copies(dir.path()).is_empty());
    }

    #[test]
    fn unreadable_path_is_an_io_error_and_left_in_place() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("banlist.json");
        fs::create_dir(&path).expect("mkdir");
        let (list, err) = BanList::load(&path, NOW);
        assert!(list.is_empty());
        assert!(matches!(err, Some(BanFileError::Io { .. })), "{err:?}");
        assert!(path.is_dir());
        assert!(corrupt_copies(dir.path()).is_empty());
    }

    #[test]
    fn load_merges_duplicates_and_canonicalizes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("banlist.json");
        let text = format!(
            r#"{{"version": 1, "bans": [
                {{"subnet": "192.0.2.9/24", "banned_at": 1, "until": {a}, "reason": "short"}},
                {{"subnet": "192.0.2.0/24", "banned_at": 2, "until": {b}, "reason": "long"}},
                {{"subnet": "::ffff:198.51.100.1/128", "banned_at": 3, "until": {b}, "reason": "m"}}
            ]}}"#,
            a = NOW + 10,
            b = NOW + 20
        );
        fs::write(&path, text).expect("seed");
        let (list, err) = BanList::load(&path, NOW);
        assert!(err.is_none(), "{err:?}");
        let got: Vec<(IpNet, String)> = list
            .list(NOW)
            .into_iter()
            .map(|(n, e)| (n, e.reason))
            .collect();
        assert_eq!(
            got,
            vec![
                (net("192.0.2.0/24"), "long".to_string()),
                (net("198.51.100.1/32"), "m".to_string())
            ]
        );
    }

    #[test]
    fn errors_name_the_files() {
        let err = BanFileError::Corrupt {
            path: PathBuf::from("/d/banlist.json"),
            moved_to: PathBuf::from("/d/banlist.json.corrupt-5"),
            reason: "invalid JSON".into(),
        };
        let msg = err.to_string();
        assert!(
            msg.contains("/d/banlist.json.corrupt-5") && msg.contains("invalid JSON"),
            "{msg}"
        );
    }
}
