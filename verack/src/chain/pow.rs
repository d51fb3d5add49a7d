//! Difficulty rules, as Bitcoin Core's `src/pow.cpp`: `GetNextWorkRequired`,
//! `CalculateNextWorkRequired`, `PermittedDifficultyTransition`, `CheckProofOfWork` and
//! `GetBlockProof`.
//!
//! Core does this arithmetic on `arith_uint256`; rust-bitcoin keeps its 256-bit integer private,
//! so the few operations needed (compact decoding with Core's sign and overflow flags, wrapping
//! multiplication and division by a small number, comparison) are done here on four 64-bit limbs
//! and converted to [`Target`]/[`Work`] at the edges.

use bitcoin::{BlockHash, CompactTarget, Target, Work};

use super::ChainParams;

/// The two fields of an ancestor header that the difficulty rules read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AncestorInfo {
    /// The header's compact target (`nBits`).
    pub bits: CompactTarget,
    /// The header's timestamp, Unix seconds.
    pub time: u32,
}

impl AncestorInfo {
    /// The fields of `header`.
    pub fn of(header: &bitcoin::block::Header) -> AncestorInfo {
        AncestorInfo {
            bits: header.bits,
            time: header.time,
        }
    }
}

/// A difficulty rule needed the header at `height`, and the ancestor lookup had none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the ancestor at height {height} is not available")]
pub struct MissingAncestor {
    /// Height of the header that was needed.
    pub height: u32,
}

/// Core's `nMaxTimewarp` ([`MAX_TIMEWARP`] in `src/consensus/consensus.h`): under BIP94 the first
/// header of a difficulty period may be at most this many seconds older than its parent.
pub const MAX_TIMEWARP: u32 = 600;

/// The compact encoding of the network's proof-of-work limit (Core's
/// `UintToArith256(params.powLimit).GetCompact()`): the bits of a minimum-difficulty header.
///
/// rust-bitcoin's `max_attainable_target` is Core's `powLimit` rounded down to a compact value;
/// both encode to the same bits (`1d00ffff` mainnet/testnet, `1e0377ae` signet, `207fffff`
/// regtest).
pub fn pow_limit_bits(params: &ChainParams) -> CompactTarget {
    params.consensus.max_attainable_target.to_compact_lossy()
}

/// The bits the header at `height` must carry: Core's `GetNextWorkRequired` (`src/pow.cpp`).
///
/// * `height` is the new header's height (≥ 1) and `time` its timestamp (Unix seconds; read only
///   by the testnet 20-minute rule).
/// * `ancestor(h)` returns the header at height `h < height` on the new header's branch
///   (`h = height - 1` is its parent). It is called with the parent's height first, then only
///   with lower heights.
///
/// Rules, in Core's order:
/// * off a period boundary (`height % interval != 0`) the bits are the parent's, except where
///   `allow_min_difficulty_blocks` (testnet3, testnet4, regtest): a header more than
///   2 × `pow_target_spacing` (20 min) after its parent may use the proof-of-work limit, and any
///   other must carry the bits of the last ancestor that is not a minimum-difficulty header,
///   walking back no further than the period's first header;
/// * on a boundary, [`calculate_next_work_required`] over the period: its first header is at
///   `height - interval` and its last at `height - 1` (Core's off-by-one: the period's span
///   covers 2015 block intervals, not 2016).
///
/// # Errors
/// [`MissingAncestor`] with the first height `ancestor` could not give, and for `height == 0`
/// (genesis has no parent; its bits are fixed by the chain).
pub fn next_work_required(
    params: &ChainParams,
    height: u32,
    time: u32,
    mut ancestor: impl FnMut(u32) -> Option<AncestorInfo>,
) -> Result<CompactTarget, MissingAncestor> {
    let consensus = &params.consensus;
    if height == 0 {
        return Err(MissingAncestor { height: 0 });
    }
    let mut get = |h: u32| ancestor(h).ok_or(MissingAncestor { height: h });
    let interval = adjustment_interval(params);
    let last = get(height - 1)?;

    if !height.is_multiple_of(interval) {
        if !consensus.allow_min_difficulty_blocks {
            return Ok(last.bits);
        }
        let limit = pow_limit_bits(params);
        // i64: Core compares int64 block times, so a u32 sum cannot overflow here either.
        let spacing = i64::try_from(consensus.pow_target_spacing).unwrap_or(i64::MAX / 4);
        if i64::from(time) > i64::from(last.time).saturating_add(spacing.saturating_mul(2)) {
            return Ok(limit);
        }
        // Return the last non-special-min-difficulty-rules block (walk back to the period's first
        // header at most, whose bits are the real difficulty).
        let (mut h, mut cur) = (height - 1, last);
        while h > 0 && h % interval != 0 && cur.bits == limit {
            h -= 1;
            cur = get(h)?;
        }
        return Ok(cur.bits);
    }

    // `height` is a positive multiple of `interval`, so this does not underflow.
    let first = get(height - interval)?;
    Ok(calculate_next_work_required(params, first, last))
}

