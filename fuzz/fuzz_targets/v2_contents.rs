//! Feeds arbitrary bytes to the BIP324 message layer (`decode_contents`, the decrypted
//! contents of a v2 packet: a 1-byte short id or a 13-byte message type, then the payload). It
//! must return an error or a message, never panic or allocate from an unchecked length; a
//! decoded message must re-encode and decode to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use verack::transport::{decode_contents, encode_contents};

fuzz_target!(|data: &[u8]| {
    if let Ok(message) = decode_contents(data) {
        let again = encode_contents(&message).expect("a decoded message re-encodes");
        let back = decode_contents(&again).expect("own output decodes");
        assert_eq!(back, message, "round trip");
    }
});
