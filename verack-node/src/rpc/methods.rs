//! The RPC methods: declarations (for parameter checks and `help`) and handlers that
//! turn backend data into Bitcoin Core's result shapes (`src/rpc/net.cpp`,
//! `src/rpc/blockchain.cpp`, `src/rpc/server.cpp`, `src/rpc/node.cpp`).

use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bitcoin::block::Header;
use bitcoin::consensus::encode::serialize_hex;
use bitcoin::hashes::Hash as _;
use bitcoin::{BlockHash, Network, Target};
use ipnet::IpNet;
use serde_json::{json, Map, Value};

use super::backend::RpcBackend;
use super::dispatch::{find_command, Arg, ArgType, Command};
use super::types::error_code::{
    RPC_CLIENT_INVALID_IP_OR_SUBNET, RPC_CLIENT_NODE_ALREADY_ADDED, RPC_CLIENT_NODE_NOT_ADDED,
    RPC_CLIENT_NODE_NOT_CONNECTED, RPC_INVALID_ADDRESS_OR_KEY, RPC_INVALID_PARAMETER,
    RPC_INVALID_PARAMS, RPC_MISC_ERROR,
};
use super::types::{
    BanExpiry, ConnectionType, DisconnectTarget, RpcError, RpcHeaderInfo, RpcNetwork, RpcPeer,
    Transport,
};

/// `NODE_P2P_V2`: BIP 324 v2 transport support.
const NODE_P2P_V2: u64 = 1 << 11;

/// Core's `getnettotals.uploadtarget.timeframe` when no `-maxuploadtarget` is set (24 h).
const UPLOAD_TIMEFRAME_SECS: u64 = 24 * 60 * 60;

/// What `stop` answers. Core says "Bitcoin Core stopping".
pub(crate) const STOP_REPLY: &str = "verack stopping";

const fn arg(name: &'static str, ty: ArgType, doc: &'static str) -> Arg {
    Arg {
        name,
        ty,
        required: true,
        default: None,
        hidden: false,
        doc,
    }
}

const fn opt(
    name: &'static str,
    ty: ArgType,
    default: Option<&'static str>,
    doc: &'static str,
) -> Arg {
    Arg {
        name,
        ty,
        required: false,
        default,
        hidden: false,
        doc,
    }
}

