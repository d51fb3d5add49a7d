//! Command line and config file, merged into [`Settings`]: flags win over `verack.toml` in the
//! data directory, which wins over defaults.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use bitcoin::Network;
use clap::Parser;
use ipnet::IpNet;
use serde::Deserialize;
use toml::Spanned;
use verack::address::Net;
use verack::server::PeerTarget;

/// The config file's name inside the data directory.
pub const CONFIG_FILE: &str = "verack.toml";

/// `verack`: a Bitcoin node that keeps a healthy peer set and syncs and serves block headers.
#[derive(Debug, Parser, Default)]
#[command(name = "verack", version, about, long_about = None)]
pub struct Args {
    /// Network: mainnet, testnet4, signet, regtest (or testnet3). Default mainnet.
    #[arg(long, value_parser = parse_network)]
    pub network: Option<Network>,
    /// Data directory. Default ~/.verack (Linux), ~/Library/Application Support/Verack (macOS),
    /// %APPDATA%\Verack (Windows). Non-mainnet data goes in a subfolder named after the network.
    #[arg(long)]
    pub datadir: Option<PathBuf>,
    /// Connect only to this peer (repeatable); reconnects forever; disables DNS seeds.
    /// HOST[:PORT], IP[:PORT] or [IPv6][:PORT]; the network's port by default; host names are
    /// looked up at each connection.
    #[arg(long, value_name = "ADDR")]
    pub connect: Vec<String>,
    /// Keep a persistent connection to this peer too (repeatable; same forms as --connect).
    #[arg(long, value_name = "ADDR")]
    pub addnode: Vec<String>,
    /// Dial this --connect/--addnode peer over v1 only, not BIP324 v2 first (repeatable; for
    /// v1-only nodes that ban a v2 key, such as bcoin). As `addnode ADDR add false`. Written
    /// as the peer was given (a host name covers the addresses it resolves to).
    #[arg(long, value_name = "ADDR")]
    pub v1_only: Vec<String>,
    /// Listen address: IP[:PORT] or [IPv6][:PORT] (the network's port by default); 0 or false
    /// to not listen. Default 0.0.0.0 on the network's port.
    #[arg(long, value_name = "ADDR|0")]
    pub listen: Option<String>,
    /// Maximum inbound peers. Default 114.
    #[arg(long, value_name = "N")]
    pub max_inbound: Option<usize>,
    /// Trusted network (repeatable): never banned or evicted, bypasses limits.
    #[arg(long, value_name = "CIDR")]
    pub whitelist: Vec<IpNet>,
    /// Misbehaviour ban duration in seconds. Default 86400.
    #[arg(long, value_name = "SECONDS")]
    pub ban_duration: Option<u64>,
    /// Log level or filter (error, warn, info, debug, trace, or a tracing filter). Default info.
    #[arg(long, value_name = "LEVEL")]
    pub log_level: Option<String>,
    /// RPC bind address. Default 127.0.0.1.
    #[arg(long, value_name = "IP")]
    pub rpc_bind: Option<IpAddr>,
    /// RPC port. Default per network (see the README).
    #[arg(long, value_name = "PORT")]
    pub rpc_port: Option<u16>,
    /// RPC user (with --rpc-password); default is cookie authentication.
    #[arg(long)]
    pub rpc_user: Option<String>,
    /// RPC password.
    #[arg(long)]
    pub rpc_password: Option<String>,
    /// Serve Prometheus metrics on this address. Default off.
    #[arg(long, value_name = "ADDR")]
    pub metrics_bind: Option<SocketAddr>,
    /// Use BIP324 v2 encrypted transport when peers support it (and accept it inbound).
    /// Default true.
    #[arg(long, value_name = "BOOL")]
    pub v2transport: Option<bool>,
    /// Chain work (hex) below which the chain is not treated as synced. Default: Core's
    /// `nMinimumChainWork` for the network (0 on regtest).
    #[arg(long, value_name = "HEX")]
    pub min_chain_work: Option<String>,
    /// Dial every outbound peer through this SOCKS5 proxy (IP[:PORT] or HOST[:PORT], port
    /// 9050 by default; 0 for none), as Core's -proxy. With it, DNS seeds are asked by name
    /// through the proxy (never looked up locally) and the node does not listen unless
    /// --listen is given.
    #[arg(long, value_name = "ADDR|0")]
    pub proxy: Option<String>,
    /// A separate SOCKS5 proxy for Tor onion peers (default: --proxy); 0 to reach none, as
    /// Core's -onion.
    #[arg(long, value_name = "ADDR|0")]
    pub onion: Option<String>,
    /// Make automatic outbound connections only to this network (repeatable): ipv4, ipv6,
    /// onion, i2p, cjdns. Manual peers and inbound connections are not affected (as Core).
    #[arg(long, value_name = "NET")]
    pub onlynet: Vec<Net>,
    /// Random proxy credentials per connection, so Tor isolates every peer on its own
    /// circuit (Core's -proxyrandomize). Default true.
    #[arg(long, value_name = "BOOL")]
    pub proxyrandomize: Option<bool>,
    /// A custom signet's block challenge, a script in hex (with --network signet), as Core's
    /// -signetchallenge: the network magic is derived from it (BIP325), the minimum chain
    /// work is 0 and the default signet's DNS and fixed seeds are not used.
    #[arg(long, value_name = "HEX")]
    pub signetchallenge: Option<String>,
}

