//! `verack::sync::presync` (Bitcoin Core's `HeadersSyncState`) driven with regtest headers mined
//! here. The first three tests are ports of Core's `src/test/headers_sync_chainwork_tests.cpp`
//! (same chain lengths, work threshold and buffer size); the rest cover each failure and the
//! memory bounds.

use std::sync::OnceLock;

use bitcoin::block::{Header, Version};
use bitcoin::consensus::encode::deserialize_hex;
use bitcoin::hashes::Hash as _;
use bitcoin::{BlockHash, CompactTarget, Network, TxMerkleNode, Work};
use verack::chain::{add_work, block_proof, check_proof_of_work, ChainParams, HeaderTree};
use verack::sync::presync::{
    ChainStart, HeadersSyncParams, HeadersSyncState, Phase, PresyncFailure, PresyncSalt, State,
    SyncEnd,
};

/// "Now", Unix seconds (2033): after every header here.
const NOW: u32 = 2_000_000_000;
const REGTEST_BITS: u32 = 0x207f_ffff;
const MAX_HEADERS_RESULTS: usize = 2000;

// Core's test parameters.
const TARGET_BLOCKS: usize = 15_000;
/// Regtest headers carry work 2 each (target ≈ 2^255), so TARGET_BLOCKS headers, genesis
/// included, reach this exactly.
const CHAIN_WORK: u64 = TARGET_BLOCKS as u64 * 2;
/// Well below the headers needed to reach CHAIN_WORK, as on mainnet.
const REDOWNLOAD_BUFFER_SIZE: usize = TARGET_BLOCKS - (MAX_HEADERS_RESULTS + 123);
const COMMITMENT_PERIOD: u32 = 600;

fn bits(b: u32) -> CompactTarget {
    CompactTarget::from_consensus(b)
}

fn work(n: u64) -> Work {
    let mut be = [0u8; 32];
    be[24..].copy_from_slice(&n.to_be_bytes());
    Work::from_be_bytes(be)
}

fn regtest() -> ChainParams {
    ChainParams::new(Network::Regtest)
}

/// `h` with the first nonce (from its current one) that meets its bits and for which `accept`
/// holds.
fn solve(mut h: Header, params: &ChainParams, accept: impl Fn(&Header) -> bool) -> Header {
    while !(check_proof_of_work(params, h.block_hash(), h.bits) && accept(&h)) {
        h.nonce = h.nonce.wrapping_add(1);
    }
    h
}

/// A header on `parent`, one second later (as Core's test generator), with merkle root `tag`.
fn next(parent: &Header, tag: u8, b: u32) -> Header {
    Header {
        version: Version::from_consensus(0x2000_0000),
        prev_blockhash: parent.block_hash(),
        merkle_root: TxMerkleNode::from_byte_array([tag; 32]),
        time: parent.time + 1,
        bits: bits(b),
        nonce: 0,
    }
}

/// `count` headers on `parent`, each meeting `b`; `tag` makes chains distinct.
fn chain(parent: &Header, count: usize, tag: u8, b: u32) -> Vec<Header> {
    let params = regtest();
    let mut out: Vec<Header> = Vec::with_capacity(count);
    for _ in 0..count {
        let h = solve(next(out.last().unwrap_or(parent), tag, b), &params, |_| {
            true
        });
        out.push(h);
    }
    out
}

fn genesis_tree() -> HeaderTree {
    HeaderTree::new(regtest())
}

fn genesis() -> Header {
    genesis_tree().tip().header
}

fn genesis_start() -> (ChainStart, Vec<BlockHash>) {
    let tree = genesis_tree();
    let start = ChainStart::from_tree(&tree, &tree.tip().hash).unwrap();
    (start, tree.locator())
}

fn salt(offset: u64) -> PresyncSalt {
    PresyncSalt {
        k0: 0x0123_4567_89ab_cdef,
        k1: 0xfedc_ba98_7654_3210,
        offset,
    }
}

fn sync_params(period: u32, buffer: usize) -> HeadersSyncParams {
    HeadersSyncParams {
        commitment_period: period,
        redownload_buffer_size: buffer,
    }
}

/// Core's `FirstChain`: enough work with genesis.
fn first_chain() -> &'static [Header] {
    static CHAIN: OnceLock<Vec<Header>> = OnceLock::new();
    CHAIN.get_or_init(|| chain(&genesis(), TARGET_BLOCKS - 1, 0, REGTEST_BITS))
}