/// Every method, in no particular order (`help` sorts by category, then name).
pub(crate) static COMMANDS: &[Command] = &[
    // == Blockchain ==
    Command {
        name: "getbestblockhash",
        category: "blockchain",
        args: &[],
        description: "Returns the hash of the best (tip) block in the most-work fully-validated chain.",
        result: "\"hex\"    (string) the block hash, hex-encoded",
        handler: getbestblockhash,
    },
    Command {
        name: "getblockchaininfo",
        category: "blockchain",
        args: &[],
        description: "Returns an object containing various state info regarding blockchain processing.",
        result: "{ \"chain\", \"blocks\", \"headers\", \"bestblockhash\", \"bits\", \"target\", \"difficulty\", \"time\", \"mediantime\", \"verificationprogress\", \"initialblockdownload\", \"chainwork\", \"size_on_disk\", \"pruned\", \"warnings\" }",
        handler: getblockchaininfo,
    },
    Command {
        name: "getblockcount",
        category: "blockchain",
        args: &[],
        description: "Returns the height of the most-work fully-validated chain.\nThe genesis block has height 0.",
        result: "n    (numeric) The current block count",
        handler: getblockcount,
    },
    Command {
        name: "getblockhash",
        category: "blockchain",
        args: &[arg("height", ArgType::Num, "The height index")],
        description: "Returns hash of block in best-block-chain at height provided.",
        result: "\"hex\"    (string) The block hash",
        handler: getblockhash,
    },
    Command {
        name: "getblockheader",
        category: "blockchain",
        args: &[
            arg("blockhash", ArgType::Str, "The block hash"),
            opt("verbose", ArgType::Bool, Some("true"), "true for a json object, false for the hex-encoded data"),
        ],
        description: "If verbose is false, returns a string that is serialized, hex-encoded data for blockheader 'hash'.\nIf verbose is true, returns an Object with information about blockheader <hash>.",
        result: "for verbose = true: { \"hash\", \"confirmations\", \"height\", \"version\", \"versionHex\", \"merkleroot\", \"time\", \"mediantime\", \"nonce\", \"bits\", \"target\", \"difficulty\", \"chainwork\", \"nTx\", \"previousblockhash\", \"nextblockhash\" }\nfor verbose = false: \"hex\"    (string) A string that is serialized, hex-encoded data for block 'hash'",
        handler: getblockheader,
    },
    Command {
        name: "getchaintips",
        category: "blockchain",
        args: &[],
        description: "Return information about all known tips in the block tree, including the main chain as well as orphaned branches.",
        result: "[ { \"height\", \"hash\", \"branchlen\", \"status\" }, ... ]",
        handler: getchaintips,
    },
    // == Control ==
    Command {
        name: "help",
        category: "control",
        args: &[opt("command", ArgType::Str, Some("all commands"), "The command to get help on")],
        description: "List all commands, or get help for a specified command.",
        result: "\"str\"    (string) The help text",
        handler: help,
    },
    Command {
        name: "stop",
        category: "control",
        args: &[Arg {
            name: "wait",
            ty: ArgType::Num,
            required: false,
            default: None,
            hidden: true,
            doc: "how long to wait in ms",
        }],
        description: "Request a graceful shutdown of verack.",
        result: "\"str\"    (string) A string with the content 'verack stopping'",
        handler: stop,
    },
    Command {
        name: "uptime",
        category: "control",
        args: &[],
        description: "Returns the total uptime of the server.",
        result: "n    (numeric) The number of seconds that the server has been running",
        handler: uptime,
    },
    // == Network ==
    Command {
        name: "addnode",
        category: "network",
        args: &[
            arg("node", ArgType::Str, "The address of the peer to connect to"),
            arg("command", ArgType::Str, "'add' to add a node to the list, 'remove' to remove a node from the list, 'onetry' to try a connection to the node once"),
            opt("v2transport", ArgType::Bool, Some("set by -v2transport"), "Attempt to connect using BIP324 v2 transport protocol (ignored for 'remove' command)"),
        ],
        description: "Attempts to add or remove a node from the addnode list.\nOr try a connection to a node once.\nNodes added using addnode (or -connect) are protected from DoS disconnection and are not required to be\nfull nodes/support SegWit as other outbound peers are (though such peers will not be synced from).",
        result: "null    (json_null)",
        handler: addnode,
    },
    Command {
        name: "clearbanned",
        category: "network",
        args: &[],
        description: "Clear all banned IPs.",
        result: "null    (json_null)",
        handler: clearbanned,
    },
    Command {
        name: "disconnectnode",
        category: "network",
        args: &[
            opt("address", ArgType::Str, Some("fallback to nodeid"), "The IP address/port of the node"),
            opt("nodeid", ArgType::Num, Some("fallback to address"), "The node ID (see getpeerinfo for node IDs)"),
        ],
        description: "Immediately disconnects from the specified peer node.\n\nStrictly one out of 'address' and 'nodeid' can be provided to identify the node.\n\nTo disconnect by nodeid, either set 'address' to the empty string, or call using the named 'nodeid' argument only.",
        result: "null    (json_null)",
        handler: disconnectnode,
    },
    Command {
        name: "getconnectioncount",
        category: "network",
        args: &[],
        description: "Returns the number of connections to other nodes.",
        result: "n    (numeric) The connection count",
        handler: getconnectioncount,
    },
    Command {
        name: "getnettotals",
        category: "network",
        args: &[],
        description: "Returns information about network traffic, including bytes in, bytes out,\nand current system time.",
        result: "{ \"totalbytesrecv\", \"totalbytessent\", \"timemillis\", \"uploadtarget\": { \"timeframe\", \"target\", \"target_reached\", \"serve_historical_blocks\", \"bytes_left_in_cycle\", \"time_left_in_cycle\" } }",
        handler: getnettotals,
    },
    Command {
        name: "getnetworkinfo",
        category: "network",
        args: &[],
        description: "Returns an object containing various state info regarding P2P networking.",
        result: "{ \"version\", \"subversion\", \"protocolversion\", \"localservices\", \"localservicesnames\", \"localrelay\", \"timeoffset\", \"tx_send_rate\", \"inv_buckets\", \"networkactive\", \"connections\", \"connections_in\", \"connections_out\", \"networks\", \"localaddresses\", \"warnings\" }",
        handler: getnetworkinfo,
    },
    Command {
        name: "getnodeaddresses",
        category: "network",
        args: &[
            opt("count", ArgType::Num, Some("1"), "The maximum number of addresses to return. Specify 0 to return all known addresses."),
            opt("network", ArgType::Str, Some("all networks"), "Return only addresses of the specified network. Can be one of: ipv4, ipv6, onion, i2p, cjdns."),
        ],
        description: "Return known addresses, after filtering for quality and recency.\nThese can potentially be used to find new peers in the network.\nThe total number of addresses known to the node may be higher.",
        result: "[ { \"time\", \"services\", \"address\", \"port\", \"network\" }, ... ]",
        handler: getnodeaddresses,
    },
    Command {
        name: "getaddrmaninfo",
        category: "network",
        args: &[],
        description: "Provides information about the node's address manager by returning the number of addresses in the `new` and `tried` tables and their sum for all networks.",
        result: "{ \"ipv4\": { \"new\", \"tried\", \"total\" }, ..., \"all_networks\": { ... } }",
        handler: getaddrmaninfo,
    },
    Command {
        name: "addpeeraddress",
        category: "hidden",
        args: &[
            arg("address", ArgType::Str, "The IP address of the peer"),
            arg("port", ArgType::Num, "The port of the peer"),
            opt("tried", ArgType::Bool, Some("false"), "If true, attempt to add the peer to the tried addresses table"),
        ],
        description: "Add the address of a potential peer to an address manager table. This RPC is for testing only.",
        result: "{ \"success\" }",
        handler: addpeeraddress,
    },
    Command {
        name: "getpeerinfo",
        category: "network",
        args: &[],
        description: "Returns data about each connected network peer as a json array of objects.",
        result: "[ { \"id\", \"addr\", \"addrbind\", \"addrlocal\", \"network\", \"services\", \"servicesnames\", \"relaytxes\", \"lastsend\", \"lastrecv\", \"bytessent\", \"bytesrecv\", \"conntime\", \"timeoffset\", \"pingtime\", \"minping\", \"version\", \"subver\", \"inbound\", \"synced_headers\", \"bytessent_per_msg\", \"bytesrecv_per_msg\", \"connection_type\", \"transport_protocol_type\", \"session_id\", ... }, ... ]",
        handler: getpeerinfo,
    },
    Command {
        name: "listbanned",
        category: "network",
        args: &[],
        description: "List all manually banned IPs/Subnets.",
        result: "[ { \"address\", \"ban_created\", \"banned_until\", \"ban_duration\", \"time_remaining\" }, ... ]",
        handler: listbanned,
    },
    Command {
        name: "setban",
        category: "network",
        args: &[
            arg("subnet", ArgType::Str, "The IP/Subnet (see getpeerinfo for nodes IP) with an optional netmask (default is /32 = single IP)"),
            arg("command", ArgType::Str, "'add' to add an IP/Subnet to the list, 'remove' to remove an IP/Subnet from the list"),
            opt("bantime", ArgType::Num, Some("0"), "time in seconds how long (or until when if [absolute] is set) the IP is banned (0 or empty means using the default time of 24h)"),
            opt("absolute", ArgType::Bool, Some("false"), "If set, the bantime must be an absolute timestamp expressed in UNIX epoch time"),
        ],
        description: "Attempts to add or remove an IP/Subnet from the banned list.",
        result: "null    (json_null)",
        handler: setban,
    },
];

