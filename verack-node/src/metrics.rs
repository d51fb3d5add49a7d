//! Prometheus metrics: a registry of `verack_*` and `process_*` metric families and a tiny
//! HTTP endpoint (`GET /metrics`) that serves them in the OpenMetrics text format.
//!
//! The module depends on nothing else in the repository. The node hands it a
//! [`MetricsSource`], which is asked for a snapshot on every scrape (peers,
//! header height, best known height, synced or not, headers accepted, bans), and reports
//! events as they happen ([`Metrics::handshake_failed`], [`Metrics::observe_ping`],
//! [`Metrics::departed_peer`]).
//!
//! Exposed families:
//!
//! | name | type | labels |
//! | --- | --- | --- |
//! | `verack_build_info` | info (always 1) | `version` (the crate version, e.g. `0.1.0`) |
//! | `verack_peers` | gauge | `direction` = `inbound`\|`outbound`, `transport` = `v1`\|`v2` |
//! | `verack_bytes_total` | counter (bytes) | `command` (P2P command), `direction` = `sent`\|`received` |
//! | `verack_messages_total` | counter | `direction` = `sent`\|`received` |
//! | `verack_handshake_failures_total` | counter | `kind` (see [`Metrics::handshake_failed`]) |
//! | `verack_policy_refusals_total` | counter | — (peers refused by the server's peer policy, [`Metrics::policy_refused`]) |
//! | `verack_bans` | gauge | — |
//! | `verack_header_height` | gauge | — |
//! | `verack_best_known_height` | gauge | — |
//! | `verack_synced` | gauge (0 or 1) | — |
//! | `verack_headers_accepted_total` | counter | — |
//! | `verack_ping_rtt_seconds` | histogram (seconds) | `le` buckets from 1 ms to 10 s |
//! | `process_cpu_seconds_total` | counter (seconds) | — |
//! | `process_resident_memory_bytes` | gauge (bytes) | — |
//! | `process_virtual_memory_bytes` | gauge (bytes) | — |
//! | `process_open_fds` | gauge | — |
//! | `process_max_fds` | gauge | — |
//! | `process_threads` | gauge | — |
//! | `process_start_time_seconds` | gauge (Unix seconds) | — |
//!
//! The `process_*` families are Prometheus' standard process metrics (the names its client
//! libraries use), read from `/proc/self` at scrape time: Linux only. On other platforms only
//! `process_start_time_seconds` is exported, taken when [`Metrics::new`] ran; a value `/proc`
//! cannot give (e.g. a field missing in a container's restricted `/proc`) leaves its family
//! out rather than reporting 0.
//!
//! Byte and message counters are summed over connected peers at scrape time,
//! plus a retained base holding the final totals of peers that have
//! disconnected (fed by [`Metrics::departed_peer`]). Each emitted counter is
//! additionally clamped to never go below the value emitted on the previous
//! scrape, so the series stay monotonic even if a scrape races a disconnect.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, CONTENT_TYPE as CONTENT_TYPE_HEADER};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::info::Info;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// The `Content-Type` of a successful `GET /metrics` reply: the OpenMetrics 1.0
/// text format, which Prometheus negotiates and parses natively.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Upper bounds (seconds) of the ping round-trip histogram buckets: 1 ms to 10 s
/// (plus the implicit `+Inf`).
const PING_BUCKETS_SECONDS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Handshake failure kinds whose counters are created at zero up front, so
/// `rate()`/`increase()` queries see a series before the first failure.
const KNOWN_HANDSHAKE_FAILURE_KINDS: [&str; 9] = [
    "timeout",
    "not_version",
    "self_connection",
    "protocol_too_old",
    "refused",
    "io",
    "framing",
    "cancelled",
    "not_verack",
];

/// Label value used for a command or handshake-failure kind that is not a
/// short lowercase identifier (bounds label cardinality and keeps it tidy).
const OTHER_LABEL: &str = "other";

/// Longest accepted P2P command label (the wire format's command field width).
const MAX_COMMAND_LEN: usize = 12;
/// Longest accepted handshake-failure kind label.
const MAX_KIND_LEN: usize = 32;

/// How long a client may take to send a request's headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Most concurrent scrape connections; further ones are closed at once.
const MAX_CONNECTIONS: usize = 32;
/// How long [`serve`] waits for in-flight requests after shutdown is signalled.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// Back-off after a failed `accept` (e.g. out of file descriptors).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// One connected peer as seen at scrape time.
///
/// All counters are totals since the connection was established.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeerSample {
    /// `true` if the peer connected to us, `false` if we dialled it; becomes
    /// the `direction` label (`inbound` | `outbound`) of `verack_peers`.
    pub inbound: bool,
    /// The transport protocol, `"v1"` (plaintext) or `"v2"` (BIP324); becomes
    /// the `transport` label of `verack_peers`.
    pub transport: &'static str,
    /// Bytes sent to the peer, per P2P command (e.g. `"headers"`), including
    /// message framing. Commands should be the wire names; anything that is not
    /// 1–12 characters of `[a-z0-9_]` is reported as `command="other"`. The node
    /// should bucket unknown commands itself (as Bitcoin Core's `*other*`) to
    /// keep the number of series small.
    pub bytes_sent_per_command: BTreeMap<String, u64>,
    /// Bytes received from the peer, per P2P command (same rules as
    /// [`PeerSample::bytes_sent_per_command`]).
    pub bytes_received_per_command: BTreeMap<String, u64>,
    /// Messages sent to the peer.
    pub messages_sent: u64,
    /// Messages received from the peer.
    pub messages_received: u64,
    /// The most recent ping round-trip time, if any. Not exported by this
    /// module (round trips are recorded as events via [`Metrics::observe_ping`]);
    /// kept so the node can build one sample type for all consumers.
    pub last_ping: Option<Duration>,
}

