//! Per-command byte counters over a fixed list of message types, as Bitcoin Core's
//! `mapSendBytesPerMsgType` / `mapRecvBytesPerMsgType` (net.cpp): one slot per type in
//! `ALL_NET_MESSAGE_TYPES` (protocol.cpp) plus `*other*` for everything else, so a peer sending
//! made-up commands cannot grow them, and counting a frame is one atomic add (no lock, no
//! string allocation).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

/// Counter key for frames of any command not in Core's message-type list and for frames
/// that could not be decoded, as Core's `NET_MESSAGE_TYPE_OTHER`.
pub const OTHER_COMMAND: &str = "*other*";

/// Message types with their own counter: Core's `ALL_NET_MESSAGE_TYPES` plus `reject` and
/// `alert` (still decoded here), then [`OTHER_COMMAND`] last.
pub(crate) const COMMANDS: [&str; 39] = [
    "version",
    "verack",
    "addr",
    "addrv2",
    "sendaddrv2",
    "inv",
    "getdata",
    "merkleblock",
    "getblocks",
    "getheaders",
    "tx",
    "headers",
    "block",
    "getaddr",
    "mempool",
    "ping",
    "pong",
    "notfound",
    "filterload",
    "filteradd",
    "filterclear",
    "sendheaders",
    "feefilter",
    "sendcmpct",
    "cmpctblock",
    "getblocktxn",
    "blocktxn",
    "getcfilters",
    "cfilter",
    "getcfheaders",
    "cfheaders",
    "getcfcheckpt",
    "cfcheckpt",
    "wtxidrelay",
    "sendtxrcncl",
    "feature",
    "reject",
    "alert",
    OTHER_COMMAND,
];

/// Index of `command`'s counter in [`COMMANDS`]; the last index (`*other*`) for any other.
pub(crate) fn command_index(command: &str) -> u8 {
    COMMANDS
        .iter()
        .position(|&c| c == command)
        .unwrap_or(COMMANDS.len() - 1) as u8
}

/// One byte counter per entry of [`COMMANDS`] (312 bytes).
#[derive(Debug)]
pub(crate) struct CommandBytes([AtomicU64; COMMANDS.len()]);

impl CommandBytes {
    pub(crate) fn new() -> CommandBytes {
        CommandBytes(std::array::from_fn(|_| AtomicU64::new(0)))
    }

    /// Adds `bytes` to the counter at `index` (from [`command_index`]; out of range counts as
    /// `*other*`).
    pub(crate) fn add(&self, index: u8, bytes: usize) {
        let slot = (index as usize).min(COMMANDS.len() - 1);
        self.0[slot].fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// The commands seen so far (non-zero counters) and their byte totals.
    pub(crate) fn snapshot(&self) -> BTreeMap<String, u64> {
        COMMANDS
            .iter()
            .zip(&self.0)
            .filter_map(|(name, n)| {
                let n = n.load(Ordering::Relaxed);
                (n > 0).then(|| (name.to_string(), n))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_commands_have_their_own_slot_and_others_share_one() {
        let c = CommandBytes::new();
        c.add(command_index("inv"), 61);
        c.add(command_index("inv"), 61);
        c.add(command_index("version"), 126);
        for made_up in ["bench", "x", "", "inv\0", "INV"] {
            c.add(command_index(made_up), 1);
        }
        let s = c.snapshot();
        assert_eq!(s.len(), 3, "{s:?}");
        assert_eq!(s["inv"], 122);
        assert_eq!(s["version"], 126);
        assert_eq!(s[OTHER_COMMAND], 5);
        assert_eq!(command_index(OTHER_COMMAND) as usize, COMMANDS.len() - 1);
        c.add(200, 7);
        assert_eq!(c.snapshot()[OTHER_COMMAND], 12);
    }

    #[test]
    fn every_listed_command_is_distinct() {
        for (i, name) in COMMANDS.iter().enumerate() {
            assert_eq!(command_index(name) as usize, i, "{name}");
        }
    }
}