/// The retarget at a period boundary: Core's `CalculateNextWorkRequired` (`src/pow.cpp`).
///
/// `first` and `last` are the first and last headers of the period that ends (heights
/// `height - 2016` and `height - 1`). The span `last.time - first.time` (seconds, may be
/// negative) is clamped to [`pow_target_timespan / 4`, `pow_target_timespan * 4`]; the new target
/// is `old_target * span / pow_target_timespan`, capped at the proof-of-work limit and re-encoded
/// compactly. `old_target` is `last.bits`, or `first.bits` where [`ChainParams::enforce_bip94`]
/// (testnet4; BIP94: the period's first header cannot be a minimum-difficulty header, so its bits
/// are the real difficulty). Where `no_pow_retargeting` (regtest) the result is `last.bits`.
pub fn calculate_next_work_required(
    params: &ChainParams,
    first: AncestorInfo,
    last: AncestorInfo,
) -> CompactTarget {
    let consensus = &params.consensus;
    if consensus.no_pow_retargeting {
        return last.bits;
    }
    let timespan = timespan(params);
    let span = (i64::from(last.time) - i64::from(first.time)).clamp(timespan / 4, timespan * 4);
    let base = if params.enforce_bip94 {
        first.bits
    } else {
        last.bits
    };
    // Core: `bnNew.SetCompact(bits); bnNew *= span; bnNew /= timespan;` on arith_uint256, whose
    // multiplication wraps. It cannot wrap on the public networks (limit ≤ 2^224, span ≤ 2^23);
    // wrapping like Core keeps custom parameters consensus-identical rather than "fixed".
    let mut new = U256::from_compact(base.to_consensus()).value;
    new = new.wrapping_mul_u64(span as u64).div_u64(timespan as u64);
    let limit = U256::from_target(consensus.max_attainable_target);
    if new > limit {
        new = limit;
    }
    new.to_target().to_compact_lossy()
}

/// Whether `new_bits` at `height` is a possible successor of `old_bits`: Core's
/// `PermittedDifficultyTransition` (`src/pow.cpp`), used by its headers pre-sync to bound a
/// chain's work without the ancestors [`next_work_required`] needs.
///
/// Always true where `allow_min_difficulty_blocks`. Off a boundary the bits must be equal; on a
/// boundary the new target must lie within the ÷4 … ×4 range of the old one (each bound capped
/// at the proof-of-work limit and rounded through the compact encoding, as Core).
pub fn permitted_difficulty_transition(
    params: &ChainParams,
    height: u32,
    old_bits: CompactTarget,
    new_bits: CompactTarget,
) -> bool {
    if params.consensus.allow_min_difficulty_blocks {
        return true;
    }
    if !height.is_multiple_of(adjustment_interval(params)) {
        return old_bits == new_bits;
    }
    let timespan = timespan(params) as u64;
    let limit = U256::from_target(params.consensus.max_attainable_target);
    let observed = U256::from_compact(new_bits.to_consensus()).value;
    let old = U256::from_compact(old_bits.to_consensus()).value;
    let bound = |span: u64| {
        let mut t = old.wrapping_mul_u64(span).div_u64(timespan);
        if t > limit {
            t = limit;
        }
        // Round through the compact form, as the result would be.
        U256::from_compact(t.to_target().to_compact_lossy().to_consensus()).value
    };
    observed <= bound(timespan * 4) && observed >= bound(timespan / 4)
}

/// Core's `CheckProofOfWork` (`src/pow.cpp`): `bits` must decode to a positive target that is
/// neither negative, overflowing, nor above the proof-of-work limit, and `hash` (read as a
/// little-endian 256-bit number) must not exceed it.
pub fn check_proof_of_work(params: &ChainParams, hash: BlockHash, bits: CompactTarget) -> bool {
    use bitcoin::hashes::Hash as _;
    let decoded = U256::from_compact(bits.to_consensus());
    if decoded.negative || decoded.overflow || decoded.value.is_zero() {
        return false;
    }
    if decoded.value > U256::from_target(params.consensus.max_attainable_target) {
        return false;
    }
    U256::from_le_bytes(hash.to_byte_array()) <= decoded.value
}

