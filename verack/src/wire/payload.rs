//! Message payloads by command, without a v1 header: what a BIP324 v2 packet carries.

use bitcoin::block;
use bitcoin::consensus::encode::{self, Decodable};
use bitcoin::p2p::message::{CommandString, NetworkMessage};
use bitcoin::VarInt;

use super::decode_version;

/// Decodes the payload of a `command` message into a [`NetworkMessage`], as rust-bitcoin's
/// v1 decoder does for the same payload (bytes left after a known message are an error;
/// unknown commands become [`NetworkMessage::Unknown`]). `version` is decoded leniently with
/// [`decode_version`], as the v1 codec does.
///
/// The slice is the whole payload, so no length read from it can make the decoder read or
/// allocate beyond it (collections are grown as their items decode).
///
/// # Errors
/// An [`encode::Error`] when a known message's payload does not decode.
pub fn decode_message(command: &str, payload: &[u8]) -> Result<NetworkMessage, encode::Error> {
    let mut r = payload;
    let r = &mut r;
    let message = match command {
        "version" => return decode_version(payload).map(NetworkMessage::Version),
        "verack" => NetworkMessage::Verack,
        "addr" => NetworkMessage::Addr(decode(r)?),
        "inv" => NetworkMessage::Inv(decode(r)?),
        "getdata" => NetworkMessage::GetData(decode(r)?),
        "notfound" => NetworkMessage::NotFound(decode(r)?),
        "getblocks" => NetworkMessage::GetBlocks(decode(r)?),
        "getheaders" => NetworkMessage::GetHeaders(decode(r)?),
        "mempool" => NetworkMessage::MemPool,
        "block" => NetworkMessage::Block(decode(r)?),
        "headers" => NetworkMessage::Headers(decode_headers(r)?),
        "sendheaders" => NetworkMessage::SendHeaders,
        "getaddr" => NetworkMessage::GetAddr,
        "ping" => NetworkMessage::Ping(decode(r)?),
        "pong" => NetworkMessage::Pong(decode(r)?),
        "merkleblock" => NetworkMessage::MerkleBlock(decode(r)?),
        "filterload" => NetworkMessage::FilterLoad(decode(r)?),
        "filteradd" => NetworkMessage::FilterAdd(decode(r)?),
        "filterclear" => NetworkMessage::FilterClear,
        "tx" => NetworkMessage::Tx(decode(r)?),
        "getcfilters" => NetworkMessage::GetCFilters(decode(r)?),
        "cfilter" => NetworkMessage::CFilter(decode(r)?),
        "getcfheaders" => NetworkMessage::GetCFHeaders(decode(r)?),
        "cfheaders" => NetworkMessage::CFHeaders(decode(r)?),
        "getcfcheckpt" => NetworkMessage::GetCFCheckpt(decode(r)?),
        "cfcheckpt" => NetworkMessage::CFCheckpt(decode(r)?),
        "reject" => NetworkMessage::Reject(decode(r)?),
        "alert" => NetworkMessage::Alert(decode(r)?),
        "feefilter" => {
            let fee: i64 = decode(r)?;
            // rust-bitcoin's range: 0..=MAX_MONEY (Core's MoneyRange).
            if !(0..=21_000_000 * 100_000_000).contains(&fee) {
                return Err(encode::Error::ParseFailed("feefilter value out of range"));
            }
            NetworkMessage::FeeFilter(fee)
        }
        "sendcmpct" => NetworkMessage::SendCmpct(decode(r)?),
        "cmpctblock" => NetworkMessage::CmpctBlock(decode(r)?),
        "getblocktxn" => NetworkMessage::GetBlockTxn(decode(r)?),
        "blocktxn" => NetworkMessage::BlockTxn(decode(r)?),
        "wtxidrelay" => NetworkMessage::WtxidRelay,
        "addrv2" => NetworkMessage::AddrV2(decode(r)?),
        "sendaddrv2" => NetworkMessage::SendAddrV2,
        _ => {
            let command = CommandString::try_from(command.to_string())
                .map_err(|_| encode::Error::ParseFailed("invalid command"))?;
            return Ok(NetworkMessage::Unknown {
                command,
                payload: payload.to_vec(),
            });
        }
    };
    if !r.is_empty() {
        return Err(encode::Error::ParseFailed(
            "extra bytes after network message payload",
        ));
    }
    Ok(message)
}

fn decode<T: Decodable>(r: &mut &[u8]) -> Result<T, encode::Error> {
    T::consensus_decode_from_finite_reader(r)
}

/// `headers`: a count, then each header followed by a zero transaction count.
fn decode_headers(r: &mut &[u8]) -> Result<Vec<block::Header>, encode::Error> {
    let count = VarInt::consensus_decode(r)?.0;
    // 81 bytes per entry: never reserve more than the payload can hold.
    let mut headers = Vec::with_capacity((count as usize).min(r.len() / 81));
    for _ in 0..count {
        headers.push(block::Header::consensus_decode(r)?);
        if u8::consensus_decode(r)? != 0 {
            return Err(encode::Error::ParseFailed(
                "Headers message should not contain transactions",
            ));
        }
    }
    Ok(headers)
}