// ---------------------------------------------------------------------------
// Parameter helpers. Types were checked by `Command::check_args`, so a present,
// non-null parameter has its declared JSON type.

fn param(params: &[Value], i: usize) -> Option<&Value> {
    params.get(i).filter(|v| !v.is_null())
}

fn str_param(params: &[Value], i: usize) -> Option<&str> {
    param(params, i).and_then(Value::as_str)
}

fn bool_param(params: &[Value], i: usize) -> Option<bool> {
    param(params, i).and_then(Value::as_bool)
}

/// UniValue's `getInt<T>`: a JSON number that is an integer in `T`'s range, else
/// "JSON integer out of range" (an `RPC_MISC_ERROR`, as Core's `std::runtime_error` becomes).
fn int_param<T: TryFrom<i64>>(value: &Value) -> Result<T, RpcError> {
    value
        .as_i64()
        .and_then(|n| T::try_from(n).ok())
        .ok_or_else(|| RpcError::new(RPC_MISC_ERROR, "JSON integer out of range"))
}

/// Core's `ParseHashV`: 64 hex digits in display (reversed) order.
fn parse_hash(value: &str, name: &str) -> Result<BlockHash, RpcError> {
    if value.len() != 64 {
        return Err(RpcError::new(
            RPC_INVALID_PARAMETER,
            format!(
                "{name} must be of length 64 (not {}, for '{value}')",
                value.len()
            ),
        ));
    }
    value.parse::<BlockHash>().map_err(|_| {
        RpcError::new(
            RPC_INVALID_PARAMETER,
            format!("{name} must be hexadecimal string (not '{value}')"),
        )
    })
}

fn unix_now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
}

fn help_error(name: &str) -> RpcError {
    // Core throws the help text as a std::runtime_error, which becomes RPC_MISC_ERROR.
    let text = find_command(name).map(Command::help).unwrap_or_default();
    RpcError::new(RPC_MISC_ERROR, text)
}

// ---------------------------------------------------------------------------
// Formatting helpers.

/// Core's `getblockchaininfo.chain` names.
fn chain_name(network: Network) -> &'static str {
    network.to_core_arg()
}

/// 32 bytes as 64 lowercase hex digits, in the given order.
fn hex32(bytes: [u8; 32]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Core's `GetDifficulty`: the exact floating-point steps, so results match bit for bit.
pub(crate) fn difficulty(bits: u32) -> f64 {
    let mut shift = (bits >> 24) & 0xff;
    let mantissa = bits & 0x00ff_ffff;
    if mantissa == 0 {
        // Core would divide by zero; no valid header has this.
        return 0.0;
    }
    let mut diff = f64::from(0x0000_ffffu32) / f64::from(mantissa);
    while shift < 29 {
        diff *= 256.0;
        shift += 1;
    }
    while shift > 29 {
        diff /= 256.0;
        shift -= 1;
    }
    diff
}

fn bits_hex(header: &Header) -> String {
    format!("{:08x}", header.bits.to_consensus())
}

fn target_hex(header: &Header) -> String {
    hex32(Target::from_compact(header.bits).to_be_bytes())
}

/// Satoshis to a BTC amount as a JSON number (Core's `ValueFromAmount`).
fn amount(sats: u64) -> Value {
    // u64 → f64 is exact below 2^53, far above any fee rate.
    json!(sats as f64 / 100_000_000.0)
}

/// Core's `serviceFlagToStr` names, `UNKNOWN[2^n]` for the rest.
fn services_names(services: u64) -> Value {
    (0..64)
        .filter(|bit| services & (1u64 << bit) != 0)
        .map(|bit| {
            Value::from(match bit {
                0 => "NETWORK".to_string(),
                2 => "BLOOM".to_string(),
                3 => "WITNESS".to_string(),
                6 => "COMPACT_FILTERS".to_string(),
                10 => "NETWORK_LIMITED".to_string(),
                11 => "P2P_V2".to_string(),
                _ => format!("UNKNOWN[2^{bit}]"),
            })
        })
        .collect()
}

/// Core's `SanitizeString` with `SAFE_CHARS_DEFAULT`, applied to a peer's user agent so a
/// peer cannot inject control characters into our output.
fn sanitize(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_alphanumeric() || " .,;-_/:?@()".contains(*c))
        .collect()
}

