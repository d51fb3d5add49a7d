//! v2 packet contents ↔ [`NetworkMessage`]: a message type (1-byte id, or 0 and a 12-byte
//! ASCII command) followed by the payload, as BIP324's application layer specifies.

use bitcoin::consensus::encode::Encodable;
use bitcoin::io::FromStd;
use bitcoin::p2p::message::NetworkMessage;
use bytes::{BufMut, Bytes, BytesMut};

use super::short_id::{command_for_id, short_id};
use crate::wire::{
    decode_message, parse_command, DecodeError, OversizeMessage, V2Error, WireCommand,
    MAX_PAYLOAD_LEN,
};

/// Length of the long message type: a 0 byte then 12 bytes of NUL-padded ASCII.
pub const LONG_MESSAGE_TYPE_LEN: usize = 13;

/// Encodes `msg` as v2 packet contents (message type + payload).
///
/// # Errors
/// [`OversizeMessage`] when the payload would exceed [`MAX_PAYLOAD_LEN`] bytes.
pub fn encode_contents(msg: &NetworkMessage) -> Result<Bytes, OversizeMessage> {
    let mut buf =
        BytesMut::with_capacity(LONG_MESSAGE_TYPE_LEN + crate::wire::payload_size_hint(msg));
    encode_contents_into(msg, &mut buf)?;
    Ok(buf.freeze())
}

/// Appends the v2 contents of `msg` to `dst` (nothing is appended on error).
///
/// # Errors
/// [`OversizeMessage`] when the payload would exceed [`MAX_PAYLOAD_LEN`] bytes.
pub fn encode_contents_into(
    msg: &NetworkMessage,
    dst: &mut BytesMut,
) -> Result<(), OversizeMessage> {
    let start = dst.len();
    let command = msg.command();
    put_message_type(command.as_ref(), dst);
    let payload_start = dst.len();
    let mut writer = FromStd::new(dst.writer());
    msg.consensus_encode(&mut writer)
        .expect("writing to memory cannot fail");
    let payload_len = dst.len() - payload_start;
    if payload_len > MAX_PAYLOAD_LEN {
        dst.truncate(start);
        return Err(OversizeMessage {
            command: command.to_string(),
            len: payload_len,
        });
    }
    Ok(())
}

/// Appends the v2 message type of `command`: its 1-byte short id, or 0 and the 12-byte
/// NUL-padded command.
pub(crate) fn put_message_type(command: &str, dst: &mut BytesMut) {
    match short_id(command) {
        Some(id) => dst.put_u8(id),
        None => {
            let mut long = [0u8; LONG_MESSAGE_TYPE_LEN];
            let name = command.as_bytes();
            let n = name.len().min(12);
            long[1..1 + n].copy_from_slice(&name[..n]);
            dst.put_slice(&long);
        }
    }
}

/// Decodes v2 packet contents (message type + payload) into a message.
///
/// A 1-byte id and the equivalent 13-byte form decode to the same message (BIP324: the short
/// ids are aliases).
///
/// # Errors
/// - [`V2Error::UnknownShortId`] / [`V2Error::BadMessageType`] (not fatal): no message type.
/// - [`DecodeError::Oversize`]: a payload above [`MAX_PAYLOAD_LEN`].
/// - [`DecodeError::Undecodable`] (not fatal): a known message whose payload does not decode.
pub fn decode_contents(contents: &[u8]) -> Result<NetworkMessage, DecodeError> {
    let (command, start) = split_contents(contents)?;
    decode_payload(command.as_str(), &contents[start..])
}

/// The message type of v2 contents and where its payload starts.
///
/// # Errors
/// [`V2Error::UnknownShortId`] / [`V2Error::BadMessageType`] (not fatal).
pub(crate) fn split_contents(contents: &[u8]) -> Result<(WireCommand, usize), DecodeError> {
    match contents.first() {
        None => Err(V2Error::BadMessageType { raw: Vec::new() }.into()),
        Some(0) => {
            let Some(raw) = contents.get(1..LONG_MESSAGE_TYPE_LEN) else {
                return Err(V2Error::BadMessageType {
                    raw: contents.to_vec(),
                }
                .into());
            };
            let command = parse_command(raw).ok_or_else(|| V2Error::BadMessageType {
                raw: contents[..LONG_MESSAGE_TYPE_LEN].to_vec(),
            })?;
            Ok((WireCommand::new(&command), LONG_MESSAGE_TYPE_LEN))
        }
        Some(&id) => {
            let command = command_for_id(id).ok_or(V2Error::UnknownShortId { id })?;
            Ok((WireCommand::new(command), 1))
        }
    }
}

/// Decodes the payload of a `command` message from v2 contents.
///
/// # Errors
/// [`DecodeError::Oversize`] (fatal) and [`DecodeError::Undecodable`] (not fatal).
pub(crate) fn decode_payload(command: &str, payload: &[u8]) -> Result<NetworkMessage, DecodeError> {
    if payload.len() > MAX_PAYLOAD_LEN {
        return Err(DecodeError::Oversize {
            command: command.to_string(),
            len: payload.len(),
            max: MAX_PAYLOAD_LEN,
        });
    }
    decode_message(command, payload).map_err(|e| DecodeError::Undecodable {
        command: command.to_string(),
        len: payload.len(),
        reason: e.to_string(),
    })
}
