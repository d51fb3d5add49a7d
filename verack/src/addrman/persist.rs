//! The address database file: a versioned binary format with a trailing checksum, as Core's
//! `peers.dat` (src/addrdb.cpp, `AddrManImpl::Serialize`), written atomically.
//!
//! # Format (all integers little-endian)
//! ```text
//! magic                  8 bytes  "VRKADDRM"
//! format version         u8       FORMAT_VERSION (1)
//! lowest compatible      u8       oldest format version a reader must know (1)
//! key                    32 bytes the bucket secret
//! last good              u64      Core's m_last_good
//! n_new, n_tried         u32, u32
//! n_new new entries      entry, then buckets: u8 count (1..=8), count × u16 (ascending, < 1024)
//! n_tried tried entries  entry (the slot follows from the key)
//! collisions             u8 count (<= 10), count × u32 entry index (file order)
//! checksum               32 bytes double SHA-256 of everything before it
//! entry: addr, port u16, services u64, time u32, source addr, last_try u64,
//!        last_count_attempt u64, last_success u64, attempts u32
//! addr:  BIP155 network id u8, u16 length, bytes (lengths as BIP155; unknown ids <= 512)
//! ```
//! Only bucket numbers are stored: slots within buckets are recomputed from the key, so a
//! file restores every entry to the exact slot it had.

use std::fs;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use bitcoin::hashes::{sha256d, Hash};
use bitcoin::p2p::address::{AddrV2, AddrV2Message};
use bitcoin::p2p::ServiceFlags;
use rand::rngs::StdRng;
use rand::SeedableRng;
use tracing::{debug, error};

use super::bucket::is_storable;
use super::{
    AddrMan, AddrManConfig, BUCKET_SIZE, EMPTY, NEW_BUCKETS_PER_ADDRESS, NEW_BUCKET_COUNT,
    SET_TRIED_COLLISION_SIZE, TRIED_BUCKET_COUNT,
};

/// The first 8 bytes of an address database file.
pub const MAGIC: [u8; 8] = *b"VRKADDRM";
/// The format version this build writes and the newest it reads. A file whose "lowest
/// compatible" byte is above it is refused with [`AddrManError::UnsupportedVersion`] (Core's
/// `InvalidAddrManVersionError`).
pub const FORMAT_VERSION: u8 = 1;
const LOWEST_COMPATIBLE: u8 = 1;
const HEADER_LEN: usize = 8 + 1 + 1;
const CHECKSUM_LEN: usize = 32;
const MAX_UNKNOWN_ADDR_LEN: usize = 512;

/// Errors reading, writing or decoding an address database.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AddrManError {
    /// A file (the database, its temporary sibling, or its directory) could not be read,
    /// written, synced or renamed; or a corrupt file could not be moved aside (then `path`
    /// names the intended destination).
    #[error("address database I/O error on {}: {source}", path.display())]
    Io {
        /// The file the operation was about.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The bytes are not a valid database: too short, wrong magic, truncated, bad checksum,
    /// out-of-range counts or bucket numbers, duplicate entries, trailing data, or internal
    /// inconsistency (Core's "Corrupt AddrMan serialization" / consistency check failure).
    #[error(
        "address database{} is corrupt ({reason}){}",
        show_path(path),
        show_moved(moved_to)
    )]
    Corrupt {
        /// The file, if the bytes came from [`AddrMan::load`] (`None` for
        /// [`AddrMan::from_bytes`]).
        path: Option<PathBuf>,
        /// Where [`AddrMan::load`] moved the file: `<name>.corrupt-<now>` in the same
        /// directory. Never deleted.
        moved_to: Option<PathBuf>,
        /// What is wrong.
        reason: String,
    },
    /// The file was written by a newer, incompatible format (its "lowest compatible" version
    /// is above [`FORMAT_VERSION`]).
    #[error(
        "address database{} has format {version}, readable only by versions >= {lowest_compatible}; this build reads up to {FORMAT_VERSION}{}",
        show_path(path),
        show_moved(moved_to)
    )]
    UnsupportedVersion {
        /// The file, if loaded from one.
        path: Option<PathBuf>,
        /// Where [`AddrMan::load`] moved the file (never deleted).
        moved_to: Option<PathBuf>,
        /// The format version byte of the file.
        version: u8,
        /// The oldest format version that can read the file.
        lowest_compatible: u8,
    },
}

fn show_path(path: &Option<PathBuf>) -> String {
    path.as_ref()
        .map(|p| format!(" {}", p.display()))
        .unwrap_or_default()
}

