//! Prometheus metrics (OpenMetrics text) served over HTTP while attached.
//!
//! The session refreshes a [`MetricsSnapshot`] once per second from the
//! aggregate; each scrape encodes the latest snapshot with
//! `prometheus-client`. Label sets are bounded: at most [`MAX_LOCKS`] locks,
//! [`MAX_CAS_SITES`] CAS sites and [`MAX_MAPS`] maps, the busiest, and per
//! map the [`HOT_KEYS`] hottest keys; the rest of a map's operations are
//! `key="other"`. Keys can be user data: they are exported as hashes unless
//! `--metrics-expose-keys`.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex, PoisonError},
};

use prometheus_client::{
    collector::Collector,
    encoding::{text::encode, DescriptorEncoder},
    metrics::MetricType,
    registry::{Registry, Unit},
};
use thiserror::Error;
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream},
    task::JoinHandle,
};

use crate::aggregate::WAIT_BUCKETS;

/// Most locks exported (by contentions).
pub const MAX_LOCKS: usize = 100;
/// Most CAS sites exported (by failures).
pub const MAX_CAS_SITES: usize = 100;
/// Most maps exported (by operations).
pub const MAX_MAPS: usize = 50;
/// Hot keys exported per map (the rest fold into `key="other"`).
pub const HOT_KEYS: usize = 10;

/// Upper bounds of the wait histogram's buckets, as log2 buckets of ns:
/// bucket `b` of [`crate::aggregate::LockStats::wait_histogram`] ends at
/// 2^(b+1) ns. Exported from ~1 µs (b = 9) to ~17 s (b = 33), then +Inf.
const FIRST_BUCKET: usize = 9;
const LAST_BUCKET: usize = 33;

/// One lock's figures.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct LockMetric {
    /// Global name, else the address.
    pub lock: String,
    /// `mutex`, `rwmutex` or `futex`.
    pub kind: &'static str,
    /// Slow-path entries.
    pub contentions: u64,
    /// Measured waits.
    pub acquisitions: u64,
    /// Their sum, seconds.
    pub wait_seconds: f64,
    /// Their log2 histogram (ns buckets).
    #[serde(skip)]
    pub histogram: Vec<u64>,
}

/// One CAS site's figures.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct CasMetric {
    /// `function+0xOFFSET`.
    pub site: String,
    /// Attempts.
    pub attempts: u64,
    /// Failures.
    pub failures: u64,
}

/// One map's figures.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct MapMetric {
    /// Global name, else the address.
    pub map: String,
    /// `sync.Map` or `map`.
    pub kind: &'static str,
    /// Operations by name (non-zero), internal events included.
    pub ops: Vec<(&'static str, u64)>,
    /// The hottest keys (exported form) and their operations, then
    /// `("other", the rest)` when the map had keys.
    pub hot_keys: Vec<(String, u64)>,
}

/// What a scrape shows, and what `--jsonl` writes once per second (one JSON
/// object per line).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct MetricsSnapshot {
    /// Seconds since attach.
    pub elapsed_seconds: f64,
    /// Target PID.
    pub pid: u32,
    /// Target executable.
    pub exe: String,
    /// Target Go version, or empty.
    pub go_version: String,
    /// Locks.
    pub locks: Vec<LockMetric>,
    /// CAS sites.
    pub cas: Vec<CasMetric>,
    /// Maps.
    pub maps: Vec<MapMetric>,
    /// Events lost.
    pub events_lost: u64,
    /// Probe hits by probe kind (`lock`, `cas`).
    pub probe_hits: Vec<(&'static str, u64)>,
}

/// How a key appears in a label: as it is with `expose`, else `h:` and 16
/// hex digits of a fixed 64-bit hash (the same key, the same hash, in every
/// run; `other` stays `other`'s own label).
pub fn exported_key(key: &str, expose: bool) -> String {
    if expose {
        key.to_string()
    } else {
        format!("h:{:016x}", crate::aggregate::topk::hash64(key))
    }
}

/// Errors serving metrics.
#[derive(Debug, Error)]
#[error("cannot serve metrics on {addr}: {source}")]
pub struct MetricsError {
    addr: SocketAddr,
    #[source]
    source: std::io::Error,
}

/// A running `/metrics` endpoint.
pub struct MetricsServer {
    snapshot: Arc<Mutex<MetricsSnapshot>>,
    task: JoinHandle<()>,
    /// Where it listens.
    pub local_addr: SocketAddr,
}