/// A float as Core prints it: UniValue writes 16 significant digits
/// (`std::setprecision(16)`), so round to those; serde_json then prints the shortest
/// text for the rounded value, which is Core's digits (e.g. regtest difficulty
/// `4.656542373906925e-10`, not the exact double's `4.6565423739069247e-10`).
///
/// In that general format an integral value below 10^16 has neither a decimal point nor an
/// exponent (`1`, not `1.0`), so a JSON reader sees an integer: `verificationprogress` of a
/// synced node, the difficulty of a minimum-difficulty header. Such values become JSON
/// integers here too.
pub(crate) fn core_float(x: f64) -> Value {
    if !x.is_finite() {
        // JSON has no NaN or infinity; Core's UniValue would print them unparsably.
        return Value::Null;
    }
    let rounded: f64 = format!("{x:.15e}").parse().unwrap_or(x);
    if rounded.fract() == 0.0 && rounded.abs() < 1e16 {
        // Exact: |rounded| < 2^63 and integral.
        return json!(rounded as i64);
    }
    json!(rounded)
}

fn secs_f64(d: Duration) -> Value {
    core_float(d.as_secs_f64())
}

// ---------------------------------------------------------------------------
// Blockchain.

fn getbestblockhash(backend: &dyn RpcBackend, _: &[Value]) -> Result<Value, RpcError> {
    Ok(backend.tip().header.block_hash().to_string().into())
}

fn getblockcount(backend: &dyn RpcBackend, _: &[Value]) -> Result<Value, RpcError> {
    Ok(backend.tip().height.into())
}

fn getblockhash(backend: &dyn RpcBackend, params: &[Value]) -> Result<Value, RpcError> {
    let height: i32 = int_param(&params[0])?;
    let out_of_range = || RpcError::new(RPC_INVALID_PARAMETER, "Block height out of range");
    let height = u32::try_from(height).map_err(|_| out_of_range())?;
    let hash = backend.hash_at(height).ok_or_else(out_of_range)?;
    Ok(hash.to_string().into())
}

fn getblockheader(backend: &dyn RpcBackend, params: &[Value]) -> Result<Value, RpcError> {
    // Core names the value "hash" in this message although the argument is "blockhash".
    let hash = parse_hash(str_param(params, 0).unwrap_or_default(), "hash")?;
    let verbose = bool_param(params, 1).unwrap_or(true);
    let info = backend
        .header_by_hash(&hash)
        .ok_or_else(|| RpcError::new(RPC_INVALID_ADDRESS_OR_KEY, "Block not found"))?;
    if !verbose {
        return Ok(serialize_hex(&info.header).into());
    }
    Ok(header_json(&info))
}

/// Core's `blockheaderToJSON`, field for field and in its order.
fn header_json(info: &RpcHeaderInfo) -> Value {
    let h = &info.header;
    let mut obj = Map::new();
    obj.insert("hash".into(), h.block_hash().to_string().into());
    obj.insert("confirmations".into(), info.confirmations.into());
    obj.insert("height".into(), info.height.into());
    obj.insert("version".into(), h.version.to_consensus().into());
    // "%08x" of a signed int prints its two's complement, as the cast does.
    obj.insert(
        "versionHex".into(),
        format!("{:08x}", h.version.to_consensus() as u32).into(),
    );
    obj.insert("merkleroot".into(), h.merkle_root.to_string().into());
    obj.insert("time".into(), h.time.into());
    obj.insert("mediantime".into(), info.median_time.into());
    obj.insert("nonce".into(), h.nonce.into());
    obj.insert("bits".into(), bits_hex(h).into());
    obj.insert("target".into(), target_hex(h).into());
    obj.insert(
        "difficulty".into(),
        core_float(difficulty(h.bits.to_consensus())),
    );
    obj.insert(
        "chainwork".into(),
        hex32(info.chainwork.to_be_bytes()).into(),
    );
    obj.insert("nTx".into(), info.n_tx.into());
    // Only genesis lacks a predecessor; Core leaves the key out there.
    if info.height > 0 || h.prev_blockhash != BlockHash::all_zeros() {
        obj.insert(
            "previousblockhash".into(),
            h.prev_blockhash.to_string().into(),
        );
    }
    if let Some(next) = info.next_hash {
        obj.insert("nextblockhash".into(), next.to_string().into());
    }
    Value::Object(obj)
}