fn show_moved(moved: &Option<PathBuf>) -> String {
    moved
        .as_ref()
        .map(|p| format!("; moved it to {} and started empty", p.display()))
        .unwrap_or_default()
}

impl AddrManError {
    fn with_location(self, path: &Path, moved: PathBuf) -> AddrManError {
        match self {
            AddrManError::Corrupt { reason, .. } => AddrManError::Corrupt {
                path: Some(path.to_path_buf()),
                moved_to: Some(moved),
                reason,
            },
            AddrManError::UnsupportedVersion {
                version,
                lowest_compatible,
                ..
            } => AddrManError::UnsupportedVersion {
                path: Some(path.to_path_buf()),
                moved_to: Some(moved),
                version,
                lowest_compatible,
            },
            other => other,
        }
    }
}

fn corrupt(reason: impl Into<String>) -> AddrManError {
    AddrManError::Corrupt {
        path: None,
        moved_to: None,
        reason: reason.into(),
    }
}

// ---------------------------------------------------------------------------------------------
// Encoding
// ---------------------------------------------------------------------------------------------

fn put_addr(out: &mut Vec<u8>, addr: &AddrV2) {
    let (id, bytes): (u8, &[u8]) = match addr {
        AddrV2::Ipv4(a) => {
            out.push(1);
            out.extend_from_slice(&4u16.to_le_bytes());
            out.extend_from_slice(&a.octets());
            return;
        }
        AddrV2::Ipv6(a) => {
            out.push(2);
            out.extend_from_slice(&16u16.to_le_bytes());
            out.extend_from_slice(&a.octets());
            return;
        }
        AddrV2::Cjdns(a) => {
            out.push(6);
            out.extend_from_slice(&16u16.to_le_bytes());
            out.extend_from_slice(&a.octets());
            return;
        }
        AddrV2::TorV2(b) => (3, &b[..]),
        AddrV2::TorV3(b) => (4, &b[..]),
        AddrV2::I2p(b) => (5, &b[..]),
        AddrV2::Unknown(id, b) => (*id, &b[..b.len().min(MAX_UNKNOWN_ADDR_LEN)]),
    };
    out.push(id);
    out.extend_from_slice(&(bytes.len() as u16).to_le_bytes());
    out.extend_from_slice(bytes);
}

fn put_entry(out: &mut Vec<u8>, info: &super::AddrInfo) {
    put_addr(out, &info.addr.addr);
    out.extend_from_slice(&info.addr.port.to_le_bytes());
    out.extend_from_slice(&info.addr.services.to_u64().to_le_bytes());
    out.extend_from_slice(&info.addr.time.to_le_bytes());
    put_addr(out, &info.source);
    out.extend_from_slice(&info.last_try.to_le_bytes());
    out.extend_from_slice(&info.last_count_attempt.to_le_bytes());
    out.extend_from_slice(&info.last_success.to_le_bytes());
    out.extend_from_slice(&info.attempts.to_le_bytes());
}

impl AddrMan {
    /// The database as bytes in the format described in this module's source (magic,
    /// [`FORMAT_VERSION`], key, entries with their new buckets, queued tried collisions,
    /// double-SHA-256 checksum). Deterministic: new entries, then tried entries, each in id
    /// order; so `from_bytes(to_bytes(x)).to_bytes() == x.to_bytes()`. At most about 9 MiB
    /// for a full manager of Tor addresses.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.random.len() * 80);
        out.extend_from_slice(&MAGIC);
        out.push(FORMAT_VERSION);
        out.push(LOWEST_COMPATIBLE);
        out.extend_from_slice(&self.key);
        out.extend_from_slice(&self.last_good.to_le_bytes());
        out.extend_from_slice(&(self.n_new as u32).to_le_bytes());
        out.extend_from_slice(&(self.n_tried as u32).to_le_bytes());

