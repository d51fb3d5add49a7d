//! An in-memory regtest header chain, and a *feeder* that serves it over P2P as a full node
//! would: a verack-library listener whose peers answer `getheaders` with up to 2000 headers.
//!
//! The headers pass verack's (and Bitcoin Core's) header rules on regtest:
//! * bits `0x207fffff`, the proof-of-work limit, which regtest never retargets;
//! * the nonce ground until the hash meets that target (about 2 tries a header);
//! * time = genesis time + height, in seconds: above the median time past, far below now + 2 h;
//! * version `0x20000000` (BIP9 top bits; ≥ 4 as BIP34/66/65 require);
//! * the merkle root carries the height, so the chain is the same on every run.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bitcoin::block::{Header, Version};
use bitcoin::blockdata::constants::genesis_block;
use bitcoin::hashes::Hash;
use bitcoin::p2p::message::NetworkMessage;
use bitcoin::p2p::message_blockdata::GetHeadersMessage;
use bitcoin::p2p::ServiceFlags;
use bitcoin::{BlockHash, CompactTarget, Network, Target, TxMerkleNode};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use verack::peer::{MessageHandler, Peer, PeerConfig, PeerHandle, StartHeight};

/// Regtest's proof-of-work limit in compact form.
pub const REGTEST_BITS: u32 = 0x207f_ffff;
/// The version of every generated header.
pub const HEADER_VERSION: i32 = 0x2000_0000;
/// Headers per `headers` message (Core's `MAX_HEADERS_RESULTS`).
pub const MAX_HEADERS: usize = 2000;

/// A regtest chain from genesis: `headers[h]` is the header at height `h`.
pub struct Chain {
    headers: Vec<Header>,
    heights: HashMap<BlockHash, u32>,
}

impl Chain {
    /// Generates `n` headers on top of regtest genesis (see the module doc for their fields).
    pub fn generate(n: u32) -> Chain {
        let genesis = genesis_block(Network::Regtest).header;
        let bits = CompactTarget::from_consensus(REGTEST_BITS);
        let target = Target::from_compact(bits);
        let mut headers = Vec::with_capacity(n as usize + 1);
        let mut heights = HashMap::with_capacity(n as usize + 1);
        let mut prev = genesis.block_hash();
        headers.push(genesis);
        heights.insert(prev, 0);
        for height in 1..=n {
            let mut root = [0u8; 32];
            root[..4].copy_from_slice(&height.to_le_bytes());
            let mut header = Header {
                version: Version::from_consensus(HEADER_VERSION),
                prev_blockhash: prev,
                merkle_root: TxMerkleNode::from_byte_array(root),
                time: genesis.time + height,
                bits,
                nonce: 0,
            };
            let mut hash = header.block_hash();
            while !target.is_met_by(hash) {
                header.nonce += 1;
                hash = header.block_hash();
            }
            headers.push(header);
            heights.insert(hash, height);
            prev = hash;
        }
        Chain { headers, heights }
    }

    /// The tip's height (the number of headers above genesis).
    pub fn height(&self) -> u32 {
        (self.headers.len() - 1) as u32
    }

    /// The answer to `getheaders`: the headers after the first locator hash we know (after
    /// genesis if none), at most [`MAX_HEADERS`], ending at `stop` if met.
    pub fn headers_after(&self, locator: &[BlockHash], stop: BlockHash) -> Vec<Header> {
        let fork = locator
            .iter()
            .find_map(|h| self.heights.get(h))
            .copied()
            .unwrap_or(0) as usize;
        let end = (fork + 1 + MAX_HEADERS).min(self.headers.len());
        let mut out = Vec::with_capacity(end.saturating_sub(fork + 1));
        for header in &self.headers[(fork + 1).min(end)..end] {
            out.push(*header);
            if stop != BlockHash::all_zeros() && header.block_hash() == stop {
                break;
            }
        }
        out
    }
}

/// Serves a [`Chain`] to every peer that connects to [`addr`](Self::addr), advertising
/// `NODE_NETWORK | NODE_WITNESS` and the chain's height; stops when dropped.
pub struct Feeder {
    addr: SocketAddr,
    served: Arc<AtomicU64>,
    cancel: CancellationToken,
}