fn getblockchaininfo(backend: &dyn RpcBackend, _: &[Value]) -> Result<Value, RpcError> {
    let network = backend.network();
    let tip = backend.tip();
    let status = backend.chain_status();
    let h = &tip.header;
    let mut obj = Map::new();
    obj.insert("chain".into(), chain_name(network).into());
    obj.insert("blocks".into(), tip.height.into());
    obj.insert("headers".into(), status.headers.into());
    obj.insert("bestblockhash".into(), h.block_hash().to_string().into());
    obj.insert("bits".into(), bits_hex(h).into());
    obj.insert("target".into(), target_hex(h).into());
    obj.insert(
        "difficulty".into(),
        core_float(difficulty(h.bits.to_consensus())),
    );
    obj.insert("time".into(), h.time.into());
    obj.insert("mediantime".into(), tip.median_time.into());
    obj.insert(
        "verificationprogress".into(),
        core_float(status.verification_progress),
    );
    obj.insert(
        "initialblockdownload".into(),
        status.initial_block_download.into(),
    );
    obj.insert(
        "chainwork".into(),
        hex32(tip.chainwork.to_be_bytes()).into(),
    );
    obj.insert("size_on_disk".into(), status.size_on_disk.into());
    obj.insert("pruned".into(), false.into());
    if network == Network::Signet {
        if let Some(challenge) = &status.signet_challenge {
            let hex: String = challenge.iter().map(|b| format!("{b:02x}")).collect();
            obj.insert("signet_challenge".into(), hex.into());
        }
    }
    obj.insert("warnings".into(), status.warnings.into());
    Ok(Value::Object(obj))
}

fn getchaintips(backend: &dyn RpcBackend, _: &[Value]) -> Result<Value, RpcError> {
    let tips = backend
        .chain_tips()
        .into_iter()
        .map(|t| {
            json!({
                "height": t.height,
                "hash": t.hash.to_string(),
                "branchlen": t.branch_len,
                "status": t.status.as_str(),
            })
        })
        .collect();
    Ok(Value::Array(tips))
}

// ---------------------------------------------------------------------------
// Control.

/// Core's `CRPCTable::help`: with no command, every method's usage line grouped under
/// `== Category ==` headings (sorted by category, then name); with one, its full help;
/// for an unknown one, "help: unknown command: <name>" as the result (not an error).
fn help(_: &dyn RpcBackend, params: &[Value]) -> Result<Value, RpcError> {
    let wanted = str_param(params, 0).unwrap_or("");
    if !wanted.is_empty() {
        return Ok(match find_command(wanted) {
            Some(cmd) => cmd.help().trim_end_matches('\n').to_string(),
            None => format!("help: unknown command: {wanted}"),
        }
        .into());
    }
    // Core's `CRPCTable::help` leaves the "hidden" category (test-only methods such as
    // `addpeeraddress`) out of the list; `help <name>` still answers for them.
    let mut commands: Vec<&Command> = COMMANDS.iter().filter(|c| c.category != "hidden").collect();
    commands.sort_by_key(|c| (c.category, c.name));
    let mut text = String::new();
    let mut category = "";
    for cmd in commands {
        if cmd.category != category {
            if !category.is_empty() {
                text.push('\n');
            }
            category = cmd.category;
            let mut title = category.to_string();
            title[..1].make_ascii_uppercase();
            text.push_str(&format!("== {title} ==\n"));
        }
        text.push_str(&cmd.usage());
        text.push('\n');
    }
    text.pop();
    Ok(text.into())
}

fn stop(backend: &dyn RpcBackend, params: &[Value]) -> Result<Value, RpcError> {
    backend.request_stop();
    // Core's hidden test-only `wait` argument: delay the reply by that many milliseconds.
    if let Some(wait) = param(params, 0) {
        let ms: i32 = int_param(wait)?;
        std::thread::sleep(Duration::from_millis(u64::try_from(ms).unwrap_or(0)));
    }
    Ok(STOP_REPLY.into())
}

fn uptime(backend: &dyn RpcBackend, _: &[Value]) -> Result<Value, RpcError> {
    Ok(backend.uptime().as_secs().into())
}

// ---------------------------------------------------------------------------
// Network.

fn getconnectioncount(backend: &dyn RpcBackend, _: &[Value]) -> Result<Value, RpcError> {
    Ok(backend.connection_count().into())
}

fn getnettotals(backend: &dyn RpcBackend, _: &[Value]) -> Result<Value, RpcError> {
    let totals = backend.net_totals();
    // verack has no upload target: Core's answer when `-maxuploadtarget` is unset.
    Ok(json!({
        "totalbytesrecv": totals.bytes_recv,
        "totalbytessent": totals.bytes_sent,
        "timemillis": u64::try_from(unix_now().as_millis()).unwrap_or(u64::MAX),
        "uploadtarget": {
            "timeframe": UPLOAD_TIMEFRAME_SECS,
            "target": 0,
            "target_reached": false,
            "serve_historical_blocks": true,
            "bytes_left_in_cycle": 0,
            "time_left_in_cycle": 0,
        },
    }))
}