/// Core's `SecondChain`: one header short of the work.
fn second_chain() -> &'static [Header] {
    static CHAIN: OnceLock<Vec<Header>> = OnceLock::new();
    CHAIN.get_or_init(|| chain(&genesis(), TARGET_BLOCKS - 2, 1, REGTEST_BITS))
}

/// Core's `CreateState`, with a random salt as Core draws one.
fn core_state() -> HeadersSyncState {
    let (start, locator) = genesis_start();
    HeadersSyncState::new(
        &regtest(),
        sync_params(COMMITMENT_PERIOD, REDOWNLOAD_BUFFER_SIZE),
        &start,
        locator,
        work(CHAIN_WORK),
        PresyncSalt::random(&mut rand::thread_rng()),
        NOW,
    )
}

fn hashes(headers: &[Header]) -> Vec<BlockHash> {
    headers.iter().map(Header::block_hash).collect()
}

#[test]
fn sneaky_redownload() {
    // Core's `sneaky_redownload`: presync the high-work chain, then serve a different one.
    let (first, second) = (first_chain(), second_chain());
    let genesis_hash = genesis().block_hash();
    let mut hss = core_state();

    let r = hss.process_next_headers(&first[..1], true);
    assert_eq!(hss.state(), State::Presync);
    assert!(r.success && r.request_more && r.pow_validated_headers.is_empty());
    assert_eq!(hss.next_headers_request_locator()[0], first[0].block_hash());

    let r = hss.process_next_headers(&first[1..], true);
    assert_eq!(hss.state(), State::Redownload);
    assert!(r.success && r.request_more && r.pow_validated_headers.is_empty());
    assert_eq!(hss.next_headers_request_locator()[0], genesis_hash);

    // 25 commitments must all match by chance for this to pass: 1 in 2^25.
    assert_eq!(TARGET_BLOCKS / COMMITMENT_PERIOD as usize, 25);
    let r = hss.process_next_headers(second, true);
    assert_eq!(hss.state(), State::Final);
    assert!(!r.success && !r.request_more && r.pow_validated_headers.is_empty());
    assert!(
        matches!(
            r.failure,
            Some(PresyncFailure::CommitmentMismatch { height }) if height < 15_000
        ),
        "{:?}",
        r.failure
    );
    assert_eq!(hss.end(), r.failure.map(SyncEnd::Failed));
    assert!(hss.next_headers_request_locator().is_empty());
    assert_eq!(hss.commitment_count(), 0);
}

#[test]
fn happy_path() {
    // Core's `happy_path`: the message that moves to the next state need not be full.
    let first = first_chain();
    let genesis_hash = genesis().block_hash();
    for full in [false, true] {
        let mut hss = core_state();
        let r = hss.process_next_headers(first, full);
        assert_eq!(hss.state(), State::Redownload);
        assert!(r.success && r.request_more && r.pow_validated_headers.is_empty());
        assert_eq!(hss.next_headers_request_locator()[0], genesis_hash);
        assert_eq!(hss.presync_height(), TARGET_BLOCKS as u32 - 1);
        assert_eq!(hss.presync_work(), work(CHAIN_WORK));
        assert_eq!(hss.redownload_height(), Some(0));

        // Up to the buffer size, nothing is released.
        let r = hss.process_next_headers(&first[..REDOWNLOAD_BUFFER_SIZE], true);
        assert_eq!(hss.state(), State::Redownload);
        assert!(r.success && r.request_more && r.pow_validated_headers.is_empty());
        assert_eq!(
            hss.next_headers_request_locator()[0],
            first[REDOWNLOAD_BUFFER_SIZE - 1].block_hash()
        );
        assert_eq!(hss.redownload_buffer_len(), REDOWNLOAD_BUFFER_SIZE);

        // One more releases the first header, on genesis.
        let r = hss.process_next_headers(&first[REDOWNLOAD_BUFFER_SIZE..][..1], true);
        assert_eq!(hss.state(), State::Redownload);
        assert!(r.success && r.request_more);
        assert_eq!(r.pow_validated_headers, first[..1]);
        assert_eq!(r.pow_validated_headers[0].prev_blockhash, genesis_hash);
        assert_eq!(
            hss.next_headers_request_locator()[0],
            first[REDOWNLOAD_BUFFER_SIZE].block_hash()
        );

        // The rest reaches the threshold again: everything else is released, in order.
        let r = hss.process_next_headers(&first[REDOWNLOAD_BUFFER_SIZE + 1..], full);
        assert_eq!(hss.state(), State::Final);
        assert!(r.success && !r.request_more && r.failure.is_none());
        assert_eq!(r.pow_validated_headers.len(), first.len() - 1);
        assert_eq!(
            r.pow_validated_headers,
            first[1..],
            "exactly the chain, in order"
        );
        assert_eq!(
            hss.end(),
            Some(SyncEnd::Complete {
                height: TARGET_BLOCKS as u32 - 1
            })
        );
        assert!(hss.next_headers_request_locator().is_empty());
        assert_eq!(
            (hss.commitment_count(), hss.redownload_buffer_len()),
            (0, 0)
        );
    }
}