/// The node-side state the metrics read on every scrape.
///
/// Implementations should be cheap and non-async. When the scrape comes through
/// [`serve`], the methods are called on Tokio's blocking thread pool, so they may
/// take a `std::sync::Mutex` or Tokio's `blocking_lock`.
pub trait MetricsSource: Send + Sync + 'static {
    /// A snapshot of every currently connected peer.
    fn peers(&self) -> Vec<PeerSample>;
    /// Height of the best validated header chain (`verack_header_height`).
    fn header_height(&self) -> u64;
    /// Headers accepted since start (`verack_headers_accepted_total`); monotonic,
    /// so `rate(verack_headers_accepted_total[1m])` is the header sync rate.
    fn headers_accepted_total(&self) -> u64;
    /// Number of entries currently in the ban list (`verack_bans`).
    fn bans(&self) -> u64;
    /// The best height known to exist (`verack_best_known_height`): the highest of our own
    /// header height, the heights peers announced in `version` and the headers they sent.
    /// Peers' claims are not verified, so it is a hint for progress, not a fact.
    fn best_known_height(&self) -> u64;
    /// Whether the node considers itself synced (`verack_synced`, 1 or 0): its best header
    /// chain has the minimum chain work and a recent tip.
    fn synced(&self) -> bool;
}

/// The node's metrics: a registry with event-driven metrics plus a scrape-time
/// collector reading a [`MetricsSource`].
///
/// Share it as `Arc<Metrics>`; every method takes `&self`.
pub struct Metrics {
    registry: Registry,
    handshake_failures: Family<[(&'static str, String); 1], Counter>,
    policy_refusals: Counter,
    ping_rtt: Histogram,
    totals: Arc<Mutex<Totals>>,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// Creates the registry, registers every family (`verack_*` under the `verack` prefix,
    /// `process_*` without one) and the scrape-time collectors that read `source` and the
    /// process.
    pub fn new(source: Arc<dyn MetricsSource>) -> Metrics {
        let mut root = Registry::default();
        root.register_collector(Box::new(ProcessCollector {
            created: SystemTime::now(),
        }));
        let registry = root.sub_registry_with_prefix("verack");

        registry.register(
            "build",
            "verack build information",
            Info::new([("version", env!("CARGO_PKG_VERSION"))]),
        );

        let handshake_failures = Family::<[(&'static str, String); 1], Counter>::default();
        for kind in KNOWN_HANDSHAKE_FAILURE_KINDS {
            // Creates the series at 0.
            handshake_failures.get_or_create_owned(&[("kind", kind.to_owned())]);
        }
        registry.register(
            "handshake_failures",
            "Failed P2P handshakes, by failure kind",
            handshake_failures.clone(),
        );

        let policy_refusals = Counter::default();
        registry.register(
            "policy_refusals",
            "Peers refused by the server's peer policy after their version",
            policy_refusals.clone(),
        );

        let ping_rtt = Histogram::new(PING_BUCKETS_SECONDS);
        registry.register_with_unit(
            "ping_rtt",
            "Observed ping/pong round-trip times",
            Unit::Seconds,
            ping_rtt.clone(),
        );

        let totals = Arc::new(Mutex::new(Totals::default()));
        registry.register_collector(Box::new(SourceCollector {
            source,
            totals: Arc::clone(&totals),
        }));

        Metrics {
            registry: root,
            handshake_failures,
            policy_refusals,
            ping_rtt,
            totals,
        }
    }

    /// Counts one failed handshake in `verack_handshake_failures_total{kind}`.
    ///
    /// `kind` is a short label such as `"timeout"`, `"not_version"`,
    /// `"self_connection"`, `"protocol_too_old"`, `"refused"`, `"io"`,
    /// `"framing"`, `"cancelled"` or `"not_verack"` (those nine are always
    /// exported, starting at 0). Any value that is not 1–32 characters of
    /// `[a-z0-9_]` is counted as `kind="other"`.
    pub fn handshake_failed(&self, kind: &str) {
        let kind = sanitize_label(kind, MAX_KIND_LEN).into_owned();
        self.handshake_failures
            .get_or_create(&[("kind", kind)])
            .inc();
    }

    /// Counts one peer refused by the server's peer policy in
    /// `verack_policy_refusals_total` (a `PeerEvent::Refused` whose refusal is
    /// `Refusal::Policy`; such a peer never counts as connected).
    pub fn policy_refused(&self) {
        self.policy_refusals.inc();
    }

    /// Records one ping round trip in the `verack_ping_rtt_seconds` histogram
    /// (seconds; buckets 1 ms, 2.5 ms, 5 ms, … 5 s, 10 s, +Inf).
    pub fn observe_ping(&self, rtt: Duration) {
        self.ping_rtt.observe(rtt.as_secs_f64());
    }

    /// Folds a disconnecting peer's final totals into the retained base of
    /// `verack_bytes_total` and `verack_messages_total`.
    ///
    /// The node must call this exactly once per peer, with the peer's last
    /// sample, when the peer leaves. Without it, the peer's bytes and messages
    /// would vanish from the scrape-time sum and the counters would drop.
    /// Preferred order: first stop returning the peer from
    /// [`MetricsSource::peers`], then call this; a scrape in between is covered
    /// by the never-decrease clamp and the result is exact. The opposite order
    /// is also monotonic, but a scrape landing in between counts the peer twice
    /// and the excess is held until real traffic catches up.
    pub fn departed_peer(&self, sample: &PeerSample) {
        let mut totals = lock(&self.totals);
        add_commands(
            &mut totals.departed_bytes,
            &sample.bytes_sent_per_command,
            Flow::Sent,
        );
        add_commands(
            &mut totals.departed_bytes,
            &sample.bytes_received_per_command,
            Flow::Received,
        );
        totals.departed_messages[Flow::Sent as usize] =
            totals.departed_messages[Flow::Sent as usize].saturating_add(sample.messages_sent);
        totals.departed_messages[Flow::Received as usize] = totals.departed_messages
            [Flow::Received as usize]
            .saturating_add(sample.messages_received);
    }

    /// Renders every family in the OpenMetrics text format (ending in
    /// `# EOF`), querying the [`MetricsSource`] once. Serve it with
    /// [`CONTENT_TYPE`].
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail, and the collector only propagates
        // writer errors.
        encode(&mut out, &self.registry).expect("encoding metrics into a String cannot fail");
        out
    }
}

/// Serves `metrics` over HTTP/1.1 on `listener` until `shutdown` is cancelled.
///
/// `GET /metrics` (any query string) answers 200 with [`Metrics::render`] and
/// [`CONTENT_TYPE`]; every other method or path answers 404. Connections may be
/// kept alive; at most 32 are served at once (more are closed on accept), and a
/// client gets 10 s to send its request headers.
///
/// On cancellation the listener is closed, idle connections are closed, and
/// in-flight requests get up to 5 s to finish before being dropped; then this
/// returns `Ok(())`. Failed `accept`s (e.g. out of file descriptors) are logged
/// and retried after 100 ms rather than ending the server, so in practice the
/// result is always `Ok`.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let mut connections = JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let accepted = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(error) => {
                tracing::warn!(%error, "metrics endpoint: accept failed");
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(ACCEPT_BACKOFF) => continue,
                }
            }
        };
        if connections.len() >= MAX_CONNECTIONS {
            tracing::debug!("metrics endpoint: too many connections, closing a new one");
            continue;
        }
        connections.spawn(serve_connection(
            stream,
            Arc::clone(&metrics),
            shutdown.clone(),
        ));
    }
    drop(listener);
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::debug!("metrics endpoint: dropping connections still busy after the grace period");
    }
    // Dropping the JoinSet aborts whatever is left.
    Ok(())
}

