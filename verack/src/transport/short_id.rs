//! BIP324 short message type ids.

/// The message types with a 1-byte id, in BIP324's table order: the id of `V2_MESSAGE_IDS[i]`
/// is `i + 1` (`addr` = 1 … `addrv2` = 28). Id 0 means a 12-byte ASCII message type follows;
/// ids 29–255 are unassigned (Bitcoin Core reserves 29–32, once proposed for BIP330, as
/// unassigned too) except 37, BIP434's `feature`.
pub const V2_MESSAGE_IDS: [&str; 28] = [
    "addr",
    "block",
    "blocktxn",
    "cmpctblock",
    "feefilter",
    "filteradd",
    "filterclear",
    "filterload",
    "getblocks",
    "getblocktxn",
    "getdata",
    "getheaders",
    "headers",
    "inv",
    "mempool",
    "merkleblock",
    "notfound",
    "ping",
    "pong",
    "sendcmpct",
    "tx",
    "getcfilters",
    "cfilter",
    "getcfheaders",
    "cfheaders",
    "getcfcheckpt",
    "cfcheckpt",
    "addrv2",
];

/// The 1-byte id of BIP434 `feature`: 37 (BIP434: a node implementing it and BIP324 "MUST
/// treat a message with a 1-byte `message_type` equal to 37 … as the `feature` message"; Core's
/// `V2_MESSAGE_IDS` maps it both ways).
const FEATURE_SHORT_ID: u8 = 37;

/// The 1-byte id of `command`, if BIP324 (or BIP434, for `feature`) assigns one.
pub fn short_id(command: &str) -> Option<u8> {
    if command == "feature" {
        return Some(FEATURE_SHORT_ID);
    }
    V2_MESSAGE_IDS
        .iter()
        .position(|&c| c == command)
        .map(|i| i as u8 + 1)
}

/// The command a 1-byte id stands for; `None` for 0 (long form) and unassigned ids.
pub fn command_for_id(id: u8) -> Option<&'static str> {
    if id == FEATURE_SHORT_ID {
        return Some("feature");
    }
    V2_MESSAGE_IDS.get(usize::from(id).checked_sub(1)?).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip() {
        for (i, command) in V2_MESSAGE_IDS.iter().enumerate() {
            assert_eq!(short_id(command), Some(i as u8 + 1));
            assert_eq!(command_for_id(i as u8 + 1), Some(*command));
        }
        assert_eq!(command_for_id(0), None);
        assert_eq!(command_for_id(29), None);
        assert_eq!(command_for_id(37), Some("feature"));
        assert_eq!(short_id("feature"), Some(37));
        assert_eq!(command_for_id(255), None);
        assert_eq!(short_id("version"), None);
        assert_eq!(short_id("verack"), None);
    }
}