fn getnetworkinfo(backend: &dyn RpcBackend, _: &[Value]) -> Result<Value, RpcError> {
    let info = backend.network_info();
    let services = backend.local_services();
    let peers = backend.peers();
    let inbound = peers
        .iter()
        .filter(|p| p.connection_type == ConnectionType::Inbound)
        .count();
    let networks: Vec<Value> = RpcNetwork::LISTED
        .iter()
        .map(|net| {
            let reachable = info.reachable.contains(net);
            // Core's GetNetworksInfo: the proxy's IP:port, or "" and false without one.
            let proxy = info.proxies.iter().find(|p| p.network == *net);
            json!({
                "name": net.name(),
                "limited": !reachable,
                "reachable": reachable,
                "proxy": proxy.map_or(String::new(), |p| p.proxy.to_string()),
                "proxy_randomize_credentials": proxy.is_some_and(|p| p.randomize_credentials),
            })
        })
        .collect();
    let mut obj = Map::new();
    obj.insert("version".into(), info.version.into());
    obj.insert("subversion".into(), info.subversion.into());
    obj.insert("protocolversion".into(), info.protocol_version.into());
    obj.insert("localservices".into(), format!("{services:016x}").into());
    obj.insert("localservicesnames".into(), services_names(services));
    obj.insert("localrelay".into(), info.local_relay.into());
    obj.insert("timeoffset".into(), info.time_offset.into());
    // Core's transaction-announcement rate limit (`-txsendrate`, token buckets per direction).
    // verack has no mempool and announces no transactions: a zero rate, nothing queued, no
    // tokens.
    obj.insert("tx_send_rate".into(), 0.into());
    let bucket = json!({"backlog": 0, "count_tok": 0, "size_tok": 0});
    obj.insert(
        "inv_buckets".into(),
        json!({"inbound": bucket.clone(), "outbound": bucket}),
    );
    obj.insert("networkactive".into(), info.network_active.into());
    obj.insert("connections".into(), peers.len().into());
    obj.insert("connections_in".into(), inbound.into());
    obj.insert("connections_out".into(), (peers.len() - inbound).into());
    obj.insert("networks".into(), networks.into());
    // Core prints these only when it has a mempool.
    if let Some(fee) = info.relay_fee {
        obj.insert("relayfee".into(), amount(fee));
    }
    if let Some(fee) = info.incremental_fee {
        obj.insert("incrementalfee".into(), amount(fee));
    }
    let local: Vec<Value> = info
        .local_addresses
        .iter()
        .map(|a| json!({"address": a.address.to_string(), "port": a.port, "score": a.score}))
        .collect();
    obj.insert("localaddresses".into(), local.into());
    obj.insert("warnings".into(), info.warnings.into());
    Ok(Value::Object(obj))
}

fn getpeerinfo(backend: &dyn RpcBackend, _: &[Value]) -> Result<Value, RpcError> {
    Ok(backend.peers().iter().map(peer_json).collect())
}

/// One `getpeerinfo` entry in Core's key order. Keys for features verack does not have
/// (transaction relay, compact blocks, block download) carry the values Core
/// shows for a peer that never used them, so scripts reading them keep working.
pub(crate) fn peer_json(p: &RpcPeer) -> Value {
    let mut obj = Map::new();
    obj.insert("id".into(), p.id.into());
    obj.insert("addr".into(), p.addr.clone().into());
    if let Some(bind) = p.addr_bind {
        obj.insert("addrbind".into(), bind.to_string().into());
    }
    // Core's CopyStats: left out unless `CNetAddr::IsValid` (the port is not checked).
    if let Some(local) = p
        .addr_local
        .filter(|a| is_valid_host(a.ip().to_canonical()))
    {
        let local = std::net::SocketAddr::new(local.ip().to_canonical(), local.port());
        obj.insert("addrlocal".into(), local.to_string().into());
    }
    obj.insert("network".into(), p.network.name().into());
    obj.insert("services".into(), format!("{:016x}", p.services).into());
    obj.insert("servicesnames".into(), services_names(p.services));
    obj.insert("relaytxes".into(), p.relay_txes.into());
    obj.insert("last_inv_sequence".into(), 0.into());
    obj.insert("inv_to_send".into(), 0.into());
    obj.insert("lastsend".into(), p.last_send.into());
    obj.insert("lastrecv".into(), p.last_recv.into());
    obj.insert("last_transaction".into(), 0.into());
    obj.insert("last_block".into(), p.last_block.into());
    obj.insert("bytessent".into(), p.bytes_sent.into());
    obj.insert("bytesrecv".into(), p.bytes_recv.into());
    obj.insert("conntime".into(), p.conn_time.into());
    obj.insert("timeoffset".into(), p.time_offset.into());
    if let Some(ping) = p.ping_time {
        obj.insert("pingtime".into(), secs_f64(ping));
    }
    if let Some(ping) = p.min_ping {
        obj.insert("minping".into(), secs_f64(ping));
    }
    if let Some(wait) = p.ping_wait {
        obj.insert("pingwait".into(), secs_f64(wait));
    }
    obj.insert("version".into(), p.version.into());
    obj.insert("subver".into(), sanitize(&p.subver).into());
    obj.insert(
        "inbound".into(),
        (p.connection_type == ConnectionType::Inbound).into(),
    );
    obj.insert("bip152_hb_to".into(), false.into());
    obj.insert("bip152_hb_from".into(), false.into());
    obj.insert("presynced_headers".into(), p.presynced_headers.into());
    obj.insert("synced_headers".into(), p.synced_headers.into());
    obj.insert("synced_blocks".into(), p.synced_blocks.into());
    obj.insert("inflight".into(), Value::Array(Vec::new()));
    obj.insert("addr_relay_enabled".into(), p.addr_relay_enabled.into());
    obj.insert("addr_processed".into(), p.addr_processed.into());
    obj.insert("addr_rate_limited".into(), p.addr_rate_limited.into());
    obj.insert("permissions".into(), p.permissions.clone().into());
    obj.insert("minfeefilter".into(), amount(p.fee_filter));
    let per_msg = |m: &std::collections::BTreeMap<String, u64>| -> Value {
        m.iter()
            .filter(|(_, &n)| n > 0)
            .map(|(k, &n)| (k.clone(), Value::from(n)))
            .collect::<Map<_, _>>()
            .into()
    };
    obj.insert("bytessent_per_msg".into(), per_msg(&p.bytes_sent_per_msg));
    obj.insert("bytesrecv_per_msg".into(), per_msg(&p.bytes_recv_per_msg));
    obj.insert("connection_type".into(), p.connection_type.as_str().into());
    let (kind, session) = match p.transport {
        Transport::Detecting => ("detecting", String::new()),
        Transport::V1 => ("v1", String::new()),
        Transport::V2 { session_id } => ("v2", hex32(session_id)),
    };
    obj.insert("transport_protocol_type".into(), kind.into());
    obj.insert("session_id".into(), session.into());
    Value::Object(obj)
}

