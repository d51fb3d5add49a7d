//! v1 framing micro benchmarks: verack's codec ([`encode_frame`], [`V1Codec`]) against
//! rust-bitcoin doing the same work alone (`consensus::encode::serialize` of a
//! `RawNetworkMessage::new(..)`, and `deserialize::<RawNetworkMessage>`: header, checksum and
//! payload), for small and large `inv`, `headers`, `addrv2` and 1 MB / 3.9 MB payloads.
//!
//! Run: `cargo bench -p verack --bench framing` (criterion with short settings, about a
//! minute; criterion's own flags such as a name filter still apply).
//!
//! `VERACK_BENCH_GUARD=1 cargo bench -p verack --bench framing` skips criterion and runs the
//! CI regression guard instead (`.ci/bench-guard.sh`, a few seconds): it times verack and the
//! rust-bitcoin baseline in the same process, interleaved, and exits 1 when verack is more than
//! [`GUARD_MAX_RATIO`] times slower at decoding a 1 MB frame, encoding it, or decoding a 1-entry
//! `inv`. Ratios rather than absolute times, so a slow or busy CI machine does not fail it.

use std::hint::black_box;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use bitcoin::block::{self, Header};
use bitcoin::consensus::encode::{deserialize, serialize};
use bitcoin::hashes::Hash;
use bitcoin::p2p::address::{AddrV2, AddrV2Message};
use bitcoin::p2p::message::{CommandString, NetworkMessage, RawNetworkMessage};
use bitcoin::p2p::message_blockdata::Inventory;
use bitcoin::p2p::{Magic, ServiceFlags};
use bitcoin::{BlockHash, CompactTarget, TxMerkleNode, Txid, Wtxid};
use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, BatchSize, Criterion, SamplingMode, Throughput};
use tokio_util::codec::Decoder;
use verack::wire::{encode_frame, V1Codec};

/// Environment variable that selects the CI guard instead of criterion (value `1`).
const GUARD_ENV: &str = "VERACK_BENCH_GUARD";
/// The guard fails when verack's median time exceeds the baseline's median by this factor.
const GUARD_MAX_RATIO: f64 = 3.0;
/// Timed rounds per side; the median round decides, so one preempted round cannot fail CI.
const GUARD_ROUNDS: usize = 11;

const MAGIC: Magic = Magic::BITCOIN;

/// One message to frame, with its frame as verack encodes it.
struct Case {
    name: &'static str,
    message: NetworkMessage,
    frame: Bytes,
}

impl Case {
    /// Builds the case and checks, outside any timing, that both sides do the same work:
    /// identical frames, and both decoders return the original message.
    fn new(name: &'static str, message: NetworkMessage) -> Case {
        let frame = encode_frame(MAGIC, &message).expect("bench messages fit the limit");
        assert_eq!(
            frame[..],
            serialize(&RawNetworkMessage::new(MAGIC, message.clone()))[..],
            "{name}: verack and rust-bitcoin frames differ"
        );
        let decoded = V1Codec::new(MAGIC)
            .decode(&mut BytesMut::from(&frame[..]))
            .expect("verack decodes its own frame")
            .expect("a whole frame");
        assert_eq!(decoded.message, message, "{name}: verack decode");
        assert_eq!(decoded.wire_len, frame.len(), "{name}: verack wire_len");
        let baseline = deserialize::<RawNetworkMessage>(&frame).expect("rust-bitcoin decodes it");
        assert_eq!(*baseline.payload(), message, "{name}: rust-bitcoin decode");
        Case {
            name,
            message,
            frame,
        }
    }

    /// Large inputs are cloned one at a time so a batch does not hold hundreds of megabytes.
    fn batch_size(&self) -> BatchSize {
        match self.frame.len() {
            0..=65_535 => BatchSize::SmallInput,
            65_536..=999_999 => BatchSize::LargeInput,
            _ => BatchSize::PerIteration,
        }
    }

    /// A fresh copy of the frame, as a peer's read buffer holds it (the decode input).
    fn fresh_frame(&self) -> impl FnMut() -> BytesMut + '_ {
        || BytesMut::from(&self.frame[..])
    }
}

/// Deterministic filler (splitmix64), so every run benchmarks the same bytes.
struct Filler(u64);

impl Filler {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn bytes<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        for chunk in out.chunks_mut(8) {
            chunk.copy_from_slice(&self.next_u64().to_le_bytes()[..chunk.len()]);
        }
        out
    }

    fn vec(&mut self, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 8);
        while out.len() < len {
            out.extend_from_slice(&self.next_u64().to_le_bytes());
        }
        out.truncate(len);
        out
    }
}

/// An `inv` as a relaying node sends it: mostly wtxids, some txids and the odd block.
fn inv(count: usize, rng: &mut Filler) -> NetworkMessage {
    let items = (0..count)
        .map(|i| match i % 16 {
            0 => Inventory::Block(BlockHash::from_byte_array(rng.bytes())),
            1..=3 => Inventory::Transaction(Txid::from_byte_array(rng.bytes())),
            _ => Inventory::WTx(Wtxid::from_byte_array(rng.bytes())),
        })
        .collect();
    NetworkMessage::Inv(items)
}