/// The expected number of hashes to meet `bits`: Core's `GetBlockProof` (`src/chain.cpp`),
/// `2^256 / (target + 1)`; zero for a negative, overflowing or zero target.
///
/// Equals [`bitcoin::block::Header::work`] for every valid target except `1`, where rust-bitcoin
/// answers `2^256 - 1` and Core `2^255`.
pub fn block_proof(bits: CompactTarget) -> Work {
    let decoded = U256::from_compact(bits.to_consensus());
    if decoded.negative || decoded.overflow || decoded.value.is_zero() {
        return Work::from_le_bytes([0; 32]);
    }
    if decoded.value == U256([1, 0, 0, 0]) {
        let mut be = [0u8; 32];
        be[0] = 0x80;
        return Work::from_be_bytes(be);
    }
    decoded.value.to_target().to_work()
}

/// `a + b`, saturating at `2^256 - 1` (chain work cannot realistically get near it, but headers
/// loaded from storage are trusted and unchecked, and `Work`'s `+` panics on overflow in debug).
pub fn add_work(a: Work, b: Work) -> Work {
    let (sum, carry) =
        U256::from_le_bytes(a.to_le_bytes()).overflowing_add(U256::from_le_bytes(b.to_le_bytes()));
    if carry {
        Work::from_le_bytes([0xff; 32])
    } else {
        Work::from_le_bytes(sum.to_le_bytes())
    }
}

/// `work × n`, saturating at `2^256 - 1` as [`add_work`]: the work of `n` headers with the same
/// `bits`, in one multiplication instead of `n` additions.
pub(crate) fn mul_work(work: Work, n: u64) -> Work {
    let w = U256::from_le_bytes(work.to_le_bytes());
    let mut out = [0u64; 4];
    let mut carry = 0u128;
    for (i, o) in out.iter_mut().enumerate() {
        let product = u128::from(w.0[i]) * u128::from(n) + carry;
        *o = product as u64;
        carry = product >> 64;
    }
    if carry != 0 {
        Work::from_le_bytes([0xff; 32])
    } else {
        Work::from_le_bytes(U256(out).to_le_bytes())
    }
}

/// Blocks per difficulty period (2016; 144 on Core's regtest), at least 1 so that custom
/// parameters cannot divide by zero.
pub(crate) fn adjustment_interval(params: &ChainParams) -> u32 {
    let c = &params.consensus;
    let interval = c
        .pow_target_timespan
        .checked_div(c.pow_target_spacing)
        .unwrap_or(1);
    u32::try_from(interval).unwrap_or(u32::MAX).max(1)
}

fn timespan(params: &ChainParams) -> i64 {
    // At least 4 so that the ÷4 clamp bound stays positive for custom parameters.
    i64::try_from(params.consensus.pow_target_timespan)
        .unwrap_or(i64::MAX / 8)
        .max(4)
}

/// A 256-bit unsigned integer as little-endian 64-bit limbs (Core's `arith_uint256`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct U256([u64; 4]);

/// Core's `arith_uint256::SetCompact` result: the value and its two flags.
struct Decoded {
    value: U256,
    negative: bool,
    overflow: bool,
}

impl U256 {
    const ZERO: U256 = U256([0; 4]);

    fn from_le_bytes(bytes: [u8; 32]) -> U256 {
        let mut limbs = [0u64; 4];
        for (limb, chunk) in limbs.iter_mut().zip(bytes.chunks_exact(8)) {
            *limb = u64::from_le_bytes(chunk.try_into().expect("8-byte chunk"));
        }
        U256(limbs)
    }

    fn to_le_bytes(self) -> [u8; 32] {
        let mut bytes = [0u8; 32];
        for (chunk, limb) in bytes.chunks_exact_mut(8).zip(self.0) {
            chunk.copy_from_slice(&limb.to_le_bytes());
        }
        bytes
    }

    fn from_target(t: Target) -> U256 {
        U256::from_le_bytes(t.to_le_bytes())
    }

    fn to_target(self) -> Target {
        Target::from_le_bytes(self.to_le_bytes())
    }

