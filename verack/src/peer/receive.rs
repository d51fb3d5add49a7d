//! What the peer itself does with each message received after the handshake, before (and
//! whether) the handler sees it.

use bitcoin::hashes::Hash;
use bitcoin::p2p::message::NetworkMessage;
use bitcoin::p2p::ServiceFlags;
use tokio::time::Instant;

use super::handle::{item_hash, Shared};
use super::ping::BIP31_VERSION;
use super::{DisconnectReason, Violation};

/// The first version at which unsolicited BIP37 filter messages disconnect (BIP111).
pub const BIP111_VERSION: u32 = 70011;
/// Core's `MAX_INV_SZ`: entries in `inv`, `getdata`, `notfound`.
pub const MAX_INV_ENTRIES: usize = 50_000;
/// Core's `MAX_HEADERS_RESULTS`: headers in one `headers`.
pub const MAX_HEADERS_ENTRIES: usize = 2000;
/// Core's `MAX_ADDR_TO_SEND` as a receive limit: entries in `addr`/`addrv2`.
pub const MAX_ADDR_ENTRIES: usize = 1000;
/// Core's `MAX_LOCATOR_SZ`: hashes in a `getheaders`/`getblocks` locator.
pub const MAX_LOCATOR_ENTRIES: usize = 101;

/// `MSG_FILTERED_BLOCK` (3), BIP37's inventory type for a `merkleblock` request.
const MSG_FILTERED_BLOCK: u32 = 3;

fn is_filtered_block(item: &bitcoin::p2p::message_blockdata::Inventory) -> bool {
    matches!(
        item,
        bitcoin::p2p::message_blockdata::Inventory::Unknown { inv_type, .. }
            if *inv_type == MSG_FILTERED_BLOCK
    )
}

/// Whether the handler should see the message.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Delivery {
    Deliver,
    Drop,
}

fn too_many(command: &str, count: usize, max: usize) -> Result<Delivery, DisconnectReason> {
    if count > max {
        Err(DisconnectReason::ProtocolViolation(
            Violation::TooManyEntries {
                command: command.to_string(),
                count,
                max,
            },
        ))
    } else {
        Ok(Delivery::Deliver)
    }
}

fn violation(v: Violation) -> Result<Delivery, DisconnectReason> {
    Err(DisconnectReason::ProtocolViolation(v))
}

