//! Prometheus metrics: a registry of `verack_*` metric families and a tiny HTTP
//! endpoint (`GET /metrics`) that serves them in the OpenMetrics text format.
//!
//! The module depends on nothing else in the repository. The node hands it a
//! [`MetricsSource`], which is asked for a snapshot on every scrape (peers,
//! header height, headers accepted, bans), and reports events as they happen
//! ([`Metrics::handshake_failed`], [`Metrics::observe_ping`],
//! [`Metrics::departed_peer`]).
//!
//! Exposed families (all prefixed `verack_`):
//!
//! | name | type | labels |
//! | --- | --- | --- |
//! | `verack_peers` | gauge | `direction` = `inbound`\|`outbound`, `transport` = `v1`\|`v2` |
//! | `verack_bytes_total` | counter (bytes) | `command` (P2P command), `direction` = `sent`\|`received` |
//! | `verack_messages_total` | counter | `direction` = `sent`\|`received` |
//! | `verack_handshake_failures_total` | counter | `kind` (see [`Metrics::handshake_failed`]) |
//! | `verack_bans` | gauge | — |
//! | `verack_header_height` | gauge | — |
//! | `verack_headers_accepted_total` | counter | — |
//! | `verack_ping_rtt_seconds` | histogram (seconds) | `le` buckets from 1 ms to 10 s |
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
use std::time::Duration;

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
}

/// The node's metrics: a registry with event-driven metrics plus a scrape-time
/// collector reading a [`MetricsSource`].
///
/// Share it as `Arc<Metrics>`; every method takes `&self`.
pub struct Metrics {
    registry: Registry,
    handshake_failures: Family<[(&'static str, String); 1], Counter>,
    ping_rtt: Histogram,
    totals: Arc<Mutex<Totals>>,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// Creates the registry (prefix `verack`), registers every family and the
    /// scrape-time collector that reads `source`.
    pub fn new(source: Arc<dyn MetricsSource>) -> Metrics {
        let mut registry = Registry::with_prefix("verack");

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
            registry,
            handshake_failures,
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
            "bans",
            "Entries in the ban list.",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(bans).encode(metric)?;
        Ok(())
    }
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
        metrics.handshake_failed("timeout");
        metrics.handshake_failed("timeout");
        metrics.handshake_failed("Weird Kind!");
        metrics.observe_ping(Duration::from_millis(42));

        let text = metrics.render();
        for family in [
            "verack_peers",
            "verack_bytes",
            "verack_messages",
            "verack_handshake_failures",
            "verack_bans",
            "verack_header_height",
            "verack_headers_accepted",
            "verack_ping_rtt_seconds",
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