/// The config file: the same settings as the flags, kebab-case keys.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FileConfig {
    network: Option<Spanned<String>>,
    connect: Option<Vec<Spanned<String>>>,
    addnode: Option<Vec<Spanned<String>>>,
    v1_only: Option<Vec<Spanned<String>>>,
    listen: Option<Spanned<ListenValue>>,
    max_inbound: Option<usize>,
    whitelist: Option<Vec<IpNet>>,
    ban_duration: Option<u64>,
    log_level: Option<String>,
    rpc_bind: Option<IpAddr>,
    rpc_port: Option<u16>,
    rpc_user: Option<String>,
    rpc_password: Option<String>,
    metrics_bind: Option<SocketAddr>,
    min_chain_work: Option<Spanned<String>>,
    v2transport: Option<bool>,
    proxy: Option<Spanned<String>>,
    onion: Option<Spanned<String>>,
    onlynet: Option<Vec<Spanned<String>>>,
    proxyrandomize: Option<bool>,
    signetchallenge: Option<Spanned<String>>,
    /// Where it was read from and its text, to place errors in values found later.
    #[serde(skip)]
    source: Option<(PathBuf, String)>,
}

/// The config file's `listen`: an address string, `0`/`1` or `false`/`true`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ListenValue {
    Text(String),
    Int(i64),
    Bool(bool),
}