/// Serves one HTTP/1.1 connection, shutting it down gracefully on `shutdown`.
async fn serve_connection(stream: TcpStream, metrics: Arc<Metrics>, shutdown: CancellationToken) {
    let service = service_fn(move |request: Request<Incoming>| {
        let metrics = Arc::clone(&metrics);
        async move { Ok::<_, Infallible>(respond(metrics, &request).await) }
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        _ = shutdown.cancelled() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(error) = result {
        tracing::debug!(%error, "metrics endpoint: connection ended with an error");
    }
}

/// Builds the reply to one request.
async fn respond(metrics: Arc<Metrics>, request: &Request<Incoming>) -> Response<Full<Bytes>> {
    if request.method() != Method::GET || request.uri().path() != "/metrics" {
        return plain(StatusCode::NOT_FOUND, "not found\n");
    }
    // The source may block briefly (locks), so keep it off the async workers.
    match tokio::task::spawn_blocking(move || metrics.render()).await {
        Ok(body) => {
            let mut response = Response::new(Full::new(Bytes::from(body)));
            response
                .headers_mut()
                .insert(CONTENT_TYPE_HEADER, HeaderValue::from_static(CONTENT_TYPE));
            response
        }
        Err(error) => {
            tracing::warn!(%error, "metrics endpoint: rendering failed");
            plain(StatusCode::INTERNAL_SERVER_ERROR, "internal error\n")
        }
    }
}

/// A plain-text reply with `status` and `body`.
fn plain(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE_HEADER,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// Direction of traffic, the `direction` label of the byte and message counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Flow {
    Sent = 0,
    Received = 1,
}

impl Flow {
    const ALL: [Flow; 2] = [Flow::Sent, Flow::Received];

    fn label(self) -> &'static str {
        match self {
            Flow::Sent => "sent",
            Flow::Received => "received",
        }
    }
}

/// Counter state kept across scrapes.
#[derive(Debug, Default)]
struct Totals {
    /// Final byte totals of departed peers, per (command, direction).
    departed_bytes: BTreeMap<(String, Flow), u64>,
    /// Final message totals of departed peers, indexed by `Flow`.
    departed_messages: [u64; 2],
    /// Last emitted `verack_bytes_total` values (never decrease).
    emitted_bytes: BTreeMap<(String, Flow), u64>,
    /// Last emitted `verack_messages_total` values, indexed by `Flow`.
    emitted_messages: [u64; 2],
    /// Last emitted `verack_headers_accepted_total`.
    emitted_headers_accepted: u64,
}

impl Totals {
    /// Folds the live peers into the emitted counters: each becomes
    /// max(previous emitted, departed base + live sum).
    fn update(&mut self, peers: &[PeerSample], headers_accepted: u64) {
        let mut bytes = self.departed_bytes.clone();
        let mut messages = self.departed_messages;
        for peer in peers {
            add_commands(&mut bytes, &peer.bytes_sent_per_command, Flow::Sent);
            add_commands(&mut bytes, &peer.bytes_received_per_command, Flow::Received);
            messages[Flow::Sent as usize] =
                messages[Flow::Sent as usize].saturating_add(peer.messages_sent);
            messages[Flow::Received as usize] =
                messages[Flow::Received as usize].saturating_add(peer.messages_received);
        }
        for (key, value) in bytes {
            let emitted = self.emitted_bytes.entry(key).or_default();
            *emitted = (*emitted).max(value);
        }
        for (emitted, value) in self.emitted_messages.iter_mut().zip(messages) {
            *emitted = (*emitted).max(value);
        }
        self.emitted_headers_accepted = self.emitted_headers_accepted.max(headers_accepted);
    }
}

/// Adds per-command byte counts into `into`, under `flow`.
fn add_commands(
    into: &mut BTreeMap<(String, Flow), u64>,
    per_command: &BTreeMap<String, u64>,
    flow: Flow,
) {
    for (command, bytes) in per_command {
        let key = (sanitize_label(command, MAX_COMMAND_LEN).into_owned(), flow);
        let total = into.entry(key).or_default();
        *total = total.saturating_add(*bytes);
    }
}

/// `value` if it is 1..=`max_len` characters of `[a-z0-9_]`, else `"other"`.
fn sanitize_label(value: &str, max_len: usize) -> Cow<'_, str> {
    let ok = !value.is_empty()
        && value.len() <= max_len
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Cow::Borrowed(value)
    } else {
        Cow::Borrowed(OTHER_LABEL)
    }
}

