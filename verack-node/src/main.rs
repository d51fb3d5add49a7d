//! `verack`: a Bitcoin node that keeps a healthy peer set, syncs, validates and serves block
//! headers, and reports on itself over a Bitcoin-Core-compatible JSON-RPC.

mod datadir_lock;
mod discovery;
mod human;
mod logging;
mod metrics;
mod node;
mod observe;
mod progress;
mod reachability;
mod rpc;
mod rpc_backend;
mod self_connect;
mod settings;
mod store;

use std::process::ExitCode;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use clap::Parser;
use tokio_util::sync::CancellationToken;
use verack::addrman::{AddrMan, AddrManConfig, GETADDR_MAX_ADDRESSES};
use verack::chain::{ChainParams, HeaderTree};
use verack::peer::{PeerConfig, StartHeight};
use verack::server::{AddrManSource, Server, ServerConfig, ServerError};
use verack::sync::{SyncConfig, SyncManager};

use node::{Node, NodeHandlers};
use settings::{Args, Settings};

/// A fatal error, printed as one line.
#[derive(Debug, thiserror::Error)]
enum NodeError {
    #[error(transparent)]
    Settings(#[from] settings::SettingsError),
    #[error("data directory {path} is not writable: {source}")]
    Datadir {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] store::StoreError),
    /// The start-up check passed a chain the tree refuses: a bug, never the user's doing.
    #[error(
        "the headers in {} passed the start-up check but do not form a chain ({source}); \
         this is a bug: please report it (moving the file aside makes the node resync)",
        path.display()
    )]
    StoredChain {
        path: std::path::PathBuf,
        source: verack::chain::HeaderError,
    },
    #[error("{0}")]
    Server(#[from] ServerError),
    #[error("cannot listen for {what} on {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Lock(#[from] datadir_lock::LockError),
    #[error("cannot write the RPC cookie {path}: {source}")]
    Cookie {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

/// Test-only environment variable: the `getaddr` answer cache lifetime in seconds (no jitter),
/// instead of Core's 21 h plus up to 6 h (`ServerConfig::getaddr_cache_lifetime`).
const GETADDR_CACHE_ENV: &str = "VERACK_TEST_GETADDR_CACHE_SECS";

/// Test-only environment variable: `1` lets the address manager keep loopback and private
/// addresses (`AddrManConfig::allow_local`) and answers `getaddr` with every address (no 23 %
/// cap), so several nodes on one machine can hand each other's loopback addresses out (the
/// crawler example's test). Off by default; a node on a real network must not set it.
const LOCAL_ADDRESSES_ENV: &str = "VERACK_TEST_LOCAL_ADDRESSES";

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(e) if !e.use_stderr() => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            let text = e.to_string();
            eprintln!("{}", text.lines().next().unwrap_or("error: bad arguments"));
            return ExitCode::from(2);
        }
    };
    let settings = match settings::resolve(args) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = logging::init(&settings.log_level) {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    if let Err(e) = runtime.block_on(self_connect::check_manual_peers(
        &settings.connect,
        &settings.addnode,
        settings.listen,
    )) {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    match runtime.block_on(run(settings)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

async fn run(settings: Settings) -> Result<(), NodeError> {
    let dir = &settings.network_dir;
    std::fs::create_dir_all(dir).map_err(|source| NodeError::Datadir {
        path: dir.clone(),
        source,
    })?;
    // One node per data directory, as Core's .lock, taken before anything in it is touched
    // and held until the process exits (also past a shutdown timeout that leaves the store
    // writer running; the kernel releases it with the process).
    std::mem::forget(datadir_lock::DatadirLock::acquire(dir)?);
    probe_writable(dir)?;
    // A custom signet (--signetchallenge): its own magic (BIP325), minimum chain work 0.
    let mut params = match &settings.signet_challenge {
        Some(challenge) => ChainParams::custom_signet(challenge),
        None => ChainParams::new(settings.network),
    };
    if let Some(work) = settings.min_chain_work {
        params.min_chain_work = work;
    }
    // The start-up check: a damaged store is moved aside and its valid prefix kept (logged).
    let db_path = dir.join("headers.sqlite");
    let genesis = params.genesis.block_hash();
    let opened = tokio::task::block_in_place(|| store::check::open_checked(&db_path, genesis))?;
    tracing::info!(
        headers = opened.headers.len(),
        ms = opened.elapsed.as_millis() as u64,
        repaired = opened.repair.is_some(),
        "header database checked"
    );
    let store_status = Arc::new(store::StoreStatus::new(&db_path, opened.store.tip().0));
    let tree = HeaderTree::from_active_chain(params, opened.headers).map_err(|source| {
        NodeError::StoredChain {
            path: db_path.clone(),
            source,
        }
    })?;
    tracing::info!(network = %human::network(settings.network), height = tree.height(), tip = %tree.tip().hash, datadir = %dir.display(), "starting");
    // Sync: the manager owns the tree; the node is built once the server exists.
    let tip_height = Arc::new(AtomicI32::new(tree.height() as i32));
    let sync_config = SyncConfig::new(tree.params());
    let magic = tree.params().magic;
    let sync = SyncManager::new(tree, sync_config, rand::random());

    let mut peer = PeerConfig::new(settings.network);
    peer.magic = Some(magic);
    if !settings.v2transport {
        peer.v2 = verack::transport::V2Mode::Off;
    }
    let local_services = peer.advertised_services().to_u64();
    let tip = tip_height.clone();
    peer.start_height = StartHeight::Callback(Arc::new(move || tip.load(Ordering::Relaxed)));
    let mut config = ServerConfig::new(peer);
    config.listen = settings.listen.into_iter().collect();
    config.persistent = settings
        .connect
        .iter()
        .chain(&settings.addnode)
        .cloned()
        .collect();
    config.v1_only_manual = settings.v1_only.clone();
    config.connect_only = !settings.connect.is_empty();
    config.admission.max_inbound = settings.max_inbound;
    config.admission.trusted = settings.whitelist.clone();
    config.ban_duration = settings.ban_duration;
    config.bans_path = Some(dir.join("banlist.json"));
    config.anchors_path = Some(dir.join("anchors.json"));
    // Test only, standing in for Core's mock time (the conformance suite waits the cache out):
    // the getaddr answer cache lifetime in seconds, without jitter. Default Core's 21 h + 0-6 h.
    if let Some(secs) = std::env::var(GETADDR_CACHE_ENV)
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        config.getaddr_cache_lifetime = Duration::from_secs(secs);
        config.getaddr_cache_jitter = Duration::ZERO;
    }
    let peers_path = dir.join("peers.dat");
    // Test only (see LOCAL_ADDRESSES_ENV): loopback addresses kept and all handed out.
    let local_addresses = std::env::var(LOCAL_ADDRESSES_ENV).is_ok_and(|v| v == "1");
    let (man, problem) = AddrMan::load(
        &peers_path,
        AddrManConfig {
            allow_local: local_addresses,
        },
        rand::random(),
        u64::from(node::unix_now()),
    );
    if let Some(e) = problem {
        tracing::error!(error = %e, "address database not loaded; starting empty");
    }
    tracing::info!(addresses = man.size(None, None), "address manager loaded");
    let mut source = AddrManSource::new(man, Some(peers_path));
    if local_addresses {
        source = source.with_getaddr_limits(GETADDR_MAX_ADDRESSES, 0);
    }
    let addrman = Arc::new(source);
    let (sync_tx, sync_rx) = node::sync_queue();
    let metrics_cell = Arc::new(OnceLock::new());
    let server = Arc::new(proxied(
        Server::new(config, NodeHandlers::new(sync_tx, metrics_cell.clone())).with_address_source(
            verack::address::OnlyNetworks::new(addrman.clone(), settings.onlynet.clone()),
        ),
        &settings,
    ));
    // Subscribed before the start, so the sync task sees every peer.
    let sync_events = server.subscribe();
    let node = Node::new(
        settings.network,
        sync,
        server.clone(),
        tip_height,
        metrics_cell,
    );
    let (store_tx, store_rx) = tokio::sync::mpsc::unbounded_channel();
    let writer_stop = CancellationToken::new();
    let writer = tokio::spawn(node::store_writer(
        opened.store,
        store_status.clone(),
        store_rx,
        node.clone(),
        writer_stop.clone(),
    ));

    let shutdown = CancellationToken::new();
    let sync_task = tokio::spawn(node::run_sync(
        node.clone(),
        sync_events,
        sync_rx,
        store_tx,
        shutdown.clone(),
    ));
    let rpc_listener = tokio::net::TcpListener::bind(settings.rpc)
        .await
        .map_err(|source| NodeError::Bind {
            what: "RPC",
            addr: settings.rpc,
            source,
        })?;
    let metrics_listener = match settings.metrics {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| NodeError::Bind {
                    what: "metrics",
                    addr,
                    source,
                })?,
        ),
        None => None,
    };
    // Subscribed before the start, so the first dials are in the log.
    let log_rx = server.subscribe();
    server.start(shutdown.clone()).await?;

    let cookie_path = rpc::cookie_path(&settings.datadir, settings.network);
    let cookie = rpc::Cookie::create(&cookie_path).map_err(|source| NodeError::Cookie {
        path: cookie_path.clone(),
        source,
    })?;
    let mut auth = rpc::RpcAuth::new().with_cookie(&cookie);
    if let Some((user, password)) = &settings.rpc_credentials {
        auth = auth.with_user_password(user, password);
    }
    let (reachable, proxies) = network_routes(&settings);
    let backend = rpc_backend::NodeRpc {
        node: node.clone(),
        shutdown: shutdown.clone(),
        database: dir.join("headers.sqlite"),
        store: store_status.clone(),
        default_port: settings::default_p2p_port(settings.network),
        ban_duration: settings.ban_duration,
        addrman: addrman.clone(),
        local_services,
        reachable,
        proxies,
    };
    tracing::info!(addr = %settings.rpc, cookie = %cookie.path().display(), "JSON-RPC listening");
    let rpc_task = tokio::spawn(rpc::serve(
        rpc_listener,
        Arc::new(backend),
        auth,
        shutdown.clone(),
    ));
    let metrics_task = metrics_listener.map(|listener| {
        let metrics = Arc::new(metrics::Metrics::new(Arc::new(observe::NodeMetrics {
            node: node.clone(),
        })));
        let _ = node.metrics.set(metrics.clone());
        tokio::spawn(observe::follow_events(server.subscribe(), metrics.clone()));
        tracing::info!(addr = ?settings.metrics, "Prometheus metrics listening");
        tokio::spawn(metrics::serve(listener, metrics, shutdown.clone()))
    });
    let discovered = Arc::new(discovery::DiscoveryStatus::default());
    let weak = Arc::downgrade(&server);
    let addrs = addrman.clone();
    let status = discovered.clone();
    tokio::spawn(observe::log_events(
        log_rx,
        move || weak.upgrade().map_or(0, |s| s.handles().len()),
        move |now| {
            let known = addrs.lock().size(None, None);
            status.describe(now, known).into_iter().collect()
        },
    ));
    // A custom signet has no DNS or fixed seeds (Core clears them): peers come from
    // --connect/--addnode and the addresses they relay.
    let custom_signet = settings.signet_challenge.is_some();
    if custom_signet && settings.connect.is_empty() {
        tracing::info!("custom signet: no DNS or fixed seeds; peers come from --addnode and the addresses peers relay");
    }
    if settings.connect.is_empty() && !custom_signet {
        let network = settings.network;
        let weak = Arc::downgrade(&server);
        // As Core with -proxy: no name is looked up outside the proxy; each DNS seed is asked
        // by name through it (an addr-fetch connection to the node the proxy resolves).
        let lookup = match settings.proxy {
            Some(proxy) => {
                if !verack::discovery::dns_seeds(network).is_empty() {
                    tracing::info!(%proxy, "DNS seeds are asked through the proxy, by name (no lookup outside it)");
                }
                discovery::SeedLookup::Proxy(Arc::new(proxy_dialer(&settings, proxy)))
            }
            None => {
                let weak = Arc::downgrade(&server);
                discovery::SeedLookup::System(Arc::new(move |host, port| {
                    let Some(server) = weak.upgrade() else { return };
                    let fetch = server.addr_fetch(verack::server::PeerTarget::Name {
                        host: host.clone(),
                        port,
                    });
                    tokio::spawn(async move {
                        match fetch.await {
                            Ok(outcome) => {
                                tracing::debug!(seed = %host, addresses = outcome.addresses, "addr-fetch to DNS seed done")
                            }
                            Err(e) => {
                                tracing::debug!(seed = %host, error = %e, "addr-fetch to DNS seed failed")
                            }
                        }
                    });
                }))
            }
        };
        tokio::spawn(discovery::run(
            addrman.clone(),
            network,
            settings::default_p2p_port(network),
            lookup,
            discovered,
            move || {
                weak.upgrade().map_or(0, |s| {
                    s.count_kind(verack::server::ConnectionKind::FullRelay)
                })
            },
            !settings.addnode.is_empty(),
            shutdown.clone(),
        ));
    }
    let progress = tokio::spawn(progress::report(node.clone(), shutdown.clone()));
    wait_for_signal(&shutdown).await;
    tracing::info!("shutting down");
    shutdown.cancel();
    let stopped = server.stopped().await;
    let _ = sync_task.await;
    let _ = rpc_task.await;
    if let Some(task) = metrics_task {
        let _ = task.await;
    }
    if let Err(e) = cookie.remove() {
        tracing::warn!(error = %e, "could not remove the RPC cookie");
    }
    drop(server);
    drop(node);
    let _ = progress.await;
    // The writer writes what is left (retrying for up to 3 s), then ends.
    writer_stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(5), writer).await;
    stopped?;
    tracing::info!("stopped");
    Ok(())
}