impl<'de> Deserialize<'de> for ListenValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<ListenValue, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = ListenValue;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an address string such as \"127.0.0.1:8333\", 0/false or 1/true")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ListenValue, E> {
                Ok(ListenValue::Text(v.to_owned()))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<ListenValue, E> {
                Ok(ListenValue::Int(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<ListenValue, E> {
                Ok(ListenValue::Int(i64::try_from(v).unwrap_or(i64::MAX)))
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<ListenValue, E> {
                Ok(ListenValue::Bool(v))
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// Everything the node runs with.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The network.
    pub network: Network,
    /// The data directory given or defaulted (config file location).
    pub datadir: PathBuf,
    /// Where this network's files go: `datadir` on mainnet, `datadir/<network>` otherwise.
    pub network_dir: PathBuf,
    /// `--connect` peers (connect-only when non-empty): addresses, or host names looked up at
    /// each connection.
    pub connect: Vec<PeerTarget>,
    /// `--addnode` peers, as `connect`.
    pub addnode: Vec<PeerTarget>,
    /// `--v1-only` peers: manual peers dialled over v1 only.
    pub v1_only: Vec<PeerTarget>,
    /// Listen address, `None` when not listening.
    pub listen: Option<SocketAddr>,
    /// Max inbound peers.
    pub max_inbound: usize,
    /// Trusted networks.
    pub whitelist: Vec<IpNet>,
    /// Ban duration.
    pub ban_duration: Duration,
    /// Log filter.
    pub log_level: String,
    /// RPC listen address.
    pub rpc: SocketAddr,
    /// RPC user and password, if not using the cookie.
    pub rpc_credentials: Option<(String, String)>,
    /// Metrics listen address.
    pub metrics: Option<SocketAddr>,
    /// Minimum chain work override.
    pub min_chain_work: Option<bitcoin::Work>,
    /// BIP324 v2 transport enabled.
    pub v2transport: bool,
    /// The SOCKS5 proxy every outbound connection goes through (`--proxy`).
    pub proxy: Option<SocketAddr>,
    /// The SOCKS5 proxy for Tor onion peers (`--onion`, else `--proxy`); `None` when onion
    /// peers cannot be reached.
    pub onion: Option<SocketAddr>,
    /// Networks automatic outbound connections may use (`--onlynet`); empty for all.
    pub onlynet: Vec<Net>,
    /// Random proxy credentials per connection (`--proxyrandomize`, default true).
    pub proxy_randomize: bool,
    /// A custom signet's challenge script (`--signetchallenge`, raw bytes); only with
    /// `network` signet.
    pub signet_challenge: Option<Vec<u8>>,
}

/// A settings error, printed as one line.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// The config file exists but cannot be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The config file is not valid TOML or has unknown keys (the message has line and column).
    #[error("config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message, made single-line.
        message: String,
    },
    /// A flag's value is invalid.
    #[error("invalid {flag} '{value}': {reason}")]
    Flag {
        /// The flag, e.g. `--connect`.
        flag: &'static str,
        /// The value given.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A config file value is invalid (read as TOML, but not a valid setting).
    #[error("config file {path}: line {line}, column {column}: invalid {key} {value}: {reason}")]
    FileValue {
        /// The file.
        path: PathBuf,
        /// 1-based line of the value.
        line: usize,
        /// 1-based column of the value.
        column: usize,
        /// The key, e.g. `connect`.
        key: &'static str,
        /// The value as written in the file (strings with their quotes).
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The data directory (or the network's folder in it) is a file, or lies under one.
    #[error("data directory {datadir} is not a directory: {file} is a file")]
    NotADirectory {
        /// The directory the node was to use.
        datadir: PathBuf,
        /// The file in its place: the directory itself or one of its parents.
        file: PathBuf,
    },
    /// A value is invalid.
    #[error("{0}")]
    Invalid(String),
    /// No data directory could be determined.
    #[error("no home directory: pass --datadir")]
    NoDatadir,
}

/// Parses a network name as the flag and the config file accept it.
pub fn parse_network(s: &str) -> Result<Network, String> {
    match s {
        "mainnet" | "main" | "bitcoin" => Ok(Network::Bitcoin),
        "testnet4" => Ok(Network::Testnet4),
        "testnet" | "testnet3" => Ok(Network::Testnet),
        "signet" => Ok(Network::Signet),
        "regtest" => Ok(Network::Regtest),
        other => Err(format!(
            "unknown network '{other}' (mainnet, testnet4, testnet3, signet, regtest)"
        )),
    }
}

/// Core's folder name for a network's files (`None` for mainnet, which uses the root).
pub fn network_folder(network: Network) -> Option<&'static str> {
    match network {
        Network::Bitcoin => None,
        Network::Testnet => Some("testnet3"),
        Network::Testnet4 => Some("testnet4"),
        Network::Signet => Some("signet"),
        _ => Some("regtest"),
    }
}

/// The default P2P port of a network (Core's `nDefaultPort`; see
/// [`verack::server::default_p2p_port`]).
pub fn default_p2p_port(network: Network) -> u16 {
    verack::server::default_p2p_port(network)
}

fn default_datadir() -> Option<PathBuf> {
    if cfg!(target_os = "linux") {
        dirs::home_dir().map(|h| h.join(".verack"))
    } else {
        dirs::data_dir().map(|d| d.join("Verack"))
    }
}

/// Reads `<datadir>/verack.toml` if present.
///
/// # Errors
/// [`SettingsError::NotADirectory`] when `datadir` is a file or lies under one;
/// [`SettingsError::Read`] or [`SettingsError::Parse`] (with line and column).
pub fn read_file(datadir: &Path) -> Result<FileConfig, SettingsError> {
    check_directory(datadir)?;
    let path = datadir.join(CONFIG_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(FileConfig::default()),
        Err(source) => return Err(SettingsError::Read { path, source }),
    };
    let mut file: FileConfig = toml::from_str(&text).map_err(|e| {
        let position = e
            .span()
            .map(|span| {
                let (line, column) = line_column(&text, span.start);
                format!("line {line}, column {column}: ")
            })
            .unwrap_or_default();
        SettingsError::Parse {
            path: path.clone(),
            message: format!("{position}{}", e.message()),
        }
    })?;
    file.source = Some((path, text));
    Ok(file)
}

/// 1-based line and column (in bytes) of byte `offset` in `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, column)
}

/// Fails with [`SettingsError::NotADirectory`] if `dir`, or the nearest of its parents that
/// exists, is not a directory (it could then never be created). Other problems (permissions)
/// are left to the reads and writes that meet them, which name the file.
fn check_directory(dir: &Path) -> Result<(), SettingsError> {
    for ancestor in dir.ancestors().filter(|a| !a.as_os_str().is_empty()) {
        match std::fs::metadata(ancestor) {
            Ok(meta) if meta.is_dir() => return Ok(()),
            Ok(_) => {
                return Err(SettingsError::NotADirectory {
                    datadir: dir.to_path_buf(),
                    file: ancestor.to_path_buf(),
                })
            }
            // A missing part, or one under a file (ENOTDIR): look further up.
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
                ) =>
            {
                continue
            }
            Err(_) => return Ok(()),
        }
    }
    Ok(())
}

impl FileConfig {
    /// A [`SettingsError::FileValue`] for the value of `key` at `span` in the file.
    fn invalid(
        &self,
        key: &'static str,
        span: std::ops::Range<usize>,
        reason: impl std::fmt::Display,
    ) -> SettingsError {
        let (path, text) = self.source.clone().unwrap_or_default();
        let (line, column) = line_column(&text, span.start);
        SettingsError::FileValue {
            path,
            line,
            column,
            key,
            value: text.get(span).unwrap_or_default().to_string(),
            reason: reason.to_string(),
        }
    }

    /// The file's peers under `key`, parsed with `default_port`.
    fn peers(
        &self,
        key: &'static str,
        values: Option<&Vec<Spanned<String>>>,
        default_port: u16,
    ) -> Result<Vec<PeerTarget>, SettingsError> {
        values
            .into_iter()
            .flatten()
            .map(|v| {
                PeerTarget::parse(v.get_ref(), default_port)
                    .map_err(|e| self.invalid(key, v.span(), e))
            })
            .collect()
    }
}

/// Manual peers from `flag`'s values if any were given, else from the config file's `key`.
fn peers(
    flag: &'static str,
    given: &[String],
    file: &FileConfig,
    key: &'static str,
    values: Option<&Vec<Spanned<String>>>,
    default_port: u16,
) -> Result<Vec<PeerTarget>, SettingsError> {
    if given.is_empty() {
        return file.peers(key, values, default_port);
    }
    given
        .iter()
        .map(|text| {
            PeerTarget::parse(text, default_port).map_err(|e| SettingsError::Flag {
                flag,
                value: text.clone(),
                reason: e.to_string(),
            })
        })
        .collect()
}

/// Merges flags over the file over defaults.
///
/// # Errors
/// Any [`SettingsError`].
pub fn resolve(args: Args) -> Result<Settings, SettingsError> {
    let datadir = match args.datadir.clone() {
        Some(d) => d,
        None => default_datadir().ok_or(SettingsError::NoDatadir)?,
    };
    let file = read_file(&datadir)?;
    let network = match (args.network, &file.network) {
        (Some(n), _) => n,
        (None, Some(name)) => parse_network(name.get_ref()).map_err(|_| {
            file.invalid(
                "network",
                name.span(),
                "expected mainnet, testnet4, testnet3, signet or regtest",
            )
        })?,
        (None, None) => Network::Bitcoin,
    };
    let network_dir = match network_folder(network) {
        Some(folder) => datadir.join(folder),
        None => datadir.clone(),
    };
    check_directory(&network_dir)?;
    let listen = match (&args.listen, &file.listen) {
        (Some(text), _) => parse_listen(text, network).map_err(|reason| SettingsError::Flag {
            flag: "--listen",
            value: text.clone(),
            reason,
        })?,
        (None, Some(value)) => file_listen(value.get_ref(), network)
            .map_err(|reason| file.invalid("listen", value.span(), reason))?,
        (None, None) => Some(default_listen(network)),
    };
    let proxy = proxy_setting(
        "--proxy",
        args.proxy.as_deref(),
        &file,
        "proxy",
        &file.proxy,
    )?;
    let onion = match proxy_setting(
        "--onion",
        args.onion.as_deref(),
        &file,
        "onion",
        &file.onion,
    )? {
        Some(addr) => Some(addr),
        // Unset: the general proxy; set to 0: none.
        None if args.onion.is_none() && file.onion.is_none() => proxy,
        None => None,
    };
    let onlynet = onlynet_setting(&args.onlynet, &file)?;
    if !onlynet.is_empty() && onlynet.iter().all(|n| *n == Net::Onion) && onion.is_none() {
        return Err(SettingsError::Invalid(
            "outbound connections restricted to Tor (--onlynet=onion) but no proxy reaches \
             the Tor network: give --proxy or --onion"
                .into(),
        ));
    }
    // As Core: with a proxy, do not listen unless asked to (privacy).
    let listen = match listen {
        Some(_) if proxy.is_some() && args.listen.is_none() && file.listen.is_none() => None,
        other => other,
    };
    let port = default_p2p_port(network);
    let connect = peers(
        "--connect",
        &args.connect,
        &file,
        "connect",
        file.connect.as_ref(),
        port,
    )?;
    let addnode = peers(
        "--addnode",
        &args.addnode,
        &file,
        "addnode",
        file.addnode.as_ref(),
        port,
    )?;
    let v1_only = peers(
        "--v1-only",
        &args.v1_only,
        &file,
        "v1-only",
        file.v1_only.as_ref(),
        port,
    )?;
    let work = |hex: &str| bitcoin::Work::from_unprefixed_hex(hex.trim_start_matches("0x"));
    let min_chain_work = match (&args.min_chain_work, &file.min_chain_work) {
        (Some(hex), _) => Some(work(hex).map_err(|e| SettingsError::Flag {
            flag: "--min-chain-work",
            value: hex.clone(),
            reason: e.to_string(),
        })?),
        (None, Some(hex)) => {
            Some(work(hex.get_ref()).map_err(|e| file.invalid("min-chain-work", hex.span(), e))?)
        }
        (None, None) => None,
    };
    let signet_challenge = match (&args.signetchallenge, &file.signetchallenge) {
        (Some(hex), _) => {
            Some(
                signet_challenge(hex, network).map_err(|reason| SettingsError::Flag {
                    flag: "--signetchallenge",
                    value: hex.clone(),
                    reason,
                })?,
            )
        }
        (None, Some(hex)) => Some(
            signet_challenge(hex.get_ref(), network)
                .map_err(|e| file.invalid("signetchallenge", hex.span(), e))?,
        ),
        (None, None) => None,
    };
    let whitelist = if args.whitelist.is_empty() {
        file.whitelist.unwrap_or_default()
    } else {
        args.whitelist
    };
    let rpc_ip = args
        .rpc_bind
        .or(file.rpc_bind)
        .unwrap_or(crate::rpc::DEFAULT_RPC_BIND);
    let rpc_port = args
        .rpc_port
        .or(file.rpc_port)
        .unwrap_or(crate::rpc::default_rpc_port(network));
    let rpc_credentials = match (
        args.rpc_user.or(file.rpc_user),
        args.rpc_password.or(file.rpc_password),
    ) {
        (Some(u), Some(p)) => Some((u, p)),
        (None, None) => None,
        _ => {
            return Err(SettingsError::Invalid(
                "--rpc-user and --rpc-password go together".into(),
            ))
        }
    };
    Ok(Settings {
        v2transport: args.v2transport.or(file.v2transport).unwrap_or(true),
        min_chain_work,
        network,
        network_dir,
        datadir,
        connect,
        addnode,
        v1_only,
        listen,
        max_inbound: args.max_inbound.or(file.max_inbound).unwrap_or(114),
        whitelist,
        ban_duration: Duration::from_secs(
            args.ban_duration.or(file.ban_duration).unwrap_or(86_400),
        ),
        log_level: args
            .log_level
            .or(file.log_level)
            .unwrap_or_else(|| "info".into()),
        rpc: SocketAddr::new(rpc_ip, rpc_port),
        rpc_credentials,
        metrics: args.metrics_bind.or(file.metrics_bind),
        proxy,
        onion,
        onlynet,
        proxy_randomize: args.proxyrandomize.or(file.proxyrandomize).unwrap_or(true),
        signet_challenge,
    })
}

/// A `--signetchallenge` value: a non-empty script in hex, on signet only (Core reads
/// `-signetchallenge` only for `-signet` and refuses values that are not hex).
fn signet_challenge(hex: &str, network: Network) -> Result<Vec<u8>, String> {
    if network != Network::Signet {
        return Err("a signet challenge needs --network signet".into());
    }
    let hex = hex.trim();
    if hex.is_empty() || !hex.len().is_multiple_of(2) || !hex.bytes().all(|b| b.is_ascii_hexdigit())
    {
        return Err("not a script in hex (an even number of hex digits)".into());
    }
    Ok((0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex digits"))
        .collect())
}

/// Core's default SOCKS5 port (Tor's): 9050.
pub const DEFAULT_PROXY_PORT: u16 = 9050;

/// A proxy address: `0`/`false`/`none`/empty for none, else `IP[:PORT]`, `[IPv6][:PORT]` or
/// `HOST[:PORT]` (looked up once, now), port [`DEFAULT_PROXY_PORT`] by default. `Err` says
/// why.
fn parse_proxy(text: &str) -> Result<Option<SocketAddr>, String> {
    if matches!(text, "" | "0" | "false" | "none") {
        return Ok(None);
    }
    match PeerTarget::parse(text, DEFAULT_PROXY_PORT).map_err(|e| e.to_string())? {
        PeerTarget::Addr(addr) => Ok(Some(addr)),
        PeerTarget::Name { host, port } => {
            use std::net::ToSocketAddrs;
            let mut found = (host.as_str(), port)
                .to_socket_addrs()
                .map_err(|e| format!("cannot look up '{host}': {e}"))?;
            found
                .next()
                .map(Some)
                .ok_or_else(|| format!("'{host}' has no address"))
        }
    }
}

/// `--proxy`/`--onion` (`flag`) if given, else the file's `key`.
fn proxy_setting(
    flag: &'static str,
    given: Option<&str>,
    file: &FileConfig,
    key: &'static str,
    value: &Option<Spanned<String>>,
) -> Result<Option<SocketAddr>, SettingsError> {
    match (given, value) {
        (Some(text), _) => parse_proxy(text).map_err(|reason| SettingsError::Flag {
            flag,
            value: text.to_owned(),
            reason,
        }),
        (None, Some(text)) => {
            parse_proxy(text.get_ref()).map_err(|reason| file.invalid(key, text.span(), reason))
        }
        (None, None) => Ok(None),
    }
}

/// `--onlynet` if given, else the file's `onlynet` list; sorted, without repeats.
fn onlynet_setting(given: &[Net], file: &FileConfig) -> Result<Vec<Net>, SettingsError> {
    let mut nets = if given.is_empty() {
        file.onlynet
            .iter()
            .flatten()
            .map(|v| {
                v.get_ref()
                    .parse::<Net>()
                    .map_err(|e| file.invalid("onlynet", v.span(), e))
            })
            .collect::<Result<Vec<Net>, SettingsError>>()?
    } else {
        given.to_vec()
    };
    nets.sort();
    nets.dedup();
    Ok(nets)
}

/// Listening on every IPv4 interface on the network's port (Core's default bind).
fn default_listen(network: Network) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), default_p2p_port(network))
}

/// `--listen`, or a string `listen` in the config file: `0`/`false`/`none` (off), `1`/`true`
/// (the default), `IP:PORT` (port 0: any free port), `[IPv6]:PORT`, or an IP on the
/// network's port. Host names are refused: listening needs a local address. `Err` says why.
fn parse_listen(text: &str, network: Network) -> Result<Option<SocketAddr>, String> {
    match text {
        "0" | "false" | "none" => return Ok(None),
        "1" | "true" => return Ok(Some(default_listen(network))),
        _ => {}
    }
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(Some(addr));
    }
    match PeerTarget::parse(text, default_p2p_port(network)) {
        Ok(PeerTarget::Addr(addr)) => Ok(Some(addr)),
        Ok(PeerTarget::Name { .. }) => Err("listening needs an IP address, not a host name".into()),
        Err(e) => Err(format!(
            "{e} (expected IP, IP:PORT, [IPv6]:PORT, 0 or false)"
        )),
    }
}