/// Locks `mutex`, ignoring poisoning (the state stays consistent: every update
/// is a plain arithmetic step).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Emits the source-derived families on each scrape.
struct SourceCollector {
    source: Arc<dyn MetricsSource>,
    totals: Arc<Mutex<Totals>>,
}

impl fmt::Debug for SourceCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SourceCollector")
            .field("totals", &self.totals)
            .finish_non_exhaustive()
    }
}

impl Collector for SourceCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        // Ask the source before taking our lock, so a slow source never blocks
        // `departed_peer`.
        let peers = self.source.peers();
        let header_height = self.source.header_height();
        let headers_accepted = self.source.headers_accepted_total();
        let bans = self.source.bans();
        let best_known_height = self.source.best_known_height().max(header_height);
        let synced = self.source.synced();

        let mut peer_counts: BTreeMap<(&'static str, &'static str), u64> = BTreeMap::new();
        for direction in ["inbound", "outbound"] {
            for transport in ["v1", "v2"] {
                peer_counts.insert((direction, transport), 0);
            }
        }
        for peer in &peers {
            let direction = if peer.inbound { "inbound" } else { "outbound" };
            *peer_counts.entry((direction, peer.transport)).or_default() += 1;
        }
        {
            let mut family = encoder.encode_descriptor(
                "peers",
                "Connected peers, by direction and transport.",
                None,
                MetricType::Gauge,
            )?;
            for ((direction, transport), count) in &peer_counts {
                let labels = [("direction", *direction), ("transport", *transport)];
                ConstGauge::new(*count).encode(family.encode_family(&labels)?)?;
            }
        }

        let mut totals = lock(&self.totals);
        totals.update(&peers, headers_accepted);
        {
            let mut family = encoder.encode_descriptor(
                "bytes",
                "P2P bytes sent and received (including framing), by command and direction.",
                None,
                MetricType::Counter,
            )?;
            for ((command, flow), bytes) in &totals.emitted_bytes {
                let labels = [("command", command.as_str()), ("direction", flow.label())];
                ConstCounter::new(*bytes).encode(family.encode_family(&labels)?)?;
            }
        }
        {
            let mut family = encoder.encode_descriptor(
                "messages",
                "P2P messages sent and received, by direction.",
                None,
                MetricType::Counter,
            )?;
            for flow in Flow::ALL {
                let labels = [("direction", flow.label())];
                ConstCounter::new(totals.emitted_messages[flow as usize])
                    .encode(family.encode_family(&labels)?)?;
            }
        }
        let headers_accepted = totals.emitted_headers_accepted;
        drop(totals);

        let metric = encoder.encode_descriptor(
            "headers_accepted",
            "Block headers accepted since start; rate() gives the header sync rate.",
            None,
            MetricType::Counter,
        )?;
        ConstCounter::new(headers_accepted).encode(metric)?;

        let metric = encoder.encode_descriptor(
            "header_height",
            "Height of the best header chain.",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(header_height).encode(metric)?;

        let metric = encoder.encode_descriptor(
            "best_known_height",
            "Best height known to exist: ours, or the highest a peer announced or sent.",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(best_known_height).encode(metric)?;

        let metric = encoder.encode_descriptor(
            "synced",
            "1 when the header chain is synced (minimum chain work, recent tip), else 0.",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(u64::from(synced)).encode(metric)?;

        let metric = encoder.encode_descriptor(
            "bans",
            "Entries in the ban list.",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(bans).encode(metric)?;
        Ok(())
    }
}

/// Prometheus' standard `process_*` families, read at scrape time (see the module docs).
#[derive(Debug)]
struct ProcessCollector {
    /// When the metrics were created: `process_start_time_seconds` where `/proc` is missing.
    created: SystemTime,
}

/// One reading of the process; `None` where the platform or `/proc` did not tell.
#[derive(Debug, Default, Clone, PartialEq)]
struct ProcessSample {
    cpu_seconds: Option<f64>,
    resident_bytes: Option<u64>,
    virtual_bytes: Option<u64>,
    open_fds: Option<u64>,
    max_fds: Option<u64>,
    threads: Option<u64>,
    start_time_seconds: Option<f64>,
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let mut sample = ProcessSample::read();
        if sample.start_time_seconds.is_none() {
            sample.start_time_seconds = self
                .created
                .duration_since(UNIX_EPOCH)
                .ok()
                .map(|d| d.as_secs_f64());
        }
        if let Some(seconds) = sample.cpu_seconds {
            let metric = encoder.encode_descriptor(
                "process_cpu",
                "Total user and system CPU time spent in seconds.",
                Some(&Unit::Seconds),
                MetricType::Counter,
            )?;
            ConstCounter::new(seconds).encode(metric)?;
        }
        let gauges: [(&str, &str, Option<Unit>, Option<u64>); 5] = [
            (
                "process_resident_memory",
                "Resident memory size in bytes.",
                Some(Unit::Bytes),
                sample.resident_bytes,
            ),
            (
                "process_virtual_memory",
                "Virtual memory size in bytes.",
                Some(Unit::Bytes),
                sample.virtual_bytes,
            ),
            (
                "process_open_fds",
                "Number of open file descriptors.",
                None,
                sample.open_fds,
            ),
            (
                "process_max_fds",
                "Maximum number of open file descriptors (the soft limit).",
                None,
                sample.max_fds,
            ),
            (
                "process_threads",
                "Number of OS threads in the process.",
                None,
                sample.threads,
            ),
        ];
        for (name, help, unit, value) in &gauges {
            if let Some(value) = value {
                let metric =
                    encoder.encode_descriptor(name, help, unit.as_ref(), MetricType::Gauge)?;
                ConstGauge::new(*value).encode(metric)?;
            }
        }
        if let Some(start) = sample.start_time_seconds {
            let metric = encoder.encode_descriptor(
                "process_start_time",
                "Start time of the process since the Unix epoch in seconds.",
                Some(&Unit::Seconds),
                MetricType::Gauge,
            )?;
            ConstGauge::new(start).encode(metric)?;
        }
        Ok(())
    }
}

impl ProcessSample {
    /// Reads `/proc/self` (proc(5)): `stat` for CPU time, memory, threads and start ticks,
    /// `/proc/stat`'s `btime` for the boot time, `fd/` for open descriptors, `limits` for
    /// their soft limit, and `auxv` for the clock tick and page size.
    #[cfg(target_os = "linux")]
    fn read() -> ProcessSample {
        use std::fs;
        let (page_size, clock_ticks) = fs::read("/proc/self/auxv")
            .map(|bytes| parse_auxv(&bytes))
            .unwrap_or_default();
        // The kernel's USER_HZ and page size when the auxiliary vector does not say (it
        // always does on Linux).
        let ticks = clock_ticks.filter(|t| *t > 0).unwrap_or(100) as f64;
        let page_size = page_size.unwrap_or(4096);
        let stat = fs::read_to_string("/proc/self/stat")
            .ok()
            .and_then(|text| parse_stat(&text));
        let boot_time = fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|text| parse_boot_time(&text));
        ProcessSample {
            cpu_seconds: stat.as_ref().map(|s| (s.utime + s.stime) as f64 / ticks),
            resident_bytes: stat.as_ref().map(|s| s.rss_pages * page_size),
            virtual_bytes: stat.as_ref().map(|s| s.vsize),
            open_fds: fs::read_dir("/proc/self/fd")
                .ok()
                .map(|dir| dir.count() as u64),
            max_fds: fs::read_to_string("/proc/self/limits")
                .ok()
                .and_then(|text| parse_max_open_files(&text)),
            threads: stat.as_ref().map(|s| s.threads),
            start_time_seconds: stat
                .as_ref()
                .zip(boot_time)
                .map(|(s, boot)| boot as f64 + s.start_ticks as f64 / ticks),
        }
    }

    /// Nothing to read outside Linux.
    #[cfg(not(target_os = "linux"))]
    fn read() -> ProcessSample {
        ProcessSample::default()
    }
}