/// Applies protocol rules and bookkeeping for `msg`.
pub(crate) fn on_received(
    shared: &Shared,
    msg: &NetworkMessage,
    now: Instant,
) -> Result<Delivery, DisconnectReason> {
    use NetworkMessage as M;
    let version = shared.negotiated.protocol_version;
    match msg {
        // Core's net_processing ignores a redundant `version` ("redundant version message")
        // and `verack` ("ignoring redundant verack message") and keeps the peer.
        M::Version(_) | M::Verack => Ok(Delivery::Drop),
        M::WtxidRelay | M::SendAddrV2 => violation(Violation::LateNegotiation {
            command: msg.cmd().to_string(),
        }),
        // BIP434 allows either; Core's net_processing disconnects ("feature received after
        // verack").
        M::Unknown { command, .. } if command.as_ref() == "feature" => {
            violation(Violation::LateNegotiation {
                command: command.to_string(),
            })
        }
        // When we offered BIP330 ourselves (a `sendtxrcncl` in our handshake extension), as
        // Core with `-txreconciliation`: "sendtxrcncl received after verack" disconnects.
        // Otherwise, as Core without it, a late `sendtxrcncl` is ignored (BIP330: "ignored by
        // nodes that don't support it").
        M::Unknown { command, .. } if command.as_ref() == "sendtxrcncl" => {
            if offered_reconciliation(&shared.negotiated) {
                violation(Violation::LateNegotiation {
                    command: command.to_string(),
                })
            } else {
                Ok(Delivery::Drop)
            }
        }
        M::FilterLoad(_) | M::FilterAdd(_) | M::FilterClear
            if !shared.config.services.has(ServiceFlags::BLOOM) =>
        {
            if version >= BIP111_VERSION {
                violation(Violation::BloomNotOffered {
                    command: msg.cmd().to_string(),
                })
            } else {
                Ok(Delivery::Drop)
            }
        }
        // Core disconnects a peer that asks for the mempool or a filtered block when we do not
        // offer NODE_BLOOM ("mempool request with bloom filters disabled", "filtered block
        // request received when NODE_BLOOM service disabled"), whatever its version.
        M::MemPool if !shared.config.services.has(ServiceFlags::BLOOM) => {
            violation(Violation::BloomNotOffered {
                command: msg.cmd().to_string(),
            })
        }
        M::GetData(items)
            if !shared.config.services.has(ServiceFlags::BLOOM)
                && items.iter().any(is_filtered_block) =>
        {
            violation(Violation::BloomNotOffered {
                command: "getdata(filtered block)".to_string(),
            })
        }
        M::Ping(nonce) => {
            if version > BIP31_VERSION {
                // A failure here means we are already disconnecting.
                let _ = shared.enqueue(&M::Pong(*nonce), None);
            }
            Ok(Delivery::Deliver)
        }
        M::Pong(nonce) => {
            if shared.state().ping.on_pong(*nonce, now) {
                // The next ping is now due an interval from the last one: reschedule.
                shared.wake.notify_one();
            }
            Ok(Delivery::Deliver)
        }
        M::Headers(headers) => {
            let mut state = shared.state();
            state.stall.received_headers();
            state.headers_answered();
            drop(state);
            too_many("headers", headers.len(), MAX_HEADERS_ENTRIES)
        }
        M::Inv(items) => {
            let verdict = too_many("inv", items.len(), MAX_INV_ENTRIES)?;
            let mut state = shared.state();
            for item in items {
                state.known.insert(item);
            }
            Ok(verdict)
        }
        M::GetData(items) => too_many("getdata", items.len(), MAX_INV_ENTRIES),
        M::NotFound(items) => {
            let verdict = too_many("notfound", items.len(), MAX_INV_ENTRIES)?;
            let mut state = shared.state();
            for hash in items.iter().filter_map(item_hash) {
                state.stall.received_item(&hash);
            }
            Ok(verdict)
        }
        M::Block(block) => received_item(shared, || vec![block.block_hash().to_byte_array()]),
        M::MerkleBlock(mb) => {
            received_item(shared, || vec![mb.header.block_hash().to_byte_array()])
        }
        M::CmpctBlock(cb) => received_item(shared, || {
            vec![cb.compact_block.header.block_hash().to_byte_array()]
        }),
        M::Tx(tx) => received_item(shared, || {
            vec![
                tx.compute_txid().to_byte_array(),
                tx.compute_wtxid().to_byte_array(),
            ]
        }),
        M::Addr(a) => too_many("addr", a.len(), MAX_ADDR_ENTRIES),
        M::AddrV2(a) => too_many("addrv2", a.len(), MAX_ADDR_ENTRIES),
        M::GetHeaders(m) => too_many("getheaders", m.locator_hashes.len(), MAX_LOCATOR_ENTRIES),
        M::GetBlocks(m) => too_many("getblocks", m.locator_hashes.len(), MAX_LOCATOR_ENTRIES),
        M::SendHeaders => {
            shared.state().features.send_headers = true;
            Ok(Delivery::Deliver)
        }
        M::SendCmpct(m) => {
            shared.state().features.compact_blocks = Some(*m);
            Ok(Delivery::Deliver)
        }
        _ => Ok(Delivery::Deliver),
    }
}

/// Whether we sent `sendtxrcncl` before our `verack` (BIP330 offered).
fn offered_reconciliation(negotiated: &super::Negotiated) -> bool {
    negotiated
        .local_extra_messages
        .iter()
        .any(|m| matches!(m, NetworkMessage::Unknown { command, .. } if command.as_ref() == "sendtxrcncl"))
}

/// Clears the stall deadlines of a reply's hashes; hashes are computed only when items are
/// outstanding.
fn received_item(
    shared: &Shared,
    hashes: impl FnOnce() -> Vec<[u8; 32]>,
) -> Result<Delivery, DisconnectReason> {
    let mut state = shared.state();
    if state.stall.awaits_items() {
        for hash in hashes() {
            state.stall.received_item(&hash);
        }
    }
    Ok(Delivery::Deliver)
}