/// `server` dialling by network as Core does ([`node_dialer`]), logging the proxy, `--onion`
/// and `--onlynet` setup.
fn proxied<H: verack::server::PeerHandlers>(server: Server<H>, settings: &Settings) -> Server<H> {
    use verack::server::Dialer as _;
    let dialer = node_dialer(settings);
    if !settings.onlynet.is_empty() {
        let names: Vec<&str> = settings.onlynet.iter().map(|n| n.name()).collect();
        tracing::info!(networks = %names.join(","), "automatic outbound connections limited to these networks (--onlynet)");
        if !settings.onlynet.iter().any(|&n| dialer.reaches(n)) {
            tracing::warn!("no network allowed by --onlynet is reachable (onion needs --proxy or --onion; I2P and CJDNS are not dialled): there will be no automatic outbound connections");
        }
    }
    if let Some(proxy) = settings.proxy {
        tracing::info!(%proxy, randomize = settings.proxy_randomize, "outbound connections go through the SOCKS5 proxy (IPv4/IPv6)");
    }
    match settings.onion {
        Some(onion) => {
            tracing::info!(%onion, randomize = settings.proxy_randomize, "onion peers are dialled through the SOCKS5 proxy, by name")
        }
        None => tracing::debug!("onion peers are not reachable (no --proxy or --onion)"),
    }
    server.with_dialer(dialer)
}