/// The fields of `/proc/<pid>/stat` used here (proc(5) numbers them from 1).
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
struct Stat {
    /// Field 14: user-mode time, clock ticks.
    utime: u64,
    /// Field 15: kernel-mode time, clock ticks.
    stime: u64,
    /// Field 20: number of threads.
    threads: u64,
    /// Field 22: start time after boot, clock ticks.
    start_ticks: u64,
    /// Field 23: virtual memory size, bytes.
    vsize: u64,
    /// Field 24: resident set size, pages.
    rss_pages: u64,
}

/// Parses `/proc/<pid>/stat`. Field 2 (`comm`, in parentheses) may hold spaces and
/// parentheses itself, so fields are counted from the last `)`.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn parse_stat(text: &str) -> Option<Stat> {
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields[0] is field 3 (state).
    let field = |n: usize| -> Option<u64> { fields.get(n.checked_sub(3)?)?.parse().ok() };
    Some(Stat {
        utime: field(14)?,
        stime: field(15)?,
        threads: field(20)?,
        start_ticks: field(22)?,
        vsize: field(23)?,
        rss_pages: field(24)?,
    })
}

/// `btime` (boot time, Unix seconds) from `/proc/stat`.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn parse_boot_time(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix("btime "))
        .and_then(|value| value.trim().parse().ok())
}

/// The soft limit of "Max open files" from `/proc/<pid>/limits`; `None` if unlimited.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn parse_max_open_files(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix("Max open files"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|soft| soft.parse().ok())
}