impl Feeder {
    /// Listens on 127.0.0.1 (a free port) inside the current tokio runtime.
    ///
    /// # Errors
    /// If the listener cannot be bound.
    pub async fn start(chain: Arc<Chain>) -> std::io::Result<Feeder> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let mut config = PeerConfig::new(Network::Regtest);
        config.services = ServiceFlags::NETWORK | ServiceFlags::WITNESS;
        config.start_height = StartHeight::Fixed(chain.height() as i32);
        config.user_agent = "/verack-bench-feeder/".into();
        let served = Arc::new(AtomicU64::new(0));
        let cancel = CancellationToken::new();
        tokio::spawn(accept_loop(
            listener,
            config,
            chain,
            served.clone(),
            cancel.clone(),
        ));
        Ok(Feeder {
            addr,
            served,
            cancel,
        })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Headers sent so far, to every peer.
    pub fn served(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }
}

impl Drop for Feeder {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

async fn accept_loop(
    listener: TcpListener,
    config: PeerConfig,
    chain: Arc<Chain>,
    served: Arc<AtomicU64>,
    cancel: CancellationToken,
) {
    loop {
        let (stream, from) = tokio::select! {
            _ = cancel.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    eprintln!("feeder: accept: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let handler = Serve {
            chain: chain.clone(),
            served: served.clone(),
        };
        let (config, cancel) = (config.clone(), cancel.clone());
        tokio::spawn(async move {
            let peer = Peer::inbound(stream, from, config);
            match peer
                .handshake(&cancel, |_: &_| Ok::<(), std::io::Error>(()))
                .await
            {
                Ok(peer) => {
                    peer.run(handler, cancel).await;
                }
                Err(e) => eprintln!("feeder: handshake with {from}: {e}"),
            }
        });
    }
}

/// One feeder peer's handler: answers `getheaders` from the chain.
struct Serve {
    chain: Arc<Chain>,
    served: Arc<AtomicU64>,
}

impl MessageHandler for Serve {
    async fn on_getheaders(&mut self, peer: &PeerHandle, msg: GetHeadersMessage) {
        let headers = self.chain.headers_after(&msg.locator_hashes, msg.stop_hash);
        self.served
            .fetch_add(headers.len() as u64, Ordering::Relaxed);
        let _ = peer.send(NetworkMessage::Headers(headers));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use verack::chain::{ChainParams, HeaderTree};

    #[test]
    fn generated_headers_pass_verack_validation() {
        let chain = Chain::generate(3000);
        assert_eq!(chain.height(), 3000);
        let mut tree = HeaderTree::new(ChainParams::new(Network::Regtest));
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as u32;
        for batch in chain.headers[1..].chunks(MAX_HEADERS) {
            tree.accept(batch, now).expect("valid headers");
        }
        assert_eq!(tree.height(), 3000);
        assert_eq!(Chain::generate(5).headers[..], chain.headers[..6]);
    }

    #[test]
    fn answers_getheaders_after_the_first_known_locator_hash() {
        let chain = Chain::generate(4500);
        let zero = BlockHash::all_zeros();
        let first = chain.headers_after(&[], zero);
        assert_eq!(first.len(), MAX_HEADERS);
        assert_eq!(first[0], chain.headers[1]);
        let unknown = BlockHash::from_byte_array([7; 32]);
        let last = first[MAX_HEADERS - 1].block_hash();
        let next = chain.headers_after(&[unknown, last, zero], zero);
        assert_eq!(next[0], chain.headers[MAX_HEADERS + 1]);
        let tail = chain.headers_after(&[chain.headers[4000].block_hash()], zero);
        assert_eq!(tail.len(), 500);
        let tip = chain.headers[4500].block_hash();
        assert!(chain.headers_after(&[tip], zero).is_empty());
        let stop = chain.headers[10].block_hash();
        assert_eq!(chain.headers_after(&[], stop).len(), 10);
    }
}
