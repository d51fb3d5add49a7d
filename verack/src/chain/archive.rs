//! The compact store of the deep active chain: the header tree's headers more than its recent
//! window below the tip, kept as bare 80-byte headers with a height index, about 86–92 bytes a
//! header in all (the tree's full nodes cost about 220).
//!
//! Nothing else is stored per header:
//! - the hash of the header at height `h` is the next header's `prev_blockhash` (the archive is
//!   one contiguous chain), and the top header's hash is kept aside;
//! - the hash → height index is a [`hashbrown::HashTable`] of `u32` heights (4 bytes a slot plus
//!   a control byte), hashed by the block hash's first 8 bytes and compared through the
//!   successor's `prev_blockhash`;
//! - chain work is kept every [`WORK_STRIDE`] heights and the rest is summed on demand (at most
//!   `WORK_STRIDE - 1` [`block_proof`] calls).
//!
//! Headers live in fixed chunks of [`CHUNK`] headers, so growth never copies the archive nor
//! leaves a doubled `Vec`'s spare half resident.

use bitcoin::block::Header;
use bitcoin::hashes::Hash as _;
use bitcoin::{BlockHash, Work};
use hashbrown::HashTable;

use super::pow::{add_work, block_proof, mul_work};

/// Headers per chunk: 16,384 × 80 bytes = 1.25 MiB.
const CHUNK: usize = 1 << 14;

/// Chain work is stored at every `WORK_STRIDE`-th archived height.
pub(super) const WORK_STRIDE: u32 = 64;

/// A contiguous run of active-chain headers from `base` up, with a hash index.
pub(super) struct Archive {
    /// Height of the first archived header.
    base: u32,
    chunks: Vec<Vec<Header>>,
    len: u32,
    /// Hash of the top header (meaningless while empty).
    top_hash: BlockHash,
    /// Archived heights, keyed by the block hash's first 8 bytes.
    index: HashTable<u32>,
    /// `work[i]` is the chain work at height `base + i * WORK_STRIDE`.
    work: Vec<Work>,
}

/// The index hash of a block hash: its first 8 (internal-order) bytes, which proof of work
/// leaves uniform (an attacker cannot pick them without mining each header).
fn key(hash: &BlockHash) -> u64 {
    let bytes = hash.as_byte_array();
    u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"))
}

impl Archive {
    /// An empty archive whose first header will be at `base`.
    pub(super) fn new(base: u32) -> Archive {
        Archive {
            base,
            chunks: Vec::new(),
            len: 0,
            top_hash: BlockHash::all_zeros(),
            index: HashTable::new(),
            work: Vec::new(),
        }
    }

    /// Number of archived headers.
    pub(super) fn len(&self) -> u32 {
        self.len
    }

    /// Height just above the top archived header (`base` when empty).
    pub(super) fn end(&self) -> u32 {
        self.base + self.len
    }

    /// Whether `height` is archived.
    pub(super) fn holds(&self, height: u32) -> bool {
        height >= self.base && height < self.end()
    }

    /// The header at `height`; panics if it is not archived.
    pub(super) fn header(&self, height: u32) -> &Header {
        let i = (height - self.base) as usize;
        &self.chunks[i / CHUNK][i % CHUNK]
    }

    /// The hash of the header at `height`; panics if it is not archived.
    pub(super) fn hash(&self, height: u32) -> BlockHash {
        hash_in(&self.chunks, self.base, self.len, &self.top_hash, height)
    }

    /// The height of the archived header with this hash.
    pub(super) fn find(&self, hash: &BlockHash) -> Option<u32> {
        let (chunks, base, len, top) = (&self.chunks, self.base, self.len, &self.top_hash);
        self.index
            .find(key(hash), |&h| hash_in(chunks, base, len, top, h) == *hash)
            .copied()
    }