#[test]
fn too_little_work() {
    // Core's `too_little_work`: a non-full message ends a low-work sync, without error.
    let second = second_chain();
    let mut hss = core_state();
    assert_eq!(hss.state(), State::Presync);

    let r = hss.process_next_headers(&second[..1], true);
    assert_eq!(hss.state(), State::Presync);
    assert!(r.success && r.request_more && r.pow_validated_headers.is_empty());
    assert_eq!(
        hss.next_headers_request_locator()[0],
        second[0].block_hash()
    );

    let r = hss.process_next_headers(&second[1..], false);
    assert_eq!(hss.state(), State::Final);
    assert!(r.success, "no validation error in a merely short chain");
    assert!(!r.request_more && r.pow_validated_headers.is_empty() && r.failure.is_none());
    assert_eq!(
        hss.end(),
        Some(SyncEnd::IncompleteHeadersMessage {
            phase: Phase::Presync,
            height: TARGET_BLOCKS as u32 - 2
        })
    );
    assert!(hss.next_headers_request_locator().is_empty());
}

#[test]
fn a_low_work_chain_is_never_released_and_costs_a_bit_per_period() {
    // 12 000 headers (6 full messages) against a threshold they never reach, with a small
    // commitment period so the count is large enough to see its bound.
    const PERIOD: u32 = 7;
    const OFFSET: u32 = 3;
    let (start, locator) = genesis_start();
    let low = &second_chain()[..12_000];
    let mut hss = HeadersSyncState::new(
        &regtest(),
        sync_params(PERIOD, 100),
        &start,
        locator,
        work(CHAIN_WORK),
        salt(u64::from(OFFSET) + 10 * u64::from(PERIOD)),
        NOW,
    );
    for (i, message) in low.chunks(MAX_HEADERS_RESULTS).enumerate() {
        let r = hss.process_next_headers(message, true);
        assert!(r.success && r.request_more && r.pow_validated_headers.is_empty());
        assert_eq!(hss.state(), State::Presync);
        let height = hss.presync_height();
        assert_eq!(height as usize, (i + 1) * MAX_HEADERS_RESULTS);
        // Heights 1..=height with h % 7 == 3: exactly one commitment per committed height.
        let committed = (1..=height).filter(|h| h % PERIOD == OFFSET).count() as u64;
        assert_eq!(hss.commitment_count(), committed);
        assert!(hss.commitment_count() <= u64::from(height / PERIOD) + 1);
        assert_eq!(
            hss.redownload_buffer_len(),
            0,
            "nothing buffered in presync"
        );
        assert_eq!(hss.presync_work(), work(2 + 2 * u64::from(height)));
        assert_eq!(hss.presync_time(), message.last().unwrap().time);
        let loc = hss.next_headers_request_locator();
        assert_eq!(loc[0], message.last().unwrap().block_hash());
        assert_eq!(loc[1..], [start.hash], "then the chain start's locator");
    }
    // The peer's chain ends: the sync ends with nothing kept.
    let r = hss.process_next_headers(&second_chain()[12_000..12_001], false);
    assert!(r.success && !r.request_more && r.pow_validated_headers.is_empty());
    assert_eq!(hss.state(), State::Final);
    assert_eq!(
        (hss.commitment_count(), hss.redownload_buffer_len()),
        (0, 0)
    );
    assert_eq!((hss.presync_height(), hss.presync_time()), (0, 0));
}

/// A header on `parent` (merkle tag `tag`) whose commitment bit under `salt` is `bit`.
fn with_bit(parent: &Header, tag: u8, salt: &PresyncSalt, bit: bool) -> Header {
    solve(next(parent, tag, REGTEST_BITS), &regtest(), |h| {
        salt.commitment_bit(&h.block_hash()) == bit
    })
}