impl MetricsServer {
    /// Binds `addr` and serves `/metrics` until dropped.
    pub async fn bind(addr: SocketAddr) -> Result<Self, MetricsError> {
        let error = |source| MetricsError { addr, source };
        let listener = TcpListener::bind(addr).await.map_err(error)?;
        let local_addr = listener.local_addr().map_err(error)?;
        let snapshot = Arc::new(Mutex::new(MetricsSnapshot::default()));
        let mut registry = Registry::with_prefix("mapwatch");
        registry.register_collector(Box::new(SnapshotCollector(snapshot.clone())));
        let registry = Arc::new(registry);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let registry = registry.clone();
                tokio::spawn(async move {
                    if let Err(e) = serve(stream, &registry).await {
                        log::debug!("metrics connection: {e}");
                    }
                });
            }
        });
        Ok(Self {
            snapshot,
            task,
            local_addr,
        })
    }

    /// Replaces what scrapes show.
    pub fn update(&self, snapshot: MetricsSnapshot) {
        *self.snapshot.lock().unwrap_or_else(PoisonError::into_inner) = snapshot;
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Answers one HTTP/1.x request: `GET /metrics`, else 404.
async fn serve(mut stream: TcpStream, registry: &Registry) -> std::io::Result<()> {
    let mut request = Vec::with_capacity(1024);
    let mut buf = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 16 * 1024 {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        request.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&request);
    let path = line.split_whitespace().nth(1).unwrap_or("");
    let (status, content_type, body) =
        if line.starts_with("GET ") && (path == "/metrics" || path.starts_with("/metrics?")) {
            let mut body = String::new();
            match encode(&mut body, registry) {
                Ok(()) => (
                    "200 OK",
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    body,
                ),
                Err(_) => (
                    "500 Internal Server Error",
                    "text/plain",
                    "encoding failed\n".into(),
                ),
            }
        } else {
            (
                "404 Not Found",
                "text/plain",
                "mapwatch serves /metrics\n".into(),
            )
        };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body.as_bytes()).await?;
    stream.shutdown().await
}

#[derive(Debug)]
struct SnapshotCollector(Arc<Mutex<MetricsSnapshot>>);

impl Collector for SnapshotCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let snapshot = self
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        encode_snapshot(&snapshot, &mut encoder)
    }
}

fn encode_snapshot(
    s: &MetricsSnapshot,
    encoder: &mut DescriptorEncoder,
) -> Result<(), std::fmt::Error> {
    let info = [
        ("pid", s.pid.to_string()),
        ("exe", s.exe.clone()),
        ("go_version", s.go_version.clone()),
    ];
    encoder
        .encode_descriptor("target", "The traced process.", None, MetricType::Info)?
        .encode_info(&info)?;

    let mut family = encoder.encode_descriptor(
        "lock_contentions",
        "Entries into a lock's contended slow path (or futex waits).",
        None,
        MetricType::Counter,
    )?;
    for lock in &s.locks {
        let labels = [("lock", lock.lock.clone()), ("kind", lock.kind.to_string())];
        family
            .encode_family(&labels)?
            .encode_counter::<prometheus_client::encoding::NoLabelSet, _, f64>(
                &lock.contentions,
                None,
            )?;
    }

    let mut family = encoder.encode_descriptor(
        "lock_wait",
        "Time from a lock's slow-path entry to its acquisition.",
        Some(&Unit::Seconds),
        MetricType::Histogram,
    )?;
    for lock in &s.locks {
        let labels = [("lock", lock.lock.clone()), ("kind", lock.kind.to_string())];
        let buckets = histogram_buckets(&lock.histogram);
        family
            .encode_family(&labels)?
            .encode_histogram::<prometheus_client::encoding::NoLabelSet>(
                lock.wait_seconds,
                lock.acquisitions,
                &buckets,
                None,
            )?;
    }

    for (name, help, value) in [
        (
            "cas_attempts",
            "Compare-and-swaps executed at a site.",
            (|c: &CasMetric| c.attempts) as fn(&CasMetric) -> u64,
        ),
        (
            "cas_failures",
            "Compare-and-swaps that failed at a site.",
            |c: &CasMetric| c.failures,
        ),
    ] {
        let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
        for cas in &s.cas {
            let labels = [("site", cas.site.clone())];
            family
                .encode_family(&labels)?
                .encode_counter::<prometheus_client::encoding::NoLabelSet, _, f64>(
                    &value(cas),
                    None,
                )?;
        }
    }

    let mut family = encoder.encode_descriptor(
        "map_ops",
        "Map operations by kind (load, store, delete, … and sync.Map's internal miss, dirty_copy, expand).",
        None,
        MetricType::Counter,
    )?;
    for map in &s.maps {
        for (op, count) in &map.ops {
            let labels = [
                ("map", map.map.clone()),
                ("kind", map.kind.to_string()),
                ("op", op.to_string()),
            ];
            family
                .encode_family(&labels)?
                .encode_counter::<prometheus_client::encoding::NoLabelSet, _, f64>(count, None)?;
        }
    }

    let mut family = encoder.encode_descriptor(
        "hot_key_ops",
        "Operations on a map's hottest keys; key=\"other\" holds the rest.",
        None,
        MetricType::Counter,
    )?;
    for map in &s.maps {
        for (key, count) in &map.hot_keys {
            let labels = [("map", map.map.clone()), ("key", key.clone())];
            family
                .encode_family(&labels)?
                .encode_counter::<prometheus_client::encoding::NoLabelSet, _, f64>(count, None)?;
        }
    }

    encoder
        .encode_descriptor(
            "events_lost",
            "Events the kernel dropped because a ring buffer was full.",
            None,
            MetricType::Counter,
        )?
        .encode_counter::<prometheus_client::encoding::NoLabelSet, _, f64>(&s.events_lost, None)?;

    let mut family = encoder.encode_descriptor(
        "probe_hits",
        "Probe hits by kind.",
        None,
        MetricType::Counter,
    )?;
    for (probe, hits) in &s.probe_hits {
        let labels = [("probe", probe.to_string())];
        family
            .encode_family(&labels)?
            .encode_counter::<prometheus_client::encoding::NoLabelSet, _, f64>(hits, None)?;
    }
    Ok(())
}