        // Buckets per new entry, in bucket order, from one pass over the table.
        let mut buckets: Vec<Vec<u16>> = vec![Vec::new(); self.entries.len()];
        for bucket in 0..NEW_BUCKET_COUNT {
            for position in 0..BUCKET_SIZE {
                let id = self.entry_at(false, bucket, position);
                if id != EMPTY {
                    buckets[id as usize].push(bucket as u16);
                }
            }
        }
        let mut file_index = vec![u32::MAX; self.entries.len()];
        let mut next = 0u32;
        for tried in [false, true] {
            for (id, slot) in self.entries.iter().enumerate() {
                let Some(slot) = slot else { continue };
                if slot.info.in_tried != tried {
                    continue;
                }
                file_index[id] = next;
                next += 1;
                put_entry(&mut out, &slot.info);
                if !tried {
                    let b = &buckets[id];
                    out.push(b.len() as u8);
                    for bucket in b {
                        out.extend_from_slice(&bucket.to_le_bytes());
                    }
                }
            }
        }
        let mut collisions: Vec<u32> = self
            .tried_collisions
            .iter()
            .map(|id| file_index[*id as usize])
            .collect();
        collisions.sort_unstable();
        out.push(collisions.len() as u8);
        for c in collisions {
            out.extend_from_slice(&c.to_le_bytes());
        }
        let checksum = sha256d::Hash::hash(&out).to_byte_array();
        out.extend_from_slice(&checksum);
        out
    }

    /// Decodes [`to_bytes`](Self::to_bytes) output into a manager with `config`, whose random
    /// generator is seeded with `seed` (the bucket key comes from the bytes).
    ///
    /// As Core's `Unserialize`, entries whose address may not be stored under `config` (for
    /// example loopback written with `allow_local` and read without) are dropped, as are
    /// tried entries whose slot is already taken and new-bucket references whose slot is
    /// taken (an entry left with no slot is dropped); these are logged at debug level.
    ///
    /// # Errors
    /// - [`AddrManError::UnsupportedVersion`]: magic matches but the file needs a newer
    ///   reader.
    /// - [`AddrManError::Corrupt`] (`path` and `moved_to` are `None`): anything else wrong:
    ///   too short, wrong magic, checksum mismatch (so any truncation or bit flip), counts
    ///   above the table sizes, malformed addresses, bucket numbers out of range or not
    ///   ascending, duplicate addresses, bad collision indexes, trailing bytes, or a failed
    ///   [`check`](Self::check).
    pub fn from_bytes(
        bytes: &[u8],
        config: AddrManConfig,
        seed: u64,
    ) -> Result<AddrMan, AddrManError> {
        if bytes.len() < HEADER_LEN {
            return Err(corrupt(format!(
                "{} bytes is too short for a header",
                bytes.len()
            )));
        }
        if bytes[..8] != MAGIC {
            return Err(corrupt("wrong magic"));
        }
        let version = bytes[8];
        let lowest_compatible = bytes[9];
        if lowest_compatible > FORMAT_VERSION {
            return Err(AddrManError::UnsupportedVersion {
                path: None,
                moved_to: None,
                version,
                lowest_compatible,
            });
        }
        if version < lowest_compatible || lowest_compatible == 0 {
            return Err(corrupt(format!(
                "format version {version} below its lowest compatible version {lowest_compatible}"
            )));
        }
        if bytes.len() < HEADER_LEN + CHECKSUM_LEN {
            return Err(corrupt("truncated: no checksum"));
        }
        let (body, checksum) = bytes.split_at(bytes.len() - CHECKSUM_LEN);
        if sha256d::Hash::hash(body).to_byte_array()[..] != *checksum {
            return Err(corrupt("checksum mismatch (truncated or damaged)"));
        }
        decode_body(&body[HEADER_LEN..], config, seed)
    }

    /// Writes [`to_bytes`](Self::to_bytes) to `path` atomically: to `<path>.tmp` in the same
    /// directory (a rename is only atomic within one filesystem), synced, renamed over
    /// `path`, then the directory is synced so the rename is durable. A crash leaves the old
    /// file or the new one, never a torn one. Source: Core's `SerializeFileDB` (temp file,
    /// `FileCommit`, `RenameOver`, `DirectoryCommit`).
    ///
    /// # Errors
    /// [`AddrManError::Io`] if the temporary file cannot be created, written, synced or
    /// renamed (it is then removed, best effort, and `path` is untouched), or the directory
    /// cannot be synced (Unix only).
    pub fn save(&self, path: &Path) -> Result<(), AddrManError> {
        let bytes = self.to_bytes();
        crate::atomic_file::write(path, &bytes).map_err(|e| AddrManError::Io {
            path: e.path,
            source: e.source,
        })
    }

    /// Reads the database at `path`. Never fails outright: a node must start even with a
    /// damaged file, so a usable manager always comes back, with an error to report beside
    /// it. Source: Core's `LoadAddrman` (a corrupt `peers.dat` is reported and addrman starts
    /// empty; Core then overwrites it, we keep it aside).
    ///
    /// - No file: an empty manager ([`AddrMan::new`] with `seed`) and no error.
    /// - Unreadable (permissions, a directory…): empty manager and [`AddrManError::Io`]; the
    ///   file stays where it is.
    /// - Corrupt, truncated, bad checksum, or an unsupported format version: the file is
    ///   renamed to `<name>.corrupt-<now>` in the same directory (`.1`, `.2`… appended if
    ///   taken; never deleted or overwritten), `tracing::error!` is logged, and an empty
    ///   manager comes back with [`AddrManError::Corrupt`] or
    ///   [`AddrManError::UnsupportedVersion`] naming both paths.
    /// - Corrupt but cannot be moved aside: empty manager and [`AddrManError::Io`] naming the
    ///   intended destination; the file stays, and the next [`save`](Self::save) replaces it.
    pub fn load(
        path: &Path,
        config: AddrManConfig,
        seed: u64,
        now: u64,
    ) -> (AddrMan, Option<AddrManError>) {
        let bytes = match fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return (AddrMan::new(config, seed), None)
            }
            Err(source) => {
                error!(path = %path.display(), error = %source, "cannot read address database; starting empty");
                return (
                    AddrMan::new(config, seed),
                    Some(AddrManError::Io {
                        path: path.to_path_buf(),
                        source,
                    }),
                );
            }
        };
        match AddrMan::from_bytes(&bytes, config, seed) {
            Ok(man) => (man, None),
            Err(err) => match crate::atomic_file::move_aside(path, now) {
                Ok(moved_to) => {
                    let err = err.with_location(path, moved_to);
                    error!(error = %err, "address database unusable; moved it aside and started empty");
                    (AddrMan::new(config, seed), Some(err))
                }
                Err(source) => {
                    error!(
                        path = %path.display(),
                        reason = %err,
                        error = %source,
                        "address database unusable and could not be moved aside; started empty"
                    );
                    (
                        AddrMan::new(config, seed),
                        Some(AddrManError::Io {
                            path: path.to_path_buf(),
                            source,
                        }),
                    )
                }
            },
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Decoding
// ---------------------------------------------------------------------------------------------

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], AddrManError> {
        if self.bytes.len() - self.pos < n {
            return Err(corrupt(format!("truncated at byte {}", self.pos)));
        }
        let out = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], AddrManError> {
        Ok(self.take(N)?.try_into().expect("length N"))
    }

    fn u8(&mut self) -> Result<u8, AddrManError> {
        Ok(self.array::<1>()?[0])
    }

    fn u16(&mut self) -> Result<u16, AddrManError> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32, AddrManError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, AddrManError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    fn addr(&mut self) -> Result<AddrV2, AddrManError> {
        let id = self.u8()?;
        let len = self.u16()? as usize;
        let expect = |n: usize| {
            if len == n {
                Ok(())
            } else {
                Err(corrupt(format!("network {id} address of {len} bytes")))
            }
        };
        Ok(match id {
            1 => {
                expect(4)?;
                AddrV2::Ipv4(Ipv4Addr::from(self.array::<4>()?))
            }
            2 => {
                expect(16)?;
                AddrV2::Ipv6(Ipv6Addr::from(self.array::<16>()?))
            }
            3 => {
                expect(10)?;
                AddrV2::TorV2(self.array()?)
            }
            4 => {
                expect(32)?;
                AddrV2::TorV3(self.array()?)
            }
            5 => {
                expect(32)?;
                AddrV2::I2p(self.array()?)
            }
            6 => {
                expect(16)?;
                AddrV2::Cjdns(Ipv6Addr::from(self.array::<16>()?))
            }
            _ => {
                if len > MAX_UNKNOWN_ADDR_LEN {
                    return Err(corrupt(format!("unknown-network address of {len} bytes")));
                }
                AddrV2::Unknown(id, self.take(len)?.to_vec())
            }
        })
    }

    fn entry(&mut self) -> Result<super::AddrInfo, AddrManError> {
        let addr = self.addr()?;
        let port = self.u16()?;
        let services = ServiceFlags::from(self.u64()?);
        let time = self.u32()?;
        let source = self.addr()?;
        Ok(super::AddrInfo {
            addr: AddrV2Message {
                time,
                services,
                addr,
                port,
            },
            source,
            last_try: self.u64()?,
            last_count_attempt: self.u64()?,
            last_success: self.u64()?,
            attempts: self.u32()?,
            in_tried: false,
            ref_count: 0,
        })
    }
}

