//! Feeds arbitrary bytes to `AddrMan::from_bytes`: it must return an error or a manager that
//! passes its own consistency check and re-encodes to the same bytes, never panic.
//!
//! The bytes are tried twice: as given (almost always stopped by the checksum), and with a
//! valid checksum appended, so that the parser behind the checksum is exercised too.
#![no_main]

use bitcoin::hashes::{sha256d, Hash};
use libfuzzer_sys::fuzz_target;
use verack::addrman::{AddrMan, AddrManConfig, MAGIC};

fn try_load(bytes: &[u8], allow_local: bool) {
    let config = AddrManConfig { allow_local };
    if let Ok(man) = AddrMan::from_bytes(bytes, config, 0) {
        man.check().expect("a loaded manager is consistent");
        let again = man.to_bytes();
        let back = AddrMan::from_bytes(&again, config, 0).expect("own output loads");
        assert_eq!(back.to_bytes(), again, "re-encoding is stable");
    }
}

fuzz_target!(|data: &[u8]| {
    let allow_local = data.first().is_some_and(|b| b & 1 == 1);
    try_load(data, allow_local);

    // Magic, version 1, lowest compatible 1, then the fuzz input, then a valid checksum.
    let mut forged = Vec::with_capacity(data.len() + 42);
    forged.extend_from_slice(&MAGIC);
    forged.extend_from_slice(&[1, 1]);
    forged.extend_from_slice(data.get(1..).unwrap_or_default());
    let checksum = sha256d::Hash::hash(&forged).to_byte_array();
    forged.extend_from_slice(&checksum);
    try_load(&forged, allow_local);
});
