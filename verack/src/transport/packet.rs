//! v2 packets after the handshake: length-prefixed, encrypted and authenticated with the
//! `bip324` crate's ciphers (which rekey every 224 packets), carrying message contents.

use bip324::{InboundCipher, OutboundCipher, PacketType};
use bytes::BytesMut;

use super::message::{decode_payload, split_contents};
use super::{MAX_CONTENTS_LEN, PACKET_OVERHEAD};
use crate::wire::{DecodeError, Frame, RawRead, V2Error, WireCommand};

/// Bytes of the encrypted length prefix.
pub const LENGTH_LEN: usize = bip324::NUM_LENGTH_BYTES;
/// Bytes of the header (flags) byte.
const HEADER_BYTE_LEN: usize = bip324::NUM_HEADER_BYTES;
/// Bytes of the Poly1305 tag.
const TAG_LEN: usize = PACKET_OVERHEAD - LENGTH_LEN - HEADER_BYTE_LEN;

/// Decrypts v2 packets from a byte buffer into [`Frame`]s, as the
/// [`V1Codec`](crate::wire::V1Codec) decodes v1 frames.
///
/// The 3-byte length is decrypted (once) as soon as it is buffered and checked against
/// [`MAX_CONTENTS_LEN`] before waiting for the rest; nothing is reserved from it, so a buffer
/// grows only as bytes arrive. Decoy packets are skipped; their bytes are reported by
/// [`take_skipped`](Self::take_skipped).
pub struct PacketDecoder {
    cipher: InboundCipher,
    /// Bytes after the length prefix (header + contents + tag) of the packet still arriving.
    pending: Option<usize>,
    skipped: usize,
}

impl PacketDecoder {
    /// A decoder with the inbound half of an established session.
    pub fn new(cipher: InboundCipher) -> PacketDecoder {
        PacketDecoder {
            cipher,
            pending: None,
            skipped: 0,
        }
    }

    /// Decodes the next genuine packet from `src`, if complete.
    ///
    /// For a frame, `wire_len` is the whole packet (length, header, contents, tag) and `raw`
    /// the decrypted contents (message type + payload).
    ///
    /// # Errors
    /// [`V2Error::PacketTooLarge`] and [`V2Error::Decryption`] (fatal: the stream cannot be
    /// resynchronised), and the errors of [`decode_contents`](super::decode_contents) (after
    /// which the packet has been consumed and the next one can be decoded unless the error is
    /// fatal).
    pub fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, DecodeError> {
        self.decode_raw(src)?.map(RawRead::into_frame).transpose()
    }

    /// As [`decode`](Self::decode), but a genuine packet whose message type or payload is bad
    /// comes back as a [`RawRead`] with the error inside (command empty when the type could
    /// not be read); `Err` is only for fatal errors.
    pub(crate) fn decode_raw(
        &mut self,
        src: &mut BytesMut,
    ) -> Result<Option<RawRead>, DecodeError> {
        loop {
            let rest = match self.pending {
                Some(rest) => rest,
                None => {
                    let Some(len) = src.get(..LENGTH_LEN) else {
                        return Ok(None);
                    };
                    let rest = self
                        .cipher
                        .decrypt_packet_len(len.try_into().expect("3 bytes"));
                    let contents = rest - HEADER_BYTE_LEN - TAG_LEN;
                    if contents > MAX_CONTENTS_LEN {
                        return Err(V2Error::PacketTooLarge {
                            len: contents,
                            max: MAX_CONTENTS_LEN,
                        }
                        .into());
                    }
                    self.pending = Some(rest);
                    rest
                }
            };
            let total = LENGTH_LEN + rest;
            if src.len() < total {
                return Ok(None);
            }
            self.pending = None;
            let mut packet = src.split_to(total);
            let packet_type = self
                .cipher
                .decrypt_in_place(&mut packet[LENGTH_LEN..], None)
                .map_err(|_| V2Error::Decryption)?
                .0;
            if packet_type == PacketType::Decoy {
                self.skipped += total;
                continue;
            }
            let raw = packet
                .freeze()
                .slice(LENGTH_LEN + HEADER_BYTE_LEN..total - TAG_LEN);
            let (command, payload_start, result) = match split_contents(&raw) {
                Ok((command, start)) => {
                    let result = decode_payload(command.as_str(), &raw[start..]);
                    if let Err(e) = &result {
                        if e.is_fatal() {
                            return Err(result.unwrap_err());
                        }
                    }
                    (command, start, result)
                }
                Err(e) => (WireCommand::default(), 0, Err(e)),
            };
            return Ok(Some(RawRead {
                command,
                raw,
                payload_start,
                checksum: None,
                wire_len: total,
                result,
            }));
        }
    }

    /// Bytes of decoy packets consumed since the last call (they carry no message but were on
    /// the wire).
    pub fn take_skipped(&mut self) -> usize {
        std::mem::take(&mut self.skipped)
    }
}

impl std::fmt::Debug for PacketDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PacketDecoder")
            .field("pending", &self.pending)
            .finish_non_exhaustive()
    }
}

/// Encrypts packet contents into v2 packets.
pub struct PacketEncoder {
    cipher: OutboundCipher,
}

impl PacketEncoder {
    /// An encoder with the outbound half of an established session.
    pub fn new(cipher: OutboundCipher) -> PacketEncoder {
        PacketEncoder { cipher }
    }

    /// Appends the packet carrying `contents` (a decoy if `decoy`) to `dst`; returns its
    /// length, `contents.len() + `[`PACKET_OVERHEAD`].
    ///
    /// # Panics
    /// If `contents` is 2^24 bytes or longer (the 3-byte length field); messages are at most
    /// [`MAX_CONTENTS_LEN`] bytes.
    pub fn encode_into(&mut self, contents: &[u8], decoy: bool, dst: &mut BytesMut) -> usize {
        assert!(contents.len() < 1 << 24, "v2 contents too long");
        let start = dst.len();
        let len = OutboundCipher::encryption_buffer_len(contents.len());
        dst.resize(start + len, 0);
        let packet_type = if decoy {
            PacketType::Decoy
        } else {
            PacketType::Genuine
        };
        self.cipher
            .encrypt(contents, &mut dst[start..], packet_type, None)
            .expect("buffer sized by encryption_buffer_len");
        len
    }
}

impl std::fmt::Debug for PacketEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PacketEncoder").finish_non_exhaustive()
    }
}