/// The node's dialer (Core's routing): IPv4/IPv6 through `--proxy` if set, else direct; Tor
/// through `--onion` (which defaults to `--proxy`), else unreachable; I2P and CJDNS
/// unreachable.
fn node_dialer(settings: &Settings) -> verack::proxy::NetworkDialer {
    verack::proxy::NetworkDialer::new()
        .with_ip_proxy(settings.proxy.map(|p| proxy_dialer(settings, p)))
        .with_onion_proxy(settings.onion.map(|p| proxy_dialer(settings, p)))
}

/// For `getnetworkinfo`: the networks automatic connections reach (routed, and allowed by
/// `--onlynet`, as Core's `g_reachable_nets`), and each proxied network's proxy.
fn network_routes(settings: &Settings) -> (Vec<rpc::types::RpcNetwork>, Vec<rpc::types::RpcProxy>) {
    use rpc::types::{RpcNetwork, RpcProxy};
    use verack::address::Net;
    use verack::server::Dialer as _;
    let dialer = node_dialer(settings);
    let reachable = Net::ALL
        .into_iter()
        .filter(|&n| dialer.reaches(n))
        .filter(|n| settings.onlynet.is_empty() || settings.onlynet.contains(n))
        .map(RpcNetwork::from_net)
        .collect();
    let proxies = Net::ALL
        .into_iter()
        .filter_map(|n| {
            dialer.proxy_for(n).map(|p| RpcProxy {
                network: RpcNetwork::from_net(n),
                proxy: p.proxy(),
                randomize_credentials: settings.proxy_randomize,
            })
        })
        .collect();
    (reachable, proxies)
}

/// The SOCKS5 dialer for `proxy`: random credentials per connection unless
/// `--proxyrandomize=false`.
fn proxy_dialer(settings: &Settings, proxy: std::net::SocketAddr) -> verack::proxy::Socks5Dialer {
    use verack::proxy::{Credentials, Socks5Dialer};
    let credentials = if settings.proxy_randomize {
        Credentials::Randomize
    } else {
        Credentials::None
    };
    Socks5Dialer::new(proxy).with_credentials(credentials)
}

/// Fails early and clearly if files cannot be created in `dir`.
fn probe_writable(dir: &std::path::Path) -> Result<(), NodeError> {
    let probe = dir.join(".write-test");
    std::fs::write(&probe, b"")
        .and_then(|()| std::fs::remove_file(&probe))
        .map_err(|source| NodeError::Datadir {
            path: dir.to_path_buf(),
            source,
        })
}

/// Returns on Ctrl-C, SIGTERM, or when `shutdown` is cancelled (e.g. by RPC `stop`).
async fn wait_for_signal(shutdown: &CancellationToken) {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
            _ = shutdown.cancelled() => {}
        }
    }
    #[cfg(not(unix))]
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = shutdown.cancelled() => {}
    }
}