fn addnode(backend: &dyn RpcBackend, params: &[Value]) -> Result<Value, RpcError> {
    let command = str_param(params, 1).unwrap_or_default();
    if !matches!(command, "onetry" | "add" | "remove") {
        return Err(help_error("addnode"));
    }
    let node = str_param(params, 0).unwrap_or_default();
    let node_v2 = backend.local_services() & NODE_P2P_V2 != 0;
    let use_v2 = bool_param(params, 2).unwrap_or(node_v2);
    if use_v2 && !node_v2 {
        return Err(RpcError::new(
            RPC_INVALID_PARAMETER,
            "Error: v2transport requested but not enabled (see -v2transport)",
        ));
    }
    match command {
        "onetry" => backend.connect_once(node, use_v2),
        "add" => {
            if !backend.add_node(node, use_v2) {
                return Err(RpcError::new(
                    RPC_CLIENT_NODE_ALREADY_ADDED,
                    "Error: Node already added",
                ));
            }
        }
        _ => {
            if !backend.remove_added_node(node) {
                return Err(RpcError::new(
                    RPC_CLIENT_NODE_NOT_ADDED,
                    "Error: Node could not be removed. It has not been added previously.",
                ));
            }
        }
    }
    Ok(Value::Null)
}

fn disconnectnode(backend: &dyn RpcBackend, params: &[Value]) -> Result<Value, RpcError> {
    let address = param(params, 0);
    let nodeid = param(params, 1);
    // An empty address with a node id selects by id: Core's documented way to give a
    // node id positionally.
    let address_unset = address.is_none_or(|a| a.as_str() == Some(""));
    let found = match (address, nodeid) {
        (Some(addr), None) => backend.disconnect_node(DisconnectTarget::Address(
            addr.as_str().unwrap_or_default().to_string(),
        )),
        (_, Some(id)) if address_unset => {
            let id: i64 = int_param(id)?;
            // Core's node ids are never negative, so such an id matches no peer.
            match u64::try_from(id) {
                Ok(id) => backend.disconnect_node(DisconnectTarget::NodeId(id)),
                Err(_) => false,
            }
        }
        _ => {
            return Err(RpcError::new(
                RPC_INVALID_PARAMS,
                "Only one of address and nodeid should be provided.",
            ))
        }
    };
    if !found {
        return Err(RpcError::new(
            RPC_CLIENT_NODE_NOT_CONNECTED,
            "Node not found in connected nodes",
        ));
    }
    Ok(Value::Null)
}

/// Core's `LookupHost` without name resolution: an IPv4 or IPv6 literal, optionally in
/// brackets; IPv4-mapped IPv6 becomes IPv4, as Core stores it.
fn parse_ip(s: &str) -> Option<IpAddr> {
    let s = s
        .strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
        .unwrap_or(s);
    s.parse::<IpAddr>().ok().map(|ip| ip.to_canonical())
}

/// Core's `CNetAddr::IsValid` for an IP: not unspecified, not the IPv4 broadcast address,
/// not the IPv6 documentation range (RFC 3849).
fn is_valid_host(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => !v4.is_unspecified() && !v4.is_broadcast(),
        IpAddr::V6(v6) => {
            let s = v6.segments();
            let documentation = s[0] == 0x2001 && s[1] == 0x0db8;
            !(v6.is_unspecified() || documentation)
        }
    }
}

/// Core's `LookupSubNet`: `ip/prefixlen` or `ip/netmask` (a contiguous mask of the same
/// family), the host bits cleared as Core's `CSubNet` does.
fn parse_subnet(s: &str) -> Option<IpNet> {
    let (addr, mask) = s.split_once('/')?;
    let ip = parse_ip(addr)?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let prefix = if !mask.is_empty() && mask.bytes().all(|b| b.is_ascii_digit()) {
        mask.parse::<u8>().ok().filter(|p| *p <= max)?
    } else {
        let mask_ip = parse_ip(mask)?;
        if mask_ip.is_ipv4() != ip.is_ipv4() {
            return None;
        }
        let bits: u128 = match mask_ip {
            IpAddr::V4(m) => u128::from(u32::from(m)) << 96,
            IpAddr::V6(m) => u128::from(m),
        };
        // Contiguous: ones followed only by zeros.
        if bits.leading_ones() + bits.trailing_zeros() != 128 {
            return None;
        }
        u8::try_from(bits.leading_ones()).ok()?.min(max)
    };
    IpNet::new(ip, prefix).ok().map(|net| net.trunc())
}