    fn is_zero(&self) -> bool {
        self.0 == [0; 4]
    }

    /// Core's `SetCompact`: a 3-byte mantissa (its top bit a sign) times `256^(size - 3)`.
    fn from_compact(compact: u32) -> Decoded {
        let size = compact >> 24;
        let mut word = compact & 0x007f_ffff;
        let value = if size <= 3 {
            word >>= 8 * (3 - size);
            U256([u64::from(word), 0, 0, 0])
        } else {
            U256([u64::from(word), 0, 0, 0]).shl(8 * (size - 3))
        };
        let negative = word != 0 && (compact & 0x0080_0000) != 0;
        let overflow =
            word != 0 && (size > 34 || (word > 0xff && size > 33) || (word > 0xffff && size > 32));
        Decoded {
            value,
            negative,
            overflow,
        }
    }

    /// Shift left, dropping bits shifted past 2^256 (Core's `operator<<=`).
    fn shl(self, shift: u32) -> U256 {
        if shift >= 256 {
            return U256::ZERO;
        }
        let (limbs, bits) = ((shift / 64) as usize, shift % 64);
        let mut out = [0u64; 4];
        for i in (limbs..4).rev() {
            out[i] = self.0[i - limbs] << bits;
            if bits > 0 && i > limbs {
                out[i] |= self.0[i - limbs - 1] >> (64 - bits);
            }
        }
        U256(out)
    }

    fn wrapping_mul_u64(self, m: u64) -> U256 {
        let mut out = [0u64; 4];
        let mut carry = 0u128;
        for (o, limb) in out.iter_mut().zip(self.0) {
            let p = u128::from(limb) * u128::from(m) + carry;
            *o = p as u64;
            carry = p >> 64;
        }
        U256(out)
    }

    fn div_u64(self, d: u64) -> U256 {
        let mut out = [0u64; 4];
        let mut rem = 0u128;
        for i in (0..4).rev() {
            let cur = (rem << 64) | u128::from(self.0[i]);
            out[i] = (cur / u128::from(d)) as u64;
            rem = cur % u128::from(d);
        }
        U256(out)
    }

    fn overflowing_add(self, other: U256) -> (U256, bool) {
        let mut out = [0u64; 4];
        let mut carry = false;
        for (i, o) in out.iter_mut().enumerate() {
            let (s1, c1) = self.0[i].overflowing_add(other.0[i]);
            let (s2, c2) = s1.overflowing_add(u64::from(carry));
            *o = s2;
            carry = c1 || c2;
        }
        (U256(out), carry)
    }
}

impl PartialOrd for U256 {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for U256 {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        // Most significant limb first.
        self.0.iter().rev().cmp(other.0.iter().rev())
    }
}

#[cfg(test)]
mod tests {
    use bitcoin::Network;

    use super::*;

    fn bits(b: u32) -> CompactTarget {
        CompactTarget::from_consensus(b)
    }

    fn info(bits_: u32, time: u32) -> AncestorInfo {
        AncestorInfo {
            bits: bits(bits_),
            time,
        }
    }

    #[test]
    fn compact_flags_as_core() {
        // Vectors from Core's arith_uint256_tests (SetCompact/GetCompact).
        let d = U256::from_compact(0x0492_3456);
        assert_eq!(d.value, U256([0x1234_5600, 0, 0, 0]));
        assert!(d.negative);
        let d = U256::from_compact(0x0112_3456);
        assert_eq!(d.value, U256([0x12, 0, 0, 0]));
        assert!(!d.negative && !d.overflow);
        let d = U256::from_compact(0xff12_3456);
        assert!(d.overflow);
        let d = U256::from_compact(0x2300_1234); // size 35 but word ≤ 0xffff... > 34 → overflow
        assert!(d.overflow);
        let d = U256::from_compact(0x2200_0012); // size 34, word ≤ 0xff: fits
        assert!(!d.overflow);
        assert_eq!(d.value, U256([0, 0, 0, 0x12 << 56]));
        let d = U256::from_compact(0x0080_0000); // zero mantissa with sign bit: not negative
        assert!(!d.negative && d.value.is_zero());
    }