    /// Total chain work at `height` (genesis or the trusted start included); panics if it is
    /// not archived.
    pub(super) fn work(&self, height: u32) -> Work {
        let offset = height - self.base;
        let mark = offset / WORK_STRIDE;
        let mut work = self.work[mark as usize];
        // Runs of equal `bits` (a whole difficulty period on mainnet) cost one proof and one
        // multiplication: at most 63 headers are read, and a proof is computed per run.
        let mut h = self.base + mark * WORK_STRIDE + 1;
        while h <= height {
            let bits = self.header(h).bits;
            let start = h;
            while h <= height && self.header(h).bits == bits {
                h += 1;
            }
            work = add_work(work, mul_work(block_proof(bits), u64::from(h - start)));
        }
        work
    }

    /// Append the header at height [`end`](Self::end), with its hash and chain work. The
    /// caller guarantees it links to the current top.
    pub(super) fn push(&mut self, header: Header, hash: BlockHash, chain_work: Work) {
        let offset = self.len;
        if offset.is_multiple_of(WORK_STRIDE) {
            self.work.push(chain_work);
        }
        let i = offset as usize;
        if i / CHUNK == self.chunks.len() {
            self.chunks.push(Vec::with_capacity(CHUNK));
        }
        self.chunks[i / CHUNK].push(header);
        self.len += 1;
        self.top_hash = hash;
        let height = self.base + offset;
        let (chunks, base, len, top) = (&self.chunks, self.base, self.len, &self.top_hash);
        self.index.insert_unique(key(&hash), height, |&h| {
            key(&hash_in(chunks, base, len, top, h))
        });
    }

    /// Remove the headers at `height` and above, returning them lowest first with their hashes
    /// and chain work.
    pub(super) fn split_off(&mut self, height: u32) -> Vec<(Header, BlockHash, Work)> {
        let height = height.max(self.base);
        if height >= self.end() {
            return Vec::new();
        }
        let mut out = Vec::with_capacity((self.end() - height) as usize);
        let mut work = self.work(height);
        for h in height..self.end() {
            if h > height {
                work = add_work(work, block_proof(self.header(h).bits));
            }
            out.push((*self.header(h), self.hash(h), work));
        }
        for (_, hash, _) in &out {
            let (chunks, base, len, top) = (&self.chunks, self.base, self.len, &self.top_hash);
            if let Ok(entry) = self
                .index
                .find_entry(key(hash), |&h| hash_in(chunks, base, len, top, h) == *hash)
            {
                entry.remove();
            }
        }
        let keep = (height - self.base) as usize;
        self.chunks.truncate(keep.div_ceil(CHUNK));
        let full = self.chunks.len().saturating_sub(1) * CHUNK;
        if let Some(last) = self.chunks.last_mut() {
            last.truncate(keep - full);
        }
        self.work
            .truncate((keep as u32).div_ceil(WORK_STRIDE) as usize);
        self.len = keep as u32;
        if keep > 0 {
            self.top_hash = out[0].0.prev_blockhash;
        }
        out
    }

    /// Bytes held, for the memory accounting in tests and docs.
    #[cfg(test)]
    pub(super) fn heap_bytes(&self) -> usize {
        self.chunks.iter().map(|c| c.capacity() * 80).sum::<usize>()
            + self.index.capacity() * 5
            + self.work.capacity() * 32
    }
}

/// The hash of archived `height`: the successor's `prev_blockhash`, or `top` for the top.
fn hash_in(chunks: &[Vec<Header>], base: u32, len: u32, top: &BlockHash, height: u32) -> BlockHash {
    let next = (height - base + 1) as usize;
    if next == len as usize {
        *top
    } else {
        chunks[next / CHUNK][next % CHUNK].prev_blockhash
    }
}

#[cfg(test)]
mod tests {
    use bitcoin::block::Version;
    use bitcoin::{CompactTarget, TxMerkleNode};

    use super::*;

    fn chain(n: u32) -> Vec<(Header, BlockHash)> {
        let mut prev = BlockHash::all_zeros();
        (0..n)
            .map(|i| {
                let h = Header {
                    version: Version::from_consensus(4),
                    prev_blockhash: prev,
                    merkle_root: TxMerkleNode::all_zeros(),
                    time: 1_600_000_000 + i,
                    bits: CompactTarget::from_consensus(0x207f_ffff),
                    nonce: i,
                };
                prev = h.block_hash();
                (h, prev)
            })
            .collect()
    }