#[test]
fn a_chain_that_diverges_from_its_commitments_in_redownload_fails() {
    // Period 10, offset 3: commitments at heights 3, 13, 23, … The peer presyncs chain A,
    // then redownloads A up to height 12 and a different chain B from height 13. B's header at
    // 13 is crafted to carry A's commitment bit (a divergent header passes a 1-bit commitment
    // half the time), and its header at 23 the other bit: the sync must fail there, with
    // nothing released.
    const PERIOD: u32 = 10;
    let s = salt(3);
    let a = chain(&genesis(), 99, 0, REGTEST_BITS); // work 2 + 99·2 = 200
    let (start, locator) = genesis_start();
    let mut hss = HeadersSyncState::new(
        &regtest(),
        sync_params(PERIOD, 50),
        &start,
        locator,
        work(200),
        s,
        NOW,
    );
    let r = hss.process_next_headers(&a, false);
    assert!(r.success && r.request_more);
    assert_eq!(hss.state(), State::Redownload);
    assert_eq!(hss.commitment_count(), 10, "heights 3, 13, …, 93");

    let bit = |h: &Header| s.commitment_bit(&h.block_hash());
    let mut b: Vec<Header> = a[..12].to_vec(); // heights 1..=12
    b.push(with_bit(&a[11], 7, &s, bit(&a[12]))); // height 13: passes by its bit
    assert_ne!(b[12], a[12]);
    b.extend(chain(&b[12], 9, 7, REGTEST_BITS)); // heights 14..=22
    let last = *b.last().unwrap();
    b.push(with_bit(&last, 7, &s, !bit(&a[22]))); // height 23: the other bit
    b.extend(chain(b.last().unwrap(), 10, 7, REGTEST_BITS));

    // Up to height 22 B is accepted (buffered, nothing released: buffer 50).
    let r = hss.process_next_headers(&b[..22], true);
    assert!(r.success && r.request_more && r.pow_validated_headers.is_empty());
    assert_eq!(hss.redownload_height(), Some(22));
    assert_eq!(hss.commitment_count(), 8, "3 and 13 checked");

    let r = hss.process_next_headers(&b[22..], true);
    assert_eq!(
        r.failure,
        Some(PresyncFailure::CommitmentMismatch { height: 23 })
    );
    assert!(!r.success && !r.request_more && r.pow_validated_headers.is_empty());
    assert_eq!(hss.state(), State::Final);
    assert_eq!(
        hss.end(),
        Some(SyncEnd::Failed(PresyncFailure::CommitmentMismatch {
            height: 23
        }))
    );
    assert_eq!(
        (hss.commitment_count(), hss.redownload_buffer_len()),
        (0, 0)
    );
}

#[test]
fn a_lower_work_chain_matching_every_commitment_overruns_them() {
    // Presync: chain A of 100 headers at bits 0x203fffff (work 4 each). Redownload: chain B at
    // the easiest bits (work 2 each), crafted (with the salt, which a real peer cannot know) to
    // carry A's bit at every committed height. B reaches height 103, a committed height, with
    // A's 10 commitments used up and only half the work: Core's "commitment overrun".
    const HARD: u32 = 0x203f_ffff;
    assert_eq!(block_proof(bits(HARD)), work(4));
    assert_eq!(block_proof(bits(REGTEST_BITS)), work(2));
    let s = salt(3);
    let a = chain(&genesis(), 100, 0, HARD);
    let (start, locator) = genesis_start();
    let threshold = work(2 + 4 * 100);
    let mut hss = HeadersSyncState::new(
        &regtest(),
        sync_params(10, 1000),
        &start,
        locator,
        threshold,
        s,
        NOW,
    );
    let r = hss.process_next_headers(&a, true);
    assert!(r.success && r.request_more);
    assert_eq!(hss.state(), State::Redownload);
    assert_eq!(hss.commitment_count(), 10);

    let mut b: Vec<Header> = Vec::new();
    for height in 1..=110u32 {
        let parent = *b.last().unwrap_or(&start.header);
        let h = if height % 10 == 3 && height <= 100 {
            let want = s.commitment_bit(&a[height as usize - 1].block_hash());
            with_bit(&parent, 9, &s, want)
        } else {
            solve(next(&parent, 9, REGTEST_BITS), &regtest(), |_| true)
        };
        b.push(h);
    }
    let r = hss.process_next_headers(&b, true);
    assert_eq!(
        r.failure,
        Some(PresyncFailure::CommitmentOverrun { height: 103 })
    );
    assert!(!r.success && r.pow_validated_headers.is_empty());
    assert_eq!(hss.state(), State::Final);
}