    #[test]
    fn proof_matches_rust_bitcoin_and_core() {
        for b in [0x1d00_ffffu32, 0x1703_e8b3, 0x207f_ffff, 0x1e03_77ae] {
            let target = Target::from_compact(bits(b));
            assert_eq!(block_proof(bits(b)), target.to_work(), "{b:08x}");
        }
        // Genesis work, as Core's `getblockheader 0` chainwork 0x100010001.
        assert_eq!(
            block_proof(bits(0x1d00_ffff)),
            Work::from_unprefixed_hex("100010001").unwrap()
        );
        assert_eq!(block_proof(bits(0x0180_0001)), Work::from_le_bytes([0; 32])); // negative
        assert_eq!(block_proof(bits(0x0100_0000)), Work::from_le_bytes([0; 32])); // zero
        assert_eq!(block_proof(bits(0xff12_3456)), Work::from_le_bytes([0; 32])); // overflow
        let mut half = [0u8; 32];
        half[0] = 0x80;
        assert_eq!(block_proof(bits(0x0101_0000)), Work::from_be_bytes(half)); // target 1
    }

    #[test]
    fn mul_work_is_repeated_addition_and_saturates() {
        let proof = block_proof(CompactTarget::from_consensus(0x1d00_ffff));
        let mut sum = Work::from_le_bytes([0; 32]);
        for n in 0..70u64 {
            assert_eq!(mul_work(proof, n), sum, "n = {n}");
            sum = add_work(sum, proof);
        }
        let big = Work::from_le_bytes([0xff; 32]);
        assert_eq!(mul_work(big, 2), big);
        assert_eq!(mul_work(big, 1), big);
    }

    #[test]
    fn add_work_saturates() {
        let max = Work::from_le_bytes([0xff; 32]);
        let one = Work::from_unprefixed_hex("1").unwrap();
        assert_eq!(add_work(max, one), max);
        assert_eq!(
            add_work(Work::from_unprefixed_hex("ffffffffffffffff").unwrap(), one),
            Work::from_unprefixed_hex("10000000000000000").unwrap()
        );
    }

    #[test]
    fn pow_limit_check() {
        let params = ChainParams::new(Network::Bitcoin);
        let zero = BlockHash::from_byte_array([0; 32]);
        use bitcoin::hashes::Hash as _;
        assert!(check_proof_of_work(&params, zero, bits(0x1d00_ffff)));
        // One mantissa step above the limit.
        assert!(!check_proof_of_work(&params, zero, bits(0x1d01_0000)));
        assert!(!check_proof_of_work(&params, zero, bits(0x1c80_0001))); // negative
        assert!(!check_proof_of_work(&params, zero, bits(0x0100_0000))); // zero
                                                                         // A hash equal to the target passes, one above fails.
        let mut le = [0u8; 32];
        le[26] = 0xff;
        le[27] = 0xff;
        assert!(check_proof_of_work(
            &params,
            BlockHash::from_byte_array(le),
            bits(0x1d00_ffff)
        ));
        le[0] = 1;
        assert!(!check_proof_of_work(
            &params,
            BlockHash::from_byte_array(le),
            bits(0x1d00_ffff)
        ));
    }

    #[test]
    fn retarget_clamps_and_caps() {
        let p = ChainParams::new(Network::Bitcoin);
        // Core's pow_tests: get_next_work (first retarget 32256).
        assert_eq!(
            calculate_next_work_required(&p, info(0, 1261130161), info(0x1d00ffff, 1262152739)),
            bits(0x1d00d86a)
        );
        // get_next_work_pow_limit: capped.
        assert_eq!(
            calculate_next_work_required(&p, info(0, 1231006505), info(0x1d00ffff, 1233061996)),
            bits(0x1d00ffff)
        );
        // get_next_work_lower_limit_actual: ÷4 clamp.
        assert_eq!(
            calculate_next_work_required(&p, info(0, 1279008237), info(0x1c05a3f4, 1279297671)),
            bits(0x1c0168fd)
        );
        // get_next_work_upper_limit_actual: ×4 clamp.
        assert_eq!(
            calculate_next_work_required(&p, info(0, 1263163443), info(0x1c387f6f, 1269211443)),
            bits(0x1d00e1fd)
        );
        // A negative span clamps to ÷4 rather than wrapping.
        assert_eq!(
            calculate_next_work_required(&p, info(0, 2000), info(0x1c05a3f4, 1000)),
            calculate_next_work_required(&p, info(0, 0), info(0x1c05a3f4, 1))
        );
    }