/// Prometheus buckets (upper bound in seconds, count in the bucket) from a
/// log2 ns histogram: everything up to ~1 µs in the first, ~17 s and more in
/// +Inf.
fn histogram_buckets(histogram: &[u64]) -> Vec<(f64, u64)> {
    let count =
        |range: std::ops::Range<usize>| -> u64 { range.filter_map(|b| histogram.get(b)).sum() };
    let mut buckets = Vec::with_capacity(LAST_BUCKET - FIRST_BUCKET + 2);
    buckets.push((
        2f64.powi(FIRST_BUCKET as i32 + 1) / 1e9,
        count(0..FIRST_BUCKET + 1),
    ));
    for b in FIRST_BUCKET + 1..=LAST_BUCKET {
        buckets.push((2f64.powi(b as i32 + 1) / 1e9, count(b..b + 1)));
    }
    buckets.push((f64::MAX, count(LAST_BUCKET + 1..WAIT_BUCKETS)));
    buckets
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_partition_every_wait() {
        let mut histogram = vec![0u64; WAIT_BUCKETS];
        histogram[0] = 1; // 1 ns
        histogram[9] = 2; // ~0.5-1 µs
        histogram[10] = 3; // ~1-2 µs
        histogram[33] = 4; // ~8.6-17 s
        histogram[40] = 5; // ~18 min
        let buckets = histogram_buckets(&histogram);
        assert_eq!(buckets.iter().map(|b| b.1).sum::<u64>(), 15);
        assert_eq!(buckets[0].1, 3);
        assert_eq!(buckets[1].1, 3);
        assert_eq!(buckets.last().map(|b| b.1), Some(5));
        assert_eq!(buckets.last().map(|b| b.0), Some(f64::MAX));
        assert!(buckets.windows(2).all(|w| w[0].0 < w[1].0));
    }

    #[tokio::test]
    async fn serves_openmetrics_text() {
        let server = MetricsServer::bind("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        server.update(MetricsSnapshot {
            elapsed_seconds: 1.0,
            pid: 42,
            exe: "/bin/x".into(),
            go_version: "go1.27.3".into(),
            locks: vec![LockMetric {
                lock: "main.hotMu".into(),
                kind: "mutex",
                contentions: 7,
                acquisitions: 7,
                wait_seconds: 0.5,
                histogram: vec![0; WAIT_BUCKETS],
            }],
            cas: vec![CasMetric {
                site: "main.f+0x10".into(),
                attempts: 9,
                failures: 2,
            }],
            maps: vec![MapMetric {
                map: "main.cache".into(),
                kind: "map",
                ops: vec![("load", 30)],
                hot_keys: vec![("user-7".into(), 20), ("other".into(), 10)],
            }],
            events_lost: 0,
            probe_hits: vec![("lock", 14)],
        });
        let mut stream = TcpStream::connect(server.local_addr).await.unwrap();
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
        for line in [
            r#"mapwatch_lock_contentions_total{lock="main.hotMu",kind="mutex"} 7"#,
            r#"mapwatch_lock_wait_seconds_count{lock="main.hotMu",kind="mutex"} 7"#,
            r#"mapwatch_cas_failures_total{site="main.f+0x10"} 2"#,
            r#"mapwatch_map_ops_total{map="main.cache",kind="map",op="load"} 30"#,
            r#"mapwatch_hot_key_ops_total{map="main.cache",key="user-7"} 20"#,
            r#"mapwatch_hot_key_ops_total{map="main.cache",key="other"} 10"#,
            r#"mapwatch_target_info{pid="42",exe="/bin/x",go_version="go1.27.3"} 1"#,
            "mapwatch_events_lost_total 0",
            "# EOF",
        ] {
            assert!(response.contains(line), "missing {line}:\n{response}");
        }
        let mut stream = TcpStream::connect(server.local_addr).await.unwrap();
        stream.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        assert!(response.starts_with("HTTP/1.1 404"), "{response}");
    }
}