#[test]
fn a_chain_longer_than_time_allows_exceeds_max_commitments() {
    // Core bounds the commitments by the longest chain the median-time-past rule allows:
    // 6 headers a second from the chain start's MTP to now + 2 h. With "now" 10 s past
    // MTP − 2 h: 60 headers, 6 commitments at period 10.
    let (start, locator) = genesis_start();
    let now = start.median_time_past - 7200 + 10;
    let mut hss = HeadersSyncState::new(
        &regtest(),
        sync_params(10, 100),
        &start,
        locator.clone(),
        work(CHAIN_WORK),
        salt(0),
        now,
    );
    assert_eq!(hss.max_commitments(), 6);
    let headers = &second_chain()[..100];
    let r = hss.process_next_headers(&headers[..69], true);
    assert!(r.success && r.request_more);
    assert_eq!(hss.commitment_count(), 6, "heights 10..=60");
    let r = hss.process_next_headers(&headers[69..], true);
    assert_eq!(
        r.failure,
        Some(PresyncFailure::ExceededMaxCommitments { height: 70 })
    );
    assert_eq!(hss.state(), State::Final);
    assert_eq!(hss.commitment_count(), 0);

    // A clock behind the chain start allows no commitment at all (Core's unsigned arithmetic
    // would allow unboundedly many).
    let mut hss = HeadersSyncState::new(
        &regtest(),
        sync_params(10, 100),
        &start,
        locator.clone(),
        work(CHAIN_WORK),
        salt(0),
        0,
    );
    assert_eq!(hss.max_commitments(), 0);
    let r = hss.process_next_headers(&headers[..20], true);
    assert_eq!(
        r.failure,
        Some(PresyncFailure::ExceededMaxCommitments { height: 10 })
    );

    // The default: at 2033, about 6 × 2033−2011 years of headers.
    let hss = HeadersSyncState::new(
        &regtest(),
        HeadersSyncParams::REGTEST,
        &start,
        locator,
        work(CHAIN_WORK),
        salt(0),
        NOW,
    );
    assert_eq!(
        hss.max_commitments(),
        6 * u64::from(NOW - start.median_time_past + 7200) / 275
    );
}

#[test]
fn non_continuous_headers_fail() {
    let (start, locator) = genesis_start();
    let new = || {
        HeadersSyncState::new(
            &regtest(),
            sync_params(10, 1000),
            &start,
            locator.clone(),
            work(200),
            salt(0),
            NOW,
        )
    };
    let a = &first_chain()[..120];

    // The first message does not build on the chain start.
    let mut hss = new();
    let r = hss.process_next_headers(&a[1..10], true);
    assert_eq!(
        r.failure,
        Some(PresyncFailure::NonContinuous {
            phase: Phase::Presync,
            height: 1
        })
    );
    assert!(!r.success && !r.request_more);
    assert_eq!(hss.state(), State::Final);

    // A later message does not build on the last header received.
    let mut hss = new();
    assert!(hss.process_next_headers(&a[..10], true).success);
    let r = hss.process_next_headers(&a[11..20], true);
    assert_eq!(
        r.failure,
        Some(PresyncFailure::NonContinuous {
            phase: Phase::Presync,
            height: 11
        })
    );

    // A gap inside a message (Core's caller catches this first; checked here too).
    let mut hss = new();
    let gapped: Vec<Header> = a[..5].iter().chain(&a[6..10]).copied().collect();
    let r = hss.process_next_headers(&gapped, true);
    assert_eq!(
        r.failure,
        Some(PresyncFailure::NonContinuous {
            phase: Phase::Presync,
            height: 6
        })
    );

    // In redownload: the redownload must start again from the chain start.
    let mut hss = new();
    assert!(hss.process_next_headers(&a[..99], true).request_more);
    assert_eq!(hss.state(), State::Redownload);
    let r = hss.process_next_headers(&a[50..60], true);
    assert_eq!(
        r.failure,
        Some(PresyncFailure::NonContinuous {
            phase: Phase::Redownload,
            height: 1
        })
    );
    assert_eq!(hss.state(), State::Final);
}