    #[test]
    fn regtest_never_retargets() {
        let p = ChainParams::new(Network::Regtest);
        let interval = adjustment_interval(&p);
        assert_eq!(interval, 144, "Core's regtest: one-day timespan");
        let got = next_work_required(&p, interval, 1, |_| Some(info(0x207fffff, 1))).unwrap();
        assert_eq!(got, bits(0x207fffff));
        assert_eq!(
            calculate_next_work_required(&p, info(1, 0), info(0x1f00ffff, 1)),
            bits(0x1f00ffff)
        );
    }

    #[test]
    fn testnet_twenty_minute_rule_and_walk_back() {
        let p = ChainParams::new(Network::Testnet);
        let real = 0x1c3f_ffc0;
        // Heights 4032 (boundary, real), 4033..4035 min-difficulty, new header at 4036.
        let chain = |h: u32| -> Option<AncestorInfo> {
            match h {
                4032 => Some(info(real, 10_000)),
                4033..=4035 => Some(info(0x1d00ffff, 10_000 + (h - 4032) * 1300)),
                _ => None,
            }
        };
        let last_time = 10_000 + 3 * 1300;
        // More than 1200 s after the parent: minimum difficulty.
        assert_eq!(
            next_work_required(&p, 4036, last_time + 1201, chain),
            Ok(bits(0x1d00ffff))
        );
        // Exactly 1200 s: the walk back finds the boundary's real bits.
        assert_eq!(
            next_work_required(&p, 4036, last_time + 1200, chain),
            Ok(bits(real))
        );
        // The walk stops at the period's first header even if it is min-difficulty.
        let all_min = |h: u32| (h >= 4032).then(|| info(0x1d00ffff, 0));
        assert_eq!(
            next_work_required(&p, 4036, 0, all_min),
            Ok(bits(0x1d00ffff))
        );
        // And reports the ancestor it could not get.
        assert_eq!(
            next_work_required(&p, 4036, 0, |h| (h >= 4034).then(|| info(0x1d00ffff, 0))),
            Err(MissingAncestor { height: 4033 })
        );
        // Mainnet has no such rule.
        let m = ChainParams::new(Network::Bitcoin);
        assert_eq!(
            next_work_required(&m, 4036, u32::MAX, chain),
            Ok(bits(0x1d00ffff))
        );
        assert_eq!(
            next_work_required(&m, 0, 0, chain),
            Err(MissingAncestor { height: 0 })
        );
    }

    #[test]
    fn bip94_retargets_from_the_first_header() {
        // Testnet4: the last header of a period is a min-difficulty one; BIP94 retargets from the
        // first header's (real) bits. Testnet3 would retarget from the min-difficulty bits.
        let chain = |h: u32| match h {
            2016 => Some(info(0x1c3f_ffc0, 1_000_000)),
            4031 => Some(info(0x1d00_ffff, 1_000_000 + 1_209_600)),
            _ => None,
        };
        let t4 = ChainParams::new(Network::Testnet4);
        assert!(t4.enforce_bip94);
        assert_eq!(
            next_work_required(&t4, 4032, 0, chain),
            Ok(bits(0x1c3f_ffc0))
        );
        let t3 = ChainParams::new(Network::Testnet);
        assert!(!t3.enforce_bip94);
        assert_eq!(
            next_work_required(&t3, 4032, 0, chain),
            Ok(bits(0x1d00_ffff))
        );
    }

    #[test]
    fn permitted_transitions() {
        let p = ChainParams::new(Network::Bitcoin);
        assert!(permitted_difficulty_transition(
            &p,
            68544,
            bits(0x1c05a3f4),
            bits(0x1c0168fd)
        ));
        // One mantissa step past the ÷4 bound.
        assert!(!permitted_difficulty_transition(
            &p,
            68544,
            bits(0x1c05a3f4),
            bits(0x1c0168fc)
        ));
        assert!(!permitted_difficulty_transition(
            &p,
            68545,
            bits(0x1c05a3f4),
            bits(0x1c0168fd)
        ));
        assert!(permitted_difficulty_transition(
            &p,
            68545,
            bits(0x1c05a3f4),
            bits(0x1c05a3f4)
        ));
        // Above the limit is never permitted, even on a boundary.
        assert!(!permitted_difficulty_transition(
            &p,
            2016,
            bits(0x1d00ffff),
            bits(0x1d01_0000)
        ));
        let t = ChainParams::new(Network::Testnet);
        assert!(permitted_difficulty_transition(
            &t,
            5,
            bits(0x1c05a3f4),
            bits(0x1d00ffff)
        ));
    }
}