fn decode_body(body: &[u8], config: AddrManConfig, seed: u64) -> Result<AddrMan, AddrManError> {
    let mut r = Reader {
        bytes: body,
        pos: 0,
    };
    let key: [u8; 32] = r.array()?;
    if key == [0u8; 32] {
        return Err(corrupt("bucket key is zero"));
    }
    let last_good = r.u64()?;
    let n_new = r.u32()? as usize;
    let n_tried = r.u32()? as usize;
    if n_new > NEW_BUCKET_COUNT * BUCKET_SIZE {
        return Err(corrupt(format!(
            "{n_new} new entries, more than the table holds"
        )));
    }
    if n_tried > TRIED_BUCKET_COUNT * BUCKET_SIZE {
        return Err(corrupt(format!(
            "{n_tried} tried entries, more than the table holds"
        )));
    }

    let mut man = AddrMan::with_key(config, StdRng::seed_from_u64(seed), key);
    man.last_good = last_good;
    // The id each file entry got, if kept.
    let mut ids: Vec<Option<u32>> = Vec::with_capacity(n_new + n_tried);
    let mut seen = std::collections::HashSet::with_capacity(n_new + n_tried);
    let mut lost = 0usize;

    for _ in 0..n_new {
        let info = r.entry()?;
        let count = r.u8()? as u32;
        if count == 0 || count > NEW_BUCKETS_PER_ADDRESS {
            return Err(corrupt(format!("new entry in {count} buckets")));
        }
        let mut buckets = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let b = r.u16()? as usize;
            if b >= NEW_BUCKET_COUNT {
                return Err(corrupt(format!("new bucket {b} out of range")));
            }
            if buckets.last().is_some_and(|&last| last >= b) {
                return Err(corrupt("new buckets not in ascending order"));
            }
            buckets.push(b);
        }
        if !seen.insert((info.addr.addr.clone(), info.addr.port)) {
            return Err(corrupt("duplicate address"));
        }
        if !is_storable(&info.addr.addr, config.allow_local) {
            lost += 1;
            ids.push(None);
            continue;
        }
        let source = info.source.clone();
        let id = man.create(info.addr.clone(), source);
        {
            let stored = man.info_mut(id);
            stored.last_try = info.last_try;
            stored.last_count_attempt = info.last_count_attempt;
            stored.last_success = info.last_success;
            stored.attempts = info.attempts;
        }
        for bucket in buckets {
            let position = man.new_position(id, bucket);
            if man.entry_at(false, bucket, position) == EMPTY {
                man.set_new(bucket, position, id);
                man.info_mut(id).ref_count += 1;
            }
        }
        if man.slot(id).info.ref_count == 0 {
            man.delete(id);
            lost += 1;
            ids.push(None);
        } else {
            ids.push(Some(id));
        }
    }

    for _ in 0..n_tried {
        let info = r.entry()?;
        if !seen.insert((info.addr.addr.clone(), info.addr.port)) {
            return Err(corrupt("duplicate address"));
        }
        if info.last_success == 0 {
            return Err(corrupt("tried entry that never succeeded"));
        }
        if !is_storable(&info.addr.addr, config.allow_local) {
            lost += 1;
            ids.push(None);
            continue;
        }
        let id = man.create(info.addr.clone(), info.source.clone());
        {
            let stored = man.info_mut(id);
            stored.last_try = info.last_try;
            stored.last_count_attempt = info.last_count_attempt;
            stored.last_success = info.last_success;
            stored.attempts = info.attempts;
        }
        let (bucket, position) = man.tried_position_of(id);
        if man.entry_at(true, bucket, position) != EMPTY {
            // Core counts these as lost (nLost) rather than failing.
            man.delete(id);
            lost += 1;
            ids.push(None);
            continue;
        }
        let net = super::network_of(&man.slot(id).info.addr.addr).expect("stored");
        man.n_new -= 1;
        man.counts[net.index()].n_new -= 1;
        man.n_tried += 1;
        man.counts[net.index()].n_tried += 1;
        man.info_mut(id).in_tried = true;
        man.set_tried(bucket, position, id);
        ids.push(Some(id));
    }

    let n_collisions = r.u8()? as usize;
    if n_collisions > SET_TRIED_COLLISION_SIZE {
        return Err(corrupt(format!("{n_collisions} tried collisions")));
    }
    let mut last = None;
    for _ in 0..n_collisions {
        let index = r.u32()? as usize;
        if index >= ids.len() {
            return Err(corrupt(format!(
                "tried collision index {index} out of range"
            )));
        }
        if last.is_some_and(|l| l >= index) {
            return Err(corrupt("tried collisions not in ascending order"));
        }
        last = Some(index);
        if let Some(id) = ids[index] {
            man.tried_collisions.insert(id);
        }
    }
    if r.pos != body.len() {
        return Err(corrupt(format!("{} trailing bytes", body.len() - r.pos)));
    }
    if lost > 0 {
        debug!(
            lost,
            "addrman: dropped entries on load (invalid for this configuration or colliding)"
        );
    }
    man.check()
        .map_err(|e| corrupt(format!("consistency check failed: {e}")))?;
    Ok(man)
}

// ---------------------------------------------------------------------------------------------
// Files
// ---------------------------------------------------------------------------------------------