fn load(name: &str) -> Vec<Header> {
    let path = format!("{}/tests/data/headers/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    text.lines()
        .map(|l| deserialize_hex(l).expect("80-byte header"))
        .collect()
}

/// A chain start for `header` at `height`, taken on trust as a caller's block index entry.
fn start_at(header: &Header, height: u32) -> (ChainStart, Vec<BlockHash>) {
    let start = ChainStart {
        header: *header,
        hash: header.block_hash(),
        height,
        chain_work: work(0),
        median_time_past: header.time,
    };
    (start, vec![header.block_hash()])
}

#[test]
fn real_mainnet_retargets_pass_and_fail_one_height_off() {
    // Real mainnet headers 822528..=830592: four retargets (824544, 826560, 828576, 830592),
    // checked under mainnet's rules (no minimum-difficulty exception) and Core's mainnet
    // parameters, against mainnet's nMinimumChainWork, which they never reach from zero.
    let headers = load("mainnet-822528-830592.hex");
    let params = ChainParams::new(Network::Bitcoin);
    let new = |height: u32| {
        let (start, locator) = start_at(&headers[0], height);
        HeadersSyncState::new(
            &params,
            HeadersSyncParams::MAINNET,
            &start,
            locator,
            params.min_chain_work,
            PresyncSalt::random(&mut rand::thread_rng()),
            NOW,
        )
    };
    let mut hss = new(822_528);
    for message in headers[1..].chunks(MAX_HEADERS_RESULTS) {
        let r = hss.process_next_headers(message, true);
        assert!(r.success && r.request_more, "{:?}", r.failure);
    }
    assert_eq!(hss.state(), State::Presync);
    assert_eq!(hss.presync_height(), 830_592);
    let expected = headers[1..]
        .iter()
        .fold(work(0), |acc, h| add_work(acc, block_proof(h.bits)));
    assert_eq!(hss.presync_work(), expected);
    // 8064 headers, one commitment per 641.
    assert!((12..=13).contains(&hss.commitment_count()));

    // The same headers one height off: the first retarget (real height 824544) now sits
    // off a boundary, where the bits must not change.
    let mut hss = new(822_529);
    let r = hss.process_next_headers(&headers[1..2100], true);
    assert_eq!(
        r.failure,
        Some(PresyncFailure::InvalidDifficultyTransition {
            phase: Phase::Presync,
            height: 824_545
        })
    );
    assert_eq!(hss.state(), State::Final);
}

#[test]
fn invalid_difficulty_transitions_fail() {
    // Mainnet's rules (no minimum-difficulty exception) on mineable targets: an 8-header
    // period (timespan 8 s, spacing 1 s) from a trusted start at height 1 with bits 0x2003ffff
    // (target 2^250; Core's arithmetic wraps when target × 4 × timespan ≥ 2^256, as for regtest's
    // limit with its real timespan, so the targets stay below that). At the boundary (height 8)
    // the target may move ×4 … ÷4; elsewhere it must stay.
    const BASE: u32 = 0x2003_ffff;
    let mut params = regtest();
    params.consensus.allow_min_difficulty_blocks = false;
    params.consensus.pow_target_spacing = 1;
    params.consensus.pow_target_timespan = 8;
    let first = chain(&genesis(), 1, 0, BASE).remove(0);
    let (start, locator) = start_at(&first, 1);
    let new = |min_work: u64| {
        HeadersSyncState::new(
            &params,
            sync_params(5, 1000),
            &start,
            locator.clone(),
            work(min_work),
            salt(0),
            NOW,
        )
    };
    let period = chain(&first, 6, 0, BASE); // heights 2..=7

    // Off a boundary: height 5 halves the target.
    let mut off = period[..3].to_vec();
    off.extend(chain(&off[2], 2, 1, 0x2001_ffff));
    let mut hss = new(1_000_000);
    let r = hss.process_next_headers(&off, true);
    assert_eq!(
        r.failure,
        Some(PresyncFailure::InvalidDifficultyTransition {
            phase: Phase::Presync,
            height: 5
        })
    );
    assert_eq!(hss.state(), State::Final);

    // At the boundary: ×2 and ÷2 are permitted, ×8 and ÷8 are not.
    for (b, permitted) in [
        (0x2007_ffff, true),
        (0x2001_ffff, true),
        (0x201f_ffff, false),
        (0x2000_7fff, false),
    ] {
        let mut hss = new(1_000_000);
        assert!(hss.process_next_headers(&period, true).success);
        let boundary = chain(&period[5], 2, 2, b); // heights 8 and 9
        let r = hss.process_next_headers(&boundary, true);
        if permitted {
            assert!(r.success, "{b:08x}: {:?}", r.failure);
            assert_eq!(hss.presync_height(), 9);
        } else {
            assert_eq!(
                r.failure,
                Some(PresyncFailure::InvalidDifficultyTransition {
                    phase: Phase::Presync,
                    height: 8
                }),
                "{b:08x}"
            );
        }
    }

    // In redownload: presync a valid chain, then serve one that changes off a boundary.
    let good = chain(&first, 6, 0, BASE);
    let mut hss = new(6 * 64);
    let r = hss.process_next_headers(&good, true);
    assert!(r.request_more, "{:?}", r.failure);
    assert_eq!(hss.state(), State::Redownload);
    let mut bad = good[..2].to_vec();
    bad.extend(chain(&good[1], 2, 3, 0x2007_ffff));
    let r = hss.process_next_headers(&bad, true);
    assert_eq!(
        r.failure,
        Some(PresyncFailure::InvalidDifficultyTransition {
            phase: Phase::Redownload,
            height: 4
        })
    );
}

#[test]
fn invalid_proof_of_work_fails() {
    let params = regtest();
    let (start, locator) = genesis_start();
    let mut headers = first_chain()[..10].to_vec();
    // Header 4 with a nonce whose hash misses the target.
    let mut bad = headers[3];
    while check_proof_of_work(&params, bad.block_hash(), bad.bits) {
        bad.nonce = bad.nonce.wrapping_add(1);
    }
    headers[3] = bad;
    let mut hss = HeadersSyncState::new(
        &params,
        sync_params(10, 1000),
        &start,
        locator,
        work(10_000),
        salt(0),
        NOW,
    );
    let r = hss.process_next_headers(&headers, true);
    assert_eq!(
        r.failure,
        Some(PresyncFailure::InvalidProofOfWork {
            phase: Phase::Presync,
            height: 4
        })
    );
    assert_eq!(hss.state(), State::Final);
}

#[test]
fn empty_messages_and_finished_syncs_are_ignored() {
    let (start, locator) = genesis_start();
    let mut hss = HeadersSyncState::new(
        &regtest(),
        sync_params(10, 1000),
        &start,
        locator,
        work(10_000),
        salt(0),
        NOW,
    );
    let r = hss.process_next_headers(&[], true);
    assert!(!r.success && !r.request_more && r.failure.is_none());
    assert_eq!(hss.state(), State::Presync, "no state change");
    assert_eq!(hss.presync_height(), 0);

    let r = hss.process_next_headers(&first_chain()[..3], false);
    assert!(r.success && !r.request_more);
    assert_eq!(hss.state(), State::Final);
    let end = hss.end();
    let r = hss.process_next_headers(&first_chain()[3..6], true);
    assert!(!r.success && !r.request_more && r.failure.is_none());
    assert!(r.pow_validated_headers.is_empty());
    assert_eq!(hss.end(), end, "the first end stays");
}

/// Core's `LocatorEntries` for the active header at `height` of `tree`.
fn locator_at(tree: &HeaderTree, height: u32) -> Vec<BlockHash> {
    let mut out = Vec::new();
    let (mut h, mut step) = (height, 1u32);
    loop {
        out.push(tree.at_height(h).unwrap().hash);
        if h == 0 {
            return out;
        }
        h = h.saturating_sub(step);
        if out.len() > 10 {
            step *= 2;
        }
    }
}

#[test]
fn a_fork_is_released_from_its_fork_point_in_order_through_a_bounded_buffer() {
    // We hold 40 headers; a peer's chain forks off at height 20 and needs 600 headers of its
    // own to pass the threshold. Released in messages of 2000 capped at 150 here, through a
    // buffer of 64 headers.
    const MESSAGE: usize = 150;
    const BUFFER: usize = 64;
    let mut tree = genesis_tree();
    let ours = chain(&tree.tip().header, 40, 0, REGTEST_BITS);
    tree.accept(&ours, NOW).unwrap();
    let fork_point = ours[19].block_hash();
    let start = ChainStart::from_tree(&tree, &fork_point).unwrap();
    assert_eq!((start.height, start.chain_work), (20, work(42)));
    let start_locator = locator_at(&tree, 20);
    let theirs = chain(&ours[19], 620, 4, REGTEST_BITS);
    let threshold = work(42 + 2 * 600); // reached at their 600th header, height 620

    let mut hss = HeadersSyncState::new(
        &regtest(),
        sync_params(13, BUFFER),
        &start,
        start_locator.clone(),
        threshold,
        PresyncSalt::random(&mut rand::thread_rng()),
        NOW,
    );
    // Presync: as a peer answers each getheaders.
    let mut sent = 0;
    while hss.state() == State::Presync {
        let message = &theirs[sent..(sent + MESSAGE).min(theirs.len())];
        sent += message.len();
        let r = hss.process_next_headers(message, true);
        assert!(r.success && r.request_more && r.pow_validated_headers.is_empty());
        assert_eq!(hss.redownload_buffer_len(), 0);
    }
    assert_eq!(sent, 600, "the threshold is met in the 4th message");
    assert_eq!(hss.presync_height(), 620);
    let mut locator = vec![fork_point];
    locator.extend(&start_locator);
    assert_eq!(
        hss.next_headers_request_locator(),
        locator,
        "from the fork point"
    );

    // Redownload: the peer answers the locator from its own chain.
    let mut released = Vec::new();
    let mut from = 0;
    while hss.state() == State::Redownload {
        let message = &theirs[from..(from + MESSAGE).min(theirs.len())];
        from += message.len();
        let r = hss.process_next_headers(message, message.len() == MESSAGE);
        assert!(r.success, "{:?}", r.failure);
        released.extend(r.pow_validated_headers);
        if hss.state() == State::Redownload {
            assert!(r.request_more);
            assert!(hss.redownload_buffer_len() <= BUFFER);
            assert_eq!(
                hss.next_headers_request_locator()[0],
                message.last().unwrap().block_hash()
            );
            assert_eq!(released.len() + hss.redownload_buffer_len(), from);
        }
    }
    assert_eq!(hss.end(), Some(SyncEnd::Complete { height: 620 }));
    assert_eq!(from, 600, "completes at the threshold, in the 4th message");
    assert_eq!(released[0].prev_blockhash, fork_point);
    assert_eq!(hashes(&released), hashes(&theirs[..600]));
    // What was released is a valid chain on the fork point.
    let change = tree.accept(&released, NOW).unwrap().unwrap();
    assert_eq!(change.fork_height, 20);
    assert_eq!(tree.height(), 620);
}

#[test]
fn a_peer_that_stops_in_redownload_ends_the_sync_without_error() {
    let (start, locator) = genesis_start();
    let a = &first_chain()[..300];
    let mut hss = HeadersSyncState::new(
        &regtest(),
        sync_params(10, 50),
        &start,
        locator,
        work(2 + 2 * 300),
        salt(1),
        NOW,
    );
    assert!(hss.process_next_headers(a, true).request_more);
    assert_eq!(hss.state(), State::Redownload);
    // A non-full message of 120 headers: 70 released, the rest dropped.
    let r = hss.process_next_headers(&a[..120], false);
    assert!(r.success && !r.request_more && r.failure.is_none());
    assert_eq!(r.pow_validated_headers, a[..70]);
    assert_eq!(hss.state(), State::Final);
    assert_eq!(
        hss.end(),
        Some(SyncEnd::IncompleteHeadersMessage {
            phase: Phase::Redownload,
            height: 120
        })
    );
    assert_eq!(
        (hss.commitment_count(), hss.redownload_buffer_len()),
        (0, 0)
    );
}

#[test]
fn the_chain_start_locator_gets_the_start_hash_first() {
    let (start, _) = genesis_start();
    let hss = HeadersSyncState::new(
        &regtest(),
        HeadersSyncParams::REGTEST,
        &start,
        Vec::new(),
        work(10),
        salt(0),
        NOW,
    );
    // Before any header: [last received = start] + [start].
    assert_eq!(
        hss.next_headers_request_locator(),
        vec![start.hash, start.hash]
    );
    assert_eq!(hss.presync_time(), start.header.time);
    assert_eq!(hss.presync_work(), start.chain_work);
    // Debug output leaves the sync's secrets out.
    let shown = format!("{hss:?}");
    assert!(shown.contains("state: Presync"), "{shown}");
    assert!(
        !shown.contains("salt") && !shown.contains("offset"),
        "{shown}"
    );
}
