//! Command line and config file, merged into [`Settings`]: flags win over `verack.toml` in the
//! data directory, which wins over defaults.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use bitcoin::Network;
use clap::Parser;
use ipnet::IpNet;
use serde::Deserialize;

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
    #[arg(long, value_name = "ADDR")]
    pub connect: Vec<SocketAddr>,
    /// Keep a persistent connection to this peer too (repeatable).
    #[arg(long, value_name = "ADDR")]
    pub addnode: Vec<SocketAddr>,
    /// Dial this --connect/--addnode peer over v1 only, not BIP324 v2 first (repeatable; for
    /// v1-only nodes that ban a v2 key, such as bcoin). As `addnode ADDR add false`.
    #[arg(long, value_name = "ADDR")]
    pub v1_only: Vec<SocketAddr>,
    /// Listen address, or 0 to not listen. Default 0.0.0.0 on the network's port.
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
}

/// The config file: the same settings as the flags, kebab-case keys.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FileConfig {
    network: Option<String>,
    connect: Option<Vec<SocketAddr>>,
    addnode: Option<Vec<SocketAddr>>,
    v1_only: Option<Vec<SocketAddr>>,
    listen: Option<String>,
    max_inbound: Option<usize>,
    whitelist: Option<Vec<IpNet>>,
    ban_duration: Option<u64>,
    log_level: Option<String>,
    rpc_bind: Option<IpAddr>,
    rpc_port: Option<u16>,
    rpc_user: Option<String>,
    rpc_password: Option<String>,
    metrics_bind: Option<SocketAddr>,
    min_chain_work: Option<String>,
    v2transport: Option<bool>,
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
    /// `--connect` peers (connect-only when non-empty).
    pub connect: Vec<SocketAddr>,
    /// `--addnode` peers.
    pub addnode: Vec<SocketAddr>,
    /// `--v1-only` peers: manual peers dialled over v1 only.
    pub v1_only: Vec<SocketAddr>,
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

/// The default P2P port of a network (Core's `nDefaultPort`).
pub fn default_p2p_port(network: Network) -> u16 {
    match network {
        Network::Bitcoin => 8333,
        Network::Testnet => 18333,
        Network::Testnet4 => 48333,
        Network::Signet => 38333,
        _ => 18444,
    }
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
/// [`SettingsError::Read`] or [`SettingsError::Parse`] (with line and column).
pub fn read_file(datadir: &Path) -> Result<FileConfig, SettingsError> {
    let path = datadir.join(CONFIG_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(FileConfig::default()),
        Err(source) => return Err(SettingsError::Read { path, source }),
    };
    toml::from_str(&text).map_err(|e| {
        let position = e
            .span()
            .map(|span| {
                let before = &text[..span.start.min(text.len())];
                let line = before.matches('\n').count() + 1;
                let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
                format!("line {line}, column {column}: ")
            })
            .unwrap_or_default();
        SettingsError::Parse {
            path: path.clone(),
            message: format!("{position}{}", e.message()),
        }
    })
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
    let network = match (args.network, file.network.as_deref()) {
        (Some(n), _) => n,
        (None, Some(name)) => parse_network(name).map_err(SettingsError::Invalid)?,
        (None, None) => Network::Bitcoin,
    };
    let network_dir = match network_folder(network) {
        Some(folder) => datadir.join(folder),
        None => datadir.clone(),
    };
    let listen_text = args.listen.or(file.listen);
    let listen = match listen_text.as_deref() {
        Some("0") | Some("false") | Some("none") => None,
        Some(text) => Some(parse_listen(text, network)?),
        None => Some(SocketAddr::new(
            IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            default_p2p_port(network),
        )),
    };
    let connect = if args.connect.is_empty() {
        file.connect.unwrap_or_default()
    } else {
        args.connect
    };
    let addnode = if args.addnode.is_empty() {
        file.addnode.unwrap_or_default()
    } else {
        args.addnode
    };
    let v1_only = if args.v1_only.is_empty() {
        file.v1_only.unwrap_or_default()
    } else {
        args.v1_only
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
    let min_chain_work = match args.min_chain_work.or(file.min_chain_work) {
        Some(hex) => Some(
            bitcoin::Work::from_unprefixed_hex(hex.trim_start_matches("0x")).map_err(|e| {
                SettingsError::Invalid(format!("invalid --min-chain-work '{hex}': {e}"))
            })?,
        ),
        None => None,
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
    })
}

/// `IP:PORT`, or a bare IP on the network's default port.
fn parse_listen(text: &str, network: Network) -> Result<SocketAddr, SettingsError> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    text.parse::<IpAddr>()
        .map(|ip| SocketAddr::new(ip, default_p2p_port(network)))
        .map_err(|_| {
            SettingsError::Invalid(format!(
                "invalid --listen '{text}': expected IP:PORT, IP or 0"
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Args {
        Args::try_parse_from(std::iter::once("verack").chain(list.iter().copied())).unwrap()
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
        assert_eq!(s.v1_only, vec!["127.0.0.1:28444".parse().unwrap()]);
        let s = resolve(args(&["--datadir", d, "--v1-only", "127.0.0.1:1"])).unwrap();
        assert_eq!(s.v1_only, vec!["127.0.0.1:1".parse().unwrap()], "flags win");
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
        assert_eq!(s.connect, vec!["127.0.0.1:18444".parse().unwrap()]);
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
}