/// A `headers` reply: a chain of `count` headers, each linking to the previous one's hash.
fn headers(count: usize, rng: &mut Filler) -> NetworkMessage {
    let mut prev_blockhash = BlockHash::from_byte_array(rng.bytes());
    let mut time = 1_700_000_000;
    let headers = (0..count)
        .map(|i| {
            time += 540 + (rng.next_u64() % 120) as u32;
            let header = Header {
                version: block::Version::from_consensus(0x2000_0000 | (i as i32 & 0x4)),
                prev_blockhash,
                merkle_root: TxMerkleNode::from_byte_array(rng.bytes()),
                time,
                bits: CompactTarget::from_consensus(0x1703_4219),
                nonce: rng.next_u64() as u32,
            };
            prev_blockhash = header.block_hash();
            header
        })
        .collect();
    NetworkMessage::Headers(headers)
}

/// An `addrv2` (BIP155) reply: IPv4 and IPv6 peers with typical services, ports and times.
fn addrv2(count: usize, rng: &mut Filler) -> NetworkMessage {
    let addrs = (0..count)
        .map(|i| {
            let r = rng.next_u64();
            let addr = if i % 3 == 2 {
                let mut octets: [u8; 16] = rng.bytes();
                octets[..2].copy_from_slice(&[0x2a, 0x01]);
                AddrV2::Ipv6(Ipv6Addr::from(octets))
            } else {
                let [a, b, c, d, ..] = r.to_le_bytes();
                AddrV2::Ipv4(Ipv4Addr::new(a | 1, b, c, d))
            };
            let services = if r & 0x100 == 0 {
                ServiceFlags::NETWORK | ServiceFlags::WITNESS
            } else {
                ServiceFlags::NETWORK_LIMITED | ServiceFlags::WITNESS | ServiceFlags::P2P_V2
            };
            AddrV2Message {
                time: 1_700_000_000 + (r >> 40) as u32 % 864_000,
                services,
                addr,
                port: if r & 0x200 == 0 {
                    8333
                } else {
                    (r >> 16) as u16
                },
            }
        })
        .collect();
    NetworkMessage::AddrV2(addrs)
}

/// An unrecognised command carrying `len` payload bytes; both decoders return it as `Unknown`.
fn raw_payload(len: usize, rng: &mut Filler) -> NetworkMessage {
    NetworkMessage::Unknown {
        command: CommandString::try_from_static("bench").expect("valid command"),
        payload: rng.vec(len),
    }
}

fn cases() -> Vec<Case> {
    let rng = &mut Filler(0x7665_7261_636b);
    vec![
        Case::new("inv_1", inv(1, rng)),
        Case::new("inv_1000", inv(1000, rng)),
        Case::new("headers_2000", headers(2000, rng)),
        Case::new("addrv2_1000", addrv2(1000, rng)),
        Case::new("payload_1MB", raw_payload(1_000_000, rng)),
        Case::new("payload_3.9MB", raw_payload(3_900_000, rng)),
    ]
}

fn framing(c: &mut Criterion) {
    for case in cases() {
        let size = case.batch_size();
        for op in ["encode", "decode"] {
            let mut group = c.benchmark_group(format!("{}/{op}", case.name));
            group.throughput(Throughput::Bytes(case.frame.len() as u64));
            if case.frame.len() >= 1_000_000 {
                // Linear sampling would need 55 iterations of several milliseconds per sample
                // set; flat sampling keeps the MB cases inside the short measurement time.
                group.sampling_mode(SamplingMode::Flat);
            }
            if op == "encode" {
                // Both sides get their own clone of the message (rust-bitcoin's `new` takes
                // it by value), made and dropped outside the timing.
                group.bench_function("verack", |b| {
                    b.iter_batched(
                        || case.message.clone(),
                        |m| (encode_frame(MAGIC, &m), m),
                        size,
                    )
                });
                group.bench_function("bitcoin_consensus", |b| {
                    b.iter_batched(
                        || case.message.clone(),
                        |m| serialize(&RawNetworkMessage::new(MAGIC, m)),
                        size,
                    )
                });
            } else {
                // Each iteration decodes a fresh copy of the frame; the copy is the untimed
                // setup, for both sides alike.
                let mut codec = V1Codec::new(MAGIC);
                group.bench_function("verack", |b| {
                    b.iter_batched(
                        case.fresh_frame(),
                        |mut buf| (codec.decode(&mut buf), buf),
                        size,
                    )
                });
                group.bench_function("bitcoin_consensus", |b| {
                    b.iter_batched(
                        case.fresh_frame(),
                        |buf| (deserialize::<RawNetworkMessage>(&buf), buf),
                        size,
                    )
                });
            }
            group.finish();
        }
    }
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(1))
        .nresamples(10_000)
        .without_plots()
}