fn setban(backend: &dyn RpcBackend, params: &[Value]) -> Result<Value, RpcError> {
    let command = str_param(params, 1).unwrap_or_default();
    if command != "add" && command != "remove" {
        return Err(help_error("setban"));
    }
    let text = str_param(params, 0).unwrap_or_default();
    let subnet = if text.contains('/') {
        parse_subnet(text)
    } else {
        parse_ip(text)
            .filter(|ip| is_valid_host(*ip))
            .map(IpNet::from)
    };
    let subnet = subnet.ok_or_else(|| {
        RpcError::new(RPC_CLIENT_INVALID_IP_OR_SUBNET, "Error: Invalid IP/Subnet")
    })?;
    if command == "remove" {
        if !backend.unban(&subnet) {
            return Err(RpcError::new(
                RPC_CLIENT_INVALID_IP_OR_SUBNET,
                "Error: Unban failed. Requested address/subnet was not previously manually banned.",
            ));
        }
        return Ok(Value::Null);
    }
    let bantime: i64 = match param(params, 2) {
        Some(v) => int_param(v)?,
        None => 0,
    };
    let absolute = bool_param(params, 3).unwrap_or(false);
    let now = i64::try_from(unix_now().as_secs()).unwrap_or(i64::MAX);
    if absolute && bantime < now {
        return Err(RpcError::new(
            RPC_INVALID_PARAMETER,
            "Error: Absolute timestamp is in the past",
        ));
    }
    // Core's BanMan::Ban: a non-positive time means the default ban, relative to now.
    let expiry = match u64::try_from(bantime) {
        Ok(0) | Err(_) => BanExpiry::Default,
        Ok(t) if absolute => BanExpiry::Until(t),
        Ok(t) => BanExpiry::After(Duration::from_secs(t)),
    };
    if !backend.ban(subnet, expiry) {
        return Err(RpcError::new(
            RPC_CLIENT_NODE_ALREADY_ADDED,
            "Error: IP/Subnet already banned",
        ));
    }
    Ok(Value::Null)
}

fn listbanned(backend: &dyn RpcBackend, _: &[Value]) -> Result<Value, RpcError> {
    let now = i64::try_from(unix_now().as_secs()).unwrap_or(i64::MAX);
    let bans = backend
        .list_banned()
        .into_iter()
        .map(|b| {
            let created = i64::try_from(b.created).unwrap_or(i64::MAX);
            let until = i64::try_from(b.banned_until).unwrap_or(i64::MAX);
            json!({
                "address": b.subnet.to_string(),
                "ban_created": created,
                "banned_until": until,
                "ban_duration": until.saturating_sub(created),
                "time_remaining": until.saturating_sub(now),
            })
        })
        .collect();
    Ok(Value::Array(bans))
}

/// Core's `getnodeaddresses`.
fn getnodeaddresses(backend: &dyn RpcBackend, params: &[Value]) -> Result<Value, RpcError> {
    let count: i64 = match param(params, 0) {
        Some(v) => int_param(v)?,
        None => 1,
    };
    if count < 0 {
        return Err(RpcError::new(
            RPC_INVALID_PARAMETER,
            "Address count out of range",
        ));
    }
    let network = match str_param(params, 1) {
        Some(name) => Some(
            RpcNetwork::LISTED
                .iter()
                .copied()
                .find(|n| n.name() == name)
                .ok_or_else(|| {
                    RpcError::new(
                        RPC_INVALID_PARAMETER,
                        format!("Network not recognized: {name}"),
                    )
                })?,
        ),
        None => None,
    };
    let list = backend
        .node_addresses(count as usize, network)
        .into_iter()
        .map(|a| {
            json!({
                "time": a.time,
                "services": a.services,
                "address": a.address,
                "port": a.port,
                "network": a.network.name(),
            })
        })
        .collect();
    Ok(Value::Array(list))
}

/// Core's `getaddrmaninfo`.
fn getaddrmaninfo(backend: &dyn RpcBackend, _: &[Value]) -> Result<Value, RpcError> {
    let mut obj = Map::new();
    let (mut all_new, mut all_tried) = (0, 0);
    for network in RpcNetwork::LISTED {
        let c = backend.addrman_counts(network);
        all_new += c.new;
        all_tried += c.tried;
        obj.insert(
            network.name().into(),
            json!({"new": c.new, "tried": c.tried, "total": c.new + c.tried}),
        );
    }
    obj.insert(
        "all_networks".into(),
        json!({"new": all_new, "tried": all_tried, "total": all_new + all_tried}),
    );
    Ok(Value::Object(obj))
}

/// Core's `addpeeraddress`.
fn addpeeraddress(backend: &dyn RpcBackend, params: &[Value]) -> Result<Value, RpcError> {
    let address = str_param(params, 0).unwrap_or_default();
    let port: u16 = int_param(&params[1])?;
    let tried = bool_param(params, 2).unwrap_or(false);
    let mut obj = Map::new();
    match address.parse::<std::net::IpAddr>() {
        Ok(ip) => {
            let success = backend.add_peer_address(ip, port, tried);
            obj.insert("success".into(), success.into());
            if !success {
                obj.insert("error".into(), "failed-adding-to-new".into());
            }
        }
        Err(_) => {
            obj.insert("success".into(), false.into());
        }
    }
    Ok(Value::Object(obj))
}

fn clearbanned(backend: &dyn RpcBackend, _: &[Value]) -> Result<Value, RpcError> {
    backend.clear_banned();
    Ok(Value::Null)
}