/// The config file's `listen`: a string as [`parse_listen`], `0`/`false` (off) or
/// `1`/`true` (the default).
fn file_listen(value: &ListenValue, network: Network) -> Result<Option<SocketAddr>, String> {
    match value {
        ListenValue::Text(text) => parse_listen(text, network),
        ListenValue::Int(0) | ListenValue::Bool(false) => Ok(None),
        ListenValue::Int(1) | ListenValue::Bool(true) => Ok(Some(default_listen(network))),
        ListenValue::Int(_) => {
            Err("expected 0 or 1, false or true, or an address in quotes".into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Args {
        Args::try_parse_from(std::iter::once("verack").chain(list.iter().copied())).unwrap()
    }

    fn target(addr: &str) -> PeerTarget {
        PeerTarget::Addr(addr.parse().unwrap())
    }

    fn name(host: &str, port: u16) -> PeerTarget {
        PeerTarget::Name {
            host: host.into(),
            port,
        }
    }

    /// Settings from `config` (the file's text, if any) and `flags`.
    fn with(
        config: Option<&str>,
        flags: &[&str],
    ) -> (tempfile::TempDir, Result<Settings, SettingsError>) {
        let dir = tempfile::tempdir().unwrap();
        if let Some(text) = config {
            std::fs::write(dir.path().join(CONFIG_FILE), text).unwrap();
        }
        let mut list = vec!["--datadir", dir.path().to_str().unwrap()];
        list.extend_from_slice(flags);
        let settings = resolve(args(&list));
        (dir, settings)
    }

    #[test]
    fn peers_as_core_takes_them_with_the_networks_port() {
        let flags = [
            "--connect",
            "127.0.0.1",
            "--connect",
            "localhost:18444",
            "--connect",
            "[::1]:1",
            "--connect",
            "::1",
            "--addnode",
            "node.example",
            "--v1-only",
            "LOCALHOST:18444",
        ];
        let (_d, s) = with(None, &[&["--network", "regtest"], &flags[..]].concat());
        let s = s.unwrap();
        assert_eq!(
            s.connect,
            vec![
                target("127.0.0.1:18444"),
                name("localhost", 18444),
                target("[::1]:1"),
                target("[::1]:18444"),
            ]
        );
        assert_eq!(s.addnode, vec![name("node.example", 18444)]);
        assert_eq!(s.v1_only, vec![name("localhost", 18444)]);
        for (network, port) in [
            ("mainnet", 8333),
            ("testnet4", 48333),
            ("signet", 38333),
            ("testnet3", 18333),
        ] {
            let (_d, s) = with(
                None,
                &[
                    "--network",
                    network,
                    "--connect",
                    "localhost",
                    "--addnode",
                    "10.0.0.1",
                ],
            );
            let s = s.unwrap();
            assert_eq!(s.connect, vec![name("localhost", port)], "{network}");
            assert_eq!(
                s.addnode,
                vec![PeerTarget::Addr(SocketAddr::new(
                    [10, 0, 0, 1].into(),
                    port
                ))]
            );
        }
        // The file's network decides the port of the file's peers.
        let (_d, s) = with(
            Some("network = \"signet\"\nconnect = [\"127.0.0.1\", \"localhost:1\"]\naddnode = [\"[::1]\"]\n"),
            &[],
        );
        let s = s.unwrap();
        assert_eq!(
            s.connect,
            vec![target("127.0.0.1:38333"), name("localhost", 1)]
        );
        assert_eq!(s.addnode, vec![target("[::1]:38333")]);
    }

    #[test]
    fn a_bad_peer_flag_names_the_flag_and_the_value() {
        for (flag, value, reason) in [
            (
                "--connect",
                "localhost:99999",
                "port '99999' is not a number from 1 to 65535",
            ),
            ("--connect", "127.0.0.1:0", "port '0'"),
            ("--addnode", "1.2.3.4:5:6", "[v6]:port"),
            ("--v1-only", "256.0.0.1", "not a valid IPv4 address"),
            ("--connect", "", "no host or IP address"),
            ("--addnode", "no such host", "not a valid host name"),
        ] {
            let (_d, s) = with(None, &[flag, value]);
            let e = s.unwrap_err().to_string();
            assert!(e.starts_with(&format!("invalid {flag} '{value}': ")), "{e}");
            assert!(e.contains(reason), "{e}");
            assert!(!e.contains('\n'), "{e}");
        }
    }

    #[test]
    fn a_bad_peer_in_the_file_names_the_file_line_and_value() {
        let (d, s) = with(
            Some("network = \"regtest\"\nconnect = [\"127.0.0.1\",\n  \"localhost:http\"]\n"),
            &[],
        );
        let e = s.unwrap_err().to_string();
        let path = d.path().join(CONFIG_FILE);
        assert_eq!(
            e,
            format!(
                "config file {}: line 3, column 3: invalid connect \"localhost:http\": port 'http' is not a number from 1 to 65535",
                path.display()
            )
        );
        let (_d, s) = with(Some("v1-only = [\"[::1\"]\n"), &[]);
        let e = s.unwrap_err().to_string();
        assert!(
            e.contains("line 1, column 12: invalid v1-only \"[::1\": "),
            "{e}"
        );
        // A flag replaces the file's list, bad entries included.
        let (_d, s) = with(
            Some("connect = [\"bad host\"]\n"),
            &["--connect", "localhost"],
        );
        assert_eq!(s.unwrap().connect, vec![name("localhost", 8333)]);
    }

    #[test]
    fn listen_in_the_file_as_number_bool_or_string() {
        let default = Some("0.0.0.0:18444".parse().unwrap());
        for (value, want) in [
            ("0", None),
            ("false", None),
            ("\"0\"", None),
            ("\"false\"", None),
            ("1", default),
            ("true", default),
            ("\"127.0.0.1\"", Some("127.0.0.1:18444".parse().unwrap())),
            ("\"127.0.0.1:0\"", Some("127.0.0.1:0".parse().unwrap())),
            ("\"[::1]\"", Some("[::1]:18444".parse().unwrap())),
            ("\"[::1]:9\"", Some("[::1]:9".parse().unwrap())),
            ("\"::\"", Some("[::]:18444".parse().unwrap())),
        ] {
            let (_d, s) = with(
                Some(&format!("network = \"regtest\"\nlisten = {value}\n")),
                &[],
            );
            assert_eq!(s.unwrap().listen, want, "listen = {value}");
        }
        for value in ["5", "\"localhost\"", "\"nope:1:2\"", "2.5", "[]"] {
            let (d, s) = with(Some(&format!("listen = {value}\n")), &[]);
            let e = s.unwrap_err().to_string();
            let path = d.path().join(CONFIG_FILE);
            assert!(
                e.starts_with(&format!(
                    "config file {}: line 1, column 10: ",
                    path.display()
                )),
                "listen = {value}: {e}"
            );
            assert!(!e.contains('\n'), "{e}");
        }
        let (_d, s) = with(Some("listen = 5\n"), &[]);
        assert!(s
            .unwrap_err()
            .to_string()
            .contains("invalid listen 5: expected 0 or 1"));
        let (_d, s) = with(Some("listen = \"localhost\"\n"), &[]);
        assert!(s.unwrap_err().to_string().contains("not a host name"));
        // The flag wins over the file.
        let (_d, s) = with(Some("listen = 0\n"), &["--listen", "127.0.0.1:1"]);
        assert_eq!(s.unwrap().listen, Some("127.0.0.1:1".parse().unwrap()));
    }

    #[test]
    fn listen_flag_forms() {
        for (value, want) in [
            ("0", None),
            ("false", None),
            ("none", None),
            ("true", Some("0.0.0.0:8333".parse().unwrap())),
            ("[::1]", Some("[::1]:8333".parse().unwrap())),
            ("127.0.0.2:18445", Some("127.0.0.2:18445".parse().unwrap())),
        ] {
            let (_d, s) = with(None, &["--listen", value]);
            assert_eq!(s.unwrap().listen, want, "--listen {value}");
        }
        let (_d, s) = with(None, &["--listen", "localhost:1"]);
        let e = s.unwrap_err().to_string();
        assert_eq!(
            e,
            "invalid --listen 'localhost:1': listening needs an IP address, not a host name"
        );
    }

    #[test]
    fn other_bad_file_values_name_the_file() {
        let (d, s) = with(Some("network = \"moon\"\n"), &[]);
        let e = s.unwrap_err().to_string();
        assert!(
            e.starts_with(&format!(
                "config file {}: line 1, column 11: invalid network \"moon\": expected mainnet",
                d.path().join(CONFIG_FILE).display()
            )),
            "{e}"
        );
        let (_d, s) = with(Some("min-chain-work = \"zz\"\n"), &[]);
        let e = s.unwrap_err().to_string();
        assert!(
            e.contains("line 1, column 18: invalid min-chain-work \"zz\": "),
            "{e}"
        );
    }

    #[test]
    fn a_datadir_that_is_a_file_is_named_as_such() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("not-a-dir");
        std::fs::write(&file, "x").unwrap();
        let e = resolve(args(&["--datadir", file.to_str().unwrap()])).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "data directory {0} is not a directory: {0} is a file",
                file.display()
            )
        );
        assert!(!e.to_string().contains("config file"), "{e}");
        // Below a file: the file is named.
        let below = file.join("sub");
        let e = resolve(args(&["--datadir", below.to_str().unwrap()])).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "data directory {} is not a directory: {} is a file",
                below.display(),
                file.display()
            )
        );
        // The network's folder is a file.
        std::fs::write(dir.path().join("regtest"), "x").unwrap();
        let e = resolve(args(&[
            "--datadir",
            dir.path().to_str().unwrap(),
            "--network",
            "regtest",
        ]))
        .unwrap_err();
        assert!(matches!(e, SettingsError::NotADirectory { .. }), "{e}");
        assert!(
            e.to_string().ends_with(&format!(
                "{} is a file",
                dir.path().join("regtest").display()
            )),
            "{e}"
        );
    }

    #[test]
    fn defaults_are_mainnet_with_core_layout() {
        let dir = tempfile::tempdir().unwrap();
        let s = resolve(args(&["--datadir", dir.path().to_str().unwrap()])).unwrap();
        assert_eq!(s.network, Network::Bitcoin);
        assert_eq!(s.network_dir, dir.path());
        assert_eq!(s.listen, Some("0.0.0.0:8333".parse().unwrap()));
        assert_eq!(s.rpc, "127.0.0.1:8342".parse().unwrap());
        assert_eq!(s.max_inbound, 114);
        assert_eq!(s.ban_duration, Duration::from_secs(86_400));
    }

    #[test]
    fn v1_only_peers_from_flags_and_file() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_str().unwrap();
        let s = resolve(args(&["--datadir", d])).unwrap();
        assert!(s.v1_only.is_empty(), "manual peers try v2 first by default");
        std::fs::write(
            dir.path().join(CONFIG_FILE),
            "connect = [\"127.0.0.1:28444\"]\nv1-only = [\"127.0.0.1:28444\"]\n",
        )
        .unwrap();
        let s = resolve(args(&["--datadir", d])).unwrap();
        assert_eq!(s.v1_only, vec![target("127.0.0.1:28444")]);
        let s = resolve(args(&["--datadir", d, "--v1-only", "127.0.0.1:1"])).unwrap();
        assert_eq!(s.v1_only, vec![target("127.0.0.1:1")], "flags win");
    }

    #[test]
    fn file_values_apply_and_flags_win() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(CONFIG_FILE),
            "network = \"regtest\"\nmax-inbound = 7\nconnect = [\"127.0.0.1:18444\"]\nlisten = \"0\"\n",
        )
        .unwrap();
        let d = dir.path().to_str().unwrap();
        let s = resolve(args(&["--datadir", d])).unwrap();
        assert_eq!(s.network, Network::Regtest);
        assert_eq!(s.network_dir, dir.path().join("regtest"));
        assert_eq!(s.max_inbound, 7);
        assert_eq!(s.connect, vec![target("127.0.0.1:18444")]);
        assert_eq!(s.listen, None);
        assert_eq!(s.rpc.port(), 18453);
        let s = resolve(args(&[
            "--datadir",
            d,
            "--max-inbound",
            "9",
            "--network",
            "signet",
            "--listen",
            "127.0.0.1",
        ]))
        .unwrap();
        assert_eq!((s.max_inbound, s.network), (9, Network::Signet));
        assert_eq!(s.listen, Some("127.0.0.1:38333".parse().unwrap()));
    }

    #[test]
    fn bad_config_reports_line_and_column_on_one_line() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(CONFIG_FILE),
            "network = \"regtest\"\nmax-inbound = \"lots\"\n",
        )
        .unwrap();
        let e = resolve(args(&["--datadir", dir.path().to_str().unwrap()]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2, column 15"), "{e}");
        assert!(!e.contains('\n'), "{e}");
        std::fs::write(dir.path().join(CONFIG_FILE), "colour = 1\n").unwrap();
        let e = resolve(args(&["--datadir", dir.path().to_str().unwrap()]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("line 1, column 1") && e.contains("colour"),
            "{e}"
        );
    }

    #[test]
    fn bad_values_are_clear() {
        assert!(Args::try_parse_from(["verack", "--network", "moon"]).is_err());
        assert!(Args::try_parse_from(["verack", "--max-inbound", "x"]).is_err());
        let dir = tempfile::tempdir().unwrap();
        let e = resolve(args(&[
            "--datadir",
            dir.path().to_str().unwrap(),
            "--listen",
            "nope",
        ]))
        .unwrap_err();
        assert!(e.to_string().contains("invalid --listen 'nope'"));
        let d = dir.path().to_str().unwrap();
        let e = resolve(args(&["--datadir", d, "--min-chain-work", "zz"])).unwrap_err();
        assert!(
            e.to_string().contains("invalid --min-chain-work 'zz'"),
            "{e}"
        );
        let s = resolve(args(&["--datadir", d, "--min-chain-work", "0x0100"])).unwrap();
        assert_eq!(
            s.min_chain_work,
            Some(bitcoin::Work::from_be_bytes({
                let mut b = [0u8; 32];
                b[30] = 1;
                b
            }))
        );
    }

    #[test]
    fn signet_challenge_as_core() {
        let (_d, s) = with(None, &["--network", "signet", "--signetchallenge", "51"]);
        assert_eq!(s.unwrap().signet_challenge, Some(vec![0x51]));
        let (_d, s) = with(
            Some("network = \"signet\"\nsignetchallenge = \"5151\"\n"),
            &[],
        );
        assert_eq!(s.unwrap().signet_challenge, Some(vec![0x51, 0x51]));
        let (_d, s) = with(None, &["--network", "signet"]);
        assert_eq!(s.unwrap().signet_challenge, None);
        let (_d, s) = with(None, &["--network", "regtest", "--signetchallenge", "51"]);
        let e = s.unwrap_err().to_string();
        assert!(e.contains("needs --network signet"), "{e}");
        let (_d, s) = with(None, &["--network", "signet", "--signetchallenge", "5"]);
        let e = s.unwrap_err().to_string();
        assert!(e.contains("invalid --signetchallenge '5'"), "{e}");
    }

    #[test]
    fn proxy_flags_as_core() {
        let a = |t: &str| t.parse::<SocketAddr>().unwrap();
        let (_d, s) = with(None, &[]);
        let s = s.unwrap();
        assert_eq!((s.proxy, s.onion), (None, None));
        assert!(s.onlynet.is_empty() && s.proxy_randomize);
        // A proxy: port 9050 by default, the onion proxy too, no listening unless asked.
        let (_d, s) = with(None, &["--proxy", "127.0.0.1"]);
        let s = s.unwrap();
        assert_eq!(s.proxy, Some(a("127.0.0.1:9050")));
        assert_eq!(s.onion, Some(a("127.0.0.1:9050")));
        assert_eq!(
            s.listen, None,
            "as Core: no listening by default with -proxy"
        );
        let (_d, s) = with(None, &["--proxy", "127.0.0.1:1", "--listen", "1"]);
        assert!(s.unwrap().listen.is_some());
        let (_d, s) = with(None, &["--proxy", "[::1]:2", "--onion", "0"]);
        let s = s.unwrap();
        assert_eq!((s.proxy, s.onion), (Some(a("[::1]:2")), None));
        let (_d, s) = with(
            None,
            &["--onion", "127.0.0.1:3", "--proxyrandomize", "false"],
        );
        let s = s.unwrap();
        assert_eq!((s.proxy, s.onion), (None, Some(a("127.0.0.1:3"))));
        assert!(!s.proxy_randomize);
        // --onlynet, repeatable, Core's names.
        let (_d, s) = with(
            None,
            &[
                "--onlynet",
                "ipv6",
                "--onlynet",
                "ipv4",
                "--onlynet",
                "ipv4",
            ],
        );
        assert_eq!(s.unwrap().onlynet, vec![Net::Ipv4, Net::Ipv6]);
        assert!(Args::try_parse_from(["verack", "--onlynet", "moon"]).is_err());
        let (_d, s) = with(None, &["--onlynet", "onion"]);
        assert!(s.unwrap_err().to_string().contains("restricted to Tor"));
        let (_d, s) = with(None, &["--onlynet", "tor", "--proxy", "127.0.0.1"]);
        assert_eq!(s.unwrap().onlynet, vec![Net::Onion]);
        let (_d, s) = with(None, &["--proxy", "127.0.0.1:99999"]);
        assert!(s
            .unwrap_err()
            .to_string()
            .starts_with("invalid --proxy '127.0.0.1:99999'"));
        // The config file's keys.
        let file = "proxy = \"127.0.0.1:7\"\nonlynet = [\"ipv4\"]\nproxyrandomize = false\n";
        let (_d, s) = with(Some(file), &[]);
        let s = s.unwrap();
        assert_eq!(s.proxy, Some(a("127.0.0.1:7")));
        assert_eq!(s.onlynet, vec![Net::Ipv4]);
        assert!(!s.proxy_randomize);
        let (_d, s) = with(Some("onlynet = [\"ipv4\", \"moon\"]\n"), &[]);
        let e = s.unwrap_err().to_string();
        assert!(
            e.contains("line 1, column 20: invalid onlynet \"moon\""),
            "{e}"
        );
    }
}
