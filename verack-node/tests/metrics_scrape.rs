//! The metrics endpoint scraped as Prometheus would: verack syncs from Bitcoin Core with
//! `--metrics-bind 127.0.0.1:<port>`, `GET /metrics` is read by a Prometheus text-format parser
//! (the `prometheus-parse` crate), and the process, build and sync families are checked for
//! sane values against what the test knows (this machine's clock, Core's chain, the peer).

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_parse::{LineInfo, Sample, Scrape, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use verack_testkit::{free_port, wait_for, BitcoinCore, VerackNode};

/// Bound for a header sync of a hundred headers over loopback, and for the node to call
/// itself synced after it.
const SYNC: Duration = Duration::from_secs(30);
/// Blocks Core mines: the height verack must report.
const HEIGHT: u32 = 120;

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs_f64()
}

/// One `GET /metrics` (HTTP/1.1, closed after): the content type and the body. Bounded: 5 s
/// to connect, 10 s for the reply.
async fn get_metrics(addr: SocketAddr) -> (String, String) {
    let mut sock = timeout(Duration::from_secs(5), TcpStream::connect(addr))
        .await
        .expect("connect in time")
        .expect("connect to the metrics endpoint");
    sock.write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .await
        .expect("send");
    let mut reply = String::new();
    timeout(Duration::from_secs(10), sock.read_to_string(&mut reply))
        .await
        .expect("reply in time")
        .expect("read");
    let (head, body) = reply.split_once("\r\n\r\n").expect("HTTP head and body");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let content_type = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-type")
                .then(|| value.trim().to_owned())
        })
        .unwrap_or_default();
    (content_type, body.to_owned())
}

/// The body parsed by the Prometheus parser. Every line that is not a comment must be read as
/// a sample (the parser skips what it cannot read, so that is checked here).
fn parse(body: &str) -> Scrape {
    for line in body
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        assert!(
            matches!(LineInfo::parse(line), LineInfo::Sample { .. }),
            "not a sample line: {line:?}"
        );
    }
    Scrape::parse(body.lines().map(|l| Ok(l.to_owned()))).expect("Prometheus text")
}

/// The sample named `name` whose labels include `labels`.
fn sample<'a>(scrape: &'a Scrape, name: &str, labels: &[(&str, &str)]) -> &'a Sample {
    let found = scrape
        .samples
        .iter()
        .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)));
    found.unwrap_or_else(|| {
        let names: Vec<&str> = scrape.samples.iter().map(|s| s.metric.as_str()).collect();
        panic!("no sample {name} {labels:?}; samples: {names:?}")
    })
}

/// A gauge's value (the parser types it from its `# TYPE` line).
fn gauge(scrape: &Scrape, name: &str) -> f64 {
    match sample(scrape, name, &[]).value {
        Value::Gauge(v) => v,
        ref other => panic!("{name} is not a gauge: {other:?}"),
    }
}

/// A counter's value. OpenMetrics names the family `x` and the sample `x_total`; this parser
/// (Prometheus' older text format) then does not link them and reads the sample as untyped.
fn counter(scrape: &Scrape, name: &str) -> f64 {
    match sample(scrape, name, &[]).value {
        Value::Counter(v) | Value::Untyped(v) => v,
        ref other => panic!("{name} is not a counter: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrape_has_process_build_and_sync_metrics() {
    let test_started = unix_now();
    let core = BitcoinCore::start_with(&["-connect=0"]).await;
    core.mine(HEIGHT).await;
    let metrics_addr = SocketAddr::from(([127, 0, 0, 1], free_port().await));
    let verack = VerackNode::start(
        Path::new(env!("CARGO_BIN_EXE_verack")),
        &[
            &format!("--connect={}", core.p2p),
            &format!("--metrics-bind={metrics_addr}"),
        ],
    )
    .await;
    verack
        .wait_for_best_hash(&core.best_hash().await, SYNC)
        .await;

    // Synced once the tip is in (regtest: no minimum chain work, and the tip was just mined).
    // CPU time is counted in clock ticks (10 ms), so it is waited for too.
    let (content_type, body) = wait_for("verack_synced 1 and some CPU time", SYNC, || async {
        let (content_type, body) = get_metrics(metrics_addr).await;
        let synced = body.lines().any(|l| l == "verack_synced 1");
        let cpu = !cfg!(target_os = "linux")
            || body
                .lines()
                .filter_map(|l| l.strip_prefix("process_cpu_seconds_total "))
                .any(|v| v.parse::<f64>().is_ok_and(|v| v > 0.0));
        (synced && cpu).then_some((content_type, body))
    })
    .await;
    assert!(
        content_type.starts_with("application/openmetrics-text; version=1.0.0"),
        "{content_type}"
    );
    assert!(body.ends_with("# EOF\n"), "OpenMetrics ends with # EOF");
    let scrape = parse(&body);
    let now = unix_now();

    // Build and sync.
    let build = sample(
        &scrape,
        "verack_build_info",
        &[("version", env!("CARGO_PKG_VERSION"))],
    );
    assert!(
        matches!(build.value, Value::Untyped(v) if v == 1.0),
        "{build:?}"
    );
    assert_eq!(gauge(&scrape, "verack_synced"), 1.0);
    assert_eq!(gauge(&scrape, "verack_header_height"), f64::from(HEIGHT));
    assert_eq!(
        gauge(&scrape, "verack_best_known_height"),
        f64::from(HEIGHT),
        "Core announced {HEIGHT} and sent that many headers"
    );
    assert!(counter(&scrape, "verack_headers_accepted_total") >= f64::from(HEIGHT));
    let outbound: f64 = ["v1", "v2"]
        .iter()
        .map(|t| {
            match sample(
                &scrape,
                "verack_peers",
                &[("direction", "outbound"), ("transport", t)],
            )
            .value
            {
                Value::Gauge(v) => v,
                ref other => panic!("verack_peers: {other:?}"),
            }
        })
        .sum();
    assert_eq!(outbound, 1.0, "the one --connect peer");

    // The process: this machine is Linux (CI's too), where every family is there.
    let start = gauge(&scrape, "process_start_time_seconds");
    assert!(
        start >= test_started - 1.0 && start <= now,
        "verack started during this test: {start} not in [{test_started}, {now}]"
    );
    if cfg!(target_os = "linux") {
        let cpu = counter(&scrape, "process_cpu_seconds_total");
        assert!(cpu > 0.0 && cpu < now - test_started + 60.0, "cpu {cpu}");
        let rss = gauge(&scrape, "process_resident_memory_bytes");
        assert!(rss > 1e6 && rss < 4e9, "resident memory {rss}");
        assert!(gauge(&scrape, "process_virtual_memory_bytes") >= rss);
        let fds = gauge(&scrape, "process_open_fds");
        // Listener, RPC and metrics sockets, the peer, the database, the log, …
        assert!((5.0..10_000.0).contains(&fds), "open fds {fds}");
        assert!(gauge(&scrape, "process_max_fds") >= fds);
        assert!(gauge(&scrape, "process_threads") >= 1.0);
    }
}