/// `AT_PAGESZ` and `AT_CLKTCK` from an auxiliary vector (`/proc/self/auxv`: pairs of
/// native-endian words, type then value, getauxval(3)).
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn parse_auxv(bytes: &[u8]) -> (Option<u64>, Option<u64>) {
    const AT_PAGESZ: u64 = 6;
    const AT_CLKTCK: u64 = 17;
    const WORD: usize = std::mem::size_of::<usize>();
    let word = |b: &[u8]| -> u64 {
        let mut w = [0u8; WORD];
        w.copy_from_slice(b);
        usize::from_ne_bytes(w) as u64
    };
    let (mut page_size, mut clock_ticks) = (None, None);
    for pair in bytes.chunks_exact(2 * WORD) {
        match word(&pair[..WORD]) {
            AT_PAGESZ => page_size = Some(word(&pair[WORD..])),
            AT_CLKTCK => clock_ticks = Some(word(&pair[WORD..])),
            _ => {}
        }
    }
    (page_size, clock_ticks)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[derive(Default)]
    struct FakeSource {
        peers: Mutex<Vec<PeerSample>>,
        header_height: Mutex<u64>,
        headers_accepted: Mutex<u64>,
        bans: Mutex<u64>,
        best_known_height: Mutex<u64>,
        synced: Mutex<bool>,
    }

    impl MetricsSource for FakeSource {
        fn peers(&self) -> Vec<PeerSample> {
            lock(&self.peers).clone()
        }
        fn header_height(&self) -> u64 {
            *lock(&self.header_height)
        }
        fn headers_accepted_total(&self) -> u64 {
            *lock(&self.headers_accepted)
        }
        fn bans(&self) -> u64 {
            *lock(&self.bans)
        }
        fn best_known_height(&self) -> u64 {
            *lock(&self.best_known_height)
        }
        fn synced(&self) -> bool {
            *lock(&self.synced)
        }
    }

    fn peer(inbound: bool, transport: &'static str, sent: &[(&str, u64)]) -> PeerSample {
        let map = |pairs: &[(&str, u64)]| {
            pairs
                .iter()
                .map(|(c, n)| (c.to_string(), *n))
                .collect::<BTreeMap<_, _>>()
        };
        PeerSample {
            inbound,
            transport,
            bytes_sent_per_command: map(sent),
            bytes_received_per_command: map(&[("headers", 1000)]),
            messages_sent: sent.len() as u64,
            messages_received: 1,
            last_ping: Some(Duration::from_millis(20)),
        }
    }

    fn setup() -> (Arc<FakeSource>, Metrics) {
        let source = Arc::new(FakeSource::default());
        let metrics = Metrics::new(source.clone());
        (source, metrics)
    }

    /// The value of the sample line starting with `series ` (name plus labels).
    fn value(text: &str, series: &str) -> f64 {
        let prefix = format!("{series} ");
        let line = text
            .lines()
            .find(|l| l.starts_with(&prefix))
            .unwrap_or_else(|| panic!("no sample {series} in:\n{text}"));
        line[prefix.len()..].trim().parse().unwrap()
    }

    fn bytes_series(command: &str, direction: &str) -> String {
        format!("verack_bytes_total{{command=\"{command}\",direction=\"{direction}\"}}")
    }

    #[test]
    fn render_has_every_family_with_values_and_labels() {
        let (source, metrics) = setup();
        *lock(&source.peers) = vec![
            peer(true, "v1", &[("ping", 32), ("inv", 61)]),
            peer(true, "v1", &[("ping", 32)]),
            peer(false, "v2", &[("getheaders", 1053)]),
        ];
        *lock(&source.header_height) = 850_000;
        *lock(&source.headers_accepted) = 12_345;
        *lock(&source.bans) = 3;
        *lock(&source.best_known_height) = 850_010;
        *lock(&source.synced) = true;
        metrics.handshake_failed("timeout");
        metrics.handshake_failed("timeout");
        metrics.handshake_failed("Weird Kind!");
        metrics.policy_refused();
        metrics.observe_ping(Duration::from_millis(42));

        let text = metrics.render();
        for family in [
            "verack_peers",
            "verack_bytes",
            "verack_messages",
            "verack_handshake_failures",
            "verack_policy_refusals",
            "verack_bans",
            "verack_header_height",
            "verack_headers_accepted",
            "verack_ping_rtt_seconds",
            "verack_build",
            "verack_best_known_height",
            "verack_synced",
            "process_start_time_seconds",
        ] {
            assert!(
                text.lines()
                    .any(|l| l.starts_with(&format!("# TYPE {family} "))),
                "missing family {family}:\n{text}"
            );
        }
        assert!(text.ends_with("# EOF\n"));
        assert!(text.contains("# UNIT verack_ping_rtt_seconds seconds\n"));

        assert_eq!(
            value(&text, r#"verack_peers{direction="inbound",transport="v1"}"#),
            2.0
        );
        assert_eq!(
            value(
                &text,
                r#"verack_peers{direction="outbound",transport="v2"}"#
            ),
            1.0
        );
        assert_eq!(
            value(&text, r#"verack_peers{direction="inbound",transport="v2"}"#),
            0.0
        );
        assert_eq!(value(&text, &bytes_series("ping", "sent")), 64.0);
        assert_eq!(value(&text, &bytes_series("inv", "sent")), 61.0);
        assert_eq!(value(&text, &bytes_series("getheaders", "sent")), 1053.0);
        assert_eq!(value(&text, &bytes_series("headers", "received")), 3000.0);
        assert_eq!(
            value(&text, r#"verack_messages_total{direction="sent"}"#),
            4.0
        );
        assert_eq!(
            value(&text, r#"verack_messages_total{direction="received"}"#),
            3.0
        );
        assert_eq!(
            value(&text, r#"verack_handshake_failures_total{kind="timeout"}"#),
            2.0
        );
        assert_eq!(value(&text, "verack_policy_refusals_total"), 1.0);
        assert_eq!(
            value(&text, r#"verack_handshake_failures_total{kind="other"}"#),
            1.0
        );
        assert_eq!(
            value(
                &text,
                r#"verack_handshake_failures_total{kind="not_verack"}"#
            ),
            0.0
        );
        assert_eq!(value(&text, "verack_bans"), 3.0);
        assert_eq!(value(&text, "verack_header_height"), 850_000.0);
        assert_eq!(value(&text, "verack_headers_accepted_total"), 12_345.0);
        assert_eq!(value(&text, "verack_ping_rtt_seconds_count"), 1.0);
        assert_eq!(value(&text, "verack_best_known_height"), 850_010.0);
        assert_eq!(value(&text, "verack_synced"), 1.0);
        assert!(text.contains("# TYPE verack_build info\n"), "{text}");
        assert_eq!(
            value(
                &text,
                &format!(
                    "verack_build_info{{version=\"{}\"}}",
                    env!("CARGO_PKG_VERSION")
                )
            ),
            1.0
        );
        // No verack_ prefix on the process families.
        assert!(!text.contains("verack_process"), "{text}");
    }

    #[test]
    fn best_known_height_is_never_below_our_own() {
        let (source, metrics) = setup();
        *lock(&source.header_height) = 120;
        *lock(&source.best_known_height) = 100;
        let text = metrics.render();
        assert_eq!(value(&text, "verack_best_known_height"), 120.0);
        assert_eq!(value(&text, "verack_synced"), 0.0);
    }

    #[test]
    fn proc_stat_fields_are_counted_after_the_last_parenthesis() {
        // A command name with spaces and parentheses, as proc(5) allows.
        let line = "4242 (my (odd) name) S 1 4242 4242 0 -1 4194560 1000 0 0 0 \
                    250 75 0 0 20 0 9 0 123456 104857600 2560 18446744073709551615 \
                    1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
        assert_eq!(
            parse_stat(line),
            Some(Stat {
                utime: 250,
                stime: 75,
                threads: 9,
                start_ticks: 123456,
                vsize: 104857600,
                rss_pages: 2560,
            })
        );
        assert_eq!(parse_stat("4242 (truncated) S 1 2"), None);
        assert_eq!(parse_stat("no parenthesis"), None);
    }

    #[test]
    fn boot_time_limits_and_auxv_parse() {
        assert_eq!(
            parse_boot_time("cpu  1 2 3\nintr 5\nbtime 1700000000\nprocesses 9\n"),
            Some(1_700_000_000)
        );
        assert_eq!(parse_boot_time("cpu 1\n"), None);
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max processes             1000                 1000                 processes \n\
                      Max open files            1024                 524288               files     \n";
        assert_eq!(parse_max_open_files(limits), Some(1024));
        assert_eq!(
            parse_max_open_files(
                "Max open files            unlimited            unlimited            files\n"
            ),
            None
        );
        let mut auxv = Vec::new();
        for (key, value) in [(33usize, 7usize), (6, 16384), (17, 250), (0, 0)] {
            auxv.extend_from_slice(&key.to_ne_bytes());
            auxv.extend_from_slice(&value.to_ne_bytes());
        }
        assert_eq!(parse_auxv(&auxv), (Some(16384), Some(250)));
        assert_eq!(parse_auxv(&[]), (None, None));
    }

    /// This test process as the collector reads it: every family present with plausible
    /// values (Linux), or only the start time (elsewhere).
    #[test]
    fn process_families_describe_this_process() {
        let started = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let (_source, metrics) = setup();
        // Some CPU time to count.
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        let text = metrics.render();
        let start = value(&text, "process_start_time_seconds");
        assert!(start <= started + 1.0, "{start} vs {started}");
        assert!(
            start > started - 3600.0,
            "this test process started within the hour"
        );
        if cfg!(target_os = "linux") {
            assert!(value(&text, "process_cpu_seconds_total") > 0.0);
            assert!(value(&text, "process_resident_memory_bytes") > 1_000_000.0);
            assert!(
                value(&text, "process_virtual_memory_bytes")
                    >= value(&text, "process_resident_memory_bytes")
            );
            let open = value(&text, "process_open_fds");
            assert!(open >= 3.0, "stdin, stdout, stderr at least: {open}");
            if text.contains("process_max_fds ") {
                assert!(value(&text, "process_max_fds") >= open);
            }
            assert!(value(&text, "process_threads") >= 1.0);
            assert!(
                text.contains("# UNIT process_cpu_seconds seconds\n"),
                "{text}"
            );
        } else {
            assert!(!text.contains("process_cpu_seconds_total"));
        }
    }

    #[test]
    fn odd_command_names_are_reported_as_other() {
        let (source, metrics) = setup();
        *lock(&source.peers) = vec![peer(
            false,
            "v1",
            &[("*other*", 5), ("WAYTOOLONGCOMMAND", 7), ("a\"b", 1)],
        )];
        let text = metrics.render();
        assert_eq!(value(&text, &bytes_series("other", "sent")), 13.0);
        assert!(!text.contains("WAYTOOLONG"));
    }

    #[test]
    fn counters_stay_monotonic_when_a_peer_departs() {
        let (source, metrics) = setup();
        let a = peer(true, "v1", &[("ping", 100)]);
        let b = peer(false, "v2", &[("ping", 10)]);
        *lock(&source.peers) = vec![a.clone(), b];
        let before = metrics.render();
        assert_eq!(value(&before, &bytes_series("ping", "sent")), 110.0);

        // Documented order in this test: departed_peer, then the source forgets it.
        metrics.departed_peer(&a);
        lock(&source.peers).retain(|p| *p != a);
        let after = metrics.render();
        assert_eq!(value(&after, &bytes_series("ping", "sent")), 110.0);
        assert_eq!(value(&after, &bytes_series("headers", "received")), 2000.0);
        assert_eq!(
            value(&after, r#"verack_messages_total{direction="sent"}"#),
            2.0
        );
        assert_eq!(
            value(
                &after,
                r#"verack_peers{direction="inbound",transport="v1"}"#
            ),
            0.0
        );

        // The remaining peer keeps adding on top of the retained base.
        lock(&source.peers)[0]
            .bytes_sent_per_command
            .insert("ping".into(), 15);
        let later = metrics.render();
        assert_eq!(value(&later, &bytes_series("ping", "sent")), 115.0);

        // And once every peer is gone the totals are still there.
        let b_final = lock(&source.peers)[0].clone();
        metrics.departed_peer(&b_final);
        lock(&source.peers).clear();
        let empty = metrics.render();
        assert_eq!(value(&empty, &bytes_series("ping", "sent")), 115.0);
        assert_eq!(value(&empty, &bytes_series("headers", "received")), 2000.0);
    }

    #[test]
    fn counters_never_drop_when_a_scrape_races_a_disconnect() {
        let (source, metrics) = setup();
        let a = peer(true, "v1", &[("tx", 500)]);
        *lock(&source.peers) = vec![a.clone()];
        assert_eq!(value(&metrics.render(), &bytes_series("tx", "sent")), 500.0);

        // Source forgets the peer before departed_peer: the scrape in between
        // holds the previous value instead of dropping to 0.
        lock(&source.peers).clear();
        assert_eq!(value(&metrics.render(), &bytes_series("tx", "sent")), 500.0);
        metrics.departed_peer(&a);
        assert_eq!(value(&metrics.render(), &bytes_series("tx", "sent")), 500.0);

        // Headers accepted is clamped the same way.
        *lock(&source.headers_accepted) = 10;
        assert_eq!(
            value(&metrics.render(), "verack_headers_accepted_total"),
            10.0
        );
        *lock(&source.headers_accepted) = 7;
        assert_eq!(
            value(&metrics.render(), "verack_headers_accepted_total"),
            10.0
        );
    }

    #[test]
    fn histogram_counts_observations_in_seconds() {
        let (_source, metrics) = setup();
        metrics.observe_ping(Duration::from_micros(500));
        metrics.observe_ping(Duration::from_millis(20));
        metrics.observe_ping(Duration::from_millis(20));
        metrics.observe_ping(Duration::from_secs(30));
        let text = metrics.render();
        assert_eq!(value(&text, "verack_ping_rtt_seconds_count"), 4.0);
        let sum = value(&text, "verack_ping_rtt_seconds_sum");
        assert!((sum - 30.0405).abs() < 1e-9, "sum {sum}");
        // Buckets are cumulative.
        assert_eq!(
            value(&text, r#"verack_ping_rtt_seconds_bucket{le="0.001"}"#),
            1.0
        );
        assert_eq!(
            value(&text, r#"verack_ping_rtt_seconds_bucket{le="0.025"}"#),
            3.0
        );
        assert_eq!(
            value(&text, r#"verack_ping_rtt_seconds_bucket{le="10.0"}"#),
            3.0
        );
        assert_eq!(
            value(&text, r#"verack_ping_rtt_seconds_bucket{le="+Inf"}"#),
            4.0
        );
    }

    /// Sends one raw HTTP/1.1 request and returns (status, content type, body).
    async fn http(addr: std::net::SocketAddr, method: &str, path: &str) -> (u16, String, String) {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let request =
            format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut reply = Vec::new();
        tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut reply))
            .await
            .expect("reply in time")
            .unwrap();
        let reply = String::from_utf8(reply).unwrap();
        let (head, body) = reply.split_once("\r\n\r\n").expect("header end");
        let status = head.split(' ').nth(1).unwrap().parse().unwrap();
        let content_type = head
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("content-type")
                    .then(|| value.trim().to_owned())
            })
            .unwrap_or_default();
        (status, content_type, body.to_owned())
    }

    #[tokio::test]
    async fn http_serves_metrics_404s_elsewhere_and_stops_on_cancel() {
        let (source, metrics) = setup();
        *lock(&source.peers) = vec![peer(true, "v1", &[]), peer(true, "v1", &[])];
        let metrics = Arc::new(metrics);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let token = CancellationToken::new();
        let server = tokio::spawn(serve(listener, metrics, token.clone()));

        let (status, content_type, body) = http(addr, "GET", "/metrics").await;
        assert_eq!(status, 200);
        assert_eq!(content_type, CONTENT_TYPE);
        assert!(body.contains("verack_peers{direction=\"inbound\",transport=\"v1\"} 2\n"));
        assert!(body.ends_with("# EOF\n"));

        assert_eq!(http(addr, "GET", "/").await.0, 404);
        assert_eq!(http(addr, "GET", "/metricsx").await.0, 404);
        assert_eq!(http(addr, "POST", "/metrics").await.0, 404);

        // An idle keep-alive connection must not hold up shutdown.
        let mut idle = TcpStream::connect(addr).await.unwrap();
        idle.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\n\r\n")
            .await
            .unwrap();
        let mut first = [0u8; 12];
        idle.read_exact(&mut first).await.unwrap();
        assert_eq!(&first, b"HTTP/1.1 200");

        token.cancel();
        let result = tokio::time::timeout(Duration::from_secs(3), server)
            .await
            .expect("server stops promptly after cancel")
            .unwrap();
        assert!(result.is_ok());
        assert!(TcpStream::connect(addr).await.is_err(), "listener closed");
    }
}
