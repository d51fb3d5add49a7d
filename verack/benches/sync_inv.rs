//! A block `inv` naming deep (archived) headers against one naming recent headers, through the
//! sync manager: the tree archives all but the last 4032 active headers compactly, and reading a
//! deep header's chain work sums up to 63 proofs, so a handler that read it per inv entry made
//! a peer's 50,000-entry inv cost about 2 s (found in review). The two cases should cost about
//! the same; the ratio deep/recent is printed.
//!
//! Run: `cargo bench -p verack --bench sync_inv` (a few seconds; no criterion: two timed
//! loops in one process, interleaved, medians of 7 rounds).

use std::hint::black_box;
use std::time::{Duration, Instant, SystemTime};

use bitcoin::block::Header;
use bitcoin::consensus::encode::deserialize_hex;
use bitcoin::p2p::ServiceFlags;
use bitcoin::{BlockHash, Network, Work};
use verack::chain::{ChainParams, HeaderTree};
use verack::peer::PeerId;
use verack::server::ConnectionKind;
use verack::sync::{Input, PeerInfo, SyncConfig, SyncManager};

/// Entries per inv (Core's `MAX_INV_SZ` is 50,000).
const ENTRIES: usize = 50_000;
const ROUNDS: usize = 7;

fn load(name: &str) -> Vec<Header> {
    let path = format!("{}/tests/data/headers/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    text.lines()
        .map(|l| deserialize_hex(l).expect("80-byte header"))
        .collect()
}

fn manager() -> SyncManager {
    let headers = load("mainnet-822528-830592.hex");
    let params = ChainParams::new(Network::Bitcoin);
    // The real chain work below 822528 does not matter here; any value works.
    let tree = HeaderTree::with_trusted_start(
        params.clone(),
        822_528,
        Work::from_le_bytes([0; 32]),
        headers[0],
        headers[1..].iter().copied(),
    )
    .expect("real mainnet headers link");
    let config = SyncConfig::new(&params);
    SyncManager::new(tree, config, [7; 32])
}

fn inv_of(manager: &mut SyncManager, peer: u64, blocks: &[BlockHash]) -> Duration {
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let id = PeerId(peer);
    manager.handle(
        Input::Connected(PeerInfo {
            id,
            kind: ConnectionKind::Inbound,
            start_height: 830_592,
            services: ServiceFlags::NETWORK | ServiceFlags::WITNESS,
            protocol_version: 70016,
            prefers_headers: false,
        }),
        now,
    );
    let started = Instant::now();
    black_box(manager.handle(
        Input::BlockInv {
            peer: id,
            blocks: blocks.to_vec(),
        },
        now,
    ));
    let took = started.elapsed();
    manager.handle(Input::Disconnected(id), now);
    took
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let mut manager = manager();
    let tree = manager.tree();
    let top = tree.height();
    let archived_top = tree.start_height() + tree.archived_len() as u32 - 1;
    // Deep: the archived headers, lowest first (each entry raises the peer's best known).
    let deep: Vec<BlockHash> = (0..ENTRIES as u32)
        .map(|i| tree.hash_at(tree.start_height() + i % (archived_top - tree.start_height())))
        .map(|h| h.expect("archived"))
        .collect();
    // Recent: the headers kept as nodes.
    let recent: Vec<BlockHash> = (0..ENTRIES as u32)
        .map(|i| tree.hash_at(archived_top + 1 + i % (top - archived_top)))
        .map(|h| h.expect("recent"))
        .collect();
    let (mut deep_t, mut recent_t) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS as u64 {
        deep_t.push(inv_of(&mut manager, 2 * round + 1, &deep));
        recent_t.push(inv_of(&mut manager, 2 * round + 2, &recent));
    }
    let (d, r) = (median(deep_t), median(recent_t));
    println!(
        "inv of {ENTRIES} block hashes: deep (archived) {d:?}, recent {r:?}, ratio {:.2}",
        d.as_secs_f64() / r.as_secs_f64()
    );
}
