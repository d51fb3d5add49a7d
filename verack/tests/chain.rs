//! `verack::chain` against real headers (`tests/data/headers/`, see its README) and mined regtest
//! forks.

use std::collections::HashMap;

use bitcoin::block::{Header, Version};
use bitcoin::consensus::encode::deserialize_hex;
use bitcoin::hashes::Hash as _;
use bitcoin::params::Params;
use bitcoin::{BlockHash, CompactTarget, Network, TxMerkleNode, Work};
use verack::chain::{
    block_proof, calculate_next_work_required, check_proof_of_work, next_work_required,
    permitted_difficulty_transition, AncestorInfo, ChainParams, HeaderError, HeaderTree, TipStatus,
    MAX_HEADERS_RESULTS,
};

/// "Now" for the future-time rule: 2033, after every header here.
const NOW: u32 = 2_000_000_000;

fn load(name: &str) -> Vec<Header> {
    let path = format!("{}/tests/data/headers/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    text.lines()
        .map(|l| deserialize_hex(l).expect("80-byte header"))
        .collect()
}

fn bits(b: u32) -> CompactTarget {
    CompactTarget::from_consensus(b)
}

fn zero_work() -> Work {
    Work::from_le_bytes([0; 32])
}

/// Accept in `headers` messages of 2000, as a peer would send them.
fn accept_all(tree: &mut HeaderTree, headers: &[Header]) {
    for chunk in headers.chunks(MAX_HEADERS_RESULTS) {
        if let Err(e) = tree.accept(chunk, NOW) {
            panic!("rejected at height {}: {e}", tree.height() + 1);
        }
    }
}

fn work_sum(headers: &[Header]) -> Work {
    headers.iter().fold(zero_work(), |w, h| w + h.work())
}

#[test]
fn mainnet_0_10236_validates_from_genesis() {
    let headers = load("mainnet-0-10236.hex");
    let mut tree = HeaderTree::new(ChainParams::new(Network::Bitcoin));
    assert_eq!(tree.tip().header, headers[0], "genesis");

    let change = tree
        .accept(&headers[1..2001], NOW)
        .unwrap()
        .expect("tip moved");
    assert_eq!(change.old_tip, headers[0].block_hash());
    assert_eq!(
        (
            change.fork_height,
            change.disconnected.len(),
            change.connected.len()
        ),
        (0, 0, 2000)
    );
    assert_eq!(change.connected[0].height, 1);
    assert_eq!(change.new_tip, headers[2000].block_hash());
    accept_all(&mut tree, &headers[2001..]);

    assert_eq!(tree.height(), 10236);
    assert_eq!(tree.tip().hash, headers[10236].block_hash());
    assert_eq!(tree.tip().chain_work, work_sum(&headers));
    for h in [0u32, 1, 2015, 2016, 5000, 10236] {
        assert_eq!(
            tree.at_height(h).unwrap().hash,
            headers[h as usize].block_hash()
        );
    }
    assert_eq!(tree.fork_header_count(), 0);
    assert!(
        !tree.is_synced_enough(),
        "2009 is below Core's minimum chain work"
    );

    // Accepting known headers again is Ok, moves nothing, stores nothing.
    assert_eq!(tree.accept(&headers[5000..7000], NOW), Ok(None));
    assert_eq!(tree.len(), 10237);

    // Median time past: the median of the header and its 10 ancestors.
    let mut times: Vec<u32> = headers[9990..=10000].iter().map(|h| h.time).collect();
    times.sort_unstable();
    assert_eq!(
        tree.median_time_past(&headers[10000].block_hash()),
        Some(times[5])
    );
}

#[test]
fn mainnet_586657_589289_validates_from_trusted_start() {
    // 586656, the period's first header, is in the boundaries file (line 582); the window's first
    // 11 headers are trusted so the median time past of the next one is complete.
    let boundaries = load("mainnet-retarget-boundaries-0-832608.hex");
    let headers = load("mainnet-586657-589289.hex");
    let first = boundaries[582];
    assert_eq!(headers[0].prev_blockhash, first.block_hash());
    let params = ChainParams::new(Network::Bitcoin);
    let mut tree = HeaderTree::with_trusted_start(
        params.clone(),
        586656,
        zero_work(),
        first,
        headers[..11].iter().copied(),
    )
    .unwrap();
    assert_eq!(tree.height(), 586667);
    accept_all(&mut tree, &headers[11..]);
    assert_eq!(tree.height(), 589289);
    assert_eq!(tree.tip().hash, headers.last().unwrap().block_hash());
    assert_eq!(
        tree.at_height(588672).unwrap().header.bits,
        bits(0x171c3039)
    );
    assert_eq!(
        tree.at_height(588671).unwrap().header.bits,
        bits(0x171f3a08)
    );
    assert_eq!(tree.tip().chain_work, work_sum(&headers) + first.work());

    // Trusted headers must link.
    let broken = [headers[0], headers[2]];
    assert_eq!(
        HeaderTree::with_trusted_start(params, 586656, zero_work(), first, broken).unwrap_err(),
        HeaderError::UnknownParent {
            hash: headers[2].block_hash(),
            prev: headers[1].block_hash()
        }
    );
}

#[test]
fn mainnet_822528_830592_validates_from_trusted_start() {
    let headers = load("mainnet-822528-830592.hex");
    let params = ChainParams::new(Network::Bitcoin);
    let mut tree = HeaderTree::with_trusted_start(
        params.clone(),
        822528,
        zero_work(),
        headers[0],
        headers[1..11].iter().copied(),
    )
    .unwrap();
    accept_all(&mut tree, &headers[11..]);
    assert_eq!(tree.height(), 830592);
    assert_eq!(tree.tip().hash, headers.last().unwrap().block_hash());
    for (height, old, new) in [
        (824544, 0x1703e8b3, 0x1703d869),
        (826560, 0x1703d869, 0x1704005a),
        (828576, 0x1704005a, 0x1703ba5d),
        (830592, 0x1703ba5d, 0x170371b1),
    ] {
        assert_eq!(tree.at_height(height - 1).unwrap().header.bits, bits(old));
        assert_eq!(tree.at_height(height).unwrap().header.bits, bits(new));
    }

    // With fewer than 11 trusted headers the median time past is incomplete: rejected, not
    // skipped.
    let mut short = HeaderTree::with_trusted_start(
        params,
        822528,
        zero_work(),
        headers[0],
        headers[1..5].iter().copied(),
    )
    .unwrap();
    let err = short.accept(&headers[5..6], NOW).unwrap_err();
    assert_eq!(
        err.error,
        HeaderError::MissingAncestor {
            hash: headers[5].block_hash(),
            height: 822533,
            needed: 822527
        }
    );
}

#[test]
fn testnet3_0_9999_validates_from_genesis() {
    let headers = load("testnet3-0-9999.hex");
    let mut tree = HeaderTree::new(ChainParams::new(Network::Testnet));
    assert_eq!(tree.tip().header, headers[0]);
    accept_all(&mut tree, &headers[1..]);
    assert_eq!(tree.height(), 9999);
    assert_eq!(tree.tip().hash, headers[9999].block_hash());

    // The 20-minute rule was used (README: 184 headers more than 1200 s after their parent).
    let min_difficulty = (1..headers.len())
        .filter(|&i| {
            headers[i].time > headers[i - 1].time + 1200 && headers[i].bits == bits(0x1d00ffff)
        })
        .count();
    assert_eq!(min_difficulty, 184);
    // Retargets: ÷4 clamp at 4032 and 6048, ×4 clamp at 8064 (one second over).
    assert_eq!(headers[4032].bits, bits(0x1c3fffc0));
    assert_eq!(headers[6048].bits, bits(0x1c0ffff0));
    assert_eq!(headers[8064].bits, bits(0x1c3fffc0));
    assert_eq!(
        headers[4033].bits,
        bits(0x1d00ffff),
        "a min-difficulty header right after 4032"
    );
}

#[test]
fn testnet3_twenty_minute_rule() {
    // Core's blockheader_testnet3 (MIT): 546 headers with 7 twenty-minute-rule headers.
    let headers = load("testnet3-1-546.hex");
    let mut tree = HeaderTree::new(ChainParams::new(Network::Testnet));
    accept_all(&mut tree, &headers);
    assert_eq!(
        tree.tip().hash.to_string(),
        "000000002a936ca763904c3c35fce2f3556c559c0214345d31b1bcebf76acb70"
    );
    let late = (1..headers.len())
        .filter(|&i| headers[i].time > headers[i - 1].time + 1200)
        .count();
    assert_eq!(late, 7);

    // After the 4032 retarget the real difficulty is 1c3fffc0: 4033 used the minimum because it
    // came more than 20 minutes after 4032. Moved to exactly 20 minutes it must carry 1c3fffc0.
    let t3 = load("testnet3-0-9999.hex");
    let mut tree = HeaderTree::from_active_chain(
        ChainParams::new(Network::Testnet),
        t3[1..=4032].iter().copied(),
    )
    .unwrap();
    assert!(t3[4033].time > t3[4032].time + 1200);
    let mut early = t3[4033];
    early.time = t3[4032].time + 1200;
    let err = tree.accept(&[early], NOW).unwrap_err();
    assert_eq!(
        err.error,
        HeaderError::BadDifficulty {
            hash: early.block_hash(),
            height: 4033,
            expected: bits(0x1c3fffc0),
            actual: bits(0x1d00ffff)
        }
    );
    assert!(tree.accept(&t3[4033..4040], NOW).unwrap().is_some());
}

#[test]
fn signet_0_2015_validates() {
    // Difficulty and proof of work only: the signet block signature is in the coinbase.
    let headers = load("signet-0-2015.hex");
    let params = ChainParams::new(Network::Signet);
    let mut tree = HeaderTree::new(params.clone());
    assert_eq!(tree.tip().header, headers[0]);
    accept_all(&mut tree, &headers[1..]);
    assert_eq!(tree.height(), 2015);
    assert_eq!(tree.tip().hash, headers[2015].block_hash());

    // The first retarget (no header for it in the data): ours against rust-bitcoin's.
    let got = next_work_required(&params, 2016, 0, |h| {
        tree.at_height(h).map(|e| AncestorInfo::of(&e.header))
    })
    .unwrap();
    let span = u64::from(headers[2015].time - headers[0].time);
    assert_eq!(
        got,
        CompactTarget::from_next_work_required(headers[2015].bits, span, &Params::SIGNET)
    );
}

/// Height of line `i` of the boundaries file (its README's formula).
fn boundary_height(i: usize) -> u32 {
    if i == 0 {
        return 0;
    }
    (2016 * i.div_ceil(2) - (i % 2)) as u32
}

#[test]
fn retarget_boundaries_pairwise() {
    let lines = load("mainnet-retarget-boundaries-0-832608.hex");
    assert_eq!(lines.len(), 827);
    let params = ChainParams::new(Network::Bitcoin);
    let (mut decreases, mut wrong_period_differs) = (0, 0);
    for k in 1..=413usize {
        let (first, last, new) = (lines[2 * k - 2], lines[2 * k - 1], lines[2 * k]);
        let height = boundary_height(2 * k);
        assert_eq!(height, 2016 * k as u32);
        assert_eq!(new.prev_blockhash, last.block_hash(), "pair {k} links");

        let lookup = |h: u32| match h {
            _ if h == height - 1 => Some(AncestorInfo::of(&last)),
            _ if h == height - 2016 => Some(AncestorInfo::of(&first)),
            _ => None,
        };
        let expected = next_work_required(&params, height, new.time, lookup).unwrap();
        assert_eq!(expected, new.bits, "retarget at {height}");
        assert!(check_proof_of_work(&params, new.block_hash(), new.bits));
        assert!(permitted_difficulty_transition(
            &params, height, last.bits, new.bits
        ));
        // Cross-check against rust-bitcoin's independent implementation.
        let span = (i64::from(last.time) - i64::from(first.time)).clamp(302_400, 4_838_400) as u64;
        assert_eq!(
            CompactTarget::from_next_work_required(last.bits, span, &Params::MAINNET),
            expected
        );

        if new.target() > last.target() {
            decreases += 1;
        }
        // Core's off-by-one matters: measuring from the previous period's last header instead of
        // this period's first gives other bits wherever the result is not capped.
        if k >= 2 {
            let wrong = AncestorInfo::of(&lines[2 * k - 3]);
            if calculate_next_work_required(&params, wrong, AncestorInfo::of(&last)) != new.bits {
                wrong_period_differs += 1;
            }
        }
    }
    assert_eq!(
        decreases, 83,
        "README: 83 boundaries where difficulty went down"
    );
    assert!(wrong_period_differs > 300, "{wrong_period_differs}");

    // The first increase, at 32256 (line 32).
    assert_eq!(boundary_height(32), 32256);
    assert_eq!(
        (lines[31].bits, lines[32].bits),
        (bits(0x1d00ffff), bits(0x1d00d86a))
    );
    // Mainnet's only ÷4 clamp, at 68544 (line 68): span 289434 s < 302400.
    assert_eq!(boundary_height(68), 68544);
    assert_eq!(lines[67].time - lines[66].time, 289_434);
    assert_eq!(
        (lines[67].bits, lines[68].bits),
        (bits(0x1c05a3f4), bits(0x1c0168fd))
    );
    // A single flipped bit in the expected bits is caught.
    assert!(!permitted_difficulty_transition(
        &params,
        68545,
        lines[68].bits,
        bits(0x1c0168fc)
    ));
}

#[test]
fn stale_823226_is_kept_as_a_fork_then_reorged_to() {
    let headers = load("mainnet-822528-830592.hex");
    let stale = load("mainnet-stale-823226.hex")[0];
    let idx = |h: u32| (h - 822528) as usize;
    let real = headers[idx(823226)];
    assert_eq!(stale.prev_blockhash, headers[idx(823225)].block_hash());
    assert_ne!(stale.block_hash(), real.block_hash());
    let build = || {
        let mut t = HeaderTree::with_trusted_start(
            ChainParams::new(Network::Bitcoin),
            822528,
            zero_work(),
            headers[0],
            headers[1..11].iter().copied(),
        )
        .unwrap();
        accept_all(&mut t, &headers[11..idx(823226)]);
        assert_eq!(t.height(), 823225);
        t
    };

    // The main chain first: the stale header is a one-header fork, the tip stays.
    let mut tree = build();
    tree.accept(&headers[idx(823226)..idx(823230)], NOW)
        .unwrap();
    assert_eq!(tree.accept(&[stale], NOW), Ok(None));
    assert!(tree.contains(&stale.block_hash()) && !tree.is_active(&stale.block_hash()));
    let tips = tree.tips();
    assert_eq!(tips.len(), 2);
    assert_eq!(
        (tips[0].height, tips[0].status, tips[0].branch_len),
        (823229, TipStatus::Active, 0)
    );
    assert_eq!(tips[1].hash, stale.block_hash());
    assert_eq!((tips[1].height, tips[1].branch_len), (823226, 1));
    assert_eq!(tips[1].status.as_str(), "valid-headers");

    // The stale header first: it is the tip until the real chain has more work. Equal work
    // (the real 823226) does not move the tip; 823227 does, one header deep.
    let mut tree = build();
    let change = tree.accept(&[stale], NOW).unwrap().unwrap();
    assert_eq!(change.new_tip, stale.block_hash());
    assert_eq!(tree.accept(&[real], NOW), Ok(None));
    assert_eq!(tree.tip().hash, stale.block_hash(), "first seen wins a tie");
    let change = tree
        .accept(&headers[idx(823227)..=idx(823227)], NOW)
        .unwrap()
        .unwrap();
    assert_eq!(change.old_tip, stale.block_hash());
    assert_eq!(change.fork_height, 823225);
    assert_eq!(change.disconnected, vec![stale.block_hash()]);
    let connected: Vec<_> = change
        .connected
        .iter()
        .map(|e| (e.height, e.hash))
        .collect();
    assert_eq!(
        connected,
        vec![
            (823226, real.block_hash()),
            (823227, headers[idx(823227)].block_hash())
        ]
    );
    let tips = tree.tips();
    assert_eq!(tips[1].hash, stale.block_hash());
    assert_eq!(
        tips[1].status.as_str(),
        "valid-fork",
        "it was the active tip once"
    );
}

#[test]
fn testnet3_low_work_fork_is_kept_as_a_tip() {
    let headers = load("testnet3-1-546.hex");
    let fork = load("testnet3-fork-1-2.hex");
    let mut tree = HeaderTree::new(ChainParams::new(Network::Testnet));
    accept_all(&mut tree, &headers);
    let tip = tree.tip().hash;
    assert_eq!(tree.accept(&fork, NOW), Ok(None));
    assert_eq!(tree.tip().hash, tip);
    assert_eq!(tree.fork_header_count(), 2);
    let tips = tree.tips();
    assert_eq!(tips.len(), 2);
    assert_eq!((tips[0].height, tips[0].status.as_str()), (546, "active"));
    assert_eq!(
        (
            tips[1].height,
            tips[1].hash,
            tips[1].branch_len,
            tips[1].status.as_str()
        ),
        (2, fork[1].block_hash(), 2, "valid-headers")
    );
    assert_eq!(tree.get(&fork[1].block_hash()).unwrap().height, 2);
    assert!(!tree.is_synced_enough());
}

/// A regtest header on `parent` (about two nonces at `207fffff`). `salt` varies the merkle root
/// and time so sibling branches differ.
fn mine(parent: &Header, salt: u32) -> Header {
    let params = ChainParams::new(Network::Regtest);
    let mut h = Header {
        version: Version::from_consensus(0x2000_0000),
        prev_blockhash: parent.block_hash(),
        merkle_root: TxMerkleNode::from_byte_array([salt as u8; 32]),
        time: parent.time + 600 + salt % 600,
        bits: bits(0x207f_ffff),
        nonce: 0,
    };
    while !check_proof_of_work(&params, h.block_hash(), h.bits) {
        h.nonce += 1;
    }
    h
}

/// `h` with a nonce that meets regtest's target again after an edit.
fn remine(mut h: Header) -> Header {
    let params = ChainParams::new(Network::Regtest);
    h.nonce = 0;
    while !check_proof_of_work(&params, h.block_hash(), h.bits) {
        h.nonce += 1;
    }
    h
}

fn mine_chain(parent: &Header, n: usize, salt: u32) -> Vec<Header> {
    let mut out: Vec<Header> = Vec::with_capacity(n);
    for _ in 0..n {
        let h = mine(out.last().unwrap_or(parent), salt);
        out.push(h);
    }
    out
}

fn regtest() -> HeaderTree {
    HeaderTree::new(ChainParams::new(Network::Regtest))
}

#[test]
fn regtest_heavier_fork_reorgs() {
    let mut tree = regtest();
    let genesis = tree.tip().header;
    let main = mine_chain(&genesis, 10, 0);
    accept_all(&mut tree, &main);
    let fork = mine_chain(&main[4], 7, 1); // heights 6..=12, off height 5

    // Up to equal work (B10 vs A10) the first-seen chain stays.
    assert_eq!(tree.accept(&fork[..5], NOW), Ok(None));
    assert_eq!(tree.tip().hash, main[9].block_hash());
    let tips = tree.tips();
    assert_eq!(
        (tips[1].hash, tips[1].branch_len, tips[1].status),
        (fork[4].block_hash(), 5, TipStatus::ValidHeaders)
    );

    // One more header: a 5-deep reorg onto the fork.
    let change = tree.accept(&fork[5..6], NOW).unwrap().unwrap();
    assert_eq!(change.fork_height, 5);
    assert_eq!(change.old_tip, main[9].block_hash());
    let disconnected: Vec<_> = main[5..].iter().rev().map(Header::block_hash).collect();
    assert_eq!(change.disconnected, disconnected, "tip first");
    let connected: Vec<_> = change.connected.iter().map(|e| e.hash).collect();
    assert_eq!(
        connected,
        fork[..6].iter().map(Header::block_hash).collect::<Vec<_>>()
    );
    assert_eq!(
        change
            .connected
            .iter()
            .map(|e| e.height)
            .collect::<Vec<_>>(),
        (6..=11).collect::<Vec<_>>()
    );
    assert_eq!(tree.at_height(6).unwrap().hash, fork[0].block_hash());
    let tips = tree.tips();
    assert_eq!((tips[0].height, tips[0].status), (11, TipStatus::Active));
    assert_eq!(
        (tips[1].hash, tips[1].branch_len, tips[1].status),
        (main[9].block_hash(), 5, TipStatus::ValidFork)
    );

    // A batch that stops at an invalid header still reports what it moved.
    let mut bad = mine(&fork[6], 0);
    bad.prev_blockhash = BlockHash::all_zeros();
    let err = tree.accept(&[fork[6], bad], NOW).unwrap_err();
    assert_eq!(err.index, 1);
    assert!(matches!(err.error, HeaderError::UnknownParent { .. }));
    let change = err.tip_change.expect("fork[6] extended the tip");
    assert_eq!((change.fork_height, change.connected.len()), (11, 1));
    assert_eq!(tree.height(), 12);
}

#[test]
fn regtest_time_and_version_rules() {
    let mut tree = regtest();
    let genesis = tree.tip().header;
    let chain = mine_chain(&genesis, 20, 0);
    accept_all(&mut tree, &chain);
    let tip = chain[19];
    let mtp = tree.median_time_past(&tip.block_hash()).unwrap();

    let mut h = mine(&tip, 0);
    h.time = mtp;
    let h = remine(h);
    assert_eq!(
        tree.accept(&[h], NOW).unwrap_err().error,
        HeaderError::TimeTooOld {
            hash: h.block_hash(),
            time: mtp,
            median_time_past: mtp
        }
    );

    let now = tip.time;
    let mut h = mine(&tip, 0);
    h.time = now + 7201;
    let h = remine(h);
    assert_eq!(
        tree.accept(&[h], now).unwrap_err().error,
        HeaderError::TimeTooNew {
            hash: h.block_hash(),
            time: now + 7201,
            max: now + 7200
        }
    );

    // Core's regtest activates BIP34/66/65 at height 1: version 3 is outdated.
    let mut h = mine(&tip, 0);
    h.version = Version::from_consensus(3);
    let h = remine(h);
    assert_eq!(
        tree.accept(&[h], NOW).unwrap_err().error,
        HeaderError::BadVersion {
            hash: h.block_hash(),
            version: 3,
            height: 21
        }
    );

    // Exactly now + 2 h is allowed.
    let mut h = mine(&tip, 0);
    h.time = now + 7200;
    let h = remine(h);
    assert!(tree.accept(&[h], now).is_ok());
}

#[test]
fn bip94_timewarp_rule_at_period_start() {
    // Regtest with BIP94 on (Core's `-test=bip94`): periods of 144 headers.
    let mut params = ChainParams::new(Network::Regtest);
    params.enforce_bip94 = true;
    let mut tree = HeaderTree::new(params);
    let genesis = tree.tip().header;
    let chain = mine_chain(&genesis, 143, 0);
    accept_all(&mut tree, &chain);
    let parent = chain[142];
    let at = |time: u32| {
        let mut h = mine(&parent, 0);
        h.time = time;
        remine(h)
    };
    let early = at(parent.time - 601);
    assert_eq!(
        tree.accept(&[early], NOW).unwrap_err().error,
        HeaderError::TimeWarp {
            hash: early.block_hash(),
            time: parent.time - 601,
            min: parent.time - 600
        }
    );
    // Without BIP94 the same header is fine; with it, 600 s earlier is the limit.
    let mut plain =
        HeaderTree::from_active_chain(ChainParams::new(Network::Regtest), chain.iter().copied())
            .unwrap();
    assert!(plain.accept(&[early], NOW).is_ok());
    assert!(tree.accept(&[at(parent.time - 600)], NOW).is_ok());
}

#[test]
fn corrupted_fields_are_rejected_with_their_error() {
    let headers = load("mainnet-0-10236.hex");
    let mut tree = HeaderTree::from_active_chain(
        ChainParams::new(Network::Bitcoin),
        headers[1..=5000].iter().copied(),
    )
    .unwrap();
    let good = headers[5001];
    let now = good.time + 3600;
    let mtp = tree.median_time_past(&headers[5000].block_hash()).unwrap();
    let flip = |f: &dyn Fn(&mut Header)| {
        let mut h = good;
        f(&mut h);
        h
    };
    let mut check = |h: Header, expected: HeaderError| {
        let err = tree.accept(&[h], now).unwrap_err();
        assert_eq!((err.index, err.error, err.tip_change), (0, expected, None));
    };

    // version 1 → 3: BIP34 is not active at 5001, so only the hash changes.
    let h = flip(&|h| h.version = Version::from_consensus(h.version.to_consensus() ^ 2));
    check(
        h,
        HeaderError::BadProofOfWork {
            hash: h.block_hash(),
        },
    );
    let h = flip(&|h| {
        let mut b = h.prev_blockhash.to_byte_array();
        b[0] ^= 1;
        h.prev_blockhash = BlockHash::from_byte_array(b);
    });
    check(
        h,
        HeaderError::UnknownParent {
            hash: h.block_hash(),
            prev: h.prev_blockhash,
        },
    );
    let h = flip(&|h| {
        let mut b = h.merkle_root.to_byte_array();
        b[31] ^= 0x80;
        h.merkle_root = TxMerkleNode::from_byte_array(b);
    });
    check(
        h,
        HeaderError::BadProofOfWork {
            hash: h.block_hash(),
        },
    );
    // Time: bit 31 jumps 68 years ahead, bit 30 34 years back, bit 0 one second (hash only).
    let h = flip(&|h| h.time ^= 1 << 31);
    check(
        h,
        HeaderError::TimeTooNew {
            hash: h.block_hash(),
            time: good.time ^ (1 << 31),
            max: now + 7200,
        },
    );
    let h = flip(&|h| h.time ^= 1 << 30);
    check(
        h,
        HeaderError::TimeTooOld {
            hash: h.block_hash(),
            time: good.time ^ (1 << 30),
            median_time_past: mtp,
        },
    );
    let h = flip(&|h| h.time ^= 1);
    assert!(h.time > mtp);
    check(
        h,
        HeaderError::BadProofOfWork {
            hash: h.block_hash(),
        },
    );
    let h = flip(&|h| h.bits = bits(h.bits.to_consensus() ^ 1));
    check(
        h,
        HeaderError::BadDifficulty {
            hash: h.block_hash(),
            height: 5001,
            expected: good.bits,
            actual: h.bits,
        },
    );
    let h = flip(&|h| h.nonce ^= 1 << 7);
    check(
        h,
        HeaderError::BadProofOfWork {
            hash: h.block_hash(),
        },
    );

    // The uncorrupted header is accepted.
    assert_eq!(
        tree.accept(&[good], now).unwrap().unwrap().new_tip,
        good.block_hash()
    );
}

#[test]
fn outdated_version_after_bip65_is_rejected() {
    // Mainnet 2024: version 0x20000000 with bit 29 flipped is 0, below BIP34/66/65's 2/3/4.
    let headers = load("mainnet-822528-830592.hex");
    let i = headers
        .iter()
        .position(|h| h.version.to_consensus() == 0x2000_0000)
        .unwrap();
    let mut tree = HeaderTree::with_trusted_start(
        ChainParams::new(Network::Bitcoin),
        822528,
        zero_work(),
        headers[0],
        headers[1..i].iter().copied(),
    )
    .unwrap();
    let mut h = headers[i];
    h.version = Version::from_consensus(0);
    let height = 822528 + i as u32;
    assert_eq!(
        tree.accept(&[h], NOW).unwrap_err().error,
        HeaderError::BadVersion {
            hash: h.block_hash(),
            version: 0,
            height
        }
    );
    assert!(tree.accept(&headers[i..=i], NOW).is_ok());
}

#[test]
fn from_active_chain_checks_linkage() {
    let headers = load("mainnet-0-10236.hex");
    let params = ChainParams::new(Network::Bitcoin);
    let tree =
        HeaderTree::from_active_chain(params.clone(), headers[1..=3000].iter().copied()).unwrap();
    assert_eq!(
        (tree.height(), tree.tip().hash),
        (3000, headers[3000].block_hash())
    );
    assert_eq!(tree.tip().chain_work, work_sum(&headers[..=3000]));
    let skip = headers[1..=10].iter().chain(&headers[12..=20]).copied();
    assert_eq!(
        HeaderTree::from_active_chain(params, skip).unwrap_err(),
        HeaderError::UnknownParent {
            hash: headers[12].block_hash(),
            prev: headers[11].block_hash()
        }
    );
}

#[test]
fn synced_enough_compares_min_chain_work() {
    let headers = load("mainnet-0-10236.hex");
    let mut params = ChainParams::new(Network::Bitcoin);
    let tree = HeaderTree::from_active_chain(params.clone(), headers[1..].iter().copied()).unwrap();
    assert!(!tree.is_synced_enough());
    params.min_chain_work = tree.tip().chain_work;
    let tree = HeaderTree::from_active_chain(params.clone(), headers[1..].iter().copied()).unwrap();
    assert!(tree.is_synced_enough());
    params.min_chain_work = tree.tip().chain_work + block_proof(bits(0x1d00ffff));
    let tree = HeaderTree::from_active_chain(params, headers[1..].iter().copied()).unwrap();
    assert!(!tree.is_synced_enough());
    assert!(regtest().is_synced_enough(), "regtest's minimum is 0");
}

/// Core's locator heights for a chain of height `tip`, written independently of the library:
/// 12 consecutive heights (Core doubles the step only after computing the 12th), then gaps of
/// 2, 4, 8, …, then genesis.
fn expected_locator_heights(tip: u32) -> Vec<u32> {
    let mut out: Vec<u32> = (0..=11.min(tip)).map(|i| tip - i).collect();
    let mut step = 2;
    let mut h = *out.last().unwrap();
    while h > 0 {
        h = h.saturating_sub(step);
        out.push(h);
        step *= 2;
    }
    out
}

#[test]
fn locator_is_dense_then_doubling_to_genesis() {
    let headers = load("mainnet-0-10236.hex");
    let tree = HeaderTree::from_active_chain(
        ChainParams::new(Network::Bitcoin),
        headers[1..].iter().copied(),
    )
    .unwrap();
    let heights: Vec<u32> = tree
        .locator()
        .iter()
        .map(|h| tree.get(h).unwrap().height)
        .collect();
    assert_eq!(heights, expected_locator_heights(10236));
    assert_eq!(
        &heights[..13],
        &[
            10236, 10235, 10234, 10233, 10232, 10231, 10230, 10229, 10228, 10227, 10226, 10225,
            10223
        ]
    );
    assert_eq!(*tree.locator().last().unwrap(), headers[0].block_hash());
    assert_eq!(heights.len(), 25, "12 dense + 12 doubling steps + genesis");

    let small = HeaderTree::from_active_chain(
        ChainParams::new(Network::Bitcoin),
        headers[1..=5].iter().copied(),
    )
    .unwrap();
    let heights: Vec<u32> = small
        .locator()
        .iter()
        .map(|h| small.get(h).unwrap().height)
        .collect();
    assert_eq!(heights, vec![5, 4, 3, 2, 1, 0]);
    assert_eq!(
        HeaderTree::new(ChainParams::new(Network::Bitcoin)).locator(),
        vec![headers[0].block_hash()]
    );
}

#[test]
fn headers_after_answers_getheaders() {
    let headers = load("mainnet-0-10236.hex");
    let params = ChainParams::new(Network::Bitcoin);
    let tree = HeaderTree::from_active_chain(params.clone(), headers[1..].iter().copied()).unwrap();
    let hash = |h: usize| headers[h].block_hash();
    let none = BlockHash::all_zeros();
    let heights = |v: Vec<Header>| -> Vec<u32> {
        v.iter()
            .map(|h| tree.get(&h.block_hash()).unwrap().height)
            .collect()
    };

    // From genesis: at most 2000, whatever is asked.
    let got = tree.headers_after(&[hash(0)], none, 5000);
    assert_eq!(got.len(), 2000);
    assert_eq!(heights(got), (1..=2000).collect::<Vec<_>>());
    assert_eq!(tree.headers_after(&[hash(0)], none, 10).len(), 10);
    assert!(tree.headers_after(&[hash(0)], none, 0).is_empty());

    // A peer at 100 (its own locator) gets 101..; the stop header ends the answer.
    let peer =
        HeaderTree::from_active_chain(params.clone(), headers[1..=100].iter().copied()).unwrap();
    assert_eq!(
        heights(tree.headers_after(&peer.locator(), none, 2000))[0],
        101
    );
    assert_eq!(
        heights(tree.headers_after(&peer.locator(), hash(150), 2000)),
        (101..=150).collect::<Vec<_>>()
    );
    // Stop beyond the limit: the limit wins.
    assert_eq!(
        tree.headers_after(&[hash(100)], hash(9000), 2000).len(),
        2000
    );

    // Unknown hashes are skipped; none known means from genesis.
    let unknown = BlockHash::from_byte_array([7; 32]);
    assert_eq!(
        heights(tree.headers_after(&[unknown], none, 3)),
        vec![1, 2, 3]
    );
    assert_eq!(
        heights(tree.headers_after(&[unknown, hash(500)], none, 3)),
        vec![501, 502, 503]
    );
    // At our tip: nothing to send.
    assert!(tree.headers_after(&[hash(10236)], none, 2000).is_empty());
    // Empty locator: the stop header alone, if it is active.
    assert_eq!(heights(tree.headers_after(&[], hash(77), 2000)), vec![77]);
    assert!(tree.headers_after(&[], unknown, 2000).is_empty());
}

#[test]
fn headers_after_skips_fork_locator_entries() {
    let mut tree = regtest();
    let genesis = tree.tip().header;
    let main = mine_chain(&genesis, 30, 0);
    accept_all(&mut tree, &main);
    let fork = mine_chain(&main[9], 5, 3); // heights 11..=15 off height 10
    assert_eq!(tree.accept(&fork, NOW), Ok(None));
    let got = tree.headers_after(
        &[fork[4].block_hash(), main[19].block_hash()],
        BlockHash::all_zeros(),
        2,
    );
    assert_eq!(got, vec![main[20], main[21]]);
    // Only fork entries: from genesis.
    let got = tree.headers_after(&[fork[4].block_hash()], BlockHash::all_zeros(), 1);
    assert_eq!(got, vec![main[0]]);
}

#[test]
fn fork_headers_are_bounded() {
    let mut params = ChainParams::new(Network::Regtest);
    params.max_fork_headers = 100;
    let mut tree = HeaderTree::new(params);
    let genesis = tree.tip().header;
    let main = mine_chain(&genesis, 60, 0);
    accept_all(&mut tree, &main);
    let active: Vec<BlockHash> = (0..=60).map(|h| tree.at_height(h).unwrap().hash).collect();

    // 40 branches of 8 (320 headers) off heights 5..=44: every one has less work than the tip.
    let mut mined: HashMap<BlockHash, Header> = HashMap::new();
    let mut branches = Vec::new();
    for i in 0..40u32 {
        let branch = mine_chain(&main[4 + i as usize], 8, 1 + i);
        assert_eq!(tree.accept(&branch, NOW), Ok(None), "branch {i}");
        assert!(
            tree.fork_header_count() <= 100,
            "{}",
            tree.fork_header_count()
        );
        for h in &branch {
            mined.insert(h.block_hash(), *h);
        }
        branches.push(branch);
    }
    // A branch with more work than any of those (tip at 59, still below the active 60).
    let strong = mine_chain(&main[49], 9, 99);
    assert_eq!(tree.accept(&strong, NOW), Ok(None));
    assert!(tree.fork_header_count() <= 100);
    assert!(tree.len() <= 61 + 100);

    // The active chain is intact and the strong branch is kept whole.
    assert_eq!(tree.tip().hash, main[59].block_hash());
    for (h, hash) in active.iter().enumerate() {
        assert_eq!(tree.at_height(h as u32).unwrap().hash, *hash);
    }
    assert!(strong.iter().all(|h| tree.contains(&h.block_hash())));
    // The least-work branches went first: the lowest branches are gone, the highest are kept.
    assert!(!tree.contains(&branches[0][7].block_hash()));
    assert!(tree.contains(&branches[39][7].block_hash()));
    let kept = mined.keys().filter(|h| tree.contains(h)).count();
    assert!(kept < 100 && kept > 50, "{kept}");

    // A child of a dropped header no longer connects.
    let orphan = mine(&branches[0][7], 0);
    let err = tree.accept(&[orphan], NOW).unwrap_err();
    assert_eq!(
        err.error,
        HeaderError::UnknownParent {
            hash: orphan.block_hash(),
            prev: branches[0][7].block_hash()
        }
    );

    // The tips list shows the kept branches as valid-headers.
    let tips = tree.tips();
    assert_eq!(tips[0].status, TipStatus::Active);
    assert!(tips[1..]
        .iter()
        .all(|t| t.status == TipStatus::ValidHeaders));
    assert!(tips
        .iter()
        .any(|t| t.hash == strong[8].block_hash() && t.branch_len == 9));
}

#[test]
fn non_continuous_headers_are_found_at_the_first_break() {
    let genesis = regtest().tip().header;
    let mut chain = mine_chain(&genesis, 5, 0);
    assert_eq!(verack::chain::first_discontinuity(&chain), None);
    assert_eq!(verack::chain::first_discontinuity(&chain[..1]), None);
    assert_eq!(verack::chain::first_discontinuity(&[]), None);
    // The first header may build on anything (an unconnecting header is not a break).
    assert_eq!(verack::chain::first_discontinuity(&chain[2..]), None);
    // A gap: header 3 dropped, header 4 no longer builds on its predecessor.
    chain.remove(3);
    assert_eq!(verack::chain::first_discontinuity(&chain), Some(3));
    // Known headers do not excuse a break: the same sequence repeated.
    let genesis_chain = mine_chain(&genesis, 2, 1);
    let repeated = [genesis_chain.clone(), genesis_chain].concat();
    assert_eq!(verack::chain::first_discontinuity(&repeated), Some(2));
}