criterion_group! {
    name = benches;
    config = config();
    targets = framing
}

fn main() -> ExitCode {
    if std::env::var_os(GUARD_ENV).is_some_and(|v| v == "1") {
        return guard();
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
    ExitCode::SUCCESS
}

/// Median time per iteration of each side, over [`GUARD_ROUNDS`] interleaved rounds.
struct Timing {
    verack: Duration,
    baseline: Duration,
}

/// Times `iters` runs of `verack` and of `baseline` per round, alternating which goes first,
/// after one untimed warm-up round. As in the criterion benches, inputs come from `setup` and
/// outputs are dropped with the clock stopped; the clock runs over `batch` runs at a time (1
/// for the MB cases, like criterion's `PerIteration`, so each run allocates into memory the
/// previous one freed rather than into fresh pages).
fn race<I, A, B>(
    iters: usize,
    batch: usize,
    mut setup: impl FnMut() -> I,
    mut verack: impl FnMut(I) -> A,
    mut baseline: impl FnMut(I) -> B,
) -> Timing {
    fn timed<I, O>(
        iters: usize,
        batch: usize,
        setup: &mut impl FnMut() -> I,
        f: &mut impl FnMut(I) -> O,
    ) -> Duration {
        let batches = iters.div_ceil(batch);
        let mut total = Duration::ZERO;
        for _ in 0..batches {
            let inputs: Vec<I> = (0..batch).map(|_| setup()).collect();
            let mut outputs = Vec::with_capacity(batch);
            let start = Instant::now();
            for input in inputs {
                outputs.push(black_box(f(black_box(input))));
            }
            total += start.elapsed();
            drop(outputs);
        }
        total / (batches * batch) as u32
    }

    timed(iters, batch, &mut setup, &mut verack);
    timed(iters, batch, &mut setup, &mut baseline);
    let mut ours = Vec::with_capacity(GUARD_ROUNDS);
    let mut theirs = Vec::with_capacity(GUARD_ROUNDS);
    for round in 0..GUARD_ROUNDS {
        if round % 2 == 0 {
            ours.push(timed(iters, batch, &mut setup, &mut verack));
            theirs.push(timed(iters, batch, &mut setup, &mut baseline));
        } else {
            theirs.push(timed(iters, batch, &mut setup, &mut baseline));
            ours.push(timed(iters, batch, &mut setup, &mut verack));
        }
    }
    ours.sort();
    theirs.sort();
    Timing {
        verack: ours[GUARD_ROUNDS / 2],
        baseline: theirs[GUARD_ROUNDS / 2],
    }
}

/// The CI guard: prints one line per check and a verdict; fails if any ratio is over the limit.
fn guard() -> ExitCode {
    let started = Instant::now();
    let cases = cases();
    let case = |name: &str| {
        cases
            .iter()
            .find(|c| c.name == name)
            .expect("guard case exists")
    };
    let mb = case("payload_1MB");
    let inv1 = case("inv_1");
    let mut codec = V1Codec::new(MAGIC);
    let checks = [
        (
            "decode payload_1MB",
            race(
                10,
                1,
                mb.fresh_frame(),
                |mut buf| (codec.decode(&mut buf), buf),
                |buf| (deserialize::<RawNetworkMessage>(&buf), buf),
            ),
        ),
        (
            "encode payload_1MB",
            race(
                10,
                1,
                || mb.message.clone(),
                |m| (encode_frame(MAGIC, &m), m),
                |m| serialize(&RawNetworkMessage::new(MAGIC, m)),
            ),
        ),
        (
            "decode inv_1",
            race(
                20_000,
                20_000,
                inv1.fresh_frame(),
                |mut buf| (codec.decode(&mut buf), buf),
                |buf| (deserialize::<RawNetworkMessage>(&buf), buf),
            ),
        ),
    ];
    let mut failed = 0;
    for (name, t) in &checks {
        let ratio = t.verack.as_secs_f64() / t.baseline.as_secs_f64();
        let ok = ratio <= GUARD_MAX_RATIO;
        failed += usize::from(!ok);
        println!(
            "bench-guard {name}: verack {:.2?}, bitcoin_consensus {:.2?}, ratio {ratio:.2} (max {GUARD_MAX_RATIO:.1}) {}",
            t.verack,
            t.baseline,
            if ok { "ok" } else { "FAIL" },
        );
    }
    let elapsed = started.elapsed();
    if failed == 0 {
        println!(
            "bench-guard: ok, {} checks within {GUARD_MAX_RATIO:.1}x of bitcoin::consensus ({elapsed:.1?})",
            checks.len()
        );
        ExitCode::SUCCESS
    } else {
        println!(
            "bench-guard: FAILED, {failed} of {} checks over {GUARD_MAX_RATIO:.1}x of bitcoin::consensus ({elapsed:.1?})",
            checks.len()
        );
        ExitCode::FAILURE
    }
}