    fn filled(base: u32, headers: &[(Header, BlockHash)]) -> Archive {
        let mut a = Archive::new(base);
        let mut work = Work::from_le_bytes([0; 32]);
        for (h, hash) in headers {
            work = add_work(work, block_proof(h.bits));
            a.push(*h, *hash, work);
        }
        a
    }

    #[test]
    fn finds_every_hash_and_work_across_chunks() {
        let headers = chain(CHUNK as u32 + 100);
        let a = filled(7, &headers);
        assert_eq!(a.end(), 7 + CHUNK as u32 + 100);
        let proof = block_proof(headers[0].0.bits);
        for (i, (h, hash)) in headers.iter().enumerate().step_by(97) {
            let height = 7 + i as u32;
            assert_eq!(a.find(hash), Some(height));
            assert_eq!(a.hash(height), *hash);
            assert_eq!(a.header(height), h);
            let mut expect = Work::from_le_bytes([0; 32]);
            for _ in 0..=i {
                expect = add_work(expect, proof);
            }
            assert_eq!(a.work(height), expect, "height {height}");
        }
        assert_eq!(a.find(&BlockHash::all_zeros()), None);
    }

    #[test]
    fn work_sums_runs_of_mixed_bits_exactly() {
        // Bits change every 5 headers (and every header in places), as testnet's
        // minimum-difficulty blocks do: the run-length sum must equal the plain sum.
        let mut prev = BlockHash::all_zeros();
        let headers: Vec<(Header, BlockHash)> = (0..300u32)
            .map(|i| {
                let bits = match (i / 5 % 3, i % 7) {
                    (_, 0) => 0x1d00_ffff,
                    (0, _) => 0x207f_ffff,
                    (1, _) => 0x1c0f_ffff,
                    _ => 0x1b04_864c,
                };
                let h = Header {
                    version: Version::from_consensus(4),
                    prev_blockhash: prev,
                    merkle_root: TxMerkleNode::all_zeros(),
                    time: 1_600_000_000 + i,
                    bits: CompactTarget::from_consensus(bits),
                    nonce: i,
                };
                prev = h.block_hash();
                (h, prev)
            })
            .collect();
        let a = filled(3, &headers);
        let mut expect = Work::from_le_bytes([0; 32]);
        for (i, (h, _)) in headers.iter().enumerate() {
            expect = add_work(expect, block_proof(h.bits));
            assert_eq!(a.work(3 + i as u32), expect, "height {}", 3 + i);
        }
    }

    #[test]
    fn split_off_returns_the_top_and_forgets_it() {
        let headers = chain(300);
        let mut a = filled(0, &headers);
        let work_199 = a.work(199);
        let top = a.split_off(200);
        assert_eq!(top.len(), 100);
        assert_eq!(top[0].1, headers[200].1);
        assert_eq!(top[99].1, headers[299].1);
        assert_eq!(a.end(), 200);
        assert_eq!(a.hash(199), headers[199].1);
        assert_eq!(a.work(199), work_199);
        assert_eq!(a.find(&headers[250].1), None);
        assert_eq!(a.find(&headers[150].1), Some(150));
        // Pushing again after a split keeps the work marks aligned.
        let mut work = work_199;
        for (h, hash) in &headers[200..] {
            work = add_work(work, block_proof(h.bits));
            a.push(*h, *hash, work);
        }
        assert_eq!(a.work(299), work);
        assert_eq!(a.find(&headers[299].1), Some(299));
        let all = a.split_off(0);
        assert_eq!(all.len(), 300);
        assert_eq!(a.len(), 0);
    }

    #[test]
    fn stays_near_80_bytes_a_header() {
        let headers = chain(100_000);
        let a = filled(0, &headers);
        let per = a.heap_bytes() as f64 / 100_000.0;
        assert!(per < 100.0, "{per} bytes a header");
    }
}
